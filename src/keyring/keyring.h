/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#ifndef KEYRING_H
#define KEYRING_H

/* libkeyring: a mailbox's keys, its app passwords and its home
   (doc/DESIGN.md section 6).

   Every mailbox has a random 256-bit master key and an X25519 key pair.
   They never touch disk unwrapped: the keyfile (~/sqlbox.keys) holds
   - the X25519 public key (readable without any password, for sealing
     mail delivered while the user is offline),
   - one slot per app password: Argon2id(password, slot salt) = KEK, and
     XChaCha20-Poly1305_KEK(master key || X25519 secret key), with the file
     header (magic, version, user, public key) and the slot's own id, label
     and creation time as associated data,
   - optionally a recovery slot: crypto_box_seal(master || secret key ||
     header hash) to the admin's recovery public key.
   Verifying a password = opening a slot: one Argon2id per login (a short
   keyed hint picks the slot; app passwords carry >= 128 bits of entropy, so
   the hint gives nothing to a guesser).  Removing a slot needs no key;
   adding one needs the master key.

   Usage:
     kr_keyfile_create(user, recovery_pk, &kf, &keys, &err);   // new mailbox
     kr_slot_add(kf, keys, "laptop", NULL, password, sizeof password,
                 &slot_id, &err);                              // prints once
     kr_keyfile_write(kf, path, uid, gid, &err);               // atomic, 0600
     ...
     // every change of an existing keyfile: lock, read, modify, write
     kr_keyfile_begin(path, uid, gid, KR_LOCK_WAIT_MSECS, &txn, &kf, &err);
     kr_slot_remove(kf, 2);
     kr_keyfile_commit(&txn, kf, &err);          // or kr_keyfile_rollback()
     ...
     kr_keyfile_read(path, &kf, &err);
     kr_slot_open(kf, password, &slot_id, &kek, &err);         // 1 = ok
     kr_kek_encode(slot_id, kek, field, sizeof field);         // userdb field
     ...                                                       // mail process:
     kr_kek_decode(field, &slot_id, &kek);
     kr_slot_unwrap(kf, slot_id, kek, &keys, &err);            // 1 = ok

   Secrets (master key, X25519 secret key, KEK) live only in kr_secret /
   kr_keys holders allocated with sodium_malloc() and wiped on free.
   Returns: 0 ok / -1 error; lookups and verifications 1 yes / 0 no /
   -1 error (I/O, corrupt file).  The library never prints.

   Threads: the library calls sodium_init() itself (idempotent, locked
   inside libsodium).  Calls on distinct objects may run concurrently; a
   kr_keyfile must not be modified while another thread reads it.
   Passwords: a generated password is accepted in any case, with or without
   its dashes or spaces (and o/i/l for 0/1); any other password is compared
   byte for byte.  kr_slot_open() and kr_slot_add*() block for one
   Argon2id derivation (per candidate slot: normally one; 64 MiB and a
   fraction of a second with kr_pwhash_default): run them in an auth
   worker.  kr_slot_unwrap() is fast. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define KR_MASTER_KEY_BYTES 32
#define KR_KEK_BYTES 32
#define KR_PUBLIC_KEY_BYTES 32
#define KR_SECRET_KEY_BYTES 32
#define KR_LABEL_MAX 64
#define KR_USER_MAX 320
#define KR_SLOTS_MAX 64
/* Generated app passwords: 28 characters of a 32-letter alphabet (140 bits)
   in groups of four: "abcd-efgh-jkmn-pqrs-tuvw-xyz2-3456". */
#define KR_PASSWORD_CHARS 28
#define KR_PASSWORD_BUFSIZE 48
/* "<slot id>:<base64 of the KEK>" */
#define KR_KEK_FIELD_BUFSIZE 64
#define KR_TEXT_MAX 256

enum kr_error_kind {
	KR_ERR_NONE = 0,
	KR_ERR_IO,		/* open/read/write/rename/fsync failed; text has errno */
	KR_ERR_CORRUPT,		/* bad magic, version, length or authentication */
	KR_ERR_NOT_FOUND,	/* no keyfile, no such slot */
	KR_ERR_LIMIT,		/* too many slots, label too long */
	KR_ERR_INTERNAL,	/* libsodium failure, out of memory */
	KR_ERR_LOCKED,		/* another writer held the keyfile too long */
	KR_ERR_ORPHAN,		/* a mailbox database but no keyfile */
	KR_ERR_INVALID,		/* input the format cannot hold */
};

