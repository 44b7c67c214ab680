/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef LAUNCHPAD_H
#define LAUNCHPAD_H

/* liblaunchpad: who is entitled to a mailbox, decided from Launchpad.

   Usage, in any process (no Dovecot headers here):

     struct lp_config *config;
     struct lp_error err;
     if (lp_config_load("/etc/dovecot/dovecot-launchpad.conf.ext",
                        &config, &err) < 0)
             fatal(err.text);             // names file and line
     struct lp_context *ctx;
     if (lp_context_create(config, &log, &ctx, &err) < 0) ...
     struct lp_entitlement ent;
     lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);   // may block
     switch (ent.verdict.kind) { ALLOW / DENY (ent.verdict.text) / TEMPFAIL }
     lp_context_destroy(&ctx);
     lp_config_free(&config);

   The decision itself is the pure function lp_decide() (doc/DESIGN.md
   section 4); lp_entitlement_check() gathers its facts from the TDB cache
   and, when the cache cannot answer, from Launchpad over HTTP (bounded by
   a deadline well under auth-worker's 60 s).  Concurrent cold lookups of one person or team,
   from any number of processes, make one HTTP request (TDB chainlocks).

   Errors: functions return 0 ok / -1 error, lookups 1 found / 0 absent /
   -1 error; details land in a caller-owned struct lp_error.  The library
   never prints: it logs through the struct lp_log callback given at
   lp_context_create(). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>

#define LP_NAME_MAX 64		/* Launchpad names are 2..64 characters */
#define LP_DOMAIN_MAX 253
#define LP_USER_MAX (LP_NAME_MAX + 1 + LP_DOMAIN_MAX)
#define LP_TEXT_MAX 256

/* ---- errors and logging ---- */

enum lp_error_kind {
	LP_ERR_NONE = 0,
	LP_ERR_TEMP,		/* Launchpad unreachable, 5xx, timeout: retry later */
	LP_ERR_NOT_FOUND,
	LP_ERR_PROTOCOL,	/* malformed/huge/unexpected answer from Launchpad */
	LP_ERR_CORRUPT,		/* corrupt cache record or file */
	LP_ERR_CONFIG,		/* configuration error; text names file:line */
	LP_ERR_INTERNAL,	/* I/O or library failure; text has call + errno */
};

struct lp_error {
	enum lp_error_kind kind;
	char text[LP_TEXT_MAX];
};

/* Sets err (may be NULL) to kind and a printf-formatted text. */
void lp_error_set(struct lp_error *err, enum lp_error_kind kind,
		  const char *fmt, ...) __attribute__((format(printf, 3, 4)));

enum lp_log_level {
	LP_LOG_DEBUG,
	LP_LOG_INFO,
	LP_LOG_WARNING,
	LP_LOG_ERROR,
};

struct lp_log {
	void (*fn)(void *context, enum lp_log_level level, const char *msg);
	void *context;
};

/* ---- configuration (lp-config.c) ---- */

struct lp_domain {
	char *domain;		/* "ubuntu.com", lower case */
	char *team;		/* "ubuntumembers" */
};

struct lp_config {
	char *path;
	char *api_url;		/* no trailing slash */
	char *cache_path;
	char *home;		/* template: %d domain, %n name, %u name@domain, %% */
	char *uid;		/* user name or number, as written */
	char *gid;
	/* uid and gid resolved once, when the file is parsed; (uid_t)-1
	   and (gid_t)-1 when this machine has no such user or group (use
	   lp_config_mail_ids() to get them or the error). */
	uid_t mail_uid;
	gid_t mail_gid;
	unsigned int positive_ttl;	/* seconds */
	unsigned int negative_ttl;
	unsigned int stale_grace;
	unsigned int http_timeout;
	char *recovery_public_key;	/* base64 X25519 public key, or NULL */
	struct lp_domain *domains;	/* in file order; [0] is the default */
	unsigned int domains_count;

	/* For dovecot-launchpad-web and the notifications: parsed and
	   stored, not used by liblaunchpad.  Empty optional values are
	   NULL. */
	char *web_listen;	/* "127.0.0.1:8145" */
	char *web_url;		/* public base URL (checked like api_url), or NULL */
	char *sso_url;		/* "https://login.ubuntu.com/+openid" */
	char *notify_to;	/* admin notification address, or NULL */
	char *notify_from;	/* or NULL */
	char *web_auth_socket;	/* Dovecot auth "-master" socket for CACHE-FLUSH */
	char *web_anvil_socket;	/* anvil listener for ending sessions (kick) */
	char *web_state_dir;	/* the web daemon's own TDB and event spool */
	char *web_trusted_proxies;	/* X-Real-IP trusted from these, or NULL */
	char *web_mail_host;	/* IMAP/POP3 host shown to users; NULL: web_url's */
	unsigned int web_imap_port;	/* 993 */
	unsigned int web_pop3_port;	/* 995 */
	unsigned int web_submission_port;	/* 0: sending not offered */
	char *web_launchpad_url;	/* Launchpad's pages, for the fixes */
	unsigned int web_session_ttl;	/* seconds a sign-in lasts */
	char *web_smtp_url;	/* relay for confirmation mail, or NULL */
	char *web_smtp_from;	/* their sender (needed with the relay) */
	unsigned int web_confirm_ttl;	/* seconds a confirmation link works */

