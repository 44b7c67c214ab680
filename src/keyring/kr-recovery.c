/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "keyring-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* Any scalar: X25519 clamps it to a multiple of the cofactor, so
   crypto_scalarmult() gives the all-zero output (and fails) exactly for a
   public key of small order. */
static const unsigned char kr_recovery_probe_scalar[crypto_scalarmult_SCALARBYTES] = {
	0x48, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
	0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x5f,
};

/* BLAKE2b-256 of the header, sealed with the keys: binds the recovery box
   to this user and public key. */
static void kr_recovery_header_hash(unsigned char hash_r[KR_HEADER_HASH_BYTES],
				    const struct kr_keyfile *kf)
{
	unsigned char header[KR_HEADER_MAX];
	size_t len = kr_keyfile_header(kf, header);

	(void)crypto_generichash(hash_r, KR_HEADER_HASH_BYTES, header, len,
				 NULL, 0);
}

int kr_recovery_seal(struct kr_keyfile *kf, const struct kr_keys *keys,
		     const unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES],
		     struct kr_error *err)
{
	unsigned char sealed[KR_RECOVERY_BYTES];
	struct kr_secret *plain;
	unsigned char *p;

	plain = kr_secret_new(KR_RECOVERY_PLAIN_BYTES);
	if (plain == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	p = kr_secret_data(plain);
	memcpy(p, keys->master_key, KR_MASTER_KEY_BYTES);
	memcpy(p + KR_MASTER_KEY_BYTES, keys->secret_key, KR_SECRET_KEY_BYTES);
	kr_recovery_header_hash(p + KR_WRAPPED_PLAIN_BYTES, kf);
	if (crypto_box_seal(sealed, p, KR_RECOVERY_PLAIN_BYTES,
			    recovery_pk) < 0) {
		kr_secret_free(&plain);
		kr_error_set(err, KR_ERR_LIMIT, "crypto_box_seal() failed: "
			     "invalid recovery public key");
		return -1;
	}
	kr_secret_free(&plain);
	memcpy(kf->recovery, sealed, sizeof(sealed));
	kf->has_recovery = true;
	return 0;
}

int kr_recovery_unwrap(const struct kr_keyfile *kf,
		       const unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES],
		       const unsigned char recovery_sk[KR_SECRET_KEY_BYTES],
		       struct kr_keys **keys_r, struct kr_error *err)
{
	unsigned char hash[KR_HEADER_HASH_BYTES];
	struct kr_secret *plain;
	struct kr_keys *keys;
	unsigned char *p;
	bool opened;

	*keys_r = NULL;
	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	if (!kf->has_recovery) {
		kr_error_set(err, KR_ERR_NOT_FOUND, "no recovery slot");
		return 0;
	}
	plain = kr_secret_new(KR_RECOVERY_PLAIN_BYTES);
	keys = kr_keys_new();
	if (plain == NULL || keys == NULL) {
		kr_secret_free(&plain);
		kr_keys_free(&keys);
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	p = kr_secret_data(plain);
	kr_recovery_header_hash(hash, kf);
	/* The sealed box authenticates itself; the header hash inside binds
	   it to this file's user and public key, and the secret key must
	   belong to that public key. */
	opened = crypto_box_seal_open(p, kf->recovery, KR_RECOVERY_BYTES,
				      recovery_pk, recovery_sk) == 0 &&
		sodium_memcmp(p + KR_WRAPPED_PLAIN_BYTES, hash,
			      KR_HEADER_HASH_BYTES) == 0 &&
		kr_keys_pair_matches(kf->public_key, p + KR_MASTER_KEY_BYTES);
	if (opened) {
		memcpy(keys->master_key, p, KR_MASTER_KEY_BYTES);
		memcpy(keys->secret_key, p + KR_MASTER_KEY_BYTES,
		       KR_SECRET_KEY_BYTES);
		memcpy(keys->public_key, kf->public_key, KR_PUBLIC_KEY_BYTES);
	}
	kr_secret_free(&plain);
	if (!opened) {
		kr_keys_free(&keys);
		kr_error_set(err, KR_ERR_CORRUPT,
			     "recovery slot does not open with this key");
		return 0;
	}
	*keys_r = keys;
	return 1;
}

int kr_recovery_set(struct kr_keyfile *kf, const struct kr_keys *keys,
		    const unsigned char *recovery_pk, struct kr_error *err)
{
	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	if (!kr_keys_pair_matches(kf->public_key, keys->secret_key)) {
		kr_error_set(err, KR_ERR_INTERNAL,
			     "keys do not belong to this keyfile");
		return -1;
	}
	if (recovery_pk == NULL) {
		kf->has_recovery = false;
		memset(kf->recovery, 0, sizeof(kf->recovery));
		return 0;
	}
	return kr_recovery_seal(kf, keys, recovery_pk, err);
}

/* kr_recovery_key_decode(), the error texts naming the key "name". */
static int
kr_recovery_key_decode_named(const char *name, const char *text, size_t len,
			     const unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES],
			     struct kr_secret **sk_r, struct kr_error *err)
{
	unsigned char derived[KR_PUBLIC_KEY_BYTES];
	struct kr_secret *sk;
	size_t sk_len;
	const char *end;

