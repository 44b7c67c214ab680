/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The periodic sync (doveadm launchpad sync) and what it leaves in the
   cache besides person, team and verdict records:
     "syncstate/<user>"        {state, reason, since}: the state the last
                               sync saw, so a transition is noticed even
                               when a login already stored the new verdict
     "sync/last"               {started, finished, partial, counts...}
     "notify/<user>/<event>"   {at}: an admin mail went out
     "notifyq/<user>/<event>"  {at, text}: an event waiting for the next
                               sync's mail (lp_notify_queue()) */

#define LP_KEY_SYNCSTATE "syncstate/"
#define LP_KEY_SYNC_LAST "sync/last"
#define LP_KEY_NOTIFY "notify/"
#define LP_KEY_NOTIFYQ "notifyq/"
#define LP_SYNC_LOCK_SUFFIX ".sync"
#define LP_NOTIFY_LOCK_SUFFIX ".notify"
#define LP_SYNC_KEY_MAX (sizeof(LP_KEY_SYNCSTATE) + LP_USER_MAX + 64)

struct lp_sync_team {
	const char *team;
	struct lp_name_set set;
	unsigned int alias;	/* index of the entry that owns the set */
	bool ok;
};

struct lp_sync_state {
	enum lp_verdict_kind kind;
	enum lp_deny_reason reason;
};

/* flock on cache_path + suffix: 1 taken, 0 held elsewhere (only without
   wait), -1 error. */
static int lp_sync_flock(struct lp_context *ctx, const char *suffix,
			 bool wait, int *fd_r, struct lp_error *err)
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

static int lp_sync_lock(struct lp_context *ctx, int *fd_r,
			struct lp_error *err)
{
	return lp_sync_flock(ctx, LP_SYNC_LOCK_SUFFIX, false, fd_r, err);
}

static int lp_sync_state_get(struct lp_context *ctx, const char *user,
			     struct lp_sync_state *state_r)
{
	char key[LP_SYNC_KEY_MAX];
	const char *state, *reason;
	json_t *obj;
	int ret = 0;

	snprintf(key, sizeof(key), LP_KEY_SYNCSTATE "%s", user);
	if (lp_cache_get(ctx, key, "syncstate", &obj) <= 0)
		return 0;
	state = json_string_value(json_object_get(obj, "state"));
	reason = json_string_value(json_object_get(obj, "reason"));
	if (state != NULL && reason != NULL) {
		int parsed = lp_cache_reason_parse(reason);

		state_r->kind = strcmp(state, "allow") == 0 ?
			LP_VERDICT_ALLOW : LP_VERDICT_DENY;
		state_r->reason = parsed < 0 ? LP_DENY_NONE :
			(enum lp_deny_reason)parsed;
		ret = 1;
	}
	json_decref(obj);
	return ret;
}

static int lp_sync_state_put(struct lp_context *ctx, const char *user,
			     const struct lp_verdict_record *rec,
			     struct lp_error *err)
{
	char key[LP_SYNC_KEY_MAX];
	json_t *obj;
	int ret;

	snprintf(key, sizeof(key), LP_KEY_SYNCSTATE "%s", user);
	obj = json_pack("{s:s, s:s, s:I}",
			"state", rec->kind == LP_VERDICT_ALLOW ? "allow" : "deny",
			"reason", lp_cache_reason_token(rec->reason),
			"since", (json_int_t)rec->decided_at);
	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		return -1;
	}
	ret = lp_cache_put(ctx, key, "syncstate", obj, err);
	json_decref(obj);
	return ret;
}

/* Fetches every configured team once (several domains may share one:
   teams[i].alias then points at the first). */
static void lp_sync_fetch_teams(struct lp_context *ctx,
				struct lp_sync_team *teams,
				struct lp_sync_result *result)
{
	const struct lp_config *config = ctx->config;
	struct lp_error err;
	time_t now;

