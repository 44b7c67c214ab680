/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* A child writes transactions in WAL mode (synchronous=NORMAL, frequent
   checkpoints) and reports each one on a pipe once COMMIT has returned.
   Each round the parent waits for the child's k-th report, sleeps a
   while, and SIGKILLs it; k and the delay come from a fixed seed, so
   every kill lands after real work and the run does not depend on how
   fast the machine is. Then it checks the file:

   - no file, or no schema yet: a pass only if nothing was ever reported;
   - every reported transaction is there;
   - no transaction is there in part: each one adds n rows tagged with
     its number and n, and bumps a one-row ledger (transactions, rows) in
     the same COMMIT, so a half-applied last transaction shows as a
     ledger that disagrees with the rows, a tag with fewer than n rows,
     or a gap in the numbers;
   - every row body is intact and PRAGMA integrity_check passes.

   The next round's child goes on from the ledger: the file collects all
   rounds' crashes. */

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <sys/wait.h>

#include "test-cryptvfs-common.h"

#define TEST_CRASH_SEED 20240603u
#define TEST_CRASH_ROUNDS 160
/* The kill comes after the child's k-th report, k < this... */
#define TEST_CRASH_MAX_REPORTS 25
/* ...plus a delay below this. */
#define TEST_CRASH_MAX_DELAY_US 4000
#define TEST_CRASH_MAX_ROWS_PER_TXN 8
/* Only bounds a child whose kill never comes. */
#define TEST_CRASH_CHILD_MAX_TXNS 1000000
/* Only turns a hung child into a failure instead of a hung build. */
#define TEST_CRASH_HANG_MSECS (300 * 1000)

/* Body of row id: its length and bytes follow from id alone. */
#define TEST_CRASH_BODY_SQL(id) \
	"printf('%.*c', " id " * 37 % 700 + 10, char(48 + " id " % 40))"

struct test_crash_state {
	/* Highest transaction number any child reported committed. */
	sqlite3_int64 committed;
	unsigned int rounds_without_file, rounds_without_schema;
};

static void test_crash_child(const char *path, int fd, int go_fd,
			     unsigned int seed)
{
	sqlite3_stmt *insert = NULL, *touch = NULL, *ledger = NULL;
	sqlite3_int64 txn = 0, id = 0;
	sqlite3 *db;

	char go;

	/* Round 0 is killed here, before there is a file. */
	if (go_fd >= 0 && read(go_fd, &go, 1) != 1)
		_exit(1);
	if (cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK ||
	    test_cvfs_exec(db, "PRAGMA journal_mode=WAL; "
			   "PRAGMA synchronous=NORMAL; "
			   "PRAGMA wal_autocheckpoint=16") != SQLITE_OK ||
	    /* The schema and the ledger row: all or nothing. */
	    test_cvfs_exec(db, "BEGIN; "
			   "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY "
			   "KEY, txn INTEGER NOT NULL, n INTEGER NOT NULL, "
			   "body BLOB NOT NULL); "
			   "CREATE INDEX IF NOT EXISTS t_txn ON t(txn); "
			   "CREATE TABLE IF NOT EXISTS ledger(k INTEGER "
			   "PRIMARY KEY CHECK (k = 1), txns INTEGER NOT NULL, "
			   "rows INTEGER NOT NULL); "
			   "INSERT OR IGNORE INTO ledger VALUES(1, 0, 0); "
			   "COMMIT") != SQLITE_OK ||
	    test_cvfs_int(db, "SELECT txns FROM ledger", &txn) != SQLITE_OK ||
	    test_cvfs_int(db, "SELECT coalesce(max(id), 0) FROM t",
			  &id) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?1, ?2, ?3, "
			       TEST_CRASH_BODY_SQL("?1") ")", -1, &insert,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE t SET body = body WHERE id > "
			       "?1 - 400 AND id % 7 = 0", -1, &touch,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE ledger SET txns = txns + 1, "
			       "rows = rows + ?1", -1, &ledger,
			       NULL) != SQLITE_OK)
		_exit(2);
	for (int i = 0; i < TEST_CRASH_CHILD_MAX_TXNS; i++) {
		int rows = 1 + rand_r(&seed) % TEST_CRASH_MAX_ROWS_PER_TXN;

		txn++;
		if (test_cvfs_exec(db, "BEGIN") != SQLITE_OK)
			_exit(3);
		for (int r = 0; r < rows; r++) {
			sqlite3_bind_int64(insert, 1, id + 1 + r);
			sqlite3_bind_int64(insert, 2, txn);
			sqlite3_bind_int(insert, 3, rows);
			if (sqlite3_step(insert) != SQLITE_DONE)
				_exit(4);
			sqlite3_reset(insert);
		}
		/* Rewrites older pages too, not only the newest ones (a
		   bounded number: the run must not slow down as it grows). */
		if (rand_r(&seed) % 5 == 0) {
			sqlite3_bind_int64(touch, 1, id);
			if (sqlite3_step(touch) != SQLITE_DONE)
				_exit(5);
			sqlite3_reset(touch);
		}
		sqlite3_bind_int(ledger, 1, rows);
		if (sqlite3_step(ledger) != SQLITE_DONE)
			_exit(6);
		sqlite3_reset(ledger);
		if (test_cvfs_exec(db, "COMMIT") != SQLITE_OK)
			_exit(6);
		id += rows;
		/* Reported only once COMMIT has returned. */
		if (write(fd, &txn, sizeof(txn)) != sizeof(txn))
			_exit(7);
	}
	_exit(0);
}

