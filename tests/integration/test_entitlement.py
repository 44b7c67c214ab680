"""Issue 2: who gets a mailbox, proven against a real Dovecot.

Every row of the decision table (doc/DESIGN.md section 4) over IMAP, POP3 and
LMTP, hostile login names, Launchpad outages with and without Dovecot's auth
cache, cache invalidation and coalesced cold lookups.  The fake Launchpad is
tests/lpfake.py with tests/fixtures/launchpad.json.
"""

import base64
import concurrent.futures
import imaplib
import os
import poplib
import re
import smtplib
import time

import pytest

from conftest import World

MESSAGE = (b"From: sender@example.org\r\nTo: alice@ubuntu.com\r\n"
           b"Subject: entitlement test\r\n\r\nhello from the test suite\r\n")


@pytest.fixture(scope="module")
def world():
    w = World()
    yield w
    w.close()


@pytest.fixture(scope="module")
def alice(world):
    return world.dc.generate_password("alice@ubuntu.com", label="laptop")


def imap_login(dc, user, password):
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
    try:
        imap.login(user, password)
    except Exception:
        imap.shutdown()
        raise
    return imap


def imap_login_error(dc, user, password):
    """The server's answer text for a failed login."""
    with pytest.raises(imaplib.IMAP4.error) as exc:
        imap_login(dc, user, password).logout()
    return str(exc.value)


def pop3_login(dc, user, password):
    pop = poplib.POP3("127.0.0.1", dc.pop3_port, timeout=60)
    pop.user(user)
    pop.pass_(password)
    return pop


