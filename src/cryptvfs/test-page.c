/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The page transform, the counter wrap, the KDF and the header parser,
   against independent references. */

#include <dlfcn.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "test-cryptvfs-common.h"
#include "cryptvfs-private.h"

#define TEST_PAGE_MAX 65536
#define TEST_WRAP_LEN 320

/* A plain ChaCha20 (RFC 8439 block function) whose 32-bit counter wraps
   to 0 like sqleet's, written apart from libsodium so the wrap split in
   cvfs_chacha20_ietf_xor_wrap() is checked against something else. */
#define TEST_ROTL(x, c) (((x) << (c)) | ((x) >> (32 - (c))))
#define TEST_QR(a, b, c, d) \
	a += b; d ^= a; d = TEST_ROTL(d, 16); \
	c += d; b ^= c; b = TEST_ROTL(b, 12); \
	a += b; d ^= a; d = TEST_ROTL(d, 8); \
	c += d; b ^= c; b = TEST_ROTL(b, 7)

static uint32_t test_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		(uint32_t)p[3] << 24;
}

static void test_ref_chacha20_xor(unsigned char *buf, size_t len,
				  const unsigned char key[32],
				  const unsigned char nonce[12], uint32_t ctr)
{
	uint32_t st[16], x[16];

	st[0] = 0x61707865; st[1] = 0x3320646e;
	st[2] = 0x79622d32; st[3] = 0x6b206574;
	for (int i = 0; i < 8; i++)
		st[4 + i] = test_le32(key + 4 * i);
	st[12] = ctr;
	for (int i = 0; i < 3; i++)
		st[13 + i] = test_le32(nonce + 4 * i);
	for (size_t off = 0; off < len; off += 64) {
		memcpy(x, st, sizeof(x));
		for (int r = 0; r < 10; r++) {
			TEST_QR(x[0], x[4], x[8], x[12]);
			TEST_QR(x[1], x[5], x[9], x[13]);
			TEST_QR(x[2], x[6], x[10], x[14]);
			TEST_QR(x[3], x[7], x[11], x[15]);
			TEST_QR(x[0], x[5], x[10], x[15]);
			TEST_QR(x[1], x[6], x[11], x[12]);
			TEST_QR(x[2], x[7], x[8], x[13]);
			TEST_QR(x[3], x[4], x[9], x[14]);
		}
		for (int i = 0; i < 16; i++) {
			uint32_t w = x[i] + st[i];

			for (int b = 0; b < 4 && off + 4 * i + b < len; b++)
				buf[off + 4 * i + b] ^= (w >> (8 * b)) & 0xff;
		}
		st[12]++;	/* wraps, nonce untouched */
	}
}

/* Builds an encrypted page the sqlite3mc way with the reference cipher,
   with a chosen nonce. */
static void test_ref_page_encrypt(unsigned char *page, size_t ps,
				  uint32_t pgno, const unsigned char nonce[16],
				  const unsigned char salt[16],
				  const unsigned char key[32])
{
	size_t n = ps - CVFS_RESERVED_BYTES, off = pgno == 1 ? 24 : 0;
	unsigned char otk[64] = { 0 };
	uint32_t ctr = test_le32(nonce + 12) ^ pgno;

	memcpy(page + n, nonce, 16);
	test_ref_chacha20_xor(otk, sizeof(otk), key, nonce, ctr);
	test_ref_chacha20_xor(page + off, n - off, otk + 32, nonce, ctr + 1);
	if (pgno == 1)
		memcpy(page, salt, 16);
	crypto_onetimeauth_poly1305(page + n + 16, page, n + 16, otk);
}

static void test_page_reference_cipher(void)
{
	/* RFC 8439 2.4.2: key 00..1f, nonce 00 00 00 00 00 00 00 4a 00..,
	   counter 1, first keystream bytes 22 4f 51 f3. */
	static const unsigned char nonce[12] = { 0, 0, 0, 0, 0, 0, 0, 0x4a };
	unsigned char block[64] = { 0 };

	test_begin("page reference chacha20 matches RFC 8439");
	test_ref_chacha20_xor(block, sizeof(block), test_cvfs_key, nonce, 1);
	test_assert(block[0] == 0x22 && block[1] == 0x4f &&
		    block[2] == 0x51 && block[3] == 0xf3);
	test_end();
}