	for (unsigned int i = 0; i < config->domains_count; i++) {
		teams[i].team = config->domains[i].team;
		teams[i].alias = i;
		for (unsigned int j = 0; j < i; j++) {
			if (strcmp(teams[j].team, teams[i].team) == 0) {
				teams[i].alias = j;
				break;
			}
		}
		if (teams[i].alias != i)
			continue;
		result->teams++;
		lp_deadline_set(ctx, LP_LOOKUP_DEADLINE_MSECS);
		if (lp_team_fetch(ctx, teams[i].team, &teams[i].set,
				  &err) < 0) {
			lp_log(ctx, LP_LOG_WARNING, "sync: ~%s: %s",
			       teams[i].team, err.text);
			result->teams_failed++;
			result->partial = true;
			continue;
		}
		teams[i].ok = true;
		now = ctx->now();
		/* The fresh set is what the next login sees: a leaver is
		   refused without waiting for the old record's TTL. */
		(void)lp_cache_team_put(ctx, teams[i].team, &teams[i].set,
					now, now + config->positive_ttl, NULL);
	}
	lp_deadline_set(ctx, 0);
}

static const struct lp_sync_team *
lp_sync_team_of(const struct lp_context *ctx, const struct lp_sync_team *teams,
		const struct lp_domain *domain)
{
	for (unsigned int i = 0; i < ctx->config->domains_count; i++) {
		if (&ctx->config->domains[i] == domain)
			return &teams[teams[i].alias];
	}
	return NULL;
}

/* Re-checks one known user; fills change (text in text_buf). */
static void lp_sync_user(struct lp_context *ctx, const char *user,
			 const struct lp_sync_team *teams,
			 struct lp_person_record *person,
			 char person_name[LP_NAME_MAX + 1], int *person_ret,
			 struct lp_sync_change *change,
			 char text_buf[LP_TEXT_MAX], struct lp_sync_result *result)
{
	char name[LP_NAME_MAX + 1], ban_reason[LP_TEXT_MAX];
	const struct lp_domain *domain;
	const struct lp_sync_team *team;
	struct lp_verdict_record old_verdict, rec;
	struct lp_sync_state old_state = {
		.kind = LP_VERDICT_DENY, .reason = LP_DENY_NONE,
	};
	struct lp_verdict verdict;
	struct lp_error err = { .kind = LP_ERR_NONE };
	bool have_state, have_verdict;
	struct lp_facts facts = {
		.domain_configured = true,
		.name_valid = true,
		.now = ctx->now(),
		.stale_grace = ctx->config->stale_grace,
	};

	change->user = user;
	change->kind = LP_SYNC_FAILED;
	change->text = text_buf;
	text_buf[0] = '\0';
	if (lp_login_parse(ctx->config, user, name, &domain) != LP_LOGIN_OK)
		return;
	team = lp_sync_team_of(ctx, teams, domain);
	have_state = lp_sync_state_get(ctx, user, &old_state) > 0;
	have_verdict = lp_cache_verdict_get(ctx, user, &old_verdict) > 0;
	if (!have_state && have_verdict) {
		old_state.kind = old_verdict.kind;
		old_state.reason = old_verdict.reason;
	}
	change->had_old = have_state || have_verdict;
	change->old_kind = old_state.kind;
	result->users++;

	facts.team = domain->team;
	if (lp_cache_ban_get(ctx, name, ban_reason) > 0) {
		facts.banned = true;
		facts.ban_reason = ban_reason[0] == '\0' ? NULL : ban_reason;
	} else {
		/* one person fetch per name, shared by its domains (the keys
		   come sorted, so they are adjacent) */
		if (strcmp(person_name, name) != 0) {
			strcpy(person_name, name);
			ctx->log_user = user;
			lp_deadline_set(ctx, LP_LOOKUP_DEADLINE_MSECS);
			*person_ret = lp_person_lookup(ctx, name, true, person,
						       &err);
			lp_deadline_set(ctx, 0);
			ctx->log_user = NULL;
			if (*person_ret < 0)
				snprintf(text_buf, LP_TEXT_MAX, "%s", err.text);
		}
		if (*person_ret < 0) {
			if (text_buf[0] == '\0')
				snprintf(text_buf, LP_TEXT_MAX,
					 "Launchpad failed for ~%s", name);
			goto failed;
		}
		facts.person = person->state;
		facts.is_valid = person->is_valid;
		facts.is_coc_signer = person->is_coc_signer;
		if (person->state == LP_PERSON_OK && person->is_valid &&
		    person->is_coc_signer) {
			if (team == NULL || !team->ok) {
				snprintf(text_buf, LP_TEXT_MAX,
					 "participants of ~%s not fetched",
					 domain->team);
				goto failed;
			}
			facts.member = lp_name_set_contains(&team->set, name) ?
				LP_MEMBER_YES : LP_MEMBER_NO;
		}
	}
	lp_decide(&facts, &verdict);
	if (verdict.kind == LP_VERDICT_TEMPFAIL) {
		snprintf(text_buf, LP_TEXT_MAX, "%s", verdict.text);
		goto failed;
	}

	memset(&rec, 0, sizeof(rec));
	rec.kind = verdict.kind;
	rec.reason = verdict.reason;
	memcpy(rec.text, verdict.text, sizeof(rec.text));
	rec.decided_at = facts.now;
	rec.expires_at = facts.now + (verdict.kind == LP_VERDICT_ALLOW ?
				      ctx->config->positive_ttl :
				      ctx->config->negative_ttl);
	if (lp_cache_verdict_put(ctx, user, &rec, &err) < 0 ||
	    lp_sync_state_put(ctx, user, &rec, &err) < 0) {
		snprintf(text_buf, LP_TEXT_MAX, "%s", err.text);
		goto failed;
	}
	memcpy(text_buf, verdict.text, LP_TEXT_MAX);
	change->new_kind = verdict.kind;
	change->reason = verdict.reason;
	if (verdict.kind == LP_VERDICT_ALLOW) {
		result->allowed++;
		change->kind = !have_state || old_state.kind != LP_VERDICT_ALLOW ?
			LP_SYNC_ALLOWED : LP_SYNC_SAME;
	} else {
		result->denied++;
		if (change->had_old && old_state.kind == LP_VERDICT_ALLOW)
			change->kind = LP_SYNC_DENIED;
		else if (have_state && old_state.reason != verdict.reason)
			change->kind = LP_SYNC_REASON;
		else
			change->kind = LP_SYNC_SAME;
	}
	if (change->kind == LP_SYNC_ALLOWED) {
		result->newly_allowed++;
		(void)lp_notify_clear(ctx, user, NULL);
	} else if (change->kind == LP_SYNC_DENIED) {
		result->newly_denied++;
		(void)lp_notify_clear(ctx, user, NULL);
	}
	return;
failed:
	change->kind = LP_SYNC_FAILED;
	result->failed++;
	result->partial = true;
}

