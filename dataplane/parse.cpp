#include "dataplane/parse.h"

#include <rte_prefetch.h>

#include <algorithm>
#include <cstring>

namespace moat::dp {

namespace {

std::uint16_t be16(const std::uint8_t* p) noexcept { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

std::uint32_t be32(const std::uint8_t* p) noexcept {
    return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
           static_cast<std::uint32_t>(p[2]) << 8 | p[3];
}

/// Drop with a reason; the key stays as far as it was parsed.
void drop(PacketMeta& m, DropReason r) noexcept { m.drop = r; }

void drop_fragment(PacketMeta& m, FragDrop why) noexcept {
    m.drop = DropReason::fragment;
    m.frag.why = why;
}

/// A header cut short: malformed in a whole packet, a tiny fragment in a first fragment (whose
/// datagram goes on in later fragments that nobody can judge without it).
void truncated(PacketMeta& m) noexcept {
    if (m.frag.present)
        drop_fragment(m, FragDrop::tiny);
    else
        drop(m, DropReason::malformed);
}

/// Records the fragment fields; false (dropped) when the fragment is malformed or may not pass
/// whatever its datagram's verdict. `len`: the bytes of the fragmentable part it holds.
bool note_fragment(PacketMeta& m, const ParsePolicy& pol, std::uint8_t proto, std::uint32_t id, std::uint32_t offset,
                   bool more, std::uint32_t len) noexcept {
    if (!pol.fragments_track) {
        drop_fragment(m, FragDrop::all);
        return false;
    }
    // Every fragment but the last holds a multiple of 8 bytes; nothing reaches past 65535.
    if ((more && len % 8 != 0) || offset + len > 65535 || (more && len == 0)) {
        drop(m, DropReason::malformed);
        return false;
    }
    m.frag = {true, more, proto, id, offset, offset + len, FragDrop::none};
    m.key.proto = proto;
    if (proto == kProtoTcp && offset == 8) {  // could rewrite the TCP flags (RFC 3128)
        drop_fragment(m, FragDrop::tcp_offset1);
        return false;
    }
    return true;
}

/// The transport header at `l4` (`n` bytes up to the end of the IP payload, `base` the offset of
/// `l4` in the frame).
void parse_l4(const std::uint8_t* l4, std::uint32_t n, std::uint32_t base, std::uint8_t proto, Family fam,
              PacketMeta& m) noexcept {
    auto& k = m.key;
    k.proto = proto;
    std::uint32_t hdr = 0;
    switch (proto) {
    case kProtoTcp: {
        if (n < 20)
            return truncated(m);
        hdr = (l4[12] >> 4) * 4u;
        if (hdr < 20)
            return drop(m, DropReason::malformed);
        if (hdr > n)
            return truncated(m);
        break;
    }
    case kProtoUdp: {
        if (n < 8)
            return truncated(m);
        const std::uint16_t ulen = be16(l4 + 4);
        // A first fragment holds only the start of the datagram the UDP length counts.
        if (ulen < 8 || (ulen > n && !m.frag.present))
            return drop(m, DropReason::malformed);
        hdr = 8;
        n = std::min<std::uint32_t>(ulen, n);
        break;
    }
    case kProtoSctp:
        if (n < 12)
            return truncated(m);
        hdr = 12;
        break;
    case kProtoIcmp:
    case kProtoIcmpv6:
        // ICMP is only ICMP in its own family; elsewhere it is an opaque protocol number.
        if ((proto == kProtoIcmp) != (fam == Family::ipv4))
            break;
        if (n < 8)
            return truncated(m);
        k.has_icmp = true;
        k.icmp_type = l4[0];
        k.icmp_code = l4[1];
        hdr = 8;
        break;
    default: break;
    }
    if (proto_has_ports(proto)) {
        k.has_ports = true;
        k.sport = be16(l4);
        k.dport = be16(l4 + 2);
    }
    m.l4_offset = static_cast<std::uint16_t>(std::min<std::uint32_t>(base, 0xffff));
    m.payload_offset = static_cast<std::uint16_t>(std::min<std::uint32_t>(base + hdr, 0xffff));
    m.payload_length = static_cast<std::uint16_t>(std::min<std::uint32_t>(n - hdr, 0xffff));
}

/// Walks IPv4 options (RFC 791): EOL ends them, NOP is one byte, every other option carries a
/// length of at least 2 that must fit.
bool ipv4_options_valid(const std::uint8_t* o, std::uint32_t n) noexcept {
    for (std::uint32_t i = 0; i < n;) {
        if (o[i] == 0)
            return true;
        if (o[i] == 1) {
            ++i;
            continue;
        }
        if (i + 1 >= n || o[i + 1] < 2 || o[i + 1] > n - i)
            return false;
        i += o[i + 1];
    }
    return true;
}

void parse_ipv4(const std::uint8_t* ip, std::uint32_t n, std::uint32_t base, const ParsePolicy& pol,
                PacketMeta& m) noexcept {
    if (n < 20 || (ip[0] >> 4) != 4)
        return drop(m, DropReason::malformed);
    const std::uint32_t ihl = (ip[0] & 0x0f) * 4u;
    const std::uint32_t total = be16(ip + 2);
    if (ihl < 20 || ihl > n || total < ihl || total > n)
        return drop(m, DropReason::malformed);
    auto& k = m.key;
    k.family = Family::ipv4;
    std::memcpy(k.src.bytes.data(), ip + 12, 4);
    std::memcpy(k.dst.bytes.data(), ip + 16, 4);
    k.proto = ip[9];
    if (ihl > 20) {
        if (!pol.ip_options_allow)
            return drop(m, DropReason::ip_options);
        if (!ipv4_options_valid(ip + 20, ihl - 20))
            return drop(m, DropReason::malformed);
    }
    const std::uint16_t frag = be16(ip + 6);
    if ((frag & 0x3fff) != 0) {  // more-fragments or an offset: a fragment (atomic ones pass)
        const std::uint32_t offset = (frag & 0x1fffu) * 8u;
        if (!note_fragment(m, pol, ip[9], be16(ip + 4), offset, (frag & 0x2000) != 0, total - ihl) || offset > 0)
            return;  // a later fragment has no transport header: the fragment table judges it
    }
    parse_l4(ip + ihl, total - ihl, base + ihl, ip[9], Family::ipv4, m);
}

void parse_ipv6(const std::uint8_t* ip, std::uint32_t n, std::uint32_t base, const ParsePolicy& pol,
                PacketMeta& m) noexcept {
    if (n < 40 || (ip[0] >> 4) != 6)
        return drop(m, DropReason::malformed);
    const std::uint32_t end = 40u + be16(ip + 4);
    if (end > n)
        return drop(m, DropReason::malformed);
    auto& k = m.key;
    k.family = Family::ipv6;
    std::memcpy(k.src.bytes.data(), ip + 8, 16);
    std::memcpy(k.dst.bytes.data(), ip + 24, 16);
    std::uint8_t nh = ip[6];
    std::uint32_t off = 40;
    bool seen_fragment = false;
    for (unsigned hops = 0;; ++hops) {
        if (hops > kMaxExtHeaders)
            return drop(m, DropReason::malformed);
        switch (nh) {
        case kIp6HopByHop:
            if (hops != 0)  // RFC 8200: only directly after the IPv6 header
                return drop(m, DropReason::malformed);
            [[fallthrough]];
        case kIp6Routing:
        case kIp6DestOpts:
        case kIp6Mobility:
        case kIp6Hip:
        case kIp6Shim6: {
            if (off + 2 > end)
                return truncated(m);
            const std::uint32_t len = (ip[off + 1] + 1u) * 8u;
            if (off + len > end)
                return truncated(m);
            // Routing header type 0 is source routing, deprecated for its abuse (RFC 5095).
            if (nh == kIp6Routing && ip[off + 2] == 0)
                return drop(m, DropReason::malformed);
            nh = ip[off];
            off += len;
            continue;
        }
        case kIp6Fragment: {
            if (seen_fragment || off + 8 > end)
                return drop(m, DropReason::malformed);
            seen_fragment = true;
            const std::uint16_t fo = be16(ip + off + 2);
            if ((fo & 0xfff9) != 0) {  // an offset or more-fragments: a fragment (atomic ones pass)
                const std::uint32_t offset = fo & 0xfff8u;
                if (!note_fragment(m, pol, ip[off], be32(ip + off + 4), offset, (fo & 1) != 0, end - (off + 8)) ||
                    offset > 0)
                    return;  // a later fragment: the fragment table judges it
                // A first fragment: the rest of the header chain and the transport header must
                // be in it (RFC 7112), or it is a tiny fragment.
            }
            nh = ip[off];
            off += 8;
            continue;
        }
        default:
            k.proto = nh;
            parse_l4(ip + off, end - off, base + off, nh, Family::ipv6, m);
            return;
        }
    }
}

/// The short path: an untagged IPv4 frame without options, not a fragment, with a whole TCP or
/// UDP header and lengths that agree. Fills `m` as parse_frame_in_full does and returns true;
/// false, with `m` untouched, for anything else (parse_frame_in_full then judges it, so every
/// doubt here only costs time). `m` is zeroed and has its ingress.
[[gnu::always_inline]] inline bool parse_common(const std::uint8_t* p, std::uint32_t len, PacketMeta& m) noexcept {
    constexpr std::uint32_t kL3 = 14;
    if (len < kL3 + 20 + 8)
        return false;
    // EtherType 0x0800 and version 4 with IHL 5, in one compare of bytes 12 .. 14.
    std::uint32_t head;
    std::memcpy(&head, p + 12, 4);
    if ((head & 0x00ffffff) != 0x00450008)
        return false;
    const std::uint8_t* ip = p + kL3;
    const std::uint32_t total = be16(ip + 2);
    const std::uint8_t proto = ip[9];
    // No more-fragments flag and no offset (DF may be set); the datagram fits in the frame.
    if ((be16(ip + 6) & 0x3fff) != 0 || total < 20 + 8 || total > len - kL3)
        return false;
    const std::uint8_t* l4 = ip + 20;
    std::uint32_t n = total - 20, hdr;
    if (proto == kProtoUdp) {
        const std::uint32_t ulen = be16(l4 + 4);
        if (ulen < 8 || ulen > n)
            return false;
        n = ulen;
        hdr = 8;
    } else if (proto == kProtoTcp) {
        if (n < 20)  // before reading the data offset: byte 12 may lie past the frame
            return false;
        hdr = (l4[12] >> 4) * 4u;
        if (hdr < 20 || hdr > n)
            return false;
    } else {
        return false;
    }
    auto& k = m.key;
    std::memcpy(k.src.bytes.data(), ip + 12, 4);
    std::memcpy(k.dst.bytes.data(), ip + 16, 4);
    k.proto = proto;
    k.has_ports = true;
    k.sport = be16(l4);
    k.dport = be16(l4 + 2);
    m.l4_offset = kL3 + 20;
    m.payload_offset = static_cast<std::uint16_t>(kL3 + 20 + hdr);
    m.payload_length = static_cast<std::uint16_t>(n - hdr);
    return true;
}

}  // namespace

void parse_frame(const std::uint8_t* p, std::uint32_t len, Ingress in, const ParsePolicy& pol,
                 PacketMeta& m) noexcept {
    m = PacketMeta{};
    m.key.ingress = in;
    if (parse_common(p, len, m)) [[likely]] {
        if (is_spoofed(pol, m.key, in))
            m.drop = DropReason::spoofed;
        return;
    }
    parse_frame_in_full(p, len, in, pol, m);
}

void parse_frame_in_full(const std::uint8_t* p, std::uint32_t len, Ingress in, const ParsePolicy& pol,
                         PacketMeta& m) noexcept {
    m = PacketMeta{};
    m.key.ingress = in;
    if (len < 14)
        return drop(m, DropReason::malformed);
    std::uint16_t type = be16(p + 12);
    std::uint32_t off = 14;
    for (unsigned tags = 0; is_vlan_tag(type); ++tags) {
        if (tags == kMaxVlanTags || off + 4 > len)
            return drop(m, DropReason::malformed);
        type = be16(p + off + 2);
        off += 4;
    }
    if (type == kEtherIpv4)
        parse_ipv4(p + off, len - off, off, pol, m);
    else if (type == kEtherIpv6)
        parse_ipv6(p + off, len - off, off, pol, m);
    else if (std::find(pol.non_ip.begin(), pol.non_ip.end(), type) != pol.non_ip.end())
        m.bypass = true;
    else
        drop(m, DropReason::non_ip);
    if (m.drop != DropReason::none || m.bypass)
        return;
    if (is_spoofed(pol, m.key, in))
        drop(m, DropReason::spoofed);
}

std::size_t parse_burst(std::span<rte_mbuf* const> pkts, Ingress in, const ParsePolicy& pol,
                        std::span<PacketMeta> out) noexcept {
    std::size_t fragments = 0;
    // The frames' first bytes a few packets ahead: a NIC writes them to memory (or the last
    // level cache), and the header lines of a burst are independent loads that can overlap.
    constexpr std::size_t kAhead = 4;
    for (std::size_t i = 0; i < std::min(kAhead, pkts.size()); ++i)
        rte_prefetch0(rte_pktmbuf_mtod(pkts[i], const void*));
    for (std::size_t i = 0; i < pkts.size(); ++i) {
        if (i + kAhead < pkts.size())
            rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kAhead], const void*));
        const rte_mbuf* m = pkts[i];
        // A frame within the MTU in one segment: the usual case, one predictable compare more.
        if (m->nb_segs == 1 && m->pkt_len <= pol.max_frame) [[likely]] {
            parse_frame(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len, in, pol, out[i]);
            fragments += out[i].frag.present;
            continue;
        }
        // A chained mbuf (jumbo frames): headers may span segments, so parse a linear copy. Rare,
        // so a copy of the whole frame is cheaper to get right than a segment-aware parser.
        static thread_local std::uint8_t linear[kMaxFrame];
        if (m->pkt_len > kMaxFrame || m->pkt_len > pol.max_frame) {
            out[i] = PacketMeta{};
            out[i].drop = DropReason::malformed;
            continue;
        }
        const void* p = rte_pktmbuf_read(m, 0, m->pkt_len, linear);
        parse_frame(static_cast<const std::uint8_t*>(p), m->pkt_len, in, pol, out[i]);
        fragments += out[i].frag.present;
    }
    return fragments;
}

}  // namespace moat::dp
