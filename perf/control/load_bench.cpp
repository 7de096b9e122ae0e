// Cost of loading a policy (parse, validate, compile, lint) as the number of filters grows.
#include <benchmark/benchmark.h>

#include <string>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "perf/policies.h"

namespace {

void BM_LoadPolicy(benchmark::State& state) {
    const std::string text = moat::perf::host_policy_text(static_cast<int>(state.range(0)));
    for (auto _ : state) {
        auto r = moat::ctl::load_policy_text(text, "bench.ini");
        if (!r.usable())
            state.SkipWithError("policy did not load");
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
    state.SetLabel("items = filters loaded");
}
BENCHMARK(BM_LoadPolicy)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
