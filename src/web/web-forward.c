/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* "Forward my mail to <address>": the address is the one Ubuntu One
   vouched for at sign-in (SReg email, signed); the script is written
   through liblaunchpad (lp-forward.c) and run by Pigeonhole at LMTP.
   An address Ubuntu One did not vouch for is not offered: it would need
   a confirmation link mailed to it first, which this page does not
   send. */

#include "web-private.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

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
}

int web_forward_post(struct web_request *req, const char *user,
		     const char *home, char *notice_r, size_t notice_size)
{
	struct web_server *server = req->server;
	const char *action = web_form_get(req, "forward");
	const char *keep = web_form_get(req, "keep");
	struct lp_forward fwd;
	struct lp_error err;
	int ret;

	if (action != NULL && strcmp(action, "off") == 0) {
		ret = lp_forward_clear(home, &err);
		if (ret < 0) {
			web_log(LP_LOG_ERROR, "%s: %s", user, err.text);
			snprintf(notice_r, notice_size, "Forwarding could "
				 "not be turned off; please try again.");
			return -1;
		}
		web_log(LP_LOG_INFO, "%s: forwarding off", user);
		snprintf(notice_r, notice_size, "%s: forwarding is off.",
			 user);
		return 1;
	}
	if (action == NULL || strcmp(action, "on") != 0 ||
	    (keep != NULL && strcmp(keep, "yes") != 0)) {
		snprintf(notice_r, notice_size, "Unknown request.");
		return 0;
	}
	if (req->session->email[0] == '\0' ||
	    !lp_forward_address_is_valid(req->session->email)) {
		snprintf(notice_r, notice_size, "Ubuntu One vouched for no "
			 "address of yours to forward to.");
		return 0;
	}
	memset(&fwd, 0, sizeof(fwd));
	snprintf(fwd.address, sizeof(fwd.address), "%s",
		 req->session->email);
	fwd.keep = keep != NULL;
	if (lp_forward_write(home, &fwd, server->uid, server->gid,
			     &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", user, err.text);
		snprintf(notice_r, notice_size, "Forwarding could not be "
			 "turned on; please try again.");
		return -1;
	}
	web_log(LP_LOG_INFO, "%s: forwarding on (%s)", user,
		fwd.keep ? "a copy kept" : "no copy kept");
	if (lp_notify_queue(server->lp, user, LP_NOTIFY_FORWARDING,
			    fwd.keep ? "on the self-service page "
			    "(a copy kept)" : "on the self-service page",
			    time(NULL), &err) < 0)
		web_log(LP_LOG_ERROR, "%s: forwarding not queued for "
			"notify_to: %s", user, err.text);
	snprintf(notice_r, notice_size, "%s: your mail is forwarded to "
		 "%s%s.", user, fwd.address, fwd.keep ?
		 ", and a copy is kept here" : "");
	return 1;
}
