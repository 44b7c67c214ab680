/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Damaged files give an error, never wrong data: a flipped bit in any
   page (header bytes, nonce, tag included) or WAL frame, truncation, a WAL
   from another database, a hot journal with a bad page. */

#include <signal.h>
#include <sys/wait.h>

#include "test-cryptvfs-common.h"
#include "cryptvfs-private.h"

#define TEST_PAGE_SIZE 4096
#define TEST_ROWS_PER_TXN 20
#define TEST_TXNS 6

enum test_scan {
	TEST_SCAN_ERROR = -1,	/* SQLite reported an error */
	TEST_SCAN_WRONG = -2,	/* a row that was never written */
};

/* Set when sqlite3_log() carried cryptvfs' message naming test_log_want. */
static char test_log_want[64];
static bool test_log_seen;

static void test_tamper_log(void *context ATTR_UNUSED, int code ATTR_UNUSED,
			    const char *msg)
{
	if (strncmp(msg, "cryptvfs: ", 10) == 0 &&
	    strstr(msg, test_log_want) != NULL)
		test_log_seen = true;
}

/* Row i holds a body derived from i only: any other content is wrong. */
static int test_tamper_fill(sqlite3 *db, int txns)
{
	char sql[200];
	int rc = test_cvfs_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, "
				"body BLOB)");

	for (int t = 0; rc == SQLITE_OK && t < txns; t++) {
		rc = test_cvfs_exec(db, "BEGIN");
		for (int i = 0; rc == SQLITE_OK && i < TEST_ROWS_PER_TXN;
		     i++) {
			int id = t * TEST_ROWS_PER_TXN + i;

			snprintf(sql, sizeof(sql), "INSERT INTO t VALUES(%d, "
				 "printf('%%.*c', %d, char(65 + %d %% 26)))",
				 id, 200 + id * 13 % 700, id);
			rc = test_cvfs_exec(db, sql);
		}
		if (rc == SQLITE_OK)
			rc = test_cvfs_exec(db, "COMMIT");
	}
	return rc;
}

/* Opens path and reads everything. Returns the number of rows if they
   are ids 0..n-1 with their own bodies and the file checks out, else a
   TEST_SCAN_* code. */
static int test_tamper_scan(const char *path, const unsigned char *key)
{
	sqlite3_stmt *stmt = NULL;
	sqlite3_int64 ok = 0;
	sqlite3 *db;
	int n = 0, rc;

	if (cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE, key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK)
		return TEST_SCAN_ERROR;
	rc = sqlite3_prepare_v2(db, "SELECT id, body FROM t ORDER BY id", -1,
				&stmt, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const unsigned char *body = sqlite3_column_blob(stmt, 1);
		int len = sqlite3_column_bytes(stmt, 1);
		int id = sqlite3_column_int(stmt, 0);
		bool good = id == n && len == 200 + id * 13 % 700;

		for (int j = 0; good && j < len; j++)
			good = body[j] == 'A' + id % 26;
		if (!good) {
			n = TEST_SCAN_WRONG;
			break;
		}
		n++;
		rc = SQLITE_OK;
	}
	if (n >= 0 && rc != SQLITE_DONE)
		n = TEST_SCAN_ERROR;
	sqlite3_finalize(stmt);
	if (n >= 0 && (test_cvfs_int(db, "SELECT integrity_check = 'ok' FROM "
				     "pragma_integrity_check", &ok) !=
		       SQLITE_OK || ok != 1))
		n = TEST_SCAN_ERROR;
	cvfs_close(&db);
	return n;
}

/* Creates a checkpointed single-file database; returns its page count. */
static unsigned int test_tamper_make_db(const char *path)
{
	sqlite3 *db;
	sqlite3_int64 pages = 0;

	test_cvfs_unlink_db(path);
	if (cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK)
		return 0;
	if (test_tamper_fill(db, TEST_TXNS) != SQLITE_OK ||
	    test_cvfs_exec(db, "VACUUM") != SQLITE_OK ||
	    test_cvfs_int(db, "PRAGMA page_count", &pages) != SQLITE_OK)
		pages = 0;
	cvfs_close(&db);
	return (unsigned int)pages;
}

