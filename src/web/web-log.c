/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The daemon's log: one line per event on stderr, which systemd's
   journal keeps.  (test-session.c has its own.) */

#include "web-private.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const web_level_names[] = {
	[LP_LOG_DEBUG] = "debug",
	[LP_LOG_INFO] = "info",
	[LP_LOG_WARNING] = "warning",
	[LP_LOG_ERROR] = "error",
};

void web_log(enum lp_log_level level, const char *fmt, ...)
{
	char msg[1024];
	va_list args;

	va_start(args, fmt);
	vsnprintf(msg, sizeof(msg), fmt, args);
	va_end(args);
	fprintf(stderr, "%s: %s: %s\n", WEB_NAME, web_level_names[level], msg);
}
