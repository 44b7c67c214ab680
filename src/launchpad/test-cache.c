/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The TDB cache: records, expiry, corruption, bans, invalidation and
   cross-process coalescing, against tests/lpfake.py and a real TDB. */

#include "test-lpfake.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_POSITIVE_TTL 3600
#define TEST_NEGATIVE_TTL 600
#define TEST_STALE_GRACE 7200
#define TEST_COALESCE_PROCS 20

static struct lp_config *config;
static struct lp_context *ctx;

static void test_tdb_put(const char *key, const char *value)
{
	TDB_DATA k = { .dptr = (unsigned char *)key, .dsize = strlen(key) };
	TDB_DATA v = { .dptr = (unsigned char *)value, .dsize = strlen(value) };

	if (tdb_store(ctx->tdb, k, v, TDB_REPLACE) < 0) {
		printf("Bail out! tdb_store(%s) failed\n", key);
		exit(99);
	}
}

static void test_fresh_start(void)
{
	struct lp_error err;

	lpfake_reset();
	test_assert(lp_cache_invalidate_all(ctx, &err) >= 0);
	(void)lp_ban_clear(ctx, "alice", &err);
}

static void test_records_round_trip(void)
{
	struct lp_person_record person = {
		.state = LP_PERSON_OK, .is_valid = true, .is_coc_signer = true,
		.etag = "\"abc-def\"", .fetched_at = 100, .expires_at = 200,
	}, person2;
	struct lp_verdict_record verdict = {
		.kind = LP_VERDICT_DENY, .reason = LP_DENY_NOT_MEMBER,
		.text = "not a member of ~ubuntumembers",
		.decided_at = 300, .expires_at = 400,
	}, verdict2;
	char *names[] = { "alice", "bob", "frank" };
	struct lp_name_set set = { .names = names, .count = 3 }, set2;
	struct lp_error err;
	time_t fetched, expires;

	test_begin("records round trip");
	test_fresh_start();
	test_assert(lp_cache_person_get(ctx, "zed", &person2) == 0);
	test_assert(lp_cache_person_put(ctx, "zed", &person, &err) == 0);
	test_assert(lp_cache_person_get(ctx, "zed", &person2) == 1);
	test_assert(memcmp(&person, &person2, sizeof(person)) == 0);

	test_assert(lp_cache_verdict_put(ctx, "zed@ubuntu.com", &verdict,
					 &err) == 0);
	test_assert(lp_cache_verdict_get(ctx, "zed@ubuntu.com", &verdict2) == 1);
	test_assert(memcmp(&verdict, &verdict2, sizeof(verdict)) == 0);

	test_assert(lp_cache_team_put(ctx, "zteam", &set, 1, 500, &err) == 0);
	test_assert(lp_cache_team_get(ctx, "zteam", &set2, &fetched,
				      &expires) == 1);
	test_assert(set2.count == 3 && fetched == 1 && expires == 500);
	test_assert(lp_name_set_contains(&set2, "bob"));
	test_assert(!lp_name_set_contains(&set2, "carol"));
	lp_name_set_free(&set2);
	test_end();
}

static void test_expiry(void)
{
	struct lp_person_record rec;
	struct lp_error err;

	test_begin("expiry");
	test_fresh_start();
	test_assert(lp_person_lookup(ctx, "alice", false, &rec, &err) == 0);
	test_assert(lpfake_count("/1.0/~alice") == 1);
	/* fresh: no request */
	test_clock += TEST_POSITIVE_TTL - 1;
	test_assert(lp_person_lookup(ctx, "alice", false, &rec, &err) == 0);
	test_assert(lpfake_count("/1.0/~alice") == 1);
	/* expired: revalidated with If-None-Match, 304, times moved */
	test_clock += 1;
	test_assert(lp_person_lookup(ctx, "alice", false, &rec, &err) == 0);
	test_assert(lpfake_count("/1.0/~alice") == 2);
	test_assert(rec.state == LP_PERSON_OK && rec.fetched_at == test_clock);
	test_assert(lp_cache_person_get(ctx, "alice", &rec) == 1);
	test_assert(rec.expires_at == test_clock + TEST_POSITIVE_TTL);
	/* a deny-shaped person lives negative_ttl */
	test_assert(lp_person_lookup(ctx, "dave", false, &rec, &err) == 0);
	test_assert(rec.expires_at == test_clock + TEST_NEGATIVE_TTL);
	/* refresh ignores the TTL */
	test_assert(lp_person_lookup(ctx, "dave", true, &rec, &err) == 0);
	test_assert(lpfake_count("/1.0/~dave") == 2);
	test_end();
}

