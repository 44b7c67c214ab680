#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 8 benchmark: requests per second of the self-service page's status
page (GET /) for a signed-in user with a warm cache, and the memory of
dovecot-launchpad-web, measured with wrk (Debian package `wrk`) on loopback.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/web-bench.py [--write]

One run, as root, loopback only, on the world of
tests/integration/test_web.py (imported, not copied): the fake Launchpad,
the OpenID fake standing in for Ubuntu One, a real Dovecot (whose auth
socket the daemon uses for revokes; unused here) and the daemon on the same
dovecot-launchpad.conf.ext.  Then:
  1. VmRSS/VmHWM of the idle daemon;
  2. alice signs in once (the three OpenID hops, no browser), activates
     ubuntu.com (one keyfile, one Argon2id slot), and GET / twice: the
     decision of each of the six configured domains is now in the TDB
     (warm cache), and the page reads alice's keyfile for its device list;
  3. wrk -t2 -c16 -d10s --latency with her session cookie against
     http://127.0.0.1:PORT/ (bounded by `timeout`), counting the status of
     every response in a small Lua script: the run is only valid when all
     of them are 200 (a 303 would mean the session was lost, a 429 that a
     rate limit throttled it);
  4. the same with -t1 -c1 (one client, one connection: the latency of a
     single request without queueing);
  5. VmRSS/VmHWM after each run, and the daemon's CPU time per request
     (utime+stime from /proc/PID/stat).
The page's per-address and per-user rate limits apply to sign-ins and
POSTs only, never to GET /, so they cannot throttle this benchmark; the Lua
counts prove it for the recorded run.

Prints a markdown report; --write puts it into bench/README.md between
<!-- web-bench:begin --> and <!-- web-bench:end --> under
"## Self-service page (issue 8)".  Nothing is random but the session id,
the CSRF token and the keys libsodium draws, which do not change the work.
"""

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests"))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "integration"))

from harness import WEB_BINARY  # noqa: E402
from test_web import SESSION, WebWorld, csrf_of, signin  # noqa: E402

README = os.path.join(BENCH_DIR, "README.md")
MARK_BEGIN = "<!-- web-bench:begin -->"
MARK_END = "<!-- web-bench:end -->"
SECTION = "## Self-service page (issue 8)"

USER_NAME = "alice"
USER_DOMAIN = "ubuntu.com"
WRK_RUNS = (("16 connections", 2, 16), ("1 connection", 1, 1))
WRK_SECONDS = 10
# wrk stops itself after -d; this bounds a hung wrk.
WRK_TIMEOUT_SECS = WRK_SECONDS + 30
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Counts every response's status per thread; done() adds them up and
# prints "status NNN: COUNT" lines after wrk's summary.
WRK_LUA = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  statuses = {}
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do
      total[k] = (total[k] or 0) + v
    end
  end
  for k, v in pairs(total) do
    io.write(string.format("status %d: %d\\n", k, v))
  end
end
"""


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])      # kB
    return out


