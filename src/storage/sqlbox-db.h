/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef SQLBOX_DB_H
#define SQLBOX_DB_H

/* The database layer of the mail storage `sqlbox`: the user's SQLite file
   (sqlbox.db), opened with the keys the session's KEK unwraps.  Layers,
   each calling only those below it (tests/check-calls.py):
     sqlbox-db.c          open/close: keys, the file, pragmas, migration
     sqlbox-schema.c      the schema and its migrations
     sqlbox-sql-folder.c  queries on folders, state, subscriptions
     sqlbox-sql-mail.c    queries on bodies, chunks, mail rows
     sqlbox-sql.c         statements and transactions
   Included by sqlbox-storage.h; its struct sqlbox_storage holds the
   connection (db, keys, transaction state). */

#include "guid.h"
#include "mail-types.h"

#include <sqlite3.h>

struct kr_keys;
struct mail_user;
struct mailbox_update;
struct sqlbox_storage;

/* What Dovecot's index cache would keep of a body, in its rows of tables
   body_header (the raw header block, hdr_size bytes, followed by the
   body's first byte if any: header_size bytes in all; the line counts)
   and body_cache (the line counts; ENVELOPE and BODYSTRUCTURE, NULL
   until known). */
struct sqlbox_body_cache {
	const unsigned char *header;
	size_t header_size, hdr_size;
	unsigned int hdr_lines, body_lines;
	const char *envelope, *bodystructure;
};

/* The heavy parts of a mail's row, each read when a mail needs it:
   the body's body_header row (the header block) and its body_cache row
   (ENVELOPE, BODYSTRUCTURE). */
enum sqlbox_row_part {
	SQLBOX_ROW_HEADER = 0x01,
	SQLBOX_ROW_SPECIAL = 0x02,
};
#define SQLBOX_ROW_PARTS_ALL (SQLBOX_ROW_HEADER | SQLBOX_ROW_SPECIAL)

/* A mail's row, light or with heavy parts.  A light row (the mail rows
   read ahead for FETCH and SEARCH, sqlbox-mail.c) has of the body's
   cache rows only what table body_fields keeps: the sizes and line
   counts of cache, and the search fields; heavy parts add the header
   block (body_header) or ENVELOPE and BODYSTRUCTURE (body_cache). */
struct sqlbox_mail_row {
	uint32_t uid;
	int64_t body_id;
	uoff_t size;
	time_t received, saved;
	const char *guid;
	/* The body's cache rows, if it has them (cached): hdr_size,
	   hdr_lines and body_lines always; header and header_size once the
	   part SQLBOX_ROW_HEADER was read and found, envelope and
	   bodystructure once SQLBOX_ROW_SPECIAL was. */
	struct sqlbox_body_cache cache;
	/* body_fields.fields, fields_size bytes, of a light row: the
	   header block's SQLBOX_SEARCH_FIELDS (sqlbox-header-block.h);
	   NULL when the block is not plain, or not read. */
	const unsigned char *fields;
	size_t fields_size;
	/* The sizes and line counts of cache are known (a light row: the
	   body has a body_fields row). */
	bool cached;
	/* enum sqlbox_row_part: the heavy parts read (parts_read), and
	   those of them whose row the body has (parts_found). */
	uint8_t parts_read, parts_found;
};
ARRAY_DEFINE_TYPE(sqlbox_mail_row, struct sqlbox_mail_row);

/* ---- sqlbox-db.c: opening the database ---- */

/* Opens the user's database once per storage (idempotent): unwraps the
   keys with the session's KEK, creates the file and schema if missing,
   drops what crashed saves left.  Returns 0, -1 with the storage error
   set (MAIL_ERROR_UNAVAILABLE "Mailbox locked..." without a usable
   key).  The storage opens it through sqlbox_storage_open(), which also
   imports the spool. */
int sqlbox_db_open(struct sqlbox_storage *storage);
void sqlbox_db_close(struct sqlbox_storage *storage);
/* Opens storage->body_db, which sqlbox_db_chunk_read_at() reads with
   outside transactions, if it isn't open yet.  Returns 0, or -1 (logged
   once, then the main connection serves body reads). */
