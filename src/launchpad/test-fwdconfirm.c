/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "launchpad-private.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

/* Issue 16: confirming a forwarding address by a mailed link - tokens
   stored hashed, single use, expiring, bound to their user; the mail
   counters; the mail itself; the relay's URL. */

static time_t test_clock = 1700000000;
static char test_dir[] = "/tmp/lp-fwdconfirm-XXXXXX";

static time_t test_now(void)
{
	return test_clock;
}

static struct lp_config *test_config(void)
{
	struct lp_config *config;
	struct lp_error err;
	char text[1024];

	snprintf(text, sizeof(text),
		 "cache_path = %s/cache.tdb\n"
		 "web_url = https://mail.example.org\n"
		 "web_smtp_url = smtp://127.0.0.1:25\n"
		 "web_smtp_from = noreply@example.org\n"
		 "web_confirm_ttl = 24h\n"
		 "domain ubuntu.com = ubuntumembers\n", test_dir);
	if (lp_config_parse("test", text, &config, &err) < 0) {
		printf("Bail out! config: %s\n", err.text);
		exit(99);
	}
	return config;
}

static struct lp_context *test_context(const struct lp_config *config)
{
	struct lp_context *ctx;
	struct lp_error err;

	if (lp_context_create(config, NULL, &ctx, &err) < 0) {
		printf("Bail out! context: %s\n", err.text);
		exit(99);
	}
	ctx->now = test_now;
	return ctx;
}

static struct lp_config *config;
static struct lp_context *ctx;

static void test_token_syntax(void)
{
	char good[LP_FWDCONFIRM_TOKEN_HEX + 1];

	test_begin("fwdconfirm: token syntax");
	memset(good, 'a', LP_FWDCONFIRM_TOKEN_HEX);
	good[LP_FWDCONFIRM_TOKEN_HEX] = '\0';
	test_assert(lp_fwdconfirm_token_is_valid(good));
	good[3] = 'A';
	test_assert(!lp_fwdconfirm_token_is_valid(good));
	good[3] = 'g';
	test_assert(!lp_fwdconfirm_token_is_valid(good));
	good[3] = 'a';
	good[LP_FWDCONFIRM_TOKEN_HEX - 1] = '\0';
	test_assert(!lp_fwdconfirm_token_is_valid(good));
	test_assert(!lp_fwdconfirm_token_is_valid(""));
	test_end();
}

