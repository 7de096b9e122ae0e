#include "control/runtime.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "control/config.h"
#include "control/explain.h"
#include "control/ini_edit.h"
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

bool read_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return false;
    std::ostringstream s;
    s << in.rdbuf();
    out = s.str();
    return true;
}

std::unordered_set<std::string> keys_of(const Generation& g) { return {g.row_keys.begin(), g.row_keys.end()}; }

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

std::string Runtime::start(const Config& cfg, const CompiledPolicy& cp) {
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
    read_file(path_, loaded_text_);
    std::lock_guard lock(mu_);
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
    if (!read_file(path_, text)) {
        o.errors.push_back(path_ + ": error: cannot read the config file: " + std::strerror(errno));
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
    // Ports, workers and EAL belong to the running process: a reload cannot move them.
    const Appliance& was = cur.config.appliance;
    const Appliance& now = r.config->appliance;
    const auto restart_only = [&](const char* key, bool changed) {
        if (changed)
            o.warnings.push_back(path_ + ": warning: " + key + " changed; restart moatd to apply it (the running value stays)");
    };
    restart_only("outside", was.outside != now.outside);
    restart_only("inside", was.inside != now.inside);
    restart_only("workers", was.workers != now.workers);
    restart_only("eal", was.eal != now.eal);
    restart_only("control", was.control != now.control);
    restart_only("fragment_table", was.fragment_table != now.fragment_table);
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
        // The filters that survive this swap keep counting; the others' counts go.
        const std::unordered_set<std::string> next_keys = keys_of(*g);
        std::unordered_set<std::string> survivors;
        for (const auto& k : cur.row_keys)
            if (next_keys.contains(k))
                survivors.insert(k);
        successor_keys_[cur.number] = std::move(survivors);
        for (auto it = carried_.begin(); it != carried_.end();)
            it = next_keys.contains(it->first) ? std::next(it) : carried_.erase(it);
        publisher_->publish(std::move(g));
        loaded_text_ = std::move(text);
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
    const std::unordered_set<std::string> live = keys_of(*publisher_->current());
    return publisher_->reclaim([&](Generation& old) {
        carry_survivors(old, live, carried_);
        successor_keys_.erase(old.number);
    });
}

void Runtime::carry_survivors(const Generation& old, const std::unordered_set<std::string>& live,
                              CarriedCounts& into) const {
    const auto it = successor_keys_.find(old.number);
    if (it == successor_keys_.end())
        return;
    const std::vector<Counts> hits = row_hits(old, workers_count_);
    for (std::size_t row = 0; row < old.row_keys.size(); ++row) {
        const std::string& key = old.row_keys[row];
        if (!it->second.contains(key) || !live.contains(key))
            continue;
        Counts& c = into[key];
        c.packets += hits[row].packets;
        c.bytes += hits[row].bytes;
    }
}

nlohmann::json Runtime::assign(const std::string& policy) {
    std::string text;
    if (!read_file(path_, text))
        return {{"ok", false}, {"errors", {path_ + ": error: cannot read the config file: " + std::strerror(errno)}}};
    IniText ini(text);
    auto a = ini.find_section("appliance", "");
    if (!a)
        a = ini.add_section("appliance", "", {}, ini.sections("filterlist").empty() ? std::nullopt
                                                                                      : std::optional(ini.sections("filterlist").front()));
    ini.set_key(*a, "assign", policy);
    const std::string next = ini.str();
    const LoadResult check = load_policy_text(next, path_);
    if (!check.usable()) {
        nlohmann::json errors = nlohmann::json::array();
        for (const auto& d : check.diags.all())
            if (d.severity == Severity::error)
                errors.push_back(format(d));
        return {{"ok", false}, {"errors", errors}, {"message", path_ + " is unchanged"}};
    }
    if (const auto e = write_file_atomic(path_, next))
        return {{"ok", false}, {"errors", {*e}}};
    const ReloadOutcome o = reload(policy.empty() ? "unassign" : "assign", false);
    return outcome_json(o);
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
    // Generations retired but not yet reclaimed still hold counts of filters that survived into
    // the current one; reclaim() moves them into carried_, and until then they are added here, so
    // a filter's count never dips right after a reload.
    const std::vector<const Generation*> retired = publisher_->retired_generations();
    if (retired.empty())
        return collect_stats(workers_, *publisher_->current(), carried_, rates_.rates());
    CarriedCounts carried = carried_;
    const std::unordered_set<std::string> live = keys_of(*publisher_->current());
    for (const Generation* old : retired)
        carry_survivors(*old, live, carried);
    return collect_stats(workers_, *publisher_->current(), carried, rates_.rates());
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

nlohmann::json Runtime::rules() const {
    std::lock_guard lock(mu_);
    const Generation& g = *publisher_->current();
    const Stats s = stats_locked();
    nlohmann::json j;
    j["generation"] = g.number;
    j["policy"] = s.policy.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.policy);
    j["rules"] = nlohmann::json::array();
    for (std::size_t rank = 0; rank < g.compiled.rules.size(); ++rank) {
        const RankedEntry& info = g.compiled.info[rank];
        const FilterStats& f = s.filters[g.row_of_rank[rank]];
        j["rules"].push_back({{"rank", rank},
                              {"action", action_name(g.compiled.rules[rank].action)},
                              {"entry", format_entry(g.compiled.rules[rank])},
                              {"filter", f.filter},
                              {"filterlist", f.filterlist},
                              {"rule", f.rule},
                              {"line", f.line},
                              {"mirror", info.origin.mirror},
                              {"key", format_key(info.key)},
                              {"packets", f.packets},
                              {"bytes", f.bytes}});
    }
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

nlohmann::json Runtime::handle(const nlohmann::json& req) {
    const std::string cmd = req.is_object() && req.contains("cmd") && req["cmd"].is_string() ? req["cmd"].get<std::string>() : "";
    const auto arg = [&](const char* name) {
        return req.contains(name) && req[name].is_string() ? req[name].get<std::string>() : std::string();
    };
    nlohmann::json reply;
    if (cmd == "status") {
        reply = status();
    } else if (cmd == "stats") {
        const Stats s = stats();
        reply = stats_json(s);
        if (arg("format") == "prometheus")
            reply = {{"text", stats_prometheus(s)}};
        else if (arg("format") == "text")
            reply = {{"text", stats_text(s)}};
    } else if (cmd == "rules") {
        reply = rules();
    } else if (cmd == "explain") {
        return explain(arg("packet"));
    } else if (cmd == "reload") {
        return outcome_json(reload("moatctl reload", false));
    } else if (cmd == "assign") {
        if (arg("policy").empty())
            return {{"ok", false}, {"errors", {"assign needs a policy name"}}};
        return assign(arg("policy"));
    } else if (cmd == "unassign") {
        return assign("");
    } else {
        return {{"ok", false},
                {"errors", {"unknown command '" + cmd + "' (status, stats, rules, explain, reload, assign, unassign)"}}};
    }
    reply["ok"] = true;
    return reply;
}

}  // namespace moat::ctl
