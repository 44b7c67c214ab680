/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef CRYPTVFS_PRIVATE_H
#define CRYPTVFS_PRIVATE_H

/* Internals shared by the cvfs-*.c files. Never included outside
   src/cryptvfs (tests and the fuzz target excepted). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "cryptvfs.h"

#define ATTR_UNUSED __attribute__((unused))

/* sqlite3mc "chacha20" geometry: page 1 keeps bytes 16..23 (page size,
   format versions, reserve, payload fractions) in the clear so that any
   SQLite can learn the page size before it has a key. */
#define CVFS_PAGE1_PLAIN_END 24
#define CVFS_OTK_BYTES 64
#define CVFS_POLY1305_KEY_BYTES 32
#define CVFS_CHACHA20_NONCE_BYTES 12
#define CVFS_CHACHA20_BLOCK_BYTES 64
#define CVFS_SQLITE_HEADER "SQLite format 3"
#define CVFS_SQLITE_HEADER_BYTES 16
#define CVFS_MIN_PAGE_SIZE 512
#define CVFS_MAX_PAGE_SIZE 65536

/* WAL geometry (SQLite file format, section 4). */
#define CVFS_WAL_HEADER_BYTES 32
#define CVFS_WAL_FRAME_HEADER_BYTES 24
#define CVFS_WAL_MAGIC_LE 0x377f0682u
#define CVFS_WAL_MAGIC_BE 0x377f0683u
#define CVFS_WAL_CKSUM_OFFSET 16
/* One copy of the wal-index header (struct WalIndexHdr) in the -shm. */
#define CVFS_SHM_HDR_BYTES 48
/* The rollback journal stores a 4-byte page number before each page. */
#define CVFS_JOURNAL_PGNO_BYTES 4

/* PBKDF2 iteration count of sqlite3mc's non-legacy chacha20 cipher. */
#define CVFS_KDF_ITERATIONS 64007

/* A refcounted key in sodium_malloc'd memory. One per connection's main
   database file; its WAL and journals hold references. */
struct cvfs_key {
	unsigned int refcount;
	unsigned char key[CVFS_KEY_BYTES];
};

/* What cvfs_open*() and cvfs_export() hand to the next main-database
   xOpen on this thread (see cvfs_secret_stage()). Lives in sodium memory. */
enum cvfs_secret_kind {
	CVFS_SECRET_RAW = 0,
	CVFS_SECRET_PASSPHRASE,
};

struct cvfs_secret {
	enum cvfs_secret_kind kind;
	size_t passphrase_len;
	unsigned char key[CVFS_KEY_BYTES];
	/* Salt for a file that is still empty; random when !have_salt. */
	unsigned char salt[CVFS_SALT_BYTES];
	bool have_salt;
	/* Followed by passphrase_len bytes for CVFS_SECRET_PASSPHRASE. */
	unsigned char passphrase[];
};

enum cvfs_file_kind {
	CVFS_FILE_PLAIN = 0,	/* super-journal: file names only */
	CVFS_FILE_MAIN,
	CVFS_FILE_WAL,
	CVFS_FILE_JOURNAL,	/* rollback journal */
	CVFS_FILE_TEMP,		/* temp db, sorter, statement journal */
};

