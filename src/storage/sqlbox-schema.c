/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "guid.h"
#include "ioloop.h"
#include "str.h"
#include "fdatasync-path.h"
#include "fsync-mode.h"
#include "mail-user.h"
#include "sqlbox-storage.h"

#include "cryptvfs.h"
#include "keyring.h"

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

/* Schema version 1, plus what versions 2 to 4 added (each run on new
   files and on older ones).  Metadata lives apart from body chunks so
   that rebuilding an index or scanning flags never decrypts body pages. */
#define SQLBOX_SCHEMA_VERSION 4
#define SQLBOX_OPEN_RETRY_MSECS 20
/* MAIL_SEEN in SQL text (triggers can't bind parameters). */
#define SQLBOX_SQL_SEEN "8"
static const char *const sqlbox_schema_v1[] = {
	"CREATE TABLE mailbox ("
	" id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE,"
	" guid BLOB NOT NULL,"
	" uidvalidity INTEGER NOT NULL,"
	" uidnext INTEGER NOT NULL,"
	" highestmodseq INTEGER NOT NULL,"
	" special_use TEXT)",
	"CREATE TABLE subscription (name TEXT PRIMARY KEY) WITHOUT ROWID",
	"CREATE TABLE body (id INTEGER PRIMARY KEY, size INTEGER NOT NULL)",
	"CREATE TABLE chunk ("
	" body_id INTEGER NOT NULL,"
	" seq INTEGER NOT NULL,"
	" data BLOB NOT NULL,"
	" PRIMARY KEY (body_id, seq))",
	"CREATE TABLE mail ("
	" mailbox_id INTEGER NOT NULL,"
	" uid INTEGER NOT NULL,"
	" body_id INTEGER NOT NULL,"
	" flags INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL,"
	" received INTEGER NOT NULL,"
	" saved INTEGER NOT NULL,"
	" guid TEXT NOT NULL,"
	" PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID",
	"CREATE INDEX mail_body ON mail (body_id)",
	"CREATE INDEX mail_modseq ON mail (mailbox_id, modseq)",
	"CREATE TABLE keyword ("
	" mailbox_id INTEGER NOT NULL,"
	" uid INTEGER NOT NULL,"
	" name TEXT NOT NULL,"
	" PRIMARY KEY (mailbox_id, uid, name)) WITHOUT ROWID",
	"CREATE TABLE expunged ("
	" mailbox_id INTEGER NOT NULL,"
	" uid INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL,"
	" PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID",
	"CREATE TABLE spool_done (id BLOB PRIMARY KEY) WITHOUT ROWID",
	NULL
};
static const char *const sqlbox_schema_v2[] = {
	/* Bodies whose save is still writing chunks (sqlbox-body.c). */
	"CREATE TABLE body_pending ("
	" body_id INTEGER PRIMARY KEY,"
	" started INTEGER NOT NULL)",
	/* Mailbox attributes (IMAP METADATA); type is
	   enum mail_attribute_type. */
	"CREATE TABLE attribute ("
	" mailbox_id INTEGER NOT NULL,"
	" type INTEGER NOT NULL,"
	" key TEXT NOT NULL,"
	" value BLOB NOT NULL,"
	" changed INTEGER NOT NULL,"
	" PRIMARY KEY (mailbox_id, type, key)) WITHOUT ROWID",
	NULL
};
static const char *const sqlbox_schema_v3[] = {
	/* The lowest UID no session has yet seen as \Recent (sqlbox-sync.c).
	   Mail that was there before the upgrade counts as seen. */
	"ALTER TABLE mailbox ADD COLUMN"
	" first_recent_uid INTEGER NOT NULL DEFAULT 1",
	"UPDATE mailbox SET first_recent_uid = uidnext",
	NULL
};
static const char *const sqlbox_schema_v4[] = {
	/* Values of the whole file.  'uidvalidity': the highest
	   UIDVALIDITY ever given to a folder (sqlbox_db_mailbox_create);
	   it outlives the folder, so that a name created again never gets
	   it back, whatever the clock says. */
	"CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
	" WITHOUT ROWID",
	"INSERT INTO state (key, value) SELECT 'uidvalidity',"
	" ifnull(max(uidvalidity), 0) FROM mailbox",
	/* STATUS and quota numbers of a folder, kept by the triggers below
	   in the transaction that changes the mail: STATUS, NOTIFY and
	   the quota plugin read them without scanning mail or bodies. */
	"ALTER TABLE mailbox ADD COLUMN messages INTEGER NOT NULL DEFAULT 0",
	"ALTER TABLE mailbox ADD COLUMN unseen INTEGER NOT NULL DEFAULT 0",
	"ALTER TABLE mailbox ADD COLUMN vsize INTEGER NOT NULL DEFAULT 0",
	"UPDATE mailbox SET"
	" messages = (SELECT count(*) FROM mail WHERE mailbox_id = mailbox.id),"
	" unseen = (SELECT count(*) FROM mail WHERE mailbox_id = mailbox.id"
	" AND (flags & "SQLBOX_SQL_SEEN") = 0),"
	" vsize = (SELECT ifnull(sum(b.size), 0) FROM mail m"
	" JOIN body b ON b.id = m.body_id WHERE m.mailbox_id = mailbox.id)",
	"CREATE TRIGGER mail_counters_insert AFTER INSERT ON mail BEGIN"
	" UPDATE mailbox SET messages = messages + 1,"
	" unseen = unseen + ((NEW.flags & "SQLBOX_SQL_SEEN") = 0),"
	" vsize = vsize + (SELECT size FROM body WHERE id = NEW.body_id)"
	" WHERE id = NEW.mailbox_id; END",
	"CREATE TRIGGER mail_counters_delete AFTER DELETE ON mail BEGIN"
	" UPDATE mailbox SET messages = messages - 1,"
	" unseen = unseen - ((OLD.flags & "SQLBOX_SQL_SEEN") = 0),"
	" vsize = vsize - (SELECT size FROM body WHERE id = OLD.body_id)"
	" WHERE id = OLD.mailbox_id; END",
	"CREATE TRIGGER mail_counters_flags AFTER UPDATE OF flags ON mail"
	" WHEN (OLD.flags & "SQLBOX_SQL_SEEN") <>"
	" (NEW.flags & "SQLBOX_SQL_SEEN") BEGIN"
	" UPDATE mailbox SET unseen = unseen +"
	" ((NEW.flags & "SQLBOX_SQL_SEEN") = 0) -"
	" ((OLD.flags & "SQLBOX_SQL_SEEN") = 0)"
	" WHERE id = NEW.mailbox_id; END",
	NULL
};

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
static int sqlbox_db_set_sync(struct sqlbox_storage *storage, bool mail)
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
		sqlbox_usage_update(storage);
		if (sqlbox_db_exec(storage, "COMMIT") < 0) {
			/* With synchronous=FULL this includes a failed
			   fsync. */
			(void)sqlbox_db_exec(storage, "ROLLBACK");
			ret = -1;
		}
	}
	sqlbox_db_end(storage);
	return ret;
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

