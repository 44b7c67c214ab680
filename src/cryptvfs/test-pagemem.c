/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* SQLite's page cache buffers from populated chunks (cvfs-pagemem.c):
   the caches of a cryptvfs database take their page buffers from the
   slots, populated a chunk at a time as needed rather than all at once;
   a freed slot is taken again first; a cache still grows to its
   cache_size when the slots are used up (no cap, unlike
   SQLITE_CONFIG_PAGECACHE's slots); what is read back is what was
   written; other allocations and reallocations leave the slots alone.
   One process, one init: the cases run in order. */

#include "test-cryptvfs-common.h"
#include "cryptvfs-private.h"

#define TEST_SLOTS 64
#define TEST_CHUNK 16
#define TEST_ROWS 600

static int test_pm_hdr_size;

static void test_pm_init(void)
{
	struct cvfs_pagemem_stats st;

	test_begin("pagemem init before SQLite, once");
	test_assert(cvfs_pagemem_init(TEST_SLOTS) == SQLITE_OK);
	test_assert(cvfs_pagemem_init(TEST_SLOTS) == SQLITE_MISUSE);
	cvfs_pagemem_get_stats(&st);
	test_assert(st.slots == TEST_SLOTS);
	test_assert(st.slots_populated == 0);
	test_assert(sqlite3_config(SQLITE_CONFIG_PCACHE_HDRSZ,
				   &test_pm_hdr_size) == SQLITE_OK);
	test_assert(sqlite3_initialize() == SQLITE_OK);
	test_end();
}

/* rows of about 300 bytes: TEST_ROWS of them fill some 60 pages */
static int test_pm_fill(sqlite3 *db, int from, int count)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i + 1 "
		 "FROM n WHERE i < %d) INSERT INTO t SELECT i, "
		 "printf('%%.300c', char(65 + i %% 26)) FROM n",
		 from, from + count - 1);
	return test_cvfs_exec(db, sql);
}

static void test_pm_small_db(void)
{
	struct cvfs_pagemem_stats st, st2;
	char path[TEST_CVFS_PATH_MAX];
	sqlite3 *db = NULL;
	sqlite3_int64 v;

	test_begin("pagemem: a small database's pages come from the slots, "
		   "populated by the chunk");
	test_cvfs_path(path, "small.db");
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "CREATE TABLE t (id INTEGER PRIMARY "
				   "KEY, v TEXT)") == SQLITE_OK);
	test_assert(test_pm_fill(db, 1, 20) == SQLITE_OK);
	cvfs_pagemem_get_stats(&st);
	test_assert(st.slots_taken > 0);
	test_assert(st.slots_in_use > 0);
	test_assert(st.overflows == 0);
	/* only the chunks the pages needed, not all the slots */
	test_assert(st.slots_populated ==
		    st.chunks_populated * TEST_CHUNK);
	test_assert(st.slots_populated <
		    (st.slots_in_use_max / TEST_CHUNK + 1) * TEST_CHUNK + 1);
	test_assert(st.slots_populated < TEST_SLOTS);
	test_assert(test_cvfs_int(db, "SELECT sum(length(v)) FROM t",
				  &v) == SQLITE_OK && v == 20 * 300);
	cvfs_close(&db);
	cvfs_pagemem_get_stats(&st2);
	/* closing gave every page buffer back */
	test_assert(st2.slots_in_use == 0);

	/* open again: the freed slots are taken again, none populated */
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_cvfs_int(db, "SELECT count(*) FROM t",
				  &v) == SQLITE_OK && v == 20);
	cvfs_pagemem_get_stats(&st);
	test_assert(st.slots_in_use > 0);
	test_assert(st.chunks_populated == st2.chunks_populated);
	test_assert(st.slots_taken > st2.slots_taken);
	cvfs_close(&db);
	test_cvfs_unlink_db(path);
	test_end();
}

