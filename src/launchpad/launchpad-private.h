/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef LAUNCHPAD_PRIVATE_H
#define LAUNCHPAD_PRIVATE_H

/* What crosses files inside src/launchpad; never included elsewhere.
   Unit tests of this folder include it to reach the HTTP client, the page
   walker and the context's clock. */

#include "launchpad.h"

#include <curl/curl.h>
#include <jansson.h>
#include <tdb.h>

#ifdef PACKAGE_VERSION
#  define LP_VERSION PACKAGE_VERSION
#else
#  define LP_VERSION "0.1.0"
#endif
#define LP_USER_AGENT \
	"dovecot-launchpad/" LP_VERSION " (+https://launchpad.net/dovecot-launchpad)"

/* Larger answers are refused (LP_ERR_PROTOCOL); a person is ~5 KB and a
   300-entry participants page ~1.5 MB. */
#define LP_HTTP_MAX_BODY (8u * 1024 * 1024)
#define LP_HTTP_MAX_REDIRECTS 3
#define LP_HTTP_RETRIES 2
/* Back-off before retry 1 and 2, in milliseconds. */
#define LP_HTTP_RETRY1_MSECS 250
#define LP_HTTP_RETRY2_MSECS 1000
/* lp_entitlement_check()'s budget for everything it does: well under
   auth-worker's 60 s. */
#define LP_LOOKUP_DEADLINE_MSECS (40 * 1000)
#define LP_ETAG_MAX 128
#define LP_URL_MAX 2048

#define LP_TEAM_PAGE_SIZE 300
#define LP_TEAM_MAX_PAGES 200	/* 60,000 participants */

/* After Launchpad failed (timeout, connection, 5xx), cold lookups skip
   HTTP for http_timeout seconds, at most this long, so a crowd of
   auth-workers does not each wait out a timeout during an outage, and
   logins recover within one timeout once Launchpad is back. */
#define LP_OUTAGE_BACKOFF_MAX_SECS 30
#define LP_CACHE_VERSION 1
/* Chains of the TDB; only used when the file is created. */
#define LP_CACHE_HASH_SIZE 4099
/* Poll step while another process holds a record's chainlock. */
#define LP_CACHE_LOCK_POLL_MSECS 10
/* cache_path: written by root only, readable by the mail gid (the web
   daemon reads bans and "last used" stamps from it). */
#define LP_CACHE_MODE 0640
/* The web daemon's own TDB in web_state_dir. */
#define LP_WEB_CACHE_MODE 0600
/* How often the web daemon tries again to open a cache_path that did
   not exist yet. */
#define LP_CACHE_TRUSTED_RETRY_SECS 10

#define LP_N_ELEMENTS(arr) (sizeof(arr) / sizeof((arr)[0]))

/* ---- where the state lives: every TDB key, in one place ----

   Records are JSON objects {"v":LP_CACHE_VERSION,"kind":<kind>,...};
   anything unreadable is a miss, never a crash: the next store of that
   key rewrites it.  "both" means cache_path for root processes and
   web_state_dir/web.tdb for the web daemon, which also reads
   cache_path's record (lp_cache_get_fact(): the later one wins).

   key prefix + rest                  kind       TDB         written by
   person/<name>                      person     both        lookups, sync
   team/<team>                        team       both        lookups, sync
   verdict/<name>@<domain>            verdict    both        lookups, sync
   outage                             outage     both        lookups
   ban/<name>                         ban        cache_path  doveadm
   slotused/<user>/<keyfile>/<slot>   slotused   cache_path  auth-workers
   syncstate/<name>@<domain>          syncstate  cache_path  sync
   sync/last                          synclast   cache_path  sync
   notify/<user>/<event>              notify     cache_path  sync
   notifyq/<user>/<event>             notifyq    cache_path  root processes
   nonce/<response_nonce>             nonce      web.tdb     web daemon
   fwdconfirm/<sha256 of token>       fwdconfirm web.tdb     web daemon
   fwdmail/user/<user>                fwdmail    web.tdb     web daemon
   fwdmail/addr/<address>             fwdmail    web.tdb     web daemon
   recheck/<name>                     recheck    cache_path  root lookups
   backend/<name>@<domain>            backend    cache_path  proxy auth,
                                                             doveadm

   Besides its web.tdb, the web daemon queues admin events as files
   web_state_dir/LP_WEB_NOTIFY_DIR/<event>.<user> (lp-notify.c), and marks
   "Check again" as web_state_dir/LP_WEB_RECHECK_DIR/<name> (lp-recheck.c). */

