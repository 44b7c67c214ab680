/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "auth-common.h"
#include "array.h"
#include "userdb.h"
#include "db-launchpad.h"
#include "keyring.h"

#include <sys/stat.h>

#define USERDB_LAUNCHPAD_CACHE_KEY "%u"

struct launchpad_userdb_module {
	struct userdb_module module;
	struct db_launchpad *db;
};

struct launchpad_userdb_iterate_context {
	struct userdb_iterate_context ctx;
	pool_t pool;
	ARRAY_TYPE(const_string) users;
	unsigned int idx;
};

static void userdb_launchpad_lookup(struct auth_request *request,
				    userdb_callback_t *callback)
{
	struct userdb_module *_module = request->userdb->userdb;
	struct launchpad_userdb_module *module =
		(struct launchpad_userdb_module *)_module;
	struct event *event = authdb_event(request);
	struct lp_entitlement ent;
	const char *keyfile;
	char home[PATH_MAX];
	struct stat st;

	db_launchpad_check(module->db, request, &ent);
	if (ent.verdict.kind == LP_VERDICT_DENY) {
		auth_request_log_unknown_user(request, AUTH_SUBSYS_DB);
		callback(USERDB_RESULT_USER_UNKNOWN, request);
		return;
	}
	if (ent.verdict.kind == LP_VERDICT_TEMPFAIL) {
		callback(USERDB_RESULT_INTERNAL_FAILURE, request);
		return;
	}

	if (lp_config_expand_home(module->db->config, ent.name,
				  ent.domain->domain, home, sizeof(home)) < 0) {
		e_error(event, "launchpad: home path too long for %s", ent.user);
		callback(USERDB_RESULT_INTERNAL_FAILURE, request);
		return;
	}
	/* Entitled but no app password yet: there is no public key to seal
	   mail to, so delivery must wait (LMTP answers 451 at RCPT and the
	   MTA retries) rather than bounce or store readable mail. */
	keyfile = t_strconcat(home, "/" KR_KEYFILE_NAME, NULL);
	if (stat(keyfile, &st) < 0) {
		if (errno != ENOENT) {
			e_error(event, "launchpad: stat(%s) failed: %m", keyfile);
			callback(USERDB_RESULT_INTERNAL_FAILURE, request);
			return;
		}
		if (stat(t_strconcat(home, "/" LP_FORWARD_FNAME, NULL),
			 &st) < 0) {
			db_launchpad_log_info(request, "mailbox not activated: "
					      "%s has no app password yet",
					      ent.user);
			callback(USERDB_RESULT_INTERNAL_FAILURE, request);
			return;
		}
		/* Forward-only: Sieve at LMTP redirects the mail.  A
		   delivery that would have to keep it still fails
		   temporarily (no key to seal to). */
		db_launchpad_log_info(request, "mailbox not activated: "
				      "%s forwards only", ent.user);
	}

	if (strcmp(request->fields.user, ent.user) != 0)
		auth_request_set_userdb_field(request, "user", ent.user);
	auth_request_set_userdb_field(request, "home", home);
	auth_request_set_userdb_field(request, "uid",
				      dec2str(module->db->uid));
	auth_request_set_userdb_field(request, "gid",
				      dec2str(module->db->gid));
	callback(USERDB_RESULT_OK, request);
}

static int userdb_launchpad_iterate_add(const char *user, void *context)
{
	struct launchpad_userdb_iterate_context *ctx = context;
	const char *dup = p_strdup(ctx->pool, user);

	array_push_back(&ctx->users, &dup);
	return 0;
}

static struct userdb_iterate_context *
userdb_launchpad_iterate_init(struct auth_request *request,
			      userdb_iter_callback_t *callback, void *context)
{
	struct userdb_module *_module = request->userdb->userdb;
	struct launchpad_userdb_module *module =
		(struct launchpad_userdb_module *)_module;
	struct launchpad_userdb_iterate_context *ctx;
	struct lp_error err;
	pool_t pool;

	pool = pool_alloconly_create("launchpad userdb iterate", 1024);
	ctx = p_new(pool, struct launchpad_userdb_iterate_context, 1);
	ctx->pool = pool;
	ctx->ctx.auth_request = request;
	ctx->ctx.callback = callback;
	ctx->ctx.context = context;
	p_array_init(&ctx->users, pool, 64);

	/* Iteration always runs in an auth-worker, whatever blocking says. */
	if (db_launchpad_context(module->db, authdb_event(request)) < 0)
		ctx->ctx.failed = TRUE;
	else if (lp_cache_iterate_allowed(module->db->ctx,
					  userdb_launchpad_iterate_add, ctx,
					  &err) < 0) {
		e_error(authdb_event(request), "launchpad: %s", err.text);
		ctx->ctx.failed = TRUE;
	}
	return &ctx->ctx;
}

static void userdb_launchpad_iterate_next(struct userdb_iterate_context *_ctx)
{
	struct launchpad_userdb_iterate_context *ctx =
		(struct launchpad_userdb_iterate_context *)_ctx;
	const char *const *users;
	unsigned int count;

	users = array_get(&ctx->users, &count);
	if (_ctx->failed || ctx->idx >= count)
		_ctx->callback(NULL, _ctx->context);
	else
		_ctx->callback(users[ctx->idx++], _ctx->context);
}

static int userdb_launchpad_iterate_deinit(struct userdb_iterate_context *_ctx)
{
	struct launchpad_userdb_iterate_context *ctx =
		(struct launchpad_userdb_iterate_context *)_ctx;
	int ret = _ctx->failed ? -1 : 0;

	pool_unref(&ctx->pool);
	return ret;
}

static struct userdb_module *
userdb_launchpad_preinit(pool_t pool, const char *args)
{
	struct launchpad_userdb_module *module;

	module = p_new(pool, struct launchpad_userdb_module, 1);
	module->db = db_launchpad_preinit(pool, args);
	module->module.blocking = TRUE;
	module->module.default_cache_key = USERDB_LAUNCHPAD_CACHE_KEY;
	return &module->module;
}

static void userdb_launchpad_deinit(struct userdb_module *_module)
{
	struct launchpad_userdb_module *module =
		(struct launchpad_userdb_module *)_module;

	db_launchpad_unref(&module->db);
}

struct userdb_module_interface userdb_launchpad = {
	.name = "launchpad",
	.preinit = userdb_launchpad_preinit,
	.deinit = userdb_launchpad_deinit,
	.lookup = userdb_launchpad_lookup,
	.iterate_init = userdb_launchpad_iterate_init,
	.iterate_next = userdb_launchpad_iterate_next,
	.iterate_deinit = userdb_launchpad_iterate_deinit,
};
