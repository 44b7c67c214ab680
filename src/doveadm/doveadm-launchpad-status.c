/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "str.h"
#include "strnum.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-launchpad.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

/* The user's mail directory under the home, as plugin-conf/ sets it
   (mail_location = sqlbox:~/mail), and the files read there: the
   database and the sidecar a keyed session writes
   (src/storage/sqlbox-fts-usage.c).  Nothing here needs the key. */
#define DOVEADM_LAUNCHPAD_MAIL_DIR "mail"
#define DOVEADM_LAUNCHPAD_DB_FNAME "sqlbox.db"
#define DOVEADM_LAUNCHPAD_FTS_USAGE_FNAME "fts-usage"

static void doveadm_launchpad_status_num(const char *name)
{
	doveadm_print_header(name, name, DOVEADM_PRINT_HEADER_FLAG_NUMBER);
}

/* Size of path (0 if missing); -1 on another error (reported). */
static int doveadm_launchpad_file_size(const char *path, uoff_t *size_r,
				       time_t *mtime_r)
{
	struct stat st;

	*size_r = 0;
	*mtime_r = 0;
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		i_error("launchpad: stat(%s) failed: %m", path);
		return -1;
	}
	*size_r = st.st_size;
	*mtime_r = st.st_mtime;
	return 1;
}

/* The sidecar's two numbers; 0 if there is none (yet), -1 if unusable
   (reported). */
static int doveadm_launchpad_fts_usage(const char *path, uint64_t *messages_r,
				       uint64_t *bytes_r)
{
	char buf[64];
	const char *const *fields;
	ssize_t ret;
	int fd;

	*messages_r = *bytes_r = 0;
	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		i_error("launchpad: open(%s) failed: %m", path);
		return -1;
	}
	ret = read(fd, buf, sizeof(buf) - 1);
	i_close_fd(&fd);
	if (ret < 0) {
		i_error("launchpad: read(%s) failed: %m", path);
		return -1;
	}
	buf[ret] = '\0';
	fields = t_strsplit_spaces(buf, " \n");
	if (str_array_length(fields) != 2 ||
	    str_to_uint64(fields[0], messages_r) < 0 ||
	    str_to_uint64(fields[1], bytes_r) < 0) {
		i_error("launchpad: %s is damaged (the user's next session "
			"writes it again)", path);
		return -1;
	}
	return 1;
}

/* `doveadm launchpad status USER`: the mailbox's sizes, without its
   key. */
static void cmd_launchpad_status_user(const char *user_arg)
{
	struct doveadm_launchpad *lp;
	const char *user, *name, *home, *dir;
	uoff_t db_size, wal_size, ignored_size;
	time_t mtime, fts_mtime;
	uint64_t fts_messages, fts_bytes;
	int fts_ret;

	if (doveadm_launchpad_open(&lp) < 0)
		return;
	if (doveadm_launchpad_user_home(lp, user_arg, &user, &name,
					&home) < 0) {
		doveadm_launchpad_close(&lp);
		return;
	}
	dir = t_strconcat(home, "/", DOVEADM_LAUNCHPAD_MAIL_DIR, "/", NULL);
	if (doveadm_launchpad_file_size(t_strconcat(dir,
			DOVEADM_LAUNCHPAD_DB_FNAME, NULL), &db_size,
			&mtime) < 0 ||
	    doveadm_launchpad_file_size(t_strconcat(dir,
			DOVEADM_LAUNCHPAD_DB_FNAME, "-wal", NULL), &wal_size,
			&mtime) < 0 ||
	    doveadm_launchpad_file_size(t_strconcat(dir,
			DOVEADM_LAUNCHPAD_FTS_USAGE_FNAME, NULL),
			&ignored_size, &fts_mtime) < 0 ||
	    (fts_ret = doveadm_launchpad_fts_usage(t_strconcat(dir,
			DOVEADM_LAUNCHPAD_FTS_USAGE_FNAME, NULL),
			&fts_messages, &fts_bytes)) < 0) {
		doveadm_exit_code = EX_TEMPFAIL;
		doveadm_launchpad_close(&lp);
		return;
	}
	doveadm_print_init(DOVEADM_PRINT_TYPE_PAGER);
	doveadm_print_header_simple("user");
	doveadm_print_header_simple("home");
	doveadm_launchpad_status_num("mailbox_bytes");
	doveadm_launchpad_status_num("fts_messages");
	doveadm_launchpad_status_num("fts_index_bytes");
	doveadm_print_header_simple("fts_updated");
	doveadm_print(user);
	doveadm_print(home);
	doveadm_print_num(db_size + wal_size);
	doveadm_print_num(fts_messages);
	doveadm_print_num(fts_bytes);
	doveadm_print(fts_ret == 0 ? "never" :
		      doveadm_launchpad_time(fts_mtime));
	doveadm_launchpad_close(&lp);
}

