#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 15: a system-wide perf record of imaptest-mixed.py (or any bench
that prints its Dovecots' root pids) split by Dovecot, process kind and
phase of an imap session, in ms per session.

    perf buildid-cache -a $DLP_BUILD_DIR/src/storage/.libs/lib20_sqlbox_plugin.so
    perf record -a -F 999 --call-graph dwarf -k CLOCK_MONOTONIC --buildid-mmap \\
        -m 256M -o DATA -- \\
        env DLP_BUILD_DIR=... /usr/bin/python3 bench/imaptest-mixed.py \\
        ... --storages sqlbox,mdbox > OUT
    bench/perf-sessions.py --perf DATA --bench-out OUT \\
        [--session-ms sqlbox=77,mdbox=53]

OUT holds imaptest-mixed.py's "root NAME PID", "span NAME T0 T1" (the
measured round, CLOCK_MONOTONIC, which -k CLOCK_MONOTONIC makes perf's
clock too) and "round N NAME ... ms CPU/op {counters}" lines.  For each
NAME the samples of the processes under PID (from perf's fork events)
within the span are read with their call chains and each put in one
process kind (imap, imap-login, auth, auth-worker, config, ...: the
comm, auth-worker told by its call chain) and, in imap, one phase of
the session (by the chain: process start, plugin loading, the SQLite
open, SELECT, each command, LOGOUT and the last close, the deferred FTS
indexing, exit...).  The share of each is scaled to ms per session by
the CPU per session the rounds measured (/proc, under perf: inflated) or
--session-ms, the CPU per session of a run without perf.

On this machine perf unwinds the user stack of a sample taken in the
kernel (a system call, a page fault) no further than its first frame or
two, so such a sample of an unknown phase takes the phase of the nearest
sample of the same process within 5 ms that has one ("inherited"), or
else counts as "unattributed".  The plugin's file is found by its
build-id: record with --buildid-mmap and `perf buildid-cache -a` the
build's .so files first (the Dovecots' module copies are gone by then).
"""

import argparse
import ast
import bisect
import collections
import re
import subprocess
import sys


def parse_bench_out(path):
    roots, spans, rounds = {}, {}, {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "root" and len(w) == 3:
                roots[w[1]] = int(w[2])
            elif w[0] == "span" and len(w) == 4:
                spans.setdefault(w[1], []).append((float(w[2]),
                                                   float(w[3])))
            elif w[0] == "round" and "ms CPU per session" in line:
                # bench/session-cpu.py: one session per imap process
                rounds.setdefault(w[2], []).append((None, float(w[3]),
                                                    None))
            elif w[0] == "round" and "CPU/op" in line:
                name = w[2]
                ops_s = float(w[3])
                ms_op = float(w[5])
                counters = ast.literal_eval(line[line.index("{"):].strip())
                rounds.setdefault(name, []).append((ops_s, ms_op,
                                                    counters))
    return roots, spans, rounds


def task_tree(data):
    """{pid: parent pid} and {pid: first comm} from perf's task events."""
    out = subprocess.run(["perf", "script", "-i", data,
                          "--show-task-events", "-F", "comm,pid,tid,time"],
                         capture_output=True, text=True).stdout
    parent = {}
    for m in re.finditer(r"PERF_RECORD_FORK\((\d+):(\d+)\):\((\d+):(\d+)\)",
                         out):
        child, ppid = int(m.group(1)), int(m.group(3))
        if child != ppid:
            parent.setdefault(child, ppid)
    return parent


def descendants(parent, root):
    children = collections.defaultdict(list)
    for c, p in parent.items():
        children[p].append(c)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


def samples(data, pids, spans):
    """The samples of pids within any of spans [(t0, t1)], with their
    call chains: {comm, pid, time, period, frames: [(sym, dso)]}."""
    cmd = ["perf", "script", "-i", data, "--no-inline",
           "-F", "comm,pid,time,period,ip,sym,dso",
           "--pid", ",".join(str(p) for p in sorted(pids))]
    for cur in _samples(cmd):
        if not spans or any(t0 <= cur["time"] <= t1 for t0, t1 in spans):
            yield cur