	/* Proxy mode (several backends, lp-backend.c): empty `backends`
	   (NULL) is the single-server mode. */
	char *backends;		/* as written, or NULL */
	char **backend_hosts;	/* parsed, lower case, in file order */
	unsigned int backends_count;
	unsigned int backend_imap_port;	/* 143 */
	unsigned int backend_pop3_port;	/* 110 */
	unsigned int backend_lmtp_port;	/* 24 */
	/* Sending through Dovecot's submission service (src/submission):
	   0 = no limit. */
	unsigned int send_messages_per_hour;
	unsigned int send_recipients_per_message;
	char *send_state_path;	/* the counters' TDB, written by the mail uid */
};

/* Parses a dovecot-launchpad.conf.ext (doc/DESIGN.md section 3).  Unknown
   keys, bad durations, duplicate keys or domains, a domain without a team,
   a file without any domain: -1 with err->kind LP_ERR_CONFIG and a text
   "<path>:<line>: <what>".  On success *config_r is owned by the caller. */
int lp_config_load(const char *path, struct lp_config **config_r,
		   struct lp_error *err);
/* Same, from a string (path is only used in error texts). */
int lp_config_parse(const char *path, const char *text,
		    struct lp_config **config_r, struct lp_error *err);
void lp_config_free(struct lp_config **config);

/* Parses "10s", "5m", "1h", "7d" or a bare number of seconds.
   Returns 0 and the seconds, or -1 on anything else (overflow included). */
int lp_duration_parse(const char *str, unsigned int *secs_r);

/* The mail uid and gid (config->mail_uid, mail_gid).  Returns 0, or -1
   with err LP_ERR_CONFIG "<path>: uid: unknown user 'vmail'" when the
   user or group did not exist when the file was parsed. */
int lp_config_mail_ids(const struct lp_config *config, uid_t *uid_r,
		       gid_t *gid_r, struct lp_error *err);

/* The domain entry for a lower-case domain, or NULL if not configured. */
const struct lp_domain *
lp_config_find_domain(const struct lp_config *config, const char *domain);

/* Expands config->home for name@domain into buf.  Returns 0, or -1 if it does
   not fit.  name and domain must already be validated. */
int lp_config_expand_home(const struct lp_config *config, const char *name,
			  const char *domain, char *buf, size_t size);

/* ---- forwarding (lp-forward.c) ----

   A user's forwarding is a Sieve script LP_FORWARD_FNAME in their home,
   generated here and run by Pigeonhole at LMTP delivery as the first
   sieve_before script (plugin { sieve_before = file:~/<it> }): "redirect"
   (the mail leaves, nothing is kept and the user's own script does not
   run) or "redirect :copy" (keep a copy).  Present = forwarding is on;
   LMTP then also accepts mail for a user without a keyfile. */
#define LP_FORWARD_FNAME ".launchpad-forward.sieve"
#define LP_FORWARD_ADDRESS_MAX 254

struct lp_forward {
	char address[LP_FORWARD_ADDRESS_MAX + 1];
	bool keep;
};

/* TRUE for local@domain: RFC 5322 atext and dots in the local part (no
   quoting), a dotted host name; at most LP_FORWARD_ADDRESS_MAX bytes. */
bool lp_forward_address_is_valid(const char *address);
/* The script for fwd into buf: its length, or -1 if the address is not
   valid or it does not fit. */
int lp_forward_script(const struct lp_forward *fwd, char *buf, size_t size);
/* Reads a script written by lp_forward_script(): 1 with *fwd_r, 0 if it
   is not one. */
int lp_forward_parse(const char *text, struct lp_forward *fwd_r);
/* The forwarding of the user whose home is home: 1 on, 0 off, -1 error
   (also for a file there that is not ours). */
int lp_forward_read(const char *home, struct lp_forward *fwd_r,
		    struct lp_error *err);
/* Turns forwarding on (or changes it): creates home (0700, uid:gid) if
   missing and replaces the script atomically, synced.  Returns 0 or -1. */
int lp_forward_write(const char *home, const struct lp_forward *fwd,
		     uid_t uid, gid_t gid, struct lp_error *err);
/* Turns it off: 1 removed, 0 was off, -1 error. */
int lp_forward_clear(const char *home, struct lp_error *err);

/* ---- confirming a forwarding address (lp-fwdconfirm.c) ----

   The self-service page forwards to an address Ubuntu One did not vouch
   for only after a link mailed to it was followed: a random token,
   single-use, valid web_confirm_ttl, bound to (user, address, keep).
   Only its SHA-256 is stored (web_state_dir/web.tdb, "fwdconfirm/"), so
   the state directory alone opens nothing.  How many such mails go out is
   counted there too, per user per hour and per address per day, so a
   restart does not reset it. */
struct lp_context;

#define LP_FWDCONFIRM_TOKEN_BYTES 32
#define LP_FWDCONFIRM_TOKEN_HEX (LP_FWDCONFIRM_TOKEN_BYTES * 2)
#define LP_FWDCONFIRM_USER_MAILS 3	/* per user per hour */
#define LP_FWDCONFIRM_USER_SECS (60 * 60)
#define LP_FWDCONFIRM_ADDRESS_MAILS 3	/* per address per day */
#define LP_FWDCONFIRM_ADDRESS_SECS (24 * 60 * 60)

struct lp_fwdconfirm {
	char user[LP_USER_MAX + 1];	/* name@domain */
	struct lp_forward fwd;
	time_t created;
};

