/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* libmicrohttpd glue: request bodies, forms, cookies, and responses with
   the security headers every page carries. */

#include "web-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define WEB_BUF_MIN 1024

/* No inline script or style anywhere: the stylesheet is /style.css. */
#define WEB_CSP "default-src 'self'; frame-ancestors 'none'; " \
	"form-action 'self' %s; base-uri 'none'"

/* ---- buffers ---- */

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

/* ---- request accessors ---- */

const char *web_form_get(const struct web_request *req, const char *name)
{
	for (unsigned int i = 0; i < req->form_count; i++) {
		if (strcmp(req->form_names[i], name) == 0)
			return req->form_values[i];
	}
	return NULL;
}

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

/* ---- forms ---- */

static int web_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes one x-www-form-urlencoded token in place. Returns false on a bad
   escape or a control character (no form field of ours needs one). */
static bool web_form_decode(char *str)
{
	char *in = str, *out = str;

	while (*in != '\0') {
		char c = *in++;

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi = web_hex(in[0]), lo = hi < 0 ? -1 : web_hex(in[1]);

			if (lo < 0)
				return false;
			c = (char)(hi * 16 + lo);
			in += 2;
		}
		if ((unsigned char)c < 0x20 || c == 0x7f)
			return false;
		*out++ = c;
	}
	*out = '\0';
	return true;
}

/* Splits the body into fields. Returns false if it is not a well-formed
   form of at most WEB_FORM_FIELDS_MAX distinct fields. */
static bool web_form_parse(struct web_request *req)
{
	char *p, *field, *eq;

	if (req->body_in.len == 0)
		return true;
	req->form_storage_size = req->body_in.len + 1;
	req->form_storage = malloc(req->form_storage_size);
	if (req->form_storage == NULL)
		return false;
	memcpy(req->form_storage, req->body_in.data, req->form_storage_size);
	for (p = req->form_storage; p != NULL; ) {
		field = p;
		p = strchr(p, '&');
		if (p != NULL)
			*p++ = '\0';
		if (*field == '\0')
			continue;
		eq = strchr(field, '=');
		if (eq == NULL || req->form_count >= WEB_FORM_FIELDS_MAX)
			return false;
		*eq = '\0';
		if (!web_form_decode(field) || !web_form_decode(eq + 1) ||
		    web_form_get(req, field) != NULL)
			return false;
		req->form_names[req->form_count] = field;
		req->form_values[req->form_count++] = eq + 1;
	}
	return true;
}

/* ---- responses ---- */

static void web_response_free_cb(void *cls)
{
	struct web_buf *buf = cls;

	web_buf_free(buf);
	free(buf);
}

static enum MHD_Result web_respond(struct web_request *req)
{
	struct web_server *server = req->server;
	struct MHD_Response *resp;
	struct web_buf *body;
	enum MHD_Result ret;
	char csp[WEB_URL_MAX + 128];

