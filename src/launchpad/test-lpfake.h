/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef TEST_LPFAKE_H
#define TEST_LPFAKE_H

/* Test plumbing shared by test-http, test-cache and test-entitlement: runs
   tests/lpfake.py on 127.0.0.1 for the life of the test program, drives
   its control API, and builds a context on a temporary TDB with a fake
   clock (ctx->now = test_now, moved by test_clock). */

#include "launchpad-private.h"

#include <jansson.h>

extern time_t test_clock;
extern char test_api_url[128];
extern char test_dir[64];

/* Starts the fake with extra arguments (NULL-terminated, may be NULL);
   exits the program if it does not come up within 10 s.  Killed at exit
   and, through PR_SET_PDEATHSIG, when the test dies. */
void lpfake_start(const char *const *extra_args);
/* POSTs json to a control path; returns the HTTP status (-1 on error). */
int lpfake_post(const char *path, const char *json);
void lpfake_reset(void);
/* Adds a fault; path is a regex or NULL for all API paths, count 0 means
   forever, delay 0 means the mode's default. */
void lpfake_fault(const char *path, const char *mode, unsigned int count,
		  double delay);
/* The request log (caller decrefs). */
json_t *lpfake_requests(void);
/* Number of logged requests whose path equals path (NULL: all). */
unsigned int lpfake_count(const char *path);

time_t test_now(void);
/* A config for the fake: the six domains of doc/DESIGN.md section 3, the
   given TTLs in seconds and http_timeout, cache in test_dir. */
struct lp_config *test_config(unsigned int positive_ttl,
			      unsigned int negative_ttl,
			      unsigned int stale_grace,
			      unsigned int http_timeout);
/* A context on config with the fake clock; logs go to TAP comments when
   LP_TEST_VERBOSE is set. */
struct lp_context *test_context(const struct lp_config *config);
/* Removes the cache file so the next context starts cold. */
void test_cache_remove(void);

/* A test program's main(): starts the fake (extra args, may be NULL),
   sets *config_r and *ctx_r as test_config() and test_context() make
   them, runs the tests with run (the program's own test_run(), whose
   TAP counters are static to it), frees both and returns the exit
   status. */
int test_lpfake_main(int (*run)(void (*const tests[])(void)),
		     void (*const tests[])(void),
		     const char *const *lpfake_args, unsigned int positive_ttl,
		     unsigned int negative_ttl, unsigned int stale_grace,
		     unsigned int http_timeout, struct lp_config **config_r,
		     struct lp_context **ctx_r);

#endif
