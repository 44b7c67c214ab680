/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The mailbox actions of the page, through src/keyring only, with the
   semantics of `doveadm launchpad password generate|revoke|reset`: the
   keyfile is ~/sqlbox.keys, changed only under its lock (kr_keyfile_begin
   .. commit, so a doveadm revoke running meanwhile is never undone) and
   written atomically as uid/gid; a reset moves the old home aside as
   "<home>.reset-<UTC time>" and never deletes it.  After a revoke or a
   reset Dovecot's auth cache is flushed and the user's live IMAP/POP3
   sessions are ended; what failed of that is reported, not hidden.
   The callers have checked the session, the CSRF token and the
   entitlement; the keyfile path is derived from the session's name, never
   from the form, so a slot id can only ever name a slot of one's own. */

#include "web-private.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#define WEB_KEYFILE "/sqlbox.keys"
#define WEB_RESET_TRIES 9
#define WEB_PATH_MAX 4096
/* The daemon is single-threaded: a writer holding the keyfile (one or
   two Argon2id derivations) is waited for this long at most. */
#define WEB_KEYFILE_LOCK_MSECS 5000

static int web_mailbox_paths(struct web_server *server, const char *name,
			     const char *domain, struct web_mailbox *mbox)
{
	memset(mbox, 0, sizeof(*mbox));
	snprintf(mbox->user, sizeof(mbox->user), "%s@%s", name, domain);
	if (lp_config_expand_home(server->config, name, domain, mbox->home,
				  sizeof(mbox->home)) < 0) {
		web_log(LP_LOG_ERROR, "%s: home path too long", mbox->user);
		return -1;
	}
	snprintf(mbox->keyfile, sizeof(mbox->keyfile), "%s" WEB_KEYFILE,
		 mbox->home);
	return 0;
}

/* Creates home and missing parents, owned by uid/gid (when we may chown),
   mode 0700. */
static int web_mailbox_mkdir(struct web_server *server, const char *path)
{
	char parent[WEB_PATH_MAX];
	const char *slash;
	struct stat st;

	if (stat(path, &st) == 0)
		return 0;
	if (errno != ENOENT) {
		web_log(LP_LOG_ERROR, "stat(%s) failed: %s", path,
			strerror(errno));
		return -1;
	}
	slash = strrchr(path, '/');
	if (slash != NULL && slash != path &&
	    (size_t)(slash - path) < sizeof(parent)) {
		memcpy(parent, path, (size_t)(slash - path));
		parent[slash - path] = '\0';
		if (web_mailbox_mkdir(server, parent) < 0)
			return -1;
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		web_log(LP_LOG_ERROR, "mkdir(%s) failed: %s", path,
			strerror(errno));
		return -1;
	}
	if (geteuid() == 0 && chown(path, server->uid, server->gid) < 0) {
		web_log(LP_LOG_ERROR, "chown(%s) failed: %s", path,
			strerror(errno));
		return -1;
	}
	return 0;
}

static int web_mailbox_recovery_pk(struct web_server *server,
				   unsigned char pk[KR_PUBLIC_KEY_BYTES],
				   const unsigned char **pk_r)
{
	*pk_r = NULL;
	if (server->config->recovery_public_key == NULL)
		return 0;
	if (kr_public_key_decode(server->config->recovery_public_key, pk) < 0) {
		web_log(LP_LOG_ERROR, "%s: recovery_public_key is not a "
			"base64 X25519 key", server->config->path);
		return -1;
	}
	*pk_r = pk;
	return 0;
}

static int web_mailbox_commit(const struct web_mailbox *mbox,
			      struct kr_keyfile_txn **txn,
			      const struct kr_keyfile *kf)
{
	struct kr_error err;

	if (kr_keyfile_commit(txn, kf, &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox->user, err.text);
		return -1;
	}
	return 0;
}

/* Locks and reads the keyfile.  Returns 1, 0 (no keyfile, or no home),
   -1 (logged; why_r says so for the page). */
