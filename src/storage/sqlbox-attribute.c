/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "str.h"
#include "mailbox-attribute-internal.h"
#include "sqlbox-storage.h"

/* Mailbox attributes (IMAP METADATA) and special-use flags live in the
   encrypted database, never in Dovecot's attribute dict or an index file:
   table attribute (per folder row, so a rename keeps them and a delete
   drops them) and column mailbox.special_use.  A value is written when it
   is set, not at the mailbox transaction's commit; SETMETADATA commits at
   once anyway.  Server attributes are INBOX's, as in Dovecot. */

#define SQLBOX_SPECIAL_USE_MAX 128

struct sqlbox_attribute_iter {
	struct mailbox_attribute_iter iter;
	pool_t pool;
	ARRAY_TYPE(const_string) keys;
	unsigned int idx;
	bool failed:1;
};

/* RFC 6154, in the spelling LIST shows. */
static const char *const sqlbox_special_use_flags[] = {
	"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent",
	"\\Trash", NULL
};

static bool sqlbox_box_is_ours(struct mailbox *box)
{
	return strcmp(box->storage->name, SQLBOX_STORAGE_NAME) == 0;
}

int sqlbox_attribute_set(struct mailbox_transaction_context *t,
			 enum mail_attribute_type type_flags, const char *key,
			 const struct mail_attribute_value *value)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(t->box);
	enum mail_attribute_type type = type_flags & MAIL_ATTRIBUTE_TYPE_MASK;
	time_t ts = value->last_change != 0 ? value->last_change : ioloop_time;
	sqlite3_stmt *stmt;
	const char *value_str;
	int rc;

	if (mailbox_attribute_value_to_string(t->box->storage, value,
					      &value_str) < 0 ||
	    sqlbox_mailbox_refresh_row(mbox) < 0)
		return -1;
	stmt = sqlbox_db_prepare(mbox->storage, value_str != NULL ?
		"INSERT OR REPLACE INTO attribute (mailbox_id, type, key,"
		" value, changed) VALUES (?1, ?2, ?3, ?4, ?5)" :
		"DELETE FROM attribute WHERE mailbox_id = ?1 AND type = ?2"
		" AND key = ?3");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	sqlite3_bind_int(stmt, 2, type);
	sqlite3_bind_text(stmt, 3, key, -1, SQLITE_STATIC);
	if (value_str != NULL) {
		sqlite3_bind_blob(stmt, 4, value_str, strlen(value_str),
				  SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 5, ts);
	}
	rc = sqlbox_db_step(mbox->storage, stmt);
	sqlite3_finalize(stmt);
	if (rc < 0)
		return -1;
	/* RFC 7162: a changed annotation raises the folder's modseq. */
	if (t->itrans != NULL) {
		bool pvt = type == MAIL_ATTRIBUTE_TYPE_PRIVATE;

		if (value_str != NULL) {
			mail_index_attribute_set(t->itrans, pvt, key, ts,
						 strlen(value_str));
		} else {
			mail_index_attribute_unset(t->itrans, pvt, key, ts);
		}
	}
	return 0;
}

