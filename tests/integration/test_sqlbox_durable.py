"""Issue 13: sqlbox acknowledges mail only once it is on disk, as
Dovecot's `mail_fsync` asks (optimized, the default, and always: fsync
before the reply; never: may skip).

A power cut at the moment of the reply is replayed from a trace.  strace
attaches to the process that serves the connection (imap or lmtp) and
records, in order, every write and truncate of a file, every fsync and
fdatasync, and what goes to the client's socket.  The files as a power cut
would leave them at the moment the tagged OK or the 250 is written are
their contents before the command plus every change up to that file's
last fsync/fdatasync before the reply (an fsync covers the whole file;
anything after it is taken as lost).  That image of sqlbox.db and its WAL
is then opened with sqlbox-dbtool: the acknowledged mail must be in it.
The spool must be the same at the 250 as written; an import must have its
mail on disk before it empties the spool.  Under mail_fsync=never no file
is synced before the reply (unless a WAL checkpoint, which SQLite syncs
anyway, runs inside the command).  New files (database, spool) have their
directory entry synced before the first reply that depends on them.

Deterministic: the trace is an ordered log of one single-threaded process,
nothing depends on timing; strace attaches before the command is sent and
detaches after its reply was read.
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import World
from harness import BUILD_DIR, wait_for

DBTOOL = os.path.join(BUILD_DIR, "src/storage/sqlbox-dbtool")
ALICE = "alice@ubuntu.com"
ATTACH_WAIT_SECS = 20
PID_WAIT_SECS = 10
# Larger than any single write the commands below make (a page, a sealed
# message of the spool), so that strace prints every byte.
STRACE_STRING_BYTES = 1 << 20
TRACED = ("pwrite64,pwritev,write,writev,sendto,sendmsg,ftruncate,fsync,"
          "fdatasync,openat")


def message(marker, size=6000):
    """A message whose every line carries the marker; about size bytes."""
    line = (marker + " ") * 7
    body = "\r\n".join(line for _ in range(max(1, size // len(line))))
    return ("From: Sender <sender@example.org>\r\n"
            "To: Alice <alice@ubuntu.com>\r\n"
            "Subject: %s\r\n"
            "Message-ID: <%s@durable.test>\r\n"
            "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\n%s\r\n" % (
                marker, marker, body)).encode()


# ------------------------------------------------------------ processes

def dovecot_children(dc):
    master = str(dc.proc.pid)
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


def server_pid(dc, sock, comm):
    """The pid of Dovecot's `comm` process that holds our connection."""
    lport = "%04X" % sock.getpeername()[1]
    rport = "%04X" % sock.getsockname()[1]
    deadline = time.monotonic() + PID_WAIT_SECS
    while time.monotonic() < deadline:
        inode = None
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if (cols[1] == "0100007F:" + lport and
                        cols[2] == "0100007F:" + rport):
                    inode = cols[9]
        for pid, name in dovecot_children(dc):
            if name != comm or inode is None:
                continue
            try:
                for fd in os.listdir("/proc/%d/fd" % pid):
                    if (os.readlink("/proc/%d/fd/%s" % (pid, fd)) ==
                            "socket:[%s]" % inode):
                        return pid
            except OSError:
                continue
        time.sleep(0.05)
    raise TimeoutError("no %s process holds our connection" % comm)


