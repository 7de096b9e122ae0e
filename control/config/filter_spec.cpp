#include "control/config/filter_spec.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>

namespace moat::ctl {

namespace {

using dp::Addr;
using dp::Family;

/// IPv4 dotted quad, optionally with trailing octet wildcards (`10.0.*.*`). Returns the address
/// and the number of leading octets that were given (4 for a plain address).
struct V4Parse {
    Addr addr;
    unsigned given_octets = 4;
};
std::optional<V4Parse> parse_v4(std::string_view s, bool allow_wildcards) {
    // Four parts, split in place (this runs for every host of every filter of a policy).
    std::array<std::string_view, 4> parts;
    for (unsigned i = 0; i < 4; ++i) {
        const auto dot = s.find('.');
        if ((dot == std::string_view::npos) != (i == 3))
            return std::nullopt;
        parts[i] = s.substr(0, dot);
        s.remove_prefix(dot == std::string_view::npos ? s.size() : dot + 1);
    }
    V4Parse r;
    bool wild = false;
    for (unsigned i = 0; i < 4; ++i) {
        if (parts[i] == "*" && allow_wildcards) {
            if (!wild)
                r.given_octets = i;
            wild = true;
            continue;
        }
        if (wild)
            return std::nullopt;  // a number after a wildcard: 10.*.0.1
        const auto v = parse_uint(parts[i], 255);
        if (!v)
            return std::nullopt;
        r.addr.bytes[i] = static_cast<std::uint8_t>(*v);
    }
    return r;
}

std::optional<Addr> parse_v6(std::string_view s) {
    if (s.empty() || s.size() > INET6_ADDRSTRLEN)
        return std::nullopt;
    const std::string z(s);
    Addr a;
    if (inet_pton(AF_INET6, z.c_str(), a.bytes.data()) != 1)
        return std::nullopt;
    return a;
}

/// Prefix length of a contiguous dotted-quad mask, or nullopt.
std::optional<unsigned> dotted_mask_len(const Addr& m) {
    const std::uint32_t v = (std::uint32_t{m.bytes[0]} << 24) | (std::uint32_t{m.bytes[1]} << 16) |
                            (std::uint32_t{m.bytes[2]} << 8) | m.bytes[3];
    const unsigned len = static_cast<unsigned>(std::countl_one(v));
    if (len < 32 && (v << len) != 0)
        return std::nullopt;
    return len;
}

/// One side of a filter split into its pieces: host, optional mask, and the ':' fields after it.
struct Side {
    std::string_view host;
    std::optional<std::string_view> mask;
    std::vector<std::string_view> fields;
};

std::optional<Side> split_side(std::string_view s, const char* what, std::vector<std::string>& errors) {
    Side side;
    std::size_t i = 0;
    if (!s.empty() && s[0] == '[') {
        i = s.find(']');
        if (i == std::string_view::npos) {
            errors.push_back(std::string(what) + " " + quoted(s) + ": '[' without ']'");
            return std::nullopt;
        }
        ++i;
    } else {
        // `2001:db8::1` without brackets; `0::6` is `me`, any port, protocol 6, so a side that
        // starts with a valid host is never read as IPv6.
        const auto first = s.substr(0, std::min(s.find('/'), s.find(':')));
        // A dotted host is IPv4 (parse_host checks it): only the others can be unbracketed IPv6.
        const bool host_first = first == "*" || first == "0" || iequals(first, "me") ||
                                first.find('.') != std::string_view::npos;
        if (!host_first && parse_v6(s.substr(0, s.find('/')))) {
            errors.push_back(std::string(what) + " " + quoted(s.substr(0, s.find('/'))) +
                             ": write IPv6 addresses in brackets, e.g. [2001:db8::1]");
            return std::nullopt;
        }
        i = std::min(s.find('/'), s.find(':'));
        if (i == std::string_view::npos)
            i = s.size();
    }
    side.host = s.substr(0, i);
    s.remove_prefix(i);
    if (!s.empty() && s[0] == '/') {
        const auto j = s.find(':');
        side.mask = s.substr(1, j == std::string_view::npos ? std::string_view::npos : j - 1);
        s.remove_prefix(j == std::string_view::npos ? s.size() : j);
    }
    if (!s.empty()) {
        if (s[0] != ':') {
            errors.push_back(std::string(what) + ": unexpected " + quoted(s) + " after the address");
            return std::nullopt;
        }
        side.fields = split(s.substr(1), ':');
    }
    if (side.host.empty()) {
        errors.push_back(std::string(what) + " address is missing");
        return std::nullopt;
    }
    return side;
}

std::optional<HostSpec> parse_host(const Side& side, const char* what, std::vector<std::string>& errors) {
    HostSpec h;
    const std::string_view t = side.host;
    const auto fail = [&](std::string msg) {
        errors.push_back(std::string(what) + " " + std::move(msg));
        return std::nullopt;
    };
    if (t == "*" || t == "0" || iequals(t, "me")) {
        h.kind = t == "*" ? HostKind::any : HostKind::me;
        if (side.mask)
            return fail(quoted(std::string(t) + "/" + std::string(*side.mask)) + ": " + quoted(t) +
                        " takes no mask");
        return h;
    }
    h.kind = HostKind::prefix;
    unsigned given_len = 0;
    if (t.front() == '[') {
        const auto a = parse_v6(t.substr(1, t.size() - 2));
        if (!a)
            return fail(quoted(t) + " is not an IPv6 address");
        h.family = Family::ipv6;
        h.addr = *a;
        given_len = 128;
    } else if (t.find(':') != std::string_view::npos) {  // every IPv6 address has one
        return fail(quoted(t) + ": write IPv6 addresses in brackets, e.g. [2001:db8::1]");
    } else {
        const auto v4 = parse_v4(t, true);
        if (!v4)
            return fail(quoted(t) + " is not an IPv4 address (a.b.c.d, trailing octets may be *)");
        h.family = Family::ipv4;
        h.addr = v4->addr;
        given_len = 8 * v4->given_octets;
        if (v4->given_octets < 4 && side.mask)
            return fail(quoted(t) + ": use either octet wildcards or a mask, not both");
    }
    h.len = static_cast<std::uint8_t>(given_len);
    if (side.mask) {
        const std::string_view m = *side.mask;
        const unsigned bits = dp::addr_bits(h.family);
        if (m.find('.') != std::string_view::npos) {
            if (h.family == Family::ipv6)
                return fail(quoted(std::string(t) + "/" + std::string(m)) + ": IPv6 takes a prefix length, not a dotted mask");
            const auto ma = parse_v4(m, false);
            if (!ma)
                return fail("mask " + quoted(m) + " is not a dotted quad");
            const auto len = dotted_mask_len(ma->addr);
            if (!len)
                return fail("mask " + quoted(m) + " is not contiguous (ones, then zeros)");
            h.len = static_cast<std::uint8_t>(*len);
        } else {
            const auto len = parse_uint(m, bits);
            if (!len)
                return fail("prefix length " + quoted(m) + " is not a number from 0 to " +
                            std::to_string(bits));
            h.len = static_cast<std::uint8_t>(*len);
        }
        const Addr net = dp::mask_addr(h.addr, h.len);
        if (!(net == h.addr))
            return fail(quoted(std::string(t) + "/" + std::string(m)) + " has host bits set: the network is " +
                        format_prefix(h.family, net, h.len));
    }
    return h;
}

std::optional<PortSpec> parse_ports(std::string_view s, const char* what, std::vector<std::string>& errors) {
    PortSpec p;
    if (s.empty())
        return p;
    p.any = false;
    const auto dash = s.find('-');
    const std::string_view lo = s.substr(0, dash);
    const std::string_view hi = dash == std::string_view::npos ? lo : s.substr(dash + 1);
    const auto l = parse_uint(lo, 65535);
    const auto h = parse_uint(hi, 65535);
    if (!l || !h) {
        errors.push_back(std::string(what) + " " + quoted(s) +
                         " is not a port (0-65535) or a range LO-HI");
        return std::nullopt;
    }
    if (*l > *h) {
        errors.push_back(std::string(what) + " range " + quoted(s) + " is reversed: write " +
                         std::to_string(*h) + "-" + std::to_string(*l));
        return std::nullopt;
    }
    p.range = {static_cast<std::uint16_t>(*l), static_cast<std::uint16_t>(*h)};
    return p;
}

struct NamedProto {
    std::string_view name;
    std::uint8_t number;
};
constexpr std::array<NamedProto, 9> kProtos{{
    {"TCP", dp::kProtoTcp}, {"UDP", dp::kProtoUdp}, {"ICMP", dp::kProtoIcmp}, {"ICMPV6", dp::kProtoIcmpv6},
    {"ICMP6", dp::kProtoIcmpv6}, {"SCTP", dp::kProtoSctp}, {"GRE", dp::kProtoGre}, {"ESP", dp::kProtoEsp}, {"AH", dp::kProtoAh},
}};

/// Tokens of a filter text: the core spec, then options. `payload=/.../flags` may hold spaces.
std::vector<std::string_view> tokenize(std::string_view s, std::vector<std::string>* errors) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    const auto is_space = [](char c) { return c == ' ' || c == '\t'; };
    while (i < s.size()) {
        if (is_space(s[i])) {
            ++i;
            continue;
        }
        const std::size_t start = i;
        if (s.substr(i).starts_with("payload=/")) {
            i += 9;
            while (i < s.size() && s[i] != '/')
                i += s[i] == '\\' ? 2 : 1;
            if (i >= s.size()) {
                if (errors)
                    errors->push_back("payload pattern " + quoted(s.substr(start)) +
                                      " has no closing '/'");
                else
                    out.push_back(s.substr(start));
                return out;
            }
            ++i;  // the closing slash; flags follow up to the next space
        }
        while (i < s.size() && !is_space(s[i]))
            ++i;
        out.push_back(s.substr(start, i - start));
    }
    return out;
}

bool is_option(std::string_view tok) {
    return tok.starts_with("on=") || tok.starts_with("payload=");
}

void parse_option(std::string_view tok, FilterSpec& f, std::vector<std::string>& errors,
                  bool& seen_on, bool& seen_payload) {
    if (tok.starts_with("on=")) {
        if (seen_on)
            errors.push_back("option on= is given twice");
        seen_on = true;
        const auto v = tok.substr(3);
        if (iequals(v, "outside"))
            f.on = dp::OnPort::outside;
        else if (iequals(v, "inside"))
            f.on = dp::OnPort::inside;
        else
            errors.push_back("on=" + std::string(v) + ": write on=outside or on=inside");
        return;
    }
    if (tok.starts_with("payload=")) {
        if (seen_payload)
            errors.push_back("option payload= is given twice");
        seen_payload = true;
        std::string_view v = tok.substr(8);
        const auto close = v.size() >= 2 && v[0] == '/' ? v.rfind('/') : std::string_view::npos;
        if (close == std::string_view::npos || close == 0) {
            errors.push_back("payload " + quoted(v) + ": write payload=/regex/flags");
            return;
        }
        PayloadSpec p;
        for (std::size_t i = 1; i < close; ++i) {
            if (v[i] == '\\' && i + 1 < close && v[i + 1] == '/') {
                p.regex += '/';
                ++i;
            } else {
                p.regex += v[i];
            }
        }
        p.flags = std::string(v.substr(close + 1));
        if (p.regex.empty())
            errors.push_back("payload pattern is empty");
        for (std::size_t i = 0; i < p.flags.size(); ++i)
            if (const char c = p.flags[i]; c != 'i' && c != 's' && c != 'm') {
                errors.push_back("payload flag " + quoted(valid_utf8(utf8_char_at(p.flags, i))) +
                                 " is unknown (flags are i caseless, s dot-all, m multi-line)");
                break;
            }
        f.payload = std::move(p);
        return;
    }
    errors.push_back("unknown option " + quoted(tok) +
                     " (options are on=outside|inside and payload=/regex/flags)");
}

/// Family constraint of a host: nullopt for `*` and `me` (decided at expansion).
std::optional<Family> host_family(const HostSpec& h) {
    return h.kind == HostKind::prefix ? std::optional(h.family) : std::nullopt;
}

/// Where a filter's direction is: the first '+' or '=' outside brackets, or npos.
std::size_t direction_at(std::string_view core) {
    for (std::size_t i = 0, depth = 0; i < core.size(); ++i) {
        if (core[i] == '[')
            ++depth;
        else if (core[i] == ']' && depth > 0)
            --depth;
        else if (depth == 0 && (core[i] == '+' || core[i] == '='))
            return i;
    }
    return std::string_view::npos;
}

}  // namespace

