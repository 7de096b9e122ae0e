// The packet grammar of `moatctl explain` and the tests (DESIGN section 3): one packet written as
// a line, read into the classification key the workers compute from a frame.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/config/filter_spec.h"
#include "dataplane/entry.h"

namespace moat::ctl {

/// A packet as every command writes one (DESIGN section 3):
///   PROTO SRC[:PORT] -> DST[:PORT] [icmp TYPE[/CODE]] [on outside|inside]
/// A missing source port is taken as 49152 (first ephemeral port) and reported in `notes`.
struct PacketSpec {
    dp::PacketKey key;
    bool ingress_given = false;  ///< `on ...` was written; otherwise the caller decides
    /// The L4 payload, from `payload "TEXT"` (C escapes: \r \n \t \\ \" \xHH) or
    /// `payload-hex HEX`, written last.
    std::optional<std::string> payload;
    std::vector<std::string> notes;
};
struct PacketParse {
    PacketSpec packet;
    std::vector<std::string> errors;
    bool ok() const noexcept { return errors.empty(); }
};
PacketParse parse_packet(std::string_view text);

/// `TCP 198.18.0.100:40000 -> 198.18.0.10:80 on outside`, the form parse_packet reads.
std::string format_packet(const dp::PacketKey& k);

}  // namespace moat::ctl
