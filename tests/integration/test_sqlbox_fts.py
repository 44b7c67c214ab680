"""Issue 18: full-text search in FTS5 tables of the encrypted sqlbox
database.  SEARCH answered through the index must give the UIDs that
Dovecot's unindexed search gives on the same corpus (the index only picks
candidates): `OR key key` is the unindexed reference, since only
top-level keys go to the index.  Checked after EXPUNGE, MOVE, RENAME and
DELETE, for German and Thai words, for mail delivered over LMTP, and
nothing of the indexed words is readable on disk.  Saved mail is indexed
after the APPEND's reply, and mail LMTP sealed into the spool after the
import's commit: once the session has saved nothing for
sqlbox_fts_index_delay, at its end, or by the catch-up of a SEARCH (after
the session was killed).
"""

import base64
import json
import os
import random
import re
import secrets
import signal
import socket

import pytest

from conftest import World
from harness import wait_for
from test_sqlbox_crash import Crasher
from test_sqlbox import (DBTOOL, USER, imap_login, lmtp_deliver, ok,
                         select_count, wait_unused)

import subprocess

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet "
         "kilo lima mike november oscar papa quebec romeo sierra tango "
         "uniform victor whiskey xray yankee zulu").split()
GERMAN = ["Straße", "Grüße", "Übermäßig", "Käsebrötchen", "Fußgänger"]
THAI = ["ภาษาไทย", "สวัสดี", "ขอบคุณ", "โรงเรียน", "ประเทศ"]


@pytest.fixture(scope="module")
def world():
    # the index is on by default
    w = World(mail_location="sqlbox:~/mail")
    yield w
    w.close()


@pytest.fixture(scope="module")
def alice(world):
    return world.dc.generate_password(USER, label="laptop")


def mime_text(subject, body, sender="Sender <sender@example.org>",
              cte="8bit"):
    if cte == "base64":
        payload = base64.encodebytes(body.encode()).replace(b"\n", b"\r\n")
    else:
        payload = body.encode().replace(b"\n", b"\r\n") + b"\r\n"
    return (b"From: " + sender.encode() + b"\r\n"
            b"To: Alice <alice@ubuntu.com>\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n"
            b"\r\n" + payload)


def corpus(seed, n):
    """n messages with words drawn by a fixed seed, some German and Thai
    text, some base64 bodies, some words only in headers."""
    rnd = random.Random(seed)
    msgs = []
    for i in range(n):
        words = [rnd.choice(WORDS) for _ in range(rnd.randint(5, 40))]
        if i % 3 == 0:
            words.append(rnd.choice(GERMAN))
        if i % 4 == 1:
            # Thai runs without spaces between words
            words.append("".join(rnd.sample(THAI, 2)))
        subject = "msg %d %s" % (i, rnd.choice(WORDS + GERMAN))
        sender = "%s <%s@example.org>" % (rnd.choice(WORDS).title(),
                                          rnd.choice(WORDS))
        cte = "base64" if i % 5 == 2 else "8bit"
        msgs.append(mime_text(subject, " ".join(words), sender, cte))
    return msgs


# (key, value): every key is searched indexed and unindexed
KEYS = ([("BODY", w) for w in ("bravo", "ovemb", "xray", "nothere",
                               "Hotel india")] +
        [("TEXT", w) for w in ("golf", "msg 1", "example")] +
        [("BODY", w) for w in GERMAN + ["STRASSE", "grüsse", "gänger"]] +
        [("BODY", w) for w in THAI + ["ไทย"]] +
        [("SUBJECT", w) for w in ("tango", "Straße", "msg 7")] +
        [("FROM", w) for w in ("kilo", "Lima", "example.org")])


def _lit(value):
    # LITERAL+: the value goes inline, no continuation round trip
    return "{%d+}\r\n%s" % (len(value.encode()), value)


def _search(imap, *args):
    imap._encoding = "utf-8"
    data = ok(imap.uid("SEARCH", "CHARSET", "UTF-8", *args))
    return sorted(int(x) for x in data[0].split())


def uid_search(imap, key, value):
    return _search(imap, key, _lit(value))


# A keyword no mail has: an OR with it as one alternative is one the
# index can't narrow down (any mail may carry the keyword), so every mail
# is read.  (An OR of the same key twice is no such reference: Dovecot's
# simplification merges it into the key alone.)
NEVER_SET = ("KEYWORD", "$dlp-never-set")


def uid_search_unindexed(imap, key, value):
    return _search(imap, "OR", key, _lit(value), *NEVER_SET)


def compare_all(imap, box, min_hits=0):
    select_count(imap, box)
    seen_hits = 0
    for key, value in KEYS:
        got = uid_search_unindexed(imap, key, value)
        want = uid_search(imap, key, value)
        assert got == want, (box, key, value, got, want)
        seen_hits += len(got) > 0
    # the corpus really exercises the keys
    assert seen_hits >= min_hits
    return seen_hits


