// DPDK's rte_acl built from Moat's ranked entries of one address family: the anchor the
// classifier is measured against, and a second, independent oracle in the tests.
//
// Fields: protocol (1 byte, bitmask), source and destination (one 4-byte mask for IPv4, four for
// IPv6, a word each), p1 and p2 (2-byte ranges: ports, or ICMP type and code, as
// dataplane/trie.h folds them) and the arrival port (a 4-byte mask, value 0 or 1). Keys are in
// network byte order, rules in host order; an entry's userdata is its rank + 1 (0 means no match)
// and its priority falls with its rank.
#pragma once

#include <rte_acl.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dataplane/entry.h"

namespace moat::perf {

/// A packet as rte_acl reads it; IPv4 uses the first word of each address.
struct AclKey {
    std::uint8_t proto;
    std::uint8_t pad[3];
    std::uint32_t src[4];  ///< network byte order
    std::uint32_t dst[4];
    std::uint16_t p1;
    std::uint16_t p2;
    std::uint32_t ingress;
};

AclKey acl_key(const dp::PacketKey& k) noexcept;

class AclAnchor {
public:
    /// Builds a context from the header-only entries of `family` in `ranked` with the best
    /// classify algorithm this process may use. Needs EAL. On failure returns nullptr and sets
    /// `error`.
    static std::unique_ptr<AclAnchor> build(std::span<const dp::Entry> ranked, std::string& error,
                                            dp::Family family = dp::Family::ipv4);
    ~AclAnchor();

    /// results[i] = rank of data[i]'s winner, or dp::kNoMatch.
    void classify(const std::uint8_t* const* data, dp::Rank* results, std::uint32_t n) const;

    const char* algorithm() const noexcept { return alg_name_; }
    double build_seconds() const noexcept { return build_seconds_; }
    std::size_t memory_bytes() const noexcept { return memory_bytes_; }

private:
    AclAnchor() = default;
    rte_acl_ctx* ctx_ = nullptr;
    const char* alg_name_ = "";
    double build_seconds_ = 0;
    std::size_t memory_bytes_ = 0;
};

}  // namespace moat::perf
