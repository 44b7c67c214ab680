#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 15: the CPU time a short IMAP session costs the server, per
storage, in one run: the shape of imaptest's mixed load, where a client
logs in for about ten commands.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/session-cpu.py \
        [--sessions 100] [--rounds 2] [--storages sqlbox,mdbox,mdbox+crypt]

For each storage, a Dovecot from bench/storage-bench.py's setup (the same
dovecot.conf but for mail_location and mail_crypt), one Launchpad user
with an app password, 200 messages of the storage-bench corpus (fixed
seed) APPENDed; then --sessions sequential sessions of LOGIN, SELECT
INBOX, FETCH 1:* (FLAGS), LOGOUT, each on a new connection.  Measured:
the CPU time (user + system) of every process of that Dovecot, summed
from /proc (the master's reaped children included), divided by the
sessions: independent of other load on the machine, unlike a rate; the
system (kernel) part of it in a column of its own, and the minor page
faults of the same processes per session (one costs 10-17 us on a VM:
bench/README.md, issue 15).
mdbox+sqlboxlib: mdbox with our storage plugin loaded (mail_plugins
sqlbox, from a private mail_plugin_dir) but not used: the imap process
maps and relocates the plugin, libsqlite3, libsodium and libm and opens
no database.  Less mdbox, what loading them costs a session: the part of
sqlbox's cost no change inside the plugin can remove.

Rounds alternate the storages; the median is reported, and the ratio
to sqlbox's (above 1: that storage costs more per session).

--strace DIR: after the rounds, one more session per storage under
`strace -f -ff -o DIR/<storage>/trace -p <master>` (every Dovecot process
of that session, one file per pid); the system calls of the session's
imap process are counted and printed, the traces left in DIR.
"""

import argparse
import importlib.util
import imaplib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "storage_bench", os.path.join(BENCH_DIR, "storage-bench.py"))
sb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sb)
import harness  # noqa: E402  (tests/, on the path storage-bench.py set)

USER_NAME = "sessbench"
TEAM = "ubuntumembers"
CORPUS_MESSAGES = 200
WARMUP_SESSIONS = 5
TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # ppid, utime, stime, cutime, cstime
    return (int(fields[1]), int(fields[11]), int(fields[12]),
            int(fields[13]), int(fields[14]))


def proc_faults(pid):
    """(minflt, cminflt): the page faults of pid and of its reaped
    children that needed no disk read."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[8])


def process_tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = proc_stat(int(entry))[0]
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_cpu_secs(root):
    """CPU seconds (user, system) of root and its live descendants, plus
    what root's reaped children used (cutime/cstime): every Dovecot
    process there was, since the master reaps its own."""
    user = system = 0
    for pid in process_tree(root):
        try:
            _, utime, stime, cutime, cstime = proc_stat(pid)
        except (OSError, ValueError, IndexError):
            continue
        user += utime
        system += stime
        if pid == root:
            user += cutime
            system += cstime
    return user / TICK, system / TICK


def tree_faults(root):
    """Minor page faults of root and its live descendants, plus those
    of root's reaped children, as tree_cpu_secs() counts CPU time."""
    total = 0
    for pid in process_tree(root):
        try:
            minflt, cminflt = proc_faults(pid)
        except (OSError, ValueError, IndexError):
            continue
        total += minflt + (cminflt if pid == root else 0)
    return total


def session(port, user, password):
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=120)
    try:
        imap.login(user, password)
        typ, _ = imap.select("INBOX")
        assert typ == "OK"
        typ, data = imap.fetch("1:*", "(FLAGS)")
        assert typ == "OK" and len(data) == CORPUS_MESSAGES, len(data)
    finally:
        imap.logout()


STRACE_CALL = re.compile(r"^(?:\d+ +)?(\w+)\(")
STRACE_WAIT_SECS = 60


def strace_session(dc, port, user, password, out_dir):
    """One session under strace -ff; returns the imap process's
    {syscall: count} and the path of its trace."""
    os.makedirs(out_dir)
    prefix = os.path.join(out_dir, "trace")
    st = subprocess.Popen(["strace", "-f", "-ff", "-o", prefix,
                           "-p", str(dc.proc.pid)],
                          stderr=subprocess.PIPE, text=True)
    try:
        # strace says so on stderr once it has attached
        line = st.stderr.readline()
        if "attached" not in line:
            raise RuntimeError("strace: %s" % line)
        session(port, user, password)
        # the imap process ends after LOGOUT's reply: wait for its exit
        deadline = time.monotonic() + STRACE_WAIT_SECS
        while True:
            imap = None
            for name in os.listdir(out_dir):
                path = os.path.join(out_dir, name)
                with open(path) as f:
                    text = f.read()
                if re.search(r'execve\("[^"]*/imap"', text):
                    imap = (path, text)
            if imap is not None and "+++ exited with" in imap[1]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no imap process exit in %s" % out_dir)
            time.sleep(0.1)
    finally:
        st.terminate()
        st.wait(STRACE_WAIT_SECS)
    counts = {}
    for line in imap[1].splitlines():
        m = STRACE_CALL.match(line)
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts, imap[0]


LOADED = "mdbox+sqlboxlib"


def location(name):
    return sb.LOCATIONS["mdbox" if name == LOADED else name]


def loaded_plugin_conf(d):
    """mail_plugins sqlbox for an mdbox Dovecot: a copy of the system's
    mail modules and ours in a directory of its own (as the harness
    builds for sqlbox)."""
    moddir = os.path.join(d, "loaded-modules")
    os.makedirs(moddir)
    for name in os.listdir(harness.SYSTEM_MODULEDIR):
        src = os.path.join(harness.SYSTEM_MODULEDIR, name)
        if os.path.isfile(src) and name not in harness.OUR_MODULES:
            shutil.copy2(src, moddir)
    shutil.copy2(harness.SQLBOX_MODULE, moddir)
    return ("mail_plugins = $mail_plugins sqlbox\n"
            "mail_plugin_dir = %s\n" % moddir)


