"""TAP output shared by the checks of this folder: numbered ok/not ok lines, diagnostics
of a failure as comments, and the exit status meson expects after them."""

import sys

_n_test = 0
_n_failed = 0


def report(ok, name, diag=""):
    global _n_test, _n_failed
    _n_test += 1
    if not ok:
        _n_failed += 1
    print(f"{'ok' if ok else 'not ok'} {_n_test} - {name}")
    for line in diag.splitlines() if not ok else []:
        print(f"# {line}")
    sys.stdout.flush()
    if not ok:  # meson shows a failed test's stderr, not its TAP stream
        print(f"not ok {_n_test} - {name}\n{diag}".rstrip()[-4000:], file=sys.stderr, flush=True)


def finish():
    sys.exit(1 if _n_failed else 0)
