/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Whole databases through cryptvfs: round trips in every journal mode,
   no plaintext on disk, export, rekey, and what must be refused. */

#include "test-cryptvfs-common.h"
#include "cryptvfs-private.h"

#define TEST_MARKER "ZZ-PLAINTEXT-MARKER-7f3a"
#define TEST_ROWS 300

/* Fills table t with rows carrying the marker; returns the primary rc. */
static int test_vfs_fill(sqlite3 *db, int first, int count)
{
	char sql[256];
	int rc;

	rc = test_cvfs_exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER "
			    "PRIMARY KEY, body TEXT, blob BLOB)");
	if (rc == SQLITE_OK)
		rc = test_cvfs_exec(db, "BEGIN");
	for (int i = first; rc == SQLITE_OK && i < first + count; i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO t VALUES(%d, '%s-%d', "
			 "zeroblob(%d))", i, TEST_MARKER, i, 100 + i % 900);
		rc = test_cvfs_exec(db, sql);
	}
	if (rc == SQLITE_OK)
		rc = test_cvfs_exec(db, "COMMIT");
	return rc;
}

/* Checks that t holds exactly ids [0, count) with the right bodies. */
static bool test_vfs_verify(sqlite3 *db, int count)
{
	sqlite3_stmt *stmt;
	char expected[64];
	int n = 0;
	bool ok = true;

	if (sqlite3_prepare_v2(db, "SELECT id, body FROM t ORDER BY id", -1,
			       &stmt, NULL) != SQLITE_OK)
		return false;
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		snprintf(expected, sizeof(expected), "%s-%d", TEST_MARKER, n);
		ok = ok && sqlite3_column_int(stmt, 0) == n &&
			strcmp((const char *)sqlite3_column_text(stmt, 1),
			       expected) == 0;
		n++;
	}
	ok = ok && sqlite3_finalize(stmt) == SQLITE_OK;
	return ok && n == count;
}

static bool test_vfs_integrity_ok(sqlite3 *db)
{
	sqlite3_int64 ok;

	return test_cvfs_int(db, "SELECT integrity_check = 'ok' FROM "
			     "pragma_integrity_check", &ok) == SQLITE_OK &&
		ok == 1;
}

struct test_vfs_mode {
	const char *name;
	const char *pragmas;
	int page_size;
};

static const struct test_vfs_mode test_vfs_modes[] = {
	{ "wal", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", 4096 },
	{ "wal-64k", "PRAGMA journal_mode=WAL", 65536 },
	{ "delete", "PRAGMA journal_mode=DELETE", 4096 },
	{ "persist-512", "PRAGMA journal_mode=PERSIST", 512 },
	{ "truncate", "PRAGMA journal_mode=TRUNCATE; PRAGMA cache_size=2",
	  1024 },
};

static void test_vfs_round_trip_modes(void)
{
	char path[TEST_CVFS_PATH_MAX], sql[64];

	test_begin("vfs round trip in every journal mode");
	for (unsigned int i = 0; i < N_ELEMENTS(test_vfs_modes); i++) {
		const struct test_vfs_mode *m = &test_vfs_modes[i];
		sqlite3_int64 reserve = -1, page_size = -1;
		sqlite3 *db;

		test_cvfs_path(path, m->name);
		test_cvfs_unlink_db(path);
		test_assert_idx(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC,
					     test_cvfs_key, CVFS_KEY_BYTES,
					     NULL) == SQLITE_OK, i);
		snprintf(sql, sizeof(sql), "PRAGMA page_size=%d",
			 m->page_size);
		test_assert_idx(test_cvfs_exec(db, sql) == SQLITE_OK, i);
		test_assert_idx(test_cvfs_exec(db, m->pragmas) == SQLITE_OK,
				i);
		test_assert_idx(test_vfs_fill(db, 0, TEST_ROWS / 2) ==
				SQLITE_OK, i);
		/* An update and a delete in one transaction touch pages the
		   transaction already wrote (WAL frame overwrite path). */
		test_assert_idx(test_cvfs_exec(db, "BEGIN; UPDATE t SET blob="
					       "zeroblob(2000) WHERE id%3=0; "
					       "UPDATE t SET blob=zeroblob(10)"
					       " WHERE id%3=0; COMMIT") ==
				SQLITE_OK, i);
		test_assert_idx(test_vfs_fill(db, TEST_ROWS / 2,
					      TEST_ROWS / 2) == SQLITE_OK, i);
		/* A rolled-back transaction leaves nothing behind. */
		test_assert_idx(test_cvfs_exec(db, "BEGIN; DELETE FROM t; "
					       "ROLLBACK") == SQLITE_OK, i);
		test_assert_idx(test_vfs_verify(db, TEST_ROWS), i);
		cvfs_close(&db);

		test_assert_idx(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
					     test_cvfs_key, CVFS_KEY_BYTES,
					     NULL) == SQLITE_OK, i);
		test_assert_idx(test_vfs_verify(db, TEST_ROWS), i);
		test_assert_idx(test_vfs_integrity_ok(db), i);
		test_assert_idx(test_cvfs_int(db, "PRAGMA page_size",
					      &page_size) == SQLITE_OK &&
				page_size == m->page_size, i);
		/* 32 reserved bytes: usable size = page size - 32. */
		{
			int r = -1;

			test_assert_idx(sqlite3_file_control(
				db, "main", SQLITE_FCNTL_RESERVE_BYTES, &r) ==
				SQLITE_OK, i);
			reserve = r;
		}
		test_assert_idx(reserve == CVFS_RESERVED_BYTES, i);
		cvfs_close(&db);
		/* Nothing plain anywhere: main, WAL, journal. */
		test_assert_idx(!test_cvfs_file_contains(path, TEST_MARKER), i);
		test_assert_idx(!test_cvfs_file_contains(path, "SQLite format"),
				i);
	}
	test_end();
}