def proc_cpu_secs(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime: fields 14 and 15 of stat(5), here 11 and 12
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def parse_wrk(text):
    res = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    res["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non_2xx_3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    res["socket_errors"] = m.group(1).strip() if m else "none"
    res["statuses"] = {int(k): int(v) for k, v in
                       re.findall(r"^status (\d+): (\d+)$", text, re.M)}
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    res["lat_avg"], res["lat_stdev"], res["lat_max"] = \
        m.groups() if m else ("?", "?", "?")
    for pct in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        res["p" + pct] = m.group(1) if m else "?"
    return res


def run_wrk(port, session, threads, conns, script):
    cmd = ["timeout", str(WRK_TIMEOUT_SECS), "wrk", "-t%d" % threads,
           "-c%d" % conns, "-d%ds" % WRK_SECONDS, "--latency",
           "-s", script, "-H", "Cookie: %s=%s" % (SESSION, session),
           "http://127.0.0.1:%d/" % port]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("wrk failed (%d): %s" % (proc.returncode,
                                                    proc.stderr))
    return proc.stdout


def check_page(world, session):
    """One GET / by hand: 200, alice's page, her device listed."""
    status, headers, page = world.web.request("GET", "/",
                                              cookies={SESSION: session})
    if status != 200 or "%s@%s" % (USER_NAME, USER_DOMAIN) not in page:
        raise RuntimeError("status page not served (%d)" % status)
    return len(page.encode())


def bench():
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    world = WebWorld()
    try:
        pid = world.web.proc.pid
        mem = [("idle, after start", proc_status(pid))]

        status, _, body, session = signin(world.web, world.op, USER_NAME)
        if status != 200 or session is None:
            raise RuntimeError("sign-in failed (%d): %s" % (status, body))
        _, _, page = world.web.request("GET", "/",
                                       cookies={SESSION: session})
        status, _, body = world.web.request(
            "POST", "/activate", cookies={SESSION: session},
            form={"csrf": csrf_of(page), "domain": USER_DOMAIN,
                  "label": "laptop"})
        if status != 200:
            raise RuntimeError("activate failed (%d)" % status)
        check_page(world, session)
        page_bytes = check_page(world, session)
        mem.append(("signed in, activated, cache warm", proc_status(pid)))

        script = os.path.join(world.wd.path, "count.lua")
        with open(script, "w") as f:
            f.write(WRK_LUA)
        runs = []
        for label, threads, conns in WRK_RUNS:
            cpu0 = proc_cpu_secs(pid)
            out = run_wrk(world.port, session, threads, conns, script)
            cpu = proc_cpu_secs(pid) - cpu0
            res = parse_wrk(out)
            res.update(label=label, threads=threads, conns=conns, raw=out,
                       cpu_us_per_req=(cpu * 1e6 / res["requests"]
                                       if res["requests"] else None))
            runs.append(res)
            mem.append(("after wrk, %s" % label, proc_status(pid)))
        # still signed in, and still served
        check_page(world, session)
        return report(runs, mem, page_bytes)
    finally:
        world.close()


def machine():
    cpus = os.cpu_count()
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "-v"], capture_output=True,
                         text=True).stdout.split("\n")[0]
    return "%d CPU (%s), %s" % (cpus, model, wrk.strip())


def statuses_text(statuses):
    return ", ".join("%d: %d" % kv for kv in sorted(statuses.items())) \
        or "none counted"


def report(runs, mem, page_bytes):
    lines = []
    lines.append("Recorded %s on %s; build without sanitizers; the daemon, "
                 "wrk and the fakes share the CPUs." % (
                     datetime.date.today().isoformat(), machine()))
    lines.append("")
    lines.append("Status page (`GET /`, %d bytes, six domains, one "
                 "activated mailbox), `wrk -d%ds --latency`:" % (
                     page_bytes, WRK_SECONDS))
    lines.append("")
    lines.append("| wrk | requests | req/s | latency avg | p50 | p90 | p99 "
                 "| max | statuses | socket errors | daemon CPU per "
                 "request |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        lines.append("| `-t%d -c%d` | %s | %.0f | %s | %s | %s | %s | %s | "
                     "%s | %s | %s |" % (
                         r["threads"], r["conns"], r["requests"], r["rps"],
                         r["lat_avg"], r["p50"], r["p90"], r["p99"],
                         r["lat_max"], statuses_text(r["statuses"]),
                         r["socket_errors"],
                         "%.0f µs" % r["cpu_us_per_req"]
                         if r["cpu_us_per_req"] else "?"))
    lines.append("")
    lines.append("Daemon memory (`/proc/PID/status`):")
    lines.append("")
    lines.append("| when | VmRSS | VmHWM |")
    lines.append("|---|---|---|")
    for label, m in mem:
        lines.append("| %s | %.1f MiB | %.1f MiB |" % (
            label, m["VmRSS"] / 1024, m["VmHWM"] / 1024))
    lines.append("")
    throttled = sum(r["statuses"].get(429, 0) for r in runs)
    other = sum(v for r in runs for k, v in r["statuses"].items()
                if k not in (200, 429))
    lines.append("Rate limits: the per-address and per-user buckets guard "
                 "sign-ins and POSTs, not `GET /`; in this run %d responses "
                 "were 429 and %d were neither 200 nor 429%s." % (
                     throttled, other,
                     "" if throttled or other else
                     ", so the numbers above are unthrottled"))
    return "\n".join(lines)


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
    parser.add_argument("--write", action="store_true",
                        help="record the report in bench/README.md")
    args = parser.parse_args()
    if not os.path.exists(WEB_BINARY):
        sys.exit("%s not built (set DLP_BUILD_DIR)" % WEB_BINARY)
    text = bench()
    print(text)
    if args.write:
        write_readme(text)


if __name__ == "__main__":
    main()
