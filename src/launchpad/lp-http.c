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
#if LIBCURL_VERSION_NUM >= 0x075500
	LP_SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	LP_SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	LP_SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	LP_SETOPT(CURLOPT_REDIR_PROTOCOLS,
		  (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	LP_SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	LP_SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	/* Redirects are checked against api_url by lp_http_get(). */
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

static char *lp_url_part(CURLU *u, CURLUPart part, unsigned int flags)
{
	char *value = NULL;

	if (curl_url_get(u, part, &value, flags) != CURLUE_OK)
		return NULL;
	return value;
}

bool lp_url_is_under(const char *api_url, const char *url)
{
	CURLU *base = curl_url(), *cand = curl_url();
	char *parts[2][4] = { { NULL } };
	char *user = NULL, *password = NULL;
	bool ok = false;
	size_t base_len;

	if (base == NULL || cand == NULL)
		goto out;
	if (curl_url_set(base, CURLUPART_URL, api_url, 0) != CURLUE_OK ||
	    curl_url_set(cand, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	for (unsigned int i = 0; i < 2; i++) {
		CURLU *u = i == 0 ? base : cand;

		parts[i][0] = lp_url_part(u, CURLUPART_SCHEME, 0);
		parts[i][1] = lp_url_part(u, CURLUPART_HOST, 0);
		parts[i][2] = lp_url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
		parts[i][3] = lp_url_part(u, CURLUPART_PATH, 0);
		for (unsigned int j = 0; j < 4; j++) {
			if (parts[i][j] == NULL)
				goto out;
		}
	}
	/* user info in a link is never Launchpad's and would change the
	   credentials curl sends */
	user = lp_url_part(cand, CURLUPART_USER, 0);
	password = lp_url_part(cand, CURLUPART_PASSWORD, 0);
	if (user != NULL || password != NULL)
		goto out;
	if (strcasecmp(parts[0][0], parts[1][0]) != 0 ||
	    strcasecmp(parts[0][1], parts[1][1]) != 0 ||
	    strcmp(parts[0][2], parts[1][2]) != 0)
		goto out;
	/* The path must continue api_url's path at a "/": "/1.0evil" is not
	   under "/1.0". curl has already removed dot segments. */
	base_len = strlen(parts[0][3]);
	while (base_len > 0 && parts[0][3][base_len - 1] == '/')
		base_len--;
	ok = strncmp(parts[1][3], parts[0][3], base_len) == 0 &&
		parts[1][3][base_len] == '/';
out:
	for (unsigned int i = 0; i < 2; i++) {
		for (unsigned int j = 0; j < 4; j++)
			curl_free(parts[i][j]);
	}
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(base);
	curl_url_cleanup(cand);
	return ok;
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

/* One request. On DONE, state holds the body and *status_r the code. */
static enum lp_http_attempt
lp_http_attempt(struct lp_context *ctx, const char *url, const char *etag,
		struct lp_http_state *state, long *status_r,
		struct lp_error *err)
{
	struct curl_slist *headers = NULL, *h;
	char inm[LP_ETAG_MAX + 32];
	uint64_t timeout_msecs, left, start;
	CURLcode code;
	long status = 0;

	left = lp_deadline_left(ctx);
	timeout_msecs = (uint64_t)ctx->config->http_timeout * 1000;
	if (timeout_msecs == 0 || timeout_msecs > left)
		timeout_msecs = left;
	if (timeout_msecs < LP_HTTP_MIN_MSECS) {
		lp_error_set(err, LP_ERR_TEMP,
			     "GET %s: lookup deadline reached", url);
		return LP_HTTP_ATTEMPT_FAIL;
	}

	h = curl_slist_append(NULL, "Accept: application/json");
	if (h != NULL && etag != NULL && etag[0] != '\0') {
		snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
		headers = h;
		h = curl_slist_append(headers, inm);
	}
	if (h == NULL) {
		curl_slist_free_all(headers);
		lp_error_set(err, LP_ERR_INTERNAL, "curl_slist_append() failed");
		return LP_HTTP_ATTEMPT_FAIL;
	}
	headers = h;

	free(state->data);
	memset(state, 0, sizeof(*state));
	curl_easy_setopt(ctx->curl, CURLOPT_URL, url);
	curl_easy_setopt(ctx->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(ctx->curl, CURLOPT_WRITEDATA, state);
	curl_easy_setopt(ctx->curl, CURLOPT_HEADERDATA, state);
	curl_easy_setopt(ctx->curl, CURLOPT_TIMEOUT_MS, (long)timeout_msecs);
	curl_easy_setopt(ctx->curl, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)timeout_msecs);

	start = lp_monotonic_msecs();
	ctx->http_requests++;
	code = curl_easy_perform(ctx->curl);
	curl_easy_setopt(ctx->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(headers);
	if (code == CURLE_OK)
		curl_easy_getinfo(ctx->curl, CURLINFO_RESPONSE_CODE, &status);
	lp_log(ctx, LP_LOG_DEBUG, "GET %s%s: %ld (%s) in %llu ms", url,
	       etag != NULL && etag[0] != '\0' ? " (If-None-Match)" : "",
	       status, curl_easy_strerror(code),
	       (unsigned long long)(lp_monotonic_msecs() - start));

	if (state->too_big || code == CURLE_FILESIZE_EXCEEDED) {
		lp_error_set(err, LP_ERR_PROTOCOL,
			     "GET %s: answer larger than %u bytes", url,
			     LP_HTTP_MAX_BODY);
		return LP_HTTP_ATTEMPT_FAIL;
	}
	if (code != CURLE_OK) {
		lp_error_set(err, LP_ERR_TEMP, "GET %s: %s", url,
			     curl_easy_strerror(code));
		return lp_curl_code_is_transient(code) ?
			LP_HTTP_ATTEMPT_RETRY : LP_HTTP_ATTEMPT_FAIL;
	}
	*status_r = status;
	if (status >= 500 && status <= 599) {
		lp_error_set(err, LP_ERR_TEMP, "GET %s: HTTP %ld", url, status);
		return LP_HTTP_ATTEMPT_RETRY;
	}
	if (status == 200 || status == 304 || status == 404 || status == 410 ||
	    lp_http_status_is_redirect(status))
		return LP_HTTP_ATTEMPT_DONE;
	lp_error_set(err, LP_ERR_PROTOCOL, "GET %s: unexpected HTTP %ld",
		     url, status);
	return LP_HTTP_ATTEMPT_FAIL;
}

/* Retries of one URL. 0 with *status_r, or -1. */
static int lp_http_get_retry(struct lp_context *ctx, const char *url,
			     const char *etag, struct lp_http_state *state,
			     long *status_r, struct lp_error *err)
{
	static const unsigned int backoff[LP_HTTP_RETRIES] = {
		LP_HTTP_RETRY1_MSECS, LP_HTTP_RETRY2_MSECS,
	};

	for (unsigned int attempt = 0;; attempt++) {
		switch (lp_http_attempt(ctx, url, etag, state, status_r, err)) {
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

		if (lp_http_get_retry(ctx, cur_url, etag, &state, &status,
				      err) < 0) {
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