static void cmd_launchpad_status(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_cache_counts counts;
	struct lp_sync_result last;
	struct lp_error err, ping_err;
	unsigned int msecs;
	long status;
	bool reachable, have_last;
	const char *user;

	if (doveadm_cmd_param_str(cctx, "user", &user)) {
		cmd_launchpad_status_user(user);
		return;
	}
	if (doveadm_launchpad_open(&lp) < 0)
		return;
	/* a 404 still proves Launchpad answers */
	reachable = lp_ping(lp->ctx, &status, &msecs, &ping_err) == 0;
	if (lp_cache_count(lp->ctx, &counts, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
		doveadm_launchpad_close(&lp);
		return;
	}
	have_last = lp_sync_last(lp->ctx, &last) > 0;

	doveadm_print_init(DOVEADM_PRINT_TYPE_PAGER);
	doveadm_print_header_simple("api_url");
	doveadm_print_header_simple("reachable");
	doveadm_launchpad_status_num("http_status");
	doveadm_launchpad_status_num("latency_ms");
	doveadm_print_header_simple("error");
	doveadm_launchpad_status_num("allow");
	doveadm_launchpad_status_num("allow_expired");
	doveadm_launchpad_status_num("deny");
	doveadm_launchpad_status_num("persons");
	doveadm_launchpad_status_num("teams");
	doveadm_launchpad_status_num("bans");
	doveadm_print_header_simple("last_sync");
	doveadm_print_header_simple("last_sync_finished");
	doveadm_print_header_simple("last_sync_result");
	doveadm_launchpad_status_num("last_sync_users");
	doveadm_launchpad_status_num("last_sync_newly_allowed");
	doveadm_launchpad_status_num("last_sync_newly_denied");
	doveadm_launchpad_status_num("last_sync_failed");

	doveadm_print(lp->config->api_url);
	doveadm_print(reachable ? "yes" : "no");
	doveadm_print_num(status);
	doveadm_print_num(msecs);
	doveadm_print(reachable ? "" : ping_err.text);
	doveadm_print_num(counts.allow);
	doveadm_print_num(counts.allow_expired);
	doveadm_print_num(counts.deny);
	doveadm_print_num(counts.persons);
	doveadm_print_num(counts.teams);
	doveadm_print_num(counts.bans);
	doveadm_print(have_last ? doveadm_launchpad_time(last.started) : "");
	doveadm_print(have_last ? doveadm_launchpad_time(last.finished) : "");
	doveadm_print(!have_last ? "never" : last.partial ? "partial" : "ok");
	doveadm_print_num(last.users);
	doveadm_print_num(last.newly_allowed);
	doveadm_print_num(last.newly_denied);
	doveadm_print_num(last.failed);
	if (!reachable) {
		i_error("launchpad: %s unreachable: %s", lp->config->api_url,
			ping_err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	}
	doveadm_launchpad_close(&lp);
}

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_status = {
	.name = "launchpad status",
	.cmd = cmd_launchpad_status,
	.usage = "[<user>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
