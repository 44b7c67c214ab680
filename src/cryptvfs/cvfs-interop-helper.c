/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Our side of tests/cryptvfs/interop.sh (not a test by itself):

     cvfs-interop-helper write  PATH KEY ROWS [crash]
     cvfs-interop-helper read   PATH KEY ROWS
     cvfs-interop-helper export PATH KEY DEST
     cvfs-interop-helper query  PATH KEY SQL      (rows as col|col|...)
     cvfs-interop-helper serve  PATH KEY AUTOCHECKPOINT

   KEY is "raw:<64 hex digits>" or "pass:<passphrase>", as sqlite3mc spells
   them. write appends ROWS rows in WAL mode; with "crash" it leaves
   without closing (auto-checkpoint off), so everything stays in the WAL.
   read checks that table t holds exactly ids 0..ROWS-1 with their
   bodies. serve is our writer in cvfs-interop-concurrent, with the
   protocol and table of mc-tool serve (tests/cryptvfs/mc-tool.c).
   Exit status 0 on success. */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cryptvfs.h"

#define ATTR_UNUSED __attribute__((unused))

#define HELPER_BODY_SQL(id) \
	"printf('interop-%d-', " id ") || hex(zeroblob(" id " % 300))"
/* Table w and its row bodies, as in tests/cryptvfs/mc-tool.c. */
#define HELPER_SERVE_TABLE_SQL \
	"CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, " \
	"txn INTEGER NOT NULL, i INTEGER NOT NULL, n INTEGER NOT NULL, " \
	"body TEXT NOT NULL)"
#define HELPER_SERVE_BODY_SQL(txn, i) \
	"printf('%d.%d.', " txn ", " i ") || " \
	"hex(zeroblob((" txn " * 37 + " i " * 11) % 600))"
#define HELPER_SERVE_LINE_MAX 256

static int helper_open(const char *path, const char *key, sqlite3 **db_r)
{
	unsigned char raw[CVFS_KEY_BYTES];
	struct cvfs_error err;
	int rc;

	if (strncmp(key, "raw:", 4) == 0) {
		if (sodium_hex2bin(raw, sizeof(raw), key + 4, strlen(key + 4),
				   NULL, NULL, NULL) != 0)
			return SQLITE_MISUSE;
		rc = cvfs_open_v2(path, db_r,
				  SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
				  raw, sizeof(raw), &err);
		sodium_memzero(raw, sizeof(raw));
	} else if (strncmp(key, "pass:", 5) == 0) {
		rc = cvfs_open_passphrase(path, db_r, SQLITE_OPEN_READWRITE |
					  SQLITE_OPEN_CREATE, key + 5,
					  strlen(key + 5), &err);
	} else {
		return SQLITE_MISUSE;
	}
	if (rc != SQLITE_OK)
		fprintf(stderr, "open %s: %s\n", path, err.text);
	return rc;
}

static int helper_write(sqlite3 *db, long rows, bool crash)
{
	sqlite3_stmt *stmt;
	sqlite3_int64 next = 0;
	int rc;

	rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL;"
			  "PRAGMA synchronous=NORMAL;"
			  "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY,"
			  " body TEXT);", NULL, NULL, NULL);
	if (rc == SQLITE_OK && crash)
		rc = sqlite3_exec(db, "PRAGMA wal_autocheckpoint=0", NULL,
				  NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(id) + 1, 0) "
					"FROM t", -1, &stmt, NULL);
	if (rc != SQLITE_OK)
		return rc;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		next = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	rc = sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?1, "
				HELPER_BODY_SQL("?1") ")", -1, &stmt, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (long i = 0; i < rows && rc == SQLITE_OK; i++) {
		sqlite3_bind_int64(stmt, 1, next + i);
		rc = sqlite3_step(stmt) == SQLITE_DONE ? SQLITE_OK :
			sqlite3_errcode(db);
		sqlite3_reset(stmt);
	}
	sqlite3_finalize(stmt);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_OK && crash)
		_exit(0);
	return rc;
}

static int helper_read(sqlite3 *db, long rows)
{
	sqlite3_stmt *stmt;
	long n = 0;
	int rc;

	rc = sqlite3_prepare_v2(db, "SELECT id, body = " HELPER_BODY_SQL("id")
				" FROM t ORDER BY id", -1, &stmt, NULL);
	if (rc != SQLITE_OK)
		return rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (sqlite3_column_int64(stmt, 0) != n ||
		    sqlite3_column_int(stmt, 1) != 1)
			break;
		n++;
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE || n != rows) {
		fprintf(stderr, "read: %ld rows (want %ld), rc %d\n", n, rows,
			rc);
		return SQLITE_CORRUPT;
	}
	return SQLITE_OK;
}

