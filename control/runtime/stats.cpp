#include "control/runtime/stats.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>

namespace moat::ctl {

std::vector<Counts> row_hits(const Generation& g, std::size_t workers) {
    std::vector<Counts> rows(g.row_keys.size());
    const dp::TableSet& t = *g.tables;
    for (std::size_t rank = 0; rank < g.row_of_rank.size(); ++rank) {
        Counts& c = rows[g.row_of_rank[rank]];
        for (std::size_t w = 0; w < workers && w < t.counters.size(); ++w) {
            c.packets += t.counters[w][rank].packets.get();
            c.bytes += t.counters[w][rank].bytes.get();
        }
    }
    return rows;
}

WorkerSample sample_worker(const dp::WorkerContext& w) noexcept {
    WorkerSample s;
    for (const auto& p : w.counters.port) {
        s.rx_packets += p.rx_packets.get();
        s.rx_bytes += p.rx_bytes.get();
        s.tx_packets += p.tx_packets.get();
        s.dropped += p.dropped.get();
    }
    s.busy_cycles = w.counters.busy_cycles.get();
    s.busy_polls = w.counters.busy_polls.get();
    return s;
}

void RateMeter::sample(std::span<const WorkerSample> now, double seconds) {
    const double dt = seconds - last_seconds_;
    if (last_.size() == now.size() && dt > 0) {
        rates_.resize(now.size());
        for (std::size_t i = 0; i < now.size(); ++i) {
            // Relaxed reads of counters that only grow; a difference below zero cannot occur
            // but would read as a huge rate, so it counts as zero.
            const auto delta = [](std::uint64_t a, std::uint64_t b) { return b >= a ? static_cast<double>(b - a) : 0.0; };
            const WorkerSample& a = last_[i];
            const WorkerSample& b = now[i];
            const double rx = delta(a.rx_packets, b.rx_packets);
            const double cycles = delta(a.busy_cycles, b.busy_cycles);
            const double polls = delta(a.busy_polls, b.busy_polls);
            WorkerRates& r = rates_[i];
            r = {dt, rx / dt, 8 * delta(a.rx_bytes, b.rx_bytes) / dt, delta(a.tx_packets, b.tx_packets) / dt,
                 delta(a.dropped, b.dropped) / dt};
            r.cycles_per_packet = rx > 0 ? cycles / rx : 0;
            r.busy = tsc_hz_ > 0 ? std::min(1.0, cycles / (dt * tsc_hz_)) : 0;
            r.burst = polls > 0 ? rx / polls : 0;
        }
    } else {
        rates_.clear();
    }
    last_.assign(now.begin(), now.end());
    last_seconds_ = seconds;
}

Stats collect_stats(std::span<const dp::WorkerContext* const> workers, std::shared_ptr<const Generation> gen,
                    std::span<const Counts> carried, std::span<const WorkerRates> rates) {
    const Generation& g = *gen;
    Stats s;
    s.generation = g.number;
    const CompiledPolicy& cp = g.compiled;
    const Config& cfg = g.config;
    if (cp.policy >= 0)
        s.policy = cfg.policies[static_cast<std::size_t>(cp.policy)].name;
    s.ports[0].name = "outside";
    s.ports[1].name = "inside";
    for (const auto* w : workers) {
        for (std::size_t p = 0; p < 2; ++p) {
            for (const auto& k : kPortCounters)
                s.ports[p].*k.stat += (w->counters.port[p].*k.counter).get();
        }
        for (std::size_t r = 0; r < dp::kDropReasons; ++r)
            s.drops[r] += w->counters.drops[r].get();
        s.non_ip_passed += w->counters.non_ip_passed.get();
        for (std::size_t r = 0; r < dp::kFragDrops; ++r)
            s.fragment_drops[r] += w->counters.fragment_drops[r].get();
        s.fragments_passed += w->counters.fragments_passed.get();
        WorkerStats& ws = s.workers.emplace_back();
        ws.index = w->index;
        ws.lcore = w->lcore;
        const WorkerSample sample = sample_worker(*w);
        ws.rx_packets = sample.rx_packets;
        ws.rx_bytes = sample.rx_bytes;
        ws.tx_packets = sample.tx_packets;
        ws.dropped = sample.dropped;
        ws.busy_cycles = sample.busy_cycles;
        ws.busy_polls = sample.busy_polls;
        if (w->index < rates.size())
            ws.rates = rates[w->index];
        ws.payload_scanned = w->counters.payload_scanned.get();
        ws.payload_bytes = w->counters.payload_bytes.get();
        ws.monitor_lost = w->counters.monitor_lost.get();
        for (const auto& k : kStateCounters) {
            ws.states.*k.stat = (w->counters.*k.counter).get();
            s.states.*k.stat += ws.states.*k.stat;
        }
    }
    const std::vector<Counts> hits = row_hits(g, workers.size());
    s.filters.resize(g.row_keys.size());
    std::vector<bool> seen(g.row_keys.size());
    for (std::size_t rank = 0; rank < cp.rules.size(); ++rank) {
        const std::uint32_t row = g.row_of_rank[rank];
        if (seen[row])
            continue;
        seen[row] = true;
        const EntryOrigin& o = cp.info[rank].origin;
        const FilterList& l = cfg.lists[static_cast<std::size_t>(o.list)];
        const FilterDef& f = l.filters[static_cast<std::size_t>(o.filter)];
        const RuleDef& r = cfg.policies[static_cast<std::size_t>(cp.policy)].rules[static_cast<std::size_t>(o.rule)];
        FilterStats& fs = s.filters[row];
        fs = {l.name, f.text, r.text, r.line, f.line, cp.rules[rank].action, static_cast<dp::Rank>(rank), hits[row].packets,
              hits[row].bytes};
        if (row < carried.size()) {
            fs.packets += carried[row].packets;
            fs.bytes += carried[row].bytes;
        }
    }
    s.source = std::move(gen);
    return s;
}

nlohmann::json stats_json_head(const Stats& s) {
    nlohmann::json j;
    j["generation"] = s.generation;
    j["policy"] = s.policy.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.policy);
    for (const auto& p : s.ports) {
        for (const auto& k : kPortCounters)
            j["ports"][p.name][std::string(k.name)] = p.*k.stat;
        for (std::size_t e = 0; e < kLinkEvents; ++e)
            j["ports"][p.name][std::string(kLinkCounters[e].name)] = p.link[e];
    }
    for (std::size_t r = 1; r < dp::kDropReasons; ++r)
        j["drops"][std::string(dp::kDropReasonNames[r])] = s.drops[r];
    j["non_ip_passed"] = s.non_ip_passed;
    for (std::size_t r = 1; r < dp::kFragDrops; ++r)
        j["fragments"]["dropped"][std::string(dp::kFragDropNames[r])] = s.fragment_drops[r];
    j["fragments"]["passed"] = s.fragments_passed;
    const auto states_json = [](const StateStats& st) {
        nlohmann::json o;
        for (const auto& k : kStateCounters)
            o[std::string(k.name)] = st.*k.stat;
        o["active"] = st.active();
        return o;
    };
    j["states"] = states_json(s.states);
    std::uint64_t scanned = 0, scanned_bytes = 0;
    j["workers"] = nlohmann::json::array();
    for (const auto& w : s.workers) {
        j["workers"].push_back({{"worker", w.index},
                                {"lcore", w.lcore},
                                {"rx_packets", w.rx_packets},
                                {"rx_bytes", w.rx_bytes},
                                {"tx_packets", w.tx_packets},
                                {"dropped", w.dropped},
                                {"payload_scanned", w.payload_scanned},
                                {"payload_bytes", w.payload_bytes},
                                {"busy_cycles", w.busy_cycles},
                                {"busy_polls", w.busy_polls},
                                {"monitor_lost", w.monitor_lost},
                                {"states", states_json(w.states)},
                                {"cycles_per_packet", w.rx_packets ? static_cast<double>(w.busy_cycles) / w.rx_packets : 0.0},
                                {"rates",
                                 {{"seconds", w.rates.seconds},
                                  {"rx_pps", w.rates.rx_pps},
                                  {"rx_bps", w.rates.rx_bps},
                                  {"tx_pps", w.rates.tx_pps},
                                  {"dropped_pps", w.rates.dropped_pps},
                                  {"cycles_per_packet", w.rates.cycles_per_packet},
                                  {"busy", w.rates.busy},
                                  {"burst", w.rates.burst}}}});
        scanned += w.payload_scanned;
        scanned_bytes += w.payload_bytes;
    }
    j["payload"] = {{"scanned", scanned}, {"bytes", scanned_bytes}};
    return j;
}

