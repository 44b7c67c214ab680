/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The in-memory state of dovecot-launchpad-web: tokens, sessions, pending
   sign-ins, rate-limit buckets, and the HTML escaping every page uses;
   and what the workers' jobs fall back to when none can run. */

#include "web-private.h"
#include "tap.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_CONFIG "domain ubuntu.com = ubuntumembers\nweb_session_ttl = 60\n"

static struct web_server *server;
static double test_clock_secs = 1000.0;

static double test_clock(void)
{
	return test_clock_secs;
}

void web_log(enum lp_log_level level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
}

static void test_html_escape(void)
{
	static const struct {
		const char *in, *out;
	} tests[] = {
		{ "", "" },
		{ "alice", "alice" },
		{ "<script>", "&lt;script&gt;" },
		{ "a&b", "a&amp;b" },
		{ "\"x\" 'y'", "&quot;x&quot; &#39;y&#39;" },
		{ "kim's <b>laptop</b> & \"phone\"",
		  "kim&#39;s &lt;b&gt;laptop&lt;/b&gt; &amp; &quot;phone&quot;" },
		{ "\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9" },
	};

	test_begin("html escape");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		struct web_buf buf = { 0 };

		web_buf_append(&buf, "[");
		web_buf_html(&buf, tests[i].in);
		web_buf_append(&buf, "]");
		test_assert_idx(!buf.failed && buf.len == strlen(buf.data), i);
		test_assert_idx(strncmp(buf.data + 1, tests[i].out,
					strlen(tests[i].out)) == 0 &&
				buf.data[strlen(tests[i].out) + 1] == ']', i);
		web_buf_free(&buf);
	}
	test_end();
}

static void test_tokens(void)
{
	char a[WEB_TOKEN_HEX + 1], b[WEB_TOKEN_HEX + 1], c[WEB_TOKEN_HEX + 1];

	test_begin("tokens");
	web_token_new(a);
	web_token_new(b);
	test_assert(strlen(a) == WEB_TOKEN_HEX);
	test_assert(strspn(a, "0123456789abcdef") == WEB_TOKEN_HEX);
	test_assert(strcmp(a, b) != 0);
	test_assert(web_token_equal(a, a));
	test_assert(!web_token_equal(a, b));
	memcpy(c, a, sizeof(c));
	c[WEB_TOKEN_HEX - 1] = c[WEB_TOKEN_HEX - 1] == '0' ? '1' : '0';
	test_assert(!web_token_equal(a, c));
	c[WEB_TOKEN_HEX - 1] = '\0';
	test_assert(!web_token_equal(c, c));	/* short: never equal */
	test_assert(!web_token_equal(a, NULL));
	test_assert(!web_token_equal(NULL, NULL));
	test_assert(!web_token_equal("", ""));
	test_end();
}

static void test_sessions(void)
{
	struct web_session *s1, *s2, *found;
	char id[WEB_TOKEN_HEX + 1];

	test_begin("sessions");
	s1 = web_session_create(server, "alice");
	s2 = web_session_create(server, "frank");
	test_assert(s1 != s2);
	test_assert_strcmp(s1->name, "alice");
	test_assert(strcmp(s1->id, s1->csrf) != 0);
	test_assert(s1->expires > time(NULL) && s1->expires <= time(NULL) + 60);
	test_assert(web_session_find(server, s1->id) == s1);
	test_assert(web_session_find(server, s2->id) == s2);
	web_token_new(id);
	test_assert(web_session_find(server, id) == NULL);
	test_assert(web_session_find(server, NULL) == NULL);
	test_assert(web_session_find(server, "") == NULL);
	/* expired: not found, and the slot is wiped */
	memcpy(id, s1->id, sizeof(id));
	s1->expires = time(NULL) - 1;
	test_assert(web_session_find(server, id) == NULL);
	test_assert(s1->id[0] == '\0' && s1->name[0] == '\0');
	/* destroyed: gone */
	memcpy(id, s2->id, sizeof(id));
	web_session_destroy(s2);
	test_assert(web_session_find(server, id) == NULL);
	/* a full table evicts the session closest to expiry */
	for (unsigned int i = 0; i < WEB_SESSIONS_MAX; i++) {
		found = web_session_create(server, "bulk");
		found->expires += i + 1;
		if (i == 10)
			memcpy(id, found->id, sizeof(id));
	}
	found = web_session_create(server, "late");
	test_assert(web_session_find(server, found->id) == found);
	test_assert(web_session_find(server, id) != NULL);
	web_session_prune(server);
	test_assert(web_session_find(server, found->id) == found);
	for (unsigned int i = 0; i < WEB_SESSIONS_MAX; i++)
		web_session_destroy(&server->sessions[i]);
	test_end();
}

