// Loading a config: INI reading, validation and lint, with the exact `file:line:` diagnostics.
#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/config/json_text.h"
#include "control/compile/lint.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

namespace moat::ctl {
namespace {

/// Config text in tests starts on the line after `R"(`; drop that first newline.
std::string_view text(std::string_view t) { return t.starts_with('\n') ? t.substr(1) : t; }

std::vector<std::string> diags(std::string_view t) {
    const LoadResult r = load_policy_text(text(t), "t.ini");
    std::vector<std::string> out;
    for (const auto& d : r.diags.all())
        out.push_back(format(d));
    return out;
}

/// The errors among diags(t).
std::vector<std::string> errors_of(std::string_view t) {
    std::vector<std::string> out;
    for (auto& d : diags(t))
        if (d.find(": error: ") != std::string::npos)
            out.push_back(std::move(d));
    return out;
}

/// The first error of a load, formatted ("" when there is none).
std::string first_error(const LoadResult& r) {
    for (const auto& d : r.diags.all())
        if (d.severity == Severity::error)
            return format(d);
    return "";
}

/// A valid policy around which single mistakes are placed.
constexpr std::string_view kGood = R"(
[appliance]
outside = net_null0
inside = net_null1
me = 198.18.0.10, [2001:db8::10]
assign = Web server

[filterlist Web]
description = web to the server
filter = *+0:80:TCP
filter = *+0:443:TCP

[filterlist Everything]
filter = *+0

[filteraction Drop quietly]
action = block

[policy Web server]
rule = Web -> permit
rule = Everything -> Drop quietly
)";

TEST(Config, GoodConfigLoadsWithoutDiagnostics) {
    const LoadResult r = load_policy_text(text(kGood), "t.ini");
    EXPECT_TRUE(r.diags.all().empty()) << format(r.diags.all().front());
    ASSERT_TRUE(r.usable());
    const Config& c = *r.config;
    EXPECT_EQ(c.appliance.outside, "net_null0");
    EXPECT_EQ(c.appliance.me.size(), 2u);
    EXPECT_EQ(c.assigned, 0);
    ASSERT_EQ(c.lists.size(), 2u);
    EXPECT_EQ(c.lists[0].filters.size(), 2u);
    EXPECT_EQ(c.lists[0].filters[0].line, 9);
    EXPECT_EQ(c.lists[0].description, "web to the server");
    ASSERT_EQ(c.policies.size(), 1u);
    EXPECT_EQ(c.policies[0].rules.size(), 2u);
    EXPECT_EQ(c.policies[0].rules[1].line, 20);
    EXPECT_EQ(c.actions[static_cast<std::size_t>(c.policies[0].rules[1].action)].action, dp::Action::block);
    // Web: 2 filters x (IPv4 + IPv6 me) x mirrored = 8; Everything: 2 x mirrored = 4.
    EXPECT_EQ(r.compiled->rules.size(), 12u);
}

TEST(Config, ApplianceDefaultsAndValues) {
    const auto t = R"(
[appliance]
Workers = 2                 ; keys are case-insensitive, inline comments allowed
eal = --no-pci -l 0-1
control = /tmp/moat.sock
non_ip = arp, lldp, 0x88B5
fragments = drop
ip_options = allow
antispoof = off
payload_scan_bytes = 256
)";
    const LoadResult r = load_policy_text(text(t), "t.ini");
    ASSERT_TRUE(r.config) << format(r.diags.all().front());
    const Appliance& a = r.config->appliance;
    EXPECT_EQ(a.workers, 2u);
    EXPECT_EQ(a.eal, "--no-pci -l 0-1");
    EXPECT_EQ(a.control, "/tmp/moat.sock");
    EXPECT_EQ(a.non_ip, (std::vector<std::uint16_t>{0x0806, 0x88cc, 0x88b5}));
    EXPECT_EQ(a.fragments, FragmentMode::drop);
    EXPECT_TRUE(a.ip_options_allow);
    EXPECT_FALSE(a.antispoof);
    EXPECT_EQ(a.payload_scan_bytes, 256u);
    EXPECT_TRUE(a.me.empty());

    const LoadResult d = load_policy_text("[appliance]\n", "t.ini");
    ASSERT_TRUE(d.config);
    EXPECT_EQ(d.config->appliance.workers, 1u);
    EXPECT_EQ(d.config->appliance.non_ip, (std::vector<std::uint16_t>{0x0806}));
    EXPECT_EQ(d.config->appliance.fragments, FragmentMode::track);
    EXPECT_FALSE(d.config->appliance.ip_options_allow);
    EXPECT_TRUE(d.config->appliance.antispoof);
    EXPECT_EQ(d.config->appliance.payload_scan_bytes, 1500u);
    EXPECT_EQ(d.config->appliance.control, "/run/moat/moat.sock");
    EXPECT_EQ(d.config->appliance.mtu, 1500u);
    EXPECT_FALSE(d.config->appliance.link_propagation);
}

TEST(Config, MtuAndLinkPropagation) {
    for (const auto& [value, mtu] : {std::pair{"9000", 9000u}, {"68", 68u}, {"16000", 16000u}, {"1500", 1500u}}) {
        const LoadResult r = load_policy_text(std::string("[appliance]\nmtu = ") + value + "\nlink_propagation = ON\n", "t.ini");
        ASSERT_TRUE(r.config) << value;
        for (const auto& d : r.diags.all())
            EXPECT_NE(d.severity, Severity::error) << format(d);
        EXPECT_EQ(r.config->appliance.mtu, mtu);
        EXPECT_TRUE(r.config->appliance.link_propagation);
    }
    const LoadResult off = load_policy_text("[appliance]\nlink_propagation = off\n", "t.ini");
    ASSERT_TRUE(off.config);
    EXPECT_FALSE(off.config->appliance.link_propagation);
    // Both mistakes at their lines, in one run.
    const auto r = diags("[appliance]\nmtu = 9000 bytes\nlink_propagation = 1\nassign =\n");
    ASSERT_EQ(r.size(), 3u);  // and the warning that nothing is assigned
    EXPECT_TRUE(r[0].starts_with("t.ini:2: error: mtu '9000 bytes'")) << r[0];
    EXPECT_TRUE(r[1].starts_with("t.ini:3: error: link_propagation '1'")) << r[1];
}

TEST(Config, NothingAssignedBlocksEverythingWithAWarning) {
    const auto r = diags("[appliance]\nassign =\n");
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0], "t.ini:2: warning: no policy is assigned: moatd blocks every packet (set assign = POLICY in [appliance])");
    const LoadResult l = load_policy_text("[appliance]\n", "t.ini");
    ASSERT_TRUE(l.usable());
    EXPECT_EQ(l.compiled->policy, -1);
    EXPECT_TRUE(l.compiled->rules.empty());
}

