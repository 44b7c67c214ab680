/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* PBKDF2-HMAC-SHA256 (sqlite3mc's passphrase KDF) built from libsodium's
   HMAC-SHA256, and the sodium_malloc'd holders for keys and secrets. */

#include <string.h>

#include <sodium.h>

#include "cryptvfs-private.h"

#define CVFS_SHA256_BYTES crypto_auth_hmacsha256_BYTES
#define CVFS_PBKDF2_INDEX_BYTES 4
/* sodium_malloc() puts a block right before a guard page, so its address
   is only as aligned as its size: round sizes up. */
#define CVFS_SODIUM_ALIGN 16
#define CVFS_SODIUM_SIZE(n) \
	(((n) + CVFS_SODIUM_ALIGN - 1) & ~(size_t)(CVFS_SODIUM_ALIGN - 1))

void cvfs_pbkdf2_sha256(unsigned char *out, size_t out_len,
			const unsigned char *passphrase, size_t passphrase_len,
			const unsigned char *salt, size_t salt_len,
			uint32_t iterations)
{
	crypto_auth_hmacsha256_state keyed, st;
	unsigned char u[CVFS_SHA256_BYTES], t[CVFS_SHA256_BYTES];
	unsigned char index[CVFS_PBKDF2_INDEX_BYTES];
	uint32_t block = 1;

	/* The HMAC key schedule is the same for every iteration: key it once
	   and copy the state, which halves the work against re-keying. */
	crypto_auth_hmacsha256_init(&keyed, passphrase, passphrase_len);
	while (out_len > 0) {
		size_t take = out_len < sizeof(t) ? out_len : sizeof(t);

		cvfs_put_be32(index, block);
		st = keyed;
		crypto_auth_hmacsha256_update(&st, salt, salt_len);
		crypto_auth_hmacsha256_update(&st, index, sizeof(index));
		crypto_auth_hmacsha256_final(&st, u);
		memcpy(t, u, sizeof(t));
		for (uint32_t i = 1; i < iterations; i++) {
			st = keyed;
			crypto_auth_hmacsha256_update(&st, u, sizeof(u));
			crypto_auth_hmacsha256_final(&st, u);
			for (size_t j = 0; j < sizeof(t); j++)
				t[j] ^= u[j];
		}
		memcpy(out, t, take);
		out += take;
		out_len -= take;
		block++;
	}
	sodium_memzero(&keyed, sizeof(keyed));
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(u, sizeof(u));
	sodium_memzero(t, sizeof(t));
}

struct cvfs_key *cvfs_key_create(const unsigned char key[CVFS_KEY_BYTES])
{
	struct cvfs_key *k = sodium_malloc(CVFS_SODIUM_SIZE(sizeof(*k)));

	if (k == NULL)
		return NULL;
	k->refcount = 1;
	memcpy(k->key, key, CVFS_KEY_BYTES);
	return k;
}

void cvfs_key_ref(struct cvfs_key *key)
{
	__atomic_add_fetch(&key->refcount, 1, __ATOMIC_RELAXED);
}

void cvfs_key_unref(struct cvfs_key **key)
{
	struct cvfs_key *k = *key;

	*key = NULL;
	if (k == NULL)
		return;
	if (__atomic_sub_fetch(&k->refcount, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	/* sodium_free() wipes too; be explicit about the key. */
	sodium_memzero(k->key, sizeof(k->key));
	sodium_free(k);
}

struct cvfs_secret *cvfs_secret_create(enum cvfs_secret_kind kind,
				       const unsigned char *material,
				       size_t material_len)
{
	size_t extra = kind == CVFS_SECRET_PASSPHRASE ? material_len : 0;
	struct cvfs_secret *s;

	if (kind == CVFS_SECRET_RAW && material_len != CVFS_KEY_BYTES)
		return NULL;
	s = sodium_malloc(CVFS_SODIUM_SIZE(sizeof(*s) + extra));
	if (s == NULL)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	if (kind == CVFS_SECRET_RAW) {
		memcpy(s->key, material, CVFS_KEY_BYTES);
	} else {
		s->passphrase_len = material_len;
		memcpy(s->passphrase, material, material_len);
	}
	return s;
}

void cvfs_secret_destroy(struct cvfs_secret **secret)
{
	struct cvfs_secret *s = *secret;

	*secret = NULL;
	if (s == NULL)
		return;
	sodium_memzero(s, sizeof(*s) + s->passphrase_len);
	sodium_free(s);
}
