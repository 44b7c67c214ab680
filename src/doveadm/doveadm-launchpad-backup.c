/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "lib.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-launchpad.h"
#include "cryptvfs.h"
#include "keyring.h"
#include "sqlbox-file.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sysexits.h>

/* `doveadm launchpad backup USER DEST`: a consistent copy of the user's
   sqlbox database, encrypted with the same master key (so the user's app
   passwords open it), and the keyfile beside it as DEST.keys.  doveadm has
   no session key, so an app password of the user comes on stdin.  The
   copy is taken in one read transaction: a snapshot of everything
   committed, without a WAL, while IMAP and LMTP go on writing. */

#define DOVEADM_BACKUP_KEYS_SUFFIX ".keys"
#define DOVEADM_BACKUP_TEMP_SUFFIX ".tmp"
/* As long as the mail processes wait for each other's writes. */
#define DOVEADM_BACKUP_BUSY_TIMEOUT_MSECS (120 * 1000)

/* The mailbox keys, unwrapped with the app password on stdin.  Returns 0,
   or -1 after logging and setting doveadm_exit_code. */
static int doveadm_backup_keys(const char *user, struct kr_keyfile *kf,
			       struct kr_keys **keys_r)
{
	int ret = doveadm_launchpad_unlock(kf, keys_r);

	if (ret < 0) {
		doveadm_exit_code = EX_DATAERR;
		return -1;
	}
	if (ret == 0) {
		i_error("launchpad: %s: that app password does not open the "
			"keyfile", user);
		doveadm_exit_code = EX_NOPERM;
		return -1;
	}
	return 0;
}

/* fsync of a file or directory; 0 or -1 with errno. */
static int doveadm_backup_fsync(const char *path)
{
	int fd, ret;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	ret = fsync(fd);
	i_close_fd(&fd);
	return ret;
}

static void doveadm_backup_unlink_temp(const char *temp)
{
	i_unlink_if_exists(temp);
	i_unlink_if_exists(t_strconcat(temp, "-journal", NULL));
	i_unlink_if_exists(t_strconcat(temp, "-wal", NULL));
	i_unlink_if_exists(t_strconcat(temp, "-shm", NULL));
}

/* Runs sql on db; returns the first column of its first row (data stack,
   "" for none), or NULL on error. */
static const char *doveadm_backup_sql(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *stmt;
	const char *value = "";
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
		return NULL;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0) != NULL)
		value = t_strdup((const char *)sqlite3_column_text(stmt, 0));
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? value : NULL;
}

/* Copies db to temp under the same master key and salt (cvfs_export():
   VACUUM INTO, in one read transaction on db: a snapshot, writers go on),
   checks the copy, then links it to dest.  *messages_r counts the copy's
   messages.  Returns 0, or -1 after logging and setting doveadm_exit_code
   (temp removed). */
static int doveadm_backup_copy(const char *user, sqlite3 *db,
			       const struct kr_keys *keys, const char *temp,
			       const char *dest, int64_t *messages_r)
{
	struct cvfs_error cerr;
	sqlite3 *copy = NULL;
	const char *check, *mode, *count, *slash;
	mode_t old_umask;
	int rc;

	/* The copy is encrypted, but it is the admin's file: 0600. */
	old_umask = umask(0077);
	rc = cvfs_export(db, temp, NULL, 0, &cerr);
	umask(old_umask);
	if (rc == SQLITE_OK) {
		rc = cvfs_open_v2(temp, &copy, SQLITE_OPEN_READWRITE,
				  keys->master_key, CVFS_KEY_BYTES, &cerr);
	}
	if (rc != SQLITE_OK) {
		i_error("launchpad: %s: %s", user, cerr.text);
		doveadm_exit_code = EX_CANTCREAT;
		if (copy != NULL)
			cvfs_close(&copy);
		doveadm_backup_unlink_temp(temp);
		return -1;
	}
	/* The copy stands alone: no WAL, whatever the header says. */
	mode = doveadm_backup_sql(copy, "PRAGMA journal_mode=DELETE");
	check = doveadm_backup_sql(copy, "PRAGMA quick_check");
	count = doveadm_backup_sql(copy, SQLBOX_SQL_COUNT_MESSAGES);
	cvfs_close(&copy);
	if (mode == NULL || strcmp(mode, "delete") != 0 || check == NULL ||
	    strcmp(check, "ok") != 0 || count == NULL ||
	    str_to_int64(count, messages_r) < 0) {
		i_error("launchpad: %s: the copy fails its check: %s", user,
			check == NULL ? "unreadable" : check);
		doveadm_exit_code = EX_SOFTWARE;
		doveadm_backup_unlink_temp(temp);
		return -1;
	}
	if (doveadm_backup_fsync(temp) < 0) {
		i_error("launchpad: %s: fsync(%s) failed: %m", user, temp);
		doveadm_exit_code = EX_IOERR;
		doveadm_backup_unlink_temp(temp);
		return -1;
	}
	/* link(), not rename(): never replace a DEST that appeared
	   meanwhile. */
	if (link(temp, dest) < 0) {
		i_error("launchpad: %s: link(%s, %s) failed: %m", user, temp,
			dest);
		doveadm_exit_code = EX_CANTCREAT;
		doveadm_backup_unlink_temp(temp);
		return -1;
	}
	i_unlink(temp);
	slash = strrchr(dest, '/');
	(void)doveadm_backup_fsync(slash == NULL ? "." : slash == dest ? "/" :
				   t_strdup_until(dest, slash));
	return 0;
}

