#include "control/runtime/monitor.h"

#include <rte_cycles.h>
#include <rte_errno.h>

#include <algorithm>
#include <charconv>
#include <concepts>
#include <cstdio>
#include <ctime>
#include <map>
#include <numeric>

#include "control/config/filter_spec.h"
#include "control/config/json_text.h"
#include "control/config/packet_spec.h"
#include "control/config/text.h"
#include "control/runtime/json_line.h"
#include "control/runtime/runtime.h"

namespace moat::ctl {

Result<MonitorSpec> parse_monitor_request(const nlohmann::json& req) {
    MonitorSpec s;
    if (const auto it = req.find("mode"); it != req.end()) {
        if (!it->is_string() || (*it != "drops" && *it != "all"))
            return fail("monitor: mode is \"drops\" or \"all\"");
        s.all = *it == "all";
    }
    if (const auto it = req.find("sample"); it != req.end()) {
        if (!it->is_number_integer() || it->get<std::int64_t>() < 1 || it->get<std::int64_t>() > dp::kMaxSample)
            return fail("monitor: sample is a whole number from 1 to " + std::to_string(dp::kMaxSample) +
                        " (one packet in N per worker)");
        s.sample = it->get<std::uint32_t>();
    }
    if (const auto it = req.find("filter"); it != req.end() && !it->is_null()) {
        if (!it->is_string() || it->get<std::string>().empty())
            return fail("monitor: filter is the name of a filter list");
        s.list = it->get<std::string>();
    }
    return s;
}

dp::MonitorWord monitor_word(const std::vector<MonitorSpec>& specs, std::uint16_t epoch) {
    dp::MonitorWord w;
    w.epoch = epoch;
    for (const MonitorSpec& s : specs) {
        std::uint32_t& rate = s.all ? w.all : w.drops;
        rate = std::gcd(rate, s.sample);  // gcd(0, n) = n
    }
    return w;
}

bool monitor_wants(const MonitorSpec& spec, const dp::MonitorRecord& r, const std::string& list) {
    const bool dropped = r.drop != dp::DropReason::none;
    if (!spec.all && !dropped)
        return false;
    if ((spec.all ? r.seq_all : r.seq_drop) % spec.sample != 0)
        return false;
    return !spec.list || *spec.list == list;
}

namespace {

std::string iso_micros(std::chrono::system_clock::time_point t) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
    const std::time_t s = static_cast<std::time_t>(us / 1000000);
    std::tm tm{};
    gmtime_r(&s, &tm);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(us % 1000000));
    return buf;
}

std::string hex16(std::uint16_t v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%04x", v);
    return buf;
}

/// Whether the parser got as far as the addresses: not for frames it could not read or that are
/// not IP.
bool has_tuple(const dp::MonitorRecord& r) {
    return !r.bypass && r.drop != dp::DropReason::malformed && r.drop != dp::DropReason::non_ip;
}

}  // namespace

void deciding_filter(JsonLine& j, dp::Rank rank, std::uint64_t generation, const Generation* g) {
    if (rank == dp::kNoMatch)
        j.null("rank");
    else
        j.num("rank", rank);
    if (rank != dp::kNoMatch && g && g->compiled.policy >= 0 && rank < g->compiled.info.size()) {
        const EntryOrigin& o = g->compiled.info[rank].origin;
        const Policy& pol = g->config.policies[static_cast<std::size_t>(g->compiled.policy)];
        const FilterList& list = g->config.lists[static_cast<std::size_t>(o.list)];
        const FilterDef& filter = list.filters[static_cast<std::size_t>(o.filter)];
        j.str("filter", filter.text)
            .str("filterlist", list.name)
            .str("rule", pol.rules[static_cast<std::size_t>(o.rule)].text)
            .num("line", filter.line)
            .str("action", g->compiled.rules[rank].action == dp::Action::permit ? "permit" : "block");
    } else {
        for (const char* f : {"filter", "filterlist", "rule", "line", "action"})
            j.null(f);
        if (rank != dp::kNoMatch)
            j.str("filter_unknown", "generation " + std::to_string(generation) + " is no longer kept");
    }
}

