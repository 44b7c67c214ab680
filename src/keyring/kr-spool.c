/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "keyring-private.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The spool's record framing (format in keyring.h).  A reader walks the
   records by their lengths; where a header is not one (bad magic, check or
   length) or a record does not open, it searches forward for the next
   offset that holds a well-framed header and reports the bytes in between
   as damaged.  The search needs no key: the magic says where to look, the
   check (or, for a first-format record, the AEAD of kr_unseal() through
   kr_spool_scan_reject()) says whether it is a record. */

#define KR_SPOOL_MAGIC "SBX3"
#define KR_SPOOL_MAGIC_V2 "SBX2"
#define KR_SPOOL_MAGIC_V1 "SBX1"
#define KR_SPOOL_MAGIC_BYTES 4
/* Both formats begin with the same three bytes. */
#define KR_SPOOL_MAGIC_PREFIX "SBX"
#define KR_SPOOL_MAGIC_PREFIX_BYTES 3
#define KR_SPOOL_ID_OFFSET KR_SPOOL_MAGIC_BYTES
#define KR_SPOOL_LEN_OFFSET (KR_SPOOL_ID_OFFSET + KR_SPOOL_ID_BYTES)
#define KR_SPOOL_CHECK_OFFSET (KR_SPOOL_LEN_OFFSET + 8)
#define KR_SPOOL_CHECK_BYTES 8
#define KR_SPOOL_V1_HEADER_BYTES KR_SPOOL_CHECK_OFFSET
/* The envelope of a format-3 plaintext: M, then flags. */
#define KR_SPOOL_META_LEN_BYTES 4
#define KR_SPOOL_META_FLAGS_BYTES 4
/* How much the resynchronising search reads at a time. */
#define KR_SPOOL_SEARCH_BYTES 65536

enum kr_spool_parse {
	KR_SPOOL_PARSE_BAD,
	KR_SPOOL_PARSE_RECORD,
	KR_SPOOL_PARSE_TORN,
};

struct kr_spool_scan {
	kr_spool_read_func *read;
	void *context;
	uint64_t size, pos;
	/* Offset of the RECORD last returned (for kr_spool_scan_reject). */
	uint64_t last_offset;
	unsigned char *buf;

	bool last_is_record:1;
	bool rejected:1;
};

