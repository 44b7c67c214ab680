/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "buffer.h"
#include "istream.h"
#include "safe-memset.h"
#include "index-mail.h"
#include "sqlbox-storage.h"

/* Mail data comes from SQLite: sizes and dates from the mail/body rows,
   the message from its chunks, loaded one at a time as it is read.  Bodies are stored with CRLF line ends,
   so the physical size is the virtual size. */

static int sqlbox_mail_row(struct mail *_mail, struct sqlbox_mail_row *row_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	struct index_mail *mail = INDEX_MAIL(_mail);
	int ret;

	if (mbox->spool_only) {
		mail_set_expunged(_mail);
		return -1;
	}
	if (!mail_metadata_access_start(_mail))
		return -1;
	_mail->transaction->stats.stat_lookup_count++;
	ret = sqlbox_db_mail_lookup(mbox->storage, mbox->id, _mail->uid,
				    mail->mail.data_pool, row_r);
	if (ret == 0)
		mail_set_expunged(_mail);
	return ret > 0 ? 0 : -1;
}

static int sqlbox_mail_get_received_date(struct mail *_mail, time_t *date_r)
{
	struct index_mail *mail = INDEX_MAIL(_mail);
	struct sqlbox_mail_row row;

	if (index_mail_get_received_date(_mail, date_r) == 0)
		return 0;
	if (sqlbox_mail_row(_mail, &row) < 0)
		return -1;
	mail->data.received_date = row.received;
	*date_r = row.received;
	return 0;
}

static int sqlbox_mail_get_save_date(struct mail *_mail, time_t *date_r)
{
	struct index_mail *mail = INDEX_MAIL(_mail);
	struct sqlbox_mail_row row;

	if (index_mail_get_save_date(_mail, date_r) > 0)
		return 1;
	if (sqlbox_mail_row(_mail, &row) < 0)
		return -1;
	mail->data.save_date = row.saved;
	*date_r = row.saved;
	return 1;
}

static int sqlbox_mail_get_physical_size(struct mail *_mail, uoff_t *size_r)
{
	struct index_mail *mail = INDEX_MAIL(_mail);
	struct sqlbox_mail_row row;

	if (index_mail_get_physical_size(_mail, size_r) == 0)
		return 0;
	if (_mail->saving) {
		struct istream *input = sqlbox_save_get_stream(
			_mail->transaction, _mail->seq, &row.size);

		if (input == NULL) {
			mail_set_expunged(_mail);
			return -1;
		}
		i_stream_unref(&input);
	} else if (sqlbox_mail_row(_mail, &row) < 0)
		return -1;
	mail->data.physical_size = mail->data.virtual_size = row.size;
	*size_r = row.size;
	return 0;
}

static int
sqlbox_mail_get_stream(struct mail *_mail, bool get_body ATTR_UNUSED,
		       struct message_size *hdr_size,
		       struct message_size *body_size,
		       struct istream **stream_r)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(_mail->box);
	struct index_mail *mail = INDEX_MAIL(_mail);
	struct sqlbox_mail_row row;
	struct istream *input;

	if (mail->data.stream == NULL) {
		if (!mail_stream_access_start(_mail))
			return -1;
		if (_mail->saving) {
			/* Saved in this transaction (plugins read it: the
			   Message-ID for mail_log, Sieve...). */
			input = sqlbox_save_get_stream(_mail->transaction,
						       _mail->seq, &row.size);
			if (input == NULL) {
				mail_set_expunged(_mail);
				return -1;
			}
		} else if (sqlbox_mail_row(_mail, &row) < 0) {
			return -1;
		} else {
			/* Chunk by chunk: a large message is never read
			   whole. */
			input = sqlbox_body_istream_create(mbox->storage,
							   row.body_id,
							   row.size);
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
	}
	return index_mail_init_stream(mail, hdr_size, body_size, stream_r);
}

static int
sqlbox_mail_get_special(struct mail *_mail, enum mail_fetch_field field,
			const char **value_r)
{
	struct sqlbox_mail_row row;

	if (field == MAIL_FETCH_GUID) {
		if (sqlbox_mail_row(_mail, &row) < 0)
			return -1;
		*value_r = row.guid;
		return 0;
	}
	return index_mail_get_special(_mail, field, value_r);
}

struct mail_vfuncs sqlbox_mail_vfuncs = {
	.close = index_mail_close,
	.free = index_mail_free,
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
	.get_header_stream = index_mail_get_header_stream,
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
