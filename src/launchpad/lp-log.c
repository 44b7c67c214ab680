/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The library's one way out for log lines: the caller's struct lp_log. */

#include "launchpad-private.h"

#include <stdarg.h>
#include <stdio.h>

#define LP_LOG_LINE_MAX 1024

void lp_log(struct lp_context *ctx, enum lp_log_level level,
	    const char *fmt, ...)
{
	char msg[LP_LOG_LINE_MAX];
	int len = 0;
	va_list args;

	if (ctx->log.fn == NULL)
		return;
	if (ctx->log_user != NULL)
		len = snprintf(msg, sizeof(msg), "%s: ", ctx->log_user);
	va_start(args, fmt);
	vsnprintf(msg + len, sizeof(msg) - len, fmt, args);
	va_end(args);
	ctx->log.fn(ctx->log.context, level, msg);
}
