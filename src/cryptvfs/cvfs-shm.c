/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The wal-index header as other writers see it.

   A WAL frame's checksum continues the one of the frame before it, and a
   writer takes that previous checksum not from the WAL file but from the
   wal-index header in the -shm (aFrameCksum, next to mxFrame). SQLite
   under cryptvfs computes it over the plaintext page it hands to xWrite;
   cvfs_wal_write_page() stores a checksum over the ciphertext instead,
   as sqlite3mc does. Left alone, the -shm would keep SQLite's plaintext
   chain after each of our commits, a concurrent sqlite3mc writer would
   chain its frames from it, and the next recovery, which recomputes the
   chain from the file, would end the WAL at its first frame: its
   commits gone.

   So while this connection holds the WAL write lock, the header SQLite
   publishes gets the checksum of frame mxFrame as it is on disk. SQLite
   writes the header twice, copy 1, xShmBarrier, copy 0 (readers read 0,
   then 1, and distrust a header whose copies differ). In that barrier
   copy 1 is corrected (its aFrameCksum and header checksum); at this
   connection's next VFS call, at the latest when it releases the write
   lock, copy 0 becomes the same. In between the copies differ: a reader
   waits (it cannot take the write lock to rebuild the index), and if
   this process dies there, the next one to look rebuilds the wal-index
   from the WAL, which has the right checksums. No reader ever sees a
   consistent header with a plaintext chain.

   SQLite keeps its own copy of the header. When it differs from the -shm
   it reloads the header and drops its page cache at the next read
   transaction, and refuses to write from a read transaction begun
   before it (SQLITE_BUSY_SNAPSHOT). A connection that still holds its
   read transaction after its commit (a statement still running) did not
   reload: when it takes the write lock again and nobody else has
   written, copy 0 goes back to what SQLite wrote for the moment of its
   check, and is corrected again at the next call. */

#include <string.h>

#include "cryptvfs-private.h"

/* struct WalIndexHdr (wal.c), native byte order. */
#define CVFS_SHM_VERSION 3007000u
#define CVFS_SHM_OFF_VERSION 0
#define CVFS_SHM_OFF_IS_INIT 12
#define CVFS_SHM_OFF_PAGE_SIZE 14
#define CVFS_SHM_OFF_MX_FRAME 16
#define CVFS_SHM_OFF_FRAME_CKSUM 24
#define CVFS_SHM_OFF_SALT 32
#define CVFS_SHM_OFF_CKSUM 40
/* wal.c's lock slots: WAL_WRITE_LOCK, then CKPT, RECOVER, READ(0..4). */
#define CVFS_SHM_WRITE_LOCK 0
#define CVFS_SHM_READ_LOCK_FIRST 3

static uint32_t cvfs_shm_get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void cvfs_shm_put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

/* walChecksumBytes() in native order over the fields before aCksum. */
static void cvfs_shm_checksum(const unsigned char *hdr, uint32_t sum[2])
{
	uint32_t s1 = 0, s2 = 0;

	for (size_t i = 0; i < CVFS_SHM_OFF_CKSUM; i += 8) {
		s1 += cvfs_shm_get32(hdr + i) + s2;
		s2 += cvfs_shm_get32(hdr + i + 4) + s1;
	}
	sum[0] = s1;
	sum[1] = s2;
}

static bool cvfs_shm_valid(const unsigned char *hdr)
{
	uint32_t sum[2];

	cvfs_shm_checksum(hdr, sum);
	return hdr[CVFS_SHM_OFF_IS_INIT] != 0 &&
		cvfs_shm_get32(hdr + CVFS_SHM_OFF_VERSION) ==
		CVFS_SHM_VERSION &&
		cvfs_shm_get32(hdr + CVFS_SHM_OFF_CKSUM) == sum[0] &&
		cvfs_shm_get32(hdr + CVFS_SHM_OFF_CKSUM + 4) == sum[1];
}