/* Reads one report; 1 with it, 0 at EOF (the child is gone), -1 if the
   child hangs or the pipe fails. */
static int test_crash_read_report(int fd, sqlite3_int64 *txn_r)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(*txn_r)) {
		if (poll(&pfd, 1, TEST_CRASH_HANG_MSECS) <= 0)
			return -1;
		n = read(fd, (char *)txn_r + got, sizeof(*txn_r) - got);
		if (n == 0 && got == 0)
			return 0;
		if (n <= 0)
			return -1;
		got += n;
	}
	return 1;
}

/* Checks the file after a kill; see the top of the file. */
static bool test_crash_verify(const char *path,
			      struct test_crash_state *state,
			      sqlite3_int64 *txns_r)
{
	sqlite3_int64 schema = -1, txns = -1, rows = -1, count = -1;
	sqlite3_int64 distinct = -1, max = -1, partial = -1, bad = -1;
	sqlite3_int64 ok = 0;
	sqlite3_stmt *stmt;
	sqlite3 *db;
	bool good;

	*txns_r = 0;
	if (test_cvfs_file_size(path) <= 0) {
		/* Killed before SQLite created or wrote the file. */
		state->rounds_without_file++;
		return state->committed == 0;
	}
	if (cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE, test_cvfs_key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK)
		return false;
	if (test_cvfs_int(db, "SELECT count(*) FROM sqlite_schema WHERE "
			  "name IN ('t', 'ledger')", &schema) != SQLITE_OK ||
	    (schema != 0 && schema != 2)) {
		cvfs_close(&db);
		return false;
	}
	if (schema == 0) {
		/* Killed before the schema's commit. */
		cvfs_close(&db);
		state->rounds_without_schema++;
		return state->committed == 0;
	}
	/* The whole file fits the cache: each page is decrypted once. */
	good = test_cvfs_exec(db, "PRAGMA cache_size=-65536") == SQLITE_OK &&
		sqlite3_prepare_v2(db, "SELECT (SELECT txns FROM ledger), "
				   "(SELECT rows FROM ledger), count(*), "
				   "count(DISTINCT txn), coalesce(max(txn), 0), "
				   "(SELECT count(*) FROM (SELECT txn FROM t "
				   "GROUP BY txn HAVING count(*) != max(n) OR "
				   "min(n) != max(n))), "
				   "coalesce(sum(body IS NOT "
				   TEST_CRASH_BODY_SQL("id") "), 0) FROM t",
				   -1, &stmt, NULL) == SQLITE_OK;
	if (good && sqlite3_step(stmt) == SQLITE_ROW) {
		txns = sqlite3_column_int64(stmt, 0);
		rows = sqlite3_column_int64(stmt, 1);
		count = sqlite3_column_int64(stmt, 2);
		distinct = sqlite3_column_int64(stmt, 3);
		max = sqlite3_column_int64(stmt, 4);
		partial = sqlite3_column_int64(stmt, 5);
		bad = sqlite3_column_int64(stmt, 6);
	}
	if (good)
		sqlite3_finalize(stmt);
	good = good && test_cvfs_int(db, "SELECT integrity_check = 'ok' "
				     "FROM pragma_integrity_check", &ok) ==
		SQLITE_OK;
	cvfs_close(&db);
	*txns_r = txns;
	/* (1) every reported transaction is there; (2) transactions 1..txns
	   are there, no more, no gap; (3) each one whole and the ledger
	   agrees; (4) every body intact; (5) the b-trees check out. */
	return good &&
		txns >= state->committed && /* (1) */
		distinct == txns && max == txns && /* (2) */
		partial == 0 && count == rows && /* (3) */
		bad == 0 && /* (4) */
		ok == 1; /* (5) */
}

