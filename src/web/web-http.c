/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* libmicrohttpd glue: the daemon, who the client is, request bodies (to
   web-form.c), and responses with the security headers every page
   carries. */

#include "web-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* No inline script or style anywhere: the stylesheet is /style.css. */
#define WEB_CSP "default-src 'self'; frame-ancestors 'none'; " \
	"form-action 'self' %s; base-uri 'none'"

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
	if (req->disposition[0] != '\0')
		MHD_add_response_header(resp,
					MHD_HTTP_HEADER_CONTENT_DISPOSITION,
					req->disposition);
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
	web_job_free(req);
	sodium_memzero(&req->fwd_mail, sizeof(req->fwd_mail));
	web_form_free(req);
	web_buf_free(&req->body);
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
	const char *length;

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
		if (req->is_post)
			web_form_begin(req);
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (!req->is_post || req->body_len + *upload_data_size >
		    WEB_BODY_MAX) {
			req->too_large = true;
		} else {
			req->body_len += *upload_data_size;
			web_form_feed(req, upload_data, *upload_data_size);
		}
		*upload_data_size = 0;
		if (req->too_large) {
			/* Chunked and too long: answer now, MHD closes. */
			web_plain_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
					"request body too large\n");
			return web_respond(req);
		}
		return MHD_YES;
	}
	if (req->too_large) {
		web_plain_error(req, MHD_HTTP_CONTENT_TOO_LARGE,
				"request body too large\n");
		return web_respond(req);
	}
	if (req->job.resume == NULL) {
		if (req->is_post && !web_form_end(req)) {
			web_plain_error(req, MHD_HTTP_BAD_REQUEST,
					"malformed form\n");
			return web_respond(req);
		}
		web_pages_handle(req);
	}
	/* A handler that queued a job (web-worker.c) continues once it is
	   answered: at once if it could not run, else after this
	   connection is resumed, when MHD calls here again. */
	while (req->job.resume != NULL && req->job.done) {
		web_resume_fn *resume = req->job.resume;

		req->job.resume = NULL;
		resume(req);
	}
	if (req->job.resume != NULL) {
		req->job.suspended = true;
		MHD_suspend_connection(conn);
		return MHD_YES;
	}
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
	/* suspended while a worker does a request's blocking work */
	unsigned int flags = MHD_USE_ERROR_LOG | MHD_USE_EPOLL |
		MHD_ALLOW_SUSPEND_RESUME;
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
