/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* WAL frame checksums as other writers see them, and legacy WAL recovery.

   The -shm cases run cryptvfs over a watching VFS (registered as "unix",
   so cryptvfs takes it for its parent): at every call cryptvfs makes, a
   wal-index header whose two copies agree must carry the checksum of
   frame mxFrame as stored in the WAL, since that is where a concurrent
   sqlite3mc writer chains its next frame from. A header whose copies
   differ is never trusted by a reader (it waits, or rebuilds the index
   from the WAL when the writer died), so it is counted, not checked.

   The legacy cases build the WAL sqlite3mc's legacy mode writes (frame
   checksums over the plaintext, with the nonce and tag of the copy of
   the page the writer's cache held) with those copies far more than 256
   frames back, and recover it. */

#include <stdbool.h>

#include <sodium.h>

#include "test-cryptvfs-common.h"
#include "cryptvfs-private.h"

#define TEST_WAL_LEGACY_TXNS 150
#define TEST_WAL_LEGACY_PAD 3000

/* ---- the watching VFS -------------------------------------------------- */

struct test_watch_file {
	sqlite3_file base;
	volatile unsigned char *region0;
	/* Opened with SQLITE_OPEN_WAL: its calls are counted. */
	bool wal;
	/* The real "unix" file follows. */
};

struct test_watch_stats {
	/* Headers checked, found wrong, and seen with differing copies. */
	unsigned int checked, wrong, torn;
};

/* What cryptvfs asked of the WAL files below it. */
struct test_watch_calls {
	unsigned int reads, writes;
	/* Calls of exactly one frame (header and page). */
	unsigned int frame_reads, frame_writes;
	/* Calls at a frame header offset other than a whole frame. */
	unsigned int header_writes;
};

static sqlite3_vfs *test_watch_parent;
static struct test_watch_stats test_watch;
static struct test_watch_calls test_watch_calls;
/* Page size of the WAL whose calls are counted. */
static unsigned int test_watch_page_size = 4096;
static char test_watch_wal[TEST_CVFS_PATH_MAX + 8];

static sqlite3_file *test_watch_real(sqlite3_file *file)
{
	return (sqlite3_file *)((struct test_watch_file *)file + 1);
}

static uint32_t test_watch_get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Checks the header of the watched database's -shm, if mapped here. */
static void test_watch_check(struct test_watch_file *f)
{
	unsigned char copy0[CVFS_SHM_HDR_BYTES], copy1[CVFS_SHM_HDR_BYTES];
	unsigned char frame[16];
	uint32_t s1 = 0, s2 = 0, mx_frame;
	uint16_t size;
	unsigned int page_size;
	FILE *fp;

	if (f->region0 == NULL || test_watch_wal[0] == '\0')
		return;
	memcpy(copy0, (const void *)f->region0, sizeof(copy0));
	memcpy(copy1, (const void *)(f->region0 + CVFS_SHM_HDR_BYTES),
	       sizeof(copy1));
	if (memcmp(copy0, copy1, sizeof(copy0)) != 0) {
		test_watch.torn++;
		return;
	}
	for (unsigned int i = 0; i < 40; i += 8) {
		s1 += test_watch_get32(copy0 + i) + s2;
		s2 += test_watch_get32(copy0 + i + 4) + s1;
	}
	mx_frame = test_watch_get32(copy0 + 16);
	if (copy0[12] == 0 || test_watch_get32(copy0 + 40) != s1 ||
	    test_watch_get32(copy0 + 44) != s2 || mx_frame == 0)
		return;
	memcpy(&size, copy0 + 14, sizeof(size));
	page_size = (size & 0xfe00) + ((size & 1) << 16);
	fp = fopen(test_watch_wal, "rb");
	if (fp == NULL)
		return;
	if (fseek(fp, CVFS_WAL_HEADER_BYTES + (long)(mx_frame - 1) *
		  (page_size + CVFS_WAL_FRAME_HEADER_BYTES) + 8,
		  SEEK_SET) == 0 &&
	    fread(frame, 1, sizeof(frame), fp) == sizeof(frame) &&
	    /* Same WAL generation as the header. */
	    memcmp(frame, copy0 + 32, 8) == 0) {
		test_watch.checked++;
		if (cvfs_get_be32(frame + 8) != test_watch_get32(copy0 + 24) ||
		    cvfs_get_be32(frame + 12) != test_watch_get32(copy0 + 28))
			test_watch.wrong++;
	}
	fclose(fp);
}

static int test_watch_close(sqlite3_file *file)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xClose(real);
}

