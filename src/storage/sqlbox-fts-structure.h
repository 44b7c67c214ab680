/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef SQLBOX_FTS_STRUCTURE_H
#define SQLBOX_FTS_STRUCTURE_H

/* FTS5's structure and averages records, Dovecot-free (unit-tested,
   against SQLite's own FTS5, by test-fts-structure.c). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The rowids of the averages and the structure records in an FTS5
   table's <name>_data. */
#define SQLBOX_FTS_AVERAGES_ROWID 1
#define SQLBOX_FTS_STRUCTURE_ROWID 10
/* FTS5's default leaf page size (its 'pgsz' option). */
#define SQLBOX_FTS_DEFAULT_PGSZ 4050

/* Reads the structure record (SQLite's fts5_index.c,
   fts5StructureDecode(): a 4-byte cookie, then varints: levels,
   segments, write counter, and per level its merge state and segments,
   each with its id and its first and last leaf page; SQLite 3.45 and
   later mark a second version that adds five fields per segment) and
   sums the leaf pages of every segment.  Each leaf page is a row of at
   most pgsz bytes, so pages times pgsz bounds the index's size to within
   a page per segment.  Returns false if the record does not parse. */
bool sqlbox_fts_structure_leaf_pages(const unsigned char *data, size_t size,
				     uint64_t *pages_r, uint64_t *segments_r);

/* Reads the rows of the index from its averages record (SQLite's
   fts5_storage.c, fts5StorageSaveTotals(): a varint of the rows, then
   one of the tokens of each column; empty while the index has never
   held a row), as FTS5 wrote it at its last commit: count(*) of the
   table's <name>_docsize then, without reading that table.  An index
   whose rows are never deleted one by one (a contentless one: sqlbox
   only ever empties it) counts every row ever added since it was last
   emptied.  Returns false if the record does not parse. */
bool sqlbox_fts_averages_rows(const unsigned char *data, size_t size,
			      uint64_t *rows_r);

#endif
