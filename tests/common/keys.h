// Packet keys from trie dimensions (dataplane/trie.h's layout), as the parser would produce them:
// for the differential tests and the fuzz targets that aim packets at a policy's filters.
#pragma once

#include <cstdint>

#include "dataplane/entry.h"

namespace moat::test {

inline dp::PacketKey key_of(const std::uint32_t* d, dp::Family f) {
    using namespace dp;
    PacketKey k;
    k.family = f;
    const unsigned words = f == Family::ipv4 ? 1 : 4;
    for (unsigned w = 0; w < words; ++w)
        for (unsigned b = 0; b < 4; ++b) {
            k.src.bytes[4 * w + b] = static_cast<std::uint8_t>(d[w] >> (24 - 8 * b));
            k.dst.bytes[4 * w + b] = static_cast<std::uint8_t>(d[words + w] >> (24 - 8 * b));
        }
    const std::uint32_t p1 = d[2 * words], p2 = d[2 * words + 1];
    k.proto = static_cast<std::uint8_t>(d[2 * words + 2]);
    k.ingress = d[2 * words + 3] ? Ingress::inside : Ingress::outside;
    if (k.proto == 6 || k.proto == 17 || k.proto == 132) {
        k.has_ports = true;
        k.sport = static_cast<std::uint16_t>(p1);
        k.dport = static_cast<std::uint16_t>(p2);
    } else if ((k.proto == 1 && f == Family::ipv4) || (k.proto == 58 && f == Family::ipv6)) {
        k.has_icmp = true;
        k.icmp_type = static_cast<std::uint8_t>(p1);
        k.icmp_code = static_cast<std::uint8_t>(p2);
    }
    return k;
}

}  // namespace moat::test
