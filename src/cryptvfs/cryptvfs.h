/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef CRYPTVFS_H
#define CRYPTVFS_H

/*
** cryptvfs: page encryption for SQLite in the SQLite3MultipleCiphers
** (sqlite3mc) "chacha20" format, as a VFS shim over the "unix" VFS.
**
** WHAT IT DOES
**
** Every page of the main database, of its WAL and of its rollback journal
** is encrypted with ChaCha20 and authenticated with Poly1305 on its way to
** disk, in exactly the on-disk format of sqlite3mc's default cipher
** ("chacha20", legacy=0, kdf_iter=64007). A database written here opens in
** sqlite3mc, and a sqlite3mc chacha20 database opens here. Temp files (temp
** tables, sorter spill, statement journals) are XORed with a ChaCha20
** keystream under a random key that lives only in memory, so no plaintext
** reaches the disk by any path.
**
** The VFS registers as "cryptvfs" and is never made the default: only
** connections opened through cvfs_open_v2()/cvfs_open_passphrase() use it.
**
** PAGE LAYOUT (page size P, reserved bytes R = 32 at the end of each page)
**
**   bytes 0 .. P-33     ciphertext (ChaCha20)
**   bytes P-32 .. P-17  nonce: 16 random bytes, fresh on every write
**   bytes P-16 .. P-1   Poly1305 tag
**
** Page 1 differs in two places: bytes 0..15 hold the database salt (where
** plain SQLite keeps "SQLite format 3\0") and bytes 16..23 stay plain
** (page size, format versions, reserve = 32, payload fractions), so any
** SQLite can read the page size before it knows the key. Encryption of
** page 1 starts at byte 24.
**
** Per page, with key K, page number N and nonce V:
**   counter = le32(V[12..15]) XOR N
**   otk     = ChaCha20-IETF(K, nonce V[0..11], block counter)  (64 bytes)
**   data    = ChaCha20-IETF(otk[32..63], nonce V[0..11], counter + 1)
**   tag     = Poly1305(otk[0..31], bytes 0 .. P-17)  (salt, plain header,
**             ciphertext and nonce are all authenticated)
** The 32-bit block counter wraps from 2^32-1 to 0 (sqleet's behaviour);
** libsodium 1.0.18 aborts instead and OpenSSL carries into the nonce, so
** the keystream call is split there. ChaCha20 and Poly1305 come from
** OpenSSL 3's EVP when the build found libcrypto, else from libsodium:
** the same bytes. Nonces come from a per-thread pool (one getrandom() per
** 256 pages), refilled in a forked child before it draws one.
**
** KEYS
**
** A raw key is 32 bytes and is used as is: it equals sqlite3mc's
**   PRAGMA cipher='chacha20'; PRAGMA key="raw:<64 hex digits>";
** A passphrase goes through PBKDF2-HMAC-SHA256 (salt = file bytes 0..15,
** 64007 iterations): sqlite3mc's PRAGMA key='<passphrase>'. Keys live in
** sodium_malloc'd memory and are wiped when the last file of the
** connection closes. A key never appears in a URI, an error text or a log.
**
** WAL
**
** Frames carry encrypted pages; frame headers stay plain. Frame checksums
** are computed over the ciphertext (sqlite3mc's non-legacy WAL), so even an
** un-checkpointed WAL opens in sqlite3mc. Crash recovery replays such
** frames. A checkpoint copies each WAL page to the main file as stored,
** once its tag verifies (the ciphertext is bound to the page number, not
** to the file), instead of decrypting and encrypting it again; should
** SQLite ever write another buffer than the one it read the page into,
** the write fails (SQLITE_IOERR_WRITE, logged) rather than encrypt
** ciphertext twice. Appending a frame is one write (header and page), a
** WAL page read is one read.
**
** SHARING A LIVE FILE
**
** Other processes may open the file while a cryptvfs connection has it
** open, cryptvfs or SQLite3MultipleCiphers, to read and to write: a writer
** chains its frame checksums from the -shm (the wal-index header), and
** cryptvfs keeps the checksum there the one stored in the WAL. SQLite
** computes it over the plaintext it writes; while the connection holds
** the WAL write lock, the header SQLite publishes gets the stored checksum
** of the last frame (copy 1 at SQLite's barrier between its two copies,
** copy 0 at the connection's next call), and no reader ever trusts a
** header whose copies differ. Commits of either side survive a crash of
** either (tests/cryptvfs/interop.sh kills both at random and recovers
** with both). The price: SQLite finds the header changed after its own
** commit, so the connection's next transaction starts with an empty page
** cache (bench/README.md). A connection that commits while one of its
** statements still reads keeps its snapshot and can still write.
**
** LEGACY WAL
**
** sqlite3mc's legacy WAL (mc_legacy_wal=1, and sqlite3mc 1.2.5 and older)
** checksums a frame over the plaintext with the nonce and tag of the copy
** of the page the writer's cache held: any earlier frame of that page,
** however far back, or the page in the main file. Recovery of a WAL whose
** first frame is legacy tries them all, newest first (an index of every
** frame read, cvfs-legacy.c), so every frame is found and each page's
** latest committed version wins. sqlite3mc cannot recover such a WAL
** itself; open it here once and it is checkpointed into the main file.
**
** ERRORS
**
** A page that fails authentication is never returned: the buffer is zeroed
** and the read fails with SQLITE_NOTADB for page 1 of the main file (wrong
** key, or not a cryptvfs database) and SQLITE_CORRUPT for any other page,
** with the file, page number and offset sent to sqlite3_log(). Partial
** reads (the 100-byte header read at open) decrypt the whole page. Writes
** that would leave plaintext (a page without the 32 reserved bytes, a
** partial page) fail with SQLITE_IOERR_WRITE. A new file may get pages
** before page 1 (VACUUM INTO spilling a copy bigger than the page cache):
** the first, page-aligned, power-of-two-sized write gives its page size,
** and page 1 must announce the same or is refused.
**
** USE
**
**   sqlite3 *db;
**   struct cvfs_error err;
**   if (cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
**                    master_key, CVFS_KEY_BYTES, &err) != SQLITE_OK)
**           ... err.rc, err.text ...
**   sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
**                NULL, NULL, NULL);
**   ...
**   cvfs_close(&db);
**
** cvfs_open_v2() sets the reserved bytes (SQLITE_FCNTL_RESERVE_BYTES)
** before the database is created, turns mmap off (mmap_size=0; xFetch
** never maps), sets temp_store=MEMORY and proves the key by reading the
** schema. Journal mode and synchronous are the caller's choice.
**
** ATTACH and VACUUM INTO on a cryptvfs connection open their file through
** cryptvfs too; without a key staged by cvfs_export() that open fails
** (SQLITE_CANTOPEN), so no plaintext copy can be made by accident.
**
** OPENING A FILE WITH SQLITE3MULTIPLECIPHERS
**
**   $ sqlite3mc mailbox.db
**   sqlite> PRAGMA cipher='chacha20';
**   sqlite> PRAGMA key="raw:00112233...(64 hex digits)";
**   sqlite> SELECT count(*) FROM sqlite_schema;
**
** VERIFYING
**
**   make -C src/cryptvfs check     (from the build directory)
**
** runs the unit tests (sqlite3mc 2.3.5 vectors from tests/vectors,
** page transform and counter wrap, tamper, crash, no-plaintext, export,
** rekey, -shm checksums, legacy WAL) and two scripts from
** tests/cryptvfs/: interop.sh (needs npm and the npm registry: it builds
** the sqlite3mc amalgamation from the better-sqlite3-multiple-ciphers
** package, round-trips files both ways, runs both as concurrent writers
** killed at random and recovers a legacy sqlite3mc WAL) and fuzz.sh
** (needs clang and libclang-rt-14-dev for libFuzzer).
** Both fail, never skip, when what they need is missing.
**
** LIMITS
**
** - The page number is the only thing bound to a page (the format has no
**   room for more): a page or WAL frame copied from another file under the
**   same key, or an older version of the same page, still authenticates.
**   Someone who can write the files can thus roll pages back (WAL frame
**   checksums are not keyed), but never make a forged byte read back.
**   Per-mailbox random keys rule out the cross-file case for sqlbox.
** - A bit flipped in a WAL frame without fixing the checksums ends the
**   WAL there, as a torn write does: the last commits are lost, not
**   altered (SQLite's own recovery rule).
** - The rollback journal's own checksums (SQLite's, over a few sampled
**   plaintext bytes per page) are kept as SQLite writes them, as sqlite3mc
**   does.
** - cvfs_rekey() replaces the file; no other connection may have it open,
**   and per-connection PRAGMAs (journal_mode, ...) must be set again on the
**   connection it hands back.
** - SQLite's temp files (temp_store=FILE, sorter spill, statement
**   journals) use a random in-memory key and no tag: they die with the
**   process and are unlinked at open.
** - Shared-cache mode is not supported.
** - A writer in sqlite3mc's legacy WAL mode (mc_legacy_wal=1) must not
**   share a live file: its frames after ours are not recovered (recovery
**   looks for legacy frames only in a WAL that starts with one).
** - locking_mode=EXCLUSIVE: nobody else can open the file meanwhile, but
**   SQLite takes no -shm locks, so the header keeps SQLite's plaintext
**   checksum until the connection commits in NORMAL mode again or the
**   WAL is reset (wal_checkpoint(TRUNCATE), or the last close): another
**   process must not write in between.
** - A connection whose read transaction outlives its commit keeps
**   SQLite's own header; in one sequence (a later write transaction that
**   read pages and wrote nothing) cryptvfs loses track of it, and the
**   next write answers SQLITE_BUSY_SNAPSHOT as if another connection had
**   written: end the read transaction and retry.
*/

