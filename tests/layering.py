#!/usr/bin/env python3
"""Fails when a source includes a room above its own (control/meson.build draws the rooms):
runtime -> compile -> config -> dataplane, and dataplane includes no control/ header."""
import pathlib
import re
import sys

ORDER = ["dataplane", "control/config", "control/compile", "control/runtime"]
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1])
include = re.compile(r'^\s*#\s*include\s+"((?:dataplane|control/\w+)/[^"]+)"', re.M)


def room(path: str) -> int:
    for i, r in reversed(list(enumerate(ORDER))):
        if path.startswith(r + "/"):
            return i
    return -1


bad = []
for src in sorted(root.glob("dataplane/**/*")) + sorted(root.glob("control/**/*")):
    if src.suffix not in (".h", ".cpp"):
        continue
    rel = src.relative_to(root).as_posix()
    own = room(rel)
    for m in include.finditer(src.read_text()):
        if room(m.group(1)) > own:
            line = src.read_text().count("\n", 0, m.start()) + 1
            bad.append(f"{rel}:{line}: includes {m.group(1)}, a room above {ORDER[own]}")
print("\n".join(bad) if bad else f"layering holds: {' -> '.join(reversed(ORDER))}")
sys.exit(1 if bad else 0)
