#!/usr/bin/python3
"""No file of src/ calls back into a file that calls it.

Builds the file-level call graph of every folder of src/ from the objects
`make` left in a build directory: `nm` gives each object's defined and
undefined global symbols, and file A calls file B when A needs a symbol B
defines (within one folder: a library or a module).  Any cycle, A -> B ->
A or longer, fails.  Prints TAP (one result per folder), so `make check`
and tests/summarize.py count it with the unit tests.

usage: tests/check-calls.py [BUILD_DIR [SRC_DIR]]
       (default: $DLP_BUILDDIR or ., $DLP_SRCDIR or this script's ../)

Test programs (test-*.c, fuzz-*.c) are drivers: when one defines a symbol
a product file defines too (web_log), the product file's definition is the
one taken.  Run it after `make check` to include the test programs, or
after `make` for the product files alone."""

import os
import subprocess
import sys

# Folders whose cycles another change is removing: reported as TODO (TAP
# "not ok ... # TODO", which automake counts as XFAIL) with the reason,
# never silently.  A folder listed here that has no cycle left fails
# ("XPASS") until it is taken off the list.
PENDING = {
}


def source_of(obj, src_dir):
    """The source file an object was compiled from: "web-http.o" or
    "test_session-web-http.o" (automake's per-target prefix) ->
    "web-http.c"; None when there is no such source (any more)."""
    base = os.path.basename(obj)[:-len(".o")]
    parts = base.split("-")
    for i in range(len(parts)):
        cand = "-".join(parts[i:]) + ".c"
        if os.path.exists(os.path.join(src_dir, cand)):
            return cand
    return None


def is_test(name):
    return name.startswith("test-") or name.startswith("fuzz-")


def nm(args, obj):
    out = subprocess.run(["nm", "-P"] + args + [obj], check=True,
                         capture_output=True, text=True).stdout
    syms = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        name, kind = fields[0], fields[1]
        # globals only: static functions never cross files
        if kind == "U" or kind.isupper() or kind in "vw":
            syms.add(name)
    return syms


def folder_graph(build_folder, src_folder):
    """{file: {file: set(symbols)}} and the set of files seen."""
    defined, needed = {}, {}
    for root, _dirs, files in os.walk(build_folder):
        for f in files:
            if not f.endswith(".o"):
                continue
            obj = os.path.join(root, f)
            src = source_of(obj, src_folder)
            if src is None:
                continue    # left behind by a source file since removed
            defined.setdefault(src, set()).update(
                nm(["--defined-only"], obj))
            needed.setdefault(src, set()).update(nm(["-u"], obj))
    definers = {}
    for src, syms in defined.items():
        for s in syms:
            definers.setdefault(s, set()).add(src)
    graph = {src: {} for src in defined}
    for src, syms in needed.items():
        for s in syms:
            targets = definers.get(s, set()) - {src}
            product = {t for t in targets if not is_test(t)}
            if product:
                targets = product
            for t in targets:
                graph[src].setdefault(t, set()).add(s)
    return graph


def cycles(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def describe(graph, comp):
    lines = []
    for a in comp:
        for b in comp:
            if b in graph[a]:
                syms = sorted(graph[a][b])
                more = "" if len(syms) <= 3 else ", ... (%d)" % len(syms)
                lines.append("%s -> %s (%s%s)" %
                             (a, b, ", ".join(syms[:3]), more))
    return lines


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    build = argv[1] if len(argv) > 1 else os.environ.get("DLP_BUILDDIR", ".")
    src = argv[2] if len(argv) > 2 else os.environ.get(
        "DLP_SRCDIR", os.path.dirname(here))
    folders = sorted(d for d in os.listdir(os.path.join(build, "src"))
                     if os.path.isdir(os.path.join(build, "src", d)))
    print("1..%d" % len(folders))
    failed = 0
    for n, folder in enumerate(folders, 1):
        name = "src/" + folder
        graph = folder_graph(os.path.join(build, "src", folder),
                             os.path.join(src, "src", folder))
        found = cycles(graph)
        calls = sum(len(t) for t in graph.values())
        todo = " # TODO %s" % PENDING[name] if name in PENDING else ""
        if not graph:
            print("not ok %d - %s: no objects (run make first)%s" %
                  (n, name, todo))
            failed += not todo
        elif not found:
            print("ok %d - %s: %d files, %d file-to-file calls, no cycle%s"
                  % (n, name, len(graph), calls, todo))
        else:
            print("not ok %d - %s: %d call cycle(s)%s" %
                  (n, name, len(found), todo))
            for comp in found:
                print("#   cycle: " + ", ".join(comp))
                for line in describe(graph, comp):
                    print("#     " + line)
            failed += not todo
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
