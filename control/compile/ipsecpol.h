// `moatctl ipsecpol`: applies one Windows 2000 Resource Kit `ipsecpol` static-mode command to a
// config file, as the seed articles use it:
//
//   ipsecpol -w REG -p "Packet Filter" -r "Inbound web protocols"
//            -f *+198.18.0.10:80:TCP *+198.18.0.10:443:TCP -n PASS
//   ipsecpol -w REG -p "Packet Filter" -x
//
// -w REG (required), -p POLICY[:poll], -r RULE (names the rule's filter list), -f SPEC..., -n
// PASS|BLOCK, -x assign, -y unassign, -o delete the policy and the filter lists only it uses.
// Pasted Unicode dashes (`–w`) and curly quotes are read as their ASCII forms. The edited config
// is validated before it is written (atomically); a config with errors is never written.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace moat::ctl {

/// Runs one ipsecpol command; `args` excludes the program and command names. `--config FILE`
/// names the config (created if missing; default: default_config_path()). Messages go to `out`,
/// problems to `err`. Returns the exit status: 0 done, 1 the result would not be a valid config
/// or it could not be written, 2 a usage error.
int run_ipsecpol(std::vector<std::string> args, std::ostream& out, std::ostream& err);

}  // namespace moat::ctl