TEST(Config, FiveMistakesFiveDiagnostics) {
    const auto r = diags(R"(
[appliance]
me = 198.18.0.10
workers = many
assign = Web server

[filterlist Web]
filter = *+198.18.0.256:80:TCP
filter = *+0:443:TPC
filter = *+0

[policy Web server]
rule = Web -> permit
rule = Mail -> permit
rule = Web -> deny
)");
    ASSERT_EQ(r.size(), 5u);
    EXPECT_EQ(r[0], "t.ini:3: error: workers 'many' is not a number from 1 to 64");
    EXPECT_EQ(r[1], "t.ini:7: error: filter '*+198.18.0.256:80:TCP': destination '198.18.0.256' is not an IPv4 address (a.b.c.d, trailing octets may be *)");
    EXPECT_EQ(r[2], "t.ini:8: error: filter '*+0:443:TPC': protocol 'TPC' is unknown (TCP, UDP, ICMP, ICMPV6, SCTP, GRE, ESP, AH or 0-255)");
    EXPECT_EQ(r[3], "t.ini:13: error: rule names filter list 'Mail', which is not defined (defined filter lists: 'Web')");
    EXPECT_EQ(r[4], "t.ini:14: error: rule names action 'deny', which is not defined (defined actions: 'permit', 'block')");
}

struct Mistake {
    const char* name;
    const char* config;
    const char* diagnostic;  ///< the first diagnostic, exactly
};

class ConfigRejects : public ::testing::TestWithParam<Mistake> {};

TEST_P(ConfigRejects, WithFileLineMessage) {
    // Every config needs an [appliance]; the snippets without one get it at the end, where it
    // moves no line.
    std::string t(text(GetParam().config));
    if (t.find("[appliance]") == std::string::npos && std::string_view(GetParam().name) != "NoAppliance")
        t += "[appliance]\n";
    const LoadResult r = load_policy_text(t, "t.ini");
    EXPECT_FALSE(r.usable());
    EXPECT_EQ(first_error(r), GetParam().diagnostic);
}

