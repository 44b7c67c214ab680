/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The sending counters: the hour's one-minute buckets (pure, exact
   clock values) and the TDB behind them (a real TDB in a temporary
   directory, two handles standing in for two submission processes). */

#include "launchpad-private.h"
#include "tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* a minute boundary, far from 0 */
#define T0 ((time_t)1800000000 - (1800000000 % 60))

static char test_dir[] = "/tmp/lp-sendlimit-XXXXXX";
static char test_path[128];

static void test_window(void)
{
	struct lp_send_window w = { .version = LP_SEND_WINDOW_VERSION };
	unsigned int i;

	test_begin("window: one hour of minutes");
	test_assert(lp_send_window_count(&w, T0) == 0);
	lp_send_window_add(&w, T0);
	lp_send_window_add(&w, T0 + 59);
	test_assert(lp_send_window_count(&w, T0 + 59) == 2);
	lp_send_window_add(&w, T0 + 60);
	test_assert(lp_send_window_count(&w, T0 + 60) == 3);
	/* the minute of T0 counts until the hour after it has passed */
	test_assert(lp_send_window_count(&w, T0 + 3599) == 3);
	test_assert(lp_send_window_count(&w, T0 + 3600) == 1);
	test_assert(lp_send_window_count(&w, T0 + 3660) == 0);
	/* adding after a gap clears what the hour no longer holds */
	lp_send_window_add(&w, T0 + 3600);
	test_assert(lp_send_window_count(&w, T0 + 3600) == 2);
	lp_send_window_add(&w, T0 + 100000);
	test_assert(lp_send_window_count(&w, T0 + 100000) == 1);
	for (i = 0; i < LP_SEND_WINDOW_MINUTES; i++)
		test_assert_idx(w.counts[i] <= 1, i);
	/* a clock that went back counts in the latest bucket and never
	   reads a bucket outside the hour */
	lp_send_window_add(&w, T0 + 99000);
	test_assert(lp_send_window_count(&w, T0 + 100000) == 2);
	test_assert(lp_send_window_count(&w, T0 + 99000) == 0);
	/* near the epoch: no negative minute is touched */
	memset(&w, 0, sizeof(w));
	lp_send_window_add(&w, 5);
	test_assert(lp_send_window_count(&w, 5) == 1);
	test_assert(lp_send_window_count(&w, -5) == 1);
	test_end();
}

/* A second submission process (closing its copy of *parent first):
   takes one message of name at now and
   exits with the result (0, 1, or 2 for -1). */
static int test_take_in_child(struct lp_sendlimit **parent,
			      const char *name, unsigned int limit,
			      time_t now)
{
	struct lp_sendlimit *sl;
	struct lp_error err;
	int status, ret;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* TDB refuses a second open of a file in one process */
		lp_sendlimit_close(parent);
		if (lp_sendlimit_open(test_path, &sl, &err) < 0)
			_exit(3);
		ret = lp_sendlimit_take(sl, name, limit, now, &err);
		lp_sendlimit_close(&sl);
		_exit(ret < 0 ? 2 : ret);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -2;
	return WEXITSTATUS(status) == 2 ? -1 : WEXITSTATUS(status);
}