int sqlbox_attribute_get(struct mailbox *box,
			 enum mail_attribute_type type_flags, const char *key,
			 struct mail_attribute_value *value_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);
	sqlite3_stmt *stmt;
	int rc;

	i_zero(value_r);
	if (sqlbox_mailbox_refresh_row(mbox) < 0)
		return -1;
	stmt = sqlbox_db_prepare(mbox->storage,
		"SELECT value, changed FROM attribute WHERE mailbox_id = ?"
		" AND type = ? AND key = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	sqlite3_bind_int(stmt, 2, type_flags & MAIL_ATTRIBUTE_TYPE_MASK);
	sqlite3_bind_text(stmt, 3, key, -1, SQLITE_STATIC);
	rc = sqlbox_db_step(mbox->storage, stmt);
	if (rc == SQLITE_ROW) {
		value_r->value = t_strndup(sqlite3_column_blob(stmt, 0),
					   sqlite3_column_bytes(stmt, 0));
		value_r->last_change = sqlite3_column_int64(stmt, 1);
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : (rc == SQLITE_ROW ? 1 : 0);
}

struct mailbox_attribute_iter *
sqlbox_attribute_iter_init(struct mailbox *box,
			   enum mail_attribute_type type_flags,
			   const char *prefix)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(box);
	struct sqlbox_attribute_iter *iter;
	sqlite3_stmt *stmt = NULL;
	size_t prefix_len = strlen(prefix);
	pool_t pool;
	int rc = -1;

	pool = pool_alloconly_create("sqlbox attribute iter", 256);
	iter = p_new(pool, struct sqlbox_attribute_iter, 1);
	iter->iter.box = box;
	iter->pool = pool;
	p_array_init(&iter->keys, pool, 16);
	if (sqlbox_mailbox_refresh_row(mbox) == 0) {
		stmt = sqlbox_db_prepare(mbox->storage,
			"SELECT key FROM attribute WHERE mailbox_id = ?1"
			" AND type = ?2 AND substr(key, 1, ?3) = ?4"
			" ORDER BY key");
	}
	if (stmt != NULL) {
		sqlite3_bind_int64(stmt, 1, mbox->id);
		sqlite3_bind_int(stmt, 2, type_flags & MAIL_ATTRIBUTE_TYPE_MASK);
		sqlite3_bind_int64(stmt, 3, prefix_len);
		sqlite3_bind_text(stmt, 4, prefix, -1, SQLITE_STATIC);
		while ((rc = sqlbox_db_step(mbox->storage, stmt)) ==
		       SQLITE_ROW) {
			/* Keys relative to the prefix, as the dict
			   iteration gives them. */
			const char *key = p_strdup(pool,
				(const char *)sqlite3_column_text(stmt, 0) +
				prefix_len);

			array_push_back(&iter->keys, &key);
		}
		sqlite3_finalize(stmt);
	}
	iter->failed = rc < 0;
	return &iter->iter;
}

const char *sqlbox_attribute_iter_next(struct mailbox_attribute_iter *_iter)
{
	struct sqlbox_attribute_iter *iter =
		container_of(_iter, struct sqlbox_attribute_iter, iter);

	if (iter->idx >= array_count(&iter->keys))
		return NULL;
	return array_idx_elem(&iter->keys, iter->idx++);
}

int sqlbox_attribute_iter_deinit(struct mailbox_attribute_iter *_iter)
{
	struct sqlbox_attribute_iter *iter =
		container_of(_iter, struct sqlbox_attribute_iter, iter);
	int ret = iter->failed ? -1 : 0;

	pool_unref(&iter->pool);
	return ret;
}

/* ---- special-use ---- */

/* The flags of value in canonical spelling, or NULL if one is unknown. */
static const char *sqlbox_special_use_normalize(const char *value)
{
	const char *const *flags = t_strsplit_spaces(value, " ");
	string_t *str = t_str_new(64);
	unsigned int i;

	for (; *flags != NULL; flags++) {
		for (i = 0; sqlbox_special_use_flags[i] != NULL; i++) {
			if (strcasecmp(*flags, sqlbox_special_use_flags[i]) == 0)
				break;
		}
		if (sqlbox_special_use_flags[i] == NULL)
			return NULL;
		if (str_len(str) > 0)
			str_append_c(str, ' ');
		str_append(str, sqlbox_special_use_flags[i]);
	}
	return str_c(str);
}

