/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* OpenID 2.0 relying party for Ubuntu One (doc/DESIGN.md section 10).

   Sign-in sends the browser to sso_url with checkid_setup, asking for the
   SReg nickname (the Launchpad name).  The answer comes back as a GET to
   return_to; it is believed only if
     (1) it is a positive assertion (mode id_res, OpenID 2.0 namespace),
     (2) op_endpoint is sso_url,
     (3) return_to is the one we sent for this sign-in's state,
     (4) claimed_id and identity are URLs on the SSO's origin,
     (5) response_nonce is fresh and never seen before (TDB, until stale),
     (6) every field we rely on, the nickname included, is signed,
     (7) the nickname is a Launchpad name, and
     (8) the OP itself says is_valid:true to check_authentication
         (direct verification: no association, no shared secret here).
   The caller has already matched the state with the browser's cookie.
   URLs are compared as curl's URL API parses them (lp_url_equal(),
   lp_url_same_origin()), and the check_authentication POST goes out
   through liblaunchpad's HTTP client (lp_http_post_form()) in a worker
   process (web-worker.c): the page keeps serving while the SSO answers. */

#include "web-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEB_OPENID_NS "http://specs.openid.net/auth/2.0"
#define WEB_OPENID_IDENTIFIER_SELECT \
	"http://specs.openid.net/auth/2.0/identifier_select"
#define WEB_OPENID_SREG_NS "http://openid.net/extensions/sreg/1.1"
#define WEB_OPENID_SREG10_NS "http://openid.net/sreg/1.0"
#define WEB_OPENID_FIELDS_MAX 64
#define WEB_OPENID_NONCE_MAX 255
#define WEB_OPENID_ALIAS_MAX 32
/* "2005-05-15T17:11:51Z" */
#define WEB_OPENID_NONCE_TIME_LEN 20

struct web_openid_args {
	unsigned int count;
	const char *full_keys[WEB_OPENID_FIELDS_MAX];	/* "openid.mode" */
	const char *keys[WEB_OPENID_FIELDS_MAX];	/* without "openid." */
	const char *values[WEB_OPENID_FIELDS_MAX];
	bool bad;		/* duplicated or too many fields */
};

static void web_openid_return_to(const struct web_server *server,
				 const char *state, char *buf, size_t size)
{
	snprintf(buf, size, "%s/openid/return?state=%s",
		 server->config->web_url, state);
}

int web_openid_begin_url(struct web_server *server, const char *state,
			 char *url_r, size_t size)
{
	char return_to[WEB_URL_MAX], realm[WEB_URL_MAX];
	const char *const query[] = {
		"openid.ns", WEB_OPENID_NS,
		"openid.mode", "checkid_setup",
		"openid.claimed_id", WEB_OPENID_IDENTIFIER_SELECT,
		"openid.identity", WEB_OPENID_IDENTIFIER_SELECT,
		"openid.return_to", return_to,
		"openid.realm", realm,
		"openid.ns.sreg", WEB_OPENID_SREG_NS,
		"openid.sreg.required", "nickname",
		/* The address Ubuntu One vouches for: the one forwarding
		   may use without a confirmation. */
		"openid.sreg.optional", "email",
		NULL
	};

	web_openid_return_to(server, state, return_to, sizeof(return_to));
	snprintf(realm, sizeof(realm), "%s/", server->config->web_url);
	return lp_url_add_query(server->config->sso_url, query, url_r, size);
}

static enum MHD_Result web_openid_collect(void *cls, enum MHD_ValueKind kind,
					  const char *key, const char *value)
{
	struct web_openid_args *args = cls;

	(void)kind;
	if (strncmp(key, "openid.", strlen("openid.")) != 0)
		return MHD_YES;
	key += strlen("openid.");
	for (unsigned int i = 0; i < args->count; i++) {
		if (strcmp(args->keys[i], key) == 0)
			args->bad = true;
	}
	if (args->count >= WEB_OPENID_FIELDS_MAX) {
		args->bad = true;
		return MHD_YES;
	}
	args->full_keys[args->count] = key - strlen("openid.");
	args->keys[args->count] = key;
	args->values[args->count++] = value != NULL ? value : "";
	return MHD_YES;
}

static const char *web_openid_get(const struct web_openid_args *args,
				  const char *key)
{
	for (unsigned int i = 0; i < args->count; i++) {
		if (strcmp(args->keys[i], key) == 0)
			return args->values[i];
	}
	return NULL;
}

/* True if field (without "openid.") is in the comma list openid.signed. */
static bool web_openid_is_signed(const char *signed_list, const char *field)
{
	size_t len = strlen(field);
	const char *p = signed_list;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end == NULL ? strlen(p) : (size_t)(end - p);

		if (n == len && memcmp(p, field, len) == 0)
			return true;
		p = end == NULL ? NULL : end + 1;
	}
	return false;
}

