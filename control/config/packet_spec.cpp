#include "control/config/packet_spec.h"

#include <algorithm>
#include <cctype>

namespace moat::ctl {

using dp::Addr;
using dp::Family;

namespace {

/// `host[:port]` of a packet: a concrete address, no wildcards.
bool parse_endpoint(std::string_view s, const char* what, Family& fam, Addr& addr,
                    std::optional<std::uint16_t>& port, std::vector<std::string>& errors) {
    std::string_view host = s, port_text;
    bool has_port = false;
    if (!s.empty() && s[0] == '[') {
        const auto close = s.find(']');
        if (close == std::string_view::npos) {
            errors.push_back(std::string(what) + " " + quoted(s) + ": '[' without ']'");
            return false;
        }
        host = s.substr(0, close + 1);
        if (close + 1 < s.size()) {
            if (s[close + 1] != ':') {
                errors.push_back(std::string(what) + " " + quoted(s) + ": expected ':PORT' after ']'");
                return false;
            }
            has_port = true;
            port_text = s.substr(close + 2);
        }
    } else if (const auto colon = s.find(':'); colon != std::string_view::npos) {
        if (s.find(':', colon + 1) != std::string_view::npos) {
            errors.push_back(std::string(what) + " " + quoted(s) +
                             ": write IPv6 addresses in brackets, e.g. [2001:db8::1]:80");
            return false;
        }
        host = s.substr(0, colon);
        has_port = true;
        port_text = s.substr(colon + 1);
    }
    const auto a = host.starts_with("[") ? parse_addr(host)
                                         : (host.find(':') == std::string_view::npos ? parse_addr(host) : std::nullopt);
    if (!a) {
        errors.push_back(std::string(what) + " " + quoted(host) + " is not an IPv4 address or a bracketed IPv6 address");
        return false;
    }
    if (host.starts_with("[") != (a->family == Family::ipv6)) {
        errors.push_back(std::string(what) + " " + quoted(host) + ": only IPv6 addresses go in brackets");
        return false;
    }
    fam = a->family;
    addr = a->addr;
    if (has_port) {
        const auto p = parse_uint(port_text, 65535);
        if (!p) {
            errors.push_back(std::string(what) + " port " + quoted(port_text) + " is not a number from 0 to 65535");
            return false;
        }
        port = static_cast<std::uint16_t>(*p);
    }
    return true;
}

}  // namespace

namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/// Takes `payload "TEXT"` or `payload-hex HEX` off the end of a packet text.
void take_payload(std::string_view& text, std::optional<std::string>& payload, std::vector<std::string>& errors) {
    std::string lower(text);
    for (auto& c : lower)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::size_t at = std::string::npos;
    bool hex = false;
    for (std::size_t from = 0; (from = lower.find("payload", from)) != std::string::npos; from += 7) {
        const bool starts = from == 0 || lower[from - 1] == ' ';
        hex = lower.compare(from + 7, 4, "-hex") == 0;
        const std::size_t end = from + 7 + (hex ? 4 : 0);
        if (starts && (end == lower.size() || lower[end] == ' ')) {
            at = from;
            break;
        }
    }
    if (at == std::string::npos)
        return;
    const std::string_view value = trim(text.substr(at + 7 + (hex ? 4 : 0)));
    text = text.substr(0, at);
    std::string out;
    if (hex) {
        int high = -1;
        for (std::size_t i = 0; i < value.size(); ++i) {
            const char c = value[i];
            if (c == ' ' || c == ':')
                continue;
            const int d = hex_digit(c);
            if (d < 0) {
                errors.push_back("payload-hex " + quoted(value) + ": " + quoted(utf8_char_at(value, i)) + " is not a hex digit");
                return;
            }
            if (high < 0) {
                high = d;
            } else {
                out.push_back(static_cast<char>(high << 4 | d));
                high = -1;
            }
        }
        if (high >= 0 || out.empty()) {
            errors.push_back("payload-hex " + quoted(value) + ": write an even number of hex digits, e.g. payload-hex 474554");
            return;
        }
        payload = out;
        return;
    }
    if (value.size() < 2 || value.front() != '"' || value.back() != '"') {
        errors.push_back("payload " + quoted(value) + ": write the payload in double quotes, e.g. payload \"GET /admin HTTP/1.1\"");
        return;
    }
    const std::string_view body = value.substr(1, value.size() - 2);
    for (std::size_t i = 0; i < body.size(); ++i) {
        if (body[i] != '\\') {
            out.push_back(body[i]);
            continue;
        }
        if (++i == body.size()) {
            errors.push_back("payload ends in a lone backslash; write \\\\ for one");
            return;
        }
        switch (body[i]) {
        case 'r': out.push_back('\r'); break;
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case '0': out.push_back('\0'); break;
        case '\\':
        case '"': out.push_back(body[i]); break;
        case 'x': {
            const int h = i + 2 < body.size() ? hex_digit(body[i + 1]) : -1;
            const int l = i + 2 < body.size() ? hex_digit(body[i + 2]) : -1;
            if (h < 0 || l < 0) {
                errors.push_back("payload: \\x needs two hex digits (\\x90)");
                return;
            }
            out.push_back(static_cast<char>(h << 4 | l));
            i += 2;
            break;
        }
        default:
            errors.push_back(std::string("payload: unknown escape \\") + body[i] + " (\\r \\n \\t \\0 \\\\ \\\" \\xHH)");
            return;
        }
    }
    payload = out;
}

}  // namespace

