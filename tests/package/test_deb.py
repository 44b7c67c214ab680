"""Issues 6 and 11: the Debian package, built, installed into the stock
Dovecot, enabled exactly as debian/README.Debian says, and used there.

In order, sharing one machine state (run as root; the steps depend on the
ones before and skip when one of those failed):

  build      dpkg-buildpackage -us -uc -b in a fresh `git clone` of this
             repository (committed files only; nothing of a build tree
             leaks in), then lintian: no E: line, no page-less program;
  install    apt-get install ./dovecot-launchpad_*.deb: the files where
             they belong, conffiles, vmail, no unit enabled, and `doveconf
             -n` exactly as before (installing changes nothing);
  use        README.Debian's two steps, run as written: edit
             dovecot-launchpad.conf.ext (here: api_url is the loopback
             Launchpad fake) and `dovecot-launchpad-enable`; then its
             activation command.  The SYSTEM dovecot binary with the
             SYSTEM config (local.conf adds loopback ports, its own
             base_dir and log, no TLS) and the INSTALLED modules: LMTP
             delivery, IMAP and POP3 read it back, a unique marker of the
             message is in no file under /var/vmail (sealed spool, then the
             encrypted database), stock `doveadm pw` and `doveadm who`
             work with the modules loaded;
  remove     `dovecot-launchpad-enable --disable` (10-auth.conf byte for
             byte as before), apt-get remove: doveconf -n as before,
             Dovecot starts and stops, conffiles kept;
  reinstall  apt-get install and enable again: the same mailbox opens with
             the same app password, the message still there;
  purge      disable, apt-get purge: conffiles and the cache file gone,
             mail and keyfile kept in /var/vmail.

What this changes on the machine, and how it is put back by the module
fixture's finalizer (also when a step fails): the package (purged);
/etc/dovecot/conf.d/10-auth.conf (dovecot-launchpad-enable edits it; the
original bytes are written back) and conf.d/90-sqlbox.conf (removed);
/etc/dovecot/local.conf (restored or removed); /usr/sbin/policy-rc.d
(created only if missing, so that dpkg never starts the system Dovecot);
the snakeoil certificate links (only if missing); the vmail user and group,
/var/vmail, /var/vmail/ubuntu.com/alice and /var/lib/dovecot/launchpad.tdb
(removed if this test created them).  The system Dovecot service is never
started or reloaded: the test runs its own `dovecot -F` on free loopback
ports with a base_dir of its own.
"""

import glob
import grp
import gzip
import imaplib
import os
import poplib
import pwd
import re
import shlex
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
AUTH_CONF = "/etc/dovecot/conf.d/10-auth.conf"
SQLBOX_CONF = "/etc/dovecot/conf.d/90-sqlbox.conf"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
CACHE_FILE = "/var/lib/dovecot/launchpad.tdb"
VMAIL = "/var/vmail"
# Debian's 10-ssl.conf reads these at startup even with ssl = no;
# dovecot-core links them to the ssl-cert snakeoil pair when that exists.
SSL_FILES = ("/etc/dovecot/private/dovecot.pem",
             "/etc/dovecot/private/dovecot.key")
SHIPPED_LPCONF = "/etc/dovecot/dovecot-launchpad.conf.ext"
SHIPPED_AUTH = "/etc/dovecot/conf.d/auth-launchpad.conf.ext"
SHIPPED_SUBMISSION = "/etc/dovecot/conf.d/submission-launchpad.conf.ext"
SQLBOX_TEMPLATE = "/usr/share/dovecot-launchpad/90-sqlbox.conf"
ENABLE_HELPER = "/usr/sbin/dovecot-launchpad-enable"
MODULES = (
    "/usr/lib/dovecot/modules/auth/libauthdb_launchpad.so",
    "/usr/lib/dovecot/modules/doveadm/lib10_doveadm_launchpad_plugin.so",
    "/usr/lib/dovecot/modules/lib20_sqlbox_plugin.so",
    "/usr/lib/dovecot/modules/lib20_submission_launchpad_plugin.so",
)
UNITS = (
    "/lib/systemd/system/dovecot-launchpad-sync.service",
    "/lib/systemd/system/dovecot-launchpad-sync.timer",
    "/lib/systemd/system/dovecot-launchpad-web.service",
)
WEB_DAEMON = "/usr/sbin/dovecot-launchpad-web"
MAN_PAGES = ("/usr/share/man/man1/doveadm-launchpad.1.gz",
             "/usr/share/man/man8/dovecot-launchpad-web.8.gz",
             "/usr/share/man/man8/dovecot-launchpad-enable.8.gz")
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120"]
USER = "alice@ubuntu.com"
HOME = os.path.join(VMAIL, "ubuntu.com", "alice")

