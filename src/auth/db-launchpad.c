/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "auth-common.h"
#include "llist.h"
#include "str.h"
#include "auth-request.h"
#include "auth-settings.h"
#include "passdb.h"
#include "db-launchpad.h"
#include "keyring.h"

/* Library log lines go to the request's event when one is being served. */
static struct event_category event_category_launchpad = {
	.parent = &event_category_auth,
	.name = "launchpad",
};

static struct db_launchpad *db_launchpads = NULL;
static struct event *db_launchpad_event = NULL;

static void db_launchpad_log(void *context, enum lp_log_level level,
			     const char *msg)
{
	struct db_launchpad *db = context;
	struct event *event = db->cur_request != NULL ?
		authdb_event(db->cur_request) : db_launchpad_event;

	switch (level) {
	case LP_LOG_DEBUG:
		e_debug(event, "launchpad: %s", msg);
		break;
	case LP_LOG_INFO:
		/* Decisions ("denied: <reason>"): logged without auth_verbose
		   too, doc/DESIGN.md section 4 wants them. */
		if (db->cur_request != NULL)
			db_launchpad_log_info(db->cur_request, "%s", msg);
		else
			e_info(event, "launchpad: %s", msg);
		break;
	case LP_LOG_WARNING:
		e_warning(event, "launchpad: %s", msg);
		break;
	case LP_LOG_ERROR:
		e_error(event, "launchpad: %s", msg);
		break;
	}
}

struct db_launchpad *db_launchpad_preinit(pool_t pool ATTR_UNUSED,
					  const char *args)
{
	struct db_launchpad *db;
	struct lp_error err;
	const char *path = t_str_trim(args, " \t");

	if (*path == '\0') {
		i_fatal("launchpad: args must be the path of "
			"dovecot-launchpad.conf.ext");
	}
	if (strchr(path, ' ') != NULL)
		i_fatal("launchpad: args: only a config file path is accepted: %s", path);

	for (db = db_launchpads; db != NULL; db = db->next) {
		if (strcmp(db->config_path, path) == 0) {
			db->refcount++;
			return db;
		}
	}

	if (db_launchpad_event == NULL) {
		db_launchpad_event = event_create(auth_event);
		event_add_category(db_launchpad_event,
				   &event_category_launchpad);
	}

	db = i_new(struct db_launchpad, 1);
	db->refcount = 1;
	db->config_path = i_strdup(path);
	if (lp_config_load(path, &db->config, &err) < 0)
		i_fatal("launchpad: %s", err.text);
	/* resolved once, by lp_config_load() */
	if (lp_config_mail_ids(db->config, &db->uid, &db->gid, &err) < 0)
		i_fatal("launchpad: %s", err.text);
	DLLIST_PREPEND(&db_launchpads, db);
	return db;
}

int db_launchpad_context(struct db_launchpad *db, struct event *event)
{
	const struct lp_log log = {
		.fn = db_launchpad_log,
		.context = db,
	};
	struct lp_error err;

	/* Opened at the first lookup, not in init: a cache or HTTP client
	   that cannot be set up fails that lookup (tempfail, logged) and is
	   tried again at the next one, instead of killing the process. */
	if (db->ctx != NULL)
		return 0;
	if (lp_context_create(db->config, &log, &db->ctx, &err) < 0) {
		e_error(event, "launchpad: %s", err.text);
		return -1;
	}
	return 0;
}

void db_launchpad_unref(struct db_launchpad **_db)
{
	struct db_launchpad *db = *_db;

	*_db = NULL;
	i_assert(db->refcount > 0);
	if (--db->refcount > 0)
		return;

	DLLIST_REMOVE(&db_launchpads, db);
	if (db->ctx != NULL)
		lp_context_destroy(&db->ctx);
	lp_config_free(&db->config);
	i_free(db->config_path);
	i_free(db);
	if (db_launchpads == NULL)
		event_unref(&db_launchpad_event);
}

void db_launchpad_log_info(struct auth_request *request, const char *fmt, ...)
{
	struct event *event = authdb_event(request);
	enum log_type orig_level = event_get_min_log_level(event);
	va_list args;

	/* Decisions are logged even without auth_verbose (which raises the
	   request event's level to warning), as auth-request.c does for
	   verbose_passwords: the admin needs to see why someone was refused. */
	event_set_min_log_level(event, LOG_TYPE_INFO);
	va_start(args, fmt);
	e_info(event, "launchpad: %s", t_strdup_vprintf(fmt, args));
	va_end(args);
	event_set_min_log_level(event, orig_level);
}

