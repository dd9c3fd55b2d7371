#!/usr/bin/env python3
"""UDP reflection protection: a datagram from a source port below 1024 gets no answer, is
counted as dropped in STATUS and logged; a flood from one source is answered only up to
its token bucket (burst + rate * time) while another source is still answered, and the
flooding source is answered again once it has been quiet."""

import os
import socket
import time

import sockets_lib as L

C = L.udp_constants()


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


def main():
    echod = L.echod_path()
    t = L.Tap(14)
    root = os.geteuid() == 0

    with L.tmpdir() as tmp:
        def privileged():
            names = ["privileged v4 no answer", "privileged v6 no answer", "service still answers",
                     "STATUS counts the drops", "drop logged with privileged count"]
            if not root:
                for n in names:
                    t.skip(n, "binding a source port below 1024 needs root")
                return
            notify = L.Notify(tmp, "notify-priv")
            port = L.free_port(socket.AF_INET6, socket.SOCK_DGRAM, host="::")
            d = L.socket_activate(tmp, echod, ["[::]:%d" % port], datagram=True,
                                  env_extra={"NOTIFY_SOCKET": notify.path}, name="priv")
            try:
                with privileged_port(socket.AF_INET, "127.0.0.1") as p4:
                    ans = L.udp_exchange(p4, ("127.0.0.1", port), b"loop?", timeout=1.5)
                    t.ok(ans is None, "datagram from 127.0.0.1 port %d: no answer" % p4.getsockname()[1],
                         repr(ans))
                if L.ipv6_available():
                    with privileged_port(socket.AF_INET6, "::1") as p6:
                        ans = L.udp_exchange(p6, ("::1", port), b"loop?", timeout=1.5)
                        t.ok(ans is None, "datagram from [::1] port %d: no answer" % p6.getsockname()[1],
                             repr(ans))
                    n_priv = 2
                else:
                    t.skip("privileged v6", "no IPv6")
                    n_priv = 1
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                    c.bind(("127.0.0.1", 0))
                    ans = L.udp_exchange(c, ("127.0.0.1", port), b"hello")
                    t.ok(ans is not None and ans[0] == b"hello",
                         "a datagram from an unprivileged port is still answered", repr(ans))
                st = notify.wait_status(lambda f: f[4] == 1 and f[5] == n_priv)
                t.ok(st is not None and st[4] == 1 and st[5] == n_priv,
                     "STATUS: 1 datagram echoed, %d dropped" % n_priv, "last STATUS: %r" % notify.last_status())
                # Rate-limited reports: the first one may have come before the second drop.
                logged = d.wait_log(r"UDP: dropped [1-9]\d* datagrams? .*\b[1-9]\d* from privileged source ports",
                                    timeout=12)
                t.ok(bool(logged), "the drop is logged with its count", d.log())
            finally:
                d.stop()
                notify.close()
        t.run(privileged, "privileged source port")

        def flood():
            notify = L.Notify(tmp, "notify-flood")
            sock = L.udp_socket(socket.AF_INET, "0.0.0.0")
            port = sock.getsockname()[1]
            d = L.activate(tmp, echod, [sock], env_extra={"NOTIFY_SOCKET": notify.path}, name="flood")
            sock.close()
            f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            o = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                t.ok(L.wait_until(notify.ready, 5), "READY=1 before the flood", d.log())
                f.bind(("127.0.0.1", 0))
                o.bind(("127.0.0.2", 0))
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
                        answers += len(L.drain_udp(f))
                    if i == n_flood // 2:
                        # Mid-flood: another source is answered.
                        o.sendto(b"other source", ("127.0.0.1", port))
                    if i % 50 == 0:
                        time.sleep(0.001)  # let echod run between bursts
                o.settimeout(3)
                try:
                    other = o.recvfrom(100)
                except socket.timeout:
                    other = None
                time.sleep(0.3)
                answers += len(L.drain_udp(f))
                elapsed = time.monotonic() - start
                bound = (C["UDP_SOURCE_BURST"] + C["UDP_SOURCE_RATE"] * elapsed) / cost
                t.diag("flood: %d datagrams in %.2f s, %d answered, bound %.0f" % (n_flood, elapsed, answers, bound))
                t.ok(answers > 0, "the flooding source got some answers (%d)" % answers)
                t.ok(answers <= bound + 2 and answers < n_flood / 4,
                     "flood answers bounded by burst + rate*t: %d <= %.0f" % (answers, bound))
                t.ok(other is not None and other[0] == b"other source",
                     "127.0.0.2 is answered in the middle of a flood from 127.0.0.1", repr(other))
                # STATUS: dropped counts what echod read and refused (the kernel may have
                # dropped more when its buffer was full; those echod never saw).
                st = notify.wait_status(lambda x: x[4] is not None and x[4] >= answers + 1 and x[5] > 0)
                t.ok(st is not None and st[4] == answers + 1 and st[5] >= 100,
                     "STATUS: %d echoed, many dropped" % (answers + 1), "last STATUS: %r" % notify.last_status())
                logged = d.wait_log(r"UDP: dropped \d+ datagrams .*over the per-source rate", timeout=12)
                t.ok(bool(logged) and not any(" 0 over the per-source rate" in ln for ln in logged[:1]),
                     "flood drops logged as over the per-source rate", d.log())
                # Limits pause, never disable: after burst/rate seconds the bucket is full again.
                time.sleep(C["UDP_SOURCE_BURST"] / C["UDP_SOURCE_RATE"] + 0.5)
                L.drain_udp(f)
                f.setblocking(True)
                ans = L.udp_exchange(f, ("127.0.0.1", port), b"again")
                t.ok(ans is not None and ans[0] == b"again", "the flooding source is answered again after a pause",
                     repr(ans))
                t.ok(d.alive(), "echod still running after the flood", d.log())
            finally:
                f.close()
                o.close()
                rc = d.stop()
                notify.close()
            t.ok(rc == 0, "exit 0 on SIGTERM after the flood", "rc=%r" % rc)
        t.run(flood, "flood")

    t.finish()


if __name__ == "__main__":
    main()
