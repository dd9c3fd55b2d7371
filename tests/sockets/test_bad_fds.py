#!/usr/bin/env python3
"""Passed fds echod cannot serve: each makes it exit 1 at once with one line on stderr
naming the fd and what it is, and without READY=1: a pipe, a listening AF_UNIX
SOCK_SEQPACKET socket, an AF_UNIX datagram socket, a TCP socket that is not listening, a
regular file, a bad fd after a good one; a connected socket passed together with a
listener (either order) is refused the same way and nothing is served."""

import os
import socket

import sockets_lib as L


def expect_refusal(t, tmp, echod, socks, label, fd, words):
    """Starts echod with socks on 3..; checks exit 1, one stderr line naming 'fd N' and
    words, no READY=1. Returns that line."""
    notify = L.Notify(tmp, "notify-" + label.replace(" ", "-"))
    d = L.activate(tmp, echod, socks, env_extra={"NOTIFY_SOCKET": notify.path}, name=label.replace(" ", "-"))
    try:
        rc = d.wait(5)
        lines = [x for x in d.lines() if x.strip()]
        line = lines[0] if lines else ""
        good = (rc == 1 and len(lines) == 1 and ("fd %d" % fd) in line
                and all(w.lower() in line.lower() for w in words) and not notify.ready())
        t.ok(good, "%s: exit 1, one line naming fd %d and %s, no READY=1" % (label, fd, " / ".join(words)),
             "rc=%r READY=%r\n%s" % (rc, notify.ready(), d.log()))
        return line
    finally:
        d.kill()
        notify.close()


def main():
    echod = L.echod_path()
    t = L.Tap(9)

    with L.tmpdir() as tmp:
        def pipe():
            r, w = os.pipe()
            try:
                expect_refusal(t, tmp, echod, [r], "pipe", 3, ["pipe"])
            finally:
                os.close(r)
                os.close(w)
        t.run(pipe, "pipe")

        def seqpacket():
            s = L.unix_listener(os.path.join(tmp, "seq.sock"), socket.SOCK_SEQPACKET)
            try:
                expect_refusal(t, tmp, echod, [s], "seqpacket", 3, ["SEQPACKET"])
            finally:
                s.close()
        t.run(seqpacket, "seqpacket")

        def unix_dgram():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(os.path.join(tmp, "dgram.sock"))
            try:
                expect_refusal(t, tmp, echod, [s], "unix datagram", 3, ["datagram"])
            finally:
                s.close()
        t.run(unix_dgram, "unix dgram")

        def not_listening():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            try:
                expect_refusal(t, tmp, echod, [s], "unlistened tcp", 3, ["stream"])
            finally:
                s.close()
        t.run(not_listening, "not listening")

        def regular_file():
            path = os.path.join(tmp, "file")
            with open(path, "w") as f:
                f.write("x")
            fd = os.open(path, os.O_RDONLY)
            try:
                expect_refusal(t, tmp, echod, [fd], "regular file", 3, ["file"])
            finally:
                os.close(fd)
        t.run(regular_file, "regular file")

        def good_then_bad():
            lst = L.tcp_listener(socket.AF_INET, "127.0.0.1")
            r, w = os.pipe()
            try:
                expect_refusal(t, tmp, echod, [lst, r], "listener then pipe", 4, ["pipe"])
            finally:
                lst.close()
                os.close(r)
                os.close(w)
        t.run(good_then_bad, "good then bad")

        def connected_with_listener():
            for order in ("connected first", "listener first"):
                srv = L.tcp_listener(socket.AF_INET, "127.0.0.1")
                lst = L.tcp_listener(socket.AF_INET, "127.0.0.1")
                c = socket.create_connection(srv.getsockname(), timeout=5)
                conn, _ = srv.accept()
                socks = [conn, lst] if order == "connected first" else [lst, conn]
                try:
                    notify = L.Notify(tmp, "notify-conn-" + order.replace(" ", "-"))
                    d = L.activate(tmp, echod, socks, env_extra={"NOTIFY_SOCKET": notify.path},
                                   name="conn-" + order.replace(" ", "-"))
                    conn.close()
                    try:
                        rc = d.wait(5)
                        lines = [x for x in d.lines() if x.strip()]
                        # The connection is closed, not echoed.
                        c.settimeout(3)
                        try:
                            c.sendall(b"anyone?")
                            got = c.recv(100)
                        except OSError:
                            got = b""
                        t.ok(rc == 1 and len(lines) == 1 and "connected" in lines[0].lower()
                             and not notify.ready() and got == b"",
                             "connected socket + listener (%s): exit 1, one line, nothing served" % order,
                             "rc=%r got=%r\n%s" % (rc, got, d.log()))
                    finally:
                        d.kill()
                        notify.close()
                finally:
                    c.close()
                    conn.close()
                    srv.close()
                    lst.close()
        t.run(connected_with_listener, "connected with listener")

        def no_fds():
            d = L.Daemon(tmp, [echod], name="nothing")
            try:
                rc = d.wait(5)
                lines = [x for x in d.lines() if x.strip()]
                t.ok(rc == 1 and len(lines) == 1 and "--listen" in lines[0],
                     "no fds, no --listen: exit 1 with one line saying how to run it", "rc=%r\n%s" % (rc, d.log()))
            finally:
                d.kill()
        t.run(no_fds, "no fds")

    t.finish()


if __name__ == "__main__":
    main()
