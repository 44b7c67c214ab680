/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "test-keyring.h"

/* Issue 13: one damaged spool record must not hide the records after it.
   A spool of three real sealed records is damaged in the middle one at
   every byte position (and by lost or extra bytes); the scan plus
   kr_unseal() must give back the first and the third message, and report
   exactly the middle record's bytes as damaged. */

#define TEST_RECORDS 3
#define TEST_V1_HEADER_BYTES 28

struct test_pair {
	unsigned char pk[KR_PUBLIC_KEY_BYTES];
	unsigned char sk[KR_SECRET_KEY_BYTES];
};

struct test_spool {
	unsigned char *data;
	size_t size;
	/* Offsets of the records as built (and one past the last). */
	size_t offsets[TEST_RECORDS + 1];
	char messages[TEST_RECORDS][64];
	/* For test_read_failing(): reads at or past here fail. */
	uint64_t fail_at;
};

/* What an importer saw. */
struct test_result {
	unsigned int records, opened, damaged, torn;
	/* Bit i: message i came out intact. */
	unsigned int found;
	uint64_t damaged_offset[8], damaged_size[8];
	enum kr_spool_damage damage[8];
	uint64_t torn_offset, torn_size;
	/* Items covered [0, size) in order, without gaps or overlap. */
	bool contiguous;
};

static struct test_pair test_keys;

static ssize_t test_read(void *context, unsigned char *buf, size_t size,
			 uint64_t offset)
{
	const struct test_spool *spool = context;

	if (offset >= spool->size)
		return 0;
	if (size > spool->size - offset)
		size = spool->size - offset;
	memcpy(buf, spool->data + offset, size);
	return (ssize_t)size;
}

static ssize_t test_read_failing(void *context, unsigned char *buf,
				 size_t size, uint64_t offset)
{
	const struct test_spool *spool = context;

	if (offset + size > spool->fail_at) {
		errno = EIO;
		return -1;
	}
	return test_read(context, buf, size, offset);
}

static void test_append(struct test_spool *spool, const void *data,
			size_t size)
{
	spool->data = realloc(spool->data, spool->size + size + 1);
	memcpy(spool->data + spool->size, data, size);
	spool->size += size;
}

/* Appends a record sealing text; v1: in the first format. */
static void test_append_record(struct test_spool *spool, unsigned int i,
			       bool v1)
{
	unsigned char hdr[KR_SPOOL_HEADER_BYTES], id[KR_SPOOL_ID_BYTES];
	const char *text = spool->messages[i];
	size_t slen = kr_seal_size(strlen(text));
	unsigned char *sealed = malloc(slen);
	struct kr_error err;

	memset(id, 'a' + i, sizeof(id));
	spool->offsets[i] = spool->size;
	if (kr_seal(sealed, slen, (const unsigned char *)text, strlen(text),
		    test_keys.pk, &err) < 0)
		abort();
	if (v1) {
		memcpy(hdr, "SBX1", 4);
		memcpy(hdr + 4, id, sizeof(id));
		for (int b = 0; b < 8; b++)
			hdr[20 + b] = (unsigned char)((uint64_t)slen >> (8 * b));
		test_append(spool, hdr, TEST_V1_HEADER_BYTES);
	} else {
		kr_spool_header_init(hdr, id, slen);
		test_append(spool, hdr, sizeof(hdr));
	}
	test_append(spool, sealed, slen);
	spool->offsets[i + 1] = spool->size;
	free(sealed);
}

/* Rewrites the record header at off into the second format ("SBX2",
   its check recomputed): what an older writer left in the spool. */
static void test_make_v2(struct test_spool *spool, size_t off)
{
	unsigned char hash[crypto_generichash_BYTES_MIN];

	memcpy(spool->data + off, "SBX2", 4);
	crypto_generichash(hash, sizeof(hash), spool->data + off, 28,
			   NULL, 0);
	memcpy(spool->data + off + 28, hash, 8);
}

/* Three records; v1_mask: which are in the first format. */
static void test_spool_build(struct test_spool *spool, unsigned int v1_mask)
{
	memset(spool, 0, sizeof(*spool));
	for (unsigned int i = 0; i < TEST_RECORDS; i++) {
		snprintf(spool->messages[i], sizeof(spool->messages[i]),
			 "Subject: spool test %u\r\n\r\nbody %u\r\n", i, i);
		test_append_record(spool, i, (v1_mask & (1U << i)) != 0);
	}
}

