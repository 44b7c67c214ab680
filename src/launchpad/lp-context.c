/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* struct lp_context: one per process and config, for a root process
   (auth-workers, doveadm, the sync) or the web daemon. */

#include "launchpad-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int lp_context_create_role(const struct lp_config *config,
				  const struct lp_log *log, bool web,
				  struct lp_context **ctx_r,
				  struct lp_error *err)
{
	struct lp_context *ctx;

	*ctx_r = NULL;
	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL) {
		lp_error_set(err, LP_ERR_INTERNAL, "calloc() failed");
		return -1;
	}
	ctx->config = config;
	if (log != NULL)
		ctx->log = *log;
	ctx->now = lp_clock_wall;
	ctx->web = web;
	if (web) {
		if (snprintf(ctx->web_tdb_path, sizeof(ctx->web_tdb_path),
			     "%s/" LP_WEB_CACHE_FILE, config->web_state_dir) >=
		    (int)sizeof(ctx->web_tdb_path)) {
			lp_error_set(err, LP_ERR_CONFIG, "%s: web_state_dir "
				     "too long", config->path);
			free(ctx);
			return -1;
		}
		if (mkdir(config->web_state_dir, 0700) < 0 &&
		    errno != EEXIST) {
			lp_error_set(err, LP_ERR_INTERNAL,
				     "mkdir(%s) failed: %s",
				     config->web_state_dir, strerror(errno));
			free(ctx);
			return -1;
		}
	}
	if (lp_cache_open(ctx, err) < 0 || lp_http_init(ctx, err) < 0) {
		lp_context_destroy(&ctx);
		return -1;
	}
	*ctx_r = ctx;
	return 0;
}

int lp_context_create(const struct lp_config *config, const struct lp_log *log,
		      struct lp_context **ctx_r, struct lp_error *err)
{
	return lp_context_create_role(config, log, false, ctx_r, err);
}

int lp_context_create_web(const struct lp_config *config,
			  const struct lp_log *log,
			  struct lp_context **ctx_r, struct lp_error *err)
{
	return lp_context_create_role(config, log, true, ctx_r, err);
}

void lp_context_destroy(struct lp_context **_ctx)
{
	struct lp_context *ctx = *_ctx;

	if (ctx == NULL)
		return;
	*_ctx = NULL;
	lp_http_deinit(ctx);
	lp_cache_close(ctx);
	free(ctx);
}
