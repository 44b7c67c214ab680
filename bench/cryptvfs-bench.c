/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Plain SQLite vs cryptvfs vs SQLCipher on the doc/DESIGN.md section 7
   mailbox workload, fixed seed (not a test):

     3,000 bodies of 4-100 KB in 30 transactions, 20,000 random body reads,
     200 header scans, 3,000 flag updates (one transaction each);
     metadata and bodies in separate tables, WAL, synchronous=NORMAL.

   libsqlcipher and SQLite3MultipleCiphers export the sqlite3_* names too,
   so this file is built three times: against libsqlite3 + src/cryptvfs
   (engines "plain", "cryptvfs"; the library with -DCVFS_BENCH_COUNTERS),
   with -DBENCH_SQLCIPHER against libsqlcipher (engine "sqlcipher") and
   with -DBENCH_SQLITE3MC against sqlite3mc's amalgamation (engine
   "sqlite3mc": cipher chacha20, the format cryptvfs writes, raw key).
   bench/cryptvfs-bench.sh builds them in a temp dir and runs them back
   to back; read it for the exact compile lines.

     cryptvfs-bench ENGINE DIR CACHE_KIB PAGE_SIZE [SCALE_PERCENT]
       CACHE_KIB 0 keeps SQLite's default page cache (2 MB), PAGE_SIZE 0
       the engine's default page size (4096; SQLCipher 3.4: 1024).
       Prints one line: ENGINE CACHE PAGE insert read scan update total
       (milliseconds) body_MB (body bytes returned by the point reads).
       For cryptvfs a second line, "crypt CACHE PAGE insert ... total":
       what the pages cryptvfs put through its page transform in each
       phase cost when transformed alone in a loop (same functions, same
       page size, same process), in ms. Plain SQLite's time plus that is
       the floor of any page cipher with this format.
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

#if defined(BENCH_SQLCIPHER) || defined(BENCH_SQLITE3MC)
#  define BENCH_FOREIGN
#  include <sqlite3.h>
#else
#  include <sodium.h>
#  include "cryptvfs-private.h"
/* -DBENCH_BASELINE: built against an older src/cryptvfs without the
   transform counters (CVFS_BENCH_BASELINE in the script). */
#  ifndef BENCH_BASELINE
#    define BENCH_COUNT
#  endif
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
	BENCH_SQLITE3MC_ENGINE,
};

struct bench_result {
	double secs[BENCH_PHASES];
	uint64_t body_bytes;
#ifdef BENCH_COUNT
	/* Page transforms per phase (cryptvfs only). */
	struct cvfs_page_counters crypt[BENCH_PHASES];
#endif
};

#ifdef BENCH_COUNT
static struct cvfs_page_counters bench_counters_mark;

/* The transforms since the last call. */
static struct cvfs_page_counters bench_counters_take(void)
{
	struct cvfs_page_counters now = cvfs_page_counters, d;

	d.encrypted = now.encrypted - bench_counters_mark.encrypted;
	d.decrypted = now.decrypted - bench_counters_mark.decrypted;
	d.verified = now.verified - bench_counters_mark.verified;
	d.ranges = now.ranges - bench_counters_mark.ranges;
	d.range_bytes = now.range_bytes - bench_counters_mark.range_bytes;
	bench_counters_mark = now;
	return d;
}
#  define BENCH_PHASE_DONE(r, phase) ((r)->crypt[phase] = bench_counters_take())
#else
#  define BENCH_PHASE_DONE(r, phase) ((void)0)
#endif

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
#ifndef BENCH_FOREIGN
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
	case BENCH_SQLITE3MC_ENGINE: {
		/* sqlite3mc's chacha20 (sqleet's format, as cryptvfs), a raw
		   key as cryptvfs is given one: no PBKDF2 at open. */
		char hex[BENCH_KEY_BYTES * 2 + 1];

		for (size_t i = 0; i < sizeof(bench_key); i++)
			snprintf(hex + 2 * i, 3, "%02x", bench_key[i]);
		if (sqlite3_open(path, &db) != SQLITE_OK)
			exit(1);
		snprintf(sql, sizeof(sql), "PRAGMA cipher='chacha20'; "
			 "PRAGMA key='raw:%s'", hex);
		bench_exec(db, sql);
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
	   body page (doc/DESIGN.md section 7). */
	bench_exec(db, "CREATE TABLE msg(uid INTEGER PRIMARY KEY, flags INTEGER,"
		   " modseq INTEGER, hdr BLOB);"
		   "CREATE TABLE body(uid INTEGER PRIMARY KEY, data BLOB)");
	ins_msg = bench_prepare(db, "INSERT INTO msg VALUES(?1, 0, ?1, ?2)");
	ins_body = bench_prepare(db, "INSERT INTO body VALUES(?1, ?2)");
	sel = bench_prepare(db, "SELECT data FROM body WHERE uid=?1");
	scan = bench_prepare(db, "SELECT uid, flags, hdr FROM msg");
	upd = bench_prepare(db, "UPDATE msg SET flags=?2, modseq=modseq+1 "
			    "WHERE uid=?1");

#ifdef BENCH_COUNT
	(void)bench_counters_take();
#endif
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
	BENCH_PHASE_DONE(result_r, BENCH_INSERT);

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
	BENCH_PHASE_DONE(result_r, BENCH_READ);

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
	BENCH_PHASE_DONE(result_r, BENCH_SCAN);

	t = bench_now();
	for (int i = 0; i < updates; i++) {
		sqlite3_bind_int(upd, 1, 1 + bench_rand() % bodies);
		sqlite3_bind_int(upd, 2, bench_rand() % 64);
		if (sqlite3_step(upd) != SQLITE_DONE)
			exit(1);
		sqlite3_reset(upd);
	}
	result_r->secs[BENCH_UPDATE] = bench_now() - t;
	BENCH_PHASE_DONE(result_r, BENCH_UPDATE);

	sqlite3_finalize(ins_msg);
	sqlite3_finalize(ins_body);
	sqlite3_finalize(sel);
	sqlite3_finalize(scan);
	sqlite3_finalize(upd);
#ifndef BENCH_FOREIGN
	if (engine == BENCH_CRYPTVFS)
		cvfs_close(&db);
	else
#endif
		sqlite3_close(db);
	unlink(path);
	unlink(wal);
}