std::string windows_port_zero_as_any(std::string_view filter, bool* changed) {
    const std::string_view text = trim(filter);
    const std::size_t core_end = std::min(text.size(), text.find_first_of(" \t"));
    std::string core(text.substr(0, core_end));
    const std::size_t dir = direction_at(core);
    if (dir == std::string::npos)
        return std::string(filter);
    // The port of a side is its first ':' field after the host (and mask); a port of 0, in
    // any number of digits, becomes empty, and a ':' left with nothing after it goes too.
    const auto side = [&](std::string s, bool& did) {
        std::size_t host_end = 0;
        if (!s.empty() && s[0] == '[') {
            host_end = s.find(']');
            if (host_end == std::string::npos)
                return s;
            ++host_end;
        }
        const std::size_t colon = s.find(':', host_end);
        if (colon == std::string::npos)
            return s;
        const std::size_t end = std::min(s.size(), s.find(':', colon + 1));
        const std::string_view port = std::string_view(s).substr(colon + 1, end - colon - 1);
        if (port.empty() || port.find_first_not_of('0') != std::string_view::npos)
            return s;
        did = true;
        s.erase(colon + 1, end - colon - 1);
        if (colon + 1 == s.size())
            s.erase(colon);
        return s;
    };
    bool did = false;
    std::string out = side(core.substr(0, dir), did) + core[dir] + side(core.substr(dir + 1), did);
    if (changed)
        *changed = did;
    if (!did)
        return std::string(filter);
    return out + std::string(text.substr(core_end));
}

