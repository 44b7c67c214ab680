/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The SQLite3MultipleCiphers side of interop.sh, built at test time
   against the amalgamation from the better-sqlite3-multiple-ciphers npm
   package (never committed). Same commands as cvfs-interop-helper:

     mc-tool write PATH KEY ROWS [crash]
     mc-tool read  PATH KEY ROWS
     mc-tool query PATH KEY SQL      (rows printed as col|col|...)
     mc-tool serve PATH KEY AUTOCHECKPOINT
     mc-tool legacywal PATH KEY TXNS

   KEY is "raw:<64 hex>" (sqlite3mc's own raw-key syntax) or
   "pass:<passphrase>". With MC_LEGACY_WAL=1 in the environment every
   connection uses sqlite3mc's legacy WAL (PRAGMA mc_legacy_wal=1).

   serve is one writer of the concurrent test (cvfs-interop-concurrent):
   it keeps the database open and answers each line of stdin with "ok"
   once it is done ("commit TXN N": one transaction of N rows of table w;
   "checkpoint MODE": PRAGMA wal_checkpoint(MODE)). The table and the row
   bodies are the ones cvfs-interop-helper serve writes.

   legacywal leaves (by _exit, no checkpoint) a legacy WAL in which a
   page's frames are checksummed with the reserved bytes of a frame more
   than 256 frames earlier: connection B reads table k's page from A's
   frame, then commits TXNS transactions that each add a row to t and
   bump k.v, while its page cache keeps that first version. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sqlite3.h"

#define MC_BODY_SQL(id) \
	"printf('interop-%d-', " id ") || hex(zeroblob(" id " % 300))"
/* Table w and its row bodies, as in cvfs-interop-helper.c. */
#define MC_SERVE_TABLE_SQL \
	"CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, " \
	"txn INTEGER NOT NULL, i INTEGER NOT NULL, n INTEGER NOT NULL, " \
	"body TEXT NOT NULL)"
#define MC_SERVE_BODY_SQL(txn, i) \
	"printf('%d.%d.', " txn ", " i ") || " \
	"hex(zeroblob((" txn " * 37 + " i " * 11) % 600))"
#define MC_SERVE_LINE_MAX 256

static int mc_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK)
		fprintf(stderr, "mc-tool: %s: %s\n", sql, msg);
	sqlite3_free(msg);
	return rc;
}

/* Opens PATH with KEY the way an sqlite3mc user would. */
static sqlite3 *mc_open(const char *path, const char *key)
{
	sqlite3 *db;
	char *sql;
	int rc;

	const char *legacy = getenv("MC_LEGACY_WAL");

	if (sqlite3_open(path, &db) != SQLITE_OK)
		return NULL;
	sql = sqlite3_mprintf("PRAGMA cipher='chacha20'; "
			      "PRAGMA mc_legacy_wal=%d; PRAGMA key=%Q",
			      legacy != NULL && strcmp(legacy, "1") == 0,
			      strncmp(key, "pass:", 5) == 0 ? key + 5 : key);
	rc = mc_exec(db, sql);
	sqlite3_free(sql);
	if (rc != SQLITE_OK ||
	    mc_exec(db, "SELECT count(*) FROM sqlite_schema") != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

/* Used by the sqlbox system test: any query on a real mailbox. */
static int mc_query(const char *path, const char *key, const char *query)
{
	sqlite3_stmt *stmt;
	sqlite3 *db;
	int rc, i;

	if ((db = mc_open(path, key)) == NULL)
		return 1;
	if (sqlite3_prepare_v2(db, query, -1, &stmt, NULL) != SQLITE_OK) {
		fprintf(stderr, "mc-tool: %s: %s\n", query, sqlite3_errmsg(db));
		return 1;
	}
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		for (i = 0; i < sqlite3_column_count(stmt); i++) {
			const unsigned char *v = sqlite3_column_text(stmt, i);

			printf("%s%s", i > 0 ? "|" : "",
			       v == NULL ? "" : (const char *)v);
		}
		printf("\n");
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "mc-tool: %s: %s\n", query, sqlite3_errmsg(db));
		return 1;
	}
	return sqlite3_close(db) == SQLITE_OK ? 0 : 1;
}

