/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "fsync-mode.h"
#include "ioloop.h"
#include "sqlbox-storage.h"

#include <stdarg.h>

/* Statements and transactions on the open database (sqlbox-db.c opens
   it): the layer every query (sqlbox-sql-*.c), the schema and the storage
   use.  It knows no table: what runs before an outermost COMMIT (the
   quota usage file) is the storage's db_pre_commit hook. */

void sqlbox_db_set_critical(struct sqlbox_storage *storage, const char *what)
{
	mail_storage_set_critical(&storage->storage, "sqlbox %s: %s (%d)",
				  what, storage->db == NULL ? "no database" :
				  sqlite3_errmsg(storage->db),
				  storage->db == NULL ? 0 :
				  sqlite3_extended_errcode(storage->db));
}

sqlite3_stmt *sqlbox_db_prepare(struct sqlbox_storage *storage,
				const char *sql)
{
	sqlite3_stmt *stmt;

	if (sqlite3_prepare_v2(storage->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		sqlbox_db_set_critical(storage, "prepare");
		return NULL;
	}
	return stmt;
}

/* Statements kept prepared: a sync, which ends every IMAP command of a
   selected folder, runs BEGIN, the folder's counters, one UPDATE per
   flag change range, its pull queries and COMMIT; parsing them again
   each time (sqlite3_prepare_v2) was a third of the imap process's CPU
   in a STORE-only load (bench/README.md, issue 15, eighth pass).  Texts
   that sqlbox_db_exec*() runs are kept while fewer than this many are:
   one built with values in it (a migration's) then can't fill memory. */
#define SQLBOX_KEPT_STMTS_MAX 64

static sqlite3_stmt *
sqlbox_db_prepare_kept_if(struct sqlbox_storage *storage, const char *sql,
			  bool always, bool *kept_r)
{
	sqlite3_stmt *stmt;

	*kept_r = FALSE;
	if (!hash_table_is_created(storage->kept_stmts)) {
		hash_table_create(&storage->kept_stmts, default_pool, 0,
				  str_hash, strcmp);
	}
	stmt = hash_table_lookup(storage->kept_stmts, sql);
	if (stmt != NULL) {
		*kept_r = TRUE;
		return stmt;
	}
	if ((stmt = sqlbox_db_prepare(storage, sql)) == NULL)
		return NULL;
	if (always ||
	    hash_table_count(storage->kept_stmts) < SQLBOX_KEPT_STMTS_MAX) {
		hash_table_insert(storage->kept_stmts, i_strdup(sql), stmt);
		*kept_r = TRUE;
	}
	return stmt;
}

sqlite3_stmt *sqlbox_db_prepare_kept(struct sqlbox_storage *storage,
				     const char *sql)
{
	bool kept;

	return sqlbox_db_prepare_kept_if(storage, sql, TRUE, &kept);
}

void sqlbox_db_kept_done(sqlite3_stmt *stmt)
{
	/* Ends the statement's read (or write) of the database; an error
	   was already reported by its step. */
	(void)sqlite3_reset(stmt);
}

void sqlbox_db_kept_free(struct sqlbox_storage *storage)
{
	struct hash_iterate_context *iter;
	char *sql;
	sqlite3_stmt *stmt;

	if (!hash_table_is_created(storage->kept_stmts))
		return;
	iter = hash_table_iterate_init(storage->kept_stmts);
	while (hash_table_iterate(iter, storage->kept_stmts, &sql, &stmt)) {
		sqlite3_finalize(stmt);
		i_free(sql);
	}
	hash_table_iterate_deinit(&iter);
	hash_table_destroy(&storage->kept_stmts);
}

int sqlbox_db_step(struct sqlbox_storage *storage, sqlite3_stmt *stmt)
{
	int rc = sqlite3_step(stmt);

	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		return rc;
	sqlbox_db_set_critical(storage, "step");
	return -1;
}

static int
sqlbox_db_exec_va(struct sqlbox_storage *storage, const char *sql,
		  unsigned int n, va_list args)
{
	sqlite3_stmt *stmt;
	bool kept;
	int rc;

	stmt = sqlbox_db_prepare_kept_if(storage, sql, FALSE, &kept);
	if (stmt == NULL)
		return -1;
	for (unsigned int i = 0; i < n; i++)
		sqlite3_bind_int64(stmt, i + 1, va_arg(args, int64_t));
	rc = sqlbox_db_step(storage, stmt);
	if (kept)
		sqlbox_db_kept_done(stmt);
	else
		sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

int sqlbox_db_exec_args(struct sqlbox_storage *storage, const char *sql,
			unsigned int n, ...)
{
	va_list args;
	int ret;

	va_start(args, n);
	ret = sqlbox_db_exec_va(storage, sql, n, args);
	va_end(args);
	return ret;
}

int sqlbox_db_exec(struct sqlbox_storage *storage, const char *sql)
{
	return sqlbox_db_exec_args(storage, sql, 0);
}

/* mail_fsync as PRAGMA synchronous for what the connection commits next
   (SQLite refuses to change it inside a transaction).  In WAL mode FULL
   fsyncs the WAL in every COMMIT (through cryptvfs's xSync to the file);
   NORMAL only at checkpoints, so a commit may be lost on power loss but
   never half-applied. */
int sqlbox_db_set_sync(struct sqlbox_storage *storage, bool mail)
{
	enum fsync_mode mode = storage->storage.set->parsed_fsync_mode;
	bool full = mode == FSYNC_MODE_ALWAYS ||
		(mail && mode != FSYNC_MODE_NEVER);

	i_assert(storage->txn_depth == 0);
	if (full == storage->db_sync_full)
		return 0;
	if (sqlbox_db_exec(storage, full ? "PRAGMA synchronous=FULL" :
			   "PRAGMA synchronous=NORMAL") < 0)
		return -1;
	storage->db_sync_full = full;
	return 0;
}

void sqlbox_db_body_reads_end(struct sqlbox_storage *storage)
{
	timeout_remove(&storage->to_body_reads);
	if (!storage->body_reads_txn)
		return;
	storage->body_reads_txn = FALSE;
	if (storage->body_blob != NULL) {
		(void)sqlite3_blob_close(storage->body_blob);
		storage->body_blob = NULL;
	}
	if (storage->body_rowid_stmt != NULL)
		sqlite3_reset(storage->body_rowid_stmt);
	if (sqlite3_exec(storage->body_db, "COMMIT",
			 NULL, NULL, NULL) != SQLITE_OK) {
		e_warning(storage->storage.event,
			  "sqlbox: ending the body reads' transaction "
			  "failed: %s", sqlite3_errmsg(storage->body_db));
		if (sqlite3_get_autocommit(storage->body_db) == 0) {
			(void)sqlite3_exec(storage->body_db, "ROLLBACK",
					   NULL, NULL, NULL);
		}
	}
	e_debug(storage->storage.event,
		"sqlbox: body reads ended: %u chunks in one read transaction",
		storage->body_reads_chunks);
	storage->body_reads_chunks = 0;
}

/* The body connection's reads run in one read transaction: one WAL read
   lock (its fcntl()s and fstat()s) and one blob handle for all of them,
   instead of one each per chunk. */
int sqlbox_db_body_reads_begin(struct sqlbox_storage *storage)
{
	if (storage->body_reads_txn)
		return 0;
	/* Deferred: the first read takes the snapshot. */
	if (sqlite3_exec(storage->body_db, "BEGIN",
			 NULL, NULL, NULL) != SQLITE_OK) {
		mail_storage_set_critical(&storage->storage,
			"sqlbox BEGIN of body reads: %s (%d)",
			sqlite3_errmsg(storage->body_db),
			sqlite3_extended_errcode(storage->body_db));
		return -1;
	}
	storage->body_reads_txn = TRUE;
	storage->body_reads_chunks = 0;
	/* Whatever the caller is: it ends when the process waits (the
	   hooks at syncs, writes and transaction ends end it earlier).
	   Only in the process's root ioloop, which outlives the storage:
	   a nested one could be destroyed with the timeout in it (its
	   mailbox transaction's end then ends the snapshot). */
	if (current_ioloop != NULL && current_ioloop == io_loop_get_root()) {
		storage->to_body_reads =
			timeout_add_short(0, sqlbox_db_body_reads_end,
					  storage);
	}
	return 0;
}

static int sqlbox_db_begin_sync(struct sqlbox_storage *storage, bool mail)
{
	if (storage->txn_depth > 0) {
		storage->txn_depth++;
		return 0;
	}
	/* The body connection would not see what this transaction
	   writes (a body read right after its save). */
	sqlbox_db_body_reads_end(storage);
	if (sqlbox_db_set_sync(storage, mail) < 0)
		return -1;
	storage->txn_failed = FALSE;
	if (sqlbox_db_exec(storage, "BEGIN IMMEDIATE") < 0)
		return -1;
	storage->txn_depth = 1;
	return 0;
}

int sqlbox_db_begin(struct sqlbox_storage *storage)
{
	return sqlbox_db_begin_sync(storage, FALSE);
}

int sqlbox_db_begin_mail(struct sqlbox_storage *storage)
{
	return sqlbox_db_begin_sync(storage, TRUE);
}

/* After the outermost transaction: statements outside one (autocommit)
   get the level of metadata again. */
static void sqlbox_db_end(struct sqlbox_storage *storage)
{
	(void)sqlbox_db_set_sync(storage, FALSE);
}

int sqlbox_db_commit(struct sqlbox_storage *storage)
{
	int ret = 0;

	i_assert(storage->txn_depth > 0);
	if (--storage->txn_depth > 0)
		return storage->txn_failed ? -1 : 0;
	if (storage->txn_failed) {
		(void)sqlbox_db_exec(storage, "ROLLBACK");
		ret = -1;
	} else {
		/* Still under the write lock: usage files follow commit
		   order. */
		if (storage->db_pre_commit != NULL)
			storage->db_pre_commit(storage);
		if (sqlbox_db_exec(storage, "COMMIT") < 0) {
			/* With synchronous=FULL this includes a failed
			   fsync. */
			(void)sqlbox_db_exec(storage, "ROLLBACK");
			ret = -1;
		} else {
			storage->own_commits++;
		}
	}
	sqlbox_db_end(storage);
	return ret;
}

bool sqlbox_db_foreign_version(struct sqlbox_storage *storage,
			       unsigned int *version_r)
{
	unsigned int version;

	/* SQLite's pager counts a commit of this connection, and other
	   connections' commits the next time it starts reading after
	   them. */
	if (storage->db == NULL ||
	    sqlite3_file_control(storage->db, "main",
				 SQLITE_FCNTL_DATA_VERSION,
				 &version) != SQLITE_OK)
		return FALSE;
	*version_r = version - storage->own_commits;
	return TRUE;
}

void sqlbox_db_rollback(struct sqlbox_storage *storage)
{
	i_assert(storage->txn_depth > 0);
	storage->txn_failed = TRUE;
	if (--storage->txn_depth == 0) {
		(void)sqlbox_db_exec(storage, "ROLLBACK");
		sqlbox_db_end(storage);
	}
}
