#!/usr/bin/env python3
"""tests/unit/test_child_syms.py's walk over synthetic disassemblies: each way out of echod's
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
    "aarch64 authenticated indirect call": "blraaz x1",
    "x86_64 tail call after a look-alike load": ["movslq (%rdx,%rax,4),%rax", "add    %rcx,%rax",
                                                  "jmp    *%rax"],
}
# Not ways out: a switch's jump table (its targets are in the function, walked anyway), a trap.
NOT_ESCAPES = {
    "an x86_64 jump table": ["lea    0x402b(%rip),%rdx        # ec04 <probe+0x274>", "movslq (%rdx,%rax,4),%rax",
               "add    %rdx,%rax", "notrack jmp *%rax"],
    "an aarch64 jump table": ["adr    x1, 4a10 <client_serve+0x60>", "add    x0, x1, w0, sxtb #2", "br     x0"],
    "an aarch64 trap (brk, not a branch)": ["brk    #0x3e8"],
}


def entry_with(insns):
    if isinstance(insns, str):
        insns = [insns]
    return {"client_run_child": (".text", [(0x1000 + 4 * i, t) for i, t in enumerate(["endbr64", *insns])]),
            "strlen@plt": (".plt", [(0x21a0, "jmp *0x2fe2(%rip)")])}


def main():
    print(f"1..{len(ESCAPES) + len(NOT_ESCAPES) + 1}")
    n = 0
    for what, insns in ESCAPES.items():
        _, problems = walk(entry_with(insns), "client_run_child")
        n += 1
        print(("ok" if problems else "not ok") + f" {n} - reported: {what} ({insns})")
    for what, insns in NOT_ESCAPES.items():
        _, problems = walk(entry_with(insns), "client_run_child")
        n += 1
        print(("ok" if not problems else "not ok") + f" {n} - not reported: {what}")
    funcs = {"client_run_child": (".text", [(0x1000, "call   1100 <echo_stream>"), (0x1004, "ret")]),
             "echo_stream": (".text", [(0x1100, "mov    $0x1,%eax"), (0x1104, "ret")])}
    reachable, problems = walk(funcs, "client_run_child")
    n += 1
    print(("ok" if not problems and "echo_stream" in reachable else "not ok")
          + f" {n} - a direct call into echod is followed, not reported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