def dbtool_sql(dc, password, sql, mode="sql"):
    """The words of sqlbox-dbtool's answer to sql on alice's database
    (mode "exec": read-write)."""
    home = dc.home("alice")
    res = subprocess.run(
        [DBTOOL, os.path.join(home, "sqlbox.keys"),
         os.path.join(home, "mail", "sqlbox.db"), mode, sql],
        input=password, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def append_all(imap, box, msgs):
    for m in msgs:
        ok(imap.append(box, None, None, m))


def fts_docs(dc, password):
    """Bodies with an fts_doc row (0 before the tables exist)."""
    if int(dbtool_sql(dc, password, "SELECT count(*) FROM sqlite_master"
                      " WHERE name = 'fts_doc'")[0]) == 0:
        return 0
    return int(dbtool_sql(dc, password, "SELECT count(*) FROM fts_doc")[0])


def imap_pid(world, password, imap):
    """The imap process serving this imaplib session."""
    return Crasher(world, password).server_pid(imap.sock, "imap")


def process_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def logout_and_wait(world, password, imap):
    """LOGOUT, then wait for its imap process to end: the saved mail not
    yet indexed is indexed after the reply, before the process ends."""
    pid = imap_pid(world, password, imap)
    imap.logout()
    wait_for(lambda: process_gone(pid), 120, "imap process %d to end" % pid)


def test_indexed_search_equals_unindexed(world, alice):
    dc = world.dc
    imap = imap_login(dc, alice)
    ok(imap.create("Corpus"))
    append_all(imap, "Corpus", corpus(1801, 120))
    compare_all(imap, "Corpus", min_hits=len(KEYS) - 3)
    # every body was indexed when it was appended
    bodies = int(dbtool_sql(dc, alice, "SELECT count(*) FROM body")[0])
    docs = int(dbtool_sql(dc, alice, "SELECT count(*) FROM fts_doc")[0])
    assert docs == bodies and bodies >= 120
    hits = dbtool_sql(dc, alice, "SELECT count(*) FROM fts_index"
                      " WHERE fts_index MATCH '\"bra\" AND \"rav\"'")
    assert int(hits[0]) > 0
    imap.logout()


# Searches that combine keys: ORs of indexed keys, nested, and
# parenthesized lists (SUB) inside and around them.  The reference form
# of each is "OR (search) KEYWORD never-set".
def _combined():
    a, b, c = _lit("kilo"), _lit("tango"), _lit("bravo")
    forms = [
        ("OR", "FROM", a, "SUBJECT", b),
        ("OR", "OR", "FROM", a, "SUBJECT", b, "BODY", c),
        ("OR", "(", "FROM", a, "BODY", c, ")", "SUBJECT", b),
        ("(", "OR", "FROM", a, "SUBJECT", b, ")", "BODY", c),
        ("OR", "HEADER", "Subject", _lit("msg 1"), "TEXT", _lit("golf")),
    ]
    return [(f, ("OR", "(") + f + (")",) + NEVER_SET) for f in forms]


def _ors(args):
    # the parenthesis tokens without spaces inside them
    return " ".join(args).replace("( ", "(").replace(" )", ")").split(" ")


def test_or_and_sub_answered_from_the_index(world, alice):
    """Issue 15/18: an OR whose alternatives are all indexed keys (or
    lists of them) is narrowed down by the index, as Dovecot's fts does;
    the answers equal the unindexed search's.  Then the index is emptied
    behind fts_doc's back: the indexed forms find nothing, the references
    still find mail, so the first really went through the index."""
    dc = world.dc
    imap = imap_login(dc, alice)
    ok(imap.create("Ors"))
    append_all(imap, "Ors", corpus(1811, 90))
    select_count(imap, "Ors")
    hits = 0
    for indexed, reference in _combined():
        want = _search(imap, *_ors(reference))
        got = _search(imap, *_ors(indexed))
        assert got == want, (indexed, got, want)
        hits += len(want) > 0
    assert hits == len(_combined())
    dbtool_sql(dc, alice, "INSERT INTO fts_index (fts_index)"
               " VALUES ('delete-all')", mode="exec")
    for indexed, reference in _combined():
        assert _search(imap, *_ors(indexed)) == []
        assert _search(imap, *_ors(reference)) != []
    # the next catch-up builds it again
    dbtool_sql(dc, alice, "DELETE FROM fts_doc", mode="exec")
    for indexed, reference in _combined():
        assert _search(imap, *_ors(indexed)) == \
            _search(imap, *_ors(reference))
    # the tests below count bodies and index rows of the other folders
    ok(imap.close())
    ok(imap.delete("Ors"))
    imap.logout()


def test_after_expunge_move_rename_delete(world, alice):
    dc = world.dc
    imap = imap_login(dc, alice)
    select_count(imap, "Corpus")
    bravo = uid_search(imap, "BODY", "bravo")
    assert len(bravo) > 4
    ok(imap.uid("STORE", ",".join(map(str, bravo[:3])), "+FLAGS",
                "(\\Deleted)"))
    ok(imap.expunge())
    compare_all(imap, "Corpus")
    assert uid_search(imap, "BODY", "bravo") == bravo[3:]
    ok(imap.create("Moved"))
    ok(imap.uid("MOVE", ",".join(map(str, bravo[3:6])), "Moved"))
    compare_all(imap, "Corpus")
    compare_all(imap, "Moved")
    assert len(uid_search(imap, "BODY", "bravo")) == 3
    ok(imap.uid("COPY", "1:*", "Moved"))
    compare_all(imap, "Moved")
    imap.close()
    ok(imap.rename("Moved", "Renamed"))
    compare_all(imap, "Renamed")
    n = select_count(imap, "Renamed")
    assert n > 0
    imap.close()
    ok(imap.delete("Renamed"))
    compare_all(imap, "Corpus")
    imap.logout()


def test_rebuilt_when_mostly_dead_and_indexed_on_demand(world, alice):
    """Expunged bodies leave dead rows in the contentless FTS index; once
    they outnumber the live ones the index is emptied, and each folder's
    mail is indexed again on demand at its next SEARCH."""
    dc = world.dc
    imap = imap_login(dc, alice)
    ok(imap.create("Old"))
    append_all(imap, "Old", corpus(1802, 320))
    select_count(imap, "Old")
    # indexed (if the session was not idle long enough yet: by the catch-up)
    assert uid_search(imap, "BODY", "alpha") == \
        uid_search_unindexed(imap, "BODY", "alpha")
    ok(imap.uid("STORE", "21:*", "+FLAGS", "(\\Deleted)"))
    ok(imap.expunge())
    assert uid_search(imap, "BODY", "alpha") == \
        uid_search_unindexed(imap, "BODY", "alpha")
    # only Old's 20 bodies are in the rebuilt index so far
    docs = int(dbtool_sql(dc, alice, "SELECT count(*) FROM fts_doc")[0])
    assert docs == 20
    compare_all(imap, "Old")
    compare_all(imap, "Corpus", min_hits=len(KEYS) - 5)
    bodies = int(dbtool_sql(dc, alice, "SELECT count(*) FROM body")[0])
    docs = int(dbtool_sql(dc, alice, "SELECT count(*) FROM fts_doc")[0])
    assert docs == bodies
    imap.logout()


def fts_counts(dc, password):
    """(fts_doc's count kept by triggers, its rows; the rows FTS5's
    averages record counts, the rows of fts_index_docsize)."""
    kept, docs, block, docsize = dbtool_sql(
        dc, password, "SELECT ifnull((SELECT value FROM state"
        " WHERE key = 'fts_docs'), 'none'), (SELECT count(*) FROM fts_doc),"
        " ifnull((SELECT hex(block) FROM fts_index_data WHERE id = 1), ''),"
        " (SELECT count(*) FROM fts_index_docsize)")[0].split("|")
    rows = 0
    for b in bytes.fromhex(block)[:8]:     # SQLite's varint
        rows = (rows << 7) | (b & 0x7f)
        if not b & 0x80:
            break
    return (kept if kept == "none" else int(kept), int(docs)), \
        (rows, int(docsize))


def save_then_counts(w, password, msgs, counts, what):
    """A session that saves msgs to INBOX; then fts_counts() must be
    counts, and fts-usage must say counts' rows of fts_doc."""
    imap = imap_login(w.dc, password)
    append_all(imap, "INBOX", msgs)
    logout_and_wait(w, password, imap)
    assert fts_counts(w.dc, password) == counts
    wait_for(lambda: status_of(w.dc)["fts_messages"] == counts[0][1], 60,
             "fts-usage after " + what)


def test_index_counts_read_not_counted():
    """fts-usage and the compaction read fts_doc's rows from a count its
    triggers keep and FTS5's rows from its averages record, not by
    counting either table: both equal the tables' counts through saves,
    expunges and a rebuild; a database of before the triggers gets them
    and its count at its next indexing, and a count deleted by hand is
    read from the table again."""
    w = World(mail_location="sqlbox:~/mail")
    try:
        dc = w.dc
        password = dc.generate_password(USER)
        mailbox = os.path.join(dc.home("alice"), "mail", "sqlbox.db")
        save_then_counts(w, password, corpus(1807, 150),
                         ((150, 150), (150, 150)), "the saves")

        # 130 expunged: dead rows in FTS5, then more dead than live
        imap = imap_login(dc, password)
        select_count(imap)
        ok(imap.uid("STORE", "1:130", "+FLAGS", "(\\Deleted)"))
        ok(imap.expunge())
        logout_and_wait(w, password, imap)
        assert fts_counts(dc, password) == ((20, 20), (150, 150))
        wait_for(lambda: status_of(dc)["fts_messages"] == 20, 60,
                 "fts-usage after the expunge")
        # the next SEARCH's catch-up rebuilds the index
        imap = imap_login(dc, password)
        select_count(imap)
        assert uid_search(imap, "BODY", "alpha") == \
            uid_search_unindexed(imap, "BODY", "alpha")
        logout_and_wait(w, password, imap)
        assert fts_counts(dc, password) == ((20, 20), (20, 20))

        # as a sqlbox before the triggers left it
        wait_unused(mailbox)
        dbtool_sql(dc, password, "DROP TRIGGER fts_doc_count_insert;"
                   " DROP TRIGGER fts_doc_count_delete;"
                   " DELETE FROM state WHERE key = 'fts_docs';", mode="exec")
        save_then_counts(w, password, corpus(1808, 5),
                         ((25, 25), (25, 25)), "the upgrade")

        # the count deleted by hand: fts-usage counts the table
        wait_unused(mailbox)
        dbtool_sql(dc, password, "DELETE FROM state WHERE key = 'fts_docs'",
                   mode="exec")
        save_then_counts(w, password, corpus(1809, 2),
                         (("none", 27), (27, 27)), "the count's delete")
        assert " Error: " not in dc.log_text()
    finally:
        w.close()


def test_spool_import_indexed_and_nothing_readable(world, alice):
    dc = world.dc
    tok = secrets.token_hex(4).upper()
    markers = {"SPOOL": "Spoolmark%sq" % tok, "APPEND": "Appendmark%sq" % tok,
               "THAI": "ภาษาไทย%s" % tok}
    assert lmtp_deliver(dc, USER, mime_text(
        "lmtp " + markers["SPOOL"], "body " + markers["THAI"] +
        " " + markers["SPOOL"]))[0] == 250
    imap = imap_login(dc, alice)
    select_count(imap)
    # the spool import hands its body over to the deferred indexing
    # (test_spool_import_deferred_*): indexed by now or by the SEARCHes
    bodies = int(dbtool_sql(dc, alice, "SELECT count(*) FROM body")[0])
    ok(imap.append("INBOX", None, None, mime_text(
        "append", "text " + markers["APPEND"])))
    for mk in markers.values():
        assert len(uid_search(imap, "BODY", mk)) == 1, mk
        assert (uid_search(imap, "BODY", mk) ==
                uid_search_unindexed(imap, "BODY", mk))
    logout_and_wait(world, alice, imap)
    # the APPEND's body too (while idle, or by the SEARCH's catch-up)
    assert fts_docs(dc, alice) == bodies + 1
    home = dc.home("alice")
    forms = set()
    for mk in markers.values():
        forms |= {mk, mk.upper(), mk.lower()}
    for top in (home, os.path.join(world.wd.path, "state"), dc.run_dir):
        for root, dirs, files in os.walk(top):
            for name in files:
                path = os.path.join(root, name)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                with open(path, "rb") as f:
                    data = f.read()
                for form in forms:
                    assert form.encode() not in data, (form, path)


def test_long_message_indexed_in_slices(world, alice):
    """A message with more distinct trigrams than one slice holds (32768,
    SQLBOX_FTS_SLICE_TRIGRAMS_MAX; random words of 36 letters and digits
    have nearly all of the 46656) and a run of 5000 letters: keys across
    slice borders and inside a long run are found through the index as
    without it."""
    dc = world.dc
    rnd = random.Random(1803)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    words = ["".join(rnd.choice(letters) for _ in range(rnd.randint(6, 10)))
             for _ in range(40000)]
    assert len(set(words)) > 32768
    run = "".join(rnd.choice(letters) for _ in range(5000))
    body = " ".join(words[:20000]) + " " + run + " " + " ".join(words[20000:])
    imap = imap_login(dc, alice)
    ok(imap.create("Long"))
    append_all(imap, "Long", [mime_text("long", body)] + corpus(1804, 5))
    select_count(imap, "Long")
    keys = [" ".join(words[i:i + 2]) for i in (0, 5000, 19998, 20000,
                                                  32767, 32768, 39998)]
    keys += [run[i - 7:i + 7] for i in (1024, 1023, 2045, 3000, 4999)]
    keys += [words[19999] + " " + run[:6], run[-6:] + " " + words[20000]]
    for key in keys:
        want = uid_search_unindexed(imap, "BODY", key)
        assert 1 in want, key
        assert uid_search(imap, "BODY", key) == want, key
    imap.logout()


def _mail(subject, header, body):
    return (b"From: Sender <sender@example.org>\r\n"
            b"To: Alice <alice@ubuntu.com>\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
            b"MIME-Version: 1.0\r\n" + header + b"\r\n" + body)


def decoding_corpus():
    """Bodies where what message_decoder gives differs from the raw
    bytes, or differs only in subtle ways: a part ending in an incomplete
    UTF-8 character (the decoder carries it into the next part), invalid
    UTF-8 in an 8bit part, ISO-2022-JP (7-bit bytes that are no text as
    they are), Latin-1, two Content-Transfer-Encoding lines (the last
    counts), two Content-Type lines (the first counts), quoted-printable,
    an attached message, a line of 20000 bytes and valid UTF-8 text."""
    jp = "日本語のテキストです".encode("iso2022_jp")
    mixed = b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    return [
        _mail(b"carry", mixed,
              b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n\r\n"
              b"first part w\xc3\xb6rd\xc3\r\n"
              b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n"
              b"\r\nzebracorn quokka\r\n--b1--\r\n"),
        _mail(b"invalid", b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n",
              b"abc\xffdefghi gr\xfc\xdfe xyl\xe2\x82ophone\r\n"),
        _mail(b"jis", b"Content-Type: text/plain; charset=iso-2022-jp\r\n"
              b"Content-Transfer-Encoding: 7bit\r\n", jp + b"\r\n"),
        _mail(b"latin1", b"Content-Type: text/plain; charset=iso-8859-1\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n",
              "Grüße aus Köln".encode("latin-1") + b"\r\n"),
        _mail(b"two cte", b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n"
              b"Content-Transfer-Encoding: quoted-printable\r\n",
              b"caf=C3=A9bar xylo=\r\nphonewaltz\r\n"),
        _mail(b"two ct", b"Content-Type: text/plain; charset=iso-2022-jp\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: 7bit\r\n", jp + b"\r\n"),
        _mail(b"qp", b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: quoted-printable\r\n",
              b"Stra=C3=9Fenbahn mar=\r\nmalade\r\n"),
        _mail(b"attached", mixed,
              b"--b1\r\nContent-Type: text/plain\r\n\r\nouter text\r\n"
              b"--b1\r\nContent-Type: message/rfc822\r\n\r\n"
              b"Subject: inner subject\r\nContent-Type: text/plain;"
              b" charset=\"UTF-8\"\r\nContent-Transfer-Encoding: 8bit"
              b"\r\n\r\ninnerw\xc3\xb6rter gef\xc3\xbcllt\r\n--b1--\r\n"),
        _mail(b"long line", b"Content-Type: text/plain\r\n",
              b"x" * 20000 + b" lastlongword\r\n"),
        _mail(b"utf8", b"Content-Type: text/plain; charset=UTF-8\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n",
              "Fußgänger ภาษาไทย Übermäßig".encode() + b"\r\n"),
    ]


DECODING_KEYS = ["\ufffdzebra", "zebracorn", "wörd", "\ufffddefg", "abc",
                 "\ufffd\ufffde", "xyl\ufffdop", "日本語", "テキスト",
                 "Grüße", "Köln", "cafébar", "xylophonewaltz", "=C3=A9",
                 "Straßenbahn", "marmalade", "innerwörter", "gefüllt",
                 "inner subject", "lastlongword", "xxxxx", "Fußgänger",
                 "ภาษาไทย", "Übermäßig", "$B"]


def test_decoded_text_as_unindexed(world, alice):
    """Bodies whose text is what Dovecot's decoder makes of them (not the
    raw bytes, in the cases of decoding_corpus()) are found through the
    index as without it: the indexer feeds a body block as it is only
    when the decoder would give it unchanged."""
    imap = imap_login(world.dc, alice)
    ok(imap.create("Decoding"))
    append_all(imap, "Decoding", decoding_corpus())
    select_count(imap, "Decoding")
    hits = 0
    for value in DECODING_KEYS:
        want = uid_search_unindexed(imap, "BODY", value)
        assert uid_search(imap, "BODY", value) == want, (value, want)
        hits += len(want) > 0
    # "\ufffd\ufffde", "=C3=A9", "inner subject" (BODY) and "$B" (no
    # trigram) find nothing
    assert hits >= len(DECODING_KEYS) - 4, hits
    ok(imap.close())
    ok(imap.delete("Decoding"))
    imap.logout()


def status_of(dc, user=USER):
    res = dc.doveadm("-f", "json", "launchpad", "status", user)
    return json.loads(res.stdout)[0]


def index_facts(dc, password):
    """What the index holds, read with the key: bodies indexed, and the
    FTS5 leaf rows (segment id > 0, no dlidx bit, height 0) and their
    bytes."""
    docs = int(dbtool_sql(dc, password, "SELECT count(*) FROM fts_doc")[0])
    rows = int(dbtool_sql(
        dc, password, "SELECT count(*) FROM fts_index_data"
        " WHERE (id >> 37) > 0 AND ((id >> 31) & 63) = 0")[0])
    size = int(dbtool_sql(
        dc, password, "SELECT sum(length(block)) FROM fts_index_data"
        " WHERE (id >> 37) > 0 AND ((id >> 31) & 63) = 0")[0])
    return docs, rows, size


def test_index_size_without_key(world, alice):
    """`doveadm launchpad status USER` tells the index's size without the
    user's key (no quota is set here): from fts-usage, which a session
    that wrote the mailbox leaves when it ends."""
    dc = world.dc
    usage = os.path.join(dc.home("alice"), "mail", "fts-usage")
    imap = imap_login(dc, alice)
    ok(imap.create("Sized"))
    append_all(imap, "Sized", corpus(1805, 60))
    logout_and_wait(world, alice, imap)
    docs, rows, size = index_facts(dc, alice)
    # the session's end writes it; the number is the event waited for
    wait_for(lambda: status_of(dc)["fts_messages"] == docs, 60,
             "fts-usage after the session")
    st = status_of(dc)
    assert st["user"] == USER and st["home"] == dc.home("alice")
    assert st["fts_updated"] != "never"
    assert st["fts_index_bytes"] == rows * 4050 >= size > 0
    mailbox = os.path.join(dc.home("alice"), "mail", "sqlbox.db")
    assert st["mailbox_bytes"] >= os.path.getsize(mailbox)
    # numbers only, owner-only
    with open(usage) as f:
        assert f.read() == "%d %d\n" % (docs, rows * 4050)
    assert os.stat(usage).st_mode & 0o777 == 0o600

    # a session that changes neither number (a flag) leaves the file
    # alone: no new file and rename at every session's end
    written = os.stat(usage)
    imap = imap_login(dc, alice)
    select_count(imap, "Sized")
    ok(imap.store("1", "+FLAGS", "(\\Flagged)"))
    imap.logout()
    wait_unused(mailbox)
    assert os.stat(usage).st_ino == written.st_ino
    with open(usage) as f:
        assert f.read() == "%d %d\n" % (docs, rows * 4050)

    # a session that changes no row (SELECT, FETCH, LOGOUT: its syncs
    # commit empty write transactions) does not even look: given wrong
    # numbers, it leaves them (the next session that writes corrects
    # them, below)
    with open(usage, "w") as f:
        f.write("1 1\n")
    imap = imap_login(dc, alice)
    assert select_count(imap, "Sized") == 60
    typ, _ = imap.fetch("1:*", "(FLAGS)")
    assert typ == "OK"
    imap.logout()
    wait_unused(mailbox)
    with open(usage) as f:
        assert f.read() == "1 1\n"

    # more mail: more messages (the index may even shrink: FTS5 merges
    # segments, and detail=none segments are mostly their terms)
    imap = imap_login(dc, alice)
    append_all(imap, "Sized", corpus(1806, 60))
    logout_and_wait(world, alice, imap)
    docs2, rows2, _ = index_facts(dc, alice)
    assert docs2 == docs + 60
    wait_for(lambda: status_of(dc)["fts_messages"] == docs2, 60,
             "fts-usage after more mail")
    assert status_of(dc)["fts_index_bytes"] == rows2 * 4050 > 0

    # expunged: fewer messages (their trigrams stay until a rebuild)
    imap = imap_login(dc, alice)
    select_count(imap, "Sized")
    ok(imap.store("1:30", "+FLAGS", "(\\Deleted)"))
    ok(imap.expunge())
    logout_and_wait(world, alice, imap)
    docs3, rows3, _ = index_facts(dc, alice)
    assert docs3 == docs2 - 30
    wait_for(lambda: status_of(dc)["fts_messages"] == docs3, 60,
             "fts-usage after the expunge")
    assert status_of(dc)["fts_index_bytes"] == rows3 * 4050


def test_index_size_unknown_and_new_users(world):
    dc = world.dc
    # a Launchpad user who never logged in: nothing yet, no error
    st = status_of(dc, "bob@ubuntu.com")
    assert st["mailbox_bytes"] == 0 and st["fts_messages"] == 0
    assert st["fts_updated"] == "never"
    # names that are no Launchpad name of a configured domain
    for bad in ("../../etc@ubuntu.com", "alice@example.org", "al/ice"):
        res = dc.doveadm("launchpad", "status", bad, check=False)
        assert res.returncode == 67, (bad, res.returncode, res.stderr)
        assert "not a Launchpad name of a configured domain" in \
            res.stderr, res.stderr


def fts5_segments(dc, password):
    """The number of segments in the FTS5 index's structure record
    (fts_index_data id 10: a 4-byte cookie, then the varints nLevel,
    nSegment, ...)."""
    blob = bytes.fromhex(dbtool_sql(
        dc, password, "SELECT hex(block) FROM fts_index_data WHERE id = 10")[0])
    pos, values = 4, []
    while len(values) < 2:
        value = 0
        while True:
            byte = blob[pos]
            pos += 1
            value = (value << 7) | (byte & 0x7f)
            if byte < 0x80:
                break
        values.append(value)
    return values[1]


def test_multiappend_indexed_in_one_segment():
    """Indexed in the save's transaction (sqlbox_fts_index_delay = 0), a
    MULTIAPPEND is one transaction and its messages one FTS5 segment.
    The mail row's INSERT has a trigger, so SQLite opens a statement
    journal for it and calls FTS5's xSavepoint, which flushes the pending
    terms as a segment: indexed between the rows, each message was a
    segment of its own (and merges followed)."""
    w = World(mail_location="sqlbox:~/mail",
              extra_conf="plugin {\n  sqlbox_fts_index_delay = 0\n}\n")
    try:
        password = w.dc.generate_password(USER)
        msgs = corpus(18, 24)
        s, _ = multiappend(w.dc, password, msgs)
        s.sendall(b"c LOGOUT\r\n")
        s.close()
        assert int(dbtool_sql(w.dc, password,
                              "SELECT count(*) FROM fts_doc")[0]) == len(msgs)
        assert fts5_segments(w.dc, password) == 1
        # and the index answers as the unindexed search does
        imap = imap_login(w.dc, password)
        compare_all(imap, "INBOX", min_hits=1)
        imap.logout()
    finally:
        w.close()


def test_spool_import_indexed_in_one_segment():
    """Indexed in the import's transaction (sqlbox_fts_index_delay = 0),
    the LMTP spool's import is one transaction and its messages one
    FTS5 segment, as a MULTIAPPEND's are: indexed between the mail rows
    (whose INSERT opens a statement journal, so FTS5's xSavepoint flushes
    its pending terms), every imported message was a segment of its own."""
    w = World(mail_location="sqlbox:~/mail",
              extra_conf="plugin {\n  sqlbox_fts_index_delay = 0\n}\n")
    try:
        password = w.dc.generate_password(USER)
        msgs = corpus(1806, 18)
        planted = "Plantedword%sq" % secrets.token_hex(4).upper()
        want = []
        for i, m in enumerate(msgs):
            if i % 4 == 1:
                m = mime_text("planted %d" % i, "text %s end" % planted)
                msgs[i] = m
                want.append(i + 1)
        # nobody logged in: every message is sealed into the spool
        for m in msgs:
            assert lmtp_deliver(w.dc, USER, m)[0] == 250
        spool = os.path.join(w.dc.home("alice"), "mail", "spool")
        assert os.path.getsize(spool) > 0
        assert not os.path.exists(os.path.join(w.dc.home("alice"), "mail",
                                               "sqlbox.db"))
        # the login imports the spool, in the records' order
        imap = imap_login(w.dc, password)
        assert select_count(imap) == len(msgs)
        imap.logout()
        assert os.path.getsize(spool) == 0
        # indexed by the import (no SEARCH has run to catch up), as one
        # segment
        assert int(dbtool_sql(w.dc, password,
                              "SELECT count(*) FROM fts_doc")[0]) == len(msgs)
        assert fts5_segments(w.dc, password) == 1
        # and the index answers as the unindexed search does
        imap = imap_login(w.dc, password)
        select_count(imap)
        assert uid_search(imap, "BODY", planted) == want
        assert uid_search_unindexed(imap, "BODY", planted) == want
        compare_all(imap, "INBOX", min_hits=1)
        imap.logout()
    finally:
        w.close()


def multiappend(dc, password, msgs, box="INBOX"):
    """A logged-in raw session that saved msgs in one MULTIAPPEND: the
    socket and its reader."""
    s = socket.create_connection(("127.0.0.1", dc.imap_port), timeout=60)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b'a LOGIN %s "%s"\r\n' % (USER.encode(), password.encode()))
    assert f.readline().startswith(b"a OK")
    raw_command(s, f, b"b", b"APPEND " + box.encode() + b"".join(
        b" {%d+}\r\n" % len(m) + m for m in msgs))
    return s, f


