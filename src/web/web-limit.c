/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Token-bucket rate limits, in two fixed tables: one for client
   addresses (an IPv4 address, or an IPv6 /64, which one subscriber
   usually holds whole) and one for signed-in users, so that a flood of
   addresses cannot push a user's bucket out.

   A bucket is reused for another key only once it has refilled: then
   forgetting it loses nothing.  When no bucket has, a new key is refused
   (the caller answers 429) instead of taking a fresh burst at the
   expense of a client that is being held back: a flood can make new
   clients wait, never free a limited one. */

#include "web-private.h"

#include <stdio.h>
#include <string.h>

double web_clock_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double web_limit_level(const struct web_limit *limit, double now)
{
	double tokens = limit->tokens + (now - limit->last) / limit->per_secs;

	return tokens > limit->burst ? limit->burst : tokens;
}

enum web_limit_result
web_limit_take(struct web_server *server, enum web_limit_table table,
	       const char *key, unsigned int burst, double per_secs)
{
	struct web_limit *limits, *limit = NULL, *reuse = NULL;
	unsigned int count;
	double now = server->clock();

	if (table == WEB_LIMIT_USER) {
		limits = server->user_limits;
		count = WEB_USER_LIMITS_MAX;
	} else {
		limits = server->limits;
		count = WEB_LIMITS_MAX;
	}
	for (unsigned int i = 0; i < count; i++) {
		struct web_limit *l = &limits[i];

		if (l->key[0] == '\0') {
			if (reuse == NULL || reuse->key[0] != '\0')
				reuse = l;
			continue;
		}
		if (strcmp(l->key, key) == 0) {
			limit = l;
			break;
		}
		/* refilled: as good as a free slot */
		if (reuse == NULL && web_limit_level(l, now) >= l->burst)
			reuse = l;
	}
	if (limit == NULL) {
		if (reuse == NULL)
			return WEB_LIMIT_FULL;
		limit = reuse;
		snprintf(limit->key, sizeof(limit->key), "%s", key);
		limit->burst = burst;
		limit->per_secs = per_secs;
		limit->tokens = burst;
		limit->last = now;
	}
	limit->tokens = web_limit_level(limit, now);
	limit->last = now;
	if (limit->tokens < 1.0)
		return WEB_LIMIT_EMPTY;
	limit->tokens -= 1.0;
	return WEB_LIMIT_OK;
}
