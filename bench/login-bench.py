#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 2 benchmark: IMAP login throughput and latency of the `launchpad`
passdb/userdb against a passwd-file passdb with the same Argon2id cost.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/login-bench.py [--quick]

One run, as root, loopback only (tests/harness.py):
  * the fake Launchpad (tests/lpfake.py) and two Dovecots that differ only
    in their passdb/userdb blocks:
      launchpad    passdb + userdb `launchpad` (TDB cache, app-password slot
                   opened with Argon2id, opslimit 3 / memlimit 64 MiB);
      passwd-file  passdb passwd-file with an {ARGON2ID} hash made by
                   `doveadm pw -s ARGON2ID` (checked to be m=65536,t=3,p=1,
                   the same cost), userdb static with the same home/uid/gid;
  * warm: for auth_cache_size 0 and 1M (both Dovecots restarted between),
    after a warm-up (the Launchpad decision is in TDB), a fixed number of
    IMAP LOGIN+LOGOUT exchanges, each on a fresh TCP connection, at
    concurrency 1 and 4 (threads), in chunks that alternate between the
    two Dovecots: logins/s, p50/p95/p99 latency, CPU per login;
  * cold: launchpad only, N entitled users made on the fake and given app
    passwords up front; for each, `doveadm launchpad cache invalidate USER`
    (TDB person + verdict, and Dovecot's auth cache) and then one timed
    first login, i.e. Launchpad HTTP + Argon2id; again with every fake
    response delayed 50 ms ("slow" fault); and, as the reference, after
    flushing only Dovecot's auth cache (Argon2id, no HTTP).
Dovecot, the fake and the clients run at niceness -10 (--nice) so that
other work on the machine perturbs them less; the report says how much
CPU other processes used meanwhile.
Prints a markdown report and writes it into bench/README.md between the
markers <!-- login-bench:begin --> and <!-- login-bench:end -->.

Nothing here is random (logins go in a fixed order); the only randomness is
the salts and keys Dovecot and libsodium draw, which do not change the work.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests"))

from harness import (  # noqa: E402
    LAUNCHPAD_AUTH_CONF, MAIL_GROUP, MAIL_USER, TESTS_DIR,
    Dovecot, LaunchpadFake, Workdir)

README = os.path.join(BENCH_DIR, "README.md")
MARK_BEGIN = "<!-- login-bench:begin -->"
MARK_END = "<!-- login-bench:end -->"
SECTION = "## Logins (issue 2)"

WARM_USER = "alice@ubuntu.com"
# Argon2id cost of a keyring slot (src/keyring/kr-keyfile.c): opslimit 3,
# memlimit 64 MiB; in the PHC string of Dovecot's {ARGON2ID} that is
# m=65536 (KiB), t=3, p=1 (libsodium always uses one lane).
ARGON2ID_PARAMS = {"m": "65536", "t": "3", "p": "1"}
CACHE_SIZES = ("0", "1M")
CONCURRENCY = (1, 4)
SLOW_DELAY_SECS = 0.05
COLD_MODES = ("tdb", "cold", "slow")
IDLE_SAMPLE_SECS = 5
# logins per server before the cell switches to the other one
CHUNK = 50
NICENESS = -10
IDLE_THRESHOLD = 0.10
COLD_TEAM = "ubuntumembers"
IO_TIMEOUT_SECS = 60
# Bounds the reads of one IMAP exchange (Dovecot sends a line or two).
MAX_LINES = 20

FULL = {"logins": 200, "warmup": 5, "cold_users": 30}
QUICK = {"logins": 40, "warmup": 3, "cold_users": 10}


class LoginFailed(Exception):
    pass


def imap_exchange(port, user, password):
    """LOGIN then LOGOUT on a fresh connection; returns seconds taken."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=IO_TIMEOUT_SECS) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = sock.makefile("rb")
        greeting = f.readline()
        if not greeting.startswith(b"* OK"):
            raise LoginFailed("greeting: %r" % greeting)
        for tag, cmd in ((b"a", b'LOGIN "%s" "%s"' % (
                user.encode(), password.encode())), (b"b", b"LOGOUT")):
            sock.sendall(tag + b" " + cmd + b"\r\n")
            for _ in range(MAX_LINES):
                line = f.readline()
                if not line or line.startswith(tag + b" "):
                    break
            if not line.startswith(tag + b" OK"):
                raise LoginFailed("%s: %r" % (tag.decode(), line))
    return time.perf_counter() - start


def percentile(sorted_values, pct):
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] -
                                 sorted_values[low]) * (rank - low)


def summarize(latencies, wall=None):
    values = sorted(latencies)
    res = {"n": len(values), "mean_ms": statistics.mean(values) * 1000}
    for pct in (50, 95, 99):
        res["p%d_ms" % pct] = percentile(values, pct) * 1000
    if wall is not None:
        res["wall_s"] = wall
        res["logins_per_s"] = len(values) / wall
    return res


def dovecot_cpu(dc):
    """CPU seconds so far: the auth master, its auth-workers, and all of
    Dovecot (the master, its live children and the children it reaped:
    every imap and imap-login process exits after one login)."""
    tick = os.sysconf("SC_CLK_TCK")
    usage = {"auth": 0.0, "auth-worker": 0.0, "total": 0.0}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue            # exited meanwhile
        ppid = int(fields[1])
        # stat fields 14-17 (utime stime cutime cstime), here from 0 at 3
        own = (int(fields[11]) + int(fields[12])) / tick
        reaped = (int(fields[13]) + int(fields[14])) / tick
        if int(pid) == dc.proc.pid:
            usage["total"] += own + reaped
        elif ppid == dc.proc.pid:
            usage["total"] += own + reaped
            if argv[0] == b"dovecot/auth":
                usage["auth-worker" if b"-w" in argv[1:] else "auth"] += own
    return usage


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy():
    """CPU seconds all CPUs spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]          # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Usage:
    """What one server used over a series of chunks: its logins' latencies
    and wall time, Dovecot's CPU, and the machine's busy time that was
    neither Dovecot nor the fake nor this script ("other load": other
    builds or tests sharing the CPUs make the numbers noisy)."""

    def __init__(self, dc, fake):
        self.dc, self.fake = dc, fake
        self.latencies, self.wall, self.other = [], 0.0, 0.0
        self.cpu = {"auth": 0.0, "auth-worker": 0.0, "total": 0.0}

    def _sample(self):
        cpu = dovecot_cpu(self.dc)
        ours = cpu["total"] + proc_cpu(self.fake.proc.pid) + \
            sum(os.times()[:2])
        return cpu, machine_busy() - ours

    def chunk(self, user, password, count, concurrency):
        """count logins of one user with `concurrency` client threads."""
        cpu0, other0 = self._sample()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            start = time.perf_counter()
            futures = [pool.submit(imap_exchange, self.dc.imap_port, user,
                                   password) for _ in range(count)]
            self.latencies.extend(fut.result() for fut in futures)
            self.wall += time.perf_counter() - start
        cpu1, other1 = self._sample()
        self.other += max(0.0, other1 - other0)
        for key in self.cpu:
            # an auth-worker that exits mid-chunk loses its share here;
            # workers idle out only after 60 s, longer than any chunk
            self.cpu[key] += max(0.0, cpu1[key] - cpu0[key])

    def result(self):
        res = summarize(self.latencies, self.wall)
        res["foreign_cpu_pct"] = self.other * 100 / (self.wall *
                                                     os.cpu_count())
        for key, secs in self.cpu.items():
            res["cpu_ms_%s" % key] = secs * 1000 / len(self.latencies)
        return res


