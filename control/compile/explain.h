// `moatctl explain`: which filter decides a packet under the assigned policy, and why.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control/compile/policy.h"
#include "control/config/model.h"
#include "control/config/packet_spec.h"
#include "dataplane/payload.h"

namespace moat::ctl {

enum class VerdictReason {
    filter,     ///< a filter matched; its action decides
    no_match,   ///< nothing matched: default deny
    antispoof,  ///< a `me` source arrived on the outside port
};

struct Explanation {
    PacketSpec packet;
    bool ingress_inferred = false;  ///< `on` was not given: inside when the source is a `me` address
    dp::Action action = dp::Action::block;
    VerdictReason reason = VerdictReason::no_match;
    dp::Rank winner = dp::kNoMatch;
    std::vector<dp::Rank> matches;  ///< every entry whose header fields match, in rank order
    /// With a payload given: by pattern id, whether it matched the first payload_scan_bytes.
    std::vector<bool> pattern_matched;
    bool payload_cut = false;  ///< the payload was longer than payload_scan_bytes
    std::string payload_error;  ///< the patterns could not be scanned
};

/// Classifies `packet` with the reference classifier and collects every matching entry. A
/// payload filter can win only when the packet carries a payload that its pattern matches, as
/// in the dataplane (the same database, flags and scan limit). `compiled`: the policy's patterns
/// as the running table set has them; without it they are compiled here (seconds for heavy
/// patterns: moatd passes its own).
Explanation explain(const Config& cfg, const CompiledPolicy& cp, PacketSpec packet, const hs_database_t* compiled = nullptr);

std::string explain_text(const Config& cfg, const CompiledPolicy& cp, const Explanation& e);
nlohmann::json explain_json(const Config& cfg, const CompiledPolicy& cp, const Explanation& e);

/// One entry in the filter grammar's direction form: `* -> 198.18.0.10:80 TCP on outside`.
std::string format_entry(const dp::Entry& r);

}  // namespace moat::ctl
