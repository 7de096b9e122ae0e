"""End-to-end on net_tap ports in a network namespace of its own (moatnic-PID), against a real
moatd started there. Two tests:

  python3 tests/e2e/nic.py link BUILD_DIR      link_propagation (meson test link-state)
  python3 tests/e2e/nic.py capture BUILD_DIR   dpdk-dumpcap on a running moatd (meson test capture)

link: with link_propagation = on, `ip link set OUTSIDE down` makes moatd take the inside port's
link down (the kernel interface loses IFF_UP) and `up` brings it back; the same the other way
round; flaps settle with both links up and the counters of moatctl stats --json (and
--prometheus) say what happened; a port moatd took down never takes the other down. With the
key off, a lost link is only logged and counted. An mtu the tap port cannot take (9000) refuses
to start.

capture: two dpdk-dumpcap secondaries (moatd's --file-prefix) capture while frames are sent into
the outside interface: the outside capture holds exactly the frames sent, the inside capture
exactly the permitted ones, in order. Needs hugepages (a secondary cannot map --no-huge memory):
as root the test reserves 512 2 MB pages when fewer than 256 MB are free, mounting hugetlbfs if
needed, and gives them back. moatd without hugepages and with --in-memory says capture is
unavailable.

Skipped (exit 77) where the namespace, /dev/net/tun or dpdk-dumpcap are missing. Addresses:
198.18.0.0/15 only; IPv6 is off in the namespace so the kernel sends nothing of its own.
"""
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

if len(sys.argv) != 3 or sys.argv[1] not in ("link", "capture"):
    sys.exit(__doc__)
BUILD = os.path.abspath(sys.argv[2])
MOATD = os.environ.get("MOATD", os.path.join(BUILD, "tools", "moatd"))
MOATCTL = os.environ.get("MOATCTL", os.path.join(BUILD, "tools", "moatctl"))
NS = "moatnic-%d" % os.getpid()
PREFIX = "moatnic-%d" % os.getpid()
OUT_IF, IN_IF = "mno%d" % (os.getpid() % 100000), "mni%d" % (os.getpid() % 100000)
NR = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


class Failed(Exception):
    pass


def check(cond, why, moatd=None):
    if not cond:
        raise Failed(why + ("\n---- moatd's log ----\n" + moatd.log() if moatd else ""))


