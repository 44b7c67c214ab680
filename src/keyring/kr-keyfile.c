/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
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

_Static_assert(sizeof(KR_MAGIC) == KR_MAGIC_BYTES, "magic size");
_Static_assert(KR_KEYFILE_ENCODED_MAX <= KR_KEYFILE_SIZE_MAX,
	       "largest keyfile must be readable");
_Static_assert(KR_RECOVERY_BYTES == 144, "format table");
_Static_assert(KR_SLOT_FIXED_BYTES == 154, "format table");

#define KR_KEYFILE_MODE 0600
#define KR_TEMP_RANDOM_BYTES 4

const struct kr_pwhash_params kr_pwhash_default = {
	.opslimit = 3,
	.memlimit = 64 * 1024 * 1024,
};

/* ---- encoding ---- */

struct kr_writer {
	unsigned char *data;
	size_t size, used;
};

struct kr_reader {
	const unsigned char *data;
	size_t left;
	bool failed;
};

static void kr_wr_bytes(struct kr_writer *wr, const void *data, size_t len)
{
	assert(wr->used + len <= wr->size);
	memcpy(wr->data + wr->used, data, len);
	wr->used += len;
}

static void kr_wr_le(struct kr_writer *wr, uint64_t value, size_t len)
{
	assert(wr->used + len <= wr->size);
	for (size_t i = 0; i < len; i++)
		wr->data[wr->used++] = (unsigned char)(value >> (8 * i));
}

static const unsigned char *
kr_rd_bytes(struct kr_reader *rd, size_t len)
{
	const unsigned char *p = rd->data;

	if (rd->failed || len > rd->left) {
		rd->failed = true;
		return NULL;
	}
	rd->data += len;
	rd->left -= len;
	return p;
}

static uint64_t kr_rd_le(struct kr_reader *rd, size_t len)
{
	const unsigned char *p = kr_rd_bytes(rd, len);
	uint64_t value = 0;

	if (p == NULL)
		return 0;
	for (size_t i = len; i > 0; i--)
		value = (value << 8) | p[i - 1];
	return value;
}

static void kr_wr_header(struct kr_writer *wr, const struct kr_keyfile *kf)
{
	kr_wr_bytes(wr, KR_MAGIC, KR_MAGIC_BYTES);
	kr_wr_le(wr, KR_KEYFILE_VERSION, 4);
	kr_wr_le(wr, kf->user_len, 2);
	kr_wr_bytes(wr, kf->user, kf->user_len);
	kr_wr_bytes(wr, kf->public_key, KR_PUBLIC_KEY_BYTES);
}

static void kr_wr_slot_ad(struct kr_writer *wr, const struct kr_slot *slot)
{
	kr_wr_le(wr, slot->id, 4);
	kr_wr_le(wr, (uint64_t)slot->created, 8);
	kr_wr_le(wr, slot->flags, 1);
	kr_wr_le(wr, slot->label_len, 1);
	kr_wr_bytes(wr, slot->label, slot->label_len);
	kr_wr_le(wr, slot->opslimit, 8);
	kr_wr_le(wr, slot->memlimit, 8);
	kr_wr_bytes(wr, slot->salt, KR_SALT_BYTES);
	kr_wr_bytes(wr, slot->hint, KR_HINT_BYTES);
}

size_t kr_keyfile_header(const struct kr_keyfile *kf,
			 unsigned char header_r[KR_HEADER_MAX])
{
	struct kr_writer wr = { .data = header_r, .size = KR_HEADER_MAX };

	kr_wr_header(&wr, kf);
	return wr.used;
}

size_t kr_keyfile_slot_ad(const struct kr_keyfile *kf,
			  const struct kr_slot *slot,
			  unsigned char ad_r[KR_SLOT_AD_MAX])
{
	struct kr_writer wr = { .data = ad_r, .size = KR_SLOT_AD_MAX };

	kr_wr_header(&wr, kf);
	kr_wr_slot_ad(&wr, slot);
	return wr.used;
}

int kr_keyfile_serialize(const struct kr_keyfile *kf, unsigned char **data_r,
			 size_t *size_r, struct kr_error *err)
{
	struct kr_writer wr = { .size = KR_KEYFILE_ENCODED_MAX };

	wr.data = malloc(wr.size);
	if (wr.data == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	kr_wr_header(&wr, kf);
	kr_wr_le(&wr, kf->has_recovery ? 1 : 0, 1);
	if (kf->has_recovery)
		kr_wr_bytes(&wr, kf->recovery, KR_RECOVERY_BYTES);
	kr_wr_le(&wr, kf->next_slot_id, 4);
	kr_wr_le(&wr, kf->slot_count, 4);
	for (unsigned int i = 0; i < kf->slot_count; i++) {
		const struct kr_slot *slot = &kf->slots[i];

		kr_wr_slot_ad(&wr, slot);
		kr_wr_bytes(&wr, slot->nonce, KR_NONCE_BYTES);
		kr_wr_bytes(&wr, slot->wrapped, KR_WRAPPED_BYTES);
	}
	*data_r = wr.data;
	*size_r = wr.used;
	return 0;
}

/* ---- validation shared by the parser and the constructors ---- */

static bool kr_user_valid(const char *user, size_t len)
{
	const char *at = NULL;

	if (len == 0 || len > KR_USER_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)user[i];

		if (c <= ' ' || c >= 0x7f)
			return false;
		if (c == '@') {
			if (at != NULL)
				return false;
			at = &user[i];
		}
	}
	return at != NULL && at != user && at != &user[len - 1];
}

