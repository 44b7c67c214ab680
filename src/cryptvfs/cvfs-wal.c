/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The WAL file: frames of a 24-byte header and a page, the page stored
   as sqlite3mc stores it, the frame checksums over the stored bytes.

   System calls per frame: SQLite writes a frame as header, then page; the
   header is held back (f->wal_pending) and written with the encrypted
   page in one call, its checksum chained from the previous frame's,
   which is kept in memory (f->wal_sum) while this connection holds the
   WAL write lock, so appending a frame is one write. A page read is one
   read of the whole frame (the header says which page number the tag is
   bound to). Anything else on the file first writes a held-back header
   (cvfs_wal_flush()), so the file never misses a write SQLite made. */

#include <string.h>

#include <sodium.h>

#include "cryptvfs-private.h"

/* Learns page size and checksum byte order from the WAL header on disk. */
static int cvfs_wal_geometry(struct cvfs_file *f)
{
	sqlite3_file *real = cvfs_file_real(f);
	unsigned char header[CVFS_WAL_HEADER_BYTES];
	uint32_t magic, page_size;
	int rc;

	if (f->wal_page_size != 0)
		return SQLITE_OK;
	rc = real->pMethods->xRead(real, header, sizeof(header), 0);
	if (rc != SQLITE_OK)
		return rc;
	magic = cvfs_get_be32(header);
	page_size = cvfs_get_be32(header + 8);
	if ((magic != CVFS_WAL_MAGIC_LE && magic != CVFS_WAL_MAGIC_BE) ||
	    page_size < CVFS_MIN_PAGE_SIZE || page_size > CVFS_MAX_PAGE_SIZE ||
	    (page_size & (page_size - 1)) != 0)
		return SQLITE_NOTFOUND;
	f->wal_magic = magic;
	f->wal_page_size = page_size;
	return SQLITE_OK;
}

static bool cvfs_wal_is_frame_header(struct cvfs_file *f,
				     sqlite3_int64 offset)
{
	sqlite3_int64 frame = f->wal_page_size + CVFS_WAL_FRAME_HEADER_BYTES;

	return offset >= CVFS_WAL_HEADER_BYTES &&
		(offset - CVFS_WAL_HEADER_BYTES) % frame == 0;
}

static sqlite3_int64 cvfs_wal_frame_size(const struct cvfs_file *f)
{
	return f->wal_page_size + CVFS_WAL_FRAME_HEADER_BYTES;
}

/* The in-memory checksum chain is this connection's own: it holds from
   one frame it wrote to the next only while no other connection could
   write, i.e. while it kept the WAL write lock. */
static uint32_t cvfs_wal_unlocks(const struct cvfs_file *f)
{
	return f->main == NULL ? 0 : f->main->shm.write_unlocks;
}

static void cvfs_wal_sum_remember(struct cvfs_file *f,
				  sqlite3_int64 next_offset,
				  const uint32_t sum[2],
				  const unsigned char salt[8])
{
	f->wal_sum_offset = next_offset;
	f->wal_sum[0] = sum[0];
	f->wal_sum[1] = sum[1];
	memcpy(f->wal_sum_salt, salt, sizeof(f->wal_sum_salt));
	f->wal_sum_unlocks = cvfs_wal_unlocks(f);
	f->wal_sum_valid = true;
}

/* The checksum a frame at frame_offset with these salts chains from, if
   this connection wrote it and nobody can have written since. */
static bool cvfs_wal_sum_cached(const struct cvfs_file *f,
				sqlite3_int64 frame_offset,
				const unsigned char salt[8])
{
	return f->wal_sum_valid && f->wal_sum_offset == frame_offset &&
		f->wal_sum_unlocks == cvfs_wal_unlocks(f) &&
		memcmp(f->wal_sum_salt, salt, sizeof(f->wal_sum_salt)) == 0;
}

/* Reads the checksum a frame at frame_offset chains from: the WAL header's
   for the first frame, else the previous frame's. */
static int cvfs_wal_prev_checksum_disk(struct cvfs_file *f, uint32_t sum[2],
				       sqlite3_int64 frame_offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	sqlite3_int64 at = frame_offset == CVFS_WAL_HEADER_BYTES ?
		CVFS_WAL_HEADER_BYTES - 8 :
		frame_offset - cvfs_wal_frame_size(f) + CVFS_WAL_CKSUM_OFFSET;
	unsigned char raw[8];
	int rc;

	rc = real->pMethods->xRead(real, raw, sizeof(raw), at);
	if (rc != SQLITE_OK)
		return rc;
	sum[0] = cvfs_get_be32(raw);
	sum[1] = cvfs_get_be32(raw + 4);
	return SQLITE_OK;
}