/* ---- files ---- */

static bool sqlbox_storage_fsync(struct sqlbox_storage *storage)
{
	return storage->storage.set->parsed_fsync_mode != FSYNC_MODE_NEVER;
}

int sqlbox_fsync_dir(struct sqlbox_storage *storage, const char *dir)
{
	if (!sqlbox_storage_fsync(storage))
		return 0;
	if (fdatasync_path(dir) < 0) {
		mail_storage_set_critical(&storage->storage,
			"fdatasync_path(%s) failed: %m", dir);
		return -1;
	}
	return 0;
}

int sqlbox_root_dir_create(struct sqlbox_storage *storage)
{
	const char *slash;

	if (mkdir(storage->root_dir, 0700) < 0) {
		if (errno == EEXIST)
			return 0;
		mail_storage_set_critical(&storage->storage,
			"mkdir(%s) failed: %m", storage->root_dir);
		return -1;
	}
	/* root_dir is absolute (sqlbox_storage_create() checks). */
	slash = strrchr(storage->root_dir, '/');
	return sqlbox_fsync_dir(storage, slash == storage->root_dir ? "/" :
				t_strdup_until(storage->root_dir, slash));
}

/* ---- keys ---- */

int sqlbox_keys_unwrap(struct mail_user *user, const char *home,
		       struct kr_keys **keys_r, const char **error_r)
{
	const char *field = mail_user_plugin_getenv(user, SQLBOX_KEK_SETTING);
	struct kr_keyfile *kf;
	struct kr_secret *kek;
	struct kr_error err;
	unsigned int slot_id;
	const char *path;
	int ret;

