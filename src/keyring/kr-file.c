/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* File helpers the keyfile and the spool writers share. */

#include "keyring-private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int kr_write_full(int fd, const unsigned char *buf, size_t size)
{
	while (size > 0) {
		ssize_t ret = write(fd, buf, size);

		if (ret < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (ret == 0) {
			errno = EIO;
			return -1;
		}
		buf += ret;
		size -= (size_t)ret;
	}
	return 0;
}

static void kr_dirname(const char *path, char *dir_r, size_t size)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL) {
		(void)snprintf(dir_r, size, ".");
	} else if (slash == path) {
		(void)snprintf(dir_r, size, "/");
	} else {
		(void)snprintf(dir_r, size, "%.*s",
			       (int)(slash - path), path);
	}
}

int kr_fsync_dir(const char *path, struct kr_error *err)
{
	char dir[PATH_MAX];
	int fd;

	kr_dirname(path, dir, sizeof(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		kr_error_errno(err, "open", dir);
		return -1;
	}
	if (fsync(fd) < 0) {
		kr_error_errno(err, "fsync", dir);
		(void)close(fd);
		return -1;
	}
	(void)close(fd);
	return 0;
}
