/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */
#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "hash.h"
#include "hex-binary.h"
#include "ioloop.h"
#include "istream.h"
#include "safe-memset.h"
#include "seq-range-array.h"
#include "str.h"
#include "unichar.h"
#include "message-address.h"
#include "message-header-decode.h"
#include "message-parser.h"
#include "message-decoder.h"
#include "rfc822-parser.h"
#include "rfc2231-parser.h"
#include "charset-utf8.h"
#include "mail-search.h"
#include "settings-parser.h"
#include "sqlbox-storage.h"
#include "sqlbox-fts-structure.h"

/* Full-text search inside the user's encrypted database (SQLite FTS5):
   the index is pages of sqlbox.db like everything else, so nothing of it
   is readable on disk.

   Tables, created here lazily and idempotently (not in the schema's
   version chain, so an older sqlbox simply ignores them):
     fts_doc(docid, body_id, format)
                               which body each FTS row belongs to; a
                               trigger drops the row with its body
                               (expunge, folder delete, crashed saves);
                               format: of the tokens (below)
     fts_index(tri)            FTS5, 'ascii' tokenizer, detail=none,
                               contentless: rowid = fts_doc.docid; the
                               tokens are the distinct trigrams of the
                               body (sqlbox_fts_trigram_token()), fed
                               in bounded slices, and the scoped ones
                               of some header fields (below)
   Bodies, not mails, are indexed: a COPY or MOVE shares the body row, a
   RENAME changes no body, so none of them touches the index.

   When: not inside the APPEND (its reply waits for the COMMIT), but
   once the session has saved nothing for sqlbox_fts_index_delay, in
   short write transactions of a bounded batch each, yielding to the
   ioloop between them (other sessions and LMTP's import wait for one
   batch at most); what is still pending at the session's end is indexed
   then (after LOGOUT's reply).  A mail without an fts_doc row is
   unindexed, so the list of pending bodies is memory only: a session
   killed before indexing leaves its mail to the catch-up at the next
   SEARCH of the folder, as for mail saved with the index off.  The
   spool's import hands its bodies over the same way after its COMMIT
   (so a session's first SELECT or STATUS after deliveries does not wait
   for the indexing); with the delay 0, or inside an outer transaction,
   it indexes them in its own transaction, after its rows.

   What is indexed is what Dovecot's own search (lib-mail message-search.c)
   looks at: every header line (name, ": ", the decoded value) and the
   decoded bodies of text/ and message/ parts, all through the user's
   normalizer (decomposed titlecase), which is also applied to the key.
   A search key is cut into the trigrams of its letters (no white space
   or ASCII punctuation, which header folding and address rewriting may
   change) and their AND gives candidate mails; Dovecot then checks each
   candidate as without an index.  So SEARCH answers exactly what the
   unindexed search answers, reading only the candidates' bodies.
   An OR gives the union of its alternatives' candidates when every one
   of them has some, a parenthesized list the intersection of those of
   its keys that have.  Keys with no such trigram (shorter than three
   letters), args under NOT and ORs with any other alternative are left
   to the unindexed search.

   Header fields (issue 15): the value of a header line of the message's
   own header (not a MIME part's or an attached message's) named From,
   Sender, Reply-To, To, Cc, Bcc, Subject, Message-ID, In-Reply-To or
   List-Id is fed a second time as scoped tokens: "x", a letter of the
   field (sqlbox_fts_fields), the trigram's usual token.  "x" is no hex
   digit and a scoped ASCII token has 5 characters, so no scoped token
   equals an unscoped one (3 ASCII letters or digits, or 8 hex digits
   or more), nor one of another field.  The unscoped tokens are as they
   were: TEXT, BODY and HEADER of other names use them.  A HEADER,
   FROM, TO, CC, BCC or SUBJECT key of one of these fields is looked up
   in its scoped tokens, so SUBJECT church no longer picks every mail
   with "church" in its body.  That is a superset of Dovecot's answer
   (2.3.19): mail-search-register-imap.c parses FROM, TO, CC and BCC as
   SEARCH_HEADER_ADDRESS, SUBJECT as SEARCH_HEADER_COMPRESS_LWSP and
   HEADER as SEARCH_HEADER, all with hdr_field_name set; index-search.c
   (search_arg_match_text(), search_header_arg()) parses only the
   message's own header and matches such an arg against the value of the
   lines whose name equals hdr_field_name (strcasecmp), nothing else:
   SEARCH_HEADER against the decoded value (what is indexed),
   COMPRESS_LWSP against it with white space changed (no run changes),
   ADDRESS against the addresses parsed and written again, then decoded,
   which the indexer feeds too for the address fields (writing may add
   MISSING_DOMAIN, drop an unparsable rest or quote a name).  The key's
   trigrams all lie in one line's value, and a value is a run boundary
   at both ends in either feed.  An ADDRESS arg of a field that is no
   address field keeps the unscoped query.

   The format: fts_doc.format is 2 for bodies indexed with the scoped
   tokens.  An index of before (fts_doc without the column) is emptied
   when a sqlbox of format 2 first opens it, and rebuilt by the catch-up
   at the next SEARCH of each folder.  An older sqlbox run on the
   database afterwards still adds rows without scoped tokens (format 1,
   the column's default): each catch-up, which precedes every lookup
   of a folder not caught up, first drops such rows (a partial index
   holds them, so finding none costs nothing) and so indexes those
   bodies again: a scoped key is never answered from them.  (An older
   sqlbox adds rows only for bodies without one: new mail, which moves
   the folder's UIDNEXT, or bodies unindexed by a delete of their rows,
   which forgets every caught-up folder; so a folder caught up has
   none.)

   Caught up (issue 15): fts_caught_up(mailbox_id, uidvalidity, uidnext,
   highestmodseq, format) records a folder's row as the last catch-up
   that found every body of it indexed saw it; a SEARCH whose folder
   still has those values skips the catch-up and its write transaction
   (sqlbox_fts_caught_up()).  Triggers forget a folder's record with
   the folder, and every record when the fts_doc row of a live body is
   deleted.  An older sqlbox ignores the table but runs the triggers.

   An expunged body's trigrams stay in the contentless FTS index (FTS5 in
   SQLite 3.40 can only delete them given the same text again) but no
   longer lead anywhere: docids are never reused (AUTOINCREMENT).  When
   such dead rows outnumber the live ones the index is emptied and built
   again at the next search. */

/* plugin { sqlbox_fts = no } turns the index off: nothing is indexed
   and every SEARCH reads the mail.  Turned on again, the index stays
   right: the trigger dropped what was expunged meanwhile, and mail saved
   meanwhile is indexed at the next SEARCH of its folder. */
#define SQLBOX_FTS_SETTING "sqlbox_fts"
/* plugin { sqlbox_fts_index_delay = 1s }: how long after the last save's
   (or spool import's) commit the saved mail is indexed; 0 indexes it
   inside the save's transaction (before the APPEND's reply, as the first
   version did) or the import's. */
#define SQLBOX_FTS_DELAY_SETTING "sqlbox_fts_index_delay"
#define SQLBOX_FTS_DELAY_DEFAULT_MSECS 1000
/* One transaction of deferred indexing: this many bodies, or bodies
   of this many bytes (the last one may pass it), at most.  Each batch
   is an FTS5 segment of its own, merged later, so not too small; a
   batch of 4 MiB (about 100 mails of fts-bench) holds the write lock
   for some 25-35 ms of CPU (bench/README.md, issue 18). */
#define SQLBOX_FTS_BATCH_BODIES 256
#define SQLBOX_FTS_BATCH_BYTES (4 * 1024 * 1024)
/* Trigrams of a key used at most (evenly spread). */
#define SQLBOX_FTS_MAX_TRIGRAMS 24

/* The index's format, fts_doc.format of the rows this sqlbox writes: 2
   has the scoped header tokens (format 1, the default of the column,
   has not). */
#define SQLBOX_FTS_FORMAT_STR "2"

struct sqlbox_fts_search_context {
	union mail_search_module_context module_ctx;
	/* UIDs that may match every indexed arg (AND of their candidates) */
	ARRAY_TYPE(seq_range) uids;
	struct mail_index_view *view;
};

static MODULE_CONTEXT_DEFINE_INIT(sqlbox_fts_search_module,
				  &mail_storage_module_register);
#define SQLBOX_FTS_CONTEXT(obj) \
	MODULE_CONTEXT(obj, sqlbox_fts_search_module)

