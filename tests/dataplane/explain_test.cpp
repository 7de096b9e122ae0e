// `moatctl explain` against the worker, packet by packet: random IPv4 and IPv6 frames on both
// ports (`me` sources with antispoof on and off, payloads that payload filters match and do not
// match, replies that mirrored filters judge) go through the worker's stages (parse_burst,
// classify_burst, scan_payloads) on real mbufs, and the same packets, written in the packet
// grammar, through explain over the same table set (moatd's path) and over its own (moatctl
// explain --config). The verdict, its reason and the deciding entry must be the same.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "control/compile/explain.h"
#include "control/compile/load.h"
#include "control/compile/tables.h"
#include "control/config/config.h"
#include "control/config/packet_spec.h"
#include "dataplane/classify.h"
#include "tests/common/eal_env.h"

namespace moat::dp {
namespace {

using test::Pkt;

/// Payload filters above and below header-only ones, one way and mirrored, an `on=` payload
/// filter, a filter whose source is `me`, both families; payload_scan_bytes cuts some payloads.
constexpr const char* kMixed = R"([appliance]
me = 198.18.0.10, 198.18.0.11, [2001:db8::10]
assign = P
payload_scan_bytes = 24
%SETTINGS%
[filterlist Partner]
filter = 198.18.7.0/24+0:80:TCP
filter = [2001:db8:7::]/48+0:80:TCP
[filterlist Web]
filter = *+0:80:TCP
[filterlist Admin]
filter = *+0:80:TCP payload=/^(GET|POST) \/admin/i
[filterlist Secret]
filter = *+0::TCP payload=/secret/
filter = *+0::47 payload=/secret/
[filterlist DNS]
filter = *+0:53:UDP
filter = *+0:53:UDP payload=/evil/
[filterlist Sled]
filter = *=0::TCP payload=/\x90{8}/s on=outside
[filterlist Ping]
filter = *=0::ICMP:8
filter = *=0::ICMPV6:128
[filterlist Outbound TLS]
filter = 0=*:443:TCP
[filterlist Inbound]
filter = *=0
[policy P]
rule = Partner -> permit
rule = Web -> permit
rule = Admin -> block
rule = Secret -> block
rule = DNS -> permit
rule = Sled -> block
rule = Ping -> permit
rule = Outbound TLS -> permit
rule = Inbound -> block
)";

/// Payload filters that permit what a broader header-only filter blocks; no catch-all, so
/// much ends in default deny.
constexpr const char* kPermitByPayload = R"([appliance]
me = 198.18.0.10, [2001:db8::10], [2001:db8::11]
assign = P
%SETTINGS%
[filterlist Hello]
filter = *+0:80:TCP payload=/hello/
filter = *+0::TCP payload=/^\x90\x90/s
[filterlist Block web]
filter = *+0:80:TCP
[filterlist Any UDP]
filter = *+0::UDP
[filterlist Evil UDP]
filter = *+0::UDP payload=/evil|secret/
[policy P]
rule = Hello -> permit
rule = Block web -> block
rule = Evil UDP -> block
rule = Any UDP -> permit
)";

std::string with_settings(std::string text, const std::string& settings) {
    text.replace(text.find("%SETTINGS%"), 10, settings);
    return text;
}

const std::vector<std::string> kV4{"198.18.0.10", "198.18.0.11", "198.18.7.5", "198.18.100.1", "10.1.2.3",
                                   "198.18.0.99"};
const std::vector<std::string> kV6{"2001:db8::10", "2001:db8::11", "2001:db8:7::5", "2001:db8:99::1",
                                   "fe80::1"};
const std::vector<std::string> kPayloads{"",
                                         "GET /admin HTTP/1.1\r\n",
                                         "post /ADMIN/x",
                                         "GET / HTTP/1.1\r\n",
                                         "the secret",
                                         std::string(30, 'x') + "secret",  // past payload_scan_bytes = 24
                                         std::string(10, '\x90'),
                                         "\x90\x90hello",
                                         "evil.example",
                                         "hello there"};

/// One random packet: as a frame description and as explain's grammar writes it.
struct Sample {
    Pkt pkt;
    Ingress in = Ingress::outside;
    std::string text;
};

std::string hex(const std::string& s) {
    static const char* d = "0123456789abcdef";
    std::string out;
    for (const unsigned char c : s) {
        out += d[c >> 4];
        out += d[c & 15];
    }
    return out;
}

