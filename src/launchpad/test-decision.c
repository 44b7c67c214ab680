/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad.h"
#include "tap.h"

#include <stdint.h>
#include <string.h>

#define TEST_NOW ((time_t)1700000000)
#define TEST_HOUR (60 * 60)
#define TEST_GRACE (7 * 24 * TEST_HOUR)
#define TEST_LOGIN_MAX 1024
#define TEST_GARBAGE 0xa5

/* What differs from a person who gets a mailbox. */
#define F_NO_DOMAIN	0x01
#define F_BAD_NAME	0x02
#define F_BANNED	0x04
#define F_NOT_VALID	0x08
#define F_NO_COC	0x10
#define F_NO_TEAM	0x20	/* facts.team == NULL */
#define F_NO_GRACE	0x40	/* stale_grace == 0 */

enum test_cache {
	C_NONE,		/* have_cached false */
	C_ALLOW,
	C_DENY,
	C_GARBAGE_ALLOW, /* have_cached false, yet cached_kind ALLOW */
};

static void test_decide_table(void)
{
	static const struct {
		const char *name;
		unsigned int flags;
		const char *ban_reason;
		enum lp_person_state person;
		enum lp_membership member;
		enum test_cache cache;
		time_t expires_at;	/* of the cached verdict */
		enum lp_verdict_kind kind;
		enum lp_deny_reason reason;
		bool stale;
		const char *text;
	} tests[] = {
		/* row 8 */
		{ "8 allow", 0, NULL, LP_PERSON_OK, LP_MEMBER_YES, C_NONE, 0,
		  LP_VERDICT_ALLOW, LP_DENY_NONE, false, "" },
		{ "8 allow, an old cached deny does not matter", 0, NULL,
		  LP_PERSON_OK, LP_MEMBER_YES, C_DENY, TEST_NOW - 1,
		  LP_VERDICT_ALLOW, LP_DENY_NONE, false, "" },
		/* row 1, before everything else */
		{ "1 domain", F_NO_DOMAIN, NULL, LP_PERSON_OK, LP_MEMBER_YES,
		  C_NONE, 0, LP_VERDICT_DENY, LP_DENY_DOMAIN, false,
		  "domain not configured" },
		{ "1 domain beats all", F_NO_DOMAIN | F_BAD_NAME | F_BANNED |
		  F_NOT_VALID | F_NO_COC, "x", LP_PERSON_UNKNOWN,
		  LP_MEMBER_UNKNOWN, C_ALLOW, TEST_NOW, LP_VERDICT_DENY,
		  LP_DENY_DOMAIN, false, "domain not configured" },
		/* row 2 */
		{ "2 name", F_BAD_NAME, NULL, LP_PERSON_OK, LP_MEMBER_YES,
		  C_NONE, 0, LP_VERDICT_DENY, LP_DENY_NAME, false,
		  "not a Launchpad name" },
		{ "2 name beats ban and outage", F_BAD_NAME | F_BANNED, NULL,
		  LP_PERSON_UNKNOWN, LP_MEMBER_UNKNOWN, C_NONE, 0,
		  LP_VERDICT_DENY, LP_DENY_NAME, false,
		  "not a Launchpad name" },
		/* row 3 */
		{ "3 banned", F_BANNED, NULL, LP_PERSON_OK, LP_MEMBER_YES,
		  C_NONE, 0, LP_VERDICT_DENY, LP_DENY_BANNED, false,
		  "user banned" },
		{ "3 banned, empty reason", F_BANNED, "", LP_PERSON_OK,
		  LP_MEMBER_YES, C_NONE, 0, LP_VERDICT_DENY, LP_DENY_BANNED,
		  false, "user banned" },
		{ "3 banned with reason", F_BANNED, "spam run 2024-05",
		  LP_PERSON_OK, LP_MEMBER_YES, C_NONE, 0, LP_VERDICT_DENY,
		  LP_DENY_BANNED, false, "user banned: spam run 2024-05" },
		{ "3 banned during an outage, cached allow", F_BANNED, NULL,
		  LP_PERSON_UNKNOWN, LP_MEMBER_UNKNOWN, C_ALLOW, TEST_NOW,
		  LP_VERDICT_DENY, LP_DENY_BANNED, false, "user banned" },
		/* row 4 */
		{ "4 no person", 0, NULL, LP_PERSON_NOT_FOUND, LP_MEMBER_YES,
		  C_NONE, 0, LP_VERDICT_DENY, LP_DENY_NO_PERSON, false,
		  "no such Launchpad user" },
		{ "4 no person, cached allow", 0, NULL, LP_PERSON_NOT_FOUND,
		  LP_MEMBER_UNKNOWN, C_ALLOW, TEST_NOW, LP_VERDICT_DENY,
		  LP_DENY_NO_PERSON, false, "no such Launchpad user" },
		/* row 5 */
		{ "5 suspended", 0, NULL, LP_PERSON_SUSPENDED, LP_MEMBER_YES,
		  C_NONE, 0, LP_VERDICT_DENY, LP_DENY_NOT_VALID, false,
		  "account not valid" },
		{ "5 not is_valid", F_NOT_VALID, NULL, LP_PERSON_OK,
		  LP_MEMBER_YES, C_NONE, 0, LP_VERDICT_DENY,
		  LP_DENY_NOT_VALID, false, "account not valid" },
		{ "5 not valid beats no coc", F_NOT_VALID | F_NO_COC, NULL,
		  LP_PERSON_OK, LP_MEMBER_NO, C_NONE, 0, LP_VERDICT_DENY,
		  LP_DENY_NOT_VALID, false, "account not valid" },
		{ "5 not valid, team unknown", F_NOT_VALID, NULL,
		  LP_PERSON_OK, LP_MEMBER_UNKNOWN, C_ALLOW, TEST_NOW,
		  LP_VERDICT_DENY, LP_DENY_NOT_VALID, false,
		  "account not valid" },
		/* row 6 */
		{ "6 no coc", F_NO_COC, NULL, LP_PERSON_OK, LP_MEMBER_YES,
		  C_NONE, 0, LP_VERDICT_DENY, LP_DENY_NO_COC, false,
		  "Code of Conduct not signed" },
		{ "6 no coc beats not member", F_NO_COC, NULL, LP_PERSON_OK,
		  LP_MEMBER_NO, C_NONE, 0, LP_VERDICT_DENY, LP_DENY_NO_COC,
		  false, "Code of Conduct not signed" },
		{ "6 no coc, team unknown", F_NO_COC, NULL, LP_PERSON_OK,
		  LP_MEMBER_UNKNOWN, C_ALLOW, TEST_NOW, LP_VERDICT_DENY,
		  LP_DENY_NO_COC, false, "Code of Conduct not signed" },
		/* row 7 */
		{ "7 not member", 0, NULL, LP_PERSON_OK, LP_MEMBER_NO, C_NONE,
		  0, LP_VERDICT_DENY, LP_DENY_NOT_MEMBER, false,
		  "not a member of ~ubuntumembers" },
		{ "7 not member, no team name", F_NO_TEAM, NULL, LP_PERSON_OK,
		  LP_MEMBER_NO, C_NONE, 0, LP_VERDICT_DENY,
		  LP_DENY_NOT_MEMBER, false, "not a member of the team" },
		/* unreachable: person unknown */
		{ "- cached allow within grace", 0, NULL, LP_PERSON_UNKNOWN,
		  LP_MEMBER_UNKNOWN, C_ALLOW, TEST_NOW - TEST_HOUR,
		  LP_VERDICT_ALLOW, LP_DENY_NONE, true, "" },
		{ "- cached allow at the end of grace", 0, NULL,
		  LP_PERSON_UNKNOWN, LP_MEMBER_UNKNOWN, C_ALLOW,
		  TEST_NOW - TEST_GRACE, LP_VERDICT_ALLOW, LP_DENY_NONE, true,
		  "" },
		{ "- cached allow not yet expired", 0, NULL,
		  LP_PERSON_UNKNOWN, LP_MEMBER_UNKNOWN, C_ALLOW,
		  TEST_NOW + TEST_HOUR, LP_VERDICT_ALLOW, LP_DENY_NONE, false,
		  "" },
		{ "- cached allow past grace", 0, NULL, LP_PERSON_UNKNOWN,
		  LP_MEMBER_UNKNOWN, C_ALLOW, TEST_NOW - TEST_GRACE - 1,
		  LP_VERDICT_TEMPFAIL, LP_DENY_NONE, false,
		  "Launchpad unreachable and no usable cached verdict" },
		{ "- cached deny expired", 0, NULL, LP_PERSON_UNKNOWN,
		  LP_MEMBER_UNKNOWN, C_DENY, TEST_NOW - TEST_HOUR,
		  LP_VERDICT_TEMPFAIL, LP_DENY_NONE, false,
		  "Launchpad unreachable and no usable cached verdict" },
		{ "- cached deny not expired", 0, NULL, LP_PERSON_UNKNOWN,
		  LP_MEMBER_UNKNOWN, C_DENY, TEST_NOW + TEST_HOUR,
		  LP_VERDICT_TEMPFAIL, LP_DENY_NONE, false,
		  "Launchpad unreachable and no usable cached verdict" },
		{ "- no cache", 0, NULL, LP_PERSON_UNKNOWN, LP_MEMBER_UNKNOWN,
		  C_NONE, 0, LP_VERDICT_TEMPFAIL, LP_DENY_NONE, false,
		  "Launchpad unreachable and no usable cached verdict" },
		{ "- no cache, kind left at allow", 0, NULL,
		  LP_PERSON_UNKNOWN, LP_MEMBER_UNKNOWN, C_GARBAGE_ALLOW,
		  TEST_NOW, LP_VERDICT_TEMPFAIL, LP_DENY_NONE, false,
		  "Launchpad unreachable and no usable cached verdict" },
		{ "- no grace, expired a second ago", F_NO_GRACE, NULL,
		  LP_PERSON_UNKNOWN, LP_MEMBER_UNKNOWN, C_ALLOW, TEST_NOW - 1,
		  LP_VERDICT_TEMPFAIL, LP_DENY_NONE, false,
		  "Launchpad unreachable and no usable cached verdict" },
		{ "- no grace, expires now", F_NO_GRACE, NULL,
		  LP_PERSON_UNKNOWN, LP_MEMBER_UNKNOWN, C_ALLOW, TEST_NOW,
		  LP_VERDICT_ALLOW, LP_DENY_NONE, false, "" },
		{ "- corrupt expiry far past", 0, NULL, LP_PERSON_UNKNOWN,
		  LP_MEMBER_UNKNOWN, C_ALLOW, (time_t)INT64_MIN,
		  LP_VERDICT_TEMPFAIL, LP_DENY_NONE, false,
		  "Launchpad unreachable and no usable cached verdict" },
		{ "- corrupt expiry far future", 0, NULL, LP_PERSON_UNKNOWN,
		  LP_MEMBER_UNKNOWN, C_ALLOW, (time_t)INT64_MAX,
		  LP_VERDICT_ALLOW, LP_DENY_NONE, false, "" },
		/* unreachable: person fine, team unknown */
		{ "7- team unknown, cached allow within grace", 0, NULL,
		  LP_PERSON_OK, LP_MEMBER_UNKNOWN, C_ALLOW,
		  TEST_NOW - TEST_HOUR, LP_VERDICT_ALLOW, LP_DENY_NONE, true,
		  "" },
		{ "7- team unknown, cached allow past grace", 0, NULL,
		  LP_PERSON_OK, LP_MEMBER_UNKNOWN, C_ALLOW,
		  TEST_NOW - TEST_GRACE - 1, LP_VERDICT_TEMPFAIL,
		  LP_DENY_NONE, false,
		  "Launchpad unreachable and no usable cached verdict" },
		{ "7- team unknown, cached deny expired", 0, NULL,
		  LP_PERSON_OK, LP_MEMBER_UNKNOWN, C_DENY,
		  TEST_NOW - TEST_HOUR, LP_VERDICT_TEMPFAIL, LP_DENY_NONE,
		  false, "Launchpad unreachable and no usable cached verdict" },
		{ "7- team unknown, no cache", 0, NULL, LP_PERSON_OK,
		  LP_MEMBER_UNKNOWN, C_NONE, 0, LP_VERDICT_TEMPFAIL,
		  LP_DENY_NONE, false,
		  "Launchpad unreachable and no usable cached verdict" },
	};

	test_begin("decide table");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		unsigned int flags = tests[i].flags;
		const struct lp_facts facts = {
			.domain_configured = (flags & F_NO_DOMAIN) == 0,
			.name_valid = (flags & F_BAD_NAME) == 0,
			.banned = (flags & F_BANNED) != 0,
			.ban_reason = tests[i].ban_reason,
			.team = (flags & F_NO_TEAM) != 0 ? NULL :
				"ubuntumembers",
			.person = tests[i].person,
			.is_valid = (flags & F_NOT_VALID) == 0,
			.is_coc_signer = (flags & F_NO_COC) == 0,
			.member = tests[i].member,
			.have_cached = tests[i].cache == C_ALLOW ||
				tests[i].cache == C_DENY,
			.cached_kind = tests[i].cache == C_DENY ?
				LP_VERDICT_DENY : LP_VERDICT_ALLOW,
			.cached_reason = tests[i].cache == C_DENY ?
				LP_DENY_NOT_MEMBER : LP_DENY_NONE,
			.cached_expires_at = tests[i].expires_at,
			.now = TEST_NOW,
			.stale_grace = (flags & F_NO_GRACE) != 0 ? 0 :
				TEST_GRACE,
		};
		struct lp_verdict verdict;

		/* Every field is written, whatever was there. */
		memset(&verdict, TEST_GARBAGE, sizeof(verdict));
		lp_decide(&facts, &verdict);
		test_diag("%s", tests[i].name);
		test_assert_idx(verdict.kind == tests[i].kind, i);
		test_assert_idx(verdict.reason == tests[i].reason, i);
		test_assert_idx(verdict.stale == tests[i].stale, i);
		test_assert_strcmp(verdict.text, tests[i].text);
	}
	test_end();
}