static void test_corrupt_records(void)
{
	static const char *const garbage[] = {
		"garbage{",
		"",
		"[1, 2, 3]",
		"{\"v\": 2, \"kind\": \"person\", \"state\": \"ok\"}",
		"{\"v\": \"1\", \"kind\": \"person\"}",
		"{\"v\": 1, \"kind\": \"verdict\"}",
		"{\"v\": 1, \"kind\": \"person\", \"state\": \"ok\"}",
		"{\"v\": 1, \"kind\": \"person\", \"state\": \"royal\", "
		"\"is_valid\": true, \"is_coc_signer\": true, \"is_team\": false, "
		"\"etag\": \"\", \"fetched_at\": 1, \"expires_at\": 9999999999}",
		"{\"v\": 1, \"kind\": \"person\", \"state\": \"ok\", "
		"\"is_valid\": \"yes\", \"is_coc_signer\": true, \"is_team\": false, "
		"\"etag\": \"\", \"fetched_at\": 1, \"expires_at\": 9999999999}",
	};
	static const char *const bad_teams[] = {
		"{\"v\": 1, \"kind\": \"team\", \"expires_at\": 9999999999, "
		"\"fetched_at\": 1, \"members\": [\"frank\", \"alice\"]}",
		"{\"v\": 1, \"kind\": \"team\", \"expires_at\": 9999999999, "
		"\"members\": {\"alice\": 1}}",
		"{\"v\": 1, \"kind\": \"team\", \"members\": [\"alice\"]}",
	};
	static const char *const bad_verdicts[] = {
		"\x01\x02\x03",
		"{\"v\": 1, \"kind\": \"verdict\", \"verdict\": \"allow\", "
		"\"reason\": \"not-member\", \"text\": \"\", \"decided_at\": 1, "
		"\"expires_at\": 9999999999}",
		"{\"v\": 1, \"kind\": \"verdict\", \"verdict\": \"maybe\", "
		"\"reason\": \"none\", \"text\": \"\", \"decided_at\": 1, "
		"\"expires_at\": 9999999999}",
	};
	struct lp_person_record rec;
	struct lp_verdict_record verdict;
	struct lp_entitlement ent;
	struct lp_error err;

	test_begin("corrupt records");
	for (unsigned int i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		test_fresh_start();
		test_tdb_put("person/alice", garbage[i]);
		test_assert_idx(lp_cache_person_get(ctx, "alice", &rec) == 0, i);
		/* a miss: fetched again and rewritten */
		test_assert_idx(lp_person_lookup(ctx, "alice", false, &rec,
						 &err) == 0, i);
		test_assert_idx(rec.state == LP_PERSON_OK && rec.is_valid, i);
		test_assert_idx(lpfake_count("/1.0/~alice") == 1, i);
		test_assert_idx(lp_cache_person_get(ctx, "alice", &rec) == 1, i);
	}
	for (unsigned int i = 0; i < sizeof(bad_teams) / sizeof(bad_teams[0]); i++) {
		test_fresh_start();
		test_tdb_put("team/ubuntumembers", bad_teams[i]);
		test_assert_idx(lp_team_lookup(ctx, "ubuntumembers", "alice",
					       false, &err) == 1, i);
		test_assert_idx(lpfake_count("/1.0/~ubuntumembers/participants") == 1, i);
		test_assert_idx(lp_team_lookup(ctx, "ubuntumembers", "frank",
					       false, &err) == 1, i);
		test_assert_idx(lpfake_count("/1.0/~ubuntumembers/participants") == 1, i);
	}
	for (unsigned int i = 0; i < sizeof(bad_verdicts) / sizeof(bad_verdicts[0]); i++) {
		test_fresh_start();
		test_tdb_put("verdict/erin@ubuntu.com", bad_verdicts[i]);
		test_assert_idx(lp_cache_verdict_get(ctx, "erin@ubuntu.com",
						     &verdict) == 0, i);
		lp_entitlement_check(ctx, "erin@ubuntu.com", &ent);
		test_assert_idx(ent.verdict.kind == LP_VERDICT_DENY, i);
		test_assert_idx(lp_cache_verdict_get(ctx, "erin@ubuntu.com",
						     &verdict) == 1, i);
		test_assert_idx(verdict.reason == LP_DENY_NOT_MEMBER, i);
	}
	test_end();
}

