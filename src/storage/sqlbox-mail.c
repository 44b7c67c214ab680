/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "buffer.h"
#include "istream.h"
#include "istream-header-filter.h"
#include "safe-memset.h"
#include "str.h"
#include "imap-bodystructure.h"
#include "index-mail.h"
#include "sqlbox-header-block.h"
#include "sqlbox-storage.h"

/* Mail data comes from SQLite: sizes and dates from the mail/body rows,
   the message from its chunks, read into the stream's buffer as it is
   read.
   Bodies are stored with CRLF line ends, so the physical size is the
   virtual size.

   sqlbox's index lives in memory, so Dovecot's index cache starts empty
   in every session; what it would keep is in the body's cache rows
   instead (encrypted with the rest of the file): the header block with
   the line counts (table body_header), ENVELOPE and BODYSTRUCTURE (table
   body_cache).  With them, header reads are served from the header block
   (the body stream reads no chunk for them), the header and body sizes
   are known before any parsing, and ENVELOPE/BODY/BODYSTRUCTURE come
   without parsing anything.  Mail saved before the tables existed gets
   its rows the first time its stream is opened, ENVELOPE and
   BODYSTRUCTURE once index-mail computed them.

   The cache rows (about 1 KB of header block, 0.5 KB of ENVELOPE and
   BODYSTRUCTURE) are more than most reads of a mail need, so a mail's
   row is read light first: the mail, its body's size, and its
   body_fields row (schema version 9): the sizes and line counts, and the
   header fields SEARCH reads most (SQLBOX_SEARCH_FIELDS: addresses,
   Subject, Message-ID, List-Id...) picked out of the header block.
   SEARCH and BODY.PEEK[HEADER.FIELDS] on those fields filter them (the
   same bytes as filtering the header block); whatever else wants the
   header block reads the heavy part SQLBOX_ROW_HEADER, the body_header
   row, and what wants ENVELOPE or BODYSTRUCTURE the part
   SQLBOX_ROW_SPECIAL, the body_cache row (sqlbox_mail_row_heavy()):
   each reads the pages of its own table only (schema version 10). */

/* Rows read ahead when mails are read in sequence order (FETCH 1:*,
   SEARCH): one statement, so one read transaction with its WAL read
   lock, per window instead of per mail.  The window doubles from the
   first to the last size while the reads go on in order.

   A window's rows may outlive another session's expunge of their mails
   (and bodies) while the command goes on: what comes from the rows
   alone (sizes, dates, the cached header, ENVELOPE) is then served as
   it was when read, as mdbox serves an expunged mail until its purge;
   a body is never read on a window's row without its mail's row being
   read again first (sqlbox_mail_row_check()), and a body found missing
   all the same is an expunged mail when its row is gone too
   (sqlbox_mail_body_missing()).  The window goes once the main
   connection has seen other sessions' commits.

   Window rows are read light; the first mail that needs a heavy part
   gets it for its whole window by one more statement, and the mail
   object reads its next windows with that part (one statement each, as
   FETCH ENVELOPE, BODY.PEEK[HEADER] and a client's first sync did before
   the rows were light).  A mail whose heavy part that statement no
   longer finds (expunged meanwhile) is looked up alone, as a mail that
   is not in a window: it is then an expunged mail, not served from the
   rows read before.

   A SEARCH the FTS index narrowed (mbox->search_candidates) reads its
   candidates, whose sequences are seldom consecutive, in a sparse
   window: the rows of the mail's UID and of the next candidates after
   it, up to SQLBOX_DB_MAIL_UIDS_MAX UIDs, by one statement (a UID IN
   list).  Such a window covers only the UIDs it asked for: one of them
   without a row is expunged, any other UID (even between two asked) is
   looked up otherwise.  All the rest holds as for a window of
   consecutive UIDs. */
#define SQLBOX_MAIL_WINDOW_FIRST 8
#define SQLBOX_MAIL_WINDOW_MAX 64
#ifndef SQLBOX_MAIL_READ_AHEAD
/* FALSE (CPPFLAGS=-DSQLBOX_MAIL_READ_AHEAD=FALSE): every mail looked up
   alone, for comparisons. */
#  define SQLBOX_MAIL_READ_AHEAD TRUE
#endif

struct sqlbox_mail {
	struct index_mail imail;
	/* The row of the mail at row_uid (strings in the data pool, which
	   close clears). */
	struct sqlbox_mail_row row;
	uint32_t row_uid;

	/* Rows of this mail object's command read ahead (strings in
	   window_pool): every mail with a UID from the first row's to the
	   last row's, as SQLite had them when they were read.  A mail's
	   row does not change but for its cache row's fields, which are
	   updated here as in SQLite; expunges are seen when the window is
	   read again, or when a body is about to be read
	   (sqlbox_mail_row_check()). */
	pool_t window_pool;
	ARRAY_TYPE(sqlbox_mail_row) window;
	unsigned int window_size;
	/* The mailbox's synced_modseq when the window was read: a sync
	   that brought in changes (expunges) since drops it. */
	uint64_t window_modseq;
	/* A sparse window (window_sparse): the UIDs asked, in order. */
	uint32_t window_uids[SQLBOX_DB_MAIL_UIDS_MAX];
	unsigned int window_uids_count;
	/* sqlbox_db_foreign_version() after the window was read: other
	   sessions' commits seen since drop it. */
	unsigned int window_version;
	/* Sequence of the last row looked up (0: none). */
	uint32_t last_seq;
	/* The heavy parts of their rows (enum sqlbox_row_part) mails of
	   this object needed (sqlbox_mail_row_heavy()): rows are read with
	   them from then on. */
	uint8_t rows_parts;
	/* The window is sparse: it covers window_uids only. */
	bool window_sparse:1;
	/* The body stream made for this mail (data.stream before any
	   wrapper), while it asks this mail about missing chunks. */
	struct istream *body_input;
	bool row_loaded:1;
	/* row came from the window: not read again since. */
	bool row_from_window:1;
};

