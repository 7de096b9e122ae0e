// `state = keep` over real mbufs: the flow table after parse and classify, as the worker runs it.
// The holes a stateless mirror leaves (SMTP's source port 25, NTP's 123) are open without state
// and closed with it; TCP must start with a SYN and stay in its windows; ICMP errors pass only for
// tracked flows; a full table refuses new flows and keeps the old; a reload cuts what the new
// policy would not start. The TCP tracker alone is held to pf's rules by hand-made conversations.
#include "dataplane/state.h"

#include <gtest/gtest.h>
#include <rte_cycles.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>

#include "control/compile/load.h"
#include "control/compile/tables.h"
#include "control/config/config.h"
#include "control/runtime/runtime.h"
#include "control/config/filter_spec.h"
#include "control/runtime/publisher.h"
#include "control/runtime/states.h"
#include "dataplane/classify.h"
#include "tests/common/eal_env.h"

namespace moat::dp {
namespace {

using test::Bytes;
using test::Pkt;

/// A mail server that may send SMTP anywhere, an NTP client, ping out, and nothing else; the
/// actions' state line is filled in by each test.
std::string policy(const std::string& state) {
    return R"([appliance]
me = 198.18.0.20
assign = P
[filteraction Out]
action = permit
)" + state + R"(
[filterlist Mail out]
filter = 198.18.0.20+*:25:TCP
[filterlist NTP]
filter = me+*:123:UDP
[filterlist Ping]
filter = me+*::ICMP:8
[filterlist Web in]
filter = *+me:80:TCP
[policy P]
rule = Mail out -> Out
rule = NTP -> Out
rule = Ping -> Out
rule = Web in -> permit
)";
}

constexpr const char* kServer = "198.18.0.20";
constexpr const char* kPeer = "198.19.5.5";

/// A TCP segment; `wscale` >= 0 adds a window-scale option.
Bytes tcp_frame(const std::string& src, const std::string& dst, std::uint16_t sport, std::uint16_t dport,
                std::uint8_t flags, std::uint32_t seq, std::uint32_t ack, std::uint16_t win = 65535,
                const std::string& payload = "", int wscale = -1) {
    Pkt p;
    p.src = src;
    p.dst = dst;
    p.proto = 6;
    p.sport = sport;
    p.dport = dport;
    p.payload = payload;
    p.tcp_doff = wscale >= 0 ? 6 : 5;
    test::Built b = test::build(p);
    Bytes& f = b.bytes;
    const std::size_t l4 = b.l4;
    for (int i = 0; i < 4; ++i) {
        f[l4 + 4 + i] = static_cast<std::uint8_t>(seq >> (24 - 8 * i));
        f[l4 + 8 + i] = static_cast<std::uint8_t>(ack >> (24 - 8 * i));
    }
    f[l4 + 13] = flags;
    test::put16(f, l4 + 14, win);
    if (wscale >= 0) {
        f[l4 + 20] = 1;  // NOP, then window scale
        f[l4 + 21] = 3;
        f[l4 + 22] = 3;
        f[l4 + 23] = static_cast<std::uint8_t>(wscale);
    }
    return f;
}

Bytes udp_frame(const std::string& src, std::uint16_t sport, const std::string& dst, std::uint16_t dport, int ip = 4) {
    Pkt p;
    p.ip = ip;
    p.src = src;
    p.dst = dst;
    p.proto = 17;
    p.sport = sport;
    p.dport = dport;
    p.payload = "ntp";
    return test::frame(p);
}

Bytes icmp_echo(const std::string& src, const std::string& dst, std::uint8_t type, std::uint16_t id) {
    Pkt p;
    p.src = src;
    p.dst = dst;
    p.proto = 1;
    p.icmp_type = type;
    test::Built b = test::build(p);
    test::put16(b.bytes, b.l4 + 4, id);
    return b.bytes;
}

/// An ICMP error from `router` to `to` that quotes the first bytes of `quoted` (a frame).
Bytes icmp_error(const std::string& router, const std::string& to, std::uint8_t type, std::uint8_t code,
                 const Bytes& quoted) {
    Pkt p;
    p.src = router;
    p.dst = to;
    p.proto = 1;
    p.icmp_type = type;
    p.icmp_code = code;
    p.payload.assign(quoted.begin() + 14, quoted.begin() + 14 + 28);  // its IP header and 8 bytes
    return test::frame(p);
}

class State : public ::testing::Test {
protected:
    /// Publishes `text` as the next generation; the flow table stays, as across moatd's reloads.
    void reload(const std::string& text) {
        loaded_ = ctl::load_policy_text(text, "t.ini");
        ASSERT_TRUE(loaded_.usable()) << text;
        auto built = ctl::build_table_set(*loaded_.config, *loaded_.compiled, 1, ++generation_);
        ASSERT_TRUE(built) << built.error();
        tables_ = std::move(built->tables);
    }

    /// The test policy with `state` on its action, and a flow table of `entries` if none yet.
    void load(const std::string& state, unsigned entries = 64) {
        reload(policy(state));
        std::string error;
        if (!flows_)
            flows_ = FlowTable::create(entries, SOCKET_ID_ANY, error);
        ASSERT_TRUE(flows_) << error;
    }

    /// Parses, classifies and settles one frame arriving on `in`; the verdict.
    Verdict judge(const Bytes& frame, Ingress in) {
        rte_mbuf* m = test::mbuf(frame);
        EXPECT_NE(m, nullptr);
        PacketMeta meta;
        Verdict v;
        parse_burst({&m, 1}, in, tables_->parse, {&meta, 1});
        if (tables_->has_state)  // as the worker does: keys and slots before the classifier
            flows_->prepare({&m, 1}, {&meta, 1});
        classify_burst(*tables_, {&meta, 1}, {&v, 1});
        if (tables_->has_state)
            flows_->settle(*tables_, {&m, 1}, {&meta, 1}, {&v, 1}, now_, counts_);
        rte_pktmbuf_free(m);
        return v;
    }
    bool passes(const Bytes& frame, Ingress in) { return judge(frame, in).drop == DropReason::none; }

    /// A TCP handshake from the server (inside) to the peer's SMTP port; true when all of it passed.
    bool smtp_handshake(std::uint16_t sport) {
        return passes(tcp_frame(kServer, kPeer, sport, 25, kTcpSyn, 1000, 0), Ingress::inside) &&
               passes(tcp_frame(kPeer, kServer, 25, sport, kTcpSyn | kTcpAck, 5000, 1001), Ingress::outside) &&
               passes(tcp_frame(kServer, kPeer, sport, 25, kTcpAck, 1001, 5001), Ingress::inside);
    }

    ctl::LoadResult loaded_;
    std::unique_ptr<TableSet> tables_;
    std::unique_ptr<FlowTable> flows_;
    std::uint64_t generation_ = 0;
    std::uint64_t now_ = 1'000'000;
    StateCounts counts_;
};

constexpr const char* kKeep = "state = keep";
constexpr const char* kStateless = "";

/// A policy of one stateful filter, `filter`, with the appliance's addresses `me`.
std::string one_stateful(const std::string& filter, const std::string& me = "198.18.0.20") {
    return R"([appliance]
me = )" + me + R"(
assign = P
[filteraction Out]
action = permit
state = keep
[filterlist Stateful]
filter = )" + filter + R"(
[policy P]
rule = Stateful -> Out
)";
}

/// The test policy without its mail rule: NTP's stateful permit alone.
const std::string kNtpOnly = one_stateful("me+*:123:UDP");

TEST_F(State, SmtpSourcePortIsAHoleWithoutStateAndClosedWithIt) {
    // Anyone whose source port is 25 reaches every TCP port of the mail server...
    load(kStateless);
    const Bytes attack = tcp_frame(kPeer, kServer, 25, 3389, kTcpSyn, 7, 0);
    EXPECT_TRUE(passes(attack, Ingress::outside));
    EXPECT_TRUE(passes(tcp_frame(kPeer, kServer, 25, 22, kTcpAck, 7, 9), Ingress::outside));
    // ... unless the action keeps state: the mirror passes only the server's own connections.
    load(kKeep);
    const Verdict v = judge(attack, Ingress::outside);
    EXPECT_EQ(v.drop, DropReason::state);
    EXPECT_EQ(judge(tcp_frame(kPeer, kServer, 25, 22, kTcpAck, 7, 9), Ingress::outside).drop, DropReason::state);
    EXPECT_TRUE(smtp_handshake(40000));
    EXPECT_TRUE(passes(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5001, 1001, 65535, "220 mail"), Ingress::outside));
    EXPECT_EQ(counts_.created, 1u);
    EXPECT_EQ(flows_->in_use(), 1u);
    // The same attack on the port of the tracked connection's neighbour still finds no flow.
    EXPECT_EQ(judge(tcp_frame(kPeer, kServer, 25, 40001, kTcpSyn | kTcpAck, 5000, 1001), Ingress::outside).drop,
              DropReason::state);
}