class Imap:
    """IMAP on a raw socket, so that the tags are ours."""

    def __init__(self, dc, user, password):
        self.sock = socket.create_connection(("127.0.0.1", dc.imap_port),
                                             timeout=60)
        self.f = self.sock.makefile("rb")
        self.seq = 0
        assert self.f.readline().startswith(b"* OK")
        self.run(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
        self.pid = server_pid(dc, self.sock, "imap")

    def next_tag(self):
        return b"d%d" % (self.seq + 1)

    def run(self, command, ok=True):
        """Sends one command; returns (tagged line, untagged lines)."""
        self.seq += 1
        tag = b"d%d" % self.seq
        self.sock.sendall(tag + b" " + command + b"\r\n")
        untagged = []
        while True:
            line = self.f.readline()
            assert line, "connection closed after %r" % command[:40]
            if line.startswith(tag + b" "):
                if ok:
                    assert line.startswith(tag + b" OK"), line
                return line, untagged
            untagged.append(line)

    def append(self, box, data):
        return self.run(b"APPEND %s {%d+}\r\n%s" % (box, len(data), data))

    def close(self):
        try:
            self.run(b"LOGOUT", ok=False)
        except (AssertionError, OSError):
            pass
        self.sock.close()


def lmtp_open(dc, rcpt):
    lmtp = smtplib.LMTP("127.0.0.1", dc.lmtp_port, timeout=60)
    lmtp.ehlo("durable.example.org")
    assert lmtp.mail("sender@example.org")[0] == 250
    code, msg = lmtp.rcpt(rcpt)
    assert code == 250, msg
    return lmtp


def lmtp_data(lmtp, data):
    lmtp.putcmd("data")
    assert lmtp.getreply()[0] == 354
    lmtp.send(data + b".\r\n")
    return lmtp.getreply()


def lmtp_deliver(dc, rcpt, data):
    lmtp = lmtp_open(dc, rcpt)
    try:
        code, msg = lmtp_data(lmtp, data)
        assert code == 250, msg
    finally:
        lmtp.close()


# ---------------------------------------------------------------- trace

class Trace:
    """strace attached to one process for the duration of a `with`."""

    def __init__(self, pid, workdir):
        self.pid = pid
        fd, self.path = tempfile.mkstemp(prefix="trace-", dir=workdir)
        os.close(fd)
        self.err_path = self.path + ".err"
        self.events = None

    def __enter__(self):
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            ["strace", "-p", str(self.pid), "-yy", "-xx",
             "-s", str(STRACE_STRING_BYTES), "-e", "trace=" + TRACED,
             "-e", "signal=none", "-o", self.path],
            stdout=subprocess.DEVNULL, stderr=self.err)

        def attached():
            assert self.proc.poll() is None, self.stderr()
            return b"attached" in open(self.err_path, "rb").read()
        wait_for(attached, ATTACH_WAIT_SECS, "strace to attach")
        return self

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        self.err.close()
        with open(self.path) as f:
            self.events = parse_trace(f.read())
        return False


HEX_RE = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
FD_RE = re.compile(r"^\d+<(.*?)>(?=,|$)")
CALL_RE = re.compile(r"^(\w+)\((.*)\) += (-?\d+)")


def unhex(s):
    return bytes.fromhex(s.replace("\\x", ""))


def fd_path(text):
    """A path as strace -yy -xx prints it (hex escaped), decoded."""
    return unhex(text).decode() if text.startswith("\\x") else text


class Event:
    """One traced call: kind is write (at offset), append, truncate (to
    length), sync, create (a file opened with O_CREAT) or reply (bytes
    written to the client's TCP socket)."""

    def __init__(self, kind, path, data=b"", offset=None, length=None):
        self.kind = kind
        self.path = path
        self.data = data
        self.offset = offset
        self.length = length

    def __repr__(self):
        return "<%s %s %d>" % (self.kind, self.path, len(self.data))


def parse_trace(text):
    """The trace as Events, in order; a write to a TCP socket is a reply,
    other socket and pipe writes are left out."""
    events = []
    for line in text.splitlines():
        m = CALL_RE.match(line)
        if not m:
            continue
        call, args, ret = m.group(1), m.group(2), int(m.group(3))
        if ret < 0:
            continue
        if call == "openat":
            if "O_CREAT" in args:
                path = re.search(r"= \d+<(.*)>$", line)
                if path:
                    events.append(Event("create", fd_path(path.group(1))))
            continue
        fd = FD_RE.match(args)
        if fd is None:
            continue
        path = fd_path(fd.group(1))
        strings = [unhex(s) for s in HEX_RE.findall(args)]
        if path.startswith("TCP:"):
            if call in ("write", "writev", "sendto", "sendmsg"):
                events.append(Event("reply", path,
                                    b"".join(strings)[:ret]))
            continue
        if not path.startswith("/"):
            continue
        if call == "pwrite64":
            offset = int(args.rsplit(",", 1)[1])
            events.append(Event("write", path, strings[0][:ret], offset))
        elif call == "pwritev":
            offset = int(args.rsplit(",", 1)[1])
            events.append(Event("write", path, b"".join(strings)[:ret],
                                offset))
        elif call in ("write", "writev"):
            # Of the files that matter here only the spool is written
            # with write(), and it is opened O_APPEND.
            events.append(Event("append", path, b"".join(strings)[:ret]))
        elif call == "ftruncate":
            events.append(Event("truncate", path,
                                length=int(args.rsplit(",", 1)[1])))
        elif call in ("fsync", "fdatasync"):
            events.append(Event("sync", path))
    return events


