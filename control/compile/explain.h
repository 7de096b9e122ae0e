// `moatctl explain`: which filter decides a packet under the assigned policy, and why.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control/compile/policy.h"
#include "control/config/model.h"
#include "control/config/packet_spec.h"
#include "dataplane/table_set.h"

namespace moat::ctl {

enum class VerdictReason {
    filter,     ///< a filter matched; its action decides
    no_match,   ///< nothing matched: default deny
    antispoof,  ///< a `me` source arrived on the outside port
    state,      ///< the deciding filter keeps state and answers only inside a tracked flow
};

struct Explanation {
    PacketSpec packet;
    bool ingress_inferred = false;  ///< `on` was not given: inside when the source is a `me` address
    dp::Action action = dp::Action::block;
    VerdictReason reason = VerdictReason::no_match;
    dp::Rank winner = dp::kNoMatch;
    /// The winner's Entry::state: create (permitted, and it starts a flow whose answers pass),
    /// reply (blocked on its own: it passes only as part of a tracked flow; reason `state`).
    dp::StateMode state = dp::StateMode::none;
    std::vector<dp::Rank> matches;  ///< every entry whose header fields match, in rank order
    /// With a payload given: by pattern id, whether it matched the first payload_scan_bytes.
    std::vector<bool> pattern_matched;
    bool payload_cut = false;  ///< the payload was longer than payload_scan_bytes
    std::string payload_error;  ///< the patterns could not be scanned
};

/// Judges `packet` with the functions moatd's workers judge a frame with, over the table set `t`
/// built from `cfg` and `cp` (moatd passes the generation's own): the parser's antispoof check
/// (dp::is_spoofed), the classifier's answer (dp::classify_key), and when that is a payload
/// entry the worker's scan and settlement (dp::header_winner, dp::scan_patterns,
/// dp::payload_winner) over the first payload_scan_bytes of the payload given (none given: as a
/// packet without payload). Also lists every entry whose header fields match and, with a
/// payload, which patterns matched. Any thread; reads `t` only (its own scratch).
Explanation explain(const Config& cfg, const CompiledPolicy& cp, const dp::TableSet& t, PacketSpec packet);

/// The same without a running table set (`moatctl explain --config`): builds one per call with
/// build_reference_tables (the payload database is compiled: seconds for heavy patterns).
Explanation explain(const Config& cfg, const CompiledPolicy& cp, PacketSpec packet);

std::string explain_text(const Config& cfg, const CompiledPolicy& cp, const Explanation& e);
nlohmann::json explain_json(const Config& cfg, const CompiledPolicy& cp, const Explanation& e);

/// One entry in the filter grammar's direction form: `* -> 198.18.0.10:80 TCP on outside`.
std::string format_entry(const dp::Entry& r);

}  // namespace moat::ctl