#define HOW " (write ADDRESS:PORT: 127.0.0.1:9464 for this machine only, [::1]:9464 for IPv6, 0.0.0.0:9464 for every interface; off for no endpoint)"
INSTANTIATE_TEST_SUITE_P(
    All, ConfigRejects,
    ::testing::Values(
        Mistake{"UnknownSection", "[appliance]\n[filters Web]\nfilter = *+0\n",
                "t.ini:2: error: unknown section [filters Web] (sections: [appliance], [filterlist NAME], [filteraction NAME], [policy NAME])"},
        Mistake{"FragmentTableTooSmall", "[appliance]\nfragment_table = 4\n",
                "t.ini:2: error: fragment_table '4' is not a number of datagrams from 8 to 4194304"},
        Mistake{"UnknownKey", "[appliance]\nspeed = 10\n",
                "t.ini:2: error: unknown key 'speed' in [appliance] (keys: outside, inside, me, workers, eal, control, control_readonly, control_group, control_readonly_group, non_ip, fragments, ip_options, antispoof, assign, strict, payload_scan_bytes, classifier, classifier_memory_mb, fragment_table, metrics, mtu, link_propagation, state_table)"},
        Mistake{"UnknownListKey", "[filterlist W]\nfilters = *+0\n",
                "t.ini:2: error: unknown key 'filters' in [filterlist] (keys: filter, description)"},
        Mistake{"MissingEquals", "[filterlist W]\nfilter *+198.18.0.1:80:TCP\n",
                "t.ini:2: error: missing '=' after 'filter'"},
        Mistake{"NotAnEntry", "[appliance]\njust words\n",
                "t.ini:2: error: expected 'key = value', a [section] header or a comment"},
        Mistake{"HeaderWithoutBracket", "[appliance\nme = 198.18.0.1\n",
                "t.ini:1: error: section header [appliance has no closing ']'"},
        Mistake{"JunkAfterHeader", "[appliance] x\n",
                "t.ini:1: error: unexpected 'x' after the section header"},
        Mistake{"KeyOutsideSection", "assign = P\n[appliance]\n",
                "t.ini:1: error: 'assign' is outside any section: put it under [appliance], [filterlist NAME], [filteraction NAME] or [policy NAME]"},
        Mistake{"DuplicateKey", "[appliance]\nworkers = 1\nworkers = 2\n",
                "t.ini:3: error: 'workers' is set twice (first at line 2)"},
        Mistake{"DuplicateList", "[filterlist W]\nfilter = *+*\n[filterlist W]\nfilter = *+*\n",
                "t.ini:3: error: filter list 'W' is defined twice (first at line 1)"},
        Mistake{"DuplicatePolicy", "[filterlist W]\nfilter = *+*\n[policy P]\nrule = W -> permit\n[policy P]\n",
                "t.ini:5: error: policy 'P' is defined twice (first at line 3)"},
        Mistake{"DuplicateAppliance", "[appliance]\n[appliance]\n",
                "t.ini:2: error: [appliance] appears twice (first at line 1)"},
        Mistake{"ApplianceWithName", "[appliance main]\n",
                "t.ini:1: error: [appliance] takes no name"},
        Mistake{"SectionWithoutName", "[policy]\n",
                "t.ini:1: error: [policy] needs a name: [policy NAME]"},
        Mistake{"NameWithArrow", "[filterlist a->b]\n",
                "t.ini:1: error: name 'a->b' contains '->', which separates a rule's list from its action"},
        Mistake{"MissingList",
                "[filterlist Inbound web]\nfilter = *+198.18.0.1\n[policy P]\nrule = Inbound wbe -> permit\n",
                "t.ini:4: error: rule names filter list 'Inbound wbe', which is not defined (did you mean 'Inbound web'?)"},
        Mistake{"MissingAction", "[filterlist W]\nfilter = *+198.18.0.1\n[policy P]\nrule = W -> Drop\n",
                "t.ini:4: error: rule names action 'Drop', which is not defined (defined actions: 'permit', 'block')"},
        Mistake{"RuleWithoutArrow", "[filterlist W]\nfilter = *+198.18.0.1\n[policy P]\nrule = W permit\n",
                "t.ini:4: error: rule 'W permit': write 'FILTER LIST -> ACTION'"},
        Mistake{"EmptyPolicy", "[appliance]\nassign = P\n[policy P]\ndescription = nothing yet\n",
                "t.ini:3: error: policy 'P' has no rules: add 'rule = FILTER LIST -> ACTION'"},
        Mistake{"AssignNamesNoPolicy",
                "[appliance]\nassign = Web servr\n[filterlist W]\nfilter = *+198.18.0.1\n[policy Web server]\nrule = W -> permit\n",
                "t.ini:2: error: assign names policy 'Web servr', which is not defined (did you mean 'Web server'?)"},
        Mistake{"MeUsedButEmpty", "[appliance]\nme =\n[filterlist W]\nfilter = *+0:80:TCP\n",
                "t.ini:4: error: filter '*+0:80:TCP' uses 'me' (or '0') but [appliance] me is empty: list the protected addresses in 'me = ...'"},
        Mistake{"MeWrongFamily", "[appliance]\nme = [2001:db8::1]\n[filterlist W]\nfilter = 198.18.0.1+0\n",
                "t.ini:4: error: filter '198.18.0.1+0': no 'me' address has the address family this filter needs"},
        Mistake{"BadMeAddress", "[appliance]\nme = 198.18.0.10, 198.18.0.300\n",
                "t.ini:2: error: me: '198.18.0.300' is not an IPv4 or IPv6 address"},
        Mistake{"MtuZero", "[appliance]\nmtu = 0\n",
                "t.ini:2: error: mtu '0' is not a number of bytes from 68 to 16000 (1500: Ethernet; 9000: jumbo frames)"},
        Mistake{"MtuBelowIpv4Minimum", "[appliance]\nmtu = 67\n",
                "t.ini:2: error: mtu '67' is not a number of bytes from 68 to 16000 (1500: Ethernet; 9000: jumbo frames)"},
        Mistake{"MtuBeyondAnyNic", "[appliance]\n\nmtu = 70000\n",
                "t.ini:3: error: mtu '70000' is not a number of bytes from 68 to 16000 (1500: Ethernet; 9000: jumbo frames)"},
        Mistake{"MtuText", "[appliance]\nmtu = jumbo\n",
                "t.ini:2: error: mtu 'jumbo' is not a number of bytes from 68 to 16000 (1500: Ethernet; 9000: jumbo frames)"},
        Mistake{"MtuNegative", "[appliance]\nmtu = -1500\n",
                "t.ini:2: error: mtu '-1500' is not a number of bytes from 68 to 16000 (1500: Ethernet; 9000: jumbo frames)"},
        Mistake{"MtuHuge", "[appliance]\nmtu = 99999999999999999999\n",
                "t.ini:2: error: mtu '99999999999999999999' is not a number of bytes from 68 to 16000 (1500: Ethernet; 9000: jumbo frames)"},
        Mistake{"MtuTwice", "[appliance]\nmtu = 9000\nmtu = 1500\n",
                "t.ini:3: error: 'mtu' is set twice (first at line 2)"},
        Mistake{"LinkPropagationYes", "[appliance]\nlink_propagation = yes\n",
                "t.ini:2: error: link_propagation 'yes': write on or off"},
        Mistake{"BadFragments", "[appliance]\nfragments = reassemble\n",
                "t.ini:2: error: fragments 'reassemble': write track or drop"},
        Mistake{"BadIpOptions", "[appliance]\nip_options = strip\n",
                "t.ini:2: error: ip_options 'strip': write drop or allow"},
        Mistake{"BadAntispoof", "[appliance]\nantispoof = yes\n",
                "t.ini:2: error: antispoof 'yes': write on or off"},
        Mistake{"BadNonIp", "[appliance]\nnon_ip = arp, 0x0800\n",
                "t.ini:2: error: non_ip: '0x0800' is IP or a VLAN tag (moatd looks inside VLAN tags and filters the IP there), so it cannot pass unfiltered"},
        Mistake{"NonIpOldQinQ", "[appliance]\nnon_ip = arp, 0x9100\n",
                "t.ini:2: error: non_ip: '0x9100' is IP or a VLAN tag (moatd looks inside VLAN tags and filters the IP there), so it cannot pass unfiltered"},
        Mistake{"Ipv6ExtensionHeaderProtocol", "[appliance]\n[filterlist W]\nfilter = *+[2001:db8::1]::43\n",
                "t.ini:3: error: filter '*+[2001:db8::1]::43': protocol 43 (Routing) is an IPv6 extension header; moatd reads past it and judges the protocol that follows (TCP, UDP, ...), so an IPv6 filter on it never matches: filter on that protocol"},
        Mistake{"Ipv6HopByHopOnAny", "[appliance]\n[filterlist W]\nfilter = *+*::0\n",
                "t.ini:3: error: filter '*+*::0': protocol 0 (Hop-by-Hop Options) is an IPv6 extension header; moatd reads past it and judges the protocol that follows (TCP, UDP, ...), so an IPv6 filter on it never matches: filter on that protocol, or give IPv4 addresses (0.0.0.0/0 for any) if IPv4 protocol 0 is meant"},
        Mistake{"BadNonIpName", "[appliance]\nnon_ip = ipx\n",
                "t.ini:2: error: non_ip: 'ipx' is not an EtherType (arp, rarp, lldp, none or 0x0600-0xffff)"},
        Mistake{"BadClassifier", "[appliance]\nclassifier = tcam\n",
                "t.ini:2: error: classifier 'tcam': write trie or reference"},
        Mistake{"BadClassifierMemory", "[appliance]\nclassifier_memory_mb = 1\n",
                "t.ini:2: error: classifier_memory_mb '1' is not a number from 16 to 1048576"},
        Mistake{"BadScanBytes", "[appliance]\npayload_scan_bytes = 0\n",
                "t.ini:2: error: payload_scan_bytes '0' is not a number from 1 to 65535"},
        Mistake{"RelativeControl", "[appliance]\ncontrol = moat.sock\n",
                "t.ini:2: error: control 'moat.sock' must be an absolute path to a Unix socket"},
        Mistake{"SamePorts", "[appliance]\noutside = net_null0\ninside = net_null0\n",
                "t.ini:1: error: outside and inside name the same port 'net_null0'"},
        Mistake{"ActionMissing", "[filteraction Drop]\ndescription = x\n",
                "t.ini:1: error: filter action 'Drop' has no 'action = permit' or 'action = block'"},
        Mistake{"ActionNegotiate", "[filteraction Secure]\naction = negotiate\n",
                "t.ini:2: error: action 'negotiate' (IPSec security negotiation) is out of scope: write permit or block"},
        Mistake{"StateOnBlock", "[filteraction Deny]\naction = block\nstate = keep\n",
                "t.ini:3: error: filter action 'Deny' blocks, and 'state = keep' is for permits: a block starts no flows (remove the state line)"},
        Mistake{"StateOnBuiltin", "[filteraction permit]\naction = permit\nstate = keep\n",
                "t.ini:3: error: filter action 'permit' is the built-in stateless permit: give the stateful action another name, e.g. [filteraction Permit stateful]"},
        Mistake{"StateUnknown", "[filteraction P]\naction = permit\nstate = on\n",
                "t.ini:3: error: state 'on': write keep (track flows: replies pass only in a flow) or off"},
        Mistake{"StateTwice", "[filteraction P]\naction = permit\nstate = keep\nstate = off\n",
                "t.ini:4: error: 'state' is set twice (first at line 3)"},
        Mistake{"StateWithPayload",
                "[filteraction K]\naction = permit\nstate = keep\n[filterlist W]\nfilter = *+198.18.0.10:80:TCP payload=/GET/\n"
                "[policy P]\nrule = W -> K\n",
                "t.ini:7: error: rule 'W -> K': filter '*+198.18.0.10:80:TCP payload=/GET/' (line 5) has a payload pattern, and action 'K' keeps state, whose flows start with a packet without payload (a SYN): use a stateless action for payload filters"},
        Mistake{"StateTableTooSmall", "[appliance]\nstate_table = 7\n",
                "t.ini:2: error: state_table '7' is not a number of flows from 8 to 16777216"},
        Mistake{"BuiltinRedefined", "[filteraction Permit]\naction = block\n",
                "t.ini:2: error: filter action 'Permit' says 'action = block', but 'Permit' is the built-in action permit: give this action another name, or make it 'action = permit'"},
        Mistake{"BuiltinDefinedTwice", "[filteraction Block]\naction = block\n[filteraction block]\naction = block\n",
                "t.ini:3: error: filter action 'block' is defined twice (first at line 1)"},
        Mistake{"BuiltinDefinedTwiceAsWritten", "[filteraction Block]\naction = block\n[filteraction BLOCK]\naction = block\n",
                "t.ini:3: error: filter action 'BLOCK' is defined twice (first at line 1)"},
        Mistake{"BadPattern", "[filterlist W]\nfilter = *+198.18.0.1:80:TCP payload=/(abc/\n",
                "t.ini:2: error: filter '*+198.18.0.1:80:TCP payload=/(abc/': payload pattern does not compile: Missing close parenthesis for group started at index 0."},
        Mistake{"FilterWithoutDirection", "[filterlist W]\nfilter = 198.18.0.1:80:TCP\n",
                "t.ini:2: error: filter '198.18.0.1:80:TCP': '198.18.0.1:80:TCP' has no direction: write SRC+DST (mirrored) or SRC=DST (one way)"},
        Mistake{"NoAppliance", "[filterlist W]\nfilter = *+198.18.0.1\n[policy P]\nrule = W -> permit\n",
                "t.ini: error: no [appliance] section: a config file starts with [appliance] (ports, me, assign); an empty or cut-off file is never applied"},
        Mistake{"NotUtf8Name", "[appliance]\n[filterlist Caf\xE9]\nfilter = *+*\n",
                "t.ini:2: error: line is not valid UTF-8 (byte 0xE9 at column 16): save the file as UTF-8"},
        Mistake{"OverlongUtf8", "[appliance]\nassign = \xC0\xAF\n",
                "t.ini:2: error: line is not valid UTF-8 (byte 0xC0 at column 10): save the file as UTF-8"},
        Mistake{"SurrogateUtf8", "[appliance]\n[policy \xED\xA0\x80]\n",
                "t.ini:2: error: line is not valid UTF-8 (byte 0xED at column 9): save the file as UTF-8"},
        Mistake{"EscapeInAName", "[appliance]\n[policy Web\x1b[2J]\n",
                "t.ini:2: error: line contains a control character (0x1B at column 12): names, filters and values are printable text"},
        Mistake{"CarriageReturnInAValue", "[appliance]\nassign = A\rantispoof = off\n",
                "t.ini:2: error: line contains a control character (0x0D at column 11): names, filters and values are printable text"},
        Mistake{"UnknownGroup", "[appliance]\ncontrol_group = no-such-group-here\n",
                "t.ini:2: error: control_group 'no-such-group-here' is not a group of this machine (a name from /etc/group or a number)"},
        Mistake{"ReadOnlySocketIsTheControlSocket", "[appliance]\ncontrol = /run/m.sock\ncontrol_readonly = /run/m.sock\n",
                "t.ini:1: error: control_readonly names the control socket itself; give the read-only socket a path of its own"},
        Mistake{"RelativeReadOnlySocket", "[appliance]\ncontrol_readonly = m.sock\n",
                "t.ini:2: error: control_readonly 'm.sock' must be an absolute path to a Unix socket"},
        Mistake{"MetricsWithoutPort", "[appliance]\nmetrics = 127.0.0.1\n",
                "t.ini:2: error: metrics '127.0.0.1' has no port" HOW},
        Mistake{"MetricsPortZero", "[appliance]\nmetrics = 127.0.0.1:0\n",
                "t.ini:2: error: metrics '127.0.0.1:0': port '0' is not a number from 1 to 65535" HOW},
        Mistake{"MetricsPortTooLarge", "[appliance]\nmetrics = 127.0.0.1:65536\n",
                "t.ini:2: error: metrics '127.0.0.1:65536': port '65536' is not a number from 1 to 65535" HOW},
        Mistake{"MetricsPortNotANumber", "[appliance]\nmetrics = 127.0.0.1:http\n",
                "t.ini:2: error: metrics '127.0.0.1:http': port 'http' is not a number from 1 to 65535" HOW},
        Mistake{"MetricsEmptyPort", "[appliance]\nmetrics = [::1]:\n",
                "t.ini:2: error: metrics '[::1]:': port '' is not a number from 1 to 65535" HOW},
        Mistake{"MetricsHostName", "[appliance]\nmetrics = localhost:9464\n",
                "t.ini:2: error: metrics 'localhost:9464': 'localhost' is not an IPv4 address or a bracketed IPv6 address" HOW},
        Mistake{"MetricsBadIpv4", "[appliance]\nmetrics = 127.0.0.256:9464\n",
                "t.ini:2: error: metrics '127.0.0.256:9464': '127.0.0.256' is not an IPv4 address or a bracketed IPv6 address" HOW},
        Mistake{"MetricsIpv6WithoutBrackets", "[appliance]\nmetrics = ::1:9464\n",
                "t.ini:2: error: metrics '::1:9464': an IPv6 address goes in brackets, [::1]:PORT" HOW},
        Mistake{"MetricsIpv4InBrackets", "[appliance]\nmetrics = [127.0.0.1]:9464\n",
                "t.ini:2: error: metrics '[127.0.0.1]:9464': '127.0.0.1' is not an IPv4 address or a bracketed IPv6 address" HOW},
        Mistake{"MetricsNoAddress", "[appliance]\nmetrics = :9464\n",
                "t.ini:2: error: metrics ':9464': no address" HOW}),
    [](const ::testing::TestParamInfo<Mistake>& i) { return std::string(i.param.name); });
