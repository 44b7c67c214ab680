/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-launchpad.h"
#include "keyring.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include <sysexits.h>

#define DOVEADM_LAUNCHPAD_DEFAULT_LABEL "doveadm"

/* Creates home and every missing parent below an existing directory,
   owned by the mail uid/gid, mode 0700. */
static int doveadm_launchpad_mkdir_home(struct doveadm_launchpad *lp,
					const char *home)
{
	const char *p;
	struct stat st;

	if (stat(home, &st) == 0)
		return 0;
	if (errno != ENOENT) {
		i_error("stat(%s) failed: %m", home);
		return -1;
	}
	p = strrchr(home, '/');
	if (p != NULL && p != home &&
	    doveadm_launchpad_mkdir_home(lp, t_strdup_until(home, p)) < 0)
		return -1;
	if (mkdir(home, 0700) < 0 && errno != EEXIST) {
		i_error("mkdir(%s) failed: %m", home);
		return -1;
	}
	if (chown(home, lp->uid, lp->gid) < 0) {
		i_error("chown(%s) failed: %m", home);
		return -1;
	}
	return 0;
}

/* Reads one existing app password from stdin into a sodium_malloc'd
   buffer. Returns NULL on EOF or an over-long line. */
static char *doveadm_launchpad_read_password(void)
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

/* Unlocks an existing keyfile with one of its app passwords read from
   stdin. Returns 1 with keys, 0 if the password opens nothing, -1 error. */
static int doveadm_launchpad_unlock(struct kr_keyfile *kf,
				    struct kr_keys **keys_r)
{
	struct kr_secret *kek;
	struct kr_error err;
	unsigned int slot_id;
	char *password;
	int ret;

	if ((password = doveadm_launchpad_read_password()) == NULL) {
		i_error("launchpad: no existing app password on stdin");
		return 0;
	}
	ret = kr_slot_open(kf, password, &slot_id, &kek, &err);
	sodium_free(password);
	if (ret <= 0) {
		if (ret < 0)
			i_error("launchpad: %s", err.text);
		return ret;
	}
	ret = kr_slot_unwrap(kf, slot_id, kr_secret_data(kek), keys_r, &err);
	kr_secret_free(&kek);
	if (ret < 0)
		i_error("launchpad: %s", err.text);
	return ret;
}

static void cmd_launchpad_password_generate(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp;
	struct lp_entitlement ent;
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_error err;
	const char *user, *label, *path;
	unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES];
	char home[PATH_MAX];
	char password[KR_PASSWORD_BUFSIZE];
	unsigned int slot_id;
	bool existing = FALSE;
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
	if (strlen(label) > KR_LABEL_MAX) {
		i_error("launchpad: label longer than %u characters",
			KR_LABEL_MAX);
		doveadm_exit_code = EX_USAGE;
		return;
	}

	if (doveadm_launchpad_open(&lp) < 0)
		return;
	if (doveadm_launchpad_require_entitled(lp, user, &ent) < 0)
		goto out;
	if (lp_config_expand_home(lp->config, ent.name, ent.domain->domain,
				  home, sizeof(home)) < 0) {
		i_error("launchpad: home path too long for %s", ent.user);
		doveadm_exit_code = EX_CONFIG;
		goto out;
	}
	path = t_strconcat(home, "/sqlbox.keys", NULL);

	ret = kr_keyfile_read(path, &kf, &err);
	if (ret < 0) {
		i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_DATAERR;
		goto out;
	}
	if (ret == 0) {
		/* First app password: this activates the mailbox. */
		const unsigned char *pk = NULL;

		if (lp->config->recovery_public_key != NULL) {
			if (kr_public_key_decode(lp->config->recovery_public_key,
						 recovery_pk) < 0) {
				i_error("launchpad: %s: recovery_public_key is "
					"not a base64 X25519 key",
					lp->config->path);
				doveadm_exit_code = EX_CONFIG;
				goto out;
			}
			pk = recovery_pk;
		}
		if (kr_keyfile_create(ent.user, pk, &kf, &keys, &err) < 0) {
			i_error("launchpad: %s", err.text);
			doveadm_exit_code = EX_SOFTWARE;
			goto out;
		}
	} else if (!existing) {
		i_error("launchpad: %s already has app passwords; adding one "
			"needs an existing one on stdin (-e)", ent.user);
		doveadm_exit_code = EX_NOPERM;
		goto out;
	} else if ((ret = doveadm_launchpad_unlock(kf, &keys)) <= 0) {
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
	if (doveadm_launchpad_mkdir_home(lp, home) < 0 ||
	    kr_keyfile_write(kf, path, lp->uid, lp->gid, &err) < 0) {
		if (err.kind != KR_ERR_NONE)
			i_error("launchpad: %s", err.text);
		doveadm_exit_code = EX_CANTCREAT;
		sodium_memzero(password, sizeof(password));
		goto out;
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
