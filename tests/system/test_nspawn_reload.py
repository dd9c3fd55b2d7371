#!/usr/bin/env python3
"""An upgrade reloads echod instead of restarting it, under a real systemd, in the container
of nspawn.py (the harness of the nspawn scenarios): two builds of the package whose
versions differ, the first installed, 20 connections that keep echoing and a connect loop,
then the second installed over it. No new connection fails, the 20 go on echoing
byte-exact on the same sockets, MainPID stays, the main process and the children forked
after the upgrade run the new binary (the old children the old, deleted one), the new
image's ready record carries the new version, and `systemctl stop` drains old and new
children alike. A third build whose echo.service differs is installed with a restart: a
reload would keep the old unit's sandbox and limits. A fourth, whose --check refuses the
running image's state version, makes the reload fail: systemd 252's `systemctl reload`
says nothing, and the postinst restarts echo.service. `systemctl restart` still starts
afresh (test_nspawn_stop.py checks it).

usage: test_nspawn_reload.py SOURCE_ROOT BUILD_ROOT BUILT_SERVICE_UNIT"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import nspawn as base  # noqa: E402  (beside this script; reads the same arguments)
from nspawn import (ID_READY, STATUS_RE, ConnectLoop, Container, StreamClient,  # noqa: E402
                    SystemTest, check, tcp_echo, wait_for)

N_OLD = 20  # connections open across the upgrade
N_NEW = 5   # connections opened after it


def project_version(tree):
    with open(os.path.join(tree, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


def newer_than_reload(version):
    """The packages reload from 1.1.0 on (postinst): four test versions at or above it."""
    older = subprocess.run(["dpkg", "--compare-versions", version, "lt", "1.1.0~"]).returncode == 0
    return tuple(f"1.1.0~rt{i}" if older else f"{version}+rt{i}" for i in (1, 2, 3, 4))


class ReloadTest(SystemTest):
    def __init__(self, c):
        super().__init__(c)
        self.debs = {}
        self.versions = ()
        self.old = []
        self.new = []

    def build_one(self, version, unit_note=None, state_version=None):
        """The tree as packaged, with its version set to version (meson and changelog), with
        unit_note a comment added to echo.service (a unit change), and with state_version the
        reload state's version it writes and alone reads (src/handoff.h)."""
        tree = os.path.join(self.c.tmp, f"src-{version}")
        subprocess.run([os.path.join(base.source_root, "packaging", "source-tree"), tree],
                       check=True, timeout=120)
        path = os.path.join(tree, "meson.build")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(re.sub(r"(version\s*:\s*)'[^']+'", rf"\g<1>'{version}'", text, count=1))
        if unit_note:
            with open(os.path.join(tree, "units", "echo.service"), "a") as f:
                f.write(f"# {unit_note}\n")
        if state_version:
            path = os.path.join(tree, "src", "handoff.h")
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(re.sub(r"(#define HANDOFF_VERSION\s+)\d+u", rf"\g<1>{state_version}u", text, count=1))
        path = os.path.join(tree, "packaging", "debian", "changelog")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(f"echod ({version}) unstable; urgency=medium\n\n  * Reload test build.\n\n"
                    f" -- echod developers <echod-devel@lists.example.org>  "
                    f"{time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\n\n" + text)
        out = os.path.join(self.c.tmp, f"deb-{version}")
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck")
        p = subprocess.run([os.path.join(tree, "packaging", "build-deb"), out],
                           capture_output=True, text=True, timeout=900, env=env)
        check(p.returncode == 0, f"build-deb {version} failed:\n" + "\n".join(
            (p.stdout + p.stderr).splitlines()[-30:]))
        debs = glob.glob(os.path.join(out, "echod_*.deb"))
        check(len(debs) == 1, f"expected one echod_*.deb, got {debs}")
        shutil.rmtree(tree, ignore_errors=True)
        return debs[0]

    def t_build_three(self):
        self.versions = newer_than_reload(project_version(base.source_root))
        for v in self.versions[:2]:
            self.debs[v] = self.build_one(v)
        self.debs[self.versions[2]] = self.build_one(self.versions[2], "a unit change")
        self.debs[self.versions[3]] = self.build_one(self.versions[3], "a unit change", state_version=2)
        return ", ".join(os.path.basename(d) for d in self.debs.values())

    def install(self, version):
        srv = os.path.join(self.c.root, "srv")  # the container mounts its own /tmp
        os.makedirs(srv, exist_ok=True)
        shutil.copy(self.debs[version], srv)
        name = os.path.basename(self.debs[version])
        return self.c.sh(f"cd /srv && apt-get install -y --allow-downgrades ./{name}", timeout=180)

    def t_install_first(self):
        self.install(self.versions[0])
        self.echo_ok("127.0.0.1")
        out = self.c.run(["/usr/sbin/echod", "--version"]).stdout.strip()
        check(out == f"echod {self.versions[0]}", f"--version: {out!r}")
        return out

    def ready_records(self):
        return [e for e in self.journal() if e.get("MESSAGE_ID") == ID_READY]

    def exe_of(self, pid):
        """what /proc/PID/exe names, seen from the container: the binary, or " (deleted)"
        after it when an upgrade replaced the file the process runs"""
        p = self.c.run(["readlink", f"/proc/{pid}/exe"], check=False)
        return p.stdout.strip() or None

    def t_upgrade(self):
        self.reset()
        main_pid = int(self.c.show("echo.service", "MainPID"))
        check(main_pid > 0, "echo.service is not running")
        n_ready = len(self.ready_records())
        before_kids = set(self.cgroup_pids()) - {main_pid}
        self.old = [StreamClient("127.0.0.1" if i % 2 else "::1", seed=i) for i in range(N_OLD)]
        old_kids = wait_for(f"{N_OLD} more children", lambda: (
            k if len(k := set(self.cgroup_pids()) - {main_pid} - before_kids) >= N_OLD else None), 30)
        loop = ConnectLoop()
        try:
            time.sleep(1.0)
            p = self.install(self.versions[1])
            output = p.stdout + p.stderr
            ready = wait_for("the new image's ready record", lambda: [
                e for e in self.ready_records()[n_ready:]
                if e.get("ECHOD_VERSION") == self.versions[1]], 60)
            time.sleep(1.0)  # the loop goes on against the new image
        finally:
            served, failures = loop.finish()
        check(not failures, f"{len(failures)} of {served + len(failures)} new connections failed "
              f"during the upgrade: {failures[:5]}")
        check(served >= 20, f"only {served} connections in the loop")
        check(int(self.c.show("echo.service", "MainPID")) == main_pid,
              f"MainPID changed: {main_pid} -> {self.c.show('echo.service', 'MainPID')}\n{output}")
        check(int(ready[0].get("_PID", 0)) == main_pid and ready[0].get("ECHOD_ADOPTED"),
              f"ready record of the new image: {ready[0]}")
        main_exe = self.exe_of(main_pid)
        check(main_exe and main_exe.endswith("/usr/sbin/echod"), f"the main process runs {main_exe!r}, not the new binary")
        old_exes = {self.exe_of(k) for k in old_kids}
        check(all(e and e.endswith("/usr/sbin/echod (deleted)") for e in old_exes),
              f"the old children run {old_exes}: want the old, replaced binary")
        text = self.c.show("echo.service", "StatusText")
        m = STATUS_RE.match(text)
        check(m and int(m.group(1)) >= N_OLD, f"StatusText {text!r}: want at least {N_OLD} active")
        self.new = [StreamClient("127.0.0.1", seed=100 + i) for i in range(N_NEW)]
        new_kids = wait_for(f"{N_NEW} new children", lambda: (
            k if len(k := set(self.cgroup_pids()) - {main_pid} - old_kids - before_kids) >= N_NEW
            else None), 30)
        new_exes = {self.exe_of(k) for k in new_kids}
        check(all(e and e.endswith("/usr/sbin/echod") for e in new_exes), f"the new children run {new_exes}")
        time.sleep(1.0)
        bad = []
        for i, cl in enumerate(self.old + self.new):
            cl.stop_sending.set()
        for i, cl in enumerate(self.old + self.new):
            try:
                wait_for(f"client {i} echoed", lambda cl=cl: len(cl.got) >= len(cl.sent), 30, 0.05)
            except base.Failed:
                pass
            if cl.error or cl.closed.is_set() or bytes(cl.got) != bytes(cl.sent):
                bad.append((i, len(cl.sent), len(cl.got), cl.error))
        check(not bad, f"connections not echoed byte-exact and open: (i, sent, got, error) {bad}")
        return (f"{self.versions[0]} -> {self.versions[1]}: MainPID {main_pid} kept, {served} new "
                f"connections 0 failed, {N_OLD} old connections ({sum(len(c.sent) for c in self.old)} "
                f"bytes) echoed byte-exact, old children on the deleted binary, new ones on the new")

    def t_stop(self):
        clients = self.old + self.new
        check(clients, "no clients from the upgrade step")
        kids_before = set(self.cgroup_pids())
        p = self.c.run(["systemctl", "stop", "echo.service"], timeout=60, check=False)
        check(p.returncode == 0, f"systemctl stop: {p.stderr}")
        for i, cl in enumerate(clients):
            check(cl.closed.wait(15), f"client {i}: no EOF after the stop")
            check(bytes(cl.got) == bytes(cl.sent) and not cl.error,
                  f"client {i}: {len(cl.got)} of {len(cl.sent)} bytes, {cl.error}")
        state = self.c.run(["systemctl", "is-active", "echo.service"], check=False).stdout.strip()
        check(state == "inactive", f"echo.service is {state} after the stop")
        check(not self.cgroup_pids(), f"processes left in the cgroup: {self.cgroup_pids()}")
        left = [k for k in kids_before if os.path.exists(f"/proc/{k}")]
        check(not left, f"processes left: {left}")
        lines = [e["MESSAGE"] for e in self.journal() if "clients draining" in e["MESSAGE"]]
        want = f"stopping: {len(clients)} clients draining"
        check(lines and lines[-1].startswith(want), f"want '{want}', journal has {lines[-1:]}")
        for cl in clients:
            cl.close()
        check(tcp_echo("127.0.0.1", b"again") == b"again", "the socket does not start echod again afterwards")
        return f"{want}: each got every byte back, then EOF; cgroup empty"

    def t_unit_change_restarts(self):
        """An upgrade whose echo.service differs restarts: a reload would keep the old unit's
        sandbox and limits. Still no new connection fails; the old ones are drained."""
        self.reset()
        self.echo_ok("127.0.0.1")
        main_pid = int(self.c.show("echo.service", "MainPID"))
        held = StreamClient("127.0.0.1", seed=999)
        time.sleep(0.5)
        held.stop_sending.set()
        wait_for("the held client echoed", lambda: len(held.got) >= len(held.sent), 30, 0.05)
        loop = ConnectLoop()
        try:
            time.sleep(0.5)
            self.install(self.versions[2])
            wait_for("a new MainPID", lambda: int(self.c.show("echo.service", "MainPID") or 0) not in
                     (0, main_pid) or None, 60)
            time.sleep(0.5)
        finally:
            served, failures = loop.finish()
        new_pid = int(self.c.show("echo.service", "MainPID"))
        check(not failures, f"{len(failures)} of {served + len(failures)} new connections failed: "
              f"{failures[:5]}")
        check(held.closed.wait(15) and bytes(held.got) == bytes(held.sent),
              f"the connection open across the restart was drained: {len(held.got)} of "
              f"{len(held.sent)} bytes, closed={held.closed.is_set()}")
        held.close()
        out = self.c.run(["/usr/sbin/echod", "--version"]).stdout.strip()
        check(out == f"echod {self.versions[2]}", f"--version: {out!r}")
        return f"MainPID {main_pid} -> {new_pid} (restarted), {served} new connections 0 failed"

    def t_failed_reload_restarts(self):
        """An upgrade whose reload fails (here the new binary cannot read the running one's
        state, so its --check refuses): systemctl reload returns 0 on systemd 252, and the
        postinst finds the old, deleted binary still serving and restarts echo.service."""
        self.reset()
        self.echo_ok("127.0.0.1")
        main_pid = int(self.c.show("echo.service", "MainPID"))
        p = self.install(self.versions[3])
        output = p.stdout + p.stderr
        new_pid = int(self.c.show("echo.service", "MainPID") or 0)
        check(new_pid not in (0, main_pid), f"MainPID {main_pid} -> {new_pid}: not restarted\n{output[-2000:]}")
        check("restarting echo.service" in output, f"the postinst does not say it restarts:\n{output[-2000:]}")
        msgs = [e.get("MESSAGE", "") for e in self.journal()]
        failed = [m for m in msgs if m.startswith("Reload failed")]
        check(failed and "--check exited with status 1" in failed[-1] and any(
              m.startswith("Check failed: the running echod hands over a reload state of version 1,")
              for m in msgs), f"the journal's reload failure: {failed[-1:]}")
        exe = self.exe_of(new_pid)
        check(exe and exe.endswith("/usr/sbin/echod"), f"the new main process runs {exe!r}")
        check(tcp_echo("127.0.0.1", b"after") == b"after", "echod does not echo after the restart")
        return f"reload failed ({failed[-1][-60:]}), MainPID {main_pid} -> {new_pid} (restarted)"


def main():
    base.preflight()
    c = Container()
    t = ReloadTest(c)
    steps = [
        ("four builds of the .deb whose versions differ, the third and fourth with a changed "
         "echo.service, the fourth with another state version",
         t.t_build_three, True),
        ("systemd boots in systemd-nspawn", t.t_boot, True),
        ("apt-get install the first; it echoes", t.t_install_first, True),
        (f"apt-get install the second under a connect loop with {N_OLD} connections echoing: "
         "0 failed, the same MainPID runs the new binary (ready record with its version), "
         f"the {N_OLD} echo byte-exact on the same sockets, new ones are served by the new "
         "binary", t.t_upgrade, True),
        ("systemctl stop drains the old and the new children alike", t.t_stop, False),
        ("an upgrade that changes echo.service restarts it (drains), 0 failed new connections",
         t.t_unit_change_restarts, False),
        ("an upgrade whose reload fails (the new binary cannot read the state) is restarted by the "
         "postinst", t.t_failed_reload_restarts, False),
    ]
    sys.exit(base.run_steps(c, steps, ["echo.service", "echo.socket"]))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the teardown on a timeout
    main()
