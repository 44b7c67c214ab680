/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Files written by SQLite3MultipleCiphers 2.3.5 (and by another libsodium
   implementation of its format) open and read here: tests/vectors/sqlite3mc. */

#include <stdint.h>

#include "test-cryptvfs-common.h"
#include "cryptvfs-private.h"

#define TEST_VECTOR_PASS "correct horse battery staple"
#define TEST_VECTOR_PASS_LIBSODIUM "new pass"

struct test_vector {
	const char *file;
	bool has_wal;
	const char *passphrase;
	/* Rows in the first user table; -1: just more than zero. */
	sqlite3_int64 rows;
};

static const struct test_vector test_vectors[] = {
	{ "sqlite3mc-2.3.5_chacha20_default.db", false,
	  TEST_VECTOR_PASS, 200 },
	{ "sqlite3mc-2.3.5_wal_main.db", true, TEST_VECTOR_PASS, 2 },
	{ "sqlite3mc-2.3.5_legacywal_main.db", true, TEST_VECTOR_PASS, 2 },
	{ "libsodium-impl_encrypted_readable_by_sqlite3mc.db", false,
	  TEST_VECTOR_PASS_LIBSODIUM, 201 },
};

/* Copies a vector (and its -wal) into the scratch dir: recovery writes. */
static const char *test_vector_stage(char *path_r,
				     const struct test_vector *v)
{
	char src[TEST_CVFS_PATH_MAX], wal_src[TEST_CVFS_PATH_MAX + 8];
	char wal_dst[TEST_CVFS_PATH_MAX + 8];

	snprintf(src, sizeof(src), "%s/%s", CVFS_VECTOR_DIR, v->file);
	test_cvfs_path(path_r, v->file);
	test_cvfs_unlink_db(path_r);
	if (test_cvfs_copy_file(src, path_r) < 0)
		test_diag("cannot copy %s", src);
	if (v->has_wal) {
		snprintf(wal_src, sizeof(wal_src), "%s-wal", src);
		snprintf(wal_dst, sizeof(wal_dst), "%s-wal", path_r);
		if (test_cvfs_copy_file(wal_src, wal_dst) < 0)
			test_diag("cannot copy %s", wal_src);
	}
	return path_r;
}

/* Counts the rows of the first user table and checks integrity. */
static int test_vector_check(sqlite3 *db, sqlite3_int64 *rows_r,
			     char *table_r, size_t table_size)
{
	sqlite3_stmt *stmt;
	sqlite3_int64 ok;
	char sql[300];
	int rc;

	*rows_r = -1;
	table_r[0] = '\0';
	rc = sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE "
				"type='table' ORDER BY rowid LIMIT 1", -1,
				&stmt, NULL);
	if (rc != SQLITE_OK)
		return rc;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		snprintf(table_r, table_size, "%s",
			 (const char *)sqlite3_column_text(stmt, 0));
	sqlite3_finalize(stmt);
	if (table_r[0] == '\0')
		return SQLITE_EMPTY;
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"", table_r);
	rc = test_cvfs_int(db, sql, rows_r);
	if (rc != SQLITE_OK)
		return rc;
	rc = test_cvfs_int(db, "SELECT \"ok\" = (SELECT integrity_check FROM "
			   "pragma_integrity_check)", &ok);
	return rc != SQLITE_OK ? rc : ok == 1 ? SQLITE_OK : SQLITE_CORRUPT;
}

static void test_vectors_open_passphrase(void)
{
	char path[TEST_CVFS_PATH_MAX], table[128];

	test_begin("vectors open with passphrase");
	for (unsigned int i = 0; i < N_ELEMENTS(test_vectors); i++) {
		const struct test_vector *v = &test_vectors[i];
		struct cvfs_error err;
		sqlite3_int64 rows;
		sqlite3 *db;
		int rc;

		rc = cvfs_open_passphrase(test_vector_stage(path, v), &db,
					  SQLITE_OPEN_READWRITE, v->passphrase,
					  strlen(v->passphrase), &err);
		test_assert_idx(rc == SQLITE_OK, i);
		if (rc != SQLITE_OK) {
			test_diag("%s: %s", v->file, err.text);
			continue;
		}
		rc = test_vector_check(db, &rows, table, sizeof(table));
		test_assert_idx(rc == SQLITE_OK, i);
		test_diag("%s: table %s, %lld rows", v->file, table,
			  (long long)rows);
		if (v->rows >= 0)
			test_assert_idx(rows == v->rows, i);
		else
			test_assert_idx(rows > 0, i);
		cvfs_close(&db);
		test_assert_idx(db == NULL, i);
	}
	test_end();
}

