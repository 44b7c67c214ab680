/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The primitives under the page transform: raw IETF ChaCha20 (32-bit
   block counter, 96-bit nonce), Poly1305, and the nonces' random bytes.

   With OpenSSL 3 (configure defines CVFS_HAVE_OPENSSL) ChaCha20 and
   Poly1305 come from its EVP layer, which has AVX2/AVX-512 code for both;
   libsodium 1.0.18 has AVX2 ChaCha20 and SSE2 Poly1305 only. The bytes are
   the same either way (tests/vectors/sqlite3mc and the interop test check
   them), and libsodium stays the reference and the fallback: it is used
   when configure finds no libcrypto, or when an EVP call fails.

   OpenSSL is not linked but dlopen()ed, and only once a process has put
   CVFS_EVP_AFTER_BYTES through libsodium: loading libcrypto (about 3 ms
   of relocations) and its first EVP_CIPHER_fetch() (about 3 ms building
   the provider's name map) cost a short IMAP session more than EVP's
   speed saves it, and most sessions decrypt well under a megabyte.  A
   process that goes on (a big FETCH, a rescan, an import) switches over.
   One that does not have libcrypto mapped yet (no TLS in it: a backend
   behind Dovecot's proxy, a local client) pays both costs, so it switches
   after twice as many bytes: body-bench's 100-message FETCH (3.8 MB, a
   new session) paid 22 % of its CPU time for the load at 4 MiB.

   Nonces: libsodium's randombytes_buf() costs a getrandom() system call
   per page. A per-thread pool of CVFS_RANDOM_POOL_BYTES (256 nonces)
   expanded from one fresh 32-byte seed costs one per 256 pages instead. A forked child must never reuse its parent's pool (the same
   nonce under the same key twice would reveal the XOR of two pages), so
   a pthread_atfork() child handler bumps a generation counter and every
   pool drawn under an older generation is wiped and refilled. */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#ifdef CVFS_HAVE_OPENSSL
#  include <dlfcn.h>
#  include <stdint.h>
#  include <openssl/core_names.h>
#  include <openssl/evp.h>
#  include <openssl/opensslv.h>
#endif

#include "cryptvfs-private.h"

#define CVFS_RANDOM_POOL_BYTES 4096
#define CVFS_POLY1305_TAG_BYTES 16

struct cvfs_random_pool {
	unsigned long generation;
	size_t used;
	unsigned char bytes[CVFS_RANDOM_POOL_BYTES];
};

static pthread_once_t cvfs_cipher_once = PTHREAD_ONCE_INIT;
/* Bumped in every forked child; starts at 1 so a zeroed pool is stale. */
static volatile unsigned long cvfs_random_generation = 1;
static __thread struct cvfs_random_pool cvfs_random_pool;

#ifdef CVFS_HAVE_OPENSSL
#if OPENSSL_VERSION_MAJOR != 3
#  error "cvfs-cipher.c loads libcrypto.so.3"
#endif
#define CVFS_LIBCRYPTO_SONAME "libcrypto.so.3"

/* Bytes through libsodium before libcrypto is loaded: 1,024 pages of
   4 KiB.  Past it the remaining work pays for the load many times. */
#define CVFS_EVP_AFTER_BYTES ((size_t)4 << 20)

static size_t cvfs_evp_after = CVFS_EVP_AFTER_BYTES;
static size_t cvfs_sodium_bytes;
static pthread_once_t cvfs_evp_once = PTHREAD_ONCE_INIT;
/* Set (once) by cvfs_evp_load(): every symbol and both fetches worked. */
static bool cvfs_evp_loaded;

/* The libcrypto functions used, from dlsym(). */
static struct {
	__typeof__(EVP_CIPHER_fetch) *cipher_fetch;
	__typeof__(EVP_MAC_fetch) *mac_fetch;
	__typeof__(EVP_CIPHER_CTX_new) *cipher_ctx_new;
	__typeof__(EVP_CIPHER_CTX_free) *cipher_ctx_free;
	__typeof__(EVP_MAC_CTX_new) *mac_ctx_new;
	__typeof__(EVP_MAC_CTX_free) *mac_ctx_free;
	__typeof__(EVP_EncryptInit_ex) *encrypt_init_ex;
	__typeof__(EVP_EncryptUpdate) *encrypt_update;
	__typeof__(EVP_MAC_init) *mac_init;
	__typeof__(EVP_MAC_update) *mac_update;
	__typeof__(EVP_MAC_final) *mac_final;
} cvfs_ssl;