/* The SReg alias ("sreg" for Ubuntu One) from openid.ns.<alias>. */
static bool web_openid_sreg_alias(const struct web_openid_args *args,
				  char alias_r[WEB_OPENID_ALIAS_MAX])
{
	for (unsigned int i = 0; i < args->count; i++) {
		const char *key = args->keys[i];

		if (strncmp(key, "ns.", 3) != 0 ||
		    (strcmp(args->values[i], WEB_OPENID_SREG_NS) != 0 &&
		     strcmp(args->values[i], WEB_OPENID_SREG10_NS) != 0) ||
		    strlen(key + 3) >= WEB_OPENID_ALIAS_MAX ||
		    strchr(key + 3, '.') != NULL || key[3] == '\0')
			continue;
		strcpy(alias_r, key + 3);
		return true;
	}
	return false;
}

/* response_nonce starts with a UTC time; returns it, or -1.  Parsed by
   hand: strptime() would skip spaces and accept one-digit fields. */
static time_t web_openid_nonce_time(const char *nonce)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	int v[6] = { 0 }, field = 0;
	struct tm tm = { 0 };

	if (strlen(nonce) < WEB_OPENID_NONCE_TIME_LEN ||
	    strlen(nonce) > WEB_OPENID_NONCE_MAX)
		return -1;
	for (unsigned int i = 0; i < WEB_OPENID_NONCE_TIME_LEN; i++) {
		if (shape[i] != 'd') {
			if (nonce[i] != shape[i])
				return -1;
			field++;
		} else if (nonce[i] < '0' || nonce[i] > '9') {
			return -1;
		} else {
			v[field] = v[field] * 10 + (nonce[i] - '0');
		}
	}
	if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 ||
	    v[4] > 59 || v[5] > 60)
		return -1;
	tm.tm_year = v[0] - 1900;
	tm.tm_mon = v[1] - 1;
	tm.tm_mday = v[2];
	tm.tm_hour = v[3];
	tm.tm_min = v[4];
	tm.tm_sec = v[5];
	return timegm(&tm);
}

/* Direct verification: the OP itself checks its signature, asked by a
   worker (the POST waits on the network). */
static void web_openid_check_authentication(struct web_request *req,
					    const struct web_openid_args *args,
					    web_resume_fn *resume)
{
	/* every field as received, but the mode */
	const char *pairs[2 * WEB_OPENID_FIELDS_MAX + 3];
	unsigned int n = 0;

	for (unsigned int i = 0; i < args->count; i++) {
		if (strcmp(args->keys[i], "mode") == 0)
			continue;
		pairs[n++] = args->full_keys[i];
		pairs[n++] = args->values[i];
	}
	pairs[n++] = "openid.mode";
	pairs[n++] = "check_authentication";
	pairs[n] = NULL;
	web_job_sso_post(req, pairs, resume);
}

static int web_openid_refuse(char *reason_r, size_t reason_size,
			     const char *reason)
{
	snprintf(reason_r, reason_size, "%s", reason);
	return 0;
}

