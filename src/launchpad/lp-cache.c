/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The TDB record store under every lp_ record: opening cache_path (and
   the web daemon's web.tdb), who may write it, chainlocks, versioned
   JSON records, prefix scans.  What the records mean is in the files of
   their kinds (the key registry in launchpad-private.h names them). */

#include "launchpad-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

static TDB_DATA lp_key(const char *key)
{
	return (TDB_DATA){
		.dptr = (unsigned char *)key,
		.dsize = strlen(key),
	};
}

static void lp_cache_tdb_log(struct tdb_context *tdb,
			     enum tdb_debug_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void lp_cache_tdb_log(struct tdb_context *tdb,
			     enum tdb_debug_level level, const char *fmt, ...)
{
	struct lp_context *ctx = tdb_get_logging_private(tdb);
	char msg[LP_TEXT_MAX];
	size_t len;
	va_list args;

	if (ctx == NULL || level == TDB_DEBUG_TRACE)
		return;
	va_start(args, fmt);
	vsnprintf(msg, sizeof(msg), fmt, args);
	va_end(args);
	len = strlen(msg);
	if (len > 0 && msg[len - 1] == '\n')
		msg[len - 1] = '\0';
	lp_log(ctx, level <= TDB_DEBUG_ERROR ? LP_LOG_ERROR :
	       level == TDB_DEBUG_WARNING ? LP_LOG_WARNING : LP_LOG_DEBUG,
	       "tdb %s: %s", ctx->config->cache_path, msg);
}

static struct tdb_context *
lp_cache_tdb_open(struct lp_context *ctx, const char *path, int open_flags,
		  mode_t mode, struct lp_error *err)
{
	struct tdb_logging_context log_ctx = {
		.log_fn = lp_cache_tdb_log,
		.log_private = ctx,
	};
	struct tdb_context *tdb;

	errno = 0;
	tdb = tdb_open_ex(path, LP_CACHE_HASH_SIZE, TDB_DEFAULT,
			  open_flags | O_CLOEXEC, mode, &log_ctx, NULL);
	if (tdb == NULL) {
		lp_error_set(err, errno == ENOENT ? LP_ERR_NOT_FOUND :
			     LP_ERR_INTERNAL, "tdb_open(%s) failed: %s", path,
			     errno != 0 ? strerror(errno) : "corrupt file");
		return NULL;
	}
	/* TDB opens a read-only file without locks; a reader that does not
	   lock may see a record half written.  Read locks work on a
	   read-only descriptor, so take them like any reader. */
	if ((open_flags & O_ACCMODE) == O_RDONLY)
		tdb_remove_flags(tdb, TDB_NOLOCK);
	return tdb;
}

/* Deletes every record but the bans. Returns the count, or -1. */
static int lp_cache_drop_all_but_bans(struct lp_context *ctx,
				      struct lp_error *err);

/* cache_path holds what root auth-workers trust (verdicts, bans), so only
   root may write it: owner root, mode 0640, group the mail gid so that
   dovecot-launchpad-web can read the bans (it keeps its own state apart,
   in web_state_dir).  A file some other uid could write (an older version
   gave it to the mail uid) is taken back, and what it held besides the
   bans is dropped: it may have been forged.  Bans are kept (a forger
   could only have removed some: check `doveadm launchpad ban list`). */
static void lp_cache_secure(struct lp_context *ctx)
{
	char dir[LP_URL_MAX], *slash;
	struct stat st;
	gid_t gid = ctx->config->mail_gid;
	int fd = tdb_fd(ctx->tdb), dropped;
	bool foreign;

	if (geteuid() != 0 || fd < 0 || fstat(fd, &st) < 0)
		return;
	if (gid == (gid_t)-1)
		gid = 0;
	foreign = st.st_uid != 0 || (st.st_mode & 0022) != 0;
	if ((st.st_uid != 0 || st.st_gid != gid) && fchown(fd, 0, gid) < 0) {
		lp_log(ctx, LP_LOG_ERROR, "fchown(%s, 0, %lu) failed: %s",
		       ctx->config->cache_path, (unsigned long)gid,
		       strerror(errno));
		return;
	}
	if ((st.st_mode & 07777) != LP_CACHE_MODE &&
	    fchmod(fd, LP_CACHE_MODE) < 0) {
		lp_log(ctx, LP_LOG_ERROR, "fchmod(%s, 0%o) failed: %s",
		       ctx->config->cache_path, LP_CACHE_MODE,
		       strerror(errno));
		return;
	}
	if (foreign) {
		dropped = lp_cache_drop_all_but_bans(ctx, NULL);
		lp_log(ctx, LP_LOG_WARNING, "%s was writable by uid %lu "
		       "(mode 0%o): now root's, mode 0%o; its %d records "
		       "other than bans were dropped as untrustworthy",
		       ctx->config->cache_path, (unsigned long)st.st_uid,
		       (unsigned int)(st.st_mode & 07777), LP_CACHE_MODE,
		       dropped);
	}
	/* whoever may write the directory may swap the file */
	if (snprintf(dir, sizeof(dir), "%s", ctx->config->cache_path) <
	    (int)sizeof(dir) && (slash = strrchr(dir, '/')) != NULL) {
		slash[slash == dir ? 1 : 0] = '\0';
		if (stat(dir, &st) == 0 &&
		    (st.st_uid != 0 || ((st.st_mode & 0022) != 0 &&
					(st.st_mode & S_ISVTX) == 0))) {
			lp_log(ctx, LP_LOG_WARNING, "%s is writable by others "
			       "than root: whoever can write there can replace "
			       "cache_path", dir);
		}
	}
}

int lp_cache_open(struct lp_context *ctx, struct lp_error *err)
{
	if (!ctx->web) {
		ctx->tdb = lp_cache_tdb_open(ctx, ctx->config->cache_path,
					     O_RDWR | O_CREAT, LP_CACHE_MODE,
					     err);
		if (ctx->tdb == NULL)
			return -1;
		lp_cache_secure(ctx);
		return 0;
	}
	ctx->tdb = lp_cache_tdb_open(ctx, ctx->web_tdb_path,
				     O_RDWR | O_CREAT | O_NOFOLLOW,
				     LP_WEB_CACHE_MODE, err);
	if (ctx->tdb == NULL)
		return -1;
	/* Root's file may not exist yet (no login so far): no bans then.
	   One that exists but cannot be read is a setup error. */
	ctx->trusted = lp_cache_tdb_open(ctx, ctx->config->cache_path,
					 O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0,
					 err);
	if (ctx->trusted == NULL && err != NULL &&
	    err->kind != LP_ERR_NOT_FOUND)
		return -1;
	ctx->trusted_retry_at = ctx->now() + LP_CACHE_TRUSTED_RETRY_SECS;
	return 0;
}

struct tdb_context *lp_cache_trusted(struct lp_context *ctx)
{
	if (!ctx->web)
		return ctx->tdb;
	if (ctx->trusted == NULL && ctx->now() >= ctx->trusted_retry_at) {
		ctx->trusted_retry_at = ctx->now() + LP_CACHE_TRUSTED_RETRY_SECS;
		ctx->trusted = lp_cache_tdb_open(ctx, ctx->config->cache_path,
						 O_RDONLY | O_NOFOLLOW |
						 O_NONBLOCK, 0, NULL);
	}
	return ctx->trusted;
}

void lp_cache_close(struct lp_context *ctx)
{
	if (ctx->tdb != NULL)
		tdb_close(ctx->tdb);
	if (ctx->trusted != NULL)
		tdb_close(ctx->trusted);
	ctx->tdb = NULL;
	ctx->trusted = NULL;
}

int lp_cache_lock(struct lp_context *ctx, const char *key,
		  struct lp_error *err)
{
	struct timespec ts = {
		.tv_nsec = LP_CACHE_LOCK_POLL_MSECS * 1000000L,
	};

	if (lp_deadline_left(ctx) == UINT64_MAX) {
		if (tdb_chainlock(ctx->tdb, lp_key(key)) == 0)
			return 0;
	} else {
		/* Polled, so a process stuck in a 40 s timeout cannot make
		   its waiters overrun their own deadline. */
		while (lp_deadline_left(ctx) > 0) {
			if (tdb_chainlock_nonblock(ctx->tdb, lp_key(key)) == 0)
				return 0;
			nanosleep(&ts, NULL);
		}
	}
	lp_error_set(err, LP_ERR_TEMP, "cache lock for %s: %s", key,
		     lp_deadline_left(ctx) == 0 ? "deadline reached" :
		     tdb_errorstr(ctx->tdb));
	lp_log(ctx, LP_LOG_WARNING, "%s", err == NULL ? key : err->text);
	return -1;
}

void lp_cache_unlock(struct lp_context *ctx, const char *key)
{
	tdb_chainunlock(ctx->tdb, lp_key(key));
}

int lp_cache_get_tdb(struct lp_context *ctx, struct tdb_context *tdb,
		     const char *key, const char *kind, json_t **obj_r)
{
	TDB_DATA data;
	json_t *obj, *v;
	const char *problem = NULL;

	*obj_r = NULL;
	if (tdb == NULL)
		return 0;
	data = tdb_fetch(tdb, lp_key(key));
	if (data.dptr == NULL)
		return 0;
	obj = json_loadb((const char *)data.dptr, data.dsize, 0, NULL);
	free(data.dptr);
	v = json_object_get(obj, "v");
	if (!json_is_object(obj))
		problem = "not a JSON object";
	else if (!json_is_integer(v) ||
		 json_integer_value(v) != LP_CACHE_VERSION)
		problem = "foreign version";
	else if (!json_is_string(json_object_get(obj, "kind")) ||
		 strcmp(json_string_value(json_object_get(obj, "kind")),
			kind) != 0)
		problem = "wrong kind";
	if (problem != NULL) {
		lp_log(ctx, LP_LOG_WARNING,
		       "cache record %s: %s, treated as a miss", key, problem);
		json_decref(obj);
		return 0;
	}
	*obj_r = obj;
	return 1;
}

int lp_cache_get(struct lp_context *ctx, const char *key, const char *kind,
		 json_t **obj_r)
{
	return lp_cache_get_tdb(ctx, ctx->tdb, key, kind, obj_r);
}

int lp_cache_get_trusted(struct lp_context *ctx, const char *key,
			 const char *kind, json_t **obj_r)
{
	return lp_cache_get_tdb(ctx, lp_cache_trusted(ctx), key, kind, obj_r);
}


/* A Launchpad fact (person, team, verdict).  The web daemon has two
   sources: what it looked up itself and what root processes stored; the
   one with the later time_field wins, so a login's or a sync's fresher
   answer (a leaver found by the sync) reaches the page too. */
int lp_cache_get_fact(struct lp_context *ctx, const char *key,
		      const char *kind, const char *time_field, json_t **obj_r)
{
	json_t *own, *root;
	json_int_t own_t, root_t;

	(void)lp_cache_get(ctx, key, kind, &own);
	if (!ctx->web) {
		*obj_r = own;
		return own != NULL ? 1 : 0;
	}
	(void)lp_cache_get_trusted(ctx, key, kind, &root);
	own_t = json_integer_value(json_object_get(own, time_field));
	root_t = json_integer_value(json_object_get(root, time_field));
	if (root != NULL && (own == NULL || root_t > own_t)) {
		json_decref(own);
		own = root;
	} else {
		json_decref(root);
	}
	*obj_r = own;
	return own != NULL ? 1 : 0;
}

void lp_cache_bad_field(struct lp_context *ctx, const char *key,
			const char *field)
{
	lp_log(ctx, LP_LOG_WARNING,
	       "cache record %s: field \"%s\" missing or mistyped, "
	       "treated as a miss", key, field);
}

int lp_cache_put(struct lp_context *ctx, const char *key, const char *kind,
		 json_t *obj, struct lp_error *err)
{
	TDB_DATA data;
	char *text;
	int ret;

	if (json_object_set_new(obj, "v", json_integer(LP_CACHE_VERSION)) < 0 ||
	    json_object_set_new(obj, "kind", json_string(kind)) < 0 ||
	    (text = json_dumps(obj, JSON_COMPACT)) == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "cache %s: out of memory",
			     key);
		return -1;
	}
	data.dptr = (unsigned char *)text;
	data.dsize = strlen(text);
	ret = tdb_store(ctx->tdb, lp_key(key), data, TDB_REPLACE);
	free(text);
	if (ret < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "tdb_store(%s, %s) failed: %s",
			     ctx->config->cache_path, key,
			     tdb_errorstr(ctx->tdb));
		lp_log(ctx, LP_LOG_ERROR, "tdb_store(%s, %s) failed: %s",
		       ctx->config->cache_path, key, tdb_errorstr(ctx->tdb));
		return -1;
	}
	return 0;
}