int lp_sync_run(struct lp_context *ctx, lp_sync_callback_t *cb,
		void *context, struct lp_sync_result *result_r,
		struct lp_error *err)
{
	struct lp_sync_team *teams;
	struct lp_name_set users;
	struct lp_person_record person;
	struct lp_sync_change change;
	char person_name[LP_NAME_MAX + 1] = "";
	char text[LP_TEXT_MAX];
	unsigned int requests = ctx->http_requests;
	int lock_fd = -1, person_ret = -1, ret;

	memset(result_r, 0, sizeof(*result_r));
	if ((ret = lp_sync_lock(ctx, &lock_fd, err)) <= 0)
		return ret;
	result_r->started = ctx->now();

	teams = calloc(ctx->config->domains_count, sizeof(*teams));
	if (teams == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		close(lock_fd);
		return -1;
	}
	lp_sync_fetch_teams(ctx, teams, result_r);

	/* Known users: anyone with a stored verdict. */
	if (lp_cache_keys(ctx, "verdict/", &users, err) < 0) {
		ret = -1;
		goto out;
	}
	for (unsigned int i = 0; i < users.count; i++) {
		memset(&change, 0, sizeof(change));
		lp_sync_user(ctx, users.names[i], teams, &person, person_name,
			     &person_ret, &change, text, result_r);
		if (cb != NULL && cb(&change, context) < 0) {
			result_r->partial = true;
			break;
		}
	}
	lp_name_set_free(&users);
	ret = 1;
out:
	for (unsigned int i = 0; i < ctx->config->domains_count; i++)
		lp_name_set_free(&teams[i].set);
	free(teams);
	result_r->finished = ctx->now();
	result_r->http_requests = ctx->http_requests - requests;
	close(lock_fd);
	return ret;
}

