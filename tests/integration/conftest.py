import http.client
import os
import re
import shutil
import sys
import tempfile
import threading
import urllib.parse
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import (Dovecot, LaunchpadFake, WebDaemon, Workdir,  # noqa: E402
                     wait_for)


class World:
    """One fake Launchpad + one Dovecot, torn down together."""

    def __init__(self, **dovecot_settings):
        self.wd = Workdir()
        self.fake = LaunchpadFake(self.wd.path).start()
        try:
            self.dc = Dovecot(self.wd.path, self.fake.api_url,
                              **dovecot_settings).start()
        except Exception:
            self.fake.stop()
            raise

    def close(self):
        self.dc.stop()
        self.fake.stop()
        self.wd.cleanup()


@pytest.fixture
def make_world():
    worlds = []

    def make(**settings):
        w = World(**settings)
        worlds.append(w)
        return w
    yield make
    for w in worlds:
        w.close()


# ---- the self-service page (test_web*.py): an HTTP client, sign-in ----

SESSION = "__Host-dlpw_session"
LOGIN = "__Host-dlpw_login"


class Web(WebDaemon):
    """The daemon plus a tiny cookie-aware HTTP client."""

    def request(self, method, path, cookies=None, form=None, headers=None,
                body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        hdrs = dict(headers or {})
        if cookies:
            hdrs["Cookie"] = "; ".join("%s=%s" % kv for kv in cookies.items())
        if form is not None:
            body = "&".join("%s=%s" % (k, urllib.parse.quote(v, safe=""))
                            for k, v in form.items())
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read().decode(errors="replace")
        result = (resp.status, resp.getheaders(), data)
        conn.close()
        return result


# a failure guard for a held request's thread, never a timing assumption
GUARD_SECS = 120


class Background:
    """fn(*args) in a thread: the request the fake holds."""

    def __init__(self, fn, *args):
        self.out = self.err = None
        self.thread = threading.Thread(target=self._run, args=(fn, args),
                                       daemon=True)
        self.thread.start()

    def _run(self, fn, args):
        try:
            self.out = fn(*args)
        except BaseException as e:  # noqa: B902 (re-raised in result())
            self.err = e

    @property
    def running(self):
        return self.thread.is_alive()

    def result(self):
        self.thread.join(GUARD_SECS)
        assert not self.thread.is_alive(), "the held request never ended"
        if self.err is not None:
            raise self.err
        return self.out


def header(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def set_cookies(headers):
    """{name: (value, attributes)} of every Set-Cookie."""
    out = {}
    for k, v in headers:
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            value, _, attrs = rest.partition(";")
            out[name] = (value, attrs)
    return out


def csrf_of(page):
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    return m.group(1) if m else None


SIGNIN_COUNT = [0]


def client_ip():
    """A fresh client address per sign-in (X-Real-IP, trusted from
    127.0.0.1 by web_trusted_proxies, as behind nginx), so the per-address
    sign-in limit is exercised only where a test means to."""
    SIGNIN_COUNT[0] += 1
    return {"X-Real-IP": "198.51.100.%d" % (SIGNIN_COUNT[0] % 250 + 1)}


def signin(web, op, nickname, mode="ok"):
    """The three hops of a sign-in without a browser. Returns
    (status, headers, body, session id or None)."""
    op.next(nickname, mode)
    ip = client_ip()
    status, headers, _ = web.request("GET", "/login", headers=ip)
    assert status == 303
    login_cookie = set_cookies(headers)[LOGIN][0]
    location = header(headers, "Location")
    assert location.startswith(op.url + "?")
    url = urlsplit(location)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", url.path + "?" + url.query)
    resp = conn.getresponse()
    resp.read()
    back = urlsplit(resp.getheader("Location"))
    conn.close()
    assert back.port == web.port
    status, headers, body = web.request(
        "GET", back.path + "?" + back.query, cookies={LOGIN: login_cookie},
        headers=ip)
    session = set_cookies(headers).get(SESSION, ("", ""))[0] or None
    return status, headers, body, session


def page_of(web, session):
    """The start page of a signed-in session (200)."""
    status, _, page = web.request("GET", "/", cookies={SESSION: session})
    assert status == 200
    return page


def section_html(page, user):
    m = re.search(r"<section><h2>%s</h2>(.*?)</section>" % re.escape(user),
                  page, re.S)
    assert m, "no section for " + user
    return m.group(1)


# ---- the same in a real browser (headless Chromium, python3-selenium) ----

def chromium(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--no-first-run", "--user-data-dir=" + profile,
                "--window-size=1000,1300"):
        options.add_argument(arg)
    service = Service(shutil.which("chromedriver") or
                      "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=options)


@pytest.fixture
def browser(world):
    """Chromium for the module's world (its fixture `world` must have a
    .wd work dir); tests/install-deps.sh installs it: a missing browser is
    a failure, never a silently skipped walk."""
    assert shutil.which("chromium") and shutil.which("chromedriver"), \
        "chromium / chromium-driver not installed (tests/install-deps.sh)"
    profile = tempfile.mkdtemp(prefix="chromium-", dir=world.wd.path)
    driver = chromium(profile)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def browser_sign_in(world, driver, nickname, mode="ok"):
    """Signs nickname in through the start page's button (world.op the
    OpenID fake, world.web the daemon); waits for the status page."""
    from selenium.webdriver.common.by import By
    world.op.next(nickname, mode)
    driver.get(world.web.base + "/")
    driver.find_element(By.LINK_TEXT, "Sign in with Ubuntu One").click()
    wait_for(lambda: "Your mailboxes" in driver.title, 20, "status page")


def section_of(driver, user):
    from selenium.webdriver.common.by import By
    for section in driver.find_elements(By.TAG_NAME, "section"):
        if section.find_element(By.TAG_NAME, "h2").text == user:
            return section
    raise AssertionError("no section for " + user)


def shown_password(driver):
    from selenium.webdriver.common.by import By
    wait_for(lambda: driver.find_elements(By.ID, "password"), 20,
             "the password page")
    field = driver.find_element(By.ID, "password")
    assert field.get_attribute("readonly") is not None
    return field.get_attribute("value")