def _samples(cmd):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    cur = None
    head = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+([\d.]+):\s+(\d+)\s*$")
    frame = re.compile(r"^\s+([0-9a-f]+)\s+(.*)\s+\((.*)\)$")
    for line in proc.stdout:
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                yield cur
            cur = None
            continue
        if not line[0].isspace() or cur is None:
            m = head.match(line)
            if m:
                cur = {"comm": m.group(1), "pid": int(m.group(2)),
                       "time": float(m.group(3)),
                       "period": int(m.group(4)), "frames": []}
            continue
        m = frame.match(line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(2).strip())
            cur["frames"].append((sym, m.group(3).split("/")[-1]))
    if cur:
        yield cur
    proc.wait()


def any_sym(syms, *names):
    return any(s in names for s in syms)


def any_prefix(syms, *pfx):
    return any(s.startswith(pfx) for s in syms)


# imap commands by their handler in the imap binary (exported symbols)
COMMANDS = (("cmd_select", "SELECT"), ("cmd_select_full", "SELECT"),
            ("cmd_examine", "SELECT"), ("cmd_list_full", "LIST"),
            ("cmd_fetch", "FETCH"), ("cmd_store", "STORE"),
            ("cmd_append", "APPEND"), ("cmd_expunge", "EXPUNGE"),
            ("cmd_uid_expunge", "EXPUNGE"), ("cmd_list", "LIST"),
            ("cmd_status", "STATUS"), ("cmd_logout", "LOGOUT"),
            ("cmd_noop", "NOOP/CHECK"), ("cmd_check", "NOOP/CHECK"),
            ("cmd_search", "SEARCH"), ("cmd_copy", "COPY"),
            ("cmd_close", "CLOSE"), ("cmd_unselect", "CLOSE"))


def imap_phase(syms, dsos):
    """The phase of an imap process's session a sample's chain is in."""
    # the deferred FTS indexing and fts-usage run after LOGOUT's reply
    if any_prefix(syms, "sqlbox_fts_index", "sqlbox_fts_indexer",
                  "sqlbox_fts_catch"):
        return "FTS indexing (deferred)"
    if any_prefix(syms, "sqlbox_fts_tables_create"):
        return "FTS tables (CREATE IF NOT EXISTS)"
    if any_prefix(syms, "sqlbox_fts_usage", "sqlbox_usage_"):
        return "fts-usage / usage files"
    if any_prefix(syms, "sqlbox_db_close"):
        if any_prefix(syms, "sqlite3WalCheckpoint", "walCheckpoint",
                      "sqlite3PagerCheckpoint", "sqlite3BtreeCheckpoint",
                      "sqlite3Checkpoint"):
            return "last close: WAL checkpoint"
        if any_sym(syms, "fsync", "fdatasync", "__x64_sys_fsync",
                   "__x64_sys_fdatasync"):
            return "last close: fsync"
        return "last close: other"
    if any_prefix(syms, "sqlbox_db_body_open"):
        return "body connection open"
    if any_prefix(syms, "sqlbox_db_open"):
        if any_prefix(syms, "sqlite3_prepare", "sqlite3LockAndPrepare",
                      "sqlite3InitOne", "sqlite3Init"):
            return "SQLite open: schema parse / prepare"
        if any_prefix(syms, "sqlbox_keys_", "crypto_", "sodium_"):
            return "SQLite open: keys"
        return "SQLite open: other (VFS, pager, locks)"
    for cmd, name in COMMANDS:
        if cmd in syms:
            if name == "SELECT" and any_prefix(syms, "sqlbox_sync"):
                return "SELECT: sqlbox sync/pull"
            if name in ("SELECT", "FETCH", "STORE", "APPEND", "EXPUNGE") \
               and any_prefix(syms, "sqlbox_"):
                return name + ": in sqlbox"
            return name
    if any_prefix(syms, "sqlbox_sync"):
        return "other commands' sync (sqlbox)"
    if any_sym(syms, "cmd_sync_delayed", "imap_sync_more", "imap_sync_init",
               "imap_sync_deinit"):
        return "other commands' sync"
    if any_sym(syms, "_dl_close", "_dl_close_worker", "dlclose",
               "module_dir_unload", "_dl_unmap"):
        return "plugin unloading (dlclose at exit)"
    if any_prefix(syms, "dlopen", "_dl_open", "dl_open_worker",
                  "module_dir_load", "_dl_catch_exception"):
        return "plugin loading (dlopen)"
    if any_prefix(syms, "_dl_start", "dl_main", "_dl_relocate_object",
                  "_dl_map_object", "_dl_sysdep_start"):
        return "process start: ld.so"
    if any_sym(syms, "__x64_sys_execve", "load_elf_binary", "begin_new_exec",
               "do_execveat_common"):
        return "process start: execve"
    if any_sym(syms, "do_exit", "__x64_sys_exit_group", "exit_mmap",
               "mmput", "__x64_sys_exit"):
        return "process exit"
    if any_sym(syms, "client_destroy", "client_disconnect",
               "mail_user_unref", "mail_storage_destroy"):
        return "client destroy (other)"
    if any_sym(syms, "client_create", "client_create_from_input",
               "mail_storage_service_next", "mail_namespaces_init",
               "mail_storage_service_lookup_next", "client_create_finish"):
        return "client/user init"
    if any_sym(syms, "epoll_wait", "__x64_sys_epoll_wait"):
        return "idle"
    if any_prefix(syms, "sqlbox_", "cvfs_"):
        return "other sqlbox"
    if any_sym(syms, "page_fault", "exc_page_fault", "asm_exc_page_fault"):
        return "page faults (other)"
    return "other"