PacketParse parse_packet(std::string_view text) {
    PacketParse r;
    auto& errors = r.errors;
    auto& k = r.packet.key;
    take_payload(text, r.packet.payload, errors);
    if (!errors.empty())
        return r;
    std::vector<std::string_view> toks;
    for (auto t : split(trim(text), ' '))
        if (!trim(t).empty())
            toks.push_back(trim(t));
    // Accept "a->b" and "a -> b" alike.
    std::vector<std::string_view> norm;
    for (auto t : toks) {
        const auto arrow = t.find("->");
        if (arrow == std::string_view::npos || t == "->") {
            norm.push_back(t);
            continue;
        }
        if (arrow > 0)
            norm.push_back(t.substr(0, arrow));
        norm.push_back("->");
        if (arrow + 2 < t.size())
            norm.push_back(t.substr(arrow + 2));
    }
    const char* usage =
        "write a packet as PROTO SRC[:PORT] -> DST[:PORT] [icmp|icmpv6 TYPE/CODE] [on outside|inside] "
        "[payload \"TEXT\" | payload-hex HEX]";
    if (norm.size() < 4 || norm[2] != "->") {
        errors.push_back(quoted(trim(text)) + ": " + usage);
        return r;
    }
    const auto proto = parse_proto(norm[0]);
    if (!proto) {
        errors.push_back("protocol " + quoted(norm[0]) + " is unknown (tcp, udp, icmp, icmpv6, sctp, gre, esp, ah or 0-255)");
        return r;
    }
    k.proto = *proto;
    Family sf{}, df{};
    std::optional<std::uint16_t> sport, dport;
    const bool ok_src = parse_endpoint(norm[1], "source", sf, k.src, sport, errors);
    const bool ok_dst = parse_endpoint(norm[3], "destination", df, k.dst, dport, errors);
    if (!ok_src || !ok_dst)
        return r;
    if (sf != df) {
        errors.push_back("source and destination mix IPv4 and IPv6");
        return r;
    }
    k.family = sf;
    std::optional<unsigned> itype, icode;
    for (std::size_t i = 4; i < norm.size(); i += 2) {
        if (i + 1 >= norm.size()) {
            errors.push_back(quoted(norm[i]) + " needs a value; " + usage);
            return r;
        }
        if (iequals(norm[i], "icmp") || iequals(norm[i], "icmpv6") || iequals(norm[i], "icmp6")) {  // either word, either family
            const auto slash = norm[i + 1].find('/');
            itype = parse_uint(norm[i + 1].substr(0, slash), 255);
            icode = slash == std::string_view::npos ? std::optional<unsigned>(0u)
                                                    : parse_uint(norm[i + 1].substr(slash + 1), 255);
            if (!itype || !icode) {
                errors.push_back(std::string(norm[i]) + " " + quoted(norm[i + 1]) + " is not TYPE or TYPE/CODE (0-255)");
                return r;
            }
        } else if (iequals(norm[i], "on")) {
            if (iequals(norm[i + 1], "outside"))
                k.ingress = dp::Ingress::outside;
            else if (iequals(norm[i + 1], "inside"))
                k.ingress = dp::Ingress::inside;
            else {
                errors.push_back("on " + quoted(norm[i + 1]) + ": write on outside or on inside");
                return r;
            }
            r.packet.ingress_given = true;
        } else {
            errors.push_back("unexpected " + quoted(norm[i]) + "; " + usage);
            return r;
        }
    }
    if (dp::proto_has_ports(k.proto)) {
        if (!dport) {
            errors.push_back(proto_name(k.proto) + " needs a destination port: DST:PORT");
            return r;
        }
        if (!sport) {
            sport = 49152;
            r.packet.notes.push_back("no source port given: using 49152");
        }
        k.has_ports = true;
        k.sport = *sport;
        k.dport = *dport;
    } else if (sport || dport) {
        errors.push_back("protocol " + proto_name(k.proto) + " has no ports");
        return r;
    }
    if (dp::proto_is_icmp(k.proto)) {
        if ((k.proto == dp::kProtoIcmp) != (k.family == Family::ipv4)) {
            errors.push_back(k.proto == dp::kProtoIcmp ? "ICMP is IPv4's: use icmpv6 with IPv6 addresses"
                                                   : "ICMPV6 is IPv6's: use icmp with IPv4 addresses");
            return r;
        }
        if (!itype) {
            // Echo request is what an operator usually means by "ping".
            itype = k.proto == dp::kProtoIcmp ? 8u : 128u;
            icode = 0u;
            r.packet.notes.push_back("no icmp type given: using echo request " + std::to_string(*itype) + "/0");
        }
        k.has_icmp = true;
        k.icmp_type = static_cast<std::uint8_t>(*itype);
        k.icmp_code = static_cast<std::uint8_t>(*icode);
    } else if (itype) {
        errors.push_back("icmp TYPE/CODE goes only with icmp or icmpv6");
    }
    return r;
}

std::string format_packet(const dp::PacketKey& k) {
    const auto ep = [&](const Addr& a, std::uint16_t port) {
        std::string s = k.family == Family::ipv4 ? format_addr(k.family, a) : "[" + format_addr(k.family, a) + "]";
        if (k.has_ports)
            s += ":" + std::to_string(port);
        return s;
    };
    std::string s = proto_name(k.proto) + " " + ep(k.src, k.sport) + " -> " + ep(k.dst, k.dport);
    if (k.has_icmp)
        s += " icmp " + std::to_string(k.icmp_type) + "/" + std::to_string(k.icmp_code);
    s += k.ingress == dp::Ingress::outside ? " on outside" : " on inside";
    return s;
}

}  // namespace moat::ctl