	*keys_r = NULL;
	if (field == NULL || field[0] == '\0') {
		*error_r = "no key in this session";
		return 0;
	}
	if (kr_kek_decode(field, &slot_id, &kek) < 0) {
		*error_r = "malformed session key";
		return 0;
	}
	path = t_strconcat(home, "/", SQLBOX_KEYFILE_FNAME, NULL);
	ret = kr_keyfile_read(path, &kf, &err);
	if (ret <= 0) {
		kr_secret_free(&kek);
		*error_r = ret == 0 ? t_strdup_printf("no keyfile %s", path) :
			t_strdup(err.text);
		return ret == 0 ? 0 : -1;
	}
	ret = kr_slot_unwrap(kf, slot_id, kr_secret_data(kek), keys_r, &err);
	kr_secret_free(&kek);
	kr_keyfile_free(&kf);
	if (ret == 0)
		*error_r = "the session key does not open the keyfile";
	else if (ret < 0)
		*error_r = t_strdup(err.text);
	return ret;
}

int sqlbox_public_key_read(struct mail_user *user, unsigned char *pk_r,
			   const char **error_r)
{
	struct kr_keyfile *kf;
	struct kr_error err;
	const char *home, *path;
	int ret;

	if (mail_user_get_home(user, &home) <= 0) {
		*error_r = "no home directory";
		return -1;
	}
	path = t_strconcat(home, "/", SQLBOX_KEYFILE_FNAME, NULL);
	ret = kr_keyfile_read(path, &kf, &err);
	if (ret <= 0) {
		*error_r = ret == 0 ? "mailbox not activated (no keyfile)" :
			t_strdup(err.text);
		return -1;
	}
	memcpy(pk_r, kr_keyfile_public_key(kf), KR_PUBLIC_KEY_BYTES);
	kr_keyfile_free(&kf);
	return 0;
}

/* ---- open ---- */

static int sqlbox_db_schema(struct sqlbox_storage *storage)
{
	sqlite3_stmt *stmt;
	int version = -1;

	if ((stmt = sqlbox_db_prepare(storage, "PRAGMA user_version")) == NULL)
		return -1;
	if (sqlbox_db_step(storage, stmt) == SQLITE_ROW)
		version = sqlite3_column_int(stmt, 0);
	sqlite3_finalize(stmt);
	i_assert(MAIL_SEEN == 8); /* SQLBOX_SQL_SEEN */
	if (version == SQLBOX_SCHEMA_VERSION)
		return 0;
	if (version < 0 || version > SQLBOX_SCHEMA_VERSION) {
		mail_storage_set_critical(&storage->storage,
			"sqlbox %s: unknown schema version %d",
			storage->db_path, version);
		return -1;
	}
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	/* Re-check under the write lock: another process may have won. */
	if ((stmt = sqlbox_db_prepare(storage, "PRAGMA user_version")) == NULL) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	if (sqlbox_db_step(storage, stmt) == SQLITE_ROW)
		version = sqlite3_column_int(stmt, 0);
	sqlite3_finalize(stmt);
	if (version < SQLBOX_SCHEMA_VERSION) {
		for (unsigned int i = 0; version < 1 &&
			     sqlbox_schema_v1[i] != NULL; i++) {
			if (sqlbox_db_exec(storage, sqlbox_schema_v1[i]) < 0) {
				sqlbox_db_rollback(storage);
				return -1;
			}
		}
		for (unsigned int i = 0; version < 2 &&
			     sqlbox_schema_v2[i] != NULL; i++) {
			if (sqlbox_db_exec(storage, sqlbox_schema_v2[i]) < 0) {
				sqlbox_db_rollback(storage);
				return -1;
			}
		}
		for (unsigned int i = 0; version < 3 &&
			     sqlbox_schema_v3[i] != NULL; i++) {
			if (sqlbox_db_exec(storage, sqlbox_schema_v3[i]) < 0) {
				sqlbox_db_rollback(storage);
				return -1;
			}
		}
		for (unsigned int i = 0; sqlbox_schema_v4[i] != NULL; i++) {
			if (sqlbox_db_exec(storage, sqlbox_schema_v4[i]) < 0) {
				sqlbox_db_rollback(storage);
				return -1;
			}
		}
		if (sqlbox_db_exec(storage, t_strdup_printf(
				"PRAGMA user_version = %d",
				SQLBOX_SCHEMA_VERSION)) < 0 ||
		    (version == 0 &&
		     sqlbox_db_mailbox_create(storage, "INBOX", NULL,
					      NULL) < 0)) {
			sqlbox_db_rollback(storage);
			return -1;
		}
	}
	return sqlbox_db_commit(storage);
}

