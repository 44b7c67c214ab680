"""Issue 16: "Forward my mail to <address>" on the self-service page.

The address the (fake) Ubuntu One vouched for in its signed SReg email is
set at once (in a real headless browser); the page writes the same
forwarding script `doveadm launchpad forward` does.  Any other address
only after a link mailed to it (web_smtp_url: tests/smtpsink.py) was
opened and its button pressed by the same signed-in user: single use,
expiring, limited per user and per address across restarts.  Dovecot runs
Pigeonhole at LMTP, so the mail then really leaves through the sink."""

import hashlib
import imaplib
import json
import os
import re
import smtplib
import subprocess

import pytest

from conftest import (Background, SESSION, browser_sign_in, client_ip,
                      csrf_of, page_of, section_html, section_of, signin)
from harness import wait_for, web_state_dir
from test_web import WebWorld

USER_NAME = "ivan"          # in ~ubuntumembers, never activated
USER = USER_NAME + "@ubuntu.com"
VOUCHED = USER_NAME + ".personal@example.net"


# Pigeonhole at LMTP, running the forwarding script first.
SIEVE_LMTP_CONF = """\
protocol lmtp {
  mail_plugins = $mail_plugins sieve
}
postmaster_address = postmaster@ubuntu.com
plugin {
  sieve_before = file:~/.launchpad-forward.sieve
  sieve_redirect_envelope_from = recipient
}
"""
SMTP_FROM = "noreply@ubuntu.com"


def confirm_lpconf(world):
    return ("web_smtp_url = smtp://127.0.0.1:%d\n"
            "web_smtp_from = %s\n" % (world.sink.port, SMTP_FROM))


@pytest.fixture(scope="module")
def world():
    w = WebWorld(extra_conf=SIEVE_LMTP_CONF, extra_lpconf=confirm_lpconf)
    yield w
    assert w.close() == 0, "the daemon did not stop cleanly on SIGTERM"


def forward_show(world, user=USER):
    res = world.dc.doveadm("-f", "json", "launchpad", "forward", "show", user)
    return json.loads(res.stdout)[0]


def sign_in(world, d, mode="ok"):
    browser_sign_in(world, d, USER_NAME, mode)


def forward_form(section):
    from selenium.webdriver.common.by import By
    return section.find_element(By.CSS_SELECTOR,
                                "form[action='/forward']")


def test_forward_form_in_browser(world, browser):
    from selenium.webdriver.common.by import By
    d = browser
    sign_in(world, d)
    sec = section_of(d, USER)
    assert "Forward my mail to " + VOUCHED in sec.text
    form = forward_form(sec)
    keep = form.find_element(By.NAME, "keep")
    assert keep.is_selected()
    # Forward without a copy.
    keep.click()
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: "Your mailboxes" in d.title and
             "forwarded to" in d.page_source, 20, "notice")
    assert forward_show(world) == {"user": USER, "forward": VOUCHED,
                                   "keep": "no"}
    sec = section_of(d, USER)
    assert "no copy is kept" in sec.text
    script = os.path.join(world.dc.home(USER_NAME),
                          ".launchpad-forward.sieve")
    assert os.stat(script).st_mode & 0o777 == 0o600
    assert "Stop forwarding" in sec.text
    forward_form(sec).find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: "forwarding is off" in d.page_source, 20, "off")
    assert forward_show(world)["forward"] == ""
    # Again, keeping a copy this time.
    form = forward_form(section_of(d, USER))
    assert form.find_element(By.NAME, "keep").is_selected()
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: "a copy is kept here" in d.page_source, 20, "keep")
    assert forward_show(world)["keep"] == "yes"
    assert "forwarding on" in world.web.log_text()
    # The admin hears of it at the next sync.
    world.sink.clear()
    world.dc.doveadm("launchpad", "sync", check=False)
    mails = [m for m in world.sink.messages
             if "forwarding" in m["data"] and USER in m["data"]]
    assert mails, world.sink.messages
    world.dc.doveadm("launchpad", "forward", "clear", USER)


def test_no_vouched_address_no_form(world, browser):
    d = browser
    sign_in(world, d, mode="no-email")
    sec = section_of(d, USER)
    assert "did not tell us an address" in sec.text
    assert "Forward my mail" not in sec.text


# ---- another address: a confirmation link mailed to it ----

