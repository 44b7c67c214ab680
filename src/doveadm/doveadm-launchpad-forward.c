/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "ioloop.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-launchpad.h"

#include <sysexits.h>

/* `doveadm launchpad forward set [--keep] USER ADDRESS | show USER |
   clear USER`: the user's forwarding script (lp-forward.c), run by
   Pigeonhole at LMTP before anything is sealed.  Setting it needs the
   user to be entitled now and queues the admin notification
   "forwarding"; it works without a mailbox (forward-only). */

/* Opens launchpad and finds USER's home (entitled: the user must be
   entitled now).  Returns 0 with *lp_r open, -1 (reported) with nothing
   open. */
static int
cmd_launchpad_forward_open(struct doveadm_cmd_context *cctx, bool entitled,
			   struct doveadm_launchpad **lp_r,
			   const char **user_r, const char **home_r)
{
	struct lp_entitlement ent;
	const char *user, *name;

	if (!doveadm_cmd_param_str(cctx, "user", &user)) {
		i_error("launchpad: USER missing");
		doveadm_exit_code = EX_USAGE;
		return -1;
	}
	if (doveadm_launchpad_open(lp_r) < 0)
		return -1;
	if ((entitled &&
	     doveadm_launchpad_require_entitled(*lp_r, user, &ent) < 0) ||
	    doveadm_launchpad_user_home(*lp_r, user, user_r, &name,
					home_r) < 0) {
		doveadm_launchpad_close(lp_r);
		return -1;
	}
	return 0;
}

static void cmd_launchpad_forward_print(const char *user,
					const struct lp_forward *fwd)
{
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	doveadm_print_header_simple("user");
	doveadm_print_header_simple("forward");
	doveadm_print_header_simple("keep");
	doveadm_print(user);
	doveadm_print(fwd == NULL ? "" : fwd->address);
	doveadm_print(fwd == NULL ? "" : (fwd->keep ? "yes" : "no"));
}

static void cmd_launchpad_forward_set(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_forward fwd;
	struct lp_error err;
	const char *user, *home, *address;
	bool keep = FALSE;

	if (!doveadm_cmd_param_str(cctx, "address", &address)) {
		i_error("launchpad: ADDRESS missing");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	(void)doveadm_cmd_param_bool(cctx, "keep", &keep);
	if (!lp_forward_address_is_valid(address)) {
		i_error("launchpad: %s: not a mail address this can forward to",
			address);
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (cmd_launchpad_forward_open(cctx, TRUE, &lp, &user, &home) < 0)
		return;
	i_zero(&fwd);
	i_assert(strlen(address) < sizeof(fwd.address));
	memcpy(fwd.address, address, strlen(address) + 1);
	fwd.keep = keep;
	if (lp_forward_write(home, &fwd, lp->uid, lp->gid, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	} else {
		i_info("launchpad: %s: forwarding to %s (%s)", user, address,
		       keep ? "a copy kept" : "no copy kept");
		if (lp_notify_queue(lp->ctx, user,
				    LP_NOTIFY_FORWARDING,
				    t_strdup_printf("forwarding to %s%s",
						    address, keep ?
						    " (a copy kept)" : ""),
				    ioloop_time, &err) < 0)
			i_warning("launchpad: notification not queued: %s",
				  err.text);
		cmd_launchpad_forward_print(user, &fwd);
	}
	doveadm_launchpad_close(&lp);
}

static void cmd_launchpad_forward_show(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_forward fwd;
	struct lp_error err;
	const char *user, *home;
	int ret;

	if (cmd_launchpad_forward_open(cctx, FALSE, &lp, &user, &home) < 0)
		return;
	ret = lp_forward_read(home, &fwd, &err);
	if (ret < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_DATAERR;
	} else {
		cmd_launchpad_forward_print(user, ret > 0 ? &fwd : NULL);
	}
	doveadm_launchpad_close(&lp);
}

static void cmd_launchpad_forward_clear(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_error err;
	const char *user, *home;
	int ret;

	if (cmd_launchpad_forward_open(cctx, FALSE, &lp, &user, &home) < 0)
		return;
	ret = lp_forward_clear(home, &err);
	if (ret < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	} else if (ret == 0) {
		i_error("launchpad: %s does not forward", user);
		doveadm_exit_code = DOVEADM_EX_NOTFOUND;
	} else {
		i_info("launchpad: %s: forwarding off", user);
	}
	doveadm_launchpad_close(&lp);
}

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_forward_set = {
	.name = "launchpad forward set",
	.cmd = cmd_launchpad_forward_set,
	.usage = "[--keep] <user> <address>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('k', "keep", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAM('\0', "address", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_forward_show = {
	.name = "launchpad forward show",
	.cmd = cmd_launchpad_forward_show,
	.usage = "<user>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_forward_clear = {
	.name = "launchpad forward clear",
	.cmd = cmd_launchpad_forward_clear,
	.usage = "<user>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
