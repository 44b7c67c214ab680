/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The "cryptvfs" VFS object: registration over "unix", xOpen, and the
   per-thread hand-over of a key from cvfs_open*() to xOpen. Every other
   VFS method passes straight through to the parent. */

#include <string.h>

#include <sodium.h>

#include "cryptvfs-private.h"

#define CVFS_PARENT_VFS_NAME "unix"

static _Thread_local const struct cvfs_secret *cvfs_staged;

static int cvfs_vfs_open(sqlite3_vfs *vfs, const char *name,
			 sqlite3_file *file, int flags, int *out_flags);
static int cvfs_vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir);
static int cvfs_vfs_access(sqlite3_vfs *vfs, const char *name, int flags,
			   int *res_r);
static int cvfs_vfs_full_pathname(sqlite3_vfs *vfs, const char *name,
				  int n_out, char *out);
static void *cvfs_vfs_dl_open(sqlite3_vfs *vfs, const char *path);
static void cvfs_vfs_dl_error(sqlite3_vfs *vfs, int n, char *msg);
static void (*cvfs_vfs_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void);
static void cvfs_vfs_dl_close(sqlite3_vfs *vfs, void *h);
static int cvfs_vfs_randomness(sqlite3_vfs *vfs, int n, char *out);
static int cvfs_vfs_sleep(sqlite3_vfs *vfs, int usec);
static int cvfs_vfs_current_time(sqlite3_vfs *vfs, double *t_r);
static int cvfs_vfs_get_last_error(sqlite3_vfs *vfs, int n, char *out);
static int cvfs_vfs_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *t_r);

static sqlite3_vfs cvfs_vfs = {
	.iVersion = 2,
	.szOsFile = 0,		/* set at registration */
	.mxPathname = 1024,	/* set at registration */
	.pNext = NULL,
	.zName = CVFS_VFS_NAME,
	.pAppData = NULL,	/* the parent VFS */
	.xOpen = cvfs_vfs_open,
	.xDelete = cvfs_vfs_delete,
	.xAccess = cvfs_vfs_access,
	.xFullPathname = cvfs_vfs_full_pathname,
	.xDlOpen = cvfs_vfs_dl_open,
	.xDlError = cvfs_vfs_dl_error,
	.xDlSym = cvfs_vfs_dl_sym,
	.xDlClose = cvfs_vfs_dl_close,
	.xRandomness = cvfs_vfs_randomness,
	.xSleep = cvfs_vfs_sleep,
	.xCurrentTime = cvfs_vfs_current_time,
	.xGetLastError = cvfs_vfs_get_last_error,
	.xCurrentTimeInt64 = cvfs_vfs_current_time_int64,
};

sqlite3_vfs *cvfs_vfs_parent(void)
{
	return cvfs_vfs.pAppData;
}

void cvfs_secret_stage(const struct cvfs_secret *secret)
{
	cvfs_staged = secret;
}

void cvfs_secret_unstage(void)
{
	cvfs_staged = NULL;
}

const struct cvfs_secret *cvfs_secret_staged(void)
{
	return cvfs_staged;
}

int cvfs_register(void)
{
	static sqlite3_mutex *mutex;
	sqlite3_vfs *parent;
	int rc;

	rc = sqlite3_initialize();
	if (rc != SQLITE_OK)
		return rc;
	if (sodium_init() < 0)
		return SQLITE_ERROR;
	mutex = sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_VFS1);
	sqlite3_mutex_enter(mutex);
	if (sqlite3_vfs_find(CVFS_VFS_NAME) != NULL) {
		sqlite3_mutex_leave(mutex);
		return SQLITE_OK;
	}
	parent = sqlite3_vfs_find(CVFS_PARENT_VFS_NAME);
	if (parent == NULL) {
		sqlite3_mutex_leave(mutex);
		return SQLITE_NOTFOUND;
	}
	cvfs_vfs.pAppData = parent;
	cvfs_vfs.mxPathname = parent->mxPathname;
	cvfs_vfs.szOsFile = (int)sizeof(struct cvfs_file) + parent->szOsFile;
	/* makeDflt = 0: only connections that ask for cryptvfs get it. */
	rc = sqlite3_vfs_register(&cvfs_vfs, 0);
	sqlite3_mutex_leave(mutex);
	return rc;
}

/* Finds the main database file a WAL or rollback journal belongs to. */
static struct cvfs_file *cvfs_vfs_main_of(const char *name)
{
	sqlite3_file *main;

	if (name == NULL)
		return NULL;
	main = sqlite3_database_file_object(name);
	if (main == NULL || main->pMethods != &cvfs_io_methods)
		return NULL;
	return (struct cvfs_file *)main;
}

/* Sets the main file's salt and key from the staged secret: the salt of an
   existing file is its bytes 0..15; an empty file gets the staged or a
   random salt. */
