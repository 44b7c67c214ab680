/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Confirming a forwarding address by a link mailed to it (issue 16): the
   tokens, their counters and the mail, in the web daemon's web.tdb.

   A token is 32 random bytes (libsodium), shown only in the mail's link;
   the record's key is the SHA-256 of its hex, so neither the key nor the
   record can be turned back into a working link.  Check-and-delete runs
   under the record's chainlock, so a token works once even if two
   requests race.  The counters are lists of send times per user and per
   address, trimmed to their window on every use. */

#include "launchpad-private.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define LP_FWDCONFIRM_KEY_MAX \
	(sizeof(LP_KEY_FWDCONFIRM) + crypto_hash_sha256_BYTES * 2 + 1)
#define LP_FWDMAIL_KEY_MAX \
	(sizeof(LP_KEY_FWDMAIL_ADDR) + LP_FORWARD_ADDRESS_MAX + 1)
#define LP_FWDCONFIRM_MESSAGE_MAX 4096

bool lp_fwdconfirm_token_is_valid(const char *token)
{
	size_t i;

	for (i = 0; token[i] != '\0'; i++) {
		if (!((token[i] >= '0' && token[i] <= '9') ||
		      (token[i] >= 'a' && token[i] <= 'f')))
			return false;
	}
	return i == LP_FWDCONFIRM_TOKEN_HEX;
}

static void lp_fwdconfirm_key(const char *token,
			      char key_r[LP_FWDCONFIRM_KEY_MAX])
{
	unsigned char hash[crypto_hash_sha256_BYTES];
	char hex[crypto_hash_sha256_BYTES * 2 + 1];

	crypto_hash_sha256(hash, (const unsigned char *)token, strlen(token));
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	snprintf(key_r, LP_FWDCONFIRM_KEY_MAX, LP_KEY_FWDCONFIRM "%s", hex);
}

int lp_fwdconfirm_create(struct lp_context *ctx,
			 const struct lp_fwdconfirm *c,
			 char token_r[LP_FWDCONFIRM_TOKEN_HEX + 1],
			 struct lp_error *err)
{
	unsigned char raw[LP_FWDCONFIRM_TOKEN_BYTES];
	char key[LP_FWDCONFIRM_KEY_MAX];

	if (!lp_forward_address_is_valid(c->fwd.address) ||
	    !lp_login_is_canonical(ctx->config, c->user)) {
		lp_error_set(err, LP_ERR_INTERNAL, "not a user and address "
			     "to confirm");
		return -1;
	}
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(token_r, LP_FWDCONFIRM_TOKEN_HEX + 1, raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
	lp_fwdconfirm_key(token_r, key);
	if (lp_cache_put_new(ctx, key, LP_KIND_FWDCONFIRM,
			     json_pack("{s:s, s:s, s:b, s:I}",
				       "user", c->user,
				       "address", c->fwd.address,
				       "keep", c->fwd.keep ? 1 : 0,
				       "created", (json_int_t)ctx->now()),
			     err) < 0) {
		sodium_memzero(token_r, LP_FWDCONFIRM_TOKEN_HEX + 1);
		return -1;
	}
	return 0;
}

/* The record at key: true with *c_r if it is complete and valid. */
static bool lp_fwdconfirm_read(struct lp_context *ctx, const char *key,
			       struct lp_fwdconfirm *c_r)
{
	json_t *obj;
	bool ok;

	memset(c_r, 0, sizeof(*c_r));
	if (lp_cache_get(ctx, key, LP_KIND_FWDCONFIRM, &obj) <= 0)
		return false;
	ok = lp_json_text(obj, "user", c_r->user, sizeof(c_r->user)) &&
		lp_json_text(obj, "address", c_r->fwd.address,
			     sizeof(c_r->fwd.address)) &&
		lp_json_bool(obj, "keep", &c_r->fwd.keep) &&
		lp_json_time(obj, "created", &c_r->created) &&
		lp_forward_address_is_valid(c_r->fwd.address);
	if (!ok)
		lp_cache_bad_field(ctx, key, "user/address/keep/created");
	json_decref(obj);
	return ok;
}

static bool lp_fwdconfirm_expired(struct lp_context *ctx,
				  const struct lp_fwdconfirm *c)
{
	time_t now = ctx->now();

	/* A record from the future (clock stepped back) is as old as it
	   can be: refusing it costs a new link, trusting it could stretch
	   its life without bound. */
	return c->created > now ||
		now - c->created >= (time_t)ctx->config->web_confirm_ttl;
}

int lp_fwdconfirm_check(struct lp_context *ctx, const char *token,
			const char *name, bool take,
			struct lp_fwdconfirm *c_r,
			enum lp_fwdconfirm_result *result_r,
			struct lp_error *err)
{
	char key[LP_FWDCONFIRM_KEY_MAX], owner[LP_NAME_MAX + 1];
	int ret = 0;

