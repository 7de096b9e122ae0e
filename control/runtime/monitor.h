// Drop trace, control side (`moatctl monitor`, `{"cmd":"monitor",...}`): attaches control-socket
// connections as monitors, publishes what the workers are to sample (dataplane/monitor.h),
// drains the workers' rings and streams one JSON line per sampled packet to each monitor.
//
// Naming the deciding filter. A record carries its generation number and the rank of its
// deciding entry. While a monitor is attached, the Runtime keeps the last few published
// generations alive (Runtime::keep_recent); the hub names a record's filter through the one with
// the record's number: a record judged by a policy that a reload has since replaced still names
// the filter as `moatctl explain` did then. A record whose generation is no longer kept (more
// than Runtime::kKeptForMonitor reloads before it was drained) says so instead.
//
// Slow or absent readers. Each monitor has an output buffer of kClientBuffer bytes; a line that
// does not fit is dropped and counted, and the monitor is told how many in a line of its own
// (`{"lost": N, "ring_lost": M}`) as soon as there is room, with how many records the workers'
// rings refused meanwhile. Nothing waits for a monitor: the control thread drains at most
// kDrainPerTurn records a turn, and a monitor that goes away detaches (its connection closes).
// When the last one detaches, the published word goes back to 0 and the workers stop sampling.
#pragma once

#include <rte_ring.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "control/config/result.h"
#include "control/runtime/control_socket.h"
#include "control/runtime/worker_rings.h"
#include "dataplane/monitor.h"
#include "dataplane/worker.h"

namespace moat::ctl {

class Runtime;
struct Generation;

/// What one monitor asks for. Pure data.
struct MonitorSpec {
    bool all = false;           ///< every packet; false: dropped packets only
    std::uint32_t sample = 1;   ///< one packet in `sample`, per worker
    std::optional<std::string> list;  ///< only packets decided by a filter of this filter list
};

/// Reads `{"cmd":"monitor","mode":"drops"|"all","sample":N,"filter":"LIST"}` (every key but cmd
/// optional); an error names what is wrong. Does not check that the list exists. Pure.
Result<MonitorSpec> parse_monitor_request(const nlohmann::json& req);

/// The word the workers are to follow for `specs`: the greatest common divisor of the sample
/// rates of each kind, so that every monitor's every Nth packet is among those sampled. Pure.
dp::MonitorWord monitor_word(const std::vector<MonitorSpec>& specs, std::uint16_t epoch);

/// True when `spec` wants `r` (its mode, sampling and list; `list` is the name of the filter list
/// of r's deciding filter, empty when none or unknown). Pure.
bool monitor_wants(const MonitorSpec& spec, const dp::MonitorRecord& r, const std::string& list);

class JsonLine;

/// The members that name a deciding entry: rank, then filter, filterlist, rule, line, action
/// through `g`, the generation numbered `generation` (null: not kept any more, and then
/// filter_unknown says so), all null when `rank` is kNoMatch.
void deciding_filter(JsonLine& j, dp::Rank rank, std::uint64_t generation, const Generation* g);

/// A record as a monitor line, one JSON object without the newline: time, worker, port, vlan, length, ethertype, then for
/// IP packets family, proto, src, dst, ports or ICMP type and code, packet (as explain writes it),
/// verdict, reason (fragment: the fragment reason too), generation, and the deciding filter
/// (rank, filter, filterlist, rule, line, action) named through `g` (null: not kept any more),
/// and seq (the packet's index among those its worker counted since monitoring started) and, when
/// dropped, drop_seq (among the dropped ones): what --sample N takes every Nth of.
/// `wall` is the record's TSC as wall-clock time. Members come in that order.
std::string record_line(const dp::MonitorRecord& r, const Generation* g, std::chrono::system_clock::time_point wall);

/// A monitor line as `moatctl monitor` prints it without --json.
std::string record_text(const nlohmann::json& line);

class MonitorHub {
public:
    static constexpr std::size_t kMaxMonitors = 4;
    /// Of those, the most the read-only socket may hold (often mode 0666): one place is always
    /// left to the full socket, so no local user can lock the operator out of `moatctl monitor`.
    static constexpr std::size_t kMaxReadOnlyMonitors = kMaxMonitors - 1;
    static constexpr unsigned kRingSize = 4096;               ///< records per worker ring
    static constexpr std::size_t kClientBuffer = 256 * 1024;  ///< bytes of lines per monitor
    /// A line is shorter than this (its names come from config lines, which are at most 200
    /// bytes): a monitor with less room left loses the line before it is made.
    static constexpr std::size_t kLineRoom = 4096;
    static constexpr std::size_t kDrainPerTurn = 4096;        ///< records per control-loop turn

    explicit MonitorHub(Runtime& rt);
    ~MonitorHub();
    MonitorHub(const MonitorHub&) = delete;
    MonitorHub& operator=(const MonitorHub&) = delete;

    /// Makes worker `w`'s ring (on `socket`) and points `w.monitor` at it and at the word.
    /// Control thread, before the workers launch.
    Status attach_worker(dp::WorkerContext& w, int socket);

    /// The reply to a monitor request: an error, or a stream that starts with
    /// `{"ok":true,"monitor":{...},"generation":G}` and goes on with one line per record.
    /// Control thread.
    Reply attach(const nlohmann::json& req, const RequestContext& ctx);

    /// Drains the rings (at most kDrainPerTurn records), hands the lines to the monitors, drops
    /// those that went away, republishes the word when the set changed. True when a monitor got
    /// something to send (then ControlServer::wake()). Control thread, every loop turn.
    bool drain();

    /// A monitor is attached: the control loop should drain often.
    bool active() const noexcept { return !clients_.empty(); }
    std::size_t monitors() const noexcept { return clients_.size(); }
    /// The word in force (tests).
    std::uint64_t word() const noexcept { return word_.load(std::memory_order_relaxed); }

private:
    struct Client;
    void publish();
    /// Drops the monitors whose connection closed; when that changes the set, republishes the
    /// word (0 when none is left: the workers stop sampling) and stops keeping generations.
    /// Every path that erases gone monitors goes through here.
    void forget_gone();
    std::chrono::system_clock::time_point wall_of(std::uint64_t tsc) const;
    std::uint64_t ring_lost() const;

    Runtime& rt_;
    std::atomic<std::uint64_t> word_{0};
    std::uint16_t epoch_ = 0;
    WorkerRings rings_;
    std::vector<std::shared_ptr<Client>> clients_;
    std::uint64_t tsc0_ = 0;
    double tsc_hz_ = 1;
    std::chrono::system_clock::time_point wall0_;
};

}  // namespace moat::ctl
