// Moat's trie against DPDK's rte_acl (best SIMD algorithm) and the reference classifier, on the
// ClassBench sets: the same ranked rules, the same packets, bursts of 32, in the same process.
//
//   classifier_bench [--sets acl1_1K,fw1_10K,...] [--nolocal] [--ipv6] [--no-acl SET,...]
//                    [--leaf-size N] [--space-factor F] [--slot-weight W] [--max-depth D]
//                    [benchmark flags]
//
// --ipv6 runs the same sets over IPv6 (perf/classbench.h maps every address into
// 2001:db8::/96); the benchmarks are then named SET-v6. A set named SHAPE@N is a policy shape of
// perf/shapes.h with N filters (prefixes@10000, ports@10000, ipv6@10000, ...; IPv6 for the ipv6
// shape) and 100 000 packets, each a random point of a random entry's box (no locality).
//
// Counters per benchmark: `cycles_per_pkt` (TSC cycles), `build_ms` and `memory_MB` of the
// structure; items/s is the lookup rate. perf/classifier-report runs this with repetitions and
// random interleaving and prints the ratios Moat / rte_acl.
#include <benchmark/benchmark.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <x86intrin.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/runtime/eal_args.h"
#include "control/compile/trie_build.h"
#include "dataplane/classifier_ref.h"
#include "dataplane/trie.h"
#include "perf/acl_anchor.h"
#include "perf/classbench.h"
#include "perf/shapes.h"
#include "perf/start_eal.h"
#include "tests/common/keys.h"

namespace {

using namespace moat;

constexpr std::size_t kBurst = 32;

struct Set {
    std::string name;
    std::vector<dp::Entry> rules;
    std::vector<dp::PacketKey> packets;
    std::vector<dp::TrieKey> keys;
    std::vector<perf::AclKey> acl_keys;
    std::vector<const std::uint8_t*> acl_data;
    std::optional<dp::Trie> trie;
    ctl::TrieBuildStats trie_stats;
    double trie_build_s = 0;
    std::unique_ptr<perf::AclAnchor> acl;
    std::string acl_error;
};

std::vector<std::unique_ptr<Set>> g_sets;
ctl::TrieBuildOptions g_trie_options;

void add_counters(benchmark::State& state, std::uint64_t cycles, double build_s, std::size_t bytes) {
    const double pkts = static_cast<double>(state.iterations() * kBurst);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBurst));
    state.counters["cycles_per_pkt"] = static_cast<double>(cycles) / pkts;
    state.counters["build_ms"] = build_s * 1e3;
    state.counters["memory_MB"] = static_cast<double>(bytes) / (1 << 20);
}

void bm_moat(benchmark::State& state, const Set* s) {
    const dp::LeafScan scan = dp::best_leaf_scan();
    dp::Rank out[kBurst];
    std::size_t at = 0;
    const std::size_t n = s->keys.size() / kBurst * kBurst;
    const std::uint64_t t0 = __rdtsc();
    for (auto _ : state) {
        dp::trie_classify(*s->trie, {s->keys.data() + at, kBurst}, {out, kBurst}, scan);
        benchmark::DoNotOptimize(out);
        at = at + kBurst == n ? 0 : at + kBurst;
    }
    add_counters(state, __rdtsc() - t0, s->trie_build_s, s->trie->bytes());
    state.SetLabel(dp::leaf_scan_name(scan));
}

void bm_acl(benchmark::State& state, const Set* s) {
    dp::Rank out[kBurst];
    std::size_t at = 0;
    const std::size_t n = s->acl_data.size() / kBurst * kBurst;
    const std::uint64_t t0 = __rdtsc();
    for (auto _ : state) {
        s->acl->classify(s->acl_data.data() + at, out, kBurst);
        benchmark::DoNotOptimize(out);
        at = at + kBurst == n ? 0 : at + kBurst;
    }
    add_counters(state, __rdtsc() - t0, s->acl->build_seconds(), s->acl->memory_bytes());
    state.SetLabel(s->acl->algorithm());
}

