/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* One login's verdict: the cache and Launchpad gather the facts,
   lp_decide() decides, the verdict is stored.  The sync (lp-sync.c)
   makes its verdicts from the same steps. */

#include "launchpad-private.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

void lp_entitlement_facts_init(struct lp_context *ctx, const char *name,
			       const struct lp_domain *domain,
			       struct lp_facts *facts_r,
			       char ban_reason[LP_TEXT_MAX])
{
	*facts_r = (struct lp_facts){
		.domain_configured = true,
		.name_valid = true,
		.team = domain->team,
		.now = ctx->now(),
		.stale_grace = ctx->config->stale_grace,
	};
	if (lp_ban_get(ctx, name, ban_reason) > 0) {
		facts_r->banned = true;
		facts_r->ban_reason = ban_reason[0] == '\0' ? NULL : ban_reason;
	}
}

bool lp_entitlement_person_facts(const struct lp_person_record *person,
				 struct lp_facts *facts)
{
	facts->person = person->state;
	facts->is_valid = person->is_valid;
	facts->is_coc_signer = person->is_coc_signer;
	return person->state == LP_PERSON_OK && person->is_valid &&
		person->is_coc_signer;
}

int lp_entitlement_store(struct lp_context *ctx, const char *user,
			 const struct lp_verdict *verdict, time_t now,
			 struct lp_verdict_record *rec_r, struct lp_error *err)
{
	struct lp_verdict_record rec = {
		.kind = verdict->kind,
		.reason = verdict->reason,
		.decided_at = now,
		.expires_at = now + (verdict->kind == LP_VERDICT_ALLOW ?
				     ctx->config->positive_ttl :
				     ctx->config->negative_ttl),
	};

	assert(verdict->kind != LP_VERDICT_TEMPFAIL);
	memcpy(rec.text, verdict->text, sizeof(rec.text));
	if (rec_r != NULL)
		*rec_r = rec;
	return lp_cache_verdict_put(ctx, user, &rec, err);
}

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
	if (!lp_entitlement_person_facts(&person, facts))
		return;
	ret = lp_team_lookup(ctx, ent->domain->team, ent->name, refresh, err);
	facts->member = ret < 0 ? LP_MEMBER_UNKNOWN :
		ret > 0 ? LP_MEMBER_YES : LP_MEMBER_NO;
}

static void lp_entitlement_run(struct lp_context *ctx, const char *login,
			       bool refresh, unsigned int deadline_msecs,
			       struct lp_entitlement *ent_r)
{
	struct lp_error err = { .kind = LP_ERR_NONE };
	struct lp_verdict_record cached;
	char ban_reason[LP_TEXT_MAX];
	unsigned int requests = ctx->http_requests;
	struct lp_facts facts;

	memset(ent_r, 0, sizeof(*ent_r));
	ent_r->login = lp_login_parse(ctx->config, login, ent_r->name,
				      &ent_r->domain);
	if (ent_r->login != LP_LOGIN_OK) {
		/* rows 1-2: hostile input never reaches the cache or HTTP */
		facts = (struct lp_facts){
			.domain_configured =
				ent_r->login != LP_LOGIN_BAD_DOMAIN,
			.now = ctx->now(),
			.stale_grace = ctx->config->stale_grace,
		};
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
	ctx->log_user = ent_r->user;
	lp_deadline_set(ctx, deadline_msecs);

	lp_entitlement_facts_init(ctx, ent_r->name, ent_r->domain, &facts,
				  ban_reason);
	if (lp_cache_verdict_get(ctx, ent_r->user, &cached) > 0) {
		facts.have_cached = true;
		facts.cached_kind = cached.kind;
		facts.cached_reason = cached.reason;
		facts.cached_expires_at = cached.expires_at;
	}
	/* the web page's "Check again" cannot write over what is stored
	   here: it leaves a mark that sends this lookup to Launchpad */
	if (lp_recheck_take(ctx, ent_r->name) && !refresh) {
		lp_log(ctx, LP_LOG_INFO, "checked again on request of the web "
		       "page");
		refresh = true;
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
	/* TEMPFAIL says nothing about the user.  An answer given from the
	   cached verdict because Launchpad failed must keep that record's
	   expiry, or stale_grace would never run out. */
	if (ent_r->verdict.kind != LP_VERDICT_TEMPFAIL &&
	    !ent_r->verdict.stale && err.kind == LP_ERR_NONE)
		(void)lp_entitlement_store(ctx, ent_r->user, &ent_r->verdict,
					   facts.now, NULL, NULL);
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
	lp_entitlement_run(ctx, login, false, LP_LOOKUP_DEADLINE_MSECS, ent_r);
}

void lp_entitlement_check_within(struct lp_context *ctx, const char *login,
				 unsigned int msecs,
				 struct lp_entitlement *ent_r)
{
	lp_entitlement_run(ctx, login, false, msecs, ent_r);
}

void lp_entitlement_refresh(struct lp_context *ctx, const char *login,
			    struct lp_entitlement *ent_r)
{
	lp_entitlement_run(ctx, login, true, LP_LOOKUP_DEADLINE_MSECS, ent_r);
}
