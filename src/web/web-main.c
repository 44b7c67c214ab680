/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* dovecot-launchpad-web [-c CONFIG]: the self-service page (doc/DESIGN.md
   section 10).  Reads the same dovecot-launchpad.conf.ext as Dovecot,
   listens on web_listen (loopback, behind the site's TLS proxy), logs one
   line per event on stderr, and stops cleanly on SIGTERM or SIGINT.

   One thread waits on one epoll fd holding libmicrohttpd's own epoll fd
   and the sockets of the worker processes (web-worker.c) that do the
   blocking work; `-w` runs this program as such a worker. */

#include "web-private.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <sodium.h>

/* Longest wait in the poll loop: how soon a signal is noticed. */
#define WEB_POLL_MSECS 500
#define WEB_EPOLL_EVENTS 16
#define WEB_PRUNE_SECS 60

static volatile sig_atomic_t web_stop_signal = 0;

static void web_lp_log(void *context, enum lp_log_level level,
		       const char *msg)
{
	(void)context;
	if (level != LP_LOG_DEBUG)
		web_log(level, "launchpad: %s", msg);
}

static void web_signal(int signo)
{
	web_stop_signal = signo;
}

static int web_server_init(struct web_server *server, const char *path)
{
	struct lp_error err;
	struct lp_log log = { .fn = web_lp_log };

	if (lp_config_load(path, &server->config, &err) < 0) {
		web_log(LP_LOG_ERROR, "%s", err.text);
		return -1;
	}
	if (server->config->web_url == NULL) {
		web_log(LP_LOG_ERROR, "%s: web_url is not set: the page needs "
			"its public base URL (OpenID realm and return_to)",
			path);
		return -1;
	}
	if (lp_url_origin(server->config->web_url, server->web_origin,
			  sizeof(server->web_origin)) < 0 ||
	    lp_url_origin(server->config->sso_url, server->sso_origin,
			  sizeof(server->sso_origin)) < 0) {
		web_log(LP_LOG_ERROR, "%s: web_url or sso_url too long", path);
		return -1;
	}
	if (server->config->web_mail_host != NULL)
		snprintf(server->mail_host, sizeof(server->mail_host), "%s",
			 server->config->web_mail_host);
	else if (lp_url_host(server->config->web_url, server->mail_host,
			     sizeof(server->mail_host)) < 0) {
		web_log(LP_LOG_ERROR, "%s: web_url's host too long", path);
		return -1;
	}
	if (server->config->web_smtp_url != NULL &&
	    server->config->web_smtp_from == NULL) {
		web_log(LP_LOG_ERROR, "%s: web_smtp_url is set but "
			"web_smtp_from is not: the confirmation mails need "
			"their sender", path);
		return -1;
	}
	/* resolved once, by lp_config_load() */
	if (lp_config_mail_ids(server->config, &server->uid, &server->gid,
			       &err) < 0) {
		web_log(LP_LOG_ERROR, "%s", err.text);
		return -1;
	}
	if (lp_net_list_parse(server->config->web_trusted_proxies,
			      &server->trusted_proxies,
			      &server->trusted_proxies_count, &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: web_trusted_proxies: %s", path,
			err.text);
		return -1;
	}
	if (server->trusted_proxies_count == 0) {
		web_log(LP_LOG_WARNING, "%s: web_trusted_proxies is empty: "
			"X-Real-IP is ignored, so behind a reverse proxy every "
			"client shares the proxy's rate limits (for the "
			"shipped nginx snippet: web_trusted_proxies = "
			"127.0.0.1)", path);
	}
	/* Writes only web_state_dir; cache_path, which root auth-workers
	   trust, is read-only here. */
	if (lp_context_create_web(server->config, &log, &server->lp,
				  &err) < 0) {
		web_log(LP_LOG_ERROR, "%s", err.text);
		return -1;
	}
	return 0;
}

static void web_server_deinit(struct web_server *server)
{
	if (server->epoll_fd != -1) {
		/* every suspended connection answered, then MHD may stop */
		web_workers_deinit(server);
		if (server->daemon != NULL)
			(void)MHD_run(server->daemon);
		close(server->epoll_fd);
	}
	web_http_stop(server);
	if (server->lp != NULL)
		lp_context_destroy(&server->lp);
	lp_config_free(&server->config);
	free(server->trusted_proxies);
	/* Session ids and CSRF tokens are secrets too. */
	sodium_memzero(server->sessions, sizeof(server->sessions));
	sodium_memzero(server->logins, sizeof(server->logins));
}

static void web_maintenance(struct web_server *server)
{
	struct lp_error err;
	time_t now = time(NULL);

	if (now - server->last_prune < WEB_PRUNE_SECS)
		return;
	server->last_prune = now;
	web_session_prune(server);
	if (lp_cache_nonce_prune(server->lp, &err) < 0)
		web_log(LP_LOG_WARNING, "pruning nonces: %s", err.text);
	if (lp_fwdconfirm_prune(server->lp, &err) < 0)
		web_log(LP_LOG_WARNING, "pruning confirmation links: %s",
			err.text);
}

/* Waits for libmicrohttpd's sockets and the workers' for at most
   WEB_POLL_MSECS, then lets MHD do what is ready.  Returns MHD_run()'s
   result, or MHD_NO with errno on a failed wait. */
static enum MHD_Result web_run(struct web_server *server)
{
	struct epoll_event events[WEB_EPOLL_EVENTS];
	MHD_UNSIGNED_LONG_LONG timeout;
	int msecs = WEB_POLL_MSECS, n;

	if (MHD_get_timeout(server->daemon, &timeout) == MHD_YES &&
	    timeout < (MHD_UNSIGNED_LONG_LONG)msecs)
		msecs = (int)timeout;
	n = epoll_wait(server->epoll_fd, events, WEB_EPOLL_EVENTS, msecs);
	if (n < 0 && errno != EINTR)
		return MHD_NO;
	for (int i = 0; i < n; i++) {
		/* MHD's own fd is the one without a worker */
		if (events[i].data.ptr != NULL)
			web_worker_event(server, events[i].data.ptr);
	}
	return MHD_run(server->daemon);
}

/* The outer epoll fd: MHD's, then the workers'. */
static int web_loop_init(struct web_server *server)
{
	const union MHD_DaemonInfo *info;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	server->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	if (server->epoll_fd < 0 || info == NULL ||
	    epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, info->epoll_fd,
		      &ev) < 0) {
		web_log(LP_LOG_ERROR, "epoll: %s", strerror(errno));
		return -1;
	}
	return web_workers_init(server);
}

