#!/usr/bin/env python3
"""The man pages (docs/man/*.scd, built with scdoc).

  man_test.py render PAGE...   each built page renders with `man --warnings -l` without a
                               warning (groff's and man's) and says something
  man_test.py coverage SOURCE  every [appliance] key, section and section key the config parser
                               accepts (control/config/config.cpp) is documented in
                               moat.ini(5); every moatd option (control/runtime/daemon.cpp) in
                               moatd(8); every moatctl command and option (tools/moatctl.cpp)
                               in moatctl(8). A key added to the parser without its page fails here.
"""
import os
import re
import subprocess
import sys

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def render(pages):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for page in pages:
        r = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True, env=env, timeout=60)
        check(r.returncode == 0, f"man -l {page} exited {r.returncode}: {r.stderr}")
        check(r.stderr.strip() == "", f"man --warnings -l {page} warns:\n{r.stderr}")
        check(len(r.stdout.splitlines()) > 20, f"{page} renders to almost nothing:\n{r.stdout}")


def read(root, path):
    with open(os.path.join(root, path), encoding="utf-8") as f:
        return f.read()


def documented_items(scd):
    """Names written as definition items: a line that starts with *NAME* (a key, a command, an
    option), outside code blocks."""
    items, in_code = set(), False
    for line in scd.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        m = re.match(r"\*([^*\s]+)\*", line)
        if m and not in_code:
            items.add(m.group(1))
    return items


def sections(scd):
    """The page cut at its '# ' headings: {heading: text}."""
    out, heading = {}, None
    for line in scd.splitlines():
        if line.startswith("# "):
            heading = line[2:].strip()
            out[heading] = ""
        elif heading:
            out[heading] += line + "\n"
    return out


def coverage(root):
    config_cpp = read(root, "control/config/config.cpp")
    ini = sections(read(root, "docs/man/moat.ini.5.scd"))
    # The sections: [appliance], then the kinds the parser takes with a name.
    kinds = set(re.findall(r'kind [!=]= "(\w+)"', config_cpp))
    check({"appliance", "filterlist", "filteraction", "policy"} <= kinds, f"the section kinds of config.cpp moved: {kinds}")
    heading_of = {}
    for kind in kinds:
        h = [s for s in ini if s == f"[{kind}]" or s.startswith(f"[{kind} ")]
        check(len(h) == 1, f"moat.ini(5) has no section heading for [{kind}] (its headings: {list(ini)})")
        if h:
            heading_of[kind] = h[0]
    # The keys of each section: the parser's constexpr arrays kApplianceKeys, kFilterListKeys, ...
    arrays = {"appliance": "kApplianceKeys", "filterlist": "kFilterListKeys", "filteraction": "kFilterActionKeys",
              "policy": "kPolicyKeys"}
    for kind, array in arrays.items():
        m = re.search(array + r"\s*\{([^}]*)\}", config_cpp)
        if not m:
            check(False, f"config.cpp has no {array}")
            continue
        keys = re.findall(r'"([a-z0-9_]+)"', m.group(1))
        check(len(keys) >= (19 if kind == "appliance" else 2), f"{array} yielded only {keys}")
        items = documented_items(ini.get(heading_of.get(kind, ""), ""))
        for key in keys:
            check(key in items, f"moat.ini(5) does not document [{kind}] key '{key}' (a line '*{key}* = ...' under "
                                f"'# {heading_of.get(kind, kind)}')")

    # moatd's options: every argument parse_options compares with.
    daemon = read(root, "control/runtime/daemon.cpp")
    options = set(re.findall(r'a == "(-[-\w]+)"', daemon))
    check({"--config", "--stats-period", "--counters-json", "--version", "--help"} <= options, f"moatd's options moved: {options}")
    items = documented_items(read(root, "docs/man/moatd.8.scd"))
    body = read(root, "docs/man/moatd.8.scd")
    for o in options:
        check(o in items or f"*{o}*" in body, f"moatd(8) does not document {o}")

    # moatctl's commands (what run() dispatches) and its options.
    moatctl = read(root, "tools/moatctl.cpp")
    page = read(root, "docs/man/moatctl.8.scd")
    items = documented_items(page)
    commands = set(re.findall(r'cmd == "(\w+)"', moatctl)) | set(re.findall(r'args\[0\] == "(\w+)"', moatctl))
    check({"check", "lint", "explain", "ipsecpol", "status", "stats", "rules", "reload", "assign", "unassign", "help"} <= commands,
          f"moatctl's commands moved: {commands}")
    for c in commands:
        check(c in items, f"moatctl(8) does not document the command '{c}' (a line '*{c}* ...')")
    for o in set(re.findall(r'"(--[a-z][-a-z]*)"', moatctl)):
        check(f"*{o}*" in page, f"moatctl(8) does not document {o}")


if sys.argv[1] == "render":
    render(sys.argv[2:])
elif sys.argv[1] == "coverage":
    coverage(sys.argv[2])
else:
    sys.exit("usage: man_test.py render PAGE... | coverage SOURCE")
if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print(sys.argv[1] + ": ok")
