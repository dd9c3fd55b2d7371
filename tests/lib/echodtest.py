"""The harness of the Python tests that drive the built echod (tests/blackbox,
tests/sockets): TAP output; starting echod exactly as systemd does (sockets on fd 3..,
LISTEN_FDS, LISTEN_PID, a NOTIFY_SOCKET whose messages are collected with the sender's
credentials), through systemd-socket-activate, or standalone; stream and UDP clients with a
timeout on every socket operation; parsing of STATUS= and of the connection log line; /proc
inspection; valgrind, and an emulator for a cross build (SLOW scales the waits). Every
process a test starts is killed and reaped by pid when the test ends, whatever happened."""

import contextlib
import ctypes
import errno
import os
import random
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback


def _escape_valgrind():
    """Under a test setup whose exe_wrapper is valgrind (without --trace-children), python
    itself would be emulated: re-exec it natively once and wrap echod instead."""
    preload = os.environ.get("LD_PRELOAD", "")
    if "vgpreload" in preload and os.environ.get("ECHOD_TEST_REEXEC") != "1":
        env = dict(os.environ)
        env["ECHOD_TEST_REEXEC"] = "1"
        env["ECHOD_TEST_VALGRIND"] = "1"
        kept = [p for p in re.split(r"[: ]", preload) if p and "vgpreload" not in p]
        if kept:
            env["LD_PRELOAD"] = ":".join(kept)
        else:
            env.pop("LD_PRELOAD", None)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


_escape_valgrind()

VALGRIND = os.environ.get("ECHOD_TEST_VALGRIND") == "1"
# Already emulated (valgrind --trace-children=yes around python): echod will be too.
_UNDER_VALGRIND = "vgpreload" in os.environ.get("LD_PRELOAD", "")
# A cross build: meson test names the emulator that runs the built programs (the cross
# file's exe_wrapper, e.g. qemu-aarch64). The scripts run natively and start echod under it;
# the emulator keeps echod's pid (LISTEN_PID still matches) and forks with it.
EMULATOR = shlex.split(os.environ.get("MESON_EXE_WRAPPER", ""))
EMULATED = bool(EMULATOR)
if EMULATED:
    EMULATOR[0] = shutil.which(EMULATOR[0]) or EMULATOR[0]  # for execve()
# Time scale for waits that depend on the daemon's speed (never for bounds the contract sets).
SLOW = 10.0 if VALGRIND else 3.0 if EMULATED else 1.0

# sd_notify STATUS=; the datagram counts are there only when echod has a UDP socket.
STATUS_RE = re.compile(
    r"^(\d+)/(\d+) clients active, (\d+) served, (\d+) refused"
    r"(?:, (\d+) datagrams echoed, (\d+) dropped)?$")
# The log line of a connection from an IP peer: host, port, pid, end reason, bytes, seconds.
LINE_RE = re.compile(
    r"connection from (\S+) port (\d+) \(pid (\d+)\) ended: (eof|idle|reset|stop|error)[^,]*, "
    r"(\d+) bytes echoed in ([0-9.]+) s")

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


# CI must run every check: what may skip elsewhere (see Tap.skip_unless_ci) fails there.
IN_CI = os.environ.get("CI") == "true"


class Skip(Exception):
    """Raised by a test that cannot run here; becomes `ok N - name # SKIP reason`."""


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, desc, diag=None):
        self.n += 1
        desc = desc.replace("\n", " ").replace("#", "No.")
        if cond:
            print(f"ok {self.n} - {desc}", flush=True)
        else:
            self.failed += 1
            print(f"not ok {self.n} - {desc}", flush=True)
            if diag:
                self.diag(diag)
            # meson shows a failed test's stderr, not its TAP stream: the reason goes there too.
            print(f"not ok {self.n} - {desc}\n{diag or ''}".rstrip()[-4000:], file=sys.stderr, flush=True)
        return bool(cond)

    def skip(self, desc, reason):
        self.n += 1
        print(f"ok {self.n} - {desc} # SKIP {reason}", flush=True)

    def skip_unless_ci(self, desc, reason):
        """A check this machine cannot make (a container, an unprivileged user) skips with the
        reason; in CI (CI=true) the machine must allow it, so it fails instead."""
        if IN_CI:
            return self.ok(False, desc, f"cannot check it in CI: {reason}")
        self.skip(desc, reason)

    @staticmethod
    def diag(text):
        for line in str(text).splitlines()[-40:]:
            print(f"# {line}", flush=True)


