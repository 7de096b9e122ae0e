// The classifier: a multi-bit trie over the packet key whose leaves hold rules in rank order.
//
// Key. A packet of one family is a vector of 32-bit dimensions (host byte order):
//   IPv4: [src, dst, p1, p2, proto, ingress]                            (kDimsV4 = 6)
//   IPv6: [src0..src3, dst0..dst3, p1, p2, proto, ingress]                (kDimsV6 = 12)
// p1/p2 are the source and destination ports for TCP, UDP and SCTP, the ICMP type and code for
// ICMP (ICMPv6 for IPv6), and 0 otherwise. That folding is exact: a rule with a port range
// names TCP, UDP or SCTP and a rule with an ICMP type names ICMP, so neither can match a packet
// of another protocol through the shared dimensions. Every filter entry is a product of one
// inclusive range per dimension (a prefix is a range; IPv6 prefixes are ranges on 32-bit words).
//
// Structure. The entries of one family are split into at most kMaxTrees groups (entries narrow
// in the source address, narrow in the destination, the rest; the rest split further by the
// port they are narrow in where that pays), so that the entries wide in the dimension a trie
// cuts are not copied into every branch. Each group is one trie: an inner node
// extracts `bits` bits of one dimension and indexes its slots with them; a slot refers to a
// node, a leaf or nothing. Slots whose entry sets are equal share one subtree. A leaf holds the
// entries that may match any packet reaching it, in rank order, so the first entry of a leaf
// that matches is the leaf's best; the best over the trees is the packet's winner. A leaf checks
// every dimension in which some entry does not cover the whole region the path to the leaf
// allows, so the trie never needs to be exact, only complete.
//
// Encoding. Everything lives in one 64-byte aligned array of 32-bit words (`words`), read only.
// A ref is the word offset of a node or a leaf. Both start with a header and a slot index, so
// one step works on either: a leaf's header indexes a slot that holds the leaf's own ref. A walk
// therefore takes exactly `tree_steps` steps for every packet of a burst, whatever depth its
// leaf is at, and needs no branch to ask whether it has arrived:
//   node  : w[0] = dim | shift << 8 | bits << 16   (index = key[dim] bits shift .. shift + bits - 1:
//           one BMI1 bextr with the control word w[0] >> 8, see slot_index)
//           w[1] = word offset of its first slot; the 2^bits slots hold refs
//   leaf  : w[0] = 0; w[1] = offset + 2; w[2] = its own ref; w[3] = n; w[4] and w[5] = the
//           masks of its checked dimensions with 32-bit and with 16-bit lanes; w[6 .. 6+n) =
//           ranks; then the entries in blocks of 16 (the last may be shorter, of m entries): for
//           each dimension of w[4], in increasing order, lo[16 or m] then span[16 or m] (32-bit
//           words; span = hi - lo: v is in [lo, hi] when v - lo <= span, one subtraction and one
//           unsigned compare); then for each dimension of w[5] the same with 16-bit halves.
// A leaf checks the dimensions in which one of its entries does not cover the whole region of
// packets that reach it (a subset of its tree's dimensions, those in which some entry of the
// tree is narrower than the whole domain); the others admit every packet that gets there. On
// ClassBench this leaves about 3 of 4.5 dimensions per leaf. A checked dimension whose region is
// at most 2^16 wide (always the ports, the protocol and the arrival port; an address once the
// path has fixed all but 16 of its bits) is checked modulo 2^16 in 16-bit lanes: every key that
// reaches the leaf and every entry (clamped to the region) lie in one window of 2^16 values, so
// v - lo modulo 2^16 <= span exactly when lo <= v <= lo + span. Half the bytes, the same two
// operations. Offset 0 holds the empty leaf (n = 0):
// kEmptyRef stands for "no entries here". The array ends with 64 bytes of zeros so that
// 16-lane loads of a short last block never leave it (lanes past n are masked out).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "dataplane/entry.h"

