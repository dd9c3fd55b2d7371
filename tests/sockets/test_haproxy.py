#!/usr/bin/env python3
"""echod behind a real HAProxy (Debian's haproxy), run from a config in a temporary directory
on loopback ports, once with send-proxy (v1) and once with send-proxy-v2: clients bound to
127.0.0.2 and 127.0.0.3 go through it; echod's log lines name them; --max-per-source 1
refuses a second connection from 127.0.0.2 while 127.0.0.3 is served; 1 MiB comes back
byte-exact; HAProxy's TCP health check (sent with check-send-proxy, expecting its own bytes
back first) marks echod up, read from its stats socket. The backend lines are those of the
README. Without haproxy the test skips, except in CI (CI=true), where that is a failure."""

import os
import shutil
import socket
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (LINE_RE, SLOW, Daemon, Skip, connect_from, free_port, is_refused_or_closed,  # noqa: E402
                       listen_socket, pattern, run, stream_echo, wait_until)

SRC_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# The backend as README.md shows it; only the server's address differs.
BACKEND = """\
backend echod
    option tcp-check
    tcp-check send PING\\r\\n
    tcp-check expect rstring ^PING
    server echod1 {server} {send_proxy} check check-send-proxy inter 1s
"""

CONFIG = """\
global
    stats socket {dir}/stats.sock mode 600 level admin
    maxconn 200

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend echo
    bind 127.0.0.1:{port}
    default_backend echod

""" + BACKEND


def find_haproxy():
    path = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)
    if not path and os.environ.get("CI") == "true":
        raise AssertionError("haproxy is not installed, and CI must run this test (.ci/install-deps)")
    if not path:
        raise Skip("haproxy is not installed (apt-get install haproxy)")
    return path


def show_stat(sock_path):
    """{(proxy, server): {field: value}} from HAProxy's `show stat`, or {} if it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(sock_path)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
    except OSError:
        return {}
    lines = data.decode(errors="replace").splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    names = lines[0][2:].split(",")
    out = {}
    for ln in lines[1:]:
        if ln:
            row = dict(zip(names, ln.split(",")))
            out[(row.get("pxname"), row.get("svname"))] = row
    return out


def echoes(c, msg):
    """True if msg comes back whole on c."""
    try:
        c.sendall(msg)
        got = b""
        c.settimeout(5 * SLOW)
        while len(got) < len(msg):
            b = c.recv(len(msg) - len(got))
            if not b:
                break
            got += b
        return got == msg
    except OSError:
        return False


def behind_haproxy(t, exe, send_proxy):
    haproxy = find_haproxy()
    ls = listen_socket()
    echod_port = ls.getsockname()[1]
    d = Daemon(exe, ["--proxy-protocol", "--max-per-source", "1"], sockets=[ls]).start()
    ls.close()
    d.wait_ready()
    with tempfile.TemporaryDirectory(prefix="echod-haproxy-") as tmp:
        port = free_port()
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(dir=tmp, port=port, server=f"127.0.0.1:{echod_port}", send_proxy=send_proxy))
        # Not echod: no valgrind around it. Killed and reaped by pid like every Daemon.
        h = Daemon(haproxy, ["-f", cfg, "-db"], notify=False, wrap=False, built=False).start()
        stats = os.path.join(tmp, "stats.sock")
        row = wait_until(lambda: (r := show_stat(stats).get(("echod", "echod1"))) and r.get("check_status") == "L7OK"
                         and r.get("status") == "UP" and r, 15 * SLOW, 0.1)
        t.ok(bool(row), f"{send_proxy}: HAProxy's tcp-check (check-send-proxy, PING) marks echod UP (L7OK)",
             f"last row: {show_stat(stats).get(('echod', 'echod1'))}\nhaproxy: {h.stderr_text()[-1500:]}\n"
             f"echod: {d.stderr_text()[-1500:]}")
        front = ("127.0.0.1", port)
        conns = []
        try:
            a1 = connect_from("127.0.0.2", front)
            conns.append(a1)
            a1_port = a1.getsockname()[1]
            t.ok(echoes(a1, b"from two"), f"{send_proxy}: a client bound to 127.0.0.2 is echoed through HAProxy")
            b1 = connect_from("127.0.0.3", front)
            conns.append(b1)
            b1_port = b1.getsockname()[1]
            t.ok(echoes(b1, b"from three"), f"{send_proxy}: a client bound to 127.0.0.3 is echoed too")

            a2 = connect_from("127.0.0.2", front)
            conns.append(a2)
            try:
                a2.sendall(b"second from two")
            except OSError:
                pass
            t.ok(is_refused_or_closed(a2, 5 * SLOW),
                 f"{send_proxy}: --max-per-source 1 refuses a second connection from 127.0.0.2")
            st = d.notify.wait_status(lambda f: f[3] == 1, 4 * SLOW)
            t.ok(st is not None and st[3] == 1, f"{send_proxy}: echod counts it refused in STATUS",
                 repr(d.notify.last_status()))
            big = pattern(1 << 20, 3)
            got = stream_echo(b1, big, 30 * SLOW)
            t.ok(got == big, f"{send_proxy}: 1 MiB from 127.0.0.3 comes back byte-exact while 127.0.0.2 "
                 f"holds its one connection", f"got {len(got)} bytes")
            a1.shutdown(socket.SHUT_WR)
        finally:
            for c in conns:
                c.close()
        ended = wait_until(lambda: {(m.group(1), int(m.group(2))) for m in map(LINE_RE.search, d.lines()) if m}
                           >= {("127.0.0.2", a1_port), ("127.0.0.3", b1_port)}, 10 * SLOW)
        t.ok(ended, f"{send_proxy}: echod's log lines name 127.0.0.2 port {a1_port} and 127.0.0.3 port {b1_port}",
             d.stderr_text()[-2000:])
        h.stop()
    t.ok(d.stop() == 0, f"{send_proxy}: echod exits 0 on SIGTERM", d.stderr_text()[-1000:])


def test_send_proxy_v1(t, exe):
    behind_haproxy(t, exe, "send-proxy")


def test_send_proxy_v2(t, exe):
    behind_haproxy(t, exe, "send-proxy-v2")


def test_readme_shows_this_backend(t, exe):
    with open(os.path.join(SRC_ROOT, "README.md"), errors="replace") as f:
        readme = f.read()
    want = BACKEND.format(server="SERVER", send_proxy="send-proxy-v2").splitlines()
    missing = [ln.strip() for ln in want if "SERVER" not in ln and ln.strip() not in readme]
    server = want[-1].strip().split(" SERVER ")[1]
    t.ok(not missing and server in readme, "README.md shows the backend this test runs",
         f"missing: {missing + ([] if server in readme else [server])}")


if __name__ == "__main__":
    run([test_send_proxy_v1, test_send_proxy_v2, test_readme_shows_this_backend])
