#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Dovecot's own IMAP conformance scripts (imaptest's src/tests) against
sqlbox and against Dovecot's maildir, in one run, with the same
configuration (the script checks that the two dovecot.conf files differ
only in mail_location and the storage plugin).

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/imaptest-suite.py \
        --imaptest /path/to/imaptest [--storages sqlbox,maildir,mdbox] \
        [--plugins] [--tests DIR]

imaptest is not packaged in Debian 12 and CI can't fetch it; bench/README.md
("IMAP conformance") says how to build it.  The groups that failed on
sqlbox once are ported to tests/integration/test_sqlbox_standards.py.

Run as root, like the system tests (tests/harness.py): a private Dovecot in
a mount namespace, loopback only.  Prints one line per storage with
imaptest's own totals ("N test groups: F failed, S skipped") and the
names of failing groups, and any Panic/Fatal/Error lines of its
dovecot.log; exit status 1 if any storage failed a group or logged one.
"""

import argparse
import os
import re
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(BENCH_DIR), "tests"))

from harness import Dovecot, LaunchpadFake, Workdir  # noqa: E402

USER = "alice@ubuntu.com"
LOCATIONS = {"sqlbox": "sqlbox:~/mail", "maildir": "maildir:~/Maildir",
             "mdbox": "mdbox:~/mdbox"}
# What imaptest's scripts exercise besides the base protocol: METADATA
# (RFC 5464) is off by default in Dovecot.  The same for every storage.
EXTRA_CONF = """\
protocol imap {
  imap_metadata = yes
}
"""
# --plugins: Dovecot's stock mail plugins that hook saving and mail, as
# tests/integration/test_sqlbox_plugins.py configures them (a quota far
# above what the scripts store, an empty global ACL directory).
# lazy_expunge's ".EXPUNGED" needs "/" as the separator: not maildir.
# No fts backend: with fts_squat, stock mdbox's imap dies of SIGSEGV in
# 65 of the 71 groups (sqlbox passes: squat finds no index directory).
PLUGINS_CONF = """\
mail_plugins = $mail_plugins acl lazy_expunge quota notify mail_log fts
protocol imap {
  mail_plugins = $mail_plugins imap_quota imap_acl
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=1G:messages=100000
  acl = vfile:%s
  lazy_expunge = .EXPUNGED
  mail_log_events = delete undelete expunge copy mailbox_delete mailbox_rename save flag_change
  mail_log_fields = uid box msgid size vsize flags
  fts_autoindex = no
}
"""
TIMEOUT_SECS = 1800


def normalized_conf(dc):
    text = open(dc.conf_path).read()
    text = text.replace(dc.workdir, "WORKDIR")
    for port in (dc.imap_port, dc.pop3_port, dc.lmtp_port):
        text = text.replace(str(port), "PORT")
    keep = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(
                ("mail_location", "mail_plugins", "mail_plugin_dir")):
            continue
        keep.append(line)
    return "\n".join(keep)


def run_suite(imaptest, tests, dc, password):
    env = dict(os.environ, LD_LIBRARY_PATH="/usr/lib/dovecot")
    cmd = [imaptest, "host=127.0.0.1", "port=%d" % dc.imap_port,
           "user=" + USER, "pass=" + password, "test=" + tests]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         timeout=TIMEOUT_SECS)
    out = res.stdout + res.stderr
    totals = re.search(r"^(\d+) test groups: (\d+) failed, (\d+) skipped.*$",
                       out, re.M)
    failed = sorted(set(re.findall(r"^\*\*\* Test (\S+) ", out, re.M)))
    return res.returncode, totals, failed, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imaptest", required=True,
                    help="the imaptest binary (built from dovecot/imaptest)")
    ap.add_argument("--tests",
                    help="the scripts directory (default: src/tests next "
                    "to the binary)")
    ap.add_argument("--storages", default="sqlbox,maildir")
    ap.add_argument("--extra-conf", default="",
                    help="more dovecot.conf text for every storage (e.g. a "
                    "file with mail plugins to try)")
    ap.add_argument("--plugins", action="store_true",
                    help="with quota, mail_log, notify, fts, acl and "
                    "lazy_expunge loaded (sqlbox and mdbox only)")
    ap.add_argument("--verbose", action="store_true",
                    help="print imaptest's whole output")
    args = ap.parse_args()
    tests = args.tests or os.path.join(
        os.path.dirname(os.path.abspath(args.imaptest)), "tests")
    storages = args.storages.split(",")
    extra = open(args.extra_conf).read() if args.extra_conf else ""

    wd = Workdir("dlp-imaptest-")
    if args.plugins:
        if "maildir" in storages:
            sys.exit("--plugins: lazy_expunge's .EXPUNGED needs mdbox")
        acl_dir = os.path.join(wd.path, "acl")
        os.makedirs(acl_dir)
        os.chmod(acl_dir, 0o755)
        extra += PLUGINS_CONF % acl_dir
    fake = LaunchpadFake(wd.path).start()
    dcs = {}
    bad = False
    try:
        for name in storages:
            sub = os.path.join(wd.path, name)
            os.makedirs(sub)
            os.chmod(sub, 0o755)
            dcs[name] = Dovecot(sub, fake.api_url,
                                mail_location=LOCATIONS[name],
                                extra_conf=EXTRA_CONF + extra).start()
        confs = {normalized_conf(dc) for dc in dcs.values()}
        if len(confs) != 1:
            sys.exit("the Dovecots differ in more than the storage")
        for name, dc in dcs.items():
            password = dc.generate_password(USER, label="imaptest")
            rc, totals, failed, out = run_suite(imaptest=args.imaptest,
                                                tests=tests, dc=dc,
                                                password=password)
            if args.verbose or totals is None:
                print(out)
            summary = totals.group(0) if totals else "no totals (rc %d)" % rc
            print("%-8s %s%s" % (name, summary,
                                 (" -- failing: " + " ".join(failed))
                                 if failed else ""))
            if totals is None or int(totals.group(2)) > 0:
                bad = True
            log = dc.log_text()
            for word in ("Panic", "Fatal", "Error"):
                lines = [l for l in log.splitlines() if word + ": " in l]
                if lines:
                    print("%-8s dovecot.log: %d %s lines, first: %s" % (
                        name, len(lines), word, lines[0]))
                    bad = True
    finally:
        for dc in dcs.values():
            dc.stop()
        fake.stop()
        wd.cleanup()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