#undef HOW

TEST(Config, MetricsEndpointAddresses) {
    const auto endpoint = [](const std::string& value) {
        const LoadResult r = load_policy_text("[appliance]\nmetrics = " + value + "\n", "t.ini");
        EXPECT_TRUE(r.config) << value;
        EXPECT_EQ(first_error(r), "") << value;
        return r.config ? std::pair(r.config->appliance.metrics_host, int{r.config->appliance.metrics_port})
                        : std::pair(std::string("?"), -1);
    };
    EXPECT_EQ(endpoint("127.0.0.1:9464"), std::pair(std::string("127.0.0.1"), 9464));
    EXPECT_EQ(endpoint("0.0.0.0:1"), std::pair(std::string("0.0.0.0"), 1));
    EXPECT_EQ(endpoint("[::1]:9464"), std::pair(std::string("::1"), 9464));
    EXPECT_EQ(endpoint("[::]:65535"), std::pair(std::string("::"), 65535));
    EXPECT_EQ(endpoint("[2001:db8::10]:9100"), std::pair(std::string("2001:db8::10"), 9100));
    EXPECT_EQ(endpoint("off"), std::pair(std::string(), 0));
    EXPECT_EQ(endpoint("OFF"), std::pair(std::string(), 0));
    EXPECT_EQ(endpoint(""), std::pair(std::string(), 0));
    // Off unless asked for.
    const LoadResult d = load_policy_text("[appliance]\n", "t.ini");
    ASSERT_TRUE(d.config);
    EXPECT_EQ(d.config->appliance.metrics_port, 0);
}

