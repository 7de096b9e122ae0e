// What moatd's worker costs a packet beyond plain forwarding, measured inside one process so that
// neither a generator nor a neighbour on the machine is in the figure.
//
// A loop of ring ports: the outside port receives from ring R and the inside port transmits into
// R, so the packets put into R go round for as long as they are forwarded. The worker under test
// is dp::worker_main itself (its busy-poll cycle counter, WorkerCounters::busy_cycles, is the
// figure); the anchor is a plain forwarding loop on the same ports and lcore, polling both ports
// and timing its busy polls the same way (what testpmd --record-core-cycles does for io
// forwarding). The difference is the worker's own cost: parsing, classifying, counting, and
// freeing nothing (every looped packet is permitted). The cases run interleaved, --rounds times,
// and the table shows each case's median cycles per packet.
//
//   worker_bench [--sets acl1_10K,fw1_10K,...] [--seconds 1] [--rounds 5] [--packets 512]
//
// Cases: `plain` (the anchor), `10 filters` (perf/ten-filters.ini with the 256 UDP flows of
// perf/throughput's generator, 64-byte frames), the same with a drop-trace monitor attached
// (`monitor --drops`: every packet counted, none of these permitted ones recorded; `monitor
// --all`: every packet recorded into the worker's ring, which this thread drains as moatd's
// control thread would), and per ClassBench set its policy with the permitted packets of its
// trace without locality (the set's own variety of keys).
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <unistd.h>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/tables.h"
#include "control/config/ini_edit.h"
#include "control/runtime/runtime.h"
#include "dataplane/classify.h"
#include "dataplane/worker.h"
#include "perf/classbench.h"
#include "perf/start_eal.h"
#include "perf/trace_frames.h"
#include "tests/common/packets.h"

namespace moat {
namespace {

namespace fs = std::filesystem;

using perf::frame_of;
using perf::median;

/// The ports of the loop and the pool of its packets.
struct Loop {
    rte_mempool* pool = nullptr;
    rte_ring* loop = nullptr;    // the outside port receives from here; the inside port sends here
    rte_ring* out_tx = nullptr;  // never used: nothing is sent outwards
    rte_ring* in_rx = nullptr;   // stays empty: polled as a worker polls it
    std::uint16_t out = 0, in = 0;
    std::size_t packets = 0;

