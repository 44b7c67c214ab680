"""Issue 15, sqlbox's mail cache: what Dovecot's dovecot.index.cache keeps
(the header block, sizes, ENVELOPE, BODYSTRUCTURE) is kept in the
encrypted database (table body_cache), filled at save time, and for mail
of an older database the first time it is read.

- a corpus of MIME and malformed messages gives, in new sessions (so that
  nothing comes from the session's in-memory index), byte-identical
  answers on sqlbox and on Dovecot's maildir for header, ENVELOPE,
  BODYSTRUCTURE, sizes, partial bodies, SEARCH, SORT and THREAD;
- header fields, ENVELOPE, BODYSTRUCTURE and RFC822.SIZE are answered
  with the message's body chunks gone from the database;
- a marker in a header (so in the cache row) is in no file of the home;
- a database of schema version 4 (no cache table) is migrated, its mail
  gets cache rows when read, and the answers stay maildir's;
- SEARCH on the header fields of body_fields (schema version 9) reads
  them, not the header block: it answers with the body_cache rows gone
  (FETCH ENVELOPE then computes them again); a database of version 8 gets
  its body_fields rows at the migration;
- reads of whole bodies (BODY[], BINARY[], BODY[TEXT], parts, partial
  reads, a body with NULs) answer as before with the body_cache rows
  gone and fill none back: they read the light rows only;
- mail rows read ahead for FETCH and SEARCH in sequence order answer
  every mail with its own data over expunged UIDs, also in a session that
  has not seen the expunge yet;
- the header block is in body_header (schema version 10), apart from
  ENVELOPE and BODYSTRUCTURE (body_cache): header fetches answer without
  body_cache or the body, ENVELOPE and BODYSTRUCTURE without body_header
  or the body; a database of version 9 gets its header blocks moved at
  the migration;
- SQLite's page cache uses the slots the storage populated before its
  first open (the debug log), and the answers stay maildir's.
"""

import os
import re
import subprocess

import pytest

from conftest import World
from harness import BUILD_DIR
from test_sqlbox_compare import (ALTERNATIVE, LONE, MIXED, NAMESPACE_CONF,
                                 PLAIN, REPLY, RawIMAP, msg, normalise)

USER = "alice@ubuntu.com"
DBTOOL = os.path.join(BUILD_DIR, "src/storage/sqlbox-dbtool")
HDR_MARKER = b"cachehdr-marker-7d41c9"

MARKED = msg(
    "From: Erin <erin@example.org>",
    "To: Alice <alice@ubuntu.com>",
    "Subject: the marked one",
    "X-Marker: " + HDR_MARKER.decode(),
    "Date: Sun, 08 Mar 2026 08:00:00 +0000",
    "Message-ID: <marked@cache.test>",
    "",
    "A body without the marker.",
)
# Malformed: no blank line, so all header and no body.
HEADER_ONLY = b"From: Frank <frank@example.org>\r\nSubject: header only\r\n"
# Malformed: no header at all.
NO_HEADER = b"\r\nJust a body line, no header.\r\n"
# Bare LFs (stored as CRLF by sqlbox; sizes are virtual on both).
BARE_LF = (b"From: Grace <grace@example.org>\nSubject: bare LF\n"
           b"Date: Mon, 09 Mar 2026 08:00:00 +0000\n\nline one\nline two\n")
