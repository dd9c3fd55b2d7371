#!/usr/bin/env python3
"""sd_notify: READY=1 once the sockets are validated, STATUS= in the interface's format with
live counts, coalesced; STOPPING=1; WATCHDOG=1 at half of WATCHDOG_USEC; every message from
the main pid (SCM_CREDENTIALS), never from a child; nothing breaks without NOTIFY_SOCKET.
libsystemd is mapped only while it is called, so never in a child; when it cannot be loaded
after the start, notifications go on, sent directly, with one warning; a notify socket that
goes away is one warning, not one per message."""

import ctypes
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (SLOW, VALGRIND, Daemon, Skip, connect, fields, free_port,  # noqa: E402
                       is_refused_or_closed, listen_socket, mapped_files, recv_exact, roundtrip,
                       run, started, status_counts, wait_until)


def statuses(d):
    """[(time, (active, cap, served, refused), raw)] of every STATUS= message."""
    out = []
    for when, _pid, _uid, text in d.notify.snapshot():
        st = fields(text).get("STATUS")
        if st is not None:
            c = status_counts(st)  # no UDP socket: no datagram counts either
            out.append((when, c[:4] if c and c[4] is None else None, st))
    return out


def wait_status(d, pred, timeout):
    def check():
        return next((s for s in reversed(statuses(d)) if s[1] and pred(s[1])), None)
    return wait_until(check, timeout)


def senders_ok(t, d, what):
    pids = {m[1] for m in d.notify.snapshot()}
    t.ok(pids <= {d.pid}, f"{what}: every notify message came from the main pid {d.pid}, none "
         f"from a child", f"sender pids {sorted(pids)}")


def test_ready_and_status(t, exe):
    ls = listen_socket()
    try:
        d = Daemon(exe, ["--max-clients", "7"], sockets=[ls]).start()
        m = d.wait_ready()
        t.ok(m[1] == d.pid, f"READY=1 sent by the main pid ({m[1]} vs {d.pid})")
        t.ok(roundtrip(ls.getsockname(), b"ready", 5 * SLOW) == b"ready",
             "right after READY=1 a client is served")
        first = d.notify.snapshot()[0]
        t.ok("READY=1" in first[3].split("\n"), "READY=1 is in the first message", first[3])
        st = statuses(d)
        t.ok(st and st[0][1] is not None, "STATUS= matches 'A/CAP clients active, S served, R refused'",
             repr([s[2] for s in st]))
        t.ok(st and st[0][1] == (0, 7, 0, 0), "the first STATUS is 0/7 clients active, 0 served, 0 refused",
             repr(st[:1]))
        # live counts: 5 held connections
        conns = [connect(ls.getsockname(), 5 * SLOW) for _ in range(5)]
        try:
            for c in conns:
                c.sendall(b"h")
                recv_exact(c, 1, 5 * SLOW)
            t0 = time.monotonic()
            s = wait_status(d, lambda v: v[0] == 5, 3 * SLOW)
            t.ok(s is not None and s[1][1] == 7, f"5 open connections: STATUS says 5/7 clients active "
                 f"within {time.monotonic() - t0:.2f} s", repr([x[2] for x in statuses(d)][-3:]))
        finally:
            for c in conns:
                c.close()
        t0 = time.monotonic()
        s = wait_status(d, lambda v: v[0] == 0 and v[2] == 6, 3 * SLOW)
        took = time.monotonic() - t0
        t.ok(s is not None, f"after they end: 0/7 clients active, 6 served ({took:.2f} s)",
             repr([x[2] for x in statuses(d)][-3:]))
        t.ok(s is not None and took < 1.5 * SLOW, f"... within about a second of the change ({took:.2f} s)")
        d.stop()
        senders_ok(t, d, "ready/status")
    finally:
        ls.close()


def test_status_coalesced(t, exe):
    with started(exe) as (d, ls):
        n_before = len(statuses(d))
        t0 = time.monotonic()
        n_ok = sum(roundtrip(ls.getsockname(), b"%d" % i, 5 * SLOW) == b"%d" % i for i in range(100))
        took = time.monotonic() - t0
        t.ok(n_ok == 100, f"100 quick connections echoed ({n_ok})")
        s = wait_status(d, lambda v: v[2] == 100 and v[0] == 0, 3 * SLOW)
        t.ok(s is not None, "STATUS reaches 0/1024 clients active, 100 served",
             repr([x[2] for x in statuses(d)][-3:]))
        time.sleep(1.2)
        n = len(statuses(d)) - n_before
        limit = 10 * (took + 1.5) + 2
        t.ok(n < 50 and n <= limit, f"STATUS coalesced: {n} messages for 100 connections in "
             f"{took:.2f} s (at most ~10 a second)")
        d.stop()
        senders_ok(t, d, "100 connections")


