#!/usr/bin/python3
"""CPU of body-bench's perf records by component (bench/README.md, issue 15).

    perf-components.py --pages N LABEL=MS:FILE[,FILE...] ...

Reads `perf record --call-graph dwarf` files of the imap process
(body-bench.py --perf-out DIR --perf-args="--call-graph dwarf"), puts each
sample in one component by its call chain (the cipher, SQLite, cryptvfs,
pread, locks, page faults, Dovecot's streams, the socket writes...) and
prints a Markdown table: each LABEL's share per component and, scaled to
MS (the command's CPU time measured without perf, which inflates it),
microseconds per 4 KiB page of the N pages sent.

Dovecot's static functions have no symbols in Debian's stripped
libdovecot: imap's NUL filter (i_stream_nonuls_read) and the CRLF filter
(i_stream_crlf_read_*) are told by their addresses in Debian's 2.3.19
build (--nonuls, --crlf: START-END in hex; check them with objdump -d
around the callers of memchr if the package changes).
"""
import argparse
import collections
import re
import subprocess

NONULS = (0xd7850, 0xd79a0)
CRLF = (0x110270, 0x110740)

def samples(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F",
                          "comm,period,ip,sym,dso"],
                         capture_output=True, text=True).stdout
    cur = None
    for line in out.splitlines():
        if not line.strip():
            if cur:
                yield cur
            cur = None
            continue
        if not line.startswith("\t") and not line.startswith(" "):
            parts = line.split()
            cur = {"period": int(parts[1]), "frames": []}
            continue
        m = re.match(r"\s*([0-9a-f]+)\s+(.*)\s+\((.*)\)$", line)
        if m and cur is not None:
            sym = m.group(2).strip()
            sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
            dso = m.group(3).split("/")[-1]
            ip = int(m.group(1), 16)
            if "libdovecot.so" in dso and NONULS[0] <= ip < NONULS[1]:
                sym = "i_stream_nonuls_read*"
            elif "libdovecot.so" in dso and CRLF[0] <= ip < CRLF[1]:
                sym = "i_stream_crlf_read*"
            if sym == "[unknown]" and "libsqlite3" in dso:
                sym = "sqlite_internal"
            if dso == "inlined" or sym.endswith("(inlined)"):
                dso = "inlined"
            cur["frames"].append((sym, dso))
    if cur:
        yield cur

def has(fr, *names):
    return any(s in names for s, d in fr)

def has_prefix(fr, *pfx):
    return any(s.startswith(pfx) for s, d in fr)

def dso_in(fr, key):
    return any(key in d for s, d in fr)

def classify(fr):
    while len(fr) > 1 and fr[0][1] == "inlined":
        fr = fr[1:]
    leaf_sym, leaf_dso = fr[0] if fr else ("?", "?")
    if has(fr, "epoll_wait"):
        return "idle (epoll_wait)"
    if "libsodium" in leaf_dso or "libcrypto" in leaf_dso:
        return "cipher (libsodium/libcrypto)"
    if has(fr, "asm_exc_page_fault", "exc_page_fault"):
        # who faulted: first non-libc/kernel frame above
        if has(fr, "sqlite3Malloc", "sqlite3_malloc64", "sqlite3_malloc") or \
           dso_in(fr, "libsqlite3"):
            if has_prefix(fr, "sqlbox_db_body_open"):
                return "page faults: body connection open"
            return "page faults: SQLite page cache/allocs"
        if has_prefix(fr, "sqlbox_body_spare", "sqlbox_body_istream"):
            return "page faults: sqlbox read buffer"
        if has_prefix(fr, "_dl_", "dl_open", "__libc_dlopen", "dlopen"):
            return "page faults: dlopen"
        return "page faults: other"
    if has_prefix(fr, "_dl_", "dl_main", "_dl_catch", "dlopen", "__libc_dlopen"):
        return "dlopen/relocation"
    if has(fr, "__libc_pread", "__pread64", "pread64", "__GI___pread64",
           "__x64_sys_pread64"):
        return "pread (syscall + copy)"
    if has(fr, "__fcntl64_nocancel_adjusted", "__libc_fcntl64", "__x64_sys_fcntl",
           "__GI___fstat64", "__GI___fstatat64", "fstat64", "__x64_sys_newfstat", "__fstatat64",
           "__x64_sys_newfstatat", "do_fcntl"):
        return "fcntl/fstat (locks)"
    if has(fr, "__GI___libc_write", "__GI___writev", "__writev", "writev",
           "__x64_sys_write", "__x64_sys_writev", "o_stream_file_writev",
           "tcp_sendmsg", "tcp_sendmsg_locked"):
        return "output: socket writes"
    if "kallsyms" in leaf_dso:
        return "kernel: other"
    if "libsqlite3" in leaf_dso:
        if has(fr, "sqlite3_blob_read"):
            return "SQLite: blob read (btree/pager/pcache)"
        if has(fr, "sqlite3_blob_open"):
            return "SQLite: blob open"
        if has_prefix(fr, "sqlbox_db_body_open"):
            return "SQLite: body connection open"
        return "SQLite: statements (step/prepare/other)"
    if "sqlbox" in leaf_dso:
        if leaf_sym.startswith("cvfs_"):
            return "our VFS (cryptvfs, not cipher)"
        return "our storage (sqlbox_*)"
    if has(fr, "i_stream_nonuls_read*") and ("libc.so" in leaf_dso or leaf_sym == "i_stream_nonuls_read*"):
        return "imap NUL filter (memchr/memcpy)"
    if has(fr, "i_stream_crlf_read*") and ("libc.so" in leaf_dso or leaf_sym == "i_stream_crlf_read*"):
        return "CRLF filter (memchr/memcpy)"
    if "libc.so" in leaf_dso:
        # attribute libc work by caller
        for s, d in fr[1:]:
            if "libc.so" in d:
                continue
            if "libsqlite3" in d or s.startswith("cvfs_"):
                return "libc under SQLite/VFS (malloc/memcpy)"
            if "sqlbox" in d:
                return "libc under sqlbox (memcpy/memset)"
            if has(fr, "i_stream_create_nonuls") or s.startswith("i_stream_nonuls"):
                return "imap NUL filter (memchr/memcpy)"
            break
        # NUL filter: static fn, shows [unknown] in libdovecot above memchr/memcpy
        if leaf_sym.startswith(("__memchr",)):
            return "imap NUL filter (memchr/memcpy)"
        return "libc: other (malloc/memcpy under Dovecot)"
    if "libdovecot" in leaf_dso or leaf_dso in ("imap",) or "lib-storage" in leaf_dso \
       or "libdovecot-storage" in leaf_dso:
        return "Dovecot (istreams, imap, lib-storage)"
    return "other: " + leaf_dso

