/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ostream.h"
#include "hostpid.h"
#include "time-util.h"
#include "message-date.h"
#include "smtp-address.h"
#include "smtp-submit.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-settings.h"
#include "doveadm-launchpad.h"

#include <sys/stat.h>
#include <sysexits.h>

/* Event words: the notification marker key and the "change" column. */
#define DOVEADM_LAUNCHPAD_EV_ENTITLED "entitled"
#define DOVEADM_LAUNCHPAD_EV_DENIED "denied"
#define DOVEADM_LAUNCHPAD_EV_DEPROVISIONED "deprovisioned"

struct doveadm_launchpad_event {
	const char *user;
	const char *event;
	const char *text;
	/* from lp_notify_queue(): dequeued once the mail went out */
	bool queued:1;
};

struct doveadm_launchpad_sync_ctx {
	struct doveadm_launchpad *lp;
	pool_t pool;
	ARRAY(struct doveadm_launchpad_event) events;
	unsigned int flush_failures;
};

static const char *doveadm_launchpad_kind_name(enum lp_verdict_kind kind)
{
	return kind == LP_VERDICT_ALLOW ? "allow" : "deny";
}

/* An allow -> deny for someone with a mailbox is a deprovisioning (the
   mailbox is kept); without one, only a denial. */
static const char *
doveadm_launchpad_denied_event(struct doveadm_launchpad *lp, const char *user)
{
	const char *canon, *name, *home;
	struct stat st;

	if (doveadm_launchpad_user_home(lp, user, &canon, &name, &home) < 0) {
		doveadm_exit_code = 0;
		return DOVEADM_LAUNCHPAD_EV_DENIED;
	}
	return stat(home, &st) == 0 ? DOVEADM_LAUNCHPAD_EV_DEPROVISIONED :
		DOVEADM_LAUNCHPAD_EV_DENIED;
}

static int doveadm_launchpad_sync_cb(const struct lp_sync_change *change,
				     void *context)
{
	struct doveadm_launchpad_sync_ctx *ctx = context;
	struct doveadm_launchpad_event *ev;
	struct doveadm_launchpad_cutoff cut;
	const char *event = NULL, *name, *p;

	T_BEGIN {
		switch (change->kind) {
		case LP_SYNC_SAME:
			break;
		case LP_SYNC_ALLOWED:
			event = DOVEADM_LAUNCHPAD_EV_ENTITLED;
			break;
		case LP_SYNC_DENIED:
			event = doveadm_launchpad_denied_event(ctx->lp,
							       change->user);
			/* They lose access at the next login, not at the
			   end of Dovecot's auth cache TTL, and the sessions
			   open now end. */
			p = strrchr(change->user, '@');
			name = p == NULL ? change->user :
				t_strdup_until(change->user, p);
			doveadm_launchpad_cut_off(ctx->lp, name, change->user,
				t_strdup_printf("%s: %s", change->user, event),
				TRUE, &cut);
			if (cut.failed)
				ctx->flush_failures++;
			break;
		case LP_SYNC_REASON:
			event = "reason";
			break;
		case LP_SYNC_FAILED:
			event = "failed";
			i_error("launchpad: %s: not re-checked: %s",
				change->user, change->text);
			break;
		}
		if (event != NULL) {
			doveadm_print(change->user);
			doveadm_print(!change->had_old ? "" :
				      doveadm_launchpad_kind_name(change->old_kind));
			doveadm_print(change->kind == LP_SYNC_FAILED ? "" :
				      doveadm_launchpad_kind_name(change->new_kind));
			doveadm_print(event);
			doveadm_print(change->text);
		}
		if (event != NULL && change->kind != LP_SYNC_REASON &&
		    change->kind != LP_SYNC_FAILED &&
		    ctx->lp->config->notify_to != NULL &&
		    lp_notify_pending(ctx->lp->ctx, change->user, event) > 0) {
			ev = array_append_space(&ctx->events);
			ev->user = p_strdup(ctx->pool, change->user);
			ev->event = event;
			ev->text = p_strdup(ctx->pool, change->text);
		}
	} T_END;
	return 0;
}

