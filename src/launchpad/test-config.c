/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad.h"
#include "tap.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_PATH "t.conf"
#define TEST_DOMAIN_LINE "domain ubuntu.com = ubuntumembers\n"
#define TEST_SHIPPED_CONF TOP_SRCDIR "/plugin-conf/dovecot-launchpad.conf.ext"
#define TEST_FILE_MAX 8192
#define TEST_PATH_MAX 64
/* base64 of the bytes 0..31: a well-formed 32-byte public key. */
#define TEST_PUBLIC_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

enum test_field_type {
	TEST_FIELD_STRING,	/* char *, NULL allowed */
	TEST_FIELD_UINT,
};

struct test_field {
	const char *name;
	enum test_field_type type;
	size_t offset;
	const char *default_str;
	unsigned int default_uint;
};

#define TEST_STR(field, def) \
	{ #field, TEST_FIELD_STRING, offsetof(struct lp_config, field), def, 0 }
#define TEST_UINT(field, def) \
	{ #field, TEST_FIELD_UINT, offsetof(struct lp_config, field), NULL, def }

/* Every key with its doc/DESIGN.md section 3 default. */
static const struct test_field test_fields[] = {
	TEST_STR(api_url, "https://api.launchpad.net/1.0"),
	TEST_STR(cache_path, "/var/lib/dovecot/launchpad.tdb"),
	TEST_STR(home, "/var/vmail/%d/%n"),
	TEST_STR(uid, "vmail"),
	TEST_STR(gid, "vmail"),
	TEST_UINT(positive_ttl, 60 * 60),
	TEST_UINT(negative_ttl, 10 * 60),
	TEST_UINT(stale_grace, 7 * 24 * 60 * 60),
	TEST_UINT(http_timeout, 10),
	TEST_STR(recovery_public_key, NULL),
	TEST_STR(web_listen, "127.0.0.1:8145"),
	TEST_STR(web_url, NULL),
	TEST_STR(sso_url, "https://login.ubuntu.com/+openid"),
	TEST_STR(notify_to, NULL),
	TEST_STR(notify_from, NULL),
	TEST_STR(web_auth_socket, "/var/run/dovecot/auth-vmail-master"),
	TEST_STR(web_mail_host, NULL),
	TEST_UINT(web_imap_port, 993),
	TEST_UINT(web_pop3_port, 995),
	TEST_UINT(web_submission_port, 0),
	TEST_STR(web_launchpad_url, "https://launchpad.net"),
	TEST_UINT(web_session_ttl, 60 * 60),
	TEST_STR(web_anvil_socket, "/var/run/dovecot/anvil-vmail"),
	TEST_STR(web_state_dir, "/var/lib/dovecot-launchpad-web"),
	TEST_STR(web_trusted_proxies, NULL),
	TEST_UINT(send_messages_per_hour, 100),
	TEST_UINT(send_recipients_per_message, 50),
	TEST_STR(send_state_path, "/var/vmail/launchpad-send.tdb"),
};
#define TEST_FIELDS_COUNT (sizeof(test_fields) / sizeof(test_fields[0]))

static const struct test_field *test_field_find(const char *name)
{
	for (unsigned int i = 0; i < TEST_FIELDS_COUNT; i++) {
		if (strcmp(test_fields[i].name, name) == 0)
			return &test_fields[i];
	}
	return NULL;
}

static const char *
test_field_str(const struct lp_config *config, const struct test_field *f)
{
	return *(char *const *)((const char *)config + f->offset);
}

static unsigned int
test_field_uint(const struct lp_config *config, const struct test_field *f)
{
	return *(const unsigned int *)((const char *)config + f->offset);
}

/* Asserts that every field except skip (may be NULL) has its default. */
static void test_assert_defaults(const struct lp_config *config,
				 const char *skip)
{
	for (unsigned int i = 0; i < TEST_FIELDS_COUNT; i++) {
		const struct test_field *f = &test_fields[i];

		if (skip != NULL && strcmp(f->name, skip) == 0)
			continue;
		if (f->type == TEST_FIELD_UINT) {
			test_assert_idx(test_field_uint(config, f) ==
					f->default_uint, i);
		} else {
			test_assert_strcmp(test_field_str(config, f),
					   f->default_str);
		}
	}
}

static void test_config_defaults(void)
{
	struct lp_config *config;
	struct lp_error err = { .kind = LP_ERR_NONE };

	test_begin("config defaults");
	test_assert(lp_config_parse(TEST_PATH, TEST_DOMAIN_LINE,
				    &config, &err) == 0);
	if (config != NULL) {
		test_assert_defaults(config, NULL);
		test_assert_strcmp(config->path, TEST_PATH);
		test_assert(config->domains_count == 1);
		test_assert_strcmp(config->domains[0].domain, "ubuntu.com");
		test_assert_strcmp(config->domains[0].team, "ubuntumembers");
	}
	lp_config_free(&config);
	test_assert(config == NULL);
	test_end();
}

static void test_config_every_key(void)
{
	static const struct {
		const char *line;
		const char *field;
		const char *str;	/* for string fields, NULL = unset */
		unsigned int uint;
	} tests[] = {
		{ "api_url = https://lp.example.org/1.0", "api_url",
		  "https://lp.example.org/1.0", 0 },
		{ "cache_path = /tmp/lp/cache.tdb", "cache_path",
		  "/tmp/lp/cache.tdb", 0 },
		{ "home = /srv/mail/%u/%%/%d/%n", "home",
		  "/srv/mail/%u/%%/%d/%n", 0 },
		{ "uid = 5000", "uid", "5000", 0 },
		{ "gid = mail", "gid", "mail", 0 },
		{ "positive_ttl = 2h", "positive_ttl", NULL, 2 * 60 * 60 },
		{ "positive_ttl = 0", "positive_ttl", NULL, 0 },
		{ "negative_ttl = 30", "negative_ttl", NULL, 30 },
		{ "stale_grace = 1d", "stale_grace", NULL, 24 * 60 * 60 },
		{ "http_timeout = 45s", "http_timeout", NULL, 45 },
		{ "recovery_public_key = " TEST_PUBLIC_KEY,
		  "recovery_public_key", TEST_PUBLIC_KEY, 0 },
		{ "recovery_public_key =", "recovery_public_key", NULL, 0 },
		{ "web_listen = [::1]:9000", "web_listen", "[::1]:9000", 0 },
		{ "web_url = https://mail.example.org/account", "web_url",
		  "https://mail.example.org/account", 0 },
		{ "sso_url = https://sso.example.org/+openid", "sso_url",
		  "https://sso.example.org/+openid", 0 },
		{ "notify_to = postmaster@example.org", "notify_to",
		  "postmaster@example.org", 0 },
		{ "notify_from = Launchpad Mail <lp@example.org>",
		  "notify_from", "Launchpad Mail <lp@example.org>", 0 },
		{ "notify_to =", "notify_to", NULL, 0 },
		{ "web_url = http://127.0.0.1:8145/", "web_url",
		  "http://127.0.0.1:8145", 0 },
		{ "web_url =", "web_url", NULL, 0 },
		{ "sso_url = http://localhost:9/+openid/", "sso_url",
		  "http://localhost:9/+openid", 0 },
		{ "web_auth_socket = /run/dovecot/auth-web-master",
		  "web_auth_socket", "/run/dovecot/auth-web-master", 0 },
		{ "web_mail_host = imap.example.org", "web_mail_host",
		  "imap.example.org", 0 },
		{ "web_mail_host =", "web_mail_host", NULL, 0 },
		{ "web_imap_port = 143", "web_imap_port", NULL, 143 },
		{ "web_pop3_port = 65535", "web_pop3_port", NULL, 65535 },
		{ "web_submission_port = 587", "web_submission_port", NULL,
		  587 },
		{ "web_submission_port =", "web_submission_port", NULL, 0 },
		{ "web_launchpad_url = http://127.0.0.1:9/", "web_launchpad_url",
		  "http://127.0.0.1:9", 0 },
		{ "web_session_ttl = 30m", "web_session_ttl", NULL, 30 * 60 },
		{ "web_anvil_socket = /run/dovecot/anvil-web",
		  "web_anvil_socket", "/run/dovecot/anvil-web", 0 },
		{ "web_state_dir = /srv/web-state", "web_state_dir",
		  "/srv/web-state", 0 },
		{ "web_trusted_proxies = 127.0.0.1, ::1 10.0.0.0/8",
		  "web_trusted_proxies", "127.0.0.1, ::1 10.0.0.0/8", 0 },
		{ "web_trusted_proxies =", "web_trusted_proxies", NULL, 0 },
		{ "send_messages_per_hour = 0", "send_messages_per_hour",
		  NULL, 0 },
		{ "send_messages_per_hour = 1000000",
		  "send_messages_per_hour", NULL, 1000000 },
		{ "send_recipients_per_message = 7",
		  "send_recipients_per_message", NULL, 7 },
		{ "send_state_path = /srv/send.tdb", "send_state_path",
		  "/srv/send.tdb", 0 },
		/* comments: after whitespace only */
		{ "uid = vmail2 # the mail user", "uid", "vmail2", 0 },
		{ "uid=vmail3\t#tab then comment", "uid", "vmail3", 0 },
		{ "notify_from = lp#1@example.org", "notify_from",
		  "lp#1@example.org", 0 },
		{ "  gid   =   mail  ", "gid", "mail", 0 },
	};
	char text[TEST_FILE_MAX];

	test_begin("config every key");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		const struct test_field *f = test_field_find(tests[i].field);
		struct lp_config *config;
		struct lp_error err = { .kind = LP_ERR_NONE };

		snprintf(text, sizeof(text), "%s\n%s\n", TEST_DOMAIN_LINE,
			 tests[i].line);
		test_assert_idx(f != NULL, i);
		test_assert_idx(lp_config_parse(TEST_PATH, text, &config,
						&err) == 0, i);
		if (config == NULL || f == NULL) {
			test_diag("%s", err.text);
			continue;
		}
		if (f->type == TEST_FIELD_UINT)
			test_assert_idx(test_field_uint(config, f) ==
					tests[i].uint, i);
		else
			test_assert_strcmp(test_field_str(config, f),
					   tests[i].str);
		/* Setting one key leaves every other one at its default. */
		test_assert_defaults(config, tests[i].field);
		lp_config_free(&config);
	}
	test_end();
}

static void test_config_errors(void)
{
	static const struct {
		const char *text;
		const char *error;	/* full expected text */
	} tests[] = {
		{ TEST_DOMAIN_LINE "foo = bar\n",
		  TEST_PATH ":2: unknown key 'foo'" },
		{ TEST_DOMAIN_LINE "API_URL = https://x.example.org\n",
		  TEST_PATH ":2: unknown key 'API_URL'" },
		{ TEST_DOMAIN_LINE "domains = x\n",
		  TEST_PATH ":2: unknown key 'domains'" },
		{ "# comment\n\n   \n" TEST_DOMAIN_LINE
		  "positive_ttl = 10x\n",
		  TEST_PATH ":5: invalid duration '10x' for positive_ttl "
		  "(a number with s, m, h or d, e.g. 10m)" },
		{ TEST_DOMAIN_LINE "stale_grace = -1\n",
		  TEST_PATH ":2: invalid duration '-1' for stale_grace "
		  "(a number with s, m, h or d, e.g. 10m)" },
		{ TEST_DOMAIN_LINE "negative_ttl =\n",
		  TEST_PATH ":2: invalid duration '' for negative_ttl "
		  "(a number with s, m, h or d, e.g. 10m)" },
		{ TEST_DOMAIN_LINE "uid = a\ngid = b\nuid = c\n",
		  TEST_PATH ":4: duplicate key uid (first at line 2)" },
		{ TEST_DOMAIN_LINE "domain UBUNTU.com = ubuntumembers\n",
		  TEST_PATH ":2: duplicate domain ubuntu.com "
		  "(first at line 1)" },
		{ TEST_DOMAIN_LINE "domain kubuntu.org =\n",
		  TEST_PATH ":2: domain kubuntu.org has no team "
		  "(expected: domain <name> = <team>)" },
		{ TEST_DOMAIN_LINE "domain kubuntu.org # team later\n",
		  TEST_PATH ":2: domain kubuntu.org has no team "
		  "(expected: domain <name> = <team>)" },
		{ TEST_DOMAIN_LINE "domain = kubuntu-members\n",
		  TEST_PATH ":2: domain line without a domain name "
		  "(expected: domain <name> = <team>)" },
		{ TEST_DOMAIN_LINE "domain -kubuntu.org = kubuntu-members\n",
		  TEST_PATH ":2: invalid domain name '-kubuntu.org'" },
		{ TEST_DOMAIN_LINE "domain a..org = kubuntu-members\n",
		  TEST_PATH ":2: invalid domain name 'a..org'" },
		{ TEST_DOMAIN_LINE "domain ex_ample.org = kubuntu-members\n",
		  TEST_PATH ":2: invalid domain name 'ex_ample.org'" },
		{ TEST_DOMAIN_LINE "domain a.org b.org = kubuntu-members\n",
		  TEST_PATH ":2: invalid domain name 'a.org b.org'" },
		{ TEST_DOMAIN_LINE "domain kubuntu.org = Kubuntu-Members\n",
		  TEST_PATH ":2: invalid team 'Kubuntu-Members' for domain "
		  "kubuntu.org (not a Launchpad name)" },
		{ TEST_DOMAIN_LINE "domain kubuntu.org = k\n",
		  TEST_PATH ":2: invalid team 'k' for domain kubuntu.org "
		  "(not a Launchpad name)" },
		{ TEST_DOMAIN_LINE "uid vmail\n",
		  TEST_PATH ":2: missing '=' after 'uid vmail' "
		  "(expected: key = value)" },
		{ TEST_DOMAIN_LINE "= vmail\n",
		  TEST_PATH ":2: missing key before '='" },
		{ TEST_DOMAIN_LINE "uid = vm\001ail\n",
		  TEST_PATH ":2: control character 0x01 in line" },
		{ TEST_DOMAIN_LINE "uid = vmail\177\n",
		  TEST_PATH ":2: control character 0x7f in line" },
		{ TEST_DOMAIN_LINE "uid = vm\rail\n",
		  TEST_PATH ":2: control character 0x0d in line" },
		{ TEST_DOMAIN_LINE "home = /var/vmail\t/%d\n",
		  TEST_PATH ":2: control character 0x09 in the value of "
		  "'home'" },
		{ TEST_DOMAIN_LINE "uid =\n",
		  TEST_PATH ":2: uid must be one non-empty word" },
		{ TEST_DOMAIN_LINE "gid = v mail\n",
		  TEST_PATH ":2: gid must be one non-empty word" },
		{ TEST_DOMAIN_LINE "cache_path = launchpad.tdb\n",
		  TEST_PATH ":2: cache_path must be an absolute path" },
		{ TEST_DOMAIN_LINE "home = var/vmail/%d/%n\n",
		  TEST_PATH ":2: home must be an absolute path" },
		{ TEST_DOMAIN_LINE "home = /var/vmail/%d/%x\n",
		  TEST_PATH ":2: unknown escape '%x' in home "
		  "(known: %d %n %u %%)" },
		{ TEST_DOMAIN_LINE "home = /var/vmail/%\n",
		  TEST_PATH ":2: home ends in a lone '%'" },
		{ TEST_DOMAIN_LINE "http_timeout = 46s\n",
		  TEST_PATH ":2: http_timeout must be 1s..45s: auth-worker "
		  "kills a lookup after 60s" },
		{ TEST_DOMAIN_LINE "api_url = http://lp.example.org/1.0\n",
		  TEST_PATH ":2: api_url must use https:// (plain http:// is "
		  "allowed only for 127.0.0.0/8, localhost or [::1])" },
		{ TEST_DOMAIN_LINE "web_url = http://mail.example.org/\n",
		  TEST_PATH ":2: web_url must use https:// (plain http:// is "
		  "allowed only for 127.0.0.0/8, localhost or [::1])" },
		{ TEST_DOMAIN_LINE "web_url = https://mail.example.org/?a=b\n",
		  TEST_PATH ":2: web_url must not contain a query or "
		  "fragment" },
		{ TEST_DOMAIN_LINE "sso_url = login.ubuntu.com/+openid\n",
		  TEST_PATH ":2: sso_url must start with https://" },
		{ TEST_DOMAIN_LINE "web_auth_socket = auth-master\n",
		  TEST_PATH ":2: web_auth_socket must be an absolute path" },
		{ TEST_DOMAIN_LINE "web_state_dir = state\n",
		  TEST_PATH ":2: web_state_dir must be an absolute path" },
		{ TEST_DOMAIN_LINE "web_trusted_proxies = localhost\n",
		  TEST_PATH ":2: web_trusted_proxies: 'localhost' is not an "
		  "IPv4/IPv6 address or network (address/bits, host bits "
		  "zero)" },
		{ TEST_DOMAIN_LINE "web_trusted_proxies = 127.0.0.1 10.0.0.1/8\n",
		  TEST_PATH ":2: web_trusted_proxies: '10.0.0.1/8' is not an "
		  "IPv4/IPv6 address or network (address/bits, host bits "
		  "zero)" },
		{ TEST_DOMAIN_LINE "web_trusted_proxies = ::1/129\n",
		  TEST_PATH ":2: web_trusted_proxies: '::1/129' is not an "
		  "IPv4/IPv6 address or network (address/bits, host bits "
		  "zero)" },
		{ TEST_DOMAIN_LINE "web_mail_host = a b\n",
		  TEST_PATH ":2: web_mail_host must be one word or empty" },
		{ TEST_DOMAIN_LINE "web_imap_port = 0\n",
		  TEST_PATH ":2: web_imap_port must be a port number "
		  "1..65535" },
		{ TEST_DOMAIN_LINE "web_imap_port = 65536\n",
		  TEST_PATH ":2: web_imap_port must be a port number "
		  "1..65535" },
		{ TEST_DOMAIN_LINE "web_submission_port = 0\n",
		  TEST_PATH ":2: web_submission_port must be a port number "
		  "1..65535" },
		{ TEST_DOMAIN_LINE "web_pop3_port = 10s\n",
		  TEST_PATH ":2: web_pop3_port must be a port number "
		  "1..65535" },
		{ TEST_DOMAIN_LINE "send_messages_per_hour = 1000001\n",
		  TEST_PATH ":2: send_messages_per_hour must be a number "
		  "0..1000000 (0: no limit)" },
		{ TEST_DOMAIN_LINE "send_recipients_per_message = 5m\n",
		  TEST_PATH ":2: send_recipients_per_message must be a number "
		  "0..1000000 (0: no limit)" },
		{ TEST_DOMAIN_LINE "send_recipients_per_message =\n",
		  TEST_PATH ":2: send_recipients_per_message must be a number "
		  "0..1000000 (0: no limit)" },
		{ TEST_DOMAIN_LINE "web_session_ttl = 1w\n",
		  TEST_PATH ":2: invalid duration '1w' for web_session_ttl "
		  "(a number with s, m, h or d, e.g. 10m)" },
		{ TEST_DOMAIN_LINE "recovery_public_key = abc=\n",
		  TEST_PATH ":2: recovery_public_key must be empty or the "
		  "base64 of a 32-byte X25519 public key" },
		{ TEST_DOMAIN_LINE "uid = vmail\n",
		  NULL /* never reached: a valid file */ },
		{ "uid = vmail\n# no domain\n",
		  TEST_PATH ": no domain configured (need at least one "
		  "'domain <name> = <team>' line)" },
		{ "",
		  TEST_PATH ": no domain configured (need at least one "
		  "'domain <name> = <team>' line)" },
		{ "# c\r\n\r\nfoo = 1\r\n" TEST_DOMAIN_LINE,
		  TEST_PATH ":3: unknown key 'foo'" },
	};

	static struct lp_config sentinel;

	test_begin("config errors");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		/* A failure must reset the caller's pointer. */
		struct lp_config *config = &sentinel;
		struct lp_error err = { .kind = LP_ERR_NONE };
		int ret;

		ret = lp_config_parse(TEST_PATH, tests[i].text, &config, &err);
		if (tests[i].error == NULL) {
			/* The control row: the same shape parses. */
			test_assert_idx(ret == 0 && config != NULL &&
					config != &sentinel, i);
			if (config != &sentinel)
				lp_config_free(&config);
			continue;
		}
		test_assert_idx(ret == -1, i);
		test_assert_idx(config == NULL, i);
		test_assert_idx(err.kind == LP_ERR_CONFIG, i);
		test_assert_strcmp(err.text, tests[i].error);
		if (config != &sentinel)
			lp_config_free(&config);
	}
	test_end();
}

