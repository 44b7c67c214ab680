/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The frames a legacy WAL recovery has read, by page number.

   sqlite3mc's legacy WAL (mc_legacy_wal=1, and every WAL of sqlite3mc
   1.2.5 and older) checksums a frame over the page as the writer's pager
   held it: the plaintext, but with the nonce and tag of whichever copy of
   the page that pager had last read, which may be any earlier frame of
   the page, however far back (cvfs_wal_legacy_match()). This index keeps
   every frame's stored nonce and tag so that all of them can be tried,
   newest first, without reading the WAL again. */

#include <string.h>

#include <sodium.h>

#include "cryptvfs-private.h"

#define CVFS_LEGACY_MIN_FRAMES 64
#define CVFS_LEGACY_MIN_SLOTS 64

static uint32_t cvfs_legacy_slot(const struct cvfs_legacy_index *idx,
				 uint32_t pgno)
{
	/* Knuth's multiplicative hash; slots is a power of two. */
	uint32_t i = (pgno * 2654435761u) & (idx->slots - 1);

	while (idx->keys[i] != 0 && idx->keys[i] != pgno)
		i = (i + 1) & (idx->slots - 1);
	return i;
}

uint32_t cvfs_legacy_newest(const struct cvfs_legacy_index *idx,
			    uint32_t pgno)
{
	if (idx->slots == 0 || pgno == 0)
		return 0;
	return idx->heads[cvfs_legacy_slot(idx, pgno)];
}

void cvfs_legacy_reset(struct cvfs_legacy_index *idx)
{
	if (idx->count > 0)
		sodium_memzero(idx->frames, idx->count * sizeof(*idx->frames));
	idx->count = 0;
	if (idx->slots > 0) {
		memset(idx->keys, 0, idx->slots * sizeof(*idx->keys));
		memset(idx->heads, 0, idx->slots * sizeof(*idx->heads));
	}
	idx->used = 0;
}

void cvfs_legacy_free(struct cvfs_legacy_index *idx)
{
	cvfs_legacy_reset(idx);
	sqlite3_free(idx->frames);
	sqlite3_free(idx->keys);
	sqlite3_free(idx->heads);
	memset(idx, 0, sizeof(*idx));
}

void cvfs_legacy_truncate(struct cvfs_legacy_index *idx, uint32_t frame)
{
	if (frame <= 1) {
		cvfs_legacy_reset(idx);
		return;
	}
	/* Undo the pushes newest first: each one's prev was the head. */
	while (idx->count >= frame) {
		struct cvfs_legacy_frame *fr = &idx->frames[idx->count - 1];

		if (fr->pgno != 0)
			idx->heads[cvfs_legacy_slot(idx, fr->pgno)] = fr->prev;
		sodium_memzero(fr, sizeof(*fr));
		idx->count--;
	}
}

/* Doubles the table (or creates it) and re-inserts every page's head. */
static int cvfs_legacy_grow_slots(struct cvfs_legacy_index *idx)
{
	uint32_t old_slots = idx->slots, *old_keys = idx->keys;
	uint32_t *old_heads = idx->heads;
	uint32_t slots = old_slots == 0 ? CVFS_LEGACY_MIN_SLOTS :
		old_slots * 2;

	if (slots < old_slots)
		return -1;
	idx->keys = sqlite3_malloc64((sqlite3_uint64)slots * sizeof(uint32_t));
	idx->heads = sqlite3_malloc64((sqlite3_uint64)slots *
				      sizeof(uint32_t));
	if (idx->keys == NULL || idx->heads == NULL) {
		sqlite3_free(idx->keys);
		sqlite3_free(idx->heads);
		idx->keys = old_keys;
		idx->heads = old_heads;
		return -1;
	}
	memset(idx->keys, 0, slots * sizeof(uint32_t));
	memset(idx->heads, 0, slots * sizeof(uint32_t));
	idx->slots = slots;
	for (uint32_t i = 0; i < old_slots; i++) {
		if (old_keys[i] != 0) {
			uint32_t j = cvfs_legacy_slot(idx, old_keys[i]);

			idx->keys[j] = old_keys[i];
			idx->heads[j] = old_heads[i];
		}
	}
	sqlite3_free(old_keys);
	sqlite3_free(old_heads);
	return 0;
}

int cvfs_legacy_push(struct cvfs_legacy_index *idx, uint32_t pgno,
		     const unsigned char reserved[CVFS_RESERVED_BYTES])
{
	struct cvfs_legacy_frame *fr;
	uint32_t slot;

	if (idx->count == UINT32_MAX)
		return -1;
	if (idx->count == idx->alloc) {
		uint32_t alloc = idx->alloc == 0 ? CVFS_LEGACY_MIN_FRAMES :
			idx->alloc * 2;
		struct cvfs_legacy_frame *frames;

		if (alloc < idx->alloc)
			alloc = UINT32_MAX;
		frames = sqlite3_realloc64(idx->frames, (sqlite3_uint64)alloc *
					   sizeof(*frames));
		if (frames == NULL)
			return -1;
		idx->frames = frames;
		idx->alloc = alloc;
	}
	fr = &idx->frames[idx->count];
	fr->pgno = pgno;
	fr->prev = 0;
	memcpy(fr->reserved, reserved, CVFS_RESERVED_BYTES);
	if (pgno == 0) {
		/* Not a valid frame; kept only to stay numbered. */
		idx->count++;
		return 0;
	}
	/* At most half full. */
	if ((idx->used + 1) * 2 > idx->slots &&
	    cvfs_legacy_grow_slots(idx) < 0)
		return -1;
	slot = cvfs_legacy_slot(idx, pgno);
	if (idx->keys[slot] == 0) {
		idx->keys[slot] = pgno;
		idx->used++;
	}
	fr->prev = idx->heads[slot];
	idx->count++;
	idx->heads[slot] = idx->count;
	return 0;
}