/* ---- sync/last ---- */

int lp_sync_last_put(struct lp_context *ctx,
		     const struct lp_sync_result *r, struct lp_error *err)
{
	json_t *obj;
	int ret;

	obj = json_pack("{s:I, s:I, s:b, s:i, s:i, s:i, s:i, s:i, s:i, s:i, "
			"s:i, s:i}",
			"started", (json_int_t)r->started,
			"finished", (json_int_t)r->finished,
			"partial", r->partial,
			"teams", (int)r->teams,
			"teams_failed", (int)r->teams_failed,
			"users", (int)r->users,
			"allowed", (int)r->allowed,
			"denied", (int)r->denied,
			"newly_allowed", (int)r->newly_allowed,
			"newly_denied", (int)r->newly_denied,
			"failed", (int)r->failed,
			"http_requests", (int)r->http_requests);
	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		return -1;
	}
	ret = lp_cache_put(ctx, LP_KEY_SYNC_LAST, "synclast", obj, err);
	json_decref(obj);
	return ret;
}

int lp_sync_last(struct lp_context *ctx, struct lp_sync_result *r)
{
	json_int_t started, finished;
	int partial;
	json_t *obj;
	int ret;

	memset(r, 0, sizeof(*r));
	if (lp_cache_get(ctx, LP_KEY_SYNC_LAST, "synclast", &obj) <= 0)
		return 0;
	ret = json_unpack(obj, "{s:I, s:I, s:b, s:i, s:i, s:i, s:i, s:i, "
			  "s:i, s:i, s:i, s:i}",
			  "started", &started, "finished", &finished,
			  "partial", &partial,
			  "teams", &r->teams, "teams_failed", &r->teams_failed,
			  "users", &r->users, "allowed", &r->allowed,
			  "denied", &r->denied,
			  "newly_allowed", &r->newly_allowed,
			  "newly_denied", &r->newly_denied,
			  "failed", &r->failed,
			  "http_requests", &r->http_requests);
	json_decref(obj);
	if (ret < 0) {
		memset(r, 0, sizeof(*r));
		return 0;
	}
	r->started = (time_t)started;
	r->finished = (time_t)finished;
	r->partial = partial != 0;
	return 1;
}

/* ---- notification markers ---- */

static bool lp_notify_key(const char *user, const char *event,
			  char key_r[LP_SYNC_KEY_MAX])
{
	int len = snprintf(key_r, LP_SYNC_KEY_MAX, LP_KEY_NOTIFY "%s/%s",
			   user, event == NULL ? "" : event);

	return len > 0 && len < (int)LP_SYNC_KEY_MAX;
}

int lp_notify_pending(struct lp_context *ctx, const char *user,
		      const char *event)
{
	char key[LP_SYNC_KEY_MAX];
	json_t *obj;
	json_int_t at;
	time_t now = ctx->now();
	int ret = 1;

	if (!lp_notify_key(user, event, key))
		return 0;
	if (lp_cache_get(ctx, key, "notify", &obj) <= 0)
		return 1;
	if (json_unpack(obj, "{s:I}", "at", &at) == 0 &&
	    at <= now && now - at < LP_NOTIFY_DEDUP_SECS)
		ret = 0;
	json_decref(obj);
	return ret;
}

int lp_notify_mark(struct lp_context *ctx, const char *user,
		   const char *event, struct lp_error *err)
{
	char key[LP_SYNC_KEY_MAX];
	json_t *obj;
	int ret;

	if (!lp_notify_key(user, event, key)) {
		lp_error_set(err, LP_ERR_INTERNAL, "user name too long");
		return -1;
	}
	obj = json_pack("{s:I}", "at", (json_int_t)ctx->now());
	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		return -1;
	}
	ret = lp_cache_put(ctx, key, "notify", obj, err);
	json_decref(obj);
	return ret;
}