std::string record_line(const dp::MonitorRecord& r, const Generation* g, std::chrono::system_clock::time_point wall) {
    std::string s;
    s.reserve(512);
    JsonLine j(s);
    j.str("time", iso_micros(wall)).num("worker", r.worker).str("port", r.key.ingress == dp::Ingress::outside ? "outside" : "inside");
    std::string vlans = "[";
    for (unsigned i = 0; i < r.vlans; ++i)
        vlans += (i ? "," : "") + std::to_string(r.vlan[i]);
    j.raw("vlan", vlans + "]").num("length", r.length).str("ethertype", hex16(r.ethertype));
    if (has_tuple(r)) {
        const dp::PacketKey& k = r.key;
        j.str("family", k.family == dp::Family::ipv4 ? "ipv4" : "ipv6")
            .str("proto", proto_name(k.proto))
            .str("src", format_addr(k.family, k.src))
            .str("dst", format_addr(k.family, k.dst));
        if (k.has_ports)
            j.num("sport", k.sport).num("dport", k.dport);
        if (k.has_icmp)
            j.num("icmp_type", k.icmp_type).num("icmp_code", k.icmp_code);
        if (r.fragment)
            j.raw("fragment", "true");
        j.str("packet", format_packet(k));  // what `moatctl explain` takes
    }
    j.str("verdict", r.drop == dp::DropReason::none ? "permit" : "drop");
    if (r.drop == dp::DropReason::none)
        j.null("reason");
    else
        j.str("reason", dp::kDropReasonNames[static_cast<std::size_t>(r.drop)]);
    if (r.drop == dp::DropReason::fragment)
        j.str("fragment_reason", dp::kFragDropNames[static_cast<std::size_t>(r.frag)]);
    j.num("generation", r.generation);
    deciding_filter(j, r.rank, r.generation, g);
    j.num("seq", r.seq_all);
    if (r.drop != dp::DropReason::none)
        j.num("drop_seq", r.seq_drop);
    j.close();
    return s;
}

std::string record_text(const nlohmann::json& j) {
    // Whatever the line holds (a moatd of another version may leave a member out): missing or
    // mistyped members read as empty, never as an exception or a crash.
    static const nlohmann::json null;
    const auto at = [&](const char* k) -> const nlohmann::json& { return j.is_object() && j.contains(k) ? j[k] : null; };
    const auto str = [&](const char* k) { return at(k).is_string() ? at(k).get<std::string>() : std::string(); };
    const auto num = [&](const char* k) {
        return at(k).is_number_unsigned() || at(k).is_number_integer() ? std::to_string(at(k).get<std::int64_t>()) : std::string("?");
    };
    if (j.is_object() && j.contains("lost"))
        return "-- " + num("lost") + " lines lost (this monitor read too slowly), " + num("ring_lost") +
               " records lost in the workers' rings";
    std::string s = str("time") + " " + str("verdict");
    if (at("reason").is_string())
        s += " " + str("reason") + (at("fragment_reason").is_string() ? "/" + str("fragment_reason") : "");
    s += "  ";
    if (at("packet").is_string())
        s += str("packet");
    else
        s += "ethertype " + str("ethertype") + " on " + str("port");
    if (at("vlan").is_array() && !at("vlan").empty()) {
        s += " vlan ";
        for (std::size_t i = 0; i < at("vlan").size(); ++i)
            s += (i ? "." : "") + (at("vlan")[i].is_number_integer() ? std::to_string(at("vlan")[i].get<int>()) : std::string("?"));
    }
    s += " len " + num("length") + "  gen " + num("generation");
    if (at("filter").is_string())
        s += " line " + num("line") + ": " + str("filter") + " (" + str("filterlist") + ")";
    else if (at("filter_unknown").is_string())
        s += " rank " + num("rank") + " (" + str("filter_unknown") + ")";
    return s;
}

struct MonitorHub::Client {
    MonitorSpec spec;
    std::string pending;          ///< lines not yet taken by the connection
    std::uint64_t lost = 0;       ///< lines dropped since the last report
    std::uint64_t ring_seen = 0;  ///< the rings' losses at the last report
    bool gone = false;            ///< its connection closed
    bool read_only = false;       ///< attached on the read-only socket

