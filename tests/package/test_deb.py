"""Issue 6: the Debian package, built, installed into the stock Dovecot and
used there.

In order, sharing one machine state (run as root; the steps depend on the
ones before and skip when one of those failed):

  build      dpkg-buildpackage -us -uc -b in a fresh `git clone` of this
             repository (committed files only; nothing of a build tree
             leaks in), then lintian: no E: line;
  install    apt-get install ./dovecot-launchpad_*.deb: the files where
             issue 6 puts them, conffiles, vmail, the timer not enabled,
             and `doveconf -n` exactly as before (installing changes nothing
             on a running server);
  use        /etc/dovecot/local.conf (included by Debian's dovecot.conf)
             enables the shipped auth snippet, pointed at a temp copy of the
             shipped dovecot-launchpad.conf.ext whose api_url is the
             loopback fake; the SYSTEM dovecot binary with the SYSTEM config
             on free loopback ports and its own base_dir; then the
             entitlement scenario against the INSTALLED modules;
  remove     apt-get remove, snippet no longer enabled: doveconf -n as
             before, Dovecot starts and stops, conffiles kept;
  reinstall  apt-get install again: the same mailbox opens with the same
             app password;
  purge      apt-get purge: conffiles and the cache file gone, mail kept.

Mail homes live in a temp dir (config `home`), never in /var/vmail.  The
finalizer puts the machine back (package purged, local.conf, policy-rc.d,
the vmail user and /var/vmail if this test created them), also on failure.
"""

import glob
import grp
import imaplib
import json
import os
import pwd
import shutil
import signal
import smtplib
import stat
import subprocess
import sys
import tempfile

import pytest

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TESTS_DIR)

from harness import LaunchpadFake, free_port, port_open, wait_for  # noqa: E402

TOP_SRCDIR = os.path.dirname(TESTS_DIR)
PACKAGE = "dovecot-launchpad"
LOCAL_CONF = "/etc/dovecot/local.conf"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
CACHE_FILE = "/var/lib/dovecot/launchpad.tdb"
# Debian's 10-ssl.conf reads these at startup even with ssl = no;
# dovecot-core links them to the ssl-cert snakeoil pair when that exists.
SSL_FILES = ("/etc/dovecot/private/dovecot.pem",
             "/etc/dovecot/private/dovecot.key")
SHIPPED_LPCONF = "/etc/dovecot/dovecot-launchpad.conf.ext"
SHIPPED_AUTH = "/etc/dovecot/conf.d/auth-launchpad.conf.ext"
MODULES = (
    "/usr/lib/dovecot/modules/auth/libauthdb_launchpad.so",
    "/usr/lib/dovecot/modules/doveadm/lib10_doveadm_launchpad_plugin.so",
)
UNITS = (
    "/lib/systemd/system/dovecot-launchpad-sync.service",
    "/lib/systemd/system/dovecot-launchpad-sync.timer",
    "/lib/systemd/system/dovecot-launchpad-web.service",
)
WEB_DAEMON = "/usr/sbin/dovecot-launchpad-web"
MAN_PAGE = "/usr/share/man/man1/doveadm-launchpad.1.gz"
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120"]
MESSAGE = (b"From: sender@example.org\r\nTo: alice@ubuntu.com\r\n"
           b"Subject: package test\r\n\r\ndelivered through the .deb\r\n")



# Listeners, paths and the mail location of the test Dovecot; Debian's
# dovecot.conf includes local.conf last, so these win.
LOCAL_CONF_BASE = """\
# Written by tests/package/test_deb.py; removed when the test ends.
base_dir = {run}
state_dir = {state}
log_path = {log}
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
mail_location = maildir:~/Maildir
# vmail is a system user (uid < 500, Dovecot's default first_valid_uid).
first_valid_uid = {first_uid}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
# One failed login on purpose; no anvil penalty for the next ones.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

# What an admin does in conf.d/10-auth.conf, here next to Debian's
# auth-system.conf.ext (local.conf cannot take that include out): passdb pam
# and userdb passwd come first, know none of these users, and pass them on
# to the launchpad passdb and userdb.
LOCAL_CONF_ENABLE = """\
auth_mechanisms = plain login
!include {auth_snippet}
"""


def run(cmd, check=True, timeout=300, **kwargs):
    res = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=timeout, **kwargs)
    if check and res.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (
            " ".join(cmd), res.returncode, res.stdout[-4000:],
            res.stderr[-4000:]))
    return res


def apt(*args):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return run(APT + list(args), env=env)


def package_status():
    """dpkg's status of PACKAGE: 'ii', 'rc', or '' when unknown."""
    res = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", PACKAGE],
              check=False)
    return res.stdout.strip() if res.returncode == 0 else ""


