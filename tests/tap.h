/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef TAP_H
#define TAP_H

/* A tiny TAP producer with Dovecot lib-test's vocabulary, for the unit tests
   of the Dovecot-free libraries (src/launchpad, src/keyring, src/cryptvfs).

   Each case is `static void test_<case>(void)` using test_begin(),
   test_assert()/test_assert_idx()/test_assert_strcmp() and test_end();
   main() returns test_run(cases), where cases is NULL-terminated.
   Every assertion is one TAP line, so automake's tap-driver.sh (and CI's
   "N passed, N failed" line) counts assertions, not programs. */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned int tap_count, tap_failures;
static const char *tap_case = "?";

static inline void test_begin(const char *name)
{
	tap_case = name;
	printf("# %s\n", name);
}

static inline void tap_result(int ok, const char *file, int line,
			      const char *expr, long idx)
{
	tap_count++;
	if (ok) {
		printf("ok %u - %s", tap_count, tap_case);
	} else {
		tap_failures++;
		printf("not ok %u - %s: %s:%d: %s", tap_count, tap_case,
		       file, line, expr);
	}
	if (idx >= 0)
		printf(" [%ld]", idx);
	printf("\n");
	fflush(stdout);
}

#define test_assert(expr) \
	tap_result(!!(expr), __FILE__, __LINE__, #expr, -1)
#define test_assert_idx(expr, idx) \
	tap_result(!!(expr), __FILE__, __LINE__, #expr, (long)(idx))
#define test_assert_strcmp(a, b) do { \
	const char *tap_a = (a), *tap_b = (b); \
	int tap_ok = (tap_a == NULL && tap_b == NULL) || \
		(tap_a != NULL && tap_b != NULL && strcmp(tap_a, tap_b) == 0); \
	if (!tap_ok) \
		printf("#   got '%s', expected '%s'\n", \
		       tap_a == NULL ? "(null)" : tap_a, \
		       tap_b == NULL ? "(null)" : tap_b); \
	tap_result(tap_ok, __FILE__, __LINE__, #a " == " #b, -1); \
} while (0)

static inline void test_end(void)
{
	tap_case = "?";
}

/* Prints a diagnostic line (never an assertion). */
static inline void test_diag(const char *fmt, ...)
{
	va_list args;

	printf("# ");
	va_start(args, fmt);
	vprintf(fmt, args);
	va_end(args);
	printf("\n");
}

static inline int test_run(void (*const cases[])(void))
{
	for (unsigned int i = 0; cases[i] != NULL; i++)
		cases[i]();
	printf("1..%u\n", tap_count);
	return tap_failures == 0 && tap_count > 0 ? 0 : 1;
}

#endif