def run(storages, sessions, rounds, strace_dir=None):
    wd = sb.Workdir("dlp-session-cpu-")
    fake = None
    dcs = {}
    results = {name: [] for name in storages}
    sys_results = {name: [] for name in storages}
    fault_results = {name: [] for name in storages}
    user = USER_NAME + "@ubuntu.com"
    try:
        fake = sb.LaunchpadFake(wd.path).start()
        fake.person(USER_NAME, display_name="Session bench", is_valid=True,
                    is_ubuntu_coc_signer=True)
        with open(os.path.join(sb.TOP_SRCDIR, "tests", "fixtures",
                               "launchpad.json")) as f:
            members = json.load(f)["teams"][TEAM]["members"]
        fake.team(TEAM, members + [USER_NAME])
        msgs, _ = sb.make_corpus(CORPUS_MESSAGES, 0)
        pws = {}
        for name in storages:
            d = os.path.join(wd.path, name.replace("+", "-"))
            os.makedirs(d)
            extra = sb.mail_crypt_conf(d) if name == "mdbox+crypt" else ""
            if name == LOADED:
                extra = loaded_plugin_conf(d)
            dcs[name] = sb.Dovecot(d, fake.api_url,
                                   mail_location=location(name),
                                   extra_conf=extra).start()
            pws[name] = dcs[name].generate_password(user, label="bench")
            imap = imaplib.IMAP4("127.0.0.1", dcs[name].imap_port,
                                 timeout=120)
            imap.login(user, pws[name])
            for msg in msgs:
                typ, _ = imap.append("INBOX", None, None, msg)
                assert typ == "OK"
            imap.logout()
            for _ in range(WARMUP_SESSIONS):
                session(dcs[name].imap_port, user, pws[name])
        for name, dc in dcs.items():
            print("root %s %d" % (name, dc.proc.pid), flush=True)
        texts = {n: sb.normalized_conf(dc) for n, dc in dcs.items()}
        if len(set(texts.values())) != 1:
            raise RuntimeError("dovecot.conf files differ beyond mail "
                               "location/plugins")
        for rnd in range(rounds):
            k = rnd % len(storages)
            for name in storages[k:] + storages[:k]:
                dc = dcs[name]
                user0, sys0 = tree_cpu_secs(dc.proc.pid)
                flt0 = tree_faults(dc.proc.pid)
                t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
                for _ in range(sessions):
                    session(dc.imap_port, user, pws[name])
                t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
                user1, sys1 = tree_cpu_secs(dc.proc.pid)
                flt1 = tree_faults(dc.proc.pid)
                # for bench/perf-sessions.py (perf record -k CLOCK_MONOTONIC)
                print("span %s %.6f %.6f" % (name, t0, t1), flush=True)
                ms = 1000 * (user1 + sys1 - user0 - sys0) / sessions
                sys_ms = 1000 * (sys1 - sys0) / sessions
                results[name].append(ms)
                sys_results[name].append(sys_ms)
                fault_results[name].append((flt1 - flt0) / sessions)
                print("round %d %-12s %6.1f ms CPU per session (system "
                      "%.1f), %.0f page faults" % (
                          rnd + 1, name, ms, sys_ms,
                          fault_results[name][-1]), flush=True)
        if strace_dir is not None:
            for name in storages:
                counts, path = strace_session(
                    dcs[name], dcs[name].imap_port, user, pws[name],
                    os.path.join(strace_dir, name.replace("+", "-")))
                top = sorted(counts.items(), key=lambda kv: -kv[1])
                print("strace %s: %d system calls in the imap process "
                      "(%s): %s" % (name, sum(counts.values()), path,
                                   ", ".join("%s %d" % kv for kv in top)),
                      flush=True)
        sb.check_logs(dcs)
    finally:
        for dc in dcs.values():
            dc.stop()
        if fake is not None:
            fake.stop()
        wd.cleanup()
    return results, sys_results, fault_results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--storages", default="sqlbox,mdbox,mdbox+crypt")
    ap.add_argument("--strace", metavar="DIR",
                    help="then one session per storage under strace -ff, "
                    "traces in DIR (must not exist)")
    args = ap.parse_args()
    storages = args.storages.split(",")
    for name in storages:
        if name not in sb.LOCATIONS and name != LOADED:
            sys.exit("session-cpu.py: unknown storage %s" % name)
    if os.geteuid() != 0:
        sys.exit("session-cpu.py: run as root (Dovecot in a mount "
                 "namespace)")
    load = os.getloadavg()
    if args.strace is not None and os.path.exists(args.strace):
        sys.exit("session-cpu.py: %s exists" % args.strace)
    results, sys_results, fault_results = run(storages, args.sessions, args.rounds,
                               args.strace)
    if args.rounds < 1:
        return 0
    med = {n: statistics.median(v) for n, v in results.items()}
    print()
    print("%d sessions x %d rounds; load average %.2f %.2f %.2f before" % (
        args.sessions, args.rounds, *load))
    print()
    print("| storage | CPU ms per session (median) | rounds | vs sqlbox "
          "| of it system (median) | page faults per session (median) |")
    print("|---|---|---|---|---|---|")
    for name in storages:
        print("| %s | %.1f | %s | %s | %.1f | %.0f |" % (
            name, med[name], ", ".join("%.1f" % x for x in results[name]),
            "%.2f" % (med[name] / med["sqlbox"]) if "sqlbox" in med
            else "-", statistics.median(sys_results[name]),
            statistics.median(fault_results[name])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
