/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* lp_kick_users() against a fake anvil on a unix socket, with real
   processes standing in for imap/pop3 sessions: those that serve only the
   kicked users get SIGTERM, the rest are left alone. */

#include "launchpad.h"
#include "tap.h"
#include "test-socket.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_SESSIONS 6

static char test_dir[] = "/tmp/lp-kick-XXXXXX";
static char test_socket[128];

/* A process that waits for a signal, like an imap process in IDLE. */
static pid_t test_session(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

/* A kicked session dies of SIGTERM: waits for it (bounded). */
static bool test_kicked(pid_t pid)
{
	struct timespec ts = { .tv_nsec = 1000000L };
	int status;

	for (unsigned int i = 0; i < 10000; i++) {
		pid_t ret = waitpid(pid, &status, WNOHANG);

		if (ret == pid)
			return WIFSIGNALED(status) &&
				WTERMSIG(status) == SIGTERM;
		if (ret < 0)
			return false;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	(void)waitpid(pid, &status, 0);
	return false;
}

/* A session left alone still runs and has no SIGTERM pending (a signal
   sent by kill() is pending until the target takes it).  Reaps it. */
static bool test_left_alone(pid_t pid)
{
	char path[64], line[256];
	unsigned long long mask, pending = 0;
	bool alive;
	FILE *f;
	int status;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	alive = waitpid(pid, &status, WNOHANG) == 0 &&
		(f = fopen(path, "r")) != NULL;
	if (alive) {
		while (fgets(line, sizeof(line), f) != NULL) {
			if ((sscanf(line, "SigPnd: %llx", &mask) == 1 ||
			     sscanf(line, "ShdPnd: %llx", &mask) == 1))
				pending |= mask;
		}
		fclose(f);
	}
	kill(pid, SIGKILL);
	(void)waitpid(pid, &status, 0);
	return alive && (pending & (1ULL << (SIGTERM - 1))) == 0;
}

/* A one-shot anvil: answers CONNECT-DUMP with dump (then the empty line
   unless truncate), and exits.  Returns its pid. */
static pid_t test_anvil(const char *dump, bool truncate)
{
	char buf[256];
	size_t len = 0;
	int conn;
	pid_t pid;

	if ((pid = test_unix_server(test_socket, &conn)) != 0)
		return pid;
	/* the request must be the documented handshake and command */
	while (conn >= 0 && len < sizeof(buf) - 1) {
		ssize_t ret = read(conn, buf + len, sizeof(buf) - 1 - len);

		if (ret <= 0)
			_exit(2);
		len += (size_t)ret;
		buf[len] = '\0';
		if (strstr(buf, "CONNECT-DUMP\n") != NULL)
			break;
	}
	if (conn < 0 ||
	    strcmp(buf, "VERSION\tanvil\t1\t0\nCONNECT-DUMP\n") != 0)
		_exit(3);
	if (write(conn, dump, strlen(dump)) != (ssize_t)strlen(dump) ||
	    (!truncate && write(conn, "\n", 1) != 1))
		_exit(4);
	close(conn);
	_exit(0);
}

static void test_anvil_done(pid_t pid)
{
	int status;

	test_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0);
}

static void test_kick_sessions(void)
{
	static const char *const users[] = { "alice@ubuntu.com", NULL };
	struct lp_kick_result result;
	struct lp_error err;
	pid_t s[TEST_SESSIONS], anvil;
	char dump[2048];

	test_begin("kick: the user's own processes get SIGTERM");
	for (unsigned int i = 0; i < TEST_SESSIONS; i++)
		s[i] = test_session();
	/* 0 alice imap (2 sessions), 1 alice pop3 (user in other case),
	   2 shared by alice and frank, 3 frank, 4 alice's lmtp delivery,
	   5 alice imap without an IP */
	snprintf(dump, sizeof(dump),
		 "imap/192.0.2.1/alice@ubuntu.com\t%ld\t2\n"
		 "pop3/2001:db8::1/Alice@Ubuntu.COM\t%ld\t1\n"
		 "imap/192.0.2.2/alice@ubuntu.com\t%ld\t1\n"
		 "imap/192.0.2.3/frank@ubuntu.com\t%ld\t1\n"
		 "imap/192.0.2.3/frank@ubuntu.com\t%ld\t1\n"
		 "lmtp/alice@ubuntu.com\t%ld\t1\n"
		 "imap/alice@ubuntu.com\t%ld\t1\n"
		 "garbage line\n"
		 "imap/192.0.2.9/alice@ubuntu.com\tnot-a-pid\t1\n",
		 (long)s[0], (long)s[1], (long)s[2], (long)s[2], (long)s[3],
		 (long)s[4], (long)s[5]);
	anvil = test_anvil(dump, false);
	test_assert(lp_kick_users(test_socket, users, &result, &err) == 0);
	test_anvil_done(anvil);
	test_assert(result.sessions == 5);
	test_assert(result.killed == 3);
	test_assert(result.shared == 1);
	test_assert(result.failed == 0);
	test_assert(test_kicked(s[0]));
	test_assert(test_kicked(s[1]));
	test_assert(test_left_alone(s[2]));
	test_assert(test_left_alone(s[3]));
	test_assert(test_left_alone(s[4]));
	test_assert(test_kicked(s[5]));
	test_end();
}

static void test_kick_failures(void)
{
	static const char *const users[] = { "alice@ubuntu.com", NULL };
	struct lp_kick_result result;
	struct lp_error err;
	char dump[256];
	pid_t s, anvil;

	test_begin("kick: no anvil, a cut list, tab-escaped names");
	/* no socket: an error, nothing done */
	(void)unlink(test_socket);
	test_assert(lp_kick_users(test_socket, users, &result, &err) == -1);
	test_assert(err.kind == LP_ERR_TEMP &&
		    strstr(err.text, "connect(") != NULL);

	/* a list cut before its end: nobody is signalled */
	s = test_session();
	snprintf(dump, sizeof(dump), "imap/192.0.2.1/alice@ubuntu.com\t%ld"
		 "\t1\n", (long)s);
	anvil = test_anvil(dump, true);
	test_assert(lp_kick_users(test_socket, users, &result, &err) == -1);
	test_anvil_done(anvil);
	test_assert(result.killed == 0 && test_left_alone(s));

	/* anvil tab-escapes idents; "a\tb" is not alice */
	s = test_session();
	snprintf(dump, sizeof(dump), "imap/192.0.2.1/alice\001t@ubuntu.com"
		 "\t%ld\t1\n", (long)s);
	anvil = test_anvil(dump, false);
	test_assert(lp_kick_users(test_socket, users, &result, &err) == 0);
	test_anvil_done(anvil);
	test_assert(result.sessions == 0 && test_left_alone(s));
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_kick_sessions,
		test_kick_failures,
		NULL
	};
	int ret;

	if (mkdtemp(test_dir) == NULL)
		return 99;
	snprintf(test_socket, sizeof(test_socket), "%s/anvil", test_dir);
	signal(SIGPIPE, SIG_IGN);
	ret = test_run(tests);
	(void)unlink(test_socket);
	(void)rmdir(test_dir);
	return ret;
}
