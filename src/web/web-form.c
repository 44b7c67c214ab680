/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* POST forms (application/x-www-form-urlencoded only), decoded by
   libmicrohttpd's post processor as the body arrives.  On top of its
   decoding we refuse what no form of ours sends: a repeated field, more
   than WEB_FORM_FIELDS_MAX fields, a control byte in a value, and
   whatever the post processor itself calls malformed (a field without
   '=', a cut-off %-escape).  Values are kept in secret buffers: wiped
   when the request ends. */

#include "web-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WEB_FORM_TYPE "application/x-www-form-urlencoded"
/* The post processor's own buffer (a longer value comes in pieces). */
#define WEB_FORM_BUFFER 1024

static int web_form_find(const struct web_request *req, const char *name)
{
	for (unsigned int i = 0; i < req->form_count; i++) {
		if (strcmp(req->form_names[i], name) == 0)
			return (int)i;
	}
	return -1;
}

const char *web_form_get(const struct web_request *req, const char *name)
{
	int i = web_form_find(req, name);

	if (i < 0)
		return NULL;
	return req->form_values[i].data != NULL ?
		req->form_values[i].data : "";
}

static enum MHD_Result
web_form_field(void *cls, enum MHD_ValueKind kind, const char *key,
	       const char *filename, const char *content_type,
	       const char *transfer_encoding, const char *data, uint64_t off,
	       size_t size)
{
	struct web_request *req = cls;
	struct web_buf *value;

	(void)kind;
	(void)filename;
	(void)content_type;
	(void)transfer_encoding;
	if (off == 0) {
		/* a new field */
		if (web_form_find(req, key) >= 0 ||
		    req->form_count >= WEB_FORM_FIELDS_MAX ||
		    (req->form_names[req->form_count] = strdup(key)) == NULL) {
			req->form_bad = true;
			return MHD_NO;
		}
		req->form_values[req->form_count].secret = true;
		req->form_count++;
	} else if (req->form_count == 0 ||
		   strcmp(req->form_names[req->form_count - 1], key) != 0) {
		/* the rest of a value comes right after its start */
		req->form_bad = true;
		return MHD_NO;
	}
	for (size_t i = 0; i < size; i++) {
		/* no form field of ours needs a control character */
		if ((unsigned char)data[i] < 0x20 || data[i] == 0x7f) {
			req->form_bad = true;
			return MHD_NO;
		}
	}
	value = &req->form_values[req->form_count - 1];
	web_buf_append_n(value, data, size);
	if (value->failed) {
		req->form_bad = true;
		return MHD_NO;
	}
	return MHD_YES;
}

void web_form_begin(struct web_request *req)
{
	const char *type = web_header_get(req, MHD_HTTP_HEADER_CONTENT_TYPE);

	if (type == NULL ||
	    strncasecmp(type, WEB_FORM_TYPE, strlen(WEB_FORM_TYPE)) != 0 ||
	    (req->form_pp = MHD_create_post_processor(
		    req->conn, WEB_FORM_BUFFER, web_form_field, req)) == NULL)
		req->form_bad = true;
}

void web_form_feed(struct web_request *req, const char *data, size_t size)
{
	if (req->form_bad || req->form_pp == NULL)
		return;
	if (MHD_post_process(req->form_pp, data, size) != MHD_YES)
		req->form_bad = true;
}

bool web_form_end(struct web_request *req)
{
	struct MHD_PostProcessor *pp = req->form_pp;

	req->form_pp = NULL;
	/* MHD_NO: the body ended inside a field (no '=', a cut escape) */
	if (pp != NULL && MHD_destroy_post_processor(pp) != MHD_YES)
		req->form_bad = true;
	return !req->form_bad;
}

void web_form_free(struct web_request *req)
{
	if (req->form_pp != NULL)
		(void)MHD_destroy_post_processor(req->form_pp);
	req->form_pp = NULL;
	for (unsigned int i = 0; i < req->form_count; i++) {
		free(req->form_names[i]);
		web_buf_free(&req->form_values[i]);
	}
	req->form_count = 0;
}
