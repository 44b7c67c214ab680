"""Issue 17: sending as name@domain through Dovecot's own submission
service, proven against a real Dovecot (Debian's dovecot-submissiond) with
python's smtplib as the client and tests/smtpsink.py as the relay.

The same app passwords as IMAP; the envelope sender and the header From:
(and Sender:) only as name@D for a domain D the user is entitled to now
(553 5.7.1 naming those addresses otherwise); messages per hour and
recipients per message limited with a 4xx; a banned user or a revoked app
password cannot log in.  The fake Launchpad's fixtures: alice is in
ubuntumembers, lubuntu-members and ubuntu-smtp-test; kim only in
kubuntu-members.
"""

import os
import smtplib
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from conftest import World  # noqa: E402
from smtpsink import SmtpSink  # noqa: E402


def message(sender, to, subject, extra=""):
    return ("From: %s\r\nTo: %s\r\n%sSubject: %s\r\n"
            "Message-ID: <%s@test.example.org>\r\n\r\n"
            "sent through Dovecot submission by the test suite\r\n" % (
                sender, to, extra, subject,
                subject.replace(" ", "-"))).encode()


class Env:
    def __init__(self, **lpconf):
        self.sink = SmtpSink().start()
        extra = "".join("%s = %s\n" % kv for kv in lpconf.items())
        try:
            self.world = World(submission=self.sink.port,
                               extra_lpconf=extra)
        except Exception:
            self.sink.stop()
            raise
        self.dc = self.world.dc

    def close(self):
        self.world.close()
        self.sink.stop()

    def smtp(self, user, password):
        s = smtplib.SMTP("127.0.0.1", self.dc.submission_port, timeout=60)
        s.ehlo("client.example.org")
        s.login(user, password)
        return s


@pytest.fixture(scope="module")
def env():
    e = Env()
    yield e
    e.close()


@pytest.fixture(scope="module")
def alice(env):
    return env.dc.generate_password("alice@ubuntu.com", label="laptop")


def relayed(env, subject):
    return [m for m in env.sink.messages if subject in m["data"]]


def test_own_address_relayed_unchanged(env, alice):
    msg = message("Alice <alice@ubuntu.com>", "friend@example.org",
                  "own address")
    with env.smtp("alice@ubuntu.com", alice) as s:
        assert s.sendmail("alice@ubuntu.com", ["friend@example.org"],
                          msg) == {}
    (got,) = relayed(env, "own address")
    assert got["from"].startswith("<alice@ubuntu.com>")
    assert got["rcpts"] == ["<friend@example.org>"]
    # Dovecot puts its Received: line on top; the message is unchanged
    assert got["data"].startswith("Received: ")
    assert got["data"].endswith(msg.decode())


def test_bare_login_sends_as_first_domain(env, alice):
    with env.smtp("alice", alice) as s:
        s.sendmail("alice@ubuntu.com", ["friend@example.org"],
                   message("alice@ubuntu.com", "friend@example.org",
                           "bare login"))
    assert len(relayed(env, "bare login")) == 1


def test_other_envelope_sender_refused(env, alice):
    with env.smtp("alice@ubuntu.com", alice) as s:
        for sender in ("bob@ubuntu.com", "alice@kubuntu.org",
                       "alice@example.org", "alice@ubuntu.com.evil.org",
                       ""):
            code, text = s.mail(sender)
            text = text.decode()
            assert code == 553, (sender, code, text)
            assert text.startswith("5.7.1 "), text
            # the reason names every address alice may use
            for own in ("alice@ubuntu.com", "alice@lubuntu.me",
                        "alice@ubuntu.net"):
                assert "<%s>" % own in text, text
            s.rset()
    assert env.sink.messages == [] or all(
        "alice@kubuntu.org" not in m["from"] for m in env.sink.messages)


@pytest.mark.parametrize("header,extra", [
    ("From: Bob <bob@ubuntu.com>", ""),
    ("From: alice@ubuntu.com, mallory@example.org", ""),
    ("From: alice@ubuntu.com", "Sender: mallory@example.org\r\n"),
    ("From: undisclosed:;", ""),
    ("From: =?utf-8?q?Alice?= <alice@kubuntu.org>", ""),
])
def test_other_header_from_refused(env, alice, header, extra):
    subject = "forged %d" % abs(hash(header + extra))
    msg = ("%s\r\nTo: friend@example.org\r\n%sSubject: %s\r\n\r\n"
           "body\r\n" % (header, extra, subject)).encode()
    with env.smtp("alice@ubuntu.com", alice) as s:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail("alice@ubuntu.com", ["friend@example.org"], msg)
    assert exc.value.smtp_code == 553
    text = exc.value.smtp_error.decode()
    assert text.startswith("5.7.1 ") and "<alice@ubuntu.com>" in text
    assert relayed(env, subject) == []


def test_missing_from_refused(env, alice):
    msg = b"To: friend@example.org\r\nSubject: no from\r\n\r\nbody\r\n"
    with env.smtp("alice@ubuntu.com", alice) as s:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail("alice@ubuntu.com", ["friend@example.org"], msg)
    assert exc.value.smtp_code == 553
    assert relayed(env, "no from") == []


