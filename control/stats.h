// Reading the workers' counters: summed over workers with relaxed loads, grouped per port, per
// drop reason and per filter, and printed for people (a table) or machines (JSON).
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include <unordered_map>

#include "control/compile.h"
#include "control/model.h"
#include "control/publisher.h"
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

struct WorkerStats {
    unsigned index = 0, lcore = 0;
    std::uint64_t rx_packets = 0;       ///< over both ports
    std::uint64_t payload_scanned = 0;  ///< packets whose payload it scanned
    std::uint64_t payload_bytes = 0;    ///< bytes it scanned
};

struct Stats {
    std::uint64_t generation = 0;
    std::string policy;  ///< empty: nothing assigned
    std::array<PortStats, 2> ports;
    std::array<std::uint64_t, dp::kDropReasons> drops{};
    std::uint64_t non_ip_passed = 0;
    std::array<std::uint64_t, dp::kFragDrops> fragment_drops{};  ///< detail of drops[fragment]
    std::uint64_t fragments_passed = 0;
    std::vector<WorkerStats> workers;  ///< by worker index
    std::vector<FilterStats> filters;  ///< one per (rule, filter), in rank order
};

struct Counts {
    std::uint64_t packets = 0, bytes = 0;
};

/// Counts of filters that outlived earlier generations, by Generation::row_keys.
using CarriedCounts = std::unordered_map<std::string, Counts>;

/// Hits of each row of `g` in its own table set, summed over `workers` (live: relaxed loads).
std::vector<Counts> row_hits(const Generation& g, std::size_t workers);

/// The counters of `workers` and of generation `g` (plus what `carried` holds for its filters).
/// Caller holds whatever keeps `g` alive.
Stats collect_stats(std::span<const dp::WorkerContext* const> workers, const Generation& g, const CarriedCounts& carried);

nlohmann::json stats_json(const Stats& s);
std::string stats_text(const Stats& s);
/// Prometheus text exposition format (counters with `_total`).
std::string stats_prometheus(const Stats& s);

}  // namespace moat::ctl
