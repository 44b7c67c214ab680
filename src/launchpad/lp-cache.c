/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad-private.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

/* Records are JSON objects {"v":1,"kind":...,...} under the keys
   "person/<name>", "team/<team>", "verdict/<name>@<domain>", "ban/<name>"
   and "outage".  Anything unreadable is a miss, never a crash: the next
   store of that key rewrites it. */

#define LP_KEY_PERSON "person/"
#define LP_KEY_TEAM "team/"
#define LP_KEY_VERDICT "verdict/"
#define LP_KEY_BAN "ban/"
#define LP_KEY_OUTAGE "outage"
#define LP_KEY_MAX (sizeof(LP_KEY_VERDICT) + LP_USER_MAX + 1)

static const char *const lp_reason_names[] = {
	[LP_DENY_NONE] = "none",
	[LP_DENY_DOMAIN] = "domain",
	[LP_DENY_NAME] = "name",
	[LP_DENY_BANNED] = "banned",
	[LP_DENY_NO_PERSON] = "no-person",
	[LP_DENY_NOT_VALID] = "not-valid",
	[LP_DENY_NO_COC] = "no-coc",
	[LP_DENY_NOT_MEMBER] = "not-member",
};

static const char *const lp_person_state_names[] = {
	[LP_PERSON_UNKNOWN] = "unknown",
	[LP_PERSON_OK] = "ok",
	[LP_PERSON_NOT_FOUND] = "not-found",
	[LP_PERSON_SUSPENDED] = "suspended",
};

#define LP_N_ELEMENTS(arr) (sizeof(arr) / sizeof((arr)[0]))

static int lp_token_lookup(const char *const *names, unsigned int count,
			   const char *token)
{
	if (token == NULL)
		return -1;
	for (unsigned int i = 0; i < count; i++) {
		if (strcmp(names[i], token) == 0)
			return (int)i;
	}
	return -1;
}

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

/* gid of the config ("vmail" or a number); -1 if unknown. */
static gid_t lp_cache_group(const struct lp_config *config)
{
	const struct group *gr;
	char *end;
	unsigned long n;

	n = strtoul(config->gid, &end, 10);
	if (*config->gid != '\0' && *end == '\0')
		return (gid_t)n;
	if ((gr = getgrnam(config->gid)) != NULL)
		return gr->gr_gid;
	return (gid_t)-1;
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
	gid_t gid = lp_cache_group(ctx->config);
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
static int lp_cache_get_fact(struct lp_context *ctx, const char *key,
			     const char *kind, const char *time_field,
			     json_t **obj_r)
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

static void lp_cache_bad_field(struct lp_context *ctx, const char *key,
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

static bool lp_json_time(json_t *obj, const char *field, time_t *time_r)
{
	json_t *v = json_object_get(obj, field);

	if (!json_is_integer(v))
		return false;
	*time_r = (time_t)json_integer_value(v);
	return true;
}

static bool lp_json_bool(json_t *obj, const char *field, bool *value_r)
{
	json_t *v = json_object_get(obj, field);

	if (!json_is_boolean(v))
		return false;
	*value_r = json_is_true(v);
	return true;
}

static bool lp_json_text(json_t *obj, const char *field, char *buf,
			 size_t size)
{
	json_t *v = json_object_get(obj, field);

	if (!json_is_string(v) || json_string_length(v) >= size)
		return false;
	memcpy(buf, json_string_value(v), json_string_length(v) + 1);
	return true;
}

/* ---- person ---- */

int lp_cache_person_get(struct lp_context *ctx, const char *name,
			struct lp_person_record *rec_r)
{
	char key[LP_KEY_MAX];
	const char *field = NULL;
	json_t *obj;
	int state;

	memset(rec_r, 0, sizeof(*rec_r));
	snprintf(key, sizeof(key), LP_KEY_PERSON "%s", name);
	if (lp_cache_get_fact(ctx, key, "person", "fetched_at", &obj) <= 0)
		return 0;
	state = lp_token_lookup(lp_person_state_names,
				LP_N_ELEMENTS(lp_person_state_names),
				json_string_value(json_object_get(obj, "state")));
	if (state <= LP_PERSON_UNKNOWN)
		field = "state";
	else if (!lp_json_bool(obj, "is_valid", &rec_r->is_valid))
		field = "is_valid";
	else if (!lp_json_bool(obj, "is_coc_signer", &rec_r->is_coc_signer))
		field = "is_coc_signer";
	else if (!lp_json_bool(obj, "is_team", &rec_r->is_team))
		field = "is_team";
	else if (!lp_json_text(obj, "etag", rec_r->etag, sizeof(rec_r->etag)))
		field = "etag";
	else if (!lp_json_time(obj, "fetched_at", &rec_r->fetched_at))
		field = "fetched_at";
	else if (!lp_json_time(obj, "expires_at", &rec_r->expires_at))
		field = "expires_at";
	json_decref(obj);
	if (field != NULL) {
		lp_cache_bad_field(ctx, key, field);
		memset(rec_r, 0, sizeof(*rec_r));
		return 0;
	}
	rec_r->state = (enum lp_person_state)state;
	return 1;
}

int lp_cache_person_put(struct lp_context *ctx, const char *name,
			const struct lp_person_record *rec,
			struct lp_error *err)
{
	char key[LP_KEY_MAX];
	json_t *obj;
	int ret;

	snprintf(key, sizeof(key), LP_KEY_PERSON "%s", name);
	obj = json_pack("{s:s, s:s, s:b, s:b, s:b, s:s, s:I, s:I}",
			"name", name,
			"state", lp_person_state_names[rec->state],
			"is_valid", rec->is_valid,
			"is_coc_signer", rec->is_coc_signer,
			"is_team", rec->is_team,
			"etag", rec->etag,
			"fetched_at", (json_int_t)rec->fetched_at,
			"expires_at", (json_int_t)rec->expires_at);
	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "cache %s: json_pack failed",
			     key);
		return -1;
	}
	ret = lp_cache_put(ctx, key, "person", obj, err);
	json_decref(obj);
	return ret;
}

