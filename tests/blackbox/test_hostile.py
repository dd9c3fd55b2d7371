#!/usr/bin/env python3
"""Hostile clients and odd environments: TCP urgent data is echoed in line and makes no
child spin; --max-clients holds with two listeners made ready at once; a launcher's ignored
SIGCHLD or blocked and ignored stop signals change nothing; a watchdog 60 days long keeps
poll()'s timeout sane; a client cycling at the cap does not flood the log; where
close_range() is refused, children still hold nothing but their connection."""

import os
import platform
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (EMULATED, SLOW, VALGRIND, Daemon, Skip, alive, connect, fd_targets,  # noqa: E402
                       listen_socket, no_valgrind, proc_stat, recv_exact, roundtrip, run,
                       socket_inode, started, udp_socket, urgent_exchange, wait_until)


def cpu_of(pid):
    st = proc_stat(pid)
    return st[2] if st else None


def test_urgent_data(t, exe):
    with started(exe) as (d, ls):
        with connect(ls.getsockname(), 5 * SLOW) as s:
            got = urgent_exchange(s, b"hello", b"world", 3 * SLOW)
            t.ok(got == b"hello!world", "a small exchange with an urgent byte: 'hello!world' comes back in "
                 "line, in order", got)
        wait_until(lambda: not d.children(), 5 * SLOW)
        with connect(ls.getsockname(), 5 * SLOW) as s:
            first = os.urandom(8192)
            s.sendall(first)
            echoed = recv_exact(s, 8192, 5 * SLOW)
            kids = d.children()
            child = kids[0][0] if len(kids) == 1 else None
            cpu0 = cpu_of(child) if child else None
            t0 = time.monotonic()
            s.send(b"!", socket.MSG_OOB)
            time.sleep(0.05)
            rest = os.urandom(1000)
            s.sendall(rest)
            try:
                got = recv_exact(s, 1001, 3 * SLOW)
            except (OSError, EOFError) as e:
                got = repr(e).encode()
            t.ok(echoed == first and got == b"!" + rest, "after 8 KiB (splice mode), the urgent byte and the "
                 "1000 bytes after it come back in line, in order", f"got {len(got)} bytes: {got[:40]!r}")
            time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
            cpu1 = cpu_of(child) if child else None
            bound = 0.3 if VALGRIND else 0.1
            t.ok(cpu0 is not None and cpu1 is not None and cpu1 - cpu0 < bound,
                 f"the child (pid {child}) does not spin: {0 if cpu0 is None or cpu1 is None else cpu1 - cpu0:.2f} "
                 f"s CPU in 2 s")
            s.sendall(b"more")
            t.ok(recv_exact(s, 4, 3 * SLOW) == b"more", "and keeps echoing")
        t.ok(d.stop() == 0, "stops with status 0")


def test_cap_two_listeners(t, exe):
    a, b = listen_socket(), listen_socket()
    try:
        d = Daemon(exe, ["--max-clients", "1"], sockets=[a, b]).start()
        d.wait_ready()
        d.send_signal(signal.SIGSTOP)
        try:
            ca = connect(a.getsockname(), 5 * SLOW)
            cb = connect(b.getsockname(), 5 * SLOW)
        finally:
            d.send_signal(signal.SIGCONT)
        with ca, cb:
            ca.sendall(b"a")
            cb.sendall(b"b")
            most, seen = 0, set()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.5 * SLOW:
                kids = d.children()
                seen.update(p for p, _ in kids)
                most = max(most, len(kids))
                time.sleep(0.02)
            t.ok(most == 1, f"--max-clients 1, a client waiting on each of two listeners: at most one child "
                 f"at a time ({most})")
        d.children()
        t.ok(d.stop() == 0, "stops with status 0", d.stderr_text())
        left = [p for p in d.known_children | seen if alive(p)]
        t.ok(not left, "no child left running after the stop", f"alive: {left}")
        t.ok(not [ln for ln in d.lines() if "No room for child" in ln], "no child ever found the table full",
             d.stderr_text())
    finally:
        a.close()
        b.close()


def ignore_sigchld():
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def test_sigchld_ignored(t, exe):
    ls = listen_socket()
    try:
        d = Daemon(exe, ["--max-clients", "2", "--drain-timeout", "2"], sockets=[ls],
                   preexec=ignore_sigchld).start()
        d.wait_ready()
        ok = 0
        for i in range(6):
            try:
                ok += roundtrip(ls.getsockname(), b"c%d" % i, 5 * SLOW) == b"c%d" % i
            except OSError:
                break
        t.ok(ok == 6, f"started with SIGCHLD ignored, --max-clients 2: six clients in turn are served ({ok})",
             d.stderr_text())
        held = connect(ls.getsockname(), 5 * SLOW)
        with held:
            held.sendall(b"h")
            try:
                recv_exact(held, 1, 3 * SLOW)
            except (OSError, EOFError):
                pass
            t0 = time.monotonic()
            st = d.stop(timeout=15 * SLOW)
            took = time.monotonic() - t0
        t.ok(st == 0 and took < 2 + 3 * SLOW, f"a stop ends within the 2 s drain timeout ({took:.2f} s, status {st})",
             d.stderr_text())
    finally:
        ls.close()


