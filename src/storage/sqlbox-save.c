/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "guid.h"
#include "ioloop.h"
#include "istream.h"
#include "istream-crlf.h"
#include "ostream.h"
#include "safe-memset.h"
#include "mail-copy.h"
#include "mail-index-modseq.h"
#include "index-mail.h"
#include "sqlbox-storage.h"

/* Saving: a message's body streams into SQLite chunk by chunk as it
   arrives (sqlbox-body.c; no plaintext temp file may touch the disk), and
   the mail rows are written at commit, in one SQLite transaction that
   also assigns the UIDs, while the index is sync-locked.  The spool path
   (no key) keeps the message in memory until it is sealed.  A copy inside
   the same user's database shares the source's body row. */

struct sqlbox_save_mail {
	uint32_t seq;
	/* One of: a new body, or the body of a copied mail. */
	struct sqlbox_body_writer *body;
	int64_t body_id;
	/* The new body's row once committed (0 before), for the FTS index */
	int64_t new_body_id;
	/* Size of a copied mail's body. */
	uoff_t size;
	enum mail_flags flags;
	const char *const *keywords;
	time_t received;
	const char *guid;
	/* A new body's cache row (cached: parsed at save_finish). */
	struct sqlbox_body_cache cache;
	bool cached;
};

struct sqlbox_save_context {
	struct mail_save_context ctx;
	pool_t pool;

	struct sqlbox_mailbox *mbox;
	struct mail_index_transaction *trans;
	struct sqlbox_sync_context *sync_ctx;
	ARRAY(struct sqlbox_save_mail) mails;

	/* The mail being saved: */
	uint32_t seq;
	struct istream *input;
	struct sqlbox_body_writer *body;

	bool failed:1;
	bool finished:1;
};

#define SQLBOX_SAVECTX(s) container_of(s, struct sqlbox_save_context, ctx)

struct mail_save_context *
sqlbox_save_alloc(struct mailbox_transaction_context *t)
{
	struct sqlbox_save_context *ctx;
	pool_t pool;

	i_assert((t->flags & MAILBOX_TRANSACTION_FLAG_EXTERNAL) != 0);

	if (t->save_ctx == NULL) {
		pool = pool_alloconly_create("sqlbox save", 1024);
		ctx = p_new(pool, struct sqlbox_save_context, 1);
		ctx->pool = pool;
		ctx->ctx.transaction = t;
		ctx->mbox = SQLBOX_MAILBOX(t->box);
		ctx->trans = t->itrans;
		p_array_init(&ctx->mails, pool, 8);
		t->save_ctx = &ctx->ctx;
	}
	return t->save_ctx;
}

static const char *const *
sqlbox_save_keyword_names(struct sqlbox_save_context *ctx,
			  const struct mail_keywords *keywords)
{
	const ARRAY_TYPE(keywords) *all;
	const char **names;

	if (keywords == NULL || keywords->count == 0)
		return NULL;
	all = mail_index_get_keywords(ctx->mbox->box.index);
	names = p_new(ctx->pool, const char *, keywords->count + 1);
	for (unsigned int i = 0; i < keywords->count; i++) {
		names[i] = p_strdup(ctx->pool,
				    array_idx_elem(all, keywords->idx[i]));
	}
	return names;
}

/* Adds the index record and remembers the mail for the commit. */
static struct sqlbox_save_mail *
sqlbox_save_add(struct sqlbox_save_context *ctx)
{
	struct mail_save_data *mdata = &ctx->ctx.data;
	struct sqlbox_save_mail *mail;

	mail_index_append(ctx->trans, 0, &ctx->seq);
	mail_index_update_flags(ctx->trans, ctx->seq, MODIFY_REPLACE,
				mdata->flags & ENUM_NEGATE(MAIL_RECENT));
	if (mdata->keywords != NULL) {
		mail_index_update_keywords(ctx->trans, ctx->seq,
					   MODIFY_REPLACE, mdata->keywords);
	}
	if (mdata->min_modseq != 0) {
		mail_index_update_modseq(ctx->trans, ctx->seq,
					 mdata->min_modseq);
	}
	mail = array_append_space(&ctx->mails);
	mail->seq = ctx->seq;
	mail->flags = mdata->flags & MAIL_FLAGS_NONRECENT;
	mail->keywords = sqlbox_save_keyword_names(ctx, mdata->keywords);
	mail->received = mdata->received_date;
	if (mdata->guid != NULL)
		mail->guid = p_strdup(ctx->pool, mdata->guid);
	else {
		guid_128_t guid;

		guid_128_generate(guid);
		mail->guid = p_strdup(ctx->pool, guid_128_to_string(guid));
	}
	return mail;
}

