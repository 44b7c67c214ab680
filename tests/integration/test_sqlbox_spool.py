"""Issue 13: a damaged record in the LMTP spool is moved aside, never cut
away, and every intact record before and after it is imported.

Mail is delivered over LMTP while alice is logged out (sealed into
~/mail/spool), one record is damaged on disk, then alice logs in: the
intact messages are in INBOX, the damaged bytes are in
~/mail/spool.quarantine (0600) as they were, the log names their offset
and count, and later deliveries still arrive.
"""

import imaplib
import os
import re
import smtplib
import stat
import struct

import pytest

from conftest import World
from harness import wait_for

USER = "alice@ubuntu.com"
HEADER_BYTES = 36
LEN_OFFSET = 20
QUARANTINE_HEADER_BYTES = 32


def message(marker):
    return ("From: Sender <sender@example.org>\r\n"
            "To: Alice <alice@ubuntu.com>\r\n"
            "Subject: %s\r\n"
            "Message-ID: <%s@spool.test>\r\n"
            "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\n"
            "body of %s\r\n" % (marker, marker, marker)).encode()


@pytest.fixture(scope="module")
def world():
    w = World()
    yield w
    w.close()


@pytest.fixture(scope="module")
def alice(world):
    return world.dc.generate_password(USER, label="laptop")


