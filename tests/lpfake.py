#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""A loopback server shaped like Launchpad's web service 1.0, with faults.

    lpfake.py --port 0 --port-file F --fixtures tests/fixtures/launchpad.json
              [--api-prefix /1.0] [--generate-team NAME:COUNT:SEED ...]

Binds 127.0.0.1 only, writes the bound port to F once listening and runs
until SIGTERM/SIGINT.  Python 3 standard library only.

API (field shapes copied from shared/vectors/launchpad/):
  GET {prefix}/~name               person or team; ETag = http_etag,
                                   If-None-Match -> 304; 404 unknown,
                                   410 suspended
  GET {prefix}/~team/participants  ?ws.size=N (default 50, >300 -> 400)
                                   &ws.start=S[&memo=M]; the transitive
                                   members, sub-teams included, by name
Control (outside the prefix, JSON bodies):
  POST /_fake/fault    {"path": regex|null, "mode": M, "count": N|null,
                        "delay": seconds}
  POST /_fake/reset    clears faults and the request log
  GET  /_fake/held?count=N&wait=S  waits until N requests (default 1) are
                       held by the fault "hold" (at most S seconds, a
                       failure guard), answers {"held": n}
  POST /_fake/release  lets every held request go on, answered normally
  GET  /_fake/requests [{"method","path","query","if_none_match",
                         "user_agent"}, ...]
  POST /_fake/person   {"name": n, fields... | "delete": true,
                        "suspended": bool}
  POST /_fake/team     {"team": t, "members": [...]}
  GET  /codeofconduct, /~name, /+login   tiny HTML pages standing in for
                       Launchpad's own (the web page links there to fix a
                       denial); their forms do the fix:
  POST /codeofconduct/+sign   form name=N: N has signed the Code of Conduct
  POST /~team/+join           form name=N: N is a member of ~team now
  POST /_fake/echo     any body: answers 200 text/plain "content-type: T\n
                       body: B\n" (for liblaunchpad's POST); logged, and
                       the faults 500 503 hang redirect-onhost huge apply
Fault modes: 500 503 404 410 slow hang truncated nonjson wrongtypes
missing-field huge redirect-offhost redirect-onhost next-offhost next-loop
hold (waits for /_fake/release, then answers as without a fault).
"""

import argparse
import hashlib
import json
import os
import random
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from html import escape
from urllib.parse import parse_qs, urlsplit

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 300
HANG_DEFAULT_SECS = 120
HANG_MAX_SECS = 300
SLOW_DEFAULT_SECS = 1
HUGE_BYTES = 10 * 1024 * 1024
# Documentation address (RFC 5737): never routed, never contacted.
OFFHOST = "http://203.0.113.1"
FAULT_MODES = {
    "500", "503", "404", "410", "slow", "hang", "truncated", "nonjson",
    "wrongtypes", "missing-field", "huge", "redirect-offhost",
    "redirect-onhost", "next-offhost", "next-loop", "hold",
}
# Person links a real 1.0 document carries (launchpadlib-rs_person.json).
PERSON_COLLECTIONS = (
    "recipes", "languages", "sshkeys", "gpg_keys", "wiki_names",
    "irc_nicknames", "jabber_ids", "social_accounts",
    "memberships_details", "open_membership_invitations",
    "confirmed_email_addresses", "ppas", "sub_teams", "super_teams",
    "members", "admins", "participants", "deactivated_members",
    "expired_members", "invited_members", "members_details",
    "proposed_members", "participations", "indirect_participations",
)


class Launchpad:
    """People, teams, faults and the request log, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.people = {}
        self.suspended = set()
        self.teams = {}
        self.faults = []
        self.requests = []
        self.wake = threading.Event()
        # the fault "hold": requests waiting for /_fake/release
        self.held = 0
        self.held_cond = threading.Condition(self.lock)
        self.release = threading.Event()

    def add_person(self, name, fields, is_team=False):
        person = self.people.setdefault(name, {
            "display_name": name, "is_valid": True,
            "is_ubuntu_coc_signer": not is_team, "is_team": is_team,
        })
        person.update(fields)
        if is_team:
            person["is_team"] = True

    def load(self, fixtures):
        for name, fields in fixtures.get("people", {}).items():
            self.add_person(name, fields)
        for team, spec in fixtures.get("teams", {}).items():
            self.set_team(team, spec.get("members", []))
        self.suspended.update(fixtures.get("suspended", []))

    def set_team(self, team, members):
        self.add_person(team, {}, is_team=True)
        self.teams[team] = list(members)
        for member in members:
            if member not in self.people:
                self.add_person(member, {})

    def generate_team(self, spec):
        team, count, seed = spec.split(":")
        rng = random.Random(int(seed))
        letters = "abcdefghijklmnopqrstuvwxyz"
        members = []
        for i in range(int(count)):
            tag = "".join(rng.choice(letters) for _ in range(6))
            members.append("g%s-%s%05d" % (seed, tag, i))
        for name in members:
            self.add_person(name, {"display_name": name.upper()})
        self.set_team(team, self.teams.get(team, []) + members)

    def participants(self, team):
        seen, todo = set(), list(self.teams.get(team, []))
        while todo:
            name = todo.pop()
            if name in seen or name == team:
                continue
            seen.add(name)
            todo.extend(self.teams.get(name, []))
        return sorted(n for n in seen if n in self.people)

    def take_fault(self, path):
        for fault in self.faults:
            if fault["count"] is not None and fault["count"] <= 0:
                continue
            if fault["re"] is not None and not fault["re"].search(path):
                continue
            if fault.get("exempt") == path:
                # the request that follows an on-host redirect
                fault["exempt"] = None
                continue
            if fault["count"] is not None:
                fault["count"] -= 1
            return fault
        return None