nlohmann::json filter_json(const FilterStats& f) {
    return {{"filterlist", f.filterlist},
            {"filter", f.filter},
            {"rule", f.rule},
            {"rule_line", f.rule_line},
            {"line", f.line},
            {"action", f.action == dp::Action::permit ? "permit" : "block"},
            {"rank", f.best_rank},
            {"packets", f.packets},
            {"bytes", f.bytes}};
}

nlohmann::json stats_json(const Stats& s) {
    nlohmann::json j = stats_json_head(s);
    j["filters"] = nlohmann::json::array();
    for (const auto& f : s.filters)
        j["filters"].push_back(filter_json(f));
    return j;
}

std::string stats_text_head(const Stats& s) {
    std::string out;
    char line[256];
    std::snprintf(line, sizeof line, "policy %s, generation %llu\n",
                  s.policy.empty() ? "(none assigned: blocking every IP packet)" : ("'" + s.policy + "'").c_str(),
                  static_cast<unsigned long long>(s.generation));
    out += line;
    std::snprintf(line, sizeof line, "%-8s", "port");
    out += line;
    for (const auto& k : kPortCounters) {
        std::snprintf(line, sizeof line, " %*.*s", k.width, static_cast<int>(k.column.size()), k.column.data());
        out += line;
    }
    out += "\n";
    for (const auto& p : s.ports) {
        std::snprintf(line, sizeof line, "%-8s", p.name.c_str());
        out += line;
        for (const auto& k : kPortCounters) {
            std::snprintf(line, sizeof line, " %*llu", k.width, static_cast<unsigned long long>(p.*k.stat));
            out += line;
        }
        out += "\n";
    }
    // Link events, once there are any (link_propagation and cable pulls are rare).
    std::string links;
    for (const auto& p : s.ports)
        for (std::size_t e = 0; e < kLinkEvents; ++e)
            if (p.link[e] != 0)
                links += " " + p.name + "." + std::string(kLinkCounters[e].name) + "=" + std::to_string(p.link[e]);
    if (!links.empty())
        out += "links:" + links + "\n";
    out += "drops:";
    for (std::size_t r = 1; r < dp::kDropReasons; ++r)
        out += " " + std::string(dp::kDropReasonNames[r]) + "=" + std::to_string(s.drops[r]);
    out += "; non-IP passed=" + std::to_string(s.non_ip_passed) + "\n";
    out += "fragments: passed=" + std::to_string(s.fragments_passed) + "; dropped:";
    for (std::size_t r = 1; r < dp::kFragDrops; ++r)
        out += " " + std::string(dp::kFragDropNames[r]) + "=" + std::to_string(s.fragment_drops[r]);
    out += "\n";
    out += "states: active=" + std::to_string(s.states.active());
    for (const auto& k : kStateCounters)
        out += " " + std::string(k.name) + "=" + std::to_string(s.states.*k.stat);
    out += "\n";
    // Per worker: rates over the last second (moatd samples once a second), then totals.
    // cyc/pkt: TSC cycles of the busy polls per packet received, the worker's cost per packet;
    // busy: the share of the second it spent in polls that received packets.
    std::snprintf(line, sizeof line, "%-6s %5s %12s %12s %12s %10s %8s %5s %12s %12s %10s %14s\n", "worker", "lcore",
                  "rx pkt/s", "tx pkt/s", "drop pkt/s", "rx Mbit/s", "cyc/pkt", "busy", "rx packets", "tx packets",
                  "scanned", "scanned bytes");
    out += line;
    for (const auto& w : s.workers) {
        if (w.rates.seconds > 0)
            std::snprintf(line, sizeof line, "%-6u %5u %12.0f %12.0f %12.0f %10.1f %8.1f %4.0f%%", w.index, w.lcore,
                          w.rates.rx_pps, w.rates.tx_pps, w.rates.dropped_pps, w.rates.rx_bps / 1e6,
                          w.rates.cycles_per_packet, 100 * w.rates.busy);
        else  // moatd's first second: no interval to measure over yet
            std::snprintf(line, sizeof line, "%-6u %5u %12s %12s %12s %10s %8s %5s", w.index, w.lcore, "-", "-", "-", "-",
                          "-", "-");
        out += line;
        std::snprintf(line, sizeof line, " %12llu %12llu %10llu %14llu\n", static_cast<unsigned long long>(w.rx_packets),
                      static_cast<unsigned long long>(w.tx_packets), static_cast<unsigned long long>(w.payload_scanned),
                      static_cast<unsigned long long>(w.payload_bytes));
        out += line;
    }
    if (!s.filters.empty()) {
        std::snprintf(line, sizeof line, "%10s %12s  %-6s %5s  %s\n", "packets", "bytes", "action", "line", "filter (list)");
        out += line;
    }
    return out;
}

