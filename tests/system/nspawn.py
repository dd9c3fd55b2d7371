"""The harness of the tests that install the .deb under a real systemd (test_nspawn_*.py, one
per README section they replay): boots systemd in systemd-nspawn over an overlay of / (the
container shares the host's network, so port 7 in there is port 7 here), installs the
package with apt-get (built once per source tree, debcache.py), and gives the scenarios
what they share: the container, clients, the journal and the status line, TAP steps.
Needs root, systemd-nspawn, nsenter and overlayfs, and cannot run inside a container;
without them a scenario skips, or fails where it must run (ECHOD_SYSTEM_TESTS_REQUIRED=1,
which -Dsystem_tests=enabled sets, or CI=true).

A scenario is run as: test_nspawn_NAME.py SOURCE_ROOT BUILD_ROOT BUILT_SERVICE_UNIT"""

import ctypes
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import debcache  # noqa: E402  (beside this module)

source_root, build_root, built_service = sys.argv[1:4]
required = (os.environ.get("ECHOD_SYSTEM_TESTS_REQUIRED") == "1"
            or os.environ.get("CI") == "true")

PORT = 7
STATUS_RE = re.compile(r"^(\d+)/(\d+) clients active, (\d+) served, (\d+) refused"
                       r"(?:, (\d+) datagrams echoed, (\d+) dropped)?$")
# MESSAGE_IDs of src/journal-ids.h
ID_READY = "66a4943ec13549c0a2c2db15236f291b"
ID_CONNECTION = "0c68e2459c6b44839b88e6a7b6b42503"
CONN_RE = re.compile(r"connection from (\S+) port (\d+) \(pid (\d+)\) ended: "
                     r"(eof|idle|reset|stop|error)[^,]*, (\d+) bytes echoed in ([0-9.]+) s")
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
    "TERM": "dumb",
}


# ---------------------------------------------------------------- TAP and skipping

def skip_or_fail(reason):
    if required:
        print(f"1..1\nnot ok 1 - cannot run: {reason}")
        sys.exit(1)
    print(f"1..0 # SKIP {reason}")
    sys.exit(0)


class Failed(Exception):
    pass


class Skipped(Exception):
    """A step that cannot run here: TAP "ok N - ... # SKIP reason"."""


def check(cond, msg):
    if not cond:
        raise Failed(msg)


# ---------------------------------------------------------------- the container

BOOT_TARGET = "echod-test.target"


