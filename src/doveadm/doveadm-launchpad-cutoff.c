/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* After a revoke, reset, ban or deprovisioning: Dovecot's auth cache
   flushed and the user's live sessions ended, or said loudly what still
   works and until when. */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "doveadm.h"
#include "doveadm-settings.h"
#include "doveadm-util.h"
#include "settings-parser.h"
#include "doveadm-launchpad.h"

#include <sysexits.h>

/* Two of auth's settings, read with doveadm's own (module "auth"), so a
   failed cache flush can say until when the old answer lives on. */
struct doveadm_launchpad_auth_settings {
	uoff_t auth_cache_size;
	unsigned int auth_cache_ttl;
};

static const struct setting_define doveadm_launchpad_auth_setting_defines[] = {
	SETTING_DEFINE_STRUCT_SIZE("auth_cache_size", auth_cache_size,
				   struct doveadm_launchpad_auth_settings),
	SETTING_DEFINE_STRUCT_TIME("auth_cache_ttl", auth_cache_ttl,
				   struct doveadm_launchpad_auth_settings),
	SETTING_DEFINE_LIST_END
};

/* Dovecot's own defaults (src/auth/auth-settings.c). */
static const struct doveadm_launchpad_auth_settings
doveadm_launchpad_auth_default_settings = {
	.auth_cache_size = 0,
	.auth_cache_ttl = 60 * 60,
};

static const struct setting_parser_info
doveadm_launchpad_auth_setting_parser_info = {
	.module_name = "auth",
	.defines = doveadm_launchpad_auth_setting_defines,
	.defaults = &doveadm_launchpad_auth_default_settings,
	.type_offset = SIZE_MAX,
	.struct_size = sizeof(struct doveadm_launchpad_auth_settings),
	.parent_offset = SIZE_MAX,
};

int doveadm_launchpad_flush_auth_cache(struct doveadm_launchpad *lp,
				       const char *name)
{
	const char *socket_path;
	struct lp_error err;
	int count;

	/* not auth_master_cache_flush(): in 2.3.19 it reports success when
	   it cannot connect, and a revoke must know */
	socket_path = t_strconcat(doveadm_settings->base_dir,
				  "/auth-master", NULL);
	count = lp_auth_cache_flush(lp->config, socket_path, name, &err);
	if (count < 0) {
		i_error("launchpad: flushing Dovecot's auth cache failed: %s",
			err.text);
	}
	return count;
}

/* Until when a password that auth had cached before the flush failed may
   still log in: auth_cache_ttl from now.  NULL when the cache is off. */
static const char *doveadm_launchpad_cache_until(void)
{
	const struct doveadm_launchpad_auth_settings *set =
		doveadm_setting_roots_get_settings(
			&doveadm_launchpad_auth_setting_parser_info);

	if (set->auth_cache_size == 0)
		return NULL;
	return t_strdup_printf("%s (auth_cache_ttl = %u s)",
			       doveadm_launchpad_time(ioloop_time +
						      set->auth_cache_ttl),
			       set->auth_cache_ttl);
}

void doveadm_launchpad_cut_off(struct doveadm_launchpad *lp, const char *name,
			       const char *user, const char *what, bool kick,
			       struct doveadm_launchpad_cutoff *result_r)
{
	ARRAY_TYPE(const_string) users;
	struct lp_kick_result kick_result;
	struct lp_error err;
	const char *until, *anvil_path;

	i_zero(result_r);
	result_r->flushed = doveadm_launchpad_flush_auth_cache(lp, name);
	if (result_r->flushed < 0) {
		until = doveadm_launchpad_cache_until();
		if (until == NULL) {
			/* auth_cache_size = 0: nothing was cached */
			i_warning("launchpad: %s: Dovecot's auth cache is off "
				  "(auth_cache_size = 0), so the failed flush "
				  "leaves nothing behind", what);
		} else {
			i_error("launchpad: %s: the change is made, but "
				"Dovecot's auth cache could not be flushed: "
				"a password it cached may still log in until "
				"%s, or until `doveadm auth cache flush %s` "
				"succeeds", what, until, name);
			result_r->failed = TRUE;
		}
	}
	if (!kick) {
		result_r->kicked = 0;
	} else {
		t_array_init(&users, lp->config->domains_count + 2);
		if (user != NULL) {
			array_push_back(&users, &user);
		} else {
			for (unsigned int i = 0; i < lp->config->domains_count;
			     i++) {
				const char *u = t_strconcat(name, "@",
					lp->config->domains[i].domain, NULL);
				array_push_back(&users, &u);
			}
		}
		array_append_zero(&users);
		anvil_path = t_strconcat(doveadm_settings->base_dir, "/anvil",
					 NULL);
		if (lp_kick_users(anvil_path, array_front(&users),
				  &kick_result, &err) < 0) {
			i_error("launchpad: %s: the change is made, but live "
				"IMAP/POP3 sessions could not be ended (%s): "
				"sessions already logged in keep working until "
				"they log out; try `doveadm kick %s`", what,
				err.text, user != NULL ? user : name);
			result_r->kicked = -1;
			result_r->failed = TRUE;
		} else {
			result_r->kicked = (int)kick_result.sessions;
			if (kick_result.shared > 0 || kick_result.failed > 0) {
				i_error("launchpad: %s: %u processes also "
					"serving other users were not ended "
					"and %u could not be signalled: those "
					"sessions keep working until they log "
					"out", what, kick_result.shared,
					kick_result.failed);
				result_r->failed = TRUE;
			}
		}
	}
	if (result_r->failed)
		doveadm_exit_code = EX_TEMPFAIL;
}

void doveadm_launchpad_cutoff_init(void)
{
	/* before doveadm reads its settings, like the submission root */
	doveadm_setting_roots_add(&doveadm_launchpad_auth_setting_parser_info);
}