/* One transaction of table w, as cvfs-interop-helper serve writes it. */
static int mc_serve_commit(sqlite3 *db, sqlite3_stmt *insert,
			   sqlite3_stmt *touch, long txn, long n)
{
	if (mc_exec(db, "BEGIN IMMEDIATE") != SQLITE_OK)
		return 1;
	for (long i = 0; i < n; i++) {
		sqlite3_bind_int64(insert, 1, txn);
		sqlite3_bind_int64(insert, 2, i);
		sqlite3_bind_int64(insert, 3, n);
		if (sqlite3_step(insert) != SQLITE_DONE) {
			fprintf(stderr, "mc-tool: insert: %s\n",
				sqlite3_errmsg(db));
			return 1;
		}
		sqlite3_reset(insert);
	}
	/* Rewrites older pages too, not only the newest ones. */
	sqlite3_bind_int64(touch, 1, txn);
	if (sqlite3_step(touch) != SQLITE_DONE) {
		fprintf(stderr, "mc-tool: update: %s\n", sqlite3_errmsg(db));
		return 1;
	}
	sqlite3_reset(touch);
	return mc_exec(db, "COMMIT") == SQLITE_OK ? 0 : 1;
}

static int mc_serve(const char *path, const char *key, const char *autockpt)
{
	sqlite3_stmt *insert, *touch;
	char line[MC_SERVE_LINE_MAX], mode[32], *sql;
	long txn, n;
	sqlite3 *db;
	int ret = 0;

	if ((db = mc_open(path, key)) == NULL)
		return 1;
	sqlite3_busy_timeout(db, 60000);
	sql = sqlite3_mprintf("PRAGMA journal_mode=WAL; "
			      "PRAGMA wal_autocheckpoint=%d; "
			      MC_SERVE_TABLE_SQL, atoi(autockpt));
	if (mc_exec(db, sql) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO w(txn, i, n, body) VALUES("
			       "?1, ?2, ?3, " MC_SERVE_BODY_SQL("?1", "?2")
			       ")", -1, &insert, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE w SET body = body WHERE "
			       "id % 13 = ?1 % 13", -1, &touch,
			       NULL) != SQLITE_OK) {
		fprintf(stderr, "mc-tool serve: %s\n", sqlite3_errmsg(db));
		return 1;
	}
	sqlite3_free(sql);
	printf("ready\n");
	fflush(stdout);
	while (ret == 0 && fgets(line, sizeof(line), stdin) != NULL) {
		if (sscanf(line, "commit %ld %ld", &txn, &n) == 2) {
			ret = mc_serve_commit(db, insert, touch, txn, n);
		} else if (sscanf(line, "checkpoint %31s", mode) == 1) {
			sql = sqlite3_mprintf("PRAGMA wal_checkpoint(%s)",
					      mode);
			ret = mc_exec(db, sql) == SQLITE_OK ? 0 : 1;
			sqlite3_free(sql);
		} else {
			fprintf(stderr, "mc-tool serve: bad line %s", line);
			ret = 1;
		}
		if (ret == 0) {
			printf("ok\n");
			fflush(stdout);
		}
	}
	sqlite3_finalize(insert);
	sqlite3_finalize(touch);
	if (sqlite3_close(db) != SQLITE_OK)
		ret = 1;
	return ret;
}

