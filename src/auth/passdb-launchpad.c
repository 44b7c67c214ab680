/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "auth-common.h"
#include "passdb.h"
#include "db-launchpad.h"
#include "keyring.h"

#include <sodium.h>

/* Dovecot's auth cache (auth_cache_size > 0) is keyed on the user AND a
   digest of the password, as the design asks: several app passwords of one
   user each get their own entry, so a wrong or revoked password never hides
   a good one (Dovecot's auth-cache.c keys the entry on this string).  App passwords carry >= 128 bits of
   entropy, so an unsalted SHA-256 of one in the auth process's memory gives
   nothing to brute force.  The service is part of the key: a submission
   login carries fields (the addresses it may send as) that an IMAP login
   does not look up.  The user stays first, so CACHE-FLUSH by name still
   finds every entry. */
#define PASSDB_LAUNCHPAD_CACHE_KEY "%u\t%s\t%{sha256:password}"
/* In proxy mode an OK says "send this login to its backend", not "the
   password is right": the service in the key also keeps an answer cached
   for imap from serving a service that is not proxied.  The user comes
   first: CACHE-FLUSH (after `backend assign`) matches the keys that start
   with the user. */
#define PASSDB_LAUNCHPAD_PROXY_CACHE_KEY PASSDB_LAUNCHPAD_CACHE_KEY

/* The service of Dovecot's submission server (service submission). */
#define PASSDB_LAUNCHPAD_SUBMISSION_SERVICE "submission"

struct launchpad_passdb_module {
	struct passdb_module module;
	struct db_launchpad *db;
};

static enum passdb_result
passdb_launchpad_deny_result(struct auth_request *request,
			     const struct lp_entitlement *ent)
{
	switch (ent->verdict.reason) {
	case LP_DENY_NONE:
		break;
	case LP_DENY_DOMAIN:
	case LP_DENY_NAME:
	case LP_DENY_NO_PERSON:
		auth_request_log_unknown_user(request, AUTH_SUBSYS_DB);
		return PASSDB_RESULT_USER_UNKNOWN;
	case LP_DENY_BANNED:
	case LP_DENY_NOT_VALID:
	case LP_DENY_NO_COC:
	case LP_DENY_NOT_MEMBER:
		/* Launchpad facts are public; telling the contributor why
		   (as NO [ALERT] <reason>) saves a support request. */
		auth_request_set_field(request, "reason", ent->verdict.text,
				       NULL);
		return PASSDB_RESULT_USER_DISABLED;
	}
	i_unreached();
}

/* Opens the keyfile slot that password belongs to and hands its KEK on to
   the mail process as the userdb field KR_KEK_FIELD (sqlbox_kek). */
