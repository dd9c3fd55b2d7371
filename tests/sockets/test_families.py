#!/usr/bin/env python3
"""Every kind of socket in one daemon and each on its own: an IPv6 (::1) TCP listener and an
AF_UNIX listener echo (AF_UNIX peers logged as 'unix pid P uid U'); TCP v4 + TCP v6 + UDP +
AF_UNIX passed at once as fds 3..6 (LISTEN_FDS=4) are each served at the same time, named
in order in the ready line and in STATUS; TCP and UDP on one port through two chained
systemd-socket-activate; a passed AF_UNIX path is left in place at stop. --listen's forms:
[::1]:PORT (not answering on 127.0.0.1), PORT alone (dual-stack) and an AF_UNIX path; any
number of passed stream listeners of every family served at once."""

import os
import re
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (SLOW, SOCKET_ACTIVATE, Daemon, Skip, check_echo, command,  # noqa: E402
                       connect, free_port, have_ipv6, listen_socket, pattern, recv_exact, run,
                       stream_echo, udp_exchange, udp_socket, wait_until)

# The connection line of any peer, IP ('HOST port N') or AF_UNIX ('unix pid P uid U').
PEER_RE = re.compile(r"connection from (.+?) \(pid \d+\) ended: (eof|idle|reset|stop|error)[^,]*, "
                     r"\d+ bytes echoed in [0-9.]+ s")


def test_ipv6_tcp(t, exe):
    if not have_ipv6() or not SOCKET_ACTIVATE:
        for n in range(3):
            t.skip("ipv6 tcp %d" % n, "no IPv6 or systemd-socket-activate")
        return
    port = free_port(socket.AF_INET6, "::1")
    d = Daemon(exe, socket_activate=[["-l", "[::1]:%d" % port]], notify=False).start()
    payload = pattern(100000, seed=6)
    with connect(("::1", port), 5 * SLOW) as c:
        cport = c.getsockname()[1]
        got = stream_echo(c, payload, 5 * SLOW)
    t.ok(got == payload, "tcp [::1]: 100000 bytes echoed byte-exact", "got %d" % len(got))
    ready = d.wait_line(r"^ready: ", 5 * SLOW)
    t.ok(bool(ready) and ready[0].string.startswith("ready: tcp [::1]:%d;" % port),
         "ready line names 'tcp [::1]:%d'" % port, d.stderr_text())
    ln = d.wait_line(r"connection from ::1 port %d \(pid \d+\) ended: eof, 100000 bytes" % cport, 5 * SLOW)
    t.ok(bool(ln), "log line 'connection from ::1 port %d ...'" % cport, d.stderr_text())
    d.stop()


def test_unix_standalone(t, exe):
    with tempfile.TemporaryDirectory(prefix="echod-sockets-") as tmp:
        path = os.path.join(tmp, "standalone.sock")
        d = Daemon(exe, ["--listen", path], notify=False).start()
        ready = d.wait_line(r"^ready: ", 5 * SLOW)
        t.ok(bool(ready) and ready[0].string.startswith("ready: unix %s;" % path),
             "ready line names unix %s" % path, d.stderr_text())
        payload = b"\x00\x01\x02 unix \xfe\xff" * 5000
        with connect(path, 5 * SLOW) as c:
            got = stream_echo(c, payload, 5 * SLOW)
        t.ok(got == payload, "--listen PATH: AF_UNIX echo byte-exact")
        ln = d.wait_line(r"connection from unix pid %d uid %d \(pid \d+\) ended: eof, %d bytes"
                         % (os.getpid(), os.getuid(), len(payload)), 5 * SLOW)
        t.ok(bool(ln), "AF_UNIX peer logged as 'unix pid %d uid %d'" % (os.getpid(), os.getuid()),
             d.stderr_text())
        rc = d.stop()
        t.ok(rc == 0 and not os.path.exists(path), "exit 0 and the socket path it created is removed",
             "rc=%r exists=%r" % (rc, os.path.exists(path)))


