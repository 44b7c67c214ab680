/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The mailbox actions of the page, through src/keyring only, with the
   semantics of `doveadm launchpad password generate|revoke|reset` (both
   go through libkeyring's kr-home.c): the keyfile is ~/sqlbox.keys,
   changed only under its lock (kr_keyfile_begin .. commit, so a doveadm
   revoke running meanwhile is never undone) and written atomically as
   uid/gid; a reset moves the old home aside as "<home>.reset-<UTC time>"
   and never deletes it.  After a revoke or a
   reset Dovecot's auth cache is flushed and the user's live IMAP/POP3
   sessions are ended; what failed of that is reported, not hidden.
   The callers have checked the session, the CSRF token and the
   entitlement; the keyfile path is derived from the session's name, never
   from the form, so a slot id can only ever name a slot of one's own. */

#include "web-private.h"

#include <stdio.h>
#include <string.h>
#include <sodium.h>

/* The daemon is single-threaded: a writer holding the keyfile (one or
   two Argon2id derivations) is waited for this long at most. */
#define WEB_KEYFILE_LOCK_MSECS 5000

static int web_mailbox_paths(struct web_server *server, const char *name,
			     const char *domain, struct web_mailbox *mbox)
{
	struct kr_error err;

	memset(mbox, 0, sizeof(*mbox));
	snprintf(mbox->user, sizeof(mbox->user), "%s@%s", name, domain);
	if (lp_config_expand_home(server->config, name, domain, mbox->home,
				  sizeof(mbox->home)) < 0) {
		web_log(LP_LOG_ERROR, "%s: home path too long", mbox->user);
		return -1;
	}
	if (kr_home_keyfile_path(mbox->home, mbox->keyfile,
				 sizeof(mbox->keyfile), &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox->user, err.text);
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

/* Says on the page that nothing changed.  Returns -1. */
static int web_mailbox_failed(char *why_r, size_t why_size)
{
	snprintf(why_r, why_size, "the mailbox could not be updated "
		 "(the server log says why); nothing was changed");
	return -1;
}

/* Logs a failed keyfile change and says on the page why nothing changed.
   Returns -1. */
static int web_mailbox_error(const struct web_mailbox *mbox,
			     const struct kr_error *err,
			     char *why_r, size_t why_size)
{
	web_log(LP_LOG_ERROR, "%s: %s", mbox->user, err->text);
	if (err->kind != KR_ERR_LOCKED)
		return web_mailbox_failed(why_r, why_size);
	snprintf(why_r, why_size, "another change of %s is still running; "
		 "nothing was changed, please try again", mbox->user);
	return -1;
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
	return web_mailbox_error(mbox, &err, why_r, why_size);
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
		/* (one that cannot be checked counts as there) */
		mbox_r->orphan_db = kr_home_has_mailbox(mbox_r->home,
							&err) != 0;
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

/* The first device of a new keyfile (an activation or a reset): adds its
   slot and commits.  Returns the slot id, 0 on failure (logged, why_r
   filled, password_r wiped). */
static unsigned int web_mailbox_first_device(const struct web_mailbox *mbox,
					     struct kr_keyfile_txn **txn,
					     struct kr_keyfile *kf,
					     const struct kr_keys *keys,
					     const char *label,
					     char *password_r,
					     char *why_r, size_t why_size)
{
	struct kr_error err;
	unsigned int slot_id;

	if (kr_slot_add(kf, keys, label, NULL, password_r, KR_PASSWORD_BUFSIZE,
			&slot_id, &err) < 0 ||
	    kr_keyfile_commit(txn, kf, &err) < 0) {
		(void)web_mailbox_error(mbox, &err, why_r, why_size);
		sodium_memzero(password_r, KR_PASSWORD_BUFSIZE);
		return 0;
	}
	return slot_id;
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
	    web_mailbox_recovery_pk(server, pk_buf, &pk) < 0)
		return web_mailbox_failed(why_r, why_size);
	ret = kr_home_activate(mbox.home, mbox.user, pk, server->uid,
			       server->gid, WEB_KEYFILE_LOCK_MSECS, &txn, &kf,
			       &keys, &err);
	if (ret < 0 && err.kind == KR_ERR_ORPHAN) {
		web_log(LP_LOG_WARNING, "activation refused: %s has a mailbox "
			"database but no keyfile", mbox.user);
		snprintf(why_r, why_size, "%s has an old mailbox but no key "
			 "file: activating would lock that mail away for good. "
			 "Reset the mailbox instead (the old one is kept aside "
			 "on the server), or ask an administrator to restore "
			 "its key file", mbox.user);
		return 0;
	}
	if (ret < 0)
		return web_mailbox_error(&mbox, &err, why_r, why_size);
	if (ret == 0) {
		/* (a doveadm generate or another tab got there first) */
		kr_keyfile_rollback(&txn);
		kr_keyfile_free(&kf);
		snprintf(why_r, why_size, "%s is already activated: add a "
			 "device with an existing app password instead",
			 mbox.user);
		return 0;
	}
	slot_id = web_mailbox_first_device(&mbox, &txn, kf, keys, label,
					   password_r, why_r, why_size);
	if (slot_id != 0) {
		web_log(LP_LOG_INFO, "activation: %s, device %u", mbox.user,
			slot_id);
		web_mailbox_queue_activated(server, mbox.user);
	}
	kr_keyfile_rollback(&txn);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	return slot_id != 0 ? 1 : -1;
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
	ret = kr_slot_unlock(kf, existing_password, &slot_id, &keys, &err);
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

int web_mailbox_reset(struct web_server *server, const char *name,
		      const char *domain, const char *label,
		      char *password_r, char *moved_r,
		      struct web_cutoff *cut_r, char *why_r, size_t why_size)
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

	moved_r[0] = '\0';
	memset(cut_r, 0, sizeof(*cut_r));
	if (web_mailbox_paths(server, name, domain, &mbox) < 0 ||
	    web_mailbox_recovery_pk(server, pk_buf, &pk) < 0)
		return web_mailbox_failed(why_r, why_size);
	ret = kr_home_reset(mbox.home, mbox.user, pk, server->uid, server->gid,
			    WEB_KEYFILE_LOCK_MSECS, time(NULL), moved_r,
			    WEB_MOVED_MAX, &txn, &kf, &keys, &err);
	if (ret < 0)
		return web_mailbox_error(&mbox, &err, why_r, why_size);
	if (ret == 0) {
		web_log(LP_LOG_WARNING, "%s: activated again during a reset; "
			"old mailbox kept at %s", mbox.user, moved_r);
		snprintf(why_r, why_size, "%s was activated again while the "
			 "old mailbox was moved aside; use the app password "
			 "of that activation", mbox.user);
		return 0;
	}
	slot_id = web_mailbox_first_device(&mbox, &txn, kf, keys, label,
					   password_r, why_r, why_size);
	if (slot_id != 0) {
		/* the old passwords went with the old keyfile */
		web_mailbox_cut_off(server, name, mbox.user, cut_r);
		web_log(LP_LOG_INFO, "reset: %s, new device %u, old mailbox "
			"kept at %s (auth cache %s, %d sessions ended)",
			mbox.user, slot_id,
			moved_r[0] != '\0' ? moved_r : "(none)",
			cut_r->flushed < 0 ? "NOT flushed" : "flushed",
			cut_r->kicked);
	}
	kr_keyfile_rollback(&txn);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	return slot_id != 0 ? 1 : -1;
}
