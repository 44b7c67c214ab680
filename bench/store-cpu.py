#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 15: CPU of the imap process per STORE of imaptest's kind, sqlbox
against the stock storages, one long session each.

A 30-message INBOX (imaptest's default size, storage-bench's fixed-seed
corpus), then in one session --n STOREs as imaptest's STORE state makes
them (1-6 random sequence numbers, +FLAGS, -FLAGS or FLAGS, .SILENT or
not, random system flags and $Label1..5 keywords; fixed seed), the imap
process's on-CPU time (/proc/PID/schedstat) over all of them divided by
--n.  With --perf DIR: `perf record --call-graph dwarf -p PID` of each
session into DIR/<storage>.data.

Run as root:
  DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 bench/store-cpu.py \
      [--storages sqlbox,mdbox] [--n 1000] [--perf DIR]
"""

import argparse
import importlib.util
import os
import random
import signal
import subprocess
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

MESSAGES = 30
SEED = 15
FLAGS = ("\\Answered", "\\Flagged", "\\Seen", "\\Draft")
KEYWORDS = tuple("$Label%d" % i for i in range(1, 6))


def store_command(rng, count):
    seqs = sorted(rng.sample(range(1, count + 1), rng.randrange(1, 7)))
    flags = [f for f in FLAGS if rng.randrange(2)] + \
        [k for k in KEYWORDS if rng.randrange(4) == 0]
    return ("STORE %s %sFLAGS%s (%s)" % (
        ",".join(map(str, seqs)), rng.choice(("+", "-", "")),
        ".SILENT" if rng.randrange(2) else "", " ".join(flags))).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--storages", default="sqlbox,mdbox")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--perf", metavar="DIR")
    args = ap.parse_args()
    msgs, _ = sb.make_corpus(MESSAGES, 0)
    wd = sb.Workdir("dlp-store-cpu-")
    fake = sb.LaunchpadFake(wd.path).start()
    dcs = {}
    try:
        for name in args.storages.split(","):
            d = os.path.join(wd.path, name.replace("+", "-"))
            os.makedirs(d)
            extra = sb.mail_crypt_conf(d) if name == "mdbox+crypt" else ""
            dcs[name] = sb.Dovecot(d, fake.api_url,
                                   mail_location=sb.LOCATIONS[name],
                                   extra_conf=extra).start()
        pw = {n: dc.generate_password(sb.USER, label="bench")
              for n, dc in dcs.items()}
        print("load average before %s" % (sb.lb.read_loadavg(),))
        for name, dc in dcs.items():
            imap = sb.Imap(dc.imap_port, pw[name])
            sb.multiappend(imap, b"INBOX", msgs)
            imap.close()
            before = set(sel.imap_children(dc.proc.pid))
            imap = sb.Imap(dc.imap_port, pw[name])
            pid = (set(sel.imap_children(dc.proc.pid)) - before).pop()
            imap.run(b"SELECT INBOX")
            rng = random.Random(SEED)
            commands = [store_command(rng, MESSAGES) for _ in range(args.n)]
            perf = None
            if args.perf:
                os.makedirs(args.perf, exist_ok=True)
                perf = subprocess.Popen(
                    ["perf", "record", "-F", "4999", "--call-graph",
                     "dwarf,16384", "-o",
                     os.path.join(args.perf, name + ".data"), "-p", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)       # perf attaches; not a measurement
            cpu0 = sel.oncpu_ns(pid)
            for command in commands:
                imap.run(command)
            cpu = (sel.oncpu_ns(pid) - cpu0) / 1e9
            if perf is not None:
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=120)
            imap.close()
            print("%-12s %d STOREs: %.3f ms CPU of the imap process each" % (
                name, args.n, cpu * 1000 / args.n), flush=True)
        print("load average after %s" % (sb.lb.read_loadavg(),))
        sb.check_logs(dcs)
    finally:
        for dc in dcs.values():
            dc.stop()
        fake.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
