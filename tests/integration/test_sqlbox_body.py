"""Issue 15, sqlbox's body reads: once a session has read 1 MiB of
bodies, or at the first body of a FETCH of 16 bodies or more, chunks
are read through a second SQLite connection with a small page cache
(outside transactions; test_body_connection_*; the cache grows to a
chunk's overflow chain at the first read within a chunk); the reads go into one buffer kept
between body streams, and a FETCH of BODY[] reads a chunk in one go.  What a client sees must not change:

- bodies of many sizes (one and several 256 KiB chunks, empty body,
  header only), fetched together in one command, whole, as BODY[TEXT]
  and as partials across chunk boundaries, are byte for byte what was
  appended;
- mail that another session appended or expunged after this session's
  body connection was opened is read (or reported expunged) correctly,
  and so is mail this session appended itself;
- a command's chunk reads run in one read transaction of the body
  connection (test_body_reads_*), which no command outlives.
A body read while the session saves (inside a transaction: the main
connection reads) is test_sqlbox_plugins.py's mail_log test.
"""

import os
import random
import re

import pytest

from conftest import World
from harness import wait_for
from test_sqlbox_cache import login
from test_sqlbox import wait_unused
from test_sqlbox_features import imap_pids

USER = "alice@ubuntu.com"
SEED = 15
KB = 1024


def message(rng, i, body_bytes):
    head = ("From: Sender %d <s%d@example.org>\r\nTo: Alice "
            "<alice@ubuntu.com>\r\nSubject: body %d\r\nMessage-ID: "
            "<body%d@body.test>\r\n\r\n" % (i, i, i, i)).encode()
    lines, n = [], 0
    while n < body_bytes:
        line = "%06d %s" % (n, "".join(rng.choice("abcdefghij ")
                                       for _ in range(rng.randint(0, 70))))
        lines.append(line)
        n += len(line) + 2
    return head + "".join(l + "\r\n" for l in lines).encode()


def corpus():
    rng = random.Random(SEED)
    sizes = [0, 1, 100, 3 * KB, 4 * KB - 7, 20 * KB, 64 * KB + 5,
             256 * KB - 300, 256 * KB + 10, 600 * KB, 1100 * KB]
    sizes += [rng.randint(1, 90 * KB) for _ in range(30)]
    msgs = [message(rng, i, s) for i, s in enumerate(sizes)]
    # All header, no blank line.
    msgs.append(b"From: Frank <frank@example.org>\r\nSubject: hdr only\r\n")
    return msgs


def append_cmd(msg):
    return b"APPEND INBOX {%d+}\r\n" % len(msg) + msg


def multiappend(w, pw, msgs):
    """msgs appended to INBOX by one MULTIAPPEND of its own session."""
    imap = login(w, pw)
    ok(imap, b"APPEND INBOX" + b"".join(
        b" {%d+}\r\n" % len(m) + m for m in msgs))
    imap.close()


def ok(imap, cmd):
    res = imap.command(cmd)
    assert b"\r\nTAG OK " in b"\r\n" + res, (cmd[:60], res[-300:])
    return res


def literals(res):
    """The FETCH literals of one answer, per (UID, item)."""
    out = {}
    pos = 0
    for m in re.finditer(rb"\* \d+ FETCH \(", res):
        pos = m.end()
        um = re.match(rb"UID (\d+)", res[pos:])
        uid = int(um.group(1))
        pos += um.end()
        while True:
            item = re.match(rb" ?(BODY\[[^\]]*\](?:<\d+>)?) \{(\d+)\}\r\n",
                            res[pos:])
            if not item:
                break
            start = pos + item.end()
            n = int(item.group(2))
            out[(uid, item.group(1))] = res[start:start + n]
            pos = start + n
    return out


def text_of(msg):
    i = msg.find(b"\r\n\r\n")
    return msg[i + 4:] if i >= 0 else b""


@pytest.fixture
def world():
    w = World(mail_location="sqlbox:~/mail")
    try:
        yield w, w.dc.generate_password(USER, label="body")
    finally:
        w.close()


def no_errors(w):
    errors = [line for line in w.dc.log_text().splitlines()
              if "Error:" in line or "Panic:" in line]
    assert errors == []


