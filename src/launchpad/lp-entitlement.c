/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad-private.h"

#include <stdio.h>
#include <string.h>

/* Fills the Launchpad facts: person, then (only for a person who could
   be allowed) the team.  A failure leaves the fact unknown and err set. */
static void lp_entitlement_gather(struct lp_context *ctx,
				  struct lp_entitlement *ent, bool refresh,
				  struct lp_facts *facts, struct lp_error *err)
{
	struct lp_person_record person;
	int ret;

	if (lp_person_lookup(ctx, ent->name, refresh, &person, err) < 0) {
		facts->person = LP_PERSON_UNKNOWN;
		return;
	}
	facts->person = person.state;
	facts->is_valid = person.is_valid;
	facts->is_coc_signer = person.is_coc_signer;
	if (person.state != LP_PERSON_OK || !person.is_valid ||
	    !person.is_coc_signer)
		return;

	ret = lp_team_lookup(ctx, ent->domain->team, ent->name, refresh, err);
	facts->member = ret < 0 ? LP_MEMBER_UNKNOWN :
		ret > 0 ? LP_MEMBER_YES : LP_MEMBER_NO;
}

static void lp_entitlement_store(struct lp_context *ctx,
				 const struct lp_entitlement *ent, time_t now,
				 const struct lp_error *err)
{
	const struct lp_verdict *verdict = &ent->verdict;
	struct lp_verdict_record rec = {
		.kind = verdict->kind,
		.reason = verdict->reason,
		.decided_at = now,
		.expires_at = now + (verdict->kind == LP_VERDICT_ALLOW ?
				     ctx->config->positive_ttl :
				     ctx->config->negative_ttl),
	};

	/* TEMPFAIL says nothing about the user.  An answer given from the
	   cached verdict because Launchpad failed must keep that record's
	   expiry, or stale_grace would never run out. */
	if (verdict->kind == LP_VERDICT_TEMPFAIL || verdict->stale ||
	    err->kind != LP_ERR_NONE)
		return;
	memcpy(rec.text, verdict->text, sizeof(rec.text));
	(void)lp_cache_verdict_put(ctx, ent->user, &rec, NULL);
}

static void lp_entitlement_run(struct lp_context *ctx, const char *login,
			       bool refresh, struct lp_entitlement *ent_r)
{
	struct lp_error err = { .kind = LP_ERR_NONE };
	struct lp_verdict_record cached;
	char ban_reason[LP_TEXT_MAX];
	unsigned int requests = ctx->http_requests;
	struct lp_facts facts = {
		.now = ctx->now(),
		.stale_grace = ctx->config->stale_grace,
	};

	memset(ent_r, 0, sizeof(*ent_r));
	ent_r->login = lp_login_parse(ctx->config, login, ent_r->name,
				      &ent_r->domain);
	facts.domain_configured = ent_r->login != LP_LOGIN_BAD_DOMAIN;
	facts.name_valid = ent_r->login == LP_LOGIN_OK;
	if (ent_r->login != LP_LOGIN_OK) {
		/* rows 1-2: hostile input never reaches the cache or HTTP */
		ent_r->domain = NULL;
		ent_r->name[0] = '\0';
		lp_decide(&facts, &ent_r->verdict);
		ent_r->from_cache = true;
		/* the login itself is not repeated: the caller's log prefix
		   carries it, escaped */
		lp_log(ctx, LP_LOG_INFO, "denied: %s", ent_r->verdict.text);
		return;
	}
	snprintf(ent_r->user, sizeof(ent_r->user), "%s@%s", ent_r->name,
		 ent_r->domain->domain);
	facts.team = ent_r->domain->team;
	ctx->log_user = ent_r->user;
	lp_deadline_set(ctx, LP_LOOKUP_DEADLINE_MSECS);

	if (lp_cache_ban_get(ctx, ent_r->name, ban_reason) > 0) {
		facts.banned = true;
		facts.ban_reason = ban_reason[0] == '\0' ? NULL : ban_reason;
	}
	if (lp_cache_verdict_get(ctx, ent_r->user, &cached) > 0) {
		facts.have_cached = true;
		facts.cached_kind = cached.kind;
		facts.cached_reason = cached.reason;
		facts.cached_expires_at = cached.expires_at;
	}
	if (!facts.banned)
		lp_entitlement_gather(ctx, ent_r, refresh, &facts, &err);

	lp_decide(&facts, &ent_r->verdict);
	if (ent_r->verdict.kind == LP_VERDICT_TEMPFAIL &&
	    err.kind != LP_ERR_NONE) {
		char text[LP_TEXT_MAX * 2 + 3];

		/* say what went wrong, after lp_decide's words */
		snprintf(text, sizeof(text), "%s%s%s", ent_r->verdict.text,
			 ent_r->verdict.text[0] != '\0' ? ": " : "", err.text);
		text[LP_TEXT_MAX - 1] = '\0';
		memcpy(ent_r->verdict.text, text, LP_TEXT_MAX);
	}
	lp_entitlement_store(ctx, ent_r, facts.now, &err);
	ent_r->from_cache = ctx->http_requests == requests;

	switch (ent_r->verdict.kind) {
	case LP_VERDICT_ALLOW:
		if (ent_r->verdict.stale)
			lp_log(ctx, LP_LOG_WARNING,
			       "allowed from an expired cache record: %s",
			       err.text);
		else
			lp_log(ctx, LP_LOG_DEBUG, "allowed");
		break;
	case LP_VERDICT_DENY:
		lp_log(ctx, LP_LOG_INFO, "denied: %s", ent_r->verdict.text);
		break;
	case LP_VERDICT_TEMPFAIL:
		lp_log(ctx, LP_LOG_ERROR, "temporary failure: %s",
		       ent_r->verdict.text);
		break;
	}
	ctx->log_user = NULL;
	lp_deadline_set(ctx, 0);
}

void lp_entitlement_check(struct lp_context *ctx, const char *login,
			  struct lp_entitlement *ent_r)
{
	lp_entitlement_run(ctx, login, false, ent_r);
}

void lp_entitlement_refresh(struct lp_context *ctx, const char *login,
			    struct lp_entitlement *ent_r)
{
	lp_entitlement_run(ctx, login, true, ent_r);
}
