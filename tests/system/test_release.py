#!/usr/bin/env python3
"""One release, one version: meson.build's project version (the one place it is set) is the
upstream version of the newest packaging/debian/changelog entry, the spec's Version: and
the version-release of its newest %changelog entry, the newest section of NEWS.md, and what
`echod --version` prints. LICENSE at the top is the MIT text packaging/debian/copyright
declares, with the same copyright line.

usage: test_release.py SOURCE_ROOT ECHOD"""

import os
import re
import subprocess
import sys

from release import (debian_changelog_version, meson_version, news_versions,  # noqa: E402
                     spec_changelog_top, spec_tag, upstream_version)
from tap import finish, report  # noqa: E402  (beside this script)

root, echod = sys.argv[1], sys.argv[2]

print("1..7")

version = meson_version(root)
report(version is not None and re.fullmatch(r"\d+\.\d+\.\d+", version) is not None,
       f"meson.build sets the version: {version}")

deb = debian_changelog_version(root) or ""
report(upstream_version(deb) == version,
       f"packaging/debian/changelog's newest entry is {version}", f"it is ({deb})")

spec_version = spec_tag(root, "Version")
report(spec_version == version, f"the spec's Version: is {version}", f"it is {spec_version}")

release = re.sub(r"%\{\?dist\}$", "", spec_tag(root, "Release") or "")
top = spec_changelog_top(root)
report(top == f"{version}-{release}",
       f"the spec's newest %changelog entry is {version}-{release}", f"it is {top}")

news = news_versions(root)
report(news[:1] == [version], f"NEWS.md's newest section is {version}",
       f"its sections: {' '.join(news)}")

p = subprocess.run([echod, "--version"], capture_output=True, text=True, timeout=30)
report(p.returncode == 0 and p.stdout == f"echod {version}\n",
       f"echod --version prints 'echod {version}'", f"{p.returncode} {p.stdout!r} {p.stderr!r}")


def debian_license(text):
    """(copyright years and holder, license text) of packaging/debian/copyright"""
    holder = re.search(r"^Copyright: (.+)$", text, re.M)
    body = re.search(r"^License: MIT\n((?: .*\n?)+)", text, re.M)
    lines = [] if body is None else body.group(1).rstrip("\n").split("\n")
    return (holder.group(1) if holder else None,
            "\n".join("" if line == " ." else line[1:] for line in lines))


with open(os.path.join(root, "LICENSE"), encoding="utf-8") as f:
    license_text = f.read()
with open(os.path.join(root, "packaging", "debian", "copyright"), encoding="utf-8") as f:
    deb_holder, deb_text = debian_license(f.read())
m = re.match(r"MIT License\n\nCopyright \(c\) ([^\n]+)\n\n(.*)\n$", license_text, re.S)
report(m is not None and deb_text and m.group(2) == deb_text and m.group(1) == deb_holder,
       "LICENSE is the MIT text and copyright line of packaging/debian/copyright",
       f"LICENSE: {m.group(1) if m else '(not the expected layout)'}; "
       f"debian/copyright: {deb_holder}")

finish()
