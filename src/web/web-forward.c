/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* "Forward my mail to <address>": the script is written through
   liblaunchpad (lp-forward.c) and run by Pigeonhole at LMTP.  The address
   Ubuntu One vouched for at sign-in (SReg email, signed) is set at once;
   any other only once a link mailed to it (web_smtp_url) was followed
   and its page's button pressed by the same signed-in user
   (lp-fwdconfirm.c).  GET /forward/confirm changes nothing: mail
   scanners fetch links. */

#include "web-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sodium.h>

/* "Forward to another address": mails a confirmation link there. */
static void web_forward_other_form(struct web_request *req,
				   const char *domain)
{
	struct web_buf *b = &req->body;

	web_buf_append(b, "<form method=\"post\" action=\"/forward\" "
		       "class=\"forward-other\">");
	web_csrf_field(req);
	web_hidden(req, "domain", domain);
	web_hidden(req, "forward", "confirm");
	web_buf_append(b, "<label for=\"forward-address-");
	web_buf_html(b, domain);
	web_buf_printf(b, "\">Forward to another address</label>"
		       "<input type=\"text\" name=\"address\" "
		       "maxlength=\"%d\" autocomplete=\"email\" "
		       "id=\"forward-address-", LP_FORWARD_ADDRESS_MAX);
	web_buf_html(b, domain);
	web_buf_append(b, "\"><p><label><input type=\"checkbox\" "
		       "name=\"keep\" value=\"yes\" checked> Keep a copy "
		       "here</label></p><p><button type=\"submit\">Mail a "
		       "confirmation link there</button></p><p "
		       "class=\"muted\">Nothing is forwarded until the link "
		       "in that mail is opened while you are signed in "
		       "here.</p></form>");
}

void web_forward_section(struct web_request *req, const char *user,
			 const char *domain, const char *home)
{
	struct web_buf *b = &req->body;
	struct lp_forward fwd;
	struct lp_error err;
	int ret;

	ret = lp_forward_read(home, &fwd, &err);
	if (ret < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", user, err.text);
		web_buf_append(b, "<h3>Forwarding</h3><p>Your forwarding "
			       "setting cannot be read right now.</p>");
		return;
	}
	web_buf_append(b, "<h3>Forwarding</h3>");
	if (ret > 0) {
		web_buf_append(b, "<p class=\"forward-state\">Your mail is "
			       "forwarded to <strong>");
		web_buf_html(b, fwd.address);
		web_buf_append(b, fwd.keep ? "</strong>; a copy is kept "
			       "here.</p>" : "</strong>; no copy is kept "
			       "here.</p>");
		web_buf_append(b, "<form method=\"post\" action=\"/forward\">"
			       "<input type=\"hidden\" name=\"csrf\" value=\"");
		web_buf_html(b, req->session->csrf);
		web_buf_append(b, "\"><input type=\"hidden\" name=\"domain\" "
			       "value=\"");
		web_buf_html(b, domain);
		web_buf_append(b, "\"><input type=\"hidden\" name=\"forward\" "
			       "value=\"off\"><button type=\"submit\">Stop "
			       "forwarding</button></form>");
		return;
	}
	if (req->session->email[0] == '\0') {
		if (req->server->config->web_smtp_url != NULL) {
			web_buf_append(b, "<p>Ubuntu One did not tell us an "
				       "address of yours.</p>");
			web_forward_other_form(req, domain);
			return;
		}
		web_buf_append(b, "<p>Ubuntu One did not tell us an address "
			       "of yours, so there is nothing to forward to "
			       "from here; an administrator can set "
			       "forwarding for you.</p>");
		return;
	}
	web_buf_append(b, "<form method=\"post\" action=\"/forward\">"
		       "<input type=\"hidden\" name=\"csrf\" value=\"");
	web_buf_html(b, req->session->csrf);
	web_buf_append(b, "\"><input type=\"hidden\" name=\"domain\" "
		       "value=\"");
	web_buf_html(b, domain);
	web_buf_append(b, "\"><input type=\"hidden\" name=\"forward\" "
		       "value=\"on\"><p><label><input type=\"checkbox\" "
		       "name=\"keep\" value=\"yes\" checked> Keep a copy "
		       "here</label></p><p><button type=\"submit\">Forward "
		       "my mail to ");
	web_buf_html(b, req->session->email);
	web_buf_append(b, "</button></p></form>");
	if (req->server->config->web_smtp_url != NULL)
		web_forward_other_form(req, domain);
}