#include <stddef.h>

#include <sqlite3.h>

#define CVFS_VFS_NAME "cryptvfs"
#define CVFS_KEY_BYTES 32
#define CVFS_SALT_BYTES 16
#define CVFS_NONCE_BYTES 16
#define CVFS_TAG_BYTES 16
#define CVFS_RESERVED_BYTES (CVFS_NONCE_BYTES + CVFS_TAG_BYTES)
#define CVFS_ERROR_TEXT_BYTES 256

/* Details of a failed call: rc is an SQLite result code. Never holds key
   material. */
struct cvfs_error {
	int rc;
	char text[CVFS_ERROR_TEXT_BYTES];
};

/* Registers the "cryptvfs" VFS over the "unix" VFS (never as default).
   Idempotent and thread-safe; cvfs_open*() call it. Returns SQLITE_OK or
   an SQLite error code. */
int cvfs_register(void);

/* Opens (or with SQLITE_OPEN_CREATE creates) path as a cryptvfs database
   with a raw key of key_size == CVFS_KEY_BYTES bytes, which is copied.
   flags are sqlite3_open_v2() flags. Returns SQLITE_OK with *db_r set;
   otherwise an SQLite code (SQLITE_NOTADB for a wrong key), *db_r = NULL
   and error_r (may be NULL) filled. May block on file I/O. */
