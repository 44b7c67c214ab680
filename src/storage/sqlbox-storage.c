/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "guid.h"
#include "ioloop.h"
#include "mail-copy.h"
#include "mail-index-modseq.h"
#include "mailbox-watch.h"
#include "index-mail.h"
#include "mail-user.h"
#include "sqlbox-storage.h"

#include "keyring.h"

#include <fcntl.h>
#include <unistd.h>

extern struct mailbox sqlbox_mailbox;

static struct event_category event_category_sqlbox = {
	.name = "sqlbox",
	.parent = &event_category_storage,
};

static struct mail_storage *sqlbox_storage_alloc(void)
{
	struct sqlbox_storage *storage;
	pool_t pool;

	pool = pool_alloconly_create("sqlbox storage", 1024);
	storage = p_new(pool, struct sqlbox_storage, 1);
	storage->storage = sqlbox_storage;
	storage->storage.pool = pool;
	return &storage->storage;
}

static int
sqlbox_storage_create(struct mail_storage *_storage,
		      struct mail_namespace *ns, const char **error_r)
{
	struct sqlbox_storage *storage = SQLBOX_STORAGE(_storage);
	const char *root = ns->list->set.root_dir;
	const char *quota;

	/* Only paths here: the key is checked at mailbox open, so that a
	   locked mailbox gives a clear error instead of a failed login. */
	if (root == NULL || root[0] != '/') {
		*error_r = "sqlbox: mail_location needs an absolute path "
			"(sqlbox:~/mail)";
		return -1;
	}
	storage->root_dir = p_strdup(_storage->pool, root);
	storage->db_path = p_strconcat(_storage->pool, root, "/",
				       SQLBOX_DB_FNAME, NULL);
	storage->spool_path = p_strconcat(_storage->pool, root, "/",
					  SQLBOX_SPOOL_FNAME, NULL);
	storage->quarantine_path = p_strconcat(_storage->pool, root, "/",
					       SQLBOX_QUARANTINE_FNAME, NULL);
	/* Answered by the body's cache row (sqlbox-mail.c) without the
	   body: index-mail must not plan to parse the body for them. */
	_storage->nonbody_access_fields |= MAIL_FETCH_IMAP_BODY |
		MAIL_FETCH_IMAP_BODYSTRUCTURE | MAIL_FETCH_IMAP_ENVELOPE;
	quota = mail_user_plugin_getenv(_storage->user, "quota");
	if (quota != NULL && quota[0] != '\0') {
		storage->usage_path = p_strconcat(_storage->pool, root, "/",
						  SQLBOX_USAGE_FNAME, NULL);
		/* The file follows every commit (sqlbox-usage.c). */
		storage->db_pre_commit = sqlbox_usage_update;
	}
	return 0;
}

static void sqlbox_storage_destroy(struct mail_storage *_storage)
{
	struct sqlbox_storage *storage = SQLBOX_STORAGE(_storage);

	/* the saved mail not indexed yet, before fts-usage counts it */
	sqlbox_fts_storage_deinit(storage);
	sqlbox_fts_usage_update(storage);
	sqlbox_db_close(storage);
	kr_keys_free(&storage->keys);
	index_storage_destroy(_storage);
}

static void
sqlbox_storage_get_list_settings(const struct mail_namespace *ns ATTR_UNUSED,
				 struct mailbox_list_settings *set)
{
	set->layout = SQLBOX_LIST_NAME;
}

static struct mailbox *
sqlbox_mailbox_alloc(struct mail_storage *storage, struct mailbox_list *list,
		     const char *vname, enum mailbox_flags flags)
{
	struct sqlbox_mailbox *mbox;
	pool_t pool;

	/* The index lives in memory only, whatever the configuration says:
	   nothing readable may reach the disk. */
	flags |= MAILBOX_FLAG_NO_INDEX_FILES;

	pool = pool_alloconly_create("sqlbox mailbox", 1024 * 3);
	mbox = p_new(pool, struct sqlbox_mailbox, 1);
	mbox->box = sqlbox_mailbox;
	mbox->box.pool = pool;
	mbox->box.storage = storage;
	mbox->box.list = list;
	mbox->box.mail_vfuncs = &sqlbox_mail_vfuncs;
	index_storage_mailbox_alloc(&mbox->box, vname, flags,
				    MAIL_INDEX_PREFIX);
	mbox->storage = SQLBOX_STORAGE(storage);
	return &mbox->box;
}

/* A delivery without a key (LMTP): INBOX, or the folder Sieve's fileinto
   names, which can't be looked up without the key.  Its mail is sealed
   into the spool with the folder's name; the import creates the folder
   if it is missing (fileinto :create or not). */
