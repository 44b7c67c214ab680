/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* sqlbox-dbtool: reads a user's sqlbox database outside Dovecot, for the
   tests and for whoever debugs a mailbox (never installed):

     sqlbox-dbtool KEYFILE DB masterkey        prints "raw:<64 hex>"
     sqlbox-dbtool KEYFILE DB sql 'SELECT ...' prints rows, '|'-separated
     sqlbox-dbtool KEYFILE DB exec 'UPDATE ...' the same, read-write: only
                                         on a mailbox no process has open

   The app password comes on stdin (one line): it opens a slot of KEYFILE,
   which unwraps the master key; DB is opened through cryptvfs with that
   raw key, exactly as sqlite3mc would with PRAGMA key="raw:...".
   Exit status 0 on success, 1 on any failure (a message on stderr). */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cryptvfs.h"
#include "keyring.h"

#define DBTOOL_PASSWORD_MAX 256

static int dbtool_print_row(void *context, int n, char **values,
			    char **names)
{
	(void)context;
	(void)names;
	for (int i = 0; i < n; i++)
		printf("%s%s", i > 0 ? "|" : "",
		       values[i] == NULL ? "" : values[i]);
	printf("\n");
	return 0;
}

static struct kr_keys *dbtool_keys(const char *keyfile)
{
	char password[DBTOOL_PASSWORD_MAX];
	struct kr_keyfile *kf;
	struct kr_keys *keys = NULL;
	struct kr_error err;

	if (fgets(password, sizeof(password), stdin) == NULL) {
		fprintf(stderr, "no password on stdin\n");
		return NULL;
	}
	password[strcspn(password, "\r\n")] = '\0';
	if (kr_keyfile_read(keyfile, &kf, &err) <= 0) {
		fprintf(stderr, "%s: %s\n", keyfile, err.text);
		sodium_memzero(password, sizeof(password));
		return NULL;
	}
	if (kr_slot_unlock(kf, password, NULL, &keys, &err) != 1)
		fprintf(stderr, "%s: %s\n", keyfile, err.text);
	sodium_memzero(password, sizeof(password));
	kr_keyfile_free(&kf);
	return keys;
}

int main(int argc, char *argv[])
{
	char hex[CVFS_KEY_BYTES * 2 + 1];
	struct kr_keys *keys;
	struct cvfs_error cerr;
	sqlite3 *db;
	char *errmsg = NULL;
	int ret = 0;

	bool writable;

	if (argc < 4 ||
	    (strcmp(argv[3], "masterkey") == 0 && argc != 4) ||
	    (strcmp(argv[3], "masterkey") != 0 && argc != 5) ||
	    (strcmp(argv[3], "masterkey") != 0 &&
	     strcmp(argv[3], "sql") != 0 && strcmp(argv[3], "exec") != 0)) {
		fprintf(stderr, "usage: sqlbox-dbtool KEYFILE DB masterkey|sql SQL|exec SQL\n");
		return 1;
	}
	writable = strcmp(argv[3], "exec") == 0;
	if ((keys = dbtool_keys(argv[1])) == NULL)
		return 1;
	if (strcmp(argv[3], "masterkey") == 0) {
		sodium_bin2hex(hex, sizeof(hex), keys->master_key,
			       sizeof(keys->master_key));
		printf("raw:%s\n", hex);
		sodium_memzero(hex, sizeof(hex));
		kr_keys_free(&keys);
		return 0;
	}
	if (cvfs_open_v2(argv[2], &db, writable ? SQLITE_OPEN_READWRITE :
			 SQLITE_OPEN_READONLY, keys->master_key,
			 CVFS_KEY_BYTES, &cerr) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", argv[2], cerr.text);
		kr_keys_free(&keys);
		return 1;
	}
	kr_keys_free(&keys);
	if (sqlite3_exec(db, argv[4], dbtool_print_row, NULL,
			 &errmsg) != SQLITE_OK) {
		fprintf(stderr, "%s\n", errmsg);
		sqlite3_free(errmsg);
		ret = 1;
	}
	cvfs_close(&db);
	return ret;
}