int cvfs_open_v2(const char *path, sqlite3 **db_r, int flags,
		 const unsigned char *key, size_t key_size,
		 struct cvfs_error *error_r);

/* Like cvfs_open_v2() with a passphrase derived as sqlite3mc does
   (PBKDF2-HMAC-SHA256, 64007 iterations, salt from the file): tens of
   milliseconds of CPU per open. */
int cvfs_open_passphrase(const char *path, sqlite3 **db_r, int flags,
			 const char *passphrase, size_t passphrase_len,
			 struct cvfs_error *error_r);

/* Closes *db (sqlite3_close_v2) and sets it to NULL; the key is wiped once
   the last file of the connection is closed. */
void cvfs_close(sqlite3 **db);

/* Writes a consistent, self-contained encrypted copy of db's main database
   to dest_path (which must not exist) through VACUUM INTO, then fsyncs it.
   The copy has no WAL: everything committed is in it. With key == NULL it
   uses db's key and salt (so a passphrase still opens it); otherwise the
   raw key of key_size == CVFS_KEY_BYTES bytes and a new salt. Returns
   SQLITE_OK or an SQLite code with error_r filled. Blocks for the copy. */
int cvfs_export(sqlite3 *db, const char *dest_path,
		const unsigned char *key, size_t key_size,
		struct cvfs_error *error_r);

/* Re-encrypts the database of *db with a new raw key: checkpoints,
   exports under the new key beside the file, closes *db, renames the copy
   over the file (atomic: the file is always wholly one key or the other),
   and reopens *db with the new key. No other connection may have the file
   open; the caller must keep the new key safe before calling. On failure
   the old file is untouched; *db is the reopened connection (old or new
   key), or NULL if even that failed. Returns SQLITE_OK or an SQLite code. */
int cvfs_rekey(sqlite3 **db, const unsigned char *key, size_t key_size,
	       struct cvfs_error *error_r);

/* SQLite's page cache buffers (pages of CVFS_PAGEMEM_PAGE_SIZE bytes)
   from one reserved mapping of `slots` buffers, populated in chunks as
   they are first needed (cvfs-pagemem.c); other allocations, and page
   buffers beyond the slots, from SQLite's allocator as before.
   Process-wide: call before anything initializes SQLite in the process
   (cvfs_register() and cvfs_open*() do).  SQLITE_OK (also for slots ==
   0, which changes nothing), SQLITE_MISUSE if SQLite was initialized
   already or this was done before (nothing changes), or SQLITE_NOMEM. */
#define CVFS_PAGEMEM_PAGE_SIZE 4096
struct cvfs_pagemem_stats {
	/* slots reserved and populated */
	unsigned int slots, slots_populated;
	/* slots held by SQLite now and at most */
	unsigned int slots_in_use, slots_in_use_max;
	/* page buffers served from the slots, page buffer requests that
	   found none left (served by SQLite's allocator), chunks
	   populated */
	unsigned long slots_taken, overflows, chunks_populated;
};
int cvfs_pagemem_init(unsigned int slots);
void cvfs_pagemem_get_stats(struct cvfs_pagemem_stats *stats_r);

#endif
