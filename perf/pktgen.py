"""Pktgen-DPDK through moatd and through plain dpdk-testpmd io, checked on counts (run by perf/pktgen).

Set-up (two DPDK processes, each with its own --file-prefix, --lcores and --no-pci):

  generator   Pktgen-DPDK (the user's binary, --pktgen), two net_memif server ports; main and
              port lcores all on CPU 0. It runs perf/pktgen-moat.lua: phases permitted, blocked
              and mix (see that file) at each rate of --rates (percent of Pktgen's rate setting).
  under test  moatd with perf/ten-filters.ini (clients = 198.18.100.0/24), then plain
              dpdk-testpmd --forward-mode=io in the same place; both memif clients, outside =
              Pktgen port 0, inside = Pktgen port 1; the worker (forwarding lcore) on CPU 1.

Between phases the Lua script waits for the harness (a go file in a shared directory), so each
phase's counters are deltas: Pktgen's (port 0 opackets, port 1 ipackets, once they stop moving)
and the device's (moatd: `moatctl stats --json`; testpmd: its --stats-period port statistics).

Checks, per phase, all on counts (never on rates: this machine is shared):
  moatd  sent == outside rx_packets (memif never loses: a full ring makes Pktgen's tx retry),
         outside rx == inside tx + inside tx_failed + outside dropped (every packet accounted
         for: forwarded, refused by the full tx ring towards Pktgen port 1, or dropped for a
         counted reason), Pktgen port 1 received == inside tx_packets;
         permitted: hits of the permitted filter == sent, no drops;
         blocked:   drops.policy == sent, hits == 0, nothing forwarded or refused;
         mix:       hits + drops.policy == sent, forwarded + tx_failed == hits, both kinds present.
  testpmd sent == port 0 RX-packets + RX-missed, Pktgen port 1 received == port 1 TX-packets.
Exits 1 when a check fails, 2 on a set-up error (with the failing process's output).
"""
import argparse
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from throughput import IPSEC_POLICY, hugepages_free_mb  # noqa: E402  (perf's shared policy and memory probe)

CLIENTS = "198.18.100.0/24"   # the permitted sources; perf/pktgen-moat.lua sends from here (and the next /24)
PERMITTED_LIST = "Generator clients"
PHASES = ("permitted", "blocked", "mix")
STARTUP_SECONDS = 60          # longest wait for a process to come up
SETTLE_SECONDS = 30           # longest wait for the device's counters to stop moving


class SetupError(Exception):
    pass


NO_HUGE = False               # --no-huge: 4 KB pages even where hugepages are free


def memory(mb):
    """EAL memory arguments: hugepages when a hugetlbfs has room, else 4 KB pages."""
    if not NO_HUGE and os.path.ismount("/dev/hugepages") and hugepages_free_mb() >= mb + 256:
        return ["-m", str(mb), "--in-memory"]
    return ["--no-huge", "-m", "1024"]


ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[78=>])")


def tail(path, n=3000):
    """The end of a log, without the terminal's escape sequences (Pktgen draws a screen)."""
    try:
        with open(path, errors="replace") as f:
            return ANSI.sub("", f.read()).replace("\r", "")[-n:]
    except OSError:
        return "(no output)"


