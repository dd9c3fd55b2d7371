#!/usr/bin/env python3
"""The code a forked child runs calls and reads nothing outside echod's own image: children
are forked without libc and the loader (src/trim.c), so a call to a libc function, or a read
of another object's data, would fault in every child. Reads the LINKED binary, so inlining,
LTO and the linker's choices are what is checked: disassembles it with objdump, follows
every direct call and branch from client_run_child, and fails on a call through the PLT or
the GOT (a function of another object), on an indirect call or jump (which cannot be followed), and
on data read through the GOT that is not echod's own, except what src/fork.c keeps.
x86_64 and aarch64. Usage: test_child_syms.py [--objdump PROG] ECHOD. TAP."""

import argparse
import re
import subprocess
import sys

# __stack_chk_fail: reached only when a stack canary is found smashed, to crash the child.
ALLOWED_CALLS = {"__stack_chk_fail"}
# Data of other objects a child may read: fork.c keeps the mappings holding them.
# __stack_chk_guard: arm64's stack-protector canary, in the dynamic loader's data.
KEPT_DATA = {"__stack_chk_guard"}
ENTRY = "client_run_child"

FUNC_RE = re.compile(r"^([0-9a-f]+) <(.+)>:$")
INSN_RE = re.compile(r"^\s*([0-9a-f]+):\s+(.*)$")
SECTION_RE = re.compile(r"^Disassembly of section (\S+):$")
REF_RE = re.compile(r"<([^>]+)>")
# x86_64: "call *%rax", "notrack jmp *%rax", "jmp *(%rax)", "call *0x2f(%rip)"; aarch64:
# "blr x1", "br x1", and their pointer-authenticating forms ("blraaz x1"), not "brk".
INDIRECT_RE = re.compile(r"^(?:\S+\s+)?(?:(?:call|jmp)[a-z]*\s+\*|bl?r(?:a[ab]z?)?\s)")
# A switch's jump table, the one indirect jump that stays within its function (whose
# instructions are all walked anyway): the compilers' position-independent sequences,
# x86_64 "movslq (%rdx,%rax,4),%rax; add %rdx,%rax; [notrack] jmp *%rax" and aarch64
# "add x0, x1, w0, sxtb #2; br x0". Any other indirect jump is a tail call through a pointer.
X86_TABLE_RE = (re.compile(r"^movslq\s+\((%\w+),%\w+,4\),(%\w+)$"),
                re.compile(r"^add\s+(%\w+),(%\w+)$"),
                re.compile(r"^(?:notrack\s+)?jmp\s+\*(%\w+)$"))
A64_TABLE_RE = (re.compile(r"^add\s+(x\d+),\s*x\d+,\s*[wx]\d+,\s*(?:[su]xt[bhw]|lsl)\s+#2$"),
                re.compile(r"^br\s+(x\d+)$"))


def is_jump_table(insns, i):
    """Whether insns[i], an indirect jump, is a switch's dispatch (see X86_TABLE_RE)."""
    texts = [t for _, t in insns[max(0, i - 2):i + 1]]
    if len(texts) == 3 and all(r.match(t) for r, t in zip(X86_TABLE_RE, texts)):
        load, add, jump = (r.match(t) for r, t in zip(X86_TABLE_RE, texts))
        return load.group(1) == add.group(1) and load.group(2) == add.group(2) == jump.group(1)
    if len(texts) >= 2 and all(r.match(t) for r, t in zip(A64_TABLE_RE, texts[-2:])):
        add, jump = (r.match(t) for r, t in zip(A64_TABLE_RE, texts[-2:]))
        return add.group(1) == jump.group(1)
    return False
X86_ADDR_RE = re.compile(r"#\s*([0-9a-f]+)")
ADRP_RE = re.compile(r"^adrp\s+(x\d+),\s*([0-9a-f]+)")
LDR_RE = re.compile(r"^ldr\s+(x\d+),\s*\[(x\d+)(?:,\s*#(\d+))?\]")


def objdump(prog, *args):
    return subprocess.run([prog, *args], check=True, capture_output=True, text=True).stdout