def raw_command(s, f, tag, command):
    """Sends command and reads up to its tagged reply, which must be OK."""
    s.sendall(b"%s %s\r\n" % (tag, command))
    line = f.readline()
    while line and not line.startswith(tag + b" "):
        line = f.readline()
    assert line.startswith(tag + b" OK"), line


DELAY_CONF = "mail_debug = yes\nplugin {\n  sqlbox_fts_index_delay = %s\n}\n"


def test_deferred_index_lost_by_kill_is_caught_up():
    """A session killed before its idle time leaves its saved mail
    without fts_doc rows (the pending list is memory only); the next
    SEARCH of the folder indexes it and finds it."""
    w = World(mail_location="sqlbox:~/mail", extra_conf=DELAY_CONF % "1h")
    try:
        password = w.dc.generate_password(USER)
        marker = "Killmark%sq" % secrets.token_hex(4).upper()
        imap = imap_login(w.dc, password)
        ok(imap.append("INBOX", None, None, mime_text(
            "killed", "text " + marker)))
        append_all(imap, "INBOX", corpus(1807, 4))
        # not indexed in the APPEND's transaction
        assert fts_docs(w.dc, password) == 0
        pid = imap_pid(w, password, imap)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: process_gone(pid), 60, "the killed imap process")
        assert fts_docs(w.dc, password) == 0
        imap = imap_login(w.dc, password)
        select_count(imap)
        assert uid_search(imap, "BODY", marker) == [1]
        assert fts_docs(w.dc, password) == 5
        compare_all(imap, "INBOX", min_hits=1)
        imap.logout()
    finally:
        w.close()