#define SQLBOX_MAIL(s) container_of(INDEX_MAIL(s), struct sqlbox_mail, imail)

struct mail *
sqlbox_mail_alloc(struct mailbox_transaction_context *t,
		  enum mail_fetch_field wanted_fields,
		  struct mailbox_header_lookup_ctx *wanted_headers)
{
	struct sqlbox_mail *mail;
	pool_t pool;

	pool = pool_alloconly_create("mail", 2048);
	mail = p_new(pool, struct sqlbox_mail, 1);
	index_mail_init(&mail->imail, t, wanted_fields, wanted_headers, pool,
			NULL);
	return &mail->imail.mail.mail;
}

static void sqlbox_mail_body_destroyed(struct sqlbox_mail *mail)
{
	mail->body_input = NULL;
}

/* The body stream stops asking this mail (which moves on to another
   one, or goes) about missing chunks; a reference to it kept elsewhere
   then takes them as damage. */
static void sqlbox_mail_body_detach(struct sqlbox_mail *mail)
{
	if (mail->body_input == NULL)
		return;
	sqlbox_body_istream_set_missing(mail->body_input, NULL, NULL);
	i_stream_remove_destroy_callback(mail->body_input,
					 sqlbox_mail_body_destroyed);
	mail->body_input = NULL;
}

static void sqlbox_mail_close(struct mail *_mail)
{
	struct sqlbox_mail *mail = SQLBOX_MAIL(_mail);

	sqlbox_mail_body_detach(mail);
	mail->row_loaded = FALSE;
	mail->row_from_window = FALSE;
	index_mail_close(_mail);
}

static void sqlbox_mail_free(struct mail *_mail)
{
	struct sqlbox_mail *mail = SQLBOX_MAIL(_mail);

	sqlbox_mail_body_detach(mail);
	if (mail->window_pool != NULL) {
		array_free(&mail->window);
		pool_unref(&mail->window_pool);
	}
	index_mail_free(_mail);
}

static const struct sqlbox_mail_row *
sqlbox_mail_window_find(struct sqlbox_mail *mail, uint32_t uid,
			bool *covered_r)
{
	struct sqlbox_mailbox *mbox =
		SQLBOX_MAILBOX(mail->imail.mail.mail.box);
	const struct sqlbox_mail_row *rows;
	unsigned int count, lo = 0, hi, version;

	*covered_r = FALSE;
	if (mail->window_pool == NULL)
		return NULL;
	if (mail->window_modseq != mbox->synced_modseq ||
	    !sqlbox_db_foreign_version(mbox->storage, &version) ||
	    version != mail->window_version) {
		/* Changes came in since it was read: read again (at the
		   first size, sqlbox_mail_lookup()) when it is wanted. */
		array_clear(&mail->window);
		return NULL;
	}
	rows = array_get(&mail->window, &count);
	if (count == 0) {
		/* none read, or dropped: covers nothing (a sparse window
		   whose mails all went is read again, as alone) */
		return NULL;
	}
	if (mail->window_sparse) {
		unsigned int i;

		for (i = 0; i < mail->window_uids_count; i++) {
			if (mail->window_uids[i] >= uid)
				break;
		}
		if (i == mail->window_uids_count ||
		    mail->window_uids[i] != uid)
			return NULL;
	} else if (uid < rows[0].uid || uid > rows[count - 1].uid)
		return NULL;
	*covered_r = TRUE;
	hi = count;
	while (lo < hi) {
		unsigned int mid = (lo + hi) / 2;

		if (rows[mid].uid < uid)
			lo = mid + 1;
		else if (rows[mid].uid > uid)
			hi = mid;
		else
			return &rows[mid];
	}
	return NULL;
}

/* The heavy parts of src among parts (those src read) into dest, from
   pool. */
static void
sqlbox_mail_row_copy_heavy(struct sqlbox_mail_row *dest,
			   const struct sqlbox_mail_row *src,
			   unsigned int parts, pool_t pool)
{
	struct sqlbox_body_cache *cache = &dest->cache;

	parts &= src->parts_read;
	if (parts == 0)
		return;
	dest->parts_read |= parts;
	dest->parts_found = (dest->parts_found & ~parts) |
		(src->parts_found & parts);
	if (src->cached) {
		dest->cached = TRUE;
		cache->hdr_size = src->cache.hdr_size;
		cache->hdr_lines = src->cache.hdr_lines;
		cache->body_lines = src->cache.body_lines;
	}
	if ((parts & SQLBOX_ROW_HEADER) != 0) {
		cache->header_size = src->cache.header_size;
		cache->header = src->cache.header == NULL ? NULL :
			p_memdup(pool, src->cache.header,
				 src->cache.header_size);
	}
	if ((parts & SQLBOX_ROW_SPECIAL) != 0) {
		cache->envelope = p_strdup(pool, src->cache.envelope);
		cache->bodystructure = p_strdup(pool,
						src->cache.bodystructure);
	}
}

