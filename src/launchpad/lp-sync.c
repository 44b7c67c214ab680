/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The periodic sync (doveadm launchpad sync): every team fetched once,
   every known user re-decided with the entitlement's own steps.  Besides
   person, team and verdict records it keeps "syncstate/<user>" {state,
   reason, since}, the state the last sync saw, so a transition is noticed
   even when a login already stored the new verdict, and "sync/last". */

#define LP_SYNC_LOCK_SUFFIX ".sync"
#define LP_SYNC_KEY_MAX (sizeof(LP_KEY_SYNCSTATE) + LP_USER_MAX + 64)

struct lp_sync_team {
	const char *team;
	struct lp_name_set set;
	unsigned int alias;	/* index of the entry that owns the set */
	bool ok;
};

struct lp_sync_state {
	enum lp_verdict_kind kind;
	enum lp_deny_reason reason;
};

static int lp_sync_state_get(struct lp_context *ctx, const char *user,
			     struct lp_sync_state *state_r)
{
	char key[LP_SYNC_KEY_MAX];
	const char *state, *reason;
	json_t *obj;
	int ret = 0;

	snprintf(key, sizeof(key), LP_KEY_SYNCSTATE "%s", user);
	if (lp_cache_get(ctx, key, LP_KIND_SYNCSTATE, &obj) <= 0)
		return 0;
	state = json_string_value(json_object_get(obj, "state"));
	reason = json_string_value(json_object_get(obj, "reason"));
	if (state != NULL && reason != NULL) {
		int parsed = lp_cache_reason_parse(reason);

		state_r->kind = strcmp(state, "allow") == 0 ?
			LP_VERDICT_ALLOW : LP_VERDICT_DENY;
		state_r->reason = parsed < 0 ? LP_DENY_NONE :
			(enum lp_deny_reason)parsed;
		ret = 1;
	}
	json_decref(obj);
	return ret;
}

static int lp_sync_state_put(struct lp_context *ctx, const char *user,
			     const struct lp_verdict_record *rec,
			     struct lp_error *err)
{
	char key[LP_SYNC_KEY_MAX];
	json_t *obj;

	snprintf(key, sizeof(key), LP_KEY_SYNCSTATE "%s", user);
	obj = json_pack("{s:s, s:s, s:I}",
			"state", rec->kind == LP_VERDICT_ALLOW ? "allow" : "deny",
			"reason", lp_cache_reason_token(rec->reason),
			"since", (json_int_t)rec->decided_at);
	return lp_cache_put_new(ctx, key, LP_KIND_SYNCSTATE, obj, err);
}

/* Fetches every configured team once (several domains may share one:
   teams[i].alias then points at the first). */
static void lp_sync_fetch_teams(struct lp_context *ctx,
				struct lp_sync_team *teams,
				struct lp_sync_result *result)
{
	const struct lp_config *config = ctx->config;
	struct lp_error err;
	time_t now;

	for (unsigned int i = 0; i < config->domains_count; i++) {
		teams[i].team = config->domains[i].team;
		teams[i].alias = i;
		for (unsigned int j = 0; j < i; j++) {
			if (strcmp(teams[j].team, teams[i].team) == 0) {
				teams[i].alias = j;
				break;
			}
		}
		if (teams[i].alias != i)
			continue;
		result->teams++;
		lp_deadline_set(ctx, LP_LOOKUP_DEADLINE_MSECS);
		if (lp_team_fetch(ctx, teams[i].team, &teams[i].set,
				  &err) < 0) {
			lp_log(ctx, LP_LOG_WARNING, "sync: ~%s: %s",
			       teams[i].team, err.text);
			result->teams_failed++;
			result->partial = true;
			continue;
		}
		teams[i].ok = true;
		now = ctx->now();
		/* The fresh set is what the next login sees: a leaver is
		   refused without waiting for the old record's TTL. */
		(void)lp_cache_team_put(ctx, teams[i].team, &teams[i].set,
					now, now + config->positive_ttl, NULL);
	}
	lp_deadline_set(ctx, 0);
}

static const struct lp_sync_team *
lp_sync_team_of(const struct lp_context *ctx, const struct lp_sync_team *teams,
		const struct lp_domain *domain)
{
	for (unsigned int i = 0; i < ctx->config->domains_count; i++) {
		if (&ctx->config->domains[i] == domain)
			return &teams[teams[i].alias];
	}
	return NULL;
}

