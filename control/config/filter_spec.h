// The filter grammar of DESIGN section 3 (ipsecpol-compatible, extended), and the textual forms
// of addresses, protocols and packets shared by every command that reads them.
//
//   filter := src DIR dst [ SP option ]*
//   src    := host [ "/" mask ] [ ":" ports ]
//   dst    := host [ "/" mask ] [ ":" [ ports ] [ ":" proto [ ":" icmp ] ] ]
//
// Parsing is pure: no appliance settings are needed (`me` stays symbolic until compile time).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/config/text.h"
#include "dataplane/wire.h"
#include "dataplane/entry.h"

namespace moat::ctl {

enum class HostKind : std::uint8_t {
    any,     ///< `*`: any address of either family
    me,      ///< `me` or `0`: the [appliance] me addresses
    prefix,  ///< an address with a prefix length (host, octet wildcard or mask)
};

struct HostSpec {
    HostKind kind = HostKind::any;
    dp::Family family = dp::Family::ipv4;  ///< kind == prefix only
    dp::Addr addr;                         ///< kind == prefix only, masked to len
    std::uint8_t len = 0;                  ///< kind == prefix only
};

struct PortSpec {
    bool any = true;
    dp::PortRange range;
};

struct PayloadSpec {
    std::string regex;  ///< between the slashes, with `\/` turned back into `/`
    std::string flags;  ///< subset of "ism"
};

struct FilterSpec {
    HostSpec src;
    HostSpec dst;
    bool mirrored = false;  ///< `+`; `=` is one direction only
    PortSpec sport;
    PortSpec dport;
    std::optional<std::uint8_t> proto;
    std::optional<std::uint8_t> icmp_type;
    std::optional<std::uint8_t> icmp_code;
    dp::OnPort on = dp::OnPort::any;
    std::optional<PayloadSpec> payload;
};

/// The parsed filter, or every problem found in it (messages without file and line).
struct FilterParse {
    FilterSpec spec;
    std::vector<std::string> errors;
    bool ok() const noexcept { return errors.empty(); }
};

FilterParse parse_filter(std::string_view text);

/// Splits a command-line argument or config value into filter texts: a new filter starts at
/// every token that is not an option (`on=...`, `payload=/.../`). Used by `moatctl ipsecpol -f`.
std::vector<std::string> split_filters(std::string_view text);

/// `filter` with a port written as 0 made empty: in Windows filter specs port 0 means any port
/// (`moatctl ipsecpol -f 10.0.11.0/255.255.255.0+131.107.1.1:0:TCP`), where Moat's own grammar
/// reads it as the value 0. Sets `changed` when it rewrote one. Text it cannot read stays as is.
std::string windows_port_zero_as_any(std::string_view filter, bool* changed = nullptr);

/// An address alone: IPv4 dotted quad, or IPv6 with or without brackets.
struct ParsedAddr {
    dp::Family family;
    dp::Addr addr;
};
std::optional<ParsedAddr> parse_addr(std::string_view text);

std::string format_addr(dp::Family f, const dp::Addr& a);
/// `198.18.0.0/24`, `198.18.0.10` (host), `[2001:db8::]/32`, `*` (len 0).
std::string format_prefix(dp::Family f, const dp::Addr& a, unsigned len);

/// Protocol by name (TCP, UDP, ICMP, ICMPV6, SCTP, GRE, ESP, AH; any case) or number 0..255.
std::optional<std::uint8_t> parse_proto(std::string_view text);
/// Upper-case name for the named protocols, the decimal number otherwise.
std::string proto_name(std::uint8_t p);

}  // namespace moat::ctl
