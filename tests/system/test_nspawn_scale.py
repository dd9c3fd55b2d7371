#!/usr/bin/env python3
"""The README's *Scaling out* under a real systemd, on the harness nspawn.py: the access-list drop-in drops a source it does not list
and lets the listed ones through, and two echo@ instances share port 7 (SO_REUSEPORT), both
serve, and taking one out under a connect loop loses no connection. The commands are the
README's, and the test checks that the README still says them.

The access list needs cgroup BPF in the container. systemd-nspawn's default system-call
filter refuses bpf() (systemd then logs "Can't load kernel CGROUP SKB BPF program, BPF
firewalling is not supported: Operation not permitted" and the list does nothing), so this
container is booted with --system-call-filter=bpf. If systemd still cannot attach the
programs, that step fails under ECHOD_SYSTEM_TESTS_REQUIRED=1 or CI=true and skips with the
reason elsewhere; it never passes without a firewall.

usage: test_nspawn_scale.py SOURCE_ROOT BUILD_ROOT BUILT_SERVICE_UNIT"""

import os
import socket
import subprocess
import time

import nspawn as base  # noqa: E402  (beside this script; reads the same arguments)
from nspawn import (CONN_RE, PORT, STATUS_RE, ConnectLoop, Container, Failed, Skipped,  # noqa: E402
                    SystemTest, check, family, wait_for)

README = os.path.join(base.source_root, "README.md")

ACCESS_ON = """\
mkdir -p /etc/systemd/system/echo.socket.d
cp /usr/share/doc/echod/examples/echo-access.conf /etc/systemd/system/echo.socket.d/access.conf
systemctl daemon-reload
systemctl restart echo.socket
"""
ACCESS_OFF = """\
rm /etc/systemd/system/echo.socket.d/access.conf
systemctl daemon-reload
systemctl restart echo.socket
"""
INSTANCES_ON = """\
cp /usr/share/doc/echod/examples/echo@.socket /usr/share/doc/echod/examples/echo@.service \\
    /etc/systemd/system/
systemctl daemon-reload
systemctl disable --now echo.socket
systemctl enable --now echo@1.socket echo@2.socket
"""
INSTANCE_OUT = """\
sysctl -w net.ipv4.tcp_migrate_req=1
systemctl stop echo@1.socket
systemctl stop echo@1.service
"""
FIREWALL_OFF = "does not support BPF/cgroup firewalling"
MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


def migrate_count():
    """TcpExt TCPMigrateReqSuccess of this network namespace (the container's too)"""
    with open("/proc/net/netstat") as f:
        rows = [line.split() for line in f if line.startswith("TcpExt:")]
    return int(dict(zip(rows[0], rows[1])).get("TCPMigrateReqSuccess", 0))


def in_readme(commands):
    """commands appear in README.md as written (an indented block, four spaces)"""
    with open(README) as f:
        text = f.read()
    block = "".join("    " + line + "\n" for line in commands.splitlines())
    check(block in text, "README.md no longer shows these commands:\n" + commands)


def no_echo_from(source, host="127.0.0.1", timeout=3.0):
    """A client bound to source gets nothing back: its connection is not accepted (timeout,
    reset or refused), or accepted and never answered. Returns what happened."""
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        try:
            s.connect((host, PORT))
        except (socket.timeout, ConnectionError) as e:
            return f"connect from {source}: {type(e).__name__}"
        try:
            s.sendall(b"denied?")
            back = s.recv(64)
        except (socket.timeout, ConnectionError) as e:
            return f"connected from {source}, no echo: {type(e).__name__}"
        raise Failed(f"{source} was answered: {back!r}")


def echo_from(source, host="127.0.0.1", n=100):
    payload = os.urandom(n)
    with socket.socket(family(host), socket.SOCK_STREAM) as s:
        s.bind((source, 0))
        s.settimeout(10)
        s.connect((host, PORT))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        back = b""
        while chunk := s.recv(65536):
            back += chunk
    check(back == payload, f"from {source}: {len(back)} of {n} bytes back")