#ifdef BENCH_COUNT
#define BENCH_COST_PAGES 20000

/* Seconds per page of cvfs_page_encrypt(), _decrypt() and _verify() at
   this page size, in a loop over one page (in L1: no I/O, no misses). */
static void bench_page_costs(size_t ps, double *enc_r, double *dec_r,
			     double *ver_r)
{
	static unsigned char page[CVFS_MAX_PAGE_SIZE], out[CVFS_MAX_PAGE_SIZE];
	unsigned char salt[CVFS_SALT_BYTES] = { 7 };
	double t;

	memset(page, 'm', ps);
	t = bench_now();
	for (int i = 0; i < BENCH_COST_PAGES; i++)
		cvfs_page_encrypt(out, page, ps, 2 + i, salt, bench_key);
	*enc_r = (bench_now() - t) / BENCH_COST_PAGES;
	cvfs_page_encrypt(out, page, ps, 2, salt, bench_key);
	t = bench_now();
	for (int i = 0; i < BENCH_COST_PAGES; i++)
		if (cvfs_page_decrypt(page, NULL, out, ps, 2,
				      bench_key) != 0)
			exit(1);
	*dec_r = (bench_now() - t) / BENCH_COST_PAGES;
	t = bench_now();
	for (int i = 0; i < BENCH_COST_PAGES; i++)
		if (cvfs_page_verify(out, ps, 2, bench_key) != 0)
			exit(1);
	*ver_r = (bench_now() - t) / BENCH_COST_PAGES;
}

/* Prints what the transforms counted in each phase cost alone, in ms. */
static void bench_print_crypt(const struct bench_result *res, int cache_kib,
			      int page_size)
{
	size_t ps = page_size == 0 ? 4096 : page_size;
	double enc, dec, ver, total = 0;
	struct cvfs_page_counters sum = { 0 };

	for (int i = 0; i < BENCH_PHASES; i++) {
		sum.encrypted += res->crypt[i].encrypted;
		sum.decrypted += res->crypt[i].decrypted;
		sum.verified += res->crypt[i].verified;
		sum.ranges += res->crypt[i].ranges;
	}
	/* Pages through the transform in the whole run. */
	printf("pages %d %d encrypted %llu decrypted %llu verified %llu "
	       "ranges %llu\n", cache_kib, page_size,
	       (unsigned long long)sum.encrypted,
	       (unsigned long long)sum.decrypted,
	       (unsigned long long)sum.verified,
	       (unsigned long long)sum.ranges);
	/* CVFS_BENCH_NO_COST: no cost loop (strace -c of the workload). */
	if (getenv("CVFS_BENCH_NO_COST") != NULL)
		return;
	bench_page_costs(ps, &enc, &dec, &ver);
	printf("crypt %d %d", cache_kib, page_size);
	for (int i = 0; i < BENCH_PHASES; i++) {
		const struct cvfs_page_counters *c = &res->crypt[i];
		/* A range decrypt: a verify plus its share of a decrypt. */
		double s = c->encrypted * enc + c->decrypted * dec +
			c->verified * ver + c->ranges * ver +
			(double)c->range_bytes / ps * (dec - ver);

		printf(" %.1f", s * 1e3);
		total += s;
	}
	printf(" %.1f\n", total * 1e3);
}
#endif

#ifndef BENCH_FOREIGN
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
#if defined(BENCH_SQLCIPHER)
	if (strcmp(name, "sqlcipher") == 0) {
		*engine_r = BENCH_SQLCIPHER_ENGINE;
		return 0;
	}
#elif defined(BENCH_SQLITE3MC)
	if (strcmp(name, "sqlite3mc") == 0) {
		*engine_r = BENCH_SQLITE3MC_ENGINE;
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

#ifndef BENCH_FOREIGN
	if (sodium_init() < 0)
		return 1;
	/* the steady state of a long-running process: OpenSSL's EVP (when
	   built with it) from the first page, not after the first 4 MiB */
	(void)cvfs_cipher_set_evp_after(0);
#  ifdef BENCH_COUNT
	if (argc == 2 && strcmp(argv[1], "aead") == 0) {
		double enc, dec, ver;

		bench_page_costs(BENCH_AEAD_PAGE, &enc, &dec, &ver);
		/* libsodium's AEAD, then cryptvfs's page transform. */
		printf("aead %.0f %.0f %.0f %.0f %s\n", bench_aead_mb_s(false),
		       bench_aead_mb_s(true), BENCH_AEAD_PAGE / enc / 1e6,
		       BENCH_AEAD_PAGE / dec / 1e6, cvfs_cipher_backend());
		return 0;
	}
#  endif
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
#ifdef BENCH_COUNT
	if (engine == BENCH_CRYPTVFS)
		bench_print_crypt(&res, cache_kib, page_size);
#endif
	return 0;
}
