"""Real parts for the system tests and the demo: the loopback Launchpad fake
and a real Dovecot (Debian's binaries) running our modules.

Dovecot's auth and doveadm module directories are compiled into its
binaries, so Dovecot runs in a private mount namespace (`unshare -m`) where
copies of those directories, with our modules added, are bind-mounted over
the system ones.  Nothing on the machine changes; doveadm commands enter the
same namespace with nsenter (or, stock=True, a namespace with Dovecot's
modules only).  Every server listens on loopback only: 127.0.0.1, or
127.0.0.x for the backends behind a proxy.  `python3
tests/harness.py demo` (what tests/demo runs) starts the whole product.
"""

import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from smtpsink import SmtpSink

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.dirname(TESTS_DIR)
BUILD_DIR = os.environ.get("DLP_BUILD_DIR", os.path.join(TOP_SRCDIR, "build"))
PYTHON = "/usr/bin/python3"
SYSTEM_MODULEDIR = "/usr/lib/dovecot/modules"

AUTH_MODULE = os.path.join(BUILD_DIR, "src/auth/.libs/libauthdb_launchpad.so")
DOVEADM_MODULE = os.path.join(
    BUILD_DIR, "src/doveadm/.libs/lib10_doveadm_launchpad_plugin.so")
SQLBOX_MODULE = os.path.join(
    BUILD_DIR, "src/storage/.libs/lib20_sqlbox_plugin.so")
SUBMISSION_MODULE = os.path.join(
    BUILD_DIR, "src/submission/.libs/lib20_submission_launchpad_plugin.so")
WEB_BINARY = os.path.join(BUILD_DIR, "src/web/dovecot-launchpad-web")

# The snippets the package ships (dovecot-launchpad-enable turns them on):
# the test Dovecot takes its name rules and mail_location from them, so
# the tests run what an installation runs.
SHIPPED_AUTH_SNIPPET = os.path.join(
    TOP_SRCDIR, "plugin-conf", "conf.d", "auth-launchpad.conf.ext")
SHIPPED_SQLBOX_SNIPPET = os.path.join(
    TOP_SRCDIR, "plugin-conf", "conf.d", "90-sqlbox.conf")
SHIPPED_SUBMISSION_SNIPPET = os.path.join(
    TOP_SRCDIR, "plugin-conf", "conf.d", "submission-launchpad.conf.ext")


def shipped_setting(path, key):
    """The value of the top-level `key = value` line of a shipped snippet
    ("" for `key =`)."""
    with open(path) as f:
        for line in f:
            m = re.match(r"%s[ \t]*=[ \t]*(.*?)[ \t]*$" % re.escape(key),
                         line)
            if m:
                return m.group(1)
    raise KeyError("%s has no '%s =' line" % (path, key))


def shipped_submission_plugins():
    """The mail_plugins line of the shipped submission snippet's protocol
    submission block."""
    with open(SHIPPED_SUBMISSION_SNIPPET) as f:
        m = re.search(r"^protocol submission \{[^}]*?^\s*mail_plugins\s*=\s*(.*?)\s*$",
                      f.read(), re.M | re.S)
    if not m:
        raise KeyError("%s has no protocol submission { mail_plugins }"
                       % SHIPPED_SUBMISSION_SNIPPET)
    return m.group(1)


# File names of our modules; a "stock" module dir is a copy without them.
OUR_MODULES = frozenset(os.path.basename(p) for p in (
    AUTH_MODULE, DOVEADM_MODULE, SQLBOX_MODULE, SUBMISSION_MODULE))

