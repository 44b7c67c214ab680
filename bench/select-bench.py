#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 15 benchmark: SELECT of large folders, sqlbox against mdbox and
maildir in one run.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/select-bench.py \\
        [--sizes 10000,100000] [--rounds 5] [--storages sqlbox,mdbox,maildir]
        [--perf-out DIR] [--json FILE]

As root (Dovecot in a private mount namespace, drop_caches), loopback only.
Uses bench/storage-bench.py's harness, corpus of small messages and IMAP
client.  One Dovecot per storage, the dovecot.conf files identical apart
from mail_location (checked).  Per size N a folder "selN" is built by
MULTIAPPEND of 1,000 messages per command.  SELECT is measured twice per
folder: as appended ("appended"), and after the folders were given flags
the way a real folder has them ("flagged": \\Seen on the first 90 %,
\\Flagged on every 50th message, the keyword $label1 on one block of 100
in ten, by UID STORE in one session per storage).  Each time: SELECT in
a new session: cold (once per storage, right after sync
and drop_caches) and warm (--rounds rounds, the order of the storages
rotating by round; median, fastest, and the median CPU time the imap
process spent on the SELECT, from /proc/PID/schedstat, which other load
on the machine disturbs less).  SELECT must report N EXISTS, the same
UIDVALIDITY in every session of a storage, and the same HIGHESTMODSEQ in
every warm session of a storage.