def run_cell(servers, fake, password, count, concurrency):
    """count logins per server, in chunks that alternate between the
    servers so that both see the same background load."""
    usage = [Usage(dc, fake) for _, dc in servers]
    done = 0
    while done < count:
        n = min(CHUNK, count - done)
        for u in usage:
            u.chunk(WARM_USER, password, n, concurrency)
        done += n
    return {name: u.result() for (name, _), u in zip(servers, usage)}


def renice(dc, fake, niceness):
    """Raises the priority of this script's client threads (created
    later, they inherit it), of the fake and of every Dovecot process
    (the master's future children inherit it)."""
    pids = [fake.proc.pid, dc.proc.pid]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/stat" % pid) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == dc.proc.pid:
                pids.append(int(pid))
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
        except ProcessLookupError:
            pass


def wait_idle(max_secs):
    """Waits (at most max_secs) for 5 s in which the machine is < 10 % busy:
    the numbers mean little while another build shares the CPUs."""
    deadline = time.monotonic() + max_secs
    while True:
        before = machine_busy()
        time.sleep(IDLE_SAMPLE_SECS)
        busy = (machine_busy() - before) / (IDLE_SAMPLE_SECS *
                                            os.cpu_count())
        if busy < IDLE_THRESHOLD:
            return True
        if time.monotonic() >= deadline:
            print("machine still %.0f %% busy; measuring anyway" %
                  (busy * 100))
            return False
        print("machine %.0f %% busy; waiting" % (busy * 100))
        sys.stdout.flush()