TEST(Config, EmptyOrCutFileIsAnError) {
    // An empty file, or one cut before its [appliance], would otherwise load as "nothing
    // assigned": moatd would block everything on a reload of a file still being written.
    for (const std::string& t : {std::string(), std::string("\n"), std::string("; comment only\n"),
                                std::string("[filterlist W]\nfilter = *+*\n")}) {
        const LoadResult r = load_policy_text(t, "t.ini");
        EXPECT_FALSE(r.usable()) << t;
        EXPECT_NE(first_error(r).find("no [appliance] section"), std::string::npos) << t;
    }
}

TEST(Config, ABuiltinDefinitionWithoutAnActionIsOneError) {
    const auto d = diags("[appliance]\nassign = P\n[filteraction Block]\ndescription = x\n[filterlist A]\nfilter = *+*\n"
                         "[policy P]\nrule = A -> Block\n");
    EXPECT_NE(std::find(d.begin(), d.end(), "t.ini:3: error: filter action 'Block' has no 'action = permit' or 'action = block'"), d.end())
        << ::testing::PrintToString(d);
    for (const auto& x : d)
        EXPECT_EQ(x.find("not used"), std::string::npos) << x;
}

TEST(Config, AnEmptyMeIsOneErrorNotOnePerFilter) {
    const std::vector<std::string> errors = errors_of("[appliance]\n[filterlist W]\nfilter = *+me:80:TCP\nfilter = *+me:443:TCP\nfilter = 0+*\n");
    ASSERT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
    EXPECT_EQ(errors[0], "t.ini:3: error: filter '*+me:80:TCP' uses 'me' (or '0') but [appliance] me is empty: list the protected "
                         "addresses in 'me = ...' (2 more filters use 'me' too)");
}

TEST(Config, LiteralPortZeroIsWarnedAbout) {
    // Port 0 is the value 0 in Moat's grammar; in Windows filter specs it meant any port.
    const auto d = diags("[appliance]\nassign = P\n[filterlist W]\nfilter = *+198.18.0.10:0:TCP\nfilter = *:0=198.18.0.10:80:TCP\n"
                         "filter = *+198.18.0.10::TCP\n[policy P]\nrule = W -> permit\nrule = W -> block\n");
    const std::vector<std::string> want{
        "t.ini:4: warning: filter '*+198.18.0.10:0:TCP': port 0 is the value 0 here; leave the port empty for any port ('*+198.18.0.10::TCP')",
        "t.ini:5: warning: filter '*:0=198.18.0.10:80:TCP': port 0 is the value 0 here; leave the port empty for any port ('*=198.18.0.10:80:TCP')"};
    for (const auto& w : want)
        EXPECT_NE(std::find(d.begin(), d.end(), w), d.end()) << w;
    EXPECT_EQ(std::count_if(d.begin(), d.end(), [](const std::string& x) { return x.find("port 0") != std::string::npos; }), 2);
}

TEST(Config, AnInvalidMeAddressIsOneErrorNotOnePerFilter) {
    const std::vector<std::string> errors = errors_of("[appliance]\nme = 198.18.0.300\n[filterlist W]\nfilter = *+me:80:TCP\nfilter = *+me:443:TCP\nfilter = 0+*\n");
    ASSERT_EQ(errors.size(), 1u) << ::testing::PrintToString(errors);
    EXPECT_EQ(errors[0], "t.ini:2: error: me: '198.18.0.300' is not an IPv4 or IPv6 address");
}

TEST(Config, BuiltinActionDefinedWithItsOwnMeaning) {
    // The Windows walk-through creates a filter action "Block" that blocks: its own policy loads,
    // and a rule naming it (any case) blocks.
    const LoadResult r = load_policy_text("[appliance]\nassign = P\n[filteraction Block]\ndescription = drop it\naction = block\n"
                                          "[filteraction PERMIT]\naction = Permit\n[filterlist A]\nfilter = *+198.18.0.1:80:TCP\n"
                                          "[filterlist B]\nfilter = *+198.18.0.1\n[policy P]\nrule = A -> PERMIT\nrule = B -> Block\n",
                                          "t.ini");
    ASSERT_TRUE(r.usable()) << first_error(r);
    EXPECT_EQ(r.config->actions.size(), 2u);  // the built-ins only
    ASSERT_FALSE(r.compiled->rules.empty());
    for (std::size_t i = 0; i < r.compiled->rules.size(); ++i)
        EXPECT_EQ(r.compiled->rules[i].action,
                  r.compiled->info[i].origin.list == 0 ? moat::dp::Action::permit : moat::dp::Action::block);
}

TEST(Config, Utf8NamesAndCommentsInAnyEncoding) {
    // Valid UTF-8 names load; a Latin-1 byte in a comment is nobody's business.
    const LoadResult r = load_policy_text("; caf\xE9 (Latin-1)\n[appliance]\nassign = Caf\xC3\xA9\n[filterlist \xE2\x82\xAC]\n"
                                          "filter = *+*\n[policy Caf\xC3\xA9]\nrule = \xE2\x82\xAC -> block\n",
                                          "t.ini");
    EXPECT_TRUE(r.usable()) << first_error(r);
}

TEST(Text, Utf8IsCheckedAndMadeSafeForJson) {
    EXPECT_EQ(invalid_utf8_at("plain ascii"), std::nullopt);
    EXPECT_EQ(invalid_utf8_at("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x94\x92"), std::nullopt);
    EXPECT_EQ(invalid_utf8_at("caf\xE9"), 3u);                  // Latin-1
    EXPECT_EQ(invalid_utf8_at("\xC0\xAF"), 0u);                 // overlong '/'
    EXPECT_EQ(invalid_utf8_at("a\xED\xA0\x80"), 1u);            // a surrogate
    EXPECT_EQ(invalid_utf8_at("ab\xF4\x90\x80\x80"), 2u);       // past U+10FFFF
    EXPECT_EQ(invalid_utf8_at("abc\xE2\x82"), 3u);              // cut short
    EXPECT_EQ(valid_utf8("caf\xE9!"), "caf\xEF\xBF\xBD!");
    // nlohmann's dump() throws on such a string; json_text never does.
    const nlohmann::json j{{"name", std::string("caf\xE9")}};
    EXPECT_THROW((void)j.dump(), nlohmann::json::type_error);
    EXPECT_EQ(json_text(j), "{\"name\":\"caf\xEF\xBF\xBD\"}");
}