static void test_watch_count(struct test_watch_file *f, bool write, int amt,
			     sqlite3_int64 offset)
{
	sqlite3_int64 frame = test_watch_page_size +
		CVFS_WAL_FRAME_HEADER_BYTES;
	bool at_frame = offset >= CVFS_WAL_HEADER_BYTES &&
		(offset - CVFS_WAL_HEADER_BYTES) % frame == 0;

	if (!f->wal)
		return;
	if (write)
		test_watch_calls.writes++;
	else
		test_watch_calls.reads++;
	if (at_frame && amt == frame) {
		if (write)
			test_watch_calls.frame_writes++;
		else
			test_watch_calls.frame_reads++;
	} else if (at_frame && write) {
		test_watch_calls.header_writes++;
	}
}

static int test_watch_read(sqlite3_file *file, void *buf, int amt,
			   sqlite3_int64 offset)
{
	sqlite3_file *real = test_watch_real(file);

	test_watch_count((struct test_watch_file *)file, false, amt, offset);
	return real->pMethods->xRead(real, buf, amt, offset);
}

static int test_watch_write(sqlite3_file *file, const void *buf, int amt,
			    sqlite3_int64 offset)
{
	sqlite3_file *real = test_watch_real(file);

	test_watch_count((struct test_watch_file *)file, true, amt, offset);
	return real->pMethods->xWrite(real, buf, amt, offset);
}

static int test_watch_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xTruncate(real, size);
}

static int test_watch_sync(sqlite3_file *file, int flags)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xSync(real, flags);
}

static int test_watch_size(sqlite3_file *file, sqlite3_int64 *size_r)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xFileSize(real, size_r);
}

static int test_watch_lock(sqlite3_file *file, int lock)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xLock(real, lock);
}

static int test_watch_unlock(sqlite3_file *file, int lock)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xUnlock(real, lock);
}

static int test_watch_reserved(sqlite3_file *file, int *res_r)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xCheckReservedLock(real, res_r);
}

static int test_watch_control(sqlite3_file *file, int op, void *arg)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xFileControl(real, op, arg);
}

static int test_watch_sector(sqlite3_file *file)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xSectorSize(real);
}

static int test_watch_device(sqlite3_file *file)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xDeviceCharacteristics(real);
}

static int test_watch_shm_map(sqlite3_file *file, int region, int size,
			      int extend, void volatile **p_r)
{
	struct test_watch_file *f = (struct test_watch_file *)file;
	sqlite3_file *real = test_watch_real(file);
	int rc;

	test_watch_check(f);
	rc = real->pMethods->xShmMap(real, region, size, extend, p_r);
	if (region == 0 && *p_r != NULL)
		f->region0 = *p_r;
	return rc;
}

static int test_watch_shm_lock(sqlite3_file *file, int offset, int n,
			       int flags)
{
	sqlite3_file *real = test_watch_real(file);

	test_watch_check((struct test_watch_file *)file);
	return real->pMethods->xShmLock(real, offset, n, flags);
}

static void test_watch_shm_barrier(sqlite3_file *file)
{
	sqlite3_file *real = test_watch_real(file);

	test_watch_check((struct test_watch_file *)file);
	real->pMethods->xShmBarrier(real);
}

static int test_watch_shm_unmap(sqlite3_file *file, int delete_flag)
{
	struct test_watch_file *f = (struct test_watch_file *)file;
	sqlite3_file *real = test_watch_real(file);

	test_watch_check(f);
	f->region0 = NULL;
	return real->pMethods->xShmUnmap(real, delete_flag);
}

static int test_watch_fetch(sqlite3_file *file, sqlite3_int64 offset,
			    int amt, void **p_r)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xFetch(real, offset, amt, p_r);
}

static int test_watch_unfetch(sqlite3_file *file, sqlite3_int64 offset,
			      void *p)
{
	sqlite3_file *real = test_watch_real(file);

	return real->pMethods->xUnfetch(real, offset, p);
}

static const sqlite3_io_methods test_watch_io = {
	.iVersion = 3,
	.xClose = test_watch_close,
	.xRead = test_watch_read,
	.xWrite = test_watch_write,
	.xTruncate = test_watch_truncate,
	.xSync = test_watch_sync,
	.xFileSize = test_watch_size,
	.xLock = test_watch_lock,
	.xUnlock = test_watch_unlock,
	.xCheckReservedLock = test_watch_reserved,
	.xFileControl = test_watch_control,
	.xSectorSize = test_watch_sector,
	.xDeviceCharacteristics = test_watch_device,
	.xShmMap = test_watch_shm_map,
	.xShmLock = test_watch_shm_lock,
	.xShmBarrier = test_watch_shm_barrier,
	.xShmUnmap = test_watch_shm_unmap,
	.xFetch = test_watch_fetch,
	.xUnfetch = test_watch_unfetch,
};

