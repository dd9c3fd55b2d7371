#!/usr/bin/env python3
"""The unit files as built: `systemd-analyze verify` says nothing (it exits 0 even on unknown
keys, so any output is a failure) and `systemd-analyze security --offline=yes` scores the
service at 0.2 or better; the same for the echo@ template pair, whose [Service] must stay
echo.service's line for line and whose [Socket] echo.socket's plus ReusePort=yes; the
example drop-ins verify beside the units they are for. Needs systemd-analyze, no root and
no running systemd.

usage: test_units.py BUILT_SOCKET BUILT_SERVICE ECHOD_BINARY MAN_PAGE BUILT_TEMPLATE_SERVICE"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from tap import finish, report  # noqa: E402  (beside this script)

MAX_EXPOSURE = 0.2
EXPOSURE_RE = re.compile(r"Overall exposure level for (\S+): ([0-9.]+)")

socket_unit, service_unit, echod, man_page, template_service_unit = sys.argv[1:6]
units_src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "units")

analyze = shutil.which("systemd-analyze")
if analyze is None:
    print("1..0 # SKIP systemd-analyze not found")
    sys.exit(0)

def run(argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def exposure(argv):
    p = run(argv)
    m = EXPOSURE_RE.search(p.stdout)
    return p, (float(m.group(2)) if m else None)


def section(path, name):
    """the lines of [name] in a unit file, without comments and blank lines"""
    lines, inside = [], False
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                inside = line == f"[{name}]"
            elif inside and line and not line.startswith("#"):
                lines.append(line)
    return lines


def verify(name, paths, env, man_opt):
    p = run([analyze, "verify", *man_opt, *paths], env=env)
    report(p.returncode == 0 and not p.stderr and not p.stdout, name,
           f"exit {p.returncode}\n{p.stdout}{p.stderr}")


def copy_dropin(name, unit_dir, as_name):
    os.makedirs(unit_dir, exist_ok=True)
    shutil.copy(os.path.join(units_src, name), os.path.join(unit_dir, as_name))


print("1..12")

with tempfile.TemporaryDirectory(prefix="echod-units-") as tmp:
    # A copy whose ExecStart= names the binary just built (verify checks that it is
    # executable) and a MANPATH holding echod(8) (verify runs `man` on Documentation=).
    template_socket_unit = os.path.join(units_src, "echo@.socket")
    for src in (socket_unit, service_unit, template_socket_unit, template_service_unit):
        with open(src) as f:
            text = f.read()
        text = re.sub(r"^ExecStart=\S*/echod", "ExecStart=" + os.path.abspath(echod), text,
                      flags=re.M)
        with open(os.path.join(tmp, os.path.basename(src)), "w") as f:
            f.write(text)
    os.makedirs(os.path.join(tmp, "man", "man8"))
    shutil.copy(man_page, os.path.join(tmp, "man", "man8", "echod.8"))
    env = dict(os.environ, MANPATH=os.path.join(tmp, "man"), SYSTEMD_LOG_LEVEL="info")
    man_opt = []
    if shutil.which("man") is None:
        man_opt = ["--man=no"]
    units = [os.path.join(tmp, "echo.socket"), os.path.join(tmp, "echo.service")]

    p = run([analyze, "verify", *man_opt, *units], env=env)
    report(p.returncode == 0 and not p.stderr and not p.stdout,
           "systemd-analyze verify echo.socket echo.service prints nothing",
           f"exit {p.returncode}\n{p.stdout}{p.stderr}" + ("(man not found: --man=no)" if man_opt else ""))

    # The UDP drop-in, as documented: echo.socket.d/ beside the unit.
    dropin_dir = os.path.join(tmp, "echo.socket.d")
    os.makedirs(dropin_dir)
    shutil.copy(os.path.join(units_src, "echo-udp.conf"), os.path.join(dropin_dir, "udp.conf"))
    p = run([analyze, "verify", *man_opt, *units], env=env)
    report(p.returncode == 0 and not p.stderr and not p.stdout,
           "systemd-analyze verify with the UDP drop-in prints nothing",
           f"exit {p.returncode}\n{p.stdout}{p.stderr}")

    # The access list, as documented: echo.socket.d/access.conf.
    copy_dropin("echo-access.conf", dropin_dir, "access.conf")
    verify("systemd-analyze verify with the access-list drop-in prints nothing",
           units, env, man_opt)

    templates = [os.path.join(tmp, "echo@.socket"), os.path.join(tmp, "echo@.service")]
    verify("systemd-analyze verify echo@.socket echo@.service prints nothing",
           templates, env, man_opt)
    copy_dropin("echo-access.conf", os.path.join(tmp, "echo@.socket.d"), "access.conf")
    verify("systemd-analyze verify echo@.socket with the access-list drop-in prints nothing",
           templates, env, man_opt)

# The template pair stays in step with the single units: the same sandbox and limits, the
# same socket options plus SO_REUSEPORT, and its own socket wherever echo.socket is named.
single, template = section(service_unit, "Service"), section(template_service_unit, "Service")
report(single == template, "echo@.service's [Service] is echo.service's, line for line",
       "\n".join([f"only in echo.service: {x}" for x in single if x not in template] +
                 [f"only in echo@.service: {x}" for x in template if x not in single] +
                 ["same lines, another order"]))
single = section(socket_unit, "Socket")
template = section(os.path.join(units_src, "echo@.socket"), "Socket")
report(sorted(single + ["ReusePort=yes"]) == sorted(template),
       "echo@.socket's [Socket] is echo.socket's plus ReusePort=yes",
       f"echo.socket: {single}\necho@.socket: {template}")
names = [line for name in ("Unit", "Install") for line in section(template_service_unit, name)
         if re.search(r"\.(socket|service)\b", line)]
report(names == ["Wants=echo@%i.socket", "After=echo@%i.socket", "Also=echo@%i.socket"],
       "echo@.service names its own instance's socket (Wants=, After=, Also=)",
       f"lines naming a unit: {names}")

p, built = exposure([analyze, "security", "--offline=yes", service_unit])
report(built is not None and built <= MAX_EXPOSURE and not p.stderr,
       f"built echo.service: exposure {built} <= {MAX_EXPOSURE}",
       "" if built is not None and built <= MAX_EXPOSURE and not p.stderr
       else p.stdout + p.stderr)

p, source = exposure([analyze, "security", "--offline=yes",
                      os.path.join(units_src, "echo.service")])
report(source == built, f"units/echo.service scores the same as the built unit ({source})",
       p.stderr)

p = run([analyze, "security", "--offline=yes", f"--threshold={round(MAX_EXPOSURE * 10)}",
         service_unit])
report(p.returncode == 0, f"systemd-analyze security --threshold={round(MAX_EXPOSURE * 10)} passes",
       f"exit {p.returncode}\n{p.stderr}")

p, templ = exposure([analyze, "security", "--offline=yes", template_service_unit])
report(templ is not None and templ == built and not p.stderr,
       f"built echo@.service: exposure {templ}, the same as echo.service's ({built})",
       p.stdout + p.stderr)

finish()
