/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Appending sealed records to the LMTP spool (format in keyring.h, the
   contract at kr_spool_append_begin()).  Records are written whole, one
   write() each, after the end of the last intact record; what a crash
   leaves behind is at most a torn tail, which the next append cuts and a
   scan reports as KR_SPOOL_ITEM_TORN in the meantime. */

#include "keyring-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define KR_SPOOL_MODE 0600

struct kr_spool_append {
	char *path;
	int fd;
	/* Where this append began: the spool is cut back to it on failure. */
	uint64_t start;
	bool fsync;
};

static ssize_t
kr_spool_append_pread(void *context, unsigned char *buf, size_t size,
		      uint64_t offset)
{
	const int *fd = context;

	return pread(*fd, buf, size, (off_t)offset);
}

/* The end of the last intact or damaged item: where a torn tail, if any,
   begins. */
static int
kr_spool_append_end(struct kr_spool_append *app, uint64_t size,
		    uint64_t *end_r, struct kr_error *err)
{
	struct kr_spool_scan *scan;
	struct kr_spool_item item;
	int ret;

	*end_r = size;
	scan = kr_spool_scan_create(size, kr_spool_append_pread, &app->fd);
	if (scan == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "%s: out of memory",
			     app->path);
		return -1;
	}
	while ((ret = kr_spool_scan_next(scan, &item, err)) > 0) {
		if (item.kind == KR_SPOOL_ITEM_TORN)
			*end_r = item.offset;
	}
	kr_spool_scan_destroy(&scan);
	if (ret < 0) {
		char text[KR_TEXT_MAX];
		int sys_errno = err->sys_errno;

		memcpy(text, err->text, sizeof(text));
		kr_error_set(err, err->kind, "%s: %s", app->path, text);
		err->sys_errno = sys_errno;
		return -1;
	}
	return 0;
}

/* Cuts the spool back to where the append began, durably where it can;
   keeps errno. */
static void kr_spool_append_cut_back(struct kr_spool_append *app)
{
	int saved_errno = errno;

	if (ftruncate(app->fd, (off_t)app->start) == 0 && app->fsync)
		(void)fdatasync(app->fd);
	errno = saved_errno;
}

static void kr_spool_append_free(struct kr_spool_append **_app)
{
	struct kr_spool_append *app = *_app;
	int saved_errno = errno;

	*_app = NULL;
	if (app->fd != -1)
		(void)close(app->fd);	/* releases the flock */
	free(app->path);
	free(app);
	errno = saved_errno;
}

int kr_spool_append_begin(const char *path, bool fsync,
			  struct kr_spool_append **app_r, uint64_t *cut_r,
			  struct kr_error *err)
{
	struct kr_spool_append *app;
	struct stat st;
	uint64_t end;

	*app_r = NULL;
	*cut_r = 0;
	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	app = calloc(1, sizeof(*app));
	if (app == NULL || (app->path = strdup(path)) == NULL) {
		free(app);
		kr_error_set(err, KR_ERR_INTERNAL, "%s: out of memory", path);
		return -1;
	}
	app->fsync = fsync;
	/* Read too: the scan for a torn tail preads the records. */
	app->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC,
		       KR_SPOOL_MODE);
	if (app->fd < 0) {
		kr_error_errno(err, "open", path);
		kr_spool_append_free(&app);
		return -1;
	}
	if (flock(app->fd, LOCK_EX) < 0) {
		kr_error_errno(err, "flock", path);
		kr_spool_append_free(&app);
		return -1;
	}
	if (fstat(app->fd, &st) < 0) {
		kr_error_errno(err, "fstat", path);
		kr_spool_append_free(&app);
		return -1;
	}
	if (kr_spool_append_end(app, (uint64_t)st.st_size, &end, err) < 0) {
		kr_spool_append_free(&app);
		return -1;
	}
	/* Cut a torn tail so that the new records start at a boundary. */
	if (end < (uint64_t)st.st_size) {
		if (ftruncate(app->fd, (off_t)end) < 0) {
			kr_error_errno(err, "ftruncate", path);
			kr_spool_append_free(&app);
			return -1;
		}
		*cut_r = (uint64_t)st.st_size - end;
	}
	app->start = end;
	*app_r = app;
	return 0;
}

uint64_t kr_spool_append_offset(const struct kr_spool_append *app)
{
	return app->start;
}

int kr_spool_append_record(struct kr_spool_append *app,
			   const unsigned char pk[KR_PUBLIC_KEY_BYTES],
			   const struct kr_spool_meta *meta,
			   const unsigned char *msg, size_t msg_len,
			   struct kr_error *err)
{
	unsigned char id[KR_SPOOL_ID_BYTES];
	size_t meta_size, plain_size, sealed_len, rec_size;
	unsigned char *plain, *rec;
	int ret = 0;

	kr_error_clear(err);
	meta_size = kr_spool_meta_size(meta);
	if (meta_size == 0) {
		kr_error_set(err, KR_ERR_INVALID,
			     "folder or keyword names not storable");
		return -1;
	}
	if (msg_len > KR_SPOOL_SEALED_MAX - meta_size ||
	    kr_seal_size(meta_size + msg_len) > KR_SPOOL_SEALED_MAX) {
		kr_error_set(err, KR_ERR_LIMIT,
			     "message too large for the spool");
		return -1;
	}
	plain_size = meta_size + msg_len;
	sealed_len = kr_seal_size(plain_size);
	rec_size = KR_SPOOL_HEADER_BYTES + sealed_len;
	plain = malloc(plain_size);
	rec = malloc(rec_size);
	if (plain == NULL || rec == NULL) {
		free(plain);
		free(rec);
		kr_error_set(err, KR_ERR_INTERNAL, "%s: out of memory",
			     app->path);
		return -1;
	}
	(void)kr_spool_meta_encode(plain, meta_size, meta);
	memcpy(plain + meta_size, msg, msg_len);
	randombytes_buf(id, sizeof(id));
	kr_spool_header_init(rec, id, sealed_len);
	if (kr_seal(rec + KR_SPOOL_HEADER_BYTES, sealed_len, plain,
		    plain_size, pk, err) < 0)
		ret = -1;
	else if (kr_write_full(app->fd, rec, rec_size) < 0) {
		kr_error_errno(err, "write", app->path);
		ret = -1;
	}
	sodium_memzero(plain, plain_size);
	free(plain);
	free(rec);
	return ret;
}

int kr_spool_append_commit(struct kr_spool_append **_app,
			   struct kr_error *err)
{
	struct kr_spool_append *app = *_app;
	int ret = 0;

	kr_error_clear(err);
	if (app->fsync) {
		if (fdatasync(app->fd) < 0) {
			kr_error_errno(err, "fdatasync", app->path);
			ret = -1;
		} else if (app->start == 0 &&
			   kr_fsync_dir(app->path, err) < 0) {
			/* An empty spool may be a file no one has synced the
			   directory entry of (created here, or by a session
			   watching INBOX): the entry must be as durable as
			   the records. */
			ret = -1;
		}
	}
	if (ret < 0)
		kr_spool_append_cut_back(app);
	kr_spool_append_free(_app);
	return ret;
}

void kr_spool_append_abort(struct kr_spool_append **_app)
{
	if (*_app == NULL)
		return;
	kr_spool_append_cut_back(*_app);
	kr_spool_append_free(_app);
}