static int test_watch_open(sqlite3_vfs *vfs, const char *name,
			   sqlite3_file *file, int flags, int *out_flags)
{
	struct test_watch_file *f = (struct test_watch_file *)file;
	int rc;

	memset(f, 0, sizeof(*f));
	rc = test_watch_parent->xOpen(test_watch_parent, name,
				      test_watch_real(file), flags,
				      out_flags);
	if (rc == SQLITE_OK)
		f->base.pMethods = &test_watch_io;
	f->wal = (flags & SQLITE_OPEN_WAL) != 0;
	(void)vfs;
	return rc;
}

static int test_watch_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
	(void)vfs;
	return test_watch_parent->xDelete(test_watch_parent, name, sync);
}

static int test_watch_access(sqlite3_vfs *vfs, const char *name, int flags,
			     int *res_r)
{
	(void)vfs;
	return test_watch_parent->xAccess(test_watch_parent, name, flags,
					  res_r);
}

static int test_watch_full_pathname(sqlite3_vfs *vfs, const char *name,
				    int n, char *out)
{
	(void)vfs;
	return test_watch_parent->xFullPathname(test_watch_parent, name, n,
						out);
}

static int test_watch_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return test_watch_parent->xRandomness(test_watch_parent, n, out);
}

static int test_watch_sleep(sqlite3_vfs *vfs, int usec)
{
	(void)vfs;
	return test_watch_parent->xSleep(test_watch_parent, usec);
}

static int test_watch_time(sqlite3_vfs *vfs, double *t_r)
{
	(void)vfs;
	return test_watch_parent->xCurrentTime(test_watch_parent, t_r);
}

static int test_watch_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return test_watch_parent->xGetLastError(test_watch_parent, n, out);
}

static int test_watch_time64(sqlite3_vfs *vfs, sqlite3_int64 *t_r)
{
	(void)vfs;
	return test_watch_parent->xCurrentTimeInt64(test_watch_parent, t_r);
}

static sqlite3_vfs test_watch_vfs = {
	.iVersion = 2,
	.zName = "unix",
	.xOpen = test_watch_open,
	.xDelete = test_watch_delete,
	.xAccess = test_watch_access,
	.xFullPathname = test_watch_full_pathname,
	.xRandomness = test_watch_randomness,
	.xSleep = test_watch_sleep,
	.xCurrentTime = test_watch_time,
	.xGetLastError = test_watch_last_error,
	.xCurrentTimeInt64 = test_watch_time64,
};

/* Puts the watching VFS under cryptvfs (before cvfs_register()). */
static int test_watch_register(void)
{
	if (sqlite3_initialize() != SQLITE_OK)
		return -1;
	test_watch_parent = sqlite3_vfs_find("unix");
	if (test_watch_parent == NULL)
		return -1;
	test_watch_vfs.szOsFile = (int)sizeof(struct test_watch_file) +
		test_watch_parent->szOsFile;
	test_watch_vfs.mxPathname = test_watch_parent->mxPathname;
	/* The default comes first in sqlite3_vfs_find("unix"). */
	if (sqlite3_vfs_register(&test_watch_vfs, 1) != SQLITE_OK ||
	    cvfs_register() != SQLITE_OK)
		return -1;
	return 0;
}

static void test_watch_start(const char *path)
{
	memset(&test_watch, 0, sizeof(test_watch));
	snprintf(test_watch_wal, sizeof(test_watch_wal), "%s-wal", path);
}

static void test_watch_stop(void)
{
	test_watch_wal[0] = '\0';
}

/* ---- helpers ------------------------------------------------------------ */

static sqlite3 *test_wal_open(const char *path)
{
	sqlite3 *db = NULL;

	if (cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_busy_timeout(db, 10000);
	if (test_cvfs_exec(db, "PRAGMA journal_mode=WAL; "
			   "PRAGMA synchronous=NORMAL; "
			   "PRAGMA wal_autocheckpoint=0; "
			   "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY "
			   "KEY, body BLOB)") != SQLITE_OK)
		cvfs_close(&db);
	return db;
}

static int test_wal_insert(sqlite3 *db, int id, int size)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "INSERT INTO t VALUES(%d, zeroblob(%d))",
		 id, size);
	return test_cvfs_exec(db, sql);
}

/* Copies path and path-wal (a crash image: no -shm) to copy. */
static int test_wal_crash_image(const char *path, const char *copy)
{
	char src[TEST_CVFS_PATH_MAX + 8], dst[TEST_CVFS_PATH_MAX + 8];

	test_cvfs_unlink_db(copy);
	snprintf(src, sizeof(src), "%s-wal", path);
	snprintf(dst, sizeof(dst), "%s-wal", copy);
	return test_cvfs_copy_file(path, copy) == 0 &&
		test_cvfs_copy_file(src, dst) == 0 ? 0 : -1;
}