static void test_bans(void)
{
	struct lp_entitlement ent;
	struct lp_cache_user user;
	struct lp_error err;

	test_begin("bans");
	test_fresh_start();
	test_assert(lp_ban_set(ctx, "Alice", "sent spam", &err) == 0);
	lp_entitlement_check(ctx, "alice@kubuntu.org", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_DENY);
	test_assert(ent.verdict.reason == LP_DENY_BANNED);
	test_assert_strcmp(ent.verdict.text, "user banned: sent spam");
	test_assert(ent.from_cache);
	test_assert(lpfake_count(NULL) == 0);
	test_assert(lp_cache_show(ctx, "alice@kubuntu.org", &user, &err) == 1);
	test_assert(user.banned && user.kind == LP_VERDICT_DENY);
	test_assert_strcmp(user.ban_reason, "sent spam");

	test_assert(lp_ban_clear(ctx, "alice", &err) == 1);
	test_assert(lp_ban_clear(ctx, "alice", &err) == 0);
	lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_ALLOW);

	/* an unreadable ban still bans */
	test_tdb_put("ban/alice", "{\"v\": 7}");
	lp_entitlement_check(ctx, "alice@ubuntu.com", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_DENY &&
		    ent.verdict.reason == LP_DENY_BANNED);
	test_assert(lp_ban_clear(ctx, "alice", &err) == 1);

	test_assert(lp_ban_set(ctx, "../etc", NULL, &err) < 0);
	test_assert(lp_ban_set(ctx, "x", NULL, &err) < 0);
	test_assert(lp_ban_set(ctx, "erin", NULL, &err) == 0);
	lp_entitlement_check(ctx, "erin@ubuntu.com", &ent);
	test_assert_strcmp(ent.verdict.text, "user banned");
	test_assert(lp_ban_clear(ctx, "erin@ubuntu.com", &err) == 1);
	test_end();
}

static int test_collect_user(const char *user, void *context)
{
	char *buf = context;

	strcat(buf, user);
	strcat(buf, " ");
	return 0;
}

static int test_stop_user(const char *user __attribute__((unused)),
			  void *context)
{
	(*(unsigned int *)context)++;
	return -1;
}

