/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The HTTP half against tests/lpfake.py: every fault mode gives the right
   error kind, quickly, with retries only where they can help. */

#include "test-lpfake.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#define TEST_BIG_TEAM "big"
#define TEST_BIG_COUNT 2000
#define TEST_BIG_PAGES ((TEST_BIG_COUNT + LP_TEAM_PAGE_SIZE - 1) / LP_TEAM_PAGE_SIZE)

static struct lp_config *config;
static struct lp_context *ctx;

static double test_elapsed(uint64_t start)
{
	return (double)(lp_monotonic_msecs() - start) / 1000.0;
}

static void test_person_states(void)
{
	static const struct {
		const char *name;
		enum lp_person_state state;
		bool is_valid, is_coc_signer, is_team;
	} tests[] = {
		{ "alice", LP_PERSON_OK, true, true, false },
		{ "carol", LP_PERSON_OK, false, true, false },
		{ "dave", LP_PERSON_OK, true, false, false },
		{ "ubuntumembers", LP_PERSON_OK, true, false, true },
		{ "bob", LP_PERSON_SUSPENDED, false, false, false },
		{ "nobody-here", LP_PERSON_NOT_FOUND, false, false, false },
	};
	struct lp_person_record rec;
	struct lp_error err;
	json_t *reqs;

	test_begin("person states");
	lpfake_reset();
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		test_assert_idx(lp_person_fetch(ctx, tests[i].name, NULL,
						 &rec, &err) == 0, i);
		test_assert_idx(rec.state == tests[i].state, i);
		test_assert_idx(rec.is_valid == tests[i].is_valid, i);
		test_assert_idx(rec.is_coc_signer == tests[i].is_coc_signer, i);
		test_assert_idx(rec.is_team == tests[i].is_team, i);
		test_assert_idx((rec.etag[0] != '\0') ==
				(tests[i].state == LP_PERSON_OK), i);
		test_assert_idx(rec.expires_at == test_clock +
				(i == 0 ? 3600 : 600), i);
	}
	/* one request each, with our User-Agent and JSON wanted */
	reqs = lpfake_requests();
	test_assert(json_array_size(reqs) == sizeof(tests) / sizeof(tests[0]));
	for (size_t i = 0; i < json_array_size(reqs); i++) {
		test_assert_strcmp(json_string_value(json_object_get(
			json_array_get(reqs, i), "user_agent")), LP_USER_AGENT);
	}
	json_decref(reqs);
	test_end();
}

static void test_person_not_modified(void)
{
	struct lp_person_record first, second;
	struct lp_error err;
	json_t *reqs;

	test_begin("person 304");
	lpfake_reset();
	test_assert(lp_person_fetch(ctx, "alice", NULL, &first, &err) == 0);
	test_clock += 100;
	test_assert(lp_person_fetch(ctx, "alice", &first, &second, &err) == 0);
	test_assert(second.state == LP_PERSON_OK && second.is_valid &&
		    second.is_coc_signer);
	test_assert_strcmp(second.etag, first.etag);
	test_assert(second.fetched_at == first.fetched_at + 100);
	test_assert(second.expires_at == first.expires_at + 100);
	reqs = lpfake_requests();
	test_assert(json_array_size(reqs) == 2);
	test_assert(json_is_null(json_object_get(json_array_get(reqs, 0),
						 "if_none_match")));
	test_assert_strcmp(json_string_value(json_object_get(
		json_array_get(reqs, 1), "if_none_match")), first.etag);
	json_decref(reqs);

	/* a changed person answers 200 again */
	test_assert(lpfake_post("/_fake/person",
		"{\"name\": \"alice\", \"is_ubuntu_coc_signer\": false}") == 200);
	test_assert(lp_person_fetch(ctx, "alice", &first, &second, &err) == 0);
	test_assert(!second.is_coc_signer);
	test_assert(strcmp(second.etag, first.etag) != 0);
	test_assert(lpfake_post("/_fake/person",
		"{\"name\": \"alice\", \"is_ubuntu_coc_signer\": true}") == 200);
	test_end();
}

