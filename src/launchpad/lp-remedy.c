/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* What fixes a deny reason, for people rather than logs: the words of
   lp_deny_reason_text() name the rule that failed; these say what the
   person can do about it and which Launchpad page does it.  The pages are
   below web_launchpad_url (https://launchpad.net): the Code of Conduct
   at /codeofconduct, a team's page (which says how to join) at /~team,
   a person's account at /~name. */

#include "launchpad.h"

#include <stdio.h>
#include <string.h>

static void lp_remedy_link(struct lp_remedy *r, const char *base,
			   const char *path, const char *name,
			   const char *link_text)
{
	snprintf(r->url, sizeof(r->url), "%s%s%s", base, path,
		 name != NULL ? name : "");
	snprintf(r->link_text, sizeof(r->link_text), "%s", link_text);
}

void lp_deny_remedy(const struct lp_config *config,
		    enum lp_deny_reason reason, const char *name,
		    const char *team, struct lp_remedy *r)
{
	const char *base = config->web_launchpad_url;
	char text[LP_TEXT_MAX];

	memset(r, 0, sizeof(*r));
	/* only a name and a team that passed the name rules reach a URL */
	if (name != NULL && !lp_name_is_valid(name))
		name = NULL;
	if (team != NULL && !lp_name_is_valid(team))
		team = NULL;
	switch (reason) {
	case LP_DENY_NONE:
		return;
	case LP_DENY_NO_COC:
		snprintf(r->text, sizeof(r->text), "Mailboxes are for Ubuntu "
			 "contributors who have signed the Ubuntu Code of "
			 "Conduct, and Launchpad says you have not signed it "
			 "yet. Read and sign it on Launchpad, then come back "
			 "and press \"Check again\".");
		lp_remedy_link(r, base, "/codeofconduct", NULL,
			       "Sign the Ubuntu Code of Conduct");
		r->recheck = true;
		return;
	case LP_DENY_NOT_MEMBER:
		if (team == NULL) {
			snprintf(r->text, sizeof(r->text), "This mailbox is "
				 "for the members of a Launchpad team you are "
				 "not a member of.");
			r->recheck = true;
			return;
		}
		snprintf(r->text, sizeof(r->text), "This mailbox is for the "
			 "members of the Launchpad team ~%s, and you are not "
			 "a member (yet). The team's page says how to join; "
			 "once the team has accepted you, come back and press "
			 "\"Check again\".", team);
		snprintf(text, sizeof(text), "How to join ~%s", team);
		lp_remedy_link(r, base, "/~", team, text);
		r->recheck = true;
		return;
	case LP_DENY_NOT_VALID:
		snprintf(r->text, sizeof(r->text), "Your Launchpad account is "
			 "not active: it may be deactivated, or its e-mail "
			 "address not confirmed yet. Your account page on "
			 "Launchpad shows what is missing; once it is active "
			 "again, press \"Check again\".");
		if (name != NULL)
			lp_remedy_link(r, base, "/~", name,
				       "Your Launchpad account");
		else
			lp_remedy_link(r, base, "/people/+me", NULL,
				       "Your Launchpad account");
		r->recheck = true;
		return;
	case LP_DENY_NO_PERSON:
		snprintf(r->text, sizeof(r->text), "Launchpad has no account "
			 "with your name. Log in to Launchpad once with your "
			 "Ubuntu One account to create it, then press "
			 "\"Check again\".");
		lp_remedy_link(r, base, "/+login", NULL, "Log in to Launchpad");
		r->recheck = true;
		return;
	case LP_DENY_BANNED:
		snprintf(r->text, sizeof(r->text), "The administrators of "
			 "this mail service have blocked this mailbox. Nothing "
			 "on Launchpad changes that: please write to them.");
		return;
	case LP_DENY_NAME:
		snprintf(r->text, sizeof(r->text), "This name cannot be used "
			 "as a mail address here.");
		return;
	case LP_DENY_DOMAIN:
		snprintf(r->text, sizeof(r->text), "This mail domain is not "
			 "served here.");
		return;
	}
	/* a corrupt cache record: asking Launchpad again replaces it */
	snprintf(r->text, sizeof(r->text), "The reason could not be read; "
		 "press \"Check again\" to ask Launchpad again.");
	r->recheck = true;
}