/* ---- team ---- */

int lp_cache_team_get(struct lp_context *ctx, const char *team,
		      struct lp_name_set *set_r, time_t *fetched_at_r,
		      time_t *expires_at_r)
{
	char key[LP_KEY_MAX];
	json_t *obj, *members, *member;
	size_t i;

	memset(set_r, 0, sizeof(*set_r));
	snprintf(key, sizeof(key), LP_KEY_TEAM "%s", team);
	if (lp_cache_get_fact(ctx, key, "team", "fetched_at", &obj) <= 0)
		return 0;
	members = json_object_get(obj, "members");
	if (!lp_json_time(obj, "fetched_at", fetched_at_r) ||
	    !lp_json_time(obj, "expires_at", expires_at_r) ||
	    !json_is_array(members))
		goto bad;
	set_r->names = calloc(json_array_size(members) + 1,
			      sizeof(*set_r->names));
	if (set_r->names == NULL)
		goto bad;
	json_array_foreach(members, i, member) {
		const char *name = json_string_value(member);

		/* stored sorted and unique; anything else is corrupt, as
		   bsearch would silently miss members */
		if (name == NULL || (set_r->count > 0 &&
		    strcmp(set_r->names[set_r->count - 1], name) >= 0))
			goto bad;
		set_r->names[set_r->count] = strdup(name);
		if (set_r->names[set_r->count] == NULL)
			goto bad;
		set_r->count++;
	}
	json_decref(obj);
	return 1;
bad:
	lp_cache_bad_field(ctx, key, "members");
	lp_name_set_free(set_r);
	json_decref(obj);
	return 0;
}

int lp_cache_team_put(struct lp_context *ctx, const char *team,
		      const struct lp_name_set *set, time_t fetched_at,
		      time_t expires_at, struct lp_error *err)
{
	char key[LP_KEY_MAX];
	json_t *obj, *members;
	int ret;

	snprintf(key, sizeof(key), LP_KEY_TEAM "%s", team);
	members = json_array();
	for (unsigned int i = 0; members != NULL && i < set->count; i++) {
		if (json_array_append_new(members,
					  json_string(set->names[i])) < 0) {
			json_decref(members);
			members = NULL;
		}
	}
	obj = members == NULL ? NULL :
		json_pack("{s:s, s:o, s:I, s:I}", "team", team,
			  "members", members,
			  "fetched_at", (json_int_t)fetched_at,
			  "expires_at", (json_int_t)expires_at);
	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "cache %s: out of memory",
			     key);
		return -1;
	}
	ret = lp_cache_put(ctx, key, "team", obj, err);
	json_decref(obj);
	return ret;
}

/* ---- verdict ---- */

