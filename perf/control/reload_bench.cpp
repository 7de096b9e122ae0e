// The cost of a live policy change, for ClassBench policies of 1K, 10K and 100K filters:
//
//   compile  read + validate + compile + build the tables + publish (Runtime::reload up to the
//            publish; the lint pass runs after it), the median of the reloads; anchored by
//            rte_acl's build of the same ranked entries.
//   live     the config file written (atomically, as editors do) -> inotify sees it -> the
//            settle delay moatd waits -> reload -> published: the worker reads the new tables
//            from its next loop iteration on (the bench then waits until it has passed a
//            quiescent state, which confirms it). Median and worst.
//   storm    a real worker forwards a loop of the trace's permitted packets between two ring
//            ports (the inside port transmits into the outside port's receive ring), while the
//            control thread reloads back to back; its packet rate relative to quiet phases of
//            the same length, interleaved, in the same run.
//
// Targets (issue 5): 10K filters live in under 100 ms; storm/quiet at least 0.95.
//
//   reload_bench [--sets acl1_1K,acl1_10K,acl1_100K] [--seconds 1] [--rounds 5] [--reloads 10]
#include <poll.h>
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
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <thread>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/runtime/eal_args.h"
#include "control/runtime/config_watch.h"
#include "control/config/ini_edit.h"
#include "control/runtime/runtime.h"
#include "dataplane/classify.h"
#include "dataplane/worker.h"
#include "perf/acl_anchor.h"
#include "perf/classbench.h"
#include "perf/start_eal.h"
#include "perf/trace_frames.h"
#include "tests/common/packets.h"

