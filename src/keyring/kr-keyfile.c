/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The keyfile as a file and as an object: atomic read and write, a new
   mailbox's keys, the accessors.  The format itself is kr-format.c. */

#include "keyring-private.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KR_KEYFILE_MODE 0600
#define KR_TEMP_RANDOM_BYTES 4

/* ---- files ---- */

static ssize_t kr_read_full(int fd, unsigned char *buf, size_t size)
{
	size_t done = 0;

	while (done < size) {
		ssize_t ret = read(fd, buf + done, size - done);

		if (ret < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (ret == 0)
			break;
		done += (size_t)ret;
	}
	return (ssize_t)done;
}

int kr_keyfile_read(const char *path, struct kr_keyfile **kf_r,
		    struct kr_error *err)
{
	unsigned char *buf;
	struct stat st;
	ssize_t size;
	int fd, ret;

	*kf_r = NULL;
	kr_error_clear(err);
	/* O_NONBLOCK: a FIFO planted at path must not hang the login. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			kr_error_set(err, KR_ERR_NOT_FOUND,
				     "%s: no keyfile", path);
			return 0;
		}
		kr_error_errno(err, "open", path);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		kr_error_errno(err, "fstat", path);
		(void)close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		kr_error_set(err, KR_ERR_IO, "%s: not a regular file", path);
		(void)close(fd);
		return -1;
	}
	if (st.st_size > KR_KEYFILE_SIZE_MAX) {
		kr_error_set(err, KR_ERR_CORRUPT, "%s: too large (%lld bytes)",
			     path, (long long)st.st_size);
		(void)close(fd);
		return -1;
	}
	/* One byte more than allowed, to notice a file that grew. */
	buf = malloc(KR_KEYFILE_SIZE_MAX + 1);
	if (buf == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		(void)close(fd);
		return -1;
	}
	size = kr_read_full(fd, buf, KR_KEYFILE_SIZE_MAX + 1);
	if (size < 0) {
		kr_error_errno(err, "read", path);
		(void)close(fd);
		free(buf);
		return -1;
	}
	(void)close(fd);
	if (size > KR_KEYFILE_SIZE_MAX) {
		kr_error_set(err, KR_ERR_CORRUPT, "%s: too large", path);
		free(buf);
		return -1;
	}
	ret = kr_keyfile_parse(buf, (size_t)size, kf_r, err);
	free(buf);
	if (ret < 0) {
		if (err != NULL) {
			char text[sizeof(err->text)];

			memcpy(text, err->text, sizeof(text));
			kr_error_set(err, err->kind, "%s: %s", path, text);
		}
		return -1;
	}
	return 1;
}

int kr_keyfile_write(const struct kr_keyfile *kf, const char *path,
		     uid_t uid, gid_t gid, struct kr_error *err)
{
	unsigned char rnd[KR_TEMP_RANDOM_BYTES];
	char rnd_hex[KR_TEMP_RANDOM_BYTES * 2 + 1];
	char temp_path[PATH_MAX];
	unsigned char *data;
	size_t size;
	bool temp_exists = false;
	int fd = -1, ret = -1, len;

	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	randombytes_buf(rnd, sizeof(rnd));
	(void)sodium_bin2hex(rnd_hex, sizeof(rnd_hex), rnd, sizeof(rnd));
	len = snprintf(temp_path, sizeof(temp_path), "%s.tmp.%ld.%s",
		       path, (long)getpid(), rnd_hex);
	if (len < 0 || (size_t)len >= sizeof(temp_path)) {
		errno = ENAMETOOLONG;
		kr_error_errno(err, "open", path);
		return -1;
	}
	if (kr_keyfile_serialize(kf, &data, &size, err) < 0)
		return -1;

	fd = open(temp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		  O_CLOEXEC, KR_KEYFILE_MODE);
	if (fd < 0) {
		kr_error_errno(err, "open", temp_path);
		goto out;
	}
	temp_exists = true;
	if (kr_write_full(fd, data, size) < 0) {
		kr_error_errno(err, "write", temp_path);
		goto out;
	}
	if (uid != (uid_t)-1 && fchown(fd, uid, gid) < 0) {
		kr_error_errno(err, "fchown", temp_path);
		goto out;
	}
	/* Explicitly, whatever the umask; after fchown, which may clear
	   mode bits. */
	if (fchmod(fd, KR_KEYFILE_MODE) < 0) {
		kr_error_errno(err, "fchmod", temp_path);
		goto out;
	}
	if (fsync(fd) < 0) {
		kr_error_errno(err, "fsync", temp_path);
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		kr_error_errno(err, "close", temp_path);
		goto out;
	}
	fd = -1;
	if (rename(temp_path, path) < 0) {
		kr_error_errno(err, "rename", path);
		goto out;
	}
	temp_exists = false;
	if (kr_fsync_dir(path, err) < 0)
		goto out;
	ret = 0;
out:
	if (fd >= 0)
		(void)close(fd);
	if (temp_exists)
		(void)unlink(temp_path);
	free(data);
	return ret;
}

/* ---- objects ---- */

int kr_keyfile_create(const char *user, const unsigned char *recovery_pk,
		      struct kr_keyfile **kf_r, struct kr_keys **keys_r,
		      struct kr_error *err)
{
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	size_t user_len;

	*kf_r = NULL;
	*keys_r = NULL;
	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	user_len = strnlen(user, KR_USER_MAX + 1);
	if (!kr_user_valid(user, user_len)) {
		kr_error_set(err, KR_ERR_LIMIT,
			     "invalid user name (want name@domain, "
			     "at most %d printable characters)", KR_USER_MAX);
		return -1;
	}
	kf = calloc(1, sizeof(*kf));
	keys = kr_keys_new();
	if (kf == NULL || keys == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		free(kf);
		kr_keys_free(&keys);
		return -1;
	}
	memcpy(kf->user, user, user_len);
	kf->user_len = user_len;
	kf->next_slot_id = 1;

	randombytes_buf(keys->master_key, sizeof(keys->master_key));
	if (crypto_box_keypair(keys->public_key, keys->secret_key) < 0) {
		kr_error_set(err, KR_ERR_INTERNAL,
			     "crypto_box_keypair() failed");
		goto fail;
	}
	memcpy(kf->public_key, keys->public_key, KR_PUBLIC_KEY_BYTES);
	if (recovery_pk != NULL &&
	    kr_recovery_seal(kf, keys, recovery_pk, err) < 0)
		goto fail;
	*kf_r = kf;
	*keys_r = keys;
	return 0;
fail:
	free(kf);
	kr_keys_free(&keys);
	return -1;
}

void kr_keyfile_free(struct kr_keyfile **_kf)
{
	struct kr_keyfile *kf = *_kf;

	if (kf == NULL)
		return;
	*_kf = NULL;
	free(kf);
}

const char *kr_keyfile_user(const struct kr_keyfile *kf)
{
	return kf->user;
}

const unsigned char *kr_keyfile_public_key(const struct kr_keyfile *kf)
{
	return kf->public_key;
}

void kr_keyfile_id(const struct kr_keyfile *kf,
		   char id_r[KR_KEYFILE_ID_BUFSIZE])
{
	(void)sodium_bin2hex(id_r, KR_KEYFILE_ID_BUFSIZE, kf->public_key,
			     (KR_KEYFILE_ID_BUFSIZE - 1) / 2);
}

bool kr_keyfile_has_recovery(const struct kr_keyfile *kf)
{
	return kf->has_recovery;
}

unsigned int kr_keyfile_slot_count(const struct kr_keyfile *kf)
{
	return kf->slot_count;
}

void kr_keyfile_slot_info(const struct kr_keyfile *kf, unsigned int idx,
			  struct kr_slot_info *info_r)
{
	const struct kr_slot *slot;

	assert(idx < kf->slot_count);
	slot = &kf->slots[idx];
	memset(info_r, 0, sizeof(*info_r));
	info_r->id = slot->id;
	memcpy(info_r->label, slot->label, slot->label_len + 1);
	info_r->created = (time_t)slot->created;
	info_r->opslimit = slot->opslimit;
	info_r->memlimit = (size_t)slot->memlimit;
}

const struct kr_slot *kr_keyfile_slot_find(const struct kr_keyfile *kf,
					   unsigned int slot_id)
{
	for (unsigned int i = 0; i < kf->slot_count; i++) {
		if (kf->slots[i].id == slot_id)
			return &kf->slots[i];
	}
	return NULL;
}