static int web_mailbox_begin(struct web_server *server,
			     const struct web_mailbox *mbox,
			     struct kr_keyfile_txn **txn_r,
			     struct kr_keyfile **kf_r,
			     char *why_r, size_t why_size)
{
	struct kr_error err;
	int ret;

	ret = kr_keyfile_begin(mbox->keyfile, server->uid, server->gid,
			       WEB_KEYFILE_LOCK_MSECS, txn_r, kf_r, &err);
	if (ret >= 0)
		return ret;
	if (err.kind == KR_ERR_NOT_FOUND)
		return 0;
	web_log(LP_LOG_ERROR, "%s: %s", mbox->user, err.text);
	if (err.kind == KR_ERR_LOCKED) {
		snprintf(why_r, why_size, "another change of %s is still "
			 "running; nothing was changed, please try again",
			 mbox->user);
	} else {
		snprintf(why_r, why_size, "the mailbox could not be updated "
			 "(the server log says why); nothing was changed");
	}
	return -1;
}

/* Flushes name from Dovecot's auth cache and ends user's live sessions;
   what failed is logged and left in cut_r for the page. */
static void web_mailbox_cut_off(struct web_server *server, const char *name,
				const char *user, struct web_cutoff *cut_r)
{
	const char *users[] = { user, NULL };
	struct lp_kick_result kick;
	struct lp_error err;

	memset(cut_r, 0, sizeof(*cut_r));
	cut_r->flushed = lp_auth_cache_flush(server->config,
					     server->config->web_auth_socket,
					     name, &err);
	if (cut_r->flushed < 0) {
		web_log(LP_LOG_ERROR, "%s: flushing Dovecot's auth cache "
			"failed: %s; a password it cached keeps working until "
			"the entry expires (auth_cache_ttl)", user, err.text);
	}
	if (lp_kick_users(server->config->web_anvil_socket, users, &kick,
			  &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: ending live sessions failed: %s; "
			"they keep working until they log out", user,
			err.text);
		cut_r->kicked = -1;
	} else {
		cut_r->kicked = (int)kick.sessions;
		cut_r->kept = kick.shared + kick.failed;
		if (cut_r->kept > 0) {
			web_log(LP_LOG_ERROR, "%s: %u processes serving other "
				"users too (or not ours to signal) were not "
				"ended", user, cut_r->kept);
		}
	}
}

/* An activation never buries mail: a home with a database and no
   keyfile.  TRUE if the database is there. */
static bool web_mailbox_has_orphan_db(const struct web_mailbox *mbox)
{
	char db[WEB_PATH_MAX + 32];
	struct stat st;

	snprintf(db, sizeof(db), "%s/%s", mbox->home, KR_MAILBOX_DB);
	return lstat(db, &st) == 0 || errno != ENOENT;
}

static int web_mailbox_failed(char *why_r, size_t why_size)
{
	snprintf(why_r, why_size, "the mailbox could not be updated "
		 "(the server log says why); nothing was changed");
	return -1;
}

int web_mailbox_read(struct web_server *server, const char *name,
		     const char *domain, struct web_mailbox *mbox_r)
{
	struct kr_keyfile *kf;
	struct kr_slot_info info;
	struct kr_error err;
	char keyfile_id[KR_KEYFILE_ID_BUFSIZE];
	int ret;

	if (web_mailbox_paths(server, name, domain, mbox_r) < 0)
		return -1;
	ret = kr_keyfile_read(mbox_r->keyfile, &kf, &err);
	if (ret < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox_r->user, err.text);
		return -1;
	}
	if (ret == 0) {
		mbox_r->orphan_db = web_mailbox_has_orphan_db(mbox_r);
		return 0;
	}
	kr_keyfile_id(kf, keyfile_id);
	mbox_r->activated = true;
	mbox_r->device_count = kr_keyfile_slot_count(kf);
	for (unsigned int i = 0; i < mbox_r->device_count; i++) {
		struct web_device *dev = &mbox_r->devices[i];

		kr_keyfile_slot_info(kf, i, &info);
		dev->id = info.id;
		snprintf(dev->label, sizeof(dev->label), "%s", info.label);
		dev->created = info.created;
		(void)lp_cache_slot_last_used(server->lp, mbox_r->user,
					      keyfile_id, info.id,
					      &dev->last_used);
	}
	kr_keyfile_free(&kf);
	return 0;
}

