"""Regression: one MULTIAPPEND of 1,000 small messages into sqlbox.

Each message's body writer lived until the commit with a full 256 KiB chunk
buffer, so 1,000 of them passed the imap process's vsz_limit (256 MiB) and
it died with "pool_system_malloc(262145): Out of memory" (found by
bench/storage-bench.py)."""

import socket

from conftest import World


def test_multiappend_1000_small_messages():
    w = World(mail_location="sqlbox:~/mail")
    try:
        password = w.dc.generate_password("alice@ubuntu.com")
        s = socket.create_connection(("127.0.0.1", w.dc.imap_port), timeout=60)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b'a LOGIN alice@ubuntu.com "%s"\r\n' % password.encode())
        assert f.readline().startswith(b"a OK")
        parts = [b"b APPEND INBOX"]
        for i in range(1000):
            msg = (b"Subject: small %d\r\nMessage-ID: <m%d@test>\r\n\r\n"
                   b"body %d\r\n" % (i, i, i))
            parts.append(b" {%d+}\r\n" % len(msg) + msg)
        s.sendall(b"".join(parts) + b"\r\n")
        line = f.readline()
        while line and not line.startswith(b"b "):
            line = f.readline()
        assert line.startswith(b"b OK"), (line, w.dc.log_text()[-2000:])
        s.sendall(b"c STATUS INBOX (MESSAGES)\r\n")
        line = f.readline()
        assert b"MESSAGES 1000" in line, line
        s.sendall(b"d LOGOUT\r\n")
        s.close()
        assert "Out of memory" not in w.dc.log_text()
        assert "Fatal" not in w.dc.log_text()
    finally:
        w.close()