void filter_text(const FilterStats& f, std::string& out) {
    char line[96];
    std::snprintf(line, sizeof line, "%10llu %12llu  %-6s %5d  ", static_cast<unsigned long long>(f.packets),
                  static_cast<unsigned long long>(f.bytes), f.action == dp::Action::permit ? "permit" : "block", f.line);
    out += line;
    out += f.filter;
    out += "  (";
    out += f.filterlist;
    out += ")\n";
}

std::string stats_text(const Stats& s) {
    std::string out = stats_text_head(s);
    for (const auto& f : s.filters)
        filter_text(f, out);
    return out;
}

}  // namespace moat::ctl

namespace moat::ctl {

namespace {

std::string label(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"')
            out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

std::string stats_prometheus_head(const Stats& s) {
    std::string o;
    const auto metric = [&](const char* name, const char* help) {
        o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n";
    };
    const auto line = [&](const char* name, const std::string& labels, std::uint64_t v) {
        o += std::string(name) + "{" + labels + "} " + std::to_string(v) + "\n";
    };
    o += "# HELP moat_generation Generation of the policy in force.\n# TYPE moat_generation gauge\nmoat_generation " +
         std::to_string(s.generation) + "\n";
    for (const auto& k : kPortCounters) {
        const std::string name = "moat_port_" + std::string(k.name) + "_total";
        metric(name.c_str(), std::string(k.help).c_str());
        for (const auto& ps : s.ports)
            line(name.c_str(), "port=\"" + ps.name + "\"", ps.*k.stat);
    }
    for (std::size_t e = 0; e < kLinkEvents; ++e) {
        const std::string name = "moat_port_" + std::string(kLinkCounters[e].name) + "_total";
        metric(name.c_str(), std::string(kLinkCounters[e].help).c_str());
        for (const auto& ps : s.ports)
            line(name.c_str(), "port=\"" + ps.name + "\"", ps.link[e]);
    }
    metric("moat_drops_total", "Dropped packets by reason.");
    for (std::size_t r = 1; r < dp::kDropReasons; ++r)
        line("moat_drops_total", "reason=\"" + std::string(dp::kDropReasonNames[r]) + "\"", s.drops[r]);
    metric("moat_non_ip_passed_total", "Non-IP frames passed because non_ip lists their EtherType.");
    o += "moat_non_ip_passed_total " + std::to_string(s.non_ip_passed) + "\n";
    metric("moat_fragment_drops_total", "Dropped fragments by why (the detail of reason=\"fragment\").");
    for (std::size_t r = 1; r < dp::kFragDrops; ++r)
        line("moat_fragment_drops_total", "why=\"" + std::string(dp::kFragDropNames[r]) + "\"", s.fragment_drops[r]);
    metric("moat_fragments_passed_total", "Fragments forwarded.");
    o += "moat_fragments_passed_total " + std::to_string(s.fragments_passed) + "\n";
    struct PerWorker {
        const char* name;
        const char* help;
        std::uint64_t WorkerStats::*field;
    };
    for (const PerWorker& m :
         {PerWorker{"moat_worker_rx_packets_total", "Packets a worker received, both ports.", &WorkerStats::rx_packets},
          PerWorker{"moat_worker_tx_packets_total", "Packets a worker sent, both ports.", &WorkerStats::tx_packets},
          PerWorker{"moat_worker_dropped_total", "Packets a worker received and dropped.", &WorkerStats::dropped},
          PerWorker{"moat_worker_busy_cycles_total",
                    "TSC cycles of a worker's busy polls (those that received packets); over rx packets, its cost per packet.",
                    &WorkerStats::busy_cycles},
          PerWorker{"moat_worker_busy_polls_total", "A worker's polls that received packets.", &WorkerStats::busy_polls},
          PerWorker{"moat_payload_scanned_packets_total", "Packets whose payload a worker scanned.",
                    &WorkerStats::payload_scanned},
          PerWorker{"moat_payload_scanned_bytes_total", "Payload bytes a worker scanned.", &WorkerStats::payload_bytes},
          PerWorker{"moat_monitor_lost_total",
                    "Drop-trace records (moatctl monitor) a worker's full monitor ring refused.",
                    &WorkerStats::monitor_lost}}) {
        metric(m.name, m.help);
        for (const auto& w : s.workers)
            line(m.name, "worker=\"" + std::to_string(w.index) + "\"", w.*m.field);
    }
    for (const auto& k : kStateCounters) {
        const std::string name = "moat_state_" + std::string(k.name) + "_total";
        metric(name.c_str(), std::string(k.help).c_str());
        for (const auto& w : s.workers)
            line(name.c_str(), "worker=\"" + std::to_string(w.index) + "\"", w.states.*k.stat);
    }
    o += "# HELP moat_state_active Flows a worker's flow table holds (state = keep).\n# TYPE moat_state_active gauge\n";
    for (const auto& w : s.workers)
        line("moat_state_active", "worker=\"" + std::to_string(w.index) + "\"", w.states.active());
    return o;
}

void prometheus_filter_row(const Stats& s, std::size_t i, std::string& o) {
    // Rows 0 .. n-1 are the filters' packets, n .. 2n-1 their bytes; each metric's first row
    // carries its HELP and TYPE.
    const std::size_t n = s.filters.size();
    const bool bytes = i >= n;
    const FilterStats& f = s.filters[bytes ? i - n : i];
    const char* name = bytes ? "moat_filter_bytes_total" : "moat_filter_packets_total";
    if (i == 0 || i == n)
        o += std::string("# HELP ") + name + (bytes ? " Bytes of the packets decided by the filter.\n# TYPE "
                                                    : " Packets decided by the filter.\n# TYPE ") +
             name + " counter\n";
    // A filter's row is one rule's use of one line of a list: the labels say which, so that a
    // filter written twice, or a list under two rules, is a series of its own each time.
    o += std::string(name) + "{filterlist=\"" + label(f.filterlist) + "\",filter=\"" + label(f.filter) + "\",line=\"" +
         std::to_string(f.line) + "\",rule=\"" + label(f.rule) + "\",rule_line=\"" + std::to_string(f.rule_line) +
         "\",action=\"" + (f.action == dp::Action::permit ? "permit" : "block") + "\"} " +
         std::to_string(bytes ? f.bytes : f.packets) + "\n";
}

std::string stats_prometheus(const Stats& s) {
    std::string o = stats_prometheus_head(s);
    for (std::size_t i = 0; i < 2 * s.filters.size(); ++i)
        prometheus_filter_row(s, i, o);
    return o;
}

}  // namespace moat::ctl
