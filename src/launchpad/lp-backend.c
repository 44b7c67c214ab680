/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Several backends: which one holds a user's mailbox (the proxy mode of
   the passdb, `doveadm launchpad backend`).

   A user's keyfile and mailbox live on exactly one backend, so placement
   must never move a user by itself.  The rule:

   1. an assignment record "backend/<name@domain>" in cache_path wins (set
      by `doveadm launchpad backend assign`, or pinned at 2.);
   2. otherwise rendezvous hashing (highest random weight) over `backends`
      picks one, and the proxy's first allowed login pins that choice as
      the user's assignment.

   Rendezvous hashing spreads new users evenly; a backend added later
   takes a 1/N share of the users not placed yet and moves none between
   the others, and pinning keeps everyone who already has mail where the
   mail is.  An assignment to a host no longer in `backends`, or one
   that cannot be read, is a temporary failure, never a silent re-hash:
   that would send the user to an empty mailbox. */

#include "launchpad-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LP_BACKEND_FNV_OFFSET 0xcbf29ce484222325ULL
#define LP_BACKEND_FNV_PRIME 0x100000001b3ULL
/* How long a placement waits for the assignment's chainlock (another
   process pinning or assigning the same user holds it for microseconds). */
#define LP_BACKEND_LOCK_MSECS 5000

static uint64_t lp_backend_fnv(uint64_t hash, const char *str)
{
	for (; *str != '\0'; str++) {
		hash ^= (unsigned char)*str;
		hash *= LP_BACKEND_FNV_PRIME;
	}
	return hash;
}

/* splitmix64's finaliser: FNV-1a alone mixes its last bytes poorly. */
static uint64_t lp_backend_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

uint64_t lp_backend_weight(const char *host, const char *user)
{
	uint64_t hash = lp_backend_fnv(LP_BACKEND_FNV_OFFSET, host);

	/* '\0' between the two: ("a", "bc") and ("ab", "c") differ. */
	hash *= LP_BACKEND_FNV_PRIME;
	return lp_backend_mix(lp_backend_fnv(hash, user));
}

unsigned int lp_backend_hash(const char *const *hosts, unsigned int count,
			     const char *user)
{
	unsigned int i, best = 0;
	uint64_t weight, best_weight = 0;

	for (i = 0; i < count; i++) {
		weight = lp_backend_weight(hosts[i], user);
		if (i == 0 || weight > best_weight) {
			best = i;
			best_weight = weight;
		}
	}
	return best;
}

/* The index of host in `backends`, or -1. */
static int lp_backend_configured(const struct lp_config *config,
				 const char *host)
{
	unsigned int i;

	for (i = 0; i < config->backends_count; i++) {
		if (strcmp(config->backend_hosts[i], host) == 0)
			return (int)i;
	}
	return -1;
}

/* The assignment key of a canonical "name@domain" user. */
static int lp_backend_key(struct lp_context *ctx, const char *user,
			  char key_r[LP_KEY_MAX], struct lp_error *err)
{
	if (!lp_login_is_canonical(ctx->config, user)) {
		lp_error_set(err, LP_ERR_NOT_FOUND, "'%.*s' is not a user "
			     "(name@domain) of a configured domain",
			     LP_USER_MAX, user);
		return -1;
	}
	snprintf(key_r, LP_KEY_MAX, LP_KEY_BACKEND "%s", user);
	return 0;
}

/* Reads key's assignment into p: 1 found, 0 absent, -1 unreadable. */
static int lp_backend_read(struct lp_context *ctx, const char *key,
			   struct lp_backend_placement *p,
			   struct lp_error *err)
{
	char source[16];
	json_t *obj;

	if (!lp_cache_exists(ctx->tdb, key))
		return 0;
	if (lp_cache_get(ctx, key, LP_KIND_BACKEND, &obj) <= 0 ||
	    !lp_json_text(obj, "host", p->host, sizeof(p->host)) ||
	    !lp_json_text(obj, "source", source, sizeof(source)) ||
	    !lp_json_time(obj, "at", &p->assigned_at)) {
		json_decref(obj);
		lp_error_set(err, LP_ERR_CORRUPT, "cache record %s "
			     "unreadable: fix it with doveadm launchpad "
			     "backend assign", key);
		return -1;
	}
	json_decref(obj);
	p->source = strcmp(source, "admin") == 0 ?
		LP_BACKEND_ASSIGNED : LP_BACKEND_PINNED;
	p->configured = lp_backend_configured(ctx->config, p->host) >= 0;
	return 1;
}

static int lp_backend_write(struct lp_context *ctx, const char *key,
			    const char *host, enum lp_backend_source source,
			    struct lp_error *err)
{
	return lp_cache_put_new(ctx, key, LP_KIND_BACKEND,
				json_pack("{s:s, s:s, s:I}", "host", host,
					  "source", source ==
					  LP_BACKEND_ASSIGNED ? "admin" :
					  "first-login",
					  "at", (json_int_t)ctx->now()), err);
}