/* The window emptied for a new read: made at the first size the first
   time, else cleared (its size is the caller's). */
static void sqlbox_mail_window_init(struct sqlbox_mail *mail)
{
	if (mail->window_pool == NULL) {
		mail->window_pool = pool_alloconly_create(
			"sqlbox mail window", 64 * 1024);
		p_array_init(&mail->window, default_pool,
			     SQLBOX_MAIL_WINDOW_MAX);
		mail->window_size = SQLBOX_MAIL_WINDOW_FIRST;
	} else {
		p_clear(mail->window_pool);
		array_clear(&mail->window);
	}
}

/* The sparse window of the mail's UID, a candidate of the running
   search: its row and the next candidates' by one statement. */
static int sqlbox_mail_window_read_sparse(struct sqlbox_mail *mail)
{
	struct mail *_mail = &mail->imail.mail.mail;
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	const struct seq_range *range;
	unsigned int i, count, n = 0;
	uint32_t uid;

	sqlbox_mail_window_init(mail);
	mail->window_sparse = TRUE;
	range = array_get(mbox->search_candidates, &count);
	for (i = 0; i < count && n < SQLBOX_DB_MAIL_UIDS_MAX; i++) {
		if (range[i].seq2 < _mail->uid)
			continue;
		uid = I_MAX(range[i].seq1, _mail->uid);
		for (;; uid++) {
			mail->window_uids[n++] = uid;
			if (uid == range[i].seq2 ||
			    n == SQLBOX_DB_MAIL_UIDS_MAX)
				break;
		}
	}
	i_assert(n > 0 && mail->window_uids[0] == _mail->uid);
	mail->window_uids_count = n;
	mail->window_modseq = mbox->synced_modseq;
	if (sqlbox_db_mail_lookup_uids(mbox->storage, mbox->id,
				       mail->window_uids, n, mail->rows_parts,
				       mail->window_pool, &mail->window) < 0) {
		array_clear(&mail->window);
		mail->window_uids_count = 0;
		return -1;
	}
	e_debug(_mail->box->event,
		"sqlbox: %u candidate rows read in one statement",
		array_count(&mail->window));
	if (!sqlbox_db_foreign_version(mbox->storage,
				       &mail->window_version)) {
		/* Never with SQLite >= 3.38: no window then. */
		array_clear(&mail->window);
		mail->window_uids_count = 0;
	}
	return 0;
}

/* The mail's row: from the window, else read with the next rows when
   the mail follows the last one looked up in sequence order, else alone.
   1 found, 0 expunged, -1 error. */
static int sqlbox_mail_lookup(struct sqlbox_mail *mail)
{
	struct mail *_mail = &mail->imail.mail.mail;
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	const struct sqlbox_mail_row *wrow;
	pool_t pool = mail->imail.mail.data_pool;
	bool sequential, covered;

	sequential = SQLBOX_MAIL_READ_AHEAD && mail->last_seq != 0 &&
		_mail->seq == mail->last_seq + 1;
	mail->last_seq = _mail->seq;
	mail->row_from_window = FALSE;
	wrow = sqlbox_mail_window_find(mail, _mail->uid, &covered);
	if (!covered && !sequential && SQLBOX_MAIL_READ_AHEAD &&
	    mbox->search_candidates != NULL &&
	    seq_range_exists(mbox->search_candidates, _mail->uid)) {
		if (sqlbox_mail_window_read_sparse(mail) < 0)
			return -1;
		wrow = sqlbox_mail_window_find(mail, _mail->uid, &covered);
		mail->window_size = SQLBOX_MAIL_WINDOW_FIRST;
	} else if (!covered && sequential) {
		mail->window_sparse = FALSE;
		if (mail->window_pool != NULL) {
			/* An empty one was dropped (or found no row): from
			   the first size again. */
			mail->window_size = array_count(&mail->window) == 0 ?
				SQLBOX_MAIL_WINDOW_FIRST :
				I_MIN(mail->window_size * 2,
				      SQLBOX_MAIL_WINDOW_MAX);
		}
		sqlbox_mail_window_init(mail);
		mail->window_modseq = mbox->synced_modseq;
		if (sqlbox_db_mail_lookup_range(mbox->storage, mbox->id,
						_mail->uid, mail->window_size,
						mail->rows_parts,
						mail->window_pool,
						&mail->window) < 0) {
			array_clear(&mail->window);
			return -1;
		}
		if (!sqlbox_db_foreign_version(mbox->storage,
					       &mail->window_version)) {
			/* Never with SQLite >= 3.38: no window then. */
			array_clear(&mail->window);
		}
		wrow = sqlbox_mail_window_find(mail, _mail->uid, &covered);
	} else if (!covered) {
		mail->window_size = SQLBOX_MAIL_WINDOW_FIRST;
	}
	if (!covered) {
		return sqlbox_db_mail_lookup(mbox->storage, mbox->id,
					     _mail->uid, mail->rows_parts, pool,
					     &mail->row);
	}
	if (wrow == NULL)
		return 0;
	mail->row_from_window = TRUE;
	/* The mail's copy lives as long as its data: the window may be
	   read again meanwhile (and with its own strings, the window's
	   stay untouched by what is set on the mail's row). */
	mail->row = *wrow;
	mail->row.guid = p_strdup(pool, wrow->guid);
	if (wrow->fields != NULL) {
		mail->row.fields = p_memdup(pool, wrow->fields,
					    wrow->fields_size);
	}
	sqlbox_mail_row_copy_heavy(&mail->row, wrow, wrow->parts_read, pool);
	return 1;
}

