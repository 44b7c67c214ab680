"""Issue 11: Launchpad names with "+" (^[a-z0-9][a-z0-9+.-]{1,63}$).

Dovecot's defaults split "ab+cd@ubuntu.com" at the "+" before LMTP's user
lookup (recipient_delimiter = +), which would deliver ab+cd's mail into
ab's mailbox, and refuse "ab+cd" as a login (auth_username_chars).  The
shipped auth-launchpad.conf.ext sets both, one rule for logins and
deliveries; the harness takes them from that file.  "ab" and "ab+cd" are
two entitled contributors here, each with a mailbox.
"""

import imaplib
import poplib
import smtplib

import pytest

from conftest import World
from harness import SHIPPED_AUTH_SNIPPET, shipped_setting, wait_for

DEFAULT_USERNAME_CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                          "01234567890.-_@")
# Dovecot's defaults, after the shipped lines: what an installation
# without the snippet's rule would run.
DOVECOT_DEFAULTS = ("recipient_delimiter = +\n"
                    "auth_username_chars = %s\n" % DEFAULT_USERNAME_CHARS)


def entitle_plus_names(fake):
    """ab and ab+cd: valid, Code of Conduct signed, in ~ubuntumembers
    (through ubuntu-doc-team, beside frank)."""
    for name in ("ab", "ab+cd"):
        fake.person(name, display_name=name.upper(), is_valid=True,
                    is_ubuntu_coc_signer=True)
    fake.team("ubuntu-doc-team", ["frank", "ab", "ab+cd"])


def message(to, marker):
    return ("From: sender@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\n"
            "for %s only\r\n" % (to, marker, to)).encode()


def lmtp_rcpt(dc, rcpt, data=None):
    with smtplib.LMTP("127.0.0.1", dc.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("test.example.org")
        assert lmtp.mail("sender@example.org")[0] == 250
        code, msg = lmtp.rcpt(rcpt)
        if code == 250 and data is not None:
            assert lmtp.data(data)[0] == 250
        return code, msg.decode(errors="replace")


def inbox_subjects(dc, user, password):
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
    try:
        imap.login(user, password)
        typ, data = imap.select("INBOX")
        assert typ == "OK"
        if int(data[0]) == 0:
            return []
        typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return sorted(d[1].decode().strip() for d in data
                      if isinstance(d, tuple))
    finally:
        imap.logout()


@pytest.fixture(scope="module")
def world():
    w = World()
    entitle_plus_names(w.fake)
    w.pw = {name: w.dc.generate_password(name + "@ubuntu.com")
            for name in ("ab", "ab+cd")}
    yield w
    w.close()


def test_shipped_rule():
    assert shipped_setting(SHIPPED_AUTH_SNIPPET, "recipient_delimiter") == ""
    chars = shipped_setting(SHIPPED_AUTH_SNIPPET, "auth_username_chars")
    assert "+" in chars and set(DEFAULT_USERNAME_CHARS) <= set(chars)


def test_plus_name_logs_in(world):
    dc = world.dc
    for login in ("ab+cd@ubuntu.com", "ab+cd", "AB+CD@ubuntu.com"):
        imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
        imap.login(login, world.pw["ab+cd"])
        imap.logout()
    pop = poplib.POP3("127.0.0.1", dc.pop3_port, timeout=60)
    pop.user("ab+cd@ubuntu.com")
    pop.pass_(world.pw["ab+cd"])
    pop.quit()
    # ab's password is not ab+cd's, and the other way round
    for user, other in (("ab+cd@ubuntu.com", "ab"), ("ab@ubuntu.com", "ab+cd")):
        imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(user, world.pw[other])
        imap.shutdown()


def test_mail_for_plus_name_never_reaches_the_prefix(world):
    dc = world.dc
    assert lmtp_rcpt(dc, "ab+cd@ubuntu.com",
                     message("ab+cd@ubuntu.com", "plus one"))[0] == 250
    assert lmtp_rcpt(dc, "ab@ubuntu.com",
                     message("ab@ubuntu.com", "plain one"))[0] == 250
    # a "+detail" that is no Launchpad name is an unknown user, not ab
    code, text = lmtp_rcpt(dc, "ab+nobody@ubuntu.com")
    assert code == 550, text
    assert inbox_subjects(dc, "ab+cd@ubuntu.com", world.pw["ab+cd"]) == \
        ["Subject: plus one"]
    assert inbox_subjects(dc, "ab@ubuntu.com", world.pw["ab"]) == \
        ["Subject: plain one"]
    # the log process may still be writing: wait for the line
    wait_for(lambda: "lmtp(ab+cd@ubuntu.com)" in dc.log_text(), 60,
             "the LMTP log line")
    log = dc.log_text()
    assert "Username character disallowed" not in log


def test_dovecot_defaults_would_split(make_world):
    """The control: with Dovecot's own defaults instead of the snippet's
    rule, the same delivery lands in ab's mailbox and ab+cd cannot log
    in.  This is what the shipped lines prevent."""
    w = make_world(extra_conf=DOVECOT_DEFAULTS)
    entitle_plus_names(w.fake)
    pw = {name: w.dc.generate_password(name + "@ubuntu.com")
          for name in ("ab", "ab+cd")}
    assert lmtp_rcpt(w.dc, "ab+cd@ubuntu.com",
                     message("ab+cd@ubuntu.com", "plus one"))[0] == 250
    assert inbox_subjects(w.dc, "ab@ubuntu.com", pw["ab"]) == \
        ["Subject: plus one"]
    imap = imaplib.IMAP4("127.0.0.1", w.dc.imap_port, timeout=60)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("ab+cd@ubuntu.com", pw["ab+cd"])
    imap.shutdown()
