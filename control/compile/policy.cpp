#include "control/compile/policy.h"

#include <algorithm>
#include <bit>
#include <numeric>

namespace moat::ctl {

namespace {

struct Endpoint {
    dp::Family family;
    dp::Addr addr;
    std::uint8_t len;
};

/// The concrete prefixes a host stands for, in a fixed order (IPv4 before IPv6 for `*`).
std::vector<Endpoint> endpoints(const HostSpec& h, const std::vector<ParsedAddr>& me) {
    switch (h.kind) {
    case HostKind::any: return {{dp::Family::ipv4, {}, 0}, {dp::Family::ipv6, {}, 0}};
    case HostKind::me: {
        std::vector<Endpoint> out;
        for (const auto& a : me)
            out.push_back({a.family, a.addr, static_cast<std::uint8_t>(dp::addr_bits(a.family))});
        return out;
    }
    case HostKind::prefix: return {{h.family, h.addr, h.len}};
    }
    return {};
}

dp::OnPort flip(dp::OnPort on) noexcept {
    switch (on) {
    case dp::OnPort::outside: return dp::OnPort::inside;
    case dp::OnPort::inside: return dp::OnPort::outside;
    case dp::OnPort::any: break;
    }
    return dp::OnPort::any;
}

bool same_rule(const dp::Entry& x, const dp::Entry& y) {
    return x.src == y.src && x.dst == y.dst && x.src_len == y.src_len && x.dst_len == y.dst_len &&
           x.family == y.family && x.on == y.on && x.action == y.action &&
           x.sport_any == y.sport_any && x.dport_any == y.dport_any && x.proto == y.proto &&
           x.sport == y.sport && x.dport == y.dport && x.icmp_type == y.icmp_type &&
           x.icmp_code == y.icmp_code;
}

/// A stateful permit's entry: the original starts flows, the mirror passes their packets; the
/// mirror of an echo request is the echo reply (its flow's other half).
void keep_state(dp::Entry& r, bool mirror) {
    r.state = mirror ? dp::StateMode::reply : dp::StateMode::create;
    if (mirror && r.icmp_type == (r.family == dp::Family::ipv4 ? 8 : 128))
        r.icmp_type = r.family == dp::Family::ipv4 ? 0 : 129;
}

}  // namespace

unsigned port_specificity(bool any, dp::PortRange r) noexcept {
    if (any)
        return 0;
    const unsigned n = static_cast<unsigned>(r.hi) - r.lo + 1;  // 1 .. 65536
    return 17 - static_cast<unsigned>(std::bit_width(n - 1));   // bit_width(n-1) = ceil(log2 n)
}

SpecKey spec_key(const dp::Entry& r) noexcept {
    SpecKey k;
    k.a = static_cast<std::uint16_t>(r.src_len + r.dst_len);
    k.b = std::max(r.src_len, r.dst_len);
    k.c = r.proto != dp::kAnyProto ? 1 : 0;
    const unsigned ps = port_specificity(r.sport_any, r.sport);
    const unsigned pd = port_specificity(r.dport_any, r.dport);
    k.d = static_cast<std::uint8_t>(ps + pd);
    k.e = static_cast<std::uint8_t>(std::max(ps, pd));
    k.f = static_cast<std::uint8_t>((r.icmp_type != dp::kAnyIcmp) + (r.icmp_code != dp::kAnyIcmp));
    k.p = r.payload != dp::kNoPayload ? 1 : 0;
    k.g = r.action == dp::Action::block ? 1 : 0;
    return k;
}

std::string format_key(const SpecKey& k) {
    return "A=" + std::to_string(k.a) + " B=" + std::to_string(k.b) + " C=" + std::to_string(k.c) +
           " D=" + std::to_string(k.d) + " E=" + std::to_string(k.e) + " F=" + std::to_string(k.f) +
           " P=" + std::to_string(k.p) + " G=" + std::to_string(k.g);
}

std::vector<dp::Entry> expand_filter(const FilterSpec& f, const std::vector<ParsedAddr>& me,
                                    dp::Action action, bool mirror) {
    std::vector<dp::Entry> out;
    const auto srcs = endpoints(f.src, me);
    const auto dsts = endpoints(f.dst, me);
    for (const auto& s : srcs) {
        for (const auto& d : dsts) {
            if (s.family != d.family)
                continue;
            if (f.proto == dp::kProtoIcmp && s.family != dp::Family::ipv4)
                continue;
            if (f.proto == dp::kProtoIcmpv6 && s.family != dp::Family::ipv6)
                continue;
            dp::Entry r;
            r.family = s.family;
            r.src = s.addr;
            r.src_len = s.len;
            r.dst = d.addr;
            r.dst_len = d.len;
            r.sport_any = f.sport.any;
            r.sport = f.sport.any ? dp::PortRange{} : f.sport.range;
            r.dport_any = f.dport.any;
            r.dport = f.dport.any ? dp::PortRange{} : f.dport.range;
            r.proto = f.proto ? *f.proto : dp::kAnyProto;
            r.icmp_type = f.icmp_type ? *f.icmp_type : dp::kAnyIcmp;
            r.icmp_code = f.icmp_code ? *f.icmp_code : dp::kAnyIcmp;
            r.on = f.on;
            r.action = action;
            if (mirror) {
                // The reverse: addresses and ports swapped; a reply arrives on the other port.
                std::swap(r.src, r.dst);
                std::swap(r.src_len, r.dst_len);
                std::swap(r.sport_any, r.dport_any);
                std::swap(r.sport, r.dport);
                r.on = flip(r.on);
            }
            out.push_back(r);
        }
    }
    return out;
}

CompiledPolicy compile_policy(const Config& cfg, int policy) {
    CompiledPolicy cp;
    cp.policy = policy;
    struct Pending {
        dp::Entry rule;
        RankedEntry info;
        int line;
    };
    std::vector<Pending> all;
    const Policy& pol = cfg.policies[static_cast<std::size_t>(policy)];
    for (std::size_t ri = 0; ri < pol.rules.size(); ++ri) {
        const RuleDef& rd = pol.rules[ri];
        const FilterList& list = cfg.lists[static_cast<std::size_t>(rd.list)];
        const dp::Action action = cfg.actions[static_cast<std::size_t>(rd.action)].action;
        // `state = keep`: the written direction starts flows, the mirror passes their packets
        // only; a stateful filter has that mirror whether or not it is written mirrored.
        const bool keep = action == dp::Action::permit && cfg.actions[static_cast<std::size_t>(rd.action)].keep_state;
        for (std::size_t fi = 0; fi < list.filters.size(); ++fi) {
            const FilterDef& fd = list.filters[fi];
            std::uint32_t pattern = dp::kNoPayload;
            if (fd.spec.payload) {
                pattern = static_cast<std::uint32_t>(cp.patterns.size());
                cp.patterns.push_back(*fd.spec.payload);
            }
            const auto originals = expand_filter(fd.spec, cfg.appliance.me, action, false);
            for (int half = 0; half < (fd.spec.mirrored || keep ? 2 : 1); ++half) {
                const auto entries = half == 0 ? originals : expand_filter(fd.spec, cfg.appliance.me, action, true);
                for (std::size_t x = 0; x < entries.size(); ++x) {
                    dp::Entry r = entries[x];
                    if (keep)
                        keep_state(r, half == 1);  // before the test: an echo's mirror is another type
                    // A mirror identical to its original (e.g. `*+*`) adds nothing; keep one.
                    if (half == 1 && std::any_of(originals.begin(), originals.end(),
                                                 [&](const dp::Entry& o) { return same_rule(o, r); }))
                        continue;
                    r.payload = pattern;
                    all.push_back({r,
                                   {spec_key(r),
                                    {static_cast<int>(ri), rd.list, static_cast<int>(fi), half == 1,
                                     static_cast<int>(x)}},
                                   fd.line});
                }
            }
        }
    }
    std::stable_sort(all.begin(), all.end(), [](const Pending& x, const Pending& y) {
        if (x.info.key != y.info.key)
            return x.info.key > y.info.key;
        if (x.line != y.line)
            return x.line < y.line;
        if (x.info.origin.mirror != y.info.origin.mirror)
            return !x.info.origin.mirror;
        if (x.info.origin.rule != y.info.origin.rule)
            return x.info.origin.rule < y.info.origin.rule;
        return x.info.origin.expansion < y.info.origin.expansion;
    });
    cp.rules.reserve(all.size());
    cp.info.reserve(all.size());
    for (auto& p : all) {
        cp.rules.push_back(p.rule);
        cp.info.push_back(p.info);
    }
    return cp;
}

CompiledPolicy compile_block_all() { return {}; }

}  // namespace moat::ctl