static sqlite3_int64 test_wal_count(const char *path, const char *sql)
{
	sqlite3_int64 value = -1, ok = 0;
	sqlite3 *db;

	if (cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE, test_cvfs_key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK)
		return -1;
	if (test_cvfs_int(db, "SELECT integrity_check = 'ok' FROM "
			  "pragma_integrity_check", &ok) != SQLITE_OK ||
	    ok != 1 || test_cvfs_int(db, sql, &value) != SQLITE_OK)
		value = -1;
	cvfs_close(&db);
	return value;
}

/* ---- the wal-index header ---------------------------------------------- */

static void test_wal_shm_commits(void)
{
	char path[TEST_CVFS_PATH_MAX], copy[TEST_CVFS_PATH_MAX];
	sqlite3 *db;
	bool ok = true;

	test_begin("wal -shm carries the stored frame checksums");
	test_cvfs_path(path, "shm-commits.db");
	test_cvfs_path(copy, "shm-commits-copy.db");
	test_cvfs_unlink_db(path);
	test_watch_start(path);
	db = test_wal_open(path);
	test_assert(db != NULL);
	for (int i = 0; db != NULL && i < 40; i++)
		ok = ok && test_wal_insert(db, i, 100 + i * 97) == SQLITE_OK;
	/* A tiny cache spills frames mid-transaction; the commit then
	   rewrites some of them and SQLite recomputes their checksums. */
	ok = ok && db != NULL &&
		test_cvfs_exec(db, "PRAGMA cache_size=2; BEGIN; "
			       "UPDATE t SET body = zeroblob(length(body) + 1);"
			       "UPDATE t SET body = zeroblob(length(body) + 1);"
			       "COMMIT; PRAGMA cache_size=-2000") == SQLITE_OK;
	for (int i = 40; db != NULL && i < 60; i++)
		ok = ok && test_wal_insert(db, i, 5000) == SQLITE_OK;
	test_assert(ok);
	test_assert(test_wal_crash_image(path, copy) == 0);
	cvfs_close(&db);
	test_watch_stop();
	test_diag("%u headers checked, %u torn moments", test_watch.checked,
		  test_watch.torn);
	test_assert(test_watch.checked >= 60);
	test_assert(test_watch.wrong == 0);
	/* Each commit passes through a moment where only copy 1 is right. */
	test_assert(test_watch.torn >= 61);
	test_assert(test_wal_count(copy, "SELECT count(*) FROM t") == 60);
	test_end();
}

static void test_wal_shm_two_connections(void)
{
	char path[TEST_CVFS_PATH_MAX], copy[TEST_CVFS_PATH_MAX];
	sqlite3 *a, *b;
	bool ok = true;

	test_begin("wal -shm right with two writers taking turns");
	test_cvfs_path(path, "shm-two.db");
	test_cvfs_path(copy, "shm-two-copy.db");
	test_cvfs_unlink_db(path);
	test_watch_start(path);
	a = test_wal_open(path);
	b = test_wal_open(path);
	test_assert(a != NULL && b != NULL);
	for (int i = 0; a != NULL && b != NULL && i < 30; i++)
		ok = ok && test_wal_insert(i % 3 == 0 ? b : a, i, 700 * i) ==
			SQLITE_OK;
	/* A checkpoint by one, a restart of the WAL by the other. */
	ok = ok && a != NULL && b != NULL &&
		sqlite3_wal_checkpoint_v2(a, "main", SQLITE_CHECKPOINT_TRUNCATE,
					  NULL, NULL) == SQLITE_OK &&
		test_wal_insert(b, 100, 10) == SQLITE_OK &&
		test_wal_insert(a, 101, 10) == SQLITE_OK;
	test_assert(ok);
	test_assert(test_wal_crash_image(path, copy) == 0);
	cvfs_close(&a);
	cvfs_close(&b);
	test_watch_stop();
	test_assert(test_watch.checked >= 30);
	test_assert(test_watch.wrong == 0);
	test_assert(test_wal_count(copy, "SELECT count(*) FROM t") == 32);
	test_end();
}

/* A connection that commits while a statement of its own still reads
   keeps its read transaction, and with it SQLite's own copy of the
   header: it must still be able to write (no SQLITE_BUSY_SNAPSHOT). */
