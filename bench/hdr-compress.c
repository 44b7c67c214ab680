/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* hdr-compress: what LZ4 and zstd would save on sqlbox's body_cache header
   blocks and what decompressing them costs, against what reading a page
   costs (issue 15, seventh pass). Not a test; bench/hdr-compress.py
   builds the blocks and this program and runs it.

     hdr-compress BLOCKS    BLOCKS: each block as a 4-byte little-endian
                            length, then its bytes

   Prints per codec: bytes in and out (a block that does not shrink
   counts plain, as a store would keep it), the share saved, the 4 KiB
   pages that saves, and the fastest of 7 loops decompressing every block
   in microseconds per block. Then the same for one 4 KiB page through
   OpenSSL's ChaCha20-Poly1305 (the work cryptvfs does per page read,
   without the pread), and per codec the page work a block's saved bytes
   spare against its decompression. The dictionary rows train a 16 KiB
   zstd dictionary on the even blocks and measure the odd ones.

   cc -O2 bench/hdr-compress.c -llz4 -lzstd -lcrypto
   (liblz4-dev, libzstd-dev, libssl-dev) */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lz4.h>
#include <lz4hc.h>
#include <zdict.h>
#include <zstd.h>
#include <openssl/evp.h>

#define MAX_OUT 65536
#define LOOPS 7

struct block {
	unsigned char *data, *comp;
	size_t len, comp_len;
};

static struct block *blocks;
static size_t nblocks;
static const void *dict;
static size_t dict_len;
static LZ4_stream_t *lz4_stream;
static ZSTD_CCtx *zc;
static ZSTD_DCtx *zd;
static ZSTD_DDict *zddict;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t c_lz4(const struct block *b, unsigned char *out, int level)
{
	(void)level;
	return LZ4_compress_default((const char *)b->data, (char *)out,
				    b->len, MAX_OUT);
}

static size_t c_lz4hc(const struct block *b, unsigned char *out, int level)
{
	return LZ4_compress_HC((const char *)b->data, (char *)out, b->len,
			       MAX_OUT, level);
}

static size_t c_lz4dict(const struct block *b, unsigned char *out, int level)
{
	(void)level;
	LZ4_loadDict(lz4_stream, dict, dict_len);
	return LZ4_compress_fast_continue(lz4_stream, (const char *)b->data,
					  (char *)out, b->len, MAX_OUT, 1);
}

static size_t c_zstd(const struct block *b, unsigned char *out, int level)
{
	size_t n = ZSTD_compressCCtx(zc, out, MAX_OUT, b->data, b->len, level);
	return ZSTD_isError(n) ? 0 : n;
}

static size_t c_zstddict(const struct block *b, unsigned char *out, int level)
{
	size_t n = ZSTD_compress_usingDict(zc, out, MAX_OUT, b->data, b->len,
					   dict, dict_len, level);
	return ZSTD_isError(n) ? 0 : n;
}

static size_t d_lz4(const struct block *b, unsigned char *out)
{
	int n = LZ4_decompress_safe((const char *)b->comp, (char *)out,
				    b->comp_len, MAX_OUT);
	return n < 0 ? 0 : (size_t)n;
}

static size_t d_lz4dict(const struct block *b, unsigned char *out)
{
	int n = LZ4_decompress_safe_usingDict((const char *)b->comp,
					      (char *)out, b->comp_len,
					      MAX_OUT, dict, dict_len);
	return n < 0 ? 0 : (size_t)n;
}

static size_t d_zstd(const struct block *b, unsigned char *out)
{
	size_t n = ZSTD_decompressDCtx(zd, out, MAX_OUT, b->comp, b->comp_len);
	return ZSTD_isError(n) ? 0 : n;
}

static size_t d_zstddict(const struct block *b, unsigned char *out)
{
	size_t n = ZSTD_decompress_usingDDict(zd, out, MAX_OUT, b->comp,
					      b->comp_len, zddict);
	return ZSTD_isError(n) ? 0 : n;
}

static double page_us(void)
{
	static unsigned char key[32] = { 1 }, iv[12] = { 2 };
	static unsigned char plain[4096], cipher[4096], tag[16];
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	const EVP_CIPHER *cipher_type = EVP_chacha20_poly1305();
	double best = 1e9, t0;
	int len, n = 20000;

	EVP_EncryptInit_ex(ctx, cipher_type, NULL, key, iv);
	EVP_EncryptUpdate(ctx, cipher, &len, plain, sizeof(plain));
	EVP_EncryptFinal_ex(ctx, cipher + len, &len);
	EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag);
	for (int loop = 0; loop < LOOPS; loop++) {
		t0 = now();
		for (int i = 0; i < n; i++) {
			EVP_DecryptInit_ex(ctx, cipher_type, NULL, key, iv);
			EVP_DecryptUpdate(ctx, plain, &len, cipher,
					  sizeof(cipher));
			EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16,
					    tag);
			if (EVP_DecryptFinal_ex(ctx, plain + len, &len) <= 0)
				abort();
		}
		if ((now() - t0) / n < best)
			best = (now() - t0) / n;
	}
	EVP_CIPHER_CTX_free(ctx);
	return best * 1e6;
}

