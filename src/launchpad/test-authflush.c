/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* lp_auth_cache_flush() against a fake auth "-master" socket: the
   command it sends, the count it returns, and every way the flush can
   fail being reported as a failure (Dovecot 2.3.19's own client calls a
   failed connect a success). */

#include "launchpad.h"
#include "tap.h"
#include "test-socket.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_CONFIG "domain ubuntu.com = ubuntumembers\n" \
	"domain kubuntu.org = kubuntu-members\n"

#define TEST_GREETING "VERSION\t1\t2\nSPID\t4242\n"

static char test_dir[] = "/tmp/lp-authflush-XXXXXX";
static char test_socket[128];
static struct lp_config *config;

enum test_auth_mode {
	TEST_AUTH_OK,		/* greeting, then OK <id> 3 */
	TEST_AUTH_FAIL,		/* FAIL <id> */
	TEST_AUTH_CLOSE,	/* what a non-master socket does */
};

/* A one-shot auth server.  Exit 0 if the request was expect. */
static pid_t test_auth(enum test_auth_mode mode, const char *expect)
{
	char buf[1024];
	size_t len = 0;
	int conn;
	pid_t pid;

	if ((pid = test_unix_server(test_socket, &conn)) != 0)
		return pid;
	if (conn < 0)
		_exit(2);
	if (write(conn, TEST_GREETING, strlen(TEST_GREETING)) !=
	    (ssize_t)strlen(TEST_GREETING))
		_exit(3);
	while (len < sizeof(buf) - 1) {
		ssize_t ret = read(conn, buf + len, sizeof(buf) - 1 - len);

		if (ret <= 0)
			_exit(4);
		len += (size_t)ret;
		buf[len] = '\0';
		if (strchr(strstr(buf, "CACHE-FLUSH") == NULL ? "" :
			   strstr(buf, "CACHE-FLUSH"), '\n') != NULL)
			break;
	}
	switch (mode) {
	case TEST_AUTH_OK:
		if (write(conn, "OK\t1\t3\n", 7) != 7)
			_exit(5);
		break;
	case TEST_AUTH_FAIL:
		if (write(conn, "FAIL\t1\n", 7) != 7)
			_exit(5);
		break;
	case TEST_AUTH_CLOSE:
		break;
	}
	close(conn);
	_exit(strcmp(buf, expect) == 0 ? 0 : 6);
}

static void test_auth_done(pid_t pid)
{
	int status;

	test_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0);
}

static void test_flush(void)
{
	struct lp_error err;
	pid_t pid;

	test_begin("auth cache flush: command and count");
	pid = test_auth(TEST_AUTH_OK, "VERSION\t1\t1\nCACHE-FLUSH\t1\talice\t"
			"alice@ubuntu.com\talice@kubuntu.org\n");
	test_assert(lp_auth_cache_flush(config, test_socket, "alice",
					&err) == 3);
	test_auth_done(pid);
	/* no name: the whole cache */
	pid = test_auth(TEST_AUTH_OK, "VERSION\t1\t1\nCACHE-FLUSH\t1\n");
	test_assert(lp_auth_cache_flush(config, test_socket, NULL, &err) == 3);
	test_auth_done(pid);
	test_end();
}

static void test_flush_failures(void)
{
	struct lp_error err;
	pid_t pid;

	test_begin("auth cache flush: failures are failures");
	(void)unlink(test_socket);
	test_assert(lp_auth_cache_flush(config, test_socket, "alice",
					&err) == -1);
	test_assert(strstr(err.text, "connect(") != NULL);
	pid = test_auth(TEST_AUTH_FAIL, "VERSION\t1\t1\nCACHE-FLUSH\t1\t"
			"alice\talice@ubuntu.com\talice@kubuntu.org\n");
	test_assert(lp_auth_cache_flush(config, test_socket, "alice",
					&err) == -1);
	test_assert(strstr(err.text, "refused CACHE-FLUSH") != NULL);
	test_auth_done(pid);
	pid = test_auth(TEST_AUTH_CLOSE, "VERSION\t1\t1\nCACHE-FLUSH\t1\t"
			"alice\talice@ubuntu.com\talice@kubuntu.org\n");
	test_assert(lp_auth_cache_flush(config, test_socket, "alice",
					&err) == -1);
	test_assert(strstr(err.text, "without answering") != NULL);
	test_auth_done(pid);
	/* a name that would forge another field never goes out */
	test_assert(lp_auth_cache_flush(config, test_socket, "a\tb",
					&err) == -1);
	test_assert(lp_auth_cache_flush(config, test_socket, "a@b",
					&err) == -1);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_flush,
		test_flush_failures,
		NULL
	};
	struct lp_error err;
	int ret;

	if (mkdtemp(test_dir) == NULL ||
	    lp_config_parse("t.conf", TEST_CONFIG, &config, &err) < 0)
		return 99;
	snprintf(test_socket, sizeof(test_socket), "%s/auth-master",
		 test_dir);
	signal(SIGPIPE, SIG_IGN);
	ret = test_run(tests);
	lp_config_free(&config);
	(void)unlink(test_socket);
	(void)rmdir(test_dir);
	return ret;
}
