/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The cold-lookup protocol every Launchpad record (person, team) follows:

     (1) a fresh cached answer is used as it is (unless refresh);
     (2) else the record's TDB chainlock is taken: one process asks
         Launchpad, the others wait here (bounded by the deadline);
     (3) the cache is read again: whoever held the lock may have stored
         the answer meanwhile;
     (4) while an outage is recorded (Launchpad failed less than
         lp_lookup_outage_backoff() ago) nothing is asked: a crowd of
         auth-workers must not each wait out a timeout;
     (5) else Launchpad is asked and the answer stored; a temporary
         failure records an outage, a success ends it. */

#include "launchpad-private.h"

#include <string.h>

unsigned int lp_lookup_outage_backoff(const struct lp_context *ctx)
{
	return ctx->config->http_timeout < LP_OUTAGE_BACKOFF_MAX_SECS ?
		ctx->config->http_timeout : LP_OUTAGE_BACKOFF_MAX_SECS;
}

/* TRUE if Launchpad failed less than lp_lookup_outage_backoff() ago. */
static bool lp_lookup_outage_active(struct lp_context *ctx, time_t *since_r)
{
	json_t *obj;
	time_t since, now = ctx->now();
	bool ok;

	if (lp_cache_get(ctx, LP_KEY_OUTAGE, LP_KIND_OUTAGE, &obj) <= 0)
		return false;
	ok = lp_json_time(obj, "since", &since);
	json_decref(obj);
	if (!ok || now < since ||
	    now - since >= (time_t)lp_lookup_outage_backoff(ctx))
		return false;
	*since_r = since;
	return true;
}

static void lp_lookup_outage_set(struct lp_context *ctx)
{
	(void)lp_cache_put_new(ctx, LP_KEY_OUTAGE, LP_KIND_OUTAGE,
			       json_pack("{s:I}", "since",
					 (json_int_t)ctx->now()), NULL);
}

static void lp_lookup_outage_clear(struct lp_context *ctx)
{
	(void)lp_cache_delete(ctx, LP_KEY_OUTAGE, NULL);
}

int lp_lookup_run(struct lp_context *ctx, const struct lp_lookup *lookup,
		  bool refresh, struct lp_error *err)
{
	struct lp_error local_err;
	time_t since;
	int ret;

	if (err == NULL)
		err = &local_err;
	/* (1) */
	if (!refresh && (ret = lookup->cached(ctx, lookup->context)) >= 0)
		return ret;
	/* (2) */
	if (lp_cache_lock(ctx, lookup->key, err) < 0)
		return -1;
	/* (3) */
	if (!refresh && (ret = lookup->cached(ctx, lookup->context)) >= 0) {
		lp_cache_unlock(ctx, lookup->key);
		return ret;
	}
	/* (4) */
	if (!refresh && lp_lookup_outage_active(ctx, &since)) {
		lp_error_set(err, LP_ERR_TEMP,
			     "Launchpad failed %lld s ago; not asking again yet",
			     (long long)(ctx->now() - since));
		lp_cache_unlock(ctx, lookup->key);
		return -1;
	}
	/* (5) */
	if ((ret = lookup->fetch(ctx, lookup->context, err)) < 0) {
		if (err->kind == LP_ERR_TEMP)
			lp_lookup_outage_set(ctx);
		lp_cache_unlock(ctx, lookup->key);
		return -1;
	}
	lp_lookup_outage_clear(ctx);
	lp_cache_unlock(ctx, lookup->key);
	return ret;
}
