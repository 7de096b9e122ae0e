// The specificity order of DESIGN section 4: every key field, every tie-break, mirrors, `me`,
// `*` per family, IPv4/IPv6 separation and default deny, judged through the reference classifier.
#include "control/compile/policy.h"

#include <gtest/gtest.h>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/explain.h"
#include "control/config/packet_spec.h"
#include "dataplane/classifier_ref.h"

namespace moat::ctl {
namespace {

/// Loads a policy whose filter lists are given one per line as "ACTION FILTER" and whose me is
/// `me`; each filter gets its own list and rule, so line numbers follow the order given.
class TestPolicy {
public:
    TestPolicy(std::vector<std::string> filters, std::string me = "198.18.0.10, [2001:db8::10]") {
        text_ = "[appliance]\nme = " + me + "\nassign = P\n";  // lines 1-3
        std::string rules;
        for (std::size_t i = 0; i < filters.size(); ++i) {
            const auto space = filters[i].find(' ');
            const std::string action = filters[i].substr(0, space);
            text_ += "[filterlist F" + std::to_string(i) + "]\nfilter = " + filters[i].substr(space + 1) + "\n";
            rules += "rule = F" + std::to_string(i) + " -> " + action + "\n";
        }
        text_ += "[policy P]\n" + rules;
        result_ = load_policy_text(text_, "t.ini");
        for (const auto& d : result_.diags.all())
            if (d.severity == Severity::error)
                ADD_FAILURE() << format(d) << "\n" << text_;
    }

    /// The line of filter `i` as given to the constructor.
    static int line_of(std::size_t i) { return 5 + 2 * static_cast<int>(i); }

    const CompiledPolicy& compiled() const { return *result_.compiled; }
    const Config& config() const { return *result_.config; }

    Explanation judge(std::string_view packet) const {
        const PacketParse p = parse_packet(packet);
        EXPECT_TRUE(p.ok()) << packet;
        return explain(config(), compiled(), p.packet);
    }

    /// Index (in the constructor's list) of the winning filter, or -1 for no match.
    int winner(std::string_view packet) const {
        const auto e = judge(packet);
        if (e.winner == dp::kNoMatch)
            return -1;
        return compiled().info[e.winner].origin.list;
    }

    bool winner_is_mirror(std::string_view packet) const {
        const auto e = judge(packet);
        return e.winner != dp::kNoMatch && compiled().info[e.winner].origin.mirror;
    }