Sample random_sample(std::mt19937& rng) {
    const auto pick = [&](const auto& v) { return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)]; };
    const auto chance = [&](int percent) { return std::uniform_int_distribution<int>(0, 99)(rng) < percent; };
    Sample s;
    Pkt& p = s.pkt;
    p.ip = chance(50) ? 4 : 6;
    const auto& pool = p.ip == 4 ? kV4 : kV6;
    p.src = pick(pool);
    p.dst = pick(pool);
    const int kind = std::uniform_int_distribution<int>(0, 99)(rng);
    p.proto = kind < 45 ? 6 : kind < 75 ? 17 : kind < 90 ? (p.ip == 4 ? 1 : 58) : 47;
    const std::vector<std::uint16_t> ports{80, 53, 443, 22, 40000};
    p.sport = chance(80) ? pick(ports) : static_cast<std::uint16_t>(rng());
    p.dport = chance(80) ? pick(ports) : static_cast<std::uint16_t>(rng());
    p.icmp_type = pick(std::vector<std::uint8_t>{8, 0, 3, 128, 129});
    p.icmp_code = pick(std::vector<std::uint8_t>{0, 4});
    if (chance(15)) {
        std::string r(std::uniform_int_distribution<std::size_t>(1, 40)(rng), '\0');
        for (auto& c : r)
            c = static_cast<char>(rng());
        p.payload = r;
    } else {
        p.payload = pick(kPayloads);
    }
    s.in = chance(50) ? Ingress::outside : Ingress::inside;

    const bool ports_in = p.proto == 6 || p.proto == 17;
    const auto ep = [&](const std::string& a, std::uint16_t port) {
        std::string e = p.ip == 4 ? a : "[" + a + "]";
        return ports_in ? e + ":" + std::to_string(port) : e;
    };
    const char* proto = p.proto == 6 ? "tcp" : p.proto == 17 ? "udp" : p.proto == 1 ? "icmp" : p.proto == 58 ? "icmpv6" : "47";
    s.text = std::string(proto) + " " + ep(p.src, p.sport) + " -> " + ep(p.dst, p.dport);
    if (p.proto == 1 || p.proto == 58)
        s.text += " icmp " + std::to_string(p.icmp_type) + "/" + std::to_string(p.icmp_code);
    s.text += s.in == Ingress::outside ? " on outside" : " on inside";
    if (!p.payload.empty())  // an empty payload: as a packet written without one
        s.text += " payload-hex " + hex(p.payload);
    return s;
}

/// What the worker did with a packet.
struct Worker {
    PacketMeta meta;
    Verdict verdict;
    ScanCounts scanned;
};

Worker run_worker(const TableSet& t, const Sample& s) {
    Worker w;
    rte_mbuf* m = test::mbuf(test::frame(s.pkt));
    EXPECT_NE(m, nullptr);
    parse_burst({&m, 1}, s.in, t.parse, {&w.meta, 1});
    classify_burst(t, {&w.meta, 1}, {&w.verdict, 1});
    scan_payloads(t, 0, {&m, 1}, {&w.meta, 1}, {&w.verdict, 1}, w.scanned);
    rte_pktmbuf_free(m);
    return w;
}

bool same_key(const PacketKey& a, const PacketKey& b) {
    return a.src == b.src && a.dst == b.dst && a.family == b.family && a.ingress == b.ingress && a.proto == b.proto &&
           a.has_ports == b.has_ports && a.has_icmp == b.has_icmp && (!a.has_ports || (a.sport == b.sport && a.dport == b.dport)) &&
           (!a.has_icmp || (a.icmp_type == b.icmp_type && a.icmp_code == b.icmp_code));
}

/// explain's verdict must be the worker's: antispoof exactly when the parser drops the packet as
/// spoofed; otherwise the same deciding entry, and the action and reason that follow from it.
void expect_same(const Worker& w, const ctl::Explanation& e, const ctl::CompiledPolicy& cp, const std::string& what) {
    if (w.meta.drop == DropReason::spoofed) {
        EXPECT_EQ(e.reason, ctl::VerdictReason::antispoof) << what;
        EXPECT_EQ(e.action, Action::block) << what;
        return;
    }
    ASSERT_EQ(w.meta.drop, DropReason::none) << what;
    EXPECT_NE(e.reason, ctl::VerdictReason::antispoof) << what;
    EXPECT_EQ(e.winner, w.verdict.rank) << what;
    if (w.verdict.rank == kNoMatch) {
        EXPECT_EQ(e.reason, ctl::VerdictReason::no_match) << what;
        EXPECT_EQ(w.verdict.drop, DropReason::no_match) << what;
    } else {
        EXPECT_EQ(e.reason, ctl::VerdictReason::filter) << what;
        EXPECT_EQ(e.action, cp.rules[w.verdict.rank].action) << what;
    }
    EXPECT_EQ(e.action == Action::permit, w.verdict.drop == DropReason::none) << what;
}

struct Case {
    const char* name;
    const char* policy;
    std::string settings;
};

