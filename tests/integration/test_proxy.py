"""Several backends: one proxy Dovecot (the launchpad passdb in proxy mode,
lmtp_proxy = yes) on 127.0.0.1 in front of two backend Dovecots on
127.0.0.2 and 127.0.0.3 (the normal passdb/userdb and sqlbox), each in its
own mount namespace and base_dir, all asking the same Launchpad fake.

20 users are spread over both backends by the placement rule; mail
delivered through the proxy's LMTP is found through the proxy's IMAP and
POP3; a stopped backend tempfails its own users only; a user moved with
backup + restore + `backend assign` keeps their mail."""

import imaplib
import json
import os
import poplib
import shutil
import smtplib

import pytest

from harness import (Dovecot, LaunchpadFake, MAIL_GROUP, MAIL_USER,
                     Workdir, free_port, wait_for)

PROXY = "127.0.0.1"
BACKENDS = ("127.0.0.2", "127.0.0.3")
USERS = ["px%02d-user" % i for i in range(1, 21)]
DOMAIN = "ubuntu.com"


def user_of(name):
    return "%s@%s" % (name, DOMAIN)


def message(user, subject):
    return ("From: sender@example.org\r\nTo: %s\r\nSubject: %s\r\n"
            "Message-ID: <%s.%s@example.org>\r\n\r\n"
            "body of %s\r\n" % (user, subject, subject, user,
                                user)).encode()


class Cluster:
    def __init__(self):
        self.wd = Workdir("dlp-proxy-")
        self.fake = LaunchpadFake(self.wd.path).start()
        # the fixture's team plus the 20 users of this test
        for name in USERS:
            self.fake.person(name)
        self.fake.team("ubuntumembers", ["alice"] + USERS)
        # backends share their ports (one backend_*_port each), on
        # their own addresses
        ports = {proto: free_port(BACKENDS[0])
                 for proto in ("imap", "pop3", "lmtp")}
        self.backends = {}
        for address in BACKENDS:
            workdir = os.path.join(self.wd.path, "backend-" + address)
            os.makedirs(workdir)
            self.backends[address] = Dovecot(
                workdir, self.fake.api_url, address=address, ports=ports,
                # the proxy forwards the client's address (ID command)
                extra_conf="login_trusted_networks = %s\n" % PROXY)
        proxy_dir = os.path.join(self.wd.path, "proxy")
        os.makedirs(proxy_dir)
        self.proxy = Dovecot(
            proxy_dir, self.fake.api_url, address=PROXY,
            extra_conf="lmtp_proxy = yes\n",
            extra_lpconf=("backends = %s\n"
                          "backend_imap_port = %d\n"
                          "backend_pop3_port = %d\n"
                          "backend_lmtp_port = %d\n") % (
                              " ".join(BACKENDS), ports["imap"],
                              ports["pop3"], ports["lmtp"]))
        self.passwords = {}

    def start(self):
        for dc in self.backends.values():
            dc.start()
        self.proxy.start()
        return self

    def stop(self):
        for dc in [self.proxy] + list(self.backends.values()):
            dc.stop()
        self.fake.stop()
        self.wd.cleanup()

    def placement(self, user):
        res = self.proxy.doveadm("-f", "json", "launchpad", "backend",
                                 "show", user)
        return json.loads(res.stdout)[0]

    def imap(self, user, password=None):
        imap = imaplib.IMAP4(PROXY, self.proxy.imap_port, timeout=60)
        imap.login(user, password or self.passwords[user])
        return imap

    def imap_subjects(self, user):
        imap = self.imap(user)
        try:
            typ, _ = imap.select("INBOX")
            assert typ == "OK"
            typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS "
                                   "(SUBJECT)])")
            assert typ == "OK"
            return sorted(part[1].decode().strip()
                          for part in data if isinstance(part, tuple))
        finally:
            imap.logout()

    def pop3_messages(self, user):
        pop = poplib.POP3(PROXY, self.proxy.pop3_port, timeout=60)
        try:
            pop.user(user)
            pop.pass_(self.passwords[user])
            count, _ = pop.stat()
            return [b"\r\n".join(pop.retr(i + 1)[1]).decode()
                    for i in range(count)]
        finally:
            pop.quit()

    def deliver(self, users, subject):
        """Through the proxy's LMTP; the refused recipients and codes."""
        with smtplib.LMTP(PROXY, self.proxy.lmtp_port, timeout=60) as l:
            l.ehlo("mx.example.org")
            refused = {}
            for user in users:
                try:
                    refused.update(l.sendmail("sender@example.org", [user],
                                              message(user, subject)))
                except smtplib.SMTPRecipientsRefused as e:
                    refused.update(e.recipients)
            return refused


@pytest.fixture(scope="module")
def cluster():
    c = Cluster().start()
    try:
        # the proxy decides where each user lives; their keyfile (the
        # first app password) is made on that backend
        c.home = {}
        for name in USERS:
            user = user_of(name)
            host = c.placement(user)["backend"]
            c.home[user] = host
            c.passwords[user] = c.backends[host].generate_password(user)
        yield c
    finally:
        c.stop()


def test_users_spread_over_both_backends(cluster):
    by_host = {host: [u for u, h in cluster.home.items() if h == host]
               for host in BACKENDS}
    assert all(len(users) >= 5 for users in by_host.values()), by_host
    for user, host in cluster.home.items():
        row = cluster.placement(user)
        assert row["backend"] == host and row["source"] == "hash"
        # the keyfile is on that backend only
        other = [h for h in BACKENDS if h != host][0]
        name = user.split("@")[0]
        assert os.path.exists(os.path.join(
            cluster.backends[host].home(name), "sqlbox.keys"))
        assert not os.path.exists(os.path.join(
            cluster.backends[other].home(name), "sqlbox.keys"))


