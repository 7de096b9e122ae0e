// The AVX-512 leaf scan: 16 entries per step. For each dimension d, a subtraction of the lanes
// lo[d] and an unsigned compare against span[d] (hi - lo) narrow a 16-bit mask of the entries
// still matching; the lowest set bit left is the leaf's best entry (leaves are in rank order).
// This file alone is compiled with -mavx512f -mavx512bw -mavx512vl; trie.cpp calls it only when
// the CPU has all three.
#include <immintrin.h>

#include "dataplane/trie_impl.h"

namespace moat::dp {

namespace {

/// The leaf's checked dimensions narrow a 16-bit mask of the entries of a block that still
/// match, one subtraction and one compare per dimension: 16 lanes of 32 bits for those of
/// `wide`, 16 lanes of 16 bits (modulo 2^16) for those of `narrow`.
struct MatchAvx512 {
    static unsigned first(const std::uint32_t* lanes, std::uint32_t m, std::uint32_t wide, std::uint32_t narrow,
                          const TrieKey& k) noexcept {
        // A short last block's lanes past its m entries are the next array's or the arena's
        // zero tail: masked out.
        __mmask16 match = static_cast<__mmask16>((1u << m) - 1);
        for (std::uint32_t dm = wide; dm; dm &= dm - 1, lanes += 2 * m) {
            const __m512i key = _mm512_set1_epi32(static_cast<int>(k.d[__builtin_ctz(dm)]));
            const __m512i off = _mm512_sub_epi32(key, _mm512_loadu_si512(lanes));
            match = _mm512_mask_cmp_epu32_mask(match, off, _mm512_loadu_si512(lanes + m), _MM_CMPINT_LE);
        }
        for (std::uint32_t dm = narrow; dm; dm &= dm - 1, lanes += m) {
            const __m256i key = _mm256_set1_epi16(static_cast<short>(k.d[__builtin_ctz(dm)]));
            const auto* half = reinterpret_cast<const std::uint16_t*>(lanes);
            const __m256i off = _mm256_sub_epi16(key, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(half)));
            match = _mm256_mask_cmp_epu16_mask(match, off, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(half + m)),
                                               _MM_CMPINT_LE);
        }
        return static_cast<unsigned>(__builtin_ctz(match | (1u << kBlock)));  // kBlock when none
    }
};

}  // namespace

void trie_classify_avx512(const Trie& t, std::span<const TrieKey> keys, std::span<Rank> ranks) noexcept {
    classify_all(t, keys, ranks, Scan<MatchAvx512>{});
}

Rank trie_lookup_avx512(const Trie& t, const TrieKey& key) noexcept { return lookup_one(t, key, Scan<MatchAvx512>{}); }

}  // namespace moat::dp