/* Main file: this connection's view of the wal-index header (cvfs-shm.c). */
struct cvfs_shm {
	/* Region 0 of the -shm as xShmMap returned it; NULL when unmapped. */
	volatile unsigned char *region0;
	/* The last header SQLite published under our write lock (frame
	   checksums over the plaintext) and what it became on disk terms. */
	unsigned char plain[CVFS_SHM_HDR_BYTES];
	unsigned char fixed[CVFS_SHM_HDR_BYTES];
	/* Mapped read-only: never written. */
	bool readonly:1;
	/* Holds WAL_WRITE_LOCK / a WAL_READ_LOCK(i) shared. */
	bool write_lock:1;
	bool read_lock:1;
	/* Copy 0 is to become copy 1 (== fixed) at the next VFS call. */
	bool copy0_stale:1;
	/* Copy 0 was set back to plain at the write lock, no call since. */
	bool reverted:1;
	/* A header was fixed under the current write lock. */
	bool fixed_this_lock:1;
	/* SQLite's private copy of the header is plain (it kept its read
	   transaction across our fix). */
	bool plain_in_memory:1;
	/* Counts releases of WAL_WRITE_LOCK: the WAL's in-memory checksum
	   chain (cvfs-wal.c) is only trusted while this has not moved. */
	uint32_t write_unlocks;
};

/* WAL file: the stored reserved bytes (nonce and tag) of every frame a
   legacy recovery has read so far, by page (cvfs-legacy.c). */
struct cvfs_legacy_frame {
	uint32_t pgno;
	/* The previous frame (1-based) of the same page, 0 for none. */
	uint32_t prev;
	unsigned char reserved[CVFS_RESERVED_BYTES];
};

struct cvfs_legacy_index {
	/* frames[0 .. count-1] are WAL frames 1 .. count. */
	struct cvfs_legacy_frame *frames;
	uint32_t count, alloc;
	/* Open addressing: page number -> its newest frame (1-based);
	   keys[i] == 0 is an empty slot. */
	uint32_t *keys, *heads;
	uint32_t slots, used;
};

/* One open file. The parent VFS's file object follows it in memory
   (cvfs_file_real()), as in cksumvfs. */
struct cvfs_file {
	sqlite3_file base;
	enum cvfs_file_kind kind;
	const char *name;
	struct cvfs_key *key;
	/* For WAL and journals: the main database file they belong to. */
	struct cvfs_file *main;
	/* Main file: its open WAL, NULL when none. */
	struct cvfs_file *wal;
	/* Main file: the wal-index header (cvfs-shm.c). */
	struct cvfs_shm shm;
	/* WAL file: frames seen by a legacy recovery (cvfs-legacy.c). */
	struct cvfs_legacy_index legacy;

	/* Main file: geometry learned from page 1 (bytes 16..23 are plain). */
	unsigned int page_size;
	unsigned int reserve;
	unsigned char salt[CVFS_SALT_BYTES];

	/* Main file during a checkpoint: the WAL page just read into
	   ckpt_buf was left as verified ciphertext of page ckpt_pgno, for
	   the write that copies it here (see cvfs_wal_read()). */
	const void *ckpt_buf;
	uint32_t ckpt_pgno;
	/* Nonce and tag of that page: the write must bring them back. */
	unsigned char ckpt_reserved[CVFS_RESERVED_BYTES];

	/* Scratch page for encrypt-on-write and partial reads. */
	unsigned char *scratch;
	size_t scratch_size;

	/* Main file: the stored (encrypted, not yet authenticated) pages
	   ra_first .. ra_first + ra_count - 1, read ahead in one call when
	   SQLite walks pages in order; ra_count == 0: nothing held. Dropped
	   at every lock change and write (cvfs-file.c says why). */
	unsigned char *ra_buf;
	/* Its size, and how many of its bytes were ever read into (what
	   close wipes: untouched memory stays unfaulted). */
	size_t ra_size, ra_used;
	uint32_t ra_first, ra_count;
	/* Pages the next read-ahead reads: small at the start of a run,
	   doubled while the run goes on. */
	uint32_t ra_window;
	/* The page after the last one read from the main file, 0 after a
	   drop: a read of that page is sequential. */
	uint32_t ra_next;

	/* Journal: the 4-byte page number written/read just before a page. */
	sqlite3_int64 jrnl_pgno_offset;
	uint32_t jrnl_pgno;