const char *lp_cache_reason_token(enum lp_deny_reason reason)
{
	return (unsigned int)reason < LP_N_ELEMENTS(lp_reason_names) ?
		lp_reason_names[reason] : NULL;
}

int lp_cache_reason_parse(const char *token)
{
	return lp_token_lookup(lp_reason_names, LP_N_ELEMENTS(lp_reason_names),
			       token);
}

static int lp_cache_verdict_parse(struct lp_context *ctx, const char *key,
				  json_t *obj, struct lp_verdict_record *rec_r)
{
	const char *kind = json_string_value(json_object_get(obj, "verdict"));
	const char *field = NULL;
	int reason;

	memset(rec_r, 0, sizeof(*rec_r));
	reason = lp_token_lookup(lp_reason_names, LP_N_ELEMENTS(lp_reason_names),
				 json_string_value(json_object_get(obj, "reason")));
	if (kind == NULL ||
	    (strcmp(kind, "allow") != 0 && strcmp(kind, "deny") != 0))
		field = "verdict";
	else if (reason < 0 ||
		 (strcmp(kind, "allow") == 0) != (reason == LP_DENY_NONE))
		field = "reason";
	else if (!lp_json_text(obj, "text", rec_r->text, sizeof(rec_r->text)))
		field = "text";
	else if (!lp_json_time(obj, "decided_at", &rec_r->decided_at))
		field = "decided_at";
	else if (!lp_json_time(obj, "expires_at", &rec_r->expires_at))
		field = "expires_at";
	if (field != NULL) {
		lp_cache_bad_field(ctx, key, field);
		return -1;
	}
	rec_r->kind = strcmp(kind, "allow") == 0 ?
		LP_VERDICT_ALLOW : LP_VERDICT_DENY;
	rec_r->reason = (enum lp_deny_reason)reason;
	return 0;
}

int lp_cache_verdict_get(struct lp_context *ctx, const char *user,
			 struct lp_verdict_record *rec_r)
{
	char key[LP_KEY_MAX];
	json_t *obj;
	int ret;

	memset(rec_r, 0, sizeof(*rec_r));
	snprintf(key, sizeof(key), LP_KEY_VERDICT "%s", user);
	if (lp_cache_get_fact(ctx, key, "verdict", "decided_at", &obj) <= 0)
		return 0;
	ret = lp_cache_verdict_parse(ctx, key, obj, rec_r) < 0 ? 0 : 1;
	json_decref(obj);
	return ret;
}

int lp_cache_verdict_put(struct lp_context *ctx, const char *user,
			 const struct lp_verdict_record *rec,
			 struct lp_error *err)
{
	char key[LP_KEY_MAX];
	json_t *obj;
	int ret;

	snprintf(key, sizeof(key), LP_KEY_VERDICT "%s", user);
	obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}",
			"user", user,
			"verdict", rec->kind == LP_VERDICT_ALLOW ? "allow" : "deny",
			"reason", lp_reason_names[rec->reason],
			"text", rec->text,
			"decided_at", (json_int_t)rec->decided_at,
			"expires_at", (json_int_t)rec->expires_at);
	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "cache %s: json_pack failed",
			     key);
		return -1;
	}
	ret = lp_cache_put(ctx, key, "verdict", obj, err);
	json_decref(obj);
	return ret;
}

/* ---- ban ---- */

int lp_cache_ban_get(struct lp_context *ctx, const char *name,
		     char reason_r[LP_TEXT_MAX])
{
	char key[LP_KEY_MAX];
	struct tdb_context *tdb;
	TDB_DATA data;
	json_t *obj;

	reason_r[0] = '\0';
	snprintf(key, sizeof(key), LP_KEY_BAN "%s", name);
	/* Bans are root's (doveadm): the web daemon reads them from
	   cache_path.  A ban that exists but cannot be read still bans. */
	if ((tdb = lp_cache_trusted(ctx)) == NULL)
		return 0;
	data = tdb_fetch(tdb, lp_key(key));
	if (data.dptr == NULL)
		return 0;
	free(data.dptr);
	if (lp_cache_get_tdb(ctx, tdb, key, "ban", &obj) <= 0 ||
	    !lp_json_text(obj, "reason", reason_r, LP_TEXT_MAX)) {
		json_decref(obj);
		lp_log(ctx, LP_LOG_WARNING,
		       "cache record %s unreadable: still treated as a ban",
		       key);
		snprintf(reason_r, LP_TEXT_MAX, "unreadable ban record");
		return 1;
	}
	json_decref(obj);
	return 1;
}

