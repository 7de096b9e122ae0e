// The running appliance's control state: the config file, the published generations, the
// counters carried across reloads, and every query the control socket and DPDK telemetry answer.
//
// Threads. Reloads are built on a thread of their own (the builder): the control thread queues a
// job (submit(): the text the file watch read, a reload that reads the file, an assign) and goes
// on answering; the builder parses, validates, compiles, builds and publishes, then says so
// through events_fd(), and the control thread delivers the outcome (collect()). A newer reload
// cancels an older one still building: the newest file wins, and nothing waits behind a build
// that is already out of date. After each publish the lint runs on a thread of its own too, on
// the published generation, and is cancelled by the next one. The queries (status, stats, rules,
// explain, handle) run on the control thread or DPDK's telemetry thread; a mutex keeps them away
// from a generation being published or freed. Workers never touch this object: they read the
// publisher's table pointer.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "control/compile/load.h"
#include "control/config/result.h"
#include "control/runtime/control_socket.h"
#include "control/runtime/link_watch.h"
#include "control/runtime/publisher.h"
#include "control/runtime/stats.h"
#include "dataplane/worker.h"

namespace moat::ctl {

struct PortInfo {
    std::string side;  ///< outside / inside
    std::string spec;
    std::uint16_t id = 0;
};

/// Diagnostics kept in an outcome or a lint report, each list: the first of them and their
/// count (the command line's check lists them all).
inline constexpr std::size_t kListedDiagnostics = 20;

struct ReloadOutcome {
    bool ok = false;
    bool unchanged = false;  ///< the file was byte for byte the loaded one: nothing to do
    bool superseded = false; ///< the file changed while it was read: nothing done, a later reload reads it again
    std::uint64_t generation = 0;
    std::string trigger;
    std::vector<std::string> errors;    ///< file:line diagnostics, or why the build failed (the first kListedDiagnostics)
    std::vector<std::string> warnings;  ///< the first kListedDiagnostics (the lint's are in the LintReport)
    std::size_t errors_total = 0, warnings_total = 0;
    std::string message;  ///< for assign: what became of the file
    double ms = 0;          ///< from the request to the outcome (queueing included)
    double load_ms = 0;     ///< of which parse, validate and compile (and lint under strict = on)
    double build_ms = 0;    ///< of which building the table set
    double publish_ms = 0;  ///< from the request until the workers could see the new tables
    std::chrono::steady_clock::time_point published;
    std::chrono::system_clock::time_point at;
};

/// The lint of one published generation (overlaps, shadowed filters, a missing catch-all).
struct LintReport {
    std::uint64_t generation = 0;
    bool done = false;  ///< false while it runs
    std::map<std::string, std::uint64_t> counts;  ///< per kind (lint.h's LintCounts)
    std::uint64_t total = 0;
    std::vector<std::string> first;  ///< the first kListedDiagnostics warnings
    double ms = 0;
};

/// A reload for the builder.
struct ReloadJob {
    enum class Kind : std::uint8_t {
        text,    ///< `text`, read by the file watch (with its settle checks)
        file,    ///< the builder reads the file (SIGHUP, moatctl reload)
        assign,  ///< set `assign = policy` in the file (empty: unassign), then reload it
    };
    Kind kind = Kind::file;
    std::string trigger;
    std::string text;
    bool if_changed = false;  ///< text: nothing to do when it is the text in force or on its way
    std::string policy;
};

class Runtime {
public:
    /// `workers`: reader threads of the RCU state (worker indexes 0 .. workers-1).
    Runtime(std::string config_path, unsigned workers);
    ~Runtime();

    /// The first generation, from the config moatd started with (already loaded and usable):
    /// `text` is exactly what was read and loaded (a later reload that reads something else
    /// publishes it). Its [appliance] is what runs until a restart. The generation owns `cfg`
    /// and `cp` from here on. Fails when the table set cannot be built. Control thread, before
    /// workers launch.
    Status start(Config cfg, CompiledPolicy cp, std::string text);

    // ---- Reloads -----------------------------------------------------------------------------
    using Ticket = std::uint64_t;

