/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The io methods: which bytes of which file are a page, and with which
   page number. The page transform itself is in cvfs-page.c. */

#include <string.h>

#include <sodium.h>

#include "cryptvfs-private.h"

static void cvfs_main_ra_free(struct cvfs_file *f);
static int cvfs_file_close(sqlite3_file *file);
static int cvfs_file_read(sqlite3_file *file, void *buf, int amt,
			  sqlite3_int64 offset);
static int cvfs_file_write(sqlite3_file *file, const void *buf, int amt,
			   sqlite3_int64 offset);
static int cvfs_file_truncate(sqlite3_file *file, sqlite3_int64 size);
static int cvfs_file_sync(sqlite3_file *file, int flags);
static int cvfs_file_size(sqlite3_file *file, sqlite3_int64 *size_r);
static int cvfs_file_lock(sqlite3_file *file, int lock);
static int cvfs_file_unlock(sqlite3_file *file, int lock);
static int cvfs_file_check_reserved_lock(sqlite3_file *file, int *res_r);
static int cvfs_file_control(sqlite3_file *file, int op, void *arg);
static int cvfs_file_sector_size(sqlite3_file *file);
static int cvfs_file_device_characteristics(sqlite3_file *file);
static int cvfs_file_shm_map(sqlite3_file *file, int region, int size,
			     int extend, void volatile **p_r);
static int cvfs_file_shm_lock(sqlite3_file *file, int offset, int n,
			      int flags);
static void cvfs_file_shm_barrier(sqlite3_file *file);
static int cvfs_file_shm_unmap(sqlite3_file *file, int delete_flag);
static int cvfs_file_fetch(sqlite3_file *file, sqlite3_int64 offset, int amt,
			   void **p_r);
static int cvfs_file_unfetch(sqlite3_file *file, sqlite3_int64 offset,
			     void *p);

const sqlite3_io_methods cvfs_io_methods = {
	.iVersion = 3,
	.xClose = cvfs_file_close,
	.xRead = cvfs_file_read,
	.xWrite = cvfs_file_write,
	.xTruncate = cvfs_file_truncate,
	.xSync = cvfs_file_sync,
	.xFileSize = cvfs_file_size,
	.xLock = cvfs_file_lock,
	.xUnlock = cvfs_file_unlock,
	.xCheckReservedLock = cvfs_file_check_reserved_lock,
	.xFileControl = cvfs_file_control,
	.xSectorSize = cvfs_file_sector_size,
	.xDeviceCharacteristics = cvfs_file_device_characteristics,
	.xShmMap = cvfs_file_shm_map,
	.xShmLock = cvfs_file_shm_lock,
	.xShmBarrier = cvfs_file_shm_barrier,
	.xShmUnmap = cvfs_file_shm_unmap,
	.xFetch = cvfs_file_fetch,
	.xUnfetch = cvfs_file_unfetch,
};

int cvfs_file_setup(struct cvfs_file *f, const char *name, int flags)
{
	f->name = name == NULL ? "(temp)" : name;
	if ((flags & SQLITE_OPEN_MAIN_DB) != 0)
		f->kind = CVFS_FILE_MAIN;
	else if ((flags & SQLITE_OPEN_WAL) != 0)
		f->kind = CVFS_FILE_WAL;
	else if ((flags & SQLITE_OPEN_MAIN_JOURNAL) != 0)
		f->kind = CVFS_FILE_JOURNAL;
	else if ((flags & SQLITE_OPEN_SUPER_JOURNAL) != 0)
		f->kind = CVFS_FILE_PLAIN;
	else
		/* TEMP_DB, TRANSIENT_DB, TEMP_JOURNAL, SUBJOURNAL and
		   anything SQLite adds later: never plaintext on disk. */
		f->kind = CVFS_FILE_TEMP;
	return SQLITE_OK;
}

struct cvfs_file *cvfs_file_of_db(sqlite3 *db, const char *schema)
{
	sqlite3_file *file = NULL;

	if (sqlite3_file_control(db, schema, SQLITE_FCNTL_FILE_POINTER,
				 &file) != SQLITE_OK || file == NULL ||
	    file->pMethods != &cvfs_io_methods)
		return NULL;
	return (struct cvfs_file *)file;
}