static struct test_spool test_spool_copy(const struct test_spool *spool)
{
	struct test_spool copy = *spool;

	copy.data = malloc(spool->size + 1);
	memcpy(copy.data, spool->data, spool->size);
	return copy;
}

/* Scans and unseals like the storage's import does. */
static int test_import(struct test_spool *spool, kr_spool_read_func *fn,
		       struct test_result *res)
{
	struct kr_spool_scan *scan;
	struct kr_spool_item item;
	struct kr_error err;
	uint64_t next = 0;
	int ret;

	memset(res, 0, sizeof(*res));
	res->contiguous = true;
	scan = kr_spool_scan_create(spool->size, fn, spool);
	if (scan == NULL)
		return -1;
	while ((ret = kr_spool_scan_next(scan, &item, &err)) > 0) {
		if (item.kind == KR_SPOOL_ITEM_RECORD) {
			size_t olen = kr_unseal_max_size(item.sealed_len), got;
			unsigned char *out = malloc(olen + 1);

			res->records++;
			if (item.offset != next ||
			    item.sealed_offset + item.sealed_len !=
			    item.offset + item.size)
				res->contiguous = false;
			next = item.offset + item.size;
			ret = kr_unseal(out, olen, &got,
					spool->data + item.sealed_offset,
					item.sealed_len, test_keys.pk,
					test_keys.sk, &err);
			if (ret == 1) {
				res->opened++;
				for (unsigned int i = 0; i < TEST_RECORDS; i++) {
					if (got == strlen(spool->messages[i]) &&
					    memcmp(out, spool->messages[i],
						   got) == 0 &&
					    item.id[0] == 'a' + i)
						res->found |= 1U << i;
				}
			} else {
				/* Comes back as the start of a damaged
				   item. */
				kr_spool_scan_reject(scan);
				next = item.offset;
			}
			free(out);
			continue;
		}
		if (item.offset != next)
			res->contiguous = false;
		next = item.offset + item.size;
		if (item.kind == KR_SPOOL_ITEM_DAMAGED) {
			if (res->damaged < N_ELEMENTS(res->damaged_offset)) {
				res->damaged_offset[res->damaged] = item.offset;
				res->damaged_size[res->damaged] = item.size;
				res->damage[res->damaged] = item.damage;
			}
			res->damaged++;
		} else if (item.kind == KR_SPOOL_ITEM_TORN) {
			res->torn++;
			res->torn_offset = item.offset;
			res->torn_size = item.size;
		}
	}
	if (ret == 0 && next != spool->size)
		res->contiguous = false;
	kr_spool_scan_destroy(&scan);
	return ret;
}

/* Records 0 and 2 intact, exactly [from, to) damaged, nothing torn. */
static bool test_middle_lost(const struct test_spool *spool,
			     const struct test_result *res,
			     uint64_t from, uint64_t to)
{
	(void)spool;
	return res->found == 0x5 && res->opened == 2 && res->damaged == 1 &&
		res->torn == 0 && res->contiguous &&
		res->damaged_offset[0] == from &&
		res->damaged_offset[0] + res->damaged_size[0] == to;
}

static void test_spool_intact(void)
{
	struct test_spool spool;
	struct test_result res;

	test_begin("spool intact, both formats");
	for (unsigned int mask = 0; mask < 8; mask++) {
		test_spool_build(&spool, mask);
		test_assert_idx(test_import(&spool, test_read, &res) == 0 &&
				res.records == 3 && res.found == 0x7 &&
				res.damaged == 0 && res.torn == 0 &&
				res.contiguous, mask);
		free(spool.data);
	}
	/* Empty. */
	memset(&spool, 0, sizeof(spool));
	test_assert(test_import(&spool, test_read, &res) == 0 &&
		    res.records == 0 && res.damaged == 0 && res.contiguous);
	test_end();
}

