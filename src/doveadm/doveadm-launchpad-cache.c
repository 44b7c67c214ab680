/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "time-util.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-launchpad.h"

#include <sysexits.h>

static const char *doveadm_launchpad_verdict_name(enum lp_verdict_kind kind)
{
	switch (kind) {
	case LP_VERDICT_ALLOW:
		return "allow";
	case LP_VERDICT_DENY:
		return "deny";
	case LP_VERDICT_TEMPFAIL:
		return "tempfail";
	}
	i_unreached();
}

static const char *doveadm_launchpad_person_name(enum lp_person_state state)
{
	switch (state) {
	case LP_PERSON_UNKNOWN:
		return "unknown";
	case LP_PERSON_OK:
		return "ok";
	case LP_PERSON_NOT_FOUND:
		return "not-found";
	case LP_PERSON_SUSPENDED:
		return "suspended";
	}
	i_unreached();
}

static const char *doveadm_launchpad_bool(bool value)
{
	return value ? "yes" : "no";
}

static void cmd_launchpad_cache_show(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_cache_user entry;
	struct lp_error err;
	const char *user;
	bool have_verdict;
	int ret;

	if (!doveadm_cmd_param_str(cctx, "user", &user)) {
		i_error("launchpad cache show: USER missing");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (doveadm_launchpad_open(&lp) < 0)
		return;

	ret = lp_cache_show(lp->ctx, t_str_lcase(user), &entry, &err);
	if (ret < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	} else if (ret == 0) {
		i_error("launchpad: nothing cached for %s", user);
		doveadm_exit_code = DOVEADM_EX_NOTFOUND;
	} else {
		/* A record may hold only a ban or only a person record. */
		have_verdict = entry.decided_at != 0;
		doveadm_print_init(DOVEADM_PRINT_TYPE_PAGER);
		doveadm_print_header_simple("user");
		doveadm_print_header_simple("verdict");
		doveadm_print_header_simple("reason");
		doveadm_print_header_simple("decided");
		doveadm_print_header_simple("expires");
		doveadm_print_header_simple("expired");
		doveadm_print_header_simple("person");
		doveadm_print_header_simple("is_valid");
		doveadm_print_header_simple("coc_signed");
		doveadm_print_header_simple("etag");
		doveadm_print_header_simple("person_fetched");
		doveadm_print_header_simple("person_expires");
		doveadm_print_header_simple("banned");
		doveadm_print_header_simple("ban_reason");

		doveadm_print(entry.user);
		doveadm_print(have_verdict ?
			      doveadm_launchpad_verdict_name(entry.kind) : "");
		doveadm_print(entry.text);
		doveadm_print(doveadm_launchpad_time(entry.decided_at));
		doveadm_print(doveadm_launchpad_time(entry.expires_at));
		doveadm_print(!have_verdict ? "" :
			      doveadm_launchpad_bool(entry.expires_at < time(NULL)));
		doveadm_print(entry.have_person ?
			      doveadm_launchpad_person_name(entry.person) : "");
		doveadm_print(entry.have_person ?
			      doveadm_launchpad_bool(entry.is_valid) : "");
		doveadm_print(entry.have_person ?
			      doveadm_launchpad_bool(entry.is_coc_signer) : "");
		doveadm_print(entry.etag);
		doveadm_print(doveadm_launchpad_time(entry.person_fetched_at));
		doveadm_print(doveadm_launchpad_time(entry.person_expires_at));
		doveadm_print(doveadm_launchpad_bool(entry.banned));
		doveadm_print(entry.ban_reason);
	}
	doveadm_launchpad_close(&lp);
}

static void cmd_launchpad_cache_invalidate(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_error err;
	const char *user = NULL, *name, *p;
	bool all = FALSE;
	int records, flushed;

	(void)doveadm_cmd_param_bool(cctx, "all", &all);
	if (!doveadm_cmd_param_str(cctx, "user", &user) && !all) {
		i_error("launchpad cache invalidate: USER or -A missing");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (all && user != NULL) {
		i_error("launchpad cache invalidate: USER and -A together");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (all) {
		name = NULL;
	} else {
		user = t_str_lcase(user);
		p = strrchr(user, '@');
		name = p == NULL ? user : t_strdup_until(user, p);
		if (!lp_name_is_valid(name)) {
			i_error("launchpad: %s: not a Launchpad name", user);
			doveadm_exit_code = EX_USAGE;
			return;
		}
	}
	if (doveadm_launchpad_open(&lp) < 0)
		return;

	records = all ? lp_cache_invalidate_all(lp->ctx, &err) :
		lp_cache_invalidate(lp->ctx, name, &err);
	if (records < 0) {
		i_error("launchpad: %s: %s", all ? "cache" : name, err.text);
		doveadm_exit_code = EX_TEMPFAIL;
		doveadm_launchpad_close(&lp);
		return;
	}
	/* Without this, Dovecot's own auth cache would keep answering with
	   the old decision (and KEK) until its TTL.  -A flushes all of it. */
	flushed = doveadm_launchpad_flush_auth_cache(lp, name);
	if (flushed < 0)
		doveadm_exit_code = EX_TEMPFAIL;

	doveadm_print_init(DOVEADM_PRINT_TYPE_FLOW);
	doveadm_print_header_simple("user");
	doveadm_print_header("records", "records",
			     DOVEADM_PRINT_HEADER_FLAG_NUMBER);
	doveadm_print_header("auth_cache", "auth_cache",
			     DOVEADM_PRINT_HEADER_FLAG_NUMBER);
	doveadm_print(all ? "*" : name);
	doveadm_print_num(records);
	doveadm_print_num(flushed < 0 ? 0 : flushed);
	doveadm_launchpad_close(&lp);
}

static int cmd_launchpad_cache_list_cb(const struct lp_cache_user *entry,
				       void *context)
{
	const time_t *now = context;

	T_BEGIN {
		doveadm_print(entry->user);
		doveadm_print(doveadm_launchpad_verdict_name(entry->kind));
		doveadm_print(entry->text);
		doveadm_print(doveadm_launchpad_time(entry->decided_at));
		doveadm_print(doveadm_launchpad_time(entry->expires_at));
		doveadm_print(doveadm_launchpad_bool(entry->expires_at <= *now));
	} T_END;
	return 0;
}

static void cmd_launchpad_cache_list(struct doveadm_cmd_context *cctx ATTR_UNUSED)
{
	struct doveadm_launchpad *lp;
	struct lp_error err;
	time_t now = time(NULL);

	if (doveadm_launchpad_open(&lp) < 0)
		return;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	doveadm_print_header_simple("user");
	doveadm_print_header_simple("verdict");
	doveadm_print_header_simple("reason");
	doveadm_print_header_simple("fetched");
	doveadm_print_header_simple("expires");
	/* past expires_at: a login asks Launchpad again, or serves it
	   within stale_grace while Launchpad is down */
	doveadm_print_header_simple("stale");
	if (lp_cache_list(lp->ctx, cmd_launchpad_cache_list_cb, &now,
			  &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	}
	doveadm_launchpad_close(&lp);
}

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_cache_show = {
	.name = "launchpad cache show",
	.cmd = cmd_launchpad_cache_show,
	.usage = "<user>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_cache_invalidate = {
	.name = "launchpad cache invalidate",
	.cmd = cmd_launchpad_cache_invalidate,
	.usage = "-A | <user>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('A', "all", CMD_PARAM_BOOL, CMD_PARAM_FLAG_NONE)
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_cache_list = {
	.name = "launchpad cache list",
	.cmd = cmd_launchpad_cache_list,
	.usage = "",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAMS_END
};