static int test_tamper_flip(const char *src, const char *dst, long offset,
			    unsigned char mask)
{
	size_t size;
	unsigned char *data = test_cvfs_read_file(src, &size);
	int ret;

	if (data == NULL || offset >= (long)size) {
		free(data);
		return -1;
	}
	data[offset] ^= mask;
	ret = test_cvfs_write_file(dst, data, size);
	free(data);
	return ret;
}

static void test_tamper_every_page(void)
{
	/* In-page offsets: salt, plain header (page size, reserve,
	   payload fractions), ciphertext, last ciphertext byte, nonce
	   (incl. its counter bytes), tag. */
	static const long offsets[] = {
		0, 15, 16, 17, 20, 23, 24, 1000, 4063, 4064, 4076, 4079,
		4080, 4095
	};
	char path[TEST_CVFS_PATH_MAX], bad[TEST_CVFS_PATH_MAX];
	unsigned int pages;
	unsigned int errors = 0, runs = 0, logged = 0;

	test_begin("tamper a bit in every page, every region");
	test_cvfs_path(path, "pages.db");
	test_cvfs_path(bad, "pages-bad.db");
	pages = test_tamper_make_db(path);
	test_assert(pages >= 5);
	test_assert(test_tamper_scan(path, test_cvfs_key) ==
		    TEST_TXNS * TEST_ROWS_PER_TXN);
	for (unsigned int pg = 1; pg <= pages; pg++) {
		for (unsigned int i = 0; i < N_ELEMENTS(offsets); i++) {
			long at = (long)(pg - 1) * TEST_PAGE_SIZE + offsets[i];
			int ret;

			test_cvfs_unlink_db(bad);
			if (test_tamper_flip(path, bad, at, 0x01) < 0)
				continue;
			snprintf(test_log_want, sizeof(test_log_want),
				 "page %u at offset %ld ", pg,
				 (long)(pg - 1) * TEST_PAGE_SIZE);
			test_log_seen = false;
			ret = test_tamper_scan(bad, test_cvfs_key);
			runs++;
			errors += ret == TEST_SCAN_ERROR;
			logged += test_log_seen;
			if (ret != TEST_SCAN_ERROR)
				test_diag("page %u offset %ld: scan %d", pg,
					  offsets[i], ret);
		}
	}
	test_diag("%u pages, %u flips, %u errors, %u logged the page", pages,
		  runs, errors, logged);
	test_assert(runs == pages * N_ELEMENTS(offsets));
	test_assert(errors == runs);
	test_assert(logged == runs);
	test_end();
}

static void test_tamper_truncated(void)
{
	char path[TEST_CVFS_PATH_MAX], bad[TEST_CVFS_PATH_MAX];
	unsigned char *data;
	size_t size;
	unsigned int pages;

	test_begin("tamper truncated main file");
	test_cvfs_path(path, "trunc.db");
	test_cvfs_path(bad, "trunc-bad.db");
	pages = test_tamper_make_db(path);
	data = test_cvfs_read_file(path, &size);
	test_assert(data != NULL && size == pages * TEST_PAGE_SIZE);
	if (data != NULL) {
		const size_t cuts[] = {
			size - 1, size - TEST_PAGE_SIZE,
			size - TEST_PAGE_SIZE + 100, 2 * TEST_PAGE_SIZE,
			TEST_PAGE_SIZE + 1, TEST_PAGE_SIZE - 1, 100, 23, 10, 1
		};

		for (unsigned int i = 0; i < N_ELEMENTS(cuts); i++) {
			test_cvfs_unlink_db(bad);
			test_assert_idx(test_cvfs_write_file(bad, data,
							     cuts[i]) == 0, i);
			test_assert_idx(test_tamper_scan(bad, test_cvfs_key) ==
					TEST_SCAN_ERROR, i);
		}
	}
	free(data);
	test_end();
}

/* Builds main + un-checkpointed WAL with TEST_TXNS commits, copied while
   the writer is still open (as after a crash). Returns WAL frames. */
