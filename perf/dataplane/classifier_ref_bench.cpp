// The reference classifier's cost per packet: the baseline every faster classifier must beat.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/config/packet_spec.h"
#include "perf/policies.h"
#include "dataplane/classifier_ref.h"

namespace {

using namespace moat;

ctl::CompiledPolicy policy(int n) {
    return *ctl::load_policy_text(perf::host_policy_text(n), "bench.ini").compiled;
}

void BM_ClassifyRef(benchmark::State& state) {
    const auto cp = policy(static_cast<int>(state.range(0)));
    std::mt19937 rng(1);
    std::vector<dp::PacketKey> keys(1024);
    for (auto& k : keys) {
        k = ctl::parse_packet("tcp 198.19.0.0:40000 -> 198.18.0.10:80").packet.key;
        k.src.bytes[2] = static_cast<std::uint8_t>(rng() % 64);
        k.src.bytes[3] = static_cast<std::uint8_t>(rng());
        k.dport = static_cast<std::uint16_t>(1 + rng() % 1000);
    }
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(dp::classify_ref(cp.rules, keys[i++ & 1023]));
    }
    state.SetItemsProcessed(state.iterations());
    state.SetLabel("items = packets");
}
BENCHMARK(BM_ClassifyRef)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

}  // namespace

BENCHMARK_MAIN();
