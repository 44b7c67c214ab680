/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The dovecot-launchpad.conf.ext parser (doc/DESIGN.md section 3).

   One table lists every key with its type, its place in struct lp_config
   and its default; one setter parses a value by type.  Defaults go through
   the same setter as file values, so a default can never bypass the checks
   a file value gets.  Any error refuses the whole file: the auth process
   must not start on a half-understood configuration. */

#include "launchpad-private.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LP_CONFIG_FILE_MAX (1024 * 1024)
/* How much of an offending token an error text quotes. */
#define LP_CONFIG_ECHO_MAX 64
/* Durations end up added to time_t values; keeping them within int
   leaves every such sum far from overflow. */
#define LP_DURATION_MAX INT_MAX
/* auth-worker kills a lookup after 60 s; one HTTP request (plus the team
   pages behind it) must finish well before that. */
#define LP_HTTP_TIMEOUT_MIN 1
#define LP_HTTP_TIMEOUT_MAX 45
#define LP_DNS_LABEL_MAX 63
#define LP_PORT_MAX 65535
#define LP_COUNT_MAX 1000000
/* A 32-byte X25519 key in padded base64: 43 characters and one '='. */
#define LP_PUBLIC_KEY_BYTES 32
#define LP_PUBLIC_KEY_BASE64_LEN 44

#define LP_CONFIG_DOMAIN_KEYWORD "domain"

enum lp_config_type {
	LP_CONFIG_TYPE_URL,		/* http(s) URL, trailing '/' stripped */
	LP_CONFIG_TYPE_ABS_PATH,	/* absolute path */
	LP_CONFIG_TYPE_HOME,		/* absolute path template */
	LP_CONFIG_TYPE_WORD,		/* non-empty, no whitespace */
	LP_CONFIG_TYPE_OPTIONAL,	/* any text; empty is NULL */
	LP_CONFIG_TYPE_DURATION,	/* unsigned int seconds */
	LP_CONFIG_TYPE_TIMEOUT,		/* duration within the HTTP bounds */
	LP_CONFIG_TYPE_PUBLIC_KEY,	/* base64 of 32 bytes; empty is NULL */
	LP_CONFIG_TYPE_OPTIONAL_URL,	/* a URL as above; empty is NULL */
	LP_CONFIG_TYPE_OPTIONAL_WORD,	/* no whitespace; empty is NULL */
	LP_CONFIG_TYPE_PORT,		/* unsigned int 1..65535 */
	LP_CONFIG_TYPE_OPTIONAL_PORT,	/* the same, or empty: 0 */
	LP_CONFIG_TYPE_COUNT,		/* unsigned int 0..LP_COUNT_MAX */
	LP_CONFIG_TYPE_NETS,		/* address/network list; empty is NULL */
	LP_CONFIG_TYPE_HOSTS,		/* backend host list; empty is NULL */
	LP_CONFIG_TYPE_SMTP_URL,	/* smtp(s):// relay; empty is NULL */
	LP_CONFIG_TYPE_ADDRESS,		/* local@domain; empty is NULL */
};

struct lp_config_key {
	const char *name;
	enum lp_config_type type;
	size_t offset;
	const char *default_value;
};

#define LP_CONFIG_KEY(field, kind, def) \
	{ .name = #field, .type = LP_CONFIG_TYPE_##kind, \
	  .offset = offsetof(struct lp_config, field), .default_value = def }

