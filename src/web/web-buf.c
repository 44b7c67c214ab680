/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Growing text buffers for pages and form values; a secret one is wiped
   before its memory is given back. */

#include "web-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define WEB_BUF_MIN 1024

static void web_buf_grow(struct web_buf *buf, size_t more)
{
	size_t size;
	char *data;

	if (buf->failed)
		return;
	if (buf->len + more + 1 <= buf->size)
		return;
	size = buf->size < WEB_BUF_MIN ? WEB_BUF_MIN : buf->size;
	while (size < buf->len + more + 1)
		size *= 2;
	data = malloc(size);
	if (data == NULL) {
		buf->failed = true;
		return;
	}
	if (buf->data != NULL) {
		memcpy(data, buf->data, buf->len + 1);
		/* realloc() would leave a copy of a password behind */
		sodium_memzero(buf->data, buf->size);
		free(buf->data);
	}
	buf->data = data;
	buf->size = size;
}

void web_buf_append_n(struct web_buf *buf, const char *text, size_t len)
{
	web_buf_grow(buf, len);
	if (buf->failed)
		return;
	memcpy(buf->data + buf->len, text, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
}

void web_buf_append(struct web_buf *buf, const char *text)
{
	web_buf_append_n(buf, text, strlen(text));
}

void web_buf_printf(struct web_buf *buf, const char *fmt, ...)
{
	va_list args;
	int len;

	va_start(args, fmt);
	len = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	if (len < 0) {
		buf->failed = true;
		return;
	}
	web_buf_grow(buf, (size_t)len);
	if (buf->failed)
		return;
	va_start(args, fmt);
	(void)vsnprintf(buf->data + buf->len, (size_t)len + 1, fmt, args);
	va_end(args);
	buf->len += (size_t)len;
}

void web_buf_html(struct web_buf *buf, const char *text)
{
	const char *p, *start = text;

	for (p = text; *p != '\0'; p++) {
		const char *esc;

		switch (*p) {
		case '&': esc = "&amp;"; break;
		case '<': esc = "&lt;"; break;
		case '>': esc = "&gt;"; break;
		case '"': esc = "&quot;"; break;
		case '\'': esc = "&#39;"; break;
		default: continue;
		}
		web_buf_append_n(buf, start, (size_t)(p - start));
		web_buf_append(buf, esc);
		start = p + 1;
	}
	web_buf_append_n(buf, start, (size_t)(p - start));
}

void web_buf_free(struct web_buf *buf)
{
	if (buf->data != NULL) {
		if (buf->secret)
			sodium_memzero(buf->data, buf->size);
		free(buf->data);
	}
	buf->data = NULL;
	buf->len = buf->size = 0;
}