    /// Queues `job` for the builder and returns its ticket. A reload (text or file) replaces the
    /// reloads queued after the last assign, and cancels one being built: their tickets follow the
    /// new one's. Assigns are never dropped. Control thread.
    Ticket submit(ReloadJob job);

    /// The outcome of `ticket` (or of the reload that replaced it), once known. Any thread.
    std::optional<ReloadOutcome> outcome(Ticket ticket) const;

    /// Readable (an eventfd) when a reload or a lint has finished: then call collect().
    int events_fd() const noexcept { return event_fd_; }

    /// Delivers what has finished: on_reload for each outcome, on_lint for each lint report.
    /// Control thread.
    void collect();

    /// Synchronous forms (tests, benchmarks): read the file (asking `settled` right after, as the
    /// file watch does: if not, the outcome is `superseded` and nothing happens), submit, and
    /// wait for the outcome, collecting on the way. Control thread.
    ReloadOutcome reload(const std::string& trigger, bool if_changed = false,
                         const std::function<bool()>& settled = {});
    /// Sets `assign` in the config file to `policy`, which must be the name of a policy the file
    /// defines (empty: unassign), and reloads; the reply as the control socket gives it.
    nlohmann::json assign(const std::string& policy);

    /// Frees retired generations whose grace period is over, carrying their counters over.
    /// Returns how many still wait. Control thread.
    std::size_t reclaim();

    /// Samples the workers' counters for their rates (`stats`). Control thread, once a second.
    void sample_rates();

    /// Called with every reload's outcome, whatever triggered it (moatd logs them), and with
    /// every finished lint. From collect(): control thread.
    void on_reload(std::function<void(const ReloadOutcome&)> f) { on_reload_ = std::move(f); }
    void on_lint(std::function<void(const LintReport&)> f) { on_lint_ = std::move(f); }
    /// The lint report of the generation in force (done = false while it runs). Any thread.
    LintReport lint() const;

    void set_ports(std::vector<PortInfo> ports);
    /// Counts a link event of port `port` (0 outside, 1 inside); `stats` shows them. Any thread.
    void count_link(std::size_t port, LinkEvent e) noexcept {
        link_events_[port][static_cast<std::size_t>(e)].fetch_add(1, std::memory_order_relaxed);
    }
    void set_workers(std::vector<const dp::WorkerContext*> workers);

    Publisher& publisher() noexcept { return *publisher_; }
    const std::string& config_path() const noexcept { return path_; }
    std::uint64_t generation() const;

    /// The generation in force, alive for as long as the caller holds it. Any thread.
    std::shared_ptr<const Generation> current_generation() const;

    /// Generations kept for `moatctl monitor` (keep_recent): a record drained after this many
    /// reloads since its packet was judged no longer names its filter.
    static constexpr std::size_t kKeptForMonitor = 8;
    /// While on, every published generation is kept (the last kKeptForMonitor), so that
    /// generation_numbered finds the one a monitor record names after a reload replaced it.
    /// Off lets them go (the builder frees them). Control thread.
    void keep_recent(bool on);
    /// The generation numbered `n` if it is in force or kept, else null. Any thread.
    std::shared_ptr<const Generation> generation_numbered(std::uint64_t n) const;

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
    /// A reply that comes when `ticket`'s outcome does.
    Reply reply_when_done(Ticket ticket);