def block_and_ignore_stop():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_stop_signals_inherited(t, exe):
    ls = listen_socket()
    try:
        d = Daemon(exe, [], sockets=[ls], preexec=block_and_ignore_stop).start()
        d.wait_ready()
        with connect(ls.getsockname(), 5 * SLOW) as s:
            s.sendall(b"x")
            recv_exact(s, 1, 5 * SLOW)
            kids = d.children()
            t.ok(len(kids) == 1, f"started with SIGTERM/SIGINT ignored and blocked: a client is served ({kids})")
            if kids:
                os.kill(kids[0][0], signal.SIGTERM)
                t.ok(wait_until(lambda: not alive(kids[0][0]), 5 * SLOW),
                     "a SIGTERM to its child ends that connection")
        t.ok(d.stop(timeout=10 * SLOW) == 0, "SIGTERM stops echod, status 0", d.stderr_text())
    finally:
        ls.close()


def test_watchdog_60_days(t, exe):
    no_valgrind("/proc/PID/syscall shows valgrind's own calls")
    with started(exe, env={"WATCHDOG_USEC": str(60 * 86400 * 1000000)}) as (d, ls):
        t.ok(roundtrip(ls.getsockname(), b"wd", 5 * SLOW) == b"wd", "WATCHDOG_USEC of 60 days: echod serves")
        wait_until(lambda: not d.children(), 5 * SLOW)

        def blocked_in_poll():
            """/proc/PID/syscall's fields once the status update (due within 1 s) is out of the
            way and the loop waits for the watchdog alone."""
            with open(f"/proc/{d.pid}/syscall") as f:
                fields = f.read().split()
            if fields[0] != "7" or 0 <= int(fields[3], 16) & 0xffffffff <= 1000:
                return None
            return fields
        fields = wait_until(blocked_in_poll, 3, step=0.1)
        if platform.machine() != "x86_64" or not fields:
            t.skip("poll() timeout is positive", "not seen blocked in poll(2) on x86_64")
        else:
            timeout = struct.unpack("i", struct.pack("I", int(fields[3], 16) & 0xffffffff))[0]
            t.ok(timeout > 24 * 86400 * 1000, f"the wait for the watchdog's 30 days is a positive poll() timeout "
                 f"of about 24.8 days, not forever ({timeout} ms)")
        t.ok(d.stop() == 0, "and stops with status 0")


def test_cap_warning_flood(t, exe):
    with started(exe, ["--max-clients", "1"]) as (d, ls):
        ok = 0
        t0 = time.monotonic()
        for i in range(50):
            ok += roundtrip(ls.getsockname(), b"%d" % i, 5 * SLOW) == b"%d" % i
            wait_until(lambda: not d.children(), 5 * SLOW)
        took = time.monotonic() - t0
        time.sleep(0.2)
        warn = [ln for ln in d.lines() if "at the limit of 1 clients" in ln]
        t.ok(ok == 50, f"--max-clients 1: 50 connections in turn, each at the cap, served ({ok} in {took:.1f} s)")
        t.ok(1 <= len(warn) <= 2, f"at most 2 'at the limit' lines for 50 episodes ({len(warn)})",
             "\n".join(warn[:5]))
        t.ok(d.stop() == 0, "stops with status 0")


def test_close_range_refused(t, exe):
    no_valgrind("valgrind does not run a program under a seccomp filter of its own")
    if EMULATED:
        raise Skip("the helper cannot exec a cross-built echod: qemu-user does not follow execve()")
    helper = os.environ.get("ECHOD_TEST_NO_CLOSE_RANGE")
    if not helper or not os.access(helper, os.X_OK):
        raise Skip("no no-close-range helper (ECHOD_TEST_NO_CLOSE_RANGE)")
    ls, us = listen_socket(), udp_socket()
    try:
        d = Daemon(exe, [], sockets=[ls, us], launcher=[helper]).start()
        d.wait_ready()
        # READY=1 can arrive before stderr has been read: the warning comes before the ready line.
        d.wait_line(r"ready: ", 5 * SLOW)
        warn = [ln for ln in d.lines() if "close_range() is refused" in ln]
        t.ok(len(warn) == 1, "close_range() refused (ENOSYS): one warning at start", d.stderr_text())
        inodes = {socket_inode(ls), socket_inode(us)}
        with connect(ls.getsockname(), 5 * SLOW) as s:
            s.sendall(b"x")
            recv_exact(s, 1, 5 * SLOW)
            kids = wait_until(d.children, 5 * SLOW)
            fds = fd_targets(kids[0][0]) if kids else {}
            sockets = {fd: v for fd, v in fds.items() if v.startswith("socket:")}
            held = {int(v[8:-1]) for v in sockets.values()} & inodes
            rest = set(fds) - {0, 1, 2} - set(sockets)
            t.ok(kids and not held and len(sockets) == 1 and len(rest) == 1
                 and fds[next(iter(rest))] == "anon_inode:[signalfd]",
                 "the child holds only fds 0-2, its connection and the signalfd: no listener, no UDP socket",
                 repr(fds))
        t.ok(d.stop() == 0, "stops with status 0", d.stderr_text())
    finally:
        ls.close()
        us.close()


