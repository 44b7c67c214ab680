/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Blocking UNIX socket clients for Dovecot's own listeners (auth-master
   CACHE-FLUSH, anvil CONNECT-DUMP), bounded by socket timeouts. */

#include "launchpad-private.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

int lp_socket_connect(const char *path, unsigned int timeout_secs,
		      struct lp_error *err)
{
	union {
		struct sockaddr sa;
		struct sockaddr_un sun;
	} addr = { .sun = { .sun_family = AF_UNIX } };
	struct timeval tv = { .tv_sec = timeout_secs };
	int fd;

	if (strlen(path) >= sizeof(addr.sun.sun_path)) {
		lp_error_set(err, LP_ERR_INTERNAL, "%s: path too long", path);
		return -1;
	}
	strcpy(addr.sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "socket() failed: %s",
			     strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, &addr.sa, sizeof(addr.sun)) < 0) {
		lp_error_set(err, LP_ERR_TEMP, "connect(%s) failed: %s", path,
			     strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int lp_socket_send(int fd, const char *path, const char *data, size_t len,
		   struct lp_error *err)
{
	while (len > 0) {
		ssize_t ret = write(fd, data, len);

		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0) {
			lp_error_set(err, LP_ERR_TEMP, "write(%s) failed: %s",
				     path, strerror(errno));
			return -1;
		}
		data += ret;
		len -= (size_t)ret;
	}
	return 0;
}