static void test_invalidate_and_iterate(void)
{
	static const char *const logins[] = {
		"alice@ubuntu.com", "alice@lubuntu.me", "alice@ubuntu.net",
		"erin@ubuntu.com", "kim@kubuntu.org",
	};
	struct lp_entitlement ent;
	struct lp_cache_user user;
	struct lp_error err;
	char users[512] = "";
	unsigned int calls = 0;

	test_begin("invalidate and iterate");
	test_fresh_start();
	for (unsigned int i = 0; i < sizeof(logins) / sizeof(logins[0]); i++)
		lp_entitlement_check(ctx, logins[i], &ent);

	test_assert(lp_cache_iterate_allowed(ctx, test_collect_user, users,
					     &err) == 0);
	test_assert(strstr(users, "alice@ubuntu.com ") != NULL);
	test_assert(strstr(users, "alice@lubuntu.me ") != NULL);
	test_assert(strstr(users, "alice@ubuntu.net ") != NULL);
	test_assert(strstr(users, "kim@kubuntu.org ") != NULL);
	test_assert(strstr(users, "erin") == NULL);
	test_assert(lp_cache_iterate_allowed(ctx, test_stop_user, &calls,
					     &err) == 0);
	test_assert(calls == 1);

	test_assert(lp_cache_show(ctx, "alice@lubuntu.me", &user, &err) == 1);
	test_assert(user.kind == LP_VERDICT_ALLOW && user.have_person &&
		    user.person == LP_PERSON_OK && user.etag[0] != '\0');
	test_assert(user.expires_at == test_clock + TEST_POSITIVE_TTL);
	test_assert(lp_cache_show(ctx, "erin", &user, &err) == 1);
	test_assert(user.kind == LP_VERDICT_DENY &&
		    user.reason == LP_DENY_NOT_MEMBER);
	test_assert_strcmp(user.user, "erin@ubuntu.com");
	test_assert_strcmp(user.text, "not a member of ~ubuntumembers");
	test_assert(lp_cache_show(ctx, "zz-nobody@ubuntu.com", &user, &err) == 0);
	test_assert(lp_cache_show(ctx, "alice@example.org", &user, &err) < 0);

	/* person + 3 verdicts, whatever the spelling */
	test_assert(lp_cache_invalidate(ctx, "ALICE@ubuntu.com", &err) == 4);
	test_assert(lp_cache_invalidate(ctx, "alice", &err) == 0);
	test_assert(lp_cache_show(ctx, "alice", &user, &err) == 0);
	test_assert(lp_cache_invalidate(ctx, "bad/name", &err) < 0);

	/* allows stay listed through stale_grace, then drop out */
	users[0] = '\0';
	test_clock += TEST_POSITIVE_TTL + TEST_STALE_GRACE - 1;
	test_assert(lp_cache_iterate_allowed(ctx, test_collect_user, users,
					     &err) == 0);
	test_assert_strcmp(users, "kim@kubuntu.org ");
	test_clock += 1;
	users[0] = '\0';
	test_assert(lp_cache_iterate_allowed(ctx, test_collect_user, users,
					     &err) == 0);
	test_assert_strcmp(users, "");
	test_end();
}

static void test_coalescing(void)
{
	pid_t pids[TEST_COALESCE_PROCS];
	int barrier[2], status;
	unsigned int allowed = 0, exited = 0;
	uint64_t start;
	struct lp_error err;

	test_begin("coalescing");
	test_fresh_start();
	/* TDB refuses a second open of one file in a process, and a forked
	   child inherits the parent's: close it across the fork. */
	lp_context_destroy(&ctx);
	lpfake_fault(NULL, "slow", 0, 1.0);
	test_assert(pipe(barrier) == 0);
	fflush(stdout);
	for (unsigned int i = 0; i < TEST_COALESCE_PROCS; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			struct lp_context *child_ctx;
			struct lp_entitlement ent;
			char c;

			close(barrier[1]);
			child_ctx = test_context(config);
			/* wait until every process is ready */
			if (read(barrier[0], &c, 1) < 0)
				_exit(2);
			lp_entitlement_check(child_ctx, "frank@ubuntu.com", &ent);
			lp_context_destroy(&child_ctx);
			_exit(ent.verdict.kind == LP_VERDICT_ALLOW ? 0 : 1);
		}
	}
	close(barrier[0]);
	start = lp_monotonic_msecs();
	close(barrier[1]);
	for (unsigned int i = 0; i < TEST_COALESCE_PROCS; i++) {
		if (pids[i] > 0 && waitpid(pids[i], &status, 0) == pids[i] &&
		    WIFEXITED(status)) {
			exited++;
			if (WEXITSTATUS(status) == 0)
				allowed++;
		}
	}
	test_diag("%u processes in %llu ms", TEST_COALESCE_PROCS,
		  (unsigned long long)(lp_monotonic_msecs() - start));
	test_assert(exited == TEST_COALESCE_PROCS);
	test_assert(allowed == TEST_COALESCE_PROCS);
	test_assert(lpfake_count("/1.0/~frank") == 1);
	test_assert(lpfake_count("/1.0/~ubuntumembers/participants") == 1);
	test_assert(lpfake_count(NULL) == 2);
	ctx = test_context(config);
	test_assert(lp_cache_invalidate_all(ctx, &err) >= 3);
	lpfake_reset();
	test_end();
}