static void test_page_counter_wrap(void)
{
	static const uint32_t counters[] = {
		0xfffffffb, 0xfffffffe, 0xffffffff, 0, 1, 0x7fffffff
	};
	static const unsigned char nonce[12] = { 9, 8, 7, 6, 5, 4, 3, 2, 1 };
	unsigned char ref[TEST_WRAP_LEN], ours[TEST_WRAP_LEN];

	test_begin("page keystream wraps at 2^32 like sqleet");
	for (unsigned int i = 0; i < N_ELEMENTS(counters); i++) {
		memset(ref, 0, sizeof(ref));
		memset(ours, 0, sizeof(ours));
		test_ref_chacha20_xor(ref, sizeof(ref), test_cvfs_key, nonce,
				      counters[i]);
		cvfs_chacha20_ietf_xor_wrap(ours, ours, sizeof(ours), nonce,
					    counters[i], test_cvfs_key);
		test_assert_idx(memcmp(ref, ours, sizeof(ref)) == 0, i);
	}
	test_end();
}

struct test_page_case {
	size_t page_size;
	uint32_t pgno;
	/* Last 4 nonce bytes (LE), chosen so the counter lands near 2^32. */
	uint32_t nonce_tail;
};

static const struct test_page_case test_page_cases[] = {
	{ 4096, 1, 0x12345678 },
	{ 4096, 2, 0xfffffffe ^ 2 },	/* counter + 1 == 2^32 - 1 */
	{ 4096, 7, 0xffffffff ^ 7 },	/* counter + 1 wraps to 0 */
	{ 4096, 9, 0xfffffff0 ^ 9 },	/* data keystream crosses 2^32 */
	{ 512, 1, 0xffffffff ^ 1 },
	{ 512, 3, 0 },
	{ 65536, 1, 0xfffffc00 ^ 1 },
	{ 65536, 40000, 0xfffffc00 ^ 40000 },
};

static void test_page_decrypts_reference(void)
{
	static unsigned char plain[TEST_PAGE_MAX], page[TEST_PAGE_MAX],
		out[TEST_PAGE_MAX];
	unsigned char salt[16], nonce[16], salt_out[16];

	test_begin("page decrypts sqlite3mc-style pages incl. counter wrap");
	for (unsigned int i = 0; i < N_ELEMENTS(test_page_cases); i++) {
		const struct test_page_case *c = &test_page_cases[i];
		size_t n = c->page_size - CVFS_RESERVED_BYTES;

		for (size_t j = 0; j < c->page_size; j++)
			plain[j] = (unsigned char)(j * 7 + i);
		memcpy(plain, CVFS_SQLITE_HEADER, CVFS_SQLITE_HEADER_BYTES);
		memset(salt, 0xa0 + i, sizeof(salt));
		memset(nonce, 0x11 * i, 12);
		nonce[12] = c->nonce_tail;
		nonce[13] = c->nonce_tail >> 8;
		nonce[14] = c->nonce_tail >> 16;
		nonce[15] = c->nonce_tail >> 24;
		memcpy(page, plain, c->page_size);
		test_ref_page_encrypt(page, c->page_size, c->pgno, nonce, salt,
				      test_cvfs_key);
		test_assert_idx(cvfs_page_decrypt(out, salt_out, page,
						  c->page_size, c->pgno,
						  test_cvfs_key) == 0, i);
		test_assert_idx(memcmp(out, plain, n) == 0, i);
		if (c->pgno == 1)
			test_assert_idx(memcmp(salt_out, salt, 16) == 0, i);
		/* In place gives the same. */
		test_assert_idx(cvfs_page_decrypt(page, NULL, page,
						  c->page_size, c->pgno,
						  test_cvfs_key) == 0 &&
				memcmp(page, plain, n) == 0, i);
	}
	test_end();
}