static void test_take(void)
{
	struct lp_sendlimit *a;
	struct lp_error err;
	unsigned int count, i;
	struct stat st;

	test_begin("take: limit per hour, shared by processes");
	test_assert(lp_sendlimit_open(test_path, &a, &err) == 0);
	test_assert(stat(test_path, &st) == 0 && (st.st_mode & 0777) == 0600);
	for (i = 0; i < 3; i++) {
		test_assert_idx((i % 2 == 0 ?
				 lp_sendlimit_take(a, "alice", 3, T0 + i,
						   &err) :
				 test_take_in_child(&a, "alice", 3, T0 + i)) == 1,
				i);
	}
	test_assert(lp_sendlimit_take(a, "alice", 3, T0 + 10, &err) == 0);
	test_assert(test_take_in_child(&a, "alice", 3, T0 + 10) == 0);
	test_assert(lp_sendlimit_count(a, "alice", T0 + 10, &count,
				       &err) == 0 && count == 3);
	/* another name has its own counter; 0 is no limit */
	test_assert(lp_sendlimit_take(a, "kim", 3, T0, &err) == 1);
	for (i = 0; i < 10; i++)
		test_assert_idx(lp_sendlimit_take(a, "sam", 0, T0, &err) == 1,
				i);
	test_assert(lp_sendlimit_count(a, "sam", T0, &count, &err) == 0 &&
		    count == 10);
	/* an hour later alice may send again */
	test_assert(test_take_in_child(&a, "alice", 3, T0 + 3600) == 1);
	/* hostile names never become keys */
	test_assert(lp_sendlimit_take(a, "../x", 3, T0, &err) == -1);
	test_assert(lp_sendlimit_count(a, "", T0, &count, &err) == -1);
	lp_sendlimit_close(&a);
	test_assert(a == NULL);
	lp_sendlimit_close(&a);
	/* counters survive a reopen */
	test_assert(lp_sendlimit_open(test_path, &a, &err) == 0);
	test_assert(lp_sendlimit_count(a, "kim", T0, &count, &err) == 0 &&
		    count == 1);
	test_assert(lp_sendlimit_count(a, "alice", T0 + 3600, &count,
				       &err) == 0 && count == 1);
	lp_sendlimit_close(&a);
	test_end();
}

static void test_corrupt(void)
{
	struct lp_sendlimit *sl;
	struct lp_error err;
	struct tdb_context *tdb;
	unsigned int count;
	TDB_DATA key = { (unsigned char *)"send/alice", 10 };
	TDB_DATA junk = { (unsigned char *)"junk", 4 };

	test_begin("corrupt record: a miss, rewritten");
	tdb = tdb_open(test_path, 0, TDB_DEFAULT, O_RDWR, 0600);
	test_assert(tdb != NULL);
	test_assert(tdb_store(tdb, key, junk, TDB_REPLACE) == 0);
	tdb_close(tdb);
	test_assert(lp_sendlimit_open(test_path, &sl, &err) == 0);
	test_assert(lp_sendlimit_count(sl, "alice", T0, &count, &err) == 0 &&
		    count == 0);
	test_assert(lp_sendlimit_take(sl, "alice", 1, T0, &err) == 1);
	test_assert(lp_sendlimit_take(sl, "alice", 1, T0, &err) == 0);
	lp_sendlimit_close(&sl);

	/* a file that is not a TDB (a torn first write): TDB starts it
	   over, the counters start from zero */
	test_assert(unlink(test_path) == 0);
	FILE *f = fopen(test_path, "w");
	test_assert(f != NULL);
	for (unsigned int i = 0; i < 4096; i++)
		fputc('x', f);
	fclose(f);
	test_assert(lp_sendlimit_open(test_path, &sl, &err) == 0);
	test_assert(lp_sendlimit_take(sl, "alice", 1, T0, &err) == 1);
	test_assert(lp_sendlimit_count(sl, "alice", T0, &count, &err) == 0 &&
		    count == 1);
	lp_sendlimit_close(&sl);

	/* a directory that cannot hold it: an error naming the path */
	test_assert(lp_sendlimit_open("/nonexistent-dir/send.tdb", &sl,
				      &err) == -1);
	test_assert(strstr(err.text, "/nonexistent-dir/send.tdb") != NULL);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_window,
		test_take,
		test_corrupt,
		NULL
	};
	int ret;

	if (mkdtemp(test_dir) == NULL)
		return 1;
	snprintf(test_path, sizeof(test_path), "%s/send.tdb", test_dir);
	ret = test_run(tests);
	(void)unlink(test_path);
	(void)rmdir(test_dir);
	return ret;
}