/* The mail's cache row changed in SQLite: its window row too. */
static void sqlbox_mail_window_update(struct sqlbox_mail *mail)
{
	struct sqlbox_mail_row *wrow;
	bool covered;

	wrow = (struct sqlbox_mail_row *)sqlbox_mail_window_find(
		mail, mail->row_uid, &covered);
	if (wrow == NULL || wrow->body_id != mail->row.body_id)
		return;
	/* The parts of the mail's row that were changed were read */
	sqlbox_mail_row_copy_heavy(wrow, &mail->row, mail->row.parts_read,
				   mail->window_pool);
}

/* Sizes from the cache row: index-mail then never scans the message for
   them. */
static void sqlbox_mail_apply_cache(struct sqlbox_mail *mail)
{
	struct index_mail_data *data = &mail->imail.data;
	const struct sqlbox_mail_row *row = &mail->row;

	if (!row->cached || data->hdr_size_set)
		return;
	data->hdr_size.physical_size = data->hdr_size.virtual_size =
		row->cache.hdr_size;
	data->hdr_size.lines = row->cache.hdr_lines;
	data->body_size.physical_size = data->body_size.virtual_size =
		row->size - row->cache.hdr_size;
	data->body_size.lines = row->cache.body_lines;
	data->hdr_size_set = data->body_size_set = TRUE;
	data->physical_size = data->virtual_size = row->size;
}

static int
sqlbox_mail_row(struct mail *_mail, const struct sqlbox_mail_row **row_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	struct sqlbox_mail *mail = SQLBOX_MAIL(_mail);
	int ret;

	if (mbox->spool_only) {
		mail_set_expunged(_mail);
		return -1;
	}
	if (mail->row_loaded && mail->row_uid == _mail->uid) {
		*row_r = &mail->row;
		return 0;
	}
	if (!mail_metadata_access_start(_mail))
		return -1;
	_mail->transaction->stats.stat_lookup_count++;
	ret = sqlbox_mail_lookup(mail);
	if (ret == 0)
		mail_set_expunged(_mail);
	if (ret <= 0)
		return -1;
	mail->row_loaded = TRUE;
	mail->row_uid = _mail->uid;
	sqlbox_mail_apply_cache(mail);
	*row_r = &mail->row;
	return 0;
}

/* Heavy parts of the mail's row (enum sqlbox_row_part: the header block
   of its body_header row, ENVELOPE and BODYSTRUCTURE of its body_cache
   row), once its row was looked up (sqlbox_mail_row()).  A row of the
   window gets them with the other rows of the window that lack them, by
   one statement; a row the statement does not find (its mail expunged
   since the window was read), or one read alone, is read again alone,
   with the parts, as a mail that is not in a window.  This mail object
   then reads its rows with these parts (rows_parts): a command that
   wants them (FETCH ENVELOPE, BODY.PEEK[HEADER]) pays one statement per
   window, and reads only the tables it needs.  0 ok, -1 error (expunged
   marked). */
static int sqlbox_mail_row_heavy(struct sqlbox_mail *mail, unsigned int parts)
{
	struct mail *_mail = &mail->imail.mail.mail;
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	struct sqlbox_mail_row *wrow, *rows;
	unsigned int count;
	bool covered;
	int ret;

	i_assert(mail->row_loaded && mail->row_uid == _mail->uid);
	if ((mail->row.parts_read & parts) == parts)
		return 0;
	mail->rows_parts |= parts;
	if (mail->row_from_window) {
		wrow = (struct sqlbox_mail_row *)sqlbox_mail_window_find(
			mail, _mail->uid, &covered);
		if (wrow != NULL && (wrow->parts_read & parts) != parts) {
			rows = array_get_modifiable(&mail->window, &count);
			if (sqlbox_db_mail_lookup_heavy(mbox->storage,
							mbox->id, rows, count,
							parts,
							mail->window_sparse,
							mail->window_pool) < 0)
				return -1;
		}
		if (wrow != NULL && (wrow->parts_read & parts) == parts &&
		    wrow->body_id == mail->row.body_id) {
			sqlbox_mail_row_copy_heavy(&mail->row, wrow, parts,
				mail->imail.mail.data_pool);
			sqlbox_mail_apply_cache(mail);
			return 0;
		}
	}
	ret = sqlbox_db_mail_lookup(mbox->storage, mbox->id, _mail->uid,
				    mail->rows_parts,
				    mail->imail.mail.data_pool, &mail->row);
	if (ret == 0) {
		/* As sqlbox_mail_row_check() finds it: the window goes */
		if (mail->window_pool != NULL)
			array_clear(&mail->window);
		mail_set_expunged(_mail);
	}
	if (ret <= 0)
		return -1;
	/* Read now: a body read needs no check first */
	mail->row_from_window = FALSE;
	sqlbox_mail_apply_cache(mail);
	return 0;
}

