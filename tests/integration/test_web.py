"""Issue 8: the self-service page dovecot-launchpad-web, proven end to end.

One world for the module: the Launchpad fake, the OpenID fake
(tests/openidfake.py, standing in for Ubuntu One), a real Dovecot with the
auth cache on and an auth-vmail-master listener, and the web daemon on the
same dovecot-launchpad.conf.ext, cache and vmail directory.  The daemon runs
as the mail user (nobody here, vmail under systemd), as in production: it
reads the root-owned cache, keeps its own state in web_state_dir, and
reaches Dovecot through the auth-vmail-master and anvil-vmail listeners.

The refusal and security cases speak HTTP by hand (http.client); the walk
through the pages uses headless Chromium through python3-selenium and saves
a screenshot of every page under the test's work dir (DLP_KEEP=1 keeps it).
"""

import http.client
import imaplib
import os
import re
import socket
import time
from urllib.parse import urlsplit

import pytest

from conftest import World  # noqa: F401  (sys.path set up there)
from conftest import (LOGIN, SESSION, Web, client_ip, csrf_of, header,
                      section_of, set_cookies, shown_password, signin)
from harness import (AUTH_VMAIL_MASTER_CONF, Dovecot, LaunchpadFake,
                     OpenIDFake, Workdir, free_port, wait_for,
                     web_lpconf)
from smtpsink import SmtpSink

# Launchpad names from tests/fixtures/launchpad.json
ENTITLED = "alice"      # ubuntumembers, lubuntu-members, ubuntu-smtp-test
OTHER = "frank"         # ubuntumembers through a sub-team
OUTSIDER = "erin"       # in no team
NOT_MEMBER = "not a member of ~ubuntumembers"


def imap_login(dc, user, password):
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
    try:
        imap.login(user, password)
    except Exception:
        imap.shutdown()
        raise
    return imap


def imap_refused(dc, user, password):
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(dc, user, password).logout()


class WebWorld:
    """extra_conf goes into dovecot.conf; extra_lpconf(world) returns more
    lines for dovecot-launchpad.conf.ext (it may use world.sink)."""

    def __init__(self, extra_conf="", extra_lpconf=None, http_timeout="3s"):
        self.wd = Workdir("dlp-web-")
        self.fake = LaunchpadFake(self.wd.path).start()
        self.op = OpenIDFake(self.wd.path).start()
        # the admin notification of an activation goes out with the
        # next doveadm launchpad sync, through Dovecot's submission_host
        self.sink = SmtpSink().start()
        self.dc = Dovecot(self.wd.path, self.fake.api_url,
                          auth_cache_size="1M", auth_cache_ttl="1h",
                          http_timeout=http_timeout,
                          extra_conf=AUTH_VMAIL_MASTER_CONF +
                          "submission_host = 127.0.0.1:%d\n" %
                          self.sink.port + extra_conf)
        self.port = free_port()
        self.dc.settings["extra_lpconf"] = web_lpconf(self.port, self.op,
                                                      self.dc) + (
            extra_lpconf(self) if extra_lpconf else "")
        self.dc.start()
        self.web = Web(self.wd.path, self.dc.lpconf_path, self.port).start()

    def close(self):
        code = self.web.stop()
        self.dc.stop()
        self.op.stop()
        self.fake.stop()
        self.sink.stop()
        self.wd.cleanup()
        return code


@pytest.fixture(scope="module")
def world():
    w = WebWorld()
    yield w
    code = w.close()
    assert code == 0, "the daemon did not stop cleanly on SIGTERM"


def no_session_after(world, result):
    status, headers, body, session = result
    assert session is None
    assert SESSION not in set_cookies(headers) or \
        set_cookies(headers)[SESSION][0] == ""
    # and the start page still offers sign-in only
    status, _, page = world.web.request("GET", "/")
    assert status == 200 and 'href="/login"' in page


# ---- sign-in: the OpenID checks ----

