/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "test-keyring.h"

#define TEST_USER "carol@lubuntu.me"
#define TEST_OTHER_USER "dave@lubuntu.me"

struct test_admin {
	unsigned char pk[KR_PUBLIC_KEY_BYTES];
	unsigned char sk[KR_SECRET_KEY_BYTES];
};

static void test_recovery_round_trip(void)
{
	struct test_admin admin;
	char password[KR_PASSWORD_BUFSIZE];
	struct kr_keyfile *kf, *kf2;
	struct kr_keys *keys, *recovered, *keys2;
	struct kr_secret *kek;
	struct kr_error err;
	char dir[PATH_MAX], path[PATH_MAX + 32];
	unsigned int id, opened;

	test_begin("recovery round trip");
	crypto_box_keypair(admin.pk, admin.sk);
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/" KR_KEYFILE_NAME, dir);
	test_assert(kr_keyfile_create(TEST_USER, admin.pk, &kf, &keys,
				      &err) == 0);
	test_assert(kr_keyfile_has_recovery(kf));
	test_assert(kr_keyfile_write(kf, path, (uid_t)-1, (gid_t)-1,
				     &err) == 0);
	test_assert(kr_keyfile_read(path, &kf2, &err) == 1);
	test_assert(kr_keyfile_has_recovery(kf2));
	test_assert(kr_recovery_unwrap(kf2, admin.pk, admin.sk, &recovered,
				       &err) == 1 &&
		    test_keys_equal(recovered, keys));

	/* What recovery is for: a new password for a user who lost theirs,
	   opening the same master key. */
	test_assert(kr_slot_add(kf2, recovered, "new phone", &test_params_fast,
				password, sizeof(password), &id, &err) == 0);
	test_assert(kr_slot_open(kf2, password, &opened, &kek, &err) == 1 &&
		    opened == id);
	test_assert(kr_slot_unwrap(kf2, id, kr_secret_data(kek), &keys2,
				   &err) == 1 &&
		    test_keys_equal(keys2, keys));
	sodium_memzero(password, sizeof(password));
	kr_secret_free(&kek);
	kr_keys_free(&keys2);
	kr_keys_free(&recovered);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf2);
	kr_keyfile_free(&kf);
	test_tmpdir_remove(dir);
	test_end();
}

static void test_recovery_wrong_key(void)
{
	struct test_admin admin, other;
	struct kr_keyfile *kf, *plain_kf;
	struct kr_keys *keys, *plain_keys, *recovered;
	struct kr_error err;

	test_begin("recovery wrong key");
	crypto_box_keypair(admin.pk, admin.sk);
	crypto_box_keypair(other.pk, other.sk);
	test_assert(kr_keyfile_create(TEST_USER, admin.pk, &kf, &keys,
				      &err) == 0);
	recovered = (void *)1;
	test_assert(kr_recovery_unwrap(kf, other.pk, other.sk, &recovered,
				       &err) == 0 && recovered == NULL &&
		    err.kind == KR_ERR_CORRUPT);
	test_assert(kr_recovery_unwrap(kf, admin.pk, other.sk, &recovered,
				       &err) == 0 && recovered == NULL);
	test_assert(kr_recovery_unwrap(kf, other.pk, admin.sk, &recovered,
				       &err) == 0 && recovered == NULL);
	/* The right pair still works, so the refusals were the keys'. */
	test_assert(kr_recovery_unwrap(kf, admin.pk, admin.sk, &recovered,
				       &err) == 1);
	kr_keys_free(&recovered);

	/* No recovery slot at all. */
	test_assert(kr_keyfile_create(TEST_USER, NULL, &plain_kf, &plain_keys,
				      &err) == 0);
	test_assert(kr_recovery_unwrap(plain_kf, admin.pk, admin.sk,
				       &recovered, &err) == 0 &&
		    recovered == NULL && err.kind == KR_ERR_NOT_FOUND);
	kr_keys_free(&plain_keys);
	kr_keyfile_free(&plain_kf);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	test_end();
}