/* Events queued outside the sync (activations on the web page or by
   password generate) join this pass's mail, once each. */
static int doveadm_launchpad_queued_cb(const struct lp_notify_event *qev,
				       void *context)
{
	struct doveadm_launchpad_sync_ctx *ctx = context;
	struct doveadm_launchpad_event *ev;
	struct lp_error err;

	if (ctx->lp->config->notify_to == NULL ||
	    lp_notify_pending(ctx->lp->ctx, qev->user, qev->event) == 0) {
		/* nobody to tell, or already told */
		if (lp_notify_dequeue(ctx->lp->ctx, qev->user, qev->event,
				      &err) < 0)
			i_error("launchpad: %s", err.text);
		return 0;
	}
	ev = array_append_space(&ctx->events);
	ev->user = p_strdup(ctx->pool, qev->user);
	ev->event = p_strdup(ctx->pool, qev->event);
	ev->text = p_strdup_printf(ctx->pool, "%s%s%s", qev->text,
				   qev->text[0] == '\0' ? "" : ", ",
				   t_strfgmtime("%Y-%m-%d %H:%M UTC", qev->at));
	ev->queued = TRUE;
	return 0;
}

/* ---- the admin mail, through Dovecot's own submission settings ---- */

static struct smtp_address *
doveadm_launchpad_address(const char *addr, const char **error_r)
{
	struct smtp_address *address;

	if (smtp_address_parse_mailbox(pool_datastack_create(), addr,
				       SMTP_ADDRESS_PARSE_FLAG_ALLOW_LOCALPART,
				       &address, error_r) < 0)
		return NULL;
	return address;
}

static void doveadm_launchpad_write_mail(struct ostream *output,
					 const struct lp_config *config,
					 const char *from,
					 const ARRAY_TYPE(const_string) *rcpts,
					 const struct doveadm_launchpad_event *events,
					 unsigned int count)
{
	string_t *str = t_str_new(1024);
	unsigned int n_entitled = 0, n_activated = 0, n_other = 0;

	for (unsigned int i = 0; i < count; i++) {
		if (strcmp(events[i].event, DOVEADM_LAUNCHPAD_EV_ENTITLED) == 0)
			n_entitled++;
		else if (strcmp(events[i].event, LP_NOTIFY_ACTIVATED) == 0)
			n_activated++;
		else
			n_other++;
	}
	str_printfa(str, "From: %s\r\n", from);
	str_printfa(str, "To: %s\r\n",
		    t_strarray_join(array_front(rcpts), ", "));
	str_printfa(str, "Subject: dovecot-launchpad: %u newly entitled, "
		    "%u activated, %u denied or deprovisioned\r\n",
		    n_entitled, n_activated, n_other);
	str_printfa(str, "Date: %s\r\n", message_date_create(ioloop_time));
	str_printfa(str, "Message-ID: <launchpad-sync.%ld.%s@%s>\r\n",
		    (long)ioloop_time, my_pid, my_hostname);
	str_append(str, "Auto-Submitted: auto-generated\r\n"
		   "MIME-Version: 1.0\r\n"
		   "Content-Type: text/plain; charset=utf-8\r\n"
		   "Content-Transfer-Encoding: 8bit\r\n\r\n");
	str_printfa(str, "doveadm launchpad sync (%s) saw "
		    "(activations since the last pass included):\r\n\r\n",
		    config->path);
	for (unsigned int i = 0; i < count; i++) {
		str_printfa(str, "%-14s %s", events[i].event, events[i].user);
		if (events[i].text[0] != '\0')
			str_printfa(str, ": %s", events[i].text);
		str_append(str, "\r\n");
	}
	str_append(str, "\r\nDeprovisioned users can no longer log in; their "
		   "mail is kept.\r\n");
	o_stream_nsend(output, str_data(str), str_len(str));
}

