#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""A loopback OpenID 2.0 provider shaped like Ubuntu One, with faults.

    openidfake.py --port 0 --port-file F

Binds 127.0.0.1 only, writes the bound port to F once listening and runs
until SIGTERM/SIGINT.  Python 3 standard library only.

  GET  /+openid?openid.mode=checkid_setup&...   signs in the current test
        contributor at once (no login form) and redirects the browser to
        openid.return_to with a positive assertion: SReg nickname, a fresh
        response_nonce, an HMAC-SHA256 signature over openid.signed.
  POST /+openid  openid.mode=check_authentication   recomputes the
        signature: "is_valid:true" or "is_valid:false" (key-value form).
Control (JSON bodies):
  POST /_fake/next   {"nickname": "alice", "mode": M}  used by every
                     following sign-in until changed
  GET  /_fake/stats  {"checkid": n, "check_authentication": n}
  POST /_fake/hold   {"on": true}  every check_authentication waits for
                     /_fake/release before answering
  GET  /_fake/held?count=N&wait=S  waits until N of them are held (at most
                     S seconds), answers {"held": n}
  POST /_fake/release  lets them answer; hold is off again
Modes (misbehaviour on demand):
  ok                 a correct assertion
  bad-signature      check_authentication answers is_valid:false
  replay-nonce       reuses the previous assertion's response_nonce
  foreign-return-to  signs a return_to of another site (sent to ours)
  foreign-op         signs an op_endpoint of another host
  offhost-claimed-id a claimed_id/identity on another host
  no-nickname        no SReg fields at all
  bad-nickname       a nickname that is not a Launchpad name
  unsigned-nickname  the nickname is sent but left out of openid.signed
  no-email           no SReg email (every other mode sends a signed
                     "<nickname>.personal@example.net")
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

OPENID_NS = "http://specs.openid.net/auth/2.0"
SREG_NS = "http://openid.net/extensions/sreg/1.1"
# Documentation address (RFC 5737): never routed, never contacted.
OFFHOST = "http://203.0.113.1"
MODES = {"ok", "bad-signature", "replay-nonce", "foreign-return-to",
         "foreign-op", "offhost-claimed-id", "no-nickname", "bad-nickname",
         "unsigned-nickname", "no-email"}
MAX_BODY = 64 * 1024
# a held check_authentication waits at most this (a failure guard)
HOLD_MAX_SECS = 300


class Provider:
    def __init__(self):
        self.lock = threading.Lock()
        self.secret = secrets.token_bytes(32)
        self.nickname = "alice"
        self.mode = "ok"
        self.last_nonce = None
        self.counter = 0
        self.stats = {"checkid": 0, "check_authentication": 0}
        # /_fake/hold: check_authentication waits for /_fake/release
        self.hold = False
        self.held = 0
        self.held_cond = threading.Condition(self.lock)
        self.release = threading.Event()

    def sign(self, fields, signed):
        text = "".join("%s:%s\n" % (k, fields[k]) for k in signed)
        mac = hmac.new(self.secret, text.encode(), hashlib.sha256)
        return base64.b64encode(mac.digest()).decode()