int sqlbox_save_begin(struct mail_save_context *_ctx, struct istream *input)
{
	struct sqlbox_save_context *ctx = SQLBOX_SAVECTX(_ctx);
	struct istream *crlf_input;

	ctx->failed = FALSE;
	ctx->finished = FALSE;
	ctx->body = sqlbox_body_writer_create(ctx->mbox->storage,
					      ctx->mbox->spool_only);
	_ctx->data.output = sqlbox_body_writer_ostream(ctx->body);
	o_stream_cork(_ctx->data.output);

	(void)sqlbox_save_add(ctx);
	mail_set_seq_saving(_ctx->dest_mail, ctx->seq);

	crlf_input = i_stream_create_crlf(input);
	ctx->input = index_mail_cache_parse_init(_ctx->dest_mail, crlf_input);
	i_stream_unref(&crlf_input);
	return 0;
}

int sqlbox_save_continue(struct mail_save_context *_ctx)
{
	struct sqlbox_save_context *ctx = SQLBOX_SAVECTX(_ctx);

	if (ctx->failed)
		return -1;
	if (index_storage_save_continue(_ctx, ctx->input,
					_ctx->dest_mail) < 0) {
		ctx->failed = TRUE;
		return -1;
	}
	return 0;
}

/* The body's cache row, filled now so that no later session decrypts the
   body for its header, ENVELOPE or BODYSTRUCTURE: what index-mail
   computes for the mail being saved (the body is still in memory, or
   its chunks were just written).  Failing costs speed only: the row is
   then filled when the mail is first read. */
static void
sqlbox_save_cache(struct sqlbox_save_context *ctx,
		  struct sqlbox_save_mail *mail)
{
	struct mail *dest = ctx->ctx.dest_mail;
	struct istream *input;
	const char *value;
	int ret;

	input = sqlbox_body_writer_istream(mail->body);
	ret = sqlbox_body_cache_parse(input, ctx->pool, &mail->cache);
	i_stream_unref(&input);
	if (ret <= 0)
		return;
	mail->cached = TRUE;
	if (mail_get_special(dest, MAIL_FETCH_IMAP_BODYSTRUCTURE, &value) == 0)
		mail->cache.bodystructure = p_strdup(ctx->pool, value);
	if (mail_get_special(dest, MAIL_FETCH_IMAP_ENVELOPE, &value) == 0)
		mail->cache.envelope = p_strdup(ctx->pool, value);
}

int sqlbox_save_finish(struct mail_save_context *_ctx)
{
	struct sqlbox_save_context *ctx = SQLBOX_SAVECTX(_ctx);
	struct sqlbox_save_mail *mail;

	ctx->finished = TRUE;
	if (ctx->body == NULL) {
		/* save_begin never ran: a plugin (quota: over the limit)
		   refused the mail before it, then cancelled.  Nothing of
		   this mail exists; the mails saved before it stay. */
		i_assert(_ctx->data.output == NULL);
		index_save_context_free(_ctx);
		return -1;
	}
	if (_ctx->data.output != NULL) {
		if (!ctx->failed && o_stream_finish(_ctx->data.output) < 0) {
			mailbox_set_critical(&ctx->mbox->box,
				"sqlbox: writing the body failed: %s",
				o_stream_get_error(_ctx->data.output));
			ctx->failed = TRUE;
		}
		o_stream_destroy(&_ctx->data.output);
	}
	if (_ctx->data.received_date == (time_t)-1)
		_ctx->data.received_date = ioloop_time;

	mail = array_back_modifiable(&ctx->mails);
	if (ctx->failed) {
		sqlbox_body_writer_free(&ctx->body);
		index_storage_save_abort_last(_ctx, ctx->seq);
		array_pop_back(&ctx->mails);
	} else {
		mail->body = ctx->body;
		mail->received = _ctx->data.received_date;
		ctx->body = NULL;
	}
	index_mail_cache_parse_deinit(_ctx->dest_mail,
				      _ctx->data.received_date, !ctx->failed);
	if (!ctx->failed && !ctx->mbox->spool_only)
		sqlbox_save_cache(ctx, mail);
	i_stream_unref(&ctx->input);
	index_save_context_free(_ctx);
	return ctx->failed ? -1 : 0;
}

