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

/// The default config path: $MOAT_CONFIG, else /etc/moat/moat.ini.
std::string default_config_path();

}  // namespace moat::ctl
