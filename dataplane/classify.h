// Classification of a parsed burst against a table set.
#pragma once

#include <span>

#include "dataplane/counters.h"
#include "dataplane/parse.h"
#include "dataplane/table_set.h"

namespace moat::dp {

struct Verdict {
    Rank rank = kNoMatch;                ///< the winning entry, if a filter decided
    DropReason drop = DropReason::none;  ///< none: forward
};

/// Judges each packet of a burst: parse drops stay drops, permitted non-IP frames pass, every
/// other packet gets the best-ranked matching entry's action, or no_match. Worker, lock-free.
void classify_burst(const TableSet& t, std::span<const PacketMeta> meta, std::span<Verdict> out) noexcept;

}  // namespace moat::dp