/* Re-checks one known user with the entitlement's steps, the fresh team
   set standing in for the team lookup; fills change (text in text_buf). */
static void lp_sync_user(struct lp_context *ctx, const char *user,
			 const struct lp_sync_team *teams,
			 struct lp_person_record *person,
			 char person_name[LP_NAME_MAX + 1], int *person_ret,
			 struct lp_sync_change *change,
			 char text_buf[LP_TEXT_MAX], struct lp_sync_result *result)
{
	char name[LP_NAME_MAX + 1], ban_reason[LP_TEXT_MAX];
	const struct lp_domain *domain;
	const struct lp_sync_team *team;
	struct lp_verdict_record old_verdict, rec;
	struct lp_sync_state old_state = {
		.kind = LP_VERDICT_DENY, .reason = LP_DENY_NONE,
	};
	struct lp_verdict verdict;
	struct lp_error err = { .kind = LP_ERR_NONE };
	struct lp_facts facts;
	bool have_state, have_verdict;

	change->user = user;
	change->kind = LP_SYNC_FAILED;
	change->text = text_buf;
	text_buf[0] = '\0';
	if (lp_login_parse(ctx->config, user, name, &domain) != LP_LOGIN_OK)
		return;
	team = lp_sync_team_of(ctx, teams, domain);
	have_state = lp_sync_state_get(ctx, user, &old_state) > 0;
	have_verdict = lp_cache_verdict_get(ctx, user, &old_verdict) > 0;
	if (!have_state && have_verdict) {
		old_state.kind = old_verdict.kind;
		old_state.reason = old_verdict.reason;
	}
	change->had_old = have_state || have_verdict;
	change->old_kind = old_state.kind;
	result->users++;

	lp_entitlement_facts_init(ctx, name, domain, &facts, ban_reason);
	if (!facts.banned) {
		/* one person fetch per name, shared by its domains (the keys
		   come sorted, so they are adjacent) */
		if (strcmp(person_name, name) != 0) {
			strcpy(person_name, name);
			ctx->log_user = user;
			lp_deadline_set(ctx, LP_LOOKUP_DEADLINE_MSECS);
			*person_ret = lp_person_lookup(ctx, name, true, person,
						       &err);
			lp_deadline_set(ctx, 0);
			ctx->log_user = NULL;
			if (*person_ret < 0)
				snprintf(text_buf, LP_TEXT_MAX, "%s", err.text);
		}
		if (*person_ret < 0) {
			if (text_buf[0] == '\0')
				snprintf(text_buf, LP_TEXT_MAX,
					 "Launchpad failed for ~%s", name);
			goto failed;
		}
		if (lp_entitlement_person_facts(person, &facts)) {
			if (team == NULL || !team->ok) {
				snprintf(text_buf, LP_TEXT_MAX,
					 "participants of ~%s not fetched",
					 domain->team);
				goto failed;
			}
			facts.member = lp_name_set_contains(&team->set, name) ?
				LP_MEMBER_YES : LP_MEMBER_NO;
		}
	}
	lp_decide(&facts, &verdict);
	if (verdict.kind == LP_VERDICT_TEMPFAIL) {
		snprintf(text_buf, LP_TEXT_MAX, "%s", verdict.text);
		goto failed;
	}
	if (lp_entitlement_store(ctx, user, &verdict, facts.now, &rec,
				 &err) < 0 ||
	    lp_sync_state_put(ctx, user, &rec, &err) < 0) {
		snprintf(text_buf, LP_TEXT_MAX, "%s", err.text);
		goto failed;
	}
	memcpy(text_buf, verdict.text, LP_TEXT_MAX);
	change->new_kind = verdict.kind;
	change->reason = verdict.reason;
	if (verdict.kind == LP_VERDICT_ALLOW) {
		result->allowed++;
		change->kind = !have_state || old_state.kind != LP_VERDICT_ALLOW ?
			LP_SYNC_ALLOWED : LP_SYNC_SAME;
	} else {
		result->denied++;
		if (change->had_old && old_state.kind == LP_VERDICT_ALLOW)
			change->kind = LP_SYNC_DENIED;
		else if (have_state && old_state.reason != verdict.reason)
			change->kind = LP_SYNC_REASON;
		else
			change->kind = LP_SYNC_SAME;
	}
	if (change->kind == LP_SYNC_ALLOWED) {
		result->newly_allowed++;
		(void)lp_notify_clear(ctx, user, NULL);
	} else if (change->kind == LP_SYNC_DENIED) {
		result->newly_denied++;
		(void)lp_notify_clear(ctx, user, NULL);
	}
	return;
failed:
	change->kind = LP_SYNC_FAILED;
	result->failed++;
	result->partial = true;
}