	*sk_r = NULL;
	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
			   text[len - 1] == ' ' || text[len - 1] == '\t'))
		len--;
	if ((sk = kr_secret_new(KR_SECRET_KEY_BYTES)) == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	if (sodium_base642bin(kr_secret_data(sk), KR_SECRET_KEY_BYTES, text,
			      len, NULL, &sk_len, &end,
			      sodium_base64_VARIANT_ORIGINAL) < 0 ||
	    sk_len != KR_SECRET_KEY_BYTES || end != text + len) {
		kr_secret_free(&sk);
		kr_error_set(err, KR_ERR_CORRUPT,
			     "%s is not a base64 X25519 secret key", name);
		return -1;
	}
	if (crypto_scalarmult_base(derived, kr_secret_data(sk)) < 0 ||
	    sodium_memcmp(derived, recovery_pk, KR_PUBLIC_KEY_BYTES) != 0) {
		kr_secret_free(&sk);
		kr_error_set(err, KR_ERR_CORRUPT,
			     "%s does not match recovery_public_key", name);
		return 0;
	}
	*sk_r = sk;
	return 1;
}

int kr_recovery_key_decode(const char *text, size_t len,
			   const unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES],
			   struct kr_secret **sk_r, struct kr_error *err)
{
	return kr_recovery_key_decode_named("the recovery key", text, len,
					    recovery_pk, sk_r, err);
}

int kr_recovery_key_read(const char *path,
			 const unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES],
			 struct kr_secret **sk_r, struct kr_error *err)
{
	struct kr_secret *buf;
	ssize_t ret;
	size_t len = 0;
	int fd;

	*sk_r = NULL;
	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		if (errno == ENOENT) {
			kr_error_set(err, KR_ERR_NOT_FOUND,
				     "open(%s) failed: %s", path,
				     strerror(errno));
		} else {
			kr_error_errno(err, "open", path);
		}
		return -1;
	}
	/* one byte more than allowed: a longer file is no key */
	if ((buf = kr_secret_new(KR_RECOVERY_KEY_FILE_MAX + 1)) == NULL) {
		(void)close(fd);
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	while (len <= KR_RECOVERY_KEY_FILE_MAX) {
		ret = read(fd, kr_secret_data(buf) + len,
			   KR_RECOVERY_KEY_FILE_MAX + 1 - len);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0) {
			kr_error_errno(err, "read", path);
			(void)close(fd);
			kr_secret_free(&buf);
			return -1;
		}
		if (ret == 0)
			break;
		len += (size_t)ret;
	}
	(void)close(fd);
	if (len > KR_RECOVERY_KEY_FILE_MAX) {
		kr_secret_free(&buf);
		kr_error_set(err, KR_ERR_CORRUPT, "%s is not a base64 X25519 "
			     "secret key (longer than %d bytes)", path,
			     KR_RECOVERY_KEY_FILE_MAX);
		return -1;
	}
	ret = kr_recovery_key_decode_named(path,
					   (const char *)kr_secret_data(buf),
					   len, recovery_pk, sk_r, err);
	kr_secret_free(&buf);
	return (int)ret;
}

int kr_public_key_decode(const char *base64,
			 unsigned char pk_r[KR_PUBLIC_KEY_BYTES])
{
	unsigned char pk[KR_PUBLIC_KEY_BYTES], q[crypto_scalarmult_BYTES];
	const char *end;
	size_t len, bin_len;
	int ret;

	if (sodium_init() < 0)
		return -1;
	len = strlen(base64);
	if (sodium_base642bin(pk, sizeof(pk), base64, len, NULL, &bin_len,
			      &end, sodium_base64_VARIANT_ORIGINAL) < 0 ||
	    bin_len != sizeof(pk) || end != base64 + len)
		return -1;
	/* Refuse a small-order point here, at configuration time:
	   crypto_box_seal() would only fail on it at the first keyfile. */
	ret = crypto_scalarmult(q, kr_recovery_probe_scalar, pk);
	sodium_memzero(q, sizeof(q));
	if (ret < 0)
		return -1;
	memcpy(pk_r, pk, sizeof(pk));
	return 0;
}