	memset(c_r, 0, sizeof(*c_r));
	*result_r = LP_FWDCONFIRM_UNKNOWN;
	if (!lp_fwdconfirm_token_is_valid(token))
		return 0;
	lp_fwdconfirm_key(token, key);
	if (lp_cache_lock(ctx, key, err) < 0)
		return -1;
	if (!lp_fwdconfirm_read(ctx, key, c_r)) {
		/* unreadable: gone for good */
		if (take && lp_cache_exists(ctx->tdb, key))
			ret = lp_cache_delete(ctx, key, err) < 0 ? -1 : 0;
	} else if (lp_fwdconfirm_expired(ctx, c_r)) {
		/* a look changes nothing; pruning drops it anyway */
		*result_r = LP_FWDCONFIRM_EXPIRED;
		if (take)
			ret = lp_cache_delete(ctx, key, err) < 0 ? -1 : 0;
	} else if (!lp_name_of_user(c_r->user, owner) ||
		   strcmp(owner, name) != 0) {
		/* Left in place: the right user may still follow it. */
		*result_r = LP_FWDCONFIRM_OTHER_USER;
	} else {
		*result_r = LP_FWDCONFIRM_OK;
		if (take && lp_cache_delete(ctx, key, err) < 0) {
			*result_r = LP_FWDCONFIRM_UNKNOWN;
			ret = -1;
		}
	}
	lp_cache_unlock(ctx, key);
	if (*result_r != LP_FWDCONFIRM_OK)
		memset(c_r, 0, sizeof(*c_r));
	return ret;
}

/* ---- counters ---- */

/* The send times of key still inside window, into a new array. */
static json_t *lp_fwdmail_recent(struct lp_context *ctx, const char *key,
				 unsigned int window, time_t now)
{
	json_t *obj, *times, *recent = json_array();
	size_t i;
	json_t *t;

	if (recent == NULL)
		return NULL;
	if (lp_cache_get(ctx, key, LP_KIND_FWDMAIL, &obj) <= 0)
		return recent;
	times = json_object_get(obj, "times");
	json_array_foreach(times, i, t) {
		json_int_t when;

		if (!json_is_integer(t))
			continue;
		when = json_integer_value(t);
		/* a time ahead of the clock still counts: the window must
		   not open early because the clock went back */
		if (when > (json_int_t)now - (json_int_t)window)
			json_array_append_new(recent, json_integer(when));
	}
	json_decref(obj);
	return recent;
}

static void lp_fwdmail_addr_key(const char *address,
				char key_r[LP_FWDMAIL_KEY_MAX])
{
	size_t plen = strlen(LP_KEY_FWDMAIL_ADDR), i;

	snprintf(key_r, LP_FWDMAIL_KEY_MAX, LP_KEY_FWDMAIL_ADDR "%s",
		 address);
	/* One mailbox however its domain (or local part) is cased. */
	for (i = plen; key_r[i] != '\0'; i++)
		key_r[i] = (char)tolower((unsigned char)key_r[i]);
}

int lp_fwdconfirm_limit_take(struct lp_context *ctx, const char *user,
			     const char *address,
			     enum lp_fwdconfirm_limit *limit_r,
			     struct lp_error *err)
{
	char ukey[sizeof(LP_KEY_FWDMAIL_USER) + LP_USER_MAX + 1];
	char akey[LP_FWDMAIL_KEY_MAX];
	json_t *utimes = NULL, *atimes = NULL;
	time_t now = ctx->now();
	int ret = -1;