static void test_logins(void)
{
	struct web_login *login;
	char state[WEB_TOKEN_HEX + 1], browser[WEB_TOKEN_HEX + 1];

	test_begin("pending sign-ins");
	login = web_login_create(server, "192.0.2.1");
	memcpy(state, login->state, sizeof(state));
	memcpy(browser, login->browser, sizeof(browser));
	test_assert(web_login_take(server, state, browser));
	test_assert(!web_login_take(server, state, browser));	/* single use */

	/* another browser: refused, and the state is burnt */
	login = web_login_create(server, "192.0.2.1");
	memcpy(state, login->state, sizeof(state));
	memcpy(browser, login->browser, sizeof(browser));
	test_assert(!web_login_take(server, state, state));
	test_assert(!web_login_take(server, state, browser));

	/* expired */
	login = web_login_create(server, "192.0.2.1");
	login->expires = time(NULL) - 1;
	memcpy(state, login->state, sizeof(state));
	memcpy(browser, login->browser, sizeof(browser));
	test_assert(!web_login_take(server, state, browser));
	test_assert(!web_login_take(server, NULL, browser));
	test_assert(!web_login_take(server, state, NULL));
	test_end();
}

static void test_limits(void)
{
	test_begin("rate limits");
	for (unsigned int i = 0; i < 3; i++)
		test_assert_idx(web_limit_take(server, WEB_LIMIT_ADDR,
					       "l:192.0.2.1", 3, 1000.0) ==
				WEB_LIMIT_OK, i);
	test_assert(web_limit_take(server, WEB_LIMIT_ADDR, "l:192.0.2.1", 3,
				   1000.0) == WEB_LIMIT_EMPTY);
	/* other keys have their own bucket */
	test_assert(web_limit_take(server, WEB_LIMIT_ADDR, "l:192.0.2.2", 3,
				   1000.0) == WEB_LIMIT_OK);
	test_assert(web_limit_take(server, WEB_LIMIT_USER, "u:alice", 1,
				   1000.0) == WEB_LIMIT_OK);
	test_assert(web_limit_take(server, WEB_LIMIT_USER, "u:alice", 1,
				   1000.0) == WEB_LIMIT_EMPTY);
	/* refill: one token per per_secs, never above the burst */
	test_clock_secs += 1000.0;
	test_assert(web_limit_take(server, WEB_LIMIT_USER, "u:alice", 1,
				   1000.0) == WEB_LIMIT_OK);
	test_assert(web_limit_take(server, WEB_LIMIT_USER, "u:alice", 1,
				   1000.0) == WEB_LIMIT_EMPTY);
	test_end();
}

/* Issue 12: a flood of new addresses filled the table and reused the
   longest-idle bucket at a full burst, freeing a client held at 429. */
