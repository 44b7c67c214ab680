/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "sqlbox-header-block.h"

#include <stddef.h>

/* sqlbox_header_block_filter(): the wanted fields of a cache row's header
   block, as Dovecot's header filter gives them for a plain block, and -1
   (Dovecot's filter then) for anything else.  The same answers as
   maildir's for real blocks are checked by
   tests/integration/test_sqlbox_cache.py. */

#define N_ELEMENTS(arr) (sizeof(arr) / sizeof((arr)[0]))

static const char *const from_subject[] = { "From", "subject" };
static const char *const x_folded[] = { "X-FOLDED" };
static const char *const subj[] = { "Subj" };
static const char *const subject_x[] = { "Subjectx" };

static void test_header_block_plain(void)
{
	static const struct {
		const char *hdr;
		const char *const *names;
		unsigned int count;
		const char *want;
	} tests[] = {
		/* in the block's order, case ignored, with the empty line */
		{ "Subject: s\r\nTo: t\r\nfrom: f\r\n\r\n", from_subject, 2,
		  "Subject: s\r\nfrom: f\r\n\r\n" },
		/* continuation lines go with their field */
		{ "X-Folded: a\r\n\tb\r\n  c\r\nTo: t\r\n \r\n\r\n",
		  x_folded, 1, "X-Folded: a\r\n\tb\r\n  c\r\n\r\n" },
		{ "To: t\r\n\tu\r\nX-Folded: a\r\n\r\n", x_folded, 1,
		  "X-Folded: a\r\n\r\n" },
		/* whole names only */
		{ "Subject: s\r\n\r\n", subj, 1, "\r\n" },
		{ "Subject: s\r\n\r\n", subject_x, 1, "\r\n" },
		{ "Subj: s\r\n\r\n", from_subject, 2, "\r\n" },
		/* a value may be empty or hold colons, 8-bit, anything */
		{ "Subject:\r\nFrom: a:b \xc3\xa9\r\n\r\n", from_subject, 2,
		  "Subject:\r\nFrom: a:b \xc3\xa9\r\n\r\n" },
		/* every occurrence */
		{ "From: 1\r\nFrom: 2\r\n\r\n", from_subject, 2,
		  "From: 1\r\nFrom: 2\r\n\r\n" },
		/* a missing empty line is added, an empty header is one */
		{ "From: f\r\nTo: t\r\n", from_subject, 2, "From: f\r\n\r\n" },
		{ "\r\n", from_subject, 2, "\r\n" },
		{ "", from_subject, 2, "\r\n" },
		/* nothing after the empty line */
		{ "From: f\r\n\r\nFrom: body\r\n", from_subject, 2,
		  "From: f\r\n\r\n" },
		/* no names: the empty line alone */
		{ "From: f\r\n\r\n", from_subject, 0, "\r\n" },
	};
	unsigned char out[256];

	test_begin("header block plain");
	for (unsigned int i = 0; i < N_ELEMENTS(tests); i++) {
		size_t size = strlen(tests[i].hdr);
		ssize_t ret;

		memset(out, 0xee, sizeof(out));
		ret = sqlbox_header_block_filter(
			(const unsigned char *)tests[i].hdr, size,
			tests[i].names, tests[i].count, out);
		test_assert_idx(ret == (ssize_t)strlen(tests[i].want) &&
				memcmp(out, tests[i].want, ret) == 0, i);
		/* within the room promised */
		test_assert_idx(ret <= (ssize_t)size + 2 &&
				out[size + 2] == 0xee, i);
	}
	test_end();
}

static void test_header_block_not_plain(void)
{
	static const struct {
		const char *hdr;
		size_t size;
	} tests[] = {
		{ "From: f\nTo: t\r\n\r\n", 0 },	/* bare LF */
		{ "From: f\r\n\n", 0 },			/* bare LF end */
		{ "From: f", 0 },			/* no newline */
		{ "From: f\r\nTo: t", 0 },		/* last line */
		{ "From: f\rg\r\n\r\n", 0 },		/* bare CR */
		{ "From: f\0g\r\n\r\n", 14 },		/* NUL */
		{ "From f\r\n\r\n", 0 },		/* no colon */
		{ ": f\r\n\r\n", 0 },			/* empty name */
		{ "From : f\r\n\r\n", 0 },		/* space before : */
		{ "From\t: f\r\n\r\n", 0 },		/* tab before : */
		{ " From: f\r\n\r\n", 0 },		/* continuation first */
		{ "\tFrom: f\r\n\r\n", 0 },
	};
	unsigned char out[64];
	char longname[1100];

	test_begin("header block not plain");
	for (unsigned int i = 0; i < N_ELEMENTS(tests); i++) {
		size_t size = tests[i].size != 0 ? tests[i].size :
			strlen(tests[i].hdr);

		test_assert_idx(sqlbox_header_block_filter(
			(const unsigned char *)tests[i].hdr, size,
			from_subject, 2, out) == -1, i);
	}
	/* a name Dovecot takes as a value */
	memset(longname, 'X', 999);
	memcpy(longname + 999, ": v\r\n\r\n", 8);
	{
		static unsigned char big[1200];

		test_assert(sqlbox_header_block_filter(
			(const unsigned char *)longname, strlen(longname),
			from_subject, 2, big) == -1);
	}
	test_end();
}

