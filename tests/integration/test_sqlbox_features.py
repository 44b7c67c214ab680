"""Issue 4, the rest of sqlbox: large messages streamed through SQLite,
doveadm launchpad backup, QRESYNC, special-use and METADATA kept in the
encrypted database, THREAD/SORT, RENAME INBOX.  A real Dovecot and real
clients, as in test_sqlbox.py.
"""

import imaplib
import json
import os
import random
import secrets
import smtplib
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import World
from harness import BUILD_DIR

DBTOOL = os.path.join(BUILD_DIR, "src/storage/sqlbox-dbtool")
USER = "alice@ubuntu.com"
BIG_BYTES = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def world():
    w = World(mail_location="sqlbox:~/mail",
              extra_conf="protocol imap {\n  imap_metadata = yes\n}\n")
    yield w
    w.close()


@pytest.fixture(scope="module")
def alice(world):
    return world.dc.generate_password(USER, label="laptop")


def imap_login(dc, password, user=USER):
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=120)
    imap.login(user, password)
    return imap


def ok(res):
    typ, data = res
    assert typ == "OK", data
    return data


def message(subject, body="hello", extra=b"",
            date=b"Mon, 02 Mar 2026 10:00:00 +0000"):
    return (b"From: Sender <sender@example.org>\r\n"
            b"To: Alice <alice@ubuntu.com>\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Date: " + date + b"\r\n"
            b"Message-ID: <" + subject.encode().replace(b" ", b".") +
            b"@example.org>\r\n" + extra + b"\r\n" + body.encode() + b"\r\n")


def dbtool_sql(dc, password, sql, user="alice"):
    home = dc.home(user)
    res = subprocess.run(
        [DBTOOL, os.path.join(home, "sqlbox.keys"),
         os.path.join(home, "mail", "sqlbox.db"), "sql", sql],
        input=password, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def parent_pid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    return 0


def imap_pids(dc):
    """The imap processes of this Dovecot (other tests may run others)."""
    pids = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % pid) as f:
                if f.read().strip() != "imap":
                    continue
            up = int(pid)
            for _ in range(4):
                up = parent_pid(up)
                if up == dc.proc.pid:
                    pids.add(int(pid))
                    break
        except OSError:
            pass
    return pids


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


def login_with_pid(dc, password):
    """An IMAP session and the pid of the imap process that serves it."""
    before = imap_pids(dc)
    imap = imap_login(dc, password)
    ok(imap.noop())
    new = imap_pids(dc) - before
    assert len(new) == 1, new
    return imap, new.pop()


def big_message(size):
    """size bytes of CRLF text, the same for every run (fixed seed)."""
    rnd = random.Random(4)
    head = message("big-message", body="")[:-2]
    line_len = 78
    lines = [head]
    left = size - len(head)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    block = bytes(rnd.choice(alphabet) for _ in range(1 << 16))
    pos = 0
    while left > 0:
        n = min(line_len, left - 2) if left > 2 else 0
        if pos + n > len(block):
            pos = 0
        lines.append(block[pos:pos + n] + b"\r\n" if left >= 2 else b"\r")
        pos += 7
        left -= n + 2
    data = b"".join(lines)
    return data[:size]


