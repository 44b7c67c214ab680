"""Issue 12: no lost keyfile updates, throttles that cannot be flushed,
revokes that say the truth, sessions that end, a cache the mail uid cannot
forge.

One world (test_web.WebWorld): the Launchpad fake, the OpenID fake, a real
Dovecot with the auth cache on and the auth-vmail-master and anvil-vmail
listeners, and dovecot-launchpad-web running as the mail user.  Races are
started together from a barrier and judged by their outcome only; sessions
are watched until the server closes them (a 30 s bound, never a timing
assertion).
"""

import grp
import http.client
import imaplib
import json
import os
import poplib
import pwd
import re
import shutil
import socket
import stat
import subprocess
import threading
import time

import pytest

from conftest import World  # noqa: F401  (sys.path set up there)
from harness import (AS_MAIL_USER, MAIL_GROUP, MAIL_USER, free_port,
                     web_state_dir)
import test_web
from test_web import (SESSION, Web, WebWorld, client_ip, csrf_of,
                      imap_login, set_cookies, signin)

RACE_ROUNDS = 6
ACTIVATION_ROUNDS = 3
WATCH_SECS = 30
PASSWORD_RE = re.compile(r'id="password" name="password" autocomplete="off" '
                         r'spellcheck="false" size="36" value="([^"]+)"')


@pytest.fixture(scope="module")
def world():
    w = WebWorld()
    yield w
    code = w.close()
    assert code == 0, "the daemon did not stop cleanly on SIGTERM"


# ---- helpers ----

def doveadm_json(world, *args, input=None, check=True):
    res = world.dc.doveadm("-f", "json", "launchpad", *args, input=input,
                           check=check)
    return res, (json.loads(res.stdout) if res.stdout.strip() else [])


def add_password(world, user, label, existing):
    """A new slot through doveadm; returns (slot id, password)."""
    _, out = doveadm_json(world, "password", "generate", "-l", label, "-e",
                          user, input=existing + "\n")
    return out[0]["slot"], out[0]["password"]


def slots(world, user):
    _, rows = doveadm_json(world, "password", "list", user)
    return {r["slot"]: r["label"] for r in rows}


def imap_ok(world, user, password):
    try:
        imap_login(world.dc, user, password).logout()
        return True
    except imaplib.IMAP4.error:
        return False


def web_session(world, name):
    status, _, body, session = signin(world.web, world.op, name)
    assert status == 200 and session, body
    return session


def web_csrf(web, session):
    _, _, page = web.request("GET", "/", cookies={SESSION: session})
    return csrf_of(page)


def web_post(web, session, path, **form):
    form["csrf"] = web_csrf(web, session)
    return web.request("POST", path, cookies={SESSION: session}, form=form,
                       headers=client_ip())


def shown_password(body):
    m = PASSWORD_RE.search(body)
    return m.group(1) if m else None


class Idle:
    """An IMAP session in IDLE, as a phone keeps one open."""

    def __init__(self, world, user, password):
        self.imap = imap_login(world.dc, user, password)
        self.imap.select("INBOX")
        tag = self.imap._new_tag().decode()
        self.imap.send(("%s IDLE\r\n" % tag).encode())
        line = self.imap.readline()
        assert line.startswith(b"+"), line

    def ended(self):
        """Reads until the server closes the connection (bounded);
        returns what it said on the way out."""
        self.imap.sock.settimeout(WATCH_SECS)
        said = b""
        try:
            while True:
                line = self.imap.readline()
                if not line:
                    break
                said += line
        except (socket.timeout, OSError) as e:
            raise AssertionError("session still open after %d s (%s): %r"
                                 % (WATCH_SECS, e, said))
        finally:
            self.imap.shutdown()
        return said

    def still_open(self):
        """True if the session answers DONE with its tagged OK."""
        self.imap.send(b"DONE\r\n")
        self.imap.sock.settimeout(WATCH_SECS)
        line = self.imap.readline()
        self.imap.shutdown()
        return b"OK" in line


def pop3_session(world, user, password):
    pop = poplib.POP3("127.0.0.1", world.dc.pop3_port, timeout=60)
    pop.user(user)
    pop.pass_(password)
    return pop


