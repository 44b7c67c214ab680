/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "test-keyring.h"

#include <time.h>

#define TEST_USER "bob@kubuntu.org"
#define TEST_SLOTS 3
/* A generator-shaped password with every kind of symbol. */
#define TEST_SHAPED_PASSWORD "0123-4567-89ab-cdef-ghjk-mnpq-rstv"

static double test_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* kr_slot_open() + kr_slot_unwrap(): 1 if password opens slot_id and
   yields the same keys as expected. */
static int test_open_unwrap(const struct kr_keyfile *kf, const char *password,
			    unsigned int slot_id,
			    const struct kr_keys *expected)
{
	struct kr_secret *kek;
	struct kr_keys *keys;
	struct kr_error err;
	unsigned int id;
	int ret;

	ret = kr_slot_open(kf, password, &id, &kek, &err);
	if (ret != 1)
		return ret;
	ret = id == slot_id && kr_secret_len(kek) == KR_KEK_BYTES &&
		kr_slot_unwrap(kf, id, kr_secret_data(kek), &keys, &err) == 1;
	if (ret == 1) {
		ret = test_keys_equal(keys, expected);
		kr_keys_free(&keys);
	}
	kr_secret_free(&kek);
	return ret == 1 ? 1 : -2;
}

static void test_slot_round_trip(void)
{
	static const char *const labels[TEST_SLOTS] = {
		"laptop", "phone", "Büro – Thunderbird",
	};
	char passwords[TEST_SLOTS][KR_PASSWORD_BUFSIZE];
	unsigned int ids[TEST_SLOTS];
	struct kr_keyfile *kf, *kf2;
	struct kr_keys *keys;
	struct kr_slot_info info;
	struct kr_error err;
	char dir[PATH_MAX], path[PATH_MAX + 32];
	time_t t0 = time(NULL);

	test_begin("slot round trip");
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/" KR_KEYFILE_NAME, dir);
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	for (unsigned int i = 0; i < TEST_SLOTS; i++) {
		test_assert_idx(kr_slot_add(kf, keys, labels[i],
					    &test_params_fast, passwords[i],
					    sizeof(passwords[i]), &ids[i],
					    &err) == 0 &&
				ids[i] == i + 1, i);
	}
	test_assert(kr_keyfile_write(kf, path, (uid_t)-1, (gid_t)-1,
				     &err) == 0);
	test_assert(kr_keyfile_read(path, &kf2, &err) == 1);
	test_assert(kr_keyfile_slot_count(kf2) == TEST_SLOTS);
	for (unsigned int i = 0; i < TEST_SLOTS; i++) {
		kr_keyfile_slot_info(kf2, i, &info);
		test_assert_idx(info.id == ids[i] &&
				strcmp(info.label, labels[i]) == 0 &&
				info.created >= t0 &&
				info.created <= time(NULL) &&
				info.opslimit == test_params_fast.opslimit &&
				info.memlimit == test_params_fast.memlimit, i);
		test_assert_idx(test_open_unwrap(kf2, passwords[i], ids[i],
						 keys) == 1, i);
	}
	for (unsigned int i = 0; i < TEST_SLOTS; i++)
		sodium_memzero(passwords[i], sizeof(passwords[i]));
	kr_keyfile_free(&kf2);
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_tmpdir_remove(dir);
	test_end();
}