int sqlbox_db_body_open(struct sqlbox_storage *storage);
/* Ends the body connection's read transaction of chunk reads, if one
   is open: its blob handle closed, its snapshot released.  The next
   chunk read begins a new one, seeing every commit before it. */
void sqlbox_db_body_reads_end(struct sqlbox_storage *storage);
/* Begins it (on storage->body_db) unless it is open: 0, or -1 (logged). */
int sqlbox_db_body_reads_begin(struct sqlbox_storage *storage);

/* mkdir of the mail root, its entry synced to disk (mail_fsync). */
int sqlbox_root_dir_create(struct sqlbox_storage *storage);
/* Syncs a directory (after a file in it was created), unless
   mail_fsync=never.  0, -1 with a critical error set. */
int sqlbox_fsync_dir(struct sqlbox_storage *storage, const char *dir);

/* The keys of a user, read with the session's KEK.
   Returns 1, 0 if locked (no or wrong key; error_r says which), -1. */
int sqlbox_keys_unwrap(struct mail_user *user, const char *home,
		       struct kr_keys **keys_r, const char **error_r);
/* The X25519 public key from the keyfile (no password needed). */
int sqlbox_public_key_read(struct mail_user *user, unsigned char *pk_r,
			   const char **error_r);

/* ---- sqlbox-schema.c: the schema ---- */

/* Creates the schema in a new file (with INBOX) or migrates an older one
   to the current version, in one write transaction.  0, -1 with a
   critical error set (also for a file of an unknown, newer version). */
int sqlbox_schema_migrate(struct sqlbox_storage *storage);

/* ---- sqlbox-sql.c: statements and transactions ---- */

/* Prepares sql; NULL with a critical error set on failure. */
sqlite3_stmt *sqlbox_db_prepare(struct sqlbox_storage *storage,
				const char *sql);
/* Prepares sql once per connection and keeps it (by its text) until
   sqlbox_db_close(): for statements a session runs again and again, such
   as every command's sync.  sql must be one of a few fixed texts, not
   one with values in it.  The caller binds what the statement takes and
   gives it back with sqlbox_db_kept_done() (sqlite3_reset(), never
   sqlite3_finalize()) before anything else may run it again; NULL with
   a critical error set on failure. */
sqlite3_stmt *sqlbox_db_prepare_kept(struct sqlbox_storage *storage,
				     const char *sql);
void sqlbox_db_kept_done(sqlite3_stmt *stmt);
/* Finalizes the kept statements (sqlbox_db_close()). */
void sqlbox_db_kept_free(struct sqlbox_storage *storage);
/* sqlite3_step() that reports errors; returns SQLITE_ROW/DONE or -1. */
int sqlbox_db_step(struct sqlbox_storage *storage, sqlite3_stmt *stmt);
/* Runs a statement without results: binds int64 args (count n).  The
   statement is kept prepared by its text (as sqlbox_db_prepare_kept())
   while fewer than SQLBOX_KEPT_STMTS_MAX are, else prepared each time. */
int sqlbox_db_exec_args(struct sqlbox_storage *storage, const char *sql,
			unsigned int n, ...);
int sqlbox_db_exec(struct sqlbox_storage *storage, const char *sql);
/* Sets PRAGMA synchronous for what the connection commits next (outside
   a transaction): FULL for mail, or always with mail_fsync=always. */
int sqlbox_db_set_sync(struct sqlbox_storage *storage, bool mail);
/* Nested write transaction: the outermost begin is BEGIN IMMEDIATE (waits
   for other writers up to the busy timeout), the outermost commit
   COMMITs, or ROLLBACKs if any level failed.  Durability follows
   mail_fsync: sqlbox_db_begin_mail() starts a transaction that stores
   mail, whose COMMIT returns only once it is synced to disk (WAL fsynced,
   PRAGMA synchronous=FULL) unless mail_fsync=never; other transactions
   are synced only with mail_fsync=always (else at checkpoints: a crash may
   lose them, never half-apply them).  Nested in an outer transaction,
   the outer one decides.  Before the outermost COMMIT, still under the
   write lock, the storage's db_pre_commit hook runs. */