void sqlbox_save_cancel(struct mail_save_context *_ctx)
{
	struct sqlbox_save_context *ctx = SQLBOX_SAVECTX(_ctx);

	ctx->failed = TRUE;
	(void)sqlbox_save_finish(_ctx);
}

static int
sqlbox_copy_shared(struct sqlbox_save_context *ctx, struct mail *mail)
{
	struct sqlbox_mailbox *src = SQLBOX_MAILBOX(mail->box);
	struct sqlbox_save_mail *save;
	struct sqlbox_mail_row row;
	struct index_mail *dest;
	int ret;

	if (sqlbox_storage_open(ctx->mbox->storage) < 0)
		return -1;
	ret = sqlbox_db_mail_lookup(ctx->mbox->storage, src->id, mail->uid,
				    FALSE, ctx->pool, &row);
	if (ret <= 0) {
		if (ret == 0) {
			mail_storage_set_error(&ctx->mbox->storage->storage,
				MAIL_ERROR_EXPUNGED,
				"Some of the requested messages no longer exist.");
		}
		return -1;
	}
	if (ctx->ctx.data.received_date == (time_t)-1)
		ctx->ctx.data.received_date = row.received;
	save = sqlbox_save_add(ctx);
	save->body_id = row.body_id;
	save->size = row.size;
	if (ctx->ctx.data.guid == NULL)
		save->guid = row.guid;
	index_copy_cache_fields(&ctx->ctx, mail, ctx->seq);
	mail_set_seq_saving(ctx->ctx.dest_mail, ctx->seq);
	/* Known without reading the body: the quota plugin asks. */
	dest = INDEX_MAIL(ctx->ctx.dest_mail);
	dest->data.physical_size = dest->data.virtual_size = row.size;
	return 0;
}

int sqlbox_copy(struct mail_save_context *_ctx, struct mail *mail)
{
	struct sqlbox_save_context *ctx = SQLBOX_SAVECTX(_ctx);
	int ret;

	if (!ctx->mbox->spool_only &&
	    mail->box->storage == _ctx->transaction->box->storage &&
	    !(SQLBOX_MAILBOX(mail->box))->spool_only) {
		ctx->finished = TRUE;
		T_BEGIN {
			ret = sqlbox_copy_shared(ctx, mail);
		} T_END;
		index_save_context_free(_ctx);
		return ret;
	}
	return mail_storage_copy(_ctx, mail);
}

struct istream *
sqlbox_save_get_stream(struct mailbox_transaction_context *t, uint32_t seq,
		       uoff_t *size_r)
{
	struct sqlbox_save_context *ctx;
	const struct sqlbox_save_mail *mail;

	if (t->save_ctx == NULL)
		return NULL;
	ctx = SQLBOX_SAVECTX(t->save_ctx);
	array_foreach(&ctx->mails, mail) {
		if (mail->seq != seq)
			continue;
		if (mail->body != NULL) {
			struct istream *input =
				sqlbox_body_writer_istream(mail->body);

			if (i_stream_get_size(input, TRUE, size_r) <= 0)
				*size_r = 0;
			return input;
		}
		if (mail->body_id != 0) {
			*size_r = mail->size;
			return sqlbox_body_istream_create(ctx->mbox->storage,
							  mail->body_id,
							  mail->size);
		}
		/* Still being written (save_finish not reached). */
		return NULL;
	}
	return NULL;
}

