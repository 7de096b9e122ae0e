// Reading the workers' counters: summed over workers with relaxed loads, grouped per port, per
// drop reason and per filter, and printed for people (a table) or machines (JSON).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "control/compile/policy.h"
#include "control/config/model.h"
#include "control/runtime/link_watch.h"
#include "control/runtime/publisher.h"
#include "dataplane/counters.h"
#include "dataplane/table_set.h"
#include "dataplane/worker.h"

namespace moat::ctl {

struct PortStats {
    std::string name;  ///< outside / inside
    std::uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0, dropped = 0, tx_failed = 0;
    std::array<std::uint64_t, kLinkEvents> link{};  ///< by LinkEvent: counted by the control thread
};

/// The link counters, named once like kPortCounters: JSON key `link_NAME` next to the port
/// counters, telemetry `PORT_link_NAME`, Prometheus `moat_port_link_NAME_total{port=...}`.
struct LinkCounterName {
    std::string_view name;
    std::string_view help;
};
inline constexpr std::array<LinkCounterName, kLinkEvents> kLinkCounters{{
    {"link_down", "Times the port's link went down (not taken down by moatd)."},
    {"link_taken_down", "Times moatd took the port's link down because the other port lost its link (link_propagation)."},
    {"link_brought_up", "Times moatd brought the port's link back up when the other port's link returned."},
}};

/// The port counters, named once: the sums, the JSON keys, the telemetry keys (`PORT_NAME`), the
/// Prometheus metrics (`moat_port_NAME_total`) and the columns of the text table follow it.
struct PortCounterName {
    std::string_view name;    ///< JSON key
    std::string_view column;  ///< text table heading
    int width;                ///< text table column width
    std::string_view help;    ///< Prometheus HELP
    dp::Counter dp::PortCounters::*counter;
    std::uint64_t PortStats::*stat;
};

inline constexpr std::array<PortCounterName, 6> kPortCounters{{
    {"rx_packets", "rx packets", 12, "Packets received on the port.", &dp::PortCounters::rx_packets, &PortStats::rx_packets},
    {"rx_bytes", "rx bytes", 14, "Bytes received on the port.", &dp::PortCounters::rx_bytes, &PortStats::rx_bytes},
    {"tx_packets", "tx packets", 12, "Packets sent on the port.", &dp::PortCounters::tx_packets, &PortStats::tx_packets},
    {"tx_bytes", "tx bytes", 14, "Bytes sent on the port.", &dp::PortCounters::tx_bytes, &PortStats::tx_bytes},
    {"dropped", "dropped", 10, "Packets received on the port and dropped.", &dp::PortCounters::dropped, &PortStats::dropped},
    {"tx_failed", "tx failed", 10, "Permitted packets the port's tx queue refused.", &dp::PortCounters::tx_failed, &PortStats::tx_failed},
}};

/// The flow table's counters of a worker (`state = keep`), named once: JSON `states.NAME`,
/// telemetry `state_NAME`, Prometheus `moat_state_NAME_total{worker=...}`; active is a gauge.
struct StateStats {
    std::uint64_t created = 0, expired = 0, cut = 0, full = 0, related = 0;
    std::uint64_t active() const noexcept { return created - expired - cut; }
};

struct StateCounterName {
    std::string_view name;
    std::string_view help;
    dp::Counter dp::WorkerCounters::*counter;
    std::uint64_t StateStats::*stat;
};

inline constexpr std::array<StateCounterName, 5> kStateCounters{{
    {"created", "Flows a stateful permit started (state = keep).", &dp::WorkerCounters::state_created, &StateStats::created},
    {"expired", "Flows freed when their timeout passed or their closed connection's ports were reused.",
     &dp::WorkerCounters::state_expired, &StateStats::expired},
    {"cut", "Flows a reload's policy would not start, removed at their next packet.", &dp::WorkerCounters::state_cut,
     &StateStats::cut},
    {"full", "New flows refused because the worker's flow table (state_table) was full.", &dp::WorkerCounters::state_full,
     &StateStats::full},
    {"related", "ICMP errors passed because the header they quote belongs to a tracked flow.",
     &dp::WorkerCounters::state_related, &StateStats::related},
}};

/// One filter row. The names point into the generation the Stats holds.
struct FilterStats {
    std::string_view filterlist;
    std::string_view filter;
    std::string_view rule;
    int rule_line = 0;  ///< the rule's line: two rules may read alike
    int line = 0;
    dp::Action action = dp::Action::block;
    dp::Rank best_rank = 0;  ///< the filter's highest-ranked entry
    std::uint64_t packets = 0, bytes = 0;
};

/// One worker's counters at one moment, over both ports: what its rates are computed from.
struct WorkerSample {
    std::uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, dropped = 0;
    std::uint64_t busy_cycles = 0, busy_polls = 0;  ///< dp::WorkerCounters' (TSC cycles, loop turns)
};

WorkerSample sample_worker(const dp::WorkerContext& w) noexcept;

/// A worker's rates over the last sampling interval.
struct WorkerRates {
    double seconds = 0;  ///< the interval they are over; 0: not measured yet (moatd's first second)
    double rx_pps = 0, rx_bps = 0, tx_pps = 0, dropped_pps = 0;  ///< packets, bits per second
    /// TSC cycles of the busy polls per packet received (0 without packets): what a packet costs
    /// the worker, whatever its neighbours on the machine take from its rate.
    double cycles_per_packet = 0;
    double busy = 0;   ///< share of the interval's TSC cycles in busy polls (0 .. 1; 0 without a TSC rate)
    double burst = 0;  ///< packets per busy poll
};

/// Per-worker rates between the last two samples; moatd's control thread samples once a second.
/// Not thread-safe: the caller serialises (Runtime's lock).
class RateMeter {
public:
    /// `tsc_hz`: the TSC's rate (rte_get_tsc_hz()), for WorkerRates::busy; 0 leaves busy at 0.
    explicit RateMeter(double tsc_hz = 0) : tsc_hz_(tsc_hz) {}
    /// Takes a sample at `seconds` (a monotonic clock); the rates become those since the
    /// previous sample. A sample with a different worker count, or not later than the previous
    /// one, starts over.
    void sample(std::span<const WorkerSample> now, double seconds);
    /// Rates by worker index; empty before the second sample.
    const std::vector<WorkerRates>& rates() const noexcept { return rates_; }

private:
    double tsc_hz_;
    std::vector<WorkerSample> last_;
    double last_seconds_ = 0;
    std::vector<WorkerRates> rates_;
};

struct WorkerStats {
    unsigned index = 0, lcore = 0;
    std::uint64_t rx_packets = 0, rx_bytes = 0;  ///< over both ports
    std::uint64_t tx_packets = 0;                ///< over both ports
    std::uint64_t dropped = 0;                   ///< received and dropped, any reason
    std::uint64_t payload_scanned = 0;           ///< packets whose payload it scanned
    std::uint64_t payload_bytes = 0;             ///< bytes it scanned
    std::uint64_t busy_cycles = 0;               ///< TSC cycles of its busy polls
    std::uint64_t busy_polls = 0;                ///< its loop turns that received packets
    std::uint64_t monitor_lost = 0;              ///< drop-trace records its full monitor ring refused
    StateStats states;                           ///< its flow table
    WorkerRates rates;
};

struct Stats {
    std::uint64_t generation = 0;
    std::string policy;  ///< empty: nothing assigned
    std::array<PortStats, 2> ports;
    std::array<std::uint64_t, dp::kDropReasons> drops{};
    std::uint64_t non_ip_passed = 0;
    std::array<std::uint64_t, dp::kFragDrops> fragment_drops{};  ///< detail of drops[fragment]
    std::uint64_t fragments_passed = 0;
    StateStats states;                 ///< summed over the workers
    std::vector<WorkerStats> workers;  ///< by worker index
    std::vector<FilterStats> filters;  ///< one per (rule, filter), in rank order
    std::shared_ptr<const Generation> source;  ///< what `filters` point into
};

/// Hits of each row of `g` in its own table set, summed over `workers` (live: relaxed loads).
std::vector<Counts> row_hits(const Generation& g, std::size_t workers);

/// The counters of `workers` and of generation `g`, each filter row's plus `carried[row]` (what
/// earlier generations handed over; empty: nothing), with the rates `rates` measured (by worker
/// index; missing ones are left at zero). O(entries x workers), no strings copied: a snapshot a
/// control-socket reply can stream from while the policy changes.
Stats collect_stats(std::span<const dp::WorkerContext* const> workers, std::shared_ptr<const Generation> g,
                    std::span<const Counts> carried, std::span<const WorkerRates> rates = {});

nlohmann::json stats_json(const Stats& s);
std::string stats_text(const Stats& s);
/// Prometheus text exposition format (counters with `_total`).
std::string stats_prometheus(const Stats& s);

// The same three, a part at a time (the control socket streams a large policy's rows): the head
// is everything but the per-filter rows, which follow in order.
nlohmann::json stats_json_head(const Stats& s);  ///< without "filters"
nlohmann::json filter_json(const FilterStats& f);  ///< one element of "filters"
std::string stats_text_head(const Stats& s);
void filter_text(const FilterStats& f, std::string& out);  ///< appends one filter's line
std::string stats_prometheus_head(const Stats& s);
/// Appends row `i` of 2 * filters.size(): the filters' packets, then their bytes.
void prometheus_filter_row(const Stats& s, std::size_t i, std::string& out);

}  // namespace moat::ctl
