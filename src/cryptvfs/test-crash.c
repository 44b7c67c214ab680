/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* A child writing transactions in WAL mode (synchronous=NORMAL, frequent
   checkpoints) is SIGKILLed at random points; after each kill every row
   it reported committed is there, no transaction is half there, and
   PRAGMA integrity_check passes. Fixed seed: the run is repeatable. */

#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <sys/wait.h>

#include "test-cryptvfs-common.h"

#define TEST_CRASH_SEED 20240603u
#define TEST_CRASH_ROUNDS 220
#define TEST_CRASH_MAX_DELAY_US 25000
#define TEST_CRASH_ROWS_PER_TXN 7
/* Bounds the child if the kill never comes. */
#define TEST_CRASH_CHILD_MAX_TXNS 100000

/* Body of row id: its length and bytes follow from id alone. */
#define TEST_CRASH_BODY_SQL(id) \
	"printf('%.*c', " id " * 37 % 1500 + 10, char(48 + " id " % 40))"

static void test_crash_child(const char *path, int fd, unsigned int seed)
{
	sqlite3_stmt *insert = NULL;
	sqlite3_int64 next = 0;
	sqlite3 *db;

	if (cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK ||
	    test_cvfs_exec(db, "PRAGMA journal_mode=WAL; "
			   "PRAGMA synchronous=NORMAL; "
			   "PRAGMA wal_autocheckpoint=16; "
			   "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY "
			   "KEY, body BLOB)") != SQLITE_OK ||
	    test_cvfs_int(db, "SELECT coalesce(max(id) + 1, 0) FROM t",
			  &next) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?1, "
			       TEST_CRASH_BODY_SQL("?1") ")", -1, &insert,
			       NULL) != SQLITE_OK)
		_exit(2);
	for (int txn = 0; txn < TEST_CRASH_CHILD_MAX_TXNS; txn++) {
		int rows = 1 + rand_r(&seed) % TEST_CRASH_ROWS_PER_TXN;

		if (test_cvfs_exec(db, "BEGIN") != SQLITE_OK)
			_exit(3);
		for (int i = 0; i < rows; i++) {
			sqlite3_bind_int64(insert, 1, next + i);
			if (sqlite3_step(insert) != SQLITE_DONE)
				_exit(4);
			sqlite3_reset(insert);
		}
		if (rand_r(&seed) % 5 == 0 &&
		    test_cvfs_exec(db, "UPDATE t SET body=body WHERE id % 11 = "
				   "0") != SQLITE_OK)
			_exit(5);
		if (test_cvfs_exec(db, "COMMIT") != SQLITE_OK)
			_exit(6);
		next += rows;
		/* Reported only once COMMIT has returned. */
		if (write(fd, &next, sizeof(next)) != sizeof(next))
			_exit(7);
	}
	_exit(0);
}

/* Returns the highest count the child reported committed. */
static sqlite3_int64 test_crash_drain(int fd)
{
	sqlite3_int64 value, committed = 0;

	while (read(fd, &value, sizeof(value)) == sizeof(value))
		committed = value;
	return committed;
}

static bool test_crash_verify(const char *path, sqlite3_int64 committed,
			      sqlite3_int64 *rows_r)
{
	sqlite3_int64 count = -1, max = -2, bad = -1, ok = 0;
	sqlite3 *db;
	bool good;

	*rows_r = 0;
	if (cvfs_open_v2(path, &db, SQLITE_OPEN_READWRITE, test_cvfs_key,
			 CVFS_KEY_BYTES, NULL) != SQLITE_OK)
		return false;
	if (test_cvfs_int(db, "SELECT count(*) FROM sqlite_schema WHERE "
			  "name='t'", &count) == SQLITE_OK && count == 0) {
		/* Killed before the table's first commit. */
		cvfs_close(&db);
		return committed == 0;
	}
	good = test_cvfs_int(db, "SELECT count(*) FROM t", &count) ==
		SQLITE_OK &&
		test_cvfs_int(db, "SELECT coalesce(max(id), -1) FROM t",
			      &max) == SQLITE_OK &&
		test_cvfs_int(db, "SELECT count(*) FROM t WHERE body IS NOT "
			      TEST_CRASH_BODY_SQL("id"), &bad) == SQLITE_OK &&
		test_cvfs_int(db, "SELECT integrity_check = 'ok' FROM "
			      "pragma_integrity_check", &ok) == SQLITE_OK;
	cvfs_close(&db);
	*rows_r = count;
	/* (1) every reported commit is there, (2) no gap: nothing half
	   applied, (3) every body intact, (4) the b-trees check out. */
	return good && count >= committed && /* (1) */
		count == max + 1 && /* (2) */
		bad == 0 && /* (3) */
		ok == 1; /* (4) */
}

static void test_crash_sigkill_loop(void)
{
	char path[TEST_CVFS_PATH_MAX], name[96];
	unsigned int seed = TEST_CRASH_SEED;
	sqlite3_int64 rows = 0, committed = 0, reported;
	unsigned int failures = 0, kills = 0;

	snprintf(name, sizeof(name), "crash %u SIGKILLs, seed %u",
		 TEST_CRASH_ROUNDS, TEST_CRASH_SEED);
	test_begin(name);
	test_cvfs_path(path, "crash.db");
	test_cvfs_unlink_db(path);
	for (unsigned int round = 0; round < TEST_CRASH_ROUNDS; round++) {
		struct timespec delay;
		unsigned int child_seed = rand_r(&seed);
		long us = rand_r(&seed) % TEST_CRASH_MAX_DELAY_US;
		int fds[2], status;
		pid_t pid;

		if (pipe(fds) < 0) {
			failures++;
			break;
		}
		pid = fork();
		if (pid == 0) {
			close(fds[0]);
			test_crash_child(path, fds[1], child_seed);
		}
		close(fds[1]);
		if (pid < 0) {
			close(fds[0]);
			failures++;
			break;
		}
		delay.tv_sec = 0;
		delay.tv_nsec = us * 1000;
		nanosleep(&delay, NULL);
		kill(pid, SIGKILL);
		if (waitpid(pid, &status, 0) == pid && WIFSIGNALED(status))
			kills++;
		else
			test_diag("round %u: child exited %d", round,
				  WEXITSTATUS(status));
		reported = test_crash_drain(fds[0]);
		close(fds[0]);
		if (reported > committed)
			committed = reported;
		/* The child starts from max(id)+1, so the reported count is
		   a total over all rounds. */
		if (!test_crash_verify(path, committed, &rows)) {
			test_diag("round %u: %lld committed, %lld rows", round,
				  (long long)committed, (long long)rows);
			failures++;
		}
	}
	test_diag("%u kills, %lld rows at the end", kills, (long long)rows);
	test_assert(kills >= 200);
	test_assert(failures == 0);
	/* The kills did land after real work. */
	test_assert(rows > 1000);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_crash_sigkill_loop,
		NULL
	};
	int ret;

	test_cvfs_dir_init();
	ret = test_run(cases);
	test_cvfs_dir_cleanup();
	return ret;
}
