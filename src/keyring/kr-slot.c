/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "keyring-private.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

_Static_assert(sizeof(KR_PASSWORD_ALPHABET) - 1 == KR_PASSWORD_ALPHABET_SIZE,
	       "password alphabet size");
_Static_assert(KR_PASSWORD_CHARS + KR_PASSWORD_CHARS / KR_PASSWORD_GROUP <=
	       KR_PASSWORD_BUFSIZE, "password buffer");
_Static_assert(KR_KEK_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
	       "KEK is the AEAD key");
_Static_assert(sizeof(struct kr_keys) ==
	       KR_WRAPPED_PLAIN_BYTES + KR_PUBLIC_KEY_BYTES, "kr_keys layout");
/* "4294967295:" + base64 + NUL */
_Static_assert(10 + 1 + sodium_base64_ENCODED_LEN(KR_KEK_BYTES,
		sodium_base64_VARIANT_ORIGINAL) <= KR_KEK_FIELD_BUFSIZE,
	       "KEK field size");

#define KR_KEK_BASE64_LEN \
	(sodium_base64_ENCODED_LEN(KR_KEK_BYTES, \
				   sodium_base64_VARIANT_ORIGINAL) - 1)
#define KR_SLOT_ID_MAX (UINT32_MAX - 1)

/* A password as it is hashed: see keyring-private.h. */
struct kr_password {
	struct kr_secret *buf;
	size_t len;
	bool shaped;
};

/* ---- passwords ---- */

void kr_password_generate(char password_r[KR_PASSWORD_BUFSIZE])
{
	/* randombytes works (or aborts) even if sodium_init() fails. */
	int init_ret = sodium_init();
	size_t n = 0;

	(void)init_ret;
	for (unsigned int i = 0; i < KR_PASSWORD_CHARS; i++) {
		if (i > 0 && i % KR_PASSWORD_GROUP == 0)
			password_r[n++] = '-';
		password_r[n++] = KR_PASSWORD_ALPHABET[
			randombytes_uniform(KR_PASSWORD_ALPHABET_SIZE)];
	}
	memset(password_r + n, 0, KR_PASSWORD_BUFSIZE - n);
}

static char kr_password_fold(char c)
{
	if (c >= 'A' && c <= 'Z')
		c = (char)(c - 'A' + 'a');
	switch (c) {
	case 'o':
		return '0';
	case 'i':
	case 'l':
		return '1';
	default:
		return c;
	}
}

/* Fills pw from password (len <= KR_PASSWORD_INPUT_MAX). */
static int kr_password_normalise(const char *password, size_t len,
				 struct kr_password *pw_r)
{
	unsigned char *out;
	size_t n = 0;
	bool shaped = true;

	assert(len <= KR_PASSWORD_INPUT_MAX);
	pw_r->buf = kr_secret_new(KR_PASSWORD_INPUT_MAX);
	if (pw_r->buf == NULL)
		return -1;
	out = kr_secret_data(pw_r->buf);
	for (size_t i = 0; i < len && shaped; i++) {
		char c = password[i];

		if (c == '-' || c == ' ' || c == '\t')
			continue;
		c = kr_password_fold(c);
		if (n == KR_PASSWORD_CHARS || c == '\0' ||
		    strchr(KR_PASSWORD_ALPHABET, c) == NULL)
			shaped = false;
		else
			out[n++] = (unsigned char)c;
	}
	pw_r->shaped = shaped && n == KR_PASSWORD_CHARS;
	if (pw_r->shaped) {
		pw_r->len = n;
	} else {
		memcpy(out, password, len);
		pw_r->len = len;
	}
	return 0;
}

static void kr_password_free(struct kr_password *pw)
{
	kr_secret_free(&pw->buf);
	pw->len = 0;
}

static void kr_slot_hint(unsigned char hint_r[KR_HINT_BYTES],
			 const struct kr_password *pw,
			 const unsigned char salt[KR_SALT_BYTES])
{
	unsigned char hash[KR_HINT_HASH_BYTES];

	(void)crypto_generichash(hash, sizeof(hash), kr_secret_data(pw->buf),
				 pw->len, salt, KR_SALT_BYTES);
	memcpy(hint_r, hash, KR_HINT_BYTES);
	sodium_memzero(hash, sizeof(hash));
}

