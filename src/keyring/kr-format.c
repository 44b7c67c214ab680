/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The keyfile format (keyring-private.h has the table): encoding,
   validation and the strict parser.  No I/O and no keys here, so the
   files that build on the format (kr-keyfile.c, kr-slot.c, kr-recovery.c)
   never call each other through it. */

#include "keyring-private.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(KR_MAGIC) == KR_MAGIC_BYTES, "magic size");
_Static_assert(KR_KEYFILE_ENCODED_MAX <= KR_KEYFILE_SIZE_MAX,
	       "largest keyfile must be readable");
_Static_assert(KR_RECOVERY_BYTES == 144, "format table");
_Static_assert(KR_SLOT_FIXED_BYTES == 154, "format table");

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

bool kr_user_valid(const char *user, size_t len)
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
