/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef TEST_KEYRING_H
#define TEST_KEYRING_H

/* Helpers shared by the libkeyring unit tests: scratch directories and
   whole-file I/O.  Included after tap.h. */

#include "keyring-private.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_ELEMENTS(arr) (sizeof(arr) / sizeof((arr)[0]))

/* Argon2id's minimums keep the slot tests fast; test_slot_default_params
   covers kr_pwhash_default. */
static const struct kr_pwhash_params test_params_fast = {
	.opslimit = crypto_pwhash_argon2id_OPSLIMIT_MIN,
	.memlimit = crypto_pwhash_argon2id_MEMLIMIT_MIN,
};

static inline void test_tmpdir_create(char dir_r[PATH_MAX])
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir_r, PATH_MAX, "%s/test-keyring.XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(dir_r) == NULL) {
		perror("mkdtemp");
		exit(99);
	}
}

/* Number of entries in dir, "." and ".." not counted. */
static inline unsigned int test_dir_count(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned int count = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			count++;
	}
	closedir(d);
	return count;
}

/* Removes dir and what it holds, one level of subdirectories deep. */
static inline void test_tmpdir_remove(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[PATH_MAX];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir,
			     de->d_name) >= (int)sizeof(path))
			continue;
		if (unlink(path) < 0 && (errno == EISDIR || errno == EPERM))
			test_tmpdir_remove(path);
	}
	closedir(d);
	(void)rmdir(dir);
}

/* Reads a whole file into a malloc'd buffer; NULL if it cannot. */
static inline unsigned char *test_file_read(const char *path, size_t *size_r)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long size;

	*size_r = 0;
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) < 0) {
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t)size + 1);
	if (buf != NULL && fread(buf, 1, (size_t)size, f) != (size_t)size) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*size_r = (size_t)size;
	return buf;
}

static inline int test_file_write(const char *path, const void *data,
				  size_t size)
{
	FILE *f = fopen(path, "wb");
	int ret = 0;

	if (f == NULL)
		return -1;
	if (fwrite(data, 1, size, f) != size)
		ret = -1;
	if (fclose(f) != 0)
		ret = -1;
	return ret;
}

static inline bool test_file_equals(const char *path, const void *data,
				    size_t size)
{
	size_t file_size;
	unsigned char *buf = test_file_read(path, &file_size);
	bool equal = buf != NULL && file_size == size &&
		memcmp(buf, data, size) == 0;

	free(buf);
	return equal;
}

static inline bool test_keys_equal(const struct kr_keys *a,
				   const struct kr_keys *b)
{
	return a != NULL && b != NULL && memcmp(a, b, sizeof(*a)) == 0;
}

#endif
