/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Adds a page's participants: only names that could ever log in matter,
   anything else would only grow the record. */
static int lp_team_add_page(struct lp_name_set *set, json_t *entries,
			    struct lp_error *err)
{
	json_t *entry;
	size_t i;

	json_array_foreach(entries, i, entry) {
		const char *name =
			json_string_value(json_object_get(entry, "name"));

		if (lp_name_is_valid(name) &&
		    lp_name_set_add(set, name, strlen(name)) < 0) {
			lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
			return -1;
		}
	}
	return 0;
}

int lp_team_fetch(struct lp_context *ctx, const char *team,
		  struct lp_name_set *set_r, struct lp_error *err)
{
	struct lp_http_response resp;
	struct lp_collection_page page;
	/* every URL asked so far: a link back to any of them is a loop */
	char *seen[LP_TEAM_MAX_PAGES + 1] = { NULL };
	char url[LP_URL_MAX];
	json_int_t prev_start = -1;
	unsigned int pages;
	struct lp_error local_err;
	bool logged = false;
	int ret = -1;

	if (err == NULL)
		err = &local_err;
	memset(set_r, 0, sizeof(*set_r));
	if (!lp_name_is_valid(team)) {
		lp_error_set(err, LP_ERR_CONFIG, "invalid team name '%.64s'",
			     team);
		return -1;
	}
	snprintf(url, sizeof(url), "%s/~%s/participants?ws.size=%u",
		 ctx->config->api_url, team, LP_TEAM_PAGE_SIZE);
	if ((seen[0] = strdup(url)) == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		goto out;
	}
	for (pages = 0;; pages++) {
		if (pages == LP_TEAM_MAX_PAGES) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "~%s/participants: more than %u pages",
				     team, LP_TEAM_MAX_PAGES);
			goto out;
		}
		if (lp_http_get(ctx, url, NULL, &resp, err) < 0) {
			/* lp_http_get() logged it */
			logged = true;
			goto out;
		}
		if (resp.status != 200) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "GET %s: unexpected HTTP %ld", url,
				     resp.status);
			lp_http_response_free(&resp);
			goto out;
		}
		ret = lp_json_parse_collection(resp.body, resp.body_size,
					       &page, err);
		lp_http_response_free(&resp);
		if (ret < 0)
			goto out;
		ret = -1;
		if (page.start <= prev_start) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "~%s/participants: start %lld does not "
				     "advance", team, (long long)page.start);
			json_decref(page.root);
			goto out;
		}
		prev_start = page.start;
		if (lp_team_add_page(set_r, page.entries, err) < 0) {
			json_decref(page.root);
			goto out;
		}
		if (page.next_link == NULL) {
			json_decref(page.root);
			break;
		}
		/* Follow the link as given (it carries Launchpad's memo), but
		   only to api_url and never twice. */
		if (strlen(page.next_link) >= sizeof(url) ||
		    !lp_url_is_under(ctx->config->api_url, page.next_link)) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "~%s/participants: next_collection_link "
				     "outside api_url: %.128s", team,
				     page.next_link);
			json_decref(page.root);
			goto out;
		}
		for (unsigned int i = 0; i <= pages; i++) {
			if (strcmp(seen[i], page.next_link) == 0) {
				lp_error_set(err, LP_ERR_PROTOCOL,
					     "~%s/participants: "
					     "next_collection_link loops",
					     team);
				json_decref(page.root);
				goto out;
			}
		}
		strcpy(url, page.next_link);
		json_decref(page.root);
		seen[pages + 1] = strdup(url);
		if (seen[pages + 1] == NULL) {
			lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
			goto out;
		}
	}
	lp_name_set_sort(set_r);
	lp_log(ctx, LP_LOG_DEBUG, "~%s: %u participants in %u pages",
	       team, set_r->count, pages + 1);
	ret = 0;
out:
	for (unsigned int i = 0; i <= LP_TEAM_MAX_PAGES && seen[i] != NULL; i++)
		free(seen[i]);
	if (ret < 0) {
		lp_name_set_free(set_r);
		if (!logged)
			lp_log(ctx, LP_LOG_WARNING, "%s", err->text);
	}
	return ret;
}

struct lp_team_lookup {
	const char *team;
	const char *name;
};

/* 1 member, 0 not, from a fresh team record; -1 without one. */
static int lp_team_cached(struct lp_context *ctx, void *context)
{
	const struct lp_team_lookup *tl = context;
	struct lp_name_set set;
	time_t fetched_at, expires_at, now = ctx->now();
	bool member;

	if (lp_cache_team_get(ctx, tl->team, &set, &fetched_at,
			      &expires_at) <= 0)
		return -1;
	member = lp_name_set_contains(&set, tl->name);
	lp_name_set_free(&set);
	/* "not a member" leads to a deny, which is trusted only for
	   negative_ttl: whoever joined since must not wait positive_ttl. */
	if (!member && now - fetched_at >= (time_t)ctx->config->negative_ttl)
		return -1;
	return now < expires_at ? member : -1;
}

static int lp_team_fetch_store(struct lp_context *ctx, void *context,
			       struct lp_error *err)
{
	const struct lp_team_lookup *tl = context;
	struct lp_name_set set;
	time_t now;
	int ret;

	if (lp_team_fetch(ctx, tl->team, &set, err) < 0)
		return -1;
	now = ctx->now();
	/* A failed store only costs a refetch later. */
	(void)lp_cache_team_put(ctx, tl->team, &set, now,
				now + ctx->config->positive_ttl, NULL);
	ret = lp_name_set_contains(&set, tl->name) ? 1 : 0;
	lp_name_set_free(&set);
	return ret;
}

int lp_team_lookup(struct lp_context *ctx, const char *team,
		   const char *name, bool refresh, struct lp_error *err)
{
	char key[LP_KEY_MAX];
	struct lp_team_lookup tl = { .team = team, .name = name };
	const struct lp_lookup lookup = {
		.key = key,
		.cached = lp_team_cached,
		.fetch = lp_team_fetch_store,
		.context = &tl,
	};

	snprintf(key, sizeof(key), LP_KEY_TEAM "%s", team);
	return lp_lookup_run(ctx, &lookup, refresh, err);
}
