#!/usr/bin/env python3
"""echod loads libsystemd with dlopen() (src/libsystemd.c), so it has no DT_NEEDED entry for
it: the binary says so to packagers with a .note.dlopen, in systemd's "ELF dlopen metadata"
format. Checks that the section is there and is an ELF note section, that it holds a note of
owner "FDO" and type 0x407c0c0a whose descriptor is a NUL-terminated, 4-byte padded JSON
array of objects with feature, description, priority and soname, and that one of them names
libsystemd.so.0 as required. Reads the ELF file itself (any class, either byte order), so it
checks a cross build too. Usage: test_dlopen_note.py ECHOD. TAP."""

import json
import struct
import sys

NOTE_TYPE = 0x407C0C0A
SHT_NOTE = 7
PRIORITIES = ("required", "recommended", "suggested")


def sections(data):
    """{name: (sh_type, bytes)} of an ELF file's sections."""
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    is64, end = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
        fmt = end + "IIQQQQ"  # name, type, flags, addr, offset, size
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)
        fmt = end + "IIIIII"
    heads = [struct.unpack_from(fmt, data, shoff + i * shentsize) for i in range(shnum)]
    strtab = heads[shstrndx]
    names = data[strtab[4]:strtab[4] + strtab[5]]
    out = {}
    for name, sh_type, _flags, _addr, offset, size in heads:
        out[names[name:names.index(b"\0", name)].decode()] = (sh_type, data[offset:offset + size], end)
    return out


def notes(blob, end):
    """[(owner, type, descriptor bytes, descsz)] of a note section; raises on a malformed one."""
    out, pos = [], 0
    while pos < len(blob):
        namesz, descsz, ntype = struct.unpack_from(end + "III", blob, pos)
        pos += 12
        name = blob[pos:pos + namesz]
        pos += (namesz + 3) & ~3
        desc = blob[pos:pos + ((descsz + 3) & ~3)]
        if len(desc) != (descsz + 3) & ~3:
            raise ValueError("a note runs past the end of its section")
        pos += (descsz + 3) & ~3
        out.append((name.rstrip(b"\0").decode(), ntype, desc, descsz))
    return out


def main():
    exe = sys.argv[1]
    checks = []

    def ok(cond, what, diag=""):
        checks.append((bool(cond), what, diag))
        return cond

    with open(exe, "rb") as f:
        secs = sections(f.read())
    sec = secs.get(".note.dlopen")
    if ok(sec is not None, "echod has a .note.dlopen section", sorted(secs)):
        sh_type, blob, end = sec
        ok(sh_type == SHT_NOTE, f"... of type SHT_NOTE ({sh_type})")
        ours = [n for n in notes(blob, end) if n[0] == "FDO" and n[1] == NOTE_TYPE]
        if ok(len(ours) == 1, "... holding one note of owner FDO, type 0x407c0c0a", repr(notes(blob, end))):
            _owner, _type, desc, descsz = ours[0]
            text = desc[:descsz]
            ok(text.endswith(b"\0") and b"\0" not in text[:-1] and not desc[descsz:].strip(b"\0"),
               "its descriptor is NUL-terminated, padded to 4 bytes with NULs", repr(desc))
            try:
                meta = json.loads(text.rstrip(b"\0").decode())
            except ValueError as e:
                meta = None
                ok(False, "... and is JSON", str(e))
            if meta is not None:
                ok(isinstance(meta, list) and meta and all(
                    isinstance(m, dict) and isinstance(m.get("feature"), str) and
                    isinstance(m.get("description"), str) and m.get("priority") in PRIORITIES and
                    isinstance(m.get("soname"), list) and m["soname"] and
                    all(isinstance(s, str) for s in m["soname"]) for m in meta),
                   "... a JSON array of objects with feature, description, priority and soname",
                   repr(meta))
                ok(any(isinstance(m, dict) and "libsystemd.so.0" in (m.get("soname") or []) and
                       m.get("priority") == "required" for m in meta),
                   "... naming libsystemd.so.0, required", repr(meta))
    print(f"1..{len(checks)}")
    for i, (cond, what, diag) in enumerate(checks, 1):
        print(f"{'ok' if cond else 'not ok'} {i} - {what}")
        if not cond and diag:
            print("# " + str(diag).replace("\n", "\n# "))
    return 0 if all(c[0] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
