"""The .deb that the system tests install and check, built once per source tree: the first
test that needs it runs packaging/build-deb into BUILD_ROOT/system-deb/KEY/, where KEY is a
hash of the files packaging/source-tree copies (what the package is built from); later
tests of the same build directory find it there as long as no such file has changed. A lock
keeps two tests from building it at once."""

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import tempfile


def source_key(source_root):
    """sha256 over the path and content of every file packaging/source-tree copies"""
    h = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="echod-source-") as tree:
        subprocess.run([os.path.join(source_root, "packaging", "source-tree"), tree],
                       check=True, capture_output=True, timeout=120)
        for top, dirs, files in os.walk(tree):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(top, name)
                h.update(os.path.relpath(path, tree).encode() + b"\0")
                if os.path.islink(path):
                    h.update(b"link:" + os.readlink(path).encode())
                else:
                    h.update(oct(os.stat(path).st_mode & 0o111).encode())
                    with open(path, "rb") as f:
                        h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


def deb(source_root, build_root, timeout=600):
    """(path of echod_*.deb, True if this call built it); raises RuntimeError with the
    build's last lines when build-deb fails"""
    cache = os.path.join(build_root, "system-deb")
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = os.path.join(cache, source_key(source_root))
        debs = glob.glob(os.path.join(out, "echod_*.deb"))
        if len(debs) == 1:
            return debs[0], False
        for old in os.listdir(cache):  # packages of other source trees
            if old != "lock":
                shutil.rmtree(os.path.join(cache, old), ignore_errors=True)
        # the package's own test suites are run by CI on the tree, not here
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck")
        p = subprocess.run([os.path.join(source_root, "packaging", "build-deb"), out + ".new"],
                           capture_output=True, text=True, timeout=timeout, env=env)
        debs = glob.glob(os.path.join(out + ".new", "echod_*.deb"))
        if p.returncode != 0 or len(debs) != 1:
            shutil.rmtree(out + ".new", ignore_errors=True)
            raise RuntimeError(f"build-deb exited {p.returncode}, .debs {debs}:\n" + "\n".join(
                (p.stdout + p.stderr).splitlines()[-30:]))
        os.rename(out + ".new", out)
        return os.path.join(out, os.path.basename(debs[0])), True
