// The filter grammar (DESIGN section 3): every form accepted and rejected, with exact messages.
#include "control/config/filter_spec.h"
#include "control/config/packet_spec.h"

#include <gtest/gtest.h>

namespace moat::ctl {
namespace {

using dp::Family;

FilterSpec ok(std::string_view text) {
    const FilterParse p = parse_filter(text);
    EXPECT_TRUE(p.ok()) << text << ": " << (p.errors.empty() ? "" : p.errors.front());
    return p.spec;
}

std::vector<std::string> errors(std::string_view text) { return parse_filter(text).errors; }

dp::Addr v4(std::string_view s) { return parse_addr(s).value().addr; }
dp::Addr v6(std::string_view s) { return parse_addr(s).value().addr; }

// --- the seed examples, as written -------------------------------------------------------------

TEST(FilterGrammar, SeedMirroredHostPortProto) {
    const auto f = ok("*+131.107.1.1:80:TCP");
    EXPECT_TRUE(f.mirrored);
    EXPECT_EQ(f.src.kind, HostKind::any);
    EXPECT_EQ(f.dst.kind, HostKind::prefix);
    EXPECT_EQ(f.dst.family, Family::ipv4);
    EXPECT_EQ(f.dst.addr, v4("131.107.1.1"));
    EXPECT_EQ(f.dst.len, 32);
    EXPECT_TRUE(f.sport.any);
    EXPECT_FALSE(f.dport.any);
    EXPECT_EQ(f.dport.range, (dp::PortRange{80, 80}));
    EXPECT_EQ(f.proto, dp::kProtoTcp);
    EXPECT_FALSE(f.icmp_type);
    EXPECT_EQ(f.on, dp::OnPort::any);
    EXPECT_FALSE(f.payload);
}

TEST(FilterGrammar, SeedSourceHostToAnyPort) {
    const auto f = ok("131.107.1.2+*:25:TCP");
    EXPECT_EQ(f.src.kind, HostKind::prefix);
    EXPECT_EQ(f.src.addr, v4("131.107.1.2"));
    EXPECT_EQ(f.dst.kind, HostKind::any);
    EXPECT_EQ(f.dport.range, (dp::PortRange{25, 25}));
    EXPECT_EQ(f.proto, dp::kProtoTcp);
}

TEST(FilterGrammar, SeedAddressOnly) {
    const auto f = ok("*+131.107.1.1");
    EXPECT_TRUE(f.sport.any);
    EXPECT_TRUE(f.dport.any);
    EXPECT_FALSE(f.proto);
}

TEST(FilterGrammar, SeedMeWithEmptyPortSlot) {
    const auto f = ok("0+*::TCP");
    EXPECT_EQ(f.src.kind, HostKind::me);
    EXPECT_EQ(f.dst.kind, HostKind::any);
    EXPECT_TRUE(f.dport.any);
    EXPECT_EQ(f.proto, dp::kProtoTcp);
}

TEST(FilterGrammar, SeedOneWayToMe) {
    const auto f = ok("*=0:1434:UDP");
    EXPECT_FALSE(f.mirrored);
    EXPECT_EQ(f.dst.kind, HostKind::me);
    EXPECT_EQ(f.dport.range, (dp::PortRange{1434, 1434}));
    EXPECT_EQ(f.proto, dp::kProtoUdp);
}

// --- hosts ---------------------------------------------------------------------------------

TEST(FilterGrammar, MeSpellings) {
    EXPECT_EQ(ok("me+*").src.kind, HostKind::me);
    EXPECT_EQ(ok("ME+*").src.kind, HostKind::me);
    EXPECT_EQ(ok("*=me").dst.kind, HostKind::me);
    EXPECT_EQ(ok("0=0").dst.kind, HostKind::me);
}

TEST(FilterGrammar, OctetWildcards) {
    auto f = ok("10.0.11.*+*");
    EXPECT_EQ(f.src.addr, v4("10.0.11.0"));
    EXPECT_EQ(f.src.len, 24);
    f = ok("10.0.*.*+*");
    EXPECT_EQ(f.src.len, 16);
    f = ok("10.*.*.*+*");
    EXPECT_EQ(f.src.len, 8);
    f = ok("*.*.*.*+*");
    EXPECT_EQ(f.src.kind, HostKind::prefix);
    EXPECT_EQ(f.src.family, Family::ipv4);
    EXPECT_EQ(f.src.len, 0);
}

TEST(FilterGrammar, MasksAndPrefixLengths) {
    auto f = ok("198.18.0.0/255.255.255.0+*");
    EXPECT_EQ(f.src.len, 24);
    f = ok("198.18.0.0/24+*");
    EXPECT_EQ(f.src.len, 24);
    f = ok("198.18.0.0/15=198.18.0.10/32");
    EXPECT_EQ(f.src.len, 15);
    EXPECT_EQ(f.dst.len, 32);
    f = ok("0.0.0.0/0+*");
    EXPECT_EQ(f.src.len, 0);
    f = ok("198.18.2.0/255.255.255.128+0:3389:TCP");
    EXPECT_EQ(f.src.len, 25);
    f = ok("198.18.0.1/255.255.255.255+*");
    EXPECT_EQ(f.src.len, 32);
}

TEST(FilterGrammar, Ipv6InBrackets) {
    auto f = ok("[2001:db8::1]+*:443:TCP");
    EXPECT_EQ(f.src.family, Family::ipv6);
    EXPECT_EQ(f.src.addr, v6("2001:db8::1"));
    EXPECT_EQ(f.src.len, 128);
    f = ok("[2001:db8::]/32+[2001:db8:0:1::10]:80:TCP");
    EXPECT_EQ(f.src.len, 32);
    EXPECT_EQ(f.dst.len, 128);
    EXPECT_EQ(f.dport.range, (dp::PortRange{80, 80}));
    f = ok("[fe80::]/10=*::ICMPV6:135");
    EXPECT_EQ(f.src.len, 10);
    EXPECT_EQ(f.icmp_type, 135);
}

// --- ports, protocols, ICMP ----------------------------------------------------------------

TEST(FilterGrammar, PortsAndRanges) {
    auto f = ok("*:1024-65535+198.18.0.10:80:TCP");
    EXPECT_FALSE(f.sport.any);
    EXPECT_EQ(f.sport.range, (dp::PortRange{1024, 65535}));
    f = ok("*+0:50000-50099:TCP");
    EXPECT_EQ(f.dport.range, (dp::PortRange{50000, 50099}));
    f = ok("*+0:0:UDP");  // port 0 is a value, never "any"
    EXPECT_FALSE(f.dport.any);
    EXPECT_EQ(f.dport.range, (dp::PortRange{0, 0}));
    f = ok("*:53+0::UDP");
    EXPECT_EQ(f.sport.range, (dp::PortRange{53, 53}));
    EXPECT_TRUE(f.dport.any);
    f = ok("*+0:9-9:SCTP");
    EXPECT_EQ(f.proto, dp::kProtoSctp);
}

TEST(FilterGrammar, ProtocolNamesAndNumbers) {
    EXPECT_EQ(ok("*+0::tcp").proto, dp::kProtoTcp);
    EXPECT_EQ(ok("*+0::Udp").proto, dp::kProtoUdp);
    EXPECT_EQ(ok("*+0::ICMP").proto, dp::kProtoIcmp);
    EXPECT_EQ(ok("*+*::ICMPV6").proto, dp::kProtoIcmpv6);
    EXPECT_EQ(ok("*+0::GRE").proto, 47);
    EXPECT_EQ(ok("*+0::ESP").proto, 50);
    EXPECT_EQ(ok("*+0::AH").proto, 51);
    EXPECT_EQ(ok("*+0::SCTP").proto, dp::kProtoSctp);
    EXPECT_EQ(ok("*+0::0").proto, 0);  // protocol 0 is a value (HOPOPT), never "any"
    EXPECT_EQ(ok("*+0::255").proto, 255);
    EXPECT_EQ(ok("*+0::6").proto, dp::kProtoTcp);
}

TEST(FilterGrammar, IcmpTypeAndCode) {
    auto f = ok("*=0::ICMP:8");
    EXPECT_EQ(f.icmp_type, 8);
    EXPECT_FALSE(f.icmp_code);
    f = ok("*=0::ICMP:3/4");
    EXPECT_EQ(f.icmp_type, 3);
    EXPECT_EQ(f.icmp_code, 4);
    f = ok("*=*::ICMPV6:128/0");
    EXPECT_EQ(f.icmp_type, 128);
    EXPECT_EQ(f.icmp_code, 0);
}

TEST(FilterGrammar, Options) {
    auto f = ok("*+0:80:TCP on=outside");
    EXPECT_EQ(f.on, dp::OnPort::outside);
    f = ok("*+0:80:TCP   on=inside");
    EXPECT_EQ(f.on, dp::OnPort::inside);
    f = ok("*+0:80:TCP payload=/GET \\/admin/i");
    ASSERT_TRUE(f.payload);
    EXPECT_EQ(f.payload->regex, "GET /admin");
    EXPECT_EQ(f.payload->flags, "i");
    f = ok("*+0:80:TCP payload=/a b\\x90{8}/sm on=outside");
    ASSERT_TRUE(f.payload);
    EXPECT_EQ(f.payload->regex, "a b\\x90{8}");
    EXPECT_EQ(f.payload->flags, "sm");
    EXPECT_EQ(f.on, dp::OnPort::outside);
}

// --- rejected forms, with their exact messages -----------------------------------------------

struct Rejected {
    const char* text;
    const char* message;
};

class FilterGrammarRejects : public ::testing::TestWithParam<Rejected> {};

TEST_P(FilterGrammarRejects, WithExactMessage) {
    const auto e = errors(GetParam().text);
    ASSERT_EQ(e.size(), 1u) << GetParam().text << (e.empty() ? "" : ": " + e.front());
    EXPECT_EQ(e.front(), GetParam().message) << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(
    All, FilterGrammarRejects,
    ::testing::Values(
        Rejected{"", "empty filter"},
        Rejected{"198.18.0.10", "'198.18.0.10' has no direction: write SRC+DST (mirrored) or SRC=DST (one way)"},
        Rejected{"*+198.18.0.256", "destination '198.18.0.256' is not an IPv4 address (a.b.c.d, trailing octets may be *)"},
        Rejected{"*+198.18.0", "destination '198.18.0' is not an IPv4 address (a.b.c.d, trailing octets may be *)"},
        Rejected{"*+198.018.0.1", "destination '198.018.0.1' is not an IPv4 address (a.b.c.d, trailing octets may be *)"},
        Rejected{"www.example.com+*", "source 'www.example.com' is not an IPv4 address (a.b.c.d, trailing octets may be *)"},
        Rejected{"10.*.0.1+*", "source '10.*.0.1' is not an IPv4 address (a.b.c.d, trailing octets may be *)"},
        Rejected{"10.0.0.*/24+*", "source '10.0.0.*': use either octet wildcards or a mask, not both"},
        Rejected{"198.18.0.0/255.0.255.0+*", "source mask '255.0.255.0' is not contiguous (ones, then zeros)"},
        Rejected{"198.18.0.0/255.255.0+*", "source mask '255.255.0' is not a dotted quad"},
        Rejected{"198.18.0.10/24+*", "source '198.18.0.10/24' has host bits set: the network is 198.18.0.0/24"},
        Rejected{"198.18.0.0/33+*", "source prefix length '33' is not a number from 0 to 32"},
        Rejected{"[2001:db8::1]/64+*", "source '[2001:db8::1]/64' has host bits set: the network is [2001:db8::]/64"},
        Rejected{"[2001:db8::]/129+*", "source prefix length '129' is not a number from 0 to 128"},
        Rejected{"[2001:db8::]/255.255.0.0+*", "source '[2001:db8::]/255.255.0.0': IPv6 takes a prefix length, not a dotted mask"},
        Rejected{"[2001:db8::1+*", "source '[2001:db8::1': '[' without ']'"},
        Rejected{"[2001:zz8::1]+*", "source '[2001:zz8::1]' is not an IPv6 address"},
        Rejected{"*/24+*", "source '*/24': '*' takes no mask"},
        Rejected{"me/24+*", "source 'me/24': 'me' takes no mask"},
        Rejected{"*+0:70000:TCP", "destination port '70000' is not a port (0-65535) or a range LO-HI"},
        Rejected{"*+0:http:TCP", "destination port 'http' is not a port (0-65535) or a range LO-HI"},
        Rejected{"*+0:90-80:TCP", "destination port range '90-80' is reversed: write 80-90"},
        Rejected{"*:1-2-3+0::TCP", "source port '1-2-3' is not a port (0-65535) or a range LO-HI"},
        Rejected{"*+0:80", "ports need a protocol: add :TCP, :UDP or :SCTP after the destination port"},
        Rejected{"*:80+0", "ports need a protocol: add :TCP, :UDP or :SCTP after the destination port"},
        Rejected{"*+0:80:ICMP", "protocol ICMP has no ports (ports go with TCP, UDP or SCTP)"},
        Rejected{"*+0:80:GRE", "protocol GRE has no ports (ports go with TCP, UDP or SCTP)"},
        Rejected{"*+0::TCPX", "protocol 'TCPX' is unknown (TCP, UDP, ICMP, ICMPV6, SCTP, GRE, ESP, AH or 0-255)"},
        Rejected{"*+0::256", "protocol '256' is unknown (TCP, UDP, ICMP, ICMPV6, SCTP, GRE, ESP, AH or 0-255)"},
        Rejected{"*+0::", "protocol is empty after ':' (write TCP, UDP, ICMP, ... or a number)"},
        Rejected{"*+0::TCP:8", "ICMP type/code needs protocol ICMP or ICMPV6"},
        Rejected{"*+0:::8", "protocol is empty after ':' (write TCP, UDP, ICMP, ... or a number)"},
        Rejected{"*+0::ICMP:256", "ICMP field '256' is not TYPE or TYPE/CODE (0-255)"},
        Rejected{"*+0::ICMP:8/", "ICMP field '8/' is not TYPE or TYPE/CODE (0-255)"},
        Rejected{"*+0::ICMP:8:0", "destination '0::ICMP:8:0' has too many ':' fields (HOST:PORTS:PROTO:ICMP at most)"},
        Rejected{"*:80:TCP+0", "source '*:80:TCP' takes only a port; the protocol goes after the destination (SRC+DST:PORT:PROTO)"},
        Rejected{"198.18.0.1+[2001:db8::1]", "source and destination mix IPv4 and IPv6"},
        Rejected{"[2001:db8::1]+*::ICMP", "ICMP is IPv4's: use ICMPV6 with IPv6 addresses"},
        Rejected{"198.18.0.1+*::ICMPV6", "ICMPV6 is IPv6's: use ICMP with IPv4 addresses"},
        Rejected{"2001:db8::1+*", "source '2001:db8::1': write IPv6 addresses in brackets, e.g. [2001:db8::1]"},
        Rejected{"+0", "source address is missing"},
        Rejected{"*+", "destination address is missing"},
        Rejected{"*+0:80:TCP on=both", "on=both: write on=outside or on=inside"},
        Rejected{"*+0:80:TCP on=outside on=inside", "option on= is given twice"},
        Rejected{"*+0:80:TCP via=eth0", "unknown option 'via=eth0' (options are on=outside|inside and payload=/regex/flags)"},
        Rejected{"*+0:80:TCP payload=/abc/x", "payload flag 'x' is unknown (flags are i caseless, s dot-all, m multi-line)"},
        // A flag outside ASCII is quoted whole, never half a character (the config fuzzer's find).
        Rejected{"*+0:80:TCP payload=/abc/i\xC3\xA9", "payload flag '\xC3\xA9' is unknown (flags are i caseless, s dot-all, m multi-line)"},
        Rejected{"*+0:80:TCP payload=//", "payload pattern is empty"},
        Rejected{"*+0:80:TCP payload=/abc", "payload pattern 'payload=/abc' has no closing '/'"},
        Rejected{"*+0 payload=/abc/", "a payload pattern needs a protocol (e.g. :TCP): the payload starts after the transport header"},
        Rejected{"on=outside", "filter starts with an option: write SRC+DST or SRC=DST first"}));

TEST(FilterGrammar, ReportsEveryProblemOfOneFilter) {
    const auto e = errors("198.18.0.256+*:99999:TCP on=up");
    ASSERT_EQ(e.size(), 3u);
    EXPECT_EQ(e[0], "on=up: write on=outside or on=inside");
    EXPECT_EQ(e[1], "source '198.18.0.256' is not an IPv4 address (a.b.c.d, trailing octets may be *)");
    EXPECT_EQ(e[2], "destination port '99999' is not a port (0-65535) or a range LO-HI");
}

TEST(FilterGrammar, SplitFiltersKeepsOptionsWithTheirFilter) {
    const auto v = split_filters("*+0:80:TCP on=outside  *+0:443:TCP payload=/a b/i 0+*::TCP");
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v[0], "*+0:80:TCP on=outside");
    EXPECT_EQ(v[1], "*+0:443:TCP payload=/a b/i");
    EXPECT_EQ(v[2], "0+*::TCP");
}

// --- addresses, packets ------------------------------------------------------------------------

TEST(Addresses, ParseAndFormat) {
    const auto a = parse_addr("198.18.0.10");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->family, Family::ipv4);
    EXPECT_EQ(format_addr(a->family, a->addr), "198.18.0.10");
    const auto b = parse_addr("[2001:db8::10]");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->family, Family::ipv6);
    EXPECT_EQ(parse_addr("2001:db8::10")->addr, b->addr);
    EXPECT_FALSE(parse_addr("198.18.0.300"));
    EXPECT_FALSE(parse_addr("198.18.0.0/24"));
    EXPECT_FALSE(parse_addr("me"));
    EXPECT_EQ(format_prefix(Family::ipv4, v4("198.18.0.0"), 24), "198.18.0.0/24");
    EXPECT_EQ(format_prefix(Family::ipv6, v6("2001:db8::"), 32), "[2001:db8::]/32");
    EXPECT_EQ(format_prefix(Family::ipv4, {}, 0), "*");
}

