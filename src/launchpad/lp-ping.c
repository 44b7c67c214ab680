/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Is Launchpad there: one request as a login would make it
   (doveadm launchpad status). */

#include "launchpad-private.h"

#include <stdio.h>

int lp_ping(struct lp_context *ctx, long *status_r, unsigned int *msecs_r,
	    struct lp_error *err)
{
	struct lp_http_response resp;
	char url[LP_URL_MAX];
	uint64_t start = lp_monotonic_msecs();
	int ret;

	*status_r = 0;
	snprintf(url, sizeof(url), "%s/~%s", ctx->config->api_url,
		 ctx->config->domains[0].team);
	/* one request and its retries, bounded like a login's */
	lp_deadline_set(ctx, LP_LOOKUP_DEADLINE_MSECS);
	ret = lp_http_get(ctx, url, NULL, &resp, err);
	lp_deadline_set(ctx, 0);
	*msecs_r = (unsigned int)(lp_monotonic_msecs() - start);
	if (ret < 0)
		return -1;
	*status_r = resp.status;
	lp_http_response_free(&resp);
	return 0;
}
