/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* A tiny auth-master client: CACHE-FLUSH over Dovecot's auth socket
   (DOVECOT-NOTES.md section 2.3), because this daemon cannot link
   libdovecot.  Only sockets named "*-master" accept the command; the
   stock auth-master is root-only, so the vmail daemon talks to an extra
   listener (auth-vmail-master, see plugin-conf).  Blocking, bounded by
   socket timeouts. */

#include "web-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define WEB_AUTHFLUSH_TIMEOUT_SECS 5
#define WEB_AUTHFLUSH_REPLY_MAX 1024
#define WEB_AUTHFLUSH_ID "1"

static int web_auth_flush_send(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t ret = write(fd, data, len);

		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0)
			return -1;
		data += ret;
		len -= (size_t)ret;
	}
	return 0;
}

int web_auth_flush(const struct lp_config *config, const char *path,
		   const char *name, char *error_r, size_t error_size)
{
	union {
		struct sockaddr sa;
		struct sockaddr_un sun;
	} addr = { .sun = { .sun_family = AF_UNIX } };
	struct timeval tv = { .tv_sec = WEB_AUTHFLUSH_TIMEOUT_SECS };
	struct web_buf cmd = { 0 };
	char reply[WEB_AUTHFLUSH_REPLY_MAX];
	size_t len = 0;
	char *line, *nl;
	int fd, count = -1;

	if (strlen(path) >= sizeof(addr.sun.sun_path)) {
		snprintf(error_r, error_size, "%s: path too long", path);
		return -1;
	}
	strcpy(addr.sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(error_r, error_size, "socket() failed: %s",
			 strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, &addr.sa, sizeof(addr.sun)) < 0) {
		snprintf(error_r, error_size, "connect(%s) failed: %s", path,
			 strerror(errno));
		close(fd);
		return -1;
	}
	/* The cache key starts with the login as typed (after
	   auth_username_format): the bare name and every domain. */
	web_buf_append(&cmd, "VERSION\t1\t1\nCACHE-FLUSH\t" WEB_AUTHFLUSH_ID);
	web_buf_printf(&cmd, "\t%s", name);
	for (unsigned int i = 0; i < config->domains_count; i++)
		web_buf_printf(&cmd, "\t%s@%s", name,
			       config->domains[i].domain);
	web_buf_append(&cmd, "\n");
	if (cmd.failed || web_auth_flush_send(fd, cmd.data, cmd.len) < 0) {
		snprintf(error_r, error_size, "write(%s) failed: %s", path,
			 cmd.failed ? "out of memory" : strerror(errno));
		web_buf_free(&cmd);
		close(fd);
		return -1;
	}
	web_buf_free(&cmd);

	/* The greeting (VERSION, SPID) comes first; then our answer. */
	for (;;) {
		ssize_t ret;

		nl = memchr(reply, '\n', len);
		if (nl == NULL) {
			if (len >= sizeof(reply) - 1)
				break;
			ret = read(fd, reply + len, sizeof(reply) - 1 - len);
			if (ret < 0 && errno == EINTR)
				continue;
			if (ret <= 0)
				break;
			len += (size_t)ret;
			continue;
		}
		*nl = '\0';
		line = reply;
		if (strncmp(line, "OK\t" WEB_AUTHFLUSH_ID "\t",
			    strlen("OK\t" WEB_AUTHFLUSH_ID "\t")) == 0) {
			count = atoi(line + strlen("OK\t" WEB_AUTHFLUSH_ID "\t"));
			break;
		}
		if (strncmp(line, "FAIL\t", 5) == 0 ||
		    strncmp(line, "NOTFOUND\t", 9) == 0) {
			snprintf(error_r, error_size,
				 "%s refused CACHE-FLUSH (not a -master "
				 "socket?)", path);
			close(fd);
			return -1;
		}
		len -= (size_t)(nl + 1 - reply);
		memmove(reply, nl + 1, len);
	}
	close(fd);
	if (count < 0)
		snprintf(error_r, error_size,
			 "%s: no CACHE-FLUSH answer (timeout or disconnect)",
			 path);
	return count;
}
