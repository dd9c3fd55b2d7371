#!/usr/bin/env python3
"""The code a forked child runs (src/client.c, echo.c, logline.c, built as one static
library) calls nothing outside itself: no libc, whose pages the child would fault in (see
src/sys.h). Usage: test_child_syms.py LIBECHOD_CHILD_A. TAP."""

import subprocess
import sys

# __stack_chk_fail: reached only when a stack canary is found smashed, to crash the child.
# _GLOBAL_OFFSET_TABLE_: the linker's symbol for position-independent code, not a function.
ALLOWED = {"__stack_chk_fail", "_GLOBAL_OFFSET_TABLE_"}


def symbols(archive, *flags):
    out = subprocess.run(["nm", "--format=posix", *flags, archive], check=True,
                         capture_output=True, text=True).stdout
    # "name type [value size]"; member headers look like "lib.a[x.o]:"
    return {line.split()[0] for line in out.splitlines()
            if line and not line.endswith(":")}


def main():
    archive = sys.argv[1]
    defined = symbols(archive, "--defined-only")
    undefined = symbols(archive, "--undefined-only")
    outside = sorted(undefined - defined - ALLOWED)
    print("1..2")
    print(("ok" if defined >= {"client_run_child", "echo_stream", "log_line_emit"} else "not ok")
          + " 1 - the child's entry points are in the library")
    print(("ok" if not outside else "not ok")
          + " 2 - the child's code calls nothing outside itself")
    if outside:
        print("# called outside: " + " ".join(outside))
    return 0


if __name__ == "__main__":
    sys.exit(main())
