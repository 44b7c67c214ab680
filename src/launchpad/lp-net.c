/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Address lists for web_trusted_proxies: which peers may name the real
   client in X-Real-IP.  Parsed strictly with inet_pton(): no host names,
   no octal or short forms. */

#include "launchpad.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LP_NET_TOKEN_MAX 64
#define LP_NET_LIST_MAX 64

int lp_net_addr_parse(const char *str, unsigned char addr_r[16])
{
	struct in_addr in4;

	if (strchr(str, ':') != NULL)
		return inet_pton(AF_INET6, str, addr_r) == 1 ? 0 : -1;
	if (inet_pton(AF_INET, str, &in4) != 1)
		return -1;
	memset(addr_r, 0, 10);
	addr_r[10] = addr_r[11] = 0xff;
	memcpy(addr_r + 12, &in4, 4);
	return 0;
}

static int lp_net_parse(const char *token, struct lp_net *net_r)
{
	char addr[LP_NET_TOKEN_MAX];
	const char *slash = strchr(token, '/');
	unsigned int bits, max;
	char *end;

	if (strlen(token) >= sizeof(addr))
		return -1;
	snprintf(addr, sizeof(addr), "%.*s",
		 (int)(slash == NULL ? strlen(token) :
		       (size_t)(slash - token)), token);
	if (lp_net_addr_parse(addr, net_r->addr) < 0)
		return -1;
	max = strchr(addr, ':') != NULL ? 128 : 32;
	if (slash == NULL) {
		bits = max;
	} else {
		if (slash[1] < '0' || slash[1] > '9')
			return -1;
		bits = (unsigned int)strtoul(slash + 1, &end, 10);
		if (*end != '\0' || bits > max)
			return -1;
	}
	net_r->bits = max == 32 ? bits + 96 : bits;
	/* host bits must be zero: "10.0.0.1/8" is a typo, not a net */
	for (unsigned int i = net_r->bits; i < 128; i++) {
		if ((net_r->addr[i / 8] & (0x80 >> (i % 8))) != 0)
			return -1;
	}
	return 0;
}

int lp_net_list_parse(const char *str, struct lp_net **nets_r,
		      unsigned int *count_r, struct lp_error *err)
{
	struct lp_net *nets = NULL;
	unsigned int count = 0;
	char token[LP_NET_TOKEN_MAX];
	const char *p = str == NULL ? "" : str;

	*nets_r = NULL;
	*count_r = 0;
	while (*p != '\0') {
		size_t len;

		p += strspn(p, ", \t");
		len = strcspn(p, ", \t");
		if (len == 0)
			break;
		if (len >= sizeof(token) || count == LP_NET_LIST_MAX) {
			lp_error_set(err, LP_ERR_CONFIG, "'%.*s': too long "
				     "(at most %d addresses)",
				     (int)(len < 40 ? len : 40), p,
				     LP_NET_LIST_MAX);
			free(nets);
			return -1;
		}
		memcpy(token, p, len);
		token[len] = '\0';
		p += len;
		if (count == 0 &&
		    (nets = calloc(LP_NET_LIST_MAX, sizeof(*nets))) == NULL) {
			lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
			return -1;
		}
		if (lp_net_parse(token, &nets[count]) < 0) {
			lp_error_set(err, LP_ERR_CONFIG, "'%s' is not an "
				     "IPv4/IPv6 address or network "
				     "(address/bits, host bits zero)", token);
			free(nets);
			return -1;
		}
		count++;
	}
	*nets_r = nets;
	*count_r = count;
	return 0;
}

bool lp_net_list_match(const struct lp_net *nets, unsigned int count,
		       const unsigned char addr[16])
{
	for (unsigned int n = 0; n < count; n++) {
		unsigned int full = nets[n].bits / 8, rest = nets[n].bits % 8;

		if (memcmp(nets[n].addr, addr, full) != 0)
			continue;
		if (rest != 0 &&
		    ((nets[n].addr[full] ^ addr[full]) &
		     (0xff << (8 - rest))) != 0)
			continue;
		return true;
	}
	return false;
}
