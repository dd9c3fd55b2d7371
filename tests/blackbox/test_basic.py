#!/usr/bin/env python3
"""The echo itself on a plain TCP listener, passed by systemd on fd 3 or opened with --listen:
byte-exact binary data, small and large; TCP_NODELAY; no pre-forked pool, one single-threaded
child per client whose descriptor table holds nothing but its connection (TCP and AF_UNIX).
Other kinds of socket and other ways to pass them: tests/sockets/."""

import hashlib
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (EMULATED, SLOW, VALGRIND, Daemon, check_echo, connect,  # noqa: E402
                       fd_steal_refused, fd_targets, free_port, listen_socket, mapped_files,
                       recv_exact, run, socket_inode, socket_of, started, tcp_conn_inode,
                       unix_socket_entry, wait_until)

def one_thread_ok(t, desc, pid):
    if EMULATED:
        return t.skip(desc, "qemu-user runs a thread of its own in every process")
    t.ok(len(os.listdir(f"/proc/{pid}/task")) == 1 or VALGRIND, desc)


def big_roundtrip(addr, size, timeout):
    """Sends size pseudo-random bytes in a thread while reading; (sent hash, got hash, got len)."""
    data = os.urandom(1 << 20)
    h_sent = hashlib.sha256()
    with connect(addr, timeout) as s:
        def writer():
            try:
                for i in range(size // len(data)):
                    s.sendall(data)
                    h_sent.update(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        w = threading.Thread(target=writer, daemon=True)
        w.start()
        h_got, n = hashlib.sha256(), 0
        s.settimeout(timeout)
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            h_got.update(b)
            n += len(b)
        w.join(timeout)
    return h_sent.hexdigest(), h_got.hexdigest(), n


def test_activation_tcp(t, exe):
    with started(exe) as (d, ls):
        check_echo(t, ls.getsockname(), "socket-activated TCP 127.0.0.1 on fd 3")
        size = (4 if VALGRIND else 16) << 20
        hs, hg, n = big_roundtrip(ls.getsockname(), size, 60 * SLOW)
        t.ok(hs == hg and n == size, f"{size >> 20} MiB of random binary data echoed byte-exact "
             f"(sha256 equal, {n} bytes)")
        st = d.stop()
        t.ok(st == 0, f"SIGTERM: exit status 0 (got {st})", d.stderr_text())


def test_standalone_ipv4(t, exe):
    port = free_port()
    d = Daemon(exe, ["--listen", f"127.0.0.1:{port}"]).start()
    d.wait_ready()
    check_echo(t, ("127.0.0.1", port), f"--listen 127.0.0.1:{port}")
    t.ok(d.stop() == 0, "stops with status 0")


def test_tcp_nodelay(t, exe):
    with started(exe) as (d, ls):
        with connect(ls.getsockname(), 5 * SLOW) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"x")
            recv_exact(s, 1, 5 * SLOW)
            kids = d.children()
            t.ok(len(kids) == 1, f"one child serves the connection ({kids})")
            nodelay = None
            if kids:
                for fd, target in fd_targets(kids[0][0]).items():
                    if target.startswith("socket:"):
                        cs = socket_of(kids[0][0], fd)
                        if cs is None:
                            continue
                        try:
                            if cs.family in (socket.AF_INET, socket.AF_INET6) and \
                                    cs.getpeername() == s.getsockname():
                                nodelay = cs.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                        except OSError:
                            pass
                        finally:
                            cs.close()
            refused = fd_steal_refused()
            if nodelay is None and refused:
                t.skip_unless_ci("TCP_NODELAY set on the child's socket", refused)
            else:
                t.ok(nodelay is not None and nodelay != 0,
                     f"TCP_NODELAY is set on the accepted socket ({nodelay})")
            # a message sent as two writes: Nagle + delayed ACK would hold the second ~40 ms
            times = []
            for i in range(50):
                t0 = time.monotonic()
                s.sendall(b"a")
                s.sendall(b"b")
                got = recv_exact(s, 2, 5 * SLOW)
                times.append(time.monotonic() - t0)
                if got != b"ab":
                    break
            times.sort()
            p98 = times[-2] * 1000
            bound = 200 if VALGRIND else 20
            t.ok(len(times) == 50 and p98 < bound,
                 f"2-write messages round-trip fast: p98 {p98:.1f} ms < {bound} ms "
                 f"(max {times[-1] * 1000:.1f} ms)")
        t.ok(d.stop() == 0, "stops with status 0")


# libsystemd and the libraries it pulls in on Debian 12: never in a child, on either path.
LIBSYSTEMD_FAMILY = ("libsystemd.so", "libcap.so", "libgcrypt.so", "libgpg-error.so", "liblzma.so",
                     "libzstd.so", "liblz4.so")


def child_path(d):
    """'fast' or 'portable', from the debug line echod logs at the start, or None."""
    m = d.wait_line(r"Child path: (\w+) ", 2 * SLOW)
    return m[0].group(1) if m else None


def child_maps_ok(t, what, d, child_pid, exe):
    # src/trim.c: on the fast path a child is forked without libc, the loader, the heap and
    # the vDSO, which every fork() would otherwise copy and every exit tear down; on the
    # portable path (libc in the child) without libsystemd's family only.
    path = child_path(d)
    desc = f"{what}: the child maps only echod's own file, its stack and anonymous memory"
    if path == "portable":
        desc = f"{what}: (portable path) the child maps libc but no library of libsystemd's family"
    if VALGRIND:
        return t.skip(desc, "valgrind's own mappings are a child's too")
    if EMULATED:
        return t.skip(desc, "qemu-user ignores madvise() and its own mappings are a child's "
                      "too; tests/unit/test_child_syms.py checks the cross-built binary instead")
    if any("libasan" in m or "libubsan" in m for m in mapped_files(d.pid) or []):
        return t.skip(desc, "a sanitized build keeps every mapping for the runtime")
    files = mapped_files(child_pid) or ["(gone)"]
    if path == "portable":
        extra = sorted({m for m in files if any(f in m for f in LIBSYSTEMD_FAMILY)})
        return t.ok(not extra and any("/libc.so" in m for m in files), desc, f"mapped: {sorted(set(files))}")
    own = os.path.realpath(exe)
    extra = sorted({m for m in files if m not in (own, "[stack]", "[vsyscall]")})
    t.ok(path == "fast" and not extra, desc, f"path {path}; also mapped: {extra}")


def test_child_fds(t, exe):
    """The child holds 0, 1, 2 and its connection: no listener, no notify socket."""
    tmp = tempfile.mkdtemp(prefix="echod-unix-")
    ls = listen_socket()
    us = listen_socket(path=os.path.join(tmp, "e.sock"))
    try:
        d = Daemon(exe, ["--log-level", "debug"], sockets=[ls, us]).start()
        d.wait_ready()
        listener_inodes = {socket_inode(ls), socket_inode(us)}
        t.ok(d.children() == [], "no pre-forked pool: no child before the first client",
             repr(d.children()))
        one_thread_ok(t, "the main process has one thread (no threads serving clients)", d.pid)
        seen = set()
        for what, addr in (("tcp", ls.getsockname()), ("unix", us.getsockname())):
            wait_until(lambda: not d.children(), 10 * SLOW)  # the previous child has exited
            with connect(addr, 5 * SLOW) as s:
                s.sendall(b"x")
                recv_exact(s, 1, 5 * SLOW)
                kids = wait_until(d.children, 5 * SLOW)
                t.ok(len(kids) == 1, f"{what}: one child ({kids})")
                if not kids:
                    continue
                seen.add(kids[0][0])
                one_thread_ok(t, f"{what}: the child is a single-threaded process of its own",
                              kids[0][0])
                fds = fd_targets(kids[0][0])
                if VALGRIND:
                    fds = {k: v for k, v in fds.items() if k < 1000}  # valgrind's own fds
                sockets = {fd: v for fd, v in fds.items() if v.startswith("socket:")}
                inodes = {int(v[8:-1]) for v in sockets.values()}
                t.ok(not (inodes & listener_inodes), f"{what}: no listener fd inside the child",
                     repr(fds))
                # beside its connection, the child keeps the main loop's signalfd: it
                # polls it for its own SIGTERM (a signalfd reads the reader's signals)
                rest = set(fds) - {0, 1, 2} - set(sockets)
                t.ok(len(sockets) == 1 and len(rest) == 1 and
                     fds[next(iter(rest))] == "anon_inode:[signalfd]",
                     f"{what}: the child has only fds 0, 1, 2, one socket and a signalfd",
                     repr(fds))
                # by inode, in the kernel's socket tables: reading the child's fd table
                # needs only what reading its /proc/PID/fd needs (pidfd_getfd() may be
                # refused, e.g. in a container)
                inode = next(iter(inodes), None)
                if what == "tcp":
                    want = tcp_conn_inode(addr[1], s.getsockname()[1])
                    peer = f"the connection's server side is inode {want}"
                    peer_ok = inode is not None and inode == want
                else:
                    entry = unix_socket_entry(inode) if inode is not None else None
                    peer = f"/proc/net/unix (flags, state, path): {entry}"
                    peer_ok = entry is not None and entry == (0, 3, addr)
                t.ok(peer_ok, f"{what}: the child's one socket is this client's connection",
                     f"{fds!r}; {peer}")
                t.ok(all(v in ("/dev/null",) or v.startswith("pipe:") or v.startswith("socket:")
                         for fd, v in fds.items() if fd in (0, 1, 2)),
                     f"{what}: fds 0-2 are what echod was given", repr(fds))
                child_maps_ok(t, what, d, kids[0][0], exe)
        t.ok(len(seen) == 2, f"each connection had its own child ({sorted(seen)})")
        t.ok(d.stop() == 0, "stops with status 0")
    finally:
        ls.close()
        us.close()
        os.unlink(os.path.join(tmp, "e.sock"))
        os.rmdir(tmp)


if __name__ == "__main__":
    run([test_activation_tcp, test_standalone_ipv4, test_tcp_nodelay, test_child_fds])
