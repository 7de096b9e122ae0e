// The reference classifier: a plain linear scan over the ranked rules.
//
// It is the oracle every faster classifier is tested against, so it stays obviously correct:
// no precomputation, no shortcuts. Any thread may call it; it only reads its arguments.
#pragma once

#include <span>

#include "dataplane/entry.h"

namespace moat::dp {

/// True when every field of `r` admits `k`. Payload entries need a scan, which this function
/// does not do: it reports their header match only (callers decide what a payload entry means).
bool header_matches(const Entry& r, const PacketKey& k) noexcept;

/// Rank of the best (lowest-index) header-only rule that matches `k`, or kNoMatch.
/// Entries with a payload pattern are skipped: they can only win after a payload scan.
Rank classify_ref(std::span<const Entry> ranked, const PacketKey& k) noexcept;

/// Rank of the best rule whose header fields match `k`, payload entries included, or kNoMatch.
Rank classify_ref_any(std::span<const Entry> ranked, const PacketKey& k) noexcept;

}  // namespace moat::dp