static bool sqlbox_mailbox_may_spool(struct sqlbox_mailbox *mbox)
{
	return mbox->storage->locked &&
		(mbox->box.flags & MAILBOX_FLAG_POST_SESSION) != 0;
}

static int
sqlbox_mailbox_exists(struct mailbox *box, bool auto_boxes ATTR_UNUSED,
		      enum mailbox_existence *existence_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);
	int ret;

	if (sqlbox_storage_open(mbox->storage) < 0) {
		if (sqlbox_mailbox_may_spool(mbox)) {
			*existence_r = MAILBOX_EXISTENCE_SELECT;
			return 0;
		}
		return -1;
	}
	ret = sqlbox_db_mailbox_lookup(mbox->storage, box->name, NULL, NULL,
				       NULL);
	if (ret < 0)
		return -1;
	*existence_r = ret > 0 ? MAILBOX_EXISTENCE_SELECT :
		MAILBOX_EXISTENCE_NONE;
	return 0;
}

static int sqlbox_mailbox_open(struct mailbox *box)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);

	if (sqlbox_mailbox_refresh_row(mbox) < 0) {
		if (!sqlbox_mailbox_may_spool(mbox)) {
			if (mbox->storage->locked)
				e_error(box->event, "%s", SQLBOX_ERRSTR_LOCKED);
			return -1;
		}
		/* LMTP without a password: an empty in-memory INBOX whose
		   saves are sealed into the spool. */
		mbox->spool_only = TRUE;
		mbox->uid_validity = 1;
		mail_generate_guid_128_hash(box->name, mbox->guid);
	}
	if (index_storage_mailbox_open(box, FALSE) < 0)
		return -1;
	/* Modseqs are permanent here: SQLite keeps them. */
	mail_index_modseq_enable(box->index);
	return 0;
}

static int
sqlbox_mailbox_create(struct mailbox *box, const struct mailbox_update *update,
		      bool directory ATTR_UNUSED)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);

	/* No directories here: a folder is a row, also for "foo/". */
	if (sqlbox_storage_open(mbox->storage) < 0)
		return -1;
	if (sqlbox_db_mailbox_create(mbox->storage, box->name, update,
				     &mbox->id) < 0)
		return -1;
	/* Configured flags (mailbox { special_use }) are kept with the
	   folder, so that a backup or export describes itself. */
	if (box->set != NULL && box->set->special_use[0] != '\0') {
		sqlite3_stmt *stmt = sqlbox_db_prepare(mbox->storage,
			"UPDATE mailbox SET special_use = ? WHERE id = ?");

		if (stmt == NULL)
			return -1;
		sqlite3_bind_text(stmt, 1, box->set->special_use, -1,
				  SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, mbox->id);
		if (sqlbox_db_step(mbox->storage, stmt) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
		sqlite3_finalize(stmt);
	}
	return 0;
}

static int
sqlbox_mailbox_update(struct mailbox *box, const struct mailbox_update *update)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);

	if (sqlbox_mailbox_refresh_row(mbox) < 0)
		return -1;
	if (update->uid_validity != 0 &&
	    (sqlbox_db_exec_args(mbox->storage,
			"UPDATE mailbox SET uidvalidity = ? WHERE id = ?", 2,
			(int64_t)update->uid_validity, mbox->id) < 0 ||
	     sqlbox_db_uidvalidity_used(mbox->storage,
					update->uid_validity) < 0))
		return -1;
	if (update->min_next_uid != 0 &&
	    sqlbox_db_exec_args(mbox->storage,
			"UPDATE mailbox SET uidnext = max(uidnext, ?)"
			" WHERE id = ?", 2,
			(int64_t)update->min_next_uid, mbox->id) < 0)
		return -1;
	if (update->min_highest_modseq != 0 &&
	    sqlbox_db_exec_args(mbox->storage,
			"UPDATE mailbox SET highestmodseq ="
			" max(highestmodseq, ?) WHERE id = ?", 2,
			(int64_t)update->min_highest_modseq, mbox->id) < 0)
		return -1;
	if (!guid_128_is_empty(update->mailbox_guid)) {
		sqlite3_stmt *stmt = sqlbox_db_prepare(mbox->storage,
			"UPDATE mailbox SET guid = ? WHERE id = ?");

		if (stmt == NULL)
			return -1;
		sqlite3_bind_blob(stmt, 1, update->mailbox_guid,
				  GUID_128_SIZE, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, mbox->id);
		if (sqlbox_db_step(mbox->storage, stmt) < 0) {
			sqlite3_finalize(stmt);
			return -1;
		}
		sqlite3_finalize(stmt);
	}
	return box->opened ? sqlbox_sync(mbox) : 0;
}