TEST_F(State, NtpSourcePortReachesSnmpWithoutStateAndNotWithIt) {
    // An NTP client's filter, me+*:123: its mirror *:123+me lets source port 123 reach SNMP.
    const Bytes snmp = udp_frame(kPeer, 123, kServer, 161);
    load(kStateless);
    EXPECT_TRUE(passes(snmp, Ingress::outside));
    load(kKeep);
    EXPECT_EQ(judge(snmp, Ingress::outside).drop, DropReason::state);
    EXPECT_EQ(judge(udp_frame(kPeer, 123, kServer, 40000), Ingress::outside).drop, DropReason::state);
    EXPECT_TRUE(passes(udp_frame(kServer, 40000, kPeer, 123), Ingress::inside));
    EXPECT_TRUE(passes(udp_frame(kPeer, 123, kServer, 40000), Ingress::outside));  // the answer
    EXPECT_EQ(judge(snmp, Ingress::outside).drop, DropReason::state);  // still closed
    EXPECT_EQ(counts_.created, 1u);
}

TEST_F(State, ATcpFlowStartsOnlyWithASyn) {
    load(kKeep);
    for (const std::uint8_t flags : {kTcpAck, std::uint8_t(kTcpSyn | kTcpAck), kTcpRst, kTcpFin, std::uint8_t(0),
                                     std::uint8_t(kTcpSyn | kTcpRst), std::uint8_t(kTcpSyn | kTcpFin)})
        EXPECT_EQ(judge(tcp_frame(kServer, kPeer, 40000, 25, flags, 1000, 1), Ingress::inside).drop, DropReason::state)
            << int(flags);
    EXPECT_EQ(counts_.created, 0u);
    EXPECT_TRUE(passes(tcp_frame(kServer, kPeer, 40000, 25, kTcpSyn, 1000, 0), Ingress::inside));
    EXPECT_EQ(counts_.created, 1u);
}

TEST_F(State, ABlindAnswerDuringTheHandshakeNeitherPassesNorSpoilsIt) {
    // The review's attack: while the server's SYN waits for its answer, a spoofed packet from
    // the peer's address and port, without ACK (PSH with data, a bare RST, a SYN-ACK that does
    // not acknowledge the SYN), would have set the peer's sequence numbers and the real SYN-ACK
    // would then be out of window.
    load(kKeep);
    ASSERT_TRUE(passes(tcp_frame(kServer, kPeer, 40000, 25, kTcpSyn, 1000, 0), Ingress::inside));
    for (const auto& [flags, ack] : {std::pair<std::uint8_t, std::uint32_t>{0x08, 0}, {kTcpRst, 0}, {kTcpFin, 0},
                                     {kTcpSyn | kTcpAck, 1000}, {kTcpSyn | kTcpAck, 1002}, {kTcpAck, 1001},
                                     {kTcpSyn, 0}, {kTcpRst | kTcpAck, 999}})
        EXPECT_EQ(judge(tcp_frame(kPeer, kServer, 25, 40000, flags, 0xdeadbeef, ack, 65535, "EVIL"), Ingress::outside).drop,
                  DropReason::state)
            << int(flags) << " ack " << ack;
    EXPECT_TRUE(passes(tcp_frame(kPeer, kServer, 25, 40000, kTcpSyn | kTcpAck, 5000, 1001), Ingress::outside));
    EXPECT_TRUE(passes(tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001, 5001), Ingress::inside));
    // A refused connection's RST-ACK passes.
    ASSERT_TRUE(passes(tcp_frame(kServer, kPeer, 40002, 25, kTcpSyn, 7000, 0), Ingress::inside));
    EXPECT_TRUE(passes(tcp_frame(kPeer, kServer, 25, 40002, kTcpRst | kTcpAck, 0, 7001), Ingress::outside));
}

TEST_F(State, AFlowsPacketsFromTheWrongSideOfTheWireAreNotOfIt) {
    load(kKeep);
    ASSERT_TRUE(smtp_handshake(40000));
    // The peer's answer, in window, but arriving on the inside port (spoofed from the inside),
    // and the server's next segment arriving on the outside port.
    EXPECT_EQ(judge(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5001, 1001, 65535, "220"), Ingress::inside).drop,
              DropReason::state);
    EXPECT_EQ(judge(tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001, 5001, 65535, "EHLO"), Ingress::outside).drop,
              DropReason::spoofed);  // (antispoof sees this one first: the server is `me`)
    EXPECT_TRUE(passes(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5001, 1001, 65535, "220"), Ingress::outside));
    // UDP likewise.
    ASSERT_TRUE(passes(udp_frame(kServer, 40000, kPeer, 123), Ingress::inside));
    EXPECT_EQ(judge(udp_frame(kPeer, 123, kServer, 40000), Ingress::inside).drop, DropReason::state);
}

TEST_F(State, SegmentsOutsideTheWindowsAreDropped) {
    load(kKeep);
    ASSERT_TRUE(smtp_handshake(40000));
    // In window: data both ways.
    EXPECT_TRUE(passes(tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001, 5001, 65535, "EHLO x"), Ingress::inside));
    EXPECT_TRUE(passes(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5001, 1007, 65535, "250 ok"), Ingress::outside));
    // A blind injection far from the peer's sequence numbers.
    EXPECT_EQ(judge(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5001 + 1'000'000, 1007, 65535, "evil"),
                    Ingress::outside).drop, DropReason::state);
    // Data beyond what the server's window allows.
    EXPECT_EQ(judge(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5007 + 70000, 1007, 65535, "x"), Ingress::outside).drop,
              DropReason::state);
    // Acknowledging data never sent.
    EXPECT_EQ(judge(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5007, 1007 + 200000, 65535, "y"),
                    Ingress::outside).drop, DropReason::state);
    // A RST must carry the exact next sequence number (RFC 5961's blind reset).
    EXPECT_EQ(judge(tcp_frame(kPeer, kServer, 25, 40000, kTcpRst | kTcpAck, 5007 + 3000, 1007), Ingress::outside).drop,
              DropReason::state);
    EXPECT_TRUE(passes(tcp_frame(kPeer, kServer, 25, 40000, kTcpRst | kTcpAck, 5007, 1007), Ingress::outside));
}

TEST_F(State, IcmpFragmentationNeededPassesForATrackedFlowOnly) {
    load(kKeep);
    const Bytes data = tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001, 5001, 65535, "EHLO x");
    ASSERT_TRUE(smtp_handshake(40000));
    ASSERT_TRUE(passes(data, Ingress::inside));
    // A router beyond the appliance says the server's segment was too big: it quotes that segment.
    EXPECT_TRUE(passes(icmp_error("198.19.0.1", kServer, 3, 4, data), Ingress::outside));
    EXPECT_EQ(counts_.related, 1u);
    // The same error quoting a connection that does not exist.
    const Bytes other = tcp_frame(kServer, kPeer, 40999, 25, kTcpAck, 1001, 5001);
    EXPECT_EQ(judge(icmp_error("198.19.0.1", kServer, 3, 4, other), Ingress::outside).drop, DropReason::no_match);
    // Quoting the tracked connection with a sequence number far outside what the server sent.
    const Bytes forged = tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001 + 3'000'000, 5001);
    EXPECT_EQ(judge(icmp_error("198.19.0.1", kServer, 3, 4, forged), Ingress::outside).drop, DropReason::no_match);
    // Going to the wrong host: the quoted packet's sender is the server, not the peer.
    EXPECT_EQ(judge(icmp_error("198.19.0.1", kPeer, 3, 4, data), Ingress::inside).drop, DropReason::no_match);
    // An error type that is not one (echo reply with a quoted header) is not related.
    EXPECT_EQ(judge(icmp_error("198.19.0.1", kServer, 5, 0, data), Ingress::outside).drop, DropReason::no_match);
    // The right error arriving on the wrong port (from inside: the quoted segment left outwards).
    EXPECT_EQ(judge(icmp_error("198.18.0.1", kServer, 3, 4, data), Ingress::inside).drop, DropReason::no_match);
    EXPECT_EQ(counts_.related, 1u);
}