void bm_reference(benchmark::State& state, const Set* s) {
    std::size_t at = 0;
    const std::size_t n = s->packets.size() / kBurst * kBurst;
    const std::uint64_t t0 = __rdtsc();
    for (auto _ : state) {
        for (std::size_t i = 0; i < kBurst; ++i)
            benchmark::DoNotOptimize(dp::classify_ref(s->rules, s->packets[at + i]));
        at = at + kBurst == n ? 0 : at + kBurst;
    }
    add_counters(state, __rdtsc() - t0, 0, s->rules.size() * sizeof(dp::Entry));
}

/// `n` packets of `family`, each a random point of the box of a random entry of that family.
std::vector<dp::PacketKey> shape_packets(std::span<const dp::Entry> rules, dp::Family family, std::size_t n) {
    std::vector<const dp::Entry*> same;
    for (const auto& r : rules)
        if (r.family == family && r.payload == dp::kNoPayload)
            same.push_back(&r);
    std::vector<dp::PacketKey> out;
    std::mt19937_64 rng(42);
    const unsigned dims = family == dp::Family::ipv4 ? dp::kDimsV4 : dp::kDimsV6;
    for (std::size_t i = 0; i < n && !same.empty(); ++i) {
        std::uint32_t lo[dp::kMaxDims], hi[dp::kMaxDims], d[dp::kMaxDims];
        dp::rule_ranges(*same[rng() % same.size()], lo, hi);
        for (unsigned j = 0; j < dims; ++j)
            d[j] = lo[j] + static_cast<std::uint32_t>(rng() % (std::uint64_t{hi[j]} - lo[j] + 1));
        out.push_back(test::key_of(d, family));
    }
    return out;
}

