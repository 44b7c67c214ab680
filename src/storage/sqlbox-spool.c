/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "guid.h"
#include "ioloop.h"
#include "hex-binary.h"
#include "randgen.h"
#include "read-full.h"
#include "safe-memset.h"
#include "write-full.h"
#include "sqlbox-storage.h"

#include "keyring.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The LMTP spool: mail that arrived while no app password was present,
   sealed to the mailbox's X25519 public key (kr_seal).  Append-only, one
   record per message, under flock(LOCK_EX):

     offset  size  field
     0       4     magic "SBX1"
     4       16    record id (random)
     20      8     sealed length S, little-endian
     28      S     kr_seal() output

   A record counts once it is complete and (unless mail_fsync=never)
   fdatasynced; LMTP answers 250 only after that.  A torn tail (a crash
   mid-append, never acknowledged) is cut off by the next writer or
   reader.  Import inserts the mail and the record ids (table spool_done)
   in one SQLite transaction, synced to disk at COMMIT, then empties the
   spool: a crash in between re-reads the records and skips the ids
   already done, so nothing is imported twice or lost. */

#define SQLBOX_SPOOL_MAGIC "SBX1"
#define SQLBOX_SPOOL_MAGIC_BYTES 4
#define SQLBOX_SPOOL_ID_BYTES 16
#define SQLBOX_SPOOL_HDR_BYTES \
	(SQLBOX_SPOOL_MAGIC_BYTES + SQLBOX_SPOOL_ID_BYTES + 8)
/* A sanity bound on one record, far above any mail size limit. */
#define SQLBOX_SPOOL_RECORD_MAX (1024ULL * 1024 * 1024)

struct sqlbox_spool_record {
	unsigned char id[SQLBOX_SPOOL_ID_BYTES];
	off_t offset;
	uint64_t sealed_len;
};