int lp_cache_put_new(struct lp_context *ctx, const char *key,
		     const char *kind, json_t *obj, struct lp_error *err)
{
	int ret;

	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "cache %s: out of memory",
			     key);
		return -1;
	}
	ret = lp_cache_put(ctx, key, kind, obj, err);
	json_decref(obj);
	return ret;
}

bool lp_cache_exists(struct tdb_context *tdb, const char *key)
{
	return tdb_exists(tdb, lp_key(key)) != 0;
}

int lp_cache_delete(struct lp_context *ctx, const char *key,
		    struct lp_error *err)
{
	if (tdb_delete(ctx->tdb, lp_key(key)) == 0)
		return 1;
	if (tdb_error(ctx->tdb) == TDB_ERR_NOEXIST)
		return 0;
	lp_error_set(err, LP_ERR_INTERNAL, "tdb_delete(%s, %s) failed: %s",
		     ctx->config->cache_path, key, tdb_errorstr(ctx->tdb));
	return -1;
}

/* ---- prefix scans ---- */

struct lp_cache_scan {
	const char *prefix;	/* collect keys starting with this */
	struct lp_name_set keys;
	bool failed;
};

static int lp_cache_collect(struct tdb_context *tdb __attribute__((unused)),
			    TDB_DATA key, TDB_DATA data __attribute__((unused)),
			    void *context)
{
	struct lp_cache_scan *scan = context;
	size_t plen = strlen(scan->prefix);

	if (key.dsize < plen || memcmp(key.dptr, scan->prefix, plen) != 0)
		return 0;
	if (lp_name_set_add(&scan->keys, (const char *)key.dptr,
			    key.dsize) < 0) {
		scan->failed = true;
		return -1;
	}
	return 0;
}