TEST_F(State, AnErrorQuotingAFlowFromBeforeAReloadWaitsForTheFlowsNextPacket) {
    // After a reload that would cut the mail connection, an error quoting it must not pass on the
    // strength of the old policy: the flow has not been judged by the new one yet.
    load(kKeep);
    const Bytes data = tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001, 5001, 65535, "EHLO x");
    ASSERT_TRUE(smtp_handshake(40000));
    ASSERT_TRUE(passes(data, Ingress::inside));
    const Bytes error = icmp_error("198.19.0.1", kServer, 3, 4, data);
    ASSERT_TRUE(passes(error, Ingress::outside));
    reload(kNtpOnly);
    EXPECT_EQ(judge(error, Ingress::outside).drop, DropReason::no_match);
    EXPECT_EQ(flows_->in_use(), 1u);  // not judged yet, so not cut yet
    // The same policy again: the flow's next packet brings it to the new generation, and then
    // its errors pass again.
    load(kKeep);
    EXPECT_EQ(judge(error, Ingress::outside).drop, DropReason::no_match);
    ASSERT_TRUE(passes(tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1007, 5001, 65535, "DATA"), Ingress::inside));
    EXPECT_TRUE(passes(error, Ingress::outside));
}

TEST_F(State, ARelatedErrorPassesACatchAllBlockButNotABlockWrittenForIcmp) {
    const Bytes data = tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001, 5001, 65535, "EHLO x");
    const auto with = [&](const std::string& block) {
        // [policy P] is the last section: its last rule, then the list.
        reload(policy(kKeep) + "rule = Block -> block\n[filterlist Block]\nfilter = " + block + "\n");
        std::string error;
        flows_ = FlowTable::create(64, SOCKET_ID_ANY, error);
        ASSERT_TRUE(smtp_handshake(40000));
        ASSERT_TRUE(passes(data, Ingress::inside));
    };
    with("*+0");  // a catch-all: the error is related, it passes
    EXPECT_TRUE(passes(icmp_error("198.19.0.1", kServer, 3, 4, data), Ingress::outside));
    with("*=0::ICMP:3");  // the operator blocks unreachables to the server: they stay blocked
    EXPECT_EQ(judge(icmp_error("198.19.0.1", kServer, 3, 4, data), Ingress::outside).drop, DropReason::policy);
}

TEST_F(State, PingRepliesPassByIdentifier) {
    load(kKeep);
    EXPECT_EQ(judge(icmp_echo(kPeer, kServer, 0, 77), Ingress::outside).drop, DropReason::state);  // unasked
    EXPECT_TRUE(passes(icmp_echo(kServer, kPeer, 8, 77), Ingress::inside));
    EXPECT_TRUE(passes(icmp_echo(kPeer, kServer, 0, 77), Ingress::outside));
    EXPECT_EQ(judge(icmp_echo(kPeer, kServer, 0, 78), Ingress::outside).drop, DropReason::state);  // another id
    // An echo request from outside matches no filter (ping is permitted outward only).
    EXPECT_EQ(judge(icmp_echo(kPeer, kServer, 8, 77), Ingress::outside).drop, DropReason::no_match);
}

TEST_F(State, AnAnsweredPingsFlowLivesForTheReplyTimeout) {
    load(kKeep);
    ASSERT_TRUE(passes(icmp_echo(kServer, kPeer, 8, 77), Ingress::inside));
    ASSERT_TRUE(passes(icmp_echo(kPeer, kServer, 0, 77), Ingress::outside));
    // pf's icmp.error: a reply renews the flow for 10 s, not the first packet's 20 s.
    now_ += rte_get_tsc_hz() * (StateTimeouts::icmp_reply + 1);
    EXPECT_EQ(judge(icmp_echo(kPeer, kServer, 0, 77), Ingress::outside).drop, DropReason::state);
    EXPECT_EQ(counts_.expired, 1u);
}

TEST_F(State, IPv6FlowsAreOneFlowBothWaysWhateverTheirAddressesWords) {
    // The NTP client on an IPv6 address too; peers whose addresses differ from the server's
    // in their first 64-bit word only, in their second only, or in both (the key orders the
    // endpoints by both words).
    reload(one_stateful("me+*:123:UDP", "198.18.0.20, [2001:db8::20]"));
    std::string error;
    flows_ = FlowTable::create(64, SOCKET_ID_ANY, error);
    ASSERT_TRUE(flows_) << error;
    const std::string server = "2001:db8::20";
    for (const std::string peer : {"2001:db8::5", "2001:db8::21", "2001:db8:1::", "2001:db8:7::", "2001:db8::"}) {
        EXPECT_FALSE(passes(udp_frame(peer, 123, server, 40000, 6), Ingress::outside)) << peer;  // unasked
        EXPECT_TRUE(passes(udp_frame(server, 40000, peer, 123, 6), Ingress::inside)) << peer;
        EXPECT_TRUE(passes(udp_frame(peer, 123, server, 40000, 6), Ingress::outside)) << peer;
        EXPECT_TRUE(passes(udp_frame(peer, 123, server, 40000, 6), Ingress::outside)) << peer;
        EXPECT_FALSE(passes(udp_frame(peer, 123, server, 161, 6), Ingress::outside)) << peer;  // not its port
    }
    EXPECT_EQ(flows_->in_use(), 5u);
}

TEST_F(State, AFullTableRefusesNewFlowsAndKeepsTheTrackedOnes) {
    load(kKeep, 8);
    ASSERT_TRUE(smtp_handshake(40000));
    // A SYN flood from the server side (say, a compromised host) fills the table.
    unsigned passed = 0;
    for (std::uint16_t p = 41000; p < 41100; ++p)
        passed += passes(tcp_frame(kServer, kPeer, p, 25, kTcpSyn, p, 0), Ingress::inside);
    EXPECT_EQ(flows_->in_use(), flows_->capacity());
    EXPECT_EQ(passed, flows_->capacity() - 1);
    EXPECT_EQ(counts_.full, 100u - passed);
    // The established connection goes on.
    EXPECT_TRUE(passes(tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001, 5001, 65535, "DATA"), Ingress::inside));
    EXPECT_TRUE(passes(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5001, 1005, 65535, "354"), Ingress::outside));
    // Once their first timeout passes, the half-open flows are swept and new ones fit again.
    now_ += rte_get_tsc_hz() * (StateTimeouts::tcp_first + 1);
    flows_->sweep(now_, static_cast<unsigned>(flows_->slots()), counts_);
    EXPECT_EQ(flows_->in_use(), 1u);  // the established connection lasts 24 h
}