/* The mail's row read again now, before its body is read on a row from
   the window: 1 it is there, 0 it is expunged (marked so; the window
   goes), -1 error. */
static int sqlbox_mail_row_check(struct sqlbox_mail *mail)
{
	struct mail *_mail = &mail->imail.mail.mail;
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	int64_t body_id;
	int ret;

	ret = sqlbox_db_mail_body_id(mbox->storage, mbox->id, _mail->uid,
				     &body_id);
	if (ret < 0)
		return -1;
	if (ret == 0) {
		/* A UID is never given again: the mail is gone. */
		if (mail->window_pool != NULL)
			array_clear(&mail->window);
		mail_set_expunged(_mail);
		return 0;
	}
	if (body_id != mail->row.body_id) {
		mail_set_critical(_mail, "sqlbox: the mail's body changed"
				  " from %"PRId64" to %"PRId64,
				  mail->row.body_id, body_id);
		return -1;
	}
	mail->row_from_window = FALSE;
	return 1;
}

/* A body stream of this mail found a chunk missing: expunged by another
   session since the mail's row was read if the row is gone too, else a
   damaged body (sqlbox_body_missing_callback_t). */
static int sqlbox_mail_body_missing(void *context)
{
	struct sqlbox_mail *mail = context;
	int ret = sqlbox_mail_row_check(mail);

	return ret < 0 ? -1 : (ret == 0 ? 1 : 0);
}

static void
sqlbox_mail_body_attach(struct sqlbox_mail *mail, struct istream *input)
{
	sqlbox_body_istream_set_missing(input, sqlbox_mail_body_missing,
					mail);
	mail->body_input = input;
	i_stream_add_destroy_callback(input, sqlbox_mail_body_destroyed,
				      mail);
}

/* A body wanted whole (get_body) of one chunk at most (nearly every
   mail): read into the stream's buffer before the stream is handed to
   Dovecot, where a read error is an internal error even when the mail
   was expunged meanwhile (index-search.c).  A mail expunged since its
   row was read fails here, as an expunged mail; later reads, and reads
   again from 0, come from the buffer.  A larger body is not: a partial
   FETCH of it (BODY[]<600K.4096>) would decrypt its whole first chunk
   for nothing (body-bench's partial: 0.64 -> 0.30x mdbox), and its later
   chunks keep the race anyway.  0 ok, -1 error. */
static int sqlbox_mail_body_prefetch(struct sqlbox_mail *mail)
{
	struct mail *_mail = &mail->imail.mail.mail;
	struct istream *input = mail->body_input;
	const unsigned char *data;
	size_t size;

	if (input == NULL || mail->row.size > SQLBOX_ISTREAM_BUFFER_BYTES)
		return 0;
	if (i_stream_read_bytes(input, &data, &size, mail->row.size) > 0 ||
	    input->stream_errno == 0)
		return 0;
	if (!_mail->expunged) {
		mail_set_critical(_mail, "read(%s) failed: %s",
				  i_stream_get_name(input),
				  i_stream_get_error(input));
	}
	return -1;
}

/* A mail saved before body_cache existed: its row, from the body read
   once.  Failing to store it costs speed, not the answer. */
static void sqlbox_mail_cache_fill(struct mail *_mail)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	struct sqlbox_mail *mail = SQLBOX_MAIL(_mail);
	struct sqlbox_storage *storage = mbox->storage;
	struct sqlbox_body_cache cache;
	struct istream *input;
	int ret;

	input = sqlbox_body_istream_create(storage, mail->row.body_id,
					   mail->row.size);
	sqlbox_body_istream_set_missing(input, sqlbox_mail_body_missing,
					mail);
	ret = sqlbox_body_cache_parse(input, mail->imail.mail.data_pool,
				      &cache);
	/* Expunged meanwhile: the caller sees the mail marked so. */
	if (ret < 0 && !_mail->expunged) {
		mail_set_critical(_mail, "sqlbox: reading %s failed: %s",
				  i_stream_get_name(input),
				  i_stream_get_error(input));
	}
	i_stream_unref(&input);
	if (ret <= 0)
		return;
	if (sqlbox_db_begin(storage) < 0)
		return;
	if (sqlbox_db_cache_insert(storage, mail->row.body_id, &cache) < 0) {
		sqlbox_db_rollback(storage);
		return;
	}
	if (sqlbox_db_commit(storage) < 0)
		return;
	mail->row.cache = cache;
	mail->row.cached = TRUE;
	mail->row.parts_read = mail->row.parts_found = SQLBOX_ROW_PARTS_ALL;
	sqlbox_mail_window_update(mail);
	sqlbox_mail_apply_cache(mail);
}

static int sqlbox_mail_get_received_date(struct mail *_mail, time_t *date_r)
{
	struct index_mail *mail = INDEX_MAIL(_mail);
	const struct sqlbox_mail_row *row;

	if (index_mail_get_received_date(_mail, date_r) == 0)
		return 0;
	if (sqlbox_mail_row(_mail, &row) < 0)
		return -1;
	mail->data.received_date = row->received;
	*date_r = row->received;
	return 0;
}

