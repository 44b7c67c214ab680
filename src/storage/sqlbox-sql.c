/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "fsync-mode.h"
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
	int rc;

	if ((stmt = sqlbox_db_prepare(storage, sql)) == NULL)
		return -1;
	for (unsigned int i = 0; i < n; i++)
		sqlite3_bind_int64(stmt, i + 1, va_arg(args, int64_t));
	rc = sqlbox_db_step(storage, stmt);
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

static int sqlbox_db_begin_sync(struct sqlbox_storage *storage, bool mail)
{
	if (storage->txn_depth > 0) {
		storage->txn_depth++;
		return 0;
	}
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
			storage->db_written = TRUE;
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
