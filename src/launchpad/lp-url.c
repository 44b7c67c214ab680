/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Every URL decision, made on URLs as curl's URL API parses them (the
   parser of the client that then uses them): the configured base URLs,
   what may be asked under api_url, the web page's origins and OpenID's
   return_to and identities.  Nothing here splits a URL by hand. */

#include "launchpad-private.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The parts compared between two URLs. */
enum lp_url_field {
	LP_URL_SCHEME,
	LP_URL_HOST,
	LP_URL_PORT,		/* the scheme's default when none is given */
	LP_URL_PATH,
	LP_URL_QUERY,		/* NULL when there is none */
	LP_URL_FIELDS
};

struct lp_url {
	CURLU *u;
	char *part[LP_URL_FIELDS];
	bool userinfo;		/* user, password or login options given */
	bool fragment;
};

static char *lp_url_get(CURLU *u, CURLUPart part, unsigned int flags)
{
	char *value = NULL;

	if (curl_url_get(u, part, &value, flags) != CURLUE_OK)
		return NULL;
	return value;
}

static bool lp_url_has(CURLU *u, CURLUPart part)
{
	char *value = lp_url_get(u, part, 0);

	curl_free(value);
	return value != NULL;
}

static void lp_url_free(struct lp_url *url)
{
	for (unsigned int i = 0; i < LP_URL_FIELDS; i++)
		curl_free(url->part[i]);
	curl_url_cleanup(url->u);
	memset(url, 0, sizeof(*url));
}

/* Parses text (absolute, http or https).  0, or -1 with the CURLUcode
   (CURLUE_OUT_OF_MEMORY when curl_url() fails). */
static int lp_url_parse(const char *text, struct lp_url *url_r,
			CURLUcode *rc_r)
{
	CURLUcode rc = CURLUE_OUT_OF_MEMORY;

	memset(url_r, 0, sizeof(*url_r));
	if ((url_r->u = curl_url()) == NULL ||
	    (rc = curl_url_set(url_r->u, CURLUPART_URL, text, 0)) != CURLUE_OK) {
		if (rc_r != NULL)
			*rc_r = rc;
		lp_url_free(url_r);
		return -1;
	}
	url_r->part[LP_URL_SCHEME] = lp_url_get(url_r->u, CURLUPART_SCHEME, 0);
	url_r->part[LP_URL_HOST] = lp_url_get(url_r->u, CURLUPART_HOST, 0);
	url_r->part[LP_URL_PORT] = lp_url_get(url_r->u, CURLUPART_PORT,
					      CURLU_DEFAULT_PORT);
	url_r->part[LP_URL_PATH] = lp_url_get(url_r->u, CURLUPART_PATH, 0);
	url_r->part[LP_URL_QUERY] = lp_url_get(url_r->u, CURLUPART_QUERY, 0);
	url_r->userinfo = lp_url_has(url_r->u, CURLUPART_USER) ||
		lp_url_has(url_r->u, CURLUPART_PASSWORD) ||
		lp_url_has(url_r->u, CURLUPART_OPTIONS);
	url_r->fragment = lp_url_has(url_r->u, CURLUPART_FRAGMENT);
	for (unsigned int i = 0; i < LP_URL_QUERY; i++) {
		if (url_r->part[i] == NULL) {
			if (rc_r != NULL)
				*rc_r = CURLUE_OUT_OF_MEMORY;
			lp_url_free(url_r);
			return -1;
		}
	}
	if (strcasecmp(url_r->part[LP_URL_SCHEME], "http") != 0 &&
	    strcasecmp(url_r->part[LP_URL_SCHEME], "https") != 0) {
		if (rc_r != NULL)
			*rc_r = CURLUE_UNSUPPORTED_SCHEME;
		lp_url_free(url_r);
		return -1;
	}
	return 0;
}

/* Parses both (NULL is no URL).  TRUE if both parsed: free both. */
static bool lp_url_parse_two(const char *a, const char *b, struct lp_url *ua,
			     struct lp_url *ub)
{
	if (a == NULL || b == NULL || lp_url_parse(a, ua, NULL) < 0)
		return false;
	if (lp_url_parse(b, ub, NULL) < 0) {
		lp_url_free(ua);
		return false;
	}
	return true;
}

