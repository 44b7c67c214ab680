"""Issue 20: from "never heard of it" to a working mail client.

Denial reasons on the self-service page link to the Launchpad page that
fixes them; "Check again" asks Launchpad now (rate-limited per user); the
Mozilla autoconfig document sets a client up from the address alone; an
Apple profile carrying the new app password is offered on the one page
that shows it.

One world for the module: the Launchpad fake (with stand-ins for
Launchpad's Code of Conduct and team pages), the OpenID fake, a real
Dovecot with TLS (a throw-away self-signed certificate for 127.0.0.1, so
a client can do what the autoconfig document says: STARTTLS) and the web
daemon.  The browser walk saves its screenshots under tests/out/.
"""

import imaplib
import os
import plistlib
import re
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from conftest import World  # noqa: F401  (sys.path set up there)
from conftest import (SESSION, Web, csrf_of, header, section_html,
                      section_of, signin, shown_password)
from conftest import page_of as web_page_of
from harness import (AUTH_VMAIL_MASTER_CONF, Dovecot, LaunchpadFake,
                     OpenIDFake, Workdir, free_port, wait_for, web_lpconf)

OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "out", "web_onboard")
WELL_KNOWN = "/.well-known/autoconfig/mail/config-v1.1.xml"
HOST_PATH = "/mail/config-v1.1.xml"
SUBMISSION_PORT = 465


def make_cert(directory):
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class OnboardWorld:
    def __init__(self):
        self.wd = Workdir("dlp-onboard-")
        self.fake = LaunchpadFake(self.wd.path).start()
        self.op = OpenIDFake(self.wd.path).start()
        self.cert, key = make_cert(self.wd.path)
        self.dc = Dovecot(self.wd.path, self.fake.api_url,
                          auth_cache_size="1M", auth_cache_ttl="1h",
                          extra_conf=AUTH_VMAIL_MASTER_CONF +
                          "ssl = yes\nssl_cert = <%s\nssl_key = <%s\n" %
                          (self.cert, key))
        self.port = free_port()
        self.lp_base = "http://127.0.0.1:%d" % self.fake.port
        self.dc.settings["extra_lpconf"] = web_lpconf(
            self.port, self.op, self.dc) + \
            "web_submission_port = %d\nweb_launchpad_url = %s\n" % (
                SUBMISSION_PORT, self.lp_base)
        self.dc.start()
        # root's cache exists before the daemon starts (it would look for
        # it again only some seconds later): the ban test reads it
        self.dc.doveadm("launchpad", "ban", "list")
        self.web = Web(self.wd.path, self.dc.lpconf_path, self.port).start()

    def close(self):
        code = self.web.stop()
        self.dc.stop()
        self.op.stop()
        self.fake.stop()
        self.wd.cleanup()
        return code


@pytest.fixture(scope="module")
def world():
    w = OnboardWorld()
    yield w
    code = w.close()
    assert code == 0, "the daemon did not stop cleanly on SIGTERM"


def page_of(world, session):
    return web_page_of(world.web, session)


