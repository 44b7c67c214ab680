/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* What every `doveadm launchpad` command opens and the helpers they
   share: the config, the context, the user's home, times. */

#include "lib.h"
#include "doveadm.h"
#include "doveadm-settings.h"
#include "doveadm-util.h"
#include "time-util.h"
#include "doveadm-launchpad.h"

#include <sodium.h>
#include <sysexits.h>

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
