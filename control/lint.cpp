#include "control/lint.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace moat::ctl {

namespace {

/// Upper bound on pairwise comparisons per policy, so that linting a 100K-filter policy stays
/// fast; the checks say so when they stop early.
constexpr std::size_t kMaxPairChecks = 20'000'000;

bool prefixes_overlap(const dp::Addr& a, unsigned alen, const dp::Addr& b, unsigned blen) {
    const unsigned len = std::min(alen, blen);
    return dp::mask_addr(a, len) == dp::mask_addr(b, len);
}

bool ranges_overlap(bool any_x, dp::PortRange x, bool any_y, dp::PortRange y) {
    return any_x || any_y || (x.lo <= y.hi && y.lo <= x.hi);
}

bool range_covers(bool any_o, dp::PortRange o, bool any_i, dp::PortRange i) {
    return any_o || (!any_i && o.lo <= i.lo && i.hi <= o.hi);
}

bool field_overlaps(std::int16_t x, std::int16_t y) {
    return x == dp::kAnyIcmp || y == dp::kAnyIcmp || x == y;
}

/// A constrained packet field; kAny means no constraint.
template <typename T>
bool field_covers(T outer, T inner, T any) {
    return outer == any || outer == inner;
}

using GroupKey = std::tuple<std::uint16_t, std::uint8_t, std::uint8_t, std::uint8_t, std::uint8_t,
                            std::uint8_t, std::uint8_t>;

GroupKey group_of(const SpecKey& k) { return {k.a, k.b, k.c, k.d, k.e, k.f, k.p}; }

}  // namespace

bool entries_overlap(const dp::Rule& x, const dp::Rule& y) noexcept {
    return x.family == y.family &&
           (x.on == dp::OnPort::any || y.on == dp::OnPort::any || x.on == y.on) &&
           prefixes_overlap(x.src, x.src_len, y.src, y.src_len) &&
           prefixes_overlap(x.dst, x.dst_len, y.dst, y.dst_len) &&
           (x.proto == dp::kAnyProto || y.proto == dp::kAnyProto || x.proto == y.proto) &&
           ranges_overlap(x.sport_any, x.sport, y.sport_any, y.sport) &&
           ranges_overlap(x.dport_any, x.dport, y.dport_any, y.dport) &&
           field_overlaps(x.icmp_type, y.icmp_type) && field_overlaps(x.icmp_code, y.icmp_code);
}

bool entry_covers(const dp::Rule& o, const dp::Rule& i) noexcept {
    return o.family == i.family && field_covers(o.on, i.on, dp::OnPort::any) &&
           o.src_len <= i.src_len && dp::prefix_contains(o.src, o.src_len, i.src) &&
           o.dst_len <= i.dst_len && dp::prefix_contains(o.dst, o.dst_len, i.dst) &&
           field_covers(o.proto, i.proto, dp::kAnyProto) &&
           range_covers(o.sport_any, o.sport, i.sport_any, i.sport) &&
           range_covers(o.dport_any, o.dport, i.dport_any, i.dport) &&
           field_covers(o.icmp_type, i.icmp_type, dp::kAnyIcmp) &&
           field_covers(o.icmp_code, i.icmp_code, dp::kAnyIcmp) &&
           (o.payload == dp::kNoPayload || o.payload == i.payload);
}

