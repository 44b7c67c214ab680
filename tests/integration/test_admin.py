"""Issue 5: the `doveadm launchpad` admin commands, the periodic sync and
its notifications, against a real Dovecot (auth cache on), the loopback
Launchpad (tests/lpfake.py) and a loopback SMTP sink (tests/smtpsink.py)
that Dovecot's own submission_host points at.
"""

import base64
import imaplib
import json
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import World
from smtpsink import SmtpSink

EVENT_RE = re.compile(r"^(entitled|denied|deprovisioned)\s+(\S+?)(?::|$)",
                      re.M)


def x25519_keypair():
    """(secret, public) base64, from openssl (raw key = last 32 DER bytes)."""
    der = subprocess.run(["openssl", "genpkey", "-algorithm", "X25519",
                          "-outform", "DER"], check=True,
                         capture_output=True).stdout
    pub = subprocess.run(["openssl", "pkey", "-inform", "DER", "-pubout",
                          "-outform", "DER"], input=der, check=True,
                         capture_output=True).stdout
    return (base64.b64encode(der[-32:]).decode(),
            base64.b64encode(pub[-32:]).decode())


@pytest.fixture(scope="module")
def env():
    sink = SmtpSink().start()
    secret, public = x25519_keypair()
    w = World(
        extra_conf="submission_host = 127.0.0.1:%d\n" % sink.port,
        extra_lpconf=("notify_to = admin@example.org\n"
                      "notify_from = launchpad@example.org\n"
                      "recovery_public_key = %s\n" % public))
    w.sink = sink
    w.recovery_secret = secret
    yield w
    w.close()
    sink.stop()


def da(w, *args, check=True, input=None):
    return w.dc.doveadm(*args, check=check, input=input)


def da_json(w, *args):
    res = da(w, "-f", "json", "launchpad", *args)
    return json.loads(res.stdout)


def imap_ok(w, user, password):
    imap = imaplib.IMAP4("127.0.0.1", w.dc.imap_port, timeout=60)
    try:
        imap.login(user, password)
        imap.logout()
        return True
    except imaplib.IMAP4.error:
        imap.shutdown()
        return False


def sync(w, check=True):
    res = da(w, "-f", "json", "launchpad", "sync", check=False)
    if check:
        assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout) if res.stdout.strip() else []
    return res, rows


def row_of(rows, user):
    found = [r for r in rows if r["user"] == user]
    return found[0] if found else None


def events(w, user=None):
    out = []
    with w.sink.lock:
        for msg in w.sink.messages:
            for m in EVENT_RE.finditer(msg["data"].replace("\r", "")):
                if user is None or m.group(2) == user:
                    out.append((m.group(1), m.group(2)))
    return out


def test_cache_list_and_invalidate_all(env):
    pw = env.dc.generate_password("alice@ubuntu.com", label="laptop")
    assert imap_ok(env, "alice@ubuntu.com", pw)
    assert not imap_ok(env, "erin@ubuntu.com", "x" * 20)
    rows = da_json(env, "cache", "list")
    alice = row_of(rows, "alice@ubuntu.com")
    erin = row_of(rows, "erin@ubuntu.com")
    assert alice["verdict"] == "allow" and alice["stale"] == "no"
    assert alice["fetched"] and alice["expires"]
    assert erin["verdict"] == "deny"
    assert erin["reason"] == "not a member of ~ubuntumembers"

    out = da_json(env, "cache", "invalidate", "-A")
    assert out[0]["user"] == "*" and out[0]["records"] >= 2
    assert out[0]["auth_cache"] >= 1
    assert da_json(env, "cache", "list") == []
    # still logs in: a fresh decision, not a stale auth cache entry
    assert imap_ok(env, "alice@ubuntu.com", pw)
    res = da(env, "launchpad", "cache", "invalidate", check=False)
    assert res.returncode == 64


def test_ban_list(env):
    da(env, "launchpad", "ban", "gina", "spam")
    rows = da_json(env, "ban", "list")
    assert [r["name"] for r in rows] == ["gina"]
    assert rows[0]["reason"] == "spam" and rows[0]["since"]
    da(env, "launchpad", "unban", "gina")
    assert da_json(env, "ban", "list") == []


def test_status(env):
    da(env, "launchpad", "refresh", "alice@ubuntu.com")
    out = da_json(env, "status")[0]
    assert out["reachable"] == "yes" and out["http_status"] == 200
    assert out["latency_ms"] >= 0 and out["allow"] >= 1
    env.fake.fault("500", path="/~ubuntumembers$")
    try:
        res = da(env, "-f", "json", "launchpad", "status", check=False)
    finally:
        env.fake.reset()
    assert res.returncode == 75
    assert json.loads(res.stdout)[0]["reachable"] == "no"
    sync(env)
    out = da_json(env, "status")[0]
    assert out["last_sync_result"] == "ok" and out["last_sync"]
    assert out["last_sync_users"] >= 1