/* dovecot-launchpad-web: every OpenID response_nonce is accepted once,
   and kept only until it would be stale. */
static void test_nonces(void)
{
	static const char *const nonces[] = {
		"2024-05-01T10:00:00Zabc",
		"2024-05-01T10:00:00Zabd",
		"2024-05-01T10:00:01Z~!@#$%^&*()",
	};
	char too_long[300];
	struct lp_error err;

	test_begin("nonces");
	memset(too_long, 'x', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = '\0';
	for (unsigned int i = 0; i < sizeof(nonces) / sizeof(nonces[0]); i++) {
		test_assert_idx(lp_cache_nonce_use(ctx, nonces[i],
						   test_clock + 100, &err) == 1, i);
		test_assert_idx(lp_cache_nonce_use(ctx, nonces[i],
						   test_clock + 100, &err) == 0, i);
	}
	test_assert(lp_cache_nonce_use(ctx, "", test_clock + 100, &err) < 0);
	test_assert(lp_cache_nonce_use(ctx, too_long, test_clock + 100,
				       &err) < 0);
	/* nothing stale yet */
	test_assert(lp_cache_nonce_prune(ctx, &err) == 0);
	test_assert(lp_cache_nonce_use(ctx, "late", test_clock + 200,
				       &err) == 1);
	test_clock += 100;
	/* the first three are stale now: pruned, "late" stays */
	test_assert(lp_cache_nonce_prune(ctx, &err) == 3);
	test_assert(lp_cache_nonce_use(ctx, "late", test_clock + 100,
				       &err) == 0);
	/* a stale record no longer blocks (the timestamp check does) */
	test_clock += 100;
	test_assert(lp_cache_nonce_use(ctx, "late", test_clock + 100,
				       &err) == 1);
	test_end();
}

/* A config of its own (cache_path and web_state_dir in dir), for the
   tests that open the cache from several roles.  The mail user is
   "nobody" with its group. */
static struct lp_config *test_owner_config(const char *dir)
{
	const struct passwd *pw = getpwnam("nobody");
	struct lp_config *cfg;
	struct lp_error err;
	char text[1024];

	if (pw == NULL) {
		printf("Bail out! no user nobody\n");
		exit(99);
	}
	snprintf(text, sizeof(text),
		 "api_url = %s\ncache_path = %s/cache.tdb\n"
		 "web_state_dir = %s/web\nuid = nobody\ngid = %lu\n"
		 "domain ubuntu.com = ubuntumembers\n", test_api_url, dir, dir,
		 (unsigned long)pw->pw_gid);
	if (lp_config_parse("owner.conf", text, &cfg, &err) < 0) {
		printf("Bail out! %s\n", err.text);
		exit(99);
	}
	return cfg;
}

static void test_owner_cleanup(const char *dir)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/cache.tdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/web/web.tdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/web", dir);
	rmdir(path);
	rmdir(dir);
}

/* What auth trusts is written by root only: a root process creates (or
   finds) cache_path owned by root, mode 0640, group the mail gid. */
static void test_cache_root_owned(void)
{
	char dir[] = "/tmp/lp-owner-XXXXXX", path[64];
	const struct passwd *pw = getpwnam("nobody");
	struct lp_config *cfg;
	struct lp_context *c;
	struct lp_error err;
	struct stat st;

	test_begin("cache file: root's, read-only for the mail gid");
	test_assert(mkdtemp(dir) != NULL && pw != NULL);
	cfg = test_owner_config(dir);
	snprintf(path, sizeof(path), "%s/cache.tdb", dir);
	test_assert(lp_context_create(cfg, NULL, &c, &err) == 0);
	test_assert(stat(path, &st) == 0);
	test_assert((st.st_mode & 07777) == 0640);
	if (geteuid() == 0) {
		test_assert(st.st_uid == 0);
		test_assert(st.st_gid == pw->pw_gid);
	} else {
		test_diag("not root: ownership not checked");
		test_assert(st.st_uid == geteuid());
	}
	lp_context_destroy(&c);
	lp_config_free(&cfg);
	test_owner_cleanup(dir);
	test_end();
}

