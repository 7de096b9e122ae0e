// The AVX-512 leaf scan: 16 entries per step. For each dimension d, a subtraction of the lanes
// lo[d] and an unsigned compare against span[d] (hi - lo) narrow a 16-bit mask of the entries
// still matching; the lowest set bit left is the leaf's best entry (leaves are in rank order).
// This file alone is compiled with -mavx512f; trie.cpp calls it only when the CPU has AVX-512F.
#include <immintrin.h>

#include "dataplane/trie_impl.h"

namespace moat::dp {

namespace {

/// The leaf's checked dimensions (leaf[4]) narrow a 16-bit mask of the entries of a block that
/// still match, one subtraction and one compare per dimension.
struct ScanAvx512 {
    Rank operator()(const std::uint32_t* leaf, const TrieKey& k) const noexcept {
        const std::uint32_t n = leaf[3];
        const std::uint32_t dims = leaf[4];
        const std::uint32_t stride = 2 * static_cast<std::uint32_t>(__builtin_popcount(dims)) * kBlock;
        const std::uint32_t* ranks = leaf + kLeafHeaderWords;
        const std::uint32_t* block = ranks + n;
        for (std::uint32_t b = 0; b < n; b += kBlock, block += stride) {
            // A short last block's lanes past its m entries are the next array's or the arena's
            // zero tail: masked out.
            const std::uint32_t m = std::min(kBlock, n - b);
            __mmask16 match = static_cast<__mmask16>((1u << m) - 1);
            const std::uint32_t* lanes = block;
            for (std::uint32_t dm = dims; dm; dm &= dm - 1, lanes += 2 * m) {
                const __m512i key = _mm512_set1_epi32(static_cast<int>(k.d[__builtin_ctz(dm)]));
                const __m512i off = _mm512_sub_epi32(key, _mm512_loadu_si512(lanes));
                match = _mm512_mask_cmp_epu32_mask(match, off, _mm512_loadu_si512(lanes + m), _MM_CMPINT_LE);
            }
            if (match)
                return ranks[b + static_cast<unsigned>(__builtin_ctz(match))];
        }
        return kNoMatch;
    }
};

}  // namespace

void trie_classify_avx512(const Trie& t, std::span<const TrieKey> keys, std::span<Rank> ranks) noexcept {
    classify_all(t, keys, ranks, ScanAvx512{});
}

Rank trie_lookup_avx512(const Trie& t, const TrieKey& key) noexcept { return lookup_one(t, key, ScanAvx512{}); }

}  // namespace moat::dp