def read_loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine_facts():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    version = subprocess.run(["dovecot", "--version"], capture_output=True,
                             text=True, check=True).stdout.strip()
    sodium = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "libsodium23"],
        capture_output=True, text=True).stdout.strip() or "unknown"
    return {"nproc": os.cpu_count(), "cpu": model,
            "mem_gib": mem_kib / 1024 / 1024, "dovecot": version,
            "libsodium": sodium}


def argon2id_hash(password):
    """Dovecot's own {ARGON2ID} hash of password, at the keyring's cost."""
    res = subprocess.run(["doveadm", "pw", "-s", "ARGON2ID", "-p", password],
                         capture_output=True, text=True, check=True)
    hashed = res.stdout.strip()
    m = re.fullmatch(r"\{ARGON2ID\}\$argon2id\$v=19\$m=(\d+),t=(\d+),"
                     r"p=(\d+)\$\S+", hashed)
    if m is None:
        raise RuntimeError("unexpected doveadm pw output: %r" % hashed)
    got = dict(zip("mtp", m.groups()))
    if got != ARGON2ID_PARAMS:
        # Dovecot's defaults changed: do not compare unequal costs.
        raise RuntimeError("doveadm pw -s ARGON2ID gives %s, want %s" % (
            got, ARGON2ID_PARAMS))
    return hashed


def baseline_auth_conf(workdir, passwd_path):
    vmail = os.path.join(workdir, "vmail")
    return ("passdb {\n"
            "  driver = passwd-file\n"
            "  args = %s\n"
            "}\n"
            "userdb {\n"
            "  driver = static\n"
            "  args = uid=%s gid=%s home=%s/%%d/%%n\n"
            "}\n") % (passwd_path, MAIL_USER, MAIL_GROUP, vmail)


def normalized_conf(dc, auth_text):
    """dovecot.conf with its passdb/userdb text, paths and ports masked."""
    with open(dc.conf_path) as f:
        text = f.read()
    if auth_text not in text:
        raise RuntimeError("%s lacks its passdb/userdb text" % dc.conf_path)
    text = text.replace(auth_text, "<passdb/userdb>")
    text = text.replace(dc.workdir, "<workdir>")
    for port in (dc.imap_port, dc.pop3_port, dc.lmtp_port):
        text = re.sub(r"\b%d\b" % port, "<port>", text)
    return text


def check_same_settings(dc_lp, dc_pf):
    """The two Dovecots may differ only in passdb/userdb."""
    a = normalized_conf(dc_lp, LAUNCHPAD_AUTH_CONF.format(
        lpconf=dc_lp.lpconf_path))
    b = normalized_conf(dc_pf, dc_pf.settings["auth_conf"])
    if a != b:
        raise RuntimeError("the two dovecot.conf differ beyond "
                           "passdb/userdb:\n%s\n----\n%s" % (a, b))


def restart(dc, auth_cache_size):
    dc.stop()
    dc.settings["auth_cache_size"] = auth_cache_size
    dc.start()


def fake_api_requests(fake):
    person = team = 0
    for req in fake.requests():
        if req["path"].endswith("/participants"):
            team += 1
        elif "/~" in req["path"]:
            person += 1
    return person, team


