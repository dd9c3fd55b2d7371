"""The version of a release as each file that carries it spells it: meson.build's project
version (the one place it is set), the newest entry of packaging/debian/changelog, the
spec's Version:/Release: and its newest %changelog entry, and the NEWS.md sections. Shared
by test_release.py and test_packages.py."""

import os
import re


def _read(root, *path):
    with open(os.path.join(root, *path), encoding="utf-8") as f:
        return f.read()


def meson_version(root):
    """the version : '...' of project() in meson.build"""
    m = re.search(r"\bproject\s*\((?:[^()]|\([^()]*\))*?\bversion\s*:\s*'([^']+)'",
                  _read(root, "meson.build"), re.S)
    return m.group(1) if m else None


def upstream_version(debian_version):
    """the upstream part of a Debian version: no epoch, no -revision"""
    v = debian_version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def debian_changelog_version(root):
    """the full version of the newest (first) entry of packaging/debian/changelog"""
    m = re.match(r"\S+ \(([^)]+)\)", _read(root, "packaging", "debian", "changelog"))
    return m.group(1) if m else None


def _spec(root):
    return _read(root, "packaging", "rpm", "echod.spec")


def spec_tag(root, tag):
    """a preamble tag of the spec (Version, Release), as written (macros unexpanded)"""
    m = re.search(rf"^{tag}:\s*(\S+)", _spec(root), re.M)
    return m.group(1) if m else None


def spec_changelog_top(root):
    """the version-release at the end of the first %changelog heading (* DATE NAME - V-R)"""
    body = _spec(root).split("\n%changelog\n", 1)
    if len(body) != 2:
        return None
    m = re.search(r"^\*.* - (\S+)\s*$", body[1], re.M)
    return m.group(1) if m else None


def news_versions(root):
    """the versions of NEWS.md's release sections (## 1.1.0 ...), newest first"""
    return re.findall(r"^## (\d+(?:\.\d+)+)\b", _read(root, "NEWS.md"), re.M)