def test_bodies_whole_text_and_partial(world):
    w, pw = world
    msgs = corpus()
    imap = login(w, pw)
    for m in msgs:
        ok(imap, append_cmd(m))
    imap.close()

    imap = login(w, pw)
    ok(imap, b"SELECT INBOX")
    uids = range(1, len(msgs) + 1)
    got = literals(ok(imap, b"UID FETCH 1:* (BODY.PEEK[])"))
    assert {u: got[(u, b"BODY[]")] for u in uids} == \
        dict(zip(uids, msgs))
    got = literals(ok(imap, b"UID FETCH 1:* (BODY.PEEK[TEXT])"))
    assert {u: got[(u, b"BODY[TEXT]")] for u in uids} == \
        {u: text_of(m) for u, m in zip(uids, msgs)}
    # Partials at chunk boundaries and after a seek, twice in a row on the
    # same mail (the second reads where the first ended).
    for u, m in zip(uids, msgs):
        for start, n in ((0, 10), (4090, 20), (256 * KB - 5, 10),
                         (256 * KB, 70000), (600 * KB, 4096),
                         (len(m) - 3, 10)):
            if start < 0:
                continue
            got = literals(ok(imap, b"UID FETCH %d (BODY.PEEK[]<%d.%d> "
                              b"BODY.PEEK[]<%d.%d>)" % (
                                  u, start, n, start + n, n)))
            assert got.get((u, b"BODY[]<%d>" % start),
                           b"") == m[start:start + n], (u, start, n)
            assert got.get((u, b"BODY[]<%d>" % (start + n)),
                           b"") == m[start + n:start + 2 * n], (u, start)
    imap.close()
    no_errors(w)


