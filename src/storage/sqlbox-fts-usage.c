/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "sqlbox-storage.h"
#include "sqlbox-fts-structure.h"

/* <root>/fts-usage: how much the full-text index (sqlbox-fts.c) holds,
   for `doveadm launchpad status USER`, which has no key to open the
   database.  One line, "<messages> <bytes>\n": the bodies indexed (rows
   of fts_doc) and the FTS5 segments' leaf pages times their page size,
   read from FTS5's structure record (one row; sqlbox-fts-structure.c)
   rather than by walking the index's pages.

   fts_doc's rows are counted by triggers (sqlbox-fts.c), so this reads
   two rows and a record, whatever the size of the mailbox.

   A keyed session writes it when it ends, if it changed any row (a
   save, an expunge, an import or an index rebuild may all change it;
   a session that only read, whose syncs committed empty write
   transactions, runs no query for it) and the numbers differ from the
   file's;
   so it lags while a session runs and after a crash, and is right again
   after the next one.  Like quota-usage it tells a size, nothing of
   the mail; it exists whether or not a quota is set. */

static int
sqlbox_fts_usage_read(struct sqlbox_storage *storage, uint64_t *messages_r,
		      uint64_t *bytes_r, bool *exists_r)
{
	sqlite3_stmt *stmt;
	uint64_t pages, segments;
	int rc, ret = 0;

	/* the session created or checked them (its indexing or a SEARCH
	   did): no query */
	*exists_r = storage->fts_ready;
	if (!*exists_r) {
		stmt = sqlbox_db_prepare(storage,
			"SELECT count(*) FROM sqlite_master"
			" WHERE name IN ('fts_doc', 'fts_index_data')");
		if (stmt == NULL)
			return -1;
		rc = sqlbox_db_step(storage, stmt);
		if (rc == SQLITE_ROW)
			*exists_r = sqlite3_column_int(stmt, 0) == 2;
		sqlite3_finalize(stmt);
		if (rc != SQLITE_ROW)
			return -1;
		if (!*exists_r)
			return 0;
	}

	/* one statement: one snapshot */
	stmt = sqlbox_db_prepare(storage,
		"SELECT "SQLBOX_FTS_DOCS_SQL","
		" (SELECT block FROM fts_index_data WHERE id = ?),"
		" (SELECT v FROM fts_index_config WHERE k = 'pgsz')");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int(stmt, 1, SQLBOX_FTS_STRUCTURE_ROWID);
	rc = sqlbox_db_step(storage, stmt);
	if (rc != SQLITE_ROW) {
		ret = -1;
	} else {
		const void *block = sqlite3_column_blob(stmt, 1);
		int block_size = sqlite3_column_bytes(stmt, 1);
		int64_t pgsz = sqlite3_column_type(stmt, 2) == SQLITE_NULL ?
			SQLBOX_FTS_DEFAULT_PGSZ : sqlite3_column_int64(stmt, 2);

		*messages_r = sqlite3_column_int64(stmt, 0);
		if (block == NULL) {
			/* created, nothing indexed yet */
			*bytes_r = 0;
		} else if (pgsz <= 0 ||
			   !sqlbox_fts_structure_leaf_pages(block, block_size,
							    &pages,
							    &segments)) {
			e_error(storage->storage.event,
				"sqlbox: the full-text index's structure "
				"record does not parse; fts-usage not "
				"updated");
			ret = -1;
		} else {
			*bytes_r = pages * (uint64_t)pgsz;
		}
	}
	sqlite3_finalize(stmt);
	return ret;
}

void sqlbox_fts_usage_update(struct sqlbox_storage *storage)
{
	uint64_t messages = 0, bytes = 0;
	bool exists;

	/* Rows inserted, updated or deleted by this session's connection,
	   triggers' included (SQLite counts from the connection's open). */
	if (storage->db == NULL || sqlite3_total_changes64(storage->db) == 0)
		return;
	T_BEGIN {
		const char *path = t_strconcat(storage->root_dir, "/",
					       SQLBOX_FTS_USAGE_FNAME, NULL);

		if (sqlbox_fts_usage_read(storage, &messages, &bytes,
					  &exists) < 0) {
			e_error(storage->storage.event,
				"sqlbox: fts-usage not updated: %s",
				mail_storage_get_last_internal_error(
					&storage->storage, NULL));
		} else if (exists) {
			(void)sqlbox_usage_file_write(storage, path, messages,
						      bytes);
		}
	} T_END;
}