static EVP_CIPHER *cvfs_evp_chacha20;
static EVP_MAC *cvfs_evp_poly1305;
/* The key only frees a thread's contexts when it ends; the pointer also
   lives in static TLS, where leak checkers find it. */
static pthread_key_t cvfs_evp_key;
static bool cvfs_evp_key_ok;
static __thread struct cvfs_evp_ctx *cvfs_evp_tls;

struct cvfs_evp_ctx {
	EVP_CIPHER_CTX *cipher;
	EVP_MAC_CTX *mac;
	/* The cipher context has been initialised with cvfs_evp_chacha20. */
	bool cipher_ready;
};

static void cvfs_evp_ctx_free(void *p)
{
	struct cvfs_evp_ctx *ctx = p;

	if (cvfs_evp_tls == ctx)
		cvfs_evp_tls = NULL;
	/* Both free functions cleanse the key schedules. */
	cvfs_ssl.cipher_ctx_free(ctx->cipher);
	cvfs_ssl.mac_ctx_free(ctx->mac);
	free(ctx);
}

/* Loads libcrypto and fetches both algorithms; on any failure EVP stays
   unused and libsodium does the work.  Never unloaded: thread contexts
   are freed through it until the process ends. */
static void cvfs_evp_load(void)
{
	void *lib = dlopen(CVFS_LIBCRYPTO_SONAME, RTLD_NOW | RTLD_LOCAL);
	bool ok = lib != NULL;
	void *sym;

	/* POSIX: a dlsym() result converts to the function's pointer */
#define CVFS_SSL_SYM(field, name) \
	if (ok && (ok = (sym = dlsym(lib, name)) != NULL)) \
		memcpy(&cvfs_ssl.field, &sym, sizeof(sym))
	CVFS_SSL_SYM(cipher_fetch, "EVP_CIPHER_fetch");
	CVFS_SSL_SYM(mac_fetch, "EVP_MAC_fetch");
	CVFS_SSL_SYM(cipher_ctx_new, "EVP_CIPHER_CTX_new");
	CVFS_SSL_SYM(cipher_ctx_free, "EVP_CIPHER_CTX_free");
	CVFS_SSL_SYM(mac_ctx_new, "EVP_MAC_CTX_new");
	CVFS_SSL_SYM(mac_ctx_free, "EVP_MAC_CTX_free");
	CVFS_SSL_SYM(encrypt_init_ex, "EVP_EncryptInit_ex");
	CVFS_SSL_SYM(encrypt_update, "EVP_EncryptUpdate");
	CVFS_SSL_SYM(mac_init, "EVP_MAC_init");
	CVFS_SSL_SYM(mac_update, "EVP_MAC_update");
	CVFS_SSL_SYM(mac_final, "EVP_MAC_final");
#undef CVFS_SSL_SYM
	if (!ok)
		return;
	/* Fetched once: EVP_chacha20() would look the provider up again
	   at every EVP_EncryptInit_ex(). */
	cvfs_evp_chacha20 = cvfs_ssl.cipher_fetch(NULL, "ChaCha20", NULL);
	cvfs_evp_poly1305 = cvfs_ssl.mac_fetch(NULL, "POLY1305", NULL);
	cvfs_evp_key_ok = pthread_key_create(&cvfs_evp_key,
					     cvfs_evp_ctx_free) == 0;
	__atomic_store_n(&cvfs_evp_loaded, cvfs_evp_chacha20 != NULL &&
			 cvfs_evp_poly1305 != NULL && cvfs_evp_key_ok,
			 __ATOMIC_RELEASE);
}

/* Whether libcrypto is in the process already (a TLS connection's), as
   it was when the threshold was first passed: asked once (dlopen() takes
   the loader's lock and walks its list; per page it cost more than the
   decryption). */
static bool cvfs_evp_mapped(void)
{
	static int mapped = -1;
	int ret = __atomic_load_n(&mapped, __ATOMIC_RELAXED);
	void *lib;

	if (ret < 0) {
		lib = dlopen(CVFS_LIBCRYPTO_SONAME, RTLD_NOW | RTLD_NOLOAD);
		ret = lib != NULL;
		if (lib != NULL)
			(void)dlclose(lib);
		__atomic_store_n(&mapped, ret, __ATOMIC_RELAXED);
	}
	return ret > 0;
}

/* Whether len more bytes go through EVP: once the process is past the
   threshold (twice it without libcrypto mapped) and libcrypto loaded. */