/* Same scheme, host and port (scheme and host without case). */
static bool lp_url_same_origin_parts(const struct lp_url *a,
				     const struct lp_url *b)
{
	return strcasecmp(a->part[LP_URL_SCHEME],
			  b->part[LP_URL_SCHEME]) == 0 &&
		strcasecmp(a->part[LP_URL_HOST], b->part[LP_URL_HOST]) == 0 &&
		strcmp(a->part[LP_URL_PORT], b->part[LP_URL_PORT]) == 0;
}

bool lp_url_is_under(const char *api_url, const char *url)
{
	struct lp_url base, cand;
	size_t base_len;
	bool ok = false;

	if (!lp_url_parse_two(api_url, url, &base, &cand))
		return false;
	/* user info in a link is never Launchpad's and would change the
	   credentials curl sends */
	if (!cand.userinfo && lp_url_same_origin_parts(&base, &cand)) {
		/* The path must continue api_url's path at a "/": "/1.0evil"
		   is not under "/1.0".  curl has removed dot segments. */
		const char *bpath = base.part[LP_URL_PATH];
		const char *cpath = cand.part[LP_URL_PATH];

		base_len = strlen(bpath);
		while (base_len > 0 && bpath[base_len - 1] == '/')
			base_len--;
		ok = strncmp(cpath, bpath, base_len) == 0 &&
			cpath[base_len] == '/';
	}
	lp_url_free(&base);
	lp_url_free(&cand);
	return ok;
}

bool lp_url_same_origin(const char *base, const char *url)
{
	struct lp_url b, c;
	bool ok;

	if (!lp_url_parse_two(base, url, &b, &c))
		return false;
	ok = !c.userinfo && lp_url_same_origin_parts(&b, &c);
	lp_url_free(&b);
	lp_url_free(&c);
	return ok;
}

bool lp_url_equal(const char *a, const char *b)
{
	struct lp_url ua, ub;
	bool ok;

	if (!lp_url_parse_two(a, b, &ua, &ub))
		return false;
	ok = !ua.userinfo && !ub.userinfo && !ua.fragment && !ub.fragment &&
		lp_url_same_origin_parts(&ua, &ub) &&
		strcmp(ua.part[LP_URL_PATH], ub.part[LP_URL_PATH]) == 0 &&
		(ua.part[LP_URL_QUERY] == NULL) ==
		(ub.part[LP_URL_QUERY] == NULL) &&
		(ua.part[LP_URL_QUERY] == NULL ||
		 strcmp(ua.part[LP_URL_QUERY], ub.part[LP_URL_QUERY]) == 0);
	lp_url_free(&ua);
	lp_url_free(&ub);
	return ok;
}

static int lp_url_copy(char *buf, size_t size, const char *value)
{
	if (value == NULL || strlen(value) >= size)
		return -1;
	memcpy(buf, value, strlen(value) + 1);
	return 0;
}

int lp_url_origin(const char *url, char *origin_r, size_t size)
{
	struct lp_url u;
	char *port;
	int ret;

	if (lp_url_parse(url, &u, NULL) < 0)
		return -1;
	/* the port only as written: what a browser sends in Origin */
	port = lp_url_get(u.u, CURLUPART_PORT, 0);
	ret = snprintf(origin_r, size, "%s://%s%s%s",
		       u.part[LP_URL_SCHEME], u.part[LP_URL_HOST],
		       port != NULL ? ":" : "", port != NULL ? port : "");
	curl_free(port);
	lp_url_free(&u);
	return ret < 0 || (size_t)ret >= size ? -1 : 0;
}

