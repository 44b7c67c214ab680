/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-launchpad.h"

#include <sysexits.h>

/* Bans are per Launchpad name and hold for every domain; the mailbox is
   kept. */
static const char *cmd_launchpad_ban_name(struct doveadm_cmd_context *cctx)
{
	const char *user, *p;

	if (!doveadm_cmd_param_str(cctx, "user", &user)) {
		i_error("launchpad: USER missing");
		doveadm_exit_code = EX_USAGE;
		return NULL;
	}
	user = t_str_lcase(user);
	p = strrchr(user, '@');
	if (p != NULL)
		user = t_strdup_until(user, p);
	if (!lp_name_is_valid(user)) {
		i_error("launchpad: %s: not a Launchpad name", user);
		doveadm_exit_code = EX_USAGE;
		return NULL;
	}
	return user;
}

static void cmd_launchpad_ban_finish(struct doveadm_launchpad *lp,
				     const char *name, bool ban)
{
	struct doveadm_launchpad_cutoff cut;

	/* A ban or unban must reach the next login, not the next auth cache
	   expiry; a ban also ends the sessions open now (every domain). */
	doveadm_launchpad_cut_off(lp, name, NULL,
				  t_strdup_printf("%s of %s", ban ? "ban" :
						  "unban", name), ban, &cut);
}

static void cmd_launchpad_ban(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_error err;
	const char *name, *reason;

	if ((name = cmd_launchpad_ban_name(cctx)) == NULL)
		return;
	if (!doveadm_cmd_param_str(cctx, "reason", &reason))
		reason = "";
	if (doveadm_launchpad_open(&lp) < 0)
		return;
	if (lp_ban_set(lp->ctx, name, reason, &err) < 0 ||
	    lp_cache_invalidate(lp->ctx, name, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	} else {
		cmd_launchpad_ban_finish(lp, name, TRUE);
	}
	doveadm_launchpad_close(&lp);
}

static void cmd_launchpad_unban(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_error err;
	const char *name;
	int ret;

	if ((name = cmd_launchpad_ban_name(cctx)) == NULL)
		return;
	if (doveadm_launchpad_open(&lp) < 0)
		return;
	ret = lp_ban_clear(lp->ctx, name, &err);
	if (ret < 0 || lp_cache_invalidate(lp->ctx, name, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	} else if (ret == 0) {
		i_error("launchpad: %s is not banned", name);
		doveadm_exit_code = DOVEADM_EX_NOTFOUND;
	} else {
		cmd_launchpad_ban_finish(lp, name, FALSE);
	}
	doveadm_launchpad_close(&lp);
}

static int cmd_launchpad_ban_list_cb(const struct lp_ban_entry *ban,
				     void *context ATTR_UNUSED)
{
	T_BEGIN {
		doveadm_print(ban->name);
		doveadm_print(ban->reason);
		doveadm_print(doveadm_launchpad_time(ban->set_at));
	} T_END;
	return 0;
}

static void cmd_launchpad_ban_list(struct doveadm_cmd_context *cctx ATTR_UNUSED)
{
	struct doveadm_launchpad *lp;
	struct lp_error err;

	if (doveadm_launchpad_open(&lp) < 0)
		return;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	doveadm_print_header_simple("name");
	doveadm_print_header_simple("reason");
	doveadm_print_header_simple("since");
	if (lp_ban_list(lp->ctx, cmd_launchpad_ban_list_cb, NULL, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	}
	doveadm_launchpad_close(&lp);
}

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_ban_list = {
	.name = "launchpad ban list",
	.cmd = cmd_launchpad_ban_list,
	.usage = "",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_ban = {
	.name = "launchpad ban",
	.cmd = cmd_launchpad_ban,
	.usage = "<user> [<reason>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAM('\0', "reason", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_unban = {
	.name = "launchpad unban",
	.cmd = cmd_launchpad_unban,
	.usage = "<user>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
