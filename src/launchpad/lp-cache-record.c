/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The Launchpad facts as cache records: person, team and verdict (the
   key registry in launchpad-private.h says where each lives). */

#include "launchpad-private.h"

#include <stdlib.h>
#include <string.h>

static const char *const lp_reason_names[] = {
	[LP_DENY_NONE] = "none",
	[LP_DENY_DOMAIN] = "domain",
	[LP_DENY_NAME] = "name",
	[LP_DENY_BANNED] = "banned",
	[LP_DENY_NO_PERSON] = "no-person",
	[LP_DENY_NOT_VALID] = "not-valid",
	[LP_DENY_NO_COC] = "no-coc",
	[LP_DENY_NOT_MEMBER] = "not-member",
};

static const char *const lp_person_state_names[] = {
	[LP_PERSON_UNKNOWN] = "unknown",
	[LP_PERSON_OK] = "ok",
	[LP_PERSON_NOT_FOUND] = "not-found",
	[LP_PERSON_SUSPENDED] = "suspended",
};

static int lp_token_lookup(const char *const *names, unsigned int count,
			   const char *token)
{
	if (token == NULL)
		return -1;
	for (unsigned int i = 0; i < count; i++) {
		if (strcmp(names[i], token) == 0)
			return (int)i;
	}
	return -1;
}

/* ---- person ---- */

int lp_cache_person_get(struct lp_context *ctx, const char *name,
			struct lp_person_record *rec_r)
{
	char key[LP_KEY_MAX];
	const char *field = NULL;
	json_t *obj;
	int state;

	memset(rec_r, 0, sizeof(*rec_r));
	snprintf(key, sizeof(key), LP_KEY_PERSON "%s", name);
	if (lp_cache_get_fact(ctx, key, LP_KIND_PERSON, "fetched_at", &obj) <= 0)
		return 0;
	state = lp_token_lookup(lp_person_state_names,
				LP_N_ELEMENTS(lp_person_state_names),
				json_string_value(json_object_get(obj, "state")));
	if (state <= LP_PERSON_UNKNOWN)
		field = "state";
	else if (!lp_json_bool(obj, "is_valid", &rec_r->is_valid))
		field = "is_valid";
	else if (!lp_json_bool(obj, "is_coc_signer", &rec_r->is_coc_signer))
		field = "is_coc_signer";
	else if (!lp_json_bool(obj, "is_team", &rec_r->is_team))
		field = "is_team";
	else if (!lp_json_text(obj, "etag", rec_r->etag, sizeof(rec_r->etag)))
		field = "etag";
	else if (!lp_json_time(obj, "fetched_at", &rec_r->fetched_at))
		field = "fetched_at";
	else if (!lp_json_time(obj, "expires_at", &rec_r->expires_at))
		field = "expires_at";
	json_decref(obj);
	if (field != NULL) {
		lp_cache_bad_field(ctx, key, field);
		memset(rec_r, 0, sizeof(*rec_r));
		return 0;
	}
	rec_r->state = (enum lp_person_state)state;
	return 1;
}

int lp_cache_person_put(struct lp_context *ctx, const char *name,
			const struct lp_person_record *rec,
			struct lp_error *err)
{
	char key[LP_KEY_MAX];
	json_t *obj;

	snprintf(key, sizeof(key), LP_KEY_PERSON "%s", name);
	obj = json_pack("{s:s, s:s, s:b, s:b, s:b, s:s, s:I, s:I}",
			"name", name,
			"state", lp_person_state_names[rec->state],
			"is_valid", rec->is_valid,
			"is_coc_signer", rec->is_coc_signer,
			"is_team", rec->is_team,
			"etag", rec->etag,
			"fetched_at", (json_int_t)rec->fetched_at,
			"expires_at", (json_int_t)rec->expires_at);
	return lp_cache_put_new(ctx, key, LP_KIND_PERSON, obj, err);
}

/* ---- team ---- */

int lp_cache_team_get(struct lp_context *ctx, const char *team,
		      struct lp_name_set *set_r, time_t *fetched_at_r,
		      time_t *expires_at_r)
{
	char key[LP_KEY_MAX];
	json_t *obj, *members, *member;
	size_t i;

	memset(set_r, 0, sizeof(*set_r));
	snprintf(key, sizeof(key), LP_KEY_TEAM "%s", team);
	if (lp_cache_get_fact(ctx, key, LP_KIND_TEAM, "fetched_at", &obj) <= 0)
		return 0;
	members = json_object_get(obj, "members");
	if (!lp_json_time(obj, "fetched_at", fetched_at_r) ||
	    !lp_json_time(obj, "expires_at", expires_at_r) ||
	    !json_is_array(members))
		goto bad;
	json_array_foreach(members, i, member) {
		const char *name = json_string_value(member);

		/* stored sorted and unique; anything else is corrupt, as
		   bsearch would silently miss members */
		if (name == NULL || (set_r->count > 0 &&
		    strcmp(set_r->names[set_r->count - 1], name) >= 0))
			goto bad;
		if (lp_name_set_add(set_r, name, strlen(name)) < 0)
			goto bad;
	}
	json_decref(obj);
	return 1;
bad:
	lp_cache_bad_field(ctx, key, "members");
	lp_name_set_free(set_r);
	json_decref(obj);
	return 0;
}

