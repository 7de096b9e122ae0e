#!/usr/bin/env python3
"""What `meson install` puts where, and what the installed tree does (README: Installing and
running as a service). One check per command line:

  install_test.py version BUILD   moatd --version and moatctl --version: the project version
                                  (meson introspect --projectinfo) and the git revision built
  install_test.py install BUILD   meson install --destdir: every expected file, the sample
                                  config installed as SYSCONFDIR/moat/moat.ini and loading with
                                  the installed moatctl check, a reinstall keeping an edited
                                  config, --version of the installed binaries
  install_test.py unit BUILD      systemd-analyze verify on the installed moatd.service (its
                                  ExecStart pointed at the DESTDIR binary, MANPATH at the DESTDIR
                                  pages so that Documentation= resolves), with no warning; and
                                  the same verify failing on broken copies, so it really checks
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

mode, build = sys.argv[1], os.path.abspath(sys.argv[2])
source = os.environ.get("MOAT_SOURCE_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def introspect(what):
    return json.loads(run(["meson", "introspect", what, build], check=True).stdout)


options = {o["name"]: o["value"] for o in introspect("--buildoptions")}
project_version = introspect("--projectinfo")["version"]


def absolute(opt):
    """An install directory option as an absolute path (meson joins relative ones to the prefix)."""
    v = options[opt]
    return v if os.path.isabs(v) else os.path.join(options["prefix"], v)


def check_version(binary, name):
    r = run([binary, "--version"])
    check(r.returncode == 0, f"{binary} --version exited {r.returncode}: {r.stderr}")
    m = re.fullmatch(r"(\S+) (\S+) \(revision (\S+)\)\n", r.stdout)
    if not check(m is not None, f"{binary} --version printed {r.stdout!r}, not 'NAME VERSION (revision REV)'"):
        return
    check(m.group(1) == name, f"{binary} --version names {m.group(1)!r}, not {name!r}")
    check(m.group(2) == project_version, f"{binary} --version says {m.group(2)!r}, meson's project version is {project_version!r}")
    rev = m.group(3)
    in_git = run(["git", "-C", source, "rev-parse", "--git-dir"]).returncode == 0
    if not in_git:
        check(rev == "unknown", f"{binary}: built outside git, the revision should be 'unknown', not {rev!r}")
        return
    # git describe --always --dirty=+: [TAG-N-g]HASH[+]; the hash must be a commit of this repository.
    h = re.fullmatch(r"(?:.*-g)?([0-9a-f]{7,40})\+?", rev)
    if check(h is not None, f"{binary}: revision {rev!r} is not what git describe prints"):
        check(run(["git", "-C", source, "cat-file", "-e", h.group(1) + "^{commit}"]).returncode == 0,
              f"{binary}: revision {rev!r} is no commit of {source}")


def install(destdir):
    r = run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", destdir])
    check(r.returncode == 0, f"meson install failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def installed(path):
    return os.path.join(DESTDIR, path.lstrip("/"))


def unit_dir():
    return options["systemdsystemunitdir"] or os.path.join(options["prefix"], "lib", "systemd", "system")


def tmpfiles_dir():
    return options["tmpfilesdir"] or os.path.join(options["prefix"], "lib", "tmpfiles.d")


with tempfile.TemporaryDirectory(prefix="moat-install.") as tmp:
    DESTDIR = os.path.join(tmp, "root")
    sbin, sysconf = absolute("sbindir"), absolute("sysconfdir")
    config = os.path.join(sysconf, "moat", "moat.ini")
    sample = os.path.join(absolute("datadir"), "moat", "moat.ini.sample")
    unit = os.path.join(unit_dir(), "moatd.service")

    if mode == "version":
        check_version(os.path.join(build, "tools", "moatd"), "moatd")
        check_version(os.path.join(build, "tools", "moatctl"), "moatctl")

    elif mode == "install":
        install(DESTDIR)
        mandir = absolute("mandir")
        expected = [os.path.join(sbin, "moatd"), os.path.join(sbin, "moatctl"),
                    os.path.join(mandir, "man8", "moatd.8"), os.path.join(mandir, "man8", "moatctl.8"),
                    os.path.join(mandir, "man5", "moat.ini.5"), sample, config, unit,
                    os.path.join(tmpfiles_dir(), "moat.conf")]
        for f in expected:
            check(os.path.isfile(installed(f)) and os.path.getsize(installed(f)) > 0, f"not installed: {f}")
        for b in ("moatd", "moatctl"):
            check(os.access(installed(os.path.join(sbin, b)), os.X_OK), f"{b} is not executable")
        pristine = open(os.path.join(source, "conf", "moat.ini")).read()
        check(open(installed(sample)).read() == pristine, f"{sample} is not conf/moat.ini")
        check(open(installed(config)).read() == pristine, f"{config} is not the sample")
        tmpfiles = open(installed(os.path.join(tmpfiles_dir(), "moat.conf"))).read()
        check(re.search(r"^d /run/moat 0755 root root -$", tmpfiles, re.M) is not None,
              f"tmpfiles.d/moat.conf does not make /run/moat:\n{tmpfiles}")
        # The default control socket's directory is the one tmpfiles.d makes.
        check(re.search(r"^control\s*=\s*/run/moat/", pristine, re.M) is not None, "the sample's control socket is not in /run/moat")

        # The installed moatctl loads the installed config (its default path, too: sysconfdir).
        moatctl = installed(os.path.join(sbin, "moatctl"))
        r = run([moatctl, "check", installed(config)])
        check(r.returncode == 0, f"installed moatctl check {config} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        r = run([moatctl, "help"])
        check(config in r.stdout, f"moatctl's default config is not {config}:\n{r.stdout}")
        check_version(installed(os.path.join(sbin, "moatd")), "moatd")
        check_version(moatctl, "moatctl")

        # The operator edits the config; a reinstall keeps the edit and refreshes the sample.
        edited = pristine.replace("assign     = Web server", "assign     =") + "; edited by the operator\n"
        check(edited != pristine, "the edit changed nothing (the sample's assign line moved?)")
        with open(installed(config), "w") as f:
            f.write(edited)
        with open(installed(sample), "w") as f:
            f.write("stale\n")
        install(DESTDIR)
        check(open(installed(config)).read() == edited, f"a reinstall overwrote the edited {config}")
        check(open(installed(sample)).read() == pristine, f"a reinstall did not refresh {sample}")
        # Without a config, a reinstall puts the sample there again.
        os.remove(installed(config))
        install(DESTDIR)
        check(os.path.isfile(installed(config)) and open(installed(config)).read() == pristine,
              f"a reinstall without {config} did not install the sample")

    elif mode == "unit":
        install(DESTDIR)
        text = open(installed(unit)).read()
        exec_start = re.search(r"^ExecStart=(\S+)(.*)$", text, re.M)
        check(exec_start is not None and exec_start.group(1) == os.path.join(sbin, "moatd"),
              f"ExecStart is not {os.path.join(sbin, 'moatd')}: {exec_start and exec_start.group(0)}")
        check(exec_start is not None and f"--config {config}" in exec_start.group(2), f"ExecStart does not name {config}")
        for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure"):
            check(re.search("^" + re.escape(line) + "$", text, re.M) is not None, f"the unit lacks {line}")
        check(re.search(r"^WatchdogSec=\S+$", text, re.M) is not None, "the unit lacks WatchdogSec=")
        check(re.search(r"^RuntimeDirectory=.*\bmoat\b", text, re.M) is not None, "the unit does not make /run/moat")

        # systemd-analyze verify checks that ExecStart is there: a copy whose ExecStart is the
        # DESTDIR binary (the only difference), and man pages found in the DESTDIR.
        env = dict(os.environ, MANPATH=installed(absolute("mandir")))
        vdir = os.path.join(tmp, "verify")
        os.makedirs(vdir)

        def verify(unit_text):
            path = os.path.join(vdir, "moatd.service")
            with open(path, "w") as f:
                f.write(unit_text)
            return run(["systemd-analyze", "verify", path], env=env, cwd=vdir)

        here = text.replace("ExecStart=" + exec_start.group(1), "ExecStart=" + installed(exec_start.group(1)), 1)
        r = verify(here)
        check(r.returncode == 0 and not (r.stdout + r.stderr).strip(),
              f"systemd-analyze verify moatd.service: exit {r.returncode}\n{r.stdout}{r.stderr}")
        # The same verify must notice a missing binary and a bad setting, or it proves nothing.
        r = verify(text.replace("ExecStart=" + exec_start.group(1), "ExecStart=" + installed("/nonexistent/moatd"), 1))
        check(r.returncode != 0, "systemd-analyze verify passed a unit whose ExecStart does not exist")
        r = verify(here.replace("Type=notify", "Type=notifyy"))
        check((r.stdout + r.stderr).strip() != "", "systemd-analyze verify said nothing about Type=notifyy")
    else:
        sys.exit(f"unknown mode {mode}")

if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print(f"{mode}: ok")
