/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "tap.h"
#include "sqlbox-fts-structure.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

/* sqlbox_fts_structure_leaf_pages() against SQLite's own FTS5, as sqlbox
   creates it (contentless, detail=none): the leaf pages the structure
   record lists are the leaf rows of fts_index_data, and pages times pgsz
   bounds their bytes.  Also every truncation of a real record, and
   garbage, is refused, never read past. */

#define N_ELEMENTS(arr) (sizeof(arr) / sizeof((arr)[0]))

static sqlite3 *test_db;

static int test_exec(const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(test_db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK)
		printf("# %s: %s\n", sql, err);
	sqlite3_free(err);
	return rc;
}

/* Adds count documents of fixed-seed words, one transaction each. */
static void test_index_docs(unsigned int first, unsigned int count)
{
	sqlite3_stmt *stmt;
	uint32_t seed = 15 + first;

	sqlite3_prepare_v2(test_db, "INSERT INTO fts_index(rowid, tri) "
			   "VALUES (?, ?)", -1, &stmt, NULL);
	for (unsigned int i = first; i < first + count; i++) {
		char text[2048];
		size_t len = 0;

		for (unsigned int w = 0; w < 200; w++) {
			seed = seed * 1103515245 + 12345;
			len += snprintf(text + len, sizeof(text) - len,
					"w%05u ", (seed >> 8) % 50000);
		}
		sqlite3_bind_int64(stmt, 1, i + 1);
		sqlite3_bind_text(stmt, 2, text, -1, SQLITE_STATIC);
		sqlite3_step(stmt);
		sqlite3_reset(stmt);
	}
	sqlite3_finalize(stmt);
}

/* What fts_index_data holds: leaf rows (dlidx bit and height 0, segment
   id > 0) and their bytes. */
static void test_leaf_rows(uint64_t *rows_r, uint64_t *bytes_r)
{
	sqlite3_stmt *stmt;

	sqlite3_prepare_v2(test_db, "SELECT count(*), sum(length(block)) "
			   "FROM fts_index_data WHERE (id >> 37) > 0 "
			   "AND ((id >> 31) & 63) = 0", -1, &stmt, NULL);
	sqlite3_step(stmt);
	*rows_r = sqlite3_column_int64(stmt, 0);
	*bytes_r = sqlite3_column_int64(stmt, 1);
	sqlite3_finalize(stmt);
}

static int test_structure(unsigned char *buf, size_t bufsize)
{
	sqlite3_stmt *stmt;
	int size = -1;

	sqlite3_prepare_v2(test_db, "SELECT block FROM fts_index_data "
			   "WHERE id = 10", -1, &stmt, NULL);
	if (sqlite3_step(stmt) == SQLITE_ROW &&
	    (size_t)sqlite3_column_bytes(stmt, 0) <= bufsize) {
		size = sqlite3_column_bytes(stmt, 0);
		memcpy(buf, sqlite3_column_blob(stmt, 0), size);
	}
	sqlite3_finalize(stmt);
	return size;
}

static void test_check_against_sqlite(unsigned int step)
{
	unsigned char rec[65536];
	uint64_t pages = 0, segments = 0, rows, bytes;
	int size = test_structure(rec, sizeof(rec));

	test_assert_idx(size > 4, step);
	test_assert_idx(sqlbox_fts_structure_leaf_pages(rec, size, &pages,
							&segments), step);
	test_leaf_rows(&rows, &bytes);
	test_assert_idx(pages == rows, step);
	test_assert_idx(segments > 0, step);
	test_assert_idx(bytes <= pages * SQLBOX_FTS_DEFAULT_PGSZ, step);
	if (pages != rows)
		printf("#   pages %llu, leaf rows %llu\n",
		       (unsigned long long)pages, (unsigned long long)rows);
}

static void test_fts_structure_sqlite(void)
{
	test_begin("fts structure: leaf pages as SQLite's FTS5 wrote them");
	test_assert(sqlite3_open(":memory:", &test_db) == SQLITE_OK);
	test_assert(test_exec("CREATE VIRTUAL TABLE fts_index USING fts5("
			      "tri, tokenize = 'ascii', detail = 'none', "
			      "content = '')") == SQLITE_OK);
	/* one segment per transaction at first, then FTS5's automatic
	   merges: several levels */
	for (unsigned int step = 0; step < 40; step++) {
		test_exec("BEGIN");
		test_index_docs(step * 25, 25);
		test_exec("COMMIT");
		if (step % 8 == 7)
			test_check_against_sqlite(step);
	}
	/* everything merged into one segment */
	test_assert(test_exec("INSERT INTO fts_index(fts_index) "
			      "VALUES ('optimize')") == SQLITE_OK);
	test_check_against_sqlite(40);
	test_end();
}

