/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* One page in, one page out: the sqlite3mc "chacha20" page transform,
   plus the small byte-level helpers the file methods share. */

#include <string.h>

#include <sodium.h>

#include "cryptvfs-private.h"

#ifdef CVFS_BENCH_COUNTERS
struct cvfs_page_counters cvfs_page_counters;
#endif

static uint32_t cvfs_get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 |
		(uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t cvfs_get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		(uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void cvfs_put_be32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* Derives the one-time Poly1305 key (otk[0..31]) and the page stream key
   (otk[32..63]) from the page nonce and number. Returns the counter. */
static uint32_t cvfs_page_otk(unsigned char otk[CVFS_OTK_BYTES],
			      const unsigned char *nonce, uint32_t pgno,
			      const unsigned char key[CVFS_KEY_BYTES])
{
	uint32_t counter = cvfs_get_le32(nonce + CVFS_NONCE_BYTES - 4) ^ pgno;

	memset(otk, 0, CVFS_OTK_BYTES);
	cvfs_chacha20_ietf_xor_wrap(otk, otk, CVFS_OTK_BYTES, nonce,
				    counter, key);
	return counter;
}

void cvfs_page_encrypt(unsigned char *out, const unsigned char *in,
		       size_t page_size, uint32_t pgno,
		       const unsigned char salt[CVFS_SALT_BYTES],
		       const unsigned char key[CVFS_KEY_BYTES])
{
	size_t n = page_size - CVFS_RESERVED_BYTES;
	size_t offset = pgno == 1 ? CVFS_PAGE1_PLAIN_END : 0;
	unsigned char otk[CVFS_OTK_BYTES];
	unsigned char *nonce = out + n;
	uint32_t counter;

	CVFS_COUNT(encrypted, 1);
	if (pgno == 1 && out != in)
		memcpy(out + CVFS_SALT_BYTES, in + CVFS_SALT_BYTES,
		       CVFS_PAGE1_PLAIN_END - CVFS_SALT_BYTES);
	cvfs_random_nonce(nonce, CVFS_NONCE_BYTES);
	counter = cvfs_page_otk(otk, nonce, pgno, key);
	cvfs_chacha20_ietf_xor_wrap(out + offset, in + offset, n - offset,
				    nonce, counter + 1,
				    otk + CVFS_POLY1305_KEY_BYTES);
	if (pgno == 1)
		memcpy(out, salt, CVFS_SALT_BYTES);
	cvfs_poly1305(out + n + CVFS_NONCE_BYTES, out, n + CVFS_NONCE_BYTES,
		      otk);
	sodium_memzero(otk, sizeof(otk));
}

/* Derives otk from the page's nonce and checks its tag. Returns the
   counter in *counter_r and 0, or -1 (otk wiped) when the tag is wrong. */
static int cvfs_page_auth(unsigned char otk[CVFS_OTK_BYTES],
			  uint32_t *counter_r, const unsigned char *in,
			  size_t page_size, uint32_t pgno,
			  const unsigned char key[CVFS_KEY_BYTES])
{
	size_t n = page_size - CVFS_RESERVED_BYTES;

	*counter_r = cvfs_page_otk(otk, in + n, pgno, key);
	if (cvfs_poly1305_verify(in + n + CVFS_NONCE_BYTES, in,
				 n + CVFS_NONCE_BYTES, otk) != 0) {
		sodium_memzero(otk, CVFS_OTK_BYTES);
		return -1;
	}
	return 0;
}

int cvfs_page_verify(const unsigned char *in, size_t page_size,
		     uint32_t pgno, const unsigned char key[CVFS_KEY_BYTES])
{
	unsigned char otk[CVFS_OTK_BYTES];
	uint32_t counter;

	CVFS_COUNT(verified, 1);
	if (cvfs_page_auth(otk, &counter, in, page_size, pgno, key) < 0)
		return -1;
	sodium_memzero(otk, sizeof(otk));
	return 0;
}

int cvfs_page_decrypt_range(unsigned char *out, const unsigned char *in,
			    size_t page_size, uint32_t pgno, size_t from,
			    size_t len, const unsigned char key[CVFS_KEY_BYTES])
{
	unsigned char otk[CVFS_OTK_BYTES];
	uint32_t counter;

	CVFS_COUNT(ranges, 1);
	CVFS_COUNT(range_bytes, len);
	if (cvfs_page_auth(otk, &counter, in, page_size, pgno, key) < 0) {
		memset(out, 0, len);
		return -1;
	}
	/* Data keystream block i covers page bytes 64*i..: start at the
	   block of from (uint32 arithmetic wraps as sqleet's counter does). */
	cvfs_chacha20_ietf_xor_wrap(out, in + from, len, in + page_size -
				    CVFS_RESERVED_BYTES, counter + 1 +
				    (uint32_t)(from / CVFS_CHACHA20_BLOCK_BYTES),
				    otk + CVFS_POLY1305_KEY_BYTES);
	sodium_memzero(otk, sizeof(otk));
	return 0;
}

int cvfs_page_decrypt(unsigned char *out, unsigned char *salt_r,
		      const unsigned char *in, size_t page_size, uint32_t pgno,
		      const unsigned char key[CVFS_KEY_BYTES])
{
	size_t n = page_size - CVFS_RESERVED_BYTES;
	size_t offset = pgno == 1 ? CVFS_PAGE1_PLAIN_END : 0;
	unsigned char otk[CVFS_OTK_BYTES];
	unsigned char nonce[CVFS_NONCE_BYTES];
	uint32_t counter;

	CVFS_COUNT(decrypted, 1);
	/* Copy the nonce first: out may be in. */
	memcpy(nonce, in + n, sizeof(nonce));
	if (cvfs_page_auth(otk, &counter, in, page_size, pgno, key) < 0) {
		memset(out, 0, page_size);
		return -1;
	}
	if (pgno == 1) {
		if (salt_r != NULL)
			memcpy(salt_r, in, CVFS_SALT_BYTES);
		memcpy(out, CVFS_SQLITE_HEADER, CVFS_SQLITE_HEADER_BYTES);
		if (out != in)
			memcpy(out + CVFS_SALT_BYTES, in + CVFS_SALT_BYTES,
			       CVFS_PAGE1_PLAIN_END - CVFS_SALT_BYTES);
	}
	cvfs_chacha20_ietf_xor_wrap(out + offset, in + offset, n - offset,
				    nonce, counter + 1,
				    otk + CVFS_POLY1305_KEY_BYTES);
	if (out != in)
		memcpy(out + n, in + n, CVFS_RESERVED_BYTES);
	sodium_memzero(otk, sizeof(otk));
	return 0;
}

void cvfs_temp_xor(unsigned char *buf, size_t len, sqlite3_uint64 offset,
		   const unsigned char nonce[8],
		   const unsigned char key[CVFS_KEY_BYTES])
{
	/* The original ChaCha20 has a 64-bit block counter, so any byte
	   offset maps to a keystream position without a wrap. */
	uint64_t ic = offset / CVFS_CHACHA20_BLOCK_BYTES;
	size_t skip = offset % CVFS_CHACHA20_BLOCK_BYTES;

	if (skip != 0) {
		unsigned char block[CVFS_CHACHA20_BLOCK_BYTES];
		size_t part = CVFS_CHACHA20_BLOCK_BYTES - skip;

		if (part > len)
			part = len;
		memset(block, 0, sizeof(block));
		crypto_stream_chacha20_xor_ic(block, block, sizeof(block),
					      nonce, ic, key);
		for (size_t i = 0; i < part; i++)
			buf[i] ^= block[skip + i];
		sodium_memzero(block, sizeof(block));
		buf += part;
		len -= part;
		ic++;
	}
	if (len > 0)
		crypto_stream_chacha20_xor_ic(buf, buf, len, nonce, ic, key);
}

int cvfs_header_parse(unsigned int *page_size_r, unsigned int *reserve_r,
		      const unsigned char header[CVFS_PAGE1_PLAIN_END])
{
	unsigned int page_size = (unsigned int)header[16] << 8 | header[17];

	/* 1 encodes 65536 (file format 1.3.2.1). */
	if (page_size == 1)
		page_size = CVFS_MAX_PAGE_SIZE;
	if (page_size < CVFS_MIN_PAGE_SIZE || page_size > CVFS_MAX_PAGE_SIZE ||
	    (page_size & (page_size - 1)) != 0)
		return -1;
	if (header[20] < CVFS_RESERVED_BYTES)
		return -1;
	*page_size_r = page_size;
	*reserve_r = header[20];
	return 0;
}

void cvfs_wal_checksum(uint32_t sum[2], const unsigned char *data, size_t len,
		       bool big_endian)
{
	uint32_t s1 = sum[0], s2 = sum[1];

	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint32_t a, b;

		if (big_endian) {
			a = cvfs_get_be32(data + i);
			b = cvfs_get_be32(data + i + 4);
		} else {
			a = cvfs_get_le32(data + i);
			b = cvfs_get_le32(data + i + 4);
		}
		s1 += a + s2;
		s2 += b + s1;
	}
	sum[0] = s1;
	sum[1] = s2;
}