class Proc:
    """A child process with its output in a file; a terminal (pty) on request, as Pktgen needs one."""

    def __init__(self, name, args, log, env=None, tty=False):
        self.name, self.log = name, log
        self.out = open(log, "wb")
        self.reader = None
        if tty:
            master, slave = pty.openpty()
            self.p = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
            os.close(slave)
            self.reader = threading.Thread(target=self._copy, args=(master,), daemon=True)
            self.reader.start()
        else:
            self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True)

    def _copy(self, master):
        # Reads the terminal until the process closes it (so that it never blocks on a full pty).
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            self.out.write(data)
            self.out.flush()
        os.close(master)

    def alive(self):
        return self.p.poll() is None

    def text(self):
        return tail(self.log, 1 << 30)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops it by its pid: sig, then SIGKILL after timeout seconds."""
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.reader:
            self.reader.join(5)
        if not self.out.closed:
            self.out.close()
        return self.p.returncode


def wait_for(what, ok, procs, seconds):
    """Waits until ok() holds; SetupError when a process dies or after `seconds`."""
    deadline = time.time() + seconds
    while not ok():
        for p in procs:
            if not p.alive():
                raise SetupError(f"{p.name} exited (status {p.p.returncode}) while waiting for {what}; "
                                 f"the end of its output ({p.log}):\n{tail(p.log)}")
        if time.time() > deadline:
            raise SetupError(f"timed out after {seconds:.0f} s waiting for {what}; the end of the output:\n" +
                             "\n".join(f"--- {p.name} ({p.log}):\n{tail(p.log, 1500)}" for p in procs))
        time.sleep(0.1)


# --- the devices under test -------------------------------------------------------------------

class Moatd:
    name = "moatd"

    def __init__(self, args, tmp, prefix):
        self.moatctl = f"{args.build}/tools/moatctl"
        self.sock = f"{tmp}/moat.sock"
        cfg = f"{tmp}/moat.ini"
        with open(cfg, "w") as f:
            f.write("[appliance]\n"
                    f"outside = net_memif0,role=client,socket={tmp}/pg0.sock,id=0,socket-abstract=no\n"
                    f"inside = net_memif1,role=client,socket={tmp}/pg1.sock,id=0,socket-abstract=no\n"
                    "me = 198.18.0.10, 198.18.0.20\n"
                    f"eal = --lcores 0@0,1@1 --no-pci {' '.join(memory(256))} --file-prefix {prefix} --log-level *:error\n"
                    f"control = {self.sock}\n"
                    "assign = Servers\n" + IPSEC_POLICY.format(clients=CLIENTS))
        self.proc = Proc("moatd", [f"{args.build}/tools/moatd", "--config", cfg], f"{tmp}/moatd.log")

    def stats(self):
        try:
            r = subprocess.run([self.moatctl, "--socket", self.sock, "--timeout", "5", "stats", "--json"],
                               capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        try:
            j = json.loads(r.stdout)
        except ValueError:
            return None
        ports = j["ports"]
        return {
            "out_rx": ports["outside"]["rx_packets"], "out_dropped": ports["outside"]["dropped"],
            "in_tx": ports["inside"]["tx_packets"], "in_tx_failed": ports["inside"]["tx_failed"],
            "in_rx": ports["inside"]["rx_packets"], "out_tx": ports["outside"]["tx_packets"],
            "hits": sum(f["packets"] for f in j["filters"] if f["filterlist"] == PERMITTED_LIST),
            "drops": dict(j["drops"]),
        }

    def ready(self):
        return self.stats() is not None

    def settled(self):
        return settle(self.stats, [self.proc])

    def stop(self):
        return self.proc.stop(signal.SIGTERM)

    @staticmethod
    def delta(a, b):
        d = {k: b[k] - a[k] for k in a if k != "drops"}
        d["drops"] = {k: b["drops"][k] - a["drops"].get(k, 0) for k in b["drops"]}
        return d

    @staticmethod
    def check(phase, pg, d):
        """The failed checks of one phase (empty: every packet accounted for)."""
        sent, fails = pg["sent"], []
        dropped = sum(d["drops"].values())

        def want(what, got, expected):
            if got != expected:
                fails.append(f"{what} {got} != {expected}")

        want("outside rx_packets", d["out_rx"], sent)
        want("forwarded + tx_failed + dropped", d["in_tx"] + d["in_tx_failed"] + d["out_dropped"], d["out_rx"])
        want("drops per reason", dropped, d["out_dropped"])
        want("Pktgen port 1 received", pg["received"], d["in_tx"])
        if phase == "permitted":
            want("hits of the permitted filter", d["hits"], sent)
            want("forwarded + tx_failed", d["in_tx"] + d["in_tx_failed"], sent)
            want("drops", dropped, 0)
        elif phase == "blocked":
            want("drops.policy", d["drops"]["policy"], sent)
            want("hits of the permitted filter", d["hits"], 0)
            want("forwarded + tx_failed", d["in_tx"] + d["in_tx_failed"], 0)
        else:
            want("hits + drops.policy", d["hits"] + d["drops"]["policy"], sent)
            want("forwarded + tx_failed", d["in_tx"] + d["in_tx_failed"], d["hits"])
            if sent >= 512 and (d["hits"] == 0 or d["drops"]["policy"] == 0):
                fails.append("the mix has only one kind of packet")
        if sent == 0:
            fails.append("Pktgen sent nothing")
        return fails


class Testpmd:
    name = "testpmd io"

    def __init__(self, args, tmp, prefix):
        self.proc = Proc("dpdk-testpmd", [
            "dpdk-testpmd", "--lcores", "0@0,1@1", "--no-pci"] + memory(256) + [
            "--file-prefix", prefix, "--log-level", "*:error",
            "--vdev", f"net_memif0,role=client,socket={tmp}/pg0.sock,id=0,socket-abstract=no",
            "--vdev", f"net_memif1,role=client,socket={tmp}/pg1.sock,id=0,socket-abstract=no",
            "--", "--forward-mode=io", "--stats-period", "1"], f"{tmp}/testpmd.log")

    def stats(self):
        """The last complete pair of port statistics testpmd printed, with how many it printed."""
        blocks = self.proc.text().split("NIC statistics for port ")[1:]
        parsed = []
        for b in blocks:
            words = b.replace(":", " ").split()
            try:
                port = int(words[0])
                v = {k: int(words[words.index(k) + 1]) for k in ("RX-packets", "RX-missed", "TX-packets")}
            except (ValueError, IndexError):
                continue  # a block still being written
            parsed.append((port, v))
        pairs = [(a[1], b[1]) for a, b in zip(parsed, parsed[1:]) if a[0] == 0 and b[0] == 1]
        if not pairs:
            return None
        p0, p1 = pairs[-1]
        return {"n": len(pairs), "rx": p0["RX-packets"] + p0["RX-missed"], "tx": p1["TX-packets"],
                "back": p0["TX-packets"]}

    def ready(self):
        return self.stats() is not None

    def settled(self):
        # A reading printed after this call, equal to the one before it.
        start = self.stats()
        n0 = start["n"] if start else 0
        prev = None

        def fresh():
            s = self.stats()
            return s if s and s["n"] > n0 else None

        deadline = time.time() + SETTLE_SECONDS
        while time.time() < deadline:
            s = fresh()
            if s and prev and s["n"] > prev["n"] and all(s[k] == prev[k] for k in ("rx", "tx", "back")):
                return s
            if s and (not prev or s["n"] > prev["n"]):
                prev = s
            if not self.proc.alive():
                raise SetupError(f"dpdk-testpmd exited; its output:\n{tail(self.proc.log)}")
            time.sleep(0.2)
        raise SetupError("testpmd's counters did not settle")

    def stop(self):
        return self.proc.stop(signal.SIGINT)

    @staticmethod
    def delta(a, b):
        return {k: b[k] - a[k] for k in ("rx", "tx", "back")}

    @staticmethod
    def check(phase, pg, d):
        fails = []
        if d["rx"] != pg["sent"]:
            fails.append(f"port 0 RX-packets + RX-missed {d['rx']} != sent {pg['sent']}")
        if pg["received"] != d["tx"]:
            fails.append(f"Pktgen port 1 received {pg['received']} != port 1 TX-packets {d['tx']}")
        if pg["sent"] == 0:
            fails.append("Pktgen sent nothing")
        return fails


def settle(read, procs):
    """The device's counters once two readings 0.3 s apart agree."""
    prev = None
    deadline = time.time() + SETTLE_SECONDS
    while time.time() < deadline:
        s = read()
        if s is not None and s == prev:
            return s
        prev = s
        for p in procs:
            if not p.alive():
                raise SetupError(f"{p.name} exited; its output:\n{tail(p.log)}")
        time.sleep(0.3)
    raise SetupError("the device's counters did not settle (or its control socket did not answer)")