TEST(Packets, ParseForms) {
    auto p = parse_packet("tcp 198.18.0.100:40000 -> 198.18.0.10:80");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.packet.key.proto, dp::kProtoTcp);
    EXPECT_EQ(p.packet.key.sport, 40000);
    EXPECT_EQ(p.packet.key.dport, 80);
    EXPECT_TRUE(p.packet.key.has_ports);
    EXPECT_FALSE(p.packet.ingress_given);
    EXPECT_EQ(format_packet(p.packet.key), "TCP 198.18.0.100:40000 -> 198.18.0.10:80 on outside");

    p = parse_packet("icmpv6 [2001:db8:99::1] -> [2001:db8::10] icmp 128/0 on inside");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.packet.key.family, Family::ipv6);
    EXPECT_TRUE(p.packet.key.has_icmp);
    EXPECT_EQ(p.packet.key.icmp_type, 128);
    EXPECT_EQ(p.packet.key.ingress, dp::Ingress::inside);
    EXPECT_TRUE(p.packet.ingress_given);
    // The type may follow the word icmpv6 as well (the protocol's own name).
    p = parse_packet("icmpv6 [2001:db8:99::1] -> [2001:db8::10] icmpv6 2/0");
    ASSERT_TRUE(p.ok()) << p.errors.front();
    EXPECT_EQ(p.packet.key.icmp_type, 2);
    EXPECT_EQ(p.packet.key.icmp_code, 0);

    p = parse_packet("udp 198.18.0.1->198.18.0.2:53");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.packet.key.sport, 49152);
    ASSERT_EQ(p.packet.notes.size(), 1u);

    p = parse_packet("icmp 198.18.0.1 -> 198.18.0.2");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.packet.key.icmp_type, 8);

    p = parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 PAYLOAD \"GET /admin HTTP/1.1\\r\\n\\x90\\\"\\\\\"");
    ASSERT_TRUE(p.ok()) << p.errors.at(0);
    EXPECT_EQ(p.packet.payload, std::string("GET /admin HTTP/1.1\r\n\x90\"\\"));
    EXPECT_EQ(p.packet.key.dport, 80);
    p = parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 on inside payload-hex 47 45:54 90");
    ASSERT_TRUE(p.ok()) << p.errors.at(0);
    EXPECT_EQ(p.packet.payload, std::string("GET\x90"));
    EXPECT_TRUE(p.packet.ingress_given);
    p = parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 payload \"\"");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.packet.payload, std::string());

        p = parse_packet("47 198.18.0.1 -> 198.18.0.2");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.packet.key.proto, 47);
    EXPECT_FALSE(p.packet.key.has_ports);
}

