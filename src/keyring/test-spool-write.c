/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "test-keyring.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

/* kr_spool_append_*() under failing and dying syscalls.  The program is
   linked with ld --wrap for write, fdatasync, ftruncate and fsync (see
   Makefile.am): the Nth call of one of them can fail with an errno, or
   the process can die there (a child _exit()s inside the call, a write
   having put half its bytes down first, as a power cut or SIGKILL would
   leave them).  What must hold:
   - a failed append leaves the spool byte for byte as it was;
   - after a death, the spool holds the records it had, then whole new
     records, then at most one torn tail, never a damaged stretch; the
     next append cuts the tail and every record opens. */

enum test_call {
	TEST_CALL_WRITE,
	TEST_CALL_FDATASYNC,
	TEST_CALL_FTRUNCATE,
	TEST_CALL_FSYNC,

	TEST_CALL_COUNT
};

static const char *const test_call_names[TEST_CALL_COUNT] = {
	[TEST_CALL_WRITE] = "write",
	[TEST_CALL_FDATASYNC] = "fdatasync",
	[TEST_CALL_FTRUNCATE] = "ftruncate",
	[TEST_CALL_FSYNC] = "fsync",
};

#define TEST_DIE_EXIT 42
#define TEST_DONE_EXIT 43
#define TEST_MESSAGES 3

static struct {
	bool armed;
	enum test_call call;
	unsigned int nth;
	int error;
	/* Die (_exit) at the Nth call instead of failing it. */
	bool die;
	bool short_writes;
	unsigned int calls[TEST_CALL_COUNT];
} test_fault;

ssize_t __real_write(int fd, const void *buf, size_t count);
int __real_fdatasync(int fd);
int __real_ftruncate(int fd, off_t length);
int __real_fsync(int fd);
ssize_t __wrap_write(int fd, const void *buf, size_t count);
int __wrap_fdatasync(int fd);
int __wrap_ftruncate(int fd, off_t length);
int __wrap_fsync(int fd);

static void test_fault_arm(enum test_call call, unsigned int nth, int error,
			   bool die)
{
	memset(&test_fault, 0, sizeof(test_fault));
	test_fault.armed = true;
	test_fault.call = call;
	test_fault.nth = nth;
	test_fault.error = error;
	test_fault.die = die;
}

/* Counts the call; true if this one is to fail (or die). */
static bool test_fault_hit(enum test_call call)
{
	if (!test_fault.armed)
		return false;
	test_fault.calls[call]++;
	if (test_fault.nth == 0 || call != test_fault.call ||
	    test_fault.calls[call] != test_fault.nth)
		return false;
	errno = test_fault.error;
	return true;
}

ssize_t __wrap_write(int fd, const void *buf, size_t count)
{
	if (test_fault_hit(TEST_CALL_WRITE)) {
		if (test_fault.die) {
			/* Half of it reached the file, then the end. */
			(void)__real_write(fd, buf, count / 2);
			_exit(TEST_DIE_EXIT);
		}
		return -1;
	}
	if (test_fault.armed && test_fault.short_writes && count > 1000)
		count = 1000;
	return __real_write(fd, buf, count);
}

int __wrap_fdatasync(int fd)
{
	if (test_fault_hit(TEST_CALL_FDATASYNC)) {
		if (test_fault.die)
			_exit(TEST_DIE_EXIT);
		return -1;
	}
	return __real_fdatasync(fd);
}

int __wrap_ftruncate(int fd, off_t length)
{
	if (test_fault_hit(TEST_CALL_FTRUNCATE)) {
		if (test_fault.die)
			_exit(TEST_DIE_EXIT);
		return -1;
	}
	return __real_ftruncate(fd, length);
}

int __wrap_fsync(int fd)
{
	if (test_fault_hit(TEST_CALL_FSYNC)) {
		if (test_fault.die)
			_exit(TEST_DIE_EXIT);
		return -1;
	}
	return __real_fsync(fd);
}

static unsigned char test_pk[KR_PUBLIC_KEY_BYTES];
/* kr_spool_append_offset() of the last delivery. */
static uint64_t test_last_offset;

static uint64_t test_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static unsigned char test_sk[KR_SECRET_KEY_BYTES];

/* Message i of a delivery: a few KiB, so that short writes loop. */
static void test_message(unsigned int i, char *buf, size_t size,
			 size_t *len_r)
{
	size_t len = 0;

	while (len + 64 < size && len < 3000 + i * 700) {
		len += (size_t)snprintf(buf + len, size - len,
					"Line %zu of message %u\r\n", len, i);
	}
	*len_r = len;
}

