#!/usr/bin/env python3
"""Command line of echod: bad usage exits 64 with one line and starts nothing; --help and
--version; --help lists exactly the options the parser accepts (and README/man page agree);
no sockets, or a passed fd echod cannot serve, exit 1 with one line."""

import os
import re
import socket
import string
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (Daemon, SLOW, VALGRIND, command, free_port, listen_socket, run)  # noqa: E402

SRC_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

BAD = [
    ["--bogus"],
    ["-x"],
    ["--listen"],
    ["--max-clients"],
    ["--max-clients", "0"],
    ["--max-clients", "-3"],
    ["--max-clients", "many"],
    ["--max-clients", "12abc"],
    ["--max-clients", "1000001"],
    ["--max-clients", "99999999999999999999"],
    ["--max-per-source", "-1"],
    ["--idle-timeout", "5fortnights"],
    ["--idle-timeout", "5m"],
    ["--idle-timeout", "1.5"],
    ["--idle-timeout", "86401"],
    ["--drain-timeout", "3601"],
    ["--drain-timeout", "soon"],
    ["--listen", "999.0.0.1:7"],
    ["--listen", "localhost:7"],
    ["--listen", "::1:7"],
    ["--listen", "0"],
    ["--listen", "70000"],
    ["--listen", "127.0.0.1:0"],
    ["--listen", "127.0.0.1:70000"],
    ["--listen-udp", "0"],
    ["--log-level", "bogus"],
    ["--log-level"],
    ["--log-peer", "bogus"],
    ["--log-peer", "FULL"],
    ["--log-peer"],
    ["--proxy-protocol="],
    ["--proxy-protocol", "name"],
    ["unexpected-argument"],
]


def start_exit(exe, args, **kw):
    d = Daemon(exe, args, **kw).start()
    st = d.wait(10 * SLOW)
    return d, st


def test_bad_usage(t, exe):
    port = free_port()
    for bad in BAD:
        # a good listener first: the bad option alone must stop it
        d, st = start_exit(exe, ["--listen", f"127.0.0.1:{port}"] + bad)
        lines = d.lines()
        t.ok(st == 64, f"{' '.join(bad)!r}: exit status 64 (got {st})", d.stderr_text())
        t.ok(len(lines) == 1 and d.stderr_text().endswith("\n"),
             f"{' '.join(bad)!r}: exactly one line on stderr", repr(d.stderr_text()))
        t.ok(d.notify.snapshot() == [], f"{' '.join(bad)!r}: no notify message (nothing started)",
             repr(d.notify.snapshot()))
    # also with a socket passed by systemd: bad usage wins, the socket is not served
    with listen_socket() as ls:
        d, st = start_exit(exe, ["--max-clients", "0"], sockets=[ls])
        t.ok(st == 64 and len(d.lines()) == 1, f"socket-activated with --max-clients 0: exit 64, one "
             f"line (got {st})", d.stderr_text())
        ls.settimeout(0.5)
        c = socket.create_connection(ls.getsockname(), timeout=2)
        try:
            # nobody accepts: the connection sits in the backlog and is never echoed
            c.sendall(b"x")
            c.settimeout(0.3)
            try:
                got = c.recv(1)
            except socket.timeout:
                got = None
            t.ok(got is None, "after a usage error nothing serves the passed socket", repr(got))
        finally:
            c.close()