/// UDP flows against a model (a map of live flows and their expiry), in a table of `capacity`
/// flows whose keys have `home_slots` home slots (0: all): with one, every flow lies in one run
/// of slots from slot 0, the case an attacker who could aim flows at one slot would make; a small
/// table's runs wrap around its end. Exactly `capacity` flows fit, a removal leaves no hole
/// (the run from slot 0 holds every flow) and nothing is lost or found twice when flows come
/// and go in any order.
void flows_against_a_model(std::unique_ptr<FlowTable>& flows, unsigned kCapacity, std::uint64_t home_slots,
                           std::uint64_t& now, StateCounts& counts,
                           const std::function<bool(const Bytes&, Ingress)>& passes) {
    std::string error;
    flows = FlowTable::create(kCapacity, SOCKET_ID_ANY, error, home_slots);
    ASSERT_TRUE(flows) << error;
    struct Live {
        std::uint64_t expires;
        bool answered;
    };
    std::map<std::uint16_t, Live> model;
    const std::uint64_t hz = rte_get_tsc_hz();
    std::mt19937 rng(static_cast<unsigned>(home_slots) * 7919u + kCapacity);
    unsigned refused = 0;  // new flows a full table refused: the test went where it means to
    for (int step = 0; step < 20000; ++step) {
        const std::uint16_t port = static_cast<std::uint16_t>(40000 + rng() % 200);
        const unsigned what = rng() % 100;
        auto it = model.find(port);
        if (what < 50) {  // the client sends: a new flow when there is room, or its flow goes on
            const bool pass = passes(udp_frame(kServer, port, kPeer, 123), Ingress::inside);
            if (it != model.end()) {
                ASSERT_TRUE(pass) << "step " << step << ": a tracked flow's packet was dropped";
                it->second.expires = now + hz * (it->second.answered ? StateTimeouts::udp_multiple : StateTimeouts::udp_single);
            } else {
                ASSERT_EQ(pass, model.size() < kCapacity) << "step " << step << ", " << model.size() << " flows";
                refused += !pass;
                if (pass)
                    model[port] = {now + hz * StateTimeouts::udp_first, false};
            }
        } else if (what < 97) {  // the server answers: only a tracked flow's answer passes
            const bool pass = passes(udp_frame(kPeer, 123, kServer, port), Ingress::outside);
            ASSERT_EQ(pass, it != model.end()) << "step " << step;
            if (pass)
                it->second = {now + hz * StateTimeouts::udp_multiple, true};
        } else {  // time passes; everything expired is swept
            now += hz * (rng() % 40);
            flows->sweep(now, static_cast<unsigned>(flows->slots()), counts);
            std::erase_if(model, [&](const auto& f) { return f.second.expires <= now; });
        }
        ASSERT_EQ(flows->in_use(), model.size()) << "step " << step;
        if (home_slots == 1) {  // one run from slot 0, without a hole
            ASSERT_EQ(flows->run_at_slot_zero(), model.size()) << "step " << step;
        }
    }
    EXPECT_GT(refused, 100u);
    EXPECT_GT(counts.expired, 1000u);
}

TEST_F(State, FlowsOfOneHomeSlotComeAndGoAsTheModelSays) {
    load(kKeep);
    flows_against_a_model(flows_, 64, 1, now_, counts_, [&](const Bytes& f, Ingress in) { return passes(f, in); });
}

TEST_F(State, FlowsInTheDefaultTableComeAndGoAsTheModelSays) {
    load(kKeep);
    flows_against_a_model(flows_, 64, 0, now_, counts_, [&](const Bytes& f, Ingress in) { return passes(f, in); });
}

TEST_F(State, FlowsInASmallTableWhoseRunsWrapComeAndGoAsTheModelSays) {
    // 8 flows in 16 slots: runs often pass the last slot and go on at slot 0.
    load(kKeep);
    flows_against_a_model(flows_, 8, 0, now_, counts_, [&](const Bytes& f, Ingress in) { return passes(f, in); });
}

TEST_F(State, OneBurstThatExpiresRecreatesAndAnswersFlowsInOneChainFindsEachOnce) {
    // Within one burst, a packet can find its flow expired (freed on the way, the flows after it
    // shifted back a slot), make it anew in another slot, and a later packet of the same burst
    // must find that one, not the slot the burst's lookup saw. All in one run of slots.
    load(kKeep);
    std::string error;
    flows_ = FlowTable::create(16, SOCKET_ID_ANY, error, 1);
    ASSERT_TRUE(flows_) << error;
    for (std::uint16_t p = 0; p < 16; ++p)
        ASSERT_TRUE(passes(udp_frame(kServer, static_cast<std::uint16_t>(40000 + p), kPeer, 123), Ingress::inside));
    ASSERT_EQ(flows_->in_use(), 16u);
    ASSERT_EQ(flows_->run_at_slot_zero(), 16u);
    now_ += rte_get_tsc_hz() * (StateTimeouts::udp_first + 1);  // all expired, none swept
    // One burst: each client's packet (in reverse order, so the positions come back shuffled),
    // then each answer, then an answer of a flow that was never made.
    std::vector<Bytes> frames;
    std::vector<Ingress> in;
    for (int p = 15; p >= 0; --p) {
        frames.push_back(udp_frame(kServer, static_cast<std::uint16_t>(40000 + p), kPeer, 123));
        in.push_back(Ingress::inside);
    }
    for (std::uint16_t p = 0; p < 16; ++p) {
        frames.push_back(udp_frame(kPeer, 123, kServer, static_cast<std::uint16_t>(40000 + p)));
        in.push_back(Ingress::outside);
    }
    frames.push_back(udp_frame(kPeer, 123, kServer, 41000));
    in.push_back(Ingress::outside);
    // A burst is parsed per port: the clients' packets and the answers in one settle call.
    std::vector<rte_mbuf*> m;
    for (const Bytes& f : frames)
        m.push_back(test::mbuf(f));
    std::vector<PacketMeta> meta(m.size());
    std::vector<Verdict> v(m.size());
    for (std::size_t i = 0; i < m.size(); ++i)
        parse_burst({&m[i], 1}, in[i], tables_->parse, {&meta[i], 1});
    classify_burst(*tables_, meta, v);
    const StateCounts before = counts_;
    flows_->settle(*tables_, m, meta, v, now_, counts_);
    for (rte_mbuf* x : m)
        rte_pktmbuf_free(x);
    for (std::size_t i = 0; i + 1 < v.size(); ++i)
        EXPECT_EQ(v[i].drop, DropReason::none) << "packet " << i;
    EXPECT_EQ(v.back().drop, DropReason::state);
    EXPECT_EQ(counts_.expired - before.expired, 16u);
    EXPECT_EQ(counts_.created - before.created, 16u);
    EXPECT_EQ(flows_->in_use(), 16u);
    EXPECT_EQ(flows_->run_at_slot_zero(), 16u);
}

/// Bursts of 1 to 40 UDP packets (clients and answers of 24 ports, repeats within a burst)
/// settled at once, against a model that takes the packets in order. Flows expire between
/// bursts and a sweep of a few slots frees some of them, so a burst finds others expired (freed
/// on the way, the flows after them shifted back) while its later packets still hold the slots
/// their flows were seen in. The table (32 flows) never fills: the expired flows it has not
/// swept yet would count against it, which a model cannot know. `prepare`: the worker's order
/// (keys before the classifier) or settle's own.
void bursts_against_a_model(FlowTable& flows, const TableSet& tables, bool prepare, std::uint64_t& now,
                            StateCounts& counts, unsigned seed) {
    struct Live {
        std::uint64_t expires;
        bool answered;
    };
    std::map<std::uint16_t, Live> model;
    const std::uint64_t hz = rte_get_tsc_hz();
    std::mt19937 rng(seed);
    unsigned within = 0;              // repeats of a flow within a burst
    std::uint64_t found_expired = 0;  // flows a burst found expired
    for (int step = 0; step < 3000; ++step) {
        std::erase_if(model, [&](const auto& f) { return f.second.expires <= now; });
        const unsigned n = 1 + rng() % 40;
        std::vector<rte_mbuf*> m;
        std::vector<PacketMeta> meta(n);
        std::vector<Verdict> v(n);
        std::vector<bool> expect(n);
        std::set<std::uint16_t> in_burst;
        for (unsigned i = 0; i < n; ++i) {
            const std::uint16_t port = static_cast<std::uint16_t>(40000 + rng() % 24);
            within += !in_burst.insert(port).second;
            const bool client = rng() % 2 == 0;
            m.push_back(test::mbuf(client ? udp_frame(kServer, port, kPeer, 123) : udp_frame(kPeer, 123, kServer, port)));
            parse_burst({&m[i], 1}, client ? Ingress::inside : Ingress::outside, tables.parse, {&meta[i], 1});
            auto it = model.find(port);
            expect[i] = it != model.end() || client;
            if (it != model.end()) {
                it->second.answered = it->second.answered || !client;
                it->second.expires =
                    now + hz * (it->second.answered ? StateTimeouts::udp_multiple : StateTimeouts::udp_single);
            } else if (client) {
                model[port] = {now + hz * StateTimeouts::udp_first, false};
            }
        }
        if (prepare)
            flows.prepare(m, meta);
        classify_burst(tables, meta, v);
        const std::uint32_t expired_before = counts.expired;
        flows.settle(tables, m, meta, v, now, counts);
        found_expired += counts.expired - expired_before;
        for (rte_mbuf* x : m)
            rte_pktmbuf_free(x);
        for (unsigned i = 0; i < n; ++i)
            ASSERT_EQ(v[i].drop == DropReason::none, expect[i]) << "step " << step << ", packet " << i;
        ASSERT_GE(flows.in_use(), model.size()) << "step " << step;
        // Time passes, now and then past every timeout; a sweep of a few slots.
        now += hz * (rng() % 6 == 0 ? StateTimeouts::udp_first + 1 : rng() % 10);
        flows.sweep(now, 1 + rng() % 8, counts);
        if (step % 50 == 49) {  // a whole sweep: the table and the model agree
            flows.sweep(now, static_cast<unsigned>(flows.slots()), counts);
            std::erase_if(model, [&](const auto& f) { return f.second.expires <= now; });
            ASSERT_EQ(flows.in_use(), model.size()) << "step " << step;
        }
    }
    EXPECT_GT(within, 1000u);
    EXPECT_GT(found_expired, 100u);
}

