"""Issue 4: the mail storage sqlbox (mail_location = sqlbox:~/mail) with a
real Dovecot and real clients: IMAP, POP3, LMTP into the sealed spool,
several sessions, a locked mailbox, and nothing readable on disk.
"""

import imaplib
import os
import poplib
import re
import secrets
import shutil
import socket
import smtplib
import subprocess

import pytest

from conftest import World
from harness import BUILD_DIR, wait_for

DBTOOL = os.path.join(BUILD_DIR, "src/storage/sqlbox-dbtool")
USER = "alice@ubuntu.com"


def message(subject, body="hello from the sqlbox tests", extra=b""):
    return (b"From: Sender <sender@example.org>\r\n"
            b"To: Alice <alice@ubuntu.com>\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + subject.encode() + b"@example.org>\r\n" +
            extra + b"\r\n" + body.encode() + b"\r\n")


@pytest.fixture(scope="module")
def world():
    w = World(mail_location="sqlbox:~/mail")
    yield w
    w.close()


@pytest.fixture(scope="module")
def alice(world):
    return world.dc.generate_password(USER, label="laptop")


def imap_login(dc, password, user=USER):
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
    imap.login(user, password)
    return imap


def ok(res):
    typ, data = res
    assert typ == "OK", data
    return data


def search(imap, *criteria):
    return ok(imap.uid("SEARCH", *criteria))[0].split()


def select_count(imap, box="INBOX"):
    return int(ok(imap.select(box))[0])


def lmtp_deliver(dc, rcpt, data):
    with smtplib.LMTP("127.0.0.1", dc.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("test.example.org")
        assert lmtp.mail("sender@example.org")[0] == 250
        code, msg = lmtp.rcpt(rcpt)
        assert code == 250, msg
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(data + b".\r\n")
        return lmtp.getreply()


def test_append_fetch_every_part(world, alice):
    imap = imap_login(world.dc, alice)
    before = select_count(imap)
    subject = "fetch-" + secrets.token_hex(4)
    msg = message(subject, extra=b"MIME-Version: 1.0\r\n"
                  b"Content-Type: text/plain; charset=us-ascii\r\n")
    data = ok(imap.append("INBOX", r"(\Flagged)",
                          '"02-Mar-2026 11:12:13 +0000"', msg))
    m = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
    assert m, data
    uid = m.group(2).decode()
    assert select_count(imap) == before + 1
    res = ok(imap.uid("FETCH", uid, "(UID FLAGS INTERNALDATE RFC822.SIZE "
                      "BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] "
                      "BODYSTRUCTURE ENVELOPE)"))
    text = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in res)
    assert msg in text
    assert b"\\Flagged" in text
    assert b'INTERNALDATE "02-Mar-2026 11:12:13 +0000"' in text
    assert b"RFC822.SIZE %d" % len(msg) in text
    assert b'("text" "plain" ("charset" "us-ascii")' in text
    assert subject.encode() in text.split(b"ENVELOPE")[1]
    assert b"\\Seen" not in text
    # A non-PEEK fetch sets \Seen, and it stays after a new login.
    ok(imap.uid("FETCH", uid, "(BODY[TEXT])"))
    imap.logout()
    imap = imap_login(world.dc, alice)
    select_count(imap)
    flags = ok(imap.uid("FETCH", uid, "(FLAGS)"))[0]
    assert b"\\Seen" in flags and b"\\Flagged" in flags
    imap.logout()


def test_multiappend(world, alice):
    imap = imap_login(world.dc, alice)
    before = select_count(imap)
    tag = imap._new_tag().decode()
    m1, m2 = message("multi-1"), message("multi-2")
    imap.send(("%s APPEND INBOX {%d+}\r\n" % (tag, len(m1))).encode() + m1 +
              (" {%d+}\r\n" % len(m2)).encode() + m2 + b"\r\n")
    line = imap.readline()
    while line and not line.startswith(tag.encode()):
        line = imap.readline()
    assert b" OK " in line and b"APPENDUID" in line, line
    assert re.search(rb"APPENDUID \d+ \d+:\d+", line)
    assert select_count(imap) == before + 2
    imap.logout()


def test_store_search_keywords(world, alice):
    imap = imap_login(world.dc, alice)
    select_count(imap)
    word = "needle" + secrets.token_hex(3)
    ok(imap.append("INBOX", None, None,
                   message("search-" + word, body="the body has " + word)))
    uids = search(imap, "BODY", word)
    assert len(uids) == 1
    assert search(imap, "TEXT", word) == uids
    assert search(imap, "SUBJECT", "search-" + word) == uids
    uid = uids[0].decode()
    ok(imap.uid("STORE", uid, "+FLAGS", r"(\Answered $Label1 projectX)"))
    assert search(imap, "KEYWORD", "projectX") == uids
    ok(imap.uid("STORE", uid, "-FLAGS", r"($Label1)"))
    imap.logout()
    imap = imap_login(world.dc, alice)
    select_count(imap)
    flags = ok(imap.uid("FETCH", uid, "(FLAGS)"))[0]
    assert b"projectX" in flags and b"\\Answered" in flags
    assert b"$Label1" not in flags
    imap.logout()


def test_copy_move_expunge(world, alice):
    imap = imap_login(world.dc, alice)
    ok(imap.create("Work"))
    select_count(imap)
    subject = "copy-" + secrets.token_hex(4)
    ok(imap.append("INBOX", r"(\Seen)", None, message(subject)))
    uid = search(imap, "SUBJECT", subject)[0].decode()
    ok(imap.uid("COPY", uid, "Work"))
    assert len(search(imap, "SUBJECT", subject)) == 1
    ok(imap._simple_command("UID", "MOVE", uid, "Work"))
    assert search(imap, "SUBJECT", subject) == []
    select_count(imap, "Work")
    work = search(imap, "SUBJECT", subject)
    assert len(work) == 2
    body = ok(imap.uid("FETCH", work[1].decode(), "(FLAGS BODY.PEEK[])"))
    assert subject.encode() in body[0][1] and b"\\Seen" in body[0][0]
    ok(imap.uid("STORE", work[0].decode(), "+FLAGS", r"(\Deleted)"))
    ok(imap.expunge())
    assert search(imap, "SUBJECT", subject) == [work[1]]
    imap.logout()
    imap = imap_login(world.dc, alice)
    select_count(imap, "Work")
    assert search(imap, "SUBJECT", subject) == [work[1]]
    imap.logout()