static const struct lp_config_key lp_config_keys[] = {
	LP_CONFIG_KEY(api_url, URL, "https://api.launchpad.net/1.0"),
	LP_CONFIG_KEY(cache_path, ABS_PATH, "/var/lib/dovecot/launchpad.tdb"),
	LP_CONFIG_KEY(home, HOME, "/var/vmail/%d/%n"),
	LP_CONFIG_KEY(uid, WORD, "vmail"),
	LP_CONFIG_KEY(gid, WORD, "vmail"),
	LP_CONFIG_KEY(positive_ttl, DURATION, "1h"),
	LP_CONFIG_KEY(negative_ttl, DURATION, "10m"),
	LP_CONFIG_KEY(stale_grace, DURATION, "7d"),
	LP_CONFIG_KEY(http_timeout, TIMEOUT, "10s"),
	LP_CONFIG_KEY(recovery_public_key, PUBLIC_KEY, ""),
	/* The self-service page (dovecot-launchpad-web) and notifications. */
	LP_CONFIG_KEY(web_listen, WORD, "127.0.0.1:8145"),
	LP_CONFIG_KEY(web_url, OPTIONAL_URL, ""),
	LP_CONFIG_KEY(sso_url, URL, "https://login.ubuntu.com/+openid"),
	LP_CONFIG_KEY(notify_to, OPTIONAL, ""),
	LP_CONFIG_KEY(notify_from, OPTIONAL, ""),
	LP_CONFIG_KEY(web_auth_socket, ABS_PATH,
		      "/var/run/dovecot/auth-vmail-master"),
	LP_CONFIG_KEY(web_anvil_socket, ABS_PATH,
		      "/var/run/dovecot/anvil-vmail"),
	LP_CONFIG_KEY(web_state_dir, ABS_PATH,
		      "/var/lib/dovecot-launchpad-web"),
	LP_CONFIG_KEY(web_trusted_proxies, NETS, ""),
	LP_CONFIG_KEY(web_mail_host, OPTIONAL_WORD, ""),
	LP_CONFIG_KEY(web_imap_port, PORT, "993"),
	LP_CONFIG_KEY(web_pop3_port, PORT, "995"),
	LP_CONFIG_KEY(web_submission_port, OPTIONAL_PORT, ""),
	LP_CONFIG_KEY(web_launchpad_url, URL, "https://launchpad.net"),
	LP_CONFIG_KEY(web_session_ttl, DURATION, "1h"),
	/* Confirmation links for a forwarding address Ubuntu One did not
	   vouch for (lp-fwdconfirm.c); no relay: not offered. */
	LP_CONFIG_KEY(web_smtp_url, SMTP_URL, ""),
	LP_CONFIG_KEY(web_smtp_from, ADDRESS, ""),
	LP_CONFIG_KEY(web_confirm_ttl, DURATION, "24h"),
	/* Proxy mode: the passdb sends logins to these (lp-backend.c). */
	LP_CONFIG_KEY(backends, HOSTS, ""),
	LP_CONFIG_KEY(backend_imap_port, PORT, "143"),
	LP_CONFIG_KEY(backend_pop3_port, PORT, "110"),
	LP_CONFIG_KEY(backend_lmtp_port, PORT, "24"),
	/* Sending through Dovecot's submission service. */
	LP_CONFIG_KEY(send_messages_per_hour, COUNT, "100"),
	LP_CONFIG_KEY(send_recipients_per_message, COUNT, "50"),
	LP_CONFIG_KEY(send_state_path, ABS_PATH,
		      "/var/vmail/launchpad-send.tdb"),
};
#define LP_CONFIG_KEYS_COUNT \
	(sizeof(lp_config_keys) / sizeof(lp_config_keys[0]))

struct lp_config_parser {
	const char *path;
	unsigned int line;
	unsigned int seen_line[LP_CONFIG_KEYS_COUNT];	/* 0 = not set */
	unsigned int *domain_lines;	/* parallel to config->domains */
	struct lp_config *config;
	struct lp_error *err;
};

static bool lp_config_is_space(char c)
{
	/* '\r' counts as trailing whitespace so CRLF files parse; anywhere
	   else it is a control character and refused. */
	return c == ' ' || c == '\t' || c == '\r';
}

static bool lp_config_is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static char *lp_config_trim(char *str)
{
	size_t len;

	while (lp_config_is_space(*str))
		str++;
	len = strlen(str);
	while (len > 0 && lp_config_is_space(str[len - 1]))
		str[--len] = '\0';
	return str;
}

static void lp_config_lowercase(char *str)
{
	/* ASCII only: tolower() would depend on the process locale. */
	for (; *str != '\0'; str++) {
		if (*str >= 'A' && *str <= 'Z')
			*str = (char)(*str - 'A' + 'a');
	}
}