def test_large_message_streamed(world, alice):
    dc = world.dc
    msg = big_message(BIG_BYTES)
    assert len(msg) == BIG_BYTES and msg.endswith(b"\r\n")
    imap, pid = login_with_pid(dc, alice)
    ok(imap.select("INBOX"))
    base_kib = vm_hwm_kib(pid)
    data = ok(imap.append("INBOX", None, None, msg))
    uid = re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1).decode()
    append_kib = vm_hwm_kib(pid)
    res = ok(imap.uid("FETCH", uid, "(RFC822.SIZE BODY.PEEK[])"))
    fetch_kib = vm_hwm_kib(pid)
    assert b"RFC822.SIZE %d" % BIG_BYTES in res[0][0]
    assert res[0][1] == msg
    imap.logout()
    print("\nimap VmHWM: after login %d KiB, after 40 MiB APPEND %d KiB, "
          "after FETCH BODY[] %d KiB" % (base_kib, append_kib, fetch_kib))
    # Below the message's own size, let alone twice it: the message was
    # never whole in memory (login alone is about 10 MiB, SQLite's page
    # cache up to 1 MiB more).
    limit_kib = BIG_BYTES // 1024
    assert append_kib < limit_kib, (append_kib, limit_kib)
    assert fetch_kib < limit_kib, (fetch_kib, limit_kib)
    # And the page cache does not keep what passed through it: with the
    # 16 MiB cache of before, the APPEND grew the process by 27 MiB.
    grown_kib = max(append_kib, fetch_kib) - base_kib
    assert grown_kib < 16 * 1024, (grown_kib, base_kib)
    # Stored in chunks, nothing left pending.
    row, pending = dbtool_sql(
        dc, alice, "SELECT count(*), sum(length(data)) FROM chunk c JOIN"
        " mail m ON m.body_id = c.body_id WHERE m.uid = %s AND"
        " m.mailbox_id = (SELECT id FROM mailbox WHERE name = 'INBOX');"
        " SELECT count(*) FROM body_pending" % uid)
    count, size = row.split("|")
    assert int(count) == BIG_BYTES // (256 * 1024)
    assert int(size) == BIG_BYTES and int(pending) == 0


