#include "control/config/packet_spec.h"
#include "control/runtime/runtime.h"

#include <algorithm>
#include <array>
#include <poll.h>
#include <pthread.h>
#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/explain.h"
#include "control/config/ini_edit.h"
#include "control/config/json_text.h"
#include "control/config/text.h"
#include "control/compile/tables.h"
#include "dataplane/port.h"

#include <rte_cycles.h>

namespace moat::ctl {

namespace {

std::string iso_time(std::chrono::system_clock::time_point t) {
    const std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

nlohmann::json outcome_json(const ReloadOutcome& o) {
    nlohmann::json j{{"ok", o.ok},         {"unchanged", o.unchanged},
                     {"generation", o.generation}, {"trigger", o.trigger},
                     {"errors", o.errors},       {"warnings", o.warnings},
                     {"errors_total", o.errors_total}, {"warnings_total", o.warnings_total},
                     {"ms", o.ms},               {"at", iso_time(o.at)}};
    if (!o.message.empty())
        j["message"] = o.message;
    return j;
}

nlohmann::json lint_json(const LintReport& l) {
    return {{"generation", l.generation}, {"done", l.done}, {"total", l.total},
            {"counts", l.counts},         {"first", l.first}, {"ms", l.ms}};
}

const char* action_name(dp::Action a) { return a == dp::Action::permit ? "permit" : "block"; }

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

/// Keeps the first kListedDiagnostics of `d` in `out` and counts them all.
void keep_first(const std::string& d, std::vector<std::string>& out, std::size_t& total) {
    if (out.size() < kListedDiagnostics)
        out.push_back(d);
    ++total;
}

/// Outcomes kept for tickets nobody has asked about yet.
constexpr std::size_t kKeptOutcomes = 256;
/// Builds cancelled in a row by newer files before the next one is let finish.
constexpr unsigned kCancelsInARow = 2;
/// How long reloads must have been quiet before the builder returns freed memory to the system.
constexpr std::chrono::seconds kTrimAfterQuiet{3};
/// The builder thread's nice value: above the control thread's, so that requests preempt a build.
constexpr int kBuilderNice = 5;

}  // namespace

Runtime::Runtime(std::string config_path, unsigned workers)
    : path_(std::move(config_path)),
      workers_count_(workers),
      publisher_(std::make_unique<Publisher>(workers)),
      rates_(static_cast<double>(rte_get_tsc_hz())) {  // 0 before EAL: no busy share
    event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (event_fd_ < 0)
        throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    // Both threads inherit the control thread's CPU set (the main lcore), never a worker's.
    builder_ = std::thread([this] { build_loop(); });
    linter_ = std::thread([this] { lint_loop(); });
}

Runtime::~Runtime() {
    {
        std::lock_guard lock(jobs_mu_);
        stopping_ = true;
        cancel_ = true;
    }
    jobs_cv_.notify_all();
    {
        std::lock_guard lock(lint_mu_);
        lint_stopping_ = true;
        lint_cancel_ = true;
    }
    lint_cv_.notify_all();
    builder_.join();
    linter_.join();
    close(event_fd_);
    std::lock_guard lock(mu_);
    publisher_.reset();
}

Status Runtime::start(Config cfg, CompiledPolicy cp, std::string text) {
    // The generation owns the policy; the table set views its entries (no copy).
    auto g = std::make_unique<Generation>();
    g->config = std::move(cfg);
    g->compiled = std::move(cp);
    Result<BuiltTables> b = build_table_set(g->config, g->compiled, workers_count_, next_generation_);
    if (!b)
        return fail(b.error());
    g->number = next_generation_++;
    g->tables = std::move(b->tables);
    g->v4 = b->v4;
    g->v6 = b->v6;
    g->loaded_at = std::chrono::system_clock::now();
    index_rows(*g);
    {
        std::lock_guard lock(jobs_mu_);
        loaded_text_ = std::move(text);
    }
    std::shared_ptr<const Generation> first;
    {
        std::lock_guard lock(mu_);
        running_ = g->config.appliance;
        publisher_->publish(std::move(g));
        last_ = ReloadOutcome{};
        last_.ok = true;
        last_.generation = 1;
        last_.trigger = "start";
        last_.at = std::chrono::system_clock::now();
        lint_.generation = 1;
        first = publisher_->current_shared();
    }
    lint_generation(std::move(first));
    return {};
}

void Runtime::lint_generation(std::shared_ptr<const Generation> g) {
    {
        std::lock_guard lock(lint_mu_);
        lint_next_ = std::move(g);
        lint_cancel_ = true;  // the lint of an older generation is of no use any more
    }
    lint_cv_.notify_all();
}

Runtime::Ticket Runtime::submit(ReloadJob job) {
    std::lock_guard lock(jobs_mu_);
    const Ticket t = next_ticket_++;
    const bool reload = job.kind != ReloadJob::Kind::assign;
    // What a changed file is compared with: the text of the newest reload queued or being built,
    // else the text in force.
    const std::string& newest = building_ || !jobs_.empty() ? newest_text_ : loaded_text_;
    if (job.kind == ReloadJob::Kind::text && job.if_changed && job.text == newest) {
        // File-watch noise (a touch, a save of the same bytes): nothing to build.
        ReloadOutcome o;
        o.ok = o.unchanged = true;
        o.trigger = job.trigger;
        o.at = std::chrono::system_clock::now();
        {
            std::lock_guard g(mu_);
            o.generation = publisher_->current()->number;
            if (!last_.ok)
                last_ = o;  // back to the file in force after a failed edit: say so
        }
        remember(t, std::move(o));
        const std::uint64_t one = 1;
        (void)!write(event_fd_, &one, sizeof one);
        return t;
    }
    if (reload) {
        // The newest file wins: the reloads queued since the last assign are out of date, and so
        // is one being built from other text than this one (a reload that reads the file, or one
        // of the same bytes, lets it finish: cancelling it for them could starve the publish);
        // their askers get this one's outcome.
        while (!jobs_.empty() && jobs_.back().job.kind != ReloadJob::Kind::assign) {
            followed_by_[jobs_.back().ticket] = t;
            jobs_.pop_back();
        }
        // Edits that come faster than a build would cancel every build: after kCancelsInARow
        // the one being built runs to the end (and publishes), then the newest is built.
        if (building_ && building_reload_ && job.kind == ReloadJob::Kind::text && building_text_known_ &&
            job.text != building_text_ && cancelled_in_a_row_ < kCancelsInARow) {
            cancel_ = true;
            replaced_by_ = t;
        }
    }
    if (job.kind == ReloadJob::Kind::text)
        newest_text_ = job.text;
    jobs_.push_back({t, std::move(job), std::chrono::steady_clock::now()});
    jobs_cv_.notify_all();
    return t;
}

void Runtime::remember(Ticket t, ReloadOutcome o) {
    outcomes_[t] = o;
    finished_.push_back(std::move(o));
    while (outcomes_.size() > kKeptOutcomes)
        outcomes_.erase(outcomes_.begin());
    while (followed_by_.size() > kKeptOutcomes)
        followed_by_.erase(followed_by_.begin());
}

std::optional<ReloadOutcome> Runtime::outcome(Ticket t) const {
    std::lock_guard lock(jobs_mu_);
    for (auto it = followed_by_.find(t); it != followed_by_.end(); it = followed_by_.find(t))
        t = it->second;
    if (const auto it = outcomes_.find(t); it != outcomes_.end())
        return it->second;
    return std::nullopt;
}

void Runtime::build_loop() {
    // Below the control thread: on a core it shares with the builder, a client's request
    // preempts a build at once instead of waiting for the build's time slice to run out.
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kBuilderNice);
    bool trim_owed = false;  // generations were freed since the last malloc_trim
    for (;;) {
        Queued q;
        std::vector<std::shared_ptr<Generation>> dead;
        {
            std::unique_lock lock(jobs_mu_);
            const auto ready = [&] { return stopping_ || !jobs_.empty() || !graveyard_.empty(); };
            // Freed memory goes back to the system once reloads have been quiet for a while,
            // not after each one: trimming at once made the next build fault every page in
            // again, and stalled the control thread's status answers (acl1_100K edits: slowest
            // answer 9-28 ms with a trim after each reload, 6-12 ms without).
            if (trim_owed && !jobs_cv_.wait_for(lock, kTrimAfterQuiet, ready)) {
                trim_owed = false;
                lock.unlock();
                malloc_trim(0);
                continue;
            }
            jobs_cv_.wait(lock, ready);
            if (stopping_)
                return;
            dead.swap(graveyard_);
            if (!jobs_.empty()) {
                q = std::move(jobs_.front());
                jobs_.pop_front();
                building_ = q.ticket;
                building_trigger_ = q.job.trigger;
                building_since_ = std::chrono::steady_clock::now();
                building_reload_ = q.job.kind != ReloadJob::Kind::assign;
                building_text_known_ = q.job.kind == ReloadJob::Kind::text;
                building_text_ = building_text_known_ ? q.job.text : std::string();
                replaced_by_ = 0;
                cancel_ = false;
            }
        }
        if (!dead.empty()) {
            // Freed here, not on the control thread (tens of ms for a 100K policy).
            dead.clear();
            trim_owed = true;
        }
        if (!q.ticket)
            continue;
        bool cancelled = false;
        ReloadOutcome o;
        try {
            o = run(q.job, q.at, cancelled);
        } catch (const std::exception& e) {  // bad_alloc, mostly: the running policy stays
            o = ReloadOutcome{};
            o.trigger = q.job.trigger;
            o.at = std::chrono::system_clock::now();
            o.errors = {path_ + ": error: the reload failed: " + e.what()};
            o.errors_total = 1;
            o.ms = ms_since(q.at);
        }
        {
            std::lock_guard lock(jobs_mu_);
            if (cancelled && replaced_by_) {
                followed_by_[q.ticket] = replaced_by_;
                ++cancelled_in_a_row_;
            } else {
                remember(q.ticket, o);
                cancelled_in_a_row_ = 0;
            }
            if (q.job.kind == ReloadJob::Kind::assign) {
                // The file was written after the reloads queued behind the assign read it: they
                // read it again when their turn comes.
                for (auto& later : jobs_)
                    if (later.job.kind == ReloadJob::Kind::text) {
                        later.job.kind = ReloadJob::Kind::file;
                        later.job.text.clear();
                    }
            }
            building_ = 0;
            building_text_known_ = false;
        }
        const std::uint64_t one = 1;
        (void)!write(event_fd_, &one, sizeof one);
    }
}

std::optional<ReloadOutcome> Runtime::edit_assign(const std::string& policy, std::string& text) {
    ReloadOutcome refusal;
    refusal.trigger = policy.empty() ? "unassign" : "assign";
    refusal.at = std::chrono::system_clock::now();
    refusal.message = path_ + " is unchanged";
    const auto refused = [&](const LoadResult& r) {
        for (const auto& d : r.diags.all())
            if (d.severity == Severity::error)
                keep_first(format(d), refusal.errors, refusal.errors_total);
        return refusal;
    };
    const auto refused_with = [&](const std::string& e) {
        refusal.errors = {e};
        refusal.errors_total = 1;
        return refusal;
    };
    // The edit is made to the file as it is when it is written: if an operator saves it while the
    // edit is checked, the edit starts again from their version instead of reverting it.
    for (int attempt = 0; attempt < 3; ++attempt) {
        if (Result<std::string> read = read_config_file(path_); !read)
            return refused_with(path_ + ": error: " + read.error());
        else
            text = std::move(*read);
        // Only the name of a policy the file defines is written into it: such a name came from a
        // [policy NAME] header of this very file, so it is one line of valid text.
        if (!policy.empty()) {
            const LoadResult cur = load_policy_text(text, path_, {.lint = false, .compile_unassigned = false});
            if (!cur.config)
                return refused(cur);
            if (cur.config->find_policy(policy) < 0) {
                std::string names;
                for (const auto& p : cur.config->policies)
                    names += (names.empty() ? "" : ", ") + ctl::quoted(p.name);
                return refused_with(path_ + ": error: no policy " + ctl::quoted(valid_utf8(policy.substr(0, 200))) +
                                    " is defined (policies: " + (names.empty() ? "none" : names) + ")");
            }
        }
        IniText ini(text);
        auto a = ini.find_section("appliance", "");
        if (!a)
            a = ini.add_section("appliance", "", {},
                                ini.sections("filterlist").empty() ? std::nullopt
                                                                   : std::optional(ini.sections("filterlist").front()));
        ini.set_key(*a, "assign", policy);
        std::string next = ini.str();
        // Lint only where its warnings decide (strict = on): it is the costly part.
        LoadResult check = load_policy_text(next, path_, {.lint = false, .compile_unassigned = false});
        if (check.config && check.config->appliance.strict)
            check = load_policy_text(next, path_);
        if (!check.usable())
            return refused(check);
        if (check.config->appliance.assign != policy)  // e.g. a name the INI syntax cannot hold as a value
            return refused_with(path_ + ": error: policy " + ctl::quoted(policy) + " cannot be written as an assign value");
        if (next == text)
            return std::nullopt;  // already so: nothing to write
        bool changed = false;
        const auto still = [&] {
            const Result<std::string> now = read_config_file(path_);
            return now && *now == text;
        };
        if (const Status written = write_file_atomic(path_, next, still, &changed); !written) {
            if (changed)
                continue;  // saved meanwhile: again, on what is there now
            return refused_with(written.error());
        }
        text = std::move(next);
        return std::nullopt;
    }
    return refused_with(path_ + ": error: the config file changed three times while assign ran; try again");
}

std::optional<ReloadOutcome> Runtime::take_text(ReloadJob& job, std::chrono::steady_clock::time_point asked,
                                                ReloadOutcome& o, std::string& text) {
    if (job.kind == ReloadJob::Kind::assign) {
        o.trigger = job.policy.empty() ? "unassign" : "assign";
        if (auto refusal = edit_assign(job.policy, text)) {
            refusal->ms = ms_since(asked);
            std::lock_guard lock(mu_);
            ++reloads_failed_;
            last_ = *refusal;
            return refusal;
        }
        std::lock_guard lock(jobs_mu_);
        newest_text_ = text;  // the file watch will see this write: nothing new to build then
        return std::nullopt;
    }
    if (job.kind != ReloadJob::Kind::file) {
        text = std::move(job.text);
        return std::nullopt;
    }
    Result<std::string> read = read_config_file(path_);
    if (!read) {
        keep_first(path_ + ": error: " + read.error(), o.errors, o.errors_total);
        return std::nullopt;
    }
    text = std::move(*read);
    std::lock_guard lock(jobs_mu_);
    newest_text_ = building_text_ = text;
    building_text_known_ = true;
    if (job.if_changed && text == loaded_text_) {  // a watch reload read again: nothing new
        o.ok = o.unchanged = true;
        std::lock_guard g(mu_);
        o.generation = publisher_->current()->number;
        if (!last_.ok)
            last_ = o;
        return o;
    }
    return std::nullopt;
}

ReloadOutcome Runtime::refused(ReloadOutcome& o, std::chrono::steady_clock::time_point asked) {
    o.ms = ms_since(asked);
    std::lock_guard lock(mu_);
    last_ = o;
    ++reloads_failed_;
    return o;
}

std::optional<LoadResult> Runtime::load_for_reload(const std::string& text, ReloadOutcome& o) {
    const auto t_load = std::chrono::steady_clock::now();
    LoadResult r = load_policy_text(text, path_, {.lint = false, .compile_unassigned = false});
    const bool strict = r.config && r.config->appliance.strict;
    if (strict)  // its warnings are errors: the lint comes first
        r = load_policy_text(text, path_);
    o.load_ms = ms_since(t_load);
    for (const auto& d : r.diags.all())
        d.severity == Severity::error ? keep_first(format(d), o.errors, o.errors_total)
                                      : keep_first(format(d), o.warnings, o.warnings_total);
    if (!r.usable()) {
        if (o.errors.empty())
            keep_first(path_ + ": error: not usable (strict = on and warnings)", o.errors, o.errors_total);
        return std::nullopt;
    }
    return r;
}

Status Runtime::names_the_ports(const Appliance& now) const {
    // Ports, workers, EAL and the sockets belong to the running process: a reload cannot move
    // them, and says so every time until a restart does. A file that names no ports at all is
    // not a new setting but a wrong or incomplete file.
    if (!running_.outside.empty() && (now.outside.empty() || now.inside.empty()))
        return fail(path_ + ":" + std::to_string(now.line) + ": error: [appliance] names no " +
                    (now.outside.empty() ? "outside" : "inside") + " port; moatd runs on outside = " + running_.outside +
                    ", inside = " + running_.inside + " (an incomplete file? the running policy stays)");
    return {};
}

void Runtime::publish_built(std::unique_ptr<Generation> g, std::vector<std::string> restart, ReloadOutcome& o,
                            std::chrono::steady_clock::time_point asked, std::string text) {
    g->loaded_at = std::chrono::system_clock::now();
    index_rows(*g);
    // Only this thread publishes: the generation in force cannot change under it, and its row
    // keys never do, so its rows are linked to the new ones outside the lock.
    Generation* cur = publisher_->current();
    std::vector<std::uint32_t> next_row = link_rows(*cur, *g);
    std::shared_ptr<const Generation> published;
    std::shared_ptr<const Generation> unkept;  // freed here, on the builder, outside the lock
    {
        std::lock_guard lock(mu_);
        g->number = next_generation_++;
        o.generation = g->number;
        cur->next_row = std::move(next_row);
        cur->successor = g.get();
        publisher_->publish(std::move(g));
        restart_needed_ = std::move(restart);
        o.ok = true;
        o.published = std::chrono::steady_clock::now();
        o.ms = o.publish_ms = ms_since(asked);
        last_ = o;
        ++reloads_ok_;
        lint_ = LintReport{};
        lint_.generation = o.generation;
        published = publisher_->current_shared();
        if (keep_recent_) {
            recent_.push_back(published);
            if (recent_.size() > kKeptForMonitor) {
                unkept = std::move(recent_.front());
                recent_.pop_front();
            }
        }
    }
    {
        std::lock_guard lock(jobs_mu_);
        loaded_text_ = std::move(text);
    }
    lint_generation(std::move(published));
}

ReloadOutcome Runtime::run(ReloadJob& job, std::chrono::steady_clock::time_point asked, bool& cancelled) {
    ReloadOutcome o;
    o.trigger = job.trigger;
    o.at = std::chrono::system_clock::now();
    std::string text;
    if (auto done = take_text(job, asked, o, text))
        return *done;
    if (!o.errors.empty())
        return refused(o, asked);
    std::optional<LoadResult> r = load_for_reload(text, o);
    if (!r)
        return refused(o, asked);
    if (cancel_) {
        cancelled = true;
        return o;
    }
    if (const Status ports = names_the_ports(r->config->appliance); !ports) {
        keep_first(ports.error(), o.errors, o.errors_total);
        return refused(o, asked);
    }
    std::vector<std::string> restart = restart_only_changes(r->config->appliance);
    for (const auto& w : restart)
        keep_first(w, o.warnings, o.warnings_total);

    // The generation owns the policy; the table set views its entries (no copy).
    auto g = std::make_unique<Generation>();
    g->config = std::move(*r->config);
    g->compiled = std::move(*r->compiled);
    // The ports keep the MTU they started with, and so does the parser's frame limit.
    if (!running_.outside.empty())
        g->config.appliance.mtu = running_.mtu;
    const auto t_build = std::chrono::steady_clock::now();
    Result<BuiltTables> b = build_table_set(g->config, g->compiled, workers_count_, next_generation_, &cancel_);
    o.build_ms = ms_since(t_build);
    if (cancel_) {
        cancelled = true;
        return o;
    }
    if (!b) {
        keep_first(path_ + ": error: " + b.error(), o.errors, o.errors_total);
        return refused(o, asked);
    }
    g->tables = std::move(b->tables);
    g->v4 = b->v4;
    g->v6 = b->v6;
    publish_built(std::move(g), std::move(restart), o, asked, std::move(text));
    return o;
}

void Runtime::lint_loop() {
    // The lint is advice: it runs when the control thread and the builder have nothing to do.
    sched_param idle{};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
    for (;;) {
        std::shared_ptr<const Generation> g;
        {
            std::unique_lock lock(lint_mu_);
            lint_cv_.wait(lock, [&] { return lint_stopping_ || lint_next_; });
            if (lint_stopping_)
                return;
            g = std::move(lint_next_);
            lint_next_.reset();
            lint_cancel_ = false;
        }
        const auto t0 = std::chrono::steady_clock::now();
        Diagnostics d;
        LintCounts counts;
        lint_policies(g->config, d, counts, {.listed = kListedDiagnostics, .cancel = &lint_cancel_});
        if (lint_cancel_)
            continue;  // a newer generation is waiting
        LintReport rep;
        rep.generation = g->number;
        rep.done = true;
        for (const auto& [kind, n] : counts) {
            rep.counts[kind] = n;
            rep.total += n;
        }
        for (const auto& w : d.all())
            if (w.severity == Severity::warning && !w.kind.empty() && rep.first.size() < kListedDiagnostics)
                rep.first.push_back(format(w));
        rep.ms = ms_since(t0);
        {
            std::lock_guard lock(mu_);
            if (publisher_->current()->number == rep.generation)
                lint_ = rep;
        }
        {
            std::lock_guard lock(lint_mu_);
            lint_finished_.push_back(std::move(rep));
        }
        const std::uint64_t one = 1;
        (void)!write(event_fd_, &one, sizeof one);
    }
}

void Runtime::collect() {
    std::uint64_t n = 0;
    (void)!read(event_fd_, &n, sizeof n);
    std::deque<ReloadOutcome> outcomes;
    {
        std::lock_guard lock(jobs_mu_);
        outcomes.swap(finished_);
    }
    std::deque<LintReport> lints;
    {
        std::lock_guard lock(lint_mu_);
        lints.swap(lint_finished_);
    }
    for (const auto& o : outcomes)
        if (on_reload_ && !o.unchanged)
            on_reload_(o);
    for (const auto& l : lints)
        if (on_lint_)
            on_lint_(l);
}

LintReport Runtime::lint() const {
    std::lock_guard lock(mu_);
    return lint_;
}

ReloadOutcome Runtime::reload(const std::string& trigger, bool if_changed, const std::function<bool()>& settled) {
    ReloadJob job;
    job.trigger = trigger;
    job.if_changed = if_changed;
    if (settled || if_changed) {
        job.kind = ReloadJob::Kind::text;
        if (Result<std::string> read = read_config_file(path_))
            job.text = std::move(*read);
        else
            job.kind = ReloadJob::Kind::file;  // the builder reads it again and says why it cannot
        if (settled && !settled()) {
            ReloadOutcome o;
            o.trigger = trigger;
            o.superseded = true;
            return o;
        }
    }
    const Ticket t = submit(std::move(job));
    for (;;) {
        collect();
        if (auto o = outcome(t))
            return *o;
        pollfd p{event_fd_, POLLIN, 0};
        poll(&p, 1, 10);
    }
}

nlohmann::json Runtime::assign(const std::string& policy) {
    ReloadJob job;
    job.kind = ReloadJob::Kind::assign;
    job.policy = policy;
    const Ticket t = submit(std::move(job));
    for (;;) {
        collect();
        if (auto o = outcome(t))
            return outcome_json(*o);
        pollfd p{event_fd_, POLLIN, 0};
        poll(&p, 1, 10);
    }
}

std::size_t Runtime::reclaim() {
    std::vector<std::shared_ptr<Generation>> freed;
    std::size_t waiting = 0;
    {
        std::lock_guard lock(mu_);
        if (publisher_->retired() == 0)
            return 0;  // the common case, every turn of the control loop
        waiting = publisher_->reclaim(
            [&](Generation& old) {
                // Its counters are final now: each surviving row's counts (and what it carried)
                // move into its successor's row.
                const std::vector<Counts> hits = row_hits(old, workers_count_);
                for (std::size_t r = 0; r < old.next_row.size(); ++r)
                    if (const std::uint32_t to = old.next_row[r]; to != kNoRow) {
                        old.successor->carried[to] += hits[r];
                        old.successor->carried[to] += old.carried[r];
                    }
            },
            &freed);
    }
    if (!freed.empty()) {  // the builder frees them: not this thread, not under the lock
        {
            std::lock_guard lock(jobs_mu_);
            graveyard_.insert(graveyard_.end(), std::make_move_iterator(freed.begin()),
                              std::make_move_iterator(freed.end()));
        }
        jobs_cv_.notify_all();
    }
    return waiting;
}

void Runtime::set_ports(std::vector<PortInfo> ports) {
    std::lock_guard lock(mu_);
    ports_ = std::move(ports);
}

void Runtime::set_workers(std::vector<const dp::WorkerContext*> workers) {
    std::lock_guard lock(mu_);
    workers_ = std::move(workers);
}

std::shared_ptr<const Generation> Runtime::current_generation() const {
    std::lock_guard lock(mu_);
    return publisher_->current_shared();
}

void Runtime::keep_recent(bool on) {
    std::vector<std::shared_ptr<Generation>> unkept;
    {
        std::lock_guard lock(mu_);
        keep_recent_ = on;
        if (on && recent_.empty())
            recent_.push_back(publisher_->current_shared());
        if (!on)
            for (auto& g : recent_)
                unkept.push_back(std::const_pointer_cast<Generation>(std::move(g)));
        if (!on)
            recent_.clear();
    }
    if (!unkept.empty()) {  // the builder frees them: a large policy takes a while
        {
            std::lock_guard lock(jobs_mu_);
            graveyard_.insert(graveyard_.end(), std::make_move_iterator(unkept.begin()), std::make_move_iterator(unkept.end()));
        }
        jobs_cv_.notify_all();
    }
}

std::shared_ptr<const Generation> Runtime::generation_numbered(std::uint64_t n) const {
    std::lock_guard lock(mu_);
    if (publisher_->current() && publisher_->current()->number == n)
        return publisher_->current_shared();
    for (const auto& g : recent_)
        if (g->number == n)
            return g;
    return nullptr;
}

std::uint64_t Runtime::generation() const {
    std::lock_guard lock(mu_);
    return publisher_->current() ? publisher_->current()->number : 0;
}

std::vector<std::string> Runtime::restart_only_changes(const Appliance& now) const {
    std::vector<std::string> out;
    const auto restart_only = [&](const char* key, bool changed) {
        if (changed)
            out.push_back(path_ + ": warning: " + key + " changed; restart moatd to apply it (the running value stays)");
    };
    const Appliance& was = running_;
    restart_only("outside", was.outside != now.outside);
    restart_only("inside", was.inside != now.inside);
    restart_only("workers", was.workers != now.workers);
    restart_only("eal", was.eal != now.eal);
    restart_only("control", was.control != now.control);
    restart_only("control_readonly", was.control_readonly != now.control_readonly);
    restart_only("control_group", was.control_gid != now.control_gid);
    restart_only("control_readonly_group", was.control_readonly_gid != now.control_readonly_gid);
    restart_only("fragment_table", was.fragment_table != now.fragment_table);
    restart_only("state_table", was.state_table != now.state_table);
    restart_only("metrics", was.metrics_host != now.metrics_host || was.metrics_port != now.metrics_port);
    restart_only("mtu", was.mtu != now.mtu);
    restart_only("link_propagation", was.link_propagation != now.link_propagation);
    return out;
}

std::vector<std::string> Runtime::restart_needed() const {
    std::lock_guard lock(mu_);
    return restart_needed_;
}

nlohmann::json Runtime::status() const {
    nlohmann::json building = nullptr;  // a reload being built: what asked for it, since when
    {
        std::lock_guard jobs(jobs_mu_);  // alone: it is taken before mu_ elsewhere
        if (building_)
            building = {{"trigger", building_trigger_}, {"for_ms", ms_since(building_since_)}, {"queued", jobs_.size()}};
    }
    std::lock_guard lock(mu_);
    const Generation& g = *publisher_->current();
    nlohmann::json j;
    j["config"] = path_;
    j["policy"] = g.compiled.policy >= 0 ? nlohmann::json(g.config.policies[static_cast<std::size_t>(g.compiled.policy)].name)
                                         : nlohmann::json(nullptr);
    j["generation"] = g.number;
    j["loaded_at"] = iso_time(g.loaded_at);
    j["entries"] = g.compiled.rules.size();
    j["started_at"] = iso_time(started_);
    j["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - started_).count();
    j["last_reload"] = outcome_json(last_);
    j["reloads"] = {{"ok", reloads_ok_}, {"failed", reloads_failed_}};
    j["retired_generations"] = publisher_->retired();
    j["restart_needed"] = restart_needed_;
    j["lint"] = lint_json(lint_);
    j["building"] = building;
    const dp::TableSet& t = *g.tables;
    j["classifier"] = {{"kind", t.use_reference ? "reference" : "trie"},
                       {"bytes", t.v4.bytes() + t.v6.bytes()},
                       {"leaf_scan", dp::leaf_scan_name(t.scan)}};
    j["ports"] = nlohmann::json::array();
    for (const auto& p : ports_)
        j["ports"].push_back({{"side", p.side}, {"spec", p.spec}, {"port_id", p.id}, {"link", dp::link_text(p.id)}});
    j["workers"] = nlohmann::json::array();
    for (const auto* w : workers_)
        j["workers"].push_back({{"index", w->index}, {"lcore", w->lcore}, {"queue", w->queue}});
    return j;
}

Stats Runtime::stats_locked() const {
    // Generations retired but not yet freed still hold counts of filters that survived into the
    // current one; reclaim() moves them when it frees them, and until then they are carried along
    // the chain here, so a filter's count never dips right after a reload.
    const std::shared_ptr<const Generation> cur = publisher_->current_shared();
    const std::vector<const Generation*> retired = publisher_->retired_generations();
    if (retired.empty())
        return collect_stats(workers_, cur, cur->carried, rates_.rates());
    std::vector<Counts> flow;  // into the rows of the generation at hand, from the older ones
    for (const Generation* old : retired) {
        const std::vector<Counts> hits = row_hits(*old, workers_count_);
        std::vector<Counts> next(old->successor->row_keys.size());
        for (std::size_t r = 0; r < old->next_row.size(); ++r) {
            const std::uint32_t to = old->next_row[r];
            if (to == kNoRow)
                continue;
            next[to] += hits[r];
            next[to] += old->carried[r];
            if (r < flow.size())
                next[to] += flow[r];
        }
        flow = std::move(next);
    }
    for (std::size_t r = 0; r < flow.size() && r < cur->carried.size(); ++r)
        flow[r] += cur->carried[r];
    return collect_stats(workers_, cur, flow, rates_.rates());
}

void Runtime::sample_rates() {
    std::lock_guard lock(mu_);
    std::vector<WorkerSample> now;
    for (const auto* w : workers_)
        now.push_back(sample_worker(*w));
    const auto t = std::chrono::steady_clock::now().time_since_epoch();
    rates_.sample(now, std::chrono::duration<double>(t).count());
}

Stats Runtime::stats() const {
    std::lock_guard lock(mu_);
    Stats s = stats_locked();
    for (std::size_t p = 0; p < 2; ++p)
        for (std::size_t e = 0; e < kLinkEvents; ++e)
            s.ports[p].link[e] = link_events_[p][e].load(std::memory_order_relaxed);
    return s;
}

namespace {

nlohmann::json rule_json(const Generation& g, const Stats& s, std::size_t rank) {
    const RankedEntry& info = g.compiled.info[rank];
    const FilterStats& f = s.filters[g.row_of_rank[rank]];
    return {{"rank", rank},
            {"action", action_name(g.compiled.rules[rank].action)},
            {"entry", format_entry(g.compiled.rules[rank])},
            {"filter", f.filter},
            {"filterlist", f.filterlist},
            {"rule", f.rule},
            {"line", f.line},
            {"mirror", info.origin.mirror},
            {"key", format_key(info.key)},
            {"packets", f.packets},
            {"bytes", f.bytes}};
}

nlohmann::json rules_head(const Generation& g, const Stats& s) {
    return {{"generation", g.number}, {"policy", s.policy.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.policy)}};
}

}  // namespace

nlohmann::json Runtime::rules(std::size_t limit) const {
    std::lock_guard lock(mu_);
    const Generation& g = *publisher_->current();
    const Stats s = stats_locked();
    nlohmann::json j = rules_head(g, s);
    j["rules"] = nlohmann::json::array();
    for (std::size_t rank = 0; rank < g.compiled.rules.size() && rank < limit; ++rank)
        j["rules"].push_back(rule_json(g, s, rank));
    return j;
}

nlohmann::json Runtime::explain(const std::string& packet) const {
    const PacketParse pp = parse_packet(packet);
    if (!pp.ok())
        return {{"ok", false}, {"errors", pp.errors}};
    std::shared_ptr<const Generation> gen;
    {
        std::lock_guard lock(mu_);
        gen = publisher_->current_shared();
    }
    // Outside the lock, over the generation's own table set (never compiled here): the
    // functions and tables its workers judge packets with.
    const Generation& g = *gen;
    const Explanation e = ctl::explain(g.config, g.compiled, *g.tables, pp.packet);
    nlohmann::json j = explain_json(g.config, g.compiled, e);
    j["ok"] = true;
    j["generation"] = g.number;
    j["text"] = explain_text(g.config, g.compiled, e);
    return j;
}

namespace {

struct Command {
    std::string_view name;
    bool changes;  ///< changes the running policy: only on a full-access socket
};
constexpr std::array<Command, 7> kCommands{{{"status", false},
                                            {"stats", false},
                                            {"rules", false},
                                            {"explain", false},
                                            {"reload", true},
                                            {"assign", true},
                                            {"unassign", true}}};

Reply json_reply(nlohmann::json j) {
    j["ok"] = j.value("ok", true);
    return {json_text(j), {}};
}

}  // namespace

bool Runtime::changes_policy(const std::string& cmd) noexcept {
    return std::any_of(kCommands.begin(), kCommands.end(), [&](const Command& c) { return c.changes && c.name == cmd; });
}

Reply Runtime::handle(const nlohmann::json& req, const RequestContext& ctx) {
    const auto arg = [&](const char* name) {
        const auto it = req.is_object() ? req.find(name) : req.end();
        return it != req.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const std::string cmd = arg("cmd");
    const auto known = std::find_if(kCommands.begin(), kCommands.end(), [&](const Command& c) { return c.name == cmd; });
    if (known == kCommands.end())
        return error_reply("unknown command " + ctl::quoted(valid_utf8(cmd.substr(0, 40))) +
                           " (status, stats, rules, explain, monitor, states, reload, assign, unassign)");
    if (known->changes && ctx.access != Access::full)
        return error_reply("'" + cmd + "' changes the running policy, and this control socket is read-only: "
                           "send it to the control socket (root or its group)");
    if (cmd == "status")
        return json_reply(status());
    if (cmd == "stats") {
        const auto s = std::make_shared<const Stats>(stats());
        const std::string format = arg("format");
        if (format == "prometheus")
            return text_rows_reply(stats_prometheus_head(*s), 2 * s->filters.size(),
                                   [s](std::size_t i, std::string& out) { prometheus_filter_row(*s, i, out); });
        if (format == "text")
            return text_rows_reply(stats_text_head(*s), s->filters.size(),
                                   [s](std::size_t i, std::string& out) { filter_text(s->filters[i], out); });
        nlohmann::json head = stats_json_head(*s);
        head["ok"] = true;
        return json_rows_reply(head, "filters", s->filters.size(), [s](std::size_t i) { return filter_json(s->filters[i]); });
    }
    if (cmd == "rules") {
        std::shared_ptr<const Generation> g;
        std::shared_ptr<const Stats> s;
        {
            std::lock_guard lock(mu_);
            g = publisher_->current_shared();
            s = std::make_shared<const Stats>(stats_locked());
        }
        nlohmann::json head = rules_head(*g, *s);
        head["ok"] = true;
        return json_rows_reply(head, "rules", g->compiled.rules.size(),
                               [g, s](std::size_t rank) { return rule_json(*g, *s, rank); });
    }
    if (cmd == "explain")
        return json_reply(explain(arg("packet")));
    // Changing commands are queued for the builder; the reply comes with their outcome, and the
    // control thread answers everybody else meanwhile.
    ReloadJob job;
    if (cmd == "reload") {
        job.trigger = "moatctl reload";
    } else {
        if (cmd == "assign" && arg("policy").empty())
            return error_reply("assign needs a policy name: {\"cmd\": \"assign\", \"policy\": \"NAME\"}");
        job.kind = ReloadJob::Kind::assign;
        job.policy = cmd == "assign" ? arg("policy") : "";
        job.trigger = cmd;
    }
    return reply_when_done(submit(std::move(job)));
}

Reply Runtime::reply_when_done(Ticket ticket) {
    return {"", [this, ticket](std::string& out) {
                const auto o = outcome(ticket);
                if (!o)
                    return Part::later;
                out = json_text(outcome_json(*o));
                return Part::done;
            }};
}

}  // namespace moat::ctl
