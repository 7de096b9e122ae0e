// Numbers of the wire, named once for the parser, the config grammar and the tools: EtherTypes,
// IP protocol numbers, the IPv6 extension headers the parser reads past, and the defaults of
// the settings that size per-packet work.
#pragma once

#include <cstdint>

namespace moat::dp {

inline constexpr std::uint16_t kEtherIpv4 = 0x0800;
inline constexpr std::uint16_t kEtherIpv6 = 0x86dd;
inline constexpr std::uint16_t kEtherArp = 0x0806;  ///< the default of `non_ip`

/// EtherTypes of VLAN tags, which the parser looks through: 802.1Q, 802.1ad, and the 0x9100,
/// 0x9200 and 0x9300 of Q-in-Q before 802.1ad (IP inside them is filtered like any other).
constexpr bool is_vlan_tag(std::uint16_t ether_type) noexcept {
    return ether_type == 0x8100 || ether_type == 0x88a8 || ether_type == 0x9100 || ether_type == 0x9200 ||
           ether_type == 0x9300;
}

inline constexpr std::uint8_t kProtoIcmp = 1, kProtoTcp = 6, kProtoUdp = 17, kProtoGre = 47, kProtoEsp = 50,
                              kProtoAh = 51, kProtoIcmpv6 = 58, kProtoSctp = 132;

/// Protocols whose packets carry ports (what port filters and the port fields of a key mean).
constexpr bool proto_has_ports(std::uint8_t p) noexcept {
    return p == kProtoTcp || p == kProtoUdp || p == kProtoSctp;
}
constexpr bool proto_is_icmp(std::uint8_t p) noexcept { return p == kProtoIcmp || p == kProtoIcmpv6; }

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

/// `fragment_table`: datagrams in flight remembered per worker.
inline constexpr unsigned kFragmentTableDefault = 8192;
/// `state_table`: flows remembered per worker for `state = keep` (dataplane/state.h).
inline constexpr unsigned kStateTableDefault = 65536;
/// `payload_scan_bytes`: the bytes of a payload a pattern is searched in (one Ethernet MTU).
inline constexpr unsigned kPayloadScanBytesDefault = 1500;

}  // namespace moat::dp
