#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 15 benchmark: body FETCH, sqlbox against mdbox, measured as CPU
time of the imap process during the command.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/body-bench.py \\
        [--rounds 7] [--messages 200] [--perf-out DIR] [--strace]

As root (Dovecot in a private mount namespace), loopback only.  Uses
bench/storage-bench.py's harness, fixed-seed corpus (--messages of 2-100
KB plus two of 1 MB) and IMAP client, and select-bench.py's way of
finding a session's imap process.  One Dovecot per storage, the
dovecot.conf files identical apart from mail_location (checked).  The
corpus is appended to "bench"; then, in a new session per storage and
round after its SELECT (the order rotating by round):
  body30    UID FETCH <30 messages, storage-bench's sample> BODY.PEEK[]
  body100   UID FETCH <100 messages, the same kind of sample> BODY.PEEK[]
  partial   UID FETCH <the 1 MB messages> BODY.PEEK[]<600K.4096>
Per command: the median over rounds of the imap process's CPU time
(/proc/PID/schedstat, run time only: other load on the machine barely
moves it) and of the wall time; the literal bytes must agree.

--perf-out DIR: one more round per storage and command under
`perf record -g` of the imap process, DIR/perf-STORAGE-COMMAND.data.
--perf-stat: one more round per storage and command under `perf stat`
(task-clock, page faults, context switches, instructions, cycles).
--warm: every measured run is the command's second in its session.
--strace: one more round per storage and command under `strace -c -f`
of the imap process; the system call counts are printed.
"""

import argparse
import datetime
import importlib.util
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests"))

from harness import Dovecot, LaunchpadFake, Workdir  # noqa: E402


def _load(name, fname):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(BENCH_DIR, fname))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sb = _load("storage_bench", "storage-bench.py")
sel = _load("select_bench", "select-bench.py")
lb = sb.lb

STORAGES = ("sqlbox", "mdbox")
PERF_STAT_EVENTS = ("task-clock,page-faults,context-switches,"
                    "instructions,cycles")
# --warm: the session runs the command once before the measured run
WARM = False
# more perf record arguments (--perf-args)
PERF_ARGS = ["-g"]


def commands_of(msgs):
    """name -> IMAP command, all on folder "bench" (UIDs = corpus order)."""
    n = len(msgs)
    # One message of about the median size: what opening a mail costs.
    sizes = sorted((len(m), i + 1) for i, m in enumerate(msgs))
    cmds = {"body1": b"UID FETCH %d (BODY.PEEK[])" % sizes[n // 2][1]}
    for count, seed in ((30, sb.SEED + 2), (100, sb.SEED + 3)):
        sample = sorted(random.Random(seed).sample(range(1, n + 1),
                                                   min(n, count)))
        cmds["body%d" % count] = b"UID FETCH %s (BODY.PEEK[])" % (
            ",".join(str(u) for u in sample).encode())
    huge = [i + 1 for i, m in enumerate(msgs)
            if len(m) > sb.PARTIAL_OFFSET + 4096]
    cmds["partial"] = b"UID FETCH %s (BODY.PEEK[]<%d.4096>)" % (
        ",".join(str(u) for u in huge).encode(), sb.PARTIAL_OFFSET)
    return cmds


def session(dc, pw):
    """A new session with "bench" selected, and its imap process."""
    before = set(sel.imap_children(dc.proc.pid))
    imap = sb.Imap(dc.imap_port, pw)
    new = set(sel.imap_children(dc.proc.pid)) - before
    if len(new) != 1:
        imap.close()
        raise RuntimeError("imap process not found: %s" % new)
    imap.run(b"SELECT bench")
    return imap, new.pop()


def once(dc, pw, command, wrap=None):
    """command in a new session: (wall s, imap CPU s, literal bytes,
    wrapper output).  wrap(pid) starts a tracer and returns a stop
    function."""
    imap, pid = session(dc, pw)
    try:
        if WARM:
            imap.run(command)
        stop = wrap(pid) if wrap else None
        cpu0 = sel.oncpu_ns(pid)
        secs, _, nlit, _ = imap.run(command)
        cpu = (sel.oncpu_ns(pid) - cpu0) / 1e9
        out = stop() if stop else None
    finally:
        imap.close()
    return secs, cpu, nlit, out


def perf_wrap(path):
    def start(pid):
        # -c (a period: every Nth event) and -F exclude each other
        freq = [] if "-c" in PERF_ARGS else ["-F", "20000"]
        proc = subprocess.Popen(["perf", "record", "-q"] + freq +
                                PERF_ARGS + ["-o", path, "-p", str(pid)],
                                stdout=subprocess.DEVNULL)
        time.sleep(0.5)     # perf attaches; not a measurement

        def stop():
            proc.send_signal(signal.SIGINT)
            proc.wait()
            return path
        return stop
    return start


def perf_stat_wrap(pid):
    proc = subprocess.Popen(["perf", "stat", "-e", PERF_STAT_EVENTS,
                             "-p", str(pid)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)         # perf attaches; not a measurement

    def stop():
        proc.send_signal(signal.SIGINT)
        return proc.communicate()[1]
    return stop


STRACE_ARGS = ["-c", "-f"]


def strace_wrap(pid):
    proc = subprocess.Popen(["strace"] + STRACE_ARGS + ["-p", str(pid)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)         # strace attaches; not a measurement

    def stop():
        proc.send_signal(signal.SIGINT)
        return proc.communicate()[1]
    return stop


def run(params, args):
    msgs, _ = sb.make_corpus(params["messages"], 2)
    cmds = commands_of(msgs)
    results = {"date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"),
               "load_before": lb.read_loadavg(),
               "versions": sb.versions(), "fetch": {}}
    wd = Workdir("dlp-body-bench-")
    fake = None
    dcs = {}
    try:
        fake = LaunchpadFake(wd.path).start()
        for name in STORAGES:
            d = os.path.join(wd.path, name)
            os.makedirs(d)
            dcs[name] = Dovecot(d, fake.api_url,
                                mail_location=sb.LOCATIONS[name]).start()
            lb.renice(dcs[name], fake, args.nice)
        texts = {n: sb.normalized_conf(dc) for n, dc in dcs.items()}
        if len(set(texts.values())) != 1:
            raise RuntimeError("dovecot.conf differs beyond mail_location")
        pw = {n: dc.generate_password(sb.USER, label="bench")
              for n, dc in dcs.items()}
        for name, dc in dcs.items():
            imap = sb.Imap(dc.imap_port, pw[name])
            imap.run(b"CREATE bench")
            for i in range(0, len(msgs), 50):
                sb.multiappend(imap, b"bench", msgs[i:i + 50])
            imap.close()
        for what, command in cmds.items():
            if args.only and what not in args.only.split(","):
                continue
            got = {n: {"wall": [], "cpu": [], "bytes": set()}
                   for n in STORAGES}
            for rnd in range(params["rounds"]):
                order = STORAGES[rnd % 2:] + STORAGES[:rnd % 2]
                for name in order:
                    secs, cpu, nlit, _ = once(dcs[name], pw[name], command)
                    got[name]["wall"].append(secs)
                    got[name]["cpu"].append(cpu)
                    got[name]["bytes"].add(nlit)
            nbytes = set.union(*(g["bytes"] for g in got.values()))
            if len(nbytes) != 1:
                raise RuntimeError("%s: literal bytes differ: %s" % (
                    what, {n: g["bytes"] for n, g in got.items()}))
            res = results["fetch"][what] = {
                n: {"cpu_median_s": statistics.median(g["cpu"]),
                    "wall_median_s": statistics.median(g["wall"]),
                    "cpu_runs": [round(c, 5) for c in g["cpu"]]}
                for n, g in got.items()}
            res["bytes"] = nbytes.pop()
            print("%-8s %s" % (what, json.dumps(res)))
            sys.stdout.flush()
            for name in STORAGES:
                if args.perf_out:
                    os.makedirs(args.perf_out, exist_ok=True)
                    once(dcs[name], pw[name], command, perf_wrap(
                        os.path.join(args.perf_out, "perf-%s-%s.data" % (
                            name, what))))
                if args.perf_stat:
                    out = once(dcs[name], pw[name], command,
                               perf_stat_wrap)[3]
                    print("perf stat, %s %s:\n%s" % (name, what, out))
                if args.strace:
                    out = once(dcs[name], pw[name], command,
                               strace_wrap)[3]
                    print("strace -c, %s %s:\n%s" % (name, what, out))
        sb.check_logs(dcs)
        results["load_after"] = lb.read_loadavg()
    except Exception:
        for name, dc in dcs.items():
            sys.stderr.write("---- %s log tail ----\n%s\n" % (
                name, dc.log_text()[-3000:]))
        raise
    finally:
        for dc in dcs.values():
            dc.stop()
        if fake is not None:
            fake.stop()
        wd.cleanup()
    return results


def report(params, results):
    out = ["Run of %s (%d messages + 2 of 1 MB, %d rounds); load average "
           "%s before, %s after; src/storage at %s%s." % (
               results["date"], params["messages"], params["rounds"],
               results["load_before"], results["load_after"],
               results["versions"]["storage_commit"],
               " (modified)" if results["versions"]["storage_dirty"]
               else ""), "",
           "| command | bytes | sqlbox imap CPU | mdbox imap CPU | "
           "sqlbox vs mdbox (CPU) | sqlbox wall | mdbox wall |",
           "|---|---|---|---|---|---|---|"]
    for what, res in results["fetch"].items():
        s, m = res["sqlbox"], res["mdbox"]
        out.append("| %s | %.2f MB | %.1f ms | %.1f ms | %.2f | %.1f ms | "
                   "%.1f ms |" % (
                       what, res["bytes"] / 1e6, s["cpu_median_s"] * 1e3,
                       m["cpu_median_s"] * 1e3,
                       m["cpu_median_s"] / s["cpu_median_s"],
                       s["wall_median_s"] * 1e3, m["wall_median_s"] * 1e3))
    out.append("")
    out.append("Medians of the rounds; ratio: mdbox's CPU time over "
               "sqlbox's (> 1: sqlbox cheaper).")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--nice", type=int, default=sb.NICENESS)
    parser.add_argument("--json", help="also write raw results here")
    parser.add_argument("--perf-out", metavar="DIR",
                        help="perf record the imap process in one more "
                        "round per command")
    parser.add_argument("--perf-stat", action="store_true",
                        help="perf stat the imap process in one more "
                        "round per command")
    parser.add_argument("--strace", action="store_true",
                        help="strace -c the imap process in one more "
                        "round per command")
    parser.add_argument("--warm", action="store_true",
                        help="measure the command's second run in its "
                        "session (what stays after the first: the "
                        "process's one-off costs)")
    parser.add_argument("--perf-args", default="-g",
                        help="perf record's arguments besides -F, -o, -p "
                        "(default -g; e.g. \"--call-graph dwarf\")")
    parser.add_argument("--only", help="commands to run (body1,body30,"
                        "body100,partial); default all")
    args = parser.parse_args()
    PERF_ARGS[:] = args.perf_args.split()
    global WARM
    WARM = args.warm
    if os.geteuid() != 0:
        sys.exit("body-bench.py: run as root")
    params = {"messages": args.messages, "rounds": args.rounds}
    os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    results = run(params, args)
    print()
    print(report(params, results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"params": params, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