static int helper_query_row(void *context ATTR_UNUSED, int n, char **values,
			    char **names ATTR_UNUSED)
{
	for (int i = 0; i < n; i++)
		printf("%s%s", i > 0 ? "|" : "",
		       values[i] == NULL ? "" : values[i]);
	printf("\n");
	return 0;
}

static int helper_serve_commit(sqlite3 *db, sqlite3_stmt *insert,
			       sqlite3_stmt *touch, long txn, long n)
{
	int rc;

	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	for (long i = 0; i < n && rc == SQLITE_OK; i++) {
		sqlite3_bind_int64(insert, 1, txn);
		sqlite3_bind_int64(insert, 2, i);
		sqlite3_bind_int64(insert, 3, n);
		rc = sqlite3_step(insert) == SQLITE_DONE ? SQLITE_OK :
			sqlite3_errcode(db);
		sqlite3_reset(insert);
	}
	/* Rewrites older pages too, not only the newest ones. */
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(touch, 1, txn);
		rc = sqlite3_step(touch) == SQLITE_DONE ? SQLITE_OK :
			sqlite3_errcode(db);
		sqlite3_reset(touch);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	return rc;
}

static int helper_serve(sqlite3 *db, const char *autockpt)
{
	char line[HELPER_SERVE_LINE_MAX], mode[32], *sql;
	sqlite3_stmt *insert, *touch;
	long txn, n;
	int rc;

	sqlite3_busy_timeout(db, 60000);
	sql = sqlite3_mprintf("PRAGMA journal_mode=WAL; "
			      "PRAGMA synchronous=NORMAL; "
			      "PRAGMA wal_autocheckpoint=%d; "
			      HELPER_SERVE_TABLE_SQL, atoi(autockpt));
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_free(sql);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "INSERT INTO w(txn, i, n, body) "
					"VALUES(?1, ?2, ?3, "
					HELPER_SERVE_BODY_SQL("?1", "?2") ")",
					-1, &insert, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "UPDATE w SET body = body WHERE "
					"id % 13 = ?1 % 13", -1, &touch, NULL);
	if (rc != SQLITE_OK)
		return rc;
	printf("ready\n");
	fflush(stdout);
	while (rc == SQLITE_OK && fgets(line, sizeof(line), stdin) != NULL) {
		if (sscanf(line, "commit %ld %ld", &txn, &n) == 2) {
			rc = helper_serve_commit(db, insert, touch, txn, n);
		} else if (sscanf(line, "checkpoint %31s", mode) == 1) {
			sql = sqlite3_mprintf("PRAGMA wal_checkpoint(%s)",
					      mode);
			rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
			sqlite3_free(sql);
		} else {
			rc = SQLITE_MISUSE;
		}
		if (rc == SQLITE_OK) {
			printf("ok\n");
			fflush(stdout);
		}
	}
	sqlite3_finalize(insert);
	sqlite3_finalize(touch);
	return rc;
}

int main(int argc, char **argv)
{
	struct cvfs_error err;
	sqlite3 *db;
	int rc;

	if (argc < 5 || sodium_init() < 0) {
		fprintf(stderr, "usage: %s write|read|export|query|serve "
			"PATH KEY ARG\n",
			argv[0]);
		return 2;
	}
	rc = helper_open(argv[2], argv[3], &db);
	if (rc != SQLITE_OK)
		return 1;
	if (strcmp(argv[1], "write") == 0)
		rc = helper_write(db, atol(argv[4]),
				  argc > 5 && strcmp(argv[5], "crash") == 0);
	else if (strcmp(argv[1], "read") == 0)
		rc = helper_read(db, atol(argv[4]));
	else if (strcmp(argv[1], "export") == 0)
		rc = cvfs_export(db, argv[4], NULL, 0, &err);
	else if (strcmp(argv[1], "query") == 0)
		rc = sqlite3_exec(db, argv[4], helper_query_row, NULL, NULL);
	else if (strcmp(argv[1], "serve") == 0)
		rc = helper_serve(db, argv[4]);
	else
		rc = SQLITE_MISUSE;
	if (rc != SQLITE_OK)
		fprintf(stderr, "%s: rc %d: %s\n", argv[1], rc,
			sqlite3_errmsg(db));
	cvfs_close(&db);
	return rc == SQLITE_OK ? 0 : 1;
}