/* Lower-cases the part of user before its last '@' into name_r; TRUE if
   it is a Launchpad name. */
static bool lp_cache_user_name(const char *user, char name_r[LP_NAME_MAX + 1])
{
	const char *at = strrchr(user, '@');
	size_t len = at == NULL ? strlen(user) : (size_t)(at - user);

	if (len > LP_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		name_r[i] = (char)tolower((unsigned char)user[i]);
	name_r[len] = '\0';
	return lp_name_is_valid(name_r);
}

int lp_ban_set(struct lp_context *ctx, const char *name, const char *reason,
	       struct lp_error *err)
{
	char lname[LP_NAME_MAX + 1], key[LP_KEY_MAX];
	json_t *obj;
	int ret;

	if (!lp_cache_user_name(name, lname)) {
		lp_error_set(err, LP_ERR_NOT_FOUND,
			     "'%.64s' is not a Launchpad name", name);
		return -1;
	}
	snprintf(key, sizeof(key), LP_KEY_BAN "%s", lname);
	obj = json_pack("{s:s, s:s%, s:I}", "name", lname,
			"reason", reason == NULL ? "" : reason,
			reason == NULL ? (size_t)0 :
			strnlen(reason, LP_TEXT_MAX - 1),
			"set_at", (json_int_t)ctx->now());
	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL,
			     "ban %s: reason is not UTF-8 or out of memory",
			     lname);
		return -1;
	}
	ret = lp_cache_put(ctx, key, "ban", obj, err);
	json_decref(obj);
	return ret;
}

int lp_ban_clear(struct lp_context *ctx, const char *name,
		 struct lp_error *err)
{
	char lname[LP_NAME_MAX + 1], key[LP_KEY_MAX];

	if (!lp_cache_user_name(name, lname)) {
		lp_error_set(err, LP_ERR_NOT_FOUND,
			     "'%.64s' is not a Launchpad name", name);
		return -1;
	}
	snprintf(key, sizeof(key), LP_KEY_BAN "%s", lname);
	return lp_cache_delete(ctx, key, err);
}

/* ---- outage ---- */

unsigned int lp_cache_outage_backoff(const struct lp_context *ctx)
{
	return ctx->config->http_timeout < LP_OUTAGE_BACKOFF_MAX_SECS ?
		ctx->config->http_timeout : LP_OUTAGE_BACKOFF_MAX_SECS;
}

bool lp_cache_outage_active(struct lp_context *ctx, time_t *since_r)
{
	json_t *obj;
	time_t since, now = ctx->now();
	bool ok;

	if (lp_cache_get(ctx, LP_KEY_OUTAGE, "outage", &obj) <= 0)
		return false;
	ok = lp_json_time(obj, "since", &since);
	json_decref(obj);
	if (!ok || now < since || now - since >= (time_t)lp_cache_outage_backoff(ctx))
		return false;
	*since_r = since;
	return true;
}

void lp_cache_outage_set(struct lp_context *ctx)
{
	json_t *obj = json_pack("{s:I}", "since", (json_int_t)ctx->now());

	if (obj != NULL)
		(void)lp_cache_put(ctx, LP_KEY_OUTAGE, "outage", obj, NULL);
	json_decref(obj);
}

void lp_cache_outage_clear(struct lp_context *ctx)
{
	(void)lp_cache_delete(ctx, LP_KEY_OUTAGE, NULL);
}

/* ---- public inspection ---- */

int lp_cache_show(struct lp_context *ctx, const char *user,
		  struct lp_cache_user *user_r, struct lp_error *err)
{
	char name[LP_NAME_MAX + 1];
	const struct lp_domain *domain;
	struct lp_verdict_record verdict;
	struct lp_person_record person;
	int found = 0;

	memset(user_r, 0, sizeof(*user_r));
	if (lp_login_parse(ctx->config, user, name, &domain) != LP_LOGIN_OK) {
		lp_error_set(err, LP_ERR_NOT_FOUND,
			     "'%.64s' is not a Launchpad user of a configured "
			     "domain", user);
		return -1;
	}
	snprintf(user_r->user, sizeof(user_r->user), "%s@%s", name,
		 domain->domain);
	if (lp_cache_verdict_get(ctx, user_r->user, &verdict) > 0) {
		user_r->kind = verdict.kind;
		user_r->reason = verdict.reason;
		memcpy(user_r->text, verdict.text, sizeof(user_r->text));
		user_r->decided_at = verdict.decided_at;
		user_r->expires_at = verdict.expires_at;
		found = 1;
	}
	if (lp_cache_person_get(ctx, name, &person) > 0) {
		user_r->have_person = true;
		user_r->person = person.state;
		user_r->is_valid = person.is_valid;
		user_r->is_coc_signer = person.is_coc_signer;
		memcpy(user_r->etag, person.etag, sizeof(user_r->etag));
		user_r->person_fetched_at = person.fetched_at;
		user_r->person_expires_at = person.expires_at;
		found = 1;
	}
	if (lp_cache_ban_get(ctx, name, user_r->ban_reason) > 0) {
		user_r->banned = true;
		found = 1;
	}
	return found;
}