int lp_notify_clear(struct lp_context *ctx, const char *user,
		    struct lp_error *err)
{
	char key[LP_SYNC_KEY_MAX];

	if (!lp_notify_key(user, NULL, key)) {
		lp_error_set(err, LP_ERR_INTERNAL, "user name too long");
		return -1;
	}
	return lp_cache_delete_prefix(ctx, key, err);
}

/* ---- events queued for the next sync's mail ---- */

#define LP_NOTIFYQ_KEY_MAX \
	(sizeof(LP_KEY_NOTIFYQ) + LP_USER_MAX + 1 + LP_NOTIFY_EVENT_MAX + 1)

static bool lp_notify_event_is_valid(const char *event)
{
	size_t len = strlen(event);

	if (len == 0 || len > LP_NOTIFY_EVENT_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if ((event[i] < 'a' || event[i] > 'z') && event[i] != '-')
			return false;
	}
	return true;
}

/* Builds the queue key of a canonical "name@domain" and a valid event
   word: neither can hold a '/', so the key splits back at its last one. */
static bool lp_notifyq_key(struct lp_context *ctx, const char *user,
			   const char *event,
			   char key_r[LP_NOTIFYQ_KEY_MAX], struct lp_error *err)
{
	char name[LP_NAME_MAX + 1];
	const struct lp_domain *domain;

	if (lp_login_parse(ctx->config, user, name, &domain) != LP_LOGIN_OK ||
	    strchr(user, '@') == NULL ||
	    strlen(user) != strlen(name) + 1 + strlen(domain->domain) ||
	    strncmp(user, name, strlen(name)) != 0 ||
	    strcmp(user + strlen(name) + 1, domain->domain) != 0) {
		lp_error_set(err, LP_ERR_INTERNAL,
			     "'%.64s' is not a canonical name@domain", user);
		return false;
	}
	if (!lp_notify_event_is_valid(event)) {
		lp_error_set(err, LP_ERR_INTERNAL, "bad event word '%.40s'",
			     event);
		return false;
	}
	snprintf(key_r, LP_NOTIFYQ_KEY_MAX, LP_KEY_NOTIFYQ "%s/%s",
		 user, event);
	return true;
}

/* ---- the web daemon's queued events: files in web_state_dir/notify ----

   The web daemon runs as the mail uid and must not write cache_path, so
   it leaves each event as a file "<event>.<user>" holding {"v":1,"at":N,
   "text":"..."}; the sync (root) reads them as hostile input: names that
   are not a valid event and canonical user, anything but a small regular
   file, or bad JSON are skipped, and it reads and removes them through a
   directory descriptor opened without following symlinks. */

#define LP_WEB_NOTIFY_DIR "notify"
#define LP_WEB_NOTIFY_FILE_MAX 4096
#define LP_WEB_NOTIFY_ENTRIES_MAX 10000

static bool lp_notify_spool_dir(struct lp_context *ctx, char *path_r,
				size_t size)
{
	int len = snprintf(path_r, size, "%s/" LP_WEB_NOTIFY_DIR,
			   ctx->config->web_state_dir);

	return len > 0 && (size_t)len < size;
}

static int lp_notify_spool_put(struct lp_context *ctx, const char *user,
			       const char *event, time_t at,
			       const char *text, struct lp_error *err)
{
	char dir[LP_URL_MAX], path[LP_URL_MAX + LP_NOTIFYQ_KEY_MAX];
	char tmp[sizeof(path) + 32];
	struct stat st;
	json_t *obj;
	char *data;
	int fd, ret = -1;

	if (!lp_notify_spool_dir(ctx, dir, sizeof(dir))) {
		lp_error_set(err, LP_ERR_INTERNAL, "web_state_dir too long");
		return -1;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		lp_error_set(err, LP_ERR_INTERNAL, "mkdir(%s) failed: %s",
			     dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s.%s", dir, event, user);
	snprintf(tmp, sizeof(tmp), "%s/.tmp.%ld", dir, (long)getpid());
	/* already queued: the first time is the one to report */
	if (lstat(path, &st) == 0)
		return 0;
	obj = json_pack("{s:i, s:I, s:s}", "v", LP_CACHE_VERSION,
			"at", (json_int_t)at, "text", text);
	data = obj == NULL ? NULL : json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (data == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		return -1;
	}
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "open(%s) failed: %s", tmp,
			     strerror(errno));
	} else if (write(fd, data, strlen(data)) != (ssize_t)strlen(data) ||
		   fsync(fd) < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "write(%s) failed: %s", tmp,
			     strerror(errno));
	} else if (close(fd) < 0 || (fd = -1, rename(tmp, path) < 0)) {
		lp_error_set(err, LP_ERR_INTERNAL, "rename(%s) failed: %s",
			     path, strerror(errno));
	} else {
		fd = -1;
		ret = 0;
	}
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		(void)unlink(tmp);
	free(data);
	return ret;
}

