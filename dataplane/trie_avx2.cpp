// The AVX2 leaf scan, for CPUs without AVX-512: 16 entries per step as in trie_avx512.cpp, in
// two 8-lane halves for the 32-bit dimensions and one 16-lane vector for the 16-bit ones. AVX2
// has no unsigned compare: v - lo <= span is max(v - lo, span) == span. The entries still
// matching are a vector of 16-bit lanes (all ones or zero), narrowed by each dimension and
// turned into a bit mask once at the end. This file alone is compiled with -mavx2; trie.cpp
// calls it only when the CPU has AVX2.
#include <immintrin.h>

#include "dataplane/trie_impl.h"

namespace moat::dp {

namespace {

/// Lanes 0..7 and 8..15 of a 32-bit compare as one vector of 16-bit lanes in entry order (the
/// pack interleaves the 128-bit halves; the permute puts them back).
inline __m256i pack_halves(__m256i a, __m256i b) noexcept {
    return _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
}

/// v - lo <= span in each 32-bit lane, as all ones or zero.
inline __m256i admits32(__m256i key, const std::uint32_t* lo, const std::uint32_t* span) noexcept {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(span));
    const __m256i off = _mm256_sub_epi32(key, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo)));
    return _mm256_cmpeq_epi32(_mm256_max_epu32(off, s), s);
}

struct MatchAvx2 {
    static unsigned first(const std::uint32_t* lanes, std::uint32_t m, std::uint32_t wide, std::uint32_t narrow,
                          const TrieKey& k) noexcept {
        // A short last block's lanes past its m entries are the next array's or the arena's
        // zero tail: masked out at the end.
        __m256i match = _mm256_set1_epi16(-1);
        for (std::uint32_t dm = wide; dm; dm &= dm - 1, lanes += 2 * m) {
            const __m256i key = _mm256_set1_epi32(static_cast<int>(k.d[__builtin_ctz(dm)]));
            const __m256i a = admits32(key, lanes, lanes + m);
            const __m256i b = admits32(key, lanes + 8, lanes + m + 8);
            match = _mm256_and_si256(match, pack_halves(a, b));
        }
        for (std::uint32_t dm = narrow; dm; dm &= dm - 1, lanes += m) {
            const __m256i key = _mm256_set1_epi16(static_cast<short>(k.d[__builtin_ctz(dm)]));
            const auto* half = reinterpret_cast<const std::uint16_t*>(lanes);
            const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(half + m));
            const __m256i off = _mm256_sub_epi16(key, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(half)));
            match = _mm256_and_si256(match, _mm256_cmpeq_epi16(_mm256_max_epu16(off, s), s));
        }
        // Two bits per entry; those of the lanes past m cleared.
        const std::uint32_t bits = static_cast<std::uint32_t>(_mm256_movemask_epi8(match)) &
                                   static_cast<std::uint32_t>((std::uint64_t{1} << (2 * m)) - 1);
        return bits ? static_cast<unsigned>(__builtin_ctz(bits)) / 2 : kBlock;
    }
};

}  // namespace

void trie_classify_avx2(const Trie& t, std::span<const TrieKey> keys, std::span<Rank> ranks) noexcept {
    classify_all(t, keys, ranks, Scan<MatchAvx2>{});
}

Rank trie_lookup_avx2(const Trie& t, const TrieKey& key) noexcept { return lookup_one(t, key, Scan<MatchAvx2>{}); }

}  // namespace moat::dp
