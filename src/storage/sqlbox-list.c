/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "array.h"
#include "hash.h"
#include "imap-match.h"
#include "mailbox-tree.h"
#include "mailbox-list-subscriptions.h"
#include "mail-namespace.h"
#include "sqlbox-storage.h"

/* The folder list lives in SQLite (table mailbox, table subscription):
   no directories, no subscriptions file, no list index.  Modelled on
   mailbox-list-none.c and imapc-list.c. */

#define SQLBOX_LIST_TEMP_PREFIX ".temp."

struct sqlbox_list_iterate_context {
	struct mailbox_list_iterate_context ctx;
	struct mailbox_tree_context *tree;
	struct mailbox_tree_iterate_context *iter;
	struct mailbox_info info;
	/* vname -> the folder's own special-use flags (LIST shows them). */
	HASH_TABLE(char *, char *) special_use;
};

static struct sqlbox_storage *sqlbox_list_storage(struct mailbox_list *list)
{
	i_assert(list->ns->storage != NULL);
	return SQLBOX_STORAGE(list->ns->storage);
}

static void sqlbox_list_copy_error(struct mailbox_list *list)
{
	enum mail_error error;
	const char *text;

	text = mail_storage_get_last_error(list->ns->storage, &error);
	mailbox_list_set_error(list, error, text);
}

static struct mailbox_list *sqlbox_list_alloc(void)
{
	struct mailbox_list *list;
	pool_t pool;

	pool = pool_alloconly_create("sqlbox list", 2048);
	list = p_new(pool, struct mailbox_list, 1);
	*list = sqlbox_mailbox_list;
	list->pool = pool;
	return list;
}

static void sqlbox_list_deinit(struct mailbox_list *list)
{
	pool_unref(&list->pool);
}

static char sqlbox_list_get_hierarchy_sep(struct mailbox_list *list ATTR_UNUSED)
{
	return SQLBOX_HIERARCHY_SEP;
}

static int
sqlbox_list_get_path(struct mailbox_list *list ATTR_UNUSED,
		     const char *name ATTR_UNUSED,
		     enum mailbox_list_path_type type ATTR_UNUSED,
		     const char **path_r ATTR_UNUSED)
{
	/* No path of any kind: in-memory indexes, no folder directories. */
	return 0;
}

static const char *
sqlbox_list_get_temp_prefix(struct mailbox_list *list ATTR_UNUSED,
			    bool global ATTR_UNUSED)
{
	return SQLBOX_LIST_TEMP_PREFIX;
}

static int
sqlbox_list_subscriptions_refresh(struct mailbox_list *src_list,
				  struct mailbox_list *dest_list)
{
	struct sqlbox_storage *storage = sqlbox_list_storage(src_list);
	struct mailbox_node *node;
	sqlite3_stmt *stmt;
	bool created;
	int rc;

	if (dest_list->subscriptions == NULL) {
		dest_list->subscriptions = mailbox_tree_init(
			mail_namespace_get_sep(src_list->ns));
	}
	if (sqlbox_storage_open(storage) < 0) {
		sqlbox_list_copy_error(dest_list);
		return -1;
	}
	stmt = sqlbox_db_prepare(storage, "SELECT name FROM subscription");
	if (stmt == NULL) {
		sqlbox_list_copy_error(dest_list);
		return -1;
	}
	mailbox_tree_clear(dest_list->subscriptions);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) T_BEGIN {
		const char *name = (const char *)sqlite3_column_text(stmt, 0);
		const char *vname = mailbox_list_get_vname(dest_list, name);

		node = mailbox_tree_get(dest_list->subscriptions, vname,
					&created);
		node->flags = MAILBOX_SUBSCRIBED;
	} T_END;
	sqlite3_finalize(stmt);
	if (rc < 0) {
		sqlbox_list_copy_error(dest_list);
		return -1;
	}
	return 0;
}

static int sqlbox_list_set_subscribed(struct mailbox_list *list,
				      const char *name, bool set)
{
	struct sqlbox_storage *storage = sqlbox_list_storage(list);

	if (sqlbox_storage_open(storage) < 0 ||
	    sqlbox_db_set_subscribed(storage, name, set) < 0) {
		sqlbox_list_copy_error(list);
		return -1;
	}
	return 0;
}