int lp_url_host(const char *url, char *host_r, size_t size)
{
	struct lp_url u;
	const char *host;
	size_t len;
	int ret = -1;

	if (lp_url_parse(url, &u, NULL) < 0)
		return -1;
	host = u.part[LP_URL_HOST];
	len = strlen(host);
	if (host[0] == '[' && len >= 2 && host[len - 1] == ']') {
		/* an IPv6 address without its brackets */
		if (len - 2 < size) {
			memcpy(host_r, host + 1, len - 2);
			host_r[len - 2] = '\0';
			ret = 0;
		}
	} else {
		ret = lp_url_copy(host_r, size, host);
	}
	lp_url_free(&u);
	return ret;
}

int lp_url_add_query(const char *url, const char *const *pairs,
		     char *url_r, size_t size)
{
	CURLU *u = curl_url();
	char *param, *out = NULL;
	int ret = -1;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	for (unsigned int i = 0; pairs[i] != NULL; i += 2) {
		size_t len = strlen(pairs[i]) + strlen(pairs[i + 1]) + 2;
		CURLUcode rc;

		/* "name=value": URLENCODE escapes all but the first '=' */
		if ((param = malloc(len)) == NULL)
			goto out;
		snprintf(param, len, "%s=%s", pairs[i], pairs[i + 1]);
		rc = curl_url_set(u, CURLUPART_QUERY, param,
				  CURLU_APPENDQUERY | CURLU_URLENCODE);
		free(param);
		if (rc != CURLUE_OK)
			goto out;
	}
	if ((out = lp_url_get(u, CURLUPART_URL, 0)) != NULL)
		ret = lp_url_copy(url_r, size, out);
out:
	curl_free(out);
	curl_url_cleanup(u);
	return ret;
}

/* TRUE for 127.0.0.0/8 (dotted quad, as inet_pton() reads it: no octal,
   no short forms), localhost and [::1]. */
static bool lp_url_host_is_loopback(const char *host)
{
	struct in_addr v4;
	struct in6_addr v6;
	char inner[INET6_ADDRSTRLEN];
	size_t len = strlen(host);

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	if (host[0] != '[' || len < 2 || len - 2 >= sizeof(inner))
		return false;
	memcpy(inner, host + 1, len - 2);
	inner[len - 2] = '\0';
	return inet_pton(AF_INET6, inner, &v6) == 1 &&
		memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0;
}

static bool lp_url_host_is_valid(const char *host)
{
	if (host[0] == '[')
		return true;	/* curl checked the IPv6 address */
	if (host[0] == '\0')
		return false;
	for (const char *p = host; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
			return false;
	}
	return true;
}

/* url without its trailing slashes equals text without its own: curl
   reads text as written (no dot segment resolved, no IPv4 short form
   widened, no empty port or authority dropped). */
static bool lp_url_as_written(CURLU *u, const char *text)
{
	char *out = lp_url_get(u, CURLUPART_URL, 0);
	size_t out_len, text_len = strlen(text);
	bool ok;

	if (out == NULL)
		return false;
	out_len = strlen(out);
	while (out_len > 0 && out[out_len - 1] == '/')
		out_len--;
	while (text_len > 0 && text[text_len - 1] == '/')
		text_len--;
	ok = out_len == text_len && memcmp(out, text, text_len) == 0;
	curl_free(out);
	return ok;
}