/* Collects the keys first and acts after the traversal, so callbacks and
   deletes never run under the traverse lock. */
int lp_cache_full_keys(struct lp_context *ctx, const char *prefix,
		       struct lp_name_set *keys_r, struct lp_error *err)
{
	struct lp_cache_scan scan = { .prefix = prefix };

	if (tdb_traverse_read(ctx->tdb, lp_cache_collect, &scan) < 0 &&
	    !scan.failed) {
		lp_error_set(err, LP_ERR_INTERNAL, "tdb_traverse(%s) failed: %s",
			     ctx->config->cache_path, tdb_errorstr(ctx->tdb));
		lp_name_set_free(&scan.keys);
		return -1;
	}
	if (scan.failed) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		lp_name_set_free(&scan.keys);
		return -1;
	}
	*keys_r = scan.keys;
	return 0;
}

int lp_cache_keys(struct lp_context *ctx, const char *prefix,
		  struct lp_name_set *keys_r, struct lp_error *err)
{
	size_t plen = strlen(prefix);

	memset(keys_r, 0, sizeof(*keys_r));
	if (lp_cache_full_keys(ctx, prefix, keys_r, err) < 0)
		return -1;
	for (unsigned int i = 0; i < keys_r->count; i++)
		memmove(keys_r->names[i], keys_r->names[i] + plen,
			strlen(keys_r->names[i]) - plen + 1);
	lp_name_set_sort(keys_r);
	return 0;
}

