/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef SQLBOX_STORAGE_H
#define SQLBOX_STORAGE_H

/* The mail storage `sqlbox` (doc/DESIGN.md section 7): every mailbox of
   a user lives in one SQLite file, page-encrypted by src/cryptvfs with the
   master key that the user's app password (userdb field sqlbox_kek,
   KR_KEK_FIELD) unwraps from ~/sqlbox.keys (KR_KEYFILE_NAME).  SQLite is
   authoritative; Dovecot's index runs in memory only and is rebuilt from
   SQLite when a mailbox is opened or synced.

   Files under the mail root (mail_location = sqlbox:<root>):
     <root>/sqlbox.db, -wal, -shm   the encrypted database (-wal and
                                    -shm kept between sessions, the
                                    -wal emptied: sqlbox-db.c)
     <root>/spool                   mail sealed to the public key by LMTP
                                    while no password was present
     <root>/spool.quarantine        damaged spool bytes, set aside by an
                                    import (created only when needed)

   The internal header of src/storage: what crosses the sqlbox-*.c
   files; the database layer's part is sqlbox-db.h. */

#include "lib.h"
#include "hash.h"
#include "index-storage.h"
#include "mailbox-list-private.h"

#include "sqlbox-db.h"

#define SQLBOX_STORAGE_NAME "sqlbox"
#define SQLBOX_LIST_NAME "sqlbox"
#define SQLBOX_DB_FNAME "sqlbox.db"
#define SQLBOX_SPOOL_FNAME "spool"
#define SQLBOX_QUARANTINE_FNAME "spool.quarantine"
#define SQLBOX_USAGE_FNAME "quota-usage"
#define SQLBOX_FTS_USAGE_FNAME "fts-usage"
#define SQLBOX_HIERARCHY_SEP '/'
/* Bodies are stored in rows of this many bytes (CRLF line ends). */
#define SQLBOX_CHUNK_BYTES (256 * 1024)
/* Read buffer of a body istream: at most one chunk. */
#define SQLBOX_ISTREAM_BUFFER_BYTES SQLBOX_CHUNK_BYTES
/* A body still pending after this long belongs to a crashed save. */
#define SQLBOX_PENDING_STALE_SECS (24 * 60 * 60)
/* How long a writer waits for another process's write transaction. */
#define SQLBOX_BUSY_TIMEOUT_MSECS (120 * 1000)
#define SQLBOX_ERRSTR_LOCKED \
	"Mailbox locked: log in with an app password to open it"

struct kr_keys;

ARRAY_DEFINE_TYPE(sqlbox_buffer, buffer_t *);

struct sqlbox_storage {
	struct mail_storage storage;