/* (each object also named in SQLBOX_FTS_OBJECT_NAMES) */
static const char *const sqlbox_fts_tables[] = {
	"CREATE TABLE IF NOT EXISTS fts_doc ("
	" docid INTEGER PRIMARY KEY AUTOINCREMENT,"
	" body_id INTEGER NOT NULL UNIQUE,"
	" format INTEGER NOT NULL DEFAULT 1)",
	/* the rows of an older sqlbox: empty but for a downgrade */
	"CREATE INDEX IF NOT EXISTS fts_doc_old ON fts_doc (body_id)"
	" WHERE format < "SQLBOX_FTS_FORMAT_STR,
	"CREATE VIRTUAL TABLE IF NOT EXISTS fts_index USING fts5("
	" tri, tokenize = 'ascii', detail = 'none', content = '')",
	"CREATE TRIGGER IF NOT EXISTS fts_doc_body_delete AFTER DELETE ON body"
	" BEGIN DELETE FROM fts_doc WHERE body_id = OLD.id; END",
	/* Folders caught up (sqlbox_fts_caught_up()) */
	"CREATE TABLE IF NOT EXISTS fts_caught_up ("
	" mailbox_id INTEGER PRIMARY KEY,"
	" uidvalidity INTEGER NOT NULL,"
	" uidnext INTEGER NOT NULL,"
	" highestmodseq INTEGER NOT NULL,"
	" format INTEGER NOT NULL)",
	/* folder ids are given out again */
	"CREATE TRIGGER IF NOT EXISTS fts_caught_up_mailbox_delete"
	" AFTER DELETE ON mailbox BEGIN"
	" DELETE FROM fts_caught_up WHERE mailbox_id = OLD.id; END",
	/* a live body unindexed (compaction, an old row dropped, by any
	   sqlbox): no folder is known to be caught up any more; a body's
	   own delete (its row is gone by then) changes nothing */
	"CREATE TRIGGER IF NOT EXISTS fts_caught_up_void AFTER DELETE ON fts_doc"
	" WHEN EXISTS (SELECT 1 FROM body WHERE id = OLD.body_id) BEGIN"
	" DELETE FROM fts_caught_up; END",
	/* fts_doc's rows counted in state (SQLBOX_FTS_DOCS_SQL), by every
	   sqlbox that writes the table, older ones too: fts-usage at the
	   end of each session that wrote and the compaction's check read
	   one row instead of the whole table, which grows with the
	   mailbox.  The count starts from the table as it is. */
	"CREATE TRIGGER IF NOT EXISTS fts_doc_count_insert AFTER INSERT ON"
	" fts_doc BEGIN UPDATE state SET value = value + 1"
	" WHERE key = '"SQLBOX_FTS_DOCS_KEY"'; END",
	"CREATE TRIGGER IF NOT EXISTS fts_doc_count_delete AFTER DELETE ON"
	" fts_doc BEGIN UPDATE state SET value = value - 1"
	" WHERE key = '"SQLBOX_FTS_DOCS_KEY"'; END",
	"INSERT OR REPLACE INTO state (key, value) VALUES"
	" ('"SQLBOX_FTS_DOCS_KEY"', (SELECT count(*) FROM fts_doc))",
	NULL
};

static bool sqlbox_fts_enabled(struct sqlbox_storage *storage)
{
	const char *value = mail_user_plugin_getenv(storage->storage.user,
						    SQLBOX_FTS_SETTING);

	/* On unless turned off: a message is indexed in bounded slices,
	   never whole in memory. */
	return value == NULL || !(strcasecmp(value, "no") == 0 ||
				  strcasecmp(value, "false") == 0 ||
				  strcmp(value, "0") == 0);
}

static int sqlbox_fts_query_exists(struct sqlbox_storage *storage,
				   const char *sql)
{
	sqlite3_stmt *stmt;
	int rc;

	if ((stmt = sqlbox_db_prepare(storage, sql)) == NULL)
		return -1;
	rc = sqlbox_db_step(storage, stmt);
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW ? 1 : (rc < 0 ? -1 : 0);
}

/* The index of the first version (fts_text: the trigram tokenizer on the
   text) is dropped; the mail is indexed again at its next SEARCH.  So
   is an index of format 1 (fts_doc without its format column: no scoped
   header tokens), emptied as sqlbox_fts_compact() does, and the column
   added: the catch-up of the next SEARCH of each folder rebuilds it. */
static int sqlbox_fts_tables_upgrade(struct sqlbox_storage *storage)
{
	int ret;

	ret = sqlbox_fts_query_exists(storage,
		"SELECT 1 FROM sqlite_master WHERE name = 'fts_text'");
	if (ret < 0)
		return -1;
	if (ret > 0 &&
	    (sqlbox_db_exec(storage, "DROP TABLE fts_text") < 0 ||
	     sqlbox_db_exec(storage, "DELETE FROM fts_doc") < 0))
		return -1;

	ret = sqlbox_fts_query_exists(storage,
		"SELECT 1 FROM sqlite_master WHERE name = 'fts_doc'"
		" AND NOT EXISTS (SELECT 1 FROM pragma_table_info('fts_doc')"
		" WHERE name = 'format')");
	if (ret <= 0)
		return ret;
	e_debug(storage->storage.event,
		"sqlbox fts: index of format 1 emptied, to be rebuilt");
	/* both tables are created in one transaction */
	if (sqlbox_db_exec(storage,
		"INSERT INTO fts_index (fts_index) VALUES ('delete-all')") < 0 ||
	    sqlbox_db_exec(storage, "DELETE FROM fts_doc") < 0 ||
	    sqlbox_db_exec(storage, "ALTER TABLE fts_doc ADD COLUMN"
			   " format INTEGER NOT NULL DEFAULT 1") < 0)
		return -1;
	return 0;
}

/* The objects sqlbox_fts_tables[] creates, by name. */
#define SQLBOX_FTS_OBJECT_NAMES \
	"'fts_doc', 'fts_doc_old', 'fts_index', 'fts_doc_body_delete'," \
	" 'fts_caught_up', 'fts_caught_up_mailbox_delete'," \
	" 'fts_caught_up_void', 'fts_doc_count_insert', 'fts_doc_count_delete'"
#define SQLBOX_FTS_OBJECT_COUNT "9"

/* Whether the tables are those of this format already: every object of
   sqlbox_fts_tables[], fts_doc with its format column, no fts_text.  One
   statement on the schema table (and the column looked up in the parsed
   schema) instead of sqlbox_fts_tables_upgrade()'s two queries (one of
   them through pragma_table_info) and a CREATE ... IF NOT EXISTS each:
   every session that indexes or searches pays this once (bench/README.md,
   issue 15, ninth pass).  1 if current, 0 if not, -1 on error. */
static int sqlbox_fts_tables_current(struct sqlbox_storage *storage)
{
	int ret;

	ret = sqlbox_fts_query_exists(storage,
		"SELECT 1 WHERE (SELECT count(*) FROM sqlite_master"
		" WHERE name IN (" SQLBOX_FTS_OBJECT_NAMES ")) = "
		SQLBOX_FTS_OBJECT_COUNT " AND NOT EXISTS (SELECT 1"
		" FROM sqlite_master WHERE name = 'fts_text')");
	if (ret <= 0)
		return ret;
	return sqlite3_table_column_metadata(storage->db, "main", "fts_doc",
					     "format", NULL, NULL, NULL, NULL,
					     NULL) == SQLITE_OK ? 1 : 0;
}

/* Inside a write transaction: the tables exist. */
static int sqlbox_fts_tables_create(struct sqlbox_storage *storage)
{
	int ret;

	if (storage->fts_ready)
		return 0;
	if ((ret = sqlbox_fts_tables_current(storage)) < 0)
		return -1;
	if (ret > 0) {
		storage->fts_ready = TRUE;
		return 0;
	}
	if (sqlbox_fts_tables_upgrade(storage) < 0)
		return -1;
	for (unsigned int i = 0; sqlbox_fts_tables[i] != NULL; i++) {
		if (sqlbox_db_exec(storage, sqlbox_fts_tables[i]) < 0)
			return -1;
	}
	storage->fts_ready = TRUE;
	return 0;
}

static void
sqlbox_fts_content_type(const struct message_header_line *hdr, bool *text_r)
{
	const char *value = t_strndup(hdr->full_value, hdr->full_value_len);

	while (*value == ' ' || *value == '\t')
		value++;
	*text_r = strncasecmp(value, "text/", 5) == 0 ||
		strncasecmp(value, "message/", 8) == 0;
}

static bool sqlbox_fts_char_indexable(unichar_t chr);

/* A trigram as an FTS5 token of the 'ascii' tokenizer: three ASCII
   letters or digits as they are (the tokenizer folds their case; the
   normalizer already made them titlecase), anything else as the hex of
   its UTF-8 (8 hex digits at least, so never equal to an ASCII one). */
static void sqlbox_fts_trigram_token(const unsigned char *tri, size_t size,
				     string_t *dest)
{
	if (size == 3 && tri[0] < 0x80 && tri[1] < 0x80 && tri[2] < 0x80)
		str_append_data(dest, tri, 3);
	else
		binary_to_hex_append(dest, tri, size);
}