static void lp_config_error(struct lp_config_parser *parser,
			    const char *what)
{
	lp_error_set(parser->err, LP_ERR_CONFIG, "%s:%u: %s",
		     parser->path, parser->line, what);
}

int lp_duration_parse(const char *str, unsigned int *secs_r)
{
	unsigned long long value = 0;
	unsigned int unit;
	const char *p = str;

	if (str == NULL)
		return -1;
	/* Hand-parsed: strtoul() would accept leading space, a sign and
	   wrap "-1" around to a huge value. */
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		value = value * 10 + (unsigned int)(*p - '0');
		if (value > LP_DURATION_MAX)
			return -1;
	}
	switch (*p) {
	case '\0':
		unit = 1;
		break;
	case 's':
		unit = 1;
		p++;
		break;
	case 'm':
		unit = 60;
		p++;
		break;
	case 'h':
		unit = 60 * 60;
		p++;
		break;
	case 'd':
		unit = 24 * 60 * 60;
		p++;
		break;
	default:
		return -1;
	}
	if (*p != '\0')
		return -1;
	value *= unit;
	if (value > LP_DURATION_MAX)
		return -1;
	*secs_r = (unsigned int)value;
	return 0;
}

static int lp_config_check_home(const char *home, char *what,
				size_t what_size)
{
	const char *p;

	if (home[0] != '/') {
		snprintf(what, what_size, "home must be an absolute path");
		return -1;
	}
	for (p = home; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		p++;
		if (*p == 'd' || *p == 'n' || *p == 'u' || *p == '%')
			continue;
		if (*p == '\0') {
			snprintf(what, what_size, "home ends in a lone '%%'");
		} else {
			snprintf(what, what_size,
				 "unknown escape '%%%c' in home "
				 "(known: %%d %%n %%u %%%%)", *p);
		}
		return -1;
	}
	return 0;
}

static bool lp_config_base64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '+' || c == '/';
}

static bool lp_config_public_key_is_valid(const char *key)
{
	const char *last = key + LP_PUBLIC_KEY_BASE64_LEN - 2;
	unsigned int last_value;
	size_t i;

	/* src/launchpad does not link libsodium, so the shape is checked by
	   hand: what passes here is what sodium_base642bin() accepts for
	   32 bytes (original variant), including zero padding bits. */
	if (strlen(key) != LP_PUBLIC_KEY_BASE64_LEN ||
	    key[LP_PUBLIC_KEY_BASE64_LEN - 1] != '=')
		return false;
	for (i = 0; i < LP_PUBLIC_KEY_BASE64_LEN - 1; i++) {
		if (!lp_config_base64_char(key[i]))
			return false;
	}
	/* 43 characters carry 258 bits for 256: the last character's two
	   low bits must be zero. */
	if (*last >= 'A' && *last <= 'Z')
		last_value = (unsigned int)(*last - 'A');
	else if (*last >= 'a' && *last <= 'z')
		last_value = (unsigned int)(*last - 'a') + 26;
	else if (*last >= '0' && *last <= '9')
		last_value = (unsigned int)(*last - '0') + 52;
	else
		last_value = *last == '+' ? 62 : 63;
	return (last_value & 0x3) == 0;
}

static int lp_config_set_string(char **field, const char *value, size_t len,
				char *what, size_t what_size)
{
	char *copy;

	copy = strndup(value, len);
	if (copy == NULL) {
		snprintf(what, what_size, "out of memory");
		return -1;
	}
	free(*field);
	*field = copy;
	return 0;
}