/* The main database file whose -shm f's VFS calls may have to settle. */
static struct cvfs_file *cvfs_file_main_of(struct cvfs_file *f)
{
	switch (f->kind) {
	case CVFS_FILE_MAIN:
		return f;
	case CVFS_FILE_WAL:
	case CVFS_FILE_JOURNAL:
		return f->main;
	case CVFS_FILE_PLAIN:
	case CVFS_FILE_TEMP:
		break;
	}
	return NULL;
}

/* At the start of every method: settle the -shm header, and write a WAL
   frame header still held back for its page (cvfs-wal.c). Returns the
   error of that write. */
static int cvfs_file_enter(struct cvfs_file *f)
{
	cvfs_shm_settle(cvfs_file_main_of(f));
	return f->kind == CVFS_FILE_WAL ? cvfs_wal_flush(f) : SQLITE_OK;
}

static int cvfs_file_close(sqlite3_file *file)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc, flush_rc;

	flush_rc = cvfs_file_enter(f);
	if (f->kind == CVFS_FILE_WAL && f->main != NULL && f->main->wal == f)
		f->main->wal = NULL;
	cvfs_legacy_free(&f->legacy);
	cvfs_main_ra_free(f);
	rc = real->pMethods->xClose(real);
	if (rc == SQLITE_OK)
		rc = flush_rc;
	cvfs_key_unref(&f->key);
	if (f->scratch != NULL) {
		sodium_memzero(f->scratch, f->scratch_size);
		sqlite3_free(f->scratch);
		f->scratch = NULL;
	}
	return rc;
}

/* ---- main database ---------------------------------------------------- */

/* Learns page size and reserve from the plain bytes 16..23 of page 1.
   Returns SQLITE_IOERR_SHORT_READ for a file too short to have them. */
static int cvfs_main_geometry(struct cvfs_file *f)
{
	sqlite3_file *real = cvfs_file_real(f);
	unsigned char header[CVFS_PAGE1_PLAIN_END];
	int rc;

	rc = real->pMethods->xRead(real, header, sizeof(header), 0);
	if (rc != SQLITE_OK)
		return rc;
	if (cvfs_header_parse(&f->page_size, &f->reserve, header) < 0)
		return cvfs_file_fail(f, SQLITE_NOTADB, 1, 0,
				      "not a cryptvfs database header");
	return SQLITE_OK;
}

/* Reads the stored (encrypted) page pgno into out. */
static int cvfs_main_read_raw(struct cvfs_file *f, unsigned char *out,
			      uint32_t pgno)
{
	sqlite3_file *real = cvfs_file_real(f);
	size_t ps = f->page_size;
	sqlite3_int64 offset = (sqlite3_int64)(pgno - 1) * ps;
	int rc;

	rc = real->pMethods->xRead(real, out, (int)ps, offset);
	if (rc == SQLITE_IOERR_SHORT_READ) {
		sqlite3_int64 size = 0;

		memset(out, 0, ps);
		if (real->pMethods->xFileSize(real, &size) != SQLITE_OK ||
		    size > offset)
			return cvfs_file_fail(f, pgno == 1 ? SQLITE_NOTADB :
					      SQLITE_CORRUPT, pgno, offset,
					      "truncated page");
		/* Wholly past the end: SQLite wants zeros. */
		return SQLITE_IOERR_SHORT_READ;
	}
	if (rc != SQLITE_OK)
		memset(out, 0, ps);
	return rc;
}