static void test_recovery_box_moved(void)
{
	struct test_admin admin;
	struct kr_keyfile *kf_a, *kf_b;
	struct kr_keys *keys_a, *keys_b, *recovered;
	struct kr_error err;

	test_begin("recovery box moved");
	crypto_box_keypair(admin.pk, admin.sk);
	test_assert(kr_keyfile_create(TEST_USER, admin.pk, &kf_a, &keys_a,
				      &err) == 0);
	test_assert(kr_keyfile_create(TEST_OTHER_USER, admin.pk, &kf_b,
				      &keys_b, &err) == 0);
	/* A's box in B's file: A's secret key does not match B's public
	   key. */
	memcpy(kf_b->recovery, kf_a->recovery, KR_RECOVERY_BYTES);
	test_assert(kr_recovery_unwrap(kf_b, admin.pk, admin.sk, &recovered,
				       &err) == 0 && recovered == NULL);
	/* A's file relabelled as B's: the box's header hash differs. */
	memcpy(kf_a->user, TEST_OTHER_USER, sizeof(TEST_OTHER_USER));
	kf_a->user_len = strlen(TEST_OTHER_USER);
	test_assert(kr_recovery_unwrap(kf_a, admin.pk, admin.sk, &recovered,
				       &err) == 0 && recovered == NULL);
	memcpy(kf_a->user, TEST_USER, sizeof(TEST_USER));
	kf_a->user_len = strlen(TEST_USER);
	test_assert(kr_recovery_unwrap(kf_a, admin.pk, admin.sk, &recovered,
				       &err) == 1 &&
		    test_keys_equal(recovered, keys_a));
	kr_keys_free(&recovered);
	kr_keys_free(&keys_a);
	kr_keys_free(&keys_b);
	kr_keyfile_free(&kf_a);
	kr_keyfile_free(&kf_b);
	test_end();
}