static unsigned int test_tamper_make_wal(const char *path, const char *copy,
					 const unsigned char *key)
{
	char src[TEST_CVFS_PATH_MAX + 8], dst[TEST_CVFS_PATH_MAX + 8];
	sqlite3_int64 size;
	sqlite3 *db;

	test_cvfs_unlink_db(path);
	test_cvfs_unlink_db(copy);
	if (cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, key, CVFS_KEY_BYTES,
			 NULL) != SQLITE_OK)
		return 0;
	if (test_cvfs_exec(db, "PRAGMA journal_mode=WAL; PRAGMA "
			   "wal_autocheckpoint=0") != SQLITE_OK ||
	    test_tamper_fill(db, TEST_TXNS) != SQLITE_OK) {
		cvfs_close(&db);
		return 0;
	}
	(void)test_cvfs_copy_file(path, copy);
	snprintf(src, sizeof(src), "%s-wal", path);
	snprintf(dst, sizeof(dst), "%s-wal", copy);
	(void)test_cvfs_copy_file(src, dst);
	cvfs_close(&db);
	size = test_cvfs_file_size(dst);
	return size <= CVFS_WAL_HEADER_BYTES ? 0 :
		(size - CVFS_WAL_HEADER_BYTES) /
		(TEST_PAGE_SIZE + CVFS_WAL_FRAME_HEADER_BYTES);
}

/* Recomputes every frame checksum of a WAL image, as an attacker who
   knows the (unkeyed) algorithm would after editing a frame. */
static void test_tamper_wal_rechecksum(unsigned char *wal, size_t size)
{
	size_t frame = TEST_PAGE_SIZE + CVFS_WAL_FRAME_HEADER_BYTES;
	bool big_endian = (cvfs_get_be32(wal) & 1) != 0;
	uint32_t sum[2] = { cvfs_get_be32(wal + 24), cvfs_get_be32(wal + 28) };

	for (size_t off = CVFS_WAL_HEADER_BYTES; off + frame <= size;
	     off += frame) {
		cvfs_wal_checksum(sum, wal + off, 8, big_endian);
		cvfs_wal_checksum(sum, wal + off + CVFS_WAL_FRAME_HEADER_BYTES,
				  TEST_PAGE_SIZE, big_endian);
		cvfs_put_be32(wal + off + 16, sum[0]);
		cvfs_put_be32(wal + off + 20, sum[1]);
	}
}

/* Whether frame i holds the newest version of its page in the WAL. */
static bool test_tamper_frame_is_latest(const unsigned char *wal,
					unsigned int frames, unsigned int i)
{
	size_t frame = TEST_PAGE_SIZE + CVFS_WAL_FRAME_HEADER_BYTES;
	uint32_t pgno = cvfs_get_be32(wal + CVFS_WAL_HEADER_BYTES + i * frame);

	for (unsigned int j = i + 1; j < frames; j++) {
		if (cvfs_get_be32(wal + CVFS_WAL_HEADER_BYTES + j * frame) ==
		    pgno)
			return false;
	}
	return true;
}

