/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Clocks: the wall clock TTLs are measured with (replaceable by tests)
   and the monotonic one a lookup's deadline is measured with. */

#include "launchpad-private.h"

#include <time.h>

time_t lp_clock_wall(void)
{
	return time(NULL);
}

uint64_t lp_monotonic_msecs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void lp_deadline_set(struct lp_context *ctx, unsigned int msecs)
{
	ctx->deadline_msecs = msecs == 0 ? 0 : lp_monotonic_msecs() + msecs;
}

uint64_t lp_deadline_left(const struct lp_context *ctx)
{
	uint64_t now;

	if (ctx->deadline_msecs == 0)
		return UINT64_MAX;
	now = lp_monotonic_msecs();
	return now >= ctx->deadline_msecs ? 0 : ctx->deadline_msecs - now;
}
