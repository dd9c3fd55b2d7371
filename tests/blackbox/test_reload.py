#!/usr/bin/env python3
"""Reload (SIGHUP) re-executes echod in place: with the same binary, 20 established
connections go on echoing byte-exact on the same sockets and children, the PID stays,
RELOADING=1 then READY=1 reach the service manager, STATUS keeps its counts, new
connections are served, the adopted children are counted, reaped and drained by SIGTERM,
count against --max-clients and --max-per-source, and still report to the main process.
With a binary that cannot start (replaced on disk, as an upgrade would), the running image
serves on, every connection intact, with one clear line and READY=1. --listen sockets are
taken over too; a connection still sending its PROXY header is finished first; a state of
another version is refused and its children drained; a process a state names that is not a
child of echod is neither taken over nor signalled."""

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (EMULATED, SLOW, VALGRIND, Daemon, Skip, alive, command, connect, connect_from,  # noqa: E402
                       free_port, is_refused_or_closed, listen_socket, pattern, recv_exact,
                       recv_to_eof, roundtrip, run, started, status_counts, udp_socket,
                       wait_until)
from test_journal import ID_READY, JournalSocket, one  # noqa: E402


def echo_each(conns, round_no):
    """Sends a distinct payload on every connection and checks it comes back byte-exact;
    returns the indexes of the connections that did not."""
    bad = []
    for i, s in enumerate(conns):
        data = pattern(3000 + i, seed=round_no * 100 + i)
        try:
            s.sendall(data)
            if recv_exact(s, len(data), 5 * SLOW) != data:
                bad.append(i)
        except OSError:
            bad.append(i)
    return bad


def reload_and_wait(d, n_ready_before):
    """SIGHUP, then RELOADING=1 and one more READY=1; returns the notify messages since."""
    n_before = len(d.notify.snapshot())
    d.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20 * SLOW
    while time.monotonic() < deadline:
        msgs = d.notify.snapshot()
        if sum("READY=1" in m[3].split("\n") for m in msgs) > n_ready_before:
            return msgs[n_before:]
        time.sleep(0.02)
    return d.notify.snapshot()[n_before:]


def no_emulator():
    if EMULATED:
        raise Skip("the reload executes the binary itself, which needs binfmt_misc under an emulator")


class Scratch(contextlib.ExitStack):
    """What a test sets up besides echod, undone at exit whatever happens, last first:
    connections and sockets closed (closing one the test closed already does nothing),
    a process of the test's own killed by its pid and reaped, the scratch directory removed.
    echod itself is the test's to stop (run() kills and reaps it if the test did not)."""

    def __init__(self):
        super().__init__()
        self.tmp = None

    def path(self, name):
        """name in the test's scratch directory, made at the first call."""
        if self.tmp is None:
            self.tmp = tempfile.mkdtemp(prefix="echod-reload-")
            self.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        return os.path.join(self.tmp, name)

    def copy(self, exe, name="echod"):
        """A copy of exe in the scratch directory: the binary a test may replace."""
        path = self.path(name)
        shutil.copy2(exe, path)
        return path

    def keep(self, s):
        """Closes the socket s at exit; returns it."""
        self.callback(s.close)
        return s

    def listen(self):
        return self.keep(listen_socket())

    def connect(self, addr, n):
        """n connections to addr, closed at exit."""
        return [self.keep(connect(addr, 5 * SLOW)) for _ in range(n)]

    def popen(self, argv):
        """A process of the test's own, killed by its pid and reaped at exit."""
        p = subprocess.Popen(argv)
        self.callback(p.wait)
        self.callback(p.kill)  # last registered, first run
        return p


