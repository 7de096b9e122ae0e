// The trie walk, shared by the scalar and the AVX-512 translation units. Each includes this file
// and instantiates the walk with its own leaf scanner; everything here has internal linkage so
// that code compiled for AVX-512 can never be picked for the scalar path by the linker.
#pragma once

#include <algorithm>

#include "dataplane/trie.h"

namespace moat::dp {
namespace {

/// How many packets' next trie step is prefetched while the current ones are resolved. The
/// burst's walks advance in lockstep, level by level, so each level issues every packet's load
/// before the first is used: the latencies overlap instead of adding up.
constexpr std::size_t kWalkChunk = 32;

inline std::uint32_t step(const std::uint32_t* w, std::uint32_t ref, const TrieKey& k) noexcept {
    const std::uint32_t h = w[ref];
    const std::uint32_t dim = h & 0xff, shift = (h >> 8) & 0xff, mask = h >> 16;
    return w[w[ref + 1] + ((k.d[dim] >> shift) & mask)];
}

template <typename Scan>
Rank lookup_one(const Trie& t, const TrieKey& k, Scan scan) noexcept {
    const std::uint32_t* w = t.words.get();
    Rank best = kNoMatch;
    for (std::size_t tree = 0; tree < t.roots.size(); ++tree) {
        if (best < t.best_rank[tree])  // nothing in this tree can beat what was found
            continue;
        std::uint32_t ref = t.roots[tree];
        while (ref != 0 && !(ref & kLeafBit))
            ref = step(w, ref, k);
        if (ref != 0)
            best = std::min(best, scan(w + (ref & ~kLeafBit), k));
    }
    return best;
}

/// Prefetches what a ref points at: a node's header, or the first lines of a leaf (its header,
/// ranks and first lanes; small leaves fit).
inline void prefetch_ref(const std::uint32_t* w, std::uint32_t ref) noexcept {
    const char* p = reinterpret_cast<const char*>(w + (ref & ~kLeafBit));
    __builtin_prefetch(p);

}

template <typename Scan>
void classify_chunk(const Trie& t, const TrieKey* keys, Rank* ranks, std::size_t n, Scan scan) noexcept {
    const std::uint32_t* w = t.words.get();
    std::uint32_t ref[kWalkChunk];
    for (std::size_t i = 0; i < n; ++i)
        ranks[i] = kNoMatch;
    for (std::size_t tree = 0; tree < t.roots.size(); ++tree) {
        const std::uint32_t root = t.roots[tree];
        const Rank tree_best = t.best_rank[tree];
        // A packet that already has a better rank than anything in this tree skips it.
        for (std::size_t i = 0; i < n; ++i)
            ref[i] = ranks[i] < tree_best ? 0 : root;
        // The burst's walks advance level by level: every packet's next load is issued before the
        // first of them is needed, so their latencies overlap.
        for (bool inner = true; inner;) {
            inner = false;
            for (std::size_t i = 0; i < n; ++i) {
                if (ref[i] == 0 || (ref[i] & kLeafBit))
                    continue;
                ref[i] = step(w, ref[i], keys[i]);
                prefetch_ref(w, ref[i]);
                inner |= ref[i] != 0 && !(ref[i] & kLeafBit);
            }
        }
        for (std::size_t i = 0; i < n; ++i)
            if (ref[i] != 0)
                ranks[i] = std::min(ranks[i], scan(w + (ref[i] & ~kLeafBit), keys[i]));
    }
}

template <typename Scan>
void classify_all(const Trie& t, std::span<const TrieKey> keys, std::span<Rank> ranks, Scan scan) noexcept {
    for (std::size_t at = 0; at < keys.size(); at += kWalkChunk)
        classify_chunk(t, keys.data() + at, ranks.data() + at, std::min(kWalkChunk, keys.size() - at), scan);
}

}  // namespace
}  // namespace moat::dp