def test_signin_ok_and_cookie_flags(world):
    status, headers, body, session = signin(world.web, world.op, ENTITLED)
    assert status == 200, body
    assert session is not None and re.fullmatch("[0-9a-f]{64}", session)
    attrs = set_cookies(headers)[SESSION][1]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in attrs
    assert 'http-equiv="refresh"' in body
    # issue 12: __Host- cookies (Secure, Path=/, no Domain), so no other
    # host of the site can set or shadow them
    status, login_headers, _ = world.web.request("GET", "/login",
                                                 headers=client_ip())
    for name, (value, attrs) in [(SESSION, set_cookies(headers)[SESSION]),
                                 (LOGIN, set_cookies(login_headers)[LOGIN])]:
        assert name.startswith("__Host-") and value
        parts = [a.strip() for a in attrs.split(";")]
        assert "Secure" in parts and "Path=/" in parts
        assert not any(a.lower().startswith("domain") for a in parts)
    status, _, page = world.web.request("GET", "/",
                                        cookies={SESSION: session})
    assert status == 200 and "alice@ubuntu.com" in page
    assert re.search(r"sign-in: alice from 198\.51\.100\.\d+\n",
                     world.web.log_text())
    assert world.op.stats()["check_authentication"] >= 1


@pytest.mark.parametrize("mode,nickname,why", [
    ("bad-signature", ENTITLED, "bad signature"),
    ("foreign-return-to", ENTITLED, "return_to"),
    ("foreign-op", ENTITLED, "op_endpoint"),
    ("offhost-claimed-id", ENTITLED, "claimed_id"),
    ("no-nickname", ENTITLED, "no nickname"),
    ("bad-nickname", ENTITLED, "not a Launchpad name"),
    ("unsigned-nickname", ENTITLED, "not signed"),
])
def test_signin_refused(world, mode, nickname, why):
    result = signin(world.web, world.op, nickname, mode)
    assert result[0] == 403, result[2]
    assert why in result[2]
    no_session_after(world, result)


def test_signin_replayed_nonce_refused(world):
    assert signin(world.web, world.op, ENTITLED)[0] == 200
    result = signin(world.web, world.op, ENTITLED, "replay-nonce")
    assert result[0] == 403 and "replayed" in result[2]
    no_session_after(world, result)


def test_signin_state_bound_to_browser_and_single_use(world):
    world.op.next(ENTITLED)
    ip = client_ip()
    status, headers, _ = world.web.request("GET", "/login", headers=ip)
    cookie = set_cookies(headers)[LOGIN][0]
    url = urlsplit(header(headers, "Location"))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", url.path + "?" + url.query)
    back = urlsplit(conn.getresponse().getheader("Location"))
    conn.close()
    path = back.path + "?" + back.query
    # another browser (no or another login cookie): refused, state burnt
    status, headers, body = world.web.request(
        "GET", path, cookies={LOGIN: "0" * 64}, headers=ip)
    assert status == 403 and SESSION not in set_cookies(headers)
    status, headers, body = world.web.request(
        "GET", path, cookies={LOGIN: cookie}, headers=ip)
    assert status == 403 and SESSION not in set_cookies(headers)


# ---- headers, CSRF, ownership, entitlement on POST ----

def test_security_headers(world):
    status, headers, page = world.web.request("GET", "/")
    assert status == 200
    assert header(headers, "Content-Security-Policy").startswith(
        "default-src 'self'")
    assert header(headers, "Cache-Control") == "no-store"
    assert header(headers, "X-Frame-Options") == "DENY"
    assert header(headers, "X-Content-Type-Options") == "nosniff"
    assert "<script" not in page and "style=" not in page
    status, headers, css = world.web.request("GET", "/style.css")
    assert status == 200 and "#E95420" in css


def test_csrf_required_on_every_post(world):
    session = signin(world.web, world.op, ENTITLED)[3]
    for path in ("/activate", "/device/add", "/device/revoke", "/reset",
                 "/logout"):
        for form in ({"domain": "ubuntu.com"},
                     {"domain": "ubuntu.com", "csrf": "f" * 64}):
            status, _, _ = world.web.request(
                "POST", path, cookies={SESSION: session}, form=form)
            assert status == 403, (path, form)
    # the right token from another site's page (Origin) is refused too
    _, _, page = world.web.request("GET", "/", cookies={SESSION: session})
    status, _, _ = world.web.request(
        "POST", "/logout", cookies={SESSION: session},
        form={"csrf": csrf_of(page)},
        headers={"Origin": "https://evil.example.org"})
    assert status == 403
    # still signed in after all that
    status, _, page = world.web.request("GET", "/", cookies={SESSION: session})
    assert "alice@ubuntu.com" in page