static int kr_slot_kek(unsigned char kek_r[KR_KEK_BYTES],
		       const struct kr_password *pw,
		       const struct kr_slot *slot, struct kr_error *err)
{
	if (crypto_pwhash(kek_r, KR_KEK_BYTES,
			  (const char *)kr_secret_data(pw->buf), pw->len,
			  slot->salt, slot->opslimit, (size_t)slot->memlimit,
			  crypto_pwhash_ALG_ARGON2ID13) < 0) {
		sodium_memzero(kek_r, KR_KEK_BYTES);
		kr_error_set(err, KR_ERR_INTERNAL,
			     "crypto_pwhash() failed (out of memory?)");
		return -1;
	}
	return 0;
}

/* Decrypts slot into keys. Returns true if it authenticates and the
   secret key belongs to the header's public key; keys is wiped if not. */
static bool kr_slot_decrypt(const struct kr_keyfile *kf,
			    const struct kr_slot *slot,
			    const unsigned char kek[KR_KEK_BYTES],
			    struct kr_keys *keys)
{
	unsigned char ad[KR_SLOT_AD_MAX];
	size_t ad_len = kr_keyfile_slot_ad(kf, slot, ad);

	/* master_key || secret_key, adjacent (kr-secret.c). */
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		keys->master_key, NULL, NULL, slot->wrapped, KR_WRAPPED_BYTES,
		ad, ad_len, slot->nonce, kek) < 0 ||
	    !kr_keys_pair_matches(kf->public_key, keys->secret_key)) {
		sodium_memzero(keys, sizeof(*keys));
		return false;
	}
	memcpy(keys->public_key, kf->public_key, KR_PUBLIC_KEY_BYTES);
	return true;
}

/* ---- slots ---- */

int kr_slot_add_password(struct kr_keyfile *kf, const struct kr_keys *keys,
			 const char *label,
			 const struct kr_pwhash_params *params,
			 const char *password, unsigned int *slot_id_r,
			 struct kr_error *err)
{
	struct kr_slot slot = { .id = 0 };
	struct kr_password pw = { .buf = NULL };
	struct kr_secret *kek;
	unsigned char ad[KR_SLOT_AD_MAX];
	size_t label_len, password_len, ad_len;
	int ret = -1;

	*slot_id_r = 0;
	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	if (label == NULL)
		label = "";
	if (params == NULL)
		params = &kr_pwhash_default;
	label_len = strnlen(label, KR_LABEL_MAX + 1);
	if (!kr_label_valid(label, label_len)) {
		kr_error_set(err, KR_ERR_LIMIT, "invalid label (at most %d "
			     "bytes of UTF-8, no control characters)",
			     KR_LABEL_MAX);
		return -1;
	}
	if (!kr_pwhash_params_valid(params->opslimit, params->memlimit)) {
		kr_error_set(err, KR_ERR_LIMIT,
			     "Argon2id parameters out of bounds");
		return -1;
	}
	password_len = strnlen(password, KR_PASSWORD_INPUT_MAX + 1);
	if (password_len == 0 || password_len > KR_PASSWORD_INPUT_MAX) {
		kr_error_set(err, KR_ERR_LIMIT,
			     "password must be 1..%d bytes",
			     KR_PASSWORD_INPUT_MAX);
		return -1;
	}
	if (kf->slot_count >= KR_SLOTS_MAX) {
		kr_error_set(err, KR_ERR_LIMIT, "too many slots (max %d)",
			     KR_SLOTS_MAX);
		return -1;
	}
	if (kf->next_slot_id > KR_SLOT_ID_MAX) {
		kr_error_set(err, KR_ERR_LIMIT, "slot ids exhausted");
		return -1;
	}
	if (!kr_keys_pair_matches(kf->public_key, keys->secret_key)) {
		kr_error_set(err, KR_ERR_INTERNAL,
			     "keys do not belong to this keyfile");
		return -1;
	}

	slot.id = kf->next_slot_id;
	slot.created = (int64_t)time(NULL);
	slot.label_len = (uint8_t)label_len;
	memcpy(slot.label, label, label_len);
	slot.opslimit = params->opslimit;
	slot.memlimit = params->memlimit;
	randombytes_buf(slot.salt, sizeof(slot.salt));
	randombytes_buf(slot.nonce, sizeof(slot.nonce));

