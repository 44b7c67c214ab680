/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* lp_sync_run() and the admin records (issue 5) against tests/lpfake.py
   and a real TDB: membership changes between two syncs, one paged fetch
   per team, partial failure, the sync lock, notification markers, "last
   used" stamps, lists and counts.  Fake clock: no waiting. */

#include "test-lpfake.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_POSITIVE_TTL 3600
#define TEST_NEGATIVE_TTL 600
#define TEST_STALE_GRACE 7200
/* --generate-team adds this many to ~ubuntumembers (fixed seed). */
#define TEST_BIG_TEAM_SPEC "ubuntumembers:2000:5"
#define TEST_BIG_TEAM_PAGES 7	/* ceil((2000 + 11) / 300) */
#define TEST_MAX_CHANGES 32

static struct lp_config *config;
static struct lp_context *ctx;

struct test_changes {
	unsigned int count;
	char user[TEST_MAX_CHANGES][LP_USER_MAX + 1];
	enum lp_sync_change_kind kind[TEST_MAX_CHANGES];
	enum lp_deny_reason reason[TEST_MAX_CHANGES];
};

static int test_collect(const struct lp_sync_change *change, void *context)
{
	struct test_changes *changes = context;

	if (changes->count < TEST_MAX_CHANGES) {
		snprintf(changes->user[changes->count], LP_USER_MAX + 1, "%s",
			 change->user);
		changes->kind[changes->count] = change->kind;
		changes->reason[changes->count] = change->reason;
		changes->count++;
	}
	return 0;
}

/* The kind reported for user, or -1 if it was not reported. */
static int test_kind_of(const struct test_changes *changes, const char *user)
{
	for (unsigned int i = 0; i < changes->count; i++) {
		if (strcmp(changes->user[i], user) == 0)
			return (int)changes->kind[i];
	}
	return -1;
}

static unsigned int test_participant_requests(const char *team)
{
	char path[128];

	snprintf(path, sizeof(path), "/1.0/~%s/participants", team);
	return lpfake_count(path);
}

static void test_fresh_start(void)
{
	lpfake_reset();
	lp_context_destroy(&ctx);
	test_cache_remove();
	ctx = test_context(config);
}

static void test_login(const char *login, enum lp_verdict_kind kind)
{
	struct lp_entitlement ent;

	lp_entitlement_check(ctx, login, &ent);
	test_assert_idx(ent.verdict.kind == kind, kind);
}

