/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The read-ahead of the main file (cvfs-file.c): SQLite walking pages in
   order costs fewer reads of the real file than pages, lookups cost no
   more than before, a damaged page in a range read ahead still fails,
   and what was read ahead never outlives the transaction that read it:
   another connection's change, checkpointed into the main file, is seen
   by the next transaction.

   cryptvfs runs over a counting VFS: the "unix" files themselves, with a
   copy of their io methods whose xRead counts the calls on main database
   files (registered as the default "unix", so cryptvfs takes it for its
   parent, as test-wal.c does). */

#include <stdbool.h>

#include "test-cryptvfs-common.h"
#include "cryptvfs-private.h"

#define TEST_PAGE_SIZE 4096
#define TEST_ROWS 400
#define TEST_BIG_BYTES (1024 * 1024)

/* ---- the counting VFS -------------------------------------------------- */

struct test_count_calls {
	/* xRead calls on main database files, and those longer than a page. */
	unsigned int reads, multi_reads;
};

#define TEST_COUNT_METHODS_MAX 4
static struct {
	const sqlite3_io_methods *orig;
	sqlite3_io_methods copy;
} test_count_methods[TEST_COUNT_METHODS_MAX];

static sqlite3_vfs *test_count_parent;
static struct test_count_calls test_count;
/* Where in a file object its main-database flag is: after the real file. */
static int test_count_flag_offset;

static bool *test_count_is_main(sqlite3_file *file)
{
	return (bool *)((char *)file + test_count_flag_offset);
}

static const sqlite3_io_methods *test_count_orig(sqlite3_file *file)
{
	for (unsigned int i = 0; i < TEST_COUNT_METHODS_MAX; i++) {
		if (file->pMethods == &test_count_methods[i].copy)
			return test_count_methods[i].orig;
	}
	abort();
}

static int test_count_read(sqlite3_file *file, void *buf, int amt,
			   sqlite3_int64 offset)
{
	if (*test_count_is_main(file)) {
		test_count.reads++;
		if (amt > TEST_PAGE_SIZE)
			test_count.multi_reads++;
	}
	return test_count_orig(file)->xRead(file, buf, amt, offset);
}

static int test_count_open(sqlite3_vfs *vfs ATTR_UNUSED, const char *name,
			   sqlite3_file *file, int flags, int *out_flags)
{
	unsigned int i;
	int rc;

	rc = test_count_parent->xOpen(test_count_parent, name, file, flags,
				      out_flags);
	*test_count_is_main(file) = (flags & SQLITE_OPEN_MAIN_DB) != 0;
	if (rc != SQLITE_OK || file->pMethods == NULL)
		return rc;
	for (i = 0; i < TEST_COUNT_METHODS_MAX; i++) {
		if (test_count_methods[i].orig == file->pMethods)
			break;
		if (test_count_methods[i].orig == NULL) {
			test_count_methods[i].orig = file->pMethods;
			test_count_methods[i].copy = *file->pMethods;
			test_count_methods[i].copy.xRead = test_count_read;
			break;
		}
	}
	if (i == TEST_COUNT_METHODS_MAX)
		abort();
	file->pMethods = &test_count_methods[i].copy;
	return rc;
}

static int test_count_delete(sqlite3_vfs *vfs ATTR_UNUSED, const char *name,
			     int sync)
{
	return test_count_parent->xDelete(test_count_parent, name, sync);
}

static int test_count_access(sqlite3_vfs *vfs ATTR_UNUSED, const char *name,
			     int flags, int *res_r)
{
	return test_count_parent->xAccess(test_count_parent, name, flags,
					  res_r);
}

static int test_count_full_pathname(sqlite3_vfs *vfs ATTR_UNUSED,
				    const char *name, int n, char *out)
{
	return test_count_parent->xFullPathname(test_count_parent, name, n,
						out);
}

static int test_count_randomness(sqlite3_vfs *vfs ATTR_UNUSED, int n,
				 char *out)
{
	return test_count_parent->xRandomness(test_count_parent, n, out);
}

static int test_count_sleep(sqlite3_vfs *vfs ATTR_UNUSED, int usec)
{
	return test_count_parent->xSleep(test_count_parent, usec);
}

static int test_count_time(sqlite3_vfs *vfs ATTR_UNUSED, double *t_r)
{
	return test_count_parent->xCurrentTime(test_count_parent, t_r);
}

static int test_count_last_error(sqlite3_vfs *vfs ATTR_UNUSED, int n,
				 char *out)
{
	return test_count_parent->xGetLastError(test_count_parent, n, out);
}

static int test_count_time64(sqlite3_vfs *vfs ATTR_UNUSED,
			     sqlite3_int64 *t_r)
{
	return test_count_parent->xCurrentTimeInt64(test_count_parent, t_r);
}

