/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Connection-level API: open with a key, export, rekey. */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cryptvfs-private.h"

#define CVFS_REKEY_SUFFIX "-cvfs-rekey"
#define CVFS_WAL_SUFFIX "-wal"

static void cvfs_error_set(struct cvfs_error *error_r, int rc,
			   const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void cvfs_error_set(struct cvfs_error *error_r, int rc,
			   const char *fmt, ...)
{
	va_list args;

	if (error_r == NULL)
		return;
	error_r->rc = rc;
	va_start(args, fmt);
	vsnprintf(error_r->text, sizeof(error_r->text), fmt, args);
	va_end(args);
}

static void cvfs_error_clear(struct cvfs_error *error_r)
{
	if (error_r != NULL) {
		error_r->rc = SQLITE_OK;
		error_r->text[0] = '\0';
	}
}

/* Opens path with the key staged for this thread's next main-db open. */
static int cvfs_open_secret(const char *path, sqlite3 **db_r, int flags,
			    const struct cvfs_secret *secret,
			    struct cvfs_error *error_r)
{
	sqlite3 *db = NULL;
	int reserve = CVFS_RESERVED_BYTES;
	int rc;

	*db_r = NULL;
	rc = cvfs_register();
	if (rc != SQLITE_OK) {
		cvfs_error_set(error_r, rc, "cvfs_register() failed: %s",
			       sqlite3_errstr(rc));
		return rc;
	}
	cvfs_secret_stage(secret);
	rc = sqlite3_open_v2(path, &db, flags, CVFS_VFS_NAME);
	cvfs_secret_unstage();
	if (rc == SQLITE_OK && cvfs_file_of_db(db, "main") == NULL) {
		rc = SQLITE_MISUSE;
		cvfs_error_set(error_r, rc, "%s: not a file cryptvfs can "
			       "encrypt", path);
		goto fail;
	}
	if (rc == SQLITE_OK) {
		/* Before anything is written: a new database must be created
		   with room for nonce and tag on every page. */
		(void)sqlite3_file_control(db, "main",
					   SQLITE_FCNTL_RESERVE_BYTES,
					   &reserve);
		/* Reading the schema proves the key (page 1 authenticates). */
		rc = sqlite3_exec(db, "PRAGMA mmap_size=0;"
				  "PRAGMA temp_store=MEMORY;"
				  "SELECT count(*) FROM sqlite_schema;",
				  NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		cvfs_error_set(error_r, rc, "open %s: %s", path,
			       db == NULL ? sqlite3_errstr(rc) :
			       sqlite3_errmsg(db));
		goto fail;
	}
	*db_r = db;
	return SQLITE_OK;
fail:
	sqlite3_close_v2(db);
	/* The extended code may be an IOERR_*; callers test the primary. */
	return rc & 0xff;
}

int cvfs_open_v2(const char *path, sqlite3 **db_r, int flags,
		 const unsigned char *key, size_t key_size,
		 struct cvfs_error *error_r)
{
	struct cvfs_secret *secret;
	int rc;

	cvfs_error_clear(error_r);
	*db_r = NULL;
	if (key_size != CVFS_KEY_BYTES) {
		cvfs_error_set(error_r, SQLITE_MISUSE,
			       "raw key must be %d bytes", CVFS_KEY_BYTES);
		return SQLITE_MISUSE;
	}
	if (sodium_init() < 0)
		return SQLITE_ERROR;
	secret = cvfs_secret_create(CVFS_SECRET_RAW, key, key_size);
	if (secret == NULL) {
		cvfs_error_set(error_r, SQLITE_NOMEM, "out of secure memory");
		return SQLITE_NOMEM;
	}
	rc = cvfs_open_secret(path, db_r, flags, secret, error_r);
	cvfs_secret_destroy(&secret);
	return rc;
}

int cvfs_open_passphrase(const char *path, sqlite3 **db_r, int flags,
			 const char *passphrase, size_t passphrase_len,
			 struct cvfs_error *error_r)
{
	struct cvfs_secret *secret;
	int rc;

	cvfs_error_clear(error_r);
	*db_r = NULL;
	if (sodium_init() < 0)
		return SQLITE_ERROR;
	secret = cvfs_secret_create(CVFS_SECRET_PASSPHRASE,
				    (const unsigned char *)passphrase,
				    passphrase_len);
	if (secret == NULL) {
		cvfs_error_set(error_r, SQLITE_NOMEM, "out of secure memory");
		return SQLITE_NOMEM;
	}
	rc = cvfs_open_secret(path, db_r, flags, secret, error_r);
	cvfs_secret_destroy(&secret);
	return rc;
}

void cvfs_close(sqlite3 **db)
{
	if (*db == NULL)
		return;
	sqlite3_close_v2(*db);
	*db = NULL;
}

/* fsyncs path and its directory so a copy survives a crash. */
static int cvfs_fsync_path(const char *path, struct cvfs_error *error_r)
{
	char *dir, *slash;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		cvfs_error_set(error_r, SQLITE_IOERR, "fsync(%s) failed: %s",
			       path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return SQLITE_IOERR;
	}
	close(fd);
	dir = strdup(path);
	if (dir == NULL)
		return SQLITE_NOMEM;
	slash = strrchr(dir, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		/* Some filesystems refuse fsync on a directory: not fatal. */
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
	return SQLITE_OK;
}

int cvfs_export(sqlite3 *db, const char *dest_path,
		const unsigned char *key, size_t key_size,
		struct cvfs_error *error_r)
{
	struct cvfs_file *src = cvfs_file_of_db(db, "main");
	struct cvfs_secret *secret;
	sqlite3_stmt *stmt = NULL;
	int rc;

	cvfs_error_clear(error_r);
	if (src == NULL || (key != NULL && key_size != CVFS_KEY_BYTES)) {
		cvfs_error_set(error_r, SQLITE_MISUSE,
			       "cvfs_export(): not a cryptvfs connection or "
			       "bad key size");
		return SQLITE_MISUSE;
	}
	secret = cvfs_secret_create(CVFS_SECRET_RAW,
				    key != NULL ? key : src->key->key,
				    CVFS_KEY_BYTES);
	if (secret == NULL) {
		cvfs_error_set(error_r, SQLITE_NOMEM, "out of secure memory");
		return SQLITE_NOMEM;
	}
	if (key == NULL) {
		/* Same key and salt: the passphrase (if any) still opens
		   the copy in sqlite3mc. */
		memcpy(secret->salt, src->salt, CVFS_SALT_BYTES);
		secret->have_salt = true;
	}
	rc = sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(stmt, 1, dest_path, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK) {
		/* VACUUM INTO attaches dest_path through this connection's
		   VFS: the staged key makes the copy encrypted. */
		cvfs_secret_stage(secret);
		rc = sqlite3_step(stmt);
		cvfs_secret_unstage();
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		cvfs_error_set(error_r, rc, "VACUUM INTO %s: %s", dest_path,
			       sqlite3_errmsg(db));
	sqlite3_finalize(stmt);
	cvfs_secret_destroy(&secret);
	if (rc != SQLITE_OK)
		return rc & 0xff;
	return cvfs_fsync_path(dest_path, error_r);
}

int cvfs_rekey(sqlite3 **db_r, const unsigned char *key, size_t key_size,
	       struct cvfs_error *error_r)
{
	struct cvfs_file *main = cvfs_file_of_db(*db_r, "main");
	struct cvfs_secret *old_secret = NULL;
	char *path = NULL, *tmp = NULL, *wal = NULL;
	struct stat st;
	int log_frames, ckpt_frames, rc;

	cvfs_error_clear(error_r);
	if (main == NULL || key == NULL || key_size != CVFS_KEY_BYTES) {
		cvfs_error_set(error_r, SQLITE_MISUSE, "cvfs_rekey(): not a "
			       "cryptvfs connection or bad key size");
		return SQLITE_MISUSE;
	}
	old_secret = cvfs_secret_create(CVFS_SECRET_RAW, main->key->key,
					CVFS_KEY_BYTES);
	path = sqlite3_mprintf("%s", sqlite3_db_filename(*db_r, "main"));
	tmp = sqlite3_mprintf("%s" CVFS_REKEY_SUFFIX, path);
	wal = sqlite3_mprintf("%s" CVFS_WAL_SUFFIX, path);
	if (old_secret == NULL || path == NULL || tmp == NULL || wal == NULL) {
		rc = SQLITE_NOMEM;
		cvfs_error_set(error_r, rc, "out of memory");
		goto out;
	}
	rc = sqlite3_wal_checkpoint_v2(*db_r, "main",
				       SQLITE_CHECKPOINT_TRUNCATE,
				       &log_frames, &ckpt_frames);
	if (rc != SQLITE_OK) {
		cvfs_error_set(error_r, rc, "checkpoint before rekey: %s",
			       sqlite3_errmsg(*db_r));
		goto out;
	}
	/* A copy left by a rekey that crashed before its rename. */
	(void)unlink(tmp);
	rc = cvfs_export(*db_r, tmp, key, key_size, error_r);
	if (rc != SQLITE_OK)
		goto out_unlink;
	rc = sqlite3_close(*db_r);
	if (rc != SQLITE_OK) {
		cvfs_error_set(error_r, rc, "close before rekey: %s",
			       sqlite3_errmsg(*db_r));
		goto out_unlink;
	}
	*db_r = NULL;
	if (stat(wal, &st) == 0 && st.st_size > 0) {
		/* Another connection keeps the WAL alive: a rename now
		   would split the database in two. */
		rc = SQLITE_BUSY;
		cvfs_error_set(error_r, rc, "rekey %s: file is in use", path);
		goto out_reopen_old;
	}
	if (rename(tmp, path) < 0) {
		rc = SQLITE_IOERR;
		cvfs_error_set(error_r, rc, "rename(%s, %s) failed: %s", tmp,
			       path, strerror(errno));
		goto out_reopen_old;
	}
	rc = cvfs_fsync_path(path, error_r);
	if (rc == SQLITE_OK)
		rc = cvfs_open_v2(path, db_r, SQLITE_OPEN_READWRITE, key,
				  key_size, error_r);
	goto out;

out_reopen_old:
	(void)unlink(tmp);
	{
		struct cvfs_error ignored;

		(void)cvfs_open_secret(path, db_r, SQLITE_OPEN_READWRITE,
				       old_secret, &ignored);
	}
	goto out;
out_unlink:
	(void)unlink(tmp);
out:
	cvfs_secret_destroy(&old_secret);
	sqlite3_free(path);
	sqlite3_free(tmp);
	sqlite3_free(wal);
	return rc;
}