static void test_limits_flood(void)
{
	unsigned int refused = 0;
	char key[32];

	test_begin("rate limits: a flood cannot free a limited client");
	memset(server->limits, 0, sizeof(server->limits));
	memset(server->user_limits, 0, sizeof(server->user_limits));
	/* the victim: limited for 3000 s */
	for (unsigned int i = 0; i < 3; i++)
		(void)web_limit_take(server, WEB_LIMIT_ADDR, "l:198.51.100.1",
				     3, 1000.0);
	test_assert(web_limit_take(server, WEB_LIMIT_ADDR, "l:198.51.100.1",
				   3, 1000.0) == WEB_LIMIT_EMPTY);
	/* a user at their limit */
	test_assert(web_limit_take(server, WEB_LIMIT_USER, "u:alice", 1,
				   1000.0) == WEB_LIMIT_OK);
	/* the flood: more keys than the table, each bucket refilling in
	   1 s; once the table is full new keys are refused */
	for (unsigned int i = 0; i < WEB_LIMITS_MAX + 100; i++) {
		snprintf(key, sizeof(key), "l:10.0.%u.%u", i / 256, i % 256);
		if (web_limit_take(server, WEB_LIMIT_ADDR, key, 3, 1.0) ==
		    WEB_LIMIT_FULL)
			refused++;
	}
	/* (the victim holds one slot) */
	test_assert(refused == 100 + 1);
	test_assert(web_limit_take(server, WEB_LIMIT_ADDR, "l:198.51.100.1",
				   3, 1000.0) == WEB_LIMIT_EMPTY);
	/* the flood's buckets refill; new clients get them, the victim's
	   (not refilled) and the user's (another table) stay */
	test_clock_secs += 10.0;
	for (unsigned int i = 0; i < WEB_LIMITS_MAX + 100; i++) {
		snprintf(key, sizeof(key), "l:10.1.%u.%u", i / 256, i % 256);
		test_assert_idx(web_limit_take(server, WEB_LIMIT_ADDR, key, 3,
					       1.0) != WEB_LIMIT_EMPTY, i);
	}
	test_assert(web_limit_take(server, WEB_LIMIT_ADDR, "l:198.51.100.1",
				   3, 1000.0) == WEB_LIMIT_EMPTY);
	test_assert(web_limit_take(server, WEB_LIMIT_USER, "u:alice", 1,
				   1000.0) == WEB_LIMIT_EMPTY);
	/* once refilled itself, the victim is served again */
	test_clock_secs += 1000.0;
	test_assert(web_limit_take(server, WEB_LIMIT_ADDR, "l:198.51.100.1",
				   3, 1000.0) == WEB_LIMIT_OK);
	test_end();
}

static void test_client_key(void)
{
	static const struct {
		const char *addr, *key;
	} tests[] = {
		{ "192.0.2.1", "192.0.2.1" },
		{ "::ffff:192.0.2.1", "192.0.2.1" },
		{ "2001:db8:1:2::1", "2001:db8:1:2::/64" },
		{ "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64" },
		{ "2001:db8:1:3::1", "2001:db8:1:3::/64" },
		{ "::1", "::/64" },
	};
	unsigned char addr[16];
	char key[WEB_CLIENT_MAX];

	test_begin("client key: IPv4 address, IPv6 /64");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		test_assert_idx(lp_net_addr_parse(tests[i].addr, addr) == 0, i);
		web_client_key(addr, key, sizeof(key));
		test_assert_strcmp(key, tests[i].key);
	}
	test_end();
}

static void test_resume(struct web_request *req)
{
	(void)req;
}

/* A job no worker can run is answered at once, as a failure: never an
   allow, never a confirmed sign-in, never a hang. */
static void test_jobs_unanswerable(void)
{
	struct web_request req = { .server = server };
	const char *users[] = { "alice@ubuntu.com", "bob@ubuntu.com" };
	const char *pairs[] = { "openid.mode", "check_authentication", NULL };
	const struct lp_entitlement *ent;

	test_begin("jobs: answered as failed when no worker runs");
	web_workers_preinit(server);
	server->stopping = true;
	web_job_entitlements(&req, users, 2, false, test_resume);
	test_assert(req.job.done && req.job.resume == test_resume);
	test_assert(server->queue_head == NULL);
	for (unsigned int i = 0; i < 2; i++) {
		ent = web_job_entitlement(&req, users[i]);
		test_assert_idx(ent != NULL &&
				ent->verdict.kind == LP_VERDICT_TEMPFAIL, i);
	}
	test_assert(web_job_entitlement(&req, "carol@ubuntu.com") == NULL);
	web_job_sso_post(&req, pairs, test_resume);
	test_assert(req.job.done && req.job.sso_ret == -1);
	web_job_free(&req);
	server->stopping = false;
	test_end();
}