/* Parses value for key into config.  Returns 0, or -1 with what filled. */
static int lp_config_set_value(struct lp_config *config,
			       const struct lp_config_key *key,
			       const char *value, char *what, size_t what_size)
{
	char **str_field = (char **)((char *)config + key->offset);
	unsigned int *uint_field =
		(unsigned int *)((char *)config + key->offset);
	unsigned int secs;
	int len;

	switch (key->type) {
	case LP_CONFIG_TYPE_OPTIONAL_URL:
		if (value[0] == '\0')
			break;
		/* fall through */
	case LP_CONFIG_TYPE_URL:
		if ((len = lp_url_check_base(key->name, value, what,
					     what_size)) < 0)
			return -1;
		return lp_config_set_string(str_field, value, (size_t)len,
					    what, what_size);
	case LP_CONFIG_TYPE_ABS_PATH:
		if (value[0] != '/') {
			snprintf(what, what_size,
				 "%s must be an absolute path", key->name);
			return -1;
		}
		break;
	case LP_CONFIG_TYPE_HOME:
		if (lp_config_check_home(value, what, what_size) < 0)
			return -1;
		break;
	case LP_CONFIG_TYPE_WORD:
		if (value[0] == '\0' || strpbrk(value, " \t") != NULL) {
			snprintf(what, what_size,
				 "%s must be one non-empty word", key->name);
			return -1;
		}
		break;
	case LP_CONFIG_TYPE_OPTIONAL:
		break;
	case LP_CONFIG_TYPE_SMTP_URL:
		if (value[0] != '\0' &&
		    lp_url_check_smtp(key->name, value, what, what_size) < 0)
			return -1;
		break;
	case LP_CONFIG_TYPE_ADDRESS:
		if (value[0] != '\0' && !lp_forward_address_is_valid(value)) {
			snprintf(what, what_size, "%s must be empty or one "
				 "address local@domain (no name, no <>)",
				 key->name);
			return -1;
		}
		break;
	case LP_CONFIG_TYPE_NETS: {
		struct lp_net *nets;
		struct lp_error nerr;
		unsigned int count;

		if (lp_net_list_parse(value, &nets, &count, &nerr) < 0) {
			snprintf(what, what_size, "%s: %.*s", key->name,
				 LP_TEXT_MAX / 2, nerr.text);
			return -1;
		}
		free(nets);
		break;
	}
	case LP_CONFIG_TYPE_HOSTS: {
		char **hosts;
		unsigned int count;

		if (lp_backend_hosts_parse(value, &hosts, &count, what,
					   what_size) < 0)
			return -1;
		lp_backend_hosts_free(&config->backend_hosts,
				      config->backends_count);
		config->backend_hosts = hosts;
		config->backends_count = count;
		break;
	}
	case LP_CONFIG_TYPE_OPTIONAL_WORD:
		if (strpbrk(value, " \t") != NULL) {
			snprintf(what, what_size,
				 "%s must be one word or empty", key->name);
			return -1;
		}
		break;
	case LP_CONFIG_TYPE_OPTIONAL_PORT:
		if (value[0] == '\0') {
			*uint_field = 0;
			return 0;
		}
		/* fall through */
	case LP_CONFIG_TYPE_PORT:
		if (lp_duration_parse(value, &secs) < 0 ||
		    value[strlen(value) - 1] < '0' ||
		    value[strlen(value) - 1] > '9' ||
		    secs == 0 || secs > LP_PORT_MAX) {
			snprintf(what, what_size,
				 "%s must be a port number 1..%d", key->name,
				 LP_PORT_MAX);
			return -1;
		}
		*uint_field = secs;
		return 0;
	case LP_CONFIG_TYPE_COUNT:
		if (lp_duration_parse(value, &secs) < 0 ||
		    value[strlen(value) - 1] < '0' ||
		    value[strlen(value) - 1] > '9' || secs > LP_COUNT_MAX) {
			snprintf(what, what_size,
				 "%s must be a number 0..%d (0: no limit)",
				 key->name, LP_COUNT_MAX);
			return -1;
		}
		*uint_field = secs;
		return 0;
	case LP_CONFIG_TYPE_DURATION:
	case LP_CONFIG_TYPE_TIMEOUT:
		if (lp_duration_parse(value, &secs) < 0) {
			snprintf(what, what_size,
				 "invalid duration '%.*s' for %s "
				 "(a number with s, m, h or d, e.g. 10m)",
				 LP_CONFIG_ECHO_MAX, value, key->name);
			return -1;
		}
		if (key->type == LP_CONFIG_TYPE_TIMEOUT &&
		    (secs < LP_HTTP_TIMEOUT_MIN ||
		     secs > LP_HTTP_TIMEOUT_MAX)) {
			snprintf(what, what_size,
				 "%s must be %ds..%ds: auth-worker kills a "
				 "lookup after 60s", key->name,
				 LP_HTTP_TIMEOUT_MIN, LP_HTTP_TIMEOUT_MAX);
			return -1;
		}
		*uint_field = secs;
		return 0;
	case LP_CONFIG_TYPE_PUBLIC_KEY:
		if (value[0] != '\0' && !lp_config_public_key_is_valid(value)) {
			snprintf(what, what_size,
				 "%s must be empty or the base64 of a "
				 "%d-byte X25519 public key", key->name,
				 LP_PUBLIC_KEY_BYTES);
			return -1;
		}
		break;
	}
	if (value[0] == '\0' && (key->type == LP_CONFIG_TYPE_OPTIONAL ||
				 key->type == LP_CONFIG_TYPE_NETS ||
				 key->type == LP_CONFIG_TYPE_HOSTS ||
				 key->type == LP_CONFIG_TYPE_OPTIONAL_URL ||
				 key->type == LP_CONFIG_TYPE_OPTIONAL_WORD ||
				 key->type == LP_CONFIG_TYPE_SMTP_URL ||
				 key->type == LP_CONFIG_TYPE_ADDRESS ||
				 key->type == LP_CONFIG_TYPE_PUBLIC_KEY)) {
		free(*str_field);
		*str_field = NULL;
		return 0;
	}
	return lp_config_set_string(str_field, value, strlen(value),
				    what, what_size);
}