/* Feeds a message's decoded text to FTS5 in bounded slices.  The text
   is streamed character by character: each character of a run of
   indexable characters (what a key's trigrams are taken from, see
   sqlbox_fts_key_query()) goes through the user's normalizer (ASCII
   letters and digits directly: the titlecase normalizer maps them to
   themselves in upper case, and the tokenizer folds case anyway) into a
   window of the last three normalized characters, whose trigram is
   indexed unless the slice has it already.  So no run, word or text is
   ever held, and a run of any length loses no trigram.

   A slice is one INSERT with the body's docid: FTS5 keeps every INSERT
   of the same rowid (a later one in a newer segment), and a lookup gives
   the rowid once if any of them has the token, so the body's row is the
   union of its slices.  The set of a slice's tokens is a bitmap of the
   unscoped ASCII trigrams (36^3 bits) and a hash of the others (scoped
   ones too) in a clean pool, both cleared per slice; memory is bounded
   by the slice limits, not by the message size (a header field's value
   fed scoped, and an address field's written again, are held once by
   the parser anyway). */
#define SQLBOX_FTS_SLICE_TOKENS_MAX (256 * 1024)
#define SQLBOX_FTS_SLICE_TRIGRAMS_MAX 32768
#define SQLBOX_FTS_ASCII_CODES 36
#define SQLBOX_FTS_ASCII_TRIGRAMS \
	(SQLBOX_FTS_ASCII_CODES * SQLBOX_FTS_ASCII_CODES * SQLBOX_FTS_ASCII_CODES)

/* The header fields whose values are indexed a second time, as scoped
   tokens ("x", the field's code, the trigram's token): a FROM, TO, CC,
   BCC, SUBJECT or HEADER search of one of them looks only at those.
   Codes are ASCII letters, distinct in either case (the tokenizer folds
   case); the address fields also get the value Dovecot's
   SEARCH_HEADER_ADDRESS looks at (the addresses parsed and written
   again). */
struct sqlbox_fts_field {
	const char *name;
	char code;
	bool address;
};

static const struct sqlbox_fts_field sqlbox_fts_fields[] = {
	{ "From", 'f', TRUE },
	{ "Sender", 's', TRUE },
	{ "Reply-To", 'r', TRUE },
	{ "To", 't', TRUE },
	{ "Cc", 'c', TRUE },
	{ "Bcc", 'b', TRUE },
	{ "Subject", 'j', FALSE },
	{ "Message-ID", 'm', FALSE },
	{ "In-Reply-To", 'i', FALSE },
	{ "List-Id", 'l', FALSE },
};

static const struct sqlbox_fts_field *
sqlbox_fts_field_find(const char *name, size_t name_len)
{
	for (unsigned int i = 0; i < N_ELEMENTS(sqlbox_fts_fields); i++) {
		const struct sqlbox_fts_field *field = &sqlbox_fts_fields[i];

		if (strlen(field->name) == name_len &&
		    strncasecmp(field->name, name, name_len) == 0)
			return field;
	}
	return NULL;
}

struct sqlbox_fts_char {
	unsigned char utf8[4];
	uint8_t len;
};

struct sqlbox_fts_indexer {
	struct sqlbox_storage *storage;
	int64_t docid;
	/* the default titlecase normalizer: ASCII needs no call */
	bool ascii_direct;
	bool failed;
	/* 0, or the code of the field whose value is fed as scoped tokens */
	char scope;

	/* the last normalized indexable characters of the current run */
	struct sqlbox_fts_char window[3];
	unsigned int window_len;

	/* this slice's trigrams: ASCII ones in the bitmap, others in the
	   hash (pool and hash created at the first one) */
	unsigned char ascii_seen[(SQLBOX_FTS_ASCII_TRIGRAMS + 7) / 8];
	pool_t pool;
	HASH_TABLE(const char *, void *) trigrams;
	unsigned int slice_trigrams;
	/* the slice's tokens, space separated */
	string_t *tokens;
	buffer_t *norm;
	string_t *token;
	/* an address header written again, and decoded */
	string_t *addr, *addr_decoded;
	unsigned int slices;
};

static void sqlbox_fts_indexer_wipe(buffer_t *buf)
{
	safe_memset(buffer_get_modifiable_data(buf, NULL), 0, buf->used);
	buffer_set_used_size(buf, 0);
}