	char *root_dir, *db_path, *spool_path, *quarantine_path;
	/* <root>/quota-usage if the user has a quota, else NULL. */
	char *usage_path;
	/* What the usage file says, as this process last wrote it. */
	uint64_t usage_messages, usage_bytes;
	sqlite3 *db;
	/* sqlbox_db_mail_lookup()'s statements, prepared once per
	   connection, indexed by the heavy parts they read (0: a light
	   row): they run for every mail a FETCH or SEARCH reads. */
	sqlite3_stmt *mail_lookup_stmts[SQLBOX_ROW_PARTS_ALL + 1];
	/* sqlbox_db_mail_lookup_range()'s, likewise (sequential FETCH and
	   SEARCH), and sqlbox_db_mail_lookup_heavy()'s. */
	sqlite3_stmt *mail_range_stmts[SQLBOX_ROW_PARTS_ALL + 1];
	sqlite3_stmt *mail_heavy_stmts[SQLBOX_ROW_PARTS_ALL + 1];
	/* sqlbox_db_mail_lookup_uids()'s (FTS-narrowed SEARCH). */
	sqlite3_stmt *mail_uids_stmts[SQLBOX_ROW_PARTS_ALL + 1];
	sqlite3_stmt *mail_heavy_uids_stmts[SQLBOX_ROW_PARTS_ALL + 1];
	/* sqlbox_db_mail_body_id()'s, likewise (a body read checks its
	   mail is still there). */
	sqlite3_stmt *mail_body_stmt;
	/* sqlbox_db_chunk_read_at()'s rowid lookup, likewise: it runs
	   for every read of a body. */
	sqlite3_stmt *chunk_rowid_stmt;
	/* Statements kept prepared by their text (sqlbox_db_prepare_kept(),
	   and what sqlbox_db_exec*() runs), finalized at close. */
	HASH_TABLE(char *, sqlite3_stmt *) kept_stmts;
	/* A second connection to the same file for body chunk reads
	   outside transactions, with a small page cache (one chunk's
	   overflow chain once a read starts within a chunk): body pages
	   pass through it instead of filling (and, in a new process,
	   faulting in) the main connection's cache.  Opened once
	   the session has read body_bytes_read >= 1 MiB of chunks, or at
	   the first body read of a search that wants many bodies
	   (body_db_soon); NULL before, or after it failed to open
	   (body_db_failed: reads then use db). */
	sqlite3 *body_db;
	sqlite3_stmt *body_rowid_stmt;
	uint64_t body_bytes_read;
	bool body_db_failed;
	/* body_db's cache holds a whole chunk's overflow chain: grown at
	   its first read that starts within a chunk (sqlbox-db.c). */
	bool body_db_cache_grown;
	/* A search wanted many bodies: the next body read opens body_db
	   (sqlbox_body_search_init()). */
	bool body_db_soon;
	/* The body connection's read transaction (sqlbox_db_chunk_read_at()):
	   its first chunk read begins it, the next ones move body_blob from
	   row to row in it; it ends (sqlbox_db_body_reads_end()) when the
	   process next waits in its ioloop (to_body_reads: between
	   commands, or while a client drains a FETCH's output), before the
	   session writes, at a sync, at a mailbox transaction's end and at
	   close, so no snapshot is held across commands. */
	sqlite3_blob *body_blob;
	struct timeout *to_body_reads;
	unsigned int body_reads_chunks;
	bool body_reads_txn;
	/* sodium_malloc'd; NULL while locked. Freed at storage destroy. */
	struct kr_keys *keys;
	/* Runs before each outermost COMMIT, under the write lock (the
	   quota usage file: sqlbox_usage_update), or NULL. */
	void (*db_pre_commit)(struct sqlbox_storage *storage);
	/* SQLite transaction nesting (sqlbox_db_begin/commit). */
	unsigned int txn_depth;
	/* Outermost COMMITs of the main connection: each moved its data
	   version on by one (sqlbox_db_foreign_version()). */
	unsigned int own_commits;
	bool txn_failed:1;
	/* PRAGMA synchronous is FULL now (else NORMAL). */
	bool db_sync_full:1;
	/* No KEK in this session: LMTP seals new mail into the spool. */
	bool locked:1;
	bool usage_written:1;
	/* Bodies this session saved and has not indexed yet (sqlbox-fts.c):
	   indexed when no save has committed for fts_delay_msecs, at the
	   session's end, or by a SEARCH's catch-up of their folder.  Memory
	   only: a body without an fts_doc row is unindexed by definition. */
	ARRAY(int64_t) fts_pending;
	/* The first of them not yet indexed. */
	unsigned int fts_pending_next;
	struct timeout *to_fts;
	/* plugin { sqlbox_fts_index_delay } (0: index in the save's
	   transaction), read once (fts_delay_read). */
	unsigned int fts_delay_msecs;
	bool fts_delay_read:1;
	/* The FTS tables exist (sqlbox-fts.c creates them lazily). */
	bool fts_ready:1;
};

struct sqlbox_mailbox {
	struct mailbox box;
	struct sqlbox_storage *storage;