def cold_logins(dc, fake, users):
    """Per user, one login in each COLD_MODES after dropping what it has
    cached: "tdb" flushes only Dovecot's auth cache (Argon2id, decision
    from TDB, no HTTP: the reference), "cold" and "slow" also the TDB
    person and verdict records (HTTP + Argon2id), "slow" with every fake
    response delayed.  The modes alternate user by user, so all three see
    the same background load."""
    got = {mode: {"lat": [], "person": set(), "team": set()}
           for mode in COLD_MODES}
    for user, password in users:
        for mode in COLD_MODES:
            if mode == "tdb":
                res = dc.doveadm("auth", "cache", "flush", user)
                if not re.match(r"[1-9][0-9]* cache entries flushed",
                                res.stdout + res.stderr):
                    raise RuntimeError("auth cache flush %s: %s%s" % (
                        user, res.stdout, res.stderr))
            else:
                dc.doveadm("launchpad", "cache", "invalidate", user)
            fake.reset()
            if mode == "slow":
                fake.fault("slow", delay=SLOW_DELAY_SECS)
            got[mode]["lat"].append(imap_exchange(dc.imap_port, user,
                                                  password))
            person, team = fake_api_requests(fake)
            got[mode]["person"].add(person)
            got[mode]["team"].add(team)
    fake.reset()
    results = {}
    for mode, g in got.items():
        res = results[mode] = summarize(g["lat"])
        res["person_requests"] = sorted(g["person"])
        res["team_requests"] = sorted(g["team"])
    return results


def fixture_team_members(team):
    with open(os.path.join(TESTS_DIR, "fixtures", "launchpad.json")) as f:
        return json.load(f)["teams"][team]["members"]


def fmt(value):
    return "%.1f" % value


def report(facts, params, results, commands, heading):
    warm, cold = results["warm"], results["cold"]
    out = [heading, ""]
    out.append("Run of %s (%s%d logins per passdb and cell, in chunks "
               "of %d alternating between the two Dovecots; niceness %d); "
               "load average %s before, %s after." % (
                   results["date"], "--quick, " if params["quick"] else "",
                   params["logins"], CHUNK, params["nice"],
                   results["load_before"], results["load_after"]))
    out.append("")
    out.append("Machine: %d CPUs, %s, %.1f GiB RAM; Dovecot %s; "
               "libsodium %s." % (facts["nproc"], facts["cpu"],
                                  facts["mem_gib"], facts["dovecot"],
                                  facts["libsodium"]))
    out.append("")
    out.append("Commands (as root, from the top of the source tree):")
    out.append("")
    out.append("```sh")
    out.extend(commands)
    out.append("```")
    out.append("")
    out.append("#### Warm: IMAP LOGIN+LOGOUT, one fresh TCP connection each")
    out.append("")
    out.append("Same user, decision already in TDB; ratio = launchpad / "
               "passwd-file (logins/s: > 1 is faster; latency: < 1 is "
               "faster).")
    out.append("")
    out.append("| auth_cache_size | clients | passdb | logins/s | p50 ms "
               "| p95 ms | p99 ms | CPU ms/login: auth / auth-workers "
               "/ all Dovecot |")
    out.append("|---|---|---|---|---|---|---|---|")
    for cache in CACHE_SIZES:
        for conc in CONCURRENCY:
            a = warm[cache][conc]["launchpad"]
            b = warm[cache][conc]["passwd-file"]
            for name, r in (("launchpad", a), ("passwd-file", b)):
                out.append("| %s | %d | %s | %s | %s | %s | %s | %s / %s "
                           "/ %s |" % (
                               cache, conc, name, fmt(r["logins_per_s"]),
                               fmt(r["p50_ms"]), fmt(r["p95_ms"]),
                               fmt(r["p99_ms"]), fmt(r["cpu_ms_auth"]),
                               fmt(r["cpu_ms_auth-worker"]),
                               fmt(r["cpu_ms_total"])))
            out.append("| %s | %d | **ratio** | **%.2f** | **%.2f** | "
                       "**%.2f** | **%.2f** | |" % (
                           cache, conc,
                           a["logins_per_s"] / b["logins_per_s"],
                           a["p50_ms"] / b["p50_ms"],
                           a["p95_ms"] / b["p95_ms"],
                           a["p99_ms"] / b["p99_ms"]))
    out.append("")
    out.append("CPU: utime+stime from /proc of the auth process, of the "
               "auth-worker processes, and of all Dovecot processes (imap "
               "and imap-login included, via the master's reaped-children "
               "times), divided by the logins of the cell. Other processes "
               "used at most %.1f %% of the machine during any warm cell "
               "(busy time in /proc/stat minus Dovecot, the fake and this "
               "script)." % max(warm[c][n][p]["foreign_cpu_pct"]
                               for c in CACHE_SIZES for n in CONCURRENCY
                               for p in ("launchpad", "passwd-file")))
    out.append("")
    out.append("#### Cold: first login after `doveadm launchpad cache "
               "invalidate USER` (launchpad only)")
    out.append("")
    out.append("%d entitled users (created on the fake, members of "
               "~%s, app passwords generated up front); per user one login "
               "after each of the three preparations below, in turn; one "
               "client, auth_cache_size=1M. Launchpad requests are counted "
               "per login in the fake's log." % (
                   params["cold_users"], COLD_TEAM))
    out.append("")
    out.append("| before each login | fake Launchpad | logins | p50 ms "
               "| p95 ms | mean ms | person GETs/login | team GETs/login |")
    out.append("|---|---|---|---|---|---|---|---|")
    rows = (("tdb", "`doveadm auth cache flush USER` (reference: "
             "decision from TDB)", "-"),
            ("cold", "`doveadm launchpad cache invalidate USER`",
             "no added delay"),
            ("slow", "`doveadm launchpad cache invalidate USER`",
             "+%d ms per response" % (SLOW_DELAY_SECS * 1000)))
    for key, before, fake_label in rows:
        r = cold[key]
        out.append("| %s | %s | %d | %s | %s | %s | %s | %s |" % (
            before, fake_label, r["n"], fmt(r["p50_ms"]), fmt(r["p95_ms"]),
            fmt(r["mean_ms"]),
            "/".join(str(x) for x in r["person_requests"]),
            "/".join(str(x) for x in r["team_requests"])))
    ref = cold["tdb"]
    out.append("")
    out.append("Launchpad's share of a cold login (p50 minus the TDB "
               "reference's p50): %s ms against the loopback fake, %s ms "
               "with 50 ms added per response." % (
                   fmt(cold["cold"]["p50_ms"] - ref["p50_ms"]),
                   fmt(cold["slow"]["p50_ms"] - ref["p50_ms"])))
    return "\n".join(out)