/* ---- read-ahead of the main file ---------------------------------------

   SQLite's pager asks for one page per xRead. When it walks pages in
   order (a table scan, an overflow chain: a body chunk is 64 pages,
   mostly consecutive), the page after page N-1 is N: then the stored
   pages N.. (a window, below) are read in one call into ra_buf and the
   next reads in that range are served from it. Only ciphertext is held: every page
   is authenticated when SQLite takes it, exactly as one read from the
   file would be, and a page that fails drops the buffer. Page 1 is
   never in it (it is read at the start of every transaction; a lookup
   of page 2 right after it is no scan).

   Why the bytes held are the bytes the file has for every page SQLite
   takes from it. The buffer is dropped at every xLock and xUnlock of
   the main file, every xShmLock (lock or unlock), xShmBarrier and
   xShmUnmap, every xWrite, xTruncate and xSync of the main file by this
   connection, and at close. So it never outlives a read transaction:
   - Rollback journal: a reader holds SHARED on the main file for its
     whole transaction; nobody writes the file until it is released,
     which is an xUnlock here.
   - WAL: a read transaction begins with a shared WAL_READ_LOCK(i)
     taken through xShmLock and ends by releasing it. A checkpointer
     writes into the main file only frames up to the smallest read mark
     of the readers it could not lock out (mxSafeFrame in wal.c), and
     only while it holds WAL_READ_LOCK(0) exclusively, so a reader that
     took read lock 0 (all of the WAL backfilled, the main file alone is
     its snapshot) keeps every backfill out until it ends. A reader on
     lock i > 0 with mark m reads from the WAL every page that has a
     frame at or below its own mxFrame >= m; a page the checkpointer
     writes has a frame at or below m, so this reader never takes it
     from the main file. Every page this reader takes from the main file
     is therefore stable until its transaction ends. Pages read ahead
     that it would take from the WAL instead may be torn or stale in
     the buffer, but SQLite does not ask the main file for them in this
     transaction, and the buffer is gone at its end. The same holds for
     a read that reaches past the end of the file while a checkpointer
     extends it: the pages beyond are pages this reader takes from the
     WAL.
   - This connection's own writes go through xWrite/xTruncate/xSync (a
     checkpoint, a rollback-journal commit or a hot journal's rollback)
     and drop the buffer; WAL frames go to the -wal file, under
     WAL_WRITE_LOCK (an xShmLock) and are read from there. */

/* The window: CVFS_READAHEAD_MIN_PAGES at the start of a run (a body of
   a few pages reads little beyond its end), doubled at each read-ahead
   that starts where the last one ended, up to CVFS_READAHEAD_PAGES. */
#ifndef CVFS_READAHEAD_PAGES
#  define CVFS_READAHEAD_PAGES 16
#endif
#ifndef CVFS_READAHEAD_MIN_PAGES
#  define CVFS_READAHEAD_MIN_PAGES 4
#endif
/* At most this many bytes per read-ahead, whatever the page size. */
#define CVFS_READAHEAD_MAX_BYTES (256 * 1024)

/* Forgets the pages held and the sequence: the next read is no longer
   sequential. The bytes are ciphertext; they are wiped at close. */
static inline void cvfs_main_ra_drop(struct cvfs_file *f)
{
	f->ra_count = 0;
	f->ra_next = 0;
}

static void cvfs_main_ra_free(struct cvfs_file *f)
{
	f->ra_count = 0;
	if (f->ra_buf != NULL) {
		sodium_memzero(f->ra_buf, f->ra_used);
		sqlite3_free(f->ra_buf);
		f->ra_buf = NULL;
		f->ra_size = f->ra_used = 0;
	}
}

/* Reads the stored pages pgno.. into ra_buf in one call. On success
   ra_count > 0 and ra_first == pgno; on any problem nothing is held and
   the caller reads the page alone, as without a read-ahead (so an error,
   or a short read of page pgno, is reported as it always was). */
static void cvfs_main_read_ahead(struct cvfs_file *f, uint32_t pgno)
{
	sqlite3_file *real = cvfs_file_real(f);
	size_t ps = f->page_size;
	size_t max_pages = CVFS_READAHEAD_PAGES, pages, size;
	sqlite3_int64 offset = (sqlite3_int64)(pgno - 1) * ps;
	sqlite3_int64 file_size;
	int rc;

	if (max_pages * ps > CVFS_READAHEAD_MAX_BYTES)
		max_pages = CVFS_READAHEAD_MAX_BYTES / ps;
	if (f->ra_count > 0 && pgno == f->ra_first + f->ra_count)
		f->ra_window *= 2;
	else
		f->ra_window = CVFS_READAHEAD_MIN_PAGES;
	if (f->ra_window > max_pages)
		f->ra_window = max_pages;
	pages = f->ra_window;
	f->ra_count = 0;
	if (pages < 2)
		return;
	size = pages * ps;
	if (f->ra_size < max_pages * ps) {
		cvfs_main_ra_free(f);
		f->ra_buf = sqlite3_malloc64(max_pages * ps);
		if (f->ra_buf == NULL)
			return;
		f->ra_size = max_pages * ps;
	}
	if (f->ra_used < size)
		f->ra_used = size;
	rc = real->pMethods->xRead(real, f->ra_buf, (int)size, offset);
	if (rc == SQLITE_IOERR_SHORT_READ) {
		/* The end of the file: keep the whole pages there are. */
		if (real->pMethods->xFileSize(real, &file_size) != SQLITE_OK ||
		    file_size < offset + (sqlite3_int64)ps)
			return;
		if ((size_t)((file_size - offset) / ps) < pages)
			pages = (file_size - offset) / ps;
	} else if (rc != SQLITE_OK) {
		return;
	}
	f->ra_first = pgno;
	f->ra_count = pages;
}

