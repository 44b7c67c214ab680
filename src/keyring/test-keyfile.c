/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "test-keyring.h"

#include <fcntl.h>
#include <sys/types.h>

#define TEST_USER "alice@ubuntu.com"
#define TEST_CUSTOM_PASSWORD "Correct Horse Battery Staple"

/* A keyfile image with a recovery box and two slots (one generated
   password with a hint, one custom password without), and where its
   fields lie. */
struct test_image {
	unsigned char *data;
	size_t size;
	size_t user_len, recovery_flag, next_id, count, slot0, slot1;
	size_t label0_len;
};

static void test_image_build(struct test_image *img_r)
{
	unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES];
	unsigned char recovery_sk[KR_SECRET_KEY_BYTES];
	char password[KR_PASSWORD_BUFSIZE];
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	unsigned int id;
	int ret;

	memset(img_r, 0, sizeof(*img_r));
	crypto_box_keypair(recovery_pk, recovery_sk);
	ret = kr_keyfile_create(TEST_USER, recovery_pk, &kf, &keys, NULL);
	ret |= kr_slot_add(kf, keys, "laptop", &test_params_fast, password,
			   sizeof(password), &id, NULL);
	ret |= kr_slot_add_password(kf, keys, "phone", &test_params_fast,
				    TEST_CUSTOM_PASSWORD, &id, NULL);
	ret |= kr_keyfile_serialize(kf, &img_r->data, &img_r->size, NULL);
	if (ret != 0) {
		printf("Bail out! cannot build a keyfile image\n");
		exit(99);
	}
	img_r->user_len = strlen(TEST_USER);
	img_r->recovery_flag = KR_HEADER_FIXED_BYTES + img_r->user_len;
	img_r->next_id = img_r->recovery_flag + 1 + KR_RECOVERY_BYTES;
	img_r->count = img_r->next_id + 4;
	img_r->slot0 = img_r->count + 4;
	img_r->label0_len = strlen("laptop");
	img_r->slot1 = img_r->slot0 + KR_SLOT_FIXED_BYTES + img_r->label0_len;
	sodium_memzero(password, sizeof(password));
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
}

static void test_put_le(unsigned char *p, uint64_t value, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(value >> (8 * i));
}