TEST_F(State, BurstsOfManyPacketsComeAndGoAsTheModelSays) {
    load(kKeep);
    for (const std::uint64_t homes : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{4}})
        for (const bool prepare : {true, false}) {
            SCOPED_TRACE(testing::Message() << homes << " home slots, prepare " << prepare);
            std::string error;
            flows_ = FlowTable::create(32, SOCKET_ID_ANY, error, homes);
            ASSERT_TRUE(flows_) << error;
            counts_ = {};
            bursts_against_a_model(*flows_, *tables_, prepare, now_, counts_, static_cast<unsigned>(homes * 2 + prepare));
        }
}

TEST_F(State, KeysPreparedForOneBurstAreNotTakenForAnother) {
    // prepare on a burst whose settle never came (a caller's mistake), then another burst parsed
    // into the same arrays: settle must make that burst's keys, not take the first one's.
    load(kKeep);
    ASSERT_TRUE(passes(udp_frame(kServer, 40000, kPeer, 123), Ingress::inside));
    rte_mbuf* answer = test::mbuf(udp_frame(kPeer, 123, kServer, 40000));
    PacketMeta meta;
    Verdict v;
    parse_burst({&answer, 1}, Ingress::outside, tables_->parse, {&meta, 1});
    flows_->prepare({&answer, 1}, {&meta, 1});
    rte_mbuf* forged = test::mbuf(udp_frame(kPeer, 123, kServer, 41000));  // no flow of its own
    parse_burst({&forged, 1}, Ingress::outside, tables_->parse, {&meta, 1});
    classify_burst(*tables_, {&meta, 1}, {&v, 1});
    flows_->settle(*tables_, {&forged, 1}, {&meta, 1}, {&v, 1}, now_, counts_);
    EXPECT_EQ(v.drop, DropReason::state);
    rte_pktmbuf_free(answer);
    rte_pktmbuf_free(forged);
}

TEST(FlowTableCreate, RefusesAHomeSlotCountThatIsNotAPowerOfTwoWithinTheSlots) {
    std::string error;
    EXPECT_EQ(FlowTable::create(64, SOCKET_ID_ANY, error, 3), nullptr);
    EXPECT_NE(error.find("power of two"), std::string::npos) << error;
    error.clear();
    EXPECT_EQ(FlowTable::create(64, SOCKET_ID_ANY, error, 256), nullptr);  // 128 slots
    EXPECT_NE(error.find("up to 128"), std::string::npos) << error;
    EXPECT_TRUE(FlowTable::create(64, SOCKET_ID_ANY, error, 128));
}

TEST_F(State, AReloadThatRemovesTheFilterCutsItsFlows) {
    load(kKeep);
    ASSERT_TRUE(smtp_handshake(40000));
    ASSERT_TRUE(passes(udp_frame(kServer, 40000, kPeer, 123), Ingress::inside));
    // The same policy again (a reload that changes nothing): the flows go on.
    load(kKeep);
    EXPECT_TRUE(passes(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5001, 1001, 65535, "220"), Ingress::outside));
    EXPECT_TRUE(passes(udp_frame(kPeer, 123, kServer, 40000), Ingress::outside));
    EXPECT_EQ(counts_.cut, 0u);
    // A policy without the mail rule: the SMTP connection's next packets are dropped both ways;
    // NTP's flow goes on.
    reload(kNtpOnly);
    EXPECT_FALSE(passes(tcp_frame(kPeer, kServer, 25, 40000, kTcpAck, 5004, 1001, 65535, "250"), Ingress::outside));
    EXPECT_FALSE(passes(tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001, 5007, 65535, "QUIT"), Ingress::inside));
    EXPECT_TRUE(passes(udp_frame(kPeer, 123, kServer, 40000), Ingress::outside));
    EXPECT_EQ(counts_.cut, 0u);  // NTP's flow was asked again and kept
}

TEST_F(State, AReloadCutsAFlowItsFilterWouldNoLongerStart) {
    load(kKeep);
    ASSERT_TRUE(smtp_handshake(40000));
    // The new policy still has a stateful mirror that matches the reply (`*:25+*` keeps state),
    // but its written direction starts flows from port 25, not to it: the flow is cut.
    reload(one_stateful("*:25+198.18.0.20::TCP"));
    const Verdict v = judge(tcp_frame(kServer, kPeer, 40000, 25, kTcpAck, 1001, 5001, 65535, "DATA"), Ingress::inside);
    EXPECT_EQ(v.drop, DropReason::state);
    EXPECT_EQ(counts_.cut, 1u);
    EXPECT_EQ(flows_->in_use(), 0u);
}

TEST_F(State, AReloadCutsAUdpFlowItsFilterWouldNoLongerStartAtItsNextPacket) {
    // A UDP flow's packets found in their home slot take settle's short path (pass); a reload
    // must still stop them there and ask the new policy first.
    load(kKeep);
    ASSERT_TRUE(passes(udp_frame(kServer, 40000, kPeer, 123), Ingress::inside));
    ASSERT_TRUE(passes(udp_frame(kPeer, 123, kServer, 40000), Ingress::outside));
    ASSERT_TRUE(passes(udp_frame(kServer, 40000, kPeer, 123), Ingress::inside));
    // The stateful filter now starts flows from port 123 only: the server's packet matches its
    // mirror, which starts nothing, and the flow it started under the old policy is cut.
    reload(one_stateful("*:123+198.18.0.20::UDP"));
    const Verdict v = judge(udp_frame(kServer, 40000, kPeer, 123), Ingress::inside);
    EXPECT_EQ(v.drop, DropReason::state);
    EXPECT_EQ(counts_.cut, 1u);
    EXPECT_EQ(flows_->in_use(), 0u);
}

/// Walks listing `id` of `flows` to its end through a ring of 8 records (7 fit), `slots`
/// positions a step, taking at most 3 records out between steps (a control thread that lags);
/// the records of listing `id`. `filled` is set when the ring was ever full after a step.
std::vector<FlowRecord> walk(FlowTable& flows, StateListing& l, std::uint32_t id, std::uint64_t now, unsigned slots,
                             bool* filled = nullptr) {
    std::vector<FlowRecord> out;
    l.request.store(id);
    for (unsigned n = 0; n < 100000 && l.done.load() != id; ++n) {
        flows.list(l, id, now, 3, slots);
        if (filled && rte_ring_full(l.ring))
            *filled = true;
        FlowRecord r;
        for (int k = 0; k < 3 && rte_ring_sc_dequeue_elem(l.ring, &r, sizeof r) == 0; ++k)
            if (r.listing == id)
                out.push_back(r);
    }
    FlowRecord r;
    while (rte_ring_sc_dequeue_elem(l.ring, &r, sizeof r) == 0)
        if (r.listing == id)
            out.push_back(r);
    return out;
}

