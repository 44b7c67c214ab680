/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "array.h"
#include "hash.h"
#include "ioloop.h"
#include "numpack.h"
#include "str.h"
#include "mail-index-modseq.h"
#include "mail-index-private.h"
#include "mail-index-view-private.h"
#include "mailbox-recent-flags.h"
#include "mail-transaction-log-private.h"
#include "sqlbox-storage.h"
#include "sqlbox-keywords.h"

/* One sync = one SQLite write transaction:
   1. push: the index's pending changes (mail_index_sync_next: flags,
      keywords, expunges made by this process) go to SQLite under one new
      modseq above both SQLite's and the index's highest;
   2. pull: SQLite rows changed since the last sync (modseq greater than
      synced_modseq: new mail, other processes' flag changes and
      expunges) are written into the in-memory index; modseqs are raised
      to SQLite's, so they stay permanent across processes and restarts. */

static uint64_t sqlbox_sync_push_modseq(struct sqlbox_sync_context *ctx)
{
	if (ctx->push_modseq == 0) {
		uint64_t index_highest =
			mail_index_modseq_get_highest(ctx->sync_view);

		ctx->push_modseq = I_MAX(ctx->db_highest + 1, index_highest);
	}
	return ctx->push_modseq;
}

static int
sqlbox_sync_expunge(struct sqlbox_sync_context *ctx, uint32_t uid1,
		    uint32_t uid2)
{
	struct sqlbox_storage *storage = ctx->mbox->storage;
	int64_t id = ctx->mbox->id;
	ARRAY(int64_t) body_ids;
	sqlite3_stmt *stmt;
	int64_t body_id;
	int rc;

	t_array_init(&body_ids, 16);
	stmt = sqlbox_db_prepare(storage, "SELECT DISTINCT body_id FROM mail"
		" WHERE mailbox_id = ? AND uid BETWEEN ? AND ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_int64(stmt, 2, uid1);
	sqlite3_bind_int64(stmt, 3, uid2);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		body_id = sqlite3_column_int64(stmt, 0);
		array_push_back(&body_ids, &body_id);
	}
	sqlite3_finalize(stmt);
	if (rc < 0)
		return -1;
	if (array_count(&body_ids) == 0)
		return 0;

	if (sqlbox_db_exec_args(storage,
		"INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq)"
		" SELECT mailbox_id, uid, ?1 FROM mail"
		" WHERE mailbox_id = ?2 AND uid BETWEEN ?3 AND ?4", 4,
		(int64_t)sqlbox_sync_push_modseq(ctx), id,
		(int64_t)uid1, (int64_t)uid2) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM keyword WHERE mailbox_id = ?1"
		" AND uid BETWEEN ?2 AND ?3", 3, id, (int64_t)uid1,
		(int64_t)uid2) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM mail WHERE mailbox_id = ?1"
		" AND uid BETWEEN ?2 AND ?3", 3, id, (int64_t)uid1,
		(int64_t)uid2) < 0)
		return -1;
	/* A body stays while a copy in another folder refers to it. */
	array_foreach_elem(&body_ids, body_id) {
		if (sqlbox_db_exec_args(storage,
			"DELETE FROM chunk WHERE body_id = ?1 AND NOT EXISTS"
			" (SELECT 1 FROM mail WHERE body_id = ?1)", 1,
			body_id) < 0 ||
		    sqlbox_db_exec_args(storage,
			"DELETE FROM body WHERE id = ?1 AND NOT EXISTS"
			" (SELECT 1 FROM mail WHERE body_id = ?1)", 1,
			body_id) < 0)
			return -1;
	}
	return 0;
}

static int sqlbox_sync_push(struct sqlbox_sync_context *ctx)
{
	struct sqlbox_storage *storage = ctx->mbox->storage;
	struct mail_index *index = ctx->mbox->box.index;
	struct mail_index_sync_rec rec;
	const ARRAY_TYPE(keywords) *names;
	sqlite3_stmt *stmt;
	uint32_t seq1, seq2;
	int ret = 0;

	while (ret == 0 && mail_index_sync_next(ctx->index_sync_ctx, &rec)) {
		if (!mail_index_lookup_seq_range(ctx->sync_view, rec.uid1,
						 rec.uid2, &seq1, &seq2))
			continue;
		switch (rec.type) {
		case MAIL_INDEX_SYNC_TYPE_EXPUNGE:
			T_BEGIN {
				ret = sqlbox_sync_expunge(ctx, rec.uid1,
							  rec.uid2);
			} T_END;
			for (; ret == 0 && seq1 <= seq2; seq1++)
				mail_index_expunge(ctx->trans, seq1);
			break;
		case MAIL_INDEX_SYNC_TYPE_FLAGS:
			ret = sqlbox_db_exec_args(storage,
				"UPDATE mail SET flags = (flags | ?1) & ~?2,"
				" modseq = ?3 WHERE mailbox_id = ?4"
				" AND uid BETWEEN ?5 AND ?6", 6,
				(int64_t)(rec.add_flags & MAIL_FLAGS_NONRECENT),
				(int64_t)rec.remove_flags,
				(int64_t)sqlbox_sync_push_modseq(ctx),
				ctx->mbox->id, (int64_t)rec.uid1,
				(int64_t)rec.uid2);
			break;
		case MAIL_INDEX_SYNC_TYPE_KEYWORD_ADD:
		case MAIL_INDEX_SYNC_TYPE_KEYWORD_REMOVE:
			names = mail_index_get_keywords(index);
			if (rec.keyword_idx >= array_count(names))
				break;
			stmt = sqlbox_db_prepare_kept(storage,
				rec.type == MAIL_INDEX_SYNC_TYPE_KEYWORD_ADD ?
				"INSERT OR IGNORE INTO keyword (mailbox_id, uid,"
				" name) SELECT mailbox_id, uid, ?1 FROM mail"
				" WHERE mailbox_id = ?2 AND uid BETWEEN ?3 AND ?4" :
				"DELETE FROM keyword WHERE name = ?1 AND"
				" mailbox_id = ?2 AND uid BETWEEN ?3 AND ?4");
			if (stmt == NULL) {
				ret = -1;
				break;
			}
			sqlite3_bind_text(stmt, 1,
				array_idx_elem(names, rec.keyword_idx), -1,
				SQLITE_TRANSIENT);
			sqlite3_bind_int64(stmt, 2, ctx->mbox->id);
			sqlite3_bind_int64(stmt, 3, rec.uid1);
			sqlite3_bind_int64(stmt, 4, rec.uid2);
			if (sqlbox_db_step(storage, stmt) < 0)
				ret = -1;
			sqlbox_db_kept_done(stmt);
			if (ret == 0) {
				ret = sqlbox_db_exec_args(storage,
					"UPDATE mail SET modseq = ?1"
					" WHERE mailbox_id = ?2"
					" AND uid BETWEEN ?3 AND ?4", 4,
					(int64_t)sqlbox_sync_push_modseq(ctx),
					ctx->mbox->id, (int64_t)rec.uid1,
					(int64_t)rec.uid2);
			}
			break;
		}
	}
	return ret;
}