ALICE = "alice@ubuntu.com"
ELSEWHERE = "alice.lists@example.org"
LINK = re.compile(r"(http://127\.0\.0\.1:\d+)/forward/confirm"
                  r"\?t=([0-9a-f]{64})")


def session_of(world, name):
    status, _, body, session = signin(world.web, world.op, name)
    assert status == 200 and session, body
    return session


def request_link(world, session, address, keep=True, domain="ubuntu.com"):
    """POST /forward asking for a confirmation link to address."""
    form = {"csrf": csrf_of(page_of(world.web, session)), "domain": domain,
            "forward": "confirm", "address": address}
    if keep:
        form["keep"] = "yes"
    # each from an address of its own: the per-address POST limit is
    # test_web.py's
    return world.web.request("POST", "/forward", cookies={SESSION: session},
                             form=form, headers=client_ip())


def mails_to(world, address):
    return [m for m in world.sink.messages
            if m["rcpts"] == ["<%s>" % address]]


def link_token(world, address):
    """The token of the one confirmation mail to address (the sink holds
    what the daemon sent before it answered)."""
    mails = [m for m in mails_to(world, address)
             if "/forward/confirm?t=" in m["data"]]
    assert len(mails) == 1, world.sink.messages
    m = LINK.search(mails[0]["data"])
    assert m and m.group(1) == world.web.base, mails[0]["data"]
    return m.group(2)


def confirm_get(world, session, token):
    return world.web.request("GET", "/forward/confirm?s=1&t=" + token,
                             cookies={SESSION: session} if session else None)


def confirm_post(world, session, token, csrf=None):
    if csrf is None:
        csrf = csrf_of(confirm_get(world, session, token)[2]) or \
            csrf_of(page_of(world.web, session))
    return world.web.request("POST", "/forward/confirm",
                             cookies={SESSION: session},
                             form={"csrf": csrf, "t": token},
                             headers=client_ip())


def web_tdb(world):
    return os.path.join(web_state_dir(world.dc.workdir), "web.tdb")


def tdb_dump(world):
    return subprocess.run(["tdbdump", web_tdb(world)], check=True,
                          capture_output=True, text=True).stdout


def record_key(token):
    return "fwdconfirm/" + hashlib.sha256(token.encode()).hexdigest()


def test_confirm_link_other_address(world):
    assert forward_show(world, ALICE)["forward"] == ""
    alice = session_of(world, "alice")
    sec = section_html(page_of(world.web, alice), ALICE)
    assert "Forward to another address" in sec
    world.sink.clear()

    status, headers, body = request_link(world, alice, ELSEWHERE)
    assert status == 303, body
    assert "A confirmation link was mailed to " + ELSEWHERE in \
        page_of(world.web, alice)
    mail = mails_to(world, ELSEWHERE)[0]
    assert mail["from"] == "<%s>" % SMTP_FROM
    head = mail["data"].split("\r\n\r\n", 1)[0]
    assert "\r\nTo: %s\r\n" % ELSEWHERE in head
    assert head.startswith("From: %s\r\n" % SMTP_FROM)
    assert "Auto-Submitted: auto-generated" in head
    token = link_token(world, ELSEWHERE)
    # nothing forwarded yet; only the token's hash is stored or logged
    assert forward_show(world, ALICE)["forward"] == ""
    dump = tdb_dump(world)
    assert record_key(token) in dump and token not in dump
    assert token not in world.web.log_text()

    # the link from a mail client: no cookie (SameSite=Strict), so a page
    # of ours moves on, changing nothing
    status, _, body = world.web.request("GET", "/forward/confirm?t=" + token)
    assert status == 200 and 'http-equiv="refresh"' in body
    assert "/forward/confirm?s=1&amp;t=" + token in body
    status, _, body = confirm_get(world, None, token)
    assert status == 200 and "Sign in to confirm" in body
    # signed in: what it would do, and a button; looking twice is fine
    for _ in range(2):
        status, _, body = confirm_get(world, alice, token)
        assert status == 200, body
        assert ELSEWHERE in body and "keeping a copy here" in body
        assert 'form method="post" action="/forward/confirm"' in body
        assert forward_show(world, ALICE)["forward"] == ""
    assert record_key(token) in tdb_dump(world)

    # another user may neither see nor use it, and it stays alice's
    frank = session_of(world, "frank")
    status, _, body = confirm_get(world, frank, token)
    assert status == 403 and "another user" in body and ELSEWHERE not in body
    status, _, body = confirm_post(world, frank, token,
                                   csrf=csrf_of(page_of(world.web, frank)))
    assert status == 403 and "another user" in body
    assert forward_show(world, ALICE)["forward"] == ""
    # a POST without the session's CSRF token changes nothing
    status, _, _ = confirm_post(world, alice, token, csrf="0" * 64)
    assert status == 403
    assert forward_show(world, ALICE)["forward"] == ""

    status, headers, body = confirm_post(world, alice, token)
    assert status == 303, body
    assert forward_show(world, ALICE) == {"user": ALICE,
                                          "forward": ELSEWHERE,
                                          "keep": "yes"}
    assert "forwarded to " + ELSEWHERE in page_of(world.web, alice)
    assert record_key(token) not in tdb_dump(world)
    # used up
    status, _, body = confirm_post(world, alice, token,
                                   csrf=csrf_of(page_of(world.web, alice)))
    assert status == 404 and "not valid" in body
    assert confirm_get(world, alice, token)[0] == 404
    # the admin hears of it at the next sync
    world.sink.clear()
    world.dc.doveadm("launchpad", "sync", check=False)
    admin = [m for m in world.sink.messages
             if "forwarding" in m["data"] and ALICE in m["data"]]
    assert admin and "confirmed by mail" in admin[0]["data"], \
        world.sink.messages