    dp::Action verdict(std::string_view packet) const { return judge(packet).action; }

private:
    std::string text_;
    LoadResult result_;
};

TEST(PortSpecificity, Values) {
    EXPECT_EQ(port_specificity(true, {}), 0u);
    EXPECT_EQ(port_specificity(false, {80, 80}), 17u);
    EXPECT_EQ(port_specificity(false, {0, 0}), 17u);
    EXPECT_EQ(port_specificity(false, {0, 1}), 16u);
    EXPECT_EQ(port_specificity(false, {0, 2}), 15u);
    EXPECT_EQ(port_specificity(false, {0, 3}), 15u);
    EXPECT_EQ(port_specificity(false, {0, 4}), 14u);
    EXPECT_EQ(port_specificity(false, {1024, 1279}), 9u);
    EXPECT_EQ(port_specificity(false, {1024, 65535}), 1u);
    EXPECT_EQ(port_specificity(false, {0, 65535}), 1u);
}

TEST(SpecKey, Fields) {
    TestPolicy p({"permit 198.18.0.0/24:1000-1003+198.18.0.10:80:TCP"});
    const auto& k = p.compiled().info.at(0).key;
    EXPECT_EQ(k.a, 24 + 32);
    EXPECT_EQ(k.b, 32);
    EXPECT_EQ(k.c, 1);
    EXPECT_EQ(k.d, 15 + 17);
    EXPECT_EQ(k.e, 17);
    EXPECT_EQ(k.f, 0);
    EXPECT_EQ(k.p, 0);
    EXPECT_EQ(k.g, 0);
    EXPECT_EQ(format_key(k), "A=56 B=32 C=1 D=32 E=17 F=0 P=0 G=0");
}

TEST(Specificity, AddressLengthSumFirst) {
    TestPolicy p({"permit *+198.18.0.10:80:TCP", "block 198.18.0.0/24+198.18.0.10"});
    // 24+32 beats 0+32 although the first filter names a protocol and a port.
    EXPECT_EQ(p.winner("tcp 198.18.0.5:40000 -> 198.18.0.10:80"), 1);
    EXPECT_EQ(p.winner("tcp 198.18.7.5:40000 -> 198.18.0.10:80"), 0);
}

TEST(Specificity, LongerPrefixBreaksEqualSums) {
    // 16+32 = 48 and 24+24 = 48: the /32 wins on B.
    TestPolicy p({"block 198.18.0.0/24+198.18.0.0/24", "permit 198.18.0.0/16+198.18.0.10"});
    EXPECT_EQ(p.winner("udp 198.18.0.5:1 -> 198.18.0.10:53"), 1);
}

TEST(Specificity, ProtocolGivenBreaksEqualAddresses) {
    TestPolicy p({"block 198.18.0.1+198.18.0.10", "permit 198.18.0.1+198.18.0.10::UDP"});
    EXPECT_EQ(p.winner("udp 198.18.0.1:5 -> 198.18.0.10:53"), 1);
    EXPECT_EQ(p.winner("tcp 198.18.0.1:5 -> 198.18.0.10:53"), 0);
}

TEST(Specificity, PortSpecificitySum) {
    TestPolicy p({"block *+0:80:TCP", "permit *:40000+0:80:TCP"});
    EXPECT_EQ(p.winner("tcp 198.18.0.1:40000 -> 198.18.0.10:80"), 1);
    EXPECT_EQ(p.winner("tcp 198.18.0.1:40001 -> 198.18.0.10:80"), 0);
}

TEST(Specificity, NarrowerRangeWins) {
    TestPolicy p({"block *+0:0-1023:TCP", "permit *+0:80-83:TCP"});
    EXPECT_EQ(p.winner("tcp 198.18.0.1:1 -> 198.18.0.10:81"), 1);
    EXPECT_EQ(p.winner("tcp 198.18.0.1:1 -> 198.18.0.10:84"), 0);
}

TEST(Specificity, MaxPortSpecificityBreaksEqualSums) {
    // D: 1 + 17 = 18 against 9 + 9 = 18; E: 17 against 9.
    TestPolicy p({"block *:1024-1279=0:1024-1279:TCP", "permit *:0-65535=0:1100:TCP"});
    EXPECT_EQ(p.winner("tcp 198.18.0.1:1100 -> 198.18.0.10:1100"), 1);
    EXPECT_EQ(p.winner("tcp 198.18.0.1:1100 -> 198.18.0.10:1101"), 0);
}

TEST(Specificity, IcmpTypeAndCode) {
    TestPolicy p({"block *=0::ICMP", "permit *=0::ICMP:3", "block *=0::ICMP:3/4"});
    EXPECT_EQ(p.winner("icmp 198.18.0.1 -> 198.18.0.10 icmp 3/4"), 2);
    EXPECT_EQ(p.winner("icmp 198.18.0.1 -> 198.18.0.10 icmp 3/1"), 1);
    EXPECT_EQ(p.winner("icmp 198.18.0.1 -> 198.18.0.10 icmp 8/0"), 0);
}

TEST(Specificity, PayloadRanksAboveEqualHeaderFilter) {
    TestPolicy p({"permit *+0:80:TCP", "block *+0:80:TCP payload=/admin/"}, "198.18.0.10");
    const auto& cp = p.compiled();
    ASSERT_EQ(cp.rules.size(), 4u);
    // Payload entries rank first; the header-only filter still decides without a scan.
    EXPECT_EQ(cp.info[0].key.p, 1);
    EXPECT_EQ(cp.info[0].origin.list, 1);
    EXPECT_NE(cp.rules[0].payload, dp::kNoPayload);
    ASSERT_EQ(cp.patterns.size(), 1u);
    EXPECT_EQ(cp.patterns[0].regex, "admin");
    EXPECT_EQ(p.winner("tcp 198.18.0.1:5 -> 198.18.0.10:80"), 0);
    EXPECT_EQ(p.judge("tcp 198.18.0.1:5 -> 198.18.0.10:80").matches.size(), 2u);
}

TEST(Specificity, BlockWinsOnEqualKeys) {
    TestPolicy p({"permit *+0:80:TCP", "block *+0:80:TCP"});
    EXPECT_EQ(p.winner("tcp 198.18.0.1:5 -> 198.18.0.10:80"), 1);
    EXPECT_EQ(p.verdict("tcp 198.18.0.1:5 -> 198.18.0.10:80"), dp::Action::block);
}

TEST(Specificity, EarlierLineBreaksRemainingTies) {
    TestPolicy p({"permit 198.18.0.0/24+0", "permit 198.18.0.0/25+0", "permit 198.18.0.0/24+0"});
    EXPECT_EQ(p.winner("udp 198.18.0.200:1 -> 198.18.0.10:2"), 0);
    TestPolicy q({"permit 198.18.0.0/25=0::UDP", "permit 198.18.0.0/24=0::UDP", "permit 198.18.0.0/26=0::UDP"});
    // Keys: /26 (A=58) first, then /25 (A=57), then /24.
    EXPECT_EQ(q.winner("udp 198.18.0.1:1 -> 198.18.0.10:2"), 2);
    EXPECT_EQ(q.winner("udp 198.18.0.100:1 -> 198.18.0.10:2"), 0);
    EXPECT_EQ(q.winner("udp 198.18.0.200:1 -> 198.18.0.10:2"), 1);
}

TEST(Specificity, OriginalBeforeItsMirror) {
    // Packet 198.18.0.1 -> 198.18.0.1 matches the original (.1 -> /24) and the mirror (/24 -> .1)
    // with the same key: the original wins.
    TestPolicy p({"permit 198.18.0.1+198.18.0.0/24"});
    EXPECT_EQ(p.winner("udp 198.18.0.1:1 -> 198.18.0.1:2"), 0);
    EXPECT_FALSE(p.winner_is_mirror("udp 198.18.0.1:1 -> 198.18.0.1:2"));
    EXPECT_TRUE(p.winner_is_mirror("udp 198.18.0.7:1 -> 198.18.0.1:2"));
}

TEST(Specificity, MirrorIsJudgedLikeItsRequest) {
    TestPolicy p({"permit *+198.18.0.10:80:TCP", "block 198.18.100.0/24+*"});
    // The request: from a client in a blocked /24 the /24 filter (A=24) loses to the web
    // filter (A=32); its reply, judged by the mirror half, has the same key and the same verdict.
    const auto req = p.judge("tcp 198.18.100.1:40000 -> 198.18.0.10:80");
    const auto rep = p.judge("tcp 198.18.0.10:80 -> 198.18.100.1:40000");
    ASSERT_NE(req.winner, dp::kNoMatch);
    ASSERT_NE(rep.winner, dp::kNoMatch);
    EXPECT_EQ(req.action, dp::Action::permit);
    EXPECT_EQ(rep.action, dp::Action::permit);
    EXPECT_EQ(p.compiled().info[req.winner].key, p.compiled().info[rep.winner].key);
    EXPECT_FALSE(p.compiled().info[req.winner].origin.mirror);
    EXPECT_TRUE(p.compiled().info[rep.winner].origin.mirror);
    // A one-way filter has no mirror.
    TestPolicy q({"permit *=198.18.0.10:80:TCP"});
    EXPECT_EQ(q.winner("tcp 198.18.0.10:80 -> 198.18.100.1:40000"), -1);
}

TEST(StateKeep, TheWrittenDirectionStartsFlowsAndTheMirrorOnlyAnswers) {
    const LoadResult r = load_policy_text(R"([appliance]
me = 198.18.0.20
assign = P
[filteraction Out]
action = permit
state = keep
[filterlist Mail]
filter = me=*:25:TCP
[filterlist Ping]
filter = me+*::ICMP:8
[filterlist Web]
filter = *+me:80:TCP
[policy P]
rule = Mail -> Out
rule = Ping -> Out
rule = Web -> permit
)", "t.ini");
    ASSERT_TRUE(r.usable());
    const CompiledPolicy& cp = *r.compiled;
    unsigned create = 0, reply = 0, stateless = 0;
    for (std::size_t i = 0; i < cp.rules.size(); ++i) {
        const dp::Entry& e = cp.rules[i];
        const EntryOrigin& o = cp.info[i].origin;
        const std::string& list = r.config->lists[static_cast<std::size_t>(o.list)].name;
        if (list == "Web") {
            ++stateless;
            EXPECT_EQ(e.state, dp::StateMode::none);
            continue;
        }
        EXPECT_EQ(e.action, dp::Action::permit);
        // A stateful filter has its mirror even when written one-way (Mail is `=`).
        EXPECT_EQ(e.state, o.mirror ? dp::StateMode::reply : dp::StateMode::create) << list;
        create += !o.mirror;
        reply += o.mirror;
        if (list == "Ping") {  // the mirror of an echo request is the echo reply
            EXPECT_EQ(e.icmp_type, o.mirror ? 0 : 8);
        }
    }
    EXPECT_EQ(create, 2u);
    EXPECT_EQ(reply, 2u);
    EXPECT_EQ(stateless, 2u);
}

TEST(Specificity, MirrorTakesTheOtherPort) {
    TestPolicy p({"permit *+0:80:TCP on=outside"});
    EXPECT_EQ(p.winner("tcp 198.18.100.1:4 -> 198.18.0.10:80 on outside"), 0);
    EXPECT_EQ(p.winner("tcp 198.18.100.1:4 -> 198.18.0.10:80 on inside"), -1);
    EXPECT_EQ(p.winner("tcp 198.18.0.10:80 -> 198.18.100.1:4 on inside"), 0);
    EXPECT_EQ(p.winner("tcp 198.18.0.10:80 -> 198.18.100.1:4 on outside"), -1);
}

TEST(Specificity, MeExpandsToEveryAddress) {
    TestPolicy p({"permit *+me:80:TCP"}, "198.18.0.10, 198.18.0.20, [2001:db8::10]");
    EXPECT_EQ(p.compiled().rules.size(), 6u);  // 3 addresses x (original + mirror)
    EXPECT_EQ(p.winner("tcp 198.18.0.1:5 -> 198.18.0.10:80"), 0);
    EXPECT_EQ(p.winner("tcp 198.18.0.1:5 -> 198.18.0.20:80"), 0);
    EXPECT_EQ(p.winner("tcp [2001:db8::1]:5 -> [2001:db8::10]:80"), 0);
    EXPECT_EQ(p.winner("tcp 198.18.0.1:5 -> 198.18.0.30:80"), -1);
}

TEST(Specificity, StarExpandsPerFamily) {
    TestPolicy p({"permit *+*::TCP"});
    EXPECT_EQ(p.compiled().rules.size(), 2u);  // IPv4 and IPv6; the mirror is the same entry
    EXPECT_EQ(p.winner("tcp 198.18.0.1:5 -> 198.18.0.10:80"), 0);
    EXPECT_EQ(p.winner("tcp [2001:db8::1]:5 -> [2001:db8::10]:80"), 0);
    // A protocol that belongs to one family keeps `*` to that family.
    TestPolicy q({"permit *+*::ICMPV6"});
    EXPECT_EQ(q.compiled().rules.size(), 1u);
    EXPECT_EQ(q.compiled().rules[0].family, dp::Family::ipv6);
}

TEST(Specificity, Ipv4AndIpv6NeverMeet) {
    TestPolicy p({"permit *+198.18.0.10", "permit [2001:db8::]/32+*"});
    EXPECT_EQ(p.winner("tcp [2001:db8::1]:5 -> [2001:db8::10]:80"), 1);
    EXPECT_EQ(p.winner("tcp [2001:db9::1]:5 -> [2001:db8::10]:80"), 1);  // the mirror half
    EXPECT_EQ(p.winner("tcp [2001:db9::1]:5 -> [2001:db9::10]:80"), -1);
    // An IPv4-mapped IPv6 address is IPv6: the IPv4 filter does not match it.
    EXPECT_EQ(p.winner("tcp [2001:db9::1]:5 -> [::ffff:198.18.0.10]:80"), -1);
}

TEST(Specificity, Ipv6PrefixLengthsCountAsTheyAre) {
    TestPolicy p({"block [2001:db8::]/64+*", "permit [2001:db8::5]+*"});
    EXPECT_EQ(p.winner("udp [2001:db8::5]:1 -> [2001:db8:1::1]:2"), 1);
    EXPECT_EQ(p.winner("udp [2001:db8::6]:1 -> [2001:db8:1::1]:2"), 0);
}

TEST(Specificity, DefaultDeny) {
    TestPolicy p({"permit *+198.18.0.10:80:TCP"});
    const auto e = p.judge("tcp 198.18.0.1:5 -> 198.18.0.10:81");
    EXPECT_EQ(e.winner, dp::kNoMatch);
    EXPECT_EQ(e.reason, VerdictReason::no_match);
    EXPECT_EQ(e.action, dp::Action::block);
    EXPECT_TRUE(e.matches.empty());
}

TEST(Specificity, NoBuiltInExemptions) {
    // Kerberos, IKE, NAT-T and DNS source ports get nothing (the Windows NoDefaultExempt hole).
    TestPolicy p({"permit *+0:80:TCP", "block *+0"});
    for (const char* pkt : {"udp 198.18.0.1:88 -> 198.18.0.10:445", "udp 198.18.0.1:500 -> 198.18.0.10:445",
                            "udp 198.18.0.1:4500 -> 198.18.0.10:445", "udp 198.18.0.1:53 -> 198.18.0.10:445",
                            "tcp 198.18.0.1:88 -> 198.18.0.10:445"})
        EXPECT_EQ(p.verdict(pkt), dp::Action::block) << pkt;
}

TEST(Specificity, OrderIsStrictAndTotal) {
    TestPolicy p({"permit *+0:80:TCP", "block *+0", "permit 198.18.0.0/24+0::UDP", "block *+*",
              "permit *=*::ICMPV6:135", "permit 0+*::TCP", "block *=0:1434:UDP", "permit *+0:80:TCP"});
    const auto& cp = p.compiled();
    ASSERT_EQ(cp.rules.size(), cp.info.size());
    for (std::size_t i = 1; i < cp.info.size(); ++i) {
        const auto& a = cp.info[i - 1];
        const auto& b = cp.info[i];
        ASSERT_GE(a.key, b.key) << "rank " << i;
        if (a.key == b.key) {
            const int la = p.line_of(static_cast<std::size_t>(a.origin.list));
            const int lb = p.line_of(static_cast<std::size_t>(b.origin.list));
            ASSERT_TRUE(la < lb || (la == lb && (a.origin.mirror < b.origin.mirror ||
                                                 (a.origin.mirror == b.origin.mirror && a.origin.expansion < b.origin.expansion))))
                << "rank " << i;
        }
    }
}

TEST(ReferenceClassifier, FirstMatchingRankWins) {
    TestPolicy p({"permit *+0:80:TCP", "block *+0"});
    const auto& cp = p.compiled();
    dp::PacketKey k = parse_packet("tcp 198.18.0.1:5 -> 198.18.0.10:80").packet.key;
    const dp::Rank r = dp::classify_ref(cp.rules, k);
    ASSERT_NE(r, dp::kNoMatch);
    for (dp::Rank i = 0; i < r; ++i)
        EXPECT_FALSE(dp::header_matches(cp.rules[i], k));
    EXPECT_TRUE(dp::header_matches(cp.rules[r], k));
}

}  // namespace
}  // namespace moat::ctl
