// The running appliance's control state: the config file, the published generations, the
// counters carried across reloads, and every query the control socket and DPDK telemetry answer.
//
// Threads: reload(), reclaim(), assign() and the setters run on the control thread (the main
// lcore). The queries (status, stats, rules, explain, handle) may also run on DPDK's telemetry
// thread; a mutex keeps them away from a generation that reclaim() is freeing. Workers never
// touch this object: they read the publisher's table pointer.
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "control/control_socket.h"
#include "control/publisher.h"
#include "control/stats.h"
#include "dataplane/worker.h"

namespace moat::ctl {

struct PortInfo {
    std::string side;  ///< outside / inside
    std::string spec;
    std::uint16_t id = 0;
};

struct ReloadOutcome {
    bool ok = false;
    bool unchanged = false;  ///< the file was byte for byte the loaded one: nothing to do
    bool superseded = false; ///< the file changed while it was read: nothing done, a later reload reads it again
    std::uint64_t generation = 0;
    std::string trigger;
    std::vector<std::string> errors;    ///< file:line diagnostics, or why the build failed
    std::vector<std::string> warnings;
    double ms = 0;        ///< read, validate, compile, build and publish
    double load_ms = 0;   ///< of which parse, validate, compile and lint
    double build_ms = 0;  ///< of which building the table set
    double publish_ms = 0;  ///< from the start until the workers could see the new tables; the
                            ///< lint pass runs after that, so `ms` may be longer
    std::chrono::steady_clock::time_point published;
    std::chrono::system_clock::time_point at;
};

class Runtime {
public:
    /// `workers`: reader threads of the RCU state (worker indexes 0 .. workers-1).
    Runtime(std::string config_path, unsigned workers);
    ~Runtime();

    /// The first generation, from the config moatd started with (already loaded and usable):
    /// `text` is exactly what was read and loaded (a later reload that reads something else
    /// publishes it). Its [appliance] is what runs until a restart. Returns an error message
    /// when the table set cannot be built. Control thread, before workers launch.
    std::string start(const Config& cfg, const CompiledPolicy& cp, std::string text);

    /// Load -> validate -> compile -> build -> publish the config file; on any failure the
    /// running generation stays and the outcome says why. `if_changed`: skip when the file is
    /// byte for byte the one in force (file-watch noise). `settled`, when given, is asked right
    /// after the file is read whether it stayed untouched meanwhile; if not, the text may be
    /// half of an in-place write, and the reload stops there (`superseded`: nothing published,
    /// counted or logged). Control thread.
    ReloadOutcome reload(const std::string& trigger, bool if_changed = false,
                         const std::function<bool()>& settled = {});

    /// Frees retired generations whose grace period is over, carrying their counters over.
    /// Returns how many still wait. Control thread.
    std::size_t reclaim();

    /// Sets `assign` in the config file to `policy`, which must be the name of a policy the file
    /// defines (empty: unassign), and reloads. Control thread.
    nlohmann::json assign(const std::string& policy);

    /// Samples the workers' counters for their rates (`stats`). Control thread, once a second.
    void sample_rates();

    /// Called with every reload's outcome, whatever triggered it (moatd logs them). Control thread.
    void on_reload(std::function<void(const ReloadOutcome&)> f) { on_reload_ = std::move(f); }

    void set_ports(std::vector<PortInfo> ports);
    void set_workers(std::vector<const dp::WorkerContext*> workers);

    Publisher& publisher() noexcept { return *publisher_; }
    const std::string& config_path() const noexcept { return path_; }
    std::uint64_t generation() const;

    // Queries (any thread).
    nlohmann::json status() const;
    Stats stats() const;
    /// The first `limit` ranked entries with their filters' hits (DPDK telemetry).
    nlohmann::json rules(std::size_t limit) const;
    nlohmann::json explain(const std::string& packet) const;

    /// What changed in [appliance] since start-up that only a restart applies ("outside changed;
    /// restart moatd to apply it ..."), as of the last published generation.
    std::vector<std::string> restart_needed() const;

    /// One control-socket request -> one reply (DESIGN section 7): {"cmd": "status"} etc.
    /// Changing commands (reload, assign, unassign) need `ctx.access` full. Large replies
    /// (stats, rules) stream from a snapshot taken now. Control thread.
    Reply handle(const nlohmann::json& request, const RequestContext& ctx);

    /// True for the commands that change the running policy.
    static bool changes_policy(const std::string& cmd) noexcept;

private:
    /// The counters with every carry-over: what retired generations not yet freed still hold for
    /// the filters that survived into the current one is added on the way. Caller holds mu_.
    Stats stats_locked() const;
    /// The restart-only keys of `now` that differ from what moatd runs with.
    std::vector<std::string> restart_only_changes(const Appliance& now) const;

    std::string path_;
    unsigned workers_count_;
    std::function<void(const ReloadOutcome&)> on_reload_;
    std::unique_ptr<Publisher> publisher_;
    mutable std::mutex mu_;  // guards everything below and the generations' lifetime for queries
    std::string loaded_text_;
    RateMeter rates_;
    std::vector<PortInfo> ports_;
    std::vector<const dp::WorkerContext*> workers_;
    ReloadOutcome last_;
    Appliance running_;  ///< [appliance] as moatd started: ports, workers, EAL, sockets
    std::vector<std::string> restart_needed_;
    std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
    std::uint64_t next_generation_ = 1;
    unsigned reloads_ok_ = 0, reloads_failed_ = 0;
};

}  // namespace moat::ctl