static void test_sync_membership(void)
{
	static const char *const teams[] = {
		"ubuntumembers", "kubuntu-members", "lubuntu-members",
		"edubuntu-members", "ubuntustudio-core", "ubuntu-smtp-test",
	};
	struct test_changes changes = { .count = 0 };
	struct lp_sync_result result;
	struct lp_entitlement ent;
	struct lp_error err;

	test_begin("sync: membership added and removed between two syncs");
	test_fresh_start();
	test_login("alice@ubuntu.com", LP_VERDICT_ALLOW);
	test_login("kim@kubuntu.org", LP_VERDICT_ALLOW);
	test_login("erin@lubuntu.me", LP_VERDICT_DENY);
	lpfake_reset();

	test_assert(lp_sync_run(ctx, test_collect, &changes, &result,
				&err) == 1);
	test_assert(!result.partial && result.users == 3);
	test_assert(result.teams == 6 && result.teams_failed == 0);
	/* one paged fetch per team, never one per user */
	test_assert(test_participant_requests("ubuntumembers") ==
		    TEST_BIG_TEAM_PAGES);
	for (unsigned int i = 1; i < sizeof(teams) / sizeof(*teams); i++)
		test_assert_idx(test_participant_requests(teams[i]) == 1, i);
	test_assert(lpfake_count("/1.0/~alice") == 1);
	test_assert(test_kind_of(&changes, "alice@ubuntu.com") ==
		    LP_SYNC_ALLOWED);
	test_assert(test_kind_of(&changes, "kim@kubuntu.org") ==
		    LP_SYNC_ALLOWED);
	test_assert(test_kind_of(&changes, "erin@lubuntu.me") == LP_SYNC_SAME);
	test_assert(result.newly_allowed == 2 && result.newly_denied == 0);

	/* kim leaves ~kubuntu-members, erin joins ~lubuntu-members */
	test_assert(lpfake_post("/_fake/team", "{\"team\": \"kubuntu-members\", "
				"\"members\": []}") == 200);
	test_assert(lpfake_post("/_fake/team", "{\"team\": \"lubuntu-members\", "
				"\"members\": [\"lena\", \"alice\", \"erin\"]}") == 200);
	memset(&changes, 0, sizeof(changes));
	test_clock += 60;
	test_assert(lp_sync_run(ctx, test_collect, &changes, &result,
				&err) == 1);
	test_assert(test_kind_of(&changes, "kim@kubuntu.org") ==
		    LP_SYNC_DENIED);
	test_assert(test_kind_of(&changes, "erin@lubuntu.me") ==
		    LP_SYNC_ALLOWED);
	test_assert(test_kind_of(&changes, "alice@ubuntu.com") == LP_SYNC_SAME);
	test_assert(result.newly_allowed == 1 && result.newly_denied == 1);

	/* the next login sees it at once, from the cache */
	lpfake_reset();
	lp_entitlement_check(ctx, "kim@kubuntu.org", &ent);
	test_assert(ent.verdict.kind == LP_VERDICT_DENY &&
		    ent.verdict.reason == LP_DENY_NOT_MEMBER);
	test_assert(lpfake_count(NULL) == 0);

	/* a third sync reports no change */
	memset(&changes, 0, sizeof(changes));
	test_assert(lp_sync_run(ctx, test_collect, &changes, &result,
				&err) == 1);
	test_assert(result.newly_allowed == 0 && result.newly_denied == 0);
	test_assert(test_kind_of(&changes, "kim@kubuntu.org") == LP_SYNC_SAME);

	test_assert(lpfake_post("/_fake/team", "{\"team\": \"kubuntu-members\", "
				"\"members\": [\"kim\"]}") == 200);
	test_assert(lpfake_post("/_fake/team", "{\"team\": \"lubuntu-members\", "
				"\"members\": [\"lena\", \"alice\"]}") == 200);
	test_end();
}

static void test_sync_login_saw_it_first(void)
{
	struct test_changes changes = { .count = 0 };
	struct lp_sync_result result;
	struct lp_error err;

	test_begin("sync: a transition already stored by a login is reported");
	test_fresh_start();
	test_login("kim@kubuntu.org", LP_VERDICT_ALLOW);
	test_assert(lp_sync_run(ctx, NULL, NULL, &result, &err) == 1);
	test_assert(lpfake_post("/_fake/team", "{\"team\": \"kubuntu-members\", "
				"\"members\": []}") == 200);
	/* the login after the TTL stores the deny before any sync runs */
	test_clock += TEST_POSITIVE_TTL + 1;
	test_login("kim@kubuntu.org", LP_VERDICT_DENY);
	test_assert(lp_sync_run(ctx, test_collect, &changes, &result,
				&err) == 1);
	test_assert(test_kind_of(&changes, "kim@kubuntu.org") ==
		    LP_SYNC_DENIED);
	test_assert(lpfake_post("/_fake/team", "{\"team\": \"kubuntu-members\", "
				"\"members\": [\"kim\"]}") == 200);
	test_end();
}

static void test_sync_partial(void)
{
	struct test_changes changes = { .count = 0 };
	struct lp_sync_result result, last;
	struct lp_verdict_record rec;
	struct lp_error err;

	test_begin("sync: one team failing applies the others");
	test_fresh_start();
	test_login("alice@ubuntu.com", LP_VERDICT_ALLOW);
	test_login("kim@kubuntu.org", LP_VERDICT_ALLOW);
	test_assert(lp_cache_verdict_get(ctx, "kim@kubuntu.org", &rec) == 1);
	lpfake_fault("/~kubuntu-members/participants", "500", 0, 0);
	test_clock += 60;
	test_assert(lp_sync_run(ctx, test_collect, &changes, &result,
				&err) == 1);
	test_assert(result.partial && result.teams_failed == 1);
	test_assert(result.failed == 1);
	test_assert(test_kind_of(&changes, "kim@kubuntu.org") ==
		    LP_SYNC_FAILED);
	test_assert(test_kind_of(&changes, "alice@ubuntu.com") ==
		    LP_SYNC_ALLOWED);
	/* kim's old verdict is untouched */
	{
		struct lp_verdict_record rec2;

		test_assert(lp_cache_verdict_get(ctx, "kim@kubuntu.org",
						 &rec2) == 1);
		test_assert(rec2.decided_at == rec.decided_at);
	}
	test_assert(lp_sync_last_put(ctx, &result, &err) == 0);
	test_assert(lp_sync_last(ctx, &last) == 1);
	test_assert(last.partial && last.teams_failed == 1 &&
		    last.started == result.started && last.users == 2 &&
		    last.http_requests == result.http_requests);
	lpfake_reset();
	test_end();
}

