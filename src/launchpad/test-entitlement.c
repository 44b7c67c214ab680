/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* lp_entitlement_check() end to end against tests/lpfake.py: every row of
   the decision table (doc/DESIGN.md section 4), negative caching, outages.
   The context's clock is the fake test_clock, so TTL and stale_grace
   boundaries are exact and cost no waiting. */

#include "test-lpfake.h"
#include "tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEST_POSITIVE_TTL 3600
#define TEST_NEGATIVE_TTL 600
#define TEST_STALE_GRACE 7200

static struct lp_config *config;
static struct lp_context *ctx;

static void test_fresh_start(void)
{
	struct lp_error err;

	lpfake_reset();
	test_assert(lp_cache_invalidate_all(ctx, &err) >= 0);
}

static void test_decision_rows(void)
{
	static const struct {
		const char *login, *user;
		enum lp_verdict_kind kind;
		enum lp_deny_reason reason;
		const char *text;
	} tests[] = {
		{ "alice@ubuntu.com", "alice@ubuntu.com", LP_VERDICT_ALLOW,
		  LP_DENY_NONE, "" },
		{ "Alice", "alice@ubuntu.com", LP_VERDICT_ALLOW,
		  LP_DENY_NONE, "" },
		{ "bob@ubuntu.com", "bob@ubuntu.com", LP_VERDICT_DENY,
		  LP_DENY_NOT_VALID, "account not valid" },
		{ "carol@ubuntu.com", "carol@ubuntu.com", LP_VERDICT_DENY,
		  LP_DENY_NOT_VALID, "account not valid" },
		{ "dave@ubuntu.com", "dave@ubuntu.com", LP_VERDICT_DENY,
		  LP_DENY_NO_COC, "Code of Conduct not signed" },
		{ "erin@ubuntu.com", "erin@ubuntu.com", LP_VERDICT_DENY,
		  LP_DENY_NOT_MEMBER, "not a member of ~ubuntumembers" },
		{ "frank@ubuntu.com", "frank@ubuntu.com", LP_VERDICT_ALLOW,
		  LP_DENY_NONE, "" },
		{ "kim@ubuntu.com", "kim@ubuntu.com", LP_VERDICT_DENY,
		  LP_DENY_NOT_MEMBER, "not a member of ~ubuntumembers" },
		{ "kim@KUBUNTU.org", "kim@kubuntu.org", LP_VERDICT_ALLOW,
		  LP_DENY_NONE, "" },
		{ "lena@lubuntu.me", "lena@lubuntu.me", LP_VERDICT_ALLOW,
		  LP_DENY_NONE, "" },
		{ "eddie@edubuntu.org", "eddie@edubuntu.org", LP_VERDICT_ALLOW,
		  LP_DENY_NONE, "" },
		{ "stu@ubuntustudio.com", "stu@ubuntustudio.com",
		  LP_VERDICT_ALLOW, LP_DENY_NONE, "" },
		{ "sam@ubuntu.net", "sam@ubuntu.net", LP_VERDICT_ALLOW,
		  LP_DENY_NONE, "" },
		{ "nobody-here@ubuntu.com", "nobody-here@ubuntu.com",
		  LP_VERDICT_DENY, LP_DENY_NO_PERSON, "no such Launchpad user" },
		{ "ubuntumembers@ubuntu.com", "ubuntumembers@ubuntu.com",
		  LP_VERDICT_DENY, LP_DENY_NO_COC,
		  "Code of Conduct not signed" },
	};
	struct lp_entitlement ent;

	test_begin("decision rows");
	test_fresh_start();
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		lp_entitlement_check(ctx, tests[i].login, &ent);
		test_assert_idx(ent.login == LP_LOGIN_OK, i);
		test_assert_strcmp(ent.user, tests[i].user);
		test_assert_idx(ent.verdict.kind == tests[i].kind, i);
		test_assert_idx(ent.verdict.reason == tests[i].reason, i);
		test_assert_idx(!ent.verdict.stale, i);
		test_assert_strcmp(ent.verdict.text, tests[i].text);
	}
	test_end();
}

static void test_hostile_logins(void)
{
	static const struct {
		const char *login;
		enum lp_login_result login_result;
		enum lp_deny_reason reason;
	} tests[] = {
		{ "alice@example.com", LP_LOGIN_BAD_DOMAIN, LP_DENY_DOMAIN },
		{ "alice@ubuntu.com.evil.org", LP_LOGIN_BAD_DOMAIN, LP_DENY_DOMAIN },
		{ "../etc@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "a@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "al ice@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "alice\n@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "alice%2f..@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "alice/participants@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "-alice@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "\xc3\xa5lice@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "@ubuntu.com", LP_LOGIN_BAD_NAME, LP_DENY_NAME },
	};
	struct lp_entitlement ent;

	test_begin("hostile logins make no request");
	test_fresh_start();
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		lp_entitlement_check(ctx, tests[i].login, &ent);
		test_assert_idx(ent.login == tests[i].login_result, i);
		test_assert_idx(ent.verdict.kind == LP_VERDICT_DENY, i);
		test_assert_idx(ent.verdict.reason == tests[i].reason, i);
		test_assert_idx(ent.from_cache, i);
	}
	test_assert(lpfake_count(NULL) == 0);
	test_end();
}

