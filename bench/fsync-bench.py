#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 13 benchmark: what acknowledging only durable mail costs, for
sqlbox and for Dovecot's own storages, with mail_fsync = optimized (the
default: fsync before APPEND/COPY OK and LMTP 250) and mail_fsync = never.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/fsync-bench.py [--quick]

One run, as root, loopback only (tests/harness.py): the Launchpad fake and
eight Dovecots, {sqlbox, mdbox+crypt, mdbox, maildir} x {optimized,
never}, whose dovecot.conf differ only in mail_location, mail plugins
(mail_crypt, set up as in bench/storage-bench.py) and the mail_fsync line
(the script checks this).  One user, alice@ubuntu.com.  Each operation runs
on every configuration in turn, the order rotating by message, so that all
eight share the same background load; a time runs from sending a command
to its reply:
  append1  APPEND of one message per command (one commit, one fsync each):
           the case where the acknowledgement's fsync shows most;
  append50 MULTIAPPEND of 50 messages per command (LITERAL+);
  copy1    UID COPY of one message per command into another folder;
  lmtp1    LMTP deliveries to INBOX, one connection, one message per DATA
           (sqlbox seals them into its spool);
  import   the next SELECT INBOX in a new session (sqlbox imports the
           spool there: one commit, then the spool is emptied).