struct test_range_case {
	size_t page_size;
	uint32_t pgno;
	uint32_t nonce_tail;
	size_t from, len;
};

static const struct test_range_case test_range_cases[] = {
	/* SQLite's direct overflow read: all but the reserved bytes. */
	{ 4096, 2, 0x12345678, 0, 4064 },
	{ 4096, 5, 0xfffffff0 ^ 5, 0, 4064 },	/* crosses 2^32 */
	{ 4096, 5, 0xfffffff0 ^ 5, 960, 64 },	/* the block at 2^32 - 1 */
	{ 4096, 5, 0xfffffff0 ^ 5, 1024, 3040 },	/* after the wrap */
	{ 4096, 7, 0xffffffff ^ 7, 64, 100 },	/* counter + 1 == 0 */
	{ 512, 3, 0, 448, 32 },
	{ 65536, 40000, 0xfffffc00 ^ 40000, 0, 65504 },
	{ 65536, 40000, 0xfffffc00 ^ 40000, 65472, 32 },
};

static void test_page_decrypt_range(void)
{
	static unsigned char plain[TEST_PAGE_MAX], page[TEST_PAGE_MAX],
		out[TEST_PAGE_MAX];
	unsigned char salt[16] = { 0 }, nonce[16];

	test_begin("page range decrypt and verify match the whole page");
	for (unsigned int i = 0; i < N_ELEMENTS(test_range_cases); i++) {
		const struct test_range_case *c = &test_range_cases[i];
		bool zero = true;

		for (size_t j = 0; j < c->page_size; j++)
			plain[j] = (unsigned char)(j * 13 + i);
		memset(nonce, 0x21 * i, 12);
		nonce[12] = c->nonce_tail;
		nonce[13] = c->nonce_tail >> 8;
		nonce[14] = c->nonce_tail >> 16;
		nonce[15] = c->nonce_tail >> 24;
		memcpy(page, plain, c->page_size);
		test_ref_page_encrypt(page, c->page_size, c->pgno, nonce, salt,
				      test_cvfs_key);
		memset(out, 'x', c->len + 1);
		test_assert_idx(cvfs_page_decrypt_range(out, page,
							c->page_size, c->pgno,
							c->from, c->len,
							test_cvfs_key) == 0, i);
		/* Exactly the slice, nothing written past it. */
		test_assert_idx(memcmp(out, plain + c->from, c->len) == 0 &&
				out[c->len] == 'x', i);
		test_assert_idx(cvfs_page_verify(page, c->page_size, c->pgno,
						 test_cvfs_key) == 0, i);
		test_assert_idx(cvfs_page_verify(page, c->page_size,
						 c->pgno + 1,
						 test_cvfs_key) < 0, i);
		/* A flipped bit outside the slice still fails it. */
		page[c->page_size - 1 - i] ^= 0x04;
		test_assert_idx(cvfs_page_verify(page, c->page_size, c->pgno,
						 test_cvfs_key) < 0, i);
		test_assert_idx(cvfs_page_decrypt_range(out, page,
							c->page_size, c->pgno,
							c->from, c->len,
							test_cvfs_key) < 0, i);
		for (size_t j = 0; j < c->len; j++)
			zero = zero && out[j] == 0;
		test_assert_idx(zero, i);
	}
	test_end();
}