/* The stored page pgno: *raw_r points into ra_buf when it holds the
   page (or a read-ahead from it succeeds), else at out, into which it
   was read alone. Returns cvfs_main_read_raw()'s result. */
static int cvfs_main_get_raw(struct cvfs_file *f, unsigned char *out,
			     uint32_t pgno, const unsigned char **raw_r)
{
	bool sequential = pgno > 2 && pgno == f->ra_next;

	f->ra_next = pgno + 1;
	if (f->ra_count == 0 || pgno < f->ra_first ||
	    pgno - f->ra_first >= f->ra_count) {
		/* Not held. A lookup elsewhere (an interior page between
		   leaves) keeps what is held; a sequential read replaces it. */
		if (sequential)
			cvfs_main_read_ahead(f, pgno);
		if (!sequential || f->ra_count == 0) {
			*raw_r = out;
			return cvfs_main_read_raw(f, out, pgno);
		}
	}
	*raw_r = f->ra_buf + (size_t)(pgno - f->ra_first) * f->page_size;
	return SQLITE_OK;
}

/* Reads and authenticates one whole page into out. */
static int cvfs_main_read_page(struct cvfs_file *f, unsigned char *out,
			       uint32_t pgno)
{
	size_t ps = f->page_size;
	sqlite3_int64 offset = (sqlite3_int64)(pgno - 1) * ps;
	unsigned char salt[CVFS_SALT_BYTES];
	int bad_rc = pgno == 1 ? SQLITE_NOTADB : SQLITE_CORRUPT;
	const unsigned char *raw;
	int rc;

	rc = cvfs_main_get_raw(f, out, pgno, &raw);
	if (rc != SQLITE_OK)
		return rc;
	if (cvfs_page_decrypt(out, salt, raw, ps, pgno, f->key->key) < 0) {
		cvfs_main_ra_drop(f);
		return cvfs_file_fail(f, bad_rc, pgno, offset,
				      "authentication failed");
	}
	if (pgno == 1) {
		unsigned int page_size, reserve;

		if (cvfs_header_parse(&page_size, &reserve, out) < 0 ||
		    page_size != ps) {
			memset(out, 0, ps);
			return cvfs_file_fail(f, bad_rc, pgno, offset,
					      "bad authenticated header");
		}
		memcpy(f->salt, salt, sizeof(salt));
		f->page1_seen = true;
	}
	return SQLITE_OK;
}

/* A read within the ciphertext of one page other than page 1, from a
   keystream block boundary: cvfs_page_decrypt_range() can serve it. */
static bool cvfs_main_read_is_slice(struct cvfs_file *f, int amt,
				    sqlite3_int64 offset)
{
	size_t ps = f->page_size;
	size_t in_page = offset % ps;

	return offset >= (sqlite3_int64)ps &&
		in_page % CVFS_CHACHA20_BLOCK_BYTES == 0 &&
		in_page + amt <= ps - CVFS_RESERVED_BYTES;
}