def test_reload_same_binary(t, exe):
    no_emulator()
    with Scratch() as sc:
        ls = sc.listen()
        d = Daemon(exe, ["--drain-timeout", "20"], sockets=[ls]).start()
        d.wait_ready()
        conns = sc.connect(ls.getsockname(), 20)
        t.ok(not echo_each(conns, 1), "20 connections echo before the reload")
        kids = {p for p, _ in d.children()}
        st = d.notify.wait_status(lambda c: c[0] == 20 and c[2] == 20, 5 * SLOW)
        t.ok(st and st[:4] == (20, 1024, 20, 0), f"STATUS before: 20/1024 active, 20 served ({st})")

        msgs = reload_and_wait(d, 1)
        texts = [m[3] for m in msgs]
        reloading = [x for x in texts if "RELOADING=1" in x.split("\n")]
        t.ok(reloading and any(ln.startswith("MONOTONIC_USEC=") for ln in reloading[0].split("\n")),
             "RELOADING=1 with MONOTONIC_USEC is sent", repr(texts))
        ready = [m for m in msgs if "READY=1" in m[3].split("\n")]
        t.ok(ready and ready[0][1] == d.pid and d.poll() is None,
             f"READY=1 again, from the same PID {d.pid}, which still runs", repr(texts))
        line = d.wait_line(r"ready: .*; echod \S+, reloaded, 20 clients taken over", 5 * SLOW)
        t.ok(bool(line), "the new image's ready line says it took over 20 clients", d.stderr_text()[-2000:])
        after = {p for p, _ in d.children()}
        t.ok(after == kids, "the same 20 children serve, nothing was forked or lost",
             f"before {sorted(kids)} after {sorted(after)}")
        t.ok(not echo_each(conns, 2), "all 20 connections still echo byte-exact on the same sockets")
        st = status_counts(ready[0][3].split("STATUS=", 1)[1]) if ready and "STATUS=" in ready[0][3] else None
        t.ok(st and st[:4] == (20, 1024, 20, 0), f"READY's STATUS keeps the counts: 20 active, 20 served ({st})")

        t.ok(all(roundtrip(ls.getsockname(), pattern(5000, seed=k), 5 * SLOW) == pattern(5000, seed=k)
                 for k in range(5)), "5 new connections are served by the new image")
        for s in conns[:5]:
            s.close()
        st = d.notify.wait_status(lambda c: c[0] == 15 and c[2] == 25, 5 * SLOW)
        t.ok(st and st[:3] == (15, 1024, 25),
             f"5 adopted children that end are reaped and uncounted: 15 active, 25 served ({st})")

        d.send_signal(signal.SIGTERM)
        t.ok(d.wait_line(r"stopping: 15 clients draining", 5 * SLOW), "SIGTERM drains the 15 adopted children",
             d.stderr_text()[-1500:])
        ends = [recv_to_eof(s, 10 * SLOW) for s in conns[5:]]
        t.ok(all(e == b"" for e in ends), "each adopted connection ends with EOF")
        rc = d.wait(15 * SLOW)
        t.ok(rc == 0, f"exit 0 after the drain ({rc})", d.stderr_text()[-1500:])
        t.ok(not [p for p in kids if alive(p)], "no child left")


def test_check(t, exe):
    """--check, what a reload runs on the new binary: the same options, the self-test, no
    socket opened, exit 0; a bad option exits 64 as it would at start."""
    port = free_port()
    r = subprocess.run(command(exe, "--check", "--listen", f"127.0.0.1:{port}", "--max-clients", "5"),
                       capture_output=True, timeout=20 * SLOW)
    t.ok(r.returncode == 0 and r.stdout == b"" and r.stderr == b"",
         f"--check with good options exits 0, quietly ({r.returncode} {r.stderr!r})")
    with socket.socket() as s:
        t.ok(s.connect_ex(("127.0.0.1", port)) != 0, "... and listened on nothing")
    r = subprocess.run(command(exe, "--check", "--max-clients", "0"), capture_output=True, timeout=20 * SLOW)
    t.ok(r.returncode == 64 and r.stderr.count(b"\n") == 1,
         f"--check with a bad option exits 64 with one line ({r.returncode} {r.stderr!r})")
    for version, ok in (("1", True), ("99", False), ("1x", False), ("", False)):
        r = subprocess.run(command(exe, "--check"), capture_output=True, timeout=20 * SLOW,
                           env=dict(os.environ, ECHOD_CHECK_STATE_VERSION=version))
        if ok:
            t.ok(r.returncode == 0 and r.stderr == b"", f"--check for a state of version 1 (this build's) exits 0 "
                 f"({r.returncode} {r.stderr!r})")
        else:
            t.ok(r.returncode == 1 and r.stderr.count(b"\n") == 1 and b"state of version %s," % version.encode()
                 in r.stderr, f"--check for a state of version {version!r} exits 1 with one line "
                 f"({r.returncode} {r.stderr!r})")


def broken_binary(path, kind):
    """Replaces path as a package upgrade does (a new file renamed over it). "hangs": a
    binary whose check never ends, and which has started a process of its own (its pid in
    path.kid) that must not outlive it."""
    tmp = path + ".new"
    scripts = {"garbage": b"\x7fELF not really\n",
               "fails": b"#!/bin/sh\necho broken >&2\nexit 3\n",
               "hangs": b"#!/bin/sh\nsleep 60 &\necho $! >\"$0.kid\"\nwait\n"}
    with open(tmp, "wb") as f:
        f.write(scripts[kind])
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)