/* A cache some other uid could write (an older version gave it to the
   mail uid) is taken back by the first root process, and what a forger
   could have put in it is dropped; bans stay. */
static void test_cache_taken_back(void)
{
	char dir[] = "/tmp/lp-taken-XXXXXX", path[64], reason[LP_TEXT_MAX];
	const struct passwd *pw = getpwnam("nobody");
	struct lp_verdict_record forged = {
		.kind = LP_VERDICT_ALLOW, .decided_at = 100,
		.expires_at = 2000000000,
	}, rec;
	struct lp_config *cfg;
	struct lp_context *c;
	struct lp_error err;
	struct stat st;

	test_begin("cache file: taken back from the mail uid");
	if (geteuid() != 0) {
		/* only root can hand the file to another uid and back */
		test_diag("not root: the take-over is tested by CI as root");
		test_assert(geteuid() != 0);
		test_end();
		return;
	}
	test_assert(mkdtemp(dir) != NULL && pw != NULL);
	cfg = test_owner_config(dir);
	snprintf(path, sizeof(path), "%s/cache.tdb", dir);
	test_assert(lp_context_create(cfg, NULL, &c, &err) == 0);
	test_assert(lp_cache_verdict_put(c, "erin@ubuntu.com", &forged,
					 &err) == 0);
	test_assert(lp_ban_set(c, "mallory", "spam", &err) == 0);
	lp_context_destroy(&c);
	/* as an older version left it */
	test_assert(chown(path, pw->pw_uid, pw->pw_gid) == 0 &&
		    chmod(path, 0600) == 0);

	test_assert(lp_context_create(cfg, NULL, &c, &err) == 0);
	test_assert(stat(path, &st) == 0 && st.st_uid == 0 &&
		    st.st_gid == pw->pw_gid && (st.st_mode & 07777) == 0640);
	test_assert(lp_cache_verdict_get(c, "erin@ubuntu.com", &rec) == 0);
	test_assert(lp_ban_get(c, "mallory", reason) == 1);
	test_assert_strcmp(reason, "spam");
	lp_context_destroy(&c);
	lp_config_free(&cfg);
	test_owner_cleanup(dir);
	test_end();
}

/* The web daemon's view, run as the mail uid in a child: it reads root's
   bans and facts, writes its own state apart, and cannot write what auth
   trusts.  Exit code: the number of the first failed check. */
static int test_cache_web_child(const struct lp_config *cfg,
				const struct passwd *pw)
{
	struct lp_verdict_record rec, mine = {
		.kind = LP_VERDICT_ALLOW, .decided_at = 500,
		.expires_at = 2000000000,
	};
	struct tdb_context *tdb;
	struct lp_context *c;
	struct lp_error err;
	char reason[LP_TEXT_MAX];
	time_t at;
	int fd;

	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		return 1;
	/* neither TDB nor plain open() lets the mail uid write it */
	fd = open(cfg->cache_path, O_RDWR);
	if (fd >= 0 || errno != EACCES)
		return 2;
	tdb = tdb_open(cfg->cache_path, 0, TDB_DEFAULT, O_RDWR, 0);
	if (tdb != NULL)
		return 3;
	if (lp_context_create_web(cfg, NULL, &c, &err) < 0)
		return 4;
	/* root's ban and its fresher verdict are seen */
	if (lp_ban_get(c, "mallory", reason) != 1 ||
	    strcmp(reason, "spam") != 0)
		return 5;
	if (lp_cache_verdict_get(c, "erin@ubuntu.com", &rec) != 1 ||
	    rec.kind != LP_VERDICT_DENY)
		return 6;
	/* its own older verdict loses to root's; a newer one wins */
	if (lp_cache_verdict_put(c, "erin@ubuntu.com", &mine, &err) < 0 ||
	    lp_cache_verdict_get(c, "erin@ubuntu.com", &rec) != 1 ||
	    rec.kind != LP_VERDICT_DENY)
		return 7;
	mine.decided_at = 1000;
	if (lp_cache_verdict_put(c, "erin@ubuntu.com", &mine, &err) < 0 ||
	    lp_cache_verdict_get(c, "erin@ubuntu.com", &rec) != 1 ||
	    rec.kind != LP_VERDICT_ALLOW)
		return 8;
	/* root's "last used" stamps are read; bans cannot be set here */
	if (lp_cache_slot_last_used(c, "alice@ubuntu.com", "00aa", 1,
				    &at) != 1 || at != 4242)
		return 9;
	if (lp_cache_nonce_use(c, "n1", 2000000000, &err) != 1)
		return 10;
	lp_context_destroy(&c);
	return 0;
}

