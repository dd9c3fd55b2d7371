#!/usr/bin/env python3
"""Children are forked without what they never touch (src/trim.c), and that is checked
before READY: the start names the child's path and how many mappings it left out; a
trimmed child that fails its start-up check (forced with the test-only
ECHOD_TEST_TRIM_TOO_MUCH=1, which also leaves out the child's own code) gives one warning
that says why, and echod then serves with every mapping: echo works for several clients,
every child is reaped, it stops cleanly."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from echodtest import (SLOW, VALGRIND, Skip, connect, mapped_files, recv_exact,  # noqa: E402
                       roundtrip, run, started, wait_until)

PATH_RE = r"Child path: (fast|portable) \(.*\); children are forked without (\d+) of (\d+) mappings"
FAILED_RE = r"Trimmed child failed its self-test \((.*)\); children are forked with every mapping \(slower\)"


def keeps_everything(d):
    """Why this build or run forks children with every mapping (then there is nothing to
    check), or None."""
    if VALGRIND:
        return "valgrind's own mappings are a child's too: nothing is left out"
    if "qemu" in os.path.basename(os.path.realpath(f"/proc/{d.pid}/exe")):
        return "qemu-user ignores madvise(): children get every mapping whatever echod asks"
    if any("libasan" in m or "libubsan" in m for m in mapped_files(d.pid) or []):
        return "a sanitized build keeps every mapping for the runtime"
    return None


KEEPS_EVERYTHING = []  # filled by test_path_named, which runs first


def test_path_named(t, exe):
    with started(exe, ["--log-level", "debug"]) as (d, ls):
        m = d.wait_line(PATH_RE, 5 * SLOW)
        t.ok(m, "the start names the child's path and how many mappings it left out",
             d.stderr_text())
        why = keeps_everything(d)
        KEEPS_EVERYTHING.append(why)
        if m and not why and m[0].group(1) == "portable":
            why = "on the portable path nothing echod loads is left out"
        if m and why:
            t.skip("... and leaves some out", why)
        elif m:
            t.ok(int(m[0].group(2)) > 0, f"... and leaves some out ({m[0].group(0)})")
        t.ok(not d.wait_line(FAILED_RE, 0), "a trimmed child passes the start-up check: no warning",
             d.stderr_text())
        t.ok(roundtrip(ls.getsockname(), b"path", 5 * SLOW) == b"path", "echo works")
        t.ok(d.stop() == 0, "stops with status 0", d.stderr_text())


def test_forced_failure(t, exe):
    # A sanitizer's runtime would report the child's crash, and valgrind runs its own copy
    # of the code: the failure cannot be forced there.
    why = VALGRIND and "under valgrind" or next(iter(KEEPS_EVERYTHING), None)
    if why:
        raise Skip(why)
    with started(exe, env={"ECHOD_TEST_TRIM_TOO_MUCH": "1"}) as (d, ls):
        d.wait_line(r"ready: ", 5 * SLOW)  # READY=1 may come before stderr is read
        lines = d.lines()
        failed = [i for i, ln in enumerate(lines) if re.search(FAILED_RE, ln)]
        ready = [i for i, ln in enumerate(lines) if "ready: " in ln]
        t.ok(len(failed) == 1, "one warning: the trimmed child failed its check, children get every "
             "mapping", d.stderr_text())
        t.ok(failed and "killed by signal" in lines[failed[0]],
             "... it says why (killed by a signal)", d.stderr_text())
        t.ok(failed and ready and failed[0] < ready[0], "... before the service says it is ready",
             d.stderr_text())
        n_ok = sum(roundtrip(ls.getsockname(), b"c%d" % i, 5 * SLOW) == b"c%d" % i for i in range(5))
        t.ok(n_ok == 5, f"5 clients one after another are echoed ({n_ok})")
        conns = [connect(ls.getsockname(), 5 * SLOW) for _ in range(3)]
        try:
            for i, c in enumerate(conns):
                c.sendall(b"p%d" % i)
            got = [recv_exact(c, 2, 5 * SLOW) for c in conns]
            t.ok(got == [b"p0", b"p1", b"p2"], "3 clients at once are echoed")
        finally:
            for c in conns:
                c.close()
        t.ok(wait_until(lambda: not d.children(), 10 * SLOW),
             "every child is reaped", repr(d.children()))
        t.ok(not d.wait_line(r"was killed by signal", 0), "no client's child was killed",
             d.stderr_text())
        t.ok(len(d.wait_line(FAILED_RE, 0, 2)) == 1, "still one warning after 8 clients",
             d.stderr_text())
        t.ok(d.stop() == 0, "stops with status 0", d.stderr_text())


if __name__ == "__main__":
    run([test_path_named, test_forced_failure])
