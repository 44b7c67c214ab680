/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad-private.h"

#include <string.h>

#define LP_PERSON_KEY_PREFIX "person/"

static time_t lp_person_ttl(const struct lp_context *ctx,
			    const struct lp_person_record *rec)
{
	/* Only a record that can lead to an allow is trusted for long. */
	if (rec->state == LP_PERSON_OK && rec->is_valid && rec->is_coc_signer)
		return ctx->config->positive_ttl;
	return ctx->config->negative_ttl;
}

int lp_person_fetch(struct lp_context *ctx, const char *name,
		    const struct lp_person_record *prev,
		    struct lp_person_record *rec_r, struct lp_error *err)
{
	struct lp_error local_err;
	struct lp_http_response resp;
	struct lp_person person;
	char url[LP_URL_MAX];
	const char *etag = NULL;
	time_t now;

	if (err == NULL)
		err = &local_err;
	memset(rec_r, 0, sizeof(*rec_r));
	if (!lp_name_is_valid(name)) {
		/* callers validated it; a URL is never built from junk */
		lp_error_set(err, LP_ERR_NOT_FOUND, "not a Launchpad name");
		return -1;
	}
	if (prev != NULL && prev->state == LP_PERSON_OK && prev->etag[0] != '\0')
		etag = prev->etag;
	snprintf(url, sizeof(url), "%s/~%s", ctx->config->api_url, name);
	if (lp_http_get(ctx, url, etag, &resp, err) < 0)
		return -1;

	now = ctx->now();
	switch (resp.status) {
	case 304:
		if (etag == NULL) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "GET %s: 304 without If-None-Match", url);
			lp_log(ctx, LP_LOG_WARNING, "%s", err->text);
			return -1;
		}
		/* unchanged: only the times move */
		*rec_r = *prev;
		break;
	case 404:
		rec_r->state = LP_PERSON_NOT_FOUND;
		break;
	case 410:
		rec_r->state = LP_PERSON_SUSPENDED;
		break;
	default:
		if (lp_json_parse_person(resp.body, resp.body_size,
					 &person, err) < 0) {
			lp_log(ctx, LP_LOG_WARNING, "GET %s: %s", url,
			       err->text);
			lp_http_response_free(&resp);
			return -1;
		}
		rec_r->state = LP_PERSON_OK;
		rec_r->is_valid = person.is_valid;
		rec_r->is_coc_signer = person.is_coc_signer;
		rec_r->is_team = person.is_team;
		memcpy(rec_r->etag, resp.etag[0] != '\0' ? resp.etag :
		       person.http_etag, sizeof(rec_r->etag));
		break;
	}
	lp_http_response_free(&resp);
	rec_r->fetched_at = now;
	rec_r->expires_at = now + lp_person_ttl(ctx, rec_r);
	return 0;
}

/* 1 and rec_r when a fresh record is cached, else 0 (rec_r then holds an
   expired record, state UNKNOWN if none). */
static int lp_person_cached(struct lp_context *ctx, const char *name,
			    struct lp_person_record *rec_r)
{
	if (lp_cache_person_get(ctx, name, rec_r) <= 0) {
		memset(rec_r, 0, sizeof(*rec_r));
		return 0;
	}
	return ctx->now() < rec_r->expires_at ? 1 : 0;
}

int lp_person_lookup(struct lp_context *ctx, const char *name, bool refresh,
		     struct lp_person_record *rec_r, struct lp_error *err)
{
	char key[sizeof(LP_PERSON_KEY_PREFIX) + LP_NAME_MAX + 1];
	struct lp_error local_err;
	struct lp_person_record old;
	time_t since;

	if (err == NULL)
		err = &local_err;
	if (!refresh && lp_person_cached(ctx, name, rec_r) > 0)
		return 0;

	/* One process asks Launchpad; the others wait here and then find
	   its answer in the cache. */
	snprintf(key, sizeof(key), LP_PERSON_KEY_PREFIX "%s", name);
	if (lp_cache_lock(ctx, key, err) < 0)
		return -1;
	if (lp_person_cached(ctx, name, &old) > 0 && !refresh) {
		lp_cache_unlock(ctx, key);
		*rec_r = old;
		return 0;
	}
	if (!refresh && lp_cache_outage_active(ctx, &since)) {
		lp_error_set(err, LP_ERR_TEMP,
			     "Launchpad failed %lld s ago; not asking again yet",
			     (long long)(ctx->now() - since));
		lp_cache_unlock(ctx, key);
		return -1;
	}
	if (lp_person_fetch(ctx, name, old.state == LP_PERSON_OK ? &old : NULL,
			    rec_r, err) < 0) {
		if (err->kind == LP_ERR_TEMP)
			lp_cache_outage_set(ctx);
		lp_cache_unlock(ctx, key);
		return -1;
	}
	lp_cache_outage_clear(ctx);
	/* A failed store only costs a refetch later. */
	(void)lp_cache_person_put(ctx, name, rec_r, NULL);
	lp_cache_unlock(ctx, key);
	return 0;
}