static int cvfs_main_read(struct cvfs_file *f, unsigned char *buf, int amt,
			  sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	size_t ps;
	int rc;

	if (f->page_size == 0) {
		rc = cvfs_main_geometry(f);
		if (rc == SQLITE_IOERR_SHORT_READ) {
			sqlite3_int64 size = 0;

			memset(buf, 0, amt);
			if (real->pMethods->xFileSize(real, &size) ==
			    SQLITE_OK && size == 0)
				return SQLITE_IOERR_SHORT_READ;
			return cvfs_file_fail(f, SQLITE_NOTADB, 1, 0,
					      "file too short");
		}
		if (rc != SQLITE_OK) {
			memset(buf, 0, amt);
			return rc;
		}
	}
	ps = f->page_size;
	if ((size_t)amt == ps && offset % ps == 0)
		return cvfs_main_read_page(f, buf, offset / ps + 1);

	unsigned char *page = cvfs_file_scratch(f, ps);
	size_t done = 0;

	if (page == NULL)
		return SQLITE_IOERR_NOMEM;
	if (cvfs_main_read_is_slice(f, amt, offset)) {
		/* SQLite's direct overflow reads (a page minus its reserved
		   bytes, straight into the blob): authenticate the page and
		   decrypt into buf, saving a copy and a wipe per page. The
		   scratch only ever holds ciphertext here. */
		uint32_t pgno = offset / ps + 1;
		const unsigned char *raw;

		rc = cvfs_main_get_raw(f, page, pgno, &raw);
		if (rc != SQLITE_OK) {
			memset(buf, 0, amt);
			return rc;
		}
		if (cvfs_page_decrypt_range(buf, raw, ps, pgno, offset % ps,
					    amt, f->key->key) < 0) {
			cvfs_main_ra_drop(f);
			return cvfs_file_fail(f, SQLITE_CORRUPT, pgno, offset,
					      "authentication failed");
		}
		return SQLITE_OK;
	}
	/* Any other partial read (the 100-byte header, the change counter):
	   decrypt each whole page it touches, hand out the slice. */
	while (done < (size_t)amt) {
		sqlite3_int64 pos = offset + done;
		size_t in_page = pos % ps;
		size_t take = ps - in_page;

		if (take > amt - done)
			take = amt - done;
		rc = cvfs_main_read_page(f, page, pos / ps + 1);
		if (rc != SQLITE_OK) {
			memset(buf, 0, amt);
			return rc;
		}
		memcpy(buf + done, page + in_page, take);
		done += take;
	}
	sodium_memzero(page, ps);
	return SQLITE_OK;
}

/* A write before page 1 to a file whose page size is not known yet: the
   pager spilling a new database (VACUUM INTO beyond the page cache).
   SQLite writes the main file only in whole pages, so (1) an empty file
   takes the size of this write as its page size, provided (2) it is one
   and (3) the write is page-aligned; page 1 must confirm it later
   (cvfs_main_write()). (4) A file with content has its page size on disk. */
static int cvfs_main_learn_page_size(struct cvfs_file *f, int amt,
				     sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	sqlite3_int64 size = -1;
	int rc;

	rc = real->pMethods->xFileSize(real, &size);
	if (rc != SQLITE_OK)
		return rc;
	if (size > 0) /* (4) */
		return cvfs_main_geometry(f);
	if (size != 0 || /* (1) */
	    amt < CVFS_MIN_PAGE_SIZE || amt > CVFS_MAX_PAGE_SIZE ||
	    (amt & (amt - 1)) != 0 || /* (2) */
	    offset % amt != 0) /* (3) */
		return cvfs_file_fail(f, SQLITE_IOERR_WRITE, 0, offset,
				      "refusing a partial page write");
	f->page_size = amt;
	f->reserve = CVFS_RESERVED_BYTES;
	f->page_size_unconfirmed = true;
	return SQLITE_OK;
}