/* Turns forwarding of user (home) on as fwd: writes the script, logs,
   queues the admin notification.  1 done (notice_r says what), -1. */
static int web_forward_set(struct web_server *server, const char *user,
			   const char *home, const struct lp_forward *fwd,
			   const char *how, char *notice_r,
			   size_t notice_size)
{
	struct lp_error err;
	char detail[128];

	if (lp_forward_write(home, fwd, server->uid, server->gid,
			     &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", user, err.text);
		snprintf(notice_r, notice_size, "Forwarding could not be "
			 "turned on; please try again.");
		return -1;
	}
	web_log(LP_LOG_INFO, "%s: forwarding on (%s, %s)", user,
		fwd->keep ? "a copy kept" : "no copy kept", how);
	snprintf(detail, sizeof(detail), "on the self-service page%s%s",
		 strcmp(how, "vouched address") == 0 ? "" :
		 " (confirmed by mail)",
		 fwd->keep ? " (a copy kept)" : "");
	if (lp_notify_queue(server->lp, user, LP_NOTIFY_FORWARDING, detail,
			    time(NULL), &err) < 0)
		web_log(LP_LOG_ERROR, "%s: forwarding not queued for "
			"notify_to: %s", user, err.text);
	snprintf(notice_r, notice_size, "%s: your mail is forwarded to "
		 "%s%s.", user, fwd->address, fwd->keep ?
		 ", and a copy is kept here" : "");
	return 1;
}

/* The confirmation mail of name's link (token) for user was not sent:
   the link is dropped (no one received it, it must not stay usable) and
   the client told. */
static void web_forward_mail_failed(struct web_request *req,
				    const char *user, const char *name,
				    const char *token, const char *why)
{
	enum lp_fwdconfirm_result result;
	struct lp_fwdconfirm ignored;
	struct lp_error err;

	web_log(LP_LOG_ERROR, "%s: confirmation mail: %s", user, why);
	if (lp_fwdconfirm_check(req->server->lp, token, name, true, &ignored,
				&result, &err) < 0)
		web_log(LP_LOG_ERROR, "%s: %s", user, err.text);
	web_page_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "Try again later",
		       "The confirmation mail could not be sent right now; "
		       "please try again later.");
}

/* The continuation of web_forward_request_confirm(): the worker sent the
   mail, or could not. */
static void web_forward_mailed(struct web_request *req)
{
	struct web_fwd_mail *m = &req->fwd_mail;

	if (req->job.mail_ret < 0) {
		web_forward_mail_failed(req, m->user, m->name, m->token,
					req->job.mail_error);
	} else {
		web_log(LP_LOG_INFO, "%s: forwarding confirmation link "
			"mailed", m->user);
		/* signed out meanwhile: the link was mailed all the same
		   (and needs the same sign-in to be used) */
		if (web_session_again(req)) {
			snprintf(req->session->notice,
				 sizeof(req->session->notice),
				 "A confirmation link was mailed to %s. Your "
				 "mail is forwarded there once you open it "
				 "while signed in here.", m->address);
			web_redirect(req, "/");
		}
	}
	sodium_memzero(m, sizeof(*m));
}

/* Mails a confirmation link for forwarding user's mail to address.
   Returns 0: the response is set, or the mail is queued for a worker and
   web_forward_mailed() answers. */
