#!/usr/bin/env python3
"""The README's *Install* and *Under systemd*, under a real systemd (nspawn.py): the .deb
installs with apt-get, enables and starts echo.socket (port 7, IPv4 and IPv6 on one
socket) without starting echo.service, which the first connection starts; the service runs
as a dynamic user, sandboxed, with TCP_NODELAY on its sockets and children forked with only
the mappings they touch; systemd-analyze security gives the figure the README states and
the units verify clean; apt-get remove takes it all away.

usage: test_nspawn_install.py SOURCE_ROOT BUILD_ROOT BUILT_SERVICE_UNIT"""

import os
import re
import socket
import subprocess
import time

import nspawn  # noqa: E402  (beside this script; reads the same arguments)
from nspawn import (PORT, Failed, all_pids, check, find_fd, tcp_echo, tcp_inodes, tcp_nodelay_of,  # noqa: E402
                    wait_for)

DYNAMIC_UID_MIN, DYNAMIC_UID_MAX = 61184, 65519
EXPOSURE_RE = re.compile(r"Overall exposure level for \S+: ([0-9.]+)")


class InstallTest(nspawn.SystemTest):
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
        self.socat_hello()  # the README's example

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
            # mappings it touches (see docs/design.md, "The fork-cost design")
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

    def t_security(self):
        def score(argv, where):
            p = where(argv)
            m = EXPOSURE_RE.search(p.stdout)
            check(m, f"`{' '.join(argv)}`: {p.stdout[-300:]}{p.stderr}")
            return float(m.group(1))
        online = score(["systemd-analyze", "security", "echo.service"], self.c.run)
        offline_inside = score(["systemd-analyze", "security", "--offline=yes",
                                "/lib/systemd/system/echo.service"], self.c.run)
        offline_host = score(["systemd-analyze", "security", "--offline=yes", nspawn.built_service],
                             lambda a: subprocess.run(a, capture_output=True, text=True, timeout=60))
        check(online == offline_inside == offline_host and online <= 0.2,
              f"online {online}, offline inside {offline_inside}, offline here {offline_host}")
        p = self.c.run(["systemd-analyze", "verify", "echo.socket", "echo.service"], check=False)
        check(p.returncode == 0 and not p.stderr and not p.stdout,
              f"verify of the installed units: {p.stdout}{p.stderr}")
        return f"{online} online = offline; installed units verify clean"

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


if __name__ == "__main__":
    t = InstallTest(nspawn.Container())
    nspawn.main(t, t.install_steps() + [
        ("echo.socket enabled and listening on port 7 (IPv4+IPv6, one socket) after install, "
         "echo.service not started", t.t_socket_after_install, False),
        ("TCP echo on 127.0.0.1:7 and [::1]:7; echo.service started by the first connection",
         t.t_tcp_echo, False),
        ("echo.service runs as a dynamic user, sandboxed", t.t_dynamic_user, False),
        ("TCP_NODELAY on the listening socket and on an accepted connection; the child is "
         "forked with only the mappings it touches", t.t_nodelay, False),
        ("systemd-analyze security echo.service inside equals the offline figure",
         t.t_security, False),
        ("apt-get remove echod stops and removes it cleanly", t.t_remove, False),
    ])