enum lp_fwdconfirm_result {
	LP_FWDCONFIRM_OK,
	LP_FWDCONFIRM_UNKNOWN,		/* never issued, used, or malformed */
	LP_FWDCONFIRM_EXPIRED,		/* older than web_confirm_ttl */
	LP_FWDCONFIRM_OTHER_USER,	/* issued to another Launchpad name */
};

enum lp_fwdconfirm_limit {
	LP_FWDCONFIRM_LIMIT_OK,		/* counted: send it */
	LP_FWDCONFIRM_LIMIT_USER,	/* LP_FWDCONFIRM_USER_MAILS reached */
	LP_FWDCONFIRM_LIMIT_ADDRESS,	/* ..._ADDRESS_MAILS reached */
};

/* TRUE for a token as lp_fwdconfirm_create() makes them: exactly
   LP_FWDCONFIRM_TOKEN_HEX lower-case hex digits. */
bool lp_fwdconfirm_token_is_valid(const char *token);
/* Stores a new confirmation for c->user and c->fwd (created now) and
   returns its token (the caller wipes it once mailed).  0 or -1. */
int lp_fwdconfirm_create(struct lp_context *ctx,
			 const struct lp_fwdconfirm *c,
			 char token_r[LP_FWDCONFIRM_TOKEN_HEX + 1],
			 struct lp_error *err);
/* Looks token up for the Launchpad name name: *result_r says whether it
   may be used (OK: *c_r filled).  With take, an OK (or expired) token
   is deleted in the same chainlock (single use); without, nothing
   changes.
   0, or -1 on a storage error. */
int lp_fwdconfirm_check(struct lp_context *ctx, const char *token,
			const char *name, bool take,
			struct lp_fwdconfirm *c_r,
			enum lp_fwdconfirm_result *result_r,
			struct lp_error *err);
/* Counts one confirmation mail for user to address if both are under
   their limits (*limit_r OK), else counts nothing.  0 or -1. */
int lp_fwdconfirm_limit_take(struct lp_context *ctx, const char *user,
			     const char *address,
			     enum lp_fwdconfirm_limit *limit_r,
			     struct lp_error *err);
/* Deletes expired confirmations and counters.  Count, or -1. */
int lp_fwdconfirm_prune(struct lp_context *ctx, struct lp_error *err);
/* The confirmation mail (CRLF lines, headers and a plain-text body) for
   c from config->web_smtp_from, its link under config->web_url: a
   malloc'd text, or NULL (an address or user that is not valid, or out
   of memory).  Nothing from the request reaches a header unchecked. */
char *lp_fwdconfirm_message(const struct lp_config *config,
			    const struct lp_fwdconfirm *c, const char *token,
			    time_t now);
/* Sends message to rcpt through config->web_smtp_url (libcurl SMTP,
   bounded by http_timeout).  0, or -1 with err (LP_ERR_TEMP: the relay
   could not be reached or refused). */
int lp_mail_send(const struct lp_config *config, const char *rcpt,
		 const char *message, struct lp_error *err);

/* ---- login names (lp-name.c, lp-login.c) ---- */

/* TRUE if name matches ^[a-z0-9][a-z0-9+.-]{1,63}$ (already lower case). */
bool lp_name_is_valid(const char *name);

enum lp_login_result {
	LP_LOGIN_OK,
	LP_LOGIN_BAD_DOMAIN,	/* decision row 1 */
	LP_LOGIN_BAD_NAME,	/* decision row 2 */
};

/* Splits a login "local@domain" (or bare "local": the first configured
   domain) at the last '@', lower-cases both parts and validates them.
   Never reads past a NUL, never accepts a control or non-ASCII byte. On
   LP_LOGIN_OK fills name_r (LP_NAME_MAX+1 bytes) and *domain_r. */
enum lp_login_result
lp_login_parse(const struct lp_config *config, const char *login,
	       char name_r[LP_NAME_MAX + 1],
	       const struct lp_domain **domain_r);

/* ---- the decision table (lp-decision.c), doc/DESIGN.md section 4 ---- */

enum lp_verdict_kind {
	LP_VERDICT_ALLOW,
	LP_VERDICT_DENY,
	LP_VERDICT_TEMPFAIL,
};

enum lp_deny_reason {
	LP_DENY_NONE = 0,
	LP_DENY_DOMAIN,		/* 1: "domain not configured" */
	LP_DENY_NAME,		/* 2: "not a Launchpad name" */
	LP_DENY_BANNED,		/* 3: "user banned" (+ ": reason") */
	LP_DENY_NO_PERSON,	/* 4: "no such Launchpad user" */
	LP_DENY_NOT_VALID,	/* 5: "account not valid" */
	LP_DENY_NO_COC,		/* 6: "Code of Conduct not signed" */
	LP_DENY_NOT_MEMBER,	/* 7: "not a member of ~team" */
};

enum lp_person_state {
	LP_PERSON_UNKNOWN = 0,	/* no usable record (Launchpad failed) */
	LP_PERSON_OK,		/* 200 (or 304 on a cached record) */
	LP_PERSON_NOT_FOUND,	/* 404 */
	LP_PERSON_SUSPENDED,	/* 410 */
};

enum lp_membership {
	LP_MEMBER_UNKNOWN = 0,	/* no usable team record */
	LP_MEMBER_YES,
	LP_MEMBER_NO,
};