static void test_sync_lock(void)
{
	struct lp_sync_result result;
	struct lp_error err;
	char path[256];
	int fd;

	test_begin("sync: a second sync does nothing while one runs");
	test_fresh_start();
	snprintf(path, sizeof(path), "%s.sync", config->cache_path);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	test_assert(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0);
	test_assert(lp_sync_run(ctx, NULL, NULL, &result, &err) == 0);
	test_assert(lpfake_count(NULL) == 0);
	close(fd);
	test_assert(lp_sync_run(ctx, NULL, NULL, &result, &err) == 1);
	test_end();
}

static void test_notify_markers(void)
{
	struct lp_error err;

	test_begin("notify markers: once per 30 days, cleared on change");
	test_fresh_start();
	test_assert(lp_notify_pending(ctx, "kim@kubuntu.org", "entitled") == 1);
	test_assert(lp_notify_mark(ctx, "kim@kubuntu.org", "entitled",
				   &err) == 0);
	test_assert(lp_notify_pending(ctx, "kim@kubuntu.org", "entitled") == 0);
	test_assert(lp_notify_pending(ctx, "kim@kubuntu.org", "denied") == 1);
	test_assert(lp_notify_pending(ctx, "kim@ubuntu.com", "entitled") == 1);
	test_clock += LP_NOTIFY_DEDUP_SECS - 1;
	test_assert(lp_notify_pending(ctx, "kim@kubuntu.org", "entitled") == 0);
	test_clock += 1;
	test_assert(lp_notify_pending(ctx, "kim@kubuntu.org", "entitled") == 1);
	test_assert(lp_notify_mark(ctx, "kim@kubuntu.org", "entitled",
				   &err) == 0);
	test_assert(lp_notify_clear(ctx, "kim@kubuntu.org", &err) == 1);
	test_assert(lp_notify_pending(ctx, "kim@kubuntu.org", "entitled") == 1);
	test_end();
}

#define TEST_NOTIFY_TO "admin@example.org"
#define TEST_QUEUE_MAX 8

struct test_queue {
	unsigned int count;
	struct lp_notify_event events[TEST_QUEUE_MAX];
};

static int test_queue_cb(const struct lp_notify_event *event, void *context)
{
	struct test_queue *queue = context;

	if (queue->count < TEST_QUEUE_MAX)
		queue->events[queue->count] = *event;
	queue->count++;
	return 0;
}

static void test_queue_read(struct test_queue *queue_r)
{
	struct lp_error err;

	memset(queue_r, 0, sizeof(*queue_r));
	test_assert(lp_notify_queue_list(ctx, test_queue_cb, queue_r,
					 &err) == 0);
}

static void test_notify_queue_refused(void)
{
	static const struct {
		const char *user, *event;
	} bad[] = {
		{ "Alice@ubuntu.com", LP_NOTIFY_ACTIVATED },	/* not canonical */
		{ "alice", LP_NOTIFY_ACTIVATED },		/* no domain */
		{ "alice@example.com", LP_NOTIFY_ACTIVATED },	/* not configured */
		{ "a@ubuntu.com", LP_NOTIFY_ACTIVATED },	/* not a name */
		{ "al/ce@ubuntu.com", LP_NOTIFY_ACTIVATED },
		{ "alice@ubuntu.com", "" },
		{ "alice@ubuntu.com", "Activated" },
		{ "alice@ubuntu.com", "act/ivated" },
		{ "alice@ubuntu.com", "a-very-long-event-word-of-33-char" },
	};
	struct test_queue queue;
	struct lp_error err;

	test_begin("notify queue: bad user or event word refused");
	test_fresh_start();
	config->notify_to = strdup(TEST_NOTIFY_TO);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		test_assert_idx(lp_notify_queue(ctx, bad[i].user, bad[i].event,
						NULL, test_clock, &err) < 0 &&
				err.kind == LP_ERR_INTERNAL, i);
		test_assert_idx(lp_notify_dequeue(ctx, bad[i].user,
						  bad[i].event, &err) < 0, i);
	}
	test_queue_read(&queue);
	test_assert(queue.count == 0);
	free(config->notify_to);
	config->notify_to = NULL;
	test_end();
}

