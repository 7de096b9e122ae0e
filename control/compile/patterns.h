// Compiling payload patterns (DESIGN section 6) into Hyperscan block-mode databases: one
// pattern at a time when a config is checked, all of a policy at once when its table set is
// built. Control thread.
#pragma once

#include <span>
#include <string>

#include "control/config/filter_spec.h"
#include "control/config/result.h"
#include "dataplane/payload.h"

namespace moat::ctl {

/// Hyperscan flags for a pattern's `i`, `s` and `m` flags, always with HS_FLAG_SINGLEMATCH (a
/// filter needs one report per scan, and Hyperscan stops looking for that pattern after it).
unsigned pattern_flags(const PayloadSpec& p);

/// One database of `patterns`, pattern i with id i; or why Hyperscan refuses them, naming the
/// pattern when it tells which one it was.
Result<dp::HsDatabasePtr> compile_patterns(std::span<const PayloadSpec> patterns);

}  // namespace moat::ctl