	int64_t id;
	uint32_t uid_validity;
	/* SQLite highestmodseq that the in-memory index has caught up to. */
	uint64_t synced_modseq;
	/* Reports a change made while nobody watched (notify_changes). */
	struct timeout *to_missed;
	guid_128_t guid;

	/* Opened without a key for LMTP: saves go to the spool. */
	bool spool_only:1;
	/* A sync's SQLite commit failed after its index commit. */
	bool inconsistent:1;
	/* The in-memory index was filled from SQLite in bulk
	   (sqlbox_sync_fill); its keywords still come from the next sync. */
	bool index_filled:1;
	bool fill_keywords_pending:1;
	/* The first sync started a new transaction log (sqlbox-sync.c). */
	bool log_rotated:1;
	/* The UIDs an FTS-narrowed SEARCH reads (sqlbox-fts.c), while it
	   runs: sqlbox_mail_lookup() reads their rows in batches. */
	const ARRAY_TYPE(seq_range) *search_candidates;
};

#define SQLBOX_STORAGE(s) container_of(s, struct sqlbox_storage, storage)
#define SQLBOX_MAILBOX(s) container_of(s, struct sqlbox_mailbox, box)

extern struct mail_storage sqlbox_storage;
extern struct mailbox_list sqlbox_mailbox_list;
extern struct mail_vfuncs sqlbox_mail_vfuncs;

/* ---- sqlbox-body.c: bodies streamed in chunks ---- */

struct sqlbox_body_writer;

/* A body being saved.  in_memory: kept whole in memory (the spool path,
   which has no database); otherwise full chunks go to SQLite as they
   fill. */
struct sqlbox_body_writer *
sqlbox_body_writer_create(struct sqlbox_storage *storage, bool in_memory);
/* An ostream that appends to the writer; it never waits for output. */
struct ostream *sqlbox_body_writer_ostream(struct sqlbox_body_writer *writer);
/* The whole body of an in_memory writer. */
buffer_t *sqlbox_body_writer_data(struct sqlbox_body_writer *writer);
/* The body written so far (all of it once the save finished), for
   plugins that read a mail while it is being saved. */
struct istream *sqlbox_body_writer_istream(struct sqlbox_body_writer *writer);
/* Inside the caller's write transaction: the body row complete. */
int sqlbox_body_writer_commit(struct sqlbox_body_writer *writer,
			      int64_t *body_id_r);
/* Wipes the buffer; an uncommitted body's chunks are removed. */
void sqlbox_body_writer_free(struct sqlbox_body_writer **writer);
/* A seekable istream over a stored body, at most one chunk of it in
   memory at a time. */
struct istream *
sqlbox_body_istream_create(struct sqlbox_storage *storage, int64_t body_id,
			   uoff_t size);
/* The same for a body read once from its start and then freed (the FTS
   indexer's): the stream's buffer is one of the body's size (up to a
   chunk) from the heap, not the spare kept between streams.  In a
   session of one APPEND the spare's pages are fresh ones of a mapping of
   their own, a page fault each, that nothing else uses; the heap's were
   mostly touched by the APPEND already, and once the stream is freed
   they serve the FTS5 INSERT's allocations (bench/README.md, issue 15,
   eleventh pass). */
struct istream *
sqlbox_body_istream_create_once(struct sqlbox_storage *storage,
				int64_t body_id, uoff_t size);
/* The same, with the body's first header_size bytes (its header block
   and one more byte, from the cache row) served from a copy of header.
   Unless whole (the body will be read on: FETCH BODY[], a parse), the
   first read past them is short, for a header parser's read-ahead. */
struct istream *
sqlbox_body_istream_create_cached(struct sqlbox_storage *storage,
				  int64_t body_id, uoff_t size,
				  const unsigned char *header,
				  size_t header_size, bool whole);
/* Asked by a body istream that finds a chunk of its body missing: 1 the
   mail is expunged (the callback marked it so), 0 it is not (the body is
   damaged), -1 error (the storage's error set). */