# Broken MIME: a boundary that never closes, a part without a header,
# an unparsable Content-Type, folded and 8-bit headers, a bad
# encoded-word.
BROKEN_MIME = msg(
    "From: =?UTF-8?Q?broken=ZZ?= <heidi@example.org>",
    "To: undisclosed-recipients:;",
    "Subject: caf\xc3\xa9 =?UTF-8?B?bm90IGJhc2U2NA?=",
    "Date: not a date at all",
    "Message-ID: <broken@cache.test>",
    "X-Folded: first part",
    "\tsecond part",
    "  third part",
    "MIME-Version: 1.0",
    "Content-Type: multipart/mixed; boundary=\"never-closed\"",
    "",
    "--never-closed",
    "",
    "a part without a header",
    "--never-closed",
    "Content-Type: text/;;;broken",
    "Content-Transfer-Encoding: x-unknown",
    "",
    "the second part, never closed",
)
NESTED = msg(
    "From: Ivan <ivan@example.org>",
    "To: Alice <alice@ubuntu.com>",
    "Subject: forwarded with parts",
    "Date: Tue, 10 Mar 2026 08:00:00 +0000",
    "MIME-Version: 1.0",
    "Content-Type: message/rfc822",
    "",
    "From: inner@example.com",
    "Subject: inner multipart",
    "MIME-Version: 1.0",
    "Content-Type: multipart/alternative; boundary=in",
    "",
    "--in",
    "Content-Type: text/plain",
    "",
    "inner text",
    "--in",
    "Content-Type: text/html",
    "",
    "<p>inner</p>",
    "--in--",
)
# Over one 256 KiB chunk: partial reads across the chunk boundary.
LARGE = msg(
    "From: Judy <judy@example.org>",
    "To: Alice <alice@ubuntu.com>",
    "Subject: large",
    "Date: Wed, 11 Mar 2026 08:00:00 +0000",
    "Message-ID: <large@cache.test>",
    "",
    *["line %06d of a large body, padded to about eighty bytes ......"
      % i for i in range(5000)],
)
# Header lines sqlbox's quick filter of the cached header block leaves to
# Dovecot's (white space before the colon, no colon, a name too long to be
# one: each in a message of its own, as any of them makes the whole block
# Dovecot's), and names in odd case, 8-bit values, empty and folded
# fields (the quick filter's).
ODD_CASE = msg(
    "From: Kim <kim@example.org>",
    "subject: lower-case subject",
    "x-WEIRD: w1",
    "X-Weird:",
    "X-Empty-Fold:",
    " ",
    "To: caf\xc3\xa9 <alice@ubuntu.com>",
    "",
    "odd body",
)
ODD_SPACED = msg(
    "From: Lee <lee@example.org>",
    "SUBJECT : spaced subject",
    "X-Weird\t: w2",
    "",
    "odd body",
)
ODD_NO_COLON = msg(
    "From: Mo <mo@example.org>",
    "a line without a colon",
    "Subject: after a line without a colon",
    "",
    "odd body",
)
ODD_LONG_NAME = msg(
    "From: Ned <ned@example.org>",
    "X-Long-" + "n" * 1000 + ": long name",
    "X-Weird: w3",
    "",
    "odd body",
)
# body_fields' fields (From, To, Subject, List-Id...) in odd case, folded
# and repeated, next to fields that are not among them (X-Mailer).
LISTED = msg(
    "From: Olga <olga@example.org>",
    "to: Alice <alice@ubuntu.com>",
    "LIST-ID: Kernel team <kernel-team.lists.example.org>",
    "X-Mailer: mailer-7f3e",
    "\tsecond line",
    "Subject: a list",
    "  mail, folded",
    "CC: Pat <pat@example.org>",
    "cc: Quinn <quinn@example.org>",
    "Date: Thu, 12 Mar 2026 08:00:00 +0000",
    "",
    "list body",
)
CORPUS = [PLAIN, ALTERNATIVE, MIXED, REPLY, LONE, MARKED, HEADER_ONLY,
          NO_HEADER, BARE_LF, BROKEN_MIME, NESTED, LARGE, ODD_CASE, ODD_SPACED,
          ODD_NO_COLON, ODD_LONG_NAME, LISTED]
# Header blocks that are not plain (sqlbox-header-block.h): no fields in
# body_fields, the header block is filtered.
NOT_PLAIN = [CORPUS.index(m) + 1
             for m in (ODD_SPACED, ODD_NO_COLON, ODD_LONG_NAME)]
MARKED_SEQ = CORPUS.index(MARKED) + 1
LARGE_SEQ = CORPUS.index(LARGE) + 1