static void test_config_comments(void)
{
	static const char text[] =
		"# whole-line comment\n"
		"   # indented comment = with an equals sign\n"
		"\n"
		" \t \n"
		"uid = mailuser   # trailing comment\n"
		"gid\t=\tmailgroup\t# after a tab\r\n"
		"home = /srv/%d/%n#not-a-comment\n"
		"recovery_public_key =  # optional, base64 X25519 key\n"
		"#web_url = https://commented.example.org\n"
		"domain ubuntu.com = ubuntumembers # the default domain\n"
		"# trailing comment without newline";
	struct lp_config *config;
	struct lp_error err = { .kind = LP_ERR_NONE };

	test_begin("config comments");
	test_assert(lp_config_parse(TEST_PATH, text, &config, &err) == 0);
	if (config != NULL) {
		test_assert_strcmp(config->uid, "mailuser");
		test_assert_strcmp(config->gid, "mailgroup");
		test_assert_strcmp(config->home, "/srv/%d/%n#not-a-comment");
		test_assert(config->recovery_public_key == NULL);
		test_assert(config->web_url == NULL);
		test_assert(config->domains_count == 1);
		test_assert_strcmp(config->domains[0].team, "ubuntumembers");
	}
	lp_config_free(&config);
	test_end();
}

static void test_config_domain_order(void)
{
	static const char text[] =
		"domain Kubuntu.ORG = kubuntu-members\n"
		"domain ubuntu.com = ubuntumembers\n"
		"domain lubuntu.me=lubuntu-members\n";
	static const struct {
		const char *domain;
		int index;	/* -1 = not configured */
	} lookups[] = {
		{ "kubuntu.org", 0 },
		{ "ubuntu.com", 1 },
		{ "lubuntu.me", 2 },
		{ "Kubuntu.ORG", -1 },	/* callers pass lower case */
		{ "ubuntu.co", -1 },
		{ "ubuntu.com.", -1 },
		{ "", -1 },
		{ NULL, -1 },
	};
	struct lp_config *config;
	struct lp_error err = { .kind = LP_ERR_NONE };

	test_begin("config domain order");
	test_assert(lp_config_parse(TEST_PATH, text, &config, &err) == 0);
	if (config == NULL) {
		test_end();
		return;
	}
	test_assert(config->domains_count == 3);
	/* File order; the first one is the default for a bare login. */
	test_assert_strcmp(config->domains[0].domain, "kubuntu.org");
	test_assert_strcmp(config->domains[0].team, "kubuntu-members");
	test_assert_strcmp(config->domains[1].domain, "ubuntu.com");
	test_assert_strcmp(config->domains[2].domain, "lubuntu.me");
	test_assert_strcmp(config->domains[2].team, "lubuntu-members");
	for (unsigned int i = 0; i < sizeof(lookups) / sizeof(lookups[0]);
	     i++) {
		const struct lp_domain *d =
			lp_config_find_domain(config, lookups[i].domain);

		test_assert_idx(lookups[i].index < 0 ? d == NULL :
				d == &config->domains[lookups[i].index], i);
	}
	lp_config_free(&config);
	test_end();
}