typedef int sqlbox_body_missing_callback_t(void *context);
/* Sets or (callback NULL) clears the callback of a stream that
   sqlbox_body_istream_create*() returned. */
void sqlbox_body_istream_set_missing(struct istream *input,
				     sqlbox_body_missing_callback_t *callback,
				     void *context);
/* Frees the read buffer kept between body streams (plugin unload). */
void sqlbox_body_deinit(void);
/* Notes a search (FETCH) that will read many bodies: see sqlbox-body.c. */
void sqlbox_body_search_init(struct sqlbox_storage *storage,
			     struct mail_search_context *ctx);

/* What a body's cache row keeps, parsed from the body (read from 0):
   the header block and the body's first byte (from pool), the line
   counts.  Returns 1, 0 if the
   body has bare LFs (then its virtual size isn't its physical size and
   the row would lie: no row), -1 with the stream's error. */
int sqlbox_body_cache_parse(struct istream *input, pool_t pool,
			    struct sqlbox_body_cache *cache_r);

/* ---- sqlbox-mail.c ---- */

struct mail *
sqlbox_mail_alloc(struct mailbox_transaction_context *t,
		  enum mail_fetch_field wanted_fields,
		  struct mailbox_header_lookup_ctx *wanted_headers);

/* ---- sqlbox-list-notify.c: NOTIFY (mailbox_list notify vfuncs) ---- */

int sqlbox_list_notify_init(struct mailbox_list *list,
			    enum mailbox_list_notify_event mask,
			    struct mailbox_list_notify **notify_r);
int sqlbox_list_notify_next(struct mailbox_list_notify *notify,
			    const struct mailbox_list_notify_rec **rec_r);
void sqlbox_list_notify_deinit(struct mailbox_list_notify *notify);
void sqlbox_list_notify_wait(struct mailbox_list_notify *notify,
			     mailbox_list_notify_callback_t *callback,
			     void *context);
void sqlbox_list_notify_flush(struct mailbox_list_notify *notify);

/* ---- sqlbox-attribute.c: METADATA and special-use in SQLite ---- */

int sqlbox_attribute_set(struct mailbox_transaction_context *t,
			 enum mail_attribute_type type_flags, const char *key,
			 const struct mail_attribute_value *value);
int sqlbox_attribute_get(struct mailbox *box,
			 enum mail_attribute_type type_flags, const char *key,
			 struct mail_attribute_value *value_r);
struct mailbox_attribute_iter *
sqlbox_attribute_iter_init(struct mailbox *box,
			   enum mail_attribute_type type_flags,
			   const char *prefix);
const char *sqlbox_attribute_iter_next(struct mailbox_attribute_iter *iter);
int sqlbox_attribute_iter_deinit(struct mailbox_attribute_iter *iter);
/* The folder's own special-use flags (data stack), NULL if none. */
int sqlbox_special_use_get(struct sqlbox_mailbox *mbox,
			   const char **special_use_r);
/* Puts sqlbox's /private/specialuse in place of Dovecot's read-only one
   (and back). */
void sqlbox_attributes_init(void);
void sqlbox_attributes_deinit(void);

/* ---- sqlbox-open.c: opening the user's mail ---- */

/* Opens the database (sqlbox_db_open()) once per storage and then
   imports the spool if LMTP left mail in it (a failed import is logged;
   the mail stays for the next open).  Returns 0, -1 with the storage
   error set (MAIL_ERROR_UNAVAILABLE "Mailbox locked..." without a
   usable key). */
int sqlbox_storage_open(struct sqlbox_storage *storage);
/* Makes sure the mailbox row is known; opens the storage. */
int sqlbox_mailbox_refresh_row(struct sqlbox_mailbox *mbox);

/* ---- sqlbox-sync.c ---- */

/* A row a sync wrote into the index, with its modseq in SQLite. */
struct sqlbox_sync_row {
	uint64_t modseq;
	uint32_t uid;
};