TEST_F(State, AListingCopiesEveryLiveFlowOnceThroughASmallRing) {
    load(kKeep, 64);
    for (std::uint16_t p = 40000; p < 40010; ++p)
        ASSERT_TRUE(smtp_handshake(p));
    for (std::uint16_t p = 50000; p < 50005; ++p)  // UDP flows, three of them answered
        ASSERT_TRUE(passes(udp_frame(kServer, p, kPeer, 123), Ingress::inside));
    for (std::uint16_t p = 50000; p < 50003; ++p)
        ASSERT_TRUE(passes(udp_frame(kPeer, 123, kServer, p), Ingress::outside));
    ASSERT_EQ(flows_->in_use(), 15u);
    rte_ring* ring = rte_ring_create_elem("state_test_listing", sizeof(FlowRecord), 8, SOCKET_ID_ANY,
                                          RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(ring, nullptr);
    StateListing l;
    l.ring = ring;
    bool filled = false;
    // Steps of the whole table: its 15 flows fill the ring of 7 at the first.
    const std::vector<FlowRecord> got = walk(*flows_, l, 1, now_, static_cast<unsigned>(flows_->slots()), &filled);
    EXPECT_TRUE(filled) << "the ring never filled: the walk's pause was not tried";
    ASSERT_EQ(got.size(), 15u);
    std::set<std::pair<std::uint16_t, std::uint8_t>> seen;  // (the server's port, proto)
    for (const FlowRecord& r : got) {
        EXPECT_EQ(r.worker, 3);
        EXPECT_EQ(r.ingress, Ingress::inside);  // the server started every one
        ASSERT_NE(r.rank, kNoMatch);
        EXPECT_EQ(tables_->rules[r.rank].state, StateMode::create);
        EXPECT_EQ(r.generation, generation_);
        const Addr& src = r.initiator_is_a ? r.key.a : r.key.b;
        const std::uint16_t sport = r.initiator_is_a ? r.key.port_a : r.key.port_b;
        EXPECT_EQ(ctl::format_addr(Family::ipv4, src), kServer);
        EXPECT_TRUE(seen.insert({sport, r.key.proto}).second) << "listed twice: " << sport;
        if (r.key.proto == kProtoTcp) {
            EXPECT_EQ(r.tcp[0], TcpState::established);
            EXPECT_EQ(r.tcp[1], TcpState::established);
            EXPECT_GT(r.expires_ms, (StateTimeouts::tcp_established - 1) * 1000u);
        } else {
            EXPECT_EQ(r.answered, sport < 50003) << sport;
            EXPECT_LE(r.expires_ms, StateTimeouts::udp_multiple * 1000u);
        }
    }
    // A listing abandoned half-way (its client went away) and a new one: the new one starts its
    // walk over and lists every flow once; the old one's records are told apart by number.
    l.request.store(2);
    flows_->list(l, 2, now_, 3, 8);
    EXPECT_NE(l.done.load(), 2u);
    EXPECT_EQ(walk(*flows_, l, 3, now_, 5).size(), 15u);
    // Flows past their timeout are not listed, though not yet swept.
    const std::uint64_t later = now_ + rte_get_tsc_hz() * (StateTimeouts::udp_multiple + 1);
    const std::vector<FlowRecord> tcp_only = walk(*flows_, l, 4, later, kListingSlots);
    EXPECT_EQ(tcp_only.size(), 10u);
    for (const FlowRecord& r : tcp_only)
        EXPECT_EQ(r.key.proto, kProtoTcp);
    rte_ring_free(ring);
}

TEST_F(State, AListedFlowReadsAsItsInitiatorSentItAndNamesItsFilter) {
    load(kKeep, 64);
    ASSERT_TRUE(smtp_handshake(40000));
    ASSERT_TRUE(passes(icmp_echo(kServer, kPeer, 8, 77), Ingress::inside));
    rte_ring* ring = rte_ring_create_elem("state_test_rows", sizeof(FlowRecord), 64, SOCKET_ID_ANY,
                                          RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(ring, nullptr);
    StateListing l;
    l.ring = ring;
    const std::vector<FlowRecord> got = walk(*flows_, l, 1, now_, kListingSlots);
    rte_ring_free(ring);
    ASSERT_EQ(got.size(), 2u);
    ctl::Generation g;
    g.number = generation_;
    g.config = *loaded_.config;
    g.compiled = *loaded_.compiled;
    for (const FlowRecord& r : got) {
        const nlohmann::json row = nlohmann::json::parse(ctl::flow_row(r, &g));
        EXPECT_EQ(row["worker"], 3);
        EXPECT_EQ(row["port"], "inside");
        EXPECT_EQ(row["src"], kServer);
        EXPECT_EQ(row["dst"], kPeer);
        EXPECT_EQ(row["generation"], generation_);
        EXPECT_EQ(row["action"], "permit");
        if (row["proto"] == "TCP") {
            EXPECT_EQ(row["sport"], 40000);
            EXPECT_EQ(row["dport"], 25);
            EXPECT_EQ(row["state"], "ESTABLISHED:ESTABLISHED");
            EXPECT_EQ(row["filter"], "198.18.0.20+*:25:TCP");
            EXPECT_EQ(row["filterlist"], "Mail out");
            EXPECT_EQ(row["line"], 8);
            EXPECT_EQ(ctl::flow_text(row), "worker 3  TCP  198.18.0.20:40000 -> 198.19.5.5:25  ESTABLISHED:ESTABLISHED"
                                           "  on inside  expires 86400s  gen " + std::to_string(generation_) +
                                           "  line 8: 198.18.0.20+*:25:TCP (Mail out)");
        } else {
            EXPECT_EQ(row["proto"], "ICMP");
            EXPECT_EQ(row["id"], 77);
            EXPECT_FALSE(row.contains("sport"));
            EXPECT_EQ(row["state"], "SINGLE:NO_TRAFFIC");
            EXPECT_EQ(row["filterlist"], "Ping");
            EXPECT_EQ(row["expires_s"], StateTimeouts::icmp_first);
            EXPECT_EQ(ctl::flow_text(row), "worker 3  ICMP  198.18.0.20 -> 198.19.5.5 id 77  SINGLE:NO_TRAFFIC  on inside"
                                           "  expires 20s  gen " + std::to_string(generation_) +
                                           "  line 12: me+*::ICMP:8 (Ping)");
        }
        // Through a generation no longer kept: the filter is not named, and the row says why.
        const nlohmann::json unnamed = nlohmann::json::parse(ctl::flow_row(r, nullptr));
        EXPECT_TRUE(unnamed["filter"].is_null());
        EXPECT_EQ(unnamed["filter_unknown"], "generation " + std::to_string(generation_) + " is no longer kept");
    }
    // A row of another version (members missing or of other types) prints, with "?" for them.
    EXPECT_EQ(ctl::flow_text(nlohmann::json::parse(R"({"proto":7,"src":"::1","family":"ipv6","dport":"x"})")),
              "worker ?  ?  [::1] -> [?]:?  ?  on ?  expires ?s  gen ?");
    EXPECT_EQ(ctl::flow_text(nlohmann::json::array()), "worker ?  ?  ? -> ?  ?  on ?  expires ?s  gen ?");
}

/// StatesHub against two workers that the test plays (a worker copies `flows` records for each
/// listing asked of it, as much as its ring takes a step, then says done), and replies that the
/// test reads or leaves unread, as clients of the control socket would.
class Hub : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("moat-hub-" + std::to_string(getpid()));
        std::filesystem::create_directories(dir_);
        path_ = (dir_ / "moat.ini").string();
        std::ofstream(path_) << policy(kKeep);
        rt_ = std::make_unique<ctl::Runtime>(path_, 2);
        const auto read = ctl::read_config_file(path_);
        ASSERT_TRUE(read) << read.error();
        const ctl::LoadResult first = ctl::load_policy_text(*read, path_);
        ASSERT_TRUE(first.usable());
        const ctl::Status started = rt_->start(*first.config, *first.compiled, *read);
        ASSERT_TRUE(started) << started.error();
        hub_ = std::make_unique<ctl::StatesHub>(*rt_);
        for (unsigned i = 0; i < 2; ++i) {
            workers_[i].index = i;
            ASSERT_TRUE(hub_->attach_worker(workers_[i], SOCKET_ID_ANY));
        }
    }
    void TearDown() override {
        hub_.reset();
        rt_.reset();
        std::filesystem::remove_all(dir_);
    }

    /// Each worker's step: records of the listing asked for, as many as its ring takes.
    void work(unsigned flows) {
        for (unsigned i = 0; i < 2; ++i) {
            StateListing& l = workers_[i].listing;
            const std::uint32_t want = l.request.load();
            if (want == 0 || want == l.done.load())
                continue;
            if (l.walking != want) {
                l.walking = want;
                l.cursor = 0;
            }
            for (; l.cursor < flows; ++l.cursor) {
                FlowRecord r{};
                r.listing = want;
                r.worker = static_cast<std::uint8_t>(i);
                r.key.port_a = static_cast<std::uint16_t>(l.cursor);
                r.key.proto = 17;
                if (rte_ring_sp_enqueue_elem(l.ring, &r, sizeof r) != 0)
                    break;
            }
            if (l.cursor == flows)
                l.done.store(want);
        }
    }
    /// Workers and hub, `turns` times.
    void run(unsigned flows, int turns) {
        for (int i = 0; i < turns; ++i) {
            work(flows);
            hub_->drain();
        }
    }
    /// Reads a reply to its end (or as far as it has come); true at its end.
    static bool read(ctl::Reply& r, std::string& out) {
        out = r.text;
        r.text.clear();
        while (r.more) {
            const ctl::Part p = r.more(out);
            if (p == ctl::Part::later)
                return false;
            if (p == ctl::Part::done) {
                r.more = nullptr;
                return true;
            }
        }
        return true;
    }
    ctl::Reply ask(ctl::Access access) {
        ctl::RequestContext ctx;
        ctx.access = access;
        return hub_->list(nlohmann::json{{"cmd", "states"}}, ctx);
    }

    std::filesystem::path dir_;
    std::string path_;
    std::unique_ptr<ctl::Runtime> rt_;
    std::unique_ptr<ctl::StatesHub> hub_;
    WorkerContext workers_[2];
};