namespace moat::dp {

inline constexpr unsigned kDimsV4 = 6;
inline constexpr unsigned kDimsV6 = 12;
inline constexpr unsigned kMaxDims = kDimsV6;
inline constexpr unsigned kMaxTrees = 5;
inline constexpr std::uint32_t kEmptyRef = 0;  ///< the empty leaf at offset 0
inline constexpr std::uint32_t kLeafN = 3;       ///< leaf word: its number of entries
inline constexpr std::uint32_t kLeafWide = 4;    ///< leaf word: dimensions checked in 32-bit lanes
inline constexpr std::uint32_t kLeafNarrow = 5;  ///< leaf word: dimensions checked in 16-bit lanes
inline constexpr std::uint32_t kLeafHeaderWords = 6;  ///< the ranks follow
inline constexpr std::uint32_t kBlock = 16;  ///< entries per leaf block (one 512-bit vector of lanes)

/// Words of a leaf block of `m` entries with the checked dimensions `wide` (32-bit lanes) and
/// `narrow` (16-bit lanes).
inline std::uint32_t leaf_block_words(std::uint32_t wide, std::uint32_t narrow, std::uint32_t m) noexcept {
    return (2 * static_cast<std::uint32_t>(__builtin_popcount(wide)) + static_cast<std::uint32_t>(__builtin_popcount(narrow))) * m;
}

struct AlignedFree {
    void operator()(std::uint32_t* p) const noexcept;
};

/// Zeroed, 64-byte aligned storage for `bytes` of trie words; large tries get 2 MB alignment
/// and ask for transparent huge pages (fewer TLB misses). nullptr when out of memory.
std::unique_ptr<std::uint32_t[], AlignedFree> allocate_trie_words(std::size_t bytes);

/// The classifier of one address family. Built by control (control/compile/trie_build.h), immutable.
struct Trie {
    unsigned dims = kDimsV4;
    std::vector<std::uint32_t> roots;                  ///< one ref per tree
    std::vector<Rank> best_rank;                       ///< per tree: the best rank it holds
    std::vector<std::uint32_t> tree_steps;             ///< per tree: nodes on its longest path
    std::unique_ptr<std::uint32_t[], AlignedFree> words;
    std::size_t size = 0;                              ///< words in use (without the tail padding)

    std::size_t bytes() const noexcept { return size * sizeof(std::uint32_t); }
};

/// The slot a node with header `h` (trie.h's encoding) takes for the key word `v`: bits
/// shift .. shift + bits - 1 of v. Code compiled for BMI1 (the SIMD scans) extracts them with one
/// bextr, whose control word is h >> 8 as it stands.
inline std::uint32_t slot_index(std::uint32_t v, std::uint32_t h) noexcept {
#ifdef __BMI__
    return __builtin_ia32_bextr_u32(v, h >> 8);
#else
    return (v >> ((h >> 8) & 0xff)) & ((std::uint32_t{1} << (h >> 16)) - 1);
#endif
}

/// A packet's key in trie dimensions.
struct TrieKey {
    std::uint32_t d[kMaxDims];
};

/// Writes the trie key of a packet into `t`: the `dims` words of its family (kDimsV4 or
/// kDimsV6), the rest left as they are. In place and inline: it runs for every classified packet,
/// and a key built in a temporary and copied stalls on store forwarding.
inline void set_trie_key(const PacketKey& k, TrieKey& t) noexcept {
    const auto word = [](const Addr& a, unsigned w) noexcept {
        std::uint32_t v;
        std::memcpy(&v, a.bytes.data() + 4 * w, 4);
        return __builtin_bswap32(v);  // network to host order
    };
    // Each family written out straight: a loop over the address words of either family keeps
    // its count in a register and costs a packet more than the words themselves.
    unsigned d;
    if (k.family == Family::ipv4) {
        t.d[0] = word(k.src, 0);
        t.d[1] = word(k.dst, 0);
        d = 2;
    } else {
        for (unsigned w = 0; w < 4; ++w) {
            t.d[w] = word(k.src, w);
            t.d[4 + w] = word(k.dst, w);
        }
        d = 8;
    }
    t.d[d] = k.has_ports ? k.sport : k.has_icmp ? k.icmp_type : 0;
    t.d[d + 1] = k.has_ports ? k.dport : k.has_icmp ? k.icmp_code : 0;
    t.d[d + 2] = k.proto;
    t.d[d + 3] = k.ingress == Ingress::inside ? 1 : 0;
}

/// The trie key of a packet, unused words zero (tests, `explain`).
inline TrieKey trie_key(const PacketKey& k) noexcept {
    TrieKey t{};
    set_trie_key(k, t);
    return t;
}

/// The range form of a ranked entry, dimension by dimension (the builder's and the tests' view).
void rule_ranges(const Entry& r, std::uint32_t lo[kMaxDims], std::uint32_t hi[kMaxDims]) noexcept;

/// How a leaf is scanned; chosen once at start-up (STYLE 6), never per packet.
enum class LeafScan : std::uint8_t { scalar, avx2, avx512 };

/// The best leaf scanner this CPU runs (MOAT_LEAF_SCAN=scalar or avx2 asks for a lesser one).
LeafScan best_leaf_scan() noexcept;

/// Every leaf scanner this CPU runs, scalar first (tests compare them).
std::vector<LeafScan> supported_leaf_scans();

/// "scalar", "avx2" or "avx512".
const char* leaf_scan_name(LeafScan s) noexcept;

/// Best rank of `keys[i]` under `t` into `ranks[i]` (kNoMatch when nothing matches), for a burst
/// of keys of t's family. The walks of the burst are interleaved to hide memory latency; a key
/// equal to the one before it takes that one's answer without a walk. Any thread; reads `t` only.
void trie_classify(const Trie& t, std::span<const TrieKey> keys, std::span<Rank> ranks, LeafScan scan) noexcept;

/// Single-key form (tests, `explain`).
Rank trie_lookup(const Trie& t, const TrieKey& key, LeafScan scan) noexcept;

}  // namespace moat::dp