def test_expired_link_refused(world):
    gina = session_of(world, "gina")
    world.sink.clear()
    address = "gina.away@example.org"
    assert request_link(world, gina, address, keep=False)[0] == 303
    token = link_token(world, address)
    key = record_key(token)
    m = re.search(r'key\(\d+\) = "%s"\ndata\(\d+\) = "(.*)"' % key,
                  tdb_dump(world))
    assert m, "no record for the token"
    record = json.loads(re.sub(r"\\([0-9A-F]{2})",
                               lambda h: chr(int(h.group(1), 16)),
                               m.group(1)))
    assert record["user"] == "gina@ubuntu.com" and \
        record["address"] == address and record["keep"] is False
    # web_confirm_ttl (24 h) ago, as if a day had passed
    record["created"] -= 24 * 3600
    subprocess.run(["tdbtool", web_tdb(world), "store", key,
                    json.dumps(record, separators=(",", ":"))],
                   check=True, capture_output=True)
    status, _, body = confirm_get(world, gina, token)
    assert status == 410 and "expired" in body
    status, _, body = confirm_post(world, gina, token,
                                   csrf=csrf_of(page_of(world.web, gina)))
    assert status == 410 and "expired" in body
    assert forward_show(world, "gina@ubuntu.com")["forward"] == ""
    # and then it is gone
    assert confirm_get(world, gina, token)[0] == 404


@pytest.mark.parametrize("name,address", enumerate([
    "alice@example.org\r\nBcc: victim@example.org",
    "alice@example.org\nBcc: victim@example.org",
    "alice@example.org\x00x",
    "Alice <alice@example.org>",
    "alice @example.org",
    "alice@example.org ",
    "alice@example",
    "al\"ice@example.org",
    "a" * 65 + "@example.org",
    "a@" + "b" * 250 + ".org",
    "",
    "SELF@ubuntu.com",      # the mailbox itself
]))
def test_bad_addresses_mail_nothing(world, name, address):
    # two users, so that the per-user POST limit is not what answers
    name = ("julia", "frank")[name % 2]
    session = session_of(world, name)
    world.sink.clear()
    status, _, body = request_link(world, session,
                                   address.replace("SELF", name))
    assert status == 400, body
    assert world.sink.messages == []
    assert forward_show(world, name + "@ubuntu.com")["forward"] == ""


def test_confirmation_mails_limited_across_restarts(world):
    henry, kevin = session_of(world, "henry"), session_of(world, "kevin")
    world.sink.clear()
    # per user per hour: 3
    for n in range(3):
        assert request_link(world, henry, "h%d@example.org" % n)[0] == 303
    status, _, body = request_link(world, henry, "h3@example.org")
    assert status == 429 and "in the last hour" in body
    assert mails_to(world, "h3@example.org") == []
    # per address per day: 3, however the address is cased
    shared = "Shared@Example.org"
    assert request_link(world, kevin, shared)[0] == 303
    assert request_link(world, kevin, shared.lower())[0] == 303
    assert request_link(world, kevin, "shared@example.ORG")[0] == 303
    # counted on disk: a restarted daemon still refuses
    assert world.web.stop() == 0
    world.web.start()
    henry, ivan = session_of(world, "henry"), session_of(world, "ivan")
    status, _, body = request_link(world, ivan, "shared@example.org")
    assert status == 429 and "in the last day" in body
    status, _, body = request_link(world, henry, "h4@example.org")
    assert status == 429 and "in the last hour" in body
    assert len([m for m in world.sink.messages
                if "/forward/confirm?t=" in m["data"]]) == 6