static bool lp_config_domain_is_valid(const char *domain)
{
	size_t len = strlen(domain), label = 0, i;

	if (len == 0 || len > LP_DOMAIN_MAX)
		return false;
	for (i = 0; i <= len; i++) {
		char c = domain[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || label > LP_DNS_LABEL_MAX ||
			    domain[i - 1] == '-')
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			   c == '-') {
			if (label == 0 && c == '-')
				return false;
			label++;
		} else {
			return false;
		}
	}
	return true;
}

static int lp_config_parse_domain(struct lp_config_parser *parser,
				  char *name, const char *team)
{
	struct lp_config *config = parser->config;
	struct lp_domain *domains;
	unsigned int *lines, i;
	char what[LP_TEXT_MAX];

	name = lp_config_trim(name);
	if (name[0] == '\0') {
		lp_config_error(parser, "domain line without a domain name "
				"(expected: domain <name> = <team>)");
		return -1;
	}
	lp_config_lowercase(name);
	if (!lp_config_domain_is_valid(name)) {
		snprintf(what, sizeof(what), "invalid domain name '%.*s'",
			 LP_CONFIG_ECHO_MAX, name);
		lp_config_error(parser, what);
		return -1;
	}
	if (team == NULL || team[0] == '\0') {
		snprintf(what, sizeof(what), "domain %.*s has no team "
			 "(expected: domain <name> = <team>)",
			 LP_CONFIG_ECHO_MAX, name);
		lp_config_error(parser, what);
		return -1;
	}
	if (!lp_name_is_valid(team)) {
		snprintf(what, sizeof(what), "invalid team '%.*s' for domain "
			 "%.*s (not a Launchpad name)", LP_CONFIG_ECHO_MAX,
			 team, LP_CONFIG_ECHO_MAX, name);
		lp_config_error(parser, what);
		return -1;
	}
	for (i = 0; i < config->domains_count; i++) {
		if (strcmp(config->domains[i].domain, name) == 0) {
			snprintf(what, sizeof(what), "duplicate domain %.*s "
				 "(first at line %u)", LP_CONFIG_ECHO_MAX,
				 name, parser->domain_lines[i]);
			lp_config_error(parser, what);
			return -1;
		}
	}

	domains = realloc(config->domains,
			  (config->domains_count + 1) * sizeof(*domains));
	if (domains == NULL)
		goto nomem;
	config->domains = domains;
	lines = realloc(parser->domain_lines,
			(config->domains_count + 1) * sizeof(*lines));
	if (lines == NULL)
		goto nomem;
	parser->domain_lines = lines;

	domains[config->domains_count] = (struct lp_domain){
		.domain = strdup(name),
		.team = strdup(team),
	};
	lines[config->domains_count] = parser->line;
	config->domains_count++;
	if (domains[config->domains_count - 1].domain == NULL ||
	    domains[config->domains_count - 1].team == NULL)
		goto nomem;
	return 0;
nomem:
	lp_error_set(parser->err, LP_ERR_INTERNAL, "%s: out of memory",
		     parser->path);
	return -1;
}

