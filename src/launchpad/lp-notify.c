/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Admin notifications: which (user, event) was already mailed (markers,
   de-duplicated for LP_NOTIFY_DEDUP_SECS), and the events that wait for
   the next sync's digest mail (the queue: records in cache_path for root
   processes, files in web_state_dir/notify for the web daemon). */

#include "launchpad-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LP_NOTIFY_LOCK_SUFFIX ".notify"
#define LP_NOTIFY_KEY_MAX (sizeof(LP_KEY_NOTIFY) + LP_USER_MAX + 64)

/* ---- markers: mailed already ---- */

static bool lp_notify_key(const char *user, const char *event,
			  char key_r[LP_NOTIFY_KEY_MAX])
{
	int len = snprintf(key_r, LP_NOTIFY_KEY_MAX, LP_KEY_NOTIFY "%s/%s",
			   user, event == NULL ? "" : event);

	return len > 0 && len < (int)LP_NOTIFY_KEY_MAX;
}

int lp_notify_pending(struct lp_context *ctx, const char *user,
		      const char *event)
{
	char key[LP_NOTIFY_KEY_MAX];
	json_t *obj;
	json_int_t at;
	time_t now = ctx->now();
	int ret = 1;

	if (!lp_notify_key(user, event, key))
		return 0;
	if (lp_cache_get(ctx, key, LP_KIND_NOTIFY, &obj) <= 0)
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
	char key[LP_NOTIFY_KEY_MAX];

	if (!lp_notify_key(user, event, key)) {
		lp_error_set(err, LP_ERR_INTERNAL, "user name too long");
		return -1;
	}
	return lp_cache_put_new(ctx, key, LP_KIND_NOTIFY,
				json_pack("{s:I}", "at",
					  (json_int_t)ctx->now()), err);
}

int lp_notify_clear(struct lp_context *ctx, const char *user,
		    struct lp_error *err)
{
	char key[LP_NOTIFY_KEY_MAX];

	if (!lp_notify_key(user, NULL, key)) {
		lp_error_set(err, LP_ERR_INTERNAL, "user name too long");
		return -1;
	}
	return lp_cache_delete_prefix(ctx, key, err);
}

/* ---- events queued for the next sync's mail ---- */

/* The text lands in a mail body: no line of it may pose as another
   event, so control bytes become '?'. */
static void lp_notify_text_copy(char dest[LP_TEXT_MAX], const char *text)
{
	snprintf(dest, LP_TEXT_MAX, "%s", text);
	for (char *p = dest; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
}

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
	if (!lp_login_is_canonical(ctx->config, user)) {
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
		lp_notify_text_copy(ev_r->text, text);
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

	if (!lp_notifyq_key(ctx, user, event, key, err))
		return -1;
	if (ctx->config->notify_to == NULL)
		return 0;
	lp_notify_text_copy(clean, text == NULL ? "" : text);
	if (ctx->web)
		return lp_notify_spool_put(ctx, user, event, at, clean, err);
	/* Already queued: the first time is the one to report.  No
	   chainlock: a racing second queuer only replaces the time. */
	if (lp_cache_get(ctx, key, LP_KIND_NOTIFYQ, &obj) > 0) {
		json_decref(obj);
		return 0;
	}
	return lp_cache_put_new(ctx, key, LP_KIND_NOTIFYQ,
				json_pack("{s:I, s:s}", "at", (json_int_t)at,
					  "text", clean), err);
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
	if (lp_cache_get(ctx, key, LP_KIND_NOTIFYQ, &obj) <= 0)
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
	return lp_cache_flock(ctx, LP_NOTIFY_LOCK_SUFFIX, true, fd_r,
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