static void test_vfs_no_plaintext_live(void)
{
	static const char *const suffixes[] = { "", "-wal", "-journal" };
	char path[TEST_CVFS_PATH_MAX], p[TEST_CVFS_PATH_MAX + 16];
	sqlite3 *db;

	/* While connections are open the WAL holds every committed page,
	   and a PERSIST journal keeps the old page images: check both. */
	test_begin("vfs no plaintext in main, -wal and journal while open");
	test_cvfs_path(path, "live-wal.db");
	test_cvfs_unlink_db(path);
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "PRAGMA journal_mode=WAL; "
				   "PRAGMA wal_autocheckpoint=0") == SQLITE_OK);
	test_assert(test_vfs_fill(db, 0, TEST_ROWS) == SQLITE_OK);
	snprintf(p, sizeof(p), "%s-wal", path);
	test_assert(test_cvfs_file_size(p) > 50000);
	for (unsigned int i = 0; i < N_ELEMENTS(suffixes); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		test_assert_idx(!test_cvfs_file_contains(p, TEST_MARKER), i);
	}
	cvfs_close(&db);

	test_cvfs_path(path, "live-persist.db");
	test_cvfs_unlink_db(path);
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "PRAGMA journal_mode=PERSIST") ==
		    SQLITE_OK);
	test_assert(test_vfs_fill(db, 0, TEST_ROWS) == SQLITE_OK);
	/* Rewrites every page: their old images go to the journal. */
	test_assert(test_cvfs_exec(db, "UPDATE t SET blob=zeroblob(50)") ==
		    SQLITE_OK);
	snprintf(p, sizeof(p), "%s-journal", path);
	test_assert(test_cvfs_file_size(p) > 50000);
	for (unsigned int i = 0; i < N_ELEMENTS(suffixes); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		test_assert_idx(!test_cvfs_file_contains(p, TEST_MARKER), i);
	}
	cvfs_close(&db);
	test_end();
}

static void test_vfs_wrong_key(void)
{
	char path[TEST_CVFS_PATH_MAX];
	struct cvfs_error err;
	sqlite3 *db;

	test_begin("vfs wrong key is NOTADB, plain SQLite sees no database");
	test_cvfs_path(path, "wrongkey.db");
	test_cvfs_unlink_db(path);
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_vfs_fill(db, 0, 10) == SQLITE_OK);
	cvfs_close(&db);
	test_assert(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key2, CVFS_KEY_BYTES, &err) ==
		    SQLITE_NOTADB);
	test_assert(db == NULL && err.rc == SQLITE_NOTADB);
	test_assert(cvfs_open_passphrase(path, &db, SQLITE_OPEN_READWRITE,
					 "guess", 5, &err) == SQLITE_NOTADB);
	test_assert(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key, 16, &err) == SQLITE_MISUSE);
	/* Stock SQLite on the same file. */
	test_assert(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) ==
		    SQLITE_OK);
	test_assert(test_cvfs_exec(db, "SELECT * FROM sqlite_schema") ==
		    SQLITE_NOTADB);
	sqlite3_close(db);
	test_end();
}

