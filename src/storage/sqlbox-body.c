/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "buffer.h"
#include "ioloop.h"
#include "safe-memset.h"
#include "istream-private.h"
#include "istream-concat.h"
#include "memarea.h"
#include "message-size.h"
#include "ostream-private.h"
#include "seq-range-array.h"
#include "mail-search.h"
#include "index-search-private.h"
#include "sqlbox-storage.h"

/* Message bodies move through SQLite one chunk at a time, so that neither
   an APPEND nor a FETCH of a large message holds it in memory whole:

   - saving: an ostream fills one chunk buffer; each full chunk is
     written at once in a short transaction of its own, to a body row
     marked pending (table body_pending: no sync or GC touches it, and a
     crashed save's leftovers are dropped once stale).  The commit writes
     the last, partial chunk, the size, and clears the mark, inside the
     transaction that inserts the mail rows.
   - reading: a seekable istream whose every read is one incremental
     blob read straight into the stream's buffer (all chunks but the last
     have the size of the first): 64 KiB after a seek, the rest of the
     chunk when reading on, so that the pages decrypted are those of the
     bytes returned, a chunk's overflow chain is walked once and nothing
     is copied twice; a header block from the body's cache row answers
     reads inside it without any chunk.  The buffer is one kept between
     streams, and the reads go through a second connection with a small
     page cache (sqlbox_db_chunk_read_at()), all of a command's in one
     read transaction of it with one blob handle moved from chunk to
     chunk (ended at the next wait of the ioloop, write, sync, mailbox
     transaction end or close: sqlbox_db_body_reads_end()). */

struct sqlbox_body_writer {
	struct sqlbox_storage *storage;
	/* Bytes not yet written to SQLite (everything when in_memory). */
	buffer_t *chunk;
	/* 0 until the first full chunk went to SQLite. */
	int64_t body_id;
	uint32_t chunks_written;
	uoff_t size;
	bool in_memory:1;
	bool failed:1;
	bool committed:1;
};

struct sqlbox_body_ostream {
	struct ostream_private ostream;
	struct sqlbox_body_writer *writer;
};

struct sqlbox_body_istream {
	struct istream_private istream;
	struct sqlbox_storage *storage;
	int64_t body_id;
	uoff_t size;
	/* The body's first bytes from its cache row (its header block and
	   one more; NULL: none), served without reading a chunk. */
	buffer_t *header;
	size_t header_size;
	/* Size of every chunk but the last, learned from chunk 0's row. */
	size_t chunk_bytes;
	/* Where the last chunk read ended: a read from there is a whole
	   body being sent or parsed. */
	uoff_t next_offset;
	/* How far the buffer was ever filled: what the wipe covers. */
	size_t dirty;
	/* Asked when a chunk is missing: is the mail expunged?  (NULL:
	   a missing chunk is a damaged body.) */
	sqlbox_body_missing_callback_t *missing;
	void *missing_context;
	/* The whole body is wanted (a FETCH of BODY[], a parse): no
	   short read after the cached header. */
	bool whole:1;
	/* Read once and freed (the FTS indexer's): a buffer of its own,
	   not the spare (sqlbox_body_istream_create_once()). */
	bool once:1;
};

/* One read buffer of SQLBOX_ISTREAM_BUFFER_BYTES kept between body
   streams (one at a time), zeroed whenever it is not lent out: a FETCH
   of many bodies would otherwise allocate, zero, page-fault in and wipe
   a buffer of the message's size per message (a fifth of its CPU time in
   a new session). */
static struct {
	unsigned char *data;
	/* Bytes to wipe when it comes back. */
	size_t dirty;
	bool lent;
	/* The plugin was unloaded while it was lent: free it on return. */
	bool orphan;
} sqlbox_body_spare;

static void sqlbox_buffer_wipe_free(buffer_t **buf)
{
	if (*buf == NULL)
		return;
	safe_memset(buffer_get_modifiable_data(*buf, NULL), 0, (*buf)->used);
	buffer_free(buf);
}

