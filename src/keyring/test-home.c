/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "test-keyring.h"

#include <sys/types.h>

/* kr-home.c: creating, activating and resetting a mailbox home.  Linked
   with ld --wrap for fchown and rename (see Makefile.am): fchown records
   what the library gives away (and may fail), so ownership is tested the
   same for root and for anyone else; rename may fail, or let a "racing
   activator" write a keyfile into the home right after it moved. */

#define TEST_USER "erin@lubuntu.me"
#define TEST_NOW ((time_t)1700000000)	/* 2023-11-14 22:13:20 UTC */
#define TEST_STAMP "20231114T221320Z"
#define TEST_WAIT_MSECS 2000

static char test_dir[PATH_MAX];

/* buf (PATH_MAX bytes) = the formatted path, or the test bails out. */
static void __attribute__((format(printf, 2, 3)))
test_fmt(char *buf, const char *fmt, ...)
{
	va_list args;
	int len;

	va_start(args, fmt);
	len = vsnprintf(buf, PATH_MAX, fmt, args);
	va_end(args);
	if (len < 0 || len >= PATH_MAX)
		exit(99);
}

static struct {
	/* fchown: */
	unsigned int chowns;
	uid_t last_uid;
	gid_t last_gid;
	int chown_error;	/* fail every fchown with this errno */
	bool chown_real;	/* pass through instead of recording */
	/* rename: */
	int rename_error;	/* fail every rename with this errno */
	const char *race_home;	/* after moving this, activate it anew */
} test_wrap;

int __real_fchown(int fd, uid_t owner, gid_t group);
int __real_rename(const char *oldpath, const char *newpath);
int __wrap_fchown(int fd, uid_t owner, gid_t group);
int __wrap_rename(const char *oldpath, const char *newpath);

int __wrap_fchown(int fd, uid_t owner, gid_t group)
{
	if (test_wrap.chown_real)
		return __real_fchown(fd, owner, group);
	test_wrap.chowns++;
	test_wrap.last_uid = owner;
	test_wrap.last_gid = group;
	if (test_wrap.chown_error != 0) {
		errno = test_wrap.chown_error;
		return -1;
	}
	return 0;
}

/* What a concurrent `doveadm launchpad password generate` does to a home
   that has just been renamed away. */
static void test_race_activate(const char *home)
{
	char path[PATH_MAX];
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_error err;
	unsigned int id;

	test_fmt(path, "%s/" KR_KEYFILE_NAME, home);
	if (mkdir(home, 0700) < 0 ||
	    kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) < 0 ||
	    kr_slot_add_password(kf, keys, "racer", &test_params_fast,
				 "racer pw", &id, &err) < 0 ||
	    kr_keyfile_write(kf, path, (uid_t)-1, (gid_t)-1, &err) < 0)
		exit(99);
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
}

int __wrap_rename(const char *oldpath, const char *newpath)
{
	int ret;

	if (test_wrap.rename_error != 0) {
		errno = test_wrap.rename_error;
		return -1;
	}
	ret = __real_rename(oldpath, newpath);
	if (ret == 0 && test_wrap.race_home != NULL &&
	    strcmp(oldpath, test_wrap.race_home) == 0) {
		test_wrap.race_home = NULL;
		test_race_activate(oldpath);
	}
	return ret;
}

static void test_wrap_reset(void)
{
	memset(&test_wrap, 0, sizeof(test_wrap));
	test_wrap.chown_real = true;
}

static void test_path(char path_r[PATH_MAX], const char *name)
{
	test_fmt(path_r, "%s/%s", test_dir, name);
}

static bool test_exists(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	test_fmt(path, "%s/%s", dir, name);
	return lstat(path, &st) == 0;
}

/* Creates "<home>/mail/sqlbox.db" (any content: only its presence
   counts). */
static void test_put_mailbox(const char *home)
{
	char path[PATH_MAX];

	test_fmt(path, "%s/mail", home);
	if (mkdir(home, 0700) < 0 && errno != EEXIST)
		exit(99);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		exit(99);
	test_fmt(path, "%s/" KR_MAILBOX_DB, home);
	if (test_file_write(path, "mail", 4) < 0)
		exit(99);
}