static void test_tamper_wal_frames(void)
{
	/* In-frame offsets: page number, commit size, salt, checksum,
	   page ciphertext, nonce, tag. */
	static const long offsets[] = {
		3, 7, 8, 16, 24 + 0, 24 + 2000, 24 + 4064, 24 + 4090
	};
	char path[TEST_CVFS_PATH_MAX], copy[TEST_CVFS_PATH_MAX];
	char bad[TEST_CVFS_PATH_MAX], wal[TEST_CVFS_PATH_MAX + 8];
	char bad_wal[TEST_CVFS_PATH_MAX + 8];
	const int all = TEST_TXNS * TEST_ROWS_PER_TXN;
	unsigned char *image;
	size_t size, frame = TEST_PAGE_SIZE + CVFS_WAL_FRAME_HEADER_BYTES;
	unsigned int frames, latest_errors = 0, latest = 0;

	test_begin("tamper WAL frames: never wrong data");
	test_cvfs_path(path, "walsrc.db");
	test_cvfs_path(copy, "wal.db");
	test_cvfs_path(bad, "wal-bad.db");
	snprintf(wal, sizeof(wal), "%s-wal", copy);
	snprintf(bad_wal, sizeof(bad_wal), "%s-wal", bad);
	frames = test_tamper_make_wal(path, copy, test_cvfs_key);
	test_assert(frames >= TEST_TXNS);
	image = test_cvfs_read_file(wal, &size);
	test_assert(image != NULL);
	if (image == NULL || frames == 0) {
		free(image);
		test_end();
		return;
	}
	/* Intact, the copy recovers every commit from the WAL. */
	test_cvfs_unlink_db(bad);
	test_assert(test_cvfs_copy_file(copy, bad) == 0 &&
		    test_cvfs_write_file(bad_wal, image, size) == 0);
	test_assert(test_tamper_scan(bad, test_cvfs_key) == all);

	for (unsigned int i = 0; i < frames; i++) {
		for (unsigned int k = 0; k < N_ELEMENTS(offsets); k++) {
			size_t at = CVFS_WAL_HEADER_BYTES + i * frame +
				offsets[k];
			int plain_ret, forged_ret;

			/* (1) A bit flip alone breaks the frame checksum:
			   recovery stops there, as after a torn write, so
			   an earlier commit (a prefix of rows) is seen. */
			test_cvfs_unlink_db(bad);
			image[at] ^= 0x04;
			test_cvfs_copy_file(copy, bad);
			test_cvfs_write_file(bad_wal, image, size);
			plain_ret = test_tamper_scan(bad, test_cvfs_key);
			test_assert_idx(plain_ret == TEST_SCAN_ERROR ||
					(plain_ret >= 0 && plain_ret <= all),
					i * 100 + k);

			image[at] ^= 0x04;
			if (offsets[k] < CVFS_WAL_FRAME_HEADER_BYTES)
				continue;
			/* (2) With checksums forged, a flipped page byte is
			   caught by the tag when that frame is read. (A
			   forged frame header can only bring back an older,
			   authentic page version: see cryptvfs.h LIMITS.) */
			image[at] ^= 0x04;
			test_cvfs_unlink_db(bad);
			test_tamper_wal_rechecksum(image, size);
			test_cvfs_copy_file(copy, bad);
			test_cvfs_write_file(bad_wal, image, size);
			forged_ret = test_tamper_scan(bad, test_cvfs_key);
			test_assert_idx(forged_ret == TEST_SCAN_ERROR ||
					(forged_ret >= 0 && forged_ret <= all),
					i * 100 + k);
			if (offsets[k] >= CVFS_WAL_FRAME_HEADER_BYTES &&
			    test_tamper_frame_is_latest(image, frames, i)) {
				latest++;
				latest_errors += forged_ret == TEST_SCAN_ERROR;
			}
			image[at] ^= 0x04;
			test_tamper_wal_rechecksum(image, size);
		}
	}
	test_diag("%u frames; forged newest-frame page flips: %u, errors %u",
		  frames, latest, latest_errors);
	test_assert(latest > 0 && latest_errors == latest);
	free(image);
	test_end();
}

