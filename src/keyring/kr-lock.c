/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Read-modify-write of a keyfile under a lock.

   Every writer (doveadm launchpad password, the self-service page) reads
   the keyfile, changes it in memory (an Argon2id derivation or two) and
   renames a new one into place.  Without a lock two writers each rename
   their own version and one change is lost: a revoked slot comes back, a
   new one vanishes, or two first activations leave two master keys.  So
   every writer holds an flock on "<keyfile>.lock" (next to the keyfile,
   created 0600 and owned by the mail uid) from its read to its rename.
   Readers (logins, the storage) need no lock: a rename is atomic.

   A reset renames the whole home aside while holding the lock, and a
   waiter may hold a descriptor of the lock file that moved with it: after
   the flock is granted, the descriptor must still be the file at the
   path, or it is dropped and the path opened again. */

#include "keyring-private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KR_LOCK_MODE 0600
/* Poll steps while another process holds the lock. */
#define KR_LOCK_POLL_MIN_MSECS 2
#define KR_LOCK_POLL_MAX_MSECS 50
/* The lock file may be replaced under a waiter (a reset moved the home)
   a few times in a row, never forever. */
#define KR_LOCK_REOPEN_MAX 100

struct kr_keyfile_txn {
	char path[PATH_MAX];
	char lock_path[PATH_MAX];
	uid_t uid;
	gid_t gid;
	int fd;
};

static uint64_t kr_lock_msecs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void kr_lock_sleep(unsigned int msecs)
{
	struct timespec ts = {
		.tv_sec = msecs / 1000,
		.tv_nsec = (long)(msecs % 1000) * 1000000L,
	};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Opens (creating) the lock file; gives a new one to uid/gid, so the
   self-service page (the mail uid) can lock what doveadm (root) created.
   Returns the fd, or -1. */
static int kr_lock_open(struct kr_keyfile_txn *txn, struct kr_error *err)
{
	struct stat st;
	int fd;

	fd = open(txn->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
		  O_NONBLOCK, KR_LOCK_MODE);
	if (fd < 0) {
		if (errno == ENOENT) {
			kr_error_set(err, KR_ERR_NOT_FOUND,
				     "%s: no such directory", txn->lock_path);
		} else {
			kr_error_errno(err, "open", txn->lock_path);
		}
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		kr_error_errno(err, "fstat", txn->lock_path);
		(void)close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		kr_error_set(err, KR_ERR_IO, "%s: not a regular file",
			     txn->lock_path);
		(void)close(fd);
		return -1;
	}
	if (txn->uid != (uid_t)-1 && geteuid() == 0 &&
	    (st.st_uid != txn->uid || st.st_gid != txn->gid) &&
	    fchown(fd, txn->uid, txn->gid) < 0) {
		kr_error_errno(err, "fchown", txn->lock_path);
		(void)close(fd);
		return -1;
	}
	return fd;
}

/* TRUE if fd is still the file at the lock path. */
static bool kr_lock_is_current(struct kr_keyfile_txn *txn, int fd)
{
	struct stat fst, pst;

	return fstat(fd, &fst) == 0 &&
		lstat(txn->lock_path, &pst) == 0 &&
		fst.st_dev == pst.st_dev && fst.st_ino == pst.st_ino;
}

int kr_keyfile_lock(const char *path, uid_t uid, gid_t gid,
		    unsigned int wait_msecs, struct kr_keyfile_txn **txn_r,
		    struct kr_error *err)
{
	struct kr_keyfile_txn *txn;
	uint64_t deadline = kr_lock_msecs() + wait_msecs;
	unsigned int step = KR_LOCK_POLL_MIN_MSECS;
	int len;

	*txn_r = NULL;
	kr_error_clear(err);
	txn = calloc(1, sizeof(*txn));
	if (txn == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	txn->fd = -1;
	txn->uid = uid;
	txn->gid = gid;
	len = snprintf(txn->lock_path, sizeof(txn->lock_path), "%s%s", path,
		       KR_LOCK_SUFFIX);
	if (len < 0 || (size_t)len >= sizeof(txn->lock_path)) {
		kr_error_set(err, KR_ERR_IO, "%s: path too long", path);
		free(txn);
		return -1;
	}
	memcpy(txn->path, path, strlen(path) + 1);

	for (unsigned int reopen = 0; reopen < KR_LOCK_REOPEN_MAX; reopen++) {
		int fd = kr_lock_open(txn, err);

		if (fd < 0) {
			free(txn);
			return -1;
		}
		while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno != EWOULDBLOCK && errno != EINTR) {
				kr_error_errno(err, "flock", txn->lock_path);
				(void)close(fd);
				free(txn);
				return -1;
			}
			if (kr_lock_msecs() >= deadline) {
				kr_error_set(err, KR_ERR_LOCKED,
					     "%s: still locked by another "
					     "change of this keyfile after "
					     "%u ms; try again", path,
					     wait_msecs);
				(void)close(fd);
				free(txn);
				return -1;
			}
			kr_lock_sleep(step);
			if (step < KR_LOCK_POLL_MAX_MSECS)
				step *= 2;
		}
		if (kr_lock_is_current(txn, fd)) {
			txn->fd = fd;
			*txn_r = txn;
			return 0;
		}
		/* the home moved away under us (a reset): lock the new one */
		(void)close(fd);
	}
	kr_error_set(err, KR_ERR_LOCKED, "%s: the lock file keeps being "
		     "replaced", txn->lock_path);
	free(txn);
	return -1;
}

int kr_keyfile_begin(const char *path, uid_t uid, gid_t gid,
		     unsigned int wait_msecs, struct kr_keyfile_txn **txn_r,
		     struct kr_keyfile **kf_r, struct kr_error *err)
{
	int ret;

	*kf_r = NULL;
	if (kr_keyfile_lock(path, uid, gid, wait_msecs, txn_r, err) < 0)
		return -1;
	ret = kr_keyfile_read(path, kf_r, err);
	if (ret < 0)
		kr_keyfile_rollback(txn_r);
	return ret;
}

int kr_keyfile_commit(struct kr_keyfile_txn **_txn,
		      const struct kr_keyfile *kf, struct kr_error *err)
{
	struct kr_keyfile_txn *txn = *_txn;
	int ret;

	ret = kr_keyfile_write(kf, txn->path, txn->uid, txn->gid, err);
	kr_keyfile_rollback(_txn);
	return ret;
}

void kr_keyfile_rollback(struct kr_keyfile_txn **_txn)
{
	struct kr_keyfile_txn *txn = *_txn;

	if (txn == NULL)
		return;
	*_txn = NULL;
	/* closing the only descriptor releases the flock; the lock file
	   stays (removing it would race with a waiter) */
	if (txn->fd >= 0)
		(void)close(txn->fd);
	free(txn);
}
