/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "sqlbox-keywords.h"

#include <stddef.h>
#include <string.h>

/* Messages carry a few keywords: a scan of the other list beats sorting
   or allocating anything. */
static bool sqlbox_keywords_has(const char *const *list, const char *name)
{
	for (; *list != NULL; list++) {
		if (strcmp(*list, name) == 0)
			return true;
	}
	return false;
}

/* Whether every name of a is in b. */
static bool sqlbox_keywords_subset(const char *const *a,
				   const char *const *b)
{
	for (; *a != NULL; a++) {
		if (!sqlbox_keywords_has(b, *a))
			return false;
	}
	return true;
}

bool sqlbox_keywords_equal(const char *const *a, const char *const *b)
{
	return sqlbox_keywords_subset(a, b) && sqlbox_keywords_subset(b, a);
}