static void cmd_launchpad_backup(struct doveadm_cmd_context *cctx)
{
	struct doveadm_launchpad *lp = NULL;
	struct kr_keyfile *kf = NULL;
	struct kr_keys *keys = NULL;
	struct kr_error err;
	struct cvfs_error cerr;
	struct stat st;
	sqlite3 *db = NULL;
	const char *user, *dest, *name, *home, *db_path, *keys_path, *temp;
	int64_t messages;
	int ret;

	if (!doveadm_cmd_param_str(cctx, "user", &user) ||
	    !doveadm_cmd_param_str(cctx, "dest", &dest)) {
		i_error("launchpad backup: USER and DEST needed");
		doveadm_exit_code = EX_USAGE;
		return;
	}
	keys_path = t_strconcat(dest, DOVEADM_BACKUP_KEYS_SUFFIX, NULL);
	temp = t_strconcat(dest, DOVEADM_BACKUP_TEMP_SUFFIX, NULL);
	if (lstat(dest, &st) == 0 || lstat(keys_path, &st) == 0) {
		i_error("launchpad: %s: %s or %s exists; a backup never "
			"overwrites", user, dest, keys_path);
		doveadm_exit_code = EX_CANTCREAT;
		return;
	}
	if (doveadm_launchpad_open(&lp) < 0)
		return;
	/* No Launchpad question: a denied user's mail is kept, and can be
	   backed up. */
	if (doveadm_launchpad_user_home(lp, t_str_lcase(user), &user, &name,
					&home) < 0)
		goto out;
	ret = kr_keyfile_read(t_strconcat(home, "/", KR_KEYFILE_NAME, NULL),
			      &kf, &err);
	if (ret <= 0) {
		if (ret < 0)
			i_error("launchpad: %s: %s", user, err.text);
		else
			i_error("launchpad: %s has no app passwords (mailbox "
				"not activated)", user);
		doveadm_exit_code = ret < 0 ? EX_DATAERR : DOVEADM_EX_NOTFOUND;
		goto out;
	}
	if (doveadm_backup_keys(user, kf, &keys) < 0)
		goto out;

	db_path = t_strconcat(home, "/", KR_MAILBOX_DB, NULL);
	if (stat(db_path, &st) < 0) {
		i_error("launchpad: %s: stat(%s) failed: %m", user, db_path);
		doveadm_exit_code = errno == ENOENT ? DOVEADM_EX_NOTFOUND :
			EX_IOERR;
		goto out;
	}
	/* Read-write so that a WAL left by a crashed process can be
	   recovered; as root, SQLite gives new -wal/-shm files the
	   database's owner. */
	if (cvfs_open_v2(db_path, &db, SQLITE_OPEN_READWRITE,
			 keys->master_key, CVFS_KEY_BYTES,
			 &cerr) != SQLITE_OK) {
		i_error("launchpad: %s: %s", user, cerr.text);
		doveadm_exit_code = cerr.rc == SQLITE_NOTADB ? EX_DATAERR :
			EX_TEMPFAIL;
		goto out;
	}
	sqlite3_busy_timeout(db, DOVEADM_BACKUP_BUSY_TIMEOUT_MSECS);
	doveadm_backup_unlink_temp(temp);
	if (doveadm_backup_copy(user, db, keys, temp, dest, &messages) < 0)
		goto out;
	if (kr_keyfile_write(kf, keys_path, (uid_t)-1, (gid_t)-1, &err) < 0) {
		i_error("launchpad: %s: %s", user, err.text);
		doveadm_exit_code = EX_CANTCREAT;
		goto out;
	}

	doveadm_print_init(DOVEADM_PRINT_TYPE_FLOW);
	doveadm_print_header_simple("user");
	doveadm_print_header_simple("backup");
	doveadm_print_header_simple("keyfile");
	doveadm_print_header("messages", "messages",
			     DOVEADM_PRINT_HEADER_FLAG_NUMBER);
	doveadm_print(user);
	doveadm_print(dest);
	doveadm_print(keys_path);
	doveadm_print_num(messages);
	doveadm_print_flush();
out:
	if (db != NULL)
		cvfs_close(&db);
	kr_keys_free(&keys);
	if (kf != NULL)
		kr_keyfile_free(&kf);
	doveadm_launchpad_close(&lp);
}

struct doveadm_cmd_ver2 doveadm_cmd_launchpad_backup = {
	.name = "launchpad backup",
	.cmd = cmd_launchpad_backup,
	.usage = "<user> <dest>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "user", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAM('\0', "dest", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
