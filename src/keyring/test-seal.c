/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "test-keyring.h"

/* Lengths around the chunk boundaries, where framing bugs live. */
static const size_t test_seal_lengths[] = {
	0, 1, 100,
	KR_SEAL_CHUNK_BYTES - 1, KR_SEAL_CHUNK_BYTES, KR_SEAL_CHUNK_BYTES + 1,
	3 * KR_SEAL_CHUNK_BYTES, 3 * KR_SEAL_CHUNK_BYTES + 17,
};

struct test_pair {
	unsigned char pk[KR_PUBLIC_KEY_BYTES];
	unsigned char sk[KR_SECRET_KEY_BYTES];
};

/* Fixed-seed message bytes. */
static unsigned char *test_message(size_t len)
{
	unsigned char *msg = malloc(len + 1);
	uint32_t x = 0x12345678;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245 + 12345;
		msg[i] = (unsigned char)(x >> 16);
	}
	return msg;
}

static void test_seal_round_trip(void)
{
	struct test_pair pair;
	struct kr_error err;

	test_begin("seal round trip");
	crypto_box_keypair(pair.pk, pair.sk);
	for (unsigned int i = 0; i < N_ELEMENTS(test_seal_lengths); i++) {
		size_t len = test_seal_lengths[i], slen = kr_seal_size(len);
		unsigned char *msg = test_message(len);
		unsigned char *sealed = malloc(slen);
		size_t olen = kr_unseal_max_size(slen), got = 12345;
		unsigned char *out = malloc(olen + 1);

		test_assert_idx(olen >= len, i);
		test_assert_idx(kr_seal(sealed, slen, msg, len, pair.pk,
					&err) == 0, i);
		test_assert_idx(len < 16 ||
				memmem(sealed, slen, msg, 16) == NULL, i);
		test_assert_idx(kr_unseal(out, olen, &got, sealed, slen,
					  pair.pk, pair.sk, &err) == 1 &&
				got == len && memcmp(out, msg, len) == 0, i);
		free(msg);
		free(sealed);
		free(out);
	}
	test_end();
}

static void test_seal_tampered(void)
{
	static const unsigned char text[] = "Subject: secret\r\n\r\nbody\r\n";
	struct test_pair pair, other;
	struct kr_error err;
	size_t len = 2 * KR_SEAL_CHUNK_BYTES + 5, slen = kr_seal_size(len);
	unsigned char *msg = test_message(len), *sealed = malloc(slen);
	unsigned char *out = malloc(slen);
	size_t got;

	test_begin("seal tampered");
	crypto_box_keypair(pair.pk, pair.sk);
	crypto_box_keypair(other.pk, other.sk);
	test_assert(kr_seal(sealed, slen, msg, len, pair.pk, &err) == 0);
	/* The untouched message opens, so each refusal below is the change. */
	test_assert(kr_unseal(out, slen, &got, sealed, slen, pair.pk, pair.sk,
			      &err) == 1 && got == len);
	test_assert(kr_unseal(out, slen, &got, sealed, slen, other.pk,
			      other.sk, &err) == 0 &&
		    err.kind == KR_ERR_CORRUPT && got == 0);
	/* Truncated at a chunk boundary: no FINAL tag. */
	test_assert(kr_unseal(out, slen, &got, sealed,
			      slen - 5 - crypto_secretstream_xchacha20poly1305_ABYTES,
			      pair.pk, pair.sk, &err) == 0);
	test_assert(kr_unseal(out, slen, &got, sealed, slen - 1,
			      pair.pk, pair.sk, &err) == 0);
	test_assert(kr_unseal(out, slen, &got, sealed, 10,
			      pair.pk, pair.sk, &err) == 0);
	for (size_t off = 0; off < slen; off += slen / 7) {
		sealed[off] ^= 0x01;
		test_assert_idx(kr_unseal(out, slen, &got, sealed, slen,
					  pair.pk, pair.sk, &err) == 0, off);
		sealed[off] ^= 0x01;
	}
	/* A short plaintext: no readable byte of it in the sealed form. */
	test_assert(kr_seal(sealed, slen, text, sizeof(text) - 1, pair.pk,
			    &err) == 0);
	test_assert(memmem(sealed, kr_seal_size(sizeof(text) - 1),
			   "secret", 6) == NULL);
	test_assert(kr_seal(sealed, kr_seal_size(len) - 1, msg, len, pair.pk,
			    &err) == -1 && err.kind == KR_ERR_LIMIT);
	free(msg);
	free(sealed);
	free(out);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_seal_round_trip,
		test_seal_tampered,
		NULL
	};

	return test_run(cases);
}
