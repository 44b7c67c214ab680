/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "hostpid.h"
#include "str.h"
#include "strnum.h"
#include "write-full.h"
#include "mail-user.h"
#include "sqlbox-storage.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* Dovecot's quota plugin (backend "count") asks every folder for its
   size (mailbox_get_metadata VIRTUAL_SIZE/PHYSICAL_SIZE) and its number
   of messages (STATUS MESSAGES).  With a key, sqlbox answers from the
   counters that SQLite keeps per folder (sqlbox-schema.c, table mailbox).

   LMTP has no key: every delivery is sealed into the spool, and neither
   the folder list nor its sizes can be read.  So that a quota still
   holds for deliveries, a keyed process writes the totals of the whole
   file (messages and bytes, two numbers) to <root>/quota-usage whenever
   a commit changes them; a locked storage then shows one folder, INBOX,
   whose size is those totals plus what waits in the spool.  The quota
   plugin compares that with the limits as usual: LMTP answers 552 5.2.2
   (or 452 4.2.2 with quota_full_tempfail) when the delivery would go
   over.  Consequences, on purpose:
   - the file says how many messages and bytes a user has, nothing else
     (no names, no folders); the size of sqlbox.db tells about as much.
     It exists only for users with a quota setting;
   - while locked, per-folder quota rules (e.g. Trash:ignore) can't be
     told apart: the limits apply to the whole mailbox;
   - the import of the spool never refuses mail: it was acknowledged. */

bool sqlbox_usage_enabled(struct sqlbox_storage *storage)
{
	return storage->usage_path != NULL;
}

static int
sqlbox_usage_totals(struct sqlbox_storage *storage, uint64_t *messages_r,
		    uint64_t *bytes_r)
{
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT ifnull(sum(messages), 0), ifnull(sum(vsize), 0)"
		" FROM mailbox");
	if (stmt == NULL)
		return -1;
	rc = sqlbox_db_step(storage, stmt);
	if (rc == SQLITE_ROW) {
		*messages_r = sqlite3_column_int64(stmt, 0);
		*bytes_r = sqlite3_column_int64(stmt, 1);
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW ? 0 : -1;
}

/* TRUE if path holds exactly line already. */
static bool sqlbox_usage_file_holds(const char *path, const char *line)
{
	char buf[64];
	size_t len = strlen(line);
	ssize_t ret;
	int fd;

	if (len >= sizeof(buf))
		return FALSE;
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return FALSE;
	ret = read(fd, buf, sizeof(buf));
	i_close_fd(&fd);
	return ret == (ssize_t)len && memcmp(buf, line, len) == 0;
}

int sqlbox_usage_file_write(struct sqlbox_storage *storage, const char *path,
			    uint64_t first, uint64_t second)
{
	const char *tmp_path, *line;
	int fd, ret = 0;

	line = t_strdup_printf("%"PRIu64" %"PRIu64"\n", first, second);
	/* Most sessions change neither number (a SELECT, a flag change):
	   a read instead of a new file, a rename and the old inode's
	   removal in the filesystem's journal, every session. */
	if (sqlbox_usage_file_holds(path, line))
		return 0;
	/* No fsync: after a crash the next writer writes it again. */
	tmp_path = t_strdup_printf("%s.%s.tmp", path, my_pid);
	fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		e_error(storage->storage.event, "open(%s) failed: %m",
			tmp_path);
		return -1;
	}
	if (write_full(fd, line, strlen(line)) < 0) {
		e_error(storage->storage.event, "write(%s) failed: %m",
			tmp_path);
		ret = -1;
	}
	i_close_fd(&fd);
	if (ret == 0 && rename(tmp_path, path) < 0) {
		e_error(storage->storage.event, "rename(%s, %s) failed: %m",
			tmp_path, path);
		ret = -1;
	}
	if (ret < 0)
		i_unlink_if_exists(tmp_path);
	return ret;
}

void sqlbox_usage_update(struct sqlbox_storage *storage)
{
	uint64_t messages, bytes;

	if (storage->usage_path == NULL || storage->db == NULL)
		return;
	T_BEGIN {
		if (sqlbox_usage_totals(storage, &messages, &bytes) < 0) {
			e_error(storage->storage.event,
				"sqlbox: quota usage not updated: %s",
				mail_storage_get_last_internal_error(
					&storage->storage, NULL));
		} else if (!storage->usage_written ||
			   messages != storage->usage_messages ||
			   bytes != storage->usage_bytes) {
			/* under the write lock (see sqlbox_db_commit): the
			   last rename carries the latest totals */
			if (sqlbox_usage_file_write(storage,
						    storage->usage_path,
						    messages, bytes) == 0) {
				storage->usage_written = TRUE;
				storage->usage_messages = messages;
				storage->usage_bytes = bytes;
			}
		}
	} T_END;
}

/* The usage file: missing = nothing stored yet (0). */
static int
sqlbox_usage_file_read(struct sqlbox_storage *storage, uint64_t *messages_r,
		       uint64_t *bytes_r)
{
	char buf[64];
	const char *const *fields;
	ssize_t ret;
	int fd;

	*messages_r = *bytes_r = 0;
	fd = open(storage->usage_path, O_RDONLY);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		mail_storage_set_critical(&storage->storage,
			"open(%s) failed: %m", storage->usage_path);
		return -1;
	}
	ret = read(fd, buf, sizeof(buf) - 1);
	i_close_fd(&fd);
	if (ret < 0) {
		mail_storage_set_critical(&storage->storage,
			"read(%s) failed: %m", storage->usage_path);
		return -1;
	}
	buf[ret] = '\0';
	fields = t_strsplit_spaces(buf, " \n");
	if (str_array_length(fields) != 2 ||
	    str_to_uint64(fields[0], messages_r) < 0 ||
	    str_to_uint64(fields[1], bytes_r) < 0) {
		/* A keyed session writes it again at its next change. */
		e_error(storage->storage.event,
			"sqlbox: %s is damaged, quota counts it as empty",
			storage->usage_path);
		*messages_r = *bytes_r = 0;
	}
	return 0;
}

int sqlbox_usage_read_locked(struct sqlbox_storage *storage,
			     uint64_t *messages_r, uint64_t *bytes_r)
{
	uint64_t spool_messages, spool_bytes;

	i_assert(storage->usage_path != NULL);
	if (sqlbox_usage_file_read(storage, messages_r, bytes_r) < 0 ||
	    sqlbox_spool_usage(storage, &spool_messages, &spool_bytes) < 0)
		return -1;
	*messages_r += spool_messages;
	*bytes_r += spool_bytes;
	return 0;
}