The corpus is bench/storage-bench.py's (fixed seed; text messages of 2 to
100 KB, median about 15 KB).  Also measured, for context: the latency of a
4 KiB write + fdatasync on the file system the mail is on.
Prints a markdown report and writes it into bench/README.md between the
markers <!-- fsync-bench:begin --> and <!-- fsync-bench:end -->.
"""

import argparse
import datetime
import importlib.util
import json
import os
import re
import smtplib
import statistics
import sys
import tempfile
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

README = os.path.join(BENCH_DIR, "README.md")
MARK_BEGIN = "<!-- fsync-bench:begin -->"
MARK_END = "<!-- fsync-bench:end -->"
SECTION = "## Durable acknowledgements (issue 13)"

USER = sb.USER
STORAGES = sb.STORAGES
MODES = ("optimized", "never")
CONFIGS = tuple((s, m) for s in STORAGES for m in MODES)
NICENESS = -10
IO_TIMEOUT_SECS = sb.IO_TIMEOUT_SECS
FSYNC_PROBES = 200
PROBE_BYTES = 4096

FULL = {"append1": 1000, "append50": 1000, "copy1": 1000, "lmtp1": 1000}
QUICK = {"append1": 60, "append50": 100, "copy1": 60, "lmtp1": 60}

OPS = (
    # key, label, what one unit is
    ("append1", "APPEND, 1 message per command", "msgs/s"),
    ("append50", "APPEND, 50 messages per command", "msgs/s"),
    ("copy1", "UID COPY, 1 message per command", "msgs/s"),
    ("lmtp1", "LMTP, 1 connection, 1 message per DATA", "msgs/s"),
    ("import", "SELECT INBOX after LMTP (the import)", "ms"),
)


def name_of(config):
    return "%s/%s" % config


def rotation(i):
    k = i % len(CONFIGS)
    return CONFIGS[k:] + CONFIGS[:k]


def fsync_latency(directory):
    """Median and p90 of write(4 KiB) + fdatasync on directory's file
    system, in seconds."""
    fd, path = tempfile.mkstemp(dir=directory)
    block = os.urandom(PROBE_BYTES)
    times = []
    try:
        for i in range(FSYNC_PROBES):
            t0 = time.perf_counter()
            os.pwrite(fd, block, i * PROBE_BYTES)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return {"median_s": statistics.median(times),
            "p90_s": times[int(len(times) * 0.9)]}


def check_same_settings(dcs):
    """Beyond mail location, plugins and the extra text (mail_crypt keys,
    mail_fsync), every dovecot.conf must be the same."""
    texts = {c: sb.normalized_conf(dc) for c, dc in dcs.items()}
    first = texts[CONFIGS[0]]
    for config, text in texts.items():
        if text != first:
            raise RuntimeError("dovecot.conf of %s differs:\n%s\n----\n%s"
                               % (name_of(config), first, text))
    for (storage, mode), dc in dcs.items():
        with open(dc.conf_path) as f:
            conf = f.read()
        fsync = re.findall(r"(?m)^mail_fsync = (\w+)$", conf)
        if fsync != ([] if mode == "optimized" else [mode]):
            raise RuntimeError("%s: mail_fsync lines %s" % (
                name_of((storage, mode)), fsync))


def bench_append1(sessions, msgs):
    secs = dict.fromkeys(CONFIGS, 0.0)
    for i, msg in enumerate(msgs):
        for config in rotation(i):
            secs[config] += sb.multiappend(sessions[config], b"one", [msg])
    return {c: {"secs": s, "rate": len(msgs) / s} for c, s in secs.items()}


def bench_append50(sessions, msgs, chunk=50):
    secs = dict.fromkeys(CONFIGS, 0.0)
    for i, start in enumerate(range(0, len(msgs), chunk)):
        for config in rotation(i):
            secs[config] += sb.multiappend(sessions[config], b"multi",
                                           msgs[start:start + chunk])
    return {c: {"secs": s, "rate": len(msgs) / s} for c, s in secs.items()}


def bench_copy1(sessions, count):
    """UID COPY of "one" message n (UIDs 1..count) into "copies"."""
    for imap in sessions.values():
        imap.run(b"SELECT one")
    secs = dict.fromkeys(CONFIGS, 0.0)
    for i in range(count):
        for config in rotation(i):
            secs[config] += sessions[config].run(
                b"UID COPY %d copies" % (i + 1))[0]
    for imap in sessions.values():
        imap.run(b"UNSELECT")
    return {c: {"secs": s, "rate": count / s} for c, s in secs.items()}


def bench_lmtp1(dcs, pw, msgs):
    conns = {}
    for config, dc in dcs.items():
        lmtp = smtplib.LMTP("127.0.0.1", dc.lmtp_port,
                            timeout=IO_TIMEOUT_SECS)
        lmtp.ehlo("bench.example.org")
        conns[config] = lmtp
    secs = dict.fromkeys(CONFIGS, 0.0)
    try:
        for i, msg in enumerate(msgs):
            for config in rotation(i):
                t0 = time.perf_counter()
                refused = conns[config].sendmail("sender@example.org",
                                                 [USER], msg)
                secs[config] += time.perf_counter() - t0
                if refused:
                    raise RuntimeError("LMTP refused: %r" % refused)
    finally:
        for lmtp in conns.values():
            lmtp.quit()
    res = {}
    for config, dc in dcs.items():
        sel, _, _, untagged = sb.timed_in_new_session(
            dc, pw[config], None, b"SELECT INBOX")
        if sb.exists_of(untagged) != len(msgs):
            raise RuntimeError("%s: INBOX has %d after LMTP, want %d" % (
                name_of(config), sb.exists_of(untagged), len(msgs)))
        res[config] = {"secs": secs[config],
                       "rate": len(msgs) / secs[config],
                       "import_s": sel}
    return res


def run(params, args):
    msgs, _ = sb.make_corpus(max(params.values()), 0)
    results = {"date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"),
               "load_before": lb.read_loadavg(),
               "versions": sb.versions()}
    wd = Workdir("dlp-fsync-bench-")
    fake = None
    dcs = {}
    try:
        results["fs"] = sb.fs_facts(wd.path)
        results["fsync"] = fsync_latency(wd.path)
        print("fdatasync of 4 KiB: median %.2f ms, p90 %.2f ms" % (
            results["fsync"]["median_s"] * 1e3,
            results["fsync"]["p90_s"] * 1e3))
        fake = LaunchpadFake(wd.path).start()
        for storage, mode in CONFIGS:
            d = os.path.join(wd.path, "%s-%s" % (
                storage.replace("+", "-"), mode))
            os.makedirs(d)
            extra = sb.mail_crypt_conf(d) if storage == "mdbox+crypt" \
                else ""
            if mode != "optimized":
                extra += "mail_fsync = %s\n" % mode
            dcs[(storage, mode)] = Dovecot(
                d, fake.api_url, mail_location=sb.LOCATIONS[storage],
                extra_conf=extra).start()
            lb.renice(dcs[(storage, mode)], fake, args.nice)
        check_same_settings(dcs)
        pw = {c: dc.generate_password(USER, label="bench")
              for c, dc in dcs.items()}
        sessions = {c: sb.Imap(dc.imap_port, pw[c])
                    for c, dc in dcs.items()}
        for imap in sessions.values():
            for box in (b"one", b"multi", b"copies"):
                imap.run(b"CREATE " + box)

        def step(what, fn, *a):
            t0 = time.monotonic()
            results[what] = {name_of(c): r for c, r in fn(*a).items()}
            print("%-9s %s  (%.0f s)" % (what, json.dumps(
                {n: round(r["rate"], 1) for n, r in results[what].items()}),
                time.monotonic() - t0))
            sys.stdout.flush()

        step("append1", bench_append1, sessions, msgs[:params["append1"]])
        step("append50", bench_append50, sessions,
             msgs[:params["append50"]])
        step("copy1", bench_copy1, sessions, params["copy1"])
        for imap in sessions.values():
            imap.close()
        step("lmtp1", bench_lmtp1, dcs, pw, msgs[:params["lmtp1"]])
        sb.check_logs({name_of(c): dc for c, dc in dcs.items()})
        results["load_after"] = lb.read_loadavg()
    except Exception:
        for config, dc in dcs.items():
            sys.stderr.write("---- %s log tail ----\n%s\n" % (
                name_of(config), dc.log_text()[-3000:]))
        raise
    finally:
        for dc in dcs.values():
            dc.stop()
        if fake is not None:
            fake.stop()
        wd.cleanup()
    return results


def value(results, key, config):
    if key == "import":
        return results["lmtp1"][name_of(config)]["import_s"] * 1e3
    return results[key][name_of(config)]["rate"]


def fmt(v):
    return "%.0f" % v if v >= 100 else "%.1f" % v


def report(facts, params, results, commands, heading):
    out = [heading, ""]
    out.append("Run of %s (%s; niceness %d); load average %s before, %s "
               "after; mail on %s, where a 4 KiB write + fdatasync takes "
               "%.2f ms (median; p90 %.2f ms)." % (
                   results["date"],
                   "--quick" if params["quick"] else "full",
                   params["nice"], results["load_before"],
                   results["load_after"], results["fs"],
                   results["fsync"]["median_s"] * 1e3,
                   results["fsync"]["p90_s"] * 1e3))
    out.append("")
    out.append("Machine: %d CPUs, %s, %.1f GiB RAM; Dovecot %s; SQLite %s; "
               "src/storage at %s%s." % (
                   facts["nproc"], facts["cpu"], facts["mem_gib"],
                   facts["dovecot"], results["versions"]["sqlite"],
                   results["versions"]["storage_commit"],
                   " plus uncommitted changes"
                   if results["versions"]["storage_dirty"] else ""))
    out.append("")
    out.append("```sh")
    out.extend(commands)
    out.append("```")
    out.append("")
    out.append("Each cell: `mail_fsync = optimized` / `never` "
               "(messages per second; the import in ms), then the time "
               "durability adds (optimized ÷ never, > 1: slower when "
               "durable).")
    out.append("")
    out.append("| operation (count) | %s |" % " | ".join(STORAGES))
    out.append("|---|%s" % ("---|" * len(STORAGES)))
    for key, label, unit in OPS:
        count = params["lmtp1" if key == "import" else key]
        cells = []
        for storage in STORAGES:
            opt = value(results, key, (storage, "optimized"))
            nev = value(results, key, (storage, "never"))
            cost = opt / nev if key == "import" else nev / opt
            cells.append("%s / %s (%.2fx)" % (fmt(opt), fmt(nev), cost))
        out.append("| %s (%d), %s | %s |" % (label, count, unit,
                                           " | ".join(cells)))
    out.append("")
    out.append("sqlbox against the others, both durable (`optimized`; "
               "speed ratio, > 1: sqlbox faster):")
    out.append("")
    out.append("| operation | %s |" % " | ".join(
        "vs %s" % s for s in STORAGES[1:]))
    out.append("|---|%s" % ("---|" * (len(STORAGES) - 1)))
    for key, label, _ in OPS:
        mine = value(results, key, ("sqlbox", "optimized"))
        ratios = []
        for storage in STORAGES[1:]:
            other = value(results, key, (storage, "optimized"))
            r = other / mine if key == "import" else mine / other
            ratios.append(("**%.2f**" if r < 1 else "%.2f") % r)
        out.append("| %s | %s |" % (label, " | ".join(ratios)))
    return "\n".join(out)


def write_readme(text):
    block = "%s\n%s\n%s" % (MARK_BEGIN, text, MARK_END)
    with open(README) as f:
        doc = f.read()
    if MARK_BEGIN in doc and MARK_END in doc:
        head, rest = doc.split(MARK_BEGIN, 1)
        doc = head + block + rest.split(MARK_END, 1)[1]
    elif SECTION in doc:
        head, tail = doc.split(SECTION, 1)
        doc = head + SECTION + "\n\n" + block + "\n" + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + SECTION + "\n\n" + block + "\n"
    tmp = README + ".tmp"
    with open(tmp, "w") as f:
        f.write(doc)
    os.rename(tmp, README)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer messages (%s)" % QUICK)
    parser.add_argument("--no-readme", action="store_true",
                        help="print the report only")
    parser.add_argument("--json", help="also write raw results here")
    parser.add_argument("--nice", type=int, default=NICENESS,
                        help="niceness of Dovecot, the fake and the "
                        "client (default %(default)s; 0 leaves it)")
    parser.add_argument("--wait-idle", type=int, default=0, metavar="SECS",
                        help="first wait up to SECS for an idle machine")
    parser.add_argument("--report-from", nargs="+", metavar="JSON",
                        help="measure nothing: write the README block "
                        "from runs saved with --json")
    args = parser.parse_args()
    if args.report_from:
        texts = []
        for i, path in enumerate(args.report_from, 1):
            with open(path) as f:
                saved = json.load(f)
            texts.append(report(saved["facts"], saved["params"],
                                saved["results"], saved["commands"],
                                "### Run %d" % i))
        text = "\n\n".join(texts)
        print(text)
        write_readme(text)
        return 0
    if os.geteuid() != 0:
        sys.exit("fsync-bench.py: run as root (Dovecot in a mount "
                 "namespace)")
    params = dict(QUICK if args.quick else FULL, quick=args.quick,
                  nice=args.nice)
    facts = lb.machine_facts()
    if args.wait_idle > 0:
        lb.wait_idle(args.wait_idle)
    os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    counts = {k: v for k, v in params.items() if k in FULL}
    results = run(counts, args)
    commands = [
        "make -C $DLP_BUILD_DIR   # configured as in tests/run",
        "DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 bench/fsync-bench.py"
        + "".join(" " + a for a in lb.shown_args(sys.argv[1:])),
    ]
    text = report(facts, params, results, commands, "### Run 1")
    print()
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"facts": facts, "params": params, "results": results,
                       "commands": commands}, f, indent=1)
    if not args.no_readme:
        write_readme(text)
        print("\nwritten into %s" % README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