/* The same, from memory when this connection wrote the frame before. */
static int cvfs_wal_prev_checksum(struct cvfs_file *f, uint32_t sum[2],
				  sqlite3_int64 frame_offset,
				  const unsigned char salt[8])
{
	if (cvfs_wal_sum_cached(f, frame_offset, salt)) {
		sum[0] = f->wal_sum[0];
		sum[1] = f->wal_sum[1];
		return SQLITE_OK;
	}
	return cvfs_wal_prev_checksum_disk(f, sum, frame_offset);
}

/* Computes the checksum of a frame (header + page as stored) into its
   header bytes 16..23, chained from prev. */
static void cvfs_wal_frame_checksum(struct cvfs_file *f, uint32_t sum[2],
				    const unsigned char *header,
				    const unsigned char *page)
{
	bool big_endian = (f->wal_magic & 1) != 0;

	cvfs_wal_checksum(sum, header, 8, big_endian);
	cvfs_wal_checksum(sum, page, f->wal_page_size, big_endian);
}

static bool cvfs_wal_checksum_matches(const uint32_t sum[2],
				      const unsigned char *header)
{
	return sum[0] == cvfs_get_be32(header + CVFS_WAL_CKSUM_OFFSET) &&
		sum[1] == cvfs_get_be32(header + CVFS_WAL_CKSUM_OFFSET + 4);
}

/* Tries one candidate for the 32 reserved bytes a legacy frame was
   checksummed with; base is the checksum state before them. */
static bool cvfs_wal_legacy_try(struct cvfs_file *f, const uint32_t base[2],
				const unsigned char *frame,
				const unsigned char *reserved)
{
	uint32_t sum[2] = { base[0], base[1] };

	cvfs_wal_checksum(sum, reserved, CVFS_RESERVED_BYTES,
			  (f->wal_magic & 1) != 0);
	return cvfs_wal_checksum_matches(sum, frame);
}

/* The 1-based number of the frame whose header is at offset. */
static uint32_t cvfs_wal_frame_number(struct cvfs_file *f,
				      sqlite3_int64 offset)
{
	return (offset - CVFS_WAL_HEADER_BYTES) /
		(f->wal_page_size + CVFS_WAL_FRAME_HEADER_BYTES) + 1;
}

/* Makes the legacy index hold exactly frames 1 .. frame - 1. Recovery
   reads the frames in order, so only a read elsewhere reads the WAL. */
static int cvfs_wal_legacy_catch_up(struct cvfs_file *f, uint32_t frame)
{
	sqlite3_file *real = cvfs_file_real(f);
	sqlite3_int64 frame_size = f->wal_page_size +
		CVFS_WAL_FRAME_HEADER_BYTES;
	unsigned char head[4], reserved[CVFS_RESERVED_BYTES];
	int rc;

	cvfs_legacy_truncate(&f->legacy, frame);
	while (f->legacy.count + 1 < frame) {
		sqlite3_int64 at = CVFS_WAL_HEADER_BYTES +
			(sqlite3_int64)f->legacy.count * frame_size;

		rc = real->pMethods->xRead(real, head, sizeof(head), at);
		if (rc == SQLITE_OK)
			rc = real->pMethods->xRead(real, reserved,
						   sizeof(reserved),
						   at + frame_size -
						   CVFS_RESERVED_BYTES);
		if (rc != SQLITE_OK)
			return rc;
		if (cvfs_legacy_push(&f->legacy, cvfs_get_be32(head),
				     reserved) < 0)
			return SQLITE_IOERR_NOMEM;
	}
	return SQLITE_OK;
}

/* sqlite3mc's legacy WAL checksums the page as the pager held it: the
   plaintext, but with the reserved bytes of the version the pager had
   read before (nonce and tag of that copy), or zeros for a new page.
   That copy may be any earlier frame of the page, however far back (a
   page stays cached across many commits of its connection), or the page
   in the main file. Find which; on success plain's reserved bytes are
   set to it. Needs the legacy index to hold the frames before frame. */