	if (req->body.failed) {
		web_buf_free(&req->body);
		req->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		web_buf_append(&req->body, "out of memory\n");
		req->content_type = "text/plain; charset=utf-8";
	}
	/* MHD keeps the buffer until sent; it is wiped in the callback. */
	body = calloc(1, sizeof(*body));
	if (body == NULL)
		return MHD_NO;
	*body = req->body;
	memset(&req->body, 0, sizeof(req->body));
	resp = MHD_create_response_from_buffer_with_free_callback_cls(
		body->len, body->data != NULL ? body->data : (void *)"",
		web_response_free_cb, body);
	if (resp == NULL) {
		web_response_free_cb(body);
		return MHD_NO;
	}
	snprintf(csp, sizeof(csp), WEB_CSP, server->sso_origin);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				req->content_type != NULL ? req->content_type :
				"text/html; charset=utf-8");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY,
				csp);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	/* Not "no-referrer": browsers then send "Origin: null" on POSTs,
	   and web_csrf_check() wants our own origin there. */
	MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
	if (req->cacheable) {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
					"public, max-age=3600");
	} else {
		/* Every page is personal; the password pages must never be
		   kept by a browser or proxy cache. */
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
					"no-store");
		MHD_add_response_header(resp, MHD_HTTP_HEADER_PRAGMA,
					"no-cache");
	}
	if (req->location[0] != '\0')
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION,
					req->location);
	for (unsigned int i = 0; i < req->cookie_count; i++)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE,
					req->cookies[i]);
	ret = MHD_queue_response(req->conn, req->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

void web_client_key(const unsigned char addr[16], char *key_r, size_t size)
{
	static const unsigned char v4_prefix[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	unsigned char net[16];
	char text[INET6_ADDRSTRLEN];

	if (memcmp(addr, v4_prefix, sizeof(v4_prefix)) == 0) {
		inet_ntop(AF_INET, addr + 12, text, sizeof(text));
		snprintf(key_r, size, "%s", text);
		return;
	}
	/* one subscriber usually holds a whole /64 */
	memcpy(net, addr, 8);
	memset(net + 8, 0, 8);
	inet_ntop(AF_INET6, net, text, sizeof(text));
	snprintf(key_r, size, "%s/64", text);
}

/* The peer's address, as 16 bytes (IPv4 mapped); false if unknown. */
static bool web_request_peer(struct web_request *req, unsigned char addr_r[16])
{
	const union MHD_ConnectionInfo *info;
	const struct sockaddr *sa;

	info = MHD_get_connection_info(req->conn,
				       MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (info == NULL || (sa = info->client_addr) == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		memset(addr_r, 0, 10);
		addr_r[10] = addr_r[11] = 0xff;
		memcpy(addr_r + 12, &sin->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		memcpy(addr_r, &sin6->sin6_addr, 16);
		return true;
	}
	return false;
}

static void web_addr_text(const unsigned char addr[16], char *buf,
			  size_t size)
{
	char text[INET6_ADDRSTRLEN];

	if (addr[10] == 0xff && addr[11] == 0xff &&
	    memcmp(addr, "\0\0\0\0\0\0\0\0\0\0", 10) == 0)
		inet_ntop(AF_INET, addr + 12, text, sizeof(text));
	else
		inet_ntop(AF_INET6, addr, text, sizeof(text));
	snprintf(buf, size, "%s", text);
}

static void web_request_client(struct web_request *req)
{
	const struct web_server *server = req->server;
	unsigned char addr[16], real[16];
	const char *real_ip;

	if (!web_request_peer(req, addr)) {
		snprintf(req->client, sizeof(req->client), "unknown");
		snprintf(req->client_key, sizeof(req->client_key), "unknown");
		return;
	}
	/* Behind the reverse proxy the peer is the proxy: its X-Real-IP
	   (overwritten by the shipped nginx snippet) names the client.
	   From any other peer the header is the client's own word, and
	   ignored. */
	real_ip = web_header_get(req, "X-Real-IP");
	if (real_ip != NULL &&
	    lp_net_list_match(server->trusted_proxies,
			      server->trusted_proxies_count, addr)) {
		if (lp_net_addr_parse(real_ip, real) == 0)
			memcpy(addr, real, sizeof(addr));
		else
			web_log(LP_LOG_WARNING, "ignoring a malformed "
				"X-Real-IP from a trusted proxy");
	}
	web_addr_text(addr, req->client, sizeof(req->client));
	web_client_key(addr, req->client_key, sizeof(req->client_key));
}

static void web_request_free(struct web_request *req)
{
	web_buf_free(&req->body_in);
	web_buf_free(&req->body);
	if (req->form_storage != NULL) {
		sodium_memzero(req->form_storage, req->form_storage_size);
		free(req->form_storage);
	}
	free(req);
}

static void web_http_completed(void *cls, struct MHD_Connection *conn,
			       void **con_cls,
			       enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	if (*con_cls != NULL)
		web_request_free(*con_cls);
	*con_cls = NULL;
}

static void web_plain_error(struct web_request *req, unsigned int status,
			    const char *text)
{
	web_buf_free(&req->body);
	req->status = status;
	req->content_type = "text/plain; charset=utf-8";
	web_buf_append(&req->body, text);
}

static enum MHD_Result
web_http_handler(void *cls, struct MHD_Connection *conn, const char *url,
		 const char *method, const char *version,
		 const char *upload_data, size_t *upload_data_size,
		 void **con_cls)
{
	struct web_server *server = cls;
	struct web_request *req = *con_cls;
	const char *length, *type;

	(void)version;
	if (req == NULL) {
		req = calloc(1, sizeof(*req));
		if (req == NULL)
			return MHD_NO;
		req->server = server;
		req->conn = conn;
		req->method = method;
		req->path = url;
		req->status = MHD_HTTP_OK;
		req->is_post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
		req->body_in.secret = true;
		web_request_client(req);
		*con_cls = req;
		if (!req->is_post && strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
		    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
			web_plain_error(req, MHD_HTTP_METHOD_NOT_ALLOWED,
					"method not allowed\n");
			return web_respond(req);
		}
		length = web_header_get(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (length != NULL && strtoull(length, NULL, 10) > WEB_BODY_MAX) {
			/* Refused before a byte of it is read. */
			web_plain_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
					"request body too large\n");
			return web_respond(req);
		}
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (!req->is_post || req->body_in.len + *upload_data_size >
		    WEB_BODY_MAX)
			req->too_large = true;
		else
			web_buf_append_n(&req->body_in, upload_data,
					 *upload_data_size);
		*upload_data_size = 0;
		if (req->too_large) {
			/* Chunked and too long: answer now, MHD closes. */
			web_plain_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
					"request body too large\n");
			return web_respond(req);
		}
		return MHD_YES;
	}
	if (req->too_large || req->body_in.failed) {
		web_plain_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
				"request body too large\n");
		return web_respond(req);
	}
	if (req->is_post) {
		type = web_header_get(req, MHD_HTTP_HEADER_CONTENT_TYPE);
		if (type == NULL ||
		    strncasecmp(type, "application/x-www-form-urlencoded",
				strlen("application/x-www-form-urlencoded")) != 0 ||
		    !web_form_parse(req)) {
			web_plain_error(req, MHD_HTTP_BAD_REQUEST,
					"malformed form\n");
			return web_respond(req);
		}
	}
	web_pages_handle(req);
	return web_respond(req);
}

static void web_http_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t len;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	len = strlen(msg);
	while (len > 0 && msg[len - 1] == '\n')
		msg[--len] = '\0';
	web_log(LP_LOG_WARNING, "libmicrohttpd: %s", msg);
}

/* "127.0.0.1:8145" or "[::1]:8145". */
static int web_http_parse_listen(const char *listen,
				 struct sockaddr_storage *ss_r,
				 bool *ipv6_r)
{
	char host[64];
	const char *port_str;
	unsigned long port;
	char *end;

	memset(ss_r, 0, sizeof(*ss_r));
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');

		if (close == NULL || close[1] != ':' ||
		    (size_t)(close - listen - 1) >= sizeof(host))
			return -1;
		memcpy(host, listen + 1, (size_t)(close - listen - 1));
		host[close - listen - 1] = '\0';
		port_str = close + 2;
		*ipv6_r = true;
	} else {
		const char *colon = strrchr(listen, ':');

		if (colon == NULL || (size_t)(colon - listen) >= sizeof(host))
			return -1;
		memcpy(host, listen, (size_t)(colon - listen));
		host[colon - listen] = '\0';
		port_str = colon + 1;
		*ipv6_r = false;
	}
	errno = 0;
	port = strtoul(port_str, &end, 10);
	if (errno != 0 || *end != '\0' || port == 0 || port > 65535)
		return -1;
	if (*ipv6_r) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss_r;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss_r;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
	}
	return 0;
}

