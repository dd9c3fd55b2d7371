#!/usr/bin/env python3
"""What the packages do after the reload of an upgrade (systemd 252's `systemctl reload`
returns once the signal is sent, so its exit status says nothing): the .deb's postinst and
the .rpm's %posttrans wait while the status says "Reloading", then restart echo.service if
its status ends in "reload failed" or its main process runs a deleted binary, and say so on
stderr; otherwise they leave it alone. Their shell code runs here against a stand-in
systemctl (and deb-systemd-invoke); the "deleted binary" is a copy of sleep, removed.

usage: test_reload_outcome.py SOURCE_ROOT"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from tap import finish, report  # noqa: E402  (beside this script)

root = sys.argv[1]

STUB = """#!/bin/sh
# systemctl / deb-systemd-invoke stand-in: answers from files in $FAKE, logs actions.
case "$*" in
*"-p StatusText"*)
	n=$(cat "$FAKE/reloading" 2>/dev/null || echo 0)
	if [ "$n" -gt 0 ]; then echo $((n - 1)) >"$FAKE/reloading"; echo Reloading; else cat "$FAKE/status"; fi ;;
*"-p MainPID"*) cat "$FAKE/pid" ;;
*is-active*) cat "$FAKE/active" ;;
*) echo "$(basename "$0") $*" >>"$FAKE/actions" ;;
esac
"""


def deb_snippet():
    with open(os.path.join(root, "packaging", "debian", "echod.postinst")) as f:
        text = f.read()
    start = text.find("reload_outcome() {")
    end = text.find("\n}\n", start)
    return text[start:end + 3] + "reload_outcome\n" if start >= 0 and end >= 0 else "exit 99\n"


def rpm_snippet():
    with open(os.path.join(root, "packaging", "rpm", "echod.spec")) as f:
        text = f.read()
    post = text[text.find("%posttrans"):]
    start = post.find("        i=0\n")
    end = post.find("    fi\n    rm -rf /run/echod-upgrade")
    return post[start:end] if start >= 0 and end > start else "exit 99\n"


def run(snippet, fake, status, pid, active="active", reloading=0):
    for name, value in (("status", status), ("pid", str(pid)), ("active", active),
                        ("reloading", str(reloading))):
        with open(os.path.join(fake, name), "w") as f:
            f.write(value + "\n")
    with open(os.path.join(fake, "actions"), "w"):
        pass
    env = dict(os.environ, FAKE=fake, PATH=fake + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
    start = time.monotonic()
    p = subprocess.run(["sh", "-e", "-c", snippet], env=env, capture_output=True, text=True, timeout=60)
    with open(os.path.join(fake, "actions")) as f:
        return p, f.read(), time.monotonic() - start


print("1..10")
tmp = tempfile.mkdtemp(prefix="echod-outcome-")
sleeper = None
try:
    for tool in ("systemctl", "deb-systemd-invoke"):
        with open(os.path.join(tmp, tool), "w") as f:
            f.write(STUB)
        os.chmod(os.path.join(tmp, tool), 0o755)
    gone = os.path.join(tmp, "echod-old")
    shutil.copy2(shutil.which("sleep"), gone)
    sleeper = subprocess.Popen([gone, "60"])
    os.unlink(gone)  # as an upgrade replaces the binary: /proc/PID/exe ends in " (deleted)"
    counts = "3/1024 clients active, 10 served, 0 refused"
    for kind, snippet, restart in (("deb", deb_snippet(), "deb-systemd-invoke try-restart echo.service"),
                                   ("rpm", rpm_snippet(), "systemctl try-restart echo.service")):
        p, actions, _ = run(snippet, tmp, counts + "; reload failed", os.getpid())
        report(p.returncode == 0 and restart in actions and "restarting echo.service" in p.stderr,
               f"{kind}: a status ending in 'reload failed': restarted, said on stderr",
               f"{p.returncode} {actions!r} {p.stderr!r}")
        p, actions, _ = run(snippet, tmp, counts, sleeper.pid)
        report(p.returncode == 0 and restart in actions and "restarting" in p.stderr,
               f"{kind}: the main process runs a deleted binary: restarted", f"{p.returncode} {actions!r} {p.stderr!r}")
        p, actions, took = run(snippet, tmp, counts, os.getpid(), reloading=2)
        report(p.returncode == 0 and actions == "" and p.stderr == "" and took >= 1.5,
               f"{kind}: 'Reloading' is waited for, then a reload that took the new binary is left alone "
               f"({took:.1f} s)", f"{p.returncode} {actions!r} {p.stderr!r}")
        p, actions, _ = run(snippet, tmp, counts + "; reload failed", os.getpid(), active="inactive")
        report(p.returncode == 0 and actions == "", f"{kind}: an inactive service is not started",
               f"{p.returncode} {actions!r} {p.stderr!r}")
        p, actions, took = run(snippet, tmp, counts, os.getpid(), reloading=1000)
        report(p.returncode == 0 and 15 <= took < 40, f"{kind}: the wait for 'Reloading' is bounded ({took:.0f} s)",
               f"{p.returncode} {actions!r} {p.stderr!r}")
finally:
    if sleeper:
        sleeper.kill()
        sleeper.wait()
    shutil.rmtree(tmp, ignore_errors=True)
finish()
