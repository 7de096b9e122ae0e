#include "control/compile/explain.h"

#include <algorithm>
#include <sstream>

#include "control/compile/tables.h"
#include "dataplane/classifier_ref.h"
#include "dataplane/classify.h"

namespace moat::ctl {

namespace {

const char* action_name(dp::Action a) { return a == dp::Action::permit ? "permit" : "block"; }

struct EntryView {
    const Policy& policy;
    const RuleDef& rule;
    const FilterList& list;
    const FilterDef& filter;
    const RankedEntry& info;
};

EntryView view(const Config& cfg, const CompiledPolicy& cp, dp::Rank rank) {
    const RankedEntry& info = cp.info[rank];
    const Policy& pol = cfg.policies[static_cast<std::size_t>(cp.policy)];
    const FilterList& list = cfg.lists[static_cast<std::size_t>(info.origin.list)];
    return {pol, pol.rules[static_cast<std::size_t>(info.origin.rule)], list,
            list.filters[static_cast<std::size_t>(info.origin.filter)], info};
}

std::string ports_text(bool any, dp::PortRange r) {
    if (any)
        return "";
    return ":" + std::to_string(r.lo) + (r.lo == r.hi ? "" : "-" + std::to_string(r.hi));
}

nlohmann::json key_json(const SpecKey& k) {
    return {{"A", k.a}, {"B", k.b}, {"C", k.c}, {"D", k.d}, {"E", k.e}, {"F", k.f}, {"P", k.p}, {"G", k.g}};
}

/// What became of an entry's payload pattern.
std::string payload_status(const Explanation& e, const dp::Entry& r) {
    if (!e.packet.payload)
        return "not evaluated (no payload given)";
    if (!e.payload_error.empty())
        return "not evaluated (" + e.payload_error + ")";
    return e.pattern_matched[r.payload] ? "matched" : "did not match";
}

nlohmann::json entry_json(const Config& cfg, const CompiledPolicy& cp, const Explanation& e, dp::Rank rank) {
    const auto v = view(cfg, cp, rank);
    const auto& r = cp.rules[rank];
    nlohmann::json j{{"rank", rank},
                     {"action", action_name(r.action)},
                     {"rule", v.rule.text},
                     {"rule_line", v.rule.line},
                     {"filterlist", v.list.name},
                     {"filter", v.filter.text},
                     {"line", v.filter.line},
                     {"mirror", v.info.origin.mirror},
                     {"entry", format_entry(r)},
                     {"key", key_json(v.info.key)}};
    if (r.payload != dp::kNoPayload) {
        const PayloadSpec& p = cp.patterns[r.payload];
        j["pattern"] = "/" + p.regex + "/" + p.flags;
        j["payload"] = payload_status(e, r);
    }
    return j;
}

bool k_is_tcp(const Explanation& e) { return e.packet.key.proto == dp::kProtoTcp; }

/// An ICMP echo request (`request`) or reply of the packet's family.
bool is_echo(const dp::PacketKey& k, bool request) {
    const bool v4 = k.family == dp::Family::ipv4;
    return k.has_icmp && k.icmp_type == (request ? (v4 ? 8 : 128) : (v4 ? 0 : 129));
}

/// An ICMP error the flow table relates to a tracked flow when it quotes one (dataplane/state.h).
bool is_icmp_error(const dp::PacketKey& k) {
    if (!k.has_icmp)
        return false;
    return k.family == dp::Family::ipv4 ? k.icmp_type == 3 || k.icmp_type == 11 || k.icmp_type == 12
                                        : k.icmp_type >= 1 && k.icmp_type <= 4;
}

const char* reason_name(VerdictReason r) {
    switch (r) {
    case VerdictReason::filter: return "filter";
    case VerdictReason::no_match: return "no match";
    case VerdictReason::antispoof: return "antispoof";
    case VerdictReason::state: return "state";
    }
    return "";
}

}  // namespace

std::string format_entry(const dp::Entry& r) {
    std::string s = format_prefix(r.family, r.src, r.src_len) + ports_text(r.sport_any, r.sport) + " -> " +
                    format_prefix(r.family, r.dst, r.dst_len) + ports_text(r.dport_any, r.dport);
    s += r.family == dp::Family::ipv4 ? " IPv4" : " IPv6";
    if (r.proto != dp::kAnyProto)
        s += " " + proto_name(static_cast<std::uint8_t>(r.proto));
    if (r.icmp_type != dp::kAnyIcmp)
        s += " icmp " + std::to_string(r.icmp_type) + (r.icmp_code != dp::kAnyIcmp ? "/" + std::to_string(r.icmp_code) : "");
    if (r.on != dp::OnPort::any)
        s += r.on == dp::OnPort::outside ? " on outside" : " on inside";
    if (r.payload != dp::kNoPayload)
        s += " payload";
    return s;
}

namespace {

/// explain over `t`; `tables_error`: why `t` has no payload database although `cp` has patterns.
Explanation explain_over(const Config& cfg, const CompiledPolicy& cp, const dp::TableSet& t, PacketSpec packet,
                         const std::string& tables_error) {
    Explanation e;
    if (!packet.ingress_given) {
        e.ingress_inferred = true;
        packet.key.ingress =
            dp::is_me(t.parse, packet.key.src, packet.key.family) ? dp::Ingress::inside : dp::Ingress::outside;
    }
    e.packet = std::move(packet);
    const auto& k = e.packet.key;
    for (std::size_t i = 0; i < cp.rules.size(); ++i)
        if (dp::header_matches(cp.rules[i], k))
            e.matches.push_back(static_cast<dp::Rank>(i));
    // The worker's scan (every pattern, the first payload_scan_bytes), done whether or not the
    // verdict needs it: explain reports every pattern's outcome. Its own scratch: the table
    // set's belong to the workers.
    std::vector<std::uint32_t> matched;
    if (e.packet.payload && !cp.patterns.empty()) {
        const std::string& bytes = *e.packet.payload;
        const std::size_t len = t.payload.empty() ? std::min<std::size_t>(bytes.size(), cfg.appliance.payload_scan_bytes)
                                                  : t.payload.scan_length(static_cast<std::uint32_t>(
                                                        std::min<std::size_t>(bytes.size(), UINT32_MAX)));
        e.payload_cut = len < bytes.size();
        e.pattern_matched.assign(cp.patterns.size(), false);
        hs_scratch_t* raw = nullptr;
        if (t.payload.empty())
            e.payload_error = tables_error.empty() ? "no pattern database" : tables_error;
        else if (hs_alloc_scratch(t.payload.db.get(), &raw) != HS_SUCCESS)
            e.payload_error = "no scratch space";
        const dp::HsScratchPtr scratch(raw);
        if (e.payload_error.empty()) {
            matched.resize(t.payload.patterns);
            const int n = dp::scan_patterns(t.payload, scratch.get(),
                                            {reinterpret_cast<const std::uint8_t*>(bytes.data()), len}, matched);
            if (n < 0) {
                e.payload_error = "the scan failed";
                matched.clear();
            } else {
                matched.resize(static_cast<std::size_t>(n));
                for (const std::uint32_t id : matched)
                    e.pattern_matched[id] = true;
            }
        }
    }
    // The verdict, as the worker reaches it: the classifier's answer; when that is a payload
    // entry, the payload decides (no payload: none can match; a failed scan: default deny).
    e.winner = dp::classify_key(t, k);
    if (dp::needs_scan(t, e.winner)) {
        const dp::Rank header = dp::header_winner(t, k);
        if (!e.packet.payload)
            e.winner = header;
        else if (!e.payload_error.empty())
            e.winner = dp::kNoMatch;
        else
            e.winner = dp::payload_winner(t, k, header, matched);
    }
    if (dp::is_spoofed(t.parse, k, k.ingress)) {
        e.reason = VerdictReason::antispoof;
        e.action = dp::Action::block;
    } else if (e.winner != dp::kNoMatch) {
        e.reason = VerdictReason::filter;
        e.action = cp.rules[e.winner].action;
        // A packet on its own, as explain sees it: the first of its flow (dataplane/state.h).
        // ICMP has flows for echo only: an echo request starts one, an echo reply needs one,
        // any other message passes a stateful permit as a stateless one and no mirror.
        e.state = cp.rules[e.winner].state;
        if (e.state == dp::StateMode::create && k.has_icmp)
            e.state = is_echo(k, true) ? dp::StateMode::create : is_echo(k, false) ? dp::StateMode::reply : dp::StateMode::none;
        if (e.state == dp::StateMode::reply) {
            e.reason = VerdictReason::state;
            e.action = dp::Action::block;
        }
    }
    return e;
}

}  // namespace

Explanation explain(const Config& cfg, const CompiledPolicy& cp, const dp::TableSet& t, PacketSpec packet) {
    return explain_over(cfg, cp, t, std::move(packet), {});
}

Explanation explain(const Config& cfg, const CompiledPolicy& cp, PacketSpec packet) {
    // Without a payload no pattern can match: the database would not be asked.
    const ReferenceTables r = build_reference_tables(cfg, cp, packet.payload.has_value());
    return explain_over(cfg, cp, *r.tables, std::move(packet), r.payload_error);
}

std::string explain_text(const Config& cfg, const CompiledPolicy& cp, const Explanation& e) {
    std::ostringstream o;
    o << "packet    " << format_packet(e.packet.key);
    if (e.ingress_inferred)
        o << " (arrival port assumed: write 'on outside' or 'on inside' to choose)";
    o << "\n";
    for (const auto& n : e.packet.notes)
        o << "note      " << n << "\n";
    if (e.packet.payload)
        o << "payload   " << e.packet.payload->size() << " bytes"
          << (e.payload_cut ? " (only the first " + std::to_string(cfg.appliance.payload_scan_bytes) +
                                  " are scanned: payload_scan_bytes)"
                            : std::string())
          << "\n";
    o << "policy    " << (cp.policy >= 0 ? "'" + cfg.policies[static_cast<std::size_t>(cp.policy)].name + "'"
                                          : std::string("none assigned: every packet is blocked"))
      << "\n";
    o << "verdict   " << (e.action == dp::Action::permit ? "PERMIT" : "BLOCK");
    switch (e.reason) {
    case VerdictReason::no_match: o << " (no filter matches: default deny)\n"; break;
    case VerdictReason::antispoof:
        o << " (antispoof: a 'me' source address arriving on the outside port)\n";
        break;
    case VerdictReason::filter:
        if (e.state == dp::StateMode::create)
            o << " (state = keep: it starts a flow" << (k_is_tcp(e) ? " if it is a SYN; other TCP segments pass only in one" : "")
              << ", and the flow's answers pass while it lives)";
        o << "\n";
        break;
    case VerdictReason::state:
        o << (is_echo(e.packet.key, false) || !e.packet.key.has_icmp
                  ? " (state = keep: the filter's mirror passes only packets of a flow its written direction started;"
                    " a packet of such a tracked flow would pass)\n"
                  : " (state = keep: of ICMP, only the echo replies of tracked pings pass a mirror)\n");
        break;
    }
    // ICMP errors the filters drop pass when they quote a packet of a tracked flow (unless a
    // block filter written for ICMP drops them).
    const bool has_state = std::any_of(cp.rules.begin(), cp.rules.end(),
                                       [](const dp::Entry& r) { return r.state != dp::StateMode::none; });
    if (has_state && is_icmp_error(e.packet.key) && e.action == dp::Action::block && e.reason != VerdictReason::antispoof &&
        (e.winner == dp::kNoMatch || cp.rules[e.winner].proto == dp::kAnyProto || e.reason == VerdictReason::state))
        o << "note      an ICMP error that quotes a packet of a tracked flow (sent by the host it goes to) passes by state\n";
    if (e.winner != dp::kNoMatch) {
        const auto v = view(cfg, cp, e.winner);
        o << (e.reason == VerdictReason::filter || e.reason == VerdictReason::state ? "decided by\n" : "best matching filter\n");
        o << "  rule        " << v.rule.text << "  (line " << v.rule.line << ")\n";
        o << "  filter list " << v.list.name << "\n";
        o << "  filter      " << v.filter.text << "  (line " << v.filter.line << ")"
          << (v.info.origin.mirror ? "  [mirrored half]" : "") << "\n";
        o << "  entry       " << format_entry(cp.rules[e.winner]) << "\n";
        o << "  key         " << format_key(v.info.key) << "  (rank " << e.winner << " of " << cp.rules.size() << ")\n";
        if (cp.rules[e.winner].payload != dp::kNoPayload)
            o << "  payload     pattern " << payload_status(e, cp.rules[e.winner]) << "\n";
    }
    std::vector<dp::Rank> others;
    for (const auto r : e.matches)
        if (r != e.winner)
            others.push_back(r);
    if (others.empty()) {
        o << "no other filter matches\n";
        return o.str();
    }
    o << "other matching filters, in rank order:\n";
    for (const auto r : others) {
        const auto v = view(cfg, cp, r);
        o << "  rank " << r << "  " << action_name(cp.rules[r].action) << "  line " << v.filter.line << "  "
          << v.filter.text << (v.info.origin.mirror ? " [mirrored half]" : "") << "  (" << v.list.name << ")  "
          << format_key(v.info.key);
        if (cp.rules[r].payload != dp::kNoPayload)
            o << "  [payload pattern " << payload_status(e, cp.rules[r]) << "]";
        o << "\n";
    }
    return o.str();
}

nlohmann::json explain_json(const Config& cfg, const CompiledPolicy& cp, const Explanation& e) {
    nlohmann::json j;
    j["packet"] = format_packet(e.packet.key);
    j["ingress"] = e.packet.key.ingress == dp::Ingress::outside ? "outside" : "inside";
    j["ingress_inferred"] = e.ingress_inferred;
    j["notes"] = e.packet.notes;
    if (e.packet.payload) {
        j["payload_bytes"] = e.packet.payload->size();
        j["payload_cut"] = e.payload_cut;
    }
    j["policy"] = cp.policy >= 0 ? nlohmann::json(cfg.policies[static_cast<std::size_t>(cp.policy)].name)
                                 : nlohmann::json(nullptr);
    j["action"] = action_name(e.action);
    j["reason"] = reason_name(e.reason);
    j["state"] = e.state == dp::StateMode::create  ? nlohmann::json("starts a flow")
                 : e.state == dp::StateMode::reply ? nlohmann::json("only in a tracked flow")
                                                   : nlohmann::json(nullptr);
    j["entries"] = cp.rules.size();
    if (e.winner != dp::kNoMatch) {
        const auto w = entry_json(cfg, cp, e, e.winner);
        for (const char* f : {"rule", "rule_line", "filterlist", "filter", "line", "mirror", "entry", "key", "rank"})
            j[f] = w[f];
    } else {
        for (const char* f : {"rule", "rule_line", "filterlist", "filter", "line", "mirror", "entry", "key", "rank"})
            j[f] = nullptr;
    }
    j["matches"] = nlohmann::json::array();
    for (const auto r : e.matches)
        j["matches"].push_back(entry_json(cfg, cp, e, r));
    return j;
}

}  // namespace moat::ctl
