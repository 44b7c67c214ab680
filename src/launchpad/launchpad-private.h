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
#define LP_WEB_CACHE_FILE "web.tdb"
/* How often the web daemon tries again to open a cache_path that did
   not exist yet. */
#define LP_CACHE_TRUSTED_RETRY_SECS 10

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

/* TRUE if url has api_url's scheme, host and port and a path under
   api_url's path + "/" (parsed, not a string prefix) and no user info. */
bool lp_url_is_under(const char *api_url, const char *url);

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

/* The person record for name: from the cache when fresh (and !refresh),
   else under the record's chainlock from Launchpad, then stored.
   Returns 0 or -1 (Launchpad failed and nothing fresh is cached). */
int lp_person_lookup(struct lp_context *ctx, const char *name, bool refresh,
		     struct lp_person_record *rec_r, struct lp_error *err);

/* ---- lp-team.c ---- */

struct lp_name_set {
	char **names;		/* sorted, unique, malloc'd */
	unsigned int count;
};

/* All participants of team (every page).  Returns 0 or -1. */
int lp_team_fetch(struct lp_context *ctx, const char *team,
		  struct lp_name_set *set_r, struct lp_error *err);
/* Is name a participant of team: 1 yes, 0 no, -1 error.  Uses the cached
   team record when fresh (and !refresh), else fetches under its
   chainlock and stores it. */
int lp_team_lookup(struct lp_context *ctx, const char *team,
		   const char *name, bool refresh, struct lp_error *err);
bool lp_name_set_contains(const struct lp_name_set *set, const char *name);
void lp_name_set_free(struct lp_name_set *set);

/* ---- lp-cache.c ---- */

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
/* Adds "v" and "kind" to obj and stores it at key. 0 or -1. */
int lp_cache_put(struct lp_context *ctx, const char *key, const char *kind,
		 json_t *obj, struct lp_error *err);
/* 1 deleted, 0 absent, -1 error. */
int lp_cache_delete(struct lp_context *ctx, const char *key,
		    struct lp_error *err);

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

/* 1 banned (reason_r filled, "" if none), 0 not banned.  A corrupt ban
   record counts as a ban: failing open would undo an admin's decision. */
int lp_cache_ban_get(struct lp_context *ctx, const char *name,
		     char reason_r[LP_TEXT_MAX]);

/* The token a verdict record stores for a deny reason ("not-member"), and
   back; parse returns -1 for an unknown token. */
const char *lp_cache_reason_token(enum lp_deny_reason reason);
int lp_cache_reason_parse(const char *token);

/* The back-off after a failure: MIN(http_timeout, 30 s). */
unsigned int lp_cache_outage_backoff(const struct lp_context *ctx);
/* TRUE if Launchpad failed less than lp_cache_outage_backoff() ago. */
bool lp_cache_outage_active(struct lp_context *ctx, time_t *since_r);
void lp_cache_outage_set(struct lp_context *ctx);
void lp_cache_outage_clear(struct lp_context *ctx);

/* Every key that starts with prefix, prefix stripped, sorted (added for
   lp-sync.c).  Returns 0 or -1; the caller frees with lp_name_set_free(). */
int lp_cache_keys(struct lp_context *ctx, const char *prefix,
		  struct lp_name_set *keys_r, struct lp_error *err);
/* Deletes every record whose key starts with prefix. Count or -1. */
int lp_cache_delete_prefix(struct lp_context *ctx, const char *prefix,
			   struct lp_error *err);

#endif