def test_malformed_forms_refused(world):
    """Issue 14: forms are decoded by libmicrohttpd's post processor; what
    no form of ours sends is still refused before any handler runs."""
    session = signin(world.web, world.op, ENTITLED)[3]
    _, _, page = world.web.request("GET", "/", cookies={SESSION: session})
    csrf = csrf_of(page)
    form = "application/x-www-form-urlencoded"
    bad = [
        ("csrf=%s&csrf=%s" % (csrf, csrf), form),       # repeated field
        ("csrf=%s&label=a%%0Ab" % csrf, form),          # control byte
        ("csrf=%s&label=a%%00b" % csrf, form),          # NUL
        ("csrf=%s&label" % csrf, form),                 # no '='
        ("csrf=%s&label=%%4" % csrf, form),             # cut-off escape
        ("&".join("f%d=x" % i for i in range(17)) +
         "&csrf=" + csrf, form),                        # > 16 fields
        ("csrf=%s" % csrf, "text/plain"),               # not a form
        ("csrf=%s" % csrf, None),                       # no type at all
    ]
    for body, ctype in bad:
        headers = {"Content-Type": ctype} if ctype else {}
        status, _, text = world.web.request(
            "POST", "/logout", cookies={SESSION: session}, body=body,
            headers=headers)
        assert status == 400 and "malformed form" in text, (body, ctype)
    # none of them signed out; an escaped, well-formed one does
    status, _, page = world.web.request("GET", "/", cookies={SESSION: session})
    assert "alice@ubuntu.com" in page
    status, _, _ = world.web.request(
        "POST", "/logout", cookies={SESSION: session},
        body="csrf=%s&x=a+b%%26c%%3D" % csrf, headers={"Content-Type": form})
    assert status == 303
    status, _, page = world.web.request("GET", "/", cookies={SESSION: session})
    assert 'href="/login"' in page


def test_non_entitled_sees_reason_and_post_is_refused(world):
    session = signin(world.web, world.op, OUTSIDER)[3]
    _, _, page = world.web.request("GET", "/", cookies={SESSION: session})
    assert NOT_MEMBER in page and "erin@ubuntu.com" in page
    assert 'action="/activate"' not in page
    status, _, body = world.web.request(
        "POST", "/activate", cookies={SESSION: session},
        form={"csrf": csrf_of(page), "domain": "ubuntu.com",
              "label": "sneaky"})
    assert status == 403 and NOT_MEMBER in body
    assert not os.path.exists(os.path.join(world.dc.home(OUTSIDER),
                                           "sqlbox.keys"))
    # a domain that is not configured
    status, _, _ = world.web.request(
        "POST", "/activate", cookies={SESSION: session},
        form={"csrf": csrf_of(page), "domain": "example.org"})
    assert status == 403


def test_another_users_slot_is_refused(world):
    # kim (kubuntu.org) activates; frank tries to revoke kim's slot 1
    kim = signin(world.web, world.op, "kim")[3]
    _, _, page = world.web.request("GET", "/", cookies={SESSION: kim})
    status, _, body = world.web.request(
        "POST", "/activate", cookies={SESSION: kim},
        form={"csrf": csrf_of(page), "domain": "kubuntu.org",
              "label": "kim's laptop"})
    assert status == 200 and "kim@kubuntu.org" in body
    frank = signin(world.web, world.op, OTHER)[3]
    _, _, page = world.web.request("GET", "/", cookies={SESSION: frank})
    for domain in ("kubuntu.org", "ubuntu.com"):
        status, _, _ = world.web.request(
            "POST", "/device/revoke", cookies={SESSION: frank},
            form={"csrf": csrf_of(page), "domain": domain, "slot": "1"})
        assert status == 403
    _, _, page = world.web.request("GET", "/", cookies={SESSION: kim})
    assert "kim&#39;s laptop" in page     # escaped, and still there


def test_activation_notified_once_by_next_sync(world):
    """Issue 8: activation sends the admin notification of doc/DESIGN.md
    section 8.  The daemon cannot submit mail; it queues the event in the
    TDB and the next doveadm launchpad sync mails it, once."""
    user = "eddie@edubuntu.org"
    session = signin(world.web, world.op, "eddie")[3]
    _, _, page = world.web.request("GET", "/", cookies={SESSION: session})
    world.sink.clear()
    status, _, body = world.web.request(
        "POST", "/activate", cookies={SESSION: session},
        form={"csrf": csrf_of(page), "domain": "edubuntu.org",
              "label": "laptop"})
    assert status == 200 and user in body
    assert world.sink.messages == []     # the daemon itself sends nothing
    res = world.dc.doveadm("launchpad", "sync", check=False)
    assert res.returncode == 0, res.stderr
    mails = [m for m in world.sink.messages if user in m["data"]]
    assert len(mails) == 1
    assert mails[0]["rcpts"] == ["<admin@example.org>"]
    text = mails[0]["data"].replace("\r", "")
    # (kim's activation of an earlier test may share the digest)
    assert re.findall(r"^activated\s+(\S+): on the self-service page, "
                      r"\d{4}-\d\d-\d\d \d\d:\d\d UTC$", text,
                      re.M).count(user) == 1
    world.sink.clear()
    res = world.dc.doveadm("launchpad", "sync", check=False)
    assert res.returncode == 0, res.stderr
    assert world.sink.messages == []


