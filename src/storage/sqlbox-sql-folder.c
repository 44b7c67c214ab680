/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "guid.h"
#include "ioloop.h"
#include "sqlbox-storage.h"

/* Queries on folders: mailbox rows, their counters, the file's state
   values (UIDVALIDITY) and subscriptions. */

int sqlbox_db_mailbox_lookup(struct sqlbox_storage *storage,
			     const char *name, int64_t *id_r,
			     uint32_t *uid_validity_r, guid_128_t guid_r)
{
	sqlite3_stmt *stmt;
	int rc, ret = 0;

	stmt = sqlbox_db_prepare(storage,
		"SELECT id, uidvalidity, guid FROM mailbox WHERE name = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	if (rc < 0)
		ret = -1;
	else if (rc == SQLITE_ROW) {
		if (id_r != NULL)
			*id_r = sqlite3_column_int64(stmt, 0);
		if (uid_validity_r != NULL)
			*uid_validity_r = sqlite3_column_int64(stmt, 1);
		if (guid_r != NULL) {
			memset(guid_r, 0, GUID_128_SIZE);
			if (sqlite3_column_bytes(stmt, 2) == GUID_128_SIZE)
				memcpy(guid_r, sqlite3_column_blob(stmt, 2),
				       GUID_128_SIZE);
		}
		ret = 1;
	}
	sqlite3_finalize(stmt);
	return ret;
}

static int sqlbox_db_state_get(struct sqlbox_storage *storage,
			       const char *key, int64_t *value_r)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT value FROM state WHERE key = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	*value_r = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

int sqlbox_db_uidvalidity_used(struct sqlbox_storage *storage,
			       uint32_t uid_validity)
{
	return sqlbox_db_exec_args(storage,
		"INSERT INTO state (key, value) VALUES ('uidvalidity', ?1)"
		" ON CONFLICT (key) DO UPDATE SET value = max(value, ?1)", 1,
		(int64_t)uid_validity);
}

/* RFC 3501 2.3.1.1: a name must never get a UIDVALIDITY again, so the
   next one is above every value this file ever gave out (deleted and
   renamed folders included), and the clock only pushes it further up,
   as Dovecot's own storages do.  Caller holds the write transaction. */
static int
sqlbox_db_uidvalidity_next(struct sqlbox_storage *storage,
			   uint32_t *uid_validity_r)
{
	int64_t highest;

	if (sqlbox_db_state_get(storage, "uidvalidity", &highest) < 0)
		return -1;
	if (highest >= (int64_t)(uint32_t)-1) {
		mail_storage_set_critical(&storage->storage,
			"sqlbox %s: every UIDVALIDITY has been used",
			storage->db_path);
		return -1;
	}
	*uid_validity_r = I_MAX((int64_t)(uint32_t)ioloop_time, highest + 1);
	return 0;
}

/* Runs stmt, a write of mailbox rows inside the caller's transaction
   (NULL: its prepare failed), and finalizes it.  Returns 0, or -1 with
   the transaction rolled back and the error set: exists_error if a name
   is taken, a critical one naming what otherwise. */
static int
sqlbox_db_mailbox_write(struct sqlbox_storage *storage, sqlite3_stmt *stmt,
			const char *exists_error, const char *what)
{
	int rc;

	if (stmt == NULL) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc == SQLITE_CONSTRAINT) {
		sqlbox_db_rollback(storage);
		mail_storage_set_error(&storage->storage, MAIL_ERROR_EXISTS,
				       exists_error);
		return -1;
	}
	if (rc != SQLITE_DONE) {
		sqlbox_db_set_critical(storage, what);
		sqlbox_db_rollback(storage);
		return -1;
	}
	return 0;
}

