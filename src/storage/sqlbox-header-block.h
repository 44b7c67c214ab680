/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef SQLBOX_HEADER_BLOCK_H
#define SQLBOX_HEADER_BLOCK_H

/* Header blocks of the cache rows, Dovecot-free (unit-tested by
   test-header-block.c). */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The header fields of a message's header block hdr[0..size) whose name
   is one of names[0..count) (ASCII case ignored), in the block's order,
   each with its continuation lines, then the empty line ending a header:
   written to out, which has room for size + 2 bytes.  Returns the bytes
   written.

   This is what Dovecot's header filter (istream-header-filter with
   HEADER_FILTER_INCLUDE | HEADER_FILTER_ADD_MISSING_EOH |
   HEADER_FILTER_HIDE_BODY) gives for a plain block, found by looking at
   each line's start only: it parses no field.  A block that is not plain
   gives -1, and the caller takes Dovecot's filter: a line not ending in
   CRLF (the last one included), a CR or NUL inside a line, a line with
   no colon, an empty or overlong name or white space before the colon,
   or a continuation line first. */
ssize_t sqlbox_header_block_filter(const unsigned char *hdr, size_t size,
				   const char *const *names,
				   unsigned int count, unsigned char *out);

/* The header fields kept apart from the header block, in table
   body_fields (schema version 9): what SEARCH on addresses, subjects and
   list ids reads, a few hundred bytes of a block of about 1.5 KB.  A
   block's fields are sqlbox_header_block_filter() of the block by these
   names (NULL when it gives -1); filtering them again by some of these
   names gives what filtering the block would (test-header-block.c).
   Changing the list takes a schema version that fills the table
   again. */
#define SQLBOX_SEARCH_FIELDS \
	"From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Subject", \
	"Message-ID", "In-Reply-To", "List-Id"
extern const char *const sqlbox_search_fields[];
extern const unsigned int sqlbox_search_fields_count;

/* True when each of names[0..count) is one of SQLBOX_SEARCH_FIELDS
   (ASCII case ignored). */
bool sqlbox_header_names_searchable(const char *const *names,
				    unsigned int count);

#endif