static void test_decide_long_texts(void)
{
	char reason[LP_TEXT_MAX * 2], team[LP_TEXT_MAX * 2];
	struct lp_facts facts = {
		.domain_configured = true,
		.name_valid = true,
		.banned = true,
		.ban_reason = reason,
		.team = team,
		.person = LP_PERSON_OK,
		.is_valid = true,
		.is_coc_signer = true,
		.member = LP_MEMBER_NO,
		.now = TEST_NOW,
	};
	struct lp_verdict verdict;

	test_begin("decide long texts");
	memset(reason, 'r', sizeof(reason) - 1);
	reason[sizeof(reason) - 1] = '\0';
	memset(team, 't', sizeof(team) - 1);
	team[sizeof(team) - 1] = '\0';

	/* Truncated to the text buffer, never overflowing it. */
	lp_decide(&facts, &verdict);
	test_assert(verdict.kind == LP_VERDICT_DENY);
	test_assert(strlen(verdict.text) == LP_TEXT_MAX - 1);
	test_assert(strncmp(verdict.text, "user banned: rrr", 16) == 0);

	facts.banned = false;
	lp_decide(&facts, &verdict);
	test_assert(verdict.reason == LP_DENY_NOT_MEMBER);
	test_assert(strlen(verdict.text) == LP_TEXT_MAX - 1);
	test_assert(strncmp(verdict.text, "not a member of ~ttt", 20) == 0);
	test_end();
}

