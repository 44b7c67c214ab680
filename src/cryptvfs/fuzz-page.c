/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* libFuzzer target over the hostile-input paths of cryptvfs: page-1
   header parse, page authentication/decryption (every page size, page
   number and counter), legacy-WAL checks, and whole files opened through
   the VFS. Built and run by tests/cryptvfs/fuzz.sh with
   clang -fsanitize=fuzzer,address,undefined. Invariants checked: a page
   that fails authentication leaves the output all zeros; a page is
   accepted only if it is bit-for-bit what we encrypted; an open of a
   fuzzed file never succeeds in reading a forged schema; a legacy WAL of
   authentic frames (built at start) is recovered whole when the input
   leaves it intact, and survives any edits of the input without a crash. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cryptvfs-private.h"

#define FUZZ_MAX_PAGE 65536

#define FUZZ_LEGACY_TXNS 20
#define FUZZ_LEGACY_EDITS 8

static const unsigned char fuzz_key[CVFS_KEY_BYTES] = { 0x42 };
static char fuzz_path[64];
/* A crash image whose WAL is in sqlite3mc's legacy form. */
static unsigned char *fuzz_legacy_main, *fuzz_legacy_wal;
static size_t fuzz_legacy_main_size, fuzz_legacy_wal_size;

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

/* Modes 3, 4: the input is a database file (and maybe a WAL) opened through
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

static unsigned char *fuzz_read_file(const char *path, size_t *size_r)
{
	unsigned char *buf = NULL;
	FILE *fp = fopen(path, "rb");
	long size;

	if (fp != NULL && fseek(fp, 0, SEEK_END) == 0 &&
	    (size = ftell(fp)) > 0 && fseek(fp, 0, SEEK_SET) == 0 &&
	    (buf = malloc(size)) != NULL &&
	    fread(buf, 1, size, fp) == (size_t)size)
		*size_r = size;
	else {
		free(buf);
		buf = NULL;
	}
	if (fp != NULL)
		fclose(fp);
	return buf;
}

static void fuzz_write_files(const unsigned char *main, size_t main_size,
			     const unsigned char *wal, size_t wal_size)
{
	char wal_path[80];
	FILE *fp;

	snprintf(wal_path, sizeof(wal_path), "%s-wal", fuzz_path);
	unlink(fuzz_path);
	unlink(wal_path);
	if ((fp = fopen(fuzz_path, "wb")) != NULL) {
		fwrite(main, 1, main_size, fp);
		fclose(fp);
	}
	if (wal_size > 0 && (fp = fopen(wal_path, "wb")) != NULL) {
		fwrite(wal, 1, wal_size, fp);
		fclose(fp);
	}
}

/* Rewrites a WAL as sqlite3mc's legacy mode writes it: checksums over the
   plaintext with the nonce and tag of the copy of the page the writer's
   cache held, here the page's first frame (or the main file, or zeros). */
static void fuzz_legacy_convert(unsigned char *wal, size_t wal_size,
				const unsigned char *main, size_t main_size)
{
	static const unsigned char zeros[CVFS_RESERVED_BYTES];
	static unsigned char plain[FUZZ_MAX_PAGE];
	size_t ps = cvfs_get_be32(wal + 8);
	size_t frame_size = ps + CVFS_WAL_FRAME_HEADER_BYTES;
	uint32_t sum[2] = { cvfs_get_be32(wal + 24), cvfs_get_be32(wal + 28) };

	for (size_t at = CVFS_WAL_HEADER_BYTES; at + frame_size <= wal_size;
	     at += frame_size) {
		unsigned char *fr = wal + at;
		uint32_t pgno = cvfs_get_be32(fr);
		const unsigned char *held = NULL;

		if (cvfs_page_decrypt(plain, NULL, fr +
				      CVFS_WAL_FRAME_HEADER_BYTES, ps, pgno,
				      fuzz_key) < 0)
			abort();
		for (size_t j = CVFS_WAL_HEADER_BYTES; j < at && held == NULL;
		     j += frame_size) {
			if (cvfs_get_be32(wal + j) == pgno)
				held = wal + j + frame_size -
					CVFS_RESERVED_BYTES;
		}
		if (held == NULL)
			held = (size_t)pgno * ps <= main_size ?
				main + (size_t)pgno * ps - CVFS_RESERVED_BYTES :
				zeros;
		memcpy(plain + ps - CVFS_RESERVED_BYTES, held,
		       CVFS_RESERVED_BYTES);
		cvfs_wal_checksum(sum, fr, 8, (cvfs_get_be32(wal) & 1) != 0);
		cvfs_wal_checksum(sum, plain, ps, (cvfs_get_be32(wal) & 1) != 0);
		cvfs_put_be32(fr + CVFS_WAL_CKSUM_OFFSET, sum[0]);
		cvfs_put_be32(fr + CVFS_WAL_CKSUM_OFFSET + 4, sum[1]);
	}
}

