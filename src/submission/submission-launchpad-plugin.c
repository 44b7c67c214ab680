/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Dovecot's submission service, for name@D mailboxes: the envelope sender
   and the header From: (and Sender:, if present) must be one of the
   addresses the passdb found the user entitled to at login (userdb field
   launchpad_send_as); anything else gets 553 5.7.1 naming those
   addresses.  Messages per hour and recipients per message are limited
   per Launchpad name (4xx), the hour's counters in send_state_path (a TDB
   of src/launchpad/lp-sendlimit.c).  Everything this process needs comes
   from the login's userdb fields: it runs as the mail uid and never reads
   dovecot-launchpad.conf.ext. */

#include "lib.h"
#include "istream.h"
#include "str.h"
#include "str-sanitize.h"
#include "module-context.h"
#include "message-address.h"
#include "message-header-parser.h"
#include "mail-user.h"
#include "smtp-address.h"
#include "submission-common.h"
#include "submission-client.h"
#include "launchpad.h"

#include <time.h>

#define SUBMISSION_LAUNCHPAD_CONTEXT(obj) \
	MODULE_CONTEXT_REQUIRE(obj, submission_launchpad_module)

/* userdb fields set by the launchpad passdb for service submission */
#define SUBMISSION_LAUNCHPAD_SEND_AS "launchpad_send_as"
#define SUBMISSION_LAUNCHPAD_PER_HOUR "launchpad_send_per_hour"
#define SUBMISSION_LAUNCHPAD_RCPT_MAX "launchpad_send_rcpt_max"
#define SUBMISSION_LAUNCHPAD_STATE "launchpad_send_state"

/* From:/Sender: addresses looked at per header line */
#define SUBMISSION_LAUNCHPAD_MAX_ADDRESSES 100

struct submission_launchpad_client {
	union submission_module_context module_ctx;

	const char *name;	/* the Launchpad name: the counters' key */
	const char *send_as;	/* "name@d1 name@d2" */
	const char *allowed;	/* "<name@d1>, <name@d2>" for replies */
	unsigned int per_hour, rcpt_max;	/* 0 = no limit */
	const char *state_path;
	struct lp_sendlimit *limit;	/* opened at the first MAIL */
	unsigned int rcpts;	/* RCPTs accepted in this transaction */
	bool misconfigured:1;	/* fields missing: refuse every sender */
};

const char *submission_launchpad_plugin_version = DOVECOT_ABI_VERSION;
const char submission_launchpad_plugin_binary_dependency[] = "submission";

void submission_launchpad_plugin_init(struct module *module);
void submission_launchpad_plugin_deinit(void);

static submission_client_created_func_t *next_hook_client_created;

static MODULE_CONTEXT_DEFINE_INIT(submission_launchpad_module,
				  &submission_module_register);

static struct event_category event_category_launchpad = {
	.name = "launchpad",
};

static void
submission_launchpad_error(struct client *client, const char *fmt, ...)
	ATTR_FORMAT(2, 3);
static void
submission_launchpad_error(struct client *client, const char *fmt, ...)
{
	struct event *event = event_create(client->user->event);
	va_list args;

	event_add_category(event, &event_category_launchpad);
	va_start(args, fmt);
	e_error(event, "launchpad: %s", t_strdup_vprintf(fmt, args));
	va_end(args);
	event_unref(&event);
}

static bool
submission_launchpad_count_setting(struct client *client, const char *key,
				   unsigned int *value_r)
{
	const char *value = mail_user_plugin_getenv(client->user, key);

	if (value == NULL || str_to_uint(value, value_r) < 0) {
		submission_launchpad_error(client, "userdb field %s missing "
					   "or invalid", key);
		return FALSE;
	}
	return TRUE;
}

/* Opens the counters' TDB at the first need.  FALSE (logged): reply a
   temporary failure. */
