"""Issue 16: Pigeonhole Sieve at LMTP delivery for sqlbox users.

Delivery has no key: mail arrives while the user is logged out and is
sealed into the spool together with where Sieve put it (folder, flags,
keywords); the next login imports each message into that folder, creating
it.  Scripts are uploaded over ManageSieve with an app password; redirect
and vacation go out through submission_host (a loopback SMTP sink).
"""

import base64
import imaplib
import os
import re
import smtplib
import socket
import subprocess

import pytest

from harness import Dovecot, LaunchpadFake, Workdir, free_port, wait_for
from smtpsink import SmtpSink

USER = "alice@ubuntu.com"
HENRY = "henry@ubuntu.com"

SIEVE_CONF = """\
protocols = imap pop3 lmtp sieve
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {sieve_port}
  }}
}}
submission_host = 127.0.0.1:{sink_port}
postmaster_address = postmaster@ubuntu.com
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
  sieve_before = file:~/.launchpad-forward.sieve
  sieve_before2 = {before}
  sieve_max_redirects = 4
  sieve_vacation_send_from_recipient = yes
  sieve_redirect_envelope_from = recipient
}}
"""

# A global script every user's runs after: it tags mail the MTA marked.
BEFORE_SCRIPT = """\
require ["imap4flags"];
if header :contains "X-Spam-Flag" "YES" { addflag "$Junk"; }
"""


class SieveWorld:
    def __init__(self):
        self.wd = Workdir()
        self.fake = LaunchpadFake(self.wd.path).start()
        self.sink = SmtpSink().start()
        self.sieve_port = free_port()
        before_dir = os.path.join(self.wd.path, "sieve-before")
        os.makedirs(before_dir)
        before = os.path.join(before_dir, "10-junk.sieve")
        with open(before, "w") as f:
            f.write(BEFORE_SCRIPT)
        # Compiled ahead, as an admin does (the directory is not the
        # mail user's to write).
        subprocess.run(["sievec", before], check=True)
        os.chmod(self.wd.path, 0o755)
        try:
            self.dc = Dovecot(self.wd.path, self.fake.api_url,
                              extra_conf=SIEVE_CONF.format(
                                  sieve_port=self.sieve_port,
                                  sink_port=self.sink.port,
                                  before=before),
                              extra_lpconf=(
                                  "notify_to = admin@example.org\n"
                                  "notify_from = launchpad@example.org\n"))
            self.dc.start()
            wait_for(lambda: port_open(self.sieve_port), 20,
                     "managesieve port")
        except Exception:
            self.sink.stop()
            self.fake.stop()
            raise

    def close(self):
        self.dc.stop()
        self.sink.stop()
        self.fake.stop()
        self.wd.cleanup()


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def world():
    w = SieveWorld()
    yield w
    w.close()


@pytest.fixture(scope="module")
def alice(world):
    return world.dc.generate_password(USER, label="laptop")