static int sqlbox_save_commit_spool(struct sqlbox_save_context *ctx)
{
	struct mailbox_transaction_context *_t = ctx->ctx.transaction;
	const struct mail_index_header *hdr;
	ARRAY_TYPE(sqlbox_spool_mail) spooled;
	struct sqlbox_spool_mail *spool_mail;
	struct sqlbox_save_mail *mail;

	/* A committed sync first: the header's UIDVALIDITY must be in the
	   index before the appends are. */
	if (sqlbox_sync(ctx->mbox) < 0 ||
	    sqlbox_sync_begin(ctx->mbox, &ctx->sync_ctx, FALSE) < 0)
		return -1;
	/* The folder (any name: without a key the folder list is
	   unreadable, so Sieve's fileinto lands here and the import creates
	   what is missing), flags and keywords travel sealed with the mail. */
	t_array_init(&spooled, array_count(&ctx->mails));
	array_foreach_modifiable(&ctx->mails, mail) {
		if (mail->body != NULL) {
			spool_mail = array_append_space(&spooled);
			spool_mail->body = sqlbox_body_writer_data(mail->body);
			spool_mail->folder = ctx->mbox->box.name;
			spool_mail->flags = mail->flags;
			spool_mail->keywords = mail->keywords;
		}
	}
	/* 250 only after this: the spool is fsynced. */
	if (sqlbox_spool_append(ctx->mbox->storage, &spooled) < 0)
		return -1;
	hdr = mail_index_get_header(ctx->sync_ctx->sync_view);
	mail_index_append_finish_uids(ctx->trans, hdr->next_uid,
				      &_t->changes->saved_uids);
	_t->changes->uid_validity = ctx->mbox->uid_validity;
	return 0;
}

static int
sqlbox_save_fts_index(struct sqlbox_storage *storage,
		      struct sqlbox_body_writer *body, int64_t body_id)
{
	struct istream *input = sqlbox_body_writer_istream(body);

	return sqlbox_fts_index_body(storage, body_id, &input);
}

/* After the commit: the new bodies are indexed when the session is idle
   (a copy's body is the source's, indexed already or left to the
   catch-up). */
static void sqlbox_save_fts_index_later(struct sqlbox_save_context *ctx)
{
	const struct sqlbox_save_mail *mail;

	array_foreach(&ctx->mails, mail) {
		if (mail->new_body_id != 0) {
			sqlbox_fts_index_later(ctx->mbox->storage,
					       mail->new_body_id);
		}
	}
}

/* How many keyword names the saved mails carry between them. */
static unsigned int
sqlbox_save_keyword_names_count(struct sqlbox_save_context *ctx)
{
	const struct sqlbox_save_mail *mail;
	ARRAY_TYPE(const_string) seen;
	const char *const *name, *const *names;
	unsigned int i, count;

	t_array_init(&seen, 8);
	array_foreach(&ctx->mails, mail) {
		if (mail->keywords == NULL)
			continue;
		for (name = mail->keywords; *name != NULL; name++) {
			names = array_get(&seen, &count);
			for (i = 0; i < count; i++) {
				if (strcmp(names[i], *name) == 0)
					break;
			}
			if (i == count)
				array_push_back(&seen, name);
		}
	}
	return array_count(&seen);
}

