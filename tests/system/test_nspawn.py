#!/usr/bin/env python3
"""The .deb under a real systemd: builds it with packaging/build-deb, boots systemd in
systemd-nspawn over an overlay of / (the container shares the host's network, so port 7 in
there is port 7 here), installs the package with apt-get and checks, as a user would, what
the README's Install and Operate sections promise. Needs root, systemd-nspawn, nsenter and
overlayfs; skips without them (fails if ECHOD_SYSTEM_TESTS_REQUIRED=1).

usage: test_nspawn.py SOURCE_ROOT BUILD_ROOT BUILT_SERVICE_UNIT"""

import ctypes
import fcntl
import glob
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

source_root, build_root, built_service = sys.argv[1:4]
required = os.environ.get("ECHOD_SYSTEM_TESTS_REQUIRED") == "1"

PORT = 7
STATUS_RE = re.compile(r"^(\d+)/(\d+) clients active, (\d+) served, (\d+) refused"
                       r"(?:, (\d+) datagrams echoed, (\d+) dropped)?$")
# MESSAGE_IDs of src/journal-ids.h
ID_READY = "66a4943ec13549c0a2c2db15236f291b"
ID_CONNECTION = "0c68e2459c6b44839b88e6a7b6b42503"
CONN_RE = re.compile(r"connection from (\S+) port (\d+) \(pid (\d+)\) ended: "
                     r"(eof|idle|reset|stop|error)[^,]*, (\d+) bytes echoed in ([0-9.]+) s")
EXPOSURE_RE = re.compile(r"Overall exposure level for \S+: ([0-9.]+)")
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
    "TERM": "dumb",
}
DYNAMIC_UID_MIN, DYNAMIC_UID_MAX = 61184, 65519
# t_tasks_max: a TasksMax= far below --max-clients, set by a runtime drop-in
TASKS_MAX_LOW = 20
TASKS_DROPIN_DIR = "/run/systemd/system/echo.service.d"
FORK_WARNING = ("fork() failed: Resource temporarily unavailable; pausing new connections, "
                "retrying with a growing delay up to 1 s")
