// Packet parsing (DESIGN section 5): Ethernet, up to two VLAN tags (is_vlan_tag), IPv4 (IHL, total length,
// options), IPv6 (a bounded extension-header walk), TCP/UDP/SCTP ports, ICMP/ICMPv6 type and code.
//
// The parser never reads outside the frame it is given. A packet it cannot judge safely is marked
// for dropping with a reason; it is never forwarded unfiltered.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>
#include <span>
#include <vector>

#include "dataplane/counters.h"
#include "dataplane/rule.h"

namespace moat::dp {

inline constexpr unsigned kMaxVlanTags = 2;

/// IPv6 extension headers the parser reads past (the protocol after them is what filters see).
inline constexpr std::uint8_t kIp6HopByHop = 0, kIp6Routing = 43, kIp6Fragment = 44, kIp6DestOpts = 60,
                              kIp6Mobility = 135, kIp6Hip = 139, kIp6Shim6 = 140;

/// The name of an IPv6 extension header the parser reads past, or null for any other protocol.
constexpr const char* ipv6_extension_header(std::uint8_t proto) noexcept {
    switch (proto) {
    case kIp6HopByHop: return "Hop-by-Hop Options";
    case kIp6Routing: return "Routing";
    case kIp6Fragment: return "Fragment";
    case kIp6DestOpts: return "Destination Options";
    case kIp6Mobility: return "Mobility";
    case kIp6Hip: return "HIP";
    case kIp6Shim6: return "Shim6";
    default: return nullptr;
    }
}

/// EtherTypes of VLAN tags, which the parser looks through: 802.1Q, 802.1ad, and the 0x9100,
/// 0x9200 and 0x9300 of Q-in-Q before 802.1ad (IP inside them is filtered like any other).
constexpr bool is_vlan_tag(std::uint16_t ether_type) noexcept {
    return ether_type == 0x8100 || ether_type == 0x88a8 || ether_type == 0x9100 || ether_type == 0x9200 ||
           ether_type == 0x9300;
}
/// IPv6 extension headers walked before the transport header; a longer chain is dropped.
inline constexpr unsigned kMaxExtHeaders = 8;

/// The parts of a policy the parser needs. Built by control, read by workers.
struct ParsePolicy {
    std::vector<std::uint16_t> non_ip;  ///< EtherTypes (host order) forwarded without filtering
    bool ip_options_allow = false;
    bool antispoof = true;
    bool fragments_track = true;  ///< false: `fragments = drop`
    std::vector<Addr> me_v4;
    std::vector<Addr> me_v6;
};

/// A fragment (not an atomic one: those are ordinary packets).
struct FragmentInfo {
    bool present = false;
    bool more = false;        ///< more fragments follow
    std::uint8_t proto = 0;   ///< IPv4 protocol; IPv6: the fragment header's next header
    std::uint32_t id = 0;
    std::uint32_t begin = 0;  ///< bytes of the fragmentable part it holds, [begin, end)
    std::uint32_t end = 0;
    FragDrop why = FragDrop::none;  ///< set with DropReason::fragment
};

/// What the parser learnt about one packet.
struct PacketMeta {
    PacketKey key;
    FragmentInfo frag;  ///< a later fragment (begin > 0) has no ports: the fragment table judges it
    DropReason drop = DropReason::none;  ///< set: drop without classifying
    bool bypass = false;                 ///< a permitted non-IP EtherType: forward unfiltered
    std::uint16_t payload_offset = 0;    ///< L4 payload, from the start of the frame
    std::uint16_t payload_length = 0;
};

/// Parses the `len` bytes of one frame at `frame` that arrived on `in`. Any thread; pure.
void parse_frame(const std::uint8_t* frame, std::uint32_t len, Ingress in, const ParsePolicy& pol,
                 PacketMeta& out) noexcept;

/// Parses a burst. Worker only; `out.size() >= pkts.size()`. Multi-segment mbufs are parsed
/// from a linear copy (at most kMaxFrame bytes; longer frames are malformed). Returns how many
/// of the packets are fragments (FragmentTable::settle has work only when there are some).
std::size_t parse_burst(std::span<rte_mbuf* const> pkts, Ingress in, const ParsePolicy& pol,
                        std::span<PacketMeta> out) noexcept;

/// The longest frame: an IPv4 or IPv6 packet of 65535 bytes plus Ethernet and two VLAN tags.
inline constexpr std::uint32_t kMaxFrame = 65535 + 40 + 14 + 8;

}  // namespace moat::dp
