/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* lp-url.c: every URL decision, on URLs as curl parses them. */

#include "launchpad-private.h"
#include "tap.h"

#include <string.h>

static void test_url_is_under(void)
{
	static const struct {
		const char *api_url, *url;
		bool under;
	} tests[] = {
		{ "http://127.0.0.1:80/1.0", "http://127.0.0.1:80/1.0/~alice", true },
		{ "http://127.0.0.1:80/1.0", "http://127.0.0.1/1.0/~alice", true },
		{ "http://127.0.0.1:80/1.0", "HTTP://127.0.0.1:80/1.0/~a?ws.size=1", true },
		{ "http://127.0.0.1:80/1.0", "http://127.0.0.1:80/1.0evil", false },
		{ "http://127.0.0.1:80/1.0", "http://127.0.0.1:80/1.0evil/~a", false },
		{ "http://127.0.0.1:80/1.0", "http://127.0.0.1:80/1.0", false },
		{ "http://127.0.0.1:80/1.0", "https://127.0.0.1:80/1.0/~a", false },
		{ "http://127.0.0.1:80/1.0", "http://127.0.0.1:81/1.0/~a", false },
		{ "http://127.0.0.1:80/1.0", "http://127.0.0.2:80/1.0/~a", false },
		{ "http://127.0.0.1:80/1.0", "http://x@127.0.0.1:80/1.0/~a", false },
		{ "http://127.0.0.1:80/1.0", "http://127.0.0.1:80/1.0/../admin", false },
		{ "http://127.0.0.1:80/1.0", "http://203.0.113.1/1.0/~a", false },
		{ "http://127.0.0.1:80/1.0", "/1.0/~a", false },
		{ "http://127.0.0.1:80/1.0", "ftp://127.0.0.1:80/1.0/~a", false },
		{ "https://api.launchpad.net/1.0", "https://api.launchpad.net:443/1.0/~a", true },
		{ "https://api.launchpad.net/1.0", "https://API.launchpad.net/1.0/~a", true },
		{ "https://api.launchpad.net/1.0", "https://api.launchpad.net.evil.org/1.0/~a", false },
		{ "https://api.launchpad.net/1.0", "https://api.launchpad.net@evil.org/1.0/~a", false },
		{ "https://api.launchpad.net/1.0", "http://api.launchpad.net/1.0/~a", false },
	};

	test_begin("url is under api_url");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		test_assert_idx(lp_url_is_under(tests[i].api_url, tests[i].url) ==
				tests[i].under, i);
	test_end();
}

static void test_url_origin_host(void)
{
	static const struct {
		const char *url, *origin, *host;	/* NULL: refused */
	} tests[] = {
		{ "https://mail.example.org/account",
		  "https://mail.example.org", "mail.example.org" },
		{ "https://mail.example.org", "https://mail.example.org",
		  "mail.example.org" },
		{ "http://127.0.0.1:8145/", "http://127.0.0.1:8145",
		  "127.0.0.1" },
		{ "https://[2001:db8::1]:8443/x", "https://[2001:db8::1]:8443",
		  "2001:db8::1" },
		{ "https://login.ubuntu.com/+openid",
		  "https://login.ubuntu.com", "login.ubuntu.com" },
		{ "ftp://example.org/", NULL, NULL },
		{ "example.org/x", NULL, NULL },
	};
	char buf[128];

	test_begin("url origin and host");
	for (unsigned int i = 0; i < LP_N_ELEMENTS(tests); i++) {
		if (tests[i].origin == NULL) {
			test_assert_idx(lp_url_origin(tests[i].url, buf,
						      sizeof(buf)) < 0, i);
			test_assert_idx(lp_url_host(tests[i].url, buf,
						    sizeof(buf)) < 0, i);
			continue;
		}
		test_assert_idx(lp_url_origin(tests[i].url, buf,
					      sizeof(buf)) == 0, i);
		test_assert_strcmp(buf, tests[i].origin);
		test_assert_idx(lp_url_host(tests[i].url, buf,
					    sizeof(buf)) == 0, i);
		test_assert_strcmp(buf, tests[i].host);
	}
	test_assert(lp_url_origin("https://mail.example.org/", buf, 10) < 0);
	test_end();
}

