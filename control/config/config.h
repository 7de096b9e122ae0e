// Reading a config file: INI sections -> a validated Config (DESIGN section 2). Every key,
// value, name and reference is checked here, each error at its line; what only compiling can
// tell (expansion against `me`, payload patterns) and the lint are compile/load.h's.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "control/config/diag.h"
#include "control/config/model.h"
#include "control/config/result.h"

namespace moat::ctl {

/// Parses and validates config text; `file` names it in diagnostics. The Config is complete
/// only when `diags` has no errors afterwards.
Config parse_config(std::string_view text, const std::string& file, Diagnostics& diags);

/// The largest config file read (a million filters fit in about 40 MB).
constexpr std::size_t kMaxConfigBytes = std::size_t{64} << 20;

/// The text of the file at `path` (through symbolic links). Only a regular file of at most
/// kMaxConfigBytes is read: a FIFO, a device such as /dev/zero or a directory would hang or
/// exhaust the control thread. Fails with "cannot read the config file: ...".
Result<std::string> read_config_file(const std::string& path);

/// Where the config lives unless told otherwise: SYSCONFDIR/moat/moat.ini, SYSCONFDIR being
/// meson's sysconfdir (/etc for a build with --prefix /usr or --sysconfdir /etc, the Debian way).
/// A macro so that help texts can hold it.
#ifndef MOAT_SYSCONFDIR
#define MOAT_SYSCONFDIR "/etc"
#endif
#define MOAT_DEFAULT_CONFIG MOAT_SYSCONFDIR "/moat/moat.ini"

/// The default config path: $MOAT_CONFIG, else MOAT_DEFAULT_CONFIG.
std::string default_config_path();

}  // namespace moat::ctl