static void test_vfs_passphrase(void)
{
	char path[TEST_CVFS_PATH_MAX];
	unsigned char *data, key[CVFS_KEY_BYTES];
	size_t size;
	sqlite3 *db;

	test_begin("vfs passphrase database reopens, raw key = PBKDF2");
	test_cvfs_path(path, "pass.db");
	test_cvfs_unlink_db(path);
	test_assert(cvfs_open_passphrase(path, &db, TEST_CVFS_OPEN_RWC,
					 "hunter2", 7, NULL) == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "PRAGMA journal_mode=WAL") ==
		    SQLITE_OK);
	test_assert(test_vfs_fill(db, 0, 20) == SQLITE_OK);
	cvfs_close(&db);
	test_assert(cvfs_open_passphrase(path, &db, SQLITE_OPEN_READWRITE,
					 "hunter2", 7, NULL) == SQLITE_OK);
	test_assert(test_vfs_verify(db, 20));
	cvfs_close(&db);
	data = test_cvfs_read_file(path, &size);
	test_assert(data != NULL && size >= CVFS_SALT_BYTES);
	if (data != NULL) {
		cvfs_pbkdf2_sha256(key, sizeof(key),
				   (const unsigned char *)"hunter2", 7, data,
				   CVFS_SALT_BYTES, CVFS_KDF_ITERATIONS);
		free(data);
		test_assert(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE, key,
					 sizeof(key), NULL) == SQLITE_OK);
		test_assert(test_vfs_verify(db, 20));
		cvfs_close(&db);
	}
	test_end();
}

static void test_vfs_empty_file(void)
{
	char path[TEST_CVFS_PATH_MAX];
	sqlite3 *db;

	/* A zero-length file is a new, empty database (as in SQLite). */
	test_begin("vfs zero-length file opens as an empty database");
	test_cvfs_path(path, "empty.db");
	test_cvfs_unlink_db(path);
	test_assert(test_cvfs_write_file(path, NULL, 0) == 0);
	test_assert(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key, CVFS_KEY_BYTES, NULL) ==
		    SQLITE_OK);
	test_assert(test_cvfs_exec(db, "SELECT * FROM t") == SQLITE_ERROR);
	test_assert(test_vfs_fill(db, 0, 5) == SQLITE_OK);
	cvfs_close(&db);
	test_assert(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key, CVFS_KEY_BYTES, NULL) ==
		    SQLITE_OK);
	test_assert(test_vfs_verify(db, 5));
	cvfs_close(&db);
	test_end();
}

static void test_vfs_attach_needs_key(void)
{
	char path[TEST_CVFS_PATH_MAX], other[TEST_CVFS_PATH_MAX];
	char sql[TEST_CVFS_PATH_MAX + 64];
	sqlite3 *db;

	test_begin("vfs ATTACH or VACUUM INTO without a key is refused");
	test_cvfs_path(path, "attach.db");
	test_cvfs_path(other, "attach-plain.db");
	test_cvfs_unlink_db(path);
	test_cvfs_unlink_db(other);
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_vfs_fill(db, 0, 5) == SQLITE_OK);
	snprintf(sql, sizeof(sql), "VACUUM INTO '%s'", other);
	test_assert(test_cvfs_exec(db, sql) != SQLITE_OK);
	test_assert(test_cvfs_file_size(other) <= 0);
	snprintf(sql, sizeof(sql), "ATTACH '%s' AS o", other);
	test_assert(test_cvfs_exec(db, sql) != SQLITE_OK);
	/* A database that was never given reserved bytes is not written. */
	test_assert(test_cvfs_file_size(other) <= 0);
	cvfs_close(&db);
	test_end();
}