TEST(Config, OnlyARegularFileIsRead) {
    // A FIFO would block the reader until a writer came; /dev/zero would never end; a directory
    // is no config. Each is an error at once.
    const auto dir = std::filesystem::temp_directory_path() / ("moat-read-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const std::string fifo = (dir / "fifo").string();
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    for (const std::string& path : {fifo, std::string("/dev/zero"), dir.string()}) {
        const auto read = read_config_file(path);
        ASSERT_FALSE(read) << path;
        EXPECT_NE(read.error().find("not a regular file"), std::string::npos) << read.error();
    }
    const auto missing = read_config_file((dir / "missing.ini").string());
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().find("No such file or directory"), std::string::npos) << missing.error();
    std::ofstream(dir / "ok.ini") << "[appliance]\n";
    const auto ok = read_config_file((dir / "ok.ini").string());
    ASSERT_TRUE(ok) << ok.error();
    EXPECT_EQ(*ok, "[appliance]\n");
    std::filesystem::remove_all(dir);
}

TEST(Config, OverlongLineIsRejectedNotCut) {
    std::string t = "[filterlist W]\ndescription = " + std::string(300, 'x') + "\nfilter = *+198.18.0.1\n[appliance]\n";
    const LoadResult r = load_policy_text(t, "t.ini");
    ASSERT_EQ(r.diags.error_count(), 1);
    EXPECT_EQ(first_error(r),
              "t.ini:2: error: line is 314 characters long; the limit is 198 (shorten it, e.g. split a long name or description)");
    EXPECT_FALSE(r.usable());
}

TEST(Config, LongSectionNameIsKeptWhole) {
    const std::string name(120, 'n');
    const std::string t = "[appliance]\nassign = " + name + "\n[filterlist " + name + "]\nfilter = *+198.18.0.1\n[filterlist Rest]\nfilter = *+*\n[policy " +
                          name + "]\nrule = " + name + " -> permit\nrule = Rest -> block\n";
    const LoadResult r = load_policy_text(t, "t.ini");
    ASSERT_TRUE(r.usable()) << format(r.diags.all().front());
    EXPECT_EQ(r.config->policies[0].name, name);
    EXPECT_EQ(r.config->lists[0].name, name);
}

TEST(Config, NulByteIsRejected) {
    const std::string t("[appliance]\nme = 198.18.0.1\0\n", 29);
    const LoadResult r = load_policy_text(t, "t.ini");
    ASSERT_EQ(r.diags.error_count(), 1);
    EXPECT_EQ(first_error(r), "t.ini:2: error: line contains a NUL byte");
}

TEST(Config, CrLfAndBomAreAccepted) {
    const LoadResult r = load_policy_text("\xEF\xBB\xBF[appliance]\r\nme = 198.18.0.10\r\nassign =\r\n", "t.ini");
    ASSERT_TRUE(r.config);
    ASSERT_EQ(r.config->appliance.me.size(), 1u);
    EXPECT_EQ(format_addr(r.config->appliance.me[0].family, r.config->appliance.me[0].addr), "198.18.0.10");
}

TEST(Config, EveryErrorIsReportedInOneRun) {
    const LoadResult r = load_policy_text(text(R"(
[appliance]
workers = 0
fragments = maybe
[filterlist W]
filter = *+0:99999:TCP
filter = nonsense
[bogus]
[policy P]
rule = X -> permit
)"),
                                          "t.ini");
    std::vector<std::string> errors;
    for (const auto& d : r.diags.all())
        if (d.severity == Severity::error)
            errors.push_back(format(d));
    ASSERT_EQ(errors.size(), 6u);
    EXPECT_TRUE(errors[0].starts_with("t.ini:2: error: workers"));
    EXPECT_TRUE(errors[1].starts_with("t.ini:3: error: fragments"));
    EXPECT_TRUE(errors[2].starts_with("t.ini:5: error: filter '*+0:99999:TCP'"));
    EXPECT_TRUE(errors[3].starts_with("t.ini:6: error: filter 'nonsense'"));
    EXPECT_TRUE(errors[4].starts_with("t.ini:7: error: unknown section [bogus]"));
    EXPECT_TRUE(errors[5].starts_with("t.ini:9: error: rule names filter list 'X'"));
    EXPECT_EQ(r.diags.warning_count(), 2);  // nothing assigned; list W unused
}

TEST(Config, MissingFileIsAnError) {
    const LoadResult r = load_policy("/nonexistent/moat.ini");
    ASSERT_EQ(r.diags.all().size(), 1u);
    EXPECT_EQ(format(r.diags.all()[0]),
              "/nonexistent/moat.ini: error: cannot read the config file: No such file or directory");
}

// --- lint ----------------------------------------------------------------------------------

TEST(Lint, PolicyWithoutCatchAll) {
    const auto r = diags(R"(
[appliance]
assign = P
[filterlist W]
filter = *+198.18.0.10:80:TCP
[policy P]
rule = W -> permit
)");
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0], "t.ini:5: warning: policy 'P' has no catch-all block filter (such as '*+0' or '*+*' under a block action); unmatched packets are dropped anyway (default deny), but an explicit rule states the intent");
}

TEST(Lint, EqualKeyOverlapWithDifferentActions) {
    const auto r = diags(R"(
[appliance]
assign = P
[filterlist A]
filter = 198.18.0.0/24+198.18.1.10:80:TCP
[filterlist B]
filter = 198.18.0.128+198.18.1.0/24:80:TCP
[filterlist Rest]
filter = *+*
[policy P]
rule = A -> permit
rule = B -> block
rule = Rest -> block
)");
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0], "t.ini:6: warning: filters at lines 4 and 6 have the same specificity, overlap, and have different actions (block / permit): block wins where both match");
}

TEST(Lint, ShadowedFilter) {
    auto r = diags(R"(
[appliance]
assign = P
[filterlist A]
filter = 198.18.0.0/24+*:0-3:TCP
[filterlist B]
filter = 198.18.0.0/24+*:0-2:TCP
[filterlist Rest]
filter = *+*
[policy P]
rule = A -> permit
rule = B -> permit
rule = Rest -> block
)");
    // (Both filters' mirrors also open ports 0-3 of anyone to the /24: another warning's kind.)
    std::erase_if(r, [](const std::string& d) { return d.find("its mirror lets") != std::string::npos; });
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0], "t.ini:6: warning: filter '198.18.0.0/24+*:0-2:TCP' (rule at line 11) never decides a packet: filter '198.18.0.0/24+*:0-3:TCP' at line 4 (permit) matches all of them first");
}