static sqlite3_vfs test_count_vfs = {
	.iVersion = 2,
	.zName = "unix",
	.xOpen = test_count_open,
	.xDelete = test_count_delete,
	.xAccess = test_count_access,
	.xFullPathname = test_count_full_pathname,
	.xRandomness = test_count_randomness,
	.xSleep = test_count_sleep,
	.xCurrentTime = test_count_time,
	.xGetLastError = test_count_last_error,
	.xCurrentTimeInt64 = test_count_time64,
};

/* Puts the counting VFS under cryptvfs (before cvfs_register()). */
static int test_count_register(void)
{
	if (sqlite3_initialize() != SQLITE_OK)
		return -1;
	test_count_parent = sqlite3_vfs_find("unix");
	if (test_count_parent == NULL)
		return -1;
	test_count_flag_offset = (test_count_parent->szOsFile + 7) & ~7;
	test_count_vfs.szOsFile = test_count_flag_offset + 8;
	test_count_vfs.mxPathname = test_count_parent->mxPathname;
	/* The default comes first in sqlite3_vfs_find("unix"). */
	if (sqlite3_vfs_register(&test_count_vfs, 1) != SQLITE_OK ||
	    cvfs_register() != SQLITE_OK)
		return -1;
	return 0;
}

/* ---- databases ---------------------------------------------------------- */

static sqlite3 *test_ra_open(const char *path)
{
	sqlite3 *db = NULL;

	if (cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK)
		return NULL;
	return db;
}

/* Creates path with table t (TEST_ROWS rows of row_bytes times 'A') and,
   if big, table big with one row of TEST_BIG_BYTES bytes (an overflow
   chain that ends the file). */
static int test_ra_create(const char *path, const char *journal_mode,
			  int row_bytes, bool big)
{
	char sql[256];
	sqlite3 *db;
	int rc;

	test_cvfs_unlink_db(path);
	db = test_ra_open(path);
	if (db == NULL)
		return SQLITE_CANTOPEN;
	snprintf(sql, sizeof(sql), "PRAGMA page_size=%d; "
		 "PRAGMA journal_mode=%s", TEST_PAGE_SIZE, journal_mode);
	rc = test_cvfs_exec(db, sql);
	if (rc == SQLITE_OK)
		rc = test_cvfs_exec(db, "CREATE TABLE t(id INTEGER PRIMARY "
				    "KEY, v TEXT)");
	if (rc == SQLITE_OK) {
		snprintf(sql, sizeof(sql), "WITH RECURSIVE n(i) AS (SELECT 1 "
			 "UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
			 "INSERT INTO t SELECT i, printf('%%.*c', %d, 'A') "
			 "FROM n", TEST_ROWS, row_bytes);
		rc = test_cvfs_exec(db, sql);
	}
	if (rc == SQLITE_OK && big) {
		snprintf(sql, sizeof(sql), "CREATE TABLE big(v TEXT); "
			 "INSERT INTO big VALUES(printf('%%.*c', %d, 'x'))",
			 TEST_BIG_BYTES);
		rc = test_cvfs_exec(db, sql);
	}
	cvfs_close(&db);
	return rc;
}

/* Reads table big's row: 1 when it is whole and right, 0 when wrong,
   else the primary error code as a negative number. */
static int test_ra_read_big(sqlite3 *db)
{
	sqlite3_stmt *stmt;
	const unsigned char *v;
	int rc, ok = 0;

	if (sqlite3_prepare_v2(db, "SELECT v FROM big", -1, &stmt,
			       NULL) != SQLITE_OK)
		return -SQLITE_ERROR;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		v = sqlite3_column_text(stmt, 0);
		ok = sqlite3_column_bytes(stmt, 0) == TEST_BIG_BYTES;
		for (int i = 0; ok && i < TEST_BIG_BYTES; i++)
			ok = v[i] == 'x';
		rc = sqlite3_step(stmt);
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_DONE ? ok : -(rc & 0xff);
}

static int test_ra_pages(const char *path)
{
	return (int)(test_cvfs_file_size(path) / TEST_PAGE_SIZE);
}

/* ---- cases -------------------------------------------------------------- */

/* Connection A scans t in a read transaction (reading ahead), B rewrites
   every row and, in WAL mode, checkpoints it into the main file. A's
   next transaction must see B's rows: first a lookup of the last row,
   whose leaf was in A's last read-ahead range, then a scan. */
