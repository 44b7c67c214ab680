/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* What each URL does and shows.

   GET  /               sign-in page, or the signed-in status page
   GET  /login          starts an Ubuntu One sign-in
   GET  /openid/return  the SSO's answer
   POST /activate, /device/add, /device/revoke, /reset, /logout
   POST /recheck          "Check again" (web-recheck.c)
   GET  /forward/confirm  a mailed forwarding link: its button (no change)
   POST /forward, /forward/confirm  forwarding (web-forward.c)
   POST /device/profile   an Apple profile download (web-mobileconfig.c)
   GET  /.well-known/autoconfig/mail/config-v1.1.xml,
        /mail/config-v1.1.xml  the Mozilla autoconfig (web-autoconfig.c)
   GET  /style.css

   Every POST is checked again here, whatever the page offered: a live
   session, its CSRF token, rate limits, a configured domain, a fresh
   entitlement verdict, and (in web-mailbox.c) the session's own keyfile.
   (/recheck and /device/profile touch no keyfile and need no verdict:
   one asks for a new one, the other formats what it is sent.)
   Every value that reaches HTML goes through web_buf_html(). */

#include "web-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

/* Sign-in attempts per client address: a burst, then one every 3 s. */
#define WEB_LIMIT_LOGIN_BURST 20
#define WEB_LIMIT_LOGIN_SECS 3.0
/* POSTs per client address and per user (Argon2id each, and password
   guesses for "add a device"). */
#define WEB_LIMIT_POST_ADDR_BURST 30
#define WEB_LIMIT_POST_ADDR_SECS 2.0
#define WEB_LIMIT_POST_USER_BURST 12
#define WEB_LIMIT_POST_USER_SECS 10.0
#define WEB_DEFAULT_LABEL "my device"
#define WEB_RESET_LABEL "after reset"
#define WEB_IMAPS_PORT 993
#define WEB_POP3S_PORT 995
#define WEB_SUBMISSIONS_PORT 465

static const char web_style_css[] =
	":root{--accent:#E95420;--ink:#111;--muted:#5d5d5d;--line:#ddd}\n"
	"*{box-sizing:border-box}\n"
	"body{margin:0;font-family:system-ui,-apple-system,\"Segoe UI\","
	"Ubuntu,Cantarell,\"Noto Sans\",sans-serif;color:var(--ink);"
	"background:#f7f7f7;line-height:1.5}\n"
	"header{background:var(--accent);color:#fff;padding:.8rem 1rem}\n"
	"header .in{max-width:46rem;margin:0 auto;display:flex;"
	"flex-wrap:wrap;gap:.5rem;align-items:center;"
	"justify-content:space-between}\n"
	"header h1{font-size:1.15rem;margin:0;font-weight:600}\n"
	"header form{margin:0}\n"
	"header button{background:transparent;border:1px solid #fff;"
	"color:#fff}\n"
	"main{max-width:46rem;margin:0 auto;padding:1rem}\n"
	"section{background:#fff;border:1px solid var(--line);"
	"border-radius:6px;padding:1rem;margin:0 0 1rem}\n"
	"h2{font-size:1.1rem;margin:0 0 .5rem;word-break:break-all}\n"
	"p{margin:.4rem 0}\n"
	".muted{color:var(--muted)}\n"
	".ok{color:#0e8420;font-weight:600}\n"
	".no{color:#c7162b;font-weight:600}\n"
	".notice{border-left:4px solid var(--accent);background:#fff;"
	"padding:.6rem .8rem;margin:0 0 1rem}\n"
	"button,.button{display:inline-block;background:var(--accent);"
	"color:#fff;border:0;border-radius:4px;padding:.5rem 1rem;"
	"font:inherit;cursor:pointer;text-decoration:none}\n"
	"button.plain{background:#fff;color:#c7162b;"
	"border:1px solid #c7162b;padding:.2rem .6rem}\n"
	"label{display:block;margin:.5rem 0 .2rem}\n"
	"input[type=text],input[type=password]{width:100%;max-width:24rem;"
	"padding:.45rem;font:inherit;border:1px solid #aaa;"
	"border-radius:4px}\n"
	"input.secret{font-family:ui-monospace,\"Ubuntu Mono\",monospace;"
	"font-size:1.2rem;max-width:100%;background:#fff8f5;"
	"border:2px solid var(--accent)}\n"
	"table{border-collapse:collapse;width:100%;margin:.5rem 0}\n"
	"th,td{text-align:left;padding:.35rem .4rem;"
	"border-bottom:1px solid var(--line);vertical-align:top}\n"
	"td form{margin:0}\n"
	"details{margin-top:.8rem}\n"
	"summary{cursor:pointer;color:var(--muted)}\n"
	"footer{max-width:46rem;margin:0 auto;padding:0 1rem 2rem;"
	"color:var(--muted);font-size:.85rem}\n"
	"@media (max-width:30rem){th.opt,td.opt{display:none}}\n";