FilterParse parse_filter(std::string_view text) {
    FilterParse r;
    auto& errors = r.errors;
    auto& f = r.spec;
    const auto toks = tokenize(trim(text), &errors);
    if (toks.empty()) {
        errors.push_back("empty filter");
        return r;
    }
    const std::string_view core = toks[0];
    if (is_option(core)) {
        errors.push_back("filter starts with an option: write SRC+DST or SRC=DST first");
        return r;
    }
    bool seen_on = false, seen_payload = false;
    for (std::size_t i = 1; i < toks.size(); ++i)
        parse_option(toks[i], f, errors, seen_on, seen_payload);

    std::size_t dir = direction_at(core);
    if (dir == std::string_view::npos)  // an unclosed '[' hides the direction: take the first one
        dir = core.find_first_of("+=");
    if (dir == std::string_view::npos) {
        errors.push_back(quoted(core) + " has no direction: write SRC+DST (mirrored) or SRC=DST (one way)");
        return r;
    }
    f.mirrored = core[dir] == '+';
    const auto src_side = split_side(core.substr(0, dir), "source", errors);
    const auto dst_side = split_side(core.substr(dir + 1), "destination", errors);
    if (!src_side || !dst_side)
        return r;

    if (const auto h = parse_host(*src_side, "source", errors))
        f.src = *h;
    if (const auto h = parse_host(*dst_side, "destination", errors))
        f.dst = *h;

    if (src_side->fields.size() > 1)
        errors.push_back("source " + quoted(core.substr(0, dir)) +
                         " takes only a port; the protocol goes after the destination (SRC+DST:PORT:PROTO)");
    else if (src_side->fields.size() == 1)
        if (const auto p = parse_ports(src_side->fields[0], "source port", errors))
            f.sport = *p;

    const auto& df = dst_side->fields;
    if (df.size() > 3)
        errors.push_back("destination " + quoted(core.substr(dir + 1)) +
                         " has too many ':' fields (HOST:PORTS:PROTO:ICMP at most)");
    if (!df.empty())
        if (const auto p = parse_ports(df[0], "destination port", errors))
            f.dport = *p;
    if (df.size() > 1) {
        if (df[1].empty())
            errors.push_back("protocol is empty after ':' (write TCP, UDP, ICMP, ... or a number)");
        else if (const auto p = parse_proto(df[1]))
            f.proto = *p;
        else
            errors.push_back("protocol " + quoted(df[1]) +
                             " is unknown (TCP, UDP, ICMP, ICMPV6, SCTP, GRE, ESP, AH or 0-255)");
    }
    if (df.size() > 2) {
        const auto slash = df[2].find('/');
        const auto t = parse_uint(df[2].substr(0, slash), 255);
        const auto c = slash == std::string_view::npos ? std::optional<unsigned>(std::nullopt)
                                                       : parse_uint(df[2].substr(slash + 1), 255);
        if (!t || (slash != std::string_view::npos && !c))
            errors.push_back("ICMP field " + quoted(df[2]) + " is not TYPE or TYPE/CODE (0-255)");
        else {
            f.icmp_type = static_cast<std::uint8_t>(*t);
            if (c)
                f.icmp_code = static_cast<std::uint8_t>(*c);
        }
    }
    if (!errors.empty())
        return r;

    // Cross-field rules.
    const bool ports = !f.sport.any || !f.dport.any;
    if (ports && !f.proto)
        errors.push_back("ports need a protocol: add :TCP, :UDP or :SCTP after the destination port");
    else if (ports && !dp::proto_has_ports(*f.proto))
        errors.push_back("protocol " + proto_name(*f.proto) + " has no ports (ports go with TCP, UDP or SCTP)");
    if (f.icmp_type && !(f.proto && dp::proto_is_icmp(*f.proto)))
        errors.push_back("ICMP type/code needs protocol ICMP or ICMPV6");
    const auto sf = host_family(f.src), df_ = host_family(f.dst);
    if (sf && df_ && *sf != *df_)
        errors.push_back("source and destination mix IPv4 and IPv6");
    const auto fam = sf ? sf : df_;
    if (fam && f.proto == dp::kProtoIcmp && *fam == Family::ipv6)
        errors.push_back("ICMP is IPv4's: use ICMPV6 with IPv6 addresses");
    if (fam && f.proto == dp::kProtoIcmpv6 && *fam == Family::ipv4)
        errors.push_back("ICMPV6 is IPv6's: use ICMP with IPv4 addresses");
    if (f.payload && !f.proto)
        errors.push_back("a payload pattern needs a protocol (e.g. :TCP): the payload starts after the transport header");
    return r;
}

