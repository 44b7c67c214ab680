/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The mailbox home: what doveadm launchpad password and the self-service
   page do to it, in one place.

   A home holds the keyfile (KR_KEYFILE_NAME) and its lock file, and the
   mail under KR_MAILBOX_DB.  It is created mode 0700 and owned by the mail
   uid/gid, every missing parent too, whoever creates it: root (doveadm)
   gives it away, the page (running as the mail user) already owns it.
   A reset never deletes a home: it renames it to "<home>.reset-<UTC>",
   under the old keyfile's lock, and locks the new home before anything
   is written there, so a writer that raced in between is found instead
   of overwritten. */

#include "keyring-private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KR_HOME_MODE 0700

/* "<dir>/<name>" into path_r.  Returns 0, -1 (KR_ERR_LIMIT) if too long. */
static int kr_home_path(const char *dir, const char *name, char *path_r,
			size_t size, struct kr_error *err)
{
	int len = snprintf(path_r, size, "%s/%s", dir, name);

	if (len < 0 || (size_t)len >= size) {
		kr_error_set(err, KR_ERR_LIMIT, "%s/%s: path too long", dir,
			     name);
		return -1;
	}
	return 0;
}

int kr_home_keyfile_path(const char *home, char *path_r, size_t size,
			 struct kr_error *err)
{
	kr_error_clear(err);
	return kr_home_path(home, KR_KEYFILE_NAME, path_r, size, err);
}

/* Gives the directory at path to uid/gid unless it has them already.
   Through a descriptor opened without following a symlink: the parent
   belongs to the mail user, who must not be able to swap the new
   directory for a link to something root then hands over. */
static int kr_home_chown(const char *path, uid_t uid, gid_t gid,
			 struct kr_error *err)
{
	struct stat st;
	int fd;

	if (uid == (uid_t)-1)
		return 0;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		kr_error_errno(err, "open", path);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		kr_error_errno(err, "fstat", path);
		(void)close(fd);
		return -1;
	}
	if ((st.st_uid != uid || st.st_gid != gid) &&
	    fchown(fd, uid, gid) < 0) {
		kr_error_errno(err, "chown", path);
		(void)close(fd);
		return -1;
	}
	(void)close(fd);
	return 0;
}

/* path is a writable copy: cut at each '/' while the parents are made. */
static int kr_home_mkdir(char *path, uid_t uid, gid_t gid,
			 struct kr_error *err)
{
	struct stat st;
	char *slash;
	int ret;

	if (stat(path, &st) == 0)
		return 0;
	if (errno != ENOENT) {
		kr_error_errno(err, "stat", path);
		return -1;
	}
	slash = strrchr(path, '/');
	if (slash != NULL && slash != path) {
		*slash = '\0';
		ret = kr_home_mkdir(path, uid, gid, err);
		*slash = '/';
		if (ret < 0)
			return -1;
	}
	if (mkdir(path, KR_HOME_MODE) < 0 && errno != EEXIST) {
		kr_error_errno(err, "mkdir", path);
		return -1;
	}
	return kr_home_chown(path, uid, gid, err);
}

int kr_home_create(const char *home, uid_t uid, gid_t gid,
		   struct kr_error *err)
{
	char path[PATH_MAX];
	size_t len = strlen(home);

	kr_error_clear(err);
	if (len == 0 || len >= sizeof(path)) {
		kr_error_set(err, KR_ERR_LIMIT, "home path empty or too long");
		return -1;
	}
	memcpy(path, home, len + 1);
	return kr_home_mkdir(path, uid, gid, err);
}

int kr_home_has_mailbox(const char *home, struct kr_error *err)
{
	char db[PATH_MAX];
	struct stat st;

	kr_error_clear(err);
	if (kr_home_path(home, KR_MAILBOX_DB, db, sizeof(db), err) < 0)
		return -1;
	if (lstat(db, &st) == 0) {
		kr_error_set(err, KR_ERR_ORPHAN, "%s: a mailbox but no keyfile",
			     db);
		return 1;
	}
	if (errno == ENOENT)
		return 0;
	kr_error_errno(err, "stat", db);
	return -1;
}

