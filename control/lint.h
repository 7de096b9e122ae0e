// Lint warnings of DESIGN section 4: a policy without a catch-all block filter; two filters with
// equal specificity, different actions and overlapping matches; a filter fully shadowed by a
// higher-ranked one. Warnings never block a load unless `strict = on`.
#pragma once

#include "control/compile.h"
#include "control/diag.h"
#include "control/model.h"

namespace moat::ctl {

/// Adds the lint warnings of one compiled policy of `cfg` to `diags`. Control thread only.
void lint_policy(const Config& cfg, const CompiledPolicy& cp, Diagnostics& diags);

/// True when some packet matches both entries' header fields (payloads are assumed to overlap).
bool entries_overlap(const dp::Rule& x, const dp::Rule& y) noexcept;

/// True when every packet that matches `inner` also matches `outer`.
bool entry_covers(const dp::Rule& outer, const dp::Rule& inner) noexcept;

}  // namespace moat::ctl
