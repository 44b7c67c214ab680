#ifndef DB_LAUNCHPAD_H
#define DB_LAUNCHPAD_H

#include "launchpad.h"

/* State shared by passdb and userdb `launchpad` blocks that name the same
   config file (one per file, refcounted, as db-passwd-file does). */
struct db_launchpad {
	struct db_launchpad *prev, *next;
	int refcount;

	char *config_path;
	struct lp_config *config;
	/* Opened by the first lookup, so only in auth-worker processes (the
	   only place lookups run); NULL until then. */
	struct lp_context *ctx;
	/* The request being served, so library log lines carry its prefix. */
	struct auth_request *cur_request;
	uid_t uid;
	gid_t gid;
};

/* Parses the module args (the config file path), loads the config and
   i_fatal()s naming file and line on any error. Runs as root, before
   privileges are dropped. */
struct db_launchpad *db_launchpad_preinit(pool_t pool, const char *args);
/* Opens the TDB cache and the HTTP client at the first call (lookups run
   in auth-workers only).  Returns 0, or -1 with the error logged on
   event; the next call tries again. */
int db_launchpad_context(struct db_launchpad *db, struct event *event);
void db_launchpad_unref(struct db_launchpad **db);

/* Runs the decision for the request's user (may block on HTTP); the
   outcome and its reason are logged on the request's event.  Without a
   context (db_launchpad_context() failed) the verdict is a tempfail. */
void db_launchpad_check(struct db_launchpad *db, struct auth_request *request,
			struct lp_entitlement *ent_r);

/* Logs at info level on the request's event even when auth_verbose=no. */
void db_launchpad_log_info(struct auth_request *request, const char *fmt, ...)
	ATTR_FORMAT(2, 3);

/* Path of name@domain's keyfile (data stack). */
const char *db_launchpad_keyfile_path(struct db_launchpad *db,
				      const struct lp_entitlement *ent);

/* Removes the user from the auth master's cache (CACHE-FLUSH on the
   auth-master socket), so an expired cache entry cannot log the user in
   past stale_grace (Dovecot's cache serves an expired entry while the
   passdb fails; see doc/DESIGN.md). */
void db_launchpad_flush_auth_cache(struct db_launchpad *db,
				   struct auth_request *request,
				   const struct lp_entitlement *ent);

/* Proxy mode (`backends` set): TRUE for the services whose logins
   Dovecot forwards to a backend (imap, pop3, lmtp). */
bool db_launchpad_is_proxied_service(const char *service);
/* Places the allowed user on a backend (lp_backend_place(): the
   assignment, or the hash's choice pinned) and sets the fields proxy,
   host, port (the service's backend_*_port) and user.  PASSDB_RESULT_OK,
   or INTERNAL_FAILURE (logged) when the placement cannot be read. */
enum passdb_result
db_launchpad_proxy_fields(struct db_launchpad *db,
			  struct auth_request *request,
			  const struct lp_entitlement *ent);

#endif
