#!/usr/bin/python3
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
"""A loopback SMTP sink for the system tests: accepts every message and
keeps it in memory (Python standard library only, 127.0.0.1 only).

    sink = SmtpSink().start()     # sink.port for submission_host
    ...
    sink.messages                 # [{"from", "rcpts", "data"}]
    sink.stop()

A test that needs a client stuck mid-conversation calls sink.hold(): each
later DATA then waits, after the message was read and before its "250",
until sink.release(); sink.held(n) waits until n are waiting (an event,
not a sleep).  sink.reject = True answers every DATA with a 554."""

import socketserver
import threading

LINE_MAX = 4096
DATA_MAX = 1024 * 1024


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def reply(self, text):
        self.wfile.write((text + "\r\n").encode())
        self.wfile.flush()

    def readline(self):
        line = self.rfile.readline(LINE_MAX)
        if not line:
            raise EOFError
        return line.decode("utf-8", "replace").rstrip("\r\n")

    def handle(self):
        sink = self.server.sink
        mail_from, rcpts = None, []
        self.reply("220 smtpsink ESMTP")
        try:
            while True:
                line = self.readline()
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    self.reply("250-smtpsink\r\n250-8BITMIME\r\n250 PIPELINING"
                               if verb == "EHLO" else "250 smtpsink")
                elif verb == "MAIL":
                    mail_from, rcpts = line[10:].strip(), []
                    self.reply("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpts.append(line[8:].strip())
                    self.reply("250 2.1.5 Ok")
                elif verb == "DATA":
                    self.reply("354 End data with <CR><LF>.<CR><LF>")
                    data = []
                    size = 0
                    while True:
                        dline = self.rfile.readline(LINE_MAX)
                        if not dline or dline in (b".\r\n", b".\n"):
                            break
                        if dline.startswith(b".."):
                            dline = dline[1:]
                        size += len(dline)
                        if size <= DATA_MAX:
                            data.append(dline)
                    with sink.lock:
                        sink.messages.append({
                            "from": mail_from, "rcpts": list(rcpts),
                            "data": b"".join(data).decode("utf-8",
                                                          "replace")})
                    sink.wait_if_held()
                    if sink.reject:
                        self.reply("554 5.7.1 rejected by the test")
                    else:
                        self.reply("250 2.0.0 Ok: queued")
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    self.reply("250 Ok")
                elif verb == "NOOP":
                    self.reply("250 Ok")
                elif verb == "QUIT":
                    self.reply("221 Bye")
                    return
                else:
                    self.reply("502 5.5.2 Command not recognized")
        except (EOFError, OSError):
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpSink:
    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []
        self.server = None
        self.cond = threading.Condition(self.lock)
        self.holding = False
        self.waiting = 0
        # DATA answered 554 (the message is still recorded, as a real
        # server may have read it): a send that fails at the last step
        self.reject = False

    def hold(self):
        with self.lock:
            self.holding = True

    def held(self, count=1, wait=60):
        """Waits until count DATA replies are held; returns how many."""
        with self.lock:
            self.cond.wait_for(lambda: self.waiting >= count, wait)
            return self.waiting

    def release(self):
        with self.lock:
            self.holding = False
            self.cond.notify_all()

    def wait_if_held(self):
        with self.lock:
            if not self.holding:
                return
            self.waiting += 1
            self.cond.notify_all()
            # bounded: a test that never releases does not hang a thread
            self.cond.wait_for(lambda: not self.holding, 120)
            self.waiting -= 1

    def start(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.sink = self
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         kwargs={"poll_interval": 0.2}, daemon=True).start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def clear(self):
        with self.lock:
            self.messages.clear()
