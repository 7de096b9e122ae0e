#include "control/runtime.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "control/config.h"
#include "control/explain.h"
#include "control/ini_edit.h"
#include "control/json_text.h"
#include "control/text.h"
#include "control/tables.h"
#include "dataplane/port.h"

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
    return {{"ok", o.ok},       {"unchanged", o.unchanged}, {"generation", o.generation}, {"trigger", o.trigger},
            {"errors", o.errors}, {"warnings", o.warnings}, {"ms", o.ms},                 {"at", iso_time(o.at)}};
}

const char* action_name(dp::Action a) { return a == dp::Action::permit ? "permit" : "block"; }

}  // namespace

Runtime::Runtime(std::string config_path, unsigned workers)
    : path_(std::move(config_path)), workers_count_(workers), publisher_(std::make_unique<Publisher>(workers)) {}

Runtime::~Runtime() {
    std::lock_guard lock(mu_);
    publisher_.reset();
}

std::string Runtime::start(const Config& cfg, const CompiledPolicy& cp, std::string text) {
    TablesResult b = build_table_set(cfg, cp, workers_count_, next_generation_);
    if (!b.tables)
        return b.error;
    auto g = std::make_unique<Generation>();
    g->number = next_generation_++;
    g->config = cfg;
    g->compiled = cp;
    g->tables = std::move(b.tables);
    g->v4 = b.v4;
    g->v6 = b.v6;
    g->loaded_at = std::chrono::system_clock::now();
    index_rows(*g);
    std::lock_guard lock(mu_);
    loaded_text_ = std::move(text);
    running_ = cfg.appliance;
    publisher_->publish(std::move(g));
    last_ = ReloadOutcome{};
    last_.ok = true;
    last_.generation = 1;
    last_.trigger = "start";
    last_.at = std::chrono::system_clock::now();
    return {};
}

ReloadOutcome Runtime::reload(const std::string& trigger, bool if_changed, const std::function<bool()>& settled) {
    const auto t0 = std::chrono::steady_clock::now();
    reclaim();
    ReloadOutcome o;
    o.trigger = trigger;
    o.at = std::chrono::system_clock::now();
    const auto finish = [&] {
        o.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        std::lock_guard lock(mu_);
        if (!o.unchanged || !last_.ok)  // back to the file in force after a failed edit: say so
            last_ = o;
        (o.ok ? reloads_ok_ : reloads_failed_) += o.unchanged ? 0 : 1;
        if (on_reload_ && !o.unchanged)
            on_reload_(o);
        return o;
    };
    std::string text;
    if (const auto error = read_config_file(path_, text)) {
        o.errors.push_back(path_ + ": error: " + *error);
        return finish();
    }
    if (settled && !settled()) {
        o.superseded = true;
        return o;
    }
    const Generation& cur = *publisher_->current();
    if (if_changed && text == loaded_text_) {
        o.ok = o.unchanged = true;
        o.generation = cur.number;
        return finish();
    }
    const auto since = [](std::chrono::steady_clock::time_point t) {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
    };
    // The lint pass (overlaps, shadowing: quadratic in the worst case) runs after the publish,
    // unless strict = on makes its warnings errors.
    const auto t_load = std::chrono::steady_clock::now();
    LoadResult r = load_policy_text(text, path_, {.lint = false, .compile_unassigned = false});
    const bool strict = r.config && r.config->appliance.strict;
    if (strict)
        r = load_policy_text(text, path_);
    o.load_ms = since(t_load);
    for (const auto& d : r.diags.all())
        (d.severity == Severity::error ? o.errors : o.warnings).push_back(format(d));
    if (!r.usable()) {
        if (o.errors.empty())
            o.errors.push_back(path_ + ": error: not usable (strict = on and warnings)");
        return finish();
    }
    // Ports, workers, EAL and the sockets belong to the running process: a reload cannot move
    // them, and says so every time until a restart does. A file that names no ports at all is
    // not a new setting but a wrong or incomplete file.
    const Appliance& now = r.config->appliance;
    if (!running_.outside.empty() && (now.outside.empty() || now.inside.empty())) {
        o.errors.push_back(path_ + ":" + std::to_string(now.line) +
                           ": error: [appliance] names no " + (now.outside.empty() ? "outside" : "inside") +
                           " port; moatd runs on outside = " + running_.outside + ", inside = " + running_.inside +
                           " (an incomplete file? the running policy stays)");
        return finish();
    }
    std::vector<std::string> restart = restart_only_changes(now);
    o.warnings.insert(o.warnings.end(), restart.begin(), restart.end());
    const auto t_build = std::chrono::steady_clock::now();
    TablesResult b = build_table_set(*r.config, *r.compiled, workers_count_, next_generation_);
    o.build_ms = since(t_build);
    if (!b.tables) {
        o.errors.push_back(path_ + ": error: " + b.error);
        return finish();
    }
    auto g = std::make_unique<Generation>();
    g->config = *r.config;
    g->compiled = *r.compiled;
    g->tables = std::move(b.tables);
    g->v4 = b.v4;
    g->v6 = b.v6;
    g->loaded_at = std::chrono::system_clock::now();
    index_rows(*g);
    {
        std::lock_guard lock(mu_);
        g->number = next_generation_++;
        o.generation = g->number;
        // The filters that survive this swap keep counting; the others' counts go. The counts
        // move when the retired generation is freed (its counters are final then).
        link_rows(*publisher_->current(), *g);
        publisher_->publish(std::move(g));
        loaded_text_ = std::move(text);
        restart_needed_ = std::move(restart);
    }
    o.published = std::chrono::steady_clock::now();
    o.publish_ms = since(t0);
    if (!strict) {
        Diagnostics lint;
        lint_policies(*r.config, lint);
        for (const auto& d : lint.all())
            o.warnings.push_back(format(d));
    }
    o.ok = true;
    return finish();
}