static void test_deny_reason_text(void)
{
	static const struct {
		enum lp_deny_reason reason;
		const char *text;
	} tests[] = {
		{ LP_DENY_NONE, "" },
		{ LP_DENY_DOMAIN, "domain not configured" },
		{ LP_DENY_NAME, "not a Launchpad name" },
		{ LP_DENY_BANNED, "user banned" },
		{ LP_DENY_NO_PERSON, "no such Launchpad user" },
		{ LP_DENY_NOT_VALID, "account not valid" },
		{ LP_DENY_NO_COC, "Code of Conduct not signed" },
		{ LP_DENY_NOT_MEMBER, "not a member of" },
		/* a corrupt cache record may carry any number */
		{ (enum lp_deny_reason)99, "unknown reason" },
	};

	test_begin("deny reason text");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		test_assert_strcmp(lp_deny_reason_text(tests[i].reason),
				   tests[i].text);
	test_end();
}

static void test_name_is_valid(void)
{
	static const struct {
		const char *name;
		bool valid;
	} tests[] = {
		{ "ab", true },
		{ "alice", true },
		{ "0day", true },
		{ "a-b", true },
		{ "a+b", true },
		{ "a.b", true },
		{ "ab-", true },
		{ "a12345678901234567890123456789012345678901234567890123456789012b",
		  true },	/* 64 */
		{ "a123456789012345678901234567890123456789012345678901234567890123b",
		  false },	/* 65 */
		{ "a", false },
		{ "", false },
		{ NULL, false },
		{ "-ab", false },
		{ ".ab", false },
		{ "+ab", false },
		{ "Alice", false },
		{ "a_b", false },
		{ "a b", false },
		{ "a@b", false },
		{ "a/b", false },
		{ "../x", false },
		{ "al\xc3\xaf" "ce", false },
	};

	test_begin("name is valid");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		test_assert_idx(lp_name_is_valid(tests[i].name) ==
				tests[i].valid, i);
	test_end();
}

