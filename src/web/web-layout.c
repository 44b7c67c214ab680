/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The frame every page shares (header with the sign-out form, footer),
   the form fields every POST carries, and the error page. */

#include "web-private.h"

void web_page_begin(struct web_request *req, const char *title)
{
	struct web_buf *b = &req->body;

	web_buf_append(b, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
		       "<meta charset=\"utf-8\">"
		       "<meta name=\"viewport\" content=\"width=device-width, "
		       "initial-scale=1\">"
		       "<meta name=\"referrer\" content=\"same-origin\">"
		       "<title>");
	web_buf_html(b, title);
	web_buf_append(b, " - Ubuntu contributor mail</title>"
		       "<link rel=\"stylesheet\" href=\"/style.css\">"
		       "</head><body><header><div class=\"in\">"
		       "<h1>Ubuntu contributor mail</h1>");
	if (req->session != NULL) {
		web_buf_append(b, "<form method=\"post\" action=\"/logout\">"
			       "<input type=\"hidden\" name=\"csrf\" value=\"");
		web_buf_html(b, req->session->csrf);
		web_buf_append(b, "\"><span>");
		web_buf_html(b, req->session->name);
		web_buf_append(b, "</span> <button type=\"submit\">Sign out"
			       "</button></form>");
	}
	web_buf_append(b, "</div></header><main>");
}

void web_page_end(struct web_request *req)
{
	web_buf_append(&req->body, "</main><footer>Mailboxes for Ubuntu "
		       "contributors: who gets one is decided by Launchpad "
		       "team membership.</footer></body></html>\n");
}

void web_csrf_field(struct web_request *req)
{
	web_buf_append(&req->body, "<input type=\"hidden\" name=\"csrf\" "
		       "value=\"");
	web_buf_html(&req->body, req->session->csrf);
	web_buf_append(&req->body, "\">");
}

void web_hidden(struct web_request *req, const char *name,
		const char *value)
{
	web_buf_printf(&req->body, "<input type=\"hidden\" name=\"%s\" "
		       "value=\"", name);
	web_buf_html(&req->body, value);
	web_buf_append(&req->body, "\">");
}

void web_page_error(struct web_request *req, unsigned int status,
		    const char *title, const char *text)
{
	web_buf_free(&req->body);
	req->status = status;
	web_page_begin(req, title);
	web_buf_append(&req->body, "<section><h2>");
	web_buf_html(&req->body, title);
	web_buf_append(&req->body, "</h2><p>");
	web_buf_html(&req->body, text);
	web_buf_append(&req->body, "</p><p><a href=\"/\">Back to the start "
		       "page</a></p></section>");
	web_page_end(req);
}