class Container:
    def __init__(self, nspawn_args=()):
        self.nspawn_args = list(nspawn_args)  # more systemd-nspawn options
        self.tmp = tempfile.mkdtemp(prefix="echod-nspawn-")
        self.root = os.path.join(self.tmp, "root")
        self.log_path = os.path.join(self.tmp, "nspawn.log")
        self.nspawn = None
        self.init_pid = None
        self.mounts = []
        self.pids_cgroup = None  # the container's own cgroup v1 pids cgroup, on the host
        self.pids_note = "not set up"  # why systemd in there has no pids controller, or ""

    def mount(self):
        # The overlay's upper layer on a tmpfs of its own: works whatever / is.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "echod-test", self.tmp],
                       check=True, timeout=10)
        self.mounts.append(self.tmp)
        for d in ("upper", "work", "root"):
            os.mkdir(os.path.join(self.tmp, d))
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir=/,upperdir={self.tmp}/upper,workdir={self.tmp}/work",
                        self.root], check=True, timeout=10)
        self.mounts.append(self.root)
        # The container boots this target, not the host's default one: whatever else the
        # host has installed (a database, a web server) neither starts nor holds the boot.
        with open(os.path.join(self.root, "etc/systemd/system", BOOT_TARGET), "w") as f:
            f.write("[Unit]\nDescription=echod system test\nRequires=basic.target\n"
                    "After=basic.target\nAllowIsolate=yes\n")
        # A real host has no policy-rc.d: without this, dpkg would not start echo.socket.
        for f in ("usr/sbin/policy-rc.d",):
            path = os.path.join(self.root, f)
            if os.path.lexists(path):
                os.unlink(path)

    def make_pids_cgroup(self):
        """On a cgroup v1 host, nspawn mounts the controller hierarchies read-only in the
        container: its systemd has no pids controller, so TasksMax= is not enforced. The
        container gets a pids cgroup of its own instead: nspawn starts in it, so the
        container's cgroup namespace, and the hierarchy it sees, are rooted there, and
        delegate_pids() can then make that subtree writable for it alone."""
        mount_point = None
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields, _, fs = line.partition(" - ")
                fstype, _, options = fs.split()[:3]
                if fstype == "cgroup" and "pids" in options.split(","):
                    mount_point = fields.split()[4]
        if mount_point is None:
            self.pids_note = "no cgroup v1 pids hierarchy here (cgroup v2: nspawn delegates)"
            return
        with open("/proc/self/cgroup") as f:
            own = [line.rstrip("\n").split(":", 2)[2] for line in f
                   if "pids" in line.split(":")[1].split(",")]
        path = os.path.join(mount_point, own[0].lstrip("/") if own else "",
                            f"echod-nspawn-{os.getpid()}")
        try:
            os.mkdir(path)
        except OSError as e:
            self.pids_note = f"cannot create a pids cgroup: {e}"
            return
        self.pids_cgroup = path
        self.pids_mount = mount_point

    def delegate_pids(self, timeout=30):
        """Makes the container's pids hierarchy (its own cgroup, see make_pids_cgroup())
        writable in its mount namespace, and re-executes its systemd, which looks for
        writable controller hierarchies when it starts."""
        if self.pids_cgroup is None:
            return
        want = "/" + os.path.relpath(self.pids_cgroup, self.pids_mount)
        root = None
        with open(f"/proc/{self.init_pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == "/sys/fs/cgroup/pids":
                    root = fields[3]
        if root != want:
            # without a cgroup namespace it would be the host's whole hierarchy: leave it
            self.pids_note = (f"the container's /sys/fs/cgroup/pids is {root!r} of the "
                              f"hierarchy, not its own cgroup {want!r}")
            return
        p = subprocess.run(["nsenter", "-t", str(self.init_pid), "-m", "--", "mount", "-o",
                            "remount,bind,rw,nosuid,nodev,noexec", "/sys/fs/cgroup/pids"],
                           capture_output=True, text=True, timeout=10)
        if p.returncode != 0:
            self.pids_note = f"remounting /sys/fs/cgroup/pids writable: {p.stderr.strip()}"
            return
        self.run(["systemctl", "daemon-reexec"], timeout=60)
        self.wait_running(timeout)
        if not os.path.isdir(os.path.join(self.pids_cgroup, "init.scope")):
            self.pids_note = "systemd did not take up the writable pids hierarchy"
            return
        self.pids_note = ""

    def remove_pids_cgroup(self, timeout=10):
        deadline = time.monotonic() + timeout
        while self.pids_cgroup and os.path.exists(self.pids_cgroup):
            for d, _, _ in os.walk(self.pids_cgroup, topdown=False):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            if time.monotonic() > deadline:
                print(f"# could not remove the pids cgroup {self.pids_cgroup}", file=sys.stderr)
                break
            time.sleep(0.2)

    def boot(self, timeout=60):
        log = open(self.log_path, "wb")
        libc = ctypes.CDLL(None, use_errno=True)
        pids_cgroup = self.pids_cgroup

        def die_with_parent():
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no container outlives the test
            os.setsid()
            if pids_cgroup:
                with open(os.path.join(pids_cgroup, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))

        self.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-D", self.root, "--register=no", "--keep-unit",
             f"--machine=echotest-{os.getpid()}", "--console=read-only", *self.nspawn_args, "-b",
             f"systemd.unit={BOOT_TARGET}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        # PID 1 of the container is nspawn's child once its comm is "systemd"
        while self.init_pid is None:
            check(self.nspawn.poll() is None, "systemd-nspawn exited: " + self.log_tail())
            check(time.monotonic() < deadline, "no systemd in the container: " + self.log_tail())
            for child in self.children(self.nspawn.pid):
                try:
                    with open(f"/proc/{child}/comm") as f:
                        if f.read().strip() == "systemd":
                            self.init_pid = child
                except OSError:
                    pass
            time.sleep(0.1)
        return self.wait_running(deadline - time.monotonic())

    def wait_running(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            p = self.run(["systemctl", "is-system-running"], timeout=10, check=False)
            state = p.stdout.strip()
            if state in ("running", "degraded"):
                return state
            check(time.monotonic() < deadline, f"system state {state!r}: " + self.log_tail())
            time.sleep(0.3)

    @staticmethod
    def children(pid):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def run(self, argv, timeout=30, check=True, input=None):
        """Runs argv inside the container (all its namespaces), as root there."""
        p = subprocess.run(["nsenter", "-t", str(self.init_pid), "-a", "--", *argv],
                           capture_output=True, text=True, timeout=timeout, env=INSIDE_ENV,
                           input=input)
        if check and p.returncode != 0:
            raise Failed(f"`{' '.join(argv)}` exited {p.returncode}: {p.stdout}{p.stderr}")
        return p

    def sh(self, script, timeout=30, check=True):
        return self.run(["sh", "-c", script], timeout=timeout, check=check)

    def show(self, unit, *props):
        p = self.run(["systemctl", "show", unit, *[f"-p{x}" for x in props]])
        values = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
        return values if len(props) > 1 else values.get(props[0], "")

    def teardown(self):
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.terminate()  # SIGTERM: the container halts cleanly
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.nspawn.pid, signal.SIGKILL)
                self.nspawn.wait(timeout=10)
        for m in reversed(self.mounts):
            for _ in range(20):
                if subprocess.run(["umount", m], capture_output=True).returncode == 0:
                    break
                time.sleep(0.5)
            else:
                subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.remove_pids_cgroup()


# ---------------------------------------------------------------- clients

def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def tcp_echo(host, payload, timeout=10.0):
    """Sends payload, shuts down the write side, returns everything read until EOF."""
    import selectors
    deadline = time.monotonic() + timeout
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, PORT))
        s.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        sent, got = 0, bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"echo from {host} timed out: {sent} sent, {len(got)} back")
            for _, ev in sel.select(left):
                if ev & selectors.EVENT_WRITE and sent < len(payload):
                    try:
                        sent += s.send(payload[sent:sent + 65536])
                    except BlockingIOError:
                        pass
                    if sent == len(payload):
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(s, selectors.EVENT_READ)
                if ev & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        return bytes(got)
                    got += chunk