    /// Appends `line`, after a report of what was lost when there is any and room for it.
    /// True when something was appended.
    bool push(const std::string& line, std::uint64_t ring_now) {
        if (lost != 0 || ring_now != ring_seen) {
            // "lost" first: `moatctl monitor --json` tells this line from a packet's by it.
            std::string report;
            JsonLine(report).num("lost", lost).num("ring_lost", ring_now - ring_seen).close();
            report += '\n';
            if (pending.size() + report.size() > kClientBuffer) {
                lost += line.empty() ? 0 : 1;
                return false;
            }
            pending += report;
            lost = 0;
            ring_seen = ring_now;
        }
        if (line.empty())
            return true;
        if (pending.size() + line.size() > kClientBuffer) {
            ++lost;
            return false;
        }
        pending += line;
        return true;
    }
};

namespace {

/// Held by the connection's reply: the monitor detaches when the connection closes.
class Subscription {
public:
    Subscription(std::shared_ptr<void> client, bool* gone) : client_(std::move(client)), gone_(gone) {}
    ~Subscription() { *gone_ = true; }
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

private:
    std::shared_ptr<void> client_;  ///< keeps *gone_ alive
    bool* gone_;
};

}  // namespace

MonitorHub::MonitorHub(Runtime& rt) : rt_(rt) {
    tsc0_ = rte_rdtsc();
    wall0_ = std::chrono::system_clock::now();
    tsc_hz_ = static_cast<double>(std::max<std::uint64_t>(1, rte_get_tsc_hz()));
}

MonitorHub::~MonitorHub() {
    word_.store(0, std::memory_order_relaxed);
}

Status MonitorHub::attach_worker(dp::WorkerContext& w, int socket) {
    const Result<rte_ring*> r = rings_.attach(w, "moat_mon_", "monitor", sizeof(dp::MonitorRecord), kRingSize, socket);
    if (!r)
        return fail(r.error());
    w.monitor.word = &word_;
    w.monitor.ring = *r;
    w.monitor.window_cycles = std::max<std::uint64_t>(1, rte_get_tsc_hz() / 1000);  // 1 ms: see kMonitorRecordsPerWindow
    return {};
}

std::chrono::system_clock::time_point MonitorHub::wall_of(std::uint64_t tsc) const {
    const double s = (static_cast<double>(static_cast<std::int64_t>(tsc - tsc0_))) / tsc_hz_;
    return wall0_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(s));
}

std::uint64_t MonitorHub::ring_lost() const {
    std::uint64_t n = 0;
    for (const auto* w : rings_.workers())
        if (w)
            n += w->counters.monitor_lost.get();
    return n;
}

void MonitorHub::publish() {
    std::vector<MonitorSpec> specs;
    for (const auto& c : clients_)
        specs.push_back(c->spec);
    word_.store(monitor_word(specs, epoch_).encode(), std::memory_order_relaxed);
}