/* Everything lp_decide() looks at.  A fact is "unknown" when its fresh
   source failed; the previously cached verdict then decides, within
   stale_grace. */
struct lp_facts {
	bool domain_configured;
	bool name_valid;
	bool banned;
	const char *ban_reason;		/* may be NULL */
	const char *team;		/* for the "not a member" text */
	enum lp_person_state person;
	bool is_valid;
	bool is_coc_signer;
	enum lp_membership member;

	/* The last verdict stored for this user, if any. */
	bool have_cached;
	enum lp_verdict_kind cached_kind;
	enum lp_deny_reason cached_reason;
	time_t cached_expires_at;

	time_t now;
	unsigned int stale_grace;
};

struct lp_verdict {
	enum lp_verdict_kind kind;
	enum lp_deny_reason reason;	/* LP_DENY_NONE unless DENY */
	bool stale;			/* served from an expired record */
	char text[LP_TEXT_MAX];		/* reason words, "" for allow */
};

/* The decision table, rows 1..8 and the Launchpad-unreachable row, in
   order.  Pure: no I/O, no clock, no globals. */
void lp_decide(const struct lp_facts *facts, struct lp_verdict *verdict_r);

/* The fixed words for a deny reason ("account not valid", ...). For
   LP_DENY_NOT_MEMBER the caller appends the team. */
const char *lp_deny_reason_text(enum lp_deny_reason reason);

/* What fixes a deny reason, for the person denied (lp-remedy.c). */
struct lp_remedy {
	char text[LP_TEXT_MAX * 2];	/* plain words: what to do */
	char url[LP_TEXT_MAX * 2];	/* the Launchpad page, "" if none */
	char link_text[LP_TEXT_MAX];	/* the link's words */
	bool recheck;			/* fixable on Launchpad: asking again
					   can change the answer */
};

/* Fills r for reason: the Launchpad page under web_launchpad_url that
   fixes it (the Code of Conduct, the team's page with how to join, the
   person's account), when there is one.  name and team may be NULL; a
   value that is not a valid Launchpad name never reaches the URL. */
void lp_deny_remedy(const struct lp_config *config,
		    enum lp_deny_reason reason, const char *name,
		    const char *team, struct lp_remedy *r);

/* ---- the context (lp-context.c) ---- */

struct lp_context;

/* Who may write what auth trusts.  cache_path holds the verdicts, bans
   and Launchpad facts that root auth-workers act on, so only root
   processes (auth-workers, doveadm, the sync) write it: it is owned by
   root, mode 0640, group gid (a file found writable by another uid is
   taken back and everything but its bans dropped).  Processes running as
   the mail uid never write it: imap/pop3/lmtp do not open it, and
   dovecot-launchpad-web reads it (bans, root's verdicts, "last used"
   stamps) and keeps its own state (its lookups, OpenID nonces) in
   web_state_dir/web.tdb and its queued admin events in
   web_state_dir/notify/, which the sync reads as untrusted input. */

/* Opens (creating if needed) the TDB cache at config->cache_path for a
   root process and prepares the HTTP client.  config must outlive the
   context. */
int lp_context_create(const struct lp_config *config, const struct lp_log *log,
		      struct lp_context **ctx_r, struct lp_error *err);
/* The same for dovecot-launchpad-web: writes only web_state_dir (created
   0700 if missing), reads cache_path (read-only, with read locks) for
   bans, root's fresher facts and the "last used" stamps.  A cache_path
   that does not exist yet is opened when it appears; one that cannot be
   read is an error. */
int lp_context_create_web(const struct lp_config *config,
			  const struct lp_log *log,
			  struct lp_context **ctx_r, struct lp_error *err);
void lp_context_destroy(struct lp_context **ctx);
/* Undoes the process-wide libcurl setup the first lp_context_create() did
   (nothing if none did); for a module's deinit, after its last context. */
void lp_global_deinit(void);

/* ---- the orchestrator: cache + HTTP + decision (lp-entitlement.c) ---- */

struct lp_entitlement {
	enum lp_login_result login;
	char name[LP_NAME_MAX + 1];	/* valid when login == LP_LOGIN_OK */
	const struct lp_domain *domain;	/* idem */
	char user[LP_USER_MAX + 1];	/* canonical "name@domain" */
	struct lp_verdict verdict;
	bool from_cache;		/* no HTTP request was needed */
};

/* The full decision for a login.  Blocks on Launchpad only when the cache
   cannot answer, bounded by a deadline (< 45 s in total).  Stores the
   verdict (with its reason) in the cache. Never fails: trouble is a
   TEMPFAIL verdict whose text says what went wrong. */
void lp_entitlement_check(struct lp_context *ctx, const char *login,
			  struct lp_entitlement *ent_r);

/* Same, ignoring TTLs: always asks Launchpad (doveadm launchpad refresh). */
void lp_entitlement_refresh(struct lp_context *ctx, const char *login,
			    struct lp_entitlement *ent_r);

/* For dovecot-launchpad-web's "Check again", after its own refresh:
   marks name (web_state_dir/recheck/<name>, mtime now) so that root's
   next lookup of name asks Launchpad again instead of answering from a
   cached denial it cannot write over (lp-recheck.c).  Returns 0, or -1
   with err. */
int lp_recheck_request(const struct lp_config *config, const char *name,
		       struct lp_error *err);

/* ---- cache inspection for doveadm, the web page (lp-cache-admin.c) ---- */