static bool
submission_launchpad_limit_open(struct client *client,
				struct submission_launchpad_client *lclient)
{
	struct lp_error err;

	if (lclient->limit != NULL)
		return TRUE;
	if (lp_sendlimit_open(lclient->state_path, &lclient->limit,
			      &err) < 0) {
		submission_launchpad_error(client, "%s", err.text);
		return FALSE;
	}
	return TRUE;
}

static bool
submission_launchpad_over_hour(struct client *client,
			       struct submission_launchpad_client *lclient,
			       struct smtp_server_cmd_ctx *cmd)
{
	struct lp_error err;
	unsigned int count;

	if (lclient->per_hour == 0)
		return FALSE;
	if (!submission_launchpad_limit_open(client, lclient) ||
	    lp_sendlimit_count(lclient->limit, lclient->name, time(NULL),
			       &count, &err) < 0) {
		if (lclient->limit != NULL)
			submission_launchpad_error(client, "%s", err.text);
		smtp_server_reply(cmd, 451, "4.3.0",
				  "Temporary failure, try again later");
		return TRUE;
	}
	if (count < lclient->per_hour)
		return FALSE;
	smtp_server_reply(cmd, 451, "4.7.1", "Sending limit reached: "
			  "at most %u messages per hour, try again later",
			  lclient->per_hour);
	return TRUE;
}

static void
submission_launchpad_refuse(struct smtp_server_cmd_ctx *cmd,
			    struct submission_launchpad_client *lclient,
			    const char *what, const char *address)
{
	smtp_server_reply(cmd, 553, "5.7.1",
			  "%s <%s> is not yours: you may send as %s", what,
			  str_sanitize(address, 256), lclient->allowed);
}

static int
submission_launchpad_cmd_mail(struct client *client,
			      struct smtp_server_cmd_ctx *cmd,
			      struct smtp_server_cmd_mail *data)
{
	struct submission_launchpad_client *lclient =
		SUBMISSION_LAUNCHPAD_CONTEXT(client);
	const char *address = smtp_address_encode(data->path);

	lclient->rcpts = 0;
	if (smtp_address_isnull(data->path) ||
	    !lp_send_as_allowed(lclient->send_as, address)) {
		submission_launchpad_refuse(cmd, lclient, "Sender address",
					    address);
		return -1;
	}
	if (submission_launchpad_over_hour(client, lclient, cmd))
		return -1;
	return lclient->module_ctx.super.cmd_mail(client, cmd, data);
}

static int
submission_launchpad_cmd_rcpt(struct client *client,
			      struct smtp_server_cmd_ctx *cmd,
			      struct submission_recipient *srcpt)
{
	struct submission_launchpad_client *lclient =
		SUBMISSION_LAUNCHPAD_CONTEXT(client);

	if (lclient->rcpt_max > 0 && lclient->rcpts >= lclient->rcpt_max) {
		smtp_server_reply(cmd, 452, "4.5.3", "Too many recipients: "
				  "at most %u per message", lclient->rcpt_max);
		return -1;
	}
	lclient->rcpts++;
	return lclient->module_ctx.super.cmd_rcpt(client, cmd, srcpt);
}

static int
submission_launchpad_cmd_rset(struct client *client,
			      struct smtp_server_cmd_ctx *cmd)
{
	struct submission_launchpad_client *lclient =
		SUBMISSION_LAUNCHPAD_CONTEXT(client);

	lclient->rcpts = 0;
	return lclient->module_ctx.super.cmd_rset(client, cmd);
}

/* Checks every address of one From: or Sender: value.  Returns TRUE, or
   FALSE with the offending text in *bad_r. */