static bool cvfs_evp_wanted(size_t len)
{
	size_t after = __atomic_load_n(&cvfs_evp_after, __ATOMIC_RELAXED);

	if (after == SIZE_MAX)
		return false;
	if (!__atomic_load_n(&cvfs_evp_loaded, __ATOMIC_ACQUIRE)) {
		size_t bytes = __atomic_add_fetch(&cvfs_sodium_bytes, len,
						  __ATOMIC_RELAXED);

		if (after > 0 && bytes < after)
			return false;
		if (after > 0 && bytes / 2 < after && !cvfs_evp_mapped())
			return false;
		(void)pthread_once(&cvfs_evp_once, cvfs_evp_load);
	}
	return __atomic_load_n(&cvfs_evp_loaded, __ATOMIC_ACQUIRE);
}
#endif

size_t cvfs_cipher_set_evp_after(size_t bytes)
{
#ifdef CVFS_HAVE_OPENSSL
	return __atomic_exchange_n(&cvfs_evp_after, bytes, __ATOMIC_RELAXED);
#else
	(void)bytes;
	return SIZE_MAX;
#endif
}

static void cvfs_random_atfork_child(void)
{
	cvfs_random_generation++;
}

static void cvfs_cipher_init(void)
{
	(void)pthread_atfork(NULL, NULL, cvfs_random_atfork_child);
}

const char *cvfs_cipher_backend(void)
{
#ifdef CVFS_HAVE_OPENSSL
	if (cvfs_evp_wanted(0))
		return "openssl";
#endif
	return "libsodium";
}

void cvfs_random_nonce(unsigned char *out, size_t len)
{
	struct cvfs_random_pool *pool = &cvfs_random_pool;

	(void)pthread_once(&cvfs_cipher_once, cvfs_cipher_init);
	if (len > sizeof(pool->bytes)) {
		randombytes_buf(out, len);
		return;
	}
	if (pool->generation != cvfs_random_generation ||
	    pool->used + len > sizeof(pool->bytes)) {
		/* libsodium reads getrandom() 256 bytes at a time: draw a
		   fresh 32-byte seed (one call) and expand it with
		   libsodium's ChaCha20-based deterministic generator. */
		unsigned char seed[randombytes_SEEDBYTES];

		randombytes_buf(seed, sizeof(seed));
		randombytes_buf_deterministic(pool->bytes, sizeof(pool->bytes),
					      seed);
		sodium_memzero(seed, sizeof(seed));
		pool->generation = cvfs_random_generation;
		pool->used = 0;
	}
	memcpy(out, pool->bytes + pool->used, len);
	/* Handed out once: wipe it from the pool. */
	sodium_memzero(pool->bytes + pool->used, len);
	pool->used += len;
}

#ifdef CVFS_HAVE_OPENSSL
/* This thread's EVP contexts, or NULL when OpenSSL is not usable. */
static struct cvfs_evp_ctx *cvfs_evp_get(void)
{
	struct cvfs_evp_ctx *ctx;

	ctx = cvfs_evp_tls;
	if (ctx != NULL)
		return ctx;
	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return NULL;
	ctx->cipher = cvfs_ssl.cipher_ctx_new();
	ctx->mac = cvfs_ssl.mac_ctx_new(cvfs_evp_poly1305);
	if (ctx->cipher == NULL || ctx->mac == NULL ||
	    pthread_setspecific(cvfs_evp_key, ctx) != 0) {
		cvfs_evp_ctx_free(ctx);
		return NULL;
	}
	cvfs_evp_tls = ctx;
	return ctx;
}

/* One run of the keystream that does not pass the counter wrap. */
static bool cvfs_evp_chacha20_xor(unsigned char *out, const unsigned char *in,
				  size_t len,
				  const unsigned char nonce[CVFS_CHACHA20_NONCE_BYTES],
				  uint32_t ic,
				  const unsigned char key[CVFS_KEY_BYTES])
{
	struct cvfs_evp_ctx *ctx = cvfs_evp_get();
	unsigned char iv[16];
	int outl;

	if (ctx == NULL)
		return false;
	/* OpenSSL's ChaCha20 IV: the 32-bit block counter (little endian),
	   then the 96-bit IETF nonce. */
	iv[0] = ic;
	iv[1] = ic >> 8;
	iv[2] = ic >> 16;
	iv[3] = ic >> 24;
	memcpy(iv + 4, nonce, CVFS_CHACHA20_NONCE_BYTES);
	if (cvfs_ssl.encrypt_init_ex(ctx->cipher, ctx->cipher_ready ? NULL :
				     cvfs_evp_chacha20, NULL, key, iv) != 1) {
		ctx->cipher_ready = false;
		return false;
	}
	ctx->cipher_ready = true;
	while (len > 0) {
		int chunk = len > (1u << 30) ? (1 << 30) : (int)len;

		if (cvfs_ssl.encrypt_update(ctx->cipher, out, &outl, in,
					    chunk) != 1 ||
		    outl != chunk)
			return false;
		out += chunk;
		in += chunk;
		len -= chunk;
	}
	return true;
}