def ns(*cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", NS] + list(cmd), capture_output=True, text=True, timeout=30, **kw)


def flags(iface):
    """The kernel's flags of `iface` in the namespace: {'UP', 'LOWER_UP', ...}."""
    out = ns("ip", "-o", "link", "show", iface).stdout
    return set(out.split("<", 1)[1].split(">", 1)[0].split(",")) if "<" in out else set()


def wait_until(pred, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class Moatd:
    """moatd in the namespace, its log in `d`."""

    def __init__(self, d, appliance, name="moatd", inside=None):
        self.d = d
        inside = inside or "net_tap1,iface=%s" % IN_IF
        self.cfg = os.path.join(d, name + ".ini")
        self.sock = os.path.join(d, name + ".sock")
        with open(self.cfg, "w") as f:
            f.write("[appliance]\n"
                    "outside = net_tap0,iface=%s\ninside = %s\n"
                    "control = %s\nme = 198.18.0.10\nassign = Web\n%s\n"
                    "[filterlist HTTP]\nfilter = *+198.18.0.10:80:TCP\n"
                    "[filterlist All]\nfilter = *+0\n"
                    "[policy Web]\nrule = HTTP -> permit\nrule = All -> block\n"
                    % (OUT_IF, inside, self.sock, appliance))
        self.log_path = os.path.join(d, name + ".log")
        self.p = subprocess.Popen(["ip", "netns", "exec", NS, "timeout", "-s", "KILL", "180", MOATD, "--config", self.cfg],
                                  stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"))

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_for(self, text, seconds=60):
        return wait_until(lambda: text in self.log() or self.p.poll() is not None, seconds) and text in self.log()

    def stats(self):
        r = subprocess.run([MOATCTL, "--socket", self.sock, "--timeout", "20", "stats", "--json"],
                           capture_output=True, text=True, timeout=30)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def prometheus(self):
        return subprocess.run([MOATCTL, "--socket", self.sock, "--timeout", "20", "stats", "--prometheus"],
                              capture_output=True, text=True, timeout=30).stdout

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)  # ip netns exec and timeout pass it on
        try:
            return self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return -1


@contextlib.contextmanager
def forwarding(d, appliance, name="moatd", inside=None):
    """A Moatd that has started forwarding, stopped at the end of the block, where it must exit 0."""
    m = Moatd(d, appliance, name, inside)
    try:
        check(m.wait_for("moatd: forwarding"), "moatd did not start", m)
        yield m
    finally:
        status = m.stop()
    check(status == 0, "moatd exited with %s" % status, m)


def link_counts(m):
    s = m.stats()
    if s is None:
        return None
    return {side: {k: s["ports"][side][k] for k in ("link_down", "link_taken_down", "link_brought_up")}
            for side in ("outside", "inside")}


def test_link(d):
    with forwarding(d, "eal = -l 0-1 --no-huge -m 256 --file-prefix %s\nlink_propagation = on" % PREFIX) as m:
        check(m.wait_for("link_propagation: when one port loses its link"), "no link_propagation line", m)
        check(wait_until(lambda: "UP" in flags(OUT_IF) and "UP" in flags(IN_IF)), "the tap interfaces are not up", m)
        zero = {"link_down": 0, "link_taken_down": 0, "link_brought_up": 0}
        check(link_counts(m) == {"outside": zero, "inside": zero}, "link counters not zero: %s" % link_counts(m), m)

        # The outside link goes: moatd takes the inside one down, and keeps it down.
        ns("ip", "link", "set", OUT_IF, "down")
        check(wait_until(lambda: "UP" not in flags(IN_IF)), "inside was not taken down when outside lost its link", m)
        check(m.wait_for("inside port: link taken down because the outside port lost its link"), "not logged", m)
        time.sleep(1)  # five polls: nothing more may happen while outside stays down
        check("UP" not in flags(IN_IF), "inside came back while outside was still down", m)
        ns("ip", "link", "set", OUT_IF, "up")
        check(wait_until(lambda: "UP" in flags(IN_IF)), "inside was not brought back up when outside returned", m)
        check(m.wait_for("inside port: link brought back up because the outside port's link returned"), "not logged", m)
        time.sleep(1)
        c = link_counts(m)
        check(c == {"outside": {"link_down": 1, "link_taken_down": 0, "link_brought_up": 0},
                    "inside": {"link_down": 0, "link_taken_down": 1, "link_brought_up": 1}},
              "counters after one outside loss: %s (inside's own down must not count as a loss)" % c, m)

        # The other way round.
        ns("ip", "link", "set", IN_IF, "down")
        check(wait_until(lambda: "UP" not in flags(OUT_IF)), "outside was not taken down when inside lost its link", m)
        ns("ip", "link", "set", IN_IF, "up")
        check(wait_until(lambda: "UP" in flags(OUT_IF)), "outside was not brought back up", m)

        # Flaps, faster than the poll and slower: they settle with both links up, and every port
        # moatd took down was brought back.
        for i in range(12):
            ns("ip", "link", "set", OUT_IF if i % 3 else IN_IF, "down")
            time.sleep(0.05 * (i % 5))
            ns("ip", "link", "set", OUT_IF if i % 3 else IN_IF, "up")
            time.sleep(0.05 * (i % 4))
        check(wait_until(lambda: "UP" in flags(OUT_IF) and "UP" in flags(IN_IF)), "flaps left a link down", m)
        time.sleep(1)
        check("UP" in flags(OUT_IF) and "UP" in flags(IN_IF), "flaps left a link down", m)
        c = link_counts(m)
        for side in ("outside", "inside"):
            check(c[side]["link_taken_down"] == c[side]["link_brought_up"],
                  "%s taken down %d times, brought up %d" % (side, c[side]["link_taken_down"], c[side]["link_brought_up"]), m)
        check(c["inside"]["link_taken_down"] >= 1 and c["outside"]["link_taken_down"] >= 1, "counters: %s" % c, m)
        prom = m.prometheus()
        check('moat_port_link_taken_down_total{port="inside"} %d' % c["inside"]["link_taken_down"] in prom,
              "prometheus lacks the link counters:\n" + prom, m)
    print("ok: link_propagation takes the other port down and back up, both ways; flaps settle; counted")

    # A port moatd holds down when it stops is brought back up (what moatd changed does not
    # outlive it; a tap interface goes with moatd, so the log line is what can be seen of it).
    with forwarding(d, "eal = -l 0-1 --no-huge -m 256 --file-prefix %s\nlink_propagation = on" % PREFIX, "held") as m:
        check(wait_until(lambda: "UP" in flags(OUT_IF) and "UP" in flags(IN_IF)), "the tap interfaces are not up", m)
        ns("ip", "link", "set", OUT_IF, "down")
        check(wait_until(lambda: "UP" not in flags(IN_IF)), "inside was not taken down", m)
    check("inside port: link brought back up as moatd stops" in m.log(), "the held port was not brought back up at stop", m)
    print("ok: a port link_propagation holds down is brought back up when moatd stops")

    # A driver that cannot set its link (net_af_packet in DPDK 22.11): logged, the port stays up,
    # forwarding goes on.
    veth, peer = "mnv%d" % (os.getpid() % 100000), "mnp%d" % (os.getpid() % 100000)
    r = ns("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
    check(r.returncode == 0, "cannot make a veth pair: " + r.stderr)
    ns("ip", "link", "set", veth, "up")
    ns("ip", "link", "set", peer, "up")
    ns("ip", "link", "set", OUT_IF, "up")
    with forwarding(d, "eal = -l 0-1 --no-huge -m 256 --file-prefix %s\nlink_propagation = on" % PREFIX, "unable",
                    inside="net_af_packet0,iface=%s" % veth) as m:
        check(wait_until(lambda: "UP" in flags(OUT_IF)), "the outside tap interface is not up", m)
        ns("ip", "link", "set", OUT_IF, "down")
        check(m.wait_for("inside port: cannot take the link down"), "an unsupported take-down is not logged", m)
        time.sleep(1)
        check("UP" in flags(veth), "the af_packet port's interface went down", m)
        check(m.log().count("inside port: cannot take the link down") == 1, "logged more than once per failure", m)
        check(m.stats() is not None, "moatd stopped answering", m)
    ns("ip", "link", "del", veth)
    print("ok: a port whose driver cannot take its link down is logged once and left up")

    # Off: a lost link is logged and counted, the other port stays up.
    with forwarding(d, "eal = -l 0-1 --no-huge -m 256 --file-prefix %s" % PREFIX, "off") as m:
        check(wait_until(lambda: "UP" in flags(OUT_IF) and "UP" in flags(IN_IF)), "the tap interfaces are not up", m)
        ns("ip", "link", "set", OUT_IF, "down")
        check(m.wait_for("outside port: link down"), "a lost link is not logged", m)
        time.sleep(1)
        check("UP" in flags(IN_IF), "inside was taken down with link_propagation off", m)
        c = link_counts(m)
        check(c["outside"]["link_down"] == 1 and c["inside"]["link_taken_down"] == 0, "counters: %s" % c, m)
    print("ok: with link_propagation off a lost link is only logged and counted")

    # A port that cannot take the MTU: refused before anything is forwarded.
    m = Moatd(d, "eal = -l 0-1 --no-huge -m 256 --file-prefix %s\nmtu = 9000" % PREFIX, "jumbo")
    status = m.p.wait(60)
    check(status == 1, "moatd with mtu = 9000 on tap ports exited with %s" % status, m)
    check("moatd: not starting: outside port net_tap0,iface=%s: mtu = 9000 " % OUT_IF in m.log(), "no clear refusal", m)
    check("forwarding" not in m.log(), "it forwarded", m)
    print("ok: " + m.log().strip().splitlines()[-1])


def hugepages_free():
    with open("/proc/mounts") as mounts:
        if not any(len(l.split()) > 2 and l.split()[2] == "hugetlbfs" for l in mounts):
            return 0
    total = 0
    for h in glob.glob("/sys/kernel/mm/hugepages/hugepages-*kB"):
        with open(os.path.join(h, "free_hugepages")) as f:
            total += int(f.read()) * int(h.rsplit("-", 1)[1][:-2]) * 1024
    return total


class Hugepages:
    """256 MB of free hugepages while it lives; gives back what it reserved."""

    def __init__(self):
        self.old_nr, self.mounted = None, False

    def __enter__(self):
        if hugepages_free() >= 256 << 20:
            return self
        if os.geteuid() != 0:
            skip("no hugepages, and not root to reserve them: a DPDK secondary (dpdk-dumpcap) cannot attach "
                 "to a moatd running with --no-huge")
        if hugepages_free() == 0 and not os.path.ismount("/dev/hugepages"):
            os.makedirs("/dev/hugepages", exist_ok=True)
            subprocess.run(["mount", "-t", "hugetlbfs", "nodev", "/dev/hugepages"], check=True)
            self.mounted = True
        with open(NR) as f:
            self.old_nr = int(f.read())
        with open(NR, "w") as f:
            f.write(str(self.old_nr + 512))
        if hugepages_free() < 256 << 20:
            self.__exit__()
            skip("could not reserve 256 MB of 2 MB hugepages")
        return self

    def __exit__(self, *exc):
        if self.old_nr is not None:
            with open(NR, "w") as f:
                f.write(str(self.old_nr))
        if self.mounted:
            subprocess.run(["umount", "/dev/hugepages"])


def tcp_frame(dport, seq):
    """198.18.100.1:40000 -> 198.18.0.10:dport; `seq` makes every frame different."""
    payload = b"moat capture %04d" % seq
    tcp = struct.pack("!HHIIBBHHH", 40000, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), seq, 0, 64, 6, 0,
                     bytes([198, 18, 100, 1]), bytes([198, 18, 0, 10]))
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + tcp


def read_pcapng(path):
    """{interface index: [frames]} of a pcapng file (Enhanced Packet Blocks)."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = {}, 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack("<II", data[off:off + 8])
        if blen < 12:
            break
        if btype == 6:
            iface, _, _, caplen = struct.unpack("<IIII", data[off + 8:off + 24])
            out.setdefault(iface, []).append(data[off + 28:off + 28 + caplen])
        off += blen
    return out


def test_capture(d):
    if shutil.which("dpdk-dumpcap") is None:
        skip("dpdk-dumpcap is not installed (Debian package dpdk)")
    permitted = [tcp_frame(80, i) for i in range(6)]
    blocked = [tcp_frame(22, 100 + i) for i in range(4)]
    sent = [f for pair in zip(permitted, blocked + [None] * 2) for f in pair if f is not None]
    with Hugepages():
        # dpdk-dumpcap is a secondary process: it maps the hugepage memory at moatd's addresses.
        # Left to chance, moatd's land in the mmap area where dumpcap's own libraries may already
        # be (under AddressSanitizer, whose layout differs, that happened: "Cannot get a virtual
        # area at requested address"); a base far from both makes the test not depend on it.
        with forwarding(d, "eal = -l 0-1 --file-prefix %s --base-virtaddr 0x200000000000" % PREFIX) as m:
            check("packet capture: dpdk-dumpcap --file-prefix=%s -i PORT" % PREFIX in m.log(), "no capture line", m)
            check(wait_until(lambda: "UP" in flags(OUT_IF) and "UP" in flags(IN_IF)), "the tap interfaces are not up", m)
            # One dumpcap a port: DPDK 22.11's dumpcap enables only the last of several -i.
            dumps = {}
            for port, count in (("net_tap0", len(sent)), ("net_tap1", len(permitted))):
                out = os.path.join(d, port + ".pcapng")
                p = subprocess.Popen(["ip", "netns", "exec", NS, "timeout", "-s", "KILL", "90", "dpdk-dumpcap",
                                      "--file-prefix=" + PREFIX, "-i", port, "-c", str(count), "-w", out],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                os.set_blocking(p.stdout.fileno(), False)
                dumps[port] = [p, out, b""]
            # It prints its running count ("Packets captured: 0") once the port's copies are enabled.
            def started():
                for dump in dumps.values():
                    dump[2] += dump[0].stdout.read() or b""
                return all(b"Packets captured:" in dump[2] or dump[0].poll() is not None for dump in dumps.values())
            wait_until(started, 60)
            for port, (p, out, seen) in dumps.items():
                check(b"Packets captured:" in seen and p.poll() is None,
                      "dpdk-dumpcap -i %s did not start capturing:\n%s" % (port, seen.decode(errors="replace")), m)
            # Into the outside tap: the kernel sends them, moatd receives them.
            sender = ("import socket,sys\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind((%r,0))\n"
                      "for h in sys.argv[1:]:\n    s.send(bytes.fromhex(h))\n" % OUT_IF)
            r = ns(sys.executable, "-c", sender, *[f.hex() for f in sent])
            check(r.returncode == 0, "could not send: " + r.stderr, m)
            for port, dump in dumps.items():
                p = dump[0]
                deadline = time.time() + 60
                while p.poll() is None and time.time() < deadline:
                    dump[2] += p.stdout.read() or b""
                    time.sleep(0.05)
                if p.poll() is None:
                    p.kill()
                p.wait()
                dump[2] += p.stdout.read() or b""
                check(p.returncode == 0, "dpdk-dumpcap -i %s exited with %s:\n%s"
                      % (port, p.returncode, dump[2].decode(errors="replace")), m)
            s = m.stats()
        # dumpcap numbers the interfaces of its file by DPDK port id.
        rx = read_pcapng(dumps["net_tap0"][1]).get(0, [])
        tx = read_pcapng(dumps["net_tap1"][1]).get(1, [])
        check(rx == sent, "the outside capture is not exactly the %d frames sent: %d frames" % (len(sent), len(rx)), m)
        check(tx == permitted, "the inside capture is not exactly the %d permitted frames: %d frames"
              % (len(permitted), len(tx)), m)
        check(s is not None and s["ports"]["outside"]["rx_packets"] == len(sent)
              and s["ports"]["inside"]["tx_packets"] == len(permitted), "moatd's counters: %s" % (s and s["ports"]), m)
        print("ok: dpdk-dumpcap captured the %d frames moatd received and the %d it sent" % (len(sent), len(permitted)))

    for eal, why in (("--no-huge -m 256", "moatd runs without hugepages (--no-huge)"),
                     ("--in-memory -m 256", "moatd runs with --in-memory")):
        m = Moatd(d, "eal = -l 0-1 --file-prefix %s %s" % (PREFIX, eal), "nocap")
        try:
            ok = m.wait_for("moatd: forwarding")
        finally:
            status = m.stop()
        check(ok and status == 0, "moatd with %s did not run (exit %s)" % (eal, status), m)
        check("packet capture (dpdk-dumpcap) unavailable: " + why in m.log(), "no line saying why", m)
        print("ok: with %s moatd says capture is unavailable" % eal)


def main():
    if os.geteuid() != 0:
        skip("needs root for a network namespace")
    if not os.path.exists("/dev/net/tun"):
        skip("no /dev/net/tun for net_tap ports")
    if subprocess.run(["ip", "netns", "add", NS], capture_output=True).returncode != 0:
        skip("cannot create network namespace " + NS)
    d = tempfile.mkdtemp(prefix="moatnic.")
    try:
        ns("ip", "link", "set", "lo", "up")
        ns("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        ns("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        (test_link if sys.argv[1] == "link" else test_capture)(d)
        return 0
    except Failed as e:
        print("FAIL: %s" % e)
        return 1
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree("/var/run/dpdk/" + PREFIX, ignore_errors=True)


sys.exit(main())
