/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef TEST_CRYPTVFS_COMMON_H
#define TEST_CRYPTVFS_COMMON_H

/* Helpers shared by the cryptvfs unit tests: scratch directories, whole
   file I/O and small SQL wrappers. Test code only. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tap.h"
#include "cryptvfs.h"

#define TEST_CVFS_OPEN_RWC (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
#define TEST_CVFS_PATH_MAX 512
#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

static const unsigned char test_cvfs_key[CVFS_KEY_BYTES] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
	0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};
static const unsigned char test_cvfs_key2[CVFS_KEY_BYTES] = {
	0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87,
	0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f,
	0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87,
	0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f,
};

static char test_cvfs_dir[TEST_CVFS_PATH_MAX / 2];

/* Creates a fresh scratch directory under TMPDIR (or /tmp). */
static inline void test_cvfs_dir_init(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(test_cvfs_dir, sizeof(test_cvfs_dir), "%s/cryptvfs-XXXXXX",
		 base != NULL && *base != '\0' ? base : "/tmp");
	if (mkdtemp(test_cvfs_dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
}

static inline void test_cvfs_dir_cleanup(void)
{
	char cmd[TEST_CVFS_PATH_MAX + 16];

	if (getenv("CVFS_KEEP_TMP") != NULL)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_cvfs_dir);
	if (system(cmd) != 0)
		test_diag("could not remove %s", test_cvfs_dir);
}

/* main() of a cryptvfs test: the cases in a fresh scratch directory,
   removed afterwards. */
static inline int test_cvfs_run(void (*const cases[])(void))
{
	int ret;

	test_cvfs_dir_init();
	ret = test_run(cases);
	test_cvfs_dir_cleanup();
	return ret;
}

/* path_r = <scratch dir>/<name> */
static inline const char *test_cvfs_path(char *path_r, const char *name)
{
	snprintf(path_r, TEST_CVFS_PATH_MAX, "%.200s/%.200s", test_cvfs_dir,
		 name);
	return path_r;
}

/* Reads a whole file; returns malloc'd bytes (NULL if missing). */
static inline unsigned char *test_cvfs_read_file(const char *path,
						 size_t *size_r)
{
	struct stat st;
	unsigned char *buf;
	FILE *fp = fopen(path, "rb");

	*size_r = 0;
	if (fp == NULL)
		return NULL;
	if (fstat(fileno(fp), &st) < 0) {
		fclose(fp);
		return NULL;
	}
	buf = malloc(st.st_size + 1);
	if (buf == NULL || fread(buf, 1, st.st_size, fp) !=
	    (size_t)st.st_size) {
		free(buf);
		fclose(fp);
		return NULL;
	}
	fclose(fp);
	*size_r = st.st_size;
	return buf;
}

static inline int test_cvfs_write_file(const char *path,
				       const unsigned char *data, size_t size)
{
	FILE *fp = fopen(path, "wb");
	int ret = 0;

	if (fp == NULL)
		return -1;
	if (size > 0 && fwrite(data, 1, size, fp) != size)
		ret = -1;
	if (fclose(fp) != 0)
		ret = -1;
	return ret;
}

static inline int test_cvfs_copy_file(const char *src, const char *dst)
{
	size_t size;
	unsigned char *data = test_cvfs_read_file(src, &size);
	int ret;

	if (data == NULL)
		return -1;
	ret = test_cvfs_write_file(dst, data, size);
	free(data);
	return ret;
}

/* Removes a database and its companions. */
static inline void test_cvfs_unlink_db(const char *path)
{
	static const char *const suffixes[] = {
		"", "-wal", "-shm", "-journal", NULL
	};
	char p[TEST_CVFS_PATH_MAX + 16];

	for (unsigned int i = 0; suffixes[i] != NULL; i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		(void)unlink(p);
	}
}

static inline int test_cvfs_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK && getenv("CVFS_TEST_VERBOSE") != NULL)
		test_diag("exec '%s': %s", sql, msg);
	sqlite3_free(msg);
	return rc;
}

/* Runs a query returning one integer; returns the primary rc. */
static inline int test_cvfs_int(sqlite3 *db, const char *sql,
				sqlite3_int64 *value_r)
{
	sqlite3_stmt *stmt;
	int rc;

	*value_r = -1;
	rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
	if (rc != SQLITE_OK)
		return rc & 0xff;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*value_r = sqlite3_column_int64(stmt, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(stmt);
	return rc & 0xff;
}

/* Returns whether needle occurs in the file (0 when the file is absent). */
static inline int test_cvfs_file_contains(const char *path,
					  const char *needle)
{
	size_t size, nlen = strlen(needle);
	unsigned char *data = test_cvfs_read_file(path, &size);
	int found = 0;

	if (data == NULL)
		return 0;
	for (size_t i = 0; !found && i + nlen <= size; i++)
		found = memcmp(data + i, needle, nlen) == 0;
	free(data);
	return found;
}

static inline sqlite3_int64 test_cvfs_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : st.st_size;
}

#endif