static int cvfs_vfs_main_key(struct cvfs_file *f,
			     const struct cvfs_secret *secret)
{
	sqlite3_file *real = cvfs_file_real(f);
	unsigned char key[CVFS_KEY_BYTES];
	int rc;

	rc = real->pMethods->xRead(real, f->salt, CVFS_SALT_BYTES, 0);
	if (rc == SQLITE_IOERR_SHORT_READ) {
		if (secret->have_salt)
			memcpy(f->salt, secret->salt, CVFS_SALT_BYTES);
		else
			randombytes_buf(f->salt, CVFS_SALT_BYTES);
	} else if (rc != SQLITE_OK) {
		return rc;
	}
	if (secret->kind == CVFS_SECRET_PASSPHRASE) {
		cvfs_pbkdf2_sha256(key, sizeof(key), secret->passphrase,
				   secret->passphrase_len, f->salt,
				   CVFS_SALT_BYTES, CVFS_KDF_ITERATIONS);
	} else {
		memcpy(key, secret->key, sizeof(key));
	}
	f->key = cvfs_key_create(key);
	sodium_memzero(key, sizeof(key));
	return f->key == NULL ? SQLITE_NOMEM : SQLITE_OK;
}

static int cvfs_vfs_open(sqlite3_vfs *vfs, const char *name,
			 sqlite3_file *file, int flags, int *out_flags)
{
	struct cvfs_file *f = (struct cvfs_file *)file;
	sqlite3_vfs *parent = vfs->pAppData;
	sqlite3_file *real = cvfs_file_real(f);
	int rc;

	memset(f, 0, sizeof(*f));
	rc = parent->xOpen(parent, name, real, flags, out_flags);
	if (rc != SQLITE_OK)
		return rc;
	rc = cvfs_file_setup(f, name, flags);
	if (rc != SQLITE_OK)
		goto fail;

	switch (f->kind) {
	case CVFS_FILE_MAIN:
		if (cvfs_staged == NULL) {
			/* ATTACH or VACUUM INTO without a key: refuse rather
			   than write a plaintext database. */
			sqlite3_log(SQLITE_CANTOPEN,
				    "cryptvfs: no key for %s; open it with "
				    "cvfs_open_v2() or cvfs_export()",
				    name == NULL ? "(temp)" : name);
			rc = SQLITE_CANTOPEN;
			goto fail;
		}
		rc = cvfs_vfs_main_key(f, cvfs_staged);
		if (rc != SQLITE_OK)
			goto fail;
		break;
	case CVFS_FILE_WAL:
	case CVFS_FILE_JOURNAL:
		f->main = cvfs_vfs_main_of(name);
		if (f->main == NULL || f->main->key == NULL) {
			sqlite3_log(SQLITE_CANTOPEN,
				    "cryptvfs: no main database for %s", name);
			rc = SQLITE_CANTOPEN;
			goto fail;
		}
		f->key = f->main->key;
		cvfs_key_ref(f->key);
		if (f->kind == CVFS_FILE_WAL)
			f->main->wal = f;
		break;
	case CVFS_FILE_TEMP: {
		unsigned char key[CVFS_KEY_BYTES];

		crypto_stream_chacha20_keygen(key);
		randombytes_buf(f->temp_nonce, sizeof(f->temp_nonce));
		f->key = cvfs_key_create(key);
		sodium_memzero(key, sizeof(key));
		if (f->key == NULL) {
			rc = SQLITE_NOMEM;
			goto fail;
		}
		break;
	}
	case CVFS_FILE_PLAIN:
		break;
	}
	/* Only now: a file without pMethods is never closed by SQLite. */
	f->base.pMethods = &cvfs_io_methods;
	return SQLITE_OK;
fail:
	real->pMethods->xClose(real);
	cvfs_key_unref(&f->key);
	sqlite3_free(f->scratch);
	f->scratch = NULL;
	f->base.pMethods = NULL;
	return rc;
}

static int cvfs_vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xDelete(parent, name, sync_dir);
}

static int cvfs_vfs_access(sqlite3_vfs *vfs, const char *name, int flags,
			   int *res_r)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xAccess(parent, name, flags, res_r);
}

static int cvfs_vfs_full_pathname(sqlite3_vfs *vfs, const char *name,
				  int n_out, char *out)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xFullPathname(parent, name, n_out, out);
}

static void *cvfs_vfs_dl_open(sqlite3_vfs *vfs, const char *path)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xDlOpen(parent, path);
}

static void cvfs_vfs_dl_error(sqlite3_vfs *vfs, int n, char *msg)
{
	sqlite3_vfs *parent = vfs->pAppData;

	parent->xDlError(parent, n, msg);
}

static void (*cvfs_vfs_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xDlSym(parent, h, sym);
}

static void cvfs_vfs_dl_close(sqlite3_vfs *vfs, void *h)
{
	sqlite3_vfs *parent = vfs->pAppData;

	parent->xDlClose(parent, h);
}

static int cvfs_vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xRandomness(parent, n, out);
}

static int cvfs_vfs_sleep(sqlite3_vfs *vfs, int usec)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xSleep(parent, usec);
}

static int cvfs_vfs_current_time(sqlite3_vfs *vfs, double *t_r)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xCurrentTime(parent, t_r);
}

static int cvfs_vfs_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xGetLastError(parent, n, out);
}

static int cvfs_vfs_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *t_r)
{
	sqlite3_vfs *parent = vfs->pAppData;

	return parent->xCurrentTimeInt64(parent, t_r);
}