/* The spool directory, opened for a root process; -1 if there is none. */
static int lp_notify_spool_open(struct lp_context *ctx)
{
	char dir[LP_URL_MAX];
	int fd;

	if (ctx->web || !lp_notify_spool_dir(ctx, dir, sizeof(dir)))
		return -1;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT)
		lp_log(ctx, LP_LOG_WARNING, "open(%s) failed: %s", dir,
		       strerror(errno));
	return fd;
}

/* Splits "<event>.<user>" (events have no '.'); false unless both are
   valid and user is a canonical name@domain. */
static bool lp_notify_spool_name(struct lp_context *ctx, const char *name,
				 struct lp_notify_event *ev_r)
{
	char key[LP_NOTIFYQ_KEY_MAX];
	const char *dot = strchr(name, '.');

	memset(ev_r, 0, sizeof(*ev_r));
	if (dot == NULL || (size_t)(dot - name) > LP_NOTIFY_EVENT_MAX ||
	    strlen(dot + 1) > LP_USER_MAX)
		return false;
	memcpy(ev_r->event, name, (size_t)(dot - name));
	strcpy(ev_r->user, dot + 1);
	return lp_notifyq_key(ctx, ev_r->user, ev_r->event, key, NULL);
}

static bool lp_notify_spool_read(struct lp_context *ctx, int dir_fd,
				 const char *name,
				 struct lp_notify_event *ev_r)
{
	char buf[LP_WEB_NOTIFY_FILE_MAX + 1];
	const char *text;
	struct stat st;
	json_int_t v, at;
	json_t *obj;
	ssize_t len;
	bool ok;
	int fd;

	if (!lp_notify_spool_name(ctx, name, ev_r))
		return false;
	fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
		    O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > LP_WEB_NOTIFY_FILE_MAX ||
	    (len = read(fd, buf, sizeof(buf) - 1)) <= 0) {
		close(fd);
		return false;
	}
	close(fd);
	buf[len] = '\0';
	obj = json_loadb(buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
	ok = obj != NULL &&
		json_unpack(obj, "{s:I, s:I, s:s !}", "v", &v, "at", &at,
			    "text", &text) == 0 && v == LP_CACHE_VERSION;
	if (ok) {
		ev_r->at = (time_t)at;
		snprintf(ev_r->text, sizeof(ev_r->text), "%s", text);
		/* it lands in a mail body */
		for (char *p = ev_r->text; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		}
	}
	json_decref(obj);
	return ok;
}

/* Appends the spool's events to *events (count, alloc). */
static int lp_notify_spool_list(struct lp_context *ctx,
				struct lp_notify_event **events,
				unsigned int *count, unsigned int *alloc,
				struct lp_error *err)
{
	struct dirent *de;
	DIR *dir;
	int dir_fd, list_fd;
	unsigned int seen = 0;

