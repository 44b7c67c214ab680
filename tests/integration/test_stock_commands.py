"""Issue 11: Dovecot's own commands behave as without this project.

doveadm loads every plugin of modules/doveadm for every command, and
`doveadm pw` tries every module of modules/auth: whatever our modules do
when they are loaded happens inside stock commands.  (It did: our doveadm
plugin's init called sodium_init(), and `doveadm pw` then died with
"Fatal: sodium_init() failed", exit 75, because Dovecot's
password_schemes_init() wants the process's first sodium_init().)

Each stock command runs twice against the same running Dovecot and config:
inside its mount namespace, with our auth and doveadm modules in place, and
in a namespace whose module dirs hold Dovecot's modules only
(Dovecot.doveadm(stock=True)).  Output and exit code must be the same, and
match what the command is for.  Two servers: the product as configured
(launchpad passdb/userdb, sqlbox), and a stock configuration (passwd-file,
maildir) with our modules merely present, as on a machine where the
package is installed but not enabled.
"""

import imaplib
import os
import poplib
import re
import smtplib

import pytest

from conftest import World
from harness import MAIL_GROUP, MAIL_USER, Dovecot, Workdir, wait_for

ALICE = "alice@ubuntu.com"
OUR_DOVEADM_PLUGIN = "lib10_doveadm_launchpad_plugin.so"
STOCK_USER = "sam@example.org"
STOCK_PASSWORD = "stock password 1"


@pytest.fixture(scope="module")
def product():
    w = World()
    w.alice = w.dc.generate_password(ALICE)
    yield w
    w.close()


def stock_auth_conf(workdir):
    """passwd-file + static userdb: a configuration that does not use
    this project at all."""
    passwd = os.path.join(workdir, "users.passwd")
    with open(passwd, "w") as f:
        f.write("%s:{PLAIN}%s\n" % (STOCK_USER, STOCK_PASSWORD))
    os.chmod(passwd, 0o644)
    return ("passdb {\n  driver = passwd-file\n  args = %s\n}\n"
            "userdb {\n  driver = static\n"
            "  args = uid=%s gid=%s home=%s/vmail/%%d/%%n\n}\n") % (
                passwd, MAIL_USER, MAIL_GROUP, workdir)


@pytest.fixture(scope="module")
def stock():
    wd = Workdir()
    # Nothing asks Launchpad here: the api_url is never contacted.
    dc = Dovecot(wd.path, "http://127.0.0.1:9/1.0",
                 auth_conf=stock_auth_conf(wd.path),
                 mail_location="maildir:~/Maildir").start()
    yield dc
    dc.stop()
    wd.cleanup()


def both(dc, *args, input=None):
    """(ours, stock) CompletedProcess of `doveadm args`."""
    return (dc.doveadm(*args, input=input, check=False),
            dc.doveadm(*args, input=input, check=False, stock=True))


def same(ours, stock):
    assert (ours.returncode, ours.stdout, ours.stderr) == \
        (stock.returncode, stock.stdout, stock.stderr)


def imap_login(dc, user, password):
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
    imap.login(user, password)
    return imap


# ---- doveadm pw ----

def test_our_plugin_is_loaded_by_stock_commands(product):
    """The premise of every test below: doveadm in the server's namespace
    loads our plugin for any command, the stock namespace does not."""
    ours, stock = both(product.dc, "-D", "pw", "-s", "PLAIN", "-p", "x")
    assert re.search(r"Module loaded: \S+/%s" % OUR_DOVEADM_PLUGIN,
                     ours.stderr), ours.stderr
    assert OUR_DOVEADM_PLUGIN not in stock.stderr
    # doveadm pw offers every auth module a dlopen(); ours is one of them
    assert "authdb_launchpad" in ours.stderr
    assert "authdb_launchpad" not in stock.stderr


@pytest.mark.parametrize("scheme,prefix", [
    ("SHA512-CRYPT", "{SHA512-CRYPT}$6$"),
    # libsodium's own scheme: Dovecot's sodium_init() must be the first
    ("ARGON2ID", "{ARGON2ID}$argon2id$"),
    ("PLAIN", "{PLAIN}x"),
])
def test_pw_hashes_and_verifies(product, scheme, prefix):
    for stock in (False, True):
        res = product.dc.doveadm("pw", "-s", scheme, "-p", "x",
                                 check=False, stock=stock)
        assert (res.returncode, res.stderr) == (0, ""), res
        hashed = res.stdout.strip()
        assert hashed.startswith(prefix)
        res = product.dc.doveadm("pw", "-t", hashed, "-p", "x",
                                 check=False, stock=stock)
        assert res.returncode == 0 and "(verified)" in res.stdout, res
        res = product.dc.doveadm("pw", "-t", hashed, "-p", "y",
                                 check=False, stock=stock)
        assert res.returncode != 0 and "(verified)" not in res.stdout