static bool cvfs_wal_legacy_match(struct cvfs_file *f, unsigned char *plain,
				  const unsigned char *frame_buf,
				  const uint32_t prev[2])
{
	size_t ps = f->wal_page_size;
	unsigned char *reserved = plain + ps - CVFS_RESERVED_BYTES;
	const unsigned char *stored = frame_buf + CVFS_WAL_FRAME_HEADER_BYTES +
		ps - CVFS_RESERVED_BYTES;
	uint32_t pgno = cvfs_get_be32(frame_buf);
	uint32_t base[2] = { prev[0], prev[1] };
	bool big_endian = (f->wal_magic & 1) != 0;

	cvfs_wal_checksum(base, frame_buf, 8, big_endian);
	cvfs_wal_checksum(base, plain, ps - CVFS_RESERVED_BYTES, big_endian);
	memset(reserved, 0, CVFS_RESERVED_BYTES);
	if (cvfs_wal_legacy_try(f, base, frame_buf, reserved))
		return true;
	if (cvfs_wal_legacy_try(f, base, frame_buf, stored)) {
		memcpy(reserved, stored, CVFS_RESERVED_BYTES);
		return true;
	}
	/* Every earlier frame of the same page, newest first... */
	for (uint32_t i = cvfs_legacy_newest(&f->legacy, pgno); i != 0;
	     i = f->legacy.frames[i - 1].prev) {
		if (cvfs_wal_legacy_try(f, base, frame_buf,
					f->legacy.frames[i - 1].reserved)) {
			memcpy(reserved, f->legacy.frames[i - 1].reserved,
			       CVFS_RESERVED_BYTES);
			return true;
		}
	}
	/* ...then the page in the main file. */
	if (f->main != NULL) {
		sqlite3_file *main_real = cvfs_file_real(f->main);

		if (main_real->pMethods->xRead(main_real, reserved,
					       CVFS_RESERVED_BYTES,
					       (sqlite3_int64)pgno * ps -
					       CVFS_RESERVED_BYTES) ==
		    SQLITE_OK &&
		    cvfs_wal_legacy_try(f, base, frame_buf, reserved))
			return true;
	}
	return false;
}

/* A whole-frame read comes only from recovery and from the checksum
   rewrite, both of which checksum the bytes. Our frames (and sqlite3mc's
   non-legacy ones) are checksummed over the ciphertext: hand those back
   as stored. A legacy sqlite3mc frame is checksummed over the plaintext:
   hand it back decrypted once its tag verifies. Anything else fails
   SQLite's check and ends the log, as a torn write does. */
static int cvfs_wal_read_frame(struct cvfs_file *f, unsigned char *buf,
			       sqlite3_int64 offset)
{
	size_t ps = f->wal_page_size;
	unsigned char stored[CVFS_RESERVED_BYTES];
	uint32_t prev[2], sum[2];
	unsigned char *plain;
	uint32_t pgno = cvfs_get_be32(buf);
	uint32_t frame = cvfs_wal_frame_number(f, offset);
	bool first = frame == 1;
	int rc;

	if (first) {
		f->wal_legacy = false;
		cvfs_legacy_reset(&f->legacy);
	}
	if (cvfs_wal_prev_checksum_disk(f, prev, offset) != SQLITE_OK)
		return SQLITE_OK;
	memcpy(stored, buf + CVFS_WAL_FRAME_HEADER_BYTES + ps -
	       CVFS_RESERVED_BYTES, sizeof(stored));
	sum[0] = prev[0];
	sum[1] = prev[1];
	cvfs_wal_frame_checksum(f, sum, buf,
				buf + CVFS_WAL_FRAME_HEADER_BYTES);
	/* Only a WAL whose first frame is legacy is searched for more:
	   our own torn tails and checksum rewrites never pay for it. */
	if (!cvfs_wal_checksum_matches(sum, buf) && pgno != 0 &&
	    (first || f->wal_legacy)) {
		rc = cvfs_wal_legacy_catch_up(f, frame);
		if (rc != SQLITE_OK)
			return rc;
		plain = cvfs_file_scratch(f, ps);
		if (plain == NULL)
			return SQLITE_IOERR_NOMEM;
		if (cvfs_page_decrypt(plain, NULL,
				      buf + CVFS_WAL_FRAME_HEADER_BYTES, ps,
				      pgno, f->key->key) == 0 &&
		    cvfs_wal_legacy_match(f, plain, buf, prev)) {
			memcpy(buf + CVFS_WAL_FRAME_HEADER_BYTES, plain, ps);
			f->wal_legacy = true;
		}
		sodium_memzero(plain, ps);
	}
	if (!f->wal_legacy)
		return SQLITE_OK;
	/* Later legacy frames may have been checksummed with this one's
	   nonce and tag. */
	rc = cvfs_wal_legacy_catch_up(f, frame);
	if (rc == SQLITE_OK &&
	    cvfs_legacy_push(&f->legacy, pgno, stored) < 0)
		rc = SQLITE_IOERR_NOMEM;
	return rc;
}

