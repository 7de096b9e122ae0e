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

    /// The first generation, from the config moatd started with (already loaded and usable).
    /// Returns an error message when the table set cannot be built. Control thread, before
    /// workers launch.
    std::string start(const Config& cfg, const CompiledPolicy& cp);

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

    /// Sets `assign` in the config file (empty: unassign) and reloads. Control thread.
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
    nlohmann::json rules() const;
    nlohmann::json explain(const std::string& packet) const;

    /// One control-socket request -> one reply (DESIGN section 7): {"cmd": "status"} etc.
    /// Control thread (reload and assign change state).
    nlohmann::json handle(const nlohmann::json& request);

private:
    Stats stats_locked() const;
    /// Adds the counts `old` holds for filters that survived into its successor and are `live`
    /// (in the current generation) to `into`. Caller holds mu_.
    void carry_survivors(const Generation& old, const std::unordered_set<std::string>& live, CarriedCounts& into) const;

    std::string path_;
    unsigned workers_count_;
    std::function<void(const ReloadOutcome&)> on_reload_;
    std::unique_ptr<Publisher> publisher_;
    mutable std::mutex mu_;  // guards everything below and the generations' lifetime for queries
    std::string loaded_text_;
    CarriedCounts carried_;
    RateMeter rates_;
    std::map<std::uint64_t, std::unordered_set<std::string>> successor_keys_;
    std::vector<PortInfo> ports_;
    std::vector<const dp::WorkerContext*> workers_;
    ReloadOutcome last_;
    std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
    std::uint64_t next_generation_ = 1;
    unsigned reloads_ok_ = 0, reloads_failed_ = 0;
};

}  // namespace moat::ctl
