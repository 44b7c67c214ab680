/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef SQLBOX_KEYWORDS_H
#define SQLBOX_KEYWORDS_H

/* Keyword lists, Dovecot-free (unit-tested by test-keywords.c). */

#include <stdbool.h>

/* Whether the NULL-terminated lists a and b hold the same keyword names,
   in any order: the sync compares what SQLite's group_concat() gives
   (no order promised) with the index's names.  Names compare byte for
   byte, as the index keeps them; a name listed twice counts once. */
bool sqlbox_keywords_equal(const char *const *a, const char *const *b);

#endif