def test_indexed_while_idle():
    """Once the session has saved nothing for the delay, it indexes what
    it saved, a batch per transaction, with no SEARCH and still logged
    in; a COPY adds nothing (the copy shares the indexed body)."""
    w = World(mail_location="sqlbox:~/mail", extra_conf=DELAY_CONF % "200ms")
    try:
        password = w.dc.generate_password(USER)
        msgs = corpus(1808, 260)
        s, f = multiappend(w.dc, password, msgs)
        # 256 bodies a transaction, then the rest
        wait_for(lambda: "sqlbox fts: indexed 4 saved bodies while idle"
                 " (0 pending)" in w.dc.log_text(), 120,
                 "the idle indexing's last batch")
        assert ("sqlbox fts: indexed 256 saved bodies while idle"
                " (4 pending)" in w.dc.log_text())
        assert fts_docs(w.dc, password) == len(msgs)
        # the session is still there, and has sent no SEARCH
        raw_command(s, f, b"c", b"NOOP")
        raw_command(s, f, b"d", b"SELECT INBOX")
        raw_command(s, f, b"e", b"CREATE Copies")
        raw_command(s, f, b"g", b"UID COPY 1:* Copies")
        raw_command(s, f, b"h", b"LOGOUT")
        s.close()
        assert fts_docs(w.dc, password) == len(msgs)
        assert " Error: " not in w.dc.log_text()
        imap = imap_login(w.dc, password)
        compare_all(imap, "INBOX", min_hits=1)
        compare_all(imap, "Copies", min_hits=1)
        imap.logout()
    finally:
        w.close()


