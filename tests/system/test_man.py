#!/usr/bin/env python3
"""echod(8) renders without warnings (mandoc -T lint, groff -ww) and documents exactly the
long options `echod --help` prints, each with its short form; no macro shows as text.

usage: test_man.py MAN_PAGE ECHOD_BINARY"""

import re
import shutil
import subprocess
import sys

from tap import finish, report  # noqa: E402  (beside this script)

man_page, echod = sys.argv[1:3]

mandoc = shutil.which("mandoc")
groff = shutil.which("groff")
if mandoc is None and groff is None:
    print("1..0 # SKIP neither mandoc nor groff found")
    sys.exit(0)

def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


print("1..6")

if mandoc:
    # -W warning: style hints (and mandoc.db staleness on this machine) are not warnings
    p = run([mandoc, "-T", "lint", "-W", "warning", man_page])
    report(p.returncode == 0 and not p.stdout and not p.stderr, "mandoc -T lint: no warning",
           p.stdout + p.stderr)
else:
    report(True, "mandoc -T lint # SKIP mandoc not found")

if groff:
    p = run([groff, "-ww", "-z", "-mandoc", man_page])
    report(p.returncode == 0 and not p.stderr, "groff -ww -z: no warning", p.stderr)
else:
    report(True, "groff -ww -z # SKIP groff not found")

# The page as a reader sees it
if mandoc:
    text = run([mandoc, "-T", "ascii", man_page]).stdout
else:
    text = run([groff, "-T", "ascii", "-P", "-c", "-mandoc", man_page]).stdout
text = re.sub(r".\x08", "", text)  # overstrike (bold, underline)
text = text.replace("\u2010", "-")

# A macro run into the text before it (".Sx LOGGING.It Ev X" on one line) passes both lints
# but shows as text and loses its entry.
stray = sorted(set(re.findall(r"\w\.(?:It|Sh|Ss|Sx|Ev|Fl|Pa|Ql|Dv|Xr|Nm)\b", text)))
report(not stray, "no macro shows as text in the rendered page", f"found: {stray}")

p = run([echod, "--help"])
help_text = p.stdout
help_long = set(re.findall(r"(?<![\w-])--([a-z][a-z-]*)", help_text))
help_short = dict((long, short) for short, long in
                  re.findall(r"(?<![\w-])-([A-Za-z]), --([a-z][a-z-]*)", help_text))
report(p.returncode == 0 and len(help_long) >= 5,
       f"echod --help names {len(help_long)} long options",
       f"exit {p.returncode}\n{help_text}{p.stderr}")

man_long = set(re.findall(r"(?<![\w-])--([a-z][a-z-]*)", text))
missing = sorted(help_long - man_long)
report(not missing, "the man page names every long option of --help",
       "missing: " + " ".join("--" + o for o in missing))

# The option list of the page (".It Fl x , Fl \-long" items) names no option --help lacks,
# and pairs each short option with the same long one.
with open(man_page) as f:
    source = f.read()
items = re.findall(r"^\.It Fl (?:([A-Za-z]) , Fl )?\\-([a-z][a-z-]*)", source, flags=re.M)
extra = sorted(long for _, long in items if long not in help_long)
wrong_short = sorted(f"-{short}/--{long}" for short, long in items
                     if short and help_short.get(long) != short)
no_short = sorted(f"--{long}" for long, short in help_short.items()
                  if (short, long) not in items)
report(not extra and not wrong_short and not no_short and items,
       "the man page's option list matches --help (long and short forms)",
       f"items: {len(items)}; not in --help: {extra}; short forms differing: {wrong_short}; "
       f"short forms missing: {no_short}")

finish()
