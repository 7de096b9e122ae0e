// The immutable table set that workers read (STYLE 1, 11): everything a worker needs to judge a
// packet under one published policy. control/ builds it off the data path and publishes a
// pointer to it; workers load that pointer once per loop iteration and hold no reference past it.
//
// Encoding: `rules` is the ranked expanded filter array of control/compile/policy.h (index = rank),
// viewed where it lives: the compiled policy owns it and outlives the table set (in moatd both
// belong to one generation), so a generation holds its entries once. The reference classifier
// scans it in order. `v4` and `v6` are the tries of each family (trie.h),
// which return the same ranks; `v4_payload` and `v6_payload` hold the payload entries as well. `counters[w]` is worker w's hit counters, one EntryCounter per
// rank, written only by worker w.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dataplane/counters.h"
#include "dataplane/parse.h"
#include "dataplane/payload.h"
#include "dataplane/entry.h"
#include "dataplane/trie.h"

namespace moat::dp {

struct TableSet {
    std::uint64_t generation = 0;
    ParsePolicy parse;
    std::span<const Entry> rules;  ///< owned by the compiled policy the set was built from
    bool use_reference = false;  ///< `classifier = reference`: the linear oracle decides
    LeafScan scan = LeafScan::scalar;
    Trie v4;  ///< header-only entries
    Trie v6;
    /// Where the policy has payload entries of a family: a trie over all its entries, whose
    /// answer tells whether a payload filter outranks the best header-only match (payload.h).
    Trie v4_payload;
    Trie v6_payload;
    bool has_payload[2] = {false, false};  ///< by family (0: IPv4)
    bool has_state = false;  ///< some entry keeps state (Entry::state): the worker's flow table judges
    PayloadTables payload;
    std::vector<std::unique_ptr<EntryCounter[]>> counters;  ///< [worker][rank]

    /// Allocates zeroed hit counters for `workers` workers. Control thread, before publishing.
    void allocate_counters(unsigned workers) {
        counters.clear();
        for (unsigned w = 0; w < workers; ++w)
            counters.emplace_back(new EntryCounter[rules.size() + 1]);  // +1: never a zero-size array
    }
};

}  // namespace moat::dp