def test_other_sessions_changes_and_own_appends(world):
    w, pw = world
    msgs = corpus()
    first = msgs[:3] + [msgs[10]]       # 1.1 MB: past the 1 MiB after
    a = login(w, pw)                    # which the body connection opens
    for m in first:
        ok(a, append_cmd(m))
    ok(a, b"SELECT INBOX")
    got = literals(ok(a, b"UID FETCH 1:4 (BODY.PEEK[])"))
    assert [got[(u, b"BODY[]")] for u in (1, 2, 3, 4)] == first

    b = login(w, pw)
    ok(b, b"SELECT INBOX")
    ok(b, append_cmd(msgs[9]))          # 600 KB: three chunks
    ok(b, b"UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    ok(b, b"EXPUNGE")
    b.close()

    # Not synced yet: UID 2 is still in this session's view, gone from
    # the database.
    res = a.command(b"UID FETCH 2 (BODY.PEEK[])")
    assert b"TAG OK" not in res or b"BODY[] {" not in res, res[-300:]
    ok(a, b"NOOP")
    got = literals(ok(a, b"UID FETCH 5 (BODY.PEEK[] BODY.PEEK[]<"
                      b"300000.100>)"))
    assert got[(5, b"BODY[]")] == msgs[9]
    assert got[(5, b"BODY[]<300000>")] == msgs[9][300000:300100]
    # Appended by this session after its body connection was opened.
    ok(a, append_cmd(msgs[8]))
    ok(a, b"NOOP")
    got = literals(ok(a, b"UID FETCH 6 (BODY.PEEK[] BODY.PEEK[]<"
                      b"262140.100>)"))
    assert got[(6, b"BODY[]")] == msgs[8]
    assert got[(6, b"BODY[]<262140>")] == msgs[8][262140:262240]
    a.close()
    no_errors_but_expunged(w)


def no_errors_but_expunged(w):
    """No error beyond the read of the mail expunged under the session."""
    errors = [line for line in w.dc.log_text().splitlines()
              if ("Error:" in line or "Panic:" in line) and
              "missing or has the wrong size" not in line]
    assert errors == []


def db_opens(w):
    """How many descriptors each imap process of this Dovecot holds on
    alice's database: two once the body connection is open."""
    path = os.path.realpath(os.path.join(w.dc.home("alice"), "mail",
                                         "sqlbox.db"))
    opens = {}
    for pid in imap_pids(w.dc):
        n = 0
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    n += os.readlink("/proc/%d/fd/%s" % (pid, fd)) == path
                except OSError:
                    pass
        except OSError:
            continue
        opens[pid] = n
    return opens


def test_body_connection_counts_single_read_bodies(world):
    """Bodies read in one blob read each (here: bodies of less than the
    page read after the cached header) count towards the bytes after
    which the body connection opens.  They once did not, and a FETCH of
    many small bodies filled the main connection's cache with body pages
    and never opened it.  One small body does not open it."""
    w, pw = world
    rng = random.Random(SEED + 1)
    msgs = [message(rng, i, 3900) for i in range(300)]     # 1.2 MB
    multiappend(w, pw, msgs)

    imap = login(w, pw)
    ok(imap, b"SELECT INBOX")
    got = literals(ok(imap, b"UID FETCH 1 (BODY.PEEK[])"))
    assert got[(1, b"BODY[]")] == msgs[0]
    assert max(db_opens(w).values()) == 1
    # 15 at a time: a FETCH of more opens it at its first body.
    for first in range(1, len(msgs) + 1, 15):
        got = literals(ok(imap, b"UID FETCH %d:%d (BODY.PEEK[])" % (
            first, first + 14)))
        assert [got[(u, b"BODY[]")] for u in range(first, first + 15)] \
            == msgs[first - 1:first + 14]
    assert max(db_opens(w).values()) == 2
    imap.close()
    no_errors(w)


def test_body_connection_for_many_bodies(world):
    """A FETCH of the bodies of 16 mails or more opens the body
    connection at its first body, so that their pages never go through
    the main connection's cache; one of 15 mails, or of a UID range that
    holds one, does not."""
    w, pw = world
    rng = random.Random(SEED + 2)
    msgs = [message(rng, i, 3000) for i in range(16)]      # 50 KB
    multiappend(w, pw, msgs)

    imap = login(w, pw)
    ok(imap, b"SELECT INBOX")
    got = literals(ok(imap, b"UID FETCH 16:* (BODY.PEEK[])"))
    assert got == {(16, b"BODY[]"): msgs[15]}
    got = literals(ok(imap, b"UID FETCH 1:15 (BODY.PEEK[])"))
    assert [got[(u, b"BODY[]")] for u in range(1, 16)] == msgs[:15]
    assert max(db_opens(w).values()) == 1
    got = literals(ok(imap, b"UID FETCH 1:16 (BODY.PEEK[])"))
    assert [got[(u, b"BODY[]")] for u in range(1, 17)] == msgs
    assert max(db_opens(w).values()) == 2
    imap.close()
    no_errors(w)


GROWN = "sqlbox: body connection's cache grown to"


def session_log(w, pid):
    """The log lines of imap process pid once it logged its logout (the
    log process writes each process's lines in order)."""
    tag = re.compile(r"imap\([^)]*\)<%d><" % pid)

    def lines():
        return [l for l in w.dc.log_text().splitlines() if tag.search(l)]
    wait_for(lambda: any("Disconnected: Logged out" in l for l in lines()),
             10, "imap %d's logout" % pid)
    return lines()


def test_body_connection_cache_grows_for_reads_within_a_chunk():
    """The body connection's page cache starts small (each page kept is
    a page fault of a new process) and grows to a whole chunk's overflow
    chain only when a read starts within a chunk (a partial, the rest of
    a chunk that did not fit the buffer), which walks the chain from
    the chunk's start again: whole bodies of one chunk never grow it."""
    w = World(mail_location="sqlbox:~/mail", extra_conf="mail_debug = yes\n")
    try:
        pw = w.dc.generate_password(USER, label="body")
        rng = random.Random(SEED + 3)
        msgs = [message(rng, i, 3000 + 2000 * i) for i in range(20)]
        msgs.append(message(rng, 20, 600 * KB))
        multiappend(w, pw, msgs)

        for partial in (False, True):
            before = imap_pids(w.dc)
            imap = login(w, pw)
            ok(imap, b"SELECT INBOX")
            (pid,) = imap_pids(w.dc) - before
            got = literals(ok(imap, b"UID FETCH 1:20 (BODY.PEEK[])"))
            assert [got[(u, b"BODY[]")] for u in range(1, 21)] == msgs[:20]
            assert db_opens(w)[pid] == 2
            if partial:
                got = literals(ok(imap, b"UID FETCH 21 (BODY.PEEK[]<%d.%d>)"
                                  % (300 * KB, 4096)))
                assert got[(21, b"BODY[]<%d>" % (300 * KB))] == \
                    msgs[20][300 * KB:300 * KB + 4096]
            ok(imap, b"LOGOUT")
            imap.close()
            grown = [l for l in session_log(w, pid) if GROWN in l]
            assert len(grown) == (1 if partial else 0), grown
        no_errors(w)
    finally:
        w.close()


ENDED = re.compile(r"sqlbox: body reads ended: (\d+) chunks in one read "
                   r"transaction")


def reads_ended(lines):
    """The chunk counts of the body connection's read transactions."""
    return [int(m.group(1)) for m in map(ENDED.search, lines) if m]


def debug_world():
    return World(mail_location="sqlbox:~/mail",
                 extra_conf="mail_debug = yes\n")


def test_body_reads_in_one_read_transaction():
    """The chunks of a FETCH of many bodies are read in one read
    transaction of the body connection, moving one blob handle from row
    to row (sqlite3_blob_reopen), not one transaction (a WAL read lock:
    fcntl()s and fstat()s) and one handle each.  It ends with the
    command's mailbox transaction, so the next command starts a new
    one."""
    w = debug_world()
    try:
        pw = w.dc.generate_password(USER, label="body")
        rng = random.Random(SEED + 4)
        # 40 one-chunk bodies and one of three chunks: 1.1 MB.
        msgs = [message(rng, i, 1000 + 500 * i) for i in range(40)]
        msgs.append(message(rng, 40, 600 * KB))
        multiappend(w, pw, msgs)

        before = imap_pids(w.dc)
        imap = login(w, pw)
        ok(imap, b"SELECT INBOX")
        (pid,) = imap_pids(w.dc) - before
        got = literals(ok(imap, b"UID FETCH 1:41 (BODY.PEEK[])"))
        assert [got[(u, b"BODY[]")] for u in range(1, 42)] == msgs
        ok(imap, b"NOOP")
        got = literals(ok(imap, b"UID FETCH 1:20 (BODY.PEEK[TEXT])"))
        assert [got[(u, b"BODY[TEXT]")] for u in range(1, 21)] == \
            [text_of(m) for m in msgs[:20]]
        ok(imap, b"LOGOUT")
        imap.close()
        ended = reads_ended(session_log(w, pid))
        # Each body is read at least once per chunk (the 600 KB one has
        # three): 43 + 20 chunk reads.  A FETCH whose output waits for
        # the client ends it early (the process waits in its ioloop):
        # it may take a few, never one per chunk.
        assert sum(ended) >= 63, ended
        assert len(ended) <= 8, ended
        assert max(ended) >= 20, ended
        no_errors(w)
    finally:
        w.close()


def test_body_reads_see_other_sessions_between_commands():
    """No read snapshot of the body connection outlives a command: after
    session A read bodies through it, session B appends a mail (three
    chunks) and expunges one (its chunk rows deleted); A's next commands
    see both (the new body read whole, the expunged one gone after
    NOOP), and once both sessions are out the last close truncated the
    -wal (no read transaction left open)."""
    w = debug_world()
    try:
        pw = w.dc.generate_password(USER, label="body")
        rng = random.Random(SEED + 5)
        msgs = [message(rng, i, 3000 + 700 * i) for i in range(20)]
        extra = message(rng, 20, 600 * KB)
        multiappend(w, pw, msgs)

        before = imap_pids(w.dc)
        a = login(w, pw)
        ok(a, b"SELECT INBOX")
        (pid,) = imap_pids(w.dc) - before
        got = literals(ok(a, b"UID FETCH 1:20 (BODY.PEEK[])"))
        assert [got[(u, b"BODY[]")] for u in range(1, 21)] == msgs
        assert db_opens(w)[pid] == 2

        b = login(w, pw)
        ok(b, b"SELECT INBOX")
        ok(b, append_cmd(extra))
        ok(b, b"UID STORE 3 +FLAGS.SILENT (\\Deleted)")
        ok(b, b"EXPUNGE")

        res = ok(a, b"NOOP")
        assert b"* 3 EXPUNGE" in res and b"* 20 EXISTS" in res, res
        got = literals(ok(a, b"UID FETCH 21 (BODY.PEEK[] "
                          b"BODY.PEEK[]<300000.100>)"))
        assert got[(21, b"BODY[]")] == extra
        assert got[(21, b"BODY[]<300000>")] == extra[300000:300100]
        got = literals(ok(a, b"UID FETCH 1:21 (BODY.PEEK[])"))
        assert sorted(u for u, _ in got) == \
            [u for u in range(1, 22) if u != 3]
        assert all(got[(u, b"BODY[]")] == msgs[u - 1]
                   for u in range(1, 21) if u != 3)

        # And the other way round, while A's body connection is open.
        ok(a, append_cmd(msgs[0]))
        ok(b, b"NOOP")
        got = literals(ok(b, b"UID FETCH 22 (BODY.PEEK[])"))
        assert got[(22, b"BODY[]")] == msgs[0]
        ok(a, b"NOOP")
        got = literals(ok(a, b"UID FETCH 22 (BODY.PEEK[])"))
        assert got[(22, b"BODY[]")] == msgs[0]
        ok(b, b"LOGOUT")
        b.close()
        ok(a, b"LOGOUT")
        a.close()
        assert reads_ended(session_log(w, pid))
        db = os.path.realpath(os.path.join(w.dc.home("alice"), "mail",
                                           "sqlbox.db"))
        wait_unused(db)
        assert os.stat(db + "-wal").st_size == 0
        no_errors(w)
    finally:
        w.close()