static int sqlbox_mail_get_save_date(struct mail *_mail, time_t *date_r)
{
	struct index_mail *mail = INDEX_MAIL(_mail);
	const struct sqlbox_mail_row *row;

	if (index_mail_get_save_date(_mail, date_r) > 0)
		return 1;
	if (sqlbox_mail_row(_mail, &row) < 0)
		return -1;
	mail->data.save_date = row->saved;
	*date_r = row->saved;
	return 1;
}

static int sqlbox_mail_get_physical_size(struct mail *_mail, uoff_t *size_r)
{
	struct index_mail *mail = INDEX_MAIL(_mail);
	const struct sqlbox_mail_row *row;
	uoff_t size;

	if (index_mail_get_physical_size(_mail, size_r) == 0)
		return 0;
	if (_mail->saving) {
		struct istream *input = sqlbox_save_get_stream(
			_mail->transaction, _mail->seq, &size);

		if (input == NULL) {
			mail_set_expunged(_mail);
			return -1;
		}
		i_stream_unref(&input);
	} else if (sqlbox_mail_row(_mail, &row) < 0)
		return -1;
	else
		size = row->size;
	mail->data.physical_size = mail->data.virtual_size = size;
	*size_r = size;
	return 0;
}

static int
sqlbox_mail_get_stream(struct mail *_mail, bool get_body,
		       struct message_size *hdr_size,
		       struct message_size *body_size,
		       struct istream **stream_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	struct index_mail *mail = INDEX_MAIL(_mail);
	struct sqlbox_mail *smail = SQLBOX_MAIL(_mail);
	const struct sqlbox_mail_row *row;
	struct istream *input;
	uoff_t size;
	bool whole = (mail->data.access_part & (READ_BODY | PARSE_BODY)) != 0;

	if (mail->data.stream == NULL) {
		if (!mail_stream_access_start(_mail))
			return -1;
		if (_mail->saving) {
			/* Saved in this transaction (plugins read it: the
			   Message-ID for mail_log, Sieve...). */
			input = sqlbox_save_get_stream(_mail->transaction,
						       _mail->seq, &size);
			if (input == NULL) {
				mail_set_expunged(_mail);
				return -1;
			}
		} else if (sqlbox_mail_row(_mail, &row) < 0 ||
			   (!(whole && row->cached) &&
			    sqlbox_mail_row_heavy(smail,
						  SQLBOX_ROW_HEADER) < 0)) {
			/* The header part's block (body_header) serves
			   header reads without a chunk.  A read of the body
			   (FETCH BODY[], BINARY[], BODY[TEXT], a parse) reads
			   chunk 0 all the same and has the sizes from the
			   light row: the row stays light, and so do the
			   window's next rows (a body_cache row was about
			   1.5 KB of pages read and decrypted per mail: 15 %
			   of body-bench's body100, bench/README.md). */
			return -1;
		} else {
			bool header = (row->parts_found &
				       SQLBOX_ROW_HEADER) != 0;
			/* The body has no header row: made from it */
			bool fill = !header && !(whole && row->cached);

			/* A body read on a window's row: the mail may have
			   been expunged since (SEARCH would log a body that
			   fails to read as an error, FETCH drop the
			   connection in its literal). */
			if ((get_body || fill) &&
			    smail->row_from_window &&
			    sqlbox_mail_row_check(smail) <= 0)
				return -1;
			if (fill) {
				sqlbox_mail_cache_fill(_mail);
				if (_mail->expunged)
					return -1;
				header = (row->parts_found &
					  SQLBOX_ROW_HEADER) != 0;
			}
			/* Header reads (and a header parser's peek at the
			   next byte) from the cache row, the body a buffer
			   at a time: a large message is never read whole. */
			input = sqlbox_body_istream_create_cached(
				mbox->storage, row->body_id, row->size,
				header ? row->cache.header : NULL,
				header ? row->cache.header_size : 0, whole);
			sqlbox_mail_body_attach(smail, input);
			if (get_body &&
			    sqlbox_mail_body_prefetch(smail) < 0) {
				i_stream_unref(&input);
				return -1;
			}
		}
		_mail->transaction->stats.open_lookup_count++;
		i_stream_set_name(input, t_strdup_printf("sqlbox:%s/%u",
			_mail->box->vname, _mail->uid));
		if (mail->mail.v.istream_opened != NULL) {
			if (mail->mail.v.istream_opened(_mail, &input) < 0) {
				i_stream_unref(&input);
				return -1;
			}
		}
		mail->data.stream = input;
	} else if (get_body && !_mail->saving && smail->row_loaded &&
		   smail->row_uid == _mail->uid) {
		/* The stream was opened for the header. */
		if (smail->row_from_window &&
		    sqlbox_mail_row_check(smail) <= 0)
			return -1;
		if (sqlbox_mail_body_prefetch(smail) < 0)
			return -1;
	}
	return index_mail_init_stream(mail, hdr_size, body_size, stream_r);
}

