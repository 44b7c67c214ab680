/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Launchpad names: ^[a-z0-9][a-z0-9+.-]{1,63}$, checked without reading
   past a hostile string's 64th byte. */

#include "launchpad-private.h"

#include <string.h>

#define LP_NAME_MIN 2

static bool lp_name_char_is_valid(char c, bool first)
{
	if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return true;
	return !first && (c == '+' || c == '.' || c == '-');
}

bool lp_name_is_valid(const char *name)
{
	size_t len;

	if (name == NULL)
		return false;
	/* Bounded: a hostile name may be arbitrarily long. */
	for (len = 0; name[len] != '\0'; len++) {
		if (len >= LP_NAME_MAX ||
		    !lp_name_char_is_valid(name[len], len == 0))
			return false;
	}
	return len >= LP_NAME_MIN;
}

bool lp_name_of_user(const char *user, char name_r[LP_NAME_MAX + 1])
{
	const char *at = strrchr(user, '@');
	size_t len = at == NULL ? strlen(user) : (size_t)(at - user);

	if (len > LP_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = user[i];

		/* ASCII only: tolower() would depend on the process locale */
		name_r[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	name_r[len] = '\0';
	return lp_name_is_valid(name_r);
}
