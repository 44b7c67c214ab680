/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Why someone is not entitled, what fixes it, and "Check again".

   A denial is cached for negative_ttl, so after signing the Code of
   Conduct or joining the team the page would keep saying no for minutes.
   "Check again" asks Launchpad now for this one user, ignoring every TTL
   (lp_entitlement_refresh(), what `doveadm launchpad refresh USER` runs,
   in a worker process: web-worker.c).
   Root's cache, which this daemon cannot write, is reached through a
   mark (lp_recheck_request()): the next IMAP/POP3 login asks Launchpad
   again instead of answering from a stored denial.  And the name is
   flushed from Dovecot's auth cache as that command does, so a client that
   was refused is not refused from there.  It is rate-limited per user:
   each press costs two Launchpad requests. */

#include "web-private.h"

#include <stdio.h>
#include <string.h>

/* "Check again" per user: three at once, then one a minute. */
#define WEB_LIMIT_RECHECK_BURST 3
#define WEB_LIMIT_RECHECK_SECS 60.0

void web_status_denied(struct web_request *req,
		       const struct lp_domain *domain,
		       const struct lp_entitlement *ent)
{
	struct web_buf *b = &req->body;
	struct lp_remedy remedy;

	lp_deny_remedy(req->server->config, ent->verdict.reason,
		       req->session->name, domain->team, &remedy);
	web_buf_append(b, "<p><span class=\"no\">Not entitled:</span> ");
	web_buf_html(b, ent->verdict.text);
	web_buf_append(b, "</p>");
	if (remedy.text[0] != '\0') {
		web_buf_append(b, "<p class=\"remedy\">");
		web_buf_html(b, remedy.text);
		web_buf_append(b, "</p>");
	}
	if (remedy.url[0] != '\0') {
		/* opens Launchpad in a new tab: this page stays, with its
		   "Check again" button, for when the fix is done */
		web_buf_append(b, "<p><a class=\"fix\" target=\"_blank\" "
			       "rel=\"noopener noreferrer\" href=\"");
		web_buf_html(b, remedy.url);
		web_buf_append(b, "\">");
		web_buf_html(b, remedy.link_text);
		web_buf_append(b, "</a></p>");
	}
	if (!remedy.recheck)
		return;
	web_buf_append(b, "<form method=\"post\" action=\"/recheck\">");
	web_csrf_field(req);
	web_hidden(req, "domain", domain->domain);
	web_buf_append(b, "<p><button type=\"submit\">Check again</button> "
		       "<span class=\"muted\">asks Launchpad now</span></p>"
		       "</form>");
}

/* Root's cache may hold a denial of a client that tried to log in, and
   Dovecot's auth cache its refusal: the refresh is not finished until
   the next login asks Launchpad again too. */
static void web_recheck_mark(struct web_server *server, const char *name,
			     const char *user)
{
	struct lp_error err;

	if (lp_recheck_request(server->config, name, &err) < 0)
		web_log(LP_LOG_WARNING, "%s: check again: the mark for the mail "
			"server's next lookup failed: %s", user, err.text);

	if (lp_auth_cache_flush(server->config,
				server->config->web_auth_socket, name,
				&err) < 0)
		web_log(LP_LOG_WARNING, "%s: check again: flushing Dovecot's "
			"auth cache failed: %s", user, err.text);
}

/* The notice of the next page, cut short (a 300-character address and
   a long reason do not fit, and need not). */
static void web_recheck_notice(struct web_session *session, const char *text)
{
	size_t len = strlen(text);

	if (len >= sizeof(session->notice))
		len = sizeof(session->notice) - 1;
	memcpy(session->notice, text, len);
	session->notice[len] = '\0';
}

static void web_recheck_done(struct web_request *req);

/* The form's domain, or NULL with the error page set. */
static const struct lp_domain *web_recheck_domain(struct web_request *req)
{
	const char *domain_str = web_form_get(req, "domain");
	const struct lp_domain *domain;

	domain = domain_str == NULL ? NULL :
		lp_config_find_domain(req->server->config, domain_str);
	if (domain == NULL)
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Request refused",
			       "That mail domain is not served here.");
	return domain;
}

void web_post_recheck(struct web_request *req)
{
	struct web_server *server = req->server;
	struct web_session *session = req->session;
	const struct lp_domain *domain;
	char user[LP_USER_MAX + 1], key[LP_USER_MAX + 8];
	const char *users[1] = { user };

	if ((domain = web_recheck_domain(req)) == NULL)
		return;
	snprintf(key, sizeof(key), "r:%s", session->name);
	if (web_limit_take(server, WEB_LIMIT_USER, key,
			   WEB_LIMIT_RECHECK_BURST,
			   WEB_LIMIT_RECHECK_SECS) != WEB_LIMIT_OK) {
		web_page_error(req, MHD_HTTP_TOO_MANY_REQUESTS,
			       "Asked a moment ago",
			       "Launchpad was asked for you just now. Changes "
			       "there (a signature, a team membership) can "
			       "take a minute to show; please wait a minute "
			       "and press \"Check again\" once more.");
		return;
	}
	snprintf(user, sizeof(user), "%s@%s", session->name, domain->domain);
	/* a worker asks Launchpad; web_recheck_done() tells */
	web_job_entitlements(req, users, 1, true, web_recheck_done);
}

static void web_recheck_done(struct web_request *req)
{
	struct web_server *server = req->server;
	const struct lp_domain *domain;
	const struct lp_entitlement *ent;
	char user[LP_USER_MAX + 1];
	char text[LP_USER_MAX + LP_TEXT_MAX + 128] = "";

	if (!web_session_again(req) ||
	    (domain = web_recheck_domain(req)) == NULL)
		return;
	snprintf(user, sizeof(user), "%s@%s", req->session->name,
		 domain->domain);
	ent = web_job_entitlement(req, user);
	if (ent == NULL) {
		web_page_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
			       "Something went wrong", "internal error");
		return;
	}
	if (ent->verdict.kind != LP_VERDICT_TEMPFAIL)
		web_recheck_mark(server, req->session->name, user);
	web_log(LP_LOG_INFO, "check again: %s: %s%s%s", user,
		ent->verdict.kind == LP_VERDICT_ALLOW ? "allow" :
		ent->verdict.kind == LP_VERDICT_DENY ? "deny" : "tempfail",
		ent->verdict.text[0] != '\0' ? ": " : "", ent->verdict.text);
	switch (ent->verdict.kind) {
	case LP_VERDICT_ALLOW:
		snprintf(text, sizeof(text), "Launchpad was asked again just "
			 "now: %s is entitled to a mailbox. You can activate "
			 "it below.", user);
		break;
	case LP_VERDICT_DENY:
		snprintf(text, sizeof(text), "Launchpad was asked again just "
			 "now: %s is still not entitled (%s).", user,
			 ent->verdict.text);
		break;
	case LP_VERDICT_TEMPFAIL:
		snprintf(text, sizeof(text), "Launchpad could not be reached "
			 "just now, so nothing changed for %s. Please try again "
			 "in a few minutes.", user);
		break;
	}
	web_recheck_notice(req->session, text);
	web_redirect(req, "/");
}