static int sqlbox_mailbox_delete(struct mailbox *box)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);

	if (sqlbox_mailbox_refresh_row(mbox) < 0)
		return -1;
	if (sqlbox_db_mailbox_delete(mbox->storage, mbox->id) < 0)
		return -1;
	mailbox_set_deleted(box);
	return 0;
}

static int sqlbox_mailbox_rename(struct mailbox *src, struct mailbox *dest)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(src);

	if (dest->storage != src->storage) {
		mail_storage_set_error(src->storage, MAIL_ERROR_NOTPOSSIBLE,
				       "Can't rename to another storage");
		return -1;
	}
	/* A \Noselect parent has no row of its own: its children move. */
	if (sqlbox_storage_open(mbox->storage) < 0)
		return -1;
	if (strcmp(src->name, "INBOX") == 0)
		return sqlbox_db_inbox_rename(mbox->storage, dest->name);
	return sqlbox_db_mailbox_rename(mbox->storage, src->name, dest->name);
}

/* What a folder's row answers without opening it (building the index
   from SQLite): STATUS of other folders, NOTIFY, the quota plugin. */
#define SQLBOX_ROW_STATUS_ITEMS \
	(STATUS_MESSAGES | STATUS_UIDNEXT | STATUS_UIDVALIDITY | \
	 STATUS_UNSEEN | STATUS_HIGHESTMODSEQ)

/* A locked storage (LMTP, no key) shows INBOX with the quota usage
   (sqlbox-usage.c).  Returns 1 if it did, 0 if this isn't that case. */
static int
sqlbox_mailbox_locked_usage(struct sqlbox_mailbox *mbox,
			    uint64_t *messages_r, uint64_t *bytes_r)
{
	struct sqlbox_storage *storage = mbox->storage;

	if (!storage->locked || !sqlbox_usage_enabled(storage) ||
	    strcmp(mbox->box.name, "INBOX") != 0)
		return 0;
	return sqlbox_usage_read_locked(storage, messages_r, bytes_r) < 0 ?
		-1 : 1;
}

static int
sqlbox_mailbox_status_row(struct sqlbox_mailbox *mbox,
			  enum mailbox_status_items items,
			  struct mailbox_status *status_r)
{
	struct sqlbox_storage *storage = mbox->storage;
	uint64_t messages, bytes;
	sqlite3_stmt *stmt;
	int rc, ret;

	if (sqlbox_storage_open(storage) < 0) {
		if (items != STATUS_MESSAGES)
			return -1;
		ret = sqlbox_mailbox_locked_usage(mbox, &messages, &bytes);
		if (ret > 0)
			status_r->messages = messages;
		return ret > 0 ? 1 : -1;
	}
	/* The folder's mail may still be in the spool: the sync imports
	   it. */
	if (sqlbox_spool_pending(storage))
		return 0;
	stmt = sqlbox_db_prepare(storage,
		"SELECT uidvalidity, uidnext, highestmodseq, messages, unseen,"
		" first_recent_uid FROM mailbox WHERE name = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, mbox->box.name, -1, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	if (rc == SQLITE_ROW) {
		status_r->uidvalidity = sqlite3_column_int64(stmt, 0);
		status_r->uidnext = sqlite3_column_int64(stmt, 1);
		status_r->messages = sqlite3_column_int64(stmt, 3);
		status_r->first_recent_uid = sqlite3_column_int64(stmt, 5);
		if ((items & STATUS_UNSEEN) != 0)
			status_r->unseen = sqlite3_column_int64(stmt, 4);
		if ((items & STATUS_HIGHESTMODSEQ) != 0) {
			status_r->highest_modseq =
				I_MAX(sqlite3_column_int64(stmt, 2), 1);
		}
	}
	sqlite3_finalize(stmt);
	if (rc == SQLITE_DONE) {
		mail_storage_set_error(mbox->box.storage, MAIL_ERROR_NOTFOUND,
				       T_MAIL_ERR_MAILBOX_NOT_FOUND(mbox->box.vname));
		return -1;
	}
	return rc == SQLITE_ROW ? 1 : -1;
}

