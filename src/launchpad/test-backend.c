/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Several backends: the `backends` keys, the rendezvous hash and the
   assignments kept in a real TDB (pinning, admin assignments, records
   that must not be re-hashed). */

#include "launchpad-private.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_USERS 2000

static char test_dir[] = "/tmp/lp-backend-XXXXXX";

static struct lp_config *test_config(const char *backends)
{
	struct lp_config *cfg;
	struct lp_error err;
	char text[1024];

	snprintf(text, sizeof(text),
		 "api_url = http://127.0.0.1:9/1.0\n"
		 "cache_path = %s/cache.tdb\nuid = 0\ngid = 0\n"
		 "backends = %s\n"
		 "domain ubuntu.com = ubuntumembers\n"
		 "domain kubuntu.org = kubuntu-members\n", test_dir, backends);
	if (lp_config_parse("backend.conf", text, &cfg, &err) < 0) {
		printf("Bail out! %s\n", err.text);
		exit(99);
	}
	return cfg;
}

static void test_backend_config(void)
{
	static const char *const bad[] = {
		"10.0.0.1:143", "[::1]", "a b a", "-host", "host_1",
		"h\xc3\xa9", ".x",
	};
	struct lp_config *cfg;
	struct lp_error err;
	char text[512];

	test_begin("backends: parsed strictly, empty is one server");
	test_assert(lp_config_parse("x.conf", "domain ubuntu.com = t1\n",
				    &cfg, &err) == 0);
	test_assert(cfg->backends == NULL && cfg->backends_count == 0);
	test_assert(cfg->backend_imap_port == 143 &&
		    cfg->backend_pop3_port == 110 &&
		    cfg->backend_lmtp_port == 24);
	lp_config_free(&cfg);

	test_assert(lp_config_parse("x.conf", "backends = 127.0.0.2, "
				    "Mail3.Example.org ::1\n"
				    "backend_imap_port = 10143\n"
				    "backend_lmtp_port = 2424\n"
				    "domain ubuntu.com = t1\n", &cfg,
				    &err) == 0);
	test_assert(cfg->backends_count == 3);
	test_assert_strcmp(cfg->backend_hosts[0], "127.0.0.2");
	test_assert_strcmp(cfg->backend_hosts[1], "mail3.example.org");
	test_assert_strcmp(cfg->backend_hosts[2], "::1");
	test_assert(cfg->backend_imap_port == 10143 &&
		    cfg->backend_lmtp_port == 2424);
	lp_config_free(&cfg);

	for (unsigned int i = 0; i < LP_N_ELEMENTS(bad); i++) {
		snprintf(text, sizeof(text), "domain ubuntu.com = t1\n"
			 "backends = %s\n", bad[i]);
		test_assert_idx(lp_config_parse("x.conf", text, &cfg,
						&err) < 0, i);
		test_assert_idx(strstr(err.text, "x.conf:2: backends") !=
				NULL, i);
	}
	test_assert(lp_config_parse("x.conf", "domain ubuntu.com = t1\n"
				    "backend_pop3_port = 0\n", &cfg,
				    &err) < 0);
	test_end();
}

static void test_backend_hash(void)
{
	const char *const two[] = { "127.0.0.2", "127.0.0.3" };
	const char *const three[] = { "127.0.0.2", "127.0.0.3", "127.0.0.4" };
	unsigned int counts[3] = { 0, 0, 0 }, moved = 0, i, a, b;
	char user[64];

	test_begin("rendezvous hash: fixed, even, minimal moves");
	/* Pinned values: a change here moves users between backends. */
	test_assert(lp_backend_weight("127.0.0.2", "alice@ubuntu.com") ==
		    0x43e7daec509cb5a0ULL);
	test_assert(lp_backend_weight("127.0.0.3", "alice@ubuntu.com") ==
		    0x07ce2ef62a76de58ULL);
	test_assert(lp_backend_weight("mail1.example.org",
				      "kim@kubuntu.org") ==
		    0xa51de7f9bb7a1c4cULL);
	test_assert(lp_backend_hash(two, 2, "alice@ubuntu.com") == 0);
	test_assert(lp_backend_hash(two, 1, "alice@ubuntu.com") == 0);

	for (i = 0; i < TEST_USERS; i++) {
		snprintf(user, sizeof(user), "user%u@ubuntu.com", i);
		a = lp_backend_hash(two, 2, user);
		b = lp_backend_hash(three, 3, user);
		counts[b]++;
		/* a third backend takes users, never swaps the others */
		test_assert_idx(b == a || b == 2, i);
		moved += b != a ? 1 : 0;
	}
	/* even within 10% of TEST_USERS / 3 each (the hash is fixed, so
	   this is a fact about these names, not a flaky statistic) */
	for (i = 0; i < 3; i++) {
		test_assert_idx(counts[i] > TEST_USERS / 3 * 9 / 10 &&
				counts[i] < TEST_USERS / 3 * 11 / 10, i);
	}
	test_assert(moved == counts[2]);
	test_end();
}

static struct lp_context *test_context(const struct lp_config *cfg)
{
	struct lp_context *ctx;
	struct lp_error err;

	if (lp_context_create(cfg, NULL, &ctx, &err) < 0) {
		printf("Bail out! %s\n", err.text);
		exit(99);
	}
	return ctx;
}

struct test_list {
	unsigned int count;
	char first[LP_USER_MAX + 1];
	enum lp_backend_source first_source;
};