static void test_vectors_wrong_passphrase(void)
{
	char path[TEST_CVFS_PATH_MAX];

	test_begin("vectors wrong passphrase is NOTADB");
	for (unsigned int i = 0; i < N_ELEMENTS(test_vectors); i++) {
		struct cvfs_error err;
		sqlite3 *db = NULL;
		int rc;

		rc = cvfs_open_passphrase(test_vector_stage(path,
							    &test_vectors[i]),
					  &db, SQLITE_OPEN_READWRITE,
					  "correct horse battery stapler",
					  strlen("correct horse battery stapler"),
					  &err);
		test_assert_idx(rc == SQLITE_NOTADB, i);
		test_assert_idx(err.rc == SQLITE_NOTADB, i);
		test_assert_idx(db == NULL, i);
		/* The vector must be untouched by the failed open. */
		test_assert_idx(strstr(err.text, "correct horse") == NULL, i);
	}
	test_end();
}

static void test_vectors_open_raw(void)
{
	char path[TEST_CVFS_PATH_MAX], table[128];

	/* The passphrase key is PBKDF2(passphrase, file salt): the same
	   key given raw opens the file too, as "raw:<hex>" does in
	   sqlite3mc. */
	test_begin("vectors open with the derived raw key");
	for (unsigned int i = 0; i < N_ELEMENTS(test_vectors); i++) {
		const struct test_vector *v = &test_vectors[i];
		unsigned char salt[CVFS_SALT_BYTES], key[CVFS_KEY_BYTES];
		unsigned char *data;
		size_t size;
		sqlite3_int64 rows;
		sqlite3 *db;
		int rc;

		data = test_cvfs_read_file(test_vector_stage(path, v), &size);
		test_assert_idx(data != NULL && size >= sizeof(salt), i);
		if (data == NULL || size < sizeof(salt)) {
			free(data);
			continue;
		}
		memcpy(salt, data, sizeof(salt));
		free(data);
		cvfs_pbkdf2_sha256(key, sizeof(key),
				   (const unsigned char *)v->passphrase,
				   strlen(v->passphrase), salt, sizeof(salt),
				   CVFS_KDF_ITERATIONS);
		rc = cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE, key,
				  sizeof(key), NULL);
		test_assert_idx(rc == SQLITE_OK, i);
		if (rc != SQLITE_OK)
			continue;
		rc = test_vector_check(db, &rows, table, sizeof(table));
		test_assert_idx(rc == SQLITE_OK && rows > 0, i);
		cvfs_close(&db);
	}
	test_end();
}

static void test_vectors_use_libsodium(void)
{
	test_begin("vectors with libsodium");
	(void)cvfs_cipher_set_evp_after(SIZE_MAX);
	test_assert_strcmp(cvfs_cipher_backend(), "libsodium");
	test_end();
}

static void test_vectors_use_openssl(void)
{
	test_begin("vectors with OpenSSL's EVP, when built with it");
	(void)cvfs_cipher_set_evp_after(0);
#ifdef CVFS_HAVE_OPENSSL
	test_assert_strcmp(cvfs_cipher_backend(), "openssl");
#else
	test_assert_strcmp(cvfs_cipher_backend(), "libsodium");
#endif
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_vectors_use_libsodium,
		test_vectors_open_passphrase,
		test_vectors_wrong_passphrase,
		test_vectors_open_raw,
		test_vectors_use_openssl,
		test_vectors_open_passphrase,
		test_vectors_wrong_passphrase,
		test_vectors_open_raw,
		NULL
	};

	return test_cvfs_run(cases);
}