	kek = kr_secret_new(KR_KEK_BYTES);
	if (kek == NULL ||
	    kr_password_normalise(password, password_len, &pw) < 0) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		goto out;
	}
	if (pw.shaped) {
		slot.flags |= KR_SLOT_FLAG_HINT;
		kr_slot_hint(slot.hint, &pw, slot.salt);
	}
	if (kr_slot_kek(kr_secret_data(kek), &pw, &slot, err) < 0)
		goto out;
	ad_len = kr_keyfile_slot_ad(kf, &slot, ad);
	(void)crypto_aead_xchacha20poly1305_ietf_encrypt(
		slot.wrapped, NULL, keys->master_key, KR_WRAPPED_PLAIN_BYTES,
		ad, ad_len, NULL, slot.nonce, kr_secret_data(kek));

	kf->slots[kf->slot_count++] = slot;
	kf->next_slot_id++;
	*slot_id_r = slot.id;
	ret = 0;
out:
	kr_password_free(&pw);
	kr_secret_free(&kek);
	return ret;
}

int kr_slot_add(struct kr_keyfile *kf, const struct kr_keys *keys,
		const char *label, const struct kr_pwhash_params *params,
		char *password_r, size_t password_size,
		unsigned int *slot_id_r, struct kr_error *err)
{
	*slot_id_r = 0;
	if (password_size < KR_PASSWORD_BUFSIZE) {
		kr_error_set(err, KR_ERR_LIMIT,
			     "password buffer too small (need %d bytes)",
			     KR_PASSWORD_BUFSIZE);
		return -1;
	}
	kr_password_generate(password_r);
	if (kr_slot_add_password(kf, keys, label, params, password_r,
				 slot_id_r, err) < 0) {
		sodium_memzero(password_r, password_size);
		return -1;
	}
	return 0;
}

int kr_slot_remove(struct kr_keyfile *kf, unsigned int slot_id)
{
	for (unsigned int i = 0; i < kf->slot_count; i++) {
		if (kf->slots[i].id != slot_id)
			continue;
		memmove(&kf->slots[i], &kf->slots[i + 1],
			(kf->slot_count - i - 1) * sizeof(kf->slots[0]));
		kf->slot_count--;
		memset(&kf->slots[kf->slot_count], 0, sizeof(kf->slots[0]));
		return 1;
	}
	return 0;
}

/* Finds the slot password opens: one Argon2id per candidate (the hint
   picks one).  Returns 1 with the slot id, and the KEK and/or the keys
   for the outputs that are not NULL; 0 if it opens none, -1 on error. */
static int kr_slot_find_open(const struct kr_keyfile *kf,
			     const char *password, unsigned int *slot_id_r,
			     struct kr_secret **kek_r,
			     struct kr_keys **keys_r, struct kr_error *err)
{
	struct kr_password pw = { .buf = NULL };
	struct kr_secret *kek = NULL;
	struct kr_keys *keys = NULL;
	unsigned char hint[KR_HINT_BYTES];
	size_t password_len;
	int ret = -1;

	*slot_id_r = 0;
	if (kek_r != NULL)
		*kek_r = NULL;
	if (keys_r != NULL)
		*keys_r = NULL;
	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	/* Refuse absurd input before any work. */
	password_len = strnlen(password, KR_PASSWORD_INPUT_MAX + 1);
	if (password_len == 0 || password_len > KR_PASSWORD_INPUT_MAX) {
		kr_error_set(err, KR_ERR_NOT_FOUND,
			     "password opens no slot");
		return 0;
	}
	kek = kr_secret_new(KR_KEK_BYTES);
	keys = kr_keys_new();
	if (kek == NULL || keys == NULL ||
	    kr_password_normalise(password, password_len, &pw) < 0) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		goto out;
	}
	ret = 0;
	for (unsigned int i = 0; i < kf->slot_count && ret == 0; i++) {
		const struct kr_slot *slot = &kf->slots[i];

		/* The shape decides the candidates exactly: a generator-shaped
		   password was stored with a hint, any other without. */
		if (pw.shaped != ((slot->flags & KR_SLOT_FLAG_HINT) != 0))
			continue;
		if (pw.shaped) {
			kr_slot_hint(hint, &pw, slot->salt);
			if (sodium_memcmp(hint, slot->hint, KR_HINT_BYTES) != 0)
				continue;
		}
		if (kr_slot_kek(kr_secret_data(kek), &pw, slot, err) < 0) {
			ret = -1;
			break;
		}
		if (kr_slot_decrypt(kf, slot, kr_secret_data(kek), keys)) {
			*slot_id_r = slot->id;
			ret = 1;
		}
	}
	if (ret == 0)
		kr_error_set(err, KR_ERR_NOT_FOUND, "password opens no slot");