/* Builds the legacy crash image: a page of k rewritten by every one of
   FUZZ_LEGACY_TXNS transactions, 1 KiB pages to keep runs fast. */
static void fuzz_legacy_init(void)
{
	char wal_path[80], sql[128];
	sqlite3 *db;

	snprintf(wal_path, sizeof(wal_path), "%s-wal", fuzz_path);
	unlink(fuzz_path);
	unlink(wal_path);
	if (cvfs_open_v2(fuzz_path, &db, SQLITE_OPEN_READWRITE |
			 SQLITE_OPEN_CREATE, fuzz_key, CVFS_KEY_BYTES,
			 NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA page_size=1024; PRAGMA journal_mode=WAL;"
			 "PRAGMA wal_autocheckpoint=0; CREATE TABLE k(id "
			 "INTEGER PRIMARY KEY, v INTEGER); INSERT INTO k "
			 "VALUES(1, 0); CREATE TABLE t(id INTEGER PRIMARY KEY, "
			 "pad BLOB)", NULL, NULL, NULL) != SQLITE_OK)
		abort();
	for (int i = 0; i < FUZZ_LEGACY_TXNS; i++) {
		snprintf(sql, sizeof(sql), "BEGIN; INSERT INTO t VALUES(%d, "
			 "zeroblob(600)); UPDATE k SET v = v + 1; COMMIT", i);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
			abort();
	}
	/* Taken while the connection is open: a crash image. */
	fuzz_legacy_main = fuzz_read_file(fuzz_path, &fuzz_legacy_main_size);
	fuzz_legacy_wal = fuzz_read_file(wal_path, &fuzz_legacy_wal_size);
	cvfs_close(&db);
	if (fuzz_legacy_main == NULL || fuzz_legacy_wal == NULL)
		abort();
	fuzz_legacy_convert(fuzz_legacy_wal, fuzz_legacy_wal_size,
			    fuzz_legacy_main, fuzz_legacy_main_size);
}

/* Mode 2: the legacy crash image with the input's byte edits in its WAL,
   recovered through the VFS. Intact, it must come back whole. */
static void fuzz_legacy_wal_open(const uint8_t *data, size_t size)
{
	static unsigned char wal[1 << 20];
	size_t wal_size = fuzz_legacy_wal_size;
	sqlite3_int64 rows = -1;
	sqlite3_stmt *stmt;
	bool changed;
	sqlite3 *db;

	if (wal_size > sizeof(wal))
		abort();
	memcpy(wal, fuzz_legacy_wal, wal_size);
	for (unsigned int i = 0; i < FUZZ_LEGACY_EDITS && size >= 4 * (i + 1);
	     i++) {
		size_t at = ((size_t)data[4 * i] << 16 |
			     (size_t)data[4 * i + 1] << 8 | data[4 * i + 2]) %
			wal_size;

		wal[at] ^= data[4 * i + 3];
	}
	/* A last odd byte cuts the WAL short. */
	if (size % 4 == 1)
		wal_size = ((size_t)data[size - 1] << 12) % wal_size;
	changed = wal_size != fuzz_legacy_wal_size ||
		memcmp(wal, fuzz_legacy_wal, wal_size) != 0;
	fuzz_write_files(fuzz_legacy_main, fuzz_legacy_main_size, wal,
			 wal_size);
	/* Read-only: recovery runs, the close does not checkpoint. */
	if (cvfs_open_v2(fuzz_path, &db, SQLITE_OPEN_READONLY, fuzz_key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK) {
		if (!changed)
			fuzz_fail("the intact legacy image does not open");
		return;
	}
	if (sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM t) + "
			       "(SELECT v FROM k)", -1, &stmt,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(stmt) == SQLITE_ROW)
			rows = sqlite3_column_int64(stmt, 0);
		sqlite3_finalize(stmt);
	}
	if (!changed && rows != 2 * FUZZ_LEGACY_TXNS)
		fuzz_fail("the intact legacy WAL was not recovered whole");
	cvfs_close(&db);
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
	fuzz_legacy_init();
	/* The intact image, once for sure: recovered whole. */
	fuzz_legacy_wal_open(NULL, 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
		fuzz_decrypt_raw(data + 1, size - 1);
		break;
	case 1:
		fuzz_round_trip(data + 1, size - 1);
		break;
	case 2:
		fuzz_legacy_wal_open(data + 1, size - 1);
		break;
	default:
		fuzz_open_file(data + 1, size - 1);
		break;
	}
	return 0;
}