struct lp_cache_keys {
	const char *prefix;	/* collect keys starting with this */
	char **keys;
	unsigned int count, alloc;
	bool allowed_only;	/* iterate_allowed: verdict filter */
	struct lp_context *ctx;
	bool failed;
};

static bool lp_cache_verdict_usable(struct lp_context *ctx, TDB_DATA key,
				    TDB_DATA data)
{
	struct lp_verdict_record rec;
	char keystr[LP_KEY_MAX];
	json_t *obj, *v, *kind;
	bool ret = false;

	if (key.dsize >= sizeof(keystr))
		return false;
	memcpy(keystr, key.dptr, key.dsize);
	keystr[key.dsize] = '\0';
	obj = json_loadb((const char *)data.dptr, data.dsize, 0, NULL);
	v = json_object_get(obj, "v");
	kind = json_object_get(obj, "kind");
	if (json_is_integer(v) && json_integer_value(v) == LP_CACHE_VERSION &&
	    json_is_string(kind) &&
	    strcmp(json_string_value(kind), "verdict") == 0 &&
	    lp_cache_verdict_parse(ctx, keystr, obj, &rec) == 0) {
		ret = rec.kind == LP_VERDICT_ALLOW &&
			rec.expires_at + (time_t)ctx->config->stale_grace >
			ctx->now();
	}
	json_decref(obj);
	return ret;
}

static int lp_cache_collect(struct tdb_context *tdb __attribute__((unused)),
			    TDB_DATA key, TDB_DATA data, void *context)
{
	struct lp_cache_keys *keys = context;
	size_t plen = strlen(keys->prefix);

	if (key.dsize < plen || memcmp(key.dptr, keys->prefix, plen) != 0)
		return 0;
	if (keys->allowed_only && !lp_cache_verdict_usable(keys->ctx, key, data))
		return 0;
	if (keys->count == keys->alloc) {
		unsigned int new_alloc = keys->alloc == 0 ? 64 : keys->alloc * 2;
		char **new_keys = realloc(keys->keys,
					  new_alloc * sizeof(*new_keys));

		if (new_keys == NULL) {
			keys->failed = true;
			return -1;
		}
		keys->keys = new_keys;
		keys->alloc = new_alloc;
	}
	keys->keys[keys->count] = strndup((const char *)key.dptr, key.dsize);
	if (keys->keys[keys->count] == NULL) {
		keys->failed = true;
		return -1;
	}
	keys->count++;
	return 0;
}

static void lp_cache_keys_free(struct lp_cache_keys *keys)
{
	for (unsigned int i = 0; i < keys->count; i++)
		free(keys->keys[i]);
	free(keys->keys);
}

/* Collects matching keys first and acts after the traversal, so callbacks
   and deletes never run under the traverse lock. */
static int lp_cache_collect_keys(struct lp_context *ctx,
				 struct lp_cache_keys *keys,
				 struct lp_error *err)
{
	keys->ctx = ctx;
	if (tdb_traverse_read(ctx->tdb, lp_cache_collect, keys) < 0 &&
	    !keys->failed) {
		lp_error_set(err, LP_ERR_INTERNAL, "tdb_traverse(%s) failed: %s",
			     ctx->config->cache_path, tdb_errorstr(ctx->tdb));
		lp_cache_keys_free(keys);
		return -1;
	}
	if (keys->failed) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		lp_cache_keys_free(keys);
		return -1;
	}
	return 0;
}

static int lp_cache_delete_keys(struct lp_context *ctx, const char *prefix,
				struct lp_error *err)
{
	struct lp_cache_keys keys = { .prefix = prefix };
	int count = 0, ret;