/* Every byte of the middle record, changed three ways. */
static void test_spool_damage_every_byte(void)
{
	static const unsigned char flips[] = { 0x01, 0x80, 0xff };
	struct test_spool spool, bad;
	struct test_result res;

	test_begin("spool: middle record damaged at every byte");
	test_spool_build(&spool, 0);
	for (unsigned int f = 0; f < N_ELEMENTS(flips); f++) {
		unsigned int failures = 0;

		for (size_t pos = spool.offsets[1]; pos < spool.offsets[2];
		     pos++) {
			bad = test_spool_copy(&spool);
			bad.data[pos] ^= flips[f];
			if (test_import(&bad, test_read, &res) != 0 ||
			    !test_middle_lost(&bad, &res, spool.offsets[1],
					      spool.offsets[2])) {
				test_diag("flip 0x%02x at %zu: found %x, "
					  "damaged %u, torn %u", flips[f], pos,
					  res.found, res.damaged, res.torn);
				failures++;
			}
			free(bad.data);
		}
		test_assert_idx(failures == 0, flips[f]);
	}
	/* Which kind: header bytes are framing, sealed bytes do not open. */
	bad = test_spool_copy(&spool);
	bad.data[spool.offsets[1] + 20] ^= 0x01;	/* the length */
	test_assert(test_import(&bad, test_read, &res) == 0 &&
		    res.damage[0] == KR_SPOOL_DAMAGE_FRAMING);
	free(bad.data);
	bad = test_spool_copy(&spool);
	bad.data[spool.offsets[2] - 1] ^= 0x01;	/* the last tag byte */
	test_assert(test_import(&bad, test_read, &res) == 0 &&
		    res.damage[0] == KR_SPOOL_DAMAGE_SEALED);
	free(bad.data);
	free(spool.data);
	test_end();
}

/* Bytes lost from or added to the middle record shift the third one. */
static void test_spool_damage_shift(void)
{
	static const size_t counts[] = { 1, 3, 4, 35, 36, 37, 100 };
	struct test_spool spool, bad;
	struct test_result res;

	test_begin("spool: bytes lost or added in the middle record");
	test_spool_build(&spool, 0);
	for (unsigned int c = 0; c < N_ELEMENTS(counts); c++) {
		size_t n = counts[c], rec_size = spool.offsets[2] -
			spool.offsets[1];
		unsigned int failures = 0;

		for (size_t at = 0; at + n <= rec_size; at += 7) {
			size_t pos = spool.offsets[1] + at;

			/* lost */
			bad = test_spool_copy(&spool);
			memmove(bad.data + pos, bad.data + pos + n,
				bad.size - pos - n);
			bad.size -= n;
			if (test_import(&bad, test_read, &res) != 0 ||
			    !test_middle_lost(&bad, &res, spool.offsets[1],
					      spool.offsets[2] - n))
				failures++;
			free(bad.data);
			/* added: n bytes of 'x' (at 0 they would only be
			   garbage before an intact record) */
			if (at == 0)
				continue;
			bad = test_spool_copy(&spool);
			bad.data = realloc(bad.data, bad.size + n);
			memmove(bad.data + pos + n, bad.data + pos,
				bad.size - pos);
			memset(bad.data + pos, 'x', n);
			bad.size += n;
			if (test_import(&bad, test_read, &res) != 0 ||
			    !test_middle_lost(&bad, &res, spool.offsets[1],
					      spool.offsets[2] + n))
				failures++;
			free(bad.data);
		}
		test_assert_idx(failures == 0, n);
	}
	free(spool.data);
	test_end();
}

/* The first format has no check: damage shows when the record does not
   open, and the search still finds the record after it. */
static void test_spool_damage_v1(void)
{
	struct test_spool spool, bad;
	struct test_result res;
	unsigned int failures = 0;

	test_begin("spool: first-format middle record damaged");
	test_spool_build(&spool, 0x7);
	for (size_t pos = spool.offsets[1]; pos < spool.offsets[2]; pos++) {
		/* Nothing protects the id in this format: a changed id
		   still imports (once). */
		if (pos >= spool.offsets[1] + 4 && pos < spool.offsets[1] + 20)
			continue;
		bad = test_spool_copy(&spool);
		bad.data[pos] ^= 0xff;
		if (test_import(&bad, test_read, &res) != 0 ||
		    !test_middle_lost(&bad, &res, spool.offsets[1],
				      spool.offsets[2])) {
			test_diag("at %zu: found %x, damaged %u, torn %u",
				  pos, res.found, res.damaged, res.torn);
			failures++;
		}
		free(bad.data);
	}
	test_assert(failures == 0);
	free(spool.data);
	/* An old record before new ones (a spool written across the
	   upgrade), the old one damaged. */
	test_spool_build(&spool, 0x1);
	bad = test_spool_copy(&spool);
	bad.data[spool.offsets[0] + 40] ^= 0xff;
	test_assert(test_import(&bad, test_read, &res) == 0 &&
		    res.found == 0x6 && res.damaged == 1 &&
		    res.damaged_offset[0] == 0 &&
		    res.damaged_size[0] == spool.offsets[1] && res.contiguous);
	free(bad.data);
	free(spool.data);
	test_end();
}