# A user no test or demo changes; uid/gid of the mail processes.
MAIL_USER = "nobody"
MAIL_GROUP = "nogroup"
# Runs a command as the mail user, as systemd runs the web daemon.
AS_MAIL_USER = ["setpriv", "--reuid", MAIL_USER, "--regid", MAIL_GROUP,
                "--clear-groups", "--"]


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError("timed out waiting for " + what)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class LaunchpadFake:
    """tests/lpfake.py in a child process, with its control API."""

    def __init__(self, workdir, fixtures=None, extra_args=()):
        self.workdir = workdir
        self.fixtures = fixtures or os.path.join(
            TESTS_DIR, "fixtures", "launchpad.json")
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None

    @property
    def api_url(self):
        return "http://127.0.0.1:%d/1.0" % self.port

    def start(self, port=0):
        port_file = os.path.join(self.workdir, "lpfake.port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log = open(os.path.join(self.workdir, "lpfake.log"), "ab")
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(TESTS_DIR, "lpfake.py"),
             "--port", str(port), "--port-file", port_file,
             "--fixtures", self.fixtures] + self.extra_args,
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(port_file) and
                 open(port_file).read().strip() != "", 10, "lpfake port")
        self.port = int(open(port_file).read().strip())
        wait_for(lambda: port_open(self.port), 10, "lpfake listening")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.start(self.port)

    def _call(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.port, path), data=data,
            method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
        return json.loads(text) if text.strip() else None

    def fault(self, mode, path=None, count=None, delay=None):
        body = {"mode": mode, "path": path, "count": count}
        if delay is not None:
            body["delay"] = delay
        self._call("POST", "/_fake/fault", body)

    def reset(self):
        self._call("POST", "/_fake/reset", {})

    def held(self, count=1, wait=60):
        """Waits until count requests are held by the fault "hold" (wait
        seconds at most, a failure guard); returns how many are."""
        return self._call("GET", "/_fake/held?count=%d&wait=%d" % (
            count, wait), timeout=wait + 10)["held"]

    def release(self):
        self._call("POST", "/_fake/release", {})

    def requests(self):
        return self._call("GET", "/_fake/requests")

    def person(self, name, **fields):
        self._call("POST", "/_fake/person", dict(name=name, **fields))

    def team(self, team, members):
        self._call("POST", "/_fake/team", {"team": team, "members": members})