static int test_list_cb(const char *user, const struct lp_backend_placement *p,
			void *context)
{
	struct test_list *list = context;

	if (list->count++ == 0) {
		snprintf(list->first, sizeof(list->first), "%s", user);
		list->first_source = p->source;
	}
	return 0;
}

static void test_backend_placement(void)
{
	struct lp_config *cfg = test_config("127.0.0.2 127.0.0.3"), *cfg3;
	struct lp_context *ctx = test_context(cfg), *ctx3;
	struct lp_backend_placement p;
	struct test_list list = { 0 };
	struct lp_error err;
	char hashed[LP_BACKEND_HOST_MAX + 1], key[LP_KEY_MAX];
	TDB_DATA k, v;

	test_begin("placement: pinned at first login, assignments win");
	test_assert(lp_backend_show(ctx, "alice@ubuntu.com", &p, &err) == 0);
	test_assert(p.source == LP_BACKEND_HASHED && p.configured);
	snprintf(hashed, sizeof(hashed), "%s", p.host);
	test_assert_strcmp(hashed, "127.0.0.2");
	/* only the canonical form names a mailbox */
	test_assert(lp_backend_show(ctx, "Alice@ubuntu.com", &p, &err) < 0);
	test_assert(lp_backend_show(ctx, "alice", &p, &err) < 0);
	test_assert(lp_backend_place(ctx, "alice@example.org", &p, &err) < 0);

	test_assert(lp_backend_place(ctx, "alice@ubuntu.com", &p, &err) == 0);
	test_assert(p.source == LP_BACKEND_PINNED);
	test_assert_strcmp(p.host, hashed);
	test_assert(lp_backend_show(ctx, "alice@ubuntu.com", &p, &err) == 1);
	test_assert(p.source == LP_BACKEND_PINNED);

	/* a backend added later does not move a pinned user, even one the
	   hash would now send elsewhere */
	cfg3 = test_config("127.0.0.4 127.0.0.2 127.0.0.3");
	/* one TDB opens once per process */
	lp_context_destroy(&ctx);
	ctx3 = test_context(cfg3);
	test_assert(lp_backend_place(ctx3, "alice@ubuntu.com", &p,
				     &err) == 0);
	test_assert_strcmp(p.host, hashed);
	test_assert(lp_backend_assign(ctx3, "kim@kubuntu.org", "127.0.0.4",
				      &err) == 0);
	lp_context_destroy(&ctx3);
	ctx = test_context(cfg);

	/* an admin's assignment wins, and is not overwritten by a pin */
	test_assert(lp_backend_assign(ctx, "alice@ubuntu.com", "127.0.0.9",
				      &err) < 0);
	test_assert(err.kind == LP_ERR_CONFIG);
	test_assert(lp_backend_assign(ctx, "alice@ubuntu.com", "127.0.0.3",
				      &err) == 0);
	test_assert(lp_backend_place(ctx, "alice@ubuntu.com", &p, &err) == 0);
	test_assert_strcmp(p.host, "127.0.0.3");
	test_assert(p.source == LP_BACKEND_ASSIGNED);

	/* assigned to a host that left `backends`: tempfail, no re-hash */
	test_assert(lp_backend_place(ctx, "kim@kubuntu.org", &p, &err) < 0);
	test_assert(err.kind == LP_ERR_CONFIG &&
		    strstr(err.text, "127.0.0.4") != NULL);
	test_assert(lp_backend_show(ctx, "kim@kubuntu.org", &p, &err) == 1);
	test_assert(!p.configured);

	/* an unreadable record: tempfail, never another backend */
	snprintf(key, sizeof(key), LP_KEY_BACKEND "%s", "frank@ubuntu.com");
	k.dptr = (unsigned char *)key;
	k.dsize = strlen(key);
	v.dptr = (unsigned char *)"{garbage";
	v.dsize = 8;
	test_assert(tdb_store(ctx->tdb, k, v, TDB_REPLACE) == 0);
	test_assert(lp_backend_place(ctx, "frank@ubuntu.com", &p, &err) < 0);
	test_assert(err.kind == LP_ERR_CORRUPT);
	test_assert(!lp_cache_exists(ctx->tdb, "backend/frank@ubuntu.com") ||
		    lp_backend_show(ctx, "frank@ubuntu.com", &p, &err) < 0);

	test_assert(lp_backend_list(ctx, test_list_cb, &list, &err) == 0);
	test_assert(list.count == 3);
	test_assert_strcmp(list.first, "alice@ubuntu.com");
	test_assert(list.first_source == LP_BACKEND_ASSIGNED);


	lp_config_free(&cfg3);
	lp_context_destroy(&ctx);
	lp_config_free(&cfg);
	test_end();
}

static void test_backend_none(void)
{
	struct lp_config *cfg = test_config("");
	struct lp_context *ctx = test_context(cfg);
	struct lp_backend_placement p;
	struct lp_error err;

	test_begin("no backends: nothing to place on");
	test_assert(lp_backend_place(ctx, "lena@ubuntu.com", &p, &err) < 0);
	test_assert(err.kind == LP_ERR_CONFIG);
	lp_context_destroy(&ctx);
	lp_config_free(&cfg);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_backend_config,
		test_backend_hash,
		test_backend_placement,
		test_backend_none,
		NULL
	};
	char path[64];
	int ret;

	if (mkdtemp(test_dir) == NULL) {
		printf("Bail out! mkdtemp failed\n");
		return 99;
	}
	ret = test_run(tests);
	snprintf(path, sizeof(path), "%s/cache.tdb", test_dir);
	unlink(path);
	rmdir(test_dir);
	return ret;
}