int sqlbox_db_begin(struct sqlbox_storage *storage);
int sqlbox_db_begin_mail(struct sqlbox_storage *storage);
int sqlbox_db_commit(struct sqlbox_storage *storage);
void sqlbox_db_rollback(struct sqlbox_storage *storage);
/* A number that changes when the main connection has read the database
   after other connections (sessions, LMTP, the body connection never
   writes) committed to it, and only then: SQLite's data version of the
   connection (SQLITE_FCNTL_DATA_VERSION) without its own commits.  No
   I/O: it tells what the connection's last read saw, not what is on
   disk now.  FALSE if SQLite can't tell. */
bool sqlbox_db_foreign_version(struct sqlbox_storage *storage,
			       unsigned int *version_r);
void sqlbox_db_set_critical(struct sqlbox_storage *storage,
			    const char *what);

/* ---- sqlbox-sql-folder.c: folders ---- */

/* Folder rows.  Lookup returns 1 found, 0 not, -1 error. */
int sqlbox_db_mailbox_lookup(struct sqlbox_storage *storage,
			     const char *name, int64_t *id_r,
			     uint32_t *uid_validity_r, guid_128_t guid_r);
int sqlbox_db_mailbox_create(struct sqlbox_storage *storage,
			     const char *name,
			     const struct mailbox_update *update,
			     int64_t *id_r);
/* Records that uid_validity was given out (state 'uidvalidity'): new
   folders get higher ones. */
int sqlbox_db_uidvalidity_used(struct sqlbox_storage *storage,
			       uint32_t uid_validity);
/* Removes the folder's row and mail (children stay). */
int sqlbox_db_mailbox_delete(struct sqlbox_storage *storage, int64_t id);
/* Renames name and its children; 0, -1 (EXISTS error if taken). */
int sqlbox_db_mailbox_rename(struct sqlbox_storage *storage,
			     const char *old_name, const char *new_name);
/* RFC 3501 RENAME INBOX: INBOX's row (mail, UIDs, attributes) becomes
   new_name, and a new empty INBOX is created; INBOX's children stay. */
int sqlbox_db_inbox_rename(struct sqlbox_storage *storage,
			   const char *new_name);
/* Highest modseq and next UID of a folder, inside a transaction. */
int sqlbox_db_mailbox_counters(struct sqlbox_storage *storage, int64_t id,
			       uint64_t *highest_modseq_r,
			       uint32_t *uid_next_r);
int sqlbox_db_mailbox_set_counters(struct sqlbox_storage *storage,
				   int64_t id, uint64_t highest_modseq,
				   uint32_t uid_next);
/* Subscriptions (names in storage format). */
int sqlbox_db_set_subscribed(struct sqlbox_storage *storage,
			     const char *name, bool set);

/* ---- sqlbox-sql-mail.c: bodies and mail ---- */

/* Stores a body in chunks; body must have CRLF line ends. */
int sqlbox_db_body_insert(struct sqlbox_storage *storage,
			  const unsigned char *data, size_t size,
			  int64_t *body_id_r);
/* Inserts one mail row plus keywords (NULL-terminated or NULL). */
int sqlbox_db_mail_insert(struct sqlbox_storage *storage, int64_t mailbox_id,
			  uint32_t uid, int64_t body_id, enum mail_flags flags,
			  const char *const *keywords, uint64_t modseq,
			  time_t received, time_t saved, const char *guid);
/* A body row marked pending (a save in progress writes its chunks),
   in its own or the caller's transaction. */
int sqlbox_db_body_pending_insert(struct sqlbox_storage *storage,
				  int64_t *body_id_r);
/* Sets the final size and clears the pending mark (caller's txn). */
int sqlbox_db_body_pending_finish(struct sqlbox_storage *storage,
				  int64_t body_id, uoff_t size);
/* Removes a pending body and its chunks (own transaction). */
int sqlbox_db_body_pending_abort(struct sqlbox_storage *storage,
				 int64_t body_id);
/* Drops pending bodies older than SQLBOX_PENDING_STALE_SECS: what saves
   that crashed mid-way left behind (at open). */
int sqlbox_db_pending_gc(struct sqlbox_storage *storage);
int sqlbox_db_chunk_insert(struct sqlbox_storage *storage, int64_t body_id,
			   uint32_t seq, const void *data, size_t size);
/* Drops bodies no mail refers to any more (pending ones stay). */
int sqlbox_db_bodies_gc(struct sqlbox_storage *storage);
/* Mail metadata with the body's body_fields row (a light row: parts 0),
   or with the heavy parts (enum sqlbox_row_part) instead; 1 found, 0
   expunged, -1 error.  Strings, fields and the header from pool. */