static int mc_legacywal(const char *path, const char *key, long txns)
{
	sqlite3 *a, *b;
	char *sql;

	if (setenv("MC_LEGACY_WAL", "1", 1) < 0 ||
	    (a = mc_open(path, key)) == NULL ||
	    mc_exec(a, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
		    "CREATE TABLE k(id INTEGER PRIMARY KEY, v INTEGER);"
		    "CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB);"
		    "INSERT INTO k VALUES(1, 0)") != SQLITE_OK ||
	    (b = mc_open(path, key)) == NULL ||
	    mc_exec(b, "PRAGMA wal_autocheckpoint=0; "
		    "SELECT v FROM k") != SQLITE_OK)
		return 1;
	/* A writes k's page once more: B's next read takes it from this
	   frame, and B's cache keeps that copy's nonce and tag from now on. */
	if (mc_exec(a, "UPDATE k SET v = 0") != SQLITE_OK ||
	    mc_exec(b, "SELECT v FROM k") != SQLITE_OK)
		return 1;
	for (long i = 0; i < txns; i++) {
		sql = sqlite3_mprintf("BEGIN; INSERT INTO t VALUES(%ld, "
				      "zeroblob(3000)); UPDATE k SET v = v + 1;"
				      " COMMIT", i);
		if (mc_exec(b, sql) != SQLITE_OK)
			return 1;
		sqlite3_free(sql);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	sqlite3_stmt *stmt;
	sqlite3_int64 next = 0;
	long rows, n = 0;
	sqlite3 *db;
	int rc;

	if (argc == 5 && strcmp(argv[1], "query") == 0)
		return mc_query(argv[2], argv[3], argv[4]);
	if (argc == 5 && strcmp(argv[1], "serve") == 0)
		return mc_serve(argv[2], argv[3], argv[4]);
	if (argc == 5 && strcmp(argv[1], "legacywal") == 0)
		return mc_legacywal(argv[2], argv[3], atol(argv[4]));
	if (argc < 5) {
		fprintf(stderr, "usage: mc-tool write|read|query|serve|"
			"legacywal PATH KEY ARG\n");
		return 2;
	}
	rows = atol(argv[4]);
	if ((db = mc_open(argv[2], argv[3])) == NULL)
		return 1;
	if (strcmp(argv[1], "write") == 0) {
		if (mc_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT "
			    "EXISTS t(id INTEGER PRIMARY KEY, body TEXT)") !=
		    SQLITE_OK)
			return 1;
		if (argc > 5 && strcmp(argv[5], "crash") == 0 &&
		    mc_exec(db, "PRAGMA wal_autocheckpoint=0") != SQLITE_OK)
			return 1;
		if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id) + 1, 0) "
				       "FROM t", -1, &stmt, NULL) != SQLITE_OK)
			return 1;
		if (sqlite3_step(stmt) == SQLITE_ROW)
			next = sqlite3_column_int64(stmt, 0);
		sqlite3_finalize(stmt);
		if (sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?1, "
				       MC_BODY_SQL("?1") ")", -1, &stmt,
				       NULL) != SQLITE_OK ||
		    mc_exec(db, "BEGIN") != SQLITE_OK)
			return 1;
		for (long i = 0; i < rows; i++) {
			sqlite3_bind_int64(stmt, 1, next + i);
			if (sqlite3_step(stmt) != SQLITE_DONE)
				return 1;
			sqlite3_reset(stmt);
		}
		sqlite3_finalize(stmt);
		if (mc_exec(db, "COMMIT") != SQLITE_OK)
			return 1;
		if (argc > 5 && strcmp(argv[5], "crash") == 0)
			_exit(0);
		return sqlite3_close(db) == SQLITE_OK ? 0 : 1;
	}
	if (sqlite3_prepare_v2(db, "SELECT id, body = " MC_BODY_SQL("id")
			       " FROM t ORDER BY id", -1, &stmt,
			       NULL) != SQLITE_OK)
		return 1;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (sqlite3_column_int64(stmt, 0) != n ||
		    sqlite3_column_int(stmt, 1) != 1)
			break;
		n++;
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE || n != rows ||
	    mc_exec(db, "PRAGMA integrity_check") != SQLITE_OK) {
		fprintf(stderr, "mc-tool read: %ld rows (want %ld), rc %d\n",
			n, rows, rc);
		return 1;
	}
	return sqlite3_close(db) == SQLITE_OK ? 0 : 1;
}
