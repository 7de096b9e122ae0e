#include "dataplane/trie.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include "dataplane/trie_impl.h"

namespace moat::dp {

// The SIMD variants live in trie_avx2.cpp and trie_avx512.cpp, compiled with their own flags.
void trie_classify_avx2(const Trie& t, std::span<const TrieKey> keys, std::span<Rank> ranks) noexcept;
Rank trie_lookup_avx2(const Trie& t, const TrieKey& key) noexcept;
void trie_classify_avx512(const Trie& t, std::span<const TrieKey> keys, std::span<Rank> ranks) noexcept;
Rank trie_lookup_avx512(const Trie& t, const TrieKey& key) noexcept;

void AlignedFree::operator()(std::uint32_t* p) const noexcept { std::free(p); }

std::unique_ptr<std::uint32_t[], AlignedFree> allocate_trie_words(std::size_t bytes) {
    constexpr std::size_t kHuge = std::size_t{2} << 20;
    const std::size_t align = bytes >= kHuge / 2 ? kHuge : 64;
    const std::size_t size = (bytes + align - 1) / align * align;
    void* p = std::aligned_alloc(align, size);
    if (!p)
        return nullptr;
    if (align == kHuge)
        madvise(p, size, MADV_HUGEPAGE);  // advice only: without THP it is ordinary memory
    std::memset(p, 0, size);
    return std::unique_ptr<std::uint32_t[], AlignedFree>(static_cast<std::uint32_t*>(p));
}

namespace {

std::uint32_t be32(const std::uint8_t* b) noexcept {
    return std::uint32_t{b[0]} << 24 | std::uint32_t{b[1]} << 16 | std::uint32_t{b[2]} << 8 | b[3];
}

/// [lo, hi] of a prefix of `len` bits on the 32-bit word `word` of an address.
void prefix_word(const Addr& a, unsigned len, unsigned word, std::uint32_t& lo, std::uint32_t& hi) noexcept {
    const std::uint32_t v = be32(a.bytes.data() + 4 * word);
    const unsigned bits = len <= 32 * word ? 0 : std::min(32u, len - 32 * word);
    const std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t{0} << (32 - bits);
    lo = v & mask;
    hi = lo | ~mask;
}

/// The first entry of a block that admits `k`: v in [lo, hi] is v - lo <= span, in each checked
/// dimension, 32-bit (`wide`) and 16-bit (`narrow`, modulo 2^16).
struct MatchScalar {
    static unsigned first(const std::uint32_t* lanes, std::uint32_t m, std::uint32_t wide, std::uint32_t narrow,
                          const TrieKey& k) noexcept {
        for (std::uint32_t i = 0; i < m; ++i) {
            bool admits = true;
            const std::uint32_t* l = lanes;
            for (std::uint32_t dm = wide; dm && admits; dm &= dm - 1, l += 2 * m)
                admits = k.d[__builtin_ctz(dm)] - l[i] <= l[m + i];
            for (std::uint32_t dm = narrow; dm && admits; dm &= dm - 1, l += m) {
                std::uint16_t lo, span;
                std::memcpy(&lo, reinterpret_cast<const std::uint8_t*>(l) + 2 * i, 2);
                std::memcpy(&span, reinterpret_cast<const std::uint8_t*>(l) + 2 * (m + i), 2);
                admits = static_cast<std::uint16_t>(k.d[__builtin_ctz(dm)] - lo) <= span;
            }
            if (admits)
                return i;
        }
        return kBlock;
    }
};

}  // namespace

void rule_ranges(const Entry& r, std::uint32_t lo[kMaxDims], std::uint32_t hi[kMaxDims]) noexcept {
    unsigned d = 0;
    const unsigned words = r.family == Family::ipv4 ? 1 : 4;
    for (unsigned w = 0; w < words; ++w, ++d)
        prefix_word(r.src, r.src_len, w, lo[d], hi[d]);
    for (unsigned w = 0; w < words; ++w, ++d)
        prefix_word(r.dst, r.dst_len, w, lo[d], hi[d]);
    const auto port_or_icmp = [&](bool any, PortRange p, std::int16_t icmp) {
        if (!any) {
            lo[d] = p.lo, hi[d] = p.hi;
        } else if (icmp != kAnyIcmp) {
            lo[d] = hi[d] = static_cast<std::uint32_t>(icmp);
        } else {
            lo[d] = 0, hi[d] = 0xffff;
        }
        ++d;
    };
    port_or_icmp(r.sport_any, r.sport, r.icmp_type);
    port_or_icmp(r.dport_any, r.dport, r.icmp_code);
    if (r.proto == kAnyProto)
        lo[d] = 0, hi[d] = 0xff;
    else
        lo[d] = hi[d] = r.proto;
    ++d;
    switch (r.on) {
    case OnPort::any: lo[d] = 0, hi[d] = 1; break;
    case OnPort::outside: lo[d] = hi[d] = 0; break;
    case OnPort::inside: lo[d] = hi[d] = 1; break;
    }
}

namespace {

// The SIMD scans' walks extract slot indexes with BMI1 (every CPU with AVX2 has it; checked anyway).
bool cpu_has_avx512() noexcept {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("bmi");
}

bool cpu_has_avx2() noexcept { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi"); }

}  // namespace

LeafScan best_leaf_scan() noexcept {
    const char* force = std::getenv("MOAT_LEAF_SCAN");
    const std::string_view want = force ? force : "";
    if (want == "scalar")
        return LeafScan::scalar;
    if (cpu_has_avx512() && want != "avx2")
        return LeafScan::avx512;
    return cpu_has_avx2() ? LeafScan::avx2 : LeafScan::scalar;
}

std::vector<LeafScan> supported_leaf_scans() {
    std::vector<LeafScan> s{LeafScan::scalar};
    if (cpu_has_avx2())
        s.push_back(LeafScan::avx2);
    if (cpu_has_avx512())
        s.push_back(LeafScan::avx512);
    return s;
}

const char* leaf_scan_name(LeafScan s) noexcept {
    switch (s) {
    case LeafScan::scalar: return "scalar";
    case LeafScan::avx2: return "avx2";
    case LeafScan::avx512: return "avx512";
    }
    return "?";
}

void trie_classify(const Trie& t, std::span<const TrieKey> keys, std::span<Rank> ranks, LeafScan scan) noexcept {
    switch (scan) {
    case LeafScan::avx512: trie_classify_avx512(t, keys, ranks); break;
    case LeafScan::avx2: trie_classify_avx2(t, keys, ranks); break;
    case LeafScan::scalar: classify_all(t, keys, ranks, Scan<MatchScalar>{}); break;
    }
}

Rank trie_lookup(const Trie& t, const TrieKey& key, LeafScan scan) noexcept {
    switch (scan) {
    case LeafScan::avx512: return trie_lookup_avx512(t, key);
    case LeafScan::avx2: return trie_lookup_avx2(t, key);
    case LeafScan::scalar: break;
    }
    return lookup_one(t, key, Scan<MatchScalar>{});
}

}  // namespace moat::dp
