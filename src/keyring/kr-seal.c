/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "keyring-private.h"

#include <string.h>

/* Sealed message layout (see keyring.h):
     crypto_box_seal(stream key, recipient pk)     KR_SEAL_BOX_BYTES
     secretstream header                           KR_SEAL_HEADER_BYTES
     chunks: KR_SEAL_CHUNK_BYTES of plaintext each + ABYTES; the last one
     (possibly empty) is shorter and tagged FINAL.
   The chunk boundaries follow from the length alone, so a truncated or
   extended message fails to authenticate. */

#define KR_SEAL_BOX_BYTES \
	(crypto_secretstream_xchacha20poly1305_KEYBYTES + \
	 crypto_box_SEALBYTES)
#define KR_SEAL_HEADER_BYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define KR_SEAL_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define KR_SEAL_OVERHEAD_BYTES (KR_SEAL_BOX_BYTES + KR_SEAL_HEADER_BYTES)

static size_t kr_seal_chunk_count(size_t msg_len)
{
	/* The FINAL chunk always exists, empty when msg_len is a multiple. */
	return msg_len / KR_SEAL_CHUNK_BYTES + 1;
}

size_t kr_seal_size(size_t msg_len)
{
	return KR_SEAL_OVERHEAD_BYTES + msg_len +
		kr_seal_chunk_count(msg_len) * KR_SEAL_ABYTES;
}

size_t kr_unseal_max_size(size_t sealed_len)
{
	if (sealed_len < KR_SEAL_OVERHEAD_BYTES + KR_SEAL_ABYTES)
		return 0;
	return sealed_len - KR_SEAL_OVERHEAD_BYTES - KR_SEAL_ABYTES;
}

int kr_seal(unsigned char *out, size_t out_size,
	    const unsigned char *msg, size_t msg_len,
	    const unsigned char pk[KR_PUBLIC_KEY_BYTES], struct kr_error *err)
{
	crypto_secretstream_xchacha20poly1305_state state;
	struct kr_secret *key;
	unsigned char *p;
	size_t left = msg_len, n;
	int ret = 0;

	kr_error_clear(err);
	if (kr_sodium_init(err) < 0)
		return -1;
	if (out_size < kr_seal_size(msg_len)) {
		kr_error_set(err, KR_ERR_LIMIT, "seal buffer too small");
		return -1;
	}
	key = kr_secret_new(crypto_secretstream_xchacha20poly1305_KEYBYTES);
	if (key == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	crypto_secretstream_xchacha20poly1305_keygen(kr_secret_data(key));
	if (crypto_box_seal(out, kr_secret_data(key), kr_secret_len(key),
			    pk) != 0 ||
	    crypto_secretstream_xchacha20poly1305_init_push(&state,
			out + KR_SEAL_BOX_BYTES, kr_secret_data(key)) != 0) {
		kr_error_set(err, KR_ERR_INTERNAL, "sealing failed");
		ret = -1;
	}
	kr_secret_free(&key);
	p = out + KR_SEAL_OVERHEAD_BYTES;
	while (ret == 0) {
		bool final = left < KR_SEAL_CHUNK_BYTES;

		n = final ? left : KR_SEAL_CHUNK_BYTES;
		if (crypto_secretstream_xchacha20poly1305_push(&state, p, NULL,
				msg, n, NULL, 0, final ?
				crypto_secretstream_xchacha20poly1305_TAG_FINAL :
				0) != 0) {
			kr_error_set(err, KR_ERR_INTERNAL, "sealing failed");
			ret = -1;
		}
		p += n + KR_SEAL_ABYTES;
		msg += n;
		left -= n;
		if (final)
			break;
	}
	sodium_memzero(&state, sizeof(state));
	if (ret < 0)
		sodium_memzero(out, out_size);
	return ret;
}

int kr_unseal(unsigned char *out, size_t out_size, size_t *out_len_r,
	      const unsigned char *sealed, size_t sealed_len,
	      const unsigned char pk[KR_PUBLIC_KEY_BYTES],
	      const unsigned char sk[KR_SECRET_KEY_BYTES],
	      struct kr_error *err)
{
	crypto_secretstream_xchacha20poly1305_state state;
	struct kr_secret *key;
	const unsigned char *p, *end = sealed + sealed_len;
	unsigned char tag = 0;
	unsigned long long mlen;
	size_t total = 0, clen;
	int ret = 1;

	kr_error_clear(err);
	*out_len_r = 0;
	if (kr_sodium_init(err) < 0)
		return -1;
	if (sealed_len < KR_SEAL_OVERHEAD_BYTES + KR_SEAL_ABYTES) {
		kr_error_set(err, KR_ERR_CORRUPT, "sealed message truncated");
		return 0;
	}
	if (out_size < kr_unseal_max_size(sealed_len)) {
		kr_error_set(err, KR_ERR_LIMIT, "unseal buffer too small");
		return -1;
	}
	key = kr_secret_new(crypto_secretstream_xchacha20poly1305_KEYBYTES);
	if (key == NULL) {
		kr_error_set(err, KR_ERR_INTERNAL, "out of memory");
		return -1;
	}
	if (crypto_box_seal_open(kr_secret_data(key), sealed,
				 KR_SEAL_BOX_BYTES, pk, sk) != 0 ||
	    crypto_secretstream_xchacha20poly1305_init_pull(&state,
			sealed + KR_SEAL_BOX_BYTES, kr_secret_data(key)) != 0) {
		kr_error_set(err, KR_ERR_CORRUPT,
			     "sealed message does not open with this key");
		ret = 0;
	}
	kr_secret_free(&key);
	p = sealed + KR_SEAL_OVERHEAD_BYTES;
	while (ret == 1 && tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
		clen = (size_t)(end - p);
		if (clen > KR_SEAL_CHUNK_BYTES + KR_SEAL_ABYTES)
			clen = KR_SEAL_CHUNK_BYTES + KR_SEAL_ABYTES;
		if (clen < KR_SEAL_ABYTES ||
		    crypto_secretstream_xchacha20poly1305_pull(&state,
				out + total, &mlen, &tag, p, clen,
				NULL, 0) != 0 ||
		    (tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL &&
		     (mlen != KR_SEAL_CHUNK_BYTES || p + clen == end)) ||
		    (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL &&
		     p + clen != end)) {
			kr_error_set(err, KR_ERR_CORRUPT,
				     "sealed message does not authenticate");
			ret = 0;
			break;
		}
		total += mlen;
		p += clen;
	}
	sodium_memzero(&state, sizeof(state));
	if (ret != 1)
		sodium_memzero(out, out_size);
	else
		*out_len_r = total;
	return ret;
}