def test_logout_indexes_pending():
    """What is pending at LOGOUT is indexed after its reply, before the
    process ends, without any SEARCH; a body expunged before its turn is
    skipped without an error."""
    w = World(mail_location="sqlbox:~/mail", extra_conf=DELAY_CONF % "1h")
    try:
        password = w.dc.generate_password(USER)
        imap = imap_login(w.dc, password)
        append_all(imap, "INBOX", corpus(1809, 6))
        select_count(imap)
        ok(imap.uid("STORE", "2,5", "+FLAGS", "(\\Deleted)"))
        ok(imap.expunge())
        assert fts_docs(w.dc, password) == 0
        logout_and_wait(w, password, imap)
        assert fts_docs(w.dc, password) == 4
        log = w.dc.log_text()
        assert ("sqlbox fts: indexed 4 saved bodies at the session's end"
                " (0 pending)" in log)
        assert " Error: " not in log
        imap = imap_login(w.dc, password)
        compare_all(imap, "INBOX", min_hits=1)
        imap.logout()
    finally:
        w.close()


def deliver_to_spool(w, msgs):
    """LMTP deliveries while nobody is logged in: sealed into the spool."""
    for m in msgs:
        assert lmtp_deliver(w.dc, USER, m)[0] == 250
    spool = os.path.join(w.dc.home("alice"), "mail", "spool")
    assert os.path.getsize(spool) > 0
    return spool