static int lp_config_parse_line(struct lp_config_parser *parser, char *line)
{
	const struct lp_config_key *key = NULL;
	char what[LP_TEXT_MAX];
	char *eq, *name, *value, *p;
	unsigned int i;

	for (p = line; *p != '\0'; p++) {
		if (lp_config_is_control((unsigned char)*p) &&
		    *p != '\t' && !(*p == '\r' && p[1] == '\0')) {
			snprintf(what, sizeof(what),
				 "control character 0x%02x in line",
				 (unsigned char)*p);
			lp_config_error(parser, what);
			return -1;
		}
	}
	/* A comment starts at a '#' that opens the line or follows
	   whitespace, so a '#' inside a value (a URL fragment) is not one. */
	for (p = line; *p != '\0'; p++) {
		if (*p == '#' && (p == line || lp_config_is_space(p[-1]))) {
			*p = '\0';
			break;
		}
	}
	line = lp_config_trim(line);
	if (line[0] == '\0')
		return 0;

	eq = strchr(line, '=');
	if (eq != NULL)
		*eq = '\0';
	name = lp_config_trim(line);
	value = eq == NULL ? NULL : lp_config_trim(eq + 1);

	if (strncmp(name, LP_CONFIG_DOMAIN_KEYWORD,
		    strlen(LP_CONFIG_DOMAIN_KEYWORD)) == 0 &&
	    (name[strlen(LP_CONFIG_DOMAIN_KEYWORD)] == '\0' ||
	     lp_config_is_space(name[strlen(LP_CONFIG_DOMAIN_KEYWORD)]))) {
		return lp_config_parse_domain(
			parser, name + strlen(LP_CONFIG_DOMAIN_KEYWORD), value);
	}
	if (value == NULL) {
		snprintf(what, sizeof(what), "missing '=' after '%.*s' "
			 "(expected: key = value)", LP_CONFIG_ECHO_MAX, name);
		lp_config_error(parser, what);
		return -1;
	}
	if (name[0] == '\0') {
		lp_config_error(parser, "missing key before '='");
		return -1;
	}
	for (p = value; *p != '\0'; p++) {
		/* A tab inside a value is as suspect as any control byte. */
		if (lp_config_is_control((unsigned char)*p)) {
			snprintf(what, sizeof(what), "control character 0x%02x "
				 "in the value of '%.*s'", (unsigned char)*p,
				 LP_CONFIG_ECHO_MAX, name);
			lp_config_error(parser, what);
			return -1;
		}
	}
	for (i = 0; i < LP_CONFIG_KEYS_COUNT; i++) {
		if (strcmp(lp_config_keys[i].name, name) == 0) {
			key = &lp_config_keys[i];
			break;
		}
	}
	if (key == NULL) {
		snprintf(what, sizeof(what), "unknown key '%.*s'",
			 LP_CONFIG_ECHO_MAX, name);
		lp_config_error(parser, what);
		return -1;
	}
	if (parser->seen_line[i] != 0) {
		snprintf(what, sizeof(what), "duplicate key %s "
			 "(first at line %u)", key->name,
			 parser->seen_line[i]);
		lp_config_error(parser, what);
		return -1;
	}
	parser->seen_line[i] = parser->line;
	if (lp_config_set_value(parser->config, key, value,
				what, sizeof(what)) < 0) {
		lp_config_error(parser, what);
		return -1;
	}
	return 0;
}

static int lp_config_apply_defaults(struct lp_config_parser *parser)
{
	char what[LP_TEXT_MAX];
	unsigned int i;

	for (i = 0; i < LP_CONFIG_KEYS_COUNT; i++) {
		if (parser->seen_line[i] != 0)
			continue;
		if (lp_config_set_value(parser->config, &lp_config_keys[i],
					lp_config_keys[i].default_value,
					what, sizeof(what)) < 0) {
			/* Only out of memory: the defaults are tested. */
			lp_error_set(parser->err, LP_ERR_INTERNAL,
				     "%s: default of %s: %s", parser->path,
				     lp_config_keys[i].name, what);
			return -1;
		}
	}
	return 0;
}