# In new sessions, one command a line: what a client's sync, reading and
# searching ask, all of it answered from the cache where it can be.
READS = [
    b"EXAMINE INBOX",
    b"FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS"
    b" (From To Subject Date Message-ID)] ENVELOPE BODYSTRUCTURE)",
    b"FETCH 1:* (BODY.PEEK[HEADER])",
    b"FETCH 1:* (BODY)",
    b"FETCH 1:* (BODY.PEEK[HEADER.FIELDS.NOT (Received Subject)])",
    b"FETCH 1:* (RFC822.HEADER RFC822.SIZE)",
    b"FETCH 1:* (BINARY.SIZE[1])",
    b"FETCH 1:* (BODY.PEEK[TEXT])",
    b"FETCH 1:* (BODY.PEEK[1] BODY.PEEK[1.MIME])",
    b"FETCH 1:* (BODY.PEEK[]<0.17> BODY.PEEK[TEXT]<3.9>)",
    b"FETCH %d (BODY.PEEK[]<262100.300> BODY.PEEK[TEXT]<300000.50>"
    b" BODY.PEEK[]<65530.20>)" % LARGE_SEQ,
    b"FETCH 1:* (BODY.PEEK[])",
    b"SEARCH FROM bob",
    b"SEARCH SUBJECT large",
    b"SEARCH HEADER Message-ID <broken@cache.test>",
    b"SEARCH HEADER X-Folded third",
    b"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (x-folded SUBJECT X-Weird"
    b" x-empty-fold To From)])",
    b"SEARCH OR HEADER x-weird w SUBJECT spaced",
    b"SEARCH OR SUBJECT lower-case SUBJECT colon",
    b"SEARCH OR OR FROM erin SUBJECT marked HEADER X-Marker cachehdr",
    b"SEARCH NOT HEADER Message-ID <marked@cache.test>",
    b"SEARCH CHARSET UTF-8 OR FROM broken SUBJECT \"caf\xc3\xa9\"",
    b"SEARCH HEADER Subject \"\"",
    # body_fields' fields, others, both in one command, and fields of
    # header blocks that are not plain; then what the light rows do not
    # have, in the same session.
    b"SEARCH HEADER List-Id kernel-team",
    b"SEARCH OR OR FROM sybil SUBJECT church HEADER List-Id kernel-team",
    b"SEARCH HEADER X-Mailer mailer-7f3e",
    b"SEARCH HEADER X-Mailer second",
    b"SEARCH OR FROM erin HEADER X-Mailer mailer-7f3e",
    b"SEARCH OR CC quinn SUBJECT folded",
    b"SEARCH OR OR FROM ned FROM mo SUBJECT spaced",
    b"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (from LIST-ID cc Subject)])",
    b"FETCH 1:* (ENVELOPE BODY.PEEK[HEADER])",
    b"SEARCH SENTBEFORE 05-Mar-2026",
    b"SEARCH TEXT inner",
    b"SEARCH BODY zebra",
    b"SORT (FROM SUBJECT) UTF-8 ALL",
    b"SORT (REVERSE DATE SIZE) UTF-8 ALL",
    b"SORT (TO CC) UTF-8 ALL",
    b"THREAD REFERENCES UTF-8 ALL",
]
# BROKEN_MIME's unknown Content-Transfer-Encoding: NO [UNKNOWN-CTE], after
# the other messages' answers (compared like the rest).
MAY_FAIL = [b"FETCH 1:* (BINARY.SIZE[1])"]
# Answered from the cache row alone (see test_no_body_needed), SEARCH on
# header fields included (sqlbox filters the cached header block).  Not
# SORT on headers: Dovecot's message parser, which it uses, reads ahead
# past the header (sqlbox then reads one page of the body).
HEADER_READS = [
    b"FETCH %d (RFC822.SIZE BODY.PEEK[HEADER] ENVELOPE BODYSTRUCTURE BODY"
    b" BODY.PEEK[HEADER.FIELDS (Subject X-Marker)])" % MARKED_SEQ,
    b"FETCH %d (BODY.PEEK[HEADER.FIELDS.NOT (Subject)] RFC822.HEADER"
    b")" % MARKED_SEQ,
    b"FETCH 1:* (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER."
    b"FIELDS (From To Subject Date Message-ID)])",
    b"SEARCH OR OR FROM erin SUBJECT marked HEADER X-Marker cachehdr",
    b"SEARCH HEADER X-Folded third",
    b"SEARCH NOT HEADER Message-ID <marked@cache.test>",
]
HDR_SEARCH = HEADER_READS.index(
    b"SEARCH OR OR FROM erin SUBJECT marked HEADER X-Marker cachehdr")


def append(message, i):
    return (b'APPEND INBOX () "%02d-Mar-2026 12:00:00 +0000" {%d+}\r\n' % (
        i + 1, len(message)) + message)


def login(world, password):
    imap = RawIMAP(world.dc.imap_port)
    res = imap.command(b'LOGIN "%s" "%s"' % (USER.encode(),
                                            password.encode()))
    assert b"TAG OK" in res, res
    return imap


def session(world, password, commands):
    """The answers of one new session (every command but those of
    MAY_FAIL must succeed)."""
    imap = login(world, password)
    out = []
    for cmd in commands:
        res = imap.command(cmd)
        assert cmd in MAY_FAIL or b"\r\nTAG OK " in b"\r\n" + res, (
            cmd, res[-300:])
        out.append(res)
    imap.command(b"LOGOUT")
    imap.close()
    return out


def uidvalidity(answers):
    return {int(v) for a in answers
            for v in re.findall(rb"UIDVALIDITY (\d+)", a)}