static void cvfs_shm_load(const struct cvfs_file *f, unsigned int copy,
			  unsigned char out[CVFS_SHM_HDR_BYTES])
{
	memcpy(out, (const void *)(f->shm.region0 + copy * CVFS_SHM_HDR_BYTES),
	       CVFS_SHM_HDR_BYTES);
}

static void cvfs_shm_store(struct cvfs_file *f, unsigned int copy,
			   const unsigned char hdr[CVFS_SHM_HDR_BYTES])
{
	sqlite3_file *real = cvfs_file_real(f);

	memcpy((void *)(f->shm.region0 + copy * CVFS_SHM_HDR_BYTES), hdr,
	       CVFS_SHM_HDR_BYTES);
	real->pMethods->xShmBarrier(real);
}

void cvfs_shm_mapped(struct cvfs_file *f, int region, int rc,
		     void volatile *p)
{
	if (region != 0 || p == NULL ||
	    (rc != SQLITE_OK && (rc & 0xff) != SQLITE_READONLY))
		return;
	f->shm.region0 = p;
	/* unix maps a read-only -shm PROT_READ: never write to it. */
	f->shm.readonly = rc != SQLITE_OK;
}

void cvfs_shm_unmapped(struct cvfs_file *f)
{
	uint32_t write_unlocks = f->shm.write_unlocks;

	cvfs_shm_settle(f);
	memset(&f->shm, 0, sizeof(f->shm));
	/* Never back to a value a WAL checksum cache may hold. */
	f->shm.write_unlocks = write_unlocks + 1;
}

void cvfs_shm_settle_slow(struct cvfs_file *f)
{
	unsigned char copy1[CVFS_SHM_HDR_BYTES];

	f->shm.copy0_stale = false;
	f->shm.reverted = false;
	if (f->shm.region0 == NULL)
		return;
	/* Copy 1 is still what we made it: nobody else can write while we
	   hold the write lock, and SQLite writes copy 1 first. */
	cvfs_shm_load(f, 1, copy1);
	if (memcmp(copy1, f->shm.fixed, CVFS_SHM_HDR_BYTES) == 0)
		cvfs_shm_store(f, 0, copy1);
}

void cvfs_shm_barrier(struct cvfs_file *f)
{
	unsigned char copy0[CVFS_SHM_HDR_BYTES], copy1[CVFS_SHM_HDR_BYTES];
	unsigned char salt[8];
	unsigned int page_size;
	uint16_t raw_size;
	uint32_t mx_frame, disk[2], sum[2];

	cvfs_shm_settle(f);
	if (!f->shm.write_lock || f->shm.region0 == NULL || f->shm.readonly)
		return;
	/* Between the two copies of walIndexWriteHdr(): copy 1 is new. */
	cvfs_shm_load(f, 0, copy0);
	cvfs_shm_load(f, 1, copy1);
	if (memcmp(copy0, copy1, CVFS_SHM_HDR_BYTES) == 0 ||
	    !cvfs_shm_valid(copy1))
		return;
	mx_frame = cvfs_shm_get32(copy1 + CVFS_SHM_OFF_MX_FRAME);
	memcpy(&raw_size, copy1 + CVFS_SHM_OFF_PAGE_SIZE, sizeof(raw_size));
	/* szPage (u16): 1 stands for 65536. */
	page_size = (raw_size & 0xfe00) + ((raw_size & 1) << 16);
	/* An empty WAL (a restart) chains from the WAL header, not from
	   aFrameCksum. */
	if (mx_frame == 0 || page_size < CVFS_MIN_PAGE_SIZE ||
	    f->wal == NULL ||
	    !cvfs_wal_stored_checksum(f->wal, mx_frame, page_size, salt,
				      disk) ||
	    memcmp(salt, copy1 + CVFS_SHM_OFF_SALT, sizeof(salt)) != 0)
		return;
	if (cvfs_shm_get32(copy1 + CVFS_SHM_OFF_FRAME_CKSUM) == disk[0] &&
	    cvfs_shm_get32(copy1 + CVFS_SHM_OFF_FRAME_CKSUM + 4) == disk[1])
		return;
	memcpy(f->shm.plain, copy1, CVFS_SHM_HDR_BYTES);
	cvfs_shm_put32(copy1 + CVFS_SHM_OFF_FRAME_CKSUM, disk[0]);
	cvfs_shm_put32(copy1 + CVFS_SHM_OFF_FRAME_CKSUM + 4, disk[1]);
	cvfs_shm_checksum(copy1, sum);
	cvfs_shm_put32(copy1 + CVFS_SHM_OFF_CKSUM, sum[0]);
	cvfs_shm_put32(copy1 + CVFS_SHM_OFF_CKSUM + 4, sum[1]);
	memcpy(f->shm.fixed, copy1, CVFS_SHM_HDR_BYTES);
	memcpy((void *)(f->shm.region0 + CVFS_SHM_HDR_BYTES), copy1,
	       CVFS_SHM_HDR_BYTES);
	/* The caller's barrier follows, then SQLite writes copy 0. */
	f->shm.copy0_stale = true;
	f->shm.fixed_this_lock = true;
}

