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
checked).  sqlbox is the default configuration, with its FTS index
(sqlbox_fts defaults to yes, so the deferred indexing of what APPEND
saved is counted); sqlbox-nofts adds plugin { sqlbox_fts = no };
sqlbox+fts (plugin { sqlbox_fts = yes } written out, the same as
sqlbox) is still accepted by --by-op's --storages.  Ten Launchpad
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
import contextlib
import datetime
import imaplib
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "storage_bench", os.path.join(BENCH_DIR, "storage-bench.py"))
sb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sb)
spec = importlib.util.spec_from_file_location(
    "session_cpu", os.path.join(BENCH_DIR, "session-cpu.py"))
sc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sc)

STORAGES = ("sqlbox", "sqlbox-nofts", "mdbox", "mdbox+crypt", "maildir")
LOCATIONS = dict(sb.LOCATIONS, **{"sqlbox+fts": "sqlbox:~/mail",
                                  "sqlbox-nofts": "sqlbox:~/mail"})
FTS_CONF = "plugin {\n  sqlbox_fts = yes\n}\n"
NOFTS_CONF = "plugin {\n  sqlbox_fts = no\n}\n"
# --by-op: imaptest's state machine with one kind of command at a time.
# "-" leaves LOGIN, SELECT and LOGOUT; a lower LOGOUT probability makes a
# session do several of the phase's commands (LOGOUT skipped wraps to the
# next command).  "mixed" first: it warms the Dovecot up and leaves each
# user's INBOX at imaptest's ~30 messages, which the phases without
# APPEND then read; "session" is the baseline the others subtract per
# LOGIN.  (name, imaptest state arguments, counters of the phase's ops)
PHASES = (
    ("mixed", (), None),
    ("session", ("-",), ()),
    ("list+status", ("-", "LIST=100", "STATUS=100", "LOGOUT=10"),
     ("List", "Stat")),
    ("fetch", ("-", "FETCH=100", "LOGOUT=5"), ("Fetc",)),
    ("fetch2", ("-", "FETCH2=100", "LOGOUT=5"), ("Fet2",)),
    ("store", ("-", "STORE=100", "LOGOUT=5"), ("Stor",)),
    # APPEND needs the DELETE+EXPUNGE that keep the mailbox at ~30
    # messages (imaptest skips APPEND above that): counted per APPEND.
    ("append+del+expunge",
     ("-", "APPEND=100", "DELETE=100", "EXPUNGE=100", "LOGOUT=10"),
     ("Appe",)),
)
BY_OP_STORAGES = ("sqlbox", "sqlbox-nofts", "mdbox", "mdbox+crypt")
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


def imaptest_one(imaptest, port, user, password, mbox, secs, seed,
                 states=()):
    res = subprocess.run(
        [imaptest, "host=127.0.0.1", "port=%d" % port,
         "user=%s@ubuntu.com" % user, "pass=%s" % password,
         "mbox=%s" % mbox, "clients=1", "secs=%d" % secs,
         "seed=%d" % seed] + list(states),
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


def mixed_round(imaptest, dc, pws, mbox, secs, rnd, states=()):
    """Ten imaptest processes at once against one Dovecot."""
    with concurrent.futures.ThreadPoolExecutor(len(USERS)) as ex:
        futs = [ex.submit(imaptest_one, imaptest, dc.imap_port, user,
                          pws[user], mbox, secs, SEED * 1000 + rnd * 100 + i,
                          states)
                for i, user in enumerate(USERS)]
        results = [f.result() for f in futs]
    counters = {}
    errors = []
    for c, e in results:
        for k, v in c.items():
            counters[k] = counters.get(k, 0) + v
        errors.extend(e)
    return counters, errors


def warm_up(dc, user, password):
    """One LOGIN, SELECT INBOX, LOGOUT per user before anything is
    measured: a user's first login verifies the app password's hash
    (Argon2, ~0.2 s of the auth process, cached after) and creates the
    user's mail storage; in the first measured round that one-off CPU
    (about 2 s for ten users, the same for every storage) was divided by
    the round's operations, so it weighed more on a slower storage."""
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=120)
    try:
        imap.login(user + "@ubuntu.com", password)
        typ, _ = imap.select("INBOX")
        if typ != "OK":
            raise RuntimeError("warm-up SELECT of %s failed" % user)
    finally:
        imap.logout()