static uint64_t sqlbox_le64_get(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void sqlbox_le64_put(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = v & 0xff;
}

static bool sqlbox_spool_fsync(struct sqlbox_storage *storage)
{
	return storage->storage.set->parsed_fsync_mode != FSYNC_MODE_NEVER;
}

bool sqlbox_spool_pending(struct sqlbox_storage *storage)
{
	struct stat st;

	return stat(storage->spool_path, &st) == 0 && st.st_size > 0;
}

/* Reads the record headers; returns the end of the last complete record
   (where the file should end), -1 on I/O error. */
static off_t
sqlbox_spool_scan(struct sqlbox_storage *storage, int fd,
		  ARRAY_TYPE(sqlbox_spool_record) *records)
{
	unsigned char hdr[SQLBOX_SPOOL_HDR_BYTES];
	struct sqlbox_spool_record *rec;
	struct stat st;
	off_t off = 0;
	ssize_t ret;

	if (fstat(fd, &st) < 0) {
		mail_storage_set_critical(&storage->storage,
			"fstat(%s) failed: %m", storage->spool_path);
		return -1;
	}
	while (off + SQLBOX_SPOOL_HDR_BYTES <= st.st_size) {
		ret = pread(fd, hdr, sizeof(hdr), off);
		if (ret < 0) {
			mail_storage_set_critical(&storage->storage,
				"pread(%s) failed: %m", storage->spool_path);
			return -1;
		}
		uint64_t len = sqlbox_le64_get(hdr + SQLBOX_SPOOL_MAGIC_BYTES +
					       SQLBOX_SPOOL_ID_BYTES);
		if ((size_t)ret < sizeof(hdr) ||
		    memcmp(hdr, SQLBOX_SPOOL_MAGIC,
			   SQLBOX_SPOOL_MAGIC_BYTES) != 0 ||
		    len > SQLBOX_SPOOL_RECORD_MAX ||
		    off + SQLBOX_SPOOL_HDR_BYTES + (off_t)len > st.st_size)
			break;
		if (records != NULL) {
			rec = array_append_space(records);
			memcpy(rec->id, hdr + SQLBOX_SPOOL_MAGIC_BYTES,
			       SQLBOX_SPOOL_ID_BYTES);
			rec->offset = off + SQLBOX_SPOOL_HDR_BYTES;
			rec->sealed_len = len;
		}
		off += SQLBOX_SPOOL_HDR_BYTES + (off_t)len;
	}
	return off;
}

static int sqlbox_spool_lock(struct sqlbox_storage *storage, int fd)
{
	if (flock(fd, LOCK_EX) < 0) {
		mail_storage_set_critical(&storage->storage,
			"flock(%s) failed: %m", storage->spool_path);
		return -1;
	}
	return 0;
}

static int
sqlbox_spool_write_one(struct sqlbox_storage *storage, int fd,
		       const buffer_t *msg, const unsigned char *pk)
{
	struct kr_error err;
	size_t sealed_len = kr_seal_size(msg->used);
	unsigned char *rec;
	int ret = 0;

	rec = i_malloc(SQLBOX_SPOOL_HDR_BYTES + sealed_len);
	memcpy(rec, SQLBOX_SPOOL_MAGIC, SQLBOX_SPOOL_MAGIC_BYTES);
	random_fill(rec + SQLBOX_SPOOL_MAGIC_BYTES, SQLBOX_SPOOL_ID_BYTES);
	sqlbox_le64_put(rec + SQLBOX_SPOOL_MAGIC_BYTES + SQLBOX_SPOOL_ID_BYTES,
			sealed_len);
	if (kr_seal(rec + SQLBOX_SPOOL_HDR_BYTES, sealed_len, msg->data,
		    msg->used, pk, &err) < 0) {
		mail_storage_set_critical(&storage->storage,
			"sqlbox: sealing failed: %s", err.text);
		ret = -1;
	} else if (write_full(fd, rec, SQLBOX_SPOOL_HDR_BYTES + sealed_len) < 0) {
		if (ENOSPACE(errno)) {
			mail_storage_set_error(&storage->storage,
				MAIL_ERROR_NOQUOTA, MAIL_ERRSTR_NO_QUOTA);
		} else {
			mail_storage_set_critical(&storage->storage,
				"write(%s) failed: %m", storage->spool_path);
		}
		ret = -1;
	}
	i_free(rec);
	return ret;
}

int sqlbox_spool_append(struct sqlbox_storage *storage,
			const ARRAY_TYPE(sqlbox_buffer) *messages)
{
	unsigned char pk[KR_PUBLIC_KEY_BYTES];
	buffer_t *msg;
	const char *error;
	off_t end;
	int fd, ret = 0;

	if (sqlbox_public_key_read(storage->storage.user, pk, &error) < 0) {
		mail_storage_set_critical(&storage->storage,
			"sqlbox: can't seal mail: %s", error);
		return -1;
	}
	if (sqlbox_root_dir_create(storage) < 0)
		return -1;
	/* Read too: the scan for a torn tail preads the records. */
	fd = open(storage->spool_path, O_RDWR | O_CREAT | O_APPEND, 0600);
	if (fd < 0) {
		mail_storage_set_critical(&storage->storage,
			"open(%s) failed: %m", storage->spool_path);
		return -1;
	}
	if (sqlbox_spool_lock(storage, fd) < 0 ||
	    (end = sqlbox_spool_scan(storage, fd, NULL)) < 0) {
		i_close_fd(&fd);
		return -1;
	}
	/* Cut a torn tail so that our records start at a boundary. */
	if (ftruncate(fd, end) < 0) {
		mail_storage_set_critical(&storage->storage,
			"ftruncate(%s) failed: %m", storage->spool_path);
		ret = -1;
	}
	array_foreach_elem(messages, msg) {
		if (ret == 0)
			ret = sqlbox_spool_write_one(storage, fd, msg, pk);
	}
	/* 250 only after this (mail_fsync=never: may be lost). */
	if (ret == 0 && sqlbox_spool_fsync(storage) && fdatasync(fd) < 0) {
		mail_storage_set_critical(&storage->storage,
			"fdatasync(%s) failed: %m", storage->spool_path);
		ret = -1;
	}
	if (ret < 0) {
		/* Nothing of a failed delivery stays: the sender retries. */
		if (ftruncate(fd, end) == 0)
			(void)fdatasync(fd);
	}
	i_close_fd(&fd);
	/* An empty spool may be a file no one has synced the directory
	   entry of (created here, or by a session watching INBOX): the
	   entry must be as durable as the records. */
	if (ret == 0 && end == 0 &&
	    sqlbox_fsync_dir(storage, storage->root_dir) < 0)
		ret = -1;
	return ret;
}

static int
sqlbox_spool_import_one(struct sqlbox_storage *storage, int fd,
			const struct sqlbox_spool_record *rec,
			int64_t inbox_id, uint32_t uid, uint64_t modseq)
{
	unsigned char *sealed, *plain;
	size_t plain_size, plain_len;
	struct kr_error err;
	sqlite3_stmt *stmt;
	int64_t body_id;
	guid_128_t guid;
	int ret = 0, rc;

	sealed = i_malloc(rec->sealed_len + 1);
	if (pread_full(fd, sealed, rec->sealed_len, rec->offset) <= 0) {
		mail_storage_set_critical(&storage->storage,
			"pread(%s) failed: %m", storage->spool_path);
		i_free(sealed);
		return -1;
	}
	plain_size = kr_unseal_max_size(rec->sealed_len);
	plain = i_malloc(plain_size + 1);
	rc = kr_unseal(plain, plain_size, &plain_len, sealed, rec->sealed_len,
		       storage->keys->public_key, storage->keys->secret_key,
		       &err);
	i_free(sealed);
	if (rc <= 0) {
		/* Unreadable for good: logged, counted as done. */
		e_error(storage->storage.event,
			"sqlbox: spool record %s skipped: %s",
			binary_to_hex(rec->id, sizeof(rec->id)), err.text);
	} else {
		guid_128_generate(guid);
		if (sqlbox_db_body_insert(storage, plain, plain_len,
					  &body_id) < 0 ||
		    sqlbox_db_mail_insert(storage, inbox_id, uid, body_id, 0,
					  NULL, modseq, ioloop_time,
					  ioloop_time,
					  guid_128_to_string(guid)) < 0)
			ret = -1;
		else
			ret = 1;
	}
	safe_memset(plain, 0, plain_size);
	i_free(plain);
	if (ret < 0)
		return -1;

	stmt = sqlbox_db_prepare(storage,
		"INSERT INTO spool_done (id) VALUES (?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_blob(stmt, 1, rec->id, sizeof(rec->id), SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : ret;
}

static int
sqlbox_spool_is_done(struct sqlbox_storage *storage,
		     const struct sqlbox_spool_record *rec)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT 1 FROM spool_done WHERE id = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_blob(stmt, 1, rec->id, sizeof(rec->id), SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : (rc == SQLITE_ROW ? 1 : 0);
}

static int
sqlbox_spool_import_records(struct sqlbox_storage *storage, int fd,
			    const ARRAY_TYPE(sqlbox_spool_record) *records)
{
	const struct sqlbox_spool_record *rec;
	int64_t inbox_id;
	uint64_t highest, modseq;
	uint32_t uid_next;
	int ret, count = 0;

	if (sqlbox_db_mailbox_lookup(storage, "INBOX", &inbox_id, NULL,
				     NULL) <= 0 ||
	    sqlbox_db_mailbox_counters(storage, inbox_id, &highest,
				       &uid_next) < 0)
		return -1;
	modseq = highest + 1;
	array_foreach(records, rec) {
		if ((ret = sqlbox_spool_is_done(storage, rec)) < 0)
			return -1;
		if (ret > 0)
			continue;
		T_BEGIN {
			ret = sqlbox_spool_import_one(storage, fd, rec,
						      inbox_id, uid_next,
						      modseq);
		} T_END;
		if (ret < 0)
			return -1;
		if (ret > 0) {
			uid_next++;
			count++;
		}
	}
	if (count > 0 &&
	    sqlbox_db_mailbox_set_counters(storage, inbox_id, modseq,
					   uid_next) < 0)
		return -1;
	return count;
}

int sqlbox_spool_import(struct sqlbox_storage *storage)
{
	ARRAY_TYPE(sqlbox_spool_record) records;
	int fd, ret;

	i_assert(storage->db != NULL && storage->keys != NULL);

	fd = open(storage->spool_path, O_RDWR);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		mail_storage_set_critical(&storage->storage,
			"open(%s) failed: %m", storage->spool_path);
		return -1;
	}
	/* Inside an outer transaction (a save's sync) we hold SQLite's write
	   lock: waiting for the spool lock there deadlocks with an import
	   that holds it and waits for SQLite.  Try; else the next sync. */
	if (storage->txn_depth > 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ret = errno == EWOULDBLOCK ? 0 : -1;
		if (ret < 0) {
			mail_storage_set_critical(&storage->storage,
				"flock(%s) failed: %m", storage->spool_path);
		}
		i_close_fd(&fd);
		return ret;
	}
	i_array_init(&records, 16);
	if ((storage->txn_depth == 0 && sqlbox_spool_lock(storage, fd) < 0) ||
	    sqlbox_spool_scan(storage, fd, &records) < 0 ||
	    /* The COMMIT syncs the mail to disk (unless mail_fsync=never)
	       before the spool is emptied. */
	    sqlbox_db_begin_mail(storage) < 0) {
		array_free(&records);
		i_close_fd(&fd);
		return -1;
	}
	ret = sqlbox_spool_import_records(storage, fd, &records);
	if (ret < 0)
		sqlbox_db_rollback(storage);
	else if (sqlbox_db_commit(storage) < 0)
		ret = -1;
	array_free(&records);
	if (ret < 0 || storage->txn_depth > 0) {
		/* Inside an outer transaction the rows are not durable yet:
		   the spool stays until a later import sees them done. */
		i_close_fd(&fd);
		return ret;
	}
	/* Committed: the mail is in SQLite, so the spool can go.  A crash
	   before this point re-imports nothing (spool_done). */
	if (ftruncate(fd, 0) < 0 ||
	    (sqlbox_spool_fsync(storage) && fdatasync(fd) < 0)) {
		mail_storage_set_critical(&storage->storage,
			"ftruncate(%s) failed: %m", storage->spool_path);
		i_close_fd(&fd);
		return -1;
	}
	/* The ids can't come back once the spool is empty.  Still under the
	   spool lock: after it, a nested import may record ids of records
	   it leaves in the spool, and deleting those would import them
	   twice. */
	(void)sqlbox_db_exec(storage, "DELETE FROM spool_done");
	i_close_fd(&fd);
	return ret;
}

int sqlbox_spool_usage(struct sqlbox_storage *storage, uint64_t *messages_r,
		       uint64_t *bytes_r)
{
	ARRAY_TYPE(sqlbox_spool_record) records;
	const struct sqlbox_spool_record *rec;
	int fd;

	*messages_r = *bytes_r = 0;
	fd = open(storage->spool_path, O_RDONLY);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		mail_storage_set_critical(&storage->storage,
			"open(%s) failed: %m", storage->spool_path);
		return -1;
	}
	/* No lock: only complete records count, and a record being
	   appended is not complete yet. */
	i_array_init(&records, 16);
	if (sqlbox_spool_scan(storage, fd, &records) < 0) {
		array_free(&records);
		i_close_fd(&fd);
		return -1;
	}
	array_foreach(&records, rec) {
		*messages_r += 1;
		*bytes_r += kr_unseal_max_size(rec->sealed_len);
	}
	array_free(&records);
	i_close_fd(&fd);
	return 0;
}
