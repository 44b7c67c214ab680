"""Issue 11: dovecot-launchpad-enable on a copy of Debian's /etc/dovecot.

The helper as built (build/plugin-conf/dovecot-launchpad-enable) runs with
--confdir on a copy of the machine's stock configuration plus the shipped
snippets, and doveconf judges the result: Launchpad answers every login
(no pam, no passwd), sqlbox is the storage for every mail process, the
mail uid is the only valid one.  --disable gives back the stock files
byte for byte.  (tests/package/test_deb.py runs it on the real
/etc/dovecot of an installed package.)
"""

import os
import pwd
import re
import shutil
import subprocess

import pytest

from harness import (BUILD_DIR, MAIL_USER, SHIPPED_AUTH_SNIPPET,
                     SHIPPED_SQLBOX_SNIPPET, TOP_SRCDIR, Workdir)

HELPER = os.path.join(BUILD_DIR, "plugin-conf", "dovecot-launchpad-enable")
MARK = ("# dovecot-launchpad-enable: auth-system.conf.ext off, "
        "auth-launchpad.conf.ext on")


def snapshot(confdir):
    out = {}
    for top, _, files in os.walk(confdir):
        for name in files:
            path = os.path.join(top, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, confdir)] = f.read()
    return out


@pytest.fixture
def confdir():
    if not os.path.exists(HELPER):
        raise FileNotFoundError("%s not built (DLP_BUILD_DIR=%s)" % (
            HELPER, BUILD_DIR))
    wd = Workdir("dlp-enable-")
    conf = os.path.join(wd.path, "dovecot")
    shutil.copytree("/etc/dovecot", conf, symlinks=True)
    for name in ("local.conf", "conf.d/90-sqlbox.conf"):
        if os.path.exists(os.path.join(conf, name)):
            os.unlink(os.path.join(conf, name))
    with open(os.path.join(conf, "conf.d", "10-auth.conf")) as f:
        assert re.search(r"^!include auth-system\.conf\.ext$", f.read(),
                         re.M), "not Debian's stock 10-auth.conf"
    # The certificate is not what this test is about (a machine without
    # ssl-cert has no snakeoil pair for 10-ssl.conf to read).
    with open(os.path.join(conf, "conf.d", "10-ssl.conf"), "w") as f:
        f.write("ssl = no\n")
    # What the package installs; the mail uid is a user this machine has.
    shutil.copy(SHIPPED_AUTH_SNIPPET, os.path.join(conf, "conf.d"))
    with open(os.path.join(TOP_SRCDIR, "plugin-conf",
                           "dovecot-launchpad.conf.ext")) as f:
        lpconf = re.sub(r"^uid\s*=.*$", "uid = %s" % MAIL_USER, f.read(),
                        flags=re.M)
    with open(os.path.join(conf, "dovecot-launchpad.conf.ext"), "w") as f:
        f.write(lpconf)
    yield conf
    wd.cleanup()


def helper(conf, *args, check=True):
    res = subprocess.run(["sh", HELPER, "--confdir", conf,
                          "--template", SHIPPED_SQLBOX_SNIPPET] + list(args),
                         capture_output=True, text=True, timeout=60)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def doveconf(conf, *args):
    res = subprocess.run(["doveconf", "-c", os.path.join(conf, "dovecot.conf")]
                         + list(args), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr, res.stderr
    return res.stdout


def test_enable_then_disable(confdir):
    before = snapshot(confdir)
    res = helper(confdir)
    assert "auth-system.conf.ext off, auth-launchpad.conf.ext on" in res.stdout
    uid = pwd.getpwnam(MAIL_USER).pw_uid
    assert "90-sqlbox.conf: written (mail uid %d" % uid in res.stdout

    conf = doveconf(confdir, "-n")
    drivers = re.findall(r"^(passdb|userdb) \{\n(?:  .*\n)*?  driver = (\S+)",
                         conf, re.M)
    assert drivers == [("passdb", "launchpad"), ("userdb", "launchpad")]
    for line in ("mail_location = sqlbox:~/mail",
                 "first_valid_uid = %d" % uid, "last_valid_uid = %d" % uid,
                 "auth_mechanisms = plain login",
                 "recipient_delimiter = "):
        assert re.search("^%s$" % re.escape(line), conf, re.M), line
    assert re.search(r"^auth_username_chars = \S*\+", conf, re.M)
    assert re.search(r"unix_listener auth-vmail-master \{\n\s+mode = 0600\n"
                     r"\s+user = vmail", conf)
    for proto in ("imap", "pop3", "lmtp", "lda", "doveadm"):
        plugins = doveconf(confdir, "-h", "-f", "protocol=" + proto,
                           "mail_plugins")
        assert "sqlbox" in plugins.split(), (proto, plugins)

    # again: nothing changes
    enabled = snapshot(confdir)
    res = helper(confdir)
    assert "already includes auth-launchpad.conf.ext" in res.stdout
    assert snapshot(confdir) == enabled

    res = helper(confdir, "--disable")
    assert "90-sqlbox.conf: removed" in res.stdout
    assert snapshot(confdir) == before
    assert "driver = pam" in doveconf(confdir, "-n")


def test_keeps_earlier_protocol_plugins(confdir):
    """A plugin set for lmtp in 20-lmtp.conf (before 90-sqlbox.conf)
    stays, sqlbox is added to it, and doveconf has no warning."""
    path = os.path.join(confdir, "conf.d", "20-lmtp.conf")
    with open(path, "a") as f:
        f.write("protocol lmtp {\n  mail_plugins = $mail_plugins quota\n}\n")
    helper(confdir)
    plugins = doveconf(confdir, "-h", "-f", "protocol=lmtp", "mail_plugins")
    assert {"quota", "sqlbox"} <= set(plugins.split())


def test_refuses_another_passdb(confdir):
    path = os.path.join(confdir, "conf.d", "10-auth.conf")
    with open(path) as f:
        text = f.read()
    text = text.replace("#!include auth-passwdfile.conf.ext",
                        "!include auth-passwdfile.conf.ext")
    with open(path, "w") as f:
        f.write(text)
    before = snapshot(confdir)
    res = helper(confdir, check=False)
    assert res.returncode == 1
    assert "auth-passwdfile.conf.ext" in res.stderr
    assert snapshot(confdir) == before


def test_rolls_back_what_doveconf_refuses(confdir):
    before = snapshot(confdir)
    bad = os.path.join(confdir, "bad-template.conf")
    with open(SHIPPED_SQLBOX_SNIPPET) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text + "no_such_setting = 1\n")
    before = snapshot(confdir)
    res = subprocess.run(["sh", HELPER, "--confdir", confdir, "--template",
                          bad], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "no_such_setting" in res.stderr
    assert "are as they were" in res.stderr
    assert snapshot(confdir) == before


def test_leaves_an_admins_own_file(confdir):
    path = os.path.join(confdir, "conf.d", "90-sqlbox.conf")
    with open(SHIPPED_SQLBOX_SNIPPET) as f:
        mine = "# mine\n" + f.read().replace(
            "@MAIL_UID@", str(pwd.getpwnam(MAIL_USER).pw_uid))
    with open(path, "w") as f:
        f.write(mine)
    res = helper(confdir)
    assert "yours" in res.stdout
    helper(confdir, "--disable")
    with open(path) as f:
        assert f.read() == mine
