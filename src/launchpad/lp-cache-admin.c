/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The cache as doveadm and userdb iteration see it: what is known of a
   user, lists, counts, invalidation.  Never does HTTP. */

#include "launchpad-private.h"

#include <stdio.h>
#include <string.h>

int lp_cache_show(struct lp_context *ctx, const char *user,
		  struct lp_cache_user *user_r, struct lp_error *err)
{
	char name[LP_NAME_MAX + 1];
	const struct lp_domain *domain;
	struct lp_verdict_record verdict;
	struct lp_person_record person;
	int found = 0;

	memset(user_r, 0, sizeof(*user_r));
	if (lp_login_parse(ctx->config, user, name, &domain) != LP_LOGIN_OK) {
		lp_error_set(err, LP_ERR_NOT_FOUND,
			     "'%.64s' is not a Launchpad user of a configured "
			     "domain", user);
		return -1;
	}
	snprintf(user_r->user, sizeof(user_r->user), "%s@%s", name,
		 domain->domain);
	if (lp_cache_verdict_get(ctx, user_r->user, &verdict) > 0) {
		user_r->kind = verdict.kind;
		user_r->reason = verdict.reason;
		memcpy(user_r->text, verdict.text, sizeof(user_r->text));
		user_r->decided_at = verdict.decided_at;
		user_r->expires_at = verdict.expires_at;
		found = 1;
	}
	if (lp_cache_person_get(ctx, name, &person) > 0) {
		user_r->have_person = true;
		user_r->person = person.state;
		user_r->is_valid = person.is_valid;
		user_r->is_coc_signer = person.is_coc_signer;
		memcpy(user_r->etag, person.etag, sizeof(user_r->etag));
		user_r->person_fetched_at = person.fetched_at;
		user_r->person_expires_at = person.expires_at;
		found = 1;
	}
	if (lp_ban_get(ctx, name, user_r->ban_reason) > 0) {
		user_r->banned = true;
		found = 1;
	}
	return found;
}

int lp_cache_invalidate(struct lp_context *ctx, const char *user,
			struct lp_error *err)
{
	char name[LP_NAME_MAX + 1], key[LP_KEY_MAX];
	int count, ret;

	if (!lp_name_of_user(user, name)) {
		lp_error_set(err, LP_ERR_NOT_FOUND,
			     "'%.64s' is not a Launchpad name", user);
		return -1;
	}
	snprintf(key, sizeof(key), LP_KEY_PERSON "%s", name);
	if ((count = lp_cache_delete(ctx, key, err)) < 0)
		return -1;
	snprintf(key, sizeof(key), LP_KEY_VERDICT "%s@", name);
	if ((ret = lp_cache_delete_prefix(ctx, key, err)) < 0)
		return -1;
	return count + ret;
}

int lp_cache_invalidate_all(struct lp_context *ctx, struct lp_error *err)
{
	/* the Launchpad facts and what was learnt from asking */
	static const char *const prefixes[] = {
		LP_KEY_PERSON, LP_KEY_TEAM, LP_KEY_VERDICT, LP_KEY_OUTAGE,
	};
	int count = 0, ret;

	for (unsigned int i = 0; i < LP_N_ELEMENTS(prefixes); i++) {
		if ((ret = lp_cache_delete_prefix(ctx, prefixes[i], err)) < 0)
			return -1;
		count += ret;
	}
	return count;
}

int lp_cache_iterate_allowed(struct lp_context *ctx,
			     int (*cb)(const char *user, void *context),
			     void *context, struct lp_error *err)
{
	struct lp_name_set users;
	struct lp_verdict_record rec;

	if (lp_cache_keys(ctx, LP_KEY_VERDICT, &users, err) < 0)
		return -1;
	for (unsigned int i = 0; i < users.count; i++) {
		if (lp_cache_verdict_get(ctx, users.names[i], &rec) <= 0 ||
		    rec.kind != LP_VERDICT_ALLOW ||
		    rec.expires_at + (time_t)ctx->config->stale_grace <=
		    ctx->now())
			continue;
		if (cb(users.names[i], context) < 0)
			break;
	}
	lp_name_set_free(&users);
	return 0;
}

int lp_cache_list(struct lp_context *ctx,
		  int (*cb)(const struct lp_cache_user *entry, void *context),
		  void *context, struct lp_error *err)
{
	struct lp_name_set users;
	struct lp_cache_user entry;

	if (lp_cache_keys(ctx, LP_KEY_VERDICT, &users, err) < 0)
		return -1;
	for (unsigned int i = 0; i < users.count; i++) {
		/* a verdict key that no longer parses (domain dropped from
		   the config) is skipped, not an error */
		if (lp_cache_show(ctx, users.names[i], &entry, NULL) <= 0 ||
		    entry.decided_at == 0)
			continue;
		if (cb(&entry, context) < 0)
			break;
	}
	lp_name_set_free(&users);
	return 0;
}

int lp_cache_count(struct lp_context *ctx, struct lp_cache_counts *counts_r,
		   struct lp_error *err)
{
	struct lp_name_set keys;
	struct lp_verdict_record rec;
	time_t now = ctx->now();

	memset(counts_r, 0, sizeof(*counts_r));
	if (lp_cache_keys(ctx, LP_KEY_VERDICT, &keys, err) < 0)
		return -1;
	for (unsigned int i = 0; i < keys.count; i++) {
		if (lp_cache_verdict_get(ctx, keys.names[i], &rec) <= 0)
			continue;
		if (rec.kind == LP_VERDICT_DENY)
			counts_r->deny++;
		else if (rec.expires_at <= now)
			counts_r->allow_expired++;
		else
			counts_r->allow++;
	}
	lp_name_set_free(&keys);
	if (lp_cache_keys(ctx, LP_KEY_PERSON, &keys, err) < 0)
		return -1;
	counts_r->persons = keys.count;
	lp_name_set_free(&keys);
	if (lp_cache_keys(ctx, LP_KEY_TEAM, &keys, err) < 0)
		return -1;
	counts_r->teams = keys.count;
	lp_name_set_free(&keys);
	if (lp_cache_keys(ctx, LP_KEY_BAN, &keys, err) < 0)
		return -1;
	counts_r->bans = keys.count;
	lp_name_set_free(&keys);
	return 0;
}
