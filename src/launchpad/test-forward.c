/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "launchpad.h"
#include "tap.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_ELEMENTS(arr) (sizeof(arr) / sizeof((arr)[0]))

/* Issue 16: forwarding is a generated Sieve script; nothing a user or a
   page types may break out of its string. */

static void test_forward_address(void)
{
	static const struct {
		const char *address;
		bool valid;
	} tests[] = {
		{ "alice@example.org", true },
		{ "a.b+tag@mail.example.co.uk", true },
		{ "o'neil@example.org", true },
		{ "alice@example", false },
		{ "alice", false },
		{ "@example.org", false },
		{ "alice@", false },
		{ ".alice@example.org", false },
		{ "alice.@example.org", false },
		{ "al..ice@example.org", false },
		{ "al\"ice@example.org", false },
		{ "al\\ice@example.org", false },
		{ "alice@example.org\";\ndiscard;#", false },
		{ "alice@exa mple.org", false },
		{ "alice@-example.org", false },
		{ "alice@example..org", false },
		{ "alice@example.org.", false },
		{ "ali ce@example.org", false },
		{ "alice@ex_ample.org", false },
	};

	test_begin("forward: addresses");
	for (unsigned int i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(lp_forward_address_is_valid(tests[i].address) ==
				tests[i].valid, i);
	}
	test_end();
}

static void test_forward_script(void)
{
	struct lp_forward fwd = { .keep = false }, back;
	char buf[1024];
	int len;

	test_begin("forward: script round trip");
	strcpy(fwd.address, "alice@example.org");
	len = lp_forward_script(&fwd, buf, sizeof(buf));
	test_assert(len > 0 && (size_t)len == strlen(buf));
	test_assert(strstr(buf, "\nredirect \"alice@example.org\";\n") != NULL);
	test_assert(strstr(buf, ":copy") == NULL);
	test_assert(lp_forward_parse(buf, &back) == 1 && !back.keep &&
		    strcmp(back.address, "alice@example.org") == 0);
	fwd.keep = true;
	len = lp_forward_script(&fwd, buf, sizeof(buf));
	test_assert(strstr(buf, "\nredirect :copy \"alice@example.org\";\n") != NULL);
	test_assert(lp_forward_parse(buf, &back) == 1 && back.keep);
	test_assert(lp_forward_script(&fwd, buf, 40) == -1);
	strcpy(fwd.address, "x\"@example.org");
	test_assert(lp_forward_script(&fwd, buf, sizeof(buf)) == -1);
	/* Not ours: a user's own script, a hand-edited one. */
	test_assert(lp_forward_parse("require \"fileinto\";\n", &back) == 0);
	strcpy(fwd.address, "alice@example.org");
	(void)lp_forward_script(&fwd, buf, sizeof(buf));
	*strstr(buf, "keep: yes") = 'K';
	test_assert(lp_forward_parse(buf, &back) == 0);
	test_end();
}

static void test_forward_files(void)
{
	struct lp_forward fwd = { .keep = true }, back;
	struct lp_error err;
	char dir[256], home[512], path[PATH_MAX];
	const char *tmp = getenv("TMPDIR");
	struct stat st;
	FILE *f;

	test_begin("forward: write, read, clear");
	snprintf(dir, sizeof(dir), "%s/test-forward.XXXXXX",
		 tmp != NULL ? tmp : "/tmp");
	test_assert(mkdtemp(dir) != NULL);
	/* A home that does not exist yet (forward-only, no mailbox). */
	snprintf(home, sizeof(home), "%s/ubuntu.com/alice", dir);
	test_assert(lp_forward_read(home, &back, &err) == 0);
	test_assert(lp_forward_clear(home, &err) == 0);
	strcpy(fwd.address, "alice@example.org");
	test_assert(lp_forward_write(home, &fwd, getuid(), getgid(),
				     &err) == 0);
	test_assert(stat(home, &st) == 0 && (st.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/%s", home, LP_FORWARD_FNAME);
	test_assert(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	test_assert(lp_forward_read(home, &back, &err) == 1 && back.keep &&
		    strcmp(back.address, "alice@example.org") == 0);
	fwd.keep = false;
	test_assert(lp_forward_write(home, &fwd, getuid(), getgid(),
				     &err) == 0);
	test_assert(lp_forward_read(home, &back, &err) == 1 && !back.keep);
	/* Someone else's file there is an error, not "off". */
	f = fopen(path, "w");
	fputs("redirect \"mallory@example.org\";\n", f);
	fclose(f);
	test_assert(lp_forward_read(home, &back, &err) == -1 &&
		    err.kind == LP_ERR_CORRUPT);
	test_assert(lp_forward_clear(home, &err) == 1);
	test_assert(lp_forward_read(home, &back, &err) == 0);
	test_assert(lp_forward_clear(home, &err) == 0);
	strcpy(fwd.address, "bad address@example.org");
	test_assert(lp_forward_write(home, &fwd, getuid(), getgid(),
				     &err) == -1);
	rmdir(home);
	snprintf(path, sizeof(path), "%s/ubuntu.com", dir);
	rmdir(path);
	rmdir(dir);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_forward_address,
		test_forward_script,
		test_forward_files,
		NULL
	};

	return test_run(cases);
}