static int sqlbox_list_not_possible(struct mailbox_list *list,
				    const char *name ATTR_UNUSED)
{
	/* Folders are deleted and renamed through the mailbox (rows), never
	   through the list. */
	mailbox_list_set_error(list, MAIL_ERROR_NOTPOSSIBLE, "Not supported");
	return -1;
}

static int
sqlbox_list_rename_mailbox(struct mailbox_list *oldlist,
			   const char *oldname ATTR_UNUSED,
			   struct mailbox_list *newlist ATTR_UNUSED,
			   const char *newname ATTR_UNUSED)
{
	mailbox_list_set_error(oldlist, MAIL_ERROR_NOTPOSSIBLE,
			       "Not supported");
	return -1;
}

static int sqlbox_list_fill_tree(struct sqlbox_list_iterate_context *ctx)
{
	struct mailbox_list *list = ctx->ctx.list;
	struct sqlbox_storage *storage = sqlbox_list_storage(list);
	struct mailbox_node *node;
	sqlite3_stmt *stmt;
	bool created;
	int rc;

	if (sqlbox_storage_open(storage) < 0) {
		if (!storage->locked || !sqlbox_usage_enabled(storage))
			return -1;
		/* No key (LMTP): the names are unreadable.  One INBOX
		   stands for the whole mailbox, so that the quota plugin
		   can count it (sqlbox-usage.c). */
		node = mailbox_tree_get(ctx->tree,
			mailbox_list_get_vname(list, "INBOX"), &created);
		node->flags = 0;
		return 0;
	}
	stmt = sqlbox_db_prepare(storage,
		"SELECT name, special_use FROM mailbox");
	if (stmt == NULL)
		return -1;
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) T_BEGIN {
		const char *name = (const char *)sqlite3_column_text(stmt, 0);
		const char *vname = mailbox_list_get_vname(list, name);
		const char *special_use =
			(const char *)sqlite3_column_text(stmt, 1);

		if (special_use != NULL && special_use[0] != '\0') {
			hash_table_update(ctx->special_use,
				p_strdup(ctx->ctx.pool, vname),
				p_strdup(ctx->ctx.pool, special_use));
		}
		node = mailbox_tree_get(ctx->tree, vname, &created);
		/* Exists (clears NONEXISTENT if it was made as a parent). */
		node->flags = 0;
	} T_END;
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

static struct mailbox_list_iterate_context *
sqlbox_list_iter_init(struct mailbox_list *list, const char *const *patterns,
		      enum mailbox_list_iter_flags flags)
{
	struct sqlbox_list_iterate_context *ctx;
	pool_t pool;
	char sep;

	if ((flags & MAILBOX_LIST_ITER_SELECT_SUBSCRIBED) != 0) {
		/* The generic code refreshed list->subscriptions already. */
		return mailbox_list_subscriptions_iter_init(list, patterns,
							    flags);
	}
	sep = mail_namespace_get_sep(list->ns);
	pool = pool_alloconly_create("sqlbox list iter", 1024);
	ctx = p_new(pool, struct sqlbox_list_iterate_context, 1);
	ctx->ctx.pool = pool;
	ctx->ctx.list = list;
	ctx->ctx.flags = flags;
	ctx->ctx.glob = imap_match_init_multiple(pool, patterns, TRUE, sep);
	array_create(&ctx->ctx.module_contexts, pool, sizeof(void *), 5);
	ctx->info.ns = list->ns;
	hash_table_create(&ctx->special_use, pool, 0, str_hash, strcmp);
	ctx->tree = mailbox_tree_init(sep);
	mailbox_tree_set_parents_nonexistent(ctx->tree);
	if (sqlbox_list_fill_tree(ctx) < 0) {
		sqlbox_list_copy_error(list);
		ctx->ctx.failed = TRUE;
	}
	mailbox_tree_sort(ctx->tree);
	ctx->iter = mailbox_tree_iterate_init(ctx->tree, NULL, 0);
	return &ctx->ctx;
}