/* Well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF)
   without C0 controls or DEL, so labels print safely. */
bool kr_label_valid(const char *label, size_t len)
{
	const unsigned char *p = (const unsigned char *)label;
	size_t i = 0;

	if (len > KR_LABEL_MAX)
		return false;
	while (i < len) {
		unsigned char c = p[i];
		unsigned int extra;
		uint32_t cp, min;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return false;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			extra = 1; cp = c & 0x1f; min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			extra = 2; cp = c & 0x0f; min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			extra = 3; cp = c & 0x07; min = 0x10000;
		} else {
			return false;
		}
		if (extra >= len - i)
			return false;
		for (unsigned int k = 1; k <= extra; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += extra + 1;
	}
	return true;
}

bool kr_pwhash_params_valid(uint64_t opslimit, uint64_t memlimit)
{
	return opslimit >= KR_OPSLIMIT_MIN && opslimit <= KR_OPSLIMIT_MAX &&
		memlimit >= KR_MEMLIMIT_MIN && memlimit <= KR_MEMLIMIT_MAX &&
		memlimit <= SIZE_MAX;
}

/* ---- parsing ---- */

static int kr_parse_slot(struct kr_reader *rd, uint32_t prev_id,
			 struct kr_slot *slot, struct kr_error *err)
{
	const unsigned char *p;

	slot->id = (uint32_t)kr_rd_le(rd, 4);
	slot->created = (int64_t)kr_rd_le(rd, 8);
	slot->flags = (uint8_t)kr_rd_le(rd, 1);
	slot->label_len = (uint8_t)kr_rd_le(rd, 1);
	if (rd->failed)
		goto truncated;
	if (slot->id <= prev_id) {
		kr_error_set(err, KR_ERR_CORRUPT,
			     "slot id %u out of order", slot->id);
		return -1;
	}
	if ((slot->flags & ~KR_SLOT_FLAGS_KNOWN) != 0) {
		kr_error_set(err, KR_ERR_CORRUPT,
			     "slot %u: unknown flags 0x%02x",
			     slot->id, slot->flags);
		return -1;
	}
	p = kr_rd_bytes(rd, slot->label_len);
	if (p == NULL)
		goto truncated;
	if (!kr_label_valid((const char *)p, slot->label_len)) {
		kr_error_set(err, KR_ERR_CORRUPT, "slot %u: invalid label",
			     slot->id);
		return -1;
	}
	memcpy(slot->label, p, slot->label_len);
	slot->label[slot->label_len] = '\0';

	slot->opslimit = kr_rd_le(rd, 8);
	slot->memlimit = kr_rd_le(rd, 8);
	if (rd->failed)
		goto truncated;
	if (!kr_pwhash_params_valid(slot->opslimit, slot->memlimit)) {
		kr_error_set(err, KR_ERR_CORRUPT,
			     "slot %u: Argon2id parameters out of bounds",
			     slot->id);
		return -1;
	}
	if ((p = kr_rd_bytes(rd, KR_SALT_BYTES)) == NULL)
		goto truncated;
	memcpy(slot->salt, p, KR_SALT_BYTES);
	if ((p = kr_rd_bytes(rd, KR_HINT_BYTES)) == NULL)
		goto truncated;
	memcpy(slot->hint, p, KR_HINT_BYTES);
	if ((slot->flags & KR_SLOT_FLAG_HINT) == 0 &&
	    !sodium_is_zero(slot->hint, KR_HINT_BYTES)) {
		kr_error_set(err, KR_ERR_CORRUPT, "slot %u: stray hint",
			     slot->id);
		return -1;
	}
	if ((p = kr_rd_bytes(rd, KR_NONCE_BYTES)) == NULL)
		goto truncated;
	memcpy(slot->nonce, p, KR_NONCE_BYTES);
	if ((p = kr_rd_bytes(rd, KR_WRAPPED_BYTES)) == NULL)
		goto truncated;
	memcpy(slot->wrapped, p, KR_WRAPPED_BYTES);
	return 0;

truncated:
	kr_error_set(err, KR_ERR_CORRUPT, "truncated slot");
	return -1;
}

static int kr_parse(struct kr_reader *rd, struct kr_keyfile *kf,
		    struct kr_error *err)
{
	const unsigned char *p;
	uint64_t version, recovery;
	uint32_t prev_id = 0;