int sqlbox_db_mail_lookup(struct sqlbox_storage *storage, int64_t mailbox_id,
			  uint32_t uid, unsigned int parts, pool_t pool,
			  struct sqlbox_mail_row *row_r);
/* The rows (light or with parts) of up to limit mails of the mailbox
   from first_uid on, in UID order, appended to rows (strings and headers
   from pool), read by one statement: one read transaction for all of
   them.  No row of a UID between first_uid and the last row's means the
   mail is expunged. */
int sqlbox_db_mail_lookup_range(struct sqlbox_storage *storage,
				int64_t mailbox_id, uint32_t first_uid,
				unsigned int limit, unsigned int parts,
				pool_t pool, ARRAY_TYPE(sqlbox_mail_row) *rows);
/* The most UIDs sqlbox_db_mail_lookup_uids() reads at once. */
#define SQLBOX_DB_MAIL_UIDS_MAX 32
/* The rows (light or with parts) of the mails of the mailbox with these
   UIDs (count <= SQLBOX_DB_MAIL_UIDS_MAX, none 0), in UID order, appended
   to rows (strings and headers from pool), read by one statement.  No
   row of a UID asked means the mail is expunged. */
int sqlbox_db_mail_lookup_uids(struct sqlbox_storage *storage,
			       int64_t mailbox_id, const uint32_t *uids,
			       unsigned int count, unsigned int parts,
			       pool_t pool, ARRAY_TYPE(sqlbox_mail_row) *rows);
/* The heavy parts (enum sqlbox_row_part, not 0) of the rows among
   rows[0..count) (rows of the mailbox in UID order) that lack them, read
   by one statement over their UIDs: each such row whose mail is still
   there with the same body gets them (strings and headers from pool);
   the others stay as they were.  sparse: the rows are a sparse window's
   (count <= SQLBOX_DB_MAIL_UIDS_MAX): their UIDs only are read, not the
   range. */
int sqlbox_db_mail_lookup_heavy(struct sqlbox_storage *storage,
				int64_t mailbox_id,
				struct sqlbox_mail_row *rows,
				unsigned int count, unsigned int parts,
				bool sparse, pool_t pool);
/* The body of the mail with this UID, read now (no row, nothing from
   pool): 1 found, 0 expunged, -1 error. */
int sqlbox_db_mail_body_id(struct sqlbox_storage *storage, int64_t mailbox_id,
			   uint32_t uid, int64_t *body_id_r);
/* Stores a body's cache rows: body_header, body_cache and body_fields
   (replacing those there), caller's or own transaction. */
int sqlbox_db_cache_insert(struct sqlbox_storage *storage, int64_t body_id,
			   const struct sqlbox_body_cache *cache);
/* The body_fields row of every body_cache row, in the caller's
   transaction (the migration to schema version 9, which runs before
   version 10 takes the header blocks out of body_cache). */
int sqlbox_db_fields_fill(struct sqlbox_storage *storage);
/* Sets ENVELOPE or BODYSTRUCTURE (column "envelope" or "bodystructure")
   of a body's body_cache row, own transaction; a missing row is made
   with the sizes and line counts of sizes, unless the body is gone (no
   error). */
int sqlbox_db_cache_set(struct sqlbox_storage *storage, int64_t body_id,
			const struct sqlbox_body_cache *sizes,
			const char *column, const char *value);
/* Reads up to size bytes of a chunk from offset on straight into dst
   (one blob handle, only the pages of those bytes decrypted, no
   intermediate buffer); *chunk_size_r is the chunk's size.  Returns the
   bytes read (0 when offset is at or past the chunk's end), -1 error,
   -2 no such chunk (expunged meanwhile). */
ssize_t sqlbox_db_chunk_read_at(struct sqlbox_storage *storage,
				int64_t body_id, int64_t seq, size_t offset,
				void *dst, size_t size, size_t *chunk_size_r);
/* The body in one buffer from pool; 1, 0 expunged, -1 error. */
int sqlbox_db_body_read(struct sqlbox_storage *storage, int64_t body_id,
			buffer_t *buf);

#endif