	if (lp_cache_collect_keys(ctx, &keys, err) < 0)
		return -1;
	for (unsigned int i = 0; i < keys.count; i++) {
		if ((ret = lp_cache_delete(ctx, keys.keys[i], err)) < 0) {
			count = -1;
			break;
		}
		count += ret;
	}
	lp_cache_keys_free(&keys);
	return count;
}

static int lp_cache_drop_all_but_bans(struct lp_context *ctx,
				      struct lp_error *err)
{
	struct lp_cache_keys keys = { .prefix = "" };
	int count = 0, ret;

	if (lp_cache_collect_keys(ctx, &keys, err) < 0)
		return -1;
	for (unsigned int i = 0; i < keys.count; i++) {
		if (strncmp(keys.keys[i], LP_KEY_BAN,
			    strlen(LP_KEY_BAN)) == 0)
			continue;
		if ((ret = lp_cache_delete(ctx, keys.keys[i], err)) < 0) {
			count = -1;
			break;
		}
		count += ret;
	}
	lp_cache_keys_free(&keys);
	return count;
}

int lp_cache_invalidate(struct lp_context *ctx, const char *user,
			struct lp_error *err)
{
	char name[LP_NAME_MAX + 1], key[LP_KEY_MAX];
	int count, ret;

	if (!lp_cache_user_name(user, name)) {
		lp_error_set(err, LP_ERR_NOT_FOUND,
			     "'%.64s' is not a Launchpad name", user);
		return -1;
	}
	snprintf(key, sizeof(key), LP_KEY_PERSON "%s", name);
	if ((count = lp_cache_delete(ctx, key, err)) < 0)
		return -1;
	snprintf(key, sizeof(key), LP_KEY_VERDICT "%s@", name);
	if ((ret = lp_cache_delete_keys(ctx, key, err)) < 0)
		return -1;
	return count + ret;
}

int lp_cache_invalidate_all(struct lp_context *ctx, struct lp_error *err)
{
	static const char *const prefixes[] = {
		LP_KEY_PERSON, LP_KEY_TEAM, LP_KEY_VERDICT, LP_KEY_OUTAGE,
	};
	int count = 0, ret;

	for (unsigned int i = 0; i < LP_N_ELEMENTS(prefixes); i++) {
		if ((ret = lp_cache_delete_keys(ctx, prefixes[i], err)) < 0)
			return -1;
		count += ret;
	}
	return count;
}

int lp_cache_iterate_allowed(struct lp_context *ctx,
			     int (*cb)(const char *user, void *context),
			     void *context, struct lp_error *err)
{
	struct lp_cache_keys keys = {
		.prefix = LP_KEY_VERDICT,
		.allowed_only = true,
	};

	if (lp_cache_collect_keys(ctx, &keys, err) < 0)
		return -1;
	for (unsigned int i = 0; i < keys.count; i++) {
		if (cb(keys.keys[i] + strlen(LP_KEY_VERDICT), context) < 0)
			break;
	}
	lp_cache_keys_free(&keys);
	return 0;
}

/* ---- administration: lists, counts, app password use ---- */

#define LP_KEY_SLOTUSED "slotused/"

static int lp_cache_key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int lp_cache_keys(struct lp_context *ctx, const char *prefix,
		  struct lp_name_set *keys_r, struct lp_error *err)
{
	struct lp_cache_keys keys = { .prefix = prefix };
	size_t plen = strlen(prefix);

	memset(keys_r, 0, sizeof(*keys_r));
	if (lp_cache_collect_keys(ctx, &keys, err) < 0)
		return -1;
	for (unsigned int i = 0; i < keys.count; i++)
		memmove(keys.keys[i], keys.keys[i] + plen,
			strlen(keys.keys[i]) - plen + 1);
	if (keys.count > 0)
		qsort(keys.keys, keys.count, sizeof(*keys.keys),
		      lp_cache_key_cmp);
	keys_r->names = keys.keys;
	keys_r->count = keys.count;
	return 0;
}

int lp_cache_delete_prefix(struct lp_context *ctx, const char *prefix,
			   struct lp_error *err)
{
	return lp_cache_delete_keys(ctx, prefix, err);
}

int lp_cache_list(struct lp_context *ctx,
		  int (*cb)(const struct lp_cache_user *entry, void *context),
		  void *context, struct lp_error *err)
{
	struct lp_name_set users;
	struct lp_cache_user entry;

	if (lp_cache_keys(ctx, LP_KEY_VERDICT, &users, err) < 0)
		return -1;
	for (unsigned int i = 0; i < users.count; i++) {
		/* a verdict key that no longer parses (domain dropped from
		   the config) is skipped, not an error */
		if (lp_cache_show(ctx, users.names[i], &entry, NULL) <= 0 ||
		    entry.decided_at == 0)
			continue;
		if (cb(&entry, context) < 0)
			break;
	}
	lp_name_set_free(&users);
	return 0;
}

