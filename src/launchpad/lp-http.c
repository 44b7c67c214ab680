/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LP_HTTP_BUF_INITIAL 16384
/* Below this much time left a request is not worth starting. */
#define LP_HTTP_MIN_MSECS 100

struct lp_http_state {
	char *data;
	size_t size, alloc;
	bool too_big;
	char etag[LP_ETAG_MAX];
};

enum lp_http_attempt {
	LP_HTTP_ATTEMPT_DONE,	/* a usable status, or a redirect */
	LP_HTTP_ATTEMPT_RETRY,	/* timeout, connection error, 5xx */
	LP_HTTP_ATTEMPT_FAIL,	/* no retry helps */
};

static size_t lp_http_write(char *ptr, size_t size, size_t nmemb, void *context)
{
	struct lp_http_state *state = context;
	size_t len = size * nmemb;

	/* Stop reading as soon as the cap is passed: a 10 MB answer must not
	   cost 10 MB of memory or its download time. */
	if (len > LP_HTTP_MAX_BODY - state->size) {
		state->too_big = true;
		return 0;
	}
	if (state->size + len + 1 > state->alloc) {
		size_t new_alloc = state->alloc == 0 ? LP_HTTP_BUF_INITIAL :
			state->alloc;
		char *new_data;

		while (new_alloc < state->size + len + 1)
			new_alloc *= 2;
		new_data = realloc(state->data, new_alloc);
		if (new_data == NULL)
			return 0;
		state->data = new_data;
		state->alloc = new_alloc;
	}
	memcpy(state->data + state->size, ptr, len);
	state->size += len;
	state->data[state->size] = '\0';
	return len;
}

static size_t lp_http_header(char *ptr, size_t size, size_t nmemb,
			     void *context)
{
	static const char etag_hdr[] = "etag:";
	struct lp_http_state *state = context;
	size_t len = size * nmemb, vlen;
	const char *value;

	if (len >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		/* a new response (e.g. after 100 Continue) */
		state->etag[0] = '\0';
		return len;
	}
	if (len < sizeof(etag_hdr) - 1 ||
	    strncasecmp(ptr, etag_hdr, sizeof(etag_hdr) - 1) != 0)
		return len;
	value = ptr + sizeof(etag_hdr) - 1;
	vlen = len - (sizeof(etag_hdr) - 1);
	while (vlen > 0 && (*value == ' ' || *value == '\t')) {
		value++;
		vlen--;
	}
	while (vlen > 0 && (value[vlen - 1] == '\r' || value[vlen - 1] == '\n' ||
			    value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
		vlen--;
	/* An absurd ETag is dropped, not truncated: a truncated one would
	   never match again anyway. */
	if (vlen < sizeof(state->etag)) {
		memcpy(state->etag, value, vlen);
		state->etag[vlen] = '\0';
	}
	return len;
}

/* libcurl's process-wide state is set up by the first client, not when a
   module linking this library is loaded: a Dovecot process that never asks
   Launchpad anything never runs curl_global_init(). */
static bool lp_curl_global_done = false;

static int lp_http_global_init(struct lp_error *err)
{
	CURLcode rc;

	if (lp_curl_global_done)
		return 0;
	rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK) {
		lp_error_set(err, LP_ERR_INTERNAL, "curl_global_init() failed: %s",
			     curl_easy_strerror(rc));
		return -1;
	}
	lp_curl_global_done = true;
	return 0;
}

void lp_global_deinit(void)
{
	if (!lp_curl_global_done)
		return;
	curl_global_cleanup();
	lp_curl_global_done = false;
}

int lp_http_init(struct lp_context *ctx, struct lp_error *err)
{
	CURL *curl;
	CURLcode rc = CURLE_OK;

	if (lp_http_global_init(err) < 0)
		return -1;
	curl = curl_easy_init();
	if (curl == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "curl_easy_init() failed");
		return -1;
	}
#define LP_SETOPT(opt, val) \
	if (rc == CURLE_OK) rc = curl_easy_setopt(curl, opt, val)
	/* auth-workers are threaded by Dovecot's ioloop: no SIGALRM. */
	LP_SETOPT(CURLOPT_NOSIGNAL, 1L);
	/* configure checked that libcurl has CURLOPT_PROTOCOLS_STR */
	LP_SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	LP_SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	LP_SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	LP_SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	/* Redirects are checked against api_url by lp_http_get(); a POST
	   follows none. */
	LP_SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	LP_SETOPT(CURLOPT_USERAGENT, LP_USER_AGENT);
	LP_SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)LP_HTTP_MAX_BODY);
	LP_SETOPT(CURLOPT_WRITEFUNCTION, lp_http_write);
	LP_SETOPT(CURLOPT_HEADERFUNCTION, lp_http_header);
	LP_SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