/* kr_slot_unlock(): the keys in one call, the same as open + unwrap. */
static void test_slot_unlock(void)
{
	char passwords[2][KR_PASSWORD_BUFSIZE], other[KR_PASSWORD_BUFSIZE];
	struct kr_keyfile *kf;
	struct kr_keys *keys, *opened;
	struct kr_error err;
	unsigned int ids[2], id;

	test_begin("slot unlock");
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	for (unsigned int i = 0; i < 2; i++) {
		test_assert_idx(kr_slot_add(kf, keys, "d", &test_params_fast,
					    passwords[i], sizeof(passwords[i]),
					    &ids[i], &err) == 0, i);
	}
	for (unsigned int i = 0; i < 2; i++) {
		id = 0;
		test_assert_idx(kr_slot_unlock(kf, passwords[i], &id, &opened,
					       &err) == 1 && id == ids[i] &&
				test_keys_equal(opened, keys), i);
		kr_keys_free(&opened);
	}
	/* the slot id is optional */
	test_assert(kr_slot_unlock(kf, passwords[1], NULL, &opened,
				   &err) == 1 && test_keys_equal(opened, keys));
	kr_keys_free(&opened);
	/* a wrong password, an empty one: 0, nothing handed out */
	kr_password_generate(other);
	opened = (void *)1;
	test_assert(kr_slot_unlock(kf, other, &id, &opened, &err) == 0 &&
		    opened == NULL && id == 0 && err.kind == KR_ERR_NOT_FOUND);
	opened = (void *)1;
	test_assert(kr_slot_unlock(kf, "", NULL, &opened, &err) == 0 &&
		    opened == NULL);
	/* a removed slot no longer unlocks */
	test_assert(kr_slot_remove(kf, ids[0]) == 1);
	test_assert(kr_slot_unlock(kf, passwords[0], NULL, &opened,
				   &err) == 0 && opened == NULL);
	for (unsigned int i = 0; i < 2; i++)
		sodium_memzero(passwords[i], sizeof(passwords[i]));
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

static void test_slot_wrong_password(void)
{
	char password[KR_PASSWORD_BUFSIZE], other[KR_PASSWORD_BUFSIZE];
	char long_password[KR_PASSWORD_INPUT_MAX + 2];
	const char *wrong[5];
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_secret *kek;
	struct kr_error err;
	unsigned int id;

	test_begin("slot wrong password");
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	test_assert(kr_slot_add(kf, keys, "a", &test_params_fast, password,
				sizeof(password), &id, &err) == 0);
	kr_password_generate(other);
	memset(long_password, 'a', sizeof(long_password) - 1);
	long_password[sizeof(long_password) - 1] = '\0';
	wrong[0] = other;
	wrong[1] = "";
	wrong[2] = long_password;
	wrong[3] = "correct horse";
	/* Another generator-shaped password. */
	wrong[4] = TEST_SHAPED_PASSWORD;
	for (unsigned int i = 0; i < N_ELEMENTS(wrong); i++) {
		id = 99;
		kek = (void *)1;
		test_assert_idx(kr_slot_open(kf, wrong[i], &id, &kek,
					     &err) == 0 &&
				id == 0 && kek == NULL &&
				err.kind == KR_ERR_NOT_FOUND, i);
	}
	password[3] = password[3] == 'a' ? 'b' : 'a';
	test_assert(kr_slot_open(kf, password, &id, &kek, &err) == 0);
	sodium_memzero(password, sizeof(password));
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

static void test_slot_password_forms(void)
{
	static const struct {
		const char *password;
		int ret;
	} forms[] = {
		{ TEST_SHAPED_PASSWORD, 1 },
		{ "0123456789abcdefghjkmnpqrstv", 1 },
		{ "0123-4567-89AB-CDEF-GHJK-MNPQ-RSTV", 1 },
		{ "0123 4567 89ab cdef ghjk mnpq rstv", 1 },
		{ " 0123-4567-89ab-cdef-ghjk-mnpq-rstv\t", 1 },
		/* look-alikes: O for 0, I and L for 1 */
		{ "OI23-4567-89ab-cdef-ghjk-mnpq-rstv", 1 },
		{ "oL23-4567-89ab-cdef-ghjk-mnpq-rstv", 1 },
		{ "0123-4567-89ab-cdef-ghjk-mnpq-rstw", 0 },
		{ "0123-4567-89ab-cdef-ghjk-mnpq-rst", 0 },
		{ "0123-4567-89ab-cdef-ghjk-mnpq-rstvw", 0 },
		{ "0123-4567-89ab-cdef-ghjk-mnpq-rstv-", 1 },
		{ "0123_4567_89ab_cdef_ghjk_mnpq_rstv", 0 },
		{ "u123-4567-89ab-cdef-ghjk-mnpq-rstv", 0 },
	};
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_error err;
	unsigned int id;

	test_begin("slot password forms");
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	test_assert(kr_slot_add_password(kf, keys, "typed", &test_params_fast,
					 TEST_SHAPED_PASSWORD, &id,
					 &err) == 0);
	test_assert((kf->slots[0].flags & KR_SLOT_FLAG_HINT) != 0);
	for (unsigned int i = 0; i < N_ELEMENTS(forms); i++) {
		test_assert_idx(test_open_unwrap(kf, forms[i].password, id,
						 keys) == forms[i].ret, i);
	}
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

static void test_slot_custom_password(void)
{
	static const char *const custom[] = {
		"Correct Horse Battery Staple",
		"correct horse battery staple",
		"Tr0ub4dor&3",
	};
	struct kr_keyfile *kf;
	struct kr_keys *keys;
	struct kr_error err;
	unsigned int ids[N_ELEMENTS(custom)];

	test_begin("slot custom password");
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	for (unsigned int i = 0; i < N_ELEMENTS(custom); i++) {
		test_assert_idx(kr_slot_add_password(kf, keys, NULL,
						     &test_params_fast,
						     custom[i], &ids[i],
						     &err) == 0, i);
		/* No hint: it would be a fast oracle for human passwords. */
		test_assert_idx(kf->slots[i].flags == 0 &&
				sodium_is_zero(kf->slots[i].hint,
					       KR_HINT_BYTES), i);
	}
	/* Byte for byte: case matters, and each is found among slots that
	   all have to be tried. */
	for (unsigned int i = 0; i < N_ELEMENTS(custom); i++) {
		test_assert_idx(test_open_unwrap(kf, custom[i], ids[i],
						 keys) == 1, i);
	}
	test_assert(test_open_unwrap(kf, "CORRECT HORSE BATTERY STAPLE", 0,
				     keys) == 0);
	test_assert(test_open_unwrap(kf, "CorrectHorseBatteryStaple", 0,
				     keys) == 0);
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

static void test_slot_remove(void)
{
	char passwords[TEST_SLOTS][KR_PASSWORD_BUFSIZE];
	unsigned int ids[TEST_SLOTS], id;
	struct kr_keyfile *kf;
	struct kr_keys *keys, *keys2;
	struct kr_secret *kek;
	struct kr_error err;

	test_begin("slot remove");
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	for (unsigned int i = 0; i < TEST_SLOTS; i++) {
		test_assert_idx(kr_slot_add(kf, keys, "x", &test_params_fast,
					    passwords[i], sizeof(passwords[i]),
					    &ids[i], &err) == 0, i);
	}
	test_assert(kr_slot_open(kf, passwords[1], &id, &kek, &err) == 1);
	test_assert(kr_slot_remove(kf, ids[1]) == 1);
	test_assert(kr_slot_remove(kf, ids[1]) == 0);
	test_assert(kr_keyfile_slot_count(kf) == TEST_SLOTS - 1);
	test_assert(test_open_unwrap(kf, passwords[1], ids[1], keys) == 0);
	/* A KEK handed out before the removal no longer unwraps. */
	test_assert(kr_slot_unwrap(kf, ids[1], kr_secret_data(kek), &keys2,
				   &err) == 0 && keys2 == NULL &&
		    err.kind == KR_ERR_NOT_FOUND);
	kr_secret_free(&kek);
	test_assert(kek == NULL);
	test_assert(test_open_unwrap(kf, passwords[0], ids[0], keys) == 1);
	test_assert(test_open_unwrap(kf, passwords[2], ids[2], keys) == 1);
	for (unsigned int i = 0; i < TEST_SLOTS; i++)
		sodium_memzero(passwords[i], sizeof(passwords[i]));
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

static void test_slot_ids_not_reused(void)
{
	struct kr_keyfile *kf, *kf2;
	struct kr_keys *keys;
	struct kr_error err;
	unsigned int id;
	unsigned char *data;
	size_t size;

	test_begin("slot ids not reused");
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	for (unsigned int i = 1; i <= 3; i++) {
		test_assert_idx(kr_slot_add_password(kf, keys, NULL,
						     &test_params_fast, "pw",
						     &id, &err) == 0 &&
				id == i, i);
	}
	test_assert(kr_slot_remove(kf, 3) == 1);
	test_assert(kr_slot_remove(kf, 1) == 1);
	test_assert(kr_slot_add_password(kf, keys, NULL, &test_params_fast,
					 "pw", &id, &err) == 0 && id == 4);
	test_assert(kr_slot_remove(kf, 2) == 1 && kr_slot_remove(kf, 4) == 1);
	test_assert(kr_keyfile_slot_count(kf) == 0);
	/* The counter survives a write and read with no slot left. */
	test_assert(kr_keyfile_serialize(kf, &data, &size, &err) == 0);
	test_assert(kr_keyfile_parse(data, size, &kf2, &err) == 0);
	test_assert(kr_slot_add_password(kf2, keys, NULL, &test_params_fast,
					 "pw", &id, &err) == 0 && id == 5);
	free(data);
	kr_keyfile_free(&kf2);
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

static void test_slot_limits(void)
{
	static const struct kr_pwhash_params bad_params[] = {
		{ .opslimit = 0, .memlimit = KR_MEMLIMIT_MIN },
		{ .opslimit = KR_OPSLIMIT_MAX + 1, .memlimit = KR_MEMLIMIT_MIN },
		{ .opslimit = 1, .memlimit = KR_MEMLIMIT_MIN - 1 },
		{ .opslimit = 1, .memlimit = KR_MEMLIMIT_MAX + 1 },
	};
	static const char *const bad_labels[] = {
		"tab\there", "new\nline", "del\x7f", "\xff", "\xc3",
		"\xed\xa0\x80", /* a UTF-16 surrogate */
		"\xc0\xaf",	/* overlong '/' */
		"0123456789012345678901234567890123456789012345678901234567890123x",
	};
	char long_password[KR_PASSWORD_INPUT_MAX + 2];
	char password[KR_PASSWORD_BUFSIZE];
	struct kr_keyfile *kf, *other_kf;
	struct kr_keys *keys, *other_keys;
	struct kr_error err;
	unsigned int id;
	bool all_ok = true;

	test_begin("slot limits");
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	test_assert(kr_keyfile_create(TEST_USER, NULL, &other_kf, &other_keys,
				      &err) == 0);
	for (unsigned int i = 0; i < N_ELEMENTS(bad_params); i++) {
		test_assert_idx(kr_slot_add_password(kf, keys, NULL,
						     &bad_params[i], "pw", &id,
						     &err) == -1 &&
				err.kind == KR_ERR_LIMIT, i);
	}
	for (unsigned int i = 0; i < N_ELEMENTS(bad_labels); i++) {
		test_assert_idx(kr_slot_add_password(kf, keys, bad_labels[i],
						     &test_params_fast, "pw",
						     &id, &err) == -1 &&
				err.kind == KR_ERR_LIMIT, i);
	}
	memset(long_password, 'a', sizeof(long_password) - 1);
	long_password[sizeof(long_password) - 1] = '\0';
	test_assert(kr_slot_add_password(kf, keys, NULL, &test_params_fast,
					 long_password, &id, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT);
	test_assert(kr_slot_add_password(kf, keys, NULL, &test_params_fast,
					 "", &id, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT);
	test_assert(kr_slot_add(kf, keys, NULL, &test_params_fast, password,
				KR_PASSWORD_BUFSIZE - 1, &id, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT);
	/* Keys of another mailbox are refused. */
	test_assert(kr_slot_add_password(kf, other_keys, NULL,
					 &test_params_fast, "pw", &id,
					 &err) == -1 &&
		    err.kind == KR_ERR_INTERNAL);
	test_assert(kr_keyfile_slot_count(kf) == 0);

	/* Longest label, widest UTF-8, then up to KR_SLOTS_MAX slots. */
	test_assert(kr_slot_add_password(kf, keys, bad_labels[7] + 1,
					 &test_params_fast, "pw", &id,
					 &err) == 0);
	test_assert(kr_slot_add_password(kf, keys, "\xf0\x9f\x93\xa7 \xe2\x82\xac",
					 &test_params_fast, "pw", &id,
					 &err) == 0);
	while (kr_keyfile_slot_count(kf) < KR_SLOTS_MAX) {
		if (kr_slot_add_password(kf, keys, "many", &test_params_fast,
					 "pw", &id, &err) < 0) {
			all_ok = false;
			break;
		}
	}
	test_assert(all_ok && id == KR_SLOTS_MAX);
	test_assert(kr_slot_add(kf, keys, NULL, &test_params_fast, password,
				sizeof(password), &id, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT && id == 0 &&
		    sodium_is_zero((unsigned char *)password,
				   sizeof(password)));
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	kr_keyfile_free(&other_kf);
	kr_keys_free(&other_keys);
	test_end();
}

/* Where things lie in the image, see keyring-private.h. */
struct test_layout {
	size_t header_end, recovery_end;
	size_t slot_start[2], slot_end[2];
};

static void test_slot_tamper_every_byte(void)
{
	static const char *const passwords[] = {
		TEST_SHAPED_PASSWORD, "Correct Horse Battery Staple",
	};
	static const unsigned char masks[] = { 0x01, 0x80 };
	unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES];
	unsigned char recovery_sk[KR_SECRET_KEY_BYTES];
	unsigned char keks[N_ELEMENTS(passwords)][KR_KEK_BYTES];
	unsigned int ids[N_ELEMENTS(passwords)], id;
	struct kr_keyfile *kf, *kf2;
	struct kr_keys *keys, *keys2;
	struct kr_secret *kek;
	struct kr_error err;
	struct test_layout lay;
	unsigned char *data, *copy;
	size_t size;
	unsigned int parsed = 0, rejected = 0, bad = 0;

	test_begin("slot tamper every byte");
	crypto_box_keypair(recovery_pk, recovery_sk);
	test_assert(kr_keyfile_create(TEST_USER, recovery_pk, &kf, &keys,
				      &err) == 0);
	for (unsigned int i = 0; i < N_ELEMENTS(passwords); i++) {
		test_assert_idx(kr_slot_add_password(kf, keys, "t",
						     &test_params_fast,
						     passwords[i], &ids[i],
						     &err) == 0, i);
		test_assert_idx(kr_slot_open(kf, passwords[i], &id, &kek,
					     &err) == 1, i);
		memcpy(keks[i], kr_secret_data(kek), KR_KEK_BYTES);
		kr_secret_free(&kek);
	}
	test_assert(kr_keyfile_serialize(kf, &data, &size, &err) == 0);
	lay.header_end = KR_HEADER_FIXED_BYTES + strlen(TEST_USER);
	lay.recovery_end = lay.header_end + 1 + KR_RECOVERY_BYTES;
	lay.slot_start[0] = lay.recovery_end + 4 + 4;
	for (unsigned int i = 0; i < N_ELEMENTS(ids); i++) {
		if (i > 0)
			lay.slot_start[i] = lay.slot_end[i - 1];
		lay.slot_end[i] = lay.slot_start[i] + KR_SLOT_FIXED_BYTES +
			strlen("t");
	}
	test_assert(lay.slot_end[N_ELEMENTS(ids) - 1] == size);

	copy = malloc(size);
	for (size_t off = 0; off < size; off++) {
		for (unsigned int m = 0; m < N_ELEMENTS(masks); m++) {
			/* The recovery box covers the header and itself. */
			bool recovery_ok_allowed = off >= lay.recovery_end;
			bool ok = true;

			memcpy(copy, data, size);
			copy[off] ^= masks[m];
			if (kr_keyfile_parse(copy, size, &kf2, &err) < 0) {
				if (err.kind != KR_ERR_CORRUPT)
					ok = false;
				rejected++;
				goto next;
			}
			parsed++;
			for (unsigned int i = 0; i < N_ELEMENTS(ids); i++) {
				/* A slot covers the header and itself. */
				bool slot_ok_allowed =
					off >= lay.header_end &&
					(off < lay.slot_start[i] ||
					 off >= lay.slot_end[i]);
				int ret = kr_slot_unwrap(kf2, ids[i], keks[i],
							 &keys2, &err);

				if (ret == 1) {
					ok = ok && slot_ok_allowed &&
						test_keys_equal(keys2, keys);
					kr_keys_free(&keys2);
				} else if (ret != 0) {
					ok = false;
				}
				ret = kr_slot_open(kf2, passwords[i], &id, &kek,
						   &err);
				if (ret == 1)
					ok = ok && slot_ok_allowed &&
						id == ids[i];
				else if (ret != 0)
					ok = false;
				kr_secret_free(&kek);
			}
			if (kr_recovery_unwrap(kf2, recovery_pk, recovery_sk,
					       &keys2, &err) == 1) {
				ok = ok && recovery_ok_allowed &&
					test_keys_equal(keys2, keys);
				kr_keys_free(&keys2);
			}
			kr_keyfile_free(&kf2);
		next:
			if (!ok && bad++ == 0)
				test_diag("offset %zu mask 0x%02x", off,
					  masks[m]);
		}
	}
	test_assert(bad == 0);
	/* Both outcomes happened, so both paths above were exercised. */
	test_assert(parsed > 0 && rejected > 0);
	test_diag("%zu bytes: %u flips parsed (then failed to authenticate "
		  "or were harmless), %u rejected as corrupt",
		  size, parsed, rejected);
	free(copy);
	free(data);
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

static void test_slot_header_substituted(void)
{
	unsigned char ad[KR_SLOT_AD_MAX], kek[KR_KEK_BYTES];
	unsigned char other_pk[KR_PUBLIC_KEY_BYTES];
	unsigned char other_sk[KR_SECRET_KEY_BYTES];
	struct kr_keyfile *kf;
	struct kr_keys *keys, *keys2;
	struct kr_secret *kek_secret;
	struct kr_slot *slot;
	struct kr_error err;
	unsigned int id, opened;
	size_t ad_len;

	test_begin("slot header substituted");
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	test_assert(kr_slot_add_password(kf, keys, "a", &test_params_fast,
					 TEST_SHAPED_PASSWORD, &id,
					 &err) == 0);
	test_assert(kr_slot_open(kf, TEST_SHAPED_PASSWORD, &opened,
				 &kek_secret, &err) == 1 && opened == id);
	memcpy(kek, kr_secret_data(kek_secret), sizeof(kek));
	kr_secret_free(&kek_secret);
	slot = &kf->slots[0];

	/* Another public key in the header: the slot's associated data no
	   longer matches. */
	crypto_box_keypair(other_pk, other_sk);
	memcpy(kf->public_key, other_pk, sizeof(other_pk));
	test_assert(kr_slot_unwrap(kf, id, kek, &keys2, &err) == 0 &&
		    keys2 == NULL);
	test_assert(kr_slot_open(kf, TEST_SHAPED_PASSWORD, &opened,
				 &kek_secret, &err) == 0);

	/* Even re-sealed by someone holding the KEK, a slot whose secret
	   key does not belong to the header's public key is refused. */
	ad_len = kr_keyfile_slot_ad(kf, slot, ad);
	test_assert(crypto_aead_xchacha20poly1305_ietf_encrypt(
		slot->wrapped, NULL, keys->master_key, KR_WRAPPED_PLAIN_BYTES,
		ad, ad_len, NULL, slot->nonce, kek) == 0);
	test_assert(kr_slot_unwrap(kf, id, kek, &keys2, &err) == 0 &&
		    keys2 == NULL);
	test_assert(kr_slot_open(kf, TEST_SHAPED_PASSWORD, &opened,
				 &kek_secret, &err) == 0);
	/* ... and it opens once the header is right again, so the two
	   refusals above were about the key pair. */
	memcpy(kf->public_key, keys->public_key, KR_PUBLIC_KEY_BYTES);
	ad_len = kr_keyfile_slot_ad(kf, slot, ad);
	test_assert(crypto_aead_xchacha20poly1305_ietf_encrypt(
		slot->wrapped, NULL, keys->master_key, KR_WRAPPED_PLAIN_BYTES,
		ad, ad_len, NULL, slot->nonce, kek) == 0);
	test_assert(kr_slot_unwrap(kf, id, kek, &keys2, &err) == 1 &&
		    test_keys_equal(keys2, keys));
	kr_keys_free(&keys2);

	/* The user name is bound too. */
	memcpy(kf->user, "eve", 3);
	test_assert(kr_slot_unwrap(kf, id, kek, &keys2, &err) == 0);
	memcpy(kf->user, TEST_USER, 3);

	/* A wrong KEK and an unknown slot. */
	kek[0] ^= 1;
	test_assert(kr_slot_unwrap(kf, id, kek, &keys2, &err) == 0 &&
		    err.kind == KR_ERR_CORRUPT);
	kek[0] ^= 1;
	test_assert(kr_slot_unwrap(kf, id + 1, kek, &keys2, &err) == 0 &&
		    err.kind == KR_ERR_NOT_FOUND);
	test_assert(kr_slot_unwrap(kf, id, kek, &keys2, &err) == 1);
	kr_keys_free(&keys2);
	sodium_memzero(kek, sizeof(kek));
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

static void test_slot_default_params(void)
{
	char password[KR_PASSWORD_BUFSIZE];
	struct kr_keyfile *kf;
	struct kr_keys *keys, *keys2;
	struct kr_secret *kek;
	struct kr_slot_info info;
	struct kr_error err;
	unsigned int id, opened_id;
	double start;
	int ret;

	test_begin("slot default params");
	test_assert(kr_pwhash_default.opslimit == 3 &&
		    kr_pwhash_default.memlimit == 64 * 1024 * 1024);
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	test_assert(kr_slot_add(kf, keys, "default", NULL, password,
				sizeof(password), &id, &err) == 0);
	kr_keyfile_slot_info(kf, 0, &info);
	test_assert(info.opslimit == 3 && info.memlimit == 64 * 1024 * 1024);
	start = test_now();
	ret = kr_slot_open(kf, password, &opened_id, &kek, &err);
	test_diag("one Argon2id open at t=3 m=64 MiB: %.3f s",
		  test_now() - start);
	test_assert(ret == 1 && opened_id == id);
	test_assert(ret == 1 &&
		    kr_slot_unwrap(kf, id, kr_secret_data(kek), &keys2,
				   &err) == 1 &&
		    test_keys_equal(keys2, keys));
	kr_keys_free(&keys2);
	kr_secret_free(&kek);
	sodium_memzero(password, sizeof(password));
	kr_keyfile_free(&kf);
	kr_keys_free(&keys);
	test_end();
}

static void test_password_generate(void)
{
	static const char alphabet[] = KR_PASSWORD_ALPHABET;
	char passwords[100][KR_PASSWORD_BUFSIZE];
	unsigned int seen[256] = { 0 };
	bool shape_ok = true, distinct = true, alphabet_distinct = true;
	unsigned int symbols_used = 0;

	test_begin("password generate");
	for (unsigned int i = 0; i < sizeof(alphabet) - 1; i++) {
		for (unsigned int j = 0; j < i; j++)
			alphabet_distinct &= alphabet[i] != alphabet[j];
	}
	test_assert(alphabet_distinct && sizeof(alphabet) - 1 == 32);
	/* No look-alikes in the alphabet itself. */
	test_assert(strpbrk(alphabet, "ilouILOU") == NULL);
	for (unsigned int i = 0; i < N_ELEMENTS(passwords); i++) {
		const char *p = passwords[i];

		memset(passwords[i], 'X', sizeof(passwords[i]));
		kr_password_generate(passwords[i]);
		shape_ok &= strlen(p) == KR_PASSWORD_CHARS +
			KR_PASSWORD_CHARS / KR_PASSWORD_GROUP - 1;
		for (unsigned int k = 0; p[k] != '\0'; k++) {
			if (k % (KR_PASSWORD_GROUP + 1) == KR_PASSWORD_GROUP) {
				shape_ok &= p[k] == '-';
			} else {
				shape_ok &= strchr(alphabet, p[k]) != NULL;
				seen[(unsigned char)p[k]]++;
			}
		}
		for (unsigned int j = 0; j < i; j++)
			distinct &= strcmp(passwords[i], passwords[j]) != 0;
	}
	test_assert(shape_ok);
	test_assert(distinct);
	for (unsigned int i = 0; i < 256; i++)
		symbols_used += seen[i] > 0 ? 1 : 0;
	/* 2,800 draws miss one of 32 symbols with probability ~1e-38. */
	test_assert(symbols_used == 32);
	sodium_memzero(passwords, sizeof(passwords));
	test_end();
}

static void test_kek_encode_decode(void)
{
	static const unsigned int ids[] = { 1, 42, 4294967294U };
#define TEST_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	static const char *const malformed[] = {
		"", ":", "1", "1:", TEST_B64, ":" TEST_B64, "0:" TEST_B64,
		"-1:" TEST_B64, "+1:" TEST_B64, " 1:" TEST_B64,
		"1 :" TEST_B64, "01:" TEST_B64, "1::" TEST_B64,
		"1:" TEST_B64 ":", "4294967295:" TEST_B64,
		"99999999999:" TEST_B64, "a:" TEST_B64, "1;" TEST_B64,
	};
	/* base64 tails, after "7:" */
	static const char *const bad_b64[] = {
		/* no padding */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
		/* extra padding */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==",
		/* trailing newline */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
		/* 31 bytes */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
		/* 33 bytes */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
		/* URL-safe alphabet */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd-_8=",
		/* non-zero padding bits */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
		/* space inside */
		"AAECAwQFBgcICQoLDA0O xAREhMUFRYXGBkaGxwdHh8=",
	};
	unsigned char kek[KR_KEK_BYTES];
	char buf[KR_KEK_FIELD_BUFSIZE], str[128];
	struct kr_secret *decoded;
	unsigned int id;
	bool wiped;

	test_begin("kek encode decode");
	for (unsigned int i = 0; i < KR_KEK_BYTES; i++)
		kek[i] = (unsigned char)i;
	test_assert(kr_kek_encode(7, kek, buf, sizeof(buf)) == 0);
	test_assert_strcmp(buf, "7:" TEST_B64);
	for (unsigned int i = 0; i < N_ELEMENTS(ids); i++) {
		randombytes_buf(kek, sizeof(kek));
		test_assert_idx(kr_kek_encode(ids[i], kek, buf,
					      sizeof(buf)) == 0, i);
		test_assert_idx(kr_kek_decode(buf, &id, &decoded) == 0 &&
				id == ids[i] &&
				kr_secret_len(decoded) == KR_KEK_BYTES &&
				memcmp(kr_secret_data(decoded), kek,
				       KR_KEK_BYTES) == 0, i);
		kr_secret_free(&decoded);
	}
	/* Too small a buffer: -1 and nothing of the KEK left in it. */
	test_assert(kr_kek_encode(4294967294U, kek, buf, sizeof(buf)) == 0);
	test_assert(kr_kek_encode(4294967294U, kek, buf,
				  strlen(buf)) == -1);
	wiped = sodium_is_zero((unsigned char *)buf, strlen("4294967294:") +
			       44) == 1;
	test_assert(wiped);
	test_assert(kr_kek_encode(1, kek, buf, 0) == -1);
	test_assert(kr_kek_encode(1, kek, buf, 3) == -1);

	for (unsigned int i = 0; i < N_ELEMENTS(malformed); i++) {
		id = 99;
		decoded = (void *)1;
		test_assert_idx(kr_kek_decode(malformed[i], &id,
					      &decoded) == -1 &&
				id == 0 && decoded == NULL, i);
	}
	for (unsigned int i = 0; i < N_ELEMENTS(bad_b64); i++) {
		snprintf(str, sizeof(str), "7:%s", bad_b64[i]);
		test_assert_idx(kr_kek_decode(str, &id, &decoded) == -1 &&
				decoded == NULL, i);
	}
	/* The good form of the same table decodes. */
	test_assert(kr_kek_decode("7:" TEST_B64, &id, &decoded) == 0 &&
		    id == 7);
	kr_secret_free(&decoded);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_slot_round_trip,
		test_slot_wrong_password,
		test_slot_unlock,
		test_slot_password_forms,
		test_slot_custom_password,
		test_slot_remove,
		test_slot_ids_not_reused,
		test_slot_limits,
		test_slot_tamper_every_byte,
		test_slot_header_substituted,
		test_slot_default_params,
		test_password_generate,
		test_kek_encode_decode,
		NULL
	};

	return test_run(cases);
}
