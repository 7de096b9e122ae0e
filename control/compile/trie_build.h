// Building the classifier trie (dataplane/trie.h) from ranked filter entries. Control thread.
//
// Each node cuts the dimension and number of bits that leave the smallest largest child within a
// space budget (HiCuts' space factor), over bit-aligned cells, so that a node's index is a shift
// and a mask of one key dimension. Children whose entry sets are equal share a subtree; equal
// leaves are stored once. The build stops with an error, not an allocation failure, when the
// structure would outgrow `memory_limit`.
#pragma once

#include <atomic>
#include <cstddef>
#include <optional>
#include <span>
#include <string>

#include "control/config/result.h"
#include "dataplane/entry.h"
#include "dataplane/trie.h"

namespace moat::ctl {

struct TrieBuildOptions {
    unsigned leaf_size = 16;         ///< entries a leaf may hold before it is cut (binth)
    double space_factor = 4.0;       ///< entry copies + weighted slots a cut may make, per entry of its node
    double slot_weight = 0.125;      ///< a slot (4 bytes) against an entry copy (4 + 8 * dims bytes)
    unsigned max_cut_bits = 16;      ///< widest cut of one node
    /// Nodes on a path before a leaf (0: no limit). Every packet takes as many steps as its tree
    /// is deep (no branch per packet), so shallow trees with fuller leaves are faster than deep
    /// ones with small leaves. The builder starts here and tries up to three levels deeper while
    /// its estimate says a step costs less than the leaf blocks it saves (on ClassBench: 3 for
    /// ipc1, 4 for acl1, 5 for fw1 at 1K).
    unsigned max_depth = 3;
    std::size_t memory_limit = std::size_t{2} << 30;  ///< bytes
    /// A layout's leaves hold at most this many entry copies per entry (slots counted at
    /// slot_weight each), plus 4096 (65536 while that bound is below 65536): a cut past it is not made and its node stays a leaf. This
    /// is what bounds the build's time and memory for any shape of policy (some shapes, such as
    /// wide port ranges overlapping at random, copy every entry into most cuts); ordinary
    /// policies stay far below it.
    double copies_per_entry = 8;
    bool with_payload = false;  ///< hold the payload entries too (TableSet::v4_payload, v6_payload)
    const std::atomic<bool>* cancel = nullptr;  ///< set: the build stops with an error, soon
};

struct TrieBuildStats {
    unsigned trees = 0;
    std::size_t entries = 0;       ///< entries of the family (header-only ones)
    std::size_t nodes = 0;
    std::size_t leaves = 0;
    std::size_t leaf_entries = 0;  ///< entry copies over all distinct leaves
    std::size_t max_leaf = 0;
    unsigned max_depth = 0;
    std::size_t bytes = 0;
    std::size_t capped = 0;  ///< nodes left leaves by copies_per_entry
};

struct BuiltTrie {
    dp::Trie trie;
    TrieBuildStats stats;
};

/// The trie of the `family` entries of `ranked` (entries with a payload pattern are left out
/// unless `opt.with_payload`: they can only win after a payload scan). `ranked[i]` has rank i.
Result<BuiltTrie> build_trie(std::span<const dp::Entry> ranked, dp::Family family, const TrieBuildOptions& opt = {});

}  // namespace moat::ctl
