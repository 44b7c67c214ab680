#ifndef DOVEADM_LAUNCHPAD_H
#define DOVEADM_LAUNCHPAD_H

#include "launchpad.h"

#define DOVEADM_LAUNCHPAD_DEFAULT_CONFIG \
	"/etc/dovecot/dovecot-launchpad.conf.ext"

/* doveadm-launchpad-context.c: what every `doveadm launchpad` command
   opens: the config named by plugin { launchpad_config }, the TDB cache
   and the Launchpad client. */
struct doveadm_launchpad {
	struct lp_config *config;
	struct lp_context *ctx;
	uid_t uid;
	gid_t gid;
};

/* Returns 0, or -1 after logging why and setting doveadm_exit_code. */
int doveadm_launchpad_open(struct doveadm_launchpad **lp_r);
/* NULL-safe. */
void doveadm_launchpad_close(struct doveadm_launchpad **lp);

/* Runs the decision for user; on anything but an allow logs the reason,
   sets doveadm_exit_code and returns -1. */
int doveadm_launchpad_require_entitled(struct doveadm_launchpad *lp,
				       const char *user,
				       struct lp_entitlement *ent_r);

/* ---- doveadm-launchpad-cutoff.c ---- */

/* Flushes name's entries (bare and name@<every domain>) from the auth
   master's cache, or the whole cache when name is NULL. Returns the count
   flushed, or -1. */
int doveadm_launchpad_flush_auth_cache(struct doveadm_launchpad *lp,
				       const char *name);

struct doveadm_launchpad_cutoff {
	int flushed;	/* auth cache entries flushed, -1 failed */
	int kicked;	/* live sessions ended, -1 failed */
	bool failed;	/* something still works: logged, EX_TEMPFAIL set */
};

/* After a revoke, reset, ban or deprovisioning (what names it in log
   lines): flushes name's entries (bare and name@<every domain>) from
   Dovecot's auth cache and, with kick, ends the live IMAP/POP3 sessions
   of user (NULL: name@<every domain>) through base_dir/anvil.  Whatever
   fails is logged with what still works and until when (auth_cache_ttl
   from now, for the cache), and doveadm_exit_code becomes EX_TEMPFAIL. */
void doveadm_launchpad_cut_off(struct doveadm_launchpad *lp, const char *name,
			       const char *user, const char *what, bool kick,
			       struct doveadm_launchpad_cutoff *result_r);

/* ---- doveadm-launchpad-context.c ---- */

/* The canonical "name@domain" of user (bare "name": first domain) and its
   home, without asking Launchpad.  Returns 0, or -1 after logging why
   (naming the user) and setting doveadm_exit_code. */
int doveadm_launchpad_user_home(struct doveadm_launchpad *lp,
				const char *user, const char **user_r,
				const char **name_r, const char **home_r);

/* "" for 0, else local "YYYY-MM-DD HH:MM:SS" (data stack). */
const char *doveadm_launchpad_time(time_t t);

struct kr_keyfile;
struct kr_keys;

/* Reads one app password from stdin into sodium_malloc'd memory (free with
   sodium_free); NULL on EOF or an over-long line. */
char *doveadm_launchpad_read_password(void);
/* Unlocks kf with an app password read from stdin. Returns 1 with keys,
   0 if none was given or it opens no slot (logged), -1 on error (logged). */
int doveadm_launchpad_unlock(struct kr_keyfile *kf, struct kr_keys **keys_r);
/* The same with a password already read. */
int doveadm_launchpad_unlock_with(struct kr_keyfile *kf, const char *password,
				  struct kr_keys **keys_r);

extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_cache_show;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_forward_set;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_forward_show;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_forward_clear;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_cache_invalidate;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_password_generate;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_ban;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_unban;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_cache_list;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_password_list;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_password_revoke;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_password_reset;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_ban_list;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_refresh;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_sync;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_status;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_backup;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_backend_assign;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_backend_show;
extern struct doveadm_cmd_ver2 doveadm_cmd_launchpad_backend_list;

/* doveadm-launchpad-sync.c: the smtp-submit settings root, registered at
   plugin init so doveadm reads submission_host / sendmail_path. */
void doveadm_launchpad_sync_init(void);
/* doveadm-launchpad-cutoff.c: the root of the two auth settings
   doveadm_launchpad_cut_off() reports (auth_cache_size, _ttl). */
void doveadm_launchpad_cutoff_init(void);

#endif