static int web_forward_request_confirm(struct web_request *req,
				       const char *user, bool keep,
				       const char *address)
{
	struct web_server *server = req->server;
	enum lp_fwdconfirm_limit limit;
	struct lp_fwdconfirm c;
	char token[LP_FWDCONFIRM_TOKEN_HEX + 1], text[WEB_NOTICE_MAX];
	struct lp_error err;
	char *message;

	if (server->config->web_smtp_url == NULL) {
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Request refused",
			       "Only the address Ubuntu One vouched for can "
			       "be set here; an administrator can set "
			       "another.");
		return 0;
	}
	if (lp_fwdconfirm_limit_take(server->lp, user, address, &limit,
				     &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", user, err.text);
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Something went wrong", "Please try again "
			       "later.");
		return 0;
	}
	if (limit != LP_FWDCONFIRM_LIMIT_OK) {
		web_log(LP_LOG_WARNING, "%s: confirmation mail refused: %s",
			user, limit == LP_FWDCONFIRM_LIMIT_USER ?
			"too many for this user this hour" :
			"too many to this address today");
		if (limit == LP_FWDCONFIRM_LIMIT_USER)
			snprintf(text, sizeof(text), "You asked for %d "
				 "confirmation mails in the last hour; please "
				 "wait before asking for another.",
				 LP_FWDCONFIRM_USER_MAILS);
		else
			snprintf(text, sizeof(text), "That address was sent "
				 "%d confirmation mails in the last day; "
				 "please try again tomorrow.",
				 LP_FWDCONFIRM_ADDRESS_MAILS);
		web_page_error(req, MHD_HTTP_TOO_MANY_REQUESTS,
			       "Too many confirmation mails", text);
		return 0;
	}
	memset(&c, 0, sizeof(c));
	snprintf(c.user, sizeof(c.user), "%s", user);
	snprintf(c.fwd.address, sizeof(c.fwd.address), "%s", address);
	c.fwd.keep = keep;
	if (lp_fwdconfirm_create(server->lp, &c, token, &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", user, err.text);
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Something went wrong", "Please try again "
			       "later.");
		return 0;
	}
	message = lp_fwdconfirm_message(server->config, &c, token,
					time(NULL));
	if (message == NULL) {
		lp_error_set(&err, LP_ERR_INTERNAL, "the confirmation mail "
			     "could not be made");
		web_forward_mail_failed(req, user, req->session->name, token,
					err.text);
		sodium_memzero(token, sizeof(token));
		return 0;
	}
	/* The SMTP conversation is a worker's (up to http_timeout): this
	   continues in web_forward_mailed(). */
	snprintf(req->fwd_mail.name, sizeof(req->fwd_mail.name), "%s",
		 req->session->name);
	snprintf(req->fwd_mail.user, sizeof(req->fwd_mail.user), "%s", user);
	snprintf(req->fwd_mail.address, sizeof(req->fwd_mail.address), "%s",
		 c.fwd.address);
	memcpy(req->fwd_mail.token, token, sizeof(token));
	sodium_memzero(token, sizeof(token));
	web_job_mail(req, c.fwd.address, message, web_forward_mailed);
	sodium_memzero(message, strlen(message));
	free(message);
	return 0;
}

int web_forward_post(struct web_request *req, const char *user,
		     const char *home, char *notice_r, size_t notice_size)
{
	const char *action = web_form_get(req, "forward");
	const char *keep = web_form_get(req, "keep");
	const char *address = web_form_get(req, "address");
	const char *vouched = req->session->email;
	struct lp_forward fwd;
	struct lp_error err;
	int ret;

	if (action != NULL && strcmp(action, "off") == 0) {
		ret = lp_forward_clear(home, &err);
		if (ret < 0) {
			web_log(LP_LOG_ERROR, "%s: %s", user, err.text);
			web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
				       "Something went wrong", "Forwarding "
				       "could not be turned off; please try "
				       "again.");
			return 0;
		}
		web_log(LP_LOG_INFO, "%s: forwarding off", user);
		snprintf(notice_r, notice_size, "%s: forwarding is off.",
			 user);
		return 1;
	}
	if (action == NULL || (strcmp(action, "on") != 0 &&
			       strcmp(action, "confirm") != 0) ||
	    (keep != NULL && strcmp(keep, "yes") != 0)) {
		web_page_error(req, MHD_HTTP_BAD_REQUEST, "Request refused",
			       "Unknown request.");
		return 0;
	}
	memset(&fwd, 0, sizeof(fwd));
	fwd.keep = keep != NULL;
	if (strcmp(action, "confirm") == 0) {
		/* Checked before anything is stored or mailed: the address
		   goes into an SMTP envelope, a header and a Sieve string. */
		if (address == NULL || address[0] == '\0' ||
		    strlen(address) > LP_FORWARD_ADDRESS_MAX ||
		    !lp_forward_address_is_valid(address)) {
			web_page_error(req, MHD_HTTP_BAD_REQUEST,
				       "Not an address", "Write the address "
				       "as name@example.org: no spaces, no "
				       "name or <> around it, at most 254 "
				       "characters.");
			return 0;
		}
		if (strcasecmp(address, user) == 0) {
			web_page_error(req, MHD_HTTP_BAD_REQUEST,
				       "Request refused", "Mail cannot be "
				       "forwarded to the mailbox it arrives "
				       "at.");
			return 0;
		}
		if (vouched[0] == '\0' || strcasecmp(address, vouched) != 0)
			return web_forward_request_confirm(req, user,
							   fwd.keep,
							   address);
		/* the vouched address, typed: no link needed */
	}
	if (vouched[0] == '\0' || !lp_forward_address_is_valid(vouched)) {
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Request refused",
			       "Ubuntu One vouched for no address of yours "
			       "to forward to.");
		return 0;
	}
	snprintf(fwd.address, sizeof(fwd.address), "%s", vouched);
	if (web_forward_set(req->server, user, home, &fwd, "vouched address",
			    notice_r, notice_size) < 0) {
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Something went wrong", notice_r);
		notice_r[0] = '\0';
		return 0;
	}
	return 1;
}