static void test_single_use(void)
{
	struct lp_fwdconfirm c = { .user = "alice@ubuntu.com" }, got;
	enum lp_fwdconfirm_result res;
	char token[LP_FWDCONFIRM_TOKEN_HEX + 1], token2[sizeof(token)];
	char key[128];
	struct lp_error err;
	struct lp_name_set keys = { 0 };
	unsigned char hash[crypto_hash_sha256_BYTES];
	char hex[sizeof(hash) * 2 + 1];

	test_begin("fwdconfirm: single use, bound to its user, stored hashed");
	strcpy(c.fwd.address, "alice@example.net");
	c.fwd.keep = true;
	test_assert(lp_fwdconfirm_create(ctx, &c, token, &err) == 0);
	test_assert(lp_fwdconfirm_token_is_valid(token));
	test_assert(lp_fwdconfirm_create(ctx, &c, token2, &err) == 0);
	test_assert(strcmp(token, token2) != 0);
	/* only the SHA-256 is a key; the token appears nowhere */
	test_assert(lp_cache_keys(ctx, LP_KEY_FWDCONFIRM, &keys, &err) == 0);
	test_assert(keys.count == 2);
	crypto_hash_sha256(hash, (const unsigned char *)token, strlen(token));
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	test_assert(lp_name_set_contains(&keys, hex));
	for (unsigned int i = 0; i < keys.count; i++) {
		json_t *obj;
		char *dump;

		snprintf(key, sizeof(key), LP_KEY_FWDCONFIRM "%s",
			 keys.names[i]);
		test_assert(strstr(keys.names[i], token) == NULL);
		test_assert(lp_cache_get(ctx, key, LP_KIND_FWDCONFIRM,
					 &obj) == 1);
		dump = json_dumps(obj, 0);
		test_assert(dump != NULL && strstr(dump, token) == NULL &&
			    strstr(dump, token2) == NULL);
		free(dump);
		json_decref(obj);
	}
	lp_name_set_free(&keys);

	/* another name: refused, and left for its owner */
	test_assert(lp_fwdconfirm_check(ctx, token, "bob", true, &got, &res,
					&err) == 0);
	test_assert(res == LP_FWDCONFIRM_OTHER_USER && got.user[0] == '\0');
	/* a look does not use it up */
	test_assert(lp_fwdconfirm_check(ctx, token, "alice", false, &got,
					&res, &err) == 0);
	test_assert(res == LP_FWDCONFIRM_OK);
	test_assert_strcmp(got.user, "alice@ubuntu.com");
	test_assert_strcmp(got.fwd.address, "alice@example.net");
	test_assert(got.fwd.keep && got.created == test_clock);
	test_assert(lp_fwdconfirm_check(ctx, token, "alice", true, &got,
					&res, &err) == 0);
	test_assert(res == LP_FWDCONFIRM_OK);
	/* used */
	test_assert(lp_fwdconfirm_check(ctx, token, "alice", true, &got,
					&res, &err) == 0);
	test_assert(res == LP_FWDCONFIRM_UNKNOWN);
	/* a token never issued, or not a token at all */
	token[0] = token[0] == '0' ? '1' : '0';
	test_assert(lp_fwdconfirm_check(ctx, token, "alice", true, &got,
					&res, &err) == 0);
	test_assert(res == LP_FWDCONFIRM_UNKNOWN);
	test_assert(lp_fwdconfirm_check(ctx, "x\r\nBcc: a@b.c", "alice",
					true, &got, &res, &err) == 0);
	test_assert(res == LP_FWDCONFIRM_UNKNOWN);

	/* expired at exactly web_confirm_ttl, and then gone */
	test_clock += 24 * 3600 - 1;
	test_assert(lp_fwdconfirm_check(ctx, token2, "alice", false, &got,
					&res, &err) == 0);
	test_assert(res == LP_FWDCONFIRM_OK);
	test_clock += 1;
	/* a look at an expired link changes nothing; using it drops it */
	test_assert(lp_fwdconfirm_check(ctx, token2, "alice", false, &got,
					&res, &err) == 0);
	test_assert(res == LP_FWDCONFIRM_EXPIRED && got.user[0] == '\0');
	test_assert(lp_fwdconfirm_check(ctx, token2, "alice", true, &got,
					&res, &err) == 0);
	test_assert(res == LP_FWDCONFIRM_EXPIRED);
	test_clock -= 24 * 3600;
	test_assert(lp_fwdconfirm_check(ctx, token2, "alice", true, &got,
					&res, &err) == 0);
	test_assert(res == LP_FWDCONFIRM_UNKNOWN);

	/* nothing is stored for a user or address that is not valid */
	strcpy(c.fwd.address, "alice@example.net\r\nBcc: x@example.org");
	test_assert(lp_fwdconfirm_create(ctx, &c, token, &err) < 0);
	strcpy(c.fwd.address, "alice@example.net");
	strcpy(c.user, "Alice@ubuntu.com");
	test_assert(lp_fwdconfirm_create(ctx, &c, token, &err) < 0);
	test_end();
}

static void test_expired_pruned(void)
{
	struct lp_fwdconfirm c = { .user = "carol@ubuntu.com" };
	char token[LP_FWDCONFIRM_TOKEN_HEX + 1];
	struct lp_name_set keys = { 0 };
	struct lp_error err;
	time_t saved = test_clock;

	test_begin("fwdconfirm: pruning drops expired links and counts");
	test_assert(lp_fwdconfirm_prune(ctx, &err) >= 0);
	strcpy(c.fwd.address, "carol@example.net");
	test_assert(lp_fwdconfirm_create(ctx, &c, token, &err) == 0);
	test_clock += 3600;
	test_assert(lp_fwdconfirm_create(ctx, &c, token, &err) == 0);
	test_clock += 24 * 3600 - 1;
	test_assert(lp_fwdconfirm_prune(ctx, &err) >= 1);
	test_assert(lp_cache_keys(ctx, LP_KEY_FWDCONFIRM, &keys, &err) == 0);
	test_assert(keys.count == 1);
	lp_name_set_free(&keys);
	test_clock += 1;
	test_assert(lp_fwdconfirm_prune(ctx, &err) >= 1);
	test_assert(lp_cache_keys(ctx, LP_KEY_FWDCONFIRM, &keys, &err) == 0);
	test_assert(keys.count == 0);
	lp_name_set_free(&keys);
	test_clock = saved;
	test_end();
}

