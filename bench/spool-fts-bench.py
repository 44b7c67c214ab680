#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 18 benchmark: the LMTP spool import with and without the FTS5
index, in one run of one build, on one fixed-seed corpus.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/spool-fts-bench.py \
        [--messages 1000] [--rounds 2]

Two Dovecots of the build in DLP_BUILD_DIR: sqlbox (index kept, the
default) and sqlbox with plugin { sqlbox_fts = no }.  Each round delivers
the corpus of bench/storage-bench.py (2-100 KB text messages, seed 4)
over LMTP while alice has no session, so every message is sealed into
the spool, then times a new session's LOGIN + SELECT INBOX, which imports
the spool in one transaction.  The two Dovecots take turns going first.
Measured: the import seconds of each, their ratio (the indexing cost of
the import), and FTS5's segments after the round (its structure record).
With the default sqlbox_fts_index_delay the import leaves its bodies to
the deferred indexing (here: at the session's end, after the SELECT), so
the ratio is what the index still costs the import itself.
To compare two builds, run it for each in turn (A, B, A, B).
"""

import argparse
import importlib.util
import json
import os
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "storage_bench", os.path.join(BENCH_DIR, "storage-bench.py"))
sb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sb)

# sqlbox-dbtool and FTS5's structure record, as fts-bench.py reads them
spec = importlib.util.spec_from_file_location(
    "fts_bench", os.path.join(BENCH_DIR, "fts-bench.py"))
fb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fb)

STORAGES = ("sqlbox", "sqlbox-nofts")
EXTRA = {"sqlbox-nofts": "plugin {\n  sqlbox_fts = no\n}\n"}


def timed_import(dc, pw, want):
    """LOGIN + SELECT INBOX in a new session (the spool import)."""
    t0 = time.perf_counter()
    imap = sb.Imap(dc.imap_port, pw)
    try:
        _, _, _, untagged = imap.run(b"SELECT INBOX")
        secs = time.perf_counter() - t0
    finally:
        imap.close()
    if sb.exists_of(untagged) != want:
        raise RuntimeError("INBOX has %d after the import, want %d" % (
            sb.exists_of(untagged), want))
    return secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    msgs, _ = sb.make_corpus(args.messages, 0)
    corpus_bytes = sum(len(m) for m in msgs)
    print("corpus: %d messages, %.1f MB; build %s" % (
        len(msgs), corpus_bytes / 1e6, os.environ["DLP_BUILD_DIR"]))
    wd = sb.Workdir("dlp-spool-fts-bench-")
    fake = sb.LaunchpadFake(wd.path).start()
    dcs = {}
    res = {n: {"import_s": [], "segments": []} for n in STORAGES}
    try:
        for name in STORAGES:
            d = os.path.join(wd.path, name)
            os.makedirs(d)
            dcs[name] = sb.Dovecot(d, fake.api_url,
                                   mail_location="sqlbox:~/mail",
                                   extra_conf=EXTRA.get(name, "")).start()
        pw = {n: dc.generate_password(sb.USER, label="bench")
              for n, dc in dcs.items()}
        # the first login creates the database: not part of an import
        for name in STORAGES:
            timed_import(dcs[name], pw[name], 0)
        for rnd in range(args.rounds):
            order = STORAGES if rnd % 2 == 0 else STORAGES[::-1]
            for name in order:
                sb.lmtp_deliver_all(dcs[name].lmtp_port, msgs)
                spool = os.path.join(dcs[name].home("alice"), "mail",
                                     "spool")
                if os.path.getsize(spool) == 0:
                    raise RuntimeError("%s: nothing in the spool" % name)
            for name in order:
                res[name]["import_s"].append(timed_import(
                    dcs[name], pw[name], (rnd + 1) * len(msgs)))
            res["sqlbox"]["segments"].append(
                fb.fts5_segments(dcs["sqlbox"], pw["sqlbox"]))
            res["sqlbox"].setdefault("fts_doc", []).append(int(fb.dbtool_sql(
                dcs["sqlbox"], pw["sqlbox"],
                "SELECT count(*) FROM fts_doc")[0]))
    finally:
        for dc in dcs.values():
            dc.stop()
        fake.stop()
        wd.cleanup()
    print(json.dumps(res))
    for rnd in range(args.rounds):
        fts = res["sqlbox"]["import_s"][rnd]
        nofts = res["sqlbox-nofts"]["import_s"][rnd]
        print("round %d: import of %d msgs: FTS %.2f s, no FTS %.2f s, "
              "ratio %.2f (indexing cost %+.0f %%), FTS5 segments %d" % (
                  rnd + 1, len(msgs), fts, nofts, fts / nofts,
                  100.0 * (fts / nofts - 1),
                  res["sqlbox"]["segments"][rnd]))


if __name__ == "__main__":
    sys.exit(main())