def write_readme(text):
    block = "%s\n%s\n%s" % (MARK_BEGIN, text, MARK_END)
    if os.path.exists(README):
        with open(README) as f:
            doc = f.read()
    else:
        doc = "# Benchmarks\n"
    if MARK_BEGIN in doc and MARK_END in doc:
        head, rest = doc.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1]
        doc = head + block + tail
    elif SECTION in doc:
        head, tail = doc.split(SECTION, 1)
        doc = head + SECTION + "\n\n" + block + "\n" + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + SECTION + "\n\n" + block + "\n"
    tmp = README + ".tmp"
    with open(tmp, "w") as f:
        f.write(doc)
    os.rename(tmp, README)


def shown_args(argv):
    """The command line for the report, without --json FILE (a path of
    this machine)."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--json":
            skip = True
        elif not arg.startswith("--json="):
            shown.append(arg)
    return shown


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="%(logins)d logins per cell, %(cold_users)d "
                        "cold users" % QUICK)
    parser.add_argument("--no-readme", action="store_true",
                        help="print the report only")
    parser.add_argument("--json", help="also write raw results here")
    parser.add_argument("--nice", type=int, default=NICENESS,
                        help="niceness of Dovecot, the fake and the "
                        "clients (default %(default)s; 0 leaves it)")
    parser.add_argument("--wait-idle", type=int, default=0, metavar="SECS",
                        help="first wait up to SECS for an idle machine")
    parser.add_argument("--report-from", nargs="+", metavar="JSON",
                        help="measure nothing: write the README block "
                        "from runs saved with --json")
    args = parser.parse_args()
    if args.report_from:
        return report_from(args.report_from)
    if os.geteuid() != 0:
        sys.exit("login-bench.py: run as root (Dovecot in a mount namespace)")
    params = dict(QUICK if args.quick else FULL, quick=args.quick,
                  nice=args.nice)

    facts = machine_facts()
    if args.wait_idle > 0:
        wait_idle(args.wait_idle)
    # the main thread, before any client thread exists
    os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    results = {"date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"),
               "load_before": read_loadavg(), "warm": {}, "cold": {}}
    print("machine: %(nproc)d x %(cpu)s, Dovecot %(dovecot)s" % facts)
    print("load average before: %s" % results["load_before"])

    wd = Workdir("dlp-bench-")
    fake = dc_lp = dc_pf = None
    try:
        fake = LaunchpadFake(wd.path).start()
        cold_names = ["bench%02d" % i for i in range(params["cold_users"])]
        for name in cold_names:
            fake.person(name, display_name="Bench " + name,
                        is_valid=True, is_ubuntu_coc_signer=True)
        fake.team(COLD_TEAM, fixture_team_members(COLD_TEAM) + cold_names)

        lp_dir = os.path.join(wd.path, "launchpad")
        pf_dir = os.path.join(wd.path, "passwd-file")
        for d in (lp_dir, pf_dir):
            os.makedirs(d)
        dc_lp = Dovecot(lp_dir, fake.api_url, auth_cache_size="0").start()
        password = dc_lp.generate_password(WARM_USER, label="bench")

        passwd_path = os.path.join(pf_dir, "users.passwd")
        with open(passwd_path, "w") as f:
            f.write("%s:%s\n" % (WARM_USER, argon2id_hash(password)))
        os.chmod(passwd_path, 0o644)
        dc_pf = Dovecot(pf_dir, fake.api_url, auth_cache_size="0",
                        auth_conf=baseline_auth_conf(pf_dir, passwd_path)
                        ).start()
        servers = (("launchpad", dc_lp), ("passwd-file", dc_pf))

        for cache in CACHE_SIZES:
            results["warm"][cache] = {}
            for _, dc in servers:
                if dc.settings["auth_cache_size"] != cache:
                    restart(dc, cache)
                renice(dc, fake, args.nice)
            check_same_settings(dc_lp, dc_pf)
            for _, dc in servers:
                for _ in range(params["warmup"]):
                    imap_exchange(dc.imap_port, WARM_USER, password)
            for conc in CONCURRENCY:
                cell = results["warm"][cache][conc] = run_cell(
                    servers, fake, password, params["logins"], conc)
                for name, _ in servers:
                    r = cell[name]
                    print("warm cache=%-2s clients=%d %-11s %7.1f logins/s"
                          "  p50 %7.1f  p95 %7.1f  p99 %7.1f ms  other "
                          "load %4.1f%%" % (
                              cache, conc, name, r["logins_per_s"],
                              r["p50_ms"], r["p95_ms"], r["p99_ms"],
                              r["foreign_cpu_pct"]))
                sys.stdout.flush()

        # cold: dc_lp now runs with auth_cache_size=1M
        cold_users = [("%s@ubuntu.com" % n,
                       dc_lp.generate_password("%s@ubuntu.com" % n,
                                               label="bench"))
                      for n in cold_names]
        for user, pw in cold_users:     # TDB and auth cache now hold them
            imap_exchange(dc_lp.imap_port, user, pw)
        results["cold"] = cold_logins(dc_lp, fake, cold_users)
        for key in COLD_MODES:
            r = results["cold"][key]
            print("cold %-4s %d logins  p50 %7.1f  p95 %7.1f ms  "
                  "person GETs %s team GETs %s" % (
                      key, r["n"], r["p50_ms"], r["p95_ms"],
                      r["person_requests"], r["team_requests"]))
        results["load_after"] = read_loadavg()
    except Exception:
        for dc in (dc_lp, dc_pf):
            if dc is not None:
                sys.stderr.write("---- %s log tail ----\n%s\n" % (
                    dc.workdir, dc.log_text()[-3000:]))
        raise
    finally:
        for dc in (dc_lp, dc_pf):
            if dc is not None:
                dc.stop()
        if fake is not None:
            fake.stop()
        wd.cleanup()

    commands = [
        "make -C %s   # the modules under test (configure: see tests/run)"
        % ("$DLP_BUILD_DIR"),
        "DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 bench/login-bench.py"
        + "".join(" " + a for a in shown_args(sys.argv[1:])),
        "doveadm pw -s ARGON2ID -p PASSWORD   # the baseline hash; the "
        "script checks m=65536,t=3,p=1",
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


def report_from(paths):
    """The README block for runs saved with --json, one section each."""
    texts = []
    for i, path in enumerate(paths, 1):
        with open(path) as f:
            run = json.load(f)
        results = run["results"]
        # JSON made the concurrency keys strings
        results["warm"] = {cache: {int(k): v for k, v in cells.items()}
                           for cache, cells in results["warm"].items()}
        texts.append(report(run["facts"], run["params"], results,
                            run["commands"], "### Run %d" % i))
    text = "\n\n".join(texts)
    print(text)
    write_readme(text)
    print("\nwritten into %s" % README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