struct kr_error {
	enum kr_error_kind kind;
	/* KR_ERR_IO: the errno of the call that failed (else 0). */
	int sys_errno;
	char text[KR_TEXT_MAX];
};

/* ---- secrets (kr-secret.c) ---- */

/* A sodium_malloc'd, mlock'd byte string, wiped and freed by
   kr_secret_free(). */
struct kr_secret;

struct kr_secret *kr_secret_new(size_t len);
unsigned char *kr_secret_data(struct kr_secret *secret);
size_t kr_secret_len(const struct kr_secret *secret);
void kr_secret_free(struct kr_secret **secret);

/* The unwrapped keys of one mailbox (sodium_malloc'd). */
struct kr_keys {
	unsigned char master_key[KR_MASTER_KEY_BYTES];
	unsigned char secret_key[KR_SECRET_KEY_BYTES];
	unsigned char public_key[KR_PUBLIC_KEY_BYTES];
};

/* Wipes and frees; NULL-safe. */
void kr_keys_free(struct kr_keys **keys);

/* ---- the keyfile (kr-keyfile.c) ---- */

struct kr_keyfile;

struct kr_pwhash_params {
	unsigned long long opslimit;
	size_t memlimit;
};
/* Argon2id t=3, m=64 MiB: Dovecot's own ARGON2ID defaults. */
extern const struct kr_pwhash_params kr_pwhash_default;

struct kr_slot_info {
	unsigned int id;
	char label[KR_LABEL_MAX + 1];
	time_t created;
	unsigned long long opslimit;
	size_t memlimit;
};

/* A new keyfile for user (the canonical "name@domain", bound into every
   slot): fresh master key and X25519 pair, no slots yet.  recovery_pk
   (KR_PUBLIC_KEY_BYTES, may be NULL) adds the sealed recovery slot.
   Returns 0 and both objects, owned by the caller. */
int kr_keyfile_create(const char *user, const unsigned char *recovery_pk,
		      struct kr_keyfile **kf_r, struct kr_keys **keys_r,
		      struct kr_error *err);

/* Reads and parses path. Returns 1, 0 if it does not exist, -1 on I/O
   error or a malformed file (err->kind KR_ERR_CORRUPT). Slots are not
   authenticated here (that needs a KEK); the structure is. */
int kr_keyfile_read(const char *path, struct kr_keyfile **kf_r,
		    struct kr_error *err);

/* Writes atomically: temp file in the same directory, fsync, chown to
   uid/gid (unless (uid_t)-1), mode 0600, rename, fsync of the directory.
   A symlink at path is replaced, not followed.  On -1 path holds the old
   file (or the new one, if only the directory fsync failed), never a
   partial one, and no temp file is left. */
int kr_keyfile_write(const struct kr_keyfile *kf, const char *path,
		     uid_t uid, gid_t gid, struct kr_error *err);

void kr_keyfile_free(struct kr_keyfile **kf);

/* A short public name of the keyfile (hex of the first 8 bytes of its
   X25519 public key): a new keyfile (activation, reset) has a new one, so
   per-slot records kept elsewhere ("last used") never carry over to the
   slots of a new keyfile that reuse the ids. */
#define KR_KEYFILE_ID_BUFSIZE 17
void kr_keyfile_id(const struct kr_keyfile *kf,
		   char id_r[KR_KEYFILE_ID_BUFSIZE]);

/* ---- changes under a lock (kr-lock.c) ---- */

/* Two writers that each read, change and rename the keyfile lose one
   change (a revoked slot comes back, two first activations leave two
   master keys).  Every change therefore runs from its read to its rename
   under an flock on path + KR_LOCK_SUFFIX, a file created next to the
   keyfile (mode 0600, owned by uid/gid when the caller is root, so every
   writer can open it).  Readers need no lock: writes are atomic renames.
   A waiter gives up after wait_msecs with KR_ERR_LOCKED; a holder keeps
   the lock for one or two Argon2id derivations. */
#define KR_LOCK_SUFFIX ".lock"
#define KR_LOCK_WAIT_MSECS 10000

struct kr_keyfile_txn;

/* Takes the lock of the keyfile at path (its directory must exist:
   KR_ERR_NOT_FOUND otherwise).  Returns 0 with *txn_r, or -1. */
