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
//                [--flows 1024,1048576]
//
// Cases: `plain` (the anchor), `10 filters` (perf/ten-filters.ini with the 256 UDP flows of
// perf/throughput's generator, 64-byte frames), the same with a drop-trace monitor attached
// (`monitor --drops`: every packet counted, none of these permitted ones recorded; `monitor
// --all`: every packet recorded into the worker's ring, which this thread drains as moatd's
// control thread would), and per ClassBench set its policy with the permitted packets of its
// trace without locality (the set's own variety of keys). Per --flows N: N distinct UDP flows
// (each packet of the loop its own flow, so each comes back once every N packets: at 1M flows
// the flow table and the mbufs are far out of the cache) through plain forwarding, the 10-filter
// policy, and the same policy with its generator filter under a `state = keep` action (the table
// sized N, the flows created during a warm-up of two passes before the measurement), and that
// again while this thread asks for one `moatctl states` listing after another (the worker walks
// its table into a ring this thread empties, as moatd's control thread would).
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
#include <random>
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

/// Writes frame `f` into `m` (room enough: the pool's mbufs hold any test frame).
void put_frame(rte_mbuf* m, const test::Bytes& f) {
    std::copy(f.begin(), f.end(), rte_pktmbuf_mtod(m, std::uint8_t*));
    m->data_len = m->pkt_len = static_cast<std::uint32_t>(f.size());
}

/// The ports of the loop and the pool of its packets.
struct Loop {
    rte_mempool* pool = nullptr;
    std::size_t capacity = 8191;  ///< packets the pool and the loop hold
    rte_ring* loop = nullptr;    // the outside port receives from here; the inside port sends here
    rte_ring* out_tx = nullptr;  // never used: nothing is sent outwards
    rte_ring* in_rx = nullptr;   // stays empty: polled as a worker polls it
    std::uint16_t out = 0, in = 0;
    std::size_t packets = 0;