static void test_login_parse(void)
{
	/* A login is repeat copies of ch followed by rest. */
	static const struct {
		unsigned int repeat;
		char ch;
		const char *rest;
		enum lp_login_result result;
		const char *name;	/* NULL: repeat copies of lower(ch) */
		const char *domain;
	} tests[] = {
		{ 0, 0, "alice@ubuntu.com", LP_LOGIN_OK, "alice",
		  "ubuntu.com" },
		{ 0, 0, "ALICE@UBUNTU.COM", LP_LOGIN_OK, "alice",
		  "ubuntu.com" },
		{ 0, 0, "alice", LP_LOGIN_OK, "alice", "ubuntu.com" },
		{ 0, 0, "Bob@Kubuntu.Org", LP_LOGIN_OK, "bob", "kubuntu.org" },
		{ 0, 0, "ubuntu.com", LP_LOGIN_OK, "ubuntu.com",
		  "ubuntu.com" },
		{ 0, 0, "a-b.c+d@kubuntu.org", LP_LOGIN_OK, "a-b.c+d",
		  "kubuntu.org" },
		{ 64, 'a', "", LP_LOGIN_OK, NULL, "ubuntu.com" },
		{ 64, 'A', "@UBUNTU.COM", LP_LOGIN_OK, NULL, "ubuntu.com" },
		/* row 2: bad names */
		{ 0, 0, "../x", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "a%2fb", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "a/b@ubuntu.com", LP_LOGIN_BAD_NAME, "", NULL },
		{ 65, 'a', "", LP_LOGIN_BAD_NAME, "", NULL },
		{ 65, 'a', "@ubuntu.com", LP_LOGIN_BAD_NAME, "", NULL },
		{ 300, 'a', "", LP_LOGIN_BAD_NAME, "", NULL },
		{ 300, 'a', "@ubuntu.com", LP_LOGIN_BAD_NAME, "", NULL },
		{ 900, 'a', "", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "@ubuntu.com", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "a@b@ubuntu.com", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "al\xc3\xaf" "ce", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "al\xc3\xaf" "ce@ubuntu.com", LP_LOGIN_BAD_NAME, "",
		  NULL },
		{ 0, 0, "ali\tce@ubuntu.com", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "alice\n", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "alice\r\n@ubuntu.com", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, " alice", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "alice\x7f", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "x", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "x@ubuntu.com", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "-alice", LP_LOGIN_BAD_NAME, "", NULL },
		{ 0, 0, "al_ice", LP_LOGIN_BAD_NAME, "", NULL },
		/* row 1: bad domains, checked before the name */
		{ 0, 0, "alice@", LP_LOGIN_BAD_DOMAIN, "", NULL },
		{ 0, 0, "alice@otherdomain.org", LP_LOGIN_BAD_DOMAIN, "",
		  NULL },
		{ 0, 0, "alice@ubuntu.com.", LP_LOGIN_BAD_DOMAIN, "", NULL },
		{ 0, 0, "alice@ubuntu.com ", LP_LOGIN_BAD_DOMAIN, "", NULL },
		{ 0, 0, "alice@ubuntu.com\n", LP_LOGIN_BAD_DOMAIN, "", NULL },
		{ 0, 0, "alice@ubunt\xc3\xba.com", LP_LOGIN_BAD_DOMAIN, "",
		  NULL },
		{ 0, 0, "alice@ubuntu.com@", LP_LOGIN_BAD_DOMAIN, "", NULL },
		{ 0, 0, "../x@otherdomain.org", LP_LOGIN_BAD_DOMAIN, "",
		  NULL },
		{ 0, 0, "a@b@otherdomain.org", LP_LOGIN_BAD_DOMAIN, "",
		  NULL },
		{ 300, 'a', "@x.org", LP_LOGIN_BAD_DOMAIN, "", NULL },
	};
	static const char conf[] =
		"domain ubuntu.com = ubuntumembers\n"
		"domain kubuntu.org = kubuntu-members\n";
	struct lp_config *config;
	struct lp_error err = { .kind = LP_ERR_NONE };
	char login[TEST_LOGIN_MAX], expected[LP_NAME_MAX + 1];

	test_begin("login parse");
	test_assert(lp_config_parse("t.conf", conf, &config, &err) == 0);
	if (config == NULL) {
		test_end();
		return;
	}
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		static const struct lp_domain sentinel;
		const struct lp_domain *domain = &sentinel;
		/* One spare byte past the buffer, to catch an overrun. */
		char name[LP_NAME_MAX + 2];
		unsigned int n = tests[i].repeat;

		memset(login, tests[i].ch, n);
		snprintf(login + n, sizeof(login) - n, "%s", tests[i].rest);
		memset(name, TEST_GARBAGE, sizeof(name));
		test_assert_idx(lp_login_parse(config, login, name, &domain) ==
				tests[i].result, i);
		test_assert_idx((unsigned char)name[LP_NAME_MAX + 1] ==
				TEST_GARBAGE, i);
		if (tests[i].name != NULL) {
			test_assert_strcmp(name, tests[i].name);
		} else {
			memset(expected, tests[i].ch | 0x20, n);
			expected[n] = '\0';
			test_assert_strcmp(name, expected);
		}
		if (tests[i].domain == NULL)
			test_assert_idx(domain == NULL, i);
		else
			test_assert_idx(domain != NULL &&
					strcmp(domain->domain,
					       tests[i].domain) == 0, i);
	}
	lp_config_free(&config);
	test_end();
}