def port_echo(host, n, timeout=10.0):
    """One connection echoing n bytes: returns its local port (to find its record)."""
    payload = os.urandom(n)
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, PORT))
        port = s.getsockname()[1]
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    check(bytes(got) == payload, f"{host}: sent {n} bytes, got {len(got)} back")
    return port


def wait_for(what, fn, timeout, interval=0.2):
    """Polls fn() until it returns a true value; returns it, or raises Failed."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class StreamClient:
    """A client in mid-stream: sends 4 KiB every 10 ms and reads back concurrently, until
    told to stop sending; then reads until the server closes."""

    def __init__(self, host, seed):
        self.rng = random.Random(seed)
        self.sock = socket.create_connection((host, PORT), timeout=10)
        self.sock.settimeout(30)
        self.sent = bytearray()
        self.got = bytearray()
        self.stop_sending = threading.Event()
        self.error = None
        self.closed = threading.Event()
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer.start()
        self.reader.start()

    def _write(self):
        try:
            while not self.stop_sending.is_set() and not self.closed.is_set():
                chunk = self.rng.randbytes(4096)
                self.sock.sendall(chunk)
                self.sent += chunk
                time.sleep(0.01)
        except OSError as e:
            if not self.stop_sending.is_set():
                self.error = f"send: {e}"

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.got += chunk
        except OSError as e:
            self.error = f"recv: {e}"
        self.closed.set()

    def close(self):
        self.stop_sending.set()
        try:
            self.sock.close()
        except OSError:
            pass


class ConnectLoop:
    """Threads that open, echo and close connections one after another until stopped, counting
    the ones served and the ones that failed (refused, reset, timed out, short)."""

    def __init__(self, n_threads=4):
        self.served = 0
        self.failures = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(n_threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stop.is_set():
            payload = os.urandom(512)
            try:
                back = tcp_echo("127.0.0.1", payload, timeout=20)
                ok = back == payload
                why = f"{len(back)} of 512 bytes back"
            except (OSError, TimeoutError) as e:
                ok, why = False, f"{type(e).__name__}: {e}"
            with self.lock:
                if ok:
                    self.served += 1
                else:
                    self.failures.append(why)
            time.sleep(0.005)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        check(not any(t.is_alive() for t in self.threads), "a client thread hangs")
        return self.served, self.failures


# ---------------------------------------------------------------- sockets of other processes

def tcp_inodes(local_port, remote_port=None, listening=False):
    """Inodes of TCP sockets in this network namespace (the container shares it)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                lport = int(fields[1].rsplit(":", 1)[1], 16)
                rport = int(fields[2].rsplit(":", 1)[1], 16)
                state = fields[3]
                if lport != local_port or (remote_port is not None and rport != remote_port):
                    continue
                if listening != (state == "0A"):
                    continue
                found.append(int(fields[9]))
    return found