/* A running sync: the index sync plus (unless spool-only) the SQLite
   write transaction, so that saves assign UIDs under both locks. */
struct sqlbox_sync_context {
	struct sqlbox_mailbox *mbox;
	struct mail_index_sync_ctx *index_sync_ctx;
	struct mail_index_view *sync_view;
	struct mail_index_transaction *trans;

	uint64_t db_highest;
	uint32_t db_uidnext;
	/* Modseq given to this sync's pushed changes; 0 = none yet. */
	uint64_t push_modseq;
	/* The rows pulled and the filled messages given keywords: the
	   index's own records may raise them above their rows' modseqs
	   (sqlbox_sync_rows_raise()). */
	ARRAY(struct sqlbox_sync_row) rows;
	/* The index log's modseq counter just before the sync commits: its
	   records take the values above it. */
	uint64_t log_modseq;
	bool db_locked:1;
};

/* Starts a sync.  With pull: takes the SQLite write lock, pushes the
   index's changes and pulls SQLite's.  Without: only the index sync lock
   (for a save that holds the SQLite transaction and synced just before).
   Returns 1 with *ctx_r, -1 on error. */
int sqlbox_sync_begin(struct sqlbox_mailbox *mbox,
		      struct sqlbox_sync_context **ctx_r, bool pull);
/* Commits (SQLite, then the index) or rolls back both. */
int sqlbox_sync_finish(struct sqlbox_sync_context **ctx, bool success);

/* Pushes index changes to SQLite and pulls SQLite state into the index.
   Caller may hold an outer sqlbox_db_begin(). */
int sqlbox_sync(struct sqlbox_mailbox *mbox);
struct mailbox_sync_context *
sqlbox_storage_sync_init(struct mailbox *box, enum mailbox_sync_flags flags);

/* ---- sqlbox-save.c ---- */

struct mail_save_context *
sqlbox_save_alloc(struct mailbox_transaction_context *t);
int sqlbox_save_begin(struct mail_save_context *ctx, struct istream *input);
int sqlbox_save_continue(struct mail_save_context *ctx);
int sqlbox_save_finish(struct mail_save_context *ctx);
void sqlbox_save_cancel(struct mail_save_context *ctx);
int sqlbox_copy(struct mail_save_context *ctx, struct mail *mail);
/* The body of the mail at seq that transaction t is saving (a finished
   save or a copy), or NULL with the mail expunged. */
struct istream *
sqlbox_save_get_stream(struct mailbox_transaction_context *t, uint32_t seq,
		       uoff_t *size_r);
int sqlbox_transaction_save_commit_pre(struct mail_save_context *ctx);
void sqlbox_transaction_save_commit_post(
	struct mail_save_context *ctx,
	struct mail_index_transaction_commit_result *result);
void sqlbox_transaction_save_rollback(struct mail_save_context *ctx);

/* ---- sqlbox-fts.c: full-text search in FTS5 tables of the database ---- */

/* The rows of fts_doc, kept in state by triggers (sqlbox-fts.c); from
   the table itself if the count is missing (a state row deleted by
   hand). */
#define SQLBOX_FTS_DOCS_KEY "fts_docs"
#define SQLBOX_FTS_DOCS_SQL \
	"coalesce((SELECT value FROM state WHERE key = '" \
	SQLBOX_FTS_DOCS_KEY "'), (SELECT count(*) FROM fts_doc))"

/* Inside the caller's write transaction: indexes the header and body
   text of a stored body (nothing if already indexed).  Takes the
   caller's reference to *input (set to NULL): the stream is freed before
   the FTS5 INSERT, whose allocations then reuse its memory.  0, -1 with
   a critical error set. */
int sqlbox_fts_index_body(struct sqlbox_storage *storage, int64_t body_id,
			  struct istream **input);