def dbtool(world, password, mode, sql):
    home = world.dc.home("alice")
    res = subprocess.run(
        [DBTOOL, os.path.join(home, "sqlbox.keys"),
         os.path.join(home, "mail", "sqlbox.db"), mode, sql],
        input=password, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [line.split("|") for line in res.stdout.splitlines()]


def grep_home(world, needle):
    hits = []
    for top, _, files in os.walk(world.dc.home("alice")):
        for name in files:
            path = os.path.join(top, name)
            with open(path, "rb") as f:
                if needle in f.read():
                    hits.append(path)
    return hits


@pytest.fixture(scope="module")
def maildir_answers():
    world = World(mail_location="maildir:~/Maildir",
                  extra_conf=NAMESPACE_CONF)
    try:
        password = world.dc.generate_password(USER, label="cache")
        session(world, password, [append(m, i)
                                  for i, m in enumerate(CORPUS)])
        yield session(world, password, READS)
    finally:
        world.close()


@pytest.fixture
def sqlbox_world():
    world = World(mail_location="sqlbox:~/mail", extra_conf=NAMESPACE_CONF)
    try:
        password = world.dc.generate_password(USER, label="cache")
        session(world, password, [append(m, i)
                                  for i, m in enumerate(CORPUS)])
        yield world, password
    finally:
        world.close()


def normal(answers):
    """normalise(), and without \\Recent: the first session takes it."""
    v = uidvalidity(answers)
    return [normalise(re.sub(rb"\* \d+ RECENT\r\n|\\Recent ?", b"", a), v)
            for a in answers]


def compare(expected, answers):
    diffs = ["%s\n  maildir: %r\n  sqlbox:  %r" % (cmd[:70], a, b)
             for cmd, a, b in zip(READS, normal(expected), normal(answers))
             if a != b]
    assert diffs == [], "\n".join(diffs)


def no_errors(world):
    errors = [line for line in world.dc.log_text().splitlines()
              if "Error:" in line or "Panic:" in line]
    assert errors == []


def test_cache_rows_filled_at_save(sqlbox_world):
    world, password = sqlbox_world
    rows = dbtool(world, password, "sql",
                  "SELECT count(*), count(c.envelope),"
                  " count(c.bodystructure),"
                  " sum(length(h.header) <= b.size)"
                  " FROM mail m JOIN body b ON b.id = m.body_id"
                  " JOIN body_cache c ON c.body_id = m.body_id"
                  " JOIN body_header h ON h.body_id = m.body_id")
    n = str(len(CORPUS))
    assert rows == [[n, n, n, n]]
    no_errors(world)


def test_answers_same_as_maildir(sqlbox_world, maildir_answers):
    world, password = sqlbox_world
    # Twice: the second session reads what the first may have cached.
    compare(maildir_answers, session(world, password, READS))
    compare(maildir_answers, session(world, password, READS))
    no_errors(world)


def test_no_body_needed(sqlbox_world):
    """With the marked message's chunks deleted, everything of its header,
    structure and size is still answered, as before; its body is not."""
    world, password = sqlbox_world
    before = session(world, password, [b"SELECT INBOX"] + HEADER_READS)
    dbtool(world, password, "exec",
           "DELETE FROM chunk WHERE body_id = (SELECT body_id FROM mail"
           " WHERE uid = %d AND mailbox_id = (SELECT id FROM mailbox"
           " WHERE name = 'INBOX'))" % MARKED_SEQ)
    after = session(world, password, [b"SELECT INBOX"] + HEADER_READS)
    assert normal(after) == normal(before)
    # The header SEARCH found the marked message (in both).
    assert re.search(rb"\* SEARCH( \d+)* %d\b" % MARKED_SEQ,
                     after[1 + HDR_SEARCH]), after[1 + HDR_SEARCH]
    assert b"{%d}" % len(MARKED.split(b"\r\n\r\n")[0] + b"\r\n\r\n") \
        in before[1]
    imap = login(world, password)
    imap.command(b"SELECT INBOX")
    # The body is gone: Dovecot fails the FETCH (and drops the session,
    # as after any read error in the middle of a FETCH).
    imap.sock.sendall(b"X1 FETCH %d (BODY.PEEK[TEXT])\r\n" % MARKED_SEQ)
    lines = []
    while not lines or not lines[-1].startswith((b"X1 ", b"* BYE")):
        line = imap.file.readline()
        if not line:
            break
        lines.append(line)
    imap.close()
    assert not any(line.startswith(b"X1 OK") for line in lines), lines


def test_cache_encrypted_on_disk(sqlbox_world):
    world, password = sqlbox_world
    session(world, password, [b"SELECT INBOX"] + HEADER_READS)
    # The marker is in the cache row (and in the body's first chunk) ...
    rows = dbtool(world, password, "sql",
                  "SELECT count(*) FROM body_header"
                  " WHERE instr(CAST(header AS TEXT), '%s') > 0"
                  % HDR_MARKER.decode())
    assert rows == [["1"]]
    # ... and in no file under the home.
    assert grep_home(world, HDR_MARKER) == []


def test_migration_from_version_4(sqlbox_world, maildir_answers):
    """A database as schema version 4 left it: no cache table."""
    world, password = sqlbox_world
    dbtool(world, password, "exec",
           "DROP TRIGGER body_cache_delete; DROP TABLE body_cache;"
           " DROP TRIGGER body_fields_delete; DROP TABLE body_fields;"
           " DROP TRIGGER body_header_delete; DROP TABLE body_header;"
           " PRAGMA user_version = 4")
    assert dbtool(world, password, "sql", "PRAGMA user_version") == [["4"]]
    compare(maildir_answers, session(world, password, READS))
    assert dbtool(world, password, "sql", "PRAGMA user_version") == [["10"]]
    rows = dbtool(world, password, "sql",
                  "SELECT count(*), count(envelope), count(bodystructure)"
                  " FROM body_cache")
    n = str(len(CORPUS))
    assert rows == [[n, n, n]]
    # The rows filled on demand answer the next session the same way.
    compare(maildir_answers, session(world, password, READS))
    # An expunged mail's body takes its cache row along.
    session(world, password, [b"SELECT INBOX",
                              b"STORE 1 +FLAGS.SILENT (\\Deleted)",
                              b"EXPUNGE"])
    for table in ("body_cache", "body_header"):
        rows = dbtool(world, password, "sql",
                      "SELECT count(*) FROM %s WHERE body_id NOT IN"
                      " (SELECT id FROM body)" % table)
        assert rows == [["0"]], table
    no_errors(world)


def by_uid(answer):
    """The FETCH lines of an answer keyed by UID, without their sequence
    numbers."""
    out = {}
    for line in re.split(rb"\r\n(?=\* )", answer):
        m = re.match(rb"\* \d+ FETCH \(UID (\d+) ", line)
        if m:
            out[int(m.group(1))] = re.sub(rb"^\* \d+ ", b"", line).split(
                b"\r\nTAG ")[0]
    return out


def test_read_ahead_over_expunged_uids(sqlbox_world):
    """FETCH and SEARCH of mails read in sequence order read the mail rows
    ahead, several in one statement: with UIDs missing in between
    (expunged), in this session and in one that did not see the
    expunge yet, every mail's answer is its own, and mail expunged
    meanwhile by another session is not answered from rows read before
    the expunge."""
    world, password = sqlbox_world
    fetch = (b"UID FETCH 1:* (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE"
             b" BODY.PEEK[HEADER])")
    search = b"UID SEARCH OR OR FROM erin SUBJECT large HEADER Subject only"
    before = session(world, password, [b"SELECT INBOX", fetch, search])
    rows = by_uid(before[1])
    assert sorted(rows) == list(range(1, len(CORPUS) + 1))
    gone = {2, 3, 5, 7, 10}
    # A session that reads everything now and again after the expunge
    # (which it sees at its NOOP) ...
    other = login(world, password)
    assert b"TAG OK" in other.command(b"SELECT INBOX")
    assert by_uid(other.command(fetch)) == rows
    session(world, password, [
        b"SELECT INBOX",
        b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % b",".join(
            b"%d" % u for u in sorted(gone)),
        b"EXPUNGE"])
    # ... and once before it saw it: the expunged ones are answered
    # empty, as Dovecot answers mail gone from under it (their rows are
    # gone), the others with their own.
    stale = by_uid(other.command(fetch))
    assert sorted(stale) == sorted(rows)
    for uid in gone:
        assert stale[uid].startswith(
            b"FETCH (UID %d RFC822.SIZE 0 ENVELOPE (NIL " % uid), stale[uid]
    assert {u: r for u, r in stale.items() if u not in gone} == {
        u: r for u, r in rows.items() if u not in gone}
    assert b"TAG OK" in other.command(b"NOOP")
    again = other.command(fetch)
    other.command(b"LOGOUT")
    other.close()
    want = {u: r for u, r in rows.items() if u not in gone}
    assert by_uid(again) == want
    after = session(world, password, [b"SELECT INBOX", fetch, search])
    assert by_uid(after[1]) == want
    hits = {int(u) for u in re.search(rb"\* SEARCH([ \d]*)",
                                      after[2]).group(1).split()}
    assert hits == {int(u) for u in re.search(
        rb"\* SEARCH([ \d]*)", before[2]).group(1).split()} - gone
    assert hits
    no_errors(world)


def fields_rows(world, password):
    """uid -> (fields in hex or None, hdr_size, hdr_lines, body_lines) of
    body_fields, with body_cache's sizes for comparison."""
    out = {}
    for uid, fields, f_sizes, c_sizes in dbtool(
            world, password, "sql",
            "SELECT m.uid, CASE WHEN f.fields IS NULL THEN 'NULL'"
            " ELSE hex(f.fields) END,"
            " f.hdr_size || ',' || f.hdr_lines || ',' || f.body_lines,"
            " c.hdr_size || ',' || c.hdr_lines || ',' || c.body_lines"
            " FROM mail m JOIN body_fields f ON f.body_id = m.body_id"
            " LEFT JOIN body_cache c ON c.body_id = m.body_id"
            " WHERE m.mailbox_id = (SELECT id FROM mailbox"
            " WHERE name = 'INBOX') ORDER BY m.uid"):
        out[int(uid)] = (None if fields == "NULL" else
                         bytes.fromhex(fields), f_sizes, c_sizes)
    return out


def test_search_fields_rows(sqlbox_world):
    """Each body has its body_fields row, with body_cache's sizes and the
    search fields of its header block (in the block's order, with their
    continuation lines), or none when the block is not plain."""
    world, password = sqlbox_world
    rows = fields_rows(world, password)
    assert sorted(rows) == list(range(1, len(CORPUS) + 1))
    assert sorted(u for u, r in rows.items() if r[0] is None) == NOT_PLAIN
    for uid, (fields, f_sizes, c_sizes) in rows.items():
        assert f_sizes == c_sizes, uid
    assert rows[MARKED_SEQ][0] == (
        b"From: Erin <erin@example.org>\r\nTo: Alice <alice@ubuntu.com>\r\n"
        b"Subject: the marked one\r\nMessage-ID: <marked@cache.test>\r\n"
        b"\r\n")
    assert rows[CORPUS.index(LISTED) + 1][0] == (
        b"From: Olga <olga@example.org>\r\nto: Alice <alice@ubuntu.com>\r\n"
        b"LIST-ID: Kernel team <kernel-team.lists.example.org>\r\n"
        b"Subject: a list\r\n  mail, folded\r\nCC: Pat <pat@example.org>\r\n"
        b"cc: Quinn <quinn@example.org>\r\n\r\n")
    # Gone with the body.
    session(world, password, [b"SELECT INBOX",
                              b"STORE 1 +FLAGS.SILENT (\\Deleted)",
                              b"EXPUNGE"])
    assert dbtool(world, password, "sql",
                  "SELECT count(*) FROM body_fields WHERE body_id NOT IN"
                  " (SELECT id FROM body)") == [["0"]]
    assert sorted(fields_rows(world, password)) == list(
        range(2, len(CORPUS) + 1))
    no_errors(world)


def test_header_search_reads_light_rows(sqlbox_world):
    """SEARCH on body_fields' fields answers from them: with every
    body_cache row deleted it answers as before and fills none back (as
    it would if it read the header block); what they do not have (FETCH
    ENVELOPE) computes the rows again."""
    world, password = sqlbox_world
    plain = b",".join(b"%d" % u for u in range(1, len(CORPUS) + 1)
                      if u not in NOT_PLAIN)
    search = (b"UID SEARCH UID %s OR OR OR FROM erin SUBJECT large"
              b" HEADER List-Id kernel-team CC quinn" % plain)
    fetch = b"FETCH 1:* (ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])"
    before = session(world, password, [b"SELECT INBOX", search, fetch])
    assert re.search(rb"\* SEARCH %d %d %d\r\n" % (
        MARKED_SEQ, LARGE_SEQ, CORPUS.index(LISTED) + 1), before[1]), \
        before[1]
    dbtool(world, password, "exec", "DELETE FROM body_cache")
    after = session(world, password, [b"SELECT INBOX", search])
    assert normal(after) == normal(before[:2])
    assert dbtool(world, password, "sql",
                  "SELECT count(*) FROM body_cache") == [["0"]]
    # A header field of no body_fields row: the header block, computed.
    after = session(world, password, [b"SELECT INBOX", search, fetch])
    assert normal(after) == normal(before)
    assert dbtool(world, password, "sql",
                  "SELECT count(*), count(envelope) FROM body_cache") == \
        [[str(len(CORPUS))] * 2]
    no_errors(world)


VERSION_9 = (
    # body_cache as schema 9 had it, with the header block
    "ALTER TABLE body_cache ADD COLUMN header BLOB;"
    " UPDATE body_cache SET header = (SELECT header FROM body_header h"
    " WHERE h.body_id = body_cache.body_id);"
    " DROP TRIGGER body_header_delete; DROP TABLE body_header;")


def test_migration_from_version_8(sqlbox_world, maildir_answers):
    """A database as schema version 8 left it: no body_fields table.  The
    migration fills it from the body_cache rows, as the saves would."""
    world, password = sqlbox_world
    saved = fields_rows(world, password)
    dbtool(world, password, "exec", VERSION_9 +
           " DROP TRIGGER body_fields_delete; DROP TABLE body_fields;"
           " PRAGMA user_version = 8")
    session(world, password, [b"STATUS INBOX (MESSAGES)"])
    assert dbtool(world, password, "sql", "PRAGMA user_version") == [["10"]]
    assert fields_rows(world, password) == saved
    compare(maildir_answers, session(world, password, READS))
    no_errors(world)


# A body with NULs (APPENDed as a literal8): BODY[] sends them as 0x80
# (imap's NUL filter), BINARY[] as they are.
WITH_NULS = (b"From: Uma <uma@example.org>\r\nSubject: nuls\r\n"
             b"Content-Type: application/octet-stream\r\n"
             b"Content-Transfer-Encoding: binary\r\n\r\n"
             b"before\x00after\r\n\x00\x00 two more\r\n")
BODY_READS = [
    b"FETCH 1:* (BODY.PEEK[])",
    b"FETCH 1:* (BODY.PEEK[TEXT])",
    b"FETCH 1:* (RFC822.SIZE BODY.PEEK[1])",
    b"FETCH 1:* (BODY.PEEK[]<0.17> BODY.PEEK[TEXT]<3.9>)",
    b"FETCH %d (BODY.PEEK[]<262100.300> BODY.PEEK[TEXT]<300000.50>"
    b" BODY.PEEK[]<65530.20>)" % LARGE_SEQ,
    b"FETCH %d (BODY.PEEK[] BINARY.PEEK[] BINARY.PEEK[1]"
    b" BINARY.PEEK[1]<3.5> BODY.PEEK[TEXT]<4.6>)" % (len(CORPUS) + 1),
]


def test_body_reads_light_rows(sqlbox_world):
    """Reads of whole bodies need no header block: they answer the same
    with every body_cache and body_header row deleted, and fill none
    back (as they did when every body read read the heavy row first).  The body with NULs
    comes 0x80 for NUL through BODY[], as it is through BINARY[]."""
    world, password = sqlbox_world
    res = session(world, password, [
        b"APPEND INBOX {%d+}\r\n" % len(WITH_NULS) + WITH_NULS])
    assert b"TAG OK" in res[0], res
    nuls = len(CORPUS) + 1
    before = session(world, password, [b"SELECT INBOX"] + BODY_READS)
    first = before[1].split(b"* %d FETCH (BODY[] {" % nuls)[1]
    assert first.split(b"}\r\n", 1)[1].startswith(
        WITH_NULS.replace(b"\x00", b"\x80")), first[:300]
    assert b"BINARY[] ~{%d}\r\n" % len(WITH_NULS) + WITH_NULS in \
        before[-1], before[-1]
    text = WITH_NULS.split(b"\r\n\r\n", 1)[1]
    assert b"BINARY[1] ~{%d}\r\n" % len(text) + text in before[-1], \
        before[-1]
    assert b"BINARY[1]<3> ~{5}\r\nore\x00a" in before[-1], before[-1]
    assert b"BODY[TEXT]<4> {6}\r\nre\x80aft" in before[-1], before[-1]
    dbtool(world, password, "exec",
           "DELETE FROM body_cache; DELETE FROM body_header")
    after = session(world, password, [b"SELECT INBOX"] + BODY_READS)
    assert normal(after) == normal(before)
    assert dbtool(world, password, "sql",
                  "SELECT (SELECT count(*) FROM body_cache),"
                  " (SELECT count(*) FROM body_header)") == [["0", "0"]]
    # What wants the header block still has it computed again.
    session(world, password, [b"SELECT INBOX",
                              b"FETCH 1:* (BODY.PEEK[HEADER])"])
    assert dbtool(world, password, "sql",
                  "SELECT (SELECT count(*) FROM body_cache),"
                  " (SELECT count(*) FROM body_header)") == [[str(nuls)] * 2]


def header_rows(world, password):
    """body_id -> (header in hex, hdr_size, hdr_lines, body_lines) of
    body_header."""
    return {int(r[0]): tuple(r[1:]) for r in dbtool(
        world, password, "sql",
        "SELECT body_id, hex(header), hdr_size, hdr_lines, body_lines"
        " FROM body_header ORDER BY body_id")}


def test_migration_from_version_9(sqlbox_world, maildir_answers):
    """A database as schema version 9 left it: the header blocks in
    body_cache.  The migration moves them to body_header, drops the
    column, and answers stay maildir's."""
    world, password = sqlbox_world
    saved = header_rows(world, password)
    assert len(saved) == len(CORPUS)
    cache = dbtool(world, password, "sql",
                   "SELECT * FROM body_cache ORDER BY body_id")
    dbtool(world, password, "exec", VERSION_9 + " PRAGMA user_version = 9")
    session(world, password, [b"STATUS INBOX (MESSAGES)"])
    assert dbtool(world, password, "sql", "PRAGMA user_version") == [["10"]]
    assert header_rows(world, password) == saved
    # body_cache as it was, without the column
    assert dbtool(world, password, "sql",
                  "SELECT * FROM body_cache ORDER BY body_id") == cache
    assert dbtool(world, password, "sql",
                  "SELECT count(*) FROM pragma_table_info('body_cache')"
                  " WHERE name = 'header'") == [["0"]]
    compare(maildir_answers, session(world, password, READS))
    # The trigger takes a body's header row along.
    session(world, password, [b"SELECT INBOX",
                              b"STORE 1 +FLAGS.SILENT (\\Deleted)",
                              b"EXPUNGE"])
    assert dbtool(world, password, "sql",
                  "SELECT count(*) FROM body_header WHERE body_id NOT IN"
                  " (SELECT id FROM body)") == [["0"]]
    assert len(header_rows(world, password)) == len(CORPUS) - 1
    no_errors(world)


def body_of(table, seq):
    """The statement deleting the rows of table of the body of INBOX's
    mail seq."""
    return ("DELETE FROM %s WHERE body_id = (SELECT body_id FROM mail"
            " WHERE uid = %d AND mailbox_id = (SELECT id FROM mailbox"
            " WHERE name = 'INBOX'))" % (table, seq))


def test_header_apart_from_envelope(sqlbox_world):
    """The header block (body_header) and ENVELOPE/BODYSTRUCTURE
    (body_cache) are read apart: with a message's chunks and body_header
    row gone, its ENVELOPE and BODYSTRUCTURE answer from body_cache (and
    put no body_header row back); with the marked message's chunks and
    every body_cache row gone, its header fetches answer from body_header
    (and put no body_cache row back)."""
    world, password = sqlbox_world
    other = 1 if MARKED_SEQ != 1 else 2
    special = b"FETCH %d (ENVELOPE BODYSTRUCTURE)" % other
    header = b"FETCH %d (BODY.PEEK[HEADER] BODY.PEEK[HEADER.FIELDS" \
        b" (X-Marker)])" % MARKED_SEQ
    before = session(world, password, [b"EXAMINE INBOX", special, header])
    assert HDR_MARKER in before[2]
    dbtool(world, password, "exec", body_of("chunk", other) + "; " +
           body_of("body_header", other))
    after = session(world, password, [b"EXAMINE INBOX", special])
    assert normal(after) == normal(before[:2])
    assert dbtool(world, password, "sql",
                  "SELECT count(*) FROM body_header") == \
        [[str(len(CORPUS) - 1)]]
    dbtool(world, password, "exec", body_of("chunk", MARKED_SEQ) +
           "; DELETE FROM body_cache")
    after = session(world, password, [b"EXAMINE INBOX", header])
    assert normal(after) == normal([before[0], before[2]])
    assert dbtool(world, password, "sql",
                  "SELECT count(*) FROM body_cache") == [["0"]]
    no_errors(world)


def test_page_cache_slots_populated(maildir_answers):
    """SQLite's page buffers of an imap process come from the slots the
    storage reserved before its first open (sqlbox-db.c,
    SQLBOX_PAGEMEM_SLOTS; cvfs-pagemem.c), populated 16 at a time as
    they are needed: the session's debug log says they were set, that
    its pages used them, and that only the chunks they needed were
    populated; the answers are maildir's."""
    world = World(mail_location="sqlbox:~/mail",
                  extra_conf=NAMESPACE_CONF + "mail_debug = yes\n")
    try:
        password = world.dc.generate_password(USER, label="cache")
        session(world, password, [append(m, i)
                                  for i, m in enumerate(CORPUS)])
        compare(maildir_answers, session(world, password, READS))
        log = world.dc.log_text()
        assert re.search(r"imap\(%s\).*sqlbox: SQLite page buffers from"
                         r" 512 slots populated as needed" % re.escape(USER),
                         log), log[-2000:]
        stats = [tuple(int(n) for n in m) for m in re.findall(
            r"imap\(%s\).*sqlbox: SQLite page buffers: (\d+) of 512 slots"
            r" in use at most, (\d+) populated" % re.escape(USER), log)]
        assert stats, log[-2000:]
        for used, populated in stats:
            assert used > 0, stats
            # the chunks the buffers needed, not all 512
            assert populated % 16 == 0 and used <= populated < used + 16, \
                stats
        no_errors(world)
    finally:
        world.close()