TEST(Lint, AStatelessMirrorThatOpensAFixedSourcePortToEveryPort) {
    const std::string policy = R"(
[appliance]
me = 198.18.0.20
assign = P
[filteraction Out]
action = permit
STATE
[filterlist Mail out]
filter = 198.18.0.20+*:25:TCP
[filterlist NTP]
filter = me+*:123:UDP
[filterlist Web in]
filter = *+198.18.0.20:80:TCP
filter = 198.18.1.0/24+198.18.0.20:3389:TCP
[filterlist Rest]
filter = *+*
[policy P]
rule = Mail out -> Out
rule = NTP -> Out
rule = Web in -> permit
rule = Rest -> block
)";
    const auto with = [&](const std::string& state) {
        std::string t = policy;
        t.replace(t.find("STATE"), 5, state);
        return diags(t);
    };
    // Stateless: the two outbound filters, whose mirrors come from anyone, are warned about; the
    // inbound ones (whose mirrors go from the server to its clients) are not.
    const auto r = with("");
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0], "t.ini:8: warning: filter '198.18.0.20+*:25:TCP' (rule at line 17): its mirror lets source port 25 of any host reach every port of its source; give the action 'Out' 'state = keep' (a [filteraction] of its own) so that only the answers of connections it started pass");
    EXPECT_EQ(r[1], "t.ini:10: warning: filter 'me+*:123:UDP' (rule at line 18): its mirror lets source port 123 of any host reach every port of its source; give the action 'Out' 'state = keep' (a [filteraction] of its own) so that only the answers of connections it started pass");
    EXPECT_TRUE(with("state = keep").empty());
}

TEST(Lint, DisjointEqualKeysAreQuiet) {
    const auto r = diags(R"(
[appliance]
assign = P
[filterlist A]
filter = 198.18.0.0/24+198.18.1.10:80:TCP
[filterlist B]
filter = 198.18.2.0/24+198.18.1.10:80:TCP
[filterlist Rest]
filter = *+*
[policy P]
rule = A -> permit
rule = B -> block
rule = Rest -> block
)");
    EXPECT_TRUE(r.empty()) << r.front();
}

/// The lint's counts against pair by pair, on random policies crowded into few addresses and
/// ports so that equal specificities, overlaps and shadowing are common.
TEST(Lint, CountsMatchEveryPairOnRandomPolicies) {
    std::mt19937 rng(99);
    const auto pick = [&](std::initializer_list<const char*> xs) { return std::string(xs.begin()[rng() % xs.size()]); };
    std::uint64_t seen_overlaps = 0, seen_shadowed = 0;
    for (int round = 0; round < 200; ++round) {
        std::string t = std::string("[appliance]\nme = 198.18.0.10, 198.18.0.11\nassign = P\n") +
                        (round % 3 == 0 ? "antispoof = off\n" : "");
        std::string rules;
        // Some rounds large enough for the counting sweeps (small sets are counted pair by pair).
        const int n = 2 + static_cast<int>(rng() % (round % 10 == 0 ? 400 : 40));
        for (int i = 0; i < n; ++i) {
            const std::string src = pick({"*", "198.18.1.0/24", "198.18.1.7", "198.18.1.0/25", "me", "198.18.0.0/16"});
            const std::string dst = pick({"*", "198.18.0.10", "me", "198.18.0.0/24", "198.18.1.7"});
            const std::string proto = pick({"", ":TCP", ":UDP"});
            std::string ports;
            if (!proto.empty()) {
                const std::string sp = pick({"", "80", "80-81", "82-83", "0-1023", "1000-2023"});
                const std::string dp = pick({"", "80", "81", "80-83", "0-1023", "512-1535"});
                t += "";
                ports = sp.empty() ? "" : ":" + sp;
                t += "[filterlist L" + std::to_string(i) + "]\nfilter = " + src + ports + pick({"+", "="}) + dst + ":" + dp +
                     proto + pick({"", " on=outside", " on=inside"}) + "\n";
            } else {
                t += "[filterlist L" + std::to_string(i) + "]\nfilter = " + src + pick({"+", "="}) + dst +
                     pick({"", " on=outside"}) + "\n";
            }
            rules += "rule = L" + std::to_string(i) + (rng() % 2 ? " -> permit\n" : " -> block\n");
            if (rng() % 8 == 0)  // the same list under a second rule
                rules += "rule = L" + std::to_string(i) + (rng() % 2 ? " -> permit\n" : " -> block\n");
        }
        t += "[policy P]\n" + rules;
        const LoadResult r = load_policy_text(t, "r.ini", {.lint = false});
        if (!r.usable())
            continue;
        const CompiledPolicy& cp = *r.compiled;
        // Pair by pair, as the lint defines them: equal keys but for G.
        const auto same_group = [&](std::size_t i, std::size_t j) {
            SpecKey a = cp.info[i].key, b = cp.info[j].key;
            a.g = b.g = 0;
            return a == b;
        };
        const auto same_origin = [&](std::size_t i, std::size_t j) {
            const auto& a = cp.info[i].origin;
            const auto& b = cp.info[j].origin;
            return a.rule == b.rule && a.list == b.list && a.filter == b.filter;
        };
        // Packets both match that can reach the classifier: with antispoof on (the random
        // policies' default), none from a `me` host on the outside port, none from one `me` host
        // to another; with it off, those only on the outside port (forged).
        const auto me_host = [](const dp::Addr& a, unsigned len) {
            return len == 32 && (format_addr(dp::Family::ipv4, a) == "198.18.0.10" || format_addr(dp::Family::ipv4, a) == "198.18.0.11");
        };
        const auto can_arrive = [&](const dp::Entry& x, const dp::Entry& y) {
            const dp::Entry& s = x.src_len >= y.src_len ? x : y;
            const dp::Entry& d = x.dst_len >= y.dst_len ? x : y;
            const bool from_me = me_host(s.src, s.src_len), to_me = me_host(d.dst, d.dst_len);
            const bool outside = x.on == dp::OnPort::outside || y.on == dp::OnPort::outside;
            const bool inside = x.on == dp::OnPort::inside || y.on == dp::OnPort::inside;
            if (!r.config->appliance.antispoof)
                return !(from_me && to_me && inside);
            return !(from_me && to_me) && !(from_me && outside);
        };
        std::uint64_t overlaps = 0;
        std::map<std::tuple<int, int, int>, std::pair<int, int>> shadow;  // entries, shadowed
        for (std::size_t j = 0; j < cp.rules.size(); ++j) {
            const auto& o = cp.info[j].origin;
            auto& sh = shadow[{o.rule, o.list, o.filter}];
            ++sh.first;
            bool covered = false;
            for (std::size_t i = 0; i < j; ++i) {
                if (!same_group(i, j))
                    continue;
                overlaps += cp.rules[i].action != cp.rules[j].action && entries_overlap(cp.rules[i], cp.rules[j]) &&
                            can_arrive(cp.rules[i], cp.rules[j]);
                covered = covered || (!same_origin(i, j) && entry_covers(cp.rules[i], cp.rules[j]));
            }
            sh.second += covered;
        }
        std::uint64_t shadowed = 0;
        for (const auto& [who, sh] : shadow)
            shadowed += sh.first == sh.second;
        Diagnostics d;
        LintCounts counts;
        lint_policy(*r.config, cp, d, counts);
        EXPECT_EQ(counts["overlap"], overlaps) << "round " << round << "\n" << t;
        EXPECT_EQ(counts["shadowed"], shadowed) << "round " << round << "\n" << t;
        EXPECT_EQ(counts.count("incomplete"), 0u);
        if (HasFailure())
            return;
        seen_overlaps += overlaps;
        seen_shadowed += shadowed;
    }
    EXPECT_GT(seen_overlaps, 2000u) << "the policies should be crowded enough to overlap a lot";
    EXPECT_GT(seen_shadowed, 500u);
}