static void web_usage(void)
{
	fprintf(stderr, "usage: %s [-c <config>]   (default %s)\n", WEB_NAME,
		WEB_DEFAULT_CONFIG);
}

int main(int argc, char *argv[])
{
	struct sigaction sa = { .sa_handler = web_signal };
	const char *path = WEB_DEFAULT_CONFIG, *error;
	struct web_server *server;
	int opt, ret = EXIT_FAILURE;
	bool worker = false;

	while ((opt = getopt(argc, argv, "c:hw")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'w':
			/* internal: the main process runs its workers so */
			worker = true;
			break;
		default:
			web_usage();
			return opt == 'h' ? EXIT_SUCCESS : EXIT_FAILURE;
		}
	}
	if (optind != argc) {
		web_usage();
		return EXIT_FAILURE;
	}
	/* Line-buffered: one event, one journal line. */
	setvbuf(stderr, NULL, _IOLBF, 0);
	/* libcurl is set up by lp_context_create_web() */
	if (sodium_init() < 0) {
		web_log(LP_LOG_ERROR, "library initialisation failed");
		return EXIT_FAILURE;
	}
	signal(SIGPIPE, SIG_IGN);
	if (worker) {
		struct lp_log log = { .fn = web_lp_log };

		/* SIGTERM (and the main process's SIGKILL) end it as is:
		   nothing of its own to save */
		ret = web_worker_main(path, &log);
		lp_global_deinit();
		return ret;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	/* Big tables: keep them off the stack. */
	server = calloc(1, sizeof(*server));
	if (server == NULL)
		return EXIT_FAILURE;
	server->clock = web_clock_monotonic;
	server->config_path = path;
	server->epoll_fd = -1;
	web_workers_preinit(server);
	if (web_server_init(server, path) < 0)
		goto out;
	if (web_http_start(server, &error) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s (%s)", path, error,
			server->config->web_listen);
		goto out;
	}
	if (web_loop_init(server) < 0)
		goto out;
	web_log(LP_LOG_INFO, "listening on %s for %s",
		server->config->web_listen, server->config->web_url);
	while (web_stop_signal == 0) {
		if (web_run(server) != MHD_YES &&
		    web_stop_signal == 0) {
			web_log(LP_LOG_ERROR, "polling failed: %s",
				strerror(errno));
			goto out;
		}
		web_maintenance(server);
	}
	web_log(LP_LOG_INFO, "stopping on signal %d", (int)web_stop_signal);
	ret = EXIT_SUCCESS;
out:
	web_server_deinit(server);
	free(server);
	lp_global_deinit();
	return ret;
}