TEST(Packets, Rejects) {
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2").errors.at(0),
              "TCP needs a destination port: DST:PORT");
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 198.18.0.2:80").errors.at(0),
              "'tcp 198.18.0.1:1 198.18.0.2:80': write a packet as PROTO SRC[:PORT] -> DST[:PORT] [icmp|icmpv6 TYPE/CODE] "
              "[on outside|inside] [payload \"TEXT\" | payload-hex HEX]");
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 payload GET").errors.at(0),
              "payload 'GET': write the payload in double quotes, e.g. payload \"GET /admin HTTP/1.1\"");
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 payload \"a\\qb\"").errors.at(0),
              "payload: unknown escape \\q (\\r \\n \\t \\0 \\\\ \\\" \\xHH)");
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 payload \"\\x9\"").errors.at(0),
              "payload: \\x needs two hex digits (\\x90)");
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 payload-hex 4745g").errors.at(0),
              "payload-hex '4745g': 'g' is not a hex digit");
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 payload-hex 47\xE2\x82\xAC").errors.at(0),
              "payload-hex '47\xE2\x82\xAC': '\xE2\x82\xAC' is not a hex digit");
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 payload-hex 474").errors.at(0),
              "payload-hex '474': write an even number of hex digits, e.g. payload-hex 474554");
    EXPECT_EQ(parse_packet("icmp 198.18.0.1:5 -> 198.18.0.2").errors.at(0), "protocol ICMP has no ports");
    EXPECT_EQ(parse_packet("icmp [2001:db8::1] -> [2001:db8::2]").errors.at(0),
              "ICMP is IPv4's: use icmpv6 with IPv6 addresses");
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 -> [2001:db8::2]:80").errors.at(0),
              "source and destination mix IPv4 and IPv6");
    EXPECT_EQ(parse_packet("tcp 2001:db8::1:1 -> 198.18.0.2:80").errors.at(0),
              "source '2001:db8::1:1': write IPv6 addresses in brackets, e.g. [2001:db8::1]:80");
    EXPECT_EQ(parse_packet("tcp 198.18.0.1:1 -> 198.18.0.2:80 on middle").errors.at(0),
              "on 'middle': write on outside or on inside");
    EXPECT_EQ(parse_packet("tcp * -> 198.18.0.2:80").errors.at(0),
              "source '*' is not an IPv4 address or a bracketed IPv6 address");
    EXPECT_EQ(parse_packet("udp 198.18.0.1:1 -> 198.18.0.2:70000").errors.at(0),
              "destination port '70000' is not a number from 0 to 65535");
}