static void test_notify_queue(void)
{
	struct test_queue queue;
	struct lp_error err;
	time_t t0;

	test_begin("notify queue: once per (user, event), oldest first");
	test_fresh_start();
	/* without notify_to nobody reads the queue: nothing is stored */
	test_assert(lp_notify_queue(ctx, "alice@ubuntu.com",
				    LP_NOTIFY_ACTIVATED, NULL, test_clock,
				    &err) == 0);
	test_queue_read(&queue);
	test_assert(queue.count == 0);

	config->notify_to = strdup(TEST_NOTIFY_TO);
	t0 = test_clock;
	test_assert(lp_notify_queue(ctx, "alice@ubuntu.com",
				    LP_NOTIFY_ACTIVATED, "web\r\nentitled x",
				    t0 + 10, &err) == 0);
	/* queued again: the first time and text stay */
	test_assert(lp_notify_queue(ctx, "alice@ubuntu.com",
				    LP_NOTIFY_ACTIVATED, "doveadm", t0 + 20,
				    &err) == 0);
	test_assert(lp_notify_queue(ctx, "kim@kubuntu.org",
				    LP_NOTIFY_ACTIVATED, NULL, t0, &err) == 0);
	test_assert(lp_notify_queue(ctx, "alice@lubuntu.me",
				    LP_NOTIFY_ACTIVATED, "", t0 + 10,
				    &err) == 0);
	test_queue_read(&queue);
	test_assert(queue.count == 3);
	test_assert_strcmp(queue.events[0].user, "kim@kubuntu.org");
	test_assert(queue.events[0].at == t0);
	test_assert_strcmp(queue.events[0].text, "");
	/* same time: by user */
	test_assert_strcmp(queue.events[1].user, "alice@lubuntu.me");
	test_assert_strcmp(queue.events[2].user, "alice@ubuntu.com");
	test_assert_strcmp(queue.events[2].event, LP_NOTIFY_ACTIVATED);
	test_assert(queue.events[2].at == t0 + 10);
	/* a line break in the text cannot forge another mail line */
	test_assert_strcmp(queue.events[2].text, "web??entitled x");

	/* markers are another key space: clearing them keeps the queue */
	test_assert(lp_notify_mark(ctx, "alice@ubuntu.com",
				   LP_NOTIFY_ACTIVATED, &err) == 0);
	test_assert(lp_notify_pending(ctx, "alice@ubuntu.com",
				      LP_NOTIFY_ACTIVATED) == 0);
	test_assert(lp_notify_clear(ctx, "alice@ubuntu.com", &err) == 1);
	test_queue_read(&queue);
	test_assert(queue.count == 3);

	test_assert(lp_notify_dequeue(ctx, "alice@ubuntu.com",
				      LP_NOTIFY_ACTIVATED, &err) == 1);
	test_assert(lp_notify_dequeue(ctx, "alice@ubuntu.com",
				      LP_NOTIFY_ACTIVATED, &err) == 0);
	test_queue_read(&queue);
	test_assert(queue.count == 2);
	test_assert_strcmp(queue.events[1].user, "alice@lubuntu.me");
	free(config->notify_to);
	config->notify_to = NULL;
	test_end();
}