static void web_format_time(time_t t, char *buf, size_t size)
{
	struct tm tm;

	if (t == 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, size, "%Y-%m-%d %H:%M UTC", &tm) == 0)
		snprintf(buf, size, "never");
}

/* ---- sign-in ---- */

static void web_page_signin(struct web_request *req)
{
	web_page_begin(req, "Sign in");
	web_buf_append(&req->body,
		       "<section><h2>Your Ubuntu contributor mailbox</h2>"
		       "<p>Members of the Ubuntu teams on Launchpad get a "
		       "mailbox such as <b>name@ubuntu.com</b>. Sign in with "
		       "your Ubuntu One account to see which addresses you "
		       "are entitled to, activate your mailbox and manage "
		       "the app passwords of your devices.</p>"
		       "<p><a class=\"button\" href=\"/login\">Sign in with "
		       "Ubuntu One</a></p></section>");
	web_page_end(req);
}

/* The sign-in limit of the request's client address.  Returns false with
   the response set. */
static bool web_login_allowed(struct web_request *req)
{
	char key[sizeof(req->client_key) + 2];

	snprintf(key, sizeof(key), "l:%s", req->client_key);
	if (web_limit_take(req->server, WEB_LIMIT_ADDR, key,
			   WEB_LIMIT_LOGIN_BURST,
			   WEB_LIMIT_LOGIN_SECS) == WEB_LIMIT_OK)
		return true;
	web_page_error(req, MHD_HTTP_TOO_MANY_REQUESTS,
		       "Too many sign-in attempts",
		       "Please wait a minute and try again.");
	return false;
}

static void web_login_start(struct web_request *req)
{
	struct web_server *server = req->server;
	struct web_login *login;
	char url[WEB_URL_MAX];

	if (!web_login_allowed(req))
		return;
	login = web_login_create(server, req->client_key);
	if (login == NULL) {
		web_log(LP_LOG_WARNING, "sign-in refused from %s: every "
			"pending sign-in slot is taken", req->client);
		web_page_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
			       "Too many sign-ins in progress",
			       "Please try again in a few minutes.");
		return;
	}
	if (web_openid_begin_url(server, login->state, url, sizeof(url)) < 0) {
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Sign-in failed", "internal error");
		return;
	}
	/* Lax: it must come back on the SSO's cross-site redirect. */
	web_cookie_set(req, WEB_LOGIN_COOKIE, login->browser, "Lax",
		       WEB_LOGIN_TTL_SECS);
	web_redirect(req, url);
}

static void web_login_return_done(struct web_request *req);

static void web_login_refused(struct web_request *req, int ret,
			      const char *reason)
{
	web_log(LP_LOG_INFO, "sign-in refused from %s: %s", req->client,
		reason);
	if (ret < 0)
		web_page_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
			       "Sign-in failed",
			       "Ubuntu One could not be reached; "
			       "please try again later.");
	else
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Sign-in failed",
			       reason);
}

static void web_login_return(struct web_request *req)
{
	struct web_server *server = req->server;
	const char *state = web_query_get(req, "state");
	char reason[LP_TEXT_MAX];
	int ret;

	if (!web_login_allowed(req))
		return;
	web_cookie_set(req, WEB_LOGIN_COOKIE, "", "Lax", 0);
	if (!web_login_take(server, state,
			    web_cookie_get(req, WEB_LOGIN_COOKIE))) {
		web_log(LP_LOG_INFO, "sign-in refused from %s: unknown or "
			"expired sign-in state, or another browser",
			req->client);
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Sign-in failed",
			       "This sign-in was not started in this browser, "
			       "or it took too long. Please start again.");
		return;
	}
	/* on to web_login_return_done() once the SSO confirmed */
	ret = web_openid_verify(req, state, web_login_return_done, reason,
				sizeof(reason));
	if (ret <= 0)
		web_login_refused(req, ret, reason);
}