class Handler(BaseHTTPRequestHandler):
    server_version = "openidfake/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("openidfake: %s\n" % (fmt % args))

    def send(self, status, body=b"", ctype="text/plain", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length).decode()

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/_fake/stats":
            with self.server.op.lock:
                body = json.dumps(self.server.op.stats).encode()
            return self.send(200, body, "application/json")
        if url.path == "/_fake/held":
            op = self.server.op
            query = dict(parse_qsl(url.query))
            want = int(query.get("count", "1"))
            wait = min(float(query.get("wait", "0")), HOLD_MAX_SECS)
            with op.lock:
                op.held_cond.wait_for(lambda: op.held >= want, wait)
                body = json.dumps({"held": op.held}).encode()
            return self.send(200, body, "application/json")
        if url.path != "/+openid":
            return self.send(404, b"not found\n")
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if query.get("openid.mode") != "checkid_setup" or \
                query.get("openid.ns") != OPENID_NS or \
                "openid.return_to" not in query:
            return self.send(400, b"bad checkid_setup\n")
        self.assertion(query["openid.return_to"])

    def assertion(self, return_to):
        op = self.server.op
        with op.lock:
            op.stats["checkid"] += 1
            op.counter += 1
            mode, nickname = op.mode, op.nickname
            nonce = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + \
                "%d-%s" % (op.counter, secrets.token_hex(4))
            if mode == "replay-nonce" and op.last_nonce is not None:
                nonce = op.last_nonce
            op.last_nonce = nonce
        endpoint = self.base + "/+openid"
        claimed = self.base + "/+id/" + hashlib.sha256(
            nickname.encode()).hexdigest()[:7]
        fields = {
            "ns": OPENID_NS,
            "mode": "id_res",
            "op_endpoint": OFFHOST + "/+openid" if mode == "foreign-op"
            else endpoint,
            "claimed_id": OFFHOST + "/+id/x" if mode == "offhost-claimed-id"
            else claimed,
            "identity": OFFHOST + "/+id/x" if mode == "offhost-claimed-id"
            else claimed,
            "return_to": "https://evil.example.org/openid/return?" +
            urlsplit(return_to).query if mode == "foreign-return-to"
            else return_to,
            "response_nonce": nonce,
            "assoc_handle": "fake-" + secrets.token_hex(8),
        }
        signed = ["op_endpoint", "claimed_id", "identity", "return_to",
                  "response_nonce", "assoc_handle"]
        if mode != "no-nickname":
            fields["ns.sreg"] = SREG_NS
            fields["sreg.nickname"] = "Not A Name!" \
                if mode == "bad-nickname" else nickname
            signed.append("ns.sreg")
            if mode != "unsigned-nickname":
                signed.append("sreg.nickname")
            # The address Ubuntu One vouches for (optional SReg email).
            if mode != "no-email":
                fields["sreg.email"] = nickname + ".personal@example.net"
                signed.append("sreg.email")
        fields["signed"] = ",".join(signed)
        fields["sig"] = op.sign(fields, signed)
        target = return_to + ("&" if "?" in return_to else "?") + urlencode(
            {"openid." + k: v for k, v in fields.items()})
        self.send(302, b"", headers={"Location": target})

    def do_POST(self):
        url = urlsplit(self.path)
        op = self.server.op
        try:
            body = self.read_body()
        except ValueError:
            return self.send(413, b"too large\n")
        if url.path == "/_fake/next":
            req = json.loads(body or "{}")
            mode = req.get("mode", "ok")
            if mode not in MODES:
                return self.send(400, b"unknown mode\n")
            with op.lock:
                op.mode = mode
                op.nickname = req.get("nickname", op.nickname)
            return self.send(200, b"{}", "application/json")
        if url.path == "/_fake/hold":
            with op.lock:
                op.hold = bool(json.loads(body or "{}").get("on", True))
            return self.send(200, b"{}", "application/json")
        if url.path == "/_fake/release":
            with op.lock:
                op.hold = False
                op.release.set()
                op.release = threading.Event()
                op.held = 0
            return self.send(200, b"{}", "application/json")
        if url.path != "/+openid":
            return self.send(404, b"not found\n")
        pairs = parse_qsl(body, keep_blank_values=True)
        fields = {k[len("openid."):]: v for k, v in pairs
                  if k.startswith("openid.")}
        if len(fields) != len(pairs) or \
                fields.get("mode") != "check_authentication":
            return self.send(400, b"bad check_authentication\n")
        with op.lock:
            op.stats["check_authentication"] += 1
            mode = op.mode
            hold, release = op.hold, op.release
            if hold:
                op.held += 1
                op.held_cond.notify_all()
        if hold:
            release.wait(HOLD_MAX_SECS)
        signed = fields.get("signed", "").split(",")
        valid = all(k in fields for k in signed) and hmac.compare_digest(
            op.sign(fields, signed), fields.get("sig", ""))
        if mode == "bad-signature":
            valid = False
        answer = "ns:%s\nis_valid:%s\n" % (OPENID_NS,
                                          "true" if valid else "false")
        self.send(200, answer.encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.op = Provider()
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