TEST(WindowsPortZero, MeansAnyPortOnEitherSide) {
    const auto any = [](std::string_view f) {
        bool changed = false;
        std::string out = windows_port_zero_as_any(f, &changed);
        EXPECT_EQ(changed, out != f) << f;
        return out;
    };
    EXPECT_EQ(any("10.0.11.0/255.255.255.0+131.107.1.1:0:TCP"), "10.0.11.0/255.255.255.0+131.107.1.1::TCP");
    EXPECT_EQ(any("*:0+131.107.1.1:0"), "*+131.107.1.1");
    EXPECT_EQ(any("[2001:db8::1]:0=[2001:db8::2]:00:UDP"), "[2001:db8::1]=[2001:db8::2]::UDP");
    EXPECT_EQ(any("*+198.18.0.10:0:TCP on=outside"), "*+198.18.0.10::TCP on=outside");
    // Anything else stays as written.
    for (const char* same : {"131.107.1.2+*:25:TCP", "*+131.107.1.1", "0+*::TCP", "*=0:1434:UDP", "*+198.18.0.10:0-10:TCP",
                             "*+198.18.0.10:10:TCP", "no direction:0", "[2001:db8::1+*:0"})
        EXPECT_EQ(any(same), same);
    // The result is what the native grammar reads as any port.
    const FilterParse p = parse_filter(any("10.0.11.0/255.255.255.0+131.107.1.1:0:TCP"));
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(p.spec.dport.any);
    EXPECT_EQ(p.spec.proto, dp::kProtoTcp);
}

}  // namespace
}  // namespace moat::ctl