#undef LP_SETOPT
	if (rc != CURLE_OK) {
		lp_error_set(err, LP_ERR_INTERNAL, "curl_easy_setopt() failed: %s",
			     curl_easy_strerror(rc));
		curl_easy_cleanup(curl);
		return -1;
	}
	ctx->curl = curl;
	return 0;
}

void lp_http_deinit(struct lp_context *ctx)
{
	if (ctx->curl != NULL)
		curl_easy_cleanup(ctx->curl);
	ctx->curl = NULL;
}

void lp_http_response_free(struct lp_http_response *resp)
{
	free(resp->body);
	resp->body = NULL;
	resp->body_size = 0;
}

static bool lp_http_status_is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 ||
		status == 307 || status == 308;
}

static bool lp_curl_code_is_transient(CURLcode code)
{
	switch (code) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	/* Content-Length promised more than arrived: the connection broke */
	case CURLE_PARTIAL_FILE:
		return true;
	default:
		return false;
	}
}

static void lp_sleep_msecs(unsigned int msecs)
{
	struct timespec ts = {
		.tv_sec = msecs / 1000,
		.tv_nsec = (long)(msecs % 1000) * 1000000L,
	};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* One request, as lp_http_get() or lp_http_post_form() describe it. */
struct lp_http_request {
	const char *method;		/* "GET" or "POST" */
	const char *url;
	const char *etag;		/* GET: If-None-Match, or NULL */
	const char *post;		/* POST: the body, post_size bytes */
	size_t post_size;
};

/* Adds "name: value" to *headers (when value is not NULL).  FALSE when
   out of memory (*headers is then freed). */
static bool lp_http_header_add(struct curl_slist **headers, const char *name,
			       const char *value)
{
	char line[LP_ETAG_MAX + 64];
	struct curl_slist *h;

	if (value == NULL)
		return true;
	snprintf(line, sizeof(line), "%s: %s", name, value);
	if ((h = curl_slist_append(*headers, line)) == NULL) {
		curl_slist_free_all(*headers);
		*headers = NULL;
		return false;
	}
	*headers = h;
	return true;
}

/* One attempt. On DONE, state holds the body and *status_r the code. */
static enum lp_http_attempt
lp_http_attempt(struct lp_context *ctx, const struct lp_http_request *req,
		struct lp_http_state *state, long *status_r,
		struct lp_error *err)
{
	struct curl_slist *headers = NULL;
	const char *etag = req->etag != NULL && req->etag[0] != '\0' ?
		req->etag : NULL;
	bool post = req->post != NULL;
	uint64_t timeout_msecs, left, start;
	CURLcode code;
	long status = 0;

	left = lp_deadline_left(ctx);
	timeout_msecs = (uint64_t)ctx->config->http_timeout * 1000;
	if (timeout_msecs == 0 || timeout_msecs > left)
		timeout_msecs = left;
	if (timeout_msecs < LP_HTTP_MIN_MSECS) {
		lp_error_set(err, LP_ERR_TEMP, "%s %s: lookup deadline reached",
			     req->method, req->url);
		return LP_HTTP_ATTEMPT_FAIL;
	}

	if (!lp_http_header_add(&headers, "Accept",
				post ? NULL : "application/json") ||
	    !lp_http_header_add(&headers, "If-None-Match", etag) ||
	    !lp_http_header_add(&headers, "Content-Type", post ?
				"application/x-www-form-urlencoded" : NULL)) {
		lp_error_set(err, LP_ERR_INTERNAL, "curl_slist_append() failed");
		return LP_HTTP_ATTEMPT_FAIL;
	}

	free(state->data);
	memset(state, 0, sizeof(*state));
	curl_easy_setopt(ctx->curl, CURLOPT_URL, req->url);
	curl_easy_setopt(ctx->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(ctx->curl, CURLOPT_WRITEDATA, state);
	curl_easy_setopt(ctx->curl, CURLOPT_HEADERDATA, state);
	curl_easy_setopt(ctx->curl, CURLOPT_TIMEOUT_MS, (long)timeout_msecs);
	curl_easy_setopt(ctx->curl, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)timeout_msecs);
	if (post) {
		curl_easy_setopt(ctx->curl, CURLOPT_POSTFIELDSIZE,
				 (long)req->post_size);
		curl_easy_setopt(ctx->curl, CURLOPT_POSTFIELDS, req->post);
	}

	start = lp_monotonic_msecs();
	ctx->http_requests++;
	code = curl_easy_perform(ctx->curl);
	curl_easy_setopt(ctx->curl, CURLOPT_HTTPHEADER, NULL);
	if (post) {
		/* the handle serves the next GET, and must not keep a pointer
		   to the caller's body */
		curl_easy_setopt(ctx->curl, CURLOPT_POSTFIELDS, NULL);
		curl_easy_setopt(ctx->curl, CURLOPT_HTTPGET, 1L);
	}
	curl_slist_free_all(headers);
	if (code == CURLE_OK)
		curl_easy_getinfo(ctx->curl, CURLINFO_RESPONSE_CODE, &status);
	lp_log(ctx, LP_LOG_DEBUG, "%s %s%s: %ld (%s) in %llu ms", req->method,
	       req->url, etag != NULL ? " (If-None-Match)" : "",
	       status, curl_easy_strerror(code),
	       (unsigned long long)(lp_monotonic_msecs() - start));

	if (state->too_big || code == CURLE_FILESIZE_EXCEEDED) {
		lp_error_set(err, LP_ERR_PROTOCOL,
			     "%s %s: answer larger than %u bytes", req->method,
			     req->url, LP_HTTP_MAX_BODY);
		return LP_HTTP_ATTEMPT_FAIL;
	}
	if (code != CURLE_OK) {
		lp_error_set(err, LP_ERR_TEMP, "%s %s: %s", req->method,
			     req->url, curl_easy_strerror(code));
		return lp_curl_code_is_transient(code) && !post ?
			LP_HTTP_ATTEMPT_RETRY : LP_HTTP_ATTEMPT_FAIL;
	}
	*status_r = status;
	/* a POST's answer, whatever its status, is for the caller */
	if (post)
		return LP_HTTP_ATTEMPT_DONE;
	if (status >= 500 && status <= 599) {
		lp_error_set(err, LP_ERR_TEMP, "GET %s: HTTP %ld", req->url,
			     status);
		return LP_HTTP_ATTEMPT_RETRY;
	}
	if (status == 200 || status == 304 || status == 404 || status == 410 ||
	    lp_http_status_is_redirect(status))
		return LP_HTTP_ATTEMPT_DONE;
	lp_error_set(err, LP_ERR_PROTOCOL, "GET %s: unexpected HTTP %ld",
		     req->url, status);
	return LP_HTTP_ATTEMPT_FAIL;
}

/* Retries of one request (a POST gets none). 0 with *status_r, or -1. */
static int lp_http_retry(struct lp_context *ctx,
			 const struct lp_http_request *req,
			 struct lp_http_state *state, long *status_r,
			 struct lp_error *err)
{
	static const unsigned int backoff[LP_HTTP_RETRIES] = {
		LP_HTTP_RETRY1_MSECS, LP_HTTP_RETRY2_MSECS,
	};

	for (unsigned int attempt = 0;; attempt++) {
		switch (lp_http_attempt(ctx, req, state, status_r, err)) {
		case LP_HTTP_ATTEMPT_DONE:
			return 0;
		case LP_HTTP_ATTEMPT_FAIL:
			lp_log(ctx, LP_LOG_WARNING, "%s", err->text);
			return -1;
		case LP_HTTP_ATTEMPT_RETRY:
			break;
		}
		if (attempt == LP_HTTP_RETRIES ||
		    lp_deadline_left(ctx) < backoff[attempt] + LP_HTTP_MIN_MSECS) {
			lp_log(ctx, LP_LOG_WARNING, "%s (%u attempts)",
			       err->text, attempt + 1);
			return -1;
		}
		lp_log(ctx, LP_LOG_DEBUG, "%s: retrying in %u ms", err->text,
		       backoff[attempt]);
		lp_sleep_msecs(backoff[attempt]);
	}
}

int lp_http_get(struct lp_context *ctx, const char *url, const char *etag,
		struct lp_http_response *resp_r, struct lp_error *err)
{
	struct lp_error local_err;
	struct lp_http_state state = { .data = NULL };
	char cur_url[LP_URL_MAX];
	long status = 0;

	if (err == NULL)
		err = &local_err;
	memset(resp_r, 0, sizeof(*resp_r));
	if (snprintf(cur_url, sizeof(cur_url), "%s", url) >= (int)sizeof(cur_url) ||
	    !lp_url_is_under(ctx->config->api_url, url)) {
		lp_error_set(err, LP_ERR_PROTOCOL,
			     "refusing URL outside api_url: %.128s", url);
		lp_log(ctx, LP_LOG_WARNING, "%s", err->text);
		return -1;
	}
	for (unsigned int hops = 0;; hops++) {
		const char *location = NULL;
		const struct lp_http_request req = {
			.method = "GET", .url = cur_url, .etag = etag,
		};

		if (lp_http_retry(ctx, &req, &state, &status, err) < 0) {
			free(state.data);
			return -1;
		}
		if (!lp_http_status_is_redirect(status))
			break;
		/* curl resolves a relative Location for us */
		if (curl_easy_getinfo(ctx->curl, CURLINFO_REDIRECT_URL,
				      &location) != CURLE_OK)
			location = NULL;
		if (location == NULL ||
		    !lp_url_is_under(ctx->config->api_url, location) ||
		    strlen(location) >= sizeof(cur_url)) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "GET %s: HTTP %ld redirect outside api_url "
				     "not followed: %.128s", cur_url, status,
				     location == NULL ? "(none)" : location);
		} else if (hops == LP_HTTP_MAX_REDIRECTS) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "GET %s: more than %u redirects", url,
				     LP_HTTP_MAX_REDIRECTS);
		} else {
			memmove(cur_url, location, strlen(location) + 1);
			continue;
		}
		lp_log(ctx, LP_LOG_WARNING, "%s", err->text);
		free(state.data);
		return -1;
	}

	resp_r->status = status;
	memcpy(resp_r->etag, state.etag, sizeof(resp_r->etag));
	if (status == 200) {
		if (state.data == NULL) {
			state.data = strdup("");
			if (state.data == NULL) {
				lp_error_set(err, LP_ERR_INTERNAL,
					     "strdup() failed");
				return -1;
			}
		}
		resp_r->body = state.data;
		resp_r->body_size = state.size;
	} else {
		free(state.data);
	}
	return 0;
}

