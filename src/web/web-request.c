/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* What a request carries (headers, query, cookies) and what a handler
   sets on its response (cookies, a redirect). */

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