/* Appends messages [first, first + count) as one delivery. */
static int test_deliver(const char *path, unsigned int first,
			unsigned int count, bool fsync, uint64_t *cut_r,
			struct kr_error *err)
{
	static const char *const keywords[] = { "$label1", "work", NULL };
	struct kr_spool_append *app;
	char msg[8192], folder[32];
	size_t len;

	if (kr_spool_append_begin(path, fsync, &app, cut_r, err) < 0)
		return -1;
	test_last_offset = kr_spool_append_offset(app);
	for (unsigned int i = first; i < first + count; i++) {
		const struct kr_spool_meta meta = {
			.flags = i,
			.folder = folder,
			.keywords = i % 2 == 0 ? keywords : NULL,
		};

		snprintf(folder, sizeof(folder), "Lists/n%u", i);
		test_message(i, msg, sizeof(msg), &len);
		if (kr_spool_append_record(app, test_pk, &meta,
					   (const unsigned char *)msg, len,
					   err) < 0) {
			kr_spool_append_abort(&app);
			return -1;
		}
	}
	return kr_spool_append_commit(&app, err);
}

static ssize_t test_pread(void *context, unsigned char *buf, size_t size,
			  uint64_t offset)
{
	const int *fd = context;

	return pread(*fd, buf, size, (off_t)offset);
}

struct test_scan {
	unsigned int records, opened, damaged, torn;
	/* Bit i: message i opened, with its envelope, as delivered. */
	unsigned long found;
	uint64_t torn_size;
};

/* Reads the whole spool as an import would. */
static void test_scan(const char *path, struct test_scan *scan_r)
{
	struct kr_spool_scan *scan;
	struct kr_spool_item item;
	struct kr_error err;
	struct stat st;
	int fd, ret;

	memset(scan_r, 0, sizeof(*scan_r));
	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		printf("Bail out! open(%s): %s\n", path, strerror(errno));
		exit(99);
	}
	scan = kr_spool_scan_create((uint64_t)st.st_size, test_pread, &fd);
	while ((ret = kr_spool_scan_next(scan, &item, &err)) > 0) {
		unsigned char *sealed, *plain;
		struct kr_spool_meta meta;
		size_t plain_len, msg_offset, expect_len;
		char expect[8192], folder[32];
		unsigned int i;

		if (item.kind == KR_SPOOL_ITEM_DAMAGED) {
			scan_r->damaged++;
			continue;
		}
		if (item.kind == KR_SPOOL_ITEM_TORN) {
			scan_r->torn++;
			scan_r->torn_size = item.size;
			continue;
		}
		scan_r->records++;
		sealed = malloc(item.sealed_len);
		plain = malloc(kr_unseal_max_size(item.sealed_len));
		if (pread(fd, sealed, item.sealed_len,
			  (off_t)item.sealed_offset) !=
		    (ssize_t)item.sealed_len ||
		    kr_unseal(plain, kr_unseal_max_size(item.sealed_len),
			      &plain_len, sealed, item.sealed_len, test_pk,
			      test_sk, &err) != 1 ||
		    item.format != KR_SPOOL_FORMAT_META ||
		    kr_spool_meta_decode(plain, plain_len, &meta,
					 &msg_offset) != 1) {
			free(sealed);
			free(plain);
			continue;
		}
		scan_r->opened++;
		i = meta.flags;
		test_message(i, expect, sizeof(expect), &expect_len);
		snprintf(folder, sizeof(folder), "Lists/n%u", i);
		if (i < 64 && strcmp(meta.folder, folder) == 0 &&
		    meta.keywords_count == (i % 2 == 0 ? 2U : 0U) &&
		    (i % 2 != 0 ||
		     memcmp(meta.keyword_names, "$label1\0work", 13) == 0) &&
		    plain_len - msg_offset == expect_len &&
		    memcmp(plain + msg_offset, expect, expect_len) == 0)
			scan_r->found |= 1UL << i;
		free(sealed);
		free(plain);
	}
	kr_spool_scan_destroy(&scan);
	if (ret < 0) {
		printf("Bail out! scan: %s\n", err.text);
		exit(99);
	}
	close(fd);
}