# ---------------------------------------------------------------------------------------------
# /proc


def proc_stat(pid):
    """(state, ppid, utime+stime in seconds) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = data[data.rfind(")") + 2:].split()
    state, ppid = rest[0], int(rest[1])
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(rest[11]) + int(rest[12])) / ticks
    return state, ppid, cpu


def children_of(pid):
    """[(child_pid, state)] for every process whose parent is pid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st and st[1] == pid:
            out.append((int(name), st[0]))
    return out


def fd_targets(pid):
    """{fd: readlink target} of pid."""
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return out
    for name in names:
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            pass
    return out


def mapped_files(pid):
    """The names in /proc/PID/maps (files and pseudo-files like [stack]; anonymous memory has
    none), one per mapping, or None if pid is gone."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return [ln.split(None, 5)[5].strip() for ln in f if len(ln.split(None, 5)) == 6]
    except FileNotFoundError:
        return None


def steal_fd(pid, fd):
    """A duplicate of another process's fd (pidfd_getfd; needs ptrace rights), or None."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        syscall = _libc.syscall
        syscall.restype = ctypes.c_long
        r = syscall(ctypes.c_long(438), ctypes.c_int(pidfd), ctypes.c_int(fd), ctypes.c_uint(0))
        return int(r) if r >= 0 else None
    finally:
        os.close(pidfd)


def fd_steal_refused():
    """Why steal_fd() cannot work here at all, or None: pidfd_getfd() of this process's own fd
    needs no ptrace rights, so EPERM there is a system-call filter's (systemd-nspawn's
    default one, on systemd 252, leaves pidfd_getfd out) and ENOSYS a kernel before 5.6."""
    global _fd_steal_refused
    if _fd_steal_refused is None:
        r, w = os.pipe()
        pidfd = os.pidfd_open(os.getpid())
        try:
            syscall = _libc.syscall
            syscall.restype = ctypes.c_long
            dup = syscall(ctypes.c_long(438), ctypes.c_int(pidfd), ctypes.c_int(r), ctypes.c_uint(0))
            err = ctypes.get_errno()
        finally:
            for fd in (r, w, pidfd):
                os.close(fd)
        if dup >= 0:
            os.close(dup)
            _fd_steal_refused = ""
        else:
            _fd_steal_refused = (f"pidfd_getfd() is refused here ({errno.errorcode.get(err, err)}"
                                 f"{', a system-call filter' if err == errno.EPERM else ''}): "
                                 "another process's socket cannot be duplicated to read its options")
    return _fd_steal_refused or None


_fd_steal_refused = None


def tcp_conn_inode(local_port, remote_port):
    """The inode of the established TCP socket local_port <-> remote_port in this network
    namespace (/proc/net/tcp{,6}), or None."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if (int(fields[1].rsplit(":", 1)[1], 16) == local_port and
                        int(fields[2].rsplit(":", 1)[1], 16) == remote_port and fields[3] == "01"):
                    return int(fields[9])
    return None


def unix_socket_entry(inode):
    """(flags, state, path) of the AF_UNIX socket inode in /proc/net/unix, or None. Flags
    0x10000 (__SO_ACCEPTCON) marks a listener; state 3 is connected; an accepted socket
    shows its listener's path."""
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[6]) == inode:
                return int(fields[3], 16), int(fields[5], 16), fields[7] if len(fields) > 7 else ""
    return None


def socket_of(pid, fd):
    """A socket object for another process's socket fd (a duplicate), or None."""
    dup = steal_fd(pid, fd)
    if dup is None:
        return None
    try:
        return socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return None


def socket_inode(sock):
    return os.fstat(sock.fileno()).st_ino


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def wait_until(pred, timeout, step=0.02):
    """Polls pred() until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


# ---------------------------------------------------------------------------------------------
# sockets


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port free right now for both TCP and UDP (echod or systemd-socket-activate may bind
    either, or both)."""
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free for both TCP and UDP")


def _dual_stack(s, family, host):
    """A wildcard IPv6 socket takes IPv4 too (BindIPv6Only=both), whatever the sysctl says."""
    if family == socket.AF_INET6 and host == "::":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)


