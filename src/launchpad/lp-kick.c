/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Ending a user's live sessions after a revoke, reset, ban or
   deprovisioning, the way `doveadm kick` does (src/doveadm/doveadm-kick.c
   in Dovecot 2.3): anvil knows every logged-in imap/pop3 session as
   "<service>/<ip>/<user>" with its process id (CONNECT-DUMP); a process
   that serves only the kicked users gets SIGTERM.  Used by doveadm (root,
   base_dir/anvil) and by the self-service page (the mail uid, an extra
   anvil listener; the mail processes run as the same uid). */

#include "launchpad-private.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LP_KICK_TIMEOUT_SECS 5
#define LP_KICK_LINE_MAX 1024
/* More sessions than any one server holds; a bound on the work. */
#define LP_KICK_ENTRIES_MAX (1024 * 1024)
#define LP_KICK_REQUEST "VERSION\tanvil\t1\t0\nCONNECT-DUMP\n"

struct lp_kick_entry {
	pid_t pid;
	unsigned int refcount;
	bool match;
};

struct lp_kick_ctx {
	const char *const *users;
	struct lp_kick_entry *entries;
	unsigned int count, alloc;
	bool failed;
};

/* Undoes Dovecot's str_tabescape() in place (\001 1, t, r, n). */
static void lp_kick_tabunescape(char *str)
{
	char *out = str;

	for (; *str != '\0'; str++) {
		if (*str != '\001' || str[1] == '\0') {
			*out++ = *str;
			continue;
		}
		switch (*++str) {
		case '1': *out++ = '\001'; break;
		case 't': *out++ = '\t'; break;
		case 'r': *out++ = '\r'; break;
		case 'n': *out++ = '\n'; break;
		default: *out++ = *str; break;
		}
	}
	*out = '\0';
}

static bool lp_kick_service(const char *service, size_t len)
{
	static const char *const services[] = LP_KICK_SERVICES;

	for (unsigned int i = 0; i < sizeof(services) / sizeof(*services); i++) {
		if (strlen(services[i]) == len &&
		    strncmp(services[i], service, len) == 0)
			return true;
	}
	return false;
}

/* "<ident>\t<pid>\t<refcount>", ident = service/ip/user or service/user. */
static void lp_kick_line(struct lp_kick_ctx *ctx, char *line)
{
	char *ident = line, *pid_str, *ref_str, *user, *slash, *end;
	struct lp_kick_entry *entry;
	unsigned long pid, refcount;

	if ((pid_str = strchr(ident, '\t')) == NULL)
		return;
	*pid_str++ = '\0';
	if ((ref_str = strchr(pid_str, '\t')) == NULL)
		return;
	*ref_str++ = '\0';
	lp_kick_tabunescape(ident);
	pid = strtoul(pid_str, &end, 10);
	if (*end != '\0' || pid <= 1 || (pid_t)pid != (long)pid)
		return;
	refcount = strtoul(ref_str, &end, 10);
	if (*end != '\0' && *end != '\t')
		return;
	if ((slash = strchr(ident, '/')) == NULL ||
	    !lp_kick_service(ident, (size_t)(slash - ident)))
		return;
	user = slash + 1;
	if ((slash = strchr(user, '/')) != NULL)
		user = slash + 1;	/* past the IP */

	if (ctx->count == ctx->alloc) {
		unsigned int new_alloc = ctx->alloc == 0 ? 64 : ctx->alloc * 2;
		struct lp_kick_entry *new_entries;

		if (new_alloc > LP_KICK_ENTRIES_MAX ||
		    (new_entries = realloc(ctx->entries, new_alloc *
					   sizeof(*new_entries))) == NULL) {
			ctx->failed = true;
			return;
		}
		ctx->entries = new_entries;
		ctx->alloc = new_alloc;
	}
	entry = &ctx->entries[ctx->count++];
	entry->pid = (pid_t)pid;
	entry->refcount = (unsigned int)refcount;
	entry->match = false;
	for (unsigned int i = 0; ctx->users[i] != NULL; i++) {
		if (strcasecmp(ctx->users[i], user) == 0)
			entry->match = true;
	}
}

static int lp_kick_entry_cmp(const void *a, const void *b)
{
	const struct lp_kick_entry *ea = a, *eb = b;

	return ea->pid < eb->pid ? -1 : ea->pid > eb->pid ? 1 : 0;
}

/* Reads CONNECT-DUMP lines until the empty line that ends it. */
static int lp_kick_read(int fd, struct lp_kick_ctx *ctx, const char *path,
			struct lp_error *err)
{
	char buf[LP_KICK_LINE_MAX + 1];
	size_t len = 0;

	for (;;) {
		char *nl = memchr(buf, '\n', len);
		ssize_t ret;

		if (nl != NULL) {
			*nl = '\0';
			if (buf[0] == '\0')
				return 0;
			lp_kick_line(ctx, buf);
			if (ctx->failed) {
				lp_error_set(err, LP_ERR_INTERNAL, "%s: too many "
					     "sessions listed", path);
				return -1;
			}
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
			continue;
		}
		if (len == LP_KICK_LINE_MAX) {
			lp_error_set(err, LP_ERR_PROTOCOL, "%s: line too long",
				     path);
			return -1;
		}
		ret = read(fd, buf + len, LP_KICK_LINE_MAX - len);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0) {
			lp_error_set(err, LP_ERR_TEMP, "%s: %s", path,
				     ret == 0 ? "disconnected before the end "
				     "of the session list" :
				     errno == EAGAIN ? "timed out" :
				     strerror(errno));
			return -1;
		}
		len += (size_t)ret;
	}
}

static void lp_kick_signal(struct lp_kick_ctx *ctx,
			   struct lp_kick_result *result)
{
	unsigned int i = 0;

	qsort(ctx->entries, ctx->count, sizeof(*ctx->entries),
	      lp_kick_entry_cmp);
	while (i < ctx->count) {
		unsigned int j = i, matched = 0, others = 0, sessions = 0;
		pid_t pid = ctx->entries[i].pid;

		for (; j < ctx->count && ctx->entries[j].pid == pid; j++) {
			if (ctx->entries[j].match) {
				matched++;
				sessions += ctx->entries[j].refcount;
			} else {
				others++;
			}
		}
		i = j;
		if (matched == 0)
			continue;
		result->sessions += sessions;
		if (others > 0 || pid == getpid()) {
			result->shared++;
		} else if (kill(pid, SIGTERM) == 0 || errno == ESRCH) {
			result->killed++;
		} else {
			result->failed++;
		}
	}
}

int lp_kick_users(const char *socket_path, const char *const *users,
		  struct lp_kick_result *result_r, struct lp_error *err)
{
	struct lp_kick_ctx ctx = { .users = users };
	int fd, ret;

	memset(result_r, 0, sizeof(*result_r));
	if ((fd = lp_socket_connect(socket_path, LP_KICK_TIMEOUT_SECS,
				    err)) < 0)
		return -1;
	if (lp_socket_send(fd, socket_path, LP_KICK_REQUEST,
			   strlen(LP_KICK_REQUEST), err) < 0) {
		close(fd);
		return -1;
	}
	ret = lp_kick_read(fd, &ctx, socket_path, err);
	close(fd);
	if (ret == 0)
		lp_kick_signal(&ctx, result_r);
	free(ctx.entries);
	return ret;
}
