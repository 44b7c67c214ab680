"""Issue 4, crash proof: imap and lmtp processes of a real Dovecot running
sqlbox are SIGKILLed at random small delays after APPEND, COPY, EXPUNGE,
a spool import (SELECT or NOOP with sealed mail pending) or an LMTP DATA
was sent.  Afterwards every message the server acknowledged (tagged OK,
LMTP 250) is present exactly once, nothing is duplicated, what one
command did is all there or not at all, and the database passes
integrity_check and the schema invariants.

Every message carries a unique marker in Subject and Message-ID.  The
model keeps, per (folder, marker), "yes" (acknowledged), "no"
(acknowledged expunge) or "maybe" (killed before the answer); a fresh
session resolves each "maybe" to what it sees.  Delays are fractions
(fixed seed) of the time the same command takes unkilled, measured
first, so that kills land before, inside and after the command's
transaction on any machine.
"""

import imaplib
import os
import random
import re
import signal
import smtplib
import subprocess
import time

import pytest

from conftest import World
from harness import BUILD_DIR

DBTOOL = os.path.join(BUILD_DIR, "src/storage/sqlbox-dbtool")
USER = "alice@ubuntu.com"
SEED = 4004
FOLDERS = ("INBOX", "Crash", "Src", "Dst", "Exp")
# Rounds per kind: 182 kills in all.
APPEND_ROUNDS = 50
COPY_ROUNDS = 36
EXPUNGE_ROUNDS = 36
IMPORT_ROUNDS = 30
LMTP_ROUNDS = 30
# Delays are drawn from [0, DELAY_SPAN * the unkilled duration].
DELAY_SPAN = 1.4
CALIBRATION_RUNS = 3
SRC_MESSAGES = (COPY_ROUNDS + CALIBRATION_RUNS) * 5
EXP_MESSAGES = (EXPUNGE_ROUNDS + CALIBRATION_RUNS) * 4
PID_WAIT_SECS = 5
LMTP_CONNECT_TRIES = 20
REPLY_WAIT_SECS = 30

rng = random.Random(SEED)