/* The last record is damaged: reported as damaged, never as a torn tail
   (a writer would cut that away). */
static void test_spool_damage_last(void)
{
	struct test_spool spool, bad;
	struct test_result res;
	unsigned int failures = 0;

	test_begin("spool: last record damaged is not a torn tail");
	test_spool_build(&spool, 0);
	for (size_t pos = spool.offsets[2]; pos < spool.offsets[3]; pos++) {
		bad = test_spool_copy(&spool);
		bad.data[pos] ^= 0xff;
		if (test_import(&bad, test_read, &res) != 0 ||
		    res.found != 0x3 || res.torn != 0 || res.damaged != 1 ||
		    res.damaged_offset[0] != spool.offsets[2] ||
		    res.damaged_size[0] != spool.offsets[3] -
		    spool.offsets[2] || !res.contiguous)
			failures++;
		free(bad.data);
	}
	test_assert(failures == 0);
	free(spool.data);
	test_end();
}

/* An append cut short at any length: a torn tail after intact records. */
static void test_spool_torn(void)
{
	struct test_spool spool, bad;
	struct test_result res;
	unsigned int failures = 0;

	test_begin("spool: torn tail");
	test_spool_build(&spool, 0);
	for (size_t cut = spool.offsets[2] + 1; cut < spool.offsets[3];
	     cut++) {
		bad = test_spool_copy(&spool);
		bad.size = cut;
		if (test_import(&bad, test_read, &res) != 0 ||
		    res.found != 0x3 || res.damaged != 0 || res.torn != 1 ||
		    res.torn_offset != spool.offsets[2] ||
		    res.torn_size != cut - spool.offsets[2] ||
		    !res.contiguous)
			failures++;
		free(bad.data);
	}
	test_assert(failures == 0);
	/* Damage, then a torn append: both reported, in order. */
	bad = test_spool_copy(&spool);
	bad.data[spool.offsets[1] + 50] ^= 0xff;
	bad.size = spool.offsets[2] + 10;
	test_assert(test_import(&bad, test_read, &res) == 0 &&
		    res.found == 0x1 && res.damaged == 1 && res.torn == 1 &&
		    res.damaged_offset[0] == spool.offsets[1] &&
		    res.torn_offset == spool.offsets[2] && res.contiguous);
	free(bad.data);
	free(spool.data);
	test_end();
}

/* Garbage before, between and after records. */
static void test_spool_garbage(void)
{
	struct test_spool spool, bad;
	struct test_result res;
	unsigned char junk[1000];
	uint32_t x = 0x9e3779b9;

	test_begin("spool: garbage around records");
	for (size_t i = 0; i < sizeof(junk); i++) {
		x = x * 1103515245 + 12345;
		junk[i] = (unsigned char)(x >> 16);
	}
	/* "SBX" in the junk must not end the damaged stretch early. */
	memcpy(junk + 500, "SBX2", 4);
	memcpy(junk + 700, "SBX1", 4);
	test_spool_build(&spool, 0);
	memset(&bad, 0, sizeof(bad));
	memcpy(bad.messages, spool.messages, sizeof(spool.messages));
	test_append(&bad, junk, sizeof(junk));
	test_append(&bad, spool.data, spool.offsets[1]);
	test_append(&bad, junk, 37);
	test_append(&bad, spool.data + spool.offsets[1],
		    spool.size - spool.offsets[1]);
	test_append(&bad, junk, 100);
	test_assert(test_import(&bad, test_read, &res) == 0 &&
		    res.found == 0x7 && res.damaged == 3 && res.torn == 0 &&
		    res.contiguous &&
		    res.damaged_offset[0] == 0 &&
		    res.damaged_size[0] == sizeof(junk) &&
		    res.damaged_size[1] == 37 && res.damaged_size[2] == 100);
	free(bad.data);
	free(spool.data);
	test_end();
}

