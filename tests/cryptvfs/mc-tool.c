/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The SQLite3MultipleCiphers side of interop.sh, built at test time
   against the amalgamation from the better-sqlite3-multiple-ciphers npm
   package (never committed). Same commands as cvfs-interop-helper:

     mc-tool write PATH KEY ROWS [crash]
     mc-tool read  PATH KEY ROWS
     mc-tool query PATH KEY SQL      (rows printed as col|col|...)

   KEY is "raw:<64 hex>" (sqlite3mc's own raw-key syntax) or
   "pass:<passphrase>". */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sqlite3.h"

#define MC_BODY_SQL(id) \
	"printf('interop-%d-', " id ") || hex(zeroblob(" id " % 300))"

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

	if (sqlite3_open(path, &db) != SQLITE_OK)
		return NULL;
	sql = sqlite3_mprintf("PRAGMA cipher='chacha20'; PRAGMA key=%Q",
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

int main(int argc, char **argv)
{
	sqlite3_stmt *stmt;
	sqlite3_int64 next = 0;
	long rows, n = 0;
	sqlite3 *db;
	int rc;

	if (argc == 5 && strcmp(argv[1], "query") == 0)
		return mc_query(argv[2], argv[3], argv[4]);
	if (argc < 5) {
		fprintf(stderr, "usage: mc-tool write|read PATH KEY ROWS\n");
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