def find_fd(inode, pids):
    """(pid, fd) of the first of pids holding socket inode."""
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid, int(fd)
        except OSError:
            continue
    return None


def tcp_nodelay_of(pid, fd):
    """TCP_NODELAY of another process's socket, through pidfd_getfd(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd, the same on every arch
        if dup < 0:
            raise OSError(ctypes.get_errno(), f"pidfd_getfd({pid}, {fd})")
    finally:
        os.close(pidfd)
    s = socket.socket(fileno=dup)
    try:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        s.close()


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


# ---------------------------------------------------------------- the checks

class SystemTest:
    def __init__(self, c):
        self.c = c
        self.deb = None
        self.n_conns = 0  # finished TCP connections so far (for the journal check)
        self.conn_bytes = []

    def journal(self, since_usec=0, unit="echo.service"):
        """unit's journal entries since since_usec (µs since the epoch), MESSAGE as text"""
        p = self.c.run(["journalctl", "-u", unit, "-o", "json", "--no-pager"], timeout=30)
        entries = []
        for line in p.stdout.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if int(e.get("__REALTIME_TIMESTAMP", "0")) < since_usec:
                continue
            msg = e.get("MESSAGE", "")
            if isinstance(msg, list):
                msg = bytes(msg).decode("utf-8", "replace")
            e["MESSAGE"] = msg or ""
            entries.append(e)
        return entries

    def status(self):
        text = self.c.show("echo.service", "StatusText")
        m = STATUS_RE.match(text)
        return (text, m)

    def cgroup_pids(self):
        """pids in echo.service's cgroup, in whichever hierarchies the container has (cgroup v2,
        or v1's name=systemd and the hybrid unified one); empty when the cgroup is gone"""
        p = self.c.sh("find /sys/fs/cgroup -path '*/system.slice/echo.service/cgroup.procs' "
                      "-exec cat {} + 2>/dev/null; true")
        return sorted(set(int(x) for x in p.stdout.split()))

    def pids_file(self, name):
        """a file of echo.service's pids cgroup (pids.max, pids.current, ...), or None"""
        p = self.c.sh(f"find /sys/fs/cgroup -path '*/system.slice/echo.service/{name}' "
                      "-exec cat {} + 2>/dev/null; true")
        return p.stdout.strip() or None

    def reset(self):
        # a test run starts the service far more often than an operator would
        self.c.run(["systemctl", "reset-failed", "echo.service", "echo.socket"], check=False)

    def echo_ok(self, host, n=1000):
        payload = os.urandom(n)
        back = tcp_echo(host, payload)
        check(back == payload, f"{host}: sent {n} bytes, got {len(back)} back"
              + ("" if len(back) != n else " (different bytes)"))
        self.n_conns += 1
        self.conn_bytes.append(n)


    def records(self, *matches):
        """journalctl -u echo.service MATCH... -o json: the records, MESSAGE as text"""
        p = self.c.run(["journalctl", "-u", "echo.service", *matches, "-o", "json", "--no-pager"],
                       timeout=30)
        return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]

    def socat_hello(self):
        """The README's first check: printf 'hello\\n' | socat - TCP:127.0.0.1:7"""
        if shutil.which("socat") is None:
            return
        p = subprocess.run("printf 'hello\\n' | socat - TCP:127.0.0.1:7", shell=True,
                           capture_output=True, timeout=10)
        check(p.stdout == b"hello\n", f"socat: {p.stdout!r} {p.stderr!r}")
        self.n_conns += 1
        self.conn_bytes.append(6)

    def t_build(self):
        try:
            self.deb, built = debcache.deb(source_root, build_root)
        except RuntimeError as e:
            raise Failed(f"packaging/build-deb: {e}")
        return os.path.basename(self.deb) + ("" if built else
                                             " (built by an earlier test of this build tree)")

    def t_boot(self):
        self.c.make_pids_cgroup()
        state = self.c.boot()
        self.c.delegate_pids()
        pids = "pids controller: " + (self.c.pids_note or "a cgroup of its own, writable")
        if state == "degraded":
            p = self.c.run(["systemctl", "--failed", "--no-legend"], check=False)
            return f"degraded: {p.stdout.strip()}; {pids}"
        return f"{state}; {pids}"

    def t_install(self):
        srv = os.path.join(self.c.root, "srv")  # the container mounts its own /tmp
        os.makedirs(srv, exist_ok=True)
        shutil.copy(self.deb, srv)
        name = os.path.basename(self.deb)
        # as in the README: apt-get install ./echod_VERSION_ARCH.deb
        self.c.sh(f"cd /srv && apt-get install -y ./{name}", timeout=120)

    def install_steps(self, boot_note=""):
        """The steps every scenario starts with: later steps need each of them."""
        return [
            ("packaging/build-deb builds the .deb", self.t_build, True),
            ("systemd boots in systemd-nspawn" + boot_note, self.t_boot, True),
            ("apt-get install ./echod_*.deb", self.t_install, True),
        ]