static bool cvfs_evp_mac_poly1305(unsigned char tag[CVFS_POLY1305_TAG_BYTES],
			      const unsigned char *in, size_t len,
			      const unsigned char key[CVFS_POLY1305_KEY_BYTES])
{
	struct cvfs_evp_ctx *ctx = cvfs_evp_get();
	size_t outl = 0;

	return ctx != NULL &&
		cvfs_ssl.mac_init(ctx->mac, key, CVFS_POLY1305_KEY_BYTES,
				  NULL) == 1 &&
		cvfs_ssl.mac_update(ctx->mac, in, len) == 1 &&
		cvfs_ssl.mac_final(ctx->mac, tag, &outl,
				   CVFS_POLY1305_TAG_BYTES) == 1 &&
		outl == CVFS_POLY1305_TAG_BYTES;
}
#endif

/* One run of the keystream that does not pass the counter wrap. */
static void cvfs_chacha20_run(unsigned char *out, const unsigned char *in,
			      size_t len,
			      const unsigned char nonce[CVFS_CHACHA20_NONCE_BYTES],
			      uint32_t ic,
			      const unsigned char key[CVFS_KEY_BYTES])
{
	if (len == 0)
		return;
#ifdef CVFS_HAVE_OPENSSL
	if (cvfs_evp_wanted(len) &&
	    cvfs_evp_chacha20_xor(out, in, len, nonce, ic, key))
		return;
#endif
	crypto_stream_chacha20_ietf_xor_ic(out, in, len, nonce, ic, key);
}

void cvfs_chacha20_ietf_xor_wrap(unsigned char *out, const unsigned char *in,
				 size_t len,
				 const unsigned char nonce[CVFS_CHACHA20_NONCE_BYTES],
				 uint32_t ic,
				 const unsigned char key[CVFS_KEY_BYTES])
{
	/* sqleet's ChaCha20 wraps the 32-bit counter to 0 with the same
	   nonce. libsodium 1.0.18 calls sodium_misuse() (abort) when ic plus
	   the blocks needed passes 2^32, and OpenSSL carries into the first
	   nonce word. Random nonces make counters near 2^32 happen in real
	   files, so split the call at the wrap. */
	uint64_t blocks_left = ((uint64_t)1 << 32) - ic;
	uint64_t first_max = blocks_left * CVFS_CHACHA20_BLOCK_BYTES;
	size_t first = len;

	if ((uint64_t)len > first_max)
		first = (size_t)first_max;
	cvfs_chacha20_run(out, in, first, nonce, ic, key);
	if (first < len)
		cvfs_chacha20_run(out + first, in + first, len - first,
				  nonce, 0, key);
}

void cvfs_poly1305(unsigned char tag[CVFS_POLY1305_TAG_BYTES],
		   const unsigned char *in, size_t len,
		   const unsigned char key[CVFS_POLY1305_KEY_BYTES])
{
#ifdef CVFS_HAVE_OPENSSL
	/* the bytes were counted by the keystream's call */
	if (cvfs_evp_wanted(0) && cvfs_evp_mac_poly1305(tag, in, len, key))
		return;
#endif
	crypto_onetimeauth_poly1305(tag, in, len, key);
}

int cvfs_poly1305_verify(const unsigned char tag[CVFS_POLY1305_TAG_BYTES],
			 const unsigned char *in, size_t len,
			 const unsigned char key[CVFS_POLY1305_KEY_BYTES])
{
	unsigned char computed[CVFS_POLY1305_TAG_BYTES];
	int ret;

	cvfs_poly1305(computed, in, len, key);
	/* Constant time. */
	ret = crypto_verify_16(computed, tag);
	sodium_memzero(computed, sizeof(computed));
	return ret == 0 ? 0 : -1;
}