def test_pw_lists_the_same_schemes(product):
    ours, stock = both(product.dc, "pw", "-l")
    same(ours, stock)
    assert "ARGON2ID" in ours.stdout.split()


# ---- doveadm who, config, auth test, user, mailbox list ----

def test_who_lists_the_session(product):
    imap = imap_login(product.dc, ALICE, product.alice)
    try:
        ours, stock = both(product.dc, "who")
        same(ours, stock)
        assert ours.returncode == 0
        assert re.search(r"^%s\s+1\s+imap\b" % re.escape(ALICE),
                         ours.stdout, re.M), ours.stdout
    finally:
        imap.logout()


def test_config_is_the_same(product):
    ours, stock = both(product.dc, "config", "-n")
    same(ours, stock)
    assert ours.returncode == 0
    assert re.search(r"^mail_location = sqlbox:~/mail$", ours.stdout, re.M)
    assert re.search(r"^\s+driver = launchpad$", ours.stdout, re.M)


def test_auth_test_answers_the_same(product):
    ours, stock = both(product.dc, "auth", "test", ALICE, product.alice)
    same(ours, stock)
    assert ours.returncode == 0
    assert "passdb: %s auth succeeded" % ALICE in ours.stdout
    ours, stock = both(product.dc, "auth", "test", ALICE, "wrong password")
    same(ours, stock)
    assert ours.returncode == 77 and "auth failed" in ours.stdout
    ours, stock = both(product.dc, "user", ALICE)
    same(ours, stock)
    assert ours.returncode == 0
    assert re.search(r"^mail\s+sqlbox:~/mail$", ours.stdout, re.M)


def test_mailbox_list_without_the_key(product):
    """doveadm has no app password: sqlbox refuses with its documented
    error, the same whether our doveadm plugin is loaded or not."""
    ours, stock = both(product.dc, "mailbox", "list", "-u", ALICE)
    same(ours, stock)
    assert ours.returncode == 75
    assert "Mailbox locked: log in with an app password" in ours.stderr


# ---- a stock configuration with our modules merely installed ----

def test_stock_config_serves_mail(stock):
    """passwd-file + maildir: login, delivery and the doveadm mail
    commands work, and doveadm says the same with or without our
    modules."""
    imap = imap_login(stock, STOCK_USER, STOCK_PASSWORD)
    imap.logout()
    with smtplib.LMTP("127.0.0.1", stock.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("test.example.org")
        assert lmtp.sendmail("sender@example.org", [STOCK_USER],
                             b"Subject: stock\r\n\r\nhello\r\n") == {}
    pop = poplib.POP3("127.0.0.1", stock.pop3_port, timeout=60)
    pop.user(STOCK_USER)
    pop.pass_(STOCK_PASSWORD)
    assert pop.stat()[0] == 1
    pop.quit()
    for args in (("mailbox", "list", "-u", STOCK_USER),
                 ("mailbox", "status", "-u", STOCK_USER, "messages",
                  "INBOX"),
                 ("fetch", "-u", STOCK_USER, "hdr.subject", "all"),
                 ("auth", "test", STOCK_USER, STOCK_PASSWORD),
                 ("user", STOCK_USER),
                 ("config", "-n"),
                 ("pw", "-s", "PLAIN", "-p", "x")):
        ours, stock_res = both(stock, *args)
        same(ours, stock_res)
        assert ours.returncode == 0, (args, ours)
    assert "INBOX" in stock.doveadm("mailbox", "list", "-u",
                                    STOCK_USER).stdout.split()
    assert "messages=1" in stock.doveadm(
        "mailbox", "status", "-u", STOCK_USER, "messages", "INBOX").stdout
    assert not re.search(r"launchpad|sqlbox", stock.log_text())


# ---- init never kills a process ----

def test_unusable_cache_is_a_tempfail_not_a_fatal(make_world):
    """The auth driver opens its cache at the first lookup: a cache that
    cannot be opened fails that login with a tempfail and a logged cause,
    the auth-worker lives on, and the next login after the fix works."""
    w = make_world()
    cache = os.path.join(w.wd.path, "launchpad.tdb")
    os.mkdir(cache)                  # TDB cannot open a directory
    imap = imaplib.IMAP4("127.0.0.1", w.dc.imap_port, timeout=60)
    with pytest.raises(imaplib.IMAP4.error) as exc:
        imap.login(ALICE, "any password")
    imap.shutdown()
    assert "UNAVAILABLE" in str(exc.value)
    wait_for(lambda: cache in w.dc.log_text(), 60, "the logged cause")
    assert re.search(r"auth-worker.*Error: .*launchpad: .*%s" %
                     re.escape(cache), w.dc.log_text())
    assert "Fatal" not in w.dc.log_text()
    os.rmdir(cache)
    password = w.dc.generate_password(ALICE)
    imap_login(w.dc, ALICE, password).logout()
    assert "Fatal" not in w.dc.log_text()
