/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Per-user sending counters (messages per hour) for the submission
   plugin, in a TDB of their own: the submission processes run as the mail
   uid, which never writes cache_path (see lp_context_create()).  One
   fixed-size record per Launchpad name, sixty one-minute buckets, updated
   under the record's chainlock so concurrent sessions of one user count
   every message. */

#include "launchpad-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LP_SENDLIMIT_HASH_SIZE 1031
#define LP_SENDLIMIT_MODE 0600
#define LP_SENDLIMIT_KEY_PREFIX "send/"

struct lp_sendlimit {
	struct tdb_context *tdb;
	char *path;
};

static int64_t lp_send_minute(time_t now)
{
	return (int64_t)(now < 0 ? 0 : now) / 60;
}

unsigned int lp_send_window_count(const struct lp_send_window *window,
				  time_t now)
{
	int64_t now_minute = lp_send_minute(now), first, last, m;
	unsigned int total = 0;

	/* minutes of the hour up to now that the record still holds */
	first = now_minute - (LP_SEND_WINDOW_MINUTES - 1);
	if (first < window->minute - (LP_SEND_WINDOW_MINUTES - 1))
		first = window->minute - (LP_SEND_WINDOW_MINUTES - 1);
	if (first < 0)
		first = 0;
	last = now_minute < window->minute ? now_minute : window->minute;
	for (m = first; m <= last; m++)
		total += window->counts[m % LP_SEND_WINDOW_MINUTES];
	return total;
}

void lp_send_window_add(struct lp_send_window *window, time_t now)
{
	int64_t now_minute = lp_send_minute(now), m;

	if (now_minute > window->minute) {
		if (now_minute - window->minute >= LP_SEND_WINDOW_MINUTES) {
			memset(window->counts, 0, sizeof(window->counts));
		} else {
			for (m = window->minute + 1; m <= now_minute; m++)
				window->counts[m % LP_SEND_WINDOW_MINUTES] = 0;
		}
		window->minute = now_minute;
	}
	if (window->counts[window->minute % LP_SEND_WINDOW_MINUTES] < UINT32_MAX)
		window->counts[window->minute % LP_SEND_WINDOW_MINUTES]++;
}

int lp_sendlimit_open(const char *path, struct lp_sendlimit **sl_r,
		      struct lp_error *err)
{
	struct lp_sendlimit *sl;

	sl = calloc(1, sizeof(*sl));
	if (sl == NULL || (sl->path = strdup(path)) == NULL) {
		free(sl);
		lp_error_set(err, LP_ERR_INTERNAL, "out of memory");
		return -1;
	}
	errno = 0;
	sl->tdb = tdb_open(path, LP_SENDLIMIT_HASH_SIZE, TDB_DEFAULT,
			   O_RDWR | O_CREAT, LP_SENDLIMIT_MODE);
	if (sl->tdb == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "tdb_open(%s) failed: %s",
			     path, errno != 0 ? strerror(errno) : "corrupt");
		free(sl->path);
		free(sl);
		return -1;
	}
	*sl_r = sl;
	return 0;
}

void lp_sendlimit_close(struct lp_sendlimit **_sl)
{
	struct lp_sendlimit *sl = *_sl;

	if (sl == NULL)
		return;
	*_sl = NULL;
	tdb_close(sl->tdb);
	free(sl->path);
	free(sl);
}

static int lp_sendlimit_key(const char *name, char buf[], size_t size,
			    TDB_DATA *key_r, struct lp_error *err)
{
	if (!lp_name_is_valid(name)) {
		lp_error_set(err, LP_ERR_INTERNAL,
			     "not a Launchpad name: '%.64s'", name);
		return -1;
	}
	snprintf(buf, size, LP_SENDLIMIT_KEY_PREFIX "%s", name);
	key_r->dptr = (unsigned char *)buf;
	key_r->dsize = strlen(buf);
	return 0;
}

/* The stored window, or an empty one for a missing, short or foreign
   record (rewritten at the next take). */
static void lp_sendlimit_read(struct lp_sendlimit *sl, TDB_DATA key,
			      struct lp_send_window *window_r)
{
	TDB_DATA data = tdb_fetch(sl->tdb, key);

	memset(window_r, 0, sizeof(*window_r));
	if (data.dptr != NULL && data.dsize == sizeof(*window_r))
		memcpy(window_r, data.dptr, sizeof(*window_r));
	free(data.dptr);
	if (window_r->version != LP_SEND_WINDOW_VERSION) {
		memset(window_r, 0, sizeof(*window_r));
		window_r->version = LP_SEND_WINDOW_VERSION;
	}
}

int lp_sendlimit_count(struct lp_sendlimit *sl, const char *name,
		       time_t now, unsigned int *count_r,
		       struct lp_error *err)
{
	char keybuf[sizeof(LP_SENDLIMIT_KEY_PREFIX) + LP_NAME_MAX];
	struct lp_send_window window;
	TDB_DATA key;

	if (lp_sendlimit_key(name, keybuf, sizeof(keybuf), &key, err) < 0)
		return -1;
	lp_sendlimit_read(sl, key, &window);
	*count_r = lp_send_window_count(&window, now);
	return 0;
}

int lp_sendlimit_take(struct lp_sendlimit *sl, const char *name,
		      unsigned int limit, time_t now, struct lp_error *err)
{
	char keybuf[sizeof(LP_SENDLIMIT_KEY_PREFIX) + LP_NAME_MAX];
	struct lp_send_window window;
	TDB_DATA key, data;
	int ret;

	if (lp_sendlimit_key(name, keybuf, sizeof(keybuf), &key, err) < 0)
		return -1;
	if (tdb_chainlock(sl->tdb, key) != 0) {
		lp_error_set(err, LP_ERR_INTERNAL,
			     "tdb_chainlock(%s, %s) failed: %s", sl->path,
			     keybuf, tdb_errorstr(sl->tdb));
		return -1;
	}
	lp_sendlimit_read(sl, key, &window);
	if (limit != 0 && lp_send_window_count(&window, now) >= limit) {
		ret = 0;
	} else {
		lp_send_window_add(&window, now);
		data.dptr = (unsigned char *)&window;
		data.dsize = sizeof(window);
		if (tdb_store(sl->tdb, key, data, TDB_REPLACE) != 0) {
			lp_error_set(err, LP_ERR_INTERNAL,
				     "tdb_store(%s, %s) failed: %s", sl->path,
				     keybuf, tdb_errorstr(sl->tdb));
			ret = -1;
		} else {
			ret = 1;
		}
	}
	tdb_chainunlock(sl->tdb, key);
	return ret;
}
