/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "test-keyring.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

/* kr_keyfile_begin/commit/rollback: changes of one keyfile from several
   processes are serialised, so none is lost.  Real processes race on a
   real file; they synchronise on pipes and /proc, never on sleeps. */

#define TEST_RACE_PROCS 4
#define TEST_RACE_ADDS 16	/* per process; every second one removed */
#define TEST_ACTIVATE_PROCS 6
#define TEST_ACTIVATE_ROUNDS 10
#define TEST_WAIT_MSECS 60000
#define TEST_LABEL_MAX 32

static char test_dir[PATH_MAX];

static void test_path(char *buf, const char *name)
{
	if (snprintf(buf, PATH_MAX, "%s/%s", test_dir, name) >= PATH_MAX)
		exit(99);
}

/* buf = a + b, or the test bails out. */
static void test_concat(char *buf, const char *a, const char *b)
{
	if (snprintf(buf, PATH_MAX, "%s%s", a, b) >= PATH_MAX)
		exit(99);
}

/* Pipe I/O of one byte; the test cannot go on without it. */
static void test_send(int fd, char byte)
{
	if (write(fd, &byte, 1) != 1)
		_exit(98);
}

static char test_recv(int fd)
{
	char byte = '\0';

	if (read(fd, &byte, 1) < 0)
		_exit(98);
	return byte;
}

/* A keyfile with no slots and its keys, for the race tests. */
static void test_new_keyfile(const char *path, struct kr_keys **keys_r)
{
	struct kr_keyfile *kf;
	struct kr_error err;

	if (kr_keyfile_create("alice@ubuntu.com", NULL, &kf, keys_r,
			      &err) < 0 ||
	    kr_keyfile_write(kf, path, (uid_t)-1, (gid_t)-1, &err) < 0) {
		printf("Bail out! %s\n", err.text);
		exit(99);
	}
	kr_keyfile_free(&kf);
}

static bool test_has_label(const struct kr_keyfile *kf, const char *label)
{
	struct kr_slot_info info;

	for (unsigned int i = 0; i < kr_keyfile_slot_count(kf); i++) {
		kr_keyfile_slot_info(kf, i, &info);
		if (strcmp(info.label, label) == 0)
			return true;
	}
	return false;
}

static void test_lock_basics(void)
{
	char path[PATH_MAX], lock[PATH_MAX], missing[PATH_MAX];
	struct kr_keyfile_txn *txn;
	struct kr_keyfile *kf, *kf2;
	struct kr_keys *keys;
	struct kr_error err;
	struct stat st;
	unsigned int id;

	test_begin("keyfile lock: begin, commit, rollback");
	test_path(path, "basic.keys");
	test_concat(lock, path, KR_LOCK_SUFFIX);
	test_path(missing, "no-such-dir/" KR_KEYFILE_NAME);

	/* the directory must exist: nothing is created on the way */
	test_assert(kr_keyfile_begin(missing, (uid_t)-1, (gid_t)-1, 100,
				     &txn, &kf, &err) == -1);
	test_assert(err.kind == KR_ERR_NOT_FOUND && txn == NULL);

	/* no keyfile yet: 0, holding the lock; the lock file is 0600 */
	test_assert(kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1, 100, &txn,
				     &kf, &err) == 0);
	test_assert(txn != NULL && kf == NULL);
	test_assert(stat(lock, &st) == 0 && (st.st_mode & 0777) == 0600);
	test_assert(kr_keyfile_create("alice@ubuntu.com", NULL, &kf, &keys,
				      &err) == 0);
	test_assert(kr_slot_add_password(kf, keys, "laptop",
					 &test_params_fast, "pw one", &id,
					 &err) == 0);
	test_assert(kr_keyfile_commit(&txn, kf, &err) == 0 && txn == NULL);
	kr_keyfile_free(&kf);

	/* read back under the lock; a rollback writes nothing */
	test_assert(kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1, 100, &txn,
				     &kf, &err) == 1);
	test_assert(kf != NULL && test_has_label(kf, "laptop"));
	test_assert(kr_slot_remove(kf, id) == 1);
	kr_keyfile_rollback(&txn);
	test_assert(txn == NULL);
	kr_keyfile_rollback(&txn);	/* NULL-safe */
	test_assert(kr_keyfile_read(path, &kf2, &err) == 1 &&
		    test_has_label(kf2, "laptop"));
	kr_keyfile_free(&kf2);
	kr_keyfile_free(&kf);

	/* a corrupt keyfile: -1, and the lock is not kept */
	test_assert(test_file_write(path, "garbage", 7) == 0);
	test_assert(kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1, 100, &txn,
				     &kf, &err) == -1);
	test_assert(err.kind == KR_ERR_CORRUPT && txn == NULL);
	test_assert(kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 100, &txn,
				    &err) == 0);
	kr_keyfile_rollback(&txn);

	/* a symlink at the lock path is not followed */
	test_assert(unlink(lock) == 0 && symlink(missing, lock) == 0);
	test_assert(kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 100, &txn,
				    &err) == -1);
	test_assert(err.kind == KR_ERR_IO && txn == NULL);
	test_assert(lstat(missing, &st) < 0);
	(void)unlink(lock);
	(void)unlink(path);
	kr_keys_free(&keys);
	test_end();
}