/* Drops what saves that crashed mid-way left behind.  Cheap when there is
   nothing: the pending table is empty except during large saves. */
static int sqlbox_db_pending_gc(struct sqlbox_storage *storage)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT 1 FROM body_pending WHERE started < ? LIMIT 1");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, ioloop_time - SQLBOX_PENDING_STALE_SECS);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_ROW)
		return rc < 0 ? -1 : 0;
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	if (sqlbox_db_exec_args(storage,
		"DELETE FROM chunk WHERE body_id IN (SELECT body_id FROM"
		" body_pending WHERE started < ?1)", 1,
		(int64_t)(ioloop_time - SQLBOX_PENDING_STALE_SECS)) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM body WHERE id IN (SELECT body_id FROM"
		" body_pending WHERE started < ?1)", 1,
		(int64_t)(ioloop_time - SQLBOX_PENDING_STALE_SECS)) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM body_pending WHERE started < ?1", 1,
		(int64_t)(ioloop_time - SQLBOX_PENDING_STALE_SECS)) < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}

static void sqlbox_db_set_locked(struct sqlbox_storage *storage,
				 const char *reason)
{
	/* The reason names no secret: it says which part is missing.  Only
	   debug here: LMTP is locked by design, mailbox open logs errors. */
	e_debug(storage->storage.event, "%s (%s)", SQLBOX_ERRSTR_LOCKED,
		reason);
	storage->locked = TRUE;
	mail_storage_set_error(&storage->storage, MAIL_ERROR_UNAVAILABLE,
			       SQLBOX_ERRSTR_LOCKED);
}

int sqlbox_db_open(struct sqlbox_storage *storage)
{
	struct mail_user *user = storage->storage.user;
	struct cvfs_error cerr;
	const char *home, *error;
	struct stat st;
	bool created = FALSE;
	int ret;

	if (storage->db != NULL)
		return 0;
	if (mail_user_get_home(user, &home) <= 0) {
		mail_storage_set_critical(&storage->storage,
					  "sqlbox: user has no home directory");
		return -1;
	}
	if (storage->keys == NULL) {
		ret = sqlbox_keys_unwrap(user, home, &storage->keys, &error);
		if (ret < 0) {
			mail_storage_set_critical(&storage->storage,
				"sqlbox: reading the keyfile failed: %s", error);
			return -1;
		}
		if (ret == 0) {
			sqlbox_db_set_locked(storage, error);
			return -1;
		}
	}
	if (sqlbox_root_dir_create(storage) < 0)
		return -1;
	if (stat(storage->db_path, &st) < 0) {
		if (errno != ENOENT) {
			mail_storage_set_critical(&storage->storage,
				"stat(%s) failed: %m", storage->db_path);
			return -1;
		}
		created = TRUE;
	}
	/* The key check at open reads the schema before a busy timeout can
	   be set: another process's checkpoint at close can hold the lock
	   for a moment, so retry within the same bound as other writers. */
	for (unsigned int waited = 0;; waited += SQLBOX_OPEN_RETRY_MSECS) {
		ret = cvfs_open_v2(storage->db_path, &storage->db,
				   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
				   storage->keys->master_key, CVFS_KEY_BYTES,
				   &cerr);
		if ((ret & 0xff) != SQLITE_BUSY && (ret & 0xff) != SQLITE_LOCKED)
			break;
		if (waited >= SQLBOX_BUSY_TIMEOUT_MSECS)
			break;
		usleep(SQLBOX_OPEN_RETRY_MSECS * 1000);
	}
	if (ret != SQLITE_OK) {
		if (ret == SQLITE_NOTADB) {
			/* Never create anything over a file we can't read. */
			sqlbox_db_set_locked(storage,
				"the key does not open the database");
		} else {
			mail_storage_set_critical(&storage->storage,
				"sqlbox: opening %s failed: %s",
				storage->db_path, cerr.text);
		}
		return -1;
	}
	sqlite3_busy_timeout(storage->db, SQLBOX_BUSY_TIMEOUT_MSECS);
	storage->db_sync_full = FALSE;
	if (sqlbox_db_exec(storage, "PRAGMA journal_mode=WAL") < 0 ||
	    sqlbox_db_exec(storage, "PRAGMA synchronous=NORMAL") < 0 ||
	    sqlbox_db_set_sync(storage, FALSE) < 0 ||
	    sqlbox_db_exec(storage, "PRAGMA cache_size=-16384") < 0 ||
	    sqlbox_db_exec(storage, "PRAGMA foreign_keys=OFF") < 0 ||
	    sqlbox_db_schema(storage) < 0 ||
	    sqlbox_db_pending_gc(storage) < 0 ||
	    /* The new file's (and its WAL's) directory entries. */
	    (created && sqlbox_fsync_dir(storage, storage->root_dir) < 0)) {
		sqlbox_db_close(storage);
		return -1;
	}
	if (sqlbox_spool_pending(storage) &&
	    sqlbox_spool_import(storage) < 0) {
		/* The mail stays in the spool for the next open. */
		e_error(storage->storage.event, "sqlbox: spool import failed: %s",
			mail_storage_get_last_internal_error(&storage->storage,
							     NULL));
	}
	return 0;
}