namespace moat {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

using perf::frame_of;
using perf::median;

struct Loop {
    rte_mempool* pool = nullptr;
    rte_ring* out_rx = nullptr;  // the outside port receives from here; the inside port sends here
    rte_ring* out_tx = nullptr;
    rte_ring* in_rx = nullptr;
    std::uint16_t out = 0, in = 0;
};

bool make_loop(Loop& l, const std::string& tag) {
    const auto ring = [&](const char* what) {
        return rte_ring_create((what + tag).c_str(), 16384, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    };
    l.pool = rte_pktmbuf_pool_create(("bench_pool" + tag).c_str(), 16383, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                     SOCKET_ID_ANY);
    l.out_rx = ring("orx");
    l.out_tx = ring("otx");
    l.in_rx = ring("irx");
    if (!l.pool || !l.out_rx || !l.out_tx || !l.in_rx)
        return false;
    const int o = rte_eth_from_rings(("bo" + tag).c_str(), &l.out_rx, 1, &l.out_tx, 1, SOCKET_ID_ANY);
    const int i = rte_eth_from_rings(("bi" + tag).c_str(), &l.in_rx, 1, &l.out_rx, 1, SOCKET_ID_ANY);
    if (o < 0 || i < 0)
        return false;
    l.out = static_cast<std::uint16_t>(o);
    l.in = static_cast<std::uint16_t>(i);
    for (auto p : {l.out, l.in}) {
        const rte_eth_conf conf{};
        if (rte_eth_dev_configure(p, 1, 1, &conf) != 0 ||
            rte_eth_rx_queue_setup(p, 0, 1024, SOCKET_ID_ANY, nullptr, l.pool) != 0 ||
            rte_eth_tx_queue_setup(p, 0, 1024, SOCKET_ID_ANY, nullptr) != 0 || rte_eth_dev_start(p) != 0)
            return false;
    }
    return true;
}

void free_loop(Loop& l) {
    for (auto p : {l.out, l.in}) {
        rte_eth_dev_stop(p);
        rte_eth_dev_close(p);
    }
    for (auto* r : {l.out_rx, l.out_tx, l.in_rx}) {
        void* m;
        while (rte_ring_dequeue(r, &m) == 0)
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        rte_ring_free(r);
    }
    rte_mempool_free(l.pool);
}

struct Result {
    std::string set;
    std::size_t filters = 0, entries = 0, looped = 0;
    double compile_ms = 0, load_ms = 0, build_ms = 0, live_ms = 0, live_worst_ms = 0, acl_ms = -1;
    double quiet_mpps = 0, storm_mpps = 0;
    unsigned storm_reloads = 0;
};

struct Options {
    double seconds = 1;
    int rounds = 5;
    int reloads = 10;
};

std::optional<Result> run_set(const std::string& name, const Options& opt) {
    Result res;
    res.set = name;
    const std::string dir = perf::classbench_dir();
    const std::string a = perf::classbench_policy(dir + "/" + name);
    const std::string b = a + "; variant B: the same filters, another file\n";
    const fs::path work = fs::temp_directory_path() / ("moat-reload-bench." + std::to_string(getpid()));
    fs::create_directories(work);
    const std::string path = (work / "moat.ini").string();
    if (const auto written = ctl::write_file_atomic(path, a); !written) {
        std::fprintf(stderr, "%s\n", written.error().c_str());
        return std::nullopt;
    }
    const ctl::LoadResult first = ctl::load_policy(path, {.lint = false});
    if (!first.usable()) {
        std::fprintf(stderr, "%s: does not load\n", name.c_str());
        return std::nullopt;
    }
    for (std::size_t at = 0; (at = a.find("\nfilter = ", at)) != std::string::npos; ++at)
        ++res.filters;
    res.entries = first.compiled->rules.size();

    ctl::Runtime rt(path, 1);
    if (const auto e = rt.start(*first.config, *first.compiled, a); !e) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), e.error().c_str());
        return std::nullopt;
    }

    // The anchor: rte_acl's build of the same ranked entries.
    {
        std::string err;
        const auto acl = perf::AclAnchor::build(first.compiled->rules, err);
        if (acl)
            res.acl_ms = acl->build_seconds() * 1e3;
        else
            std::fprintf(stderr, "%s: rte_acl could not build (%s): no anchor\n", name.c_str(), err.c_str());
    }

    // The packets: the trace's permitted ones, until 4096 are in the loop.
    Loop loop;
    static int sets_run = 0;
    if (!make_loop(loop, std::to_string(sets_run++))) {
        std::fprintf(stderr, "%s: cannot make the ring ports: %s\n", name.c_str(), rte_strerror(rte_errno));
        return std::nullopt;
    }
    {
        const dp::TableSet& t = *rt.publisher().tables()->load();
        for (const auto& k : perf::classbench_trace(dir + "/" + name + "_trace")) {
            if (res.looped == 4096)
                break;
            const auto f = frame_of(k);
            if (!f)
                continue;
            rte_mbuf* m = rte_pktmbuf_alloc(loop.pool);
            if (!m)
                break;
            std::copy(f->begin(), f->end(), rte_pktmbuf_mtod(m, std::uint8_t*));
            m->data_len = m->pkt_len = static_cast<std::uint32_t>(f->size());
            dp::PacketMeta meta[1];
            dp::parse_frame(rte_pktmbuf_mtod(m, const std::uint8_t*), m->pkt_len, dp::Ingress::outside, t.parse,
                            meta[0]);
            dp::Verdict v[1];
            dp::classify_burst(t, meta, v);
            if (v[0].drop != dp::DropReason::none || rte_ring_enqueue(loop.out_rx, m) != 0) {
                rte_pktmbuf_free(m);
                continue;
            }
            ++res.looped;
        }
    }
    if (res.looped == 0) {
        std::fprintf(stderr, "%s: no trace packet is permitted\n", name.c_str());
        free_loop(loop);
        return std::nullopt;
    }

    std::atomic<bool> stop{false};
    dp::WorkerContext ctx;
    ctx.index = 0;
    ctx.lcore = rte_get_next_lcore(-1, 1, 0);
    ctx.port = {loop.out, loop.in};
    ctx.tables = rt.publisher().tables();
    ctx.qsbr = rt.publisher().qsbr();
    ctx.stop = &stop;
    if (rte_eal_remote_launch(&dp::worker_main, &ctx, ctx.lcore) != 0) {
        std::fprintf(stderr, "cannot launch the worker on lcore %u\n", ctx.lcore);
        free_loop(loop);
        return std::nullopt;
    }
    rt.set_workers({&ctx});
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // warm up

    const auto settle = [&] {
        while (rt.reclaim() != 0)
            std::this_thread::yield();
    };
    bool toggle = false;
    std::vector<double> compile, live, load, build;

    // live: written -> watched -> settled -> reloaded -> served.
    {
        ctl::ConfigWatch watch(path);
        for (int i = 0; i < opt.reloads && watch.ok(); ++i) {
            toggle = !toggle;
            const auto t0 = Clock::now();
            if (!ctl::write_file_atomic(path, toggle ? b : a))
                break;
            bool complete = false;
            while (!complete) {
                pollfd p{watch.fd(), POLLIN, 0};
                if (poll(&p, 1, 5000) <= 0)
                    break;
                complete = watch.changed() == ctl::ConfigWatch::Change::complete;
            }
            if (!complete) {
                std::fprintf(stderr, "%s: inotify did not report the write\n", name.c_str());
                break;
            }
            std::this_thread::sleep_for(ctl::ConfigWatch::kSettleComplete);
            const ctl::ReloadOutcome o = rt.reload("bench", true);
            if (!o.ok) {
                std::fprintf(stderr, "%s: reload failed\n", name.c_str());
                break;
            }
            settle();
            live.push_back(std::chrono::duration<double, std::milli>(o.published - t0).count());
            compile.push_back(o.publish_ms);
            load.push_back(o.load_ms);
            build.push_back(o.build_ms);
        }
    }

    // storm vs quiet, interleaved.
    const auto rx = [&] { return rt.stats().ports[0].rx_packets; };
    std::vector<double> quiet, storm;
    for (int r = 0; r < opt.rounds; ++r) {
        auto t0 = Clock::now();
        auto n0 = rx();
        std::this_thread::sleep_for(std::chrono::duration<double>(opt.seconds));
        quiet.push_back(static_cast<double>(rx() - n0) / (ms_since(t0) * 1e3));

        t0 = Clock::now();
        n0 = rx();
        while (ms_since(t0) < opt.seconds * 1e3) {
            toggle = !toggle;
            if (!ctl::write_file_atomic(path, toggle ? b : a))
                break;
            const ctl::ReloadOutcome o = rt.reload("storm", false);
            if (!o.ok)
                break;
            compile.push_back(o.publish_ms);
            load.push_back(o.load_ms);
            build.push_back(o.build_ms);
            rt.reclaim();
            ++res.storm_reloads;
        }
        storm.push_back(static_cast<double>(rx() - n0) / (ms_since(t0) * 1e3));
        settle();
    }
    stop.store(true);
    rte_eal_wait_lcore(ctx.lcore);
    rt.set_workers({});

    res.compile_ms = median(compile);
    res.load_ms = median(load);
    res.build_ms = median(build);
    res.live_ms = median(live);
    res.live_worst_ms = live.empty() ? 0 : *std::max_element(live.begin(), live.end());
    res.quiet_mpps = median(quiet);
    res.storm_mpps = median(storm);
    free_loop(loop);
    fs::remove_all(work);
    return res;
}

}  // namespace
}  // namespace moat