static void test_vfs_export(void)
{
	char path[TEST_CVFS_PATH_MAX], copy[TEST_CVFS_PATH_MAX];
	char copy2[TEST_CVFS_PATH_MAX], p[TEST_CVFS_PATH_MAX + 8];
	struct cvfs_error err;
	sqlite3 *db, *db2;

	test_begin("vfs export writes a checkpointed encrypted copy");
	test_cvfs_path(path, "export-src.db");
	test_cvfs_path(copy, "export-copy.db");
	test_cvfs_path(copy2, "export-copy2.db");
	test_cvfs_unlink_db(path);
	test_cvfs_unlink_db(copy);
	test_cvfs_unlink_db(copy2);
	test_assert(cvfs_open_passphrase(path, &db, TEST_CVFS_OPEN_RWC,
					 "pw", 2, NULL) == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "PRAGMA journal_mode=WAL; PRAGMA "
				   "wal_autocheckpoint=0") == SQLITE_OK);
	test_assert(test_vfs_fill(db, 0, TEST_ROWS) == SQLITE_OK);
	/* Everything is still in the WAL; the copy must have it all. */
	test_assert(cvfs_export(db, copy, NULL, 0, &err) == SQLITE_OK);
	test_assert(cvfs_export(db, copy2, test_cvfs_key2, CVFS_KEY_BYTES,
				&err) == SQLITE_OK);
	test_assert(cvfs_export(db, copy, NULL, 0, &err) != SQLITE_OK);
	cvfs_close(&db);
	snprintf(p, sizeof(p), "%s-wal", copy);
	test_assert(test_cvfs_file_size(p) <= 0);
	test_assert(!test_cvfs_file_contains(copy, TEST_MARKER));
	test_assert(!test_cvfs_file_contains(copy2, TEST_MARKER));
	/* Same salt and key: the passphrase opens the copy. */
	test_assert(cvfs_open_passphrase(copy, &db2, SQLITE_OPEN_READWRITE,
					 "pw", 2, NULL) == SQLITE_OK);
	test_assert(test_vfs_verify(db2, TEST_ROWS));
	test_assert(test_vfs_integrity_ok(db2));
	cvfs_close(&db2);
	test_assert(cvfs_open_v2(copy2, &db2, SQLITE_OPEN_READWRITE,
				 test_cvfs_key2, CVFS_KEY_BYTES, NULL) ==
		    SQLITE_OK);
	test_assert(test_vfs_verify(db2, TEST_ROWS));
	cvfs_close(&db2);
	test_assert(cvfs_open_passphrase(copy2, &db2, SQLITE_OPEN_READWRITE,
					 "pw", 2, NULL) == SQLITE_NOTADB);
	test_end();
}

static void test_vfs_rekey(void)
{
	char path[TEST_CVFS_PATH_MAX], p[TEST_CVFS_PATH_MAX + 16];
	struct cvfs_error err;
	sqlite3 *db, *other;

	test_begin("vfs rekey to a new raw key");
	test_cvfs_path(path, "rekey.db");
	test_cvfs_unlink_db(path);
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "PRAGMA journal_mode=WAL") ==
		    SQLITE_OK);
	test_assert(test_vfs_fill(db, 0, TEST_ROWS) == SQLITE_OK);

	/* A second connection keeps the file busy: refused, untouched. */
	test_assert(cvfs_open_v2(path, &other, SQLITE_OPEN_READWRITE,
				 test_cvfs_key, CVFS_KEY_BYTES, NULL) ==
		    SQLITE_OK);
	test_assert(test_cvfs_exec(other, "BEGIN; SELECT count(*) FROM t") ==
		    SQLITE_OK);
	test_assert(cvfs_rekey(&db, test_cvfs_key2, CVFS_KEY_BYTES, &err) !=
		    SQLITE_OK);
	test_assert(db != NULL);
	test_assert(test_cvfs_exec(other, "COMMIT") == SQLITE_OK);
	cvfs_close(&other);
	test_assert(db != NULL && test_vfs_verify(db, TEST_ROWS));

	test_assert(cvfs_rekey(&db, test_cvfs_key2, CVFS_KEY_BYTES, &err) ==
		    SQLITE_OK);
	test_assert(db != NULL);
	if (db != NULL) {
		test_assert(test_vfs_verify(db, TEST_ROWS));
		test_assert(test_cvfs_exec(db, "PRAGMA journal_mode=WAL") ==
			    SQLITE_OK);
		test_assert(test_vfs_fill(db, TEST_ROWS, 10) == SQLITE_OK);
		cvfs_close(&db);
	}
	snprintf(p, sizeof(p), "%s-cvfs-rekey", path);
	test_assert(test_cvfs_file_size(p) < 0);
	test_assert(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key, CVFS_KEY_BYTES, NULL) ==
		    SQLITE_NOTADB);
	test_assert(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key2, CVFS_KEY_BYTES, NULL) ==
		    SQLITE_OK);
	test_assert(test_vfs_verify(db, TEST_ROWS + 10));
	test_assert(test_vfs_integrity_ok(db));
	cvfs_close(&db);
	test_end();
}

/* Bigger than SQLite's default page cache (2000 KiB): VACUUM INTO spills
   pages to the copy before it writes page 1 (the export bug). */