void sqlbox_db_close(struct sqlbox_storage *storage)
{
	if (storage->db != NULL)
		cvfs_close(&storage->db);
	storage->txn_depth = 0;
}

/* ---- folders ---- */

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

int sqlbox_db_mailbox_create(struct sqlbox_storage *storage,
			     const char *name,
			     const struct mailbox_update *update,
			     int64_t *id_r)
{
	sqlite3_stmt *stmt;
	guid_128_t guid;
	uint32_t uid_validity = 0;
	int rc;

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
	if (stmt == NULL) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(stmt, 2, guid, sizeof(guid), SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, uid_validity);
	rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc == SQLITE_CONSTRAINT) {
		sqlbox_db_rollback(storage);
		mail_storage_set_error(&storage->storage, MAIL_ERROR_EXISTS,
				       "Mailbox already exists");
		return -1;
	}
	if (rc != SQLITE_DONE) {
		sqlbox_db_set_critical(storage, "mailbox insert");
		sqlbox_db_rollback(storage);
		return -1;
	}
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
	int rc;

	if (sqlbox_db_begin(storage) < 0)
		return -1;
	/* The folder and its children: "old" and "old/..." */
	stmt = sqlbox_db_prepare(storage,
		"UPDATE mailbox SET name = ?2 || substr(name, length(?1) + 1)"
		" WHERE name = ?1 OR substr(name, 1, length(?1) + 1) = ?1 || '/'");
	if (stmt == NULL) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	sqlite3_bind_text(stmt, 1, old_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, new_name, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc == SQLITE_CONSTRAINT) {
		sqlbox_db_rollback(storage);
		mail_storage_set_error(&storage->storage, MAIL_ERROR_EXISTS,
				       "Target mailbox already exists");
		return -1;
	}
	if (rc == SQLITE_DONE && sqlite3_changes(storage->db) == 0) {
		sqlbox_db_rollback(storage);
		mail_storage_set_error(&storage->storage, MAIL_ERROR_NOTFOUND,
			T_MAIL_ERR_MAILBOX_NOT_FOUND(old_name));
		return -1;
	}
	if (rc != SQLITE_DONE) {
		sqlbox_db_set_critical(storage, "mailbox rename");
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}

