/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "mail-user.h"
#include "sqlbox-storage.h"

/* Mailbox list notifications (IMAP NOTIFY, RFC 5465) for sqlbox.  Stock
   Dovecot reads them from the mailbox list index's transaction log; here
   every folder is a row in SQLite whose STATUS numbers are kept in the
   row itself (uidvalidity, uidnext, highestmodseq and the counters
   messages and unseen).  So a notify context keeps a snapshot of those
   rows and of the subscriptions, and each round of notify_next() reads
   them again and reports the differences: folders created, deleted or
   renamed (a renamed row keeps its id), subscription changes, and per
   folder new mail, expunges, \Seen changes and other flag changes.

   Another process's commit shows up as a write to the -wal file (or the
   database file after a checkpoint), LMTP's delivery as a write to the
   spool: the directory that holds them is watched with inotify
   (io_add_notify), with mailbox_idle_check_interval as a fallback, and
   a change is reported after NOTIFY_DELAY_MSECS so that a burst becomes
   one round.  The directory, not the files: the selected mailbox
   watches the files themselves (sqlbox_notify_changes), and removing
   an inotify watch removes it for every io on the same inode, which
   happens at each command.  Mail waiting in the spool is imported
   first, as opening INBOX would. */

#define SQLBOX_NOTIFY_DELAY_MSECS 500

struct sqlbox_notify_box {
	int64_t id;
	const char *name;
	guid_128_t guid;
	uint32_t uidvalidity, uidnext;
	uint32_t messages, unseen;
	uint64_t highest_modseq;
};
ARRAY_DEFINE_TYPE(sqlbox_notify_box, struct sqlbox_notify_box);

struct sqlbox_list_notify {
	struct mailbox_list_notify notify;
	struct sqlbox_storage *storage;

	/* The state reported so far: folders sorted by id, subscriptions
	   by name, all from snapshot_pool. */
	pool_t snapshot_pool;
	ARRAY_TYPE(sqlbox_notify_box) boxes;
	ARRAY_TYPE(const_string) subscriptions;

	/* This round's records (strings from rec_pool). */
	pool_t rec_pool;
	ARRAY(struct mailbox_list_notify_rec) recs;
	unsigned int rec_idx;
	bool round_started:1;
	bool round_failed:1;

	mailbox_list_notify_callback_t *wait_callback;
	void *wait_context;
	struct io *io_dir;
	struct timeout *to_wait, *to_notify;
};

#define SQLBOX_LIST_NOTIFY(n) container_of(n, struct sqlbox_list_notify, notify)

static int sqlbox_notify_box_cmp(const struct sqlbox_notify_box *b1,
				 const struct sqlbox_notify_box *b2)
{
	return b1->id < b2->id ? -1 : (b1->id > b2->id ? 1 : 0);
}

static int
sqlbox_notify_read_boxes(struct sqlbox_list_notify *snotify, pool_t pool,
			 ARRAY_TYPE(sqlbox_notify_box) *boxes)
{
	struct sqlbox_storage *storage = snotify->storage;
	struct sqlbox_notify_box *box;
	sqlite3_stmt *stmt;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT id, name, guid, uidvalidity, uidnext, highestmodseq,"
		" messages, unseen FROM mailbox ORDER BY id");
	if (stmt == NULL)
		return -1;
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		box = array_append_space(boxes);
		box->id = sqlite3_column_int64(stmt, 0);
		box->name = p_strdup(pool,
			(const char *)sqlite3_column_text(stmt, 1));
		if (sqlite3_column_bytes(stmt, 2) == GUID_128_SIZE) {
			memcpy(box->guid, sqlite3_column_blob(stmt, 2),
			       GUID_128_SIZE);
		}
		box->uidvalidity = sqlite3_column_int64(stmt, 3);
		box->uidnext = sqlite3_column_int64(stmt, 4);
		box->highest_modseq = sqlite3_column_int64(stmt, 5);
		box->messages = sqlite3_column_int64(stmt, 6);
		box->unseen = sqlite3_column_int64(stmt, 7);
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