/* A longer damaged stretch than one search read, crossing its borders. */
static void test_spool_long_damage(void)
{
	struct test_spool spool, bad;
	struct test_result res;
	static const size_t lengths[] = { 65533, 65534, 65535, 65536, 65537,
					  200000 };

	test_begin("spool: long damaged stretch");
	test_spool_build(&spool, 0);
	for (unsigned int i = 0; i < N_ELEMENTS(lengths); i++) {
		unsigned char *junk = calloc(1, lengths[i]);

		memset(&bad, 0, sizeof(bad));
		memcpy(bad.messages, spool.messages, sizeof(spool.messages));
		test_append(&bad, junk, lengths[i]);
		test_append(&bad, spool.data, spool.size);
		test_assert_idx(test_import(&bad, test_read, &res) == 0 &&
				res.found == 0x7 && res.damaged == 1 &&
				res.damaged_size[0] == lengths[i] &&
				res.contiguous, i);
		free(bad.data);
		free(junk);
	}
	free(spool.data);
	test_end();
}

static void test_spool_read_error(void)
{
	struct test_spool spool;
	struct test_result res;
	struct kr_spool_scan *scan;
	struct kr_spool_item item;
	struct kr_error err;

	test_begin("spool: read errors");
	test_spool_build(&spool, 0);
	spool.fail_at = spool.offsets[1] + 10;
	test_assert(test_import(&spool, test_read_failing, &res) == -1);
	scan = kr_spool_scan_create(spool.size, test_read_failing, &spool);
	test_assert(kr_spool_scan_next(scan, &item, &err) == 1);
	test_assert(kr_spool_scan_next(scan, &item, &err) == -1 &&
		    err.kind == KR_ERR_IO && strstr(err.text, "Input/output") != NULL);
	kr_spool_scan_destroy(&scan);
	test_assert(scan == NULL);
	/* A file that shrinks while scanned. */
	scan = kr_spool_scan_create(spool.size + 100, test_read, &spool);
	test_assert(kr_spool_scan_next(scan, &item, &err) == 1);
	test_assert(kr_spool_scan_next(scan, &item, &err) == 1);
	test_assert(kr_spool_scan_next(scan, &item, &err) == 1);
	test_assert(kr_spool_scan_next(scan, &item, &err) == -1 &&
		    err.kind == KR_ERR_IO);
	kr_spool_scan_destroy(&scan);
	free(spool.data);
	test_end();
}

static void test_spool_formats(void)
{
	struct test_spool spool;
	struct test_result res;
	struct kr_spool_scan *scan;
	struct kr_spool_item item;
	struct kr_error err;
	unsigned int formats[TEST_RECORDS], n = 0;

	test_begin("spool: SBX1, SBX2 and SBX3 records in one spool");
	/* 0: SBX3 (written now), 1: SBX2 (rewritten), 2: SBX1 */
	test_spool_build(&spool, 0x4);
	test_make_v2(&spool, spool.offsets[1]);
	test_assert(memcmp(spool.data, "SBX3", 4) == 0);
	test_assert(test_import(&spool, test_read, &res) == 0);
	test_assert(res.found == 0x7 && res.damaged == 0 && res.contiguous);
	scan = kr_spool_scan_create(spool.size, test_read, &spool);
	while (kr_spool_scan_next(scan, &item, &err) > 0 && n < TEST_RECORDS)
		formats[n++] = item.format;
	kr_spool_scan_destroy(&scan);
	test_assert(n == 3 && formats[0] == KR_SPOOL_FORMAT_META &&
		    formats[1] == KR_SPOOL_FORMAT_V2 &&
		    formats[2] == KR_SPOOL_FORMAT_V1);
	/* A damaged byte in the SBX2 header: only that record is lost. */
	for (size_t at = spool.offsets[1]; at < spool.offsets[1] + 36; at++) {
		struct test_spool copy = test_spool_copy(&spool);

		copy.data[at] ^= 0x20;
		test_assert(test_import(&copy, test_read, &res) == 0);
		test_assert(test_middle_lost(&copy, &res, spool.offsets[1],
					     spool.offsets[2]));
		free(copy.data);
	}
	free(spool.data);
	test_end();
}