static void test_ra_other_connection(void)
{
	static const char *const modes[] = { "WAL", "DELETE" };
	char path[TEST_CVFS_PATH_MAX];

	test_begin("read-ahead: another connection's checkpointed change");
	for (unsigned int m = 0; m < N_ELEMENTS(modes); m++) {
		sqlite3 *a, *b;
		sqlite3_int64 n = -1, busy = -1;
		char first[2] = "";
		sqlite3_stmt *stmt;

		test_cvfs_path(path, "other.db");
		test_assert_idx(test_ra_create(path, modes[m], 1000,
					       false) == SQLITE_OK, m);
		a = test_ra_open(path);
		b = test_ra_open(path);
		test_assert_idx(a != NULL && b != NULL, m);
		if (a == NULL || b == NULL)
			return;

		memset(&test_count, 0, sizeof(test_count));
		test_assert_idx(test_cvfs_exec(a, "BEGIN") == SQLITE_OK, m);
		test_assert_idx(test_cvfs_int(a, "SELECT count(*) FROM t "
					      "WHERE substr(v, 1, 1) = 'A'",
					      &n) == SQLITE_OK &&
				n == TEST_ROWS, m);
		test_assert_idx(test_cvfs_exec(a, "COMMIT") == SQLITE_OK, m);
		/* Otherwise the case proves nothing. */
		test_assert_idx(test_count.multi_reads > 0, m);

		test_assert_idx(test_cvfs_exec(b, "UPDATE t SET v = "
					       "printf('%.*c', 1000, 'B')") ==
				SQLITE_OK, m);
		if (m == 0) {
			test_assert_idx(test_cvfs_int(b, "PRAGMA "
						      "wal_checkpoint(TRUNCATE)",
						      &busy) == SQLITE_OK &&
					busy == 0, m);
		}

		test_assert_idx(sqlite3_prepare_v2(a, "SELECT substr(v, 1, 1) "
						   "FROM t WHERE id = ?", -1,
						   &stmt, NULL) == SQLITE_OK,
				m);
		sqlite3_bind_int(stmt, 1, TEST_ROWS);
		if (sqlite3_step(stmt) == SQLITE_ROW)
			snprintf(first, sizeof(first), "%s",
				 (const char *)sqlite3_column_text(stmt, 0));
		sqlite3_finalize(stmt);
		test_assert_idx(strcmp(first, "B") == 0, m);
		test_assert_idx(test_cvfs_int(a, "SELECT count(*) FROM t "
					      "WHERE substr(v, 1, 1) = 'B'",
					      &n) == SQLITE_OK &&
				n == TEST_ROWS, m);
		cvfs_close(&a);
		cvfs_close(&b);
	}
	test_end();
}

/* A walk in page order costs fewer reads than pages, to the end of the
   file; lookups that never touch the page after the last one read cost
   one read per page, none longer than a page. */
static void test_ra_fewer_reads(void)
{
	char path[TEST_CVFS_PATH_MAX];
	sqlite3_int64 n = -1;
	unsigned int pages;
	sqlite3 *db;

	test_begin("read-ahead: fewer reads in order, none on lookups");
	test_cvfs_path(path, "fewer.db");
	test_assert(test_ra_create(path, "WAL", 1000, true) == SQLITE_OK);
	pages = test_ra_pages(path);
	db = test_ra_open(path);
	test_assert(db != NULL);
	if (db == NULL)
		return;

	/* 256 overflow pages, the last ones at the end of the file. */
	memset(&test_count, 0, sizeof(test_count));
	test_assert(test_ra_read_big(db) == 1);
	test_diag("big row: %u reads, %u longer than a page, file of %u "
		  "pages", test_count.reads, test_count.multi_reads, pages);
	test_assert(test_count.multi_reads > 0);
	test_assert(test_count.reads * 4 < TEST_BIG_BYTES / TEST_PAGE_SIZE);

	/* A scan of t: 100 leaves in order. */
	memset(&test_count, 0, sizeof(test_count));
	test_assert(test_cvfs_int(db, "SELECT count(*) FROM t WHERE "
				  "substr(v, 1, 1) = 'A'", &n) == SQLITE_OK &&
		    n == TEST_ROWS);
	test_diag("scan of t: %u reads, %u longer than a page",
		  test_count.reads, test_count.multi_reads);
	test_assert(test_count.multi_reads > 0);
	test_assert(test_count.reads * 2 < TEST_ROWS / 4);
	cvfs_close(&db);

	/* One row per leaf; lookups 37 rows (leaves) apart, never the
	   first leaf right after the root. */
	test_assert(test_ra_create(path, "WAL", 3000, false) == SQLITE_OK);
	db = test_ra_open(path);
	test_assert(db != NULL);
	if (db == NULL)
		return;
	memset(&test_count, 0, sizeof(test_count));
	for (unsigned int i = 0; i < 50; i++) {
		char sql[80];

		snprintf(sql, sizeof(sql), "SELECT length(v) FROM t WHERE "
			 "id = %u", 1 + (100 + i * 37) % TEST_ROWS);
		test_assert_idx(test_cvfs_int(db, sql, &n) == SQLITE_OK &&
				n == 3000, i);
	}
	test_diag("50 lookups: %u reads, %u longer than a page",
		  test_count.reads, test_count.multi_reads);
	test_assert(test_count.multi_reads == 0);
	test_assert(test_count.reads >= 50);
	cvfs_close(&db);
	test_end();
}