int main(int argc, char** argv) {
    using namespace moat;
    std::vector<std::string> sets{"acl1_1K", "acl1_10K", "acl1_100K"};
    Options opt;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--sets" && i + 1 < argc)
            sets = perf::split_list(argv[++i]);
        else if (a == "--seconds" && i + 1 < argc)
            opt.seconds = std::stod(argv[++i]);
        else if (a == "--rounds" && i + 1 < argc)
            opt.rounds = std::stoi(argv[++i]);
        else if (a == "--reloads" && i + 1 < argc)
            opt.reloads = std::stoi(argv[++i]);
        else {
            std::fprintf(stderr,
                         "usage: reload_bench [--sets acl1_1K,acl1_10K,acl1_100K] [--seconds 1] [--rounds 5] "
                         "[--reloads 10]\n");
            return 2;
        }
    }
    // Two lcores: the control thread on 0, the worker on 1. rte_acl's anchor needs the DPDK heap
    // and its AVX-512 algorithms the raised SIMD limit.
    if (!perf::start_eal({"reload_bench", "--no-pci", "-l", "0-1", "--force-max-simd-bitwidth=512", "--log-level", "*:error"},
                         2048, 6144))
        return 1;

    std::vector<Result> results;
    for (const auto& s : sets) {
        std::fprintf(stderr, "%s ...\n", s.c_str());
        if (!std::filesystem::exists(perf::classbench_dir() + "/" + s) &&
            !std::filesystem::exists(perf::classbench_dir() + "/" + s + ".xz")) {
            std::fprintf(stderr, "%s: not in %s, skipped\n", s.c_str(), perf::classbench_dir().c_str());
            continue;
        }
        std::optional<Result> r;
        try {
            r = run_set(s, opt);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s: %s\n", s.c_str(), e.what());
        }
        if (!r)
            return 1;
        results.push_back(*r);
    }
    std::printf("%-10s %8s %8s %11s %8s %8s %9s %12s %9s %11s %11s %8s %7s\n", "set", "filters", "entries",
                "compile ms", "(load", "build)", "rte_acl", "compile/acl", "live ms", "live worst", "quiet Mpps", "storm", "storm/q");
    bool ok = true;
    for (const auto& r : results) {
        const double ratio = r.quiet_mpps > 0 ? r.storm_mpps / r.quiet_mpps : 0;
        char acl[32] = "-", rel[32] = "-";
        if (r.acl_ms >= 0) {
            std::snprintf(acl, sizeof acl, "%.1f", r.acl_ms);
            std::snprintf(rel, sizeof rel, "%.2f", r.compile_ms / r.acl_ms);
        }
        std::printf("%-10s %8zu %8zu %11.1f %8.1f %8.1f %9s %12s %9.1f %11.1f %11.2f %8.2f %7.3f  (%u reloads in the storms, %zu "
                    "packets looping)\n",
                    r.set.c_str(), r.filters, r.entries, r.compile_ms, r.load_ms, r.build_ms, acl, rel, r.live_ms, r.live_worst_ms, r.quiet_mpps,
                    r.storm_mpps, ratio, r.storm_reloads, r.looped);
        if (r.set.ends_with("_10K") && r.live_ms >= 100) {
            std::printf("  %s: live in %.1f ms misses the 100 ms target\n", r.set.c_str(), r.live_ms);
            ok = false;
        }
        if (ratio < 0.95) {
            std::printf("  %s: throughput during reloads is %.1f%% of quiet, under the 95%% target\n", r.set.c_str(),
                        ratio * 100);
            ok = false;
        }
    }
    std::printf("%s\n", ok ? "targets met: 10K filters live in under 100 ms; throughput during reloads >= 95%"
                           : "targets missed (see above)");
    rte_eal_cleanup();
    return ok ? 0 : 1;
}