/* TRUE if saved (or spool-imported) mail is indexed after the save's
   (import's) transaction (sqlbox_fts_index_later()), FALSE if inside it
   (the index is off, or plugin { sqlbox_fts_index_delay = 0 }). */
bool sqlbox_fts_index_deferred(struct sqlbox_storage *storage);
/* After a save's or the spool import's commit (never after a
   rollback): the body is indexed once no save has committed
   for the delay (each call starts it again), in short transactions of
   their own, or at the session's end. */
void sqlbox_fts_index_later(struct sqlbox_storage *storage, int64_t body_id);
/* At storage destroy: indexes what is still pending. */
void sqlbox_fts_storage_deinit(struct sqlbox_storage *storage);
/* Search vfuncs: the index narrows SEARCH BODY/TEXT/header keys to
   candidate mails, which Dovecot checks as without it. */
struct mail_search_context *
sqlbox_fts_search_init(struct mailbox_transaction_context *t,
		       struct mail_search_args *args,
		       const enum mail_sort_type *sort_program,
		       enum mail_fetch_field wanted_fields,
		       struct mailbox_header_lookup_ctx *wanted_headers);
bool sqlbox_fts_search_next_update_seq(struct mail_search_context *ctx);
int sqlbox_fts_search_deinit(struct mail_search_context *ctx);

/* ---- sqlbox-spool.c ---- */

/* A message for the spool and where the delivery (Sieve's fileinto,
   imap4flags) put it. */
struct sqlbox_spool_mail {
	buffer_t *body;
	const char *folder;
	enum mail_flags flags;
	/* NULL-terminated, or NULL. */
	const char *const *keywords;
};
ARRAY_DEFINE_TYPE(sqlbox_spool_mail, struct sqlbox_spool_mail);

/* Seals each message with its folder, flags and keywords to the user's
   public key and appends it to the spool, fsynced, before returning 0. */
int sqlbox_spool_append(struct sqlbox_storage *storage,
			const ARRAY_TYPE(sqlbox_spool_mail) *messages);
/* Imports the spool exactly once, each message into the folder its
   record names (created if missing; INBOX for records of the formats
   before folders), inside one SQLite transaction that also records the
   entry ids, synced to disk before the spool is emptied; moves damaged
   bytes to the quarantine file, then empties the spool.  Returns the
   number imported, -1 on error. */
int sqlbox_spool_import(struct sqlbox_storage *storage);
/* TRUE if the spool holds anything. */
bool sqlbox_spool_pending(struct sqlbox_storage *storage);
/* Messages in the spool and their size (an upper bound: the sealed
   length less the sealing overhead), read without any key. */
int sqlbox_spool_usage(struct sqlbox_storage *storage, uint64_t *messages_r,
		       uint64_t *bytes_r);

/* ---- sqlbox-usage.c: numbers for the quota plugin ---- */

/* TRUE if the user has a quota (plugin setting "quota"): only then is
   the usage file kept, and a locked storage shows INBOX with it. */
bool sqlbox_usage_enabled(struct sqlbox_storage *storage);
/* After a commit: writes the file's totals to <root>/quota-usage if
   they changed (nothing without a quota). */
void sqlbox_usage_update(struct sqlbox_storage *storage);
/* Writes "<first> <second>\n" to path (0600, a temp file renamed over
   it; no fsync: advisory, written again by the next writer). */
int sqlbox_usage_file_write(struct sqlbox_storage *storage, const char *path,
			    uint64_t first, uint64_t second);
/* Without a key: the totals of the usage file plus the spool. */
int sqlbox_usage_read_locked(struct sqlbox_storage *storage,
			     uint64_t *messages_r, uint64_t *bytes_r);

/* ---- sqlbox-fts-usage.c: the index's size for keyless admins ---- */

/* At the end of a session that committed anything: writes the number
   of bodies indexed and the index's size to <root>/fts-usage. */
void sqlbox_fts_usage_update(struct sqlbox_storage *storage);

#endif