class ScaleTest(SystemTest):
    def conn_lines(self, unit):
        """(_SYSTEMD_UNIT, peer address) of each per-connection line in unit's journal"""
        return [(e.get("_SYSTEMD_UNIT"), CONN_RE.search(e["MESSAGE"]).group(1))
                for e in self.journal(unit=unit) if CONN_RE.search(e["MESSAGE"])]

    def ready_pids(self, unit):
        """_PID of each ready line in unit's journal: the main process logs it"""
        return [int(e["_PID"]) for e in self.journal(unit=unit)
                if e["MESSAGE"].startswith("ready: ")]

    def served(self, unit):
        m = STATUS_RE.match(self.c.show(unit, "StatusText"))
        return int(m.group(3)) if m else None

    def firewall_note(self):
        """why systemd in the container cannot attach IP access lists, or "" if it can"""
        self.c.run(["systemd-run", "--unit=echod-bpf-probe", "-p", "IPAccounting=yes",
                    "sleep", "60"])
        try:
            bytes_in = self.c.show("echod-bpf-probe.service", "IPIngressBytes")
        finally:
            self.c.run(["systemctl", "stop", "echod-bpf-probe.service"], check=False)
        if bytes_in.isdigit():
            return ""
        # systemd says it once, at boot, before journald runs: on the console if at all
        with open(self.c.log_path, errors="replace") as f:
            said = [line.strip() for line in f if FIREWALL_OFF in line]
        return (f"no cgroup BPF in the container (a transient unit's IPIngressBytes="
                f"{bytes_in!r}): " + (said[0] if said else "does systemd-nspawn's system-call "
                                      "filter refuse bpf()? (--system-call-filter=bpf)"))

    # --- access control
    def t_access(self):
        in_readme(ACCESS_ON)
        in_readme(ACCESS_OFF)
        self.reset()
        # Without the drop-in every source is served: echo.service's own IPAddressDeny=any
        # does not filter the sockets it is passed.
        echo_from("127.0.0.2")
        note = self.firewall_note()
        if note:
            if base.required:
                raise Failed(note)
            raise Skipped(note)
        self.c.sh("set -e\n" + ACCESS_ON, timeout=60)
        v = self.c.show("echo.socket", "ActiveState", "IPAddressAllow", "IPAddressDeny")
        check(v["ActiveState"] == "active", f"echo.socket is {v['ActiveState']}")
        check("127.0.0.1/32" in v["IPAddressAllow"] and "::1/128" in v["IPAddressAllow"],
              f"IPAddressAllow={v['IPAddressAllow']}")
        echo_from("127.0.0.1")
        echo_from("::1", host="::1")
        denied = no_echo_from("127.0.0.2")
        echo_from("127.0.0.1")  # the denied attempt leaves the service serving
        peers = [peer for _, peer in self.conn_lines("echo.service")]
        check("127.0.0.2" in peers, f"the connection before the drop-in is not logged: {peers}")
        self.c.sh("set -e\n" + ACCESS_OFF, timeout=60)
        echo_from("127.0.0.2")
        return f"{denied}; 127.0.0.1 and ::1 echoed; 127.0.0.2 echoed again without it"

    # --- several instances
    def t_instances(self):
        in_readme(INSTANCES_ON)
        self.reset()
        self.c.sh("set -e\n" + INSTANCES_ON, timeout=60)
        for unit in ("echo.socket", "echo.service"):
            state = self.c.run(["systemctl", "is-active", unit], check=False).stdout.strip()
            check(state == "inactive", f"{unit} is {state}")
        for n in (1, 2):
            v = self.c.show(f"echo@{n}.socket", "ActiveState", "Listen", "ReusePort")
            check(v == {"ActiveState": "active", "Listen": f"[::]:{PORT} (Stream)",
                        "ReusePort": "yes"}, f"echo@{n}.socket: {v}")
        p = subprocess.run(["ss", "-Hltn", f"sport = :{PORT}"], capture_output=True, text=True,
                           timeout=10)
        listeners = [line.split()[3] for line in p.stdout.splitlines() if line.strip()]
        check(listeners == [f"*:{PORT}"] * 2, f"listeners on port {PORT}: {listeners}")
        n_conns = 40
        for _ in range(n_conns):
            self.echo_ok("127.0.0.1", 100)
        main_pids = {}
        for n in (1, 2):
            v = self.c.show(f"echo@{n}.service", "ActiveState", "MainPID", "TriggeredBy")
            check(v["ActiveState"] == "active" and v["TriggeredBy"] == f"echo@{n}.socket",
                  f"echo@{n}.service: {v} after {n_conns} connections")
            main_pids[n] = int(v["MainPID"])
        check(main_pids[1] != main_pids[2] and 0 not in main_pids.values(),
              f"MainPIDs {main_pids}")
        lines = wait_for(f"{n_conns} connection lines over both journals", lambda: (
            lambda ls: ls if sum(len(x) for x in ls.values()) >= n_conns else None)(
            {n: self.conn_lines(f"echo@{n}.service") for n in (1, 2)}), 15)
        for n in (1, 2):
            ready = self.ready_pids(f"echo@{n}.service")
            check(ready == [main_pids[n]], f"echo@{n}.service: ready lines from {ready}, "
                  f"its MainPID is {main_pids[n]}")
            units = {unit for unit, _ in lines[n]}
            check(lines[n] and units == {f"echo@{n}.service"},
                  f"echo@{n}.service's connection lines come from {units}")
        want = {n: len(lines[n]) for n in (1, 2)}
        served = wait_for(f"StatusText of each instance to count its own {want}", lambda: (
            lambda got: got if got == want else None)(
            {n: self.served(f"echo@{n}.service") for n in (1, 2)}), 10)
        self.main_pids = main_pids
        return (f"MainPIDs {main_pids[1]} and {main_pids[2]}; of {n_conns} connections "
                f"{served[1]} and {served[2]} (per-instance StatusText and journal)")

    def active(self, unit):
        m = STATUS_RE.match(self.c.show(unit, "StatusText"))
        return int(m.group(1)) if m else 0

    def hold(self, n, tries=12):
        """Clients that send and never read, until one is on echo@n: it keeps that
        instance's drain going until --drain-timeout (5 s). Returns them all (close them)."""
        held = []
        for _ in range(tries):
            s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            held.append(s)
            s.setblocking(False)
            for _ in range(1024):  # until its buffers and the child's are full
                try:
                    s.send(b"x" * 65536)
                except BlockingIOError:
                    break
            try:
                wait_for(f"a held client on echo@{n}", lambda: self.active(f"echo@{n}.service")
                         >= 1, 2)
                return held
            except Failed:
                pass
        for s in held:
            s.close()
        raise Failed(f"none of {tries} held clients landed on echo@{n}")

    def t_instance_out(self):
        in_readme(INSTANCE_OUT)
        if not os.path.exists(MIGRATE_REQ):
            note = f"no {MIGRATE_REQ} (Linux < 5.14)"
            if base.required:
                raise Failed(note)
            raise Skipped(note)
        self.reset()
        with open(MIGRATE_REQ) as f:
            saved = f.read().strip()
        migrated = migrate_count()
        before = {n: len(self.conn_lines(f"echo@{n}.service")) for n in (1, 2)}
        held = self.hold(1)
        loop = ConnectLoop()
        try:
            time.sleep(1)
            start = time.monotonic()
            # nspawn keeps /proc/sys read-only in the container, which shares this network
            # namespace: the sysctl line runs here, the systemctl lines in there.
            sysctl_line, stop_lines = INSTANCE_OUT.split("\n", 1)
            subprocess.run(sysctl_line.split(), check=True, capture_output=True, timeout=10)
            self.c.sh("set -e\n" + stop_lines, timeout=60)
            stop_s = time.monotonic() - start
            time.sleep(1)
        finally:
            served, failures = loop.finish()
            with open(MIGRATE_REQ, "w") as f:  # the host's network namespace: put it back
                f.write(saved)
            for s in held:
                s.close()
        migrated = migrate_count() - migrated
        stopping = [e["MESSAGE"] for e in self.journal(unit="echo@1.service")
                    if e["MESSAGE"].startswith("stop")]
        check(not failures, f"{len(failures)} of {served + len(failures)} connections "
              f"failed while echo@1 was taken out: {failures[:5]}; echo@1: {stopping}; "
              f"{migrated} migrated")
        check(served >= 20, f"only {served} connections in the loop")
        check(stop_s >= 4, f"the stop took {stop_s:.1f} s: the held client did not keep "
              "echo@1 draining, so nothing waited in its socket")
        check(migrated > 0, "no connection was moved to echo@2's socket (TCPMigrateReqSuccess)")
        for unit in ("echo@1.socket", "echo@1.service"):
            state = self.c.run(["systemctl", "is-active", unit], check=False).stdout.strip()
            check(state == "inactive", f"{unit} is {state}, want inactive (not failed)")
        v = self.c.show("echo@2.service", "ActiveState", "MainPID")
        check(v["ActiveState"] == "active" and int(v["MainPID"]) == self.main_pids[2],
              f"echo@2.service: {v}, MainPID was {self.main_pids[2]}")
        for _ in range(10):
            self.echo_ok("127.0.0.1", 100)
        after = wait_for("the connection lines of the loop", lambda: (
            lambda a: a if sum(a.values()) - sum(before.values()) >= served + 10 else None)(
            {n: len(self.conn_lines(f"echo@{n}.service")) for n in (1, 2)}), 15)
        return (f"{served} connections, 0 failed, {migrated} moved from echo@1's socket to "
                f"echo@2's; the stop took {stop_s:.1f} s (a held client drained); lines: "
                f"echo@1 +{after[1] - before[1]}, echo@2 +{after[2] - before[2]}")


if __name__ == "__main__":
    t = ScaleTest(Container(nspawn_args=["--system-call-filter=bpf"]))
    base.main(t, t.install_steps(" (with --system-call-filter=bpf)") + [
        ("access-list drop-in (README): 127.0.0.2 gets no echo, 127.0.0.1 and ::1 do; "
         "without it 127.0.0.2 does", t.t_access, False),
        ("two instances (README): echo@1 and echo@2 share port 7, both serve, per-instance "
         "journal and StatusText", t.t_instances, True),
        ("taking echo@1 out (README) under a connect loop: 0 failed connections, echo@2 "
         "serves on", t.t_instance_out, False),
    ], ["echo.socket", "echo.service", "echo@1.socket", "echo@1.service", "echo@2.socket",
        "echo@2.service"])