def test_confirmation_mail_held_others_served(world):
    """The SMTP conversation is a worker's: while the sink holds the
    confirmation mail's DATA, other clients are served; once released,
    the request completes as before."""
    julia = session_of(world, "julia")
    alice = session_of(world, "alice")
    world.sink.clear()
    world.sink.hold()
    try:
        held = Background(request_link, world, julia, "julia.held@example.org")
        assert world.sink.held(1) == 1
        # the daemon's own event loop is free meanwhile
        status, _, page = world.web.request("GET", "/",
                                            cookies={SESSION: alice})
        assert status == 200 and "Your mailboxes" in page
        status, _, css = world.web.request("GET", "/style.css")
        assert status == 200 and ":root" in css
        assert held.running
    finally:
        world.sink.release()
    status, _, body = held.result()
    assert status == 303, body
    assert "A confirmation link was mailed to julia.held@example.org" in \
        page_of(world.web, julia)
    token = link_token(world, "julia.held@example.org")
    assert confirm_get(world, julia, token)[0] == 200
    assert token not in world.web.log_text()


def test_confirmation_mail_refused_link_dropped(world):
    """The SMTP server refuses the mail: the client is told, and the link
    (which the server may have seen) is dropped, not left usable."""
    frank = session_of(world, "frank")
    world.sink.clear()
    world.sink.reject = True
    try:
        status, _, body = request_link(world, frank, "frank.x@example.org")
    finally:
        world.sink.reject = False
    assert status == 503 and "could not be sent" in body, body
    token = link_token(world, "frank.x@example.org")
    assert confirm_get(world, frank, token)[0] == 404
    assert record_key(token) not in tdb_dump(world)
    assert "confirmation mail: sending to frank.x@example.org" in \
        world.web.log_text()
    assert token not in world.web.log_text()
    assert forward_show(world, "frank@ubuntu.com")["forward"] == ""


def lmtp_deliver(dc, rcpt, marker):
    data = ("From: Sender <sender@example.org>\r\n"
            "To: %s\r\n"
            "Subject: %s\r\n"
            "Message-ID: <%s@web-forward.test>\r\n"
            "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\n"
            "body of %s\r\n" % (rcpt, marker, marker, marker)).encode()
    with smtplib.LMTP("127.0.0.1", dc.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("web-forward.test")
        assert lmtp.mail("sender@example.org")[0] == 250
        code, msg = lmtp.rcpt(rcpt)
        assert code == 250, msg
        code, msg = lmtp.data(data)
        assert code == 250, msg


def inbox_has(dc, user, password, marker):
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
    try:
        imap.login(user, password)
        assert imap.select("INBOX")[0] == "OK"
        typ, data = imap.uid("SEARCH", "SUBJECT", marker)
        assert typ == "OK"
        return bool(data[0].split())
    finally:
        imap.logout()


def test_confirmed_forward_delivers(world):
    """Delivery through the confirmed address, keeping a copy and not."""
    address = "alice.deliver@example.org"
    world.dc.doveadm("launchpad", "forward", "clear", ALICE, check=False)
    password = world.dc.generate_password(ALICE, label="laptop")
    alice = session_of(world, "alice")
    for keep in (True, False):
        world.sink.clear()
        assert request_link(world, alice, address, keep=keep)[0] == 303
        token = link_token(world, address)
        assert confirm_post(world, alice, token)[0] == 303
        assert forward_show(world, ALICE) == {
            "user": ALICE, "forward": address,
            "keep": "yes" if keep else "no"}
        marker = "WEBFWD%s" % ("KEEP" if keep else "NOKEEP")
        world.sink.clear()
        lmtp_deliver(world.dc, ALICE, marker)
        out = [m for m in mails_to(world, address)
               if "Subject: " + marker in m["data"]]
        assert len(out) == 1, world.sink.messages
        assert "body of " + marker in out[0]["data"]
        assert inbox_has(world.dc, ALICE, password, marker) == keep
    world.dc.doveadm("launchpad", "forward", "clear", ALICE)