/* The previous header stream of this mail, as index-mail drops it. */
static void sqlbox_mail_filter_stream_destroy(struct index_mail *mail)
{
	const unsigned char *data;
	size_t size;

	if (mail->data.filter_stream == NULL)
		return;
	/* One made by index_mail_get_header_stream() parses the header as
	   it is read: finish that. */
	while (i_stream_read_more(mail->data.filter_stream, &data, &size) > 0)
		i_stream_skip(mail->data.filter_stream, size);
	if (mail->data.header_parser_initialized)
		index_mail_parse_header_deinit(mail);
	i_stream_destroy(&mail->data.filter_stream);
}

static void
sqlbox_mail_header_callback(struct header_filter_istream *input ATTR_UNUSED,
			    struct message_header_line *hdr,
			    bool *matched ATTR_UNUSED, struct index_mail *mail)
{
	index_mail_parse_header(NULL, hdr, mail);
}

static bool
sqlbox_mail_headers_have_date(const struct mailbox_header_lookup_ctx *headers)
{
	for (unsigned int i = 0; i < headers->count; i++) {
		if (strcasecmp(headers->name[i], "Date") == 0)
			return TRUE;
	}
	return FALSE;
}

/* BODY.PEEK[HEADER.FIELDS (...)] and SEARCH on headers: the wanted
   header fields filtered out of the header block of the cache row, as
   index-mail filters them out of the message (the same filter, the same
   parse callback, the same bytes), without opening the body. */
static int
sqlbox_mail_get_header_stream(struct mail *_mail,
			      struct mailbox_header_lookup_ctx *headers,
			      struct istream **stream_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	struct sqlbox_mail *mail = SQLBOX_MAIL(_mail);
	struct index_mail_data *data = &mail->imail.data;
	const struct sqlbox_mail_row *row;
	struct istream *input;
	unsigned char *filtered;
	ssize_t filtered_size;

	/* A lookup that may only use Dovecot's cache (SEARCH's first two
	   passes) is answered from the cache row, which is sqlbox's cache:
	   otherwise SEARCH on header fields ran three passes per mail, two
	   of them for nothing (about a quarter of its CPU time).  Not
	   when Date is wanted: SEARCH SENT* then matches from the header in
	   the first pass but from the parsed sent date (mail_get_date()) in
	   the last, and an unparsable Date answers differently; refused as
	   index-mail refuses it, the last pass decides, as with the stock
	   storages (test_sqlbox_cache.py compares with maildir). */
	if (_mail->saving || mbox->spool_only ||
	    (_mail->lookup_abort != MAIL_LOOKUP_ABORT_NEVER &&
	     sqlbox_mail_headers_have_date(headers)))
		return index_mail_get_header_stream(_mail, headers, stream_r);
	if (sqlbox_mail_row(_mail, &row) < 0)
		return -1;
	/* index-mail parses the whole header first when it builds
	   BODYSTRUCTURE, which also fills the session's cache (the sent
	   date: SEARCH SENTBEFORE on an unparsable Date header then matches
	   from the cache, not from the header): its way then. */
	if (data->save_bodystructure_header)
		return index_mail_get_header_stream(_mail, headers, stream_r);
	/* A plain header block: its wanted lines picked out by their names,
	   as index-mail answers from its cache (a stream of the fields, no
	   parse callback).  Fields of SQLBOX_SEARCH_FIELDS come from the
	   light row's search fields, which give the same bytes
	   (test-header-block.c), without the header block (even when the
	   row became heavy and found no body_cache row: they are the
	   body's all the same).  Otherwise Dovecot's own filter and
	   callback on the header block. */
	if (row->fields != NULL &&
	    sqlbox_header_names_searchable(headers->name, headers->count)) {
		filtered = p_malloc(mail->imail.mail.data_pool,
				    row->fields_size + 2);
		filtered_size = sqlbox_header_block_filter(row->fields,
			row->fields_size, headers->name, headers->count,
			filtered);
		if (filtered_size >= 0) {
			sqlbox_mail_filter_stream_destroy(&mail->imail);
			_mail->transaction->stats.cache_hit_count++;
			data->filter_stream = i_stream_create_from_data(
				filtered, filtered_size);
			*stream_r = data->filter_stream;
			return 0;
		}
	}
	if (sqlbox_mail_row_heavy(mail, SQLBOX_ROW_HEADER) < 0)
		return -1;
	if ((row->parts_found & SQLBOX_ROW_HEADER) == 0)
		return index_mail_get_header_stream(_mail, headers, stream_r);
	sqlbox_mail_filter_stream_destroy(&mail->imail);
	_mail->transaction->stats.cache_hit_count++;
	filtered = p_malloc(mail->imail.mail.data_pool, row->cache.hdr_size + 2);
	filtered_size = sqlbox_header_block_filter(row->cache.header,
						   row->cache.hdr_size,
						   headers->name,
						   headers->count, filtered);
	if (filtered_size >= 0) {
		data->filter_stream = i_stream_create_from_data(filtered,
								filtered_size);
		*stream_r = data->filter_stream;
		return 0;
	}
	input = i_stream_create_from_data(row->cache.header,
					  row->cache.hdr_size);
	index_mail_parse_header_init(&mail->imail, headers);
	data->filter_stream = i_stream_create_header_filter(input,
		HEADER_FILTER_INCLUDE | HEADER_FILTER_ADD_MISSING_EOH |
		HEADER_FILTER_HIDE_BODY, headers->name, headers->count,
		sqlbox_mail_header_callback, &mail->imail);
	i_stream_unref(&input);
	*stream_r = data->filter_stream;
	return 0;
}