static void test_config_duration(void)
{
	static const struct {
		const char *str;
		int ret;
		unsigned int secs;
	} tests[] = {
		{ "0", 0, 0 },
		{ "1", 0, 1 },
		{ "10s", 0, 10 },
		{ "5m", 0, 300 },
		{ "1h", 0, 3600 },
		{ "7d", 0, 604800 },
		{ "007", 0, 7 },
		{ "2147483647", 0, 2147483647u },
		{ "24855d", 0, 24855u * 86400u },
		{ "", -1, 0 },
		{ "10x", -1, 0 },
		{ "-1", -1, 0 },
		{ "+1", -1, 0 },
		{ " 1", -1, 0 },
		{ "1 ", -1, 0 },
		{ "1 s", -1, 0 },
		{ "s", -1, 0 },
		{ "1S", -1, 0 },
		{ "1ss", -1, 0 },
		{ "1h30m", -1, 0 },
		{ "1.5h", -1, 0 },
		{ "0x10", -1, 0 },
		{ "2147483648", -1, 0 },
		{ "4294967296", -1, 0 },
		{ "24856d", -1, 0 },
		{ "99999999999d", -1, 0 },
		{ "99999999999999999999999999", -1, 0 },
		{ NULL, -1, 0 },
	};

	test_begin("duration parse");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		unsigned int secs = 12345;
		int ret = lp_duration_parse(tests[i].str, &secs);

		test_assert_idx(ret == tests[i].ret, i);
		/* A failure leaves the output alone. */
		test_assert_idx(secs == (ret == 0 ? tests[i].secs : 12345), i);
	}
	test_end();
}