static void test_home_keyfile_path(void)
{
	char path[PATH_MAX], small[16];
	struct kr_error err;

	test_begin("home: keyfile path");
	test_assert(kr_home_keyfile_path("/var/vmail/d/n", path, sizeof(path),
					 &err) == 0);
	test_assert_strcmp(path, "/var/vmail/d/n/sqlbox.keys");
	test_assert(kr_home_keyfile_path("/var/vmail/d/n", small,
					 sizeof(small), &err) == -1 &&
		    err.kind == KR_ERR_LIMIT);
	test_end();
}

static void test_home_create(void)
{
	char home[PATH_MAX], parent[PATH_MAX], file[PATH_MAX];
	struct kr_error err;
	struct stat st;

	test_begin("home: create");
	test_wrap_reset();
	test_path(parent, "create");
	test_path(home, "create/domain/name");
	test_wrap.chown_real = false;
	test_assert(kr_home_create(home, 4321, 8765, &err) == 0);
	test_assert(stat(home, &st) == 0 && S_ISDIR(st.st_mode) &&
		    (st.st_mode & 07777) == 0700);
	/* the home and both parents it had to make, each given away */
	test_assert(test_wrap.chowns == 3 && test_wrap.last_uid == 4321 &&
		    test_wrap.last_gid == 8765);
	/* an existing home is left as it is */
	test_wrap.chowns = 0;
	test_assert(kr_home_create(home, 4321, 8765, &err) == 0 &&
		    test_wrap.chowns == 0);
	/* (uid_t)-1: nobody to give it to */
	test_path(home, "create/other");
	test_assert(kr_home_create(home, (uid_t)-1, (gid_t)-1, &err) == 0 &&
		    test_wrap.chowns == 0);
	/* the caller is the mail user already: nothing to change */
	test_path(home, "create/mine");
	test_assert(kr_home_create(home, geteuid(), getegid(), &err) == 0 &&
		    test_wrap.chowns == 0);
	test_end();

	test_begin("home: create fails");
	/* chown refused (a non-root caller and a foreign uid) */
	test_path(home, "create/refused");
	test_wrap.chown_error = EPERM;
	test_assert(kr_home_create(home, 4321, 8765, &err) == -1 &&
		    err.kind == KR_ERR_IO && strstr(err.text, "chown") != NULL);
	test_wrap.chown_error = 0;
	/* a parent that is no directory */
	test_path(file, "create/file");
	test_assert(test_file_write(file, "x", 1) == 0);
	test_path(home, "create/file/name");
	test_assert(kr_home_create(home, (uid_t)-1, (gid_t)-1, &err) == -1 &&
		    err.kind == KR_ERR_IO);
	test_assert(kr_home_create("", (uid_t)-1, (gid_t)-1, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT);
	test_wrap_reset();
	test_end();
}

static void test_home_has_mailbox(void)
{
	char home[PATH_MAX], path[PATH_MAX];
	struct kr_error err;

	test_begin("home: has a mailbox");
	test_path(home, "orphan");
	test_assert(kr_home_has_mailbox(home, &err) == 0);
	test_assert(mkdir(home, 0700) == 0);
	test_assert(kr_home_has_mailbox(home, &err) == 0);
	test_put_mailbox(home);
	test_assert(kr_home_has_mailbox(home, &err) == 1 &&
		    err.kind == KR_ERR_ORPHAN);
	/* cannot tell: "mail" is a file */
	test_path(home, "orphan-file");
	test_assert(mkdir(home, 0700) == 0);
	test_fmt(path, "%s/mail", home);
	test_assert(test_file_write(path, "x", 1) == 0);
	test_assert(kr_home_has_mailbox(home, &err) == -1 &&
		    err.kind == KR_ERR_IO);
	test_end();
}

static void test_home_move_aside(void)
{
	char home[PATH_MAX], moved[PATH_MAX], want[PATH_MAX];
	struct kr_error err;
	unsigned int i;

	test_begin("home: move aside");
	test_wrap_reset();
	test_path(home, "moving");
	test_assert(kr_home_move_aside(home, TEST_NOW, moved, sizeof(moved),
				       &err) == 0 && moved[0] == '\0');
	test_put_mailbox(home);
	test_assert(kr_home_move_aside(home, TEST_NOW, moved, sizeof(moved),
				       &err) == 1);
	test_fmt(want, "%s.reset-" TEST_STAMP, home);
	test_assert_strcmp(moved, want);
	test_assert(!test_exists(home, "") &&
		    test_exists(moved, KR_MAILBOX_DB));
	/* the same second again: "-2", and so on */
	for (i = 2; i <= KR_HOME_RESET_TRIES; i++) {
		test_assert_idx(mkdir(home, 0700) == 0, i);
		test_assert_idx(kr_home_move_aside(home, TEST_NOW, moved,
						   sizeof(moved), &err) == 1, i);
		test_fmt(want, "%s.reset-" TEST_STAMP "-%u",
			 home, i);
		test_assert_idx(strcmp(moved, want) == 0, i);
	}
	test_end();

	test_begin("home: move aside fails");
	/* every name of this second taken: the home stays */
	test_assert(mkdir(home, 0700) == 0);
	test_assert(kr_home_move_aside(home, TEST_NOW, moved, sizeof(moved),
				       &err) == -1 &&
		    err.kind == KR_ERR_LIMIT && moved[0] == '\0' &&
		    strstr(err.text, "too many resets") != NULL);
	test_assert(test_exists(home, ""));
	/* a second later is free again */
	test_assert(kr_home_move_aside(home, TEST_NOW + 1, moved,
				       sizeof(moved), &err) == 1);
	/* the new name would not fit (a second whose names are free) */
	test_assert(mkdir(home, 0700) == 0);
	test_assert(kr_home_move_aside(home, TEST_NOW + 3, moved,
				       strlen(home) + 20, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT && moved[0] == '\0' &&
		    strstr(err.text, "too long") != NULL);
	test_assert(test_exists(home, ""));
	/* rename refused */
	test_wrap.rename_error = EXDEV;
	test_assert(kr_home_move_aside(home, TEST_NOW + 2, moved,
				       sizeof(moved), &err) == -1 &&
		    err.kind == KR_ERR_IO && moved[0] == '\0' &&
		    strstr(err.text, "rename") != NULL);
	test_wrap_reset();
	test_assert(test_exists(home, ""));
	test_end();
}

static void test_home_activate(void)
{
	unsigned char pk[KR_PUBLIC_KEY_BYTES], sk[KR_SECRET_KEY_BYTES];
	char home[PATH_MAX], path[PATH_MAX];
	struct kr_keyfile_txn *txn, *other;
	struct kr_keyfile *kf;
	struct kr_keys *keys, *opened;
	struct kr_error err;
	unsigned int id;

	test_begin("home: activate");
	test_wrap_reset();
	crypto_box_keypair(pk, sk);
	test_path(home, "activate/domain/name");
	test_fmt(path, "%s/" KR_KEYFILE_NAME, home);
	test_assert(kr_home_activate(home, TEST_USER, pk, (uid_t)-1,
				     (gid_t)-1, TEST_WAIT_MSECS, &txn, &kf,
				     &keys, &err) == 1);
	test_assert(txn != NULL && kf != NULL && keys != NULL &&
		    kr_keyfile_slot_count(kf) == 0 &&
		    kr_keyfile_has_recovery(kf) &&
		    strcmp(kr_keyfile_user(kf), TEST_USER) == 0);
	/* created in memory only, under the lock */
	test_assert(!test_exists(home, KR_KEYFILE_NAME) &&
		    test_exists(home, KR_KEYFILE_NAME KR_LOCK_SUFFIX));
	test_assert(kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 0, &other,
				    &err) == -1 && err.kind == KR_ERR_LOCKED);
	test_assert(kr_slot_add_password(kf, keys, "first", &test_params_fast,
					 "first pw", &id, &err) == 0);
	test_assert(kr_keyfile_commit(&txn, kf, &err) == 0 && txn == NULL);
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	/* activated: the keyfile comes back, no keys, still locked */
	test_assert(kr_home_activate(home, TEST_USER, pk, (uid_t)-1,
				     (gid_t)-1, TEST_WAIT_MSECS, &txn, &kf,
				     &keys, &err) == 0);
	test_assert(txn != NULL && kf != NULL && keys == NULL &&
		    kr_keyfile_slot_count(kf) == 1);
	test_assert(kr_slot_unlock(kf, "first pw", NULL, &opened, &err) == 1);
	kr_keys_free(&opened);
	kr_keyfile_rollback(&txn);
	kr_keyfile_free(&kf);
	test_end();

	test_begin("home: activate refuses");
	/* a database without a keyfile: nothing created, nothing held */
	test_path(home, "activate/orphan");
	test_put_mailbox(home);
	test_fmt(path, "%s/" KR_KEYFILE_NAME, home);
	test_assert(kr_home_activate(home, TEST_USER, NULL, (uid_t)-1,
				     (gid_t)-1, TEST_WAIT_MSECS, &txn, &kf,
				     &keys, &err) == -1);
	test_assert(err.kind == KR_ERR_ORPHAN && txn == NULL && kf == NULL &&
		    keys == NULL && !test_exists(home, KR_KEYFILE_NAME));
	test_assert(kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 0, &other,
				    &err) == 0);
	/* another writer holds the lock */
	test_assert(kr_home_activate(home, TEST_USER, NULL, (uid_t)-1,
				     (gid_t)-1, 0, &txn, &kf, &keys,
				     &err) == -1 &&
		    err.kind == KR_ERR_LOCKED && txn == NULL);
	kr_keyfile_rollback(&other);
	/* a user the keyfile cannot hold; the lock is released */
	test_path(home, "activate/bad-user");
	test_fmt(path, "%s/" KR_KEYFILE_NAME, home);
	test_assert(kr_home_activate(home, "no-domain", NULL, (uid_t)-1,
				     (gid_t)-1, TEST_WAIT_MSECS, &txn, &kf,
				     &keys, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT && txn == NULL && kf == NULL &&
		    strstr(err.text, "invalid user") != NULL);
	test_assert(kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 0, &other,
				    &err) == 0);
	kr_keyfile_rollback(&other);
	/* the home cannot be made */
	test_path(path, "activate/file");
	test_assert(test_file_write(path, "x", 1) == 0);
	test_path(home, "activate/file/name");
	test_assert(kr_home_activate(home, TEST_USER, NULL, (uid_t)-1,
				     (gid_t)-1, TEST_WAIT_MSECS, &txn, &kf,
				     &keys, &err) == -1 &&
		    err.kind == KR_ERR_IO && txn == NULL);
	test_end();
}