static enum passdb_result
passdb_launchpad_open_slot(struct launchpad_passdb_module *module,
			   struct auth_request *request,
			   const struct lp_entitlement *ent,
			   const char *password)
{
	struct event *event = authdb_event(request);
	struct kr_keyfile *kf;
	struct kr_secret *kek;
	struct kr_error err;
	const char *path;
	char field[KR_KEK_FIELD_BUFSIZE], keyfile_id[KR_KEYFILE_ID_BUFSIZE];
	unsigned int slot_id;
	int ret;

	path = db_launchpad_keyfile_path(module->db, ent);
	if (path == NULL) {
		e_error(event, "launchpad: home path too long for %s",
			ent->user);
		return PASSDB_RESULT_INTERNAL_FAILURE;
	}
	ret = kr_keyfile_read(path, &kf, &err);
	if (ret < 0) {
		e_error(event, "launchpad: %s", err.text);
		return PASSDB_RESULT_INTERNAL_FAILURE;
	}
	if (ret == 0) {
		db_launchpad_log_info(request, "mailbox not activated "
				      "(no app password yet for %s)", ent->user);
		auth_request_log_password_mismatch(request, AUTH_SUBSYS_DB);
		return PASSDB_RESULT_PASSWORD_MISMATCH;
	}
	if (strcmp(kr_keyfile_user(kf), ent->user) != 0) {
		e_error(event, "launchpad: %s belongs to %s, not %s",
			path, kr_keyfile_user(kf), ent->user);
		kr_keyfile_free(&kf);
		return PASSDB_RESULT_INTERNAL_FAILURE;
	}

	ret = kr_slot_open(kf, password, &slot_id, &kek, &err);
	kr_keyfile_id(kf, keyfile_id);
	kr_keyfile_free(&kf);
	if (ret < 0) {
		e_error(event, "launchpad: %s", err.text);
		return PASSDB_RESULT_INTERNAL_FAILURE;
	}
	if (ret == 0) {
		auth_request_log_password_mismatch(request, AUTH_SUBSYS_DB);
		return PASSDB_RESULT_PASSWORD_MISMATCH;
	}

	/* "last used" for doveadm launchpad password list and the web page:
	   a TDB record of its own (never a keyfile write, so no keyfile lock
	   to wait for), throttled inside; a failed stamp never fails a
	   login. */
	(void)lp_cache_slot_used(module->db->ctx, ent->user, keyfile_id,
				 slot_id, NULL);

	i_assert(kr_secret_len(kek) == KR_KEK_BYTES);
	if (kr_kek_encode(slot_id, kr_secret_data(kek), field,
			  sizeof(field)) < 0)
		i_unreached();
	kr_secret_free(&kek);

	/* auth_request_set_field() copies into the request pool; the stack
	   copy is wiped here. */
	auth_request_set_field(request, "userdb_" KR_KEK_FIELD, field, NULL);
	sodium_memzero(field, sizeof(field));
	e_debug(event, "launchpad: app password slot %u opened", slot_id);
	return PASSDB_RESULT_OK;
}

/* Proxy mode: the allowed user's backend as proxy fields.  The password
   is not looked at here: Dovecot forwards it and the backend, which holds
   the keyfile, checks it.  So only services whose login Dovecot forwards
   get an OK; anything else (an MTA's SASL on this host, doveadm auth)
   would otherwise accept any password. */
static enum passdb_result
passdb_launchpad_proxy(struct launchpad_passdb_module *module,
		       struct auth_request *request,
		       const struct lp_entitlement *ent)
{
	const char *service = request->fields.service;

	if (!db_launchpad_is_proxied_service(service)) {
		e_error(authdb_event(request), "launchpad: proxy mode: "
			"service %s is not proxied (only imap, pop3 and "
			"lmtp are): the password can only be checked on "
			"the backend", service);
		return PASSDB_RESULT_INTERNAL_FAILURE;
	}
	return db_launchpad_proxy_fields(module->db, request, ent);
}

/* For a submission login: what src/submission needs, as userdb fields of
   this login (plugin settings in the submission process, which never
   reads the config file): the addresses the user may send as right now
   (name@D for every domain D the decision table allows, the login's
   first) and the sending limits. */
static void
passdb_launchpad_send_fields(struct launchpad_passdb_module *module,
			     struct auth_request *request,
			     const struct lp_entitlement *ent)
{
	const struct lp_config *config = module->db->config;
	size_t size = lp_send_as_bufsize(config);
	char *list = t_malloc0(size);

	module->db->cur_request = request;
	if (lp_send_as_list(module->db->ctx, ent->name, ent->domain,
			    list, size) < 0)
		i_unreached();
	module->db->cur_request = NULL;
	auth_request_set_field(request, "userdb_launchpad_send_as", list,
			       NULL);
	auth_request_set_field(request, "userdb_launchpad_send_per_hour",
			       dec2str(config->send_messages_per_hour), NULL);
	auth_request_set_field(request, "userdb_launchpad_send_rcpt_max",
			       dec2str(config->send_recipients_per_message),
			       NULL);
	auth_request_set_field(request, "userdb_launchpad_send_state",
			       config->send_state_path, NULL);
	e_debug(authdb_event(request), "launchpad: may send as %s", list);
}

