#!/usr/bin/env python3
"""Builds the .deb and the .rpm with packaging/build-deb and packaging/build-rpm from the
source tree, then: lintian shows no error or warning, rpmlint no error, both packages carry
meson.build's version and an echod that answers --version and --help alike, and both install the same files with the same modes, the example
units and drop-ins among them (the distributions' own documentation metadata,
/usr/share/doc/echod/{copyright,changelog.gz} and the lintian override on Debian, the
license file /usr/share/licenses/echod/LICENSE on RPM systems, is listed, not compared;
each must carry the license in its place).

usage: test_packages.py SOURCE_ROOT BUILD_ROOT"""

import os
import re
import shutil
import io
import subprocess
import sys
import tarfile
import tempfile

import debcache  # noqa: E402  (beside this script)
from release import meson_version, upstream_version  # noqa: E402
from tap import finish, report  # noqa: E402

source_root, build_root = sys.argv[1:3]
required = os.environ.get("ECHOD_SYSTEM_TESTS_REQUIRED") == "1"
EXAMPLES = {f"/usr/share/doc/echod/examples/{name}" for name in
            ("echo-udp.conf", "echo-access.conf", "echo@.socket", "echo@.service")}
CATALOG = "/usr/lib/systemd/catalog/echod.catalog"
DEB_LICENSE = "/usr/share/doc/echod/copyright"
RPM_LICENSE = "/usr/share/licenses/echod/LICENSE"
DEBIAN_ONLY = {DEB_LICENSE, "/usr/share/doc/echod/changelog.gz",
               "/usr/share/lintian/overrides/echod"}
RPM_ONLY = {RPM_LICENSE}

tools = ["dpkg-buildpackage", "dh", "lintian", "rpmbuild", "rpmlint", "rpm", "dpkg-deb",
         "rpm2archive"]
missing = [t for t in tools if shutil.which(t) is None]
if missing:
    if required:
        print("1..1\nnot ok 1 - packaging tools missing: " + " ".join(missing))
        sys.exit(1)
    print("1..0 # SKIP packaging tools missing: " + " ".join(missing))
    sys.exit(0)

def run(argv, timeout=600, env=None):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def tail(text, n=30):
    return "\n".join(text.splitlines()[-n:])


def deb_files(deb):
    """{path: mode string} of the regular files and symlinks in a .deb"""
    files = {}
    for line in run(["dpkg-deb", "-c", deb]).stdout.splitlines():
        fields = line.split(None, 5)
        mode, path = fields[0], fields[5].split(" -> ")[0]
        if mode.startswith("d"):
            continue
        files["/" + path.lstrip("./")] = mode
    return files


def rpm_files(rpm):
    files = {}
    p = run(["rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", rpm])
    for line in p.stdout.splitlines():
        mode, path = line.split(" ", 1)
        if mode.startswith("d"):
            continue
        files[path] = mode
    return files


def echod_answers(exe):
    """what an echod binary prints for --version and --help"""
    return [run([exe, opt], timeout=30).stdout for opt in ("--version", "--help")]


def deb_echod(deb, dest):
    run(["dpkg-deb", "-x", deb, dest])
    return os.path.join(dest, "usr", "sbin", "echod")