/* ENVELOPE, BODY, BODYSTRUCTURE: from the cache row if it has them,
   else computed by index-mail (from the header block alone for ENVELOPE)
   and stored in the row. */
static int
sqlbox_mail_get_imap_special(struct mail *_mail, enum mail_fetch_field field,
			     const char **value_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	struct sqlbox_mail *mail = SQLBOX_MAIL(_mail);
	struct index_mail_data *data = &mail->imail.data;
	const struct sqlbox_mail_row *row;
	const char *column, *value, *error;
	bool had_bodystructure;

	if (sqlbox_mail_row(_mail, &row) < 0 ||
	    sqlbox_mail_row_heavy(mail, SQLBOX_ROW_SPECIAL) < 0)
		return -1;
	if (field == MAIL_FETCH_IMAP_ENVELOPE) {
		if (data->envelope == NULL && row->cache.envelope != NULL)
			data->envelope = row->cache.envelope;
	} else if (data->bodystructure == NULL &&
		   row->cache.bodystructure != NULL) {
		data->bodystructure = row->cache.bodystructure;
	}
	if (field == MAIL_FETCH_IMAP_BODY && data->body == NULL &&
	    data->bodystructure != NULL) {
		string_t *str = str_new(mail->imail.mail.data_pool, 128);

		if (imap_body_parse_from_bodystructure(data->bodystructure,
						       str, &error) == 0)
			data->body = str_c(str);
	}
	had_bodystructure = row->cache.bodystructure != NULL;
	if (index_mail_get_special(_mail, field, value_r) < 0)
		return -1;
	/* The stream may have just filled the rows
	   (sqlbox_mail_cache_fill); without the sizes of a row there is
	   nothing to store. */
	if (!mail->row.cached)
		return 0;
	if (field == MAIL_FETCH_IMAP_ENVELOPE) {
		if (row->cache.envelope != NULL)
			return 0;
		column = "envelope";
		value = mail->row.cache.envelope = *value_r;
	} else {
		if (had_bodystructure || data->bodystructure == NULL)
			return 0;
		column = "bodystructure";
		value = mail->row.cache.bodystructure = data->bodystructure;
	}
	sqlbox_mail_window_update(mail);
	if (sqlbox_db_cache_set(mbox->storage, row->body_id,
				&mail->row.cache, column, value) < 0) {
		/* Only slower next time. */
		e_error(_mail->box->event, "sqlbox: caching %s failed: %s",
			column, mail_storage_get_last_internal_error(
				_mail->box->storage, NULL));
	}
	return 0;
}

static int
sqlbox_mail_get_special(struct mail *_mail, enum mail_fetch_field field,
			const char **value_r)
{
	const struct sqlbox_mail_row *row;

	switch (field) {
	case MAIL_FETCH_GUID:
		if (sqlbox_mail_row(_mail, &row) < 0)
			return -1;
		*value_r = row->guid;
		return 0;
	case MAIL_FETCH_IMAP_ENVELOPE:
	case MAIL_FETCH_IMAP_BODY:
	case MAIL_FETCH_IMAP_BODYSTRUCTURE:
		if (!_mail->saving)
			return sqlbox_mail_get_imap_special(_mail, field,
							    value_r);
		break;
	default:
		break;
	}
	return index_mail_get_special(_mail, field, value_r);
}

struct mail_vfuncs sqlbox_mail_vfuncs = {
	.close = sqlbox_mail_close,
	.free = sqlbox_mail_free,
	.set_seq = index_mail_set_seq,
	.set_uid = index_mail_set_uid,
	.set_uid_cache_updates = index_mail_set_uid_cache_updates,
	.prefetch = index_mail_prefetch,
	.precache = index_mail_precache,
	.add_temp_wanted_fields = index_mail_add_temp_wanted_fields,

	.get_flags = index_mail_get_flags,
	.get_keywords = index_mail_get_keywords,
	.get_keyword_indexes = index_mail_get_keyword_indexes,
	.get_modseq = index_mail_get_modseq,
	.get_pvt_modseq = index_mail_get_pvt_modseq,
	.get_parts = index_mail_get_parts,
	.get_date = index_mail_get_date,
	.get_received_date = sqlbox_mail_get_received_date,
	.get_save_date = sqlbox_mail_get_save_date,
	.get_virtual_size = sqlbox_mail_get_physical_size,
	.get_physical_size = sqlbox_mail_get_physical_size,
	.get_first_header = index_mail_get_first_header,
	.get_headers = index_mail_get_headers,
	.get_header_stream = sqlbox_mail_get_header_stream,
	.get_stream = sqlbox_mail_get_stream,
	.get_binary_stream = index_mail_get_binary_stream,
	.get_special = sqlbox_mail_get_special,
	.get_backend_mail = index_mail_get_backend_mail,
	.update_flags = index_mail_update_flags,
	.update_keywords = index_mail_update_keywords,
	.update_modseq = index_mail_update_modseq,
	.update_pvt_modseq = index_mail_update_pvt_modseq,
	.update_pop3_uidl = NULL,
	.expunge = index_mail_expunge,
	.set_cache_corrupted = index_mail_set_cache_corrupted,
	.istream_opened = index_mail_opened,
};