int cvfs_wal_flush(struct cvfs_file *f)
{
	sqlite3_file *real = cvfs_file_real(f);

	if (!f->wal_pending_valid)
		return SQLITE_OK;
	f->wal_pending_valid = false;
	/* Its checksum is SQLite's (over the plaintext): a frame whose page
	   never came, which recovery ends the log at, as SQLite would. */
	return real->pMethods->xWrite(real, f->wal_pending,
				      CVFS_WAL_FRAME_HEADER_BYTES,
				      f->wal_pending_offset);
}

void cvfs_wal_forget(struct cvfs_file *f)
{
	f->wal_pending_valid = false;
	f->wal_sum_valid = false;
	f->wal_frame_read = false;
	cvfs_legacy_reset(&f->legacy);
}

bool cvfs_wal_stored_checksum(struct cvfs_file *wal, uint32_t mx_frame,
			      unsigned int page_size, unsigned char salt_r[8],
			      uint32_t sum_r[2])
{
	sqlite3_file *real = cvfs_file_real(wal);
	sqlite3_int64 frame = page_size + CVFS_WAL_FRAME_HEADER_BYTES;
	sqlite3_int64 offset = CVFS_WAL_HEADER_BYTES +
		(sqlite3_int64)(mx_frame - 1) * frame;
	unsigned char raw[16];

	if (wal->wal_sum_valid && wal->wal_page_size == page_size &&
	    wal->wal_sum_offset == offset + frame &&
	    wal->wal_sum_unlocks == cvfs_wal_unlocks(wal)) {
		/* The frame this connection has just appended. */
		memcpy(salt_r, wal->wal_sum_salt, 8);
		sum_r[0] = wal->wal_sum[0];
		sum_r[1] = wal->wal_sum[1];
		return true;
	}
	if (cvfs_wal_flush(wal) != SQLITE_OK ||
	    real->pMethods->xRead(real, raw, sizeof(raw), offset + 8) !=
	    SQLITE_OK)
		return false;
	memcpy(salt_r, raw, 8);
	sum_r[0] = cvfs_get_be32(raw + 8);
	sum_r[1] = cvfs_get_be32(raw + 12);
	return true;
}

/* A page read: the page SQLite asked for and the frame header before
   it, in one read into the scratch buffer. */
static int cvfs_wal_read_page(struct cvfs_file *f, unsigned char *buf,
			      sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	size_t ps = f->wal_page_size;
	sqlite3_int64 header_offset = offset - CVFS_WAL_FRAME_HEADER_BYTES;
	unsigned char *frame, *stored;
	uint32_t pgno;
	int rc;

	frame = cvfs_file_scratch(f, ps + CVFS_WAL_FRAME_HEADER_BYTES);
	if (frame == NULL) {
		memset(buf, 0, ps);
		return SQLITE_IOERR_NOMEM;
	}
	stored = frame + CVFS_WAL_FRAME_HEADER_BYTES;
	rc = real->pMethods->xRead(real, frame,
				   (int)(ps + CVFS_WAL_FRAME_HEADER_BYTES),
				   header_offset);
	if (rc != SQLITE_OK) {
		/* No partial ciphertext either. */
		memset(buf, 0, ps);
		return rc;
	}
	pgno = cvfs_get_be32(frame);
	if (pgno != 0 && f->main != NULL && f->main->ckpt_active) {
		/* Inside a checkpoint a WAL page is read only to be written
		   to the main file at page pgno, where this ciphertext is
		   valid as is: verify the tag, skip decrypt and re-encrypt.
		   cvfs_main_write() checks it gets this buffer back. */
		if (cvfs_page_verify(stored, ps, pgno, f->key->key) == 0) {
			memcpy(buf, stored, ps);
			f->main->ckpt_buf = buf;
			f->main->ckpt_pgno = pgno;
			memcpy(f->main->ckpt_reserved,
			       stored + ps - CVFS_RESERVED_BYTES,
			       CVFS_RESERVED_BYTES);
			return SQLITE_OK;
		}
	} else if (pgno != 0 && cvfs_page_decrypt(buf, NULL, stored, ps, pgno,
						  f->key->key) == 0) {
		return SQLITE_OK;
	}
	memset(buf, 0, ps);
	return cvfs_file_fail(f, SQLITE_CORRUPT, pgno, offset,
			      "WAL frame authentication failed");
}