#define LP_KEY_PERSON "person/"
#define LP_KEY_TEAM "team/"
#define LP_KEY_VERDICT "verdict/"
#define LP_KEY_OUTAGE "outage"
#define LP_KEY_BAN "ban/"
#define LP_KEY_SLOTUSED "slotused/"
#define LP_KEY_SYNCSTATE "syncstate/"
#define LP_KEY_SYNC_LAST "sync/last"
#define LP_KEY_NOTIFY "notify/"
#define LP_KEY_NOTIFYQ "notifyq/"
#define LP_KEY_NONCE "nonce/"
#define LP_KEY_RECHECK "recheck/"
#define LP_KEY_BACKEND "backend/"
#define LP_KEY_FWDCONFIRM "fwdconfirm/"
#define LP_KEY_FWDMAIL "fwdmail/"
#define LP_KEY_FWDMAIL_USER "fwdmail/user/"
#define LP_KEY_FWDMAIL_ADDR "fwdmail/addr/"

#define LP_KIND_PERSON "person"
#define LP_KIND_TEAM "team"
#define LP_KIND_VERDICT "verdict"
#define LP_KIND_OUTAGE "outage"
#define LP_KIND_BAN "ban"
#define LP_KIND_SLOTUSED "slotused"
#define LP_KIND_SYNCSTATE "syncstate"
#define LP_KIND_SYNC_LAST "synclast"
#define LP_KIND_NOTIFY "notify"
#define LP_KIND_NOTIFYQ "notifyq"
#define LP_KIND_NONCE "nonce"
#define LP_KIND_RECHECK "recheck"
#define LP_KIND_BACKEND "backend"
#define LP_KIND_FWDCONFIRM "fwdconfirm"
#define LP_KIND_FWDMAIL "fwdmail"

/* Room for the person, team, verdict, ban and backend keys. */
#define LP_KEY_MAX (sizeof(LP_KEY_VERDICT) + LP_USER_MAX + 1)

#define LP_WEB_CACHE_FILE "web.tdb"
#define LP_WEB_NOTIFY_DIR "notify"
#define LP_WEB_RECHECK_DIR "recheck"

struct lp_context {
	const struct lp_config *config;
	struct lp_log log;
	/* The TDB this process writes: cache_path for root processes
	   (auth-workers, doveadm), web_state_dir/web.tdb for the web
	   daemon (LP_ROLE_WEB). */
	struct tdb_context *tdb;
	/* LP_ROLE_WEB only: cache_path opened read-only (bans, root's
	   verdicts, "last used" stamps); NULL while it does not exist. */
	struct tdb_context *trusted;
	time_t trusted_retry_at;
	char web_tdb_path[LP_URL_MAX];
	CURL *curl;
	struct curl_slist *headers;

	/* Wall clock for TTLs, verdicts and the outage back-off.  time() by
	   default; unit tests point it at a fake clock. */
	time_t (*now)(void);
	/* CLOCK_MONOTONIC deadline of the current lookup in ms, 0 = none
	   (then only http_timeout bounds a request). */
	uint64_t deadline_msecs;
	/* Set by lp_http_get() whenever a request went out: from_cache. */
	unsigned int http_requests;
	/* "name@domain" of the lookup in progress, for log lines. */
	const char *log_user;

	bool web:1;
};

/* ---- lp-log.c ---- */