def test_lmtp_imap_pop3_through_the_proxy(cluster):
    users = sorted(cluster.home)
    assert cluster.deliver(users, "first") == {}
    for user in users:
        assert cluster.imap_subjects(user) == ["Subject: first"]
        messages = cluster.pop3_messages(user)
        assert len(messages) == 1 and "body of %s" % user in messages[0]
        # the first login pinned the user where the mail is
        row = cluster.placement(user)
        assert row["backend"] == cluster.home[user]
        assert row["source"] == "first-login"
    # the sealed mail reached the backend of each user, not the proxy
    assert not os.listdir(cluster.proxy.vmail)


def test_password_checked_on_the_backend(cluster):
    user = sorted(cluster.home)[0]
    imap = imaplib.IMAP4(PROXY, cluster.proxy.imap_port, timeout=60)
    with pytest.raises(imaplib.IMAP4.error) as exc:
        imap.login(user, "not-the-password")
    assert "AUTHENTICATIONFAILED" in str(exc.value)
    imap.shutdown()
    # the proxy let it through; the backend's keyfile refused it (both
    # log it when the connection closes)
    backend = cluster.backends[cluster.home[user]]
    wait_for(lambda: "(auth failed, 1 attempts" in backend.log_text(),
             30, "the backend's auth failure")
    wait_for(lambda: "(proxy dest auth failed)" in
             cluster.proxy.log_text(), 30, "the proxy's log line")
    # entitlement is still the proxy's: erin is no member
    with pytest.raises(imaplib.IMAP4.error):
        cluster.imap("erin@ubuntu.com", "whatever")
    refused = cluster.deliver(["erin@ubuntu.com"], "nope")
    assert refused["erin@ubuntu.com"][0] == 550


def test_backend_down_tempfails_its_users_only(cluster):
    down = BACKENDS[1]
    down_users = sorted(u for u, h in cluster.home.items() if h == down)
    up_users = sorted(u for u, h in cluster.home.items() if h != down)
    cluster.backends[down].stop()
    try:
        for user in down_users[:3]:
            with pytest.raises(imaplib.IMAP4.error) as exc:
                cluster.imap(user)
            assert "UNAVAILABLE" in str(exc.value)
            pop = poplib.POP3(PROXY, cluster.proxy.pop3_port, timeout=60)
            try:
                pop.user(user)
                with pytest.raises(poplib.error_proto) as perr:
                    pop.pass_(cluster.passwords[user])
                assert perr.value.args[0].startswith(b"-ERR [SYS/TEMP]")
            finally:
                pop.close()
        refused = cluster.deliver(down_users[:3] + up_users[:3], "outage")
        assert sorted(refused) == down_users[:3]
        assert all(code == 451 for code, _ in refused.values())
        for user in up_users[:3]:
            assert "Subject: outage" in cluster.imap_subjects(user)
    finally:
        cluster.backends[down].start()
    # back: the MTA's retry succeeds
    assert cluster.deliver(down_users[:3], "outage") == {}
    for user in down_users[:3]:
        assert "Subject: outage" in cluster.imap_subjects(user)


def test_move_user_keeps_mail(cluster):
    """README's procedure: assign on the proxy, backup on the old
    backend, restore on the new one."""
    user = sorted(cluster.home)[2]
    name = user.split("@")[0]
    old = cluster.home[user]
    new = [h for h in BACKENDS if h != old][0]
    old_dc, new_dc = cluster.backends[old], cluster.backends[new]
    before = cluster.imap_subjects(user)
    assert before

    # 1. new logins and deliveries go to the new backend; until the
    #    restore, delivery there tempfails (no keyfile yet) and the MTA
    #    keeps the mail
    res = cluster.proxy.doveadm("-f", "json", "launchpad", "backend",
                                "assign", user, new)
    row = json.loads(res.stdout)[0]
    assert row["backend"] == new and row["source"] == "admin"
    refused = cluster.deliver([user], "during-move")
    assert refused[user][0] == 451

    # 2. a consistent copy on the old backend
    dest = os.path.join(old_dc.workdir, "move-%s.db" % name)
    old_dc.doveadm("launchpad", "backup", user, dest,
                   input=cluster.passwords[user] + "\n")

    # 3. restore on the new backend: keyfile and database into the home,
    #    owned by the mail user
    home = new_dc.home(name)
    os.makedirs(os.path.join(home, "mail"), exist_ok=True)
    for src, dst in ((dest + ".keys", os.path.join(home, "sqlbox.keys")),
                     (dest, os.path.join(home, "mail", "sqlbox.db"))):
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o600)
    for path in (home, os.path.join(home, "mail"),
                 os.path.join(home, "sqlbox.keys"),
                 os.path.join(home, "mail", "sqlbox.db")):
        shutil.chown(path, MAIL_USER, MAIL_GROUP)
    os.chmod(home, 0o700)
    os.chmod(os.path.join(home, "mail"), 0o700)

    # the same password opens it through the proxy, the mail is there,
    # and the retried delivery lands on the new backend
    assert cluster.imap_subjects(user) == before
    assert cluster.deliver([user], "during-move") == {}
    assert cluster.imap_subjects(user) == sorted(
        before + ["Subject: during-move"])
    assert "backup" not in new_dc.log_text()
    listed = json.loads(cluster.proxy.doveadm(
        "-f", "json", "launchpad", "backend", "list").stdout)
    assert {"user": user, "backend": new, "source": "admin"}.items() <= \
        [r for r in listed if r["user"] == user][0].items()
    cluster.home[user] = new