static int
sqlbox_mailbox_get_status(struct mailbox *box, enum mailbox_status_items items,
			  struct mailbox_status *status_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);
	int ret;

	if (items != 0 && !box->opened &&
	    (items & ENUM_NEGATE(SQLBOX_ROW_STATUS_ITEMS)) == 0) {
		T_BEGIN {
			ret = sqlbox_mailbox_status_row(mbox, items, status_r);
		} T_END;
		if (ret != 0)
			return ret < 0 ? -1 : 0;
	}
	if (index_storage_get_status(box, items, status_r) < 0)
		return -1;
	/* The index is in memory, but SQLite keeps every modseq. */
	status_r->nonpermanent_modseqs = FALSE;
	return 0;
}

/* The folder's size from its row: the sum of its stored bodies (CRLF,
   so physical = virtual), never read from the bodies. */
static int sqlbox_mailbox_get_size(struct sqlbox_mailbox *mbox,
				   uoff_t *size_r)
{
	struct sqlbox_storage *storage = mbox->storage;
	uint64_t messages, bytes;
	sqlite3_stmt *stmt;
	int rc, ret;

	if (sqlbox_storage_open(storage) < 0) {
		ret = sqlbox_mailbox_locked_usage(mbox, &messages, &bytes);
		if (ret > 0)
			*size_r = bytes;
		return ret > 0 ? 0 : -1;
	}
	stmt = sqlbox_db_prepare(storage,
		"SELECT vsize FROM mailbox WHERE name = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_text(stmt, 1, mbox->box.name, -1, SQLITE_STATIC);
	rc = sqlbox_db_step(storage, stmt);
	if (rc == SQLITE_ROW)
		*size_r = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	if (rc == SQLITE_DONE) {
		mail_storage_set_error(mbox->box.storage, MAIL_ERROR_NOTFOUND,
				       T_MAIL_ERR_MAILBOX_NOT_FOUND(mbox->box.vname));
		return -1;
	}
	return rc == SQLITE_ROW ? 0 : -1;
}

static int
sqlbox_mailbox_get_metadata(struct mailbox *box,
			    enum mailbox_metadata_items items,
			    struct mailbox_metadata *metadata_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);
	const enum mailbox_metadata_items size_items =
		MAILBOX_METADATA_PHYSICAL_SIZE | MAILBOX_METADATA_VIRTUAL_SIZE;
	uoff_t size;
	int ret;

	if ((items & size_items) != 0) {
		if (box->opened && mbox->spool_only)
			size = 0;
		else {
			T_BEGIN {
				ret = sqlbox_mailbox_get_size(mbox, &size);
			} T_END;
			if (ret < 0)
				return -1;
		}
		metadata_r->physical_size = metadata_r->virtual_size = size;
		items &= ENUM_NEGATE(size_items);
	}
	if ((items & MAILBOX_METADATA_GUID) != 0) {
		if (!box->opened && sqlbox_mailbox_refresh_row(mbox) < 0)
			return -1;
		memcpy(metadata_r->guid, mbox->guid, GUID_128_SIZE);
		items &= ENUM_NEGATE(MAILBOX_METADATA_GUID);
	}
	if (items == 0)
		return 0;
	return index_mailbox_get_metadata(box, items, metadata_r);
}

static bool sqlbox_mailbox_is_inconsistent(struct mailbox *box)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);

	return mbox->inconsistent || index_storage_is_inconsistent(box);
}

static void sqlbox_notify_missed(struct sqlbox_mailbox *mbox)
{
	struct mailbox *box = &mbox->box;

	timeout_remove(&mbox->to_missed);
	box->notify_callback(box, box->notify_context);
}

/* TRUE if the folder changed in SQLite after this process last synced
   it (or LMTP mail waits in the spool). */
static bool sqlbox_mailbox_changed(struct sqlbox_mailbox *mbox)
{
	uint64_t highest;
	uint32_t uid_next;

	if (mbox->spool_only || mbox->storage->db == NULL)
		return FALSE;
	if (sqlbox_spool_pending(mbox->storage))
		return TRUE;
	/* Outside a transaction this reads the last commit. */
	if (sqlbox_db_mailbox_counters(mbox->storage, mbox->id, &highest,
				       &uid_next) < 0)
		return TRUE;
	return highest != mbox->synced_modseq;
}

static void sqlbox_notify_changes(struct mailbox *box)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);
	int fd;

	timeout_remove(&mbox->to_missed);
	if (box->notify_callback == NULL) {
		mailbox_watch_remove_all(box);
		return;
	}
	/* Other processes' commits land in the WAL; LMTP writes the spool. */
	mailbox_watch_add(box, t_strconcat(mbox->storage->db_path, "-wal",
					   NULL));
	mailbox_watch_add(box, mbox->storage->db_path);
	/* inotify needs the file to exist before LMTP first writes (mail
	   for any folder: Sieve files it). */
	fd = open(mbox->storage->spool_path, O_WRONLY | O_CREAT | O_APPEND,
		  0600);
	if (fd >= 0)
		i_close_fd(&fd);
	mailbox_watch_add(box, mbox->storage->spool_path);
	/* imap stops watching during every command and starts again a
	   second after it (NOTIFY), and every folder shares the -wal: a
	   change in that gap would wait for the next one.  Report it. */
	if (sqlbox_mailbox_changed(mbox)) {
		mbox->to_missed = timeout_add_short(0, sqlbox_notify_missed,
						    mbox);
	}
}