class OpenIDFake:
    """tests/openidfake.py (Ubuntu One's stand-in) in a child process."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None

    def start(self):
        port_file = os.path.join(self.workdir, "openidfake.port")
        self.log = open(os.path.join(self.workdir, "openidfake.log"), "ab")
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(TESTS_DIR, "openidfake.py"),
             "--port", "0", "--port-file", port_file],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(port_file) and
                 open(port_file).read().strip() != "", 10, "openidfake port")
        self.port = int(open(port_file).read())
        wait_for(lambda: port_open(self.port), 10, "openidfake listening")
        return self

    @property
    def url(self):
        return "http://127.0.0.1:%d/+openid" % self.port

    def next(self, nickname, mode="ok"):
        """Every following sign-in is nickname's (until changed)."""
        req = urllib.request.Request(
            "http://127.0.0.1:%d/_fake/next" % self.port,
            data=json.dumps({"nickname": nickname, "mode": mode}).encode(),
            method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def stats(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/_fake/stats" %
                                    self.port, timeout=10) as resp:
            return json.loads(resp.read())

    def _post(self, path, body):
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.port, path),
            data=json.dumps(body).encode(), method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def hold(self):
        """Every following check_authentication waits for release()."""
        self._post("/_fake/hold", {"on": True})

    def held(self, count=1, wait=60):
        """Waits until count check_authentication POSTs are held (wait
        seconds at most, a failure guard); returns how many are."""
        with urllib.request.urlopen(
                "http://127.0.0.1:%d/_fake/held?count=%d&wait=%d" % (
                    self.port, count, wait), timeout=wait + 10) as resp:
            return json.loads(resp.read())["held"]

    def release(self):
        self._post("/_fake/release", {})

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class WebDaemon:
    """dovecot-launchpad-web (src/web) on a dovecot-launchpad.conf.ext."""

    def __init__(self, workdir, conf, port, name="web"):
        self.workdir = workdir
        self.conf = conf
        self.port = port
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None

    def start(self):
        if not os.path.exists(WEB_BINARY):
            raise FileNotFoundError("%s not built (DLP_BUILD_DIR=%s)" % (
                WEB_BINARY, BUILD_DIR))
        self.log = open(self.log_path, "ab")
        # as the mail user, as under systemd (User=vmail)
        self.proc = subprocess.Popen(AS_MAIL_USER + [WEB_BINARY, "-c",
                                                     self.conf],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: port_open(self.port) or self.proc.poll() is not None,
                 10, "web daemon")
        assert self.proc.poll() is None, self.log_text()
        return self

    def stop(self):
        """SIGTERM; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port


def web_state_dir(workdir, name="web-state"):
    """A web_state_dir owned by the mail user, as systemd's
    StateDirectory= makes it."""
    path = os.path.join(workdir, name)
    os.makedirs(path, exist_ok=True)
    shutil.chown(path, MAIL_USER, MAIL_GROUP)
    os.chmod(path, 0o700)
    return path


def web_lpconf(web_port, op, dc, ttl="1h", state_dir=None):
    """The web_* keys of dovecot-launchpad.conf.ext for a page on
    127.0.0.1:web_port, signing in through the OpenID fake op, flushing
    dc's auth cache over its auth-vmail-master socket and ending sessions
    over its anvil-vmail socket."""
    return ("web_listen = 127.0.0.1:%d\n"
            "web_url = http://127.0.0.1:%d\n"
            "sso_url = %s\n"
            "web_auth_socket = %s\n"
            "web_anvil_socket = %s\n"
            "web_state_dir = %s\n"
            # the tests speak as nginx does: X-Real-IP from loopback
            "web_trusted_proxies = 127.0.0.1\n"
            "web_mail_host = 127.0.0.1\n"
            "web_imap_port = %d\n"
            "web_pop3_port = %d\n"
            "web_session_ttl = %s\n"
            "notify_to = admin@example.org\n") % (
                web_port, web_port, op.url,
                os.path.join(dc.run_dir, "auth-vmail-master"),
                os.path.join(dc.run_dir, "anvil-vmail"),
                state_dir or web_state_dir(dc.workdir),
                dc.imap_port, dc.pop3_port, ttl)


# The auth-vmail-master and anvil-vmail listeners of the shipped
# auth-launchpad.conf.ext, for the mail user of the tests.
AUTH_VMAIL_MASTER_CONF = """\
service auth {
  unix_listener auth-vmail-master {
    user = %s
    mode = 0600
  }
}
service anvil {
  unix_listener anvil-vmail {
    user = %s
    mode = 0600
  }
}
""" % (MAIL_USER, MAIL_USER)


DOVECOT_CONF = """\
# Written by tests/harness.py: a private Dovecot on loopback ports.
base_dir = {run}
state_dir = {state}
log_path = {log}
protocols = imap pop3 lmtp
listen = {address}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {auth_mechanisms}
auth_username_chars = {auth_username_chars}
recipient_delimiter = {recipient_delimiter}
auth_failure_delay = 0
auth_cache_size = {auth_cache_size}
auth_cache_ttl = {auth_cache_ttl}
auth_cache_negative_ttl = {auth_cache_ttl}
auth_debug = {auth_debug}
mail_location = {mail_location}
{mail_plugin_conf}
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
import_environment = TZ

service imap-login {{
  inet_listener imap {{
    address = {address}
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {address}
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {address}
    port = {lmtp_port}
  }}
}}

# Tests fail logins on purpose from 127.0.0.1 all the time; the anvil auth
# penalty would delay each by up to 15 s (the documented way to disable it).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