/* A number, or the name of a user (group) of this machine, looked up
   here once; -1 if there is none. */
static long long lp_config_resolve_id(const char *value, bool group)
{
	unsigned long long n = 0;
	const struct passwd *pw;
	const struct group *gr;
	const char *p;

	for (p = value; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (unsigned int)(*p - '0');
		if (n >= (unsigned long long)(uid_t)-1)
			return -1;
	}
	if (*p == '\0' && p != value)
		return (long long)n;
	if (group)
		return (gr = getgrnam(value)) == NULL ? -1 :
			(long long)gr->gr_gid;
	return (pw = getpwnam(value)) == NULL ? -1 : (long long)pw->pw_uid;
}

static void lp_config_resolve_ids(struct lp_config *config)
{
	long long id;

	id = lp_config_resolve_id(config->uid, false);
	config->mail_uid = id < 0 ? (uid_t)-1 : (uid_t)id;
	id = lp_config_resolve_id(config->gid, true);
	config->mail_gid = id < 0 ? (gid_t)-1 : (gid_t)id;
}

int lp_config_mail_ids(const struct lp_config *config, uid_t *uid_r,
		       gid_t *gid_r, struct lp_error *err)
{
	if (config->mail_uid == (uid_t)-1) {
		lp_error_set(err, LP_ERR_CONFIG, "%s: uid: unknown user '%s'",
			     config->path, config->uid);
		return -1;
	}
	if (config->mail_gid == (gid_t)-1) {
		lp_error_set(err, LP_ERR_CONFIG,
			     "%s: gid: unknown group '%s'", config->path,
			     config->gid);
		return -1;
	}
	*uid_r = config->mail_uid;
	*gid_r = config->mail_gid;
	return 0;
}

int lp_config_parse(const char *path, const char *text,
		    struct lp_config **config_r, struct lp_error *err)
{
	struct lp_config_parser parser = {
		.path = path != NULL ? path : "(config)",
		.err = err,
	};
	char *buf, *line, *next;
	int ret = 0;

	*config_r = NULL;
	parser.config = calloc(1, sizeof(*parser.config));
	buf = strdup(text);
	if (parser.config == NULL || buf == NULL ||
	    (parser.config->path = strdup(parser.path)) == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "%s: out of memory",
			     parser.path);
		free(buf);
		lp_config_free(&parser.config);
		return -1;
	}

	for (line = buf; line != NULL && ret == 0; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		parser.line++;
		ret = lp_config_parse_line(&parser, line);
	}
	if (ret == 0 && parser.config->domains_count == 0) {
		lp_error_set(err, LP_ERR_CONFIG, "%s: no domain configured "
			     "(need at least one 'domain <name> = <team>' "
			     "line)", parser.path);
		ret = -1;
	}
	if (ret == 0)
		ret = lp_config_apply_defaults(&parser);
	if (ret == 0)
		lp_config_resolve_ids(parser.config);

	free(buf);
	free(parser.domain_lines);
	if (ret < 0) {
		lp_config_free(&parser.config);
		return -1;
	}
	*config_r = parser.config;
	return 0;
}

int lp_config_load(const char *path, struct lp_config **config_r,
		   struct lp_error *err)
{
	struct stat st;
	char *buf, *nul;
	size_t size = 0;
	ssize_t ret;
	int fd;

