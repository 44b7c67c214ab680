/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef TEST_SOCKET_H
#define TEST_SOCKET_H

/* One-shot UNIX socket servers for test-authflush and test-kick, standing
   in for Dovecot's auth-master and anvil listeners. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Listens on path (replacing a stale socket) and forks.  The parent gets
   the child's pid; the child accepts one connection into *conn_r (-1 if
   accept failed) and gets 0.  A path that cannot be listened on ends the
   program ("Bail out!"). */
static inline pid_t test_unix_server(const char *path, int *conn_r)
{
	union {
		struct sockaddr sa;
		struct sockaddr_un sun;
	} addr = { .sun = { .sun_family = AF_UNIX } };
	int fd;
	pid_t pid;

	(void)unlink(path);
	if (strlen(path) >= sizeof(addr.sun.sun_path)) {
		printf("Bail out! socket path too long: %s\n", path);
		exit(99);
	}
	memcpy(addr.sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, &addr.sa, sizeof(addr.sun)) < 0 ||
	    listen(fd, 1) < 0) {
		printf("Bail out! fake server on %s: %s\n", path,
		       strerror(errno));
		exit(99);
	}
	pid = fork();
	if (pid != 0) {
		close(fd);
		return pid;
	}
	*conn_r = accept(fd, NULL, NULL);
	return 0;
}

#endif