/* Sends one mail for all pending events. Returns 0 or -1 (logged). */
static int
doveadm_launchpad_notify_send(struct doveadm_launchpad_sync_ctx *ctx)
{
	const struct lp_config *config = ctx->lp->config;
	const struct smtp_submit_settings *set;
	struct smtp_submit_input input;
	struct smtp_submit *subm;
	struct smtp_address *from_addr, *rcpt;
	ARRAY_TYPE(const_string) rcpts;
	const struct doveadm_launchpad_event *events;
	const char *const *tos, *from, *error;
	unsigned int count;
	int ret;

	events = array_get(&ctx->events, &count);
	if (count == 0)
		return 0;
	set = doveadm_setting_roots_get_settings(
		&smtp_submit_setting_parser_info);
	if (set == NULL) {
		i_error("launchpad: notify_to: no submission settings");
		return -1;
	}
	from = config->notify_from != NULL ? config->notify_from :
		t_strconcat("postmaster@", my_hostname, NULL);
	from_addr = doveadm_launchpad_address(from, &error);
	if (from_addr == NULL) {
		i_error("launchpad: %s: notify_from '%s': %s", config->path,
			from, error);
		return -1;
	}

	i_zero(&input);
	/* doveadm runs as root; sendmail_path is the admin's own choice */
	input.allow_root = TRUE;
	subm = smtp_submit_init_simple(&input, set, from_addr);
	t_array_init(&rcpts, 4);
	tos = t_strsplit_spaces(config->notify_to, ", ");
	for (; *tos != NULL; tos++) {
		if ((rcpt = doveadm_launchpad_address(*tos, &error)) == NULL) {
			i_error("launchpad: %s: notify_to '%s': %s",
				config->path, *tos, error);
			smtp_submit_deinit(&subm);
			return -1;
		}
		smtp_submit_add_rcpt(subm, rcpt);
		array_push_back(&rcpts, tos);
	}
	array_append_zero(&rcpts);
	array_pop_back(&rcpts);
	doveadm_launchpad_write_mail(smtp_submit_send(subm), config, from,
				     &rcpts, events, count);
	ret = smtp_submit_run(subm, &error);
	smtp_submit_deinit(&subm);
	if (ret <= 0) {
		i_error("launchpad: notification to %s failed: %s",
			config->notify_to, error);
		return -1;
	}
	/* Markers only after the mail went out: a failed send is retried
	   by the next sync. */
	for (unsigned int i = 0; i < count; i++) {
		(void)lp_notify_mark(ctx->lp->ctx, events[i].user,
				     events[i].event, NULL);
		if (events[i].queued) {
			(void)lp_notify_dequeue(ctx->lp->ctx, events[i].user,
						events[i].event, NULL);
		}
	}
	return 0;
}

/* The queue is read, mailed and cleared under the notify lock: a second
   sync right behind this one finds the markers set. */
static int doveadm_launchpad_notify(struct doveadm_launchpad_sync_ctx *ctx)
{
	struct lp_error err;
	int lock_fd = -1, ret;

	if (lp_notify_lock(ctx->lp->ctx, &lock_fd, &err) < 0) {
		i_error("launchpad: %s", err.text);
		return -1;
	}
	if (lp_notify_queue_list(ctx->lp->ctx, doveadm_launchpad_queued_cb,
				 ctx, &err) < 0)
		i_error("launchpad: queued notifications: %s", err.text);
	ret = doveadm_launchpad_notify_send(ctx);
	lp_notify_unlock(&lock_fd);
	return ret;
}

/* ---- sync and refresh ---- */

