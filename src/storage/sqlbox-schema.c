/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "sqlbox-storage.h"

/* The schema of sqlbox.db and its migrations (queries: sqlbox-sql-*.c).
   Schema version 1, plus what versions 2 to 10 added (each run on new
   files and on older ones, in one write transaction).  Metadata lives
   apart from body chunks so that rebuilding an index or scanning flags
   never decrypts body pages. */
#define SQLBOX_SCHEMA_VERSION 10
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
static const char *const sqlbox_schema_v5[] = {
	/* What Dovecot's dovecot.index.cache would keep of a body, kept
	   here because sqlbox's index lives in memory only: the raw header
	   block (hdr_size bytes, with its blank line) followed by the
	   body's first byte if there is one (header parsers peek one byte
	   past a line), the line counts of header and body (sizes follow
	   from body.size), ENVELOPE and BODYSTRUCTURE.
	   Header fetches, ENVELOPE, BODYSTRUCTURE and SEARCH/SORT on
	   headers read this row, never a body chunk.  Filled at save time;
	   mail saved before version 5 gets its row the first time it is
	   read (sqlbox-mail.c). */
	"CREATE TABLE body_cache ("
	" body_id INTEGER PRIMARY KEY,"
	" header BLOB NOT NULL,"
	" hdr_size INTEGER NOT NULL,"
	" hdr_lines INTEGER NOT NULL,"
	" body_lines INTEGER NOT NULL,"
	" envelope TEXT,"
	" bodystructure TEXT)",
	"CREATE TRIGGER body_cache_delete AFTER DELETE ON body BEGIN"
	" DELETE FROM body_cache WHERE body_id = OLD.id; END",
	NULL
};

/* Version 6: what the first sync of a folder reads of every message
   (sqlbox_sync_fill(): uid, flags, modseq), as a covering index: about a
   fifth of the pages of the mail table, whose rows also carry the GUID,
   dates and body reference. */
static const char *const sqlbox_schema_v6[] = {
	"CREATE INDEX IF NOT EXISTS mail_sync"
	" ON mail (mailbox_id, uid, flags, modseq)",
	NULL
};

/* Version 7: a snapshot of each large folder's in-memory index
   (sqlbox-sync.c): UID, flags and modseq of every message as they were
   at the folder's highestmodseq `modseq`, UIDNEXT then `uidnext`, under
   the folder's UIDVALIDITY.  A cache: what changed since is in the rows
   (modseq above it, table expunged), and a folder's snapshot goes with
   its row (folder ids can be given out again).  Also an index of the
   expunged UIDs by modseq. */
static const char *const sqlbox_schema_v7[] = {
	"CREATE TABLE IF NOT EXISTS index_snapshot ("
	" mailbox_id INTEGER PRIMARY KEY,"
	" uidvalidity INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL,"
	" uidnext INTEGER NOT NULL,"
	" messages INTEGER NOT NULL,"
	" data BLOB NOT NULL)",
	"CREATE TRIGGER IF NOT EXISTS index_snapshot_delete AFTER DELETE"
	" ON mailbox BEGIN"
	" DELETE FROM index_snapshot WHERE mailbox_id = OLD.id; END",
	/* The expunges since a modseq (every sync, every fill from a
	   snapshot) without reading all of the folder's: they are never
	   dropped while the folder lives. */
	"CREATE INDEX IF NOT EXISTS expunged_modseq"
	" ON expunged (mailbox_id, modseq)",
	NULL
};

/* Version 8: body ids are never given out again.  body.id is an INTEGER
   PRIMARY KEY without AUTOINCREMENT, so SQLite would give the largest id
   again once that body is deleted; a session that looked up a mail's
   body id before another session expunged it (and saved new mail) would
   then read the new body's chunks and cache row under the old UID, a
   chunk at a time, instead of finding them gone.  The highest id
   deleted while it was the largest is kept in state ('body_id_high'),
   and new bodies take the next id above it and above every live one
   (sqlbox-sql-mail.c: SQLBOX_SQL_BODY_NEXT_ID). */
static const char *const sqlbox_schema_v8[] = {
	"CREATE TRIGGER IF NOT EXISTS body_id_high AFTER DELETE ON body"
	" WHEN OLD.id > ifnull((SELECT max(id) FROM body), 0) BEGIN"
	" INSERT OR REPLACE INTO state (key, value) VALUES ('body_id_high',"
	" max(OLD.id, ifnull((SELECT value FROM state"
	" WHERE key = 'body_id_high'), 0))); END",
	NULL
};

/* Version 9: the part of a body's cache row that a mail's sizes and
   SEARCH on its common header fields need, apart from the rest (the
   header block, ENVELOPE, BODYSTRUCTURE: about 1.5 KB, two rows to a
   page): the mail rows read ahead for FETCH and SEARCH (sqlbox-mail.c)
   read these small rows, and body_cache only for a mail that needs
   more.  `fields` holds the header fields of
   SQLBOX_SEARCH_FIELDS (sqlbox-header-block.h) out of the header block,
   as sqlbox_header_block_filter() gives them, or NULL when the block is
   not plain; the line counts and hdr_size are body_cache's.  Written with
   the body_cache row (sqlbox_db_cache_insert()); filled for the rows
   there at the migration, which reads each of them once (about as much
   as a FETCH 1:* BODY.PEEK[HEADER] of every folder). */
