#!/usr/bin/env python3
"""Load and hygiene: 200 concurrent clients; a client pushing 64 MiB without reading does
not delay another; 64 MiB echoed byte-exact; --max-clients makes the next client wait in the
backlog and then serves it with nothing lost; no zombie after many short connections; the
parent's descriptor count does not grow; mid-stream resets are survived."""

import hashlib
import os
import re
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (EMULATED, Daemon, SLOW, VALGRIND, connect, fd_targets,  # noqa: E402
                       listen_socket, recv_exact, recv_to_eof, roundtrip, run, wait_until)

SCALE = 0.25 if VALGRIND else 1.0


def n_of(n):
    return max(20, int(n * SCALE))


def start(exe, args=(), backlog=512):
    ls = listen_socket(backlog=backlog)
    d = Daemon(exe, list(args), sockets=[ls]).start()
    d.wait_ready()
    return ls, d


def parallel(fn, items, n_threads=16):
    """Runs fn(item) over items in n_threads threads; returns the results in order."""
    out = [None] * len(items)
    idx = iter(range(len(items)))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            try:
                out[i] = fn(items[i])
            except Exception as e:  # reported through the result
                out[i] = e
    ts = [threading.Thread(target=worker, daemon=True) for _ in range(n_threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(300)
    return out


def test_200_concurrent(t, exe):
    ls, d = start(exe)
    try:
        n = n_of(200)
        conns = []
        for i in range(n):
            conns.append(connect(ls.getsockname(), 10 * SLOW))
        try:
            payloads = [os.urandom(1024) + struct.pack("I", i) for i in range(n)]
            for c, p in zip(conns, payloads):
                c.sendall(p)
            got = [recv_exact(c, len(p), 20 * SLOW) for c, p in zip(conns, payloads)]
            t.ok(got == payloads, f"{n} concurrent clients, all open at once: each gets its own bytes")
            kids = d.children()
            t.ok(len(kids) == n, f"{n} children serve them, one each ({len(kids)})")
        finally:
            for c in conns:
                c.close()
        t.ok(wait_until(lambda: not d.children(), 10 * SLOW) is not None and not d.children(),
             "all children gone after the clients left")
        t.ok(d.stop() == 0, "stops with status 0")
    finally:
        ls.close()


def test_non_reader_does_not_delay(t, exe):
    ls, d = start(exe)
    hog = None
    try:
        hog = connect(ls.getsockname(), 10 * SLOW)
        stop = threading.Event()
        pushed = [0]

        def push():  # 64 MiB offered, never read
            hog.setblocking(False)
            chunk = b"h" * (1 << 20)
            while not stop.is_set() and pushed[0] < (64 << 20):
                try:
                    pushed[0] += hog.send(chunk)
                except BlockingIOError:
                    time.sleep(0.01)
                except OSError:
                    return
        th = threading.Thread(target=push, daemon=True)
        th.start()
        time.sleep(0.3)
        times = []
        for i in range(20):
            t0 = time.monotonic()
            ok = roundtrip(ls.getsockname(), b"quick %d" % i, 5 * SLOW) == b"quick %d" % i
            times.append(time.monotonic() - t0)
            if not ok:
                break
        stop.set()
        th.join(5)
        bound = 1.0 if VALGRIND else 0.1
        t.ok(len(times) == 20 and max(times) < bound,
             f"while a client pushes {pushed[0] >> 20} MiB and never reads, 20 other connections each "
             f"round-trip in < {bound * 1000:.0f} ms (max {max(times) * 1000:.1f} ms)")
        # and a big transfer by a reading client is byte-exact
        size = (16 if VALGRIND else 64) << 20
        data = os.urandom(1 << 20)
        with connect(ls.getsockname(), 60 * SLOW) as s:
            h_sent = hashlib.sha256()

            def writer():
                for _ in range(size >> 20):
                    s.sendall(data)
                    h_sent.update(data)
                s.shutdown(socket.SHUT_WR)
            w = threading.Thread(target=writer, daemon=True)
            w.start()
            h_got, n = hashlib.sha256(), 0
            s.settimeout(60 * SLOW)
            while True:
                b = s.recv(1 << 20)
                if not b:
                    break
                h_got.update(b)
                n += len(b)
            w.join(10)
        t.ok(n == size and h_got.digest() == h_sent.digest(),
             f"{size >> 20} MiB echoed byte-exact (sha256), then EOF ({n} bytes)")
        t.ok(d.stop() == 0, "stops with status 0")
    finally:
        if hog:
            hog.close()
        ls.close()


def test_max_clients(t, exe):
    ls, d = start(exe, ["--max-clients", "3"])
    conns = []
    try:
        for episode in (1, 2):
            conns = [connect(ls.getsockname(), 5 * SLOW) for _ in range(3)]
            for i, c in enumerate(conns):
                c.sendall(b"c%d" % i)
                recv_exact(c, 2, 5 * SLOW)
            fourth = connect(ls.getsockname(), 5 * SLOW)  # succeeds: the kernel backlog
            conns.append(fourth)
            t.ok(True, f"episode {episode}: the 4th connect succeeds (backlog)")
            fourth.sendall(b"fourth-1 ")
            fourth.settimeout(1.0)
            try:
                early = fourth.recv(100)
            except socket.timeout:
                early = None
            t.ok(early is None, f"episode {episode}: --max-clients 3: the 4th is not served while 3 run",
                 repr(early))
            t.ok(len(d.children()) == 3, f"episode {episode}: exactly 3 children ({len(d.children())})")
            fourth.sendall(b"fourth-2")
            conns[0].close()
            got = recv_exact(fourth, 17, 5 * SLOW)
            t.ok(got == b"fourth-1 fourth-2", f"episode {episode}: when one ends, the 4th is served with "
                 "nothing lost", got)
            for c in conns[1:]:
                c.close()
            wait_until(lambda: not d.children(), 5 * SLOW)
        warn = [ln for ln in d.lines() if "at the limit of 3 clients" in ln]
        # each episode reaches the cap twice (3 clients; then the 4th refills the freed slot),
        # and is counted once; the second comes within 10 s of the first, so its line waits
        t.ok(len(warn) == 1, f"'at the limit of 3 clients' logged once for 2 episodes within 10 s "
             f"({len(warn)})", "\n".join(d.lines()))
        below = d.lines()
        with connect(ls.getsockname(), 5 * SLOW) as a, connect(ls.getsockname(), 5 * SLOW) as b:
            for c in (a, b):
                c.sendall(b"x")
                recv_exact(c, 1, 5 * SLOW)
        wait_until(lambda: not d.children(), 5 * SLOW)
        t.ok(len([ln for ln in d.lines() if "at the limit" in ln]) == len(warn),
             "2 clients under a cap of 3: no 'at the limit' line", "\n".join(d.lines()[len(below):]))
        t.ok(d.stop() == 0, "stops with status 0")
    finally:
        for c in conns:
            c.close()
        ls.close()


def zombies(d):
    return [p for p, st in d.children() if st == "Z"]


def test_no_zombie(t, exe):
    ls, d = start(exe)
    try:
        n = n_of(300)
        res = parallel(lambda i: roundtrip(ls.getsockname(), b"z%d" % i, 10 * SLOW) == b"z%d" % i,
                       list(range(n)))
        t.ok(all(r is True for r in res), f"{n} short connections echoed")
        desc = f"no zombie child after {n} short connections"
        if EMULATED or VALGRIND:
            # qemu-user and valgrind deliver signals themselves: now and then the last
            # SIGCHLD of a burst reaches the signalfd only when something else wakes the
            # loop (seen about one run in three under qemu, never natively in the same
            # runs). The check below ("no child at all") still holds there.
            t.skip(desc, "SIGCHLD to a signalfd is emulated here; prompt reaping is checked "
                   "natively and under ASan")
        else:
            wait_until(lambda: not zombies(d), 0.5 * SLOW)
            z = zombies(d)
            t.ok(not z, desc, repr(z))
        t.ok(wait_until(lambda: not d.children(), 5 * SLOW) is not None and not d.children(),
             "no child at all once they ended", repr(d.children()))
        t.ok(d.stop() == 0, "stops with status 0")
    finally:
        ls.close()


def own_fds(pid):
    """pid's fds but for shared objects: while echod sends a notification it has libsystemd
    loaded (src/libsystemd.c), and ld.so (and valgrind, reading its symbols) hold the files
    open for a moment."""
    return {fd: v for fd, v in fd_targets(pid).items() if not re.search(r"\.so(\.[0-9]+)*$", v)}


def test_fd_count(t, exe):
    ls, d = start(exe)
    try:
        roundtrip(ls.getsockname(), b"warm", 5 * SLOW)
        wait_until(lambda: not d.children(), 5 * SLOW)
        before = own_fds(d.pid)
        n = n_of(500)

        def one(i):
            with connect(ls.getsockname(), 10 * SLOW) as s:
                s.sendall(b"f%d" % i)
                if i % 5 == 0:  # some end abruptly
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return True
                s.shutdown(socket.SHUT_WR)
                return recv_to_eof(s, 10 * SLOW) == b"f%d" % i
        res = parallel(one, list(range(n)))
        t.ok(all(r is True for r in res), f"{n} connections done",
             repr([r for r in res if r is not True][:5]))
        wait_until(lambda: not d.children(), 10 * SLOW)
        # A leaked fd stays: waiting for the count lets a last accept() or close() finish.
        wait_until(lambda: len(own_fds(d.pid)) == len(before), 5 * SLOW)
        after = own_fds(d.pid)
        t.ok(len(after) == len(before), f"the parent's fd count is the same after {n} connections "
             f"({len(before)} -> {len(after)})", f"before {before}\nafter {after}")
        t.ok(d.stop() == 0, "stops with status 0")
    finally:
        ls.close()


def test_resets(t, exe):
    ls, d = start(exe)
    try:
        n = n_of(500)

        def one(i):
            s = connect(ls.getsockname(), 10 * SLOW)
            try:
                s.sendall(os.urandom(32768))
                if i % 2:
                    recv_exact(s, 100, 5 * SLOW)  # mid-stream: some echo came back
            finally:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            return True
        res = parallel(one, list(range(n)))
        t.ok(all(r is True for r in res), f"{n} clients reset mid-stream (SO_LINGER 0 close)",
             repr([r for r in res if r is not True][:5]))
        t.ok(d.poll() is None, "echod survived them")
        t.ok(roundtrip(ls.getsockname(), b"still here", 5 * SLOW) == b"still here", "and still serves")
        t.ok(wait_until(lambda: not d.children(), 10 * SLOW) is not None and not zombies(d) and
             not d.children(), "every child of the reset connections is gone", repr(d.children()))
        t.ok(d.stop() == 0, "stops with status 0")
    finally:
        ls.close()


if __name__ == "__main__":
    run([test_200_concurrent, test_non_reader_does_not_delay, test_max_clients, test_no_zombie,
         test_fd_count, test_resets])
