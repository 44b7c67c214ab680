/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "sqlbox-fts-structure.h"

#include <string.h>

/* SQLite's varint (as sqlite3Fts5GetVarint): big-endian groups of 7 bits
   with the high bit set on all but the last; a 9th byte gives 8 bits. */
static bool
sqlbox_fts_varint(const unsigned char *data, size_t size, size_t *pos,
		  uint64_t *value_r)
{
	uint64_t value = 0;

	for (unsigned int i = 0; i < 9; i++) {
		unsigned char c;

		if (*pos >= size)
			return false;
		c = data[(*pos)++];
		if (i == 8) {
			*value_r = (value << 8) | c;
			return true;
		}
		value = (value << 7) | (c & 0x7f);
		if ((c & 0x80) == 0) {
			*value_r = value;
			return true;
		}
	}
	return false;
}

bool sqlbox_fts_structure_leaf_pages(const unsigned char *data, size_t size,
				     uint64_t *pages_r, uint64_t *segments_r)
{
	static const unsigned char v2_marker[4] = { 0xff, 0x00, 0x00, 0x01 };
	uint64_t levels, segments, counter, pages = 0, seen = 0;
	size_t pos = 4;		/* the configuration cookie */
	bool v2 = false;

	if (size < pos)
		return false;
	if (size >= pos + sizeof(v2_marker) &&
	    memcmp(data + pos, v2_marker, sizeof(v2_marker)) == 0) {
		v2 = true;
		pos += sizeof(v2_marker);
	}
	if (!sqlbox_fts_varint(data, size, &pos, &levels) ||
	    !sqlbox_fts_varint(data, size, &pos, &segments) ||
	    !sqlbox_fts_varint(data, size, &pos, &counter))
		return false;
	/* FTS5_MAX_LEVEL 64, FTS5_MAX_SEGMENT 2000 */
	if (levels > 64 || segments > 2000)
		return false;
	for (uint64_t lvl = 0; lvl < levels; lvl++) {
		uint64_t merge, total;

		if (!sqlbox_fts_varint(data, size, &pos, &merge) ||
		    !sqlbox_fts_varint(data, size, &pos, &total) ||
		    total > segments - seen || merge > total)
			return false;
		for (uint64_t seg = 0; seg < total; seg++) {
			uint64_t id, first, last, skip;

			if (!sqlbox_fts_varint(data, size, &pos, &id) ||
			    !sqlbox_fts_varint(data, size, &pos, &first) ||
			    !sqlbox_fts_varint(data, size, &pos, &last) ||
			    id == 0 || first == 0 || last + 1 < first)
				return false;
			/* v2: two origins, tombstone pages and entries, and
			   entries */
			for (unsigned int i = 0; v2 && i < 5; i++) {
				if (!sqlbox_fts_varint(data, size, &pos,
						       &skip))
					return false;
			}
			pages += last + 1 - first;
		}
		seen += total;
	}
	if (seen != segments)
		return false;
	*pages_r = pages;
	*segments_r = segments;
	return true;
}

bool sqlbox_fts_averages_rows(const unsigned char *data, size_t size,
			      uint64_t *rows_r)
{
	uint64_t rows, tokens;
	size_t pos = 0;

	if (size == 0) {
		*rows_r = 0;
		return true;
	}
	/* the rows, then at least the first column's tokens */
	if (!sqlbox_fts_varint(data, size, &pos, &rows) ||
	    !sqlbox_fts_varint(data, size, &pos, &tokens) ||
	    rows > INT64_MAX)
		return false;
	*rows_r = rows;
	return true;
}
