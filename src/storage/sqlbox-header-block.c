/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "sqlbox-header-block.h"

#include <stdbool.h>
#include <string.h>

/* Under Dovecot's MESSAGE_HEADER_NAME_MAX_LEN (1000) */
#define SQLBOX_HEADER_NAME_MAX_LEN 998

static unsigned char sqlbox_ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool
sqlbox_header_name_wanted(const unsigned char *name, size_t len,
			  const char *const *names, unsigned int count)
{
	for (unsigned int i = 0; i < count; i++) {
		const unsigned char *want = (const unsigned char *)names[i];
		size_t j;

		if (sqlbox_ascii_lower(want[0]) != sqlbox_ascii_lower(name[0]))
			continue;
		for (j = 1; j < len && want[j] != '\0'; j++) {
			if (sqlbox_ascii_lower(want[j]) !=
			    sqlbox_ascii_lower(name[j]))
				break;
		}
		if (j == len && want[j] == '\0')
			return true;
	}
	return false;
}

const char *const sqlbox_search_fields[] = { SQLBOX_SEARCH_FIELDS };
const unsigned int sqlbox_search_fields_count =
	sizeof(sqlbox_search_fields) / sizeof(sqlbox_search_fields[0]);

bool sqlbox_header_names_searchable(const char *const *names,
				    unsigned int count)
{
	for (unsigned int i = 0; i < count; i++) {
		size_t len = strlen(names[i]);

		if (len == 0 ||
		    !sqlbox_header_name_wanted((const unsigned char *)names[i],
					       len, sqlbox_search_fields,
					       sqlbox_search_fields_count))
			return false;
	}
	return true;
}

ssize_t sqlbox_header_block_filter(const unsigned char *hdr, size_t size,
				   const char *const *names,
				   unsigned int count, unsigned char *out)
{
	const unsigned char *p = hdr, *end = hdr + size, *eol, *colon;
	size_t out_len = 0, len, name_len;
	bool matched = false, first = true;

	while (p < end) {
		eol = memchr(p, '\n', end - p);
		if (eol == NULL || eol == p || eol[-1] != '\r')
			return -1;
		/* the line without its CRLF */
		len = eol - 1 - p;
		if (len == 0)
			break; /* the end of the header */
		if (memchr(p, '\r', len) != NULL || memchr(p, '\0', len) != NULL)
			return -1;
		if (*p == ' ' || *p == '\t') {
			if (first)
				return -1;
		} else {
			colon = memchr(p, ':', len);
			if (colon == NULL || colon == p ||
			    colon[-1] == ' ' || colon[-1] == '\t')
				return -1;
			name_len = colon - p;
			/* Dovecot takes a longer name as a value */
			if (name_len > SQLBOX_HEADER_NAME_MAX_LEN)
				return -1;
			matched = sqlbox_header_name_wanted(p, name_len,
							    names, count);
		}
		if (matched) {
			memcpy(out + out_len, p, len + 2);
			out_len += len + 2;
		}
		first = false;
		p = eol + 1;
	}
	out[out_len++] = '\r';
	out[out_len++] = '\n';
	return out_len;
}