static void test_config_http_timeout(void)
{
	static const struct {
		const char *value;
		int ret;
		unsigned int secs;
	} tests[] = {
		{ "0", -1, 0 },
		{ "0s", -1, 0 },
		{ "1", 0, 1 },
		{ "1s", 0, 1 },
		{ "44", 0, 44 },
		{ "45s", 0, 45 },
		{ "46", -1, 0 },
		{ "1m", -1, 0 },
		{ "1h", -1, 0 },
	};
	char text[TEST_FILE_MAX];

	test_begin("config http_timeout bounds");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		struct lp_config *config;
		struct lp_error err = { .kind = LP_ERR_NONE };
		int ret;

		snprintf(text, sizeof(text), "%shttp_timeout = %s\n",
			 TEST_DOMAIN_LINE, tests[i].value);
		ret = lp_config_parse(TEST_PATH, text, &config, &err);
		test_assert_idx(ret == tests[i].ret, i);
		if (ret == 0)
			test_assert_idx(config->http_timeout ==
					tests[i].secs, i);
		else
			test_assert_idx(strstr(err.text, "60s") != NULL, i);
		lp_config_free(&config);
	}
	test_end();
}

static void test_config_api_url(void)
{
	static const struct {
		const char *value;
		const char *stored;	/* NULL = refused */
	} tests[] = {
		{ "https://api.launchpad.net/1.0", "https://api.launchpad.net/1.0" },
		{ "https://api.launchpad.net/1.0/", "https://api.launchpad.net/1.0" },
		{ "https://api.launchpad.net/1.0//", "https://api.launchpad.net/1.0" },
		{ "https://example.org/", "https://example.org" },
		{ "https://example.org", "https://example.org" },
		{ "https://example.org:8443/api", "https://example.org:8443/api" },
		{ "https://[2001:db8::1]/api", "https://[2001:db8::1]/api" },
		{ "http://127.0.0.1:8080/1.0/", "http://127.0.0.1:8080/1.0" },
		{ "http://127.1.2.254/", "http://127.1.2.254" },
		{ "http://localhost:1234/api", "http://localhost:1234/api" },
		{ "http://LOCALHOST/api", "http://LOCALHOST/api" },
		{ "http://[::1]:99/", "http://[::1]:99" },
		/* plain http off loopback: TLS verification is always on */
		{ "http://api.launchpad.net/1.0", NULL },
		{ "http://128.0.0.1/", NULL },
		{ "http://10.0.0.1/", NULL },
		{ "http://127.0.0.1.example.org/", NULL },
		{ "http://127.0.0/", NULL },
		{ "http://127.0.0.1.1/", NULL },
		{ "http://127.0.0.256/", NULL },
		{ "http://127.000.0.1/", NULL },
		{ "http://localhost.example.org/", NULL },
		{ "http://[::2]/", NULL },
		{ "http://[::ffff:127.0.0.1]/", NULL },
		/* malformed */
		{ "", NULL },
		{ "api.launchpad.net/1.0", NULL },
		{ "ftp://api.launchpad.net/1.0", NULL },
		{ "HTTPS://api.launchpad.net/1.0", NULL },
		{ "https://", NULL },
		{ "https:///1.0", NULL },
		{ "https://user:pw@api.launchpad.net/1.0", NULL },
		{ "https://api.launchpad.net/1.0?ws.op=x", NULL },
		{ "https://api.launchpad.net/1.0#x", NULL },
		{ "https://api.launch_pad.net/", NULL },
		{ "https://api.launchpad.net:/", NULL },
		{ "https://api.launchpad.net:0/", NULL },
		{ "https://api.launchpad.net:65536/", NULL },
		{ "https://api.launchpad.net:44x/", NULL },
		{ "https://[::1/", NULL },
		{ "https://[]/", NULL },
		{ "https://[::1]x/", NULL },
		{ "https://api.launchpad.net/\xc3\xa9", NULL },
	};
	char text[TEST_FILE_MAX];

	test_begin("config api_url");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		struct lp_config *config;
		struct lp_error err = { .kind = LP_ERR_NONE };
		int ret;

		snprintf(text, sizeof(text), "%sapi_url = %s\n",
			 TEST_DOMAIN_LINE, tests[i].value);
		ret = lp_config_parse(TEST_PATH, text, &config, &err);
		if (tests[i].stored == NULL) {
			test_assert_idx(ret == -1 && config == NULL, i);
			test_assert_idx(err.kind == LP_ERR_CONFIG &&
					strncmp(err.text, TEST_PATH ":2: api_url ",
						strlen(TEST_PATH ":2: api_url ")) == 0,
					i);
		} else {
			test_assert_idx(ret == 0, i);
			if (ret < 0)
				test_diag("%s", err.text);
			else
				test_assert_strcmp(config->api_url,
						   tests[i].stored);
		}
		lp_config_free(&config);
	}
	test_end();
}