def listen_socket(family=socket.AF_INET, host="127.0.0.1", port=0, backlog=128, path=None,
                  kind=socket.SOCK_STREAM):
    """A listening socket (stream unless kind says otherwise) as a socket unit would make it
    (blocking)."""
    if path:
        s = socket.socket(socket.AF_UNIX, kind)
        s.bind(path)
    else:
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _dual_stack(s, family, host)
        s.bind((host, port))
    s.listen(backlog)
    return s


def udp_socket(family=socket.AF_INET, host="127.0.0.1", port=0):
    """A bound UDP socket as a socket unit with ListenDatagram= would make it."""
    s = socket.socket(family, socket.SOCK_DGRAM)
    _dual_stack(s, family, host)
    s.bind((host, port))
    return s


def connect(addr, timeout=5.0, family=None):
    if family is None:
        family = socket.AF_UNIX if isinstance(addr, str) else (
            socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    return s


def connect_from(src, dest, family=socket.AF_INET):
    """A TCP connection to dest from the local address src (e.g. 127.0.0.2)."""
    c = socket.socket(family, socket.SOCK_STREAM)
    try:
        c.bind((src, 0))
        c.settimeout(5 * SLOW)
        c.connect(dest)
    except BaseException:
        c.close()
        raise
    return c


def urgent_exchange(s, head, tail, timeout=3.0):
    """Sends head, one urgent byte b"!" (MSG_OOB), then tail; returns what comes back (the
    bytes expected are head + b"!" + tail), or the error's text."""
    if head:
        s.sendall(head)
    s.send(b"!", socket.MSG_OOB)
    time.sleep(0.05)
    s.sendall(tail)
    try:
        return recv_exact(s, len(head) + 1 + len(tail), timeout)
    except (OSError, EOFError) as e:
        return repr(e).encode()


def recv_exact(s, n, timeout=5.0):
    """Reads exactly n bytes or raises (timeout, EOF)."""
    s.settimeout(timeout)
    chunks, got = [], 0
    deadline = time.monotonic() + timeout
    while got < n:
        s.settimeout(max(0.001, deadline - time.monotonic()))
        b = s.recv(min(n - got, 1 << 20))
        if not b:
            raise EOFError(f"EOF after {got} of {n} bytes")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def recv_to_eof(s, timeout=5.0, limit=1 << 30):
    """Reads until EOF (returns the bytes) or raises on timeout. A reset after data ends the
    read too: returns what came and sets nothing else (callers check the bytes)."""
    chunks, got = [], 0
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"no EOF after {got} bytes")
        s.settimeout(left)
        try:
            b = s.recv(1 << 20)
        except ConnectionResetError:
            return b"".join(chunks)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        got += len(b)
        if got > limit:
            return b"".join(chunks)


