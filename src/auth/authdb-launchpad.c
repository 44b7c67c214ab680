/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "auth-common.h"
#include "passdb.h"
#include "userdb.h"

#include "launchpad.h"

/* libauthdb_launchpad.so: auth loads it on demand for `driver = launchpad`
   in a passdb or userdb block (passdb_preinit/userdb_preinit); `doveadm pw`
   tries to dlopen() every module of the auth directory too.  Loading it only
   registers the drivers: nothing process-wide is set up here.  libsodium
   is initialised by libkeyring at its first use (Dovecot's own
   password_schemes_init() insists on being the first sodium_init() of a
   process), libcurl by the first Launchpad lookup (db_launchpad_context()). */

extern struct passdb_module_interface passdb_launchpad;
extern struct userdb_module_interface userdb_launchpad;

const char *authdb_launchpad_version = DOVECOT_ABI_VERSION;

void authdb_launchpad_init(void);
void authdb_launchpad_deinit(void);

void authdb_launchpad_init(void)
{
	passdb_register_module(&passdb_launchpad);
	userdb_register_module(&userdb_launchpad);
}

void authdb_launchpad_deinit(void)
{
	passdb_unregister_module(&passdb_launchpad);
	userdb_unregister_module(&userdb_launchpad);
	lp_global_deinit();
}