Reply MonitorHub::attach(const nlohmann::json& req, const RequestContext& ctx) {
    Result<MonitorSpec> spec = parse_monitor_request(req);
    if (!spec)
        return error_reply(spec.error());
    // Before the refusals below: a refusal that finds every monitor gone must still stop the
    // workers' sampling (drain() would not, the gone ones being erased already).
    forget_gone();
    if (clients_.size() >= kMaxMonitors)
        return error_reply(std::to_string(kMaxMonitors) + " monitors are attached already, the most moatd serves: "
                           "stop one of them first");
    const bool read_only = ctx.access != Access::full;
    if (read_only && std::count_if(clients_.begin(), clients_.end(), [](const auto& c) { return c->read_only; }) >=
                         static_cast<std::ptrdiff_t>(kMaxReadOnlyMonitors))
        return error_reply(std::to_string(kMaxReadOnlyMonitors) + " monitors are attached on the read-only socket "
                           "already, the most it may hold (the last place is kept for the control socket)");
    const std::shared_ptr<const Generation> g = rt_.current_generation();
    if (spec->list && std::none_of(g->config.lists.begin(), g->config.lists.end(),
                                   [&](const FilterList& l) { return l.name == *spec->list; }))
        return error_reply("monitor: the policy in force (generation " + std::to_string(g->number) +
                           ") has no filter list " + ctl::quoted(valid_utf8(spec->list->substr(0, 200))));
    auto c = std::make_shared<Client>();
    c->spec = *spec;
    c->read_only = read_only;
    c->ring_seen = ring_lost();
    if (clients_.empty()) {
        // Monitoring starts: records left from an earlier monitor go, the workers restart their
        // counts (a new epoch), and reloads from now on keep their generations for naming. The
        // TSC is tied to the wall clock again, so a long-running moatd's times follow NTP.
        tsc0_ = rte_rdtsc();
        wall0_ = std::chrono::system_clock::now();
        rt_.keep_recent(true);
        std::array<dp::MonitorRecord, 64> sink;
        for (rte_ring* r : rings_.rings())
            while (rte_ring_sc_dequeue_burst_elem(r, sink.data(), sizeof(dp::MonitorRecord), sink.size(), nullptr) != 0) {
            }
        ++epoch_;
    }
    clients_.push_back(c);
    publish();
    nlohmann::json head{{"ok", true},
                        {"monitor",
                         {{"mode", spec->all ? "all" : "drops"},
                          {"sample", spec->sample},
                          {"filter", spec->list ? nlohmann::json(*spec->list) : nlohmann::json(nullptr)},
                          {"workers", rings_.size()}}},
                        {"generation", g->number}};
    auto sub = std::make_shared<Subscription>(c, &c->gone);
    return {json_text(head) + "\n",
            [sub, c](std::string& out) {
                if (c->pending.empty())
                    return Part::later;
                out.swap(c->pending);
                c->pending.clear();
                return Part::more;
            },
            true};
}

void MonitorHub::forget_gone() {
    const std::size_t before = clients_.size();
    std::erase_if(clients_, [](const auto& c) { return c->gone; });
    if (clients_.size() == before)
        return;
    publish();
    if (clients_.empty())
        rt_.keep_recent(false);
}

bool MonitorHub::drain() {
    forget_gone();
    if (clients_.empty())
        return false;
    const auto start = std::chrono::steady_clock::now();
    const std::uint64_t ring_now = ring_lost();
    bool woke = false;
    std::map<std::uint64_t, std::shared_ptr<const Generation>> gens;  // within this turn
    std::array<dp::MonitorRecord, 64> recs;
    std::size_t drained = 0;
    for (rte_ring* ring : rings_.rings()) {
        while (drained < kDrainPerTurn && std::chrono::steady_clock::now() - start < std::chrono::milliseconds(2)) {
            const unsigned n = rte_ring_sc_dequeue_burst_elem(ring, recs.data(), sizeof(dp::MonitorRecord),
                                                              recs.size(), nullptr);
            if (n == 0)
                break;
            drained += n;
            for (unsigned i = 0; i < n; ++i) {
                const dp::MonitorRecord& r = recs[i];
                auto it = gens.find(r.generation);
                if (it == gens.end())
                    it = gens.emplace(r.generation, rt_.generation_numbered(r.generation)).first;
                const Generation* g = it->second.get();
                std::string list;
                if (g && r.rank != dp::kNoMatch && g->compiled.policy >= 0 && r.rank < g->compiled.info.size())
                    list = g->config.lists[static_cast<std::size_t>(g->compiled.info[r.rank].origin.list)].name;
                std::string line;
                for (auto& c : clients_) {
                    if (c->gone || !monitor_wants(c->spec, r, list))
                        continue;
                    if (c->pending.size() + kLineRoom > kClientBuffer) {
                        ++c->lost;  // no room: the line is not even made (a monitor that does not read costs little)
                        continue;
                    }
                    if (line.empty())
                        line = record_line(r, g, wall_of(r.tsc)) + "\n";
                    woke |= c->push(line, ring_now);
                }
            }
        }
    }
    for (auto& c : clients_)  // losses with no line to carry them
        if (c->lost != 0 || c->ring_seen != ring_now)
            woke |= c->push({}, ring_now);
    return woke;
}

}  // namespace moat::ctl