static void test_pm_beyond_slots(void)
{
	struct cvfs_pagemem_stats st;
	char path[TEST_CVFS_PATH_MAX];
	sqlite3 *db = NULL;
	sqlite3_int64 v;
	int cur = 0, hi = 0;

	test_begin("pagemem: a cache grows past the slots to its cache_size");
	test_cvfs_path(path, "big.db");
	test_assert(cvfs_open_v2(path, &db, TEST_CVFS_OPEN_RWC, test_cvfs_key,
				 CVFS_KEY_BYTES, NULL) == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "PRAGMA cache_size=400") == SQLITE_OK);
	test_assert(test_cvfs_exec(db, "CREATE TABLE t (id INTEGER PRIMARY "
				   "KEY, v TEXT)") == SQLITE_OK);
	/* one transaction of some 4 * TEST_SLOTS dirty pages */
	test_assert(test_cvfs_exec(db, "BEGIN") == SQLITE_OK);
	for (int i = 0; i < 8; i++)
		test_assert_idx(test_pm_fill(db, 1 + i * TEST_ROWS / 2,
					     TEST_ROWS / 2) == SQLITE_OK, i);
	test_assert(test_cvfs_exec(db, "COMMIT") == SQLITE_OK);
	test_assert(sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_USED, &cur,
				      &hi, 0) == SQLITE_OK);
	/* more pages cached than there are slots: the rest came from the
	   heap, and no "memory pressure" recycled them */
	test_assert(cur > TEST_SLOTS * (CVFS_PAGEMEM_PAGE_SIZE +
					test_pm_hdr_size));
	cvfs_pagemem_get_stats(&st);
	/* (a page or two of other caches came and went meanwhile) */
	test_assert(st.slots_in_use > TEST_SLOTS - TEST_CHUNK);
	test_assert(st.slots_populated == TEST_SLOTS);
	test_assert(st.overflows > 0);
	test_assert(test_cvfs_int(db, "SELECT count(*) FROM t WHERE v = "
				  "printf('%.300c', char(65 + id % 26))",
				  &v) == SQLITE_OK && v == 4 * TEST_ROWS);
	cvfs_close(&db);
	cvfs_pagemem_get_stats(&st);
	test_assert(st.slots_in_use == 0);
	test_cvfs_unlink_db(path);
	test_end();
}

static void test_pm_realloc(void)
{
	int page_request = CVFS_PAGEMEM_PAGE_SIZE + test_pm_hdr_size;
	struct cvfs_pagemem_stats st, st2;
	unsigned char *p, *q;
	bool same = true;

	test_begin("pagemem: sqlite3_malloc/realloc/msize of a slot");
	cvfs_pagemem_get_stats(&st);
	p = sqlite3_malloc(page_request);
	test_assert(p != NULL);
	cvfs_pagemem_get_stats(&st2);
	test_assert(st2.slots_in_use == st.slots_in_use + 1);
	test_assert(sqlite3_msize(p) >= (sqlite3_uint64)page_request);
	memset(p, 0x5a, (size_t)page_request);
	/* within the slot: stays */
	q = sqlite3_realloc(p, page_request - 8);
	test_assert(q == p);
	/* larger: moves to the heap, the slot goes back, bytes kept */
	q = sqlite3_realloc(p, 3 * CVFS_PAGEMEM_PAGE_SIZE);
	test_assert(q != NULL);
	cvfs_pagemem_get_stats(&st2);
	test_assert(st2.slots_in_use == st.slots_in_use);
	for (int i = 0; q != NULL && i < page_request - 8; i++) {
		if (q[i] != 0x5a)
			same = false;
	}
	test_assert(same);
	sqlite3_free(q);
	/* other sizes never take a slot */
	p = sqlite3_malloc(CVFS_PAGEMEM_PAGE_SIZE);
	q = sqlite3_malloc(100);
	cvfs_pagemem_get_stats(&st2);
	test_assert(st2.slots_in_use == st.slots_in_use);
	sqlite3_free(p);
	sqlite3_free(q);
	test_end();
}

int main(void)
{
	static void (*const cases[])(void) = {
		test_pm_init,
		test_pm_small_db,
		test_pm_beyond_slots,
		test_pm_realloc,
		NULL
	};

	return test_cvfs_run(cases);
}