def message(marker, size):
    """A message of about `size` bytes; the body is hex lines (no NUL, so
    the SQL checks can read the headers of chunk 0 as text)."""
    body = rng.randbytes(size // 2).hex()
    lines = [body[i:i + 76] for i in range(0, len(body), 76)]
    return (b"From: Crash Test <crash@example.org>\r\n"
            b"To: Alice <alice@ubuntu.com>\r\n"
            b"Subject: " + marker.encode() + b"\r\n"
            b"Message-ID: <" + marker.encode() + b"@crash.test>\r\n"
            b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\n" +
            "\r\n".join(lines).encode() + b"\r\n")


def ok(res):
    typ, data = res
    assert typ == "OK", data
    return data


class Model:
    """What must be, may be or must not be in which folder."""

    def __init__(self):
        self.state = {}      # (folder, marker) -> "yes" | "no" | "maybe"
        self.groups = []     # [(folder, markers)]: one command's effect
        self.serial = 0

    def new_markers(self, n):
        out = []
        for _ in range(n):
            self.serial += 1
            out.append("SBXK%05d" % self.serial)
        return out

    def record(self, folder, markers, acked, done="yes"):
        """One command's outcome: `done` for every marker if it was
        acknowledged, else all-or-nothing."""
        for m in markers:
            self.state[(folder, m)] = done if acked else "maybe"
        if not acked:
            self.groups.append((folder, list(markers)))

    def present(self, folder):
        return [m for (f, m), s in self.state.items()
                if f == folder and s == "yes"]

    def check(self, counts, where, folders=FOLDERS):
        """counts: (folder, marker) -> occurrences seen in `where`, a
        session that opened `folders`."""
        for key, n in counts.items():
            assert key in self.state, "%s: unknown message %s" % (where, key)
            assert n <= 1, "%s: %s present %d times" % (where, key, n)
        for key, s in self.state.items():
            if key[0] not in folders:
                continue
            n = counts.get(key, 0)
            if s == "yes":
                assert n == 1, "%s: acknowledged %s missing" % (where, key)
            elif s == "no":
                assert n == 0, "%s: expunged %s still there" % (where, key)
        for folder, markers in self.groups:
            if folder not in folders:
                continue
            seen = {counts.get((folder, m), 0) for m in markers}
            assert len(seen) == 1, "%s: %s half done in %s: %s" % (
                where, markers, folder,
                {m: counts.get((folder, m), 0) for m in markers})

    def resolve(self, counts, folders=FOLDERS):
        """A fresh session saw the committed state: maybes are settled."""
        for key, s in self.state.items():
            if s == "maybe" and key[0] in folders:
                self.state[key] = "yes" if counts.get(key, 0) else "no"
        self.groups = [g for g in self.groups if g[0] not in folders]


class Crasher:
    """Sessions of one user, and SIGKILL for the process serving one."""

    def __init__(self, world, password):
        self.world = world
        self.dc = world.dc
        self.password = password
        self.home = self.dc.home("alice")
        self.kills = {"acked": 0, "unacked": 0}

    def login(self):
        imap = imaplib.IMAP4("127.0.0.1", self.dc.imap_port, timeout=60)
        imap.login(USER, self.password)
        return imap

    def _children(self):
        master = str(self.dc.proc.pid)
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open("/proc/%s/comm" % pid) as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if fields[1] == master:
                yield int(pid), comm

    def _server_inode(self, sock):
        """The inode of the server side of our TCP connection."""
        lport = "%04X" % sock.getpeername()[1]
        rport = "%04X" % sock.getsockname()[1]
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if (cols[1] == "0100007F:" + lport and
                        cols[2] == "0100007F:" + rport):
                    return cols[9]
        return None

    def server_pid(self, sock, comm):
        """The pid of Dovecot's `comm` process holding our connection."""
        deadline = time.monotonic() + PID_WAIT_SECS
        while time.monotonic() < deadline:
            inode = self._server_inode(sock)
            for pid, name in self._children():
                if name != comm or inode is None:
                    continue
                try:
                    fds = os.listdir("/proc/%d/fd" % pid)
                    for fd in fds:
                        if (os.readlink("/proc/%d/fd/%s" % (pid, fd)) ==
                                "socket:[%s]" % inode):
                            return pid
                except OSError:
                    continue
            time.sleep(0.01)
        raise TimeoutError("no %s process holds our connection" % comm)

    def kill_after(self, pid, delay):
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def imap_command(self, imap, payload, delay, pipelined=()):
        """Sends `TAG payload` (after the `pipelined` commands, in the
        same write), SIGKILLs the imap process `delay` s later (None: no
        kill); returns (acknowledged, seconds until the answer)."""
        pid = self.server_pid(imap.sock, "imap")
        out = b""
        for cmd in pipelined:
            out += imap._new_tag() + b" " + cmd + b"\r\n"
        tag = imap._new_tag()
        start = time.monotonic()
        imap.send(out + tag + b" " + payload + b"\r\n")
        if delay is not None:
            self.kill_after(pid, delay)
        imap.sock.settimeout(REPLY_WAIT_SECS)
        acked, secs = False, None
        try:
            while True:
                line = imap.readline()
                if line == b"":
                    break
                if re.match(rb"[A-Z]+\d+ ", line):
                    assert re.match(rb"[A-Z]+\d+ OK", line), line
                if line.startswith(tag + b" "):
                    acked, secs = True, time.monotonic() - start
                    break
        except (OSError, imaplib.IMAP4.abort):
            pass
        if delay is not None:
            imap.shutdown()
            self.kills["acked" if acked else "unacked"] += 1
        return acked, secs

    def lmtp_open(self):
        # After a kill Dovecot may count the lmtp process as a failed
        # start and throttle the service (2 s), closing a connection
        # before its greeting; nothing was sent yet, so connect again.
        for _ in range(LMTP_CONNECT_TRIES):
            try:
                lmtp = smtplib.LMTP("127.0.0.1", self.dc.lmtp_port,
                                    timeout=60)
                lmtp.ehlo("crash.example.org")
                break
            except (OSError, smtplib.SMTPServerDisconnected):
                time.sleep(0.5)
        else:
            raise TimeoutError("LMTP refuses connections")
        assert lmtp.mail("crash@example.org")[0] == 250
        assert lmtp.rcpt(USER)[0] == 250
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        return lmtp

    def lmtp_deliver(self, data, delay):
        """One delivery; SIGKILLs the lmtp process `delay` s after the
        data went out.  Returns (acknowledged, seconds until the 250)."""
        lmtp = self.lmtp_open()
        pid = self.server_pid(lmtp.sock, "lmtp")
        start = time.monotonic()
        lmtp.send(data + b".\r\n")
        if delay is not None:
            self.kill_after(pid, delay)
        try:
            code, msg = lmtp.getreply()
        except (OSError, smtplib.SMTPException):
            code, msg = None, None
        lmtp.close()
        if delay is None:
            assert code == 250, msg
        else:
            self.kills["acked" if code == 250 else "unacked"] += 1
        return code == 250, time.monotonic() - start

    def dbtool(self, sql):
        res = subprocess.run(
            [DBTOOL, os.path.join(self.home, "sqlbox.keys"),
             os.path.join(self.home, "mail", "sqlbox.db"), "sql", sql],
            input=self.password, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return [line.split("|") for line in res.stdout.splitlines()]

    def imap_counts(self):
        """(folder, marker) -> count, from FETCH and checked by SEARCH;
        the SELECT of INBOX imports what LMTP spooled."""
        counts = {}
        imap = self.login()
        try:
            for folder in FOLDERS:
                ok(imap.select(folder))
                uids = {}
                data = ok(imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER."
                                   "FIELDS (MESSAGE-ID)])"))
                for item in data:
                    if not isinstance(item, tuple):
                        continue
                    uid = re.search(rb"UID (\d+)", item[0]).group(1)
                    m = re.search(rb"<(SBXK\d{5})@crash\.test>", item[1])
                    assert m, item
                    uids[uid] = m.group(1).decode()
                    key = (folder, uids[uid])
                    counts[key] = counts.get(key, 0) + 1
                found = ok(imap.uid("SEARCH", "SUBJECT", "SBXK"))[0].split()
                assert sorted(found) == sorted(uids), folder
                # One SEARCH by marker per message: the index answers too.
                for uid, marker in uids.items():
                    hit = ok(imap.uid("SEARCH", "HEADER", "Message-ID",
                                      marker))[0].split()
                    assert uid in hit, (folder, marker, hit)
        finally:
            imap.logout()
        return counts

    def db_counts(self):
        rows = self.dbtool(
            "SELECT mb.name, substr(t.h, instr(t.h, 'Message-ID: <') + 13, 9),"
            " count(*) FROM (SELECT m.mailbox_id AS mid,"
            " CAST(c.data AS TEXT) AS h FROM mail m JOIN chunk c"
            " ON c.body_id = m.body_id AND c.seq = 0) AS t"
            " JOIN mailbox mb ON mb.id = t.mid GROUP BY 1, 2")
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def check_invariants(self):
        assert self.dbtool("PRAGMA integrity_check") == [["ok"]]
        # Schema 2 streams large bodies: a save killed mid-way leaves a
        # body marked pending (dropped once stale), never one unmarked.
        pending = ""
        if self.dbtool("SELECT count(*) FROM sqlite_master"
                       " WHERE name = 'body_pending'") == [["1"]]:
            pending = " AND id NOT IN (SELECT body_id FROM body_pending)"
        checks = {
            "mail without body":
                "SELECT count(*) FROM mail WHERE body_id NOT IN"
                " (SELECT id FROM body)",
            "mail without mailbox":
                "SELECT count(*) FROM mail WHERE mailbox_id NOT IN"
                " (SELECT id FROM mailbox)",
            "uid >= uidnext":
                "SELECT count(*) FROM mail m JOIN mailbox mb"
                " ON mb.id = m.mailbox_id WHERE m.uid >= mb.uidnext",
            "modseq > highestmodseq":
                "SELECT count(*) FROM mail m JOIN mailbox mb"
                " ON mb.id = m.mailbox_id WHERE m.modseq > mb.highestmodseq",
            "expunged uid >= uidnext or modseq > highestmodseq":
                "SELECT count(*) FROM expunged e JOIN mailbox mb"
                " ON mb.id = e.mailbox_id WHERE e.uid >= mb.uidnext"
                " OR e.modseq > mb.highestmodseq",
            "expunged uid still in mail":
                "SELECT count(*) FROM expunged e JOIN mail m"
                " ON m.mailbox_id = e.mailbox_id AND m.uid = e.uid",
            "chunk without body":
                "SELECT count(*) FROM chunk WHERE body_id NOT IN"
                " (SELECT id FROM body)",
            "body without mail":
                "SELECT count(*) FROM body WHERE id NOT IN"
                " (SELECT body_id FROM mail)" + pending,
            "body size != chunks":
                "SELECT count(*) FROM body b WHERE (b.size !="
                " (SELECT coalesce(sum(length(data)), -1) FROM chunk"
                " WHERE body_id = b.id) OR (SELECT count(*) FROM chunk"
                " WHERE body_id = b.id) != (SELECT max(seq) + 1 FROM chunk"
                " WHERE body_id = b.id))" + pending,
            "keyword without mail":
                "SELECT count(*) FROM keyword k WHERE NOT EXISTS (SELECT 1"
                " FROM mail m WHERE m.mailbox_id = k.mailbox_id"
                " AND m.uid = k.uid)",
        }
        # Schema 9: a body's body_fields row is written and dropped with
        # its body_cache row, and carries the same sizes.
        if self.dbtool("SELECT count(*) FROM sqlite_master"
                       " WHERE name = 'body_fields'") == [["1"]]:
            checks["body_cache without body"] = (
                "SELECT count(*) FROM body_cache WHERE body_id NOT IN"
                " (SELECT id FROM body)")
            checks["body_cache and body_fields differ"] = (
                "SELECT (SELECT count(*) FROM body_cache c WHERE NOT EXISTS"
                " (SELECT 1 FROM body_fields f WHERE f.body_id = c.body_id"
                " AND f.hdr_size = c.hdr_size AND f.hdr_lines = c.hdr_lines"
                " AND f.body_lines = c.body_lines)) + (SELECT count(*)"
                " FROM body_fields f WHERE f.body_id NOT IN"
                " (SELECT body_id FROM body_cache))")
        # Issue 15: a folder whose record says it is caught up (SEARCH
        # skips its catch-up) has every body indexed in that format.
        if self.dbtool("SELECT count(*) FROM sqlite_master"
                       " WHERE name = 'fts_caught_up'") == [["1"]]:
            checks["caught-up folder with unindexed mail"] = (
                "SELECT count(*) FROM fts_caught_up c JOIN mailbox mb"
                " ON mb.id = c.mailbox_id AND mb.uidvalidity ="
                " c.uidvalidity AND mb.uidnext = c.uidnext"
                " AND mb.highestmodseq = c.highestmodseq JOIN mail m"
                " ON m.mailbox_id = mb.id WHERE NOT EXISTS (SELECT 1"
                " FROM fts_doc d WHERE d.body_id = m.body_id"
                " AND d.format = c.format)")
        # Schema 10: its body_header row too.
        if self.dbtool("SELECT count(*) FROM sqlite_master"
                       " WHERE name = 'body_header'") == [["1"]]:
            checks["body_header without body"] = (
                "SELECT count(*) FROM body_header WHERE body_id NOT IN"
                " (SELECT id FROM body)")
            checks["body_header and body_fields differ"] = (
                "SELECT (SELECT count(*) FROM body_header h WHERE NOT EXISTS"
                " (SELECT 1 FROM body_fields f WHERE f.body_id = h.body_id"
                " AND f.hdr_size = h.hdr_size AND f.hdr_lines = h.hdr_lines"
                " AND f.body_lines = h.body_lines)) + (SELECT count(*)"
                " FROM body_fields f WHERE f.body_id NOT IN"
                " (SELECT body_id FROM body_header))")
        if pending:
            checks["mail on a pending body"] = (
                "SELECT count(*) FROM mail WHERE body_id IN"
                " (SELECT body_id FROM body_pending)")
        for what, sql in checks.items():
            assert self.dbtool(sql) == [["0"]], what

    def verify(self, model, where):
        counts = self.imap_counts()
        model.check(counts, where + " (IMAP)")
        assert self.db_counts() == counts, where + ": SQL and IMAP differ"
        self.check_invariants()
        model.resolve(counts)
        assert "Panic" not in self.dc.log_text()


@pytest.fixture(scope="module")
def crash():
    world = World(mail_location="sqlbox:~/mail",
                  extra_conf="verbose_proctitle = yes\n")
    c = Crasher(world, world.dc.generate_password(USER, label="crash"))
    imap = c.login()
    for folder in FOLDERS[1:]:
        ok(imap.create(folder))
    imap.logout()
    yield c
    world.close()


@pytest.fixture(scope="module")
def model():
    return Model()


def calibrated(run):
    """Delays for the rounds: fractions of the fastest unkilled time,
    denser near 0, where a short command's transaction is."""
    fastest = min(run() for _ in range(CALIBRATION_RUNS))
    return lambda: DELAY_SPAN * fastest * rng.random() ** 2


def append_payload(folder, messages):
    out = b"APPEND " + folder.encode()
    for msg in messages:
        out += b" {%d+}\r\n" % len(msg) + msg
    return out


def test_kill_during_append(crash, model):
    def unkilled():
        markers = model.new_markers(1)
        imap = crash.login()
        acked, secs = crash.imap_command(
            imap, append_payload("Crash", [message(markers[0], 200000)]),
            None)
        imap.logout()
        model.record("Crash", markers, acked)
        return secs
    delay = calibrated(unkilled)
    for i in range(APPEND_ROUNDS):
        # Every third round a MULTIAPPEND: its messages commit together.
        markers = model.new_markers(3 if i % 3 == 0 else 1)
        msgs = [message(m, rng.randrange(2000, 400000)) for m in markers]
        imap = crash.login()
        acked, _ = crash.imap_command(imap, append_payload("Crash", msgs),
                                      delay())
        model.record("Crash", markers, acked)
    crash.verify(model, "after APPEND kills")


def test_kill_during_copy(crash, model):
    # Src is filled unkilled; each round copies 1-5 messages no earlier
    # round copied, so that every copy is one marker in Dst.
    src = model.new_markers(SRC_MESSAGES)
    imap = crash.login()
    for m in src:
        ok(imap.append("Src", None, None, message(m, 3000)))
    model.record("Src", src, True)
    ok(imap.select("Src"))
    uid_of = {}
    for item in ok(imap.uid("FETCH", "1:*",
                            "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")):
        if isinstance(item, tuple):
            uid_of[re.search(rb"SBXK\d{5}", item[1]).group(0).decode()] = \
                re.search(rb"UID (\d+)", item[0]).group(1).decode()
    imap.logout()
    todo = list(src)

    def copy(delay_s):
        n = rng.randrange(1, 6)
        batch, todo[:] = todo[:n], todo[n:]
        imap = crash.login()
        ok(imap.select("Src"))
        acked, secs = crash.imap_command(
            imap, b"UID COPY " + ",".join(uid_of[m] for m in batch).encode() +
            b" Dst", delay_s)
        if delay_s is None:
            imap.logout()
        model.record("Dst", batch, acked)
        return secs
    delay = calibrated(lambda: copy(None))
    for _ in range(COPY_ROUNDS):
        copy(delay())
    crash.verify(model, "after COPY kills")


def test_kill_during_expunge(crash, model):
    exp = model.new_markers(EXP_MESSAGES)
    imap = crash.login()
    for m in exp:
        ok(imap.append("Exp", None, None, message(m, 3000)))
    imap.logout()
    model.record("Exp", exp, True)

    def expunge(delay_s):
        imap = crash.login()
        ok(imap.select("Exp"))
        uid_of = {}
        for item in ok(imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER."
                                "FIELDS (MESSAGE-ID)])")):
            if isinstance(item, tuple):
                m = re.search(rb"SBXK\d{5}", item[1]).group(0).decode()
                uid_of[m] = re.search(rb"UID (\d+)", item[0]).group(1).decode()
        # What the last killed EXPUNGE did, all of it or nothing; then
        # its survivors lose \Deleted so that only this round's go.
        counts = {("Exp", m): 1 for m in uid_of}
        model.check(counts, "before an EXPUNGE round", ("Exp",))
        model.resolve(counts, ("Exp",))
        left = ok(imap.uid("SEARCH", "DELETED"))[0].split()
        if left:
            ok(imap.uid("STORE", b",".join(left).decode(), "-FLAGS.SILENT",
                        r"(\Deleted)"))
        batch = rng.sample(sorted(model.present("Exp")), rng.randrange(1, 5))
        store = b"UID STORE " + ",".join(uid_of[m] for m in batch).encode() + \
            b" +FLAGS.SILENT (\\Deleted)"
        # Pipelined, so that the kills spread over both commands.
        acked, secs = crash.imap_command(imap, b"EXPUNGE", delay_s, [store])
        if delay_s is None:
            imap.logout()
        model.record("Exp", batch, acked, done="no")
        return secs
    delay = calibrated(lambda: expunge(None))
    for _ in range(EXPUNGE_ROUNDS):
        expunge(delay())
    crash.verify(model, "after EXPUNGE kills")