int web_openid_verify(struct web_request *req, const char *state,
		      web_resume_fn *resume, char *reason_r,
		      size_t reason_size)
{
	static const char *const required_signed[] = {
		"op_endpoint", "return_to", "response_nonce", "assoc_handle",
		"claimed_id", "identity",
	};
	struct web_server *server = req->server;
	struct web_openid_args args = { .count = 0 };
	const char *mode, *signed_list, *nonce, *nickname;
	char return_to[WEB_URL_MAX], alias[WEB_OPENID_ALIAS_MAX];
	char field[WEB_OPENID_ALIAS_MAX + 16];
	struct lp_error err;
	time_t nonce_time, now = time(NULL);
	int ret;

	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND,
				  web_openid_collect, &args);
	if (args.bad)
		return web_openid_refuse(reason_r, reason_size,
					 "malformed answer (repeated fields)");
	mode = web_openid_get(&args, "mode");
	if (mode != NULL && strcmp(mode, "cancel") == 0)
		return web_openid_refuse(reason_r, reason_size,
					 "sign-in was cancelled");
	/* (1) */
	if (mode == NULL || strcmp(mode, "id_res") != 0 ||
	    web_openid_get(&args, "ns") == NULL ||
	    strcmp(web_openid_get(&args, "ns"), WEB_OPENID_NS) != 0)
		return web_openid_refuse(reason_r, reason_size,
					 "not an OpenID 2.0 positive assertion");
	/* (2) */
	if (!lp_url_equal(web_openid_get(&args, "op_endpoint"),
			  server->config->sso_url))
		return web_openid_refuse(reason_r, reason_size,
					 "the answer came from another sign-in "
					 "service (op_endpoint)");
	/* (3) */
	web_openid_return_to(server, state, return_to, sizeof(return_to));
	if (!lp_url_equal(web_openid_get(&args, "return_to"), return_to))
		return web_openid_refuse(reason_r, reason_size,
					 "the answer was meant for another "
					 "site (return_to)");
	/* (4) */
	if (!lp_url_same_origin(server->config->sso_url,
				web_openid_get(&args, "claimed_id")) ||
	    !lp_url_same_origin(server->config->sso_url,
				web_openid_get(&args, "identity")))
		return web_openid_refuse(reason_r, reason_size,
					 "the identity is not on the sign-in "
					 "service's host (claimed_id)");
	/* (6) */
	signed_list = web_openid_get(&args, "signed");
	if (signed_list == NULL || web_openid_get(&args, "sig") == NULL ||
	    web_openid_get(&args, "assoc_handle") == NULL)
		return web_openid_refuse(reason_r, reason_size,
					 "the answer is not signed");
	for (unsigned int i = 0; i < sizeof(required_signed) /
		     sizeof(required_signed[0]); i++) {
		if (!web_openid_is_signed(signed_list, required_signed[i]))
			return web_openid_refuse(reason_r, reason_size,
						 "the answer leaves a field "
						 "unsigned");
	}
	/* (7) */
	if (!web_openid_sreg_alias(&args, alias))
		return web_openid_refuse(reason_r, reason_size,
					 "the sign-in service sent no "
					 "nickname (Launchpad name)");
	snprintf(field, sizeof(field), "%s.nickname", alias);
	nickname = web_openid_get(&args, field);
	if (nickname == NULL || nickname[0] == '\0')
		return web_openid_refuse(reason_r, reason_size,
					 "the sign-in service sent no "
					 "nickname (Launchpad name)");
	if (!web_openid_is_signed(signed_list, field))
		return web_openid_refuse(reason_r, reason_size,
					 "the nickname is not signed");
	if (strlen(nickname) > LP_NAME_MAX || !lp_name_is_valid(nickname))
		return web_openid_refuse(reason_r, reason_size,
					 "the nickname is not a Launchpad "
					 "name");
	/* (5) */
	nonce = web_openid_get(&args, "response_nonce");
	nonce_time = nonce == NULL ? -1 : web_openid_nonce_time(nonce);
	if (nonce_time < 0)
		return web_openid_refuse(reason_r, reason_size,
					 "malformed response_nonce");
	if (nonce_time < now - WEB_NONCE_SKEW_SECS ||
	    nonce_time > now + WEB_NONCE_SKEW_SECS)
		return web_openid_refuse(reason_r, reason_size,
					 "the answer is too old (or the "
					 "clocks differ)");
	ret = lp_cache_nonce_use(server->lp, nonce,
				 nonce_time + 2 * WEB_NONCE_SKEW_SECS, &err);
	if (ret < 0) {
		web_log(LP_LOG_ERROR, "nonce store: %s", err.text);
		snprintf(reason_r, reason_size, "internal error");
		return -1;
	}
	if (ret == 0)
		return web_openid_refuse(reason_r, reason_size,
					 "this answer was already used "
					 "(replayed response_nonce)");
	/* (8), answered to web_openid_verify_end() */
	web_openid_check_authentication(req, &args, resume);
	return 1;
}

int web_openid_verify_end(struct web_request *req,
			  char name_r[LP_NAME_MAX + 1],
			  char email_r[LP_FORWARD_ADDRESS_MAX + 1],
			  char *reason_r, size_t reason_size)
{
	const struct web_job *job = &req->job;
	struct web_openid_args args = { .count = 0 };
	char alias[WEB_OPENID_ALIAS_MAX], field[WEB_OPENID_ALIAS_MAX + 16];
	const char *signed_list, *nickname, *email;

	/* (8) */
	if (job->sso_ret < 0) {
		snprintf(reason_r, reason_size,
			 "the sign-in service could not be reached (%s)",
			 job->sso_error);
		return -1;
	}
	if (job->sso_status != 200) {
		snprintf(reason_r, reason_size,
			 "the sign-in service answered HTTP %ld",
			 job->sso_status);
		return job->sso_status >= 500 ? -1 : 0;
	}
	if (!job->sso_valid)
		return web_openid_refuse(reason_r, reason_size,
					 "the sign-in service did not confirm "
					 "the answer (bad signature)");
	/* The query is the one web_openid_verify() checked: the
	   connection keeps it. */
	MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND,
				  web_openid_collect, &args);
	signed_list = web_openid_get(&args, "signed");
	if (args.bad || signed_list == NULL ||
	    !web_openid_sreg_alias(&args, alias))
		return web_openid_refuse(reason_r, reason_size,
					 "malformed answer");
	snprintf(field, sizeof(field), "%s.nickname", alias);
	nickname = web_openid_get(&args, field);
	if (nickname == NULL || strlen(nickname) > LP_NAME_MAX ||
	    !lp_name_is_valid(nickname))
		return web_openid_refuse(reason_r, reason_size,
					 "malformed answer");
	snprintf(name_r, LP_NAME_MAX + 1, "%s", nickname);
	/* Optional, and only if signed: a forwarding target that needs no
	   confirmation link. */
	email_r[0] = '\0';
	snprintf(field, sizeof(field), "%s.email", alias);
	email = web_openid_get(&args, field);
	if (email != NULL && web_openid_is_signed(signed_list, field) &&
	    lp_forward_address_is_valid(email))
		snprintf(email_r, LP_FORWARD_ADDRESS_MAX + 1, "%s", email);
	return 1;
}