def test_refused_counted(t, exe):
    with started(exe, ["--max-per-source", "1"]) as (d, ls):
        with connect(ls.getsockname(), 5 * SLOW) as a:
            a.sendall(b"a")
            recv_exact(a, 1, 5 * SLOW)
            with connect(ls.getsockname(), 5 * SLOW) as b:
                try:
                    b.sendall(b"b")
                except OSError:
                    pass
                t.ok(is_refused_or_closed(b, 3 * SLOW), "--max-per-source 1: a second connection from "
                     "127.0.0.1 is closed at once")
            s = wait_status(d, lambda v: v[3] == 1, 3 * SLOW)
            t.ok(s is not None and s[1][0] == 1, "STATUS counts it: 1 active, 1 refused",
                 repr([x[2] for x in statuses(d)][-3:]))
            a.sendall(b"still")
            t.ok(recv_exact(a, 5, 5 * SLOW) == b"still", "the first connection is unharmed")
        d.stop()
        t.ok(d.wait_line(r"stopped: \d+ served, 1 refused", 2), "'stopped: ... 1 refused' logged",
             d.stderr_text())


def test_stopping(t, exe):
    for sig in (signal.SIGTERM, signal.SIGINT):
        with started(exe) as (d, ls):
            st = d.stop(sig)
            # sent before the exit, but the collector thread may not have read it yet
            d.notify.wait_for(lambda m: "STOPPING=1" in m[3].split("\n"), 2 * SLOW)
            stopping = [m for m in d.notify.snapshot() if "STOPPING=1" in m[3].split("\n")]
            t.ok(st == 0, f"{sig.name}: exit status 0 ({st})", d.stderr_text())
            t.ok(len(stopping) == 1 and stopping[0][1] == d.pid,
                 f"{sig.name}: STOPPING=1 once, from the main pid", repr(d.notify.snapshot()))