static void test_config_public_key(void)
{
	static const struct {
		const char *value;
		bool ok;
	} tests[] = {
		{ TEST_PUBLIC_KEY, true },
		{ "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+=", false },
		{ "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=", false },
		{ "//////////////////////////////////////////8=", true },
		{ "++++++++++++++++++++++++++++++++++++++++++4=", true },
		{ "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", false },
		{ "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==", false },
		{ "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHw==", false },
		{ "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH-8=", false },
		{ "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH_8=", false },
		{ "AAECAwQFBgcICQoLDA0ODxAREhMU FRYXGBkaGxwdH8=", false },
	};
	char text[TEST_FILE_MAX];

	test_begin("config recovery_public_key");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		struct lp_config *config;
		struct lp_error err = { .kind = LP_ERR_NONE };
		int ret;

		snprintf(text, sizeof(text), "%srecovery_public_key = %s\n",
			 TEST_DOMAIN_LINE, tests[i].value);
		ret = lp_config_parse(TEST_PATH, text, &config, &err);
		test_assert_idx(ret == (tests[i].ok ? 0 : -1), i);
		if (ret == 0)
			test_assert_strcmp(config->recovery_public_key,
					   tests[i].value);
		lp_config_free(&config);
	}
	test_end();
}

static void test_config_expand_home(void)
{
	static const struct {
		const char *home;
		size_t size;
		int ret;
		const char *expanded;
	} tests[] = {
		{ "/var/vmail/%d/%n", 256, 0, "/var/vmail/ubuntu.com/alice" },
		{ "/m/%u", 256, 0, "/m/alice@ubuntu.com" },
		{ "/m/%%d/%n%%", 256, 0, "/m/%d/alice%" },
		{ "/m", 256, 0, "/m" },
		/* "/m/alice@ubuntu.com" is 19 bytes: 20 fit, 19 do not */
		{ "/m/%u", 20, 0, "/m/alice@ubuntu.com" },
		{ "/m/%u", 19, -1, "" },
		{ "/m/%u", 9, -1, "" },
		{ "/m/%u", 4, -1, "" },
		{ "/var/vmail/%d/%n", 1, -1, "" },
		{ "/m/%%", 4, -1, "" },
		{ "/m/%%", 5, 0, "/m/%" },
	};
	char text[TEST_FILE_MAX], buf[256];

	test_begin("config expand home");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		struct lp_config *config;
		struct lp_error err = { .kind = LP_ERR_NONE };

		snprintf(text, sizeof(text), "%shome = %s\n",
			 TEST_DOMAIN_LINE, tests[i].home);
		test_assert_idx(lp_config_parse(TEST_PATH, text, &config,
						&err) == 0, i);
		if (config == NULL)
			continue;
		memset(buf, 'X', sizeof(buf));
		test_assert_idx(lp_config_expand_home(config, "alice",
						      "ubuntu.com", buf,
						      tests[i].size) ==
				tests[i].ret, i);
		test_assert_strcmp(buf, tests[i].expanded);
		/* Nothing is written past size. */
		test_assert_idx(tests[i].size >= sizeof(buf) ||
				buf[tests[i].size] == 'X', i);
		lp_config_free(&config);
	}
	test_end();
}