--perf-out DIR: additionally, for sqlbox and the largest folder, records
`perf record -g` of the imap process (found as the newest child "imap" of
that Dovecot's master) over --rounds more SELECTs, into DIR/perf-N.data.
"""

import argparse
import datetime
import importlib.util
import json
import os
import re
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
lb = sb.lb

STORAGES = ("sqlbox", "mdbox", "maildir")
BATCH = 1000


def rotation(storages, rnd):
    k = rnd % len(storages)
    return storages[k:] + storages[:k]


def flag_sets(count):
    """(sequence set, flags) STOREs that make the folder look used."""
    seen = b"1:%d" % (count * 9 // 10)
    flagged = b",".join(b"%d" % u for u in range(50, count + 1, 50))
    label = b",".join(b"%d:%d" % (u, min(count, u + 99))
                      for u in range(1, count + 1, 1000))
    return [(seen, b"\\Seen"), (flagged, b"\\Flagged"), (label, b"$label1")]


def build(dcs, pw, storages, count):
    """Folder selN of count small messages in every storage; seconds."""
    rng = sb.random.Random(sb.SEED + count)
    box = b"sel%d" % count
    sessions = {n: sb.Imap(dcs[n].imap_port, pw[n]) for n in storages}
    for imap in sessions.values():
        imap.run(b"CREATE " + box)
    secs = dict.fromkeys(storages, 0.0)
    for rnd, start in enumerate(range(0, count, BATCH)):
        part = [sb.small_message(rng, i)
                for i in range(start, min(count, start + BATCH))]
        for name in rotation(storages, rnd):
            secs[name] += sb.multiappend(sessions[name], box, part)
    for imap in sessions.values():
        imap.close()
    return secs


def set_flags(dcs, pw, storages, count):
    """The flags of flag_sets() on selN, one session per storage."""
    box = b"sel%d" % count
    for name in storages:
        imap = sb.Imap(dcs[name].imap_port, pw[name])
        imap.run(b"SELECT " + box)
        # STORE lines are long: send the sets in pieces
        for uids, flag in flag_sets(count):
            parts = uids.split(b",")
            for i in range(0, len(parts), 500):
                imap.run(b"UID STORE %s +FLAGS.SILENT (%s)" % (
                    b",".join(parts[i:i + 500]), flag))
        imap.close()


def oncpu_ns(pid):
    """Nanoseconds pid has run on a CPU (/proc/PID/schedstat)."""
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


def select_once(dc, pw, box, count):
    """SELECT box in a new session: (wall seconds, CPU seconds of the imap
    process for the SELECT or None, response codes)."""
    before = set(imap_children(dc.proc.pid))
    imap = sb.Imap(dc.imap_port, pw)
    try:
        new = set(imap_children(dc.proc.pid)) - before
        pid = new.pop() if len(new) == 1 else None
        cpu0 = oncpu_ns(pid) if pid else None
        secs, _, _, untagged = imap.run(b"SELECT " + box)
        cpu = (oncpu_ns(pid) - cpu0) / 1e9 if pid else None
    finally:
        imap.close()
    if sb.exists_of(untagged) != count:
        raise RuntimeError("SELECT %s: %d EXISTS" % (
            box, sb.exists_of(untagged)))
    codes = {}
    for line in untagged:
        for key in (b"UIDVALIDITY", b"HIGHESTMODSEQ", b"UIDNEXT"):
            m = re.search(rb"\[" + key + rb" (\d+)\]", line)
            if m:
                codes[key.decode()] = int(m.group(1))
    return secs, cpu, codes


def bench_select(dcs, pw, storages, count, rounds):
    box = b"sel%d" % count
    got = {n: {"cold": None, "warm": [], "cpu": [], "codes": []}
           for n in storages}
    for name in storages:
        sb.drop_caches()
        secs, cpu, codes = select_once(dcs[name], pw[name], box, count)
        got[name]["cold"] = secs
        got[name]["codes"].append(codes)
    for rnd in range(rounds):
        for name in rotation(storages, rnd):
            secs, cpu, codes = select_once(dcs[name], pw[name], box, count)
            got[name]["warm"].append(secs)
            if cpu is not None:
                got[name]["cpu"].append(cpu)
            got[name]["codes"].append(codes)
    for name, g in got.items():
        if len({c.get("UIDVALIDITY") for c in g["codes"]}) != 1:
            raise RuntimeError("%s: UIDVALIDITY changed: %s" % (
                name, g["codes"]))
        if len({c.get("HIGHESTMODSEQ") for c in g["codes"][1:]}) != 1:
            raise RuntimeError("%s: HIGHESTMODSEQ changed across warm "
                               "SELECTs: %s" % (name, g["codes"]))
    return {n: {"cold_s": g["cold"],
                "warm_median_s": statistics.median(g["warm"]),
                "warm_min_s": min(g["warm"]),
                "warm_runs": [round(s, 5) for s in g["warm"]],
                "cpu_median_s": statistics.median(g["cpu"])
                if g["cpu"] else None,
                "codes": g["codes"][-1]} for n, g in got.items()}


def imap_children(master_pid):
    pids = []
    for ent in os.listdir("/proc"):
        if not ent.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % ent) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == master_pid and comm == "imap":
            pids.append(int(ent))
    return pids


def perf_selects(dc, pw, count, rounds, out_dir):
    """perf record -g of the imap process over rounds SELECTs (one new
    session each; the profile of each is appended)."""
    box = b"sel%d" % count
    os.makedirs(out_dir, exist_ok=True)
    files = []
    for rnd in range(rounds):
        before = set(imap_children(dc.proc.pid))
        imap = sb.Imap(dc.imap_port, pw)
        new = sorted(set(imap_children(dc.proc.pid)) - before)
        if len(new) != 1:
            imap.close()
            raise RuntimeError("imap process not found: %s" % new)
        path = os.path.join(out_dir, "perf-%d-%d.data" % (count, rnd))
        perf = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "20000",
                                 "-o", path, "-p", str(new[0])],
                                stdout=subprocess.DEVNULL)
        time.sleep(0.5)     # perf attaches; not a measurement
        imap.run(b"SELECT " + box)
        perf.send_signal(2)
        perf.wait()
        imap.close()
        files.append(path)
    return files


def fmt(secs):
    return "%.1f ms" % (secs * 1e3) if secs < 10 else "%.2f s" % secs


def report(facts, params, results, commands):
    out = ["Run of %s (sizes %s; %d warm rounds); load average %s before, "
           "%s after; mail on %s." % (
               results["date"], ", ".join(str(s) for s in params["sizes"]),
               params["rounds"], results["load_before"],
               results["load_after"], results["fs"]), "",
           "Machine: %d CPUs, %s, %.1f GiB RAM; Dovecot %s; SQLite %s; "
           "src/storage at %s%s." % (
               facts["nproc"], facts["cpu"], facts["mem_gib"],
               facts["dovecot"], results["versions"]["sqlite"],
               results["versions"]["storage_commit"],
               " (modified)" if results["versions"]["storage_dirty"]
               else ""), "",
           "```sh"] + commands + ["```", ""]
    refs = [s for s in params["storages"] if s != "sqlbox"]
    out.append("| SELECT | " + " | ".join(params["storages"]) + " | " +
               " | ".join("sqlbox vs " + r for r in refs) + " |")
    out.append("|---" * (1 + len(params["storages"]) + len(refs)) + "|")
    for label, res in results["select"].items():
        size, state = label.split()
        for kind, key in (("cold (drop_caches)", "cold_s"),
                          ("warm, median", "warm_median_s"),
                          ("warm, fastest", "warm_min_s"),
                          ("warm, imap CPU time, median", "cpu_median_s")):
            if any(res[s].get(key) is None for s in params["storages"]):
                continue
            row = ["%s msgs %s, %s" % (size, state, kind)]
            row += [fmt(res[s][key]) for s in params["storages"]]
            if "sqlbox" in res:
                row += ["%.2f" % (res[r][key] / res["sqlbox"][key])
                        for r in refs]
            out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("Building the folders (MULTIAPPEND of %d), seconds: %s." % (
        BATCH, "; ".join("%d: %s" % (size, ", ".join(
            "%s %.0f" % (n, s) for n, s in
            results["build"][str(size)].items()))
            for size in params["sizes"])))
    out.append("Ratios: the reference's time over sqlbox's (> 1: sqlbox "
               "faster).")
    return "\n".join(out)


def run(params, args):
    storages = params["storages"]
    results = {"date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"),
               "load_before": lb.read_loadavg(),
               "versions": sb.versions(), "build": {}, "select": {}}
    wd = Workdir("dlp-select-bench-")
    fake = None
    dcs = {}
    try:
        results["fs"] = sb.fs_facts(wd.path)
        fake = LaunchpadFake(wd.path).start()
        for name in storages:
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
        for size in params["sizes"]:
            t0 = time.monotonic()
            results["build"][str(size)] = build(dcs, pw, storages, size)
            print("build %d: %s (%.0f s)" % (
                size, results["build"][str(size)], time.monotonic() - t0))
            sys.stdout.flush()
        for size, state in [(n, st) for st in ("appended", "flagged")
                            for n in params["sizes"]]:
            if state == "flagged" and size == params["sizes"][0]:
                for n in params["sizes"]:
                    set_flags(dcs, pw, storages, n)
            if args.wait_idle > 0:
                lb.wait_idle(args.wait_idle)
            res = results["select"]["%d %s" % (size, state)] = bench_select(
                dcs, pw, storages, size, params["rounds"])
            print("select %d %s: %s" % (size, state, json.dumps(
                {n: {"cold_ms": round(r["cold_s"] * 1e3, 2),
                     "warm_ms": round(r["warm_median_s"] * 1e3, 2),
                     "cpu_ms": round((r["cpu_median_s"] or 0) * 1e3, 2)}
                 for n, r in res.items()})))
            sys.stdout.flush()
        if args.perf_out and "sqlbox" in dcs:
            size = max(params["sizes"])
            results["perf"] = perf_selects(dcs["sqlbox"], pw["sqlbox"],
                                           size, params["rounds"],
                                           args.perf_out)
        sb.check_logs(dcs)
        if args.hold:
            print("holding: %s" % json.dumps(
                {n: {"port": dc.imap_port, "password": pw[n],
                     "master": dc.proc.pid} for n, dc in dcs.items()}))
            sys.stdout.flush()
            input("press enter to stop\n")
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--storages", default=",".join(STORAGES))
    parser.add_argument("--nice", type=int, default=sb.NICENESS)
    parser.add_argument("--json", help="also write raw results here")
    parser.add_argument("--perf-out", metavar="DIR",
                        help="perf record sqlbox's imap process too")
    parser.add_argument("--wait-idle", type=int, default=0, metavar="SECS",
                        help="before each SELECT phase wait up to SECS "
                        "for an idle machine")
    parser.add_argument("--hold", action="store_true",
                        help="keep the Dovecots running until enter")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("select-bench.py: run as root")
    storages = tuple(s for s in args.storages.split(",") if s)
    for s in storages:
        if s not in sb.LOCATIONS or s == "mdbox+crypt":
            sys.exit("unknown storage %s" % s)
    params = {"sizes": [int(s) for s in args.sizes.split(",")],
              "rounds": args.rounds, "storages": list(storages),
              "nice": args.nice}
    facts = lb.machine_facts()
    os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    results = run(params, args)
    shown, skip = [], False
    for a in lb.shown_args(sys.argv[1:]):
        if skip:
            skip = False
        elif a == "--perf-out":
            skip = True      # a path of this machine
        elif not a.startswith("--perf-out="):
            shown.append(a)
    commands = ["make -C $DLP_BUILD_DIR   # configured as in tests/run",
                "DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 "
                "bench/select-bench.py" + "".join(" " + a for a in shown)]
    print()
    print(report(facts, params, results, commands))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"facts": facts, "params": params, "results": results,
                       "commands": commands}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
