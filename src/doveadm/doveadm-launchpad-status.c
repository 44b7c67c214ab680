/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-launchpad.h"

#include <sysexits.h>

static void doveadm_launchpad_status_num(const char *name)
{
	doveadm_print_header(name, name, DOVEADM_PRINT_HEADER_FLAG_NUMBER);
}

static void cmd_launchpad_status(struct doveadm_cmd_context *cctx ATTR_UNUSED)
{
	struct doveadm_launchpad *lp;
	struct lp_cache_counts counts;
	struct lp_sync_result last;
	struct lp_error err, ping_err;
	unsigned int msecs;
	long status;
	bool reachable, have_last;

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
	.usage = "",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAMS_END
};