static void test_wal_shm_open_statement(void)
{
	char path[TEST_CVFS_PATH_MAX];
	sqlite3_stmt *stmt = NULL;
	sqlite3 *a, *b;
	int rc = SQLITE_ERROR, rows = 0;
	bool ok;

	test_begin("wal -shm writes from a read transaction kept open");
	test_cvfs_path(path, "shm-stmt.db");
	test_cvfs_unlink_db(path);
	test_watch_start(path);
	a = test_wal_open(path);
	b = test_wal_open(path);
	ok = a != NULL && b != NULL;
	for (int i = 0; ok && i < 10; i++)
		ok = test_wal_insert(a, i, 10) == SQLITE_OK;
	ok = ok && sqlite3_prepare_v2(a, "SELECT id FROM t ORDER BY id", -1,
				      &stmt, NULL) == SQLITE_OK;
	test_assert(ok);
	/* Each row read, one autocommit write: all commit. */
	while (ok && (rc = sqlite3_step(stmt)) == SQLITE_ROW && rows < 6) {
		ok = test_wal_insert(a, 1000 + rows, 20) == SQLITE_OK;
		rows++;
	}
	test_assert(ok && rows == 6);
	/* A rolled back write in between changes nothing. */
	test_assert(test_cvfs_exec(a, "BEGIN IMMEDIATE; INSERT INTO t "
				   "VALUES(2000, 1); ROLLBACK") == SQLITE_OK);
	test_assert(test_wal_insert(a, 1006, 20) == SQLITE_OK);
	test_assert(test_cvfs_exec(a, "BEGIN IMMEDIATE; COMMIT") ==
		    SQLITE_OK);
	test_assert(test_wal_insert(a, 1007, 20) == SQLITE_OK);
	/* Once another connection wrote, the old snapshot may not write:
	   SQLite's rule, kept. */
	test_assert(b != NULL && test_wal_insert(b, 3000, 20) == SQLITE_OK);
	test_assert(a != NULL &&
		    (test_wal_insert(a, 1008, 20) & 0xff) == SQLITE_BUSY);
	sqlite3_finalize(stmt);
	test_assert(a != NULL && test_wal_insert(a, 1008, 20) == SQLITE_OK);
	cvfs_close(&a);
	cvfs_close(&b);
	test_watch_stop();
	test_assert(test_watch.wrong == 0);
	test_assert(test_wal_count(path, "SELECT count(*) FROM t") == 20);
	test_end();
}

/* ---- legacy WAL ---------------------------------------------------------- */

static void test_wal_legacy_index(void)
{
	struct cvfs_legacy_index idx;
	unsigned char reserved[CVFS_RESERVED_BYTES];
	bool ok = true;
	uint32_t n;

	test_begin("wal legacy index keeps every frame of a page");
	memset(&idx, 0, sizeof(idx));
	/* 20000 frames over 997 pages: frame f is page f % 997 + 1. */
	for (uint32_t f = 1; ok && f <= 20000; f++) {
		memset(reserved, 0, sizeof(reserved));
		cvfs_put_be32(reserved, f);
		ok = cvfs_legacy_push(&idx, f % 997 + 1, reserved) == 0;
	}
	test_assert(ok && idx.count == 20000);
	/* Page 5: frames 4, 1001, 1998, ... newest first, none lost. */
	n = 0;
	for (uint32_t f = cvfs_legacy_newest(&idx, 5); f != 0;
	     f = idx.frames[f - 1].prev, n++)
		ok = ok && f % 997 + 1 == 5 &&
			cvfs_get_be32(idx.frames[f - 1].reserved) == f &&
			(n > 0 || f == 19944);
	test_assert(ok && n == 21);
	cvfs_legacy_truncate(&idx, 10000);
	test_assert(idx.count == 9999);
	test_assert(cvfs_legacy_newest(&idx, 5) == 9974);
	test_assert(cvfs_legacy_newest(&idx, 1) == 9970);
	cvfs_legacy_truncate(&idx, 1);
	test_assert(idx.count == 0 && cvfs_legacy_newest(&idx, 5) == 0);
	test_assert(cvfs_legacy_push(&idx, 0, reserved) == 0 &&
		    cvfs_legacy_push(&idx, 7, reserved) == 0 &&
		    cvfs_legacy_newest(&idx, 7) == 2 &&
		    idx.frames[1].prev == 0);
	cvfs_legacy_free(&idx);
	test_end();
}

/* Rewrites the WAL of a crash image as sqlite3mc's legacy mode would
   have written it, with the writer's cache holding each page as it first
   appeared in the WAL (or in the main file). Returns the largest distance
   in frames between a frame and the copy its checksum names, or -1. */