int kr_keyfile_lock(const char *path, uid_t uid, gid_t gid,
		    unsigned int wait_msecs, struct kr_keyfile_txn **txn_r,
		    struct kr_error *err);
/* kr_keyfile_lock() and kr_keyfile_read(): returns 1 with *kf_r, 0 if
   there is no keyfile yet (*kf_r NULL: the caller may create one), both
   holding the lock; -1 holding nothing. */
int kr_keyfile_begin(const char *path, uid_t uid, gid_t gid,
		     unsigned int wait_msecs, struct kr_keyfile_txn **txn_r,
		     struct kr_keyfile **kf_r, struct kr_error *err);
/* Writes kf to the locked path (kr_keyfile_write() as uid/gid) and
   releases the lock whatever the outcome.  Returns 0 or -1. */
int kr_keyfile_commit(struct kr_keyfile_txn **txn,
		      const struct kr_keyfile *kf, struct kr_error *err);
/* Releases the lock without writing.  NULL-safe. */
void kr_keyfile_rollback(struct kr_keyfile_txn **txn);

const char *kr_keyfile_user(const struct kr_keyfile *kf);
const unsigned char *kr_keyfile_public_key(const struct kr_keyfile *kf);
bool kr_keyfile_has_recovery(const struct kr_keyfile *kf);
unsigned int kr_keyfile_slot_count(const struct kr_keyfile *kf);
/* idx in 0..count-1. */
void kr_keyfile_slot_info(const struct kr_keyfile *kf, unsigned int idx,
			  struct kr_slot_info *info_r);

/* ---- the mailbox home (kr-home.c) ----

   A mailbox's home directory (config key home, e.g. /var/vmail/%d/%n)
   holds its keyfile, the keyfile's lock and the mail.  Every process that
   creates, activates or resets one goes through these; they log nothing
   and print nothing, the callers do. */

/* The keyfile, relative to the home. */
#define KR_KEYFILE_NAME "sqlbox.keys"
/* The sqlbox database under the default mail_location (sqlbox:~/mail),
   relative to the home.  An activation must refuse a home that has one
   but no keyfile: a new keyfile would lock that mail away for good. */
#define KR_MAILBOX_DB "mail/sqlbox.db"
/* The userdb field that carries kr_kek_encode()'s "<slot id>:<base64
   KEK>" from the login (passdb: "userdb_" KR_KEK_FIELD) to the mail
   process (the storage reads it as a plugin setting). */
#define KR_KEK_FIELD "sqlbox_kek"
/* A reset renames the home to "<home>.reset-<YYYYMMDDTHHMMSSZ>", or, if
   that exists, the same with "-2" .. "-9" appended. */
#define KR_HOME_RESET_INFIX ".reset-"
#define KR_HOME_RESET_TRIES 9

/* "<home>/" KR_KEYFILE_NAME into path_r.  Returns 0, -1 (KR_ERR_LIMIT)
   if it does not fit. */
int kr_home_keyfile_path(const char *home, char *path_r, size_t size,
			 struct kr_error *err);

/* Creates home and every missing parent, mode 0700, and gives each
   directory it created to uid/gid (unless (uid_t)-1; a no-op when the
   caller is the mail user already).  An existing home is left as it is.
   Returns 0, -1. */
int kr_home_create(const char *home, uid_t uid, gid_t gid,
		   struct kr_error *err);

/* Whether home holds a sqlbox database (KR_MAILBOX_DB).  Returns 1 (err
   is KR_ERR_ORPHAN, for the caller that wanted none), 0 none, -1 if that
   cannot be told (treat as 1). */
int kr_home_has_mailbox(const char *home, struct kr_error *err);

/* Renames home aside (see KR_HOME_RESET_INFIX; now is the time in the
   name), never deleting anything.  Returns 1 with the new name in moved_r,
   0 if there is no home (moved_r ""), -1 (KR_ERR_IO, or KR_ERR_LIMIT when
   every name of this second is taken). */
int kr_home_move_aside(const char *home, time_t now, char *moved_r,
		       size_t moved_size, struct kr_error *err);

