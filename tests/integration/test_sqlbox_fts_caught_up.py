"""Issue 15: a SEARCH of a folder whose full-text index is caught up and
which did not change since skips the catch-up's write transaction (the
record in fts_caught_up still names the folder's UIDVALIDITY, UIDNEXT and
HIGHESTMODSEQ).  Every change that may leave mail of the folder
unindexed makes the next SEARCH catch up again: another session's
APPEND, a COPY of mail never indexed, an LMTP delivery; an EXPUNGE too.
Saved mail is indexed only by the catch-up here (sqlbox_fts_index_delay
of an hour), so a skipped catch-up would miss it.
"""

import re

from conftest import World
from test_sqlbox import USER, imap_login, lmtp_deliver, ok, select_count
from test_sqlbox_fts import (DELAY_CONF, WORDS, candidates_logged,
                             dbtool_sql, logout_and_wait, mime_text,
                             search_candidates, uid_search_unindexed)

SYBIL = "Sybil <sybil@example.org>"


def skips_logged(w, box):
    """The modseqs of the catch-ups skipped for box so far."""
    return [int(n) for n in re.findall(
        r"Mailbox %s: sqlbox fts: index of folder caught up at modseq"
        r" (\d+)" % box, w.dc.log_text())]


def sybil_search(w, imap, box):
    """FROM sybil: the UIDs, whether its catch-up was skipped, and the
    unindexed search's UIDs.  The skip line precedes the candidate line
    in the same process's log, so once the candidates are logged, a
    skip of this search is too."""
    skips = len(skips_logged(w, box))
    uids, _ = search_candidates(w, imap, box, "FROM", "sybil")
    skipped = len(skips_logged(w, box)) > skips
    return uids, skipped, uid_search_unindexed(imap, "FROM", "sybil")


def mails(n, sybil=()):
    return [mime_text("notes %s" % WORDS[i], "the bells ring %d" % i,
                      sender=SYBIL if i in sybil else
                      "Bob <bob@example.org>") for i in range(n)]


def caught_up_row(w, password, box):
    return dbtool_sql(w.dc, password, "SELECT c.uidnext || '/' ||"
                      " m.uidnext FROM fts_caught_up c JOIN mailbox m"
                      " ON m.id = c.mailbox_id WHERE m.name = '%s'" % box)


def body_indexed(w, password, box, uid):
    return dbtool_sql(w.dc, password, "SELECT count(*) FROM fts_doc d"
                      " JOIN mail m ON m.body_id = d.body_id JOIN mailbox b"
                      " ON b.id = m.mailbox_id WHERE b.name = '%s'"
                      " AND m.uid = %d" % (box, uid)) == ["1"]


def test_unchanged_folder_skips_catch_up():
    """The first SEARCH after the saves catches up and records it; a
    SEARCH of a new session on the unchanged folder skips the catch-up
    (the index still answers).  The record goes with its folder."""
    w = World(mail_location="sqlbox:~/mail", extra_conf=DELAY_CONF % "1h")
    try:
        password = w.dc.generate_password(USER)
        imap = imap_login(w.dc, password)
        ok(imap.create("Skip"))
        for m in mails(12, sybil=(2, 6)):
            ok(imap.append("Skip", None, None, m))
        select_count(imap, "Skip")
        assert sybil_search(w, imap, "Skip") == ([3, 7], False, [3, 7])
        assert caught_up_row(w, password, "Skip") == ["13/13"]
        logout_and_wait(w, password, imap)

        imap = imap_login(w.dc, password)
        select_count(imap, "Skip")
        assert sybil_search(w, imap, "Skip") == ([3, 7], True, [3, 7])
        assert sybil_search(w, imap, "Skip") == ([3, 7], True, [3, 7])
        # the index answered: one candidate
        assert search_candidates(w, imap, "Skip", "SUBJECT",
                                 "golf") == ([7], 1)
        imap.close()
        ok(imap.delete("Skip"))
        assert dbtool_sql(w.dc, password, "SELECT count(*)"
                          " FROM fts_caught_up") == ["0"]
        imap.logout()
        assert " Error: " not in w.dc.log_text()
    finally:
        w.close()


def test_changes_between_searches_answered():
    """Between two SEARCHes of INBOX: another session's APPEND, a COPY
    from a folder whose mail was never indexed, an EXPUNGE by another
    session, an LMTP delivery.  Each later SEARCH catches up (no skip)
    and answers as the unindexed search; the one after it skips again."""
    w = World(mail_location="sqlbox:~/mail", extra_conf=DELAY_CONF % "1h")
    try:
        password = w.dc.generate_password(USER)
        imap = imap_login(w.dc, password)
        for m in mails(8, sybil=(1, 4)):
            ok(imap.append("INBOX", None, None, m))
        select_count(imap)
        assert sybil_search(w, imap, "INBOX") == ([2, 5], False, [2, 5])
        assert sybil_search(w, imap, "INBOX") == ([2, 5], True, [2, 5])

        # (a) another session's APPEND, not indexed (it stays logged in)
        other = imap_login(w.dc, password)
        ok(other.append("INBOX", None, None,
                        mime_text("appended", "more bells", sender=SYBIL)))
        ok(imap.noop())
        assert not body_indexed(w, password, "INBOX", 9)
        assert sybil_search(w, imap, "INBOX") == ([2, 5, 9], False,
                                                  [2, 5, 9])
        assert sybil_search(w, imap, "INBOX") == ([2, 5, 9], True,
                                                  [2, 5, 9])

        # (b) a COPY of mail never indexed (saved by the other session,
        # whose pending list waits for the hour)
        ok(other.create("Unindexed"))
        for m in mails(3, sybil=(1,)):
            ok(other.append("Unindexed", None, None, m))
        select_count(imap, "Unindexed")
        assert not body_indexed(w, password, "Unindexed", 2)
        ok(imap.uid("COPY", "1:3", "INBOX"))
        select_count(imap)
        assert not body_indexed(w, password, "INBOX", 11)
        assert sybil_search(w, imap, "INBOX") == ([2, 5, 9, 11], False,
                                                  [2, 5, 9, 11])
        assert sybil_search(w, imap, "INBOX") == ([2, 5, 9, 11], True,
                                                  [2, 5, 9, 11])

        # (c) another session's EXPUNGE
        select_count(other)
        ok(other.uid("STORE", "5", "+FLAGS", "(\\Deleted)"))
        ok(other.expunge())
        ok(imap.noop())
        assert sybil_search(w, imap, "INBOX") == ([2, 9, 11], False,
                                                  [2, 9, 11])
        assert sybil_search(w, imap, "INBOX") == ([2, 9, 11], True,
                                                  [2, 9, 11])

        # (d) an LMTP delivery, imported by this session's sync, its
        # indexing deferred
        assert lmtp_deliver(w.dc, USER, mime_text(
            "delivered", "bells over lmtp", sender=SYBIL))[0] == 250
        ok(imap.noop())
        assert not body_indexed(w, password, "INBOX", 13)
        assert sybil_search(w, imap, "INBOX") == ([2, 9, 11, 13], False,
                                                  [2, 9, 11, 13])
        assert sybil_search(w, imap, "INBOX") == ([2, 9, 11, 13], True,
                                                  [2, 9, 11, 13])
        other.logout()
        imap.logout()
        assert candidates_logged(w, "INBOX")
        assert " Error: " not in w.dc.log_text()
    finally:
        w.close()