def kind(sample, syms):
    comm = sample["comm"]
    if comm == "auth" and any_prefix(syms, "auth_worker_"):
        return "auth-worker"
    return comm


UNKNOWN = ("other", "page faults (other)")
INHERIT_SECS = 0.005


def truncated(frames):
    """A chain whose user part perf could not unwind past its first
    frame or two (on this machine: most samples taken in the kernel)."""
    user = [f for f in frames if "kallsyms" not in f[1]]
    return len(user) <= 2


def leaf_dso(frames):
    if not frames:
        return "?"
    d = frames[0][1]
    for key, name in (("kallsyms", "kernel"), ("libc.so", "libc"),
                      ("ld-linux", "ld.so"), ("libsqlite3", "libsqlite3"),
                      ("libsodium", "libsodium"), ("sqlbox", "sqlbox plugin"),
                      ("libdovecot-storage", "libdovecot-storage"),
                      ("libdovecot.so", "libdovecot"), ("libcrypto", "libcrypto"),
                      ("mail_crypt", "mail_crypt"), ("libdcrypt", "mail_crypt")):
        if key in d:
            return name
    return d if d != "imap" else "imap binary"


def kernel_entry(frames):
    """What a sample in the kernel is doing: its system call, a page
    fault, or the kernel's outermost frame."""
    kern = [f[0] for f in frames if "kallsyms" in f[1]]
    if not kern:
        return None
    for sym in reversed(kern):
        if sym.startswith("__x64_sys_"):
            return sym[len("__x64_sys_"):]
        if sym in ("asm_exc_page_fault", "exc_page_fault"):
            return "page fault"
    return "(kernel) " + kern[-1]


def split(data, parent, root, spans):
    """(kinds, phases, leaves, inherited): Counters of samples by process
    kind, by imap phase (a truncated chain of an unknown phase takes the
    phase of the nearest sample of the same process within
    INHERIT_SECS that has one), by the leaf's DSO in imap."""
    kinds = collections.Counter()
    leaves = collections.Counter()
    kentries = collections.Counter()
    imap = collections.defaultdict(list)
    for s in samples(data, descendants(parent, root), spans):
        syms = [f[0] for f in s["frames"]]
        k = kind(s, syms)
        kinds[k] += 1
        if k == "imap":
            leaves[leaf_dso(s["frames"])] += 1
            ke = kernel_entry(s["frames"])
            if ke:
                kentries[ke] += 1
            ph = imap_phase(syms, None)
            imap[s["pid"]].append((s["time"], ph,
                                   ph in UNKNOWN and truncated(s["frames"])))
    phases = collections.Counter()
    inherited = 0
    for pid, lst in imap.items():
        lst.sort()
        known = [(t, ph) for t, ph, tr in lst if not tr]
        times = [t for t, _ in known]
        for t, ph, tr in lst:
            if tr:
                i = bisect.bisect_left(times, t)
                best = None
                for j in (i - 1, i):
                    if 0 <= j < len(known) and \
                       abs(known[j][0] - t) <= INHERIT_SECS and \
                       known[j][1] not in UNKNOWN and \
                       (best is None or abs(known[j][0] - t) <
                        abs(best[0] - t)):
                        best = known[j]
                if best is not None:
                    ph = best[1]
                    inherited += 1
                else:
                    ph = "unattributed (kernel, no user chain)"
            phases[ph] += 1
    return kinds, phases, leaves, inherited, kentries, len(imap)


