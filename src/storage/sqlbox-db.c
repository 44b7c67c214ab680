/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "str.h"
#include "fdatasync-path.h"
#include "fsync-mode.h"
#include "mail-user.h"
#include "sqlbox-storage.h"

#include "cryptvfs.h"
#include "keyring.h"

#include <sys/stat.h>
#include <unistd.h>

/* Opening and closing the user's database: the keys unwrapped with the
   session's KEK (libkeyring), the file opened through cryptvfs, its
   pragmas, the schema brought up to date (sqlbox-schema.c) and what
   crashed saves left behind dropped.  Importing the spool is the
   storage's business (sqlbox-open.c), not the database's. */

#define SQLBOX_OPEN_RETRY_MSECS 20

/* SQLite's page cache of the main connection: 256 KiB.  Every page it
   holds is a fresh page of this process, and touching one the first
   time (a page fault, or 5.5 us even when populated in advance: see
   sqlbox_db_pagemem_init()) costs about as much as reading and
   decrypting the page again: a 16 MiB cache made a session's first
   FETCH 1:* of 2,000 headers pay ~1,000 faults for pages it reads once,
   and with 1 MiB a new session's header SEARCH touched ~200 cache pages
   it read once.  256 KiB keeps the b-tree pages above the rows (and a
   small folder's rows) and recycles the rest; a command repeated in one
   session reads its rows again (bench/README.md, issue 15, fourth and
   tenth passes).  A write transaction with more dirty pages than this
   spills them to the WAL before its commit, as SQLite does. */
#define SQLBOX_MAIN_CACHE_PRAGMA "PRAGMA cache_size=-256"

/* The -wal and -shm files stay between sessions.  SQLite 3.40's
   sqlite3WalClose(): the connection that closes last (it gets the
   EXCLUSIVE lock on the database file) checkpoints; if that completed,
   without SQLITE_FCNTL_PERSIST_WAL it unlinks the -shm (walIndexClose())
   and the -wal, with it it keeps both and, when journal_size_limit is
   not negative, truncates the -wal to 0 bytes (walLimitSize(pWal, 0):
   truncated after the checkpoint's syncs, not synced itself, as the
   unlink was not).  So a session no longer allocates and frees two
   inodes, and a database whose last session ended still stands alone:
   everything is in the main file, the -wal is empty.  A crash leaves
   the -wal as it did before, for the next open to recover.  The -shm is
   rebuilt all the same: the first connection to attach truncates it to
   3 bytes (unixLockSharedMemory()) and unixShmMap() grows it again by
   one-byte writes, kept file or not.

   Within a session journal_size_limit also bounds the -wal that stays
   after a checkpoint restarted it (SQLite truncates to it at the next
   commit): 4 MiB, a little over the 1,000 frames of 4 KiB pages the
   default autocheckpoint lets it reach, so only a larger one shrinks.
   Both are set on every connection the storage opens: any of them can be
   the last one of the database.  Other programs (doveadm launchpad
   backup, sqlbox-dbtool) open without them and unlink both files when
   they close last, as before. */
#define SQLBOX_WAL_SIZE_LIMIT_PRAGMA "PRAGMA journal_size_limit=4194304"

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
	const char *field = mail_user_plugin_getenv(user, KR_KEK_FIELD);
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
	path = t_strconcat(home, "/", KR_KEYFILE_NAME, NULL);
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
	path = t_strconcat(home, "/", KR_KEYFILE_NAME, NULL);
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

/* The -wal and -shm kept at the last close (above); sqlite3 result code. */
static int sqlbox_db_keep_wal(sqlite3 *db)
{
	int persist = 1;
	int ret;

	ret = sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL,
				   &persist);
	if (ret != SQLITE_OK)
		return ret;
	return sqlite3_exec(db, SQLBOX_WAL_SIZE_LIMIT_PRAGMA, NULL, NULL, NULL);
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