static void test_fts_structure_refused(void)
{
	unsigned char rec[65536];
	uint64_t pages, segments;
	int size = test_structure(rec, sizeof(rec));
	static const unsigned char empty[12] = { 0 };
	static const unsigned char garbage[][12] = {
		/* no level, yet one segment */
		{ 0, 0, 0, 0, 0, 1, 0 },
		{ 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },
		/* 65 levels */
		{ 0, 0, 0, 0, 65, 0, 0 },
		/* one level that claims 2 of 1 segments */
		{ 0, 0, 0, 0, 1, 1, 0, 0, 2, 1, 1, 1 },
		/* segment id 0 */
		{ 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1 },
	};

	test_begin("fts structure: a truncated or wrong record is refused");
	test_assert(size > 4);
	for (int i = 0; i < size; i++)
		test_assert_idx(!sqlbox_fts_structure_leaf_pages(
			rec, i, &pages, &segments), i);
	/* an empty index: no level, no segment, no page */
	test_assert(sqlbox_fts_structure_leaf_pages(empty, sizeof(empty),
						    &pages, &segments) &&
		    pages == 0 && segments == 0);
	for (unsigned int i = 0; i < N_ELEMENTS(garbage); i++)
		test_assert_idx(!sqlbox_fts_structure_leaf_pages(
			garbage[i], sizeof(garbage[i]), &pages, &segments),
			i);
	sqlite3_close(test_db);
	test_end();
}

static int64_t test_int(const char *sql)
{
	sqlite3_stmt *stmt;
	int64_t value = -1;

	sqlite3_prepare_v2(test_db, sql, -1, &stmt, NULL);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		value = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return value;
}

/* The rows the averages record counts, as a reader outside a
   transaction sees them; -1 if it does not parse. */
static int64_t test_averages_rows(void)
{
	sqlite3_stmt *stmt;
	uint64_t rows = 0;
	int64_t ret = -1;

	sqlite3_prepare_v2(test_db, "SELECT block FROM fts_index_data "
			   "WHERE id = 1", -1, &stmt, NULL);
	if (sqlite3_step(stmt) != SQLITE_ROW)
		ret = 0;	/* never written */
	else if (sqlbox_fts_averages_rows(sqlite3_column_blob(stmt, 0),
					  sqlite3_column_bytes(stmt, 0),
					  &rows))
		ret = (int64_t)rows;
	sqlite3_finalize(stmt);
	return ret;
}

static void test_fts_averages_sqlite(void)
{
	static const unsigned char truncated[][2] = {
		/* a varint cut short */
		{ 0x81 },
		/* the rows without the column's tokens */
		{ 0x05 },
	};
	uint64_t rows;

	test_begin("fts averages: the rows as SQLite's FTS5 counted them");
	test_assert(sqlite3_open(":memory:", &test_db) == SQLITE_OK);
	test_assert(test_exec("CREATE VIRTUAL TABLE fts_index USING fts5("
			      "tri, tokenize = 'ascii', detail = 'none', "
			      "content = '')") == SQLITE_OK);
	test_assert(test_averages_rows() == 0);
	/* up to 3000 rows: varints of one and two bytes */
	for (unsigned int step = 0; step < 12; step++) {
		test_exec("BEGIN");
		test_index_docs(step * 250, 250);
		test_exec("COMMIT");
		test_assert_idx(test_averages_rows() == test_int(
			"SELECT count(*) FROM fts_index_docsize"), step);
	}
	test_assert(test_averages_rows() == 3000);
	/* emptied (sqlbox's compaction), then filled again */
	test_assert(test_exec("INSERT INTO fts_index(fts_index) "
			      "VALUES ('delete-all')") == SQLITE_OK);
	test_assert(test_averages_rows() == 0);
	test_index_docs(5000, 7);
	test_assert(test_averages_rows() == 7 && test_int(
		"SELECT count(*) FROM fts_index_docsize") == 7);
	for (unsigned int i = 0; i < N_ELEMENTS(truncated); i++) {
		test_assert_idx(!sqlbox_fts_averages_rows(
			truncated[i], 1, &rows), i);
	}
	sqlite3_close(test_db);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_fts_structure_sqlite,
		test_fts_structure_refused,
		test_fts_averages_sqlite,
		NULL
	};

	return test_run(cases);
}
