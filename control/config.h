// Loading a policy: parse -> model -> validate everything -> compile -> lint (STYLE 18-19).
//
// Start-up, `moatctl check`, `moatctl explain`, `moatctl ipsecpol` and (later) reloads all call
// load_policy(); nothing else builds a Config. A config with any error never yields a compiled
// policy, so a caller cannot apply half of it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "control/compile.h"
#include "control/diag.h"
#include "control/model.h"

namespace moat::ctl {

struct LoadResult {
    std::optional<Config> config;            ///< set when the config has no errors
    std::optional<CompiledPolicy> compiled;  ///< the assigned policy (or block-all), when usable
    Diagnostics diags;                       ///< every error and warning, sorted by line

    /// True when the policy may be applied: no errors, and no warnings under `strict = on`.
    bool usable() const noexcept { return compiled.has_value(); }
};

struct LoadOptions {
    bool lint = true;  ///< generated policies (benchmarks) may skip the lint pass
};

/// Reads and loads the config file at `path`. Control thread only.
LoadResult load_policy(const std::string& path, const LoadOptions& opt = {});

/// Loads config text; `file` names it in diagnostics.
LoadResult load_policy_text(std::string_view text, const std::string& file, const LoadOptions& opt = {});

/// The default config path: $MOAT_CONFIG, else /etc/moat/moat.ini.
std::string default_config_path();

}  // namespace moat::ctl