static int sqlbox_fts_indexer_flush(struct sqlbox_fts_indexer *idx)
{
	struct sqlbox_storage *storage = idx->storage;
	sqlite3_stmt *stmt;
	int ret = 0;

	if (str_len(idx->tokens) == 0)
		return 0;
	/* kept prepared: a batch of deferred indexing or a catch-up
	   inserts many bodies */
	stmt = sqlbox_db_prepare_kept(storage,
		"INSERT INTO fts_index (rowid, tri) VALUES (?, ?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, idx->docid);
	sqlite3_bind_text(stmt, 2, str_c(idx->tokens), str_len(idx->tokens),
			  SQLITE_STATIC);
	if (sqlbox_db_step(storage, stmt) < 0)
		ret = -1;
	sqlite3_clear_bindings(stmt);
	sqlbox_db_kept_done(stmt);
	idx->slices++;
	/* the words of a mail leave no copy in memory */
	sqlbox_fts_indexer_wipe(idx->tokens);
	memset(idx->ascii_seen, 0, sizeof(idx->ascii_seen));
	if (idx->pool != NULL) {
		hash_table_clear(idx->trigrams, TRUE);
		p_clear(idx->pool);
	}
	idx->slice_trigrams = 0;
	return ret;
}

static unsigned int sqlbox_fts_ascii_code(unsigned char c)
{
	return c <= '9' ? c - '0' : (c & ~0x20) - 'A' + 10;
}

/* The window holds three characters: index its trigram once a slice. */
static void sqlbox_fts_indexer_trigram(struct sqlbox_fts_indexer *idx)
{
	const struct sqlbox_fts_char *w = idx->window;

	if (idx->scope == 0 &&
	    w[0].len == 1 && w[1].len == 1 && w[2].len == 1) {
		unsigned int code =
			(sqlbox_fts_ascii_code(w[0].utf8[0]) *
			 SQLBOX_FTS_ASCII_CODES +
			 sqlbox_fts_ascii_code(w[1].utf8[0])) *
			SQLBOX_FTS_ASCII_CODES +
			sqlbox_fts_ascii_code(w[2].utf8[0]);
		unsigned char bit = 1 << (code % 8);

		if ((idx->ascii_seen[code / 8] & bit) != 0)
			return;
		idx->ascii_seen[code / 8] |= bit;
		if (str_len(idx->tokens) > 0)
			str_append_c(idx->tokens, ' ');
		str_append_data(idx->tokens, w[0].utf8, 1);
		str_append_data(idx->tokens, w[1].utf8, 1);
		str_append_data(idx->tokens, w[2].utf8, 1);
	} else {
		unsigned char tri[12];
		size_t size = 0;

		for (unsigned int i = 0; i < 3; i++) {
			memcpy(tri + size, w[i].utf8, w[i].len);
			size += w[i].len;
		}
		str_truncate(idx->token, 0);
		if (idx->scope != 0) {
			str_append_c(idx->token, 'x');
			str_append_c(idx->token, idx->scope);
		}
		sqlbox_fts_trigram_token(tri, size, idx->token);
		if (idx->pool == NULL) {
			/* a clean pool: cleared, it wipes what it held */
			idx->pool = pool_alloconly_create_clean(
				"sqlbox fts slice", 16 * 1024);
			hash_table_create(&idx->trigrams, default_pool, 256,
					  str_hash, strcmp);
		} else if (hash_table_lookup(idx->trigrams,
					     str_c(idx->token)) != NULL)
			return;
		const char *key = p_strdup(idx->pool, str_c(idx->token));

		hash_table_insert(idx->trigrams, key, POINTER_CAST(1));
		if (str_len(idx->tokens) > 0)
			str_append_c(idx->tokens, ' ');
		str_append_str(idx->tokens, idx->token);
	}
	if (++idx->slice_trigrams >= SQLBOX_FTS_SLICE_TRIGRAMS_MAX ||
	    str_len(idx->tokens) >= SQLBOX_FTS_SLICE_TOKENS_MAX) {
		if (sqlbox_fts_indexer_flush(idx) < 0)
			idx->failed = TRUE;
	}
}

/* One normalized character: into the window, or the end of a run. */
static void
sqlbox_fts_indexer_char(struct sqlbox_fts_indexer *idx,
			const unsigned char *utf8, unsigned int len,
			unichar_t chr)
{
	if (!sqlbox_fts_char_indexable(chr)) {
		idx->window_len = 0;
		return;
	}
	if (idx->window_len == 3) {
		idx->window[0] = idx->window[1];
		idx->window[1] = idx->window[2];
		idx->window_len = 2;
	}
	memcpy(idx->window[idx->window_len].utf8, utf8, len);
	idx->window[idx->window_len].len = len;
	if (++idx->window_len == 3)
		sqlbox_fts_indexer_trigram(idx);
}

/* A raw indexable character through the user's normalizer. */
static void
sqlbox_fts_indexer_normalize(struct sqlbox_fts_indexer *idx,
			     const unsigned char *p, unsigned int len)
{
	struct sqlbox_storage *storage = idx->storage;
	const unsigned char *n, *nend;
	unichar_t chr;
	int nlen;

	buffer_set_used_size(idx->norm, 0);
	if (storage->storage.user->default_normalizer(p, len, idx->norm) < 0) {
		mail_storage_set_critical(&storage->storage,
			"sqlbox fts: normalizing text failed");
		idx->failed = TRUE;
		return;
	}
	n = idx->norm->data;
	nend = n + idx->norm->used;
	for (; n < nend; n += nlen) {
		nlen = uni_utf8_get_char_n(n, nend - n, &chr);
		if (nlen <= 0 || nlen > 4) {
			nlen = 1;
			idx->window_len = 0;
			continue;
		}
		sqlbox_fts_indexer_char(idx, n, nlen, chr);
	}
	safe_memset(buffer_get_modifiable_data(idx->norm, NULL), 0,
		    idx->norm->used);
}

/* The code (0..35) of an ASCII letter or digit, -1 for anything else. */
static inline int sqlbox_fts_ascii_alnum_code(unsigned char c)
{
	unsigned int d = (unsigned int)c - '0';

	if (d < 10)
		return d;
	d = (unsigned int)(c | 0x20) - 'a';
	return d < 26 ? (int)d + 10 : -1;
}

static inline unsigned char sqlbox_fts_ascii_code_char(unsigned int code)
{
	return code < 10 ? '0' + code : 'A' + (code - 10);
}

static bool sqlbox_fts_indexer_window_ascii(const struct sqlbox_fts_indexer *idx)
{
	for (unsigned int i = 0; i < idx->window_len; i++) {
		if (idx->window[i].len != 1)
			return FALSE;
	}
	return TRUE;
}

/* A run of ASCII text with the default normalizer, while the window
   holds ASCII only: what sqlbox_fts_indexer_char() and _trigram() do
   for it, with the window as the code of its last two characters (base
   36) instead of a copy of each character.  Returns where the run ends
   (a non-ASCII byte or the end).  Most mail text is ASCII: this is the
   indexer's inner loop (bench/README.md, issue 18). */
static const unsigned char *
sqlbox_fts_indexer_ascii_run(struct sqlbox_fts_indexer *idx,
			     const unsigned char *p, const unsigned char *end)
{
	unsigned int len = 0, pair = 0, tri;
	unsigned char bit, token[4];
	int code;

	/* the window's last two characters (the first of three is done) */
	for (unsigned int i = idx->window_len > 2 ? idx->window_len - 2 : 0;
	     i < idx->window_len; i++) {
		pair = pair * SQLBOX_FTS_ASCII_CODES +
			sqlbox_fts_ascii_code(idx->window[i].utf8[0]);
		len++;
	}
	for (; p < end && *p < 0x80; p++) {
		if ((code = sqlbox_fts_ascii_alnum_code(*p)) < 0) {
			len = 0;
			pair = 0;
			continue;
		}
		tri = pair * SQLBOX_FTS_ASCII_CODES + code;
		pair = tri % (SQLBOX_FTS_ASCII_CODES * SQLBOX_FTS_ASCII_CODES);
		if (len < 2) {
			len++;
			continue;
		}
		bit = 1 << (tri % 8);
		if ((idx->ascii_seen[tri / 8] & bit) != 0)
			continue;
		idx->ascii_seen[tri / 8] |= bit;
		token[0] = ' ';
		token[1] = sqlbox_fts_ascii_code_char(
			tri / (SQLBOX_FTS_ASCII_CODES * SQLBOX_FTS_ASCII_CODES));
		token[2] = sqlbox_fts_ascii_code_char(
			(tri / SQLBOX_FTS_ASCII_CODES) % SQLBOX_FTS_ASCII_CODES);
		token[3] = sqlbox_fts_ascii_code_char(
			tri % SQLBOX_FTS_ASCII_CODES);
		if (str_len(idx->tokens) > 0)
			str_append_data(idx->tokens, token, 4);
		else
			str_append_data(idx->tokens, token + 1, 3);
		if (++idx->slice_trigrams >= SQLBOX_FTS_SLICE_TRIGRAMS_MAX ||
		    str_len(idx->tokens) >= SQLBOX_FTS_SLICE_TOKENS_MAX) {
			if (sqlbox_fts_indexer_flush(idx) < 0) {
				idx->failed = TRUE;
				return end;
			}
		}
	}
	/* the window: the run's last two characters (enough for the next
	   trigram) */
	idx->window_len = I_MIN(len, 2);
	for (unsigned int i = idx->window_len; i > 0; i--) {
		idx->window[i - 1].utf8[0] =
			sqlbox_fts_ascii_code_char(pair % SQLBOX_FTS_ASCII_CODES);
		idx->window[i - 1].len = 1;
		pair /= SQLBOX_FTS_ASCII_CODES;
	}
	return p;
}

static void
sqlbox_fts_indexer_feed(struct sqlbox_fts_indexer *idx,
			const unsigned char *p, size_t size)
{
	const unsigned char *end = p + size;
	unichar_t chr;
	int len;

	for (; p < end && !idx->failed; p += len) {
		if (*p < 0x80 && idx->ascii_direct && idx->scope == 0 &&
		    sqlbox_fts_indexer_window_ascii(idx)) {
			p = sqlbox_fts_indexer_ascii_run(idx, p, end);
			len = 0;
		} else if (*p < 0x80) {
			len = 1;
			if (!sqlbox_fts_char_indexable(*p))
				idx->window_len = 0;
			else if (idx->ascii_direct) {
				/* titlecase of an ASCII letter: upper case */
				unsigned char c = *p <= '9' ? *p : (*p & ~0x20);

				sqlbox_fts_indexer_char(idx, &c, 1, c);
			} else {
				sqlbox_fts_indexer_normalize(idx, p, 1);
			}
		} else if ((len = uni_utf8_get_char_n(p, end - p, &chr)) <= 0) {
			/* invalid UTF-8: a boundary, as a space */
			len = 1;
			idx->window_len = 0;
		} else if (!sqlbox_fts_char_indexable(chr)) {
			idx->window_len = 0;
		} else {
			sqlbox_fts_indexer_normalize(idx, p, len);
		}
	}
}

/* A value fed as the scoped tokens of field: a text of its own, no
   trigram across its ends. */
static void
sqlbox_fts_indexer_feed_scoped(struct sqlbox_fts_indexer *idx, char code,
			       const unsigned char *p, size_t size)
{
	idx->window_len = 0;
	idx->scope = code;
	sqlbox_fts_indexer_feed(idx, p, size);
	idx->scope = 0;
	idx->window_len = 0;
}

/* A top-level header line of one of sqlbox_fts_fields: its decoded value
   (what SEARCH_HEADER and SEARCH_HEADER_COMPRESS_LWSP look at, the
   latter with its white space changed) as scoped tokens, and for an
   address field what SEARCH_HEADER_ADDRESS looks at too: the raw value's
   addresses parsed and written again (which may add MISSING_DOMAIN and
   drop syntax), then decoded, as index-search.c's search_header_arg()
   does. */
static void
sqlbox_fts_index_field(struct sqlbox_fts_indexer *idx,
		       const struct sqlbox_fts_field *field,
		       const struct message_header_line *raw_hdr,
		       const struct message_header_line *hdr)
{
	struct message_address *addr;
	pool_t pool;

	sqlbox_fts_indexer_feed_scoped(idx, field->code, hdr->full_value,
				       hdr->full_value_len);
	if (!field->address)
		return;
	/* a clean pool: unreferenced, it wipes the parsed addresses */
	pool = pool_alloconly_create_clean("sqlbox fts address", 1024);
	T_BEGIN {
		addr = message_address_parse(pool, raw_hdr->full_value,
			raw_hdr->full_value_len, UINT_MAX,
			MESSAGE_ADDRESS_PARSE_FLAG_FILL_MISSING);
		message_address_write(idx->addr, addr);
	} T_END;
	pool_unref(&pool);
	message_header_decode_utf8(str_data(idx->addr), str_len(idx->addr),
				   idx->addr_decoded, NULL);
	sqlbox_fts_indexer_feed_scoped(idx, field->code,
				       str_data(idx->addr_decoded),
				       str_len(idx->addr_decoded));
	sqlbox_fts_indexer_wipe(idx->addr);
	sqlbox_fts_indexer_wipe(idx->addr_decoded);
}

/* Which body blocks need no decoding: what message_decoder (2.3.19,
   without a normalizer) makes of a part's body is the body itself when
   the part's Content-Transfer-Encoding is 7bit, 8bit or binary, its
   charset is UTF-8 or US-ASCII (or none: UTF-8) and the block is valid
   UTF-8 (charset_utf8_to_utf8(): no incomplete character at the end, no
   invalid sequence replaced).  The decoder would copy such a block into
   a buffer of its own, growing it to the body's size (fresh pages), and
   scan it twice: the indexer feeds it as it is.  The decoder's state
   that outlives a block is its incomplete character, carried over even
   into the next part (translation_buf): so once any body block went
   through the decoder, every later one of the message does too.  The
   part's encoding and charset are read as the decoder reads them from
   the same header lines: the first Content-Type (parse_content_type()),
   the last Content-Transfer-Encoding. */
struct sqlbox_fts_decoding {
	struct message_part *part;
	enum message_cte cte;
	bool content_type_seen;
	bool utf8;
	/* a body block went through the decoder */
	bool decoder_used;
};

static void
sqlbox_fts_decoding_header(struct sqlbox_fts_decoding *dec,
			   const struct message_block *raw)
{
	const struct message_header_line *hdr = raw->hdr;
	struct rfc822_parser_context parser;
	const char *const *results;
	string_t *str;

	if (raw->part != dec->part) {
		dec->part = raw->part;
		dec->cte = MESSAGE_CTE_78BIT;
		dec->content_type_seen = FALSE;
		dec->utf8 = TRUE;
	}
	if (hdr == NULL || hdr->continues)
		return;
	if (hdr->name_len == 25 &&
	    strcasecmp(hdr->name, "Content-Transfer-Encoding") == 0) {
		dec->cte = message_decoder_parse_cte(hdr);
		return;
	}
	if (hdr->name_len != 12 || strcasecmp(hdr->name, "Content-Type") != 0 ||
	    dec->content_type_seen)
		return;
	dec->content_type_seen = TRUE;
	rfc822_parser_init(&parser, hdr->full_value, hdr->full_value_len, NULL);
	rfc822_skip_lwsp(&parser);
	str = t_str_new(64);
	if (rfc822_parse_content_type(&parser, str) >= 0) {
		rfc2231_parse(&parser, &results);
		for (; *results != NULL; results += 2) {
			if (strcasecmp(results[0], "charset") == 0) {
				dec->utf8 = charset_is_utf8(results[1]);
				break;
			}
		}
	}
	rfc822_parser_deinit(&parser);
}

/* Whether the body block raw is what the decoder would give. */
static bool
sqlbox_fts_decoding_as_is(struct sqlbox_fts_decoding *dec,
			  const struct message_block *raw)
{
	if (!dec->decoder_used && raw->part == dec->part && dec->utf8 &&
	    (dec->cte == MESSAGE_CTE_78BIT || dec->cte == MESSAGE_CTE_BINARY) &&
	    uni_utf8_data_is_valid(raw->data, raw->size))
		return TRUE;
	dec->decoder_used = TRUE;
	return FALSE;
}

/* Indexes the text of a message as Dovecot's search sees it.  The
   stream is freed (*_input NULL) before the last slice's INSERT. */
static int
sqlbox_fts_index_text(struct sqlbox_fts_indexer *idx,
		      struct istream **_input)
{
	const struct message_parser_settings parser_set = { .flags = 0 };
	struct istream *input = *_input;
	struct message_parser_ctx *parser;
	struct message_decoder_context *decoder;
	struct sqlbox_fts_decoding dec;
	struct message_block raw, block;
	struct message_part *parts, *prev_part = NULL;
	const struct sqlbox_fts_field *field;
	pool_t pool = pool_alloconly_create("sqlbox fts parts", 1024);
	bool part_text = TRUE;
	int ret = 0;

	i_zero(&dec);
	parser = message_parser_init(pool, input, &parser_set);
	/* decoded to UTF-8 only: the normalizer runs on the distinct runs */
	decoder = message_decoder_init(NULL, 0);
	while (!idx->failed &&
	       message_parser_parse_next_block(parser, &raw) > 0) {
		if (raw.part != prev_part) {
			/* as message_search_more_get_decoded() */
			prev_part = raw.part;
			part_text = raw.hdr != NULL;
		}
		if (raw.hdr != NULL && raw.hdr->name_len == 12 &&
		    strcasecmp(raw.hdr->name, "Content-Type") == 0) {
			if (raw.hdr->continues) {
				raw.hdr->use_full_value = TRUE;
				continue;
			}
			T_BEGIN {
				sqlbox_fts_content_type(raw.hdr, &part_text);
			} T_END;
		}
		if (raw.hdr == NULL && raw.size != 0 && !part_text)
			continue; /* not searched: not decoded either */
		if (raw.hdr != NULL || raw.size == 0) {
			T_BEGIN {
				sqlbox_fts_decoding_header(&dec, &raw);
			} T_END;
		} else if (sqlbox_fts_decoding_as_is(&dec, &raw)) {
			sqlbox_fts_indexer_feed(idx, raw.data, raw.size);
			continue;
		}
		/* the end of headers (size 0) too: it sets up the charset */
		if (!message_decoder_decode_next_block(decoder, &raw, &block))
			continue;
		if (block.hdr != NULL) {
			if (block.hdr->eoh)
				continue;
			if (block.hdr->continues) {
				block.hdr->use_full_value = TRUE;
				continue;
			}
			sqlbox_fts_indexer_feed(idx,
				(const unsigned char *)block.hdr->name,
				block.hdr->name_len);
			sqlbox_fts_indexer_feed(idx, block.hdr->middle,
						block.hdr->middle_len);
			sqlbox_fts_indexer_feed(idx, block.hdr->full_value,
						block.hdr->full_value_len);
			sqlbox_fts_indexer_feed(idx,
				(const unsigned char *)"\r\n", 2);
			/* Dovecot's header search looks at the message's
			   own header only, not at those of its parts */
			if (raw.part->parent == NULL &&
			    (field = sqlbox_fts_field_find(raw.hdr->name,
						raw.hdr->name_len)) != NULL) {
				sqlbox_fts_index_field(idx, field, raw.hdr,
						       block.hdr);
			}
		} else if (part_text && block.size > 0) {
			sqlbox_fts_indexer_feed(idx, block.data, block.size);
		}
	}
	message_parser_deinit(&parser, &parts);
	message_decoder_deinit(&decoder);
	pool_unref(&pool);
	if (input->stream_errno != 0) {
		mail_storage_set_critical(&idx->storage->storage,
			"sqlbox fts: read(%s) failed: %s",
			i_stream_get_name(input), i_stream_get_error(input));
		ret = -1;
	}
	/* What the text needed goes before FTS5 allocates its pending
	   terms, so that they take its pages, not fresh ones (a session of
	   one APPEND touches each page once: bench/README.md, issue 15,
	   eleventh pass): the stream and its buffer, and the slice's hash
	   (the last flush clears it anyway). */
	i_stream_unref(_input);
	if (idx->pool != NULL) {
		hash_table_destroy(&idx->trigrams);
		pool_unref(&idx->pool);
	}
	if (ret < 0 || idx->failed || sqlbox_fts_indexer_flush(idx) < 0)
		return -1;
	return 0;
}

int sqlbox_fts_index_body(struct sqlbox_storage *storage, int64_t body_id,
			  struct istream **input)
{
	struct sqlbox_fts_indexer idx = {
		.storage = storage,
	};
	int ret;

	if (!sqlbox_fts_enabled(storage)) {
		i_stream_unref(input);
		return 0;
	}
	if (sqlbox_fts_tables_create(storage) < 0 ||
	    sqlbox_db_exec_args(storage,
		"INSERT OR IGNORE INTO fts_doc (body_id, format)"
		" VALUES (?, "SQLBOX_FTS_FORMAT_STR")", 1, body_id) < 0) {
		i_stream_unref(input);
		return -1;
	}
	if (sqlite3_changes(storage->db) == 0) {
		i_stream_unref(input);
		return 0; /* already indexed */
	}
	idx.docid = sqlite3_last_insert_rowid(storage->db);
	idx.ascii_direct = storage->storage.user->default_normalizer ==
		uni_utf8_to_decomposed_titlecase;
	idx.tokens = str_new(default_pool, 4096);
	idx.norm = buffer_create_dynamic(default_pool, 32);
	idx.token = str_new(default_pool, 32);
	idx.addr = str_new(default_pool, 128);
	idx.addr_decoded = str_new(default_pool, 128);

	i_stream_seek(*input, 0);
	ret = sqlbox_fts_index_text(&idx, input);
	if (ret == 0 && idx.slices > 1) {
		e_debug(storage->storage.event,
			"sqlbox fts: body %"PRId64" indexed in %u slices",
			body_id, idx.slices);
	}

	sqlbox_fts_indexer_wipe(idx.tokens);
	sqlbox_fts_indexer_wipe(idx.token);
	str_free(&idx.tokens);
	str_free(&idx.addr);
	str_free(&idx.addr_decoded);
	buffer_free(&idx.norm);
	str_free(&idx.token);
	if (idx.pool != NULL) {
		hash_table_destroy(&idx.trigrams);
		pool_unref(&idx.pool);
	}
	return ret;
}

/* Empties the index when dead rows (expunged bodies) outnumber the live
   ones; the next catch-up builds it again.  Two rows read, whatever the
   size of the index: fts_doc's count and FTS5's own count of its rows
   (its averages record, as of the last commit: the catch-up calls this
   before it indexes anything). */
static int sqlbox_fts_compact(struct sqlbox_storage *storage)
{
	sqlite3_stmt *stmt;
	int64_t live = 0;
	uint64_t all = 0;
	int rc;

	stmt = sqlbox_db_prepare(storage,
		"SELECT "SQLBOX_FTS_DOCS_SQL", (SELECT block FROM fts_index_data"
		" WHERE id = ?)");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int(stmt, 1, SQLBOX_FTS_AVERAGES_ROWID);
	rc = sqlbox_db_step(storage, stmt);
	if (rc == SQLITE_ROW) {
		live = sqlite3_column_int64(stmt, 0);
		if (!sqlbox_fts_averages_rows(sqlite3_column_blob(stmt, 1),
					      sqlite3_column_bytes(stmt, 1),
					      &all)) {
			e_error(storage->storage.event,
				"sqlbox fts: the index's averages record "
				"does not parse; not compacted");
			all = 0;
		}
	}
	sqlite3_finalize(stmt);
	if (rc < 0)
		return -1;
	if (all <= (uint64_t)live * 2 || all - live < 100)
		return 0;
	e_debug(storage->storage.event,
		"sqlbox fts: rebuilding (%"PRId64" live, %"PRIu64" dead rows)",
		live, all - live);
	if (sqlbox_db_exec(storage,
		"INSERT INTO fts_index (fts_index) VALUES ('delete-all')") < 0 ||
	    sqlbox_db_exec(storage, "DELETE FROM fts_doc") < 0)
		return -1;
	return 0;
}

/* Drops the rows an older sqlbox (format 1: no scoped tokens) added to
   this index after a downgrade, found through the partial index
   fts_doc_old (empty otherwise: nothing to scan).  Their bodies are then
   unindexed, and indexed again by the catch-up that follows, before
   any lookup; their FTS rows lead nowhere, as an expunged body's. */
static int sqlbox_fts_drop_old(struct sqlbox_storage *storage)
{
	if (sqlbox_db_exec(storage, "DELETE FROM fts_doc WHERE format < "
			   SQLBOX_FTS_FORMAT_STR) < 0)
		return -1;
	if (sqlite3_changes(storage->db) > 0) {
		e_debug(storage->storage.event,
			"sqlbox fts: %d rows of format 1 dropped",
			sqlite3_changes(storage->db));
	}
	return 0;
}

/* Whether the folder is caught up: its row in fts_caught_up, written by
   the last catch-up that found it so (in its write transaction), still
   names the folder's UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ and this
   format.  One read, no lock: a SEARCH of a folder that did not change
   since pays no write transaction (bench/README.md, issue 15, eighth
   pass).

   Why that is enough: after a catch-up every mail row of the folder has
   a body with an fts_doc row of this format.  That stays true until
   (a) a mail row is added to the folder: a save, COPY, MOVE, the
   spool's import or an older sqlbox, all of them in the transaction
   that moves the folder's uidnext past the new UID (a mail's body never
   changes); or (b) the fts_doc row of a live body is deleted
   (compaction, drop_old, an upgrade, by this or an older sqlbox): the
   trigger fts_caught_up_void deletes every record then.  A body's own
   delete drops only rows nobody needs.  Expunges and flag changes
   (HIGHESTMODSEQ) need no catch-up but cost one; compaction after
   expunges waits for that one.  The record of a deleted folder goes with
   its mailbox row (trigger), and a folder of a reused id has another
   UIDVALIDITY anyway.  Mail being saved now, after the read, is missed
   as after a catch-up's COMMIT: the view the search runs on is older.
   1 if caught up, 0 if not (no table yet: not caught up), -1 never (an
   error here leaves it to the catch-up's statements to report). */
static int sqlbox_fts_caught_up(struct sqlbox_mailbox *mbox)
{
	struct sqlbox_storage *storage = mbox->storage;
	sqlite3_stmt *stmt;
	int64_t modseq;

	/* not sqlbox_db_prepare(): before the first catch-up the table
	   does not exist, which is no error */
	if (sqlite3_prepare_v2(storage->db,
		"SELECT m.highestmodseq FROM mailbox m JOIN fts_caught_up c"
		" ON c.mailbox_id = m.id WHERE m.id = ?"
		" AND c.uidvalidity = m.uidvalidity AND c.uidnext = m.uidnext"
		" AND c.highestmodseq = m.highestmodseq"
		" AND c.format = "SQLBOX_FTS_FORMAT_STR,
		-1, &stmt, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	if (sqlite3_step(stmt) != SQLITE_ROW) {
		sqlite3_finalize(stmt);
		return 0;
	}
	modseq = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	e_debug(mbox->box.event,
		"sqlbox fts: index of folder caught up at modseq %"PRId64,
		modseq);
	return 1;
}

/* Indexes the folder's mail that is not yet indexed (older mail, mail
   saved by a sqlbox without FTS).  Own write transaction, unless the
   folder is caught up already (sqlbox_fts_caught_up()). */
static int sqlbox_fts_catch_up(struct sqlbox_mailbox *mbox)
{
	struct sqlbox_storage *storage = mbox->storage;
	ARRAY(int64_t) ids;
	ARRAY(uoff_t) sizes;
	sqlite3_stmt *stmt;
	int rc, ret = 0;

	if (sqlbox_fts_caught_up(mbox) > 0)
		return 0;
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	if (sqlbox_fts_tables_create(storage) < 0 ||
	    sqlbox_fts_drop_old(storage) < 0 ||
	    sqlbox_fts_compact(storage) < 0 ||
	    (stmt = sqlbox_db_prepare(storage,
		"SELECT DISTINCT b.id, b.size FROM mail m"
		" JOIN body b ON b.id = m.body_id WHERE m.mailbox_id = ?"
		" AND NOT EXISTS (SELECT 1 FROM fts_doc d"
		" WHERE d.body_id = m.body_id)")) == NULL) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	i_array_init(&ids, 64);
	i_array_init(&sizes, 64);
	sqlite3_bind_int64(stmt, 1, mbox->id);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(stmt, 0);
		uoff_t size = sqlite3_column_int64(stmt, 1);

		array_push_back(&ids, &id);
		array_push_back(&sizes, &size);
	}
	sqlite3_finalize(stmt);
	if (rc < 0)
		ret = -1;
	for (unsigned int i = 0; ret == 0 && i < array_count(&ids); i++) {
		struct istream *input;
		int64_t id = *array_idx(&ids, i);

		input = sqlbox_body_istream_create_once(storage, id,
							*array_idx(&sizes, i));
		i_stream_set_name(input, t_strdup_printf("sqlbox body %"PRId64,
							 id));
		ret = sqlbox_fts_index_body(storage, id, &input);
	}
	if (array_count(&ids) > 0) {
		e_debug(mbox->box.event, "sqlbox fts: indexed %u bodies",
			array_count(&ids));
	}
	array_free(&ids);
	array_free(&sizes);
	/* under the write lock: the mailbox row is the one of the mail
	   rows just indexed */
	if (ret == 0 && sqlbox_db_exec_args(storage,
		"INSERT OR REPLACE INTO fts_caught_up (mailbox_id, uidvalidity,"
		" uidnext, highestmodseq, format) SELECT id, uidvalidity,"
		" uidnext, highestmodseq, "SQLBOX_FTS_FORMAT_STR
		" FROM mailbox WHERE id = ?", 1, mbox->id) < 0)
		ret = -1;
	if (ret < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	return sqlbox_db_commit(storage);
}

static unsigned int sqlbox_fts_index_delay(struct sqlbox_storage *storage)
{
	const char *value, *error;

	if (storage->fts_delay_read)
		return storage->fts_delay_msecs;
	storage->fts_delay_read = TRUE;
	storage->fts_delay_msecs = SQLBOX_FTS_DELAY_DEFAULT_MSECS;
	value = mail_user_plugin_getenv(storage->storage.user,
					SQLBOX_FTS_DELAY_SETTING);
	if (value != NULL && value[0] != '\0' &&
	    settings_get_time_msecs(value, &storage->fts_delay_msecs,
				    &error) < 0) {
		storage->fts_delay_msecs = SQLBOX_FTS_DELAY_DEFAULT_MSECS;
		e_error(storage->storage.event,
			"sqlbox fts: invalid "SQLBOX_FTS_DELAY_SETTING
			" (using %u ms): %s", storage->fts_delay_msecs,
			error);
	}
	return storage->fts_delay_msecs;
}

bool sqlbox_fts_index_deferred(struct sqlbox_storage *storage)
{
	return sqlbox_fts_enabled(storage) &&
		sqlbox_fts_index_delay(storage) > 0;
}

/* Indexes the next batch of pending bodies in a transaction of its own:
   1 if more are pending, 0 if none, -1 on error (the rest is dropped:
   a SEARCH's catch-up indexes them).  A body expunged meanwhile has no
   row any more, one indexed meanwhile (a SEARCH's catch-up) its fts_doc
   row: both are skipped. */
static int
sqlbox_fts_index_pending_batch(struct sqlbox_storage *storage,
			       unsigned int *indexed_r)
{
	sqlite3_stmt *stmt;
	uoff_t bytes = 0;
	int rc, ret = 0;

	*indexed_r = 0;
	if (sqlbox_db_begin(storage) < 0)
		return -1;
	if (sqlbox_fts_tables_create(storage) < 0 ||
	    (stmt = sqlbox_db_prepare(storage,
		"SELECT b.size FROM body b WHERE b.id = ? AND NOT EXISTS"
		" (SELECT 1 FROM fts_doc d WHERE d.body_id = b.id)")) == NULL) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	while (ret == 0 && *indexed_r < SQLBOX_FTS_BATCH_BODIES &&
	       bytes < SQLBOX_FTS_BATCH_BYTES &&
	       storage->fts_pending_next < array_count(&storage->fts_pending)) {
		int64_t id = array_idx_elem(&storage->fts_pending,
					    storage->fts_pending_next++);
		struct istream *input;
		uoff_t size;

		sqlite3_bind_int64(stmt, 1, id);
		rc = sqlbox_db_step(storage, stmt);
		size = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
		sqlite3_reset(stmt);
		if (rc != SQLITE_ROW) {
			if (rc < 0)
				ret = -1;
			continue;
		}
		input = sqlbox_body_istream_create_once(storage, id, size);
		i_stream_set_name(input, t_strdup_printf("sqlbox body %"PRId64,
							 id));
		ret = sqlbox_fts_index_body(storage, id, &input);
		bytes += size;
		++*indexed_r;
	}
	sqlite3_finalize(stmt);
	if (ret < 0) {
		sqlbox_db_rollback(storage);
		return -1;
	}
	if (sqlbox_db_commit(storage) < 0)
		return -1;
	return storage->fts_pending_next < array_count(&storage->fts_pending) ?
		1 : 0;
}

/* A batch, logged; the list is emptied when done or failed. */
static int
sqlbox_fts_index_pending(struct sqlbox_storage *storage, const char *when)
{
	unsigned int indexed;
	int ret;

	T_BEGIN {
		ret = sqlbox_fts_index_pending_batch(storage, &indexed);
	} T_END;
	if (ret < 0) {
		e_error(storage->storage.event,
			"sqlbox fts: indexing saved mail %s failed "
			"(a SEARCH of its folder indexes it): %s", when,
			mail_storage_get_last_internal_error(
				&storage->storage, NULL));
	} else {
		e_debug(storage->storage.event,
			"sqlbox fts: indexed %u saved bodies %s (%u pending)",
			indexed, when, array_count(&storage->fts_pending) -
			storage->fts_pending_next);
	}
	if (ret <= 0) {
		array_clear(&storage->fts_pending);
		storage->fts_pending_next = 0;
	}
	return ret;
}

/* Idle enough to write: no transaction of any of the storage's
   mailboxes is open (a command, e.g. an APPEND still receiving its
   literal or a FETCH waiting for the client to read, is in progress),
   and no SQLite transaction. */
static bool sqlbox_fts_storage_idle(struct sqlbox_storage *storage)
{
	struct mailbox *box;

	if (storage->txn_depth > 0 || storage->db == NULL)
		return FALSE;
	for (box = storage->storage.mailboxes; box != NULL; box = box->next) {
		if (box->transaction_count > 0)
			return FALSE;
	}
	return TRUE;
}

static void sqlbox_fts_pending_timeout(struct sqlbox_storage *storage)
{
	timeout_remove(&storage->to_fts);
	if (!sqlbox_fts_storage_idle(storage)) {
		storage->to_fts = timeout_add_to(io_loop_get_root(),
			sqlbox_fts_index_delay(storage),
			sqlbox_fts_pending_timeout, storage);
		return;
	}
	/* more: the next batch once the ioloop has served everyone else */
	if (sqlbox_fts_index_pending(storage, "while idle") > 0) {
		storage->to_fts = timeout_add_short_to(io_loop_get_root(), 0,
			sqlbox_fts_pending_timeout, storage);
	}
}

void sqlbox_fts_index_later(struct sqlbox_storage *storage, int64_t body_id)
{
	if (!array_is_created(&storage->fts_pending))
		i_array_init(&storage->fts_pending, 64);
	array_push_back(&storage->fts_pending, &body_id);
	timeout_remove(&storage->to_fts);
	/* On the root ioloop: a save made inside a temporary one (a
	   plugin's nested loop) must not leave the timer on a loop that
	   is destroyed before it fires. */
	storage->to_fts = timeout_add_to(io_loop_get_root(),
					 sqlbox_fts_index_delay(storage),
					 sqlbox_fts_pending_timeout, storage);
}

void sqlbox_fts_storage_deinit(struct sqlbox_storage *storage)
{
	timeout_remove(&storage->to_fts);
	if (!array_is_created(&storage->fts_pending))
		return;
	/* batch by batch: other sessions and LMTP's import wait for one
	   batch at most */
	while (storage->db != NULL && storage->txn_depth == 0 &&
	       array_count(&storage->fts_pending) > 0) {
		if (sqlbox_fts_index_pending(storage,
					     "at the session's end") <= 0)
			break;
	}
	array_free(&storage->fts_pending);
}

static bool sqlbox_fts_char_indexable(unichar_t chr)
{
	if (chr < 0x80)
		return (chr >= '0' && chr <= '9') ||
			((chr | 0x20) >= 'a' && (chr | 0x20) <= 'z');
	return !(chr == 0xa0 || (chr >= 0x2000 && chr <= 0x200b) ||
		 chr == 0x3000);
}

/* The FTS5 query of a key: its trigrams ANDed, as scoped tokens of the
   field of code scope (0: unscoped); NULL if it has none. */
static const char *
sqlbox_fts_key_query(struct sqlbox_storage *storage, const char *key,
		     char scope)
{
	ARRAY_TYPE(unichars) chars;
	ARRAY_TYPE(const_string) trigrams;
	buffer_t *norm = t_buffer_create(128);
	string_t *query, *trigram, *utf8;
	unsigned int i, count, run = 0, step;
	const char *const *tri;

	if (storage->storage.user->default_normalizer(key, strlen(key),
							norm) < 0)
		return NULL;
	t_array_init(&chars, 64);
	if (uni_utf8_to_ucs4_n(norm->data, norm->used, &chars) < 0)
		return NULL;
	t_array_init(&trigrams, 16);
	count = array_count(&chars);
	for (i = 0; i < count; i++) {
		unichar_t chr = *array_idx(&chars, i);

		if (!sqlbox_fts_char_indexable(chr)) {
			run = 0;
			continue;
		}
		if (++run < 3)
			continue;
		utf8 = t_str_new(16);
		for (unsigned int j = i - 2; j <= i; j++)
			uni_ucs4_to_utf8_c(*array_idx(&chars, j), utf8);
		trigram = t_str_new(32);
		str_append_c(trigram, '"');
		if (scope != 0) {
			str_append_c(trigram, 'x');
			str_append_c(trigram, scope);
		}
		sqlbox_fts_trigram_token(str_data(utf8), str_len(utf8),
					 trigram);
		str_append_c(trigram, '"');
		const char *tri_str = str_c(trigram);

		array_push_back(&trigrams, &tri_str);
	}
	count = array_count(&trigrams);
	if (count == 0)
		return NULL;
	query = t_str_new(256);
	tri = array_front(&trigrams);
	step = (count + SQLBOX_FTS_MAX_TRIGRAMS - 1) / SQLBOX_FTS_MAX_TRIGRAMS;
	for (i = 0; i < count; i += step) {
		if (str_len(query) > 0)
			str_append(query, " AND ");
		str_append(query, tri[i]);
	}
	if ((count - 1) % step != 0)
		str_printfa(query, " AND %s", tri[count - 1]);
	return str_c(query);
}

/* The field code whose scoped tokens answer a header arg, 0 for the
   unscoped tokens: SEARCH_HEADER_ADDRESS only of an address field (whose
   scoped tokens have the rewritten addresses). */
static char sqlbox_fts_arg_scope(const struct mail_search_arg *arg)
{
	const struct sqlbox_fts_field *field;

	switch (arg->type) {
	case SEARCH_HEADER:
	case SEARCH_HEADER_ADDRESS:
	case SEARCH_HEADER_COMPRESS_LWSP:
		break;
	default:
		return 0;
	}
	if (arg->hdr_field_name == NULL ||
	    (field = sqlbox_fts_field_find(arg->hdr_field_name,
					   strlen(arg->hdr_field_name))) == NULL)
		return 0;
	if (arg->type == SEARCH_HEADER_ADDRESS && !field->address)
		return 0;
	return field->code;
}

static bool sqlbox_fts_arg_indexed(const struct mail_search_arg *arg)
{
	if (arg->match_not || arg->value.str == NULL)
		return FALSE;
	switch (arg->type) {
	case SEARCH_BODY:
	case SEARCH_TEXT:
	case SEARCH_HEADER:
	case SEARCH_HEADER_ADDRESS:
	case SEARCH_HEADER_COMPRESS_LWSP:
		return TRUE;
	default:
		return FALSE;
	}
}

/* The UIDs of the folder whose bodies have every trigram of query. */
static int
sqlbox_fts_lookup(struct sqlbox_mailbox *mbox, const char *query,
		  ARRAY_TYPE(seq_range) *uids)
{
	struct sqlbox_storage *storage = mbox->storage;
	sqlite3_stmt *stmt;
	int rc;

	/* Kept prepared: the three keys of OR OR FROM .. SUBJECT ..
	   HEADER .. prepared it three times a SEARCH (issue 15, ninth
	   pass). */
	stmt = sqlbox_db_prepare_kept(storage,
		"SELECT m.uid FROM fts_index f CROSS JOIN fts_doc d"
		" ON d.docid = f.rowid CROSS JOIN mail m"
		" ON m.body_id = d.body_id AND m.mailbox_id = ?"
		" WHERE fts_index MATCH ?");
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, mbox->id);
	sqlite3_bind_text(stmt, 2, query, -1, SQLITE_STATIC);
	while ((rc = sqlbox_db_step(storage, stmt)) == SQLITE_ROW)
		seq_range_array_add(uids, sqlite3_column_int64(stmt, 0));
	sqlbox_db_kept_done(stmt);
	/* query is the caller's: no binding outlives the call */
	sqlite3_clear_bindings(stmt);
	return rc < 0 ? -1 : 0;
}

static int
sqlbox_fts_arg_uids(struct sqlbox_mailbox *mbox, struct mail_search_arg *arg,
		    bool *caught_up, ARRAY_TYPE(seq_range) *uids);

/* Candidate UIDs for args ANDed together (the top level, a SUB): the
   intersection of what the index can answer of them.  1 with uids set,
   0 if it can answer none, -1 on error. */
static int
sqlbox_fts_and_uids(struct sqlbox_mailbox *mbox, struct mail_search_arg *args,
		    bool *caught_up, ARRAY_TYPE(seq_range) *uids)
{
	ARRAY_TYPE(seq_range) arg_uids;
	bool found = FALSE;
	int ret;

	for (; args != NULL; args = args->next) {
		t_array_init(&arg_uids, 64);
		if ((ret = sqlbox_fts_arg_uids(mbox, args, caught_up,
					       &arg_uids)) < 0)
			return -1;
		if (ret == 0)
			continue;
		if (!found)
			array_append_array(uids, &arg_uids);
		else
			seq_range_array_intersect(uids, &arg_uids);
		found = TRUE;
	}
	return found ? 1 : 0;
}

/* Candidate UIDs of one arg: a superset of the mails it matches.  An
   indexed key: the mails with every trigram of it; an OR: the union of
   its alternatives', if the index answers every one of them (else any
   mail may match); a SUB: as the top level.  1 with uids set, 0 if the
   index can't narrow the arg down, -1 on error. */
static int
sqlbox_fts_arg_uids(struct sqlbox_mailbox *mbox, struct mail_search_arg *arg,
		    bool *caught_up, ARRAY_TYPE(seq_range) *uids)
{
	ARRAY_TYPE(seq_range) sub_uids;
	struct mail_search_arg *sub;
	const char *query;
	int ret;

	if (arg->match_not)
		return 0;
	switch (arg->type) {
	case SEARCH_OR:
		for (sub = arg->value.subargs; sub != NULL; sub = sub->next) {
			t_array_init(&sub_uids, 64);
			if ((ret = sqlbox_fts_arg_uids(mbox, sub, caught_up,
						       &sub_uids)) <= 0)
				return ret;
			seq_range_array_merge(uids, &sub_uids);
		}
		return arg->value.subargs != NULL ? 1 : 0;
	case SEARCH_SUB:
		return sqlbox_fts_and_uids(mbox, arg->value.subargs,
					   caught_up, uids);
	default:
		break;
	}
	if (!sqlbox_fts_arg_indexed(arg) ||
	    (query = sqlbox_fts_key_query(mbox->storage, arg->value.str,
					  sqlbox_fts_arg_scope(arg))) == NULL)
		return 0;
	if (!*caught_up) {
		if (sqlbox_fts_catch_up(mbox) < 0)
			return -1;
		*caught_up = TRUE;
	}
	return sqlbox_fts_lookup(mbox, query, uids) < 0 ? -1 : 1;
}

struct mail_search_context *
sqlbox_fts_search_init(struct mailbox_transaction_context *t,
		       struct mail_search_args *args,
		       const enum mail_sort_type *sort_program,
		       enum mail_fetch_field wanted_fields,
		       struct mailbox_header_lookup_ctx *wanted_headers)
{
	struct sqlbox_mailbox *mbox = SQLBOX_MAILBOX(t->box);
	struct mail_search_context *ctx;
	struct sqlbox_fts_search_context *fctx;
	int ret = 0;

	ctx = index_storage_search_init(t, args, sort_program, wanted_fields,
					wanted_headers);
	if (!mbox->spool_only)
		sqlbox_body_search_init(mbox->storage, ctx);
	if (mbox->spool_only || mbox->storage->db == NULL ||
	    !sqlbox_fts_enabled(mbox->storage))
		return ctx;
	fctx = i_new(struct sqlbox_fts_search_context, 1);
	i_array_init(&fctx->uids, 64);
	T_BEGIN {
		bool caught_up = FALSE;

		ret = sqlbox_fts_and_uids(mbox, args->args, &caught_up,
					  &fctx->uids);
	} T_END;
	if (ret <= 0) {
		/* the unindexed search answers (an error was logged) */
		if (ret < 0) {
			i_error("%s", mailbox_get_last_internal_error(
				t->box, NULL));
		}
		array_free(&fctx->uids);
		i_free(fctx);
		return ctx;
	}
	e_debug(t->box->event, "sqlbox fts: %u candidate mails",
		seq_range_count(&fctx->uids));
	fctx->view = t->view;
	if (mbox->search_candidates == NULL)
		mbox->search_candidates = &fctx->uids;
	MODULE_CONTEXT_SET(ctx, sqlbox_fts_search_module, fctx);
	return ctx;
}

bool sqlbox_fts_search_next_update_seq(struct mail_search_context *ctx)
{
	struct sqlbox_fts_search_context *fctx = SQLBOX_FTS_CONTEXT(ctx);
	uint32_t uid;

	if (fctx == NULL)
		return index_storage_search_next_update_seq(ctx);
	while (index_storage_search_next_update_seq(ctx)) {
		mail_index_lookup_uid(fctx->view, ctx->seq, &uid);
		if (seq_range_exists(&fctx->uids, uid))
			return TRUE;
		/* not a candidate: Dovecot never reads it */
		mail_search_args_reset(ctx->args->args, FALSE);
	}
	return FALSE;
}

int sqlbox_fts_search_deinit(struct mail_search_context *ctx)
{
	struct sqlbox_fts_search_context *fctx = SQLBOX_FTS_CONTEXT(ctx);

	if (fctx != NULL) {
		struct sqlbox_mailbox *mbox =
			SQLBOX_MAILBOX(ctx->transaction->box);

		if (mbox->search_candidates == &fctx->uids)
			mbox->search_candidates = NULL;
		array_free(&fctx->uids);
		i_free(fctx);
	}
	return index_storage_search_deinit(ctx);
}