int lp_ban_list(struct lp_context *ctx,
		int (*cb)(const struct lp_ban_entry *ban, void *context),
		void *context, struct lp_error *err)
{
	struct lp_name_set names;
	struct lp_ban_entry ban;
	char key[LP_KEY_MAX];
	json_t *obj;

	if (lp_cache_keys(ctx, LP_KEY_BAN, &names, err) < 0)
		return -1;
	for (unsigned int i = 0; i < names.count; i++) {
		memset(&ban, 0, sizeof(ban));
		if (strlen(names.names[i]) > LP_NAME_MAX)
			continue;
		strcpy(ban.name, names.names[i]);
		(void)lp_cache_ban_get(ctx, ban.name, ban.reason);
		snprintf(key, sizeof(key), LP_KEY_BAN "%s", ban.name);
		if (lp_cache_get(ctx, key, "ban", &obj) > 0) {
			(void)lp_json_time(obj, "set_at", &ban.set_at);
			json_decref(obj);
		}
		if (cb(&ban, context) < 0)
			break;
	}
	lp_name_set_free(&names);
	return 0;
}

int lp_cache_count(struct lp_context *ctx, struct lp_cache_counts *counts_r,
		   struct lp_error *err)
{
	struct lp_name_set keys;
	struct lp_verdict_record rec;
	time_t now = ctx->now();

	memset(counts_r, 0, sizeof(*counts_r));
	if (lp_cache_keys(ctx, LP_KEY_VERDICT, &keys, err) < 0)
		return -1;
	for (unsigned int i = 0; i < keys.count; i++) {
		if (lp_cache_verdict_get(ctx, keys.names[i], &rec) <= 0)
			continue;
		if (rec.kind == LP_VERDICT_DENY)
			counts_r->deny++;
		else if (rec.expires_at <= now)
			counts_r->allow_expired++;
		else
			counts_r->allow++;
	}
	lp_name_set_free(&keys);
	if (lp_cache_keys(ctx, LP_KEY_PERSON, &keys, err) < 0)
		return -1;
	counts_r->persons = keys.count;
	lp_name_set_free(&keys);
	if (lp_cache_keys(ctx, LP_KEY_TEAM, &keys, err) < 0)
		return -1;
	counts_r->teams = keys.count;
	lp_name_set_free(&keys);
	if (lp_cache_keys(ctx, LP_KEY_BAN, &keys, err) < 0)
		return -1;
	counts_r->bans = keys.count;
	lp_name_set_free(&keys);
	return 0;
}

/* "slotused/<user>/<keyfile id>/<slot>"; for LP_SLOT_ALL the prefix
   "slotused/<user>/" of every keyfile the user ever had. */
static bool lp_cache_slot_key(const char *user, const char *keyfile_id,
			      unsigned int slot_id,
			      char key_r[LP_KEY_MAX + 48])
{
	int len;

	if (strlen(user) > LP_USER_MAX || strchr(user, '/') != NULL)
		return false;
	if (slot_id == LP_SLOT_ALL)
		len = snprintf(key_r, LP_KEY_MAX + 48, LP_KEY_SLOTUSED "%s/",
			       user);
	else if (keyfile_id == NULL || keyfile_id[0] == '\0' ||
		 strlen(keyfile_id) > 32 ||
		 strspn(keyfile_id, "0123456789abcdef") != strlen(keyfile_id))
		return false;
	else
		len = snprintf(key_r, LP_KEY_MAX + 48,
			       LP_KEY_SLOTUSED "%s/%s/%u", user, keyfile_id,
			       slot_id);
	return len > 0 && (size_t)len < LP_KEY_MAX + 48;
}

int lp_cache_slot_last_used(struct lp_context *ctx, const char *user,
			    const char *keyfile_id, unsigned int slot_id,
			    time_t *time_r)
{
	char key[LP_KEY_MAX + 48];
	json_t *obj;
	bool ok;

	*time_r = 0;
	/* stamped by root auth-workers: the web daemon reads cache_path */
	if (slot_id == LP_SLOT_ALL ||
	    !lp_cache_slot_key(user, keyfile_id, slot_id, key) ||
	    lp_cache_get_trusted(ctx, key, "slotused", &obj) <= 0)
		return 0;
	ok = lp_json_time(obj, "at", time_r);
	json_decref(obj);
	return ok ? 1 : 0;
}