static void test_fault_modes(void)
{
	static const struct {
		const char *mode;
		bool team;		/* participants, else person */
		int ret;
		enum lp_error_kind kind;
		unsigned int requests;	/* retries only for temp faults */
	} tests[] = {
		{ "500", false, -1, LP_ERR_TEMP, 1 + LP_HTTP_RETRIES },
		{ "503", false, -1, LP_ERR_TEMP, 1 + LP_HTTP_RETRIES },
		{ "503", true, -1, LP_ERR_TEMP, 1 + LP_HTTP_RETRIES },
		{ "truncated", false, -1, LP_ERR_TEMP, 1 + LP_HTTP_RETRIES },
		{ "404", true, -1, LP_ERR_PROTOCOL, 1 },
		{ "410", true, -1, LP_ERR_PROTOCOL, 1 },
		{ "nonjson", false, -1, LP_ERR_PROTOCOL, 1 },
		{ "nonjson", true, -1, LP_ERR_PROTOCOL, 1 },
		{ "wrongtypes", false, -1, LP_ERR_PROTOCOL, 1 },
		{ "wrongtypes", true, -1, LP_ERR_PROTOCOL, 1 },
		{ "missing-field", false, -1, LP_ERR_PROTOCOL, 1 },
		{ "missing-field", true, -1, LP_ERR_PROTOCOL, 1 },
		{ "huge", false, -1, LP_ERR_PROTOCOL, 1 },
		{ "huge", true, -1, LP_ERR_PROTOCOL, 1 },
		{ "redirect-offhost", false, -1, LP_ERR_PROTOCOL, 1 },
		{ "redirect-offhost", true, -1, LP_ERR_PROTOCOL, 1 },
		{ "next-offhost", true, -1, LP_ERR_PROTOCOL, 1 },
		{ "next-loop", true, -1, LP_ERR_PROTOCOL, 1 },
		{ "redirect-onhost", false, 0, LP_ERR_NONE, 2 },
		{ "redirect-onhost", true, 0, LP_ERR_NONE, 2 },
	};
	struct lp_person_record rec;
	struct lp_name_set set;
	struct lp_error err;
	uint64_t start;
	int ret;

	test_begin("fault modes");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		lpfake_reset();
		lpfake_fault(NULL, tests[i].mode, 0, 0);
		err.kind = LP_ERR_NONE;
		start = lp_monotonic_msecs();
		if (tests[i].team) {
			ret = lp_team_fetch(ctx, "ubuntumembers", &set, &err);
			if (ret == 0) {
				/* 10 people of tests/fixtures/launchpad.json + ubuntu-doc-team */
				test_assert_idx(set.count == 11, i);
				lp_name_set_free(&set);
			}
		} else {
			ret = lp_person_fetch(ctx, "alice", NULL, &rec, &err);
			test_assert_idx(ret < 0 || (rec.state == LP_PERSON_OK &&
						    rec.is_valid), i);
		}
		if (ret != tests[i].ret || err.kind != tests[i].kind)
			test_diag("%s: ret %d kind %d: %s", tests[i].mode, ret,
				  err.kind, err.text);
		test_assert_idx(ret == tests[i].ret, i);
		test_assert_idx(err.kind == tests[i].kind, i);
		test_assert_idx(lpfake_count(NULL) == tests[i].requests, i);
		/* 1.25 s of back-off at most; an off-host contact would
		   have taken the whole http_timeout (10 s).  The bound is
		   far from both so that a loaded machine cannot fail it. */
		test_assert_idx(test_elapsed(start) < 8.0, i);
	}
	lpfake_reset();
	test_end();
}

static void test_person_404_410_faults(void)
{
	static const struct {
		const char *mode;
		enum lp_person_state state;
	} tests[] = {
		{ "404", LP_PERSON_NOT_FOUND },
		{ "410", LP_PERSON_SUSPENDED },
	};
	struct lp_person_record rec;
	struct lp_error err;

	test_begin("person 404/410 faults");
	for (unsigned int i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		lpfake_reset();
		lpfake_fault("^/1[.]0/~alice$", tests[i].mode, 1, 0);
		test_assert_idx(lp_person_fetch(ctx, "alice", NULL, &rec,
						&err) == 0, i);
		test_assert_idx(rec.state == tests[i].state, i);
		test_assert_idx(lpfake_count(NULL) == 1, i);
	}
	lpfake_reset();
	test_end();
}