/* Blocks first, first + 2, ... (step 1 or 2). */
static void
codec(const char *name, size_t first, size_t step, int level,
      size_t (*comp)(const struct block *, unsigned char *, int),
      size_t (*decomp)(const struct block *, unsigned char *),
      double page, FILE *report)
{
	static unsigned char out[MAX_OUT];
	size_t in = 0, stored = 0, count = 0;
	double best = 1e9, t0, t;

	for (size_t i = first; i < nblocks; i += step) {
		struct block *b = &blocks[i];

		b->comp_len = comp(b, b->comp, level);
		if (b->comp_len == 0)
			abort();
		in += b->len;
		stored += b->comp_len < b->len ? b->comp_len : b->len;
		count++;
	}
	for (int loop = 0; loop < LOOPS; loop++) {
		t0 = now();
		for (size_t i = first; i < nblocks; i += step) {
			if (decomp(&blocks[i], out) != blocks[i].len)
				abort();
		}
		t = (now() - t0) / count;
		if (t < best)
			best = t;
	}
	best *= 1e6;
	/* page work spared per block: its saved bytes' share of a page */
	fprintf(report, "| %s | %zu | %zu | %.1f %% | %.0f | %.2f | %.2f |\n",
		name, in, stored, 100.0 * (in - stored) / in,
		(double)(in - stored) / 4096, best,
		(double)(in - stored) / count / 4096 * page);
}

int main(int argc, char *argv[])
{
	FILE *f;
	unsigned char len4[4];
	size_t cap = 0, *sizes, total = 0;
	unsigned char *samples;
	static unsigned char dict_buf[16384];
	double page;

	if (argc != 2 || (f = fopen(argv[1], "rb")) == NULL) {
		fprintf(stderr, "usage: hdr-compress BLOCKS\n");
		return 1;
	}
	while (fread(len4, 1, 4, f) == 4) {
		struct block *b;

		if (nblocks == cap) {
			cap = cap == 0 ? 1024 : cap * 2;
			blocks = realloc(blocks, cap * sizeof(*blocks));
		}
		b = &blocks[nblocks++];
		b->len = len4[0] | len4[1] << 8 | len4[2] << 16 |
			(size_t)len4[3] << 24;
		if (b->len == 0 || b->len > MAX_OUT / 2)
			abort();
		b->data = malloc(b->len);
		b->comp = malloc(MAX_OUT);
		if (fread(b->data, 1, b->len, f) != b->len)
			abort();
	}
	fclose(f);
	if (nblocks < 4)
		return 1;

	zc = ZSTD_createCCtx();
	zd = ZSTD_createDCtx();
	page = page_us();
	printf("%zu blocks; one 4 KiB page through ChaCha20-Poly1305: "
	       "%.2f us\n\n", nblocks, page);
	printf("| codec | bytes | stored | saved | pages saved | "
	       "decompress us/block | page work spared us/block |\n"
	       "|---|---|---|---|---|---|---|\n");
	codec("LZ4", 0, 1, 0, c_lz4, d_lz4, page, stdout);
	codec("LZ4 HC 9", 0, 1, 9, c_lz4hc, d_lz4, page, stdout);
	for (int level = 1; level <= 3; level++) {
		char name[32];

		snprintf(name, sizeof(name), "zstd %d", level);
		codec(name, 0, 1, level, c_zstd, d_zstd, page, stdout);
	}

	/* dictionary trained on the even blocks, measured on the odd */
	sizes = calloc(nblocks, sizeof(*sizes));
	for (size_t i = 0; i < nblocks; i += 2)
		total += blocks[i].len;
	samples = malloc(total);
	total = 0;
	for (size_t i = 0; i < nblocks; i += 2) {
		memcpy(samples + total, blocks[i].data, blocks[i].len);
		total += blocks[i].len;
		sizes[i / 2] = blocks[i].len;
	}
	dict_len = ZDICT_trainFromBuffer(dict_buf, sizeof(dict_buf), samples,
					 sizes, (nblocks + 1) / 2);
	if (ZDICT_isError(dict_len)) {
		printf("\n(no dictionary: %s)\n",
		       ZDICT_getErrorName(dict_len));
		return 0;
	}
	dict = dict_buf;
	lz4_stream = LZ4_createStream();
	zddict = ZSTD_createDDict(dict, dict_len);
	codec("LZ4 + 16 KiB dictionary", 1, 2, 0, c_lz4dict, d_lz4dict,
	      page, stdout);
	codec("zstd 1 + 16 KiB dictionary", 1, 2, 1, c_zstddict, d_zstddict,
	      page, stdout);
	return 0;
}