TEST_F(Hub, ReadOnlyRepliesNobodyReadsHoldBoundedRowsAndTheOperatorsListingStillComes) {
    // Listings small enough to end at once (each holds all its rows for its reader): without a
    // cap, twenty unread ones would hold 20 x 3,000 records.
    constexpr unsigned kFlows = 1500;  // a worker: 3,000 a listing
    std::vector<ctl::Reply> unread;
    for (int i = 0; i < 20; ++i)
        unread.push_back(ask(ctl::Access::read_only));
    run(kFlows, 200);
    EXPECT_EQ(hub_->held_read_only(), ctl::StatesHub::kHeldReadOnly) << "the cap was not reached: the test tests nothing";
    EXPECT_TRUE(hub_->active()) << "every listing ended: more rows were held than the cap allows";
    // The operator's listing interrupts the read-only one that waits for room, and comes whole.
    ctl::Reply op = ask(ctl::Access::full);
    std::string text;
    bool done = false;
    for (int i = 0; i < 200 && !done; ++i) {
        run(kFlows, 1);
        std::string part;
        done = read(op, part);
        text += part;
    }
    ASSERT_TRUE(done);
    const nlohmann::json j = nlohmann::json::parse(text);
    EXPECT_EQ(j["flows"], 2 * kFlows);
    EXPECT_EQ(hub_->held_read_only(), ctl::StatesHub::kHeldReadOnly);
    // A client that goes away unread (closed for not reading) gives its rows back: the first
    // listing ended at once, holding all its 3,000.
    unread.front().more = nullptr;
    unread.erase(unread.begin());
    EXPECT_EQ(hub_->held_read_only(), ctl::StatesHub::kHeldReadOnly - 2 * kFlows);
    // Readers that read free their rows, and the rest of the queue goes on: every reply ends,
    // whole, but for the one the operator's request interrupted, which says so.
    std::vector<std::string> texts(unread.size());
    std::vector<bool> ended(unread.size(), false);
    for (int turn = 0; turn < 2000 && std::find(ended.begin(), ended.end(), false) != ended.end(); ++turn) {
        run(kFlows, 1);
        for (std::size_t i = 0; i < unread.size(); ++i) {
            if (ended[i])
                continue;
            std::string part;
            ended[i] = read(unread[i], part);
            texts[i] += part;
        }
    }
    EXPECT_FALSE(hub_->active());
    EXPECT_EQ(hub_->held_read_only(), 0u);
    int interrupted = 0;
    for (std::size_t i = 0; i < unread.size(); ++i) {
        ASSERT_TRUE(ended[i]) << i;
        const nlohmann::json r = nlohmann::json::parse(texts[i], nullptr, false);
        ASSERT_FALSE(r.is_discarded()) << i << ": " << texts[i].substr(0, 200);
        if (r.value("interrupted", false)) {
            ++interrupted;
            EXPECT_EQ(r["truncated"], true);
            EXPECT_LT(r["flows"].get<unsigned>(), 2 * kFlows);
        } else {
            EXPECT_EQ(r["flows"], 2 * kFlows) << i;
        }
        EXPECT_EQ(r["states"].size(), r["flows"].get<std::size_t>());
    }
    EXPECT_EQ(interrupted, 1);
}

TEST(StatesRequest, TakesALimitOrRefusesWhatIsNotOne) {
    EXPECT_EQ(*ctl::parse_states_request({{"cmd", "states"}}), 0u);
    EXPECT_EQ(*ctl::parse_states_request({{"cmd", "states"}, {"limit", 25}}), 25u);
    for (const nlohmann::json& bad : {nlohmann::json(-1), nlohmann::json("10"), nlohmann::json(1.5), nlohmann::json::array()}) {
        const auto r = ctl::parse_states_request({{"cmd", "states"}, {"limit", bad}});
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error(), "states: limit is a whole number of flows (0: all)");
    }
}

TEST(TcpTrack, AHandshakeDataAndCloseWithWindowScaling) {
    TcpTrack t;
    EXPECT_EQ(tcp_start(t, {1000, 0, 65535, kTcpSyn, 7, 0}), StateTimeouts::tcp_first);
    EXPECT_EQ(tcp_track(t, 1, {5000, 1001, 65535, kTcpSyn | kTcpAck, 7, 0}), StateTimeouts::tcp_opening);
    EXPECT_EQ(tcp_track(t, 0, {1001, 5001, 512, kTcpAck, -1, 0}), StateTimeouts::tcp_established);
    // With both scaled by 2^7, a window of 512 allows 64 KiB: 60000 bytes fit, 70000 do not.
    EXPECT_EQ(tcp_track(t, 1, {5001, 1001, 512, kTcpAck, -1, 60000}), StateTimeouts::tcp_established);
    EXPECT_EQ(tcp_track(t, 1, {65001, 1001, 512, kTcpAck, -1, 70000}), 0u);
    EXPECT_EQ(tcp_track(t, 0, {1001, 65001, 512, kTcpAck | kTcpFin, -1, 0}), StateTimeouts::tcp_closing);
    EXPECT_EQ(tcp_track(t, 1, {65001, 1002, 512, kTcpAck | kTcpFin, -1, 0}), StateTimeouts::tcp_finwait);
    EXPECT_EQ(tcp_track(t, 0, {1002, 65002, 512, kTcpAck, -1, 0}), StateTimeouts::tcp_closed);
    EXPECT_TRUE(tcp_closed(t));
}

TEST(TcpTrack, ARefusedScaleOfferLeavesTheWindowsUnscaled) {
    TcpTrack t;
    tcp_start(t, {1000, 0, 65535, kTcpSyn, 7, 0});
    ASSERT_NE(tcp_track(t, 1, {5000, 1001, 8192, kTcpSyn | kTcpAck, -1, 0}), 0u);
    ASSERT_NE(tcp_track(t, 0, {1001, 5001, 512, kTcpAck, -1, 0}), 0u);
    // The client's window of 512 is 512 bytes now, not 64 KiB: once it has acknowledged 60000
    // bytes with it, the server may not send 10000 more (pf keeps the SYN's 64 KiB until then).
    ASSERT_NE(tcp_track(t, 1, {5001, 1001, 8192, kTcpAck, -1, 60000}), 0u);
    ASSERT_NE(tcp_track(t, 0, {1001, 65001, 512, kTcpAck, -1, 0}), 0u);
    EXPECT_EQ(tcp_track(t, 1, {65001, 1001, 8192, kTcpAck, -1, 10000}), 0u);
    EXPECT_NE(tcp_track(t, 1, {65001, 1001, 8192, kTcpAck, -1, 4000}), 0u);
}

