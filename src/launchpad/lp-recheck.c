/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* "Check again" reaching root's cache.

   The web daemon's refresh (its "Check again") asks Launchpad and stores
   the answer in web.tdb; it may not write cache_path, where auth keeps a
   denial for negative_ttl.  So a person who fixed the reason and was let
   in by the page would still be refused by IMAP until that denial
   expired.  The web daemon leaves a mark instead: an empty file
   web_state_dir/recheck/<name>, its mtime the time of the request.  A
   root lookup (auth-worker, doveadm) that finds a mark it has not
   honoured yet asks Launchpad again, ignoring the TTLs, as `doveadm
   launchpad refresh` does, and records the mark's time in cache_path
   (recheck/<name>) as honoured: one fresh lookup per press.

   The mark is input from a less trusted uid, so it can only ever cost a
   Launchpad request: it turns a cached answer into a fresh lookup, never
   grants anything, and is read with lstat() of a name that passed the
   Launchpad name rules (no path, no symlink followed). */

#include "launchpad-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>

static bool lp_recheck_path(const struct lp_config *config, const char *name,
			    char *path_r, size_t size, bool dir_only)
{
	int len;

	if (!lp_name_is_valid(name))
		return false;
	len = dir_only ?
		snprintf(path_r, size, "%s/" LP_WEB_RECHECK_DIR,
			 config->web_state_dir) :
		snprintf(path_r, size, "%s/" LP_WEB_RECHECK_DIR "/%s",
			 config->web_state_dir, name);
	return len > 0 && (size_t)len < size;
}

int lp_recheck_request(const struct lp_config *config, const char *name,
		       struct lp_error *err)
{
	char dir[LP_URL_MAX], path[LP_URL_MAX];
	int fd;

	if (!lp_recheck_path(config, name, dir, sizeof(dir), true) ||
	    !lp_recheck_path(config, name, path, sizeof(path), false)) {
		lp_error_set(err, LP_ERR_INTERNAL, "recheck mark for an invalid "
			     "name, or web_state_dir too long");
		return -1;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		lp_error_set(err, LP_ERR_INTERNAL, "mkdir(%s) failed: %s",
			     dir, strerror(errno));
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "open(%s) failed: %s",
			     path, strerror(errno));
		return -1;
	}
	/* an existing mark is moved to now */
	if (futimens(fd, NULL) < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "futimens(%s) failed: %s",
			     path, strerror(errno));
		(void)close(fd);
		return -1;
	}
	if (close(fd) < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "close(%s) failed: %s",
			     path, strerror(errno));
		return -1;
	}
	return 0;
}

bool lp_recheck_take(struct lp_context *ctx, const char *name)
{
	char path[LP_URL_MAX], key[LP_KEY_MAX];
	struct lp_error err;
	struct stat st;
	json_t *obj;
	json_int_t honoured = -1;

	if (ctx->web ||
	    !lp_recheck_path(ctx->config, name, path, sizeof(path), false) ||
	    lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return false;
	snprintf(key, sizeof(key), LP_KEY_RECHECK "%s", name);
	if (lp_cache_get(ctx, key, LP_KIND_RECHECK, &obj) > 0) {
		honoured = json_integer_value(json_object_get(obj, "mark"));
		json_decref(obj);
	}
	/* any other time than the one honoured: the mark was moved */
	if (honoured == (json_int_t)st.st_mtime)
		return false;
	if (lp_cache_put_new(ctx, key, LP_KIND_RECHECK,
			     json_pack("{s:I}", "mark",
				       (json_int_t)st.st_mtime), &err) < 0) {
		/* asked again at every lookup until it can be stored:
		   Launchpad's load, not a wrong answer */
		lp_log(ctx, LP_LOG_WARNING, "recheck/%s not stored: %s", name,
		       err.text);
	}
	return true;
}