static void test_recovery_set(void)
{
	static const unsigned char zero_pk[KR_PUBLIC_KEY_BYTES] = { 0 };
	struct test_admin admin, rotated;
	struct kr_keyfile *kf, *other_kf;
	struct kr_keys *keys, *other_keys, *recovered;
	struct kr_error err;

	test_begin("recovery set");
	crypto_box_keypair(admin.pk, admin.sk);
	crypto_box_keypair(rotated.pk, rotated.sk);
	test_assert(kr_keyfile_create(TEST_USER, NULL, &kf, &keys, &err) == 0);
	test_assert(kr_keyfile_create(TEST_OTHER_USER, NULL, &other_kf,
				      &other_keys, &err) == 0);
	test_assert(kr_recovery_set(kf, keys, admin.pk, &err) == 0 &&
		    kr_keyfile_has_recovery(kf));
	test_assert(kr_recovery_unwrap(kf, admin.pk, admin.sk, &recovered,
				       &err) == 1 &&
		    test_keys_equal(recovered, keys));
	kr_keys_free(&recovered);
	/* Rotation: the old admin key no longer opens it. */
	test_assert(kr_recovery_set(kf, keys, rotated.pk, &err) == 0);
	test_assert(kr_recovery_unwrap(kf, admin.pk, admin.sk, &recovered,
				       &err) == 0);
	test_assert(kr_recovery_unwrap(kf, rotated.pk, rotated.sk,
				       &recovered, &err) == 1);
	kr_keys_free(&recovered);
	/* Refusals leave the box as it was. */
	test_assert(kr_recovery_set(kf, other_keys, admin.pk, &err) == -1 &&
		    err.kind == KR_ERR_INTERNAL);
	test_assert(kr_recovery_set(kf, keys, zero_pk, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT);
	test_assert(kr_recovery_unwrap(kf, rotated.pk, rotated.sk,
				       &recovered, &err) == 1);
	kr_keys_free(&recovered);
	/* Removal. */
	test_assert(kr_recovery_set(kf, keys, NULL, &err) == 0 &&
		    !kr_keyfile_has_recovery(kf));
	test_assert(kr_recovery_unwrap(kf, rotated.pk, rotated.sk,
				       &recovered, &err) == 0);
	/* A small-order recovery key is refused at creation too. */
	kr_keys_free(&other_keys);
	kr_keyfile_free(&other_kf);
	test_assert(kr_keyfile_create(TEST_OTHER_USER, zero_pk, &other_kf,
				      &other_keys, &err) == -1 &&
		    err.kind == KR_ERR_LIMIT && other_kf == NULL);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	test_end();
}

/* The admin's secret key as --recovery-key reads it. */
static void test_recovery_key_decode(void)
{
	static const char *const invalid[] = {
		"",
		"abc",
		/* 31 bytes */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
		/* 33 bytes */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
		/* URL-safe alphabet */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd-_8=",
		/* something after the key */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= x",
	};
	struct test_admin admin, other;
	char base64[sodium_base64_ENCODED_LEN(KR_SECRET_KEY_BYTES,
		sodium_base64_VARIANT_ORIGINAL) + 4];
	struct kr_secret *sk;
	struct kr_error err;
	size_t len;

	test_begin("recovery key decode");
	crypto_box_keypair(admin.pk, admin.sk);
	crypto_box_keypair(other.pk, other.sk);
	sodium_bin2base64(base64, sizeof(base64), admin.sk, sizeof(admin.sk),
			  sodium_base64_VARIANT_ORIGINAL);
	len = strlen(base64);
	test_assert(kr_recovery_key_decode(base64, len, admin.pk, &sk,
					   &err) == 1 &&
		    kr_secret_len(sk) == KR_SECRET_KEY_BYTES &&
		    memcmp(kr_secret_data(sk), admin.sk, KR_SECRET_KEY_BYTES) == 0);
	kr_secret_free(&sk);
	/* as a file holds it: a line, maybe with a CR and blanks */
	strcat(base64, " \r\n");
	test_assert(kr_recovery_key_decode(base64, strlen(base64), admin.pk,
					   &sk, &err) == 1);
	kr_secret_free(&sk);
	/* a key, but not the configured public key's */
	sk = (void *)1;
	test_assert(kr_recovery_key_decode(base64, len, other.pk, &sk,
					   &err) == 0 && sk == NULL &&
		    err.kind == KR_ERR_CORRUPT &&
		    strstr(err.text, "does not match") != NULL);
	for (unsigned int i = 0; i < N_ELEMENTS(invalid); i++) {
		sk = (void *)1;
		test_assert_idx(kr_recovery_key_decode(invalid[i],
						       strlen(invalid[i]),
						       admin.pk, &sk,
						       &err) == -1 &&
				sk == NULL && err.kind == KR_ERR_CORRUPT, i);
	}
	test_end();
}

static void test_recovery_key_read(void)
{
	struct test_admin admin, other;
	char base64[sodium_base64_ENCODED_LEN(KR_SECRET_KEY_BYTES,
		sodium_base64_VARIANT_ORIGINAL) + 1];
	char dir[PATH_MAX], path[PATH_MAX + 32];
	char big[KR_RECOVERY_KEY_FILE_MAX + 8];
	struct kr_keyfile *kf;
	struct kr_keys *keys, *recovered;
	struct kr_secret *sk;
	struct kr_error err;

	test_begin("recovery key read");
	crypto_box_keypair(admin.pk, admin.sk);
	crypto_box_keypair(other.pk, other.sk);
	test_tmpdir_create(dir);
	snprintf(path, sizeof(path), "%s/recovery.key", dir);
	sodium_bin2base64(base64, sizeof(base64), admin.sk, sizeof(admin.sk),
			  sodium_base64_VARIANT_ORIGINAL);
	strcat(base64, "\n");
	test_assert(test_file_write(path, base64, strlen(base64)) == 0);
	/* what reset --recovery-key does with it */
	test_assert(kr_keyfile_create(TEST_USER, admin.pk, &kf, &keys,
				      &err) == 0);
	test_assert(kr_recovery_key_read(path, admin.pk, &sk, &err) == 1 &&
		    kr_recovery_unwrap(kf, admin.pk, kr_secret_data(sk),
				       &recovered, &err) == 1 &&
		    test_keys_equal(recovered, keys));
	kr_keys_free(&recovered);
	kr_secret_free(&sk);
	/* not the configured key's pair: named in the error */
	test_assert(kr_recovery_key_read(path, other.pk, &sk, &err) == 0 &&
		    sk == NULL && strstr(err.text, path) != NULL &&
		    strstr(err.text, "does not match") != NULL);
	/* no file */
	snprintf(path, sizeof(path), "%s/missing.key", dir);
	test_assert(kr_recovery_key_read(path, admin.pk, &sk, &err) == -1 &&
		    sk == NULL && err.kind == KR_ERR_NOT_FOUND);
	/* a directory cannot be read */
	test_assert(kr_recovery_key_read(dir, admin.pk, &sk, &err) == -1 &&
		    sk == NULL && err.kind == KR_ERR_IO);
	/* longer than any key file */
	snprintf(path, sizeof(path), "%s/big.key", dir);
	memset(big, 'A', sizeof(big));
	test_assert(test_file_write(path, big, sizeof(big)) == 0);
	test_assert(kr_recovery_key_read(path, admin.pk, &sk, &err) == -1 &&
		    sk == NULL && err.kind == KR_ERR_CORRUPT);
	/* garbage */
	test_assert(test_file_write(path, "not a key\n", 10) == 0);
	test_assert(kr_recovery_key_read(path, admin.pk, &sk, &err) == -1 &&
		    sk == NULL && err.kind == KR_ERR_CORRUPT &&
		    strstr(err.text, "is not a base64") != NULL);
	kr_keys_free(&keys);
	kr_keyfile_free(&kf);
	test_tmpdir_remove(dir);
	test_end();
}

static void test_public_key_decode(void)
{
	static const char *const invalid[] = {
		"",
		"abc",
		/* 31 bytes */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
		/* 33 bytes */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
		/* no padding */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
		/* URL-safe alphabet */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd-_8=",
		/* trailing white space */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= ",
		/* hex, not base64 */
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		/* small-order points: zero, one, and an order-8 point */
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=",
	};
	unsigned char pk[KR_PUBLIC_KEY_BYTES], sk[KR_SECRET_KEY_BYTES];
	unsigned char decoded[KR_PUBLIC_KEY_BYTES];
	char base64[sodium_base64_ENCODED_LEN(KR_PUBLIC_KEY_BYTES,
					      sodium_base64_VARIANT_ORIGINAL)];

	test_begin("public key decode");
	crypto_box_keypair(pk, sk);
	sodium_bin2base64(base64, sizeof(base64), pk, sizeof(pk),
			  sodium_base64_VARIANT_ORIGINAL);
	test_assert(kr_public_key_decode(base64, decoded) == 0 &&
		    memcmp(decoded, pk, sizeof(pk)) == 0);
	/* Not a small-order point, just counting bytes. */
	test_assert(kr_public_key_decode(
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", decoded) == 0);
	for (unsigned int i = 0; i < N_ELEMENTS(invalid); i++) {
		memset(decoded, 0xaa, sizeof(decoded));
		test_assert_idx(kr_public_key_decode(invalid[i], decoded) == -1,
				i);
	}
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_recovery_round_trip,
		test_recovery_wrong_key,
		test_recovery_box_moved,
		test_recovery_set,
		test_recovery_key_decode,
		test_recovery_key_read,
		test_public_key_decode,
		NULL
	};

	return test_run(cases);
}
