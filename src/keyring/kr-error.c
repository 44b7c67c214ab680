/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "keyring-private.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void kr_error_clear(struct kr_error *err)
{
	if (err == NULL)
		return;
	err->kind = KR_ERR_NONE;
	err->sys_errno = 0;
	err->text[0] = '\0';
}

void kr_error_set(struct kr_error *err, enum kr_error_kind kind,
		  const char *fmt, ...)
{
	va_list args;

	if (err == NULL)
		return;
	err->kind = kind;
	err->sys_errno = 0;
	va_start(args, fmt);
	(void)vsnprintf(err->text, sizeof(err->text), fmt, args);
	va_end(args);
}

void kr_error_errno(struct kr_error *err, const char *call, const char *path)
{
	int saved_errno = errno;

	kr_error_set(err, KR_ERR_IO, "%s(%s) failed: %s", call, path,
		     strerror(saved_errno));
	if (err != NULL)
		err->sys_errno = saved_errno;
	errno = saved_errno;
}
