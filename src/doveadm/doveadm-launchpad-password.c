/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-launchpad.h"
#include "keyring.h"

#include <stdio.h>
#include <sodium.h>
#include <sysexits.h>

#define DOVEADM_LAUNCHPAD_DEFAULT_LABEL "doveadm"
#define DOVEADM_LAUNCHPAD_RESET_LABEL "reset"

/* Reads one existing app password from stdin into a sodium_malloc'd
   buffer. Returns NULL on EOF or an over-long line. */
char *doveadm_launchpad_read_password(void)
{
	const size_t size = KR_PASSWORD_BUFSIZE * 4;
	char *buf = sodium_malloc(size);
	size_t len;

	if (buf == NULL)
		i_fatal_status(EX_TEMPFAIL, "sodium_malloc() failed");
	if (fgets(buf, size, stdin) == NULL) {
		sodium_free(buf);
		return NULL;
	}
	len = strcspn(buf, "\r\n");
	if (buf[len] == '\0' && len == size - 1) {
		sodium_free(buf);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

int doveadm_launchpad_unlock(struct kr_keyfile *kf, struct kr_keys **keys_r)
{
	char *password;
	int ret;

	if ((password = doveadm_launchpad_read_password()) == NULL) {
		i_error("launchpad: no existing app password on stdin");
		return 0;
	}
	ret = doveadm_launchpad_unlock_with(kf, password, keys_r);
	sodium_free(password);
	return ret;
}

/* Unlocks an existing keyfile with one of its app passwords. Returns 1
   with keys, 0 if the password opens nothing, -1 error. */
int doveadm_launchpad_unlock_with(struct kr_keyfile *kf, const char *password,
				  struct kr_keys **keys_r)
{
	struct kr_error err;
	int ret;

	ret = kr_slot_unlock(kf, password, NULL, keys_r, &err);
	if (ret < 0)
		i_error("launchpad: %s", err.text);
	return ret;
}

/* What password generate and reset share: the label check, the context,
   the entitlement check and the keyfile path.  Returns 0, or -1 with
   doveadm_exit_code set and *lp_r NULL or open (close it either way). */
static int
doveadm_launchpad_password_begin(const char *user, const char *label,
				 struct doveadm_launchpad **lp_r,
				 struct lp_entitlement *ent_r,
				 char home_r[PATH_MAX], const char **path_r)
{
	*lp_r = NULL;
	if (strlen(label) > KR_LABEL_MAX) {
		i_error("launchpad: label longer than %u characters",
			KR_LABEL_MAX);
		doveadm_exit_code = EX_USAGE;
		return -1;
	}
	if (doveadm_launchpad_open(lp_r) < 0)
		return -1;
	if (doveadm_launchpad_require_entitled(*lp_r, user, ent_r) < 0)
		return -1;
	if (lp_config_expand_home((*lp_r)->config, ent_r->name,
				  ent_r->domain->domain, home_r, PATH_MAX) < 0) {
		i_error("launchpad: home path too long for %s", ent_r->user);
		doveadm_exit_code = EX_CONFIG;
		return -1;
	}
	*path_r = t_strconcat(home_r, "/" KR_KEYFILE_NAME, NULL);
	return 0;
}

/* Logs a failed change of user's home or keyfile and sets
   doveadm_exit_code from the kind of error. */
static void doveadm_launchpad_home_failed(const char *user, const char *home,
					  const struct kr_error *err)
{
	if (err->kind == KR_ERR_ORPHAN) {
		/* an activation must not bury mail */
		i_error("launchpad: %s has a mailbox (%s/%s) but no keyfile: "
			"a new keyfile would lock that mail away for good.  "
			"Restore %s from a backup, or run `doveadm launchpad "
			"password reset` (--recovery-key, or --confirm to move "
			"the old mailbox aside)", user, home, KR_MAILBOX_DB,
			KR_KEYFILE_NAME);
		doveadm_exit_code = EX_CANTCREAT;
		return;
	}
	i_error("launchpad: %s: %s", user, err->text);
	doveadm_exit_code = err->kind == KR_ERR_LOCKED ? EX_TEMPFAIL :
		err->kind == KR_ERR_CORRUPT ? EX_DATAERR :
		err->kind == KR_ERR_INTERNAL ? EX_SOFTWARE : EX_CANTCREAT;
}

/* The recovery public key of the config, NULL if none; -1 if bad. */
static int doveadm_launchpad_recovery_pk(struct doveadm_launchpad *lp,
					 unsigned char pk[KR_PUBLIC_KEY_BYTES],
					 const unsigned char **pk_r)
{
	*pk_r = NULL;
	if (lp->config->recovery_public_key == NULL)
		return 0;
	if (kr_public_key_decode(lp->config->recovery_public_key, pk) < 0) {
		i_error("launchpad: %s: recovery_public_key is not a base64 "
			"X25519 key", lp->config->path);
		doveadm_exit_code = EX_CONFIG;
		return -1;
	}
	*pk_r = pk;
	return 0;
}

static void cmd_launchpad_password_generate(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_entitlement ent;
	struct kr_keyfile_txn *txn = NULL;
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_error err;
	const char *user, *label, *path;
	const unsigned char *pk;
	unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES];
	char home[PATH_MAX];
	char password[KR_PASSWORD_BUFSIZE];
	char *existing_password = NULL;
	unsigned int slot_id;
	bool existing = FALSE, activating;
	int ret;

	if (!doveadm_cmd_param_str(cctx, "user", &user)) {
		i_error("launchpad password generate: USER missing");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (!doveadm_cmd_param_str(cctx, "label", &label))
		label = DOVEADM_LAUNCHPAD_DEFAULT_LABEL;
	(void)doveadm_cmd_param_bool(cctx, "existing-password-stdin",
				     &existing);
	if (doveadm_launchpad_password_begin(user, label, &lp, &ent, home,
					     &path) < 0)
		goto out;
	/* stdin before the lock: a slow typist must not hold it */
	if (existing &&
	    (existing_password = doveadm_launchpad_read_password()) == NULL) {
		i_error("launchpad: no existing app password on stdin");
		doveadm_exit_code = EX_NOPERM;
		goto out;
	}
	if (doveadm_launchpad_recovery_pk(lp, recovery_pk, &pk) < 0)
		goto out;
	/* the first app password activates the mailbox (ret 1) */
	ret = kr_home_activate(home, ent.user, pk, lp->uid, lp->gid,
			       KR_LOCK_WAIT_MSECS, &txn, &kf, &keys, &err);
	if (ret < 0) {
		doveadm_launchpad_home_failed(ent.user, home, &err);
		goto out;
	}
	activating = ret > 0;
	if (!activating && !existing) {
		i_error("launchpad: %s already has app passwords; adding one "
			"needs an existing one on stdin (-e)", ent.user);
		doveadm_exit_code = EX_NOPERM;
		goto out;
	} else if (!activating &&
		   (ret = doveadm_launchpad_unlock_with(kf, existing_password,
							&keys)) <= 0) {
		if (ret == 0)
			i_error("launchpad: that app password does not open "
				"%s's keyfile", ent.user);
		doveadm_exit_code = ret < 0 ? EX_DATAERR : EX_NOPERM;
		goto out;
	}

	if (kr_slot_add(kf, keys, label, NULL, password, sizeof(password),
			&slot_id, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = err.kind == KR_ERR_LIMIT ?
			EX_CANTCREAT : EX_SOFTWARE;
		goto out;
	}
	if (kr_keyfile_commit(&txn, kf, &err) < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_CANTCREAT;
		sodium_memzero(password, sizeof(password));
		goto out;
	}
	if (activating) {
		struct lp_error lerr;

		/* the admins hear of it in the next sync's mail */
		if (lp_notify_queue(lp->ctx, ent.user, LP_NOTIFY_ACTIVATED,
				    "by doveadm launchpad password generate",
				    time(NULL), &lerr) < 0)
			i_error("launchpad: %s: activation not queued for "
				"notify_to: %s", ent.user, lerr.text);
	}

	/* Shown once: only the slot derived from it is stored. */
	doveadm_print_init(DOVEADM_PRINT_TYPE_FLOW);
	doveadm_print_header_simple("user");
	doveadm_print_header("slot", "slot", DOVEADM_PRINT_HEADER_FLAG_NUMBER);
	doveadm_print_header_simple("label");
	doveadm_print_header_simple("password");
	doveadm_print(ent.user);
	doveadm_print_num(slot_id);
	doveadm_print(label);
	doveadm_print(password);
	doveadm_print_flush();
	sodium_memzero(password, sizeof(password));
out:
	kr_keyfile_rollback(&txn);
	if (existing_password != NULL)
		sodium_free(existing_password);
	kr_keys_free(&keys);
	if (kf != NULL)
		kr_keyfile_free(&kf);
	doveadm_launchpad_close(&lp);
}

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_password_generate = {
	.name = "launchpad password generate",
	.cmd = cmd_launchpad_password_generate,
	.usage = "[-l <label>] [-e] <user>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('l', "label", CMD_PARAM_STR, CMD_PARAM_FLAG_NONE)
DOVEADM_CMD_PARAM('e', "existing-password-stdin", CMD_PARAM_BOOL, CMD_PARAM_FLAG_NONE)
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

/* user's keyfile path; locked and read with lock (then *txn_r is set).
   Returns 1 read, 0 none (logged), -1 error (logged). */
static int doveadm_launchpad_keyfile(struct doveadm_launchpad *lp,
				     const char *user, bool lock,
				     const char **user_r, const char **name_r,
				     const char **path_r,
				     struct kr_keyfile_txn **txn_r,
				     struct kr_keyfile **kf_r)
{
	struct kr_error err;
	const char *home;
	int ret;

	if (doveadm_launchpad_user_home(lp, t_str_lcase(user), user_r, name_r,
					&home) < 0)
		return -1;
	*path_r = t_strconcat(home, "/" KR_KEYFILE_NAME, NULL);
	if (!lock)
		ret = kr_keyfile_read(*path_r, kf_r, &err);
	else if ((ret = kr_keyfile_begin(*path_r, lp->uid, lp->gid,
					 KR_LOCK_WAIT_MSECS, txn_r, kf_r,
					 &err)) < 0 && err.kind == KR_ERR_NOT_FOUND)
		ret = 0;	/* no home: no keyfile */
	if (ret < 0) {
		i_error("launchpad: %s: %s", *user_r, err.text);
		doveadm_exit_code = err.kind == KR_ERR_LOCKED ? EX_TEMPFAIL :
			EX_DATAERR;
	} else if (ret == 0) {
		kr_keyfile_rollback(txn_r);
		i_error("launchpad: %s has no app passwords (mailbox not "
			"activated)", *user_r);
		doveadm_exit_code = DOVEADM_EX_NOTFOUND;
	}
	return ret;
}

static void cmd_launchpad_password_list(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct kr_keyfile_txn *txn = NULL;
	struct kr_keyfile *kf;
	struct kr_slot_info info;
	const char *user, *name, *path;
	char keyfile_id[KR_KEYFILE_ID_BUFSIZE];
	time_t last;

	if (!doveadm_cmd_param_str(cctx, "user", &user)) {
		i_error("launchpad password list: USER missing");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (doveadm_launchpad_open(&lp) < 0)
		return;
	if (doveadm_launchpad_keyfile(lp, user, FALSE, &user, &name, &path,
				      &txn, &kf) <= 0) {
		doveadm_launchpad_close(&lp);
		return;
	}
	kr_keyfile_id(kf, keyfile_id);
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	doveadm_print_header_simple("user");
	doveadm_print_header("slot", "slot", DOVEADM_PRINT_HEADER_FLAG_NUMBER);
	doveadm_print_header_simple("label");
	doveadm_print_header_simple("created");
	doveadm_print_header_simple("last_used");
	for (unsigned int i = 0; i < kr_keyfile_slot_count(kf); i++) T_BEGIN {
		kr_keyfile_slot_info(kf, i, &info);
		(void)lp_cache_slot_last_used(lp->ctx, user, keyfile_id,
					      info.id, &last);
		doveadm_print(user);
		doveadm_print_num(info.id);
		doveadm_print(info.label);
		doveadm_print(doveadm_launchpad_time(info.created));
		doveadm_print(doveadm_launchpad_time(last));
	} T_END;
	kr_keyfile_free(&kf);
	doveadm_launchpad_close(&lp);
}

static void cmd_launchpad_password_revoke(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct doveadm_launchpad_cutoff cut;
	struct kr_keyfile_txn *txn = NULL;
	struct kr_keyfile *kf;
	struct kr_error err;
	const char *user, *slot_str, *name, *path;
	char keyfile_id[KR_KEYFILE_ID_BUFSIZE];
	unsigned int slot_id;

	if (!doveadm_cmd_param_str(cctx, "user", &user) ||
	    !doveadm_cmd_param_str(cctx, "slot", &slot_str)) {
		i_error("launchpad password revoke: USER and SLOT needed");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (str_to_uint(slot_str, &slot_id) < 0) {
		i_error("launchpad: %s: slot '%s' is not a number", user,
			slot_str);
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (doveadm_launchpad_open(&lp) < 0)
		return;
	if (doveadm_launchpad_keyfile(lp, user, TRUE, &user, &name, &path,
				      &txn, &kf) <= 0) {
		doveadm_launchpad_close(&lp);
		return;
	}
	kr_keyfile_id(kf, keyfile_id);
	if (kr_slot_remove(kf, slot_id) == 0) {
		kr_keyfile_rollback(&txn);
		i_error("launchpad: %s has no app password slot %u", user,
			slot_id);
		doveadm_exit_code = DOVEADM_EX_NOTFOUND;
	} else if (kr_keyfile_commit(&txn, kf, &err) < 0) {
		i_error("launchpad: %s: %s", user, err.text);
		doveadm_exit_code = EX_CANTCREAT;
	} else {
		(void)lp_cache_slot_forget(lp->ctx, user, keyfile_id, slot_id,
					   NULL);
		/* Dovecot's auth cache would still log the password in until
		   its TTL, and a session opened with it would go on. */
		doveadm_launchpad_cut_off(lp, name, user,
			t_strdup_printf("%s: revoke of slot %u", user, slot_id),
			TRUE, &cut);
		doveadm_print_init(DOVEADM_PRINT_TYPE_FLOW);
		doveadm_print_header_simple("user");
		doveadm_print_header("slot", "slot",
				     DOVEADM_PRINT_HEADER_FLAG_NUMBER);
		doveadm_print_header("auth_cache", "auth_cache",
				     DOVEADM_PRINT_HEADER_FLAG_NUMBER);
		doveadm_print_header("sessions", "sessions",
				     DOVEADM_PRINT_HEADER_FLAG_NUMBER);
		doveadm_print(user);
		doveadm_print_num(slot_id);
		doveadm_print(t_strdup_printf("%d", cut.flushed));
		doveadm_print(t_strdup_printf("%d", cut.kicked));
	}
	kr_keyfile_free(&kf);
	doveadm_launchpad_close(&lp);
}

/* Recovery: unwrap with the admin's key and add a slot. */
static int doveadm_launchpad_reset_recover(struct doveadm_launchpad *lp,
					   const char *user,
					   const char *key_path,
					   const char *path,
					   struct kr_keyfile *kf,
					   struct kr_keys **keys_r)
{
	unsigned char pk[KR_PUBLIC_KEY_BYTES];
	struct kr_secret *sk;
	struct kr_error err;
	int ret;

	if (lp->config->recovery_public_key == NULL ||
	    kr_public_key_decode(lp->config->recovery_public_key, pk) < 0) {
		i_error("launchpad: %s: %s: no usable recovery_public_key "
			"configured", user, lp->config->path);
		doveadm_exit_code = EX_CONFIG;
		return -1;
	}
	if ((ret = kr_recovery_key_read(key_path, pk, &sk, &err)) <= 0) {
		i_error("launchpad: %s: %s", user, err.text);
		doveadm_exit_code = ret == 0 || err.kind == KR_ERR_CORRUPT ?
			EX_DATAERR : EX_NOINPUT;
		return -1;
	}
	ret = kr_recovery_unwrap(kf, pk, kr_secret_data(sk), keys_r, &err);
	kr_secret_free(&sk);
	if (ret < 0) {
		i_error("launchpad: %s: %s: %s", user, path, err.text);
		doveadm_exit_code = EX_DATAERR;
		return -1;
	}
	if (ret == 0) {
		i_error("launchpad: %s: %s has no recovery slot for this key",
			user, path);
		doveadm_exit_code = EX_DATAERR;
		return -1;
	}
	return 0;
}

/* The new-mailbox reset (kr_home_reset()): the old home moves aside.
   Returns 0 with kf_r, keys_r and txn_r (the new home's lock, held), or -1
   (logged, exit code set). */
static int doveadm_launchpad_reset_new(struct doveadm_launchpad *lp,
				       const struct lp_entitlement *ent,
				       const char *home, const char **moved_r,
				       struct kr_keyfile_txn **txn_r,
				       struct kr_keyfile **kf_r,
				       struct kr_keys **keys_r)
{
	struct kr_error err;
	const unsigned char *pk;
	unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES];
	char moved[PATH_MAX];
	int ret;

	if (doveadm_launchpad_recovery_pk(lp, recovery_pk, &pk) < 0)
		return -1;
	ret = kr_home_reset(home, ent->user, pk, lp->uid, lp->gid,
			    KR_LOCK_WAIT_MSECS, time(NULL), moved,
			    sizeof(moved), txn_r, kf_r, keys_r, &err);
	*moved_r = t_strdup(moved);
	if (ret <= 0) {
		/* 0: activated again meanwhile, nothing overwritten */
		doveadm_launchpad_home_failed(ent->user, home, &err);
		return -1;
	}
	(void)lp_cache_slot_forget(lp->ctx, ent->user, NULL, LP_SLOT_ALL, NULL);
	return 0;
}

static void cmd_launchpad_password_reset(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct doveadm_launchpad_cutoff cut;
	struct lp_entitlement ent;
	struct kr_keyfile_txn *txn = NULL;
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_error err;
	const char *user, *key_path = NULL, *label, *path, *moved = "";
	char home[PATH_MAX];
	char password[KR_PASSWORD_BUFSIZE];
	unsigned int slot_id;
	bool confirm = FALSE;
	int ret;

	if (!doveadm_cmd_param_str(cctx, "user", &user)) {
		i_error("launchpad password reset: USER missing");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	(void)doveadm_cmd_param_str(cctx, "recovery-key", &key_path);
	(void)doveadm_cmd_param_bool(cctx, "confirm", &confirm);
	if (!doveadm_cmd_param_str(cctx, "label", &label))
		label = DOVEADM_LAUNCHPAD_RESET_LABEL;
	if (key_path == NULL && !confirm) {
		i_error("launchpad: %s: a reset without --recovery-key moves "
			"the mailbox aside and starts an empty one; repeat "
			"with --confirm to do that", user);
		doveadm_exit_code = EX_USAGE;
		return;
	}
	if (doveadm_launchpad_password_begin(user, label, &lp, &ent, home,
					     &path) < 0)
		goto out;

	if (key_path != NULL) {
		ret = kr_keyfile_begin(path, lp->uid, lp->gid,
				       KR_LOCK_WAIT_MSECS, &txn, &kf, &err);
		if (ret < 0 && err.kind == KR_ERR_NOT_FOUND)
			ret = 0;
		if (ret <= 0) {
			if (ret < 0) {
				doveadm_launchpad_home_failed(ent.user, home,
							      &err);
			} else {
				i_error("launchpad: %s has no keyfile to "
					"recover", ent.user);
				doveadm_exit_code = EX_NOUSER;
			}
			goto out;
		}
		if (doveadm_launchpad_reset_recover(lp, ent.user, key_path,
						    path, kf, &keys) < 0)
			goto out;
	} else if (doveadm_launchpad_reset_new(lp, &ent, home, &moved, &txn,
					       &kf, &keys) < 0) {
		goto out;
	}

	if (kr_slot_add(kf, keys, label, NULL, password, sizeof(password),
			&slot_id, &err) < 0) {
		i_error("launchpad: %s: %s", ent.user, err.text);
		doveadm_exit_code = err.kind == KR_ERR_LIMIT ?
			EX_CANTCREAT : EX_SOFTWARE;
		goto out;
	}
	if (kr_keyfile_commit(&txn, kf, &err) < 0) {
		i_error("launchpad: %s: %s", ent.user, err.text);
		doveadm_exit_code = EX_CANTCREAT;
		sodium_memzero(password, sizeof(password));
		goto out;
	}
	/* Without recovery every old password is gone with the old keyfile:
	   out of the auth cache with them, and end their sessions. */
	doveadm_launchpad_cut_off(lp, ent.name, ent.user,
				  t_strdup_printf("%s: reset", ent.user),
				  key_path == NULL, &cut);

	/* Shown once: only the slot derived from it is stored. */
	doveadm_print_init(DOVEADM_PRINT_TYPE_FLOW);
	doveadm_print_header_simple("user");
	doveadm_print_header("slot", "slot", DOVEADM_PRINT_HEADER_FLAG_NUMBER);
	doveadm_print_header_simple("label");
	doveadm_print_header_simple("password");
	doveadm_print_header_simple("mode");
	doveadm_print_header_simple("moved_to");
	doveadm_print_header("sessions", "sessions",
			     DOVEADM_PRINT_HEADER_FLAG_NUMBER);
	doveadm_print(ent.user);
	doveadm_print_num(slot_id);
	doveadm_print(label);
	doveadm_print(password);
	doveadm_print(key_path != NULL ? "recovered" : "new-mailbox");
	doveadm_print(moved);
	doveadm_print(t_strdup_printf("%d", cut.kicked));
	doveadm_print_flush();
	sodium_memzero(password, sizeof(password));
out:
	kr_keyfile_rollback(&txn);
	kr_keys_free(&keys);
	if (kf != NULL)
		kr_keyfile_free(&kf);
	doveadm_launchpad_close(&lp);
}

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_password_list = {
	.name = "launchpad password list",
	.cmd = cmd_launchpad_password_list,
	.usage = "<user>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_password_revoke = {
	.name = "launchpad password revoke",
	.cmd = cmd_launchpad_password_revoke,
	.usage = "<user> <slot>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAM('\0', "slot", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_password_reset = {
	.name = "launchpad password reset",
	.cmd = cmd_launchpad_password_reset,
	.usage = "[-l <label>] [--recovery-key <file>] [--confirm] <user>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('l', "label", CMD_PARAM_STR, CMD_PARAM_FLAG_NONE)
DOVEADM_CMD_PARAM('r', "recovery-key", CMD_PARAM_STR, CMD_PARAM_FLAG_NONE)
DOVEADM_CMD_PARAM('\0', "confirm", CMD_PARAM_BOOL, CMD_PARAM_FLAG_NONE)
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