/* A mailbox transaction's body reads (a FETCH's) end with it. */
static int
sqlbox_transaction_commit(struct mailbox_transaction_context *t,
			  struct mail_transaction_commit_changes *changes_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(t->box);

	sqlbox_db_body_reads_end(mbox->storage);
	return index_transaction_commit(t, changes_r);
}

static void sqlbox_transaction_rollback(struct mailbox_transaction_context *t)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(t->box);

	sqlbox_db_body_reads_end(mbox->storage);
	index_transaction_rollback(t);
}

static void sqlbox_mailbox_close(struct mailbox *box)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);

	sqlbox_db_body_reads_end(mbox->storage);
	timeout_remove(&mbox->to_missed);
	index_storage_mailbox_close(box);
}

struct mail_storage sqlbox_storage = {
	.name = SQLBOX_STORAGE_NAME,
	.class_flags = MAIL_STORAGE_CLASS_FLAG_NO_ROOT |
		MAIL_STORAGE_CLASS_FLAG_HAVE_MAIL_GUIDS |
		MAIL_STORAGE_CLASS_FLAG_HAVE_MAIL_SAVE_GUIDS,
	.event_category = &event_category_sqlbox,

	.v = {
		.alloc = sqlbox_storage_alloc,
		.create = sqlbox_storage_create,
		.destroy = sqlbox_storage_destroy,
		.get_list_settings = sqlbox_storage_get_list_settings,
		.mailbox_alloc = sqlbox_mailbox_alloc,
	}
};

struct mailbox sqlbox_mailbox = {
	.v = {
		.is_readonly = index_storage_is_readonly,
		.enable = index_storage_mailbox_enable,
		.exists = sqlbox_mailbox_exists,
		.open = sqlbox_mailbox_open,
		.close = sqlbox_mailbox_close,
		.free = index_storage_mailbox_free,
		.create_box = sqlbox_mailbox_create,
		.update_box = sqlbox_mailbox_update,
		.delete_box = sqlbox_mailbox_delete,
		.rename_box = sqlbox_mailbox_rename,
		.get_status = sqlbox_mailbox_get_status,
		.get_metadata = sqlbox_mailbox_get_metadata,
		.set_subscribed = index_storage_set_subscribed,
		.attribute_set = sqlbox_attribute_set,
		.attribute_get = sqlbox_attribute_get,
		.attribute_iter_init = sqlbox_attribute_iter_init,
		.attribute_iter_next = sqlbox_attribute_iter_next,
		.attribute_iter_deinit = sqlbox_attribute_iter_deinit,
		.list_index_has_changed = NULL,
		.list_index_update_sync = NULL,
		.sync_init = sqlbox_storage_sync_init,
		.sync_next = index_mailbox_sync_next,
		.sync_deinit = index_mailbox_sync_deinit,
		.sync_notify = NULL,
		.notify_changes = sqlbox_notify_changes,
		.transaction_begin = index_transaction_begin,
		.transaction_commit = sqlbox_transaction_commit,
		.transaction_rollback = sqlbox_transaction_rollback,
		.get_private_flags_mask = NULL,
		.mail_alloc = sqlbox_mail_alloc,
		.search_init = sqlbox_fts_search_init,
		.search_deinit = sqlbox_fts_search_deinit,
		.search_next_nonblock = index_storage_search_next_nonblock,
		.search_next_update_seq = sqlbox_fts_search_next_update_seq,
		.search_next_match_mail = index_storage_search_next_match_mail,
		.save_alloc = sqlbox_save_alloc,
		.save_begin = sqlbox_save_begin,
		.save_continue = sqlbox_save_continue,
		.save_finish = sqlbox_save_finish,
		.save_cancel = sqlbox_save_cancel,
		.copy = sqlbox_copy,
		.transaction_save_commit_pre = sqlbox_transaction_save_commit_pre,
		.transaction_save_commit_post = sqlbox_transaction_save_commit_post,
		.transaction_save_rollback = sqlbox_transaction_save_rollback,
		.is_inconsistent = sqlbox_mailbox_is_inconsistent,
	}
};
