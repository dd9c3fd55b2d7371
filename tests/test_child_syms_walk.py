#!/usr/bin/env python3
"""tests/test_child_syms.py's walk over synthetic disassemblies: each way out of echod's
image a child could take must be reported, on x86_64 and aarch64. TAP."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_child_syms import walk  # noqa: E402

# name: instructions of the entry function, as objdump -d --no-show-raw-insn prints them
ESCAPES = {
    "call through the PLT": "call   21a0 <strlen@plt>",
    "tail call through the PLT": "jmp    21a0 <strlen@plt>",
    "x86_64 indirect call": "call   *%rax",
    "x86_64 indirect tail call through a pointer": "jmp    *(%rax)",
    "x86_64 indirect tail call with notrack": "notrack jmp *%rax",
    "x86_64 tail call through the GOT": "jmp    *0x2fe2(%rip)        # 4ff0 <x>",
    "aarch64 indirect call": "blr    x1",
    "aarch64 indirect tail call": "br     x16",
}


def main():
    print(f"1..{len(ESCAPES) + 1}")
    n = 0
    for what, insn in ESCAPES.items():
        funcs = {"client_run_child": (".text", [(0x1000, "endbr64"), (0x1004, insn)]),
                 "strlen@plt": (".plt", [(0x21a0, "jmp *0x2fe2(%rip)")])}
        _, problems = walk(funcs, "client_run_child")
        n += 1
        print(("ok" if problems else "not ok") + f" {n} - reported: {what} ({insn})")
    funcs = {"client_run_child": (".text", [(0x1000, "call   1100 <echo_stream>"), (0x1004, "ret")]),
             "echo_stream": (".text", [(0x1100, "mov    $0x1,%eax"), (0x1104, "ret")])}
    reachable, problems = walk(funcs, "client_run_child")
    n += 1
    print(("ok" if not problems and "echo_stream" in reachable else "not ok")
          + f" {n} - a direct call into echod is followed, not reported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