def test_aborted_large_append_leaves_nothing(world, alice):
    dc = world.dc
    imap, pid = login_with_pid(dc, alice)
    ok(imap.select("INBOX"))
    before = int(ok(imap.select("INBOX"))[0])
    total = 3 * 1024 * 1024
    tag = imap._new_tag()
    imap.send(tag + b" APPEND INBOX {%d}\r\n" % total)
    assert imap.readline().startswith(b"+")
    head = message("aborted", body="")
    imap.send(head + b"x" * (total // 2))
    time.sleep(0.5)   # the imap process has written chunks by now
    imap.sock.shutdown(socket.SHUT_RDWR)
    imap.sock.close()
    deadline = time.monotonic() + 20
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % pid)
    assert dbtool_sql(dc, alice, "SELECT count(*) FROM body_pending;"
                      " SELECT count(*) FROM body WHERE NOT EXISTS"
                      " (SELECT 1 FROM mail WHERE body_id = body.id);"
                      " SELECT count(*) FROM chunk WHERE NOT EXISTS"
                      " (SELECT 1 FROM mail WHERE body_id = chunk.body_id)"
                      ) == ["0", "0", "0"]
    imap = imap_login(dc, alice)
    assert int(ok(imap.select("INBOX"))[0]) == before
    imap.logout()


def count_mail(dc, password, db=None, keyfile=None):
    home = dc.home("alice")
    res = subprocess.run(
        [DBTOOL, keyfile or os.path.join(home, "sqlbox.keys"),
         db or os.path.join(home, "mail", "sqlbox.db"), "sql",
         "SELECT count(*) FROM mail; PRAGMA integrity_check"],
        input=password, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    count, integrity = res.stdout.split()
    return int(count), integrity


def test_backup_while_writing(world, alice):
    dc = world.dc
    dest = os.path.join(world.wd.path, "alice-backup.db")
    writer = imap_login(dc, alice)
    stop = threading.Event()
    appended = []

    def write():
        n = 0
        while not stop.is_set() and n < 500:
            ok(writer.append("INBOX", None, None,
                             message("backup-%d" % n, body="x" * 5000)))
            appended.append(n)
            n += 1
    t = threading.Thread(target=write)
    t.start()
    try:
        deadline = time.monotonic() + 20
        while len(appended) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        before, _ = count_mail(dc, alice)
        res = dc.doveadm("-f", "json", "launchpad", "backup", USER, dest,
                         input=alice + "\n")
        during = len(appended)
    finally:
        stop.set()
        t.join(60)
    writer.logout()
    assert during > 20   # the session kept writing while the copy ran
    out = json.loads(res.stdout)[0]
    assert out["backup"] == dest and out["keyfile"] == dest + ".keys"
    assert os.stat(dest).st_mode & 0o777 == 0o600
    assert not os.path.exists(dest + "-wal")
    # Opens with the user's app password, through the copied keyfile.
    count, integrity = count_mail(dc, alice, dest, dest + ".keys")
    assert integrity == "ok" and before <= count == int(out["messages"])
    after, integrity = count_mail(dc, alice)
    assert integrity == "ok" and count <= after
    # The copy is encrypted: no subject in it.
    with open(dest, "rb") as f:
        assert b"backup-1" not in f.read()
    # Never over an existing file; a wrong password opens nothing.
    res = dc.doveadm("launchpad", "backup", USER, dest, input=alice + "\n",
                     check=False)
    assert res.returncode != 0 and "exists" in res.stderr
    other = os.path.join(world.wd.path, "other-backup.db")
    res = dc.doveadm("launchpad", "backup", USER, other,
                     input="wrong-password\n", check=False)
    assert res.returncode != 0 and not os.path.exists(other)
    assert "does not open" in res.stderr


def raw(imap, command):
    """Sends one command; returns its untagged lines and the tagged one."""
    tag = imap._new_tag()
    imap.send(tag + b" " + command.encode() + b"\r\n")
    lines = []
    while True:
        line = imap.readline()
        assert line, "connection closed"
        lines.append(line.rstrip(b"\r\n"))
        if line.startswith(tag + b" "):
            assert line.split()[1] == b"OK", lines
            return lines


def code(lines, name):
    m = re.search(rb"\[" + name.encode() + rb" (\d+)\]", b"\n".join(lines))
    assert m, lines
    return int(m.group(1))


def uid_set(text):
    uids = set()
    for part in text.split(b","):
        lo, _, hi = part.partition(b":")
        uids.update(range(int(lo), int(hi or lo) + 1))
    return uids


def vanished(lines):
    found = [ln for ln in lines if ln.startswith(b"* VANISHED (EARLIER) ")]
    assert len(found) <= 1, lines
    return uid_set(found[0].split()[-1]) if found else set()


def snapshot_modseq(dc, password, box):
    """The modseq of box's index snapshot (sqlbox-sync.c), or None."""
    rows = dbtool_sql(dc, password, "SELECT s.modseq FROM index_snapshot s"
                      " JOIN mailbox m ON m.id = s.mailbox_id"
                      " WHERE m.name = '%s'" % box)
    return int(rows[0]) if rows else None


@pytest.mark.parametrize("count", [8, 40])
def test_qresync(world, alice, count):
    """With 40 messages the first SELECT leaves an index snapshot and the
    session that resyncs fills its index from it: what was expunged and
    changed since the snapshot must still show."""
    dc = world.dc
    box = "QR%d" % count
    a = imap_login(dc, alice)
    ok(a.create(box))
    for i in range(count):
        ok(a.append(box, None, None, message("qr-%d" % i)))
    raw(a, "ENABLE QRESYNC")
    raw(a, "SELECT " + box)
    # Expunged before the client's state: may be listed, never wrong.
    raw(a, "UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    raw(a, "EXPUNGE")
    lines = raw(a, "SELECT " + box)
    uidvalidity, known = code(lines, "UIDVALIDITY"), \
        code(lines, "HIGHESTMODSEQ")
    # This session expunges 3 (answered with VANISHED, not EXPUNGE) and
    # flags 5; another session expunges 6.
    raw(a, "UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    lines = raw(a, "UID EXPUNGE 3")
    assert b"* VANISHED 3" in lines and not any(
        b"EXPUNGE" in ln for ln in lines[:-1]), lines
    raw(a, "UID STORE 5 +FLAGS.SILENT (\\Flagged)")
    b = imap_login(dc, alice)
    ok(b.select(box))
    ok(b.uid("STORE", "6", "+FLAGS.SILENT", r"(\Deleted)"))
    ok(b.expunge())
    b.logout()
    lines = raw(a, "NOOP")
    assert b"* VANISHED 6" in lines, lines
    a_highest = code(raw(a, "SELECT " + box), "HIGHESTMODSEQ")
    a.logout()

    snap = snapshot_modseq(dc, alice, box)
    if count < 32:
        assert snap is None
    else:
        # taken before the client's state: c fills from it
        assert snap < known

    c = imap_login(dc, alice)
    raw(c, "ENABLE QRESYNC")
    lines = raw(c, "SELECT %s (QRESYNC (%d %d))" % (
        box, uidvalidity, known))
    assert snapshot_modseq(dc, alice, box) == snap
    assert code(lines, "UIDNEXT") == count + 1
    exists = [ln for ln in lines if ln.endswith(b" EXISTS")]
    assert exists == [b"* %d EXISTS" % (count - 3)], lines
    gone = vanished(lines)
    assert {3, 6} <= gone and not gone & {2, 4, 5, 7, 8}, lines
    assert gone <= {1, 3, 6}, lines
    changed = [ln for ln in lines if b" FETCH " in ln]
    assert len(changed) == 1 and b"UID 5 " in changed[0], lines
    assert b"\\Flagged" in changed[0]
    # HIGHESTMODSEQ never goes back across sessions.
    c_highest = code(lines, "HIGHESTMODSEQ")
    assert c_highest >= a_highest > known
    assert int(re.search(rb"MODSEQ \((\d+)\)", changed[0]).group(1)) > known
    lines = raw(c, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % known)
    assert {3, 6} <= vanished(lines) <= {1, 3, 6}, lines
    # A client that is up to date hears of nothing.
    lines = raw(c, "SELECT %s (QRESYNC (%d %d))" % (
        box, uidvalidity, c_highest))
    assert vanished(lines) == set() and not any(
        b" FETCH " in ln for ln in lines), lines
    # Another UIDVALIDITY: no VANISHED, the client must resync fully.
    lines = raw(c, "SELECT %s (QRESYNC (%d %d))" % (
        box, uidvalidity + 1, known))
    assert vanished(lines) == set(), lines
    c.logout()


def test_special_use_in_sqlite(world, alice):
    dc = world.dc
    imap = imap_login(dc, alice)
    ok(imap.create("SentItems"))
    ok(imap.create("Old"))
    raw(imap, 'SETMETADATA SentItems (/private/specialuse "\\\\sent")')
    raw(imap, 'SETMETADATA Old (/private/specialuse "\\\\Archive \\\\Junk")')
    lines = raw(imap, 'LIST (SPECIAL-USE) "" "*"')
    listed = {ln.split(b'"/" ')[-1]: ln for ln in lines[:-1]}
    assert set(listed) == {b"SentItems", b"Old"}, lines
    assert b"\\Sent" in listed[b"SentItems"]
    assert b"\\Archive \\Junk" in listed[b"Old"]
    lines = raw(imap, 'LIST "" "*" RETURN (SPECIAL-USE)')
    assert any(b"\\Sent" in ln and b"SentItems" in ln for ln in lines)
    assert not any(b"\\Sent" in ln and b"INBOX" in ln for ln in lines)
    lines = raw(imap, "GETMETADATA SentItems /private/specialuse")
    assert b"/private/specialuse {5}\n\\Sent)" in b"\n".join(lines), lines
    # Unknown flags are refused; a rename keeps the flags.
    tag = imap._new_tag()
    imap.send(tag + b' SETMETADATA Old (/private/specialuse "\\\\Bogus")\r\n')
    line = imap.readline()
    while line and not line.startswith(tag):
        line = imap.readline()
    assert line.split()[1] == b"NO", line
    ok(imap.rename("SentItems", "Sent"))
    imap.logout()
    imap = imap_login(dc, alice)
    lines = raw(imap, 'LIST (SPECIAL-USE) "" "*"')
    assert any(ln.endswith(b'"/" Sent') and b"\\Sent" in ln for ln in lines)
    raw(imap, 'SETMETADATA Sent (/private/specialuse NIL)')
    lines = raw(imap, 'LIST (SPECIAL-USE) "" "*"')
    assert not any(b"Sent" in ln for ln in lines[:-1]), lines
    imap.logout()
    rows = dbtool_sql(dc, alice, "SELECT name || '=' || replace(special_use,"
                      " ' ', ',') FROM mailbox WHERE special_use IS NOT NULL")
    assert rows == ["Old=\\Archive,\\Junk"], rows


def test_metadata_in_sqlite(world, alice):
    dc = world.dc
    tok = secrets.token_hex(5)
    marker = "SBXMETA" + tok
    imap = imap_login(dc, alice)
    ok(imap.create("Meta"))
    raw(imap, 'SETMETADATA Meta (/private/comment "%s-private"'
        ' /shared/comment "%s-shared")' % (marker, marker))
    raw(imap, 'SETMETADATA "" (/private/vendor/test/%s "%s-server")'
        % (tok, marker))
    imap.logout()
    imap = imap_login(dc, alice)
    text = b"\n".join(raw(imap, 'GETMETADATA Meta (/private/comment'
                              ' /shared/comment)'))
    assert (marker + "-private").encode() in text
    assert (marker + "-shared").encode() in text
    text = b"\n".join(raw(imap, 'GETMETADATA (DEPTH infinity) ""'
                              ' /private/vendor/test'))
    assert (marker + "-server").encode() in text
    assert ("/private/vendor/test/" + tok).encode() in text
    # Folder attributes go with a rename and away with a delete.
    ok(imap.rename("Meta", "Meta2"))
    text = b"\n".join(raw(imap, "GETMETADATA Meta2 /private/comment"))
    assert (marker + "-private").encode() in text
    raw(imap, "SETMETADATA Meta2 (/shared/comment NIL)")
    text = b"\n".join(raw(imap, "GETMETADATA Meta2 /shared/comment"))
    assert (marker + "-shared").encode() not in text
    imap.logout()
    assert dbtool_sql(dc, alice, "SELECT count(*) FROM attribute WHERE"
                      " CAST(value AS TEXT) LIKE '%" + marker + "%'") == ["2"]
    # Nothing readable on disk: not in the home, state or run dirs.
    for top in (dc.home("alice"), os.path.join(world.wd.path, "state"),
                dc.run_dir):
        for root, _, files in os.walk(top):
            for name in files:
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as f:
                    assert marker.encode() not in f.read(), path
    imap = imap_login(dc, alice)
    ok(imap.delete("Meta2"))
    imap.logout()
    assert dbtool_sql(dc, alice, "SELECT count(*) FROM attribute WHERE"
                      " CAST(value AS TEXT) LIKE '%" + marker + "%'") == ["1"]


def test_sort_and_thread(world, alice):
    imap = imap_login(world.dc, alice)
    ok(imap.create("TS"))
    mails = [  # uid: subject, date, message-id, references
        ("beta", "Mon, 02 Mar 2026 10:00:00 +0000", "t1", ""),
        ("Re: alpha", "Tue, 03 Mar 2026 10:00:00 +0000", "t2", "<t3@x>"),
        ("alpha", "Sun, 01 Mar 2026 09:00:00 +0000", "t3", ""),
        ("gamma", "Sun, 01 Mar 2026 11:00:00 +0000", "t4", ""),
        ("Re: Re: alpha", "Wed, 04 Mar 2026 10:00:00 +0000", "t5",
         "<t3@x> <t2@x>"),
    ]
    for i, (subject, date, mid, refs) in enumerate(mails):
        head = ("From: a@example.org\r\nSubject: %s\r\nDate: %s\r\n"
                "Message-ID: <%s@x>\r\n" % (subject, date, mid))
        if refs:
            head += "References: %s\r\nIn-Reply-To: %s\r\n" % (
                refs, refs.split()[-1])
        # Distinct internal dates: ARRIVAL order is UID order.
        ok(imap.append("TS", None, '"1%d-Mar-2026 12:00:00 +0000"' % i,
                       (head + "\r\nbody\r\n").encode()))
    ok(imap.select("TS"))
    caps = ok(imap.capability())[0]
    assert b"SORT" in caps and b"THREAD=REFERENCES" in caps
    assert ok(imap.uid("SORT", "(SUBJECT DATE ARRIVAL)", "UTF-8",
                       "ALL"))[0] == b"3 2 5 1 4"
    assert ok(imap.uid("SORT", "(DATE)", "UTF-8", "ALL"))[0] == b"3 4 1 2 5"
    assert ok(imap.uid("SORT", "(REVERSE ARRIVAL)", "UTF-8",
                       "ALL"))[0] == b"5 4 3 2 1"
    # Equal base subjects: sequence order (RFC 5256).
    assert ok(imap.uid("SORT", "(SUBJECT)", "UTF-8", "SUBJECT",
                       "alpha"))[0] == b"2 3 5"
    assert ok(imap.uid("THREAD", "REFERENCES", "UTF-8",
                       "ALL"))[0] == b"(3 2 5)(4)(1)"
    assert ok(imap.uid("THREAD", "ORDEREDSUBJECT", "UTF-8",
                       "ALL"))[0] == b"(3 (2)(5))(4)(1)"
    imap.logout()


def test_rename_inbox(world, alice):
    dc = world.dc
    imap = imap_login(dc, alice)
    ok(imap.create("INBOX/child"))
    ok(imap.append("INBOX", None, None, message("before-rename")))
    count = int(ok(imap.select("INBOX"))[0])
    old_validity = ok(imap.status("INBOX", "(UIDVALIDITY)"))[0]
    assert count > 0
    ok(imap.close())
    ok(imap.rename("INBOX", "OldInbox"))
    # RFC 3501: the mail moves, INBOX stays and is empty, children stay.
    assert int(ok(imap.select("OldInbox"))[0]) == count
    assert int(ok(imap.select("INBOX"))[0]) == 0
    assert ok(imap.status("INBOX", "(UIDVALIDITY)"))[0] != old_validity
    names = b"\n".join(ok(imap.list('""', "*")))
    assert b"INBOX/child" in names and b"OldInbox" in names
    ok(imap.append("INBOX", None, None, message("after-rename")))
    imap.logout()
    imap = imap_login(dc, alice)
    assert int(ok(imap.select("INBOX"))[0]) == 1
    assert int(ok(imap.select("OldInbox"))[0]) == count
    typ, data = imap.rename("INBOX", "OldInbox")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0], data
    imap.logout()


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


def recent_count(lines):
    found = [int(ln.split()[1]) for ln in lines
             if re.match(rb"\* \d+ RECENT$", ln)]
    assert len(found) == 1, lines
    return found[0]


def recent_uids(imap):
    lines = raw(imap, "UID FETCH 1:* (FLAGS)")
    return {int(re.search(rb"UID (\d+)", ln).group(1)) for ln in lines
            if ln.startswith(b"* ") and b"\\Recent" in ln}


def test_recent_once(world, alice):
    """RFC 3501 2.3.2: exactly one session sees new mail as \\Recent;
    EXAMINE and STATUS show it without taking it."""
    dc = world.dc
    folder = "Recent" + secrets.token_hex(4)
    writer = imap_login(dc, alice)
    ok(writer.create(folder))
    for i in range(3):
        ok(writer.append(folder, None, None, message("recent-%d" % i)))
    # Appending without SELECT takes nothing.
    assert b"RECENT 3" in ok(writer.status(folder, "(RECENT)"))[0]

    reader = imap_login(dc, alice)
    assert recent_count(raw(reader, 'EXAMINE "%s"' % folder)) == 3
    assert len(recent_uids(reader)) == 3
    reader.logout()

    first = imap_login(dc, alice)
    assert recent_count(raw(first, 'SELECT "%s"' % folder)) == 3
    assert recent_uids(first) == {1, 2, 3}
    # Mail appended while selected is this session's too.
    ok(writer.append(folder, None, None, message("recent-3")))
    raw(first, "NOOP")
    assert recent_uids(first) == {1, 2, 3, 4}

    second = imap_login(dc, alice)
    assert recent_count(raw(second, 'SELECT "%s"' % folder)) == 0
    assert recent_uids(second) == set()
    assert recent_count(raw(second, 'EXAMINE "%s"' % folder)) == 0
    second.logout()
    # The session that took them still shows them.
    assert recent_uids(first) == {1, 2, 3, 4}
    first.logout()
    writer.logout()


def test_recent_lmtp(world, alice):
    dc = world.dc
    imap = imap_login(dc, alice)
    raw(imap, "SELECT INBOX")
    imap.logout()
    marker = "recent-lmtp-" + secrets.token_hex(4)
    assert lmtp_deliver(dc, USER, message(marker))[0] == 250
    # The spool import at STATUS or EXAMINE leaves it recent.
    imap = imap_login(dc, alice)
    assert b"RECENT 1" in ok(imap.status("INBOX", "(RECENT)"))[0]
    imap.logout()
    imap = imap_login(dc, alice)
    assert recent_count(raw(imap, "SELECT INBOX")) == 1
    uids = recent_uids(imap)
    assert len(uids) == 1
    lines = raw(imap, "UID FETCH %d (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
                % uids.pop())
    assert marker.encode() in b"\n".join(lines)
    imap.logout()
    imap = imap_login(dc, alice)
    assert recent_count(raw(imap, "SELECT INBOX")) == 0
    imap.logout()