static int test_write_file(const char *path, const char *data, size_t size)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	if (fwrite(data, 1, size, f) != size) {
		fclose(f);
		return -1;
	}
	return fclose(f);
}

static void test_config_load(void)
{
	static const char good[] =
		"api_url = http://127.0.0.1:8080/\n"
		"domain ubuntu.net = ubuntu-smtp-test\n";
	static const char bad[] =
		"domain ubuntu.net = ubuntu-smtp-test\n"
		"\n"
		"stale_grace = 99999999999d\n";
	static const char nul[] =
		"domain ubuntu.net = ubuntu-smtp-test\n"
		"uid = vm\0ail\n";
	char dir[] = "/tmp/test-config.XXXXXX";
	char path[TEST_PATH_MAX], expected[LP_TEXT_MAX];
	struct lp_config *config = NULL;
	struct lp_error err = { .kind = LP_ERR_NONE };

	test_begin("config load");
	if (mkdtemp(dir) == NULL) {
		test_assert(!"mkdtemp() failed");
		test_end();
		return;
	}
	snprintf(path, sizeof(path), "%s/launchpad.conf.ext", dir);

	/* a real file */
	test_assert(test_write_file(path, good, sizeof(good) - 1) == 0);
	test_assert(lp_config_load(path, &config, &err) == 0);
	if (config != NULL) {
		test_assert_strcmp(config->path, path);
		test_assert_strcmp(config->api_url, "http://127.0.0.1:8080");
		test_assert(config->domains_count == 1);
		test_assert_strcmp(config->domains[0].domain, "ubuntu.net");
	}
	lp_config_free(&config);

	/* an error names the file and the line */
	test_assert(test_write_file(path, bad, sizeof(bad) - 1) == 0);
	test_assert(lp_config_load(path, &config, &err) == -1);
	test_assert(config == NULL);
	test_assert(err.kind == LP_ERR_CONFIG);
	snprintf(expected, sizeof(expected), "%s:3: invalid duration "
		 "'99999999999d' for stale_grace (a number with s, m, h or d, "
		 "e.g. 10m)", path);
	test_assert_strcmp(err.text, expected);

	/* a NUL byte cannot hide the rest of a line */
	test_assert(test_write_file(path, nul, sizeof(nul) - 1) == 0);
	test_assert(lp_config_load(path, &config, &err) == -1);
	snprintf(expected, sizeof(expected), "%s:2: NUL byte in line", path);
	test_assert_strcmp(err.text, expected);

	/* a directory */
	test_assert(lp_config_load(dir, &config, &err) == -1);
	test_assert(err.kind == LP_ERR_CONFIG);
	snprintf(expected, sizeof(expected), "%s: not a regular file", dir);
	test_assert_strcmp(err.text, expected);

	/* a missing file: the name and the errno text */
	test_assert(unlink(path) == 0);
	test_assert(lp_config_load(path, &config, &err) == -1);
	test_assert(config == NULL);
	test_assert(err.kind == LP_ERR_CONFIG);
	snprintf(expected, sizeof(expected), "%s: open() failed: %s", path,
		 strerror(ENOENT));
	test_assert_strcmp(err.text, expected);

	test_assert(rmdir(dir) == 0);
	test_end();
}