def pop3_ended(pop):
    """Reads until the server closes the POP3 connection (bounded)."""
    pop.sock.settimeout(WATCH_SECS)
    said = b""
    try:
        while True:
            chunk = pop.sock.recv(4096)
            if not chunk:
                return said
            said += chunk
    except socket.timeout:
        raise AssertionError("POP3 session still open after %d s: %r"
                             % (WATCH_SECS, said))
    finally:
        pop.sock.close()


def run_together(*fns):
    """Runs fns in threads released by one barrier; returns their results
    (an exception is re-raised here)."""
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)

    def runner(i, fn):
        barrier.wait()
        try:
            results[i] = ("ok", fn())
        except Exception as e:   # noqa: BLE001
            results[i] = ("error", e)

    threads = [threading.Thread(target=runner, args=(i, fn))
               for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    for kind, value in results:
        if kind == "error":
            raise value
    return [value for _, value in results]


def extra_web(world, name, **overrides):
    """Another daemon on the same Dovecot, with some web_* keys changed."""
    port = free_port()
    with open(world.dc.lpconf_path) as f:
        text = f.read()
    overrides.setdefault("web_state_dir", web_state_dir(world.wd.path,
                                                        name + "-state"))
    overrides["web_listen"] = "127.0.0.1:%d" % port
    overrides["web_url"] = "http://127.0.0.1:%d" % port
    for key, value in overrides.items():
        text, n = re.subn(r"(?m)^%s = .*$" % key, "%s = %s" % (key, value),
                          text)
        if n == 0:
            text += "%s = %s\n" % (key, value)
    conf = os.path.join(world.wd.path, name + ".conf.ext")
    with open(conf, "w") as f:
        f.write(text)
    return Web(world.wd.path, conf, port, name=name).start()


# ---- 1. keyfile changes are serialised ----

def test_web_add_device_races_doveadm_revoke(world):
    """The web page's "add device" and `doveadm launchpad password revoke`
    start together, round after round: the revoked slot stays gone and its
    password fails, the added one stays and works."""
    user = "alice@ubuntu.com"
    base = world.dc.generate_password(user, label="base")
    session = web_session(world, "alice")
    for rnd in range(RACE_ROUNDS):
        victim, victim_pw = add_password(world, user, "victim-%d" % rnd,
                                         base)
        assert imap_ok(world, user, victim_pw)    # now in the auth cache

        def web_add():
            return web_post(world.web, session, "/device/add",
                            domain="ubuntu.com", label="web-%d" % rnd,
                            password=base)

        def revoke():
            return world.dc.doveadm("launchpad", "password", "revoke", user,
                                    str(victim), check=False)

        (status, _, body), res = run_together(web_add, revoke)
        assert status == 200, body
        assert res.returncode == 0, res.stderr
        added_pw = shown_password(body)
        now = slots(world, user)
        assert victim not in now, (rnd, now)
        assert "web-%d" % rnd in now.values(), (rnd, now)
        assert not imap_ok(world, user, victim_pw)
        assert imap_ok(world, user, added_pw)
    assert imap_ok(world, user, base)


def test_racing_first_activations_make_one_keyfile(world):
    """The web page's activation and `password generate` start together on
    a mailbox without a keyfile: exactly one wins, one master key."""
    user, name = "lena@lubuntu.me", "lena"
    home = world.dc.home(name, "lubuntu.me")
    session = web_session(world, name)
    for rnd in range(ACTIVATION_ROUNDS):
        shutil.rmtree(home, ignore_errors=True)

        def web_activate():
            return web_post(world.web, session, "/activate",
                            domain="lubuntu.me", label="web-%d" % rnd)

        def generate():
            return world.dc.doveadm("-f", "json", "launchpad", "password",
                                    "generate", "-l", "cli-%d" % rnd, user,
                                    check=False)

        (status, _, body), res = run_together(web_activate, generate)
        web_won = status == 200
        cli_won = res.returncode == 0
        assert web_won != cli_won, (status, body, res.returncode, res.stderr)
        if web_won:
            assert res.returncode == 77 and "already has app passwords" \
                in res.stderr
            password = shown_password(body)
        else:
            assert status == 403 and "already activated" in body
            password = json.loads(res.stdout)[0]["password"]
        assert list(slots(world, user).values()) == \
            ["web-%d" % rnd if web_won else "cli-%d" % rnd]
        assert imap_ok(world, user, password)


def test_activation_refuses_mail_without_keyfile(world):
    """A home with mail/sqlbox.db but no keyfile is not activated again
    (that would lock the old mail away): both doveadm and the page refuse
    and point to reset; nothing is written."""
    user, name = "gina@ubuntu.com", "gina"
    home = world.dc.home(name)
    password = world.dc.generate_password(user, label="old")
    imap = imap_login(world.dc, user, password)
    imap.select("INBOX")
    imap.logout()
    db = os.path.join(home, "mail", "sqlbox.db")
    assert os.path.exists(db)
    os.unlink(os.path.join(home, "sqlbox.keys"))
    before = os.stat(db)
    entries = set(os.listdir(home)) | {"sqlbox.keys.lock"}

    res = world.dc.doveadm("launchpad", "password", "generate", user,
                           check=False)
    assert res.returncode == 73, res.stderr
    assert "but no keyfile" in res.stderr and "reset" in res.stderr

    session = web_session(world, name)
    _, _, page = world.web.request("GET", "/", cookies={SESSION: session})
    assert "its key file is missing" in page
    assert 'action="/activate"' not in page.split("gina@ubuntu.com")[1]
    status, _, body = web_post(world.web, session, "/activate",
                               domain="ubuntu.com", label="new")
    assert status == 403 and "old mailbox but no key file" in body
    assert "Reset" in body
    # no keyfile, nothing moved or replaced (only the lock file is new)
    assert set(os.listdir(home)) == entries
    assert os.stat(db).st_ino == before.st_ino


# ---- 2. throttles that hold under flooding ----

@pytest.fixture
def flood_web(world, request):
    """A daemon of each test's own: a flood fills its tables (and new
    clients then wait for buckets to refill)."""
    web = extra_web(world, "web-" + request.node.name.replace("_", "-")[:40])
    yield web
    assert web.stop() == 0


def openid_return(web, ip, i=0):
    return web.request("GET", "/openid/return?state=%064d" % i,
                       headers={"X-Real-IP": ip})[0]


def test_flood_cannot_free_a_limited_address(flood_web):
    """A client held at 429 stays held while thousands of new addresses
    come and go (the table is full: new ones get 429 until a bucket has
    refilled), and gets no fresh burst from it."""
    victim = "203.0.113.66"
    statuses = [openid_return(flood_web, victim, i) for i in range(25)]
    assert statuses.count(429) >= 5 and statuses[-1] == 429
    limited_at = time.monotonic()
    flood = []
    for i in range(4200):
        flood.append(openid_return(flood_web, "10.%d.%d.%d" % (
            i // 65536, i // 256 % 256, i % 256)))
    assert set(flood) <= {403, 429}
    # a new client may be refused while the table is full of unrefilled
    # buckets; the victim must not have been given a new burst: at most
    # the tokens it earned meanwhile (one per 3 s) get through
    served = 0
    for i in range(20):
        if openid_return(flood_web, victim, i) != 429:
            served += 1
    earned = int((time.monotonic() - limited_at) / 3.0) + 1
    assert served <= min(earned, 19), (served, earned)


def test_ipv6_clients_are_counted_per_64(flood_web):
    """Each IPv6 address of a /64 is the same client; the next /64 is
    another one."""
    net = "2001:db8:12:%x::"
    statuses = [openid_return(flood_web, (net % 1) + "%x" % (i + 1), i)
                for i in range(25)]
    assert statuses[-1] == 429
    assert openid_return(flood_web, (net % 1) + "ffff:1") == 429
    assert openid_return(flood_web, (net % 2) + "1") != 429


def test_x_real_ip_only_from_trusted_proxies(world):
    """Without web_trusted_proxies, X-Real-IP is the client's own word and
    ignored: the loopback peer is the client, whatever it claims."""
    web = extra_web(world, "web-noproxy", web_trusted_proxies="")
    try:
        statuses = [openid_return(web, "192.0.2.%d" % (i + 1), i)
                    for i in range(25)]
        assert statuses[-1] == 429
        assert openid_return(web, "192.0.2.200") == 429
        log = web.log_text()
        assert "192.0.2." not in log
        assert "web_trusted_proxies is empty: X-Real-IP is ignored" in log
    finally:
        assert web.stop() == 0


def test_pending_signins_survive_a_flood(flood_web, world):
    """A sign-in in flight still completes after a flood of sign-ins from
    more addresses than the table holds (which are refused with 503 once
    it is full, instead of evicting it)."""
    world.op.next("kevin")
    ip = {"X-Real-IP": "198.51.100.77"}
    status, headers, _ = flood_web.request("GET", "/login", headers=ip)
    assert status == 303
    login_cookie = set_cookies(headers)[test_web.LOGIN][0]
    location = test_web.header(headers, "Location")
    statuses = []
    for i in range(1100):
        statuses.append(flood_web.request("GET", "/login", headers={
            "X-Real-IP": "10.%d.%d.%d" % (200, i // 256, i % 256)})[0])
    # one address cannot hold more than its share either
    for i in range(30):
        statuses.append(flood_web.request("GET", "/login", headers={
            "X-Real-IP": "10.99.0.1"})[0])
    assert 503 in statuses and set(statuses) <= {303, 429, 503}
    # the victim's browser comes back from the SSO
    url = test_web.urlsplit(location)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", url.path + "?" + url.query)
    back = test_web.urlsplit(conn.getresponse().getheader("Location"))
    conn.close()
    status, headers, body = flood_web.request(
        "GET", back.path + "?" + back.query,
        cookies={test_web.LOGIN: login_cookie}, headers=ip)
    assert status == 200, body
    assert set_cookies(headers)[SESSION][0]


# ---- 3 and 4. revokes say the truth, and end live sessions ----

def test_doveadm_revoke_ends_sessions(world):
    user = "henry@ubuntu.com"
    first = world.dc.generate_password(user, label="laptop")
    slot, phone = add_password(world, user, "phone", first)
    idle = Idle(world, user, phone)
    pop = pop3_session(world, user, phone)
    res, out = doveadm_json(world, "password", "revoke", user, str(slot))
    assert res.returncode == 0, res.stderr
    assert out[0]["sessions"] == 2 and out[0]["auth_cache"] >= 1
    assert b"* BYE" in idle.ended()
    said = pop3_ended(pop)
    assert not said.startswith(b"+OK"), said
    assert not imap_ok(world, user, phone)
    assert imap_ok(world, user, first)


def test_doveadm_revoke_reports_failed_flush(world):
    """With Dovecot's auth-master socket gone the flush fails: doveadm
    says so, with until when the cached password keeps working (and it
    does), and exits 75."""
    user = "henry@ubuntu.com"
    # a password known to this test, whatever ran before
    _, out = doveadm_json(world, "password", "reset", "--confirm", user)
    first = out[0]["password"]
    slot, phone = add_password(world, user, "tablet", first)
    assert imap_ok(world, user, phone)       # cached
    sock = os.path.join(world.dc.run_dir, "auth-master")
    os.rename(sock, sock + ".off")
    try:
        res = world.dc.doveadm("launchpad", "password", "revoke", user,
                               str(slot), check=False)
    finally:
        os.rename(sock + ".off", sock)
    assert res.returncode == 75, res.stderr
    m = re.search(r"could not be flushed: a password it cached may still "
                  r"log in until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) "
                  r"\(auth_cache_ttl = 3600 s\)", res.stderr)
    assert m, res.stderr
    until = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
    assert 3000 < until - time.time() < 3700
    assert slot not in slots(world, user)
    # what it says is true: the cache still has it ...
    assert imap_ok(world, user, phone)
    # ... until the flush it names succeeds
    world.dc.doveadm("auth", "cache", "flush", user)
    assert not imap_ok(world, user, phone)


def test_web_revoke_ends_sessions(world):
    user, name = "ivan@ubuntu.com", "ivan"
    first = world.dc.generate_password(user, label="laptop")
    slot, phone = add_password(world, user, "phone", first)
    idle = Idle(world, user, phone)
    session = web_session(world, name)
    status, headers, _ = web_post(world.web, session, "/device/revoke",
                                  domain="ubuntu.com", slot=str(slot))
    assert status == 303
    assert b"* BYE" in idle.ended()
    _, _, page = world.web.request("GET", "/", cookies={SESSION: session})
    assert "no longer works for ivan@ubuntu.com, and 1 open session of " \
        "the mailbox was ended" in page
    assert not imap_ok(world, user, phone)
    assert imap_ok(world, user, first)


@pytest.mark.parametrize("socket_name,why", [
    ("no-such-socket", "connect("),
    ("auth-userdb", "without answering CACHE-FLUSH"),
])
def test_web_revoke_reports_failed_flush(world, socket_name, why):
    """A page whose flush socket is missing or refuses CACHE-FLUSH says
    that the revoke is not effective everywhere yet, and until when the
    password still works (and it does)."""
    user, name = "ivan@ubuntu.com", "ivan"
    web = extra_web(world, "web-" + socket_name,
                    web_auth_socket=os.path.join(world.dc.run_dir,
                                                 socket_name))
    try:
        status, _, body, session = signin(web, world.op, name)
        assert status == 200
        _, out = doveadm_json(world, "password", "reset", "--confirm", user)
        first = out[0]["password"]
        slot, phone = add_password(world, user, "phone", first)
        assert imap_ok(world, user, phone)        # cached
        status, _, body = web_post(web, session, "/device/revoke",
                                   domain="ubuntu.com", slot=str(slot))
        assert status == 500, body
        assert "Revoked, but not yet everywhere" in body
        assert "could not be cleared" in body
        assert "keeps working until that cache entry expires" in body
        assert "no longer works" not in body
        assert slot not in slots(world, user)
        assert imap_ok(world, user, phone)        # as the page says
        assert why in web.log_text()
        world.dc.doveadm("auth", "cache", "flush", user)
        assert not imap_ok(world, user, phone)
    finally:
        assert web.stop() == 0


def test_web_reset_ends_sessions(world):
    user, name = "julia@ubuntu.com", "julia"
    old = world.dc.generate_password(user, label="laptop")
    idle = Idle(world, user, old)
    session = web_session(world, name)
    status, _, body = web_post(world.web, session, "/reset",
                               domain="ubuntu.com", confirm=user,
                               label="new phone")
    assert status == 200, body
    assert b"* BYE" in idle.ended()
    assert "1 open session of the mailbox was ended" in body
    assert not imap_ok(world, user, old)
    assert imap_ok(world, user, shown_password(body))


def test_ban_ends_sessions(world):
    user = "kim@kubuntu.org"
    password = world.dc.generate_password(user, label="laptop")
    idle = Idle(world, user, password)
    try:
        world.dc.doveadm("launchpad", "ban", "kim", "test")
        assert b"* BYE" in idle.ended()
        assert not imap_ok(world, user, password)
    finally:
        world.dc.doveadm("launchpad", "unban", "kim")
    assert imap_ok(world, user, password)


def test_deprovisioning_sync_ends_sessions(world):
    user = "eddie@edubuntu.org"
    password = world.dc.generate_password(user, label="laptop")
    assert imap_ok(world, user, password)
    res, _ = doveadm_json(world, "sync")
    idle = Idle(world, user, password)
    world.fake.team("edubuntu-members", [])
    try:
        res, rows = doveadm_json(world, "sync", check=False)
        row = [r for r in rows if r["user"] == user]
        assert row and row[0]["change"] == "deprovisioned", rows
        assert b"* BYE" in idle.ended()
        assert not imap_ok(world, user, password)
    finally:
        world.fake.team("edubuntu-members", ["eddie"])
        doveadm_json(world, "sync", check=False)


# ---- 5. the mail uid cannot change what auth trusts ----

MAIL_UID = pwd.getpwnam(MAIL_USER).pw_uid
MAIL_GID = grp.getgrnam(MAIL_GROUP).gr_gid


def as_mail_user(*cmd, input=None):
    return subprocess.run(AS_MAIL_USER + list(cmd), input=input,
                          capture_output=True, text=True, timeout=60)


def tdb_keys(path):
    res = subprocess.run(["tdbtool", path, "keys"], capture_output=True,
                         text=True, timeout=60, check=True)
    return re.findall(r"key \d+ bytes: (\S+)", res.stdout)


def tdb_show(path, key):
    """The record's value ("" if none), from tdbtool's hex dump."""
    out = subprocess.run(["tdbtool", path, "show", key],
                         capture_output=True, text=True, timeout=60).stdout
    data = b""
    for line in out.splitlines():
        m = re.match(r"\[[0-9a-f]+\] (.{48})", line + " " * 48)
        if m:
            data += bytes.fromhex("".join(m.group(1).split()))
    return data.decode(errors="replace")


def test_cache_is_roots_and_read_only_for_the_mail_uid(world):
    cache = os.path.join(world.wd.path, "launchpad.tdb")
    st = os.stat(cache)
    assert (st.st_uid, st.st_gid) == (0, MAIL_GID)
    assert stat.S_IMODE(st.st_mode) == 0o640
    world.dc.doveadm("launchpad", "ban", "mallory", "spam")
    ban = tdb_show(cache, "ban/mallory")
    assert "spam" in ban
    # neither a plain write nor TDB, as the mail user
    res = as_mail_user("/usr/bin/python3", "-c", "open(%r, 'r+b')" % cache)
    assert res.returncode != 0 and "PermissionError" in res.stderr
    as_mail_user("tdbtool", cache, "delete", "ban/mallory")
    as_mail_user("tdbtool", cache, "store", "ban/mallory", "{}")
    as_mail_user("tdbtool", cache, "store", "verdict/erin@ubuntu.com",
                 '{"v":1,"kind":"verdict","verdict":"allow"}')
    assert tdb_show(cache, "ban/mallory") == ban
    assert "allow" not in tdb_show(cache, "verdict/erin@ubuntu.com")
    # but it may read it: the web daemon reads bans from there
    res = as_mail_user("/usr/bin/python3", "-c",
                       "print(len(open(%r, 'rb').read()))" % cache)
    assert res.returncode == 0, res.stderr
    # the web daemon's state is apart: its nonces never reach the cache
    signin(world.web, world.op, "alice")
    assert not [k for k in tdb_keys(cache) if k.startswith("nonce/")]
    web_tdb = os.path.join(world.wd.path, "web-state", "web.tdb")
    assert [k for k in tdb_keys(web_tdb) if k.startswith("nonce/")]
    assert os.stat(web_tdb).st_uid == MAIL_UID
    world.dc.doveadm("launchpad", "unban", "mallory")


def test_forged_cache_is_taken_back(world):
    """A cache left writable by the mail uid (as an older version did) may
    hold forged verdicts: the first root process takes it back and drops
    them; bans stay."""
    cache = os.path.join(world.wd.path, "launchpad.tdb")
    user = "erin@ubuntu.com"           # in no team
    members = ["alice", "bob", "carol", "dave", "ubuntu-doc-team", "gina",
               "henry", "ivan", "julia", "kevin"]
    world.fake.team("ubuntumembers", members + ["erin"])
    try:
        world.dc.doveadm("launchpad", "refresh", user)
        password = world.dc.generate_password(user, label="laptop")
    finally:
        world.fake.team("ubuntumembers", members)
    world.dc.doveadm("launchpad", "refresh", user)
    assert not imap_ok(world, user, password)
    world.dc.doveadm("launchpad", "ban", "mallory", "spam")
    # as an older version left it, and what the mail uid could then do
    os.chown(cache, MAIL_UID, MAIL_GID)
    os.chmod(cache, 0o600)
    now = int(time.time())
    forged = json.dumps({"v": 1, "kind": "verdict", "user": user,
                         "verdict": "allow", "reason": "none", "text": "",
                         "decided_at": now, "expires_at": now + 3600})
    res = as_mail_user("tdbtool", cache, "store", "verdict/" + user, forged)
    assert res.returncode == 0
    assert '"allow"' in tdb_show(cache, "verdict/" + user)
    # the next root process to open it (doveadm here; auth at a restart)
    res = world.dc.doveadm("launchpad", "status", check=False)
    assert "was writable by uid %d" % MAIL_UID in res.stderr, res.stderr
    st = os.stat(cache)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o640
    assert "verdict/" + user not in tdb_keys(cache)
    assert "spam" in tdb_show(cache, "ban/mallory")
    world.dc.doveadm("auth", "cache", "flush")
    assert not imap_ok(world, user, password)
    world.dc.doveadm("launchpad", "unban", "mallory")