int sqlbox_db_inbox_rename(struct sqlbox_storage *storage,
			   const char *new_name)
{
	sqlite3_stmt *stmt;
	int rc;

	if (sqlbox_db_begin(storage) < 0)
		return -1;
	stmt = sqlbox_db_prepare(storage,
		"UPDATE mailbox SET name = ? WHERE name = 'INBOX'");
	if (stmt == NULL) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	sqlite3_bind_text(stmt, 1, new_name, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc == SQLITE_CONSTRAINT) {
		sqlbox_db_rollback(storage);
		mail_storage_set_error(&storage->storage, MAIL_ERROR_EXISTS,
				       "Target mailbox already exists");
		return -1;
	}
	if (rc != SQLITE_DONE) {
		sqlbox_db_set_critical(storage, "INBOX rename");
		sqlbox_db_rollback(storage);
		return -1;
	}
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

	stmt = sqlbox_db_prepare(storage,
		"SELECT highestmodseq, uidnext FROM mailbox WHERE id = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlbox_db_step(storage, stmt);
	if (rc == SQLITE_ROW) {
		*highest_modseq_r = sqlite3_column_int64(stmt, 0);
		*uid_next_r = sqlite3_column_int64(stmt, 1);
	}
	sqlite3_finalize(stmt);
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
	return sqlbox_db_exec_args(storage,
		"UPDATE mailbox SET highestmodseq = max(highestmodseq, ?1),"
		" uidnext = max(uidnext, ?2) WHERE id = ?3", 3,
		(int64_t)highest_modseq, (int64_t)uid_next, id);
}

/* ---- mail ---- */

int sqlbox_db_body_insert(struct sqlbox_storage *storage,
			  const unsigned char *data, size_t size,
			  int64_t *body_id_r)
{
	sqlite3_stmt *stmt;
	int64_t body_id;
	size_t off = 0;
	int seq = 0;

	if (sqlbox_db_exec_args(storage, "INSERT INTO body (size) VALUES (?)",
				1, (int64_t)size) < 0)
		return -1;
	body_id = sqlite3_last_insert_rowid(storage->db);
	stmt = sqlbox_db_prepare(storage,
		"INSERT INTO chunk (body_id, seq, data) VALUES (?, ?, ?)");
	if (stmt == NULL)
		return -1;
	do {
		size_t n = I_MIN(size - off, SQLBOX_CHUNK_BYTES);

		sqlite3_bind_int64(stmt, 1, body_id);
		sqlite3_bind_int(stmt, 2, seq++);
		sqlite3_bind_blob(stmt, 3, data + off, n, SQLITE_STATIC);
		if (sqlbox_db_step(storage, stmt) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
		sqlite3_reset(stmt);
		off += n;
	} while (off < size);
	sqlite3_finalize(stmt);
	*body_id_r = body_id;
	return 0;
}

int sqlbox_db_mail_insert(struct sqlbox_storage *storage, int64_t mailbox_id,
			  uint32_t uid, int64_t body_id, enum mail_flags flags,
			  const char *const *keywords, uint64_t modseq,
			  time_t received, time_t saved, const char *guid)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"INSERT INTO mail (mailbox_id, uid, body_id, flags, modseq,"
		" received, saved, guid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mailbox_id);
	sqlite3_bind_int64(stmt, 2, uid);
	sqlite3_bind_int64(stmt, 3, body_id);
	sqlite3_bind_int64(stmt, 4, flags & ENUM_NEGATE(MAIL_RECENT));
	sqlite3_bind_int64(stmt, 5, (int64_t)modseq);
	sqlite3_bind_int64(stmt, 6, received);
	sqlite3_bind_int64(stmt, 7, saved);
	sqlite3_bind_text(stmt, 8, guid, -1, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	if (rc < 0)
		return -1;
	if (keywords == NULL || keywords[0] == NULL)
		return 0;
	stmt = sqlbox_db_prepare(storage,
		"INSERT OR IGNORE INTO keyword (mailbox_id, uid, name)"
		" VALUES (?, ?, ?)");
	if (stmt == NULL)
		return -1;
	for (; *keywords != NULL; keywords++) {
		sqlite3_bind_int64(stmt, 1, mailbox_id);
		sqlite3_bind_int64(stmt, 2, uid);
		sqlite3_bind_text(stmt, 3, *keywords, -1, SQLITE_STATIC);
		if (sqlbox_db_step(storage, stmt) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
		sqlite3_reset(stmt);
	}
	sqlite3_finalize(stmt);
	return 0;
}

int sqlbox_db_bodies_gc(struct sqlbox_storage *storage)
{
	if (sqlbox_db_exec(storage,
		"DELETE FROM chunk WHERE body_id IN (SELECT id FROM body"
		" WHERE NOT EXISTS (SELECT 1 FROM mail WHERE body_id = body.id)"
		" AND id NOT IN (SELECT body_id FROM body_pending))") < 0)
		return -1;
	return sqlbox_db_exec(storage,
		"DELETE FROM body WHERE NOT EXISTS"
		" (SELECT 1 FROM mail WHERE body_id = body.id)"
		" AND id NOT IN (SELECT body_id FROM body_pending)");
}

int sqlbox_db_body_pending_insert(struct sqlbox_storage *storage,
				  int64_t *body_id_r)
{
	int64_t body_id;

	if (sqlbox_db_exec(storage, "INSERT INTO body (size) VALUES (-1)") < 0)
		return -1;
	body_id = sqlite3_last_insert_rowid(storage->db);
	if (sqlbox_db_exec_args(storage,
		"INSERT INTO body_pending (body_id, started) VALUES (?, ?)", 2,
		body_id, (int64_t)ioloop_time) < 0)
		return -1;
	*body_id_r = body_id;
	return 0;
}

int sqlbox_db_body_pending_finish(struct sqlbox_storage *storage,
				  int64_t body_id, uoff_t size)
{
	if (sqlbox_db_exec_args(storage,
		"UPDATE body SET size = ? WHERE id = ?", 2,
		(int64_t)size, body_id) < 0)
		return -1;
	if (sqlbox_db_exec_args(storage,
		"DELETE FROM body_pending WHERE body_id = ?", 1, body_id) < 0)
		return -1;
	if (sqlite3_changes(storage->db) != 1) {
		/* Taken by the stale GC: the chunks are gone. */
		mail_storage_set_critical(&storage->storage,
			"sqlbox: body %"PRId64" of a save was removed as stale",
			body_id);
		return -1;
	}
	return 0;
}

int sqlbox_db_body_pending_abort(struct sqlbox_storage *storage,
				 int64_t body_id)
{
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	if (sqlbox_db_exec_args(storage,
		"DELETE FROM chunk WHERE body_id = ?", 1, body_id) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM body WHERE id = ?", 1, body_id) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM body_pending WHERE body_id = ?", 1, body_id) < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}

int sqlbox_db_chunk_insert(struct sqlbox_storage *storage, int64_t body_id,
			   uint32_t seq, const void *data, size_t size)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"INSERT INTO chunk (body_id, seq, data) VALUES (?, ?, ?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, body_id);
	sqlite3_bind_int64(stmt, 2, seq);
	sqlite3_bind_blob(stmt, 3, data, size, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

int sqlbox_db_chunk_read(struct sqlbox_storage *storage, int64_t body_id,
			 int64_t seq, buffer_t *buf)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT data FROM chunk WHERE body_id = ? AND seq = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, body_id);
	sqlite3_bind_int64(stmt, 2, seq);
	rc = sqlbox_db_step(storage, stmt);
	buffer_set_used_size(buf, 0);
	if (rc == SQLITE_ROW) {
		buffer_append(buf, sqlite3_column_blob(stmt, 0),
			      sqlite3_column_bytes(stmt, 0));
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : (rc == SQLITE_ROW ? 1 : 0);
}

int sqlbox_db_mail_lookup(struct sqlbox_storage *storage, int64_t mailbox_id,
			  uint32_t uid, pool_t pool,
			  struct sqlbox_mail_row *row_r)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT m.body_id, b.size, m.received, m.saved, m.guid"
		" FROM mail m JOIN body b ON b.id = m.body_id"
		" WHERE m.mailbox_id = ? AND m.uid = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mailbox_id);
	sqlite3_bind_int64(stmt, 2, uid);
	rc = sqlbox_db_step(storage, stmt);
	if (rc == SQLITE_ROW) {
		row_r->body_id = sqlite3_column_int64(stmt, 0);
		row_r->size = sqlite3_column_int64(stmt, 1);
		row_r->received = sqlite3_column_int64(stmt, 2);
		row_r->saved = sqlite3_column_int64(stmt, 3);
		row_r->guid = p_strdup(pool,
			(const char *)sqlite3_column_text(stmt, 4));
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : (rc == SQLITE_ROW ? 1 : 0);
}

int sqlbox_db_body_read(struct sqlbox_storage *storage, int64_t body_id,
			buffer_t *buf)
{
	sqlite3_stmt *stmt;
	int rc, ret = 0;

	stmt = sqlbox_db_prepare(storage,
		"SELECT data FROM chunk WHERE body_id = ? ORDER BY seq");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, body_id);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		buffer_append(buf, sqlite3_column_blob(stmt, 0),
			      sqlite3_column_bytes(stmt, 0));
		ret = 1;
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : ret;
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
