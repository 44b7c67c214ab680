/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef WEB_PRIVATE_H
#define WEB_PRIVATE_H

/* dovecot-launchpad-web: what crosses files inside src/web.

   One event loop, one thread: libmicrohttpd runs in external-polling mode
   (web-main.c waits on its epoll fd and calls MHD_run()), so sessions,
   sign-ins and rate limits need no lock.  What waits on the network
   (Launchpad lookups, the OpenID check_authentication POST) runs in worker
   processes (web-worker.c): the handler queues a job, its connection is
   suspended, and a continuation finishes the page with the answer.  Local
   work stays on the loop: an Argon2id derivation holds other clients for
   its duration (about 0.3 s).

   Sessions, pending sign-ins and rate-limit buckets live in fixed-size
   tables in memory: a restart signs everyone out, which is the safe
   direction.  Nothing secret is ever logged or put in a URL. */

#include "launchpad.h"
#include "keyring.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#define WEB_NAME "dovecot-launchpad-web"
#define WEB_DEFAULT_CONFIG "/etc/dovecot/dovecot-launchpad.conf.ext"

/* 32 random bytes, hex: session ids, CSRF tokens, sign-in states. */
#define WEB_TOKEN_BYTES 32
#define WEB_TOKEN_HEX (WEB_TOKEN_BYTES * 2)

#define WEB_SESSIONS_MAX 4096
#define WEB_LOGINS_MAX 1024
/* Pending sign-ins one client address (IPv4, or IPv6 /64) may hold. */
#define WEB_LOGINS_PER_CLIENT 8
/* A sign-in started must come back from the SSO within this. */
#define WEB_LOGIN_TTL_SECS (10 * 60)
#define WEB_LIMITS_MAX 4096
#define WEB_USER_LIMITS_MAX 4096
/* "2001:0db8:0000:0000:0000:0000:0000:0000/64" and a NUL, with room. */
#define WEB_CLIENT_MAX 64
/* a notice naming a forwarding address of LP_FORWARD_ADDRESS_MAX bytes */
#define WEB_NOTICE_MAX 512
#define WEB_URL_MAX 4096

/* Request limits: forms are tiny; anything bigger is refused with 413. */
#define WEB_BODY_MAX (16 * 1024)
#define WEB_FORM_FIELDS_MAX 16
/* Header bytes per connection (MHD answers 431 beyond). */
#define WEB_CONNECTION_MEMORY (32 * 1024)
#define WEB_CONNECTIONS_MAX 256
#define WEB_PER_IP_CONNECTIONS_MAX 128
/* Idle seconds before a (slow) client is dropped. */
#define WEB_CONNECTION_TIMEOUT_SECS 15

/* __Host-: browsers accept them only Secure, with Path=/ and without
   Domain, so no other host of the site can set or shadow them. */
#define WEB_SESSION_COOKIE "__Host-dlpw_session"
#define WEB_LOGIN_COOKIE "__Host-dlpw_login"

/* Worker processes for the blocking work (web-worker.c). */
#define WEB_WORKERS_COUNT 4
/* A job or an answer: the OpenID arguments are under the connection
   memory limit, a page asks for one user per domain. */
#define WEB_WORKER_MSG_MAX (128 * 1024)

/* OpenID: the response_nonce's clock may differ from ours this much. */
#define WEB_NONCE_SKEW_SECS (5 * 60)

/* ---- growing text buffers (web-buf.c) ---- */

struct web_buf {
	char *data;		/* NUL-terminated, or NULL when empty */
	size_t len, size;
	bool failed:1;		/* out of memory: the page becomes a 500 */
	bool secret:1;		/* holds a password: wiped before free */
};