def test_folders_list_status(world, alice):
    imap = imap_login(world.dc, alice)
    ok(imap.create("Projects/alpha/deep"))
    ok(imap.create("Projects/beta"))
    ok(imap.subscribe("Projects/beta"))
    names = b"\n".join(ok(imap.list('""', "*")))
    assert b'"/" Projects/alpha/deep\n' in names
    assert b'(\\HasNoChildren) "/" Projects/beta\n' in names
    assert b'(\\Noselect \\HasChildren) "/" Projects\n' in names
    assert b"INBOX" in names
    lsub = b"\n".join(ok(imap.lsub('""', "*")))
    assert b"Projects/beta" in lsub and b"alpha" not in lsub
    ok(imap.append("Projects/beta", None, None, message("status-1")))
    status = ok(imap.status("Projects/beta",
                            "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN "
                            "HIGHESTMODSEQ)"))[0]
    assert b"MESSAGES 1" in status and b"UIDNEXT 2" in status
    assert b"UNSEEN 1" in status
    ok(imap.rename("Projects", "Archive"))
    names = b"\n".join(ok(imap.list('""', "*")))
    assert b'"/" Archive/alpha/deep\n' in names and b"Projects" not in names
    assert select_count(imap, "Archive/beta") == 1
    ok(imap.delete("Archive/alpha/deep"))
    typ, data = imap.select("Archive/alpha/deep")
    assert typ == "NO" and b"doesn't exist" in data[0]
    typ, data = imap.create("Archive/beta")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    imap.logout()


def test_condstore(world, alice):
    imap = imap_login(world.dc, alice)
    ok(imap.append("INBOX", None, None, message("modseq-1")))
    ok(imap._simple_command("SELECT", "INBOX", "(CONDSTORE)"))
    imap.state = "SELECTED"
    ok_codes = b" ".join(x for x in imap.untagged_responses.get("OK", [])
                         if isinstance(x, bytes))
    m = re.search(rb"HIGHESTMODSEQ (\d+)", ok_codes)
    assert m, ok_codes
    high = int(m.group(1))
    assert b"NOMODSEQ" not in ok_codes
    uid = search(imap, "SUBJECT", "modseq-1")[-1].decode()
    ok(imap.uid("STORE", uid, "+FLAGS", r"(\Flagged)"))
    res = ok(imap.uid("FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE %d)" % high))
    changed = [r for r in res if r is not None]
    assert len(changed) == 1 and b"UID " + uid.encode() in changed[0]
    modseq = int(re.search(rb"MODSEQ \((\d+)\)", changed[0]).group(1))
    assert modseq > high
    imap.logout()
    # Permanent: the next session reports the same modseq.
    imap = imap_login(world.dc, alice)
    ok(imap._simple_command("SELECT", "INBOX", "(CONDSTORE)"))
    imap.state = "SELECTED"
    res = ok(imap.uid("FETCH", uid, "(MODSEQ)"))[0]
    assert int(re.search(rb"MODSEQ \((\d+)\)", res).group(1)) == modseq
    res = ok(imap.uid("FETCH", "1:*", "(FLAGS)", "(CHANGEDSINCE %d)" % modseq))
    assert [r for r in res if r is not None] == []
    imap.logout()


def message_rows(imap):
    """(UID, flags without \\Recent, MODSEQ) of every message of the
    selected folder."""
    rows = []
    for line in ok(imap.fetch("1:*", "(UID FLAGS MODSEQ)")):
        m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)",
                      line)
        assert m, line
        flags = sorted(f for f in m.group(2).split() if f != b"\\Recent")
        rows.append((int(m.group(1)), flags, int(m.group(3))))
    return rows


def select_state(imap, box):
    """SELECT box (CONDSTORE) in imap: the response codes and every
    message's UID, flags (without \\Recent) and modseq."""
    imap.untagged_responses.clear()
    typ, data = imap._simple_command("SELECT", box, "(CONDSTORE)")
    assert typ == "OK", data
    imap.state = "SELECTED"
    codes = {}
    for x in imap.untagged_responses.get("OK", []):
        m = re.match(rb"\[(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ|UNSEEN) (\d+)\]",
                     x if isinstance(x, bytes) else b"")
        if m:
            codes[m.group(1).decode()] = int(m.group(2))
    codes["EXISTS"] = int(imap.untagged_responses["EXISTS"][-1])
    rows = message_rows(imap)
    return codes, rows


