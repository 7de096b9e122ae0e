#!/usr/bin/env python3
"""Fails when a source includes a room above its own (control/meson.build draws the rooms):
runtime -> compile -> config -> dataplane, and dataplane includes no control/ header.

Every #include of a project header counts, however it is written: "room/x.h", <room/x.h> or a
path relative to the including file ("../compile/x.h"). An include through a macro is refused
outright: it could hide any of them."""
import pathlib
import posixpath
import re
import sys

ORDER = ["dataplane", "control/config", "control/compile", "control/runtime"]
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1])
include = re.compile(r'^[ \t]*#[ \t]*include[ \t]*(?:"([^"]+)"|<([^>]+)>|(\S.*))', re.M)


def room(path: str) -> int:
    for i, r in reversed(list(enumerate(ORDER))):
        if path == r or path.startswith(r + "/"):
            return i
    return -1


def target(src_rel: str, written: str) -> str:
    """The project path an include names: relative to the including file when it exists there,
    else to the top of the tree (the project's include directory)."""
    here = posixpath.normpath(posixpath.join(posixpath.dirname(src_rel), written))
    return here if (root / here).exists() else posixpath.normpath(written)


bad = []
for src in sorted(root.glob("dataplane/**/*")) + sorted(root.glob("control/**/*")):
    if not src.is_file() or src.suffix in (".build", ".md", ".py"):
        continue
    rel = src.relative_to(root).as_posix()
    own = room(rel)
    text = src.read_text(errors="replace")
    for m in include.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(3) is not None:
            bad.append(f"{rel}:{line}: include through a macro ({m.group(3).strip()}): write the header's path")
            continue
        written = m.group(1) or m.group(2)
        to = target(rel, written)
        if room(to) > own:
            bad.append(f"{rel}:{line}: includes {written} ({to}), a room above {ORDER[own]}")
print("\n".join(bad) if bad else f"layering holds: {' -> '.join(reversed(ORDER))}")
sys.exit(1 if bad else 0)