/* The first step of adding an app password: creates the home
   (kr_home_create()), then locks and reads its keyfile.  Returns
   1: there was none; *kf_r is a new keyfile for user (kr_keyfile_create()
      with recovery_pk) and *keys_r its keys: add a slot and commit;
   0: the mailbox is activated; *kf_r is its keyfile, *keys_r NULL;
   -1: nothing held; KR_ERR_ORPHAN if the home has a database but no
      keyfile (nothing created: restore the keyfile, or reset).
   On 1 and 0 the lock is held in *txn_r (commit or roll back). */
int kr_home_activate(const char *home, const char *user,
		     const unsigned char *recovery_pk, uid_t uid, gid_t gid,
		     unsigned int wait_msecs, struct kr_keyfile_txn **txn_r,
		     struct kr_keyfile **kf_r, struct kr_keys **keys_r,
		     struct kr_error *err);

/* A new, empty mailbox for user in place of the old one: under the old
   keyfile's lock the home moves aside (kr_home_move_aside(), moved_r),
   a new home is created and locked, and a new keyfile made.  Returns
   1: *kf_r and *keys_r as kr_keyfile_create() gives them, the new home's
      lock held in *txn_r: add a slot and commit;
   0: someone activated the new home in between (KR_ERR_LOCKED): nothing
      overwritten, nothing held, the old home stays at moved_r;
   -1: nothing held (moved_r says whether the old home moved already). */
int kr_home_reset(const char *home, const char *user,
		  const unsigned char *recovery_pk, uid_t uid, gid_t gid,
		  unsigned int wait_msecs, time_t now,
		  char *moved_r, size_t moved_size,
		  struct kr_keyfile_txn **txn_r, struct kr_keyfile **kf_r,
		  struct kr_keys **keys_r, struct kr_error *err);

/* ---- slots (kr-slot.c) ---- */

/* Generates a fresh app password into password_r (NUL-terminated,
   KR_PASSWORD_BUFSIZE bytes) and adds a slot for it, wrapping keys.
   params NULL = kr_pwhash_default.  Returns 0 and the new slot id. The
   caller shows the password once and wipes it (sodium_memzero). */
int kr_slot_add(struct kr_keyfile *kf, const struct kr_keys *keys,
		const char *label, const struct kr_pwhash_params *params,
		char *password_r, size_t password_size,
		unsigned int *slot_id_r, struct kr_error *err);

/* Same, with a caller-chosen password (tests, migrations). */
int kr_slot_add_password(struct kr_keyfile *kf, const struct kr_keys *keys,
			 const char *label,
			 const struct kr_pwhash_params *params,
			 const char *password, unsigned int *slot_id_r,
			 struct kr_error *err);

/* Removes slot id. Returns 1, 0 if no such slot. Needs no key. */
int kr_slot_remove(struct kr_keyfile *kf, unsigned int slot_id);

/* Verifies password: one Argon2id for the slot its hint selects, then
   authenticated decryption.  Returns 1 with the slot id and the KEK
   (caller frees), 0 if the password opens no slot, -1 on error. */
int kr_slot_open(const struct kr_keyfile *kf, const char *password,
		 unsigned int *slot_id_r, struct kr_secret **kek_r,
		 struct kr_error *err);

/* Unwraps the keys of slot_id with kek. Returns 1, 0 if the slot does not
   exist or does not authenticate with this kek (also when the public key in
   the header does not match the secret key), -1 on error. */
int kr_slot_unwrap(const struct kr_keyfile *kf, unsigned int slot_id,
		   const unsigned char kek[KR_KEK_BYTES],
		   struct kr_keys **keys_r, struct kr_error *err);

/* kr_slot_open() then kr_slot_unwrap(): the keys that password opens.
   Returns 1 with *keys_r (and the slot id, if slot_id_r is not NULL), 0 if
   the password opens no slot, -1 on error. */
int kr_slot_unlock(const struct kr_keyfile *kf, const char *password,
		   unsigned int *slot_id_r, struct kr_keys **keys_r,
		   struct kr_error *err);

/* Generates a password (>= 128 bits of entropy) without a slot. */
void kr_password_generate(char password_r[KR_PASSWORD_BUFSIZE]);

/* ---- the KEK as a userdb field (kr-slot.c) ---- */

/* "<slot id>:<base64 KEK>". Returns 0, -1 if buf is too small. */
int kr_kek_encode(unsigned int slot_id, const unsigned char kek[KR_KEK_BYTES],
		  char *buf, size_t size);