class ManageSieve:
    """Just enough of RFC 5804 for the tests (plain text on loopback)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), 10)
        self.f = self.sock.makefile("rb")
        self.response()

    def line(self):
        return self.f.readline().decode().rstrip("\r\n")

    def response(self):
        lines = []
        while True:
            line = self.line()
            m = re.match(r"^(OK|NO|BYE)\b(.*)$", line)
            if m:
                return m.group(1), m.group(2).strip(), lines
            lit = re.search(r"\{(\d+)\}$", line)
            if lit:
                data = self.f.read(int(lit.group(1)))
                lines.append(data.decode())
            else:
                lines.append(line)

    def cmd(self, text, literal=None):
        data = text.encode()
        if literal is not None:
            raw = literal.encode()
            data += b" {%d+}\r\n" % len(raw) + raw
        self.sock.sendall(data + b"\r\n")
        return self.response()

    def login(self, user, password):
        token = base64.b64encode(("\0%s\0%s" % (user, password)).encode())
        return self.cmd('AUTHENTICATE "PLAIN" "%s"' % token.decode())

    def put_active(self, name, script):
        status, text, _ = self.cmd('PUTSCRIPT "%s"' % name, literal=script)
        assert status == "OK", text
        status, text, _ = self.cmd('SETACTIVE "%s"' % name)
        assert status == "OK", text

    def close(self):
        try:
            self.cmd("LOGOUT")
        finally:
            self.sock.close()


def upload(world, user, password, script, name="rules"):
    ms = ManageSieve(world.sieve_port)
    try:
        status, text, _ = ms.login(user, password)
        assert status == "OK", text
        ms.put_active(name, script)
    finally:
        ms.close()


def message(marker, sender="sender@example.org", extra=""):
    return ("From: Sender <%s>\r\n"
            "To: Alice <alice@ubuntu.com>\r\n"
            "Subject: %s\r\n"
            "Message-ID: <%s@sieve.test>\r\n"
            "%s"
            "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\n"
            "body of %s\r\n" % (sender, marker, marker, extra, marker)).encode()


def lmtp_deliver(dc, rcpt, data, sender="sender@example.org"):
    with smtplib.LMTP("127.0.0.1", dc.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("sieve.example.org")
        assert lmtp.mail(sender)[0] == 250
        code, msg = lmtp.rcpt(rcpt)
        assert code == 250, msg
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(data + b".\r\n")
        code, msg = lmtp.getreply()
        assert code == 250, msg


def ok(res):
    typ, data = res
    assert typ == "OK", data
    return data


def imap(dc, user, password):
    c = imaplib.IMAP4("127.0.0.1", dc.imap_port)
    ok(c.login(user, password))
    return c


def folder_mail(c, folder, marker):
    """(flags, body) of the message with marker in folder, or None."""
    typ, _ = c.select('"%s"' % folder)
    if typ != "OK":
        return None
    uids = ok(c.uid("SEARCH", "SUBJECT", marker))[0].split()
    if not uids:
        return None
    assert len(uids) == 1
    data = ok(c.uid("FETCH", uids[0], "(FLAGS BODY.PEEK[])"))
    flags = re.search(rb"FLAGS \(([^)]*)\)", data[0][0]).group(1)
    return set(flags.decode().split()) - {"\\Recent"}, data[0][1]


def disk_bytes(home):
    """Every byte of every file under home."""
    out = b""
    for root, _, files in os.walk(home):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    out += f.read()
            except FileNotFoundError:
                pass    # SQLite's -shm, gone with the last process
    return out


def test_fileinto_with_flags_while_logged_out(world, alice):
    upload(world, USER, alice, """\
