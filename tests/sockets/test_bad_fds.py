#!/usr/bin/env python3
"""Passed fds echod cannot serve: each makes it exit 1 at once with one line on stderr
naming the fd and what it is, and without READY=1: a pipe, a listening AF_UNIX
SOCK_SEQPACKET socket, an AF_UNIX datagram socket, a TCP socket that is not listening, a
regular file, a bad fd after a good one; a connected socket passed together with a
listener (either order) is refused the same way and nothing is served."""

import os
import socket
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import SLOW, Daemon, connect, listen_socket, run  # noqa: E402


def expect_refusal(t, exe, fds, label, fd, words):
    """Starts echod with fds on 3..; checks exit 1, one stderr line naming 'fd N' and words,
    no READY=1."""
    d = Daemon(exe, sockets=fds).start()
    rc = d.wait(5 * SLOW)
    lines = [x for x in d.lines() if x.strip()]
    line = lines[0] if lines else ""
    good = (rc == 1 and len(lines) == 1 and ("fd %d" % fd) in line
            and all(w.lower() in line.lower() for w in words) and not d.notify.ready())
    t.ok(good, "%s: exit 1, one line naming fd %d and %s, no READY=1" % (label, fd, " / ".join(words)),
         "rc=%r READY=%r\n%s" % (rc, d.notify.ready(), d.stderr_text()))


def test_pipe(t, exe):
    r, w = os.pipe()
    try:
        expect_refusal(t, exe, [r], "pipe", 3, ["pipe"])
    finally:
        os.close(r)
        os.close(w)


def test_seqpacket(t, exe):
    with tempfile.TemporaryDirectory(prefix="echod-sockets-") as tmp, \
            listen_socket(path=os.path.join(tmp, "seq.sock"), kind=socket.SOCK_SEQPACKET) as s:
        expect_refusal(t, exe, [s], "seqpacket", 3, ["SEQPACKET"])


def test_unix_dgram(t, exe):
    with tempfile.TemporaryDirectory(prefix="echod-sockets-") as tmp, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(os.path.join(tmp, "dgram.sock"))
        expect_refusal(t, exe, [s], "unix datagram", 3, ["datagram"])


def test_not_listening(t, exe):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        expect_refusal(t, exe, [s], "unlistened tcp", 3, ["stream"])


def test_regular_file(t, exe):
    with tempfile.TemporaryDirectory(prefix="echod-sockets-") as tmp:
        path = os.path.join(tmp, "file")
        with open(path, "w") as f:
            f.write("x")
        with open(path) as f:
            expect_refusal(t, exe, [f.fileno()], "regular file", 3, ["file"])


def test_good_then_bad(t, exe):
    r, w = os.pipe()
    try:
        with listen_socket() as lst:
            expect_refusal(t, exe, [lst, r], "listener then pipe", 4, ["pipe"])
    finally:
        os.close(r)
        os.close(w)


def test_connected_with_listener(t, exe):
    for order in ("connected first", "listener first"):
        with listen_socket() as srv, listen_socket() as lst, \
                connect(srv.getsockname(), 5 * SLOW) as c:
            conn, _ = srv.accept()
            with conn:
                d = Daemon(exe, sockets=[conn, lst] if order == "connected first" else [lst, conn]).start()
            rc = d.wait(5 * SLOW)
            lines = [x for x in d.lines() if x.strip()]
            # The connection is closed, not echoed.
            c.settimeout(3 * SLOW)
            try:
                c.sendall(b"anyone?")
                got = c.recv(100)
            except OSError:
                got = b""
            t.ok(rc == 1 and len(lines) == 1 and "connected" in lines[0].lower()
                 and not d.notify.ready() and got == b"",
                 "connected socket + listener (%s): exit 1, one line, nothing served" % order,
                 "rc=%r got=%r\n%s" % (rc, got, d.stderr_text()))


def test_no_fds(t, exe):
    d = Daemon(exe, notify=False).start()
    rc = d.wait(5 * SLOW)
    lines = [x for x in d.lines() if x.strip()]
    t.ok(rc == 1 and len(lines) == 1 and "--listen" in lines[0],
         "no fds, no --listen: exit 1 with one line saying how to run it", "rc=%r\n%s" % (rc, d.stderr_text()))


if __name__ == "__main__":
    run([test_pipe, test_seqpacket, test_unix_dgram, test_not_listening, test_regular_file,
         test_good_then_bad, test_connected_with_listener, test_no_fds])