static uint32_t kr_spool_le32_get(const unsigned char *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
		((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void kr_spool_le32_put(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++, v >>= 8)
		p[i] = v & 0xff;
}

static uint64_t kr_spool_le64_get(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void kr_spool_le64_put(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = v & 0xff;
}

static void
kr_spool_check(unsigned char check_r[KR_SPOOL_CHECK_BYTES],
	       const unsigned char hdr[KR_SPOOL_HEADER_BYTES])
{
	unsigned char hash[crypto_generichash_BYTES_MIN];

	crypto_generichash(hash, sizeof(hash), hdr, KR_SPOOL_CHECK_OFFSET,
			   NULL, 0);
	memcpy(check_r, hash, KR_SPOOL_CHECK_BYTES);
}

void kr_spool_header_init(unsigned char hdr_r[KR_SPOOL_HEADER_BYTES],
			  const unsigned char id[KR_SPOOL_ID_BYTES],
			  uint64_t sealed_len)
{
	assert(sealed_len <= KR_SPOOL_SEALED_MAX);
	(void)kr_sodium_init(NULL);
	memcpy(hdr_r, KR_SPOOL_MAGIC, KR_SPOOL_MAGIC_BYTES);
	memcpy(hdr_r + KR_SPOOL_ID_OFFSET, id, KR_SPOOL_ID_BYTES);
	kr_spool_le64_put(hdr_r + KR_SPOOL_LEN_OFFSET, sealed_len);
	kr_spool_check(hdr_r + KR_SPOOL_CHECK_OFFSET, hdr_r);
}

struct kr_spool_scan *
kr_spool_scan_create(uint64_t size, kr_spool_read_func *read_fn,
		     void *context)
{
	struct kr_spool_scan *scan;

	if (kr_sodium_init(NULL) < 0)
		return NULL;
	scan = calloc(1, sizeof(*scan));
	if (scan == NULL)
		return NULL;
	scan->buf = malloc(KR_SPOOL_SEARCH_BYTES);
	if (scan->buf == NULL) {
		free(scan);
		return NULL;
	}
	scan->read = read_fn;
	scan->context = context;
	scan->size = size;
	return scan;
}

void kr_spool_scan_destroy(struct kr_spool_scan **_scan)
{
	struct kr_spool_scan *scan = *_scan;

	if (scan == NULL)
		return;
	*_scan = NULL;
	free(scan->buf);
	free(scan);
}

/* Reads exactly size bytes at offset (the caller keeps within the size
   the scan was created with). */
static int kr_spool_read(struct kr_spool_scan *scan, unsigned char *buf,
			 size_t size, uint64_t offset, struct kr_error *err)
{
	size_t done = 0;
	ssize_t ret;

	while (done < size) {
		ret = scan->read(scan->context, buf + done, size - done,
				 offset + done);
		if (ret < 0) {
			kr_error_set(err, KR_ERR_IO,
				     "spool read at offset %llu failed: %s",
				     (unsigned long long)(offset + done),
				     strerror(errno));
			return -1;
		}
		if (ret == 0) {
			kr_error_set(err, KR_ERR_IO, "spool shrank below "
				     "%llu bytes while it was read",
				     (unsigned long long)(offset + size));
			return -1;
		}
		done += (size_t)ret;
	}
	return 0;
}

/* What the bytes at offset are; fills item for a RECORD. */
static int kr_spool_parse(struct kr_spool_scan *scan, uint64_t offset,
			  struct kr_spool_item *item, struct kr_error *err)
{
	unsigned char hdr[KR_SPOOL_HEADER_BYTES];
	unsigned char check[KR_SPOOL_CHECK_BYTES];
	uint64_t avail = scan->size - offset, len, hdr_len;
	unsigned int format;
	size_t n = avail < sizeof(hdr) ? (size_t)avail : sizeof(hdr);

	if (kr_spool_read(scan, hdr, n, offset, err) < 0)
		return -1;
	if (n < KR_SPOOL_MAGIC_BYTES) {
		/* An append cut short inside the magic. */
		return memcmp(hdr, KR_SPOOL_MAGIC, n) == 0 ?
			KR_SPOOL_PARSE_TORN : KR_SPOOL_PARSE_BAD;
	}
	if (memcmp(hdr, KR_SPOOL_MAGIC, KR_SPOOL_MAGIC_BYTES) == 0 ||
	    memcmp(hdr, KR_SPOOL_MAGIC_V2, KR_SPOOL_MAGIC_BYTES) == 0) {
		format = hdr[KR_SPOOL_MAGIC_BYTES - 1] == '3' ?
			KR_SPOOL_FORMAT_META : KR_SPOOL_FORMAT_V2;
		if (avail < KR_SPOOL_HEADER_BYTES)
			return KR_SPOOL_PARSE_TORN;
		kr_spool_check(check, hdr);
		if (memcmp(check, hdr + KR_SPOOL_CHECK_OFFSET,
			   KR_SPOOL_CHECK_BYTES) != 0)
			return KR_SPOOL_PARSE_BAD;
		hdr_len = KR_SPOOL_HEADER_BYTES;
		len = kr_spool_le64_get(hdr + KR_SPOOL_LEN_OFFSET);
		if (len > KR_SPOOL_SEALED_MAX)
			return KR_SPOOL_PARSE_BAD;
		/* A checked header whose record runs past the end: written
		   by an append that was cut short. */
		if (len > avail - hdr_len)
			return KR_SPOOL_PARSE_TORN;
	} else if (memcmp(hdr, KR_SPOOL_MAGIC_V1,
			  KR_SPOOL_MAGIC_BYTES) == 0) {
		/* No check to tell a torn first-format record from a damaged
		   length: anything that does not fit is damaged. */
		if (avail < KR_SPOOL_V1_HEADER_BYTES)
			return KR_SPOOL_PARSE_BAD;
		format = KR_SPOOL_FORMAT_V1;
		hdr_len = KR_SPOOL_V1_HEADER_BYTES;
		len = kr_spool_le64_get(hdr + KR_SPOOL_LEN_OFFSET);
		if (len > KR_SPOOL_SEALED_MAX || len > avail - hdr_len)
			return KR_SPOOL_PARSE_BAD;
	} else {
		return KR_SPOOL_PARSE_BAD;
	}
	memset(item, 0, sizeof(*item));
	item->kind = KR_SPOOL_ITEM_RECORD;
	item->format = format;
	item->offset = offset;
	item->size = hdr_len + len;
	memcpy(item->id, hdr + KR_SPOOL_ID_OFFSET, KR_SPOOL_ID_BYTES);
	item->sealed_offset = offset + hdr_len;
	item->sealed_len = len;
	return KR_SPOOL_PARSE_RECORD;
}

/* The first offset >= from where a record or a torn tail begins (the end
   of the file if none); -1 on a read error. */
static int kr_spool_resync(struct kr_spool_scan *scan, uint64_t from,
			   uint64_t *offset_r, struct kr_error *err)
{
	struct kr_spool_item candidate;
	uint64_t off = from;
	int ret;

	while (off < scan->size) {
		size_t n = scan->size - off < KR_SPOOL_SEARCH_BYTES ?
			(size_t)(scan->size - off) : KR_SPOOL_SEARCH_BYTES;
		const unsigned char *p = scan->buf, *hit;

		if (kr_spool_read(scan, scan->buf, n, off, err) < 0)
			return -1;
		while ((hit = memchr(p, KR_SPOOL_MAGIC_PREFIX[0],
				     n - (size_t)(p - scan->buf))) != NULL) {
			uint64_t at = off + (uint64_t)(hit - scan->buf);
			size_t left = n - (size_t)(hit - scan->buf);

			p = hit + 1;
			/* The rest of the prefix, as far as this read has
			   it (parse decides at a read's end). */
			if (memcmp(hit, KR_SPOOL_MAGIC_PREFIX,
				   left < KR_SPOOL_MAGIC_PREFIX_BYTES ? left :
				   KR_SPOOL_MAGIC_PREFIX_BYTES) != 0)
				continue;
			ret = kr_spool_parse(scan, at, &candidate, err);
			if (ret < 0)
				return -1;
			if (ret != KR_SPOOL_PARSE_BAD) {
				*offset_r = at;
				return 0;
			}
		}
		if (off + n >= scan->size)
			break;
		/* Overlap: a magic may straddle the two reads. */
		off += n - (KR_SPOOL_MAGIC_PREFIX_BYTES - 1);
	}
	*offset_r = scan->size;
	return 0;
}

int kr_spool_scan_next(struct kr_spool_scan *scan,
		       struct kr_spool_item *item_r, struct kr_error *err)
{
	enum kr_spool_damage damage = KR_SPOOL_DAMAGE_FRAMING;
	uint64_t start = scan->pos, end;
	int ret;

	kr_error_clear(err);
	scan->last_is_record = false;
	if (scan->pos >= scan->size)
		return 0;
	if (scan->rejected) {
		scan->rejected = false;
		damage = KR_SPOOL_DAMAGE_SEALED;
		ret = KR_SPOOL_PARSE_BAD;
	} else {
		ret = kr_spool_parse(scan, start, item_r, err);
		if (ret < 0)
			return -1;
	}
	switch (ret) {
	case KR_SPOOL_PARSE_RECORD:
		scan->last_offset = start;
		scan->last_is_record = true;
		scan->pos = start + item_r->size;
		return 1;
	case KR_SPOOL_PARSE_TORN:
		memset(item_r, 0, sizeof(*item_r));
		item_r->kind = KR_SPOOL_ITEM_TORN;
		item_r->offset = start;
		item_r->size = scan->size - start;
		scan->pos = scan->size;
		return 1;
	default:
		break;
	}
	if (kr_spool_resync(scan, start + 1, &end, err) < 0)
		return -1;
	memset(item_r, 0, sizeof(*item_r));
	item_r->kind = KR_SPOOL_ITEM_DAMAGED;
	item_r->offset = start;
	item_r->size = end - start;
	item_r->damage = damage;
	scan->pos = end;
	return 1;
}

void kr_spool_scan_reject(struct kr_spool_scan *scan)
{
	assert(scan->last_is_record);
	scan->last_is_record = false;
	scan->pos = scan->last_offset;
	scan->rejected = true;
}

/* ---- the envelope of a format-3 plaintext ---- */

/* A name the envelope may hold: non-empty, no control character. */
static bool kr_spool_meta_name_ok(const char *name, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return false;
	}
	return true;
}

size_t kr_spool_meta_size(const struct kr_spool_meta *meta)
{
	size_t size = KR_SPOOL_META_LEN_BYTES + KR_SPOOL_META_FLAGS_BYTES;
	size_t len;

	if (meta->folder == NULL)
		return 0;
	len = strlen(meta->folder);
	if (!kr_spool_meta_name_ok(meta->folder, len))
		return 0;
	size += len + 1;
	for (unsigned int i = 0; meta->keywords != NULL &&
	     meta->keywords[i] != NULL; i++) {
		len = strlen(meta->keywords[i]);
		if (!kr_spool_meta_name_ok(meta->keywords[i], len) ||
		    len > KR_SPOOL_META_MAX)
			return 0;
		size += len + 1;
		if (size - KR_SPOOL_META_LEN_BYTES > KR_SPOOL_META_MAX)
			return 0;
	}
	return size - KR_SPOOL_META_LEN_BYTES > KR_SPOOL_META_MAX ? 0 : size;
}

size_t kr_spool_meta_encode(unsigned char *out, size_t out_size,
			    const struct kr_spool_meta *meta)
{
	size_t size = kr_spool_meta_size(meta), pos, len;

	if (size == 0 || out_size < size)
		return 0;
	kr_spool_le32_put(out, (uint32_t)(size - KR_SPOOL_META_LEN_BYTES));
	kr_spool_le32_put(out + KR_SPOOL_META_LEN_BYTES, meta->flags);
	pos = KR_SPOOL_META_LEN_BYTES + KR_SPOOL_META_FLAGS_BYTES;
	len = strlen(meta->folder) + 1;
	memcpy(out + pos, meta->folder, len);
	pos += len;
	for (unsigned int i = 0; meta->keywords != NULL &&
	     meta->keywords[i] != NULL; i++) {
		len = strlen(meta->keywords[i]) + 1;
		memcpy(out + pos, meta->keywords[i], len);
		pos += len;
	}
	assert(pos == size);
	return size;
}

int kr_spool_meta_decode(const unsigned char *plain, size_t plain_len,
			 struct kr_spool_meta *meta_r,
			 size_t *message_offset_r)
{
	const char *names, *p, *end, *nul;
	uint32_t m;

	memset(meta_r, 0, sizeof(*meta_r));
	if (plain_len < KR_SPOOL_META_LEN_BYTES)
		return 0;
	m = kr_spool_le32_get(plain);
	if (m < KR_SPOOL_META_FLAGS_BYTES + 2 || m > KR_SPOOL_META_MAX ||
	    m > plain_len - KR_SPOOL_META_LEN_BYTES)
		return 0;
	meta_r->flags = kr_spool_le32_get(plain + KR_SPOOL_META_LEN_BYTES);
	names = (const char *)plain + KR_SPOOL_META_LEN_BYTES +
		KR_SPOOL_META_FLAGS_BYTES;
	end = (const char *)plain + KR_SPOOL_META_LEN_BYTES + m;
	/* Every name ends with a NUL inside the envelope. */
	if (end[-1] != '\0')
		return 0;
	for (p = names; p < end; p = nul + 1) {
		nul = memchr(p, '\0', (size_t)(end - p));
		assert(nul != NULL);
		if (!kr_spool_meta_name_ok(p, (size_t)(nul - p)))
			return 0;
		if (p == names)
			meta_r->folder = p;
		else {
			if (meta_r->keywords_count == 0)
				meta_r->keyword_names = p;
			meta_r->keywords_count++;
		}
	}
	*message_offset_r = KR_SPOOL_META_LEN_BYTES + m;
	return 1;
}
