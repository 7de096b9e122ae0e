// The trie walk and leaf scan, shared by the scalar and the AVX-512 translation units. Each
// includes this file and instantiates them with its own block matcher; everything here has
// internal linkage so that code compiled for AVX-512 can never be picked for the scalar path by
// the linker.
#pragma once

#include <algorithm>

#include "dataplane/trie.h"

namespace moat::dp {
namespace {

/// Packets whose walks advance together. Each level issues every packet's loads before the
/// first is needed, so their latencies overlap instead of adding up.
constexpr std::size_t kWalkChunk = 32;

/// One step from `ref`; a leaf steps to itself (see the encoding in trie.h). The header and the
/// slot index are read in one 8-byte load.
inline std::uint32_t step(const std::uint32_t* w, std::uint32_t ref, const TrieKey& k) noexcept {
    std::uint64_t hw;
    __builtin_memcpy(&hw, w + ref, sizeof hw);
    const auto h = static_cast<std::uint32_t>(hw);
    return w[static_cast<std::uint32_t>(hw >> 32) + slot_index(k.d[h & 0xff], h)];
}

/// A leaf scan around a block matcher: `Match::first(lanes, m, wide, narrow, k)` is the index of
/// the first of the m (<= 16) entries of the block at `lanes` that admits `k`, or kBlock if none
/// does. `first` scans a leaf's first block, `rest` the blocks after it.
template <typename Match>
struct Scan {
    Rank first(const std::uint32_t* leaf, const TrieKey& k) const noexcept {
        const std::uint32_t n = leaf[kLeafN];
        const std::uint32_t* ranks = leaf + kLeafHeaderWords;
        const unsigned i = Match::first(ranks + n, std::min(kBlock, n), leaf[kLeafWide], leaf[kLeafNarrow], k);
        return i < kBlock ? ranks[i] : kNoMatch;
    }

