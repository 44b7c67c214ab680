/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The blocking work, off the main loop (doc/DESIGN.md section 10).

   The page is one libmicrohttpd event loop: a Launchpad lookup, the
   OpenID check_authentication POST or a confirmation mail's SMTP send
   run there would hold every other client for up to http_timeout.  So a handler that needs one queues a
   job here and returns; web-http.c suspends its connection.  The job goes
   to a free worker: this same program run as `dovecot-launchpad-web -w`
   (as Dovecot's auth workers are `auth -w`), with an lp_context of its
   own (TDB refuses a second open of a file in one process, and a curl
   handle is not shared), over a SOCK_SEQPACKET socketpair: one JSON
   message per job, one per answer.  The main loop (web-main.c) waits on
   the workers' sockets next to libmicrohttpd's epoll fd; an answer
   resumes the connection and web-http.c runs the handler's continuation.

   A worker runs one job at a time; jobs wait in a FIFO for a free one.
   A worker that dies is replaced, and its job answered as a failure (a
   TEMPFAIL verdict, an unreachable sign-in service): the client gets an
   error page, never a hang.  Sessions, sign-ins and rate limits stay in
   the main process; workers only ask Launchpad and the SSO, and hand mails to the relay. */

/* close_range() */
#define _GNU_SOURCE
#include "web-private.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* The worker's end of its socketpair. */
#define WEB_WORKER_FD 3

/* ---- the main process's side ---- */

static void web_job_answers_free(struct web_job *job)
{
	free(job->ent_users);
	free(job->ents);
	job->ent_users = NULL;
	job->ents = NULL;
	job->ent_count = 0;
}

/* A mail job's text holds a confirmation link: wiped in the JSON that
   carried it before it is freed. */
static void web_job_json_wipe(json_t *job)
{
	json_t *message = json_object_get(job, "message");

	if (json_is_string(message))
		sodium_memzero((char *)json_string_value(message),
			       json_string_length(message));
}

/* The job's message may hold a secret (a confirmation link). */
static void web_job_msg_free(struct web_job *job)
{
	if (job->msg != NULL) {
		sodium_memzero(job->msg, strlen(job->msg));
		free(job->msg);
		job->msg = NULL;
	}
}

void web_job_free(struct web_request *req)
{
	web_job_answers_free(&req->job);
	web_job_msg_free(&req->job);
}

/* Answers the job as a failure: every entitlement TEMPFAIL, the SSO
   unreachable. */
static void web_job_fail(struct web_request *req, const char *why)
{
	struct web_job *job = &req->job;

	for (unsigned int i = 0; i < job->ent_count; i++) {
		struct lp_entitlement *ent = &job->ents[i];

		memset(ent, 0, sizeof(*ent));
		ent->login = LP_LOGIN_OK;
		snprintf(ent->user, sizeof(ent->user), "%s",
			 job->ent_users[i]);
		ent->verdict.kind = LP_VERDICT_TEMPFAIL;
		snprintf(ent->verdict.text, sizeof(ent->verdict.text), "%s",
			 why);
	}
	job->sso_ret = -1;
	snprintf(job->sso_error, sizeof(job->sso_error), "%s", why);
	job->mail_ret = -1;
	snprintf(job->mail_error, sizeof(job->mail_error), "%s", why);
}

/* The job is answered: its handler's continuation runs, now (still in
   the handler: web-http.c loops) or once MHD resumes the connection. */
static void web_job_done(struct web_request *req)
{
	web_job_msg_free(&req->job);
	req->job.done = true;
	if (req->job.suspended) {
		req->job.suspended = false;
		MHD_resume_connection(req->conn);
	}
}

static void web_worker_close(struct web_server *server,
			     struct web_worker *worker)
{
	int status;

	if (worker->fd != -1) {
		(void)epoll_ctl(server->epoll_fd, EPOLL_CTL_DEL, worker->fd,
				NULL);
		close(worker->fd);
		worker->fd = -1;
	}
	if (worker->pid > 0) {
		/* it may be in the middle of a lookup: no answer is wanted */
		(void)kill(worker->pid, SIGKILL);
		while (waitpid(worker->pid, &status, 0) < 0 && errno == EINTR)
			;
		worker->pid = -1;
	}
}

static int web_worker_spawn(struct web_server *server,
			    struct web_worker *worker)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = worker };
	char *const argv[] = {
		(char *)WEB_NAME, (char *)"-w", (char *)"-c",
		(char *)server->config_path, NULL
	};
	int fds[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0) {
		web_log(LP_LOG_ERROR, "worker: socketpair: %s",
			strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		web_log(LP_LOG_ERROR, "worker: fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		/* async-signal-safe calls only until exec */
		if (fds[1] == WEB_WORKER_FD)
			(void)fcntl(fds[1], F_SETFD, 0);
		else if (dup2(fds[1], WEB_WORKER_FD) < 0)
			_exit(127);
		/* nothing of the main process (its TDB, its listener) but
		   the socket */
		(void)close_range(WEB_WORKER_FD + 1, ~0U, 0);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(fds[1]);
	(void)fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
	worker->pid = pid;
	worker->fd = fds[0];
	worker->req = NULL;
	if (epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, worker->fd, &ev) < 0) {
		web_log(LP_LOG_ERROR, "worker: epoll_ctl: %s",
			strerror(errno));
		web_worker_close(server, worker);
		return -1;
	}
	return 0;
}

/* Sends the next queued jobs to free workers (spawning a missing one);
   a job no worker can take is answered as a failure. */
static void web_workers_dispatch(struct web_server *server)
{
	for (unsigned int i = 0; i < WEB_WORKERS_COUNT &&
		     server->queue_head != NULL; i++) {
		struct web_worker *worker = &server->workers[i];
		struct web_request *req;

		if (worker->req != NULL)
			continue;
		if (worker->fd == -1 &&
		    (server->stopping || web_worker_spawn(server, worker) < 0))
			continue;
		req = server->queue_head;
		server->queue_head = req->job.next;
		if (server->queue_head == NULL)
			server->queue_tail = NULL;
		req->job.next = NULL;
		if (send(worker->fd, req->job.msg, strlen(req->job.msg),
			 MSG_NOSIGNAL) < 0) {
			web_log(LP_LOG_ERROR, "worker %ld: send: %s",
				(long)worker->pid, strerror(errno));
			web_worker_close(server, worker);
			web_job_fail(req, "internal error (worker)");
			web_job_done(req);
			continue;
		}
		worker->req = req;
	}
	if (server->queue_head == NULL)
		return;
	for (unsigned int i = 0; i < WEB_WORKERS_COUNT; i++) {
		if (server->workers[i].fd != -1)
			return;	/* the queue moves when one answers */
	}
	/* no worker at all: nothing would ever answer */
	while (server->queue_head != NULL) {
		struct web_request *req = server->queue_head;

		server->queue_head = req->job.next;
		req->job.next = NULL;
		web_job_fail(req, "internal error (no worker)");
		web_job_done(req);
	}
	server->queue_tail = NULL;
}

static void web_job_queue(struct web_request *req, json_t *msg,
			  web_resume_fn *resume)
{
	struct web_server *server = req->server;
	struct web_job *job = &req->job;

	job->resume = resume;
	job->done = false;
	web_job_msg_free(job);
	job->msg = msg == NULL ? NULL : json_dumps(msg, JSON_COMPACT);
	web_job_json_wipe(msg);
	json_decref(msg);
	if (job->msg == NULL || server->stopping ||
	    strlen(job->msg) > WEB_WORKER_MSG_MAX) {
		web_job_fail(req, server->stopping ? "the page is stopping" :
			     "internal error (job)");
		web_job_done(req);
		return;
	}
	if (server->queue_tail == NULL)
		server->queue_head = req;
	else
		server->queue_tail->job.next = req;
	server->queue_tail = req;
	web_workers_dispatch(server);
}

void web_job_entitlements(struct web_request *req, const char *const *users,
			  unsigned int count, bool refresh,
			  web_resume_fn *resume)
{
	struct web_job *job = &req->job;
	json_t *list = json_array();

	web_job_answers_free(job);
	job->is_mail = false;
	job->ent_users = calloc(count, sizeof(*job->ent_users));
	job->ents = calloc(count, sizeof(*job->ents));
	if (list == NULL || job->ent_users == NULL || job->ents == NULL) {
		json_decref(list);
		web_job_answers_free(job);
		web_job_queue(req, NULL, resume);
		return;
	}
	job->ent_count = count;
	for (unsigned int i = 0; i < count; i++) {
		snprintf(job->ent_users[i], sizeof(job->ent_users[i]), "%s",
			 users[i]);
		json_array_append_new(list, json_string(users[i]));
	}
	/* until answered, every one unknown */
	web_job_fail(req, "no answer");
	web_job_queue(req, json_pack("{s:s, s:o}", "op",
				     refresh ? "refresh" : "check",
				     "users", list), resume);
}

void web_job_sso_post(struct web_request *req, const char *const *pairs,
		      web_resume_fn *resume)
{
	json_t *list = json_array();

	web_job_answers_free(&req->job);
	req->job.is_mail = false;
	for (unsigned int i = 0; list != NULL && pairs[i] != NULL; i++) {
		/* a non-UTF-8 value makes json_string() NULL: the job
		   fails, as the SSO would refuse it anyway */
		if (json_array_append_new(list, json_string(pairs[i])) < 0) {
			json_decref(list);
			list = NULL;
		}
	}
	req->job.sso_ret = -1;
	snprintf(req->job.sso_error, sizeof(req->job.sso_error), "no answer");
	web_job_queue(req, list == NULL ? NULL :
		      json_pack("{s:s, s:o}", "op", "sso", "pairs", list),
		      resume);
}

void web_job_mail(struct web_request *req, const char *rcpt,
		  const char *message, web_resume_fn *resume)
{
	web_job_answers_free(&req->job);
	req->job.is_mail = true;
	req->job.mail_ret = -1;
	snprintf(req->job.mail_error, sizeof(req->job.mail_error),
		 "no answer");
	/* json_string() refuses non-UTF-8: the job then fails */
	web_job_queue(req, json_pack("{s:s, s:s, s:s}", "op", "mail",
				     "rcpt", rcpt, "message", message),
		      resume);
}

const struct lp_entitlement *
web_job_entitlement(const struct web_request *req, const char *user)
{
	const struct web_job *job = &req->job;

	if (!job->done)
		return NULL;
	for (unsigned int i = 0; i < job->ent_count; i++) {
		if (strcmp(job->ent_users[i], user) == 0)
			return &job->ents[i];
	}
	return NULL;
}

/* The worker's answer to req's job. */
static void web_job_answer(struct web_server *server,
			   struct web_request *req, const json_t *answer)
{
	struct web_job *job = &req->job;
	const json_t *ents = json_object_get(answer, "ents");

	if (json_is_array(ents) && json_array_size(ents) == job->ent_count) {
		for (unsigned int i = 0; i < job->ent_count; i++) {
			const json_t *e = json_array_get(ents, i);
			struct lp_entitlement *ent = &job->ents[i];
			const char *name = "", *user = "", *text = "";
			int login = 0, kind = LP_VERDICT_TEMPFAIL, reason = 0;
			int stale = 0, cached = 0;

			if (json_unpack((json_t *)e,
					"{s:i, s:s, s:s, s:i, s:i, s:b, s:s, s:b}",
					"login", &login, "name", &name,
					"user", &user, "kind", &kind,
					"reason", &reason, "stale", &stale,
					"text", &text, "cache", &cached) < 0)
				continue;	/* stays TEMPFAIL */
			memset(ent, 0, sizeof(*ent));
			ent->login = login;
			snprintf(ent->name, sizeof(ent->name), "%s", name);
			snprintf(ent->user, sizeof(ent->user), "%s", user);
			ent->verdict.kind = kind;
			ent->verdict.reason = reason;
			ent->verdict.stale = stale != 0;
			snprintf(ent->verdict.text, sizeof(ent->verdict.text),
				 "%s", text);
			ent->from_cache = cached != 0;
			if (ent->login == LP_LOGIN_OK &&
			    strchr(ent->user, '@') != NULL)
				ent->domain = lp_config_find_domain(
					server->config,
					strchr(ent->user, '@') + 1);
		}
	} else if (job->is_mail) {
		int ret = -1;
		const char *error = "malformed answer";

		if (json_unpack((json_t *)answer, "{s:i, s?s}", "ret", &ret,
				"error", &error) < 0)
			ret = -1;
		job->mail_ret = ret == 0 ? 0 : -1;
		snprintf(job->mail_error, sizeof(job->mail_error), "%s",
			 error);
	} else {
		int ret = -1, status = 0, valid = 0;
		const char *error = "malformed answer";

		if (json_unpack((json_t *)answer, "{s:i, s?i, s?b, s?s}",
				"ret", &ret, "status", &status,
				"valid", &valid, "error", &error) < 0)
			ret = -1;
		job->sso_ret = ret;
		job->sso_status = status;
		job->sso_valid = valid != 0;
		snprintf(job->sso_error, sizeof(job->sso_error), "%s", error);
	}
}

void web_worker_event(struct web_server *server, struct web_worker *worker)
{
	struct web_request *req = worker->req;
	char *buf;
	json_t *answer = NULL;
	ssize_t n;

	buf = malloc(WEB_WORKER_MSG_MAX + 1);
	if (buf == NULL)
		return;
	n = recv(worker->fd, buf, WEB_WORKER_MSG_MAX + 1, MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		free(buf);
		return;
	}
	if (n > 0 && n <= WEB_WORKER_MSG_MAX && req != NULL) {
		buf[n] = '\0';
		answer = json_loads(buf, 0, NULL);
	}
	free(buf);
	worker->req = NULL;
	if (answer == NULL) {
		/* died (its socket closed), or talks nonsense: replaced
		   on the next job */
		web_log(LP_LOG_ERROR, "worker %ld %s%s", (long)worker->pid,
			n == 0 ? "died" : "failed",
			req != NULL ? "; its request is answered with an "
			"error page" : "");
		web_worker_close(server, worker);
		if (req != NULL) {
			web_job_fail(req, "internal error (the lookup "
				     "process died)");
			web_job_done(req);
		}
	} else {
		web_job_answer(server, req, answer);
		json_decref(answer);
		web_job_done(req);
	}
	web_workers_dispatch(server);
	/* keep the pool full */
	if (worker->fd == -1 && !server->stopping)
		(void)web_worker_spawn(server, worker);
}

void web_workers_preinit(struct web_server *server)
{
	for (unsigned int i = 0; i < WEB_WORKERS_COUNT; i++) {
		server->workers[i].fd = -1;
		server->workers[i].pid = -1;
	}
}

int web_workers_init(struct web_server *server)
{
	for (unsigned int i = 0; i < WEB_WORKERS_COUNT; i++) {
		if (web_worker_spawn(server, &server->workers[i]) < 0)
			return -1;
	}
	return 0;
}

void web_workers_deinit(struct web_server *server)
{
	server->stopping = true;
	for (unsigned int i = 0; i < WEB_WORKERS_COUNT; i++) {
		struct web_worker *worker = &server->workers[i];
		struct web_request *req = worker->req;

		worker->req = NULL;
		web_worker_close(server, worker);
		if (req != NULL) {
			web_job_fail(req, "the page is stopping");
			web_job_done(req);
		}
	}
	/* nothing is queued once no worker runs: the dispatch fails it */
	web_workers_dispatch(server);
}

/* ---- the worker process ---- */

static json_t *web_worker_entitlements(struct lp_context *lp,
				       const json_t *users, bool refresh)
{
	json_t *ents = json_array();
	size_t i;
	json_t *user;

	json_array_foreach(users, i, user) {
		struct lp_entitlement ent;
		const char *login = json_string_value(user);

		if (login == NULL)
			login = "";
		if (refresh)
			lp_entitlement_refresh(lp, login, &ent);
		else
			lp_entitlement_check(lp, login, &ent);
		json_array_append_new(ents, json_pack(
			"{s:i, s:s, s:s, s:i, s:i, s:b, s:s, s:b}",
			"login", (int)ent.login, "name", ent.name,
			"user", ent.user, "kind", (int)ent.verdict.kind,
			"reason", (int)ent.verdict.reason,
			"stale", (int)ent.verdict.stale,
			"text", ent.verdict.text,
			"cache", (int)ent.from_cache));
	}
	return json_pack("{s:o}", "ents", ents);
}

bool web_openid_answer_is_valid(char *answer)
{
	bool valid = false;

	/* Key-value form: "is_valid:true" on a line of its own. */
	for (char *line = answer; line != NULL; ) {
		char *nl = strchr(line, '\n');

		if (nl != NULL)
			*nl++ = '\0';
		if (strcmp(line, "is_valid:true") == 0)
			valid = true;
		line = nl;
	}
	return valid;
}

static json_t *web_worker_sso(struct lp_context *lp,
			      const struct lp_config *config,
			      const json_t *list)
{
	size_t count = json_array_size(list);
	const char **pairs;
	struct lp_error err;
	char *body = NULL;
	long status;
	json_t *answer;
	bool valid;

	pairs = calloc(count + 1, sizeof(*pairs));
	if (pairs == NULL)
		return json_pack("{s:i, s:s}", "ret", -1, "error",
				 "out of memory");
	for (size_t i = 0; i < count; i++) {
		pairs[i] = json_string_value(json_array_get(list, i));
		if (pairs[i] == NULL)
			pairs[i] = "";
	}
	/* liblaunchpad's client: its timeouts, TLS checks and size cap */
	if (lp_http_post_form(lp, config->sso_url, pairs, &status, &body,
			      &err) < 0) {
		free(pairs);
		return json_pack("{s:i, s:s}", "ret", -1, "error", err.text);
	}
	free(pairs);
	valid = status == 200 && body != NULL &&
		web_openid_answer_is_valid(body);
	free(body);
	answer = json_pack("{s:i, s:i, s:b}", "ret", 0, "status", (int)status,
			   "valid", (int)valid);
	return answer;
}

static json_t *web_worker_mail(const struct lp_config *config,
			       const json_t *job)
{
	const char *rcpt = NULL, *message = NULL;
	struct lp_error err;

	if (json_unpack((json_t *)job, "{s:s, s:s}", "rcpt", &rcpt,
			"message", &message) < 0)
		return json_pack("{s:i, s:s}", "ret", -1, "error",
				 "malformed mail job");
	/* libcurl's SMTP client: bounded by http_timeout */
	if (lp_mail_send(config, rcpt, message, &err) < 0)
		return json_pack("{s:i, s:s}", "ret", -1, "error", err.text);
	return json_pack("{s:i}", "ret", 0);
}

int web_worker_main(const char *path, const struct lp_log *log)
{
	struct lp_config *config;
	struct lp_context *lp;
	struct lp_error err;
	char *buf;
	int ret = EXIT_FAILURE;

	if (lp_config_load(path, &config, &err) < 0) {
		web_log(LP_LOG_ERROR, "worker: %s", err.text);
		return EXIT_FAILURE;
	}
	if (lp_context_create_web(config, log, &lp, &err) < 0) {
		web_log(LP_LOG_ERROR, "worker: %s", err.text);
		lp_config_free(&config);
		return EXIT_FAILURE;
	}
	buf = malloc(WEB_WORKER_MSG_MAX + 1);
	while (buf != NULL) {
		ssize_t n = recv(WEB_WORKER_FD, buf, WEB_WORKER_MSG_MAX + 1,
				 MSG_TRUNC);
		const char *op = NULL;
		json_t *job, *answer = NULL;
		char *text;

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			/* the main process is gone or stopping */
			ret = EXIT_SUCCESS;
			break;
		}
		if (n < 0 || n > WEB_WORKER_MSG_MAX)
			break;
		buf[n] = '\0';
		job = json_loads(buf, 0, NULL);
		/* a mail job carries a confirmation link */
		sodium_memzero(buf, (size_t)n);
		if (json_unpack(job, "{s:s}", "op", &op) == 0) {
			if (strcmp(op, "check") == 0 ||
			    strcmp(op, "refresh") == 0)
				answer = web_worker_entitlements(
					lp, json_object_get(job, "users"),
					strcmp(op, "refresh") == 0);
			else if (strcmp(op, "sso") == 0)
				answer = web_worker_sso(
					lp, config,
					json_object_get(job, "pairs"));
			else if (strcmp(op, "mail") == 0)
				answer = web_worker_mail(config, job);
		}
		web_job_json_wipe(job);
		json_decref(job);
		text = answer == NULL ? NULL :
			json_dumps(answer, JSON_COMPACT);
		json_decref(answer);
		if (text == NULL) {
			web_log(LP_LOG_ERROR, "worker: malformed job");
			break;
		}
		n = send(WEB_WORKER_FD, text, strlen(text), MSG_NOSIGNAL);
		free(text);
		if (n < 0)
			break;
	}
	free(buf);
	lp_context_destroy(&lp);
	lp_config_free(&config);
	return ret;
}