def test_spool_import_deferred_until_search():
    """The spool's import does not index in its transaction: after the
    session's open imported the mail (the spool is empty, the rows are
    there), the imported bodies have no fts_doc row while the session is
    open and has sent no SEARCH; the SEARCH's catch-up indexes and finds
    them."""
    w = World(mail_location="sqlbox:~/mail", extra_conf=DELAY_CONF % "1h")
    try:
        password = w.dc.generate_password(USER)
        marker = "Spooldefer%sq" % secrets.token_hex(4).upper()
        msgs = corpus(1810, 6)
        msgs[3] = mime_text("deferred", "text %s end" % marker)
        spool = deliver_to_spool(w, msgs)
        imap = imap_login(w.dc, password)
        assert select_count(imap) == len(msgs)
        assert os.path.getsize(spool) == 0
        assert int(dbtool_sql(w.dc, password,
                              "SELECT count(*) FROM body")[0]) == len(msgs)
        assert fts_docs(w.dc, password) == 0
        ok(imap.noop())
        assert fts_docs(w.dc, password) == 0
        assert uid_search(imap, "BODY", marker) == [4]
        assert fts_docs(w.dc, password) == len(msgs)
        compare_all(imap, "INBOX", min_hits=1)
        imap.logout()
        assert " Error: " not in w.dc.log_text()
    finally:
        w.close()


def test_spool_import_indexed_while_idle():
    """After the import's commit its bodies are indexed once the session
    is idle for the delay, in a transaction of their own, with no SEARCH
    and the session still open."""
    w = World(mail_location="sqlbox:~/mail", extra_conf=DELAY_CONF % "200ms")
    try:
        password = w.dc.generate_password(USER)
        msgs = corpus(1811, 7)
        spool = deliver_to_spool(w, msgs)
        s = socket.create_connection(("127.0.0.1", w.dc.imap_port),
                                     timeout=60)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b'a LOGIN %s "%s"\r\n' % (USER.encode(),
                                            password.encode()))
        assert f.readline().startswith(b"a OK")
        raw_command(s, f, b"b", b"SELECT INBOX")
        assert os.path.getsize(spool) == 0
        wait_for(lambda: "sqlbox fts: indexed %d saved bodies while idle"
                 " (0 pending)" % len(msgs) in w.dc.log_text(), 60,
                 "the idle indexing of the imported mail")
        assert fts_docs(w.dc, password) == len(msgs)
        # the session is still there, and has sent no SEARCH
        raw_command(s, f, b"c", b"NOOP")
        raw_command(s, f, b"d", b"LOGOUT")
        s.close()
        assert " Error: " not in w.dc.log_text()
        imap = imap_login(w.dc, password)
        compare_all(imap, "INBOX", min_hits=1)
        imap.logout()
    finally:
        w.close()


# Issue 15: the values of some header fields are indexed a second time as
# scoped tokens, and header keys of those fields look only at them.

def header_mail(headers, body="nothing to see", parts=None):
    """A mail of the given header lines (name, value: folded as given)
    and a text body, or a multipart/mixed of parts (raw bytes each)."""
    out = b""
    for name, value in headers:
        out += name.encode() + b": " + value.encode() + b"\r\n"
    if parts is None:
        out += (b"Content-Type: text/plain; charset=utf-8\r\n\r\n" +
                body.encode() + b"\r\n")
    else:
        out += b"MIME-Version: 1.0\r\n"
        out += b"Content-Type: multipart/mixed; boundary=bnd\r\n\r\n"
        for part in parts:
            out += b"--bnd\r\n" + part + b"\r\n"
        out += b"--bnd--\r\n"
    return out


def field_corpus():
    """The word "quokka" in one place of each mail: the body, each of the
    indexed fields, an encoded-word, folded lines, a display name, an
    address, a field outside the set, an attached message's header; and
    a From without a domain (Dovecot's FROM looks at MISSING_DOMAIN)."""
    base = [("From", "Sybil <sybil@example.org>"),
            ("To", "Alice <alice@ubuntu.com>"),
            ("Subject", "weekly notes"),
            ("Date", "Mon, 02 Mar 2026 10:00:00 +0000"),
            ("Message-ID", "<n1@example.org>")]

    def mail(replace=(), add=(), **kw):
        hdrs = [(n, v) for n, v in base if n not in dict(replace)]
        return header_mail(hdrs + list(replace) + list(add), **kw)

    inner = (b"Content-Type: message/rfc822\r\n\r\n" +
             header_mail([("From", "Inner <in@example.org>"),
                          ("Subject", "forwarded quokka news")],
                         "inner body"))
    return [
        mail(body="a quokka in the body only"),
        mail(replace=[("Subject", "about the quokka colony")]),
        mail(replace=[("From", '"Quokka Smith" <smith@example.org>')]),
        mail(replace=[("From", "Sybil <quokka@example.org>")]),
        mail(replace=[("To", "=?utf-8?q?Qu=C3=B6kka_Ann?= <ann@ubuntu.com>")]),
        mail(replace=[("Subject", "=?utf-8?q?quo?=\r\n =?utf-8?q?kka?= fold")]),
        mail(replace=[("Subject", "notes on\r\n\tquokka habits")]),
        mail(add=[("Cc", "Bob <bob@ubuntu.com>,\r\n quokka@lists.example.org")]),
        mail(add=[("Bcc", "Quokka Fan <fan@example.org>")]),
        mail(add=[("List-Id", "Quokka team <quokka.lists.example.org>")]),
        mail(replace=[("Message-ID", "<quokka.42@example.org>")]),
        mail(add=[("In-Reply-To", "<quokka.41@example.org>"),
                  ("Reply-To", "Quokka Desk <desk@example.org>"),
                  ("Sender", "Quokka Bot <bot@example.org>")]),
        mail(add=[("X-Other", "quokka")]),
        mail(replace=[("From", "quokka")]),
        mail(parts=[b"Content-Type: text/plain\r\n\r\nsee attached",
                    inner]),
        mail(replace=[("Subject", "Kirche und church")],
             body="the church bells"),
    ]