int cvfs_wal_read(struct cvfs_file *f, unsigned char *buf, int amt,
		  sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	size_t ps;
	int rc;

	rc = cvfs_wal_flush(f);
	if (rc != SQLITE_OK)
		return rc;
	f->wal_frame_read = false;
	if (offset < CVFS_WAL_HEADER_BYTES)
		return real->pMethods->xRead(real, buf, amt, offset);
	if (cvfs_wal_geometry(f) != SQLITE_OK) {
		memset(buf, 0, amt);
		return cvfs_file_fail(f, SQLITE_CORRUPT, 0, offset,
				      "frame without a WAL header");
	}
	ps = f->wal_page_size;
	if ((size_t)amt == ps &&
	    cvfs_wal_is_frame_header(f, offset - CVFS_WAL_FRAME_HEADER_BYTES))
		return cvfs_wal_read_page(f, buf, offset);
	rc = real->pMethods->xRead(real, buf, amt, offset);
	if (rc != SQLITE_OK) {
		memset(buf, 0, amt);
		return rc;
	}
	if ((size_t)amt == ps + CVFS_WAL_FRAME_HEADER_BYTES &&
	    cvfs_wal_is_frame_header(f, offset)) {
		rc = cvfs_wal_read_frame(f, buf, offset);
		f->wal_frame_read = rc == SQLITE_OK;
		f->wal_frame_read_offset = offset;
		return rc;
	}
	/* Frame headers and salts are plain by design. */
	if ((size_t)amt <= CVFS_WAL_FRAME_HEADER_BYTES)
		return SQLITE_OK;
	memset(buf, 0, amt);
	return cvfs_file_fail(f, SQLITE_IOERR_READ, 0, offset,
			      "unexpected WAL read");
}

/* Encrypts a frame's page. A new frame (its header held back) gets a
   checksum over the ciphertext (non-legacy WAL) in place of SQLite's over
   the plaintext, and goes to disk with its header in one write. */
static int cvfs_wal_write_page(struct cvfs_file *f, const unsigned char *page,
			       sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	size_t ps = f->wal_page_size;
	sqlite3_int64 header_offset = offset - CVFS_WAL_FRAME_HEADER_BYTES;
	unsigned char *frame, *cipher;
	bool fresh;
	uint32_t pgno, sum[2];
	int rc;

	frame = cvfs_file_scratch(f, ps + CVFS_WAL_FRAME_HEADER_BYTES);
	if (frame == NULL)
		return SQLITE_IOERR_NOMEM;
	cipher = frame + CVFS_WAL_FRAME_HEADER_BYTES;
	fresh = f->wal_pending_valid && f->wal_pending_offset == header_offset;
	if (fresh) {
		memcpy(frame, f->wal_pending, CVFS_WAL_FRAME_HEADER_BYTES);
		f->wal_pending_valid = false;
	} else {
		/* SQLite overwriting a frame of the open transaction: its
		   header is on disk, and SQLite recomputes the checksums
		   (over what we return: ciphertext) before the commit. The
		   chain in memory no longer holds from here on. */
		rc = cvfs_wal_flush(f);
		if (rc != SQLITE_OK)
			return rc;
		f->wal_sum_valid = false;
		rc = real->pMethods->xRead(real, frame,
					   CVFS_WAL_FRAME_HEADER_BYTES,
					   header_offset);
		if (rc != SQLITE_OK)
			return cvfs_file_fail(f, SQLITE_IOERR_WRITE, 0, offset,
					      "frame header unreadable");
	}
	pgno = cvfs_get_be32(frame);
	if (pgno == 0)
		return cvfs_file_fail(f, SQLITE_IOERR_WRITE, 0, offset,
				      "frame without a page number");
	cvfs_page_encrypt(cipher, page, ps, pgno, f->main->salt, f->key->key);
	if (!fresh)
		return real->pMethods->xWrite(real, cipher, (int)ps, offset);
	rc = cvfs_wal_prev_checksum(f, sum, header_offset, frame + 8);
	if (rc != SQLITE_OK)
		return rc;
	cvfs_wal_frame_checksum(f, sum, frame, cipher);
	cvfs_put_be32(frame + CVFS_WAL_CKSUM_OFFSET, sum[0]);
	cvfs_put_be32(frame + CVFS_WAL_CKSUM_OFFSET + 4, sum[1]);
	rc = real->pMethods->xWrite(real, frame,
				    (int)(ps + CVFS_WAL_FRAME_HEADER_BYTES),
				    header_offset);
	if (rc != SQLITE_OK) {
		f->wal_sum_valid = false;
		return rc;
	}
	cvfs_wal_sum_remember(f, offset + ps, sum, frame + 8);
	return SQLITE_OK;
}