def test_refresh_user(env):
    out = da_json(env, "refresh", "erin@ubuntu.com")[0]
    assert out == {"user": "erin@ubuntu.com", "verdict": "deny",
                   "reason": "not a member of ~ubuntumembers"}
    res = da(env, "launchpad", "refresh", "x@nowhere.example", check=False)
    assert res.returncode == 67 and "x@nowhere.example" in res.stderr


def test_sync_leaver_refused_and_notified_once(env):
    user = "kim@kubuntu.org"
    pw = env.dc.generate_password(user, label="phone")
    assert imap_ok(env, user, pw)        # now in Dovecot's auth cache
    res, rows = sync(env)
    assert row_of(rows, user)["change"] == "entitled"
    assert rows[-1]["change"] == "total"
    sync(env)
    assert events(env, user) == [("entitled", user)]

    env.fake.team("kubuntu-members", [])
    try:
        res, rows = sync(env)
        row = row_of(rows, user)
        assert (row["old"], row["new"], row["change"]) == \
            ("allow", "deny", "deprovisioned")
        assert row["reason"] == "not a member of ~kubuntu-members"
        # refused at once, although positive_ttl and the auth cache
        # TTL are one hour
        assert not imap_ok(env, user, pw)
        assert os.path.exists(os.path.join(env.dc.home("kim", "kubuntu.org"),
                                           "sqlbox.keys"))   # mail kept
        sync(env)
        sync(env)
        assert events(env, user) == [("entitled", user),
                                     ("deprovisioned", user)]
    finally:
        env.fake.team("kubuntu-members", ["kim"])
    res, rows = sync(env)
    assert row_of(rows, user)["change"] == "entitled"
    assert imap_ok(env, user, pw)
    sync(env)
    assert events(env, user) == [("entitled", user), ("deprovisioned", user),
                                 ("entitled", user)]
    msg = [m for m in env.sink.messages if user in m["data"]][0]
    assert msg["rcpts"] == ["<admin@example.org>"]
    assert msg["from"].startswith("<launchpad@example.org>")


def test_sync_partial_failure(env):
    # lena (lubuntu) and stu (ubuntustudio) become known users
    for user in ("lena@lubuntu.me", "stu@ubuntustudio.com"):
        da(env, "launchpad", "refresh", user)
    sync(env)
    env.fake.team("ubuntustudio-core", [])
    env.fake.fault("500", path="/~lubuntu-members/participants")
    try:
        res, rows = sync(env, check=False)
    finally:
        env.fake.reset()
        env.fake.team("ubuntustudio-core", ["stu"])
    assert res.returncode == 75, res.stderr
    assert "partial" in res.stderr
    assert row_of(rows, "lena@lubuntu.me")["change"] == "failed"
    assert row_of(rows, "stu@ubuntustudio.com")["change"] == "denied"
    assert rows[-1]["change"] == "partial"
    assert "teams_failed=1" in rows[-1]["reason"]
    cache = {r["user"]: r for r in da_json(env, "cache", "list")}
    assert cache["lena@lubuntu.me"]["verdict"] == "allow"
    assert cache["stu@ubuntustudio.com"]["verdict"] == "deny"
    assert da_json(env, "status")[0]["last_sync_result"] == "partial"
    sync(env)


def test_concurrent_sync(env):
    """A second sync while one runs gives up at once (exit 75) instead of
    waiting for the lock: had it waited, it would have run after the first
    and succeeded.  The first holds the lock through two answers that never
    come in http_timeout (3 s each here) and succeeds on its last retry;
    the second starts as soon as the first's request has arrived.  Ordered
    by events, no time bound."""
    env.fake.reset()        # the request log below must be this test's
    env.fake.fault("slow", path="/~ubuntumembers/participants", count=2,
                   delay=30)
    first = {}

    def run():
        first["res"] = sync(env, check=False)[0]
    t = threading.Thread(target=run)
    t.start()
    try:
        # wait until the first sync is inside the slow request
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                r["path"].endswith("/~ubuntumembers/participants")
                for r in env.fake.requests()):
            time.sleep(0.05)
        assert t.is_alive()
        second = da(env, "launchpad", "sync", check=False)
    finally:
        t.join(120)
        env.fake.reset()
    assert second.returncode == 75
    assert "sync already running" in second.stderr
    assert first["res"].returncode == 0, first["res"].stderr


