/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* libFuzzer target over the hostile-input paths of cryptvfs: page-1
   header parse, page authentication/decryption (every page size, page
   number and counter), legacy-WAL checks, and whole files opened through
   the VFS. Built and run by tests/cryptvfs/fuzz.sh with
   clang -fsanitize=fuzzer,address,undefined. Invariants checked: a page
   that fails authentication leaves the output all zeros; a page is
   accepted only if it is bit-for-bit what we encrypted; an open of a
   fuzzed file never succeeds in reading a forged schema. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cryptvfs-private.h"

#define FUZZ_MAX_PAGE 65536

static const unsigned char fuzz_key[CVFS_KEY_BYTES] = { 0x42 };
static char fuzz_path[64];

static void fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz-page: invariant broken: %s\n", what);
	abort();
}

static bool fuzz_all_zero(const unsigned char *p, size_t n)
{
	unsigned char acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

/* Mode 0: raw bytes as a page of the size their header claims. */
static void fuzz_decrypt_raw(const uint8_t *data, size_t size)
{
	static unsigned char in[FUZZ_MAX_PAGE], out[FUZZ_MAX_PAGE];
	unsigned int page_size, reserve;
	uint32_t pgno;

	if (size < 5)
		return;
	page_size = 512 << (data[0] % 8);
	pgno = (uint32_t)data[1] | (uint32_t)data[2] << 8 |
		(uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
	if (pgno == 0)
		pgno = 1;
	data += 5;
	size -= 5;
	memset(in, 0, page_size);
	memcpy(in, data, size < page_size ? size : page_size);
	if (size >= CVFS_PAGE1_PLAIN_END)
		(void)cvfs_header_parse(&page_size, &reserve, in);
	if (cvfs_page_decrypt(out, NULL, in, page_size, pgno, fuzz_key) == 0)
		fuzz_fail("a forged page authenticated");
	if (!fuzz_all_zero(out, page_size))
		fuzz_fail("output not zeroed after a failed tag");
}

/* Mode 1: encrypt the input as a page, apply the input's edits, decrypt:
   accepted iff no edit changed a byte, and then equal to the input. */
static void fuzz_round_trip(const uint8_t *data, size_t size)
{
	static unsigned char plain[FUZZ_MAX_PAGE], page[FUZZ_MAX_PAGE],
		orig[FUZZ_MAX_PAGE], out[FUZZ_MAX_PAGE];
	unsigned char salt[CVFS_SALT_BYTES] = { 7 };
	unsigned int page_size;
	uint32_t pgno;
	unsigned int edits;
	bool changed = false;
	int ret;

	if (size < 8)
		return;
	page_size = 512 << (data[0] % 8);
	pgno = data[1] % 3 == 0 ? 1 : (uint32_t)data[2] << 24 | data[3];
	if (pgno == 0)
		pgno = 2;
	edits = data[4] % 4;
	data += 5;
	size -= 5;
	memset(plain, 0, page_size);
	memcpy(plain, data, size < page_size ? size : page_size);
	cvfs_page_encrypt(page, plain, page_size, pgno, salt, fuzz_key);
	memcpy(orig, page, page_size);
	for (unsigned int i = 0; i < edits && size >= 3 * (i + 1); i++) {
		size_t at = ((size_t)data[3 * i] << 8 | data[3 * i + 1]) %
			page_size;

		page[at] ^= data[3 * i + 2];
	}
	/* Edits may cancel out: compare the result. */
	changed = memcmp(orig, page, page_size) != 0;
	ret = cvfs_page_decrypt(out, NULL, page, page_size, pgno, fuzz_key);
	if (changed && ret == 0)
		fuzz_fail("an edited page authenticated");
	if (!changed && ret != 0)
		fuzz_fail("an intact page failed");
	if (ret == 0 && memcmp(out + (pgno == 1 ? CVFS_SALT_BYTES : 0),
			       plain + (pgno == 1 ? CVFS_SALT_BYTES : 0),
			       page_size - CVFS_RESERVED_BYTES -
			       (pgno == 1 ? CVFS_SALT_BYTES : 0)) != 0)
		fuzz_fail("round trip changed the page");
	if (ret != 0 && !fuzz_all_zero(out, page_size))
		fuzz_fail("output not zeroed after a failed tag");
}

/* Mode 2: the input is a database file (and maybe a WAL) opened through
   the whole VFS: header read, geometry, partial reads, WAL recovery. */
static void fuzz_open_file(const uint8_t *data, size_t size)
{
	char wal[80];
	size_t split = size < 2 ? 0 : ((size_t)data[0] << 8 | data[1]) % size;
	sqlite3 *db;
	FILE *fp;
	int rc;

	snprintf(wal, sizeof(wal), "%s-wal", fuzz_path);
	unlink(fuzz_path);
	unlink(wal);
	fp = fopen(fuzz_path, "wb");
	if (fp == NULL)
		return;
	fwrite(data, 1, split, fp);
	fclose(fp);
	if (split < size && (fp = fopen(wal, "wb")) != NULL) {
		fwrite(data + split, 1, size - split, fp);
		fclose(fp);
	}
	rc = cvfs_open_v2(fuzz_path, &db, SQLITE_OPEN_READWRITE, fuzz_key,
			  CVFS_KEY_BYTES, NULL);
	if (rc == SQLITE_OK) {
		/* Only an empty (new) database can open: nothing forged
		   can have a schema. */
		sqlite3_stmt *stmt;

		if (sqlite3_prepare_v2(db, "SELECT count(*) FROM "
				       "sqlite_schema", -1, &stmt,
				       NULL) == SQLITE_OK) {
			if (sqlite3_step(stmt) == SQLITE_ROW &&
			    sqlite3_column_int(stmt, 0) != 0)
				fuzz_fail("a forged file has a schema");
			sqlite3_finalize(stmt);
		}
		cvfs_close(&db);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc ATTR_UNUSED, char ***argv ATTR_UNUSED)
{
	const char *tmp = getenv("TMPDIR");

	if (sodium_init() < 0 || cvfs_register() != SQLITE_OK)
		abort();
	snprintf(fuzz_path, sizeof(fuzz_path), "%.40s/cvfs-fuzz-%d.db",
		 tmp != NULL && *tmp != '\0' ? tmp : "/tmp", (int)getpid());
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
		fuzz_decrypt_raw(data + 1, size - 1);
		break;
	case 1:
		fuzz_round_trip(data + 1, size - 1);
		break;
	default:
		fuzz_open_file(data + 1, size - 1);
		break;
	}
	return 0;
}
