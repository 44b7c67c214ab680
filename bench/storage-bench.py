#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""Issue 4 benchmark: the mail storage sqlbox against Dovecot's maildir,
mdbox and mdbox+mail_crypt, in one run, on one message corpus.

    DLP_BUILD_DIR=$PWD/build /usr/bin/python3 bench/storage-bench.py [--quick]

One run, as root, loopback only (tests/harness.py): the Launchpad fake and
four Dovecots whose dovecot.conf differ only in mail_location and mail
plugins (the script checks this):
  sqlbox        sqlbox:~/mail (our plugin; encrypted SQLite, in-memory index)
  mdbox+crypt   mdbox:~/mdbox with mail_crypt, global EC keys (prime256v1,
                made with openssl), mail_crypt_save_version = 2
  mdbox         mdbox:~/mdbox
  maildir       maildir:~/Maildir
One user (alice@ubuntu.com, an app password each), fixed-seed corpus of
realistic RFC 5322 text messages 2-100 KB plus a few of 1 MB.  Measured,
each operation in turn on every storage (the order rotates by round) so
that all four see the same background load:
  append     MULTIAPPEND (LITERAL+) of the corpus in chunks into "bench";
  hdr        new session: FETCH 1:* BODY.PEEK[HEADER];
  firstsync  new session: a mail client's first sync (Thunderbird's):
             FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE
             BODY.PEEK[HEADER.FIELDS (...)] ENVELOPE BODYSTRUCTURE);
  env        new session: FETCH 1:* (ENVELOPE BODYSTRUCTURE RFC822.SIZE);
  body       new session: UID FETCH <fixed random sample> BODY.PEEK[];
  search     new session: UID SEARCH BODY <a word in ~1 % of messages>;
  searchhdr  new session: UID SEARCH on headers (FROM, SUBJECT, HEADER),
             answers compared across storages;
  partial    new session: UID FETCH <the 1 MB messages> BODY.PEEK[]<p.4096>
             at a fixed offset (bodies read only where asked);
  big        a 100,000-message mailbox of small messages, built once per
             storage by MULTIAPPEND of 1,000 messages per command; then
             SELECT in a new session: cold (sync + drop_caches first) and
             warm (median of repeats);
  lmtp       smtplib.LMTP deliveries to INBOX over parallel connections,
             then the time of the next SELECT INBOX (sqlbox imports its
             sealed spool there).