static long test_wal_make_legacy(const char *path)
{
	char wal_path[TEST_CVFS_PATH_MAX + 8];
	unsigned char *wal, *main, *plain;
	size_t wal_size, main_size, ps, frame_size, frames;
	uint32_t sum[2];
	long far = 0;
	bool ok = true;

	snprintf(wal_path, sizeof(wal_path), "%s-wal", path);
	wal = test_cvfs_read_file(wal_path, &wal_size);
	main = test_cvfs_read_file(path, &main_size);
	if (wal == NULL || main == NULL || wal_size < CVFS_WAL_HEADER_BYTES) {
		free(wal);
		free(main);
		return -1;
	}
	ps = cvfs_get_be32(wal + 8);
	frame_size = ps + CVFS_WAL_FRAME_HEADER_BYTES;
	frames = (wal_size - CVFS_WAL_HEADER_BYTES) / frame_size;
	plain = malloc(ps);
	sum[0] = cvfs_get_be32(wal + 24);
	sum[1] = cvfs_get_be32(wal + 28);
	for (size_t i = 0; ok && plain != NULL && i < frames; i++) {
		unsigned char *fr = wal + CVFS_WAL_HEADER_BYTES + i * frame_size;
		unsigned char *page = fr + CVFS_WAL_FRAME_HEADER_BYTES;
		uint32_t pgno = cvfs_get_be32(fr);
		const unsigned char *held = NULL;
		static const unsigned char zeros[CVFS_RESERVED_BYTES];

		ok = cvfs_page_decrypt(plain, NULL, page, ps, pgno,
				       test_cvfs_key) == 0;
		/* The first frame of a page: the cache read it from the
		   main file, or made it new. Later ones: the cache still
		   holds the copy from that first frame. */
		for (size_t j = 0; ok && j < i && held == NULL; j++) {
			unsigned char *prev = wal + CVFS_WAL_HEADER_BYTES +
				j * frame_size;

			if (cvfs_get_be32(prev) == pgno) {
				held = prev + frame_size - CVFS_RESERVED_BYTES;
				if ((long)(i - j) > far)
					far = i - j;
			}
		}
		if (held == NULL)
			held = (size_t)pgno * ps <= main_size ?
				main + (size_t)pgno * ps - CVFS_RESERVED_BYTES :
				zeros;
		memcpy(plain + ps - CVFS_RESERVED_BYTES, held,
		       CVFS_RESERVED_BYTES);
		cvfs_wal_checksum(sum, fr, 8, false);
		cvfs_wal_checksum(sum, plain, ps, false);
		cvfs_put_be32(fr + CVFS_WAL_CKSUM_OFFSET, sum[0]);
		cvfs_put_be32(fr + CVFS_WAL_CKSUM_OFFSET + 4, sum[1]);
	}
	if (plain != NULL)
		sodium_memzero(plain, ps);
	ok = ok && plain != NULL && cvfs_get_be32(wal) == CVFS_WAL_MAGIC_LE &&
		test_cvfs_write_file(wal_path, wal, wal_size) == 0;
	free(plain);
	free(wal);
	free(main);
	return ok ? far : -1;
}

static void test_wal_legacy_deep(void)
{
	char path[TEST_CVFS_PATH_MAX], copy[TEST_CVFS_PATH_MAX], sql[160];
	sqlite3 *db;
	long far;
	bool ok;

	test_begin("wal legacy recovery finds every frame, newest wins");
	test_cvfs_path(path, "legacy-deep.db");
	test_cvfs_path(copy, "legacy-deep-copy.db");
	test_cvfs_unlink_db(path);
	db = test_wal_open(path);
	ok = db != NULL &&
		test_cvfs_exec(db, "CREATE TABLE k(id INTEGER PRIMARY KEY, "
			       "v INTEGER); INSERT INTO k VALUES(1, 0)") ==
		SQLITE_OK;
	/* Every transaction writes a new page of t and the one page of k:
	   k's frames repeat far more than 256 frames apart. */
	for (int i = 0; ok && i < TEST_WAL_LEGACY_TXNS; i++) {
		snprintf(sql, sizeof(sql), "BEGIN; INSERT INTO t VALUES(%d, "
			 "zeroblob(%d)); UPDATE k SET v = v + 1; COMMIT", i,
			 TEST_WAL_LEGACY_PAD);
		ok = test_cvfs_exec(db, sql) == SQLITE_OK;
	}
	test_assert(ok);
	test_assert(test_wal_crash_image(path, copy) == 0);
	cvfs_close(&db);
	far = test_wal_make_legacy(copy);
	test_diag("a legacy frame names a copy %ld frames back", far);
	test_assert(far > 256);
	test_assert(test_wal_count(copy, "SELECT count(*) FROM t") ==
		    TEST_WAL_LEGACY_TXNS);
	test_assert(test_wal_count(copy, "SELECT v FROM k") ==
		    TEST_WAL_LEGACY_TXNS);
	test_end();
}

/* ---- system calls per frame --------------------------------------------- */