def test_select_fills_index_like_the_session_that_wrote(world, alice):
    """The first SELECT of a session fills the in-memory index straight
    from SQLite (sqlbox_sync_fill); the folder must look exactly as in
    the session whose index learnt every change through its own log:
    UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, UNSEEN, flags, keywords and
    per-message modseqs, with gaps from expunges; and again after more
    changes from another session."""
    a = imap_login(world.dc, alice)
    ok(a.create("fill"))
    for i in range(12):
        ok(a.append("fill", None, None, message("fill-%d" % i)))
    ok(a.select("fill"))
    ok(a.store("1:8", "+FLAGS", r"(\Seen)"))
    ok(a.store("3,9", "+FLAGS", r"(\Deleted)"))
    ok(a.expunge())
    ok(a.uid("STORE", "4", "+FLAGS", r"(\Flagged)"))
    ok(a.uid("STORE", "2,4", "+FLAGS", "(work)"))
    ok(a.uid("STORE", "5", "+FLAGS", "($label1 urgent)"))
    ok(a.uid("STORE", "1", "-FLAGS", r"(\Seen)"))
    ok(a.close())
    before = select_state(a, "fill")
    codes, rows = before
    assert codes["EXISTS"] == 10 and len(rows) == 10
    assert [r[0] for r in rows] == [1, 2, 4, 5, 6, 7, 8, 10, 11, 12]
    assert rows[3][1] == [b"$label1", b"\\Seen", b"urgent"]
    assert codes["UNSEEN"] == 1
    assert len({r[2] for r in rows}) > 3
    a.logout()
    for _ in range(2):
        b = imap_login(world.dc, alice)
        assert select_state(b, "fill") == before
        b.logout()
    # changes from a session that never filled its index (APPEND only)
    # and from one that did
    c = imap_login(world.dc, alice)
    ok(c.append("fill", r"(\Answered)", None, message("fill-late")))
    c.logout()
    b = imap_login(world.dc, alice)
    codes, rows = select_state(b, "fill")
    ok(b.uid("STORE", "2", "-FLAGS", "(work)"))
    ok(b.uid("STORE", "6", "+FLAGS", r"(\Deleted)"))
    ok(b.expunge())
    after = select_state(b, "fill")
    b.logout()
    assert after[0]["UIDVALIDITY"] == before[0]["UIDVALIDITY"]
    assert after[0]["HIGHESTMODSEQ"] > before[0]["HIGHESTMODSEQ"]
    assert [r[0] for r in after[1]] == [1, 2, 4, 5, 7, 8, 10, 11, 12, 13]
    assert after[1][-1][1] == [b"\\Answered"]
    b = imap_login(world.dc, alice)
    assert select_state(b, "fill") == after
    b.logout()