def setup(wd, names, dcs, nice):
    """The fake, the mbox, a Dovecot per storage (into dcs) and the
    users' passwords."""
    fake = sb.LaunchpadFake(wd.path).start()
    for user in USERS:
        fake.person(user, display_name="Bench " + user, is_valid=True,
                    is_ubuntu_coc_signer=True)
    fake.team(TEAM, team_members(TEAM) + USERS)
    mbox = os.path.join(wd.path, "corpus.mbox")
    write_mbox(mbox)
    try:
        for name in names:
            d = os.path.join(wd.path, name.replace("+", "-"))
            os.makedirs(d)
            extra = sb.mail_crypt_conf(d) if name == "mdbox+crypt" else \
                FTS_CONF if name == "sqlbox+fts" else \
                NOFTS_CONF if name == "sqlbox-nofts" else ""
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
        for n, dc in dcs.items():
            for u in USERS:
                warm_up(dc, u, pws[n][u])
    except Exception:
        fake.stop()
        raise
    return fake, mbox, pws


@contextlib.contextmanager
def dovecots(prefix, names, nice):
    """One Dovecot per storage of names and the Launchpad-shaped server:
    yields (dcs, mbox, pws) and checks the Dovecots' logs after; on an
    error their log tails go to stderr; all is stopped and removed
    afterwards."""
    wd = sb.Workdir(prefix)
    fake = None
    dcs = {}
    try:
        fake, mbox, pws = setup(wd, names, dcs, nice)
        yield dcs, mbox, pws
        sb.check_logs(dcs)
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


def measured_round(imaptest, dc, pws, mbox, secs, rnd, label, states=()):
    """mixed_round() and the server CPU seconds it cost: (counters,
    cpu); imaptest's errors raise."""
    cpu_before = sum(sc.tree_cpu_secs(dc.proc.pid))
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    counters, errors = mixed_round(imaptest, dc, pws, mbox, secs, rnd,
                                   states)
    t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
    cpu = sum(sc.tree_cpu_secs(dc.proc.pid)) - cpu_before
    # CLOCK_MONOTONIC, as `perf record -k CLOCK_MONOTONIC` stamps samples
    print("span %s %.6f %.6f" % (label, t0, t1), flush=True)
    if errors:
        raise RuntimeError("%s: imaptest errors:\n%s" % (
            label, "\n".join(errors[:10])))
    return counters, cpu


def print_roots(dcs):
    """Each Dovecot's root pid, for splitting a system-wide perf record
    by storage (bench/perf-sessions.py --root)."""
    for name, dc in dcs.items():
        print("root %s %d" % (name, dc.proc.pid), flush=True)


def run_mixed(imaptest, secs, rounds, nice, names=STORAGES):
    results = {"date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"),
               "load_before": sb.lb.read_loadavg(),
               "versions": sb.versions(), "secs": secs, "rounds": rounds,
               "storages": list(names),
               "ops": {n: [] for n in names},
               "cpu_ms_per_op": {n: [] for n in names},
               "cpu_ms": {n: [] for n in names},
               "counters": {n: {} for n in names}}
    with dovecots("dlp-imaptest-mixed-", names, nice) as (dcs, mbox,
                                                          pws):
        print_roots(dcs)
        results["roots"] = {n: dc.proc.pid for n, dc in dcs.items()}
        for rnd in range(rounds):
            k = rnd % len(names)
            for name in names[k:] + names[:k]:
                counters, cpu = measured_round(imaptest, dcs[name],
                                               pws[name], mbox, secs, rnd,
                                               name)
                ops = sum(counters.values())
                results["ops"][name].append(ops / secs)
                results["cpu_ms_per_op"][name].append(1000 * cpu / ops)
                results["cpu_ms"][name].append(1000 * cpu)
                acc = results["counters"][name]
                for c, v in counters.items():
                    acc[c] = acc.get(c, 0) + v
                print("round %d %-12s %7.1f ops/s %5.2f ms CPU/op  %s" % (
                    rnd + 1, name, ops / secs, 1000 * cpu / ops, counters),
                    flush=True)
    results["load_after"] = sb.lb.read_loadavg()
    return results