/* A holder that never lets go makes a waiter fail after its bound, with
   a clear error; once it lets go the waiter gets through. */
static void test_lock_wait_bounded(void)
{
	char path[PATH_MAX];
	struct kr_keyfile_txn *txn;
	struct kr_keyfile *kf;
	struct kr_error err;
	int held[2], release[2], status;
	pid_t pid;

	test_begin("keyfile lock: bounded wait");
	test_path(path, "held.keys");
	if (pipe(held) < 0 || pipe(release) < 0)
		exit(99);
	pid = fork();
	if (pid == 0) {
		close(held[0]);
		close(release[1]);
		if (kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 1000, &txn,
				    &err) < 0)
			_exit(1);
		test_send(held[1], 'h');
		(void)test_recv(release[0]);
		kr_keyfile_rollback(&txn);
		_exit(0);
	}
	close(held[1]);
	close(release[0]);
	test_assert(test_recv(held[0]) == 'h');
	test_assert(kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1, 150, &txn,
				     &kf, &err) == -1);
	test_assert(err.kind == KR_ERR_LOCKED && txn == NULL);
	test_assert(strstr(err.text, "still locked") != NULL);
	test_send(release[1], 'r');
	test_assert(waitpid(pid, &status, 0) == pid &&
		    WIFEXITED(status) && WEXITSTATUS(status) == 0);
	test_assert(kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1,
				     TEST_WAIT_MSECS, &txn, &kf, &err) == 0);
	kr_keyfile_rollback(&txn);
	close(held[0]);
	close(release[1]);
	test_end();
}

/* One racer: adds TEST_RACE_ADDS slots, removing every even-numbered one
   again once the next is in.  Exit 0 when every change saw the state it
   expected (a removed slot present, an added one there). */
static int test_race_child(const char *path, const struct kr_keys *keys,
			   unsigned int proc)
{
	unsigned int ids[TEST_RACE_ADDS];
	char label[TEST_LABEL_MAX], password[TEST_LABEL_MAX];
	struct kr_keyfile_txn *txn;
	struct kr_keyfile *kf;
	struct kr_error err;

	for (unsigned int r = 0; r < TEST_RACE_ADDS; r++) {
		snprintf(label, sizeof(label), "p%ur%u", proc, r);
		snprintf(password, sizeof(password), "password %u %u",
			 proc, r);
		if (kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1,
				     TEST_WAIT_MSECS, &txn, &kf, &err) != 1 ||
		    kr_slot_add_password(kf, keys, label, &test_params_fast,
					 password, &ids[r], &err) < 0 ||
		    kr_keyfile_commit(&txn, kf, &err) < 0)
			return 2;
		kr_keyfile_free(&kf);
		if (r % 2 == 0)
			continue;
		if (kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1,
				     TEST_WAIT_MSECS, &txn, &kf, &err) != 1)
			return 3;
		/* our last two adds must both be there */
		if (kr_keyfile_slot_find(kf, ids[r]) == NULL ||
		    kr_slot_remove(kf, ids[r - 1]) != 1) {
			kr_keyfile_rollback(&txn);
			kr_keyfile_free(&kf);
			return 4;
		}
		if (kr_keyfile_commit(&txn, kf, &err) < 0)
			return 5;
		kr_keyfile_free(&kf);
	}
	return 0;
}

