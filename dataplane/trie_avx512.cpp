// The AVX-512 leaf scan: 16 entries per step. For each dimension d, two unsigned compares against
// the lanes lo[d] and hi[d] narrow a 16-bit mask of the entries still matching; the lowest set
// bit left is the leaf's best entry (leaves are in rank order). This file alone is compiled with
// -mavx512f; trie.cpp calls it only when the CPU has AVX-512F.
#include <immintrin.h>

#include "dataplane/trie_impl.h"

namespace moat::dp {

namespace {

struct ScanAvx512 {
    Rank operator()(const std::uint32_t* leaf, const TrieKey& k) const noexcept {
        const std::uint32_t n = leaf[0];
        const std::uint32_t mask = leaf[1];
        const std::uint32_t* ranks = leaf + 2;
        const std::uint32_t* r = leaf + 2 + n;
        for (std::uint32_t i = 0; i < n; i += 16) {
            // Lanes past n belong to the next array or the arena's zero tail: masked out here.
            __mmask16 m = n - i >= 16 ? 0xffff : static_cast<__mmask16>((1u << (n - i)) - 1);
            const std::uint32_t* lanes = r + i;
            for (std::uint32_t dm = mask; dm && m; dm &= dm - 1, lanes += 2 * n) {
                const __m512i key = _mm512_set1_epi32(static_cast<int>(k.d[__builtin_ctz(dm)]));
                m = _mm512_mask_cmp_epu32_mask(m, key, _mm512_loadu_si512(lanes), _MM_CMPINT_NLT);
                m = _mm512_mask_cmp_epu32_mask(m, key, _mm512_loadu_si512(lanes + n), _MM_CMPINT_LE);
            }
            if (m)
                return ranks[i + static_cast<unsigned>(__builtin_ctz(m))];
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