static void test_notify_queue_unreadable(void)
{
	static const char *const bad_records[][2] = {
		{ "notifyq/bob@ubuntu.com/activated", "not json" },
		{ "notifyq/bob@ubuntu.com/entitled",
		  "{\"v\":1,\"kind\":\"notifyq\",\"at\":\"soon\"}" },
		/* readable, but a key lp_notify_dequeue() could not name */
		{ "notifyq/Bob@ubuntu.com/activated",
		  "{\"v\":1,\"kind\":\"notifyq\",\"at\":1,\"text\":\"\"}" },
	};
	struct test_queue queue;
	struct lp_error err;
	TDB_DATA key, data;

	test_begin("notify queue: unreadable records are dropped");
	test_fresh_start();
	config->notify_to = strdup(TEST_NOTIFY_TO);
	test_assert(lp_notify_queue(ctx, "kim@kubuntu.org",
				    LP_NOTIFY_ACTIVATED, NULL, test_clock,
				    &err) == 0);
	for (unsigned int i = 0; i < sizeof(bad_records) /
		     sizeof(bad_records[0]); i++) {
		key.dptr = (unsigned char *)bad_records[i][0];
		key.dsize = strlen(bad_records[i][0]);
		data.dptr = (unsigned char *)bad_records[i][1];
		data.dsize = strlen(bad_records[i][1]);
		test_assert_idx(tdb_store(ctx->tdb, key, data,
					  TDB_REPLACE) == 0, i);
	}
	test_queue_read(&queue);
	test_assert(queue.count == 1);
	test_assert_strcmp(queue.events[0].user, "kim@kubuntu.org");
	for (unsigned int i = 0; i < sizeof(bad_records) /
		     sizeof(bad_records[0]); i++) {
		key.dptr = (unsigned char *)bad_records[i][0];
		key.dsize = strlen(bad_records[i][0]);
		test_assert_idx(tdb_exists(ctx->tdb, key) == 0, i);
	}
	free(config->notify_to);
	config->notify_to = NULL;
	test_end();
}

/* Writes name in the web daemon's spool with content (NULL: a FIFO). */
static void test_spool_put(const char *name, const char *content)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/web/notify/%s", test_dir, name);
	if (content == NULL) {
		test_assert(mkfifo(path, 0600) == 0);
		return;
	}
	f = fopen(path, "w");
	test_assert(f != NULL && fputs(content, f) >= 0 && fclose(f) == 0);
}

/* The web daemon (its own context, in a child: a process holds a TDB
   once) queues into web_state_dir/notify; the sync lists those events
   with its own and removes them once mailed; anything odd in the spool
   (it belongs to the mail uid) is skipped, and a FIFO never blocks. */
static void test_notify_web_spool(void)
{
	char path[256], big[8192];
	struct test_queue queue;
	struct lp_context *web;
	struct lp_error err;
	int status;
	pid_t pid;

	test_begin("notify queue: the web daemon's spool, read as hostile");
	test_fresh_start();
	config->notify_to = strdup(TEST_NOTIFY_TO);
	pid = fork();
	if (pid == 0) {
		/* (the parent's handle of cache_path is not ours to keep) */
		lp_context_destroy(&ctx);
		if (lp_context_create_web(config, NULL, &web, &err) < 0 ||
		    lp_notify_queue(web, "eddie@edubuntu.org",
				    LP_NOTIFY_ACTIVATED, "on the page\n!",
				    test_clock + 5, &err) < 0 ||
		    /* queued again: the first stays */
		    lp_notify_queue(web, "eddie@edubuntu.org",
				    LP_NOTIFY_ACTIVATED, "twice",
				    test_clock + 9, &err) < 0 ||
		    lp_notify_queue(web, "Eddie@edubuntu.org",
				    LP_NOTIFY_ACTIVATED, "", 1, &err) == 0)
			_exit(1);
		lp_context_destroy(&web);
		_exit(0);
	}
	test_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0);
	/* hostile neighbours */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	test_spool_put("activated.kim@kubuntu.org", big);
	test_spool_put("activated.bob@ubuntu.com", "not json");
	test_spool_put("activated.Bob@ubuntu.com",
		       "{\"v\":1,\"at\":1,\"text\":\"\"}");
	test_spool_put("activated.frank@ubuntu.com",
		       "{\"v\":1,\"at\":1,\"text\":\"\",\"x\":1}");
	test_spool_put("activated.erin@ubuntu.com", NULL);
	snprintf(path, sizeof(path), "%s/web/notify/activated.dave@ubuntu.com",
		 test_dir);
	test_assert(symlink("/etc/passwd", path) == 0);
	test_assert(lp_notify_queue(ctx, "kim@kubuntu.org",
				    LP_NOTIFY_ACTIVATED, "doveadm",
				    test_clock + 1, &err) == 0);

	test_queue_read(&queue);
	test_assert(queue.count == 2);
	test_assert_strcmp(queue.events[0].user, "kim@kubuntu.org");
	test_assert_strcmp(queue.events[0].text, "doveadm");
	test_assert_strcmp(queue.events[1].user, "eddie@edubuntu.org");
	test_assert(queue.events[1].at == test_clock + 5);
	test_assert_strcmp(queue.events[1].text, "on the page?!");
	/* mailed: gone from both places */
	test_assert(lp_notify_dequeue(ctx, "eddie@edubuntu.org",
				      LP_NOTIFY_ACTIVATED, &err) == 1);
	snprintf(path, sizeof(path), "%s/web/notify/activated."
		 "eddie@edubuntu.org", test_dir);
	test_assert(access(path, F_OK) < 0 && errno == ENOENT);
	test_queue_read(&queue);
	test_assert(queue.count == 1);
	/* the symlink's target was never touched */
	test_assert(lp_notify_dequeue(ctx, "dave@ubuntu.com",
				      LP_NOTIFY_ACTIVATED, &err) == 1);
	test_assert(access("/etc/passwd", F_OK) == 0);
	test_assert(lp_notify_dequeue(ctx, "kim@kubuntu.org",
				      LP_NOTIFY_ACTIVATED, &err) == 1);
	free(config->notify_to);
	config->notify_to = NULL;
	test_end();
}