static int
sqlbox_notify_read_subscriptions(struct sqlbox_list_notify *snotify,
				 pool_t pool, ARRAY_TYPE(const_string) *names)
{
	struct sqlbox_storage *storage = snotify->storage;
	const char *name;
	sqlite3_stmt *stmt;
	int rc;

	if ((snotify->notify.mask & (MAILBOX_LIST_NOTIFY_SUBSCRIBE |
				     MAILBOX_LIST_NOTIFY_UNSUBSCRIBE)) == 0)
		return 0;
	stmt = sqlbox_db_prepare(storage,
		"SELECT name FROM subscription ORDER BY name");
	if (stmt == NULL)
		return -1;
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		name = p_strdup(pool,
			(const char *)sqlite3_column_text(stmt, 0));
		array_push_back(names, &name);
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

static struct mailbox_list_notify_rec *
sqlbox_notify_rec_add(struct sqlbox_list_notify *snotify,
		      const struct sqlbox_notify_box *box, const char *name,
		      enum mailbox_list_notify_event events)
{
	struct mailbox_list *list = snotify->notify.list;
	struct mailbox_list_notify_rec *rec;

	rec = array_append_space(&snotify->recs);
	rec->events = events;
	rec->storage_name = p_strdup(snotify->rec_pool, name);
	rec->vname = p_strdup(snotify->rec_pool,
			      mailbox_list_get_vname(list, name));
	if (box != NULL)
		memcpy(rec->guid, box->guid, GUID_128_SIZE);
	return rec;
}

/* What changed in a folder that was there before (old) and now (new);
   old = NULL: a new folder, everything it holds is news. */
static enum mailbox_list_notify_event
sqlbox_notify_status_events(const struct sqlbox_notify_box *old,
			    const struct sqlbox_notify_box *new)
{
	enum mailbox_list_notify_event events = 0;

	if (old == NULL) {
		if (new->uidnext <= 1)
			return 0;
		events = MAILBOX_LIST_NOTIFY_UIDVALIDITY |
			MAILBOX_LIST_NOTIFY_APPENDS;
		if (new->messages < new->uidnext - 1)
			events |= MAILBOX_LIST_NOTIFY_EXPUNGES;
		if (new->unseen != new->messages)
			events |= MAILBOX_LIST_NOTIFY_SEEN_CHANGES;
		return events | MAILBOX_LIST_NOTIFY_MODSEQ_CHANGES;
	}
	if (old->uidvalidity != new->uidvalidity)
		events |= MAILBOX_LIST_NOTIFY_UIDVALIDITY;
	if (old->uidnext != new->uidnext)
		events |= MAILBOX_LIST_NOTIFY_APPENDS;
	/* Every new UID is one message: fewer than that means some left. */
	if (new->uidnext < old->uidnext ||
	    (uint64_t)new->messages <
	    (uint64_t)old->messages + (new->uidnext - old->uidnext))
		events |= MAILBOX_LIST_NOTIFY_EXPUNGES;
	if (old->unseen != new->unseen)
		events |= MAILBOX_LIST_NOTIFY_SEEN_CHANGES;
	if (old->highest_modseq < new->highest_modseq)
		events |= MAILBOX_LIST_NOTIFY_MODSEQ_CHANGES;
	return events;
}

static void
sqlbox_notify_diff_boxes(struct sqlbox_list_notify *snotify,
			 const ARRAY_TYPE(sqlbox_notify_box) *new_boxes)
{
	const struct sqlbox_notify_box *old, *new;
	struct mailbox_list_notify_rec *rec;
	enum mailbox_list_notify_event events;
	unsigned int i = 0, j = 0, old_count, new_count;

	old = array_get(&snotify->boxes, &old_count);
	new = array_get(new_boxes, &new_count);
	/* Both sorted by id: a merge.  Deletes, renames and creates come
	   as records of their own, status changes after them. */
	while (i < old_count || j < new_count) {
		if (j == new_count ||
		    (i < old_count && old[i].id < new[j].id)) {
			(void)sqlbox_notify_rec_add(snotify, &old[i],
				old[i].name, MAILBOX_LIST_NOTIFY_DELETE);
			i++;
		} else if (i == old_count || new[j].id < old[i].id) {
			(void)sqlbox_notify_rec_add(snotify, &new[j],
				new[j].name, MAILBOX_LIST_NOTIFY_CREATE);
			events = sqlbox_notify_status_events(NULL, &new[j]);
			if (events != 0) {
				(void)sqlbox_notify_rec_add(snotify, &new[j],
					new[j].name, events);
			}
			j++;
		} else {
			if (strcmp(old[i].name, new[j].name) != 0) {
				rec = sqlbox_notify_rec_add(snotify, &new[j],
					new[j].name, MAILBOX_LIST_NOTIFY_RENAME);
				rec->old_vname = p_strdup(snotify->rec_pool,
					mailbox_list_get_vname(
						snotify->notify.list,
						old[i].name));
			}
			events = sqlbox_notify_status_events(&old[i], &new[j]);
			if (events != 0) {
				(void)sqlbox_notify_rec_add(snotify, &new[j],
					new[j].name, events);
			}
			i++; j++;
		}
	}
}

static void
sqlbox_notify_diff_subscriptions(struct sqlbox_list_notify *snotify,
				 const ARRAY_TYPE(const_string) *new_names)
{
	const char *const *old, *const *new;
	unsigned int i = 0, j = 0, old_count, new_count;
	int cmp;

	old = array_get(&snotify->subscriptions, &old_count);
	new = array_get(new_names, &new_count);
	while (i < old_count || j < new_count) {
		if (j == new_count)
			cmp = -1;
		else if (i == old_count)
			cmp = 1;
		else
			cmp = strcmp(old[i], new[j]);
		if (cmp < 0) {
			(void)sqlbox_notify_rec_add(snotify, NULL, old[i++],
				MAILBOX_LIST_NOTIFY_UNSUBSCRIBE);
		} else if (cmp > 0) {
			(void)sqlbox_notify_rec_add(snotify, NULL, new[j++],
				MAILBOX_LIST_NOTIFY_SUBSCRIBE);
		} else {
			i++; j++;
		}
	}
}

/* Reads the rows into a new snapshot; with diff, this round's records
   are the differences to the previous one. */
static int sqlbox_notify_refresh(struct sqlbox_list_notify *snotify,
				 bool diff)
{
	ARRAY_TYPE(sqlbox_notify_box) boxes;
	ARRAY_TYPE(const_string) subscriptions;
	pool_t pool;
	int ret;

	pool = pool_alloconly_create("sqlbox notify snapshot", 1024);
	p_array_init(&boxes, pool, 16);
	p_array_init(&subscriptions, pool, 16);
	T_BEGIN {
		ret = sqlbox_notify_read_boxes(snotify, pool, &boxes) < 0 ||
			sqlbox_notify_read_subscriptions(snotify, pool,
							 &subscriptions) < 0 ?
			-1 : 0;
	} T_END;
	if (ret < 0) {
		pool_unref(&pool);
		return -1;
	}
	array_sort(&boxes, sqlbox_notify_box_cmp);
	if (diff) T_BEGIN {
		sqlbox_notify_diff_boxes(snotify, &boxes);
		sqlbox_notify_diff_subscriptions(snotify, &subscriptions);
	} T_END;
	pool_unref(&snotify->snapshot_pool);
	snotify->snapshot_pool = pool;
	snotify->boxes = boxes;
	snotify->subscriptions = subscriptions;
	return 0;
}

int sqlbox_list_notify_init(struct mailbox_list *list,
			enum mailbox_list_notify_event mask,
			struct mailbox_list_notify **notify_r)
{
	struct sqlbox_storage *storage = SQLBOX_STORAGE(list->ns->storage);
	struct sqlbox_list_notify *snotify;

	/* Locked (no key): nothing to read, so nothing to notify. */
	if (sqlbox_storage_open(storage) < 0)
		return -1;
	snotify = i_new(struct sqlbox_list_notify, 1);
	snotify->notify.list = list;
	snotify->notify.mask = mask;
	snotify->storage = storage;
	snotify->snapshot_pool =
		pool_alloconly_create("sqlbox notify snapshot", 256);
	snotify->rec_pool = pool_alloconly_create("sqlbox notify recs", 1024);
	i_array_init(&snotify->recs, 16);
	if (sqlbox_notify_refresh(snotify, FALSE) < 0) {
		e_error(list->ns->user->event,
			"sqlbox: NOTIFY can't read the folders: %s",
			mail_storage_get_last_internal_error(&storage->storage,
							     NULL));
		pool_unref(&snotify->snapshot_pool);
		pool_unref(&snotify->rec_pool);
		array_free(&snotify->recs);
		i_free(snotify);
		return -1;
	}
	*notify_r = &snotify->notify;
	return 0;
}

void sqlbox_list_notify_deinit(struct mailbox_list_notify *notify)
{
	struct sqlbox_list_notify *snotify = SQLBOX_LIST_NOTIFY(notify);

	io_remove(&snotify->io_dir);
	timeout_remove(&snotify->to_wait);
	timeout_remove(&snotify->to_notify);
	pool_unref(&snotify->snapshot_pool);
	pool_unref(&snotify->rec_pool);
	array_free(&snotify->recs);
	i_free(snotify);
}

static void sqlbox_notify_round_begin(struct sqlbox_list_notify *snotify)
{
	struct sqlbox_storage *storage = snotify->storage;

	snotify->round_started = TRUE;
	snotify->round_failed = FALSE;
	/* LMTP's mail counts once it is in INBOX's rows. */
	if (sqlbox_spool_pending(storage) && storage->txn_depth == 0 &&
	    sqlbox_spool_import(storage) < 0) {
		e_error(storage->storage.event,
			"sqlbox: spool import failed: %s",
			mail_storage_get_last_internal_error(&storage->storage,
							     NULL));
	}
	if (sqlbox_notify_refresh(snotify, TRUE) < 0) {
		e_error(storage->storage.event,
			"sqlbox: NOTIFY can't read the folders: %s",
			mail_storage_get_last_internal_error(&storage->storage,
							     NULL));
		snotify->round_failed = TRUE;
	}
}

int sqlbox_list_notify_next(struct mailbox_list_notify *notify,
			const struct mailbox_list_notify_rec **rec_r)
{
	struct sqlbox_list_notify *snotify = SQLBOX_LIST_NOTIFY(notify);
	const struct mailbox_list_notify_rec *rec;
	bool failed;

	if (!snotify->round_started)
		sqlbox_notify_round_begin(snotify);
	while (snotify->rec_idx < array_count(&snotify->recs)) {
		rec = array_idx(&snotify->recs, snotify->rec_idx++);
		if ((rec->events & notify->mask) != 0) {
			*rec_r = rec;
			return 1;
		}
	}
	/* The round is over: the next call reads the rows again. */
	failed = snotify->round_failed;
	array_clear(&snotify->recs);
	p_clear(snotify->rec_pool);
	snotify->rec_idx = 0;
	snotify->round_started = FALSE;
	return failed ? -1 : 0;
}

static void sqlbox_notify_now(struct sqlbox_list_notify *snotify)
{
	timeout_remove(&snotify->to_notify);
	snotify->wait_callback(snotify->wait_context);
}

static void sqlbox_notify_changed(struct sqlbox_list_notify *snotify)
{
	/* A burst of commits becomes one round. */
	if (snotify->to_notify == NULL) {
		snotify->to_notify =
			timeout_add_short(SQLBOX_NOTIFY_DELAY_MSECS,
					  sqlbox_notify_now, snotify);
	}
}

void sqlbox_list_notify_wait(struct mailbox_list_notify *notify,
			     mailbox_list_notify_callback_t *callback,
			     void *context)
{
	struct sqlbox_list_notify *snotify = SQLBOX_LIST_NOTIFY(notify);
	unsigned int interval =
		notify->list->mail_set->mailbox_idle_check_interval;

	snotify->wait_callback = callback;
	snotify->wait_context = context;
	io_remove(&snotify->io_dir);
	timeout_remove(&snotify->to_wait);
	if (callback == NULL) {
		timeout_remove(&snotify->to_notify);
		return;
	}
	if (io_add_notify(snotify->storage->root_dir, sqlbox_notify_changed,
			  snotify, &snotify->io_dir) != IO_NOTIFY_ADDED)
		snotify->io_dir = NULL;
	/* In case inotify misses something (e.g. a network filesystem). */
	if (interval > 0) {
		snotify->to_wait = timeout_add(interval * 1000,
					       sqlbox_notify_changed, snotify);
	}
}

void sqlbox_list_notify_flush(struct mailbox_list_notify *notify)
{
	struct sqlbox_list_notify *snotify = SQLBOX_LIST_NOTIFY(notify);

	/* Rows are cheap to read: look now rather than wait. */
	if (snotify->wait_callback != NULL) {
		timeout_remove(&snotify->to_notify);
		snotify->wait_callback(snotify->wait_context);
	}
}
