"""Issue 11: tests/demo starts the whole product, and keeps doing so.

tests/demo builds and then execs `tests/harness.py demo`; this runs that
entry point as a newcomer would, reads what it prints until its last line,
and does what the printout offers: IMAP and POP3 logins with the printed
app passwords find the sample messages (delivered through LMTP, so sealed
first, and in no file of the demo's vmail directory), and the printed web
page signs the browser in through the OpenID fake as the contributor
without a mailbox, who activates it and logs in over IMAP with the
password the page shows; mail sent through the printed submission port as
the own address is relayed, another sender refused.  Ctrl-C (SIGINT) then
stops every part.
"""

import http.client
import imaplib
import os
import poplib
import re
import signal
import smtplib
import subprocess
import threading
from urllib.parse import urlsplit

import pytest

from harness import (DEMO_ACTIVATED, DEMO_READY, DEMO_SAMPLES,
                     DEMO_WEB_USER, PYTHON, TESTS_DIR, port_open, wait_for)

SESSION = "__Host-dlpw_session"
LOGIN = "__Host-dlpw_login"


class DemoProcess:
    """`python3 tests/harness.py demo` with its output collected."""

    def __init__(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(TESTS_DIR, "harness.py"), "demo"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env)
        self.lines = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == DEMO_READY:
                self.ready.set()
        self.ready.set()        # EOF: the demo ended

    @property
    def text(self):
        return "\n".join(self.lines)

    def wait_ready(self):
        # Bounded by pytest-timeout as well; the demo builds nothing here.
        assert self.ready.wait(300), "no output:\n" + self.text
        assert self.proc.poll() is None, "the demo exited:\n" + self.text

    def interrupt(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.reader.join(10)


@pytest.fixture(scope="module")
def demo():
    d = DemoProcess()
    try:
        d.wait_ready()
        text = d.text
        d.imap, d.pop3, d.lmtp = map(int, re.search(
            r"IMAP\s+127\.0\.0\.1:(\d+)\s+POP3\s+127\.0\.0\.1:(\d+)\s+"
            r"LMTP\s+127\.0\.0\.1:(\d+)", text).groups())
        d.submission = int(re.search(r"submission\s+127\.0\.0\.1:(\d+)",
                                     text).group(1))
        d.web = re.search(r"^\s+web\s+(http://127\.0\.0\.1:\d+)/", text,
                          re.M).group(1)
        d.files = re.search(r"files and logs: (\S+)", text).group(1)
        d.passwords = dict(re.findall(r"^\s+(\S+@\S+)\s+app password (\S+)",
                                      text, re.M))
        yield d
    finally:
        d.interrupt()


def http_get(url, cookies=None, headers=None):
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    hdrs = dict(headers or {})
    if cookies:
        hdrs["Cookie"] = "; ".join("%s=%s" % kv for kv in cookies.items())
    conn.request("GET", u.path + ("?" + u.query if u.query else ""),
                 headers=hdrs)
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    conn.close()
    return resp.status, resp.getheaders(), body


def http_post(url, form, cookies):
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    body = "&".join("%s=%s" % (k, v.replace(" ", "+"))
                    for k, v in form.items())
    conn.request("POST", u.path, body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": "; ".join("%s=%s" % kv for kv in cookies.items())})
    resp = conn.getresponse()
    page = resp.read().decode(errors="replace")
    conn.close()
    return resp.status, page


def header(headers, name):
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def cookie(headers, name):
    for k, v in headers:
        if k.lower() == "set-cookie" and v.startswith(name + "="):
            return v[len(name) + 1:].split(";", 1)[0]
    return None


def test_prints_every_part(demo):
    assert set(demo.passwords) == set(DEMO_ACTIVATED)
    for port in (demo.imap, demo.pop3, demo.lmtp, demo.submission):
        assert port_open(port)
    assert "%s@ubuntu.com" % DEMO_WEB_USER in demo.text
    status, _, page = http_get(demo.web + "/")
    assert status == 200 and 'href="/login"' in page


def test_sample_messages_over_imap_and_pop3(demo):
    alice, kim = DEMO_ACTIVATED
    imap = imaplib.IMAP4("127.0.0.1", demo.imap, timeout=60)
    imap.login(alice, demo.passwords[alice])
    typ, data = imap.select("INBOX")
    assert typ == "OK" and int(data[0]) == len(DEMO_SAMPLES)
    typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    bodies = [d[1] for d in data if isinstance(d, tuple)]
    imap.logout()
    for body, (subject, text) in zip(bodies, DEMO_SAMPLES):
        assert ("Subject: %s\r\n" % subject).encode() in body
        assert text.splitlines()[0].encode() in body

    pop = poplib.POP3("127.0.0.1", demo.pop3, timeout=60)
    pop.user(kim)
    pop.pass_(demo.passwords[kim])
    assert pop.stat()[0] == len(DEMO_SAMPLES)
    pop.quit()

    # imported into the encrypted databases: no sample text on disk
    needle = DEMO_SAMPLES[1][1].splitlines()[0].encode()
    vmail = os.path.join(demo.files, "vmail")
    found = []
    for top, _, names in os.walk(vmail):
        for name in names:
            with open(os.path.join(top, name), "rb") as f:
                if needle in f.read():
                    found.append(os.path.join(top, name))
    assert found == []
    assert os.path.exists(os.path.join(vmail, "ubuntu.com", "alice", "mail",
                                       "sqlbox.db"))


def test_send_through_submission(demo):
    """What the printout offers: sending as one's own address with the app
    password; someone else's address is refused."""
    alice = DEMO_ACTIVATED[0]
    msg = ("From: %s\r\nTo: friend@example.org\r\nSubject: demo send\r\n"
           "\r\nhello\r\n" % alice).encode()
    with smtplib.SMTP("127.0.0.1", demo.submission, timeout=60) as s:
        s.login(alice, demo.passwords[alice])
        assert s.sendmail(alice, ["friend@example.org"], msg) == {}
        code, text = s.mail("bob@ubuntu.com")
        assert code == 553 and ("<%s>" % alice).encode() in text


def test_web_sign_in_and_activate(demo):
    user = DEMO_WEB_USER + "@ubuntu.com"
    status, headers, _ = http_get(demo.web + "/login")
    assert status == 303
    login = cookie(headers, LOGIN)
    status, headers, _ = http_get(header(headers, "Location"))
    assert status in (302, 303), "the OpenID fake did not sign in"
    back = header(headers, "Location")
    assert back.startswith(demo.web + "/")
    status, headers, _ = http_get(back, cookies={LOGIN: login})
    assert status == 200
    session = cookie(headers, SESSION)
    assert session
    status, _, page = http_get(demo.web + "/", cookies={SESSION: session})
    assert status == 200 and user in page and 'action="/activate"' in page
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page).group(1)
    status, page = http_post(demo.web + "/activate",
                             {"csrf": csrf, "domain": "ubuntu.com",
                              "label": "demo laptop"},
                             cookies={SESSION: session})
    assert status == 200, page
    password = re.search(r'id="password"[^>]*value="([^"]+)"', page).group(1)
    imap = imaplib.IMAP4("127.0.0.1", demo.imap, timeout=60)
    imap.login(user, password)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()


def test_ctrl_c_stops_everything(demo):
    code = demo.interrupt()
    assert code == 0, demo.text
    for port in (demo.imap, demo.pop3, demo.lmtp, demo.submission,
                 urlsplit(demo.web).port):
        wait_for(lambda: not port_open(port), 30, "port %d closed" % port)
    if not os.environ.get("DLP_KEEP"):
        assert not os.path.exists(demo.files)