#define TEST_BIG_ROWS 1600
#define TEST_BIG_BLOB_BYTES 5000
#define TEST_BIG_SEED 0x9e3779b9u

/* Fills buf with the blob of row id: xorshift32 from a fixed seed, so
   every byte of every row can be checked after the copy. */
static void test_vfs_big_blob(unsigned char *buf, size_t size, int id)
{
	uint32_t x = TEST_BIG_SEED ^ (uint32_t)(id + 1) * 2654435761u;

	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (unsigned char)x;
	}
}

/* Inserts TEST_BIG_ROWS rows of TEST_BIG_BLOB_BYTES into table big. */
static int test_vfs_big_fill(sqlite3 *db)
{
	unsigned char blob[TEST_BIG_BLOB_BYTES];
	sqlite3_stmt *stmt = NULL;
	int rc;

	rc = test_cvfs_exec(db, "CREATE TABLE big(id INTEGER PRIMARY KEY, "
			    "blob BLOB); BEGIN");
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "INSERT INTO big VALUES(?1, ?2)",
					-1, &stmt, NULL);
	for (int i = 0; rc == SQLITE_OK && i < TEST_BIG_ROWS; i++) {
		test_vfs_big_blob(blob, sizeof(blob), i);
		sqlite3_bind_int(stmt, 1, i);
		sqlite3_bind_blob(stmt, 2, blob, sizeof(blob), SQLITE_STATIC);
		rc = sqlite3_step(stmt);
		if (rc == SQLITE_DONE)
			rc = sqlite3_reset(stmt);
	}
	sqlite3_finalize(stmt);
	if (rc == SQLITE_OK)
		rc = test_cvfs_exec(db, "COMMIT");
	return rc;
}

/* Checks that big holds exactly every row test_vfs_big_fill() wrote. */
static bool test_vfs_big_verify(sqlite3 *db)
{
	unsigned char expected[TEST_BIG_BLOB_BYTES];
	sqlite3_stmt *stmt;
	int n = 0;
	bool ok = true;

	if (sqlite3_prepare_v2(db, "SELECT id, blob FROM big ORDER BY id", -1,
			       &stmt, NULL) != SQLITE_OK)
		return false;
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		test_vfs_big_blob(expected, sizeof(expected), n);
		ok = ok && sqlite3_column_int(stmt, 0) == n &&
			sqlite3_column_bytes(stmt, 1) == sizeof(expected) &&
			memcmp(sqlite3_column_blob(stmt, 1), expected,
			       sizeof(expected)) == 0;
		n++;
	}
	ok = ok && sqlite3_finalize(stmt) == SQLITE_OK;
	return ok && n == TEST_BIG_ROWS;
}

/* Opens path with key and checks rows, integrity and page size. */
static bool test_vfs_big_check_copy(const char *path,
				    const unsigned char *key, int page_size)
{
	sqlite3_int64 ps = -1;
	sqlite3 *db;
	bool ok;

	if (cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE, key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK)
		return false;
	ok = test_vfs_big_verify(db) && test_vfs_integrity_ok(db) &&
		test_cvfs_int(db, "PRAGMA page_size", &ps) == SQLITE_OK &&
		ps == page_size;
	cvfs_close(&db);
	return ok;
}

struct test_vfs_big_case {
	int page_size;
	/* PRAGMA cache_size of the source, which VACUUM INTO gives the
	   copy: SQLite's default for 4 KiB pages; with 64 KiB pages the
	   default cache held the whole copy, so a smaller one makes the
	   copy spill before page 1 here too. */
	int cache_size;
};

static const struct test_vfs_big_case test_vfs_big_cases[] = {
	{ .page_size = 4096, .cache_size = -2000 },
	{ .page_size = 65536, .cache_size = -500 },
};