static bool cvfs_shm_is_write_lock(int offset, int flags)
{
	return offset == CVFS_SHM_WRITE_LOCK &&
		(flags & SQLITE_SHM_EXCLUSIVE) != 0;
}

static bool cvfs_shm_is_read_lock(int offset, int flags)
{
	return offset >= CVFS_SHM_READ_LOCK_FIRST &&
		offset < SQLITE_SHM_NLOCK && (flags & SQLITE_SHM_SHARED) != 0;
}

void cvfs_shm_before_lock(struct cvfs_file *f, int offset, int flags)
{
	/* No call since the revert below: SQLite still has the plain copy
	   (its check passed, or sqlite3WalUndo() copied it back). */
	bool untouched = f->shm.reverted;

	cvfs_shm_settle(f);
	if ((flags & SQLITE_SHM_UNLOCK) == 0)
		return;
	if (cvfs_shm_is_write_lock(offset, flags)) {
		if (f->shm.fixed_this_lock)
			f->shm.plain_in_memory = f->shm.read_lock;
		else if (!untouched)
			f->shm.plain_in_memory = false;
		f->shm.fixed_this_lock = false;
		f->shm.write_lock = false;
		f->shm.write_unlocks++;
	} else if (cvfs_shm_is_read_lock(offset, flags)) {
		/* The next read transaction loads the header afresh. */
		f->shm.read_lock = false;
		f->shm.plain_in_memory = false;
	}
}

void cvfs_shm_after_lock(struct cvfs_file *f, int offset, int flags, int rc)
{
	unsigned char copy0[CVFS_SHM_HDR_BYTES], copy1[CVFS_SHM_HDR_BYTES];

	if (rc != SQLITE_OK || (flags & SQLITE_SHM_LOCK) == 0)
		return;
	if (cvfs_shm_is_read_lock(offset, flags)) {
		f->shm.read_lock = true;
		return;
	}
	if (!cvfs_shm_is_write_lock(offset, flags))
		return;
	f->shm.write_lock = true;
	f->shm.fixed_this_lock = false;
	if (!f->shm.plain_in_memory || !f->shm.read_lock ||
	    f->shm.region0 == NULL || f->shm.readonly)
		return;
	/* A write from the read transaction that saw our last commit: if
	   nobody wrote since, SQLite's check must find its own copy. */
	cvfs_shm_load(f, 0, copy0);
	cvfs_shm_load(f, 1, copy1);
	if (memcmp(copy0, f->shm.fixed, CVFS_SHM_HDR_BYTES) != 0 ||
	    memcmp(copy1, f->shm.fixed, CVFS_SHM_HDR_BYTES) != 0)
		return;
	cvfs_shm_store(f, 0, f->shm.plain);
	f->shm.reverted = true;
	f->shm.copy0_stale = true;
}
