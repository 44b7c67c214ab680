#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 18 benchmark: SEARCH BODY through sqlbox's FTS5 index against
maildir and mdbox without FTS, in one run, on one fixed-seed corpus.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/fts-bench.py \
        [--messages 10000] [--rounds 5]

Reuses bench/storage-bench.py (corpus of 2-100 KB text messages, a word
planted in ~1 %, MULTIAPPEND, the Dovecot harness).  Measured:
  append   MULTIAPPEND of the corpus in chunks, the storages in turn, in
           one session each, from command to tagged reply; sqlbox-nofts is
           the same build with plugin { sqlbox_fts = no }, the indexing
           cost is the ratio of the two.  sqlbox indexes saved mail after
           the reply, once the session has saved nothing for
           sqlbox_fts_index_delay (--index-delay: the shipped default if
           not given; 0 indexes in the save's transaction, before the
           reply, which is also what builds before that change do);
  index    with a delay: after each sqlbox MULTIAPPEND the bench waits
           for its session's deferred indexing to end (the debug line
           "indexed N saved bodies while idle (0 pending)", logged with
           log_debug = category=sqlbox, set for both sqlbox Dovecots),
           so that no indexing runs during another storage's timed
           APPEND or a SEARCH;
  cpu      utime+stime of the two sqlbox sessions' imap processes
           (/proc), during the APPENDs and during the deferred indexing:
           the CPU the index costs, wherever it now runs;
  search1  the first UID SEARCH BODY <word> in a new session;
  search   the median of --rounds more, each in a new session;
  index    bytes of the FTS tables in sqlbox.db (read with sqlbox-dbtool)
           against the corpus bytes.
Replies are checked: SEARCH must find exactly the planted messages.

--sessions N (issue 15): instead, what indexing one APPEND costs in
imaptest's mixed load, where a session saves one message and logs out
(the deferred indexing runs after LOGOUT's reply, before the imap
process exits): N sessions of LOGIN, APPEND of one corpus message to
INBOX, LOGOUT per storage (sqlbox, sqlbox-nofts, mdbox), the storages in
turn session by session, each session waited for until its imap process
has exited; measured is the CPU of every process of each Dovecot
(bench/session-cpu.py's tree_cpu_secs(): the master's reaped children
included) over the sessions, after --warmup sessions each.  sqlbox less
sqlbox-nofts is the index's CPU per APPEND.  Also printed: the minor
page faults of the same processes per session (session-cpu.py's
tree_faults()).
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "storage_bench", os.path.join(BENCH_DIR, "storage-bench.py"))
sb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sb)

STORAGES = ("sqlbox", "sqlbox-nofts", "mdbox", "maildir")
LOCATIONS = dict(sb.LOCATIONS, **{"sqlbox-nofts": "sqlbox:~/mail"})
# the deferred indexing's batches are logged at debug level (sqlbox-fts.c)
SQLBOX_DEBUG = "log_debug = category=sqlbox\n"
IDLE_DONE = b"saved bodies while idle (0 pending)"
IDLE_FAILED = b"indexing saved mail while idle failed"
INDEX_WAIT_SECS = 600
TICK = os.sysconf("SC_CLK_TCK")
spec = importlib.util.spec_from_file_location(
    "session_cpu", os.path.join(BENCH_DIR, "session-cpu.py"))
sc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sc)
SESSION_STORAGES = ("sqlbox", "sqlbox-nofts", "mdbox")
EXIT_WAIT_SECS = 120


def extra_conf(name, delay):
    if name == "sqlbox-nofts":
        return SQLBOX_DEBUG + "plugin {\n  sqlbox_fts = no\n}\n"
    if name == "sqlbox":
        conf = SQLBOX_DEBUG
        if delay is not None:
            conf += "plugin {\n  sqlbox_fts_index_delay = %s\n}\n" % delay
        return conf
    return ""