/* The names of the keywords the index has on seq, NULL-terminated. */
static const char *const *
sqlbox_index_keywords(struct sqlbox_sync_context *ctx, uint32_t seq)
{
	const ARRAY_TYPE(keywords) *all =
		mail_index_get_keywords(ctx->mbox->box.index);
	ARRAY_TYPE(keyword_indexes) idx;
	ARRAY_TYPE(const_string) names;
	unsigned int i;

	t_array_init(&idx, 8);
	t_array_init(&names, 8);
	mail_index_lookup_keywords(ctx->sync_view, seq, &idx);
	array_foreach_elem(&idx, i) {
		if (i < array_count(all))
			array_push_back(&names, array_idx(all, i));
	}
	array_append_zero(&names);
	return array_front(&names);
}

static const char *const *sqlbox_keywords_split(const char *db_keywords)
{
	if (db_keywords == NULL || db_keywords[0] == '\0')
		return t_new(const char *, 1);
	return t_strsplit_spaces(db_keywords, " ");
}

static void
sqlbox_sync_set_keywords(struct sqlbox_sync_context *ctx, uint32_t seq,
			 const char *const *keywords)
{
	struct mail_keywords *kw;

	kw = mail_index_keywords_create(ctx->mbox->box.index, keywords);
	mail_index_update_keywords(ctx->trans, seq, MODIFY_REPLACE, kw);
	mail_index_keywords_unref(&kw);
}

/* The first sync of a folder used to append every message through an
   index transaction (a log record, an append, a flag and a modseq update
   each, then all of it replayed into the map): about 1 us per message.
   sqlbox_sync_fill() writes the records and their modseqs straight into
   the in-memory map instead, from one scan of the mail table (or from
   the folder's index snapshot, see below), while no view has looked at
   them: what a sync up to SQLite's highest modseq (the snapshot's) would
   have left there.  Keywords (few messages have any) and everything from
   that modseq on still come from the ordinary sync that follows; after
   a scan its pull changes nothing else. */

struct sqlbox_fill_counts {
	uint32_t seen, deleted, first_unseen_uid, first_deleted_uid;
};

static bool sqlbox_sync_no_index_transactions(struct mail_index *index)
{
	struct mail_index_view *view;

	for (view = index->views; view != NULL; view = view->next) {
		if (view->transactions_list != NULL)
			return FALSE;
	}
	return TRUE;
}

static bool sqlbox_sync_fill_possible(struct sqlbox_mailbox *mbox)
{
	struct mail_index *index = mbox->box.index;
	struct mail_index_map *map = index->map;
	uint32_t ext_idx;

	return !mbox->index_filled && !mbox->spool_only &&
		map != NULL && map->hdr.messages_count == 0 &&
		map->hdr.next_uid <= 1 && MAIL_INDEX_MAP_IS_IN_MEMORY(map) &&
		mbox->box.transaction_count == 0 &&
		sqlbox_sync_no_index_transactions(index) &&
		map->hdr.record_size >= sizeof(struct mail_index_record) &&
		index->modseqs_enabled &&
		mail_index_map_get_ext_idx(map, index->modseq_ext_id,
					   &ext_idx);
}

/* The index's map with records of its own, shared by every view.  A
   view may still hold an older map (mail_index_modseq_enable() committed
   a transaction since the view was opened): it is moved to this one, as
   its next sync would do.  The index never had a message (checked), so
   what that sync replays from the log (extension and header records)
   applies to this map as well. */
static struct mail_index_map *sqlbox_sync_fill_map(struct mail_index *index)
{
	struct mail_index_map *map = index->map;
	struct mail_index_view *view;

	mail_index_record_map_move_to_private(map);
	for (view = index->views; view != NULL; view = view->next) {
		i_assert(view->transactions_list == NULL);
		if (view->map != map) {
			map->refcount++;
			mail_index_unmap(&view->map);
			view->map = map;
		}
	}
	return map;
}

/* The records being written into the map by a fill. */
struct sqlbox_fill {
	struct mail_index_map *map;
	unsigned int record_size, modseq_offset;
	uint32_t count, last_uid;
	struct sqlbox_fill_counts counts;
};

static void
sqlbox_fill_init(struct sqlbox_fill *fill, struct mail_index *index,
		 uint32_t expected)
{
	struct mail_index_map *map = index->map;
	buffer_t *records = map->rec_map->buffer;
	const struct mail_index_ext *ext;
	uint32_t ext_idx;

	if (!mail_index_map_get_ext_idx(map, index->modseq_ext_id, &ext_idx))
		i_unreached();
	ext = array_idx(&map->extensions, ext_idx);
	i_zero(fill);
	fill->map = map;
	fill->record_size = map->hdr.record_size;
	fill->modseq_offset = ext->record_offset;
	i_assert(fill->modseq_offset + sizeof(uint64_t) <= fill->record_size);
	/* One allocation for all records (the counter may be off: the
	   buffer grows if so). */
	buffer_set_used_size(records, 0);
	(void)buffer_append_space_unsafe(records,
					 (size_t)expected * fill->record_size);
	buffer_set_used_size(records, 0);
}

/* uid is above every UID added before. */
static void
sqlbox_fill_add(struct sqlbox_fill *fill, uint32_t uid, uint8_t flags,
		uint64_t modseq)
{
	struct mail_index_record *rec;

	rec = buffer_append_space_unsafe(fill->map->rec_map->buffer,
					 fill->record_size);
	memset(rec, 0, fill->record_size);
	rec->uid = uid;
	rec->flags = flags;
	memcpy(PTR_OFFSET(rec, fill->modseq_offset), &modseq, sizeof(modseq));
	if ((flags & MAIL_SEEN) != 0)
		fill->counts.seen++;
	else if (fill->counts.first_unseen_uid == 0)
		fill->counts.first_unseen_uid = uid;
	if ((flags & MAIL_DELETED) != 0) {
		fill->counts.deleted++;
		if (fill->counts.first_deleted_uid == 0)
			fill->counts.first_deleted_uid = uid;
	}
	fill->last_uid = uid;
	fill->count++;
}

