// The version of moatd and moatctl: the project's (meson.build) and the git revision the
// binaries were built from (meson's vcs_tag: `git describe --always --dirty=+`, "unknown" when
// built outside git). `moatd --version` and `moatctl --version` print version_text().
#pragma once

#include <string>
#include <string_view>

namespace moat::ctl {

/// The project's version, e.g. "0.1.0".
std::string_view version() noexcept;

/// The git revision built, e.g. "b31b0af" or "b31b0af+" (uncommitted changes), or "unknown".
std::string_view revision() noexcept;

/// "PROGRAM VERSION (revision REVISION)\n".
std::string version_text(std::string_view program);

}  // namespace moat::ctl