static int sqlbox_save_commit_db(struct sqlbox_save_context *ctx)
{
	struct sqlbox_storage *storage = ctx->mbox->storage;
	struct mailbox_transaction_context *_t = ctx->ctx.transaction;
	const struct mail_index_header *hdr;
	struct sqlbox_save_mail *mail;
	uint64_t highest, modseq;
	uint32_t uid_next, first_uid, uid;
	unsigned int names;
	int64_t body_id;

	/* Catch the index up with SQLite, then take the index sync lock
	   while still holding the SQLite write lock: the UIDs assigned here
	   are SQLite's next ones and follow everything the index has. */
	if (sqlbox_sync(ctx->mbox) < 0 ||
	    sqlbox_sync_begin(ctx->mbox, &ctx->sync_ctx, FALSE) < 0 ||
	    sqlbox_db_mailbox_counters(storage, ctx->mbox->id, &highest,
				       &uid_next) < 0)
		return -1;
	hdr = mail_index_get_header(ctx->sync_ctx->sync_view);
	first_uid = I_MAX(uid_next, hdr->next_uid);
	/* Dovecot's log gives the index transaction's records the next
	   values of its modseq counter, and each appended mail at least
	   those of its records: the append, then one record per keyword
	   name (and a flag update record before them, if any).  The
	   mails' modseq is above all of them, so the index shows what
	   SQLite holds; otherwise this session shows a higher MODSEQ than
	   any later one (whose fill takes the rows). */
	modseq = I_MAX(highest,
		       mail_index_modseq_get_highest(ctx->sync_ctx->sync_view)) + 1;
	names = sqlbox_save_keyword_names_count(ctx);
	if (names > 0)
		modseq += names + 1;
	mail_index_append_finish_uids(ctx->trans, first_uid,
				      &_t->changes->saved_uids);
	uid = first_uid;
	array_foreach_modifiable(&ctx->mails, mail) {
		body_id = mail->body_id;
		if (mail->body != NULL) {
			if (sqlbox_body_writer_commit(mail->body, &body_id) < 0)
				return -1;
			mail->new_body_id = body_id;
		}
		if (mail->cached &&
		    sqlbox_db_cache_insert(storage, body_id, &mail->cache) < 0)
			return -1;
		if (sqlbox_db_mail_insert(storage, ctx->mbox->id, uid, body_id,
					  mail->flags, mail->keywords, modseq,
					  mail->received, ioloop_time,
					  mail->guid) < 0)
			return -1;
		mail_index_update_modseq(ctx->trans, mail->seq, modseq);
		uid++;
	}
	if (sqlbox_db_mailbox_set_counters(storage, ctx->mbox->id, modseq,
					   uid) < 0)
		return -1;
	/* Indexed later, outside the reply's path (sqlbox-fts.c), unless
	   plugin { sqlbox_fts_index_delay = 0 }.
	   The FTS index last: a statement that opens a statement journal
	   (the mail row's INSERT does) makes SQLite call every virtual
	   table of the transaction's xSavepoint, and FTS5's flushes its
	   pending terms there as a new segment.  Indexed between the mail
	   rows, every message of a MULTIAPPEND was a segment of its own,
	   with the merges that follow (bench/README.md, issue 18); after
	   them, the transaction's messages make one segment at COMMIT (or
	   one per FTS5 'hashsize' of terms). */
	array_foreach_modifiable(&ctx->mails, mail) {
		if (mail->new_body_id != 0 &&
		    !sqlbox_fts_index_deferred(storage) &&
		    sqlbox_save_fts_index(storage, mail->body,
					  mail->new_body_id) < 0)
			return -1;
	}
	_t->changes->uid_validity = ctx->mbox->uid_validity;
	return 0;
}

int sqlbox_transaction_save_commit_pre(struct mail_save_context *_ctx)
{
	struct sqlbox_save_context *ctx = SQLBOX_SAVECTX(_ctx);
	struct sqlbox_storage *storage = ctx->mbox->storage;
	int ret;

	i_assert(ctx->finished);

	/* Either way the mail is on disk before the OK or 250 (unless
	   mail_fsync=never): the spool is fdatasynced, the COMMIT of a
	   mail transaction fsyncs the WAL. */
	if (ctx->mbox->spool_only) {
		T_BEGIN {
			ret = sqlbox_save_commit_spool(ctx);
		} T_END;
	} else if (sqlbox_db_begin_mail(storage) < 0) {
		ret = -1;
	} else {
		T_BEGIN {
			ret = sqlbox_save_commit_db(ctx);
		} T_END;
		if (ret < 0)
			sqlbox_db_rollback(storage);
		else
			ret = sqlbox_db_commit(storage);
		if (ret == 0 && sqlbox_fts_index_deferred(storage))
			sqlbox_save_fts_index_later(ctx);
	}
	if (ret < 0) {
		sqlbox_transaction_save_rollback(_ctx);
		return -1;
	}
	return 0;
}

void sqlbox_transaction_save_commit_post(
	struct mail_save_context *_ctx,
	struct mail_index_transaction_commit_result *result)
{
	struct sqlbox_save_context *ctx = SQLBOX_SAVECTX(_ctx);

	_ctx->transaction = NULL; /* transaction is already freed */
	mail_index_sync_set_commit_result(ctx->sync_ctx->index_sync_ctx,
					  result);
	(void)sqlbox_sync_finish(&ctx->sync_ctx, TRUE);
	sqlbox_transaction_save_rollback(_ctx);
}

void sqlbox_transaction_save_rollback(struct mail_save_context *_ctx)
{
	struct sqlbox_save_context *ctx = SQLBOX_SAVECTX(_ctx);
	struct sqlbox_save_mail *mail;

	if (!ctx->finished)
		sqlbox_save_cancel(_ctx);
	if (ctx->sync_ctx != NULL)
		(void)sqlbox_sync_finish(&ctx->sync_ctx, FALSE);
	array_foreach_modifiable(&ctx->mails, mail)
		sqlbox_body_writer_free(&mail->body);
	sqlbox_body_writer_free(&ctx->body);
	pool_unref(&ctx->pool);
}
