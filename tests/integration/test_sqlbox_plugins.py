"""Issue 13: sqlbox under Dovecot's stock mail plugins that hook saving
and mail: quota (+ imap_quota), mail_log (+ notify), fts (+ fts_squat),
acl (+ imap_acl), lazy_expunge.  Each runs in a real Dovecot with its
usual configuration; every test also checks that nothing panicked.

quota with sqlbox (src/storage/sqlbox-usage.c): the count backend gets
each folder's size and message count from SQLite's per-folder counters,
never from the bodies.  LMTP, which has no key, delivers into the sealed
spool and is checked against the totals a keyed session last wrote to
<root>/quota-usage plus the spool itself.
"""

import imaplib
import os
import re
import smtplib
import subprocess

import pytest

from harness import BUILD_DIR, Workdir, wait_for

DBTOOL = os.path.join(BUILD_DIR, "src/storage/sqlbox-dbtool")
USER = "alice@ubuntu.com"
KB = 1024
QUOTA_LIMIT_KB = 64
QUOTA_CONF = """\
mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=%dK:messages=20
}
%s"""


def imap_login(dc, password):
    imap = imaplib.IMAP4("127.0.0.1", dc.imap_port, timeout=120)
    imap.login(USER, password)
    return imap


def ok(res):
    typ, data = res
    assert typ == "OK", data
    return data


def no(res, code):
    typ, data = res
    assert typ == "NO" and data[0].startswith(b"[" + code + b"]"), data
    return data


def message(subject, size=0):
    head = (b"From: a@example.org\r\nTo: alice@ubuntu.com\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Message-ID: <" + subject.encode().replace(b" ", b".") +
            b"@example.org>\r\n\r\n")
    body = b"body of " + subject.encode() + b"\r\n"
    lines = max(0, size - len(head) - len(body) + 77) // 78
    return head + body + (b"x" * 76 + b"\r\n") * lines


def lmtp_deliver(dc, body):
    """(code, text, "rcpt" or "data") of the one recipient."""
    with smtplib.LMTP("127.0.0.1", dc.lmtp_port) as lmtp:
        try:
            refused = lmtp.sendmail("sender@example.org", [USER], body)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error, "data"
        except smtplib.SMTPRecipientsRefused as e:
            return e.recipients[USER] + ("rcpt",)
    assert refused == {}
    return 250, b"", "data"