def rpm_echod(rpm, dest):
    with open(rpm, "rb") as f:
        tgz = subprocess.run(["rpm2archive", "-"], stdin=f, capture_output=True, timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        tar.extract("./usr/sbin/echod", dest)
    return os.path.join(dest, "usr", "sbin", "echod")


print("1..12")
version = meson_version(source_root)

with tempfile.TemporaryDirectory(prefix="echod-packages-") as tmp:
    # The packages' own test runs are not the point here (CI runs the suites on the tree).
    # The .deb is the one the nspawn tests install (debcache.py: built once per tree).
    try:
        deb, built = debcache.deb(source_root, build_root)
        debs, why = [deb], ""
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        debs, why = [], str(e)
    report(len(debs) == 1, "packaging/build-deb builds echod_*.deb", why)

    p = run([os.path.join(source_root, "packaging", "build-rpm"), os.path.join(tmp, "rpm"),
             "--nocheck"])
    rpms = [f for f in p.stdout.split() if re.search(r"/echod-[^/]*\.rpm$", f)
            and "debug" not in os.path.basename(f)]
    report(p.returncode == 0 and len(rpms) == 1, "packaging/build-rpm builds echod-*.rpm",
           "" if p.returncode == 0 and len(rpms) == 1 else tail(p.stdout + p.stderr))

    if debs:
        p = run(["lintian", "--fail-on", "error,warning", "--display-info", debs[0]])
        bad = [l for l in p.stdout.splitlines() if re.match(r"[EW]: ", l)]
        report(p.returncode == 0 and not bad, "lintian: no error, no warning",
               p.stdout + p.stderr)
    else:
        report(False, "lintian: no error, no warning", "no .deb")

    if rpms:
        rpm_dir = os.path.join(source_root, "packaging", "rpm")
        p = run(["rpmlint", "-c", os.path.join(rpm_dir, "rpmlint.toml"),
                 "-r", os.path.join(rpm_dir, "echod.rpmlintrc"), rpms[0]])
        m = re.search(r"(\d+) errors?, (\d+) warnings?", p.stdout)
        report(m is not None and m.group(1) == "0", "rpmlint: no error", p.stdout + p.stderr)
    else:
        report(False, "rpmlint: no error", "no .rpm")

    d = deb_files(debs[0]) if debs else {}
    r = rpm_files(rpms[0]) if rpms else {}
    # Both are built from one release: the version meson.build sets.
    deb_version = run(["dpkg-deb", "-f", debs[0], "Version"]).stdout.strip() if debs else ""
    rpm_version = run(["rpm", "-qp", "--qf", "%{VERSION}", rpms[0]]).stdout if rpms else ""
    report(version and upstream_version(deb_version) == version and rpm_version == version,
           f"both packages carry meson.build's version {version}",
           f".deb Version: {deb_version}\n.rpm Version: {rpm_version}")
    # One release's source, built by each distribution's tools: the same program.
    deb_answers = echod_answers(deb_echod(debs[0], os.path.join(tmp, "x-deb"))) if debs else None
    rpm_answers = echod_answers(rpm_echod(rpms[0], os.path.join(tmp, "x-rpm"))) if rpms else None
    report(deb_answers and deb_answers == rpm_answers and deb_answers[0] == f"echod {version}\n",
           f"both packages' echod print 'echod {version}' and the same --help",
           f".deb: {deb_answers}\n.rpm: {rpm_answers}")
    # Each carries the license where its distribution expects it.
    report(DEB_LICENSE in d and RPM_LICENSE in r,
           f"the license: {DEB_LICENSE} in the .deb, {RPM_LICENSE} in the .rpm",
           f"deb: {DEB_LICENSE in d}, rpm: {RPM_LICENSE in r}")

    compared = {k: v for k, v in d.items() if k not in DEBIAN_ONLY}
    r_compared = {k: v for k, v in r.items() if k not in RPM_ONLY}
    only_deb = sorted(set(compared) - set(r_compared))
    only_rpm = sorted(set(r_compared) - set(compared))
    report(d and r and not only_deb and not only_rpm,
           f"the .deb and the .rpm install the same {len(r_compared)} files",
           "\n".join([f"only in .deb: {f}" for f in only_deb] +
                     [f"only in .rpm: {f}" for f in only_rpm] +
                     [f"files: {' '.join(sorted(r_compared))}",
                      f"Debian metadata, not compared: {' '.join(sorted(DEBIAN_ONLY & set(d)))}",
                      f"RPM metadata, not compared: {' '.join(sorted(RPM_ONLY & set(r)))}"]))
    missing = sorted(f"{f} (.{kind})" for kind, files in (("deb", d), ("rpm", r))
                     for f in EXAMPLES - set(files))
    report(d and r and not missing, "both ship the examples: the UDP and access-list "
           "drop-ins, echo@.socket and echo@.service", "missing: " + " ".join(missing))
    report(d and r and CATALOG in d and CATALOG in r, f"both ship the journal catalog {CATALOG}",
           f"deb: {CATALOG in d}, rpm: {CATALOG in r}")
    modes = sorted(f"{f}: deb {compared[f]} rpm {r[f]}" for f in set(compared) & set(r)
                   if compared[f] != r[f])
    report(d and r and not modes, "with the same modes", "\n".join(modes))

    # echod loads libsystemd with dlopen() (src/libsystemd.c): no tool derives this
    # dependency from DT_NEEDED, so each package declares it.
    deb_depends = run(["dpkg-deb", "-f", debs[0], "Depends"]).stdout if debs else ""
    rpm_requires = run(["rpm", "-qp", "--requires", rpms[0]]).stdout if rpms else ""
    report(re.search(r"\blibsystemd0\b", deb_depends) and
           re.search(r"^libsystemd\.so\.0\b", rpm_requires, re.M),
           "both depend on libsystemd, which echod loads with dlopen()",
           f".deb Depends: {deb_depends.strip()}\n.rpm requires: {rpm_requires.strip()}")

finish()
