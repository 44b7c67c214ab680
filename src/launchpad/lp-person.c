/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad-private.h"

#include <stdio.h>
#include <string.h>

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

struct lp_person_lookup {
	const char *name;
	struct lp_person_record *rec_r;
	/* what the cache holds, fresh or not: its ETag revalidates */
	struct lp_person_record old;
	bool old_read;
};

/* The cached record into old; if it is fresh, the answer too. */
static int lp_person_cached(struct lp_context *ctx, void *context)
{
	struct lp_person_lookup *pl = context;

	pl->old_read = true;
	if (lp_cache_person_get(ctx, pl->name, &pl->old) <= 0) {
		memset(&pl->old, 0, sizeof(pl->old));
		return -1;
	}
	if (ctx->now() >= pl->old.expires_at)
		return -1;
	*pl->rec_r = pl->old;
	return 0;
}

static int lp_person_fetch_store(struct lp_context *ctx, void *context,
				 struct lp_error *err)
{
	struct lp_person_lookup *pl = context;

	if (!pl->old_read)
		(void)lp_person_cached(ctx, pl);
	if (lp_person_fetch(ctx, pl->name,
			    pl->old.state == LP_PERSON_OK ? &pl->old : NULL,
			    pl->rec_r, err) < 0)
		return -1;
	/* A failed store only costs a refetch later. */
	(void)lp_cache_person_put(ctx, pl->name, pl->rec_r, NULL);
	return 0;
}

int lp_person_lookup(struct lp_context *ctx, const char *name, bool refresh,
		     struct lp_person_record *rec_r, struct lp_error *err)
{
	char key[LP_KEY_MAX];
	struct lp_person_lookup pl = { .name = name, .rec_r = rec_r };
	const struct lp_lookup lookup = {
		.key = key,
		.cached = lp_person_cached,
		.fetch = lp_person_fetch_store,
		.context = &pl,
	};

	snprintf(key, sizeof(key), LP_KEY_PERSON "%s", name);
	return lp_lookup_run(ctx, &lookup, refresh, err);
}