/* ---- writer ---- */

#define SQLBOX_WRITER_INITIAL_BYTES 4096

struct sqlbox_body_writer *
sqlbox_body_writer_create(struct sqlbox_storage *storage, bool in_memory)
{
	struct sqlbox_body_writer *writer;

	writer = i_new(struct sqlbox_body_writer, 1);
	writer->storage = storage;
	writer->in_memory = in_memory;
	/* Start small and grow up to one chunk: a MULTIAPPEND keeps every
	   message's writer until the transaction commits, and 1,000 full
	   256 KiB buffers were past the imap process's vsz_limit. */
	writer->chunk = buffer_create_dynamic(default_pool,
					      SQLBOX_WRITER_INITIAL_BYTES);
	return writer;
}

static int sqlbox_body_writer_flush(struct sqlbox_body_writer *writer)
{
	struct sqlbox_storage *storage = writer->storage;
	int ret;

	if (sqlbox_db_begin(storage) < 0)
		return -1;
	ret = 0;
	if (writer->body_id == 0)
		ret = sqlbox_db_body_pending_insert(storage, &writer->body_id);
	if (ret == 0) {
		ret = sqlbox_db_chunk_insert(storage, writer->body_id,
					     writer->chunks_written,
					     writer->chunk->data,
					     writer->chunk->used);
	}
	if (ret < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	if (sqlbox_db_commit(storage) < 0)
		return -1;
	writer->chunks_written++;
	safe_memset(buffer_get_modifiable_data(writer->chunk, NULL), 0,
		    writer->chunk->used);
	buffer_set_used_size(writer->chunk, 0);
	return 0;
}

static int
sqlbox_body_writer_append(struct sqlbox_body_writer *writer,
			  const unsigned char *data, size_t size)
{
	size_t n;

	while (size > 0) {
		n = writer->in_memory ? size :
			I_MIN(size, SQLBOX_CHUNK_BYTES - writer->chunk->used);
		buffer_append(writer->chunk, data, n);
		writer->size += n;
		data += n;
		size -= n;
		if (!writer->in_memory &&
		    writer->chunk->used == SQLBOX_CHUNK_BYTES &&
		    sqlbox_body_writer_flush(writer) < 0) {
			writer->failed = TRUE;
			return -1;
		}
	}
	return 0;
}

buffer_t *sqlbox_body_writer_data(struct sqlbox_body_writer *writer)
{
	i_assert(writer->in_memory);
	return writer->chunk;
}

int sqlbox_body_writer_commit(struct sqlbox_body_writer *writer,
			      int64_t *body_id_r)
{
	struct sqlbox_storage *storage = writer->storage;

	i_assert(!writer->in_memory && !writer->failed);
	i_assert(storage->txn_depth > 0);

	if (writer->body_id == 0) {
		/* Small enough to have stayed in memory. */
		if (sqlbox_db_body_insert(storage, writer->chunk->data,
					  writer->chunk->used,
					  &writer->body_id) < 0)
			return -1;
	} else {
		if (writer->chunk->used > 0 &&
		    sqlbox_db_chunk_insert(storage, writer->body_id,
					   writer->chunks_written,
					   writer->chunk->data,
					   writer->chunk->used) < 0)
			return -1;
		if (sqlbox_db_body_pending_finish(storage, writer->body_id,
						  writer->size) < 0)
			return -1;
	}
	writer->committed = TRUE;
	*body_id_r = writer->body_id;
	return 0;
}

void sqlbox_body_writer_free(struct sqlbox_body_writer **_writer)
{
	struct sqlbox_body_writer *writer = *_writer;

	if (writer == NULL)
		return;
	*_writer = NULL;
	/* A save that never committed: drop its chunks now rather than
	   leave them for the stale-pending GC. */
	if (writer->body_id != 0 && !writer->committed &&
	    writer->storage->txn_depth == 0 &&
	    sqlbox_db_body_pending_abort(writer->storage,
					 writer->body_id) < 0) {
		e_error(writer->storage->storage.event,
			"sqlbox: dropping an aborted save failed: %s",
			mail_storage_get_last_internal_error(
				&writer->storage->storage, NULL));
	}
	sqlbox_buffer_wipe_free(&writer->chunk);
	i_free(writer);
}

static ssize_t
sqlbox_body_ostream_sendv(struct ostream_private *stream,
			  const struct const_iovec *iov,
			  unsigned int iov_count)
{
	struct sqlbox_body_ostream *bstream =
		container_of(stream, struct sqlbox_body_ostream, ostream);
	struct sqlbox_body_writer *writer = bstream->writer;
	ssize_t ret = 0;

	for (unsigned int i = 0; i < iov_count; i++) {
		if (sqlbox_body_writer_append(writer, iov[i].iov_base,
					      iov[i].iov_len) < 0) {
			io_stream_set_error(&stream->iostream, "%s",
				mail_storage_get_last_internal_error(
					&writer->storage->storage, NULL));
			stream->ostream.stream_errno = EIO;
			return -1;
		}
		stream->ostream.offset += iov[i].iov_len;
		ret += iov[i].iov_len;
	}
	return ret;
}

struct ostream *sqlbox_body_writer_ostream(struct sqlbox_body_writer *writer)
{
	struct sqlbox_body_ostream *bstream;
	struct ostream *output;

	bstream = i_new(struct sqlbox_body_ostream, 1);
	bstream->writer = writer;
	/* Everything is accepted at once: save code can't wait for
	   output. */
	bstream->ostream.max_buffer_size = SIZE_MAX;
	bstream->ostream.sendv = sqlbox_body_ostream_sendv;
	output = o_stream_create(&bstream->ostream, NULL, -1);
	o_stream_set_name(output, "(sqlbox body)");
	return output;
}

static void sqlbox_body_tail_free(buffer_t *buf)
{
	sqlbox_buffer_wipe_free(&buf);
}

struct istream *sqlbox_body_writer_istream(struct sqlbox_body_writer *writer)
{
	struct istream *inputs[3], *input;
	unsigned int count = 0;
	buffer_t *tail;

	i_assert(!writer->failed);
	if (writer->chunks_written > 0) {
		inputs[count++] = sqlbox_body_istream_create(writer->storage,
			writer->body_id,
			(uoff_t)writer->chunks_written * SQLBOX_CHUNK_BYTES);
	}
	/* A copy of what is still in memory, wiped when the stream goes:
	   the writer may be freed first. */
	tail = buffer_create_dynamic(default_pool, writer->chunk->used + 1);
	buffer_append_buf(tail, writer->chunk, 0, SIZE_MAX);
	inputs[count] = i_stream_create_from_data(tail->data, tail->used);
	i_stream_add_destroy_callback(inputs[count], sqlbox_body_tail_free,
				      tail);
	inputs[++count] = NULL;
	if (count == 1)
		return inputs[0];
	input = i_stream_create_concat(inputs);
	for (unsigned int i = 0; i < count; i++)
		i_stream_unref(&inputs[i]);
	return input;
}

/* ---- reader ---- */

/* What is read right after a cached header block: a header parser
   (SEARCH and SORT on headers use Dovecot's message parser, which reads
   ahead) wants a few bytes, not a buffer of them. */
#define SQLBOX_READ_PEEK_BYTES 4096
/* What is read at a random offset. */
#define SQLBOX_READ_SEEK_BYTES (64 * 1024)
/* Body bytes a session reads through the main connection before it
   opens the body connection. */
#define SQLBOX_BODY_DB_AFTER_BYTES (1024 * 1024)
/* A search (a FETCH is one) that wants the bodies of at least this many
   mails opens it at its first body read. */
#define SQLBOX_BODY_DB_AFTER_MAILS 16

static int
sqlbox_body_istream_fail(struct sqlbox_body_istream *bstream, ssize_t ret,
			 int64_t seq)
{
	struct istream_private *stream = &bstream->istream;

	if (ret == -1) {
		io_stream_set_error(&stream->iostream, "%s",
			mail_storage_get_last_internal_error(
				&bstream->storage->storage, NULL));
		stream->istream.stream_errno = EIO;
	} else if (ret == -2 && bstream->missing != NULL &&
		   (ret = bstream->missing(bstream->missing_context)) != 0) {
		/* The mail's row is gone too: expunged by another session
		   since it was read.  ENOENT with the mail marked expunged
		   is how Dovecot takes a mail expunged under a reader (the
		   caller's check, index_mail_stream_log_failure_for(), and
		   FETCH's "Mail expunged while it was being FETCHed"). */
		if (ret < 0) {
			io_stream_set_error(&stream->iostream, "%s",
				mail_storage_get_last_internal_error(
					&bstream->storage->storage, NULL));
			stream->istream.stream_errno = EIO;
		} else {
			io_stream_set_error(&stream->iostream,
				"sqlbox: body %"PRId64" expunged",
				bstream->body_id);
			stream->istream.stream_errno = ENOENT;
		}
	} else {
		/* The mail is still there: a damaged body. */
		io_stream_set_error(&stream->iostream,
			"sqlbox: body %"PRId64" chunk %"PRId64
			" is missing or has the wrong size",
			bstream->body_id, seq);
		stream->istream.stream_errno = ESTALE;
	}
	return -1;
}

/* Up to size bytes of the body from offset (>= the cached header) into
   dst, from one chunk, read by one incremental blob read: the pages
   decrypted are those of the bytes returned, and the bytes go straight
   into the stream's buffer. */
static ssize_t
sqlbox_body_istream_read_chunk(struct sqlbox_body_istream *bstream,
			       uoff_t offset, void *dst, size_t size)
{
	size_t chunk_size;
	int64_t seq;
	ssize_t ret;

	/* Once a session has read SQLBOX_BODY_DB_AFTER_BYTES of bodies,
	   or a search said it wants many (sqlbox_body_search_init()),
	   they pass through the body connection's small cache, not the
	   main one's (sqlbox_db_chunk_read_at() takes it outside
	   transactions; failing to open it leaves the main one).  Before,
	   its open (a schema parse, about 1 ms) would cost a session
	   that reads a few mails more than the main cache's growth. */
	if (bstream->storage->txn_depth == 0 &&
	    (bstream->storage->body_bytes_read >= SQLBOX_BODY_DB_AFTER_BYTES ||
	     bstream->storage->body_db_soon))
		(void)sqlbox_db_body_open(bstream->storage);
	if (bstream->chunk_bytes == 0) {
		/* Chunk 0 tells the size of all but the last. */
		ret = sqlbox_db_chunk_read_at(bstream->storage,
					      bstream->body_id, 0, offset,
					      dst, size, &chunk_size);
		if (ret < 0 || chunk_size == 0)
			return sqlbox_body_istream_fail(bstream, ret, 0);
		bstream->chunk_bytes = chunk_size;
		if (ret > 0) {
			bstream->storage->body_bytes_read += ret;
			return ret;
		}
	}
	seq = offset / bstream->chunk_bytes;
	ret = sqlbox_db_chunk_read_at(bstream->storage, bstream->body_id, seq,
				      offset - (uoff_t)seq *
				      bstream->chunk_bytes,
				      dst, size, &chunk_size);
	if (ret <= 0)
		return sqlbox_body_istream_fail(bstream, ret, seq);
	bstream->storage->body_bytes_read += ret;
	return ret;
}

static bool sqlbox_body_spare_is(struct istream_private *stream)
{
	return sqlbox_body_spare.lent &&
		stream->w_buffer == sqlbox_body_spare.data;
}

static void sqlbox_body_spare_release(unsigned char *data)
{
	i_assert(sqlbox_body_spare.lent && data == sqlbox_body_spare.data);
	safe_memset(sqlbox_body_spare.data, 0, sqlbox_body_spare.dirty);
	sqlbox_body_spare.dirty = 0;
	sqlbox_body_spare.lent = FALSE;
	if (sqlbox_body_spare.orphan) {
		i_free(sqlbox_body_spare.data);
		i_zero(&sqlbox_body_spare);
	}
}

/* The spare buffer becomes the stream's, if nobody has it (its memarea
   hands it back when the last reference, the stream's or a snapshot's,
   goes). */
static void sqlbox_body_spare_lend(struct sqlbox_body_istream *bstream)
{
	struct istream_private *stream = &bstream->istream;

	if (sqlbox_body_spare.lent || stream->w_buffer != NULL ||
	    bstream->once)
		return;
	if (sqlbox_body_spare.data == NULL) {
		/* Zeroed, like the free spare. */
		sqlbox_body_spare.data =
			i_malloc(SQLBOX_ISTREAM_BUFFER_BYTES);
	}
	sqlbox_body_spare.lent = TRUE;
	stream->w_buffer = sqlbox_body_spare.data;
	stream->buffer = stream->w_buffer;
	stream->buffer_size = SQLBOX_ISTREAM_BUFFER_BYTES;
	stream->memarea = memarea_init(stream->w_buffer, stream->buffer_size,
				       sqlbox_body_spare_release,
				       sqlbox_body_spare.data);
}

void sqlbox_body_deinit(void)
{
	/* A buffer still lent is freed when its memarea gives it back. */
	if (sqlbox_body_spare.lent) {
		sqlbox_body_spare.orphan = TRUE;
		return;
	}
	i_free(sqlbox_body_spare.data);
	i_zero(&sqlbox_body_spare);
}

static void
sqlbox_body_istream_set_max_buffer_size(struct iostream_private *_stream,
					size_t max_size)
{
	struct istream_private *stream =
		container_of(_stream, struct istream_private, iostream);

	stream->max_buffer_size = max_size;
	if (max_size > stream->buffer_size && sqlbox_body_spare_is(stream)) {
		/* It may grow now, and the spare can't (Dovecot would
		   realloc it): the stream takes a buffer of its own. */
		unsigned char *buf = i_malloc(stream->buffer_size);

		memcpy(buf, stream->w_buffer, stream->pos);
		memarea_unref(&stream->memarea);
		stream->w_buffer = buf;
		stream->buffer = buf;
	}
}

static ssize_t sqlbox_body_istream_read(struct istream_private *stream)
{
	struct sqlbox_body_istream *bstream =
		container_of(stream, struct sqlbox_body_istream, istream);
	uoff_t offset;
	size_t avail, n;
	ssize_t ret;

	offset = stream->istream.v_offset + (stream->pos - stream->skip);
	if (offset >= bstream->size) {
		stream->istream.eof = TRUE;
		return -1;
	}
	sqlbox_body_spare_lend(bstream);
	if (!i_stream_try_alloc(stream, 1, &avail))
		return -2;
	n = I_MIN(avail, bstream->size - offset);
	if (offset < bstream->header_size) {
		/* From the cache row: no chunk is read. */
		n = I_MIN(n, bstream->header_size - offset);
		memcpy(stream->w_buffer + stream->pos,
		       CONST_PTR_OFFSET(bstream->header->data, offset), n);
	} else {
		if (bstream->header_size > 0 && !bstream->whole &&
		    offset < bstream->header_size + SQLBOX_READ_PEEK_BYTES)
			n = I_MIN(n, SQLBOX_READ_PEEK_BYTES);
		else if (offset != bstream->next_offset) {
			/* After a seek (BODY[]<offset.length>): the pages
			   of what is likely wanted.  Reads that continue
			   take the rest of the chunk that fits the buffer,
			   so that a chunk's overflow chain is walked once
			   (a new blob handle walks it from the start). */
			n = I_MIN(n, SQLBOX_READ_SEEK_BYTES);
		}
		ret = sqlbox_body_istream_read_chunk(bstream, offset,
			stream->w_buffer + stream->pos, n);
		if (ret < 0)
			return -1;
		n = ret;
		bstream->next_offset = offset + n;
	}
	stream->pos += n;
	bstream->dirty = I_MAX(bstream->dirty, stream->pos);
	if (sqlbox_body_spare_is(stream)) {
		sqlbox_body_spare.dirty =
			I_MAX(sqlbox_body_spare.dirty, stream->pos);
	}
	return n;
}

static void
sqlbox_body_istream_seek(struct istream_private *stream, uoff_t v_offset,
			 bool mark ATTR_UNUSED)
{
	/* The body offset of the buffer's first byte. */
	uoff_t start = stream->istream.v_offset - stream->skip;

	if (v_offset >= start && v_offset - start <= stream->pos) {
		/* Back into what the buffer holds (a SEARCH reads the body
		   again from 0): no chunk is read again, and a body read
		   whole before the stream was handed out stays readable
		   after another session expunged it. */
		stream->skip = v_offset - start;
		stream->istream.v_offset = v_offset;
		return;
	}
	stream->istream.v_offset = v_offset;
	stream->skip = stream->pos = 0;
}

static int
sqlbox_body_istream_stat(struct istream_private *stream,
			 bool exact ATTR_UNUSED)
{
	struct sqlbox_body_istream *bstream =
		container_of(stream, struct sqlbox_body_istream, istream);

	stream->statbuf.st_size = bstream->size;
	return 0;
}

static void sqlbox_body_istream_destroy(struct iostream_private *stream)
{
	struct sqlbox_body_istream *bstream =
		container_of(stream, struct sqlbox_body_istream,
			     istream.iostream);

	/* The plaintext the buffer held goes with it (the spare's is wiped
	   as it comes back, which may be after a snapshot of it). */
	if (bstream->istream.w_buffer != NULL &&
	    !sqlbox_body_spare_is(&bstream->istream)) {
		safe_memset(bstream->istream.w_buffer, 0,
			    I_MIN(bstream->dirty,
				  bstream->istream.buffer_size));
	}
	sqlbox_buffer_wipe_free(&bstream->header);
	i_stream_free_buffer(&bstream->istream);
}

struct istream *
sqlbox_body_istream_create_cached(struct sqlbox_storage *storage,
				  int64_t body_id, uoff_t size,
				  const unsigned char *header,
				  size_t header_size, bool whole)
{
	struct sqlbox_body_istream *bstream;
	struct istream *input;

	i_assert(header_size <= size);
	bstream = i_new(struct sqlbox_body_istream, 1);
	bstream->storage = storage;
	bstream->body_id = body_id;
	bstream->size = size;
	bstream->whole = whole;
	if (header_size > 0) {
		bstream->header = buffer_create_dynamic(default_pool,
							header_size);
		buffer_append(bstream->header, header, header_size);
		bstream->header_size = header_size;
	}
	bstream->istream.max_buffer_size = SQLBOX_ISTREAM_BUFFER_BYTES;
	/* A buffer of the message's size up to one chunk at once (no
	   regrowth): a whole chunk is then one blob read. */
	bstream->istream.init_buffer_size =
		I_MAX(I_MIN(size, SQLBOX_ISTREAM_BUFFER_BYTES), 1);
	bstream->istream.read = sqlbox_body_istream_read;
	bstream->istream.seek = sqlbox_body_istream_seek;
	bstream->istream.stat = sqlbox_body_istream_stat;
	bstream->istream.iostream.destroy = sqlbox_body_istream_destroy;
	bstream->istream.iostream.set_max_buffer_size =
		sqlbox_body_istream_set_max_buffer_size;
	bstream->istream.istream.blocking = TRUE;
	bstream->istream.istream.seekable = TRUE;
	input = i_stream_create(&bstream->istream, NULL, -1, 0);
	bstream->istream.statbuf.st_size = size;
	return input;
}

void sqlbox_body_istream_set_missing(struct istream *input,
				     sqlbox_body_missing_callback_t *callback,
				     void *context)
{
	struct sqlbox_body_istream *bstream =
		container_of(input->real_stream, struct sqlbox_body_istream,
			     istream);

	i_assert(bstream->istream.read == sqlbox_body_istream_read);
	bstream->missing = callback;
	bstream->missing_context = context;
}

struct istream *
sqlbox_body_istream_create(struct sqlbox_storage *storage, int64_t body_id,
			   uoff_t size)
{
	return sqlbox_body_istream_create_cached(storage, body_id, size,
						 NULL, 0, TRUE);
}

struct istream *
sqlbox_body_istream_create_once(struct sqlbox_storage *storage,
				int64_t body_id, uoff_t size)
{
	struct istream *input;
	struct sqlbox_body_istream *bstream;

	input = sqlbox_body_istream_create(storage, body_id, size);
	bstream = container_of(input->real_stream, struct sqlbox_body_istream,
			       istream);
	bstream->once = TRUE;
	return input;
}

/* A search that wants the bodies of SQLBOX_BODY_DB_AFTER_MAILS mails or
   more (FETCH BODY[] of a message set, the body part of a sync) has the
   body connection opened at its first body read instead of after 1 MiB:
   that MiB of body pages would go through the main connection's cache,
   each a fresh page of the process (a page fault, about as dear as
   reading and decrypting the page), and then stay there, while the body
   connection recycles its 80 pages.  A FETCH of a few bodies keeps
   the main connection: opening the other one parses the schema (about
   1 ms, bench/README.md). */
void sqlbox_body_search_init(struct sqlbox_storage *storage,
			     struct mail_search_context *ctx)
{
	struct index_search_context *ictx =
		container_of(ctx, struct index_search_context, mail_ctx);
	const struct mail_search_arg *arg = ctx->args->args;
	unsigned int mails;

	if ((ctx->wanted_fields & MAIL_FETCH_STREAM_BODY) == 0 ||
	    storage->body_db_soon || ictx->seq2 < ictx->seq1)
		return;
	/* The sequence range the search walks, or fewer: the messages of
	   a set (a FETCH's only argument) within it. */
	mails = ictx->seq2 - ictx->seq1 + 1;
	if (arg != NULL && arg->next == NULL && !arg->match_not &&
	    (arg->type == SEARCH_SEQSET || arg->type == SEARCH_UIDSET))
		mails = I_MIN(mails, seq_range_count(&arg->value.seqset));
	if (mails >= SQLBOX_BODY_DB_AFTER_MAILS)
		storage->body_db_soon = TRUE;
}

/* ---- the cache row ---- */

int sqlbox_body_cache_parse(struct istream *input, pool_t pool,
			    struct sqlbox_body_cache *cache_r)
{
	struct message_size hdr, body;
	const unsigned char *data;
	unsigned char *header;
	size_t size, n, want, done = 0;
	bool has_nuls;

	i_zero(cache_r);
	i_stream_seek(input, 0);
	if (message_get_header_size(input, &hdr, &has_nuls) < 0 ||
	    message_get_body_size(input, &body, &has_nuls) < 0)
		return -1;
	if (hdr.virtual_size != hdr.physical_size ||
	    body.virtual_size != body.physical_size)
		return 0;
	/* The body's first byte too: a header parser peeks at it. */
	want = hdr.physical_size + (body.physical_size > 0 ? 1 : 0);
	header = p_malloc(pool, I_MAX(want, 1));
	i_stream_seek(input, 0);
	while (done < want) {
		if (i_stream_read_more(input, &data, &size) < 0) {
			if (input->stream_errno == 0)
				input->stream_errno = ESTALE;
			return -1;
		}
		n = I_MIN(size, want - done);
		memcpy(header + done, data, n);
		i_stream_skip(input, n);
		done += n;
	}
	cache_r->header = header;
	cache_r->header_size = want;
	cache_r->hdr_size = hdr.physical_size;
	cache_r->hdr_lines = hdr.lines;
	cache_r->body_lines = body.lines;
	return 1;
}