/* A page changed on disk inside a range read ahead: SQLITE_CORRUPT, and
   again at the next try (it was not kept as good). */
static void test_ra_tampered(void)
{
	char path[TEST_CVFS_PATH_MAX];
	unsigned char *data;
	unsigned int pages;
	size_t size;
	sqlite3 *db;

	test_begin("read-ahead: a damaged page in a range read ahead");
	test_cvfs_path(path, "tamper.db");
	test_assert(test_ra_create(path, "DELETE", 1000, true) == SQLITE_OK);
	pages = test_ra_pages(path);
	data = test_cvfs_read_file(path, &size);
	test_assert(data != NULL && pages > 300);
	if (data == NULL)
		return;
	/* Deep in big's overflow chain, not the first page of a range. */
	data[(size_t)(pages - 100) * TEST_PAGE_SIZE + 1000] ^= 0x01;
	test_assert(test_cvfs_write_file(path, data, size) == 0);
	free(data);

	db = test_ra_open(path);
	test_assert(db != NULL);
	if (db == NULL)
		return;
	memset(&test_count, 0, sizeof(test_count));
	test_assert(test_ra_read_big(db) == -SQLITE_CORRUPT);
	test_assert(test_count.multi_reads > 0);
	test_assert(test_ra_read_big(db) == -SQLITE_CORRUPT);
	cvfs_close(&db);
	test_end();
}

/* SQLite's direct overflow reads (a page less its reserved bytes, from
   the page's start) in page order: served from ranges read ahead, the
   same bytes as whole pages read one by one out of order. */
static void test_ra_slices(void)
{
	enum { FIRST = 3, LAST = 200 };
	const int slice = TEST_PAGE_SIZE - CVFS_RESERVED_BYTES;
	char path[TEST_CVFS_PATH_MAX];
	unsigned char *pages, *buf;
	sqlite3_file *file;
	sqlite3 *db;
	bool same = true;

	test_begin("read-ahead: direct overflow reads");
	test_cvfs_path(path, "slices.db");
	test_assert(test_ra_create(path, "DELETE", 1000, true) == SQLITE_OK);
	db = test_ra_open(path);
	test_assert(db != NULL);
	if (db == NULL)
		return;
	test_assert(test_cvfs_exec(db, "BEGIN; SELECT count(*) FROM big") ==
		    SQLITE_OK);
	file = (sqlite3_file *)cvfs_file_of_db(db, "main");
	pages = malloc((size_t)(LAST + 1) * TEST_PAGE_SIZE);
	buf = malloc(TEST_PAGE_SIZE);
	test_assert(file != NULL && pages != NULL && buf != NULL);
	if (file == NULL || pages == NULL || buf == NULL) {
		free(pages);
		free(buf);
		cvfs_close(&db);
		return;
	}
	/* Whole pages, every other one first: never two in order. */
	memset(&test_count, 0, sizeof(test_count));
	for (int pass = 0; pass < 2; pass++) {
		for (int p = FIRST + pass; p <= LAST; p += 2) {
			same = same && file->pMethods->xRead(
				file, pages + (size_t)p * TEST_PAGE_SIZE,
				TEST_PAGE_SIZE,
				(sqlite3_int64)(p - 1) * TEST_PAGE_SIZE) ==
				SQLITE_OK;
		}
	}
	test_assert(same);
	test_assert(test_count.multi_reads == 0);
	for (int p = FIRST; p <= LAST; p++) {
		memset(buf, 0xa5, TEST_PAGE_SIZE);
		same = same && file->pMethods->xRead(
			file, buf, slice,
			(sqlite3_int64)(p - 1) * TEST_PAGE_SIZE) == SQLITE_OK &&
			memcmp(buf, pages + (size_t)p * TEST_PAGE_SIZE,
			       slice) == 0 && buf[slice] == 0xa5;
	}
	test_assert(same);
	test_assert(test_count.multi_reads > 0);
	test_assert(test_cvfs_exec(db, "COMMIT") == SQLITE_OK);
	free(pages);
	free(buf);
	cvfs_close(&db);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_ra_other_connection,
		test_ra_fewer_reads,
		test_ra_tampered,
		test_ra_slices,
		NULL
	};

	if (test_count_register() < 0) {
		printf("Bail out! cannot register the counting VFS\n");
		return 1;
	}
	return test_cvfs_run(cases);
}