static bool
submission_launchpad_header_ok(struct submission_launchpad_client *lclient,
			       const struct message_header_line *hdr,
			       const char **bad_r)
{
	const struct message_address *addr;
	bool any = FALSE;

	addr = message_address_parse(pool_datastack_create(), hdr->full_value,
				     hdr->full_value_len,
				     SUBMISSION_LAUNCHPAD_MAX_ADDRESSES, 0);
	for (; addr != NULL; addr = addr->next) {
		const char *address;

		if (addr->invalid_syntax || addr->mailbox == NULL ||
		    addr->domain == NULL || addr->domain[0] == '\0') {
			/* a group, an empty or broken address */
			*bad_r = t_strndup(hdr->full_value,
					   hdr->full_value_len);
			return FALSE;
		}
		address = t_strconcat(addr->mailbox, "@", addr->domain, NULL);
		if (!lp_send_as_allowed(lclient->send_as, address)) {
			*bad_r = address;
			return FALSE;
		}
		any = TRUE;
	}
	if (!any)
		*bad_r = t_strndup(hdr->full_value, hdr->full_value_len);
	return any;
}

/* Reads the message header from input (complete and seekable by now) and
   checks From: and Sender:.  Returns 1 ok, 0 refused (replied), -1 read
   error (replied). */
static int
submission_launchpad_check_header(struct client *client,
				  struct submission_launchpad_client *lclient,
				  struct smtp_server_cmd_ctx *cmd,
				  struct istream *input)
{
	struct message_header_parser_ctx *parser;
	struct message_header_line *hdr;
	const char *bad = NULL, *bad_what = NULL;
	bool have_from = FALSE;
	int ret;

	parser = message_parse_header_init(input, NULL, 0);
	while (bad == NULL &&
	       (ret = message_parse_header_next(parser, &hdr)) > 0) {
		if (hdr->eoh)
			break;
		if (strcasecmp(hdr->name, "From") != 0 &&
		    strcasecmp(hdr->name, "Sender") != 0)
			continue;
		if (hdr->continues) {
			hdr->use_full_value = TRUE;
			continue;
		}
		if (strcasecmp(hdr->name, "From") == 0)
			have_from = TRUE;
		if (!submission_launchpad_header_ok(lclient, hdr, &bad))
			bad_what = t_strconcat(hdr->name, ": address", NULL);
	}
	message_parse_header_deinit(&parser);
	if (input->stream_errno != 0) {
		submission_launchpad_error(client, "reading the message "
					   "failed: %s", i_stream_get_error(input));
		smtp_server_reply(cmd, 451, "4.3.0",
				  "Temporary failure, try again later");
		return -1;
	}
	if (bad != NULL) {
		submission_launchpad_refuse(cmd, lclient, bad_what, bad);
		return 0;
	}
	if (!have_from) {
		smtp_server_reply(cmd, 553, "5.7.1", "No From: header: "
				  "you may send as %s", lclient->allowed);
		return 0;
	}
	return 1;
}

static int
submission_launchpad_cmd_data(struct client *client,
			      struct smtp_server_cmd_ctx *cmd,
			      struct smtp_server_transaction *trans,
			      struct istream *data_input, uoff_t data_size)
{
	struct submission_launchpad_client *lclient =
		SUBMISSION_LAUNCHPAD_CONTEXT(client);
	struct lp_error err;
	int ret;

	ret = submission_launchpad_check_header(client, lclient, cmd,
						data_input);
	if (ret <= 0)
		return -1;
	i_stream_seek(data_input, 0);

	/* counted when it is sent, atomically: concurrent sessions of one
	   user cannot both take the hour's last message */
	if (lclient->per_hour > 0) {
		if (!submission_launchpad_limit_open(client, lclient))
			ret = -1;
		else
			ret = lp_sendlimit_take(lclient->limit, lclient->name,
						lclient->per_hour, time(NULL),
						&err);
		if (ret < 0) {
			if (lclient->limit != NULL)
				submission_launchpad_error(client, "%s",
							   err.text);
			smtp_server_reply(cmd, 451, "4.3.0",
					  "Temporary failure, try again later");
			return -1;
		}
		if (ret == 0) {
			smtp_server_reply(cmd, 451, "4.7.1",
					  "Sending limit reached: at most %u "
					  "messages per hour, try again later",
					  lclient->per_hour);
			return -1;
		}
	}
	return lclient->module_ctx.super.cmd_data(client, cmd, trans,
						  data_input, data_size);
}

