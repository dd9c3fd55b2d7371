#!/usr/bin/env python3
"""UDP echo (RFC 862, datagram side): 1, 512 and 65507-byte datagrams come back byte-exact
over IPv4 and IPv6 (::1), with the socket passed by systemd-socket-activate --datagram,
passed on fd 3 by hand, or opened with --listen-udp; answers leave from the address the
datagram was sent to; a datagram too large to echo over IPv4 is dropped, not truncated;
the counts reach STATUS."""

import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (SLOW, SOCKET_ACTIVATE, Daemon, free_port, have_ipv6, pattern,  # noqa: E402
                       run, udp_exchange, udp_socket)

SIZES = (1, 512, 65507)


def check_sizes(t, family, dest, label, bind_host):
    with udp_socket(family, bind_host) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for n in SIZES:
            payload = pattern(n, seed=family)
            ans = udp_exchange(c, dest, payload, 5 * SLOW)
            t.ok(ans is not None and ans[0] == payload,
                 "%s: %d-byte datagram echoed byte-exact" % (label, n),
                 "no answer" if ans is None else "got %d bytes" % len(ans[0]))


def test_socket_activate_v4(t, exe):
    """systemd-socket-activate --datagram, IPv4."""
    if not SOCKET_ACTIVATE:
        for n in SIZES:
            t.skip("socket-activate v4 %d bytes" % n, "no systemd-socket-activate")
        t.skip("socket-activate v4 STATUS", "no systemd-socket-activate")
        return
    port = free_port()
    d = Daemon(exe, socket_activate=[["--datagram", "-l", "127.0.0.1:%d" % port]]).start()
    check_sizes(t, socket.AF_INET, ("127.0.0.1", port), "activated udp 127.0.0.1", "127.0.0.1")
    st = d.notify.wait_status(lambda f: f[4] == 3, 4 * SLOW)
    t.ok(st is not None and st[4] == 3 and st[5] == 0,
         "STATUS counts 3 datagrams echoed, 0 dropped", "last STATUS: %r" % d.notify.last_status())
    d.stop()


def test_socket_activate_v6(t, exe):
    """systemd-socket-activate --datagram, IPv6 ::1."""
    if not have_ipv6() or not SOCKET_ACTIVATE:
        for n in SIZES:
            t.skip("socket-activate v6 %d bytes" % n, "no IPv6 or systemd-socket-activate")
        return
    port = free_port(socket.AF_INET6, "::1")
    d = Daemon(exe, socket_activate=[["--datagram", "-l", "[::1]:%d" % port]], notify=False).start()
    check_sizes(t, socket.AF_INET6, ("::1", port), "activated udp [::1]", "::1")
    d.stop()


def test_fd3_v6(t, exe):
    """The test's own activation: an IPv6 UDP socket on fd 3."""
    if not have_ipv6():
        for n in SIZES:
            t.skip("fd 3 udp v6 %d bytes" % n, "no IPv6")
        t.skip("oversized IPv6 datagram", "no IPv6")
        t.skip("oversized counted", "no IPv6")
        return
    with udp_socket(socket.AF_INET6, "::1") as s:
        port = s.getsockname()[1]
        d = Daemon(exe, sockets=[s]).start()
    check_sizes(t, socket.AF_INET6, ("::1", port), "fd 3 udp [::1]", "::1")
    # IPv6 can carry 65508..65527 bytes; echod echoes at most 65507 and must never send a
    # truncated copy back.
    with udp_socket(socket.AF_INET6, "::1") as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        ans = udp_exchange(c, ("::1", port), pattern(65527), 1.5 * SLOW)
        t.ok(ans is None, "65527-byte IPv6 datagram: no answer (never a truncated echo)",
             "" if ans is None else "got %d bytes back" % len(ans[0]))
    st = d.notify.wait_status(lambda f: f[5] >= 1, 4 * SLOW)
    t.ok(st is not None and st[4] == 3 and st[5] == 1,
         "oversized datagram counted as dropped in STATUS", "last STATUS: %r" % d.notify.last_status())
    d.stop()


def test_standalone(t, exe):
    """--listen-udp PORT (dual-stack wildcard): answers leave from the address each datagram
    was sent to (IP_PKTINFO), for 127.0.0.1, 127.0.0.2 and ::1."""
    v6 = have_ipv6()
    port = free_port()
    d = Daemon(exe, ["--listen-udp", str(port)], notify=False).start()
    ready = d.wait_line(r"^ready: ", 5 * SLOW)
    t.ok(ready and ("udp [::]:%d" % port) in ready[0].string, "ready line names udp [::]:%d" % port,
         d.stderr_text())
    for host, fam in (("127.0.0.1", socket.AF_INET), ("127.0.0.2", socket.AF_INET),
                      ("::1", socket.AF_INET6)):
        if fam == socket.AF_INET6 and not v6:
            t.skip("wildcard answer from ::1", "no IPv6")
            continue
        with udp_socket(fam, "127.0.0.1" if fam == socket.AF_INET else "::1") as c:
            payload = pattern(700, seed=len(host))
            ans = udp_exchange(c, (host, port), payload, 3 * SLOW)
            t.ok(ans is not None and ans[0] == payload and ans[1][0] == host and ans[1][1] == port,
                 "wildcard socket: datagram to %s answered from %s:%d" % (host, host, port),
                 "answer: %r" % ((None if ans is None else (len(ans[0]), ans[1])),))
    with udp_socket() as c:
        c.connect(("127.0.0.1", port))
        c.settimeout(3 * SLOW)
        c.send(b"")
        try:
            got = c.recv(10)
        except OSError as e:
            got = e
        t.ok(got == b"", "empty datagram answered with an empty datagram", repr(got))
    rc = d.stop()
    t.ok(rc == 0, "standalone echod stops with exit 0 on SIGTERM", "rc=%r\n%s" % (rc, d.stderr_text()))


if __name__ == "__main__":
    run([test_socket_activate_v4, test_socket_activate_v6, test_fd3_v6, test_standalone])
