/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-settings.h"
#include "doveadm-util.h"
#include "module-dir.h"
#include "settings-parser.h"
#include "time-util.h"
#include "doveadm-launchpad.h"

#include <sodium.h>
#include <sysexits.h>

const char *doveadm_launchpad_plugin_version = DOVECOT_ABI_VERSION;

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

void doveadm_launchpad_plugin_init(struct module *module);
void doveadm_launchpad_plugin_deinit(void);

static void doveadm_launchpad_log(void *context ATTR_UNUSED,
				  enum lp_log_level level, const char *msg)
{
	switch (level) {
	case LP_LOG_DEBUG:
		i_debug("launchpad: %s", msg);
		break;
	case LP_LOG_INFO:
		i_info("launchpad: %s", msg);
		break;
	case LP_LOG_WARNING:
		i_warning("launchpad: %s", msg);
		break;
	case LP_LOG_ERROR:
		i_error("launchpad: %s", msg);
		break;
	}
}

/* This plugin is loaded by every doveadm command (pw, who, mailbox, ...),
   so loading it sets up nothing: libsodium is initialised here, when a
   launchpad command first needs it.  Dovecot's password_schemes_init()
   (doveadm pw) fails unless its sodium_init() is the process's first. */
static int doveadm_launchpad_sodium_init(void)
{
	if (sodium_init() < 0) {
		i_error("launchpad: sodium_init() failed");
		doveadm_exit_code = EX_SOFTWARE;
		return -1;
	}
	return 0;
}

int doveadm_launchpad_open(struct doveadm_launchpad **lp_r)
{
	static const struct lp_log log = {
		.fn = doveadm_launchpad_log,
	};
	struct doveadm_launchpad *lp;
	struct lp_error err;
	const char *path;

	if (doveadm_launchpad_sodium_init() < 0)
		return -1;

	path = doveadm_plugin_getenv("launchpad_config");
	if (path == NULL || *path == '\0')
		path = DOVEADM_LAUNCHPAD_DEFAULT_CONFIG;

	lp = i_new(struct doveadm_launchpad, 1);
	if (lp_config_load(path, &lp->config, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_CONFIG;
		i_free(lp);
		return -1;
	}
	/* resolved once, by lp_config_load() */
	if (lp_config_mail_ids(lp->config, &lp->uid, &lp->gid, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_CONFIG;
		doveadm_launchpad_close(&lp);
		return -1;
	}
	if (lp_context_create(lp->config, &log, &lp->ctx, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_TEMPFAIL;
		doveadm_launchpad_close(&lp);
		return -1;
	}
	*lp_r = lp;
	return 0;
}

void doveadm_launchpad_close(struct doveadm_launchpad **_lp)
{
	struct doveadm_launchpad *lp = *_lp;

	if (lp == NULL)
		return;
	*_lp = NULL;
	if (lp->ctx != NULL)
		lp_context_destroy(&lp->ctx);
	if (lp->config != NULL)
		lp_config_free(&lp->config);
	i_free(lp);
}

int doveadm_launchpad_require_entitled(struct doveadm_launchpad *lp,
				       const char *user,
				       struct lp_entitlement *ent_r)
{
	lp_entitlement_check(lp->ctx, t_str_lcase(user), ent_r);
	switch (ent_r->verdict.kind) {
	case LP_VERDICT_ALLOW:
		if (ent_r->verdict.stale) {
			i_warning("launchpad: Launchpad unreachable; using the "
				  "cached allow for %s", ent_r->user);
		}
		return 0;
	case LP_VERDICT_DENY:
		i_error("launchpad: %s: %s", user, ent_r->verdict.text);
		doveadm_exit_code = ent_r->login == LP_LOGIN_OK &&
			ent_r->verdict.reason != LP_DENY_NO_PERSON ?
			EX_NOPERM : EX_NOUSER;
		return -1;
	case LP_VERDICT_TEMPFAIL:
		i_error("launchpad: %s: %s", user, ent_r->verdict.text);
		doveadm_exit_code = EX_TEMPFAIL;
		return -1;
	}
	i_unreached();
}

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

int doveadm_launchpad_user_home(struct doveadm_launchpad *lp,
				const char *user, const char **user_r,
				const char **name_r, const char **home_r)
{
	const struct lp_domain *domain;
	char name[LP_NAME_MAX + 1];
	char home[PATH_MAX];

	if (lp_login_parse(lp->config, user, name, &domain) != LP_LOGIN_OK) {
		i_error("launchpad: %s: not a Launchpad name of a configured "
			"domain", user);
		doveadm_exit_code = EX_NOUSER;
		return -1;
	}
	if (lp_config_expand_home(lp->config, name, domain->domain, home,
				  sizeof(home)) < 0) {
		i_error("launchpad: %s: home path too long", user);
		doveadm_exit_code = EX_CONFIG;
		return -1;
	}
	*user_r = t_strconcat(name, "@", domain->domain, NULL);
	*name_r = t_strdup(name);
	*home_r = t_strdup(home);
	return 0;
}

const char *doveadm_launchpad_time(time_t t)
{
	return t == 0 ? "" : t_strflocaltime("%Y-%m-%d %H:%M:%S", t);
}

/* Registers the commands and nothing else (see
   doveadm_launchpad_sodium_init(); libcurl is set up by the first
   lp_context_create()). */
void doveadm_launchpad_plugin_init(struct module *module ATTR_UNUSED)
{
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_cache_show);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_cache_invalidate);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_password_generate);
	/* doveadm takes the first registered command whose words match:
	   "ban list" must come before "ban <user>", or it bans "list". */
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_ban_list);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_ban);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_unban);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_cache_list);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_password_list);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_password_revoke);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_password_reset);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_refresh);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_sync);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_status);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_backup);
	doveadm_launchpad_sync_init();
	/* before doveadm reads its settings, like the submission root */
	doveadm_setting_roots_add(&doveadm_launchpad_auth_setting_parser_info);
}

void doveadm_launchpad_plugin_deinit(void)
{
	lp_global_deinit();
}
