/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* lib10_doveadm_launchpad_plugin: registers the commands; each group is
   a doveadm-launchpad-<group>.c, what they share is in -context.c and
   -cutoff.c. */

#include "lib.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "module-dir.h"
#include "doveadm-launchpad.h"

const char *doveadm_launchpad_plugin_version = DOVECOT_ABI_VERSION;

void doveadm_launchpad_plugin_init(struct module *module);
void doveadm_launchpad_plugin_deinit(void);

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
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_backend_assign);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_backend_show);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_backend_list);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_forward_set);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_forward_show);
	doveadm_cmd_register_ver2(&doveadm_cmd_launchpad_forward_clear);
	doveadm_launchpad_sync_init();
	doveadm_launchpad_cutoff_init();
}

void doveadm_launchpad_plugin_deinit(void)
{
	lp_global_deinit();
}
