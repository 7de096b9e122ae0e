// Lint warnings of DESIGN section 4: a policy without a catch-all block filter; two filters with
// equal specificity, different actions and overlapping matches; a filter fully shadowed by a
// higher-ranked one. Warnings never block a load unless `strict = on`.
//
// Cost. Overlaps and shadowing can only happen between entries of equal specificity (an entry
// that covers another has a key no higher in every field). Those are indexed by their addresses
// cut to the shorter prefix of the group (entries that overlap share it), and within that by
// their exact addresses; what is left are port ranges, where overlapping pairs are counted
// without listing them (pairs overlapping in both ranges = all pairs - those apart in the source
// ports - those apart in the destination ports + those apart in both, each a sort or a sweep
// with a Fenwick tree), and a shadowing entry of the same specificity starts at most 2^k ports
// before the one it covers (both ranges are of one power-of-two class). O(n log n) in all; only
// the listed warnings are built as text.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include "control/compile/policy.h"
#include "control/config/diag.h"
#include "control/config/model.h"

namespace moat::ctl {

struct LintOptions {
    /// Warnings listed per kind (the others are counted): 20 for a load, all for `moatctl lint
    /// --all`. Listing every overlapping pair can take as long as there are pairs.
    std::size_t listed = std::numeric_limits<std::size_t>::max();
    const std::atomic<bool>* cancel = nullptr;  ///< stops early, with what it has, once set
};

/// What a lint found, by kind: "catch-all" (policies without one), "overlap" (pairs of ranked
/// entries of equal specificity that overlap with different actions), "shadowed" (filters that
/// never decide a packet), "incomplete" (entries whose shadowing check gave up).
using LintCounts = std::map<std::string, std::uint64_t>;

/// Adds the lint warnings of one compiled policy of `cfg` to `diags` (each with its kind; after
/// the `opt.listed` first of a kind, one that says how many more) and counts them all into
/// `counts`. Any thread (it reads only its arguments).
void lint_policy(const Config& cfg, const CompiledPolicy& cp, Diagnostics& diags, LintCounts& counts,
                 const LintOptions& opt = {});

/// True when some packet matches both entries' header fields (payloads are assumed to overlap).
bool entries_overlap(const dp::Entry& x, const dp::Entry& y) noexcept;

/// True when every packet that matches `inner` also matches `outer`.
bool entry_covers(const dp::Entry& outer, const dp::Entry& inner) noexcept;

}  // namespace moat::ctl
