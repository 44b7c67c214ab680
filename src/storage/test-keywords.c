/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "sqlbox-keywords.h"

#include <stddef.h>

/* sqlbox_keywords_equal(): the sync rewrites a message's keywords in the
   index only when SQLite's set differs from the index's, whatever order
   group_concat() gave them in. */

#define N_ELEMENTS(arr) (sizeof(arr) / sizeof((arr)[0]))

static void test_keywords_equal(void)
{
	static const char *const none[] = { NULL };
	static const char *const work[] = { "Work", NULL };
	static const char *const workflow[] = { "Workflow", NULL };
	static const char *const work_lower[] = { "work", NULL };
	static const char *const wo[] = { "Wo", NULL };
	static const char *const abc[] = { "$label1", "Work", "Junk", NULL };
	static const char *const cab[] = { "Junk", "$label1", "Work", NULL };
	static const char *const ab[] = { "$label1", "Work", NULL };
	static const char *const abd[] = { "$label1", "Work", "NonJunk",
					   NULL };
	static const char *const aab[] = { "$label1", "$label1", "Work",
					   NULL };
	static const char *const abb[] = { "$label1", "Work", "Work", NULL };
	static const char *const aa[] = { "$label1", "$label1", NULL };
	static const struct {
		const char *const *a, *const *b;
		bool equal;
	} tests[] = {
		{ none, none, true },
		{ work, work, true },
		{ none, work, false },
		{ work, none, false },
		/* Whole names, byte for byte. */
		{ work, workflow, false },
		{ workflow, work, false },
		{ work, wo, false },
		{ work, work_lower, false },
		/* Any order. */
		{ abc, cab, true },
		{ cab, abc, true },
		/* A name more or less, or another one. */
		{ abc, ab, false },
		{ ab, abc, false },
		{ abc, abd, false },
		/* A set: twice is once. */
		{ aab, ab, true },
		{ aab, abb, true },
		{ aa, ab, false },
		{ ab, aa, false },
	};

	test_begin("keywords equal");
	for (unsigned int i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(sqlbox_keywords_equal(tests[i].a, tests[i].b) ==
				tests[i].equal, i);
	}
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_keywords_equal,
		NULL
	};

	return test_run(cases);
}
