/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Plain SQLite vs cryptvfs vs SQLCipher on the DESIGN.md section 7
   mailbox workload, fixed seed (not a test):

     3,000 bodies of 4-100 KB in 30 transactions, 20,000 random body reads,
     200 header scans, 3,000 flag updates (one transaction each);
     metadata and bodies in separate tables, WAL, synchronous=NORMAL.

   libsqlcipher exports the sqlite3_* names too, so this file is built
   twice: against libsqlite3 + src/cryptvfs (engines "plain", "cryptvfs")
   and with -DBENCH_SQLCIPHER against libsqlcipher (engine "sqlcipher").
   bench/cryptvfs-bench.sh builds both in a temp dir and runs them back to
   back; read it for the exact compile lines.

     cryptvfs-bench ENGINE DIR CACHE_KIB PAGE_SIZE [SCALE_PERCENT]
       CACHE_KIB 0 keeps SQLite's default page cache (2 MB), PAGE_SIZE 0
       the engine's default page size (4096; SQLCipher 3.4: 1024).
       Prints one line: ENGINE CACHE PAGE insert read scan update total
       (milliseconds) body_MB (body bytes returned by the point reads).
     cryptvfs-bench aead
       Prints raw libsodium ChaCha20-Poly1305-IETF MB/s on 4 KiB pages:
       encrypt, then verify+decrypt (the floor for any page cipher).
*/

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef BENCH_SQLCIPHER
#  include <sqlite3.h>
#else
#  include <sodium.h>
#  include "cryptvfs.h"
#endif

#define BENCH_SEED 0x5eed2024u
#define BENCH_BODIES 3000
#define BENCH_TXNS 30
#define BENCH_READS 20000
#define BENCH_SCANS 200
#define BENCH_UPDATES 3000
#define BENCH_BODY_MIN 4096
#define BENCH_BODY_MAX 102400
#define BENCH_HEADER_BYTES 300
#define BENCH_KEY_BYTES 32
#define BENCH_SQL_BYTES 256
#define BENCH_PATH_BYTES 512
#define BENCH_AEAD_PAGE 4096
#define BENCH_AEAD_PAGES 100000

enum bench_phase {
	BENCH_INSERT,
	BENCH_READ,
	BENCH_SCAN,
	BENCH_UPDATE,
	BENCH_PHASES
};

enum bench_engine {
	BENCH_PLAIN,
	BENCH_CRYPTVFS,
	BENCH_SQLCIPHER_ENGINE,
};

struct bench_result {
	double secs[BENCH_PHASES];
	uint64_t body_bytes;
};

/* The same raw key for both encrypted engines. */
static const unsigned char bench_key[BENCH_KEY_BYTES] = { 1, 2, 3 };

static uint64_t bench_rng;

static uint32_t bench_rand(void)
{
	/* xorshift64*: fixed seed, same sequence for every engine. */
	bench_rng ^= bench_rng >> 12;
	bench_rng ^= bench_rng << 25;
	bench_rng ^= bench_rng >> 27;
	return (uint32_t)((bench_rng * 2685821657736338717ULL) >> 32);
}

static double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void bench_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, msg);
		exit(1);
	}
}

static sqlite3_stmt *bench_prepare(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *stmt;

	if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
		exit(1);
	}
	return stmt;
}

static sqlite3 *bench_open(const char *path, enum bench_engine engine,
			   int cache_kib, int page_size)
{
	char sql[BENCH_SQL_BYTES];
	sqlite3 *db;

	switch (engine) {
	case BENCH_PLAIN:
		if (sqlite3_open(path, &db) != SQLITE_OK)
			exit(1);
		break;
	case BENCH_CRYPTVFS:
#ifndef BENCH_SQLCIPHER
		if (cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE |
				 SQLITE_OPEN_CREATE, bench_key,
				 sizeof(bench_key), NULL) != SQLITE_OK)
			exit(1);
#endif
		break;
	case BENCH_SQLCIPHER_ENGINE: {
		/* A raw key (no PBKDF2), as cryptvfs is given one. */
		char hex[BENCH_KEY_BYTES * 2 + 1];

		for (size_t i = 0; i < sizeof(bench_key); i++)
			snprintf(hex + 2 * i, 3, "%02x", bench_key[i]);
		if (sqlite3_open(path, &db) != SQLITE_OK)
			exit(1);
		snprintf(sql, sizeof(sql), "PRAGMA key=\"x'%s'\"", hex);
		bench_exec(db, sql);
		if (page_size != 0) {
			snprintf(sql, sizeof(sql),
				 "PRAGMA cipher_page_size=%d", page_size);
			bench_exec(db, sql);
		}
		break;
	}
	}
	/* Page size before WAL: the first write fixes it. */
	if (page_size != 0 && engine != BENCH_SQLCIPHER_ENGINE) {
		snprintf(sql, sizeof(sql), "PRAGMA page_size=%d", page_size);
		bench_exec(db, sql);
	}
	if (cache_kib != 0) {
		snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%d", cache_kib);
		bench_exec(db, sql);
	}
	bench_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
	return db;
}