/* Returns 0 and a new secret, or -1 if str is malformed. */
int kr_kek_decode(const char *str, unsigned int *slot_id_r,
		  struct kr_secret **kek_r);

/* ---- recovery (kr-recovery.c) ---- */

/* Opens the sealed recovery slot with the admin's X25519 key pair. Returns
   1, 0 if the file has no recovery slot or it does not open, -1 error. */
int kr_recovery_unwrap(const struct kr_keyfile *kf,
		       const unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES],
		       const unsigned char recovery_sk[KR_SECRET_KEY_BYTES],
		       struct kr_keys **keys_r, struct kr_error *err);

/* Adds or replaces the sealed recovery slot for recovery_pk, or removes it
   (recovery_pk NULL); keys must be this keyfile's.  Returns 0, -1 (an
   invalid public key is KR_ERR_LIMIT).  Added beyond the first contract:
   for keyfiles created before recovery_public_key was configured. */
int kr_recovery_set(struct kr_keyfile *kf, const struct kr_keys *keys,
		    const unsigned char *recovery_pk, struct kr_error *err);

/* The admin's recovery secret key as doveadm launchpad password reset
   --recovery-key reads it: standard base64 of the 32-byte X25519 secret
   key, trailing white space ignored.  Checked against recovery_pk (the
   configured public key).  Returns 1 with *sk_r (KR_SECRET_KEY_BYTES,
   caller frees), 0 if it is a key but not recovery_pk's (KR_ERR_CORRUPT),
   -1 if it is no key at all (KR_ERR_CORRUPT) or on error.  The input is
   not copied anywhere but into *sk_r. */
int kr_recovery_key_decode(const char *text, size_t len,
			   const unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES],
			   struct kr_secret **sk_r, struct kr_error *err);
/* The same from a file of at most KR_RECOVERY_KEY_FILE_MAX bytes:
   -1 also when it cannot be read (KR_ERR_IO, KR_ERR_NOT_FOUND). */
#define KR_RECOVERY_KEY_FILE_MAX 256
int kr_recovery_key_read(const char *path,
			 const unsigned char recovery_pk[KR_PUBLIC_KEY_BYTES],
			 struct kr_secret **sk_r, struct kr_error *err);

/* Decodes a base64 X25519 public key (config recovery_public_key):
   standard base64 with padding, exactly 32 bytes, not a small-order point.
   Returns 0, -1 if malformed. */
int kr_public_key_decode(const char *base64,
			 unsigned char pk_r[KR_PUBLIC_KEY_BYTES]);

/* ---- sealing to the public key (kr-seal.c) ---- */

/* Mail delivered while the user is logged out (the LMTP spool): sealed to
   the mailbox's X25519 public key, so only a holder of an app password can
   read it.  Layout: crypto_box_seal(fresh secretstream key) || secretstream
   header || XChaCha20-Poly1305 chunks of KR_SEAL_CHUNK_BYTES plaintext,
   the last (possibly empty) one tagged FINAL.  Truncation, extension and
   reordering fail to authenticate. */
#define KR_SEAL_CHUNK_BYTES 65536

/* Exact size of the sealed form of msg_len bytes. */
size_t kr_seal_size(size_t msg_len);
/* Upper bound of the plaintext in a sealed message of sealed_len bytes
   (0 if it is too short to be one). */
size_t kr_unseal_max_size(size_t sealed_len);

/* Seals msg to pk into out (out_size >= kr_seal_size(msg_len); exactly
   that many bytes are written).  Returns 0, -1 on error (out wiped). */
int kr_seal(unsigned char *out, size_t out_size,
	    const unsigned char *msg, size_t msg_len,
	    const unsigned char pk[KR_PUBLIC_KEY_BYTES], struct kr_error *err);

/* Opens a sealed message with the key pair into out (out_size >=
   kr_unseal_max_size(sealed_len)).  Returns 1 and the plaintext length,
   0 if it does not open or authenticate (out wiped, err KR_ERR_CORRUPT),
   -1 on error. */
int kr_unseal(unsigned char *out, size_t out_size, size_t *out_len_r,
	      const unsigned char *sealed, size_t sealed_len,
	      const unsigned char pk[KR_PUBLIC_KEY_BYTES],
	      const unsigned char sk[KR_SECRET_KEY_BYTES],
	      struct kr_error *err);