static const char *const sqlbox_schema_v9[] = {
	"CREATE TABLE IF NOT EXISTS body_fields ("
	" body_id INTEGER PRIMARY KEY,"
	" hdr_size INTEGER NOT NULL,"
	" hdr_lines INTEGER NOT NULL,"
	" body_lines INTEGER NOT NULL,"
	" fields BLOB)",
	"CREATE TRIGGER IF NOT EXISTS body_fields_delete AFTER DELETE ON body"
	" BEGIN DELETE FROM body_fields WHERE body_id = OLD.id; END",
	NULL
};

/* Version 10: the header block apart from ENVELOPE and BODYSTRUCTURE.
   A body_cache row held all three (about 1.5 KB, two rows to a page, the
   header block two thirds of it), so FETCH BODY.PEEK[HEADER] decrypted
   the envelopes and body structures along with the headers, and FETCH
   ENVELOPE the headers along with the envelopes.  body_header holds the
   header block (body_cache.header as it was: hdr_size bytes and the
   body's first byte, if any) with the sizes and line counts, so that a
   header read needs no other row; body_cache keeps the sizes, ENVELOPE and
   BODYSTRUCTURE.  Both rows are written together
   (sqlbox_db_cache_insert()); the migration moves the header blocks and
   drops the column (a rewrite of body_cache, which leaves its rows a
   third of their size: kept empty, the old pages would stay half
   empty, and every reader would have to know the column means nothing). */
static const char *const sqlbox_schema_v10[] = {
	"CREATE TABLE IF NOT EXISTS body_header ("
	" body_id INTEGER PRIMARY KEY,"
	" hdr_size INTEGER NOT NULL,"
	" hdr_lines INTEGER NOT NULL,"
	" body_lines INTEGER NOT NULL,"
	" header BLOB NOT NULL)",
	"CREATE TRIGGER IF NOT EXISTS body_header_delete AFTER DELETE ON body"
	" BEGIN DELETE FROM body_header WHERE body_id = OLD.id; END",
	"INSERT INTO body_header (body_id, hdr_size, hdr_lines, body_lines,"
	" header) SELECT body_id, hdr_size, hdr_lines, body_lines, header"
	" FROM body_cache ORDER BY body_id",
	"ALTER TABLE body_cache DROP COLUMN header",
	NULL
};

static int sqlbox_schema_run(struct sqlbox_storage *storage,
			     const char *const *statements)
{
	for (unsigned int i = 0; statements[i] != NULL; i++) {
		if (sqlbox_db_exec(storage, statements[i]) < 0)
			return -1;
	}
	return 0;
}

/* Inside the migration's write transaction, from any older version. */
static int sqlbox_schema_migrate_v6(struct sqlbox_storage *storage,
				    int version)
{
	return version < 6 ? sqlbox_schema_run(storage, sqlbox_schema_v6) : 0;
}

static int sqlbox_schema_migrate_v7(struct sqlbox_storage *storage,
				    int version)
{
	return version < 7 ? sqlbox_schema_run(storage, sqlbox_schema_v7) : 0;
}

static int sqlbox_schema_migrate_v8(struct sqlbox_storage *storage,
				    int version)
{
	return version < 8 ? sqlbox_schema_run(storage, sqlbox_schema_v8) : 0;
}

static int sqlbox_schema_migrate_v9(struct sqlbox_storage *storage,
				    int version)
{
	if (version >= 9)
		return 0;
	if (sqlbox_schema_run(storage, sqlbox_schema_v9) < 0)
		return -1;
	/* A new file has no body_cache row yet. */
	return version == 0 ? 0 : sqlbox_db_fields_fill(storage);
}

static int sqlbox_schema_migrate_v10(struct sqlbox_storage *storage,
				     int version)
{
	return version < 10 ? sqlbox_schema_run(storage, sqlbox_schema_v10) : 0;
}

int sqlbox_schema_migrate(struct sqlbox_storage *storage)
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
		for (unsigned int i = 0; version < 4 &&
			     sqlbox_schema_v4[i] != NULL; i++) {
			if (sqlbox_db_exec(storage, sqlbox_schema_v4[i]) < 0) {
				sqlbox_db_rollback(storage);
				return -1;
			}
		}
		for (unsigned int i = 0; version < 5 &&
			     sqlbox_schema_v5[i] != NULL; i++) {
			if (sqlbox_db_exec(storage, sqlbox_schema_v5[i]) < 0) {
				sqlbox_db_rollback(storage);
				return -1;
			}
		}
		if (sqlbox_schema_migrate_v6(storage, version) < 0 ||
		    sqlbox_schema_migrate_v7(storage, version) < 0 ||
		    sqlbox_schema_migrate_v8(storage, version) < 0 ||
		    sqlbox_schema_migrate_v9(storage, version) < 0 ||
		    sqlbox_schema_migrate_v10(storage, version) < 0) {
			sqlbox_db_rollback(storage);
			return -1;
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