def lp_post(world, path, name):
    req = urllib.request.Request(world.lp_base + path,
                                 data=("name=" + name).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def recheck(world, session, domain):
    token = csrf_of(page_of(world, session))
    return world.web.request("POST", "/recheck", cookies={SESSION: session},
                             form={"csrf": token, "domain": domain})


# ---- what Thunderbird reads (comm-central's readFromXML) ----

def parse_autoconfig(text, address):
    """The servers of a config-v1.1.xml as Thunderbird takes them: the
    first emailProvider, incomingServer of type imap/pop3 and outgoingServer
    of type smtp with hostname, port, socketType (plain, SSL, STARTTLS) and
    username, where %EMAILADDRESS% (and %EMAILLOCALPART%, %EMAILDOMAIN%)
    are replaced."""
    local, _, domain = address.rpartition("@")

    def sub(value):
        return (value.replace("%EMAILADDRESS%", address)
                .replace("%EMAILLOCALPART%", local)
                .replace("%EMAILDOMAIN%", domain))

    root = ET.fromstring(text)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id")
    domains = [d.text for d in provider.findall("domain")]
    servers = {"incoming": [], "outgoing": []}
    for kind, tag, types in (("incoming", "incomingServer", ("imap", "pop3")),
                             ("outgoing", "outgoingServer", ("smtp",))):
        for el in provider.findall(tag):
            assert el.get("type") in types
            socket_type = el.findtext("socketType")
            assert socket_type in ("plain", "SSL", "STARTTLS")
            auth = el.findtext("authentication")
            assert auth in ("password-cleartext", "plain")
            servers[kind].append({
                "type": el.get("type"),
                "hostname": sub(el.findtext("hostname")),
                "port": int(el.findtext("port")),
                "socketType": socket_type,
                "username": sub(el.findtext("username")),
                "raw_username": el.findtext("username"),
            })
    assert servers["incoming"], "Thunderbird needs an incoming server"
    return provider.get("id"), domains, servers


def get_autoconfig(world, path, host=None, address=None):
    query = ""
    if address is not None:
        query = "?emailaddress=" + urllib.parse.quote(address)
    headers = {"Host": host} if host is not None else {}
    return world.web.request("GET", path + query, headers=headers)


def imap_from_autoconfig(world, text, address, password):
    """Logs in with nothing but what the document says (and the test CA
    for the self-signed certificate)."""
    _, _, servers = parse_autoconfig(text, address)
    imap = [s for s in servers["incoming"] if s["type"] == "imap"][0]
    ctx = ssl.create_default_context(cafile=world.cert)
    if imap["socketType"] == "SSL":
        conn = imaplib.IMAP4_SSL(imap["hostname"], imap["port"],
                                 ssl_context=ctx, timeout=60)
    else:
        conn = imaplib.IMAP4(imap["hostname"], imap["port"], timeout=60)
        if imap["socketType"] == "STARTTLS":
            conn.starttls(ssl_context=ctx)
    conn.login(imap["username"], password)
    return conn


# ---- denial reasons and what fixes them ----

def test_denials_link_to_their_fix(world):
    lp = world.lp_base
    session = signin(world.web, world.op, "carol")[3]
    html = section_html(page_of(world, session), "carol@ubuntu.com")
    assert "account not valid" in html
    assert 'href="%s/~carol"' % lp in html
    assert "Your Launchpad account" in html
    assert 'action="/recheck"' in html
    session = signin(world.web, world.op, "erin")[3]
    page = page_of(world, session)
    html = section_html(page, "erin@ubuntu.com")
    assert "not a member of ~ubuntumembers" in html
    assert 'href="%s/~ubuntumembers"' % lp in html
    assert "How to join ~ubuntumembers" in html
    html = section_html(page, "erin@kubuntu.org")
    assert 'href="%s/~kubuntu-members"' % lp in html
    # the links open Launchpad beside the page, without our URL
    assert 'rel="noopener noreferrer"' in html


def test_banned_gets_no_link_and_no_check_again(world):
    world.dc.doveadm("launchpad", "ban", "henry", "spam")
    try:
        session = signin(world.web, world.op, "henry")[3]
        html = section_html(page_of(world, session), "henry@ubuntu.com")
        assert "user banned" in html
        assert "write to them" in html
        assert 'action="/recheck"' not in html and "href=" not in html
    finally:
        world.dc.doveadm("launchpad", "unban", "henry", check=False)


def test_check_again_shows_new_answer_and_is_limited(world):
    session = signin(world.web, world.op, "erin")[3]
    html = section_html(page_of(world, session), "erin@lubuntu.me")
    assert "not a member of ~lubuntu-members" in html
    # still cached: a plain reload keeps saying no after the fix
    lp_post(world, "/~lubuntu-members/+join", "erin")
    assert "not a member" in section_html(page_of(world, session),
                                          "erin@lubuntu.me")
    status, headers, _ = recheck(world, session, "lubuntu.me")
    assert status == 303 and header(headers, "Location").endswith("/")
    page = page_of(world, session)
    assert "Launchpad was asked again just now: erin@lubuntu.me is " \
        "entitled" in page
    html = section_html(page, "erin@lubuntu.me")
    assert "Entitled" in html and 'action="/activate"' in html
    assert re.search(r"check again: erin@lubuntu\.me: allow",
                     world.web.log_text())
    # still denied elsewhere: said so
    status, _, _ = recheck(world, session, "edubuntu.org")
    assert status == 303
    assert "still not entitled (not a member of ~edubuntu-members)" in \
        page_of(world, session)
    # the third within the minute is still served, the fourth refused
    assert recheck(world, session, "edubuntu.org")[0] == 303
    status, _, body = recheck(world, session, "edubuntu.org")
    assert status == 429 and "Asked a moment ago" in body
    # per user: someone else is not held back
    other = signin(world.web, world.op, "dave")[3]
    assert recheck(world, other, "ubuntu.com")[0] == 303
    # refused like every POST without the CSRF token or for another domain
    status, _, _ = world.web.request(
        "POST", "/recheck", cookies={SESSION: other},
        form={"csrf": "0" * 64, "domain": "ubuntu.com"})
    assert status == 403
    token = csrf_of(page_of(world, other))
    status, _, _ = world.web.request(
        "POST", "/recheck", cookies={SESSION: other},
        form={"csrf": token, "domain": "example.org"})
    assert status == 403


def test_check_again_reaches_dovecot(world):
    """A login refused before the fix (a denial in root's cache for
    negative_ttl, and in Dovecot's auth cache) works after "Check again":
    the page leaves a mark that sends root's next lookup to Launchpad,
    and flushes Dovecot's auth cache as doveadm launchpad refresh does."""
    session = signin(world.web, world.op, "stu")[3]
    html = section_html(page_of(world, session), "stu@ubuntu.net")
    assert "not a member of ~ubuntu-smtp-test" in html
    with pytest.raises(imaplib.IMAP4.error):
        imaplib.IMAP4("127.0.0.1", world.dc.imap_port, timeout=60).login(
            "stu@ubuntu.net", "not-yet-a-password")
    res = world.dc.doveadm("launchpad", "cache", "show", "stu@ubuntu.net")
    assert "deny" in res.stdout
    lp_post(world, "/~ubuntu-smtp-test/+join", "stu")
    assert recheck(world, session, "ubuntu.net")[0] == 303
    page = page_of(world, session)
    html = section_html(page, "stu@ubuntu.net")
    token = csrf_of(page)
    status, _, body = world.web.request(
        "POST", "/activate", cookies={SESSION: session},
        form={"csrf": token, "domain": "ubuntu.net", "label": "laptop"})
    assert status == 200
    password = re.search(r'id="password" name="password" autocomplete="off" '
                         r'spellcheck="false" size="36" value="([^"]+)"',
                         body).group(1)
    _, _, xml = get_autoconfig(world, HOST_PATH, address="stu@ubuntu.net")
    imap_from_autoconfig(world, xml, "stu@ubuntu.net", password).logout()


# ---- autoconfig ----

def test_autoconfig_document(world):
    for path, host, address in ((HOST_PATH, "autoconfig.kubuntu.org",
                                 "kim@kubuntu.org"),
                                (HOST_PATH, "autoconfig.ubuntu.com",
                                 "Kim@Kubuntu.ORG"),
                                (HOST_PATH, "AUTOCONFIG.Kubuntu.org:443",
                                 None),
                                (WELL_KNOWN, "kubuntu.org", None),
                                (WELL_KNOWN, "kubuntu.org",
                                 "kim@kubuntu.org")):
        status, headers, text = get_autoconfig(world, path, host, address)
        assert status == 200, (path, host, address)
        assert header(headers, "Content-Type").startswith("application/xml")
        pid, domains, servers = parse_autoconfig(text, "kim@kubuntu.org")
        assert pid == "kubuntu.org" and domains[0] == "kubuntu.org"
        assert set(domains) == {"ubuntu.com", "kubuntu.org", "lubuntu.me",
                                "edubuntu.org", "ubuntustudio.com",
                                "ubuntu.net"}
        by_type = {s["type"]: s for s in servers["incoming"]}
        assert by_type["imap"]["hostname"] == "127.0.0.1"
        assert by_type["imap"]["port"] == world.dc.imap_port
        assert by_type["imap"]["socketType"] == "STARTTLS"
        assert by_type["pop3"]["port"] == world.dc.pop3_port
        smtp = servers["outgoing"][0]
        assert smtp["port"] == SUBMISSION_PORT and smtp["socketType"] == "SSL"
        for s in servers["incoming"] + servers["outgoing"]:
            assert s["raw_username"] == "%EMAILADDRESS%"
            assert s["username"] == "kim@kubuntu.org"
    # an address of a domain not served here: 404, the client moves on
    status, _, _ = get_autoconfig(world, HOST_PATH, "autoconfig.example.org",
                                  "kim@example.org")
    assert status == 404
    # nothing of the request is echoed back
    status, _, text = get_autoconfig(world, HOST_PATH,
                                     address="<x>\"@ubuntu.com")
    assert status == 200 and "<x>" not in text and "&lt;x" not in text


def test_autoconfig_without_submission_has_no_outgoing(world):
    conf = os.path.join(world.wd.path, "no-submission.conf.ext")
    port = free_port()
    with open(world.dc.lpconf_path) as f:
        text = f.read()
    text = re.sub(r"web_listen = .*", "web_listen = 127.0.0.1:%d" % port,
                  text)
    text = re.sub(r"web_url = .*", "web_url = http://127.0.0.1:%d" % port,
                  text)
    text = re.sub(r"web_submission_port = .*", "web_submission_port =", text)
    text = re.sub(r"web_imap_port = .*", "web_imap_port = 993", text)
    with open(conf, "w") as f:
        f.write(text)
    web = Web(world.wd.path, conf, port, name="web-nosub").start()
    try:
        status, _, text = web.request("GET", WELL_KNOWN,
                                      headers={"Host": "ubuntu.com"})
        assert status == 200
        _, _, servers = parse_autoconfig(text, "alice@ubuntu.com")
        assert servers["outgoing"] == []
        imap = [s for s in servers["incoming"] if s["type"] == "imap"][0]
        assert imap["port"] == 993 and imap["socketType"] == "SSL"
    finally:
        assert web.stop() == 0


# ---- the Apple profile ----

def test_mobileconfig_only_on_the_password_page(world):
    session = signin(world.web, world.op, "alice")[3]
    page = page_of(world, session)
    assert 'action="/device/profile"' not in page
    token = csrf_of(page)
    status, headers, body = world.web.request(
        "POST", "/activate", cookies={SESSION: session},
        form={"csrf": token, "domain": "ubuntu.com", "label": "iphone"})
    assert status == 200
    assert header(headers, "Cache-Control") == "no-store"
    form = re.search(r'<form method="post" action="/device/profile">(.*?)'
                     r'</form>', body, re.S).group(1)
    fields = dict(re.findall(r'name="([a-z]+)" value="([^"]*)"', form))
    password = fields["password"]
    assert re.fullmatch(r"[a-z0-9]{4}(-[a-z0-9]{4}){6}", password)
    assert fields["domain"] == "ubuntu.com" and fields["label"] == "iphone"
    status, headers, profile = world.web.request(
        "POST", "/device/profile", cookies={SESSION: session}, form=fields)
    assert status == 200
    assert header(headers, "Content-Type") == \
        "application/x-apple-aspen-config"
    assert header(headers, "Cache-Control") == "no-store"
    assert header(headers, "Content-Disposition") == \
        'attachment; filename="alice@ubuntu.com.mobileconfig"'
    plist = plistlib.loads(profile.encode())
    assert plist["PayloadType"] == "Configuration"
    mail = plist["PayloadContent"][0]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAddress"] == "alice@ubuntu.com"
    assert mail["IncomingMailServerUsername"] == "alice@ubuntu.com"
    assert mail["IncomingPassword"] == password
    assert mail["IncomingMailServerHostName"] == "127.0.0.1"
    assert mail["IncomingMailServerPortNumber"] == world.dc.imap_port
    assert mail["IncomingMailServerUseSSL"] is False
    assert mail["OutgoingMailServerPortNumber"] == SUBMISSION_PORT
    assert mail["OutgoingMailServerUseSSL"] is True
    assert mail["OutgoingPasswordSameAsIncomingPassword"] is True
    assert mail["PayloadUUID"] != plist["PayloadUUID"]
    # the password works, and was never written down by the daemon
    imap_from_autoconfig(world, get_autoconfig(world, WELL_KNOWN,
                                               "ubuntu.com")[2],
                         "alice@ubuntu.com", password).logout()
    assert password not in world.web.log_text()
    state = os.path.join(world.wd.path, "web-state")
    for dirpath, _, files in os.walk(state):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert password.encode() not in f.read()
    # the account is always the session's own, whatever the form says
    status, _, profile = world.web.request(
        "POST", "/device/profile", cookies={SESSION: session},
        form=dict(fields, domain="kubuntu.org"))
    assert plistlib.loads(profile.encode())["PayloadContent"][0][
        "EmailAddress"] == "alice@kubuntu.org"
    # refused without the session's CSRF token, without a password, for a
    # domain not served, and without a session
    for form, want in ((dict(fields, csrf="0" * 64), 403),
                       (dict(fields, password=""), 400),
                       (dict(fields, password="a\x01b"), 400),
                       (dict(fields, domain="example.org"), 403)):
        status, _, _ = world.web.request(
            "POST", "/device/profile", cookies={SESSION: session}, form=form)
        assert status == want, form
    status, _, _ = world.web.request("POST", "/device/profile", form=fields)
    assert status == 303


# ---- the browser walk ----

class Shots:
    def __init__(self, driver):
        self.driver = driver
        shutil.rmtree(OUT_DIR, ignore_errors=True)
        os.makedirs(OUT_DIR)
        self.n = 0

    def __call__(self, name):
        self.n += 1
        path = os.path.join(OUT_DIR, "%02d-%s.png" % (self.n, name))
        self.driver.save_screenshot(path)
        return path


def test_browser_onboarding_walk(world, browser):
    """Sign in -> why not entitled -> fix it on (fake) Launchpad -> check
    again -> activate -> the autoconfig document -> IMAP login with
    nothing but what it says."""
    from selenium.webdriver.common.by import By
    d, user = browser, "dave@ubuntu.com"
    shot = Shots(d)
    world.op.next("dave")

    d.get(world.web.base + "/login")
    wait_for(lambda: "Your mailboxes" in d.title, 20, "status page")
    sec = section_of(d, user)
    assert "Code of Conduct not signed" in sec.text
    assert "have not signed it yet" in sec.text
    assert not d.find_elements(By.CSS_SELECTOR, "form[action='/activate']")
    shot("not-entitled")

    # the link opens Launchpad's signing page in a new tab
    ours = d.current_window_handle
    sec.find_element(By.LINK_TEXT, "Sign the Ubuntu Code of Conduct").click()
    wait_for(lambda: len(d.window_handles) == 2, 20, "the Launchpad tab")
    d.switch_to.window([h for h in d.window_handles if h != ours][0])
    wait_for(lambda: "Code of Conduct" in d.title, 20, "the CoC page")
    assert d.current_url == world.lp_base + "/codeofconduct"
    shot("launchpad-coc")
    d.find_element(By.ID, "name").send_keys("dave")
    d.find_element(By.XPATH, "//button[text()='Sign']").click()
    wait_for(lambda: d.find_elements(By.ID, "done"), 20, "signed")
    shot("launchpad-signed")
    d.close()
    d.switch_to.window(ours)

    # a reload still shows the cached denial; "Check again" asks now
    d.refresh()
    sec = section_of(d, user)
    assert "Code of Conduct not signed" in sec.text
    sec.find_element(By.XPATH, ".//button[text()='Check again']").click()
    wait_for(lambda: "asked again" in d.page_source, 20, "the new answer")
    assert "dave@ubuntu.com is entitled" in \
        d.find_element(By.CLASS_NAME, "notice").text
    sec = section_of(d, user)
    assert "Entitled" in sec.text and "not activated" in sec.text
    shot("checked-again")

    sec.find_element(By.NAME, "label").send_keys("laptop")
    sec.find_element(By.TAG_NAME, "button").click()
    password = shown_password(d)
    shot("activated")

    # the Apple profile, downloaded by the browser from that page alone
    downloads = tempfile.mkdtemp(prefix="downloads-", dir=world.wd.path)
    d.execute_cdp_cmd("Page.setDownloadBehavior",
                      {"behavior": "allow", "downloadPath": downloads})
    d.find_element(By.ID, "mobileconfig").click()
    profile = os.path.join(downloads, user + ".mobileconfig")
    wait_for(lambda: os.path.exists(profile), 20, "the profile download")
    with open(profile, "rb") as f:
        mail = plistlib.load(f)["PayloadContent"][0]
    assert mail["IncomingPassword"] == password
    assert mail["IncomingMailServerUsername"] == user

    # what Thunderbird fetches for the address
    d.get(world.web.base + HOST_PATH + "?emailaddress=" + user)
    shot("autoconfig")
    _, _, xml = get_autoconfig(world, HOST_PATH, "autoconfig.ubuntu.com",
                               user)
    imap = imap_from_autoconfig(world, xml, user, password)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    for name in ("not-entitled", "launchpad-coc", "checked-again",
                 "activated", "autoconfig"):
        assert any(name in f for f in os.listdir(OUT_DIR))
