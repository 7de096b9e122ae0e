"""How long moatd's control socket takes to answer while hostile clients work on it (run by
perf/control-clients).

A real moatd runs with net_null ports (its worker polls and drops all the while) on a policy:
the 3-filter test policy, or a ClassBench set (--set acl1_10K) so that rules and stats replies
are tens of MB. Its control socket is asked for `status` by a timing client, once every 20 ms,
in two phases of the same length:

  quiet    nobody else is connected
  hostile  at the same time: 8 slow-loris clients (a byte every 0.8 s, never a newline), 4 that
           ask for `rules` or `stats` and never read, a flood that holds 100 silent connections
           and sends garbage, over-long lines and deep nesting, clients that vanish mid-reply,
           and one that reads `rules` whole, as fast as it can, over and over

It prints the median, p99 and worst time to the answer in each phase (a stalled control thread
shows as seconds or as no answer at all), the time from an edit's rename to the new generation in
`status` during the hostile phase, and how long moatd takes to exit on SIGTERM with the attackers
still connected.
"""
import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from moat_socket import ask

HERE = os.path.dirname(os.path.abspath(__file__))

SMALL_POLICY = """[filterlist Web]
filter = *+198.18.0.10:80:TCP
[filterlist Everything]
filter = *+*
[policy P]
rule = Web -> permit
rule = Everything -> block
"""


def appliance(tmp, assign):
    return (f"[appliance]\noutside = net_null0\ninside = net_null1\n"
            f"eal = --no-huge -m 512 -l 0-1 --file-prefix moat-cc-{os.getpid()}\n"
            f"control = {tmp}/moat.sock\nme = 198.18.0.10\nassign = {assign}\n")