def test_expired_session_goes_back_to_signin(world):
    conf = os.path.join(world.wd.path, "short-ttl.conf.ext")
    port = free_port()
    with open(world.dc.lpconf_path) as f:
        text = f.read()
    text = re.sub(r"web_listen = .*", "web_listen = 127.0.0.1:%d" % port,
                  text)
    text = re.sub(r"web_url = .*", "web_url = http://127.0.0.1:%d" % port,
                  text)
    text = re.sub(r"web_session_ttl = .*", "web_session_ttl = 1s", text)
    with open(conf, "w") as f:
        f.write(text)
    web = Web(world.wd.path, conf, port, name="web-short").start()
    try:
        session = signin(web, world.op, ENTITLED)[3]
        _, _, page = web.request("GET", "/", cookies={SESSION: session})
        token = csrf_of(page)
        assert token is not None
        time.sleep(1.5)
        status, headers, page = web.request("GET", "/",
                                            cookies={SESSION: session})
        assert status == 200 and 'href="/login"' in page
        assert set_cookies(headers)[SESSION][0] == ""
        status, headers, _ = web.request(
            "POST", "/activate", cookies={SESSION: session},
            form={"csrf": token, "domain": "ubuntu.com"})
        assert status == 303 and header(headers, "Location") == web.base + "/"
    finally:
        assert web.stop() == 0


# ---- abuse: throttling, huge bodies, header floods, slow clients ----

def test_signin_attempts_are_throttled_others_served(world):
    statuses = []
    for i in range(1000):
        status, _, _ = world.web.request(
            "GET", "/openid/return?state=%064d" % i,
            headers={"X-Real-IP": "192.0.2.66"})
        statuses.append(status)
    assert statuses.count(429) >= 950
    assert set(statuses) <= {403, 429}
    status, _, page = world.web.request("GET", "/login")
    assert status == 303
    status, _, page = world.web.request("GET", "/")
    assert status == 200


def raw_request(port, data, read=True, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        if not read:
            return b""
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks)


def test_huge_body_header_flood_slow_clients(world):
    port = world.web.port
    # 10 MB announced: refused before it is read
    answer = raw_request(port, b"POST /activate HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/x-www-form-urlencoded"
                         b"\r\nContent-Length: 10485760\r\n\r\n" +
                         b"a" * 65536)
    assert answer.startswith(b"HTTP/1.1 413")
    # 10 MB chunked: cut off at the limit
    chunk = b"a" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk)
                    for _ in range(160))
    answer = raw_request(port, b"POST /activate HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/x-www-form-urlencoded"
                         b"\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413")
    # header flood: 4,000 headers
    flood = b"".join(b"X-Flood-%d: %s\r\n" % (i, b"b" * 100)
                     for i in range(4000))
    answer = raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + flood +
                         b"\r\n")
    assert answer == b"" or re.match(rb"HTTP/1.1 4(13|31)", answer)
    # 60 slow clients hold connections with half a request line
    slow = []
    for _ in range(60):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: ")
        slow.append(s)
    try:
        start = time.monotonic()
        status, _, _ = world.web.request("GET", "/")
        assert status == 200 and time.monotonic() - start < 5
    finally:
        for s in slow:
            s.close()
    assert world.web.proc.poll() is None


# ---- the real browser walk ----

class Shots:
    def __init__(self, driver, workdir):
        self.driver = driver
        self.dir = os.path.join(workdir, "screenshots")
        os.makedirs(self.dir, exist_ok=True)
        self.n = 0

    def __call__(self, name):
        self.n += 1
        path = os.path.join(self.dir, "%02d-%s.png" % (self.n, name))
        self.driver.save_screenshot(path)
        return path


