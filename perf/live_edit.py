"""Live policy as an operator sees it (run by perf/live-edit): a real moatd on null ports, its
config file edited the way editors do (a new file renamed over the old one), and `status` asked
over the control socket until the new generation shows.

For each policy (ClassBench sets via build/perf/classbench_policy, generated shapes via
build/perf/shape_policy) and each edit:

  swap     every filter changes action (the two rules' actions are exchanged), and back
  add1     one filter added to the first list, then removed again (the edit back)
  remove1  the first list's first filter removed, then put back
  add1000  1000 filters added to the first list, then removed again

each applied --edits times (half of them the edit back), it reports, from the rename to the
generation in `status`: the median, p99 and worst time; the longest a `status` request took to
answer during the edits (the timing client asks every millisecond, through the reloads and the
lint runs); and the lines moatd wrote to its log per edit. The timing client is a separate
process from moatd, so what it measures includes the file watch's 2 ms settle time, the build,
the publish and a round trip on the socket.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from moat_socket import ask

HERE = os.path.dirname(os.path.abspath(__file__))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


class Policy:
    """A policy's text, split so that edits can be made to it."""

    def __init__(self, text):
        lines = text.split("\n")
        self.head, self.lists, self.rules = [], [], []  # lists: [name, [filters]]
        section = None
        for line in lines:
            if line.startswith("[filterlist "):
                self.lists.append([line[len("[filterlist "):-1], []])
                section = "list"
            elif line.startswith("[policy "):
                self.policy = line[len("[policy "):-1]
                section = "policy"
            elif line.startswith("[appliance]"):
                section = "appliance"
            elif section == "list" and line.startswith("filter = "):
                self.lists[-1][1].append(line)
            elif section == "policy" and line.startswith("rule = "):
                self.rules.append(line)
            elif section == "appliance" and line.strip():
                self.head.append(line)

    def text(self, appliance, extra_first=(), drop_first=0, swap=False):
        out = ["[appliance]"] + appliance + self.head
        for i, (name, filters) in enumerate(self.lists):
            out.append(f"[filterlist {name}]")
            fs = filters[drop_first:] if i == 0 else filters
            out += fs
            if i == 0:
                out += list(extra_first)
        out.append(f"[policy {self.policy}]")
        for r in self.rules:
            if swap and r.endswith("-> permit"):
                r = r[: -len("permit")] + "block"
            elif swap and r.endswith("-> block"):
                r = r[: -len("block")] + "permit"
            out.append(r)
        return "\n".join(out) + "\n"


def run_policy(build, name, text, edits, cpu):
    pol = Policy(text)
    filters = sum(len(f) for _, f in pol.lists)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sock = f"{tmp}/moat.sock"
        appliance = ["outside = net_null0", "inside = net_null1",
                     f"eal = --no-huge -m 1024 -l 0-1 --file-prefix moat-le-{os.getpid()}", f"control = {sock}"]
        cfg = f"{tmp}/moat.ini"
        base = pol.text(appliance)
        open(cfg, "w").write(base)
        log_path = f"{tmp}/moatd.log"
        log = open(log_path, "w")
        moatd = subprocess.Popen([f"{build}/tools/moatd", "--config", cfg], stdout=subprocess.DEVNULL, stderr=log)
        try:
            for _ in range(1200):
                try:
                    if ask(sock, {"cmd": "status"}, 1).get("ok"):
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.1)
            else:
                sys.exit(f"{name}: moatd did not come up:\n" + open(log_path).read()[-2000:])
            # Let the first lint finish, so that the edits start from a quiet moatd.
            for _ in range(600):
                if ask(sock, {"cmd": "status"})["lint"]["done"]:
                    break
                time.sleep(0.1)
            first_filter = pol.lists[0][1][0] if pol.lists and pol.lists[0][1] else None
            added = [f"filter = 198.19.{i // 250}.{i % 250}+198.18.0.10:{1 + i}:TCP" for i in range(1000)]
            kinds = {
                "swap": (pol.text(appliance, swap=True), base),
                "add1": (pol.text(appliance, extra_first=added[:1]), base),
                "remove1": (pol.text(appliance, drop_first=1), base) if first_filter else None,
                "add1000": (pol.text(appliance, extra_first=added), base),
            }
            for kind, pair in kinds.items():
                if pair is None:
                    continue
                lat, worst_status, log_lines = [], 0.0, []
                for e in range(edits):
                    new = pair[e % 2 == 1]
                    gen = ask(sock, {"cmd": "status"})["generation"]
                    lines_before = sum(1 for _ in open(log_path))
                    open(cfg + ".new", "w").write(new)
                    t0 = time.perf_counter()
                    os.rename(cfg + ".new", cfg)
                    seen = None
                    while time.perf_counter() - t0 < 120:
                        a = time.perf_counter()
                        st = ask(sock, {"cmd": "status"})
                        worst_status = max(worst_status, (time.perf_counter() - a) * 1000)
                        if st["generation"] > gen:
                            seen = (time.perf_counter() - t0) * 1000
                            break
                        time.sleep(0.001)
                    if seen is None:
                        sys.exit(f"{name} {kind}: the edit was not published:\n" + open(log_path).read()[-3000:])
                    lat.append(seen)
                    # Keep asking through the lint of this generation (its cost is off the path,
                    # but status must answer throughout), then count the log lines it all wrote.
                    while True:
                        a = time.perf_counter()
                        st = ask(sock, {"cmd": "status"})
                        worst_status = max(worst_status, (time.perf_counter() - a) * 1000)
                        if st["lint"]["done"] or time.perf_counter() - t0 > 120:
                            break
                        time.sleep(0.001)
                    log_lines.append(sum(1 for _ in open(log_path)) - lines_before)
                rows.append((name, filters, kind, statistics.median(lat), pct(lat, 0.99), max(lat), worst_status,
                             max(log_lines)))
                print(f"| {name} | {filters} | {kind} | {statistics.median(lat):.1f} | {pct(lat, 0.99):.1f} | "
                      f"{max(lat):.1f} | {worst_status:.1f} | {max(log_lines)} |", flush=True)
        finally:
            moatd.send_signal(signal.SIGTERM)
            try:
                moatd.wait(30)
            except subprocess.TimeoutExpired:
                moatd.kill()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--sets", default="acl1_1K,fw1_1K,ipc1_1K,acl1_10K,fw1_10K,ipc1_10K,acl1_100K,fw1_100K,ipc1_100K")
    ap.add_argument("--shapes", default="hostport:8000,hostport:10000,hostport-oneway:10000,prefixes:10000,ports:10000,"
                                        "ipv6:10000,many-me:1000,hostport:100000",
                    help="SHAPE:FILTERS,... (perf/shapes.h)")
    ap.add_argument("--edits", type=int, default=20)
    a = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}; {a.edits} edits of each kind, half of them back")
    print("| policy | filters | edit | median ms | p99 ms | worst ms | status worst ms | log lines per edit |")
    print("|---|---|---|---|---|---|---|---|")
    for s in filter(None, a.sets.split(",")):
        text = subprocess.run([f"{a.build}/perf/classbench_policy", s], check=True, capture_output=True, text=True).stdout
        run_policy(a.build, s, text, a.edits, cpu)
    for spec in filter(None, a.shapes.split(",")):
        shape, n = spec.split(":")
        text = subprocess.run([f"{a.build}/perf/shape_policy", shape, n], check=True, capture_output=True, text=True).stdout
        run_policy(a.build, f"{shape} {n}", text, a.edits, cpu)


if __name__ == "__main__":
    main()
