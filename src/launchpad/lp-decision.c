/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The doc/DESIGN.md section 4 decision table, nothing else: no I/O, no
   clock, no globals. */

#include "launchpad.h"

#include <stdio.h>
#include <string.h>

static const char lp_unreachable_text[] =
	"Launchpad unreachable and no usable cached verdict";

const char *lp_deny_reason_text(enum lp_deny_reason reason)
{
	switch (reason) {
	case LP_DENY_NONE:
		return "";
	case LP_DENY_DOMAIN:
		return "domain not configured";
	case LP_DENY_NAME:
		return "not a Launchpad name";
	case LP_DENY_BANNED:
		return "user banned";
	case LP_DENY_NO_PERSON:
		return "no such Launchpad user";
	case LP_DENY_NOT_VALID:
		return "account not valid";
	case LP_DENY_NO_COC:
		return "Code of Conduct not signed";
	case LP_DENY_NOT_MEMBER:
		return "not a member of";
	}
	/* A corrupt cache record may carry any number. */
	return "unknown reason";
}

static void lp_decide_deny(struct lp_verdict *verdict_r,
			   enum lp_deny_reason reason)
{
	verdict_r->kind = LP_VERDICT_DENY;
	verdict_r->reason = reason;
	snprintf(verdict_r->text, sizeof(verdict_r->text), "%s",
		 lp_deny_reason_text(reason));
}

static bool lp_decide_within_grace(const struct lp_facts *facts)
{
	/* now <= expires_at + stale_grace, written so that no sum can
	   overflow whatever a cache record holds. */
	if (facts->now <= facts->cached_expires_at)
		return true;
	return (uint64_t)facts->now - (uint64_t)facts->cached_expires_at <=
		facts->stale_grace;
}

/* The Launchpad-unreachable row: a fact is unknown because its fresh
   source failed. */
static void lp_decide_unreachable(const struct lp_facts *facts,
				  struct lp_verdict *verdict_r)
{
	if (facts->have_cached && facts->cached_kind == LP_VERDICT_ALLOW &&
	    lp_decide_within_grace(facts)) {
		verdict_r->kind = LP_VERDICT_ALLOW;
		verdict_r->stale = facts->now > facts->cached_expires_at;
		return;
	}
	/* Only an allow is served past its expiry.  An expired DENY during
	   an outage gives TEMPFAIL, not DENY: a 550 would bounce mail on
	   stale data (the user may have joined the team since), while a 4xx
	   makes the MTA retry until Launchpad answers again. */
	verdict_r->kind = LP_VERDICT_TEMPFAIL;
	snprintf(verdict_r->text, sizeof(verdict_r->text), "%s",
		 lp_unreachable_text);
}

void lp_decide(const struct lp_facts *facts, struct lp_verdict *verdict_r)
{
	*verdict_r = (struct lp_verdict){
		.kind = LP_VERDICT_ALLOW,
		.reason = LP_DENY_NONE,
	};

	/* Rows 1-3 need no Launchpad, so they hold during an outage too. */
	if (!facts->domain_configured) {
		lp_decide_deny(verdict_r, LP_DENY_DOMAIN);
		return;
	}
	if (!facts->name_valid) {
		lp_decide_deny(verdict_r, LP_DENY_NAME);
		return;
	}
	if (facts->banned) {
		lp_decide_deny(verdict_r, LP_DENY_BANNED);
		if (facts->ban_reason != NULL && facts->ban_reason[0] != '\0')
			snprintf(verdict_r->text, sizeof(verdict_r->text),
				 "%s: %s", lp_deny_reason_text(LP_DENY_BANNED),
				 facts->ban_reason);
		return;
	}
	if (facts->person == LP_PERSON_UNKNOWN) {
		lp_decide_unreachable(facts, verdict_r);
		return;
	}
	if (facts->person == LP_PERSON_NOT_FOUND) {
		lp_decide_deny(verdict_r, LP_DENY_NO_PERSON);
		return;
	}
	if (facts->person == LP_PERSON_SUSPENDED || !facts->is_valid) {
		lp_decide_deny(verdict_r, LP_DENY_NOT_VALID);
		return;
	}
	if (!facts->is_coc_signer) {
		lp_decide_deny(verdict_r, LP_DENY_NO_COC);
		return;
	}
	switch (facts->member) {
	case LP_MEMBER_NO:
		lp_decide_deny(verdict_r, LP_DENY_NOT_MEMBER);
		if (facts->team != NULL)
			snprintf(verdict_r->text, sizeof(verdict_r->text),
				 "%s ~%s",
				 lp_deny_reason_text(LP_DENY_NOT_MEMBER),
				 facts->team);
		else
			snprintf(verdict_r->text, sizeof(verdict_r->text),
				 "%s the team",
				 lp_deny_reason_text(LP_DENY_NOT_MEMBER));
		return;
	case LP_MEMBER_UNKNOWN:
		lp_decide_unreachable(facts, verdict_r);
		return;
	case LP_MEMBER_YES:
		break;
	}
	/* Row 8: allow, text "". */
}
