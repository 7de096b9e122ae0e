// From a validated policy to ranked, expanded filter entries (DESIGN section 4).
//
// Every filter of every rule is expanded (mirrored -> two entries; `me` -> one entry per address;
// `*` -> one entry per address family) and ranked by its specificity key, higher first. Ties go
// to the earlier filter line, then the original before its mirror, then the earlier rule, then
// the expansion order. The resulting order is strict and total; an entry's rank is its index.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "control/config/model.h"
#include "dataplane/entry.h"

namespace moat::ctl {

/// The specificity key; a greater key ranks first. Field names follow DESIGN section 4.
struct SpecKey {
    std::uint16_t a = 0;  ///< src.len + dst.len
    std::uint8_t b = 0;   ///< max(src.len, dst.len)
    std::uint8_t c = 0;   ///< protocol given
    std::uint8_t d = 0;   ///< ps(sport) + ps(dport)
    std::uint8_t e = 0;   ///< max(ps(sport), ps(dport))
    std::uint8_t f = 0;   ///< ICMP type given + ICMP code given
    std::uint8_t p = 0;   ///< payload pattern given
    std::uint8_t g = 0;   ///< block
    friend constexpr auto operator<=>(const SpecKey&, const SpecKey&) = default;
};

/// ps(): 0 for any port, 17 - ceil(log2(hi - lo + 1)) for a range (17 for one port).
unsigned port_specificity(bool any, dp::PortRange r) noexcept;

SpecKey spec_key(const dp::Entry& r) noexcept;

/// `A=32 B=32 C=1 D=17 E=17 F=0 P=0 G=0`
std::string format_key(const SpecKey& k);

/// Where an entry came from.
struct EntryOrigin {
    int rule = -1;    ///< index into Policy::rules
    int list = -1;    ///< index into Config::lists
    int filter = -1;  ///< index into FilterList::filters
    bool mirror = false;
    int expansion = 0;  ///< order among the entries of one filter half (me / family expansion)
};

struct RankedEntry {
    SpecKey key;
    EntryOrigin origin;
};

struct CompiledPolicy {
    int policy = -1;                  ///< index into Config::policies; -1: block everything
    std::vector<dp::Entry> rules;      ///< ranked: rules[rank]
    std::vector<RankedEntry> info;    ///< parallel to rules
    std::vector<PayloadSpec> patterns;  ///< indexed by dp::Entry::payload
};

/// The entries one filter half expands to, in expansion order, without ranks. Empty when no
/// address combination is possible (e.g. an IPv4 destination and only IPv6 `me` addresses).
std::vector<dp::Entry> expand_filter(const FilterSpec& f, const std::vector<ParsedAddr>& me,
                                    dp::Action action, bool mirror);

/// Expands and ranks every filter of policy `policy` of a validated config (no errors left).
CompiledPolicy compile_policy(const Config& cfg, int policy);

/// The policy that blocks everything (nothing assigned): no rules, so nothing matches.
CompiledPolicy compile_block_all();

}  // namespace moat::ctl