def test_mixed(t, exe):
    v6 = have_ipv6()
    with tempfile.TemporaryDirectory(prefix="echod-sockets-") as tmp:
        upath = os.path.join(tmp, "mixed.sock")
        socks = ([listen_socket()] + ([listen_socket(socket.AF_INET6, "::1")] if v6 else [])
                 + [udp_socket(), listen_socket(path=upath)])
        p4, pu = socks[0].getsockname()[1], socks[-2].getsockname()[1]
        p6 = socks[1].getsockname()[1] if v6 else None
        d = Daemon(exe, sockets=socks, env={"LISTEN_FDNAMES": ":".join(["echo"] * len(socks))}).start()
        for s in socks:
            s.close()
        ready = d.wait_line(r"^ready: ", 5 * SLOW)
        expect = "ready: tcp 127.0.0.1:%d, %sudp 127.0.0.1:%d, unix %s; max 1024 clients; echod %s" % (
            p4, ("tcp [::1]:%d, " % p6) if v6 else "", pu, upath,
            subprocess.run(command(exe, "--version"), capture_output=True, text=True).stdout.split()[-1])
        t.ok(bool(ready) and ready[0].string == expect,
             "LISTEN_FDS=%d: ready line names each fd in order" % len(socks),
             "expected: %s\nlog:\n%s" % (expect, d.stderr_text()))
        t.ok(wait_until(d.notify.ready, 3 * SLOW)
             and re.search(r", 0 datagrams echoed, 0 dropped$", (d.notify.values("STATUS") or [""])[0]),
             "READY=1 with a STATUS that has the datagram counts", repr(d.notify.snapshot()))
        # Open one connection on each stream listener and keep them all open while the UDP
        # socket answers: the daemon serves all kinds at once.
        conns = []
        try:
            c4 = connect(("127.0.0.1", p4), 5 * SLOW)
            conns.append(c4)
            c6 = connect(("::1", p6), 5 * SLOW) if v6 else None
            if c6:
                conns.append(c6)
            cu = connect(upath, 5 * SLOW)
            conns.append(cu)
            for name, c in (("tcp v4", c4), ("tcp v6", c6), ("unix", cu)):
                if c is None:
                    t.skip("mixed " + name, "no IPv6")
                    continue
                msg = ("hello over %s" % name).encode()
                got = stream_echo(c, msg, 5 * SLOW, shut=False)
                t.ok(got == msg, "mixed: %s echoes while the others are open" % name, repr(got))
            with udp_socket() as cd:
                ans = udp_exchange(cd, ("127.0.0.1", pu), b"datagram" * 100, 3 * SLOW)
            t.ok(ans is not None and ans[0] == b"datagram" * 100, "mixed: udp echoes", repr(ans))
            for c in conns:
                stream_echo(c, b"end", 5 * SLOW)
        finally:
            for c in conns:
                c.close()
        st = d.notify.wait_status(lambda f: f[2] == len(conns) and f[0] == 0 and f[4] == 1, 4 * SLOW)
        t.ok(st is not None and st[0] == 0 and st[2] == len(conns) and st[4] == 1,
             "STATUS: 0 active, %d served, 1 datagram echoed" % len(conns),
             "last STATUS: %r" % d.notify.last_status())
        rc = d.stop()
        t.ok(rc == 0, "mixed daemon exits 0 on SIGTERM", "rc=%r\n%s" % (rc, d.stderr_text()))
        t.ok(os.path.exists(upath), "a passed AF_UNIX socket's path is not removed (systemd owns it)")
    peers = sorted(m.group(1).split(" port")[0] for m in map(PEER_RE.search, d.lines()) if m)
    want = sorted(["127.0.0.1"] + (["::1"] if v6 else []) + ["unix pid %d uid %d" % (os.getpid(), os.getuid())])
    t.ok(peers == want, "one connection line per kind: %s" % ", ".join(want), d.stderr_text())