static void web_login_return_done(struct web_request *req)
{
	struct web_session *session;
	char name[LP_NAME_MAX + 1], reason[LP_TEXT_MAX];
	char email[LP_FORWARD_ADDRESS_MAX + 1];
	int ret;

	ret = web_openid_verify_end(req, name, email, reason, sizeof(reason));
	if (ret <= 0) {
		web_login_refused(req, ret, reason);
		return;
	}
	session = web_session_create(req->server, name);
	snprintf(session->email, sizeof(session->email), "%s", email);
	web_log(LP_LOG_INFO, "sign-in: %s from %s", name, req->client);
	web_cookie_set(req, WEB_SESSION_COOKIE, session->id, "Strict", -1);
	/* The SSO's redirect is a cross-site navigation, so the Strict
	   cookie would not be sent on a redirect from here: a page of our
	   own moves on to the start page as a same-site navigation. */
	req->session = session;
	web_page_begin(req, "Signed in");
	web_buf_append(&req->body, "<meta http-equiv=\"refresh\" "
		       "content=\"0;url=/\"><section><h2>Signed in</h2>"
		       "<p><a class=\"button\" href=\"/\">Continue</a></p>"
		       "</section>");
	web_page_end(req);
}

/* ---- the status page ---- */

static void web_status_reset_form(struct web_request *req,
				  const struct web_mailbox *mbox,
				  const char *domain);

static void web_status_devices(struct web_request *req,
			       const struct web_mailbox *mbox,
			       const char *domain)
{
	struct web_buf *b = &req->body;
	char created[64], used[64];

	web_buf_append(b, "<table><thead><tr><th>Device</th>"
		       "<th class=\"opt\">Created</th><th>Last used</th>"
		       "<th></th></tr></thead><tbody>");
	for (unsigned int i = 0; i < mbox->device_count; i++) {
		const struct web_device *dev = &mbox->devices[i];
		char id[16];

		web_format_time(dev->created, created, sizeof(created));
		web_format_time(dev->last_used, used, sizeof(used));
		snprintf(id, sizeof(id), "%u", dev->id);
		web_buf_append(b, "<tr><td>");
		web_buf_html(b, dev->label);
		web_buf_append(b, "</td><td class=\"opt\">");
		web_buf_html(b, created);
		web_buf_append(b, "</td><td>");
		web_buf_html(b, used);
		web_buf_append(b, "</td><td><form method=\"post\" "
			       "action=\"/device/revoke\">");
		web_csrf_field(req);
		web_hidden(req, "domain", domain);
		web_hidden(req, "slot", id);
		web_buf_append(b, "<button class=\"plain\" type=\"submit\">"
			       "Revoke</button></form></td></tr>");
	}
	web_buf_append(b, "</tbody></table>");
	if (mbox->device_count == 0)
		web_buf_append(b, "<p class=\"muted\">No devices: every app "
			       "password was revoked. Reset below to get a "
			       "new one.</p>");

	web_buf_append(b, "<form method=\"post\" action=\"/device/add\">");
	web_csrf_field(req);
	web_hidden(req, "domain", domain);
	web_buf_append(b, "<h3>Add a device</h3>"
		       "<label for=\"label-");
	web_buf_html(b, domain);
	web_buf_append(b, "\">Device name</label><input type=\"text\" "
		       "maxlength=\"64\" name=\"label\" id=\"label-");
	web_buf_html(b, domain);
	web_buf_append(b, "\" placeholder=\"phone\"><label for=\"pw-");
	web_buf_html(b, domain);
	web_buf_append(b, "\">An app password you already have (unlocks "
		       "the mailbox)</label><input type=\"password\" "
		       "name=\"password\" autocomplete=\"off\" id=\"pw-");
	web_buf_html(b, domain);
	web_buf_append(b, "\"><p><button type=\"submit\">Add device"
		       "</button></p></form>");

	web_status_reset_form(req, mbox, domain);
}

static void web_status_reset_form(struct web_request *req,
				  const struct web_mailbox *mbox,
				  const char *domain)
{
	struct web_buf *b = &req->body;

	web_buf_append(b, "<details><summary>Lost every app password?"
		       "</summary><form method=\"post\" action=\"/reset\">");
	web_csrf_field(req);
	web_hidden(req, "domain", domain);
	web_buf_append(b, "<p>A reset starts an <b>empty</b> mailbox with a "
		       "new app password. Your mail is encrypted with your "
		       "passwords, so the old mailbox is kept aside on the "
		       "server but cannot be opened here. Type <b>");
	web_buf_html(b, mbox->user);
	web_buf_append(b, "</b> to confirm.</p><label for=\"confirm-");
	web_buf_html(b, domain);
	web_buf_append(b, "\">Address</label><input type=\"text\" "
		       "name=\"confirm\" autocomplete=\"off\" id=\"confirm-");
	web_buf_html(b, domain);
	web_buf_append(b, "\"><p><button type=\"submit\">Reset mailbox"
		       "</button></p></form></details>");
}