static int cvfs_main_write(struct cvfs_file *f, const unsigned char *buf,
			   int amt, sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	unsigned char *page;
	uint32_t pgno;
	size_t ps;
	int rc;

	if (offset == 0) {
		unsigned int page_size, reserve;

		/* (1) page 1 must announce the 32 reserved bytes and (2) be
		   written whole, or its last bytes would be overwritten by
		   nonce and tag (or left plain). */
		if (amt < CVFS_PAGE1_PLAIN_END ||
		    cvfs_header_parse(&page_size, &reserve, buf) < 0 || /* (1) */
		    page_size != (unsigned int)amt) /* (2) */
			return cvfs_file_fail(f, SQLITE_IOERR_WRITE, 1, 0,
					      "page 1 lacks reserved bytes");
		/* Pages written before page 1 were sealed with the page
		   size learned from them: page 1 must agree. */
		if (f->page_size_unconfirmed && page_size != f->page_size)
			return cvfs_file_fail(f, SQLITE_IOERR_WRITE, 1, 0,
					      "page 1 contradicts the page "
					      "size of earlier pages");
		f->page_size = page_size;
		f->reserve = reserve;
		f->page_size_unconfirmed = false;
	} else if (f->page_size == 0) {
		rc = cvfs_main_learn_page_size(f, amt, offset);
		if (rc != SQLITE_OK)
			return rc;
	}
	ps = f->page_size;
	if (ps == 0 || (size_t)amt != ps || offset % ps != 0)
		return cvfs_file_fail(f, SQLITE_IOERR_WRITE,
				      ps == 0 ? 0 : offset / ps + 1, offset,
				      "refusing a partial page write");
	page = cvfs_file_scratch(f, ps);
	if (page == NULL)
		return SQLITE_IOERR_NOMEM;
	pgno = offset / ps + 1;
	if (f->ckpt_active) {
		/* A checkpoint copies the WAL page cvfs_wal_read() left
		   encrypted and verified into the buffer it writes from:
		   that is already this page as it must be stored (same key,
		   salt and page number). Any other buffer, or this one with
		   other reserved bytes, would be ciphertext taken for
		   plaintext and encrypted twice: refuse rather than store
		   a page nobody can read. */
		bool same = buf == f->ckpt_buf &&
			memcmp(buf + ps - CVFS_RESERVED_BYTES,
			       f->ckpt_reserved, CVFS_RESERVED_BYTES) == 0;

		f->ckpt_buf = NULL;
		if (!same)
			return cvfs_file_fail(f, SQLITE_IOERR_WRITE, pgno,
					      offset, "checkpoint writes a "
					      "buffer other than the WAL page "
					      "it read; refusing to encrypt "
					      "it twice");
		if (f->ckpt_pgno == pgno)
			return real->pMethods->xWrite(real, buf, amt, offset);
		/* Never seen from SQLite: re-encrypt under pgno. */
		if (cvfs_page_decrypt(page, NULL, buf, ps, f->ckpt_pgno,
				      f->key->key) < 0)
			return cvfs_file_fail(f, SQLITE_IOERR_WRITE, pgno,
					      offset, "checkpoint page changed");
		buf = page;
	}
	cvfs_page_encrypt(page, buf, ps, pgno, f->salt, f->key->key);
	return real->pMethods->xWrite(real, page, amt, offset);
}

/* ---- rollback journal ---------------------------------------------------- */

/* SQLite writes (and reads) each journal record as a 4-byte page number
   followed by the page at the next offset: that pair marks a page. */
static bool cvfs_journal_is_page(struct cvfs_file *f, int amt,
				 sqlite3_int64 offset)
{
	return f->main->page_size != 0 &&
		(size_t)amt == f->main->page_size && f->jrnl_pgno_valid &&
		f->jrnl_pgno_offset == offset - CVFS_JOURNAL_PGNO_BYTES &&
		f->jrnl_pgno != 0;
}

static void cvfs_journal_note(struct cvfs_file *f, const unsigned char *buf,
			      int amt, sqlite3_int64 offset)
{
	f->jrnl_pgno_valid = amt == CVFS_JOURNAL_PGNO_BYTES;
	if (f->jrnl_pgno_valid) {
		f->jrnl_pgno = cvfs_get_be32(buf);
		f->jrnl_pgno_offset = offset;
	}
}

static int cvfs_journal_read(struct cvfs_file *f, unsigned char *buf, int amt,
			     sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	rc = real->pMethods->xRead(real, buf, amt, offset);
	if (!cvfs_journal_is_page(f, amt, offset)) {
		cvfs_journal_note(f, buf, amt, offset);
		return rc;
	}
	f->jrnl_pgno_valid = false;
	if (rc != SQLITE_OK) {
		memset(buf, 0, amt);
		return rc;
	}
	if (cvfs_page_decrypt(buf, NULL, buf, amt, f->jrnl_pgno,
			      f->key->key) < 0)
		return cvfs_file_fail(f, SQLITE_CORRUPT, f->jrnl_pgno, offset,
				      "journal page authentication failed");
	return SQLITE_OK;
}

