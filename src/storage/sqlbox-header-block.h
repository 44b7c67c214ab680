/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef SQLBOX_HEADER_BLOCK_H
#define SQLBOX_HEADER_BLOCK_H

/* Header blocks of the cache rows, Dovecot-free (unit-tested by
   test-header-block.c). */

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

#endif