static void web_status_domain(struct web_request *req,
			      const struct lp_domain *domain)
{
	struct web_server *server = req->server;
	struct web_buf *b = &req->body;
	struct lp_entitlement ent;
	struct web_mailbox mbox;
	char user[LP_USER_MAX + 1];

	snprintf(user, sizeof(user), "%s@%s", req->session->name,
		 domain->domain);
	/* asked by web_page_status() */
	if (web_job_entitlement(req, user) != NULL)
		ent = *web_job_entitlement(req, user);
	else {
		/* cannot happen; never an allow by default */
		memset(&ent, 0, sizeof(ent));
		ent.verdict.kind = LP_VERDICT_TEMPFAIL;
	}
	web_buf_append(b, "<section><h2>");
	web_buf_html(b, user);
	web_buf_append(b, "</h2>");
	switch (ent.verdict.kind) {
	case LP_VERDICT_DENY:
		web_status_denied(req, domain, &ent);
		web_buf_append(b, "</section>");
		return;
	case LP_VERDICT_TEMPFAIL:
		web_buf_append(b, "<p><span class=\"no\">Unknown:</span> "
			       "Launchpad could not be reached. Please try "
			       "again later.</p></section>");
		return;
	case LP_VERDICT_ALLOW:
		break;
	}
	web_buf_append(b, "<p><span class=\"ok\">Entitled</span>");
	if (web_mailbox_read(server, req->session->name, domain->domain,
			     &mbox) < 0) {
		web_buf_append(b, "</p><p>This mailbox cannot be read right "
			       "now; please try again later.</p></section>");
		return;
	}
	if (!mbox.activated && mbox.orphan_db) {
		web_buf_append(b, " &mdash; but its key file is missing.</p>"
			       "<p>This mailbox has old mail but no key file, "
			       "so it cannot be activated again: that would "
			       "lock the old mail away for good. An "
			       "administrator may be able to restore the key "
			       "file; otherwise reset it below.</p>");
		web_status_reset_form(req, &mbox, domain->domain);
		web_buf_append(b, "</section>");
		return;
	}
	if (!mbox.activated) {
		web_buf_append(b, " &mdash; not activated yet.</p>"
			       "<form method=\"post\" action=\"/activate\">");
		web_csrf_field(req);
		web_hidden(req, "domain", domain->domain);
		web_buf_append(b, "<label for=\"label-");
		web_buf_html(b, domain->domain);
		web_buf_append(b, "\">Name of your first device</label>"
			       "<input type=\"text\" maxlength=\"64\" "
			       "name=\"label\" id=\"label-");
		web_buf_html(b, domain->domain);
		web_buf_append(b, "\" placeholder=\"laptop\"><p><button "
			       "type=\"submit\">Activate and show my app "
			       "password</button></p></form>");
		web_forward_section(req, user, domain->domain, mbox.home);
		web_buf_append(b, "</section>");
		return;
	}
	web_buf_append(b, " &mdash; activated.</p>");
	web_status_devices(req, &mbox, domain->domain);
	web_forward_section(req, user, domain->domain, mbox.home);
	web_buf_append(b, "</section>");
}

static void web_page_status_resume(struct web_request *req);

/* Every domain's verdict first, from a worker (one job for all of them),
   then the page. */
static bool web_page_status_ask(struct web_request *req)
{
	const struct lp_config *config = req->server->config;
	unsigned int count = config->domains_count;
	char (*users)[LP_USER_MAX + 1];
	const char **list;
	bool answered = true;

	for (unsigned int i = 0; i < count && answered; i++) {
		char user[LP_USER_MAX + 1];

		snprintf(user, sizeof(user), "%s@%s", req->session->name,
			 config->domains[i].domain);
		answered = web_job_entitlement(req, user) != NULL;
	}
	if (answered)
		return true;
	users = calloc(count, sizeof(*users));
	list = calloc(count + 1, sizeof(*list));
	if (users == NULL || list == NULL) {
		free(users);
		free(list);
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Something went wrong", "out of memory");
		return false;
	}
	for (unsigned int i = 0; i < count; i++) {
		snprintf(users[i], sizeof(users[i]), "%s@%s",
			 req->session->name, config->domains[i].domain);
		list[i] = users[i];
	}
	web_job_entitlements(req, list, count, false, web_page_status_resume);
	free(users);
	free(list);
	return false;
}

