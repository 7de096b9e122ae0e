// Runtime format of an expanded, ranked filter entry and of a packet's classification key.
//
// control/ is the only producer of Entry arrays (see control/compile/policy.h); the dataplane only reads
// them. An Entry array is ordered by rank: index 0 is the most specific entry (DESIGN section 4),
// so the first entry that matches a packet is its winner.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace moat::dp {

enum class Family : std::uint8_t { ipv4, ipv6 };

/// The port a packet arrived on.
enum class Ingress : std::uint8_t { outside, inside };

/// `on=` restriction of a filter entry.
enum class OnPort : std::uint8_t { any, outside, inside };

enum class Action : std::uint8_t { permit, block };

/// What an entry asks of the flow table (`state = keep` on a permit, dataplane/state.h).
enum class StateMode : std::uint8_t {
    none,    ///< stateless: the action alone decides
    create,  ///< a stateful permit in its written direction: a new flow may start here
    reply,   ///< its mirror: only packets of a tracked flow pass
};

/// An IPv4 or IPv6 address in network byte order. IPv4 uses bytes 0..3; bytes 4..15 are zero.
struct Addr {
    std::array<std::uint8_t, 16> bytes{};
    /// Two 64-bit compares on the hot path (the defaulted form calls memcmp: the parser's
    /// antispoof check compares every outside packet with each `me` address).
    friend constexpr bool operator==(const Addr& a, const Addr& b) noexcept {
        if (std::is_constant_evaluated())
            return a.bytes == b.bytes;
        std::uint64_t x[2], y[2];
        std::memcpy(x, a.bytes.data(), 16);
        std::memcpy(y, b.bytes.data(), 16);
        return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
    }
};

/// Number of address bits of a family: 32 or 128.
constexpr unsigned addr_bits(Family f) noexcept { return f == Family::ipv4 ? 32 : 128; }

/// Zeroes every bit of `a` after the first `len` bits.
constexpr Addr mask_addr(Addr a, unsigned len) noexcept {
    for (unsigned i = 0; i < 16; ++i) {
        const unsigned keep = len >= 8 * (i + 1) ? 8 : (len > 8 * i ? len - 8 * i : 0);
        a.bytes[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xffu << (8 - keep));
    }
    return a;
}

/// True when `a` lies in the prefix `p`/`len` (`p` already masked to `len` bits).
constexpr bool prefix_contains(const Addr& p, unsigned len, const Addr& a) noexcept {
    return mask_addr(a, len) == p;
}

/// Inclusive port range, host byte order.
struct PortRange {
    std::uint16_t lo = 0;
    std::uint16_t hi = 65535;
    friend constexpr bool operator==(const PortRange&, const PortRange&) = default;
};

inline constexpr std::uint16_t kAnyProto = 0x100;  ///< Entry::proto when no protocol is given.
inline constexpr std::int16_t kAnyIcmp = -1;       ///< Entry::icmp_type/code when not given.
inline constexpr std::uint32_t kNoPayload = std::numeric_limits<std::uint32_t>::max();

/// Rank of the winning entry (its index in the ranked array), or kNoMatch.
using Rank = std::uint32_t;
inline constexpr Rank kNoMatch = std::numeric_limits<Rank>::max();

/// One expanded filter entry (one direction, one address family, one `me` address).
struct Entry {
    Addr src;                       ///< masked to src_len bits
    Addr dst;                       ///< masked to dst_len bits
    std::uint8_t src_len = 0;       ///< prefix length in bits
    std::uint8_t dst_len = 0;
    Family family = Family::ipv4;
    OnPort on = OnPort::any;
    Action action = Action::block;
    bool sport_any = true;          ///< no source port constraint
    bool dport_any = true;
    std::uint16_t proto = kAnyProto;  ///< IP protocol number, or kAnyProto
    PortRange sport;                ///< meaningful when !sport_any (then proto is TCP/UDP/SCTP)
    PortRange dport;
    std::int16_t icmp_type = kAnyIcmp;  ///< given only with ICMP / ICMPv6
    std::int16_t icmp_code = kAnyIcmp;
    std::uint32_t payload = kNoPayload;  ///< pattern id, or kNoPayload for a header-only entry
    StateMode state = StateMode::none;
};

/// What the classifier knows about one packet. Ports and ICMP fields are host byte order.
struct PacketKey {
    Addr src;
    Addr dst;
    Family family = Family::ipv4;
    Ingress ingress = Ingress::outside;
    std::uint8_t proto = 0;
    bool has_ports = false;   ///< TCP/UDP/SCTP header present: sport/dport are valid
    bool has_icmp = false;    ///< ICMP/ICMPv6 header present: icmp_type/code are valid
    std::uint16_t sport = 0;
    std::uint16_t dport = 0;
    std::uint8_t icmp_type = 0;
    std::uint8_t icmp_code = 0;

    friend bool operator==(const PacketKey&, const PacketKey&) = default;
};

}  // namespace moat::dp
