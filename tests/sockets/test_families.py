#!/usr/bin/env python3
"""Every kind of socket in one daemon and each on its own: an IPv6 (::1) TCP listener and an
AF_UNIX listener echo (AF_UNIX peers logged as 'unix pid P uid U'); TCP v4 + TCP v6 + UDP +
AF_UNIX passed at once as fds 3..6 (LISTEN_FDS=4) are each served at the same time, named
in order in the ready line and in STATUS; TCP and UDP on one port through two chained
systemd-socket-activate; a passed AF_UNIX path is left in place at stop."""

import os
import re
import socket

import sockets_lib as L


def main():
    echod = L.echod_path()
    v6 = L.ipv6_available()
    t = L.Tap(20)

    with L.tmpdir() as tmp:
        def ipv6_tcp():
            if not v6 or not L.have_socket_activate():
                for n in range(3):
                    t.skip("ipv6 tcp %d" % n, "no IPv6 or systemd-socket-activate")
                return
            port = L.free_port(socket.AF_INET6)
            d = L.socket_activate(tmp, echod, ["[::1]:%d" % port], name="v6")
            try:
                payload = L.pattern(100000, seed=6)
                with socket.create_connection(("::1", port), timeout=5) as c:
                    cport = c.getsockname()[1]
                    got = L.stream_echo(c, payload)
                t.ok(got == payload, "tcp [::1]: 100000 bytes echoed byte-exact", "got %d" % len(got))
                ready = d.wait_log(r"^ready: ")
                t.ok(bool(ready) and ready[0].startswith("ready: tcp [::1]:%d;" % port),
                     "ready line names 'tcp [::1]:%d'" % port, d.log())
                ln = d.wait_log(r"connection from ::1 port %d \(pid \d+\) ended: eof, 100000 bytes" % cport)
                t.ok(bool(ln), "log line 'connection from ::1 port %d ...'" % cport, d.log())
            finally:
                d.stop()
        t.run(ipv6_tcp, "ipv6 tcp")

        def unix_standalone():
            path = os.path.join(tmp, "standalone.sock")
            d = L.Daemon(tmp, [echod, "--listen", path], name="unix-standalone")
            try:
                ready = d.wait_log(r"^ready: ")
                t.ok(bool(ready) and ready[0].startswith("ready: unix %s;" % path), "ready line names unix %s" % path,
                     d.log())
                payload = b"\x00\x01\x02 unix \xfe\xff" * 5000
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                    c.connect(path)
                    got = L.stream_echo(c, payload)
                t.ok(got == payload, "--listen PATH: AF_UNIX echo byte-exact")
                ln = d.wait_log(r"connection from unix pid %d uid %d \(pid \d+\) ended: eof, %d bytes"
                                % (os.getpid(), os.getuid(), len(payload)))
                t.ok(bool(ln), "AF_UNIX peer logged as 'unix pid %d uid %d'" % (os.getpid(), os.getuid()), d.log())
            finally:
                rc = d.stop()
            t.ok(rc == 0 and not os.path.exists(path), "exit 0 and the socket path it created is removed",
                 "rc=%r exists=%r" % (rc, os.path.exists(path)))
        t.run(unix_standalone, "unix standalone")

        def mixed():
            notify = L.Notify(tmp, "notify-mixed")
            upath = os.path.join(tmp, "mixed.sock")
            t4 = L.tcp_listener(socket.AF_INET, "127.0.0.1")
            t6 = L.tcp_listener(socket.AF_INET6, "::1") if v6 else None
            u = L.udp_socket(socket.AF_INET, "127.0.0.1")
            ux = L.unix_listener(upath)
            socks = [t4] + ([t6] if t6 else []) + [u, ux]
            p4, pu = t4.getsockname()[1], u.getsockname()[1]
            p6 = t6.getsockname()[1] if t6 else None
            d = L.activate(tmp, echod, socks, env_extra={"NOTIFY_SOCKET": notify.path}, name="mixed",
                           names=["echo"] * len(socks))
            for s in socks:
                s.close()
            conns = []
            try:
                ready = d.wait_log(r"^ready: ")
                expect = "ready: tcp 127.0.0.1:%d, %sudp 127.0.0.1:%d, unix %s; max 1024 clients" % (
                    p4, ("tcp [::1]:%d, " % p6) if v6 else "", pu, upath)
                t.ok(bool(ready) and ready[0] == expect, "LISTEN_FDS=%d: ready line names each fd in order"
                     % len(socks), "expected: %s\nlog:\n%s" % (expect, d.log()))
                t.ok(L.wait_until(notify.ready, 3) and re.search(r", 0 datagrams echoed, 0 dropped$",
                                                                 notify.values("STATUS")[0] if notify.values("STATUS") else ""),
                     "READY=1 with a STATUS that has the datagram counts", repr(notify.messages))
                # Open one connection on each stream listener and keep them all open while
                # the UDP socket answers: the daemon serves all kinds at once.
                c4 = socket.create_connection(("127.0.0.1", p4), timeout=5)
                conns.append(c4)
                c6 = socket.create_connection(("::1", p6), timeout=5) if v6 else None
                if c6:
                    conns.append(c6)
                cu = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conns.append(cu)
                cu.settimeout(5)
                cu.connect(upath)
                for name, c in (("tcp v4", c4), ("tcp v6", c6), ("unix", cu)):
                    if c is None:
                        t.skip("mixed " + name, "no IPv6")
                        continue
                    msg = ("hello over %s" % name).encode()
                    got = L.stream_echo(c, msg, shut=False)
                    t.ok(got == msg, "mixed: %s echoes while the others are open" % name, repr(got))
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cd:
                    cd.bind(("127.0.0.1", 0))
                    ans = L.udp_exchange(cd, ("127.0.0.1", pu), b"datagram" * 100)
                t.ok(ans is not None and ans[0] == b"datagram" * 100, "mixed: udp echoes", repr(ans))
                for c in conns:
                    got = L.stream_echo(c, b"end")
                    c.close()
                st = notify.wait_status(lambda f: f[2] == len(conns) and f[0] == 0 and f[4] == 1)
                t.ok(st is not None and st[0] == 0 and st[2] == len(conns) and st[4] == 1,
                     "STATUS: 0 active, %d served, 1 datagram echoed" % len(conns),
                     "last STATUS: %r" % notify.last_status())
            finally:
                for c in conns:
                    c.close()
                rc = d.stop()
                notify.close()
            t.ok(rc == 0, "mixed daemon exits 0 on SIGTERM", "rc=%r\n%s" % (rc, d.log()))
            t.ok(os.path.exists(upath), "a passed AF_UNIX socket's path is not removed (systemd owns it)")
            lines = [x for x in d.lines() if L.CONN_RE.search(x)]
            peers = sorted(L.CONN_RE.search(x).group(1).split(" port")[0] for x in lines)
            want = sorted(["127.0.0.1"] + (["::1"] if v6 else []) + ["unix pid %d uid %d" % (os.getpid(), os.getuid())])
            t.ok(peers == want, "one connection line per kind: %s" % ", ".join(want), d.log())
        t.run(mixed, "mixed")

        def chained():
            # TCP and UDP on one port: the outer systemd-socket-activate binds TCP, the
            # inner one UDP and passes both on (fd 3 tcp, fd 4 udp).
            if not L.have_socket_activate():
                for n in range(3):
                    t.skip("chained %d" % n, "no systemd-socket-activate")
                return
            port = L.free_port()
            d = L.Daemon(tmp, ["systemd-socket-activate", "-l", "127.0.0.1:%d" % port,
                               "systemd-socket-activate", "--datagram", "-l", "127.0.0.1:%d" % port, echod],
                         name="chained")
            try:
                L.wait_until(lambda: any(x.startswith("Listening on") for x in d.lines()), 5)
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    got = L.stream_echo(c, b"tcp on the shared port")
                t.ok(got == b"tcp on the shared port", "chained: tcp 127.0.0.1:%d echoes" % port, d.log())
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cd:
                    cd.bind(("127.0.0.1", 0))
                    ans = L.udp_exchange(cd, ("127.0.0.1", port), b"udp on the shared port")
                t.ok(ans is not None and ans[0] == b"udp on the shared port", "chained: udp 127.0.0.1:%d echoes"
                     % port, d.log())
                ready = d.wait_log(r"^ready: ")
                t.ok(bool(ready) and ready[0].startswith("ready: tcp 127.0.0.1:%d, udp 127.0.0.1:%d;" % (port, port)),
                     "chained: ready line names tcp and udp on port %d" % port, d.log())
            finally:
                d.stop()
        t.run(chained, "chained")

    t.finish()


if __name__ == "__main__":
    main()