int lp_cache_team_put(struct lp_context *ctx, const char *team,
		      const struct lp_name_set *set, time_t fetched_at,
		      time_t expires_at, struct lp_error *err)
{
	char key[LP_KEY_MAX];
	json_t *obj, *members;

	snprintf(key, sizeof(key), LP_KEY_TEAM "%s", team);
	members = json_array();
	for (unsigned int i = 0; members != NULL && i < set->count; i++) {
		if (json_array_append_new(members,
					  json_string(set->names[i])) < 0) {
			json_decref(members);
			members = NULL;
		}
	}
	obj = members == NULL ? NULL :
		json_pack("{s:s, s:o, s:I, s:I}", "team", team,
			  "members", members,
			  "fetched_at", (json_int_t)fetched_at,
			  "expires_at", (json_int_t)expires_at);
	return lp_cache_put_new(ctx, key, LP_KIND_TEAM, obj, err);
}

/* ---- verdict ---- */

const char *lp_cache_reason_token(enum lp_deny_reason reason)
{
	return (unsigned int)reason < LP_N_ELEMENTS(lp_reason_names) ?
		lp_reason_names[reason] : NULL;
}

int lp_cache_reason_parse(const char *token)
{
	return lp_token_lookup(lp_reason_names, LP_N_ELEMENTS(lp_reason_names),
			       token);
}

static int lp_cache_verdict_parse(struct lp_context *ctx, const char *key,
				  json_t *obj, struct lp_verdict_record *rec_r)
{
	const char *kind = json_string_value(json_object_get(obj, "verdict"));
	const char *field = NULL;
	int reason;

	memset(rec_r, 0, sizeof(*rec_r));
	reason = lp_token_lookup(lp_reason_names, LP_N_ELEMENTS(lp_reason_names),
				 json_string_value(json_object_get(obj, "reason")));
	if (kind == NULL ||
	    (strcmp(kind, "allow") != 0 && strcmp(kind, "deny") != 0))
		field = "verdict";
	else if (reason < 0 ||
		 (strcmp(kind, "allow") == 0) != (reason == LP_DENY_NONE))
		field = "reason";
	else if (!lp_json_text(obj, "text", rec_r->text, sizeof(rec_r->text)))
		field = "text";
	else if (!lp_json_time(obj, "decided_at", &rec_r->decided_at))
		field = "decided_at";
	else if (!lp_json_time(obj, "expires_at", &rec_r->expires_at))
		field = "expires_at";
	if (field != NULL) {
		lp_cache_bad_field(ctx, key, field);
		return -1;
	}
	rec_r->kind = strcmp(kind, "allow") == 0 ?
		LP_VERDICT_ALLOW : LP_VERDICT_DENY;
	rec_r->reason = (enum lp_deny_reason)reason;
	return 0;
}

int lp_cache_verdict_get(struct lp_context *ctx, const char *user,
			 struct lp_verdict_record *rec_r)
{
	char key[LP_KEY_MAX];
	json_t *obj;
	int ret;

	memset(rec_r, 0, sizeof(*rec_r));
	snprintf(key, sizeof(key), LP_KEY_VERDICT "%s", user);
	if (lp_cache_get_fact(ctx, key, LP_KIND_VERDICT, "decided_at", &obj) <= 0)
		return 0;
	ret = lp_cache_verdict_parse(ctx, key, obj, rec_r) < 0 ? 0 : 1;
	json_decref(obj);
	return ret;
}

int lp_cache_verdict_put(struct lp_context *ctx, const char *user,
			 const struct lp_verdict_record *rec,
			 struct lp_error *err)
{
	char key[LP_KEY_MAX];
	json_t *obj;

	snprintf(key, sizeof(key), LP_KEY_VERDICT "%s", user);
	obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}",
			"user", user,
			"verdict", rec->kind == LP_VERDICT_ALLOW ? "allow" : "deny",
			"reason", lp_reason_names[rec->reason],
			"text", rec->text,
			"decided_at", (json_int_t)rec->decided_at,
			"expires_at", (json_int_t)rec->expires_at);
	return lp_cache_put_new(ctx, key, LP_KIND_VERDICT, obj, err);
}