	if ((dir_fd = lp_notify_spool_open(ctx)) < 0)
		return 0;
	if ((list_fd = dup(dir_fd)) < 0 ||
	    (dir = fdopendir(list_fd)) == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "opendir(%s/%s) failed: %s",
			     ctx->config->web_state_dir, LP_WEB_NOTIFY_DIR,
			     strerror(errno));
		if (list_fd >= 0)
			close(list_fd);
		close(dir_fd);
		return -1;
	}
	while ((de = readdir(dir)) != NULL &&
	       seen++ < LP_WEB_NOTIFY_ENTRIES_MAX) {
		if (de->d_name[0] == '.')
			continue;
		if (*count == *alloc) {
			unsigned int new_alloc = *alloc == 0 ? 16 : *alloc * 2;
			struct lp_notify_event *n =
				realloc(*events, new_alloc * sizeof(*n));

			if (n == NULL) {
				lp_error_set(err, LP_ERR_INTERNAL,
					     "out of memory");
				closedir(dir);
				close(dir_fd);
				return -1;
			}
			*events = n;
			*alloc = new_alloc;
		}
		if (lp_notify_spool_read(ctx, dir_fd, de->d_name,
					 &(*events)[*count]))
			(*count)++;
		else
			lp_log(ctx, LP_LOG_WARNING, "skipping unreadable "
			       "queued notification %s/%s/%.80s",
			       ctx->config->web_state_dir, LP_WEB_NOTIFY_DIR,
			       de->d_name);
	}
	closedir(dir);
	close(dir_fd);
	return 0;
}

/* Removes "<event>.<user>" from the spool: 1, 0 absent. */
static int lp_notify_spool_remove(struct lp_context *ctx, const char *user,
				  const char *event)
{
	char name[LP_NOTIFYQ_KEY_MAX];
	int dir_fd, ret;

	if ((dir_fd = lp_notify_spool_open(ctx)) < 0)
		return 0;
	snprintf(name, sizeof(name), "%s.%s", event, user);
	ret = unlinkat(dir_fd, name, 0) == 0 ? 1 : 0;
	close(dir_fd);
	return ret;
}

int lp_notify_queue(struct lp_context *ctx, const char *user,
		    const char *event, const char *text, time_t at,
		    struct lp_error *err)
{
	char key[LP_NOTIFYQ_KEY_MAX], clean[LP_TEXT_MAX];
	json_t *obj;
	int ret;

	if (!lp_notifyq_key(ctx, user, event, key, err))
		return -1;
	if (ctx->config->notify_to == NULL)
		return 0;
	/* The text lands in a mail body: no line of it may pose as another
	   event. */
	snprintf(clean, sizeof(clean), "%s", text == NULL ? "" : text);
	for (char *p = clean; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	if (ctx->web)
		return lp_notify_spool_put(ctx, user, event, at, clean, err);
	/* Already queued: the first time is the one to report.  No
	   chainlock: a racing second queuer only replaces the time. */
	if (lp_cache_get(ctx, key, "notifyq", &obj) > 0) {
		json_decref(obj);
		return 0;
	}
	obj = json_pack("{s:I, s:s}", "at", (json_int_t)at, "text", clean);
	if (obj == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		return -1;
	}
	ret = lp_cache_put(ctx, key, "notifyq", obj, err);
	json_decref(obj);
	return ret;
}

static int lp_notify_event_cmp(const void *a, const void *b)
{
	const struct lp_notify_event *ea = a, *eb = b;
	int ret;

	if (ea->at != eb->at)
		return ea->at < eb->at ? -1 : 1;
	if ((ret = strcmp(ea->user, eb->user)) != 0)
		return ret;
	return strcmp(ea->event, eb->event);
}

/* Reads one queue record; false if it is unreadable. */
static bool lp_notifyq_read(struct lp_context *ctx, const char *key_tail,
			    struct lp_notify_event *ev_r)
{
	char key[LP_NOTIFYQ_KEY_MAX];
	const char *slash = strrchr(key_tail, '/');
	const char *text;
	json_int_t at;
	json_t *obj;
	bool ok;