int lp_cache_slot_used(struct lp_context *ctx, const char *user,
		       const char *keyfile_id, unsigned int slot_id,
		       struct lp_error *err)
{
	char key[LP_KEY_MAX + 48];
	time_t last, now = ctx->now();
	json_t *obj;
	int ret;

	if (slot_id == LP_SLOT_ALL ||
	    !lp_cache_slot_key(user, keyfile_id, slot_id, key)) {
		lp_error_set(err, LP_ERR_INTERNAL, "bad user, keyfile or "
			     "slot id");
		return -1;
	}
	/* No chainlock: two logins racing both write about the same time. */
	if (lp_cache_slot_last_used(ctx, user, keyfile_id, slot_id,
				    &last) > 0 &&
	    last <= now && now - last < LP_SLOT_USED_THROTTLE_SECS)
		return 0;
	obj = json_pack("{s:I}", "at", (json_int_t)now);
	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		return -1;
	}
	ret = lp_cache_put(ctx, key, "slotused", obj, err);
	json_decref(obj);
	return ret < 0 ? -1 : 1;
}

int lp_cache_slot_forget(struct lp_context *ctx, const char *user,
			 const char *keyfile_id, unsigned int slot_id,
			 struct lp_error *err)
{
	char key[LP_KEY_MAX + 48];

	if (!lp_cache_slot_key(user, keyfile_id, slot_id, key)) {
		lp_error_set(err, LP_ERR_INTERNAL, "bad user or keyfile");
		return -1;
	}
	if (slot_id == LP_SLOT_ALL)
		return lp_cache_delete_keys(ctx, key, err);
	return lp_cache_delete(ctx, key, err);
}

/* ---- single-use OpenID nonces (dovecot-launchpad-web) ---- */

#define LP_KEY_NONCE "nonce/"
/* OpenID 2.0 caps a response_nonce at 255 characters. */
#define LP_NONCE_MAX 255

int lp_cache_nonce_use(struct lp_context *ctx, const char *nonce,
		       time_t expires_at, struct lp_error *err)
{
	char key[sizeof(LP_KEY_NONCE) + LP_NONCE_MAX];
	time_t seen_until;
	json_t *obj;
	int ret;

	if (strlen(nonce) == 0 || strlen(nonce) > LP_NONCE_MAX) {
		lp_error_set(err, LP_ERR_PROTOCOL, "nonce empty or too long");
		return -1;
	}
	snprintf(key, sizeof(key), LP_KEY_NONCE "%s", nonce);
	/* The chainlock makes check-and-set atomic across processes. */
	if (lp_cache_lock(ctx, key, err) < 0)
		return -1;
	if (lp_cache_get(ctx, key, "nonce", &obj) > 0) {
		bool ok = lp_json_time(obj, "until", &seen_until);

		json_decref(obj);
		if (ok && seen_until > ctx->now()) {
			lp_cache_unlock(ctx, key);
			return 0;
		}
	}
	obj = json_pack("{s:I}", "until", (json_int_t)expires_at);
	if (obj == NULL) {
		lp_cache_unlock(ctx, key);
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		return -1;
	}
	ret = lp_cache_put(ctx, key, "nonce", obj, err);
	json_decref(obj);
	lp_cache_unlock(ctx, key);
	return ret < 0 ? -1 : 1;
}

int lp_cache_nonce_prune(struct lp_context *ctx, struct lp_error *err)
{
	struct lp_cache_keys keys = { .prefix = LP_KEY_NONCE };
	time_t until, now = ctx->now();
	json_t *obj;
	int ret, count = 0;

	if (lp_cache_collect_keys(ctx, &keys, err) < 0)
		return -1;
	for (unsigned int i = 0; i < keys.count; i++) {
		if (lp_cache_get(ctx, keys.keys[i], "nonce", &obj) > 0) {
			bool ok = lp_json_time(obj, "until", &until);

			json_decref(obj);
			if (ok && until > now)
				continue;
		}
		if ((ret = lp_cache_delete(ctx, keys.keys[i], err)) < 0) {
			count = -1;
			break;
		}
		count += ret;
	}
	lp_cache_keys_free(&keys);
	return count;
}