/* SQLite's page cache buffers of this process (issue 15): a new
   session's command that reads a few hundred pages of the main file (a
   header SEARCH: its candidates' rows, about 200 pages) touches every
   buffer its caches fill for the first time, a page fault each, 11-15
   us on a VM, as much as reading and decrypting the page (bench/
   README.md, fourth pass).  cvfs_pagemem_init() (cvfs-pagemem.c) serves
   them from one reserved mapping, populated 16 buffers at a time as the
   caches first need them: about 1 us a page, and 5.5 us for its first
   touch on a shadow-paged VM.  The ninth pass gave SQLite 320 populated
   slots instead (SQLITE_CONFIG_PAGECACHE): SQLite's setup writes into
   every one, which cost a short session 2 ms whether its caches used
   them or not, and its caches could not grow past them (tenth pass).
   The slots hold the main connection's cache (256 KiB, ~60 pages), the
   body connection's (24 to 80) and temporary b-trees; buffers beyond
   them come from SQLite's heap.  Process-wide and only possible before
   SQLite is initialized: tried once, before the first open of this
   process; if another user of SQLite in the process initialized it
   first, it is refused and nothing changes. */
#define SQLBOX_PAGEMEM_SLOTS 512

static bool sqlbox_pagemem_set;

static void sqlbox_db_pagemem_init(struct sqlbox_storage *storage)
{
	static bool tried = FALSE;
	int rc;

	if (tried)
		return;
	tried = TRUE;
	rc = cvfs_pagemem_init(SQLBOX_PAGEMEM_SLOTS);
	if (rc != SQLITE_OK) {
		e_debug(storage->storage.event, "sqlbox: SQLite page buffers "
			"not set: %s", sqlite3_errstr(rc));
		return;
	}
	sqlbox_pagemem_set = TRUE;
	e_debug(storage->storage.event, "sqlbox: SQLite page buffers from "
		"%u slots populated as needed", SQLBOX_PAGEMEM_SLOTS);
}

/* What the process's SQLite took of the slots so far (debug). */
static void sqlbox_db_pagemem_log(struct sqlbox_storage *storage)
{
	struct cvfs_pagemem_stats st;

	if (!sqlbox_pagemem_set)
		return;
	cvfs_pagemem_get_stats(&st);
	e_debug(storage->storage.event, "sqlbox: SQLite page buffers: "
		"%u of %u slots in use at most, %u populated, %lu from the "
		"heap beyond them", st.slots_in_use_max, st.slots,
		st.slots_populated, st.overflows);
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
	sqlbox_db_pagemem_init(storage);
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
	if ((ret = sqlbox_db_keep_wal(storage->db)) != SQLITE_OK) {
		mail_storage_set_critical(&storage->storage,
			"sqlbox: keeping the WAL of %s failed: %s",
			storage->db_path, sqlite3_errstr(ret));
		sqlbox_db_close(storage);
		return -1;
	}
	if (sqlbox_db_exec(storage, "PRAGMA journal_mode=WAL") < 0 ||
	    sqlbox_db_exec(storage, "PRAGMA synchronous=NORMAL") < 0 ||
	    sqlbox_db_set_sync(storage, FALSE) < 0 ||
	    sqlbox_db_exec(storage, SQLBOX_MAIN_CACHE_PRAGMA) < 0 ||
	    sqlbox_db_exec(storage, "PRAGMA foreign_keys=OFF") < 0 ||
	    sqlbox_schema_migrate(storage) < 0 ||
	    sqlbox_db_pending_gc(storage) < 0 ||
	    /* The new file's (and its WAL's) directory entries. */
	    (created && sqlbox_fsync_dir(storage, storage->root_dir) < 0)) {
		sqlbox_db_close(storage);
		return -1;
	}
	return 0;
}