require ["fileinto", "mailbox", "imap4flags"];
if header :contains "List-Id" "ubuntu-devel" {
  fileinto :create :flags ["\\\\Flagged", "ubuntu"] "Lists";
  stop;
}
if header :contains "Subject" "SIEVEKEEP" {
  addflag "\\\\Seen";
  keep;
}
""")
    lmtp_deliver(world.dc, USER, message(
        "SIEVELIST1 confidential", extra="List-Id: <ubuntu-devel.lists>\r\n"))
    lmtp_deliver(world.dc, USER, message("SIEVEKEEP1"))
    lmtp_deliver(world.dc, USER, message(
        "SIEVEJUNK1", extra="X-Spam-Flag: YES\r\n"))
    home = world.dc.home("alice")
    # Nothing readable of the filed mail, nor of where it went.
    raw = disk_bytes(home)
    for secret in (b"SIEVELIST1", b"confidential", b"SIEVEKEEP1",
                   b"ubuntu-devel.lists", b"$Junk"):
        assert secret not in raw
    with open(os.path.join(home, "mail", "spool"), "rb") as f:
        spool = f.read()
    assert spool.startswith(b"SBX3") and spool.count(b"SBX3") >= 3
    assert b"Lists" not in spool and b"Flagged" not in spool

    c = imap(world.dc, USER, alice)
    try:
        got = folder_mail(c, "Lists", "SIEVELIST1")
        assert got is not None, world.dc.log_text()[-3000:]
        flags, body = got
        assert flags == {"\\Flagged", "ubuntu"}
        assert b"body of SIEVELIST1" in body
        assert folder_mail(c, "INBOX", "SIEVELIST1") is None
        flags, _ = folder_mail(c, "INBOX", "SIEVEKEEP1")
        assert flags == {"\\Seen"}
        flags, _ = folder_mail(c, "INBOX", "SIEVEJUNK1")
        assert flags == {"$Junk"}
        # Exactly once: a second login imports nothing again.
        c.logout()
        c = imap(world.dc, USER, alice)
        ok(c.select("Lists"))
        assert len(ok(c.uid("SEARCH", "SUBJECT", "SIEVELIST1"))[0].split()) == 1
    finally:
        c.logout()
    assert os.path.getsize(os.path.join(home, "mail", "spool")) == 0
    # Still nothing readable once imported (the folder is a row in the
    # encrypted database).
    raw = disk_bytes(home)
    assert b"SIEVELIST1" not in raw and b"ubuntu-devel.lists" not in raw


def test_kill_during_filed_import(world, alice):
    """The import that files sealed mail into a folder it creates is
    SIGKILLed at random points (fixed seed): afterwards every message
    LMTP acknowledged is in that folder exactly once, with its flag, and
    the folder exists once (test_sqlbox_crash.py's Crasher)."""
    import random
    from test_sqlbox_crash import Crasher
    rng = random.Random(1616)
    upload(world, USER, alice, """\
require ["fileinto", "imap4flags"];
if header :contains "Subject" "SIEVECRASH" {
  fileinto :flags "\\\\Flagged" "Filed";
}
""", name="crash")
    crasher = Crasher(world, alice)
    markers = []

    def round_(delay):
        for _ in range(3):
            m = "SIEVECRASH%03d" % len(markers)
            markers.append(m)
            lmtp_deliver(world.dc, USER, message(m))
        imap = crasher.login()
        acked, secs = crasher.imap_command(imap, b"SELECT INBOX", delay)
        if delay is None:
            imap.logout()
        return secs
    fastest = min(round_(None) for _ in range(2))
    for _ in range(12):
        round_(1.4 * fastest * rng.random() ** 2)
    c = imap(world.dc, USER, alice)
    try:
        names = [line for line in ok(c.list()) if b'"Filed"' in line or
                 line.endswith(b" Filed")]
        assert len(names) == 1, ok(c.list())
        ok(c.select("Filed"))
        for m in markers:
            uids = ok(c.uid("SEARCH", "SUBJECT", m))[0].split()
            assert len(uids) == 1, "%s present %d times" % (m, len(uids))
            data = ok(c.uid("FETCH", uids[0], "(FLAGS)"))
            assert b"\\Flagged" in data[0]
        ok(c.select("INBOX"))
        assert ok(c.uid("SEARCH", "SUBJECT", "SIEVECRASH"))[0] == b""
    finally:
        c.logout()
    assert os.path.getsize(os.path.join(world.dc.home("alice"), "mail",
                                        "spool")) == 0
    assert crasher.kills["unacked"] > 0, crasher.kills


def test_vacation_once_per_sender(world, alice):
    upload(world, USER, alice, """\
require ["vacation"];
vacation :days 1 :subject "Away" "I am away until Monday.";
""", name="away")
    world.sink.clear()
    for n in range(2):
        lmtp_deliver(world.dc, USER, message("SIEVEVAC%d" % n,
                                             sender="carol@example.org"),
                     sender="carol@example.org")
    lmtp_deliver(world.dc, USER, message("SIEVEVAC2",
                                         sender="dave@example.org"),
                 sender="dave@example.org")
    replies = [m for m in world.sink.messages if "I am away" in m["data"]]
    to = sorted(m["rcpts"][0] for m in replies)
    assert to == ["<carol@example.org>", "<dave@example.org>"], \
        world.sink.messages
    c = imap(world.dc, USER, alice)
    try:
        for n in range(3):
            assert folder_mail(c, "INBOX", "SIEVEVAC%d" % n) is not None
    finally:
        c.logout()


def test_reject_and_discard(world, alice):
    upload(world, USER, alice, """\
require ["reject"];
if header :contains "Subject" "SIEVEREJECT" { reject "Not here, please."; }
if header :contains "Subject" "SIEVEDISCARD" { discard; }
""", name="refuse")
    world.sink.clear()
    lmtp_deliver(world.dc, USER, message("SIEVEREJECT",
                                         sender="erin@example.org"),
                 sender="erin@example.org")
    lmtp_deliver(world.dc, USER, message("SIEVEDISCARD"))
    lmtp_deliver(world.dc, USER, message("SIEVEKEPT"))
    rejects = [m for m in world.sink.messages
               if m["rcpts"] == ["<erin@example.org>"]]
    assert len(rejects) == 1 and "Not here, please." in rejects[0]["data"]
    c = imap(world.dc, USER, alice)
    try:
        assert folder_mail(c, "INBOX", "SIEVEREJECT") is None
        assert folder_mail(c, "INBOX", "SIEVEDISCARD") is None
        assert folder_mail(c, "INBOX", "SIEVEKEPT") is not None
    finally:
        c.logout()


def test_managesieve_refuses_wrong_password(world, alice):
    ms = ManageSieve(world.sieve_port)
    try:
        status, _, _ = ms.login(USER, "not-" + alice)
        assert status == "NO"
    finally:
        ms.sock.close()


# ---- forwarding ----

FORWARD_TO = "alice.personal@example.net"


def forward(world, *args, check=True):
    return world.dc.doveadm("-f", "json", "launchpad", "forward", *args,
                            check=check)


def forward_show(world, user):
    import json
    return json.loads(forward(world, "show", user).stdout)[0]


def sent_to(world, address, marker):
    return [m for m in world.sink.messages
            if m["rcpts"] == ["<%s>" % address] and marker in m["data"]]


def lmtp_rcpt_code(dc, rcpt):
    with smtplib.LMTP("127.0.0.1", dc.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("sieve.example.org")
        assert lmtp.mail("sender@example.org")[0] == 250
        return lmtp.rcpt(rcpt)[0]


def test_forward_with_and_without_keep(world, alice):
    upload(world, USER, alice, "keep;\n", name="plain")
    assert forward_show(world, USER)["forward"] == ""
    forward(world, "set", "--keep", USER, FORWARD_TO)
    assert forward_show(world, USER) == {
        "user": USER, "forward": FORWARD_TO, "keep": "yes"}
    world.sink.clear()
    lmtp_deliver(world.dc, USER, message("SIEVEFWDKEEP"))
    got = sent_to(world, FORWARD_TO, "SIEVEFWDKEEP")
    assert len(got) == 1, world.sink.messages
    assert "body of SIEVEFWDKEEP" in got[0]["data"]
    assert "X-Sieve-Redirected-From: %s" % USER in got[0]["data"]

    forward(world, "set", USER, FORWARD_TO)
    assert forward_show(world, USER)["keep"] == "no"
    lmtp_deliver(world.dc, USER, message("SIEVEFWDONLY"))
    assert len(sent_to(world, FORWARD_TO, "SIEVEFWDONLY")) == 1
    c = imap(world.dc, USER, alice)
    try:
        assert folder_mail(c, "INBOX", "SIEVEFWDKEEP") is not None
        assert folder_mail(c, "INBOX", "SIEVEFWDONLY") is None
    finally:
        c.logout()
    # The script is a rule, not mail: the address and nothing else.
    with open(os.path.join(world.dc.home("alice"),
                           ".launchpad-forward.sieve")) as f:
        script = f.read()
    assert "SIEVEFWD" not in script and FORWARD_TO in script


def test_forward_loop_stopped(world, alice):
    forward(world, "set", USER, FORWARD_TO)
    world.sink.clear()
    lmtp_deliver(world.dc, USER, message("SIEVELOOP"))
    out = sent_to(world, FORWARD_TO, "SIEVELOOP")
    assert len(out) == 1
    # The far end sends it back (a forward there to us): not sent out
    # again; Sieve keeps it instead, so nothing is lost.
    back = out[0]["data"].replace("\r\n", "\n").replace("\n", "\r\n")
    back = back.replace("Message-ID: <SIEVELOOP@sieve.test>",
                        "Message-ID: <SIEVELOOP-back@sieve.test>")
    lmtp_deliver(world.dc, USER, back.encode())
    assert len(sent_to(world, FORWARD_TO, "SIEVELOOP")) == 1
    # the log process writes the line after LMTP's reply: wait for it
    wait_for(lambda: "mail loop" in world.dc.log_text(), 60, "the mail loop")
    c = imap(world.dc, USER, alice)
    try:
        assert folder_mail(c, "INBOX", "SIEVELOOP") is not None
    finally:
        c.logout()
    forward(world, "clear", USER)


def test_forward_only_without_mailbox(world):
    henry = HENRY
    home = world.dc.home("henry")
    assert not os.path.exists(os.path.join(home, "sqlbox.keys"))
    # Not activated, no forwarding: the MTA is told to retry.
    assert lmtp_rcpt_code(world.dc, henry) == 451
    forward(world, "set", henry, "henry@example.net")
    world.dc.doveadm("auth", "cache", "flush", check=False)
    world.sink.clear()
    lmtp_deliver(world.dc, henry, message("SIEVEFWDHENRY"))
    assert len(sent_to(world, "henry@example.net", "SIEVEFWDHENRY")) == 1
    # Nothing kept, nothing sealed, no keyfile made.  (Pigeonhole's
    # ~/.dovecot.lda-dupes keeps the Message-ID and the addresses of a
    # forward for sieve_redirect_duplicate_period: the duplicate and
    # loop check; README.Debian says so.  Never the subject or body.)
    assert not os.path.exists(os.path.join(home, "sqlbox.keys"))
    spool = os.path.join(home, "mail", "spool")
    assert not os.path.exists(spool) or os.path.getsize(spool) == 0
    raw = disk_bytes(home)
    assert b"body of SIEVEFWDHENRY" not in raw
    assert b"Subject: SIEVEFWDHENRY" not in raw

    # The admin hears about it at the next sync.
    world.sink.clear()
    res = world.dc.doveadm("launchpad", "sync", check=False)
    admin = [m for m in world.sink.messages
             if m["rcpts"] == ["<admin@example.org>"]]
    assert admin and "forwarding to henry@example.net" in admin[0]["data"], \
        (res.stdout, res.stderr, world.sink.messages)

    # Deprovisioned (here: banned): no more forwarding.
    world.dc.doveadm("launchpad", "ban", henry, "test")
    try:
        world.sink.clear()
        assert lmtp_rcpt_code(world.dc, henry) == 550
        assert world.sink.messages == []
    finally:
        world.dc.doveadm("launchpad", "unban", henry)
    forward(world, "clear", henry)
    world.dc.doveadm("auth", "cache", "flush", check=False)
    assert lmtp_rcpt_code(world.dc, henry) == 451


def test_forward_refuses_bad_address_and_denied_user(world):
    res = forward(world, "set", USER, 'x"@example.net', check=False)
    assert res.returncode != 0
    res = forward(world, "set", "dave@ubuntu.com", "d@example.net",
                  check=False)
    assert res.returncode != 0
    assert not os.path.exists(os.path.join(world.dc.home("dave"),
                                           ".launchpad-forward.sieve"))