/* The daemon cannot submit mail: the next doveadm launchpad sync (every
   5 minutes with its timer) mails the admins about it. */
static void web_mailbox_queue_activated(struct web_server *server,
					const char *user)
{
	struct lp_error err;

	if (lp_notify_queue(server->lp, user, LP_NOTIFY_ACTIVATED,
			    "on the self-service page", time(NULL), &err) < 0)
		web_log(LP_LOG_ERROR, "%s: activation not queued for "
			"notify_to: %s", user, err.text);
}

int web_mailbox_activate(struct web_server *server, const char *name,
			 const char *domain, const char *label,
			 char *password_r, char *why_r, size_t why_size)
{
	struct web_mailbox mbox;
	struct kr_keyfile_txn *txn = NULL;
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_error err;
	unsigned char pk_buf[KR_PUBLIC_KEY_BYTES];
	const unsigned char *pk;
	unsigned int slot_id;
	int ret;

	if (web_mailbox_paths(server, name, domain, &mbox) < 0 ||
	    web_mailbox_recovery_pk(server, pk_buf, &pk) < 0 ||
	    /* the lock file lives in the home */
	    web_mailbox_mkdir(server, mbox.home) < 0)
		return web_mailbox_failed(why_r, why_size);
	ret = web_mailbox_begin(server, &mbox, &txn, &kf, why_r, why_size);
	if (ret != 0) {
		if (ret < 0)
			return -1;
		/* (a doveadm generate or another tab got there first) */
		kr_keyfile_rollback(&txn);
		kr_keyfile_free(&kf);
		snprintf(why_r, why_size, "%s is already activated: add a "
			 "device with an existing app password instead",
			 mbox.user);
		return 0;
	}
	if (web_mailbox_has_orphan_db(&mbox)) {
		kr_keyfile_rollback(&txn);
		web_log(LP_LOG_WARNING, "activation refused: %s has a mailbox "
			"database but no keyfile", mbox.user);
		snprintf(why_r, why_size, "%s has an old mailbox but no key "
			 "file: activating would lock that mail away for good. "
			 "Reset the mailbox instead (the old one is kept aside "
			 "on the server), or ask an administrator to restore "
			 "its key file", mbox.user);
		return 0;
	}
	if (kr_keyfile_create(mbox.user, pk, &kf, &keys, &err) < 0 ||
	    kr_slot_add(kf, keys, label, NULL, password_r, KR_PASSWORD_BUFSIZE,
			&slot_id, &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
		ret = web_mailbox_failed(why_r, why_size);
	} else if (web_mailbox_commit(&mbox, &txn, kf) < 0) {
		ret = web_mailbox_failed(why_r, why_size);
	} else {
		web_log(LP_LOG_INFO, "activation: %s, device %u", mbox.user,
			slot_id);
		web_mailbox_queue_activated(server, mbox.user);
		ret = 1;
	}
	kr_keyfile_rollback(&txn);
	if (ret != 1)
		sodium_memzero(password_r, KR_PASSWORD_BUFSIZE);
	kr_keys_free(&keys);
	if (kf != NULL)
		kr_keyfile_free(&kf);
	return ret;
}

int web_mailbox_add_device(struct web_server *server, const char *name,
			   const char *domain, const char *label,
			   const char *existing_password, char *password_r,
			   char *why_r, size_t why_size)
{
	struct web_mailbox mbox;
	struct kr_keyfile_txn *txn = NULL;
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_secret *kek = NULL;
	struct kr_error err;
	unsigned int slot_id, new_id;
	int ret;

	if (web_mailbox_paths(server, name, domain, &mbox) < 0)
		return web_mailbox_failed(why_r, why_size);
	/* Held from the read to the rename: a revoke by doveadm meanwhile
	   waits, and is not undone by this write. */
	ret = web_mailbox_begin(server, &mbox, &txn, &kf, why_r, why_size);
	if (ret <= 0) {
		if (ret < 0)
			return -1;
		kr_keyfile_rollback(&txn);
		snprintf(why_r, why_size, "%s is not activated yet",
			 mbox.user);
		return 0;
	}
	ret = kr_slot_open(kf, existing_password, &slot_id, &kek, &err);
	if (ret > 0)
		ret = kr_slot_unwrap(kf, slot_id, kr_secret_data(kek), &keys,
				     &err);
	kr_secret_free(&kek);
	if (ret < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
		ret = web_mailbox_failed(why_r, why_size);
	} else if (ret == 0) {
		snprintf(why_r, why_size, "that is not an app password of %s",
			 mbox.user);
		web_log(LP_LOG_INFO, "device refused: %s, wrong existing "
			"app password", mbox.user);
	} else if (kr_slot_add(kf, keys, label, NULL, password_r,
			       KR_PASSWORD_BUFSIZE, &new_id, &err) < 0) {
		if (err.kind == KR_ERR_LIMIT) {
			snprintf(why_r, why_size, "%s has the most devices "
				 "allowed: revoke one first", mbox.user);
			ret = 0;
		} else {
			web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
			ret = web_mailbox_failed(why_r, why_size);
		}
	} else if (web_mailbox_commit(&mbox, &txn, kf) < 0) {
		ret = web_mailbox_failed(why_r, why_size);
	} else {
		web_log(LP_LOG_INFO, "device added: %s, device %u (unlocked "
			"with device %u)", mbox.user, new_id, slot_id);
		ret = 1;
	}
	kr_keyfile_rollback(&txn);
	if (ret != 1)
		sodium_memzero(password_r, KR_PASSWORD_BUFSIZE);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	return ret;
}

int web_mailbox_revoke(struct web_server *server, const char *name,
		       const char *domain, unsigned int slot_id,
		       struct web_cutoff *cut_r, char *why_r, size_t why_size)
{
	struct web_mailbox mbox;
	struct kr_keyfile_txn *txn = NULL;
	struct kr_keyfile *kf = NULL;
	int ret;

	memset(cut_r, 0, sizeof(*cut_r));
	if (web_mailbox_paths(server, name, domain, &mbox) < 0)
		return web_mailbox_failed(why_r, why_size);
	ret = web_mailbox_begin(server, &mbox, &txn, &kf, why_r, why_size);
	if (ret <= 0) {
		if (ret < 0)
			return -1;
		kr_keyfile_rollback(&txn);
		snprintf(why_r, why_size, "%s has no devices", mbox.user);
		return 0;
	}
	if (kr_slot_remove(kf, slot_id) == 0) {
		snprintf(why_r, why_size, "%s has no such device", mbox.user);
		ret = 0;
	} else if (web_mailbox_commit(&mbox, &txn, kf) < 0) {
		ret = web_mailbox_failed(why_r, why_size);
	} else {
		/* With auth_cache_size > 0 the revoked password would still
		   log in from Dovecot's cache until its TTL, and a session
		   opened with it (a stolen phone in IDLE) would go on.  (Its
		   "last used" stamp is root's: slot ids are never reused in a
		   keyfile, so it is simply never shown again.) */
		web_mailbox_cut_off(server, name, mbox.user, cut_r);
		web_log(LP_LOG_INFO, "revoke: %s, device %u (auth cache %s, "
			"%d sessions ended)", mbox.user, slot_id,
			cut_r->flushed < 0 ? "NOT flushed" : "flushed",
			cut_r->kicked);
		ret = 1;
	}
	kr_keyfile_rollback(&txn);
	kr_keyfile_free(&kf);
	return ret;
}

/* Renames home aside; moved_r gets the new name, "" if home did not
   exist.  Returns 0 or -1 (logged). */
static int web_mailbox_move_aside(const struct web_mailbox *mbox,
				  char *moved_r)
{
	char base[WEB_PATH_MAX - 8], target[WEB_PATH_MAX], stamp[32];
	struct stat st;
	struct tm tm;
	time_t now = time(NULL);

	moved_r[0] = '\0';
	if (lstat(mbox->home, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		web_log(LP_LOG_ERROR, "%s: stat(%s) failed: %s", mbox->user,
			mbox->home, strerror(errno));
		return -1;
	}
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0 ||
	    snprintf(base, sizeof(base), "%s.reset-%s", mbox->home,
		     stamp) >= (int)sizeof(base))
		return -1;
	for (unsigned int i = 1; i <= WEB_RESET_TRIES; i++) {
		if (i == 1)
			snprintf(target, sizeof(target), "%s", base);
		else
			snprintf(target, sizeof(target), "%s-%u", base, i);
		if (lstat(target, &st) == 0)
			continue;
		if (rename(mbox->home, target) < 0) {
			web_log(LP_LOG_ERROR, "%s: rename(%s, %s) failed: %s",
				mbox->user, mbox->home, target,
				strerror(errno));
			return -1;
		}
		snprintf(moved_r, WEB_PATH_MAX, "%s", target);
		return 0;
	}
	web_log(LP_LOG_ERROR, "%s: too many resets of %s this second",
		mbox->user, mbox->home);
	return -1;
}

int web_mailbox_reset(struct web_server *server, const char *name,
		      const char *domain, const char *label,
		      char *password_r, char *moved_r,
		      struct web_cutoff *cut_r, char *why_r, size_t why_size)
{
	struct web_mailbox mbox;
	struct kr_keyfile_txn *old_txn = NULL, *txn = NULL;
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_error err;
	unsigned char pk_buf[KR_PUBLIC_KEY_BYTES];
	const unsigned char *pk;
	unsigned int slot_id;
	int ret;

	moved_r[0] = '\0';
	memset(cut_r, 0, sizeof(*cut_r));
	if (web_mailbox_paths(server, name, domain, &mbox) < 0 ||
	    web_mailbox_recovery_pk(server, pk_buf, &pk) < 0)
		return web_mailbox_failed(why_r, why_size);
	/* The old home moves aside under its keyfile's lock; the new home
	   is locked before anything is written there. */
	if (kr_keyfile_lock(mbox.keyfile, server->uid, server->gid,
			    WEB_KEYFILE_LOCK_MSECS, &old_txn, &err) < 0 &&
	    err.kind != KR_ERR_NOT_FOUND) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
		return web_mailbox_failed(why_r, why_size);
	}
	if (web_mailbox_move_aside(&mbox, moved_r) < 0 ||
	    web_mailbox_mkdir(server, mbox.home) < 0) {
		kr_keyfile_rollback(&old_txn);
		return web_mailbox_failed(why_r, why_size);
	}
	ret = web_mailbox_begin(server, &mbox, &txn, &kf, why_r, why_size);
	kr_keyfile_rollback(&old_txn);
	if (ret != 0) {
		if (ret < 0)
			return -1;
		kr_keyfile_rollback(&txn);
		kr_keyfile_free(&kf);
		web_log(LP_LOG_WARNING, "%s: activated again during a reset; "
			"old mailbox kept at %s", mbox.user, moved_r);
		snprintf(why_r, why_size, "%s was activated again while the "
			 "old mailbox was moved aside; use the app password "
			 "of that activation", mbox.user);
		return 0;
	}
	if (kr_keyfile_create(mbox.user, pk, &kf, &keys, &err) < 0 ||
	    kr_slot_add(kf, keys, label, NULL, password_r, KR_PASSWORD_BUFSIZE,
			&slot_id, &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
		ret = web_mailbox_failed(why_r, why_size);
	} else if (web_mailbox_commit(&mbox, &txn, kf) < 0) {
		ret = web_mailbox_failed(why_r, why_size);
	} else {
		/* the old passwords went with the old keyfile */
		web_mailbox_cut_off(server, name, mbox.user, cut_r);
		web_log(LP_LOG_INFO, "reset: %s, new device %u, old mailbox "
			"kept at %s (auth cache %s, %d sessions ended)",
			mbox.user, slot_id,
			moved_r[0] != '\0' ? moved_r : "(none)",
			cut_r->flushed < 0 ? "NOT flushed" : "flushed",
			cut_r->kicked);
		ret = 1;
	}
	kr_keyfile_rollback(&txn);
	if (ret != 1)
		sodium_memzero(password_r, KR_PASSWORD_BUFSIZE);
	kr_keys_free(&keys);
	if (kf != NULL)
		kr_keyfile_free(&kf);
	return ret;
}