int kr_home_move_aside(const char *home, time_t now, char *moved_r,
		       size_t moved_size, struct kr_error *err)
{
	char base[PATH_MAX], stamp[32];
	struct stat st;
	struct tm tm;
	int len;

	kr_error_clear(err);
	moved_r[0] = '\0';
	if (lstat(home, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		kr_error_errno(err, "stat", home);
		return -1;
	}
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0) {
		kr_error_set(err, KR_ERR_INTERNAL, "time %lld out of range",
			     (long long)now);
		return -1;
	}
	len = snprintf(base, sizeof(base), "%s" KR_HOME_RESET_INFIX "%s",
		       home, stamp);
	if (len < 0 || (size_t)len + 2 >= sizeof(base) ||
	    (size_t)len + 2 >= moved_size) {
		kr_error_set(err, KR_ERR_LIMIT, "%s: path too long", base);
		return -1;
	}
	for (unsigned int i = 1; i <= KR_HOME_RESET_TRIES; i++) {
		if (i == 1)
			(void)snprintf(moved_r, moved_size, "%s", base);
		else
			(void)snprintf(moved_r, moved_size, "%s-%u", base, i);
		if (lstat(moved_r, &st) == 0)
			continue;
		if (errno != ENOENT) {
			kr_error_errno(err, "stat", moved_r);
			moved_r[0] = '\0';
			return -1;
		}
		if (rename(home, moved_r) < 0) {
			kr_error_set(err, KR_ERR_IO,
				     "rename(%s, %s) failed: %s", home,
				     moved_r, strerror(errno));
			moved_r[0] = '\0';
			return -1;
		}
		return 1;
	}
	moved_r[0] = '\0';
	kr_error_set(err, KR_ERR_LIMIT, "too many resets of %s this second",
		     home);
	return -1;
}

int kr_home_activate(const char *home, const char *user,
		     const unsigned char *recovery_pk, uid_t uid, gid_t gid,
		     unsigned int wait_msecs, struct kr_keyfile_txn **txn_r,
		     struct kr_keyfile **kf_r, struct kr_keys **keys_r,
		     struct kr_error *err)
{
	char path[PATH_MAX];
	int ret;

	*txn_r = NULL;
	*kf_r = NULL;
	*keys_r = NULL;
	/* the lock file lives in the home */
	if (kr_home_keyfile_path(home, path, sizeof(path), err) < 0 ||
	    kr_home_create(home, uid, gid, err) < 0)
		return -1;
	ret = kr_keyfile_begin(path, uid, gid, wait_msecs, txn_r, kf_r, err);
	if (ret != 0)
		return ret < 0 ? -1 : 0;
	/* An activation must not bury mail: a new keyfile would lock the
	   old database away for good. */
	if (kr_home_has_mailbox(home, err) != 0 ||
	    kr_keyfile_create(user, recovery_pk, kf_r, keys_r, err) < 0) {
		kr_keyfile_rollback(txn_r);
		return -1;
	}
	return 1;
}

int kr_home_reset(const char *home, const char *user,
		  const unsigned char *recovery_pk, uid_t uid, gid_t gid,
		  unsigned int wait_msecs, time_t now,
		  char *moved_r, size_t moved_size,
		  struct kr_keyfile_txn **txn_r, struct kr_keyfile **kf_r,
		  struct kr_keys **keys_r, struct kr_error *err)
{
	struct kr_keyfile_txn *old_txn = NULL;
	char path[PATH_MAX];
	int ret;

	*txn_r = NULL;
	*kf_r = NULL;
	*keys_r = NULL;
	moved_r[0] = '\0';
	if (kr_home_keyfile_path(home, path, sizeof(path), err) < 0)
		return -1;
	/* (no home at all: nothing to move, nothing to lock) */
	if (kr_keyfile_lock(path, uid, gid, wait_msecs, &old_txn, err) < 0 &&
	    err->kind != KR_ERR_NOT_FOUND)
		return -1;
	if (kr_home_move_aside(home, now, moved_r, moved_size, err) < 0 ||
	    kr_home_create(home, uid, gid, err) < 0) {
		ret = -1;
	} else if ((ret = kr_keyfile_begin(path, uid, gid, wait_msecs, txn_r,
					   kf_r, err)) != 0) {
		if (ret > 0) {
			kr_keyfile_rollback(txn_r);
			kr_keyfile_free(kf_r);
			kr_error_set(err, KR_ERR_LOCKED, "%s was activated "
				     "again while the old mailbox moved aside "
				     "(to %s); nothing overwritten", home,
				     moved_r[0] != '\0' ? moved_r :
				     "nowhere: there was none");
			ret = 0;
		}
	} else if (kr_keyfile_create(user, recovery_pk, kf_r, keys_r,
				     err) < 0) {
		kr_keyfile_rollback(txn_r);
		ret = -1;
	} else {
		ret = 1;
	}
	kr_keyfile_rollback(&old_txn);
	return ret;
}
