/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The concurrent half of tests/cryptvfs/interop.sh (not a test by itself):

     cvfs-interop-concurrent HELPER MC_TOOL DIR KEY SEED ROUNDS

   Each round starts two writers on one new database DIR/c.db and keeps
   both open: "HELPER serve" (cryptvfs over the system SQLite) and
   "MC_TOOL serve" (SQLite3MultipleCiphers). A plan drawn from SEED sends
   them commits and checkpoints in turn, waiting for each "ok"; at a drawn
   step one writer is SIGKILLed (idle, or in the middle of a commit) and
   the other goes on alone; at the end the survivors are SIGKILLed, maybe
   in the middle of a commit too. Then each side recovers its own copy of
   the crashed files (without the -shm, so recovery reads the WAL):
   every acknowledged transaction must be there whole, no transaction
   half there, both sides must find the same transactions, and
   integrity_check must say "ok". Exit status 0 when every round passes;
   one line per failure on stderr, a summary on stdout. */

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <sodium.h>

#include "cryptvfs.h"

#define CONC_MAX_TXNS 128
#define CONC_LINE_MAX 512
#define CONC_PATH_MAX 1024
/* Transaction sizes: in-flight ones are larger so that a kill is more
   likely to land inside the commit. */
#define CONC_MAX_ROWS 40
#define CONC_MAX_INFLIGHT_ROWS 300
/* Per transaction: rows, their i range and n, and bodies that differ
   from what the writer wrote (table w of the serve commands). */
#define CONC_VERIFY_SQL \
	"SELECT txn, count(*), min(n), max(n), min(i), max(i), " \
	"sum(body IS NOT printf('%d.%d.', txn, i) || " \
	"hex(zeroblob((txn * 37 + i * 11) % 600))) " \
	"FROM w GROUP BY txn ORDER BY txn"

enum conc_txn_state {
	CONC_TXN_NONE = 0,
	/* Sent, and the writer killed before it answered. */
	CONC_TXN_INFLIGHT,
	CONC_TXN_ACKED,
};

struct conc_side {
	const char *name;
	/* 0 cryptvfs, 1 sqlite3mc */
	unsigned int index;
	pid_t pid;
	FILE *to, *from;
	bool alive;
};

struct conc_round {
	unsigned int number;
	char db[CONC_PATH_MAX];
	unsigned int txns;
	enum conc_txn_state state[CONC_MAX_TXNS];
	long rows[CONC_MAX_TXNS];
	unsigned int commits[2], kills, inflight;
};

/* A transaction as one side recovered it. */
struct conc_found {
	bool present;
	long count;
};

static const char *conc_helper, *conc_mc_tool, *conc_key;
static unsigned int conc_failures;

