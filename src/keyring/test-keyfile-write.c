/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "test-keyring.h"

#include <sys/types.h>

/* kr_keyfile_write() under failing syscalls.  The program is linked with
   ld --wrap for write, fchown, fchmod, fsync, close and rename (see
   Makefile.am), so every call the library makes goes through a wrapper
   that can fail the Nth one; stdio inside libc is not affected.  This works
   for any user, where a read-only directory does not stop root. */

enum test_call {
	TEST_CALL_WRITE,
	TEST_CALL_FCHOWN,
	TEST_CALL_FCHMOD,
	TEST_CALL_FSYNC,
	TEST_CALL_CLOSE,
	TEST_CALL_RENAME,

	TEST_CALL_COUNT
};

static const char *const test_call_names[TEST_CALL_COUNT] = {
	[TEST_CALL_WRITE] = "write",
	[TEST_CALL_FCHOWN] = "fchown",
	[TEST_CALL_FCHMOD] = "fchmod",
	[TEST_CALL_FSYNC] = "fsync",
	[TEST_CALL_CLOSE] = "close",
	[TEST_CALL_RENAME] = "rename",
};

static struct {
	bool armed;
	enum test_call call;
	unsigned int nth;
	int error;
	bool short_writes;
	unsigned int eintr_writes;
	unsigned int calls[TEST_CALL_COUNT];
} test_fault;

ssize_t __real_write(int fd, const void *buf, size_t count);
int __real_fchown(int fd, uid_t owner, gid_t group);
int __real_fchmod(int fd, mode_t mode);
int __real_fsync(int fd);
int __real_close(int fd);
int __real_rename(const char *oldpath, const char *newpath);
ssize_t __wrap_write(int fd, const void *buf, size_t count);
int __wrap_fchown(int fd, uid_t owner, gid_t group);
int __wrap_fchmod(int fd, mode_t mode);
int __wrap_fsync(int fd);
int __wrap_close(int fd);
int __wrap_rename(const char *oldpath, const char *newpath);

static void test_fault_arm(enum test_call call, unsigned int nth, int error)
{
	memset(&test_fault, 0, sizeof(test_fault));
	test_fault.armed = true;
	test_fault.call = call;
	test_fault.nth = nth;
	test_fault.error = error;
}

/* Counts the call; true if this one is to fail. */
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
	if (test_fault_hit(TEST_CALL_WRITE))
		return -1;
	if (test_fault.armed && test_fault.eintr_writes > 0) {
		test_fault.eintr_writes--;
		errno = EINTR;
		return -1;
	}
	if (test_fault.armed && test_fault.short_writes && count > 7)
		count = 7;
	return __real_write(fd, buf, count);
}

int __wrap_fchown(int fd, uid_t owner, gid_t group)
{
	return test_fault_hit(TEST_CALL_FCHOWN) ? -1 :
		__real_fchown(fd, owner, group);
}

int __wrap_fchmod(int fd, mode_t mode)
{
	return test_fault_hit(TEST_CALL_FCHMOD) ? -1 :
		__real_fchmod(fd, mode);
}

int __wrap_fsync(int fd)
{
	return test_fault_hit(TEST_CALL_FSYNC) ? -1 : __real_fsync(fd);
}

int __wrap_close(int fd)
{
	/* Like Linux: the descriptor is gone even when close() fails. */
	if (test_fault_hit(TEST_CALL_CLOSE)) {
		int error = errno;

		(void)__real_close(fd);
		errno = error;
		return -1;
	}
	return __real_close(fd);
}

int __wrap_rename(const char *oldpath, const char *newpath)
{
	return test_fault_hit(TEST_CALL_RENAME) ? -1 :
		__real_rename(oldpath, newpath);
}

struct test_files {
	char dir[PATH_MAX];
	char path[PATH_MAX + 32];
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	unsigned char *old_data, *new_data;
	size_t old_size, new_size;
};

/* An old keyfile on disk (no slot) and a newer one in memory (one slot). */
static void test_files_init(struct test_files *files_r)
{
	struct kr_error err;
	unsigned int id;
	int ret;

	test_tmpdir_create(files_r->dir);
	snprintf(files_r->path, sizeof(files_r->path), "%s/" KR_KEYFILE_NAME,
		 files_r->dir);
	ret = kr_keyfile_create("erin@ubuntu.com", NULL, &files_r->kf,
				&files_r->keys, &err);
	ret |= kr_keyfile_serialize(files_r->kf, &files_r->old_data,
				    &files_r->old_size, &err);
	ret |= kr_slot_add_password(files_r->kf, files_r->keys, "new",
				    &test_params_fast, "pw", &id, &err);
	ret |= kr_keyfile_serialize(files_r->kf, &files_r->new_data,
				    &files_r->new_size, &err);
	if (ret != 0) {
		printf("Bail out! %s\n", err.text);
		exit(99);
	}
}