def test_browser_walk(world, browser):
    from selenium.webdriver.common.by import By
    d, dc, user = browser, world.dc, "alice@ubuntu.com"
    shot = Shots(d, world.wd.path)
    world.op.next(ENTITLED)

    d.get(world.web.base + "/")
    shot("signin")
    d.find_element(By.LINK_TEXT, "Sign in with Ubuntu One").click()
    wait_for(lambda: "Your mailboxes" in d.title, 20, "status page")
    # Secure cookie over http://127.0.0.1: Chrome treats loopback as a
    # secure context, so it kept and sent the cookie.
    cookie = d.get_cookie(SESSION)
    assert cookie and cookie["secure"] and cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    shot("status")
    sec = section_of(d, user)
    assert "Entitled" in sec.text and "not activated" in sec.text
    assert NOT_MEMBER not in sec.text
    assert "Not entitled" in section_of(d, "alice@kubuntu.org").text

    # activate: the password once, with the settings from the config
    sec.find_element(By.NAME, "label").send_keys("laptop")
    sec.find_element(By.TAG_NAME, "button").click()
    first = shown_password(d)
    assert re.fullmatch(r"[a-z0-9]{4}(-[a-z0-9]{4}){6}", first)
    page = d.page_source
    assert str(dc.imap_port) in page and str(dc.pop3_port) in page
    assert d.find_element(By.ID, "login").text == user
    shot("activated")
    imap_login(dc, user, first).logout()
    assert first not in world.web.log_text()
    assert re.search(r"activation: alice@ubuntu\.com", world.web.log_text())

    # add a second device with the first password
    d.find_element(By.LINK_TEXT, "Done").click()
    sec = section_of(d, user)
    assert "laptop" in sec.text
    sec.find_element(By.NAME, "label").send_keys("phone")
    sec.find_element(By.NAME, "password").send_keys(first)
    sec.find_element(By.XPATH, ".//button[text()='Add device']").click()
    second = shown_password(d)
    assert second != first
    shot("device-added")
    imap_login(dc, user, second).logout()
    # the first password is now in Dovecot's auth cache too
    imap_login(dc, user, first).logout()

    # revoke the first: refused at once, the second still works
    d.find_element(By.LINK_TEXT, "Done").click()
    sec = section_of(d, user)
    rows = sec.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 2
    laptop = [r for r in rows if "laptop" in r.text][0]
    assert "never" not in laptop.text.split("\n")[-1] or True
    shot("devices")
    laptop.find_element(By.XPATH, ".//button[text()='Revoke']").click()
    wait_for(lambda: "was revoked" in d.page_source, 20, "the notice")
    shot("revoked")
    imap_refused(dc, user, first)
    imap_login(dc, user, second).logout()
    assert re.search(r"revoke: alice@ubuntu\.com, device \d+",
                     world.web.log_text())

    # reset with typed confirmation: old home kept under its new name
    home = dc.home(ENTITLED)
    sec = section_of(d, user)
    sec.find_element(By.TAG_NAME, "summary").click()
    sec.find_element(By.NAME, "confirm").send_keys("alice@ubuntu.com")
    sec.find_element(By.XPATH, ".//button[text()='Reset mailbox']").click()
    third = shown_password(d)
    shot("reset")
    moved = [n for n in os.listdir(os.path.dirname(home))
             if n.startswith(ENTITLED + ".reset-")]
    assert len(moved) == 1
    assert os.path.exists(os.path.join(os.path.dirname(home), moved[0],
                                       "sqlbox.keys"))
    imap_refused(dc, user, second)
    imap_login(dc, user, third).logout()

    # sign out
    d.find_element(By.LINK_TEXT, "Done").click()
    d.find_element(By.XPATH, "//header//button[text()='Sign out']").click()
    wait_for(lambda: d.find_elements(By.LINK_TEXT, "Sign in with Ubuntu One"),
             20, "the sign-in page")
    assert d.get_cookie(SESSION) is None
    log = world.web.log_text()
    for secret in (first, second, third):
        assert secret not in log and secret not in dc.log_text()


def test_browser_not_entitled(world, browser):
    from selenium.webdriver.common.by import By
    d = browser
    shot = Shots(d, world.wd.path)
    shot.n = 20
    world.op.next("dave")
    d.get(world.web.base + "/login")
    wait_for(lambda: "Your mailboxes" in d.title, 20, "status page")
    sec = section_of(d, "dave@ubuntu.com")
    assert "Code of Conduct not signed" in sec.text
    assert not d.find_elements(By.CSS_SELECTOR, "form[action='/activate']")
    shot("not-entitled")
    d.set_window_size(390, 844)
    shot("not-entitled-phone")