static void test_keyfile_create(void)
{
	static const char *const invalid_users[] = {
		"", "alice", "@ubuntu.com", "alice@", "a@b@c", "ali ce@x.org",
		"alice\n@x.org", "al\x7f" "ce@x.org", "\xc3\xa4@x.org",
	};
	char long_user[KR_USER_MAX + 2];
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_error err;
	unsigned char pk[KR_PUBLIC_KEY_BYTES];

	test_begin("keyfile create");
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	test_assert(err.kind == KR_ERR_NONE);
	test_assert_strcmp(kr_keyfile_user(kf), TEST_USER);
	test_assert(!kr_keyfile_has_recovery(kf));
	test_assert(kr_keyfile_slot_count(kf) == 0);
	test_assert(memcmp(kr_keyfile_public_key(kf), keys->public_key,
			   KR_PUBLIC_KEY_BYTES) == 0);
	test_assert(crypto_scalarmult_base(pk, keys->secret_key) == 0 &&
		    memcmp(pk, keys->public_key, sizeof(pk)) == 0);
	test_assert(!sodium_is_zero(keys->master_key,
				    sizeof(keys->master_key)));
	kr_keys_free(&keys);
	test_assert(keys == NULL);
	kr_keyfile_free(&kf);
	test_assert(kf == NULL);

	for (unsigned int i = 0; i < N_ELEMENTS(invalid_users); i++) {
		kf = (void *)1;
		test_assert_idx(kr_keyfile_create(invalid_users[i], NULL, &kf,
						  &keys, &err) == -1 &&
				err.kind == KR_ERR_LIMIT && kf == NULL &&
				keys == NULL, i);
	}
	/* KR_USER_MAX is allowed, one more is not. */
	memset(long_user, 'a', sizeof(long_user));
	long_user[KR_USER_MAX - 4] = '@';
	long_user[KR_USER_MAX] = '\0';
	test_assert(kr_keyfile_create(long_user, NULL, &kf, &keys, &err) == 0);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	long_user[KR_USER_MAX] = 'a';
	long_user[KR_USER_MAX + 1] = '\0';
	test_assert(kr_keyfile_create(long_user, NULL, &kf, &keys, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT);
	test_end();
}

static void test_keyfile_parse_round_trip(void)
{
	struct test_image img;
	struct kr_keyfile *kf;
	struct kr_slot_info info;
	struct kr_error err;
	unsigned char *data2;
	size_t size2;

	test_begin("keyfile parse round trip");
	test_image_build(&img);
	test_assert(kr_keyfile_parse(img.data, img.size, &kf, &err) == 0);
	test_assert_strcmp(kr_keyfile_user(kf), TEST_USER);
	test_assert(kr_keyfile_has_recovery(kf));
	test_assert(kr_keyfile_slot_count(kf) == 2);
	kr_keyfile_slot_info(kf, 0, &info);
	test_assert(info.id == 1);
	test_assert_strcmp(info.label, "laptop");
	test_assert(info.opslimit == test_params_fast.opslimit &&
		    info.memlimit == test_params_fast.memlimit);
	test_assert(info.created > 1600000000 &&
		    info.created <= time(NULL));
	kr_keyfile_slot_info(kf, 1, &info);
	test_assert(info.id == 2);
	test_assert_strcmp(info.label, "phone");
	/* Canonical: what was parsed serialises to the same bytes. */
	test_assert(kr_keyfile_serialize(kf, &data2, &size2, &err) == 0);
	test_assert(size2 == img.size && memcmp(data2, img.data, size2) == 0);
	test_assert(img.size == img.slot1 + KR_SLOT_FIXED_BYTES +
		    strlen("phone"));
	free(data2);
	kr_keyfile_free(&kf);
	free(img.data);
	test_end();
}

enum test_mutation {
	TEST_MUT_MAGIC,
	TEST_MUT_VERSION_0,
	TEST_MUT_VERSION_2,
	TEST_MUT_USER_LEN_0,
	TEST_MUT_USER_LEN_MAX,
	TEST_MUT_USER_LEN_PAST_END,
	TEST_MUT_USER_SPACE,
	TEST_MUT_RECOVERY_FLAG,
	TEST_MUT_NEXT_ID_0,
	TEST_MUT_NEXT_ID_REUSED,
	TEST_MUT_COUNT_65,
	TEST_MUT_COUNT_HUGE,
	TEST_MUT_COUNT_TOO_FEW,
	TEST_MUT_SLOT_ID_0,
	TEST_MUT_SLOT_ID_DUPLICATE,
	TEST_MUT_FLAGS_UNKNOWN,
	TEST_MUT_FLAGS_STRAY_HINT,
	TEST_MUT_LABEL_LEN_65,
	TEST_MUT_LABEL_CONTROL,
	TEST_MUT_LABEL_UTF8,
	TEST_MUT_OPSLIMIT_0,
	TEST_MUT_OPSLIMIT_HUGE,
	TEST_MUT_MEMLIMIT_SMALL,
	TEST_MUT_MEMLIMIT_2GIB,
	TEST_MUT_MEMLIMIT_HUGE,
	TEST_MUT_TRAILING,
};

static void test_mutate(struct test_image *img, enum test_mutation mut)
{
	unsigned char *p = img->data;
	size_t label0 = img->slot0 + 14;
	size_t ops0 = label0 + img->label0_len;

	switch (mut) {
	case TEST_MUT_MAGIC: p[0] ^= 0x20; break;
	case TEST_MUT_VERSION_0: test_put_le(p + 8, 0, 4); break;
	case TEST_MUT_VERSION_2: test_put_le(p + 8, 2, 4); break;
	case TEST_MUT_USER_LEN_0: test_put_le(p + 12, 0, 2); break;
	case TEST_MUT_USER_LEN_MAX: test_put_le(p + 12, 0xffff, 2); break;
	case TEST_MUT_USER_LEN_PAST_END:
		test_put_le(p + 12, KR_USER_MAX, 2);
		img->size = 14 + 10;
		break;
	case TEST_MUT_USER_SPACE: p[14 + 2] = ' '; break;
	case TEST_MUT_RECOVERY_FLAG: p[img->recovery_flag] = 2; break;
	case TEST_MUT_NEXT_ID_0: test_put_le(p + img->next_id, 0, 4); break;
	case TEST_MUT_NEXT_ID_REUSED: test_put_le(p + img->next_id, 2, 4); break;
	case TEST_MUT_COUNT_65: test_put_le(p + img->count, 65, 4); break;
	case TEST_MUT_COUNT_HUGE:
		test_put_le(p + img->count, 0xffffffff, 4);
		break;
	case TEST_MUT_COUNT_TOO_FEW: test_put_le(p + img->count, 1, 4); break;
	case TEST_MUT_SLOT_ID_0: test_put_le(p + img->slot0, 0, 4); break;
	case TEST_MUT_SLOT_ID_DUPLICATE:
		test_put_le(p + img->slot1, 1, 4);
		break;
	case TEST_MUT_FLAGS_UNKNOWN: p[img->slot0 + 12] |= 0x02; break;
	case TEST_MUT_FLAGS_STRAY_HINT: p[img->slot0 + 12] = 0; break;
	case TEST_MUT_LABEL_LEN_65: p[img->slot0 + 13] = 65; break;
	case TEST_MUT_LABEL_CONTROL: p[label0 + 1] = '\n'; break;
	case TEST_MUT_LABEL_UTF8: p[label0 + 1] = 0xc3; break;
	case TEST_MUT_OPSLIMIT_0: test_put_le(p + ops0, 0, 8); break;
	case TEST_MUT_OPSLIMIT_HUGE:
		test_put_le(p + ops0, KR_OPSLIMIT_MAX + 1, 8);
		break;
	case TEST_MUT_MEMLIMIT_SMALL:
		test_put_le(p + ops0 + 8, KR_MEMLIMIT_MIN - 1, 8);
		break;
	case TEST_MUT_MEMLIMIT_2GIB:
		test_put_le(p + ops0 + 8, 2ULL << 30, 8);
		break;
	case TEST_MUT_MEMLIMIT_HUGE:
		test_put_le(p + ops0 + 8, UINT64_MAX, 8);
		break;
	case TEST_MUT_TRAILING:
		p[img->size++] = 0;
		break;
	}
}

static void test_keyfile_parse_rejects(void)
{
	static const enum test_mutation mutations[] = {
		TEST_MUT_MAGIC, TEST_MUT_VERSION_0, TEST_MUT_VERSION_2,
		TEST_MUT_USER_LEN_0, TEST_MUT_USER_LEN_MAX,
		TEST_MUT_USER_LEN_PAST_END, TEST_MUT_USER_SPACE,
		TEST_MUT_RECOVERY_FLAG, TEST_MUT_NEXT_ID_0,
		TEST_MUT_NEXT_ID_REUSED, TEST_MUT_COUNT_65,
		TEST_MUT_COUNT_HUGE, TEST_MUT_COUNT_TOO_FEW,
		TEST_MUT_SLOT_ID_0, TEST_MUT_SLOT_ID_DUPLICATE,
		TEST_MUT_FLAGS_UNKNOWN, TEST_MUT_FLAGS_STRAY_HINT,
		TEST_MUT_LABEL_LEN_65, TEST_MUT_LABEL_CONTROL,
		TEST_MUT_LABEL_UTF8, TEST_MUT_OPSLIMIT_0,
		TEST_MUT_OPSLIMIT_HUGE, TEST_MUT_MEMLIMIT_SMALL,
		TEST_MUT_MEMLIMIT_2GIB, TEST_MUT_MEMLIMIT_HUGE,
		TEST_MUT_TRAILING,
	};
	struct test_image img, copy;
	struct kr_keyfile *kf;
	struct kr_error err;

	test_begin("keyfile parse rejects");
	test_image_build(&img);
	for (unsigned int i = 0; i < N_ELEMENTS(mutations); i++) {
		copy = img;
		/* room for TEST_MUT_TRAILING */
		copy.data = malloc(img.size + 1);
		memcpy(copy.data, img.data, img.size);
		test_mutate(&copy, mutations[i]);
		kf = (void *)1;
		test_assert_idx(kr_keyfile_parse(copy.data, copy.size, &kf,
						 &err) == -1 &&
				err.kind == KR_ERR_CORRUPT && kf == NULL, i);
		free(copy.data);
	}
	/* The untouched image parses: the rejections above are the
	   mutations'. */
	test_assert(kr_keyfile_parse(img.data, img.size, &kf, &err) == 0);
	kr_keyfile_free(&kf);
	free(img.data);
	test_end();
}

static void test_keyfile_truncations(void)
{
	struct test_image img;
	struct kr_keyfile *kf;
	struct kr_error err;
	unsigned int bad = 0;
	unsigned char *copy;

	test_begin("keyfile truncated at every length");
	test_image_build(&img);
	for (size_t len = 0; len < img.size; len++) {
		/* An exact-size copy, so ASan sees any read past the end. */
		copy = malloc(len == 0 ? 1 : len);
		memcpy(copy, img.data, len);
		kf = (void *)1;
		if (kr_keyfile_parse(copy, len, &kf, &err) != -1 ||
		    err.kind != KR_ERR_CORRUPT || kf != NULL) {
			if (bad++ == 0)
				test_diag("length %zu accepted", len);
			kr_keyfile_free(&kf);
		}
		free(copy);
	}
	test_assert(bad == 0);
	/* ... while the whole image parses. */
	test_assert(kr_keyfile_parse(img.data, img.size, &kf, &err) == 0);
	kr_keyfile_free(&kf);
	free(img.data);
	test_end();
}

static void test_keyfile_write_read(void)
{
	struct kr_keyfile *kf, *kf2;
	struct kr_keys *keys;
	struct kr_error err;
	unsigned char *data;
	size_t size;
	char dir[PATH_MAX], path[PATH_MAX + 32];
	unsigned int id;
	struct stat st;
	mode_t old_umask;

	test_begin("keyfile write and read");
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/" KR_KEYFILE_NAME, dir);
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	/* A permissive umask must not widen the mode. */
	old_umask = umask(0);
	test_assert(kr_keyfile_write(kf, path, (uid_t)-1, (gid_t)-1,
				     &err) == 0);
	umask(old_umask);
	test_assert(lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_mode & 07777) == 0600);
	test_assert(test_dir_count(dir) == 1);
	test_assert(kr_keyfile_read(path, &kf2, &err) == 1);
	test_assert(kf2 != NULL && kr_keyfile_slot_count(kf2) == 0 &&
		    memcmp(kr_keyfile_public_key(kf2), keys->public_key,
			   KR_PUBLIC_KEY_BYTES) == 0);
	kr_keyfile_free(&kf2);

	/* Replace it: the new content is there, still one file. */
	test_assert(kr_slot_add_password(kf, keys, "x", &test_params_fast,
					 TEST_CUSTOM_PASSWORD, &id,
					 &err) == 0);
	test_assert(kr_keyfile_write(kf, path, (uid_t)-1, (gid_t)-1,
				     &err) == 0);
	test_assert(kr_keyfile_read(path, &kf2, &err) == 1);
	test_assert(kf2 != NULL && kr_keyfile_slot_count(kf2) == 1);
	test_assert(test_dir_count(dir) == 1);
	test_assert(kr_keyfile_serialize(kf, &data, &size, &err) == 0);
	test_assert(test_file_equals(path, data, size));
	free(data);
	kr_keyfile_free(&kf2);

	/* A relative path: the temp file and the fsync'd directory are
	   found without a slash. */
	test_assert(chdir(dir) == 0);
	test_assert(kr_keyfile_write(kf, "relative.keys", (uid_t)-1,
				     (gid_t)-1, &err) == 0);
	test_assert(kr_keyfile_read("relative.keys", &kf2, &err) == 1);
	kr_keyfile_free(&kf2);
	test_assert(chdir("/") == 0);
	test_assert(test_dir_count(dir) == 2);

	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	test_tmpdir_remove(dir);
	test_end();
}