    bool make() {
        const auto ring = [&](const char* what) {
            return rte_ring_create(what, rte_align32pow2(static_cast<std::uint32_t>(capacity) + 1), SOCKET_ID_ANY,
                                   RING_F_SP_ENQ | RING_F_SC_DEQ);
        };
        // Every looped frame is 64 bytes: a data room of 128 bytes after the headroom holds it.
        pool = rte_pktmbuf_pool_create("worker_bench", static_cast<unsigned>(capacity), 256, 0,
                                       RTE_PKTMBUF_HEADROOM + 128, SOCKET_ID_ANY);
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
            put_frame(m, f);
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
    std::size_t packets = 0;          ///< packets looped; 0: --packets
    unsigned state_table = 0;         ///< flows the worker's flow table holds; 0: its default
    double warmup = 0;                ///< seconds run before the measured ones (flows created)
    bool listing = false;             ///< `moatctl states` asked over and over while it runs
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

/// `n` distinct UDP flows to the generator filter's port, from 198.19.0.0/16 (source ports
/// 40000 and up once the addresses are used up), through plain forwarding, the 10-filter policy
/// and the same with the generator filter stateful.
std::vector<Case> flow_cases(std::size_t n) {
    Case stateless = ten_filters();
    const std::string from = "198.18.0.0/16+", to = "198.19.0.0/16+";
    stateless.policy.replace(stateless.policy.find(from), from.size(), to);
    stateless.frames.clear();
    for (std::size_t i = 0; i < n; ++i) {
        test::Pkt p;
        p.src = "198.19." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256);
        p.proto = 17;
        p.sport = static_cast<std::uint16_t>(40000 + i / 65536);
        p.dport = 53;
        p.payload = std::string(22, 'x');  // 64 bytes
        stateless.frames.push_back(test::frame(p));
    }
    const std::string count = n % 1048576 == 0 ? std::to_string(n / 1048576) + "M"
                              : n % 1024 == 0  ? std::to_string(n / 1024) + "K"
                                               : std::to_string(n);
    stateless.name = "10 filters, " + count + " flows";
    stateless.packets = n;
    stateless.warmup = 2.0 * static_cast<double>(n) / 5e6 + 0.1;  // two passes at 5 Mpps
    Case plain = stateless;
    plain.name = "plain forwarding, " + count + " flows";
    plain.policy.clear();
    Case stateful = stateless;
    stateful.name = "10 filters, state = keep, " + count + " flows";
    const std::string rule = "rule = Generator clients -> permit";
    stateful.policy.replace(stateful.policy.find(rule), rule.size(), "rule = Generator clients -> Keep");
    stateful.policy += "[filteraction Keep]\naction = permit\nstate = keep\n";
    stateful.state_table = static_cast<unsigned>(n);
    Case listed = stateful;
    listed.name = "10 filters, state = keep, " + count + " flows, moatctl states looping";
    listed.listing = true;
    return {plain, stateless, stateful, listed};
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
    const std::size_t looped = c.packets ? c.packets : opt.packets;
    if (!loop.fill(c.frames, looped))
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
    // `moatctl states`: a ring of flow records this thread empties while the worker walks.
    rte_ring* states_ring = nullptr;
    if (c.listing) {
        states_ring = rte_ring_create_elem("wb_states", sizeof(dp::FlowRecord), 2048, SOCKET_ID_ANY,
                                           RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (!states_ring)
            return false;
    }
    dp::WorkerContext ctx;
    ctx.listing.ring = states_ring;
    if (c.state_table) {
        std::string error;
        ctx.flows = dp::FlowTable::create(c.state_table, SOCKET_ID_ANY, error);
        if (!ctx.flows) {
            std::fprintf(stderr, "%s: %s\n", c.name.c_str(), error.c_str());
            return false;
        }
    }
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
    // The warm-up's packets (flows created, caches filled) are not in the figures.
    const auto rx_now = [&] { return ctx.counters.port[0].rx_packets.get() + ctx.counters.port[1].rx_packets.get(); };
    std::uint64_t rx0 = 0, busy0 = 0;
    double t_measured = 0;
    if (c.warmup > 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(c.warmup));
        rx0 = rx_now();
        busy0 = ctx.counters.busy_cycles.get();
        t_measured = seconds();
    }
    const double until = t_measured + opt.seconds;
    std::uint64_t drained = 0, listed = 0, listings = 0;
    if (ring || states_ring) {
        std::array<dp::MonitorRecord, 64> recs;
        std::array<dp::FlowRecord, 64> flows;
        std::uint32_t listing = 1;  // one listing after another, as a client in a loop would ask
        ctx.listing.request.store(listing, std::memory_order_release);
        while (seconds() < until) {
            unsigned n = 0;
            if (ring) {
                n = rte_ring_sc_dequeue_burst_elem(ring, recs.data(), sizeof(dp::MonitorRecord), recs.size(), nullptr);
                drained += n;
            }
            if (states_ring) {
                const bool walked = ctx.listing.done.load(std::memory_order_acquire) == listing;
                const unsigned k = rte_ring_sc_dequeue_burst_elem(states_ring, flows.data(), sizeof(dp::FlowRecord),
                                                                  flows.size(), nullptr);
                listed += k;
                n += k;
                if (walked && rte_ring_count(states_ring) == 0) {
                    ++listings;
                    ctx.listing.request.store(++listing, std::memory_order_release);
                }
            }
            if (n == 0)
                std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    } else {
        std::this_thread::sleep_for(std::chrono::duration<double>(opt.seconds));
    }
    const std::uint64_t rx = rx_now() - rx0;
    const std::uint64_t busy = ctx.counters.busy_cycles.get() - busy0;
    const double measured = seconds() - t_measured;
    stop.store(true);
    rte_eal_wait_lcore(lcore);
    rt.set_workers({});
    if (states_ring) {
        std::fprintf(stderr, "  %s: %llu listings walked whole, %llu flow records\n", c.name.c_str(),
                     static_cast<unsigned long long>(listings), static_cast<unsigned long long>(listed));
        rte_ring_free(states_ring);
    }
    if (ring) {
        std::fprintf(stderr, "  %s: %llu records drained, %llu lost (ring full)\n", c.name.c_str(),
                     static_cast<unsigned long long>(drained),
                     static_cast<unsigned long long>(ctx.counters.monitor_lost.get()));
        rte_ring_free(ring);
    }
    const std::uint64_t dropped = ctx.counters.port[0].dropped.get() + ctx.counters.port[1].dropped.get();
    if (dropped != 0) {
        std::fprintf(stderr, "%s: the worker dropped %llu looped packets\n", c.name.c_str(),
                     static_cast<unsigned long long>(dropped));
        return false;
    }
    if (c.state_table && ctx.counters.state_created.get() != std::min<std::uint64_t>(c.frames.size(), looped)) {
        std::fprintf(stderr, "%s: %llu flows created for %zu flows looped\n", c.name.c_str(),
                     static_cast<unsigned long long>(ctx.counters.state_created.get()), c.frames.size());
        return false;
    }
    c.cycles.push_back(static_cast<double>(busy) / std::max<std::uint64_t>(1, rx));
    c.mpps.push_back(static_cast<double>(rx) / measured / 1e6);
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
        b.pkts[b.n] = rte_pktmbuf_alloc(pool);
        put_frame(b.pkts[b.n], c.frames[b.n % c.frames.size()]);
    }
    constexpr int kTurns = 200000;
    std::uint64_t parse = 0, classify = 0, state = 0;
    std::string error;
    const auto flows = t.has_state ? dp::FlowTable::create(1024, SOCKET_ID_ANY, error) : nullptr;
    dp::StateCounts counts;
    for (int i = 0; i < kTurns; ++i) {
        const std::uint64_t t0 = rte_rdtsc();
        dp::parse_burst(b.packets(), dp::Ingress::outside, t.parse, b.metas());
        const std::uint64_t t1 = rte_rdtsc();
        if (flows)
            flows->prepare(b.packets(), b.metas());
        const std::uint64_t t2 = rte_rdtsc();
        dp::classify_burst(t, b.metas(), b.verdict_span());
        const std::uint64_t t3 = rte_rdtsc();
        if (flows)
            flows->settle(t, b.packets(), b.metas(), b.verdict_span(), t3, counts);
        const std::uint64_t t4 = rte_rdtsc();
        parse += t1 - t0;
        classify += t3 - t2;
        state += (t2 - t1) + (t4 - t3);
    }
    const double packets = double(kTurns) * b.n;
    std::fprintf(stderr, "  %-18s in the cache: parse %.1f, classify %.1f, state %.1f cycles a packet\n", c.name.c_str(),
                 parse / packets, classify / packets, state / packets);
    // With a table of the case's size: the state stage (prepare before the classifier, settle
    // after it, as the worker runs them; the classifier not counted) on bursts of 32 of its flows
    // in a random order (the flows created by a first pass, then five passes timed), so that each
    // packet's slot is out of the cache, whatever order the flows were made in.
    if (c.state_table > 1024 && c.listing == false) {
        const auto big = dp::FlowTable::create(c.state_table, SOCKET_ID_ANY, error);
        if (!big) {
            std::fprintf(stderr, "  %s: %s\n", c.name.c_str(), error.c_str());
        } else {
            std::vector<std::uint32_t> order(c.frames.size());
            for (std::uint32_t i = 0; i < order.size(); ++i)
                order[i] = i;
            std::vector<double> per_pass;
            for (int pass = 0; pass < 6; ++pass) {
                std::shuffle(order.begin(), order.end(), std::mt19937(pass + 1));
                std::uint64_t timed = 0, settled = 0;
                for (std::size_t at = 0; at + dp::kBurstMax <= order.size(); at += dp::kBurstMax) {
                    for (std::size_t j = 0; j < dp::kBurstMax; ++j)
                        put_frame(b.pkts[j], c.frames[order[at + j]]);
                    dp::parse_burst(b.packets(), dp::Ingress::outside, t.parse, b.metas());
                    const std::uint64_t t0 = rte_rdtsc();
                    big->prepare(b.packets(), b.metas());
                    const std::uint64_t t1 = rte_rdtsc();
                    dp::classify_burst(t, b.metas(), b.verdict_span());
                    const std::uint64_t t2 = rte_rdtsc();
                    big->settle(t, b.packets(), b.metas(), b.verdict_span(), t2, counts);
                    timed += (t1 - t0) + (rte_rdtsc() - t2);
                    settled += b.n;
                }
                if (pass != 0)  // the first made the flows
                    per_pass.push_back(double(timed) / double(settled ? settled : 1));
            }
            std::fprintf(stderr,
                         "  %-18s the state stage, %u flows in a random order: %.1f cycles a packet (median of %zu "
                         "passes, best %.1f)\n",
                         c.name.c_str(), big->in_use(), median(per_pass), per_pass.size(),
                         *std::min_element(per_pass.begin(), per_pass.end()));
        }
    }
    rte_pktmbuf_free_bulk(b.pkts.data(), b.n);
}

}  // namespace
}  // namespace moat

