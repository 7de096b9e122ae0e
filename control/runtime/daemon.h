// moatd: the appliance. Loads the policy, starts EAL with the two ports of [appliance], launches
// one worker per worker lcore and keeps the main lcore for control, until SIGINT or SIGTERM.
//
//   moatd [--config FILE] [--stats-period SECONDS] [--counters-json FILE]
//   moatd EAL-ARGS -- [--config FILE] ...
#pragma once

namespace moat::ctl {

/// The whole daemon; returns the process exit status (0 after a clean stop, 1 when it could not
/// start, 2 on a usage error).
int run_moatd(int argc, char** argv);

}  // namespace moat::ctl
