/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Logins as typed ("Alice@Ubuntu.com", "alice") to a Launchpad name and a
   configured domain: decision rows 1 and 2, before anything is looked up. */

#include "launchpad-private.h"

#include <string.h>

static bool lp_login_byte_is_valid(unsigned char c)
{
	/* Printable ASCII without space: nothing that could split a log
	   line, a protocol field or a multi-byte sequence. */
	return c >= 0x21 && c < 0x7f;
}

/* Copies src[0..len) lower-cased into dest (size > len), refusing any
   byte lp_login_byte_is_valid() refuses. */
static bool lp_login_copy_lower(char *dest, const char *src, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		char c = src[i];

		if (!lp_login_byte_is_valid((unsigned char)c))
			return false;
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		dest[i] = c;
	}
	dest[len] = '\0';
	return true;
}

enum lp_login_result
lp_login_parse(const struct lp_config *config, const char *login,
	       char name_r[LP_NAME_MAX + 1],
	       const struct lp_domain **domain_r)
{
	char name[LP_NAME_MAX + 1], domain_buf[LP_DOMAIN_MAX + 1];
	const struct lp_domain *domain;
	const char *at;
	size_t name_len, domain_len;

	*domain_r = NULL;
	name_r[0] = '\0';
	if (login == NULL)
		return LP_LOGIN_BAD_NAME;

	/* Row 1 first: the domain. The split is at the last '@' so that
	   "a@b@ubuntu.com" asks about the name "a@b", which row 2 refuses. */
	at = strrchr(login, '@');
	if (at == NULL) {
		if (config->domains_count == 0)
			return LP_LOGIN_BAD_DOMAIN;
		domain = &config->domains[0];
		name_len = strlen(login);
	} else {
		domain_len = strlen(at + 1);
		if (domain_len > LP_DOMAIN_MAX ||
		    !lp_login_copy_lower(domain_buf, at + 1, domain_len))
			return LP_LOGIN_BAD_DOMAIN;
		domain = lp_config_find_domain(config, domain_buf);
		if (domain == NULL)
			return LP_LOGIN_BAD_DOMAIN;
		name_len = (size_t)(at - login);
	}

	/* Row 2: the name. Too long is invalid, never truncated. */
	if (name_len > LP_NAME_MAX ||
	    !lp_login_copy_lower(name, login, name_len) ||
	    !lp_name_is_valid(name))
		return LP_LOGIN_BAD_NAME;

	memcpy(name_r, name, name_len + 1);
	*domain_r = domain;
	return LP_LOGIN_OK;
}

bool lp_login_is_canonical(const struct lp_config *config, const char *user)
{
	char name[LP_NAME_MAX + 1];
	const struct lp_domain *domain;
	size_t name_len;

	if (lp_login_parse(config, user, name, &domain) != LP_LOGIN_OK ||
	    strchr(user, '@') == NULL)
		return false;
	name_len = strlen(name);
	return strlen(user) == name_len + 1 + strlen(domain->domain) &&
		strncmp(user, name, name_len) == 0 &&
		strcmp(user + name_len + 1, domain->domain) == 0;
}