int main(int argc, char** argv) {
    using namespace moat;
    std::vector<std::string> sets{"acl1_10K", "fw1_10K", "ipc1_10K"};
    std::vector<std::size_t> flows{1024, 1048576};
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
            if (a == "--flows" && i + 1 < argc) {
                flows.clear();
                for (const auto& f : perf::split_list(argv[++i]))
                    flows.push_back(number(f.c_str(), [](const std::string& t, std::size_t* e) { return std::stoul(t, e); }));
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
                                 "[--packets 512] [--flows 1024,1048576]\n");
            return 2;
        }
    }
    if (!(opt.seconds > 0 && opt.seconds <= 3600) || opt.rounds < 1 || opt.packets < dp::kBurstMax || opt.packets > 4000) {
        std::fprintf(stderr, "worker_bench: --seconds from above 0 to 3600, --rounds >= 1, --packets from 32 to 4000\n");
        return 2;
    }
    for (const std::size_t f : flows)
        if (f < dp::kBurstMax || f > (std::size_t{1} << 22)) {
            std::fprintf(stderr, "worker_bench: --flows from 32 to 4194304 each\n");
            return 2;
        }
    const std::size_t most_flows = flows.empty() ? 0 : *std::max_element(flows.begin(), flows.end());
    // The loop's mbufs (about 400 bytes each with their 64-byte frames) and a flow table of that
    // many flows (about 100 bytes each in DPDK memory) beside the 512 MB the rest needs.
    const unsigned memory_mb = static_cast<unsigned>(512 + most_flows * 600 / (1 << 20));
    // The worker on lcore 1 (CPU 1), the control thread on lcore 0.
    if (!perf::start_eal({"worker_bench", "--no-pci", "--lcores", "0@0,1@1", "--log-level", "*:error"}, memory_mb,
                         2 * memory_mb))
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
    for (const std::size_t f : flows)
        for (auto& c : flow_cases(f))
            cases.push_back(std::move(c));
    Loop loop;
    loop.capacity = std::max<std::size_t>(8191, most_flows + 1024);
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
        std::printf("| %s | %zu | %.1f | %.1f | %+.1f | %.2f |\n", c.name.c_str(),
                    c.packets ? c.packets : std::min(c.frames.size(), opt.packets),
                    cyc, *std::max_element(c.cycles.begin(), c.cycles.end()), cyc - plain, median(c.mpps));
    }
    // state = keep against the same policy without it, at each number of flows (target: at most
    // 15% fewer packets a second, that is at most 1/0.85 the cycles a packet).
    for (std::size_t i = 0; i + 1 < cases.size(); ++i)
        if (cases[i + 1].state_table && !cases[i + 1].listing && !cases[i].policy.empty()) {
            const double a = median(cases[i].cycles), b = median(cases[i + 1].cycles);
            std::printf("\nstate = keep at %zu flows: %.1f against %.1f cycles a packet (%+.1f%%), %.2f against %.2f Mpps "
                        "(%+.1f%%)",
                        cases[i + 1].packets, b, a, 100 * (b / a - 1), median(cases[i + 1].mpps), median(cases[i].mpps),
                        100 * (median(cases[i + 1].mpps) / median(cases[i].mpps) - 1));
        }
    // What a listing that never stops costs the worker: against the same traffic with none.
    for (std::size_t i = 0; i + 1 < cases.size(); ++i)
        if (cases[i + 1].listing) {
            const double a = median(cases[i].cycles), b = median(cases[i + 1].cycles);
            std::printf("\nmoatctl states looping at %zu flows: %.1f against %.1f cycles a packet (%+.1f%%)",
                        cases[i + 1].packets, b, a, 100 * (b / a - 1));
        }
    std::printf("\n");
    return 0;
}