static void test_cache_web_role(void)
{
	char dir[] = "/tmp/lp-web-XXXXXX", path[64];
	const struct passwd *pw = getpwnam("nobody");
	struct lp_verdict_record root_deny = {
		.kind = LP_VERDICT_DENY, .reason = LP_DENY_NOT_MEMBER,
		.text = "not a member of ~ubuntumembers",
		.decided_at = 700, .expires_at = 2000000000,
	}, rec;
	struct lp_config *cfg;
	struct lp_context *c;
	struct lp_error err;
	struct stat st;
	time_t saved_clock = test_clock;
	int status;
	pid_t pid;

	test_begin("cache file: the web daemon (mail uid) cannot write it");
	if (geteuid() != 0) {
		test_diag("not root: the mail uid is tested by CI as root");
		test_assert(geteuid() != 0);
		test_end();
		return;
	}
	test_assert(mkdtemp(dir) != NULL && pw != NULL);
	test_assert(chmod(dir, 0755) == 0);
	cfg = test_owner_config(dir);
	snprintf(path, sizeof(path), "%s/web", dir);
	test_assert(mkdir(path, 0700) == 0 &&
		    chown(path, pw->pw_uid, pw->pw_gid) == 0);
	test_clock = 1000;
	test_assert(lp_context_create(cfg, NULL, &c, &err) == 0);
	test_assert(lp_ban_set(c, "mallory", "spam", &err) == 0);
	test_assert(lp_cache_verdict_put(c, "erin@ubuntu.com", &root_deny,
					 &err) == 0);
	c->now = test_now;
	test_clock = 4242;
	test_assert(lp_cache_slot_used(c, "alice@ubuntu.com", "00aa", 1,
				       &err) == 1);
	/* closed: one process may not hold a TDB twice */
	lp_context_destroy(&c);

	pid = fork();
	if (pid == 0)
		_exit(test_cache_web_child(cfg, pw));
	test_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
	test_assert_idx(WEXITSTATUS(status) == 0, WEXITSTATUS(status));

	/* the web daemon's state is its own file; root's is unchanged */
	snprintf(path, sizeof(path), "%s/web/web.tdb", dir);
	test_assert(stat(path, &st) == 0 && st.st_uid == pw->pw_uid &&
		    (st.st_mode & 07777) == 0600);
	test_assert(lp_context_create(cfg, NULL, &c, &err) == 0);
	test_assert(lp_cache_verdict_get(c, "erin@ubuntu.com", &rec) == 1 &&
		    rec.kind == LP_VERDICT_DENY && rec.decided_at == 700);
	test_assert(lp_cache_nonce_prune(c, &err) == 0);
	lp_context_destroy(&c);
	test_clock = saved_clock;
	lp_config_free(&cfg);
	test_owner_cleanup(dir);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_records_round_trip,
		test_expiry,
		test_corrupt_records,
		test_bans,
		test_invalidate_and_iterate,
		test_coalescing,
		test_nonces,
		test_cache_root_owned,
		test_cache_taken_back,
		test_cache_web_role,
		NULL
	};
	return test_lpfake_main(test_run, tests, NULL, TEST_POSITIVE_TTL,
				TEST_NEGATIVE_TTL, TEST_STALE_GRACE, 10,
				&config, &ctx);
}