def doveconf_n():
    """`doveconf -n` of the system config, without its comment lines
    (version, hostname)."""
    res = run(["doveconf", "-n"])
    return [line for line in res.stdout.splitlines()
            if not line.startswith("#")]


class Machine:
    """What the test changes on the machine, and how to put it back."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="dlp-deb-")
        os.chmod(self.tmp, 0o755)
        self.had_local_conf = os.path.exists(LOCAL_CONF)
        self.local_conf_backup = None
        if self.had_local_conf:
            self.local_conf_backup = os.path.join(self.tmp, "local.conf.orig")
            shutil.copy2(LOCAL_CONF, self.local_conf_backup)
        self.made_policy = False
        self.had_vmail_user = self._exists(pwd.getpwnam, "vmail")
        self.had_vmail_group = self._exists(grp.getgrnam, "vmail")
        self.had_var_vmail = os.path.exists("/var/vmail")
        self.had_cache_file = os.path.exists(CACHE_FILE)
        self.made_ssl_files = []
        self.dovecot = None
        self.fake = None
        self.deb = None
        self.failed = set()
        self.done = set()

    @staticmethod
    def _exists(lookup, name):
        try:
            lookup(name)
            return True
        except KeyError:
            return False

    def deny_service_starts(self):
        """dovecot-core's trigger on /usr/lib/dovecot/modules restarts the
        system Dovecot through invoke-rc.d on every (un)install; that would
        start it on the standard ports with the stock config."""
        if not os.path.exists(POLICY_RC_D):
            with open(POLICY_RC_D, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod(POLICY_RC_D, 0o755)
            self.made_policy = True

    def provide_ssl_files(self):
        """A throwaway self-signed pair where a stock machine has the
        snakeoil links (a CI machine without ssl-cert has none)."""
        if any(os.path.lexists(p) for p in SSL_FILES):
            return
        pem, key = (os.path.join(self.tmp, n) for n in ("cert.pem", "key.pem"))
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-keyout", key, "-out", pem])
        for src, dest in zip((pem, key), SSL_FILES):
            os.symlink(src, dest)
            self.made_ssl_files.append(dest)

    def restore(self):
        errors = []

        def attempt(fn, *args):
            try:
                fn(*args)
            except Exception as e:  # keep restoring the rest
                errors.append(repr(e))
        attempt(self.stop_dovecot)
        if self.fake is not None:
            attempt(self.fake.stop)
        if package_status() != "":
            attempt(apt, "purge", PACKAGE)
        if self.had_local_conf:
            attempt(shutil.copy2, self.local_conf_backup, LOCAL_CONF)
        elif os.path.exists(LOCAL_CONF):
            attempt(os.unlink, LOCAL_CONF)
        if not self.had_cache_file and os.path.exists(CACHE_FILE):
            attempt(os.unlink, CACHE_FILE)
        if not self.had_var_vmail and os.path.isdir("/var/vmail"):
            attempt(os.rmdir, "/var/vmail")     # only if empty
        if not self.had_vmail_user and self._exists(pwd.getpwnam, "vmail"):
            attempt(run, ["userdel", "vmail"])
        if not self.had_vmail_group and self._exists(grp.getgrnam, "vmail"):
            attempt(run, ["groupdel", "vmail"])
        if self.made_policy:
            attempt(os.unlink, POLICY_RC_D)
        for path in self.made_ssl_files:
            attempt(os.unlink, path)
        if not os.environ.get("DLP_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("restoring the machine: " + "; ".join(errors))

    # ---- the test Dovecot: system binary, system config ----

    def write_local_conf(self, enable):
        text = LOCAL_CONF_BASE.format(
            run=self.run_dir, state=self.state_dir, log=self.log_path,
            first_uid=min(pwd.getpwnam("vmail").pw_uid, 500),
            imap_port=self.imap_port, lmtp_port=self.lmtp_port)
        if enable:
            text += LOCAL_CONF_ENABLE.format(auth_snippet=self.auth_snippet)
        with open(LOCAL_CONF, "w") as f:
            f.write(text)

    def start_dovecot(self):
        self.stdout = open(os.path.join(self.tmp, "dovecot.stdout"), "ab")
        self.dovecot = subprocess.Popen(["dovecot", "-F"], stdout=self.stdout,
                                        stderr=subprocess.STDOUT)
        for port in (self.imap_port, self.lmtp_port):
            wait_for(lambda: port_open(port) or
                     self.dovecot.poll() is not None,
                     20, "dovecot port %d" % port)
        if self.dovecot.poll() is not None:
            raise AssertionError("dovecot exited %d:\n%s" % (
                self.dovecot.returncode, self.log_text()))

    def stop_dovecot(self):
        if self.dovecot is None:
            return
        if self.dovecot.poll() is None:
            self.dovecot.send_signal(signal.SIGTERM)
            try:
                self.dovecot.wait(15)
            except subprocess.TimeoutExpired:
                self.dovecot.kill()
                self.dovecot.wait()
        self.dovecot = None

    def log_text(self):
        text = ""
        for path in (os.path.join(self.tmp, "dovecot.stdout"), self.log_path):
            try:
                with open(path, errors="replace") as f:
                    text += f.read()[-6000:]
            except FileNotFoundError:
                pass
        return text


@pytest.fixture(scope="module")
def machine():
    if package_status() != "":
        pytest.fail("%s is already known to dpkg (%s): this test would "
                    "replace a real installation" % (PACKAGE, package_status()))
    m = Machine()
    try:
        m.deny_service_starts()
        m.provide_ssl_files()
        m.run_dir = os.path.join(m.tmp, "run")
        m.state_dir = os.path.join(m.tmp, "state")
        m.log_path = os.path.join(m.tmp, "dovecot.log")
        m.vmail = os.path.join(m.tmp, "vmail")    # the /var/vmail stand-in
        for d in (m.run_dir, m.state_dir):
            os.makedirs(d)
        m.imap_port = free_port()
        m.lmtp_port = free_port()
        yield m
    finally:
        m.restore()


def step(machine, name, *needs):
    """Marks `name` failed unless the test body completes; skips when a
    step it needs failed."""
    for need in needs:
        if need in machine.failed or need not in machine.done:
            pytest.skip("needs the %r step" % need)
    machine.failed.add(name)


def passed(machine, name):
    machine.failed.discard(name)
    machine.done.add(name)


# ---- build ----

def test_build_from_clean_clone(machine):
    step(machine, "build")
    clone = os.path.join(machine.tmp, "build", PACKAGE)
    run(["git", "clone", "--quiet", TOP_SRCDIR, clone])
    # The unit tests ran already (ASan/UBSan) in tests/run; a package build
    # runs them too (debian/rules) unless nocheck, as here, for time.
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=%d" % (
        os.cpu_count() or 2))
    res = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=clone, env=env,
              check=False, timeout=600)
    with open(os.path.join(machine.tmp, "build.log"), "w") as f:
        f.write(res.stdout + res.stderr)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    debs = glob.glob(os.path.join(machine.tmp, "build",
                                  PACKAGE + "_*_*.deb"))
    assert len(debs) == 1, debs
    machine.deb = debs[0]
    machine.changes = glob.glob(os.path.join(machine.tmp, "build",
                                             PACKAGE + "_*.changes"))[0]
    fields = run(["dpkg-deb", "-f", machine.deb, "Depends"]).stdout
    abi = open("/usr/share/dovecot/dovecot-abi").read().strip()
    assert "dovecot-abi-" + abi in fields
    assert "libsodium" in fields and "libtdb" in fields   # ${shlibs:Depends}
    passed(machine, "build")


def test_lintian_no_errors(machine):
    step(machine, "lintian", "build")
    res = run(["lintian", "--no-tag-display-limit", machine.changes],
              check=False)
    lines = (res.stdout + res.stderr).splitlines()
    errors = [line for line in lines if line.startswith("E: ")]
    assert errors == [], "\n".join(lines)
    passed(machine, "lintian")


# ---- install ----

def test_install_puts_files_in_place(machine):
    step(machine, "install", "build")
    machine.doveconf_before = doveconf_n()
    apt("install", machine.deb)
    assert package_status() == "ii"
    for path in MODULES + UNITS + (SHIPPED_AUTH, SHIPPED_LPCONF, MAN_PAGE,
                                   WEB_DAEMON):
        assert os.path.isfile(path), path
    assert glob.glob("/usr/share/doc/%s/README.md*" % PACKAGE)
    with open("/var/lib/dpkg/info/%s.conffiles" % PACKAGE) as f:
        conffiles = f.read().split()
    assert sorted(conffiles) == sorted([SHIPPED_AUTH, SHIPPED_LPCONF])
    st = os.stat(SHIPPED_LPCONF)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, "dovecot")
    vmail = pwd.getpwnam("vmail")
    assert grp.getgrgid(vmail.pw_gid).gr_name == "vmail"
    assert vmail.pw_dir == "/var/vmail" or machine.had_vmail_user
    assert os.path.isdir("/var/vmail") and os.path.isdir("/var/lib/dovecot")
    if not machine.had_var_vmail:
        st = os.stat("/var/vmail")
        assert (st.st_uid, st.st_gid) == (vmail.pw_uid, vmail.pw_gid)
        assert stat.S_IMODE(st.st_mode) == 0o750
    # Installed, not enabled: no symlink anywhere under /etc/systemd.
    assert not glob.glob("/etc/systemd/system/*/dovecot-launchpad-sync.*")
    if shutil.which("systemd-analyze"):
        run(["systemd-analyze", "verify"] + list(UNITS))
    passed(machine, "install")


def test_install_changes_nothing_until_enabled(machine):
    step(machine, "unchanged", "install")
    assert doveconf_n() == machine.doveconf_before
    passed(machine, "unchanged")


# ---- use: the entitlement scenario against the installed modules ----

def enable_launchpad(machine):
    """The shipped snippet and config, pointed at the fake and temp dirs."""
    with open(SHIPPED_LPCONF) as f:
        lpconf = f.read()
    replace = {
        "api_url": machine.fake.api_url,
        "cache_path": os.path.join(machine.tmp, "launchpad.tdb"),
        "home": machine.vmail + "/%d/%n",
        "http_timeout": "3s",
    }
    lines = []
    for line in lpconf.splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append("%-13s = %s" % (key, replace.pop(key))
                     if key in replace else line)
    assert replace == {}, "keys missing in the shipped file: %s" % replace
    machine.lpconf = os.path.join(machine.tmp, "dovecot-launchpad.conf.ext")
    with open(machine.lpconf, "w") as f:
        f.write("\n".join(lines) + "\n")
    # Same owner and mode as the shipped file: proves every process that
    # reads it (auth as dovecot, auth-worker and doveadm as root) can.
    st = os.stat(SHIPPED_LPCONF)
    os.chown(machine.lpconf, st.st_uid, st.st_gid)
    os.chmod(machine.lpconf, stat.S_IMODE(st.st_mode))
    with open(SHIPPED_AUTH) as f:
        snippet = f.read()
    assert SHIPPED_LPCONF in snippet
    machine.auth_snippet = os.path.join(machine.tmp, "auth-launchpad.conf.ext")
    with open(machine.auth_snippet, "w") as f:
        f.write(snippet.replace(SHIPPED_LPCONF, machine.lpconf))
    os.makedirs(machine.vmail, exist_ok=True)
    shutil.chown(machine.vmail, "vmail", "vmail")
    machine.write_local_conf(enable=True)


def imap_login(machine, user, password):
    imap = imaplib.IMAP4("127.0.0.1", machine.imap_port, timeout=60)
    try:
        imap.login(user, password)
    except Exception:
        imap.shutdown()
        raise
    return imap


def lmtp_rcpt(machine, rcpt, data=None):
    with smtplib.LMTP("127.0.0.1", machine.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("test.example.org")
        assert lmtp.mail("sender@example.org")[0] == 250
        code, msg = lmtp.rcpt(rcpt)
        if code == 250 and data is not None:
            assert lmtp.data(data)[0] == 250
        return code, msg.decode(errors="replace")


def subjects(imap):
    typ, data = imap.select("INBOX")
    assert typ == "OK"
    if int(data[0]) == 0:
        return []
    typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    return [d[1].decode().strip() for d in data if isinstance(d, tuple)]


def test_entitlement_with_installed_modules(machine):
    step(machine, "use", "install")
    machine.fake = LaunchpadFake(machine.tmp).start()
    enable_launchpad(machine)
    machine.start_dovecot()
    try:
        # doveadm with the system config: our plugin from the system
        # module dir, plugin { launchpad_config } from the snippet.
        res = run(["doveadm", "-f", "json", "launchpad", "password",
                   "generate", "-l", "deb", "alice@ubuntu.com"])
        machine.alice = json.loads(res.stdout)[0]["password"]
        assert os.path.isfile(os.path.join(machine.vmail, "ubuntu.com",
                                           "alice", "sqlbox.keys"))

        imap = imap_login(machine, "alice@ubuntu.com", machine.alice)
        imap.logout()
        with pytest.raises(imaplib.IMAP4.error) as exc:
            imap_login(machine, "erin@ubuntu.com", "x").logout()
        assert "not a member of ~ubuntumembers" in str(exc.value)

        assert lmtp_rcpt(machine, "alice@ubuntu.com", MESSAGE)[0] == 250
        assert lmtp_rcpt(machine, "erin@ubuntu.com")[0] == 550

        imap = imap_login(machine, "alice@ubuntu.com", machine.alice)
        assert "Subject: package test" in subjects(imap)
        imap.logout()
        res = run(["doveadm", "launchpad", "cache", "show",
                   "erin@ubuntu.com"])
        assert "not a member of ~ubuntumembers" in res.stdout
    except BaseException:
        print(machine.log_text())
        raise
    finally:
        machine.stop_dovecot()
    passed(machine, "use")


# ---- remove, reinstall, purge ----

def test_remove_leaves_dovecot_working(machine):
    step(machine, "remove", "use")
    apt("remove", PACKAGE)
    assert package_status() == "rc"
    for path in MODULES:
        assert not os.path.exists(path), path
    assert os.path.isfile(SHIPPED_AUTH) and os.path.isfile(SHIPPED_LPCONF)
    # The admin takes the include out again: the stock config as before.
    os.unlink(LOCAL_CONF)
    assert doveconf_n() == machine.doveconf_before
    machine.write_local_conf(enable=False)
    machine.start_dovecot()
    res = run(["doveadm", "launchpad", "cache", "show", "alice"], check=False)
    machine.stop_dovecot()
    # An unknown command: the usage, listing every command there is.
    assert res.returncode == 64 and "usage: doveadm" in res.stderr
    assert "launchpad" not in res.stderr
    passed(machine, "remove")


def test_reinstall_opens_the_same_mailbox(machine):
    step(machine, "reinstall", "remove")
    apt("install", machine.deb)
    assert package_status() == "ii"
    for path in MODULES:
        assert os.path.isfile(path), path
    machine.write_local_conf(enable=True)
    machine.start_dovecot()
    try:
        imap = imap_login(machine, "alice@ubuntu.com", machine.alice)
        assert "Subject: package test" in subjects(imap)
        imap.logout()
    except BaseException:
        print(machine.log_text())
        raise
    finally:
        machine.stop_dovecot()
    passed(machine, "reinstall")


def test_purge_keeps_mail(machine):
    step(machine, "purge", "reinstall")
    os.unlink(LOCAL_CONF)
    made_cache = not os.path.exists(CACHE_FILE)
    if made_cache:
        open(CACHE_FILE, "w").close()    # stands for the default cache_path
    apt("purge", PACKAGE)
    assert package_status() == ""
    for path in (SHIPPED_AUTH, SHIPPED_LPCONF) + MODULES + UNITS:
        assert not os.path.exists(path), path
    if made_cache:
        assert not os.path.exists(CACHE_FILE)
    home = os.path.join(machine.vmail, "ubuntu.com", "alice")
    assert os.path.isfile(os.path.join(home, "sqlbox.keys"))
    assert glob.glob(os.path.join(home, "Maildir", "*", "*")), \
        "the delivered message"
    assert os.path.isdir("/var/vmail")
    assert "vmail" in [p.pw_name for p in pwd.getpwall()]
    assert doveconf_n() == machine.doveconf_before
    passed(machine, "purge")
