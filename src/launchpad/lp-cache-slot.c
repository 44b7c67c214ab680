/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* "Last used" stamps of app password slots: written by root auth-workers
   at login (a TDB write, never a keyfile write), read by the web page. */

#include "launchpad-private.h"

#include <stdio.h>
#include <string.h>

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
	    lp_cache_get_trusted(ctx, key, LP_KIND_SLOTUSED, &obj) <= 0)
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
	return lp_cache_put_new(ctx, key, LP_KIND_SLOTUSED,
				json_pack("{s:I}", "at", (json_int_t)now),
				err) < 0 ? -1 : 1;
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
		return lp_cache_delete_prefix(ctx, key, err);
	return lp_cache_delete(ctx, key, err);
}