static void test_tamper_foreign_wal(void)
{
	char a[TEST_CVFS_PATH_MAX], a_copy[TEST_CVFS_PATH_MAX];
	char b[TEST_CVFS_PATH_MAX], b_copy[TEST_CVFS_PATH_MAX];
	char src[TEST_CVFS_PATH_MAX + 8], dst[TEST_CVFS_PATH_MAX + 8];

	test_begin("tamper a -wal from another database");
	test_cvfs_path(a, "fa-src.db");
	test_cvfs_path(a_copy, "fa.db");
	test_cvfs_path(b, "fb-src.db");
	test_cvfs_path(b_copy, "fb.db");
	test_assert(test_tamper_make_wal(a, a_copy, test_cvfs_key) > 0);
	test_assert(test_tamper_make_wal(b, b_copy, test_cvfs_key2) > 0);
	/* a's main file with b's WAL, opened with a's key. */
	snprintf(src, sizeof(src), "%s-wal", b_copy);
	snprintf(dst, sizeof(dst), "%s-wal", a_copy);
	test_assert(test_cvfs_copy_file(src, dst) == 0);
	test_assert(test_tamper_scan(a_copy, test_cvfs_key) ==
		    TEST_SCAN_ERROR);
	/* A zero-length -wal is simply no WAL: the database as it was
	   before the first commit (no table yet), and consistent. */
	test_assert(test_tamper_make_wal(a, a_copy, test_cvfs_key) > 0);
	test_assert(test_cvfs_write_file(dst, NULL, 0) == 0);
	{
		sqlite3_int64 n = -1;
		sqlite3 *db;

		test_assert(cvfs_open_v2(a_copy, &db, SQLITE_OPEN_READWRITE,
					 test_cvfs_key, CVFS_KEY_BYTES,
					 NULL) == SQLITE_OK);
		test_assert(db != NULL &&
			    test_cvfs_int(db, "SELECT count(*) FROM "
					  "sqlite_schema", &n) == SQLITE_OK &&
			    n == 0);
		cvfs_close(&db);
	}
	test_end();
}

/* Leaves a hot journal: a child changes every page with a tiny cache (so
   they spill into the file) and dies before COMMIT. */
static int test_tamper_make_hot_journal(const char *path)
{
	pid_t pid;
	int status;

	if (test_tamper_make_db(path) == 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		sqlite3 *db;

		if (cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key, CVFS_KEY_BYTES,
				 NULL) != SQLITE_OK)
			_exit(1);
		if (test_cvfs_exec(db, "PRAGMA journal_mode=PERSIST; "
				   "PRAGMA cache_size=1; BEGIN; "
				   "UPDATE t SET body=zeroblob(length(body))")
		    != SQLITE_OK)
			_exit(1);
		raise(SIGKILL);
		_exit(1);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFSIGNALED(status))
		return -1;
	return 0;
}

static void test_tamper_hot_journal(void)
{
	char path[TEST_CVFS_PATH_MAX], bad[TEST_CVFS_PATH_MAX];
	char jrnl[TEST_CVFS_PATH_MAX + 16], bad_jrnl[TEST_CVFS_PATH_MAX + 16];
	const int all = TEST_TXNS * TEST_ROWS_PER_TXN;
	sqlite3_int64 jsize;

	test_begin("tamper a hot journal page");
	test_cvfs_path(path, "hot.db");
	test_cvfs_path(bad, "hot-bad.db");
	snprintf(jrnl, sizeof(jrnl), "%s-journal", path);
	snprintf(bad_jrnl, sizeof(bad_jrnl), "%s-journal", bad);
	test_assert(test_tamper_make_hot_journal(path) == 0);
	jsize = test_cvfs_file_size(jrnl);
	test_assert(jsize > 2 * TEST_PAGE_SIZE);
	/* Intact: rolled back to the committed rows. */
	test_cvfs_unlink_db(bad);
	test_assert(test_cvfs_copy_file(path, bad) == 0 &&
		    test_cvfs_copy_file(jrnl, bad_jrnl) == 0);
	test_assert(test_tamper_scan(bad, test_cvfs_key) == all);
	/* A flipped bit in the first record's page (after the header
	   sector and the 4-byte page number): rollback must fail, not
	   restore a forged page. */
	test_cvfs_unlink_db(bad);
	test_assert(test_cvfs_copy_file(path, bad) == 0);
	test_assert(test_tamper_flip(jrnl, bad_jrnl,
				     TEST_PAGE_SIZE + 4 + 300, 0x02) == 0);
	test_assert(test_tamper_scan(bad, test_cvfs_key) == TEST_SCAN_ERROR);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_tamper_every_page,
		test_tamper_truncated,
		test_tamper_wal_frames,
		test_tamper_foreign_wal,
		test_tamper_hot_journal,
		NULL
	};

	sqlite3_config(SQLITE_CONFIG_LOG, test_tamper_log, NULL);
	return test_cvfs_run(cases);
}