def disassemble(prog, exe):
    """{function name: (section, [(address, instruction text)])}"""
    funcs, section, current = {}, None, None
    for line in objdump(prog, "-d", "-w", "--no-show-raw-insn", exe).splitlines():
        m = SECTION_RE.match(line)
        if m:
            section = m.group(1)
            continue
        m = FUNC_RE.match(line)
        if m:
            current = funcs.setdefault(m.group(2), (section, []))
            continue
        m = INSN_RE.match(line)
        if m and current is not None:
            current[1].append((int(m.group(1), 16), m.group(2).strip()))
    return funcs


def got_ranges(prog, exe):
    out = []
    for line in objdump(prog, "-h", "-w", exe).splitlines():
        f = line.split()
        if len(f) > 4 and f[1] in (".got", ".got.plt"):
            out.append((int(f[3], 16), int(f[3], 16) + int(f[2], 16)))
    return out


def got_symbols(prog, exe):
    """{GOT slot address: symbol name} of every slot the loader fills with another symbol's
    address (not R_*_RELATIVE, which point into echod itself)."""
    out = {}
    for line in objdump(prog, "-R", "-w", exe).splitlines():
        f = line.split()
        if len(f) == 3 and re.fullmatch(r"[0-9a-f]+", f[0]) and "RELATIVE" not in f[1]:
            out[int(f[0], 16)] = f[2].split("@")[0]
    return out


def data_addresses(insns):
    """Addresses an instruction sequence reads or computes: x86_64 objdump comments
    (rip-relative), aarch64 adrp + ldr pairs."""
    pages = {}
    for _, text in insns:
        m = X86_ADDR_RE.search(text)
        if m:
            yield int(m.group(1), 16)
        m = ADRP_RE.match(text)
        if m:
            pages[m.group(1)] = int(m.group(2), 16)
            continue
        m = LDR_RE.match(text)
        if m and m.group(2) in pages:
            yield pages[m.group(2)] + int(m.group(3) or 0)


def base_name(ref):
    return re.sub(r"\+0x[0-9a-f]+$", "", ref)


def walk(funcs, entry):
    """(reachable function names, [problems with calls])"""
    seen, todo, problems = {entry}, [entry], []
    while todo:
        name = todo.pop()
        section, insns = funcs[name]
        for i, (_, text) in enumerate(insns):
            if INDIRECT_RE.match(text) and not is_jump_table(insns, i):
                problems.append(f"{name}: indirect call or jump, cannot be followed: {text}")
            for ref in REF_RE.findall(text):
                target = base_name(ref)
                if "@" in target:
                    if target.split("@")[0] not in ALLOWED_CALLS:
                        problems.append(f"{name}: {target} (outside echod): {text}")
                    continue
                if target not in funcs or target in seen:
                    continue  # data, or done already
                if funcs[target][0].startswith(".plt"):
                    problems.append(f"{name}: {target} is a PLT stub: {text}")
                    continue
                seen.add(target)
                todo.append(target)
    return seen, problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objdump", default="objdump")
    ap.add_argument("exe")
    args = ap.parse_args()

    funcs = disassemble(args.objdump, args.exe)
    print("1..3")
    entry = ENTRY if ENTRY in funcs else next((f for f in funcs if f.split(".")[0] == ENTRY), None)
    print(("ok" if entry else "not ok") + f" 1 - the child's entry point {ENTRY} is in the binary")
    if not entry:
        for n in (2, 3):
            print(f"not ok {n} - (no entry point)")
        return 0
    reachable, problems = walk(funcs, entry)
    print("# reachable from " + entry + ": " + " ".join(sorted(reachable)))
    print(("ok" if not problems else "not ok")
          + f" 2 - the child's code ({len(reachable)} functions) calls nothing outside echod")
    for p in problems:
        print("# " + p)

    got, slots = got_ranges(args.objdump, args.exe), got_symbols(args.objdump, args.exe)
    foreign = sorted({f"{name}: {slots.get(a, '?')} (GOT slot {a:#x})"
                      for name in reachable for a in data_addresses(funcs[name][1])
                      if any(lo <= a < hi for lo, hi in got) and a in slots
                      and slots[a] not in KEPT_DATA})
    print(("ok" if not foreign else "not ok")
          + " 3 - it reads no other object's data through the GOT, but what fork.c keeps ("
          + ", ".join(sorted(KEPT_DATA)) + ")")
    for f in foreign:
        print("# " + f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