void lint_policy(const Config& cfg, const CompiledPolicy& cp, Diagnostics& diags) {
    const Policy& pol = cfg.policies[static_cast<std::size_t>(cp.policy)];
    const std::string in_policy = cfg.policies.size() > 1 ? "in policy '" + pol.name + "': " : "";
    const auto filter_of = [&](std::size_t rank) -> const FilterDef& {
        const auto& o = cp.info[rank].origin;
        return cfg.lists[static_cast<std::size_t>(o.list)].filters[static_cast<std::size_t>(o.filter)];
    };
    const auto action_name = [&](std::size_t rank) {
        return cp.rules[rank].action == dp::Action::permit ? "permit" : "block";
    };

    // A catch-all: a block entry that admits any source and any protocol, port and type.
    const bool catch_all = std::any_of(cp.rules.begin(), cp.rules.end(), [](const dp::Rule& r) {
        return r.action == dp::Action::block && r.src_len == 0 && r.proto == dp::kAnyProto &&
               r.on == dp::OnPort::any && r.payload == dp::kNoPayload;
    });
    if (!catch_all && !cp.rules.empty())
        diags.warning(cfg.file, pol.line,
                      "policy '" + pol.name + "' has no catch-all block filter (such as '*+0' or '*+*' "
                      "under a block action); unmatched packets are dropped anyway (default deny), "
                      "but an explicit rule states the intent");

    // Equal keys (ignoring G) are the only place for overlaps that G decides and for shadowing:
    // an entry that covers another has a key no higher on every field, so it can only outrank
    // the other when A..P are equal.
    std::map<GroupKey, std::vector<std::size_t>> groups;
    for (std::size_t i = 0; i < cp.rules.size(); ++i)
        groups[group_of(cp.info[i].key)].push_back(i);

    std::size_t checks = 0;
    bool stopped = false;
    std::set<std::pair<int, int>> reported_overlap;
    // Per (rule, list, filter): entries in total and entries shadowed, with the first shadower.
    struct Shadow {
        int entries = 0;
        int shadowed = 0;
        std::size_t by = 0;
    };
    std::map<std::tuple<int, int, int>, Shadow> shadow;
    for (std::size_t i = 0; i < cp.rules.size(); ++i) {
        const auto& o = cp.info[i].origin;
        ++shadow[{o.rule, o.list, o.filter}].entries;
    }
    for (const auto& [key, members] : groups) {
        for (std::size_t jj = 0; jj < members.size() && !stopped; ++jj) {
            const std::size_t j = members[jj];
            const auto& oj = cp.info[j].origin;
            bool covered = false;
            for (std::size_t ii = 0; ii < jj; ++ii) {
                if (++checks > kMaxPairChecks) {
                    stopped = true;
                    break;
                }
                const std::size_t i = members[ii];
                const auto& oi = cp.info[i].origin;
                const bool same_filter = oi.rule == oj.rule && oi.list == oj.list && oi.filter == oj.filter;
                if (same_filter)
                    continue;
                const auto& ri = cp.rules[i];
                const auto& rj = cp.rules[j];
                if (!covered && entry_covers(ri, rj)) {
                    covered = true;
                    auto& s = shadow[{oj.rule, oj.list, oj.filter}];
                    if (s.shadowed++ == 0)
                        s.by = i;
                }
                if (ri.action != rj.action && entries_overlap(ri, rj)) {
                    const int li = filter_of(i).line, lj = filter_of(j).line;
                    if (li != lj && reported_overlap.emplace(std::min(li, lj), std::max(li, lj)).second)
                        diags.warning(cfg.file, std::max(li, lj),
                                      in_policy + "filters at lines " + std::to_string(std::min(li, lj)) + " and " +
                                          std::to_string(std::max(li, lj)) +
                                          " have the same specificity, overlap, and have different actions "
                                          "(" + action_name(i) + " / " + action_name(j) +
                                          "): block wins where both match");
                }
            }
        }
    }
    for (const auto& [who, s] : shadow) {
        if (s.entries == 0 || s.shadowed != s.entries)
            continue;
        const auto& [rule, list, filter] = who;
        const auto& f = cfg.lists[static_cast<std::size_t>(list)].filters[static_cast<std::size_t>(filter)];
        const auto& by = filter_of(s.by);
        diags.warning(cfg.file, f.line,
                      in_policy + "filter '" + f.text + "' (rule at line " +
                          std::to_string(pol.rules[static_cast<std::size_t>(rule)].line) +
                          ") never decides a packet: filter '" + by.text + "' at line " +
                          std::to_string(by.line) + " (" + action_name(s.by) + ") matches all of them first");
    }
    if (stopped)
        diags.warning(cfg.file, pol.line,
                      in_policy + "overlap and shadowing checks stopped after " + std::to_string(kMaxPairChecks) +
                          " comparisons: the policy is too large to lint completely");
}

}  // namespace moat::ctl