static const struct mailbox_info *
sqlbox_list_iter_next(struct mailbox_list_iterate_context *_ctx)
{
	struct sqlbox_list_iterate_context *ctx =
		container_of(_ctx, struct sqlbox_list_iterate_context, ctx);
	struct mailbox_node *node;
	const char *vname;

	if ((_ctx->flags & MAILBOX_LIST_ITER_SELECT_SUBSCRIBED) != 0)
		return mailbox_list_subscriptions_iter_next(_ctx);
	if (_ctx->failed)
		return NULL;
	do {
		node = mailbox_tree_iterate_next(ctx->iter, &vname);
		if (node == NULL)
			return mailbox_list_iter_default_next(_ctx);
	} while (imap_match(_ctx->glob, vname) != IMAP_MATCH_YES);

	ctx->info.vname = vname;
	ctx->info.special_use = hash_table_lookup(ctx->special_use, vname);
	ctx->info.flags = node->flags & MAILBOX_NONEXISTENT;
	ctx->info.flags |= node->children != NULL ? MAILBOX_CHILDREN :
		MAILBOX_NOCHILDREN;
	if ((_ctx->flags & MAILBOX_LIST_ITER_RETURN_SUBSCRIBED) != 0 &&
	    _ctx->list->subscriptions != NULL) {
		mailbox_list_set_subscription_flags(_ctx->list, vname,
						    &ctx->info.flags);
	}
	return &ctx->info;
}

static int
sqlbox_list_iter_deinit(struct mailbox_list_iterate_context *_ctx)
{
	struct sqlbox_list_iterate_context *ctx =
		container_of(_ctx, struct sqlbox_list_iterate_context, ctx);
	int ret;

	if ((_ctx->flags & MAILBOX_LIST_ITER_SELECT_SUBSCRIBED) != 0)
		return mailbox_list_subscriptions_iter_deinit(_ctx);
	ret = _ctx->failed ? -1 : 0;
	mailbox_tree_iterate_deinit(&ctx->iter);
	mailbox_tree_deinit(&ctx->tree);
	hash_table_destroy(&ctx->special_use);
	pool_unref(&_ctx->pool);
	return ret;
}

struct mailbox_list sqlbox_mailbox_list = {
	.name = SQLBOX_LIST_NAME,
	.props = MAILBOX_LIST_PROP_NO_ROOT | MAILBOX_LIST_PROP_NO_LIST_INDEX |
		MAILBOX_LIST_PROP_NO_INTERNAL_NAMES,
	.mailbox_name_max_length = MAILBOX_LIST_NAME_MAX_LENGTH,

	.v = {
		.alloc = sqlbox_list_alloc,
		.deinit = sqlbox_list_deinit,
		.get_hierarchy_sep = sqlbox_list_get_hierarchy_sep,
		.get_vname = mailbox_list_default_get_vname,
		.get_storage_name = mailbox_list_default_get_storage_name,
		.get_path = sqlbox_list_get_path,
		.get_temp_prefix = sqlbox_list_get_temp_prefix,
		.iter_init = sqlbox_list_iter_init,
		.iter_next = sqlbox_list_iter_next,
		.iter_deinit = sqlbox_list_iter_deinit,
		/* None: mailbox_list_mailbox() (LIST (SUBSCRIBED)) then asks
		   our iterator instead of a root directory we don't have. */
		.get_mailbox_flags = NULL,
		.subscriptions_refresh = sqlbox_list_subscriptions_refresh,
		.set_subscribed = sqlbox_list_set_subscribed,
		.delete_mailbox = sqlbox_list_not_possible,
		.delete_dir = sqlbox_list_not_possible,
		.delete_symlink = sqlbox_list_not_possible,
		.rename_mailbox = sqlbox_list_rename_mailbox,
		.notify_init = sqlbox_list_notify_init,
		.notify_next = sqlbox_list_notify_next,
		.notify_deinit = sqlbox_list_notify_deinit,
		.notify_wait = sqlbox_list_notify_wait,
		.notify_flush = sqlbox_list_notify_flush,
	}
};
