// Loading a policy: parse (config/config.h) -> check what only compiling tells -> compile -> lint
// (STYLE 18-19).
//
// Start-up, reloads, `moatctl check`, `moatctl explain` and `moatctl ipsecpol` all call
// load_policy(); nothing else builds a compiled policy from a file. A config with any error never
// yields a compiled policy, so a caller cannot apply half of it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "control/compile/lint.h"
#include "control/compile/policy.h"
#include "control/config/diag.h"
#include "control/config/model.h"

namespace moat::ctl {

struct LoadResult {
    std::optional<Config> config;            ///< set when the config has no errors
    std::optional<CompiledPolicy> compiled;  ///< the assigned policy (or block-all), when usable
    Diagnostics diags;                       ///< every error and warning, sorted by line

    /// True when the policy may be applied: no errors, and no warnings under `strict = on`.
    bool usable() const noexcept { return compiled.has_value(); }
};

struct LoadOptions {
    bool lint = true;  ///< generated policies (benchmarks) and moatd's reloads (which lint after
                       ///< publishing) skip the lint pass
    std::size_t lint_listed = 20;  ///< lint warnings listed per kind (the rest are counted)
    bool compile_unassigned = true;  ///< compile the policies not assigned too (they are validated
                                     ///< either way; compiling only finds what lint reports)
};

/// The lint pass of load_policy_text on its own: compiles and lints every policy of a config
/// that loaded without errors. Warnings only: what it finds never changes what is enforced.
/// Lists `opt.listed` warnings per kind and counts them all into `counts`. Stops early once
/// `*opt.cancel` is set (moatd's lint thread, when a newer generation comes).
void lint_policies(const Config& cfg, Diagnostics& diags, LintCounts& counts, const LintOptions& opt = {});

/// Reads and loads the config file at `path`. Control thread only.
LoadResult load_policy(const std::string& path, const LoadOptions& opt = {});

/// Loads config text; `file` names it in diagnostics.
LoadResult load_policy_text(std::string_view text, const std::string& file, const LoadOptions& opt = {});

}  // namespace moat::ctl