int lp_backend_show(struct lp_context *ctx, const char *user,
		    struct lp_backend_placement *p, struct lp_error *err)
{
	char key[LP_KEY_MAX];
	unsigned int idx;
	int ret;

	memset(p, 0, sizeof(*p));
	if (lp_backend_key(ctx, user, key, err) < 0)
		return -1;
	if ((ret = lp_backend_read(ctx, key, p, err)) != 0)
		return ret < 0 ? -1 : 1;
	if (ctx->config->backends_count == 0) {
		lp_error_set(err, LP_ERR_CONFIG, "%s: no backends configured",
			     ctx->config->path);
		return -1;
	}
	idx = lp_backend_hash((const char *const *)ctx->config->backend_hosts,
			      ctx->config->backends_count, user);
	snprintf(p->host, sizeof(p->host), "%s",
		 ctx->config->backend_hosts[idx]);
	p->source = LP_BACKEND_HASHED;
	p->configured = true;
	return 0;
}

int lp_backend_place(struct lp_context *ctx, const char *user,
		     struct lp_backend_placement *p, struct lp_error *err)
{
	char key[LP_KEY_MAX];
	int ret;

	ret = lp_backend_show(ctx, user, p, err);
	if (ret == 0) {
		/* Pin it, unless an assignment appeared meanwhile (an admin's
		   assign must never be overwritten by a hash). */
		if (lp_backend_key(ctx, user, key, err) < 0)
			return -1;
		lp_deadline_set(ctx, LP_BACKEND_LOCK_MSECS);
		if (lp_cache_lock(ctx, key, err) < 0) {
			lp_deadline_set(ctx, 0);
			return -1;
		}
		if (!lp_cache_exists(ctx->tdb, key)) {
			ret = lp_backend_write(ctx, key, p->host,
					       LP_BACKEND_PINNED, err);
			if (ret == 0) {
				p->source = LP_BACKEND_PINNED;
				p->assigned_at = ctx->now();
				lp_log(ctx, LP_LOG_INFO, "placed on backend "
				       "%s (pinned)", p->host);
			}
		} else {
			ret = lp_backend_read(ctx, key, p, err) < 0 ? -1 : 0;
		}
		lp_cache_unlock(ctx, key);
		lp_deadline_set(ctx, 0);
		if (ret < 0)
			return -1;
	} else if (ret < 0) {
		return -1;
	}
	if (!p->configured) {
		lp_error_set(err, LP_ERR_CONFIG, "assigned to backend %s, "
			     "which is not in backends of %s", p->host,
			     ctx->config->path);
		return -1;
	}
	return 0;
}

int lp_backend_assign(struct lp_context *ctx, const char *user,
		      const char *host, struct lp_error *err)
{
	char key[LP_KEY_MAX];
	int ret;

	if (lp_backend_key(ctx, user, key, err) < 0)
		return -1;
	if (lp_backend_configured(ctx->config, host) < 0) {
		lp_error_set(err, LP_ERR_CONFIG, "%.*s is not one of the "
			     "backends of %s", LP_BACKEND_HOST_MAX, host,
			     ctx->config->path);
		return -1;
	}
	lp_deadline_set(ctx, LP_BACKEND_LOCK_MSECS);
	if (lp_cache_lock(ctx, key, err) < 0) {
		lp_deadline_set(ctx, 0);
		return -1;
	}
	ret = lp_backend_write(ctx, key, host, LP_BACKEND_ASSIGNED, err);
	lp_cache_unlock(ctx, key);
	lp_deadline_set(ctx, 0);
	return ret;
}

int lp_backend_list(struct lp_context *ctx,
		    int (*cb)(const char *user,
			      const struct lp_backend_placement *p,
			      void *context),
		    void *context, struct lp_error *err)
{
	struct lp_backend_placement p;
	struct lp_name_set users;
	char key[LP_KEY_MAX];
	struct lp_error rerr;
	int ret = 0;

	if (lp_cache_keys(ctx, LP_KEY_BACKEND, &users, err) < 0)
		return -1;
	for (unsigned int i = 0; i < users.count && ret == 0; i++) {
		if (strlen(users.names[i]) > LP_USER_MAX)
			continue;
		memset(&p, 0, sizeof(p));
		snprintf(key, sizeof(key), LP_KEY_BACKEND "%s",
			 users.names[i]);
		if (lp_backend_read(ctx, key, &p, &rerr) <= 0) {
			/* listed as unreadable: the admin sees it */
			snprintf(p.host, sizeof(p.host), "?");
			p.source = LP_BACKEND_UNREADABLE;
		}
		ret = cb(users.names[i], &p, context);
	}
	lp_name_set_free(&users);
	return 0;
}
