#!/usr/bin/env python3
"""UDP echo (RFC 862, datagram side): 1, 512 and 65507-byte datagrams come back byte-exact
over IPv4 and IPv6 (::1), with the socket passed by systemd-socket-activate --datagram,
passed on fd 3 by hand, or opened with --listen-udp; answers leave from the address the
datagram was sent to; a datagram too large to echo over IPv4 is dropped, not truncated;
the counts reach STATUS."""

import socket

import sockets_lib as L

SIZES = (1, 512, 65507)


def check_sizes(t, family, dest, label, bind_host):
    with socket.socket(family, socket.SOCK_DGRAM) as c:
        c.bind((bind_host, 0))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for n in SIZES:
            payload = L.pattern(n, seed=family)
            ans = L.udp_exchange(c, dest, payload, timeout=5.0)
            t.ok(ans is not None and ans[0] == payload,
                 "%s: %d-byte datagram echoed byte-exact" % (label, n),
                 "no answer" if ans is None else "got %d bytes" % len(ans[0]))
    return len(SIZES)


def main():
    echod = L.echod_path()
    v6 = L.ipv6_available()
    t = L.Tap(18)

    with L.tmpdir() as tmp:
        # 1. systemd-socket-activate --datagram, IPv4
        def sa_v4():
            if not L.have_socket_activate():
                for n in SIZES:
                    t.skip("socket-activate v4 %d bytes" % n, "no systemd-socket-activate")
                t.skip("socket-activate v4 STATUS", "no systemd-socket-activate")
                return
            notify = L.Notify(tmp, "notify-sa4")
            port = L.free_port(socket.AF_INET, socket.SOCK_DGRAM)
            d = L.socket_activate(tmp, echod, ["127.0.0.1:%d" % port], datagram=True,
                                  env_extra={"NOTIFY_SOCKET": notify.path}, name="sa4")
            try:
                check_sizes(t, socket.AF_INET, ("127.0.0.1", port), "activated udp 127.0.0.1", "127.0.0.1")
                st = notify.wait_status(lambda f: f[4] == 3)
                t.ok(st is not None and st[4] == 3 and st[5] == 0,
                     "STATUS counts 3 datagrams echoed, 0 dropped", "last STATUS: %r" % notify.last_status())
            finally:
                d.stop()
                notify.close()
        t.run(sa_v4, "socket-activate udp v4")

        # 2. systemd-socket-activate --datagram, IPv6 ::1
        def sa_v6():
            if not v6 or not L.have_socket_activate():
                for n in SIZES:
                    t.skip("socket-activate v6 %d bytes" % n, "no IPv6 or systemd-socket-activate")
                return
            port = L.free_port(socket.AF_INET6, socket.SOCK_DGRAM)
            d = L.socket_activate(tmp, echod, ["[::1]:%d" % port], datagram=True, name="sa6")
            try:
                check_sizes(t, socket.AF_INET6, ("::1", port), "activated udp [::1]", "::1")
            finally:
                d.stop()
        t.run(sa_v6, "socket-activate udp v6")

        # 3. the test's own activation: an IPv6 UDP socket on fd 3
        def own_v6():
            if not v6:
                for n in SIZES:
                    t.skip("fd 3 udp v6 %d bytes" % n, "no IPv6")
                t.skip("oversized IPv6 datagram", "no IPv6")
                t.skip("oversized counted", "no IPv6")
                return
            s = L.udp_socket(socket.AF_INET6, "::1")
            port = s.getsockname()[1]
            notify = L.Notify(tmp, "notify-own6")
            d = L.activate(tmp, echod, [s], env_extra={"NOTIFY_SOCKET": notify.path}, name="own6")
            s.close()
            try:
                check_sizes(t, socket.AF_INET6, ("::1", port), "fd 3 udp [::1]", "::1")
                # IPv6 can carry 65508..65527 bytes; echod echoes at most 65507 and must
                # never send a truncated copy back.
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as c:
                    c.bind(("::1", 0))
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                    ans = L.udp_exchange(c, ("::1", port), L.pattern(65527), timeout=1.5)
                    t.ok(ans is None, "65527-byte IPv6 datagram: no answer (never a truncated echo)",
                         "" if ans is None else "got %d bytes back" % len(ans[0]))
                st = notify.wait_status(lambda f: f[5] >= 1)
                t.ok(st is not None and st[4] == 3 and st[5] == 1,
                     "oversized datagram counted as dropped in STATUS", "last STATUS: %r" % notify.last_status())
            finally:
                d.stop()
                notify.close()
        t.run(own_v6, "fd 3 udp v6")

        # 4. standalone --listen-udp PORT (dual-stack wildcard): answers leave from the
        # address each datagram was sent to (IP_PKTINFO), for 127.0.0.1, 127.0.0.2 and ::1.
        def standalone():
            port = L.free_port(socket.AF_INET, socket.SOCK_DGRAM)
            d = L.Daemon(tmp, [echod, "--listen-udp", str(port)], name="standalone")
            try:
                ready = d.wait_log(r"^ready: ")
                t.ok(ready and ("udp [::]:%d" % port) in ready[0], "ready line names udp [::]:%d" % port,
                     d.log())
                for host, fam in (("127.0.0.1", socket.AF_INET), ("127.0.0.2", socket.AF_INET),
                                  ("::1", socket.AF_INET6)):
                    if fam == socket.AF_INET6 and not v6:
                        t.skip("wildcard answer from ::1", "no IPv6")
                        continue
                    with socket.socket(fam, socket.SOCK_DGRAM) as c:
                        c.bind(("127.0.0.1" if fam == socket.AF_INET else "::1", 0))
                        payload = L.pattern(700, seed=len(host))
                        ans = L.udp_exchange(c, (host, port), payload)
                        t.ok(ans is not None and ans[0] == payload and ans[1][0] == host
                             and ans[1][1] == port,
                             "wildcard socket: datagram to %s answered from %s:%d" % (host, host, port),
                             "answer: %r" % ((None if ans is None else (len(ans[0]), ans[1])),))
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                    c.bind(("127.0.0.1", 0))
                    c.connect(("127.0.0.1", port))
                    c.settimeout(3)
                    c.send(b"")
                    try:
                        got = c.recv(10)
                    except OSError as e:
                        got = e
                    t.ok(got == b"", "empty datagram answered with an empty datagram", repr(got))
            finally:
                rc = d.stop()
            t.ok(rc == 0, "standalone echod stops with exit 0 on SIGTERM", "rc=%r\n%s" % (rc, d.log()))
        t.run(standalone, "standalone --listen-udp")

    t.finish()


if __name__ == "__main__":
    main()