static void test_page_round_trip(void)
{
	static unsigned char plain[TEST_PAGE_MAX], page[TEST_PAGE_MAX],
		page2[TEST_PAGE_MAX], out[TEST_PAGE_MAX];
	unsigned char salt[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

	test_begin("page encrypt/decrypt round trip, fresh nonce each time");
	for (unsigned int i = 0; i < N_ELEMENTS(test_page_cases); i++) {
		const struct test_page_case *c = &test_page_cases[i];
		size_t n = c->page_size - CVFS_RESERVED_BYTES;

		randombytes_buf(plain, c->page_size);
		memcpy(plain, CVFS_SQLITE_HEADER, CVFS_SQLITE_HEADER_BYTES);
		cvfs_page_encrypt(page, plain, c->page_size, c->pgno, salt,
				  test_cvfs_key);
		cvfs_page_encrypt(page2, plain, c->page_size, c->pgno, salt,
				  test_cvfs_key);
		/* Same plaintext, different nonce: different bytes. */
		test_assert_idx(memcmp(page + n, page2 + n, 16) != 0, i);
		test_assert_idx(memcmp(page + 24, page2 + 24, n - 24) != 0, i);
		if (c->pgno == 1) {
			test_assert_idx(memcmp(page, salt, 16) == 0, i);
			test_assert_idx(memcmp(page + 16, plain + 16, 8) == 0,
					i);
		}
		test_assert_idx(cvfs_page_decrypt(out, NULL, page,
						  c->page_size, c->pgno,
						  test_cvfs_key) == 0 &&
				memcmp(out, plain, n) == 0, i);
		/* Wrong page number or key: refused. */
		test_assert_idx(cvfs_page_decrypt(out, NULL, page,
						  c->page_size, c->pgno + 1,
						  test_cvfs_key) < 0, i);
		test_assert_idx(cvfs_page_decrypt(out, NULL, page,
						  c->page_size, c->pgno,
						  test_cvfs_key2) < 0, i);
	}
	test_end();
}

static void test_page_tamper_every_region(void)
{
	static unsigned char plain[4096], page[4096], bad[4096],
		out[4096];
	/* salt, plain header, ciphertext start/middle/end, nonce, tag */
	static const size_t offsets[] = {
		0, 15, 16, 20, 23, 24, 100, 2048, 4063, 4064, 4079, 4080, 4095
	};
	unsigned char salt[16] = { 0 };

	test_begin("page any flipped bit fails and zeroes the output");
	memset(plain, 'm', sizeof(plain));
	memcpy(plain, CVFS_SQLITE_HEADER, CVFS_SQLITE_HEADER_BYTES);
	for (uint32_t pgno = 1; pgno <= 2; pgno++) {
		cvfs_page_encrypt(page, plain, sizeof(page), pgno, salt,
				  test_cvfs_key);
		for (unsigned int i = 0; i < N_ELEMENTS(offsets); i++) {
			bool zero = true;

			memcpy(bad, page, sizeof(bad));
			bad[offsets[i]] ^= 0x10;
			memset(out, 'x', sizeof(out));
			test_assert_idx(cvfs_page_decrypt(out, NULL, bad,
							  sizeof(bad), pgno,
							  test_cvfs_key) < 0,
					i);
			for (size_t j = 0; j < sizeof(out); j++)
				zero = zero && out[j] == 0;
			test_assert_idx(zero, i);
		}
	}
	test_end();
}

struct test_kdf_vector {
	const char *passphrase, *salt;
	uint32_t iterations;
	const char *hex;
};

static const struct test_kdf_vector test_kdf_vectors[] = {
	/* RFC 7914 section 11 */
	{ "passwd", "salt", 1,
	  "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
	  "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783" },
	{ "Password", "NaCl", 80000,
	  "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
	  "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d" },
};

static void test_page_kdf_vectors(void)
{
	unsigned char out[64], expected[64];

	test_begin("kdf PBKDF2-HMAC-SHA256 vectors");
	for (unsigned int i = 0; i < N_ELEMENTS(test_kdf_vectors); i++) {
		const struct test_kdf_vector *v = &test_kdf_vectors[i];

		test_assert_idx(sodium_hex2bin(expected, sizeof(expected),
					       v->hex, strlen(v->hex), NULL,
					       NULL, NULL) == 0, i);
		cvfs_pbkdf2_sha256(out, sizeof(out),
				   (const unsigned char *)v->passphrase,
				   strlen(v->passphrase),
				   (const unsigned char *)v->salt,
				   strlen(v->salt), v->iterations);
		test_assert_idx(memcmp(out, expected, sizeof(out)) == 0, i);
	}
	test_end();
}

struct test_header_case {
	unsigned char b16, b17, b20;
	int ret;
	unsigned int page_size;
};

static const struct test_header_case test_header_cases[] = {
	{ 0x10, 0x00, 32, 0, 4096 },
	{ 0x00, 0x01, 32, 0, 65536 },
	{ 0x02, 0x00, 48, 0, 512 },
	{ 0x10, 0x00, 0, -1, 0 },	/* plain SQLite: no reserve */
	{ 0x10, 0x00, 31, -1, 0 },
	{ 0x01, 0x00, 32, -1, 0 },	/* 256: too small */
	{ 0x10, 0x01, 32, -1, 0 },	/* not a power of two */
	{ 0x00, 0x00, 32, -1, 0 },
};

static void test_page_header_parse(void)
{
	unsigned char header[CVFS_PAGE1_PLAIN_END] = { 0 };

	test_begin("header parse");
	for (unsigned int i = 0; i < N_ELEMENTS(test_header_cases); i++) {
		const struct test_header_case *c = &test_header_cases[i];
		unsigned int page_size = 0, reserve = 0;

		header[16] = c->b16;
		header[17] = c->b17;
		header[20] = c->b20;
		test_assert_idx(cvfs_header_parse(&page_size, &reserve,
						  header) == c->ret, i);
		if (c->ret == 0)
			test_assert_idx(page_size == c->page_size &&
					reserve == c->b20, i);
	}
	test_end();
}

static void test_page_temp_stream(void)
{
	unsigned char buf[1000], whole[1000], nonce[8] = { 1 };
	static const size_t cuts[] = { 0, 1, 63, 64, 65, 500, 999 };

	/* Any split of a temp write reads back: offsets need not align. */
	test_begin("temp keystream is position-addressed");
	memset(whole, 'T', sizeof(whole));
	cvfs_temp_xor(whole, sizeof(whole), 12345, nonce, test_cvfs_key);
	for (unsigned int i = 0; i < N_ELEMENTS(cuts); i++) {
		memset(buf, 'T', sizeof(buf));
		cvfs_temp_xor(buf, cuts[i], 12345, nonce, test_cvfs_key);
		cvfs_temp_xor(buf + cuts[i], sizeof(buf) - cuts[i],
			      12345 + cuts[i], nonce, test_cvfs_key);
		test_assert_idx(memcmp(buf, whole, sizeof(buf)) == 0, i);
	}
	cvfs_temp_xor(whole, sizeof(whole), 12345, nonce, test_cvfs_key);
	test_assert(whole[0] == 'T' && whole[999] == 'T');
	test_end();
}

/* The nonce pool hands out each byte once, and a forked child draws
   from a pool of its own: were it the parent's copy, both would take the
   same next nonce (same key: the XOR of two pages revealed). */
static void test_page_nonce_pool_fork(void)
{
	unsigned char a[CVFS_NONCE_BYTES], b[CVFS_NONCE_BYTES];
	unsigned char child[CVFS_NONCE_BYTES], parent[CVFS_NONCE_BYTES];
	int fds[2], status = 0;
	pid_t pid;

	test_begin("page nonce pool: no nonce twice, not across fork()");
	cvfs_random_nonce(a, sizeof(a));
	cvfs_random_nonce(b, sizeof(b));
	test_assert(memcmp(a, b, sizeof(a)) != 0);
	test_assert(pipe(fds) == 0);
	pid = fork();
	if (pid == 0) {
		cvfs_random_nonce(child, sizeof(child));
		_exit(write(fds[1], child, sizeof(child)) ==
		      (ssize_t)sizeof(child) ? 0 : 1);
	}
	test_assert(pid > 0);
	cvfs_random_nonce(parent, sizeof(parent));
	close(fds[1]);
	test_assert(read(fds[0], child, sizeof(child)) ==
		    (ssize_t)sizeof(child));
	close(fds[0]);
	test_assert(pid > 0 && waitpid(pid, &status, 0) == pid &&
		    WIFEXITED(status) && WEXITSTATUS(status) == 0);
	test_assert(memcmp(child, parent, sizeof(child)) != 0);
	/* Many draws: the pool refills and never repeats itself. */
	for (int i = 0; i < 1000; i++) {
		memcpy(a, b, sizeof(a));
		cvfs_random_nonce(b, sizeof(b));
		test_assert_idx(memcmp(a, b, sizeof(a)) != 0, i);
	}
	test_diag("cipher: %s", cvfs_cipher_backend());
	test_end();
}

static void test_page_use_libsodium(void)
{
	test_begin("page cipher: libsodium");
	(void)cvfs_cipher_set_evp_after(SIZE_MAX);
	test_assert_strcmp(cvfs_cipher_backend(), "libsodium");
	test_end();
}

static void test_page_use_openssl(void)
{
	static const unsigned char nonce[12] = { 1, 2, 3 };
	unsigned char buf[4096] = { 0 };

	test_begin("page cipher: OpenSSL's EVP once enough went through "
		   "libsodium");
#ifdef CVFS_HAVE_OPENSSL
	/* not loaded yet: libcrypto is not linked */
	test_assert(dlopen("libcrypto.so.3", RTLD_NOW | RTLD_NOLOAD) == NULL);
	(void)cvfs_cipher_set_evp_after(3 * sizeof(buf) + 1);
	for (int i = 0; i < 2; i++)
		cvfs_chacha20_ietf_xor_wrap(buf, buf, sizeof(buf), nonce, 1,
					    test_cvfs_key);
	test_assert_strcmp(cvfs_cipher_backend(), "libsodium");
	test_assert(dlopen("libcrypto.so.3", RTLD_NOW | RTLD_NOLOAD) == NULL);
	for (int i = 0; i < 2; i++)
		cvfs_chacha20_ietf_xor_wrap(buf, buf, sizeof(buf), nonce, 1,
					    test_cvfs_key);
	/* past the threshold, but libcrypto is not mapped: twice it */
	test_assert_strcmp(cvfs_cipher_backend(), "libsodium");
	test_assert(dlopen("libcrypto.so.3", RTLD_NOW | RTLD_NOLOAD) == NULL);
	for (int i = 0; i < 2; i++)
		cvfs_chacha20_ietf_xor_wrap(buf, buf, sizeof(buf), nonce, 1,
					    test_cvfs_key);
	test_assert_strcmp(cvfs_cipher_backend(), "libsodium");
	for (int i = 0; i < 3; i++)
		cvfs_chacha20_ietf_xor_wrap(buf, buf, sizeof(buf), nonce, 1,
					    test_cvfs_key);
	test_assert_strcmp(cvfs_cipher_backend(), "openssl");
	(void)cvfs_cipher_set_evp_after(0);
	test_assert_strcmp(cvfs_cipher_backend(), "openssl");
#else
	test_diag("built without OpenSSL: libsodium only");
	(void)cvfs_cipher_set_evp_after(0);
	cvfs_chacha20_ietf_xor_wrap(buf, buf, sizeof(buf), nonce, 1,
				    test_cvfs_key);
	test_assert_strcmp(cvfs_cipher_backend(), "libsodium");
#endif
	test_end();
}

int main(void)
{
	/* Every case with each cipher backend: their bytes must agree with
	   the reference implementation above and with each other. */
#define TEST_PAGE_CASES \
		test_page_reference_cipher, \
		test_page_counter_wrap, \
		test_page_decrypts_reference, \
		test_page_decrypt_range, \
		test_page_round_trip, \
		test_page_tamper_every_region, \
		test_page_kdf_vectors, \
		test_page_header_parse, \
		test_page_temp_stream, \
		test_page_nonce_pool_fork
	static void (*const cases[])(void) = {
		test_page_use_libsodium,
		TEST_PAGE_CASES,
		test_page_use_openssl,
		TEST_PAGE_CASES,
		NULL
	};
#undef TEST_PAGE_CASES

	if (sodium_init() < 0)
		return 1;
	return test_run(cases);
}