def run_by_op(imaptest, secs, rounds, nice, names):
    """--by-op: each of PHASES in turn (in their order: the mailboxes'
    state carries over), within a phase each storage in turn, the order
    rotating by round; server CPU and imaptest's counters per phase,
    storage and round."""
    results = {"date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"),
               "load_before": sb.lb.read_loadavg(),
               "versions": sb.versions(), "secs": secs, "rounds": rounds,
               "storages": list(names), "phases": {}}
    with dovecots("dlp-imaptest-byop-", names, nice) as (dcs, mbox, pws):
        print_roots(dcs)
        results["roots"] = {n: dc.proc.pid for n, dc in dcs.items()}
        for phase, states, _ in PHASES:
            res = results["phases"][phase] = {n: [] for n in names}
            for rnd in range(rounds):
                k = rnd % len(names)
                for name in names[k:] + names[:k]:
                    counters, cpu = measured_round(
                        imaptest, dcs[name], pws[name], mbox, secs, rnd,
                        "%s %s" % (phase, name), states)
                    res[name].append({"cpu": cpu, "counters": counters})
                    print("%-18s round %d %-12s %6.2f s CPU %s" % (
                        phase, rnd + 1, name, cpu, counters), flush=True)
    results["load_after"] = sb.lb.read_loadavg()
    return results


def by_op_costs(results):
    """{phase: {storage: (ms per op, ops, sessions)}}: a phase's CPU over
    all its rounds less its sessions (LOGINs) at the "session" phase's
    cost each, over the phase's own commands ("mixed": all CPU over all
    commands, as the mixed bench; "session": per LOGIN)."""
    out = {}
    phases = results["phases"]
    sess = {}
    for name in results["storages"]:
        runs = phases["session"][name]
        sess[name] = sum(r["cpu"] for r in runs) / max(
            1, sum(r["counters"].get("Logi", 0) for r in runs))
    for phase, _, ops_names in PHASES:
        out[phase] = {}
        for name in results["storages"]:
            runs = phases[phase][name]
            cpu = sum(r["cpu"] for r in runs)
            logins = sum(r["counters"].get("Logi", 0) for r in runs)
            if ops_names is None:
                ops = sum(sum(r["counters"].values()) for r in runs)
            elif not ops_names:
                ops = logins
            else:
                ops = sum(r["counters"].get(c, 0) for r in runs
                          for c in ops_names)
                cpu -= logins * sess[name]
            out[phase][name] = (1000 * cpu / ops if ops else None, ops,
                                logins)
    return out


def report_by_op(results, command):
    names = results["storages"]
    refs = [r for r in ("mdbox", "mdbox+crypt") if r in names]
    costs = by_op_costs(results)
    lines = [
        "imaptest by operation, run of %s: %d rounds of %d s per phase "
        "and storage, 10 imaptest processes x 1 client, one user each; "
        "load average %s before, %s after." % (
            results["date"], results["rounds"], results["secs"],
            results["load_before"], results.get("load_after")),
        "",
        "```sh", command, "```", "",
        "Server CPU ms per operation (all rounds; the phases' commands net "
        "of their sessions at the \"session\" phase's cost per LOGIN), "
        "then sqlbox's cost over the reference's (below 1.11 meets 0.9x "
        "mdbox, below 0.77 meets 1.3x mdbox+mail_crypt):",
        "",
        "| phase (ops, sessions of sqlbox) | " + " | ".join(names) + " | "
        + " | ".join("%s / %s" % (n, r) for n in names
                     if n.startswith("sqlbox") for r in refs) + " |",
        "|---|" + "---|" * (len(names) + len(refs) * sum(
            1 for n in names if n.startswith("sqlbox"))),
    ]
    for phase, _, _ in PHASES:
        c = costs[phase]
        first = names[0]
        row = "| %s (%d, %d) | " % (phase, c[first][1], c[first][2])
        row += " | ".join("%.2f" % c[n][0] if c[n][0] is not None else "-"
                          for n in names) + " | "
        row += " | ".join(
            "%.2f" % (c[n][0] / c[r][0]) if c[n][0] and c[r][0] else "-"
            for n in names if n.startswith("sqlbox") for r in refs) + " |"
        lines.append(row)
    return "\n".join(lines)