static void test_openid_answer(void)
{
	static const struct {
		const char *answer;
		bool valid;
	} tests[] = {
		{ "ns:http://specs.openid.net/auth/2.0\nis_valid:true\n", true },
		{ "is_valid:true", true },
		{ "is_valid:false\n", false },
		{ "is_valid:true \n", false },
		{ "x-is_valid:true\n", false },
		{ "", false },
	};
	char buf[128];

	test_begin("openid: check_authentication's is_valid:true line");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", tests[i].answer);
		test_assert_idx(web_openid_answer_is_valid(buf) ==
				tests[i].valid, i);
	}
	test_end();
}

/* Issue 12: 1024 pending sign-ins, the oldest evicted: a flood made
   every victim's sign-in fail. */
static void test_logins_bounded(void)
{
	struct web_login *login, *first;
	char state[WEB_TOKEN_HEX + 1], browser[WEB_TOKEN_HEX + 1];
	char vstate[WEB_TOKEN_HEX + 1], vbrowser[WEB_TOKEN_HEX + 1];
	char client[32];

	test_begin("pending sign-ins: bounded per address");
	memset(server->logins, 0, sizeof(server->logins));
	/* one address keeps its newest WEB_LOGINS_PER_CLIENT */
	first = web_login_create(server, "203.0.113.5");
	memcpy(state, first->state, sizeof(state));
	memcpy(browser, first->browser, sizeof(browser));
	for (unsigned int i = 0; i < WEB_LOGINS_PER_CLIENT; i++)
		test_assert_idx(web_login_create(server, "203.0.113.5") != NULL,
				i);
	test_assert(!web_login_take(server, state, browser));

	/* a victim's sign-in in flight */
	memset(server->logins, 0, sizeof(server->logins));
	login = web_login_create(server, "198.51.100.1");
	memcpy(vstate, login->state, sizeof(vstate));
	memcpy(vbrowser, login->browser, sizeof(vbrowser));
	/* a flood from one address never takes more than its share */
	for (unsigned int i = 0; i < WEB_LOGINS_MAX * 2; i++)
		(void)web_login_create(server, "203.0.113.5");
	/* a flood from many addresses fills the table ... */
	for (unsigned int i = 0; i < WEB_LOGINS_MAX * 2; i++) {
		snprintf(client, sizeof(client), "10.0.%u.%u", i / 256,
			 i % 256);
		(void)web_login_create(server, client);
	}
	/* ... then takes room from whoever holds most, and refuses once
	   every address holds one */
	snprintf(client, sizeof(client), "192.0.2.200");
	test_assert(web_login_create(server, client) == NULL);
	/* the victim's sign-in survived it all */
	test_assert(web_login_take(server, vstate, vbrowser));
	/* and an expired one makes room again */
	server->logins[7].expires = time(NULL) - 1;
	test_assert(web_login_create(server, client) != NULL);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_html_escape,
		test_tokens,
		test_sessions,
		test_logins,
		test_limits,
		test_limits_flood,
		test_client_key,
		test_logins_bounded,
		test_jobs_unanswerable,
		test_openid_answer,
		NULL
	};
	struct lp_error err;
	int ret;

	server = calloc(1, sizeof(*server));
	if (server != NULL)
		server->clock = test_clock;
	if (server == NULL ||
	    lp_config_parse("test.conf", TEST_CONFIG, &server->config,
			    &err) < 0) {
		printf("Bail out! %s\n", server == NULL ? "calloc" : err.text);
		return 99;
	}
	ret = test_run(tests);
	lp_config_free(&server->config);
	free(server);
	return ret;
}