static void web_page_status(struct web_request *req)
{
	struct web_server *server = req->server;

	if (!web_page_status_ask(req))
		return;
	web_page_begin(req, "Your mailboxes");
	if (req->session->notice[0] != '\0') {
		web_buf_append(&req->body, "<p class=\"notice\">");
		web_buf_html(&req->body, req->session->notice);
		web_buf_append(&req->body, "</p>");
		req->session->notice[0] = '\0';
	}
	for (unsigned int i = 0; i < server->config->domains_count; i++)
		web_status_domain(req, &server->config->domains[i]);
	web_page_end(req);
}

static void web_page_status_resume(struct web_request *req)
{
	if (web_session_again(req))
		web_page_status(req);
}

/* ---- the password page (shown once) ---- */

static void web_mail_setting(struct web_request *req, const char *what,
			     unsigned int port, unsigned int tls_port)
{
	web_buf_printf(&req->body, "<tr><th>%s</th><td>", what);
	web_buf_html(&req->body, req->server->mail_host);
	web_buf_printf(&req->body, "</td><td>%u</td><td>%s</td></tr>", port,
		       port == tls_port ? "SSL/TLS" : "STARTTLS");
}

static void web_page_password(struct web_request *req, const char *user,
			      const char *label, const char *password,
			      const char *title, const char *extra)
{
	struct web_buf *b = &req->body;
	const struct lp_config *config = req->server->config;

	b->secret = true;
	req->no_store = true;
	web_page_begin(req, title);
	web_buf_append(b, "<section><h2>");
	web_buf_html(b, title);
	web_buf_append(b, "</h2><p>The app password for <b>");
	web_buf_html(b, label);
	web_buf_append(b, "</b> on <b>");
	web_buf_html(b, user);
	web_buf_append(b, "</b> is shown <b>only this once</b>. Copy it into "
		       "your mail client now; the server keeps no copy.</p>"
		       "<label for=\"password\">App password</label>"
		       "<input class=\"secret\" type=\"text\" readonly "
		       "id=\"password\" name=\"password\" autocomplete=\"off\" "
		       "spellcheck=\"false\" size=\"36\" value=\"");
	web_buf_html(b, password);
	web_buf_append(b, "\">");
	if (extra != NULL) {
		web_buf_append(b, "<p>");
		web_buf_html(b, extra);
		web_buf_append(b, "</p>");
	}
	web_buf_append(b, "</section><section><h2>Mail client settings</h2>"
		       "<table><thead><tr><th></th><th>Server</th>"
		       "<th>Port</th><th>Security</th></tr></thead><tbody>");
	web_mail_setting(req, "IMAP", config->web_imap_port, WEB_IMAPS_PORT);
	web_mail_setting(req, "POP3", config->web_pop3_port, WEB_POP3S_PORT);
	if (config->web_submission_port != 0)
		web_mail_setting(req, "SMTP (sending)",
				 config->web_submission_port,
				 WEB_SUBMISSIONS_PORT);
	web_buf_append(b, "</tbody></table><p>User name: <b id=\"login\">");
	web_buf_html(b, user);
	web_buf_append(b, "</b> &middot; Password: the app password above "
		       "(normal password authentication).</p>"
		       "<p class=\"muted\">Thunderbird, K-9 Mail and "
		       "FairEmail find these settings themselves from your "
		       "address.</p></section>");
	web_mobileconfig_offer(req, user, label, password);
	web_buf_append(b, "<p><a class=\"button\" href=\"/\">Done</a></p>");
	web_page_end(req);
}

/* ---- POST handling ---- */