def fill_stderr(d):
    """Stops reading echod's stderr (a pipe here) and fills it, as a journal that stalls."""
    d.pause_stderr()
    w = os.open(f"/proc/{d.pid}/fd/2", os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(w, b"(stalled)\n")  # wakes the reader, which then waits
        time.sleep(0.2)
        for chunk in (b"(stalled)\n" * 100, b"\n"):  # the last bytes of room one by one
            try:
                while True:
                    os.write(w, chunk)
            except BlockingIOError:
                pass
    finally:
        os.close(w)


def test_stderr_stalled(t, exe):
    with started(exe, ["--log-level", "debug"]) as (d, ls):
        fill_stderr(d)
        t0 = time.monotonic()
        with connect(ls.getsockname(), 5 * SLOW) as s:
            s.sendall(b"ping")
            got = recv_exact(s, 4, 5 * SLOW)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5 * SLOW)
            eof = s.recv(1) == b""
        took = time.monotonic() - t0
        t.ok(got == b"ping" and eof and took < 3 * SLOW,
             f"stderr not read: a client is still served and closed ({took:.2f} s)")
        gone = wait_until(lambda: not d.children(), 5 * SLOW)
        t.ok(gone, "its child does not wait for ever to write its line: it is gone within seconds")
        with connect(ls.getsockname(), 5 * SLOW) as s:
            s.sendall(b"again")
            t.ok(recv_exact(s, 5, 5 * SLOW) == b"again", "the accept loop goes on serving")
        held = len(d.err)
        d.resume_stderr()
        # The reader takes what the pipe held before the main process logs again.
        wait_until(lambda: len(d.err) >= held + 60000, 5 * SLOW)
        with connect(ls.getsockname(), 5 * SLOW) as s:
            s.sendall(b"x")
            recv_exact(s, 1, 5 * SLOW)
        note = d.wait_line(r"(\d+) log lines were dropped: stderr was not writable", 5 * SLOW)
        t.ok(note and int(note[0].group(1)) >= 1,
             "once stderr takes lines again, the main process says how many it dropped", d.stderr_text()[-2000:])
        t.ok(d.stop() == 0, "stops with status 0")


def server_inodes(server_port, client_ports):
    """{"socket:[inode]"} of the server side of each loopback TCP connection from those ports."""
    out = set()
    with open("/proc/net/tcp") as f:
        for ln in f.readlines()[1:]:
            fields = ln.split()
            if int(fields[1].split(":")[1], 16) == server_port and int(fields[2].split(":")[1], 16) in client_ports:
                out.add(f"socket:[{fields[9]}]")
    return out


def test_close_range_refused_proxy(t, exe):
    """Without close_range() a child closes descriptors one by one up to a bound: with
    --proxy-protocol, connections still waiting for their header can hold descriptors above
    the child's own connection, and a child must not keep them (their clients would not see
    them closed while it lives)."""
    no_valgrind("valgrind does not run a program under a seccomp filter of its own")
    if EMULATED:
        raise Skip("the helper cannot exec a cross-built echod: qemu-user does not follow execve()")
    helper = os.environ.get("ECHOD_TEST_NO_CLOSE_RANGE")
    if not helper or not os.access(helper, os.X_OK):
        raise Skip("no no-close-range helper (ECHOD_TEST_NO_CLOSE_RANGE)")
    ls = listen_socket()
    addr = ls.getsockname()
    try:
        d = Daemon(exe, ["--proxy-protocol"], sockets=[ls], launcher=[helper]).start()
        d.wait_ready()
        with connect(addr, 5 * SLOW) as first, connect(addr, 5 * SLOW) as second:
            ports = {first.getsockname()[1], second.getsockname()[1]}
            t.ok(wait_until(lambda: len(server_inodes(addr[1], ports) & set(fd_targets(d.pid).values())) == 2,
                            5 * SLOW), "echod holds two connections waiting for their header", d.stderr_text())
            first.sendall(b"PROXY TCP4 192.0.2.1 198.51.100.1 1000 7\r\nx")
            recv_exact(first, 1, 5 * SLOW)
            kids = wait_until(d.children, 5 * SLOW)
            fds = fd_targets(kids[0][0]) if kids else {}
            sockets = [v for v in fds.values() if v.startswith("socket:")]
            t.ok(kids and len(sockets) == 1, "the first one's child holds its own connection only, not the "
                 "second one still waiting (close_range() refused)", repr(fds))
            second.close()
        t.ok(d.stop() == 0, "stops with status 0", d.stderr_text())
    finally:
        ls.close()


if __name__ == "__main__":
    run([test_urgent_data, test_cap_two_listeners, test_sigchld_ignored, test_stop_signals_inherited,
         test_watchdog_60_days, test_cap_warning_flood, test_close_range_refused,
         test_close_range_refused_proxy, test_stderr_stalled])