static void test_spool_meta_roundtrip(void)
{
	static const char *const keywords[] = { "$label1", "list", NULL };
	const struct kr_spool_meta meta = {
		.flags = 0x9, .folder = "Lists/ubuntu-devel",
		.keywords = keywords,
	};
	const struct kr_spool_meta inbox = { .folder = "INBOX" };
	const char *msg = "Subject: filed\r\n\r\nbody\r\n";
	unsigned char buf[256];
	struct kr_spool_meta got;
	size_t size, off;

	test_begin("spool: envelope round trip");
	size = kr_spool_meta_size(&meta);
	test_assert(size == 4 + 4 + 19 + 8 + 5);
	test_assert(kr_spool_meta_encode(buf, size - 1, &meta) == 0);
	test_assert(kr_spool_meta_encode(buf, sizeof(buf), &meta) == size);
	memcpy(buf + size, msg, strlen(msg));
	test_assert(kr_spool_meta_decode(buf, size + strlen(msg), &got,
					 &off) == 1);
	test_assert(off == size && got.flags == 0x9 &&
		    strcmp(got.folder, "Lists/ubuntu-devel") == 0 &&
		    got.keywords_count == 2 &&
		    strcmp(got.keyword_names, "$label1") == 0 &&
		    strcmp(got.keyword_names + 8, "list") == 0);
	/* No keywords, no message. */
	size = kr_spool_meta_encode(buf, sizeof(buf), &inbox);
	test_assert(size == 4 + 4 + 6);
	test_assert(kr_spool_meta_decode(buf, size, &got, &off) == 1 &&
		    off == size && got.keywords_count == 0 &&
		    got.keyword_names == NULL &&
		    strcmp(got.folder, "INBOX") == 0);
	test_end();
}

static void test_spool_meta_malformed(void)
{
	static const char *const empty_kw[] = { "", NULL };
	static const char *const ctl_kw[] = { "a\nb", NULL };
	const struct kr_spool_meta meta = { .flags = 1, .folder = "Lists" };
	const struct kr_spool_meta bad[] = {
		{ .folder = NULL },
		{ .folder = "" },
		{ .folder = "a\tb" },
		{ .folder = "x", .keywords = empty_kw },
		{ .folder = "x", .keywords = ctl_kw },
	};
	unsigned char buf[64], copy[64];
	struct kr_spool_meta got;
	char *big;
	size_t size, off;

	test_begin("spool: malformed envelopes");
	for (unsigned int i = 0; i < N_ELEMENTS(bad); i++) {
		test_assert_idx(kr_spool_meta_size(&bad[i]) == 0, i);
		test_assert_idx(kr_spool_meta_encode(buf, sizeof(buf),
						     &bad[i]) == 0, i);
	}
	big = malloc(KR_SPOOL_META_MAX + 1);
	memset(big, 'f', KR_SPOOL_META_MAX);
	big[KR_SPOOL_META_MAX] = '\0';
	test_assert(kr_spool_meta_size(&(struct kr_spool_meta){
		.folder = big }) == 0);
	free(big);
	size = kr_spool_meta_encode(buf, sizeof(buf), &meta);
	test_assert(size == 14);
	/* Cut anywhere inside the envelope. */
	for (size_t len = 0; len < size; len++)
		test_assert_idx(kr_spool_meta_decode(buf, len, &got, &off) == 0,
				len);
	/* Every length field but the right one. */
	for (uint32_t m = 0; m < 64; m++) {
		memcpy(copy, buf, size);
		memset(copy + size, 'x', sizeof(copy) - size);
		copy[0] = (unsigned char)m;
		test_assert_idx(kr_spool_meta_decode(copy, sizeof(copy), &got,
						     &off) == (m == 10 ? 1 : 0),
				m);
	}
	/* A name without its NUL, an empty folder, a control character. */
	memcpy(copy, buf, size);
	copy[size - 1] = 's';
	test_assert(kr_spool_meta_decode(copy, size, &got, &off) == 0);
	memcpy(copy, buf, size);
	copy[8] = '\0';
	test_assert(kr_spool_meta_decode(copy, size, &got, &off) == 0);
	memcpy(copy, buf, size);
	copy[9] = '\r';
	test_assert(kr_spool_meta_decode(copy, size, &got, &off) == 0);
	/* An M past KR_SPOOL_META_MAX. */
	memcpy(copy, buf, size);
	copy[2] = 0x01;
	copy[1] = 0x00;
	copy[0] = 0x01;
	test_assert(kr_spool_meta_decode(copy, sizeof(copy), &got, &off) == 0);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_spool_intact,
		test_spool_damage_every_byte,
		test_spool_damage_shift,
		test_spool_damage_v1,
		test_spool_damage_last,
		test_spool_torn,
		test_spool_garbage,
		test_spool_long_damage,
		test_spool_read_error,
		test_spool_formats,
		test_spool_meta_roundtrip,
		test_spool_meta_malformed,
		NULL
	};

	crypto_box_keypair(test_keys.pk, test_keys.sk);
	return test_run(cases);
}