struct lp_cache_user {
	char user[LP_USER_MAX + 1];	/* name@domain */
	enum lp_verdict_kind kind;	/* ALLOW or DENY */
	enum lp_deny_reason reason;
	char text[LP_TEXT_MAX];
	time_t decided_at;
	time_t expires_at;
	/* person record, if cached */
	bool have_person;
	enum lp_person_state person;
	bool is_valid;
	bool is_coc_signer;
	char etag[128];
	time_t person_fetched_at;
	time_t person_expires_at;
	/* ban, if any */
	bool banned;
	char ban_reason[LP_TEXT_MAX];
};

/* Reads what the cache knows of name@domain. Returns 1, 0 if nothing is
   cached, -1 on error. Never does HTTP. */
int lp_cache_show(struct lp_context *ctx, const char *user,
		  struct lp_cache_user *user_r, struct lp_error *err);

/* Drops the person record and every stored verdict for user ("name" or
   "name@domain": all domains of that name).  Returns the number of records
   removed, or -1. Does not touch bans. */
int lp_cache_invalidate(struct lp_context *ctx, const char *user,
			struct lp_error *err);

/* Drops every person, team and verdict record (doveadm launchpad cache
   invalidate -A).  Returns the number of records removed, or -1.  Does
   not touch bans. */
int lp_cache_invalidate_all(struct lp_context *ctx, struct lp_error *err);

/* Calls cb for every cached ALLOW verdict that has not expired beyond
   stale_grace ("name@domain").  Returns 0 or -1. cb returns 0 to go on,
   -1 to stop. */
int lp_cache_iterate_allowed(struct lp_context *ctx,
			     int (*cb)(const char *user, void *context),
			     void *context, struct lp_error *err);

/* ---- sending as name@domain (lp-sendas.c, lp-sendlimit.c) ---- */

/* The addresses name may send as right now: name@D for every configured
   domain D whose decision (lp_entitlement_check(), so it may block on
   Launchpad) allows name@D; first (the domain the user logged in with,
   already allowed) is listed first without another check.  The other
   domains are decided within 15 s together (a domain not decided in time
   is not listed), so the login stays well under auth-worker's 60 s.
   Written to buf space-separated, in config order after first.  Returns how many,
   or -1 if buf (size >= lp_send_as_bufsize()) is too small. */
int lp_send_as_list(struct lp_context *ctx, const char *name,
		    const struct lp_domain *first, char *buf, size_t size);
/* The buffer size lp_send_as_list() needs for config. */
size_t lp_send_as_bufsize(const struct lp_config *config);

/* TRUE if address ("local@domain", as on MAIL FROM or in From:) is one of
   the space-separated addresses of list, compared without case.  NULL,
   empty or anything with a space or control character is never allowed. */
bool lp_send_as_allowed(const char *list, const char *address);

/* Per-user sending counters in their own TDB (config->send_state_path),
   written by the submission processes (the mail uid); never cache_path.
   Messages are counted per Launchpad name (all its domains together) in
   one-minute buckets over the last hour. */
struct lp_sendlimit;

/* Opens (creating, mode 0600) the counters' TDB.  0, or -1 with err. */
int lp_sendlimit_open(const char *path, struct lp_sendlimit **sl_r,
		      struct lp_error *err);
void lp_sendlimit_close(struct lp_sendlimit **sl);

/* How many messages name sent in the hour up to now.  0, or -1. */
int lp_sendlimit_count(struct lp_sendlimit *sl, const char *name,
		       time_t now, unsigned int *count_r,
		       struct lp_error *err);
/* Counts one message of name at now, unless limit (0: none) messages
   were already counted in the hour up to now.  Atomic across processes
   (the record's chainlock).  Returns 1 counted, 0 limit reached (nothing
   counted), -1 error. */
int lp_sendlimit_take(struct lp_sendlimit *sl, const char *name,
		      unsigned int limit, time_t now, struct lp_error *err);

/* ---- bans (lp-ban.c) ---- */

/* Bans are per Launchpad name (all domains). ban_set replaces. */
int lp_ban_set(struct lp_context *ctx, const char *name, const char *reason,
	       struct lp_error *err);
/* Returns 1 removed, 0 not banned, -1 error. */
int lp_ban_clear(struct lp_context *ctx, const char *name,
		 struct lp_error *err);

/* ---- administration (lp-cache-admin.c, lp-ban.c, lp-cache-slot.c):
   lists, counts, app password use ---- */

/* Calls cb for every stored verdict (allow or deny, expired or not), in no
   particular order, with what lp_cache_show() would give for that user.
   Returns 0 or -1.  cb returns 0 to go on, -1 to stop. */
int lp_cache_list(struct lp_context *ctx,
		  int (*cb)(const struct lp_cache_user *entry, void *context),
		  void *context, struct lp_error *err);

struct lp_ban_entry {
	char name[LP_NAME_MAX + 1];
	char reason[LP_TEXT_MAX];	/* "" if none given */
	time_t set_at;			/* 0 if unknown (unreadable record) */
};

/* Calls cb for every ban.  Returns 0 or -1. */
int lp_ban_list(struct lp_context *ctx,
		int (*cb)(const struct lp_ban_entry *ban, void *context),
		void *context, struct lp_error *err);