	/* WAL: header facts and the frame header awaiting its page, not
	   yet written (cvfs-wal.c writes both in one call). */
	unsigned int wal_page_size;
	uint32_t wal_magic;
	sqlite3_int64 wal_pending_offset;
	unsigned char wal_pending[CVFS_WAL_FRAME_HEADER_BYTES];
	/* WAL: the stored checksum of the frame before wal_sum_offset (the
	   WAL header's for the first frame), valid while wal_sum_valid and
	   main->shm.write_unlocks == wal_sum_unlocks. */
	sqlite3_int64 wal_sum_offset;
	uint32_t wal_sum[2];
	unsigned char wal_sum_salt[8];
	uint32_t wal_sum_unlocks;
	/* WAL: offset of the whole frame read last, if wal_frame_read
	   (walRewriteChecksums() rewrites the header of the frame it has
	   just read). */
	sqlite3_int64 wal_frame_read_offset;

	/* Temp files: ephemeral stream key and nonce (never on disk). */
	unsigned char temp_nonce[8];

	bool jrnl_pgno_valid:1;
	bool wal_pending_valid:1;
	bool wal_sum_valid:1;
	bool wal_frame_read:1;
	/* This WAL began with a legacy sqlite3mc frame. */
	bool wal_legacy:1;
	bool page1_seen:1;
	/* Main file: page_size was taken from a page written before page 1
	   (cvfs_main_learn_page_size()); page 1 must still confirm it. */
	bool page_size_unconfirmed:1;
	/* Between SQLITE_FCNTL_CKPT_START and _DONE on this main file. */
	bool ckpt_active:1;
};

/* cvfs-cipher.c */
/* "openssl" when the EVP path is in use, else "libsodium". */
const char *cvfs_cipher_backend(void);
/* For tests and benchmarks: libcrypto is loaded once the process has put
   bytes through libsodium (0: at the next call; SIZE_MAX: EVP not used,
   even once loaded).  Returns the previous value (SIZE_MAX without
   OpenSSL support). */
size_t cvfs_cipher_set_evp_after(size_t bytes);
/* len bytes for a page nonce from a per-thread pool of libsodium random
   bytes, refilled after a fork(). */
void cvfs_random_nonce(unsigned char *out, size_t len);
/* XORs the IETF ChaCha20 keystream (nonce, initial block counter ic)
   into in, continuing at block 0 after 2^32 - 1 as sqleet does. */
void cvfs_chacha20_ietf_xor_wrap(unsigned char *out, const unsigned char *in,
				 size_t len,
				 const unsigned char nonce[CVFS_CHACHA20_NONCE_BYTES],
				 uint32_t ic,
				 const unsigned char key[CVFS_KEY_BYTES]);
void cvfs_poly1305(unsigned char tag[16], const unsigned char *in, size_t len,
		   const unsigned char key[CVFS_POLY1305_KEY_BYTES]);
/* Returns 0 when tag is right (compared in constant time), else -1. */
int cvfs_poly1305_verify(const unsigned char tag[16], const unsigned char *in,
			 size_t len,
			 const unsigned char key[CVFS_POLY1305_KEY_BYTES])
	__attribute__((warn_unused_result));

/* cvfs-page.c */
#ifdef CVFS_BENCH_COUNTERS
/* Pages through the transform, for bench/cryptvfs-bench's floor only
   (bench/cryptvfs-bench.sh builds the library with this defined). */
struct cvfs_page_counters {
	uint64_t encrypted, decrypted, verified, ranges, range_bytes;
};
extern struct cvfs_page_counters cvfs_page_counters;
#  define CVFS_COUNT(field, n) (cvfs_page_counters.field += (n))
#else
#  define CVFS_COUNT(field, n) ((void)0)
#endif
/* Encrypts one plaintext page into out (page_size bytes; out may equal in).
   Page 1 gets the salt in bytes 0..15. Draws a fresh nonce. */