def first(events, pred, start=0):
    for i in range(start, len(events)):
        if pred(events[i]):
            return i
    raise AssertionError("not in the trace: %s" % (
        [e for e in events if e.kind != "write"][-40:],))


def reply_index(events, needle):
    return first(events, lambda e: e.kind == "reply" and needle in e.data)


def power_cut(events, upto, baseline):
    """The files as a power cut at events[upto] leaves them: baseline
    (path -> bytes; taken before the command) plus every change up to each
    file's last sync before upto.  Files never synced are absent unless in
    the baseline."""
    cur = {p: bytearray(b) for p, b in baseline.items()}
    durable = dict(baseline)
    for ev in events[:upto]:
        if ev.kind in ("write", "append", "truncate"):
            buf = cur.setdefault(ev.path, bytearray())
            if ev.kind == "append":
                buf += ev.data
            elif ev.kind == "write":
                if len(buf) < ev.offset:
                    buf += bytes(ev.offset - len(buf))
                buf[ev.offset:ev.offset + len(ev.data)] = ev.data
            else:
                del buf[ev.length:]
                buf += bytes(ev.length - len(buf))
        elif ev.kind == "sync" and ev.path in cur:
            durable[ev.path] = bytes(cur[ev.path])
    return durable


def synced_between(events, path_suffixes, start, end):
    return [i for i in range(start, end) if events[i].kind == "sync" and
            events[i].path.endswith(path_suffixes)]


def sqlite_syncs_anyway(events, db_path, start, end):
    """SQLite syncs whatever synchronous says when a checkpoint copies the
    WAL into the database file (it writes the main file) and when it
    starts a WAL file anew (it writes the WAL header at offset 0)."""
    return any(events[i].kind == "write" and
               (events[i].path == db_path or
                (events[i].path == db_path + "-wal" and
                 events[i].offset == 0)) for i in range(start, end))


# --------------------------------------------------------------- worlds

class Mailbox:
    """One user's sqlbox files and a way to read them (or an image)."""

    def __init__(self, dc, user, password):
        self.dc = dc
        self.user = user
        self.password = password
        name, domain = user.split("@")
        self.home = dc.home(name, domain)
        self.root = os.path.join(self.home, "mail")
        self.db = os.path.join(self.root, "sqlbox.db")
        self.wal = self.db + "-wal"
        self.spool = os.path.join(self.root, "spool")

    def baseline(self):
        """The mail files now (the process is idle between commands)."""
        files = {}
        for path in (self.db, self.wal, self.spool):
            try:
                with open(path, "rb") as f:
                    files[path] = f.read()
            except FileNotFoundError:
                pass
        return files

    def query_image(self, image, sql):
        """sql on the database as `image` (path -> bytes) has it."""
        d = tempfile.mkdtemp(prefix="powercut-", dir=self.dc.workdir)
        try:
            for path in (self.db, self.wal):
                if path in image:
                    with open(os.path.join(d, os.path.basename(path)),
                              "wb") as f:
                        f.write(image[path])
            res = subprocess.run(
                [DBTOOL, os.path.join(self.home, "sqlbox.keys"),
                 os.path.join(d, "sqlbox.db"), "sql", sql],
                input=self.password, capture_output=True, text=True,
                timeout=60)
            assert res.returncode == 0, res.stderr
            return [line.split("|") for line in res.stdout.splitlines()]
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def marker_count(self, image, marker, folder=None):
        sql = ("SELECT count(*) FROM mail m JOIN chunk c ON"
               " c.body_id = m.body_id AND c.seq = 0 JOIN mailbox b ON"
               " b.id = m.mailbox_id WHERE instr(c.data, '%s') > 0" % marker)
        if folder is not None:
            sql += " AND b.name = '%s'" % folder
        return int(self.query_image(image, sql)[0][0])


@pytest.fixture(scope="module")
def worlds():
    made = {}

    def get(mode):
        if mode not in made:
            extra = "" if mode == "optimized" else "mail_fsync = %s\n" % mode
            w = World(extra_conf=extra)
            w.alice = Mailbox(w.dc, ALICE,
                              w.dc.generate_password(ALICE, label="t"))
            made[mode] = w
        return made[mode]
    yield get
    for w in made.values():
        w.close()


_serial = [0]


def new_marker(prefix):
    _serial[0] += 1
    return "%s%04d" % (prefix, _serial[0])