int lp_cache_delete_prefix_unless(struct lp_context *ctx, const char *prefix,
				  bool (*keep)(struct lp_context *ctx,
					       const char *key),
				  struct lp_error *err)
{
	struct lp_name_set keys;
	int count = 0, ret;

	if (lp_cache_full_keys(ctx, prefix, &keys, err) < 0)
		return -1;
	for (unsigned int i = 0; i < keys.count; i++) {
		if (keep != NULL && keep(ctx, keys.names[i]))
			continue;
		if ((ret = lp_cache_delete(ctx, keys.names[i], err)) < 0) {
			count = -1;
			break;
		}
		count += ret;
	}
	lp_name_set_free(&keys);
	return count;
}

int lp_cache_delete_prefix(struct lp_context *ctx, const char *prefix,
			   struct lp_error *err)
{
	return lp_cache_delete_prefix_unless(ctx, prefix, NULL, err);
}

static bool lp_cache_is_ban(struct lp_context *ctx __attribute__((unused)),
			    const char *key)
{
	return strncmp(key, LP_KEY_BAN, strlen(LP_KEY_BAN)) == 0;
}

static int lp_cache_drop_all_but_bans(struct lp_context *ctx,
				      struct lp_error *err)
{
	return lp_cache_delete_prefix_unless(ctx, "", lp_cache_is_ban, err);
}

/* ---- locks beside cache_path ---- */

int lp_cache_flock(struct lp_context *ctx, const char *suffix, bool wait,
		   int *fd_r, struct lp_error *err)
{
	char path[LP_URL_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s%s", ctx->config->cache_path,
		     suffix) >= (int)sizeof(path)) {
		lp_error_set(err, LP_ERR_INTERNAL, "cache_path too long");
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "open(%s) failed: %s",
			     path, strerror(errno));
		return -1;
	}
	/* flock, not a TDB chainlock: a chain is shared with other keys,
	   and logins must never wait for a sync. */
	while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
		int error = errno;

		if (error == EINTR && wait)
			continue;
		close(fd);
		if (error == EWOULDBLOCK)
			return 0;
		lp_error_set(err, LP_ERR_INTERNAL, "flock(%s) failed: %s",
			     path, strerror(error));
		return -1;
	}
	*fd_r = fd;
	return 1;
}