int sqlbox_db_mailbox_create(struct sqlbox_storage *storage,
			     const char *name,
			     const struct mailbox_update *update,
			     int64_t *id_r)
{
	sqlite3_stmt *stmt;
	guid_128_t guid;
	uint32_t uid_validity = 0;

	if (update != NULL && !guid_128_is_empty(update->mailbox_guid))
		memcpy(guid, update->mailbox_guid, sizeof(guid));
	else
		guid_128_generate(guid);
	if (update != NULL)
		uid_validity = update->uid_validity;
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	if (uid_validity == 0 &&
	    sqlbox_db_uidvalidity_next(storage, &uid_validity) < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	stmt = sqlbox_db_prepare(storage,
		"INSERT INTO mailbox (name, guid, uidvalidity, uidnext,"
		" highestmodseq) VALUES (?, ?, ?, 1, 1)");
	if (stmt != NULL) {
		sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_blob(stmt, 2, guid, sizeof(guid), SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 3, uid_validity);
	}
	if (sqlbox_db_mailbox_write(storage, stmt, "Mailbox already exists",
				    "mailbox insert") < 0)
		return -1;
	if (id_r != NULL)
		*id_r = sqlite3_last_insert_rowid(storage->db);
	if (sqlbox_db_uidvalidity_used(storage, uid_validity) < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}

int sqlbox_db_mailbox_delete(struct sqlbox_storage *storage, int64_t id)
{
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	if (sqlbox_db_exec_args(storage,
			"DELETE FROM keyword WHERE mailbox_id = ?", 1, id) < 0 ||
	    sqlbox_db_exec_args(storage,
			"DELETE FROM mail WHERE mailbox_id = ?", 1, id) < 0 ||
	    sqlbox_db_exec_args(storage,
			"DELETE FROM expunged WHERE mailbox_id = ?", 1, id) < 0 ||
	    sqlbox_db_exec_args(storage,
			"DELETE FROM attribute WHERE mailbox_id = ?", 1, id) < 0 ||
	    sqlbox_db_exec_args(storage,
			"DELETE FROM mailbox WHERE id = ?", 1, id) < 0 ||
	    sqlbox_db_bodies_gc(storage) < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}

int sqlbox_db_mailbox_rename(struct sqlbox_storage *storage,
			     const char *old_name, const char *new_name)
{
	sqlite3_stmt *stmt;

	if (sqlbox_db_begin(storage) < 0)
		return -1;
	/* The folder and its children: "old" and "old/..." */
	stmt = sqlbox_db_prepare(storage,
		"UPDATE mailbox SET name = ?2 || substr(name, length(?1) + 1)"
		" WHERE name = ?1 OR substr(name, 1, length(?1) + 1) = ?1 || '/'");
	if (stmt != NULL) {
		sqlite3_bind_text(stmt, 1, old_name, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, new_name, -1, SQLITE_STATIC);
	}
	if (sqlbox_db_mailbox_write(storage, stmt,
				    "Target mailbox already exists",
				    "mailbox rename") < 0)
		return -1;
	if (sqlite3_changes(storage->db) == 0) {
		sqlbox_db_rollback(storage);
		mail_storage_set_error(&storage->storage, MAIL_ERROR_NOTFOUND,
			T_MAIL_ERR_MAILBOX_NOT_FOUND(old_name));
		return -1;
	}
	return sqlbox_db_commit(storage);
}

int sqlbox_db_inbox_rename(struct sqlbox_storage *storage,
			   const char *new_name)
{
	sqlite3_stmt *stmt;

	if (sqlbox_db_begin(storage) < 0)
		return -1;
	stmt = sqlbox_db_prepare(storage,
		"UPDATE mailbox SET name = ? WHERE name = 'INBOX'");
	if (stmt != NULL)
		sqlite3_bind_text(stmt, 1, new_name, -1, SQLITE_STATIC);
	if (sqlbox_db_mailbox_write(storage, stmt,
				    "Target mailbox already exists",
				    "INBOX rename") < 0)
		return -1;
	/* A fresh UIDVALIDITY: INBOX's old UIDs now name other mail. */
	if (sqlbox_db_mailbox_create(storage, "INBOX", NULL, NULL) < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}

int sqlbox_db_mailbox_counters(struct sqlbox_storage *storage, int64_t id,
			       uint64_t *highest_modseq_r,
			       uint32_t *uid_next_r)
{
	sqlite3_stmt *stmt;
	int rc;

	/* Kept: every command's sync reads them. */
	stmt = sqlbox_db_prepare_kept(storage,
		"SELECT highestmodseq, uidnext FROM mailbox WHERE id = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlbox_db_step(storage, stmt);
	if (rc == SQLITE_ROW) {
		*highest_modseq_r = sqlite3_column_int64(stmt, 0);
		*uid_next_r = sqlite3_column_int64(stmt, 1);
	}
	sqlbox_db_kept_done(stmt);
	if (rc == SQLITE_DONE) {
		mail_storage_set_error(&storage->storage, MAIL_ERROR_NOTFOUND,
				       "Mailbox was deleted");
		return -1;
	}
	return rc == SQLITE_ROW ? 0 : -1;
}

int sqlbox_db_mailbox_set_counters(struct sqlbox_storage *storage,
				   int64_t id, uint64_t highest_modseq,
				   uint32_t uid_next)
{
	/* Only a row that changes: every sync ends with this, and a
	   session that changed nothing then counts no change
	   (sqlite3_total_changes64(), sqlbox_fts_usage_update()). */
	return sqlbox_db_exec_args(storage,
		"UPDATE mailbox SET highestmodseq = max(highestmodseq, ?1),"
		" uidnext = max(uidnext, ?2)"
		" WHERE id = ?3 AND (highestmodseq < ?1 OR uidnext < ?2)", 3,
		(int64_t)highest_modseq, (int64_t)uid_next, id);
}

int sqlbox_db_set_subscribed(struct sqlbox_storage *storage,
			     const char *name, bool set)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage, set ?
		"INSERT OR IGNORE INTO subscription (name) VALUES (?)" :
		"DELETE FROM subscription WHERE name = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}