static void test_url_same_origin(void)
{
	static const char sso[] = "https://login.ubuntu.com/+openid";
	static const struct {
		const char *url;
		bool same;
	} tests[] = {
		{ "https://login.ubuntu.com/+id/abc", true },
		{ "https://LOGIN.ubuntu.com:443/+id/abc", true },
		{ "https://login.ubuntu.com/", true },
		{ "https://login.ubuntu.com", true },
		{ "http://login.ubuntu.com/+id/abc", false },
		{ "https://login.ubuntu.com:8443/+id/abc", false },
		{ "https://login.ubuntu.com.evil.org/+id/abc", false },
		{ "https://login.ubuntu.com@evil.org/+id/abc", false },
		{ "https://x@login.ubuntu.com/+id/abc", false },
		{ "http://203.0.113.1/+id/x", false },
		{ "/+id/abc", false },
		{ NULL, false },
	};

	test_begin("url same origin");
	for (unsigned int i = 0; i < LP_N_ELEMENTS(tests); i++)
		test_assert_idx(lp_url_same_origin(sso, tests[i].url) ==
				tests[i].same, i);
	test_end();
}

static void test_url_equal(void)
{
	static const char ours[] =
		"https://mail.example.org/openid/return?state=ab12";
	static const struct {
		const char *url;
		bool equal;
	} tests[] = {
		{ "https://mail.example.org/openid/return?state=ab12", true },
		{ "https://MAIL.example.org:443/openid/return?state=ab12",
		  true },
		{ "https://mail.example.org/openid/return?state=ab13", false },
		{ "https://mail.example.org/openid/return?state=ab12&x=1",
		  false },
		{ "https://mail.example.org/openid/return", false },
		{ "https://mail.example.org/openid/Return?state=ab12", false },
		{ "https://evil.example.org/openid/return?state=ab12", false },
		{ "http://mail.example.org/openid/return?state=ab12", false },
		{ "https://mail.example.org/openid/return?state=ab12#f",
		  false },
		{ "https://u@mail.example.org/openid/return?state=ab12",
		  false },
		{ NULL, false },
	};

	test_begin("url equal");
	for (unsigned int i = 0; i < LP_N_ELEMENTS(tests); i++)
		test_assert_idx(lp_url_equal(ours, tests[i].url) ==
				tests[i].equal, i);
	test_end();
}

static void test_url_add_query(void)
{
	static const char *const pairs[] = {
		"openid.ns", "http://specs.openid.net/auth/2.0",
		"openid.return_to", "https://m.example.org/r?state=ab&x=y z",
		NULL
	};
	static const char *const none[] = { NULL };
	char buf[512];

	test_begin("url add query");
	test_assert(lp_url_add_query("https://sso.example.org/+openid", pairs,
				     buf, sizeof(buf)) == 0);
	test_assert_strcmp(buf, "https://sso.example.org/+openid?"
			   "openid.ns=http%3a%2f%2fspecs.openid.net%2fauth%2f2.0"
			   "&openid.return_to=https%3a%2f%2fm.example.org%2fr"
			   "%3fstate%3dab%26x%3dy+z");
	/* it parses back to the same values */
	test_assert(lp_url_equal(buf, buf));
	test_assert(lp_url_add_query("https://sso.example.org/", none, buf,
				     sizeof(buf)) == 0);
	test_assert_strcmp(buf, "https://sso.example.org/");
	test_assert(lp_url_add_query("https://sso.example.org/+openid", pairs,
				     buf, 40) < 0);
	test_assert(lp_url_add_query("not a url", pairs, buf,
				     sizeof(buf)) < 0);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_url_is_under,
		test_url_origin_host,
		test_url_same_origin,
		test_url_equal,
		test_url_add_query,
		NULL
	};

	return test_run(tests);
}
