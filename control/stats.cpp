#include "control/stats.h"

#include <cstdio>
#include <map>
#include <tuple>

namespace moat::ctl {

Stats collect_stats(std::span<const dp::WorkerContext* const> workers, const dp::TableSet& t, const Config& cfg,
                    const CompiledPolicy& cp) {
    Stats s;
    s.generation = t.generation;
    if (cp.policy >= 0)
        s.policy = cfg.policies[static_cast<std::size_t>(cp.policy)].name;
    s.ports[0].name = "outside";
    s.ports[1].name = "inside";
    for (const auto* w : workers) {
        for (std::size_t p = 0; p < 2; ++p) {
            const auto& c = w->counters.port[p];
            s.ports[p].rx_packets += c.rx_packets.get();
            s.ports[p].rx_bytes += c.rx_bytes.get();
            s.ports[p].tx_packets += c.tx_packets.get();
            s.ports[p].tx_bytes += c.tx_bytes.get();
            s.ports[p].dropped += c.dropped.get();
            s.ports[p].tx_failed += c.tx_failed.get();
        }
        for (std::size_t r = 0; r < dp::kDropReasons; ++r)
            s.drops[r] += w->counters.drops[r].get();
        s.non_ip_passed += w->counters.non_ip_passed.get();
    }
    // Entries of one (rule, filter) add up to that filter's hits.
    std::map<std::tuple<int, int, int>, std::size_t> row;
    for (std::size_t rank = 0; rank < cp.rules.size(); ++rank) {
        const EntryOrigin& o = cp.info[rank].origin;
        const auto [it, fresh] = row.emplace(std::tuple(o.rule, o.list, o.filter), s.filters.size());
        if (fresh) {
            const FilterList& l = cfg.lists[static_cast<std::size_t>(o.list)];
            const FilterDef& f = l.filters[static_cast<std::size_t>(o.filter)];
            const RuleDef& r = cfg.policies[static_cast<std::size_t>(cp.policy)].rules[static_cast<std::size_t>(o.rule)];
            s.filters.push_back({l.name, f.text, r.text, f.line, cp.rules[rank].action, static_cast<dp::Rank>(rank), 0, 0});
        }
        FilterStats& fs = s.filters[it->second];
        for (std::size_t w = 0; w < workers.size() && w < t.counters.size(); ++w) {
            fs.packets += t.counters[w][rank].packets.get();
            fs.bytes += t.counters[w][rank].bytes.get();
        }
    }
    return s;
}

nlohmann::json stats_json(const Stats& s) {
    nlohmann::json j;
    j["generation"] = s.generation;
    j["policy"] = s.policy.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.policy);
    for (const auto& p : s.ports)
        j["ports"][p.name] = {{"rx_packets", p.rx_packets}, {"rx_bytes", p.rx_bytes},     {"tx_packets", p.tx_packets},
                              {"tx_bytes", p.tx_bytes},     {"dropped", p.dropped},       {"tx_failed", p.tx_failed}};
    for (std::size_t r = 1; r < dp::kDropReasons; ++r)
        j["drops"][std::string(dp::kDropReasonNames[r])] = s.drops[r];
    j["non_ip_passed"] = s.non_ip_passed;
    j["filters"] = nlohmann::json::array();
    for (const auto& f : s.filters)
        j["filters"].push_back({{"filterlist", f.filterlist},
                                {"filter", f.filter},
                                {"rule", f.rule},
                                {"line", f.line},
                                {"action", f.action == dp::Action::permit ? "permit" : "block"},
                                {"rank", f.best_rank},
                                {"packets", f.packets},
                                {"bytes", f.bytes}});
    return j;
}

std::string stats_text(const Stats& s) {
    std::string out;
    char line[256];
    std::snprintf(line, sizeof line, "policy %s, generation %llu\n",
                  s.policy.empty() ? "(none assigned: blocking every IP packet)" : ("'" + s.policy + "'").c_str(),
                  static_cast<unsigned long long>(s.generation));
    out += line;
    std::snprintf(line, sizeof line, "%-8s %12s %14s %12s %14s %10s %10s\n", "port", "rx packets", "rx bytes",
                  "tx packets", "tx bytes", "dropped", "tx failed");
    out += line;
    for (const auto& p : s.ports) {
        std::snprintf(line, sizeof line, "%-8s %12llu %14llu %12llu %14llu %10llu %10llu\n", p.name.c_str(),
                      static_cast<unsigned long long>(p.rx_packets), static_cast<unsigned long long>(p.rx_bytes),
                      static_cast<unsigned long long>(p.tx_packets), static_cast<unsigned long long>(p.tx_bytes),
                      static_cast<unsigned long long>(p.dropped), static_cast<unsigned long long>(p.tx_failed));
        out += line;
    }
    out += "drops:";
    for (std::size_t r = 1; r < dp::kDropReasons; ++r)
        out += " " + std::string(dp::kDropReasonNames[r]) + "=" + std::to_string(s.drops[r]);
    out += "; non-IP passed=" + std::to_string(s.non_ip_passed) + "\n";
    if (!s.filters.empty()) {
        std::snprintf(line, sizeof line, "%10s %12s  %-6s %5s  %s\n", "packets", "bytes", "action", "line", "filter (list)");
        out += line;
        for (const auto& f : s.filters) {
            std::snprintf(line, sizeof line, "%10llu %12llu  %-6s %5d  ", static_cast<unsigned long long>(f.packets),
                          static_cast<unsigned long long>(f.bytes), f.action == dp::Action::permit ? "permit" : "block",
                          f.line);
            out += line + f.filter + "  (" + f.filterlist + ")\n";
        }
    }
    return out;
}

}  // namespace moat::ctl