	p = kr_rd_bytes(rd, KR_MAGIC_BYTES);
	if (p == NULL || memcmp(p, KR_MAGIC, KR_MAGIC_BYTES) != 0) {
		kr_error_set(err, KR_ERR_CORRUPT, "not a keyfile (bad magic)");
		return -1;
	}
	version = kr_rd_le(rd, 4);
	if (rd->failed)
		goto truncated;
	if (version != KR_KEYFILE_VERSION) {
		kr_error_set(err, KR_ERR_CORRUPT,
			     "unsupported keyfile version %llu",
			     (unsigned long long)version);
		return -1;
	}
	kf->user_len = (size_t)kr_rd_le(rd, 2);
	if (rd->failed)
		goto truncated;
	if (kf->user_len == 0 || kf->user_len > KR_USER_MAX) {
		kr_error_set(err, KR_ERR_CORRUPT, "invalid user length %zu",
			     kf->user_len);
		return -1;
	}
	if ((p = kr_rd_bytes(rd, kf->user_len)) == NULL)
		goto truncated;
	if (!kr_user_valid((const char *)p, kf->user_len)) {
		kr_error_set(err, KR_ERR_CORRUPT, "invalid user name");
		return -1;
	}
	memcpy(kf->user, p, kf->user_len);
	kf->user[kf->user_len] = '\0';
	if ((p = kr_rd_bytes(rd, KR_PUBLIC_KEY_BYTES)) == NULL)
		goto truncated;
	memcpy(kf->public_key, p, KR_PUBLIC_KEY_BYTES);

	recovery = kr_rd_le(rd, 1);
	if (rd->failed)
		goto truncated;
	if (recovery > 1) {
		kr_error_set(err, KR_ERR_CORRUPT, "invalid recovery flag");
		return -1;
	}
	kf->has_recovery = recovery == 1;
	if (kf->has_recovery) {
		if ((p = kr_rd_bytes(rd, KR_RECOVERY_BYTES)) == NULL)
			goto truncated;
		memcpy(kf->recovery, p, KR_RECOVERY_BYTES);
	}

	kf->next_slot_id = (uint32_t)kr_rd_le(rd, 4);
	kf->slot_count = (unsigned int)kr_rd_le(rd, 4);
	if (rd->failed)
		goto truncated;
	if (kf->slot_count > KR_SLOTS_MAX) {
		kr_error_set(err, KR_ERR_CORRUPT, "too many slots (%u)",
			     kf->slot_count);
		return -1;
	}
	for (unsigned int i = 0; i < kf->slot_count; i++) {
		if (kr_parse_slot(rd, prev_id, &kf->slots[i], err) < 0)
			return -1;
		prev_id = kf->slots[i].id;
	}
	/* Ids are never reused: the next one must lie past every slot. */
	if (kf->next_slot_id == 0 || kf->next_slot_id <= prev_id) {
		kr_error_set(err, KR_ERR_CORRUPT, "invalid next slot id %u",
			     kf->next_slot_id);
		return -1;
	}
	if (rd->left != 0) {
		kr_error_set(err, KR_ERR_CORRUPT, "%zu trailing bytes",
			     rd->left);
		return -1;
	}
	return 0;

truncated:
	kr_error_set(err, KR_ERR_CORRUPT, "truncated header");
	return -1;
}

int kr_keyfile_parse(const unsigned char *data, size_t size,
		     struct kr_keyfile **kf_r, struct kr_error *err)
{
	struct kr_reader rd = { .data = data, .left = size };
	struct kr_keyfile *kf;

	*kf_r = NULL;
	kf = calloc(1, sizeof(*kf));
	if (kf == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	if (kr_parse(&rd, kf, err) < 0) {
		free(kf);
		return -1;
	}
	*kf_r = kf;
	return 0;
}

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

static int kr_write_full(int fd, const unsigned char *buf, size_t size)
{
	while (size > 0) {
		ssize_t ret = write(fd, buf, size);

		if (ret < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (ret == 0) {
			errno = EIO;
			return -1;
		}
		buf += ret;
		size -= (size_t)ret;
	}
	return 0;
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

static void kr_dirname(const char *path, char *dir_r, size_t size)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL) {
		(void)snprintf(dir_r, size, ".");
	} else if (slash == path) {
		(void)snprintf(dir_r, size, "/");
	} else {
		(void)snprintf(dir_r, size, "%.*s",
			       (int)(slash - path), path);
	}
}

/* fsync() of the directory makes the rename itself durable. */
static int kr_fsync_dir(const char *path, struct kr_error *err)
{
	char dir[PATH_MAX];
	int fd;

	kr_dirname(path, dir, sizeof(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		kr_error_errno(err, "open", dir);
		return -1;
	}
	if (fsync(fd) < 0) {
		kr_error_errno(err, "fsync", dir);
		(void)close(fd);
		return -1;
	}
	(void)close(fd);
	return 0;
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