struct lp_cache_counts {
	unsigned int allow;		/* ALLOW verdicts not yet expired */
	unsigned int allow_expired;	/* ALLOW verdicts past expires_at */
	unsigned int deny;		/* DENY verdicts, expired or not */
	unsigned int persons;
	unsigned int teams;
	unsigned int bans;
};

/* Counts the cache's records by kind. Returns 0 or -1. */
int lp_cache_count(struct lp_context *ctx, struct lp_cache_counts *counts_r,
		   struct lp_error *err);

/* Minimum age of a "last used" stamp before a login rewrites it: logins
   of a busy user must not each write the TDB. */
#define LP_SLOT_USED_THROTTLE_SECS 60

/* Records that app password slot slot_id of user ("name@domain") opened
   now.  keyfile_id (kr_keyfile_id(): lower-case hex) names the keyfile,
   whose slot ids a new keyfile (a reset) starts again.  Writes only if
   the stored time is older than LP_SLOT_USED_THROTTLE_SECS.  Returns 1
   written, 0 throttled, -1 error.  A TDB write of its own, never a
   keyfile write: logins take no keyfile lock. */
int lp_cache_slot_used(struct lp_context *ctx, const char *user,
		       const char *keyfile_id, unsigned int slot_id,
		       struct lp_error *err);
/* The last login time of slot_id: 1 found, 0 never recorded. */
int lp_cache_slot_last_used(struct lp_context *ctx, const char *user,
			    const char *keyfile_id, unsigned int slot_id,
			    time_t *time_r);
/* Forgets slot_id's stamp, or every stamp of user (of every keyfile;
   keyfile_id may be NULL) when slot_id is LP_SLOT_ALL.  Returns the
   number of records removed, or -1. */
#define LP_SLOT_ALL UINT32_MAX
int lp_cache_slot_forget(struct lp_context *ctx, const char *user,
			 const char *keyfile_id, unsigned int slot_id,
			 struct lp_error *err);

/* ---- single-use OpenID nonces for the web page (lp-cache-nonce.c) ---- */

/* Records an OpenID response_nonce (1..255 characters) as seen until
   expires_at.  Returns 1 if it was not seen before (or only with an expired
   record), 0 if it was (a replay), -1 on error.  Atomic across processes. */
int lp_cache_nonce_use(struct lp_context *ctx, const char *nonce,
		       time_t expires_at, struct lp_error *err);
/* Deletes nonce records past their expiry. Returns the count, or -1. */
int lp_cache_nonce_prune(struct lp_context *ctx, struct lp_error *err);

/* ---- the periodic membership sync (lp-sync.c) ---- */

/* What a sync pass saw for one known user (one with a stored verdict). */
enum lp_sync_change_kind {
	LP_SYNC_SAME,		/* verdict unchanged */
	LP_SYNC_ALLOWED,	/* newly allowed: first seen, or deny -> allow */
	LP_SYNC_DENIED,		/* allow -> deny: the user loses access */
	LP_SYNC_REASON,		/* still denied, for another reason */
	LP_SYNC_FAILED,		/* Launchpad failed: old state kept */
};

struct lp_sync_change {
	const char *user;		/* "name@domain" */
	enum lp_sync_change_kind kind;
	bool had_old;			/* a previous sync state existed */
	enum lp_verdict_kind old_kind;	/* ALLOW or DENY, if had_old */
	enum lp_verdict_kind new_kind;	/* ALLOW or DENY, unless FAILED */
	enum lp_deny_reason reason;
	const char *text;		/* deny words, or the failure */
};

struct lp_sync_result {
	time_t started, finished;
	unsigned int teams, teams_failed;
	unsigned int users, allowed, denied;	/* checked, by new verdict */
	unsigned int newly_allowed, newly_denied, failed;
	unsigned int http_requests;
	bool partial;			/* some team or person fetch failed */
};

/* Callback for every known user after its new state is stored; returns 0
   to go on, -1 to stop the pass (result partial).  Runs with no lock
   held. */
typedef int lp_sync_callback_t(const struct lp_sync_change *change,
			       void *context);

/* One sync pass (doveadm launchpad sync/refresh): fetches every configured
   team's participants once (ceil(N/300) requests each), stores them, then
   re-checks every known user with a fresh person fetch (ETag-revalidated)
   and the fresh team set, and stores the new verdict and sync state.  A
   failed team or person keeps its old records.  Serialised across
   processes by an flock on cache_path + ".sync", taken without waiting.
   Blocks for as long as Launchpad takes.
   Returns 1 when the pass ran (result_r->partial says whether everything
   was fetched), 0 if another sync holds the lock (nothing done), -1 on a
   local error (err set). */
int lp_sync_run(struct lp_context *ctx, lp_sync_callback_t *cb,
		void *context, struct lp_sync_result *result_r,
		struct lp_error *err);

/* Stores result as the "sync/last" record for lp_sync_last(). */
int lp_sync_last_put(struct lp_context *ctx,
		     const struct lp_sync_result *result,
		     struct lp_error *err);
/* Reads it back: 1 found, 0 never synced. */
int lp_sync_last(struct lp_context *ctx, struct lp_sync_result *result_r);

/* ---- admin notifications (lp-notify.c) ---- */

/* Admin notifications are de-duplicated per (user, event word) for this
   long; a change of the user's state clears the markers. */
#define LP_NOTIFY_DEDUP_SECS (30 * 24 * 3600)

/* 1 if event ("entitled", "denied", ...) for user should be mailed: no
   marker younger than LP_NOTIFY_DEDUP_SECS.  0 if already mailed. */