static void test_wal_one_call_per_frame(void)
{
	char path[TEST_CVFS_PATH_MAX];
	sqlite3 *db, *reader;
	sqlite3_int64 before, after;
	unsigned int frames;
	sqlite3_int64 sum = 0;

	test_begin("wal one write per appended frame, one read per page read");
	test_cvfs_path(path, "calls.db");
	test_cvfs_unlink_db(path);
	db = test_wal_open(path);
	test_assert(db != NULL);
	/* The WAL header and first frames exist: measure the next commit. */
	test_assert(db != NULL && test_wal_insert(db, 1, 100) == SQLITE_OK);
	{
		char wal[TEST_CVFS_PATH_MAX + 8];

		snprintf(wal, sizeof(wal), "%s-wal", path);
		before = test_cvfs_file_size(wal);
		memset(&test_watch_calls, 0, sizeof(test_watch_calls));
		test_assert(db != NULL &&
			    test_cvfs_exec(db, "BEGIN") == SQLITE_OK);
		for (int i = 2; db != NULL && i < 40; i++)
			test_assert(test_wal_insert(db, i, 3000) ==
				    SQLITE_OK);
		test_assert(db != NULL &&
			    test_cvfs_exec(db, "COMMIT") == SQLITE_OK);
		after = test_cvfs_file_size(wal);
	}
	frames = (after - before) / (test_watch_page_size +
				     CVFS_WAL_FRAME_HEADER_BYTES);
	test_diag("commit appended %u frames: %u writes (%u whole frames), "
		  "%u reads", frames, test_watch_calls.writes,
		  test_watch_calls.frame_writes, test_watch_calls.reads);
	test_assert(frames >= 38);
	test_assert(test_watch_calls.writes == frames);
	test_assert(test_watch_calls.frame_writes == frames);
	test_assert(test_watch_calls.header_writes == 0);
	/* Besides pages the writer reads back (whole frames, see below):
	   at most the previous frame's checksum, once per transaction. */
	test_assert(test_watch_calls.reads - test_watch_calls.frame_reads <=
		    1);

	/* A second connection reads the pages from the WAL (no checkpoint
	   ran): each one whole frame, in one call; besides them only the
	   WAL header, once per connection. */
	reader = test_wal_open(path);
	test_assert(reader != NULL);
	memset(&test_watch_calls, 0, sizeof(test_watch_calls));
	test_assert(reader != NULL &&
		    test_cvfs_int(reader, "SELECT sum(length(body)) FROM t",
				  &sum) == SQLITE_OK);
	test_diag("reader: %u WAL reads, %u of whole frames",
		  test_watch_calls.reads, test_watch_calls.frame_reads);
	test_assert(sum == 100 + 38 * 3000);
	test_assert(test_watch_calls.frame_reads >= frames - 2);
	test_assert(test_watch_calls.reads - test_watch_calls.frame_reads <=
		    1);
	cvfs_close(&reader);
	cvfs_close(&db);
	test_end();
}

/* ---- the checkpoint copies ciphertext ---------------------------------- */

static void test_wal_checkpoint_foreign_buffer(void)
{
	char path[TEST_CVFS_PATH_MAX];
	unsigned char *page, *copy;
	sqlite3_file *main_file = NULL, *wal_file = NULL;
	sqlite3_int64 frame_offset;
	unsigned char head[4];
	uint32_t pgno;
	sqlite3_int64 value = 0;
	sqlite3 *db;
	int rc;

	test_begin("wal checkpoint refuses a buffer it did not read into");
	test_cvfs_path(path, "ckpt-buffer.db");
	test_cvfs_unlink_db(path);
	db = test_wal_open(path);
	test_assert(db != NULL);
	for (int i = 0; db != NULL && i < 5; i++)
		test_assert(test_wal_insert(db, i, 500) == SQLITE_OK);
	test_assert(db != NULL &&
		    sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER,
					 &main_file) == SQLITE_OK &&
		    sqlite3_file_control(db, "main",
					 SQLITE_FCNTL_JOURNAL_POINTER,
					 &wal_file) == SQLITE_OK);
	test_assert(main_file != NULL && wal_file != NULL);
	page = malloc(test_watch_page_size);
	copy = malloc(test_watch_page_size);
	test_assert(page != NULL && copy != NULL);
	if (main_file == NULL || wal_file == NULL || page == NULL ||
	    copy == NULL) {
		free(page);
		free(copy);
		cvfs_close(&db);
		test_end();
		return;
	}
	/* The last frame: its page as the checkpoint would copy it. */
	{
		char wal[TEST_CVFS_PATH_MAX + 8];

		snprintf(wal, sizeof(wal), "%s-wal", path);
		frame_offset = test_cvfs_file_size(wal) -
			(test_watch_page_size + CVFS_WAL_FRAME_HEADER_BYTES);
	}
	test_assert(wal_file->pMethods->xRead(wal_file, head, sizeof(head),
					      frame_offset) == SQLITE_OK);
	pgno = cvfs_get_be32(head);
	test_assert(pgno >= 1);
	/* A hint: the unix VFS answers SQLITE_NOTFOUND. */
	(void)main_file->pMethods->xFileControl(main_file,
						SQLITE_FCNTL_CKPT_START, NULL);
	test_assert(wal_file->pMethods->xRead(
			wal_file, page, test_watch_page_size,
			frame_offset + CVFS_WAL_FRAME_HEADER_BYTES) ==
		    SQLITE_OK);
	/* The same bytes in another buffer: ciphertext SQLite would have
	   us take for plaintext. */
	memcpy(copy, page, test_watch_page_size);
	rc = main_file->pMethods->xWrite(main_file, copy,
					 test_watch_page_size,
					 (sqlite3_int64)(pgno - 1) *
					 test_watch_page_size);
	test_assert(rc == SQLITE_IOERR_WRITE);
	/* The buffer it read into goes through, as stored. */
	test_assert(wal_file->pMethods->xRead(
			wal_file, page, test_watch_page_size,
			frame_offset + CVFS_WAL_FRAME_HEADER_BYTES) ==
		    SQLITE_OK);
	test_assert(main_file->pMethods->xWrite(
			main_file, page, test_watch_page_size,
			(sqlite3_int64)(pgno - 1) * test_watch_page_size) ==
		    SQLITE_OK);
	/* That buffer again, with no read in between: refused too. */
	test_assert(main_file->pMethods->xWrite(
			main_file, page, test_watch_page_size,
			(sqlite3_int64)(pgno - 1) * test_watch_page_size) ==
		    SQLITE_IOERR_WRITE);
	(void)main_file->pMethods->xFileControl(main_file,
						SQLITE_FCNTL_CKPT_DONE, NULL);
	free(page);
	free(copy);
	test_assert(test_cvfs_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)") ==
		    SQLITE_OK);
	test_assert(test_cvfs_int(db, "SELECT count(*) FROM t", &value) ==
		    SQLITE_OK && value == 5);
	cvfs_close(&db);
	test_assert(test_wal_count(path, "SELECT count(*) FROM t") == 5);
	test_end();
}

