#!/usr/bin/env python3
"""inetd mode (Accept=yes): echod given one connected stream socket serves that connection
in-process, byte-exact, logs its one connection line and exits 0. Started by
systemd-socket-activate -a (TCP and AF_UNIX) and by passing an accepted socket on fd 3 (all
256 byte values, no child forked, EOF after the client's half-close, exit 0). The
connection gets TCP_NODELAY and SO_OOBINLINE like an accepted one; a stop with a peer that
takes nothing (zero window) ends within the drain timeout."""

import os
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (ALL_BYTES, LINE_RE, SLOW, SOCKET_ACTIVATE, Daemon, connect,  # noqa: E402
                       fill_until_stuck, free_port, have_ipv6, listen_socket, pattern, recv_exact,
                       recv_to_eof, run, socket_of, stream_echo, urgent_exchange,
                       fd_steal_refused)


def test_socket_activate_tcp(t, exe):
    if not SOCKET_ACTIVATE:
        for n in range(5):
            t.skip("systemd-socket-activate -a check %d" % n, "no systemd-socket-activate")
        return
    port = free_port()
    d = Daemon(exe, socket_activate=[["-a", "-l", "127.0.0.1:%d" % port]], notify=False).start()
    payload = pattern(300000)
    with connect(("127.0.0.1", port), 5 * SLOW) as c:
        cport = c.getsockname()[1]
        got = stream_echo(c, payload, 5 * SLOW)
    t.ok(got == payload, "-a: 300000 bytes echoed byte-exact, then EOF", "got %d bytes" % len(got))
    spawned = d.wait_line(r"^Spawned .* as PID (\d+)", 5 * SLOW)
    pid = int(spawned[0].group(1)) if spawned else -1
    died = d.wait_line(r"^Child %d died with code" % pid, 5 * SLOW)
    t.ok(bool(died) and died[0].string.endswith("code 0"), "-a: the echod process (pid %d) exits 0" % pid,
         d.stderr_text())
    conn = [ln for ln in d.lines() if LINE_RE.search(ln)]
    m = LINE_RE.search(conn[0]) if len(conn) == 1 else None
    t.ok(m is not None and m.group(1) == "127.0.0.1" and int(m.group(2)) == cport and int(m.group(3)) == pid
         and m.group(4) == "eof" and int(m.group(5)) == len(payload),
         "-a: one line 'connection from 127.0.0.1 port %d (pid %d) ended: eof, %d bytes'"
         % (cport, pid, len(payload)), d.stderr_text())
    t.ok(not [ln for ln in d.lines() if ln.startswith("ready:")],
         "-a: no ready line (no accept loop was started)", d.stderr_text())
    # A second connection gets its own process, which also exits 0.
    with connect(("127.0.0.1", port), 5 * SLOW) as c:
        got = stream_echo(c, b"second", 5 * SLOW)
    died = d.wait_line(r"^Child \d+ died with code", 5 * SLOW, count=2)
    t.ok(got == b"second" and len(died) == 2 and all(x.string.endswith("code 0") for x in died),
         "-a: a second connection is served by a second echod that exits 0", d.stderr_text())
    d.stop()


def test_socket_activate_unix(t, exe):
    if not SOCKET_ACTIVATE:
        t.skip("-a unix", "no systemd-socket-activate")
        t.skip("-a unix log", "no systemd-socket-activate")
        return
    with tempfile.TemporaryDirectory(prefix="echod-sockets-") as tmp:
        path = os.path.join(tmp, "inetd.sock")
        d = Daemon(exe, socket_activate=[["-a", "-l", path]], notify=False).start()
        with connect(path, 5 * SLOW) as c:
            got = stream_echo(c, b"\x00unix\xff" * 1000, 5 * SLOW)
        t.ok(got == b"\x00unix\xff" * 1000, "-a unix: echoed byte-exact", repr(got[:40]))
        ln = d.wait_line(r"connection from unix pid %d uid %d \(pid \d+\) ended: eof, 6000 bytes"
                         % (os.getpid(), os.getuid()), 5 * SLOW)
        t.ok(bool(ln), "-a unix: log line names 'unix pid %d uid %d'" % (os.getpid(), os.getuid()),
             d.stderr_text())
        d.stop()


def test_own_inetd(t, exe):
    """The test accepts and passes the connection on fd 3, as systemd does with Accept=yes;
    then it is echod's parent and sees its exit status directly."""
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        if fam == socket.AF_INET6 and not have_ipv6():
            for n in range(3):
                t.skip("own inetd v6 %d" % n, "no IPv6")
            continue
        with listen_socket(fam, host) as lst, connect(lst.getsockname()[:2], 5 * SLOW) as c:
            conn, _ = lst.accept()
            with conn:
                d = Daemon(exe, sockets=[conn], notify=False).start()
            payload = bytes(range(256)) * 4096
            got = stream_echo(c, payload, 5 * SLOW)
        rc = d.wait(5 * SLOW)
        t.ok(got == payload, "fd 3 connected %s: 1 MiB echoed byte-exact" % host, "got %d" % len(got))
        t.ok(rc == 0, "fd 3 connected %s: echod exits 0 after the client's EOF" % host,
             "rc=%r\n%s" % (rc, d.stderr_text()))
        lines = [ln for ln in d.lines() if ln.strip()]
        m = LINE_RE.search(lines[0]) if len(lines) == 1 else None
        t.ok(m is not None and m.group(1) == host and int(m.group(3)) == d.pid
             and int(m.group(5)) == len(payload),
             "fd 3 connected %s: exactly one log line, naming the peer and pid %d" % (host, d.pid),
             d.stderr_text())


