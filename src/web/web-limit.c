/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Token-bucket rate limits per client address and per user, in a fixed
   table: when it is full the longest-idle bucket is reused (an idle bucket
   has refilled, so forgetting it loses nothing). */

#include "web-private.h"

#include <stdio.h>
#include <string.h>

static double web_limit_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool web_limit_take(struct web_server *server, const char *key,
		    unsigned int burst, double per_secs)
{
	struct web_limit *limit = NULL, *oldest = NULL;
	double now = web_limit_now();

	for (unsigned int i = 0; i < WEB_LIMITS_MAX; i++) {
		struct web_limit *l = &server->limits[i];

		if (l->key[0] != '\0' && strcmp(l->key, key) == 0) {
			limit = l;
			break;
		}
		if (oldest == NULL || l->key[0] == '\0' ||
		    (oldest->key[0] != '\0' && l->last < oldest->last))
			oldest = l;
	}
	if (limit == NULL) {
		limit = oldest;
		snprintf(limit->key, sizeof(limit->key), "%s", key);
		limit->tokens = burst;
		limit->last = now;
	}
	limit->tokens += (now - limit->last) / per_secs;
	if (limit->tokens > burst)
		limit->tokens = burst;
	limit->last = now;
	if (limit->tokens < 1.0)
		return false;
	limit->tokens -= 1.0;
	return true;
}