std::size_t Runtime::reclaim() {
    std::lock_guard lock(mu_);
    if (publisher_->retired() == 0)
        return 0;  // the common case, every turn of the control loop
    return publisher_->reclaim([&](Generation& old) {
        // Its counters are final now: each surviving row's counts (and what it carried) move
        // into its successor's row.
        const std::vector<Counts> hits = row_hits(old, workers_count_);
        for (std::size_t r = 0; r < old.next_row.size(); ++r)
            if (const std::uint32_t to = old.next_row[r]; to != kNoRow) {
                old.successor->carried[to] += hits[r];
                old.successor->carried[to] += old.carried[r];
            }
    });
}

nlohmann::json Runtime::assign(const std::string& policy) {
    const auto refused = [&](const LoadResult& r) {
        nlohmann::json errors = nlohmann::json::array();
        for (const auto& d : r.diags.all())
            if (d.severity == Severity::error)
                errors.push_back(format(d));
        return nlohmann::json{{"ok", false}, {"errors", errors}, {"message", path_ + " is unchanged"}};
    };
    // The edit is made to the file as it is when it is written: if an operator saves it while the
    // edit is checked, the edit starts again from their version instead of reverting it.
    for (int attempt = 0; attempt < 3; ++attempt) {
        std::string text;
        if (const auto error = read_config_file(path_, text))
            return {{"ok", false}, {"errors", {path_ + ": error: " + *error}}};
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
                return {{"ok", false},
                        {"errors", {path_ + ": error: no policy " + ctl::quoted(valid_utf8(policy.substr(0, 200))) +
                                    " is defined (policies: " + (names.empty() ? "none" : names) + ")"}},
                        {"message", path_ + " is unchanged"}};
            }
        }
        IniText ini(text);
        auto a = ini.find_section("appliance", "");
        if (!a)
            a = ini.add_section("appliance", "", {},
                                ini.sections("filterlist").empty() ? std::nullopt
                                                                   : std::optional(ini.sections("filterlist").front()));
        ini.set_key(*a, "assign", policy);
        const std::string next = ini.str();
        // Lint only where its warnings decide (strict = on): it is the costly part.
        LoadResult check = load_policy_text(next, path_, {.lint = false, .compile_unassigned = false});
        if (check.config && check.config->appliance.strict)
            check = load_policy_text(next, path_);
        if (!check.usable())
            return refused(check);
        if (check.config->appliance.assign != policy)  // e.g. a name the INI syntax cannot hold as a value
            return {{"ok", false},
                    {"errors", {path_ + ": error: policy " + ctl::quoted(policy) + " cannot be written as an assign value"}},
                    {"message", path_ + " is unchanged"}};
        std::string now;
        if (read_config_file(path_, now) || now != text)
            continue;  // changed meanwhile: again, on what is there now
        if (const auto e = write_file_atomic(path_, next))
            return {{"ok", false}, {"errors", {*e}}};
        const ReloadOutcome o = reload(policy.empty() ? "unassign" : "assign", false);
        return outcome_json(o);
    }
    return {{"ok", false},
            {"errors", {path_ + ": error: the config file changed three times while assign ran; try again"}},
            {"message", path_ + " is unchanged"}};
}

void Runtime::set_ports(std::vector<PortInfo> ports) {
    std::lock_guard lock(mu_);
    ports_ = std::move(ports);
}

void Runtime::set_workers(std::vector<const dp::WorkerContext*> workers) {
    std::lock_guard lock(mu_);
    workers_ = std::move(workers);
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
    return out;
}

std::vector<std::string> Runtime::restart_needed() const {
    std::lock_guard lock(mu_);
    return restart_needed_;
}

nlohmann::json Runtime::status() const {
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
    const dp::TableSet& t = *g.tables;
    j["classifier"] = {{"kind", t.use_reference ? "reference" : "trie"},
                       {"bytes", t.v4.bytes() + t.v6.bytes()},
                       {"leaf_scan", t.scan == dp::LeafScan::avx512 ? "avx512" : "scalar"}};
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
    return stats_locked();
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
    std::lock_guard lock(mu_);
    const Generation& g = *publisher_->current();
    const Explanation e = ctl::explain(g.config, g.compiled, pp.packet);
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
                           " (status, stats, rules, explain, reload, assign, unassign)");
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
    if (cmd == "reload")
        return json_reply(outcome_json(reload("moatctl reload", false)));
    if (cmd == "assign") {
        if (arg("policy").empty())
            return error_reply("assign needs a policy name: {\"cmd\": \"assign\", \"policy\": \"NAME\"}");
        return json_reply(assign(arg("policy")));
    }
    return json_reply(assign(""));  // unassign
}

}  // namespace moat::ctl