def lmtp_deliver(dc, data):
    with smtplib.LMTP("127.0.0.1", dc.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("spool.example.org")
        assert lmtp.mail("sender@example.org")[0] == 250
        assert lmtp.rcpt(USER)[0] == 250
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(data + b".\r\n")
        code, msg = lmtp.getreply()
        assert code == 250, msg


def inbox_subjects(dc, password):
    """Logs in (which imports the spool) and lists INBOX's subjects."""
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
    imap.login(USER, password)
    typ, data = imap.select("INBOX")
    assert typ == "OK"
    subjects = []
    if int(data[0]) > 0:
        typ, data = imap.fetch("1:*",
                               "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        for item in data:
            if isinstance(item, tuple):
                m = re.search(rb"Subject: (\S+)", item[1])
                subjects.append(m.group(1).decode())
    imap.logout()
    return subjects


def records(spool):
    """(offset, size) of each record in a spool image."""
    out, off = [], 0
    while off < len(spool):
        assert spool[off:off + 4] == b"SBX3", "not a record at %d" % off
        (length,) = struct.unpack_from("<Q", spool, off + LEN_OFFSET)
        out.append((off, HEADER_BYTES + length))
        off += HEADER_BYTES + length
    assert off == len(spool), "the spool ends inside a record"
    return out


def quarantine_entries(path):
    """[(what, spool offset, bytes)] of the quarantine file."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], 0
    while off < len(data):
        magic, what, where, size, _ = struct.unpack_from("<4sIQQQ", data,
                                                        off)
        assert magic == b"SBXQ"
        start = off + QUARANTINE_HEADER_BYTES
        out.append((what, where, data[start:start + size]))
        off = start + size
    assert off == len(data)
    return out


class Case:
    """One round: a fresh spool of n messages, logged out."""

    serial = 0

    def __init__(self, world, password, n):
        self.dc = world.dc
        self.password = password
        root = os.path.join(self.dc.home("alice"), "mail")
        self.spool = os.path.join(root, "spool")
        self.quarantine = os.path.join(root, "spool.quarantine")
        # Import what earlier rounds left; start without a quarantine.
        inbox_subjects(self.dc, password)
        if os.path.exists(self.quarantine):
            os.unlink(self.quarantine)
        assert not os.path.exists(self.spool) or \
            os.path.getsize(self.spool) == 0
        self.markers = []
        for _ in range(n):
            Case.serial += 1
            self.markers.append("SBXQ%04d" % Case.serial)
            lmtp_deliver(self.dc, message(self.markers[-1]))
        with open(self.spool, "rb") as f:
            self.records = records(f.read())
        assert len(self.records) == n

    def damage(self, index, where):
        """Flips one byte of record index: "sealed" in its sealed message,
        "length" in its header's length, "magic" its first byte.  Returns
        the record's bytes as damaged."""
        off, size = self.records[index]
        pos = {"sealed": off + HEADER_BYTES + (size - HEADER_BYTES) // 2,
               "length": off + LEN_OFFSET + 1,
               "magic": off}[where]
        with open(self.spool, "r+b") as f:
            f.seek(pos)
            byte = f.read(1)
            f.seek(pos)
            f.write(bytes([byte[0] ^ 0x5a]))
            f.seek(off)
            return f.read(size)


@pytest.mark.parametrize("where", ("sealed", "length", "magic"))
def test_damaged_middle_record(world, alice, where):
    dc = world.dc
    case = Case(world, alice, 3)
    bad = case.damage(1, where)
    log_before = len(dc.log_text())

    subjects = inbox_subjects(dc, alice)
    assert case.markers[0] in subjects and case.markers[2] in subjects
    assert case.markers[1] not in subjects
    assert os.path.getsize(case.spool) == 0
    st = os.stat(case.quarantine)
    assert stat.S_IMODE(st.st_mode) == 0o600
    entries = quarantine_entries(case.quarantine)
    assert len(entries) == 1
    what, offset, data = entries[0]
    assert (offset, data) == (case.records[1][0], bad)
    assert what == (2 if where == "sealed" else 1)
    # The log process writes the lines after the reply: wait for them.
    imported = "1 damaged stretch(es) moved to %s, 2 message(s) imported" % (
        case.quarantine)
    wait_for(lambda: imported in dc.log_text()[log_before:], 60,
             "the import's log line")
    log = dc.log_text()[log_before:]
    assert "%d damaged bytes at offset %d" % (len(bad), offset) in log

    # Nothing comes twice, and delivery goes on.
    Case.serial += 1
    later = "SBXQ%04d" % Case.serial
    lmtp_deliver(dc, message(later))
    subjects = inbox_subjects(dc, alice)
    assert later in subjects
    assert [subjects.count(m) for m in case.markers] == [1, 0, 1]
    assert quarantine_entries(case.quarantine) == entries


def test_damaged_last_record_survives_the_next_delivery(world, alice):
    """A writer cuts only an unfinished append, never a damaged record:
    the next delivery goes after it."""
    dc = world.dc
    case = Case(world, alice, 2)
    bad = case.damage(1, "sealed")
    Case.serial += 1
    later = "SBXQ%04d" % Case.serial
    lmtp_deliver(dc, message(later))
    with open(case.spool, "rb") as f:
        assert f.read(len(bad) + case.records[1][0])[
            case.records[1][0]:] == bad
    subjects = inbox_subjects(dc, alice)
    assert case.markers[0] in subjects and later in subjects
    assert case.markers[1] not in subjects
    assert [(o, d) for _, o, d in quarantine_entries(case.quarantine)] == [
        (case.records[1][0], bad)]


def test_unfinished_append_is_cut_not_quarantined(world, alice):
    """What a crash mid-append leaves (never acknowledged) is cut by the
    next writer, with a warning; no quarantine."""
    dc = world.dc
    case = Case(world, alice, 1)
    with open(case.spool, "rb") as f:
        record = f.read()
    with open(case.spool, "ab") as f:
        f.write(record[:HEADER_BYTES + 10])
    Case.serial += 1
    later = "SBXQ%04d" % Case.serial
    lmtp_deliver(dc, message(later))
    with open(case.spool, "rb") as f:
        assert len(records(f.read())) == 2
    subjects = inbox_subjects(dc, alice)
    assert case.markers[0] in subjects and later in subjects
    assert not os.path.exists(case.quarantine)
    cut = "cutting an unfinished append of %d bytes at offset %d" % (
        HEADER_BYTES + 10, len(record))
    wait_for(lambda: cut in dc.log_text(), 60, "the writer's warning")