def test_chained(t, exe):
    """TCP and UDP on one port: the outer systemd-socket-activate binds TCP, the inner one UDP
    and passes both on (fd 3 tcp, fd 4 udp)."""
    if not SOCKET_ACTIVATE:
        for n in range(3):
            t.skip("chained %d" % n, "no systemd-socket-activate")
        return
    port = free_port()
    d = Daemon(exe, socket_activate=[["-l", "127.0.0.1:%d" % port],
                                     ["--datagram", "-l", "127.0.0.1:%d" % port]], notify=False).start()
    with connect(("127.0.0.1", port), 5 * SLOW) as c:
        got = stream_echo(c, b"tcp on the shared port", 5 * SLOW)
    t.ok(got == b"tcp on the shared port", "chained: tcp 127.0.0.1:%d echoes" % port, d.stderr_text())
    with udp_socket() as cd:
        ans = udp_exchange(cd, ("127.0.0.1", port), b"udp on the shared port", 3 * SLOW)
    t.ok(ans is not None and ans[0] == b"udp on the shared port", "chained: udp 127.0.0.1:%d echoes" % port,
         d.stderr_text())
    ready = d.wait_line(r"^ready: ", 5 * SLOW)
    t.ok(bool(ready) and ready[0].string.startswith("ready: tcp 127.0.0.1:%d, udp 127.0.0.1:%d;" % (port, port)),
         "chained: ready line names tcp and udp on port %d" % port, d.stderr_text())
    d.stop()


def test_standalone_ipv6(t, exe):
    if not have_ipv6():
        raise Skip("no IPv6 on the loopback here")
    port = free_port(socket.AF_INET6, "::1")
    d = Daemon(exe, ["--listen", f"[::1]:{port}"]).start()
    d.wait_ready()
    check_echo(t, ("::1", port), f"--listen [::1]:{port}")
    try:
        with connect(("127.0.0.1", port), 1):
            v4 = True
    except OSError:
        v4 = False
    t.ok(not v4, "--listen [::1]:PORT does not answer on 127.0.0.1")
    t.ok(d.stop() == 0, "stops with status 0")


def test_dual_stack(t, exe):
    if not have_ipv6():
        raise Skip("no IPv6 on the loopback here")
    port = free_port(socket.AF_INET6, "::")
    d = Daemon(exe, ["--listen", str(port)]).start()
    d.wait_ready()
    check_echo(t, ("127.0.0.1", port), f"--listen {port} (dual-stack) over 127.0.0.1")
    check_echo(t, ("::1", port), f"--listen {port} (dual-stack) over ::1")
    t.ok(d.stop() == 0, "stops with status 0")


def test_standalone_unix(t, exe):
    with tempfile.TemporaryDirectory(prefix="echod-unix-") as tmp:
        path = os.path.join(tmp, "echo.sock")
        d = Daemon(exe, ["--listen", path]).start()
        d.wait_ready()
        check_echo(t, path, "--listen PATH (AF_UNIX)")
        t.ok(d.stop() == 0, "stops with status 0")


def test_activation_several(t, exe):
    """Any number of passed stream listeners, of every family, served at once."""
    tmp = tempfile.mkdtemp(prefix="echod-unix-")
    socks = [listen_socket(), listen_socket(path=os.path.join(tmp, "e.sock"))]
    if have_ipv6():
        socks.append(listen_socket(socket.AF_INET6, "::1"))
    try:
        d = Daemon(exe, [], sockets=socks).start()
        d.wait_ready()
        for i, s in enumerate(socks):
            check_echo(t, s.getsockname(), f"passed listener on fd {i + 3} "
                       f"({'unix' if s.family == socket.AF_UNIX else s.getsockname()[0]})")
        # at once: one open connection on each, then all answer
        conns = [connect(s.getsockname(), 5 * SLOW) for s in socks]
        try:
            for i, c in enumerate(conns):
                c.sendall(b"%d" % i)
            got = [recv_exact(c, 1, 5 * SLOW) for c in conns]
            t.ok(got == [b"%d" % i for i in range(len(conns))],
                 "one open connection on every listener, all served concurrently")
        finally:
            for c in conns:
                c.close()
        t.ok(d.stop() == 0, "stops with status 0")
    finally:
        for s in socks:
            s.close()
        os.unlink(os.path.join(tmp, "e.sock"))
        os.rmdir(tmp)


if __name__ == "__main__":
    run([test_ipv6_tcp, test_unix_standalone, test_mixed, test_chained, test_standalone_ipv6,
         test_dual_stack, test_standalone_unix, test_activation_several])