bool load(Set& s, bool nolocal, bool ipv6, bool with_acl) {
    const std::string dir = perf::classbench_dir();
    const auto at = s.name.find('@');
    const std::string shape = at == std::string::npos ? "" : s.name.substr(0, at);
    const auto& shapes = perf::shape_names();
    std::size_t size = 0;
    if (at != std::string::npos) {
        const std::string n = s.name.substr(at + 1);
        const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), size);
        if (std::find(shapes.begin(), shapes.end(), shape) == shapes.end() || n.empty() || ec != std::errc{} ||
            end != n.data() + n.size() || size == 0) {
            std::fprintf(stderr, "%s: not a set: a shape is SHAPE@N with N filters (N > 0), SHAPE one of", s.name.c_str());
            for (const auto& x : shapes)
                std::fprintf(stderr, " %s", x.c_str());
            std::fprintf(stderr, "\n");
            return false;
        }
    }
    const dp::Family family = ipv6 || shape == "ipv6" ? dp::Family::ipv6 : dp::Family::ipv4;
    const std::string text = shape.empty() ? perf::classbench_policy(dir + "/" + s.name, 0, ipv6)
                                           : perf::shape_policy(shape, size);
    const auto lr = ctl::load_policy_text(text, s.name, {.lint = false});
    if (!lr.usable()) {
        std::fprintf(stderr, "%s: does not load: %s\n", s.name.c_str(),
                     lr.diags.all().empty() ? "?" : ctl::format(lr.diags.all().front()).c_str());
        return false;
    }
    s.rules = lr.compiled->rules;
    s.packets = shape.empty() ? perf::classbench_trace(dir + (nolocal ? "/nolocal/" : "/") + s.name + "_trace", 0, ipv6)
                              : shape_packets(s.rules, family, 100'000);
    for (const auto& p : s.packets) {
        s.keys.push_back(dp::trie_key(p));
        s.acl_keys.push_back(perf::acl_key(p));
    }
    for (const auto& k : s.acl_keys)
        s.acl_data.push_back(reinterpret_cast<const std::uint8_t*>(&k));

    // The build is timed as the median of a few runs (the small ones take milliseconds).
    std::vector<double> times;
    for (int i = 0; i < (s.rules.size() < 50'000 ? 5 : 1); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        auto b = ctl::build_trie(s.rules, family, g_trie_options);
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        if (!b) {
            std::fprintf(stderr, "%s: trie: %s\n", s.name.c_str(), b.error().c_str());
            return false;
        }
        s.trie_stats = b->stats;
        s.trie = std::move(b->trie);
    }
    std::sort(times.begin(), times.end());
    s.trie_build_s = times[times.size() / 2];
    std::fprintf(stderr,
                 "%s: %zu entries, %zu packets; trie %.2f ms, %.2f MB, %u trees, %zu nodes, %zu leaves, max leaf %zu, "
                 "depth %u\n",
                 s.name.c_str(), s.rules.size(), s.packets.size(), s.trie_build_s * 1e3,
                 static_cast<double>(s.trie->bytes()) / (1 << 20), s.trie_stats.trees, s.trie_stats.nodes,
                 s.trie_stats.leaves, s.trie_stats.max_leaf, s.trie_stats.max_depth);
    if (with_acl) {
        s.acl = perf::AclAnchor::build(s.rules, s.acl_error, family);
        if (s.acl)
            std::fprintf(stderr, "%s: rte_acl %s, %.2f ms, %.2f MB\n", s.name.c_str(), s.acl->algorithm(),
                         s.acl->build_seconds() * 1e3, static_cast<double>(s.acl->memory_bytes()) / (1 << 20));
        else
            std::fprintf(stderr, "%s: rte_acl could not build: %s\n", s.name.c_str(), s.acl_error.c_str());
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> sets{"acl1_1K",  "fw1_1K",  "ipc1_1K",  "acl1_10K", "fw1_10K",
                                  "ipc1_10K", "acl1_100K", "fw1_100K", "ipc1_100K"};
    std::vector<std::string> no_acl;
    bool nolocal = false, ipv6 = false;
    std::vector<char*> rest{argv[0]};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--sets" && i + 1 < argc)
            sets = perf::split_list(argv[++i]);
        else if (a == "--no-acl" && i + 1 < argc)
            no_acl = perf::split_list(argv[++i]);
        else if (a == "--nolocal")
            nolocal = true;
        else if (a == "--ipv6")
            ipv6 = true;
        else if (a == "--leaf-size" && i + 1 < argc)
            g_trie_options.leaf_size = static_cast<unsigned>(std::stoul(argv[++i]));
        else if (a == "--space-factor" && i + 1 < argc)
            g_trie_options.space_factor = std::stod(argv[++i]);
        else if (a == "--max-depth" && i + 1 < argc)
            g_trie_options.max_depth = static_cast<unsigned>(std::stoul(argv[++i]));
        else if (a == "--slot-weight" && i + 1 < argc)
            g_trie_options.slot_weight = std::stod(argv[++i]);
        else
            rest.push_back(argv[i]);
    }
    // rte_acl's AVX-512 algorithms need the EAL's SIMD limit raised; memory comes from the heap.
    if (!perf::start_eal({"classifier_bench", "--no-pci", "-l", "0", "--force-max-simd-bitwidth=512", "--log-level", "*:error"},
                         2048, 6144))
        return 1;
    if (sets.empty()) {
        std::fprintf(stderr, "classifier_bench: --sets names no set\n");
        return 1;
    }
    for (const auto& name : sets) {
        auto s = std::make_unique<Set>();
        s->name = name;
        try {
            if (!load(*s, nolocal, ipv6, std::find(no_acl.begin(), no_acl.end(), name) == no_acl.end()))
                return 1;
        } catch (const std::exception& e) {  // the ClassBench reader's: the file and line, what is wrong
            std::fprintf(stderr, "classifier_bench: %s: %s\n", name.c_str(), e.what());
            return 1;
        }
        if (ipv6)
            s->name += "-v6";
        g_sets.push_back(std::move(s));
    }
    for (const auto& s : g_sets) {
        benchmark::RegisterBenchmark(("moat/" + s->name).c_str(), bm_moat, s.get());
        if (s->acl)
            benchmark::RegisterBenchmark(("rte_acl/" + s->name).c_str(), bm_acl, s.get());
        benchmark::RegisterBenchmark(("reference/" + s->name).c_str(), bm_reference, s.get());
    }
    int bargc = static_cast<int>(rest.size());
    benchmark::Initialize(&bargc, rest.data());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    g_sets.clear();
    rte_eal_cleanup();
    return 0;
}