def roundtrip(addr, data, timeout=5.0):
    """Connect, send data, half-close, read to EOF: the echoed bytes."""
    with connect(addr, timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return recv_to_eof(s, timeout)


def stream_echo(s, payload, timeout=5.0, shut=True):
    """Sends payload while reading what comes back (so no buffer fills up), then, with shut,
    half-closes and reads to EOF, or else reads until as many bytes came back. Returns the
    bytes received."""
    got = bytearray()
    view = memoryview(payload)
    sent = 0
    s.setblocking(False)
    deadline = time.monotonic() + timeout
    while sent < len(payload):
        if time.monotonic() > deadline:
            raise TimeoutError(f"send stalled at {sent}/{len(payload)}")
        r, w, _ = select.select([s], [s], [], 0.5)
        if w:
            try:
                sent += s.send(view[sent:sent + 65536])
            except BlockingIOError:
                pass
        if r:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    s.settimeout(max(0.1, deadline - time.monotonic()))
    if shut:
        s.shutdown(socket.SHUT_WR)
    while shut or len(got) < len(payload):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def udp_exchange(s, dest, payload, timeout=3.0):
    """Sends one datagram and returns (data, source address) of the answer, or None."""
    s.settimeout(timeout)
    s.sendto(payload, dest)
    try:
        return s.recvfrom(70000)
    except socket.timeout:
        return None


def drain_udp(s):
    """Every datagram already queued on s: [(data, source address)]."""
    s.setblocking(False)
    out = []
    while True:
        try:
            out.append(s.recvfrom(70000))
        except BlockingIOError:
            return out


def fill_until_stuck(s, quiet=0.3, limit=256 << 20):
    """Sends on a non-blocking socket (never reading) until nothing more goes out for quiet
    seconds: every buffer on the way to echod and back is full. Returns bytes sent."""
    s.setblocking(False)
    chunk = b"f" * 65536
    sent, last = 0, time.monotonic()
    while time.monotonic() - last < quiet and sent < limit:
        try:
            sent += s.send(chunk)
            last = time.monotonic()
        except BlockingIOError:
            time.sleep(0.02)
        except OSError:
            break
    return sent


def is_refused_or_closed(s, timeout=2.0):
    """True if the peer closes (EOF/reset) within timeout without sending data."""
    try:
        s.settimeout(timeout)
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def pattern(n, seed=0):
    """n bytes of deterministic pseudo-random test data, not periodic in a way a bug could
    hide in."""
    return random.Random(n * 7919 + seed).randbytes(n)


# ---------------------------------------------------------------------------------------------
# sd_notify


class NotifySocket:
    """An AF_UNIX datagram socket like PID 1's notify socket: every message is kept with the
    sender's pid from SCM_CREDENTIALS."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="echod-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.messages = []  # (monotonic time, pid, uid, text)
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.closed:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if r:
                with self.cond:
                    self._receive()

    def _receive(self):
        """Takes one queued message, if any (with self.cond held)."""
        cred_size = struct.calcsize("3i")
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(cred_size), socket.MSG_DONTWAIT)
        except OSError:
            return
        pid = uid = -1
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                pid, uid, _gid = struct.unpack("3i", cdata[:cred_size])
        self.messages.append((time.monotonic(), pid, uid, data.decode("utf-8", "replace")))
        self.cond.notify_all()

    def wait_for(self, pred, timeout):
        """Waits for a message m (tuple) with pred(m); returns it or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def snapshot(self):
        """Every message sent so far, those still queued on the socket included (so that a
        message a process sent before it exited is never missed)."""
        with self.cond:
            while not self.closed and select.select([self.sock], [], [], 0)[0]:
                self._receive()
            return list(self.messages)

    def values(self, key):
        """The value of key in every message that has it, oldest first."""
        return [f[key] for f in (fields(m[3]) for m in self.snapshot()) if key in f]

    def ready(self):
        """READY=1 was sent."""
        return "1" in self.values("READY")

    def last_status(self):
        v = self.values("STATUS")
        return v[-1] if v else None

    def wait_status(self, pred, timeout):
        """Waits until the last STATUS parses and its counts satisfy pred; returns the last
        counts (see status_counts), which may not, or None."""
        wait_until(lambda: (c := status_counts(self.last_status())) is not None and pred(c), timeout)
        return status_counts(self.last_status())

    def close(self):
        self.closed = True
        self.thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


def fields(text):
    """'READY=1\\nSTATUS=x' -> {'READY': '1', 'STATUS': 'x'}"""
    out = {}
    for line in text.split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def status_counts(text):
    """(active, max, served, refused, echoed, dropped) of a STATUS= value, echoed and dropped
    None when it has no datagram counts; None if it does not have the interface's format."""
    m = STATUS_RE.match(text or "")
    return tuple(None if g is None else int(g) for g in m.groups()) if m else None


# ---------------------------------------------------------------------------------------------
# the daemon


class ExecFailed(Exception):
    pass


_registry = []

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
# What systemd-socket-activate, which gives its child a fresh environment, must pass on (-E)
# besides the test's own variables: the sanitizers' settings.
_SANITIZER_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS", "MALLOC_PERTURB_")


class Daemon:
    """One echod process. sockets (socket objects, or any fds as ints) are put on fd 3, 4, ...
    with LISTEN_FDS/LISTEN_PID set to the pid that execs echod (unless listen_pid overrides
    it). preexec: called in the child just before the exec (to leave signal state behind);
    launcher: [program, args...] that execs echod itself. built: exe is a program of the
    build (run under a cross build's emulator), not one of the system. notify: create a
    NOTIFY_SOCKET. journal: stderr is a pipe and JOURNAL_STREAM names it, like journald's
    stream (records go to env's ECHOD_TEST_JOURNAL_SOCKET, by default to none: see
    JournalSocket in blackbox/test_journal.py).
    socket_activate: a list of option lists (["--datagram", "-l", "127.0.0.1:7"]): echod is
    started by systemd-socket-activate with the first, which starts one with the second (if
    any), and so on. start() returns once the outermost one has bound its addresses; it
    execs the next (unless -a) at the first connection or datagram. The pid is the
    outermost one's, which is echod's after the exec unless -a."""

    def __init__(self, exe, args=(), sockets=(), notify=True, env=None, user=None,
                 rlimits=None, journal=False, listen_pid=None, extra_fds=None, wrap=True,
                 socket_activate=None, preexec=None, launcher=None, built=True):
        self.exe = exe
        self.args = list(args)
        self.sockets = list(sockets)
        self.extra_fds = extra_fds  # {target_fd: fd} instead of sockets
        self.socket_activate = [list(opts) for opts in socket_activate or []]
        self.env_extra = env or {}
        self.user = user
        self.rlimits = rlimits or {}
        self.journal = journal
        self.listen_pid = listen_pid
        self.preexec = preexec  # called in the forked child just before exec (signal state)
        self.launcher = list(launcher or [])  # a program that execs echod: [path, args...]
        self.built = built  # a program of the build under test (run under a cross build's emulator)
        self.notify = NotifySocket() if notify else None
        self.pid = None
        self.status = None
        self.err = bytearray()
        self.err_cond = threading.Condition()
        self.err_thread = None
        self.err_reading = threading.Event()
        self.err_reading.set()
        self.vg_dir = None
        self.wrap = wrap and VALGRIND and not _UNDER_VALGRIND
        self.known_children = set()
        _registry.append(self)

    def argv(self, env):
        """The command line: echod (under the emulator of a cross build), under valgrind if
        wrapped, under systemd-socket-activate if asked, which passes on from env what echod
        needs."""
        argv = (command(*self.launcher, self.exe, *self.args) if self.built
                else [*self.launcher, self.exe, *self.args])
        if self.wrap:
            self.vg_dir = tempfile.mkdtemp(prefix="echod-vg-")
            os.chmod(self.vg_dir, 0o777)
            argv = [shutil.which("valgrind") or "/usr/bin/valgrind", "--quiet", "--error-exitcode=99",
                    "--leak-check=full", "--show-leak-kinds=definite",
                    "--errors-for-leak-kinds=definite", "--track-origins=yes",
                    "--child-silent-after-fork=no", f"--log-file={self.vg_dir}/vg.%p.log"] + argv
        passed = [f"-E{k}={v}" for k, v in env.items()
                  if k in ("NOTIFY_SOCKET", "JOURNAL_STREAM") + _SANITIZER_ENV or k in self.env_extra]
        for opts in reversed(self.socket_activate):
            argv = [SOCKET_ACTIVATE or "systemd-socket-activate"] + opts + passed + argv
        return argv

    def start(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                            "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "ECHOD_TEST_REEXEC")}
        if self.notify:
            env["NOTIFY_SOCKET"] = self.notify.path
        err_r, err_w = os.pipe()
        if self.journal:
            st = os.fstat(err_w)
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            # Under a journal stream echod sends records to journald's socket: here to none
            # (its lines then go to the stream), unless the test binds one of its own.
            env["ECHOD_TEST_JOURNAL_SOCKET"] = "/nonexistent/echod-test-journal"
        env.update({k: v for k, v in self.env_extra.items() if v is not None})
        for k, v in self.env_extra.items():
            if v is None:
                env.pop(k, None)
        argv = self.argv(env)
        fd_map = dict(self.extra_fds) if self.extra_fds else {
            3 + i: s if isinstance(s, int) else s.fileno() for i, s in enumerate(self.sockets)}
        exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(err_r)
                os.close(exec_r)
                report = fcntl_dupfd_cloexec(exec_w, 900)
                # move the fds to pass out of the way, then into place
                high = {t: fcntl_dupfd_cloexec(f, 700 + i) for i, (t, f) in enumerate(fd_map.items())}
                err_high = fcntl_dupfd_cloexec(err_w, 800)
                null = os.open("/dev/null", os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(null, 1)
                os.dup2(err_high, 2)
                for t, f in high.items():
                    os.dup2(f, t)  # dup2 clears FD_CLOEXEC: inherited by echod
                keep_top = 3 + len(high) if high else 3
                if high:
                    keep_top = max(high) + 1
                os.closerange(keep_top, report)
                os.closerange(report + 1, 65536)
                if fd_map:
                    env["LISTEN_FDS"] = str(len(fd_map))
                    env["LISTEN_PID"] = str(self.listen_pid if self.listen_pid is not None else os.getpid())
                for res, val in self.rlimits.items():
                    resource.setrlimit(res, val)
                if self.user is not None:
                    os.setgroups([])
                    os.setgid(self.user[1])
                    os.setuid(self.user[0])
                if self.preexec:
                    self.preexec()
                os.execve(argv[0], argv, env)
            except BaseException as e:  # noqa: B902 - report anything, never return
                try:
                    os.write(report, f"{type(e).__name__}: {e}".encode())
                finally:
                    os._exit(127)
        self.pid = pid
        os.close(err_w)
        os.close(exec_w)
        msg = b""
        while True:
            b = os.read(exec_r, 4096)
            if not b:
                break
            msg += b
        os.close(exec_r)
        self.err_thread = threading.Thread(target=self._read_err, args=(err_r,), daemon=True)
        self.err_thread.start()
        if msg:
            self.wait(5)
            raise ExecFailed(msg.decode())
        n = self.socket_activate[0].count("-l") if self.socket_activate else 0
        if n and len(self.wait_line(r"^Listening on ", 5 * SLOW, n)) < n:
            raise AssertionError(f"systemd-socket-activate did not bind {n} address(es); status "
                                 f"{self.poll()}; stderr: {self.stderr_text()[-2000:]}")
        return self

    def pause_stderr(self):
        """Stops reading echod's stderr (after the read under way): a stalled journal."""
        self.err_reading.clear()

    def resume_stderr(self):
        self.err_reading.set()

    def _read_err(self, fd):
        while True:
            self.err_reading.wait()
            try:
                b = os.read(fd, 65536)
            except OSError:
                b = b""
            with self.err_cond:
                if not b:
                    self.err_eof = True
                    self.err_cond.notify_all()
                    break
                self.err += b
                self.err_cond.notify_all()
        os.close(fd)

    # -- output ---------------------------------------------------------------------------

    def stderr_text(self):
        with self.err_cond:
            return self.err.decode("utf-8", "replace")

    def lines(self):
        return [ln for ln in self.stderr_text().split("\n") if ln]

    def wait_line(self, regex, timeout, count=1):
        """Waits until count lines match regex; returns the match objects (maybe fewer)."""
        rx = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self.err_cond:
            while True:
                text = self.err.decode("utf-8", "replace")
                found = [m for m in (rx.search(ln) for ln in text.split("\n")) if m]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0 or getattr(self, "err_eof", False):
                    return found
                self.err_cond.wait(left)

    def wait_ready(self, timeout=None):
        """READY=1 on the notify socket (or the ready: line without one)."""
        timeout = timeout or 10 * SLOW
        if self.notify:
            m = self.notify.wait_for(lambda m: "READY=1" in m[3].split("\n"), timeout)
            if not m:
                raise AssertionError(f"no READY=1 within {timeout} s; status {self.poll()}; "
                                     f"stderr: {self.stderr_text()[-2000:]}")
            return m
        if not self.wait_line(r"ready: ", timeout):
            raise AssertionError(f"no ready line within {timeout} s; stderr: {self.stderr_text()[-2000:]}")
        return None

    # -- process --------------------------------------------------------------------------

    def poll(self):
        """Exit status (as from os.waitstatus_to_exitcode) if it has ended, else None."""
        if self.status is None and self.pid:
            try:
                p, st = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: status unknown
                self.status = -999
                return self.status
            if p == self.pid:
                self.status = os.waitstatus_to_exitcode(st)
        return self.status

    def wait(self, timeout):
        """Waits for the exit (and for its stderr to be read to the end, if nothing else
        holds the pipe); returns the status or None."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
        if self.err_thread:
            self.err_thread.join(min(2.0, max(0.2, deadline - time.monotonic())))
        return self.status

    def children(self):
        if not self.pid or self.status is not None:
            return []
        kids = children_of(self.pid)
        self.known_children.update(p for p, _ in kids)
        return kids

    def send_signal(self, sig):
        if self.pid and self.status is None:
            os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        self.children()
        self.send_signal(sig)
        return self.wait(timeout or 15 * SLOW)

    def cleanup(self):
        """Kills (by pid) and reaps the daemon and every child it had; returns a list of
        problems found: sanitizer or valgrind reports."""
        problems = []
        if self.pid and self.status is None:
            for p, _ in self.children():
                _kill(p)
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(10)
            if self.status is None:
                problems.append(f"pid {self.pid} could not be reaped")
        for p in self.known_children:
            _kill(p)  # a leftover child of a dead daemon: gone already, or ours (subreaper)
        if self.err_thread:
            self.err_thread.join(2)
        text = self.stderr_text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "Sanitizer:DEADLYSIGNAL"):
            if marker in text:
                i = text.index(marker)
                problems.append(f"sanitizer report in stderr: {text[max(0, i - 200):i + 1500]}")
                break
        if self.vg_dir:
            for name in sorted(os.listdir(self.vg_dir)):
                path = os.path.join(self.vg_dir, name)
                with open(path, errors="replace") as f:
                    body = f.read()
                if body.strip():
                    problems.append(f"valgrind ({name}): {body[:3000]}")
                os.unlink(path)
            os.rmdir(self.vg_dir)
            self.vg_dir = None
        if self.notify:
            self.notify.close()
        return problems


@contextlib.contextmanager
def started(exe, args=(), **kwargs):
    """echod given one fresh listening TCP socket, as socket activation passes it, and ready
    (READY=1): yields (daemon, listening socket) and closes the socket afterwards. The daemon
    is the test's to stop; run() kills and reaps it if the test did not."""
    ls = listen_socket()
    try:
        d = Daemon(exe, list(args), sockets=[ls], **kwargs).start()
        d.wait_ready()
        yield d, ls
    finally:
        ls.close()


def fcntl_dupfd_cloexec(fd, at_least):
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, at_least)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # not ours: its parent reaps it


def reap_orphans():
    """Reaps any process re-parented to us (we are a subreaper): returns their pids."""
    out = []
    while True:
        try:
            p, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if p == 0:
            break
        out.append(p)
    return out


# ---------------------------------------------------------------------------------------------
# running a test file


ALL_BYTES = bytes(range(256))


def check_echo(t, addr, what):
    """The basic echo checks against one address."""
    got = roundtrip(addr, ALL_BYTES * 4, timeout=10 * SLOW)
    t.ok(got == ALL_BYTES * 4, f"{what}: all 256 byte values, 4 times, come back exactly",
         f"got {len(got)} bytes")
    with connect(addr, 5 * SLOW) as s:
        s.sendall(b"no newline")
        try:
            got = recv_exact(s, 10, 3 * SLOW)
        except (OSError, EOFError) as e:
            got = repr(e).encode()
        t.ok(got == b"no newline", f"{what}: 'no newline' (no trailing newline) comes back while "
             "the connection stays open", got)


def run(tests):
    """Runs each test function fn(t, exe) and prints TAP. A test that raises is `not ok`;
    afterwards every daemon it started is killed and reaped and checked for sanitizer or
    valgrind reports, and no process of ours may be left. Exits 1 if anything failed."""
    t = Tap()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        t.diag("cannot become a child subreaper: orphans of echod go to pid 1")
    exe = sys.argv[1] if len(sys.argv) > 1 else ""
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        t.ok(False, f"the echod binary under test exists and is executable ({exe!r})")
        print(f"1..{t.n}", flush=True)
        sys.exit(1)
    exe = os.path.abspath(exe)
    only = os.environ.get("ECHOD_TEST_ONLY")
    for fn in tests:
        name = fn.__name__
        if only and not re.search(only, name):
            continue
        del _registry[:]
        try:
            fn(t, exe)
        except Skip as e:
            t.skip(name, str(e))
        except Exception:  # any failure inside a test is a not ok, never a crash
            t.ok(False, f"{name}: raised", traceback.format_exc())
        finally:
            for d in _registry:
                for p in d.cleanup():
                    t.ok(False, f"{name}: clean run of echod pid {d.pid}", p)
            left = reap_orphans()
            if left:
                t.ok(False, f"{name}: no process left behind", f"reaped orphans {left}")
    print(f"1..{t.n}", flush=True)
    sys.exit(1 if t.failed else 0)


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root (to run echod as another user / raise limits)")


def no_valgrind(why):
    if VALGRIND:
        raise Skip(f"not meaningful under valgrind: {why}")


def command(exe, *args):
    """The command line that runs the built exe (a program of the build under test) here."""
    return EMULATOR + [exe] + list(args)