/* The map's records are what was added, or none (success = FALSE). */
static void sqlbox_fill_end(struct sqlbox_fill *fill, bool success)
{
	struct mail_index_record_map *rec_map = fill->map->rec_map;

	if (!success) {
		buffer_set_used_size(rec_map->buffer, 0);
		fill->count = fill->last_uid = 0;
		i_zero(&fill->counts);
	}
	rec_map->records = buffer_get_modifiable_data(rec_map->buffer, NULL);
	rec_map->records_count = fill->count;
	rec_map->last_appended_uid = fill->last_uid;
}

static int
sqlbox_sync_fill_rows(struct sqlbox_mailbox *mbox, struct sqlbox_fill *fill)
{
	struct sqlbox_storage *storage = mbox->storage;
	uint32_t uid;
	sqlite3_stmt *stmt;
	int rc;

	/* The covering index mail_sync: a fifth of the table's pages. */
	stmt = sqlbox_db_prepare(storage, "SELECT uid, flags, modseq FROM mail"
				 " INDEXED BY mail_sync WHERE mailbox_id = ?"
				 " ORDER BY uid");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		uid = sqlite3_column_int64(stmt, 0);
		if (uid <= fill->last_uid) {
			mail_storage_set_critical(&storage->storage,
				"sqlbox %s: mail UIDs out of order (%u after %u)",
				storage->db_path, uid, fill->last_uid);
			rc = -1;
			break;
		}
		sqlbox_fill_add(fill, uid,
			sqlite3_column_int64(stmt, 1) & MAIL_FLAGS_NONRECENT,
			sqlite3_column_int64(stmt, 2));
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

/* ---- index snapshots (table index_snapshot, schema version 7) ----

   Scanning 100,000 index entries costs more than the rest of a SELECT,
   so the fill of a large folder also stores what it filled: the UID,
   flags and modseq of every message, at the folder's highestmodseq and
   UIDNEXT of that moment and under its UIDVALIDITY, as one blob.  A later
   session's fill takes the snapshot instead of the rows, less the UIDs
   expunged since (table expunged: modseq above the snapshot's), and
   starts its sync from the snapshot's modseq, so the ordinary pull
   brings every row changed or added since (flags, keywords, modseqs),
   exactly as for a session that had been open since then: every change
   to a row gives it a modseq above the folder's highestmodseq of before,
   in the write transaction that raises that counter, and UIDs grow.
   When more rows changed or were expunged since than the pull does
   quickly, the fill scans the rows again and replaces the snapshot.

   Blob: a format byte, then per message in UID order: numpack of the UID
   minus the previous one (>= 1), the flags byte, numpack of the modseq's
   difference to the previous one (zigzag: even up, odd down). */
#define SQLBOX_SNAPSHOT_FORMAT 1
/* Smaller folders fill from the rows only: nothing to gain. */
#define SQLBOX_SNAPSHOT_MIN_MESSAGES 32
/* Most rows changed or expunged since the snapshot that a fill takes on
   top of it (also at most an eighth of the folder). */
#define SQLBOX_SNAPSHOT_MAX_CHANGED 2000

struct sqlbox_snapshot {
	uint64_t modseq;
	uint32_t uidnext, messages;
};

static void
sqlbox_snapshot_encode(const struct sqlbox_fill *fill, buffer_t *buf)
{
	/* (rec_map->records is set at sqlbox_fill_end()) */
	const void *records = fill->map->rec_map->buffer->data;
	const struct mail_index_record *rec;
	uint32_t prev_uid = 0;
	uint64_t prev_modseq = 0, modseq;

	buffer_append_c(buf, SQLBOX_SNAPSHOT_FORMAT);
	for (uint32_t i = 0; i < fill->count; i++) {
		rec = CONST_PTR_OFFSET(records, (size_t)i * fill->record_size);
		memcpy(&modseq, CONST_PTR_OFFSET(rec, fill->modseq_offset),
		       sizeof(modseq));
		numpack_encode(buf, rec->uid - prev_uid);
		buffer_append_c(buf, rec->flags);
		numpack_encode(buf, modseq >= prev_modseq ?
			       (modseq - prev_modseq) * 2 :
			       (prev_modseq - modseq) * 2 - 1);
		prev_uid = rec->uid;
		prev_modseq = modseq;
	}
}

/* Adds the snapshot's messages but those in expunged (sorted UIDs).
   0, -1 if the blob isn't what this code writes (the caller drops what
   was added then). */
static int
sqlbox_snapshot_decode(struct sqlbox_fill *fill,
		       const struct sqlbox_snapshot *snap,
		       const unsigned char *data, size_t size,
		       const ARRAY_TYPE(uint32_t) *expunged)
{
	const uint8_t *p = data, *end = data + size;
	const uint32_t *exp;
	unsigned int exp_count, exp_i = 0;
	uint64_t uid = 0, modseq = 0, diff;
	uint32_t n;
	uint8_t flags;

	exp = array_get(expunged, &exp_count);
	if (size == 0 || *p++ != SQLBOX_SNAPSHOT_FORMAT)
		return -1;
	for (n = 0; n < snap->messages; n++) {
		if (numpack_decode(&p, end, &diff) < 0 || diff == 0 ||
		    diff >= snap->uidnext)
			return -1;
		uid += diff;
		if (uid >= snap->uidnext || p == end)
			return -1;
		flags = *p++;
		if ((flags & ENUM_NEGATE(MAIL_FLAGS_NONRECENT)) != 0 ||
		    numpack_decode(&p, end, &diff) < 0)
			return -1;
		if (diff % 2 == 0)
			modseq += diff / 2;
		else if (diff / 2 + 1 <= modseq)
			modseq -= diff / 2 + 1;
		else
			return -1;
		if (modseq == 0 || modseq > snap->modseq)
			return -1;
		while (exp_i < exp_count && exp[exp_i] < uid)
			exp_i++;
		if (exp_i < exp_count && exp[exp_i] == uid)
			continue;
		sqlbox_fill_add(fill, uid, flags, modseq);
	}
	return p == end ? 0 : -1;
}

static int
sqlbox_snapshot_write(struct sqlbox_mailbox *mbox,
		      const struct sqlbox_fill *fill,
		      const struct sqlbox_snapshot *snap)
{
	struct sqlbox_storage *storage = mbox->storage;
	sqlite3_stmt *stmt;
	buffer_t *buf;
	int rc;

	stmt = sqlbox_db_prepare(storage, "INSERT OR REPLACE INTO"
		" index_snapshot (mailbox_id, uidvalidity, modseq, uidnext,"
		" messages, data) VALUES (?, ?, ?, ?, ?, ?)");
	if (stmt == NULL)
		return -1;
	buf = buffer_create_dynamic(default_pool, (size_t)fill->count * 4 + 16);
	sqlbox_snapshot_encode(fill, buf);
	sqlite3_bind_int64(stmt, 1, mbox->id);
	sqlite3_bind_int64(stmt, 2, mbox->uid_validity);
	sqlite3_bind_int64(stmt, 3, (int64_t)snap->modseq);
	sqlite3_bind_int64(stmt, 4, snap->uidnext);
	sqlite3_bind_int64(stmt, 5, fill->count);
	sqlite3_bind_blob(stmt, 6, buf->data, buf->used, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	buffer_free(&buf);
	return rc < 0 ? -1 : 0;
}

/* Rows of the folder changed since modseq, counted up to limit + 1. */
static int
sqlbox_snapshot_changed(struct sqlbox_mailbox *mbox, uint64_t modseq,
			uint32_t limit, uint32_t *count_r)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(mbox->storage, "SELECT count(*) FROM"
		" (SELECT 1 FROM mail INDEXED BY mail_modseq"
		" WHERE mailbox_id = ?1 AND modseq > ?2 LIMIT ?3)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	sqlite3_bind_int64(stmt, 2, (int64_t)modseq);
	sqlite3_bind_int64(stmt, 3, (int64_t)limit + 1);
	rc = sqlbox_db_step(mbox->storage, stmt);
	*count_r = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

static int
sqlbox_snapshot_expunged(struct sqlbox_mailbox *mbox, uint64_t modseq,
			 ARRAY_TYPE(uint32_t) *uids)
{
	sqlite3_stmt *stmt;
	uint32_t uid;
	int rc;

	stmt = sqlbox_db_prepare(mbox->storage, "SELECT uid FROM expunged"
		" INDEXED BY expunged_modseq"
		" WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	sqlite3_bind_int64(stmt, 2, (int64_t)modseq);
	while ((rc = sqlbox_db_step(mbox->storage, stmt)) == SQLITE_ROW) {
		uid = sqlite3_column_int64(stmt, 0);
		array_push_back(uids, &uid);
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

/* 1 if a message of the folder has a keyword, 0 if none, -1.

   The first sync after a fill gives the filled messages their keywords
   (sqlbox_sync_fill_keywords()), and Dovecot's log gives each record it
   writes the next value of its modseq counter (near 1 in a new in-memory
   index, one more per record: appends, flag updates, each keyword's
   updates before the keyword records); a message keeps the higher of
   that and SQLite's.  After a fill from a snapshot with rows changed
   since, the pulled changes come before the keyword records, so an old
   message with a keyword could show a MODSEQ above the one a fill from
   the rows shows.  Such a folder is scanned instead (and its snapshot
   replaced); without keywords, or with nothing changed since, both
   fills end in the same index. */
static int sqlbox_snapshot_has_keywords(struct sqlbox_mailbox *mbox)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(mbox->storage,
		"SELECT 1 FROM keyword WHERE mailbox_id = ? LIMIT 1");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	rc = sqlbox_db_step(mbox->storage, stmt);
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : (rc == SQLITE_ROW ? 1 : 0);
}

/* Fills from the folder's snapshot if it has a usable one: 1 (snap_r
   says where the sync goes on from), 0 if not (nothing added), -1. */
static int
sqlbox_snapshot_load(struct sqlbox_mailbox *mbox, struct sqlbox_fill *fill,
		     uint64_t db_highest, uint32_t db_uidnext,
		     struct sqlbox_snapshot *snap_r)
{
	struct sqlbox_storage *storage = mbox->storage;
	ARRAY_TYPE(uint32_t) expunged;
	sqlite3_stmt *stmt;
	uint32_t changed, limit;
	int rc, ret;

	stmt = sqlbox_db_prepare(storage, "SELECT uidvalidity, modseq,"
		" uidnext, messages, data FROM index_snapshot"
		" WHERE mailbox_id = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	if ((rc = sqlbox_db_step(storage, stmt)) != SQLITE_ROW) {
		sqlite3_finalize(stmt);
		return rc < 0 ? -1 : 0;
	}
	snap_r->modseq = sqlite3_column_int64(stmt, 1);
	snap_r->uidnext = I_MIN(sqlite3_column_int64(stmt, 2),
				(int64_t)(uint32_t)-1);
	snap_r->messages = I_MIN(sqlite3_column_int64(stmt, 3), 10000000);
	if (sqlite3_column_int64(stmt, 0) != mbox->uid_validity ||
	    snap_r->modseq > db_highest || snap_r->uidnext > db_uidnext ||
	    snap_r->messages < SQLBOX_SNAPSHOT_MIN_MESSAGES) {
		/* Another folder's (or UIDVALIDITY changed): rewritten. */
		sqlite3_finalize(stmt);
		return 0;
	}
	limit = I_MIN(SQLBOX_SNAPSHOT_MAX_CHANGED, snap_r->messages / 8);
	if (sqlbox_snapshot_changed(mbox, snap_r->modseq, limit,
				    &changed) < 0) {
		sqlite3_finalize(stmt);
		return -1;
	}
	if (changed > limit) {
		sqlite3_finalize(stmt);
		return 0;
	}
	t_array_init(&expunged, 64);
	if (sqlbox_snapshot_expunged(mbox, snap_r->modseq, &expunged) < 0) {
		sqlite3_finalize(stmt);
		return -1;
	}
	if (changed + array_count(&expunged) > limit) {
		/* Too far behind: skipping or pulling that much costs
		   about what the scan does, and a snapshot in use is
		   never replaced. */
		sqlite3_finalize(stmt);
		return 0;
	}
	if (changed + array_count(&expunged) > 0) {
		if ((ret = sqlbox_snapshot_has_keywords(mbox)) != 0) {
			/* See sqlbox_snapshot_has_keywords(). */
			sqlite3_finalize(stmt);
			return ret < 0 ? -1 : 0;
		}
	}
	ret = sqlbox_snapshot_decode(fill, snap_r, sqlite3_column_blob(stmt, 4),
				     sqlite3_column_bytes(stmt, 4), &expunged);
	sqlite3_finalize(stmt);
	if (ret < 0) {
		e_warning(mbox->box.event, "sqlbox %s: the index snapshot of "
			  "this folder is unreadable: reading the rows",
			  storage->db_path);
		sqlbox_fill_end(fill, FALSE);
		return 0;
	}
	return 1;
}

static int sqlbox_sync_fill(struct sqlbox_mailbox *mbox)
{
	struct sqlbox_storage *storage = mbox->storage;
	struct mail_index_map *map;
	struct sqlbox_fill fill;
	struct sqlbox_snapshot snap;
	sqlite3_stmt *stmt;
	uint64_t db_highest;
	uint32_t db_uidnext, expected;
	int rc, ret;

	if (!sqlbox_sync_fill_possible(mbox))
		return 0;
	/* Counters and rows from one snapshot. */
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	stmt = sqlbox_db_prepare(storage, "SELECT highestmodseq, uidnext,"
				 " messages, uidvalidity FROM mailbox"
				 " WHERE id = ?");
	if (stmt == NULL) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	sqlite3_bind_int64(stmt, 1, mbox->id);
	rc = sqlbox_db_step(storage, stmt);
	db_highest = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
	db_uidnext = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 1) : 0;
	expected = rc == SQLITE_ROW ?
		I_MIN(sqlite3_column_int64(stmt, 2), 10000000) : 0;
	if (rc == SQLITE_ROW &&
	    sqlite3_column_int64(stmt, 3) != mbox->uid_validity) {
		/* Changed since the folder was opened: the rows are not
		   what a snapshot under this session's UIDVALIDITY may
		   hold; the ordinary sync does it all. */
		expected = 0;
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_ROW) {
		/* Gone meanwhile: the ordinary sync says so. */
		if (rc < 0) {
			sqlbox_db_rollback(storage);
			return -1;
		}
		return sqlbox_db_commit(storage);
	}
	if (expected == 0) {
		/* An empty folder: nothing to gain, the ordinary sync
		   starts the index as for a new folder. */
		return sqlbox_db_commit(storage);
	}
	map = sqlbox_sync_fill_map(mbox->box.index);
	sqlbox_fill_init(&fill, mbox->box.index, expected);
	T_BEGIN {
		ret = sqlbox_snapshot_load(mbox, &fill, db_highest,
					   db_uidnext, &snap);
	} T_END;
	if (ret == 0) {
		snap.modseq = db_highest;
		ret = sqlbox_sync_fill_rows(mbox, &fill);
		snap.uidnext = I_MAX(db_uidnext, fill.last_uid + 1);
		if (ret == 0 && fill.count >= SQLBOX_SNAPSHOT_MIN_MESSAGES)
			ret = sqlbox_snapshot_write(mbox, &fill, &snap);
	}
	if (ret < 0) {
		sqlbox_fill_end(&fill, FALSE);
		sqlbox_db_rollback(storage);
		return -1;
	}
	if (sqlbox_db_commit(storage) < 0) {
		sqlbox_fill_end(&fill, FALSE);
		return -1;
	}
	sqlbox_fill_end(&fill, TRUE);

	if (fill.count == 0) {
		/* The counter was wrong, or everything in the snapshot
		   was expunged: the ordinary sync does it all. */
		return 0;
	}
	map->hdr.messages_count = fill.count;
	map->hdr.next_uid = I_MAX(snap.uidnext, fill.last_uid + 1);
	map->hdr.uid_validity = mbox->uid_validity;
	map->hdr.seen_messages_count = fill.counts.seen;
	map->hdr.deleted_messages_count = fill.counts.deleted;
	map->hdr.first_unseen_uid_lowwater =
		fill.counts.first_unseen_uid != 0 ?
		fill.counts.first_unseen_uid : map->hdr.next_uid;
	map->hdr.first_deleted_uid_lowwater =
		fill.counts.first_deleted_uid != 0 ?
		fill.counts.first_deleted_uid : map->hdr.next_uid;
	buffer_write(map->hdr_copy_buf, 0, &map->hdr, sizeof(map->hdr));

	mbox->index_filled = TRUE;
	mbox->fill_keywords_pending = TRUE;
	/* The pull brings what changed after this. */
	mbox->synced_modseq = snap.modseq;
	return 0;
}

static void
sqlbox_sync_row_add(struct sqlbox_sync_context *ctx, uint32_t uid,
		    uint64_t modseq)
{
	struct sqlbox_sync_row *row;

	if (!array_is_created(&ctx->rows))
		i_array_init(&ctx->rows, 64);
	row = array_append_space(&ctx->rows);
	row->uid = uid;
	row->modseq = modseq;
}

/* After a fill: the keywords of the filled messages, in the first sync's
   transaction.  Few distinct sets exist (names come sorted by the
   primary key): one mail_keywords each. */
static int sqlbox_sync_fill_keywords(struct sqlbox_sync_context *ctx)
{
	struct sqlbox_storage *storage = ctx->mbox->storage;
	struct mail_index *index = ctx->mbox->box.index;
	HASH_TABLE(char *, struct mail_keywords *) sets;
	struct hash_iterate_context *iter;
	struct mail_keywords *kw;
	pool_t pool;
	sqlite3_stmt *stmt;
	const char *names;
	char *key;
	uint32_t seq;
	int rc;

	stmt = sqlbox_db_prepare(storage, "SELECT uid, group_concat(name, ' ')"
				 " FROM keyword WHERE mailbox_id = ?"
				 " GROUP BY uid ORDER BY uid");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, ctx->mbox->id);
	pool = pool_alloconly_create("sqlbox fill keywords", 1024);
	hash_table_create(&sets, pool, 16, str_hash, strcmp);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		if (!mail_index_lookup_seq(ctx->sync_view,
					  sqlite3_column_int64(stmt, 0), &seq))
			continue;
		names = (const char *)sqlite3_column_text(stmt, 1);
		if (names == NULL)
			continue;
		kw = hash_table_lookup(sets, names);
		if (kw == NULL) T_BEGIN {
			kw = mail_index_keywords_create(index,
				sqlbox_keywords_split(names));
			hash_table_insert(sets, p_strdup(pool, names), kw);
		} T_END;
		mail_index_update_keywords(ctx->trans, seq, MODIFY_REPLACE, kw);
		sqlbox_sync_row_add(ctx, sqlite3_column_int64(stmt, 0),
			mail_index_modseq_lookup(ctx->sync_view, seq));
	}
	sqlite3_finalize(stmt);
	iter = hash_table_iterate_init(sets);
	while (hash_table_iterate(iter, sets, &key, &kw))
		mail_index_keywords_unref(&kw);
	hash_table_iterate_deinit(&iter);
	hash_table_destroy(&sets);
	pool_unref(&pool);
	return rc < 0 ? -1 : 0;
}

static void
sqlbox_sync_pull_row(struct sqlbox_sync_context *ctx, uint32_t uid,
		     enum mail_flags flags, uint64_t modseq,
		     const char *db_keywords, uint32_t *next_uid)
{
	const struct mail_index_record *rec;
	const char *const *keywords = sqlbox_keywords_split(db_keywords);
	uint32_t seq;

	sqlbox_sync_row_add(ctx, uid, modseq);
	if (uid >= *next_uid) {
		/* New to this process: appended in UID order. */
		mail_index_append(ctx->trans, uid, &seq);
		mail_index_update_flags(ctx->trans, seq, MODIFY_REPLACE, flags);
		if (keywords[0] != NULL)
			sqlbox_sync_set_keywords(ctx, seq, keywords);
		mail_index_update_modseq(ctx->trans, seq, modseq);
		*next_uid = uid + 1;
		return;
	}
	if (!mail_index_lookup_seq(ctx->sync_view, uid, &seq))
		return;
	rec = mail_index_lookup(ctx->sync_view, seq);
	if ((rec->flags & MAIL_FLAGS_NONRECENT) != flags) {
		mail_index_update_flags(ctx->trans, seq, MODIFY_REPLACE,
					flags);
	}
	if (!sqlbox_keywords_equal(keywords, sqlbox_index_keywords(ctx, seq)))
		sqlbox_sync_set_keywords(ctx, seq, keywords);
	if (mail_index_modseq_lookup(ctx->sync_view, seq) < modseq)
		mail_index_update_modseq(ctx->trans, seq, modseq);
}

static int sqlbox_sync_pull(struct sqlbox_sync_context *ctx)
{
	struct sqlbox_mailbox *mbox = ctx->mbox;
	struct sqlbox_storage *storage = mbox->storage;
	const struct mail_index_header *hdr;
	sqlite3_stmt *stmt;
	uint32_t next_uid, uid, seq;
	int rc;

	/* Expunged by other processes (ours carry push_modseq). */
	stmt = sqlbox_db_prepare_kept(storage,
		"SELECT uid FROM expunged INDEXED BY expunged_modseq"
		" WHERE mailbox_id = ?1 AND modseq > ?2 AND modseq <> ?3");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	sqlite3_bind_int64(stmt, 2, (int64_t)mbox->synced_modseq);
	sqlite3_bind_int64(stmt, 3, (int64_t)ctx->push_modseq);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		uid = sqlite3_column_int64(stmt, 0);
		if (mail_index_lookup_seq(ctx->sync_view, uid, &seq))
			mail_index_expunge(ctx->trans, seq);
	}
	sqlbox_db_kept_done(stmt);
	if (rc < 0)
		return -1;

	if (mbox->fill_keywords_pending && sqlbox_sync_fill_keywords(ctx) < 0)
		return -1;

	hdr = mail_index_get_header(ctx->sync_view);
	next_uid = hdr->next_uid;
	/* Left to itself SQLite walks mail_sync for the ORDER BY, i.e.
	   every row of the folder at every sync; the rows changed since
	   the last sync are few and sorting them is cheap.  A first sync
	   that no fill did (a save into a folder that isn't selected)
	   takes every row: in UID order from mail_sync. */
	/* Two texts, kept: this runs at the end of every command. */
	stmt = sqlbox_db_prepare_kept(storage, mbox->synced_modseq == 0 ?
		"SELECT uid, flags, modseq, (SELECT group_concat(name, ' ')"
		" FROM keyword k WHERE k.mailbox_id = m.mailbox_id"
		" AND k.uid = m.uid) FROM mail m INDEXED BY mail_sync"
		" WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid" :
		"SELECT uid, flags, modseq, (SELECT group_concat(name, ' ')"
		" FROM keyword k WHERE k.mailbox_id = m.mailbox_id"
		" AND k.uid = m.uid) FROM mail m INDEXED BY mail_modseq"
		" WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	sqlite3_bind_int64(stmt, 2, (int64_t)mbox->synced_modseq);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) T_BEGIN {
		sqlbox_sync_pull_row(ctx, sqlite3_column_int64(stmt, 0),
			sqlite3_column_int64(stmt, 1) & MAIL_FLAGS_NONRECENT,
			sqlite3_column_int64(stmt, 2),
			(const char *)sqlite3_column_text(stmt, 3), &next_uid);
	} T_END;
	sqlbox_db_kept_done(stmt);
	if (rc < 0)
		return -1;

	if (ctx->db_uidnext > next_uid) {
		uint32_t uid_next = ctx->db_uidnext;

		mail_index_update_header(ctx->trans,
			offsetof(struct mail_index_header, next_uid),
			&uid_next, sizeof(uid_next), FALSE);
	}
	mail_index_update_highest_modseq(ctx->trans,
		I_MAX(ctx->db_highest, ctx->push_modseq));
	return 0;
}

/* \Recent (RFC 3501): the index is rebuilt per process, so the first UID
   no session has seen as recent lives in SQLite.  A session that selects
   the folder read-write takes the UIDs from there on as recent and moves
   SQLite's value to UIDNEXT in this sync's transaction, so exactly one
   session sees each message as recent.  Others (EXAMINE, STATUS, APPEND
   without SELECT) only learn the value: Dovecot's index sync then counts
   the UIDs above it as recent without taking them. */
static int sqlbox_sync_recent(struct sqlbox_sync_context *ctx)
{
	struct sqlbox_mailbox *mbox = ctx->mbox;
	struct mailbox *box = &mbox->box;
	const struct mail_index_header *hdr;
	struct mail_index_view *view;
	sqlite3_stmt *stmt;
	uint32_t first_recent_uid, next_uid, seq1, seq2;
	int rc;

	stmt = sqlbox_db_prepare_kept(mbox->storage,
		"SELECT first_recent_uid FROM mailbox WHERE id = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	rc = sqlbox_db_step(mbox->storage, stmt);
	first_recent_uid = rc == SQLITE_ROW ?
		I_MAX(sqlite3_column_int64(stmt, 0), 1) : 1;
	sqlbox_db_kept_done(stmt);
	if (rc < 0)
		return -1;

	hdr = mail_index_get_header(ctx->sync_view);
	if (hdr->first_recent_uid < first_recent_uid) {
		mail_index_update_header(ctx->trans,
			offsetof(struct mail_index_header, first_recent_uid),
			&first_recent_uid, sizeof(first_recent_uid), FALSE);
	}
	if ((box->flags & MAILBOX_FLAG_DROP_RECENT) == 0 ||
	    (box->flags & MAILBOX_FLAG_READONLY) != 0)
		return 0;

	/* The updated view holds the mail this sync appended. */
	view = mail_index_transaction_open_updated_view(ctx->trans);
	if (mail_index_lookup_seq_range(view, first_recent_uid, (uint32_t)-1,
					&seq1, &seq2))
		mailbox_recent_flags_set_seqs(box, view, seq1, seq2);
	next_uid = I_MAX(mail_index_get_header(view)->next_uid,
			 ctx->db_uidnext);
	mail_index_view_close(&view);
	if (next_uid <= first_recent_uid)
		return 0;
	return sqlbox_db_exec_args(mbox->storage,
		"UPDATE mailbox SET first_recent_uid = max(first_recent_uid, ?1)"
		" WHERE id = ?2", 2, (int64_t)next_uid, mbox->id);
}

static int sqlbox_sync_db(struct sqlbox_sync_context *ctx)
{
	struct sqlbox_mailbox *mbox = ctx->mbox;
	struct sqlbox_storage *storage = mbox->storage;

	if (sqlbox_db_mailbox_counters(storage, mbox->id, &ctx->db_highest,
				       &ctx->db_uidnext) < 0) {
		if (mailbox_get_last_mail_error(&mbox->box) ==
		    MAIL_ERROR_NOTFOUND)
			mailbox_set_deleted(&mbox->box);
		return -1;
	}
	if (sqlbox_sync_push(ctx) < 0)
		return -1;
	if (ctx->push_modseq != 0 &&
	    sqlbox_db_mailbox_set_counters(storage, mbox->id,
					   ctx->push_modseq, 0) < 0)
		return -1;
	if (sqlbox_sync_pull(ctx) < 0)
		return -1;
	return sqlbox_sync_recent(ctx);
}

int sqlbox_sync_begin(struct sqlbox_mailbox *mbox,
		      struct sqlbox_sync_context **ctx_r, bool pull)
{
	struct sqlbox_sync_context *ctx;
	const struct mail_index_header *hdr;
	enum mail_index_sync_flags sync_flags;
	int ret;

	ctx = i_new(struct sqlbox_sync_context, 1);
	ctx->mbox = mbox;
	sync_flags = index_storage_get_sync_flags(&mbox->box) |
		MAIL_INDEX_SYNC_FLAG_FLUSH_DIRTY;
	ret = index_storage_expunged_sync_begin(&mbox->box,
		&ctx->index_sync_ctx, &ctx->sync_view, &ctx->trans, sync_flags);
	if (ret <= 0) {
		i_free(ctx);
		*ctx_r = NULL;
		return ret;
	}
	hdr = mail_index_get_header(ctx->sync_view);
	if (hdr->uid_validity == 0) {
		uint32_t uid_validity = mbox->uid_validity;

		mail_index_update_header(ctx->trans,
			offsetof(struct mail_index_header, uid_validity),
			&uid_validity, sizeof(uid_validity), TRUE);
	} else if (hdr->uid_validity != mbox->uid_validity) {
		/* Deleted and created again under the same name while we
		   had it open. */
		mailbox_set_deleted(&mbox->box);
		mail_index_sync_rollback(&ctx->index_sync_ctx);
		index_storage_expunging_deinit(&mbox->box);
		i_free(ctx);
		return -1;
	}

	if (mbox->spool_only) {
		struct mail_index_sync_rec rec;
		uint32_t seq1, seq2;

		/* Nothing to keep without a key: apply expunges, drop the
		   rest. */
		while (mail_index_sync_next(ctx->index_sync_ctx, &rec)) {
			if (rec.type == MAIL_INDEX_SYNC_TYPE_EXPUNGE &&
			    mail_index_lookup_seq_range(ctx->sync_view,
					rec.uid1, rec.uid2, &seq1, &seq2)) {
				for (; seq1 <= seq2; seq1++)
					mail_index_expunge(ctx->trans, seq1);
			}
		}
	} else if (pull) {
		/* Mail LMTP sealed meanwhile, for this folder or another
		   (outside the transaction, so that the import can empty the
		   spool after its commit). */
		if (sqlbox_spool_pending(mbox->storage) &&
		    sqlbox_spool_import(mbox->storage) < 0) {
			e_error(mbox->box.event,
				"sqlbox: spool import failed: %s",
				mailbox_get_last_internal_error(&mbox->box,
								NULL));
		}
		if (sqlbox_db_begin(mbox->storage) < 0) {
			mail_index_sync_rollback(&ctx->index_sync_ctx);
			index_storage_expunging_deinit(&mbox->box);
			i_free(ctx);
			return -1;
		}
		ctx->db_locked = TRUE;
		T_BEGIN {
			ret = sqlbox_sync_db(ctx);
		} T_END;
		if (ret < 0) {
			index_storage_expunging_deinit(&mbox->box);
			(void)sqlbox_sync_finish(&ctx, FALSE);
			return -1;
		}
	}
	/* else: only the index sync lock, for a save that holds the SQLite
	   transaction itself and synced just before. */
	index_storage_expunging_deinit(&mbox->box);
	*ctx_r = ctx;
	return 1;
}

static uint64_t sqlbox_index_highest_modseq(struct mailbox *box)
{
	struct mail_index_view *view = mail_index_view_open(box->index);
	uint64_t highest = mail_index_modseq_get_highest(view);

	mail_index_view_close(&view);
	return highest;
}

/* Dovecot's log gives each record of a sync the next value of its
   modseq counter and raises the messages the record names to it:
   appends, flag updates, and one record per keyword name added or
   removed (mail-index-transaction-export.c writes them before the
   MODSEQ_UPDATE that sets the rows' values).  A sync that pulls other
   processes' keyword changes, or gives a fill's messages their keywords,
   thus may leave a message above its row; another session (a fill from
   the rows) would show the row's lower value for the same message.  The
   index only ever raises, so the rows follow it, under the write lock
   the sync still holds: the raised values are at most the index's
   highest modseq, which becomes SQLite's too (sqlbox_sync_commit()), so
   nothing given out later is at or below them. */
static int sqlbox_sync_rows_raise(struct sqlbox_sync_context *ctx)
{
	struct sqlbox_mailbox *mbox = ctx->mbox;
	const struct sqlbox_sync_row *row;
	struct mail_index_view *view;
	sqlite3_stmt *stmt = NULL;
	uint64_t modseq, reach;
	uint32_t seq;
	int ret = 0;

	if (!array_is_created(&ctx->rows))
		return 0;
	/* How high the sync's records went: one per keyword name added and
	   one per name removed, and a few more (append, flag updates, a
	   keyword reset, an expunge, an attribute), all above the counter
	   of before.  A row at or above that was not raised: the fill of a
	   large folder with keywords checks only its first rows. */
	reach = ctx->log_modseq == 0 ? (uint64_t)-1 : ctx->log_modseq +
		2 * array_count(mail_index_get_keywords(mbox->box.index)) + 64;
	view = mail_index_view_open(mbox->box.index);
	array_foreach(&ctx->rows, row) {
		if (row->modseq >= reach)
			continue;
		if (!mail_index_lookup_seq(view, row->uid, &seq))
			continue;
		modseq = mail_index_modseq_lookup(view, seq);
		if (modseq <= row->modseq)
			continue;
		if (stmt == NULL) {
			stmt = sqlbox_db_prepare(mbox->storage,
				"UPDATE mail SET modseq = ?1 WHERE"
				" mailbox_id = ?2 AND uid = ?3 AND modseq < ?1");
			if (stmt == NULL) {
				ret = -1;
				break;
			}
		}
		sqlite3_bind_int64(stmt, 1, (int64_t)modseq);
		sqlite3_bind_int64(stmt, 2, mbox->id);
		sqlite3_bind_int64(stmt, 3, row->uid);
		if (sqlbox_db_step(mbox->storage, stmt) < 0) {
			ret = -1;
			break;
		}
		sqlite3_reset(stmt);
	}
	if (stmt != NULL)
		sqlite3_finalize(stmt);
	mail_index_view_close(&view);
	return ret;
}

/* The index commits first, while SQLite's write lock is still held: the
   index may give this sync's changes a modseq above push_modseq (an
   expunge record counts one more), and that value, shown to the client
   as HIGHESTMODSEQ, must be SQLite's too before any other process can
   hand it out again. */
static int sqlbox_sync_commit(struct sqlbox_sync_context *ctx)
{
	struct sqlbox_mailbox *mbox = ctx->mbox;
	struct mail_transaction_log *log = mbox->box.index->log;
	uint64_t highest;

	if (ctx->db_locked && !mbox->log_rotated && log->head != NULL &&
	    log->head->need_rotate == NULL) {
		/* The first sync filled the index from SQLite.  A new log
		   starting at this modseq makes the index admit it knows
		   no expunges from before it (QRESYNC then lists every
		   missing UID), instead of claiming there were none. */
		log->head->need_rotate =
			i_strdup("sqlbox: index filled from SQLite");
	}
	ctx->log_modseq = log->head == NULL ? 0 :
		log->head->sync_highest_modseq;
	if (mail_index_sync_commit(&ctx->index_sync_ctx) < 0) {
		mailbox_set_index_error(&mbox->box);
		if (ctx->db_locked)
			sqlbox_db_rollback(mbox->storage);
		return -1;
	}
	if (!ctx->db_locked)
		return 0;
	highest = I_MAX(sqlbox_index_highest_modseq(&mbox->box),
			I_MAX(ctx->db_highest, ctx->push_modseq));
	if (sqlbox_sync_rows_raise(ctx) < 0 ||
	    sqlbox_db_mailbox_set_counters(mbox->storage, mbox->id, highest,
					   0) < 0 ||
	    sqlbox_db_commit(mbox->storage) < 0) {
		/* The index has changes SQLite lost: this session's view
		   can't be trusted any more. */
		mbox->inconsistent = TRUE;
		return -1;
	}
	mbox->synced_modseq = highest;
	mbox->log_rotated = TRUE;
	mbox->fill_keywords_pending = FALSE;
	return 0;
}

int sqlbox_sync_finish(struct sqlbox_sync_context **_ctx, bool success)
{
	struct sqlbox_sync_context *ctx = *_ctx;
	struct sqlbox_mailbox *mbox = ctx->mbox;
	int ret = success ? 0 : -1;

	*_ctx = NULL;
	if (success)
		ret = sqlbox_sync_commit(ctx);
	else {
		if (ctx->db_locked)
			sqlbox_db_rollback(mbox->storage);
		mail_index_sync_rollback(&ctx->index_sync_ctx);
	}
	if (array_is_created(&ctx->rows))
		array_free(&ctx->rows);
	i_free(ctx);
	return ret;
}

int sqlbox_sync(struct sqlbox_mailbox *mbox)
{
	struct sqlbox_sync_context *ctx;
	int ret;

	/* The next body read sees what the sync brings. */
	sqlbox_db_body_reads_end(mbox->storage);
	ret = sqlbox_sync_begin(mbox, &ctx, TRUE);
	if (ret <= 0)
		return ret;
	return sqlbox_sync_finish(&ctx, TRUE);
}

struct mailbox_sync_context *
sqlbox_storage_sync_init(struct mailbox *box, enum mailbox_sync_flags flags)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);
	int ret = 0;

	sqlbox_db_body_reads_end(mbox->storage);
	if (!box->opened && mailbox_open(box) < 0)
		ret = -1;
	else if (sqlbox_sync_fill(mbox) < 0)
		ret = -1;
	else
		ret = sqlbox_sync(mbox);
	return index_mailbox_sync_init(box, flags, ret < 0);
}
