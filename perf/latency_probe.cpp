// A low-rate latency probe for a bump in the wire (perf/throughput runs it; not a test).
//
//   latency_probe EAL-ARGS -- [--rate PPS] [--seconds S] [--warmup S] [--size BYTES] [--link-wait S]
//
// Port 0 faces the device's outside, port 1 its inside (EAL --vdev, e.g. two net_memif servers).
// It sends UDP 198.18.1.11:40001 -> 198.18.0.10:53 on port 0 at PPS packets per second, each
// carrying a magic word, a sequence number and the TSC at sending in its payload, and takes what
// comes back on port 1: latency = TSC at receipt - TSC in the packet (one process, one lcore, one
// clock). Packets sent during the warm-up are not counted. Prints one JSON line:
//   {"sent": N, "received": N, "lost": N, "min_us": x, "median_us": x, "p99_us": x, "p999_us": x, "max_us": x}
// Exit 1 with a message when the ports do not come up or nothing comes back.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/common/packets.h"

namespace {

constexpr std::uint32_t kMagic = 0x4d4f4154;  // "MOAT"
constexpr unsigned kHeaders = 14 + 20 + 8;  // Ethernet, IPv4, UDP: the stamp follows them
constexpr std::uint16_t kBurst = 32;

struct Options {
    double rate = 10000;
    double seconds = 5;
    double warmup = 1;
    unsigned size = 64;
    double link_wait = 30;
};

struct Stamp {
    std::uint32_t magic;
    std::uint32_t seq;
    std::uint64_t tsc;
};

[[noreturn]] void die(const std::string& why) {
    std::fprintf(stderr, "latency_probe: %s\n", why.c_str());
    rte_eal_cleanup();
    std::exit(1);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 0; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc)
            die("option " + a + " needs a value");
        const char* v = argv[++i];
        char* end = nullptr;
        const double x = std::strtod(v, &end);
        if (*end != '\0' || !(x > 0))
            die("option " + a + " needs a positive number, not '" + v + "'");
        if (a == "--rate")
            o.rate = x;
        else if (a == "--seconds")
            o.seconds = x;
        else if (a == "--warmup")
            o.warmup = x;
        else if (a == "--size")
            o.size = static_cast<unsigned>(x);
        else if (a == "--link-wait")
            o.link_wait = x;
        else
            die("unknown option " + a + " (--rate, --seconds, --warmup, --size, --link-wait)");
    }
    if (o.size < kHeaders + sizeof(Stamp) || o.size > 1514)
        die("--size must be " + std::to_string(kHeaders + sizeof(Stamp)) + " to 1514 bytes");
    return o;
}

