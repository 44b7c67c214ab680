/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad.h"

#include <stdarg.h>
#include <stdio.h>

void lp_error_set(struct lp_error *err, enum lp_error_kind kind,
		  const char *fmt, ...)
{
	va_list args;

	if (err == NULL)
		return;
	err->kind = kind;
	va_start(args, fmt);
	/* vsnprintf truncates a long text safely; a failing format leaves
	   an empty text rather than stale bytes from an earlier error. */
	if (vsnprintf(err->text, sizeof(err->text), fmt, args) < 0)
		err->text[0] = '\0';
	va_end(args);
}
