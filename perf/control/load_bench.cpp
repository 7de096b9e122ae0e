// Cost of loading a policy (parse, validate, compile, lint) as the number of filters grows.
#include <benchmark/benchmark.h>

#include <string>

#include "control/config.h"

namespace {

/// A policy with `n` distinct host filters to one server, half permitted, plus a catch-all.
std::string policy_text(int n) {
    std::string t = "[appliance]\nme = 198.18.0.10\nassign = P\n[filterlist Hosts]\n";
    for (int i = 0; i < n; ++i)
        t += "filter = 198.19." + std::to_string(i / 256) + "." + std::to_string(i % 256) + "+0:" +
             std::to_string(1 + i % 1000) + ":TCP\n";
    t += "[filterlist Rest]\nfilter = *+0\n[policy P]\nrule = Hosts -> permit\nrule = Rest -> block\n";
    return t;
}

void BM_LoadPolicy(benchmark::State& state) {
    const std::string text = policy_text(static_cast<int>(state.range(0)));
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