int sqlbox_special_use_get(struct sqlbox_mailbox *mbox,
			   const char **special_use_r)
{
	sqlite3_stmt *stmt;
	int rc;

	*special_use_r = NULL;
	if (sqlbox_mailbox_refresh_row(mbox) < 0)
		return -1;
	stmt = sqlbox_db_prepare(mbox->storage,
		"SELECT special_use FROM mailbox WHERE id = ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	rc = sqlbox_db_step(mbox->storage, stmt);
	if (rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
		*special_use_r = t_strdup(
			(const char *)sqlite3_column_text(stmt, 0));
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

static int
sqlbox_special_use_attr_get(struct mailbox *box, const char *key ATTR_UNUSED,
			    struct mail_attribute_value *value_r)
{
	const char *value = NULL;

	/* Configured flags win, as they do in LIST. */
	if (box->set != NULL && box->set->special_use[0] != '\0')
		value = box->set->special_use;
	else if (sqlbox_box_is_ours(box) &&
		 sqlbox_special_use_get(SQLBOX_MAILBOX(box), &value) < 0)
		return -1;
	if (value == NULL || value[0] == '\0')
		return 0;
	value_r->value = value;
	return 1;
}

static int
sqlbox_special_use_attr_set(struct mailbox_transaction_context *t,
			    const char *key ATTR_UNUSED,
			    const struct mail_attribute_value *value)
{
	struct mailbox *box = t->box;
	struct sqlbox_mailbox *mbox;
	const char *value_str, *flags = NULL;
	sqlite3_stmt *stmt;
	int rc;

	if (!sqlbox_box_is_ours(box)) {
		mail_storage_set_error(box->storage, MAIL_ERROR_NOTPOSSIBLE,
			"The /private/specialuse attribute cannot be changed");
		return -1;
	}
	mbox = SQLBOX_MAILBOX(box);
	if (mailbox_attribute_value_to_string(box->storage, value,
					      &value_str) < 0)
		return -1;
	if (value_str != NULL && value_str[0] != '\0') {
		if (strlen(value_str) > SQLBOX_SPECIAL_USE_MAX ||
		    (flags = sqlbox_special_use_normalize(value_str)) == NULL) {
			mail_storage_set_error(box->storage, MAIL_ERROR_PARAMS,
				"Invalid special-use flags (RFC 6154: \\All "
				"\\Archive \\Drafts \\Flagged \\Junk \\Sent "
				"\\Trash)");
			return -1;
		}
	}
	if (sqlbox_mailbox_refresh_row(mbox) < 0)
		return -1;
	stmt = sqlbox_db_prepare(mbox->storage,
		"UPDATE mailbox SET special_use = ? WHERE id = ?");
	if (stmt == NULL)
		return -1;
	if (flags != NULL && flags[0] != '\0')
		sqlite3_bind_text(stmt, 1, flags, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(stmt, 1);
	sqlite3_bind_int64(stmt, 2, mbox->id);
	rc = sqlbox_db_step(mbox->storage, stmt);
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

/* Replaces Dovecot's read-only, configuration-only /private/specialuse:
   sqlbox folders keep their own flags; others behave as before. */
static const struct mailbox_attribute_internal sqlbox_iattr_special_use = {
	.type = MAIL_ATTRIBUTE_TYPE_PRIVATE,
	.key = MAILBOX_ATTRIBUTE_SPECIALUSE,
	.rank = MAIL_ATTRIBUTE_INTERNAL_RANK_AUTHORITY,
	.flags = MAIL_ATTRIBUTE_INTERNAL_FLAG_VALIDATED,
	.get = sqlbox_special_use_attr_get,
	.set = sqlbox_special_use_attr_set,
};

static int
sqlbox_special_use_config_get(struct mailbox *box, const char *key ATTR_UNUSED,
			      struct mail_attribute_value *value_r)
{
	if (box->set == NULL || box->set->special_use[0] == '\0')
		return 0;
	value_r->value = box->set->special_use;
	return 1;
}

/* Dovecot's own, put back at deinit. */
static const struct mailbox_attribute_internal sqlbox_iattr_special_use_orig = {
	.type = MAIL_ATTRIBUTE_TYPE_PRIVATE,
	.key = MAILBOX_ATTRIBUTE_SPECIALUSE,
	.rank = MAIL_ATTRIBUTE_INTERNAL_RANK_AUTHORITY,
	.flags = MAIL_ATTRIBUTE_INTERNAL_FLAG_VALIDATED,
	.get = sqlbox_special_use_config_get,
};

void sqlbox_attributes_init(void)
{
	mailbox_attribute_unregister_internal(&sqlbox_iattr_special_use_orig);
	mailbox_attribute_register_internal(&sqlbox_iattr_special_use);
}

void sqlbox_attributes_deinit(void)
{
	mailbox_attribute_unregister_internal(&sqlbox_iattr_special_use);
	mailbox_attribute_register_internal(&sqlbox_iattr_special_use_orig);
}
