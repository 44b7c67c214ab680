/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* CSRF: every POST carries the session's token in a hidden field.  The
   session cookie is SameSite=Strict as well, and a browser's Origin header
   must name our own site: three independent locks. */

#include "web-private.h"

#include <string.h>

bool web_csrf_check(const struct web_request *req)
{
	const char *origin = web_header_get(req, "Origin");

	if (req->session == NULL)
		return false;
	if (origin != NULL && strcmp(origin, req->server->web_origin) != 0)
		return false;
	return web_token_equal(web_form_get(req, "csrf"), req->session->csrf);
}