TEST(Lint, OverlapsOnlyOfPacketsThatCanArrive) {
    // Permit web, block SMB, block the rest, all to `me`: the mirror halves (from me:80, from
    // me:445) overlap the other filters only in packets from `me` to `me`, which never cross the
    // appliance; quiet. A real overlap next to them is still reported.
    const std::string base = "[appliance]\nme = 198.18.0.10, 198.18.0.20\nassign = P\n[filterlist Web]\nfilter = *+me:80:TCP\n"
                             "[filterlist SMB]\nfilter = *+me:445:TCP\n[filterlist All]\nfilter = *+me\n"
                             "[policy P]\nrule = Web -> permit\nrule = SMB -> block\nrule = All -> block\n";
    const auto overlaps = [](const std::string& t) {
        std::vector<std::string> out;
        for (const auto& d : diags(t))
            if (d.find("overlap") != std::string::npos)
                out.push_back(d);
        return out;
    };
    EXPECT_EQ(overlaps(base), std::vector<std::string>{});
    const auto more = overlaps(base + "rule = Admin -> block\n[filterlist Admin]\nfilter = *+me:80:TCP\n");
    ASSERT_EQ(more.size(), 1u) << ::testing::PrintToString(more);
    EXPECT_NE(more[0].find("filters at lines 5 and 16"), std::string::npos) << more[0];
    // With antispoof on, a source of `me` cannot arrive on the outside port; with it off it can.
    const std::string from_me = "[appliance]\nme = 198.18.0.10\nassign = P\nantispoof = %\n[filterlist A]\n"
                                "filter = me=*:80:TCP on=outside\n[filterlist B]\nfilter = me=*:80:TCP\n"
                                "[policy P]\nrule = A -> permit\nrule = B -> block\n";
    const auto with = [&](const char* v) { return std::regex_replace(from_me, std::regex("%"), v); };
    EXPECT_EQ(overlaps(with("on")).size(), 0u);
    EXPECT_EQ(overlaps(with("off")).size(), 1u);
    // From one `me` host to another: forged on the outside port when antispoof is off, so an
    // overlap there is real; with antispoof on, or scoped to the inside port, it is not.
    const std::string me_to_me = "[appliance]\nme = 198.18.0.10, 198.18.0.20\nassign = P\nantispoof = %\n[filterlist A]\n"
                                 "filter = 198.18.0.10=198.18.0.20:80:TCP #\n[filterlist B]\nfilter = 198.18.0.10:80=198.18.0.20::TCP\n"
                                 "[policy P]\nrule = A -> permit\nrule = B -> block\n";
    const auto case_ = [&](const char* antispoof, const char* on) {
        return overlaps(std::regex_replace(std::regex_replace(me_to_me, std::regex("%"), antispoof), std::regex(" #"), on));
    };
    EXPECT_EQ(case_("off", "").size(), 1u);
    EXPECT_EQ(case_("off", " on=outside").size(), 1u);
    EXPECT_EQ(case_("off", " on=inside").size(), 0u);
    EXPECT_EQ(case_("on", "").size(), 0u);
}

TEST(Lint, ListsTheFirstOfEachKindAndCountsTheRest) {
    // 60 hosts, each allowed and blocked on the same port by two lists: 60 overlapping pairs.
    std::string t = "[appliance]\nassign = P\n[filterlist A]\n";
    for (int i = 0; i < 60; ++i)
        t += "filter = 198.18.1." + std::to_string(i) + "+198.18.0.10:80:TCP\n";
    t += "[filterlist B]\n";
    for (int i = 0; i < 60; ++i)
        t += "filter = 198.18.1." + std::to_string(i) + "+198.18.0.10:80:TCP\n";
    t += "[filterlist Rest]\nfilter = *+*\n[policy P]\nrule = A -> permit\nrule = B -> block\nrule = Rest -> block\n";
    const LoadResult r = load_policy_text(t, "t.ini");
    ASSERT_TRUE(r.usable());
    std::size_t overlap = 0, shadowed = 0, more = 0;
    for (const auto& d : r.diags.all()) {
        overlap += d.kind == "overlap";
        shadowed += d.kind == "shadowed";
        more += d.kind == "more";
    }
    EXPECT_EQ(overlap, 20u);
    EXPECT_EQ(shadowed, 20u);
    EXPECT_EQ(more, 2u) << "one line saying how many there are in all, per kind cut short";
    Diagnostics all;
    LintCounts counts;
    lint_policies(*r.config, all, counts);
    EXPECT_EQ(counts["overlap"], 120u) << "each filter mirrored: two entries a side";
    EXPECT_EQ(counts["shadowed"], 60u);
}

TEST(Lint, StrictTurnsWarningsIntoAnError) {
    const LoadResult r = load_policy_text(text(R"(
[appliance]
strict = on
assign = P
[filterlist W]
filter = *+198.18.0.10:80:TCP
[policy P]
rule = W -> permit
)"),
                                          "t.ini");
    EXPECT_FALSE(r.usable());
    ASSERT_EQ(r.diags.error_count(), 1);
    EXPECT_EQ(format(r.diags.all().front()),
              "t.ini:1: error: strict = on and the config has 1 warning(s): fix them or set strict = off");
}

TEST(Lint, UnusedListsAndActions) {
    const auto r = diags(R"(
[appliance]
assign = P
[filterlist Spare]
filter = *+198.18.0.1
[filteraction Drop]
action = block
[filterlist All]
filter = *+*
[policy P]
rule = All -> block
)");
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0], "t.ini:3: warning: filter list 'Spare' is not used by any policy");
    EXPECT_EQ(r[1], "t.ini:5: warning: filter action 'Drop' is not used by any rule");
}

}  // namespace
}  // namespace moat::ctl