static void test_config_shipped_example(void)
{
	static const struct {
		const char *domain, *team;
	} domains[] = {
		{ "ubuntu.com", "ubuntumembers" },
		{ "kubuntu.org", "kubuntu-members" },
		{ "lubuntu.me", "lubuntu-members" },
		{ "edubuntu.org", "edubuntu-members" },
		{ "ubuntustudio.com", "ubuntustudio-core" },
		{ "ubuntu.net", "ubuntu-smtp-test" },
	};
	struct lp_config *config;
	struct lp_error err = { .kind = LP_ERR_NONE };
	char text[TEST_FILE_MAX], uncommented[TEST_FILE_MAX];
	size_t size, in, out = 0;
	FILE *f;

	test_begin("config shipped example");
	test_assert(lp_config_load(TEST_SHIPPED_CONF, &config, &err) == 0);
	if (config == NULL) {
		test_diag("%s", err.text);
		test_end();
		return;
	}
	/* It documents the defaults: loading it changes nothing. */
	test_assert_defaults(config, NULL);
	test_assert(config->domains_count ==
		    sizeof(domains) / sizeof(domains[0]));
	for (unsigned int i = 0; i < config->domains_count &&
	     i < sizeof(domains) / sizeof(domains[0]); i++) {
		test_assert_strcmp(config->domains[i].domain,
				   domains[i].domain);
		test_assert_strcmp(config->domains[i].team, domains[i].team);
	}
	lp_config_free(&config);

	/* The commented-out keys parse too once uncommented, and the
	   ones shown with their default really have that default. */
	f = fopen(TEST_SHIPPED_CONF, "r");
	test_assert(f != NULL);
	if (f == NULL) {
		test_end();
		return;
	}
	size = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	test_assert(size < sizeof(text) - 1);
	text[size] = '\0';
	for (in = 0; in < size; in++) {
		/* "#key" at the start of a line (no space) is a disabled
		   setting; "# words" stays a comment. */
		if (text[in] == '#' && (in == 0 || text[in - 1] == '\n') &&
		    text[in + 1] >= 'a' && text[in + 1] <= 'z')
			continue;
		uncommented[out++] = text[in];
	}
	uncommented[out] = '\0';
	test_assert(lp_config_parse(TEST_SHIPPED_CONF, uncommented,
				    &config, &err) == 0);
	if (config != NULL) {
		test_assert_strcmp(config->web_listen, "127.0.0.1:8145");
		test_assert_strcmp(config->sso_url,
				   "https://login.ubuntu.com/+openid");
		test_assert(config->web_url != NULL);
		test_assert(config->notify_to != NULL);
		test_assert(config->notify_from != NULL);
		test_assert_strcmp(config->web_anvil_socket,
				   "/var/run/dovecot/anvil-vmail");
		test_assert_strcmp(config->web_state_dir,
				   "/var/lib/dovecot-launchpad-web");
		test_assert_strcmp(config->web_trusted_proxies, "127.0.0.1");
	} else {
		test_diag("%s", err.text);
	}
	lp_config_free(&config);
	test_end();
}