    bool make() {
        const auto ring = [&](const char* what) {
            return rte_ring_create(what, 4096, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
        };
        pool = rte_pktmbuf_pool_create("worker_bench", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        loop = ring("wb_loop");
        out_tx = ring("wb_otx");
        in_rx = ring("wb_irx");
        if (!pool || !loop || !out_tx || !in_rx)
            return false;
        const int o = rte_eth_from_rings("wb_out", &loop, 1, &out_tx, 1, SOCKET_ID_ANY);
        const int i = rte_eth_from_rings("wb_in", &in_rx, 1, &loop, 1, SOCKET_ID_ANY);
        if (o < 0 || i < 0)
            return false;
        out = static_cast<std::uint16_t>(o);
        in = static_cast<std::uint16_t>(i);
        for (auto p : {out, in}) {
            const rte_eth_conf conf{};
            if (rte_eth_dev_configure(p, 1, 1, &conf) != 0 || rte_eth_rx_queue_setup(p, 0, 1024, SOCKET_ID_ANY, nullptr, pool) != 0 ||
                rte_eth_tx_queue_setup(p, 0, 1024, SOCKET_ID_ANY, nullptr) != 0 || rte_eth_dev_start(p) != 0)
                return false;
        }
        return true;
    }

    /// Empties the loop and fills it with `frames`, repeated up to `n` packets.
    bool fill(const std::vector<test::Bytes>& frames, std::size_t n) {
        drain();
        for (std::size_t i = 0; i < n; ++i) {
            const test::Bytes& f = frames[i % frames.size()];
            rte_mbuf* m = rte_pktmbuf_alloc(pool);
            if (!m)
                return false;
            std::copy(f.begin(), f.end(), rte_pktmbuf_mtod(m, std::uint8_t*));
            m->data_len = m->pkt_len = static_cast<std::uint32_t>(f.size());
            if (rte_ring_enqueue(loop, m) != 0) {
                rte_pktmbuf_free(m);
                return false;
            }
        }
        packets = n;
        return true;
    }

    void drain() {
        for (auto* r : {loop, out_tx, in_rx}) {
            void* m;
            while (r && rte_ring_dequeue(r, &m) == 0)
                rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        }
    }
};

/// The anchor: plain forwarding between the two ports (each port's packets to the other), busy
/// polls timed as dp::worker_main times its own.
struct Plain {
    std::array<std::uint16_t, 2> port{};
    const std::atomic<bool>* stop = nullptr;
    std::atomic<std::uint64_t> cycles{0}, packets{0};
};

int plain_main(void* arg) {
    auto& p = *static_cast<Plain*>(arg);
    std::array<rte_mbuf*, dp::kBurstMax> b;
    std::uint64_t cycles = 0, packets = 0;
    std::uint64_t start = rte_rdtsc();
    while (!p.stop->load(std::memory_order_relaxed)) {
        bool busy = false;
        for (unsigned in = 0; in < 2; ++in) {
            const std::uint16_t n = rte_eth_rx_burst(p.port[in], 0, b.data(), dp::kBurstMax);
            if (n == 0)
                continue;
            busy = true;
            packets += n;
            const std::uint16_t sent = rte_eth_tx_burst(p.port[1 - in], 0, b.data(), n);
            if (sent < n)
                rte_pktmbuf_free_bulk(b.data() + sent, n - sent);
        }
        const std::uint64_t now = rte_rdtsc();
        if (busy)
            cycles += now - start;
        start = now;
    }
    p.cycles.store(cycles);
    p.packets.store(packets);
    return 0;
}

struct Case {
    std::string name;
    std::string policy;              ///< empty: the plain anchor
    std::vector<test::Bytes> frames;  ///< what goes round (all permitted by `policy`)
    std::vector<double> cycles;       ///< per round: busy cycles per packet
    std::vector<double> mpps;         ///< per round: packets per second the loop went round at
    dp::MonitorWord monitor;          ///< the drop-trace word published while it runs (0: none)
};

struct Options {
    double seconds = 1;
    int rounds = 5;
    std::size_t packets = 512;
};

/// The 10-filter policy with the generator's sources as clients, and its 256 flows.
Case ten_filters() {
    auto read = ctl::read_config_file(std::string(MOAT_SOURCE_ROOT) + "/perf/ten-filters.ini");
    if (!read) {
        std::fprintf(stderr, "worker_bench: %s\n", read.error().c_str());
        std::exit(1);
    }
    std::string text = std::move(*read);
    const std::string slot = "{clients}";
    text.replace(text.find(slot), slot.size(), "198.18.0.0/16");
    Case c{"10 filters", "[appliance]\nme = 198.18.0.10, 198.18.0.20\nassign = Servers\n" + text, {}, {}, {}, {}};
    for (int x = 0; x < 256; ++x) {
        test::Pkt p;
        p.src = "198.18." + std::to_string(x) + ".11";
        p.proto = 17;
        p.sport = 40000;
        p.dport = 53;
        p.payload = std::string(22, 'x');  // 64 bytes
        c.frames.push_back(test::frame(p));
    }
    return c;
}

/// A ClassBench set's policy and the permitted packets of its trace without locality (that of
/// ../shared/data/classbench where the vendored copy has none).
std::optional<Case> classbench(const std::string& name, const Options& opt) {
    const std::string dir = perf::classbench_dir();
    Case c{name, perf::classbench_policy(dir + "/" + name), {}, {}, {}, {}};
    const ctl::LoadResult l = ctl::load_policy_text(c.policy, name, {.lint = false});
    if (!l.usable())
        return std::nullopt;
    auto built = ctl::build_table_set(*l.config, *l.compiled, 1, 1);
    if (!built)
        return std::nullopt;
    const dp::TableSet& t = *built->tables;
    std::string trace = std::string(MOAT_SOURCE_ROOT) + "/tests/data/classbench/nolocal/" + name + "_trace";
    if (!fs::exists(trace) && !fs::exists(trace + ".xz"))
        trace = dir + "/" + name + "_trace";
    for (const auto& k : perf::classbench_trace(trace)) {
        if (c.frames.size() == opt.packets)
            break;
        auto f = frame_of(k, 64);  // 64 bytes, as testpmd's txonly sends them
        if (!f)
            continue;
        dp::PacketMeta meta[1];
        dp::parse_frame(f->data(), static_cast<std::uint32_t>(f->size()), dp::Ingress::outside, t.parse, meta[0]);
        dp::Verdict v[1];
        dp::classify_burst(t, meta, v);
        if (v[0].drop == dp::DropReason::none)
            c.frames.push_back(std::move(*f));
    }
    if (c.frames.empty()) {
        std::fprintf(stderr, "%s: no trace packet is permitted\n", name.c_str());
        return std::nullopt;
    }
    return c;
}

/// One round of one case on lcore `lcore`: busy cycles per packet and the loop's packet rate.
bool run_round(Case& c, Loop& loop, unsigned lcore, const Options& opt, const fs::path& work) {
    if (!loop.fill(c.frames, opt.packets))
        return false;
    std::atomic<bool> stop{false};
    const auto t0 = std::chrono::steady_clock::now();
    const auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    if (c.policy.empty()) {
        Plain p;
        p.port = {loop.out, loop.in};
        p.stop = &stop;
        if (rte_eal_remote_launch(plain_main, &p, lcore) != 0)
            return false;
        std::this_thread::sleep_for(std::chrono::duration<double>(opt.seconds));
        stop.store(true);
        rte_eal_wait_lcore(lcore);
        c.cycles.push_back(static_cast<double>(p.cycles.load()) / std::max<std::uint64_t>(1, p.packets.load()));
        c.mpps.push_back(p.packets.load() / seconds() / 1e6);
        return true;
    }
    const std::string path = (work / "moat.ini").string();
    if (!ctl::write_file_atomic(path, c.policy))
        return false;
    const ctl::LoadResult l = ctl::load_policy(path, {.lint = false});
    if (!l.usable()) {
        for (const auto& d : l.diags.all())
            std::fprintf(stderr, "%s\n", ctl::format(d).c_str());
        return false;
    }
    ctl::Runtime rt(path, 1);
    if (const auto started = rt.start(*l.config, *l.compiled, c.policy); !started) {
        std::fprintf(stderr, "%s: %s\n", c.name.c_str(), started.error().c_str());
        return false;
    }
    // A monitor: the word, and a ring this thread drains while the worker runs (what the records
    // cost the worker, not what formatting them costs the control thread).
    std::atomic<std::uint64_t> word{c.monitor.encode()};
    rte_ring* ring = nullptr;
    if (word.load() != 0) {
        ring = rte_ring_create_elem("wb_monitor", sizeof(dp::MonitorRecord), 4096, SOCKET_ID_ANY,
                                    RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (!ring)
            return false;
    }
    dp::WorkerContext ctx;
    ctx.monitor.word = &word;
    ctx.monitor.ring = ring;
    ctx.lcore = lcore;
    ctx.port = {loop.out, loop.in};
    ctx.tables = rt.publisher().tables();
    ctx.qsbr = rt.publisher().qsbr();
    ctx.stop = &stop;
    if (rte_eal_remote_launch(&dp::worker_main, &ctx, lcore) != 0)
        return false;
    rt.set_workers({&ctx});
    std::uint64_t drained = 0;
    if (ring) {
        std::array<dp::MonitorRecord, 64> recs;
        while (seconds() < opt.seconds) {
            const unsigned n = rte_ring_sc_dequeue_burst_elem(ring, recs.data(), sizeof(dp::MonitorRecord), recs.size(), nullptr);
            drained += n;
            if (n == 0)
                std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    } else {
        std::this_thread::sleep_for(std::chrono::duration<double>(opt.seconds));
    }
    stop.store(true);
    rte_eal_wait_lcore(lcore);
    rt.set_workers({});
    if (ring) {
        std::fprintf(stderr, "  %s: %llu records drained, %llu lost (ring full)\n", c.name.c_str(),
                     static_cast<unsigned long long>(drained),
                     static_cast<unsigned long long>(ctx.counters.monitor_lost.get()));
        rte_ring_free(ring);
    }
    const std::uint64_t rx = ctx.counters.port[0].rx_packets.get() + ctx.counters.port[1].rx_packets.get();
    const std::uint64_t dropped = ctx.counters.port[0].dropped.get() + ctx.counters.port[1].dropped.get();
    if (dropped != 0) {
        std::fprintf(stderr, "%s: the worker dropped %llu looped packets\n", c.name.c_str(),
                     static_cast<unsigned long long>(dropped));
        return false;
    }
    c.cycles.push_back(static_cast<double>(ctx.counters.busy_cycles.get()) / std::max<std::uint64_t>(1, rx));
    c.mpps.push_back(rx / seconds() / 1e6);
    return true;
}

/// The worker's stages on one burst of `c`'s first 32 frames, over and over (everything in the
/// cache): cycles a packet of parse_burst and of classify_burst. Where the cycles go, not what
/// they come to (the rounds measure that).
void stage_costs(const Case& c, rte_mempool* pool) {
    const ctl::LoadResult l = ctl::load_policy_text(c.policy, c.name, {.lint = false});
    if (!l.usable())
        return;
    auto built = ctl::build_table_set(*l.config, *l.compiled, 1, 1);
    if (!built)
        return;
    const dp::TableSet& t = *built->tables;
    dp::Burst b;
    for (b.n = 0; b.n < dp::kBurstMax; ++b.n) {
        const test::Bytes& f = c.frames[b.n % c.frames.size()];
        rte_mbuf* m = rte_pktmbuf_alloc(pool);
        std::copy(f.begin(), f.end(), rte_pktmbuf_mtod(m, std::uint8_t*));
        m->data_len = m->pkt_len = static_cast<std::uint32_t>(f.size());
        b.pkts[b.n] = m;
    }
    constexpr int kTurns = 200000;
    std::uint64_t parse = 0, classify = 0;
    for (int i = 0; i < kTurns; ++i) {
        const std::uint64_t t0 = rte_rdtsc();
        dp::parse_burst(b.packets(), dp::Ingress::outside, t.parse, b.metas());
        const std::uint64_t t1 = rte_rdtsc();
        dp::classify_burst(t, b.metas(), b.verdict_span());
        const std::uint64_t t2 = rte_rdtsc();
        parse += t1 - t0;
        classify += t2 - t1;
    }
    const double packets = double(kTurns) * b.n;
    std::fprintf(stderr, "  %-18s in the cache: parse %.1f, classify %.1f cycles a packet\n", c.name.c_str(),
                 parse / packets, classify / packets);
    rte_pktmbuf_free_bulk(b.pkts.data(), b.n);
}

}  // namespace
}  // namespace moat

int main(int argc, char** argv) {
    using namespace moat;
    std::vector<std::string> sets{"acl1_10K", "fw1_10K", "ipc1_10K"};
    Options opt;
    // A value that is not wholly a number is an error line, not an uncaught std::stoul exception
    // (abort) or a silently shortened "12abc".
    const auto number = [](const char* text, auto parse) {
        std::size_t end = 0;
        const auto v = parse(std::string(text), &end);
        if (end != std::strlen(text))
            throw std::invalid_argument(text);
        return v;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        try {
            if (a == "--sets" && i + 1 < argc) {
                sets = perf::split_list(argv[++i]);
                continue;
            }
            if (a == "--seconds" && i + 1 < argc) {
                opt.seconds = number(argv[++i], [](const std::string& t, std::size_t* e) { return std::stod(t, e); });
                continue;
            }
            if (a == "--rounds" && i + 1 < argc) {
                opt.rounds = number(argv[++i], [](const std::string& t, std::size_t* e) { return std::stoi(t, e); });
                continue;
            }
            if (a == "--packets" && i + 1 < argc) {
                opt.packets = number(argv[++i], [](const std::string& t, std::size_t* e) { return std::stoul(t, e); });
                continue;
            }
        } catch (const std::exception&) {
            std::fprintf(stderr, "worker_bench: %s %s: not a number\n", a.c_str(), argv[i]);
            return 2;
        }
        {
            std::fprintf(stderr, "usage: worker_bench [--sets acl1_10K,fw1_10K,ipc1_10K] [--seconds 1] [--rounds 5] "
                                 "[--packets 512]\n");
            return 2;
        }
    }
    if (!(opt.seconds > 0 && opt.seconds <= 3600) || opt.rounds < 1 || opt.packets < dp::kBurstMax || opt.packets > 4000) {
        std::fprintf(stderr, "worker_bench: --seconds from above 0 to 3600, --rounds >= 1, --packets from 32 to 4000\n");
        return 2;
    }
    // The worker on lcore 1 (CPU 1), the control thread on lcore 0.
    if (!perf::start_eal({"worker_bench", "--no-pci", "--lcores", "0@0,1@1", "--log-level", "*:error"}, 512, 1024))
        return 1;
    const unsigned lcore = rte_get_next_lcore(-1, 1, 0);

    std::vector<Case> cases;
    cases.push_back({"plain forwarding", "", {}, {}, {}, {}});
    cases.push_back(ten_filters());
    cases[0].frames = cases[1].frames;
    cases.push_back(cases[1]);
    cases.back().name = "10 filters, monitor --drops";
    cases.back().monitor = {.all = 0, .drops = 1, .epoch = 1};
    cases.push_back(cases[1]);
    cases.back().name = "10 filters, monitor --all";
    cases.back().monitor = {.all = 1, .drops = 0, .epoch = 1};
    for (const auto& s : sets) {
        try {
            if (auto c = classbench(s, opt))
                cases.push_back(std::move(*c));
            else
                std::fprintf(stderr, "%s: does not load or build\n", s.c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s: %s\n", s.c_str(), e.what());
            return 1;
        }
    }
    Loop loop;
    if (!loop.make()) {
        std::fprintf(stderr, "cannot make the ring ports: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    for (std::size_t i = 1; i < cases.size(); ++i)
        if (cases[i].monitor.encode() == 0)
            stage_costs(cases[i], loop.pool);
    const fs::path work = fs::temp_directory_path() / ("moat-worker-bench." + std::to_string(getpid()));
    fs::create_directories(work);
    for (int r = 0; r < opt.rounds; ++r) {
        for (auto& c : cases) {
            if (!run_round(c, loop, lcore, opt, work)) {
                std::fprintf(stderr, "%s: the round failed\n", c.name.c_str());
                fs::remove_all(work);
                return 1;
            }
            std::fprintf(stderr, "  round %d/%d %-18s %7.1f cycles a packet, %6.2f Mpps\n", r + 1, opt.rounds,
                         c.name.c_str(), c.cycles.back(), c.mpps.back());
        }
    }
    fs::remove_all(work);
    loop.drain();

    std::printf("worker cost per packet on ring ports, %zu packets looped, medians of %d rounds of %g s\n\n",
                opt.packets, opt.rounds, opt.seconds);
    std::printf("| case | packets looped | cycles a packet | worst round | over plain forwarding | Mpps |\n");
    std::printf("|---|---|---|---|---|---|\n");
    const double plain = median(cases[0].cycles);
    for (const auto& c : cases) {
        const double cyc = median(c.cycles);
        std::printf("| %s | %zu | %.1f | %.1f | %+.1f | %.2f |\n", c.name.c_str(), std::min(c.frames.size(), opt.packets),
                    cyc, *std::max_element(c.cycles.begin(), c.cycles.end()), cyc - plain, median(c.mpps));
    }
    return 0;
}