def report_mixed(results, command):
    names = results["storages"]
    refs = [r for r in REFERENCES if r in names]
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
        + " | ".join("vs %s" % r for r in refs) + " |",
        "|---|---|---|" + "---|" * len(refs),
    ]
    for name in names:
        row = "| %s | %.1f | %s | " % (
            name, med[name], ", ".join("%.0f" % x
                                       for x in results["ops"][name]))
        row += " | ".join("%.2f" % (med[name] / med[r]) if med[r] else "-"
                          for r in refs) + " |"
        lines.append(row)
    # What the server spent per operation (all its processes, from
    # /proc): independent of what else loads the machine, unlike ops/s.
    cpu = {n: statistics.median(v)
           for n, v in results["cpu_ms_per_op"].items()}
    lines += [
        "",
        "| storage | server CPU ms per operation (median) | rounds | "
        + " | ".join("%s / it" % r for r in refs) + " |",
        "|---|---|---|" + "---|" * len(refs),
    ]
    for name in names:
        row = "| %s | %.2f | %s | " % (
            name, cpu[name], ", ".join(
                "%.2f" % x for x in results["cpu_ms_per_op"][name]))
        row += " | ".join("%.2f" % (cpu[r] / cpu[name]) if cpu[name] else "-"
                          for r in refs) + " |"
        lines.append(row)
    # Per session (LOGIN): imaptest's mix is mostly session starts.
    lines += [
        "",
        "| storage | sessions (LOGINs) | server CPU ms per session |",
        "|---|---|---|",
    ]
    for name in names:
        logins = results["counters"][name].get("Logi", 0)
        lines.append("| %s | %d | %s |" % (
            name, logins, "%.1f" % (sum(results["cpu_ms"][name]) / logins)
            if logins else "-"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--imaptest", help="the imaptest binary")
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nice", type=int, default=sb.NICENESS)
    ap.add_argument("--json", help="also write raw results here")
    ap.add_argument("--by-op", action="store_true",
                    help="one kind of command at a time (PHASES) instead "
                    "of the mix: server CPU per operation by kind")
    ap.add_argument("--storages",
                    help="the storages, comma-separated, of %s (default: "
                    "%s; with --by-op: %s)" % (
                        ", ".join(sorted(LOCATIONS)), ",".join(STORAGES),
                        ",".join(BY_OP_STORAGES)))
    args = ap.parse_args()
    if not args.imaptest or not os.access(args.imaptest, os.X_OK):
        print("imaptest-mixed.py: skipped: no imaptest binary given "
              "(--imaptest PATH; bench/README.md says how to build it)")
        return 0
    if os.geteuid() != 0:
        sys.exit("imaptest-mixed.py: run as root (Dovecot in a mount "
                 "namespace)")
    os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    names = tuple(args.storages.split(",")) if args.storages else \
        BY_OP_STORAGES if args.by_op else STORAGES
    unknown = [n for n in names if n not in LOCATIONS]
    if unknown:
        sys.exit("imaptest-mixed.py: unknown storage(s): %s" %
                 ", ".join(unknown))
    if args.by_op:
        results = run_by_op(args.imaptest, args.secs, args.rounds,
                            args.nice, names)
        command = ("DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 "
                   "bench/imaptest-mixed.py --imaptest $IMAPTEST_DIR/src/"
                   "imaptest --by-op --storages %s --secs %d --rounds %d" % (
                       ",".join(names), args.secs, args.rounds))
        print()
        print(report_by_op(results, command))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        return 0
    results = run_mixed(args.imaptest, args.secs, args.rounds, args.nice,
                        names)
    command = ("DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 "
               "bench/imaptest-mixed.py --imaptest $IMAPTEST_DIR/src/"
               "imaptest --secs %d --rounds %d%s" % (
                   args.secs, args.rounds, " --storages " + ",".join(names)
                   if args.storages else ""))
    print()
    print(report_mixed(results, command))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