static void test_lock_race_add_remove(void)
{
	char path[PATH_MAX], label[TEST_LABEL_MAX];
	pid_t pids[TEST_RACE_PROCS];
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_error err;
	int go[2], status;

	test_begin("keyfile lock: racing adds and removes lose nothing");
	test_path(path, "race.keys");
	test_new_keyfile(path, &keys);
	if (pipe(go) < 0)
		exit(99);
	for (unsigned int p = 0; p < TEST_RACE_PROCS; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			close(go[1]);
			/* all start together: the parent closes the pipe */
			(void)test_recv(go[0]);
			_exit(test_race_child(path, keys, p));
		}
	}
	close(go[0]);
	close(go[1]);
	for (unsigned int p = 0; p < TEST_RACE_PROCS; p++) {
		test_assert_idx(waitpid(pids[p], &status, 0) == pids[p] &&
				WIFEXITED(status) &&
				WEXITSTATUS(status) == 0, p);
	}
	test_assert(kr_keyfile_read(path, &kf, &err) == 1);
	test_assert(kr_keyfile_slot_count(kf) ==
		    TEST_RACE_PROCS * TEST_RACE_ADDS / 2);
	for (unsigned int p = 0; p < TEST_RACE_PROCS; p++) {
		for (unsigned int r = 0; r < TEST_RACE_ADDS; r++) {
			snprintf(label, sizeof(label), "p%ur%u", p, r);
			test_assert_idx(test_has_label(kf, label) == (r % 2 == 1),
					p * 100 + r);
		}
	}
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	(void)unlink(path);
	test_end();
}

/* Racing first activations: exactly one creates the keyfile (one master
   key); the others find it and create nothing. */
static void test_lock_first_activation(void)
{
	char path[PATH_MAX], label[TEST_LABEL_MAX];
	struct kr_slot_info info;
	struct kr_keyfile_txn *txn;
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_error err;
	pid_t pids[TEST_ACTIVATE_PROCS];
	int go[2], results[2], status;

	test_begin("keyfile lock: racing first activations make one keyfile");
	test_path(path, "activate.keys");
	for (unsigned int round = 0; round < TEST_ACTIVATE_ROUNDS; round++) {
		unsigned int created = 0, skipped = 0, creator = 0;
		char result;

		(void)unlink(path);
		if (pipe(go) < 0 || pipe(results) < 0)
			exit(99);
		for (unsigned int p = 0; p < TEST_ACTIVATE_PROCS; p++) {
			pids[p] = fork();
			if (pids[p] != 0)
				continue;
			close(go[1]);
			close(results[0]);
			(void)test_recv(go[0]);
			result = 'E';
			int ret = kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1,
						   TEST_WAIT_MSECS, &txn, &kf,
						   &err);
			if (ret == 0) {
				unsigned int id;

				snprintf(label, sizeof(label), "creator %u", p);
				if (kr_keyfile_create("alice@ubuntu.com", NULL,
						      &kf, &keys, &err) == 0 &&
				    kr_slot_add_password(kf, keys, label,
							 &test_params_fast,
							 label, &id, &err) == 0 &&
				    kr_keyfile_commit(&txn, kf, &err) == 0)
					result = (char)('0' + p);
			} else if (ret == 1) {
				kr_keyfile_rollback(&txn);
				result = 'S';
			}
			test_send(results[1], result);
			_exit(0);
		}
		close(go[0]);
		close(results[1]);
		close(go[1]);
		while (read(results[0], &result, 1) == 1) {
			if (result == 'S') {
				skipped++;
			} else if (result >= '0' && result <= '9') {
				created++;
				creator = (unsigned int)(result - '0');
			}
		}
		close(results[0]);
		for (unsigned int p = 0; p < TEST_ACTIVATE_PROCS; p++)
			(void)waitpid(pids[p], &status, 0);
		test_assert_idx(created == 1 &&
				skipped == TEST_ACTIVATE_PROCS - 1, round);
		snprintf(label, sizeof(label), "creator %u", creator);
		test_assert_idx(kr_keyfile_read(path, &kf, &err) == 1 &&
				kr_keyfile_slot_count(kf) == 1, round);
		if (kf != NULL) {
			kr_keyfile_slot_info(kf, 0, &info);
			test_assert_strcmp(info.label, label);
			kr_keyfile_free(&kf);
		}
	}
	(void)unlink(path);
	test_end();
}