static void test_hang_and_slow(void)
{
	struct lp_person_record rec;
	struct lp_error err;
	uint64_t start;
	double elapsed;

	test_begin("hang and slow");
	config->http_timeout = 1;

	/* one hung request: timed out, retried, answered */
	lpfake_reset();
	lpfake_fault(NULL, "hang", 1, 30);
	start = lp_monotonic_msecs();
	test_assert(lp_person_fetch(ctx, "alice", NULL, &rec, &err) == 0);
	elapsed = test_elapsed(start);
	/* upper bounds only tell "timed out" from "waited for the 30 s
	   hang", with room for a loaded machine */
	test_assert(elapsed >= 1.0 && elapsed < 15.0);
	test_assert(lpfake_count(NULL) == 2);

	/* hanging forever: the deadline ends it */
	lpfake_reset();
	lpfake_fault(NULL, "hang", 0, 30);
	lp_deadline_set(ctx, 2500);
	start = lp_monotonic_msecs();
	test_assert(lp_person_fetch(ctx, "alice", NULL, &rec, &err) < 0);
	test_assert(err.kind == LP_ERR_TEMP);
	elapsed = test_elapsed(start);
	test_assert(elapsed >= 2.0 && elapsed < 15.0);
	test_assert(lpfake_count(NULL) == 2);
	lp_deadline_set(ctx, 0);

	/* slow but within http_timeout */
	lpfake_reset();
	lpfake_fault(NULL, "slow", 0, 0.3);
	test_assert(lp_person_fetch(ctx, "alice", NULL, &rec, &err) == 0);
	test_assert(lpfake_count(NULL) == 1);

	/* slower than http_timeout, every time */
	lpfake_reset();
	lpfake_fault(NULL, "slow", 0, 1.5);
	start = lp_monotonic_msecs();
	test_assert(lp_person_fetch(ctx, "alice", NULL, &rec, &err) < 0);
	test_assert(err.kind == LP_ERR_TEMP);
	test_assert(test_elapsed(start) < 15.0);
	test_assert(lpfake_count(NULL) == 1 + LP_HTTP_RETRIES);
	lpfake_reset();
	config->http_timeout = 10;
	test_end();
}

static void test_pagination(void)
{
	struct lp_name_set set;
	struct lp_error err;
	json_t *reqs, *req;
	size_t i;
	bool sorted = true, sizes_ok = true;

	test_begin("pagination");
	lpfake_reset();
	test_assert(lp_team_fetch(ctx, TEST_BIG_TEAM, &set, &err) == 0);
	test_assert(set.count == TEST_BIG_COUNT);
	for (i = 1; i < set.count; i++) {
		if (strcmp(set.names[i - 1], set.names[i]) >= 0)
			sorted = false;
	}
	test_assert(sorted);
	/* the generator's first member for seed 7 */
	test_assert(set.count > 0 && strncmp(set.names[0], "g7-", 3) == 0);
	reqs = lpfake_requests();
	test_assert(json_array_size(reqs) == TEST_BIG_PAGES);
	json_array_foreach(reqs, i, req) {
		const char *query =
			json_string_value(json_object_get(req, "query"));

		if (query == NULL || strstr(query, "ws.size=300") == NULL ||
		    (i > 0 && strstr(query, "memo=") == NULL))
			sizes_ok = false;
	}
	test_assert(sizes_ok);
	json_decref(reqs);
	lp_name_set_free(&set);

	/* sub-teams are participants, and so are their members */
	test_assert(lp_team_fetch(ctx, "ubuntumembers", &set, &err) == 0);
	test_assert(lp_name_set_contains(&set, "frank"));
	test_assert(lp_name_set_contains(&set, "ubuntu-doc-team"));
	test_assert(lp_name_set_contains(&set, "alice"));
	test_assert(!lp_name_set_contains(&set, "erin"));
	test_assert(!lp_name_set_contains(&set, "kim"));
	lp_name_set_free(&set);
	test_end();
}