def test_reload_broken_binary(t, exe):
    no_emulator()
    for kind, expect in (("garbage", r"cannot run|--check"), ("fails", r"--check exited with status 3"),
                         ("hangs", r"--check did not finish within 5 s")):
        with Scratch() as sc:
            copy = sc.copy(exe)
            ls = sc.listen()
            d = Daemon(copy, sockets=[ls]).start()
            d.wait_ready()
            conns = sc.connect(ls.getsockname(), 20)
            t.ok(not echo_each(conns, 1), f"{kind}: 20 connections echo")
            kids = {p for p, _ in d.children()}
            broken_binary(copy, kind)
            msgs = reload_and_wait(d, 1)
            line = d.wait_line(r"Reload failed, still serving with echod \S+ \(pid %d\), no connection "
                               r"dropped: .*(%s)" % (d.pid, expect), 5 * SLOW)
            t.ok(bool(line), f"{kind}: one clear line says the reload failed and why",
                 d.stderr_text()[-2000:])
            if kind == "hangs":
                with open(copy + ".kid") as f:
                    kid = int(f.read())
                t.ok(wait_until(lambda: not alive(kid), 2 * SLOW),
                     f"{kind}: the check's own process ({kid}) was killed with it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)  # if it was left: this test started it
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(kid, 0)  # an orphan: this test, a subreaper, reaps it
            ready = [m[3] for m in msgs if "READY=1" in m[3].split("\n")]
            t.ok(ready and "reload failed" in ready[0], f"{kind}: READY=1 ends the reload, STATUS says it failed",
                 repr([m[3] for m in msgs]))
            t.ok(d.poll() is None and {p for p, _ in d.children()} == kids,
                 f"{kind}: the old image still runs with its 20 children")
            t.ok(not echo_each(conns, 2), f"{kind}: every connection still echoes byte-exact")
            t.ok(roundtrip(ls.getsockname(), b"after", 5 * SLOW) == b"after",
                 f"{kind}: new connections are still served")
            st = d.notify.wait_status(lambda c: c[2] == 21, 5 * SLOW)
            t.ok(st and st[2] == 21, f"{kind}: STATUS goes on counting ({st})")
            for s in conns:
                s.close()
            rc = d.stop()
            t.ok(rc == 0, f"{kind}: SIGTERM still stops it cleanly ({rc})")


def test_reload_state_version(t, exe):
    """The running image tells --check the version of the state it will hand over: a new
    binary that cannot read it fails the check, and the reload fails before the exec, every
    connection intact. Here the new binary is a wrapper that asks echod's own --check about
    the version after the one it was given, as a binary of an older state format would."""
    no_emulator()
    with Scratch() as sc:
        copy = sc.copy(exe)
        sc.copy(exe, "echod.real")  # what the wrapper written below execs
        ls = sc.listen()
        d = Daemon(copy, sockets=[ls]).start()
        d.wait_ready()
        conns = sc.connect(ls.getsockname(), 3)
        t.ok(not echo_each(conns, 1), "version: 3 connections echo")
        with open(copy + ".new", "w") as f:
            f.write("#!/bin/sh\nexport ECHOD_CHECK_STATE_VERSION=$((${ECHOD_CHECK_STATE_VERSION:-0} + 1))\n"
                    "exec \"$0.real\" \"$@\"\n")
        os.chmod(copy + ".new", 0o755)
        os.rename(copy + ".new", copy)
        msgs = reload_and_wait(d, 1)
        t.ok(d.wait_line(r"Check failed: the running echod hands over a reload state of version 2, which", 5 * SLOW)
             and d.wait_line(r"Reload failed, .*--check exited with status 1", 5 * SLOW),
             "version: the check refuses the state's version, the reload fails", d.stderr_text()[-1500:])
        ready = [m[3] for m in msgs if "READY=1" in m[3].split("\n")]
        t.ok(ready and "reload failed" in ready[0] and d.poll() is None,
             "version: the old image serves on, STATUS says the reload failed", repr(ready))
        t.ok(not echo_each(conns, 2), "version: the 3 connections still echo")
        for s in conns:
            s.close()
        t.ok(d.stop() == 0, "version: exit 0")


def test_state_refused_close_on_exec(t, exe):
    """A descriptor the image before left without close-on-exec (a refused state's sockets)
    gets it at start, with close_range() and without (the one-by-one fallback)."""
    no_emulator()
    launchers = [None]
    helper = os.environ.get("ECHOD_TEST_NO_CLOSE_RANGE")
    if helper and os.access(helper, os.X_OK) and not VALGRIND:
        launchers.append([helper])
    else:
        t.skip("fallback: close-on-exec without close_range()", "no helper, or under valgrind")
    for launcher in launchers:
        kind = "fallback" if launcher else "close_range"

        def preexec():
            fd = os.memfd_create("state", 0)
            os.write(fd, state_of_another_version(os.getpid() + 1000000))
            os.dup2(fd, 50)
            a, b = socket.socketpair()
            os.dup2(a.fileno(), 51)  # dup2: no close-on-exec
            os.dup2(b.fileno(), 900)
        with Scratch() as sc:
            ls = sc.listen()
            d = Daemon(exe, sockets=[ls], env={"ECHOD_STATE_FD": "50"}, preexec=preexec,
                       launcher=launcher).start()
            d.wait_ready()
            flags = {}
            for fd in (51, 900):
                with open(f"/proc/{d.pid}/fdinfo/{fd}") as f:
                    flags[fd] = int(f.read().split("flags:", 1)[1].split()[0], 8)
            t.ok(all(v & os.O_CLOEXEC for v in flags.values()),
                 f"{kind}: the descriptors left open without close-on-exec have it now ({flags})")
            t.ok(roundtrip(ls.getsockname(), b"still", 5 * SLOW) == b"still", f"{kind}: echod serves")
            t.ok(d.stop() == 0, f"{kind}: exit 0")


def test_reload_watchdog(t, exe):
    """Under a watchdog the reload never starves it: WATCHDOG=1 before the check, which may
    take half the watchdog's period at most (a hung one is killed then), and with every
    READY=1, the new image's included. No gap between pings reaches WATCHDOG_USEC (4 s)."""
    no_emulator()
    with Scratch() as sc:
        copy = sc.copy(exe)
        ls = sc.listen()
        d = Daemon(copy, sockets=[ls], env={"WATCHDOG_USEC": "4000000"}).start()
        d.wait_ready()
        with connect(ls.getsockname(), 5 * SLOW) as s:
            t.ok(not echo_each([s], 1), "watchdog: a connection echoes")
            msgs = reload_and_wait(d, 1)
            ready = [m[3].split("\n") for m in msgs if "READY=1" in m[3].split("\n")]
            t.ok(ready and "WATCHDOG=1" in ready[0] and "reload failed" not in "\n".join(ready[0]),
                 "watchdog: the new image's READY=1 comes with WATCHDOG=1", repr(ready))
            broken_binary(copy, "hangs")
            n_before = len(d.notify.snapshot())
            msgs = reload_and_wait(d, 2)
            t.ok(d.wait_line(r"Reload failed, .*--check did not finish within 2 s", 5 * SLOW),
                 "watchdog: a hung check is killed after half the watchdog's period", d.stderr_text()[-1500:])
            with contextlib.suppress(OSError, ValueError):
                with open(copy + ".kid") as f:
                    kid = int(f.read())
                wait_until(lambda: not alive(kid), 2 * SLOW)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(kid, 0)
            all_msgs = d.notify.snapshot()
            pings = [m[0] for m in all_msgs[n_before - 1:] if "WATCHDOG=1" in m[3].split("\n")]
            gaps = [b - a for a, b in zip(pings, pings[1:])]
            t.ok(len(pings) >= 3 and max(gaps) < 4.0, f"watchdog: pings during the failed reload, no gap of "
                 f"4 s ({[round(g, 2) for g in gaps]})")
            t.ok(not echo_each([s], 2), "watchdog: the connection still echoes")
        t.ok(d.stop() == 0, "watchdog: exit 0")


def test_reload_symlink(t, exe):
    """Installed through a symlink (started by its absolute path), the reload executes what
    the link names at the time of the reload, not the file it named at start: here a link
    moved to a binary that fails its check, so the reload fails, with that binary's status."""
    no_emulator()
    with Scratch() as sc:
        real, link = sc.copy(exe, "echod-1"), sc.path("echod")
        os.symlink(real, link)
        ls = sc.listen()
        d = Daemon(link, sockets=[ls]).start()
        d.wait_ready()
        broken_binary(sc.path("echod-2"), "fails")
        os.symlink(sc.path("echod-2"), link + ".new")
        os.rename(link + ".new", link)
        reload_and_wait(d, 1)
        t.ok(d.wait_line(r"Reload failed, .*%s --check exited with status 3" % link, 5 * SLOW),
             "symlink: the reload ran the binary the link names now", d.stderr_text()[-1500:])
        t.ok(roundtrip(ls.getsockname(), b"still", 5 * SLOW) == b"still", "symlink: echod serves on")
        t.ok(d.stop() == 0, "symlink: exit 0")


def test_reload_listen_option(t, exe):
    no_emulator()
    with Scratch() as sc:
        path = sc.path("e.sock")
        port = free_port()
        d = Daemon(exe, ["--listen", f"127.0.0.1:{port}", "--listen", path]).start()
        d.wait_ready()
        conns = sc.connect(("127.0.0.1", port), 3)
        t.ok(not echo_each(conns, 1), "--listen: 3 connections echo")
        reload_and_wait(d, 1)
        t.ok(d.wait_line(r"reloaded, 3 clients taken over", 5 * SLOW),
             "--listen: the new image took over the sockets (no bind again) and the 3 children",
             d.stderr_text()[-2000:])
        t.ok(not echo_each(conns, 2), "--listen: the 3 connections still echo")
        t.ok(roundtrip(("127.0.0.1", port), b"tcp", 5 * SLOW) == b"tcp", "--listen: the TCP socket is served")
        t.ok(roundtrip(path, b"unix", 5 * SLOW) == b"unix", "--listen: the AF_UNIX socket is served")
        for s in conns:
            s.close()
        rc = d.stop()
        t.ok(rc == 0 and not os.path.exists(path),
             f"--listen: exit 0, and the path is still removed on exit ({rc})")


def test_reload_many_sockets(t, exe):
    """Every socket systemd passed goes over, however many (a socket unit may list any number
    of addresses): 140 here, more than twice the 64 --listen sockets a state can name."""
    no_emulator()
    with Scratch() as sc:
        lss = [sc.listen() for _ in range(140)]
        d = Daemon(exe, sockets=lss).start()
        d.wait_ready(20 * SLOW)
        conns = [sc.keep(connect(lss[i].getsockname(), 5 * SLOW)) for i in (0, 139)]
        t.ok(not echo_each(conns, 1), "140 sockets: a connection on the first and the last echo")
        msgs = reload_and_wait(d, 1)
        ready = [m[3] for m in msgs if "READY=1" in m[3].split("\n")]
        st = status_counts(ready[0].split("STATUS=", 1)[1]) if ready and "STATUS=" in ready[0] else None
        t.ok(d.poll() is None and st and st[:3] == (2, 1024, 2) and "reload failed" not in ready[0],
             f"140 sockets: the new image is ready with both clients ({st})", d.stderr_text()[-1000:])
        line = d.wait_line(r"ready: tcp .*, \.\.\. and \d+ more; max 1024 clients; echod \S+, reloaded, 2 clients "
                           r"taken over$", 5 * SLOW)
        t.ok(bool(line), "140 sockets: the ready line keeps the version and the takeover note; the list ends in "
             "'... and N more'", d.stderr_text()[-600:])
        t.ok(not echo_each(conns, 2), "140 sockets: both connections still echo")
        t.ok(all(roundtrip(lss[i].getsockname(), b"new", 5 * SLOW) == b"new" for i in (0, 139)),
             "140 sockets: the first and the last socket are served by the new image")
        for s in conns:
            s.close()
        t.ok(d.stop() == 0, "140 sockets: exit 0")


def test_reload_caps(t, exe):
    """Adopted children count against --max-per-source (by their source) and --max-clients;
    the UDP counts survive too."""
    no_emulator()
    with Scratch() as sc:
        ls, us = sc.listen(), sc.keep(udp_socket())
        d = Daemon(exe, ["--max-clients", "4", "--max-per-source", "2"], sockets=[ls, us]).start()
        d.wait_ready()
        dest = ls.getsockname()
        conns = [sc.keep(connect_from(src, dest)) for src in ("127.0.0.1", "127.0.0.1", "127.0.0.2")]
        t.ok(not echo_each(conns, 1), "caps: 2 connections from 127.0.0.1, 1 from 127.0.0.2")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(5 * SLOW)
            for k in range(3):
                c.sendto(b"dgram%d" % k, us.getsockname())
                c.recvfrom(100)
        st = d.notify.wait_status(lambda c: c[0] == 3 and c[4] == 3, 5 * SLOW)
        t.ok(st and st[4] == 3, f"caps: 3 datagrams echoed ({st})")
        reload_and_wait(d, 1)
        t.ok(d.wait_line(r"reloaded, 3 clients taken over", 5 * SLOW), "caps: reloaded", d.stderr_text()[-1500:])
        third = sc.keep(connect_from("127.0.0.1", dest))
        t.ok(is_refused_or_closed(third), "caps: a third connection from 127.0.0.1 is refused: "
             "its 2 adopted ones still count")
        third.close()
        fourth = sc.keep(connect_from("127.0.0.2", dest))
        conns.append(fourth)
        t.ok(not echo_each([fourth], 2), "caps: a second one from 127.0.0.2 is served (4 of 4)")
        fifth = sc.keep(connect_from("127.0.0.3", dest))
        conns.append(fifth)
        fifth.sendall(b"waiting")
        fifth.settimeout(0.5 * SLOW)
        try:
            early = fifth.recv(100)
        except socket.timeout:
            early = None
        t.ok(early is None, f"caps: at --max-clients 4 (3 adopted) a fifth waits in the backlog ({early!r})")
        conns[0].close()
        t.ok(recv_exact(fifth, 7, 5 * SLOW) == b"waiting", "caps: ... and is served once an adopted one ends")
        st = d.notify.wait_status(lambda c: c[2] == 5 and c[3] == 1, 5 * SLOW)
        t.ok(st and st[2:5] == (5, 1, 3),
             f"caps: STATUS: 5 served, 1 refused, the 3 datagrams of the image before ({st})")
        for s in conns:
            s.close()
        t.ok(d.stop() == 0, "caps: exit 0")


def test_reload_waits_for_proxy_header(t, exe):
    """A connection still sending its PROXY header when SIGHUP comes is finished by the
    running image first (its half-read header is not handed over): the reload waits for it,
    and the connection is served and survives the reload."""
    no_emulator()
    with Scratch() as sc:
        ls = sc.listen()
        d = Daemon(exe, ["--proxy-protocol"], sockets=[ls]).start()
        d.wait_ready()
        s = sc.keep(connect(ls.getsockname(), 5 * SLOW))
        # The whole exchange stays well within the header's 3 s (PENDING_TIMEOUT_USEC), on
        # the wall clock whatever the speed of the build under test: fixed waits here.
        s.sendall(b"PROXY TCP4 192.0.2.1 ")
        time.sleep(0.1)
        n_before = len(d.notify.snapshot())
        d.send_signal(signal.SIGHUP)
        t.ok(d.notify.wait_for(lambda m: "RELOADING=1" in m[3].split("\n"), 5 * SLOW),
             "proxy: RELOADING=1 at once")
        time.sleep(0.5)
        msgs = d.notify.snapshot()[n_before:]
        t.ok(not any("READY=1" in m[3].split("\n") for m in msgs) and not d.wait_line(r"reloading: checking", 0),
             "proxy: the re-execution waits while a header is coming", d.stderr_text()[-1000:])
        s.sendall(b"198.51.100.1 4000 7\r\n")
        t.ok(d.wait_line(r"reloaded, 1 client taken over", 5 * SLOW),
             "proxy: once the header is in, the connection gets its child and the reload goes on",
             d.stderr_text()[-1500:])
        t.ok(not echo_each([s], 1), "proxy: the connection echoes after the reload")
        s.close()
        t.ok(d.stop() == 0, "proxy: exit 0")


def sleeping_kid():
    """Forks a "sleep 60" and returns its pid once it runs sleep (a pipe that closes on
    exec): a SIGTERM before the exec would find Python's forked copy instead."""
    r, w = os.pipe()
    kid = os.fork()
    if kid == 0:
        os.close(r)
        os.execvp("sleep", ["sleep", "60"])
    os.close(w)
    while os.read(r, 1):
        pass
    os.close(r)
    return kid


def state_of_another_version(pid):
    """A reload state of a version this build does not know, naming one child: only its
    stable header (magic, version, sizes, where the pids are; src/handoff.c) is readable."""
    header = struct.pack("=8sIIIIQQ", b"ECHODHO\n", 99, 40, 1, 16, 40, 56)
    return header + struct.pack("=iIQ", pid, 0, 0)


def test_state_refused(t, exe):
    """echod started as after a reload, with a state it cannot read: a state of another
    version names a child, which is drained (SIGTERM, reaped) as on a stop; a state that is
    no state at all is an error line. echod serves either way."""
    no_emulator()
    for kind in ("other-version", "garbage"):

        def preexec(kind=kind):
            kid = sleeping_kid()  # becomes echod's child through the exec, as a reload's would
            data = state_of_another_version(kid) if kind == "other-version" else b"not a state" * 10
            fd = os.memfd_create("state", 0)
            os.write(fd, data)
            os.dup2(fd, 50)
        with Scratch() as sc:
            ls = sc.listen()
            d = Daemon(exe, sockets=[ls], env={"ECHOD_STATE_FD": "50"}, preexec=preexec).start()
            d.wait_ready()
            if kind == "other-version":
                t.ok(d.wait_line(r"state of the image before the reload is of another version: its 1 "
                                 r"child is drained", 2 * SLOW), f"{kind}: refused, its child drained",
                     d.stderr_text()[-1500:])
                m = d.wait_line(r"Child (\d+) was killed by signal Terminated", 5 * SLOW)
                kid = int(m[0].group(1)) if m else None
                t.ok(kid and wait_until(lambda: not os.path.exists(f"/proc/{kid}"), 5 * SLOW),
                     f"{kind}: the child it names ({kid}) got SIGTERM and was reaped", d.stderr_text()[-1500:])
            else:
                t.ok(d.wait_line(r"state of the image before the reload is not readable", 2 * SLOW),
                     f"{kind}: refused with one error line", d.stderr_text()[-1500:])
            t.ok(roundtrip(ls.getsockname(), b"still", 5 * SLOW) == b"still", f"{kind}: echod serves")
            t.ok(d.stop() == 0, f"{kind}: and stops with status 0")


def test_state_strangers(t, exe):
    """A state naming a process that is not echod's child (a corrupt or forged state: the
    image before a reload only names its own children) does not make echod adopt or signal
    it, whatever the state's version: only the child it also names is taken over or drained."""
    no_emulator()
    for version in (1, 99):
        with Scratch() as sc:
            ls = sc.listen()
            stranger = sc.popen(["sleep", "60"])

            def preexec(version=version, stranger_pid=stranger.pid):
                kid = os.fork()  # becomes echod's child through the exec, as a reload's would
                if kid == 0:
                    os.execvp("sleep", ["sleep", "60"])
                # the stable header (src/handoff.c), then this build's fixed part of 600 bytes
                fixed = 600 if version == 1 else 40
                data = bytearray(struct.pack("=8sIIIIQQ", b"ECHODHO\n", version, fixed, 2, 16, fixed,
                                             fixed + 32))
                data += bytes(fixed - len(data))
                if version == 1:
                    struct.pack_into("=ii", data, 72, -1, -1)  # no report socket
                data += struct.pack("=iIQ", kid, 0, 0) + struct.pack("=iIQ", stranger_pid, 0, 0)
                fd = os.memfd_create("state", 0)
                os.write(fd, bytes(data))
                os.dup2(fd, 50)
            d = Daemon(exe, sockets=[ls], env={"ECHOD_STATE_FD": "50"}, preexec=preexec).start()
            d.wait_ready()
            t.ok(roundtrip(ls.getsockname(), b"still", 5 * SLOW) == b"still", f"v{version}: echod serves")
            t.ok(d.stop() == 0, f"v{version}: and stops with status 0")
            t.ok(stranger.poll() is None, f"v{version}: the process it names that is not its child got no "
                 "signal", d.stderr_text()[-1500:])


def state_v1(pids, report_fds=(-1, -1), opened=()):
    """A version-1 state (src/handoff.c: the stable header, the counters, the report fds at
    72, n_opened at 80, the opened sockets from 88, 600 bytes in all), then the children."""
    data = bytearray(struct.pack("=8sIIIIQQ", b"ECHODHO\n", 1, 600, len(pids), 16, 600, 600 + 16 * len(pids)))
    data += bytes(600 - len(data))
    struct.pack_into("=iiI", data, 72, report_fds[0], report_fds[1], len(opened))
    for i, fd in enumerate(opened):
        struct.pack_into("=iI", data, 88 + 8 * i, fd, 0)
    for pid in pids:
        data += struct.pack("=iIQ", pid, 0, 0)
    return bytes(data)


def test_state_forged_fds(t, exe):
    """The descriptors a state names are checked before any is used: below 3 (stdout,
    stderr), twice, not sockets, or not the socket a --listen option asks for. Such a state
    is refused with one line and its child drained; echod still logs and serves. A state
    descriptor that is not a number of 3 or above, or not a memfd, is refused too."""
    no_emulator()
    port = free_port()
    cases = [("stdio", None, {"report_fds": (1, 2)}, [], r"names a descriptor below 3: refused, its 1 child is"),
             ("twice", None, {"report_fds": (51, 51)}, [], r"names one descriptor twice: refused"),
             ("file", "file", {"opened": (51,)}, ["--listen", f"127.0.0.1:{port}"],
              r"names a --listen descriptor that is not a stream or datagram socket: refused"),
             ("udp-for-tcp", "udp", {"opened": (51,)}, ["--listen", f"127.0.0.1:{port}"],
              r"names a --listen socket that does not match its option: refused, its 1 child is"),
             ("fd-text", None, None, [], r"ECHOD_STATE_FD=50x is not a descriptor of 3 or above"),
             ("fd-stdout", None, None, [], r"ECHOD_STATE_FD=1 is not a descriptor of 3 or above")]
    for kind, extra, state, args, expect in cases:

        def preexec(extra=extra, state=state):
            kid = sleeping_kid()  # becomes echod's child through the exec, as a reload's would
            if extra == "file":
                os.dup2(os.open("/dev/null", os.O_RDONLY), 51)
            elif extra == "udp":
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                os.dup2(u.fileno(), 51)
            fd = os.memfd_create("state", 0)
            os.write(fd, state_v1([kid], **(state or {})))
            os.dup2(fd, 50)
        env = {"ECHOD_STATE_FD": {"fd-text": "50x", "fd-stdout": "1"}.get(kind, "50")}
        with Scratch() as sc:
            ls = sc.listen()
            d = Daemon(exe, args, sockets=[ls], env=env, preexec=preexec).start()
            d.wait_ready()
            t.ok(d.wait_line(expect, 2 * SLOW), f"{kind}: the state is refused with one line", d.stderr_text()[-1500:])
            if state:
                t.ok(d.wait_line(r"Child \d+ was killed by signal Terminated", 5 * SLOW),
                     f"{kind}: the child it names is drained (and stderr still logs)", d.stderr_text()[-1500:])
            t.ok(roundtrip(ls.getsockname(), b"still", 5 * SLOW) == b"still", f"{kind}: echod serves")
            t.ok(d.stop() == 0, f"{kind}: and stops with status 0", d.stderr_text()[-1500:])


def test_reload_reports(t, exe):
    """Under journald the children report to the main process over a socket (their
    connection's record): the new image reads the reports of the children it took over."""
    no_emulator()
    with Scratch() as sc:
        j = JournalSocket()
        sc.callback(j.close)
        with started(exe, journal=True, env=j.env()) as (d, ls):
            conns = sc.connect(ls.getsockname(), 3)
            t.ok(not echo_each(conns, 1), "journal: 3 connections echo")
            kids = {p for p, _ in d.children()}
            reload_and_wait(d, 1)
            ready = j.wait_for(lambda r: one(r, "MESSAGE_ID") == ID_READY and one(r, "ECHOD_ADOPTED") == "3",
                               5 * SLOW)
            t.ok(ready and one(ready[0], "ECHOD_VERSION"), "journal: the new image's ready record says "
                 "it took over 3 clients, with its version", str(j.records[-3:]))
            for s in conns:
                s.close()
            rs = j.wait_for(lambda r: one(r, "ECHOD_CHILD_PID") in {str(p) for p in kids}
                            and one(r, "ECHOD_END") == "eof", 10 * SLOW, count=3)
            t.ok(len(rs) == 3, f"journal: the 3 adopted children's reports become records ({len(rs)})",
                 str(j.records[-5:]))
            t.ok(not d.wait_line(r"connection from", 0.3),
                 "journal: no child had to write its line itself", d.stderr_text()[-1500:])
            t.ok(d.stop() == 0, "journal: exit 0")


if __name__ == "__main__":
    run([test_check, test_reload_same_binary, test_reload_broken_binary, test_reload_state_version,
         test_state_refused_close_on_exec, test_reload_watchdog, test_reload_symlink,
         test_reload_listen_option,
         test_reload_many_sockets,
         test_reload_reports, test_reload_caps, test_reload_waits_for_proxy_header, test_state_refused,
         test_state_strangers, test_state_forged_fds])