static void test_keyfile_owner(void)
{
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_error err;
	char dir[PATH_MAX], path[PATH_MAX + 32];
	struct stat st;
	uid_t uid = getuid();
	gid_t gid = getgid();

	test_begin("keyfile owner");
	/* Only root can give the file away; anyone can "chown" to self. */
	if (geteuid() == 0) {
		uid = 4242;
		gid = 4243;
	}
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/" KR_KEYFILE_NAME, dir);
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	test_assert(kr_keyfile_write(kf, path, uid, gid, &err) == 0);
	test_assert(stat(path, &st) == 0 && st.st_uid == uid &&
		    st.st_gid == gid && (st.st_mode & 07777) == 0600);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	test_tmpdir_remove(dir);
	test_end();
}

static void test_keyfile_read_refusals(void)
{
	struct kr_keyfile *kf;
	struct kr_error err;
	struct test_image img;
	char dir[PATH_MAX], path[PATH_MAX + 32], real[PATH_MAX + 32];
	char big[PATH_MAX + 32], fifo[PATH_MAX + 32];
	int fd;

	test_begin("keyfile read refusals");
	test_image_build(&img);
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/" KR_KEYFILE_NAME, dir);
	snprintf(real, sizeof(real), "%s/real.keys", dir);
	snprintf(big, sizeof(big), "%s/big.keys", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo.keys", dir);

	/* Missing: 0, not an error. */
	kf = (void *)1;
	test_assert(kr_keyfile_read(path, &kf, &err) == 0 && kf == NULL &&
		    err.kind == KR_ERR_NOT_FOUND);

	/* A symlink to a valid keyfile is refused. */
	test_assert(test_file_write(real, img.data, img.size) == 0);
	test_assert(kr_keyfile_read(real, &kf, &err) == 1);
	kr_keyfile_free(&kf);
	test_assert(symlink(real, path) == 0);
	test_assert(kr_keyfile_read(path, &kf, &err) == -1 && kf == NULL &&
		    err.kind == KR_ERR_IO && strstr(err.text, path) != NULL);

	/* A FIFO must not block the reader. */
	test_assert(mkfifo(fifo, 0600) == 0);
	test_assert(kr_keyfile_read(fifo, &kf, &err) == -1 &&
		    err.kind == KR_ERR_IO);

	/* A directory. */
	test_assert(kr_keyfile_read(dir, &kf, &err) == -1 &&
		    err.kind == KR_ERR_IO);

	/* Larger than any keyfile: refused before reading (sparse file). */
	fd = open(big, O_WRONLY | O_CREAT | O_EXCL, 0600);
	test_assert(fd >= 0 && ftruncate(fd, 1024 * 1024) == 0);
	(void)close(fd);
	test_assert(kr_keyfile_read(big, &kf, &err) == -1 &&
		    err.kind == KR_ERR_CORRUPT);
	fd = open(big, O_WRONLY | O_TRUNC);
	test_assert(fd >= 0 && ftruncate(fd, KR_KEYFILE_SIZE_MAX + 1) == 0);
	(void)close(fd);
	test_assert(kr_keyfile_read(big, &kf, &err) == -1 &&
		    err.kind == KR_ERR_CORRUPT);

	/* Empty file: corrupt, and the error names the path. */
	fd = open(big, O_WRONLY | O_TRUNC);
	(void)close(fd);
	test_assert(kr_keyfile_read(big, &kf, &err) == -1 &&
		    err.kind == KR_ERR_CORRUPT &&
		    strstr(err.text, big) != NULL);

	free(img.data);
	test_tmpdir_remove(dir);
	test_end();
}

static void test_keyfile_write_refusals(void)
{
	struct kr_keyfile *kf, *kf2;
	struct kr_keys *keys;
	struct kr_error err;
	struct test_image img;
	char dir[PATH_MAX], path[PATH_MAX + 32], link_path[PATH_MAX + 32];
	char sub[PATH_MAX + 32], missing[PATH_MAX + 32];
	struct stat st;

	test_begin("keyfile write refusals");
	test_image_build(&img);
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/" KR_KEYFILE_NAME, dir);
	snprintf(link_path, sizeof(link_path), "%s/link.keys", dir);
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	snprintf(missing, sizeof(missing), "%s/missing/" KR_KEYFILE_NAME, dir);
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);

	/* The path is a directory: rename fails, nothing is left behind. */
	test_assert(mkdir(sub, 0700) == 0);
	test_assert(kr_keyfile_write(kf, sub, (uid_t)-1, (gid_t)-1,
				     &err) == -1 && err.kind == KR_ERR_IO &&
		    strstr(err.text, "rename(") != NULL &&
		    strstr(err.text, sub) != NULL);
	test_assert(stat(sub, &st) == 0 && S_ISDIR(st.st_mode));
	test_assert(test_dir_count(dir) == 1);

	/* The directory is missing. */
	test_assert(kr_keyfile_write(kf, missing, (uid_t)-1, (gid_t)-1,
				     &err) == -1 && err.kind == KR_ERR_IO &&
		    strstr(err.text, "open(") != NULL);

	/* A symlink at path is replaced, never followed: its target keeps
	   its content. */
	test_assert(test_file_write(path, img.data, img.size) == 0);
	test_assert(symlink(path, link_path) == 0);
	test_assert(kr_keyfile_write(kf, link_path, (uid_t)-1, (gid_t)-1,
				     &err) == 0);
	test_assert(lstat(link_path, &st) == 0 && S_ISREG(st.st_mode));
	test_assert(test_file_equals(path, img.data, img.size));
	test_assert(kr_keyfile_read(link_path, &kf2, &err) == 1);
	kr_keyfile_free(&kf2);

	/* A read-only directory (meaningless for root, who may write
	   anyway; test-keyfile-write covers failures for everyone). */
	if (geteuid() != 0) {
		test_assert(chmod(dir, 0500) == 0);
		test_assert(kr_keyfile_write(kf, path, (uid_t)-1, (gid_t)-1,
					     &err) == -1 &&
			    err.kind == KR_ERR_IO);
		test_assert(test_file_equals(path, img.data, img.size));
		test_assert(chmod(dir, 0700) == 0);
	} else {
		test_diag("running as root: read-only directory case skipped");
	}
	test_assert(test_dir_count(dir) == 3);

	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	free(img.data);
	test_tmpdir_remove(dir);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_keyfile_create,
		test_keyfile_parse_round_trip,
		test_keyfile_parse_rejects,
		test_keyfile_truncations,
		test_keyfile_write_read,
		test_keyfile_owner,
		test_keyfile_read_refusals,
		test_keyfile_write_refusals,
		NULL
	};

	return test_run(cases);
}