/* The checks every POST gets.  Returns false with the response set. */
static bool web_post_allowed(struct web_request *req)
{
	struct web_server *server = req->server;
	char key[LP_USER_MAX + 8];

	snprintf(key, sizeof(key), "p:%s", req->client_key);
	if (web_limit_take(server, WEB_LIMIT_ADDR, key,
			   WEB_LIMIT_POST_ADDR_BURST,
			   WEB_LIMIT_POST_ADDR_SECS) != WEB_LIMIT_OK) {
		web_page_error(req, MHD_HTTP_TOO_MANY_REQUESTS,
			       "Too many requests",
			       "Please wait a minute and try again.");
		return false;
	}
	if (req->session == NULL) {
		/* expired or never signed in: back to the sign-in page */
		web_redirect(req, "/");
		return false;
	}
	if (!web_csrf_check(req)) {
		web_log(LP_LOG_WARNING, "%s: POST %s refused from %s: bad "
			"CSRF token or Origin", req->session->name, req->path,
			req->client);
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Request refused",
			       "This form is out of date (or came from "
			       "another site). Reload the page and try "
			       "again.");
		return false;
	}
	snprintf(key, sizeof(key), "u:%s", req->session->name);
	if (web_limit_take(server, WEB_LIMIT_USER, key,
			   WEB_LIMIT_POST_USER_BURST,
			   WEB_LIMIT_POST_USER_SECS) != WEB_LIMIT_OK) {
		web_page_error(req, MHD_HTTP_TOO_MANY_REQUESTS,
			       "Too many requests",
			       "Please wait a minute and try again.");
		return false;
	}
	return true;
}

/* The form's domain, if configured and the user is entitled there now.
   Returns NULL with the response set, or with the lookup queued (the
   route runs again with its answer). */
static const struct lp_domain *web_post_domain(struct web_request *req)
{
	const char *domain_str = web_form_get(req, "domain");
	const struct lp_domain *domain;
	struct lp_entitlement ent;
	char user[LP_USER_MAX + 1];

	domain = domain_str == NULL ? NULL :
		lp_config_find_domain(req->server->config, domain_str);
	if (domain == NULL) {
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Request refused",
			       "That mail domain is not served here.");
		return NULL;
	}
	snprintf(user, sizeof(user), "%s@%s", req->session->name,
		 domain->domain);
	if (!web_entitlement_get(req, user, web_post_resume, &ent))
		return NULL;
	if (ent.verdict.kind == LP_VERDICT_TEMPFAIL) {
		web_page_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
			       "Try again later",
			       "Launchpad could not be reached, so your "
			       "entitlement cannot be checked right now.");
		return NULL;
	}
	if (ent.verdict.kind != LP_VERDICT_ALLOW) {
		char text[LP_TEXT_MAX + LP_USER_MAX + 32];

		web_log(LP_LOG_WARNING, "%s: POST %s refused: not entitled "
			"(%s)", user, req->path, ent.verdict.text);
		snprintf(text, sizeof(text), "%s is not entitled to a "
			 "mailbox: %s", user, ent.verdict.text);
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Not entitled", text);
		return NULL;
	}
	return domain;
}

/* A device label from the form, or the default.  NULL if unusable. */
static const char *web_post_label(struct web_request *req, const char *def)
{
	const char *label = web_form_get(req, "label");

	while (label != NULL && *label == ' ')
		label++;
	if (label == NULL || *label == '\0')
		return def;
	if (strlen(label) > KR_LABEL_MAX) {
		web_page_error(req, MHD_HTTP_BAD_REQUEST, "Request refused",
			       "A device name has at most 64 characters.");
		return NULL;
	}
	return label;
}

static void web_post_refused(struct web_request *req, int ret,
			     const char *why)
{
	if (ret < 0)
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Something went wrong", why);
	else
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Request refused",
			       why);
}

/* Activate (a first keyfile) or add a device (proven by an app password
   the user already has): both end on a new app password, shown once. */
static void web_post_new_password(struct web_request *req, bool add_device)
{
	const struct lp_domain *domain;
	const char *label, *existing = NULL;
	char why[LP_TEXT_MAX + 64], user[LP_USER_MAX + 1];
	char *password;
	int ret;

	if ((domain = web_post_domain(req)) == NULL ||
	    (label = web_post_label(req, WEB_DEFAULT_LABEL)) == NULL)
		return;
	if (add_device) {
		existing = web_form_get(req, "password");
		if (existing == NULL || existing[0] == '\0') {
			web_page_error(req, MHD_HTTP_FORBIDDEN,
				       "Request refused", "Adding a device "
				       "needs one app password you already "
				       "have.");
			return;
		}
	}
	password = sodium_malloc(KR_PASSWORD_BUFSIZE);
	if (password == NULL) {
		web_post_refused(req, -1, "out of memory");
		return;
	}
	ret = add_device ?
		web_mailbox_add_device(req->server, req->session->name,
				       domain->domain, label, existing,
				       password, why, sizeof(why)) :
		web_mailbox_activate(req->server, req->session->name,
				     domain->domain, label, password, why,
				     sizeof(why));
	snprintf(user, sizeof(user), "%s@%s", req->session->name,
		 domain->domain);
	if (ret > 0)
		web_page_password(req, user, label, password, add_device ?
				  "New device added" :
				  "Your mailbox is activated", NULL);
	else
		web_post_refused(req, ret, why);
	sodium_free(password);
}