/* Appends "name=value" form-encoded (curl_easy_escape(): everything but
   unreserved characters as %XX) to buf. */
static bool lp_http_form_append(CURL *curl, char **buf, size_t *len,
				const char *name, const char *value)
{
	char *ename = curl_easy_escape(curl, name, 0);
	char *evalue = curl_easy_escape(curl, value, 0);
	size_t add = ename == NULL || evalue == NULL ? 0 :
		strlen(ename) + strlen(evalue) + 2;
	char *grown = add == 0 ? NULL : realloc(*buf, *len + add + 1);
	bool ok = grown != NULL;

	if (ok) {
		*len += (size_t)sprintf(grown + *len, "%s%s=%s",
					*len == 0 ? "" : "&", ename, evalue);
		*buf = grown;
	}
	curl_free(ename);
	curl_free(evalue);
	return ok;
}

int lp_http_post_form(struct lp_context *ctx, const char *url,
		      const char *const *pairs, long *status_r, char **body_r,
		      struct lp_error *err)
{
	struct lp_error local_err;
	struct lp_http_state state = { .data = NULL };
	struct lp_http_request req = { .method = "POST", .url = url };
	char *form = NULL;
	size_t form_len = 0;
	long status = 0;
	int ret;

	if (err == NULL)
		err = &local_err;
	*status_r = 0;
	*body_r = NULL;
	for (unsigned int i = 0; pairs[i] != NULL; i += 2) {
		if (!lp_http_form_append(ctx->curl, &form, &form_len,
					 pairs[i], pairs[i + 1])) {
			free(form);
			lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
			return -1;
		}
	}
	req.post = form != NULL ? form : "";
	req.post_size = form_len;
	ret = lp_http_retry(ctx, &req, &state, &status, err);
	free(form);
	if (ret < 0) {
		free(state.data);
		return -1;
	}
	*status_r = status;
	if (status == 200 && state.data == NULL &&
	    (state.data = strdup("")) == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "strdup() failed");
		return -1;
	}
	if (status == 200)
		*body_r = state.data;
	else
		free(state.data);
	return 0;
}