void cvfs_page_encrypt(unsigned char *out, const unsigned char *in,
		       size_t page_size, uint32_t pgno,
		       const unsigned char salt[CVFS_SALT_BYTES],
		       const unsigned char key[CVFS_KEY_BYTES]);
/* Authenticates and decrypts one page (out may equal in). Returns 0, or -1
   with out zeroed when the tag does not verify. salt_r (page 1 only, may
   be NULL) receives the authenticated salt. */
int cvfs_page_decrypt(unsigned char *out, unsigned char *salt_r,
		      const unsigned char *in, size_t page_size, uint32_t pgno,
		      const unsigned char key[CVFS_KEY_BYTES])
	__attribute__((warn_unused_result));
/* Authenticates one page and decrypts only its bytes from..from+len-1
   into out (len bytes; out must not overlap in). Needs pgno != 1, from a
   multiple of 64 and from + len <= page_size - CVFS_RESERVED_BYTES.
   Returns 0, or -1 with out zeroed when the tag does not verify. */
int cvfs_page_decrypt_range(unsigned char *out, const unsigned char *in,
			    size_t page_size, uint32_t pgno, size_t from,
			    size_t len, const unsigned char key[CVFS_KEY_BYTES])
	__attribute__((warn_unused_result));
/* Checks one page's tag without decrypting it. Returns 0 or -1. */
int cvfs_page_verify(const unsigned char *in, size_t page_size,
		     uint32_t pgno, const unsigned char key[CVFS_KEY_BYTES])
	__attribute__((warn_unused_result));
/* XORs a length-preserving keystream for temp files at a byte offset. */
void cvfs_temp_xor(unsigned char *buf, size_t len, sqlite3_uint64 offset,
		   const unsigned char nonce[8],
		   const unsigned char key[CVFS_KEY_BYTES]);
/* Parses page-1 bytes 16..23. Returns 0 with page size and reserve, or
   -1 if they cannot belong to a cryptvfs database. */
int cvfs_header_parse(unsigned int *page_size_r, unsigned int *reserve_r,
		      const unsigned char header[CVFS_PAGE1_PLAIN_END]);
/* Continues SQLite's WAL checksum over len bytes (a multiple of 8). */
void cvfs_wal_checksum(uint32_t sum[2], const unsigned char *data, size_t len,
		       bool big_endian);
uint32_t cvfs_get_be32(const unsigned char *p);
void cvfs_put_be32(unsigned char *p, uint32_t v);

/* cvfs-kdf.c */
/* PBKDF2-HMAC-SHA256 with libsodium's HMAC; out_len <= 32 * 2^32 - 1. */
void cvfs_pbkdf2_sha256(unsigned char *out, size_t out_len,
			const unsigned char *passphrase, size_t passphrase_len,
			const unsigned char *salt, size_t salt_len,
			uint32_t iterations);
/* Returns a key holder with refcount 1, or NULL on allocation failure. */
struct cvfs_key *cvfs_key_create(const unsigned char key[CVFS_KEY_BYTES]);
void cvfs_key_ref(struct cvfs_key *key);
/* Drops a reference; the last one wipes and frees the key. */
void cvfs_key_unref(struct cvfs_key **key);
struct cvfs_secret *cvfs_secret_create(enum cvfs_secret_kind kind,
				       const unsigned char *material,
				       size_t material_len);
void cvfs_secret_destroy(struct cvfs_secret **secret);

/* cvfs-vfs.c */
/* Makes secret the key of main databases opened by this thread until
   cvfs_secret_unstage(); the caller keeps ownership. */
void cvfs_secret_stage(const struct cvfs_secret *secret);
void cvfs_secret_unstage(void);
const struct cvfs_secret *cvfs_secret_staged(void);
sqlite3_vfs *cvfs_vfs_parent(void);

/* cvfs-shm.c */
/* Notes a region xShmMap returned (rc is its result). */
void cvfs_shm_mapped(struct cvfs_file *f, int region, int rc,
		     void volatile *p);