def test_password_list_revoke(env):
    user = "julia@ubuntu.com"
    pw1 = env.dc.generate_password(user, label="laptop")
    pw2 = env.dc.generate_password(user, label="phone", existing=pw1)
    assert imap_ok(env, user, pw1)
    rows = da_json(env, "password", "list", user)
    assert [(r["slot"], r["label"]) for r in rows] == \
        [(1, "laptop"), (2, "phone")]
    assert rows[0]["last_used"] and rows[0]["created"]
    assert rows[1]["last_used"] == ""

    out = da_json(env, "password", "revoke", user, "1")[0]
    assert out["user"] == user and out["slot"] == 1
    # cached by the successful login above, refused now
    assert not imap_ok(env, user, pw1)
    assert imap_ok(env, user, pw2)
    assert [r["slot"] for r in da_json(env, "password", "list", user)] == [2]
    res = da(env, "launchpad", "password", "revoke", user, "7", check=False)
    assert res.returncode == 68 and user in res.stderr
    res = da(env, "launchpad", "password", "list", "henry@ubuntu.com",
             check=False)
    assert res.returncode == 68 and "henry@ubuntu.com" in res.stderr


def test_password_reset_with_recovery_key(env, tmp_path):
    user = "frank@ubuntu.com"
    old = env.dc.generate_password(user, label="laptop")
    key = tmp_path / "recovery.key"
    key.write_text(env.recovery_secret + "\n")
    os.chmod(str(tmp_path), 0o755)
    out = da_json(env, "password", "reset", "--recovery-key", str(key),
                  user)[0]
    assert out["mode"] == "recovered" and out["moved_to"] == ""
    assert imap_ok(env, user, out["password"])
    assert imap_ok(env, user, old)        # recovery adds a slot
    wrong = tmp_path / "wrong.key"
    wrong.write_text(x25519_keypair()[0] + "\n")
    res = da(env, "launchpad", "password", "reset", "--recovery-key",
             str(wrong), user, check=False)
    assert res.returncode == 65 and "does not match" in res.stderr


def test_password_reset_without_recovery_key(env):
    user = "eddie@edubuntu.org"
    home = env.dc.home("eddie", "edubuntu.org")
    old = env.dc.generate_password(user, label="laptop")
    assert imap_ok(env, user, old)
    imap = imaplib.IMAP4("127.0.0.1", env.dc.imap_port, timeout=60)
    imap.login(user, old)
    assert imap.select("INBOX")[0] == "OK"      # the database opened
    imap.logout()
    res = da(env, "launchpad", "password", "reset", user, check=False)
    assert res.returncode == 64 and "--confirm" in res.stderr
    out = da_json(env, "password", "reset", "--confirm", user)[0]
    assert out["mode"] == "new-mailbox"
    moved = out["moved_to"]
    assert re.fullmatch(re.escape(home) + r"\.reset-\d{8}T\d{6}Z", moved)
    assert os.path.exists(os.path.join(moved, "sqlbox.keys"))  # kept
    assert os.path.exists(os.path.join(home, "sqlbox.keys"))
    # The database's -wal and -shm, kept between sessions (issue 15),
    # went with it: none is left where the new mailbox will be.
    for suffix in ("", "-wal", "-shm"):
        assert os.path.exists(os.path.join(moved, "mail",
                                           "sqlbox.db" + suffix))
        assert not os.path.exists(os.path.join(home, "mail",
                                               "sqlbox.db" + suffix))
    assert imap_ok(env, user, out["password"])
    assert not imap_ok(env, user, old)


def test_password_generate_activation_notified_once(env):
    """Issue 8: a first keyfile (activation) reaches the admins through the
    next sync's digest mail; a second device is no activation."""
    user = "sam@ubuntu.net"
    sync(env)                  # what earlier tests queued goes out now
    env.sink.clear()
    pw = env.dc.generate_password(user, label="laptop")
    assert env.sink.messages == []       # queued, not sent
    env.dc.generate_password(user, label="phone", existing=pw)
    sync(env)
    mails = [m for m in env.sink.messages if user in m["data"]]
    assert len(mails) == 1
    body = mails[0]["data"].replace("\r", "")
    assert re.findall(r"^activated\s+(\S+): by doveadm launchpad password "
                      r"generate, \d{4}-\d\d-\d\d \d\d:\d\d UTC$", body,
                      re.M) == [user]
    assert re.search(r"^Subject: .* 1 activated,", body, re.M)
    env.sink.clear()
    sync(env)
    assert env.sink.messages == []
