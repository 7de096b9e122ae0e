#include "control/compile/lint.h"

#include <algorithm>
#include <array>
#include <bit>
#include <limits>
#include <memory>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace moat::ctl {

namespace {

/// Candidates a shadowing check looks at per entry before it gives up (and says so): only port
/// ranges of one power-of-two class that start within 2^k of each other are left by then.
constexpr std::size_t kShadowCandidates = 64;
/// Pair checks spent on listing overlaps when the listing is cut (the count is exact anyway).
constexpr std::uint64_t kListingBudget = 4'000'000;

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

struct Span {
    std::uint16_t lo = 0, hi = 65535;
};

/// An entry's source and destination ports as ranges (any: the whole range).
Span sport_of(const dp::Entry& r) { return r.sport_any ? Span{} : Span{r.sport.lo, r.sport.hi}; }
Span dport_of(const dp::Entry& r) { return r.dport_any ? Span{} : Span{r.dport.lo, r.dport.hi}; }

/// Counts of values below a bound, over the 65536 port values.
class Fenwick {
public:
    void add(unsigned v) {
        for (++v; v <= 65536; v += v & (0u - v))
            ++t_[v];
    }
    /// Values added that are < v.
    std::uint64_t below(unsigned v) const {
        std::uint64_t n = 0;
        for (; v > 0; v -= v & (0u - v))
            n += t_[v];
        return n;
    }

private:
    std::array<std::uint32_t, 65537> t_{};
};

/// Pairs (p in `pts`, q in `qs`) with p.first < q.first and p.second < q.second.
std::uint64_t dominated(std::vector<std::pair<unsigned, unsigned>> pts, std::vector<std::pair<unsigned, unsigned>> qs) {
    std::sort(pts.begin(), pts.end());
    std::sort(qs.begin(), qs.end());
    auto fw = std::make_unique<Fenwick>();
    std::uint64_t n = 0;
    std::size_t at = 0;
    for (const auto& q : qs) {
        while (at < pts.size() && pts[at].first < q.first)
            fw->add(pts[at++].second);
        n += fw->below(q.second);
    }
    return n;
}

struct Rect {
    Span x, y;
};

/// Pairs (a in A, b in B) whose port rectangles intersect: all pairs, less those apart in x,
/// less those apart in y, plus those apart in both (counted twice). O((|A| + |B|) log).
std::uint64_t intersecting_pairs(const std::vector<Rect>& A, const std::vector<Rect>& B) {
    if (A.empty() || B.empty())
        return 0;
    if (A.size() * B.size() <= 4096) {  // small: each pair, cheaper than the sweeps
        std::uint64_t n = 0;
        for (const auto& a : A)
            for (const auto& b : B)
                n += a.x.lo <= b.x.hi && b.x.lo <= a.x.hi && a.y.lo <= b.y.hi && b.y.lo <= a.y.hi;
        return n;
    }
    const auto apart = [&](auto span) {
        std::vector<unsigned> lo, hi;
        for (const auto& b : B) {
            lo.push_back(span(b).lo);
            hi.push_back(span(b).hi);
        }
        std::sort(lo.begin(), lo.end());
        std::sort(hi.begin(), hi.end());
        std::uint64_t n = 0;
        for (const auto& a : A) {
            n += static_cast<std::uint64_t>(std::lower_bound(hi.begin(), hi.end(), span(a).lo) - hi.begin());  // b before a
            n += static_cast<std::uint64_t>(lo.end() - std::upper_bound(lo.begin(), lo.end(), span(a).hi));   // b after a
        }
        return n;
    };
    const std::uint64_t apart_x = apart([](const Rect& r) { return r.x; });
    const std::uint64_t apart_y = apart([](const Rect& r) { return r.y; });
    // Apart in both: b before or after a in x, and before or after a in y. "After" turns into
    // "before" on the mirrored axis (65535 - v).
    std::uint64_t both = 0;
    for (const bool x_after : {false, true})
        for (const bool y_after : {false, true}) {
            std::vector<std::pair<unsigned, unsigned>> pts, qs;
            for (const auto& b : B)
                pts.emplace_back(x_after ? 65535u - b.x.lo : b.x.hi, y_after ? 65535u - b.y.lo : b.y.hi);
            for (const auto& a : A)
                qs.emplace_back(x_after ? 65535u - a.x.hi : a.x.lo, y_after ? 65535u - a.y.hi : a.y.lo);
            both += dominated(std::move(pts), std::move(qs));
        }
    return static_cast<std::uint64_t>(A.size()) * B.size() - apart_x - apart_y + both;
}

/// Entries of one policy, as the lint needs them.
struct LintEntry {
    std::size_t rank;
    Rect ports;
    dp::OnPort on;
    dp::Action action;
    bool src_me = false, dst_me = false;  ///< the address is one host, a `me` address
};

/// Whether a packet matched by both `x` and `y` (which overlap) can reach the classifier. With
/// antispoof on, a packet from a `me` address arriving on the outside port is dropped before it
/// is classified; packets from one `me` address to another do not cross the appliance, so they
/// come only from the outside, forged, and only when antispoof is off. The packets of the overlap
/// have the longer source prefix of the two, the longer destination, and arrive on the port
/// either names (on=inside and on=outside never overlap).
bool can_arrive(const LintEntry& x, const LintEntry& y, const std::vector<dp::Entry>& rules, bool antispoof) {
    const bool src_me = rules[x.rank].src_len >= rules[y.rank].src_len ? x.src_me : y.src_me;
    const bool dst_me = rules[x.rank].dst_len >= rules[y.rank].dst_len ? x.dst_me : y.dst_me;
    const bool outside = x.on == dp::OnPort::outside || y.on == dp::OnPort::outside;
    const bool inside = x.on == dp::OnPort::inside || y.on == dp::OnPort::inside;
    if (src_me && antispoof && outside)
        return false;
    return !(src_me && dst_me && (antispoof || inside));
}

/// Pairs with different actions among `set` (entries whose addresses all overlap one another's
/// in the way the caller arranged), counting only pairs with one from `a` and one from `b` when
/// both are given (two orientations of one bucket).
std::uint64_t count_overlaps(const std::vector<const LintEntry*>& a, const std::vector<const LintEntry*>& b) {
    // By action and arrival port: `on=any` meets every port, the others only their own.
    std::array<std::array<std::vector<Rect>, 3>, 2> sa, sb;
    for (const LintEntry* e : a)
        sa[e->action == dp::Action::permit][static_cast<unsigned>(e->on)].push_back(e->ports);
    for (const LintEntry* e : b)
        sb[e->action == dp::Action::permit][static_cast<unsigned>(e->on)].push_back(e->ports);
    std::uint64_t n = 0;
    for (unsigned pa = 0; pa < 2; ++pa)
        for (unsigned oa = 0; oa < 3; ++oa)
            for (unsigned ob = 0; ob < 3; ++ob)
                if (oa == 0 || ob == 0 || oa == ob)
                    n += intersecting_pairs(sa[pa][oa], sb[1 - pa][ob]);
    return n;
}

}  // namespace