static void doveadm_launchpad_sync_pass(struct doveadm_launchpad *lp)
{
	struct doveadm_launchpad_sync_ctx ctx = {
		.lp = lp,
	};
	struct lp_sync_result result;
	struct lp_error err;
	int ret;

	ctx.pool = pool_alloconly_create("launchpad sync", 4096);
	p_array_init(&ctx.events, ctx.pool, 16);

	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	doveadm_print_header_simple("user");
	doveadm_print_header_simple("old");
	doveadm_print_header_simple("new");
	doveadm_print_header_simple("change");
	doveadm_print_header_simple("reason");

	ret = lp_sync_run(lp->ctx, doveadm_launchpad_sync_cb, &ctx, &result,
			  &err);
	if (ret < 0) {
		i_error("launchpad: sync: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
	} else if (ret == 0) {
		i_error("launchpad: sync already running");
		doveadm_exit_code = EX_TEMPFAIL;
	} else {
		if (doveadm_launchpad_notify(&ctx) < 0)
			result.partial = TRUE;
		if (ctx.flush_failures > 0)
			result.partial = TRUE;
		if (lp_sync_last_put(lp->ctx, &result, &err) < 0)
			i_error("launchpad: sync: %s", err.text);
		/* the totals, as one last row */
		doveadm_print("");
		doveadm_print("");
		doveadm_print("");
		doveadm_print(result.partial ? "partial" : "total");
		doveadm_print(t_strdup_printf(
			"teams=%u teams_failed=%u users=%u allowed=%u "
			"denied=%u newly_allowed=%u newly_denied=%u "
			"failed=%u requests=%u",
			result.teams, result.teams_failed, result.users,
			result.allowed, result.denied, result.newly_allowed,
			result.newly_denied, result.failed,
			result.http_requests));
		if (result.partial) {
			i_error("launchpad: sync partial: %u of %u teams and "
				"%u of %u users failed; their old state is "
				"kept", result.teams_failed, result.teams,
				result.failed, result.users);
			doveadm_exit_code = EX_TEMPFAIL;
		}
	}
	pool_unref(&ctx.pool);
}

static void cmd_launchpad_sync(struct doveadm_cmd_context *cctx ATTR_UNUSED)
{
	struct doveadm_launchpad *lp;

	if (doveadm_launchpad_open(&lp) < 0)
		return;
	doveadm_launchpad_sync_pass(lp);
	doveadm_launchpad_close(&lp);
}

static void cmd_launchpad_refresh(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_entitlement ent;
	const char *user;

	if (doveadm_launchpad_open(&lp) < 0)
		return;
	if (!doveadm_cmd_param_str(cctx, "user", &user)) {
		/* every known user: the sync pass, one fetch per team */
		doveadm_launchpad_sync_pass(lp);
		doveadm_launchpad_close(&lp);
		return;
	}
	lp_entitlement_refresh(lp->ctx, t_str_lcase(user), &ent);
	if (ent.login == LP_LOGIN_OK &&
	    doveadm_launchpad_flush_auth_cache(lp, ent.name) < 0)
		doveadm_exit_code = EX_TEMPFAIL;
	if (ent.verdict.kind == LP_VERDICT_TEMPFAIL) {
		i_error("launchpad: %s: %s", user, ent.verdict.text);
		doveadm_exit_code = EX_TEMPFAIL;
	} else if (ent.login != LP_LOGIN_OK) {
		i_error("launchpad: %s: %s", user, ent.verdict.text);
		doveadm_exit_code = EX_NOUSER;
	}
	doveadm_print_init(DOVEADM_PRINT_TYPE_FLOW);
	doveadm_print_header_simple("user");
	doveadm_print_header_simple("verdict");
	doveadm_print_header_simple("reason");
	doveadm_print(ent.login == LP_LOGIN_OK ? ent.user : user);
	doveadm_print(ent.verdict.kind == LP_VERDICT_ALLOW ? "allow" :
		      ent.verdict.kind == LP_VERDICT_DENY ? "deny" :
		      "tempfail");
	doveadm_print(ent.verdict.text);
	doveadm_launchpad_close(&lp);
}

void doveadm_launchpad_sync_init(void)
{
	/* Before doveadm reads its settings: then submission_host and
	   sendmail_path from dovecot.conf reach the notification mail. */
	doveadm_setting_roots_add(&smtp_submit_setting_parser_info);
}

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_sync = {
	.name = "launchpad sync",
	.cmd = cmd_launchpad_sync,
	.usage = "",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_refresh = {
	.name = "launchpad refresh",
	.cmd = cmd_launchpad_refresh,
	.usage = "[<user>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