void start_port(std::uint16_t port, rte_mempool* pool) {
    rte_eth_conf conf{};
    if (rte_eth_dev_configure(port, 1, 1, &conf) != 0 ||
        rte_eth_rx_queue_setup(port, 0, 1024, rte_eth_dev_socket_id(port), nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(port, 0, 1024, rte_eth_dev_socket_id(port), nullptr) != 0 ||
        rte_eth_dev_start(port) != 0)
        die("cannot start port " + std::to_string(port));
}

bool link_up(std::uint16_t port) {
    rte_eth_link link{};
    return rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

/// The probe's frame (tests/common/packets.h builds it, lengths and checksum filled in); the
/// stamp goes at `at`, the start of the UDP payload.
struct Template {
    moat::test::Bytes bytes;
    std::size_t at = 0;
};

Template probe_template(unsigned size) {
    moat::test::Pkt p;
    p.src = "198.18.1.11";
    p.dst = "198.18.0.10";
    p.proto = 17;
    p.sport = 40001;
    p.dport = 53;
    p.payload.assign(size - kHeaders, '\0');
    const moat::test::Built b = moat::test::build(p);
    return {b.bytes, b.l4 + 8};
}

rte_mbuf* probe_packet(rte_mempool* pool, const Template& t, std::uint32_t seq) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (!m)
        return nullptr;
    char* p = rte_pktmbuf_append(m, static_cast<std::uint16_t>(t.bytes.size()));
    std::memcpy(p, t.bytes.data(), t.bytes.size());
    Stamp s{kMagic, seq, 0};
    s.tsc = rte_rdtsc();  // last: the time it leaves
    std::memcpy(p + t.at, &s, sizeof s);
    return m;
}

double percentile(const std::vector<double>& sorted, double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
    return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
    const int used = rte_eal_init(argc, argv);
    if (used < 0)
        die("EAL initialisation failed (check the EAL arguments)");
    const Options o = parse(argc - used - 1 > 0 ? argc - used - 1 : 0, argv + used + 1);
    if (rte_eth_dev_count_avail() != 2)
        die("needs exactly 2 ports (--vdev for the outside, then the inside), has " +
            std::to_string(rte_eth_dev_count_avail()));
    rte_mempool* pool = rte_pktmbuf_pool_create("latency_probe", 4095, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
    if (!pool)
        die("cannot create the mbuf pool");
    start_port(0, pool);
    start_port(1, pool);
    const Template frame = probe_template(o.size);

    const std::uint64_t hz = rte_get_tsc_hz();
    const std::uint64_t wait_until = rte_rdtsc() + static_cast<std::uint64_t>(o.link_wait * static_cast<double>(hz));
    while (!(link_up(0) && link_up(1))) {
        if (rte_rdtsc() > wait_until)
            die("the ports did not come up (is the device under test connected?)");
        rte_delay_ms(10);
    }

    const std::uint64_t gap = static_cast<std::uint64_t>(static_cast<double>(hz) / o.rate);
    const std::uint64_t start = rte_rdtsc();
    const std::uint64_t measure_from = start + static_cast<std::uint64_t>(o.warmup * static_cast<double>(hz));
    const std::uint64_t send_until = measure_from + static_cast<std::uint64_t>(o.seconds * static_cast<double>(hz));
    const std::uint64_t drain_until = send_until + hz / 10;  // late packets count as lost after 100 ms
    std::uint32_t first_measured = UINT32_MAX;  // the sequence number of the first packet counted
    std::uint32_t seq = 0;
    std::uint64_t sent = 0, received = 0;
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(o.rate * o.seconds) + 16);
    std::uint64_t next = start;
    rte_mbuf* pkts[kBurst];
    for (std::uint64_t now = rte_rdtsc(); now < drain_until; now = rte_rdtsc()) {
        if (now >= next && now < send_until) {
            next += gap;
            if (rte_mbuf* m = probe_packet(pool, frame, seq)) {
                if (rte_eth_tx_burst(0, 0, &m, 1) == 1) {
                    if (now >= measure_from) {
                        first_measured = std::min(first_measured, seq);
                        ++sent;
                    }
                } else {
                    rte_pktmbuf_free(m);
                }
            }
            ++seq;
        }
        const std::uint16_t n = rte_eth_rx_burst(1, 0, pkts, kBurst);
        const std::uint64_t arrived = rte_rdtsc();
        for (std::uint16_t i = 0; i < n; ++i) {
            Stamp s{};
            if (pkts[i]->data_len >= frame.at + sizeof s) {
                std::memcpy(&s, rte_pktmbuf_mtod_offset(pkts[i], const std::uint8_t*, frame.at), sizeof s);
                if (s.magic == kMagic && s.seq >= first_measured && s.tsc <= arrived) {
                    ++received;
                    us.push_back(static_cast<double>(arrived - s.tsc) * 1e6 / static_cast<double>(hz));
                }
            }
        }
        rte_pktmbuf_free_bulk(pkts, n);
        // Nothing is expected back on the outside port; keep its queue empty.
        rte_pktmbuf_free_bulk(pkts, rte_eth_rx_burst(0, 0, pkts, kBurst));
    }
    for (std::uint16_t port = 0; port < 2; ++port)
        rte_eth_dev_stop(port);
    if (us.empty())
        die("none of the " + std::to_string(sent) + " packets sent came back on port 1");
    std::sort(us.begin(), us.end());
    std::printf("{\"sent\": %" PRIu64 ", \"received\": %" PRIu64 ", \"lost\": %" PRIu64
                ", \"min_us\": %.2f, \"median_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f, \"max_us\": %.2f}\n",
                sent, received, sent >= received ? sent - received : 0, us.front(), percentile(us, 0.5),
                percentile(us, 0.99), percentile(us, 0.999), us.back());
    rte_eal_cleanup();
    return 0;
}