def inetd(exe, args=(), rcvbuf=None):
    """echod in inetd mode on a fresh loopback connection: (daemon, client socket)."""
    with listen_socket() as lst:
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        c.settimeout(5 * SLOW)
        c.connect(lst.getsockname())
        conn, _ = lst.accept()
        with conn:
            d = Daemon(exe, list(args), sockets=[conn], notify=False).start()
    return d, c


def test_inetd_options(t, exe):
    d, c = inetd(exe)
    with c:
        c.sendall(b"x")
        recv_exact(c, 1, 5 * SLOW)  # echod has set its socket up
        cs = socket_of(d.pid, 3)
        refused = fd_steal_refused()
        if cs is None and refused:
            t.skip_unless_ci("inetd mode: TCP_NODELAY set on the passed connection", refused)
            t.skip_unless_ci("inetd mode: SO_OOBINLINE set on the passed connection", refused)
        elif cs is None:
            t.ok(False, "inetd mode: echod's fd 3 can be duplicated to read its options")
        else:
            with cs:
                nodelay = cs.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                inline = cs.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE)
            t.ok(nodelay != 0, f"inetd mode: TCP_NODELAY set on the passed connection ({nodelay})")
            t.ok(inline != 0, f"inetd mode: SO_OOBINLINE set on the passed connection ({inline})")
        got = urgent_exchange(c, b"", b"after", 3 * SLOW)
        t.ok(got == b"!after", "inetd mode: an urgent byte comes back in line", got)
    t.ok(d.wait(5 * SLOW) == 0, "inetd mode: exits 0 when the client goes", d.stderr_text())


def test_inetd_zero_window(t, exe):
    """A peer that never reads, with a tiny receive buffer: what echod sends is never
    acknowledged. Nobody will SIGKILL echod in inetd mode: its own timeouts must end it."""
    for what, args, limit in (("--idle-timeout 0 --drain-timeout 1", ["--idle-timeout", "0", "--drain-timeout", "1"], 1),
                              ("--drain-timeout 1 (what was sent fits)", ["--drain-timeout", "1"], 1)):
        d, c = inetd(exe, args, rcvbuf=2048)
        with c:
            if "--idle-timeout 0" in what:
                sent = fill_until_stuck(c, quiet=0.3 * SLOW)  # echod holds bytes it cannot send
            else:
                # all of it fits in echod's send buffer: it waits for the acknowledgement
                c.sendall(b"z" * 20000)
                sent = 20000
                time.sleep(0.3 * SLOW)
            t0 = time.monotonic()
            d.send_signal(signal.SIGTERM)
            st = d.wait(limit + 5 * SLOW)
            took = time.monotonic() - t0
        t.ok(st is not None and took < limit + 2 * SLOW,
             f"inetd mode, {what}: a zero-window peer ({sent} bytes sent, none read) and SIGTERM: echod "
             f"exits within the drain timeout ({took:.2f} s, status {st})", d.stderr_text())
        lines = [m for m in (LINE_RE.search(ln) for ln in d.lines()) if m]
        t.ok(len(lines) == 1 and lines[0].group(4) == "stop", f"inetd mode, {what}: its line says stop",
             d.stderr_text())


def test_accept_yes(t, exe):
    """Accept=yes: fd 3 is one connected socket; served in-process, then echod exits."""
    with listen_socket() as ls:
        client = connect(ls.getsockname(), 5 * SLOW)
        conn, _ = ls.accept()
        try:
            d = Daemon(exe, [], sockets=[conn]).start()
            conn.close()
            client.sendall(ALL_BYTES)
            got = recv_exact(client, 256, 10 * SLOW)
            t.ok(got == ALL_BYTES, "a connected socket on fd 3 (Accept=yes) is echoed")
            t.ok(d.children() == [], "... in-process (no child forked)", repr(d.children()))
            client.shutdown(socket.SHUT_WR)
            rest = recv_to_eof(client, 10 * SLOW)
            t.ok(rest == b"", "... EOF after the client's half-close")
            st = d.wait(10 * SLOW)
            t.ok(st == 0, f"... then echod exits 0 by itself (got {st})", d.stderr_text())
        finally:
            client.close()


if __name__ == "__main__":
    run([test_socket_activate_tcp, test_socket_activate_unix, test_own_inetd, test_inetd_options,
         test_inetd_zero_window, test_accept_yes])