static void bench_run(const char *path, enum bench_engine engine,
		      int cache_kib, int page_size, int scale,
		      struct bench_result *result_r)
{
	static unsigned char body[BENCH_BODY_MAX], header[BENCH_HEADER_BYTES];
	int bodies = BENCH_BODIES * scale / 100, reads = BENCH_READS * scale / 100;
	int scans = BENCH_SCANS * scale / 100, updates = BENCH_UPDATES * scale / 100;
	int per_txn = bodies / BENCH_TXNS > 0 ? bodies / BENCH_TXNS : 1;
	char wal[BENCH_PATH_BYTES + 8];
	sqlite3_stmt *ins_msg, *ins_body, *sel, *scan, *upd;
	sqlite3 *db;
	double t;

	snprintf(wal, sizeof(wal), "%s-wal", path);
	unlink(path);
	unlink(wal);
	bench_rng = BENCH_SEED;
	memset(result_r, 0, sizeof(*result_r));
	db = bench_open(path, engine, cache_kib, page_size);
	/* Metadata apart from bodies: scans and flag updates never touch a
	   body page (DESIGN.md section 7). */
	bench_exec(db, "CREATE TABLE msg(uid INTEGER PRIMARY KEY, flags INTEGER,"
		   " modseq INTEGER, hdr BLOB);"
		   "CREATE TABLE body(uid INTEGER PRIMARY KEY, data BLOB)");
	ins_msg = bench_prepare(db, "INSERT INTO msg VALUES(?1, 0, ?1, ?2)");
	ins_body = bench_prepare(db, "INSERT INTO body VALUES(?1, ?2)");
	sel = bench_prepare(db, "SELECT data FROM body WHERE uid=?1");
	scan = bench_prepare(db, "SELECT uid, flags, hdr FROM msg");
	upd = bench_prepare(db, "UPDATE msg SET flags=?2, modseq=modseq+1 "
			    "WHERE uid=?1");

	t = bench_now();
	for (int i = 0; i < bodies; i++) {
		int len = BENCH_BODY_MIN +
			bench_rand() % (BENCH_BODY_MAX - BENCH_BODY_MIN);

		if (i % per_txn == 0) {
			if (i > 0)
				bench_exec(db, "COMMIT");
			bench_exec(db, "BEGIN");
		}
		/* Mail-like, not compressible to nothing: random words. */
		for (int j = 0; j < len; j++)
			body[j] = 'a' + bench_rand() % 26;
		memcpy(header, body, sizeof(header));
		sqlite3_bind_int(ins_msg, 1, i + 1);
		sqlite3_bind_blob(ins_msg, 2, header, sizeof(header),
				  SQLITE_STATIC);
		sqlite3_bind_int(ins_body, 1, i + 1);
		sqlite3_bind_blob(ins_body, 2, body, len, SQLITE_STATIC);
		if (sqlite3_step(ins_msg) != SQLITE_DONE ||
		    sqlite3_step(ins_body) != SQLITE_DONE)
			exit(1);
		sqlite3_reset(ins_msg);
		sqlite3_reset(ins_body);
	}
	bench_exec(db, "COMMIT");
	result_r->secs[BENCH_INSERT] = bench_now() - t;

	t = bench_now();
	for (int i = 0; i < reads; i++) {
		sqlite3_bind_int(sel, 1, 1 + bench_rand() % bodies);
		if (sqlite3_step(sel) != SQLITE_ROW ||
		    sqlite3_column_bytes(sel, 0) < BENCH_BODY_MIN)
			exit(1);
		result_r->body_bytes += sqlite3_column_bytes(sel, 0);
		sqlite3_reset(sel);
	}
	result_r->secs[BENCH_READ] = bench_now() - t;

	t = bench_now();
	for (int i = 0; i < scans; i++) {
		int n = 0;

		while (sqlite3_step(scan) == SQLITE_ROW)
			n++;
		sqlite3_reset(scan);
		if (n != bodies)
			exit(1);
	}
	result_r->secs[BENCH_SCAN] = bench_now() - t;

	t = bench_now();
	for (int i = 0; i < updates; i++) {
		sqlite3_bind_int(upd, 1, 1 + bench_rand() % bodies);
		sqlite3_bind_int(upd, 2, bench_rand() % 64);
		if (sqlite3_step(upd) != SQLITE_DONE)
			exit(1);
		sqlite3_reset(upd);
	}
	result_r->secs[BENCH_UPDATE] = bench_now() - t;