/* SQLITE_FCNTL_PERSIST_WAL reaches the unix VFS through cryptvfs: the
   last close checkpoints and, with a journal_size_limit, truncates the
   -wal to 0 bytes and keeps the -shm instead of unlinking both (what the
   storage does, sqlbox-db.c).  The main file alone then holds every
   commit, and the kept files open again. */
static void test_wal_persist(void)
{
	char path[TEST_CVFS_PATH_MAX], copy[TEST_CVFS_PATH_MAX];
	char wal[TEST_CVFS_PATH_MAX + 8], shm[TEST_CVFS_PATH_MAX + 8];
	struct stat st[2][2];
	sqlite3 *db;
	bool ok = true;

	test_begin("wal kept and emptied at the last close (PERSIST_WAL)");
	test_cvfs_path(path, "persist.db");
	test_cvfs_path(copy, "persist-copy.db");
	snprintf(wal, sizeof(wal), "%s-wal", path);
	snprintf(shm, sizeof(shm), "%s-shm", path);
	memset(st, 0, sizeof(st));
	test_cvfs_unlink_db(path);
	for (int round = 0; round < 2; round++) {
		int persist = 1, asked = -1;

		db = test_wal_open(path);
		test_assert_idx(db != NULL, round);
		if (db == NULL)
			break;
		test_assert_idx(sqlite3_file_control(db, "main",
				SQLITE_FCNTL_PERSIST_WAL, &persist) ==
				SQLITE_OK, round);
		test_assert_idx(sqlite3_file_control(db, "main",
				SQLITE_FCNTL_PERSIST_WAL, &asked) ==
				SQLITE_OK && asked == 1, round);
		ok = test_cvfs_exec(db, "PRAGMA journal_size_limit=0") ==
			SQLITE_OK;
		for (int i = 0; ok && i < 20; i++) {
			ok = test_wal_insert(db, round * 100 + i, 3000) ==
				SQLITE_OK;
		}
		test_assert_idx(ok, round);
		test_assert_idx(test_cvfs_file_size(wal) > 0, round);
		cvfs_close(&db);
		test_assert_idx(test_cvfs_file_size(wal) == 0, round);
		test_assert_idx(stat(wal, &st[round][0]) == 0 &&
				stat(shm, &st[round][1]) == 0, round);
	}
	/* The files of the first close are the ones still there. */
	test_assert(st[1][0].st_ino == st[0][0].st_ino &&
		    st[1][1].st_ino == st[0][1].st_ino);
	/* The main file alone: every row, no WAL needed. */
	test_cvfs_unlink_db(copy);
	test_assert(test_cvfs_copy_file(path, copy) == 0);
	test_assert(test_wal_count(copy, "SELECT count(*) FROM t") == 40);
	test_assert(test_wal_count(path, "SELECT count(*) FROM t") == 40);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_wal_shm_commits,
		test_wal_shm_two_connections,
		test_wal_shm_open_statement,
		test_wal_legacy_index,
		test_wal_legacy_deep,
		test_wal_one_call_per_frame,
		test_wal_checkpoint_foreign_buffer,
		test_wal_persist,
		NULL
	};

	if (test_watch_register() < 0) {
		printf("Bail out! cannot register the watching VFS\n");
		return 1;
	}
	return test_cvfs_run(cases);
}