/* ---- /forward/confirm ---- */

/* The error page for a link that cannot be used. */
static void web_forward_confirm_refused(struct web_request *req,
					enum lp_fwdconfirm_result result)
{
	switch (result) {
	case LP_FWDCONFIRM_OK:
		break;
	case LP_FWDCONFIRM_UNKNOWN:
		web_page_error(req, MHD_HTTP_NOT_FOUND, "Link not valid",
			       "This confirmation link is not valid: it was "
			       "used already, or it was never issued. Ask "
			       "for a new one on the start page.");
		break;
	case LP_FWDCONFIRM_EXPIRED:
		web_page_error(req, MHD_HTTP_GONE, "Link expired",
			       "This confirmation link has expired. Ask for "
			       "a new one on the start page.");
		break;
	case LP_FWDCONFIRM_OTHER_USER:
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Another user's link",
			       "This confirmation link was sent for another "
			       "user's mailbox. Sign out, sign in as that "
			       "user and open the link again.");
		break;
	}
}

void web_forward_confirm_page(struct web_request *req)
{
	struct web_server *server = req->server;
	const char *token = web_query_get(req, "t");
	const char *again = web_query_get(req, "s");
	enum lp_fwdconfirm_result result;
	struct lp_fwdconfirm c;
	struct web_buf *b = &req->body;
	struct lp_error err;

	req->no_store = true;
	if (token == NULL || !lp_fwdconfirm_token_is_valid(token)) {
		web_forward_confirm_refused(req, LP_FWDCONFIRM_UNKNOWN);
		return;
	}
	if (req->session == NULL && again == NULL) {
		/* Opened from a mail: a cross-site navigation, which does
		   not carry the Strict session cookie.  A page of our own
		   moves on as a same-site one. */
		web_page_begin(req, "Confirm forwarding");
		web_buf_append(b, "<meta http-equiv=\"refresh\" content=\"0;"
			       "url=/forward/confirm?s=1&amp;t=");
		web_buf_html(b, token);
		web_buf_append(b, "\"><section><h2>Confirm forwarding</h2>"
			       "<p><a class=\"button\" href=\"/forward/"
			       "confirm?s=1&amp;t=");
		web_buf_html(b, token);
		web_buf_append(b, "\">Continue</a></p></section>");
		web_page_end(req);
		return;
	}
	if (req->session == NULL) {
		web_page_begin(req, "Sign in to confirm");
		web_buf_append(b, "<section><h2>Sign in to confirm</h2><p>"
			       "Forwarding is confirmed by the user it is "
			       "for. Sign in with Ubuntu One, then open the "
			       "link in the mail again.</p><p><a class=\""
			       "button\" href=\"/login\">Sign in with Ubuntu "
			       "One</a></p></section>");
		web_page_end(req);
		return;
	}
	if (lp_fwdconfirm_check(server->lp, token, req->session->name, false,
				&c, &result, &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", req->session->name, err.text);
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Something went wrong", "Please try again "
			       "later.");
		return;
	}
	if (result != LP_FWDCONFIRM_OK) {
		web_forward_confirm_refused(req, result);
		return;
	}
	web_page_begin(req, "Confirm forwarding");
	web_buf_append(b, "<section><h2>Confirm forwarding</h2><p>Forward "
		       "the mail of <b>");
	web_buf_html(b, c.user);
	web_buf_append(b, "</b> to <b class=\"forward-address\">");
	web_buf_html(b, c.fwd.address);
	web_buf_append(b, c.fwd.keep ? "</b>, keeping a copy here?</p>" :
		       "</b>, without keeping a copy here?</p>");
	web_buf_append(b, "<form method=\"post\" action=\"/forward/confirm\">");
	web_csrf_field(req);
	web_hidden(req, "t", token);
	web_buf_append(b, "<p><button type=\"submit\">Forward my mail"
		       "</button> <a href=\"/\">Cancel</a></p></form>"
		       "</section>");
	web_page_end(req);
}