/* Logs through ctx->log, prefixed with ctx->log_user when set. */
void lp_log(struct lp_context *ctx, enum lp_log_level level,
	    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- lp-clock.c ---- */

/* time(NULL): ctx->now unless a unit test replaced it. */
time_t lp_clock_wall(void);
/* Monotonic milliseconds. */
uint64_t lp_monotonic_msecs(void);
/* Sets the lookup deadline to msecs from now (0 = none). */
void lp_deadline_set(struct lp_context *ctx, unsigned int msecs);
/* Milliseconds left until the deadline (UINT64_MAX without one). */
uint64_t lp_deadline_left(const struct lp_context *ctx);

/* ---- lp-name.c, lp-login.c ---- */

/* Lower-cases the part of user ("name" or "name@domain") before its last
   '@' into name_r; TRUE if that is a Launchpad name. */
bool lp_name_of_user(const char *user, char name_r[LP_NAME_MAX + 1]);
/* TRUE if user is exactly "name@domain" as lp_login_parse() gives it
   (lower case, a configured domain, the domain written out). */
bool lp_login_is_canonical(const struct lp_config *config, const char *user);

/* ---- lp-nameset.c ---- */

struct lp_name_set {
	char **names;		/* malloc'd; sorted and unique once sorted */
	unsigned int count, alloc;
};

/* Appends name[0..len).  0, or -1 when out of memory. */
int lp_name_set_add(struct lp_name_set *set, const char *name, size_t len);
/* Sorts and drops duplicates (for lp_name_set_contains()). */
void lp_name_set_sort(struct lp_name_set *set);
bool lp_name_set_contains(const struct lp_name_set *set, const char *name);
void lp_name_set_free(struct lp_name_set *set);

/* ---- lp-http.c ---- */

struct lp_http_response {
	long status;		/* 200, 304, 404 or 410 */
	char *body;		/* NUL-terminated, malloc'd; NULL unless 200 */
	size_t body_size;
	char etag[LP_ETAG_MAX];	/* ETag header, "" if none */
};

/* Creates ctx->curl with the fixed options. */
int lp_http_init(struct lp_context *ctx, struct lp_error *err);
void lp_http_deinit(struct lp_context *ctx);

/* GET url (which must be under api_url) with Accept: application/json and
   If-None-Match: etag when etag is non-NULL.  Follows on-host redirects,
   retries timeouts, connection errors and 5xx within the deadline.
   Returns 0 with resp_r->status 200/304/404/410 (caller frees with
   lp_http_response_free()), or -1: LP_ERR_TEMP (unreachable, 5xx,
   timeout) or LP_ERR_PROTOCOL (other status, off-host redirect, huge body). */
int lp_http_get(struct lp_context *ctx, const char *url, const char *etag,
		struct lp_http_response *resp_r, struct lp_error *err);
void lp_http_response_free(struct lp_http_response *resp);

/* ---- lp-url.c ---- */

/* TRUE if url has api_url's scheme, host and port and a path under
   api_url's path + "/" (parsed, not a string prefix) and no user info. */
bool lp_url_is_under(const char *api_url, const char *url);
/* Checks a configured base URL (api_url, web_url, sso_url): http(s),
   written as curl reads it, a host, no user info, query or fragment,
   plain http only on loopback.  Returns the length to keep (trailing
   slashes dropped), or -1 with what filled ("<name> must ..."). */
int lp_url_check_base(const char *name, const char *url, char *what,
		      size_t what_size);
/* Checks web_smtp_url: smtp:// (loopback hosts only) or smtps://, a
   host and optional port, no user info, path, query or fragment.  0, or
   -1 with what filled. */
int lp_url_check_smtp(const char *name, const char *url, char *what,
		      size_t what_size);

/* ---- lp-json.c ---- */

struct lp_person {
	char name[LP_NAME_MAX + 1];
	bool is_valid;
	bool is_coc_signer;
	bool is_team;
	char http_etag[LP_ETAG_MAX];	/* "" if absent */
};

struct lp_collection_page {
	json_t *root;		/* owns everything below */
	json_int_t total_size;	/* -1 if only total_size_link was given */
	json_int_t start;
	json_t *entries;	/* array of objects with a string "name" */
	const char *next_link;	/* NULL on the last page */
};

/* Parses a person document. -1 LP_ERR_PROTOCOL on non-JSON, non-object,
   a missing or mistyped field. */
int lp_json_parse_person(const char *body, size_t size,
			 struct lp_person *person_r, struct lp_error *err);
/* Parses a collection page; on success the caller json_decref()s
   page_r->root. */
int lp_json_parse_collection(const char *body, size_t size,
			     struct lp_collection_page *page_r,
			     struct lp_error *err);

/* A cache record's field: TRUE and the value if it is there with its
   type (text: and fits in size with its NUL). */
bool lp_json_time(json_t *obj, const char *field, time_t *time_r);
bool lp_json_bool(json_t *obj, const char *field, bool *value_r);
bool lp_json_text(json_t *obj, const char *field, char *buf, size_t size);

/* ---- lp-person.c ---- */

struct lp_person_record {
	enum lp_person_state state;	/* OK, NOT_FOUND or SUSPENDED */
	bool is_valid;
	bool is_coc_signer;
	bool is_team;
	char etag[LP_ETAG_MAX];
	time_t fetched_at;
	time_t expires_at;
};

/* One GET {api_url}/~name.  With prev (a state OK record) its etag is
   sent and a 304 returns prev with new times.  Never touches the cache. */
int lp_person_fetch(struct lp_context *ctx, const char *name,
		    const struct lp_person_record *prev,
		    struct lp_person_record *rec_r, struct lp_error *err);

/* The person record for name through lp_lookup_run(): from the cache
   when fresh (and !refresh), else from Launchpad (ETag-revalidated),
   then stored.  Returns 0 or -1 (Launchpad failed and nothing fresh is
   cached). */
int lp_person_lookup(struct lp_context *ctx, const char *name, bool refresh,
		     struct lp_person_record *rec_r, struct lp_error *err);

/* ---- lp-team.c ---- */

/* All participants of team (every page).  Returns 0 or -1. */
int lp_team_fetch(struct lp_context *ctx, const char *team,
		  struct lp_name_set *set_r, struct lp_error *err);
/* Is name a participant of team: 1 yes, 0 no, -1 error, through
   lp_lookup_run(): the cached team record when fresh (and !refresh),
   else every page from Launchpad, then stored. */
int lp_team_lookup(struct lp_context *ctx, const char *team,
		   const char *name, bool refresh, struct lp_error *err);

/* ---- lp-socket.c ---- */

/* A connected UNIX stream socket to path, reads and writes bounded by
   timeout_secs.  The descriptor, or -1 with err (LP_ERR_TEMP when no one
   listens). */
int lp_socket_connect(const char *path, unsigned int timeout_secs,
		      struct lp_error *err);
/* Writes all of data to fd (path names it in err).  0, or -1 with err
   LP_ERR_TEMP. */
int lp_socket_send(int fd, const char *path, const char *data, size_t len,
		   struct lp_error *err);

/* ---- lp-cache.c: the record store ---- */

/* Opens ctx->tdb (and, for the web daemon, ctx->trusted). */
int lp_cache_open(struct lp_context *ctx, struct lp_error *err);
void lp_cache_close(struct lp_context *ctx);
/* What root processes wrote: ctx->tdb for them, the read-only cache_path
   for the web daemon (opened again when it appeared; may be NULL). */
struct tdb_context *lp_cache_trusted(struct lp_context *ctx);

/* Takes the chainlock of key, polling until the lookup deadline.
   -1 LP_ERR_TEMP when the deadline passes first. */
int lp_cache_lock(struct lp_context *ctx, const char *key,
		  struct lp_error *err);
void lp_cache_unlock(struct lp_context *ctx, const char *key);

/* Reads the JSON record at key.  Returns 1 with *obj_r (caller decrefs),
   0 if absent, or if corrupt, of another version or another kind (logged
   at warning: the next store rewrites it). */
int lp_cache_get(struct lp_context *ctx, const char *key, const char *kind,
		 json_t **obj_r);
/* The same from tdb (NULL: absent), or from lp_cache_trusted(). */
int lp_cache_get_tdb(struct lp_context *ctx, struct tdb_context *tdb,
		     const char *key, const char *kind, json_t **obj_r);
int lp_cache_get_trusted(struct lp_context *ctx, const char *key,
			 const char *kind, json_t **obj_r);
/* A Launchpad fact: for the web daemon the later (by time_field) of its
   own record and root's; for root processes lp_cache_get(). */
int lp_cache_get_fact(struct lp_context *ctx, const char *key,
		      const char *kind, const char *time_field,
		      json_t **obj_r);
/* Logs that key's field is missing or mistyped (the record is a miss). */
void lp_cache_bad_field(struct lp_context *ctx, const char *key,
			const char *field);
/* TRUE if tdb has a record at key, readable or not. */
bool lp_cache_exists(struct tdb_context *tdb, const char *key);
/* Adds "v" and "kind" to obj and stores it at key. 0 or -1. */
int lp_cache_put(struct lp_context *ctx, const char *key, const char *kind,
		 json_t *obj, struct lp_error *err);
/* The same, taking obj over (a NULL obj, from a failed json_pack(), is
   -1 "out of memory"). */
int lp_cache_put_new(struct lp_context *ctx, const char *key,
		     const char *kind, json_t *obj, struct lp_error *err);
/* 1 deleted, 0 absent, -1 error. */
int lp_cache_delete(struct lp_context *ctx, const char *key,
		    struct lp_error *err);

/* Every key that starts with prefix, prefix stripped, sorted.  Returns 0
   or -1; the caller frees with lp_name_set_free(). */
int lp_cache_keys(struct lp_context *ctx, const char *prefix,
		  struct lp_name_set *keys_r, struct lp_error *err);
/* The same, whole keys, unsorted. */
int lp_cache_full_keys(struct lp_context *ctx, const char *prefix,
		       struct lp_name_set *keys_r, struct lp_error *err);
/* Deletes every record whose key starts with prefix. Count or -1. */
int lp_cache_delete_prefix(struct lp_context *ctx, const char *prefix,
			   struct lp_error *err);
/* The same, but keeps the records keep() wants (called with the whole
   key, after the scan, outside the traverse lock). */
int lp_cache_delete_prefix_unless(struct lp_context *ctx, const char *prefix,
				  bool (*keep)(struct lp_context *ctx,
					       const char *key),
				  struct lp_error *err);

/* flock on cache_path + suffix (".sync", ".notify"): 1 taken with *fd_r
   (closing it releases), 0 held elsewhere (only without wait), -1. */
int lp_cache_flock(struct lp_context *ctx, const char *suffix, bool wait,
		   int *fd_r, struct lp_error *err);

/* ---- lp-cache-record.c: the Launchpad facts as records ---- */

int lp_cache_person_get(struct lp_context *ctx, const char *name,
			struct lp_person_record *rec_r);
int lp_cache_person_put(struct lp_context *ctx, const char *name,
			const struct lp_person_record *rec,
			struct lp_error *err);

/* Team record: 1 found (set_r filled, times set), 0 absent. */
int lp_cache_team_get(struct lp_context *ctx, const char *team,
		      struct lp_name_set *set_r, time_t *fetched_at_r,
		      time_t *expires_at_r);
int lp_cache_team_put(struct lp_context *ctx, const char *team,
		      const struct lp_name_set *set, time_t fetched_at,
		      time_t expires_at, struct lp_error *err);

struct lp_verdict_record {
	enum lp_verdict_kind kind;	/* ALLOW or DENY */
	enum lp_deny_reason reason;
	char text[LP_TEXT_MAX];
	time_t decided_at;
	time_t expires_at;
};

int lp_cache_verdict_get(struct lp_context *ctx, const char *user,
			 struct lp_verdict_record *rec_r);
int lp_cache_verdict_put(struct lp_context *ctx, const char *user,
			 const struct lp_verdict_record *rec,
			 struct lp_error *err);

/* The token a verdict record stores for a deny reason ("not-member"), and
   back; parse returns -1 for an unknown token. */
const char *lp_cache_reason_token(enum lp_deny_reason reason);
int lp_cache_reason_parse(const char *token);

/* ---- lp-recheck.c ---- */

/* For root processes: true once per "Check again" the web daemon marked
   for name (web_state_dir/recheck/<name>), which is then recorded as
   honoured (recheck/<name>); false for the web daemon itself. */
bool lp_recheck_take(struct lp_context *ctx, const char *name);

/* ---- lp-ban.c ---- */

/* 1 banned (reason_r filled, "" if none), 0 not banned.  A corrupt ban
   record counts as a ban: failing open would undo an admin's decision. */
int lp_ban_get(struct lp_context *ctx, const char *name,
	       char reason_r[LP_TEXT_MAX]);

/* ---- lp-lookup.c: one lock-and-fetch protocol for every lookup ---- */

/* What lp_lookup_run() asks of a record's kind.  Both return the
   lookup's answer (>= 0): cached() from a fresh cached record, else -1;
   fetch() from Launchpad, stored before it returns, else -1 with err. */
struct lp_lookup {
	const char *key;	/* the record's key: its chainlock */
	int (*cached)(struct lp_context *ctx, void *context);
	int (*fetch)(struct lp_context *ctx, void *context,
		     struct lp_error *err);
	void *context;
};

/* cached -> chainlock -> cached again -> outage -> fetch (the protocol
   is spelt out in lp-lookup.c).  refresh skips the cached answers and the
   outage.  Returns the answer or -1 (err; LP_ERR_TEMP when Launchpad
   failed, now or less than lp_lookup_outage_backoff() ago). */
int lp_lookup_run(struct lp_context *ctx, const struct lp_lookup *lookup,
		  bool refresh, struct lp_error *err);
/* The back-off after a failure: MIN(http_timeout, 30 s). */
unsigned int lp_lookup_outage_backoff(const struct lp_context *ctx);

/* ---- lp-entitlement.c: the steps of a verdict (the sync's too) ---- */

/* The facts of name@domain known before Launchpad is asked: rows 1-3
   (a valid name of a configured domain; the ban, its reason kept in
   ban_reason). */
void lp_entitlement_facts_init(struct lp_context *ctx, const char *name,
			       const struct lp_domain *domain,
			       struct lp_facts *facts_r,
			       char ban_reason[LP_TEXT_MAX]);
/* Copies person into facts.  TRUE if the team membership decides (the
   person could be allowed), FALSE if the person alone does. */
bool lp_entitlement_person_facts(const struct lp_person_record *person,
				 struct lp_facts *facts);
/* Stores an ALLOW or DENY verdict as user's record, decided at now and
   kept for the TTL of its kind; *rec_r (may be NULL) gets the record.
   0 or -1. */
int lp_entitlement_store(struct lp_context *ctx, const char *user,
			 const struct lp_verdict *verdict, time_t now,
			 struct lp_verdict_record *rec_r, struct lp_error *err);

/* ---- lp-hosts.c ---- */

/* Parses `backends` ("10.0.0.2 10.0.0.3", blanks and/or commas): host
   names or addresses, lower-cased, no port, no duplicates, at most
   LP_BACKENDS_MAX.  0 with a malloc'd array (NULL, 0 for an empty
   list), or -1 with what filled. */
int lp_backend_hosts_parse(const char *str, char ***hosts_r,
			   unsigned int *count_r, char *what,
			   size_t what_size);
void lp_backend_hosts_free(char ***hosts, unsigned int count);

/* ---- lp-entitlement.c ---- */

/* lp_entitlement_check() bounded by msecs (> 0) instead of
   LP_LOOKUP_DEADLINE_MSECS: lp_send_as_list() decides several domains
   within one auth-worker request. */
void lp_entitlement_check_within(struct lp_context *ctx, const char *login,
				 unsigned int msecs,
				 struct lp_entitlement *ent_r);

/* ---- lp-sendas.c ---- */

/* What lp_send_as_list() may spend deciding the other domains, on top of
   the login's own decision (<= LP_LOOKUP_DEADLINE_MSECS): together well
   under auth-worker's 60 s.  A domain it cannot decide in time is not
   listed. */
#define LP_SEND_AS_BUDGET_MSECS (15 * 1000)
#define LP_SEND_AS_MIN_MSECS 500

/* ---- lp-sendlimit.c: the sending counters' hour ---- */

#define LP_SEND_WINDOW_MINUTES 60
#define LP_SEND_WINDOW_VERSION 1

/* One name's messages of the last hour in one-minute buckets: counts[m %
   60] belongs to minute m (unix time / 60) for m in (minute - 60, minute].
   Stored as is (host byte order: the file never leaves this host) under
   "send/<name>" in send_state_path. */
struct lp_send_window {
	uint32_t version;
	uint32_t reserved;
	int64_t minute;		/* the latest minute counted */
	uint32_t counts[LP_SEND_WINDOW_MINUTES];
};

/* Messages counted in the hour up to now (minutes now/60 - 59 ..
   now/60).  Pure. */
unsigned int lp_send_window_count(const struct lp_send_window *window,
				  time_t now);
/* Counts one message at now: buckets older than the hour are cleared
   first.  A clock that went back counts in the latest bucket.  Pure. */
void lp_send_window_add(struct lp_send_window *window, time_t now);

#endif