static void test_notify_lock(void)
{
	struct lp_error err;
	char path[256];
	int fd = -1, other;

	test_begin("notify lock: one holder across processes");
	test_fresh_start();
	test_assert(lp_notify_lock(ctx, &fd, &err) == 0 && fd >= 0);
	snprintf(path, sizeof(path), "%s.notify", config->cache_path);
	other = open(path, O_RDWR);
	test_assert(other >= 0);
	/* another open file description: what a second process sees */
	test_assert(flock(other, LOCK_EX | LOCK_NB) < 0 &&
		    errno == EWOULDBLOCK);
	lp_notify_unlock(&fd);
	test_assert(fd == -1);
	lp_notify_unlock(&fd);
	test_assert(flock(other, LOCK_EX | LOCK_NB) == 0);
	close(other);
	test_end();
}

static void test_slot_used(void)
{
	static const char k1[] = "0123456789abcdef", k2[] = "fedcba9876543210";
	struct lp_error err;
	time_t at;

	test_begin("slot last used: throttled stamps, per keyfile");
	test_fresh_start();
	test_assert(lp_cache_slot_last_used(ctx, "alice@ubuntu.com", k1, 1,
					    &at) == 0 && at == 0);
	test_assert(lp_cache_slot_used(ctx, "alice@ubuntu.com", k1, 1,
				       &err) == 1);
	test_assert(lp_cache_slot_last_used(ctx, "alice@ubuntu.com", k1, 1,
					    &at) == 1 && at == test_clock);
	test_clock += LP_SLOT_USED_THROTTLE_SECS - 1;
	test_assert(lp_cache_slot_used(ctx, "alice@ubuntu.com", k1, 1,
				       &err) == 0);
	test_clock += 1;
	test_assert(lp_cache_slot_used(ctx, "alice@ubuntu.com", k1, 1,
				       &err) == 1);
	test_assert(lp_cache_slot_last_used(ctx, "alice@ubuntu.com", k1, 1,
					    &at) == 1 && at == test_clock);
	/* a new keyfile (a reset) starts its slot ids again: its slot 1
	   was never used */
	test_assert(lp_cache_slot_last_used(ctx, "alice@ubuntu.com", k2, 1,
					    &at) == 0 && at == 0);
	test_assert(lp_cache_slot_used(ctx, "alice@ubuntu.com", k1, 12,
				       &err) == 1);
	test_assert(lp_cache_slot_used(ctx, "alice@lubuntu.me", k1, 1,
				       &err) == 1);
	test_assert(lp_cache_slot_forget(ctx, "alice@ubuntu.com", k1, 1,
					 &err) == 1);
	test_assert(lp_cache_slot_last_used(ctx, "alice@ubuntu.com", k1, 1,
					    &at) == 0);
	/* "slot 1" must not also forget slot 12, nor another domain */
	test_assert(lp_cache_slot_last_used(ctx, "alice@ubuntu.com", k1, 12,
					    &at) == 1);
	test_assert(lp_cache_slot_forget(ctx, "alice@ubuntu.com", NULL,
					 LP_SLOT_ALL, &err) == 1);
	test_assert(lp_cache_slot_last_used(ctx, "alice@lubuntu.me", k1, 1,
					    &at) == 1);
	/* malformed keyfile ids and users never make a key */
	test_assert(lp_cache_slot_used(ctx, "alice@ubuntu.com", "../x", 1,
				       &err) == -1);
	test_assert(lp_cache_slot_used(ctx, "alice@ubuntu.com", NULL, 1,
				       &err) == -1);
	test_assert(lp_cache_slot_used(ctx, "al/ice@ubuntu.com", k1, 1,
				       &err) == -1);
	test_end();
}

