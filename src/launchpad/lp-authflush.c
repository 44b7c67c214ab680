/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* A tiny auth-master client: CACHE-FLUSH over Dovecot's auth socket.
   The web daemon cannot link libdovecot, and Dovecot 2.3.19's own
   auth_master_cache_flush() reports success when it cannot even connect
   (it ignores auth_master_run_cmd()'s result), so doveadm and the auth
   plugin use this one too: a revoke must know whether the cache was
   flushed.  Only sockets named "*-master" accept the command; the stock
   auth-master is root-only, so the vmail daemon talks to an extra
   listener (auth-vmail-master, see plugin-conf).  Blocking, bounded by
   socket timeouts. */

#include "launchpad.h"

#include <stdarg.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LP_AUTHFLUSH_TIMEOUT_SECS 5
#define LP_AUTHFLUSH_REPLY_MAX 1024
#define LP_AUTHFLUSH_CMD_MAX 8192
#define LP_AUTHFLUSH_ID "1"

static int lp_auth_flush_send(int fd, const char *data, size_t len)
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

/* Appends fmt to buf (NUL-terminated, *len used); false if it is full. */
static bool lp_auth_flush_append(char *buf, size_t size, size_t *len,
				 const char *fmt, ...)
{
	va_list args;
	int ret;

	va_start(args, fmt);
	ret = vsnprintf(buf + *len, size - *len, fmt, args);
	va_end(args);
	if (ret < 0 || (size_t)ret >= size - *len)
		return false;
	*len += (size_t)ret;
	return true;
}

int lp_auth_cache_flush(const struct lp_config *config, const char *path,
			const char *name, struct lp_error *err)
{
	union {
		struct sockaddr sa;
		struct sockaddr_un sun;
	} addr = { .sun = { .sun_family = AF_UNIX } };
	struct timeval tv = { .tv_sec = LP_AUTHFLUSH_TIMEOUT_SECS };
	char cmd[LP_AUTHFLUSH_CMD_MAX], reply[LP_AUTHFLUSH_REPLY_MAX];
	size_t cmd_len = 0, len = 0;
	char *line, *nl;
	int fd, count = -1;

	if (name != NULL && (name[0] == '\0' ||
			     strpbrk(name, "\t\r\n\001@") != NULL)) {
		lp_error_set(err, LP_ERR_INTERNAL, "bad name for CACHE-FLUSH");
		return -1;
	}
	/* The cache key starts with the login as typed (after
	   auth_username_format): the bare name and every domain.  No
	   names: the whole cache. */
	bool ok = lp_auth_flush_append(cmd, sizeof(cmd), &cmd_len,
				       "VERSION\t1\t1\nCACHE-FLUSH\t"
				       LP_AUTHFLUSH_ID);
	if (name != NULL) {
		ok = ok && lp_auth_flush_append(cmd, sizeof(cmd), &cmd_len,
						"\t%s", name);
		for (unsigned int i = 0; i < config->domains_count; i++) {
			ok = ok && lp_auth_flush_append(cmd, sizeof(cmd),
							&cmd_len, "\t%s@%s",
							name,
							config->domains[i].domain);
		}
	}
	ok = ok && lp_auth_flush_append(cmd, sizeof(cmd), &cmd_len, "\n");
	if (!ok) {
		lp_error_set(err, LP_ERR_INTERNAL, "CACHE-FLUSH too long");
		return -1;
	}
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
	if (lp_auth_flush_send(fd, cmd, cmd_len) < 0) {
		lp_error_set(err, LP_ERR_TEMP, "write(%s) failed: %s", path,
			     strerror(errno));
		close(fd);
		return -1;
	}

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
			if (ret == 0) {
				/* what auth does on a socket that is not a
				   "-master" one: "Unknown command" */
				lp_error_set(err, LP_ERR_TEMP, "%s closed the "
					     "connection without answering "
					     "CACHE-FLUSH (not a -master "
					     "socket?)", path);
				close(fd);
				return -1;
			}
			if (ret < 0)
				break;
			len += (size_t)ret;
			continue;
		}
		*nl = '\0';
		line = reply;
		if (strncmp(line, "OK\t" LP_AUTHFLUSH_ID "\t",
			    strlen("OK\t" LP_AUTHFLUSH_ID "\t")) == 0) {
			count = atoi(line + strlen("OK\t" LP_AUTHFLUSH_ID "\t"));
			break;
		}
		if (strncmp(line, "FAIL\t", 5) == 0 ||
		    strncmp(line, "NOTFOUND\t", 9) == 0) {
			lp_error_set(err, LP_ERR_TEMP, "%s refused CACHE-FLUSH "
				     "(not a -master socket?)", path);
			close(fd);
			return -1;
		}
		len -= (size_t)(nl + 1 - reply);
		memmove(reply, nl + 1, len);
	}
	close(fd);
	if (count < 0)
		lp_error_set(err, LP_ERR_TEMP, "%s: no CACHE-FLUSH answer "
			     "within %d s", path, LP_AUTHFLUSH_TIMEOUT_SECS);
	return count;
}