static void test_spool_write_round_trip(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct test_scan scan;
	struct kr_error err;
	struct stat st;
	uint64_t cut;

	test_begin("spool append round trip");
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/spool", dir);
	test_fault_arm(TEST_CALL_WRITE, 0, 0, false);
	test_fault.short_writes = true;
	test_assert(test_deliver(path, 0, TEST_MESSAGES, true, &cut,
				 &err) == 0);
	test_assert(cut == 0);
	/* Short writes: the loop went round for every record. */
	test_assert(test_fault.calls[TEST_CALL_WRITE] > 3 * TEST_MESSAGES);
	/* The records, and the new file's directory entry, synced. */
	test_assert(test_fault.calls[TEST_CALL_FDATASYNC] == 1);
	test_assert(test_fault.calls[TEST_CALL_FSYNC] == 1);
	test_fault.armed = false;
	test_assert(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

	/* A second delivery: the directory is not synced again. */
	test_fault_arm(TEST_CALL_WRITE, 0, 0, false);
	test_assert(test_deliver(path, TEST_MESSAGES, 2, true, &cut,
				 &err) == 0);
	test_assert(test_fault.calls[TEST_CALL_FDATASYNC] == 1);
	test_assert(test_fault.calls[TEST_CALL_FSYNC] == 0);
	/* mail_fsync=never: nothing synced. */
	test_fault_arm(TEST_CALL_WRITE, 0, 0, false);
	test_assert(test_deliver(path, TEST_MESSAGES + 2, 1, false, &cut,
				 &err) == 0);
	test_assert(test_fault.calls[TEST_CALL_FDATASYNC] == 0);
	test_assert(test_fault.calls[TEST_CALL_FSYNC] == 0);
	test_fault.armed = false;

	test_scan(path, &scan);
	test_assert(scan.records == TEST_MESSAGES + 3);
	test_assert(scan.opened == TEST_MESSAGES + 3);
	test_assert(scan.found == (1UL << (TEST_MESSAGES + 3)) - 1);
	test_assert(scan.damaged == 0 && scan.torn == 0);
	test_tmpdir_remove(dir);
	test_end();
}

static void test_spool_write_refused(void)
{
	static const char *const bad_keywords[] = { "", NULL };
	const struct kr_spool_meta bad = {
		.folder = "INBOX", .keywords = bad_keywords,
	};
	const struct kr_spool_meta good = { .folder = "INBOX" };
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct kr_spool_append *app;
	struct kr_error err;
	struct stat st;
	uint64_t cut;

	test_begin("spool append refused");
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/spool", dir);
	test_assert(kr_spool_append_begin(path, true, &app, &cut, &err) == 0);
	test_assert(kr_spool_append_record(app, test_pk, &good,
		(const unsigned char *)"x\r\n", 3, &err) == 0);
	test_assert(kr_spool_append_record(app, test_pk, &bad,
		(const unsigned char *)"x\r\n", 3, &err) == -1);
	test_assert(err.kind == KR_ERR_INVALID);
	test_assert(kr_spool_append_record(app, test_pk, &good,
		(const unsigned char *)"x", KR_SPOOL_SEALED_MAX, &err) == -1);
	test_assert(err.kind == KR_ERR_LIMIT);
	/* A delivery given up: its first record goes too. */
	kr_spool_append_abort(&app);
	test_assert(app == NULL);
	test_assert(stat(path, &st) == 0 && st.st_size == 0);
	test_tmpdir_remove(dir);
	test_end();
}

/* Every failing call of a delivery onto a spool that holds records, and
   onto an empty one: the append fails with the call's errno and leaves
   the spool as it was. */
static void test_spool_write_faults(void)
{
	static const int errors[TEST_CALL_COUNT] = {
		[TEST_CALL_WRITE] = ENOSPC,
		[TEST_CALL_FDATASYNC] = EIO,
		[TEST_CALL_FTRUNCATE] = EIO,
		[TEST_CALL_FSYNC] = EIO,
	};
	char dir[PATH_MAX], path[PATH_MAX + 16];
	unsigned int failures = 0;

	test_begin("spool append faults");
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/spool", dir);
	for (unsigned int empty = 0; empty < 2; empty++)
	for (enum test_call call = 0; call < TEST_CALL_COUNT; call++)
	for (unsigned int nth = 1; ; nth++) {
		unsigned char *before, *after;
		size_t before_size, after_size;
		struct kr_error err;
		uint64_t cut;
		int ret;

		(void)unlink(path);
		if (!empty &&
		    test_deliver(path, 0, 2, true, &cut, &err) < 0) {
			printf("Bail out! %s\n", err.text);
			exit(99);
		}
		before = test_file_read(path, &before_size);
		test_fault_arm(call, nth, errors[call], false);
		ret = test_deliver(path, 2, TEST_MESSAGES, true, &cut, &err);
		test_fault.armed = false;
		if (test_fault.calls[call] < nth) {
			/* Past the last such call: the delivery went in. */
			test_assert_idx(ret == 0, nth);
			free(before);
			break;
		}
		failures++;
		after = test_file_read(path, &after_size);
		test_assert_idx(ret == -1 && err.kind == KR_ERR_IO &&
				err.sys_errno == errors[call], nth);
		if (empty) {
			test_assert_idx(after_size == 0, nth);
		} else {
			test_assert_idx(after_size == before_size &&
					memcmp(after, before,
					       before_size) == 0, nth);
		}
		if (ret != -1)
			test_diag("%s #%u did not fail the append",
				  test_call_names[call], nth);
		free(before);
		free(after);
	}
	/* 3 writes + 1 fdatasync, each onto both spools, + the empty
	   one's directory fsync. */
	test_assert(failures == 2 * (TEST_MESSAGES + 1) + 1);
	test_tmpdir_remove(dir);
	test_end();
}

/* Death at each call of a delivery, onto a spool with a torn tail; then
   the next delivery. */
static void test_spool_write_die(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	unsigned int deaths = 0;

	test_begin("spool append killed at every call");
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/spool", dir);
	for (enum test_call call = 0; call < TEST_CALL_COUNT; call++)
	for (unsigned int nth = 1; ; nth++) {
		struct test_scan scan;
		struct kr_error err;
		uint64_t cut, size;
		pid_t pid;
		int status, fd;

		(void)unlink(path);
		if (test_deliver(path, 0, 2, true, &cut, &err) < 0) {
			printf("Bail out! %s\n", err.text);
			exit(99);
		}
		/* An earlier append's torn tail: begin cuts it (the
		   ftruncate the loop reaches). */
		fd = open(path, O_WRONLY | O_APPEND);
		if (fd < 0 || __real_write(fd, "SBX3torn", 8) != 8) {
			printf("Bail out! %s\n", strerror(errno));
			exit(99);
		}
		close(fd);
		fflush(stdout);
		pid = fork();
		if (pid < 0) {
			printf("Bail out! fork: %s\n", strerror(errno));
			exit(99);
		}
		if (pid == 0) {
			test_fault_arm(call, nth, EIO, true);
			(void)test_deliver(path, 2, TEST_MESSAGES, true, &cut,
					   &err);
			_exit(TEST_DONE_EXIT);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
			printf("Bail out! child\n");
			exit(99);
		}
		if (WEXITSTATUS(status) == TEST_DONE_EXIT)
			break;
		test_assert_idx(WEXITSTATUS(status) == TEST_DIE_EXIT, nth);
		deaths++;
		/* What the dead append left: the old records, whole new
		   ones in order, at most a torn tail. */
		test_scan(path, &scan);
		test_assert_idx(scan.damaged == 0 && scan.torn <= 1, nth);
		test_assert_idx(scan.records == scan.opened, nth);
		test_assert_idx(scan.records >= 2 &&
				scan.found == (1UL << scan.records) - 1, nth);
		/* The next delivery cuts the tail; everything opens. */
		size = test_file_size(path);
		test_assert_idx(test_deliver(path, scan.records, 1, true, &cut,
					     &err) == 0, nth);
		test_assert_idx(cut == scan.torn_size, nth);
		test_assert_idx(test_last_offset == size - cut, nth);
		test_scan(path, &scan);
		test_assert_idx(scan.damaged == 0 && scan.torn == 0, nth);
		test_assert_idx(scan.records == scan.opened &&
				scan.found == (1UL << scan.records) - 1, nth);
	}
	/* ftruncate (the tail), 3 writes, fdatasync. */
	test_assert(deaths == TEST_MESSAGES + 2);
	test_tmpdir_remove(dir);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_spool_write_round_trip,
		test_spool_write_refused,
		test_spool_write_faults,
		test_spool_write_die,
		NULL
	};

	if (sodium_init() < 0)
		return 99;
	crypto_box_keypair(test_pk, test_sk);
	return test_run(cases);
}
