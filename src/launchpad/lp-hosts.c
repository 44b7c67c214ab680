/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The `backends` list of dovecot-launchpad.conf.ext (lp-config.c's
   LP_CONFIG_TYPE_HOSTS); placement on them is lp-backend.c's. */

#include "launchpad-private.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool lp_backend_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '.' || c == '-' || c == ':';
}

static bool lp_backend_is_blank(char c)
{
	return c == ' ' || c == ',';
}

void lp_backend_hosts_free(char ***hosts, unsigned int count)
{
	unsigned int i;

	if (*hosts == NULL)
		return;
	for (i = 0; i < count; i++)
		free((*hosts)[i]);
	free(*hosts);
	*hosts = NULL;
}

int lp_backend_hosts_parse(const char *str, char ***hosts_r,
			   unsigned int *count_r, char *what,
			   size_t what_size)
{
	char **hosts = NULL, *host;
	unsigned int count = 0, i;
	const char *p = str, *end;
	size_t len;

	*hosts_r = NULL;
	*count_r = 0;
	while (*p != '\0') {
		while (lp_backend_is_blank(*p))
			p++;
		if (*p == '\0')
			break;
		for (end = p; *end != '\0' && !lp_backend_is_blank(*end); end++)
			;
		len = (size_t)(end - p);
		if (count == LP_BACKENDS_MAX) {
			snprintf(what, what_size, "backends: more than %d hosts",
				 LP_BACKENDS_MAX);
			goto fail;
		}
		if (len > LP_BACKEND_HOST_MAX) {
			snprintf(what, what_size,
				 "backends: host '%.64s...' longer than %d",
				 p, LP_BACKEND_HOST_MAX);
			goto fail;
		}
		host = strndup(p, len);
		if (host == NULL) {
			snprintf(what, what_size, "out of memory");
			goto fail;
		}
		for (i = 0; i < len; i++) {
			if (host[i] >= 'A' && host[i] <= 'Z')
				host[i] = (char)(host[i] - 'A' + 'a');
			if (!lp_backend_host_char(host[i]))
				break;
		}
		if (i == len && strchr(host, ':') != NULL) {
			struct in6_addr addr;

			/* with a ':' it must be an IPv6 address, so that
			   "10.0.0.1:143" is not taken for one */
			if (inet_pton(AF_INET6, host, &addr) != 1)
				i = 0;
		}
		if (i < len || host[0] == '-' || host[0] == '.') {
			/* A port is not part of a host: the backend_*_port
			   keys give the ports of every backend. */
			snprintf(what, what_size, "backends: '%.64s' is not a "
				 "host name or IP address (no port, no "
				 "brackets)", host);
			free(host);
			goto fail;
		}
		for (i = 0; i < count; i++) {
			if (strcmp(hosts[i], host) == 0) {
				snprintf(what, what_size,
					 "backends: %.64s listed twice", host);
				free(host);
				goto fail;
			}
		}
		char **grown = realloc(hosts, (count + 1) * sizeof(*hosts));
		if (grown == NULL) {
			snprintf(what, what_size, "out of memory");
			free(host);
			goto fail;
		}
		hosts = grown;
		hosts[count++] = host;
		p = end;
	}
	*hosts_r = hosts;
	*count_r = count;
	return 0;
fail:
	lp_backend_hosts_free(&hosts, count);
	return -1;
}
