#!/usr/bin/env python3
"""The README's *Operate*, stopping and restarting, under a real systemd (nspawn.py):
systemctl stop with 20 clients mid-stream gives every byte back, ends inactive (not
failed) with an empty cgroup and logs each connection as stopped; a client that never reads
is drained for 5 s, within TimeoutStopSec; systemctl restart under a connect loop loses no
connection; the watchdog restarts a SIGSTOPped main process.

usage: test_nspawn_stop.py SOURCE_ROOT BUILD_ROOT BUILT_SERVICE_UNIT"""

import os
import socket
import threading
import time

import nspawn  # noqa: E402  (beside this script; reads the same arguments)
from nspawn import CONN_RE, PORT, StreamClient, check, tcp_echo, wait_for  # noqa: E402



class StopTest(nspawn.SystemTest):
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


if __name__ == "__main__":
    t = StopTest(nspawn.Container())
    nspawn.main(t, t.install_steps() + [
        ("systemctl stop echo.service with 20 clients mid-stream: every byte back, inactive "
         "(not failed), cgroup empty", t.t_stop_draining, False),
        ("the stop is logged: 20 connections ended: stop", t.t_stop_logged, False),
        ("systemctl stop with a client that never reads: 5 s drain, within TimeoutStopSec, "
         "not failed", t.t_stop_drain_timeout, False),
        ("systemctl restart echo.service under a connect loop: zero failed connections",
         t.t_restart, False),
        ("a SIGSTOPped main process is restarted by the watchdog", t.t_watchdog, False),
    ])