static void test_vfs_export_rekey_big(void)
{
	char path[TEST_CVFS_PATH_MAX], copy[TEST_CVFS_PATH_MAX], sql[128];
	struct cvfs_error err;
	sqlite3 *db = NULL;

	test_begin("vfs export and rekey of a database beyond the cache");
	for (unsigned int i = 0; i < N_ELEMENTS(test_vfs_big_cases); i++) {
		int page_size = test_vfs_big_cases[i].page_size;
		sqlite3 *other;

		snprintf(sql, sizeof(sql), "big-%d.db", page_size);
		test_cvfs_path(path, sql);
		snprintf(sql, sizeof(sql), "big-%d-copy.db", page_size);
		test_cvfs_path(copy, sql);
		test_cvfs_unlink_db(path);
		test_cvfs_unlink_db(copy);
		test_assert_idx(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC,
					     test_cvfs_key, CVFS_KEY_BYTES,
					     NULL) == SQLITE_OK, i);
		snprintf(sql, sizeof(sql), "PRAGMA page_size=%d; PRAGMA "
			 "cache_size=%d; PRAGMA journal_mode=WAL", page_size,
			 test_vfs_big_cases[i].cache_size);
		test_assert_idx(test_cvfs_exec(db, sql) == SQLITE_OK, i);
		test_assert_idx(test_vfs_big_fill(db) == SQLITE_OK, i);

		/* Under a new key, and under the same key and salt. */
		test_assert_idx(cvfs_export(db, copy, test_cvfs_key2,
					    CVFS_KEY_BYTES, &err) == SQLITE_OK,
				i);
		test_assert_idx(test_cvfs_file_size(copy) >
				TEST_BIG_ROWS * TEST_BIG_BLOB_BYTES, i);
		test_assert_idx(test_vfs_big_check_copy(copy, test_cvfs_key2,
							page_size), i);
		test_assert_idx(cvfs_open_v2(copy, &other,
					     SQLITE_OPEN_READWRITE,
					     test_cvfs_key, CVFS_KEY_BYTES,
					     NULL) == SQLITE_NOTADB, i);
		test_cvfs_unlink_db(copy);
		test_assert_idx(cvfs_export(db, copy, NULL, 0, &err) ==
				SQLITE_OK, i);
		test_assert_idx(test_vfs_big_check_copy(copy, test_cvfs_key,
							page_size), i);

		test_assert_idx(cvfs_rekey(&db, test_cvfs_key2,
					   CVFS_KEY_BYTES, &err) == SQLITE_OK,
				i);
		test_assert_idx(db != NULL && test_vfs_big_verify(db), i);
		cvfs_close(&db);
		test_assert_idx(test_vfs_big_check_copy(path, test_cvfs_key2,
							page_size), i);
		test_assert_idx(cvfs_open_v2(path, &other,
					     SQLITE_OPEN_READWRITE,
					     test_cvfs_key, CVFS_KEY_BYTES,
					     NULL) == SQLITE_NOTADB, i);
		test_cvfs_unlink_db(path);
		test_cvfs_unlink_db(copy);
	}
	test_end();
}

struct test_vfs_write_case {
	int amt;
	sqlite3_int64 offset;
	/* 0: no page-1 header; else the page size page 1 announces. */
	unsigned int header_page_size;
	int rc;
};

/* In order, on one new file: the page size comes from the first
   page-aligned power-of-two write, page 1 must agree with it, and
   anything else is still refused. */
static const struct test_vfs_write_case test_vfs_write_cases[] = {
	{ .amt = 100, .offset = 4096, .rc = SQLITE_IOERR_WRITE },
	{ .amt = 4096, .offset = 6144, .rc = SQLITE_IOERR_WRITE },
	{ .amt = 256, .offset = 4096, .rc = SQLITE_IOERR_WRITE },
	{ .amt = 4096, .offset = 8192, .rc = SQLITE_OK },
	{ .amt = 2048, .offset = 12288, .rc = SQLITE_IOERR_WRITE },
	{ .amt = 8192, .offset = 16384, .rc = SQLITE_IOERR_WRITE },
	{ .amt = 8192, .offset = 0, .header_page_size = 8192,
	  .rc = SQLITE_IOERR_WRITE },
	{ .amt = 4096, .offset = 0, .header_page_size = 4096,
	  .rc = SQLITE_OK },
	{ .amt = 4096, .offset = 4096, .rc = SQLITE_OK },
};

