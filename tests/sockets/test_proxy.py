#!/usr/bin/env python3
"""--proxy-protocol without a balancer: the test speaks PROXY v1 and v2 itself. The header is
never echoed and the echo is byte-exact after it (header and payload in one segment, the
header split across many); the log line names the claimed client (the connection's own
address for LOCAL and UNKNOWN); --max-per-source counts the claimed address; a missing,
malformed, unsupported, oversized, slow or cut-off header is closed without an echo,
counted in STATUS and logged; a slow header stalls nobody, and waiting headers count
toward --max-clients; AF_UNIX listeners, unnamed sockets with --proxy-protocol=NAME and
inetd mode behave as documented."""

import os
import re
import select
import signal
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (LINE_RE, SLOW, Daemon, connect, fd_targets, is_refused_or_closed,  # noqa: E402
                       listen_socket, pattern, proc_stat, recv_to_eof, run, stream_echo, wait_until)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
# The header deadline of echod (PENDING_TIMEOUT_USEC).
HEADER_TIMEOUT = 3.0


def v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src=None, dst=None, sport=0, dport=0, command=1, tlvs=b""):
    """A v2 header: PROXY over TCP for src/dst, or with src None the family UNSPEC."""
    if src is None:
        return SIG + bytes([0x20 | command, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    if ":" in src:
        fam, body = 0x21, socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        fam, body = 0x11, socket.inet_aton(src) + socket.inet_aton(dst)
    body += struct.pack("!HH", sport, dport) + tlvs
    return SIG + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


def exchange(addr, header, payload=b"", split=False):
    """Connects, sends header and payload (with split, the header 5 bytes at a time, 20 ms
    apart, then the payload; else both in one send), half-closes and returns (what came
    back, the local port)."""
    with connect(addr, 5 * SLOW) as c:
        port = c.getsockname()[1] if not isinstance(addr, str) else None
        if split:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(header), 5):
                c.sendall(header[i:i + 5])
                time.sleep(0.02)
            c.sendall(payload)
        else:
            c.sendall(header + payload)
        c.shutdown(socket.SHUT_WR)
        return recv_to_eof(c, 5 * SLOW), port


def conn_lines(d):
    return [LINE_RE.search(ln) for ln in d.lines() if LINE_RE.search(ln)]


def test_headers_echo(t, exe):
    ls = listen_socket()
    addr = ls.getsockname()
    d = Daemon(exe, ["--proxy-protocol"], sockets=[ls]).start()
    ls.close()
    d.wait_ready()
    t.ok(bool(d.wait_line(r"ready: tcp 127\.0\.0\.1:\d+ \(PROXY protocol\)", 2)),
         "the ready line marks the listener as PROXY protocol", d.stderr_text())
    payload = b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n\x00\r\n" + pattern(3000)
    cases = [
        ("v1 TCP4", v1("192.0.2.10", "198.51.100.1", 40001, 7), "192.0.2.10", 40001),
        ("v1 TCP6", v1("2001:db8::10", "2001:db8::1", 40002, 7), "2001:db8::10", 40002),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n", "127.0.0.1", None),
        ("v2 PROXY TCP4", v2("192.0.2.11", "198.51.100.1", 40003, 7), "192.0.2.11", 40003),
        ("v2 PROXY TCP6", v2("2001:db8::11", "2001:db8::1", 40004, 7), "2001:db8::11", 40004),
        ("v2 PROXY TCP4 with TLVs", v2("192.0.2.12", "198.51.100.1", 40005, 7,
                                       tlvs=b"\x05\x00\x04abcd\x04\x00\x02\x00\x00"), "192.0.2.12", 40005),
        ("v2 LOCAL", v2(command=0), "127.0.0.1", None),
        ("v2 PROXY UNSPEC", v2(command=1), "127.0.0.1", None),
    ]
    n = 0
    for name, header, host, port in cases:
        for how, split in (("in one segment", False), ("split across segments", True)):
            got, local_port = exchange(addr, header, payload, split)
            n += 1
            t.ok(got == payload, f"{name}, {how}: the payload comes back byte-exact, the header never",
                 f"got {len(got)} bytes, starting {got[:60]!r}")
            want_port = port if port is not None else local_port
            m = wait_until(lambda: [x for x in conn_lines(d) if int(x.group(2)) == want_port], 5 * SLOW)
            t.ok(bool(m) and m[0].group(1) == host and int(m[0].group(5)) == len(payload),
                 f"{name}, {how}: the log line names {host} port {want_port}", d.stderr_text()[-1500:])
    # 1 MiB after a v2 header, streamed both ways at once
    with connect(addr, 5 * SLOW) as c:
        c.sendall(v2("192.0.2.13", "198.51.100.1", 40006, 7))
        big = pattern(1 << 20, 15)
        got = stream_echo(c, big, 20 * SLOW)
    t.ok(got == big, "1 MiB after a v2 header comes back byte-exact", f"got {len(got)} bytes")
    st = d.notify.wait_status(lambda f: f[2] == n + 1, 4 * SLOW)
    t.ok(st is not None and st[2] == n + 1 and st[3] == 0, f"STATUS: {n + 1} served, 0 refused",
         repr(d.notify.last_status()))
    t.ok(d.stop() == 0, "exit 0 on SIGTERM", d.stderr_text()[-1000:])


def test_per_source_claimed(t, exe):
    ls = listen_socket()
    addr = ls.getsockname()
    d = Daemon(exe, ["--proxy-protocol", "--max-per-source", "1"], sockets=[ls]).start()
    ls.close()
    d.wait_ready()
    conns = []
    try:
        def open_as(src, sport):
            c = connect(addr, 5 * SLOW)
            conns.append(c)
            c.sendall(v1(src, "198.51.100.1", sport, 7) + b"hello")
            c.settimeout(3 * SLOW)
            try:
                return c.recv(100)
            except (ConnectionResetError, socket.timeout) as e:
                return repr(e)
        a = open_as("203.0.113.7", 1001)
        b = open_as("203.0.113.8", 1002)
        t.ok(a == b"hello" and b == b"hello",
             "two connections from 127.0.0.1 claiming two clients are both served", f"{a!r} {b!r}")
        c = connect(addr, 5 * SLOW)
        conns.append(c)
        c.sendall(v2("203.0.113.7", "198.51.100.1", 1003, 7) + b"again")
        t.ok(is_refused_or_closed(c, 3 * SLOW),
             "a second concurrent connection claiming 203.0.113.7 is refused (the cap counts the client)")
        st = d.notify.wait_status(lambda f: f[3] == 1, 4 * SLOW)
        t.ok(st is not None and st[3] == 1 and st[2] == 2, "STATUS: 2 served, 1 refused",
             repr(d.notify.last_status()))
        t.ok(bool(d.wait_line(r"Refused 1 connection over the limit of 1 per source", 5 * SLOW)),
             "the refusal is logged as over the per-source limit", d.stderr_text())
    finally:
        for c in conns:
            c.close()
    t.ok(d.stop() == 0, "exit 0 on SIGTERM", d.stderr_text()[-1000:])


BAD = [
    ("no header", b"hello, echo\r\n", "no PROXY header"),
    ("an HTTP request", b"GET / HTTP/1.0\r\n\r\n", "no PROXY header"),
    ("malformed v1", b"PROXY TCP4 192.0.2.1 198.51.100.1 01 7\r\nhello", "malformed v1 header"),
    ("v1 naming a host", b"PROXY TCP4 localhost 198.51.100.1 1 7\r\nhello", "malformed v1 header"),
    ("malformed v2", SIG + b"\x21\x11\x00\x0b" + bytes(11) + b"hello", "malformed v2 header"),
    ("v2 of version 3", SIG + b"\x31\x11\x00\x0c" + bytes(12), "unsupported v2 version or command"),
    ("oversized v1", b"PROXY UNKNOWN " + b"x" * 300 + b"\r\n", "oversized header"),
    ("oversized v2", SIG + b"\x21\x11\x10\x00" + bytes(4096), "oversized header"),
    ("cut off", b"PROXY TCP4 192.0.2.1 19", "closed before the header ended"),
]


def test_bad_headers(t, exe):
    ls = listen_socket()
    addr = ls.getsockname()
    d = Daemon(exe, ["--proxy-protocol"], sockets=[ls]).start()
    ls.close()
    d.wait_ready()
    for i, (name, data, reason) in enumerate(BAD):
        with connect(addr, 5 * SLOW) as c:
            port = c.getsockname()[1]
            try:
                c.sendall(data)
                if name == "cut off":
                    c.shutdown(socket.SHUT_WR)
                got = recv_to_eof(c, 5 * SLOW)
            except (ConnectionResetError, BrokenPipeError):
                got = b""
        t.ok(got == b"", f"{name}: closed without a byte echoed", repr(got[:80]))
        if i == 0:
            ln = d.wait_line(r"Refused 1 connection without a valid PROXY header", 5 * SLOW)
            t.ok(bool(ln) and f"the last from 127.0.0.1 port {port}: {reason}" in ln[0].string,
                 f"{name}: logged at once, naming the connection and '{reason}'", d.stderr_text())
    # a slow one: the first bytes, then nothing
    with connect(addr, 5 * SLOW) as c:
        c.sendall(b"PROXY TCP4 192.0.2.1")
        start = time.monotonic()
        closed = is_refused_or_closed(c, HEADER_TIMEOUT + 5 * SLOW)
        took = time.monotonic() - start
    t.ok(closed and HEADER_TIMEOUT - 0.3 <= took <= HEADER_TIMEOUT + 2 * SLOW,
         f"slow: closed without an echo after the header deadline of {HEADER_TIMEOUT:g} s ({took:.2f} s)")
    n_bad = len(BAD) + 1
    st = d.notify.wait_status(lambda f: f[3] == n_bad, 4 * SLOW)
    t.ok(st is not None and st[3] == n_bad and st[2] == 0, f"STATUS: 0 served, {n_bad} refused",
         repr(d.notify.last_status()))
    # the next report comes at the end of the interval, with the reasons counted
    ln = d.wait_line(r"Refused %d connections without a valid PROXY header" % (n_bad - 1), 15 * SLOW)
    t.ok(bool(ln) and "the last from 127.0.0.1 port" in ln[0].string and
         "(in all: 2 no header, 3 malformed, 1 unsupported, 2 oversized, 1 too slow, 1 closed or reset "
         "before its end)" in ln[0].string,
         "the rest are reported together within the interval, by reason", d.stderr_text())
    t.ok(not conn_lines(d), "no connection line for any of them", d.stderr_text())
    t.ok(d.stop() == 0, "exit 0 on SIGTERM", d.stderr_text()[-1000:])


def test_slow_stalls_nobody(t, exe):
    ls = listen_socket()
    addr = ls.getsockname()
    d = Daemon(exe, ["--proxy-protocol", "--max-clients", "3"], sockets=[ls]).start()
    ls.close()
    d.wait_ready()
    slow = [connect(addr, 5 * SLOW) for _ in range(2)]
    try:
        slow[0].sendall(b"PROXY TCP4 ")
        slow[1].sendall(SIG[:7])
        start = time.monotonic()
        got, _ = exchange(addr, v1("192.0.2.20", "198.51.100.1", 5000, 7), b"quick")
        took = time.monotonic() - start
        t.ok(got == b"quick" and took < 1.0 * SLOW,
             f"two headers trickling in do not stall another client ({took:.2f} s)", repr(got))
        # With 2 waiting and 1 served at --max-clients 3, the next waits in the backlog.
        held = connect(addr, 5 * SLOW)
        slow.append(held)
        held.sendall(v1("192.0.2.21", "198.51.100.1", 5001, 7) + b"held")
        held.settimeout(3 * SLOW)
        t.ok(held.recv(10) == b"held", "a third client is served: 2 waiting + 1 is the cap")
        third = connect(addr, 5 * SLOW)
        slow.append(third)
        third.sendall(v1("192.0.2.22", "198.51.100.1", 5002, 7) + b"later")
        third.settimeout(1.0)
        try:
            early = third.recv(10)
        except socket.timeout:
            early = None
        t.ok(early is None, "at the cap (2 waiting for a header, 1 client), the next one is not served",
             repr(early))
        third.settimeout(HEADER_TIMEOUT + 5 * SLOW)
        late = third.recv(10)
        took = time.monotonic() - start
        t.ok(late == b"later" and took >= HEADER_TIMEOUT - 0.3,
             f"... and is once the two slow ones time out ({took:.2f} s after they began)", repr(late))
        t.ok(all(is_refused_or_closed(s, 1) for s in slow[:2]), "the two slow ones were closed")
        st = d.notify.wait_status(lambda f: f[3] == 2, 4 * SLOW)
        t.ok(st is not None and st[3] == 2, "STATUS: the two slow ones refused", repr(d.notify.last_status()))
    finally:
        for s in slow:
            s.close()
    t.ok(d.stop() == 0, "exit 0 on SIGTERM", d.stderr_text()[-1000:])


def closing_times(socks, timeout):
    """{name: monotonic time of EOF or reset} for each of socks ({name: socket}) that the peer
    closes within timeout without sending data; a socket that gets data is left out."""
    out, left = {}, dict(socks)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        ready, _, _ = select.select(list(left.values()), [], [], max(0.0, deadline - time.monotonic()))
        for name, c in list(left.items()):
            if c not in ready:
                continue
            del left[name]
            try:
                got = c.recv(1)
            except ConnectionResetError:
                got = b""
            if got == b"":
                out[name] = time.monotonic()
    return out


def accepted_by(pid, server_port, client_port):
    """True once pid holds the server side of the TCP connection between those loopback
    ports (its inode in /proc/net/tcp, 0 while it waits in the accept queue, among pid's fds)."""
    with open("/proc/net/tcp") as f:
        for ln in f.readlines()[1:]:
            fields = ln.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                return inode != "0" and f"socket:[{inode}]" in fd_targets(pid).values()
    return False


def test_cap_over_listeners(t, exe):
    """Two PROXY listeners readable in the same pass with one place left in the cap: only
    one connection is taken, the other waits in its backlog until a place is free."""
    socks = [listen_socket(), listen_socket()]
    a, b = socks[0].getsockname(), socks[1].getsockname()
    d = Daemon(exe, ["--proxy-protocol", "--max-clients", "2"], sockets=socks).start()
    for s in socks:
        s.close()
    d.wait_ready()
    conns = {}
    try:
        conns["x"] = connect(a, 5 * SLOW)  # silent: waits for its header, one place left
        x_port = conns["x"].getsockname()[1]
        t.ok(wait_until(lambda: accepted_by(d.pid, a[1], x_port), 5 * SLOW), "echod takes the first silent one")
        os.kill(d.pid, signal.SIGSTOP)
        try:
            conns["p"], conns["q"] = connect(a, 5 * SLOW), connect(b, 5 * SLOW)  # silent too
        finally:
            os.kill(d.pid, signal.SIGCONT)
        closed = closing_times(conns, 3 * HEADER_TIMEOUT + 10 * SLOW)
        t.ok(sorted(closed) == ["p", "q", "x"], "all three are closed in the end without an echo", repr(closed))
        # q can only be taken once x is gone, and then has its own full header timeout.
        gap = closed.get("q", 0) - closed.get("x", 0)
        t.ok(gap >= HEADER_TIMEOUT - 0.5, f"the one on the second listener was taken only once a place was "
             f"free: closed {gap:.2f} s after the first one", repr(closed))
        st = d.notify.wait_status(lambda f: f[3] == 3, 4 * SLOW)
        t.ok(st is not None and st[3] == 3 and st[0] == 0, "STATUS: 3 refused, none active",
             repr(d.notify.last_status()))
    finally:
        for c in conns.values():
            c.close()
    t.ok(d.stop() == 0, "exit 0 on SIGTERM", d.stderr_text()[-1000:])


def timed_out(conns):
    """Whether echod has closed any of these silent connections already (their header
    timeout): each then reads as end of file."""
    poller = select.poll()
    for c in conns:
        poller.register(c, select.POLLIN)
    return bool(poller.poll(0))


def test_no_spin_below_cap(t, exe):
    """Back below --max-clients while the table of waiting headers (PENDING_MAX, 128) is full:
    no listener may be polled, and the loop must sleep, not poll() with no timeout again and
    again until a waiting header times out."""
    ls = listen_socket(backlog=256)
    addr = ls.getsockname()
    d = Daemon(exe, ["--proxy-protocol", "--max-clients", "130"], sockets=[ls]).start()
    ls.close()
    d.wait_ready()
    held, silent = [], []
    try:
        for i in range(2):
            c = connect(addr, 5 * SLOW)
            held.append(c)
            c.sendall(v1("192.0.2.30", "198.51.100.1", 6000 + i, 7) + b"x")
            c.settimeout(5 * SLOW)
            c.recv(1)
        n_fds = len(fd_targets(d.pid))
        for _ in range(128):
            silent.append(connect(addr, 5 * SLOW))
        begun = time.monotonic()
        taken = wait_until(lambda: len(fd_targets(d.pid)) >= n_fds + 128, 2 * SLOW)
        if not taken and timed_out(silent):
            # The first silent ones were closed at their header timeout before the last were
            # taken: the table cannot be seen full here, which says nothing of echod.
            t.skip("echod takes 128 silent connections: 2 clients + 128 waiting is the cap",
                   "too slow here to take 128 connections within one header timeout")
        else:
            t.ok(taken, "echod takes 128 silent connections: 2 clients + 128 waiting is the cap")
        held.pop().close()  # one place free again; the waiting table stays full
        t.ok(wait_until(lambda: len(d.children()) == 1, 2 * SLOW), "the client that left is reaped")
        cpu_before = proc_stat(d.pid)[2]
        time.sleep(1.0)
        cpu = proc_stat(d.pid)[2] - cpu_before
        if time.monotonic() > begun + HEADER_TIMEOUT - 0.2:
            t.skip("echod sleeps below the cap while the waiting table is full", "too slow here to "
                   "measure before the waiting headers time out")
        else:
            t.ok(cpu < 0.3, f"echod sleeps below the cap while the waiting table is full ({cpu:.2f} s of "
                 "CPU in 1 s)")
    finally:
        for c in held + silent:
            c.close()
    t.ok(d.stop() == 0, "exit 0 on SIGTERM", d.stderr_text()[-1000:])


def test_which_listeners(t, exe):
    """AF_UNIX listeners never expect a header; with --proxy-protocol=NAME only the passed
    sockets of that name (LISTEN_FDNAMES) do."""
    with tempfile.TemporaryDirectory(prefix="echod-proxy-") as tmp:
        path = os.path.join(tmp, "echo.sock")
        socks = [listen_socket(), listen_socket(), listen_socket(path=path)]
        a, b = socks[0].getsockname(), socks[1].getsockname()
        d = Daemon(exe, ["--proxy-protocol=balanced"], sockets=socks,
                   env={"LISTEN_FDNAMES": "balanced:direct:local"}).start()
        for s in socks:
            s.close()
        d.wait_ready()
        header = v1("192.0.2.30", "198.51.100.1", 6000, 7)
        got, _ = exchange(a, header, b"via the balancer")
        t.ok(got == b"via the balancer", "the socket named 'balanced' takes the header off", repr(got))
        got, _ = exchange(b, header, b"direct")
        t.ok(got == header + b"direct", "the socket named 'direct' echoes everything (no header expected)",
             repr(got))
        got, _ = exchange(path, header, b"unix")
        t.ok(got == header + b"unix", "the AF_UNIX socket echoes everything (no header expected)", repr(got))
        t.ok(d.stop() == 0, "exit 0 on SIGTERM", d.stderr_text()[-1000:])
        lines = conn_lines(d)
        # Each child closes its connection before it logs: the lines may come in either order.
        t.ok(sorted(m.group(1) for m in lines) == ["127.0.0.1", "192.0.2.30"],
             "log lines: the claimed client and the direct one", d.stderr_text())


def test_inetd(t, exe):
    """inetd mode: the one connection's header is read in-process."""
    for name, data, want_host in (("good", v2("192.0.2.40", "198.51.100.1", 7000, 7) + b"inetd", "192.0.2.40"),
                                  ("bad", b"PROXY TCP4 nonsense\r\ninetd", None)):
        with listen_socket() as lst, connect(lst.getsockname(), 5 * SLOW) as c:
            conn, _ = lst.accept()
            with conn:
                d = Daemon(exe, ["--proxy-protocol"], sockets=[conn], notify=False).start()
            try:
                c.sendall(data)
                c.shutdown(socket.SHUT_WR)  # a bad header may be refused (reset) before this
                got = recv_to_eof(c, 5 * SLOW)
            except socket.timeout:
                raise
            except OSError:
                got = b""
        rc = d.wait(5 * SLOW)
        if want_host:
            m = conn_lines(d)
            t.ok(got == b"inetd" and rc == 0 and len(m) == 1 and m[0].group(1) == want_host
                 and m[0].group(2) == "7000",
                 f"inetd, {name} header: echoed after it, exit 0, the line names {want_host} port 7000",
                 f"got {got!r} rc {rc} {d.stderr_text()}")
        else:
            t.ok(got == b"" and rc == 0 and not conn_lines(d) and re.search(
                 r"Refused the connection from 127\.0\.0\.1 port \d+: malformed v1 header", d.stderr_text()),
                 f"inetd, {name} header: closed without an echo, one line with the reason, exit 0",
                 f"got {got!r} rc {rc} {d.stderr_text()}")


if __name__ == "__main__":
    run([test_headers_echo, test_per_source_claimed, test_bad_headers, test_slow_stalls_nobody,
         test_cap_over_listeners, test_no_spin_below_cap, test_which_listeners, test_inetd])