/* ---- the spool's records (kr-spool.c) ----

   The LMTP spool is a file of records, appended under a lock, one per
   sealed message.  Integers little-endian:

     offset  size  field
     0       4     magic "SBX3"
     4       16    record id (random; an import remembers the ids it did)
     20      8     S = length of the sealed message
     28      8     check: BLAKE2b-128 of bytes [0, 28), its first 8 bytes
     36      S     kr_seal() output

   The sealed plaintext of an "SBX3" record starts with the delivery's
   envelope, so that what Sieve decided (folder, flags, keywords) is as
   unreadable on disk as the mail itself:

     0       4     M = length of what follows up to the message (LE)
     4       4     flags (LE): IMAP system flags, as the storage numbers them
     8       M-4   the folder name, then each keyword, each NUL-terminated
     4+M     ...   the message

   The check makes a damaged header detectable and the magic makes the next
   record findable, so that one damaged record never hides the ones after
   it.  The earlier formats are still read: "SBX2" (the same header; the
   plaintext is the bare message, for INBOX) and "SBX1" (magic, id, S; 28
   bytes, no check).  Usage, a reader holding the spool's lock:

     scan = kr_spool_scan_create(size, my_pread, fd);
     while ((ret = kr_spool_scan_next(scan, &item, &err)) > 0) {
             RECORD: read item.sealed_len bytes at item.sealed_offset;
                     if kr_unseal() says 0: kr_spool_scan_reject(scan);
                     item.format >= KR_SPOOL_FORMAT_META:
                     kr_spool_meta_decode() on the plaintext, and if it
                     says 0: kr_spool_scan_reject(scan) too;
             DAMAGED: bytes [offset, offset + size) belong to no intact
                      record: keep them aside;
             TORN: an append cut short at the end (never acknowledged).
     }
     kr_spool_scan_destroy(&scan);

   Items come in file order and cover the file without gaps or overlap. */
#define KR_SPOOL_ID_BYTES 16
#define KR_SPOOL_HEADER_BYTES 36
/* A sanity bound on S, far above any mail size limit. */
#define KR_SPOOL_SEALED_MAX (1024ULL * 1024 * 1024)
/* The record formats, by magic: SBX1, SBX2, SBX3 (written now). */
#define KR_SPOOL_FORMAT_V1 1
#define KR_SPOOL_FORMAT_V2 2
#define KR_SPOOL_FORMAT_META 3
/* Bound on M, the envelope of a format-3 plaintext. */
#define KR_SPOOL_META_MAX 65536

enum kr_spool_item_kind {
	KR_SPOOL_ITEM_RECORD = 1,
	KR_SPOOL_ITEM_DAMAGED,
	KR_SPOOL_ITEM_TORN,
};

enum kr_spool_damage {
	KR_SPOOL_DAMAGE_NONE = 0,
	/* No record header here (magic, check, length). */
	KR_SPOOL_DAMAGE_FRAMING,
	/* A well-framed record whose sealed message does not open. */
	KR_SPOOL_DAMAGE_SEALED,
};

struct kr_spool_item {
	enum kr_spool_item_kind kind;
	/* The item's bytes in the file: [offset, offset + size). */
	uint64_t offset, size;
	/* DAMAGED: what was found wrong first. */
	enum kr_spool_damage damage;
	/* RECORD: */
	unsigned int format;	/* KR_SPOOL_FORMAT_* */
	unsigned char id[KR_SPOOL_ID_BYTES];
	uint64_t sealed_offset, sealed_len;
};

/* Reads up to size bytes at offset; returns the count (short only at the
   end of the file) or -1 with errno set. */
typedef ssize_t kr_spool_read_func(void *context, unsigned char *buf,
				   size_t size, uint64_t offset);

struct kr_spool_scan;

/* Writes the header of a record (format KR_SPOOL_FORMAT_META) of
   sealed_len bytes (<= KR_SPOOL_SEALED_MAX). */
void kr_spool_header_init(unsigned char hdr_r[KR_SPOOL_HEADER_BYTES],
			  const unsigned char id[KR_SPOOL_ID_BYTES],
			  uint64_t sealed_len);
/* A scanner of the first size bytes of a spool read through read_fn.
   NULL if out of memory. */
struct kr_spool_scan *
kr_spool_scan_create(uint64_t size, kr_spool_read_func *read_fn,
		     void *context);
