#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 15 benchmark: imaptest's default mixed load against sqlbox (with
and without its FTS index), mdbox, mdbox+mail_crypt and maildir, in one
run, reported as operations per second and ratios.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/imaptest-mixed.py \
        --imaptest /path/to/imaptest [--secs 20] [--rounds 3] [--json FILE]

imaptest is not packaged in Debian 12: without --imaptest (or with a path
that is not an executable) the script says so and exits 0 without
measuring anything.  bench/README.md ("IMAP conformance") says how to
build it.

Run as root (tests/harness.py: private Dovecots in mount namespaces,
loopback only).  The Dovecots come from bench/storage-bench.py's setup
(dovecot.conf files that differ only in mail_location and mail plugins,
checked); sqlbox+fts adds plugin { sqlbox_fts = yes }.  Ten Launchpad
users (imapt1..imapt10, team members in the fake), each with an app
password on every Dovecot.  A round runs, for each storage in turn (the
order rotates by round), ten imaptest processes at once, one client and
one user each, for --secs seconds: imaptest's default mixed load
(LOGIN, SELECT, FETCH, STORE, EXPUNGE, APPEND from a fixed-seed mbox of
the storage-bench corpus, LOGOUT...), each process seeded.  Operations
are the sum of imaptest's "Totals" counters of the ten; the rate is their
sum over the seconds; the CPU time all of that Dovecot's processes used
meanwhile (bench/session-cpu.py's /proc sum), per operation, is reported
too, as it does not depend on other load.  Any imaptest "Error:" line,
or an Error/Panic in a Dovecot log, fails the run.
"""

import argparse
import concurrent.futures
import datetime
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "storage_bench", os.path.join(BENCH_DIR, "storage-bench.py"))
sb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sb)
spec = importlib.util.spec_from_file_location(
    "session_cpu", os.path.join(BENCH_DIR, "session-cpu.py"))
sc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sc)

STORAGES = ("sqlbox", "sqlbox+fts", "mdbox", "mdbox+crypt", "maildir")
LOCATIONS = dict(sb.LOCATIONS, **{"sqlbox+fts": "sqlbox:~/mail"})
FTS_CONF = "plugin {\n  sqlbox_fts = yes\n}\n"
REFERENCES = ("mdbox", "mdbox+crypt", "maildir")
USERS = ["imapt%d" % i for i in range(1, 11)]
TEAM = "ubuntumembers"
SEED = 15
CORPUS_MESSAGES = 200


def team_members(team):
    with open(os.path.join(sb.TOP_SRCDIR, "tests", "fixtures",
                           "launchpad.json")) as f:
        return json.load(f)["teams"][team]["members"]


def write_mbox(path):
    """The storage-bench corpus (fixed seed, no 1 MB messages) as an mbox
    with LF line ends, imaptest's source of APPENDed messages."""
    msgs, _ = sb.make_corpus(CORPUS_MESSAGES, 0)
    with open(path, "wb") as f:
        for msg in msgs:
            body = msg.replace(b"\r\n", b"\n")
            # mboxrd quoting of body lines starting with "From "
            body = re.sub(rb"(?m)^(>*From )", rb">\1", body)
            f.write(b"From bench@example.org Thu Dec  3 00:00:00 2026\n")
            f.write(body)
            if not body.endswith(b"\n"):
                f.write(b"\n")
            f.write(b"\n")


def imaptest_env():
    """imaptest links libdovecot.so, which is in Dovecot's own
    directory, not the linker's path."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(
        p for p in ("/usr/lib/dovecot", env.get("LD_LIBRARY_PATH")) if p)
    return env


# "Totals:", the state names, their probabilities (and those of
# repeating), then the counts: the first line of numbers only.
TOTALS_RE = re.compile(r"Totals:\n([^\n]*)\n(?:[^\n]*%[^\n]*\n)*"
                       r"([\d ]+)\n")


def imaptest_one(imaptest, port, user, password, mbox, secs, seed):
    res = subprocess.run(
        [imaptest, "host=127.0.0.1", "port=%d" % port,
         "user=%s@ubuntu.com" % user, "pass=%s" % password,
         "mbox=%s" % mbox, "clients=1", "secs=%d" % secs,
         "seed=%d" % seed],
        capture_output=True, text=True, timeout=secs + 120,
        env=imaptest_env())
    m = TOTALS_RE.search(res.stdout)
    if m is None:
        raise RuntimeError("imaptest gave no totals (exit %d):\n%s\n%s" % (
            res.returncode, res.stdout[-2000:], res.stderr[-2000:]))
    names = m.group(1).split()
    counts = [int(x) for x in m.group(2).split()]
    errors = [line for line in (res.stdout + res.stderr).splitlines()
              if line.startswith("Error:") or " Error: " in line]
    return dict(zip(names, counts)), errors


def mixed_round(imaptest, dc, pws, mbox, secs, rnd):
    """Ten imaptest processes at once against one Dovecot."""
    with concurrent.futures.ThreadPoolExecutor(len(USERS)) as ex:
        futs = [ex.submit(imaptest_one, imaptest, dc.imap_port, user,
                          pws[user], mbox, secs, SEED * 1000 + rnd * 100 + i)
                for i, user in enumerate(USERS)]
        results = [f.result() for f in futs]
    counters = {}
    errors = []
    for c, e in results:
        for k, v in c.items():
            counters[k] = counters.get(k, 0) + v
        errors.extend(e)
    return counters, errors


def run_mixed(imaptest, secs, rounds, nice):
    wd = sb.Workdir("dlp-imaptest-mixed-")
    fake = None
    dcs = {}
    results = {"date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"),
               "load_before": sb.lb.read_loadavg(),
               "versions": sb.versions(), "secs": secs, "rounds": rounds,
               "ops": {n: [] for n in STORAGES},
               "cpu_ms_per_op": {n: [] for n in STORAGES},
               "counters": {n: {} for n in STORAGES}}
    try:
        fake = sb.LaunchpadFake(wd.path).start()
        for user in USERS:
            fake.person(user, display_name="Bench " + user, is_valid=True,
                        is_ubuntu_coc_signer=True)
        fake.team(TEAM, team_members(TEAM) + USERS)
        mbox = os.path.join(wd.path, "corpus.mbox")
        write_mbox(mbox)
        for name in STORAGES:
            d = os.path.join(wd.path, name.replace("+", "-"))
            os.makedirs(d)
            extra = sb.mail_crypt_conf(d) if name == "mdbox+crypt" else \
                FTS_CONF if name == "sqlbox+fts" else ""
            dcs[name] = sb.Dovecot(d, fake.api_url,
                                   mail_location=LOCATIONS[name],
                                   extra_conf=extra).start()
            sb.lb.renice(dcs[name], fake, nice)
        texts = {n: sb.normalized_conf(dc) for n, dc in dcs.items()}
        if len(set(texts.values())) != 1:
            raise RuntimeError("dovecot.conf files differ beyond mail "
                               "location/plugins")
        pws = {n: {u: dc.generate_password(u + "@ubuntu.com",
                                           label="bench")
                   for u in USERS} for n, dc in dcs.items()}
        for rnd in range(rounds):
            k = rnd % len(STORAGES)
            for name in STORAGES[k:] + STORAGES[:k]:
                cpu_before = sum(sc.tree_cpu_secs(dcs[name].proc.pid))
                counters, errors = mixed_round(imaptest, dcs[name],
                                               pws[name], mbox, secs, rnd)
                cpu = sum(sc.tree_cpu_secs(dcs[name].proc.pid)) - cpu_before
                if errors:
                    raise RuntimeError("%s: imaptest errors:\n%s" % (
                        name, "\n".join(errors[:10])))
                ops = sum(counters.values())
                results["ops"][name].append(ops / secs)
                results["cpu_ms_per_op"][name].append(1000 * cpu / ops)
                acc = results["counters"][name]
                for c, v in counters.items():
                    acc[c] = acc.get(c, 0) + v
                print("round %d %-12s %7.1f ops/s %5.2f ms CPU/op  %s" % (
                    rnd + 1, name, ops / secs, 1000 * cpu / ops, counters),
                    flush=True)
        for name, dc in dcs.items():
            errors = [line for line in dc.log_text().splitlines()
                      if "Error:" in line or "Panic:" in line]
            if errors:
                raise RuntimeError("%s logged errors:\n%s" % (
                    name, "\n".join(errors[:10])))
        results["load_after"] = sb.lb.read_loadavg()
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


def report_mixed(results, command):
    med = {n: statistics.median(v) for n, v in results["ops"].items()}
    lines = [
        "imaptest mixed load, run of %s: %d rounds of %d s per storage, "
        "10 imaptest processes x 1 client, one user each; load average "
        "%s before, %s after." % (
            results["date"], results["rounds"], results["secs"],
            results["load_before"], results.get("load_after")),
        "",
        "```sh", command, "```", "",
        "| storage | ops/s (median of rounds) | rounds | "
        + " | ".join("vs %s" % r for r in REFERENCES) + " |",
        "|---|---|---|" + "---|" * len(REFERENCES),
    ]
    for name in STORAGES:
        row = "| %s | %.1f | %s | " % (
            name, med[name], ", ".join("%.0f" % x
                                       for x in results["ops"][name]))
        row += " | ".join("%.2f" % (med[name] / med[r]) if med[r] else "-"
                          for r in REFERENCES) + " |"
        lines.append(row)
    # What the server spent per operation (all its processes, from
    # /proc): independent of what else loads the machine, unlike ops/s.
    cpu = {n: statistics.median(v)
           for n, v in results["cpu_ms_per_op"].items()}
    lines += [
        "",
        "| storage | server CPU ms per operation (median) | rounds | "
        + " | ".join("%s / it" % r for r in REFERENCES) + " |",
        "|---|---|---|" + "---|" * len(REFERENCES),
    ]
    for name in STORAGES:
        row = "| %s | %.2f | %s | " % (
            name, cpu[name], ", ".join(
                "%.2f" % x for x in results["cpu_ms_per_op"][name]))
        row += " | ".join("%.2f" % (cpu[r] / cpu[name]) if cpu[name] else "-"
                          for r in REFERENCES) + " |"
        lines.append(row)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--imaptest", help="the imaptest binary")
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nice", type=int, default=sb.NICENESS)
    ap.add_argument("--json", help="also write raw results here")
    args = ap.parse_args()
    if not args.imaptest or not os.access(args.imaptest, os.X_OK):
        print("imaptest-mixed.py: skipped: no imaptest binary given "
              "(--imaptest PATH; bench/README.md says how to build it)")
        return 0
    if os.geteuid() != 0:
        sys.exit("imaptest-mixed.py: run as root (Dovecot in a mount "
                 "namespace)")
    os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    results = run_mixed(args.imaptest, args.secs, args.rounds, args.nice)
    command = ("DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 "
               "bench/imaptest-mixed.py --imaptest $IMAPTEST_DIR/src/"
               "imaptest --secs %d --rounds %d" % (args.secs, args.rounds))
    print()
    print(report_mixed(results, command))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