int web_http_start(struct web_server *server, const char **error_r)
{
	union {
		struct sockaddr sa;
		struct sockaddr_storage ss;
	} addr;
	unsigned int flags = MHD_USE_ERROR_LOG | MHD_USE_EPOLL;
	bool ipv6;

	if (web_http_parse_listen(server->config->web_listen, &addr.ss,
				  &ipv6) < 0) {
		*error_r = "web_listen must be <IPv4>:<port> or [<IPv6>]:<port>";
		return -1;
	}
	if (ipv6)
		flags |= MHD_USE_IPv6;
	server->daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, web_http_handler, server,
		/* first, or MHD logs to stderr before it is set */
		MHD_OPTION_EXTERNAL_LOGGER, web_http_mhd_log, server,
		MHD_OPTION_SOCK_ADDR, &addr.sa,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)WEB_CONNECTIONS_MAX,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned int)WEB_PER_IP_CONNECTIONS_MAX,
		MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)WEB_CONNECTION_TIMEOUT_SECS,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)WEB_CONNECTION_MEMORY,
		MHD_OPTION_NOTIFY_COMPLETED, web_http_completed, server,
		MHD_OPTION_END);
	if (server->daemon == NULL) {
		*error_r = "cannot listen on web_listen (address in use?)";
		return -1;
	}
	return 0;
}

void web_http_stop(struct web_server *server)
{
	if (server->daemon != NULL)
		MHD_stop_daemon(server->daemon);
	server->daemon = NULL;
}