# --- one run: Pktgen against one device ---------------------------------------------------------

def parse_phase(line):
    kv = dict(w.split("=", 1) for w in line.split())
    return {"phase": kv["phase"], "rate": kv["rate"], "sent": int(kv["sent"]), "received": int(kv["received"]),
            "sent1": int(kv["sent1"]), "received0": int(kv["received0"])}


def run(args, device_class, tmp_root):
    tag = "moatd" if device_class is Moatd else "testpmd"
    tmp = tempfile.mkdtemp(prefix=f"{tag}.", dir=tmp_root)
    sync = f"{tmp}/sync"
    os.mkdir(sync)
    prefix = f"moat-pktgen-{os.getpid()}"
    env = dict(os.environ, MOAT_PKTGEN_DIR=sync, MOAT_PKTGEN_RATES=",".join(args.rates),
               MOAT_PKTGEN_MS=str(int(args.seconds * 1000)), MOAT_PKTGEN_WAIT_MS=str(STARTUP_SECONDS * 1000))
    # Pktgen's main lcore and its two port lcores (port 0 sends, port 1 receives) on CPU 0.
    pktgen = Proc("Pktgen", [args.pktgen, "--lcores", "(0-2)@0", "--no-pci"] + memory(512) + [
        "--file-prefix", f"{prefix}-gen", "--log-level", "*:error",
        "--vdev", f"net_memif0,role=server,socket={tmp}/pg0.sock,id=0,socket-abstract=no",
        "--vdev", f"net_memif1,role=server,socket={tmp}/pg1.sock,id=0,socket-abstract=no",
        "--", "-P", "-m", "1.0", "-m", "2.1", "-f", args.lua], f"{tmp}/pktgen.log", env=env, tty=True)
    procs = [pktgen]
    device = None
    rows = []
    try:
        # The memif servers first, started (the script runs once they are): a client that
        # comes too early is turned away and does not retry.
        wait_for("Pktgen's ports (its script's ready file)",
                 lambda: os.path.exists(f"{sync}/ready") and os.path.exists(f"{tmp}/pg0.sock")
                 and os.path.exists(f"{tmp}/pg1.sock"), procs, STARTUP_SECONDS)
        device = device_class(args, tmp, f"{prefix}-dut")
        procs.append(device.proc)
        wait_for(f"{device.name} to start", device.ready, procs, STARTUP_SECONDS)
        phases_file = f"{sync}/phases"
        seen = 0
        before = device.settled()
        total = len(args.rates) * len(PHASES)
        open(f"{sync}/go-0", "w").close()
        while seen < total:
            def lines():
                try:
                    with open(phases_file) as f:
                        return [l for l in f.read().splitlines() if l]
                except OSError:
                    return []
            wait_for(f"Pktgen's phase {seen + 1} of {total}", lambda: len(lines()) > seen, [pktgen, device.proc],
                     args.seconds + 60 + SETTLE_SECONDS)
            line = lines()[seen]
            if line.startswith("error"):
                raise SetupError(f"Pktgen's script stopped: {line}; the end of Pktgen's output:\n{tail(pktgen.log)}")
            pg = parse_phase(line)
            after = device.settled()
            d = device.delta(before, after)
            rows.append((pg, d, device.check(pg["phase"], pg, d)))
            print(f"  {device.name}: {pg['phase']} at {pg['rate']}%: sent {pg['sent']}, received {pg['received']}"
                  f"{'' if not rows[-1][2] else ', FAILED: ' + '; '.join(rows[-1][2])}", file=sys.stderr, flush=True)
            before = after
            seen += 1
            open(f"{sync}/go-{seen}", "w").close()
        wait_for("Pktgen to quit", lambda: not pktgen.alive(), [], 30)
    finally:
        # Stopped by pid, the device first (Pktgen's tx retries while a ring is full), then Pktgen.
        if device:
            device.stop()
        pktgen.stop(signal.SIGTERM, timeout=10)
    return rows


