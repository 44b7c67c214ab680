/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The mailbox actions of the page, through src/keyring only, with the
   semantics of `doveadm launchpad password generate|revoke|reset`: the
   keyfile is ~/sqlbox.keys, written atomically as uid/gid; a reset moves
   the old home aside as "<home>.reset-<UTC time>" and never deletes it.
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

static int web_mailbox_write(struct web_server *server,
			     const struct web_mailbox *mbox,
			     const struct kr_keyfile *kf)
{
	struct kr_error err;

	if (web_mailbox_mkdir(server, mbox->home) < 0)
		return -1;
	if (kr_keyfile_write(kf, mbox->keyfile, server->uid, server->gid,
			     &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox->user, err.text);
		return -1;
	}
	return 0;
}

static void web_mailbox_flush(struct web_server *server, const char *name)
{
	char error[LP_TEXT_MAX];
	int count;

	count = web_auth_flush(server->config, server->config->web_auth_socket,
			       name, error, sizeof(error));
	if (count < 0)
		web_log(LP_LOG_ERROR, "flushing %s from Dovecot's auth cache "
			"failed: %s", name, error);
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
	int ret;

	if (web_mailbox_paths(server, name, domain, mbox_r) < 0)
		return -1;
	ret = kr_keyfile_read(mbox_r->keyfile, &kf, &err);
	if (ret < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox_r->user, err.text);
		return -1;
	}
	if (ret == 0)
		return 0;
	mbox_r->activated = true;
	mbox_r->device_count = kr_keyfile_slot_count(kf);
	for (unsigned int i = 0; i < mbox_r->device_count; i++) {
		struct web_device *dev = &mbox_r->devices[i];

		kr_keyfile_slot_info(kf, i, &info);
		dev->id = info.id;
		snprintf(dev->label, sizeof(dev->label), "%s", info.label);
		dev->created = info.created;
		(void)lp_cache_slot_last_used(server->lp, mbox_r->user, info.id,
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
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_error err;
	unsigned char pk_buf[KR_PUBLIC_KEY_BYTES];
	const unsigned char *pk;
	unsigned int slot_id;
	int ret;

	if (web_mailbox_paths(server, name, domain, &mbox) < 0)
		return web_mailbox_failed(why_r, why_size);
	ret = kr_keyfile_read(mbox.keyfile, &kf, &err);
	if (ret != 0) {
		if (ret < 0) {
			web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
			return web_mailbox_failed(why_r, why_size);
		}
		kr_keyfile_free(&kf);
		snprintf(why_r, why_size, "%s is already activated: add a "
			 "device with an existing app password instead",
			 mbox.user);
		return 0;
	}
	if (web_mailbox_recovery_pk(server, pk_buf, &pk) < 0)
		return web_mailbox_failed(why_r, why_size);
	if (kr_keyfile_create(mbox.user, pk, &kf, &keys, &err) < 0 ||
	    kr_slot_add(kf, keys, label, NULL, password_r, KR_PASSWORD_BUFSIZE,
			&slot_id, &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
		ret = web_mailbox_failed(why_r, why_size);
	} else if (web_mailbox_write(server, &mbox, kf) < 0) {
		ret = web_mailbox_failed(why_r, why_size);
	} else {
		web_log(LP_LOG_INFO, "activation: %s, device %u", mbox.user,
			slot_id);
		web_mailbox_queue_activated(server, mbox.user);
		ret = 1;
	}
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
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_secret *kek = NULL;
	struct kr_error err;
	unsigned int slot_id, new_id;
	int ret;

	if (web_mailbox_paths(server, name, domain, &mbox) < 0)
		return web_mailbox_failed(why_r, why_size);
	ret = kr_keyfile_read(mbox.keyfile, &kf, &err);
	if (ret <= 0) {
		if (ret < 0) {
			web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
			return web_mailbox_failed(why_r, why_size);
		}
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
	} else if (web_mailbox_write(server, &mbox, kf) < 0) {
		ret = web_mailbox_failed(why_r, why_size);
	} else {
		web_log(LP_LOG_INFO, "device added: %s, device %u (unlocked "
			"with device %u)", mbox.user, new_id, slot_id);
		ret = 1;
	}
	if (ret != 1)
		sodium_memzero(password_r, KR_PASSWORD_BUFSIZE);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	return ret;
}

int web_mailbox_revoke(struct web_server *server, const char *name,
		       const char *domain, unsigned int slot_id,
		       char *why_r, size_t why_size)
{
	struct web_mailbox mbox;
	struct kr_keyfile *kf = NULL;
	struct kr_error err;
	int ret;

	if (web_mailbox_paths(server, name, domain, &mbox) < 0)
		return web_mailbox_failed(why_r, why_size);
	ret = kr_keyfile_read(mbox.keyfile, &kf, &err);
	if (ret <= 0) {
		if (ret < 0) {
			web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
			return web_mailbox_failed(why_r, why_size);
		}
		snprintf(why_r, why_size, "%s has no devices", mbox.user);
		return 0;
	}
	if (kr_slot_remove(kf, slot_id) == 0) {
		snprintf(why_r, why_size, "%s has no such device", mbox.user);
		ret = 0;
	} else if (web_mailbox_write(server, &mbox, kf) < 0) {
		ret = web_mailbox_failed(why_r, why_size);
	} else {
		(void)lp_cache_slot_forget(server->lp, mbox.user, slot_id,
					   NULL);
		/* With auth_cache_size > 0 the revoked password would still
		   log in from Dovecot's cache until its TTL. */
		web_mailbox_flush(server, name);
		web_log(LP_LOG_INFO, "revoke: %s, device %u", mbox.user,
			slot_id);
		ret = 1;
	}
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
		      char *why_r, size_t why_size)
{
	struct web_mailbox mbox;
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_error err;
	unsigned char pk_buf[KR_PUBLIC_KEY_BYTES];
	const unsigned char *pk;
	unsigned int slot_id;
	int ret;

	moved_r[0] = '\0';
	if (web_mailbox_paths(server, name, domain, &mbox) < 0 ||
	    web_mailbox_recovery_pk(server, pk_buf, &pk) < 0 ||
	    web_mailbox_move_aside(&mbox, moved_r) < 0)
		return web_mailbox_failed(why_r, why_size);
	(void)lp_cache_slot_forget(server->lp, mbox.user, LP_SLOT_ALL, NULL);
	/* From here the old passwords are gone with the old keyfile. */
	web_mailbox_flush(server, name);
	if (kr_keyfile_create(mbox.user, pk, &kf, &keys, &err) < 0 ||
	    kr_slot_add(kf, keys, label, NULL, password_r, KR_PASSWORD_BUFSIZE,
			&slot_id, &err) < 0) {
		web_log(LP_LOG_ERROR, "%s: %s", mbox.user, err.text);
		ret = web_mailbox_failed(why_r, why_size);
	} else if (web_mailbox_write(server, &mbox, kf) < 0) {
		ret = web_mailbox_failed(why_r, why_size);
	} else {
		web_log(LP_LOG_INFO, "reset: %s, new device %u, old mailbox "
			"kept at %s", mbox.user, slot_id,
			moved_r[0] != '\0' ? moved_r : "(none)");
		ret = 1;
	}
	if (ret != 1)
		sodium_memzero(password_r, KR_PASSWORD_BUFSIZE);
	kr_keys_free(&keys);
	if (kf != NULL)
		kr_keyfile_free(&kf);
	return ret;
}