SERVING_AGAIN_RE = re.compile(r"^Serving again after (\d+) failed attempts?$")


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

    def journal(self, since_usec=0):
        p = self.c.run(["journalctl", "-u", "echo.service", "-o", "json", "--no-pager"],
                       timeout=30)
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

    # --- 1
    def t_build(self):
        out = os.path.join(self.c.tmp, "deb")
        # the package's own test suites are run by CI on the tree, not here
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck")
        p = subprocess.run([os.path.join(source_root, "packaging", "build-deb"), out],
                           capture_output=True, text=True, timeout=600, env=env)
        check(p.returncode == 0, "build-deb failed:\n" + "\n".join(
            (p.stdout + p.stderr).splitlines()[-30:]))
        debs = glob.glob(os.path.join(out, "echod_*.deb"))
        check(len(debs) == 1, f"expected one echod_*.deb, got {debs}")
        self.deb = debs[0]
        return os.path.basename(self.deb)

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

    def t_socket_after_install(self):
        enabled = self.c.run(["systemctl", "is-enabled", "echo.socket"], check=False).stdout.strip()
        active = self.c.run(["systemctl", "is-active", "echo.socket"], check=False).stdout.strip()
        check(enabled == "enabled" and active == "active",
              f"echo.socket is {enabled}/{active}, want enabled/active")
        svc = self.c.run(["systemctl", "is-active", "echo.service"], check=False).stdout.strip()
        check(svc == "inactive", f"echo.service is {svc} before any connection, want inactive")
        listen = self.c.show("echo.socket", "Listen")
        check(listen == f"[::]:{PORT} (Stream)", f"Listen={listen}")
        # one socket for both families: ss shows *:7 when IPV6_V6ONLY is off
        p = subprocess.run(["ss", "-Hltn", f"sport = :{PORT}"], capture_output=True, text=True,
                           timeout=10)
        locals_ = [line.split()[3] for line in p.stdout.splitlines() if line.strip()]
        check(locals_ == [f"*:{PORT}"], f"listeners on port {PORT}: {locals_} (want ['*:{PORT}'])")

    def t_tcp_echo(self):
        before = time.monotonic()
        payload = os.urandom(256 * 1024)
        back = tcp_echo("127.0.0.1", payload)
        check(back == payload, f"127.0.0.1: sent {len(payload)}, got {len(back)} back")
        self.n_conns += 1
        self.conn_bytes.append(len(payload))
        payload = os.urandom(64 * 1024)
        back = tcp_echo("::1", payload)
        check(back == payload, f"[::1]: sent {len(payload)}, got {len(back)} back")
        self.n_conns += 1
        self.conn_bytes.append(len(payload))
        # started by that first connection, by the socket
        v = self.c.show("echo.service", "ActiveState", "ExecMainStartTimestampMonotonic",
                        "TriggeredBy", "NRestarts")
        check(v["ActiveState"] == "active", f"echo.service is {v['ActiveState']}")
        started = int(v["ExecMainStartTimestampMonotonic"]) / 1e6
        check(started >= before, f"echo.service started at {started}, before the first "
              f"connection at {before:.6f}")
        check(v["TriggeredBy"] == "echo.socket", f"TriggeredBy={v['TriggeredBy']}")
        if shutil.which("socat"):  # the README's example
            p = subprocess.run("printf 'hello\\n' | socat - TCP:127.0.0.1:7", shell=True,
                               capture_output=True, timeout=10)
            check(p.stdout == b"hello\n", f"socat: {p.stdout!r} {p.stderr!r}")
            self.n_conns += 1
            self.conn_bytes.append(6)

    def t_dynamic_user(self):
        v = self.c.show("echo.service", "MainPID", "DynamicUser", "User")
        pid = int(v["MainPID"])
        check(pid > 0, "no main process")
        status = self.c.run(["cat", f"/proc/{pid}/status"]).stdout
        uids = [int(x) for x in re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()]
        check(all(DYNAMIC_UID_MIN <= u <= DYNAMIC_UID_MAX for u in uids),
              f"main process uids {uids}, not in the dynamic range")
        check(v["DynamicUser"] == "yes", f"DynamicUser={v['DynamicUser']}")
        name = self.c.run(["getent", "passwd", str(uids[0])], check=False).stdout.split(":")[0]
        for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            caps = re.search(rf"^{field}:\s+(\S+)$", status, re.M).group(1)
            check(int(caps, 16) == 0, f"{field} {caps}")
        check(re.search(r"^NoNewPrivs:\s+1$", status, re.M), "NoNewPrivs not set")
        check(re.search(r"^Seccomp:\s+2$", status, re.M), "no seccomp filter")
        # its own network, user, mount and IPC namespaces (the container's PID 1 as reference)
        own = []
        for ns in ("net", "user", "mnt", "ipc"):
            mine = self.c.run(["readlink", f"/proc/{pid}/ns/{ns}"]).stdout.strip()
            init = self.c.run(["readlink", f"/proc/1/ns/{ns}"]).stdout.strip()
            check(mine != init, f"{ns} namespace shared with PID 1 ({mine})")
            own.append(ns)
        return (f"uid {uids[0]}" + (f" ({name})" if name else "") + ", no capabilities, "
                f"NoNewPrivs, seccomp, own {'/'.join(own)} namespaces")

    def t_nodelay(self):
        listeners = tcp_inodes(PORT, listening=True)
        check(len(listeners) == 1, f"listening sockets on {PORT}: {listeners}")
        where = find_fd(listeners[0], [self.c.init_pid])
        check(where, "the listening socket is not held by the container's PID 1")
        check(tcp_nodelay_of(*where), "TCP_NODELAY is off on the listening socket")
        with socket.create_connection(("127.0.0.1", PORT), timeout=10) as s:
            s.sendall(b"x")
            s.recv(1)
            conns = wait_for("the server side of the connection",
                             lambda: tcp_inodes(PORT, s.getsockname()[1]), 5)
            where = wait_for("the echod child holding it",
                             lambda: find_fd(conns[0], all_pids()), 5)
            check(where[0] not in (self.c.init_pid,), "PID 1 holds the connection (Accept=yes?)")
            child_nodelay = tcp_nodelay_of(*where)
            # fork_trim() works inside the sandbox too: the child is made with only the
            # mappings it touches (see README, "The fork-cost design")
            with open(f"/proc/{where[0]}/status") as f:
                ppid = int(re.search(r"^PPid:\s+(\d+)", f.read(), re.M).group(1))
            with open(f"/proc/{where[0]}/maps") as f:
                child_maps = len(f.readlines())
            with open(f"/proc/{ppid}/maps") as f:
                parent_maps = len(f.readlines())
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
        self.n_conns += 1
        self.conn_bytes.append(1)
        check(child_nodelay, "TCP_NODELAY is off on the accepted connection")
        check(child_maps <= 10 < parent_maps, f"the child has {child_maps} mappings, echod "
              f"{parent_maps}: children were forked with everything")
        return (f"listener (PID 1) and connection (host pid {where[0]}) both have TCP_NODELAY; "
                f"the child has {child_maps} mappings, echod {parent_maps}")

    def t_max_clients(self):
        self.reset()
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4096 <= hard or soft < hard < 4096:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        conns = []
        try:
            for i in range(1025):
                s = socket.create_connection(("127.0.0.1" if i % 2 else "::1", PORT), timeout=10)
                conns.append(s)
            text, _ = wait_for("StatusText with 1024/1024 clients active",
                               lambda: (lambda t, m: (t, m) if m and m.group(1) == "1024"
                                        else None)(*self.status()), 20)
            v = self.c.show("echo.service", "TasksCurrent", "TasksMax", "ActiveState")
            check(v["ActiveState"] == "active", f"echo.service is {v['ActiveState']}")
            n_procs = len(self.cgroup_pids())
            check(n_procs == 1025, f"{n_procs} processes in the cgroup, want 1025")
            check(int(v["TasksMax"]) >= n_procs, f"TasksMax={v['TasksMax']} < {n_procs}")
            current = v["TasksCurrent"]
            if current.isdigit():
                pids_max = self.pids_file("pids.max")
                tasks = f"TasksCurrent={current}, pids.max={pids_max}"
                check(int(current) == n_procs and int(current) <= int(v["TasksMax"])
                      and pids_max == v["TasksMax"], tasks)
            else:
                check(self.c.pids_note, f"TasksCurrent={current} with the pids controller "
                      "delegated to the container")
                tasks = f"TasksCurrent={current}: not accounted here ({self.c.pids_note})"
            # every one of them, and the one that waited in the backlog, is served
            for s in conns:
                s.settimeout(20)
                s.sendall(b"y")
            def finish(s):
                s.shutdown(socket.SHUT_WR)
                got = b""
                while True:
                    chunk = s.recv(16)
                    if not chunk:
                        return got == b"y"
                    got += chunk
            # one ends, then the 1025th (in the backlog so far) must be served
            bad = (not finish(conns[0])) + sum(not finish(s) for s in reversed(conns[1:]))
            check(not bad, f"{bad} of 1025 clients did not get their byte back")
        finally:
            for s in conns:
                s.close()
        self.n_conns += 1025
        self.conn_bytes += [1] * 1025
        return f"{text!r}; {n_procs} processes, TasksMax={v['TasksMax']}; {tasks}"

    def t_tasks_max(self):
        """TasksMax= is enforced: a drop-in puts it below what --max-clients lets echod fork.
        At the limit fork() fails; echod logs it, pauses and retries, the service stays up,
        and once clients leave it serves again."""
        import selectors
        self.reset()
        limit, max_clients, n = TASKS_MAX_LOW, 5 * TASKS_MAX_LOW, int(1.5 * TASKS_MAX_LOW)
        fragment = self.c.show("echo.service", "FragmentPath")
        execs = re.findall(r"^ExecStart=(.+)$", self.c.run(["cat", fragment]).stdout, re.M)
        check(len(execs) == 1, f"ExecStart= lines in {fragment}: {execs}")
        exec_start = (re.sub(r"\s+--max-clients[= ]\S+", "", execs[0])
                      + f" --max-clients {max_clients}")
        dropin = (f"[Service]\nTasksMax={limit}\nExecStart=\nExecStart={exec_start}\n")
        self.c.run(["sh", "-c", f"mkdir -p {TASKS_DROPIN_DIR} && "
                    f"cat > {TASKS_DROPIN_DIR}/tasks.conf"], input=dropin)
        conns = []
        samples = []
        done = threading.Event()

        def sample():  # TasksCurrent as an operator sees it, all along
            while not done.is_set():
                try:
                    cur = self.c.show("echo.service", "TasksCurrent")
                    if cur.isdigit():
                        samples.append(int(cur))
                except (Failed, OSError, subprocess.SubprocessError):
                    pass
                time.sleep(0.05)
        sampler = threading.Thread(target=sample, daemon=True)
        try:
            since = int(time.time() * 1e6)
            self.c.sh("systemctl daemon-reload && systemctl restart echo.service", timeout=60)
            v = self.c.show("echo.service", "TasksMax", "MainPID", "NRestarts", "ActiveState")
            check(v["TasksMax"] == str(limit) and v["ActiveState"] == "active",
                  f"after the drop-in: TasksMax={v['TasksMax']} ActiveState={v['ActiveState']}")
            pids_max = self.pids_file("pids.max")
            if pids_max is None:
                why = (f"echo.service has no pids cgroup: TasksMax= is not enforced in this "
                       f"container ({self.c.pids_note or 'no pids controller'})")
                raise Failed(why) if required else Skipped(why)
            check(pids_max == str(limit), f"pids.max={pids_max}, TasksMax={limit}")
            wait_for(f"the ready line with max {max_clients} clients", lambda: [
                e for e in self.journal(since) if e["MESSAGE"].startswith("ready: ")
                and e["MESSAGE"].endswith(f"; max {max_clients} clients")], 5)
            sampler.start()
            for i in range(n):
                s = socket.create_connection(("127.0.0.1" if i % 2 else "::1", PORT), timeout=10)
                conns.append(s)
                s.sendall(b"t")
            warn = wait_for("echod's fork() warning in the journal", lambda: [
                e for e in self.journal(since) if e["MESSAGE"] == FORK_WARNING], 10)
            check(warn[0].get("PRIORITY") == "4", f"priority {warn[0].get('PRIORITY')}")
            text, _ = wait_for(f"StatusText with {limit - 1}/{max_clients} clients active",
                               lambda: (lambda t, m: (t, m) if m and m.group(1) == str(limit - 1)
                                        and m.group(2) == str(max_clients) else None)(
                                   *self.status()), 10)
            # which clients got their byte back: limit - 1 of them, one per child
            echoed, closed = [], []
            deadline = time.monotonic() + 2
            sel = selectors.DefaultSelector()
            for s in conns:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(max(0, deadline - time.monotonic())):
                    try:
                        got = key.fileobj.recv(16)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        got = b""
                    (echoed if got == b"t" else closed).append(key.fileobj)
                    sel.unregister(key.fileobj)
            sel.close()
            waiting = n - len(echoed) - len(closed)
            check(len(echoed) == limit - 1, f"{len(echoed)} of {n} clients echoed, want "
                  f"{limit - 1} (TasksMax={limit} less the main process); {len(closed)} "
                  f"closed, {waiting} waiting")
            v2 = self.c.show("echo.service", "ActiveState", "SubState", "MainPID", "NRestarts")
            check((v2["ActiveState"], v2["SubState"]) == ("active", "running")
                  and v2["MainPID"] == v["MainPID"] and v2["NRestarts"] == v["NRestarts"],
                  f"at the limit: {v2}, was MainPID={v['MainPID']} NRestarts={v['NRestarts']}")
            time.sleep(0.5)
            done.set()
            sampler.join(10)
            check(samples and max(samples) == limit, f"TasksCurrent samples {sorted(set(samples))}"
                  f", want them to reach {limit}")
            peak = self.pids_file("pids.peak")  # the kernel's own high-water mark (6.1+)
            check(peak is None or int(peak) <= limit, f"pids.peak={peak} > {limit}")
            for s in conns:
                s.close()
            # new clients are served again
            self.echo_ok("127.0.0.1")
            self.echo_ok("::1")

            def all_logged():
                j = [e["MESSAGE"] for e in self.journal(since)]
                warns = [m for m in j if m == FORK_WARNING]
                again = [SERVING_AGAIN_RE.match(m) for m in j]
                again = [m for m in again if m]
                events = re.search(r"^max (\d+)$", self.pids_file("pids.events") or "", re.M)
                failed = int(events.group(1)) if events else -1
                ok = (len(again) == len(warns)
                      and sum(int(m.group(1)) for m in again) == failed)
                return (warns, again, failed) if ok else None
            try:
                warns, again, failed = wait_for("a 'Serving again' line per pause", all_logged, 5)
            except Failed as e:
                j = [x["MESSAGE"] for x in self.journal(since)]
                raise Failed(f"{e}: {[m for m in j if 'fail' in m or 'Serving' in m]}, "
                             f"pids.events: {self.pids_file('pids.events')!r}")
            v3 = self.c.show("echo.service", "ActiveState", "MainPID", "NRestarts")
            check(v3["ActiveState"] == "active" and v3["MainPID"] == v["MainPID"]
                  and v3["NRestarts"] == v["NRestarts"], f"after the limit: {v3}")
        finally:
            done.set()
            if sampler.is_alive():
                sampler.join(10)
            for s in conns:
                s.close()
            self.c.sh(f"rm -rf {TASKS_DROPIN_DIR} && systemctl daemon-reload && "
                      "systemctl restart echo.service", check=False, timeout=60)
        v = self.c.show("echo.service", "TasksMax", "ActiveState")
        pids_max = self.pids_file("pids.max")
        check(v["ActiveState"] == "active" and pids_max == v["TasksMax"] != str(limit),
              f"after removing the drop-in: {v}, pids.max={pids_max}")
        return (f"pids.max={limit}; TasksCurrent peaked at {max(samples)} in {len(samples)} "
                f"samples, pids.peak={peak}; {text!r}: {len(echoed)} of {n} echoed, "
                f"{len(closed)} closed by echod, {waiting} waiting; journal: {len(warns)} x "
                f"{warns[0]!r}, "
                + ", ".join(repr(m.group(0)) for m in again)
                + f" (pids.events max {failed}); back to TasksMax={v['TasksMax']}")

    def t_status(self):
        # one connection held open, mid-stream
        held = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        try:
            held.sendall(b"x" * 100)
            got = b""
            while len(got) < 100:
                got += held.recv(100 - len(got))
            text, m = wait_for("StatusText with 1 client active",
                               lambda: (lambda t, m: (t, m) if m and m.group(1) == "1" else None)(
                                   *self.status()), 5)
            served = int(m.group(3))
            check(int(m.group(2)) == 1024, f"cap in {text!r}")
            check(served >= self.n_conns, f"{text!r}: served < {self.n_conns} finished")
            p = self.c.run(["systemctl", "status", "--no-pager", "echo.service"], check=False)
            check(f"Status: \"{text}\"" in p.stdout, f"systemctl status: {p.stdout}")
            held.shutdown(socket.SHUT_WR)
            while held.recv(4096):
                pass
        finally:
            held.close()
        self.n_conns += 1
        self.conn_bytes.append(100)
        text2, _ = wait_for("StatusText with 0 clients active",
                            lambda: (lambda t, m: (t, m) if m and m.group(1) == "0"
                                     and int(m.group(3)) >= self.n_conns else None)(
                                *self.status()), 5)
        return f"{text!r} then {text2!r}"

    def t_journal(self):
        def lines():
            j = self.journal()
            conns = [(e, CONN_RE.search(e["MESSAGE"])) for e in j]
            conns = [(e, m) for e, m in conns if m]
            return (j, conns) if len(conns) >= self.n_conns else None
        j, conns = wait_for(f"{self.n_conns} connection lines", lines, 5)
        ready = [e for e in j if e["MESSAGE"].startswith("ready: ")]
        check(ready, "no ready line")
        check(ready[0].get("PRIORITY") == "5", f"ready line priority {ready[0].get('PRIORITY')}")
        check(f"tcp [::]:{PORT}" in ready[0]["MESSAGE"], f"ready line: {ready[0]['MESSAGE']}")
        check(len(conns) == self.n_conns,
              f"{len(conns)} connection lines for {self.n_conns} connections")
        prios = sorted(set(e.get("PRIORITY") for e, _ in conns))
        check(prios == ["6"], f"connection line priorities {prios}, want info (6)")
        peers = sorted(set(m.group(1) for _, m in conns))
        check(set(peers) <= {"127.0.0.1", "::1"}, f"peers {peers}")
        got = sorted(int(m.group(5)) for _, m in conns)
        check(got == sorted(self.conn_bytes), f"bytes {got}, sent {sorted(self.conn_bytes)}")
        main = int(self.c.show("echo.service", "MainPID") or 0)
        child_pids = set(int(m.group(3)) for _, m in conns)
        check(main not in child_pids and len(child_pids) == len(conns),
              f"child pids {child_pids}, main {main}")
        check(all(m.group(4) == "eof" for _, m in conns), "reasons: "
              + " ".join(m.group(4) for _, m in conns))
        # what an operator types
        p = self.c.run(["journalctl", "-u", "echo.service", "-p", "info", "--no-pager", "-o", "cat"])
        check(sum(1 for l in p.stdout.splitlines() if CONN_RE.search(l)) == self.n_conns,
              "journalctl -p info does not show them all")
        return f"ready: {ready[0]['MESSAGE']!r}; e.g. {conns[0][0]['MESSAGE']!r}"

    def records(self, *matches):
        """journalctl -u echo.service MATCH... -o json: the records, MESSAGE as text"""
        p = self.c.run(["journalctl", "-u", "echo.service", *matches, "-o", "json", "--no-pager"],
                       timeout=30)
        return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]

    def t_journal_records(self):
        conns = {("127.0.0.1", port_echo("127.0.0.1", n)): n for n in (10, 7000)}
        conns[("::1", port_echo("::1", 333))] = 333

        def found():
            rs = self.records("ECHOD_END=eof")
            by = {(r.get("ECHOD_PEER_ADDR"), int(r.get("ECHOD_PEER_PORT", 0))): r for r in rs}
            return by if set(conns) <= set(by) else None
        by = wait_for(f"records of {len(conns)} connections (ECHOD_END=eof)", found, 10)
        main = int(self.c.show("echo.service", "MainPID") or 0)
        for key, n in conns.items():
            r = by[key]
            m = CONN_RE.search(r.get("MESSAGE", ""))
            check(m and m.group(1) == key[0] and int(m.group(2)) == key[1], f"MESSAGE {r.get('MESSAGE')!r}")
            want = {"ECHOD_BYTES": str(n), "ECHOD_END": "eof", "ECHOD_CHILD_PID": m.group(3),
                    "MESSAGE_ID": ID_CONNECTION, "SYSLOG_IDENTIFIER": "echod", "PRIORITY": "6",
                    "DOCUMENTATION": "man:echod(8)", "_SYSTEMD_UNIT": "echo.service"}
            got = {k: r.get(k) for k in want}
            check(got == want, f"record of {key}: {got}, want {want}")
            check(r.get("ECHOD_DURATION_USEC", "").isdigit(), f"ECHOD_DURATION_USEC {r.get('ECHOD_DURATION_USEC')}")
            check(int(r["ECHOD_CHILD_PID"]) != main and r.get("_PID") == str(main),
                  f"child pid {r['ECHOD_CHILD_PID']}, sent by {r.get('_PID')}, MainPID {main}")
        # MESSAGE_ID= filtering: only that kind of record
        rs = self.records(f"MESSAGE_ID={ID_CONNECTION}")
        check(len(rs) >= len(conns) and all(r.get("MESSAGE_ID") == ID_CONNECTION for r in rs)
              and all(CONN_RE.search(r.get("MESSAGE", "")) for r in rs),
              f"MESSAGE_ID={ID_CONNECTION}: {len(rs)} records, not all connection records")
        ready = self.records(f"MESSAGE_ID={ID_READY}")
        check(ready and ready[-1].get("MESSAGE", "").startswith("ready: ")
              and ready[-1].get("ECHOD_MAX_CLIENTS") == "1024" and ready[-1].get("ECHOD_LISTENERS"),
              f"MESSAGE_ID={ID_READY}: {ready[-1:] }")
        # journalctl -x: the catalog's text under the records
        for mid, subject in ((ID_READY, "echod is ready"), (ID_CONNECTION, "A connection to echod ended")):
            p = self.c.run(["journalctl", "-u", "echo.service", f"MESSAGE_ID={mid}", "-x", "-n", "1",
                            "--no-pager"], timeout=30)
            check(subject in p.stdout and "man:echod(8)" in p.stdout,
                  f"journalctl -x MESSAGE_ID={mid} shows no catalog text:\n{p.stdout}")
        return f"e.g. {by[next(iter(conns))]['MESSAGE']!r}"

    def t_journal_log_peer(self):
        self.c.sh("mkdir -p /etc/systemd/system/echo.service.d\n"
                  "printf '[Service]\\nExecStart=\\nExecStart=/usr/sbin/echod --log-peer network\\n' "
                  "> /etc/systemd/system/echo.service.d/log-peer.conf\n"
                  "systemctl daemon-reload\nsystemctl restart echo.service\n", timeout=60)
        try:
            port = port_echo("127.0.0.1", 5)
            rs = wait_for("the masked record", lambda: [
                r for r in self.records("ECHOD_END=eof", f"ECHOD_PEER_PORT={port}")] or None, 10)
            r = rs[-1]
            check(r.get("ECHOD_PEER_ADDR") == "127.0.0.0/24", f"ECHOD_PEER_ADDR {r.get('ECHOD_PEER_ADDR')}")
            check(r.get("MESSAGE", "").startswith(f"connection from 127.0.0.0/24 port {port} (pid "),
                  f"MESSAGE {r.get('MESSAGE')!r}")
            return repr(r["MESSAGE"])
        finally:
            self.c.sh("rm -f /etc/systemd/system/echo.service.d/log-peer.conf\n"
                      "systemctl daemon-reload\nsystemctl restart echo.service\n", timeout=60)
            self.reset()

    def t_stop_draining(self):
        self.reset()
        t0 = time.time()
        clients = [StreamClient("127.0.0.1" if i % 2 else "::1", i) for i in range(20)]
        try:
            wait_for("20 clients streaming", lambda: all(len(cl.got) >= 16384 for cl in clients)
                     or any(cl.error for cl in clients), 15)
            check(not any(cl.error for cl in clients),
                  "; ".join(cl.error for cl in clients if cl.error))
            text, _ = wait_for("StatusText with 20 clients active",
                               lambda: (lambda t, m: (t, m) if m and m.group(1) == "20" else None)(
                                   *self.status()), 5)
            in_cgroup = self.cgroup_pids()
            check(len(in_cgroup) == 21, f"{len(in_cgroup)} processes in the cgroup, want 21")
            for cl in clients:
                cl.stop_sending.set()
            for cl in clients:
                cl.writer.join(5)
            start = time.monotonic()
            p = self.c.run(["systemctl", "stop", "echo.service"], timeout=60, check=False)
            took = time.monotonic() - start
            check(p.returncode == 0, f"systemctl stop: {p.stderr}")
            for cl in clients:
                cl.reader.join(max(0.1, start + 20 - time.monotonic()))
            bad = []
            for i, cl in enumerate(clients):
                if not cl.closed.is_set():
                    bad.append(f"client {i}: still open")
                elif cl.got != cl.sent:
                    bad.append(f"client {i}: sent {len(cl.sent)}, got {len(cl.got)} back"
                               + (f" ({cl.error})" if cl.error else ""))
            check(not bad, "; ".join(bad))
        finally:
            for cl in clients:
                cl.close()
        v = self.c.show("echo.service", "ActiveState", "Result", "MainPID")
        check(v["ActiveState"] == "inactive" and v["Result"] == "success",
              f"ActiveState={v['ActiveState']} Result={v['Result']}")
        left = self.cgroup_pids()
        check(not left, f"processes left in the cgroup: {left}")
        p = self.c.run(["pgrep", "-x", "echod"], check=False)
        check(not p.stdout.strip(), f"echod processes left: {p.stdout.split()}")
        self.stop_since = int(t0 * 1e6)
        self.stop_clients = [len(cl.sent) for cl in clients]
        return f"{sum(self.stop_clients)} bytes in 20 streams all back; stop took {took:.2f} s"

    def t_stop_logged(self):
        def lines():
            conns = [CONN_RE.search(e["MESSAGE"]) for e in self.journal(self.stop_since)]
            conns = [m for m in conns if m]
            return conns if len(conns) >= 20 else None
        conns = wait_for("20 connection lines", lines, 5)
        reasons = sorted(m.group(4) for m in conns)
        check(reasons == ["stop"] * 20, f"reasons {reasons}")
        got = sorted(int(m.group(5)) for m in conns)
        check(got == sorted(self.stop_clients), f"bytes {got}, sent {sorted(self.stop_clients)}")
        msgs = [e["MESSAGE"] for e in self.journal(self.stop_since)]
        check(any(m.startswith("stopping: 20 clients draining") for m in msgs),
              "no 'stopping: 20 clients draining' line")
        check(any(m.startswith("stopped: ") for m in msgs), "no 'stopped:' line")

    def t_stop_drain_timeout(self):
        self.reset()
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        try:
            # send without ever reading: the child's writes block once the buffers are full
            s.setblocking(False)
            sent = 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    sent += s.send(b"z" * 65536)
                except BlockingIOError:
                    time.sleep(0.2)
                    try:
                        sent += s.send(b"z" * 65536)
                    except BlockingIOError:
                        break
            start = time.monotonic()
            p = self.c.run(["systemctl", "stop", "echo.service"], timeout=60, check=False)
            took = time.monotonic() - start
            check(p.returncode == 0, f"systemctl stop: {p.stderr}")
        finally:
            s.close()
        v = self.c.show("echo.service", "ActiveState", "Result", "TimeoutStopUSec")
        check(v["ActiveState"] == "inactive" and v["Result"] == "success",
              f"ActiveState={v['ActiveState']} Result={v['Result']} after {took:.1f} s")
        check(4.5 <= took < 10, f"stop took {took:.1f} s, want the 5 s drain")
        left = self.cgroup_pids()
        check(not left, f"processes left in the cgroup: {left}")
        p = self.c.run(["pgrep", "-x", "echod"], check=False)
        check(not p.stdout.strip(), f"echod processes left: {p.stdout.split()}")
        self.n_conns += 1
        return (f"{sent} bytes sent, never read; stop took {took:.1f} s "
                f"(TimeoutStopSec={v['TimeoutStopUSec']}), Result=success")

    def t_restart(self):
        self.reset()
        self.echo_ok("127.0.0.1")
        old = int(self.c.show("echo.service", "MainPID"))
        results = {"ok": 0, "failed": []}
        done = threading.Event()

        def loop():
            i = 0
            while not done.is_set():
                i += 1
                payload = os.urandom(1000)
                try:
                    back = tcp_echo("127.0.0.1" if i % 2 else "::1", payload, timeout=15)
                    if back == payload:
                        results["ok"] += 1
                    else:
                        results["failed"].append(f"#{i}: {len(back)} of 1000 bytes back")
                except OSError as e:
                    results["failed"].append(f"#{i}: {e}")
                time.sleep(0.005)
        th = threading.Thread(target=loop, daemon=True)
        th.start()
        try:
            time.sleep(0.5)
            p = self.c.run(["systemctl", "restart", "echo.service"], timeout=60, check=False)
            check(p.returncode == 0, f"systemctl restart: {p.stderr}")
            time.sleep(1.0)
        finally:
            done.set()
            th.join(30)
        new = int(self.c.show("echo.service", "MainPID"))
        check(new not in (0, old), f"MainPID {old} -> {new}: not restarted")
        check(not results["failed"], f"{len(results['failed'])} failed of "
              f"{results['ok'] + len(results['failed'])}: " + "; ".join(results["failed"][:5]))
        check(results["ok"] >= 10, f"only {results['ok']} connections")
        return f"{results['ok']} connections, 0 failed; MainPID {old} -> {new}"

    def t_watchdog(self):
        self.c.sh("mkdir -p /etc/systemd/system/echo.service.d && "
                  "printf '[Service]\\nWatchdogSec=2s\\n' > /etc/systemd/system/echo.service.d/watchdog.conf")
        try:
            self.reset()
            # as in the README
            self.c.sh("systemctl daemon-reload && systemctl restart echo.service", timeout=60)
            self.echo_ok("127.0.0.1")
            v = self.c.show("echo.service", "MainPID", "NRestarts", "WatchdogUSec")
            check(v["WatchdogUSec"] == "2s", f"WatchdogUSec={v['WatchdogUSec']}")
            pid, restarts = int(v["MainPID"]), int(v["NRestarts"])
            time.sleep(3.5)  # it pings: still the same process after > 1.5 periods
            v = self.c.show("echo.service", "MainPID", "NRestarts")
            check(int(v["MainPID"]) == pid, f"MainPID changed before the hang: {pid} -> {v['MainPID']}")
            since = int(time.time() * 1e6)
            self.c.run(["kill", "-STOP", str(pid)])
            def restarted():
                v = self.c.show("echo.service", "MainPID", "NRestarts", "ActiveState")
                return v if (int(v["MainPID"]) not in (0, pid) and v["ActiveState"] == "active"
                             and int(v["NRestarts"]) == restarts + 1) else None
            v = wait_for("a restart by the watchdog", restarted, 20)
            p = self.c.run(["journalctl", "-u", "echo.service", "--no-pager", "-o", "cat",
                            f"--since=@{since // 1000000}"])
            check("Watchdog timeout" in p.stdout, "no 'Watchdog timeout' in the journal")
            self.echo_ok("::1")
            return f"MainPID {pid} -> {v['MainPID']}, NRestarts={v['NRestarts']}"
        finally:
            self.c.sh("rm -r /etc/systemd/system/echo.service.d && systemctl daemon-reload && "
                      "systemctl stop echo.service", check=False, timeout=60)

    def t_security(self):
        def score(argv, where):
            p = where(argv)
            m = EXPOSURE_RE.search(p.stdout)
            check(m, f"`{' '.join(argv)}`: {p.stdout[-300:]}{p.stderr}")
            return float(m.group(1))
        online = score(["systemd-analyze", "security", "echo.service"], self.c.run)
        offline_inside = score(["systemd-analyze", "security", "--offline=yes",
                                "/lib/systemd/system/echo.service"], self.c.run)
        offline_host = score(["systemd-analyze", "security", "--offline=yes", built_service],
                             lambda a: subprocess.run(a, capture_output=True, text=True, timeout=60))
        check(online == offline_inside == offline_host and online <= 0.2,
              f"online {online}, offline inside {offline_inside}, offline here {offline_host}")
        p = self.c.run(["systemd-analyze", "verify", "echo.socket", "echo.service"], check=False)
        check(p.returncode == 0 and not p.stderr and not p.stdout,
              f"verify of the installed units: {p.stdout}{p.stderr}")
        return f"{online} online = offline; installed units verify clean"

    def t_udp(self):
        self.reset()
        # as in the README
        self.c.sh("mkdir -p /etc/systemd/system/echo.socket.d && "
                  "cp /usr/share/doc/echod/examples/echo-udp.conf "
                  "/etc/systemd/system/echo.socket.d/udp.conf && "
                  "systemctl daemon-reload && systemctl restart echo.socket", timeout=60)
        listen = self.c.show("echo.socket", "Listen")
        check(f"[::]:{PORT} (Datagram)" in listen, f"Listen={listen}")
        for host in ("127.0.0.1", "::1"):
            with socket.socket(family(host), socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                payload = os.urandom(1200)
                s.sendto(payload, (host, PORT))
                try:
                    back, _ = s.recvfrom(65536)
                except socket.timeout:
                    raise Failed(f"no UDP echo from {host} in 5 s")
                check(back == payload, f"UDP {host}: {len(back)} bytes back, different")
        # a privileged source port gets nothing back
        for port in range(1023, 900, -1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                s.close()
        with s:
            s.settimeout(1.5)
            s.sendto(b"loop?", ("127.0.0.1", PORT))
            try:
                back = s.recv(65536)
                raise Failed(f"answered a datagram from port {port}: {back!r}")
            except socket.timeout:
                pass
        text, m = wait_for("StatusText with 2 datagrams echoed, 1 dropped",
                           lambda: (lambda t, m: (t, m) if m and m.group(5) and
                                    int(m.group(5)) >= 2 and int(m.group(6)) >= 1 else None)(
                               *self.status()), 5)
        return f"source port {port} ignored; {text!r}"

    def t_remove(self):
        self.c.run(["apt-get", "remove", "-y", "echod"], timeout=120)
        for unit in ("echo.socket", "echo.service"):
            state = self.c.run(["systemctl", "is-active", unit], check=False).stdout.strip()
            check(state == "inactive", f"{unit} is {state} after removal")
            failed = self.c.run(["systemctl", "is-failed", unit], check=False).stdout.strip()
            check(failed != "failed", f"{unit} failed")
        for host in ("127.0.0.1", "::1"):
            try:
                socket.create_connection((host, PORT), timeout=2).close()
                raise Failed(f"port {PORT} still open on {host}")
            except ConnectionRefusedError:
                pass
        p = self.c.sh("pgrep -x echod; ls /usr/sbin/echod /lib/systemd/system/echo.socket "
                      "/lib/systemd/system/echo.service 2>/dev/null", check=False)
        check(not p.stdout.strip(), f"left behind: {p.stdout.strip()}")
        # The administrator's drop-in (UDP) stays, as it should: its unit shows as not-found.
        p = self.c.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", "echo.*"])
        units = [line.split()[:3] for line in p.stdout.splitlines() if line.strip()]
        check(all(u[1:3] == ["not-found", "inactive"] for u in units), f"units: {units}")
        st = self.c.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", "echod"],
                        check=False).stdout.strip()
        check(st in ("not-installed", "config-files", ""), f"dpkg status {st}")


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
    for tool in ("systemd-nspawn", "nsenter", "dpkg-buildpackage", "ss"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} not found")
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            subprocess.run(["modprobe", "overlay"], capture_output=True)
            with open("/proc/filesystems") as f2:
                if "overlay" not in f2.read():
                    skip_or_fail("no overlayfs")
    if os.path.exists("/run/systemd/system"):
        pass  # fine: the container has its own PID 1
    take_host_lock()
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        print(f"1..1\nnot ok 1 - something already listens on port {PORT}")
        sys.exit(1)
    except OSError:
        pass


def main():
    preflight()
    c = Container()
    t = SystemTest(c)
    # (description, function, later checks need it)
    steps = [
        ("packaging/build-deb builds the .deb", t.t_build, True),
        ("systemd boots in systemd-nspawn", t.t_boot, True),
        ("apt-get install ./echod_*.deb", t.t_install, True),
        ("echo.socket enabled and listening on port 7 (IPv4+IPv6, one socket) after install, "
         "echo.service not started", t.t_socket_after_install, False),
        ("TCP echo on 127.0.0.1:7 and [::1]:7; echo.service started by the first connection",
         t.t_tcp_echo, False),
        ("echo.service runs as a dynamic user, sandboxed", t.t_dynamic_user, False),
        ("TCP_NODELAY on the listening socket and on an accepted connection; the child is "
         "forked with only the mappings it touches", t.t_nodelay,
         False),
        ("systemctl show -p StatusText echo.service shows live counts", t.t_status, False),
        ("journalctl -u echo.service: ready line (notice), one info line per connection",
         t.t_journal, False),
        ("journald records: journalctl -u echo.service ECHOD_END=eof -o json has every field "
         "(peer, port, pid, bytes, unit); MESSAGE_ID= filters; journalctl -x shows the catalog",
         t.t_journal_records, False),
        ("--log-peer network (a drop-in) masks the address in the text and the fields",
         t.t_journal_log_peer, False),
        ("systemctl stop echo.service with 20 clients mid-stream: every byte back, inactive "
         "(not failed), cgroup empty", t.t_stop_draining, False),
        ("the stop is logged: 20 connections ended: stop", t.t_stop_logged, False),
        ("systemctl stop with a client that never reads: 5 s drain, within TimeoutStopSec, "
         "not failed", t.t_stop_drain_timeout, False),
        ("1024 concurrent clients fit in TasksMax; the 1025th waits and is served",
         t.t_max_clients, False),
        (f"TasksMax= is enforced: at TasksMax={TASKS_MAX_LOW} (--max-clients "
         f"{5 * TASKS_MAX_LOW}) fork() fails, echod logs it and pauses, stays active, serves "
         "again", t.t_tasks_max, False),
        ("systemctl restart echo.service under a connect loop: zero failed connections",
         t.t_restart, False),
        ("a SIGSTOPped main process is restarted by the watchdog", t.t_watchdog, False),
        ("systemd-analyze security echo.service inside equals the offline figure",
         t.t_security, False),
        ("UDP drop-in: datagrams echoed, privileged source port ignored", t.t_udp, False),
        ("apt-get remove echod stops and removes it cleanly", t.t_remove, False),
    ]
    sys.exit(run_steps(c, steps, ["echo.service", "echo.socket"]))


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
    return 1 if n_failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the teardown on a timeout
    main()