static void test_vfs_write_before_page1(void)
{
	unsigned char buf[8192];
	char path[TEST_CVFS_PATH_MAX];
	struct cvfs_file *f;
	sqlite3 *db;

	test_begin("vfs pages before page 1 set the page size, partial "
		   "writes refused");
	test_cvfs_path(path, "write-before-page1.db");
	test_cvfs_unlink_db(path);
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	f = cvfs_file_of_db(db, "main");
	test_assert(f != NULL && test_cvfs_file_size(path) == 0);
	for (unsigned int i = 0; f != NULL &&
	     i < N_ELEMENTS(test_vfs_write_cases); i++) {
		const struct test_vfs_write_case *c = &test_vfs_write_cases[i];
		sqlite3_int64 size = test_cvfs_file_size(path);

		memset(buf, 'P', sizeof(buf));
		memcpy(buf, TEST_MARKER, strlen(TEST_MARKER));
		if (c->header_page_size != 0) {
			buf[16] = c->header_page_size >> 8;
			buf[17] = c->header_page_size & 0xff;
			buf[20] = CVFS_RESERVED_BYTES;
		}
		test_assert_idx(f->base.pMethods->xWrite(&f->base, buf, c->amt,
							 c->offset) == c->rc,
				i);
		if (c->rc != SQLITE_OK)
			test_assert_idx(test_cvfs_file_size(path) == size, i);
	}
	test_assert(test_cvfs_file_size(path) == 3 * 4096);
	test_assert(!test_cvfs_file_contains(path, TEST_MARKER));
	cvfs_close(&db);
	test_end();
}

static void test_vfs_temp_files(void)
{
	char path[TEST_CVFS_PATH_MAX];
	sqlite3_int64 n = -1;
	sqlite3 *db;

	/* temp_store=FILE and a tiny cache force a spilling sort and a
	   temp table through the (encrypted) temp-file path. */
	test_begin("vfs temp files round trip");
	test_cvfs_path(path, "temp.db");
	test_cvfs_unlink_db(path);
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_vfs_fill(db, 0, 2000) == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "PRAGMA temp_store=FILE; "
				   "PRAGMA cache_size=5") == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "CREATE TEMP TABLE x AS SELECT id, "
				   "body || randomblob(500) AS b FROM t") ==
		    SQLITE_OK);
	test_assert(test_cvfs_int(db, "SELECT count(*) FROM (SELECT b FROM "
				  "x ORDER BY b)", &n) == SQLITE_OK &&
		    n == 2000);
	test_assert(test_cvfs_int(db, "SELECT sum(id) FROM x", &n) ==
		    SQLITE_OK && n == 1999 * 2000 / 2);
	cvfs_close(&db);
	test_end();
}

#define TEST_CKPT_PAGE 4096
#define TEST_CKPT_BLOB 40000
#define TEST_CKPT_FRAME (CVFS_WAL_FRAME_HEADER_BYTES + TEST_CKPT_PAGE)

/* Returns whether every WAL frame's page sits verbatim in main at its
   page number (the last frame of a page wins); *frames_r counts them. */
static bool test_vfs_frames_in_main(const unsigned char *wal, size_t wal_size,
				    const unsigned char *main, size_t main_size,
				    unsigned int *frames_r)
{
	bool all = true;

	*frames_r = 0;
	for (size_t at = CVFS_WAL_HEADER_BYTES; at + TEST_CKPT_FRAME <= wal_size;
	     at += TEST_CKPT_FRAME) {
		uint32_t pgno = cvfs_get_be32(wal + at);
		size_t off = (size_t)(pgno - 1) * TEST_CKPT_PAGE;
		bool later = false;

		for (size_t j = at + TEST_CKPT_FRAME;
		     j + TEST_CKPT_FRAME <= wal_size; j += TEST_CKPT_FRAME)
			later = later || cvfs_get_be32(wal + j) == pgno;
		if (later)
			continue;
		(*frames_r)++;
		all = all && off + TEST_CKPT_PAGE <= main_size &&
			memcmp(main + off, wal + at + CVFS_WAL_FRAME_HEADER_BYTES,
			       TEST_CKPT_PAGE) == 0;
	}
	return all;
}

static int test_vfs_blob_ok(sqlite3 *db)
{
	sqlite3_int64 n = -1;
	int rc = test_cvfs_int(db, "SELECT count(*) FROM b WHERE data = "
			       "CAST(printf('%.*c', 40000, 'q') AS BLOB)", &n);

	return rc != SQLITE_OK ? rc : (n == 1 ? SQLITE_OK : SQLITE_ERROR);
}

