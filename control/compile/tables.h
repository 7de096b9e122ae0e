// Building the dataplane's table set from a loaded policy (control is its only builder).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "control/compile/policy.h"
#include "control/config/model.h"
#include "control/compile/trie_build.h"
#include "dataplane/table_set.h"

namespace moat::ctl {

struct BuiltTables {
    std::unique_ptr<dp::TableSet> tables;
    TrieBuildStats v4, v6;
};

/// The table set for `cp` (the assigned policy of `cfg`, or block-all) with hit counters for
/// `workers` workers: the classifier tries of both families, or the reference classifier when
/// `classifier = reference`. Stops with an error once `*cancel` is set. Any thread.
/// The table set views `cp.rules` where they are (no copy): `cp` must outlive it and not change.
Result<BuiltTables> build_table_set(const Config& cfg, const CompiledPolicy& cp, unsigned workers,
                                    std::uint64_t generation, const std::atomic<bool>* cancel = nullptr);

/// The table set `moatctl explain --config` judges with: what build_table_set makes for the
/// parser and the payload scan (one scratch), with the reference classifier instead of tries
/// (trie_test holds them to the same answers) and no counters. When Hyperscan refuses the
/// patterns, `payload_error` says so and the tables come without a payload database; without
/// `with_payload` they have none either (no payload entry is then the classifier's answer).
/// Any thread.
struct ReferenceTables {
    std::unique_ptr<dp::TableSet> tables;  ///< always set
    std::string payload_error;             ///< why there is no payload database, when patterns were asked for
};
ReferenceTables build_reference_tables(const Config& cfg, const CompiledPolicy& cp, bool with_payload = true);

}  // namespace moat::ctl