static void test_login_parse_edge(void)
{
	const struct lp_config empty = { .domains_count = 0 };
	const struct lp_domain *domain;
	char name[LP_NAME_MAX + 1];

	test_begin("login parse edge");
	/* NULL is hostile input too, not a caller bug. */
	test_assert(lp_login_parse(&empty, NULL, name, &domain) ==
		    LP_LOGIN_BAD_NAME);
	test_assert(domain == NULL && name[0] == '\0');
	/* Without domains a bare name has no default domain. */
	test_assert(lp_login_parse(&empty, "alice", name, &domain) ==
		    LP_LOGIN_BAD_DOMAIN);
	test_assert(lp_login_parse(&empty, "alice@ubuntu.com", name,
				   &domain) == LP_LOGIN_BAD_DOMAIN);
	test_assert(domain == NULL);
	test_end();
}

static void test_deny_remedy(void)
{
	static const char conf[] =
		"web_launchpad_url = http://127.0.0.1:9/\n"
		"domain ubuntu.com = ubuntumembers\n";
	struct lp_config *config;
	struct lp_error err = { .kind = LP_ERR_NONE };
	struct lp_remedy r;

	test_begin("deny remedy");
	test_assert(lp_config_parse("t.conf", conf, &config, &err) == 0);
	if (config == NULL) {
		test_end();
		return;
	}
	lp_deny_remedy(config, LP_DENY_NO_COC, "dave", "ubuntumembers", &r);
	test_assert_strcmp(r.url, "http://127.0.0.1:9/codeofconduct");
	test_assert(r.recheck && strstr(r.text, "Code of Conduct") != NULL);
	lp_deny_remedy(config, LP_DENY_NOT_MEMBER, "erin", "ubuntumembers",
		       &r);
	test_assert_strcmp(r.url, "http://127.0.0.1:9/~ubuntumembers");
	test_assert_strcmp(r.link_text, "How to join ~ubuntumembers");
	test_assert(r.recheck && strstr(r.text, "~ubuntumembers") != NULL);
	lp_deny_remedy(config, LP_DENY_NOT_VALID, "gina", NULL, &r);
	test_assert_strcmp(r.url, "http://127.0.0.1:9/~gina");
	test_assert(r.recheck);
	lp_deny_remedy(config, LP_DENY_NO_PERSON, "nobody", NULL, &r);
	test_assert_strcmp(r.url, "http://127.0.0.1:9/+login");
	/* nothing on Launchpad lifts a ban: no link, no "check again" */
	lp_deny_remedy(config, LP_DENY_BANNED, "mallory", NULL, &r);
	test_assert(r.url[0] == '\0' && !r.recheck && r.text[0] != '\0');
	lp_deny_remedy(config, LP_DENY_NAME, NULL, NULL, &r);
	test_assert(r.url[0] == '\0' && !r.recheck);
	lp_deny_remedy(config, LP_DENY_DOMAIN, NULL, NULL, &r);
	test_assert(r.url[0] == '\0' && !r.recheck);
	lp_deny_remedy(config, LP_DENY_NONE, NULL, NULL, &r);
	test_assert(r.url[0] == '\0' && r.text[0] == '\0');
	/* a name that is not a Launchpad name never reaches the URL */
	lp_deny_remedy(config, LP_DENY_NOT_VALID, "a\"><script>", NULL, &r);
	test_assert_strcmp(r.url, "http://127.0.0.1:9/people/+me");
	lp_deny_remedy(config, LP_DENY_NOT_MEMBER, "erin", "../x", &r);
	test_assert(r.url[0] == '\0' && r.recheck);
	/* a corrupt record's reason number */
	lp_deny_remedy(config, (enum lp_deny_reason)99, "erin", NULL, &r);
	test_assert(r.recheck && r.url[0] == '\0');
	lp_config_free(&config);
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_decide_table,
		test_decide_long_texts,
		test_deny_reason_text,
		test_deny_remedy,
		test_name_is_valid,
		test_login_parse,
		test_login_parse_edge,
		NULL
	};

	return test_run(test_functions);
}