/* Whether pid has path open (its /proc fd table). */
static bool test_proc_has_open(pid_t pid, const char *path)
{
	char dir[64], link[PATH_MAX + 64], target[PATH_MAX];
	struct dirent *de;
	bool found = false;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%ld/fd", (long)pid);
	if ((d = opendir(dir)) == NULL)
		return false;
	while (!found && (de = readdir(d)) != NULL) {
		ssize_t len;

		snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
		len = readlink(link, target, sizeof(target) - 1);
		if (len > 0) {
			target[len] = '\0';
			found = strcmp(target, path) == 0;
		}
	}
	closedir(d);
	return found;
}

/* A reset moves the home (and the lock file in it) aside while another
   writer waits on the old lock file: that waiter must lock the new home's
   file, not the moved one, or it would run beside the next holder. */
static void test_lock_home_moved(void)
{
	char home[PATH_MAX], old_home[PATH_MAX], path[PATH_MAX];
	char lock[PATH_MAX], old_path[PATH_MAX];
	struct kr_keyfile_txn *txn_old, *txn_new, *txn;
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_error err;
	struct timespec delay = { .tv_nsec = 300 * 1000000L };
	unsigned int id;
	int go[2], status;
	pid_t pid;

	test_begin("keyfile lock: a waiter follows a moved home");
	test_path(home, "home");
	test_path(old_home, "home.reset");
	test_concat(path, home, "/" KR_KEYFILE_NAME);
	test_concat(lock, path, KR_LOCK_SUFFIX);
	test_concat(old_path, old_home, "/" KR_KEYFILE_NAME);
	test_assert(mkdir(home, 0700) == 0);
	test_new_keyfile(path, &keys);
	/* forked first: a child would share an inherited lock */
	if (pipe(go) < 0)
		exit(99);
	pid = fork();
	if (pid == 0) {
		close(go[1]);
		(void)test_recv(go[0]);
		/* the waiter: adds "waiter" to whatever keyfile it finds */
		if (kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1,
				     TEST_WAIT_MSECS, &txn, &kf, &err) != 1 ||
		    kr_slot_add_password(kf, keys, "waiter", &test_params_fast,
					 "waiter pw", &id, &err) < 0 ||
		    kr_keyfile_commit(&txn, kf, &err) < 0)
			_exit(1);
		_exit(0);
	}
	close(go[0]);
	test_assert(kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 100, &txn_old,
				    &err) == 0);
	test_send(go[1], 'g');
	close(go[1]);
	/* wait until the waiter holds the old lock file open */
	for (unsigned int i = 0; i < 10000 && !test_proc_has_open(pid, lock);
	     i++) {
		struct timespec ts = { .tv_nsec = 1000000L };

		nanosleep(&ts, NULL);
	}
	test_assert(test_proc_has_open(pid, lock));
	/* the reset: move the home aside, lock and fill the new one */
	test_assert(rename(home, old_home) == 0 && mkdir(home, 0700) == 0);
	test_assert(kr_keyfile_begin(path, (uid_t)-1, (gid_t)-1, 100,
				     &txn_new, &kf, &err) == 0);
	/* (the same keys, so the waiter's slot wraps the right ones) */
	test_assert(kr_keyfile_read(old_path, &kf, &err) == 1);
	test_assert(kr_slot_add_password(kf, keys, "reset", &test_params_fast,
					 "reset pw", &id, &err) == 0);
	kr_keyfile_rollback(&txn_old);
	/* a waiter that kept the moved lock would write now, and lose its
	   slot to the commit below */
	nanosleep(&delay, NULL);
	test_assert(kr_keyfile_commit(&txn_new, kf, &err) == 0);
	kr_keyfile_free(&kf);
	test_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0);
	test_assert(kr_keyfile_read(path, &kf, &err) == 1);
	test_assert(kf != NULL && test_has_label(kf, "reset") &&
		    test_has_label(kf, "waiter") &&
		    kr_keyfile_slot_count(kf) == 2);
	kr_keyfile_free(&kf);
	/* the moved-aside keyfile is untouched */
	test_assert(kr_keyfile_read(old_path, &kf, &err) == 1 &&
		    kr_keyfile_slot_count(kf) == 0);
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_lock_basics,
		test_lock_wait_bounded,
		test_lock_race_add_remove,
		test_lock_first_activation,
		test_lock_home_moved,
		NULL
	};
	int ret;

	test_tmpdir_create(test_dir);
	ret = test_run(tests);
	test_tmpdir_remove(test_dir);
	return ret;
}