static void test_vfs_checkpoint_overflow(void)
{
	char path[TEST_CVFS_PATH_MAX], wal_path[TEST_CVFS_PATH_MAX + 8];
	char copy[TEST_CVFS_PATH_MAX], copy_wal[TEST_CVFS_PATH_MAX + 8];
	unsigned char *wal, *main;
	size_t wal_size, main_size, last;
	unsigned int frames;
	uint32_t pgno;
	sqlite3 *db;
	int log_n, ckpt_n;

	test_begin("vfs checkpoint copies verified WAL ciphertext, "
		   "overflow reads authenticate");
	test_cvfs_path(path, "ckpt.db");
	test_cvfs_path(copy, "ckpt-copy.db");
	snprintf(wal_path, sizeof(wal_path), "%s-wal", path);
	snprintf(copy_wal, sizeof(copy_wal), "%s-wal", copy);
	test_cvfs_unlink_db(path);
	test_cvfs_unlink_db(copy);
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "PRAGMA journal_mode=WAL; "
				   "PRAGMA wal_autocheckpoint=0; "
				   "CREATE TABLE b(id INTEGER PRIMARY KEY, "
				   "data BLOB); INSERT INTO b VALUES(1, "
				   "CAST(printf('%.*c', 40000, 'q') AS BLOB))") ==
		    SQLITE_OK);
	wal = test_cvfs_read_file(wal_path, &wal_size);
	test_assert(wal != NULL && wal_size > TEST_CKPT_BLOB);
	test_assert(test_cvfs_copy_file(path, copy) == 0 &&
		    test_cvfs_copy_file(wal_path, copy_wal) == 0);
	test_assert(sqlite3_wal_checkpoint_v2(db, "main",
					      SQLITE_CHECKPOINT_PASSIVE,
					      &log_n, &ckpt_n) == SQLITE_OK &&
		    log_n > 10 && ckpt_n == log_n);
	main = test_cvfs_read_file(path, &main_size);
	test_assert(main != NULL && wal != NULL &&
		    test_vfs_frames_in_main(wal, wal_size, main, main_size,
					    &frames) && frames > 10);
	cvfs_close(&db);

	/* No WAL now: SQLite reads the overflow pages directly. */
	test_assert(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key, CVFS_KEY_BYTES,
				 NULL) == SQLITE_OK);
	test_assert(test_vfs_blob_ok(db) == SQLITE_OK);
	cvfs_close(&db);
	free(main);
	main = test_cvfs_read_file(path, &main_size);
	test_assert(main != NULL && main_size > TEST_CKPT_BLOB);
	if (main != NULL) {
		/* The last page is an overflow page of the blob. */
		main[main_size - TEST_CKPT_PAGE / 2] ^= 0x01;
		test_assert(test_cvfs_write_file(path, main, main_size) == 0);
	}
	test_assert(cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key, CVFS_KEY_BYTES,
				 NULL) == SQLITE_OK);
	test_assert(test_vfs_blob_ok(db) == SQLITE_CORRUPT);
	cvfs_close(&db);

	/* A frame damaged after recovery is caught by the checkpoint's
	   tag check and never reaches the main file. */
	test_assert(cvfs_open_v2(copy, &db, SQLITE_OPEN_READWRITE,
				 test_cvfs_key, CVFS_KEY_BYTES,
				 NULL) == SQLITE_OK);
	last = wal == NULL ? 0 : CVFS_WAL_HEADER_BYTES +
		((wal_size - CVFS_WAL_HEADER_BYTES) / TEST_CKPT_FRAME - 2) *
		TEST_CKPT_FRAME;
	pgno = wal == NULL ? 0 : cvfs_get_be32(wal + last);
	if (wal != NULL) {
		wal[last + CVFS_WAL_FRAME_HEADER_BYTES + 100] ^= 0x01;
		test_assert(test_cvfs_write_file(copy_wal, wal, wal_size) == 0);
	}
	test_assert((sqlite3_wal_checkpoint_v2(db, "main",
					       SQLITE_CHECKPOINT_PASSIVE,
					       NULL, NULL) & 0xff) ==
		    SQLITE_CORRUPT);
	cvfs_close(&db);
	free(main);
	main = test_cvfs_read_file(copy, &main_size);
	test_assert(main != NULL && wal != NULL && pgno > 1 &&
		    ((size_t)pgno * TEST_CKPT_PAGE > main_size ||
		     memcmp(main + (size_t)(pgno - 1) * TEST_CKPT_PAGE,
			    wal + last + CVFS_WAL_FRAME_HEADER_BYTES,
			    TEST_CKPT_PAGE) != 0));
	free(main);
	free(wal);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_vfs_round_trip_modes,
		test_vfs_no_plaintext_live,
		test_vfs_wrong_key,
		test_vfs_passphrase,
		test_vfs_empty_file,
		test_vfs_attach_needs_key,
		test_vfs_export,
		test_vfs_rekey,
		test_vfs_export_rekey_big,
		test_vfs_write_before_page1,
		test_vfs_temp_files,
		test_vfs_checkpoint_overflow,
		NULL
	};

	return test_cvfs_run(cases);
}