Every timed interval runs from sending the command to its tagged reply
(LOGIN and the preparatory SELECT are not timed).  Replies are checked:
byte counts of header and body fetches must agree across storages, SEARCH
must find exactly the planted messages, SELECT must report every message.
The encryption of mdbox+crypt is checked by grepping a marker that every
message carries in the mdbox files (plain mdbox must contain it, the
encrypted one must not; sqlbox's files must not either).
Prints a markdown report and writes it into bench/README.md between the
markers <!-- storage-bench:begin --> and <!-- storage-bench:end -->.
"""

import argparse
import concurrent.futures
import datetime
import importlib.util
import json
import os
import random
import re
import smtplib
import socket
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests"))

from harness import Dovecot, LaunchpadFake, Workdir  # noqa: E402


def _load_login_bench():
    """bench/login-bench.py's helpers (machine facts, idle wait, niceness,
    percentiles); its name is not a module name."""
    spec = importlib.util.spec_from_file_location(
        "login_bench", os.path.join(BENCH_DIR, "login-bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


lb = _load_login_bench()


def check_logs(dcs):
    """Raises if any Dovecot of dcs (name -> Dovecot) logged an Error or
    a Panic: a bench of a failing server measures nothing."""
    for name, dc in dcs.items():
        errors = [line for line in dc.log_text().splitlines()
                  if "Error:" in line or "Panic:" in line]
        if errors:
            raise RuntimeError("%s logged errors:\n%s" % (
                name, "\n".join(errors[:10])))


README = os.path.join(BENCH_DIR, "README.md")
MARK_BEGIN = "<!-- storage-bench:begin -->"
MARK_END = "<!-- storage-bench:end -->"
SECTION = "## Mail storage (issue 4)"

USER = "alice@ubuntu.com"
SEED = 4
# In every message body: grepped for in the storage files.
PLAIN_MARKER = b"sqlbench-plaintext-marker-4e1f"
# Planted in ~1 % of the corpus, found nowhere else (not in WORDS).
SEARCH_WORD = "quixotically"
SEARCH_SHARE = 0.01
KB = 1024
MIN_SIZE, MAX_SIZE, HUGE_SIZE = 2 * KB, 100 * KB, 1024 * KB
IO_TIMEOUT_SECS = 600
# Bounds the reply lines of one IMAP command (a FETCH of 100k messages).
MAX_REPLY_LINES = 1000000
NICENESS = -10
LMTP_CONNECTIONS = 4

STORAGES = ("sqlbox", "mdbox+crypt", "mdbox", "maildir")
LOCATIONS = {"sqlbox": "sqlbox:~/mail", "mdbox+crypt": "mdbox:~/mdbox",
             "mdbox": "mdbox:~/mdbox", "maildir": "maildir:~/Maildir"}
REFERENCES = ("mdbox+crypt", "mdbox", "maildir")

FULL = {"messages": 1000, "huge": 5, "append_chunk": 50, "rounds": 5,
        "body_sample": 100, "big": 100000, "big_batch": 1000,
        "lmtp": 400}
QUICK = {"messages": 200, "huge": 2, "append_chunk": 50, "rounds": 3,
         "body_sample": 30, "big": 10000, "big_batch": 1000,
         "lmtp": 100}

WORDS = """the of and to in is that for it as was with be by on not he this
are or his from at which but have an they you were her she there been one
all we their has would when if so no will more can out up who them some
into time only its could new other than then these two may first any like
now my such make over our even most after also made many before must
through back years where much your way well down should because each just
those people how too little state good very world still own see men work
long here get both between life being under never day same another know
while last might us great old year off come since against go came right
used take three states himself few house use during without again place
around however home small found thought went say part once general high
upon school every does got united left number course war until always away
something fact though water less public put think almost hand enough far
took head yet government system better set told nothing night end why
called didnt eyes find going look asked later knew point next program city
business give group toward young days let room president side social given
present several order national possible rather second face per among form
important often things looking early white case john become large big need
four within felt along children saw best church ever least power development
light thing seemed family interest want members mind country area others
done turned although open god service certain kind problem began different
door thus help sense means whole matter perhaps itself york times law human
line above name example action company hands local show whether five
history gave today either act feet across taken past quite anything seen
having death experience body word half really field week""".split()
FIRST = ("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory "
         "Niaj Olivia Peggy Rupert Sybil Trent Victor Walter").split()
LAST = ("Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson "
        "Wright Thompson Evans Walker White Roberts Green Hall Wood").split()
DOMAINS = ("example.org", "example.net", "lists.ubuntu.com", "canonical.com",
           "debian.org", "kernel.org")
LISTS = ("ubuntu-devel", "ubuntu-devel-discuss", "debian-devel",
         "kernel-team", "ubuntu-release")
MAILERS = ("Mutt/2.2.9", "Thunderbird 115.6.0", "Evolution 3.46.4",
           "Apple Mail (2.3731)", "Roundcube Webmail/1.6.5")
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
DAYS = "Mon Tue Wed Thu Fri Sat Sun".split()


# ---------------------------------------------------------------- corpus

def rfc_date(rng):
    return "%s, %02d %s %d %02d:%02d:%02d %+05d" % (
        rng.choice(DAYS), rng.randint(1, 28), rng.choice(MONTHS),
        rng.randint(2019, 2026), rng.randint(0, 23), rng.randint(0, 59),
        rng.randint(0, 59), rng.choice((0, 100, 200, -500, -800, 530)))


def address(rng):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return '"%s %s" <%s.%s@%s>' % (first, last, first.lower(),
                                   last.lower(), rng.choice(DOMAINS))


def text_lines(rng, size, plant=False):
    """size bytes (at least) of wrapped text lines; with plant, the search
    word once, somewhere inside."""
    lines, total, line = [], 0, []
    plant_at = rng.randint(0, max(0, size - 200)) if plant else -1
    while total < size:
        word = rng.choice(WORDS)
        if 0 <= plant_at <= total:
            word, plant_at = SEARCH_WORD, -1
        line.append(word)
        if sum(len(w) + 1 for w in line) > rng.randint(60, 76):
            text = " ".join(line)
            if rng.random() < 0.08:
                text += "."
                lines.append(text)
                lines.append("")
                total += len(text) + 4
            else:
                lines.append(text)
                total += len(text) + 2
            line = []
    if line:
        lines.append(" ".join(line))
    return lines


def make_message(rng, i, size, plant):
    subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
    if rng.random() < 0.3:
        subject = "Re: " + subject
    hdr = []
    for hop in range(rng.randint(1, 5)):
        hdr.append("Received: from mx%d.%s (mx%d.%s [192.0.2.%d])\r\n"
                   "\tby mail.ubuntu.com (Postfix) with ESMTPS id %08X\r\n"
                   "\tfor <alice@ubuntu.com>; %s" % (
                       hop, rng.choice(DOMAINS), hop, rng.choice(DOMAINS),
                       rng.randint(1, 254), rng.getrandbits(32),
                       rfc_date(rng)))
    hdr.append("From: " + address(rng))
    hdr.append("To: " + ", ".join(address(rng) for _ in range(
        rng.randint(1, 3))))
    if rng.random() < 0.4:
        hdr.append("Cc: " + address(rng))
    hdr.append("Subject: " + subject)
    hdr.append("Date: " + rfc_date(rng))
    hdr.append("Message-ID: <%d.%08x@%s>" % (i, rng.getrandbits(32),
                                             rng.choice(DOMAINS)))
    if subject.startswith("Re: "):
        ref = "<%08x@%s>" % (rng.getrandbits(32), rng.choice(DOMAINS))
        hdr.append("In-Reply-To: " + ref)
        hdr.append("References: " + ref)
    if rng.random() < 0.5:
        lst = rng.choice(LISTS)
        hdr.append("List-Id: %s <%s.lists.ubuntu.com>" % (lst, lst))
        hdr.append("List-Unsubscribe: <mailto:%s-request@lists.ubuntu.com"
                   "?subject=unsubscribe>" % lst)
    if rng.random() < 0.6:
        hdr.append("X-Mailer: " + rng.choice(MAILERS))
    hdr.append("MIME-Version: 1.0")
    hdr.append("Content-Type: text/plain; charset=utf-8")
    hdr.append("Content-Transfer-Encoding: 8bit")
    head = "\r\n".join(hdr).encode() + b"\r\n\r\n"
    body = [PLAIN_MARKER.decode()] + text_lines(
        rng, max(0, size - len(head) - 40), plant)
    return head + "\r\n".join(body).encode() + b"\r\n"


def make_corpus(count, huge):
    """count messages, sizes log-uniform in [2 KB, 100 KB], plus huge
    messages of 1 MB at fixed places; the search word in ~1 %."""
    rng = random.Random(SEED)
    total = count + huge
    planted = set(rng.sample(range(total), max(1, round(total *
                                                         SEARCH_SHARE))))
    huge_at = set(rng.sample(range(total), huge))
    msgs = []
    for i in range(total):
        if i in huge_at:
            size = HUGE_SIZE
        else:
            size = int(MIN_SIZE * (MAX_SIZE / MIN_SIZE) ** rng.random())
        msgs.append(make_message(rng, i, size, i in planted))
    return msgs, planted


def small_message(rng, i):
    """A 300-700 byte message for the big mailbox."""
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 70)))
    return ("From: %s\r\nTo: Alice <alice@ubuntu.com>\r\nSubject: note %d "
            "%s\r\nDate: %s\r\nMessage-ID: <big.%d@example.org>\r\n\r\n"
            "%s\r\n" % (address(rng), i, rng.choice(WORDS), rfc_date(rng),
                        i, words)).encode()


# ------------------------------------------------------------ IMAP client

class ImapError(Exception):
    pass


LITERAL_RE = re.compile(rb"\{(\d+)\}\r\n$")


class Imap:
    """A minimal IMAP client on a raw socket: commands are timed from send
    to the tagged reply; literals are read by their length, never parsed."""

    def __init__(self, port, password):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=IO_TIMEOUT_SECS)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb", buffering=1 << 20)
        self.seq = 0
        greeting = self.f.readline()
        if not greeting.startswith(b"* OK"):
            raise ImapError("greeting %r" % greeting)
        self.run(b'LOGIN "%s" "%s"' % (USER.encode(), password.encode()))

    def run(self, command):
        """Sends one command; returns (seconds, reply bytes, literal bytes,
        untagged lines without their literals)."""
        self.seq += 1
        tag = b"b%d" % self.seq
        start = time.perf_counter()
        self.sock.sendall(tag + b" " + command + b"\r\n")
        nbytes = nlit = 0
        untagged = []
        for _ in range(MAX_REPLY_LINES):
            line = self.f.readline()
            if not line:
                raise ImapError("connection closed")
            nbytes += len(line)
            text = [line]
            m = LITERAL_RE.search(line)
            while m:
                n = int(m.group(1))
                data = self.f.read(n)
                if len(data) != n:
                    raise ImapError("short literal")
                nlit += n
                line = self.f.readline()
                nbytes += n + len(line)
                text.append(line)
                m = LITERAL_RE.search(line)
            if line.startswith(tag + b" "):
                secs = time.perf_counter() - start
                if not line.startswith(tag + b" OK"):
                    raise ImapError("%s: %r" % (command[:60], line))
                return secs, nbytes, nlit, untagged
            untagged.append(b"".join(text))
        raise ImapError("reply longer than %d lines" % MAX_REPLY_LINES)

    def close(self):
        try:
            self.run(b"LOGOUT")
        except (ImapError, OSError):
            pass
        self.sock.close()


def multiappend(imap, box, msgs):
    """One APPEND of several messages (RFC 3502, LITERAL+)."""
    parts = [b"APPEND " + box]
    for msg in msgs:
        parts.append(b" {%d+}\r\n" % len(msg))
        parts.append(msg)
    return imap.run(b"".join(parts))[0]


def exists_of(untagged):
    for line in untagged:
        m = re.match(rb"\* (\d+) EXISTS", line)
        if m:
            return int(m.group(1))
    raise ImapError("no EXISTS in %r" % untagged[:5])


# --------------------------------------------------------------- storages

def mail_crypt_conf(workdir):
    """Global EC keys (prime256v1) for mail_crypt, made with openssl."""
    priv = os.path.join(workdir, "ecprivkey.pem")
    pub = os.path.join(workdir, "ecpubkey.pem")
    key = subprocess.run(["openssl", "ecparam", "-name", "prime256v1",
                          "-genkey", "-noout"], capture_output=True,
                         check=True).stdout
    subprocess.run(["openssl", "pkey", "-out", priv], input=key, check=True)
    subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub],
                   check=True)
    return ("mail_plugins = $mail_plugins mail_crypt\n"
            "plugin {\n"
            "  mail_crypt_global_private_key = <%s\n"
            "  mail_crypt_global_public_key = <%s\n"
            "  mail_crypt_save_version = 2\n"
            "}\n") % (priv, pub)


def normalized_conf(dc):
    """dovecot.conf without what may differ: mail_location, the mail plugin
    lines, the mail_crypt block; paths and ports masked."""
    with open(dc.conf_path) as f:
        text = f.read()
    extra = dc.settings["extra_conf"]
    if extra:
        if extra not in text:
            raise RuntimeError("%s lacks its extra text" % dc.conf_path)
        text = text.replace(extra, "")
    text = re.sub(r"(?m)^(mail_location|mail_plugins|mail_plugin_dir) = .*"
                  r"\n", "", text)
    text = text.replace(dc.workdir, "<workdir>")
    for port in (dc.imap_port, dc.pop3_port, dc.lmtp_port):
        text = re.sub(r"\b%d\b" % port, "<port>", text)
    # the plugin lines leave a blank line where there are none
    return "\n".join(line for line in text.split("\n") if line.strip())


def check_same_settings(dcs):
    texts = {name: normalized_conf(dc) for name, dc in dcs.items()}
    first = texts[STORAGES[0]]
    for name, text in texts.items():
        if text != first:
            raise RuntimeError("dovecot.conf of %s differs beyond mail "
                               "location/plugins:\n%s\n----\n%s" % (
                                   name, first, text))


def grep_tree(top, needle):
    """(files, files containing needle) under top."""
    files = hits = 0
    for dirpath, _, names in os.walk(top):
        for name in names:
            try:
                with open(os.path.join(dirpath, name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue        # e.g. a -shm a closing session removed
            files += 1
            if needle in data:
                hits += 1
    return files, hits


def check_encryption(dcs):
    """Marker hits per storage; mdbox+crypt and sqlbox must have none,
    plain mdbox and maildir must have some (or the grep is wrong)."""
    found = {}
    for name, dc in dcs.items():
        files, hits = grep_tree(dc.home("alice"), PLAIN_MARKER)
        found[name] = {"files": files, "plaintext_hits": hits}
    for name in ("mdbox", "maildir"):
        if found[name]["plaintext_hits"] == 0:
            raise RuntimeError("marker not found in %s: grep broken" % name)
    for name in ("mdbox+crypt", "sqlbox"):
        if found[name]["plaintext_hits"] != 0:
            raise RuntimeError("%s stores plaintext: %s" % (name,
                                                            found[name]))
    return found


def dir_bytes(top):
    total = 0
    for dirpath, _, names in os.walk(top):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def rotation(rnd):
    """The storages in the order of round rnd (rotated each round)."""
    k = rnd % len(STORAGES)
    return STORAGES[k:] + STORAGES[:k]


# ------------------------------------------------------------- operations

def bench_append(dcs, pw, msgs, chunk):
    """The corpus into "bench", chunk by chunk, the storages in turn."""
    sessions = {n: Imap(dc.imap_port, pw[n]) for n, dc in dcs.items()}
    for imap in sessions.values():
        imap.run(b"CREATE bench")
    secs = dict.fromkeys(STORAGES, 0.0)
    for rnd, start in enumerate(range(0, len(msgs), chunk)):
        part = msgs[start:start + chunk]
        for name in rotation(rnd):
            secs[name] += multiappend(sessions[name], b"bench", part)
    for imap in sessions.values():
        imap.close()
    nbytes = sum(len(m) for m in msgs)
    return {n: {"secs": s, "msgs_per_s": len(msgs) / s,
                "mb_per_s": nbytes / s / 1e6} for n, s in secs.items()}


def timed_in_new_session(dc, pw, box, command):
    imap = Imap(dc.imap_port, pw)
    try:
        if box is not None:
            imap.run(b"SELECT " + box)
        return imap.run(command)
    finally:
        imap.close()


def bench_rounds(dcs, pw, rounds, box, command, check):
    """command in a new session per storage and round; check(name,
    reply) validates the reply."""
    got = {n: [] for n in STORAGES}
    for rnd in range(rounds):
        for name in rotation(rnd):
            secs, nbytes, nlit, untagged = timed_in_new_session(
                dcs[name], pw[name], box, command)
            check(name, nbytes, nlit, untagged)
            got[name].append(secs)
    res = {n: summarize(v) for n, v in got.items()}
    for r in res.values():
        r["literal_bytes"] = nlit       # checked to be the same for all
    return res


def summarize(secs):
    return {"runs": [round(s, 4) for s in secs],
            "first_s": secs[0], "median_s": statistics.median(secs),
            "min_s": min(secs)}


class SameAcross:
    """A check that every storage returns the same literal bytes."""

    def __init__(self, expect_lines=None):
        self.expect_lines = expect_lines
        self.seen = {}

    def __call__(self, name, nbytes, nlit, untagged):
        if self.expect_lines is not None and \
                len(untagged) != self.expect_lines:
            raise RuntimeError("%s: %d replies, want %d" % (
                name, len(untagged), self.expect_lines))
        self.seen.setdefault(nlit, set()).add(name)
        if len(self.seen) != 1:
            raise RuntimeError("literal bytes differ: %s" % self.seen)


class SameAnswer:
    """A check that every storage gives the same untagged lines, minus
    what may differ (INTERNALDATE: the time of the APPEND)."""

    def __init__(self):
        self.seen = {}

    def __call__(self, name, nbytes, nlit, untagged):
        key = tuple(re.sub(rb'INTERNALDATE "[^"]*"', b"", line)
                    for line in untagged)
        if not key or key == (b"* SEARCH\r\n",):
            raise RuntimeError("%s: empty answer" % name)
        self.seen.setdefault(key, set()).add(name)
        if len(self.seen) != 1:
            raise RuntimeError("answers differ: %s" % [
                sorted(v) for v in self.seen.values()])


FIRST_SYNC = (b"FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE "
              b"BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)] "
              b"ENVELOPE BODYSTRUCTURE)")
SEARCH_HEADERS = (b'UID SEARCH OR OR FROM "sybil" SUBJECT "church" '
                  b'HEADER List-Id "kernel-team"')
PARTIAL_OFFSET = 600 * KB


def search_check(expected):
    def check(name, nbytes, nlit, untagged):
        uids = []
        for line in untagged:
            if line.startswith(b"* SEARCH"):
                uids = [int(x) for x in line.split()[2:]]
        if sorted(uids) != expected:
            raise RuntimeError("%s: SEARCH found %s, want %s" % (
                name, uids, expected))
    return check


def build_big(dcs, pw, count, batch):
    """A mailbox "big" of count small messages per storage, batch
    messages per APPEND; the same messages everywhere."""
    rng = random.Random(SEED + 1)
    sessions = {n: Imap(dc.imap_port, pw[n]) for n, dc in dcs.items()}
    for imap in sessions.values():
        imap.run(b"CREATE big")
    secs = dict.fromkeys(STORAGES, 0.0)
    nbytes = 0
    for rnd, start in enumerate(range(0, count, batch)):
        part = [small_message(rng, i)
                for i in range(start, min(count, start + batch))]
        nbytes += sum(len(m) for m in part)
        for name in rotation(rnd):
            secs[name] += multiappend(sessions[name], b"big", part)
    for imap in sessions.values():
        imap.close()
    return {n: {"secs": s, "msgs_per_s": count / s,
                "avg_bytes": nbytes / count} for n, s in secs.items()}


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def bench_select_big(dcs, pw, count, rounds):
    """SELECT big in a new session: cold after dropping the page cache
    (one per storage), then warm rounds."""
    got = {n: {"cold": None, "warm": []} for n in STORAGES}

    def one(name):
        secs, _, _, untagged = timed_in_new_session(
            dcs[name], pw[name], None, b"SELECT big")
        if exists_of(untagged) != count:
            raise RuntimeError("%s: SELECT big says %d EXISTS" % (
                name, exists_of(untagged)))
        return secs

    for name in STORAGES:
        drop_caches()
        got[name]["cold"] = one(name)
    for rnd in range(rounds):
        for name in rotation(rnd):
            got[name]["warm"].append(one(name))
    return {n: {"cold_s": g["cold"],
                "warm_median_s": statistics.median(g["warm"]),
                "warm_runs": [round(s, 4) for s in g["warm"]]}
            for n, g in got.items()}


def lmtp_deliver_all(port, msgs):
    with smtplib.LMTP("127.0.0.1", port, timeout=IO_TIMEOUT_SECS) as lmtp:
        lmtp.ehlo("bench.example.org")
        for msg in msgs:
            refused = lmtp.sendmail("sender@example.org", [USER], msg)
            if refused:
                raise RuntimeError("LMTP refused: %r" % refused)
    return len(msgs)


def bench_lmtp(dcs, pw, msgs, chunk):
    """msgs delivered to every storage's INBOX over LMTP_CONNECTIONS
    parallel connections, chunk by chunk in turn; then the next SELECT
    INBOX (where sqlbox imports its spool)."""
    secs = dict.fromkeys(STORAGES, 0.0)
    with concurrent.futures.ThreadPoolExecutor(LMTP_CONNECTIONS) as pool:
        for rnd, start in enumerate(range(0, len(msgs), chunk)):
            part = msgs[start:start + chunk]
            shares = [part[k::LMTP_CONNECTIONS]
                      for k in range(LMTP_CONNECTIONS)]
            for name in rotation(rnd):
                t0 = time.perf_counter()
                futures = [pool.submit(lmtp_deliver_all,
                                       dcs[name].lmtp_port, share)
                           for share in shares if share]
                done = sum(f.result() for f in futures)
                secs[name] += time.perf_counter() - t0
                if done != len(part):
                    raise RuntimeError("LMTP delivered %d of %d" % (
                        done, len(part)))
    res = {}
    nbytes = sum(len(m) for m in msgs)
    for name in STORAGES:
        sel, _, _, untagged = timed_in_new_session(
            dcs[name], pw[name], None, b"SELECT INBOX")
        if exists_of(untagged) != len(msgs):
            raise RuntimeError("%s: INBOX has %d after LMTP, want %d" % (
                name, exists_of(untagged), len(msgs)))
        res[name] = {"secs": secs[name],
                     "msgs_per_s": len(msgs) / secs[name],
                     "mb_per_s": nbytes / secs[name] / 1e6,
                     "select_after_s": sel}
    return res


# ----------------------------------------------------------------- report

def versions():
    def dpkg(pkg):
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                              capture_output=True, text=True
                              ).stdout.strip() or "unknown"
    head = subprocess.run(["git", "-C", TOP_SRCDIR, "log", "-1",
                           "--format=%h", "--", "src/storage"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", TOP_SRCDIR, "status",
                            "--porcelain", "--", "src/storage"],
                           capture_output=True, text=True).stdout.strip()
    return {"sqlite": dpkg("libsqlite3-0"), "openssl": dpkg("libssl3"),
            "storage_commit": head or "unknown",
            "storage_dirty": bool(dirty)}


def fs_facts(path):
    res = subprocess.run(["df", "-T", path], capture_output=True, text=True)
    lines = res.stdout.strip().split("\n")
    return lines[-1].split()[1] if len(lines) > 1 else "unknown"


def fmt_s(secs):
    if secs < 0.01:
        return "%.1f ms" % (secs * 1000)
    if secs < 1:
        return "%.0f ms" % (secs * 1000)
    return "%.2f s" % secs


ROWS = (
    # key, label (formatted with the params), value, higher is better
    ("append", "APPEND (MULTIAPPEND, {append_chunk}/command), msgs/s",
     lambda r: r["append"]["msgs_per_s"], True),
    ("append_mb", "APPEND, MB/s",
     lambda r: r["append"]["mb_per_s"], True),
    ("hdr", "FETCH 1:* BODY.PEEK[HEADER], median",
     lambda r: r["hdr"]["median_s"], False),
    ("hdr1", "FETCH 1:* BODY.PEEK[HEADER], first round",
     lambda r: r["hdr"]["first_s"], False),
    ("firstsync", "first sync FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE "
     "BODY.PEEK[HEADER.FIELDS (5)] ENVELOPE BODYSTRUCTURE), median",
     lambda r: r["firstsync"]["median_s"], False),
    ("firstsync1", "first sync FETCH, first round",
     lambda r: r["firstsync"]["first_s"], False),
    ("env", "FETCH 1:* (ENVELOPE BODYSTRUCTURE RFC822.SIZE), median",
     lambda r: r["env"]["median_s"], False),
    ("partial", "UID FETCH {huge} x BODY.PEEK[]<600K.4096>, median",
     lambda r: r["partial"]["median_s"], False),
    ("body", "UID FETCH {body_sample} msgs BODY.PEEK[] ({body_mb} MB), "
     "median",
     lambda r: r["body"]["median_s"], False),
    ("search", "UID SEARCH BODY (1 %), median",
     lambda r: r["search"]["median_s"], False),
    ("searchhdr", "UID SEARCH FROM/SUBJECT/HEADER, median",
     lambda r: r["searchhdr"]["median_s"], False),
    ("bigappend", "APPEND small msgs ({big_batch}/command), msgs/s",
     lambda r: r["big_build"]["msgs_per_s"], True),
    ("selcold", "SELECT {big_k}k msgs, cold (drop_caches)",
     lambda r: r["select_big"]["cold_s"], False),
    ("selwarm", "SELECT {big_k}k msgs, warm, median",
     lambda r: r["select_big"]["warm_median_s"], False),
    ("lmtp", "LMTP, %d connections, msgs/s" % LMTP_CONNECTIONS,
     lambda r: r["lmtp"]["msgs_per_s"], True),
    ("lmtpsel", "SELECT INBOX after LMTP ({lmtp} new)",
     lambda r: r["lmtp"]["select_after_s"], False),
)


def per_storage(results, name):
    return {k: (v[name] if isinstance(v, dict) and name in v else v)
            for k, v in results.items()}


def report(facts, params, results, commands, heading):
    p = dict(params, big_k=params["big"] // 1000, body_mb="%.1f" % (
        results["body"]["sqlbox"].get("literal_bytes", 0) / 1e6))
    out = [heading, ""]
    out.append("Run of %s (%s%d messages + %d of 1 MB, %.1f MB; %d rounds; "
               "niceness %d); load average %s before, %s after; mail on "
               "%s." % (
                   results["date"], "--quick, " if params["quick"] else "",
                   params["messages"], params["huge"],
                   results["corpus_bytes"] / 1e6, params["rounds"],
                   params["nice"], results["load_before"],
                   results["load_after"], results["fs"]))
    out.append("")
    out.append("Machine: %d CPUs, %s, %.1f GiB RAM; Dovecot %s; SQLite %s; "
               "OpenSSL %s; src/storage at %s%s." % (
                   facts["nproc"], facts["cpu"], facts["mem_gib"],
                   facts["dovecot"], results["versions"]["sqlite"],
                   results["versions"]["openssl"],
                   results["versions"]["storage_commit"],
                   " plus uncommitted changes"
                   if results["versions"]["storage_dirty"] else ""))
    out.append("")
    out.append("```sh")
    out.extend(commands)
    out.append("```")
    out.append("")
    out.append("Ratios are sqlbox's speed relative to the reference "
               "(> 1: sqlbox faster).")
    out.append("")
    out.append("| operation | %s | %s |" % (" | ".join(STORAGES), " | ".join(
        "sqlbox vs " + ref for ref in REFERENCES)))
    out.append("|---|%s%s" % ("---|" * len(STORAGES),
                              "---|" * len(REFERENCES)))
    for key, label, get, higher in ROWS:
        vals = {n: get(per_storage(results, n)) for n in STORAGES}
        cells = [("%.0f" % v if v >= 100 else "%.1f" % v) if higher
                 else fmt_s(v) for v in (vals[n] for n in STORAGES)]
        ratios = []
        for ref in REFERENCES:
            r = (vals["sqlbox"] / vals[ref]) if higher else \
                (vals[ref] / vals["sqlbox"])
            ratios.append(("**%.2f**" if r < 1 else "%.2f") % r)
        out.append("| %s | %s | %s |" % (label.format(**p),
                                        " | ".join(cells),
                                        " | ".join(ratios)))
    out.append("")
    enc = results["encryption"]
    out.append("Plaintext marker (in every message) found in files under "
               "the home: %s." % "; ".join(
                   "%s %d of %d" % (n, enc[n]["plaintext_hits"],
                                    enc[n]["files"]) for n in STORAGES))
    out.append("Disk used by the home after all phases: %s." % "; ".join(
        "%s %.0f MB" % (n, results["disk_bytes"][n] / 1e6)
        for n in STORAGES))
    out.append("Ratios below 1 are in bold.")
    return "\n".join(out)


def write_readme(text):
    block = "%s\n%s\n%s" % (MARK_BEGIN, text, MARK_END)
    with open(README) as f:
        doc = f.read()
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


def sqlbox_extra_conf(args):
    """--sqlbox-fts: sqlbox with its FTS index (plugin { sqlbox_fts =
    yes }, opt-in so far); the other storages are unchanged."""
    if getattr(args, "sqlbox_fts", False):
        return "plugin {\n  sqlbox_fts = yes\n}\n"
    return ""


# ------------------------------------------------------------------- main

def run(params, args):
    msgs, planted = make_corpus(params["messages"], params["huge"])
    # UIDs in "bench" follow the corpus order from 1
    expected = sorted(i + 1 for i in planted)
    results = {"date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"),
               "load_before": lb.read_loadavg(),
               "corpus_bytes": sum(len(m) for m in msgs),
               "versions": versions()}
    print("corpus: %d messages, %.1f MB, search word in %d" % (
        len(msgs), results["corpus_bytes"] / 1e6, len(expected)))
    wd = Workdir("dlp-storage-bench-")
    fake = None
    dcs = {}
    try:
        results["fs"] = fs_facts(wd.path)
        fake = LaunchpadFake(wd.path).start()
        for name in STORAGES:
            d = os.path.join(wd.path, name.replace("+", "-"))
            os.makedirs(d)
            extra = mail_crypt_conf(d) if name == "mdbox+crypt" else ""
            if name == "sqlbox":
                extra = sqlbox_extra_conf(args)
            dcs[name] = Dovecot(d, fake.api_url,
                                mail_location=LOCATIONS[name],
                                extra_conf=extra).start()
            lb.renice(dcs[name], fake, args.nice)
        check_same_settings(dcs)
        pw = {n: dc.generate_password(USER, label="bench")
              for n, dc in dcs.items()}

        def step(what, fn, *a):
            t0 = time.monotonic()
            res = results[what] = fn(*a)
            print("%-10s %s  (%.0f s)" % (what, json.dumps(
                {n: {k: round(v, 4) for k, v in r.items()
                     if isinstance(v, float)} for n, r in res.items()}),
                time.monotonic() - t0))
            sys.stdout.flush()

        step("append", bench_append, dcs, pw, msgs, params["append_chunk"])
        results["encryption"] = check_encryption(dcs)
        step("hdr", bench_rounds, dcs, pw, params["rounds"], b"bench",
             b"FETCH 1:* (BODY.PEEK[HEADER])", SameAcross(len(msgs)))
        step("firstsync", bench_rounds, dcs, pw, params["rounds"], b"bench",
             FIRST_SYNC, SameAnswer())
        step("env", bench_rounds, dcs, pw, params["rounds"], b"bench",
             b"FETCH 1:* (ENVELOPE BODYSTRUCTURE RFC822.SIZE)",
             SameAnswer())
        huge_uids = [i + 1 for i, m in enumerate(msgs)
                     if len(m) > PARTIAL_OFFSET + 4096]
        step("partial", bench_rounds, dcs, pw, params["rounds"], b"bench",
             b"UID FETCH %s (BODY.PEEK[]<%d.4096>)" % (",".join(
                 str(u) for u in huge_uids).encode(), PARTIAL_OFFSET),
             SameAcross(len(huge_uids)))
        sample = sorted(random.Random(SEED + 2).sample(
            range(1, len(msgs) + 1), min(len(msgs), params["body_sample"])))
        step("body", bench_rounds, dcs, pw, params["rounds"], b"bench",
             b"UID FETCH %s (BODY.PEEK[])" % ",".join(
                 str(u) for u in sample).encode(), SameAcross(len(sample)))
        step("search", bench_rounds, dcs, pw, params["rounds"], b"bench",
             b"UID SEARCH BODY " + SEARCH_WORD.encode(),
             search_check(expected))
        step("searchhdr", bench_rounds, dcs, pw, params["rounds"],
             b"bench", SEARCH_HEADERS, SameAnswer())
        step("big_build", build_big, dcs, pw, params["big"],
             params["big_batch"])
        step("select_big", bench_select_big, dcs, pw, params["big"],
             params["rounds"])
        step("lmtp", bench_lmtp, dcs, pw, msgs[:params["lmtp"]],
             params["append_chunk"])
        results["disk_bytes"] = {n: dir_bytes(dc.home("alice"))
                                 for n, dc in dcs.items()}
        check_logs(dcs)
        results["load_after"] = lb.read_loadavg()
    except Exception:
        for name, dc in dcs.items():
            sys.stderr.write("---- %s log tail ----\n%s\n" % (
                name, dc.log_text()[-3000:]))
        raise
    finally:
        for dc in dcs.values():
            dc.stop()
        if fake is not None:
            fake.stop()
        wd.cleanup()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="%(messages)d messages, %(big)d-message "
                        "mailbox, %(rounds)d rounds" % QUICK)
    parser.add_argument("--no-readme", action="store_true",
                        help="print the report only")
    parser.add_argument("--json", help="also write raw results here")
    parser.add_argument("--nice", type=int, default=NICENESS,
                        help="niceness of Dovecot, the fake and the "
                        "client (default %(default)s; 0 leaves it)")
    parser.add_argument("--wait-idle", type=int, default=0, metavar="SECS",
                        help="first wait up to SECS for an idle machine")
    parser.add_argument("--big-batch", type=int, metavar="N",
                        help="messages per APPEND when building the big "
                        "mailbox (default %d)" % FULL["big_batch"])
    parser.add_argument("--sqlbox-fts", action="store_true",
                        help="sqlbox with plugin { sqlbox_fts = yes }")
    parser.add_argument("--report-from", nargs="+", metavar="JSON",
                        help="measure nothing: write the README block "
                        "from runs saved with --json")
    args = parser.parse_args()
    if args.report_from:
        texts = []
        for i, path in enumerate(args.report_from, 1):
            with open(path) as f:
                saved = json.load(f)
            texts.append(report(saved["facts"], saved["params"],
                                saved["results"], saved["commands"],
                                "### Run %d" % i))
        text = "\n\n".join(texts)
        print(text)
        write_readme(text)
        return 0
    if os.geteuid() != 0:
        sys.exit("storage-bench.py: run as root (Dovecot in a mount "
                 "namespace, drop_caches)")
    params = dict(QUICK if args.quick else FULL, quick=args.quick,
                  nice=args.nice)
    if args.big_batch:
        params["big_batch"] = args.big_batch
    facts = lb.machine_facts()
    if args.wait_idle > 0:
        lb.wait_idle(args.wait_idle)
    os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    results = run(params, args)
    commands = [
        "make -C $DLP_BUILD_DIR   # configured as in tests/run",
        "DLP_BUILD_DIR=$DLP_BUILD_DIR /usr/bin/python3 bench/storage-bench.py"
        + "".join(" " + a for a in lb.shown_args(sys.argv[1:])),
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


if __name__ == "__main__":
    sys.exit(main())