struct test_list {
	unsigned int count;
	bool saw_alice_allow, saw_erin_deny, saw_ban;
};

static int test_list_cb(const struct lp_cache_user *entry, void *context)
{
	struct test_list *list = context;

	list->count++;
	if (strcmp(entry->user, "alice@ubuntu.com") == 0 &&
	    entry->kind == LP_VERDICT_ALLOW && entry->decided_at == test_clock)
		list->saw_alice_allow = true;
	if (strcmp(entry->user, "erin@ubuntu.com") == 0 &&
	    entry->kind == LP_VERDICT_DENY &&
	    entry->reason == LP_DENY_NOT_MEMBER)
		list->saw_erin_deny = true;
	return 0;
}

static int test_ban_cb(const struct lp_ban_entry *ban, void *context)
{
	struct test_list *list = context;

	list->count++;
	if (strcmp(ban->name, "gina") == 0 &&
	    strcmp(ban->reason, "spam") == 0 && ban->set_at == test_clock)
		list->saw_ban = true;
	return 0;
}

static void test_lists_and_counts(void)
{
	struct test_list list = { .count = 0 }, bans = { .count = 0 };
	struct lp_cache_counts counts;
	struct lp_error err;

	test_begin("cache list, ban list, counts");
	test_fresh_start();
	test_login("alice@ubuntu.com", LP_VERDICT_ALLOW);
	test_login("erin@ubuntu.com", LP_VERDICT_DENY);
	test_login("kim@kubuntu.org", LP_VERDICT_ALLOW);
	test_assert(lp_ban_set(ctx, "gina", "spam", &err) == 0);
	test_assert(lp_cache_list(ctx, test_list_cb, &list, &err) == 0);
	test_assert(list.count == 3 && list.saw_alice_allow &&
		    list.saw_erin_deny);
	test_assert(lp_ban_list(ctx, test_ban_cb, &bans, &err) == 0);
	test_assert(bans.count == 1 && bans.saw_ban);

	test_clock += TEST_POSITIVE_TTL;
	test_assert(lp_cache_count(ctx, &counts, &err) == 0);
	test_assert(counts.allow == 0 && counts.allow_expired == 2 &&
		    counts.deny == 1 && counts.bans == 1);
	test_assert(counts.persons == 3 && counts.teams == 2);
	test_assert(lp_ban_clear(ctx, "gina", &err) == 1);
	test_end();
}

static void test_ping(void)
{
	struct lp_error err;
	unsigned int msecs;
	long status;

	test_begin("ping: one GET of the first domain's team");
	test_fresh_start();
	test_assert(lp_ping(ctx, &status, &msecs, &err) == 0 && status == 200);
	test_assert(lpfake_count("/1.0/~ubuntumembers") == 1);
	lpfake_fault("/~ubuntumembers$", "404", 1, 0);
	test_assert(lp_ping(ctx, &status, &msecs, &err) == 0 && status == 404);
	lpfake_fault(NULL, "503", 0, 0);
	test_assert(lp_ping(ctx, &status, &msecs, &err) < 0 &&
		    err.kind == LP_ERR_TEMP);
	lpfake_reset();
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_sync_membership,
		test_sync_login_saw_it_first,
		test_sync_partial,
		test_sync_lock,
		test_notify_markers,
		test_notify_queue_refused,
		test_notify_queue,
		test_notify_queue_unreadable,
		test_notify_web_spool,
		test_notify_lock,
		test_slot_used,
		test_lists_and_counts,
		test_ping,
		NULL
	};
	static const char *const args[] = {
		"--generate-team", TEST_BIG_TEAM_SPEC, NULL
	};
	return test_lpfake_main(test_run, tests, args, TEST_POSITIVE_TTL,
				TEST_NEGATIVE_TTL, TEST_STALE_GRACE, 10,
				&config, &ctx);
}