def traced_command(world, imap, command):
    """Runs command under strace; returns (events, reply index, baseline)."""
    mb = world.alice
    base = mb.baseline()
    tag = imap.next_tag()
    with Trace(imap.pid, world.dc.workdir) as trace:
        imap.run(command)
    return trace.events, reply_index(trace.events, tag + b" OK"), base


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("mode", ("optimized", "always"))
def test_append_is_on_disk_at_ok(worlds, mode):
    w = worlds(mode)
    mb = w.alice
    imap = Imap(w.dc, ALICE, mb.password)
    imap.run(b"CREATE Sent", ok=False)
    imap.run(b"SELECT INBOX")
    for folder in (b"INBOX", b"Sent"):
        # INBOX is selected (a sync follows the save), Sent is not.
        marker = new_marker("SBXDA")
        data = message(marker)
        events, ok_at, base = traced_command(
            w, imap, b"APPEND %s {%d+}\r\n%s" % (folder, len(data), data))
        image = power_cut(events, ok_at, base)
        assert mb.marker_count(image, marker, folder.decode()) == 1, (
            "APPEND to %s acknowledged before it was on disk" % folder)
        assert synced_between(events, ("sqlbox.db-wal",), 0, ok_at)
    imap.close()


@pytest.mark.parametrize("mode", ("optimized", "always"))
def test_copy_and_move_are_on_disk_at_ok(worlds, mode):
    w = worlds(mode)
    mb = w.alice
    imap = Imap(w.dc, ALICE, mb.password)
    for box in (b"Src", b"CopyDst", b"MoveDst"):
        imap.run(b"CREATE " + box, ok=False)
    marker = new_marker("SBXDC")
    imap.append(b"Src", message(marker))
    imap.run(b"SELECT Src")
    uid = imap.run(b"UID SEARCH SUBJECT " + marker.encode())[1][0].split()[2]
    for verb, dest in ((b"UID COPY", "CopyDst"), (b"UID MOVE", "MoveDst")):
        events, ok_at, base = traced_command(
            w, imap, b"%s %s %s" % (verb, uid, dest.encode()))
        image = power_cut(events, ok_at, base)
        assert mb.marker_count(image, marker, dest) == 1, (
            "%s acknowledged before it was on disk" % verb.decode())
    imap.close()


@pytest.mark.parametrize("mode", ("optimized", "always"))
def test_lmtp_250_only_when_spool_is_on_disk(worlds, mode):
    w = worlds(mode)
    mb = w.alice
    for size in (3000, 200000):
        marker = new_marker("SBXDL")
        lmtp = lmtp_open(w.dc, ALICE)
        pid = server_pid(w.dc, lmtp.sock, "lmtp")
        base = mb.baseline()
        with Trace(pid, w.dc.workdir) as trace:
            code, msg = lmtp_data(lmtp, message(marker, size))
        lmtp.close()
        assert code == 250, msg
        events = trace.events
        at = reply_index(events, b"250 ")
        with open(mb.spool, "rb") as f:
            written = f.read()
        assert len(written) > len(base.get(mb.spool, b"")) + size
        image = power_cut(events, at, base)
        assert image.get(mb.spool) == written, (
            "LMTP 250 before the spool was on disk")


@pytest.mark.parametrize("mode", ("optimized", "always"))
def test_spool_import_on_disk_before_spool_emptied(worlds, mode):
    w = worlds(mode)
    mb = w.alice
    imap = Imap(w.dc, ALICE, mb.password)
    imap.run(b"SELECT INBOX")
    markers = [new_marker("SBXDI") for _ in range(3)]
    for marker in markers:
        lmtp_deliver(w.dc, ALICE, message(marker))
    assert os.path.getsize(mb.spool) > 0
    base = mb.baseline()
    tag = imap.next_tag()
    with Trace(imap.pid, w.dc.workdir) as trace:
        _, untagged = imap.run(b"NOOP")
    events = trace.events
    assert any(b"EXISTS" in line for line in untagged)
    emptied = first(events, lambda e: e.kind == "truncate" and
                    e.path == mb.spool and e.length == 0)
    assert emptied < reply_index(events, tag + b" OK")
    image = power_cut(events, emptied, base)
    for marker in markers:
        assert mb.marker_count(image, marker, "INBOX") == 1, (
            "the spool was emptied before its import was on disk")
    assert os.path.getsize(mb.spool) == 0
    imap.close()