TEST(ExplainAgreesWithTheWorker, OnRandomPackets) {
    const std::vector<Case> cases{
        {"mixed", kMixed, ""},
        {"mixed, antispoof off", kMixed, "antispoof = off"},
        {"mixed, reference classifier", kMixed, "classifier = reference"},
        {"permit by payload", kPermitByPayload, ""},
        {"permit by payload, antispoof off, reference", kPermitByPayload, "antispoof = off\nclassifier = reference"},
    };
    std::mt19937 rng(18);
    // What the packets exercised, so that agreement cannot come from a sample that never reaches
    // the interesting paths.
    std::map<std::string, int> seen;
    for (const auto& c : cases) {
        const auto r = ctl::load_policy_text(with_settings(c.policy, c.settings), "explain.ini");
        ASSERT_TRUE(r.usable()) << c.name;
        const ctl::Config& cfg = *r.config;
        const ctl::CompiledPolicy& cp = *r.compiled;
        auto built = ctl::build_table_set(cfg, cp, 1, 1);
        ASSERT_TRUE(built) << built.error();
        const TableSet& t = *built->tables;
        for (int i = 0; i < 1500; ++i) {
            const Sample s = random_sample(rng);
            const std::string what = std::string(c.name) + ": " + s.text;
            const ctl::PacketParse pp = ctl::parse_packet(s.text);
            ASSERT_TRUE(pp.ok()) << what << ": " << (pp.errors.empty() ? "" : pp.errors[0]);
            const Worker w = run_worker(t, s);
            // The grammar and the parser see the same packet: else the comparison says nothing.
            if (w.meta.drop == DropReason::none || w.meta.drop == DropReason::spoofed) {
                ASSERT_TRUE(same_key(pp.packet.key, w.meta.key)) << what;
            }
            const ctl::Explanation e = ctl::explain(cfg, cp, t, pp.packet);  // moatd's
            expect_same(w, e, cp, what);
            if (i % 8 == 0) {  // moatctl explain --config (builds its own tables: fewer of these)
                const ctl::Explanation offline = ctl::explain(cfg, cp, pp.packet);
                expect_same(w, offline, cp, what + " (offline)");
            }
            if (::testing::Test::HasFailure())
                return;
            const bool v6 = s.pkt.ip == 6;
            ++seen[v6 ? "ipv6" : "ipv4"];
            ++seen[s.in == Ingress::outside ? "outside" : "inside"];
            if (w.meta.drop == DropReason::spoofed) {
                ++seen["spoofed"];
                continue;
            }
            if (t.parse.me_v4.size() + t.parse.me_v6.size() && !t.parse.antispoof && s.in == Ingress::outside &&
                is_me(t.parse, w.meta.key.src, w.meta.key.family))
                ++seen["me source from outside, antispoof off"];
            if (w.scanned.packets && (w.verdict.rank == kNoMatch || cp.rules[w.verdict.rank].payload == kNoPayload))
                ++seen["scanned, no payload filter matched"];
            if (w.verdict.rank == kNoMatch) {
                ++seen["no match"];
                continue;
            }
            ++seen[cp.rules[w.verdict.rank].payload != kNoPayload ? "payload filter won" : "header filter won"];
            ++seen[cp.rules[w.verdict.rank].action == Action::permit ? "permit" : "block"];
            if (cp.info[w.verdict.rank].origin.mirror)
                ++seen[v6 ? "mirrored half won (IPv6)" : "mirrored half won (IPv4)"];
            if (cp.rules[w.verdict.rank].payload != kNoPayload && cp.rules[w.verdict.rank].action == Action::permit)
                ++seen["payload filter permitted"];
        }
    }
    for (const char* k : {"ipv4", "ipv6", "outside", "inside", "spoofed", "me source from outside, antispoof off",
                          "scanned, no payload filter matched", "no match", "payload filter won", "header filter won",
                          "permit", "block", "mirrored half won (IPv4)", "mirrored half won (IPv6)",
                          "payload filter permitted"})
        EXPECT_GE(seen[k], 10) << k;
    for (const auto& [k, n] : seen)
        std::cout << "  " << k << ": " << n << "\n";
}

/// explain without `on`: the port is inferred with the parser's own `me` test.
TEST(ExplainAgreesWithTheWorker, TheInferredPortIsInsideExactlyForMeSources) {
    const auto r = ctl::load_policy_text(with_settings(kMixed, ""), "explain.ini");
    ASSERT_TRUE(r.usable());
    for (const char* text : {"tcp 198.18.0.10:443 -> 198.18.100.1:40000", "tcp 198.18.0.11:443 -> 198.18.100.1:40000",
                             "tcp 198.18.100.1:40000 -> 198.18.0.10:80", "tcp [2001:db8::10]:443 -> [2001:db8:99::1]:1",
                             "tcp [2001:db8:99::1]:1 -> [2001:db8::10]:80"}) {
        const ctl::PacketParse pp = ctl::parse_packet(text);
        ASSERT_TRUE(pp.ok()) << text;
        const ctl::Explanation e = ctl::explain(*r.config, *r.compiled, pp.packet);
        EXPECT_TRUE(e.ingress_inferred) << text;
        const bool me = std::string_view(text).starts_with("tcp 198.18.0.1") || std::string_view(text).starts_with("tcp [2001:db8::10]");
        EXPECT_EQ(e.packet.key.ingress, me ? Ingress::inside : Ingress::outside) << text;
        EXPECT_NE(e.reason, ctl::VerdictReason::antispoof) << text;
    }
}

}  // namespace
}  // namespace moat::dp