    Rank rest(const std::uint32_t* leaf, const TrieKey& k) const noexcept {
        const std::uint32_t n = leaf[kLeafN], wide = leaf[kLeafWide], narrow = leaf[kLeafNarrow];
        const std::uint32_t* ranks = leaf + kLeafHeaderWords;
        const std::uint32_t* lanes = ranks + n + leaf_block_words(wide, narrow, kBlock);
        for (std::uint32_t b = kBlock; b < n; b += kBlock) {
            const std::uint32_t m = std::min(kBlock, n - b);
            if (const unsigned i = Match::first(lanes, m, wide, narrow, k); i < kBlock)
                return ranks[b + i];
            lanes += leaf_block_words(wide, narrow, m);
        }
        return kNoMatch;
    }
};

template <typename Scan>
Rank lookup_one(const Trie& t, const TrieKey& k, Scan scan) noexcept {
    const std::uint32_t* w = t.words.get();
    Rank best = kNoMatch;
    for (std::size_t tree = 0; tree < t.roots.size(); ++tree) {
        if (best < t.best_rank[tree])  // nothing in this tree can beat what was found
            continue;
        std::uint32_t ref = t.roots[tree];
        for (std::uint32_t s = t.tree_steps[tree]; s > 0; --s)
            ref = step(w, ref, k);
        const Rank r = scan.first(w + ref, k);
        best = std::min(best, r != kNoMatch ? r : scan.rest(w + ref, k));
    }
    return best;
}

/// One tree for the packets `at(0) .. at(m - 1)` of a chunk: `at` is the identity for the first
/// tree (every packet walks it) and a list for the others, so that the first pays no indirection.
template <typename Scan, typename At>
void walk_tree(const Trie& t, std::size_t tree, const TrieKey* keys, Rank* ranks, std::size_t m, At at,
               Scan scan) noexcept {
    const std::uint32_t* w = t.words.get();
    std::uint32_t ref[kWalkChunk];
    std::uint32_t more[kWalkChunk];
    // The root's step with its header read once for all packets; then level by level, the same
    // step for every packet, as many steps as the tree is deep: a packet that has reached its
    // leaf stays there, so the loops have no data-dependent branch (trees are kept shallow, see
    // TrieBuildOptions::max_depth). Each step prefetches what it found for the next.
    const std::uint32_t root = t.roots[tree];
    std::uint32_t s = t.tree_steps[tree];
    if (s > 0) {
        const std::uint32_t h = w[root];
        const std::uint32_t* slots = w + w[root + 1];
        const unsigned dim = h & 0xff;
        for (std::size_t j = 0; j < m; ++j) {
            ref[j] = slots[slot_index(keys[at(j)].d[dim], h)];
            __builtin_prefetch(w + ref[j]);
        }
        --s;
    } else {
        for (std::size_t j = 0; j < m; ++j)
            ref[j] = root;
    }
    for (; s > 0; --s) {
        for (std::size_t j = 0; j < m; ++j) {
            ref[j] = step(w, ref[j], keys[at(j)]);
            __builtin_prefetch(w + ref[j]);
        }
    }
    // Every packet's first leaf block, then the further blocks of the few packets that found
    // nothing in a first block with more after it: one loop of the same shape for all packets,
    // instead of a block loop whose exit is mispredicted on mixed bursts.
    std::size_t nmore = 0;
    for (std::size_t j = 0; j < m; ++j) {
        const std::uint32_t* leaf = w + ref[j];
        const Rank r = scan.first(leaf, keys[at(j)]);
        ranks[at(j)] = std::min(ranks[at(j)], r);
        more[nmore] = static_cast<std::uint32_t>(j);
        nmore += r == kNoMatch && leaf[kLeafN] > kBlock;
    }
    for (std::size_t k = 0; k < nmore; ++k) {
        const std::size_t j = more[k];
        ranks[at(j)] = std::min(ranks[at(j)], scan.rest(w + ref[j], keys[at(j)]));
    }
}

template <typename Scan>
void classify_chunk(const Trie& t, const TrieKey* keys, Rank* ranks, std::size_t n, Scan scan) noexcept {
    for (std::size_t i = 0; i < n; ++i)
        ranks[i] = kNoMatch;
    if (t.roots.empty())
        return;
    walk_tree(t, 0, keys, ranks, n, [](std::size_t j) { return j; }, scan);
    std::uint32_t idx[kWalkChunk];
    for (std::size_t tree = 1; tree < t.roots.size(); ++tree) {
        // A packet that already has a better rank than anything in this tree skips it; the
        // others are listed (without a branch), and a tree nobody needs is not walked at all.
        const Rank tree_best = t.best_rank[tree];
        std::size_t m = 0;
        for (std::size_t i = 0; i < n; ++i) {
            idx[m] = static_cast<std::uint32_t>(i);
            m += ranks[i] >= tree_best;
        }
        if (m > 0)
            walk_tree(t, tree, keys, ranks, m, [&idx](std::size_t j) { return idx[j]; }, scan);
    }
}

/// Whether two keys of a trie's family are equal (its `dims` words).
inline bool same_key(const TrieKey& a, const TrieKey& b, unsigned dims) noexcept {
    return dims == kDimsV4 ? __builtin_memcmp(a.d, b.d, kDimsV4 * 4) == 0 : __builtin_memcmp(a.d, b.d, kDimsV6 * 4) == 0;
}
/// The burst in chunks. A packet whose key equals the one before it takes that packet's answer
/// instead of a walk: flows send trains of packets, and a burst often holds several of one
/// flow (ClassBench's traces repeat headers back to back the same way). A chunk without such a
/// repeat, the common case of mixed traffic, is classified in place; only one with repeats is
/// compacted first. The cost of looking is one compare of the key words per packet.
template <typename Scan>
void classify_all(const Trie& t, std::span<const TrieKey> keys, std::span<Rank> ranks, Scan scan) noexcept {
    TrieKey unique[kWalkChunk];
    Rank found[kWalkChunk];
    std::uint8_t repeat[kWalkChunk];
    for (std::size_t at = 0; at < keys.size(); at += kWalkChunk) {
        const std::size_t n = std::min(kWalkChunk, keys.size() - at);
        const TrieKey* k = keys.data() + at;
        unsigned repeats = 0;
        repeat[0] = 0;
        for (std::size_t i = 1; i < n; ++i) {
            repeat[i] = same_key(k[i], k[i - 1], t.dims);
            repeats += repeat[i];
        }
        if (repeats == 0) {
            classify_chunk(t, k, ranks.data() + at, n, scan);
            continue;
        }
        std::size_t nu = 0;
        for (std::size_t i = 0; i < n; ++i) {
            unique[nu] = k[i];
            nu += !repeat[i];
        }
        classify_chunk(t, unique, found, nu, scan);
        for (std::size_t i = 0, j = 0; i < n; ++i) {
            j += !repeat[i];
            ranks[at + i] = found[j - 1];
        }
    }
}

}  // namespace
}  // namespace moat::dp
