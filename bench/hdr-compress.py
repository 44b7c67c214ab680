#!/usr/bin/python3
"""LZ4 and zstd on sqlbox's header blocks (issue 15, seventh pass).

Saves cmd-profile's corpus (storage-bench's fixed seed, 2,000 mails, no
1 MB messages) to a sqlbox, reads its body_header and body_cache (schema
version 10; body_cache alone before) through sqlbox-dbtool (the route
the tests use to open the encrypted file): rows, bytes per column, pages
(dbstat), and every header block; then builds
bench/hdr-compress.c in a temp dir and runs it on the blocks. Not a test.

Needs liblz4-dev, libzstd-dev, libssl-dev and cc. Run as root:
  DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 bench/hdr-compress.py
"""

import argparse
import importlib.util
import os
import struct
import subprocess
import tempfile

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "storage_bench", os.path.join(BENCH_DIR, "storage-bench.py"))
sb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sb)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    dbtool = os.path.join(os.environ["DLP_BUILD_DIR"],
                          "src/storage/sqlbox-dbtool")
    msgs, _ = sb.make_corpus(args.messages, 0)
    wd = sb.Workdir("dlp-hdr-compress-")
    fake = sb.LaunchpadFake(wd.path).start()
    d = os.path.join(wd.path, "sqlbox")
    os.makedirs(d)
    dc = sb.Dovecot(d, fake.api_url,
                    mail_location=sb.LOCATIONS["sqlbox"]).start()
    try:
        pw = dc.generate_password(sb.USER, label="bench")
        imap = sb.Imap(dc.imap_port, pw)
        imap.run(b"CREATE bench")
        for i in range(0, len(msgs), 50):
            sb.multiappend(imap, b"bench", msgs[i:i + 50])
        imap.close()
        home = dc.home(sb.USER.split("@")[0])

        def sql(query):
            res = subprocess.run(
                [dbtool, os.path.join(home, "sqlbox.keys"),
                 os.path.join(home, "mail", "sqlbox.db"), "sql", query],
                input=pw, capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                raise RuntimeError(res.stderr)
            return res.stdout.strip()

        print("body_header rows|header bytes:",
              sql("SELECT count(*), sum(length(header)) FROM body_header"))
        print("body_cache rows|envelope|bodystructure bytes:",
              sql("SELECT count(*), sum(length(envelope)),"
                  " sum(length(bodystructure)) FROM body_cache"))
        try:
            for table in ("body_header", "body_cache", "body_fields"):
                print(table, "pages|bytes (dbstat):",
                      sql("SELECT count(*), sum(pgsize) FROM dbstat"
                          " WHERE name = '%s'" % table))
        except RuntimeError:
            print("no dbstat; database file:",
                  os.path.getsize(os.path.join(home, "mail", "sqlbox.db")))
        with tempfile.TemporaryDirectory() as tmp:
            blocks = os.path.join(tmp, "blocks")
            with open(blocks, "wb") as f:
                for line in sql("SELECT hex(header) FROM body_header"
                                " WHERE length(header) > 0").split():
                    block = bytes.fromhex(line)
                    f.write(struct.pack("<I", len(block)) + block)
            prog = os.path.join(tmp, "hdr-compress")
            subprocess.run(["cc", "-O2", "-o", prog,
                            os.path.join(BENCH_DIR, "hdr-compress.c"),
                            "-llz4", "-lzstd", "-lcrypto"], check=True)
            print("load average", sb.lb.read_loadavg())
            subprocess.run([prog, blocks], check=True)
            print("load average", sb.lb.read_loadavg())
    finally:
        dc.stop()
        fake.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