static int cvfs_journal_write(struct cvfs_file *f, const unsigned char *buf,
			      int amt, sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	unsigned char *page;

	if (!cvfs_journal_is_page(f, amt, offset)) {
		cvfs_journal_note(f, buf, amt, offset);
		return real->pMethods->xWrite(real, buf, amt, offset);
	}
	f->jrnl_pgno_valid = false;
	page = cvfs_file_scratch(f, amt);
	if (page == NULL)
		return SQLITE_IOERR_NOMEM;
	cvfs_page_encrypt(page, buf, amt, f->jrnl_pgno, f->main->salt,
			  f->key->key);
	return real->pMethods->xWrite(real, page, amt, offset);
}

/* ---- temp files ------------------------------------------------------- */

static int cvfs_temp_read(struct cvfs_file *f, unsigned char *buf, int amt,
			  sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	sqlite3_int64 size = 0;
	size_t valid = amt;
	int rc;

	rc = real->pMethods->xRead(real, buf, amt, offset);
	if (rc == SQLITE_IOERR_SHORT_READ) {
		/* Past the end SQLite expects zeros, not keystream. */
		if (real->pMethods->xFileSize(real, &size) != SQLITE_OK)
			size = 0;
		valid = size <= offset ? 0 :
			(size - offset < amt ? (size_t)(size - offset) :
			 (size_t)amt);
	} else if (rc != SQLITE_OK) {
		return rc;
	}
	cvfs_temp_xor(buf, valid, offset, f->temp_nonce, f->key->key);
	return rc;
}

static int cvfs_temp_write(struct cvfs_file *f, const unsigned char *buf,
			   int amt, sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	unsigned char *tmp = cvfs_file_scratch(f, amt);

	if (tmp == NULL)
		return SQLITE_IOERR_NOMEM;
	memcpy(tmp, buf, amt);
	cvfs_temp_xor(tmp, amt, offset, f->temp_nonce, f->key->key);
	return real->pMethods->xWrite(real, tmp, amt, offset);
}

/* ---- io methods -------------------------------------------------------- */

static int cvfs_file_read(sqlite3_file *file, void *buf, int amt,
			  sqlite3_int64 offset)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);

	cvfs_shm_settle(cvfs_file_main_of(f));
	switch (f->kind) {
	case CVFS_FILE_MAIN:
		return cvfs_main_read(f, buf, amt, offset);
	case CVFS_FILE_WAL:
		return cvfs_wal_read(f, buf, amt, offset);
	case CVFS_FILE_JOURNAL:
		return cvfs_journal_read(f, buf, amt, offset);
	case CVFS_FILE_TEMP:
		return cvfs_temp_read(f, buf, amt, offset);
	case CVFS_FILE_PLAIN:
		break;
	}
	return real->pMethods->xRead(real, buf, amt, offset);
}

static int cvfs_file_write(sqlite3_file *file, const void *buf, int amt,
			   sqlite3_int64 offset)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);

	cvfs_shm_settle(cvfs_file_main_of(f));
	switch (f->kind) {
	case CVFS_FILE_MAIN:
		cvfs_main_ra_drop(f);
		return cvfs_main_write(f, buf, amt, offset);
	case CVFS_FILE_WAL:
		return cvfs_wal_write(f, buf, amt, offset);
	case CVFS_FILE_JOURNAL:
		return cvfs_journal_write(f, buf, amt, offset);
	case CVFS_FILE_TEMP:
		return cvfs_temp_write(f, buf, amt, offset);
	case CVFS_FILE_PLAIN:
		break;
	}
	return real->pMethods->xWrite(real, buf, amt, offset);
}

static int cvfs_file_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	rc = cvfs_file_enter(f);
	if (rc != SQLITE_OK)
		return rc;
	f->jrnl_pgno_valid = false;
	cvfs_main_ra_drop(f);
	if (f->kind == CVFS_FILE_WAL && size < CVFS_WAL_HEADER_BYTES)
		f->wal_page_size = 0;
	cvfs_wal_forget(f);
	return real->pMethods->xTruncate(real, size);
}

static int cvfs_file_sync(sqlite3_file *file, int flags)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	rc = cvfs_file_enter(f);
	if (rc != SQLITE_OK)
		return rc;
	cvfs_main_ra_drop(f);
	return real->pMethods->xSync(real, flags);
}

static int cvfs_file_size(sqlite3_file *file, sqlite3_int64 *size_r)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	rc = cvfs_file_enter(f);
	if (rc != SQLITE_OK)
		return rc;
	return real->pMethods->xFileSize(real, size_r);
}

