#!/usr/bin/env python3
"""Stop: SIGTERM with 20 clients mid-stream gives back every byte sent before it, exit 0,
no process left; the drain timeout bounds a stop; no new client is served while draining;
a SIGTERM sent to one child ends that connection cleanly (stop) and nothing else."""

import hashlib
import os
import selectors
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (LINE_RE, SLOW, Daemon, alive, connect, fill_until_stuck,  # noqa: E402
                       listen_socket, recv_exact, recv_to_eof, roundtrip, run, started)


class Client:
    def __init__(self, addr, reads):
        self.sock = connect(addr, 5 * SLOW)
        self.sock.setblocking(False)
        self.reads = reads
        self.sent = hashlib.sha256()
        self.got = hashlib.sha256()
        self.n_sent = self.n_got = 0
        self.eof = False


def test_sigterm_mid_stream(t, exe):
    ls = listen_socket()
    clients = []
    try:
        d = Daemon(exe, ["--drain-timeout", "20"], sockets=[ls]).start()
        d.wait_ready()
        # 10 clients stream and read; 10 send up to 256 KiB and read nothing (yet)
        clients = [Client(ls.getsockname(), reads=i % 2 == 0) for i in range(20)]
        chunk = os.urandom(8192)
        sel = selectors.DefaultSelector()
        for c in clients:
            sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            for key, ev in sel.select(0.1):
                c = key.data
                if ev & selectors.EVENT_WRITE and (c.reads or c.n_sent < 256 * 1024):
                    try:
                        n = c.sock.send(chunk)
                        c.sent.update(chunk[:n])
                        c.n_sent += n
                    except BlockingIOError:
                        pass
                if ev & selectors.EVENT_READ and c.reads:
                    b = c.sock.recv(1 << 16)
                    c.got.update(b)
                    c.n_got += len(b)
        for c in clients:
            sel.modify(c.sock, selectors.EVENT_READ, c)
        time.sleep(0.2 * SLOW)  # everything sent has reached echod's side
        kids = {p for p, _ in d.children()}
        t.ok(len(kids) == 20, f"20 children serving ({len(kids)})")
        d.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15 * SLOW
        while not all(c.eof for c in clients) and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                c = key.data
                try:
                    b = c.sock.recv(1 << 16)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    b = b""
                if not b:
                    c.eof = True
                    sel.unregister(c.sock)
                else:
                    c.got.update(b)
                    c.n_got += len(b)
        pending = sum(c.n_sent for c in clients if not c.reads)
        bad = [(i, c.n_sent, c.n_got) for i, c in enumerate(clients)
               if not c.eof or c.n_got != c.n_sent or c.got.digest() != c.sent.digest()]
        t.ok(not bad, f"SIGTERM with 20 clients mid-stream: every byte sent before it comes back, "
             f"then EOF ({sum(c.n_sent for c in clients)} bytes, {pending} of them unread at the signal)",
             f"(client, sent, got) wrong: {bad}")
        st = d.wait(15 * SLOW)
        t.ok(st == 0, f"exit status 0 ({st})", d.stderr_text()[-2000:])
        left = [p for p in kids if alive(p)]
        t.ok(not left and kids, "no child process left", f"alive: {left}")
        stops = [m for m in (LINE_RE.search(ln) for ln in d.lines()) if m and m.group(4) == "stop"]
        t.ok(len(stops) == 20, f"20 connection lines with reason stop ({len(stops)})")
        t.ok(d.wait_line(r"stopping: 20 clients draining", 0.5), "'stopping: 20 clients draining' logged",
             d.stderr_text()[-1500:])
    finally:
        for c in clients:
            c.sock.close()
        ls.close()


def test_drain_timeout(t, exe):
    with started(exe, ["--drain-timeout", "1"]) as (d, ls):
        s = connect(ls.getsockname(), 5 * SLOW)
        # this client never reads: its child cannot finish. "Stuck" is judged by a quiet
        # spell, which must outlast a slow (valgrind) child catching up.
        n = fill_until_stuck(s, quiet=0.3 * SLOW)
        kids = {p for p, _ in d.children()}
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        # while draining (STOPPING=1 sent: the signal was seen), a new client is not served
        d.notify.wait_for(lambda m: "STOPPING=1" in m[3], 2 * SLOW)
        late = connect(ls.getsockname(), 2)
        late.sendall(b"late")
        late.settimeout(0.5)
        try:
            got = late.recv(4)
        except (socket.timeout, OSError):
            got = b""
        late.close()
        t.ok(got == b"", "while draining, a new connection is not accepted/echoed", got)
        st = d.wait(10 * SLOW)
        took = time.monotonic() - t0
        t.ok(st == 0, f"--drain-timeout 1 with a client that sent {n} bytes and never reads: exit "
             f"status 0 ({st})",
             d.stderr_text())
        t.ok(st is not None and 0.8 <= took <= 3 * SLOW,
             f"... after about 1 s ({took:.2f} s)")
        t.ok(kids and not [p for p in kids if alive(p)], "... its child is gone (killed)")
        s.close()


def test_sigterm_to_child(t, exe):
    with started(exe, ["--log-level", "debug"]) as (d, ls):
        with connect(ls.getsockname(), 5 * SLOW) as a, connect(ls.getsockname(), 5 * SLOW) as b:
            port_a = a.getsockname()[1]
            a.sendall(b"A")
            recv_exact(a, 1, 5 * SLOW)
            b.sendall(b"B")
            recv_exact(b, 1, 5 * SLOW)
            m = d.wait_line(rf"accepted 127\.0\.0\.1 port {port_a} \(pid (\d+)\)", 5 * SLOW)
            t.ok(m, "debug line 'accepted 127.0.0.1 port P (pid C)' names the child", d.stderr_text())
            if not m:
                return
            child = int(m[0].group(1))
            t.ok(child in {p for p, _ in d.children()}, f"pid {child} is a child of echod")
            a.sendall(b"pending")
            time.sleep(0.2 * SLOW)
            os.kill(child, signal.SIGTERM)
            rest = recv_to_eof(a, 5 * SLOW)
            t.ok(rest == b"pending", "SIGTERM to a child: what it received is echoed, then EOF", rest)
            line = [x for x in (LINE_RE.search(ln) for ln in d.wait_line(rf"port {port_a} .*ended", 5 * SLOW)
                                and d.lines()) if x and int(x.group(2)) == port_a]
            t.ok(line and line[0].group(4) == "stop" and int(line[0].group(5)) == 8,
                 "its line says stop, 8 bytes", d.stderr_text())
            b.sendall(b"B2")
            t.ok(recv_exact(b, 2, 5 * SLOW) == b"B2", "the other connection is untouched")
            t.ok(d.poll() is None, "the daemon keeps running")
            t.ok(roundtrip(ls.getsockname(), b"after", 5 * SLOW) == b"after", "and keeps serving")
        t.ok(d.stop() == 0, "then stops with status 0")


if __name__ == "__main__":
    run([test_sigterm_mid_stream, test_drain_timeout, test_sigterm_to_child])
