"""Shared helpers of the socket tests: TAP output, starting echod the way systemd does
(systemd-socket-activate, or fds on 3.. with LISTEN_FDS/LISTEN_PID set up here), collecting
sd_notify messages, and killing/reaping every process by PID. Standard library only."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

STATUS_RE = re.compile(
    r"(\d+)/(\d+) clients active, (\d+) served, (\d+) refused"
    r"(?:, (\d+) datagrams echoed, (\d+) dropped)?$")
CONN_RE = re.compile(
    r"connection from (.+?) \(pid (\d+)\) ended: (eof|idle|reset|stop|error)[^,]*, "
    r"(\d+) bytes echoed in ([0-9.]+) s")

HERE = os.path.dirname(os.path.abspath(__file__))

# The wrapper that does socket activation itself: moves the given fds to 3.., sets
# LISTEN_FDS/LISTEN_PID (its own pid, which exec keeps) and execs the daemon.
_ACTIVATE = r"""
import fcntl, os, sys
n = int(sys.argv[1])
src = [int(x) for x in sys.argv[2:2 + n]]
argv = sys.argv[2 + n:]
tmp = [fcntl.fcntl(f, fcntl.F_DUPFD_CLOEXEC, 200) for f in src]
for f in src:
    os.close(f)
for i, f in enumerate(tmp):
    os.dup2(f, 3 + i, inheritable=True)
    os.close(f)
