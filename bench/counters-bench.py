#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 13: what sqlbox's per-folder counters cost.  Schema 4 keeps
messages, unseen and vsize in each folder's row with three triggers on
the mail table (src/storage/sqlbox-schema.c); every saved, flagged
(\\Seen) or expunged mail fires one.  This measures those statements on
plain SQLite (Python's sqlite3, WAL, one transaction per operation, as
sqlbox's saves and syncs run), with and without the triggers, in
alternating order:

    /usr/bin/python3 bench/counters-bench.py [--rows N] [--rounds R]

Prints the median microseconds per mail row of each operation and the
difference.  No encryption, no Dovecot: the part of a real APPEND, STORE
or EXPUNGE that the triggers add, to set against what those commands
cost in bench/storage-bench.py.
"""

import argparse
import os
import sqlite3
import statistics
import tempfile
import time

SCHEMA = """
CREATE TABLE mailbox (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  guid BLOB NOT NULL, uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL,
  highestmodseq INTEGER NOT NULL, special_use TEXT,
  first_recent_uid INTEGER NOT NULL DEFAULT 1,
  messages INTEGER NOT NULL DEFAULT 0, unseen INTEGER NOT NULL DEFAULT 0,
  vsize INTEGER NOT NULL DEFAULT 0);
CREATE TABLE body (id INTEGER PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE mail (mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,
  body_id INTEGER NOT NULL, flags INTEGER NOT NULL, modseq INTEGER NOT NULL,
  received INTEGER NOT NULL, saved INTEGER NOT NULL, guid TEXT NOT NULL,
  PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID;
CREATE INDEX mail_body ON mail (body_id);
CREATE INDEX mail_modseq ON mail (mailbox_id, modseq);
INSERT INTO mailbox (name, guid, uidvalidity, uidnext, highestmodseq)
  VALUES ('INBOX', x'00', 1, 1, 1);
"""
# As in sqlbox-schema.c (sqlbox_schema_v4), MAIL_SEEN = 8.
TRIGGERS = """
CREATE TRIGGER mail_counters_insert AFTER INSERT ON mail BEGIN
 UPDATE mailbox SET messages = messages + 1,
 unseen = unseen + ((NEW.flags & 8) = 0),
 vsize = vsize + (SELECT size FROM body WHERE id = NEW.body_id)
 WHERE id = NEW.mailbox_id; END;
CREATE TRIGGER mail_counters_delete AFTER DELETE ON mail BEGIN
 UPDATE mailbox SET messages = messages - 1,
 unseen = unseen - ((OLD.flags & 8) = 0),
 vsize = vsize - (SELECT size FROM body WHERE id = OLD.body_id)
 WHERE id = OLD.mailbox_id; END;
CREATE TRIGGER mail_counters_flags AFTER UPDATE OF flags ON mail
 WHEN (OLD.flags & 8) <> (NEW.flags & 8) BEGIN
 UPDATE mailbox SET unseen = unseen + ((NEW.flags & 8) = 0)
 - ((OLD.flags & 8) = 0) WHERE id = NEW.mailbox_id; END;
"""


def one_round(path, rows, triggers):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA + (TRIGGERS if triggers else ""))
    res = {}
    t = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    for uid in range(1, rows + 1):
        cur = db.execute("INSERT INTO body (size) VALUES (?)", (2000 + uid,))
        db.execute("INSERT INTO mail VALUES (1, ?, ?, 0, 1, 0, 0, 'g')",
                   (uid, cur.lastrowid))
    db.execute("COMMIT")
    res["save"] = time.perf_counter() - t
    t = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE mail SET flags = flags | 8, modseq = 2"
               " WHERE mailbox_id = 1")
    db.execute("COMMIT")
    res["flag \\Seen"] = time.perf_counter() - t
    t = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.execute("DELETE FROM mail WHERE mailbox_id = 1")
    db.execute("COMMIT")
    res["expunge"] = time.perf_counter() - t
    if triggers:
        assert db.execute("SELECT messages, unseen, vsize FROM mailbox"
                          ).fetchone() == (0, 0, 0)
    db.close()
    return {k: v / rows * 1e6 for k, v in res.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="counters-bench-") as tmp:
        path = os.path.join(tmp, "bench.db")
        runs = {False: [], True: []}
        for rnd in range(args.rounds):
            for triggers in ((False, True) if rnd % 2 == 0 else
                             (True, False)):
                runs[triggers].append(one_round(path, args.rows, triggers))
    print("| per mail row | without triggers | with triggers | added |")
    print("|---|---|---|---|")
    for op in runs[False][0]:
        a = statistics.median(r[op] for r in runs[False])
        b = statistics.median(r[op] for r in runs[True])
        print("| %s | %.1f us | %.1f us | %+.1f us |" % (op, a, b, b - a))
    print("\n%d rows, %d rounds, median; SQLite %s" % (
        args.rows, args.rounds, sqlite3.sqlite_version))


if __name__ == "__main__":
    main()