static void test_negative_cache(void)
{
	struct lp_entitlement ent;

	test_begin("negative cache");
	test_fresh_start();
	lp_entitlement_check(ctx, "nobody-here@ubuntu.com", &ent);
	test_assert(ent.verdict.reason == LP_DENY_NO_PERSON && !ent.from_cache);
	test_assert(lpfake_count(NULL) == 1);
	lp_entitlement_check(ctx, "nobody-here@ubuntu.com", &ent);
	test_assert(ent.verdict.reason == LP_DENY_NO_PERSON && ent.from_cache);
	test_assert(lpfake_count(NULL) == 1);
	/* the person appears; the negative record holds until it expires */
	test_assert(lpfake_post("/_fake/person", "{\"name\": \"nobody-here\"}") == 200);
	test_assert(lpfake_post("/_fake/team", "{\"team\": \"ubuntumembers\", "
		"\"members\": [\"alice\", \"bob\", \"carol\", \"dave\", "
		"\"ubuntu-doc-team\", \"nobody-here\"]}") == 200);
	test_clock += TEST_NEGATIVE_TTL - 1;
	lp_entitlement_check(ctx, "nobody-here@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_DENY && ent.from_cache);
	test_clock += 1;
	lp_entitlement_check(ctx, "nobody-here@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW && !ent.from_cache);
	test_assert(lpfake_count("/1.0/~nobody-here") == 2);

	/* a positive answer is cached too */
	lp_entitlement_check(ctx, "nobody-here@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW && ent.from_cache);

	/* refresh asks again and sees the team change at once */
	test_assert(lpfake_post("/_fake/team", "{\"team\": \"ubuntumembers\", "
		"\"members\": [\"alice\", \"bob\", \"carol\", \"dave\", "
		"\"ubuntu-doc-team\"]}") == 200);
	lp_entitlement_refresh(ctx, "nobody-here@ubuntu.com", &ent);
	test_assert(ent.verdict.reason == LP_DENY_NOT_MEMBER && !ent.from_cache);
	test_assert(lpfake_post("/_fake/person",
				"{\"name\": \"nobody-here\", \"delete\": true}") == 200);
	test_end();
}

static void test_outage(void)
{
	struct lp_entitlement ent;
	struct lp_verdict_record rec, rec2;
	time_t decided;

	test_begin("outage");
	test_fresh_start();
	lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW);
	decided = test_clock;
	test_assert(lp_cache_verdict_get(ctx, "alice@ubuntu.com", &rec) == 1);

	/* Launchpad down after the TTL: the expired allow is served */
	lpfake_reset();
	lpfake_fault(NULL, "503", 0, 0);
	test_clock = decided + TEST_POSITIVE_TTL + 1;
	lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW && ent.verdict.stale);
	test_assert(lpfake_count(NULL) == 1 + LP_HTTP_RETRIES);
	/* ... without moving the record's expiry */
	test_assert(lp_cache_verdict_get(ctx, "alice@ubuntu.com", &rec2) == 1);
	test_assert(rec2.expires_at == rec.expires_at);

	/* within the back-off nobody asks Launchpad again: a cold user
	   goes straight to TEMPFAIL */
	lp_entitlement_check(ctx, "erin@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_TEMPFAIL);
	test_assert(ent.from_cache);
	test_assert(strstr(ent.verdict.text, "not asking again") != NULL);
	test_assert(lpfake_count(NULL) == 1 + LP_HTTP_RETRIES);

	/* the last second of stale_grace, then TEMPFAIL (never a deny) */
	test_clock = decided + TEST_POSITIVE_TTL + TEST_STALE_GRACE;
	lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW && ent.verdict.stale);
	test_clock += 1;
	lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_TEMPFAIL);
	test_assert(ent.verdict.text[0] != '\0');

	/* an uncached user after the back-off: asked, failed, TEMPFAIL */
	test_clock += lp_lookup_outage_backoff(ctx);
	lpfake_reset();
	lpfake_fault(NULL, "503", 0, 0);
	lp_entitlement_check(ctx, "frank@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_TEMPFAIL && !ent.from_cache);
	test_assert(lpfake_count(NULL) == 1 + LP_HTTP_RETRIES);
	test_assert(lp_cache_verdict_get(ctx, "frank@ubuntu.com", &rec) == 0);

	/* a malformed answer is no outage, and no allow either */
	test_clock += lp_lookup_outage_backoff(ctx);
	lpfake_reset();
	lpfake_fault(NULL, "wrongtypes", 0, 0);
	lp_entitlement_check(ctx, "frank@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_TEMPFAIL);
	lpfake_reset();
	lpfake_fault("participants", "huge", 0, 0);
	lp_entitlement_check(ctx, "frank@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_TEMPFAIL);

	/* Launchpad is back: answers resume */
	lpfake_reset();
	lp_entitlement_check(ctx, "frank@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW && !ent.verdict.stale);
	lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW && !ent.verdict.stale);
	test_end();
}

static void test_deny_during_outage(void)
{
	struct lp_entitlement ent;

	test_begin("expired deny during outage");
	test_fresh_start();
	lp_entitlement_check(ctx, "erin@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_DENY);
	lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW);
	/* the person record is still fresh; the team record answers "not
	   a member" only for negative_ttl */
	test_clock += TEST_NEGATIVE_TTL - 1;
	lp_entitlement_check(ctx, "erin@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_DENY && ent.from_cache);
	test_clock += 1;
	lpfake_fault(NULL, "503", 0, 0);
	lp_entitlement_check(ctx, "erin@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_TEMPFAIL);
	test_assert(lpfake_count("/1.0/~ubuntumembers/participants") ==
		    2 + LP_HTTP_RETRIES);
	/* alice, a member, still answers from the team record */
	lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW && ent.from_cache);
	test_clock += lp_lookup_outage_backoff(ctx);
	lpfake_reset();
	test_end();
}

/* The web page's "Check again" mark (lp-recheck.c) sends root's next
   lookup to Launchpad once, however fresh what is cached; moved again, it
   does again. */
static void test_recheck_mark(void)
{
	struct lp_entitlement ent;
	struct lp_error err;
	struct timespec times[2];
	char path[1024];

	test_begin("recheck mark");
	test_fresh_start();
	test_assert(lpfake_post("/_fake/person", "{\"name\": \"marked\", "
				"\"is_ubuntu_coc_signer\": false}") == 200);
	test_assert(lpfake_post("/_fake/team", "{\"team\": \"ubuntumembers\", "
		"\"members\": [\"alice\", \"bob\", \"carol\", \"dave\", "
		"\"ubuntu-doc-team\", \"marked\"]}") == 200);
	lp_entitlement_check(ctx, "marked@ubuntu.com", &ent);
	test_assert(ent.verdict.reason == LP_DENY_NO_COC && !ent.from_cache);
	test_assert(lpfake_post("/_fake/person", "{\"name\": \"marked\", "
				"\"is_ubuntu_coc_signer\": true}") == 200);
	test_clock += 10;
	/* no mark: the denial stays cached */
	lp_entitlement_check(ctx, "marked@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_DENY && ent.from_cache);
	/* the web daemon's context made web_state_dir */
	(void)mkdir(config->web_state_dir, 0700);
	test_assert(lp_recheck_request(config, "marked", &err) == 0);
	lp_entitlement_check(ctx, "marked@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW && !ent.from_cache);
	/* honoured: the next lookups are answered from the cache */
	lp_entitlement_check(ctx, "marked@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW && ent.from_cache);
	/* pressed again (the mark moved): asked again, once */
	test_assert(lpfake_post("/_fake/person", "{\"name\": \"marked\", "
				"\"is_ubuntu_coc_signer\": false}") == 200);
	snprintf(path, sizeof(path), "%s/recheck/marked",
		 config->web_state_dir);
	times[0].tv_sec = times[1].tv_sec = 1000000000;
	times[0].tv_nsec = times[1].tv_nsec = 0;
	test_assert(utimensat(AT_FDCWD, path, times, 0) == 0);
	lp_entitlement_check(ctx, "marked@ubuntu.com", &ent);
	test_assert(ent.verdict.reason == LP_DENY_NO_COC && !ent.from_cache);
	lp_entitlement_check(ctx, "marked@ubuntu.com", &ent);
	test_assert(ent.verdict.reason == LP_DENY_NO_COC && ent.from_cache);
	/* a symlink is no mark, and a mark never makes a name out of a
	   path */
	test_assert(unlink(path) == 0 && symlink("/etc/passwd", path) == 0);
	lp_entitlement_check(ctx, "marked@ubuntu.com", &ent);
	test_assert(ent.from_cache);
	test_assert(lp_recheck_request(config, "marked", &err) < 0);
	test_assert(unlink(path) == 0);
	test_assert(lp_recheck_request(config, "../x", &err) < 0);
	test_assert(lpfake_post("/_fake/person",
				"{\"name\": \"marked\", \"delete\": true}") == 200);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_decision_rows,
		test_hostile_logins,
		test_negative_cache,
		test_outage,
		test_deny_during_outage,
		test_recheck_mark,
		NULL
	};
	return test_lpfake_main(test_run, tests, NULL, TEST_POSITIVE_TTL,
				TEST_NEGATIVE_TTL, TEST_STALE_GRACE, 10,
				&config, &ctx);
}