def test_always_syncs_flag_changes(worlds):
    w = worlds("always")
    mb = w.alice
    imap = Imap(w.dc, ALICE, mb.password)
    marker = new_marker("SBXDF")
    imap.append(b"INBOX", message(marker))
    imap.run(b"SELECT INBOX")
    uid = imap.run(b"UID SEARCH SUBJECT " + marker.encode())[1][0].split()[2]
    events, ok_at, base = traced_command(
        w, imap, b"UID STORE %s +FLAGS (\\Flagged)" % uid)
    image = power_cut(events, ok_at, base)
    rows = mb.query_image(
        image, "SELECT m.flags FROM mail m JOIN mailbox b ON"
        " b.id = m.mailbox_id WHERE b.name = 'INBOX' AND m.uid = %s" %
        uid.decode())
    assert int(rows[0][0]) & 0x02, "\\Flagged not on disk at the OK"
    imap.close()


@pytest.mark.parametrize("mode", ("optimized", "never"))
def test_no_fsync_where_mail_fsync_allows(worlds, mode):
    """never: neither a save nor LMTP syncs before the reply; optimized:
    flag changes are not synced (as with Dovecot's own storages, which
    fsync mail but not index updates).  Where SQLite syncs anyway (a
    checkpoint, a new WAL) inside a command, that command is left out."""
    w = worlds(mode)
    mb = w.alice
    imap = Imap(w.dc, ALICE, mb.password)
    imap.run(b"SELECT INBOX")
    # This session's first write may start the WAL anew.
    imap.append(b"INBOX", message(new_marker("SBXDN")))
    data = message(new_marker("SBXDN"))
    # Two flag changes: a checkpoint (which resets the WAL) can fall into
    # one of them, not both.
    commands = [b"UID STORE 1:* +FLAGS (\\Seen)",
                b"UID STORE 1:* -FLAGS (\\Seen)"]
    if mode == "never":
        commands.append(b"APPEND INBOX {%d+}\r\n%s" % (len(data), data))
    checked = 0
    for command in commands:
        events, ok_at, _ = traced_command(w, imap, command)
        if sqlite_syncs_anyway(events, mb.db, 0, ok_at):
            continue
        assert not synced_between(events, ("sqlbox.db-wal", "sqlbox.db"),
                                  0, ok_at), (command[:30], [
                                      e for e in events[:ok_at]
                                      if e.kind != "write"])
        checked += 1
    imap.close()
    assert checked > 0
    if mode == "never":
        lmtp = lmtp_open(w.dc, ALICE)
        pid = server_pid(w.dc, lmtp.sock, "lmtp")
        with Trace(pid, w.dc.workdir) as trace:
            code, _ = lmtp_data(lmtp, message(new_marker("SBXDN")))
        lmtp.close()
        assert code == 250
        assert not synced_between(trace.events, ("/spool", "/mail"), 0,
                                  reply_index(trace.events, b"250 "))


def test_new_files_have_their_directory_entry_synced(worlds):
    """The database of a user's first session, and the spool of a user's
    first delivery: created, then the directory synced, then the reply."""
    w = worlds("optimized")
    dc = w.dc
    frank = Mailbox(dc, "frank@ubuntu.com",
                    dc.generate_password("frank@ubuntu.com", label="t"))
    imap = Imap(dc, frank.user, frank.password)
    tag = imap.next_tag()
    with Trace(imap.pid, dc.workdir) as trace:
        imap.run(b"SELECT INBOX")
    imap.close()
    events = trace.events
    created = first(events, lambda e: e.kind == "create" and
                    e.path == frank.db)
    ok_at = reply_index(events, tag + b" OK")
    assert any(events[i].path == frank.root
               for i in synced_between(events, ("/mail",), created, ok_at))

    kim = Mailbox(dc, "kim@kubuntu.org",
                  dc.generate_password("kim@kubuntu.org", label="t"))
    assert not os.path.exists(kim.root)
    lmtp = lmtp_open(dc, kim.user)
    pid = server_pid(dc, lmtp.sock, "lmtp")
    with Trace(pid, dc.workdir) as trace:
        code, msg = lmtp_data(lmtp, message(new_marker("SBXDK")))
    lmtp.close()
    assert code == 250, msg
    events = trace.events
    at = reply_index(events, b"250 ")
    created = first(events, lambda e: e.kind == "create" and
                    e.path == kim.spool)
    synced = [events[i].path for i in synced_between(
        events, ("",), created, at)]
    assert kim.spool in synced and kim.root in synced
    # The mail root itself was made in this delivery: its entry in the
    # home directory is synced too.
    assert kim.home in [events[i].path for i in synced_between(
        events, ("",), 0, at)]