def dial(path, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def timed_ask(path, req, timeout=5.0):
    """The reply to one request, and the seconds it took (None when there was no answer)."""
    t0 = time.perf_counter()
    try:
        return ask(path, req, timeout), time.perf_counter() - t0
    except (OSError, ValueError) as e:
        if os.environ.get("MOAT_CC_DEBUG"):
            print("no answer:", repr(e), "after %.1f ms" % ((time.perf_counter() - t0) * 1000), file=sys.stderr)
        return None, None


class Attack:
    def __init__(self, path):
        self.path, self.stop, self.threads = path, threading.Event(), []

    def spawn(self, fn):
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self.threads.append(t)

    def slow_loris(self):
        while not self.stop.is_set():
            try:
                s = dial(self.path)
                while not self.stop.is_set():
                    s.send(b"{")
                    self.stop.wait(0.8)
            except OSError:
                self.stop.wait(0.05)

    def never_reads(self, cmd):
        while not self.stop.is_set():
            try:
                s = dial(self.path)
                s.sendall((json.dumps(cmd) + "\n").encode())
                self.stop.wait(5)
                s.close()
            except OSError:
                self.stop.wait(0.05)

    def flood(self):
        junk = [b"x" * 100000 + b"\n", b"[" * 5000 + b"\n", b"\0\xff\xfe{}\n", b"null\n", b'{"cmd":["status"]}\n']
        while not self.stop.is_set():
            held = []
            for _ in range(100):
                try:
                    held.append(dial(self.path))
                except OSError:
                    pass
            for j in junk:
                try:
                    s = dial(self.path)
                    s.sendall(j)
                    s.close()
                except OSError:
                    pass
            for cmd in ({"cmd": "rules"}, {"cmd": "stats", "format": "prometheus"}):  # vanish mid-reply
                try:
                    s = dial(self.path)
                    s.sendall((json.dumps(cmd) + "\n").encode())
                    s.recv(100)
                    s.close()
                except OSError:
                    pass
            self.stop.wait(0.3)
            for s in held:
                s.close()

    def fast_reader(self):
        while not self.stop.is_set():
            try:
                s = dial(self.path, 30)
                s.sendall(b'{"cmd":"rules"}\n')
                while not s.recv(1 << 20).endswith(b"\n"):
                    pass
                s.close()
            except OSError:
                self.stop.wait(0.05)

    def run(self):
        for _ in range(8):
            self.spawn(self.slow_loris)
        for i in range(4):
            self.spawn(lambda i=i: self.never_reads({"cmd": "rules"} if i % 2 else {"cmd": "stats", "format": "text"}))
        self.spawn(self.flood)
        self.spawn(self.fast_reader)
        self.stop.wait()


def attack_process(path, stop):
    """The attackers, in a process of their own: the timing client shares no interpreter lock
    with them."""
    a = Attack(path)
    threading.Thread(target=lambda: (stop.wait(), a.stop.set()), daemon=True).start()
    a.run()


def timings(path, seconds):
    out, missed = [], 0
    end = time.time() + seconds
    while time.time() < end:
        _, dt = timed_ask(path, {"cmd": "status"})
        if dt is None:
            missed += 1
        else:
            out.append(dt * 1000)
        time.sleep(0.02)
    return out, missed


def summary(name, ms, missed):
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")
    return (f"| {name} | {len(ms)} | {statistics.median(ms) if ms else float('nan'):.2f} | {p99:.2f} | "
            f"{max(ms) if ms else float('nan'):.2f} | {missed} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--set", default="", help="a ClassBench set for the policy (e.g. acl1_10K); default: 3 filters")
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    with tempfile.TemporaryDirectory() as tmp:
        if a.set:
            text = subprocess.run([f"{a.build}/perf/classbench_policy", a.set], check=True,
                                  capture_output=True, text=True).stdout
            # classbench_policy's [appliance] assigns its policy; the ports and the socket go first.
            text = text.replace("[appliance]\n", appliance(tmp, "ClassBench").replace("assign = ClassBench\n", ""), 1)
        else:
            text = appliance(tmp, "P") + SMALL_POLICY
        cfg = f"{tmp}/moat.ini"
        open(cfg, "w").write(text)
        log = open(os.environ.get("MOATD_LOG", f"{tmp}/moatd.log"), "w")
        moatd = subprocess.Popen([f"{a.build}/tools/moatd", "--config", cfg], stdout=subprocess.DEVNULL, stderr=log)
        sock = f"{tmp}/moat.sock"
        try:
            for _ in range(600):
                if timed_ask(sock, {"cmd": "status"})[0]:
                    break
                time.sleep(0.1)
            else:
                sys.exit("moatd did not come up: " + open(f"{tmp}/moatd.log").read())
            rules = timed_ask(sock, {"cmd": "rules"}, 60)[0]
            print(f"CPU: {cpu}; policy: {a.set or '3 filters'}, {len(rules['rules'])} ranked entries")
            quiet = timings(sock, a.seconds)
            stop = multiprocessing.Event()
            attacker = multiprocessing.Process(target=attack_process, args=(sock, stop), daemon=True)
            attacker.start()
            time.sleep(1)
            hostile = timings(sock, a.seconds)
            # An edit during the attack: rename -> generation visible.
            gen = timed_ask(sock, {"cmd": "status"})[0]["generation"]
            open(cfg + ".new", "w").write(text + "; edited\n")
            t0 = time.perf_counter()
            os.rename(cfg + ".new", cfg)
            edit_ms = None
            while time.perf_counter() - t0 < 30:
                st = timed_ask(sock, {"cmd": "status"})[0]
                if st and st["generation"] > gen:
                    edit_ms = (time.perf_counter() - t0) * 1000
                    break
                time.sleep(0.002)
            t0 = time.perf_counter()
            moatd.send_signal(signal.SIGTERM)
            rc = moatd.wait(30)
            exit_ms = (time.perf_counter() - t0) * 1000
            stop.set()
            attacker.join(10)
        finally:
            if moatd.poll() is None:
                moatd.kill()
        print("| phase | answers | median ms | p99 ms | worst ms | no answer |")
        print("|---|---|---|---|---|---|")
        print(summary("quiet", *quiet))
        print(summary("hostile clients", *hostile))
        print(f"edit renamed -> generation in status, under attack: "
              f"{'no new generation' if edit_ms is None else f'{edit_ms:.1f} ms'}")
        print(f"SIGTERM -> exit under attack: {exit_ms:.0f} ms, status {rc}")


if __name__ == "__main__":
    main()