void web_post_forward_confirm(struct web_request *req)
{
	struct web_server *server = req->server;
	const char *token = web_form_get(req, "t");
	enum lp_fwdconfirm_result result;
	struct lp_entitlement ent;
	struct lp_fwdconfirm c;
	struct lp_error err;
	char home[4096], text[LP_TEXT_MAX + LP_USER_MAX + 32];
	const char *domain;

	if (token == NULL)
		token = "";
	/* A look first: a user not entitled now keeps the link. */
	if (lp_fwdconfirm_check(server->lp, token, req->session->name, false,
				&c, &result, &err) < 0)
		goto failed;
	if (result == LP_FWDCONFIRM_EXPIRED) {
		/* pressed too late: dropped now */
		(void)lp_fwdconfirm_check(server->lp, token,
					  req->session->name, true, &c,
					  &result, &err);
		result = LP_FWDCONFIRM_EXPIRED;
	}
	if (result != LP_FWDCONFIRM_OK) {
		web_forward_confirm_refused(req, result);
		return;
	}
	/* a worker asks; this runs again from the top with the answer
	   (the look above changes nothing but dropping an expired link) */
	if (!web_entitlement_get(req, c.user, web_post_resume, &ent))
		return;
	if (ent.verdict.kind == LP_VERDICT_TEMPFAIL) {
		web_page_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
			       "Try again later", "Launchpad could not be "
			       "reached, so your entitlement cannot be "
			       "checked right now.");
		return;
	}
	if (ent.verdict.kind != LP_VERDICT_ALLOW) {
		web_log(LP_LOG_WARNING, "%s: POST %s refused: not entitled "
			"(%s)", c.user, req->path, ent.verdict.text);
		snprintf(text, sizeof(text), "%s is not entitled to a "
			 "mailbox: %s", c.user, ent.verdict.text);
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Not entitled", text);
		return;
	}
	domain = strchr(c.user, '@') + 1;
	if (lp_config_expand_home(server->config, req->session->name, domain,
				  home, sizeof(home)) < 0) {
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Something went wrong", "Your home directory "
			       "is not usable.");
		return;
	}
	/* Now used up, under its lock: a second POST finds nothing. */
	if (lp_fwdconfirm_check(server->lp, token, req->session->name, true,
				&c, &result, &err) < 0)
		goto failed;
	if (result != LP_FWDCONFIRM_OK) {
		web_forward_confirm_refused(req, result);
		return;
	}
	if (web_forward_set(server, c.user, home, &c.fwd, "confirmed by mail",
			    req->session->notice,
			    sizeof(req->session->notice)) < 0) {
		snprintf(text, sizeof(text), "%s", req->session->notice);
		req->session->notice[0] = '\0';
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Something went wrong", text);
		return;
	}
	web_redirect(req, "/");
	return;
failed:
	web_log(LP_LOG_ERROR, "%s: %s", req->session->name, err.text);
	web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
		       "Something went wrong", "Please try again later.");
}