def etag_of(name, person):
    canon = json.dumps([name, person], sort_keys=True).encode()
    return '"%s-%s"' % (hashlib.sha1(canon).hexdigest(),
                        hashlib.sha1(name.encode()).hexdigest())


def person_doc(base, name, person):
    link = "%s/~%s" % (base, name)
    doc = {
        "self_link": link,
        "web_link": "https://launchpad.net/~%s" % name,
        "resource_type_link": "%s/#%s" % (
            base, "team" if person["is_team"] else "person"),
    }
    for coll in PERSON_COLLECTIONS:
        doc["%s_collection_link" % coll] = "%s/%s" % (link, coll)
    doc.update({
        "time_zone": "UTC", "private": False,
        "is_valid": person["is_valid"], "is_team": person["is_team"],
        "account_status": "Active", "visibility": "Public",
        "name": name, "display_name": person["display_name"],
        "logo_link": link + "/logo", "mugshot_link": link + "/mugshot",
        "is_probationary": False, "id": "tag:launchpad.net:2008:redacted",
        "karma": 0, "homepage_content": None, "description": "",
        "hide_email_addresses": True,
        "date_created": "2005-06-15T02:17:43.115113+00:00",
        "is_ubuntu_coc_signer": person["is_ubuntu_coc_signer"],
        "team_owner_link": None, "preferred_email_address_link": None,
        "archive_link": None,
        "mailing_list_auto_subscribe_policy": "Ask me when I join a team",
        "http_etag": etag_of(name, person),
    })
    return doc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: no 40 ms Nagle stall
    disable_nagle_algorithm = True
    server_version = "lpfake/1.0"

    def log_message(self, fmt, *args):
        pass

    # ---- plumbing ----

    def send(self, status, body=b"", ctype="application/json",
             headers=None, length=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if status != 304:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length",
                         str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            for off in range(0, len(body), 65536):
                self.wfile.write(body[off:off + 65536])
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_json(self, status, obj, headers=None):
        self.send(status, json.dumps(obj), headers=headers)

    def host_base(self):
        host = self.headers.get("Host") or "127.0.0.1:%d" % \
            self.server.server_address[1]
        return "http://%s" % host

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        return json.loads(body or b"{}")

    # ---- control API ----

    def echo(self):
        lp = self.server.lp
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        with lp.lock:
            lp.requests.append({
                "method": "POST", "path": "/_fake/echo", "query": "",
                "if_none_match": self.headers.get("If-None-Match"),
                "user_agent": self.headers.get("User-Agent"),
            })
            fault = lp.take_fault("/_fake/echo")
            wake = lp.wake
        mode = fault["mode"] if fault is not None else None
        if mode in ("500", "503"):
            self.send(int(mode), "not now", "text/plain")
        elif mode == "hang":
            wake.wait(min(float(fault.get("delay") or HANG_DEFAULT_SECS),
                          HANG_MAX_SECS))
            self.close_connection = True
        elif mode == "redirect-onhost":
            self.send(301, "", "text/plain", headers={
                "Location": self.host_base() + self.path})
        elif mode == "huge":
            self.send(200, "x" * HUGE_BYTES, "text/plain")
        else:
            self.send(200, "content-type: %s\nbody: %s\n" % (
                self.headers.get("Content-Type"),
                body.decode("ascii", "replace")), "text/plain")

    # ---- Launchpad's human pages, as far as a denial's fix needs ----

    def page(self, title, body):
        self.send(200, "<!DOCTYPE html><html><head><title>%s - Launchpad "
                  "(fake)</title></head><body><h1>%s</h1>%s</body></html>"
                  % (escape(title), escape(title), body),
                  "text/html; charset=utf-8")

    def form_page(self, title, text, action, button):
        self.page(title, "<p>%s</p><form method=\"post\" action=\"%s\">"
                  "<label>Launchpad name <input name=\"name\" "
                  "id=\"name\"></label> <button type=\"submit\">%s"
                  "</button></form>" % (escape(text), escape(action),
                                       escape(button)))

    def human_get(self, path):
        """The pages the web daemon links to; False if path is none."""
        lp = self.server.lp
        if path == "/codeofconduct":
            self.form_page("Ubuntu Code of Conduct", "Sign the Ubuntu Code "
                           "of Conduct.", "/codeofconduct/+sign", "Sign")
            return True
        if path == "/+login":
            self.page("Log in", "<p>Logged in to Launchpad.</p>")
            return True
        m = re.fullmatch(r"/~([a-z0-9][a-z0-9+.-]*)", path)
        if m is None:
            return False
        with lp.lock:
            person = lp.people.get(m.group(1))
        if person is None:
            self.send(404, "No such person", "text/plain")
        elif person.get("is_team"):
            self.form_page("~" + m.group(1), "This team is open: anyone "
                           "can join.", "/~%s/+join" % m.group(1), "Join")
        else:
            self.page("~" + m.group(1), "<p>Account active: %s</p>" %
                      person.get("is_valid"))
        return True

    def human_post(self, path):
        lp = self.server.lp
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs((self.rfile.read(length) if length > 0 else b"")
                        .decode())
        name = form.get("name", [""])[0]
        m = re.fullmatch(r"/~([a-z0-9][a-z0-9+.-]*)/\+join", path)
        with lp.lock:
            if name not in lp.people:
                self.send(404, "No such person", "text/plain")
                return
            if path == "/codeofconduct/+sign":
                lp.people[name]["is_ubuntu_coc_signer"] = True
                done = "%s signed the Ubuntu Code of Conduct." % name
            elif m is not None and m.group(1) in lp.teams:
                if name not in lp.teams[m.group(1)]:
                    lp.teams[m.group(1)].append(name)
                done = "%s is a member of ~%s now." % (name, m.group(1))
            else:
                self.send(404, "No such team", "text/plain")
                return
        self.page("Done", "<p id=\"done\">%s</p>" % escape(done))

    def do_POST(self):
        lp = self.server.lp
        path = urlsplit(self.path).path
        if path == "/_fake/echo":
            self.echo()
            return
        if path == "/codeofconduct/+sign" or \
                re.fullmatch(r"/~[a-z0-9][a-z0-9+.-]*/\+join", path):
            self.human_post(path)
            return
        try:
            body = self.read_json()
        except ValueError:
            self.send_json(400, {"error": "body is not JSON"})
            return
        with lp.lock:
            if path == "/_fake/fault":
                mode = str(body.get("mode"))
                if mode not in FAULT_MODES:
                    self.send_json(400, {"error": "unknown mode " + mode})
                    return
                regex = body.get("path")
                lp.faults.append({
                    "re": re.compile(regex) if regex is not None else None,
                    "mode": mode, "count": body.get("count"),
                    "delay": body.get("delay"), "exempt": None,
                })
            elif path == "/_fake/release":
                lp.release.set()
                lp.release = threading.Event()
                lp.held = 0
            elif path == "/_fake/reset":
                lp.release.set()
                lp.release = threading.Event()
                lp.held = 0
                lp.faults.clear()
                lp.requests.clear()
                lp.wake.set()
                lp.wake = threading.Event()
            elif path == "/_fake/person":
                name = body.pop("name")
                if body.pop("delete", False):
                    lp.people.pop(name, None)
                    lp.teams.pop(name, None)
                    lp.suspended.discard(name)
                else:
                    suspended = body.pop("suspended", None)
                    lp.add_person(name, body)
                    if suspended is True:
                        lp.suspended.add(name)
                    elif suspended is False:
                        lp.suspended.discard(name)
            elif path == "/_fake/team":
                lp.set_team(body["team"], body.get("members", []))
            else:
                self.send_json(404, {"error": "no such control"})
                return
        self.send_json(200, {"ok": True})

    # ---- the web service ----

    def do_GET(self):
        lp = self.server.lp
        url = urlsplit(self.path)
        if url.path == "/_fake/requests":
            with lp.lock:
                self.send_json(200, list(lp.requests))
            return
        if url.path == "/_fake/held":
            query = parse_qs(url.query)
            want = int(query.get("count", ["1"])[0])
            wait = min(float(query.get("wait", ["0"])[0]), HANG_MAX_SECS)
            with lp.lock:
                lp.held_cond.wait_for(lambda: lp.held >= want, wait)
                self.send_json(200, {"held": lp.held})
            return
        prefix = self.server.api_prefix
        if not url.path.startswith(prefix + "/"):
            if not self.human_get(url.path):
                self.send(404, "Not found", "text/plain")
            return
        with lp.lock:
            lp.requests.append({
                "method": "GET", "path": url.path, "query": url.query,
                "if_none_match": self.headers.get("If-None-Match"),
                "user_agent": self.headers.get("User-Agent"),
            })
            fault = lp.take_fault(url.path)
            if fault is not None:
                fault = dict(fault)
                if fault["mode"] == "redirect-onhost":
                    for f in lp.faults:
                        if f["mode"] == "redirect-onhost":
                            f["exempt"] = url.path
            wake = lp.wake
        mode = fault["mode"] if fault is not None else None
        delay = fault.get("delay") if fault is not None else None
        if mode in ("500", "503"):
            self.send(int(mode), "Launchpad is having a moment",
                      "text/plain")
            return
        if mode == "hold":
            with lp.lock:
                lp.held += 1
                release = lp.release
                lp.held_cond.notify_all()
            release.wait(HANG_MAX_SECS)
            mode = None
        if mode == "hang":
            wake.wait(min(float(delay or HANG_DEFAULT_SECS), HANG_MAX_SECS))
            self.close_connection = True
            return
        if mode == "slow":
            wake.wait(min(float(delay or SLOW_DEFAULT_SECS), HANG_MAX_SECS))
        if mode == "redirect-offhost":
            self.send(301, "", "text/plain", headers={
                "Location": OFFHOST + self.path})
            return
        if mode == "redirect-onhost":
            self.send(301, "", "text/plain", headers={
                "Location": self.host_base() + self.path})
            return
        if mode == "nonjson":
            self.send(200, "<html><body>Launchpad is down for "
                      "maintenance</body></html>", "text/html")
            return
        base = self.host_base() + prefix
        rest = url.path[len(prefix):]
        m = re.fullmatch(r"/~([^/]+)(/participants)?", rest)
        if m is None:
            self.send(404, "Object: <lp.systemhomes.WebServiceApplication "
                      "object at 0x7f92e7ae4730>, name: %r" % rest[1:],
                      "text/plain")
            return
        name, participants = m.group(1), m.group(2)
        if mode in ("404", "410"):
            self.send(int(mode), "Object: <lp.systemhomes."
                      "WebServiceApplication object at 0x7f92e7ae4730>, "
                      "name: %r" % name, "text/plain")
            return
        with lp.lock:
            person = dict(lp.people[name]) if name in lp.people else None
            suspended = name in lp.suspended
            members = lp.participants(name) if participants else None
            docs = None
            if members is not None:
                docs = {n: dict(lp.people[n]) for n in members}
        if person is None:
            self.send(404, "Object: <lp.systemhomes.WebServiceApplication "
                      "object at 0x7f92e7ae4730>, name: %r" % ("~" + name),
                      "text/plain")
            return
        if suspended and not participants:
            self.send(410, "This account has been suspended.",
                      "text/plain")
            return
        if participants:
            self.serve_participants(base, name, url.query, docs, mode)
        else:
            self.serve_person(base, name, person, mode, delay)

    def serve_body(self, obj, mode, headers=None):
        body = json.dumps(obj).encode()
        if mode == "truncated":
            self.send(200, body[:len(body) // 2], headers=headers,
                      length=len(body) + 1000)
            self.close_connection = True
            return
        self.send(200, body, headers=headers)

    def serve_person(self, base, name, person, mode, delay):
        doc = person_doc(base, name, person)
        etag = doc["http_etag"]
        if mode in (None, "slow") and \
                self.headers.get("If-None-Match") == etag:
            self.send(304, headers={"ETag": etag})
            return
        if mode == "wrongtypes":
            doc["is_valid"] = "yes"
        elif mode == "missing-field":
            del doc["is_ubuntu_coc_signer"]
        elif mode == "huge":
            doc["description"] = "x" * HUGE_BYTES
        self.serve_body(doc, mode, headers={"ETag": etag})

    def serve_participants(self, base, team, query, docs, mode):
        args = parse_qs(query)
        try:
            size = int(args.get("ws.size", [DEFAULT_PAGE_SIZE])[0])
            start = int(args.get("ws.start", [0])[0])
        except ValueError:
            self.send(400, "ws.size and ws.start must be integers",
                      "text/plain")
            return
        if size > MAX_PAGE_SIZE or size <= 0 or start < 0:
            self.send(400, "Maximum for \"ws.size\" parameter is %d." %
                      MAX_PAGE_SIZE, "text/plain")
            return
        names = sorted(docs)
        link = "%s/~%s/participants" % (base, team)
        page = {
            "total_size": len(names),
            "start": start,
            "entries": [person_doc(base, n, docs[n])
                        for n in names[start:start + size]],
            "resource_type_link": "%s/#person-page-resource" % base,
        }
        if start + size < len(names):
            page["next_collection_link"] = \
                "%s?memo=%d&ws.size=%d&ws.start=%d" % (
                    link, start + size, size, start + size)
        if start > 0:
            page["prev_collection_link"] = \
                "%s?direction=backwards&memo=%d&ws.size=%d&ws.start=%d" % (
                    link, start, size, max(start - size, 0))
        if mode == "next-offhost":
            page["next_collection_link"] = \
                "%s%s?memo=%d&ws.size=%d&ws.start=%d" % (
                    OFFHOST, urlsplit(link).path, start + size, size,
                    start + size)
        elif mode == "next-loop":
            page["next_collection_link"] = "%s?%s" % (link, query)
        elif mode == "wrongtypes":
            page["entries"] = {str(i): e for i, e in
                               enumerate(page["entries"])}
        elif mode == "missing-field":
            del page["total_size"]
        elif mode == "huge":
            page["padding"] = "x" * HUGE_BYTES
        self.serve_body(page, mode)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--fixtures")
    parser.add_argument("--api-prefix", default="/1.0")
    parser.add_argument("--generate-team", action="append", default=[],
                        metavar="NAME:COUNT:SEED")
    args = parser.parse_args()

    lp = Launchpad()
    if args.fixtures:
        with open(args.fixtures, encoding="utf-8") as f:
            lp.load(json.load(f))
    for spec in args.generate_team:
        lp.generate_team(spec)

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.lp = lp
    server.api_prefix = args.api_prefix.rstrip("/")
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(tmp, args.port_file)

    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