static void test_files_deinit(struct test_files *files)
{
	kr_keyfile_free(&files->kf);
	kr_keys_free(&files->keys);
	free(files->old_data);
	free(files->new_data);
	test_tmpdir_remove(files->dir);
}

static void test_keyfile_write_faults(void)
{
	static const struct {
		enum test_call call;
		unsigned int nth;
		int error;
		/* the rename happened: the new file is in place */
		bool replaced;
	} faults[] = {
		{ TEST_CALL_WRITE, 1, ENOSPC, false },
		{ TEST_CALL_FCHOWN, 1, EPERM, false },
		{ TEST_CALL_FCHMOD, 1, EROFS, false },
		{ TEST_CALL_FSYNC, 1, EIO, false },
		{ TEST_CALL_CLOSE, 1, EIO, false },
		{ TEST_CALL_RENAME, 1, EXDEV, false },
		/* the directory's fsync, after the rename */
		{ TEST_CALL_FSYNC, 2, EIO, true },
	};
	struct test_files files;
	struct kr_error err;
	char expected[64];

	test_begin("keyfile write faults");
	test_files_init(&files);
	for (unsigned int i = 0; i < N_ELEMENTS(faults); i++) {
		const char *name = test_call_names[faults[i].call];
		int ret;

		if (test_file_write(files.path, files.old_data,
				    files.old_size) < 0) {
			printf("Bail out! cannot write %s\n", files.path);
			exit(99);
		}
		test_fault_arm(faults[i].call, faults[i].nth, faults[i].error);
		ret = kr_keyfile_write(files.kf, files.path, getuid(),
				       getgid(), &err);
		test_fault.armed = false;

		/* The fault was reached, so the outcome is its doing. */
		test_assert_idx(test_fault.calls[faults[i].call] >=
				faults[i].nth, i);
		snprintf(expected, sizeof(expected), "%s(", name);
		test_assert_idx(ret == -1 && err.kind == KR_ERR_IO &&
				strstr(err.text, expected) != NULL &&
				strstr(err.text, files.dir) != NULL &&
				strstr(err.text,
				       strerror(faults[i].error)) != NULL, i);
		if (faults[i].replaced) {
			test_assert_idx(test_file_equals(files.path,
							 files.new_data,
							 files.new_size), i);
		} else {
			test_assert_idx(test_file_equals(files.path,
							 files.old_data,
							 files.old_size), i);
		}
		/* No temp file left behind. */
		test_assert_idx(test_dir_count(files.dir) == 1, i);
	}
	test_files_deinit(&files);
	test_end();
}

static void test_keyfile_write_short_writes(void)
{
	struct test_files files;
	struct kr_error err;
	struct kr_keyfile *kf;
	int ret;

	test_begin("keyfile write short writes and EINTR");
	test_files_init(&files);
	test_assert(test_file_write(files.path, files.old_data,
				    files.old_size) == 0);
	test_fault_arm(TEST_CALL_WRITE, 0, 0);
	test_fault.short_writes = true;
	test_fault.eintr_writes = 2;
	ret = kr_keyfile_write(files.kf, files.path, (uid_t)-1, (gid_t)-1,
			       &err);
	test_fault.armed = false;
	test_assert(ret == 0);
	/* 2 interrupted + one per 7 bytes: the loop really went round. */
	test_assert(test_fault.calls[TEST_CALL_WRITE] ==
		    2 + (files.new_size + 6) / 7);
	test_assert(test_fault.calls[TEST_CALL_FSYNC] == 2);
	test_assert(test_fault.calls[TEST_CALL_FCHOWN] == 0);
	test_assert(test_fault.calls[TEST_CALL_RENAME] == 1);
	test_assert(test_file_equals(files.path, files.new_data,
				     files.new_size));
	test_assert(kr_keyfile_read(files.path, &kf, &err) == 1 &&
		    kr_keyfile_slot_count(kf) == 1);
	kr_keyfile_free(&kf);
	test_assert(test_dir_count(files.dir) == 1);
	test_files_deinit(&files);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_keyfile_write_faults,
		test_keyfile_write_short_writes,
		NULL
	};

	return test_run(cases);
}