def test_help_version(t, exe):
    r = subprocess.run(command(exe, "--help"), capture_output=True, timeout=10 * SLOW)
    t.ok(r.returncode == 0, f"--help exits 0 (got {r.returncode})")
    t.ok(r.stdout.startswith(b"Usage: echod"), "--help prints the usage to stdout", r.stdout[:200])
    t.ok(r.stderr == b"", "--help writes nothing to stderr", r.stderr)
    r = subprocess.run(command(exe, "-h"), capture_output=True, timeout=10 * SLOW)
    t.ok(r.returncode == 0 and r.stdout.startswith(b"Usage: echod"), "-h is --help")
    # meson.build's project() sets the version, in one place
    with open(os.path.join(SRC_ROOT, "meson.build"), encoding="utf-8") as f:
        m = re.search(r"^\s*version\s*:\s*'([^']+)'", f.read(), re.M)
    version = m.group(1) if m else "(none in meson.build)"
    for opt in ("--version", "-V"):
        r = subprocess.run(command(exe, opt), capture_output=True, timeout=10 * SLOW)
        t.ok(r.returncode == 0 and r.stdout == f"echod {version}\n".encode() and r.stderr == b"",
             f"{opt} prints 'echod {version}' to stdout and exits 0", f"{r.returncode} {r.stdout!r} {r.stderr!r}")
    # --help wins over a bad socket environment: nothing is validated or started
    r = subprocess.run(command(exe, "--help"), capture_output=True, timeout=10 * SLOW,
                       env=dict(os.environ, LISTEN_FDS="1", LISTEN_PID="1"))
    t.ok(r.returncode == 0, "--help with a bogus LISTEN_FDS still exits 0")