int lp_notify_pending(struct lp_context *ctx, const char *user,
		      const char *event);
/* Sets the marker after the mail went out. Returns 0 or -1. */
int lp_notify_mark(struct lp_context *ctx, const char *user,
		   const char *event, struct lp_error *err);
/* Drops every marker of user (its state changed). Returns count or -1. */
int lp_notify_clear(struct lp_context *ctx, const char *user,
		    struct lp_error *err);

/* Events that happen outside a sync wait in the TDB for the next sync's
   digest mail: the web daemon cannot submit mail, and one mail per pass is
   what admins asked for.  The sync takes them under lp_notify_lock(),
   mails those lp_notify_pending() still wants, then marks and dequeues
   them (a failed mail leaves them queued for the next pass). */
#define LP_NOTIFY_ACTIVATED "activated"	/* a first keyfile was written */
#define LP_NOTIFY_FORWARDING "forwarding"	/* forwarding turned on */
#define LP_NOTIFY_EVENT_MAX 32

struct lp_notify_event {
	char user[LP_USER_MAX + 1];		/* "name@domain" */
	char event[LP_NOTIFY_EVENT_MAX + 1];	/* "activated" */
	char text[LP_TEXT_MAX];			/* "" if none */
	time_t at;
};

/* Queues event ([a-z-]{1,LP_NOTIFY_EVENT_MAX}) for user (canonical
   "name@domain" of a configured domain) as happened at time at, with an
   optional text (NULL: none; control bytes become '?').  One record per
   (user, event): queueing it again keeps the first.  Does nothing when
   notify_to is not configured.  Root processes queue in cache_path, the
   web daemon a file "<event>.<user>" in web_state_dir/notify/.  Returns
   0, or -1 (bad user or event: LP_ERR_INTERNAL; I/O failure).  Never
   does HTTP. */
int lp_notify_queue(struct lp_context *ctx, const char *user,
		    const char *event, const char *text, time_t at,
		    struct lp_error *err);
/* Calls cb for every queued event, oldest first: cache_path's and, for a
   root process, the web daemon's files (read strictly: it runs as the
   mail uid).  Unreadable entries are dropped.  Returns 0 or -1.  cb
   returns 0 to go on, -1 to stop. */
int lp_notify_queue_list(struct lp_context *ctx,
			 int (*cb)(const struct lp_notify_event *event,
				   void *context),
			 void *context, struct lp_error *err);
/* Removes the queued (user, event), from cache_path and the web
   daemon's spool. Returns 1 removed, 0 absent, -1. */
int lp_notify_dequeue(struct lp_context *ctx, const char *user,
		      const char *event, struct lp_error *err);
/* Serialises mailing across processes, from lp_notify_pending() to
   lp_notify_mark(), so two passes never mail one event twice: an flock on
   cache_path + ".notify".  Waits for another holder (which is bounded by
   its mail submission).  Returns 0 with *fd_r, or -1. */
int lp_notify_lock(struct lp_context *ctx, int *fd_r, struct lp_error *err);
/* Releases it and sets *fd to -1; a no-op when *fd is already -1. */
void lp_notify_unlock(int *fd);

/* ---- is Launchpad there (lp-ping.c) ---- */

/* One GET {api_url}/~team of the first configured domain with the normal
   client (doveadm launchpad status).  Returns 0 with the HTTP status and
   the wall time in milliseconds, or -1 (err says why, msecs_r still set). */
int lp_ping(struct lp_context *ctx, long *status_r, unsigned int *msecs_r,
	    struct lp_error *err);

/* ---- Dovecot's auth cache (lp-authflush.c) ---- */

/* CACHE-FLUSH over a Dovecot auth "*-master" socket at path: name and
   name@<every configured domain> (the cache keys start with the login as
   typed), or the whole cache when name is NULL.  Returns the number of
   entries flushed, or -1 with err (cannot connect, refused, no answer):
   unlike Dovecot 2.3's auth_master_cache_flush(), a flush that did not
   happen is never reported as done. */
int lp_auth_cache_flush(const struct lp_config *config, const char *path,
			const char *name, struct lp_error *err);

/* ---- ending live sessions (lp-kick.c) ---- */

/* Services whose processes serve one logged-in user each (Dovecot's
   default client_limit 1): ending the process ends that user's session.
   submission too: a banned or revoked user must not keep sending. */
#define LP_KICK_SERVICES { "imap", "pop3", "submission" }

struct lp_kick_result {
	unsigned int sessions;	/* sessions of the users that were open */
	unsigned int killed;	/* processes sent SIGTERM */
	unsigned int shared;	/* processes also serving other users
				   (imap-hibernate, client_limit > 1): kept */
	unsigned int failed;	/* processes that could not be signalled */
};

/* Ends the live IMAP/POP3/submission sessions of users (NULL-terminated,
   compared without case), as `doveadm kick` does: asks anvil over
   socket_path for its connection list (CONNECT-DUMP) and sends SIGTERM to
   every process of LP_KICK_SERVICES whose sessions all belong to these
   users; the process says "* BYE Server shutting down." and exits.  Blocking, bounded by
   socket timeouts.  Returns 0 with result_r (sessions 0: none was open),
   or -1 with err (anvil unreachable: nothing ended). */
int lp_kick_users(const char *socket_path, const char *const *users,
		  struct lp_kick_result *result_r, struct lp_error *err);

