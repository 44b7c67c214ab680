/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* What a request carries (headers, query, cookies), what a handler sets
   on its response (cookies, a redirect), and what its continuation needs
   after a job (the session again, the verdicts asked). */

#include "web-private.h"

#include <stdio.h>
#include <string.h>

const char *web_header_get(const struct web_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *web_query_get(const struct web_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND,
					   name);
}

const char *web_cookie_get(const struct web_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, name);
}

void web_cookie_set(struct web_request *req, const char *name,
		    const char *value, const char *same_site, long max_age)
{
	char age[48] = "";

	if (req->cookie_count >= sizeof(req->cookies) / sizeof(req->cookies[0]))
		return;
	if (max_age >= 0)
		snprintf(age, sizeof(age), "; Max-Age=%ld", max_age);
	snprintf(req->cookies[req->cookie_count++],
		 sizeof(req->cookies[0]),
		 "%s=%s; Path=/; HttpOnly; Secure; SameSite=%s%s",
		 name, value, same_site, age);
}

void web_redirect(struct web_request *req, const char *target)
{
	req->status = MHD_HTTP_SEE_OTHER;
	if (target[0] == '/')
		snprintf(req->location, sizeof(req->location), "%s%s",
			 req->server->config->web_url, target);
	else
		snprintf(req->location, sizeof(req->location), "%s", target);
}

/* ---- continuations (a handler's job answered, web-worker.c) ---- */

bool web_session_again(struct web_request *req)
{
	req->session = web_session_find(req->server,
					web_cookie_get(req, WEB_SESSION_COOKIE));
	if (req->session != NULL)
		return true;
	/* signed out (or expired) while Launchpad was asked */
	web_cookie_set(req, WEB_SESSION_COOKIE, "", "Strict", 0);
	web_redirect(req, "/");
	return false;
}

bool web_entitlement_get(struct web_request *req, const char *user,
			 web_resume_fn *resume, struct lp_entitlement *ent_r)
{
	const struct lp_entitlement *ent = web_job_entitlement(req, user);

	if (ent == NULL) {
		web_job_entitlements(req, &user, 1, false, resume);
		return false;
	}
	*ent_r = *ent;
	return true;
}

void web_post_resume(struct web_request *req)
{
	if (web_session_again(req))
		req->route(req);
}
