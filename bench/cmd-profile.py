#!/usr/bin/python3
"""CPU time of the imap process for single commands, sqlbox against mdbox.

Appends storage-bench's fixed-seed corpus (no 1 MB messages) to both
storages, then runs each command in new sessions (SELECT first) and
reads the imap process's on-CPU time (/proc/PID/schedstat) just before
the command and after its tagged reply: login, key unwrap and SELECT stay
out, and the number does not depend on what else runs on the machine.
With --perf DIR and --strace, one more session per storage runs the
command --repeat times under `perf record -g -p PID` and
`strace -c -f -p PID` (written to DIR).  --again measures the second
run of each command in its session instead (caches filled by the first).

Commands in --steady (default: searchhdr) are measured steadily: each
storage first runs the command in --warmup untimed sessions (mdbox's
first SEARCH of a header field adds the field to dovecot.index.cache for
every mail and rewrites its index: 5x the time of the next ones, and with
the rounds of one storage run back to back it was one of the three the
median took from), then at least --steady-rounds timed rounds alternate
between the storages, the order swapped every round.  The printed line
has the medians as before, and a second line the spread: the quartiles
and minimum of each storage, the quartiles and range of the ratio of
each round's pair, and the ratio of the two minima (the least disturbed
run of each: on a loaded machine both medians grow, mdbox's more).

Run as root:
  DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 bench/cmd-profile.py \
      --messages 2000 --rounds 5 [--perf /tmp/prof --strace]
"""

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def _load(name, file):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(BENCH_DIR, file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sb = _load("storage_bench", "storage-bench.py")
sel = _load("select_bench", "select-bench.py")

STORAGES = ("sqlbox", "mdbox")
COMMANDS = {
    "hdr": b"FETCH 1:* (BODY.PEEK[HEADER])",
    "firstsync": sb.FIRST_SYNC,
    "env": b"FETCH 1:* (ENVELOPE BODYSTRUCTURE RFC822.SIZE)",
    "searchhdr": sb.SEARCH_HEADERS,
}
# Only with --commands: every body read (SEARCH BODY in sqlbox asks its
# FTS index first).
BODY_COMMANDS = {
    "text": b"FETCH 1:* (BODY.PEEK[TEXT])",
}


def session(dc, pw):
    """A new logged-in session with INBOX... bench selected: (imap, pid)."""
    before = set(sel.imap_children(dc.proc.pid))
    imap = sb.Imap(dc.imap_port, pw)
    new = set(sel.imap_children(dc.proc.pid)) - before
    if len(new) != 1:
        imap.close()
        raise RuntimeError("imap process not found")
    imap.run(b"SELECT bench")
    return imap, new.pop()


def cpu_of(dc, pw, command, again=False):
    """CPU time of command in a new session; again: of its second run
    there (what a session's caches leave to pay)."""
    imap, pid = session(dc, pw)
    try:
        if again:
            imap.run(command)
        cpu0 = sel.oncpu_ns(pid)
        secs, nbytes, _, _ = imap.run(command)
        cpu = (sel.oncpu_ns(pid) - cpu0) / 1e9
    finally:
        imap.close()
    return cpu, secs, nbytes


def quartiles(xs):
    """(first quartile, median, third quartile) of xs."""
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def steady_runs(dcs, pw, command, args):
    """{storage: [(cpu, secs, nbytes)]} of alternating rounds after
    args.warmup untimed sessions per storage; "pairs": each round's
    mdbox / sqlbox CPU ratio when both are measured."""
    names = list(dcs)
    for _ in range(args.warmup):
        for name in names:
            cpu_of(dcs[name], pw[name], command, args.again)
    runs = {name: [] for name in names}
    pairs = []
    for i in range(max(args.rounds, args.steady_rounds)):
        order = names if i % 2 == 0 else names[::-1]
        got = {}
        for name in order:
            got[name] = cpu_of(dcs[name], pw[name], command, args.again)
            runs[name].append(got[name])
        if "sqlbox" in got and "mdbox" in got:
            pairs.append(got["mdbox"][0] / got["sqlbox"][0])
    return runs, pairs


def traced(dc, pw, command, repeat, argv, out):
    """command repeat times in one session with argv + [-p PID] attached."""
    imap, pid = session(dc, pw)
    try:
        with open(out + ".log", "w") as log:
            proc = subprocess.Popen(argv + ["-p", str(pid)], stdout=log,
                                    stderr=subprocess.STDOUT)
            time.sleep(1)       # perf/strace attach; not a measurement
            for _ in range(repeat):
                imap.run(command)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
    finally:
        imap.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--perf", metavar="DIR")
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--call-graph", default="fp",
                    help="perf record --call-graph (fp, dwarf)")
    ap.add_argument("--storages", default=",".join(STORAGES))
    ap.add_argument("--again", action="store_true",
                    help="measure each command's second run in its session")
    ap.add_argument("--steady", default="searchhdr",
                    help="commands measured after warm-up sessions, the "
                    "storages alternating (comma-separated; '' for none)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed sessions per storage before --steady "
                    "commands")
    ap.add_argument("--steady-rounds", type=int, default=21,
                    help="at least this many rounds for --steady commands")
    ap.add_argument("--json")
    args = ap.parse_args()
    msgs, _ = sb.make_corpus(args.messages, 0)
    wd = sb.Workdir("dlp-cmd-profile-")
    fake = sb.LaunchpadFake(wd.path).start()
    dcs = {}
    res = {"load_before": sb.lb.read_loadavg(), "messages": len(msgs),
           "bytes": sum(len(m) for m in msgs)}
    try:
        for name in args.storages.split(","):
            d = os.path.join(wd.path, name)
            os.makedirs(d)
            dcs[name] = sb.Dovecot(d, fake.api_url,
                                   mail_location=sb.LOCATIONS[name]).start()
        pw = {n: dc.generate_password(sb.USER, label="bench")
              for n, dc in dcs.items()}
        for name, dc in dcs.items():
            imap = sb.Imap(dc.imap_port, pw[name])
            imap.run(b"CREATE bench")
            for i in range(0, len(msgs), 50):
                sb.multiappend(imap, b"bench", msgs[i:i + 50])
            imap.close()
        for key in args.commands.split(","):
            command = COMMANDS.get(key) or BODY_COMMANDS[key]
            res[key] = {}
            steady = key in args.steady.split(",")
            if steady:
                all_runs, pairs = steady_runs(dcs, pw, command, args)
            for name, dc in dcs.items():
                if steady:
                    runs = all_runs[name]
                else:
                    runs = [cpu_of(dc, pw[name], command, args.again)
                            for _ in range(args.rounds)]
                res[key][name] = {
                    "cpu_ms": statistics.median(r[0] for r in runs) * 1e3,
                    "wall_ms": statistics.median(r[1] for r in runs) * 1e3,
                    "reply_bytes": runs[0][2]}
                if steady:
                    res[key][name]["runs_cpu_ms"] = [r[0] * 1e3
                                                     for r in runs]
                if args.perf:
                    os.makedirs(args.perf, exist_ok=True)
                    out = os.path.join(args.perf, "%s-%s" % (key, name))
                    traced(dc, pw[name], command, args.repeat,
                           ["perf", "record", "-F", "20000",
                            "--call-graph", args.call_graph,
                            "-o", out + ".data"], out)
                    if args.strace:
                        traced(dc, pw[name], command, args.repeat,
                               ["strace", "-c", "-f", "-o",
                                out + ".strace"], out + "-strace")
            r = res[key]
            if len(r) < 2:
                print(key, json.dumps(r))
                continue
            print("%-10s sqlbox %.1f ms  mdbox %.1f ms  ratio %.2f  "
                  "(wall %.1f / %.1f ms)" % (
                      key, r["sqlbox"]["cpu_ms"], r["mdbox"]["cpu_ms"],
                      r["mdbox"]["cpu_ms"] / r["sqlbox"]["cpu_ms"],
                      r["sqlbox"]["wall_ms"], r["mdbox"]["wall_ms"]))
            if steady:
                r["pair_ratios"] = pairs
                qs = quartiles(r["sqlbox"]["runs_cpu_ms"])
                qm = quartiles(r["mdbox"]["runs_cpu_ms"])
                qp = quartiles(pairs)
                print("  steady: %d rounds after %d warm-up; quartiles "
                      "sqlbox %.1f/%.1f/%.1f ms (min %.1f)  mdbox %.1f/%.1f/%.1f ms "
                      "(min %.1f)  pair ratio %.2f/%.2f/%.2f (%.2f-%.2f)  "
                      "ratio of minima %.2f" % (
                          len(pairs), args.warmup,
                          *qs, min(r["sqlbox"]["runs_cpu_ms"]),
                          *qm, min(r["mdbox"]["runs_cpu_ms"]),
                          *qp, min(pairs), max(pairs),
                          min(r["mdbox"]["runs_cpu_ms"]) /
                          min(r["sqlbox"]["runs_cpu_ms"])))
            if r["sqlbox"]["reply_bytes"] != r["mdbox"]["reply_bytes"]:
                print("  reply sizes differ: %d / %d" % (
                    r["sqlbox"]["reply_bytes"], r["mdbox"]["reply_bytes"]))
            sys.stdout.flush()
        res["load_after"] = sb.lb.read_loadavg()
        print("load average before %s after %s" % (res["load_before"],
                                                   res["load_after"]))
        sb.check_logs(dcs)
    finally:
        for dc in dcs.values():
            dc.stop()
        fake.stop()
        wd.cleanup()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