int lp_url_check_base(const char *name, const char *url, char *what,
		      size_t what_size)
{
	struct lp_url u;
	CURLUcode rc = CURLUE_OK;
	const char *problem = NULL;
	size_t keep;

	for (const char *p = url; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			snprintf(what, what_size,
				 "%s must be printable ASCII without spaces",
				 name);
			return -1;
		}
	}
	if (lp_url_parse(url, &u, &rc) < 0) {
		switch (rc) {
		case CURLUE_BAD_SCHEME:
		case CURLUE_UNSUPPORTED_SCHEME:
			snprintf(what, what_size, "%s must start with https://",
				 name);
			break;
		case CURLUE_BAD_PORT_NUMBER:
			snprintf(what, what_size, "%s has an invalid port",
				 name);
			break;
		case CURLUE_BAD_IPV6:
			snprintf(what, what_size,
				 "%s has an invalid [IPv6] host", name);
			break;
		case CURLUE_NO_HOST:
			snprintf(what, what_size,
				 "%s has an invalid or empty host", name);
			break;
		default:
			snprintf(what, what_size, "%s is not a URL: %s", name,
				 curl_url_strerror(rc));
			break;
		}
		return -1;
	}
	if (u.userinfo)
		problem = "must not contain user credentials";
	else if (u.part[LP_URL_QUERY] != NULL || u.fragment ||
		 strpbrk(url, "?#") != NULL)
		/* Paths are appended to it: a query would swallow them. */
		problem = "must not contain a query or fragment";
	else if (!lp_url_host_is_valid(u.part[LP_URL_HOST]))
		problem = "has an invalid or empty host";
	else if (strcmp(u.part[LP_URL_PORT], "0") == 0)
		problem = "has an invalid port";
	else if (strncmp(url, "https://", strlen("https://")) != 0 &&
		 strncmp(url, "http://", strlen("http://")) != 0)
		/* curl reads "HTTPS:" too; the file says what it means */
		problem = "must start with https://";
	else if (!lp_url_as_written(u.u, url))
		problem = "is not written the way it is read (empty port, "
			"dot segments, shortened or escaped host?)";
	else if (strcmp(u.part[LP_URL_SCHEME], "http") == 0 &&
		 !lp_url_host_is_loopback(u.part[LP_URL_HOST]))
		/* TLS verification is always on; plain http exists only for
		   the loopback fake server of the tests. */
		problem = "must use https:// (plain http:// is allowed only "
			"for 127.0.0.0/8, localhost or [::1])";
	lp_url_free(&u);
	if (problem != NULL) {
		snprintf(what, what_size, "%s %s", name, problem);
		return -1;
	}
	keep = strlen(url);
	while (keep > 0 && url[keep - 1] == '/')
		keep--;
	return (int)keep;
}

int lp_url_check_smtp(const char *name, const char *url, char *what,
		      size_t what_size)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *path = NULL;
	const char *problem = NULL;

	for (const char *p = url; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			snprintf(what, what_size,
				 "%s must be printable ASCII without spaces",
				 name);
			curl_url_cleanup(u);
			return -1;
		}
	}
	if (u == NULL ||
	    curl_url_set(u, CURLUPART_URL, url,
			 CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
	    (scheme = lp_url_get(u, CURLUPART_SCHEME, 0)) == NULL ||
	    (host = lp_url_get(u, CURLUPART_HOST, 0)) == NULL)
		problem = "is not a URL";
	else if (strncmp(url, "smtp://", strlen("smtp://")) != 0 &&
		 strncmp(url, "smtps://", strlen("smtps://")) != 0)
		problem = "must start with smtp:// or smtps://";
	else if (lp_url_has(u, CURLUPART_USER) ||
		 lp_url_has(u, CURLUPART_PASSWORD) ||
		 lp_url_has(u, CURLUPART_OPTIONS))
		problem = "must not contain user credentials";
	else if (lp_url_has(u, CURLUPART_QUERY) ||
		 lp_url_has(u, CURLUPART_FRAGMENT) ||
		 strpbrk(url, "?#") != NULL)
		problem = "must not contain a query or fragment";
	else if ((path = lp_url_get(u, CURLUPART_PATH, 0)) == NULL ||
		 (strcmp(path, "/") != 0 && strcmp(path, "") != 0))
		/* curl would take a path as the EHLO name */
		problem = "must not contain a path";
	else if (!lp_url_host_is_valid(host))
		problem = "has an invalid or empty host";
	else if (strcmp(scheme, "smtp") == 0 &&
		 !lp_url_host_is_loopback(host))
		/* Plain SMTP only to the MTA on this host: anything else
		   must be smtps://, verified. */
		problem = "must use smtps:// (plain smtp:// is allowed only "
			"for 127.0.0.0/8, localhost or [::1])";
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	curl_url_cleanup(u);
	if (problem != NULL) {
		snprintf(what, what_size, "%s %s", name, problem);
		return -1;
	}
	return 0;
}
