/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-launchpad.h"

#include <sysexits.h>

/* `doveadm launchpad backend assign|show|list` on the proxy: where the
   passdb's proxy mode sends each user (lp-backend.c has the rule).  Moving
   a user's mail is the admin's part (README: "Several backends"); assign
   only changes where the next login and delivery go. */

static const char *
cmd_launchpad_backend_source(enum lp_backend_source source)
{
	switch (source) {
	case LP_BACKEND_HASHED:
		return "hash";
	case LP_BACKEND_PINNED:
		return "first-login";
	case LP_BACKEND_ASSIGNED:
		return "admin";
	case LP_BACKEND_UNREADABLE:
		return "unreadable";
	}
	i_unreached();
}

static void cmd_launchpad_backend_header(void)
{
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	doveadm_print_header_simple("user");
	doveadm_print_header_simple("backend");
	doveadm_print_header_simple("source");
	doveadm_print_header_simple("since");
	doveadm_print_header_simple("configured");
}

static void cmd_launchpad_backend_row(const char *user,
				      const struct lp_backend_placement *p)
{
	doveadm_print(user);
	doveadm_print(p->host);
	doveadm_print(cmd_launchpad_backend_source(p->source));
	doveadm_print(doveadm_launchpad_time(p->assigned_at));
	doveadm_print(p->configured ? "yes" : "no");
}

/* Opens the context and the canonical user of the "user" parameter.
   Returns 0, or -1 (logged, exit code set, nothing left open). */
static int cmd_launchpad_backend_open(struct doveadm_cmd_context *cctx,
				      struct doveadm_launchpad **lp_r,
				      const char **user_r, const char **name_r)
{
	const char *user, *home;

	if (!doveadm_cmd_param_str(cctx, "user", &user)) {
		i_error("launchpad: USER missing");
		doveadm_exit_code = EX_USAGE;
		return -1;
	}
	if (doveadm_launchpad_open(lp_r) < 0)
		return -1;
	if ((*lp_r)->config->backends_count == 0) {
		i_error("launchpad: %s: no backends configured (proxy mode "
			"is off)", (*lp_r)->config->path);
		doveadm_exit_code = EX_CONFIG;
		doveadm_launchpad_close(lp_r);
		return -1;
	}
	if (doveadm_launchpad_user_home(*lp_r, user, user_r, name_r,
					&home) < 0) {
		doveadm_launchpad_close(lp_r);
		return -1;
	}
	return 0;
}

static void cmd_launchpad_backend_assign(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_backend_placement p;
	struct lp_error err;
	const char *user, *name, *host;
	int flushed;

	if (!doveadm_cmd_param_str(cctx, "backend", &host)) {
		i_error("launchpad: BACKEND missing");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (cmd_launchpad_backend_open(cctx, &lp, &user, &name) < 0)
		return;
	if (lp_backend_assign(lp->ctx, user, t_str_lcase(host), &err) < 0 ||
	    lp_backend_show(lp->ctx, user, &p, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = err.kind == LP_ERR_CONFIG ?
			EX_DATAERR : EX_TEMPFAIL;
		doveadm_launchpad_close(&lp);
		return;
	}
	/* The proxy's auth cache holds the old host for up to
	   auth_cache_ttl: the next login must see the new one. */
	flushed = doveadm_launchpad_flush_auth_cache(lp, name);
	if (flushed < 0)
		doveadm_exit_code = EX_TEMPFAIL;
	cmd_launchpad_backend_header();
	doveadm_print_header_simple("auth_cache");
	cmd_launchpad_backend_row(user, &p);
	doveadm_print(dec2str(flushed));
	doveadm_launchpad_close(&lp);
}

static void cmd_launchpad_backend_show(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_backend_placement p;
	struct lp_error err;
	const char *user, *name;

	if (cmd_launchpad_backend_open(cctx, &lp, &user, &name) < 0)
		return;
	if (lp_backend_show(lp->ctx, user, &p, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	} else {
		cmd_launchpad_backend_header();
		cmd_launchpad_backend_row(user, &p);
	}
	doveadm_launchpad_close(&lp);
}

static int cmd_launchpad_backend_list_cb(const char *user,
					 const struct lp_backend_placement *p,
					 void *context ATTR_UNUSED)
{
	T_BEGIN {
		cmd_launchpad_backend_row(user, p);
	} T_END;
	return 0;
}

static void
cmd_launchpad_backend_list(struct doveadm_cmd_context *cctx ATTR_UNUSED)
{
	struct doveadm_launchpad *lp;
	struct lp_error err;

	if (doveadm_launchpad_open(&lp) < 0)
		return;
	cmd_launchpad_backend_header();
	if (lp_backend_list(lp->ctx, cmd_launchpad_backend_list_cb, NULL,
			    &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	}
	doveadm_launchpad_close(&lp);
}

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_backend_assign = {
	.name = "launchpad backend assign",
	.cmd = cmd_launchpad_backend_assign,
	.usage = "<user> <backend>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAM('\0', "backend", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_backend_show = {
	.name = "launchpad backend show",
	.cmd = cmd_launchpad_backend_show,
	.usage = "<user>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_backend_list = {
	.name = "launchpad backend list",
	.cmd = cmd_launchpad_backend_list,
	.usage = "",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAMS_END
};
