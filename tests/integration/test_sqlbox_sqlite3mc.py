"""Issue 4: a user's mailbox, checkpointed, opens in SQLite3MultipleCiphers
itself with `raw:` + the master key: the data stays portable.

SQLite3MultipleCiphers is built here from the amalgamation inside the npm
package better-sqlite3-multiple-ciphers, with tests/cryptvfs/mc-tool.c (the
reader the cryptvfs interop test uses).  The package comes from the cryptvfs
unit tests' cache in a build dir when there is one, else from `npm pack`;
without either the test fails, it never skips."""

import glob
import imaplib
import os
import re
import shutil
import subprocess
import tarfile

from conftest import World
from harness import BUILD_DIR, TESTS_DIR, TOP_SRCDIR

NPM_SPEC = "better-sqlite3-multiple-ciphers@12.11.1"
DBTOOL = os.path.join(BUILD_DIR, "src/storage/sqlbox-dbtool")
MESSAGE = (b"From: a@example.org\r\nSubject: portable %d\r\n\r\n"
           b"body of message %d\r\n")


def sqlite3mc_tool(workdir):
    cached = sorted(glob.glob(os.path.join(
        TOP_SRCDIR, "build*", "src", "cryptvfs", "interop-cache",
        "better-sqlite3-multiple-ciphers-*.tgz")))
    if cached:
        tarball = cached[-1]
    else:
        subprocess.run(["npm", "pack", "--silent", NPM_SPEC], cwd=workdir,
                       check=True, timeout=600, capture_output=True)
        tarball = glob.glob(os.path.join(
            workdir, "better-sqlite3-multiple-ciphers-*.tgz"))[0]
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith("package/deps/sqlite3/")]
        tar.extractall(workdir, members=members)
    amal = os.path.join(workdir, "package", "deps", "sqlite3")
    tool = os.path.join(workdir, "mc-tool")
    subprocess.run(["cc", "-O1", "-w", "-I" + amal, "-o", tool,
                    os.path.join(TESTS_DIR, "cryptvfs", "mc-tool.c"),
                    os.path.join(amal, "sqlite3.c"),
                    "-lpthread", "-ldl", "-lm"], check=True, timeout=600)
    return tool


def test_checkpointed_mailbox_opens_in_sqlite3mc():
    w = World(mail_location="sqlbox:~/mail")
    try:
        tool = sqlite3mc_tool(w.wd.path)
        dc = w.dc
        password = dc.generate_password("alice@ubuntu.com")
        imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=60)
        imap.login("alice@ubuntu.com", password)
        imap.select("INBOX")
        for i in range(20):
            assert imap.append("INBOX", None, None,
                               MESSAGE % (i, i))[0] == "OK"
        imap.logout()
        # a session that ends checkpoints; Dovecot stops before we copy
        dc.stop()
        home = dc.home("alice")
        db = os.path.join(home, "mail", "sqlbox.db")
        keyfile = os.path.join(home, "sqlbox.keys")
        res = subprocess.run([DBTOOL, keyfile, db, "masterkey"],
                             input=password, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0, res.stderr
        raw = res.stdout.strip()
        assert re.fullmatch(r"raw:[0-9a-f]{64}", raw)
        copy = os.path.join(w.wd.path, "copy.db")
        shutil.copyfile(db, copy)
        for suffix in ("-wal",):
            if os.path.exists(db + suffix) and os.path.getsize(db + suffix):
                shutil.copyfile(db + suffix, copy + suffix)

        def query(sql, key=raw):
            return subprocess.run([tool, "query", copy, key, sql],
                                  capture_output=True, text=True, timeout=60)

        res = query("PRAGMA integrity_check")
        assert res.returncode == 0 and res.stdout == "ok\n", res.stderr
        res = query("SELECT count(*) FROM mail m JOIN mailbox b "
                    "ON b.id = m.mailbox_id WHERE b.name = 'INBOX'")
        assert res.stdout == "20\n", (res.stdout, res.stderr)
        res = query("SELECT count(*) FROM chunk "
                    "WHERE instr(data, 'body of message 7') > 0")
        assert res.stdout == "1\n", (res.stdout, res.stderr)
        wrong = "raw:" + "00" * 32
        assert query("SELECT count(*) FROM mail", key=wrong).returncode != 0
    finally:
        w.close()