def dbtool(dc, password, command, sql):
    home = dc.home("alice")
    res = subprocess.run(
        [DBTOOL, os.path.join(home, "sqlbox.keys"),
         os.path.join(home, "mail", "sqlbox.db"), command, sql],
        input=password, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def quota_used(imap):
    """(STORAGE used KB, limit KB, MESSAGE used) of INBOX's root."""
    data = ok(imap.getquotaroot("INBOX"))
    line = [d for d in data[1] if d is not None][0]
    m = re.search(rb"STORAGE (\d+) (\d+) MESSAGE (\d+) \d+", line)
    assert m, line
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def status(imap, box, items):
    data = ok(imap.status(box, "(%s)" % items))
    fields = re.search(rb"\((.*)\)", data[0]).group(1).split()
    return {k.decode(): int(v) for k, v in zip(fields[::2], fields[1::2])}


def assert_no_crash(dc):
    text = dc.log_text()
    assert "Panic" not in text and "Fatal" not in text, text[-3000:]


def quota_world(make_world, extra=""):
    w = make_world(mail_location="sqlbox:~/mail",
                   extra_conf=QUOTA_CONF % (QUOTA_LIMIT_KB, extra))
    return w, w.dc.generate_password(USER)


def mail_files(w, user):
    """The files of user's mail directory but fts-usage (the index's
    size, written once a session has ended: the session may still be
    ending after LOGOUT's reply, writing it through its temporary file
    that it renames over it at once)."""
    return sorted(f for f in os.listdir(os.path.join(w.dc.home(user), "mail"))
                  if not re.fullmatch(r"fts-usage(\.\d+\.tmp)?", f))


# ---- quota ----


def test_quota_getquotaroot_status_and_over_quota_append(make_world):
    w, pw = quota_world(make_world)
    imap = imap_login(w.dc, pw)
    assert ok(imap.getquotaroot("INBOX"))[0] == [b'INBOX "User quota"']
    ok(imap.create("Work"))
    sizes = {"INBOX": 0, "Work": 0}
    for i, box in enumerate(("INBOX", "Work", "Work")):
        msg = message("quota %d" % i, 9 * KB)
        ok(imap.append(box, None, None, msg))
        sizes[box] += len(msg)
    for box, size in sizes.items():
        st = status(imap, box, "MESSAGES X-SIZE")
        assert st["X-SIZE"] == size
    used, limit, count = quota_used(imap)
    assert limit == QUOTA_LIMIT_KB and count == 3
    assert used == (sum(sizes.values()) + KB - 1) // KB

    # over the limit: refused before anything is stored, session alive
    no(imap.append("Work", None, None, message("too big", 50 * KB)),
       b"OVERQUOTA")
    ok(imap.noop())
    assert status(imap, "Work", "MESSAGES")["MESSAGES"] == 2
    # COPY over the limit
    ok(imap.select("Work"))
    ok(imap.append("INBOX", None, None, message("filler", 30 * KB)))
    no(imap.copy("1:2", "INBOX"), b"OVERQUOTA")
    # MULTIAPPEND is all or nothing (RFC 3502): the second is too big
    tag = imap._new_tag()
    small, big = message("multi small"), message("multi big", 40 * KB)
    imap.send(tag + b" APPEND Work {%d+}\r\n" % len(small) + small +
              b" {%d+}\r\n" % len(big) + big + b"\r\n")
    line = imap.readline()
    while not line.startswith(tag):
        line = imap.readline()
    assert line.startswith(tag + b" NO [OVERQUOTA]"), line
    assert status(imap, "Work", "MESSAGES")["MESSAGES"] == 2
    # and once there is room again, saving works
    ok(imap.store("1", "+FLAGS", "\\Deleted"))
    ok(imap.expunge())
    assert quota_used(imap)[2] == 3
    ok(imap.append("Work", None, None, small))
    imap.logout()
    assert_no_crash(w.dc)


def test_quota_lmtp_into_the_sealed_spool(make_world):
    """No session: LMTP seals mail into the spool without a key and is
    held to the quota by the usage file plus the spool."""
    w, pw = quota_world(make_world)
    imap = imap_login(w.dc, pw)
    ok(imap.append("INBOX", None, None, message("before lmtp", 20 * KB)))
    size_before = status(imap, "INBOX", "X-SIZE")["X-SIZE"]
    imap.logout()
    usage = os.path.join(w.dc.home("alice"), "mail", "quota-usage")
    assert open(usage).read() == "1 %d\n" % size_before

    assert lmtp_deliver(w.dc, message("lmtp 1", 20 * KB))[0] == 250
    # fits alone (20 + 40 < 64), not after the first one (in the spool),
    # also with quota's 10 % grace
    code, text, stage = lmtp_deliver(w.dc, message("lmtp 2", 40 * KB))
    assert (code, text[:5], stage) == (552, b"5.2.2", "data"), text
    assert lmtp_deliver(w.dc, message("lmtp 3", 5 * KB))[0] == 250
    # LMTP has no key: it never writes the usage file
    assert open(usage).read() == "1 %d\n" % size_before

    imap = imap_login(w.dc, pw)
    ok(imap.select("INBOX"))
    subjects = ok(imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    got = [s[1].strip() for s in subjects if isinstance(s, tuple)]
    assert got == [b"Subject: before lmtp", b"Subject: lmtp 1",
                   b"Subject: lmtp 3"]
    st = status(imap, "INBOX", "MESSAGES X-SIZE")
    imap.logout()
    assert open(usage).read() == "%d %d\n" % (st["MESSAGES"], st["X-SIZE"])
    assert mail_files(w, "alice") == [
        "quota-usage", "spool", "sqlbox.db", "sqlbox.db-shm",
        "sqlbox.db-wal"]
    # the administrator has no key either: the same numbers
    out = w.dc.doveadm("-f", "tab", "quota", "get", "-u", USER).stdout
    rows = [l.split("\t") for l in out.splitlines()[1:]]
    assert [r[1:3] for r in rows] == [
        ["STORAGE", str((st["X-SIZE"] + KB - 1) // KB)],
        ["MESSAGE", str(st["MESSAGES"])]], out
    assert_no_crash(w.dc)


def test_quota_full_tempfail_and_rcpt_check(make_world):
    """quota_full_tempfail: 452 4.2.2 instead of 552; with
    lmtp_rcpt_check_quota an account already over its limit (deliveries
    may use the 10 % grace) is refused at RCPT, from the spool's size."""
    # LMTP settings (Dovecot's lda settings), not plugin ones
    w, pw = quota_world(make_world, "quota_full_tempfail = yes\n"
                        "lmtp_rcpt_check_quota = yes\n")
    code, text, stage = lmtp_deliver(w.dc, message("too big", 80 * KB))
    assert (code, text[:5], stage) == (452, b"4.2.2", "data"), text
    assert lmtp_deliver(w.dc, message("fits", 60 * KB))[0] == 250
    assert lmtp_deliver(w.dc, message("grace", 8 * KB))[0] == 250
    code, text, stage = lmtp_deliver(w.dc, message("over at rcpt"))
    assert (code, text[:5], stage) == (452, b"4.2.2", "rcpt"), text
    assert_no_crash(w.dc)


def test_quota_size_comes_from_the_rows(make_world):
    """The quota plugin's number is the folder's stored size (the row's
    counter): moved by hand while Dovecot is stopped, GETQUOTA follows,
    with no body read at all."""
    w, pw = quota_world(make_world)
    imap = imap_login(w.dc, pw)
    ok(imap.append("INBOX", None, None, message("counted", 2 * KB)))
    used, _, count = quota_used(imap)
    imap.logout()
    w.dc.stop()
    dbtool(w.dc, pw, "exec",
           "UPDATE mailbox SET vsize = vsize + %d WHERE name = 'INBOX'"
           % (10 * KB))
    w.dc.start()
    imap = imap_login(w.dc, pw)
    assert quota_used(imap) == (used + 10, QUOTA_LIMIT_KB, count)
    imap.logout()


# ---- mail_log (with notify) ----

def test_mail_log_sees_saves_copies_flags_expunges(make_world):
    w = make_world(mail_location="sqlbox:~/mail", extra_conf="""\
mail_plugins = $mail_plugins notify mail_log
plugin {
  mail_log_events = delete undelete expunge copy mailbox_delete mailbox_rename save flag_change
  mail_log_fields = uid box msgid size vsize flags
}
""")
    pw = w.dc.generate_password(USER)
    imap = imap_login(w.dc, pw)
    ok(imap.create("Log"))
    small = message("log small")
    # several body chunks: read back from SQLite while still being saved
    big = message("log big", 700 * KB)
    ok(imap.append("Log", None, None, small))
    ok(imap.append("Log", None, None, big))
    ok(imap.select("Log"))
    ok(imap.copy("2", "INBOX"))
    ok(imap.store("1", "+FLAGS", "\\Flagged"))
    ok(imap.store("1", "+FLAGS", "\\Deleted"))
    ok(imap.expunge())
    ok(imap.close())
    ok(imap.rename("Log", "Logged"))
    ok(imap.delete("Logged"))
    imap.logout()
    assert lmtp_deliver(w.dc, message("log lmtp"))[0] == 250
    expected = [
        r"save: box=Log, uid=1, msgid=<log.small@example.org>, "
        r"size=%d, vsize=%d" % (len(small), len(small)),
        r"save: box=Log, uid=2, msgid=<log.big@example.org>, "
        r"size=%d, vsize=%d" % (len(big), len(big)),
        r"copy from Log: box=INBOX, uid=1, msgid=<log.big@example.org>, "
        r"size=%d" % len(big),
        r"flag_change: box=Log, uid=1, msgid=<log.small@example.org>, .*"
        r"flags=\(\\Flagged \\Recent\)",
        r"expunge: box=Log, uid=1, msgid=<log.small@example.org>",
        r"Mailbox renamed: Log -> Logged",
        r"Mailbox deleted: Logged",
        # LMTP without a key: the mail is only in memory until sealed
        r"lmtp\(alice@ubuntu.com\).*save: box=INBOX, uid=\d+, "
        r"msgid=<log.lmtp@example.org>",
    ]

    def logged():
        text = w.dc.log_text()
        return all(re.search(e, text) for e in expected)
    try:
        wait_for(logged, 60, "mail_log lines")
    except TimeoutError:
        text = w.dc.log_text()
        missing = [e for e in expected if not re.search(e, text)]
        raise AssertionError("missing %s in\n%s" % (missing, text[-4000:]))
    assert_no_crash(w.dc)


# ---- fts ----

def test_fts_plugin_searches_and_writes_nothing_beside(make_world):
    """fts with Dovecot's own squat backend and indexing on save: sqlbox
    gives no index directory, so nothing is written next to the database
    and SEARCH is answered from the mail itself."""
    w = make_world(mail_location="sqlbox:~/mail", extra_conf="""\
mail_plugins = $mail_plugins fts fts_squat
plugin {
  fts = squat
  fts_autoindex = yes
}
""")
    pw = w.dc.generate_password(USER)
    imap = imap_login(w.dc, pw)
    ok(imap.create("Search"))
    for i in range(5):
        ok(imap.append("Search", None, None,
                       message("fts %d" % i).replace(
                           b"body of", b"needle%d in the body of" % i)))
    ok(imap.select("Search"))
    assert ok(imap.search(None, "BODY", "needle3")) == [b"4"]
    assert ok(imap.search(None, "TEXT", "needle1")) == [b"2"]
    assert ok(imap.search(None, "SUBJECT", "fts")) == [b"1 2 3 4 5"]
    assert ok(imap.search(None, "BODY", "absent")) == [b""]
    imap.logout()
    files = set()
    for root, _, names in os.walk(w.dc.home("alice")):
        files.update(os.path.relpath(os.path.join(root, n),
                                     w.dc.home("alice")) for n in names)
    # a session (imap or indexer-worker) that is still ending may be
    # writing fts-usage: its temporary file, renamed over it at once
    files = {f for f in files
             if not re.fullmatch(r"mail/fts-usage\.\d+\.tmp", f)}
    assert files <= {"sqlbox.keys", "sqlbox.keys.lock", "mail/sqlbox.db",
                     "mail/sqlbox.db-wal", "mail/sqlbox.db-shm",
                     "mail/spool",
                     "mail/fts-usage"}, files
    text = w.dc.log_text()
    assert " Error: " not in text, text[-3000:]
    assert_no_crash(w.dc)


# ---- acl ----

def test_acl_global_rights_apply(make_world):
    """ACLs for sqlbox come from the administrator's global ACL files
    (acl = vfile:DIR): the folders have no directory for per-folder
    dovecot-acl files, so SETACL is refused and nothing is written."""
    acl = Workdir("dlp-acl-")
    try:
        with open(os.path.join(acl.path, "Archive"), "w") as f:
            f.write("owner lr\n")
        w = make_world(mail_location="sqlbox:~/mail", extra_conf="""\
mail_plugins = $mail_plugins acl
protocol imap {
  mail_plugins = $mail_plugins imap_acl
}
plugin {
  acl = vfile:%s
}
""" % acl.path)
        pw = w.dc.generate_password(USER)
        imap = imap_login(w.dc, pw)
        ok(imap.create("Archive"))
        ok(imap.create("Work"))
        assert ok(imap.myrights("Archive")) == [b"Archive lr"]
        assert ok(imap.myrights("Work"))[0].startswith(b"Work lrwstipekxa")
        no(imap.append("Archive", None, None, message("acl")), b"NOPERM")
        ok(imap.append("Work", None, None, message("acl")))
        with pytest.raises(imaplib.IMAP4.readonly):
            imap.select("Archive")
        imap.untagged_responses.pop("READ-ONLY", None)
        ok(imap.select("Work"))
        assert imap.setacl("Work", "user=bob@ubuntu.com", "lr")[0] == "NO"
        assert ok(imap.getacl("Work"))[0].startswith(
            b"Work alice@ubuntu.com lrwstipekxa")
        imap.logout()
        assert mail_files(w, "alice") == \
            ["sqlbox.db", "sqlbox.db-shm", "sqlbox.db-wal"]
        assert_no_crash(w.dc)
    finally:
        acl.cleanup()


# ---- lazy_expunge ----

def test_lazy_expunge_keeps_a_copy_sharing_the_body(make_world):
    w = make_world(mail_location="sqlbox:~/mail", extra_conf="""\
mail_plugins = $mail_plugins lazy_expunge
plugin {
  lazy_expunge = .EXPUNGED
}
""")
    pw = w.dc.generate_password(USER)
    imap = imap_login(w.dc, pw)
    ok(imap.create("Keep"))
    msg = message("lazy", 300 * KB)
    ok(imap.append("Keep", None, None, msg))
    ok(imap.select("Keep"))
    ok(imap.store("1", "+FLAGS", "\\Deleted"))
    ok(imap.expunge())
    assert status(imap, "Keep", "MESSAGES")["MESSAGES"] == 0
    ok(imap.select(".EXPUNGED", readonly=True))
    data = ok(imap.fetch("1", "(BODY.PEEK[])"))
    assert data[0][1] == msg
    imap.logout()
    # one body row for the mail, however many folders saw it
    assert dbtool(w.dc, pw, "sql",
                  "SELECT count(*), (SELECT count(*) FROM mail)"
                  " FROM body") == ["1|1"]
    assert_no_crash(w.dc)