TEST(TcpTrack, ADroppedSegmentLeavesTheTrackAsItWas) {
    TcpTrack t;
    tcp_start(t, {1000, 0, 65535, kTcpSyn, -1, 0});
    tcp_track(t, 1, {5000, 1001, 65535, kTcpSyn | kTcpAck, -1, 0});
    const TcpTrack before = t;
    EXPECT_EQ(tcp_track(t, 1, {5001 + 0x40000000, 1001, 65535, kTcpAck | kTcpFin, -1, 10}), 0u);
    EXPECT_EQ(t, before);
}

/// One end of a TCP connection as a simple model sends: in order, within the window its peer
/// last advertised, acknowledging everything it has received.
struct ModelEnd {
    std::uint32_t snd_nxt = 0;   ///< next sequence number to send
    std::uint32_t rcv_nxt = 0;   ///< next expected from the peer
    std::uint32_t peer_ack = 0;  ///< the peer's last acknowledgement
    std::uint32_t peer_win = 0;  ///< the peer's last window, in bytes
    std::uint32_t win = 0;       ///< its own window, in bytes
    int wscale = -1;
    std::uint32_t last_seq = 0, last_len = 0;  ///< its last data segment, for a retransmission
};

TEST(TcpTrack, ModelConversationsPassAndBlindSegmentsDoNot) {
    // Random connections between two model ends (random sequence numbers, window scales, windows
    // and data sizes, retransmissions of the last segment, pure ACKs), each closed with FINs:
    // every segment the model sends passes. Between them, segments a blind attacker could send
    // (sequence numbers far from the sender's, acknowledgements of data never sent, a RST off by
    // more than one) are dropped and leave the track as it was.
    std::mt19937 rng(20261202);
    unsigned passed = 0, blocked = 0;
    for (int conn = 0; conn < 2000; ++conn) {
        ModelEnd e[2];
        for (auto& x : e) {
            x.snd_nxt = static_cast<std::uint32_t>(rng());
            x.wscale = static_cast<int>(rng() % 16) - 1;  // -1 (none) .. 14
            if (x.wscale > 14)
                x.wscale = 14;
        }
        const bool scaled = e[0].wscale >= 0 && e[1].wscale >= 0;
        const auto shift = [&](const ModelEnd& x) { return scaled ? static_cast<unsigned>(x.wscale) : 0u; };
        for (auto& x : e)
            x.win = 1 + static_cast<std::uint32_t>(rng() % (std::uint32_t{65535} << shift(x)));
        TcpTrack t;
        // The handshake (SYN windows are never scaled).
        const auto syn_win = [](const ModelEnd& x) { return static_cast<std::uint16_t>(std::min<std::uint32_t>(x.win, 65535)); };
        ASSERT_NE(tcp_start(t, {e[0].snd_nxt, 0, syn_win(e[0]), kTcpSyn, static_cast<std::int8_t>(e[0].wscale), 0}), 0u);
        e[0].snd_nxt += 1;
        e[1].rcv_nxt = e[0].snd_nxt;
        e[1].peer_win = std::min<std::uint32_t>(e[0].win, 65535);
        ASSERT_NE(tcp_track(t, 1, {e[1].snd_nxt, e[1].rcv_nxt, syn_win(e[1]), kTcpSyn | kTcpAck,
                                   static_cast<std::int8_t>(e[0].wscale >= 0 ? e[1].wscale : -1), 0}), 0u)
            << "SYN-ACK, connection " << conn;
        e[1].snd_nxt += 1;
        e[0].rcv_nxt = e[1].snd_nxt;
        e[0].peer_ack = e[0].snd_nxt;
        e[0].peer_win = std::min<std::uint32_t>(e[1].win, 65535);
        const auto send = [&](unsigned from, std::uint8_t flags, std::uint32_t seq, std::uint32_t len) {
            ModelEnd& x = e[from];
            const TcpSegment seg{seq, x.rcv_nxt, static_cast<std::uint16_t>(x.win >> shift(x)), flags, -1, len};
            return tcp_track(t, from, seg);
        };
        const auto deliver = [&](unsigned from, std::uint32_t end) {
            ModelEnd& y = e[from ^ 1];
            if (static_cast<std::int32_t>(end - y.rcv_nxt) > 0)
                y.rcv_nxt = end;
            y.peer_ack = e[from].rcv_nxt;
            y.peer_win = (e[from].win >> shift(e[from])) << shift(e[from]);
        };
        ASSERT_NE(send(0, kTcpAck, e[0].snd_nxt, 0), 0u) << "ACK, connection " << conn;
        deliver(0, e[0].snd_nxt);
        for (int step = 0; step < 40; ++step) {
            const unsigned from = rng() % 2;
            ModelEnd& x = e[from];
            const std::uint32_t room = x.peer_ack + x.peer_win - x.snd_nxt;
            const unsigned what = rng() % 10;
            if (what == 0 && x.last_len != 0) {  // retransmit the last data segment
                ASSERT_NE(send(from, kTcpAck, x.last_seq, x.last_len), 0u) << "retransmission, connection " << conn;
                ++passed;
                continue;
            }
            if (what == 1) {  // a blind segment: far from this end's sequence numbers
                const TcpTrack before = t;
                const std::uint32_t far = x.snd_nxt + 0x40000000u + static_cast<std::uint32_t>(rng() % 0x40000000u);
                EXPECT_EQ(send(from, kTcpAck, far, 1 + rng() % 1000), 0u) << "connection " << conn;
                // An acknowledgement of data the peer never sent.
                const TcpSegment ack{x.snd_nxt, e[from ^ 1].snd_nxt + 0x20000000u, 1000, kTcpAck, -1, 0};
                EXPECT_EQ(tcp_track(t, from, ack), 0u) << "connection " << conn;
                // A RST two or more away from the exact sequence number.
                const TcpSegment rst{x.snd_nxt + 2 + static_cast<std::uint32_t>(rng() % 5000), 0, 0, kTcpRst, -1, 0};
                EXPECT_EQ(tcp_track(t, from, rst), 0u) << "connection " << conn;
                EXPECT_EQ(t, before);
                blocked += 3;
                continue;
            }
            const std::uint32_t len = what == 2 || room == 0 ? 0 : 1 + static_cast<std::uint32_t>(rng() % std::min<std::uint32_t>(room, 9000));
            ASSERT_NE(send(from, kTcpAck, x.snd_nxt, len), 0u)
                << "connection " << conn << " step " << step << " from " << from << " len " << len << " room " << room;
            ++passed;
            if (len) {
                x.last_seq = x.snd_nxt;
                x.last_len = len;
            }
            x.snd_nxt += len;
            deliver(from, x.snd_nxt);
        }
        // Close: FIN from each end, each acknowledged.
        for (const unsigned from : {0u, 1u}) {
            ASSERT_NE(send(from, kTcpAck | kTcpFin, e[from].snd_nxt, 0), 0u) << "FIN, connection " << conn;
            e[from].snd_nxt += 1;
            deliver(from, e[from].snd_nxt);
            ASSERT_NE(send(from ^ 1, kTcpAck, e[from ^ 1].snd_nxt, 0), 0u) << "ACK of FIN, connection " << conn;
            deliver(from ^ 1, e[from ^ 1].snd_nxt);
        }
        EXPECT_TRUE(tcp_closed(t)) << "connection " << conn;
    }
    EXPECT_GT(passed, 50000u);
    EXPECT_GT(blocked, 10000u);
}

TEST(FlowKey, BothDirectionsHaveOneKey) {
    FlowTuple a;
    a.src.bytes[0] = 198;
    a.dst.bytes[0] = 199;
    a.sport = 40000;
    a.dport = 25;
    a.proto = 6;
    FlowTuple b = a;
    std::swap(b.src, b.dst);
    std::swap(b.sport, b.dport);
    bool a_first = false, b_first = false;
    EXPECT_EQ(flow_key(a, a_first), flow_key(b, b_first));
    EXPECT_NE(a_first, b_first);
    FlowTuple c = a;
    c.dport = 26;
    EXPECT_FALSE(flow_key(c, a_first) == flow_key(a, b_first));
}

}  // namespace
}  // namespace moat::dp