def parse_help(text):
    """{long option: (short or None, takes a value)} from the --help text."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s+(?:-([A-Za-z0-9]), )?--([a-z][a-z0-9-]*)(?:[ =](\S+))?", line)
        if m:
            out[m.group(2)] = (m.group(1), m.group(3) is not None)
    return out


VALUE_FOR = {
    "max-clients": "3", "max-per-source": "2", "idle-timeout": "10", "drain-timeout": "1",
    "log-level": "debug", "log-peer": "network",
}


def test_help_lists_the_parser(t, exe):
    text = subprocess.run(command(exe, "--help"), capture_output=True, timeout=10 * SLOW).stdout.decode()
    opts = parse_help(text)
    expected = {"listen", "listen-udp", "max-clients", "max-per-source", "idle-timeout",
                "drain-timeout", "log-level", "log-peer", "proxy-protocol", "check", "help", "version"}
    t.ok(set(opts) == expected, "--help lists exactly the options of the interface",
         f"listed {sorted(opts)}, expected {sorted(expected)}")
    shorts = {s for s, _ in opts.values() if s}
    for name, (short, has_value) in sorted(opts.items()):
        for spelling in ([f"--{name}"] + ([f"-{short}"] if short else [])):
            if name in ("help", "version", "check"):
                r = subprocess.run(command(exe, spelling), capture_output=True, timeout=10 * SLOW)
                t.ok(r.returncode == 0, f"listed option {spelling} is accepted (exit {r.returncode})")
                continue
            port = free_port()
            if name in ("listen",):
                args = [spelling, f"127.0.0.1:{port}"]
            elif name == "listen-udp":
                args = ["--listen", f"127.0.0.1:{port}", spelling, f"127.0.0.1:{free_port()}"]
            elif not has_value:
                args = ["--listen", f"127.0.0.1:{port}", spelling]
            else:
                args = ["--listen", f"127.0.0.1:{port}", spelling, VALUE_FOR.get(name, "1")]
            d = Daemon(exe, args).start()
            try:
                ready = d.notify.wait_for(lambda m: "READY=1" in m[3], 10 * SLOW)
                t.ok(ready is not None, f"listed option {' '.join(args[-2:])} is accepted and echod "
                     f"gets ready (status {d.poll()})", d.stderr_text())
            finally:
                st = d.stop()
            t.ok(st == 0, f"... and stops with status 0 on SIGTERM (got {st})", d.stderr_text())
    # nothing beyond the list: unlisted names and every unlisted short letter are refused
    letters = [c for c in string.ascii_letters + string.digits if c not in shorts]
    if VALGRIND:
        letters = letters[::6]
    unlisted = ["--foreground", "--daemon", "--port=7", "--verbose", "--quiet", "--config=x",
                "--user=nobody", "--bind=127.0.0.1", "--inetd"] + [f"-{c}" for c in letters]
    port = free_port()
    for opt in unlisted:
        r = subprocess.run(command(exe, "--listen", f"127.0.0.1:{port}", opt), capture_output=True,
                           timeout=10 * SLOW)
        t.ok(r.returncode == 64 and r.stderr.count(b"\n") == 1,
             f"unlisted option {opt} is refused with exit 64 and one line (got {r.returncode})",
             r.stderr)
    # the README and the man page document the same long options as --help
    for doc in ("README.md", os.path.join("src", "echod.8")):
        path = os.path.join(SRC_ROOT, doc)
        if not os.path.exists(path):
            t.ok(False, f"{doc} exists beside the code")
            continue
        with open(path, errors="replace") as f:
            body = re.sub(r"\bFl \\-", "--", f.read()).replace("\\-", "-")  # mdoc: Fl \-x is --x
        named = set(re.findall(r"--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)", body))
        missing = sorted(set(opts) - named)
        extra = sorted(n for n in named - set(opts) if n not in ("prefix", "setup", "buildtype"))
        t.ok(not missing, f"{doc} documents every option of --help", f"missing: {missing}")
        t.ok(not [e for e in extra if re.match(r"(max|idle|drain|log|listen|proxy)", e)],
             f"{doc} documents no echod option that --help lacks", f"extra: {extra}")


def test_no_sockets(t, exe):
    d, st = start_exit(exe, [])
    lines = d.lines()
    t.ok(st == 1, f"no sockets and no --listen: exit status 1 (got {st})", d.stderr_text())
    t.ok(len(lines) == 1, "... one line on stderr", d.stderr_text())
    t.ok(lines and "--listen" in lines[0] and re.search(r"socket", lines[0]) and
         re.search(r"\.socket|socket unit|socket activation", lines[0]),
         "... which mentions --listen and the socket unit", d.stderr_text())
    t.ok(d.notify.snapshot() == [], "... and no READY=1", repr(d.notify.snapshot()))
    # LISTEN_PID names another process: the fds are not for us
    with listen_socket() as ls:
        d, st = start_exit(exe, [], sockets=[ls], listen_pid=1)
        t.ok(st == 1 and len(d.lines()) == 1,
             f"LISTEN_PID of another process: fds ignored, exit 1 with one line (got {st})", d.stderr_text())


def test_unsupported_fd(t, exe):
    r, w = os.pipe()
    try:
        d, st = start_exit(exe, [], extra_fds={3: r})
        lines = d.lines()
        t.ok(st == 1, f"a pipe on fd 3: exit status 1 (got {st})", d.stderr_text())
        t.ok(len(lines) == 1 and re.search(r"\bfd 3\b|descriptor 3\b", lines[0]),
             "... one line naming fd 3", d.stderr_text())
        t.ok(d.notify.snapshot() == [], "... and no READY=1")
    finally:
        os.close(r)
        os.close(w)
    with open(__file__, "rb") as f:
        d, st = start_exit(exe, [], extra_fds={3: f.fileno()})
        t.ok(st == 1 and len(d.lines()) == 1 and re.search(r"\bfd 3\b", d.stderr_text()),
             f"a regular file on fd 3: exit 1, one line naming fd 3 (got {st})", d.stderr_text())
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        d, st = start_exit(exe, [], extra_fds={3: s.fileno()})
        t.ok(st == 1 and len(d.lines()) == 1 and re.search(r"\bfd 3\b", d.stderr_text()),
             f"an AF_UNIX SOCK_SEQPACKET socket on fd 3: exit 1, one line naming fd 3 (got {st})",
             d.stderr_text())
    finally:
        s.close()
    # a good listener on fd 3 and a bad one on fd 4: the whole start fails, naming fd 4
    with listen_socket() as ls:
        r, w = os.pipe()
        try:
            d, st = start_exit(exe, [], extra_fds={3: ls.fileno(), 4: r})
            t.ok(st == 1 and re.search(r"\bfd 4\b", d.stderr_text()) and not d.notify.snapshot(),
                 f"a listener on fd 3 and a pipe on fd 4: exit 1 naming fd 4, no READY (got {st})",
                 d.stderr_text())
        finally:
            os.close(r)
            os.close(w)


if __name__ == "__main__":
    run([test_bad_usage, test_help_version, test_help_lists_the_parser, test_no_sockets,
         test_unsupported_fd])