def test_two_domains_both_usable(env, alice):
    """Entitled on several domains: each of them, as envelope and From:,
    from the one mailbox's login; a folded From: and a matching Sender:
    too."""
    with env.smtp("alice@ubuntu.com", alice) as s:
        s.sendmail("alice@ubuntu.net", ["friend@example.org"],
                   message("alice@ubuntu.net", "friend@example.org",
                           "second domain"))
        s.sendmail("alice@lubuntu.me", ["friend@example.org"],
                   message("Alice\r\n <ALICE@lubuntu.me>",
                           "friend@example.org", "third domain",
                           extra="Sender: alice@ubuntu.com\r\n"))
    assert relayed(env, "second domain")[0]["from"].startswith(
        "<alice@ubuntu.net>")
    assert relayed(env, "third domain")[0]["from"].startswith(
        "<alice@lubuntu.me>")


def test_one_domain_only(env):
    pw = env.dc.generate_password("kim@kubuntu.org", label="kim")
    with env.smtp("kim@kubuntu.org", pw) as s:
        code, text = s.mail("kim@ubuntu.com")
        assert code == 553 and text.decode().endswith(
            "you may send as <kim@kubuntu.org>"), text
        s.rset()
        s.sendmail("kim@kubuntu.org", ["friend@example.org"],
                   message("kim@kubuntu.org", "friend@example.org",
                           "kim sends"))
    assert len(relayed(env, "kim sends")) == 1


def test_wrong_password_refused(env, alice):
    with pytest.raises(smtplib.SMTPAuthenticationError):
        env.smtp("alice@ubuntu.com", alice + "x")


def test_banned_user_refused(env):
    user = "gina@ubuntu.com"
    pw = env.dc.generate_password(user, label="gina")
    # a session that is open when the ban comes is ended (kicked)
    live = env.smtp(user, pw)
    live.sendmail(user, ["friend@example.org"],
                  message(user, "friend@example.org", "before the ban"))
    env.dc.doveadm("launchpad", "ban", "gina", "spam")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        env.smtp(user, pw)
    with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
        live.mail(user)
        live.rcpt("friend@example.org")
        live.data(message(user, "friend@example.org", "after the ban"))
    assert relayed(env, "after the ban") == []
    env.dc.doveadm("launchpad", "unban", "gina")
    env.smtp(user, pw).quit()


def test_revoked_app_password_refused(env):
    user = "julia@ubuntu.com"
    pw1 = env.dc.generate_password(user, label="laptop")
    pw2 = env.dc.generate_password(user, label="phone", existing=pw1)
    env.smtp(user, pw1).quit()          # now in Dovecot's auth cache
    env.dc.doveadm("launchpad", "password", "revoke", user, "1")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        env.smtp(user, pw1)
    with env.smtp(user, pw2) as s:
        s.sendmail(user, ["friend@example.org"],
                   message(user, "friend@example.org", "other device"))
    assert len(relayed(env, "other device")) == 1


def test_shipped_snippet():
    """The tests run the shipped snippet's plugin list; it listens on 587
    and wants TLS before AUTH."""
    from harness import SHIPPED_SUBMISSION_SNIPPET, shipped_submission_plugins
    assert shipped_submission_plugins().split()[-2:] == [
        "sqlbox", "submission_launchpad"]
    with open(SHIPPED_SUBMISSION_SNIPPET) as f:
        text = f.read()
    assert "port = 587" in text and "ssl = required" in text


@pytest.fixture(scope="module")
def limited():
    e = Env(send_messages_per_hour=3, send_recipients_per_message=2)
    yield e
    e.close()


def test_recipient_limit(limited):
    user = "henry@ubuntu.com"
    pw = limited.dc.generate_password(user, label="henry")
    with limited.smtp(user, pw) as s:
        assert s.mail(user)[0] == 250
        assert s.rcpt("one@example.org")[0] == 250
        assert s.rcpt("two@example.org")[0] == 250
        code, text = s.rcpt("three@example.org")
        assert code == 452 and text.decode().startswith("4.5.3 "), text
        code, _ = s.data(message(user, "one@example.org", "two rcpts"))
        assert code == 250
        # a new transaction starts counting again
        assert s.mail(user)[0] == 250
        assert s.rcpt("three@example.org")[0] == 250
        s.rset()
    (got,) = relayed(limited, "two rcpts")
    assert got["rcpts"] == ["<one@example.org>", "<two@example.org>"]


def test_hourly_limit(limited):
    """3 messages an hour: three pass, then 4xx at MAIL FROM, in a new
    session too; refused messages do not count, other users are not
    affected."""
    user = "ivan@ubuntu.com"
    pw = limited.dc.generate_password(user, label="ivan")
    with limited.smtp(user, pw) as s:
        with pytest.raises(smtplib.SMTPDataError):
            s.sendmail(user, ["x@example.org"],
                       message("bob@ubuntu.com", "x@example.org", "forged"))
        for i in range(3):
            s.sendmail(user, ["x@example.org"],
                       message(user, "x@example.org", "hourly %d" % i))
        code, text = s.mail(user)
        assert code == 451 and text.decode().startswith("4.7.1 "), text
        assert "3 messages per hour" in text.decode()
    with limited.smtp(user, pw) as s:
        assert s.mail(user)[0] == 451
    assert len([m for m in limited.sink.messages
                if "hourly" in m["data"]]) == 3
    other = "julia@ubuntu.com"
    pw = limited.dc.generate_password(other, label="julia")
    with limited.smtp(other, pw) as s:
        s.sendmail(other, ["x@example.org"],
                   message(other, "x@example.org", "julia within limit"))
