/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Single-use OpenID response_nonces for the web page, in its web.tdb. */

#include "launchpad-private.h"

#include <stdio.h>
#include <string.h>

/* OpenID 2.0 caps a response_nonce at 255 characters. */
#define LP_NONCE_MAX 255

int lp_cache_nonce_use(struct lp_context *ctx, const char *nonce,
		       time_t expires_at, struct lp_error *err)
{
	char key[sizeof(LP_KEY_NONCE) + LP_NONCE_MAX];
	time_t seen_until;
	json_t *obj;
	int ret;

	if (strlen(nonce) == 0 || strlen(nonce) > LP_NONCE_MAX) {
		lp_error_set(err, LP_ERR_PROTOCOL, "nonce empty or too long");
		return -1;
	}
	snprintf(key, sizeof(key), LP_KEY_NONCE "%s", nonce);
	/* The chainlock makes check-and-set atomic across processes. */
	if (lp_cache_lock(ctx, key, err) < 0)
		return -1;
	if (lp_cache_get(ctx, key, LP_KIND_NONCE, &obj) > 0) {
		bool ok = lp_json_time(obj, "until", &seen_until);

		json_decref(obj);
		if (ok && seen_until > ctx->now()) {
			lp_cache_unlock(ctx, key);
			return 0;
		}
	}
	ret = lp_cache_put_new(ctx, key, LP_KIND_NONCE,
			       json_pack("{s:I}", "until",
					 (json_int_t)expires_at), err);
	lp_cache_unlock(ctx, key);
	return ret < 0 ? -1 : 1;
}

/* A nonce record still in force (an unreadable one is pruned). */
static bool lp_cache_nonce_live(struct lp_context *ctx, const char *key)
{
	time_t until;
	json_t *obj;
	bool ok;

	if (lp_cache_get(ctx, key, LP_KIND_NONCE, &obj) <= 0)
		return false;
	ok = lp_json_time(obj, "until", &until);
	json_decref(obj);
	return ok && until > ctx->now();
}

int lp_cache_nonce_prune(struct lp_context *ctx, struct lp_error *err)
{
	return lp_cache_delete_prefix_unless(ctx, LP_KEY_NONCE,
					     lp_cache_nonce_live, err);
}
