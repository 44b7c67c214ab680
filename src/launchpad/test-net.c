/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Address lists (web_trusted_proxies): strict parsing and matching. */

#include "launchpad.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static bool test_match(const char *list, const char *addr)
{
	struct lp_net *nets;
	struct lp_error err;
	unsigned char a[16];
	unsigned int count;
	bool ret;

	if (lp_net_list_parse(list, &nets, &count, &err) < 0 ||
	    lp_net_addr_parse(addr, a) < 0) {
		printf("Bail out! %s / %s\n", list, addr);
		exit(99);
	}
	ret = lp_net_list_match(nets, count, a);
	free(nets);
	return ret;
}

static void test_net_parse(void)
{
	static const char *const good[] = {
		"", " , ", "127.0.0.1", "::1", "127.0.0.1, ::1",
		"10.0.0.0/8 192.168.1.0/24\t2001:db8::/32",
		"0.0.0.0/0", "::/0", "198.51.100.7/32", "::ffff:10.1.2.3",
	};
	static const char *const bad[] = {
		"localhost", "127.1", "127.0.0.1/33", "10.0.0.1/8",
		"2001:db8::1/64", "::1/129", "1.2.3.4/", "1.2.3.4/x",
		"1.2.3.4/-1", "01.2.3.4", "1.2.3.4.5", ":::", "fe80::1%eth0",
		"1.2.3.4;5.6.7.8",
	};
	struct lp_net *nets;
	struct lp_error err;
	unsigned int count;

	test_begin("address lists parse strictly");
	for (unsigned int i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		test_assert_idx(lp_net_list_parse(good[i], &nets, &count,
						  &err) == 0, i);
		free(nets);
	}
	test_assert(lp_net_list_parse("", &nets, &count, &err) == 0 &&
		    nets == NULL && count == 0);
	test_assert(lp_net_list_parse(NULL, &nets, &count, &err) == 0 &&
		    count == 0);
	test_assert(lp_net_list_parse("127.0.0.1, ::1 10.0.0.0/8", &nets,
				      &count, &err) == 0 && count == 3);
	free(nets);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		test_assert_idx(lp_net_list_parse(bad[i], &nets, &count,
						  &err) == -1 &&
				err.kind == LP_ERR_CONFIG && nets == NULL, i);
	}
	test_end();
}

static void test_net_match(void)
{
	test_begin("address lists match");
	test_assert(test_match("127.0.0.1", "127.0.0.1"));
	test_assert(!test_match("127.0.0.1", "127.0.0.2"));
	test_assert(!test_match("", "127.0.0.1"));
	test_assert(test_match("10.0.0.0/8", "10.255.1.2"));
	test_assert(!test_match("10.0.0.0/8", "11.0.0.1"));
	test_assert(test_match("192.168.1.128/25", "192.168.1.200"));
	test_assert(!test_match("192.168.1.128/25", "192.168.1.100"));
	test_assert(test_match("::1", "::1"));
	test_assert(!test_match("::1", "::2"));
	test_assert(test_match("2001:db8::/32", "2001:db8:ffff::1"));
	test_assert(!test_match("2001:db8::/32", "2001:db9::1"));
	/* IPv4 nets match IPv4-mapped IPv6 peers (dual-stack sockets) */
	test_assert(test_match("127.0.0.1", "::ffff:127.0.0.1"));
	test_assert(!test_match("::1", "127.0.0.1"));
	test_assert(test_match("0.0.0.0/0", "203.0.113.9"));
	test_assert(!test_match("0.0.0.0/0", "2001:db8::1"));
	test_assert(test_match("::/0", "2001:db8::1"));
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_net_parse,
		test_net_match,
		NULL
	};

	return test_run(tests);
}
