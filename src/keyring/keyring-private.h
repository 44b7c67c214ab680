/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef KEYRING_PRIVATE_H
#define KEYRING_PRIVATE_H

/* Internals of libkeyring: the on-disk keyfile format and what crosses the
   kr-*.c files.  Included only inside src/keyring (and its tests).

   Keyfile format, version 1.  All integers little-endian; U = user length,
   R = recovery length, L = label length.

   offset     size  field
   ---------  ----  -------------------------------------------------------
   0             8  magic "SQLBOXK\0"
   8             4  version = 1
   12            2  U (1..KR_USER_MAX)
   14            U  user: canonical "name@domain", printable ASCII, one '@'
   14+U         32  X25519 public key
   46+U          1  recovery present: 0 or 1
   47+U          R  R = 0, or KR_RECOVERY_BYTES (144) when present:
                    crypto_box_seal(master key || X25519 secret key ||
                                    BLAKE2b-256(bytes [0, 46+U)),
                                    recovery public key)
   47+U+R        4  next slot id (> every slot id; ids are never reused)
   51+U+R        4  slot count N (0..KR_SLOTS_MAX)
   55+U+R        .  N slots, ids strictly ascending, each:
     +0          4    id (>= 1)
     +4          8    created, Unix time (signed)
     +12         1    flags: bit 0 = hint present; other bits must be 0
     +13         1    L (0..KR_LABEL_MAX)
     +14         L    label: UTF-8, no control characters
     +14+L       8    Argon2id opslimit (KR_OPSLIMIT_MIN..KR_OPSLIMIT_MAX)
     +22+L       8    Argon2id memlimit, bytes (KR_MEMLIMIT_MIN..MAX)
     +30+L      16    salt (crypto_pwhash_SALTBYTES)
     +46+L       4    hint: BLAKE2b-128 keyed with the salt, of the
                      normalised password, first 4 bytes; 0 if no hint
     +50+L      24    nonce (XChaCha20-Poly1305-IETF)
     +74+L      80    XChaCha20-Poly1305-IETF_KEK(master key || secret key)
                      = 64 bytes + 16-byte tag
     = 154+L bytes
   Nothing may follow the last slot.

   Associated data of a slot = file bytes [0, 46+U) (magic, version, user,
   public key) || the slot's bytes [+0, +50+L) (id, created, flags, label,
   Argon2id parameters, salt, hint).  Moving a slot to another file or user,
   renumbering it, relabelling it or substituting the public key makes it
   fail to authenticate.  Not authenticated by any slot: the recovery box
   (itself a MAC'd sealed box; its opened secret key is checked against the
   public key), next slot id and slot count (checked structurally), so that
   slots can be removed without any key.  The recovery box carries its own
   hash of the header, so it cannot be moved to another user either.

   The KEK is crypto_pwhash(Argon2id13, 32 bytes, normalised password,
   salt, opslimit, memlimit).  A password "has generator shape" when,
   after removing '-' and white space, folding to lower case and mapping
   the look-alikes o->0, i/l->1, it is KR_PASSWORD_CHARS characters of
   KR_PASSWORD_ALPHABET; then that form is the normalised password (users
   may retype it in any case, with or without dashes) and the slot carries
   a hint.  Any other password is used byte for byte and its slot carries
   no hint: a 32-bit fast hash of a human-chosen password would be an
   offline-guessing oracle that skips Argon2id. */

#include "keyring.h"

#include <sodium.h>

#define KR_MAGIC "SQLBOXK"	/* with its NUL: 8 bytes */
#define KR_MAGIC_BYTES 8
#define KR_KEYFILE_VERSION 1U

#define KR_SALT_BYTES crypto_pwhash_SALTBYTES
#define KR_HINT_BYTES 4
#define KR_HINT_HASH_BYTES crypto_generichash_BYTES_MIN
#define KR_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define KR_WRAPPED_PLAIN_BYTES (KR_MASTER_KEY_BYTES + KR_SECRET_KEY_BYTES)
#define KR_WRAPPED_BYTES \
	(KR_WRAPPED_PLAIN_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)
#define KR_HEADER_HASH_BYTES crypto_generichash_BYTES
#define KR_RECOVERY_PLAIN_BYTES (KR_WRAPPED_PLAIN_BYTES + KR_HEADER_HASH_BYTES)
#define KR_RECOVERY_BYTES (crypto_box_SEALBYTES + KR_RECOVERY_PLAIN_BYTES)

#define KR_SLOT_FLAG_HINT 0x01U
#define KR_SLOT_FLAGS_KNOWN KR_SLOT_FLAG_HINT

/* Fixed part sizes of the format above. */
#define KR_HEADER_FIXED_BYTES (KR_MAGIC_BYTES + 4 + 2 + KR_PUBLIC_KEY_BYTES)
#define KR_COUNTS_BYTES (1 + 4 + 4)
#define KR_SLOT_AD_FIXED_BYTES (4 + 8 + 1 + 1 + 8 + 8 + KR_SALT_BYTES + \
				KR_HINT_BYTES)
#define KR_SLOT_FIXED_BYTES \
	(KR_SLOT_AD_FIXED_BYTES + KR_NONCE_BYTES + KR_WRAPPED_BYTES)