def comp(fr):
    c = classify(fr)
    syms = [s for s, d in fr]
    if c.startswith("page faults"): return "page faults (all)"
    if c.startswith("SQLite: blob read"): return "SQLite: chunk reads (btree/pager/pcache)"
    if c.startswith("SQLite: statements"):
        if "sqlbox_db_chunk_read_at" in syms: return "SQLite: chunk reads (btree/pager/pcache)"
        return "SQLite: mail row statements (prepare/step)"
    if c.startswith("our VFS") or c.startswith("libc under SQLite"): return "our VFS (cvfs_*, not cipher) and its libc"
    if c.startswith("libc: other") or c.startswith("libc under sqlbox"): return "libc malloc/memcpy/memset (elsewhere)"
    if c.startswith("other: inlined") or c.startswith("other: [vdso]"): return "kernel/other"
    if c.startswith("kernel: other") or c.startswith("dlopen"): return "kernel/other"
    if c.startswith("our storage"): return "Dovecot istream/imap layers and sqlbox_*"
    if c.startswith("Dovecot"): return "Dovecot istream/imap layers and sqlbox_*"
    return c


def main():
    global NONULS, CRLF
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=float, required=True,
                        help="4 KiB pages sent (bytes / 4096)")
    parser.add_argument("--nonuls", help="START-END (hex) in libdovecot")
    parser.add_argument("--crlf", help="START-END (hex) in libdovecot")
    parser.add_argument("sets", nargs="+", metavar="LABEL=MS:FILES")
    args = parser.parse_args()
    if args.nonuls:
        NONULS = tuple(int(x, 16) for x in args.nonuls.split("-"))
    if args.crlf:
        CRLF = tuple(int(x, 16) for x in args.crlf.split("-"))
    res = {}
    cpu_ms = {}
    for spec in args.sets:
        label, rest = spec.split("=", 1)
        ms, files = rest.split(":", 1)
        cpu_ms[label] = float(ms)
        cnt = collections.Counter()
        for path in files.split(","):
            for s in samples(path):
                c = comp(s["frames"])
                if not c.startswith("idle"):
                    cnt[c] += s["period"]
        res[label] = cnt
    first = next(iter(res))
    order = sorted(set().union(*res.values()), key=lambda c: -res[first][c])
    print("| component | " + " | ".join(
        "%s: share, us/page" % k for k in res) + " |")
    print("|---|" + "---|" * len(res))
    for c in order:
        row = []
        for k, cnt in res.items():
            sh = cnt[c] / sum(cnt.values())
            row.append("%.1f %%, %.2f" % (
                100 * sh, sh * cpu_ms[k] * 1000 / args.pages)
                if cnt[c] else "-")
        print("| %s | %s |" % (c, " | ".join(row)))
    print("| total | " + " | ".join(
        "100 %%, %.1f" % (cpu_ms[k] * 1000 / args.pages) for k in res) + " |")


if __name__ == "__main__":
    main()