static int cvfs_file_lock(sqlite3_file *file, int lock)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	cvfs_main_ra_drop(f);
	rc = cvfs_file_enter(f);
	if (rc != SQLITE_OK)
		return rc;
	return real->pMethods->xLock(real, lock);
}

static int cvfs_file_unlock(sqlite3_file *file, int lock)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	cvfs_main_ra_drop(f);
	rc = cvfs_file_enter(f);
	if (rc != SQLITE_OK)
		return rc;
	return real->pMethods->xUnlock(real, lock);
}

static int cvfs_file_check_reserved_lock(sqlite3_file *file, int *res_r)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	rc = cvfs_file_enter(f);
	if (rc != SQLITE_OK)
		return rc;
	return real->pMethods->xCheckReservedLock(real, res_r);
}

static int cvfs_file_control(sqlite3_file *file, int op, void *arg)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	rc = cvfs_file_enter(f);
	if (rc != SQLITE_OK)
		return rc;
	switch (op) {
	case SQLITE_FCNTL_CKPT_START:
	case SQLITE_FCNTL_CKPT_DONE:
		f->ckpt_active = op == SQLITE_FCNTL_CKPT_START &&
			f->kind == CVFS_FILE_MAIN;
		f->ckpt_buf = NULL;
		break;
	case SQLITE_FCNTL_MMAP_SIZE:
		/* Mapped pages would bypass decryption: mmap stays off. */
		if (*(sqlite3_int64 *)arg > 0)
			*(sqlite3_int64 *)arg = 0;
		break;
	case SQLITE_FCNTL_VFSNAME:
		rc = real->pMethods->xFileControl(real, op, arg);
		if (rc == SQLITE_OK) {
			char *inner = *(char **)arg;

			*(char **)arg = sqlite3_mprintf(CVFS_VFS_NAME "/%z",
							inner);
		}
		return rc;
	default:
		break;
	}
	return real->pMethods->xFileControl(real, op, arg);
}

static int cvfs_file_sector_size(sqlite3_file *file)
{
	sqlite3_file *real = cvfs_file_real((struct cvfs_file *)file);

	return real->pMethods->xSectorSize(real);
}

static int cvfs_file_device_characteristics(sqlite3_file *file)
{
	sqlite3_file *real = cvfs_file_real((struct cvfs_file *)file);

	return real->pMethods->xDeviceCharacteristics(real);
}

/* The wal-index holds page numbers and checksums, no content; only its
   header's last frame checksum needs care (cvfs-shm.c). */
static int cvfs_file_shm_map(sqlite3_file *file, int region, int size,
			     int extend, void volatile **p_r)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	cvfs_shm_settle(f);
	rc = real->pMethods->xShmMap(real, region, size, extend, p_r);
	cvfs_shm_mapped(f, region, rc, *p_r);
	return rc;
}

static int cvfs_file_shm_lock(sqlite3_file *file, int offset, int n,
			      int flags)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	cvfs_main_ra_drop(f);
	cvfs_shm_before_lock(f, offset, flags);
	rc = real->pMethods->xShmLock(real, offset, n, flags);
	cvfs_shm_after_lock(f, offset, flags, rc);
	return rc;
}

static void cvfs_file_shm_barrier(sqlite3_file *file)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);

	cvfs_main_ra_drop(f);
	cvfs_shm_barrier(f);
	real->pMethods->xShmBarrier(real);
}

static int cvfs_file_shm_unmap(sqlite3_file *file, int delete_flag)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_file *real = cvfs_file_real(f);

	cvfs_main_ra_drop(f);
	cvfs_shm_unmapped(f);
	return real->pMethods->xShmUnmap(real, delete_flag);
}

static int cvfs_file_fetch(sqlite3_file *file ATTR_UNUSED,
			   sqlite3_int64 offset ATTR_UNUSED,
			   int amt ATTR_UNUSED, void **p_r)
{
	/* Never map: SQLite falls back to xRead. */
	*p_r = NULL;
	return SQLITE_OK;
}

static int cvfs_file_unfetch(sqlite3_file *file ATTR_UNUSED,
			     sqlite3_int64 offset ATTR_UNUSED,
			     void *p ATTR_UNUSED)
{
	return SQLITE_OK;
}