static void test_limits(void)
{
	enum lp_fwdconfirm_limit limit;
	struct lp_error err;
	struct lp_name_set keys = { 0 };
	time_t saved = test_clock;

	test_begin("fwdconfirm: mails per user per hour, per address per day");
	for (unsigned int i = 0; i < LP_FWDCONFIRM_USER_MAILS; i++) {
		test_assert_idx(lp_fwdconfirm_limit_take(ctx, "dan@ubuntu.com",
							 "d1@example.net",
							 &limit, &err) == 0 &&
				limit == LP_FWDCONFIRM_LIMIT_OK, i);
	}
	test_assert(lp_fwdconfirm_limit_take(ctx, "dan@ubuntu.com",
					     "d2@example.net", &limit,
					     &err) == 0);
	test_assert(limit == LP_FWDCONFIRM_LIMIT_USER);
	/* the refused one was not counted against d2 */
	for (unsigned int i = 0; i < LP_FWDCONFIRM_ADDRESS_MAILS; i++) {
		char user[32];

		snprintf(user, sizeof(user), "u%u@ubuntu.com", i);
		test_assert_idx(lp_fwdconfirm_limit_take(ctx, user,
							 "D2@Example.NET",
							 &limit, &err) == 0 &&
				limit == LP_FWDCONFIRM_LIMIT_OK, i);
	}
	/* the address, however cased, is full for the day */
	test_assert(lp_fwdconfirm_limit_take(ctx, "erin@ubuntu.com",
					     "d2@example.net", &limit,
					     &err) == 0);
	test_assert(limit == LP_FWDCONFIRM_LIMIT_ADDRESS);
	/* the user's hour passes; the address's day has not */
	test_clock += LP_FWDCONFIRM_USER_SECS;
	test_assert(lp_fwdconfirm_limit_take(ctx, "dan@ubuntu.com",
					     "d3@example.net", &limit,
					     &err) == 0);
	test_assert(limit == LP_FWDCONFIRM_LIMIT_OK);
	test_assert(lp_fwdconfirm_limit_take(ctx, "dan@ubuntu.com",
					     "d2@example.net", &limit,
					     &err) == 0);
	test_assert(limit == LP_FWDCONFIRM_LIMIT_ADDRESS);
	/* counted on disk: a new context (a restarted daemon) agrees */
	lp_context_destroy(&ctx);
	ctx = test_context(config);
	test_assert(lp_fwdconfirm_limit_take(ctx, "erin@ubuntu.com",
					     "d2@example.net", &limit,
					     &err) == 0);
	test_assert(limit == LP_FWDCONFIRM_LIMIT_ADDRESS);
	test_clock += LP_FWDCONFIRM_ADDRESS_SECS;
	test_assert(lp_fwdconfirm_limit_take(ctx, "erin@ubuntu.com",
					     "d2@example.net", &limit,
					     &err) == 0);
	test_assert(limit == LP_FWDCONFIRM_LIMIT_OK);
	/* a day later everything but erin's and d2's new count is gone */
	test_clock += 1;
	test_assert(lp_fwdconfirm_prune(ctx, &err) >= 1);
	test_assert(lp_cache_keys(ctx, LP_KEY_FWDMAIL, &keys, &err) == 0);
	test_assert(keys.count == 2);
	test_assert(lp_name_set_contains(&keys, "user/erin@ubuntu.com"));
	test_assert(lp_name_set_contains(&keys, "addr/d2@example.net"));
	lp_name_set_free(&keys);
	test_clock = saved;
	test_end();
}