def lmtp_rcpt(dc, rcpt, data=None):
    with smtplib.LMTP("127.0.0.1", dc.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("test.example.org")
        code, _ = lmtp.mail("sender@example.org")
        assert code == 250
        code, msg = lmtp.rcpt(rcpt)
        if code == 250 and data is not None:
            lmtp.putcmd("data")
            dcode, _ = lmtp.getreply()
            assert dcode == 354
            lmtp.send(data + b".\r\n")
            dcode, dmsg = lmtp.getreply()
            assert dcode == 250, dmsg
        return code, msg.decode(errors="replace")


def person_requests(fake, name):
    return [r for r in fake.requests() if r["path"].endswith("/~" + name)]


def api_requests(fake):
    return [r for r in fake.requests() if "/~" in r["path"]]


def wait_log(dc, pattern, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, dc.log_text()):
            return True
        time.sleep(0.1)
    return False


# ---- row 8: an entitled contributor uses the mailbox ----

def test_entitled_user_imap_select_append_fetch(world, alice):
    imap = imap_login(world.dc, "alice@ubuntu.com", alice)
    typ, data = imap.select("INBOX")
    assert typ == "OK"
    before = int(data[0])
    typ, _ = imap.append("INBOX", None, None, MESSAGE)
    assert typ == "OK"
    typ, data = imap.select("INBOX")
    assert int(data[0]) == before + 1
    typ, data = imap.fetch(str(before + 1), "(BODY[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    assert b"entitlement test" in data[0][1]
    imap.logout()


def test_entitled_user_pop3(world, alice):
    imap = imap_login(world.dc, "alice@ubuntu.com", alice)
    imap.append("INBOX", None, None, MESSAGE)
    imap.logout()
    pop = pop3_login(world.dc, "alice@ubuntu.com", alice)
    count, _ = pop.stat()
    assert count >= 1
    _, lines, _ = pop.retr(1)
    assert b"hello from the test suite" in b"\n".join(lines)
    pop.quit()


def test_bare_name_uses_first_domain(world, alice):
    imap = imap_login(world.dc, "alice", alice)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()


def test_login_is_case_insensitive(world, alice):
    imap = imap_login(world.dc, "ALICE@Ubuntu.COM", alice)
    imap.logout()


def test_wrong_password_is_authenticationfailed(world, alice):
    text = imap_login_error(world.dc, "alice@ubuntu.com",
                            "abcd-efgh-jkmn-pqrs-tuvw-xyz2-3456")
    assert "AUTHENTICATIONFAILED" in text
    # and the right one still works afterwards (auth cache is on)
    imap_login(world.dc, "alice@ubuntu.com", alice).logout()


def test_indirect_member_via_subteam(world):
    password = world.dc.generate_password("frank@ubuntu.com")
    imap_login(world.dc, "frank@ubuntu.com", password).logout()


def test_second_domain_uses_its_team(world):
    password = world.dc.generate_password("kim@kubuntu.org")
    imap_login(world.dc, "kim@kubuntu.org", password).logout()
    # kim is not in ~ubuntumembers
    res = world.dc.doveadm("launchpad", "password", "generate",
                           "kim@ubuntu.com", check=False)
    assert res.returncode == 77, res.stderr          # EX_NOPERM
    assert "not a member of ~ubuntumembers" in res.stderr


def test_several_app_passwords_do_not_lock_each_other_out(world, alice):
    second = world.dc.generate_password("alice@ubuntu.com", label="phone",
                                        existing=alice)
    assert second != alice
    for _ in range(2):
        imap_login(world.dc, "alice@ubuntu.com", second).logout()
        imap_login(world.dc, "alice@ubuntu.com", alice).logout()
        assert "AUTHENTICATIONFAILED" in imap_login_error(
            world.dc, "alice@ubuntu.com", "wrong")
    imap_login(world.dc, "alice@ubuntu.com", second).logout()


def test_generate_without_existing_password_is_refused(world, alice):
    res = world.dc.doveadm("launchpad", "password", "generate",
                           "alice@ubuntu.com", check=False)
    assert res.returncode == 77
    assert "already has app passwords" in res.stderr
    res = world.dc.doveadm("launchpad", "password", "generate", "-e",
                           "alice@ubuntu.com", input="not-the-password\n",
                           check=False)
    assert res.returncode == 77


def test_keyfile_is_private(world, alice):
    path = os.path.join(world.dc.home("alice"), "sqlbox.keys")
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o600
    import pwd
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid
    with open(path, "rb") as f:
        assert alice.encode() not in f.read()


# ---- rows 1-7: refusals, each with its reason in the log ----

@pytest.mark.parametrize("user,client_text,log_reason", [
    ("bob@ubuntu.com", "account not valid", "account not valid"),
    ("carol@ubuntu.com", "account not valid", "account not valid"),
    ("dave@ubuntu.com", "Code of Conduct not signed",
     "Code of Conduct not signed"),
    ("erin@ubuntu.com", "not a member of ~ubuntumembers",
     "not a member of ~ubuntumembers"),
    ("nosuchperson@ubuntu.com", "AUTHENTICATIONFAILED",
     "no such Launchpad user"),
    ("alice@example.org", "AUTHENTICATIONFAILED", "domain not configured"),
])
def test_refused_with_reason(world, user, client_text, log_reason):
    text = imap_login_error(world.dc, user, "any-password")
    assert client_text in text
    assert wait_log(world.dc, re.escape(user.split("@")[0]) +
                    r".*denied: " + re.escape(log_reason)), \
        world.dc.log_text()[-3000:]


def test_refused_over_pop3(world):
    with pytest.raises(poplib.error_proto) as exc:
        pop3_login(world.dc, "dave@ubuntu.com", "any-password")
    assert "Code of Conduct not signed" in str(exc.value)


def test_ban_and_unban(world):
    password = world.dc.generate_password("gina@ubuntu.com")
    imap_login(world.dc, "gina@ubuntu.com", password).logout()
    world.dc.doveadm("launchpad", "ban", "gina", "spam complaints")
    text = imap_login_error(world.dc, "gina@ubuntu.com", password)
    assert "user banned" in text
    assert wait_log(world.dc, r"denied: user banned: spam complaints")
    res = world.dc.doveadm("-f", "json", "launchpad", "cache", "show",
                           "gina@ubuntu.com")
    assert '"banned":"yes"' in res.stdout.replace(" ", "")
    world.dc.doveadm("launchpad", "unban", "gina")
    imap_login(world.dc, "gina@ubuntu.com", password).logout()


def test_deny_reason_is_in_cache_show(world):
    imap_login_error(world.dc, "erin@ubuntu.com", "x")
    res = world.dc.doveadm("-f", "json", "launchpad", "cache", "show",
                           "erin@ubuntu.com")
    assert "not a member of ~ubuntumembers" in res.stdout
    assert '"verdict":"deny"' in res.stdout.replace(" ", "")


def test_cache_show_unknown_user_is_notfound(world):
    res = world.dc.doveadm("launchpad", "cache", "show", "zed@ubuntu.com",
                           check=False)
    assert res.returncode == 68


HOSTILE = ["../x", "a%2fb", "a" * 300, "al\u00efce", "alice@otherdomain.org",
           "x", "-alice", "alice/../../etc", "alice\tfoo", "ALICE@ubuntu.com.evil"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_login_names_make_no_request(world, name):
    world.fake.reset()
    pop = poplib.POP3("127.0.0.1", world.dc.pop3_port, timeout=30)
    try:
        pop._putcmd("USER " + name)
        pop._getresp()
        pop._putcmd("PASS whatever")
        with pytest.raises(poplib.error_proto):
            pop._getresp()
    except poplib.error_proto:
        pass          # refused already at USER
    finally:
        pop.close()
    assert api_requests(world.fake) == []


def test_nul_in_login_makes_no_request(world):
    """AUTHENTICATE PLAIN whose fields carry an extra NUL."""
    world.fake.reset()
    imap = imaplib.IMAP4("127.0.0.1", world.dc.imap_port, timeout=30)
    resp = base64.b64encode(b"\0alice\0evil\0pw")
    tag = imap._new_tag()
    imap.send(tag + b" AUTHENTICATE PLAIN " + resp + b"\r\n")
    line = imap.readline()
    while line and not line.startswith(tag):
        line = imap.readline()
    assert line.startswith(tag + b" NO") or line.startswith(tag + b" BAD")
    imap.shutdown()
    assert api_requests(world.fake) == []


# ---- LMTP: 250 / 550 / 451 by the same rules ----

def test_lmtp_entitled_250_and_delivered(world, alice):
    code, _ = lmtp_rcpt(world.dc, "alice@ubuntu.com",
                        MESSAGE.replace(b"entitlement test", b"via lmtp"))
    assert code == 250
    imap = imap_login(world.dc, "alice@ubuntu.com", alice)
    imap.select("INBOX")
    typ, data = imap.search(None, "SUBJECT", '"via lmtp"')
    assert data[0].split(), "LMTP mail not in INBOX"
    imap.logout()


@pytest.mark.parametrize("rcpt", ["erin@ubuntu.com", "nosuchperson@ubuntu.com",
                                  "carol@ubuntu.com", "alice@example.org"])
def test_lmtp_denied_550(world, rcpt):
    code, _ = lmtp_rcpt(world.dc, rcpt)
    assert code == 550


def test_lmtp_entitled_without_keyfile_451(world):
    # henry is entitled but has never had an app password: no public key to
    # seal mail to yet, so the MTA must keep it and retry.
    code, _ = lmtp_rcpt(world.dc, "henry@ubuntu.com")
    assert code == 451
    assert wait_log(world.dc, r"mailbox not activated")


# ---- cache invalidation reaches the next login, auth cache included ----

def test_cache_invalidate_takes_effect_with_auth_cache(world):
    password = world.dc.generate_password("ivan@ubuntu.com")
    imap_login(world.dc, "ivan@ubuntu.com", password).logout()
    imap_login(world.dc, "ivan@ubuntu.com", password).logout()   # cached
    world.fake.person("ivan", is_ubuntu_coc_signer=False)
    # still cached: Launchpad is not asked
    world.fake.reset()
    imap_login(world.dc, "ivan@ubuntu.com", password).logout()
    assert person_requests(world.fake, "ivan") == []
    res = world.dc.doveadm("-f", "json", "launchpad", "cache", "invalidate",
                           "ivan@ubuntu.com")
    assert '"auth_cache":' in res.stdout
    text = imap_login_error(world.dc, "ivan@ubuntu.com", password)
    assert "Code of Conduct not signed" in text
    assert len(person_requests(world.fake, "ivan")) == 1


def test_userdb_iterate_lists_cached_entitled_users(world, alice):
    res = world.dc.doveadm("user", "*")
    users = res.stdout.split()
    assert "alice@ubuntu.com" in users
    assert "erin@ubuntu.com" not in users


# ---- concurrency: 50 parallel cold logins, one Launchpad request ----

def test_parallel_cold_logins_make_one_request(world):
    password = world.dc.generate_password("kevin@ubuntu.com")
    world.dc.doveadm("launchpad", "cache", "invalidate", "kevin")
    world.fake.reset()
    world.fake.fault("slow", path=r"/~kevin$", delay=1, count=None)
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: imap_login(
            world.dc, "kevin@ubuntu.com", password).logout()[0], range(50)))
    assert results == ["BYE"] * 50
    assert len(person_requests(world.fake, "kevin")) == 1


# ---- Launchpad down ----

def test_launchpad_down_cached_user_logs_in_uncached_unavailable(make_world):
    w = make_world(positive_ttl="1s", negative_ttl="1s", stale_grace="1h",
                   auth_cache_size="0")
    password = w.dc.generate_password("alice@ubuntu.com")
    imap_login(w.dc, "alice@ubuntu.com", password).logout()
    w.fake.stop()
    time.sleep(1.5)             # the allow is now past positive_ttl
    imap_login(w.dc, "alice@ubuntu.com", password).logout()
    assert wait_log(w.dc, r"allowed from an expired cache record")
    text = imap_login_error(w.dc, "frank@ubuntu.com", "any")
    assert "UNAVAILABLE" in text
    code, _ = lmtp_rcpt(w.dc, "frank@ubuntu.com")
    assert code == 451
    code, _ = lmtp_rcpt(w.dc, "alice@ubuntu.com")
    assert code == 250


@pytest.mark.parametrize("mode", ["500", "503", "nonjson", "wrongtypes",
                                  "truncated", "huge", "redirect-offhost"])
def test_launchpad_faults_are_tempfail_never_allow(make_world, mode):
    w = make_world(auth_cache_size="0", http_timeout="2s")
    w.fake.fault(mode)
    text = imap_login_error(w.dc, "alice@ubuntu.com", "whatever")
    assert "UNAVAILABLE" in text
    code, _ = lmtp_rcpt(w.dc, "alice@ubuntu.com")
    assert code == 451


def test_launchpad_hang_is_bounded(make_world):
    w = make_world(auth_cache_size="0", http_timeout="2s")
    w.fake.fault("hang", delay=30)
    start = time.monotonic()
    text = imap_login_error(w.dc, "alice@ubuntu.com", "whatever")
    assert "UNAVAILABLE" in text
    assert time.monotonic() - start < 25


def test_stale_grace_holds_with_auth_cache(make_world):
    """Dovecot's auth cache falls back to an expired entry of any age when
    the passdb fails; past stale_grace that must not log anyone in."""
    w = make_world(positive_ttl="1s", negative_ttl="1s", stale_grace="2s",
                   auth_cache_size="1M", auth_cache_ttl="1s")
    password = w.dc.generate_password("alice@ubuntu.com")
    imap_login(w.dc, "alice@ubuntu.com", password).logout()
    w.fake.stop()
    time.sleep(1.5)       # within grace: stale allow
    imap_login(w.dc, "alice@ubuntu.com", password).logout()
    time.sleep(3.0)       # past grace
    text = imap_login_error(w.dc, "alice@ubuntu.com", password)
    assert "UNAVAILABLE" in text
    assert wait_log(w.dc, r"flushed [1-9][0-9]* auth cache entries")
    assert "Falling back to expired data from cache" not in \
        w.dc.log_text().split("allowed from an expired cache record")[-1]
    # Launchpad back: logins recover once the outage back-off (one
    # http_timeout, 3 s here) has passed, without any admin action.
    w.fake.restart()
    deadline = time.monotonic() + 10
    while True:
        try:
            imap_login(w.dc, "alice@ubuntu.com", password).logout()
            break
        except imaplib.IMAP4.error as e:
            assert "UNAVAILABLE" in str(e)
            assert time.monotonic() < deadline, "no recovery after outage"
            time.sleep(0.5)


# ---- Dovecot's auth cache and secrets ----

def test_secrets_never_in_log(world, alice):
    imap_login(world.dc, "alice@ubuntu.com", alice).logout()
    imap_login_error(world.dc, "alice@ubuntu.com", alice + "x")
    log = world.dc.log_text()
    assert alice not in log
    assert alice.replace("-", "") not in log
    assert "sqlbox_kek" not in log


def test_repeat_login_is_answered_by_auth_cache(make_world):
    """With auth_cache_size > 0 a repeat login runs no Argon2id: the auth
    master answers from its cache without asking an auth-worker."""
    w = make_world(auth_debug="yes")
    password = w.dc.generate_password("alice@ubuntu.com")
    for _ in range(3):
        imap_login(w.dc, "alice@ubuntu.com", password).logout()
    # the log process writes auth's lines after the reply: wait for them
    assert wait_log(w.dc, r"(?s)cache hit.*cache hit", 60)
    log = w.dc.log_text()
    assert log.count("app password slot") == 1, log[-4000:]
    assert "cache hit" in log
    # a second app password is a separate cache entry, not a mismatch
    second = w.dc.generate_password("alice@ubuntu.com", label="phone",
                                    existing=password)
    imap_login(w.dc, "alice@ubuntu.com", second).logout()
    imap_login(w.dc, "alice@ubuntu.com", password).logout()
    assert wait_log(w.dc, r"(?s)app password slot.*app password slot", 60)
    assert w.dc.log_text().count("app password slot") == 2