static void
passdb_launchpad_verify_plain(struct auth_request *request,
			      const char *password,
			      verify_plain_callback_t *callback)
{
	struct passdb_module *_module = request->passdb->passdb;
	struct launchpad_passdb_module *module =
		(struct launchpad_passdb_module *)_module;
	struct lp_entitlement ent;
	enum passdb_result result;

	db_launchpad_check(module->db, request, &ent);
	switch (ent.verdict.kind) {
	case LP_VERDICT_DENY:
		result = passdb_launchpad_deny_result(request, &ent);
		break;
	case LP_VERDICT_TEMPFAIL:
		/* auth would now fall back to an expired cache entry of any
		   age: past stale_grace that must not log anyone in. */
		db_launchpad_flush_auth_cache(module->db, request, &ent);
		result = PASSDB_RESULT_INTERNAL_FAILURE;
		break;
	case LP_VERDICT_ALLOW:
		if (module->db->config->backends_count > 0) {
			result = passdb_launchpad_proxy(module, request, &ent);
			break;
		}
		result = passdb_launchpad_open_slot(module, request, &ent,
						    password);
		if (result == PASSDB_RESULT_OK &&
		    strcmp(request->fields.user, ent.user) != 0)
			auth_request_set_field(request, "user", ent.user, NULL);
		if (result == PASSDB_RESULT_OK &&
		    null_strcmp(request->fields.service,
				PASSDB_LAUNCHPAD_SUBMISSION_SERVICE) == 0)
			passdb_launchpad_send_fields(module, request, &ent);
		break;
	default:
		i_unreached();
	}
	callback(result, request);
}

/* A passdb lookup (no password): LMTP's with lmtp_proxy = yes, doveadm
   auth lookup.  Only in proxy mode, and only without a wanted scheme:
   there are no credentials to give, the backend checks passwords. */
static void
passdb_launchpad_lookup_credentials(struct auth_request *request,
				    lookup_credentials_callback_t *callback)
{
	struct passdb_module *_module = request->passdb->passdb;
	struct launchpad_passdb_module *module =
		(struct launchpad_passdb_module *)_module;
	struct lp_entitlement ent;
	enum passdb_result result;

	if (module->db->config->backends_count == 0 ||
	    *request->wanted_credentials_scheme != '\0') {
		callback(PASSDB_RESULT_SCHEME_NOT_AVAILABLE, NULL, 0, request);
		return;
	}
	db_launchpad_check(module->db, request, &ent);
	switch (ent.verdict.kind) {
	case LP_VERDICT_DENY:
		/* NOTFOUND: LMTP falls back to local delivery, where the
		   userdb refuses the recipient with 550 */
		result = passdb_launchpad_deny_result(request, &ent);
		break;
	case LP_VERDICT_TEMPFAIL:
		db_launchpad_flush_auth_cache(module->db, request, &ent);
		result = PASSDB_RESULT_INTERNAL_FAILURE;
		break;
	case LP_VERDICT_ALLOW:
		result = passdb_launchpad_proxy(module, request, &ent);
		break;
	default:
		i_unreached();
	}
	passdb_handle_credentials(result, NULL, NULL, callback, request);
}

static struct passdb_module *
passdb_launchpad_preinit(pool_t pool, const char *args)
{
	struct launchpad_passdb_module *module;

	module = p_new(pool, struct launchpad_passdb_module, 1);
	module->db = db_launchpad_preinit(pool, args);
	module->module.blocking = TRUE;
	module->module.default_pass_scheme = "PLAIN";
	module->module.default_cache_key =
		module->db->config->backends_count > 0 ?
		PASSDB_LAUNCHPAD_PROXY_CACHE_KEY : PASSDB_LAUNCHPAD_CACHE_KEY;
	return &module->module;
}

static void passdb_launchpad_deinit(struct passdb_module *_module)
{
	struct launchpad_passdb_module *module =
		(struct launchpad_passdb_module *)_module;

	db_launchpad_unref(&module->db);
}

struct passdb_module_interface passdb_launchpad = {
	.name = "launchpad",
	.preinit = passdb_launchpad_preinit,
	.deinit = passdb_launchpad_deinit,
	.verify_plain = passdb_launchpad_verify_plain,
	.lookup_credentials = passdb_launchpad_lookup_credentials,
};