void db_launchpad_check(struct db_launchpad *db, struct auth_request *request,
			struct lp_entitlement *ent_r)
{
	if (db_launchpad_context(db, authdb_event(request)) < 0) {
		i_zero(ent_r);
		ent_r->login = lp_login_parse(db->config, request->fields.user,
					      ent_r->name, &ent_r->domain);
		if (ent_r->login == LP_LOGIN_OK) {
			i_snprintf(ent_r->user, sizeof(ent_r->user), "%s@%s",
				   ent_r->name, ent_r->domain->domain);
		}
		ent_r->verdict.kind = LP_VERDICT_TEMPFAIL;
		i_strocpy(ent_r->verdict.text, "the Launchpad cache or HTTP "
			  "client cannot be set up",
			  sizeof(ent_r->verdict.text));
		return;
	}

	/* liblaunchpad logs the outcome (deny reason, stale allow, tempfail
	   cause) through db_launchpad_log() on this request's event. */
	db->cur_request = request;
	lp_entitlement_check(db->ctx, request->fields.user, ent_r);
	db->cur_request = NULL;
}

const char *db_launchpad_keyfile_path(struct db_launchpad *db,
				      const struct lp_entitlement *ent)
{
	char home[PATH_MAX];

	if (lp_config_expand_home(db->config, ent->name, ent->domain->domain,
				  home, sizeof(home)) < 0)
		return NULL;
	return t_strconcat(home, "/" KR_KEYFILE_NAME, NULL);
}

void db_launchpad_flush_auth_cache(struct db_launchpad *db,
				   struct auth_request *request,
				   const struct lp_entitlement *ent)
{
	struct lp_error err;
	int count;

	/* The cache key starts with the login as typed (after
	   auth_username_format): the bare name and name@<every domain>
	   cover it.  Not auth_master_cache_flush(): in 2.3.19 it reports
	   success when it cannot connect. */
	if (ent->login != LP_LOGIN_OK)
		return;
	count = lp_auth_cache_flush(db->config,
				    t_strconcat(global_auth_settings->base_dir,
						"/auth-master", NULL),
				    ent->name, &err);
	if (count < 0) {
		e_error(authdb_event(request), "launchpad: "
			"could not flush the auth cache for %s (%s): "
			"an expired cache entry may still be used",
			ent->user, err.text);
	} else if (count > 0) {
		db_launchpad_log_info(request, "flushed %d auth cache "
				      "entries (stale_grace is over)", count);
	}
}

bool db_launchpad_is_proxied_service(const char *service)
{
	return service != NULL &&
		(strcmp(service, "imap") == 0 ||
		 strcmp(service, "pop3") == 0 ||
		 strcmp(service, "lmtp") == 0);
}

enum passdb_result
db_launchpad_proxy_fields(struct db_launchpad *db,
			  struct auth_request *request,
			  const struct lp_entitlement *ent)
{
	const struct lp_config *config = db->config;
	struct lp_backend_placement place;
	struct lp_error err;
	const char *service = request->fields.service;
	unsigned int port;
	int ret;

	db->cur_request = request;
	ret = lp_backend_place(db->ctx, ent->user, &place, &err);
	db->cur_request = NULL;
	if (ret < 0) {
		e_error(authdb_event(request), "launchpad: %s: no backend: %s",
			ent->user, err.text);
		return PASSDB_RESULT_INTERNAL_FAILURE;
	}
	if (strcmp(service, "pop3") == 0)
		port = config->backend_pop3_port;
	else if (strcmp(service, "lmtp") == 0)
		port = config->backend_lmtp_port;
	else
		port = config->backend_imap_port;

	/* No nopassword: Dovecot forwards the client's password ("pass")
	   and the backend checks it against the keyfile. */
	auth_request_set_field(request, "proxy", "y", NULL);
	auth_request_set_field(request, "host", place.host, NULL);
	auth_request_set_field(request, "port", dec2str(port), NULL);
	if (strcmp(request->fields.user, ent->user) != 0)
		auth_request_set_field(request, "user", ent->user, NULL);
	e_debug(authdb_event(request), "launchpad: proxy to %s:%u",
		place.host, port);
	return PASSDB_RESULT_OK;
}