	*config_r = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		lp_error_set(err, LP_ERR_CONFIG, "%s: open() failed: %s",
			     path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "%s: fstat() failed: %s",
			     path, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		lp_error_set(err, LP_ERR_CONFIG, "%s: not a regular file",
			     path);
		close(fd);
		return -1;
	}
	buf = malloc(LP_CONFIG_FILE_MAX + 1);
	if (buf == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	/* Read up to one byte past the limit, so a file that grew after
	   fstat() is still caught as too large. */
	while (size <= LP_CONFIG_FILE_MAX) {
		ret = read(fd, buf + size, LP_CONFIG_FILE_MAX + 1 - size);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0) {
			lp_error_set(err, LP_ERR_INTERNAL,
				     "%s: read() failed: %s",
				     path, strerror(errno));
			free(buf);
			close(fd);
			return -1;
		}
		if (ret == 0)
			break;
		size += (size_t)ret;
	}
	close(fd);
	if (size > LP_CONFIG_FILE_MAX) {
		lp_error_set(err, LP_ERR_CONFIG, "%s: larger than %d bytes",
			     path, LP_CONFIG_FILE_MAX);
		free(buf);
		return -1;
	}
	nul = memchr(buf, '\0', size);
	if (nul != NULL) {
		unsigned int line = 1;

		for (char *p = buf; p < nul; p++)
			line += *p == '\n' ? 1 : 0;
		lp_error_set(err, LP_ERR_CONFIG, "%s:%u: NUL byte in line",
			     path, line);
		free(buf);
		return -1;
	}
	buf[size] = '\0';
	ret = lp_config_parse(path, buf, config_r, err);
	free(buf);
	return (int)ret;
}

void lp_config_free(struct lp_config **_config)
{
	struct lp_config *config = *_config;
	unsigned int i;

	if (config == NULL)
		return;
	*_config = NULL;
	for (i = 0; i < LP_CONFIG_KEYS_COUNT; i++) {
		if (lp_config_keys[i].type != LP_CONFIG_TYPE_DURATION &&
		    lp_config_keys[i].type != LP_CONFIG_TYPE_TIMEOUT &&
		    lp_config_keys[i].type != LP_CONFIG_TYPE_PORT &&
		    lp_config_keys[i].type != LP_CONFIG_TYPE_OPTIONAL_PORT &&
		    lp_config_keys[i].type != LP_CONFIG_TYPE_COUNT)
			free(*(char **)((char *)config +
					lp_config_keys[i].offset));
	}
	for (i = 0; i < config->domains_count; i++) {
		free(config->domains[i].domain);
		free(config->domains[i].team);
	}
	free(config->domains);
	lp_backend_hosts_free(&config->backend_hosts,
			      config->backends_count);
	free(config->path);
	free(config);
}

const struct lp_domain *
lp_config_find_domain(const struct lp_config *config, const char *domain)
{
	unsigned int i;

	if (domain == NULL)
		return NULL;
	for (i = 0; i < config->domains_count; i++) {
		if (strcmp(config->domains[i].domain, domain) == 0)
			return &config->domains[i];
	}
	return NULL;
}

static int lp_config_append(char *buf, size_t size, size_t *pos,
			    const char *str, size_t len)
{
	/* Leaves room for the NUL. */
	if (len >= size - *pos)
		return -1;
	memcpy(buf + *pos, str, len);
	*pos += len;
	return 0;
}

int lp_config_expand_home(const struct lp_config *config, const char *name,
			  const char *domain, char *buf, size_t size)
{
	const char *p;
	size_t pos = 0;
	int ret = 0;

	if (size == 0)
		return -1;
	for (p = config->home; *p != '\0' && ret == 0; p++) {
		if (*p != '%') {
			ret = lp_config_append(buf, size, &pos, p, 1);
			continue;
		}
		switch (*++p) {
		case 'd':
			ret = lp_config_append(buf, size, &pos, domain,
					       strlen(domain));
			break;
		case 'n':
			ret = lp_config_append(buf, size, &pos, name,
					       strlen(name));
			break;
		case 'u':
			if ((ret = lp_config_append(buf, size, &pos, name,
						    strlen(name))) == 0 &&
			    (ret = lp_config_append(buf, size, &pos,
						    "@", 1)) == 0)
				ret = lp_config_append(buf, size, &pos, domain,
						       strlen(domain));
			break;
		case '%':
			ret = lp_config_append(buf, size, &pos, "%", 1);
			break;
		default:
			/* Refused at load time; never reached. */
			ret = -1;
			p--;
			break;
		}
	}
	if (ret < 0) {
		buf[0] = '\0';
		return -1;
	}
	buf[pos] = '\0';
	return 0;
}