def validate_pktgen(path):
    if not path:
        sys.exit("error: --pktgen PATH is required: a Pktgen-DPDK binary built with Lua "
                 "(e.g. ../shared/tools/pktgen/build.sh DEST prints one)")
    path = os.path.abspath(path)
    if not os.path.exists(path):
        sys.exit(f"error: --pktgen {path}: no such file")
    if os.path.isdir(path):
        sys.exit(f"error: --pktgen {path}: is a directory, not the pktgen binary (e.g. DEST/build/app/pktgen)")
    if not os.access(path, os.X_OK):
        sys.exit(f"error: --pktgen {path}: not executable")
    return path


def main():
    ap = argparse.ArgumentParser(prog="perf/pktgen", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pktgen", help="the Pktgen-DPDK binary (built with Lua; required)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="Moat's build directory")
    ap.add_argument("--no-build", action="store_true", help="use --build as it is (do not run ninja)")
    ap.add_argument("--rates", default="1,10,100", help="percentages of Pktgen's rate setting")
    ap.add_argument("--seconds", type=float, default=2, help="seconds each phase sends")
    ap.add_argument("--devices", default="moatd,testpmd", help="moatd, testpmd or both")
    ap.add_argument("--no-huge", action="store_true", help="4 KB pages for every process, even where hugepages are free")
    ap.add_argument("--lua", default=os.path.join(HERE, "pktgen-moat.lua"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    global NO_HUGE
    NO_HUGE = args.no_huge
    args.pktgen = validate_pktgen(args.pktgen)
    args.build = os.path.abspath(args.build)
    args.rates = [r.strip() for r in args.rates.split(",") if r.strip()]
    for r in args.rates:
        if not r.isdigit() or not 1 <= int(r) <= 100:
            sys.exit(f"error: --rates: {r!r} is not a whole percentage from 1 to 100")
    if not args.rates:
        sys.exit("error: --rates: none given")
    if not 0.1 <= args.seconds <= 600:
        sys.exit("error: --seconds: from 0.1 to 600")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    for d in devices:
        if d not in ("moatd", "testpmd"):
            sys.exit(f"error: --devices: {d!r} is neither moatd nor testpmd")
    if not devices:
        sys.exit("error: --devices: none given")

    if not args.no_build:
        subprocess.run(["bash", "-c", 'source "$1/tools/lib.sh" && moat_build "$2"', "_", ROOT, args.build],
                       check=True, stdout=sys.stderr)
    if "testpmd" in devices and not shutil.which("dpdk-testpmd"):
        sys.exit("error: dpdk-testpmd is not installed (Debian's dpdk package; perf/pktgen installs it)")
    for exe in ([f"{args.build}/tools/moatd", f"{args.build}/tools/moatctl"] if "moatd" in devices else []):
        if not os.access(exe, os.X_OK):
            sys.exit(f"error: {exe} is missing (build Moat, or drop --no-build)")

    # Ctrl-C, SIGTERM and SIGHUP end the run: the finally blocks stop every process by its pid
    # (SIGINT too when the shell started this in the background with SIGINT ignored).
    def interrupt(sig, _):
        raise KeyboardInterrupt(f"signal {sig}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)

    # The processes' logs, the memif sockets and the Lua script's files; kept when the run fails.
    tmp = tempfile.mkdtemp(prefix="moat-pktgen.")
    results = {}
    try:
        for d in devices:
            print(f"  Pktgen -> {d} -> Pktgen, rates {','.join(args.rates)}%, {args.seconds:g} s a phase ...",
                  file=sys.stderr, flush=True)
            results[d] = run(args, Moatd if d == "moatd" else Testpmd, tmp)
    except SetupError as e:
        print(f"error: {e}\n(every process this run started is stopped; their logs are in {tmp})", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"interrupted; every process this run started is stopped (logs in {tmp})", file=sys.stderr)
        sys.exit(130)

    print("| phase | rate % | sent (moatd run) | moatd forwarded | moatd tx_failed | moatd drops | "
          "sent (testpmd run) | testpmd io forwarded | check |")
    print("|---|---|---|---|---|---|---|---|---|")
    failed = False
    n = len(next(iter(results.values())))
    for i in range(n):
        m = results.get("moatd", [None] * n)[i]
        t = results.get("testpmd", [None] * n)[i]
        pg = (m or t)[0]
        fails = (m[2] if m else []) + (t[2] if t else [])
        failed |= bool(fails)
        if m:
            drops = ", ".join(f"{k} {v}" for k, v in m[1]["drops"].items() if v) or "0"
            mcols = f"{m[0]['sent']} | {m[1]['in_tx']} | {m[1]['in_tx_failed']} | {drops}"
        else:
            mcols = "- | - | - | -"
        tcols = f"{t[0]['sent']} | {t[1]['tx']}" if t else "- | -"
        print(f"| {pg['phase']} | {pg['rate']} | {mcols} | {tcols} | {'FAILED: ' + '; '.join(fails) if fails else 'ok'} |")
    if failed:
        print(f"a check failed; the processes' logs are in {tmp}", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
