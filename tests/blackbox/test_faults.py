#!/usr/bin/env python3
"""Faults never stop the service: out of descriptors, accept pauses instead of spinning
(CPU time measured) and serving resumes when descriptors return; fork() failing (RLIMIT_NPROC
as a non-root user) is logged, that connection closed, and serving resumes."""

import os
import pwd
import resource
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (EMULATED, Daemon, ExecFailed, Skip, connect, fd_targets,  # noqa: E402
                       listen_socket, need_root, no_valgrind, proc_stat, roundtrip, run,
                       started, wait_until)


def hammer(addr, seconds):
    """Connects as fast as possible for seconds (each connection closed after a short wait);
    returns the number of connect attempts."""
    stop = time.monotonic() + seconds
    count = [0]

    def one():
        while time.monotonic() < stop:
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(0.2)
                s.connect(addr)
                s.sendall(b"h")
                try:
                    s.recv(1)
                except OSError:
                    pass
            except OSError:
                pass
            finally:
                s.close()
                count[0] += 1
    ts = [threading.Thread(target=one, daemon=True) for _ in range(4)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(seconds + 5)
    return count[0]


def served_soon(addr, timeout):
    def attempt():
        try:
            return roundtrip(addr, b"back", 1.0) == b"back"
        except OSError:
            return False
    return wait_until(attempt, timeout, step=0.1)


def test_emfile_no_spin(t, exe):
    no_valgrind("CPU time of an emulated process says nothing about spinning")
    with started(exe) as (d, ls):
        t.ok(roundtrip(ls.getsockname(), b"pre", 5) == b"pre", "served before the limit")
        wait_until(lambda: not d.children(), 5)
        fds = set(fd_targets(d.pid))
        lowest_free = next(i for i in range(4096) if i not in fds)
        soft, hard = resource.prlimit(d.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (lowest_free, hard))
        cpu0 = proc_stat(d.pid)[2]
        t0 = time.monotonic()
        n = hammer(ls.getsockname(), 3.0)
        wall = time.monotonic() - t0
        cpu = proc_stat(d.pid)[2] - cpu0
        t.ok(cpu < 0.3, f"RLIMIT_NOFILE {lowest_free} (no fd left for accept): {n} connects in "
             f"{wall:.1f} s cost echod {cpu:.2f} s CPU (no busy loop)")
        t.ok(d.poll() is None, "echod is still running")
        emfile = [ln for ln in d.lines() if "descriptor" in ln.lower() or "EMFILE" in ln
                  or "open files" in ln.lower()]
        t.ok(1 <= len(emfile) <= 3, f"the shortage is logged, once per episode ({len(emfile)} lines)",
             "\n".join(d.lines()[-10:]))
        resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (soft, hard))
        t0 = time.monotonic()
        ok = served_soon(ls.getsockname(), 10)
        t.ok(ok, f"descriptors back: serving resumes ({time.monotonic() - t0:.1f} s)",
             "\n".join(d.lines()[-10:]))
        t.ok(d.stop() == 0, "stops with status 0")


def nobody_processes(uid):
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            n += int(line.split()[1]) == uid
                            break
            except OSError:
                pass
    return n


def can_run_as(pw, path):
    """Whether the user pw may read and execute path: a native exec needs the execute bit,
    qemu-user reads the binary it runs. Asked of a child that has become that user."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os._exit(0 if os.access(path, os.R_OK | os.X_OK) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def test_fork_fails(t, exe):
    need_root()
    no_valgrind("valgrind's own threads and limits make RLIMIT_NPROC meaningless")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        raise Skip("no user 'nobody'")
    if not can_run_as(pw, exe):
        raise Skip(f"nobody cannot read and execute {exe} (a folder on its path is closed "
                   "to other users, e.g. a checkout under /root)")
    ls = listen_socket()
    try:
        # echod and one filler process of nobody's fill the limit; killing the filler gives
        # the room back (raising another user's limit needs CAP_SYS_RESOURCE)
        limit = nobody_processes(pw.pw_uid) + 2
        d = Daemon(exe, [], sockets=[ls], notify=False, user=(pw.pw_uid, pw.pw_gid),
                   rlimits={resource.RLIMIT_NPROC: (limit, limit)})
        try:
            d.start()
        except ExecFailed as e:
            raise Skip(f"cannot exec echod as nobody here: {e}")
        d.wait_ready()
        filler = os.fork()
        if filler == 0:
            try:
                os.setgroups([])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
                time.sleep(60)
            finally:
                os._exit(0)
        filler_alive = True
        wait_until(lambda: nobody_processes(pw.pw_uid) >= limit, 5)
        closed = 0
        cpu0 = proc_stat(d.pid)[2]
        for i in range(5):
            try:
                with connect(ls.getsockname(), 3) as s:
                    s.sendall(b"nofork")
                    s.settimeout(3)
                    try:
                        got = s.recv(10)
                    except ConnectionResetError:
                        got = b""
                    closed += got == b""
            except OSError:
                closed += 1
        t.ok(closed == 5, f"RLIMIT_NPROC {limit} as nobody: fork fails, each connection is closed "
             f"without echo ({closed} of 5)")
        time.sleep(0.5)
        t.ok(d.poll() is None, "echod survives failing fork()s", d.stderr_text())
        cpu = proc_stat(d.pid)[2] - cpu0
        t.ok(cpu < 0.5, f"no busy loop meanwhile ({cpu:.2f} s CPU)")
        t.ok([ln for ln in d.lines() if "fork" in ln.lower()], "the fork failure is logged",
             d.stderr_text())
        os.kill(filler, 9)
        os.waitpid(filler, 0)
        filler_alive = False
        desc = "processes available again: serving resumes"
        if EMULATED:
            # RLIMIT_NPROC counts threads: echod alone fills the limit set above
            t.skip(desc, "qemu-user runs a thread of its own in every process")
        else:
            t0 = time.monotonic()
            ok = served_soon(ls.getsockname(), 10)
            t.ok(ok, f"{desc} ({time.monotonic() - t0:.1f} s)", d.stderr_text()[-1500:])
        t.ok(d.stop() == 0, "stops with status 0", d.stderr_text()[-1500:])
    finally:
        if "filler_alive" in locals() and filler_alive:
            os.kill(filler, 9)
            os.waitpid(filler, 0)
        ls.close()


if __name__ == "__main__":
    run([test_emfile_no_spin, test_fork_fails])