	memset(ev_r, 0, sizeof(*ev_r));
	if (slash == NULL || (size_t)(slash - key_tail) > LP_USER_MAX ||
	    strlen(slash + 1) > LP_NOTIFY_EVENT_MAX)
		return false;
	memcpy(ev_r->user, key_tail, slash - key_tail);
	strcpy(ev_r->event, slash + 1);
	/* what lp_notify_dequeue() could not remove must not be mailed */
	if (!lp_notifyq_key(ctx, ev_r->user, ev_r->event, key, NULL))
		return false;
	if (lp_cache_get(ctx, key, "notifyq", &obj) <= 0)
		return false;
	ok = json_unpack(obj, "{s:I, s:s}", "at", &at, "text", &text) == 0;
	if (ok) {
		ev_r->at = (time_t)at;
		snprintf(ev_r->text, sizeof(ev_r->text), "%s", text);
	}
	json_decref(obj);
	return ok;
}

int lp_notify_queue_list(struct lp_context *ctx,
			 int (*cb)(const struct lp_notify_event *event,
				   void *context),
			 void *context, struct lp_error *err)
{
	struct lp_name_set keys;
	struct lp_notify_event *events = NULL;
	char key[LP_NOTIFYQ_KEY_MAX];
	unsigned int count = 0, alloc;

	if (lp_cache_keys(ctx, LP_KEY_NOTIFYQ, &keys, err) < 0)
		return -1;
	alloc = keys.count;
	if (alloc > 0 && (events = calloc(alloc, sizeof(*events))) == NULL) {
		lp_name_set_free(&keys);
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		return -1;
	}
	for (unsigned int i = 0; i < keys.count; i++) {
		if (lp_notifyq_read(ctx, keys.names[i], &events[count])) {
			count++;
			continue;
		}
		/* A record nobody can read would wait forever. */
		snprintf(key, sizeof(key), LP_KEY_NOTIFYQ "%.*s",
			 (int)(sizeof(key) - sizeof(LP_KEY_NOTIFYQ)),
			 keys.names[i]);
		lp_log(ctx, LP_LOG_WARNING, "dropping unreadable queued "
		       "notification %s", key);
		(void)lp_cache_delete(ctx, key, NULL);
	}
	lp_name_set_free(&keys);
	if (lp_notify_spool_list(ctx, &events, &count, &alloc, err) < 0) {
		free(events);
		return -1;
	}
	if (count > 0)
		qsort(events, count, sizeof(*events), lp_notify_event_cmp);
	for (unsigned int i = 0; i < count; i++) {
		if (cb(&events[i], context) < 0)
			break;
	}
	free(events);
	return 0;
}

int lp_notify_dequeue(struct lp_context *ctx, const char *user,
		      const char *event, struct lp_error *err)
{
	char key[LP_NOTIFYQ_KEY_MAX];
	int ret;

	if (!lp_notifyq_key(ctx, user, event, key, err))
		return -1;
	if ((ret = lp_cache_delete(ctx, key, err)) < 0)
		return -1;
	return lp_notify_spool_remove(ctx, user, event) > 0 ? 1 : ret;
}

int lp_notify_lock(struct lp_context *ctx, int *fd_r, struct lp_error *err)
{
	*fd_r = -1;
	return lp_sync_flock(ctx, LP_NOTIFY_LOCK_SUFFIX, true, fd_r,
			     err) < 0 ? -1 : 0;
}

void lp_notify_unlock(int *fd)
{
	if (*fd != -1) {
		/* closing the only descriptor releases the flock */
		close(*fd);
		*fd = -1;
	}
}

/* ---- status ---- */

int lp_ping(struct lp_context *ctx, long *status_r, unsigned int *msecs_r,
	    struct lp_error *err)
{
	struct lp_http_response resp;
	char url[LP_URL_MAX];
	uint64_t start = lp_monotonic_msecs();
	int ret;

	*status_r = 0;
	snprintf(url, sizeof(url), "%s/~%s", ctx->config->api_url,
		 ctx->config->domains[0].team);
	/* one request and its retries, bounded like a login's */
	lp_deadline_set(ctx, LP_LOOKUP_DEADLINE_MSECS);
	ret = lp_http_get(ctx, url, NULL, &resp, err);
	lp_deadline_set(ctx, 0);
	*msecs_r = (unsigned int)(lp_monotonic_msecs() - start);
	if (ret < 0)
		return -1;
	*status_r = resp.status;
	lp_http_response_free(&resp);
	return 0;
}
