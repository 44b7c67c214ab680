"""Issue 4, concurrency soak: one sqlbox user, two IMAP sessions doing a
seeded mix of APPEND, FETCH, STORE, EXPUNGE, SEARCH, SELECT and NOOP while
LMTP delivers into the sealed spool, all at once in threads, for fixed
counts.  Afterwards every delivered and every appended-and-not-expunged
message is there exactly once with the very bytes sent and the keywords
its session left on it, no client ever saw NO/BAD (except
[EXPUNGEISSUED] for a message the other session had just expunged) or
"database is locked", the log has no error, and the database passes
integrity_check.
"""

import imaplib
import os
import random
import re
import smtplib
import subprocess
import threading

import pytest

from conftest import World
from harness import BUILD_DIR

DBTOOL = os.path.join(BUILD_DIR, "src/storage/sqlbox-dbtool")
USER = "alice@ubuntu.com"
SEED = 4005
SESSIONS = 2
OPS_PER_SESSION = 300
DELIVERIES = 150
FOLDERS = ("INBOX", "Soak")
# Operation mix of an IMAP session, by weight.
OPS = {"append": 30, "fetch": 25, "store": 18, "expunge": 10, "search": 5,
       "select": 7, "noop": 5}
THREAD_SECS = 80


def message(marker, r):
    size = r.choice((1000, 4000, 20000, 60000, 250000))
    body = r.randbytes(size // 2).hex()
    lines = [body[i:i + 76] for i in range(0, len(body), 76)]
    return (b"From: Soak <soak@example.org>\r\n"
            b"To: Alice <alice@ubuntu.com>\r\n"
            b"Subject: " + marker.encode() + b"\r\n"
            b"Message-ID: <" + marker.encode() + b"@soak.test>\r\n"
            b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\n" +
            "\r\n".join(lines).encode() + b"\r\n")


def marker_of(header):
    m = re.search(rb"<(SBXS[0-9A-Z]+)@soak\.test>", header)
    assert m, header
    return m.group(1).decode()


class Soak:
    def __init__(self, world, password):
        self.dc = world.dc
        self.password = password
        self.errors = []
        self.lock = threading.Lock()
        # marker -> (folder, bytes): what must be there at the end.
        self.expected = {}
        self.expunged = set()
        # marker -> set of our session keywords it must carry.
        self.keywords = {}

    def error(self, what):
        with self.lock:
            self.errors.append(what)

    def login(self):
        imap = imaplib.IMAP4("127.0.0.1", self.dc.imap_port, timeout=60)
        imap.login(USER, self.password)
        return imap

    def cmd(self, who, name, fn, *args):
        """One command; a NO/BAD, an exception or "locked" anywhere in
        the answer is a client-visible error."""
        try:
            typ, data = fn(*args)
        except imaplib.IMAP4.error as e:
            self.error("%s %s: %s" % (who, name, e))
            return None
        text = repr(data)
        if "locked" in text.lower():
            self.error("%s %s: %s" % (who, name, text))
        if typ != "OK":
            if typ == "NO" and b"[EXPUNGEISSUED]" in data[0]:
                return []
            self.error("%s %s: %s %s" % (who, name, typ, text))
            return None
        return data


def run_session(soak, idx):
    """One IMAP client: OPS_PER_SESSION operations from its own seed."""
    r = random.Random(SEED + idx)
    who = "session%d" % idx
    keyword = "$soak%d" % idx
    mine = {}          # marker -> folder, appended by us, not expunged
    imap = soak.login()
    current = "INBOX"
    soak.cmd(who, "SELECT", imap.select, current)

    def uid_of(marker):
        data = soak.cmd(who, "SEARCH", imap.uid, "SEARCH", "HEADER",
                        "Message-ID", marker)
        uids = data[0].split() if data else []
        if len(uids) != 1:
            soak.error("%s: %s found %d times" % (who, marker, len(uids)))
            return None
        return uids[0].decode()

    for n in range(OPS_PER_SESSION):
        op = r.choices(list(OPS), weights=list(OPS.values()))[0]
        here = [m for m, f in mine.items() if f == current]
        if op == "append":
            marker = "SBXS%d%04d" % (idx, n)
            folder = r.choice(FOLDERS)
            msg = message(marker, r)
            if soak.cmd(who, "APPEND", imap.append, folder,
                        r.choice((None, r"(\Seen)", r"(\Flagged $x)")),
                        None, msg) is not None:
                mine[marker] = folder
                with soak.lock:
                    soak.expected[marker] = (folder, msg)
                    soak.keywords[marker] = set()
        elif op == "fetch":
            data = soak.cmd(who, "SEARCH", imap.uid, "SEARCH", "ALL")
            uids = data[0].split() if data else []
            if not uids:
                continue
            pick = r.sample(uids, min(len(uids), r.randrange(1, 6)))
            data = soak.cmd(who, "FETCH", imap.uid, "FETCH",
                            b",".join(pick).decode(),
                            "(FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[])")
            for item in data or []:
                if not isinstance(item, tuple):
                    continue
                marker = marker_of(item[1])
                with soak.lock:
                    sent = soak.expected.get(marker)
                if sent is not None and not item[1].endswith(sent[1]):
                    soak.error("%s: %s fetched other bytes" % (who, marker))
        elif op == "store" and here:
            marker = r.choice(here)
            uid = uid_of(marker)
            if uid is None:
                continue
            sign = r.choice("+-")
            if soak.cmd(who, "STORE", imap.uid, "STORE", uid, sign + "FLAGS",
                        "(%s \\Answered)" % keyword) is not None:
                with soak.lock:
                    if sign == "+":
                        soak.keywords[marker].add(keyword)
                    else:
                        soak.keywords[marker].discard(keyword)
        elif op == "expunge" and here:
            marker = r.choice(here)
            uid = uid_of(marker)
            if uid is None:
                continue
            if (soak.cmd(who, "STORE", imap.uid, "STORE", uid, "+FLAGS",
                         r"(\Deleted)") is not None and
                    soak.cmd(who, "EXPUNGE", imap.expunge) is not None):
                del mine[marker]
                with soak.lock:
                    del soak.expected[marker]
                    del soak.keywords[marker]
                    soak.expunged.add(marker)
        elif op == "search":
            soak.cmd(who, "SEARCH", imap.uid, "SEARCH", "OR", "FLAGGED",
                     "BODY", r.randbytes(2).hex())
        elif op == "select":
            current = r.choice(FOLDERS)
            soak.cmd(who, "SELECT", imap.select, current)
        else:
            soak.cmd(who, "NOOP", imap.noop)
    imap.logout()


def run_lmtp(soak):
    r = random.Random(SEED - 1)
    for n in range(DELIVERIES):
        marker = "SBXSL%03d" % n
        msg = message(marker, r)
        with smtplib.LMTP("127.0.0.1", soak.dc.lmtp_port, timeout=60) as lmtp:
            lmtp.ehlo("soak.example.org")
            lmtp.mail("soak@example.org")
            code, text = lmtp.rcpt(USER)
            if code != 250:
                soak.error("LMTP RCPT: %d %s" % (code, text))
                continue
            lmtp.putcmd("data")
            lmtp.getreply()
            lmtp.send(msg + b".\r\n")
            code, text = lmtp.getreply()
        if code != 250:
            soak.error("LMTP DATA: %d %s" % (code, text))
            continue
        with soak.lock:
            soak.expected[marker] = ("INBOX", msg)
            soak.keywords[marker] = set()


def guarded(soak, fn, *args):
    try:
        fn(soak, *args)
    except Exception as e:   # reported, so the test fails with the cause
        soak.error("%s%r: %r" % (fn.__name__, args, e))


@pytest.fixture(scope="module")
def world():
    w = World(mail_location="sqlbox:~/mail")
    yield w
    w.close()


def test_two_sessions_and_lmtp(world):
    dc = world.dc
    soak = Soak(world, dc.generate_password(USER, label="soak"))
    imap = soak.login()
    assert imap.create("Soak")[0] == "OK"
    imap.logout()
    threads = [threading.Thread(target=guarded, args=(soak, run_session, i))
               for i in range(SESSIONS)]
    threads.append(threading.Thread(target=guarded, args=(soak, run_lmtp)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(THREAD_SECS)
        assert not t.is_alive(), "soak thread stuck"
    assert soak.errors == [], "\n".join(soak.errors)
    assert len(soak.expunged) > 0

    # Everything is there once, with its bytes and keywords.
    imap = soak.login()
    seen = {}
    for folder in FOLDERS:
        assert imap.select(folder)[0] == "OK"
        typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        assert typ == "OK", data
        for item in data:
            if not isinstance(item, tuple):
                continue
            marker = marker_of(item[1])
            uid = re.search(rb"UID (\d+)", item[0]).group(1).decode()
            assert marker not in seen, "%s twice: %s/%s and %s/%s" % (
                marker, seen[marker][0], seen[marker][3], folder, uid)
            flags = set(re.search(rb"FLAGS \(([^)]*)\)", item[0])
                        .group(1).decode().split())
            seen[marker] = (folder, item[1], flags, uid)
    imap.logout()
    assert not soak.expunged & set(seen), "expunged mail came back"
    assert sorted(seen) == sorted(soak.expected)
    for marker, (folder, msg) in soak.expected.items():
        got_folder, got, flags, _ = seen[marker]
        assert got_folder == folder, marker
        # LMTP puts Return-Path/Delivered-To/Received in front.
        assert got == msg if not marker.startswith("SBXSL") else \
            got.endswith(msg), marker
        assert {f for f in flags if f.startswith("$soak")} == \
            soak.keywords[marker], marker

    # The database agrees and is sound; the log has no error.
    home = dc.home("alice")
    res = subprocess.run(
        [DBTOOL, os.path.join(home, "sqlbox.keys"),
         os.path.join(home, "mail", "sqlbox.db"), "sql",
         "SELECT count(*) FROM mail; PRAGMA integrity_check"],
        input=soak.password, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(len(seen)), "ok"]
    assert os.path.getsize(os.path.join(home, "mail", "spool")) == 0
    log = dc.log_text()
    for bad in ("Error:", "Panic:", "Fatal:", "database is locked"):
        assert bad not in log, [line for line in log.splitlines()
                                if bad in line][:5]