int lp_sync_run(struct lp_context *ctx, lp_sync_callback_t *cb,
		void *context, struct lp_sync_result *result_r,
		struct lp_error *err)
{
	struct lp_sync_team *teams;
	struct lp_name_set users;
	struct lp_person_record person;
	struct lp_sync_change change;
	char person_name[LP_NAME_MAX + 1] = "";
	char text[LP_TEXT_MAX];
	unsigned int requests = ctx->http_requests;
	int lock_fd = -1, person_ret = -1, ret;

	memset(result_r, 0, sizeof(*result_r));
	if ((ret = lp_cache_flock(ctx, LP_SYNC_LOCK_SUFFIX, false, &lock_fd,
				  err)) <= 0)
		return ret;
	result_r->started = ctx->now();

	teams = calloc(ctx->config->domains_count, sizeof(*teams));
	if (teams == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		close(lock_fd);
		return -1;
	}
	lp_sync_fetch_teams(ctx, teams, result_r);

	/* Known users: anyone with a stored verdict. */
	if (lp_cache_keys(ctx, LP_KEY_VERDICT, &users, err) < 0) {
		ret = -1;
		goto out;
	}
	for (unsigned int i = 0; i < users.count; i++) {
		memset(&change, 0, sizeof(change));
		lp_sync_user(ctx, users.names[i], teams, &person, person_name,
			     &person_ret, &change, text, result_r);
		if (cb != NULL && cb(&change, context) < 0) {
			result_r->partial = true;
			break;
		}
	}
	lp_name_set_free(&users);
	ret = 1;
out:
	for (unsigned int i = 0; i < ctx->config->domains_count; i++)
		lp_name_set_free(&teams[i].set);
	free(teams);
	result_r->finished = ctx->now();
	result_r->http_requests = ctx->http_requests - requests;
	close(lock_fd);
	return ret;
}

/* ---- sync/last ---- */

int lp_sync_last_put(struct lp_context *ctx,
		     const struct lp_sync_result *r, struct lp_error *err)
{
	json_t *obj;

	obj = json_pack("{s:I, s:I, s:b, s:i, s:i, s:i, s:i, s:i, s:i, s:i, "
			"s:i, s:i}",
			"started", (json_int_t)r->started,
			"finished", (json_int_t)r->finished,
			"partial", r->partial,
			"teams", (int)r->teams,
			"teams_failed", (int)r->teams_failed,
			"users", (int)r->users,
			"allowed", (int)r->allowed,
			"denied", (int)r->denied,
			"newly_allowed", (int)r->newly_allowed,
			"newly_denied", (int)r->newly_denied,
			"failed", (int)r->failed,
			"http_requests", (int)r->http_requests);
	return lp_cache_put_new(ctx, LP_KEY_SYNC_LAST, LP_KIND_SYNC_LAST, obj,
				err);
}

int lp_sync_last(struct lp_context *ctx, struct lp_sync_result *r)
{
	json_int_t started, finished;
	int partial;
	json_t *obj;
	int ret;

	memset(r, 0, sizeof(*r));
	if (lp_cache_get(ctx, LP_KEY_SYNC_LAST, LP_KIND_SYNC_LAST, &obj) <= 0)
		return 0;
	ret = json_unpack(obj, "{s:I, s:I, s:b, s:i, s:i, s:i, s:i, s:i, "
			  "s:i, s:i, s:i, s:i}",
			  "started", &started, "finished", &finished,
			  "partial", &partial,
			  "teams", &r->teams, "teams_failed", &r->teams_failed,
			  "users", &r->users, "allowed", &r->allowed,
			  "denied", &r->denied,
			  "newly_allowed", &r->newly_allowed,
			  "newly_denied", &r->newly_denied,
			  "failed", &r->failed,
			  "http_requests", &r->http_requests);
	json_decref(obj);
	if (ret < 0) {
		memset(r, 0, sizeof(*r));
		return 0;
	}
	r->started = (time_t)started;
	r->finished = (time_t)finished;
	r->partial = partial != 0;
	return 1;
}