#define KR_HEADER_MAX (KR_HEADER_FIXED_BYTES + KR_USER_MAX)
#define KR_SLOT_AD_MAX (KR_HEADER_MAX + KR_SLOT_AD_FIXED_BYTES + KR_LABEL_MAX)
#define KR_KEYFILE_ENCODED_MAX (KR_HEADER_FIXED_BYTES + KR_USER_MAX + \
				KR_COUNTS_BYTES + KR_RECOVERY_BYTES + \
				KR_SLOTS_MAX * (KR_SLOT_FIXED_BYTES + \
						KR_LABEL_MAX))
/* kr_keyfile_read() refuses anything larger before reading it. */
#define KR_KEYFILE_SIZE_MAX (64 * 1024)

/* Bounds for Argon2id parameters, from a caller or from a file: a hostile
   keyfile must not make the auth process allocate gigabytes or spin. */
#define KR_OPSLIMIT_MIN crypto_pwhash_argon2id_OPSLIMIT_MIN
#define KR_OPSLIMIT_MAX 16ULL
#define KR_MEMLIMIT_MIN crypto_pwhash_argon2id_MEMLIMIT_MIN
#define KR_MEMLIMIT_MAX (1024ULL * 1024 * 1024)

/* 32 symbols: Crockford's base32 alphabet in lower case (no i, l, o, u).
   Look-alikes typed by users are mapped back (o->0, i/l->1). */
#define KR_PASSWORD_ALPHABET "0123456789abcdefghjkmnpqrstvwxyz"
#define KR_PASSWORD_ALPHABET_SIZE 32U
#define KR_PASSWORD_GROUP 4
/* kr_slot_open()/kr_slot_add_password() refuse longer input before
   doing any work. */
#define KR_PASSWORD_INPUT_MAX 256

struct kr_slot {
	uint32_t id;
	int64_t created;
	uint8_t flags;
	uint8_t label_len;
	char label[KR_LABEL_MAX + 1];
	uint64_t opslimit;
	uint64_t memlimit;
	unsigned char salt[KR_SALT_BYTES];
	unsigned char hint[KR_HINT_BYTES];
	unsigned char nonce[KR_NONCE_BYTES];
	unsigned char wrapped[KR_WRAPPED_BYTES];
};

struct kr_keyfile {
	char user[KR_USER_MAX + 1];
	size_t user_len;
	unsigned char public_key[KR_PUBLIC_KEY_BYTES];
	unsigned char recovery[KR_RECOVERY_BYTES];
	uint32_t next_slot_id;
	unsigned int slot_count;
	struct kr_slot slots[KR_SLOTS_MAX];

	bool has_recovery:1;
};

/* kr-error.c */
void kr_error_clear(struct kr_error *err);
void kr_error_set(struct kr_error *err, enum kr_error_kind kind,
		  const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* KR_ERR_IO with "<call>(<path>) failed: <strerror(errno)>"; reads errno
   first. */
void kr_error_errno(struct kr_error *err, const char *call, const char *path);

/* kr-file.c */
/* write() of all of buf, retried on EINTR and short writes; -1 with
   errno set. */
int kr_write_full(int fd, const unsigned char *buf, size_t size);
/* fsync() of the directory holding path: makes a rename or a new entry
   there durable.  -1 with KR_ERR_IO. */
int kr_fsync_dir(const char *path, struct kr_error *err);

/* kr-secret.c */
/* sodium_init() once; it is idempotent and locks internally. */
int kr_sodium_init(struct kr_error *err);
/* A zeroed, sodium_malloc'd struct kr_keys, or NULL. */
struct kr_keys *kr_keys_new(void);
/* Whether sk is the X25519 secret key of pk (constant time compare). */
bool kr_keys_pair_matches(const unsigned char pk[KR_PUBLIC_KEY_BYTES],
			  const unsigned char sk[KR_SECRET_KEY_BYTES]);

/* kr-format.c */
/* Strict parse of a whole keyfile image. Returns 0, or -1 with
   KR_ERR_CORRUPT (or KR_ERR_INTERNAL when out of memory). */
int kr_keyfile_parse(const unsigned char *data, size_t size,
		     struct kr_keyfile **kf_r, struct kr_error *err);
/* Encodes kf into a malloc'd buffer (no secrets in it). */
int kr_keyfile_serialize(const struct kr_keyfile *kf, unsigned char **data_r,
			 size_t *size_r, struct kr_error *err);
/* Writes the header (magic, version, user, public key) into header_r,
   returns its length. */
size_t kr_keyfile_header(const struct kr_keyfile *kf,
			 unsigned char header_r[KR_HEADER_MAX]);
/* Writes slot's associated data into ad_r, returns its length. */
size_t kr_keyfile_slot_ad(const struct kr_keyfile *kf,
			  const struct kr_slot *slot,
			  unsigned char ad_r[KR_SLOT_AD_MAX]);
/* A canonical "name@domain": printable ASCII, one '@', 1..KR_USER_MAX. */
bool kr_user_valid(const char *user, size_t len);
bool kr_label_valid(const char *label, size_t len);
bool kr_pwhash_params_valid(uint64_t opslimit, uint64_t memlimit);

/* kr-keyfile.c */
/* The slot with this id, or NULL. */
const struct kr_slot *kr_keyfile_slot_find(const struct kr_keyfile *kf,
					   unsigned int slot_id);

/* kr-recovery.c */
/* Seals keys to recovery_pk into kf's recovery box (header already set). */
int kr_recovery_seal(struct kr_keyfile *kf, const struct kr_keys *keys,
		     const unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES],
		     struct kr_error *err);

#endif
