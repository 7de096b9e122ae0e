// Packet parsing (DESIGN section 5): Ethernet, up to two VLAN tags (is_vlan_tag), IPv4 (IHL, total length,
// options), IPv6 (a bounded extension-header walk), TCP/UDP/SCTP ports, ICMP/ICMPv6 type and code.
//
// The parser never reads outside the frame it is given. A packet it cannot judge safely is marked
// for dropping with a reason; it is never forwarded unfiltered.
#pragma once

#include <rte_mbuf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "dataplane/counters.h"
#include "dataplane/entry.h"
#include "dataplane/wire.h"

namespace moat::dp {

inline constexpr unsigned kMaxVlanTags = 2;

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
    /// Frames longer than this (bytes from the Ethernet header, no FCS) are dropped as malformed:
    /// a giant beyond the ports' MTU (frame_limit() of the `mtu` key), whatever the PMD let in.
    std::uint32_t max_frame = 65535 + 40 + 14 + 8;
};

/// True when `a` (of family `fam`) is one of the `me` addresses of `pol`. Any thread. Always
/// inlined, as it was when only the parser had it: no call on the parser's path.
[[gnu::always_inline]] inline bool is_me(const ParsePolicy& pol, const Addr& a, Family fam) noexcept {
    if (fam == Family::ipv6)
        return std::find(pol.me_v6.begin(), pol.me_v6.end(), a) != pol.me_v6.end();
    // IPv4: the 4 bytes the parser just stored. A 16-byte compare would load across that store
    // and the zeroing before it, which stalls store forwarding on every outside packet.
    // A plain loop: the usual few addresses cost less than std::any_of's unrolled set-up.
    std::uint32_t v;
    std::memcpy(&v, a.bytes.data(), 4);
    for (const Addr& x : pol.me_v4) {
        std::uint32_t w;
        std::memcpy(&w, x.bytes.data(), 4);
        if (w == v)
            return true;
    }
    return false;
}

/// The antispoof drop (DropReason::spoofed): with `antispoof` on, a packet arriving on the
/// outside port with a `me` source. The parser's check, and `moatctl explain`'s. Any thread.
[[gnu::always_inline]] inline bool is_spoofed(const ParsePolicy& pol, const PacketKey& k, Ingress in) noexcept {
    return pol.antispoof && in == Ingress::outside && is_me(pol, k.src, k.family);
}

/// A fragment (not an atomic one: those are ordinary packets).
struct FragmentInfo {
    bool present = false;
    bool more = false;        ///< more fragments follow
    std::uint8_t proto = 0;   ///< IPv4 protocol; IPv6: the fragment header's next header
    std::uint32_t id = 0;
    std::uint32_t begin = 0;  ///< bytes of the fragmentable part it holds, [begin, end)
    std::uint32_t end = 0;
    FragDrop why = FragDrop::none;  ///< set with DropReason::fragment

    friend bool operator==(const FragmentInfo&, const FragmentInfo&) = default;
};

/// What the parser learnt about one packet.
struct PacketMeta {
    PacketKey key;
    FragmentInfo frag;  ///< a later fragment (begin > 0) has no ports: the fragment table judges it
    DropReason drop = DropReason::none;  ///< set: drop without classifying
    bool bypass = false;                 ///< a permitted non-IP EtherType: forward unfiltered
    std::uint16_t l4_offset = 0;         ///< the transport header, from the start of the frame
    std::uint16_t payload_offset = 0;    ///< L4 payload, from the start of the frame
    std::uint16_t payload_length = 0;

    friend bool operator==(const PacketMeta&, const PacketMeta&) = default;
};

/// Parses the `len` bytes of one frame at `frame` that arrived on `in`. Any thread; pure.
/// The common packet (untagged IPv4 without options, not a fragment, a whole TCP or UDP header)
/// takes a short path of its own; everything else, and every packet the short path doubts,
/// parse_frame_in_full.
void parse_frame(const std::uint8_t* frame, std::uint32_t len, Ingress in, const ParsePolicy& pol,
                 PacketMeta& out) noexcept;

/// The parser without the short path: what parse_frame must equal for every frame (tests and
/// the packet fuzzer hold it to that).
void parse_frame_in_full(const std::uint8_t* frame, std::uint32_t len, Ingress in, const ParsePolicy& pol,
                         PacketMeta& out) noexcept;

/// Parses a burst. Worker only; `out.size() >= pkts.size()`. Multi-segment mbufs are parsed
/// from a linear copy; frames longer than `pol.max_frame` (at most kMaxFrame) are malformed. Returns how many
/// of the packets are fragments (FragmentTable::settle has work only when there are some).
std::size_t parse_burst(std::span<rte_mbuf* const> pkts, Ingress in, const ParsePolicy& pol,
                        std::span<PacketMeta> out) noexcept;

/// The longest frame: an IPv4 or IPv6 packet of 65535 bytes plus Ethernet and two VLAN tags.
inline constexpr std::uint32_t kMaxFrame = 65535 + 40 + 14 + 8;

}  // namespace moat::dp