/* An activated home with a mailbox; returns its keys. */
static struct kr_keys *test_activated_home(const char *home)
{
	struct kr_keyfile_txn *txn;
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_error err;
	unsigned int id;

	if (kr_home_activate(home, TEST_USER, NULL, (uid_t)-1, (gid_t)-1,
			     TEST_WAIT_MSECS, &txn, &kf, &keys, &err) != 1 ||
	    kr_slot_add_password(kf, keys, "old", &test_params_fast, "old pw",
				 &id, &err) < 0 ||
	    kr_keyfile_commit(&txn, kf, &err) < 0)
		exit(99);
	kr_keyfile_free(&kf);
	test_put_mailbox(home);
	return keys;
}

static void test_home_reset(void)
{
	char home[PATH_MAX], path[PATH_MAX], moved[PATH_MAX], want[PATH_MAX];
	struct kr_keyfile_txn *txn, *other;
	struct kr_keyfile *kf, *old_kf;
	struct kr_keys *keys, *old_keys, *opened;
	struct kr_error err;
	unsigned int id;

	test_begin("home: reset");
	test_wrap_reset();
	test_path(home, "reset");
	test_fmt(path, "%s/" KR_KEYFILE_NAME, home);
	old_keys = test_activated_home(home);
	test_assert(kr_home_reset(home, TEST_USER, NULL, (uid_t)-1, (gid_t)-1,
				  TEST_WAIT_MSECS, TEST_NOW, moved,
				  sizeof(moved), &txn, &kf, &keys,
				  &err) == 1);
	test_fmt(want, "%s.reset-" TEST_STAMP, home);
	test_assert_strcmp(moved, want);
	test_assert(txn != NULL && kf != NULL && keys != NULL &&
		    kr_keyfile_slot_count(kf) == 0 &&
		    !test_keys_equal(keys, old_keys));
	/* the new home is empty but for its lock, which is held */
	test_assert(test_dir_count(home) == 1 &&
		    kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 0, &other,
				    &err) == -1 && err.kind == KR_ERR_LOCKED);
	test_assert(kr_slot_add_password(kf, keys, "new", &test_params_fast,
					 "new pw", &id, &err) == 0 &&
		    kr_keyfile_commit(&txn, kf, &err) == 0);
	kr_keyfile_free(&kf);
	/* the old mailbox and its keyfile are kept, and still open */
	test_fmt(want, "%s/" KR_KEYFILE_NAME, moved);
	test_assert(test_exists(moved, KR_MAILBOX_DB) &&
		    kr_keyfile_read(want, &old_kf, &err) == 1 &&
		    kr_slot_unlock(old_kf, "old pw", NULL, &opened,
				   &err) == 1 &&
		    test_keys_equal(opened, old_keys));
	kr_keys_free(&opened);
	kr_keyfile_free(&old_kf);
	test_assert(kr_keyfile_read(path, &kf, &err) == 1 &&
		    kr_slot_unlock(kf, "old pw", NULL, &opened, &err) == 0 &&
		    kr_slot_unlock(kf, "new pw", &id, &opened, &err) == 1 &&
		    test_keys_equal(opened, keys));
	kr_keys_free(&opened);
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	kr_keys_free(&old_keys);

	/* no home yet: nothing moved, a new one made */
	test_path(home, "reset-none/name");
	test_assert(kr_home_reset(home, TEST_USER, NULL, (uid_t)-1, (gid_t)-1,
				  TEST_WAIT_MSECS, TEST_NOW, moved,
				  sizeof(moved), &txn, &kf, &keys,
				  &err) == 1 && moved[0] == '\0');
	kr_keyfile_rollback(&txn);
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();

	test_begin("home: reset refuses");
	test_path(home, "reset-busy");
	test_fmt(path, "%s/" KR_KEYFILE_NAME, home);
	old_keys = test_activated_home(home);
	/* another writer holds the lock: nothing moves */
	test_assert(kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 0, &other,
				    &err) == 0);
	test_assert(kr_home_reset(home, TEST_USER, NULL, (uid_t)-1, (gid_t)-1,
				  0, TEST_NOW, moved, sizeof(moved), &txn,
				  &kf, &keys, &err) == -1 &&
		    err.kind == KR_ERR_LOCKED && txn == NULL && kf == NULL &&
		    moved[0] == '\0' && test_exists(home, KR_MAILBOX_DB));
	kr_keyfile_rollback(&other);
	/* the rename fails: nothing moves, nothing held */
	test_wrap.rename_error = EXDEV;
	test_assert(kr_home_reset(home, TEST_USER, NULL, (uid_t)-1, (gid_t)-1,
				  TEST_WAIT_MSECS, TEST_NOW, moved,
				  sizeof(moved), &txn, &kf, &keys,
				  &err) == -1 &&
		    err.kind == KR_ERR_IO && txn == NULL && kf == NULL &&
		    test_exists(home, KR_MAILBOX_DB));
	test_wrap.rename_error = 0;
	test_assert(kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 0, &other,
				    &err) == 0);
	kr_keyfile_rollback(&other);
	/* activated again between the move and the new lock: the racer's
	   keyfile is found, not overwritten */
	test_wrap.race_home = home;
	test_assert(kr_home_reset(home, TEST_USER, NULL, (uid_t)-1, (gid_t)-1,
				  TEST_WAIT_MSECS, TEST_NOW, moved,
				  sizeof(moved), &txn, &kf, &keys,
				  &err) == 0);
	test_assert(err.kind == KR_ERR_LOCKED && txn == NULL && kf == NULL &&
		    keys == NULL && moved[0] != '\0' &&
		    test_exists(moved, KR_MAILBOX_DB));
	test_assert(kr_keyfile_read(path, &kf, &err) == 1 &&
		    kr_slot_unlock(kf, "racer pw", NULL, &opened, &err) == 1);
	kr_keys_free(&opened);
	kr_keyfile_free(&kf);
	test_assert(kr_keyfile_lock(path, (uid_t)-1, (gid_t)-1, 0, &other,
				    &err) == 0);
	kr_keyfile_rollback(&other);
	kr_keys_free(&old_keys);
	test_wrap_reset();
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_home_keyfile_path,
		test_home_create,
		test_home_has_mailbox,
		test_home_move_aside,
		test_home_activate,
		test_home_reset,
		NULL
	};
	int ret;

	test_wrap_reset();
	test_tmpdir_create(test_dir);
	ret = test_run(cases);
	test_tmpdir_remove(test_dir);
	return ret;
}