static void submission_launchpad_destroy(struct client *client)
{
	struct submission_launchpad_client *lclient =
		SUBMISSION_LAUNCHPAD_CONTEXT(client);

	lp_sendlimit_close(&lclient->limit);
	lclient->module_ctx.super.destroy(client);
}

/* "<a>, <b>" from "a b" */
static const char *submission_launchpad_allowed_text(const char *send_as)
{
	const char *const *addrs = t_strsplit_spaces(send_as, " ");
	string_t *str = t_str_new(128);

	for (; *addrs != NULL; addrs++) {
		if (str_len(str) > 0)
			str_append(str, ", ");
		str_printfa(str, "<%s>", *addrs);
	}
	return str_c(str);
}

static void
submission_launchpad_settings(struct client *client,
			      struct submission_launchpad_client *lclient)
{
	const char *send_as, *p;

	send_as = mail_user_plugin_getenv(client->user,
					  SUBMISSION_LAUNCHPAD_SEND_AS);
	lclient->state_path = mail_user_plugin_getenv(
		client->user, SUBMISSION_LAUNCHPAD_STATE);
	p = strchr(client->user->username, '@');
	lclient->name = p == NULL ? client->user->username :
		p_strdup_until(client->pool, client->user->username, p);
	if (send_as == NULL || send_as[0] == '\0' ||
	    lclient->state_path == NULL ||
	    !submission_launchpad_count_setting(
		    client, SUBMISSION_LAUNCHPAD_PER_HOUR,
		    &lclient->per_hour) ||
	    !submission_launchpad_count_setting(
		    client, SUBMISSION_LAUNCHPAD_RCPT_MAX,
		    &lclient->rcpt_max)) {
		/* not logged in through the launchpad passdb (or an
		   older one): nobody is allowed as sender */
		if (send_as == NULL || lclient->state_path == NULL)
			submission_launchpad_error(client, "userdb fields "
				SUBMISSION_LAUNCHPAD_SEND_AS " and "
				SUBMISSION_LAUNCHPAD_STATE " missing: is the "
				"passdb driver launchpad? Refusing to send");
		lclient->misconfigured = TRUE;
		lclient->send_as = "";
		lclient->allowed = "no address (server misconfigured)";
		return;
	}
	lclient->send_as = p_strdup(client->pool, send_as);
	lclient->allowed = p_strdup(client->pool,
		submission_launchpad_allowed_text(send_as));
}

static void submission_launchpad_client_created(struct client **_client)
{
	struct client *client = *_client;
	struct submission_launchpad_client *lclient;

	lclient = p_new(client->pool, struct submission_launchpad_client, 1);
	lclient->module_ctx.super = client->v;
	submission_launchpad_settings(client, lclient);

	client->v.destroy = submission_launchpad_destroy;
	client->v.cmd_mail = submission_launchpad_cmd_mail;
	client->v.cmd_rcpt = submission_launchpad_cmd_rcpt;
	client->v.cmd_rset = submission_launchpad_cmd_rset;
	client->v.cmd_data = submission_launchpad_cmd_data;
	MODULE_CONTEXT_SET(client, submission_launchpad_module, lclient);

	if (next_hook_client_created != NULL)
		next_hook_client_created(_client);
}

void submission_launchpad_plugin_init(struct module *module ATTR_UNUSED)
{
	next_hook_client_created =
		submission_client_created_hook_set(
			submission_launchpad_client_created);
}

void submission_launchpad_plugin_deinit(void)
{
	(void)submission_client_created_hook_set(next_hook_client_created);
}