def table(title, names, counters, totals, scale, min_ms):
    rows = set()
    for n in names:
        rows |= set(counters[n])
    val = {n: {r: counters[n][r] / totals[n] * scale[n] for r in rows}
           for n in names}
    two = len(names) == 2
    order = sorted(rows, key=lambda r: -max(val[n][r] for n in names))
    print("| %s: ms per session | %s |" % (title, " | ".join(names)) +
          (" %s - %s |" % (names[0], names[1]) if two else ""))
    print("|---|" + "---|" * (len(names) + two))
    rest = {n: 0.0 for n in names}
    for r in order:
        if all(val[n][r] < min_ms for n in names):
            for n in names:
                rest[n] += val[n][r]
            continue
        print("| %s | %s |" % (r, " | ".join(
            "%.2f" % val[n][r] for n in names)) +
            (" %+.2f |" % (val[names[0]][r] - val[names[1]][r])
             if two else ""))
    if any(rest.values()):
        print("| (rows below %.1f ms) | %s |" % (min_ms, " | ".join(
            "%.2f" % rest[n] for n in names)) +
            (" %+.2f |" % (rest[names[0]] - rest[names[1]]) if two else ""))
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--perf", required=True, help="perf.data")
    ap.add_argument("--bench-out", required=True,
                    help="the bench's stdout (root, span, round lines)")
    ap.add_argument("--session-ms",
                    help="NAME=MS,...: CPU per session to scale to "
                    "(default: the rounds', measured under perf)")
    ap.add_argument("--min-ms", type=float, default=0.3,
                    help="fold rows below this in every storage")
    args = ap.parse_args()
    roots, spans, rounds = parse_bench_out(args.bench_out)
    parent = task_tree(args.perf)
    scale = {}
    if args.session_ms:
        for kv in args.session_ms.split(","):
            k, v = kv.split("=")
            scale[k] = float(v)
    names = list(roots)
    res, info, tot, imap_tot = {}, {}, {}, {}
    for name in names:
        res[name] = split(args.perf, parent, roots[name], spans.get(name))
        if rounds[name][0][2] is None:
            # session-cpu.py: ms per session; a session per imap process
            sessions = res[name][5]
            measured = sum(r[1] for r in rounds[name]) / len(rounds[name])
        else:
            sessions = sum(c.get("Logi", 0) for _, _, c in rounds[name])
            cpu = sum(ms_op * sum(c.values())
                      for _, ms_op, c in rounds[name])
            measured = cpu / sessions
        scale.setdefault(name, measured)
        tot[name] = sum(res[name][0].values())
        imap_tot[name] = tot[name]
        info[name] = "%d, %.1f, %d, %d (%d inherited)" % (
            sessions, measured, tot[name], res[name][0]["imap"],
            res[name][3])
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    print("| sessions, CPU ms per session (measured), samples, imap "
          "samples | " + " | ".join(info[n] for n in names) + " |")
    print("| scaled to ms per session | " + " | ".join(
        "%.1f" % scale[n] for n in names) + " |")
    print()
    table("process kind", names, {n: res[n][0] for n in names}, tot, scale,
          args.min_ms)
    table("imap process, by phase", names, {n: res[n][1] for n in names},
          tot, scale, args.min_ms)
    table("imap process, by the leaf's DSO", names,
          {n: res[n][2] for n in names}, tot, scale, args.min_ms)
    table("imap process, in the kernel", names,
          {n: res[n][4] for n in names}, tot, scale, args.min_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