out:
	sodium_memzero(hint, sizeof(hint));
	kr_password_free(&pw);
	if (ret == 1 && kek_r != NULL)
		*kek_r = kek;
	else
		kr_secret_free(&kek);
	if (ret == 1 && keys_r != NULL)
		*keys_r = keys;
	else
		kr_keys_free(&keys);
	return ret;
}

int kr_slot_open(const struct kr_keyfile *kf, const char *password,
		 unsigned int *slot_id_r, struct kr_secret **kek_r,
		 struct kr_error *err)
{
	return kr_slot_find_open(kf, password, slot_id_r, kek_r, NULL, err);
}

int kr_slot_unlock(const struct kr_keyfile *kf, const char *password,
		   unsigned int *slot_id_r, struct kr_keys **keys_r,
		   struct kr_error *err)
{
	unsigned int slot_id;

	return kr_slot_find_open(kf, password,
				 slot_id_r != NULL ? slot_id_r : &slot_id,
				 NULL, keys_r, err);
}

int kr_slot_unwrap(const struct kr_keyfile *kf, unsigned int slot_id,
		   const unsigned char kek[KR_KEK_BYTES],
		   struct kr_keys **keys_r, struct kr_error *err)
{
	const struct kr_slot *slot;
	struct kr_keys *keys;

	*keys_r = NULL;
	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	slot = kr_keyfile_slot_find(kf, slot_id);
	if (slot == NULL) {
		kr_error_set(err, KR_ERR_NOT_FOUND, "no slot %u", slot_id);
		return 0;
	}
	keys = kr_keys_new();
	if (keys == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	if (!kr_slot_decrypt(kf, slot, kek, keys)) {
		kr_keys_free(&keys);
		kr_error_set(err, KR_ERR_CORRUPT,
			     "slot %u does not authenticate with this key",
			     slot_id);
		return 0;
	}
	*keys_r = keys;
	return 1;
}

/* ---- the KEK as a userdb field ---- */

int kr_kek_encode(unsigned int slot_id, const unsigned char kek[KR_KEK_BYTES],
		  char *buf, size_t size)
{
	int n;

	n = snprintf(buf, size, "%u:", slot_id);
	if (n < 0 || (size_t)n >= size ||
	    size - (size_t)n < KR_KEK_BASE64_LEN + 1) {
		sodium_memzero(buf, size);
		return -1;
	}
	(void)sodium_bin2base64(buf + n, size - (size_t)n, kek, KR_KEK_BYTES,
				sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

int kr_kek_decode(const char *str, unsigned int *slot_id_r,
		  struct kr_secret **kek_r)
{
	struct kr_secret *kek;
	const char *b64_end;
	uint64_t id = 0;
	size_t digits = 0, bin_len, b64_len;

	*slot_id_r = 0;
	*kek_r = NULL;
	/* Canonical decimal: no sign, no leading zero, 1..KR_SLOT_ID_MAX. */
	if (str[0] == '0')
		return -1;
	for (; str[digits] >= '0' && str[digits] <= '9'; digits++) {
		id = id * 10 + (uint64_t)(str[digits] - '0');
		if (id > KR_SLOT_ID_MAX)
			return -1;
	}
	if (digits == 0 || str[digits] != ':')
		return -1;
	str += digits + 1;
	b64_len = strnlen(str, KR_KEK_BASE64_LEN + 1);
	if (b64_len != KR_KEK_BASE64_LEN)
		return -1;
	kek = kr_secret_new(KR_KEK_BYTES);
	if (kek == NULL)
		return -1;
	if (sodium_base642bin(kr_secret_data(kek), KR_KEK_BYTES, str, b64_len,
			      NULL, &bin_len, &b64_end,
			      sodium_base64_VARIANT_ORIGINAL) < 0 ||
	    bin_len != KR_KEK_BYTES || b64_end != str + b64_len) {
		kr_secret_free(&kek);
		return -1;
	}
	*slot_id_r = (unsigned int)id;
	*kek_r = kek;
	return 0;
}