static void test_message(void)
{
	struct lp_fwdconfirm c = { .user = "alice@ubuntu.com" };
	const char *token =
		"0123456789abcdef0123456789abcdef"
		"0123456789abcdef0123456789abcdef";
	char *msg, *body;

	test_begin("fwdconfirm: the mail");
	strcpy(c.fwd.address, "alice@example.net");
	msg = lp_fwdconfirm_message(config, &c, token, 0);
	test_assert(msg != NULL);
	if (msg != NULL) {
		body = strstr(msg, "\r\n\r\n");
		test_assert(body != NULL);
		test_assert(strncmp(msg, "From: noreply@example.org\r\n"
				    "To: alice@example.net\r\n", 50) == 0);
		test_assert(strstr(msg, "Date: Thu, 01 Jan 1970 00:00:00 "
				   "+0000\r\n") != NULL);
		test_assert(strstr(msg, "Auto-Submitted: auto-generated\r\n")
			    != NULL);
		test_assert(strstr(body, "https://mail.example.org/forward/"
				   "confirm?t=0123456789abcdef") != NULL);
		test_assert(strstr(body, "for 24 hours") != NULL);
		/* every line ends in CRLF; no bare CR or LF */
		for (const char *p = msg; *p != '\0'; p++) {
			if (*p == '\n')
				test_assert(p > msg && p[-1] == '\r');
			if (*p == '\r')
				test_assert(p[1] == '\n');
		}
	}
	free(msg);
	/* nothing unchecked reaches a header */
	strcpy(c.fwd.address, "alice@example.net\r\nBcc: x@example.org");
	test_assert(lp_fwdconfirm_message(config, &c, token, 0) == NULL);
	strcpy(c.fwd.address, "alice@example.net");
	strcpy(c.user, "alice@ubuntu.com\nBcc: x@example.org");
	test_assert(lp_fwdconfirm_message(config, &c, token, 0) == NULL);
	strcpy(c.user, "alice@ubuntu.com");
	test_assert(lp_fwdconfirm_message(config, &c, "abc", 0) == NULL);
	test_end();
}

static void test_smtp_url(void)
{
	static const struct {
		const char *url;
		bool ok;
	} tests[] = {
		{ "smtp://127.0.0.1:25", true },
		{ "smtp://localhost", true },
		{ "smtp://[::1]:2525", true },
		{ "smtps://mail.example.org:465", true },
		{ "smtp://mail.example.org", false },
		{ "smtps://user:pw@mail.example.org", false },
		{ "smtps://mail.example.org/helo", false },
		{ "smtps://mail.example.org?x", false },
		{ "http://127.0.0.1:25", false },
		{ "SMTP://127.0.0.1", false },
		{ "smtp://127.0.0.1 :25", false },
		{ "127.0.0.1:25", false },
	};
	struct lp_config *cfg;
	struct lp_error err;
	char text[512];

	test_begin("fwdconfirm: web_smtp_url and web_smtp_from");
	for (unsigned int i = 0; i < LP_N_ELEMENTS(tests); i++) {
		snprintf(text, sizeof(text), "web_smtp_url = %s\n"
			 "domain ubuntu.com = ubuntumembers\n", tests[i].url);
		test_assert_idx((lp_config_parse("t", text, &cfg, &err) == 0) ==
				tests[i].ok, i);
		if (cfg != NULL)
			test_assert_idx(strcmp(cfg->web_smtp_url,
					       tests[i].url) == 0, i);
		lp_config_free(&cfg);
	}
	test_assert(lp_config_parse("t", "web_smtp_from = Web <a@b.org>\n"
				    "domain ubuntu.com = ubuntumembers\n",
				    &cfg, &err) < 0);
	test_assert(strstr(err.text, "web_smtp_from") != NULL);
	test_assert(lp_config_parse("t", "domain ubuntu.com = ubuntumembers\n",
				    &cfg, &err) == 0);
	test_assert(cfg->web_smtp_url == NULL && cfg->web_smtp_from == NULL &&
		    cfg->web_confirm_ttl == 24 * 3600);
	lp_config_free(&cfg);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_token_syntax,
		test_single_use,
		test_expired_pruned,
		test_limits,
		test_message,
		test_smtp_url,
		NULL
	};
	char path[sizeof(test_dir) + 16];
	int ret;

	if (sodium_init() < 0 || mkdtemp(test_dir) == NULL) {
		printf("Bail out! setup\n");
		return 99;
	}
	config = test_config();
	ctx = test_context(config);
	ret = test_run(cases);
	lp_context_destroy(&ctx);
	lp_config_free(&config);
	snprintf(path, sizeof(path), "%s/cache.tdb", test_dir);
	(void)unlink(path);
	(void)rmdir(test_dir);
	lp_global_deinit();
	return ret;
}