	*limit_r = LP_FWDCONFIRM_LIMIT_OK;
	if (strlen(address) > LP_FORWARD_ADDRESS_MAX ||
	    strlen(user) > LP_USER_MAX) {
		lp_error_set(err, LP_ERR_INTERNAL, "user or address too long");
		return -1;
	}
	snprintf(ukey, sizeof(ukey), LP_KEY_FWDMAIL_USER "%s", user);
	lp_fwdmail_addr_key(address, akey);
	/* user before address, always: no two requests wait on each
	   other's lock */
	if (lp_cache_lock(ctx, ukey, err) < 0)
		return -1;
	if (lp_cache_lock(ctx, akey, err) < 0) {
		lp_cache_unlock(ctx, ukey);
		return -1;
	}
	utimes = lp_fwdmail_recent(ctx, ukey, LP_FWDCONFIRM_USER_SECS, now);
	atimes = lp_fwdmail_recent(ctx, akey, LP_FWDCONFIRM_ADDRESS_SECS,
				   now);
	if (utimes == NULL || atimes == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		goto out;
	}
	if (json_array_size(utimes) >= LP_FWDCONFIRM_USER_MAILS) {
		*limit_r = LP_FWDCONFIRM_LIMIT_USER;
		ret = 0;
		goto out;
	}
	if (json_array_size(atimes) >= LP_FWDCONFIRM_ADDRESS_MAILS) {
		*limit_r = LP_FWDCONFIRM_LIMIT_ADDRESS;
		ret = 0;
		goto out;
	}
	if (json_array_append_new(utimes, json_integer(now)) < 0 ||
	    json_array_append_new(atimes, json_integer(now)) < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		goto out;
	}
	if (lp_cache_put_new(ctx, ukey, LP_KIND_FWDMAIL,
			     json_pack("{s:O}", "times", utimes), err) < 0 ||
	    lp_cache_put_new(ctx, akey, LP_KIND_FWDMAIL,
			     json_pack("{s:O}", "times", atimes), err) < 0)
		goto out;
	ret = 0;
out:
	json_decref(utimes);
	json_decref(atimes);
	lp_cache_unlock(ctx, akey);
	lp_cache_unlock(ctx, ukey);
	return ret;
}

/* ---- pruning ---- */

static bool lp_fwdconfirm_live(struct lp_context *ctx, const char *key)
{
	struct lp_fwdconfirm c;

	return lp_fwdconfirm_read(ctx, key, &c) &&
		!lp_fwdconfirm_expired(ctx, &c);
}

static bool lp_fwdmail_live(struct lp_context *ctx, const char *key)
{
	bool user = strncmp(key, LP_KEY_FWDMAIL_USER,
			    strlen(LP_KEY_FWDMAIL_USER)) == 0;
	json_t *recent = lp_fwdmail_recent(ctx, key, user ?
					   LP_FWDCONFIRM_USER_SECS :
					   LP_FWDCONFIRM_ADDRESS_SECS,
					   ctx->now());
	bool live = recent == NULL || json_array_size(recent) > 0;

	json_decref(recent);
	return live;
}

int lp_fwdconfirm_prune(struct lp_context *ctx, struct lp_error *err)
{
	int a, b;

	a = lp_cache_delete_prefix_unless(ctx, LP_KEY_FWDCONFIRM,
					  lp_fwdconfirm_live, err);
	if (a < 0)
		return -1;
	b = lp_cache_delete_prefix_unless(ctx, LP_KEY_FWDMAIL,
					  lp_fwdmail_live, err);
	return b < 0 ? -1 : a + b;
}

/* ---- the mail ---- */

/* Nothing but printable ASCII (no CR, LF, NUL or other control). */
static bool lp_fwdconfirm_header_safe(const char *value)
{
	for (const char *p = value; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			return false;
	}
	return true;
}

char *lp_fwdconfirm_message(const struct lp_config *config,
			    const struct lp_fwdconfirm *c, const char *token,
			    time_t now)
{
	unsigned char id_raw[16];
	char id[sizeof(id_raw) * 2 + 1], date[64], *msg;
	const char *from = config->web_smtp_from, *from_domain;
	unsigned int hours = config->web_confirm_ttl / 3600;
	struct tm tm;
	int len;

	if (from == NULL || config->web_url == NULL ||
	    !lp_forward_address_is_valid(from) ||
	    !lp_forward_address_is_valid(c->fwd.address) ||
	    !lp_fwdconfirm_token_is_valid(token) ||
	    !lp_fwdconfirm_header_safe(c->user) ||
	    strchr(c->user, '@') == NULL ||
	    !lp_fwdconfirm_header_safe(config->web_url) ||
	    gmtime_r(&now, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000",
		     &tm) == 0)
		return NULL;
	from_domain = strrchr(from, '@') + 1;
	randombytes_buf(id_raw, sizeof(id_raw));
	sodium_bin2hex(id, sizeof(id), id_raw, sizeof(id_raw));
	msg = malloc(LP_FWDCONFIRM_MESSAGE_MAX);
	if (msg == NULL)
		return NULL;
	len = snprintf(msg, LP_FWDCONFIRM_MESSAGE_MAX,
		       "From: %s\r\n"
		       "To: %s\r\n"
		       "Subject: Confirm forwarding of %s to this address\r\n"
		       "Date: %s\r\n"
		       "Message-ID: <fwdconfirm.%s@%s>\r\n"
		       "Auto-Submitted: auto-generated\r\n"
		       "MIME-Version: 1.0\r\n"
		       "Content-Type: text/plain; charset=us-ascii\r\n"
		       "Content-Transfer-Encoding: 7bit\r\n"
		       "\r\n"
		       "Someone signed in as %s asked that its mail be\r\n"
		       "forwarded to %s (%s).\r\n"
		       "\r\n"
		       "If that was you, open this link while signed in as\r\n"
		       "that user and press the button on the page:\r\n"
		       "\r\n"
		       "  %s/forward/confirm?t=%s\r\n"
		       "\r\n"
		       "The link works once, for %u hour%s. If you did not\r\n"
		       "ask for this, ignore this mail: nothing is forwarded\r\n"
		       "until the link is used.\r\n",
		       from, c->fwd.address, c->user, date, id, from_domain,
		       c->user, c->fwd.address,
		       c->fwd.keep ? "keeping a copy there" :
		       "without keeping a copy there",
		       config->web_url, token, hours, hours == 1 ? "" : "s");
	if (len < 0 || len >= LP_FWDCONFIRM_MESSAGE_MAX) {
		sodium_memzero(msg, LP_FWDCONFIRM_MESSAGE_MAX);
		free(msg);
		return NULL;
	}
	return msg;
}

struct lp_mail_reader {
	const char *data;
	size_t left;
};

static size_t lp_mail_read(char *buf, size_t size, size_t nmemb,
			   void *context)
{
	struct lp_mail_reader *r = context;
	size_t len = size * nmemb;

	if (len > r->left)
		len = r->left;
	memcpy(buf, r->data, len);
	r->data += len;
	r->left -= len;
	return len;
}

int lp_mail_send(const struct lp_config *config, const char *rcpt,
		 const char *message, struct lp_error *err)
{
	struct lp_mail_reader reader = {
		.data = message,
		.left = strlen(message),
	};
	char from[LP_FORWARD_ADDRESS_MAX + 3], to[LP_FORWARD_ADDRESS_MAX + 3];
	struct curl_slist *rcpts = NULL;
	CURLcode rc = CURLE_OK;
	CURL *curl;

	if (config->web_smtp_url == NULL || config->web_smtp_from == NULL ||
	    !lp_forward_address_is_valid(config->web_smtp_from) ||
	    !lp_forward_address_is_valid(rcpt)) {
		lp_error_set(err, LP_ERR_CONFIG, "no web_smtp_url, "
			     "web_smtp_from or recipient to send to");
		return -1;
	}
	snprintf(from, sizeof(from), "<%s>", config->web_smtp_from);
	snprintf(to, sizeof(to), "<%s>", rcpt);
	curl = curl_easy_init();
	if (curl == NULL || (rcpts = curl_slist_append(NULL, to)) == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		curl_easy_cleanup(curl);
		return -1;
	}
#define LP_SETOPT(opt, val) \
	if (rc == CURLE_OK) rc = curl_easy_setopt(curl, opt, val)
	LP_SETOPT(CURLOPT_NOSIGNAL, 1L);
	LP_SETOPT(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	LP_SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	LP_SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	LP_SETOPT(CURLOPT_URL, config->web_smtp_url);
	LP_SETOPT(CURLOPT_MAIL_FROM, from);
	LP_SETOPT(CURLOPT_MAIL_RCPT, rcpts);
	LP_SETOPT(CURLOPT_READFUNCTION, lp_mail_read);
	LP_SETOPT(CURLOPT_READDATA, &reader);
	LP_SETOPT(CURLOPT_UPLOAD, 1L);
	LP_SETOPT(CURLOPT_CONNECTTIMEOUT, (long)config->http_timeout);
	LP_SETOPT(CURLOPT_TIMEOUT, (long)config->http_timeout);
#undef LP_SETOPT
	if (rc == CURLE_OK)
		rc = curl_easy_perform(curl);
	curl_slist_free_all(rcpts);
	curl_easy_cleanup(curl);
	if (rc != CURLE_OK) {
		lp_error_set(err, LP_ERR_TEMP, "sending to %s through %s "
			     "failed: %s", rcpt, config->web_smtp_url,
			     curl_easy_strerror(rc));
		return -1;
	}
	return 0;
}