os.environ["LISTEN_FDS"] = str(n)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(argv[0], argv)
"""


class Tap:
    def __init__(self, plan):
        self.plan = plan
        self.n = 0
        self.failed = 0
        print("1..%d" % plan, flush=True)

    def ok(self, cond, name, diag=None):
        self.n += 1
        if not cond:
            self.failed += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n, name), flush=True)
        if not cond and diag:
            for line in str(diag).splitlines():
                print("# " + line, flush=True)
        return cond

    def skip(self, name, reason):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, name, reason), flush=True)

    def diag(self, text):
        for line in str(text).splitlines():
            print("# " + line, flush=True)

    def run(self, fn, name):
        """Runs one check function; an exception is a failure, never a crash of the script."""
        try:
            fn()
        except Exception:  # noqa: BLE001 - report, go on with the next test
            self.ok(False, name + " (exception)", traceback.format_exc())

    def finish(self):
        while self.n < self.plan:
            self.ok(False, "test not reached")
        sys.exit(1 if self.failed else 0)


def skip_all(reason):
    print("1..0 # SKIP " + reason, flush=True)
    sys.exit(0)


def echod_path():
    if len(sys.argv) < 2:
        skip_all("usage: %s PATH-TO-ECHOD" % sys.argv[0])
    return os.path.abspath(sys.argv[1])


def udp_constants():
    """Rate limits from src/udp.h (the tests bound answers by them); defaults if absent."""
    c = {"UDP_SOURCE_RATE": 200, "UDP_SOURCE_BURST": 400,
         "UDP_GLOBAL_RATE": 20000, "UDP_GLOBAL_BURST": 40000}
    try:
        with open(os.path.join(HERE, "..", "..", "src", "udp.h")) as f:
            for m in re.finditer(r"#define (UDP_\w+)\s+(\d+)u?", f.read()):
                c[m.group(1)] = int(m.group(2))
    except OSError:
        pass
    return c


def free_port(family=socket.AF_INET, kind=socket.SOCK_STREAM, host=None):
    """A port free for both TCP and UDP right now (for systemd-socket-activate -l)."""
    host = host or ("::1" if family == socket.AF_INET6 else "127.0.0.1")
    for _ in range(50):
        with socket.socket(family, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(family, other) as s2:
                s2.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(pred, timeout=5.0, step=0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


class Notify:
    """An sd_notify socket: NOTIFY_SOCKET for the daemon, messages collected here."""

    def __init__(self, directory, name="notify"):
        self.path = os.path.join(directory, name)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages = []

    def poll(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode("utf-8", "replace"))
            except BlockingIOError:
                return self.messages

    def values(self, key):
        out = []
        for m in self.poll():
            for line in m.split("\n"):
                if line.startswith(key + "="):
                    out.append(line[len(key) + 1:])
        return out

    def ready(self):
        return "1" in self.values("READY")

    def last_status(self):
        v = self.values("STATUS")
        return v[-1] if v else None

    def status_fields(self):
        """(active, max, served, refused, echoed, dropped) of the last STATUS, or None."""
        s = self.last_status()
        m = STATUS_RE.match(s or "")
        if not m:
            return None
        return tuple(None if g is None else int(g) for g in m.groups())

    def wait_status(self, pred, timeout=4.0):
        """Waits for a STATUS whose fields satisfy pred; returns the last one seen."""
        wait_until(lambda: (self.status_fields() is not None and pred(self.status_fields())), timeout)
        return self.status_fields()

    def close(self):
        self.sock.close()


class Daemon:
    """One echod (or systemd-socket-activate that execs echod), stderr to a file."""

    def __init__(self, tmpdir, argv, env_extra=None, pass_fds=(), name="echod"):
        self.log_path = os.path.join(tmpdir, name + ".log")
        self.log_file = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items()
               if k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                            "JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env.update(env_extra or {})
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=self.log_file, env=env, pass_fds=pass_fds)
        self.pid = self.proc.pid
        self.rc = None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def lines(self):
        return self.log().splitlines()

    def wait_log(self, pattern, timeout=5.0, count=1):
        """Waits until count lines match; returns the matching lines (maybe fewer)."""
        rx = re.compile(pattern)
        wait_until(lambda: len([ln for ln in self.lines() if rx.search(ln)]) >= count, timeout)
        return [ln for ln in self.lines() if rx.search(ln)]

    def wait(self, timeout):
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.rc

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout; always reaps. Returns the exit status."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self.rc = self.proc.returncode
        self.log_file.close()
        return self.rc

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.rc = self.proc.returncode
        if not self.log_file.closed:
            self.log_file.close()


def activate(tmpdir, echod, socks, args=(), env_extra=None, names=None, name="echod"):
    """Starts echod with socks (objects with fileno() or ints) on fds 3.. as systemd would."""
    fds = [s if isinstance(s, int) else s.fileno() for s in socks]
    env = dict(env_extra or {})
    if names:
        env["LISTEN_FDNAMES"] = ":".join(names)
    argv = [sys.executable, "-c", _ACTIVATE, str(len(fds))] + [str(f) for f in fds] + [echod] + list(args)
    return Daemon(tmpdir, argv, env, pass_fds=fds, name=name)


def socket_activate(tmpdir, echod, listen, args=(), datagram=False, accept=False, env_extra=None,
                    name="echod"):
    """systemd-socket-activate [-a|--datagram] -l ADDR... [-E VAR=...] echod ARGS."""
    argv = ["systemd-socket-activate"]
    if datagram:
        argv.append("--datagram")
    if accept:
        argv.append("-a")
    for addr in listen:
        argv += ["-l", addr]
    # It gives the daemon a fresh environment: pass on what a sanitizer build needs.
    env = {k: v for k, v in os.environ.items()
           if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS", "MALLOC_PERTURB_")}
    env.update(env_extra or {})
    for k, v in env.items():
        argv += ["-E", "%s=%s" % (k, v)]
    argv += [echod] + list(args)
    d = Daemon(tmpdir, argv, name=name)
    # It binds before anything else and says so; only then may the test connect.
    n = len(listen)
    if not wait_until(lambda: len([ln for ln in d.lines() if ln.startswith("Listening on ")]) >= n
                      or not d.alive(), 5.0):
        d.kill()
        raise RuntimeError("systemd-socket-activate did not listen: " + d.log())
    if not d.alive():
        raise RuntimeError("systemd-socket-activate exited: " + d.log())
    return d


def have_socket_activate():
    from shutil import which
    return which("systemd-socket-activate") is not None


def tcp_listener(family, host, backlog=128):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and host == "::":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, 0))
    s.listen(backlog)
    return s


def udp_socket(family, host, port=0):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6 and host == "::":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, port))
    return s


def unix_listener(path, kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_UNIX, kind)
    s.bind(path)
    s.listen(16)
    return s


def stream_echo(sock, payload, timeout=5.0, shut=True):
    """Sends payload (reading as it goes), optionally half-closes, reads until all came back
    (or EOF when shut). Returns the bytes received."""
    sock.settimeout(timeout)
    got = bytearray()
    view = memoryview(payload)
    sent = 0
    sock.setblocking(False)
    end = time.monotonic() + timeout
    import select
    while sent < len(payload):
        if time.monotonic() > end:
            raise TimeoutError("send stalled at %d/%d" % (sent, len(payload)))
        r, w, _ = select.select([sock], [sock], [], 0.5)
        if w:
            try:
                sent += sock.send(view[sent:sent + 65536])
            except BlockingIOError:
                pass
        if r:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    sock.settimeout(max(0.1, end - time.monotonic()))
    if shut:
        sock.shutdown(socket.SHUT_WR)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    else:
        while len(got) < len(payload):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    return bytes(got)


def udp_exchange(sock, dest, payload, timeout=3.0):
    """Sends one datagram and returns (data, source address) of the answer, or None."""
    sock.settimeout(timeout)
    sock.sendto(payload, dest)
    try:
        return sock.recvfrom(70000)
    except (socket.timeout, TimeoutError):
        return None


def drain_udp(sock):
    sock.setblocking(False)
    out = []
    while True:
        try:
            out.append(sock.recvfrom(70000))
        except BlockingIOError:
            return out


def tmpdir():
    return tempfile.TemporaryDirectory(prefix="echod-sockets-")


def pattern(n, seed=0):
    """n bytes covering every byte value, not periodic in a way a bug could hide in."""
    import random
    r = random.Random(n * 7919 + seed)
    return bytes(r.getrandbits(8) for _ in range(n)) if n < 4096 else r.randbytes(n)