# The commands of debian/README.Debian, in its order (its indented lines
# that start with a program; the other indented lines are configuration
# text); the test runs the ones a machine without systemd can run, as
# written.  README_ELSEWHERE: documented commands that other suites run
# (tests/integration/test_sieve.py), placeholders and all.
README_ENABLE = "dovecot-launchpad-enable"
README_ACTIVATE = "doveadm launchpad password generate alice@ubuntu.com"
README_DISABLE = "dovecot-launchpad-enable --disable"
README_COMMANDS = [
    README_ENABLE,
    README_ACTIVATE,
    "systemctl enable --now dovecot-launchpad-sync.timer",
    "systemctl enable --now dovecot-launchpad-web",
    README_DISABLE,
]
README_ELSEWHERE = [
    "doveadm launchpad forward set [--keep] alice@ubuntu.com alice@example.net",
    "doveadm launchpad forward show alice@ubuntu.com",
    "doveadm launchpad forward clear alice@ubuntu.com",
]
README_PROGRAMS = ("dovecot-launchpad-enable", "doveadm", "systemctl",
                   "apt", "apt-get", "dpkg")

# The machine's own settings, not the product's: loopback listeners, a
# base_dir, state_dir and log of the test's, no TLS.  Debian's dovecot.conf
# includes local.conf last.  Nothing here is a setting the product's
# snippets set.
LOCAL_CONF_TEXT = """\
# Written by tests/package/test_deb.py; removed when the test ends.
base_dir = {run}
state_dir = {state}
log_path = {log}
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
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


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def files_containing(top, needle):
    """Every regular file under top whose bytes contain needle."""
    hits = []
    for dirpath, _, names in os.walk(top):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path) and \
                    needle in read_bytes(path):
                hits.append(path)
    return hits


def readme_commands():
    """The indented command lines of the installed README.Debian."""
    for path in ("/usr/share/doc/%s/README.Debian" % PACKAGE,
                 "/usr/share/doc/%s/README.Debian.gz" % PACKAGE):
        if os.path.exists(path):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                text = f.read()
            return [line for line in
                    re.findall(r"^ {7}(\S.*?)\s*$", text, re.M)
                    if line.split()[0] in README_PROGRAMS]
    raise AssertionError("README.Debian is not installed")


def readme_run(command, **kwargs):
    """A README.Debian command, exactly as written there."""
    assert command in README_COMMANDS
    return run(shlex.split(command), **kwargs)


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
        self.auth_conf = read_bytes(AUTH_CONF)
        self.had_sqlbox_conf = os.path.exists(SQLBOX_CONF)
        self.made_policy = False
        self.had_vmail_user = self._exists(pwd.getpwnam, "vmail")
        self.had_vmail_group = self._exists(grp.getgrnam, "vmail")
        self.had_var_vmail = os.path.exists(VMAIL)
        self.had_domain_dir = os.path.exists(os.path.dirname(HOME))
        # A cache left by anything else is kept aside and put back.
        self.cache_backup = None
        if os.path.exists(CACHE_FILE):
            self.cache_backup = os.path.join(self.tmp, "launchpad.tdb.orig")
            shutil.copy2(CACHE_FILE, self.cache_backup)
        self.made_ssl_files = []
        self.dovecot = None
        self.fake = None
        self.deb = None
        self.failed = set()
        self.done = set()
        # In no file of any earlier run, and the same all through this one.
        self.marker = ("dlp-marker-%s-%d" % (os.path.basename(self.tmp),
                                             os.getpid())).encode()

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

    def restore_dovecot_conf(self):
        if read_bytes(AUTH_CONF) != self.auth_conf:
            tmp = AUTH_CONF + ".dlp-test"
            with open(tmp, "wb") as f:
                f.write(self.auth_conf)
            os.chmod(tmp, 0o644)
            os.rename(tmp, AUTH_CONF)
        if not self.had_sqlbox_conf and os.path.exists(SQLBOX_CONF):
            os.unlink(SQLBOX_CONF)

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
        attempt(self.restore_dovecot_conf)
        if package_status() != "":
            attempt(apt, "purge", PACKAGE)
        if self.had_local_conf:
            attempt(shutil.copy2, self.local_conf_backup, LOCAL_CONF)
        elif os.path.exists(LOCAL_CONF):
            attempt(os.unlink, LOCAL_CONF)
        if self.cache_backup is not None:
            attempt(shutil.copy2, self.cache_backup, CACHE_FILE)
        elif os.path.exists(CACHE_FILE):
            attempt(os.unlink, CACHE_FILE)
        if not self.had_var_vmail:
            attempt(shutil.rmtree, VMAIL, True)
        else:
            for home in [HOME] + glob.glob(HOME + ".reset-*"):
                attempt(shutil.rmtree, home, True)
            if not self.had_domain_dir:
                attempt(shutil.rmtree, os.path.dirname(HOME), True)
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

    def write_local_conf(self):
        with open(LOCAL_CONF, "w") as f:
            f.write(LOCAL_CONF_TEXT.format(
                run=self.run_dir, state=self.state_dir, log=self.log_path,
                imap_port=self.imap_port, pop3_port=self.pop3_port,
                lmtp_port=self.lmtp_port))

    def start_dovecot(self):
        self.stdout = open(os.path.join(self.tmp, "dovecot.stdout"), "ab")
        self.dovecot = subprocess.Popen(["dovecot", "-F"], stdout=self.stdout,
                                        stderr=subprocess.STDOUT)
        for port in (self.imap_port, self.pop3_port, self.lmtp_port):
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
    if os.path.exists(HOME) or os.path.exists(SQLBOX_CONF):
        pytest.fail("%s or %s exists: this test would mix with a real "
                    "installation" % (HOME, SQLBOX_CONF))
    m = Machine()
    try:
        m.deny_service_starts()
        m.provide_ssl_files()
        m.run_dir = os.path.join(m.tmp, "run")
        m.state_dir = os.path.join(m.tmp, "state")
        m.log_path = os.path.join(m.tmp, "dovecot.log")
        for d in (m.run_dir, m.state_dir):
            os.makedirs(d)
        m.imap_port = free_port()
        m.pop3_port = free_port()
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
    # every program has its page (dovecot-launchpad-web had none)
    pageless = [line for line in lines
                if "no-manual-page" in line or "binary-without-manpage" in line]
    assert pageless == [], "\n".join(lines)
    passed(machine, "lintian")


# ---- install ----

def test_install_puts_files_in_place(machine):
    step(machine, "install", "build")
    machine.doveconf_before = doveconf_n()
    apt("install", machine.deb)
    assert package_status() == "ii"
    for path in MODULES + UNITS + MAN_PAGES + (
            SHIPPED_AUTH, SHIPPED_LPCONF, SHIPPED_SUBMISSION, WEB_DAEMON,
            ENABLE_HELPER, SQLBOX_TEMPLATE):
        assert os.path.isfile(path), path
    assert glob.glob("/usr/share/doc/%s/README.md*" % PACKAGE)
    # nothing under conf.d/*.conf, which Debian's dovecot.conf includes
    assert not os.path.exists(SQLBOX_CONF)
    assert not [p for p in run(["dpkg", "-L", PACKAGE]).stdout.split()
                if re.fullmatch(r"/etc/dovecot/conf\.d/.*\.conf", p)]
    with open("/var/lib/dpkg/info/%s.conffiles" % PACKAGE) as f:
        conffiles = f.read().split()
    assert sorted(conffiles) == sorted([SHIPPED_AUTH, SHIPPED_LPCONF,
                                        SHIPPED_SUBMISSION])
    st = os.stat(SHIPPED_LPCONF)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, "dovecot")
    vmail = pwd.getpwnam("vmail")
    assert grp.getgrgid(vmail.pw_gid).gr_name == "vmail"
    assert vmail.pw_dir == VMAIL or machine.had_vmail_user
    assert os.path.isdir(VMAIL) and os.path.isdir("/var/lib/dovecot")
    if not machine.had_var_vmail:
        st = os.stat(VMAIL)
        assert (st.st_uid, st.st_gid) == (vmail.pw_uid, vmail.pw_gid)
        assert stat.S_IMODE(st.st_mode) == 0o750
    # Installed, not enabled: no symlink anywhere under /etc/systemd.
    assert not glob.glob("/etc/systemd/system/*/dovecot-launchpad-*")
    if shutil.which("systemd-analyze"):
        run(["systemd-analyze", "verify"] + list(UNITS))
    commands = readme_commands()
    assert [c for c in commands if c not in README_ELSEWHERE] == \
        README_COMMANDS
    assert [c for c in commands if c in README_ELSEWHERE] == README_ELSEWHERE
    passed(machine, "install")


def test_install_changes_nothing_until_enabled(machine):
    step(machine, "unchanged", "install")
    assert doveconf_n() == machine.doveconf_before
    assert read_bytes(AUTH_CONF) == machine.auth_conf
    passed(machine, "unchanged")


# ---- use: README.Debian's steps, then mail through the installed modules

def edit_lpconf(machine):
    """README.Debian step 1, as an admin does it: change values of the
    shipped file in place (here the Launchpad API is the loopback fake)."""
    with open(SHIPPED_LPCONF) as f:
        text = f.read()
    for key, value in (("api_url", machine.fake.api_url),
                       ("http_timeout", "3s")):
        text, n = re.subn(r"^%s\s*=.*$" % key, "%-13s = %s" % (key, value),
                          text, flags=re.M)
        assert n == 1, "no '%s =' line in the shipped file" % key
    with open(SHIPPED_LPCONF, "w") as f:
        f.write(text)


def enable(machine):
    """README.Debian step 2, then the checks of what it did."""
    res = readme_run(README_ENABLE)
    assert "auth-system.conf.ext off, auth-launchpad.conf.ext on" in res.stdout
    uid = pwd.getpwnam("vmail").pw_uid
    assert "90-sqlbox.conf: written (mail uid %d, user vmail)" % uid in \
        res.stdout
    conf = "\n".join(doveconf_n())
    assert re.findall(r"^\s+driver = (\S+)$", conf, re.M) == \
        ["launchpad", "launchpad"]
    for line in ("mail_location = sqlbox:~/mail",
                 "first_valid_uid = %d" % uid, "last_valid_uid = %d" % uid):
        assert re.search("^%s$" % re.escape(line), conf, re.M), conf


def lmtp_rcpt(machine, rcpt, data=None):
    with smtplib.LMTP("127.0.0.1", machine.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo("test.example.org")
        assert lmtp.mail("sender@example.org")[0] == 250
        code, msg = lmtp.rcpt(rcpt)
        if code == 250 and data is not None:
            assert lmtp.data(data)[0] == 250
        return code, msg.decode(errors="replace")


def imap_login(machine, user, password):
    imap = imaplib.IMAP4("127.0.0.1", machine.imap_port, timeout=60)
    try:
        imap.login(user, password)
    except Exception:
        imap.shutdown()
        raise
    return imap


def imap_bodies(imap):
    typ, data = imap.select("INBOX")
    assert typ == "OK"
    if int(data[0]) == 0:
        return []
    typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    return [d[1] for d in data if isinstance(d, tuple)]


def message(machine):
    return (b"From: sender@example.org\r\nTo: alice@ubuntu.com\r\n"
            b"Subject: package test\r\n\r\ndelivered through the .deb: " +
            machine.marker + b"\r\n")


def check_sealed(machine):
    """The marker is in no file of /var/vmail; the mailbox is sqlbox's
    files only (no maildir, no mbox, nothing in /var/mail). The keyfile's
    lock file is empty: it exists only to be flock()ed."""
    assert files_containing(VMAIL, machine.marker) == []
    assert sorted(os.listdir(HOME)) == \
        ["mail", "sqlbox.keys", "sqlbox.keys.lock"]
    assert os.path.getsize(os.path.join(HOME, "sqlbox.keys.lock")) == 0
    assert not glob.glob("/var/mail/alice*")


def test_enable_and_use_with_installed_modules(machine):
    step(machine, "use", "install")
    machine.fake = LaunchpadFake(machine.tmp).start()
    machine.write_local_conf()
    edit_lpconf(machine)
    enable(machine)
    machine.start_dovecot()
    try:
        res = readme_run(README_ACTIVATE)
        machine.alice = re.search(r"\bpassword=(\S+)", res.stdout).group(1)
        st = os.stat(os.path.join(HOME, "sqlbox.keys"))
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == \
            (pwd.getpwnam("vmail").pw_uid, 0o600)

        # delivered while alice is logged out: sealed to her public key
        assert lmtp_rcpt(machine, USER, message(machine))[0] == 250
        assert lmtp_rcpt(machine, "erin@ubuntu.com")[0] == 550
        assert os.path.getsize(os.path.join(HOME, "mail", "spool")) > \
            len(message(machine))
        check_sealed(machine)

        with pytest.raises(imaplib.IMAP4.error) as exc:
            imap_login(machine, "erin@ubuntu.com", "x").logout()
        assert "not a member of ~ubuntumembers" in str(exc.value)

        imap = imap_login(machine, USER, machine.alice)
        bodies = imap_bodies(imap)
        assert len(bodies) == 1 and machine.marker in bodies[0]
        # stock doveadm with our modules loaded, while alice is logged in
        res = run(["doveadm", "who"])
        assert re.search(r"^%s\s+1\s+imap\b" % re.escape(USER), res.stdout,
                         re.M), res.stdout
        imap.logout()

        pop = poplib.POP3("127.0.0.1", machine.pop3_port, timeout=60)
        pop.user(USER)
        pop.pass_(machine.alice)
        assert pop.stat()[0] == 1
        assert machine.marker in b"\r\n".join(pop.retr(1)[1])
        pop.quit()

        # imported into the encrypted database, still nowhere readable
        assert os.path.getsize(os.path.join(HOME, "mail", "sqlbox.db")) > 0
        check_sealed(machine)

        for scheme in ("SHA512-CRYPT", "ARGON2ID"):
            hashed = run(["doveadm", "pw", "-s", scheme, "-p", "x"]).stdout
            assert hashed.startswith("{%s}" % scheme), hashed
            res = run(["doveadm", "pw", "-t", hashed.strip(), "-p", "x"])
            assert "(verified)" in res.stdout
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
    readme_run(README_DISABLE)
    assert read_bytes(AUTH_CONF) == machine.auth_conf
    assert not os.path.exists(SQLBOX_CONF)
    apt("remove", PACKAGE)
    assert package_status() == "rc"
    for path in MODULES + (ENABLE_HELPER,):
        assert not os.path.exists(path), path
    assert os.path.isfile(SHIPPED_AUTH) and os.path.isfile(SHIPPED_LPCONF)
    os.unlink(LOCAL_CONF)
    assert doveconf_n() == machine.doveconf_before
    machine.write_local_conf()
    machine.start_dovecot()
    res = run(["doveadm", "launchpad", "cache", "show", "alice"], check=False)
    pw = run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p", "x"], check=False)
    machine.stop_dovecot()
    # An unknown command: the usage, listing every command there is.
    assert res.returncode == 64 and "usage: doveadm" in res.stderr
    assert "launchpad" not in res.stderr
    assert pw.returncode == 0 and pw.stdout.startswith("{SHA512-CRYPT}")
    passed(machine, "remove")


def test_reinstall_opens_the_same_mailbox(machine):
    step(machine, "reinstall", "remove")
    apt("install", machine.deb)
    assert package_status() == "ii"
    for path in MODULES:
        assert os.path.isfile(path), path
    enable(machine)
    machine.start_dovecot()
    try:
        imap = imap_login(machine, USER, machine.alice)
        bodies = imap_bodies(imap)
        imap.logout()
        assert len(bodies) == 1 and machine.marker in bodies[0]
    except BaseException:
        print(machine.log_text())
        raise
    finally:
        machine.stop_dovecot()
    passed(machine, "reinstall")


def test_purge_keeps_mail(machine):
    step(machine, "purge", "reinstall")
    readme_run(README_DISABLE)
    assert read_bytes(AUTH_CONF) == machine.auth_conf
    os.unlink(LOCAL_CONF)
    assert os.path.exists(CACHE_FILE)   # the default cache_path, in use
    apt("purge", PACKAGE)
    assert package_status() == ""
    for path in (SHIPPED_AUTH, SHIPPED_LPCONF, SHIPPED_SUBMISSION,
                 CACHE_FILE) + MODULES + UNITS:
        assert not os.path.exists(path), path
    for name in ("sqlbox.keys", "mail/sqlbox.db"):
        assert os.path.getsize(os.path.join(HOME, name)) > 0, name
    assert files_containing(VMAIL, machine.marker) == []
    assert "vmail" in [p.pw_name for p in pwd.getpwall()]
    assert doveconf_n() == machine.doveconf_before
    passed(machine, "purge")
