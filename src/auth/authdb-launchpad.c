/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "auth-common.h"
#include "passdb.h"
#include "userdb.h"

#include <curl/curl.h>
#include <sodium.h>

/* libauthdb_launchpad.so: auth loads it on demand for `driver = launchpad`
   in a passdb or userdb block (passdb_preinit/userdb_preinit). */

extern struct passdb_module_interface passdb_launchpad;
extern struct userdb_module_interface userdb_launchpad;

const char *authdb_launchpad_version = DOVECOT_ABI_VERSION;

void authdb_launchpad_init(void);
void authdb_launchpad_deinit(void);

void authdb_launchpad_init(void)
{
	/* Both are process-wide and not thread-safe: do them once, here,
	   before any lookup (auth is single-threaded). */
	if (sodium_init() < 0)
		i_fatal("launchpad: sodium_init() failed");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		i_fatal("launchpad: curl_global_init() failed");
	passdb_register_module(&passdb_launchpad);
	userdb_register_module(&userdb_launchpad);
}

void authdb_launchpad_deinit(void)
{
	passdb_unregister_module(&passdb_launchpad);
	userdb_unregister_module(&userdb_launchpad);
	curl_global_cleanup();
}