FIELD_KEYS = (
    [(k, v) for k in ("FROM", "TO", "CC", "BCC", "SUBJECT")
     for v in ("quokka", "Quökka", "quokka smith", "example.org",
               "missing_domain", "lists.example")] +
    [("HEADER", name + " " + v)
     for name in ("List-Id", "Message-ID", "In-Reply-To", "Reply-To",
                  "Sender", "X-Other", "From", "subject", "Content-Type")
     for v in ("quokka", "quokka.42", "example.org", "plain")])


def field_search(imap, key, value, indexed=True):
    args = (key,) if key != "HEADER" else ("HEADER", value.split(" ", 1)[0])
    value = value if key != "HEADER" else value.split(" ", 1)[1]
    if indexed:
        return _search(imap, *args, _lit(value))
    return _search(imap, "OR", *args, _lit(value), *NEVER_SET)


def compare_fields(imap, box):
    select_count(imap, box)
    hits = 0
    for key, value in FIELD_KEYS:
        want = field_search(imap, key, value, indexed=False)
        got = field_search(imap, key, value)
        assert got == want, (key, value, got, want)
        hits += len(want) > 0
    return hits


def test_header_fields_answer_as_unindexed(world, alice):
    """FROM, TO, CC, BCC, SUBJECT and HEADER of the indexed fields answer
    from their scoped tokens as the unindexed search does, wherever the
    word is (body only, another field, encoded, folded, display name,
    address, an attached message's header); a field outside the set
    (X-Other) answers from the unscoped ones.  FROM missing_domain finds
    the mail whose From has no domain: Dovecot matches the address
    written again, which the unscoped tokens don't have."""
    imap = imap_login(world.dc, alice)
    ok(imap.create("Fields"))
    append_all(imap, "Fields", field_corpus())
    assert compare_fields(imap, "Fields") >= 25
    assert field_search(imap, "FROM", "missing_domain") == [14]
    assert field_search(imap, "SUBJECT", "quokka") == [2, 6, 7]
    assert field_search(imap, "HEADER", "X-Other quokka") == [13]
    ok(imap.close())
    ok(imap.delete("Fields"))
    imap.logout()


def church_corpus():
    """Every body has "church", one Subject (the 7th mail's) has it."""
    msgs = [mime_text("notes %d" % i, "the church bells ring %d" % i)
            for i in range(20)]
    msgs[6] = mime_text("church council", "the church bells ring 6")
    return msgs


def candidates_logged(w, box):
    """The candidate counts the index gave for searches of box so far
    (sqlbox_fts_search_init()'s debug line)."""
    return [int(n) for n in re.findall(
        r"Mailbox %s: sqlbox fts: (\d+) candidate mails" % box,
        w.dc.log_text())]


def search_candidates(w, imap, box, *args):
    """The UIDs a search answers and the candidates the index gave it."""
    before = len(candidates_logged(w, box))
    uids = _search(imap, *args)
    wait_for(lambda: len(candidates_logged(w, box)) > before, 60,
             "the search's candidate count")
    return uids, candidates_logged(w, box)[before]


def body_of(w, password, box, uid):
    return int(dbtool_sql(
        w.dc, password, "SELECT m.body_id FROM mail m JOIN mailbox b"
        " ON b.id = m.mailbox_id WHERE b.name = '%s' AND m.uid = %d"
        % (box, uid))[0])


def test_header_key_candidates_narrowed():
    """SUBJECT church on a folder where every body has "church" and one
    Subject has it: the index gives that one mail as the only candidate
    (the unscoped trigrams gave all of them); an OR of FROM, SUBJECT and
    HEADER List-Id (bench/storage-bench.py SEARCH_HEADERS) the union of
    its fields' candidates only."""
    w = World(mail_location="sqlbox:~/mail", extra_conf="mail_debug = yes\n")
    try:
        password = w.dc.generate_password(USER)
        imap = imap_login(w.dc, password)
        ok(imap.create("Narrow"))
        msgs = church_corpus()
        msgs[11] = header_mail([("From", "Sybil <sybil@example.org>"),
                                ("Subject", "notes 11")],
                               "the church bells ring 11")
        msgs[15] = header_mail([("From", "Bob <bob@example.org>"),
                                ("List-Id", "<kernel-team.lists.example>"),
                                ("Subject", "notes 15")],
                               "the church bells ring 15")
        append_all(imap, "Narrow", msgs)
        select_count(imap, "Narrow")
        assert search_candidates(w, imap, "Narrow", "BODY", "church") == \
            (list(range(1, 21)), 20)
        assert search_candidates(w, imap, "Narrow", "SUBJECT", "church") == \
            ([7], 1)
        assert search_candidates(
            w, imap, "Narrow", "OR", "OR", "FROM", "sybil", "SUBJECT",
            "church", "HEADER", "List-Id", "kernel-team") == ([7, 12, 16], 3)
        assert field_search(imap, "SUBJECT", "church", indexed=False) == [7]
        imap.logout()
    finally:
        w.close()


def rows_batches_logged(w, box):
    """The row counts of the candidates' batches read so far for box
    (sqlbox_mail_window_read_sparse()'s debug line)."""
    return [int(n) for n in re.findall(
        r"Mailbox %s: sqlbox: (\d+) candidate rows read in one statement"
        % box, w.dc.log_text())]


