/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "keyring-private.h"

#include <assert.h>
#include <stddef.h>

struct kr_secret {
	size_t len;
	unsigned char data[];
};

/* sodium_malloc() places the buffer flush against a guard page, so its
   address is only as aligned as its size: round the size up so that the
   size_t header stays aligned. */
#define KR_SECRET_ALIGN (sizeof(size_t) * 2)

/* kr_slot_unwrap() and the recovery slot decrypt master key || secret key
   straight into the holder, as one run of bytes. */
_Static_assert(offsetof(struct kr_keys, master_key) == 0,
	       "kr_keys layout");
_Static_assert(offsetof(struct kr_keys, secret_key) == KR_MASTER_KEY_BYTES,
	       "kr_keys layout");

int kr_sodium_init(struct kr_error *err)
{
	if (sodium_init() < 0) {
		kr_error_set(err, KR_ERR_INTERNAL, "sodium_init() failed");
		return -1;
	}
	return 0;
}

struct kr_secret *kr_secret_new(size_t len)
{
	struct kr_secret *secret;
	size_t size;

	if (sodium_init() < 0 ||
	    len > SIZE_MAX - sizeof(*secret) - KR_SECRET_ALIGN)
		return NULL;
	size = sizeof(*secret) + len;
	size = (size + KR_SECRET_ALIGN - 1) / KR_SECRET_ALIGN * KR_SECRET_ALIGN;
	secret = sodium_malloc(size);
	if (secret == NULL)
		return NULL;
	sodium_memzero(secret, size);
	secret->len = len;
	return secret;
}

unsigned char *kr_secret_data(struct kr_secret *secret)
{
	return secret->data;
}

size_t kr_secret_len(const struct kr_secret *secret)
{
	return secret->len;
}

void kr_secret_free(struct kr_secret **_secret)
{
	struct kr_secret *secret = *_secret;

	if (secret == NULL)
		return;
	*_secret = NULL;
	/* sodium_free() wipes the whole allocation too; this is the explicit
	   promise of the contract. */
	sodium_memzero(secret->data, secret->len);
	sodium_free(secret);
}

struct kr_keys *kr_keys_new(void)
{
	struct kr_keys *keys;

	if (sodium_init() < 0)
		return NULL;
	keys = sodium_malloc(sizeof(*keys));
	if (keys != NULL)
		sodium_memzero(keys, sizeof(*keys));
	return keys;
}

void kr_keys_free(struct kr_keys **_keys)
{
	struct kr_keys *keys = *_keys;

	if (keys == NULL)
		return;
	*_keys = NULL;
	sodium_memzero(keys, sizeof(*keys));
	sodium_free(keys);
}

bool kr_keys_pair_matches(const unsigned char pk[KR_PUBLIC_KEY_BYTES],
			  const unsigned char sk[KR_SECRET_KEY_BYTES])
{
	unsigned char derived[KR_PUBLIC_KEY_BYTES];
	bool match;

	match = crypto_scalarmult_base(derived, sk) == 0 &&
		sodium_memcmp(derived, pk, sizeof(derived)) == 0;
	sodium_memzero(derived, sizeof(derived));
	return match;
}
