#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 19 benchmark: the same work through the proxy and straight to a
backend.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/proxy-bench.py \
        [--users 8] [--logins 200] [--ops 200] [--seed 19]

One run, as root, loopback only (tests/harness.py): the Launchpad fake, two
backend Dovecots on 127.0.0.2 and 127.0.0.3 and a proxy Dovecot on
127.0.0.1 (passdb `launchpad` with `backends`, lmtp_proxy = yes), as in
tests/integration/test_proxy.py; auth_cache_size 1M everywhere.  Users get
their app password on the backend the proxy places them on.  Then, in
chunks of 20 that alternate between "direct" (the user's backend) and
"proxy" (127.0.0.1):
  * logins: IMAP LOGIN + LOGOUT on a fresh connection, users in turn;
  * mixed: a fixed sequence drawn from random.Random(seed): 50% LMTP
    delivery of a 4 KB message, 30% IMAP login + SELECT + FETCH of the
    newest message, 20% POP3 login + STAT.
Both paths run the same sequence.  Prints a markdown table (rates and the
proxy/direct ratio) and the bytes each mailbox took on its backend.  Bounded:
the defaults take about two minutes on a 2-core machine.
"""

import argparse
import imaplib
import os
import poplib
import random
import smtplib
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(BENCH_DIR), "tests"))

from harness import Dovecot, LaunchpadFake, Workdir, free_port  # noqa: E402

PROXY = "127.0.0.1"
BACKENDS = ("127.0.0.2", "127.0.0.3")
CHUNK = 20


def start(users):
    wd = Workdir("dlp-proxy-bench-")
    fake = LaunchpadFake(wd.path).start()
    for name in users:
        fake.person(name)
    fake.team("ubuntumembers", users)
    ports = {p: free_port(BACKENDS[0]) for p in ("imap", "pop3", "lmtp")}
    backends = {}
    for address in BACKENDS:
        d = os.path.join(wd.path, address)
        os.makedirs(d)
        backends[address] = Dovecot(
            d, fake.api_url, address=address, ports=ports,
            extra_conf="login_trusted_networks = %s\n" % PROXY).start()
    d = os.path.join(wd.path, "proxy")
    os.makedirs(d)
    proxy = Dovecot(d, fake.api_url, address=PROXY,
                    extra_conf="lmtp_proxy = yes\n",
                    extra_lpconf=("backends = %s\nbackend_imap_port = %d\n"
                                  "backend_pop3_port = %d\n"
                                  "backend_lmtp_port = %d\n") % (
                                      " ".join(BACKENDS), ports["imap"],
                                      ports["pop3"], ports["lmtp"])).start()
    return wd, fake, backends, proxy


def imap_login(host, port, user, password, fetch=False):
    imap = imaplib.IMAP4(host, port, timeout=60)
    imap.login(user, password)
    if fetch:
        typ, data = imap.select("INBOX")
        if int(data[0]) > 0:
            imap.fetch(data[0].decode(), "(BODY.PEEK[])")
    imap.logout()


def pop3_login(host, port, user, password):
    pop = poplib.POP3(host, port, timeout=60)
    pop.user(user)
    pop.pass_(password)
    pop.stat()
    pop.quit()


def deliver(host, port, user, n):
    body = ("From: bench@example.org\r\nTo: %s\r\nSubject: bench %d\r\n"
            "\r\n" % (user, n)) + ("x" * 76 + "\r\n") * 52
    with smtplib.LMTP(host, port, timeout=60) as lmtp:
        refused = lmtp.sendmail("bench@example.org", [user], body.encode())
    assert not refused, refused


def run(ops, target, place, passwords, proxy, backends):
    """Runs ops (user, kind) against target ("proxy"/"direct"); seconds."""
    t0 = time.monotonic()
    for n, (user, kind) in enumerate(ops):
        if target == "proxy":
            dc, host = proxy, PROXY
        else:
            dc, host = backends[place[user]], place[user]
        if kind == "login":
            imap_login(host, dc.imap_port, user, passwords[user])
        elif kind == "imap":
            imap_login(host, dc.imap_port, user, passwords[user], True)
        elif kind == "pop3":
            pop3_login(host, dc.pop3_port, user, passwords[user])
        else:
            deliver(host, dc.lmtp_port, user, n)
    return time.monotonic() - t0


def measure(ops, place, passwords, proxy, backends):
    times = {"direct": 0.0, "proxy": 0.0}
    for i in range(0, len(ops), CHUNK):
        chunk = ops[i:i + CHUNK]
        for target in (("direct", "proxy") if (i // CHUNK) % 2 == 0
                       else ("proxy", "direct")):
            times[target] += run(chunk, target, place, passwords, proxy,
                                 backends)
    return {t: len(ops) / s for t, s in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--logins", type=int, default=200)
    ap.add_argument("--ops", type=int, default=200)
    ap.add_argument("--seed", type=int, default=19)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    users = ["bench%02d" % i for i in range(args.users)]
    wd, fake, backends, proxy = start(users)
    try:
        place, passwords = {}, {}
        for name in users:
            user = name + "@ubuntu.com"
            out = proxy.doveadm("-f", "tab", "launchpad", "backend", "show",
                                user).stdout.splitlines()[1].split("\t")
            place[user] = out[1]
            passwords[user] = backends[out[1]].generate_password(user)
        ulist = sorted(place)
        # warm every cache (verdicts, pins, auth caches) on both paths
        for user in ulist:
            for target in ("direct", "proxy"):
                run([(user, "login")], target, place, passwords, proxy,
                    backends)
        logins = [(ulist[i % len(ulist)], "login")
                  for i in range(args.logins)]
        mixed = []
        for _ in range(args.ops):
            r = rng.random()
            kind = "lmtp" if r < 0.5 else "imap" if r < 0.8 else "pop3"
            mixed.append((rng.choice(ulist), kind))
        login_rate = measure(logins, place, passwords, proxy, backends)
        mixed_rate = measure(mixed, place, passwords, proxy, backends)
        spread = {h: sum(1 for u in ulist if place[u] == h)
                  for h in BACKENDS}
        du = {}
        for h, dc in backends.items():
            du[h] = int(subprocess.run(
                ["du", "-sb", dc.vmail], capture_output=True,
                text=True).stdout.split()[0])
        delivered = sum(1 for _, k in mixed if k == "lmtp") * 2
        print("| load | direct /s | proxy /s | proxy/direct |")
        print("|---|---|---|---|")
        for label, rate in (("IMAP login+logout (%d)" % args.logins,
                             login_rate),
                            ("mixed, seed %d (%d ops)" % (args.seed,
                                                         args.ops),
                             mixed_rate)):
            print("| %s | %.1f | %.1f | %.2f |" % (
                label, rate["direct"], rate["proxy"],
                rate["proxy"] / rate["direct"]))
        print()
        print("users per backend: %s; %d messages of 4 KB delivered, "
              "%d bytes on the backends (%.0f bytes/message incl. the "
              "empty mailbox)" % (spread, delivered, sum(du.values()),
                                  sum(du.values()) / max(delivered, 1)))
    finally:
        proxy.stop()
        for dc in backends.values():
            dc.stop()
        fake.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