int cvfs_wal_write(struct cvfs_file *f, const unsigned char *buf, int amt,
		   sqlite3_int64 offset)
{
	sqlite3_file *real = cvfs_file_real(f);
	bool rewrite;
	size_t ps;
	int rc;

	rewrite = f->wal_frame_read && f->wal_frame_read_offset == offset;
	f->wal_frame_read = false;
	if (offset < CVFS_WAL_HEADER_BYTES) {
		rc = cvfs_wal_flush(f);
		if (rc != SQLITE_OK)
			return rc;
		/* A new WAL header: new salts, maybe a new page size. */
		cvfs_wal_forget(f);
		f->wal_legacy = false;
		f->wal_page_size = 0;
		rc = real->pMethods->xWrite(real, buf, amt, offset);
		if (rc == SQLITE_OK && offset == 0 &&
		    amt >= CVFS_WAL_HEADER_BYTES) {
			/* The first frame chains from the header's checksum
			   and carries its salts. */
			uint32_t sum[2] = {
				cvfs_get_be32(buf + CVFS_WAL_HEADER_BYTES - 8),
				cvfs_get_be32(buf + CVFS_WAL_HEADER_BYTES - 4),
			};

			cvfs_wal_sum_remember(f, CVFS_WAL_HEADER_BYTES, sum,
					      buf + 16);
		}
		return rc;
	}
	if (cvfs_wal_geometry(f) != SQLITE_OK)
		return cvfs_file_fail(f, SQLITE_IOERR_WRITE, 0, offset,
				      "frame without a WAL header");
	ps = f->wal_page_size;
	if (f->wal_pending_valid &&
	    ((size_t)amt != ps ||
	     f->wal_pending_offset != offset - CVFS_WAL_FRAME_HEADER_BYTES)) {
		rc = cvfs_wal_flush(f);
		if (rc != SQLITE_OK)
			return rc;
	}
	/* What the legacy index knows of this frame and later ones is
	   about to be stale. */
	cvfs_legacy_truncate(&f->legacy, cvfs_wal_frame_number(f, offset));
	if (amt == CVFS_WAL_FRAME_HEADER_BYTES &&
	    cvfs_wal_is_frame_header(f, offset)) {
		if (rewrite) {
			/* walRewriteChecksums(): SQLite chained it over the
			   frame as stored, which it has just read. */
			f->wal_sum_valid = false;
			return real->pMethods->xWrite(real, buf, amt, offset);
		}
		/* Held back for the page that follows (or the next call). */
		memcpy(f->wal_pending, buf, CVFS_WAL_FRAME_HEADER_BYTES);
		f->wal_pending_offset = offset;
		f->wal_pending_valid = true;
		return SQLITE_OK;
	}
	if ((size_t)amt == ps &&
	    cvfs_wal_is_frame_header(f, offset - CVFS_WAL_FRAME_HEADER_BYTES))
		return cvfs_wal_write_page(f, buf, offset);
	if ((size_t)amt == ps + CVFS_WAL_FRAME_HEADER_BYTES &&
	    cvfs_wal_is_frame_header(f, offset)) {
		memcpy(f->wal_pending, buf, CVFS_WAL_FRAME_HEADER_BYTES);
		f->wal_pending_offset = offset;
		f->wal_pending_valid = true;
		return cvfs_wal_write_page(f, buf + CVFS_WAL_FRAME_HEADER_BYTES,
					   offset + CVFS_WAL_FRAME_HEADER_BYTES);
	}
	return cvfs_file_fail(f, SQLITE_IOERR_WRITE, 0, offset,
			      "refusing a partial WAL frame write");
}