/* A block filtered by SQLBOX_SEARCH_FIELDS (body_fields.fields), then by
   some of them, gives what the block filtered by those gives. */
static void test_header_block_search_fields(void)
{
	static const char *const blocks[] = {
		/* test_header_block_plain's */
		"Subject: s\r\nTo: t\r\nfrom: f\r\n\r\n",
		"X-Folded: a\r\n\tb\r\n  c\r\nTo: t\r\n \r\n\r\n",
		"To: t\r\n\tu\r\nX-Folded: a\r\n\r\n",
		"Subject: s\r\n\r\n",
		"Subj: s\r\n\r\n",
		"Subject:\r\nFrom: a:b \xc3\xa9\r\n\r\n",
		"From: 1\r\nFrom: 2\r\n\r\n",
		"From: f\r\nTo: t\r\n",
		"\r\n",
		"",
		"From: f\r\n\r\nFrom: body\r\n",
		/* continuation lines, repeated fields, names in mixed case,
		   fields of the set next to others */
		"Received: from a\r\n\tby b\r\nFROM: Ann <a@x>,\r\n"
		" Bob <b@x>\r\nX-Mailer: m\r\n\tm2\r\nsubject: one\r\n"
		"SUBJECT: two\r\n  folded\r\nList-ID: <l.x>\r\n"
		"list-id: <l2.x>\r\nreply-TO: r\r\nCC: c\r\n \r\n"
		"message-id: <m@x>\r\nIn-Reply-To:\r\n <p@x>\r\n"
		"Sender: s\r\nBcc:\r\nTo: t\r\nDate: d\r\n\r\nbody\r\n",
		"X-A: a\r\n\tFrom: not a field\r\nX-B: b\r\n\r\n",
		"List-Idx: no\r\nList-Id: yes\r\nFro: no\r\n\r\n",
	};
	static const char *const some[][4] = {
		{ "From", NULL },
		{ "subject", NULL },
		{ "LIST-ID", "from", NULL },
		{ "To", "Cc", "Bcc", NULL },
		{ "Message-Id", "in-reply-to", "Sender", NULL },
		{ "Reply-To", "SUBJECT", "From", "List-Id" },
	};
	static unsigned char fields[1200], want[1200], got[1200];

	test_begin("header block search fields");
	for (unsigned int i = 0; i < N_ELEMENTS(blocks); i++) {
		size_t size = strlen(blocks[i]);
		ssize_t fields_size, want_size, got_size;

		fields_size = sqlbox_header_block_filter(
			(const unsigned char *)blocks[i], size,
			sqlbox_search_fields, sqlbox_search_fields_count,
			fields);
		test_assert_idx(fields_size >= 2, i);
		for (unsigned int j = 0; j < N_ELEMENTS(some); j++) {
			unsigned int count = 0;

			while (count < 4 && some[j][count] != NULL)
				count++;
			test_assert_idx(sqlbox_header_names_searchable(
				some[j], count), j);
			want_size = sqlbox_header_block_filter(
				(const unsigned char *)blocks[i], size,
				some[j], count, want);
			got_size = sqlbox_header_block_filter(fields,
				fields_size, some[j], count, got);
			test_assert_idx(want_size >= 0 &&
					got_size == want_size &&
					memcmp(got, want, want_size) == 0,
					i * 100 + j);
		}
	}
	test_end();
}

static void test_header_names_searchable(void)
{
	static const char *const yes[] = { "from", "LIST-ID", "Message-ID" };
	static const char *const no1[] = { "From", "X-Mailer" };
	static const char *const no2[] = { "Fro" };
	static const char *const no3[] = { "Subjects" };
	static const char *const no4[] = { "" };
	static const char *const no5[] = { "Date" };

	test_begin("header names searchable");
	test_assert(sqlbox_header_names_searchable(yes, 3));
	test_assert(sqlbox_header_names_searchable(yes, 0));
	test_assert(!sqlbox_header_names_searchable(no1, 2));
	test_assert(!sqlbox_header_names_searchable(no2, 1));
	test_assert(!sqlbox_header_names_searchable(no3, 1));
	test_assert(!sqlbox_header_names_searchable(no4, 1));
	test_assert(!sqlbox_header_names_searchable(no5, 1));
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_header_block_plain,
		test_header_block_not_plain,
		test_header_block_search_fields,
		test_header_names_searchable,
		NULL
	};

	return test_run(cases);
}