static void web_post_activate(struct web_request *req)
{
	web_post_new_password(req, false);
}

static void web_post_add_device(struct web_request *req)
{
	web_post_new_password(req, true);
}

/* A revoke or reset that did not reach Dovecot everywhere. */
static bool web_cutoff_failed(const struct web_cutoff *cut)
{
	return cut->flushed < 0 || cut->kicked < 0 || cut->kept > 0;
}

/* What a revoke or reset did to logins and open sessions, in words. */
static void web_cutoff_text(const struct web_cutoff *cut, const char *user,
			    const char *done, char *buf, size_t size)
{
	size_t len;

	if (!web_cutoff_failed(cut)) {
		if (cut->kicked > 0)
			snprintf(buf, size, "%s for %s, and %d open session%s "
				 "of the mailbox %s ended (your other devices "
				 "connect again with their own passwords).",
				 done, user, cut->kicked,
				 cut->kicked == 1 ? "" : "s",
				 cut->kicked == 1 ? "was" : "were");
		else
			snprintf(buf, size, "%s for %s.", done, user);
		return;
	}
	snprintf(buf, size, "%s for %s, but", done, user);
	len = strlen(buf);
	if (cut->flushed < 0 && len < size) {
		snprintf(buf + len, size - len, " the mail server's login "
			 "cache could not be cleared: a password it cached "
			 "keeps working until that cache entry expires "
			 "(auth_cache_ttl, one hour by default)%s",
			 cut->kicked < 0 || cut->kept > 0 ? ", and" : ".");
		len = strlen(buf);
	}
	if ((cut->kicked < 0 || cut->kept > 0) && len < size)
		snprintf(buf + len, size - len, " sessions already logged in "
			 "could not be ended: they keep working until they "
			 "log out.");
	len = strlen(buf);
	if (len < size)
		snprintf(buf + len, size - len, " The administrators were told "
			 "in the server log.");
}

static void web_post_revoke(struct web_request *req)
{
	const struct lp_domain *domain;
	const char *slot_str;
	struct web_cutoff cut;
	char why[LP_TEXT_MAX + 64], *end;
	char user[LP_USER_MAX + 1], text[WEB_NOTICE_MAX * 2];
	unsigned long slot;
	int ret;

	if ((domain = web_post_domain(req)) == NULL)
		return;
	slot_str = web_form_get(req, "slot");
	if (slot_str == NULL || slot_str[0] < '0' || slot_str[0] > '9' ||
	    (slot = strtoul(slot_str, &end, 10), *end != '\0') ||
	    slot > UINT32_MAX) {
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Request refused",
			       "No such device.");
		return;
	}
	ret = web_mailbox_revoke(req->server, req->session->name,
				 domain->domain, (unsigned int)slot, &cut,
				 why, sizeof(why));
	if (ret <= 0) {
		web_post_refused(req, ret, why);
		return;
	}
	snprintf(user, sizeof(user), "%s@%s", req->session->name,
		 domain->domain);
	if (web_cutoff_failed(&cut)) {
		/* the keyfile changed, but not everything else did: say so,
		   and what still works until when */
		web_cutoff_text(&cut, user, "The device was removed from your "
				"mailbox", text, sizeof(text));
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Revoked, but not yet everywhere", text);
		return;
	}
	web_cutoff_text(&cut, user, "The device was revoked: its app "
			"password no longer works", req->session->notice,
			sizeof(req->session->notice));
	web_redirect(req, "/");
}