def dbsql(world, password, sql, mode="sql"):
    """Runs sql on alice's database: read-only, or read-write with
    mode "exec"."""
    home = world.dc.home("alice")
    res = subprocess.run(
        [DBTOOL, os.path.join(home, "sqlbox.keys"),
         os.path.join(home, "mail", "sqlbox.db"), mode, sql],
        input=password, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [line.split("|") for line in res.stdout.splitlines()]


def snapshot_of(world, password, box):
    """(uidvalidity, modseq, messages, blob length) of box's index
    snapshot, or None."""
    rows = dbsql(world, password,
                 "SELECT s.uidvalidity, s.modseq, s.messages, length(s.data)"
                 " FROM index_snapshot s JOIN mailbox m ON m.id = s.mailbox_id"
                 " WHERE m.name = '%s'" % box)
    return tuple(int(x) for x in rows[0]) if rows else None


def test_select_from_index_snapshot(world, alice):
    """The first SELECT of a folder of 32 messages or more leaves a
    snapshot of its index in the database (sqlbox_sync_fill); a later
    session fills from it, less what was expunged since, and pulls the
    rows changed since.  Whatever other sessions changed, expunged or
    appended meanwhile, and when the snapshot is too stale, of another
    UIDVALIDITY or unreadable (both then replaced), SELECT shows the
    folder exactly as the session that made the changes saw it."""
    a = imap_login(world.dc, alice)
    ok(a.create("snap"))
    for i in range(80):
        ok(a.append("snap", r"(\Seen)" if i % 3 else None, None,
                    message("snap-%d" % i)))
    a.logout()
    b = imap_login(world.dc, alice)
    codes, rows = select_state(b, "snap")
    assert codes["EXISTS"] == 80
    snap = snapshot_of(world, alice, "snap")
    assert snap is not None and snap[:3] == (
        codes["UIDVALIDITY"], codes["HIGHESTMODSEQ"], 80)
    # a few rows changed (an eighth of the folder at most), two
    # expunged, one appended by another session
    ok(b.uid("STORE", "2", "+FLAGS", r"(\Flagged)"))
    ok(b.uid("STORE", "3", "-FLAGS", r"(\Seen)"))
    ok(b.uid("STORE", "10,11", "+FLAGS", r"(\Deleted)"))
    ok(b.expunge())
    c = imap_login(world.dc, alice)
    ok(c.append("snap", r"(\Answered)", None, message("snap-late")))
    c.logout()
    after = select_state(b, "snap")
    assert after[0]["EXISTS"] == 79 and after[0]["HIGHESTMODSEQ"] > snap[1]
    assert [r[0] for r in after[1]][8:10] == [9, 12]
    assert [r[1] for r in after[1][1:3]] == [
        [b"\\Flagged", b"\\Seen"], []]
    assert after[1][-1][1] == [b"\\Answered"]
    for _ in range(2):
        d = imap_login(world.dc, alice)
        assert select_state(d, "snap") == after
        d.logout()
    # taken from the snapshot, not from the rows: it was not replaced
    assert snapshot_of(world, alice, "snap") == snap
    # keywords set since: the folder is scanned, the snapshot replaced
    # (sqlbox_snapshot_has_keywords); then, nothing changed since, a
    # snapshot with keywords in the folder is used
    ok(b.uid("STORE", "4", "+FLAGS", "(work urgent)"))
    ok(b.uid("STORE", "5", "+FLAGS", r"($label1)"))
    after = select_state(b, "snap")
    assert [r[1] for r in after[1][3:5]] == [
        [b"urgent", b"work"], [b"$label1", b"\\Seen"]]
    for _ in range(2):
        d = imap_login(world.dc, alice)
        assert select_state(d, "snap") == after
        d.logout()
    snap = snapshot_of(world, alice, "snap")
    assert snap[:3] == (after[0]["UIDVALIDITY"], after[0]["HIGHESTMODSEQ"],
                        79)
    ok(b.uid("STORE", "4", "-FLAGS", "(work)"))
    after = select_state(b, "snap")
    d = imap_login(world.dc, alice)
    assert select_state(d, "snap") == after
    d.logout()
    assert snapshot_of(world, alice, "snap")[1] == after[0]["HIGHESTMODSEQ"]
    snap = snapshot_of(world, alice, "snap")
    d = imap_login(world.dc, alice)
    assert select_state(d, "snap") == after
    d.logout()
    assert snapshot_of(world, alice, "snap") == snap
    # every row changed: the next fill reads the rows, replaces it
    ok(b.uid("STORE", "1:*", "+FLAGS", r"(\Answered)"))
    after = select_state(b, "snap")
    d = imap_login(world.dc, alice)
    assert select_state(d, "snap") == after
    d.logout()
    snap = snapshot_of(world, alice, "snap")
    assert snap[:3] == (after[0]["UIDVALIDITY"], after[0]["HIGHESTMODSEQ"],
                        79)
    # one of another UIDVALIDITY, one that doesn't decode: not used
    for change in ("uidvalidity = uidvalidity + 1", "data = x'01ff'"):
        dbsql(world, alice, "UPDATE index_snapshot SET " + change +
              " WHERE mailbox_id = (SELECT id FROM mailbox"
              " WHERE name = 'snap')", "exec")
        assert snapshot_of(world, alice, "snap") != snap
        d = imap_login(world.dc, alice)
        assert select_state(d, "snap") == after
        d.logout()
        assert snapshot_of(world, alice, "snap") == snap
    # a deleted folder's snapshot goes with it (ids are given out again)
    box_id = dbsql(world, alice, "SELECT id FROM mailbox WHERE name = 'snap'")
    ok(b.select("INBOX"))
    ok(b.delete("snap"))
    b.logout()
    assert dbsql(world, alice, "SELECT count(*) FROM index_snapshot"
                 " WHERE mailbox_id = %s" % box_id[0][0]) == [["0"]]


def test_two_sessions_see_each_other(world, alice):
    a = imap_login(world.dc, alice)
    b = imap_login(world.dc, alice)
    count = select_count(a)
    assert select_count(b) == count
    ok(b.append("INBOX", None, None, message("from-b")))
    ok(a.noop())
    assert a.untagged_responses.get("EXISTS", [b"0"])[-1] == str(count + 1).encode()
    uid = search(a, "SUBJECT", "from-b")[-1].decode()
    ok(a.uid("STORE", uid, "+FLAGS", r"(\Draft)"))
    ok(b.noop())
    assert b"\\Draft" in ok(b.uid("FETCH", uid, "(FLAGS)"))[0]
    ok(b.uid("STORE", uid, "+FLAGS", r"(\Deleted)"))
    ok(b.expunge())
    ok(a.noop())
    assert search(a, "SUBJECT", "from-b") == []
    a.logout()
    b.logout()


def test_pop3(world, alice):
    imap = imap_login(world.dc, alice)
    select_count(imap)
    ok(imap.append("INBOX", None, None, message("pop3-one", body="first")))
    imap.logout()

    def session():
        pop = poplib.POP3("127.0.0.1", world.dc.pop3_port, timeout=60)
        pop.user(USER)
        pop.pass_(alice)
        return pop
    pop = session()
    count, size = pop.stat()
    assert count > 0 and size > 0
    uidl = pop.uidl()[1]
    assert len(pop.list()[1]) == count
    lines = pop.retr(count)[1]
    assert any(b"pop3-one" in line for line in lines)
    top = pop.top(count, 0)[1]
    assert any(b"Subject: pop3-one" == line for line in top)
    assert b"first" not in top
    pop.quit()
    pop = session()
    assert pop.uidl()[1] == uidl
    pop.dele(count)
    pop.quit()
    pop = session()
    assert pop.stat()[0] == count - 1
    assert pop.uidl()[1] == uidl[:-1]
    pop.quit()


def test_lmtp_spool_imported_once(world, alice):
    dc = world.dc
    spool = os.path.join(dc.home("alice"), "mail", "spool")
    marker = "SBXLMTP" + secrets.token_hex(6)
    imap = imap_login(dc, alice)
    before = select_count(imap)
    imap.logout()
    code, msg = lmtp_deliver(dc, USER, message(marker, body=marker))
    assert code == 250, msg
    with open(spool, "rb") as f:
        sealed = f.read()
    assert len(sealed) > 0 and marker.encode() not in sealed
    for _ in range(2):
        imap = imap_login(dc, alice)
        assert select_count(imap) == before + 1
        assert len(search(imap, "SUBJECT", marker)) == 1
        imap.logout()
    assert os.path.getsize(spool) == 0


def test_lmtp_reaches_an_open_session(world, alice):
    imap = imap_login(world.dc, alice)
    before = select_count(imap)
    marker = "SBXLIVE" + secrets.token_hex(4)
    assert lmtp_deliver(world.dc, USER, message(marker))[0] == 250
    ok(imap.noop())
    assert len(search(imap, "SUBJECT", marker)) == 1
    assert select_count(imap) == before + 1
    imap.logout()


def wait_unused(path):
    """Until no process holds path open: an imap process answers LOGOUT
    before it has closed (and checkpointed) its database."""
    def unused():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                fds = os.listdir("/proc/%s/fd" % pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == path:
                        return False
                except OSError:
                    continue
        return True
    wait_for(unused, 120, path + " closed by every process")


def test_locked_mailbox(world, alice):
    dc = world.dc
    frank = dc.generate_password("frank@ubuntu.com")
    imap = imap_login(dc, frank, "frank@ubuntu.com")
    select_count(imap)
    imap.logout()
    # doveadm has no password: a clear error, nothing created.
    res = dc.doveadm("fetch", "-u", USER, "text", "mailbox", "INBOX", "all",
                     check=False)
    assert res.returncode != 0
    assert "locked" in (res.stdout + res.stderr).lower()
    # frank's database replaced by alice's: his key does not open it.
    fdir = os.path.join(dc.home("frank"), "mail")
    wait_unused(os.path.realpath(os.path.join(fdir, "sqlbox.db")))
    for name in os.listdir(fdir):
        os.unlink(os.path.join(fdir, name))
    # alice's database once her last session has closed it.
    alice_db = os.path.join(dc.home("alice"), "mail", "sqlbox.db")
    wait_unused(os.path.realpath(alice_db))
    assert os.path.getsize(alice_db) > 0
    shutil.copy(alice_db, fdir)
    shutil.chown(os.path.join(fdir, "sqlbox.db"), "nobody", "nogroup")
    with open(os.path.join(fdir, "sqlbox.db"), "rb") as f:
        foreign = f.read()
    imap = imap_login(dc, frank, "frank@ubuntu.com")
    typ, data = imap.select("INBOX")
    assert typ == "NO" and b"UNAVAILABLE" in data[0], data
    assert b"locked" in data[0].lower()
    imap.logout()
    with open(os.path.join(fdir, "sqlbox.db"), "rb") as f:
        assert f.read() == foreign
    # the log process writes it after the reply: wait for the line
    wait_for(lambda: "Mailbox locked" in dc.log_text(), 60,
             "the locked mailbox's log line")


def test_nothing_readable_on_disk(world, alice):
    dc = world.dc
    tok = secrets.token_hex(5)
    markers = {k: "SBX%s%s" % (k, tok) for k in
               ("SUBJ", "BODY", "FOLDER", "KW", "SPOOL")}
    imap = imap_login(dc, alice)
    ok(imap.create(markers["FOLDER"]))
    ok(imap.append(markers["FOLDER"], None, None,
                   message(markers["SUBJ"], body=markers["BODY"])))
    select_count(imap, markers["FOLDER"])
    ok(imap.uid("STORE", "1", "+FLAGS", "(%s)" % markers["KW"]))
    ok(imap.noop())
    imap.logout()
    assert lmtp_deliver(dc, USER, message(markers["SPOOL"],
                                          body=markers["SPOOL"]))[0] == 250
    home = dc.home("alice")
    seen = []
    for top in (home, os.path.join(world.wd.path, "state"), dc.run_dir):
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                for mk in markers.values():
                    assert mk not in name, os.path.join(root, name)
                assert not name.startswith("dovecot.index"), name
            for name in files:
                path = os.path.join(root, name)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                with open(path, "rb") as f:
                    data = f.read()
                seen.append(path)
                for mk in markers.values():
                    assert mk.encode() not in data, (mk, path)
    under_home = sorted(os.path.relpath(p, home) for p in seen
                        if p.startswith(home + "/"))
    assert set(under_home) <= {"sqlbox.keys", "sqlbox.keys.lock",
                               "mail/sqlbox.db",
                               "mail/sqlbox.db-wal", "mail/sqlbox.db-shm",
                               "mail/spool", "mail/fts-usage"}, under_home
    assert "mail/sqlbox.db" in under_home
    # the full-text index's size for doveadm (written as the session
    # ends): two numbers, nothing of the mail
    usage = os.path.join(home, "mail", "fts-usage")
    if os.path.exists(usage):
        with open(usage) as f:
            assert re.fullmatch(r"\d+ \d+\n", f.read())
    # the keyfile's lock (issue 12) is only ever flocked, never written
    lock = os.path.join(home, "sqlbox.keys.lock")
    assert not os.path.exists(lock) or os.path.getsize(lock) == 0


def test_db_opens_with_the_master_key(world, alice):
    dc = world.dc
    home = dc.home("alice")
    imap = imap_login(dc, alice)
    select_count(imap)
    ok(imap.append("INBOX", None, None, message("dbtool-check")))
    imap.logout()
    db = os.path.join(home, "mail", "sqlbox.db")
    keyfile = os.path.join(home, "sqlbox.keys")
    res = subprocess.run([DBTOOL, keyfile, db, "masterkey"], input=alice,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert re.fullmatch(r"raw:[0-9a-f]{64}\n", res.stdout)
    res = subprocess.run(
        [DBTOOL, keyfile, db, "sql",
         "SELECT count(*) FROM mail m JOIN mailbox b ON b.id = m.mailbox_id"
         " WHERE b.name = 'INBOX'; PRAGMA integrity_check"],
        input=alice, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    count, integrity = res.stdout.split()
    assert int(count) > 0 and integrity == "ok"
    res = subprocess.run([DBTOOL, keyfile, db, "masterkey"],
                         input="not-the-password", capture_output=True,
                         text=True, timeout=60)
    assert res.returncode != 0


def test_session_files_kept_and_db_stands_alone(world, alice, tmp_path):
    """Issue 15: the -wal and -shm stay between sessions
    (SQLITE_FCNTL_PERSIST_WAL): the last close checkpoints and truncates
    the -wal to 0 bytes instead of unlinking both files, so a session
    allocates no inodes.  Everything is in the database file then: a copy
    of it alone opens, with every message."""
    home = world.dc.home("alice")
    db = os.path.join(home, "mail", "sqlbox.db")
    keyfile = os.path.join(home, "sqlbox.keys")
    stats = []
    for i in range(2):
        imap = imap_login(world.dc, alice)
        select_count(imap)
        ok(imap.append("INBOX", None, None, message("kept-%d" % i)))
        count = select_count(imap)
        imap.logout()
        wait_unused(os.path.realpath(db))
        stats.append([os.stat(db + suffix) for suffix in ("-wal", "-shm")])
        assert stats[-1][0].st_size == 0      # checkpointed, truncated
    for before, after in zip(stats[0], stats[1]):
        assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    copy = str(tmp_path / "copy.db")
    shutil.copyfile(db, copy)
    res = subprocess.run(
        [DBTOOL, keyfile, copy, "sql",
         "SELECT count(*) FROM mail m JOIN mailbox b ON b.id = m.mailbox_id"
         " WHERE b.name = 'INBOX'; PRAGMA integrity_check"],
        input=alice, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(count), "ok"]


def test_idle_sees_other_session_and_lmtp(world, alice):
    a = imap_login(world.dc, alice)
    count = select_count(a)
    tag = a._new_tag()
    a.send(tag + b" IDLE\r\n")
    assert a.readline().startswith(b"+")
    a.sock.settimeout(10)   # well under mailbox_idle_check_interval (30 s)
    b = imap_login(world.dc, alice)
    ok(b.append("INBOX", None, None, message("idle-imap")))
    b.logout()
    line = a.readline()
    while line and b"EXISTS" not in line:
        line = a.readline()
    assert line.strip() == b"* %d EXISTS" % (count + 1)
    assert lmtp_deliver(world.dc, USER, message("idle-lmtp"))[0] == 250
    line = a.readline()
    while line and b"EXISTS" not in line:
        line = a.readline()
    assert line.strip() == b"* %d EXISTS" % (count + 2)
    a.send(b"DONE\r\n")
    line = a.readline()
    while line and not line.startswith(tag):
        line = a.readline()
    assert b" OK " in line
    a.sock.settimeout(60)
    a.logout()


def test_index_snapshot_and_every_other_writer(world, alice):
    """After a folder's snapshot: LMTP mail that the SELECT itself imports
    from the spool after its fill, COPY and MOVE in from another folder
    and MOVE out by another session, a flag added.  A session filled from
    the snapshot must show exactly what a session filled from the rows
    shows (the snapshot deleted first)."""
    dc = world.dc
    a = imap_login(dc, alice)
    ok(a.create("snap-src"))
    ok(a.create("snap-dst"))
    for i in range(3):
        ok(a.append("snap-src", r"(\Flagged)", None,
                    message("snap-src-%d" % i)))
    for i in range(40):
        ok(a.append("INBOX", None, None, message("snap-inbox-%d" % i)))
    # 80: the changes below stay under an eighth of the folder
    for i in range(80):
        ok(a.append("snap-dst", r"(\Seen)" if i % 2 else None, None,
                    message("snap-dst-%d" % i)))
    codes = select_state(a, "INBOX")[0]
    assert snapshot_of(world, alice, "INBOX") is not None
    dst_codes, rows = select_state(a, "snap-dst")
    snap = snapshot_of(world, alice, "snap-dst")
    assert snap is not None and snap[1] == dst_codes["HIGHESTMODSEQ"]
    a.logout()
    # sealed into the spool (when no session of an earlier test still
    # holds the key): the SELECT fills INBOX from its snapshot, then
    # imports; the same as a fill from the rows
    assert lmtp_deliver(dc, USER, message("snap-lmtp"))[0] == 250
    b = imap_login(dc, alice)
    after_lmtp = select_state(b, "INBOX")
    b.logout()
    assert after_lmtp[0]["EXISTS"] == codes["EXISTS"] + 1
    dbsql(world, alice, "DELETE FROM index_snapshot WHERE mailbox_id ="
          " (SELECT id FROM mailbox WHERE name = 'INBOX')", "exec")
    b = imap_login(dc, alice)
    assert select_state(b, "INBOX") == after_lmtp
    b.logout()

    c = imap_login(dc, alice)
    ok(c.select("snap-src"))
    ok(c.uid("COPY", "1", "snap-dst"))
    ok(c.uid("MOVE", "2", "snap-dst"))
    ok(c.select("snap-dst"))
    ok(c.uid("MOVE", str(rows[0][0]), "snap-src"))
    ok(c.uid("STORE", str(rows[2][0]), "+FLAGS", r"(\Seen)"))
    ok(c.uid("STORE", str(rows[3][0]), "-FLAGS", r"(\Seen)"))
    c.logout()

    d = imap_login(dc, alice)
    from_snapshot = select_state(d, "snap-dst")
    d.logout()
    assert snapshot_of(world, alice, "snap-dst") == snap
    by_uid = {r[0]: r for r in from_snapshot[1]}
    assert rows[0][0] not in by_uid
    assert by_uid[rows[2][0]][1] == [b"\\Seen"]
    assert by_uid[rows[3][0]][1] == []
    assert [r[1] for r in from_snapshot[1][-2:]] == [[b"\\Flagged"]] * 2
    assert from_snapshot[0]["EXISTS"] == 81

    dbsql(world, alice, "DELETE FROM index_snapshot", "exec")
    e = imap_login(dc, alice)
    assert select_state(e, "snap-dst") == from_snapshot
    e.logout()
    assert snapshot_of(world, alice, "snap-dst")[1] == \
        from_snapshot[0]["HIGHESTMODSEQ"]


def test_index_snapshot_of_a_folder_with_keywords(world, alice):
    """A folder whose old messages have keywords, with a flag changed
    since its snapshot: Dovecot's log would give the keyword records of
    the first sync after a fill from the snapshot modseqs above those of
    a fill from the rows (the pulled change comes first), so such a
    folder is scanned and its snapshot replaced.  Both sessions show the
    same MODSEQ for every message."""
    dc = world.dc
    a = imap_login(dc, alice)
    ok(a.create("snap-kw"))
    for i in range(80):
        ok(a.append("snap-kw", "($label%d)" % (i % 3) if i < 6 else None,
                    None, message("snap-kw-%d" % i)))
    codes, rows = select_state(a, "snap-kw")
    snap = snapshot_of(world, alice, "snap-kw")
    assert snap[1] == codes["HIGHESTMODSEQ"]
    ok(a.uid("STORE", str(rows[40][0]), "+FLAGS", r"(\Flagged)"))
    a.logout()
    d = imap_login(dc, alice)
    filled = select_state(d, "snap-kw")
    d.logout()
    assert snapshot_of(world, alice, "snap-kw")[1] == \
        filled[0]["HIGHESTMODSEQ"] > snap[1]
    assert [r[2] for r in filled[1][:6]] == [r[2] for r in rows[:6]]
    dbsql(world, alice, "DELETE FROM index_snapshot", "exec")
    e = imap_login(dc, alice)
    assert select_state(e, "snap-kw") == filled
    e.logout()


def fetch_modseqs(imap, box):
    """Every message's UID, flags (without \\Recent) and modseq in the
    selected box, and its HIGHESTMODSEQ, without selecting it again."""
    rows = message_rows(imap)
    st = ok(imap.status(box, "(HIGHESTMODSEQ)"))[0]
    return int(re.search(rb"HIGHESTMODSEQ (\d+)", st).group(1)), rows


@pytest.mark.parametrize("count", [12, 40])
def test_modseqs_of_messages_with_keywords(world, alice, count):
    """A session that has the folder selected while messages with
    several keyword names arrive (saved by this process or pulled) and
    flags change: Dovecot's log gives each keyword record the next value
    of the index's modseq counter and a message at least that, above
    what SQLite held for it.  New sessions (filled from the rows; with
    40 messages the second fills from the snapshot the first left) must
    show every message with the MODSEQ the writing session showed, none
    above HIGHESTMODSEQ, which never goes back, and CHANGEDSINCE must
    list exactly the messages changed since."""
    dc = world.dc
    box = "kw-modseq-%d" % count
    names = ["$k%d" % i for i in range(10)]
    a = imap_login(dc, alice)
    ok(a.create(box))
    ok(a.select(box))
    o = imap_login(dc, alice)
    for i in range(count):
        # most names on the first messages (the lowest modseqs), saved
        # by this session or by another one (pulled at the NOOP)
        kws = names[i % 4:][:8 - i] if i < 8 else \
            [names[i % 10]] if i % 4 == 0 else []
        ok((o if i % 3 == 1 else a).append(
            box, "(%s)" % " ".join(kws) if kws else None, None,
            message("%s-%d" % (box, i))))
        if i % 5 == 4:
            ok(a.noop())
    o.logout()
    ok(a.noop())
    before, rows = fetch_modseqs(a, box)
    assert len(rows) == count
    changed = {rows[2][0], rows[5][0], rows[7][0]}
    ok(a.uid("STORE", str(rows[2][0]), "+FLAGS", r"(\Flagged)"))
    ok(a.uid("STORE", str(rows[5][0]), "+FLAGS", "($k9 $k1)"))
    ok(a.uid("STORE", str(rows[7][0]), "-FLAGS", "($k3)"))
    highest, written = fetch_modseqs(a, box)
    a.logout()
    assert highest > before
    assert all(r[2] <= highest for r in written)
    for r, w in zip(rows, written):
        assert (w == r) == (r[0] not in changed)
    for _ in range(2):
        b = imap_login(dc, alice)
        codes, state = select_state(b, box)
        assert codes["HIGHESTMODSEQ"] == highest
        assert state == written
        lines = ok(b.fetch("1:*", "(UID FLAGS) (CHANGEDSINCE %d)" % before))
        assert {int(re.search(rb"UID (\d+)", ln).group(1))
                for ln in lines if ln} == changed
        b.logout()


class RawImap:
    """A client that sends a command and reads its answer later, with a
    small receive buffer: the server blocks in the middle of a large
    literal until the client reads on."""

    def __init__(self, dc, password, rcvbuf=64 * 1024):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # before connect: the TCP window stays this small
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(120)
        self.sock.connect(("127.0.0.1", dc.imap_port))
        self.buf = b""
        self.line()
        self.command("L", 'LOGIN "%s" "%s"' % (USER, password))

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            assert data, "connection closed: %r" % self.buf[-300:]
            self.buf += data
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln + b"\r\n"

    def read(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(1 << 20)
            assert data, "connection closed in a literal"
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, tag, cmd):
        self.sock.sendall(tag.encode() + b" " + cmd.encode() + b"\r\n")

    def response(self):
        """One response: its lines with literals as (line, bytes)."""
        parts = []
        ln = self.line()
        while True:
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            if not m:
                parts.append(ln)
                return parts
            parts.append((ln, self.read(int(m.group(1)))))
            ln = self.line()

    def until_tagged(self, tag):
        untagged = []
        while True:
            resp = self.response()
            if isinstance(resp[0], bytes) and \
                    resp[0].startswith(tag.encode() + b" "):
                return untagged, resp[0]
            untagged.append(resp)

    def command(self, tag, cmd):
        self.send(tag, cmd)
        untagged, tagged = self.until_tagged(tag)
        assert tagged.startswith(tag.encode() + b" OK"), tagged
        return untagged, tagged

    def close(self):
        self.sock.close()


def window_expunge_check(dc, password, box):
    """Issue 15: session A's FETCH of BODY[] 1:12 reads the rows of
    mails 2-9 in one window (sqlbox_mail_lookup()) and then streams mail
    2, larger than every socket buffer between the server and a client
    that stops reading: the server waits there.  Session B expunges mails
    4-6 (their bodies go) and logs out; then A reads on.  4-6 must come
    as expunged mails do (no data, tagged OK [EXPUNGEISSUED]), never as
    a server error; the others with their bytes; a SEARCH BODY right
    after (no NOOP) matches only the mails still there; the log has no
    error.  Returns the FETCH's tagged reply."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        wmem_max = int(f.read().split()[2])
    big = 2 * wmem_max + 4 * 1024 * 1024
    msgs = [message("%s-%d" % (box, i), "window word body %d" % i)
            for i in range(1, 21)]
    msgs[1] = message("%s-2" % box, "window word big\r\n" +
                      ("x" * 76 + "\r\n") * (big // 78))
    b = imap_login(dc, password)
    ok(b.create(box))
    for m in msgs:
        ok(b.append(box, None, None, m))
    ok(b.select(box))
    uids = [int(u) for u in search(b, "ALL")]
    assert len(uids) == 20
    gone = uids[3:6]
    log_start = len(dc.log_text())

    a = RawImap(dc, password)
    a.command("S", "SELECT " + box)
    a.send("F", "UID FETCH 1:%d (BODY.PEEK[])" % uids[11])
    # mail 1 whole, then the start of mail 2's literal: the window was
    # read when mail 2's row was looked up
    first = a.response()
    assert first[0][1] == msgs[0], first
    ln = a.line()
    assert ln.startswith(b"* 2 FETCH") and ln.endswith(b"}\r\n"), ln
    size = int(re.search(rb"\{(\d+)\}\r\n$", ln).group(1))
    assert size == len(msgs[1])

    ok(b.uid("STORE", ",".join(map(str, gone)), "+FLAGS", r"(\Deleted)"))
    ok(b.expunge())
    b.logout()

    assert a.read(size) == msgs[1]
    assert a.line() == b")\r\n"
    untagged, tagged = a.until_tagged("F")
    assert tagged.startswith(b"F OK"), tagged
    got = {}
    for resp in untagged:
        head = resp[0][0] if isinstance(resp[0], tuple) else resp[0]
        if b" FETCH (UID " not in head:
            continue    # the sync after the command: flags, EXPUNGEs
        uid = int(re.search(rb"UID (\d+)", head).group(1))
        got[uid] = resp[0][1] if isinstance(resp[0], tuple) else head
    for i, uid in enumerate(uids[2:12], 2):
        if uid in gone:
            assert uid not in got or b"BODY[] NIL" in got[uid] or \
                got[uid] == msgs[i], got[uid]
        else:
            assert got[uid] == msgs[i], uid

    untagged, stagged = a.command(
        "T", "UID SEARCH BODY window UID 1:%d" % uids[11])
    found = [int(u) for resp in untagged if resp[0].startswith(b"* SEARCH")
             for u in resp[0].split()[2:]]
    assert found == [u for u in uids[:12] if u not in gone]
    a.send("Z", "LOGOUT")
    a.until_tagged("Z")
    a.close()
    log = dc.log_text()[log_start:]
    for bad in ("Error:", "Panic:", "Fatal:", "Internal error"):
        assert bad not in log, [ln for ln in log.splitlines()
                                if bad in ln][:5]
    return tagged


def test_window_of_rows_and_another_sessions_expunge(world, alice):
    tagged = window_expunge_check(world.dc, alice, "window-expunge")
    # as with every mail looked up alone: the mails are expunged ones
    assert tagged.startswith(b"F OK [EXPUNGEISSUED]"), tagged


@pytest.mark.parametrize("replaced", [False, True])
def test_body_expunged_while_it_is_sent(world, alice, replaced):
    """Issue 15: another session expunges the mail whose body is being
    sent (the rest of its chunks go with it).  sqlbox can't finish the
    literal; it must end the connection as Dovecot does for a mail
    expunged under a reader ("Mail expunged while it was being
    FETCHed"), not log a damaged body as an error.  replaced: that
    session then saves a mail as large, whose body must not take the
    expunged body's id (the largest): the sending session would go on
    with the new mail's chunks under the old UID."""
    dc = world.dc
    box = "expunged-while-sent" + ("-replaced" if replaced else "")
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        wmem_max = int(f.read().split()[2])
    big = message(box, "sent word\r\n" + ("y" * 76 + "\r\n") *
                  ((2 * wmem_max + 4 * 1024 * 1024) // 78))
    b = imap_login(dc, alice)
    ok(b.create(box))
    ok(b.append(box, None, None, big))
    ok(b.select(box))
    log_start = len(dc.log_text())

    a = RawImap(dc, alice)
    a.command("S", "SELECT " + box)
    a.send("F", "FETCH 1 (BODY.PEEK[])")
    ln = a.line()
    assert ln.startswith(b"* 1 FETCH") and ln.endswith(b"}\r\n"), ln
    ok(b.store("1", "+FLAGS", r"(\Deleted)"))
    ok(b.expunge())
    if replaced:
        ok(b.append(box, None, None, big.replace(b"y" * 76, b"z" * 76)))
    b.logout()
    got = b""
    while True:
        data = a.sock.recv(1 << 20)
        if not data:
            break
        got += data
    a.close()
    assert b"z" * 76 not in a.buf + got
    assert len(a.buf + got) < len(big)
    gone = re.compile(r"Disconnected: (?!Logged out)")
    wait_for(lambda: gone.search(dc.log_text()[log_start:]), 60,
             "the FETCHing session's end")
    log = dc.log_text()[log_start:]
    assert "Disconnected: Mail expunged while it was being FETCHed" in log
    for bad in ("Error:", "Panic:", "Fatal:"):
        assert bad not in log, [ln for ln in log.splitlines()
                                if bad in ln][:5]


def row_modseqs(world, password, box):
    """{UID: modseq} of box's rows in SQLite, and its highestmodseq."""
    rows = dbsql(world, password,
                 "SELECT m.uid, m.modseq FROM mail m JOIN mailbox b"
                 " ON b.id = m.mailbox_id WHERE b.name = '%s'" % box)
    high = dbsql(world, password, "SELECT highestmodseq FROM mailbox"
                 " WHERE name = '%s'" % box)
    return {int(u): int(m) for u, m in rows}, int(high[0][0])


def test_modseqs_of_keywords_pulled_from_several_sessions(world, alice):
    """Issue 15 (b): a session that has the folder selected while two
    other sessions save messages with several keyword names and STORE
    keywords on older ones pulls it all in one sync.  Its MODSEQs must
    be the rows' (each keyword record of that sync must not raise a
    message above its row), the same as a new session's (filled from
    the rows, keywords applied by its first sync: issue 15 (a)), none
    above HIGHESTMODSEQ, and none lower than what it showed before."""
    dc = world.dc
    box = "kw-pull-many"
    a = imap_login(dc, alice)
    ok(a.create(box))
    for i in range(6):
        ok(a.append(box, None, None, message("%s-%d" % (box, i))))
    _, seen = select_state(a, box)
    b = imap_login(dc, alice)
    c = imap_login(dc, alice)
    ok(b.select(box))
    ok(c.select(box))
    ok(b.append(box, "($b1 $b2 $b3)", None, message(box + "-b1")))
    ok(c.append(box, "($c1 $c2 $c3 $c4)", None, message(box + "-c1")))
    ok(b.uid("STORE", "1:2", "+FLAGS", "($s1 $s2 $s3)"))
    ok(c.uid("STORE", "3,5", "+FLAGS", "($t1 $t2)"))
    ok(b.append(box, "($b4 $c1 \\Flagged)", None, message(box + "-b2")))
    ok(c.uid("STORE", "2,4", "+FLAGS", "($u1 $u2 $u3 $u4)"))
    b.logout()
    c.logout()
    ok(a.noop())
    a.untagged_responses.clear()    # the NOOP's FETCH of changed flags
    highest, pulled = fetch_modseqs(a, box)
    rows, db_highest = row_modseqs(world, alice, box)
    d = imap_login(dc, alice)
    codes, filled = select_state(d, box)
    d.logout()
    a.logout()
    assert len(pulled) == 9
    before = {r[0]: r[2] for r in seen}
    assert all(r[2] >= before.get(r[0], 0) for r in pulled)
    assert {r[0]: r[2] for r in pulled} == rows
    assert filled == pulled
    assert codes["HIGHESTMODSEQ"] == highest == db_highest
    assert all(r[2] <= highest for r in pulled)
