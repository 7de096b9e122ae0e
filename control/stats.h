// Reading the workers' counters: summed over workers with relaxed loads, grouped per port, per
// drop reason and per filter, and printed for people (a table) or machines (JSON).
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "control/compile.h"
#include "control/model.h"
#include "dataplane/counters.h"
#include "dataplane/table_set.h"
#include "dataplane/worker.h"

namespace moat::ctl {

struct PortStats {
    std::string name;  ///< outside / inside
    std::uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0, dropped = 0, tx_failed = 0;
};

struct FilterStats {
    std::string filterlist;
    std::string filter;
    std::string rule;
    int line = 0;
    dp::Action action = dp::Action::block;
    dp::Rank best_rank = 0;  ///< the filter's highest-ranked entry
    std::uint64_t packets = 0, bytes = 0;
};

struct Stats {
    std::uint64_t generation = 0;
    std::string policy;  ///< empty: nothing assigned
    std::array<PortStats, 2> ports;
    std::array<std::uint64_t, dp::kDropReasons> drops{};
    std::uint64_t non_ip_passed = 0;
    std::vector<FilterStats> filters;  ///< one per (rule, filter), in rank order
};

/// Sums the counters of `workers` under table set `t`, built from `cp` of `cfg`. Any thread.
Stats collect_stats(std::span<const dp::WorkerContext* const> workers, const dp::TableSet& t, const Config& cfg,
                    const CompiledPolicy& cp);

nlohmann::json stats_json(const Stats& s);
std::string stats_text(const Stats& s);

}  // namespace moat::ctl