static void web_post_reset(struct web_request *req)
{
	const struct lp_domain *domain;
	const char *label, *confirm;
	char why[LP_TEXT_MAX + 64], user[LP_USER_MAX + 1];
	char moved[WEB_MOVED_MAX], extra[WEB_NOTICE_MAX * 3];
	struct web_cutoff cut;
	char *password;
	int ret;

	if ((domain = web_post_domain(req)) == NULL ||
	    (label = web_post_label(req, WEB_RESET_LABEL)) == NULL)
		return;
	snprintf(user, sizeof(user), "%s@%s", req->session->name,
		 domain->domain);
	confirm = web_form_get(req, "confirm");
	if (confirm == NULL || strcmp(confirm, user) != 0) {
		web_page_error(req, MHD_HTTP_BAD_REQUEST, "Not reset",
			       "To reset, type the mailbox address exactly "
			       "as shown. Nothing was changed.");
		return;
	}
	password = sodium_malloc(KR_PASSWORD_BUFSIZE);
	if (password == NULL) {
		web_post_refused(req, -1, "out of memory");
		return;
	}
	ret = web_mailbox_reset(req->server, req->session->name,
				domain->domain, label, password, moved, &cut,
				why, sizeof(why));
	if (ret > 0) {
		char cut_text[WEB_NOTICE_MAX * 2];

		web_cutoff_text(&cut, user, "The old app passwords no longer "
				"work", cut_text, sizeof(cut_text));
		snprintf(extra, sizeof(extra), "The old mailbox is kept aside "
			 "on the server; an administrator holding the "
			 "recovery key may be able to restore it. %s",
			 cut_text);
		web_page_password(req, user, label, password,
				  "Your mailbox was reset", extra);
		if (web_cutoff_failed(&cut))
			req->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	} else {
		web_post_refused(req, ret, why);
	}
	sodium_free(password);
}

static void web_post_forward(struct web_request *req)
{
	const struct lp_domain *domain = web_post_domain(req);
	char user[LP_USER_MAX + 1], home[4096];
	int ret;

	if (domain == NULL)
		return;
	snprintf(user, sizeof(user), "%s@%s", req->session->name,
		 domain->domain);
	if (lp_config_expand_home(req->server->config, req->session->name,
				  domain->domain, home, sizeof(home)) < 0) {
		web_post_refused(req, -1, "Your home directory is not usable.");
		return;
	}
	ret = web_forward_post(req, user, home, req->session->notice,
			       sizeof(req->session->notice));
	if (ret > 0)
		web_redirect(req, "/");
}

static void web_post_logout(struct web_request *req)
{
	web_log(LP_LOG_INFO, "sign-out: %s", req->session->name);
	web_session_destroy(req->session);
	req->session = NULL;
	web_cookie_set(req, WEB_SESSION_COOKIE, "", "Strict", 0);
	web_redirect(req, "/");
}

/* ---- routing ---- */

static const struct {
	const char *path;
	void (*handle)(struct web_request *req);
} web_post_routes[] = {
	{ .path = "/activate", .handle = web_post_activate },
	{ .path = "/device/add", .handle = web_post_add_device },
	{ .path = "/device/revoke", .handle = web_post_revoke },
	{ .path = "/reset", .handle = web_post_reset },
	{ .path = "/forward", .handle = web_post_forward },
	{ .path = "/forward/confirm", .handle = web_post_forward_confirm },
	{ .path = "/logout", .handle = web_post_logout },
	{ .path = "/recheck", .handle = web_post_recheck },
	{ .path = "/device/profile", .handle = web_post_mobileconfig },
};

void web_pages_handle(struct web_request *req)
{
	const char *cookie = web_cookie_get(req, WEB_SESSION_COOKIE);

	req->session = web_session_find(req->server, cookie);
	if (cookie != NULL && req->session == NULL)
		web_cookie_set(req, WEB_SESSION_COOKIE, "", "Strict", 0);

	if (req->is_post) {
		for (unsigned int i = 0; i < sizeof(web_post_routes) /
			     sizeof(web_post_routes[0]); i++) {
			if (strcmp(req->path, web_post_routes[i].path) != 0)
				continue;
			/* a route may queue a lookup first: it runs again,
			   past these checks, from web_post_resume() */
			req->route = web_post_routes[i].handle;
			if (web_post_allowed(req))
				req->route(req);
			return;
		}
	} else if (strcmp(req->path, "/") == 0) {
		if (req->session == NULL)
			web_page_signin(req);
		else
			web_page_status(req);
		return;
	} else if (strcmp(req->path, "/forward/confirm") == 0) {
		web_forward_confirm_page(req);
		return;
	} else if (strcmp(req->path, "/login") == 0) {
		web_login_start(req);
		return;
	} else if (strcmp(req->path, "/openid/return") == 0) {
		web_login_return(req);
		return;
	} else if (web_autoconfig_path(req->path)) {
		web_autoconfig_handle(req);
		return;
	} else if (strcmp(req->path, "/style.css") == 0) {
		req->content_type = "text/css; charset=utf-8";
		req->cacheable = true;
		web_buf_append(&req->body, web_style_css);
		return;
	}
	web_page_error(req, MHD_HTTP_NOT_FOUND, "Not found",
		       "There is no such page.");
}