bool entries_overlap(const dp::Entry& x, const dp::Entry& y) noexcept {
    return x.family == y.family &&
           (x.on == dp::OnPort::any || y.on == dp::OnPort::any || x.on == y.on) &&
           prefixes_overlap(x.src, x.src_len, y.src, y.src_len) &&
           prefixes_overlap(x.dst, x.dst_len, y.dst, y.dst_len) &&
           (x.proto == dp::kAnyProto || y.proto == dp::kAnyProto || x.proto == y.proto) &&
           ranges_overlap(x.sport_any, x.sport, y.sport_any, y.sport) &&
           ranges_overlap(x.dport_any, x.dport, y.dport_any, y.dport) &&
           field_overlaps(x.icmp_type, y.icmp_type) && field_overlaps(x.icmp_code, y.icmp_code);
}

bool entry_covers(const dp::Entry& o, const dp::Entry& i) noexcept {
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

void lint_policy(const Config& cfg, const CompiledPolicy& cp, Diagnostics& diags, LintCounts& counts,
                 const LintOptions& opt) {
    const Policy& pol = cfg.policies[static_cast<std::size_t>(cp.policy)];
    const std::string in_policy = cfg.policies.size() > 1 ? "in policy '" + pol.name + "': " : "";
    const auto filter_of = [&](std::size_t rank) -> const FilterDef& {
        const auto& o = cp.info[rank].origin;
        return cfg.lists[static_cast<std::size_t>(o.list)].filters[static_cast<std::size_t>(o.filter)];
    };
    const auto action_name = [&](std::size_t rank) {
        return cp.rules[rank].action == dp::Action::permit ? "permit" : "block";
    };
    const auto cancelled = [&] { return opt.cancel && opt.cancel->load(std::memory_order_relaxed); };

    // A catch-all: a block entry that admits any source and any protocol, port and type.
    const bool catch_all = std::any_of(cp.rules.begin(), cp.rules.end(), [](const dp::Entry& r) {
        return r.action == dp::Action::block && r.src_len == 0 && r.proto == dp::kAnyProto &&
               r.on == dp::OnPort::any && r.payload == dp::kNoPayload;
    });
    if (!catch_all && !cp.rules.empty()) {
        ++counts["catch-all"];
        diags.warning(cfg.file, pol.line,
                      "policy '" + pol.name + "' has no catch-all block filter (such as '*+0' or '*+*' "
                      "under a block action); unmatched packets are dropped anyway (default deny), "
                      "but an explicit rule states the intent",
                      "catch-all");
    }

    std::set<std::pair<dp::Family, std::array<std::uint8_t, 16>>> me;
    for (const auto& m : cfg.appliance.me)
        me.emplace(m.family, m.addr.bytes);
    const auto is_me = [&](dp::Family f, const dp::Addr& a, unsigned len) {
        return len == dp::addr_bits(f) && me.contains({f, a.bytes});
    };
    const bool antispoof = cfg.appliance.antispoof;
    std::vector<LintEntry> entries(cp.rules.size());
    for (std::size_t i = 0; i < cp.rules.size(); ++i) {
        const dp::Entry& r = cp.rules[i];
        entries[i] = {i, {sport_of(r), dport_of(r)}, r.on, r.action, is_me(r.family, r.src, r.src_len),
                      is_me(r.family, r.dst, r.dst_len)};
    }
    const auto same_origin = [&](std::size_t i, std::size_t j) {
        const auto& a = cp.info[i].origin;
        const auto& b = cp.info[j].origin;
        return a.rule == b.rule && a.list == b.list && a.filter == b.filter;
    };

    // Equal keys (ignoring G) are the only place for overlaps that G decides and for shadowing:
    // an entry that covers another has a key no higher on every field, so it can only outrank
    // the other when A..P are equal.
    std::map<GroupKey, std::vector<std::size_t>> groups;
    for (std::size_t i = 0; i < cp.rules.size(); ++i)
        groups[group_of(cp.info[i].key)].push_back(i);

    std::uint64_t overlaps = 0, listing_checks = 0, undetermined = 0;
    std::size_t listed_overlaps = 0;
    bool listing_cut = false;  // some overlapping pair may be left out of the list
    std::set<std::pair<int, int>> reported_overlap;
    // Lists the overlapping pairs of a and b (or within a when b is null) with different actions,
    // as line pairs, while the listing is open.
    const auto list_overlaps = [&](const std::vector<const LintEntry*>& a, const std::vector<const LintEntry*>* b) {
        for (std::size_t x = 0; x < a.size(); ++x) {
            const std::size_t from = b ? 0 : x + 1;
            const auto& other = b ? *b : a;
            for (std::size_t y = from; y < other.size(); ++y) {
                if (listed_overlaps >= opt.listed || (opt.listed != std::numeric_limits<std::size_t>::max() &&
                                                      ++listing_checks > kListingBudget)) {
                    listing_cut = true;
                    return;
                }
                const std::size_t i = std::min(a[x]->rank, other[y]->rank), j = std::max(a[x]->rank, other[y]->rank);
                const auto& ri = cp.rules[i];
                const auto& rj = cp.rules[j];
                if (ri.action == rj.action || !entries_overlap(ri, rj) ||
                    !can_arrive(*a[x], *other[y], cp.rules, antispoof))
                    continue;
                const int li = filter_of(i).line, lj = filter_of(j).line;
                if (!reported_overlap.emplace(std::min(li, lj), std::max(li, lj)).second)
                    continue;
                ++listed_overlaps;
                if (li == lj) {
                    const auto rule_line = [&](std::size_t r) {
                        return pol.rules[static_cast<std::size_t>(cp.info[r].origin.rule)].line;
                    };
                    const bool in_order = rule_line(i) <= rule_line(j);  // the earlier rule first
                    const std::size_t first = in_order ? i : j, second = in_order ? j : i;
                    diags.warning(cfg.file, li,
                                  in_policy + "filter at line " + std::to_string(li) + " is used by the rules at lines " +
                                      std::to_string(rule_line(first)) + " and " + std::to_string(rule_line(second)) +
                                      " with different actions (" + action_name(first) + " / " + action_name(second) +
                                      "): block wins",
                                  "overlap");
                } else {
                    diags.warning(cfg.file, std::max(li, lj),
                                  in_policy + "filters at lines " + std::to_string(std::min(li, lj)) + " and " +
                                      std::to_string(std::max(li, lj)) +
                                      " have the same specificity, overlap, and have different actions "
                                      "(" + action_name(i) + " / " + action_name(j) + "): block wins where both match",
                                  "overlap");
                }
            }
        }
    };

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
    const auto shadowed_by = [&](std::size_t j, std::size_t by) {
        const auto& o = cp.info[j].origin;
        auto& s = shadow[{o.rule, o.list, o.filter}];
        if (s.shadowed++ == 0)
            s.by = by;
    };

    for (const auto& [key, members] : groups) {
        if (cancelled())
            break;
        const dp::Entry& first = cp.rules[members.front()];
        const unsigned m = std::min(first.src_len, first.dst_len);  // the shorter prefix of every member
        // Buckets: entries that can overlap share their addresses cut to m bits (and their given
        // protocol and ICMP fields, equal keys giving the same ones); within a bucket, entries of
        // one orientation with other exact addresses cannot overlap.
        std::unordered_map<std::string, std::vector<std::size_t>> buckets;
        for (const std::size_t i : members) {
            const dp::Entry& r = cp.rules[i];
            const dp::Addr s = dp::mask_addr(r.src, m), d = dp::mask_addr(r.dst, m);
            std::string k(reinterpret_cast<const char*>(s.bytes.data()), 16);
            k.append(reinterpret_cast<const char*>(d.bytes.data()), 16);
            k += static_cast<char>(r.family);
            k.append(reinterpret_cast<const char*>(&r.proto), sizeof r.proto);
            k.append(reinterpret_cast<const char*>(&r.icmp_type), sizeof r.icmp_type);
            k.append(reinterpret_cast<const char*>(&r.icmp_code), sizeof r.icmp_code);
            buckets[k].push_back(i);
        }
        for (const auto& [bk, bucket] : buckets) {
            if (cancelled())
                break;
            // Sub-buckets: exact addresses (their orientation with them).
            std::map<std::tuple<unsigned, std::array<std::uint8_t, 16>, std::array<std::uint8_t, 16>>,
                     std::vector<const LintEntry*>>
                exact;
            std::vector<const LintEntry*> orient[2];
            for (const std::size_t i : bucket) {
                const dp::Entry& r = cp.rules[i];
                exact[{r.src_len, r.src.bytes, r.dst.bytes}].push_back(&entries[i]);
                orient[r.src_len == first.src_len ? 0 : 1].push_back(&entries[i]);
            }
            // Only overlaps of packets that can arrive count (can_arrive). Entries without those
            // on `port`: a pair with one of them overlaps only there.
            const auto without = [&](const std::vector<const LintEntry*>& v, dp::OnPort port) {
                std::vector<const LintEntry*> out;
                for (const LintEntry* e : v)
                    if (e->on != port)
                        out.push_back(e);
                return out;
            };
            // Pairs from a `me` source: with antispoof on, none on the outside port; to a `me`
            // destination as well, none at all with antispoof on, and with it off only on the
            // outside port (forged).
            const auto from_me = [&](const std::vector<const LintEntry*>& v, bool to_me) {
                if (antispoof)
                    return to_me ? std::vector<const LintEntry*>{} : without(v, dp::OnPort::outside);
                return to_me ? without(v, dp::OnPort::inside) : v;
            };
            std::vector<const LintEntry*> kept;  // a group's entries that can arrive, when some cannot
            for (const auto& [ek, all] : exact) {
                const auto& same = all.front()->src_me ? (kept = from_me(all, all.front()->dst_me)) : all;
                overlaps += count_overlaps(same, same) / 2;  // each pair in both orders
                list_overlaps(same, nullptr);
            }
            if (first.src_len != first.dst_len && !orient[1].empty()) {
                // An overlap's source is that of the orientation with the longer source prefix,
                // its destination that of the other.
                const bool first_longer_src = first.src_len > first.dst_len;
                const auto& by_src = orient[first_longer_src ? 0 : 1];
                const auto& by_dst = orient[first_longer_src ? 1 : 0];
                std::vector<const LintEntry*> src_me, src_other, dst_me, dst_other;
                for (const LintEntry* e : by_src)
                    (e->src_me ? src_me : src_other).push_back(e);
                for (const LintEntry* e : by_dst)
                    (e->dst_me ? dst_me : dst_other).push_back(e);
                overlaps += count_overlaps(src_other, by_dst);
                if (antispoof) {
                    overlaps += count_overlaps(without(src_me, dp::OnPort::outside), without(dst_other, dp::OnPort::outside));
                } else {
                    overlaps += count_overlaps(src_me, dst_other);
                    overlaps += count_overlaps(without(src_me, dp::OnPort::inside), without(dst_me, dp::OnPort::inside));
                }
                list_overlaps(orient[0], &orient[1]);
            }

            // Shadowing, within exact addresses: an earlier entry of another filter that covers
            // all of this one. Its port ranges are of the same power-of-two class (the keys are
            // equal), so it starts at most 2^k ports before.
            for (const auto& [ek, same] : exact) {
                // By where the ranges start, the better-ranked first among equal starts (a copy of
                // a filter is covered by the first of them).
                std::vector<const LintEntry*> by_sport = same, by_dport = same;
                std::sort(by_sport.begin(), by_sport.end(), [](const LintEntry* a, const LintEntry* b) {
                    return std::pair(a->ports.x.lo, a->rank) < std::pair(b->ports.x.lo, b->rank);
                });
                std::sort(by_dport.begin(), by_dport.end(), [](const LintEntry* a, const LintEntry* b) {
                    return std::pair(a->ports.y.lo, a->rank) < std::pair(b->ports.y.lo, b->rank);
                });
                for (const LintEntry* j : same) {
                    const dp::Entry& rj = cp.rules[j->rank];
                    // The dimension to search along: one that j narrows (else every candidate
                    // covers it in ports, and the first of another filter will do).
                    const bool along_x = !rj.sport_any, along_y = !along_x && !rj.dport_any;
                    const auto& sorted = along_x ? by_sport : by_dport;
                    const Span span = along_x ? j->ports.x : j->ports.y;
                    const unsigned width = span.hi - span.lo + 1u;
                    const unsigned reach = along_x || along_y ? std::bit_ceil(width) : 65536u;
                    const unsigned from = span.hi + 1u >= reach ? span.hi + 1u - reach : 0u;
                    auto it = std::lower_bound(sorted.begin(), sorted.end(), from, [&](const LintEntry* e, unsigned v) {
                        return (along_x ? e->ports.x.lo : e->ports.y.lo) < v;
                    });
                    std::size_t checked = 0;
                    bool found = false, gave_up = false;
                    for (; it != sorted.end() && (along_x ? (*it)->ports.x.lo : (*it)->ports.y.lo) <= span.lo; ++it) {
                        const LintEntry* i = *it;
                        if (++checked > kShadowCandidates) {
                            gave_up = true;
                            break;
                        }
                        if (i->rank >= j->rank || same_origin(i->rank, j->rank))
                            continue;
                        if (entry_covers(cp.rules[i->rank], rj)) {
                            shadowed_by(j->rank, i->rank);
                            found = true;
                            break;
                        }
                    }
                    undetermined += gave_up && !found;
                }
            }
        }
    }

    if (overlaps > 0)
        counts["overlap"] += overlaps;
    if (listing_cut && overlaps > 0)
        diags.warning(cfg.file, pol.line,
                      in_policy + std::to_string(overlaps) +
                          " pairs of ranked entries of the same specificity overlap with different actions in all "
                          "(a mirrored filter or one with 'me' makes several entries); 'moatctl lint --all' lists "
                          "every pair of filters",
                      "more");

    std::size_t shadowed = 0;
    for (const auto& [who, s] : shadow) {
        if (s.entries == 0 || s.shadowed != s.entries)
            continue;
        if (++shadowed > opt.listed)
            continue;
        const auto& [rule, list, filter] = who;
        const auto& f = cfg.lists[static_cast<std::size_t>(list)].filters[static_cast<std::size_t>(filter)];
        const auto& by = filter_of(s.by);
        diags.warning(cfg.file, f.line,
                      in_policy + "filter '" + f.text + "' (rule at line " +
                          std::to_string(pol.rules[static_cast<std::size_t>(rule)].line) +
                          ") never decides a packet: filter '" + by.text + "' at line " + std::to_string(by.line) +
                          " (" + action_name(s.by) + ") matches all of them first",
                      "shadowed");
    }
    // A kind's count, and one line for those of this policy beyond the `listed` ones.
    const auto tally = [&](const char* kind, std::size_t n, const std::string& what) {
        if (n > 0)
            counts[kind] += n;
        if (n > opt.listed)
            diags.warning(cfg.file, pol.line,
                          in_policy + "and " + std::to_string(n - opt.listed) + " more " + what +
                              " ('moatctl lint --all' lists them)",
                          "more");
    };
    tally("shadowed", shadowed, "filters never decide a packet");

    // A stateless permit whose mirror lets a fixed source port of a wider set of hosts reach
    // every port of a narrower one: the hole that `state = keep` closes (198.18.0.20+*:25 lets
    // anyone's source port 25 reach any port of the server; *+198.18.0.10:80, whose mirror goes
    // from the one server to anyone, is not warned about).
    const auto host_bits = [](const HostSpec& h) {
        return h.kind == HostKind::any ? 0u : h.kind == HostKind::me ? 32u : unsigned{h.len};
    };
    std::size_t open_mirrors = 0;
    for (const RuleDef& rd : pol.rules) {
        const FilterAction& a = cfg.actions[static_cast<std::size_t>(rd.action)];
        if (a.action != dp::Action::permit || a.keep_state)
            continue;
        for (const FilterDef& f : cfg.lists[static_cast<std::size_t>(rd.list)].filters) {
            const FilterSpec& s = f.spec;
            if (!s.mirrored || !s.proto || !dp::proto_has_ports(static_cast<std::uint8_t>(*s.proto)) || s.dport.any ||
                !s.sport.any || host_bits(s.dst) >= host_bits(s.src))
                continue;
            if (++open_mirrors > opt.listed)
                continue;
            const std::string port = s.dport.range.lo == s.dport.range.hi
                                         ? "source port " + std::to_string(s.dport.range.lo)
                                         : "source ports " + std::to_string(s.dport.range.lo) + "-" +
                                               std::to_string(s.dport.range.hi);
            diags.warning(cfg.file, f.line,
                          in_policy + "filter '" + f.text + "' (rule at line " + std::to_string(rd.line) +
                              "): its mirror lets " + port + " of " + (s.dst.kind == HostKind::any ? "any host" : "its destination") +
                              " reach every port of its source; give the action '" +
                              a.name + "' 'state = keep' (a [filteraction] of its own) so that only the answers of "
                              "connections it started pass",
                          "open-mirror");
        }
    }
    tally("open-mirror", open_mirrors, "mirrored permits open a fixed source port");
    if (undetermined > 0) {
        counts["incomplete"] += undetermined;
        diags.warning(cfg.file, pol.line,
                      in_policy + "the shadowing check gave up on " + std::to_string(undetermined) +
                          " entries: more than " + std::to_string(kShadowCandidates) +
                          " port ranges of their size start near each of them",
                      "incomplete");
    }
}

}  // namespace moat::ctl
