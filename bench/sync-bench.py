#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 5 benchmark: `doveadm launchpad sync` over 5 teams of 2,000
participants each.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/sync-bench.py [--known N]

Run as root (tests/harness.py: a real Dovecot in a private mount namespace,
the loopback Launchpad fake tests/lpfake.py, everything on 127.0.0.1).
The fake gets `--generate-team TEAM:2000:SEED` for five of the six
configured teams (fixed seeds 1..5, so the same names every run); the sixth
(~ubuntu-smtp-test) keeps its two fixture members.  N known users (default
100, drawn in a fixed order from the generated members, plus the fixture
users alice and kim) are made known with `doveadm launchpad refresh USER`.
Then two timed syncs, "first" (the first sync: team records are new) and
"second"; in both, every known person is revalidated with If-None-Match
(the refreshes stored ETags) and answered 304.  For each, the participants page requests per team are counted from
/_fake/requests and compared with ceil(total_size / 300); a mismatch makes
the script exit 1.  Prints a markdown table.
"""

import argparse
import json
import math
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests"))
from harness import Dovecot, LaunchpadFake, Workdir  # noqa: E402

TEAMS = ["ubuntumembers", "kubuntu-members", "lubuntu-members",
         "edubuntu-members", "ubuntustudio-core"]
ALL_TEAMS = TEAMS + ["ubuntu-smtp-test"]
TEAM_SIZE = 2000
PAGE_MAX = 300


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read().decode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--known", type=int, default=100,
                        help="generated members made known (default 100)")
    args = parser.parse_args()

    wd = Workdir("dlp-sync-bench-")
    specs = []
    for i, team in enumerate(TEAMS, 1):
        specs += ["--generate-team", "%s:%d:%d" % (team, TEAM_SIZE, i)]
    fake = LaunchpadFake(wd.path, extra_args=specs).start()
    dc = None
    try:
        dc = Dovecot(wd.path, fake.api_url).start()
        totals = {}
        for team in ALL_TEAMS:
            page = get_json("%s/~%s/participants?ws.size=%d" % (
                fake.api_url, team, PAGE_MAX))
            totals[team] = page["total_size"]
            if team == TEAMS[0]:
                generated = [e["name"] for e in page["entries"]
                             if e["name"].startswith("g1-")]
        known = ["alice@ubuntu.com", "kim@kubuntu.org"] + [
            n + "@ubuntu.com" for n in generated[:args.known]]
        for user in known:
            dc.doveadm("launchpad", "refresh", user)

        rows = []
        ok = True
        for run in ("first", "second"):
            fake.reset()
            start = time.monotonic()
            res = dc.doveadm("-f", "json", "launchpad", "sync", check=False)
            wall = time.monotonic() - start
            if res.returncode != 0:
                print("sync failed (%d): %s" % (res.returncode, res.stderr))
                return 1
            reqs = fake.requests()
            pages = {t: sum(1 for r in reqs if r["path"].endswith(
                "/~%s/participants" % t)) for t in ALL_TEAMS}
            persons = [r for r in reqs if "/participants" not in r["path"]]
            revalidated = sum(1 for r in persons if r["if_none_match"])
            for team in ALL_TEAMS:
                expect = max(1, math.ceil(totals[team] / PAGE_MAX))
                if pages[team] != expect:
                    ok = False
            rows.append((run, wall, pages, len(persons), revalidated,
                         len(reqs)))

        print("| run | wall s | page requests per team (expected) | "
              "person GETs | with If-None-Match | all requests |")
        print("|---|---|---|---|---|---|")
        for run, wall, pages, persons, reval, total in rows:
            cells = ", ".join("~%s %d (%d, N=%d)" % (
                t, pages[t], max(1, math.ceil(totals[t] / PAGE_MAX)),
                totals[t]) for t in ALL_TEAMS)
            print("| %s | %.2f | %s | %d | %d | %d |" % (
                run, wall, cells, persons, reval, total))
        print("\nknown users: %d; page size %d" % (len(known), PAGE_MAX))
        if not ok:
            print("MISMATCH: page requests differ from ceil(N/300)")
            return 1
        return 0
    finally:
        if dc is not None:
            dc.stop()
        fake.stop()
        wd.cleanup()


if __name__ == "__main__":
    sys.exit(main())