    // The builder thread.
    void build_loop();
    /// Runs one job to its outcome; `cancelled` when a newer reload took its place. The stages:
    /// take_text, load_for_reload, build_table_set, publish_built; refused() ends a failed one.
    ReloadOutcome run(ReloadJob& job, std::chrono::steady_clock::time_point asked, bool& cancelled);
    /// The text a job publishes: written by an assign, read from the file, or given. An outcome
    /// when the job ends here (a refused assign, a file unchanged since it was loaded); a file
    /// that cannot be read leaves its error in `o`.
    std::optional<ReloadOutcome> take_text(ReloadJob& job, std::chrono::steady_clock::time_point asked,
                                           ReloadOutcome& o, std::string& text);
    /// Loads `text` for publishing (errors and warnings into `o`); nullopt when it may not be.
    std::optional<LoadResult> load_for_reload(const std::string& text, ReloadOutcome& o);
    /// A reload keeps the ports moatd runs on: a file that names none is refused.
    Status names_the_ports(const Appliance& now) const;
    /// Makes `g` the generation in force; its counters' rows follow the filters from the old one.
    void publish_built(std::unique_ptr<Generation> g, std::vector<std::string> restart, ReloadOutcome& o,
                       std::chrono::steady_clock::time_point asked, std::string text);
    /// A failed job's outcome: the running generation stays.
    ReloadOutcome refused(ReloadOutcome& o, std::chrono::steady_clock::time_point asked);
    /// Keeps `o` for `t` (the latest kKeptOutcomes) and queues it for collect(). Holds jobs_mu_.
    void remember(Ticket t, ReloadOutcome o);
    /// The assign part of an assign job: the edited text (in `text`), or the refusal.
    std::optional<ReloadOutcome> edit_assign(const std::string& policy, std::string& text);
    // The lint thread, and what hands it a generation (cancelling the lint of an older one).
    void lint_loop();
    void lint_generation(std::shared_ptr<const Generation> g);

    std::string path_;
    unsigned workers_count_;
    std::function<void(const ReloadOutcome&)> on_reload_;
    std::function<void(const LintReport&)> on_lint_;
    std::unique_ptr<Publisher> publisher_;
    mutable std::mutex mu_;  // guards everything below and the generations' lifetime for queries
    RateMeter rates_;
    std::array<std::array<std::atomic<std::uint64_t>, kLinkEvents>, 2> link_events_{};
    std::vector<PortInfo> ports_;
    std::vector<const dp::WorkerContext*> workers_;
    ReloadOutcome last_;
    LintReport lint_;
    Appliance running_;  ///< [appliance] as moatd started: ports, workers, EAL, sockets
    std::vector<std::string> restart_needed_;
    std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
    std::uint64_t next_generation_ = 1;
    bool keep_recent_ = false;
    std::deque<std::shared_ptr<const Generation>> recent_;  ///< while keep_recent_, newest last
    unsigned reloads_ok_ = 0, reloads_failed_ = 0;

    // Jobs and their outcomes (jobs_mu_).
    mutable std::mutex jobs_mu_;
    std::condition_variable jobs_cv_;
    struct Queued {
        Ticket ticket = 0;  ///< 0: nothing (the builder woke to free generations)
        ReloadJob job;
        std::chrono::steady_clock::time_point at;
    };
    std::deque<Queued> jobs_;
    Ticket next_ticket_ = 1;
    Ticket building_ = 0;          ///< the job being built, 0: none
    std::string building_trigger_;
    std::chrono::steady_clock::time_point building_since_;
    bool building_reload_ = false; ///< it is a reload (a newer one cancels it)
    bool building_text_known_ = false;
    std::string building_text_;    ///< what it builds, once known (a reload of other text cancels it)
    std::vector<std::shared_ptr<Generation>> graveyard_;  ///< freed generations, for the builder to free
    Ticket replaced_by_ = 0;      ///< the reload that cancelled it
    unsigned cancelled_in_a_row_ = 0;  ///< builds cancelled since the last that finished
    std::map<Ticket, Ticket> followed_by_;   ///< replaced ticket -> the one whose outcome it takes
    std::map<Ticket, ReloadOutcome> outcomes_;  ///< the latest ones
    std::deque<ReloadOutcome> finished_;     ///< not yet delivered by collect()
    std::string loaded_text_;  ///< the text in force
    std::string newest_text_;  ///< the text of the newest reload queued or being built
    std::atomic<bool> cancel_{false};
    bool stopping_ = false;

    // The lint's hand-over (lint_mu_).
    std::mutex lint_mu_;
    std::condition_variable lint_cv_;
    std::shared_ptr<const Generation> lint_next_;
    std::atomic<bool> lint_cancel_{false};
    bool lint_stopping_ = false;
    std::deque<LintReport> lint_finished_;

    int event_fd_ = -1;
    std::thread builder_, linter_;
};

}  // namespace moat::ctl
