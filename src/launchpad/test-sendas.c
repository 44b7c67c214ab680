/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Who may send as what: lp_send_as_list() against tests/lpfake.py (alice
   is in three teams, kim in one, bans and leavers drop addresses) and the
   address match lp_send_as_allowed() with hostile input. */

#include "test-lpfake.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static struct lp_config *config;
static struct lp_context *ctx;

static void test_send_as_list(void)
{
	static const struct {
		const char *name, *first, *list;
		int count;
	} tests[] = {
		{ "alice", "ubuntu.com",
		  "alice@ubuntu.com alice@lubuntu.me alice@ubuntu.net", 3 },
		{ "alice", "ubuntu.net",
		  "alice@ubuntu.net alice@ubuntu.com alice@lubuntu.me", 3 },
		{ "kim", "kubuntu.org", "kim@kubuntu.org", 1 },
		{ "frank", "ubuntu.com", "frank@ubuntu.com", 1 },
	};
	size_t size = lp_send_as_bufsize(config);
	char *buf = malloc(size);
	struct lp_error err;

	test_begin("send as: every entitled domain");
	lpfake_reset();
	test_assert(lp_cache_invalidate_all(ctx, &err) >= 0);
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		const struct lp_domain *first =
			lp_config_find_domain(config, tests[i].first);

		test_assert_idx(lp_send_as_list(ctx, tests[i].name, first,
						 buf, size) == tests[i].count,
				i);
		test_assert_strcmp(buf, tests[i].list);
	}
	/* too small a buffer is an error, never a cut list */
	test_assert(lp_send_as_list(ctx, "alice",
				    lp_config_find_domain(config,
							  "ubuntu.com"),
				    buf, 20) == -1);

	/* a leaver of one team loses that domain (after the negative
	   cache's TTL: the verdict is re-decided) */
	test_assert(lpfake_post("/_fake/team", "{\"team\": \"ubuntu-smtp-test\","
				" \"members\": [\"sam\"]}") == 200);
	test_assert(lp_cache_invalidate(ctx, "alice", &err) >= 0);
	test_assert(lp_cache_invalidate_all(ctx, &err) >= 0);
	test_assert(lp_send_as_list(ctx, "alice",
				    lp_config_find_domain(config,
							  "ubuntu.com"),
				    buf, size) == 2);
	test_assert_strcmp(buf, "alice@ubuntu.com alice@lubuntu.me");
	/* a banned name is entitled nowhere else either */
	test_assert(lp_ban_set(ctx, "alice", "spam", &err) == 0);
	test_assert(lp_send_as_list(ctx, "alice",
				    lp_config_find_domain(config,
							  "ubuntu.com"),
				    buf, size) == 1);
	test_assert_strcmp(buf, "alice@ubuntu.com");
	test_assert(lp_ban_clear(ctx, "alice", &err) == 1);
	free(buf);
	test_end();
}

static void test_send_as_allowed(void)
{
	static const char list[] = "alice@ubuntu.com alice@lubuntu.me";
	static const struct {
		const char *address;
		bool allowed;
	} tests[] = {
		{ "alice@ubuntu.com", true },
		{ "alice@lubuntu.me", true },
		{ "Alice@Ubuntu.COM", true },
		{ "alice@kubuntu.org", false },
		{ "bob@ubuntu.com", false },
		{ "alice", false },
		{ "alice@ubuntu.co", false },
		{ "alice@ubuntu.com.evil", false },
		{ "lice@ubuntu.com", false },
		{ "alice@ubuntu.com alice@lubuntu.me", false },
		{ "alice@ubuntu.com\n", false },
		{ "", false },
		{ NULL, false },
	};

	test_begin("send as: address match");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		test_assert_idx(lp_send_as_allowed(list, tests[i].address) ==
				tests[i].allowed, i);
	test_assert(!lp_send_as_allowed(NULL, "alice@ubuntu.com"));
	test_assert(!lp_send_as_allowed("", "alice@ubuntu.com"));
	test_assert(lp_send_as_allowed("  alice@ubuntu.com  ",
				       "alice@ubuntu.com"));
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_send_as_allowed,
		test_send_as_list,
		NULL
	};
	return test_lpfake_main(test_run, tests, NULL, 3600, 600, 7200, 10,
				&config, &ctx);
}
