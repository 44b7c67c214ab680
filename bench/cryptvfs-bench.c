/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Plain SQLite vs cryptvfs on the DESIGN.md section 7 mailbox workload,
   same run, fixed seed (not a test):

     3,000 bodies of 4-100 KB in 30 transactions, 20,000 random body reads,
     200 header scans, 3,000 flag updates (one transaction each);
     metadata and bodies in separate tables, WAL, synchronous=NORMAL,
     an 8 MB page cache. Plus raw libsodium ChaCha20-Poly1305 on 4 KiB
     pages as the floor.

   Build and run from the top of the tree:
     cc -O2 -Isrc/cryptvfs -o /tmp/cryptvfs-bench bench/cryptvfs-bench.c \
        src/cryptvfs/cvfs-db.c src/cryptvfs/cvfs-file.c \
        src/cryptvfs/cvfs-kdf.c src/cryptvfs/cvfs-page.c \
        src/cryptvfs/cvfs-vfs.c -lsqlite3 -lsodium
     /tmp/cryptvfs-bench [DIR] [SCALE_PERCENT]
*/

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cryptvfs.h"

#define BENCH_SEED 0x5eed2024u
#define BENCH_BODIES 3000
#define BENCH_TXNS 30
#define BENCH_READS 20000
#define BENCH_SCANS 200
#define BENCH_UPDATES 3000
#define BENCH_BODY_MIN 4096
#define BENCH_BODY_MAX 102400
#define BENCH_HEADER_BYTES 300
#define BENCH_PAGE 4096
#define BENCH_AEAD_PAGES 50000

enum bench_phase {
	BENCH_INSERT,
	BENCH_READ,
	BENCH_SCAN,
	BENCH_UPDATE,
	BENCH_PHASES
};

static const char *const bench_phase_names[BENCH_PHASES] = {
	"insert", "point read", "header scan", "flag update"
};

static uint64_t bench_rng;

static uint32_t bench_rand(void)
{
	/* xorshift64*: fixed seed, same sequence for both runs. */
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

static void bench_run(const char *path, bool encrypted, int scale,
		      double times_r[BENCH_PHASES])
{
	static unsigned char body[BENCH_BODY_MAX], header[BENCH_HEADER_BYTES];
	static const unsigned char key[CVFS_KEY_BYTES] = { 1, 2, 3 };
	int bodies = BENCH_BODIES * scale / 100, reads = BENCH_READS * scale / 100;
	int scans = BENCH_SCANS * scale / 100, updates = BENCH_UPDATES * scale / 100;
	char wal[600];
	sqlite3_stmt *ins_msg, *ins_body, *sel, *scan, *upd;
	sqlite3 *db;
	double t;

	snprintf(wal, sizeof(wal), "%s-wal", path);
	unlink(path);
	unlink(wal);
	bench_rng = BENCH_SEED;
	if (encrypted) {
		if (cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE |
				 SQLITE_OPEN_CREATE, key, sizeof(key),
				 NULL) != SQLITE_OK)
			exit(1);
	} else if (sqlite3_open(path, &db) != SQLITE_OK) {
		exit(1);
	}
	bench_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
		   "PRAGMA cache_size=-8192;"
		   "CREATE TABLE msg(uid INTEGER PRIMARY KEY, flags INTEGER,"
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

		if (i % (bodies / BENCH_TXNS > 0 ? bodies / BENCH_TXNS : 1) == 0) {
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
	times_r[BENCH_INSERT] = bench_now() - t;

	t = bench_now();
	for (int i = 0; i < reads; i++) {
		sqlite3_bind_int(sel, 1, 1 + bench_rand() % bodies);
		if (sqlite3_step(sel) != SQLITE_ROW ||
		    sqlite3_column_bytes(sel, 0) < BENCH_BODY_MIN)
			exit(1);
		sqlite3_reset(sel);
	}
	times_r[BENCH_READ] = bench_now() - t;

	t = bench_now();
	for (int i = 0; i < scans; i++) {
		int n = 0;

		while (sqlite3_step(scan) == SQLITE_ROW)
			n++;
		sqlite3_reset(scan);
		if (n != bodies)
			exit(1);
	}
	times_r[BENCH_SCAN] = bench_now() - t;

	t = bench_now();
	for (int i = 0; i < updates; i++) {
		sqlite3_bind_int(upd, 1, 1 + bench_rand() % bodies);
		sqlite3_bind_int(upd, 2, bench_rand() % 64);
		if (sqlite3_step(upd) != SQLITE_DONE)
			exit(1);
		sqlite3_reset(upd);
	}
	times_r[BENCH_UPDATE] = bench_now() - t;

	sqlite3_finalize(ins_msg);
	sqlite3_finalize(ins_body);
	sqlite3_finalize(sel);
	sqlite3_finalize(scan);
	sqlite3_finalize(upd);
	if (encrypted)
		cvfs_close(&db);
	else
		sqlite3_close(db);
	unlink(path);
	unlink(wal);
}

static double bench_aead_mb_s(void)
{
	static unsigned char page[BENCH_PAGE + crypto_aead_chacha20poly1305_ietf_ABYTES];
	unsigned char key[crypto_aead_chacha20poly1305_ietf_KEYBYTES] = { 9 };
	unsigned char nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = { 0 };
	double t = bench_now();

	for (int i = 0; i < BENCH_AEAD_PAGES; i++) {
		nonce[0] = i;
		crypto_aead_chacha20poly1305_ietf_encrypt(page, NULL, page,
							  BENCH_PAGE, NULL, 0,
							  NULL, nonce, key);
	}
	t = bench_now() - t;
	return BENCH_AEAD_PAGES * (double)BENCH_PAGE / t / 1e6;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	int scale = argc > 2 ? atoi(argv[2]) : 100;
	double plain[BENCH_PHASES], crypt[BENCH_PHASES];
	double plain_total = 0, crypt_total = 0;
	char path[512];

	if (sodium_init() < 0 || scale <= 0)
		return 1;
	snprintf(path, sizeof(path), "%s/cryptvfs-bench-plain.db", dir);
	bench_run(path, false, scale, plain);
	snprintf(path, sizeof(path), "%s/cryptvfs-bench-crypt.db", dir);
	bench_run(path, true, scale, crypt);
	printf("%-12s %10s %10s %7s\n", "phase", "plain s", "cryptvfs s",
	       "ratio");
	for (int i = 0; i < BENCH_PHASES; i++) {
		printf("%-12s %10.3f %10.3f %7.2f\n", bench_phase_names[i],
		       plain[i], crypt[i], crypt[i] / plain[i]);
		plain_total += plain[i];
		crypt_total += crypt[i];
	}
	printf("%-12s %10.3f %10.3f %7.2f\n", "total", plain_total,
	       crypt_total, crypt_total / plain_total);
	printf("libsodium chacha20poly1305-ietf, 4 KiB pages: %.0f MB/s\n",
	       bench_aead_mb_s());
	return 0;
}