/* One child, killed after its k-th report plus delay_us, or (early)
   before it even opens the file. Returns whether it died of the SIGKILL
   (anything else is its own failure). */
static bool test_crash_round(const char *path, unsigned int k, long delay_us,
			     bool early, unsigned int child_seed,
			     struct test_crash_state *state,
			     unsigned int *reports_r)
{
	struct timespec delay = {
		.tv_sec = delay_us / 1000000,
		.tv_nsec = delay_us % 1000000 * 1000,
	};
	sqlite3_int64 txn;
	int fds[2], go[2] = { -1, -1 }, status, ret = 1;
	pid_t pid;

	*reports_r = 0;
	if (pipe(fds) < 0 || (early && pipe(go) < 0))
		return false;
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		if (early)
			close(go[1]);
		test_crash_child(path, fds[1], go[0], child_seed);
	}
	close(fds[1]);
	if (early)
		close(go[0]);
	if (pid < 0) {
		close(fds[0]);
		return false;
	}
	while (!early && *reports_r < k && (ret = test_crash_read_report(fds[0],
							      &txn)) > 0) {
		(*reports_r)++;
		if (txn > state->committed)
			state->committed = txn;
	}
	if (ret > 0 && !early)
		nanosleep(&delay, NULL);
	kill(pid, SIGKILL);
	if (early)
		close(go[1]);
	if (waitpid(pid, &status, 0) != pid)
		status = 0;
	/* Reports written before the kill count as commits too. */
	while (ret > 0 && test_crash_read_report(fds[0], &txn) > 0) {
		(*reports_r)++;
		if (txn > state->committed)
			state->committed = txn;
	}
	close(fds[0]);
	if (WIFEXITED(status))
		test_diag("child exited %d after %u reports",
			  WEXITSTATUS(status), *reports_r);
	return ret >= 0 && WIFSIGNALED(status) &&
		WTERMSIG(status) == SIGKILL;
}

static void test_crash_sigkill_loop(void)
{
	struct test_crash_state state;
	char path[TEST_CVFS_PATH_MAX], name[96];
	unsigned int seed = TEST_CRASH_SEED;
	unsigned int failures = 0, kills = 0, reports = 0, waited = 0;
	sqlite3_int64 txns = 0;

	memset(&state, 0, sizeof(state));
	snprintf(name, sizeof(name), "crash %u SIGKILLs, seed %u",
		 TEST_CRASH_ROUNDS, TEST_CRASH_SEED);
	test_begin(name);
	test_cvfs_path(path, "crash.db");
	test_cvfs_unlink_db(path);
	for (unsigned int round = 0; round < TEST_CRASH_ROUNDS; round++) {
		unsigned int child_seed = rand_r(&seed);
		unsigned int k = rand_r(&seed) % TEST_CRASH_MAX_REPORTS;
		long delay_us = rand_r(&seed) % TEST_CRASH_MAX_DELAY_US;
		unsigned int got;

		if (test_crash_round(path, k, delay_us, round == 0,
				     child_seed, &state, &got))
			kills++;
		else
			test_diag("round %u: the child did not die of the "
				  "SIGKILL after report %u", round, k);
		reports += got;
		if (round != 0)
			waited += k;
		if (!test_crash_verify(path, &state, &txns)) {
			test_diag("round %u (k %u, %ld us): %lld reported, "
				  "%lld found", round, k, delay_us,
				  (long long)state.committed,
				  (long long)txns);
			failures++;
		}
	}
	test_diag("%u kills, %u reports (%u waited for), %lld transactions "
		  "at the end; %u rounds before the file, %u before the "
		  "schema", kills, reports, waited, (long long)txns,
		  state.rounds_without_file, state.rounds_without_schema);
	/* Every child died of its SIGKILL, after the reports waited for. */
	test_assert(kills == TEST_CRASH_ROUNDS);
	test_assert(reports >= waited);
	/* Round 0 checked the case of no file at all. */
	test_assert(state.rounds_without_file >= 1);
	test_assert(failures == 0);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_crash_sigkill_loop,
		NULL
	};

	return test_cvfs_run(cases);
}