def imap_pid(dc, sock):
    """The imap process of Dovecot dc holding our end of sock."""
    lport = "%04X" % sock.getpeername()[1]
    rport = "%04X" % sock.getsockname()[1]
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if (cols[1].endswith(":" + lport) and
                    cols[2].endswith(":" + rport)):
                inode = cols[9]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[1] != str(dc.proc.pid):
                continue
            for fd in os.listdir("/proc/%s/fd" % pid):
                if (os.readlink("/proc/%s/fd/%s" % (pid, fd)) ==
                        "socket:[%s]" % inode):
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError("no imap process holds our connection")


def cpu_secs(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def idle_done_count(dc):
    with open(dc.log_path, "rb") as f:
        log = f.read()
    if IDLE_FAILED in log:
        raise RuntimeError("deferred indexing failed: see " + dc.log_path)
    return log.count(IDLE_DONE)


def wait_indexed(dc, count):
    """Until the session's deferred indexing has ended count times."""
    deadline = time.monotonic() + INDEX_WAIT_SECS
    while idle_done_count(dc) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("no end of the deferred indexing in %d s"
                               % INDEX_WAIT_SECS)
        time.sleep(0.02)


def dbtool_sql(dc, pw, sql):
    """The words of sqlbox-dbtool's answer to sql on alice's database."""
    home = dc.home("alice")
    res = subprocess.run(
        [os.path.join(os.environ["DLP_BUILD_DIR"],
                      "src/storage/sqlbox-dbtool"),
         os.path.join(home, "sqlbox.keys"),
         os.path.join(home, "mail", "sqlbox.db"), "sql", sql],
        input=pw, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    return res.stdout.split()


def fts5_segments(dc, pw):
    """nSegment of the FTS5 structure record (id 10: a 4-byte cookie, then
    the varints nLevel, nSegment, ...)."""
    blob = bytes.fromhex(dbtool_sql(
        dc, pw, "SELECT hex(block) FROM fts_index_data WHERE id = 10")[0])
    pos, values = 4, []
    while len(values) < 2:
        value = 0
        while True:
            byte = blob[pos]
            pos += 1
            value = (value << 7) | (byte & 0x7f)
            if byte < 0x80:
                break
        values.append(value)
    return values[1]


def index_bytes(dc, pw):
    sql = ("SELECT (SELECT ifnull(sum(length(block)), 0)"
           " FROM fts_index_data)"
           " + (SELECT ifnull(sum(length(sz)), 0) FROM fts_index_docsize)"
           " + (SELECT count(*) * 16 FROM fts_doc)")
    return int(dbtool_sql(dc, pw, sql)[0])


def wait_exit(pid):
    """Until process pid is gone (exited and reaped by the master)."""
    deadline = time.monotonic() + EXIT_WAIT_SECS
    while os.path.exists("/proc/%d" % pid):
        if time.monotonic() > deadline:
            raise RuntimeError("imap process %d did not exit" % pid)
        time.sleep(0.005)


def append_session(dc, pw, msg):
    """LOGIN, APPEND msg to INBOX, LOGOUT; returns once the session's
    imap process has exited."""
    imap = sb.Imap(dc.imap_port, pw)
    pid = imap_pid(dc, imap.sock)
    sb.multiappend(imap, b"INBOX", [msg])
    imap.close()
    wait_exit(pid)


def start_dovecots(wd, fake, names, index_delay, dcs):
    """Starts one Dovecot per storage name into dcs (filled as they start,
    so the caller's cleanup stops those that did); returns each one's
    app password for sb.USER."""
    for name in names:
        d = os.path.join(wd.path, name)
        os.makedirs(d)
        dcs[name] = sb.Dovecot(d, fake.api_url,
                               mail_location=LOCATIONS[name],
                               extra_conf=extra_conf(
                                   name, index_delay)).start()
    return {n: dc.generate_password(sb.USER, label="bench")
            for n, dc in dcs.items()}


def run_sessions(args):
    msgs, _ = sb.make_corpus(args.sessions + args.warmup, False)
    print("%d sessions per storage of one APPEND each (+%d warm-up), "
          "%.1f KB per message on average" % (
              args.sessions, args.warmup,
              sum(len(m) for m in msgs) / len(msgs) / 1e3))
    wd = sb.Workdir("dlp-fts-bench-")
    fake = sb.LaunchpadFake(wd.path).start()
    dcs = {}
    names = tuple(args.storages.split(","))
    cpu = dict.fromkeys(names, 0.0)
    faults = dict.fromkeys(names, 0)
    try:
        pw = start_dovecots(wd, fake, names, args.index_delay, dcs)
        for i, msg in enumerate(msgs):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                root = dcs[name].proc.pid
                before = sum(sc.tree_cpu_secs(root))
                flt0 = sc.tree_faults(root)
                append_session(dcs[name], pw[name], msg)
                if i >= args.warmup:
                    cpu[name] += sum(sc.tree_cpu_secs(root)) - before
                    faults[name] += sc.tree_faults(root) - flt0
        fts_docs = int(dbtool_sql(dcs["sqlbox"], pw["sqlbox"],
                                  "SELECT count(*) FROM fts_doc")[0])
        segments = fts5_segments(dcs["sqlbox"], pw["sqlbox"])
    finally:
        for dc in dcs.values():
            dc.stop()
        fake.stop()
        wd.cleanup()
    if fts_docs != len(msgs):
        raise RuntimeError("%d of %d bodies indexed" % (fts_docs, len(msgs)))
    per = {n: 1000.0 * cpu[n] / args.sessions for n in names}
    flt = {n: faults[n] / args.sessions for n in names}
    print(json.dumps({"cpu_ms_per_session": per,
                      "faults_per_session": flt, "fts_segments": segments}))
    if names != SESSION_STORAGES:
        return 0
    print("| sqlbox | sqlbox-nofts | mdbox | index per APPEND | "
          "sqlbox / mdbox | nofts / mdbox |")
    print("|---|---|---|---|---|---|")
    print("| %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
        per["sqlbox"], per["sqlbox-nofts"], per["mdbox"],
        per["sqlbox"] - per["sqlbox-nofts"],
        per["sqlbox"] / per["mdbox"], per["sqlbox-nofts"] / per["mdbox"]))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--index-delay", default=None,
                    help="plugin { sqlbox_fts_index_delay } for sqlbox "
                    "(default: not set, the shipped default; 0: indexed "
                    "in the save's transaction, nothing to wait for)")
    ap.add_argument("--sessions", type=int, default=0,
                    help="sessions of one APPEND each per storage "
                    "(instead of the MULTIAPPEND and SEARCH bench)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--storages", default=",".join(SESSION_STORAGES),
                    help="with --sessions: of %s (the table needs all)"
                    % ",".join(SESSION_STORAGES))
    args = ap.parse_args()
    if args.sessions > 0:
        return run_sessions(args)
    deferred = args.index_delay is None or args.index_delay.strip() not in (
        "0", "0s", "0ms")
    msgs, planted = sb.make_corpus(args.messages, False)
    expected = sorted(i + 1 for i in planted)
    corpus_bytes = sum(len(m) for m in msgs)
    print("corpus: %d messages, %.1f MB, search word in %d" % (
        len(msgs), corpus_bytes / 1e6, len(expected)))
    wd = sb.Workdir("dlp-fts-bench-")
    fake = sb.LaunchpadFake(wd.path).start()
    dcs = {}
    res = {n: {} for n in STORAGES}
    try:
        pw = start_dovecots(wd, fake, STORAGES, args.index_delay, dcs)
        sessions = {n: sb.Imap(dc.imap_port, pw[n]) for n, dc in dcs.items()}
        for imap in sessions.values():
            imap.run(b"CREATE bench")
        pids = {n: imap_pid(dcs[n], sessions[n].sock)
                for n in ("sqlbox", "sqlbox-nofts")}
        secs = dict.fromkeys(STORAGES, 0.0)
        cpu = dict.fromkeys(pids, 0.0)
        index_cpu = index_wall = 0.0
        chunks = 0
        for rnd, start in enumerate(range(0, len(msgs), args.chunk)):
            part = msgs[start:start + args.chunk]
            k = rnd % len(STORAGES)
            for name in STORAGES[k:] + STORAGES[:k]:
                before = cpu_secs(pids[name]) if name in pids else 0
                secs[name] += sb.multiappend(sessions[name], b"bench", part)
                if name not in pids:
                    continue
                cpu[name] += cpu_secs(pids[name]) - before
                if name == "sqlbox" and deferred:
                    # the session's deferred indexing, before the next
                    # storage's APPEND
                    before = cpu_secs(pids[name])
                    t0 = time.perf_counter()
                    chunks += 1
                    wait_indexed(dcs[name], chunks)
                    index_wall += time.perf_counter() - t0
                    index_cpu += cpu_secs(pids[name]) - before
        for imap in sessions.values():
            imap.close()
        for n in STORAGES:
            res[n]["append_s"] = secs[n]
        for n in pids:
            res[n]["append_cpu_s"] = cpu[n]
        res["sqlbox"]["index_cpu_s"] = index_cpu
        res["sqlbox"]["index_wait_s"] = index_wall
        check = sb.search_check(expected)
        cmd = b"UID SEARCH BODY " + sb.SEARCH_WORD.encode()
        for n in STORAGES:
            runs = []
            for _ in range(args.rounds + 1):
                t, _, nlit, untagged = sb.timed_in_new_session(
                    dcs[n], pw[n], b"bench", cmd)
                check(n, 0, nlit, untagged)
                runs.append(t)
            res[n]["search_first_s"] = runs[0]
            res[n]["search_median_s"] = statistics.median(runs[1:])
        res["sqlbox"]["index_bytes"] = index_bytes(dcs["sqlbox"],
                                                   pw["sqlbox"])
    finally:
        for dc in dcs.values():
            dc.stop()
        fake.stop()
        wd.cleanup()
    s = res["sqlbox"]
    print(json.dumps(res, indent=1))
    print("| | sqlbox (FTS) | sqlbox-nofts | mdbox | maildir |")
    print("|---|---|---|---|---|")
    print("| APPEND %d msgs (s) | %.2f | %.2f | %.2f | %.2f |" % (
        (len(msgs),) + tuple(res[n]["append_s"] for n in STORAGES)))
    print("| SEARCH BODY first (ms) | %.1f | %.1f | %.1f | %.1f |" % tuple(
        1000 * res[n]["search_first_s"] for n in STORAGES))
    print("| SEARCH BODY median (ms) | %.1f | %.1f | %.1f | %.1f |" % tuple(
        1000 * res[n]["search_median_s"] for n in STORAGES))
    print("| search time / sqlbox FTS | 1 | %.1fx | %.1fx | %.1fx |" % tuple(
        res[n]["search_median_s"] / s["search_median_s"]
        for n in STORAGES[1:]))
    print("indexing cost during APPEND: %+.1f %%" % (
        100.0 * (s["append_s"] / res["sqlbox-nofts"]["append_s"] - 1)))
    nofts_cpu = res["sqlbox-nofts"]["append_cpu_s"]
    print("imap CPU (s): sqlbox-nofts APPEND %.2f; sqlbox APPEND %.2f"
          " (%+.1f %%), deferred indexing %.2f (waited %.2f s wall,"
          " %s delay per chunk included), total %.2f (%+.1f %%)" % (
              nofts_cpu, s["append_cpu_s"],
              100.0 * (s["append_cpu_s"] / nofts_cpu - 1),
              s["index_cpu_s"], s["index_wait_s"],
              "the" if deferred else "no",
              s["append_cpu_s"] + s["index_cpu_s"],
              100.0 * ((s["append_cpu_s"] + s["index_cpu_s"]) / nofts_cpu
                       - 1)))
    print("index / corpus bytes: %.1f %% (%d / %d)" % (
        100.0 * s["index_bytes"] / corpus_bytes, s["index_bytes"],
        corpus_bytes))


if __name__ == "__main__":
    sys.exit(main())
