#!/usr/bin/python3
"""Prints one closing line `N passed, N failed` over every suite: the TAP
unit tests and the call-cycle check (automake .trs files: one result per
assertion, one per folder of src/) and the pytest system tests (JUnit
XML).  Exit status 1 if anything failed or nothing ran."""

import glob
import os
import sys
import xml.etree.ElementTree as ET


def tap_counts(build_dir):
    passed = failed = 0
    for trs in glob.glob(os.path.join(build_dir, "**", "*.trs"),
                         recursive=True):
        with open(trs) as f:
            for line in f:
                if line.startswith(":test-result: "):
                    result = line.split()[1]
                    if result in ("PASS", "XFAIL"):
                        passed += 1
                    elif result != "SKIP":
                        failed += 1
    return passed, failed


def junit_counts(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    passed = failed = 0
    for s in suites:
        tests = int(s.get("tests", 0))
        bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped = int(s.get("skipped", 0))
        failed += bad
        passed += tests - bad - skipped
    return passed, failed


def main(args):
    passed = failed = 0
    for arg in args:
        if arg.endswith(".xml"):
            if not os.path.exists(arg):
                print("summary: %s missing (suite did not run)" % arg)
                failed += 1
                continue
            p, f = junit_counts(arg)
        else:
            p, f = tap_counts(arg)
        print("summary: %s: %d passed, %d failed" % (arg, p, f))
        passed += p
        failed += f
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
