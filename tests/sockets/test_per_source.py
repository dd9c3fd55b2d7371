#!/usr/bin/env python3
"""--max-per-source 2: a third concurrent connection from one address is closed at once
(EOF or reset, never an echo) while another address (127.0.0.2, ::1) is still served;
IPv4-mapped IPv6 peers count as their IPv4 address; a slot frees when a connection ends;
refusals are counted in STATUS and logged with a count, and get no connection line."""

import errno
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (LINE_RE, SLOW, Daemon, connect_from, have_ipv6, listen_socket, run,  # noqa: E402
                       wait_until)


def served(c, msg=b"ping"):
    """'served' if msg comes back, 'refused' on EOF/reset without data, else a description."""
    try:
        c.sendall(msg)
        c.settimeout(3 * SLOW)
        got = c.recv(100)
    except ConnectionResetError:
        return "refused"
    except socket.timeout:
        return "no answer in %g s" % (3 * SLOW)
    except OSError as e:
        return "refused" if e.errno in (errno.ECONNRESET, errno.EPIPE) else repr(e)
    if got == msg:
        return "served"
    if got == b"":
        return "refused"
    return "got %r" % got


def test_per_source_cap(t, exe):
    v6 = have_ipv6()
    socks = [listen_socket()] + ([listen_socket(socket.AF_INET6, "::")] if v6 else [])
    p4 = socks[0].getsockname()[1]
    p6 = socks[-1].getsockname()[1] if v6 else None
    d = Daemon(exe, ["--max-per-source", "2"], sockets=socks).start()
    for s in socks:
        s.close()
    conns = []
    n_served = 0
    n_refused = 0
    try:
        t.ok(wait_until(d.notify.ready, 5 * SLOW), "READY=1", d.stderr_text())
        a1 = connect_from("127.0.0.1", ("127.0.0.1", p4))
        a2 = connect_from("127.0.0.1", ("127.0.0.1", p4))
        conns += [a1, a2]
        r = [served(a1), served(a2)]
        n_served += 2
        t.ok(r == ["served", "served"], "two connections from 127.0.0.1 are served", repr(r))

        a3 = connect_from("127.0.0.1", ("127.0.0.1", p4))
        conns.append(a3)
        start = time.monotonic()
        r = served(a3)
        took = time.monotonic() - start
        n_refused += 1
        t.ok(r == "refused" and took < 1.5,
             "the third from 127.0.0.1 is closed at once without echo (%.2f s)" % took, r)

        if v6:
            # 127.0.0.1 to the dual-stack [::] listener arrives as ::ffff:127.0.0.1.
            m3 = connect_from("127.0.0.1", ("127.0.0.1", p6))
            conns.append(m3)
            r = served(m3)
            n_refused += 1
            t.ok(r == "refused", "IPv4-mapped ::ffff:127.0.0.1 counts as 127.0.0.1: refused", r)
            s6 = connect_from("::1", ("::1", p6), socket.AF_INET6)
            conns.append(s6)
            r = served(s6)
            n_served += 1
            t.ok(r == "served", "::1 (another source) is served", r)
        else:
            t.skip("mapped", "no IPv6")
            t.skip("::1 served", "no IPv6")

        b = [connect_from("127.0.0.2", ("127.0.0.1", p4)) for _ in range(2)]
        conns += b
        r = [served(x) for x in b]
        n_served += 2
        t.ok(r == ["served", "served"], "127.0.0.2 is still served, twice", repr(r))
        b3 = connect_from("127.0.0.2", ("127.0.0.1", p4))
        conns.append(b3)
        r = served(b3)
        n_refused += 1
        t.ok(r == "refused", "the third from 127.0.0.2 is refused too", r)

        # The ones still open keep working.
        t.ok(served(a1, b"still") == "served" and served(b[1], b"still") == "served",
             "refusals do not disturb the served connections")

        # One ends: once it is reaped, 127.0.0.1 may connect again.
        a1.close()
        result = None
        for _ in range(int(30 * SLOW)):
            c = connect_from("127.0.0.1", ("127.0.0.1", p4))
            conns.append(c)
            result = served(c)
            if result == "served":
                n_served += 1
                break
            if result == "refused":
                n_refused += 1
            time.sleep(0.1)
        t.ok(result == "served", "after one of them ends, 127.0.0.1 is served again", result)

        st = d.notify.wait_status(lambda f: f[3] == n_refused and f[2] == n_served, 4 * SLOW)
        t.ok(st is not None and st[3] == n_refused and st[2] == n_served,
             "STATUS: %d served, %d refused" % (n_served, n_refused),
             "last STATUS: %r" % d.notify.last_status())
        ln = d.wait_line(r"Refused \d+ connections? over the limit of 2 per source", 5 * SLOW)
        t.ok(bool(ln) and ln[0].string.endswith("Refused 1 connection over the limit of 2 per source "
                                                "since the last report: 127.0.0.1 (1)"),
             "first refusal logged at once, naming its source: 'Refused 1 connection over the limit of 2 "
             "per source since the last report: 127.0.0.1 (1)'",
             d.stderr_text())
    finally:
        for c in conns:
            c.close()
    rc = d.stop()
    t.ok(rc == 0, "exit 0 on SIGTERM", "rc=%r" % rc)
    lines = [x for x in d.lines() if LINE_RE.search(x)]
    t.ok(len(lines) == n_served, "one connection line per served connection (%d), none for refusals"
         % n_served, d.stderr_text())
    t.ok(all(LINE_RE.search(x).group(4) in ("eof", "stop", "reset") for x in lines),
         "every connection ended by eof/reset/stop", d.stderr_text())


if __name__ == "__main__":
    run([test_per_source_cap])