/* issue 14: uid and gid are resolved once, at load, not by every user. */
static void test_config_mail_ids(void)
{
	static const struct {
		const char *lines;
		long long uid, gid;	/* -1: unknown */
		const char *error;	/* lp_config_mail_ids(), NULL: ok */
	} tests[] = {
		{ "uid = 5000\ngid = 5001\n", 5000, 5001, NULL },
		{ "uid = root\ngid = root\n", 0, 0, NULL },
		{ "uid = 0\ngid = 0\n", 0, 0, NULL },
		{ "uid = no-such-user-dlp\ngid = 0\n", -1, 0,
		  TEST_PATH ": uid: unknown user 'no-such-user-dlp'" },
		{ "uid = 0\ngid = no-such-group-dlp\n", 0, -1,
		  TEST_PATH ": gid: unknown group 'no-such-group-dlp'" },
		{ "uid = 99999999999\ngid = 0\n", -1, 0,
		  TEST_PATH ": uid: unknown user '99999999999'" },
	};
	char text[TEST_FILE_MAX];

	test_begin("config mail uid and gid");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		struct lp_config *config;
		struct lp_error err = { .kind = LP_ERR_NONE };
		uid_t uid = 12345;
		gid_t gid = 12345;
		int ret;

		snprintf(text, sizeof(text), "%s%s", TEST_DOMAIN_LINE,
			 tests[i].lines);
		if (lp_config_parse(TEST_PATH, text, &config, &err) < 0) {
			test_assert_idx(false, i);
			test_diag("%s", err.text);
			continue;
		}
		test_assert_idx(config->mail_uid == (tests[i].uid < 0 ?
			(uid_t)-1 : (uid_t)tests[i].uid), i);
		test_assert_idx(config->mail_gid == (tests[i].gid < 0 ?
			(gid_t)-1 : (gid_t)tests[i].gid), i);
		ret = lp_config_mail_ids(config, &uid, &gid, &err);
		if (tests[i].error == NULL) {
			test_assert_idx(ret == 0 && uid == config->mail_uid &&
					gid == config->mail_gid, i);
		} else {
			test_assert_idx(ret == -1 && err.kind == LP_ERR_CONFIG,
					i);
			test_assert_strcmp(err.text, tests[i].error);
		}
		lp_config_free(&config);
	}
	test_end();
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_config_defaults,
		test_config_every_key,
		test_config_errors,
		test_config_comments,
		test_config_domain_order,
		test_config_duration,
		test_config_http_timeout,
		test_config_api_url,
		test_config_public_key,
		test_config_expand_home,
		test_config_load,
		test_config_shipped_example,
		test_config_mail_ids,
		NULL
	};

	return test_run(test_functions);
}
