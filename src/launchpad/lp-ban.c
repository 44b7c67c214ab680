/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Bans: per Launchpad name (all domains), decision row 3.  Root's
   (doveadm) in cache_path; the web daemon reads them from there. */

#include "launchpad-private.h"

#include <stdio.h>
#include <string.h>

int lp_ban_get(struct lp_context *ctx, const char *name,
	       char reason_r[LP_TEXT_MAX])
{
	char key[LP_KEY_MAX];
	struct tdb_context *tdb;
	json_t *obj;

	reason_r[0] = '\0';
	snprintf(key, sizeof(key), LP_KEY_BAN "%s", name);
	/* A ban that exists but cannot be read still bans. */
	if ((tdb = lp_cache_trusted(ctx)) == NULL ||
	    !lp_cache_exists(tdb, key))
		return 0;
	if (lp_cache_get_tdb(ctx, tdb, key, LP_KIND_BAN, &obj) <= 0 ||
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

/* The ban key of user ("name" or "name@domain", any case). */
static bool lp_ban_key(const char *user, char key_r[LP_KEY_MAX],
		       char name_r[LP_NAME_MAX + 1], struct lp_error *err)
{
	if (!lp_name_of_user(user, name_r)) {
		lp_error_set(err, LP_ERR_NOT_FOUND,
			     "'%.64s' is not a Launchpad name", user);
		return false;
	}
	snprintf(key_r, LP_KEY_MAX, LP_KEY_BAN "%s", name_r);
	return true;
}

int lp_ban_set(struct lp_context *ctx, const char *name, const char *reason,
	       struct lp_error *err)
{
	char lname[LP_NAME_MAX + 1], key[LP_KEY_MAX];
	json_t *obj;

	if (!lp_ban_key(name, key, lname, err))
		return -1;
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
	return lp_cache_put_new(ctx, key, LP_KIND_BAN, obj, err);
}

int lp_ban_clear(struct lp_context *ctx, const char *name,
		 struct lp_error *err)
{
	char lname[LP_NAME_MAX + 1], key[LP_KEY_MAX];

	if (!lp_ban_key(name, key, lname, err))
		return -1;
	return lp_cache_delete(ctx, key, err);
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
		(void)lp_ban_get(ctx, ban.name, ban.reason);
		snprintf(key, sizeof(key), LP_KEY_BAN "%s", ban.name);
		if (lp_cache_get(ctx, key, LP_KIND_BAN, &obj) > 0) {
			(void)lp_json_time(obj, "set_at", &ban.set_at);
			json_decref(obj);
		}
		if (cb(&ban, context) < 0)
			break;
	}
	lp_name_set_free(&names);
	return 0;
}