/* Pages of the body connection's cache.  A read from a chunk's start
   walks its overflow chain once and needs little more than the b-tree
   pages above it: each page kept is a fresh allocation of the process
   (a page fault, more than reading and decrypting the page again), so
   the cache starts small.  A read within a chunk (after a seek, or the
   rest of a chunk that did not fit the buffer) walks the chain from
   the start again: from then on the cache holds a 256 KiB chunk's
   overflow pages and the pages above them, so the next such read finds
   the chain it walks (sqlbox_db_body_cache_grow() in
   sqlbox-sql-mail.c). */
#define SQLBOX_BODY_CACHE_PRAGMA "PRAGMA cache_size=24"

int sqlbox_db_body_open(struct sqlbox_storage *storage)
{
	struct cvfs_error cerr;
	sqlite3 *db = NULL;
	int ret;

	if (storage->body_db != NULL)
		return 0;
	if (storage->body_db_failed || storage->db == NULL ||
	    storage->keys == NULL)
		return -1;
	/* Read-write but never written: SQLite's WAL reader needs the
	   -shm mapped writable.  A file that is already open and keyed
	   needs no retry loop: busy waits go to the busy handler. */
	ret = cvfs_open_v2(storage->db_path, &db, SQLITE_OPEN_READWRITE,
			   storage->keys->master_key, CVFS_KEY_BYTES, &cerr);
	if (ret == SQLITE_OK) {
		sqlite3_busy_timeout(db, SQLBOX_BUSY_TIMEOUT_MSECS);
		ret = sqlbox_db_keep_wal(db);
		if (ret == SQLITE_OK) {
			ret = sqlite3_exec(db, SQLBOX_BODY_CACHE_PRAGMA,
					   NULL, NULL, NULL);
		}
		if (ret != SQLITE_OK)
			i_strocpy(cerr.text, sqlite3_errmsg(db),
				  sizeof(cerr.text));
	}
	if (ret != SQLITE_OK) {
		/* Not fatal: the main connection reads as before. */
		e_warning(storage->storage.event,
			  "sqlbox: opening %s for body reads failed: %s",
			  storage->db_path, cerr.text);
		if (db != NULL)
			cvfs_close(&db);
		storage->body_db_failed = TRUE;
		return -1;
	}
	storage->body_db = db;
	return 0;
}

static void sqlbox_db_body_close(struct sqlbox_storage *storage)
{
	/* Its snapshot ends first: a connection with an open blob does
	   not close, and the last close must checkpoint the whole -wal. */
	sqlbox_db_body_reads_end(storage);
	sqlite3_finalize(storage->body_rowid_stmt);
	storage->body_rowid_stmt = NULL;
	if (storage->body_db != NULL)
		cvfs_close(&storage->body_db);
	storage->body_db_failed = FALSE;
	storage->body_db_cache_grown = FALSE;
}

void sqlbox_db_close(struct sqlbox_storage *storage)
{
	/* The main connection's statements kept prepared. */
	sqlite3_stmt **stmts[] = {
		&storage->mail_body_stmt,
		&storage->chunk_rowid_stmt,
	};
	/* and those kept per heavy parts */
	sqlite3_stmt **parts_stmts[] = {
		storage->mail_lookup_stmts,
		storage->mail_range_stmts,
		storage->mail_heavy_stmts,
		storage->mail_uids_stmts,
		storage->mail_heavy_uids_stmts,
	};

	/* First: the main connection is then never the last one, whose
	   close checkpoints. */
	sqlbox_db_body_close(storage);
	for (unsigned int i = 0; i < N_ELEMENTS(stmts); i++) {
		sqlite3_finalize(*stmts[i]);
		*stmts[i] = NULL;
	}
	for (unsigned int i = 0; i < N_ELEMENTS(parts_stmts); i++) {
		for (unsigned int j = 0; j <= SQLBOX_ROW_PARTS_ALL; j++) {
			sqlite3_finalize(parts_stmts[i][j]);
			parts_stmts[i][j] = NULL;
		}
	}
	sqlbox_db_kept_free(storage);
	if (storage->db != NULL) {
		sqlbox_db_pagemem_log(storage);
		cvfs_close(&storage->db);
	}
	storage->txn_depth = 0;
}