{auth_conf}
plugin {{
  launchpad_config = {lpconf}
}}
{extra_conf}"""

# Dovecot(submission=...): the shipped submission-launchpad.conf.ext's
# protocol block, on a loopback port, plain (ssl = no: the tests have no
# TLS), relaying to a loopback SMTP sink.
SUBMISSION_CONF = """\
protocols = $protocols submission
submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {submission_port}
  }}
}}
protocol submission {{
  mail_plugins = {mail_plugins}
}}
"""

# The passdb/userdb blocks unless Dovecot(auth_conf=...) replaces them.
LAUNCHPAD_AUTH_CONF = """\
passdb {{
  driver = launchpad
  args = {lpconf}
}}
userdb {{
  driver = launchpad
  args = {lpconf}
}}
"""

LAUNCHPAD_CONF = """\
# Written by tests/harness.py.
api_url      = {api_url}
cache_path   = {cache_path}
home         = {vmail}/%d/%n
uid          = {uid}
gid          = {gid}
positive_ttl = {positive_ttl}
negative_ttl = {negative_ttl}
stale_grace  = {stale_grace}
http_timeout = {http_timeout}
send_state_path = {vmail}/launchpad-send.tdb
domain ubuntu.com       = ubuntumembers
domain kubuntu.org      = kubuntu-members
domain lubuntu.me       = lubuntu-members
domain edubuntu.org     = edubuntu-members
domain ubuntustudio.com = ubuntustudio-core
domain ubuntu.net       = ubuntu-smtp-test
{extra_lpconf}"""


class Dovecot:
    """A real Dovecot with our modules, in a private mount namespace."""

    def __init__(self, workdir, api_url, auth_cache_size="1M",
                 auth_cache_ttl="1h", positive_ttl="1h", negative_ttl="10m",
                 stale_grace="7d", http_timeout="3s", auth_debug="no",
                 auth_conf=None, extra_conf="", extra_lpconf="",
                 mail_location=None, address="127.0.0.1", ports=None,
                 submission=None):
        """auth_conf: Dovecot config text (used verbatim) that replaces
        the launchpad passdb/userdb blocks, e.g. a passwd-file baseline
        for bench/login-bench.py; everything else stays the same.
        mail_location: None is the shipped 90-sqlbox.conf's
        ("sqlbox:~/mail"); "sqlbox:..." loads our storage plugin (imap,
        pop3, lmtp and doveadm) from a private mail_plugin_dir;
        "maildir:~/Maildir" runs Dovecot's own storage.  submission: the
        port of an SMTP server to relay to (tests/smtpsink.py) turns on
        Dovecot's submission service with our plugin on
        self.submission_port.  auth_mechanisms,
        auth_username_chars and recipient_delimiter are the shipped
        auth-launchpad.conf.ext's; extra_conf comes last and can override
        them.
        address: the loopback address every listener binds (several
        Dovecots, each in its own workdir and base_dir, side by side on
        127.0.0.x); ports: {"imap": n, "pop3": n, "lmtp": n} to choose
        the ports (backends of one proxy share them), else free ones."""
        if mail_location is None:
            mail_location = shipped_setting(SHIPPED_SQLBOX_SNIPPET,
                                            "mail_location")
        self.workdir = workdir
        self.run_dir = os.path.join(workdir, "run")
        self.vmail = os.path.join(workdir, "vmail")
        self.conf_path = os.path.join(workdir, "dovecot.conf")
        self.lpconf_path = os.path.join(workdir, "dovecot-launchpad.conf.ext")
        self.log_path = os.path.join(workdir, "dovecot.log")
        self.address = address
        ports = ports or {}
        self.imap_port = ports.get("imap") or free_port()
        self.pop3_port = ports.get("pop3") or free_port()
        self.lmtp_port = ports.get("lmtp") or free_port()
        self.submission_port = free_port() if submission else None
        self.proc = None
        self.settings = dict(
            api_url=api_url, auth_cache_size=auth_cache_size,
            auth_cache_ttl=auth_cache_ttl, positive_ttl=positive_ttl,
            negative_ttl=negative_ttl, stale_grace=stale_grace,
            http_timeout=http_timeout, auth_debug=auth_debug,
            auth_conf=auth_conf, extra_conf=extra_conf,
            extra_lpconf=extra_lpconf, mail_location=mail_location,
            submission=submission)

    def _module_dir(self, kind, ours, system_kind=None):
        """A copy of the system module dir `kind` (or `system_kind`, "" =
        the top one) plus our module; ours=None: Dovecot's modules only
        (none of ours, even if the package is installed)."""
        target = os.path.join(self.workdir,
                              "modules" if ours else "stock-modules", kind)
        os.makedirs(target, exist_ok=True)
        if system_kind is None:
            system_kind = kind
        source_dir = os.path.join(SYSTEM_MODULEDIR, system_kind)
        for name in os.listdir(source_dir):
            src = os.path.join(source_dir, name)
            if os.path.isfile(src) and name not in OUR_MODULES and \
                    not os.path.exists(os.path.join(target, name)):
                shutil.copy2(src, target)
        if ours is None:
            return target
        # install(1) semantics: write a new file and rename it over, never
        # overwrite a file a running process may have mapped.
        dest = os.path.join(target, os.path.basename(ours))
        tmp = dest + ".tmp"
        shutil.copyfile(ours, tmp)
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
        return target

    def write_config(self):
        for d in (self.run_dir, os.path.join(self.workdir, "state"),
                  self.vmail):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        shutil.chown(self.vmail, MAIL_USER, MAIL_GROUP)
        s = self.settings
        with open(self.lpconf_path, "w") as f:
            f.write(LAUNCHPAD_CONF.format(
                api_url=s["api_url"],
                cache_path=os.path.join(self.workdir, "launchpad.tdb"),
                vmail=self.vmail, uid=MAIL_USER, gid=MAIL_GROUP,
                positive_ttl=s["positive_ttl"],
                negative_ttl=s["negative_ttl"],
                stale_grace=s["stale_grace"],
                http_timeout=s["http_timeout"],
                extra_lpconf=s["extra_lpconf"]))
        mail_plugin_conf = ""
        if s["mail_location"].startswith("sqlbox:"):
            # mail_plugin_dir is a setting (unlike the auth and doveadm
            # module dirs): a copy of the system modules plus ours, no
            # bind mount needed.
            plugin_dir = self._module_dir("mail", SQLBOX_MODULE, "")
            mail_plugin_conf = ("mail_plugins = $mail_plugins sqlbox\n"
                                "mail_plugin_dir = %s" % plugin_dir)
        extra_conf = s["extra_conf"]
        if s["submission"]:
            self._module_dir("mail", SUBMISSION_MODULE, "")
            extra_conf = SUBMISSION_CONF.format(
                relay_port=s["submission"],
                submission_port=self.submission_port,
                mail_plugins=shipped_submission_plugins()) + extra_conf
        auth_conf = s["auth_conf"]
        if auth_conf is None:
            auth_conf = LAUNCHPAD_AUTH_CONF.format(lpconf=self.lpconf_path)
        with open(self.conf_path, "w") as f:
            f.write(DOVECOT_CONF.format(
                run=self.run_dir, state=os.path.join(self.workdir, "state"),
                log=self.log_path, lpconf=self.lpconf_path,
                auth_conf=auth_conf, address=self.address,
                imap_port=self.imap_port, pop3_port=self.pop3_port,
                lmtp_port=self.lmtp_port,
                auth_cache_size=s["auth_cache_size"],
                auth_cache_ttl=s["auth_cache_ttl"],
                auth_debug=s["auth_debug"],
                mail_location=s["mail_location"],
                mail_plugin_conf=mail_plugin_conf,
                extra_conf=extra_conf,
                **{key: shipped_setting(SHIPPED_AUTH_SNIPPET, key)
                   for key in ("auth_mechanisms", "auth_username_chars",
                               "recipient_delimiter")}))

    def start(self):
        for path in (AUTH_MODULE, DOVEADM_MODULE):
            if not os.path.exists(path):
                raise FileNotFoundError(
                    "%s not built (DLP_BUILD_DIR=%s)" % (path, BUILD_DIR))
        auth_dir = self._module_dir("auth", AUTH_MODULE)
        doveadm_dir = self._module_dir("doveadm", DOVEADM_MODULE)
        self.write_config()
        script = ("set -e; mount --bind {a} {sa}; mount --bind {d} {sd}; "
                  "exec dovecot -F -c {conf}").format(
                      a=auth_dir, sa=SYSTEM_MODULEDIR + "/auth",
                      d=doveadm_dir, sd=SYSTEM_MODULEDIR + "/doveadm",
                      conf=self.conf_path)
        self.stdout = open(os.path.join(self.workdir, "dovecot.stdout"), "ab")
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=self.stdout, stderr=subprocess.STDOUT)
        try:
            for port in (self.imap_port, self.pop3_port, self.lmtp_port,
                         self.submission_port):
                if port is None:
                    continue
                wait_for(lambda: port_open(port, self.address) or
                         self.proc.poll() is not None,
                         20, "dovecot port %d" % port)
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited:\n" + self.log_text())
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def doveadm(self, *args, input=None, check=True, stock=False):
        """Runs doveadm inside Dovecot's mount namespace (our module dirs).
        stock=True: in a namespace of its own whose auth and doveadm module
        dirs hold Dovecot's modules only, i.e. doveadm as it is without
        this project (same config, so mail_plugin_dir is the same)."""
        if stock:
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   "set -e; mount --bind \"$1\" %s/auth; "
                   "mount --bind \"$2\" %s/doveadm; shift 2; "
                   "exec doveadm \"$@\"" % (SYSTEM_MODULEDIR,
                                            SYSTEM_MODULEDIR), "sh",
                   self._module_dir("auth", None),
                   self._module_dir("doveadm", None),
                   "-c", self.conf_path] + list(args)
        else:
            cmd = ["nsenter", "-t", str(self.proc.pid), "-m",
                   "doveadm", "-c", self.conf_path] + list(args)
        res = subprocess.run(cmd, input=input, capture_output=True,
                             text=True, timeout=120)
        if check and res.returncode != 0:
            raise RuntimeError("doveadm %s failed (%d): %s%s" % (
                " ".join(args), res.returncode, res.stdout, res.stderr))
        return res

    def generate_password(self, user, label="test", existing=None):
        args = ["-f", "json", "launchpad", "password", "generate",
                "-l", label]
        if existing is not None:
            args.append("-e")
        res = self.doveadm(*(args + [user]),
                           input=None if existing is None else existing + "\n")
        return json.loads(res.stdout)[0]["password"]

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def home(self, name, domain="ubuntu.com"):
        return os.path.join(self.vmail, domain, name)


class Workdir:
    """A world-traversable temp dir (mail processes run as nobody)."""

    def __init__(self, prefix="dlp-"):
        base = os.environ.get("DLP_TEST_OUT")
        if base:
            os.makedirs(base, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=prefix, dir=base)
        os.chmod(self.path, 0o755)

    def cleanup(self):
        if not os.environ.get("DLP_KEEP"):
            shutil.rmtree(self.path, ignore_errors=True)


# tests/demo: two contributors with a mailbox and sample mail, one who
# activates his on the web page (the OpenID fake signs the browser in as
# him), and the refused ones of tests/fixtures/launchpad.json.
DEMO_ACTIVATED = ("alice@ubuntu.com", "kim@kubuntu.org")
DEMO_WEB_USER = "frank"
DEMO_SAMPLES = (
    ("Welcome to your mailbox",
     "This message came in over LMTP while you were logged out: Dovecot\n"
     "sealed it to your mailbox's public key (~/mail/spool), and your\n"
     "first login moved it into ~/mail/sqlbox.db, encrypted with the key\n"
     "your app password unwraps.\n"),
    ("Nothing readable on disk",
     "grep for this sentence in the demo's vmail directory: it is in no\n"
     "file there, only in what Dovecot shows you after login.\n"),
    ("Devices and app passwords",
     "Each mail client gets its own app password; revoke one on the web\n"
     "page and that client is locked out at its next login.\n"),
)
DEMO_READY = "Ctrl-C stops the demo."


def demo_message(user, number, subject, text):
    return ("From: Demo Sender <demo@example.org>\r\nTo: %s\r\n"
            "Subject: %s\r\nMessage-ID: <demo-%d.%s>\r\n"
            "Date: Mon, 30 Nov 2026 12:0%d:00 +0000\r\n\r\n%s" % (
                user, subject, number, user, number,
                text.replace("\n", "\r\n"))).encode()


class Demo:
    """What tests/demo runs: the Launchpad fake, the OpenID fake as Ubuntu
    One, Dovecot with our modules and dovecot-launchpad-web, on loopback
    ports, started and stopped together."""

    def __init__(self):
        self.wd = Workdir("dlp-demo-")
        self.fake = self.op = self.dc = self.web = self.sink = None
        self.passwords = {}

    def start(self):
        try:
            self.fake = LaunchpadFake(self.wd.path).start()
            self.op = OpenIDFake(self.wd.path).start()
            # what contributors send through submission lands in the
            # loopback sink (the site's MTA in production)
            self.sink = SmtpSink().start()
            self.dc = Dovecot(self.wd.path, self.fake.api_url,
                              http_timeout="5s",
                              extra_conf=AUTH_VMAIL_MASTER_CONF,
                              submission=self.sink.port)
            web_port = free_port()
            self.dc.settings["extra_lpconf"] = web_lpconf(web_port, self.op,
                                                          self.dc)
            self.dc.start()
            self.web = WebDaemon(self.wd.path, self.dc.lpconf_path,
                                 web_port).start()
            for user in DEMO_ACTIVATED:
                self.passwords[user] = self.dc.generate_password(
                    user, label="demo")
                self.deliver_samples(user)
            self.op.next(DEMO_WEB_USER)
        except BaseException:
            self.stop(keep=True)
            raise
        return self

    def deliver_samples(self, user):
        """Through LMTP while the user is logged out: the sealed spool."""
        with smtplib.LMTP("127.0.0.1", self.dc.lmtp_port, timeout=60) as l:
            l.ehlo("demo.example.org")
            for i, (subject, text) in enumerate(DEMO_SAMPLES, 1):
                refused = l.sendmail("demo@example.org", [user],
                                     demo_message(user, i, subject, text))
                if refused:
                    raise RuntimeError("LMTP refused %s: %s" % (user, refused))

    def running(self):
        return all(p is not None and p.proc is not None and
                   p.proc.poll() is None
                   for p in (self.fake, self.op, self.dc, self.web))

    def stop(self, keep=False):
        for part in (self.web, self.dc, self.op, self.fake, self.sink):
            if part is not None:
                part.stop()
        if not keep:
            self.wd.cleanup()

    def describe(self):
        dc, alice = self.dc, DEMO_ACTIVATED[0]
        lines = [
            "dovecot-launchpad demo is running\n",
            "  IMAP  127.0.0.1:%d   POP3 127.0.0.1:%d   LMTP 127.0.0.1:%d   "
            "submission 127.0.0.1:%d" % (
                dc.imap_port, dc.pop3_port, dc.lmtp_port,
                dc.submission_port),
            "  web   %s/   sign in: Ubuntu One is a local fake that signs "
            "you in as %s at once" % (self.web.base, DEMO_WEB_USER),
            "  fake Launchpad: %s  (fixtures: tests/fixtures/launchpad.json)"
            % self.fake.api_url,
            "  files and logs: %s\n" % self.wd.path,
        ]
        for user, password in self.passwords.items():
            lines.append("  %-17s app password %s   (%d sample messages)" % (
                user, password, len(DEMO_SAMPLES)))
        lines += [
            "  %-17s entitled, no mailbox yet: sign in on the web page and "
            "press Activate" % (DEMO_WEB_USER + "@ubuntu.com"),
            "",
            "  try:  curl 'imap://127.0.0.1:%d/INBOX;UID=1' --user '%s:%s'"
            % (dc.imap_port, alice, self.passwords[alice]),
            "  send:  curl smtp://127.0.0.1:%d --mail-from %s --mail-rcpt "
            "friend@example.org --user '%s:%s' -T message.eml   (From: must "
            "be %s: other senders get 553; relayed to a sink that keeps it "
            "in memory)" % (dc.submission_port, alice, alice,
                            self.passwords[alice], alice),
            "  mail clients: server 127.0.0.1, the ports above, no "
            "encryption (the demo has no TLS; the page says STARTTLS)",
            "  sign in as someone else: curl -d '{\"nickname\": \"kim\"}' "
            "http://127.0.0.1:%d/_fake/next" % self.op.port,
            "  refused (and why, in %s): bob, carol, dave, erin @ubuntu.com"
            % dc.log_path,
            "  admin: nsenter -t %d -m doveadm -c %s launchpad cache show "
            "%s" % (dc.proc.pid, dc.conf_path, alice),
            "",
            DEMO_READY,
        ]
        return "\n".join(lines)


def demo():
    """`python3 tests/harness.py demo`: the whole product until Ctrl-C or
    SIGTERM (either stops every part and removes the files)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    d = Demo()
    try:
        d.start()
        print(d.describe())
        sys.stdout.flush()
        while d.running():
            time.sleep(1)
        print("a part of the demo stopped; its logs are kept in %s" %
              d.wd.path)
        d.stop(keep=True)
    except KeyboardInterrupt:
        # A second Ctrl-C (or the terminal's SIGINT to the whole process
        # group) must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        d.stop()
    except BaseException:
        d.stop(keep=True)
        print("the demo failed; its logs are kept in %s" % d.wd.path)
        raise


if __name__ == "__main__":
    if sys.argv[1:] == ["demo"]:
        demo()
    else:
        sys.exit("usage: harness.py demo")