def test_watchdog(t, exe):
    with started(exe, env={"WATCHDOG_USEC": "400000"}) as (d, ls):
        # a busy client meanwhile: the main loop must not be held up by it
        with connect(ls.getsockname(), 10 * SLOW) as c:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.2:
                c.sendall(b"w" * 4096)
                recv_exact(c, 4096, 5 * SLOW)
        snap = d.notify.snapshot()
        wd = [m for m in snap if "WATCHDOG=1" in m[3].split("\n") and m[0] >= t0 and m[0] <= t0 + 2.2]
        gaps = sorted(b[0] - a[0] for a, b in zip(wd, wd[1:]))
        t.ok(6 <= len(wd) <= 16, f"WATCHDOG_USEC=400000: {len(wd)} WATCHDOG=1 in 2.2 s (about 11)")
        med = gaps[len(gaps) // 2] if gaps else 0
        bound = 0.4 if not VALGRIND else 0.6
        t.ok(gaps and 0.12 <= med <= 0.26 and gaps[-1] < bound,
             f"about every 200 ms (median {med * 1000:.0f} ms, max {gaps[-1] * 1000 if gaps else 0:.0f} ms)")
        d.stop()
        senders_ok(t, d, "watchdog")
    with started(exe) as (d, ls):
        time.sleep(0.8)
        d.stop()
        t.ok(not [m for m in d.notify.snapshot() if "WATCHDOG=1" in m[3]],
             "without WATCHDOG_USEC: no WATCHDOG=1")


# libsystemd and the libraries it pulls in on Debian 12, which fork() would copy for every
# connection: mapped only while echod calls libsystemd (src/libsystemd.c), and left out of
# children besides (src/trim.c).
LIBSYSTEMD_FAMILY = ("libsystemd.so", "libcap.so", "libgcrypt.so", "libgpg-error.so", "liblzma.so",
                     "libzstd.so", "liblz4.so")


def libsystemd_mapped(pid):
    """The mappings of libsystemd in pid, or None if pid is gone."""
    files = mapped_files(pid)
    return None if files is None else [m for m in files if "libsystemd.so" in m]


def test_libsystemd_only_while_called(t, exe):
    # The design of the fork (src/libsystemd.c): every fork() pays for each mapping of the
    # parent, so libsystemd is mapped only while echod calls it.
    with started(exe) as (d, ls):
        t.ok(wait_until(lambda: libsystemd_mapped(d.pid) == [], 2 * SLOW),
             "after READY=1 libsystemd is not mapped in the main process",
             repr(libsystemd_mapped(d.pid)))
        for i in range(3):
            roundtrip(ls.getsockname(), b"s%d" % i, 5 * SLOW)
        s = wait_status(d, lambda v: v[0] == 0 and v[2] == 3, 3 * SLOW)
        t.ok(s is not None, "STATUS says 3 served", repr([x[2] for x in statuses(d)][-3:]))
        t.ok(wait_until(lambda: libsystemd_mapped(d.pid) == [], 2 * SLOW),
             "nor after that STATUS was sent", repr(libsystemd_mapped(d.pid)))
        t.ok(d.stop() == 0, "stops with status 0")


def test_libsystemd_not_in_child(t, exe):
    with started(exe) as (d, ls):
        if VALGRIND or any("libasan" in m for m in mapped_files(d.pid) or []):
            d.stop()
            raise Skip("valgrind and sanitizer builds fork children with every mapping")
        with connect(ls.getsockname(), 5 * SLOW) as c:
            c.sendall(b"x")
            recv_exact(c, 1, 5 * SLOW)
            kids = wait_until(d.children, 5 * SLOW)
            t.ok(len(kids) == 1, f"one child serves the connection ({kids})")
            files = mapped_files(kids[0][0]) if kids else None
            t.ok(files is not None and not [m for m in files if any(f in m for f in LIBSYSTEMD_FAMILY)],
                 "neither libsystemd nor a library it pulls in is mapped in a client's child",
                 repr(files))
        t.ok(d.stop() == 0, "stops with status 0")


def test_libsystemd_unloadable_after_start(t, exe):
    """A dist-upgrade may replace libsystemd with one this process cannot load: echod then
    sends its notifications directly, so the watchdog keeps being fed and STATUS keeps
    coming, and one warning says so; a notice when libsystemd loads again."""
    try:
        ctypes.CDLL("libsystemd.so.0")  # to find the file the loader picks
    except OSError:
        pass
    real = next((m for m in mapped_files(os.getpid()) or [] if "/libsystemd.so" in m), None)
    if real is None:
        raise Skip("cannot find libsystemd.so.0 to copy")
    tmp = tempfile.mkdtemp(prefix="echod-libsystemd-")
    copy = os.path.join(tmp, "libsystemd.so.0")
    try:
        shutil.copy(real, copy)
        with started(exe, env={"WATCHDOG_USEC": "400000", "LD_LIBRARY_PATH": tmp}) as (d, ls):
            # found first on the path, and not loadable: the loader does not look further
            os.unlink(copy)
            with open(copy, "wb") as f:
                f.write(b"not an ELF file: replaced by an upgrade\n")
            t0 = time.monotonic()
            time.sleep(2.0)
            wd = [m for m in d.notify.snapshot() if "WATCHDOG=1" in m[3].split("\n") and m[0] > t0]
            t.ok(len(wd) >= 5, f"libsystemd.so.0 unloadable after READY: WATCHDOG=1 keeps coming "
                 f"({len(wd)} in 2 s, about 10)")
            for i in range(3):
                roundtrip(ls.getsockname(), b"u%d" % i, 5 * SLOW)
            s = wait_status(d, lambda v: v[0] == 0 and v[2] == 3, 3 * SLOW)
            t.ok(s is not None, "... and STATUS too (3 served)", repr([x[2] for x in statuses(d)][-3:]))
            t.ok(not d.wait_line(r"Failed to notify", 0), "no notification failed", d.stderr_text())
            warned = d.wait_line(r"Cannot load libsystemd\.so\.0 \(.+\): sending notifications to the "
                                 r"service manager directly", 0, 2)
            t.ok(len(warned) == 1, f"one warning says libsystemd cannot be loaded ({len(warned)} for "
                 f"{len(wd)} pings)", d.stderr_text())
            os.unlink(copy)
            shutil.copy(real, copy)
            t.ok(d.wait_line(r"libsystemd\.so\.0 loads again", 3 * SLOW),
                 "libsystemd loadable again: a notice says so", d.stderr_text())
            t.ok(len(d.wait_line(r"Cannot load libsystemd", 0, 2)) == 1, "still one warning",
                 d.stderr_text())
            t.ok(d.stop() == 0, "stops with status 0", d.stderr_text())
    finally:
        if os.path.exists(copy):
            os.unlink(copy)
        os.rmdir(tmp)


def test_libsystemd_unloadable_at_start(t, exe):
    """libsystemd cannot be loaded from the start: passed sockets are an error (they cannot
    be checked); with --listen, the notifications are sent directly, with one warning that
    also says the watchdog is not fed (WATCHDOG_USEC is libsystemd's to read)."""
    tmp = tempfile.mkdtemp(prefix="echod-libsystemd-")
    bad = os.path.join(tmp, "libsystemd.so.0")
    try:
        with open(bad, "wb") as f:
            f.write(b"not an ELF file\n")
        env = {"LD_LIBRARY_PATH": tmp, "WATCHDOG_USEC": "400000"}
        ls = listen_socket()
        try:
            d = Daemon(exe, sockets=[ls], env=env).start()
            st = d.wait(10 * SLOW)
            t.ok(st == 1 and d.wait_line(r"Sockets were passed \(LISTEN_FDS\) but libsystemd\.so\.0, "
                                         r"needed to check them, cannot be loaded: .+", 0),
                 f"passed sockets, libsystemd unloadable: one error, exit status 1 ({st})",
                 d.stderr_text())
        finally:
            ls.close()
        port = free_port()
        d = Daemon(exe, ["--listen", f"127.0.0.1:{port}"], env=env).start()
        d.wait_ready()
        t.ok(roundtrip(("127.0.0.1", port), b"fine", 5 * SLOW) == b"fine",
             "--listen, libsystemd unloadable: READY=1 arrives and echo works")
        s = wait_status(d, lambda v: v[0] == 0 and v[2] == 1, 3 * SLOW)
        t.ok(s is not None, "... STATUS too (1 served)", repr([x[2] for x in statuses(d)][-3:]))
        warned = d.wait_line(r"Cannot load libsystemd\.so\.0 \(.+\): sending notifications to the service "
                             r"manager directly; WATCHDOG_USEC cannot be read", 0, 2)
        t.ok(len(warned) == 1 and len(d.wait_line(r"Cannot load libsystemd", 0, 2)) == 1,
             "... and one warning says so, and that the watchdog is not fed", d.stderr_text())
        st = d.stop()
        stopping = d.notify.wait_for(lambda m: "STOPPING=1" in m[3].split("\n"), 2 * SLOW)
        t.ok(st == 0 and stopping,
             f"... STOPPING=1 on SIGTERM, exit status 0 ({st})", d.stderr_text())
    finally:
        os.unlink(bad)
        os.rmdir(tmp)


def test_notify_socket_gone(t, exe):
    """The service manager's socket goes away: one warning, not one per ping; a notice when
    messages get through again."""
    with started(exe, env={"WATCHDOG_USEC": "200000"}) as (d, ls):
        n = d.notify
        n.closed = True
        n.thread.join(2)
        n.sock.close()
        os.unlink(n.path)
        time.sleep(1.5)  # about 15 pings
        warned = d.wait_line(r"Failed to notify the service manager: .*; will keep trying", 0, 2)
        t.ok(len(warned) == 1, f"the socket gone: one warning for about 15 pings ({len(warned)})",
             d.stderr_text())
        back = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            back.bind(n.path)
            back.settimeout(3 * SLOW)
            try:
                got = back.recv(4096)
            except socket.timeout:
                got = b""
            t.ok(b"WATCHDOG=1" in got, "a socket at the path again: WATCHDOG=1 arrives", repr(got))
            t.ok(d.wait_line(r"Notifying the service manager works again", 3 * SLOW),
                 "... and a notice says so", d.stderr_text())
            t.ok(len(d.wait_line(r"Failed to notify", 0, 2)) == 1, "still one warning", d.stderr_text())
            t.ok(d.stop() == 0, "stops with status 0", d.stderr_text())
        finally:
            back.close()


def test_no_notify_socket(t, exe):
    for what, env in (("NOTIFY_SOCKET unset", {}),
                      ("NOTIFY_SOCKET naming nothing", {"NOTIFY_SOCKET": "/nonexistent/notify"})):
        port = free_port()
        d = Daemon(exe, ["--listen", f"127.0.0.1:{port}"], notify=False, env=env).start()
        up = wait_until(lambda: d.wait_line(r"ready: ", 0.05), 10 * SLOW)
        t.ok(up, f"{what}: echod gets ready", d.stderr_text())
        got = roundtrip(("127.0.0.1", port), b"fine", 5 * SLOW) if up else b""
        t.ok(got == b"fine", f"{what}: echo works")
        st = d.stop()
        t.ok(st == 0, f"{what}: SIGTERM, exit status 0 ({st})", d.stderr_text())


if __name__ == "__main__":
    run([test_ready_and_status, test_status_coalesced, test_refused_counted, test_stopping,
         test_watchdog, test_libsystemd_only_while_called, test_libsystemd_not_in_child,
         test_libsystemd_unloadable_after_start, test_libsystemd_unloadable_at_start,
         test_notify_socket_gone, test_no_notify_socket])
