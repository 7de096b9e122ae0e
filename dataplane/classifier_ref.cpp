#include "dataplane/classifier_ref.h"

namespace moat::dp {

namespace {

bool on_matches(OnPort on, Ingress in) noexcept {
    switch (on) {
    case OnPort::any: return true;
    case OnPort::outside: return in == Ingress::outside;
    case OnPort::inside: return in == Ingress::inside;
    }
    return false;
}

bool in_range(PortRange r, std::uint16_t p) noexcept { return r.lo <= p && p <= r.hi; }

}  // namespace

bool header_matches(const Entry& r, const PacketKey& k) noexcept {
    if (r.family != k.family || !on_matches(r.on, k.ingress))
        return false;
    if (!prefix_contains(r.src, r.src_len, k.src) || !prefix_contains(r.dst, r.dst_len, k.dst))
        return false;
    if (r.proto != kAnyProto && r.proto != k.proto)
        return false;
    // A port constraint needs ports: a packet without a transport header never satisfies it.
    if (!r.sport_any && !(k.has_ports && in_range(r.sport, k.sport)))
        return false;
    if (!r.dport_any && !(k.has_ports && in_range(r.dport, k.dport)))
        return false;
    if (r.icmp_type != kAnyIcmp && !(k.has_icmp && r.icmp_type == k.icmp_type))
        return false;
    if (r.icmp_code != kAnyIcmp && !(k.has_icmp && r.icmp_code == k.icmp_code))
        return false;
    return true;
}

Rank classify_ref(std::span<const Entry> ranked, const PacketKey& k) noexcept {
    for (std::size_t i = 0; i < ranked.size(); ++i)
        if (ranked[i].payload == kNoPayload && header_matches(ranked[i], k))
            return static_cast<Rank>(i);
    return kNoMatch;
}

Rank classify_ref_any(std::span<const Entry> ranked, const PacketKey& k) noexcept {
    for (std::size_t i = 0; i < ranked.size(); ++i)
        if (header_matches(ranked[i], k))
            return static_cast<Rank>(i);
    return kNoMatch;
}

}  // namespace moat::dp