static void conc_fail(const struct conc_round *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void conc_fail(const struct conc_round *r, const char *fmt, ...)
{
	va_list args;

	fprintf(stderr, "round %u: ", r->number);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fputc('\n', stderr);
	conc_failures++;
}

/* Runs argv with stdin and stdout on pipes; side->to, side->from. */
static int conc_spawn(struct conc_side *side, char *const argv[])
{
	int to[2], from[2];

	if (pipe(to) < 0 || pipe(from) < 0)
		return -1;
	side->pid = fork();
	if (side->pid < 0)
		return -1;
	if (side->pid == 0) {
		if (dup2(to[0], STDIN_FILENO) < 0 ||
		    dup2(from[1], STDOUT_FILENO) < 0)
			_exit(127);
		close(to[0]);
		close(to[1]);
		close(from[0]);
		close(from[1]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	side->to = fdopen(to[1], "w");
	side->from = fdopen(from[0], "r");
	side->alive = side->to != NULL && side->from != NULL;
	return side->alive ? 0 : -1;
}

/* Waits for the next line of a side; true if it is want. */
static bool conc_expect(struct conc_side *side, const char *want)
{
	char line[CONC_LINE_MAX];

	if (fgets(line, sizeof(line), side->from) == NULL)
		return false;
	line[strcspn(line, "\n")] = '\0';
	return strcmp(line, want) == 0;
}

static bool conc_send(struct conc_side *side, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool conc_send(struct conc_side *side, const char *fmt, ...)
{
	va_list args;
	int ret;

	va_start(args, fmt);
	ret = vfprintf(side->to, fmt, args);
	va_end(args);
	return ret >= 0 && fflush(side->to) == 0;
}

static void conc_kill(struct conc_side *side)
{
	int status;

	if (!side->alive)
		return;
	(void)kill(side->pid, SIGKILL);
	(void)waitpid(side->pid, &status, 0);
	fclose(side->to);
	fclose(side->from);
	side->alive = false;
}

static bool conc_start(struct conc_round *r, struct conc_side *side,
		       bool mc, int autockpt)
{
	char ckpt[16];
	char *argv[] = {
		(char *)(mc ? conc_mc_tool : conc_helper), (char *)"serve",
		r->db, (char *)conc_key, ckpt, NULL
	};

	snprintf(ckpt, sizeof(ckpt), "%d", autockpt);
	side->name = mc ? "sqlite3mc" : "cryptvfs";
	side->index = mc ? 1 : 0;
	if (conc_spawn(side, argv) < 0 || !conc_expect(side, "ready")) {
		conc_fail(r, "%s serve did not start", side->name);
		return false;
	}
	return true;
}

/* One commit, answered (acked) or killed in flight. */
static bool conc_commit(struct conc_round *r, struct conc_side *side,
			long rows, bool kill_in_flight)
{
	unsigned int txn = r->txns;

	if (txn >= CONC_MAX_TXNS)
		return true;
	r->txns++;
	r->rows[txn] = rows;
	if (!conc_send(side, "commit %u %ld\n", txn, rows)) {
		conc_fail(r, "%s: cannot send", side->name);
		return false;
	}
	if (kill_in_flight) {
		r->state[txn] = CONC_TXN_INFLIGHT;
		r->inflight++;
		conc_kill(side);
		r->kills++;
		return true;
	}
	if (!conc_expect(side, "ok")) {
		conc_fail(r, "%s: commit %u not acknowledged", side->name,
			  txn);
		return false;
	}
	r->state[txn] = CONC_TXN_ACKED;
	r->commits[side->index]++;
	return true;
}

static bool conc_checkpoint(struct conc_round *r, struct conc_side *side,
			    unsigned int *seed)
{
	static const char *const modes[] = {
		"PASSIVE", "FULL", "RESTART", "TRUNCATE"
	};

	if (!conc_send(side, "checkpoint %s\n", modes[rand_r(seed) % 4]) ||
	    !conc_expect(side, "ok")) {
		conc_fail(r, "%s: checkpoint failed", side->name);
		return false;
	}
	return true;
}

/* Parses one CONC_VERIFY_SQL row into found[]. */
static bool conc_parse_row(struct conc_round *r, const char *who,
			   struct conc_found *found, const char *line)
{
	long txn, count, min_n, max_n, min_i, max_i, bad;

	if (sscanf(line, "%ld|%ld|%ld|%ld|%ld|%ld|%ld", &txn, &count, &min_n,
		   &max_n, &min_i, &max_i, &bad) != 7 ||
	    txn < 0 || txn >= (long)r->txns ||
	    r->state[txn] == CONC_TXN_NONE) {
		conc_fail(r, "%s: unexpected row '%s'", who, line);
		return false;
	}
	found[txn].present = true;
	found[txn].count = count;
	/* All or nothing, and every body as written. */
	if (count != r->rows[txn] || min_n != count || max_n != count ||
	    min_i != 0 || max_i != count - 1 || bad != 0) {
		conc_fail(r, "%s: transaction %ld half there: %s", who, txn,
			  line);
		return false;
	}
	return true;
}

static void conc_check_found(struct conc_round *r, const char *who,
			     const struct conc_found *found)
{
	for (unsigned int txn = 0; txn < r->txns; txn++) {
		if (r->state[txn] == CONC_TXN_ACKED && !found[txn].present)
			conc_fail(r, "%s lost acknowledged transaction %u",
				  who, txn);
	}
}

/* "MC_TOOL query PATH KEY SQL", its stdout into out. */
static bool conc_mc_query(const char *path, const char *sql, char *out,
			  size_t out_size)
{
	char *const argv[] = {
		(char *)conc_mc_tool, (char *)"query", (char *)path,
		(char *)conc_key, (char *)sql, NULL
	};
	struct conc_side side;
	size_t len = 0, n;
	int status;

	if (conc_spawn(&side, argv) < 0)
		return false;
	fclose(side.to);
	while (len + 1 < out_size &&
	       (n = fread(out + len, 1, out_size - 1 - len, side.from)) > 0)
		len += n;
	out[len] = '\0';
	fclose(side.from);
	return waitpid(side.pid, &status, 0) == side.pid &&
		WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void conc_verify_mc(struct conc_round *r, const char *path,
			   struct conc_found *found)
{
	static char out[CONC_MAX_TXNS * 64 + 64];
	char *line, *next;

	if (!conc_mc_query(path, "PRAGMA integrity_check", out, sizeof(out)) ||
	    strcmp(out, "ok\n") != 0) {
		conc_fail(r, "sqlite3mc: integrity_check: %s", out);
		return;
	}
	if (!conc_mc_query(path, CONC_VERIFY_SQL, out, sizeof(out))) {
		conc_fail(r, "sqlite3mc: cannot read the recovered file");
		return;
	}
	for (line = out; *line != '\0'; line = next) {
		next = line + strcspn(line, "\n");
		if (*next != '\0')
			*next++ = '\0';
		if (!conc_parse_row(r, "sqlite3mc", found, line))
			return;
	}
	conc_check_found(r, "sqlite3mc", found);
}

static void conc_verify_cvfs(struct conc_round *r, const char *path,
			     struct conc_found *found)
{
	unsigned char key[CVFS_KEY_BYTES];
	char line[CONC_LINE_MAX];
	struct cvfs_error err;
	sqlite3_stmt *stmt;
	sqlite3 *db;
	int rc;

	if (sodium_hex2bin(key, sizeof(key), conc_key + 4,
			   strlen(conc_key + 4), NULL, NULL, NULL) != 0 ||
	    cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE, key, sizeof(key),
			 &err) != SQLITE_OK) {
		conc_fail(r, "cryptvfs: cannot open the recovered file");
		return;
	}
	sodium_memzero(key, sizeof(key));
	rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt,
				NULL);
	if (rc != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(stmt, 0), "ok") != 0)
		conc_fail(r, "cryptvfs: integrity_check fails");
	sqlite3_finalize(stmt);
	rc = sqlite3_prepare_v2(db, CONC_VERIFY_SQL, -1, &stmt, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		snprintf(line, sizeof(line), "%lld|%lld|%lld|%lld|%lld|%lld|"
			 "%lld",
			 sqlite3_column_int64(stmt, 0),
			 sqlite3_column_int64(stmt, 1),
			 sqlite3_column_int64(stmt, 2),
			 sqlite3_column_int64(stmt, 3),
			 sqlite3_column_int64(stmt, 4),
			 sqlite3_column_int64(stmt, 5),
			 sqlite3_column_int64(stmt, 6));
		if (!conc_parse_row(r, "cryptvfs", found, line))
			break;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE && rc != SQLITE_OK)
		conc_fail(r, "cryptvfs: cannot read the recovered file: %s",
			  sqlite3_errmsg(db));
	sqlite3_finalize(stmt);
	cvfs_close(&db);
	conc_check_found(r, "cryptvfs", found);
}

static int conc_copy(const char *src, const char *dst)
{
	char buf[65536];
	FILE *in, *out;
	size_t n;
	int ret = 0;

	in = fopen(src, "rb");
	if (in == NULL)
		return errno == ENOENT ? 0 : -1;
	out = fopen(dst, "wb");
	if (out == NULL) {
		fclose(in);
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		if (fwrite(buf, 1, n, out) != n)
			ret = -1;
	}
	if (ferror(in) || fclose(out) != 0)
		ret = -1;
	fclose(in);
	return ret;
}

/* Copies DB and DB-wal (never the -shm) to DIR/<name>.db. */
static int conc_snapshot(const struct conc_round *r, const char *dir,
			 const char *name, char *path_r)
{
	char src[CONC_PATH_MAX + 8], dst[CONC_PATH_MAX + 8];

	snprintf(path_r, CONC_PATH_MAX, "%s/%s.db", dir, name);
	snprintf(dst, sizeof(dst), "%s-wal", path_r);
	(void)unlink(path_r);
	(void)unlink(dst);
	snprintf(dst, sizeof(dst), "%s-shm", path_r);
	(void)unlink(dst);
	snprintf(src, sizeof(src), "%s-wal", r->db);
	snprintf(dst, sizeof(dst), "%s-wal", path_r);
	return conc_copy(r->db, path_r) < 0 || conc_copy(src, dst) < 0 ?
		-1 : 0;
}

static void conc_unlink_db(const char *path)
{
	static const char *const suffixes[] = { "", "-wal", "-shm" };
	char p[CONC_PATH_MAX + 8];

	for (unsigned int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		(void)unlink(p);
	}
}

static void conc_run_round(struct conc_round *r, const char *dir,
			   unsigned int *seed)
{
	static const int autockpts[] = { 0, 4, 50 };
	struct conc_found by_mc[CONC_MAX_TXNS], by_cvfs[CONC_MAX_TXNS];
	struct conc_side sides[2];
	char copy[CONC_PATH_MAX];
	int autockpt = autockpts[rand_r(seed) % 3];
	unsigned int first = rand_r(seed) % 2, steps = 8 + rand_r(seed) % 25;
	unsigned int kill_step = rand_r(seed) % (steps + 1);
	unsigned int victim = rand_r(seed) % 2;
	bool kill_in_flight = rand_r(seed) % 2 == 0;
	bool ok;

	memset(sides, 0, sizeof(sides));
	snprintf(r->db, sizeof(r->db), "%s/c.db", dir);
	conc_unlink_db(r->db);
	/* sides[0] is cryptvfs, sides[1] sqlite3mc; either opens first. */
	ok = conc_start(r, &sides[first], first == 1, autockpt) &&
		conc_start(r, &sides[1 - first], first == 0, autockpt);
	for (unsigned int step = 0; ok && step < steps; step++) {
		unsigned int pick = rand_r(seed) % 2;
		unsigned int what = rand_r(seed) % 10;
		long rows = 1 + rand_r(seed) % CONC_MAX_ROWS;

		if (step == kill_step) {
			/* One writer dies, the other goes on alone. */
			if (kill_in_flight)
				ok = conc_commit(r, &sides[victim],
						 1 + rand_r(seed) %
						 CONC_MAX_INFLIGHT_ROWS, true);
			else {
				conc_kill(&sides[victim]);
				r->kills++;
			}
		}
		if (!sides[pick].alive)
			pick = 1 - pick;
		if (!ok || !sides[pick].alive)
			break;
		if (what < 8)
			ok = conc_commit(r, &sides[pick], rows, false);
		else
			ok = conc_checkpoint(r, &sides[pick], seed);
	}
	if (ok && rand_r(seed) % 2 == 0) {
		unsigned int pick = rand_r(seed) % 2;

		if (!sides[pick].alive)
			pick = 1 - pick;
		if (sides[pick].alive)
			ok = conc_commit(r, &sides[pick], 1 + rand_r(seed) %
					 CONC_MAX_INFLIGHT_ROWS, true);
	}
	for (unsigned int i = 0; i < 2; i++) {
		if (sides[i].alive)
			r->kills++;
		conc_kill(&sides[i]);
	}
	if (!ok)
		return;
	/* Each side recovers its own copy of the crash. */
	memset(by_mc, 0, sizeof(by_mc));
	memset(by_cvfs, 0, sizeof(by_cvfs));
	if (conc_snapshot(r, dir, "mc", copy) < 0) {
		conc_fail(r, "cannot copy %s", r->db);
		return;
	}
	conc_verify_mc(r, copy, by_mc);
	if (conc_snapshot(r, dir, "cvfs", copy) < 0) {
		conc_fail(r, "cannot copy %s", r->db);
		return;
	}
	conc_verify_cvfs(r, copy, by_cvfs);
	for (unsigned int txn = 0; txn < r->txns; txn++) {
		if (by_mc[txn].present != by_cvfs[txn].present)
			conc_fail(r, "transaction %u: sqlite3mc %s it, "
				  "cryptvfs %s", txn,
				  by_mc[txn].present ? "has" : "lacks",
				  by_cvfs[txn].present ? "has" : "lacks");
	}
}

int main(int argc, char **argv)
{
	unsigned int seed, rounds, commits[2] = { 0, 0 }, kills = 0;
	unsigned int inflight = 0;

	if (argc != 7 || sodium_init() < 0 ||
	    strncmp(argv[4], "raw:", 4) != 0) {
		fprintf(stderr, "usage: %s HELPER MC_TOOL DIR raw:KEY SEED "
			"ROUNDS\n", argv[0]);
		return 2;
	}
	conc_helper = argv[1];
	conc_mc_tool = argv[2];
	conc_key = argv[4];
	seed = strtoul(argv[5], NULL, 10);
	rounds = strtoul(argv[6], NULL, 10);
	/* A writer killed while we write to it must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	for (unsigned int i = 0; i < rounds; i++) {
		struct conc_round r;

		memset(&r, 0, sizeof(r));
		r.number = i;
		conc_run_round(&r, argv[3], &seed);
		commits[0] += r.commits[0];
		commits[1] += r.commits[1];
		kills += r.kills;
		inflight += r.inflight;
	}
	printf("%u rounds: %u cryptvfs and %u sqlite3mc commits "
	       "acknowledged, %u SIGKILLs (%u in a commit), %u failures\n",
	       rounds, commits[0], commits[1], kills, inflight,
	       conc_failures);
	return conc_failures == 0 ? 0 : 1;
}