def test_kill_during_spool_import(crash, model):
    """Mail LMTP sealed (acknowledged, so "yes") is imported by a SELECT
    of INBOX after login, or by a NOOP of a session that has INBOX open;
    the imap process dies during that import."""
    def deliver_some():
        markers = model.new_markers(rng.randrange(2, 6))
        for m in markers:
            acked, _ = crash.lmtp_deliver(
                message(m, rng.randrange(2000, 300000)), None)
            model.record("INBOX", [m], acked)

    def import_round(delay_s, by_noop):
        imap = crash.login()
        if by_noop:
            ok(imap.select("INBOX"))
            deliver_some()
            acked, secs = crash.imap_command(imap, b"NOOP", delay_s)
        else:
            deliver_some()
            acked, secs = crash.imap_command(imap, b"SELECT INBOX", delay_s)
        if delay_s is None:
            imap.logout()
        return secs
    # Calibrated on the SELECT path, which reads more.
    delay = calibrated(lambda: import_round(None, False))
    for i in range(IMPORT_ROUNDS):
        import_round(delay(), i % 2 == 1)
    spool = os.path.join(crash.home, "mail", "spool")
    crash.verify(model, "after spool import kills")
    assert os.path.getsize(spool) == 0


def test_kill_during_lmtp(crash, model):
    def deliver(delay_s):
        marker = model.new_markers(1)
        acked, secs = crash.lmtp_deliver(
            message(marker[0], rng.randrange(2000, 400000)), delay_s)
        model.record("INBOX", marker, acked)
        return secs
    delay = calibrated(lambda: deliver(None))
    for _ in range(LMTP_ROUNDS):
        deliver(delay())
    crash.verify(model, "after LMTP kills")


def test_kills_landed_on_both_sides(crash):
    """Kills before and after the answer, else the rounds proved little."""
    assert crash.kills["acked"] > 0 and crash.kills["unacked"] > 0, \
        crash.kills
    assert sum(crash.kills.values()) >= 100, crash.kills