static void test_keepalive(void)
{
	struct lp_person_record rec;
	struct lp_error err;
	long connects = -1;

	test_begin("keep-alive");
	lpfake_reset();
	test_assert(lp_person_fetch(ctx, "alice", NULL, &rec, &err) == 0);
	test_assert(lp_person_fetch(ctx, "dave", NULL, &rec, &err) == 0);
	curl_easy_getinfo(ctx->curl, CURLINFO_NUM_CONNECTS, &connects);
	test_assert(connects == 0);
	test_end();
}

/* issue 14: the web page's OpenID POST goes through this client too. */
static void test_post_form(void)
{
	static const char *const pairs[] = {
		"openid.mode", "check_authentication",
		"a b", "x&y=z/\xc3\xa9~",
		"empty", "",
		NULL
	};
	char url[sizeof(test_api_url) + 16], *body;
	struct lp_person_record rec;
	struct lp_error err;
	json_t *reqs;
	long status;

	test_begin("POST a form");
	/* test_api_url is <base>/1.0 */
	snprintf(url, sizeof(url), "%.*s/_fake/echo",
		 (int)(strlen(test_api_url) - strlen("/1.0")), test_api_url);
	lpfake_reset();
	test_assert(lp_http_post_form(ctx, url, pairs, &status, &body,
				      &err) == 0);
	test_assert(status == 200 && body != NULL);
	test_assert_strcmp(body, "content-type: "
			   "application/x-www-form-urlencoded\nbody: "
			   "openid.mode=check_authentication"
			   "&a%20b=x%26y%3Dz%2F%C3%A9~&empty=\n");
	free(body);

	/* the handle goes back to GET for the lookups */
	test_assert(lp_person_fetch(ctx, "alice", NULL, &rec, &err) == 0);
	reqs = lpfake_requests();
	test_assert(json_array_size(reqs) == 2);
	test_assert_strcmp(json_string_value(json_object_get(
		json_array_get(reqs, 1), "method")), "GET");
	json_decref(reqs);

	/* any status is the caller's to judge: no retry of a 503, no
	   redirect followed */
	lpfake_reset();
	lpfake_fault("^/_fake/echo$", "503", 0, 0);
	test_assert(lp_http_post_form(ctx, url, pairs, &status, &body,
				      &err) == 0);
	test_assert(status == 503 && body == NULL);
	test_assert(lpfake_count("/_fake/echo") == 1);
	lpfake_reset();
	lpfake_fault("^/_fake/echo$", "redirect-onhost", 0, 0);
	test_assert(lp_http_post_form(ctx, url, pairs, &status, &body,
				      &err) == 0);
	test_assert(status == 301 && body == NULL);
	test_assert(lpfake_count("/_fake/echo") == 1);

	/* the size cap */
	lpfake_reset();
	lpfake_fault("^/_fake/echo$", "huge", 0, 0);
	test_assert(lp_http_post_form(ctx, url, pairs, &status, &body,
				      &err) < 0);
	test_assert(err.kind == LP_ERR_PROTOCOL && body == NULL);

	/* unreachable (nothing listens on port 9 of 127.0.0.1): tempfail,
	   one attempt */
	test_assert(lp_http_post_form(ctx, "http://127.0.0.1:9/+openid",
				      pairs, &status, &body, &err) < 0);
	test_assert(err.kind == LP_ERR_TEMP && status == 0 && body == NULL);

	/* a hung server: the lookup deadline (or http_timeout) ends it */
	lpfake_reset();
	lpfake_fault("^/_fake/echo$", "hang", 0, 30);
	lp_deadline_set(ctx, 1000);
	test_assert(lp_http_post_form(ctx, url, pairs, &status, &body,
				      &err) < 0);
	test_assert(err.kind == LP_ERR_TEMP);
	test_assert(lpfake_count("/_fake/echo") == 1);
	lp_deadline_set(ctx, 0);
	lpfake_reset();
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_person_states,
		test_person_not_modified,
		test_fault_modes,
		test_person_404_410_faults,
		test_hang_and_slow,
		test_pagination,
		test_keepalive,
		test_post_form,
		NULL
	};
	static const char *const args[] = {
		"--generate-team", TEST_BIG_TEAM ":2000:7", NULL
	};
	return test_lpfake_main(test_run, tests, args, 3600, 600, 7 * 86400,
				10, &config, &ctx);
}
