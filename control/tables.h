// Building the dataplane's table set from a loaded policy (control is its only builder).
#pragma once

#include <cstdint>
#include <memory>

#include "control/compile.h"
#include "control/model.h"
#include "dataplane/table_set.h"

namespace moat::ctl {

/// The table set for `cp` (the assigned policy of `cfg`, or block-all) with hit counters for
/// `workers` workers. Control thread.
std::unique_ptr<dp::TableSet> build_table_set(const Config& cfg, const CompiledPolicy& cp, unsigned workers,
                                              std::uint64_t generation);

}  // namespace moat::ctl
