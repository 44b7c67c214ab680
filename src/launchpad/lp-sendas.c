/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Which addresses a user may send as: name@D for every domain D the
   decision table allows name@D right now, all decided within
   LP_SEND_AS_BUDGET_MSECS.  The submission plugin gets the
   list from the passdb at login (a userdb field) and checks MAIL FROM and
   the From:/Sender: headers against it. */

#include "launchpad-private.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

size_t lp_send_as_bufsize(const struct lp_config *config)
{
	return (size_t)config->domains_count * (LP_USER_MAX + 1) + 1;
}

static int lp_send_as_append(char *buf, size_t size, size_t *pos,
			     const char *name, const char *domain)
{
	int len = snprintf(buf + *pos, size - *pos, "%s%s@%s",
			   *pos == 0 ? "" : " ", name, domain);

	if (len < 0 || (size_t)len >= size - *pos)
		return -1;
	*pos += (size_t)len;
	return 0;
}

int lp_send_as_list(struct lp_context *ctx, const char *name,
		    const struct lp_domain *first, char *buf, size_t size)
{
	struct lp_entitlement ent;
	char login[LP_USER_MAX + 1];
	uint64_t start = lp_monotonic_msecs(), spent;
	size_t pos = 0;
	unsigned int i;
	int count = 0;

	if (size == 0)
		return -1;
	buf[0] = '\0';
	if (lp_send_as_append(buf, size, &pos, name, first->domain) < 0)
		return -1;
	count++;
	for (i = 0; i < ctx->config->domains_count; i++) {
		const struct lp_domain *domain = &ctx->config->domains[i];

		if (strcmp(domain->domain, first->domain) == 0)
			continue;
		spent = lp_monotonic_msecs() - start;
		if (spent + LP_SEND_AS_MIN_MSECS > LP_SEND_AS_BUDGET_MSECS) {
			lp_log(ctx, LP_LOG_WARNING, "%s: no time left to decide "
			       "%s and later domains: not listed as senders",
			       name, domain->domain);
			break;
		}
		snprintf(login, sizeof(login), "%s@%s", name, domain->domain);
		lp_entitlement_check_within(ctx, login,
					    (unsigned int)(LP_SEND_AS_BUDGET_MSECS -
							   spent), &ent);
		if (ent.verdict.kind != LP_VERDICT_ALLOW)
			continue;
		if (lp_send_as_append(buf, size, &pos, name,
				      domain->domain) < 0)
			return -1;
		count++;
	}
	return count;
}

bool lp_send_as_allowed(const char *list, const char *address)
{
	size_t len;
	const char *p;

	if (list == NULL || address == NULL || address[0] == '\0')
		return false;
	for (p = address; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return false;
	}
	len = strlen(address);
	for (p = list; *p != '\0'; ) {
		size_t word;

		while (*p == ' ')
			p++;
		word = strcspn(p, " ");
		if (word == len && strncasecmp(p, address, len) == 0)
			return true;
		p += word;
	}
	return false;
}