void cvfs_shm_unmapped(struct cvfs_file *f);
/* Before passing on xShmBarrier: corrects copy 1 of a header SQLite is
   publishing under our write lock. */
void cvfs_shm_barrier(struct cvfs_file *f);
/* Around passing on xShmLock (rc: its result). */
void cvfs_shm_before_lock(struct cvfs_file *f, int offset, int flags);
void cvfs_shm_after_lock(struct cvfs_file *f, int offset, int flags, int rc);
void cvfs_shm_settle_slow(struct cvfs_file *f);
/* Brings copy 0 of the header in line; call at the start of every VFS
   call of the main file and its WAL and journal. */
static inline void cvfs_shm_settle(struct cvfs_file *f)
{
	if (f != NULL && f->shm.copy0_stale)
		cvfs_shm_settle_slow(f);
}

/* cvfs-legacy.c */
void cvfs_legacy_reset(struct cvfs_legacy_index *idx);
void cvfs_legacy_free(struct cvfs_legacy_index *idx);
/* Forgets frames frame and later (1-based). */
void cvfs_legacy_truncate(struct cvfs_legacy_index *idx, uint32_t frame);
/* Appends the next frame. Returns 0, or -1 when out of memory. */
int cvfs_legacy_push(struct cvfs_legacy_index *idx, uint32_t pgno,
		     const unsigned char reserved[CVFS_RESERVED_BYTES]);
/* The newest recorded frame of pgno (1-based), 0 for none; then
   idx->frames[frame - 1].prev for the one before. */
uint32_t cvfs_legacy_newest(const struct cvfs_legacy_index *idx,
			    uint32_t pgno);

/* cvfs-wal.c */
int cvfs_wal_read(struct cvfs_file *f, unsigned char *buf, int amt,
		  sqlite3_int64 offset);
int cvfs_wal_write(struct cvfs_file *f, const unsigned char *buf, int amt,
		   sqlite3_int64 offset);
/* Writes a frame header still held back for its page; call before any
   other method of the WAL file. */
int cvfs_wal_flush(struct cvfs_file *f);
/* Forgets what the WAL file knows of its content (truncate, close). */
void cvfs_wal_forget(struct cvfs_file *f);
/* The salts and checksum stored in the header of frame mx_frame (1-based).
   Returns false when they cannot be read. */
bool cvfs_wal_stored_checksum(struct cvfs_file *wal, uint32_t mx_frame,
			      unsigned int page_size, unsigned char salt_r[8],
			      uint32_t sum_r[2]);

/* cvfs-file.c */
extern const sqlite3_io_methods cvfs_io_methods;
/* Finishes opening f over its already-open parent file. */
int cvfs_file_setup(struct cvfs_file *f, const char *name, int flags);
/* Returns the cryptvfs file behind a main database of db, or NULL. */
struct cvfs_file *cvfs_file_of_db(sqlite3 *db, const char *schema);

static inline sqlite3_file *cvfs_file_real(struct cvfs_file *f)
{
	return (sqlite3_file *)(f + 1);
}

/* Returns f's scratch buffer of at least size bytes, or NULL. */
static inline unsigned char *cvfs_file_scratch(struct cvfs_file *f,
					       size_t size)
{
	if (f->scratch_size < size) {
		unsigned char *p = sqlite3_realloc64(f->scratch, size);

		if (p == NULL)
			return NULL;
		f->scratch = p;
		f->scratch_size = size;
	}
	return f->scratch;
}

/* Logs why a call on f fails (sqlite3_log) and returns rc. */
static inline int cvfs_file_fail(struct cvfs_file *f, int rc, uint32_t pgno,
				 sqlite3_int64 offset, const char *what)
{
	sqlite3_log(rc, "cryptvfs: %s: page %u at offset %lld of %s", what,
		    pgno, (long long)offset, f->name);
	return rc;
}

#endif
