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

#include "launchpad-private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LP_AUTHFLUSH_TIMEOUT_SECS 5
#define LP_AUTHFLUSH_REPLY_MAX 1024
#define LP_AUTHFLUSH_CMD_MAX 8192
#define LP_AUTHFLUSH_ID "1"

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
	if ((fd = lp_socket_connect(path, LP_AUTHFLUSH_TIMEOUT_SECS,
				    err)) < 0)
		return -1;
	if (lp_socket_send(fd, path, cmd, cmd_len, err) < 0) {
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
