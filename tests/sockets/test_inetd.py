#!/usr/bin/env python3
"""inetd mode (Accept=yes): echod given one connected stream socket serves that connection
in-process, byte-exact, logs its one connection line and exits 0. Started by
systemd-socket-activate -a (TCP and AF_UNIX) and by passing an accepted socket on fd 3."""

import os
import socket

import sockets_lib as L


def main():
    echod = L.echod_path()
    t = L.Tap(13)

    with L.tmpdir() as tmp:
        def sa_tcp():
            if not L.have_socket_activate():
                for n in range(5):
                    t.skip("systemd-socket-activate -a check %d" % n, "no systemd-socket-activate")
                return
            port = L.free_port()
            d = L.socket_activate(tmp, echod, ["127.0.0.1:%d" % port], accept=True, name="sa-a")
            try:
                payload = L.pattern(300000)
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    cport = c.getsockname()[1]
                    got = L.stream_echo(c, payload)
                t.ok(got == payload, "-a: 300000 bytes echoed byte-exact, then EOF",
                     "got %d bytes" % len(got))
                spawned = d.wait_log(r"^Spawned .* as PID (\d+)")
                pid = int(spawned[0].rsplit(" ", 1)[1].rstrip(".")) if spawned else -1
                died = d.wait_log(r"^Child %d died with code" % pid)
                t.ok(bool(died) and died[0].endswith("code 0"), "-a: the echod process (pid %d) exits 0" % pid,
                     d.log())
                conn = [ln for ln in d.lines() if L.CONN_RE.search(ln)]
                m = L.CONN_RE.search(conn[0]) if len(conn) == 1 else None
                t.ok(m is not None and m.group(1) == "127.0.0.1 port %d" % cport and int(m.group(2)) == pid
                     and m.group(3) == "eof" and int(m.group(4)) == len(payload),
                     "-a: one line 'connection from 127.0.0.1 port %d (pid %d) ended: eof, %d bytes'"
                     % (cport, pid, len(payload)), d.log())
                t.ok(not [ln for ln in d.lines() if ln.startswith("ready:")],
                     "-a: no ready line (no accept loop was started)", d.log())
                # A second connection gets its own process, which also exits 0.
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    got = L.stream_echo(c, b"second")
                died = d.wait_log(r"^Child \d+ died with code", timeout=5, count=2)
                t.ok(got == b"second" and len(died) == 2 and all(x.endswith("code 0") for x in died),
                     "-a: a second connection is served by a second echod that exits 0", d.log())
            finally:
                d.stop()
        t.run(sa_tcp, "systemd-socket-activate -a tcp")

        def sa_unix():
            if not L.have_socket_activate():
                t.skip("-a unix", "no systemd-socket-activate")
                t.skip("-a unix log", "no systemd-socket-activate")
                return
            path = os.path.join(tmp, "inetd.sock")
            d = L.socket_activate(tmp, echod, [path], accept=True, name="sa-unix")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                    c.connect(path)
                    got = L.stream_echo(c, b"\x00unix\xff" * 1000)
                t.ok(got == b"\x00unix\xff" * 1000, "-a unix: echoed byte-exact", repr(got[:40]))
                ln = d.wait_log(r"connection from unix pid %d uid %d \(pid \d+\) ended: eof, 6000 bytes"
                                % (os.getpid(), os.getuid()))
                t.ok(bool(ln), "-a unix: log line names 'unix pid %d uid %d'" % (os.getpid(), os.getuid()),
                     d.log())
            finally:
                d.stop()
        t.run(sa_unix, "systemd-socket-activate -a unix")

        def own():
            # The test accepts and passes the connection on fd 3, as systemd does with
            # Accept=yes; then it is echod's parent and sees its exit status directly.
            for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                if fam == socket.AF_INET6 and not L.ipv6_available():
                    for n in range(3):
                        t.skip("own inetd v6 %d" % n, "no IPv6")
                    continue
                lst = L.tcp_listener(fam, host)
                c = socket.socket(fam, socket.SOCK_STREAM)
                d = None
                try:
                    c.connect(lst.getsockname()[:2])
                    conn, _ = lst.accept()
                    lst.close()
                    d = L.activate(tmp, echod, [conn], name="own-inetd-%d" % fam)
                    conn.close()
                    payload = bytes(range(256)) * 4096
                    got = L.stream_echo(c, payload)
                    c.close()
                    rc = d.wait(5)
                    t.ok(got == payload, "fd 3 connected %s: 1 MiB echoed byte-exact" % host, "got %d" % len(got))
                    t.ok(rc == 0, "fd 3 connected %s: echod exits 0 after the client's EOF" % host,
                         "rc=%r\n%s" % (rc, d.log()))
                    lines = [ln for ln in d.lines() if ln.strip()]
                    m = L.CONN_RE.search(lines[0]) if len(lines) == 1 else None
                    t.ok(m is not None and m.group(1).startswith(host + " port ") and int(m.group(2)) == d.pid
                         and int(m.group(4)) == len(payload),
                         "fd 3 connected %s: exactly one log line, naming the peer and pid %d" % (host, d.pid),
                         d.log())
                finally:
                    c.close()
                    lst.close()
                    if d:
                        d.kill()
        t.run(own, "own inetd activation")

    t.finish()


if __name__ == "__main__":
    main()
