#!/usr/bin/env python3
"""The README's *Operate*, the client limit and TasksMax=, under a real systemd (nspawn.py):
1024 concurrent clients fit in TasksMax= and the 1025th waits in the backlog and is served;
with a drop-in that sets TasksMax= below --max-clients, the kernel enforces it: fork()
fails, echod logs it once and pauses, stays active, and serves again when clients leave.
TasksMax= needs the pids controller in the container: on a cgroup v1 host the container
gets a pids cgroup of its own (nspawn.Container.make_pids_cgroup).

usage: test_nspawn_limits.py SOURCE_ROOT BUILD_ROOT BUILT_SERVICE_UNIT"""

import re
import socket
import subprocess
import threading
import time

import nspawn  # noqa: E402  (beside this script; reads the same arguments)
from nspawn import PORT, Failed, Skipped, check, wait_for  # noqa: E402

# t_tasks_max: a TasksMax= far below --max-clients, set by a runtime drop-in
TASKS_MAX_LOW = 20
TASKS_DROPIN_DIR = "/run/systemd/system/echo.service.d"
FORK_WARNING = ("fork() failed: Resource temporarily unavailable; pausing new connections, "
                "retrying with a growing delay up to 1 s")
SERVING_AGAIN_RE = re.compile(r"^Serving again after (\d+) failed attempts?$")


class LimitsTest(nspawn.SystemTest):
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
                raise Failed(why) if nspawn.required else Skipped(why)
            check(pids_max == str(limit), f"pids.max={pids_max}, TasksMax={limit}")
            wait_for(f"the ready line with max {max_clients} clients", lambda: [
                e for e in self.journal(since) if e["MESSAGE"].startswith("ready: ")
                and re.search(rf"; max {max_clients} clients(;|$)", e["MESSAGE"])], 5)
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


if __name__ == "__main__":
    t = LimitsTest(nspawn.Container())
    nspawn.main(t, t.install_steps() + [
        ("1024 concurrent clients fit in TasksMax; the 1025th waits and is served",
         t.t_max_clients, False),
        (f"TasksMax= is enforced: at TasksMax={TASKS_MAX_LOW} (--max-clients "
         f"{5 * TASKS_MAX_LOW}) fork() fails, echod logs it and pauses, stays active, serves "
         "again", t.t_tasks_max, False),
    ])
