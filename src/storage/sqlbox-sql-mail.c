/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "buffer.h"
#include "str.h"
#include "ioloop.h"
#include "sqlbox-header-block.h"
#include "sqlbox-storage.h"

/* Queries on mail: bodies stored in chunks, bodies of saves in progress
   (body_pending) and mail rows with their keywords. */

/* The id of a new body: above every live one and every one deleted
   (schema version 8, sqlbox-schema.c), so that an id never names two
   bodies. */
#define SQLBOX_SQL_BODY_NEXT_ID \
	"max(ifnull((SELECT max(id) FROM body), 0)," \
	" ifnull((SELECT value FROM state WHERE key = 'body_id_high'), 0)) + 1"

int sqlbox_db_body_insert(struct sqlbox_storage *storage,
			  const unsigned char *data, size_t size,
			  int64_t *body_id_r)
{
	sqlite3_stmt *stmt;
	int64_t body_id;
	size_t off = 0;
	int seq = 0;

	if (sqlbox_db_exec_args(storage, "INSERT INTO body (id, size) VALUES ("
				SQLBOX_SQL_BODY_NEXT_ID ", ?)",
				1, (int64_t)size) < 0)
		return -1;
	body_id = sqlite3_last_insert_rowid(storage->db);
	stmt = sqlbox_db_prepare(storage,
		"INSERT INTO chunk (body_id, seq, data) VALUES (?, ?, ?)");
	if (stmt == NULL)
		return -1;
	do {
		size_t n = I_MIN(size - off, SQLBOX_CHUNK_BYTES);

		sqlite3_bind_int64(stmt, 1, body_id);
		sqlite3_bind_int(stmt, 2, seq++);
		sqlite3_bind_blob(stmt, 3, data + off, n, SQLITE_STATIC);
		if (sqlbox_db_step(storage, stmt) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
		sqlite3_reset(stmt);
		off += n;
	} while (off < size);
	sqlite3_finalize(stmt);
	*body_id_r = body_id;
	return 0;
}

int sqlbox_db_mail_insert(struct sqlbox_storage *storage, int64_t mailbox_id,
			  uint32_t uid, int64_t body_id, enum mail_flags flags,
			  const char *const *keywords, uint64_t modseq,
			  time_t received, time_t saved, const char *guid)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"INSERT INTO mail (mailbox_id, uid, body_id, flags, modseq,"
		" received, saved, guid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mailbox_id);
	sqlite3_bind_int64(stmt, 2, uid);
	sqlite3_bind_int64(stmt, 3, body_id);
	sqlite3_bind_int64(stmt, 4, flags & ENUM_NEGATE(MAIL_RECENT));
	sqlite3_bind_int64(stmt, 5, (int64_t)modseq);
	sqlite3_bind_int64(stmt, 6, received);
	sqlite3_bind_int64(stmt, 7, saved);
	sqlite3_bind_text(stmt, 8, guid, -1, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	if (rc < 0)
		return -1;
	if (keywords == NULL || keywords[0] == NULL)
		return 0;
	stmt = sqlbox_db_prepare(storage,
		"INSERT OR IGNORE INTO keyword (mailbox_id, uid, name)"
		" VALUES (?, ?, ?)");
	if (stmt == NULL)
		return -1;
	for (; *keywords != NULL; keywords++) {
		sqlite3_bind_int64(stmt, 1, mailbox_id);
		sqlite3_bind_int64(stmt, 2, uid);
		sqlite3_bind_text(stmt, 3, *keywords, -1, SQLITE_STATIC);
		if (sqlbox_db_step(storage, stmt) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
		sqlite3_reset(stmt);
	}
	sqlite3_finalize(stmt);
	return 0;
}

int sqlbox_db_bodies_gc(struct sqlbox_storage *storage)
{
	if (sqlbox_db_exec(storage,
		"DELETE FROM chunk WHERE body_id IN (SELECT id FROM body"
		" WHERE NOT EXISTS (SELECT 1 FROM mail WHERE body_id = body.id)"
		" AND id NOT IN (SELECT body_id FROM body_pending))") < 0)
		return -1;
	return sqlbox_db_exec(storage,
		"DELETE FROM body WHERE NOT EXISTS"
		" (SELECT 1 FROM mail WHERE body_id = body.id)"
		" AND id NOT IN (SELECT body_id FROM body_pending)");
}

int sqlbox_db_body_pending_insert(struct sqlbox_storage *storage,
				  int64_t *body_id_r)
{
	int64_t body_id;

	if (sqlbox_db_exec(storage, "INSERT INTO body (id, size) VALUES ("
			   SQLBOX_SQL_BODY_NEXT_ID ", -1)") < 0)
		return -1;
	body_id = sqlite3_last_insert_rowid(storage->db);
	if (sqlbox_db_exec_args(storage,
		"INSERT INTO body_pending (body_id, started) VALUES (?, ?)", 2,
		body_id, (int64_t)ioloop_time) < 0)
		return -1;
	*body_id_r = body_id;
	return 0;
}

int sqlbox_db_body_pending_finish(struct sqlbox_storage *storage,
				  int64_t body_id, uoff_t size)
{
	if (sqlbox_db_exec_args(storage,
		"UPDATE body SET size = ? WHERE id = ?", 2,
		(int64_t)size, body_id) < 0)
		return -1;
	if (sqlbox_db_exec_args(storage,
		"DELETE FROM body_pending WHERE body_id = ?", 1, body_id) < 0)
		return -1;
	if (sqlite3_changes(storage->db) != 1) {
		/* Taken by the stale GC: the chunks are gone. */
		mail_storage_set_critical(&storage->storage,
			"sqlbox: body %"PRId64" of a save was removed as stale",
			body_id);
		return -1;
	}
	return 0;
}

int sqlbox_db_body_pending_abort(struct sqlbox_storage *storage,
				 int64_t body_id)
{
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	if (sqlbox_db_exec_args(storage,
		"DELETE FROM chunk WHERE body_id = ?", 1, body_id) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM body WHERE id = ?", 1, body_id) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM body_pending WHERE body_id = ?", 1, body_id) < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}

int sqlbox_db_chunk_insert(struct sqlbox_storage *storage, int64_t body_id,
			   uint32_t seq, const void *data, size_t size)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"INSERT INTO chunk (body_id, seq, data) VALUES (?, ?, ?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, body_id);
	sqlite3_bind_int64(stmt, 2, seq);
	sqlite3_bind_blob(stmt, 3, data, size, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

/* A mail's row: the mail, its body's size and the sizes of its cache row
   (columns 0 to 8), then the search fields (light rows) or the heavy
   parts (SQLBOX_MAIL_ROW_PARTS). */
#define SQLBOX_MAIL_ROW_COMMON \
	"SELECT m.uid, m.body_id, b.size, m.received, m.saved, m.guid,"
#define SQLBOX_MAIL_ROW_FROM \
	" FROM mail m JOIN body b ON b.id = m.body_id"
#define SQLBOX_MAIL_ROW_LIGHT \
	SQLBOX_MAIL_ROW_COMMON \
	" f.hdr_size, f.hdr_lines, f.body_lines, f.fields" \
	SQLBOX_MAIL_ROW_FROM \
	" LEFT JOIN body_fields f ON f.body_id = m.body_id"

/* The columns of the heavy parts (enum sqlbox_row_part, not 0): hdr_size,
   hdr_lines, body_lines, header, envelope, bodystructure, and whether
   the body_header and the body_cache row were found (NULL if not, or not
   read); and the joins to after FROM mail m: only the tables of parts
   are read. */
static const char *
sqlbox_db_mail_parts_sql(unsigned int parts, const char **joins_r)
{
	const char *sizes;

	i_assert(parts != 0 && (parts & ~SQLBOX_ROW_PARTS_ALL) == 0);
	if (parts == SQLBOX_ROW_HEADER)
		sizes = " h.hdr_size, h.hdr_lines, h.body_lines,";
	else if (parts == SQLBOX_ROW_SPECIAL)
		sizes = " c.hdr_size, c.hdr_lines, c.body_lines,";
	else {
		sizes = " ifnull(h.hdr_size, c.hdr_size),"
			" ifnull(h.hdr_lines, c.hdr_lines),"
			" ifnull(h.body_lines, c.body_lines),";
	}
	*joins_r = t_strconcat(
		(parts & SQLBOX_ROW_HEADER) == 0 ? "" :
		" LEFT JOIN body_header h ON h.body_id = m.body_id",
		(parts & SQLBOX_ROW_SPECIAL) == 0 ? "" :
		" LEFT JOIN body_cache c ON c.body_id = m.body_id", NULL);
	return t_strconcat(sizes,
		(parts & SQLBOX_ROW_HEADER) == 0 ? " NULL," : " h.header,",
		(parts & SQLBOX_ROW_SPECIAL) == 0 ? " NULL, NULL," :
		" c.envelope, c.bodystructure,",
		(parts & SQLBOX_ROW_HEADER) == 0 ? " NULL," : " h.body_id,",
		(parts & SQLBOX_ROW_SPECIAL) == 0 ? " NULL" : " c.body_id",
		NULL);
}

/* The statement of a mail row with parts (0: light), to which the
   WHERE clause is appended. */
static const char *sqlbox_db_mail_row_sql(unsigned int parts)
{
	const char *joins, *columns;

	if (parts == 0)
		return SQLBOX_MAIL_ROW_LIGHT;
	columns = sqlbox_db_mail_parts_sql(parts, &joins);
	return t_strconcat(SQLBOX_MAIL_ROW_COMMON, columns,
			   SQLBOX_MAIL_ROW_FROM, joins, NULL);
}

/* The heavy parts' columns (sqlbox_db_mail_parts_sql()) from column col
   on, into row_r: parts are then read, and found if the body has their
   rows. */
static void
sqlbox_db_mail_row_get_heavy(sqlite3_stmt *stmt, int col, unsigned int parts,
			     pool_t pool, struct sqlbox_mail_row *row_r)
{
	struct sqlbox_body_cache *cache = &row_r->cache;
	bool header_found, special_found;

	header_found = (parts & SQLBOX_ROW_HEADER) != 0 &&
		sqlite3_column_type(stmt, col + 6) != SQLITE_NULL;
	special_found = (parts & SQLBOX_ROW_SPECIAL) != 0 &&
		sqlite3_column_type(stmt, col + 7) != SQLITE_NULL;
	row_r->parts_read |= parts;
	row_r->parts_found &= ~parts;
	if (header_found || special_found) {
		row_r->cached = TRUE;
		cache->hdr_size = sqlite3_column_int64(stmt, col);
		cache->hdr_lines = sqlite3_column_int64(stmt, col + 1);
		cache->body_lines = sqlite3_column_int64(stmt, col + 2);
	}
	if ((parts & SQLBOX_ROW_HEADER) != 0) {
		cache->header = NULL;
		cache->header_size = 0;
	}
	if (header_found) {
		row_r->parts_found |= SQLBOX_ROW_HEADER;
		cache->header_size = sqlite3_column_bytes(stmt, col + 3);
		cache->header = p_memdup(pool,
			sqlite3_column_blob(stmt, col + 3), cache->header_size);
	}
	if ((parts & SQLBOX_ROW_SPECIAL) != 0) {
		if (special_found)
			row_r->parts_found |= SQLBOX_ROW_SPECIAL;
		cache->envelope = p_strdup(pool,
			(const char *)sqlite3_column_text(stmt, col + 4));
		cache->bodystructure = p_strdup(pool,
			(const char *)sqlite3_column_text(stmt, col + 5));
	}
}

/* The row a statement of sqlbox_db_mail_row_sql(parts) stands on, with
   its strings, fields and header copied to pool. */
static void
sqlbox_db_mail_row_get(sqlite3_stmt *stmt, unsigned int parts, pool_t pool,
		       struct sqlbox_mail_row *row_r)
{
	i_zero(row_r);
	row_r->uid = sqlite3_column_int64(stmt, 0);
	row_r->body_id = sqlite3_column_int64(stmt, 1);
	row_r->size = sqlite3_column_int64(stmt, 2);
	row_r->received = sqlite3_column_int64(stmt, 3);
	row_r->saved = sqlite3_column_int64(stmt, 4);
	row_r->guid = p_strdup(pool, (const char *)sqlite3_column_text(stmt, 5));
	if (parts != 0) {
		sqlbox_db_mail_row_get_heavy(stmt, 6, parts, pool, row_r);
		return;
	}
	row_r->cached = sqlite3_column_type(stmt, 6) != SQLITE_NULL;
	if (!row_r->cached)
		return;
	row_r->cache.hdr_size = sqlite3_column_int64(stmt, 6);
	row_r->cache.hdr_lines = sqlite3_column_int64(stmt, 7);
	row_r->cache.body_lines = sqlite3_column_int64(stmt, 8);
	if (sqlite3_column_type(stmt, 9) != SQLITE_NULL) {
		row_r->fields_size = sqlite3_column_bytes(stmt, 9);
		row_r->fields = p_memdup(pool, sqlite3_column_blob(stmt, 9),
					 row_r->fields_size);
	}
}

int sqlbox_db_mail_lookup(struct sqlbox_storage *storage, int64_t mailbox_id,
			  uint32_t uid, unsigned int parts, pool_t pool,
			  struct sqlbox_mail_row *row_r)
{
	sqlite3_stmt **stmtp = &storage->mail_lookup_stmts[parts];
	int rc;

	if (*stmtp == NULL) {
		*stmtp = sqlbox_db_prepare(storage, t_strconcat(
			sqlbox_db_mail_row_sql(parts),
			" WHERE m.mailbox_id = ? AND m.uid = ?", NULL));
		if (*stmtp == NULL)
			return -1;
	}
	sqlite3_bind_int64(*stmtp, 1, mailbox_id);
	sqlite3_bind_int64(*stmtp, 2, uid);
	rc = sqlbox_db_step(storage, *stmtp);
	if (rc == SQLITE_ROW)
		sqlbox_db_mail_row_get(*stmtp, parts, pool, row_r);
	sqlite3_reset(*stmtp);
	return rc < 0 ? -1 : (rc == SQLITE_ROW ? 1 : 0);
}

int sqlbox_db_mail_lookup_range(struct sqlbox_storage *storage,
				int64_t mailbox_id, uint32_t first_uid,
				unsigned int limit, unsigned int parts,
				pool_t pool, ARRAY_TYPE(sqlbox_mail_row) *rows)
{
	sqlite3_stmt **stmtp = &storage->mail_range_stmts[parts];
	int rc;

	if (*stmtp == NULL) {
		*stmtp = sqlbox_db_prepare(storage, t_strconcat(
			sqlbox_db_mail_row_sql(parts),
			" WHERE m.mailbox_id = ? AND m.uid >= ?"
			" ORDER BY m.uid LIMIT ?", NULL));
		if (*stmtp == NULL)
			return -1;
	}
	sqlite3_bind_int64(*stmtp, 1, mailbox_id);
	sqlite3_bind_int64(*stmtp, 2, first_uid);
	sqlite3_bind_int64(*stmtp, 3, limit);
	while ((rc = sqlbox_db_step(storage, *stmtp)) == SQLITE_ROW) {
		sqlbox_db_mail_row_get(*stmtp, parts, pool,
				       array_append_space(rows));
	}
	sqlite3_reset(*stmtp);
	return rc < 0 ? -1 : 0;
}

/* Prepares *stmtp once, as select_sql(parts) (whose rows are mail m)
   for the UIDs of a folder given as a list of at most
   SQLBOX_DB_MAIL_UIDS_MAX, in UID order; binds mailbox_id and the count
   uids.  0 ok, -1 error. */
static int
sqlbox_db_mail_uids_bind(struct sqlbox_storage *storage,
			 sqlite3_stmt **stmtp,
			 const char *(*select_sql)(unsigned int parts),
			 unsigned int parts, int64_t mailbox_id,
			 const uint32_t *uids, unsigned int count)
{
	unsigned int i;

	i_assert(count <= SQLBOX_DB_MAIL_UIDS_MAX);
	if (*stmtp == NULL) {
		string_t *sql = t_str_new(512);

		str_append(sql, select_sql(parts));
		str_append(sql, " WHERE m.mailbox_id = ? AND m.uid IN (?");
		for (i = 1; i < SQLBOX_DB_MAIL_UIDS_MAX; i++)
			str_append(sql, ",?");
		str_append(sql, ") ORDER BY m.uid");
		*stmtp = sqlbox_db_prepare(storage, str_c(sql));
		if (*stmtp == NULL)
			return -1;
	}
	sqlite3_bind_int64(*stmtp, 1, mailbox_id);
	/* The unused ones: 0, never a UID */
	for (i = 0; i < SQLBOX_DB_MAIL_UIDS_MAX; i++)
		sqlite3_bind_int64(*stmtp, i + 2, i < count ? uids[i] : 0);
	return 0;
}

int sqlbox_db_mail_lookup_uids(struct sqlbox_storage *storage,
			       int64_t mailbox_id, const uint32_t *uids,
			       unsigned int count, unsigned int parts,
			       pool_t pool, ARRAY_TYPE(sqlbox_mail_row) *rows)
{
	sqlite3_stmt **stmtp = &storage->mail_uids_stmts[parts];
	int rc;

	if (sqlbox_db_mail_uids_bind(storage, stmtp, sqlbox_db_mail_row_sql,
				     parts, mailbox_id, uids, count) < 0)
		return -1;
	while ((rc = sqlbox_db_step(storage, *stmtp)) == SQLITE_ROW) {
		sqlbox_db_mail_row_get(*stmtp, parts, pool,
				       array_append_space(rows));
	}
	sqlite3_reset(*stmtp);
	return rc < 0 ? -1 : 0;
}

/* sqlbox_db_mail_lookup_heavy()'s statement of parts, to which the
   WHERE clause is appended. */
static const char *sqlbox_db_mail_heavy_sql(unsigned int parts)
{
	const char *joins, *columns;

	columns = sqlbox_db_mail_parts_sql(parts, &joins);
	return t_strconcat("SELECT m.uid, m.body_id,", columns,
			   " FROM mail m", joins, NULL);
}

int sqlbox_db_mail_lookup_heavy(struct sqlbox_storage *storage,
				int64_t mailbox_id,
				struct sqlbox_mail_row *rows,
				unsigned int count, unsigned int parts,
				bool sparse, pool_t pool)
{
	sqlite3_stmt *stmt;
	unsigned int i = 0;
	uint32_t uid;
	int rc;

	i_assert(parts != 0 && parts <= SQLBOX_ROW_PARTS_ALL);
	if (count == 0)
		return 0;
	if (sparse) {
		/* A sparse window: its rows only */
		uint32_t uids[SQLBOX_DB_MAIL_UIDS_MAX];

		i_assert(count <= SQLBOX_DB_MAIL_UIDS_MAX);
		for (unsigned int n = 0; n < count; n++)
			uids[n] = rows[n].uid;
		if (sqlbox_db_mail_uids_bind(storage,
				&storage->mail_heavy_uids_stmts[parts],
				sqlbox_db_mail_heavy_sql, parts, mailbox_id,
				uids, count) < 0)
			return -1;
		stmt = storage->mail_heavy_uids_stmts[parts];
	} else {
		if (storage->mail_heavy_stmts[parts] == NULL) {
			storage->mail_heavy_stmts[parts] =
				sqlbox_db_prepare(storage, t_strconcat(
				sqlbox_db_mail_heavy_sql(parts),
				" WHERE m.mailbox_id = ? AND"
				" m.uid BETWEEN ? AND ? ORDER BY m.uid", NULL));
			if (storage->mail_heavy_stmts[parts] == NULL)
				return -1;
		}
		stmt = storage->mail_heavy_stmts[parts];
		sqlite3_bind_int64(stmt, 1, mailbox_id);
		sqlite3_bind_int64(stmt, 2, rows[0].uid);
		sqlite3_bind_int64(stmt, 3, rows[count - 1].uid);
	}
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		unsigned int missing;

		uid = sqlite3_column_int64(stmt, 0);
		while (i < count && rows[i].uid < uid)
			i++;
		if (i == count)
			break;
		/* A row that lacks some of the parts; its mail is still there
		   with the same body (a UID or a body id is never given out
		   again, but the check costs nothing). */
		missing = parts & ~rows[i].parts_read;
		if (rows[i].uid == uid && missing != 0 &&
		    rows[i].body_id == sqlite3_column_int64(stmt, 1)) {
			sqlbox_db_mail_row_get_heavy(stmt, 2, missing, pool,
						     &rows[i]);
		}
	}
	sqlite3_reset(stmt);
	return rc < 0 ? -1 : 0;
}

int sqlbox_db_mail_body_id(struct sqlbox_storage *storage, int64_t mailbox_id,
			   uint32_t uid, int64_t *body_id_r)
{
	sqlite3_stmt *stmt;
	int rc;

	if (storage->mail_body_stmt == NULL) {
		storage->mail_body_stmt = sqlbox_db_prepare(storage,
			"SELECT body_id FROM mail"
			" WHERE mailbox_id = ? AND uid = ?");
		if (storage->mail_body_stmt == NULL)
			return -1;
	}
	stmt = storage->mail_body_stmt;
	sqlite3_bind_int64(stmt, 1, mailbox_id);
	sqlite3_bind_int64(stmt, 2, uid);
	rc = sqlbox_db_step(storage, stmt);
	if (rc == SQLITE_ROW)
		*body_id_r = sqlite3_column_int64(stmt, 0);
	sqlite3_reset(stmt);
	return rc < 0 ? -1 : (rc == SQLITE_ROW ? 1 : 0);
}

/* The body_fields row of a body (schema version 9) whose header block is
   header[0..header_len) (hdr_size bytes, unless the cache row is
   damaged), on stmt: INSERT OR REPLACE INTO body_fields (body_id,
   hdr_size, hdr_lines, body_lines, fields). */
static int
sqlbox_db_fields_insert(struct sqlbox_storage *storage, sqlite3_stmt *stmt,
			int64_t body_id, const unsigned char *header,
			size_t header_len, int64_t hdr_size,
			int64_t hdr_lines, int64_t body_lines)
{
	unsigned char *fields;
	ssize_t fields_size;
	int rc;

	fields = i_malloc(header_len + 2);
	fields_size = sqlbox_header_block_filter(header, header_len,
						 sqlbox_search_fields,
						 sqlbox_search_fields_count,
						 fields);
	sqlite3_bind_int64(stmt, 1, body_id);
	sqlite3_bind_int64(stmt, 2, hdr_size);
	sqlite3_bind_int64(stmt, 3, hdr_lines);
	sqlite3_bind_int64(stmt, 4, body_lines);
	/* NULL: not plain, the header block is filtered then */
	if (fields_size < 0)
		sqlite3_bind_null(stmt, 5);
	else
		sqlite3_bind_blob(stmt, 5, fields, fields_size, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	i_free(fields);
	return rc < 0 ? -1 : 0;
}

#define SQLBOX_SQL_FIELDS_INSERT \
	"INSERT OR REPLACE INTO body_fields (body_id, hdr_size, hdr_lines," \
	" body_lines, fields) VALUES (?, ?, ?, ?, ?)"

int sqlbox_db_cache_insert(struct sqlbox_storage *storage, int64_t body_id,
			   const struct sqlbox_body_cache *cache)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"INSERT OR REPLACE INTO body_header (body_id, hdr_size,"
		" hdr_lines, body_lines, header) VALUES (?, ?, ?, ?, ?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, body_id);
	sqlite3_bind_int64(stmt, 2, cache->hdr_size);
	sqlite3_bind_int64(stmt, 3, cache->hdr_lines);
	sqlite3_bind_int64(stmt, 4, cache->body_lines);
	/* Never NULL, even for an empty header (NOT NULL) */
	sqlite3_bind_blob(stmt, 5, cache->header_size == 0 ? "" :
			  (const void *)cache->header, cache->header_size,
			  SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	if (rc < 0)
		return -1;
	stmt = sqlbox_db_prepare(storage,
		"INSERT OR REPLACE INTO body_cache (body_id, hdr_size,"
		" hdr_lines, body_lines, envelope, bodystructure)"
		" VALUES (?, ?, ?, ?, ?, ?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, body_id);
	sqlite3_bind_int64(stmt, 2, cache->hdr_size);
	sqlite3_bind_int64(stmt, 3, cache->hdr_lines);
	sqlite3_bind_int64(stmt, 4, cache->body_lines);
	sqlite3_bind_text(stmt, 5, cache->envelope, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 6, cache->bodystructure, -1, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	if (rc < 0)
		return -1;
	stmt = sqlbox_db_prepare(storage, SQLBOX_SQL_FIELDS_INSERT);
	if (stmt == NULL)
		return -1;
	rc = sqlbox_db_fields_insert(storage, stmt, body_id, cache->header,
				     I_MIN(cache->hdr_size, cache->header_size),
				     cache->hdr_size, cache->hdr_lines,
				     cache->body_lines);
	sqlite3_finalize(stmt);
	return rc;
}

int sqlbox_db_fields_fill(struct sqlbox_storage *storage)
{
	sqlite3_stmt *select, *insert;
	int rc;

	select = sqlbox_db_prepare(storage,
		"SELECT body_id, header, hdr_size, hdr_lines, body_lines"
		" FROM body_cache");
	if (select == NULL)
		return -1;
	insert = sqlbox_db_prepare(storage, SQLBOX_SQL_FIELDS_INSERT);
	if (insert == NULL) {
		sqlite3_finalize(select);
		return -1;
	}
	while ((rc = sqlbox_db_step(storage, select)) == SQLITE_ROW) {
		const unsigned char *header = sqlite3_column_blob(select, 1);
		size_t header_size = sqlite3_column_bytes(select, 1);
		int64_t hdr_size = sqlite3_column_int64(select, 2);

		if (sqlbox_db_fields_insert(storage, insert,
				sqlite3_column_int64(select, 0), header,
				I_MIN((size_t)I_MAX(hdr_size, 0), header_size),
				hdr_size, sqlite3_column_int64(select, 3),
				sqlite3_column_int64(select, 4)) < 0) {
			rc = -1;
			break;
		}
	}
	sqlite3_finalize(insert);
	sqlite3_finalize(select);
	return rc < 0 ? -1 : 0;
}

int sqlbox_db_cache_set(struct sqlbox_storage *storage, int64_t body_id,
			const struct sqlbox_body_cache *sizes,
			const char *column, const char *value)
{
	sqlite3_stmt *stmt;
	int rc;

	i_assert(strcmp(column, "envelope") == 0 ||
		 strcmp(column, "bodystructure") == 0);
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	/* A row made if the body has none (it went, as with schema 9's
	   rows whose header block is now body_header's), not if the body
	   went meanwhile. */
	stmt = sqlbox_db_prepare(storage, t_strdup_printf(
		"INSERT INTO body_cache (body_id, hdr_size, hdr_lines,"
		" body_lines, %s) SELECT id, ?, ?, ?, ? FROM body WHERE id = ?"
		" ON CONFLICT (body_id) DO UPDATE SET %s = excluded.%s",
		column, column, column));
	if (stmt == NULL) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	sqlite3_bind_int64(stmt, 1, sizes->hdr_size);
	sqlite3_bind_int64(stmt, 2, sizes->hdr_lines);
	sqlite3_bind_int64(stmt, 3, sizes->body_lines);
	sqlite3_bind_text(stmt, 4, value, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, body_id);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	if (rc < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}

static void
sqlbox_db_chunk_critical(struct sqlbox_storage *storage, sqlite3 *db,
			 const char *what)
{
	mail_storage_set_critical(&storage->storage, "sqlbox %s: %s (%d)",
				  what, sqlite3_errmsg(db),
				  sqlite3_extended_errcode(db));
}

/* The body connection's cache from its first read that starts within a
   chunk: a 256 KiB chunk's overflow pages and the b-tree pages above
   them (sqlbox-db.c, SQLBOX_BODY_CACHE_PRAGMA). */
#define SQLBOX_BODY_CACHE_GROWN_PAGES 80

static void sqlbox_db_body_cache_grow(struct sqlbox_storage *storage)
{
	int ret;

	if (storage->body_db == NULL || storage->body_db_cache_grown)
		return;
	storage->body_db_cache_grown = TRUE;
	ret = sqlite3_exec(storage->body_db, t_strdup_printf(
		"PRAGMA cache_size=%d", SQLBOX_BODY_CACHE_GROWN_PAGES),
		NULL, NULL, NULL);
	if (ret != SQLITE_OK) {
		/* Not fatal: reads within chunks walk more pages. */
		e_warning(storage->storage.event,
			  "sqlbox: growing the body connection's cache "
			  "failed: %s", sqlite3_errmsg(storage->body_db));
		return;
	}
	e_debug(storage->storage.event,
		"sqlbox: body connection's cache grown to %d pages "
		"(a read within a chunk)", SQLBOX_BODY_CACHE_GROWN_PAGES);
}

/* The blob handle of the chunk at rowid on db: the body connection's
   kept one moved there, or one opened for this read (*kept_r FALSE).
   Returns 0, -2 the row is gone, -1 error. */
static int
sqlbox_db_chunk_blob(struct sqlbox_storage *storage, sqlite3 *db,
		     int64_t rowid, sqlite3_blob **blob_r, bool *kept_r)
{
	sqlite3_blob *blob;
	int rc;

	*kept_r = db == storage->body_db && storage->body_reads_txn;
	if (*kept_r && storage->body_blob != NULL) {
		rc = sqlite3_blob_reopen(storage->body_blob, rowid);
		if (rc == SQLITE_OK) {
			*blob_r = storage->body_blob;
			return 0;
		}
		/* The handle is aborted now. */
		(void)sqlite3_blob_close(storage->body_blob);
		storage->body_blob = NULL;
		if (rc == SQLITE_ERROR)
			return -2;
		sqlbox_db_chunk_critical(storage, db,
					 "sqlite3_blob_reopen(chunk)");
		return -1;
	}
	rc = sqlite3_blob_open(db, "main", "chunk", "data", rowid, 0, &blob);
	if (rc != SQLITE_OK) {
		sqlite3_blob_close(blob);
		if (rc == SQLITE_ERROR) {
			/* The row went away between the two statements. */
			return -2;
		}
		sqlbox_db_chunk_critical(storage, db,
					 "sqlite3_blob_open(chunk)");
		return -1;
	}
	if (*kept_r)
		storage->body_blob = blob;
	*blob_r = blob;
	return 0;
}

ssize_t sqlbox_db_chunk_read_at(struct sqlbox_storage *storage,
				int64_t body_id, int64_t seq, size_t offset,
				void *dst, size_t size, size_t *chunk_size_r)
{
	sqlite3 *db = storage->db;
	sqlite3_stmt **stmtp = &storage->chunk_rowid_stmt, *stmt;
	sqlite3_blob *blob;
	int64_t rowid;
	size_t bytes;
	bool kept;
	int rc, ret;

	/* Outside a transaction everything this session wrote is
	   committed, so the body connection sees it; inside one (a mail
	   read while it is being saved) only this connection does. */
	if (storage->txn_depth == 0 && storage->body_db != NULL) {
		db = storage->body_db;
		stmtp = &storage->body_rowid_stmt;
		/* It walks the chain from the chunk's start: keep it. */
		if (offset > 0)
			sqlbox_db_body_cache_grow(storage);
		if (sqlbox_db_body_reads_begin(storage) < 0)
			return -1;
	}
	if (*stmtp == NULL) {
		if (sqlite3_prepare_v2(db,
			"SELECT rowid FROM chunk WHERE body_id = ? AND seq = ?",
			-1, stmtp, NULL) != SQLITE_OK) {
			sqlbox_db_chunk_critical(storage, db, "prepare");
			return -1;
		}
	}
	stmt = *stmtp;
	sqlite3_bind_int64(stmt, 1, body_id);
	sqlite3_bind_int64(stmt, 2, seq);
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		if (rc != SQLITE_DONE)
			sqlbox_db_chunk_critical(storage, db, "step");
		sqlite3_reset(stmt);
		return rc == SQLITE_DONE ? -2 : -1;
	}
	rowid = sqlite3_column_int64(stmt, 0);
	/* On the main connection the handle lives for this one read only:
	   no read snapshot is held while the caller's session writes.  It
	   is opened before the lookup is reset, so both run in one read
	   transaction (taking the WAL read lock once).  On the body
	   connection both run in its read transaction, and the handle is
	   kept for the next chunk. */
	ret = sqlbox_db_chunk_blob(storage, db, rowid, &blob, &kept);
	sqlite3_reset(stmt);
	if (ret < 0)
		return ret;
	if (kept)
		storage->body_reads_chunks++;
	bytes = sqlite3_blob_bytes(blob);
	*chunk_size_r = bytes;
	if (offset >= bytes) {
		if (!kept)
			sqlite3_blob_close(blob);
		return 0;
	}
	size = I_MIN(size, bytes - offset);
	rc = sqlite3_blob_read(blob, dst, size, offset);
	if (rc != SQLITE_OK && rc != SQLITE_ABORT)
		sqlbox_db_chunk_critical(storage, db,
					 "sqlite3_blob_read(chunk)");
	if (!kept)
		sqlite3_blob_close(blob);
	else if (rc != SQLITE_OK) {
		sqlite3_blob_close(blob);
		storage->body_blob = NULL;
	}
	if (rc != SQLITE_OK)
		return rc == SQLITE_ABORT ? -2 : -1;
	return size;
}

int sqlbox_db_body_read(struct sqlbox_storage *storage, int64_t body_id,
			buffer_t *buf)
{
	sqlite3_stmt *stmt;
	int rc, ret = 0;

	stmt = sqlbox_db_prepare(storage,
		"SELECT data FROM chunk WHERE body_id = ? ORDER BY seq");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, body_id);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		buffer_append(buf, sqlite3_column_blob(stmt, 0),
			      sqlite3_column_bytes(stmt, 0));
		ret = 1;
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : ret;
}

/* Drops what saves that crashed mid-way left behind.  Cheap when there is
   nothing: the pending table is empty except during large saves. */
int sqlbox_db_pending_gc(struct sqlbox_storage *storage)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT 1 FROM body_pending WHERE started < ? LIMIT 1");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, ioloop_time - SQLBOX_PENDING_STALE_SECS);
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_ROW)
		return rc < 0 ? -1 : 0;
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	if (sqlbox_db_exec_args(storage,
		"DELETE FROM chunk WHERE body_id IN (SELECT body_id FROM"
		" body_pending WHERE started < ?1)", 1,
		(int64_t)(ioloop_time - SQLBOX_PENDING_STALE_SECS)) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM body WHERE id IN (SELECT body_id FROM"
		" body_pending WHERE started < ?1)", 1,
		(int64_t)(ioloop_time - SQLBOX_PENDING_STALE_SECS)) < 0 ||
	    sqlbox_db_exec_args(storage,
		"DELETE FROM body_pending WHERE started < ?1", 1,
		(int64_t)(ioloop_time - SQLBOX_PENDING_STALE_SECS)) < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}