LOCK_PATH = "/run/lock/echod-nspawn-test.lock"
LOCK_WAIT = 300  # seconds: another system test run may be ahead of this one
host_lock = None


def take_host_lock():
    """The containers share the host's network (port 7): one system test at a time per host.
    Waits for a run that holds the lock; the lock goes with this process."""
    global host_lock
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    host_lock = open(LOCK_PATH, "w")
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(host_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                print(f"1..1\nnot ok 1 - another system test held {LOCK_PATH} for "
                      f"{LOCK_WAIT} s")
                sys.exit(1)
            time.sleep(1)


def preflight():
    """Skips (or fails) without what the container needs; fails if port 7 is taken."""
    if os.geteuid() != 0:
        skip_or_fail("needs root")
    if shutil.which("systemd-detect-virt"):
        p = subprocess.run(["systemd-detect-virt", "--container"], capture_output=True,
                           text=True, timeout=10)
        if p.returncode == 0 and not required:
            skip_or_fail(f"runs inside a container ({p.stdout.strip()}): systemd-nspawn "
                         "cannot boot one nested in it")
    for tool in ("systemd-nspawn", "nsenter", "dpkg-buildpackage", "ss"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} not found")
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            subprocess.run(["modprobe", "overlay"], capture_output=True)
            with open("/proc/filesystems") as f2:
                if "overlay" not in f2.read():
                    skip_or_fail("no overlayfs")
    take_host_lock()
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        print(f"1..1\nnot ok 1 - something already listens on port {PORT}")
        sys.exit(1)
    except OSError:
        pass


def run_steps(c, steps, units):
    """Runs (description, function, later steps need it) in order as TAP, shows the journal
    of units after a failure, tears the container down; returns the exit status."""
    print(f"1..{len(steps)}")
    sys.stdout.flush()
    n_failed = 0
    blocked = None
    try:
        c.mount()
        for i, (name, fn, needed) in enumerate(steps, 1):
            if blocked:
                print(f"not ok {i} - {name}\n# not run: {blocked}")
                n_failed += 1
                continue
            start = time.monotonic()
            try:
                note = fn()
                print(f"ok {i} - {name} ({time.monotonic() - start:.1f} s)"
                      + (f"\n# {note}" if note else ""))
            except Skipped as e:
                print(f"ok {i} - {name} # SKIP {e}")
            except (Failed, OSError, subprocess.SubprocessError, ValueError, KeyError,
                    AttributeError) as e:
                n_failed += 1
                print(f"not ok {i} - {name}")
                for line in f"{type(e).__name__}: {e}".splitlines():
                    print(f"# {line}")
                if needed:
                    blocked = f"{name} failed"
                if c.init_pid:
                    p = c.run(["journalctl", *[f"-u{u}" for u in units], "-n", "15",
                               "--no-pager"], check=False)
                    for line in p.stdout.splitlines():
                        print(f"#   {line}")
            sys.stdout.flush()
    finally:
        c.teardown()


def main(test, steps, units=("echo.service", "echo.socket")):
    """Runs a scenario's steps (description, function, later steps need it) as TAP in the
    container of test, after the preflight; exits with the result."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the teardown on a timeout
    preflight()
    sys.exit(run_steps(test.c, steps, list(units)))
