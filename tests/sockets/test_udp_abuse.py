#!/usr/bin/env python3
"""UDP reflection protection: a datagram from a source port below 1024 gets no answer, is
counted as dropped in STATUS and logged; a flood from one source is answered only up to
its token bucket (burst + rate * time) while another source is still answered, and the
flooding source is answered again once it has been quiet."""

import os
import re
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from echodtest import (SLOW, SOCKET_ACTIVATE, Daemon, drain_udp, free_port, have_ipv6,  # noqa: E402
                       run, udp_exchange, udp_socket, wait_until)


def udp_constants():
    """Rate limits from src/udp.h (the tests bound answers by them); defaults if absent."""
    c = {"UDP_SOURCE_RATE": 200, "UDP_SOURCE_BURST": 400,
         "UDP_GLOBAL_RATE": 20000, "UDP_GLOBAL_BURST": 40000}
    try:
        with open(os.path.join(HERE, "..", "..", "src", "udp.h")) as f:
            for m in re.finditer(r"#define (UDP_\w+)\s+(\d+)u?", f.read()):
                c[m.group(1)] = int(m.group(2))
    except OSError:
        pass
    return c


C = udp_constants()
# Rate-limited reports come at most every 10 s.
REPORT_WAIT = 10 + 2 * SLOW


def privileged_port(family, host):
    """A socket bound to a free port below 1024 (root only)."""
    for p in range(1023, 600, -1):
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.bind((host, p))
            return s
        except OSError:
            s.close()
    raise RuntimeError("no free privileged port")


def test_privileged_source_port(t, exe):
    names = ["privileged v4 no answer", "privileged v6 no answer", "service still answers",
             "STATUS counts the drops", "drop logged with privileged count"]
    if os.geteuid() != 0 or not SOCKET_ACTIVATE:
        for n in names:
            t.skip(n, "binding a source port below 1024 needs root" if os.geteuid() != 0
                   else "no systemd-socket-activate")
        return
    port = free_port(socket.AF_INET6, "::")
    d = Daemon(exe, socket_activate=[["--datagram", "-l", "[::]:%d" % port]]).start()
    with privileged_port(socket.AF_INET, "127.0.0.1") as p4:
        ans = udp_exchange(p4, ("127.0.0.1", port), b"loop?", 1.5 * SLOW)
        t.ok(ans is None, "datagram from 127.0.0.1 port %d: no answer" % p4.getsockname()[1], repr(ans))
    if have_ipv6():
        with privileged_port(socket.AF_INET6, "::1") as p6:
            ans = udp_exchange(p6, ("::1", port), b"loop?", 1.5 * SLOW)
            t.ok(ans is None, "datagram from [::1] port %d: no answer" % p6.getsockname()[1], repr(ans))
        n_priv = 2
    else:
        t.skip("privileged v6", "no IPv6")
        n_priv = 1
    with udp_socket() as c:
        ans = udp_exchange(c, ("127.0.0.1", port), b"hello", 3 * SLOW)
        t.ok(ans is not None and ans[0] == b"hello",
             "a datagram from an unprivileged port is still answered", repr(ans))
    st = d.notify.wait_status(lambda f: f[4] == 1 and f[5] == n_priv, 4 * SLOW)
    t.ok(st is not None and st[4] == 1 and st[5] == n_priv,
         "STATUS: 1 datagram echoed, %d dropped" % n_priv, "last STATUS: %r" % d.notify.last_status())
    # Rate-limited reports: the first one may have come before the second drop.
    logged = d.wait_line(r"UDP: dropped [1-9]\d* datagrams? .*\b[1-9]\d* from privileged source ports",
                         REPORT_WAIT)
    t.ok(bool(logged), "the drop is logged with its count", d.stderr_text())
    d.stop()


def test_flood(t, exe):
    # The flood checks echod against the rates it promises, which only a native echod can
    # keep up with: under valgrind the kernel would drop the other source's datagram in the
    # full receive queue. So echod runs natively here even in the valgrind setup.
    with udp_socket(socket.AF_INET, "0.0.0.0") as sock:
        port = sock.getsockname()[1]
        d = Daemon(exe, sockets=[sock], wrap=False).start()
    with udp_socket() as f, udp_socket(socket.AF_INET, "127.0.0.2") as o:
        t.ok(wait_until(d.notify.ready, 5 * SLOW), "READY=1 before the flood", d.stderr_text())
        for s in (f, o):
            try:
                s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        f.setblocking(False)
        size = 100  # cost: 1 unit per datagram + 1 per started KiB = 2 units
        cost = 1 + (size + 1023) // 1024
        n_flood = 6000
        answers = 0
        other = None
        start = time.monotonic()
        for i in range(n_flood):
            try:
                f.sendto(b"F" * size, ("127.0.0.1", port))
            except BlockingIOError:
                time.sleep(0.0005)
            if i % 100 == 0:
                answers += len(drain_udp(f))
            if i == n_flood // 2:
                # Mid-flood: another source is answered.
                o.sendto(b"other source", ("127.0.0.1", port))
            if i % 50 == 0:
                time.sleep(0.001)  # let echod run between bursts
        o.settimeout(3 * SLOW)
        try:
            other = o.recvfrom(100)
        except socket.timeout:
            other = None
        time.sleep(0.3 * SLOW)
        answers += len(drain_udp(f))
        elapsed = time.monotonic() - start
        bound = (C["UDP_SOURCE_BURST"] + C["UDP_SOURCE_RATE"] * elapsed) / cost
        t.diag("flood: %d datagrams in %.2f s, %d answered, bound %.0f" % (n_flood, elapsed, answers, bound))
        t.ok(answers > 0, "the flooding source got some answers (%d)" % answers)
        t.ok(answers <= bound + 2 and answers < n_flood / 4,
             "flood answers bounded by burst + rate*t: %d <= %.0f" % (answers, bound))
        t.ok(other is not None and other[0] == b"other source",
             "127.0.0.2 is answered in the middle of a flood from 127.0.0.1", repr(other))
        # STATUS: dropped counts what echod read and refused (the kernel may have dropped more
        # when its buffer was full; those echod never saw).
        st = d.notify.wait_status(lambda x: x[4] is not None and x[4] >= answers + 1 and x[5] > 0, 4 * SLOW)
        t.ok(st is not None and st[4] == answers + 1 and st[5] >= 100,
             "STATUS: %d echoed, many dropped" % (answers + 1), "last STATUS: %r" % d.notify.last_status())
        logged = d.wait_line(r"UDP: dropped \d+ datagrams .*over the per-source rate", REPORT_WAIT)
        t.ok(bool(logged) and not any(" 0 over the per-source rate" in m.string for m in logged[:1]),
             "flood drops logged as over the per-source rate", d.stderr_text())
        # Limits pause, never disable: after burst/rate seconds the bucket is full again.
        time.sleep(C["UDP_SOURCE_BURST"] / C["UDP_SOURCE_RATE"] + 0.5)
        drain_udp(f)
        f.setblocking(True)
        ans = udp_exchange(f, ("127.0.0.1", port), b"again", 3 * SLOW)
        t.ok(ans is not None and ans[0] == b"again", "the flooding source is answered again after a pause",
             repr(ans))
        t.ok(d.poll() is None, "echod still running after the flood", d.stderr_text())
    rc = d.stop()
    t.ok(rc == 0, "exit 0 on SIGTERM after the flood", "rc=%r" % rc)


if __name__ == "__main__":
    run([test_privileged_source_port, test_flood])