void web_buf_append(struct web_buf *buf, const char *text);
void web_buf_append_n(struct web_buf *buf, const char *text, size_t len);
void web_buf_printf(struct web_buf *buf, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends text HTML-escaped (& < > " ' all escaped: safe in attributes). */
void web_buf_html(struct web_buf *buf, const char *text);
/* Wipes (when secret) and frees. */
void web_buf_free(struct web_buf *buf);

/* ---- the server ---- */

struct web_session {
	char id[WEB_TOKEN_HEX + 1];	/* "" = free slot */
	char csrf[WEB_TOKEN_HEX + 1];
	char name[LP_NAME_MAX + 1];	/* the signed-in Launchpad name */
	/* the address Ubuntu One vouched for at sign-in (SReg email), or "" */
	char email[LP_FORWARD_ADDRESS_MAX + 1];
	time_t expires;
	char notice[WEB_NOTICE_MAX];	/* shown once on the next page */
};

struct web_login {
	char state[WEB_TOKEN_HEX + 1];	/* "" = free slot; in return_to */
	char browser[WEB_TOKEN_HEX + 1];	/* in the login cookie */
	char client[WEB_CLIENT_MAX];	/* who started it (client key) */
	time_t expires;
};

struct web_limit {
	char key[LP_USER_MAX + 8];	/* "<kind>:<client key or name>" */
	unsigned int burst;
	double per_secs;
	double tokens;
	double last;			/* monotonic seconds */
};

struct web_request;
/* A handler's continuation: runs once its job is answered. */
typedef void web_resume_fn(struct web_request *req);

/* Blocking work a request waits for (web-worker.c). */
struct web_job {
	web_resume_fn *resume;	/* set from queueing until it has run */
	bool done;		/* answered (the answers below are valid) */
	bool suspended;		/* MHD connection suspended meanwhile */
	char *msg;		/* the JSON for a worker, until sent */
	struct web_request *next;	/* in the server's queue */
	/* entitlements: one per user asked */
	unsigned int ent_count;
	char (*ent_users)[LP_USER_MAX + 1];
	struct lp_entitlement *ents;
	/* check_authentication: ret -1 = not reached (sso_error says why),
	   else the HTTP status and whether the answer said is_valid:true */
	int sso_ret;
	long sso_status;
	bool sso_valid;
	char sso_error[LP_TEXT_MAX];
	/* a confirmation mail: 0 = handed to web_smtp_url, -1 = not (why) */
	bool is_mail;
	int mail_ret;
	char mail_error[LP_TEXT_MAX];
};

/* A forwarding confirmation being mailed (web-forward.c): what its
   continuation needs.  token is the link's secret: wiped once used. */
struct web_fwd_mail {
	char name[LP_USER_MAX + 1];	/* the session's, owner of the link */
	char user[LP_USER_MAX + 1];
	char address[LP_FORWARD_ADDRESS_MAX + 1];
	char token[LP_FWDCONFIRM_TOKEN_HEX + 1];
};

/* One worker process and the request whose job it runs, or NULL. */
struct web_worker {
	pid_t pid;		/* -1 = none (spawned on the next job) */
	int fd;			/* the main process's end of the socketpair */
	struct web_request *req;
};


struct web_server {
	struct lp_config *config;
	struct lp_context *lp;
	uid_t uid;
	gid_t gid;
	struct MHD_Daemon *daemon;

	char web_origin[WEB_URL_MAX];	/* scheme://host[:port] of web_url */
	char sso_origin[WEB_URL_MAX];	/* scheme://host[:port] of sso_url */
	char mail_host[LP_DOMAIN_MAX + 1];

	/* web_trusted_proxies: peers whose X-Real-IP names the client */
	struct lp_net *trusted_proxies;
	unsigned int trusted_proxies_count;

	struct web_session sessions[WEB_SESSIONS_MAX];
	struct web_login logins[WEB_LOGINS_MAX];
	struct web_limit limits[WEB_LIMITS_MAX];	/* per client address */
	struct web_limit user_limits[WEB_USER_LIMITS_MAX];	/* per user */
	/* monotonic seconds for the rate limits (tests move it) */
	double (*clock)(void);
	time_t last_prune;

	/* the workers (web-worker.c) and the main loop's epoll fd, which
	   holds their sockets and libmicrohttpd's epoll fd */
	const char *config_path;
	int epoll_fd;
	struct web_worker workers[WEB_WORKERS_COUNT];
	struct web_request *queue_head, *queue_tail;
	bool stopping;
};

/* One HTTP request and the response being built for it. */
struct web_request {
	struct web_server *server;
	struct MHD_Connection *conn;
	const char *method;
	const char *path;
	/* the client's address (X-Real-IP from a trusted proxy), and the
	   key its limits and sign-ins count under: the IPv4 address or the
	   IPv6 /64 */
	char client[WEB_CLIENT_MAX];
	char client_key[WEB_CLIENT_MAX];
	bool is_post:1;
	bool too_large:1;
	bool form_bad:1;		/* not a form we accept: 400 */

	size_t body_len;		/* POST body bytes received */
	struct MHD_PostProcessor *form_pp;	/* decodes the form */
	unsigned int form_count;
	char *form_names[WEB_FORM_FIELDS_MAX];
	struct web_buf form_values[WEB_FORM_FIELDS_MAX];	/* secret */

	struct web_session *session;	/* a live session, or NULL */
	/* the handler's route (POST), run again by its continuation */
	void (*route)(struct web_request *req);
	struct web_job job;
	struct web_fwd_mail fwd_mail;	/* secret (token) */

	/* response */
	unsigned int status;
	struct web_buf body;
	const char *content_type;
	char location[WEB_URL_MAX];	/* for 303 */
	char disposition[WEB_URL_MAX];	/* Content-Disposition, or "" */
	char cookies[3][256];
	unsigned int cookie_count;
	bool no_store:1;
	bool cacheable:1;		/* the stylesheet */
};

/* ---- web-http.c ---- */

/* Starts MHD on config->web_listen in external-polling mode. */
int web_http_start(struct web_server *server, const char **error_r);
void web_http_stop(struct web_server *server);

/* ---- web-form.c ---- */

/* Starts decoding a POST's form (its Content-Type must be
   application/x-www-form-urlencoded), feeds it a piece of the body, ends
   it: web_form_end() returns FALSE for a form to refuse (400). */
void web_form_begin(struct web_request *req);
void web_form_feed(struct web_request *req, const char *data, size_t size);
bool web_form_end(struct web_request *req);
/* Wipes and frees the fields (and a post processor not yet ended). */
void web_form_free(struct web_request *req);
/* A form field of a POST, or NULL (a form with a repeated field is
   refused before any handler runs). */
const char *web_form_get(const struct web_request *req, const char *name);

/* ---- web-request.c ---- */

/* A header of the request, or NULL. */
const char *web_header_get(const struct web_request *req, const char *name);
/* A URL query argument, or NULL. */
const char *web_query_get(const struct web_request *req, const char *name);
/* A cookie of the request, or NULL. */
const char *web_cookie_get(const struct web_request *req, const char *name);
/* Adds a Set-Cookie: name=value with HttpOnly, Secure, Path=/ and the
   given SameSite; max_age < 0 = session cookie, 0 = delete. */
void web_cookie_set(struct web_request *req, const char *name,
		    const char *value, const char *same_site, long max_age);
/* A 303 to path (below web_url) or an absolute URL. */
void web_redirect(struct web_request *req, const char *target);
/* The entitlement of user for this request, from its answered job: true
   with ent_r filled, or false after queueing the lookup with resume (the
   handler returns; resume runs it again). */
bool web_entitlement_get(struct web_request *req, const char *user,
			 web_resume_fn *resume, struct lp_entitlement *ent_r);
/* In a continuation: the request's session again (it may have ended
   meanwhile).  Returns false with a redirect to the sign-in page set. */
bool web_session_again(struct web_request *req);
/* The continuation of a POST route: runs req->route again. */
void web_post_resume(struct web_request *req);

/* ---- web-session.c ---- */

/* Fills buf (WEB_TOKEN_HEX + 1) with a fresh random token. */
void web_token_new(char buf[WEB_TOKEN_HEX + 1]);
/* Constant-time comparison of two tokens; false unless both are full. */
bool web_token_equal(const char *a, const char *b);

/* The live session of the request's cookie, or NULL (an expired one is
   freed on the way). */
struct web_session *web_session_find(struct web_server *server,
				     const char *id);
/* A new session for name (evicting the oldest if full). */
struct web_session *web_session_create(struct web_server *server,
				       const char *name);
void web_session_destroy(struct web_session *session);

/* A new pending sign-in of client (its client key); returns it (state
   and browser filled), or NULL when the table is full of other clients'
   single sign-ins (answer 503). */
struct web_login *web_login_create(struct web_server *server,
				   const char *client);
/* Takes (and frees) the pending sign-in of state if browser matches and it
   has not expired.  Returns true if it did. */
bool web_login_take(struct web_server *server, const char *state,
		    const char *browser);

/* Drops expired sessions and sign-ins. */
void web_session_prune(struct web_server *server);

/* ---- web-limit.c ---- */

enum web_limit_table {
	WEB_LIMIT_ADDR,		/* keys of client addresses */
	WEB_LIMIT_USER,		/* keys of signed-in users */
};

enum web_limit_result {
	WEB_LIMIT_OK,
	WEB_LIMIT_EMPTY,	/* this key's bucket is empty: 429 */
	WEB_LIMIT_FULL,		/* a new key, and no bucket has refilled
				   to make room: 429 too */
};

/* Takes one token from key's bucket in table (burst tokens, one more
   every per_secs seconds). */
enum web_limit_result
web_limit_take(struct web_server *server, enum web_limit_table table,
	       const char *key, unsigned int burst, double per_secs);
/* CLOCK_MONOTONIC in seconds: server->clock by default. */
double web_clock_monotonic(void);

/* ---- web-http.c: who the client is ---- */

/* The rate-limit key of an address (16 bytes, IPv4 mapped): the IPv4
   address, or the IPv6 /64 as "<prefix>::/64". */
void web_client_key(const unsigned char addr[16], char *key_r, size_t size);

/* ---- web-csrf.c ---- */

/* True if the POST carries the session's CSRF token and, when the browser
   sent an Origin header, it is web_url's origin. */
bool web_csrf_check(const struct web_request *req);

/* ---- web-openid.c ---- */

/* The checkid_setup URL to send the browser to for this sign-in. */
int web_openid_begin_url(struct web_server *server, const char *state,
			 char *url_r, size_t size);

/* Verifies the positive assertion in req's query (doc/DESIGN.md section
   10), in two steps: web_openid_verify() checks what it can here and
   queues the check_authentication POST (resume runs with its answer):
   returns 1 queued, 0 refused (reason_r says why, in words for the
   page), -1 error.  From resume, web_openid_verify_end() returns 1 with
   the Launchpad name (and the signed SReg email, or ""), 0 refused, -1
   when the SSO could not be reached. */
int web_openid_verify(struct web_request *req, const char *state,
		      web_resume_fn *resume, char *reason_r,
		      size_t reason_size);
int web_openid_verify_end(struct web_request *req,
			  char name_r[LP_NAME_MAX + 1],
			  char email_r[LP_FORWARD_ADDRESS_MAX + 1],
			  char *reason_r, size_t reason_size);


/* ---- web-mailbox.c: keyfiles through src/keyring ---- */

struct web_device {
	unsigned int id;
	char label[KR_LABEL_MAX + 1];
	time_t created;
	time_t last_used;	/* 0 = never */
};

struct web_mailbox {
	char user[LP_USER_MAX + 1];	/* name@domain */
	char home[4096];
	char keyfile[4096 + 16];
	bool activated;
	bool orphan_db;		/* no keyfile, but a mailbox database */
	unsigned int device_count;
	struct web_device devices[KR_SLOTS_MAX];
};

/* Reads what the page shows of name@domain's keyfile.  Returns 0, -1 on a
   corrupt keyfile or I/O error (logged). */
int web_mailbox_read(struct web_server *server, const char *name,
		     const char *domain, struct web_mailbox *mbox_r);

/* The mailbox actions.  password_r (KR_PASSWORD_BUFSIZE) gets a fresh app
   password to show once; the caller wipes it.  Return 1 done, 0 refused
   (why_r says why, for the page), -1 error (logged, why_r filled). */
int web_mailbox_activate(struct web_server *server, const char *name,
			 const char *domain, const char *label,
			 char *password_r, char *why_r, size_t why_size);
int web_mailbox_add_device(struct web_server *server, const char *name,
			   const char *domain, const char *label,
			   const char *existing_password, char *password_r,
			   char *why_r, size_t why_size);
/* What a revoke or reset did beyond the keyfile. */
struct web_cutoff {
	int flushed;		/* auth cache entries flushed, -1 failed */
	int kicked;		/* live sessions ended, -1 failed */
	unsigned int kept;	/* processes that could not be ended */
};

int web_mailbox_revoke(struct web_server *server, const char *name,
		       const char *domain, unsigned int slot_id,
		       struct web_cutoff *cut_r, char *why_r, size_t why_size);
/* moved_r (WEB_MOVED_MAX) gets the moved-aside home, "" if there was
   none. */
#define WEB_MOVED_MAX 4096
int web_mailbox_reset(struct web_server *server, const char *name,
		      const char *domain, const char *label,
		      char *password_r, char *moved_r,
		      struct web_cutoff *cut_r, char *why_r, size_t why_size);

/* ---- web-forward.c: "Forward my mail" ---- */

/* The forwarding part of a domain's section for user (entitled now) whose
   home is home: the current state and the form posting to /forward. */
void web_forward_section(struct web_request *req, const char *user,
			 const char *domain, const char *home);
/* POST /forward for user (entitled now): turns forwarding to the
   session's Ubuntu One address on (keep a copy or not) or off, queues
   the admin notification; for another address (forward=confirm) mails
   a confirmation link there (limited per user and per address; a
   worker sends it and the request continues when it has).
   Returns 1 done (notice_r says what), 0 with the error page set or the
   mail queued. */
int web_forward_post(struct web_request *req, const char *user,
		     const char *home, char *notice_r, size_t notice_size);
/* GET /forward/confirm?t=<token>: what the link would do and a button
   (changes nothing). */
void web_forward_confirm_page(struct web_request *req);
/* POST /forward/confirm (session, CSRF checked): uses the token up for
   the signed-in user, still entitled, and turns forwarding on. */
void web_post_forward_confirm(struct web_request *req);

/* ---- web-pages.c ---- */

/* Routes one complete request and fills its response (or queues a job:
   req->job.resume set). */
void web_pages_handle(struct web_request *req);

/* ---- web-layout.c ---- */

/* The page's frame: everything before and after its sections. */
void web_page_begin(struct web_request *req, const char *title);
void web_page_end(struct web_request *req);
/* The session's CSRF token, and a hidden field, as form inputs. */
void web_csrf_field(struct web_request *req);
void web_hidden(struct web_request *req, const char *name,
		const char *value);
/* Replaces the response with an error page. */
void web_page_error(struct web_request *req, unsigned int status,
		    const char *title, const char *text);

/* ---- web-recheck.c: why not entitled, and "Check again" ---- */

/* The denied domain's section body: the reason, what fixes it (a link to
   the Launchpad page) and the "Check again" form. */
void web_status_denied(struct web_request *req,
		       const struct lp_domain *domain,
		       const struct lp_entitlement *ent);
/* POST /recheck: asks Launchpad again for the session's user at the
   form's domain (rate-limited per user), back to the page with the new
   answer. */
void web_post_recheck(struct web_request *req);

/* ---- web-autoconfig.c: Mozilla autoconfig ---- */

/* True for the two paths mail clients request the document at. */
bool web_autoconfig_path(const char *path);
void web_autoconfig_handle(struct web_request *req);

/* ---- web-mobileconfig.c: Apple configuration profiles ---- */

/* On a page showing a new app password: the form that downloads the
   profile holding it (the password goes back in the POST: nothing is
   kept on the server). */
void web_mobileconfig_offer(struct web_request *req, const char *user,
			    const char *label, const char *password);
/* POST /device/profile: the .mobileconfig, as an attachment. */
void web_post_mobileconfig(struct web_request *req);

/* ---- web-worker.c: blocking work off the main loop ---- */

/* No workers yet (before anything can fail). */
void web_workers_preinit(struct web_server *server);
/* Spawns the workers (server->epoll_fd, config_path set).  Returns 0, -1
   (logged). */
int web_workers_init(struct web_server *server);
/* Answers every queued and running job as failed (their connections
   resumed), stops the workers. */
void web_workers_deinit(struct web_server *server);
/* A worker's socket is readable: its answer, or its death. */
void web_worker_event(struct web_server *server, struct web_worker *worker);

/* Queue a job for req and return from the handler: resume runs with the
   answers (through web-http.c, the connection suspended meanwhile).  A
   job that cannot run is answered at once as failed: every verdict
   TEMPFAIL, the SSO unreachable. */
void web_job_entitlements(struct web_request *req, const char *const *users,
			  unsigned int count, bool refresh,
			  web_resume_fn *resume);
/* check_authentication: pairs (NULL-terminated) POSTed to sso_url. */
void web_job_sso_post(struct web_request *req, const char *const *pairs,
		      web_resume_fn *resume);
/* Mails message to rcpt through web_smtp_url (lp_mail_send); message is
   copied and the copies wiped once sent. */
void web_job_mail(struct web_request *req, const char *rcpt,
		  const char *message, web_resume_fn *resume);
/* The answered verdict for user (as asked), or NULL. */
const struct lp_entitlement *
web_job_entitlement(const struct web_request *req, const char *user);
void web_job_free(struct web_request *req);

/* True if a check_authentication answer (key-value form) says
   is_valid:true on a line of its own (the worker's parse).  Changes
   answer. */
bool web_openid_answer_is_valid(char *answer);
/* `dovecot-launchpad-web -w`: a worker on fd 3.  Returns the exit code. */
int web_worker_main(const char *path, const struct lp_log *log);

/* ---- web-log.c ---- */

/* One log line on stderr (the journal under systemd): never secrets. */
void web_log(enum lp_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