void kr_spool_scan_destroy(struct kr_spool_scan **scan);
/* The next item: 1 with *item_r, 0 at the end, -1 on a read error
   (KR_ERR_IO).  A damaged stretch ends where the next well-framed record
   (or torn tail) begins. */
int kr_spool_scan_next(struct kr_spool_scan *scan,
		       struct kr_spool_item *item_r, struct kr_error *err);
/* The RECORD just returned did not open: it is damaged after all.  The
   next item is a DAMAGED one starting at its offset. */
void kr_spool_scan_reject(struct kr_spool_scan *scan);

/* Where a delivery put a message (a format-3 record's envelope). */
struct kr_spool_meta {
	uint32_t flags;
	/* Encode: the folder (non-empty) and a NULL-terminated list of
	   keywords (may be NULL).  Decode: both point into the plaintext;
	   keywords_count names follow each other, each NUL-terminated. */
	const char *folder;
	const char *const *keywords;
	const char *keyword_names;
	unsigned int keywords_count;
};

/* Bytes of the envelope of meta, its length field included; 0 if it is
   not encodable (no folder, an empty keyword, over KR_SPOOL_META_MAX). */
size_t kr_spool_meta_size(const struct kr_spool_meta *meta);
/* Writes the envelope into out (out_size >= kr_spool_meta_size()).
   Returns the bytes written, 0 if not encodable. */
size_t kr_spool_meta_encode(unsigned char *out, size_t out_size,
			    const struct kr_spool_meta *meta);
/* Reads the envelope at the start of a format-3 plaintext of plain_len
   bytes: 1 with *meta_r (pointing into plain) and the message's offset,
   0 if malformed (a name not NUL-terminated, empty, or holding a control
   character; M out of bounds). */
int kr_spool_meta_decode(const unsigned char *plain, size_t plain_len,
			 struct kr_spool_meta *meta_r,
			 size_t *message_offset_r);

/* ---- appending to the spool (kr-spool-write.c) ----

   A delivery appends its records under flock(LOCK_EX) on the spool:

     kr_spool_append_begin(path, fsync, &app, &cut, &err);
     for each message: kr_spool_append_record(app, pk, &meta, msg, len, &err);
     kr_spool_append_commit(&app, &err);   (or kr_spool_append_abort(&app))

   begin cuts a torn tail (an earlier append cut short by a crash, never
   acknowledged) so that the new records start at a record boundary; damaged
   records stay for the import to quarantine.  commit returns 0 only once
   the records are on disk (fdatasync, and for a spool that was empty the
   directory entry too; fsync false skips both, for mail_fsync=never).  A
   failed record, a failed commit and abort cut the spool back to where the
   append began: nothing of a failed delivery stays, the sender retries.
   Killed at any point, the spool holds the records it had, then whole new
   records and at most one torn tail, which the next begin cuts. */
struct kr_spool_append;

/* Opens path (created 0600), locks it and finds where to append; *cut_r
   is the size of the torn tail cut off (0 if none), for the caller's log.
   -1: KR_ERR_IO (err->sys_errno), KR_ERR_INTERNAL. */
int kr_spool_append_begin(const char *path, bool fsync,
			  struct kr_spool_append **app_r, uint64_t *cut_r,
			  struct kr_error *err);
/* Where this append's records begin (where a torn tail was cut). */
uint64_t kr_spool_append_offset(const struct kr_spool_append *app);
/* Seals meta's envelope and msg to pk and writes them as one record
   (format KR_SPOOL_FORMAT_META, a random id).  -1: KR_ERR_INVALID (a
   folder or keyword name the envelope cannot hold), KR_ERR_LIMIT (too
   large for a record), KR_ERR_IO (err->sys_errno, e.g. ENOSPC),
   KR_ERR_INTERNAL; the records appended so far stay until commit or
   abort. */
int kr_spool_append_record(struct kr_spool_append *app,
			   const unsigned char pk[KR_PUBLIC_KEY_BYTES],
			   const struct kr_spool_meta *meta,
			   const unsigned char *msg, size_t msg_len,
			   struct kr_error *err);
/* Makes the records durable, unlocks and closes; *app is freed either
   way.  On -1 the spool is cut back to where the append began. */
int kr_spool_append_commit(struct kr_spool_append **app,
			   struct kr_error *err);
/* Cuts the spool back to where the append began, unlocks and closes. */
void kr_spool_append_abort(struct kr_spool_append **app);

#endif
