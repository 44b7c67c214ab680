/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "byteorder.h"
#include "guid.h"
#include "ioloop.h"
#include "istream.h"
#include "read-full.h"
#include "safe-memset.h"
#include "sha2.h"
#include "unichar.h"
#include "write-full.h"
#include "mail-namespace.h"
#include "sqlbox-storage.h"

#include "keyring.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The LMTP spool: mail that arrived while no app password was present,
   sealed to the mailbox's X25519 public key (kr_seal), one record per
   message, appended under flock(LOCK_EX).  Each record carries, sealed
   with the message, the folder the delivery chose (Sieve's fileinto; a
   keyless session cannot read the folder list, so any name is accepted
   at delivery and the import creates the folders that are missing), and
   the flags and keywords (imap4flags).  The record format, the append
   (lock, torn tail, whole records, fsync) and the scan that finds every
   intact record around damaged bytes are libkeyring's (keyring.h,
   kr_spool_*); this file adapts them to the storage and does the import.

   A record counts once it is complete and (unless mail_fsync=never)
   fdatasynced; LMTP answers 250 only after that.  A torn tail (an append
   cut short by a crash, never acknowledged) is cut off by the next
   writer.  Import inserts the mail, the record ids (table spool_done)
   and the mail's FTS index rows in one SQLite transaction, synced to
   disk at COMMIT, then empties the spool: a crash in between re-reads the records and skips the ids
   already done, so nothing is imported twice or lost.

   Damaged bytes (no record header, or a record that does not open with
   the mailbox's key) are never cut away: the import appends them to the
   quarantine file next to the spool, fsynced before the spool is emptied,
   each entry as

     offset  size  field
     0       4     magic "SBXQ"
     4       4     what was wrong: 1 framing, 2 sealed message (LE)
     8       8     offset in the spool (LE)
     16      8     N, the length (LE)
     24      8     when, Unix time (LE)
     32      N     the bytes, as they were

   and names the stretch (a hash) in spool_done in the import's
   transaction: a crash after its COMMIT, before the spool is emptied,
   does not quarantine it twice.  (A crash before the COMMIT can leave a
   second copy in the quarantine, never none.) */

#define SQLBOX_QUARANTINE_MAGIC "SBXQ"
#define SQLBOX_QUARANTINE_HDR_BYTES 32
/* The hash that names a quarantined stretch in spool_done. */
#define SQLBOX_DAMAGE_ID_BYTES KR_SPOOL_ID_BYTES
#define SQLBOX_SPOOL_COPY_BYTES (64 * 1024)

struct sqlbox_spool_damage {
	uint64_t offset, size;
	enum kr_spool_damage damage;
};
ARRAY_DEFINE_TYPE(sqlbox_spool_damage, struct sqlbox_spool_damage);

static bool sqlbox_spool_fsync(struct sqlbox_storage *storage)
{
	return storage->storage.set->parsed_fsync_mode != FSYNC_MODE_NEVER;
}

bool sqlbox_spool_pending(struct sqlbox_storage *storage)
{
	struct stat st;

	return stat(storage->spool_path, &st) == 0 && st.st_size > 0;
}

static ssize_t
sqlbox_spool_pread(void *context, unsigned char *buf, size_t size,
		   uint64_t offset)
{
	int *fd = context;

	return pread(*fd, buf, size, (off_t)offset);
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

static void
sqlbox_spool_append_error(struct sqlbox_storage *storage,
			  const struct kr_error *err)
{
	switch (err->kind) {
	case KR_ERR_INVALID:
		mail_storage_set_error(&storage->storage, MAIL_ERROR_PARAMS,
				       "Folder or keyword names not storable");
		break;
	case KR_ERR_LIMIT:
		mail_storage_set_error(&storage->storage, MAIL_ERROR_LIMIT,
				       "Message too large for the spool");
		break;
	default:
		if (err->kind == KR_ERR_IO && ENOSPACE(err->sys_errno)) {
			mail_storage_set_error(&storage->storage,
				MAIL_ERROR_NOQUOTA, MAIL_ERRSTR_NO_QUOTA);
		} else {
			mail_storage_set_critical(&storage->storage,
				"sqlbox: spool: %s", err->text);
		}
		break;
	}
}

int sqlbox_spool_append(struct sqlbox_storage *storage,
			const ARRAY_TYPE(sqlbox_spool_mail) *messages)
{
	unsigned char pk[KR_PUBLIC_KEY_BYTES];
	const struct sqlbox_spool_mail *msg;
	struct kr_spool_append *app;
	struct kr_error err;
	const char *error;
	uint64_t cut;

	if (sqlbox_public_key_read(storage->storage.user, pk, &error) < 0) {
		mail_storage_set_critical(&storage->storage,
			"sqlbox: can't seal mail: %s", error);
		return -1;
	}
	if (sqlbox_root_dir_create(storage) < 0)
		return -1;
	if (kr_spool_append_begin(storage->spool_path,
				  sqlbox_spool_fsync(storage), &app, &cut,
				  &err) < 0) {
		sqlbox_spool_append_error(storage, &err);
		return -1;
	}
	if (cut > 0) {
		e_warning(storage->storage.event,
			  "sqlbox: spool: cutting an unfinished append of %"
			  PRIu64" bytes at offset %"PRIu64
			  " (never acknowledged)", cut,
			  kr_spool_append_offset(app));
	}
	array_foreach(messages, msg) {
		const struct kr_spool_meta meta = {
			.flags = msg->flags & MAIL_FLAGS_NONRECENT,
			.folder = msg->folder,
			.keywords = msg->keywords,
		};

		if (kr_spool_append_record(app, pk, &meta, msg->body->data,
					   msg->body->used, &err) < 0) {
			/* Nothing of a failed delivery stays: the sender
			   retries. */
			sqlbox_spool_append_error(storage, &err);
			kr_spool_append_abort(&app);
			return -1;
		}
	}
	/* 250 only after this (mail_fsync=never: may be lost). */
	if (kr_spool_append_commit(&app, &err) < 0) {
		sqlbox_spool_append_error(storage, &err);
		return -1;
	}
	return 0;
}

/* 1 if an import already did id (a record's or a damaged stretch's), 0
   if not, -1 on error. */
static int
sqlbox_spool_is_done(struct sqlbox_storage *storage,
		     const unsigned char id[KR_SPOOL_ID_BYTES])
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT 1 FROM spool_done WHERE id = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_blob(stmt, 1, id, KR_SPOOL_ID_BYTES, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : (rc == SQLITE_ROW ? 1 : 0);
}

static int
sqlbox_spool_set_done(struct sqlbox_storage *storage,
		      const unsigned char id[KR_SPOOL_ID_BYTES])
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"INSERT INTO spool_done (id) VALUES (?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_blob(stmt, 1, id, KR_SPOOL_ID_BYTES, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

/* A folder the import puts mail into, with its counters. */
struct sqlbox_spool_target {
	const char *name;
	int64_t id;
	uint32_t uid_next;
	uint64_t modseq;
	unsigned int count;
};

/* A body the import inserted, for the FTS index. */
struct sqlbox_spool_fts_body {
	int64_t body_id;
	uoff_t size;
};

ARRAY_DEFINE_TYPE(sqlbox_spool_fts_body, struct sqlbox_spool_fts_body);

struct sqlbox_spool_import_context {
	struct sqlbox_storage *storage;
	pool_t pool;
	ARRAY(struct sqlbox_spool_target) targets;
	/* The bodies inserted so far: indexed after the last row
	   (sqlbox_spool_fts_index()), or after the COMMIT when the index
	   is deferred (sqlbox_spool_fts_index_later()). */
	ARRAY_TYPE(sqlbox_spool_fts_body) *fts_bodies;
	/* TRUE: the bodies are handed over after the COMMIT, not indexed
	   in the import's transaction. */
	bool fts_defer;
};

/* The list of the namespace this storage serves (NULL if none). */
static struct mailbox_list *
sqlbox_spool_list(struct sqlbox_storage *storage)
{
	struct mail_namespace *ns;

	for (ns = storage->storage.user->namespaces; ns != NULL;
	     ns = ns->next) {
		if (mail_namespace_get_default_storage(ns) ==
		    &storage->storage)
			return ns->list;
	}
	return NULL;
}

/* The folder a record names, if it may be one here; else INBOX (the mail
   is never lost over a name). */
static const char *
sqlbox_spool_folder_name(struct sqlbox_storage *storage, const char *name)
{
	struct mailbox_list *list;
	const char *error;

	if (strcasecmp(name, "INBOX") == 0)
		return "INBOX";
	if (!uni_utf8_str_is_valid(name)) {
		error = "not UTF-8";
	} else if ((list = sqlbox_spool_list(storage)) != NULL &&
		   !mailbox_list_is_valid_name(list, name, &error)) {
		/* error set */
	} else {
		return name;
	}
	e_warning(storage->storage.event,
		  "sqlbox: spool: folder name not usable (%s): "
		  "delivering to INBOX", error);
	return "INBOX";
}

/* The folder's import state, creating the folder if it is missing.
   NULL on error. */
static struct sqlbox_spool_target *
sqlbox_spool_target(struct sqlbox_spool_import_context *ictx,
		    const char *name)
{
	struct sqlbox_storage *storage = ictx->storage;
	struct sqlbox_spool_target *target;
	uint64_t highest;
	int64_t id;
	int ret;

	name = sqlbox_spool_folder_name(storage, name);
	array_foreach_modifiable(&ictx->targets, target) {
		if (strcmp(target->name, name) == 0)
			return target;
	}
	ret = sqlbox_db_mailbox_lookup(storage, name, &id, NULL, NULL);
	if (ret < 0)
		return NULL;
	if (ret == 0) {
		/* Created inside the import's transaction: a crash before
		   its COMMIT leaves neither folder nor mail. */
		if (sqlbox_db_mailbox_create(storage, name, NULL, &id) < 0)
			return NULL;
		e_debug(storage->storage.event,
			"sqlbox: spool: created folder %s", name);
	}
	target = array_append_space(&ictx->targets);
	target->name = p_strdup(ictx->pool, name);
	target->id = id;
	if (sqlbox_db_mailbox_counters(storage, id, &highest,
				       &target->uid_next) < 0) {
		array_pop_back(&ictx->targets);
		return NULL;
	}
	target->modseq = highest + 1;
	return target;
}

/* Inserts one unsealed message where its envelope says. */
static int
sqlbox_spool_import_plain(struct sqlbox_spool_import_context *ictx,
			  const struct kr_spool_item *rec,
			  const struct kr_spool_meta *meta,
			  const unsigned char *msg, size_t msg_len)
{
	struct sqlbox_storage *storage = ictx->storage;
	struct sqlbox_spool_target *target;
	struct sqlbox_spool_fts_body *fts;
	const char **keywords = NULL;
	const char *name;
	int64_t body_id;
	guid_128_t guid;

	target = sqlbox_spool_target(ictx, meta->folder);
	if (target == NULL)
		return -1;
	if (meta->keywords_count > 0) {
		keywords = t_new(const char *, meta->keywords_count + 1);
		name = meta->keyword_names;
		for (unsigned int i = 0; i < meta->keywords_count; i++) {
			keywords[i] = name;
			name += strlen(name) + 1;
		}
	}
	guid_128_generate(guid);
	if (sqlbox_db_body_insert(storage, msg, msg_len, &body_id) < 0 ||
	    sqlbox_db_mail_insert(storage, target->id, target->uid_next,
				  body_id, meta->flags & MAIL_FLAGS_NONRECENT,
				  keywords, target->modseq, ioloop_time,
				  ioloop_time, guid_128_to_string(guid)) < 0 ||
	    sqlbox_spool_set_done(storage, rec->id) < 0)
		return -1;
	/* Indexed after the import's rows (sqlbox_spool_fts_index()) or
	   its COMMIT (sqlbox_spool_fts_index_later()). */
	fts = array_append_space(ictx->fts_bodies);
	fts->body_id = body_id;
	fts->size = msg_len;
	target->uid_next++;
	target->count++;
	return 0;
}

/* With plugin { sqlbox_fts_index_delay = 0 } (or inside an outer
   transaction, whose fate the import does not know): indexes the bodies
   the import inserted, after all its rows (mail, spool_done, the
   folders' counters), inside the import's transaction: a crash before
   its COMMIT leaves neither mail nor index rows.  A
   statement that opens a statement journal (the mail row's INSERT does,
   for its trigger) makes SQLite call every virtual table of the
   transaction's xSavepoint, and FTS5's flushes its pending terms there
   as a new segment: indexed between the rows, every message of the
   spool was a segment of its own, with the merges that follow
   (bench/README.md, issue 18).  After them, the import's messages make
   one segment at COMMIT (or one per FTS5 'hashsize' of terms).  Each
   body is read back from its chunks, one at a time: no more plaintext in
   memory than for one message (the body reader wipes its buffer). */
static int
sqlbox_spool_fts_index(struct sqlbox_spool_import_context *ictx)
{
	const struct sqlbox_spool_fts_body *fts;
	struct istream *input;
	int ret = 0;

	if (ictx->fts_defer)
		return 0;
	array_foreach(ictx->fts_bodies, fts) {
		input = sqlbox_body_istream_create_once(ictx->storage,
							fts->body_id,
							fts->size);
		i_stream_set_name(input, "sqlbox spool");
		ret = sqlbox_fts_index_body(ictx->storage, fts->body_id,
					    &input);
		if (ret < 0)
			break;
	}
	return ret;
}

/* After the import's COMMIT (never after a rollback: the ids may be
   given again): its bodies are indexed as an IMAP save's are, once the
   session is idle for the delay, in short transactions of their own, or
   at its end (sqlbox-fts.c).  So the first SELECT or STATUS after a
   batch of deliveries does not wait for the indexing, and a session
   killed before leaves the mail to the catch-up of the next SEARCH. */
static void
sqlbox_spool_fts_index_later(struct sqlbox_storage *storage,
			     const ARRAY_TYPE(sqlbox_spool_fts_body) *bodies)
{
	const struct sqlbox_spool_fts_body *fts;

	array_foreach(bodies, fts)
		sqlbox_fts_index_later(storage, fts->body_id);
}

/* 1 imported, 0 the sealed message does not open or its envelope is
   malformed (damaged), -1 error. */
static int
sqlbox_spool_import_one(struct sqlbox_spool_import_context *ictx, int fd,
			const struct kr_spool_item *rec)
{
	struct sqlbox_storage *storage = ictx->storage;
	struct kr_spool_meta meta = { .folder = "INBOX" };
	unsigned char *sealed, *plain;
	size_t plain_size, plain_len, msg_offset = 0;
	struct kr_error err;
	int ret, rc;

	sealed = i_malloc(rec->sealed_len + 1);
	if (pread_full(fd, sealed, rec->sealed_len, rec->sealed_offset) <= 0) {
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
	if (rc > 0 && rec->format >= KR_SPOOL_FORMAT_META &&
	    kr_spool_meta_decode(plain, plain_len, &meta, &msg_offset) == 0)
		rc = 0;
	if (rc < 0) {
		mail_storage_set_critical(&storage->storage,
			"sqlbox: unsealing a spool record failed: %s",
			err.text);
		ret = -1;
	} else if (rc == 0) {
		ret = 0;
	} else {
		ret = sqlbox_spool_import_plain(ictx, rec, &meta,
						plain + msg_offset,
						plain_len - msg_offset) < 0 ?
			-1 : 1;
	}
	safe_memset(plain, 0, plain_size);
	i_free(plain);
	return ret;
}

/* ---- damaged stretches ---- */

/* The name of a damaged stretch in spool_done: a hash of where it is and
   what it holds. */
static int
sqlbox_spool_damage_id(struct sqlbox_storage *storage, int fd,
		       const struct sqlbox_spool_damage *damage,
		       unsigned char id_r[SQLBOX_DAMAGE_ID_BYTES])
{
	struct sha256_ctx ctx;
	unsigned char pos[8], digest[SHA256_RESULTLEN];
	unsigned char *buf = i_malloc(SQLBOX_SPOOL_COPY_BYTES);
	uint64_t done = 0;
	int ret = 0;

	sha256_init(&ctx);
	sha256_loop(&ctx, SQLBOX_QUARANTINE_MAGIC,
		    strlen(SQLBOX_QUARANTINE_MAGIC));
	cpu64_to_le_unaligned(damage->offset, pos);
	sha256_loop(&ctx, pos, sizeof(pos));
	while (done < damage->size) {
		size_t n = I_MIN(damage->size - done, SQLBOX_SPOOL_COPY_BYTES);

		if (pread_full(fd, buf, n, damage->offset + done) <= 0) {
			mail_storage_set_critical(&storage->storage,
				"pread(%s) failed: %m", storage->spool_path);
			ret = -1;
			break;
		}
		sha256_loop(&ctx, buf, n);
		done += n;
	}
	sha256_result(&ctx, digest);
	memcpy(id_r, digest, SQLBOX_DAMAGE_ID_BYTES);
	i_free(buf);
	return ret;
}

static int
sqlbox_quarantine_append(struct sqlbox_storage *storage, int spool_fd,
			 int fd, const struct sqlbox_spool_damage *damage)
{
	unsigned char hdr[SQLBOX_QUARANTINE_HDR_BYTES];
	unsigned char *buf;
	uint64_t done = 0;
	int ret = 0;

	memcpy(hdr, SQLBOX_QUARANTINE_MAGIC, 4);
	cpu32_to_le_unaligned(damage->damage, hdr + 4);
	cpu64_to_le_unaligned(damage->offset, hdr + 8);
	cpu64_to_le_unaligned(damage->size, hdr + 16);
	cpu64_to_le_unaligned((uint64_t)ioloop_time, hdr + 24);
	if (write_full(fd, hdr, sizeof(hdr)) < 0) {
		mail_storage_set_critical(&storage->storage,
			"write(%s) failed: %m", storage->quarantine_path);
		return -1;
	}
	buf = i_malloc(SQLBOX_SPOOL_COPY_BYTES);
	while (done < damage->size) {
		size_t n = I_MIN(damage->size - done, SQLBOX_SPOOL_COPY_BYTES);

		if (pread_full(spool_fd, buf, n, damage->offset + done) <= 0) {
			mail_storage_set_critical(&storage->storage,
				"pread(%s) failed: %m", storage->spool_path);
			ret = -1;
			break;
		}
		if (write_full(fd, buf, n) < 0) {
			mail_storage_set_critical(&storage->storage,
				"write(%s) failed: %m",
				storage->quarantine_path);
			ret = -1;
			break;
		}
		done += n;
	}
	i_free(buf);
	return ret;
}

static const char *sqlbox_damage_text(enum kr_spool_damage damage)
{
	return damage == KR_SPOOL_DAMAGE_SEALED ?
		"the sealed message does not open with this mailbox's key" :
		"no record header";
}

/* Moves the damaged stretches into the quarantine file (fsynced) and
   names them in spool_done, inside the import's transaction.  Returns the
   number moved, -1 on error. */
static int
sqlbox_spool_quarantine(struct sqlbox_storage *storage, int spool_fd,
			const ARRAY_TYPE(sqlbox_spool_damage) *damages)
{
	const struct sqlbox_spool_damage *damage;
	unsigned char id[SQLBOX_DAMAGE_ID_BYTES];
	unsigned int count = 0;
	bool created = FALSE;
	int fd = -1, ret = 0;

	array_foreach(damages, damage) {
		if (sqlbox_spool_damage_id(storage, spool_fd, damage, id) < 0) {
			ret = -1;
			break;
		}
		if ((ret = sqlbox_spool_is_done(storage, id)) < 0)
			break;
		if (ret > 0) {
			/* Moved by an import that crashed before it
			   emptied the spool. */
			ret = 0;
			continue;
		}
		if (fd == -1) {
			created = access(storage->quarantine_path, F_OK) < 0;
			fd = open(storage->quarantine_path,
				  O_WRONLY | O_CREAT | O_APPEND, 0600);
			if (fd < 0) {
				mail_storage_set_critical(&storage->storage,
					"open(%s) failed: %m",
					storage->quarantine_path);
				ret = -1;
				break;
			}
		}
		if ((ret = sqlbox_quarantine_append(storage, spool_fd, fd,
						    damage)) < 0 ||
		    (ret = sqlbox_spool_set_done(storage, id)) < 0)
			break;
		e_error(storage->storage.event,
			"sqlbox: spool: %"PRIu64" damaged bytes at offset %"
			PRIu64" (%s) moved to %s", damage->size,
			damage->offset, sqlbox_damage_text(damage->damage),
			storage->quarantine_path);
		count++;
	}
	if (fd != -1) {
		if (ret == 0 && sqlbox_spool_fsync(storage) &&
		    fdatasync(fd) < 0) {
			mail_storage_set_critical(&storage->storage,
				"fdatasync(%s) failed: %m",
				storage->quarantine_path);
			ret = -1;
		}
		i_close_fd(&fd);
		if (ret == 0 && created &&
		    sqlbox_fsync_dir(storage, storage->root_dir) < 0)
			ret = -1;
	}
	return ret < 0 ? -1 : (int)count;
}

/* ---- import ---- */

static int
sqlbox_spool_import_records(struct sqlbox_storage *storage, int fd,
			    struct kr_spool_scan *scan,
			    ARRAY_TYPE(sqlbox_spool_damage) *damages,
			    ARRAY_TYPE(sqlbox_spool_fts_body) *fts_bodies,
			    bool fts_defer)
{
	struct sqlbox_spool_import_context ictx = {
		.storage = storage,
		.fts_bodies = fts_bodies,
		.fts_defer = fts_defer,
	};
	const struct sqlbox_spool_target *target;
	struct sqlbox_spool_damage *damage;
	struct kr_spool_item item;
	struct kr_error err;
	int ret, count = 0;

	ictx.pool = pool_alloconly_create("sqlbox spool import", 512);
	p_array_init(&ictx.targets, ictx.pool, 4);
	while ((ret = kr_spool_scan_next(scan, &item, &err)) > 0) {
		switch (item.kind) {
		case KR_SPOOL_ITEM_RECORD:
			if ((ret = sqlbox_spool_is_done(storage, item.id)) < 0)
				break;
			if (ret > 0)
				break;
			T_BEGIN {
				ret = sqlbox_spool_import_one(&ictx, fd,
							      &item);
			} T_END;
			if (ret == 0)
				kr_spool_scan_reject(scan);
			else if (ret > 0)
				count++;
			break;
		case KR_SPOOL_ITEM_DAMAGED:
			damage = array_append_space(damages);
			damage->offset = item.offset;
			damage->size = item.size;
			damage->damage = item.damage;
			break;
		case KR_SPOOL_ITEM_TORN:
			/* Never acknowledged: emptying the spool drops it. */
			e_warning(storage->storage.event,
				  "sqlbox: spool: dropping an unfinished append "
				  "of %"PRIu64" bytes at offset %"PRIu64
				  " (never acknowledged)", item.size,
				  item.offset);
			break;
		}
		if (ret < 0)
			break;
	}
	if (ret < 0 && err.kind != KR_ERR_NONE) {
		mail_storage_set_critical(&storage->storage, "%s: %s",
					  storage->spool_path, err.text);
	}
	if (ret == 0) {
		array_foreach(&ictx.targets, target) {
			if (target->count > 0 &&
			    sqlbox_db_mailbox_set_counters(storage, target->id,
					target->modseq, target->uid_next) < 0) {
				ret = -1;
				break;
			}
		}
	}
	if (ret == 0 && sqlbox_spool_fts_index(&ictx) < 0)
		ret = -1;
	pool_unref(&ictx.pool);
	return ret < 0 ? -1 : count;
}

int sqlbox_spool_import(struct sqlbox_storage *storage)
{
	ARRAY_TYPE(sqlbox_spool_damage) damages;
	ARRAY_TYPE(sqlbox_spool_fts_body) fts_bodies;
	struct kr_spool_scan *scan;
	struct stat st;
	bool nested, fts_defer;
	int fd, ret, moved = 0;

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
	nested = storage->txn_depth > 0;
	if (nested && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ret = errno == EWOULDBLOCK ? 0 : -1;
		if (ret < 0) {
			mail_storage_set_critical(&storage->storage,
				"flock(%s) failed: %m", storage->spool_path);
		}
		i_close_fd(&fd);
		return ret;
	}
	if (!nested && sqlbox_spool_lock(storage, fd) < 0) {
		i_close_fd(&fd);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		mail_storage_set_critical(&storage->storage,
			"fstat(%s) failed: %m", storage->spool_path);
		i_close_fd(&fd);
		return -1;
	}
	scan = kr_spool_scan_create(st.st_size, sqlbox_spool_pread, &fd);
	if (scan == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "kr_spool_scan_create() failed");
	/* The COMMIT syncs the mail to disk (unless mail_fsync=never)
	   before the spool is emptied. */
	if (sqlbox_db_begin_mail(storage) < 0) {
		kr_spool_scan_destroy(&scan);
		i_close_fd(&fd);
		return -1;
	}
	i_array_init(&damages, 4);
	i_array_init(&fts_bodies, 64);
	/* Nested, the outer transaction may still roll back: indexed
	   inside it, as with the delay 0. */
	fts_defer = !nested && sqlbox_fts_index_deferred(storage);
	ret = sqlbox_spool_import_records(storage, fd, scan, &damages,
					  &fts_bodies, fts_defer);
	kr_spool_scan_destroy(&scan);
	/* Only the import that empties the spool moves damaged bytes. */
	if (ret >= 0 && !nested && array_count(&damages) > 0 &&
	    (moved = sqlbox_spool_quarantine(storage, fd, &damages)) < 0)
		ret = -1;
	if (ret < 0)
		sqlbox_db_rollback(storage);
	else if (sqlbox_db_commit(storage) < 0)
		ret = -1;
	else if (fts_defer)
		sqlbox_spool_fts_index_later(storage, &fts_bodies);
	array_free(&fts_bodies);
	if (moved > 0) {
		e_error(storage->storage.event,
			"sqlbox: spool: %d damaged stretch(es) moved to %s, "
			"%d message(s) imported", moved,
			storage->quarantine_path, ret < 0 ? 0 : ret);
	}
	array_free(&damages);
	if (ret < 0 || nested) {
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
	struct kr_spool_scan *scan;
	struct kr_spool_item item;
	struct kr_error err;
	struct stat st;
	int fd, ret;

	*messages_r = *bytes_r = 0;
	fd = open(storage->spool_path, O_RDONLY);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		mail_storage_set_critical(&storage->storage,
			"open(%s) failed: %m", storage->spool_path);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		mail_storage_set_critical(&storage->storage,
			"fstat(%s) failed: %m", storage->spool_path);
		i_close_fd(&fd);
		return -1;
	}
	/* No lock: only intact records count; one being appended is a torn
	   tail, damaged bytes are not mail. */
	scan = kr_spool_scan_create(st.st_size, sqlbox_spool_pread, &fd);
	if (scan == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "kr_spool_scan_create() failed");
	while ((ret = kr_spool_scan_next(scan, &item, &err)) > 0) {
		if (item.kind == KR_SPOOL_ITEM_RECORD) {
			*messages_r += 1;
			*bytes_r += kr_unseal_max_size(item.sealed_len);
		}
	}
	kr_spool_scan_destroy(&scan);
	if (ret < 0) {
		struct stat st2;

		if (fstat(fd, &st2) == 0 && st2.st_size < st.st_size) {
			/* An import emptied the spool meanwhile: the mail
			   is in SQLite now. */
			*messages_r = *bytes_r = 0;
			ret = 0;
		} else {
			mail_storage_set_critical(&storage->storage, "%s: %s",
						  storage->spool_path, err.text);
		}
	}
	i_close_fd(&fd);
	return ret < 0 ? -1 : 0;
}