	sqlite3_finalize(ins_msg);
	sqlite3_finalize(ins_body);
	sqlite3_finalize(sel);
	sqlite3_finalize(scan);
	sqlite3_finalize(upd);
#ifndef BENCH_SQLCIPHER
	if (engine == BENCH_CRYPTVFS)
		cvfs_close(&db);
	else
#endif
		sqlite3_close(db);
	unlink(path);
	unlink(wal);
}

#ifndef BENCH_SQLCIPHER
static double bench_aead_mb_s(bool decrypt)
{
	static unsigned char page[BENCH_AEAD_PAGE +
				  crypto_aead_chacha20poly1305_ietf_ABYTES];
	unsigned char key[crypto_aead_chacha20poly1305_ietf_KEYBYTES] = { 9 };
	unsigned char nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = { 0 };
	double t;

	crypto_aead_chacha20poly1305_ietf_encrypt(page, NULL, page,
						  BENCH_AEAD_PAGE, NULL, 0,
						  NULL, nonce, key);
	t = bench_now();
	for (int i = 0; i < BENCH_AEAD_PAGES; i++) {
		if (!decrypt) {
			nonce[0] = i;
			crypto_aead_chacha20poly1305_ietf_encrypt(
				page, NULL, page, BENCH_AEAD_PAGE, NULL, 0,
				NULL, nonce, key);
		} else if (crypto_aead_chacha20poly1305_ietf_decrypt(
				page, NULL, NULL, page, sizeof(page),
				NULL, 0, nonce, key) != 0) {
			exit(1);
		} else {
			/* Put the ciphertext back: same nonce, same tag. */
			crypto_stream_chacha20_ietf_xor_ic(page, page,
							   BENCH_AEAD_PAGE,
							   nonce, 1, key);
		}
	}
	t = bench_now() - t;
	if (decrypt) {
		/* Each round also re-encrypted the page (one more ChaCha20
		   pass): time that alone and take it out. */
		double x = bench_now();

		for (int i = 0; i < BENCH_AEAD_PAGES; i++)
			crypto_stream_chacha20_ietf_xor_ic(page, page,
							   BENCH_AEAD_PAGE,
							   nonce, 1, key);
		t -= bench_now() - x;
	}
	return BENCH_AEAD_PAGES * (double)BENCH_AEAD_PAGE / t / 1e6;
}
#endif

static int bench_engine_parse(const char *name, enum bench_engine *engine_r)
{
#ifdef BENCH_SQLCIPHER
	if (strcmp(name, "sqlcipher") == 0) {
		*engine_r = BENCH_SQLCIPHER_ENGINE;
		return 0;
	}
#else
	if (strcmp(name, "plain") == 0) {
		*engine_r = BENCH_PLAIN;
		return 0;
	}
	if (strcmp(name, "cryptvfs") == 0) {
		*engine_r = BENCH_CRYPTVFS;
		return 0;
	}
#endif
	return -1;
}

int main(int argc, char **argv)
{
	enum bench_engine engine;
	struct bench_result res;
	char path[BENCH_PATH_BYTES];
	int cache_kib, page_size, scale;
	double total = 0;

#ifndef BENCH_SQLCIPHER
	if (sodium_init() < 0)
		return 1;
	if (argc == 2 && strcmp(argv[1], "aead") == 0) {
		printf("aead %.0f %.0f\n", bench_aead_mb_s(false),
		       bench_aead_mb_s(true));
		return 0;
	}
#endif
	if (argc < 5 || argc > 6 || bench_engine_parse(argv[1], &engine) < 0) {
		fprintf(stderr, "usage: %s ENGINE DIR CACHE_KIB PAGE_SIZE "
			"[SCALE_PERCENT] | aead\n", argv[0]);
		return 2;
	}
	cache_kib = atoi(argv[3]);
	page_size = atoi(argv[4]);
	scale = argc > 5 ? atoi(argv[5]) : 100;
	if (cache_kib < 0 || page_size < 0 || scale <= 0)
		return 2;
	snprintf(path, sizeof(path), "%s/cryptvfs-bench-%s.db", argv[2],
		 argv[1]);
	bench_run(path, engine, cache_kib, page_size, scale, &res);
	printf("%s %d %d", argv[1], cache_kib, page_size);
	for (int i = 0; i < BENCH_PHASES; i++) {
		printf(" %.1f", res.secs[i] * 1e3);
		total += res.secs[i];
	}
	printf(" %.1f %.1f\n", total * 1e3, res.body_bytes / 1e6);
	return 0;
}