std::vector<std::string> split_filters(std::string_view text) {
    std::vector<std::string> out;
    for (const auto tok : tokenize(trim(text), nullptr)) {
        if (is_option(tok) && !out.empty())
            out.back() += " " + std::string(tok);
        else
            out.emplace_back(tok);
    }
    return out;
}

std::optional<ParsedAddr> parse_addr(std::string_view t) {
    t = trim(t);
    if (t.size() >= 2 && t.front() == '[' && t.back() == ']')
        t = t.substr(1, t.size() - 2);
    if (t.find(':') != std::string_view::npos) {
        if (const auto a = parse_v6(t))
            return ParsedAddr{Family::ipv6, *a};
        return std::nullopt;
    }
    if (const auto a = parse_v4(t, false))
        return ParsedAddr{Family::ipv4, a->addr};
    return std::nullopt;
}

std::string format_addr(Family f, const Addr& a) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(f == Family::ipv4 ? AF_INET : AF_INET6, a.bytes.data(), buf, sizeof buf);
    return buf;
}

std::string format_prefix(Family f, const Addr& a, unsigned len) {
    if (len == 0)
        return "*";
    const std::string s = f == Family::ipv4 ? format_addr(f, a) : "[" + format_addr(f, a) + "]";
    return len == dp::addr_bits(f) ? s : s + "/" + std::to_string(len);
}

std::optional<std::uint8_t> parse_proto(std::string_view text) {
    for (const auto& p : kProtos)
        if (iequals(text, p.name))
            return p.number;
    if (const auto v = parse_uint(text, 255))
        return static_cast<std::uint8_t>(*v);
    return std::nullopt;
}

std::string proto_name(std::uint8_t p) {
    for (const auto& n : kProtos)
        if (n.number == p)
            return std::string(n.name);
    return std::to_string(p);
}

}  // namespace moat::ctl