def test_candidate_rows_read_in_batches():
    """Issue 15: a SEARCH the index narrowed to candidates whose
    sequences are not consecutive reads their rows by a few statements
    of up to 32 UIDs each, not one per mail, and answers as the unindexed
    search.  Another session expunging candidates between two SEARCHes:
    the second answers without them, still as the unindexed search."""
    w = World(mail_location="sqlbox:~/mail", extra_conf="mail_debug = yes\n")
    try:
        password = w.dc.generate_password(USER)
        imap = imap_login(w.dc, password)
        ok(imap.create("Batch"))
        msgs = []
        for i in range(90):
            sender = ("Sybil <sybil@example.org>" if i % 3 == 0
                      else "Bob <bob@example.org>")
            headers = [("From", sender), ("Subject", "notes %d" % i)]
            if i % 6 == 0:
                headers.append(("X-Tag", "tagged"))
            msgs.append(header_mail(headers, "the bells ring %d" % i))
        append_all(imap, "Batch", msgs)
        select_count(imap, "Batch")
        want = [i + 1 for i in range(90) if i % 3 == 0]
        before = len(rows_batches_logged(w, "Batch"))
        assert search_candidates(w, imap, "Batch", "FROM", "sybil") == \
            (want, 30)
        wait_for(lambda: len(rows_batches_logged(w, "Batch")) > before, 60,
                 "the candidates' batches")
        batches = rows_batches_logged(w, "Batch")[before:]
        # 30 candidates: one statement (a mail looked up alone each
        # before), and no more rows than candidates
        assert batches == [30]
        assert uid_search_unindexed(imap, "FROM", "sybil") == want
        # a key outside the light rows: the heavy part of the batch
        tagged = [u for u in want if (u - 1) % 6 == 0]
        assert _search(imap, "FROM", "sybil", "HEADER", "X-Tag",
                       "tagged") == tagged
        assert _search(imap, "OR", "FROM", "sybil", *NEVER_SET,
                       "HEADER", "X-Tag", "tagged") == tagged

        other = imap_login(w.dc, password)
        select_count(other, "Batch")
        gone = [want[1], want[2], want[17]]
        ok(other.uid("STORE", ",".join(map(str, gone)), "+FLAGS",
                     "(\\Deleted)"))
        ok(other.expunge())
        other.logout()
        left = [u for u in want if u not in gone]
        got = uid_search(imap, "FROM", "sybil")
        assert got == uid_search_unindexed(imap, "FROM", "sybil")
        assert got == left
        ok(imap.noop())
        assert uid_search(imap, "FROM", "sybil") == left
        assert uid_search_unindexed(imap, "FROM", "sybil") == left
        imap.logout()
    finally:
        w.close()


# fts_doc and fts_index as a sqlbox before the scoped tokens left them
# (format 1): no format column, rows with unscoped trigrams only.
FORMAT1_SQL = (
    "INSERT INTO fts_index (fts_index) VALUES ('delete-all');"
    " DELETE FROM fts_doc;"
    " DROP INDEX fts_doc_old;"
    " ALTER TABLE fts_doc DROP COLUMN format;"
    " INSERT INTO fts_doc (body_id) SELECT id FROM body;"
    " INSERT INTO fts_index (rowid, tri)"
    "  SELECT docid, 'CHU HUR URC RCH BEL ELL LLS' FROM fts_doc;")


def test_old_format_index_rebuilt():
    """An index of format 1 (no scoped tokens) is emptied when this
    sqlbox first opens it and rebuilt by the next SEARCH's catch-up, so
    SUBJECT church finds its mail (from the old rows' scoped tokens it
    would find none).  A row an older sqlbox adds afterwards (format 1,
    the column's default, no scoped tokens) is dropped and its body
    indexed again."""
    w = World(mail_location="sqlbox:~/mail", extra_conf="mail_debug = yes\n")
    try:
        password = w.dc.generate_password(USER)
        imap = imap_login(w.dc, password)
        append_all(imap, "INBOX", church_corpus())
        select_count(imap)
        assert field_search(imap, "SUBJECT", "church") == [7]
        logout_and_wait(w, password, imap)

        dbtool_sql(w.dc, password, FORMAT1_SQL, mode="exec")
        imap = imap_login(w.dc, password)
        select_count(imap)
        assert search_candidates(w, imap, "INBOX", "SUBJECT", "church") == \
            ([7], 1)
        assert "sqlbox fts: index of format 1 emptied" in w.dc.log_text()
        assert dbtool_sql(w.dc, password, "SELECT format, count(*)"
                          " FROM fts_doc GROUP BY format") == ["2|20"]
        # emptied, not only left behind: no dead rows of format 1
        assert dbtool_sql(w.dc, password, "SELECT count(*)"
                          " FROM fts_index_docsize") == ["20"]
        logout_and_wait(w, password, imap)

        body = body_of(w, password, "INBOX", 7)
        dbtool_sql(w.dc, password, "DELETE FROM fts_doc WHERE body_id = %d;"
                   " INSERT INTO fts_doc (body_id) VALUES (%d)"
                   % (body, body), mode="exec")
        imap = imap_login(w.dc, password)
        select_count(imap)
        assert field_search(imap, "SUBJECT", "church") == [7]
        assert dbtool_sql(w.dc, password, "SELECT format FROM fts_doc"
                          " WHERE body_id = %d" % body) == ["2"]
        wait_for(lambda: "sqlbox fts: 1 rows of format 1 dropped" in
                 w.dc.log_text(), 60, "the old row's drop logged")
        imap.logout()
        assert " Error: " not in w.dc.log_text()
    finally:
        w.close()


def restart_with_module(w, module):
    """Dovecot again, with the sqlbox plugin of module."""
    import harness
    w.dc.stop()
    saved, harness.SQLBOX_MODULE = harness.SQLBOX_MODULE, module
    try:
        w.dc.start()
    finally:
        harness.SQLBOX_MODULE = saved


@pytest.mark.skipif(not os.environ.get("DLP_OLD_BUILD_DIR"),
                    reason="DLP_OLD_BUILD_DIR: a build of before the"
                    " scoped header tokens")
def test_old_build_index_rebuilt():
    """The index a sqlbox of before the scoped tokens built (the build in
    DLP_OLD_BUILD_DIR) is rebuilt by this one and answers SUBJECT right;
    mail that sqlbox indexes after this one ran (a downgrade) is indexed
    again."""
    import harness
    ours = harness.SQLBOX_MODULE
    old = os.path.join(os.environ["DLP_OLD_BUILD_DIR"],
                       "src/storage/.libs/lib20_sqlbox_plugin.so")
    w = World(mail_location="sqlbox:~/mail", extra_conf="mail_debug = yes\n")
    try:
        password = w.dc.generate_password(USER)
        restart_with_module(w, old)
        imap = imap_login(w.dc, password)
        append_all(imap, "INBOX", church_corpus())
        select_count(imap)
        assert field_search(imap, "SUBJECT", "church") == [7]
        logout_and_wait(w, password, imap)
        assert dbtool_sql(w.dc, password, "SELECT count(*) FROM"
                          " pragma_table_info('fts_doc')"
                          " WHERE name = 'format'") == ["0"]
        assert fts_docs(w.dc, password) == 20

        restart_with_module(w, ours)
        imap = imap_login(w.dc, password)
        select_count(imap)
        assert search_candidates(w, imap, "INBOX", "SUBJECT", "church") == \
            ([7], 1)
        assert dbtool_sql(w.dc, password, "SELECT count(*)"
                          " FROM fts_index_docsize") == ["20"]
        logout_and_wait(w, password, imap)

        restart_with_module(w, old)
        imap = imap_login(w.dc, password)
        append_all(imap, "INBOX", [mime_text("church choir", "bells")])
        logout_and_wait(w, password, imap)
        assert fts_docs(w.dc, password) == 21

        restart_with_module(w, ours)
        imap = imap_login(w.dc, password)
        select_count(imap)
        assert field_search(imap, "SUBJECT", "church") == [7, 21]
        assert dbtool_sql(w.dc, password, "SELECT format, count(*)"
                          " FROM fts_doc GROUP BY format") == ["2|21"]
        imap.logout()
    finally:
        w.close()