/* ---- URLs (lp-url.c), parsed by curl's URL API ---- */

/* "scheme://host[:port]" of url, the port only if written: what a
   browser sends as Origin.  0, or -1 (not an http(s) URL, too long). */
int lp_url_origin(const char *url, char *origin_r, size_t size);
/* The host of url, an IPv6 address without its brackets.  0 or -1. */
int lp_url_host(const char *url, char *host_r, size_t size);
/* TRUE if url (NULL: FALSE) has base's scheme, host and port (scheme and
   host compared without case, default ports filled in) and no user
   info. */
bool lp_url_same_origin(const char *base, const char *url);
/* TRUE if a and b are the same http(s) URL: origin as above, path and
   query alike, neither with user info or a fragment. */
bool lp_url_equal(const char *a, const char *b);
/* url with pairs (name, value, ..., NULL) appended to its query, each
   URL-encoded.  0, or -1 (bad url, out of memory, does not fit). */
int lp_url_add_query(const char *url, const char *const *pairs,
		     char *url_r, size_t size);

/* ---- HTTP for the web page (lp-http.c): the lookups' own client ---- */

/* POSTs pairs (name, value, ..., NULL; form-encoded here) to url as
   application/x-www-form-urlencoded, with the client the lookups use:
   its timeouts (http_timeout, and the lookup deadline when one is set),
   TLS verification, answer size cap and protocols; no redirect is
   followed and nothing is retried (a POST may not be repeatable).
   Blocks.  Returns 0 with the HTTP status and, for 200 only, the body
   (*body_r, NUL-terminated, the caller frees it), or -1 with err
   (LP_ERR_TEMP unreachable or timed out, LP_ERR_PROTOCOL answer too
   large). */
int lp_http_post_form(struct lp_context *ctx, const char *url,
		      const char *const *pairs, long *status_r,
		      char **body_r, struct lp_error *err);

/* ---- several backends: user placement (lp-backend.c) ---- */

#define LP_BACKENDS_MAX 256
#define LP_BACKEND_HOST_MAX 253

/* The rendezvous-hash weight of host for user (64-bit FNV-1a of
   host NUL user, finalised with splitmix64): fixed across machines and
   releases, since placement must not change under a user. */
uint64_t lp_backend_weight(const char *host, const char *user);
/* The index of the host with the highest weight for user (the first
   one on a tie); count must be > 0.  Pure. */
unsigned int lp_backend_hash(const char *const *hosts, unsigned int count,
			     const char *user);

enum lp_backend_source {
	LP_BACKEND_HASHED,	/* no record: the hash's choice */
	LP_BACKEND_PINNED,	/* the hash's choice, recorded at first login */
	LP_BACKEND_ASSIGNED,	/* doveadm launchpad backend assign */
	LP_BACKEND_UNREADABLE,	/* lp_backend_list() only: a bad record */
};

struct lp_backend_placement {
	char host[LP_BACKEND_HOST_MAX + 1];
	enum lp_backend_source source;
	time_t assigned_at;	/* 0 for HASHED */
	bool configured;	/* host is in `backends` */
};

/* Where user (canonical "name@domain") lives, without writing: 1 from
   its assignment record, 0 from the hash (no record), -1 with err (not
   a user of a configured domain, record unreadable, no backends and no
   record). */
int lp_backend_show(struct lp_context *ctx, const char *user,
		    struct lp_backend_placement *p, struct lp_error *err);
/* The backend a login of user goes to (the proxy's passdb, after an
   allow): the assignment, or the hash's choice, then recorded as the
   assignment (pinned) so that a change of `backends` never moves the
   user.  0, or -1 with err: a record that cannot be read, an assignment
   to a host that is no longer in `backends` (LP_ERR_CONFIG), a TDB
   failure.  Never a silent re-hash. */
int lp_backend_place(struct lp_context *ctx, const char *user,
		     struct lp_backend_placement *p, struct lp_error *err);
/* Assigns user to host, which must be in `backends`.  0 or -1. */
int lp_backend_assign(struct lp_context *ctx, const char *user,
		      const char *host, struct lp_error *err);
/* Calls cb for every assignment record, sorted by user.  0 or -1. */
int lp_backend_list(struct lp_context *ctx,
		    int (*cb)(const char *user,
			      const struct lp_backend_placement *p,
			      void *context),
		    void *context, struct lp_error *err);

/* ---- address lists (lp-net.c) ---- */

/* An IPv4 or IPv6 network; IPv4 is kept IPv4-mapped (::ffff:a.b.c.d/96+n)
   so one comparison serves both. */
struct lp_net {
	unsigned char addr[16];
	unsigned int bits;
};

/* Parses "127.0.0.1, ::1 10.0.0.0/8" (separated by commas and/or
   blanks).  Returns 0 with a malloc'd array (NULL and 0 for an empty
   list), or -1 with err naming the bad entry. */
int lp_net_list_parse(const char *str, struct lp_net **nets_r,
		      unsigned int *count_r, struct lp_error *err);
/* An address ("192.0.2.1", "2001:db8::1") as 16 bytes (IPv4 mapped).
   Returns 0 or -1. */
int lp_net_addr_parse(const char *str, unsigned char addr_r[16]);
/* Whether addr is in one of the nets. */
bool lp_net_list_match(const struct lp_net *nets, unsigned int count,
		       const unsigned char addr[16]);

#endif
