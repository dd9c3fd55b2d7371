#!/usr/bin/env python3
"""The journal catalog: one entry per MESSAGE_ID of src/journal-ids.h, none unknown, each
with Subject, Defined-By: echod, Documentation: man:echod(8) and a body; and journalctl
compiles it (in a scratch root) and lists every entry."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import finish, report  # noqa: E402  (beside this script)

ids_header, catalog = sys.argv[1], sys.argv[2]
ids = dict((m.group(2), m.group(1)) for m in
           re.finditer(r'#define (ECHOD_ID_\w+)\s+"([0-9a-f]{32})"', open(ids_header).read()))
entries = {}
for block in re.split(r"^-- ", open(catalog).read(), flags=re.M)[1:]:
    head, _, body = block.partition("\n\n")
    lines = head.split("\n")
    entries[lines[0].strip()] = ({k: v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])},
                                 body.strip())

report(len(ids) >= 12, f"src/journal-ids.h defines the ids ({len(ids)})")
report(set(ids) == set(entries), "the catalog has one entry per MESSAGE_ID and no other",
       f"without entry: {sorted(ids[i] for i in set(ids) - set(entries))}; "
       f"unknown: {sorted(set(entries) - set(ids))}")
bad = [i for i, (h, body) in entries.items()
       if not h.get("Subject") or h.get("Defined-By") != "echod" or h.get("Documentation") != "man:echod(8)"
       or len(body) < 40]
report(not bad, "every entry has Subject, Defined-By: echod, Documentation: man:echod(8) and a body",
       f"incomplete: {bad}")

journalctl = shutil.which("journalctl")
if not journalctl:
    report(True, "journalctl compiles the catalog # SKIP journalctl missing")
else:
    root = tempfile.mkdtemp(prefix="echod-catalog-")
    try:
        os.makedirs(os.path.join(root, "usr/lib/systemd/catalog"))
        os.makedirs(os.path.join(root, "var/lib/systemd/catalog"))
        shutil.copy(catalog, os.path.join(root, "usr/lib/systemd/catalog/echod.catalog"))
        subprocess.run([journalctl, f"--root={root}", "--update-catalog"], capture_output=True, timeout=60)
        p = subprocess.run([journalctl, f"--root={root}", "--list-catalog"], capture_output=True, text=True,
                           timeout=60)
        listed = set(re.findall(r"^([0-9a-f]{32}) echod: ", p.stdout, flags=re.M))
        report(listed == set(ids), f"journalctl compiles the catalog and lists its {len(listed)} entries",
               p.stdout + p.stderr)
    finally:
        shutil.rmtree(root)
finish()
