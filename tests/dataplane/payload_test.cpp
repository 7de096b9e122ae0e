// Payload filters through the worker's stages (parse_burst, classify_burst, scan_payloads) on
// real mbufs: which filter wins, where the payload starts, how much of it is scanned, what is
// counted; and the same answers from `moatctl explain`'s reference path and from
// `classifier = reference`.
#include <gtest/gtest.h>

#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/explain.h"
#include "control/compile/tables.h"
#include "control/config/packet_spec.h"
#include "dataplane/classify.h"
#include "tests/common/eal_env.h"

namespace moat::dp {
namespace {

using test::Pkt;

constexpr const char* kPolicy = R"([appliance]
me = 198.18.0.10, [2001:db8::10]
assign = Web
payload_scan_bytes = 64

[filterlist Web]
filter = *+0:80:TCP

[filterlist Partner]
filter = 198.18.7.7+0:80:TCP

[filterlist Admin pages]
filter = *+0:80:TCP payload=/^(GET|POST) \/admin/i

[filterlist Shellcode]
filter = *+0:80:TCP payload=/\x90{16}/s

[filterlist Secrets]
filter = *+0:80:TCP payload=/secret/

[filterlist DNS]
filter = *+0:53:UDP
filter = *+0:53:UDP payload=/evil/

[filterlist All]
filter = *+0

[policy Web]
rule = Partner -> permit
rule = Web -> permit
rule = Admin pages -> block
rule = Shellcode -> block
rule = Secrets -> block
rule = DNS -> permit
rule = All -> block
)";

struct Outcome {
    Verdict verdict;
    ScanCounts scanned;
    Rank explained = kNoMatch;  ///< explain()'s winner with the same payload
};

class Payload : public ::testing::Test {
protected:
    void SetUp() override { load(kPolicy); }

    void load(const std::string& text) {
        const auto r = ctl::load_policy_text(text, "payload.ini");
        ASSERT_TRUE(r.usable());
        config_ = *r.config;
        compiled_ = *r.compiled;
        auto built = ctl::build_table_set(config_, compiled_, 1, 1);
        ASSERT_TRUE(built) << built.error();
        tables_ = std::move(built->tables);
    }

    /// One packet through the stages; `in` is its arrival port.
    Outcome judge(const Pkt& p, Ingress in = Ingress::outside) {
        Outcome o;
        rte_mbuf* m = test::mbuf(test::frame(p));
        EXPECT_NE(m, nullptr);
        PacketMeta meta;
        parse_burst({&m, 1}, in, tables_->parse, {&meta, 1});
        EXPECT_EQ(meta.drop, DropReason::none);
        classify_burst(*tables_, {&meta, 1}, {&o.verdict, 1});
        scan_payloads(*tables_, 0, {&m, 1}, {&meta, 1}, {&o.verdict, 1}, o.scanned);
        EXPECT_FALSE(o.verdict.scan);
        // The reference path of `moatctl explain`, given the payload the parser found.
        ctl::PacketSpec spec;
        spec.key = meta.key;
        spec.ingress_given = true;
        spec.payload = std::string(rte_pktmbuf_mtod_offset(m, const char*, meta.payload_offset), meta.payload_length);
        o.explained = ctl::explain(config_, compiled_, spec).winner;
        rte_pktmbuf_free(m);
        return o;
    }

    /// The filter list of the winning entry.
    std::string list_of(Rank r) const {
        if (r == kNoMatch)
            return "(none)";
        return config_.lists[static_cast<std::size_t>(compiled_.info[r].origin.list)].name;
    }

    ctl::Config config_;
    ctl::CompiledPolicy compiled_;
    std::unique_ptr<TableSet> tables_;
};

Pkt web(const std::string& payload) {
    Pkt p;
    p.src = "198.18.100.1";
    p.dst = "198.18.0.10";
    p.payload = payload;
    return p;
}

TEST_F(Payload, AdminRequestsAndShellcodeAreBlockedTheRestOfTheWebPasses) {
    auto o = judge(web("GET /admin/users HTTP/1.1\r\n\r\n"));
    EXPECT_EQ(o.verdict.drop, DropReason::payload);
    EXPECT_EQ(list_of(o.verdict.rank), "Admin pages");
    EXPECT_EQ(o.explained, o.verdict.rank);
    EXPECT_EQ(o.scanned.packets, 1u);
    EXPECT_EQ(o.scanned.bytes, 29u);

    o = judge(web("post /ADMIN HTTP/1.1\r\n"));  // caseless
    EXPECT_EQ(list_of(o.verdict.rank), "Admin pages");

    o = judge(web("GET /index.html HTTP/1.1\r\n\r\n"));
    EXPECT_EQ(o.verdict.drop, DropReason::none);
    EXPECT_EQ(list_of(o.verdict.rank), "Web");
    EXPECT_EQ(o.explained, o.verdict.rank);
    EXPECT_EQ(o.scanned.packets, 1u);  // scanned, nothing matched: the header-only winner

    o = judge(web("GET /a " + std::string(20, '\x90') + " HTTP/1.1"));
    EXPECT_EQ(o.verdict.drop, DropReason::payload);
    EXPECT_EQ(list_of(o.verdict.rank), "Shellcode");
    EXPECT_EQ(o.explained, o.verdict.rank);

    o = judge(web(""));  // a bare SYN: nothing to scan, nothing can match
    EXPECT_EQ(o.verdict.drop, DropReason::none);
    EXPECT_EQ(list_of(o.verdict.rank), "Web");
    EXPECT_EQ(o.scanned.packets, 0u);
}

TEST_F(Payload, AMoreSpecificHeaderFilterOutranksPayloadFiltersAndSkipsTheScan) {
    Pkt p = web("GET /admin HTTP/1.1\r\n");
    p.src = "198.18.7.7";  // the partner's /32 outranks every `*` payload filter
    const auto o = judge(p);
    EXPECT_EQ(o.verdict.drop, DropReason::none);
    EXPECT_EQ(list_of(o.verdict.rank), "Partner");
    EXPECT_EQ(o.scanned.packets, 0u);
    EXPECT_EQ(o.explained, o.verdict.rank);
}

TEST_F(Payload, MirroredPayloadFiltersJudgeReplies) {
    Pkt reply = web("HTTP/1.1 200 OK\r\n\r\nthe secret is out");
    reply.src = "198.18.0.10";
    reply.sport = 80;
    reply.dst = "198.18.100.1";
    reply.dport = 40000;
    auto o = judge(reply, Ingress::inside);
    EXPECT_EQ(o.verdict.drop, DropReason::payload);
    EXPECT_EQ(list_of(o.verdict.rank), "Secrets");
    EXPECT_TRUE(compiled_.info[o.verdict.rank].origin.mirror);
    reply.payload = "HTTP/1.1 200 OK\r\n\r\nnothing to see";
    o = judge(reply, Ingress::inside);
    EXPECT_EQ(o.verdict.drop, DropReason::none);
    EXPECT_EQ(list_of(o.verdict.rank), "Web");
}

TEST_F(Payload, ThePayloadStartsAfterTcpOptionsAndIpv6ExtensionHeaders) {
    Pkt p = web("GET /admin HTTP/1.1\r\n");
    p.tcp_doff = 15;  // 40 bytes of options: an anchored pattern still sees the request line
    auto o = judge(p);
    EXPECT_EQ(list_of(o.verdict.rank), "Admin pages");
    EXPECT_EQ(o.scanned.bytes, p.payload.size());

    Pkt v6 = web("GET /admin HTTP/1.1\r\n");
    v6.ip = 6;
    v6.src = "2001:db8:99::1";
    v6.dst = "2001:db8::10";
    v6.ext = {{0, {}}, {60, test::Bytes(20, 0)}};
    o = judge(v6);
    EXPECT_EQ(list_of(o.verdict.rank), "Admin pages");
    EXPECT_EQ(o.scanned.bytes, v6.payload.size());
}

TEST_F(Payload, UdpPayloadsEndAtTheUdpLength) {
    Pkt dns = web("\x12\x34 query for evil.example");
    dns.proto = 17;
    dns.dport = 53;
    auto o = judge(dns);
    EXPECT_EQ(o.verdict.drop, DropReason::none);  // the DNS list permits, payload filter or not
    EXPECT_EQ(list_of(o.verdict.rank), "DNS");
    EXPECT_NE(tables_->rules[o.verdict.rank].payload, kNoPayload);  // its payload entry won
    // Bytes inside the IP packet but after the UDP length are not payload.
    dns.payload = "harmless";
    test::Built b = test::build(dns);
    b.bytes.insert(b.bytes.end(), {'e', 'v', 'i', 'l'});
    test::put16(b.bytes, b.l3 + 2, static_cast<std::uint16_t>(b.bytes.size() - b.l3));
    rte_mbuf* m = test::mbuf(b.bytes);
    PacketMeta meta;
    parse_burst({&m, 1}, Ingress::outside, tables_->parse, {&meta, 1});
    Verdict v;
    ScanCounts sc;
    classify_burst(*tables_, {&meta, 1}, {&v, 1});
    scan_payloads(*tables_, 0, {&m, 1}, {&meta, 1}, {&v, 1}, sc);
    rte_pktmbuf_free(m);
    EXPECT_EQ(sc.bytes, 8u);
    EXPECT_EQ(tables_->rules[v.rank].payload, kNoPayload);  // the header-only DNS filter
}

TEST_F(Payload, OnlyTheFirstPayloadScanBytesAreScanned) {
    auto o = judge(web(std::string(60, 'x') + "secret"));  // the match ends at byte 66 > 64
    EXPECT_EQ(list_of(o.verdict.rank), "Web");
    EXPECT_EQ(o.scanned.bytes, 64u);
    EXPECT_EQ(o.explained, o.verdict.rank);
    o = judge(web(std::string(58, 'x') + "secret"));  // ends at byte 64
    EXPECT_EQ(list_of(o.verdict.rank), "Secrets");
}

TEST_F(Payload, TheReferenceClassifierGivesTheSameAnswers) {
    const std::vector<Pkt> packets{web("GET /admin HTTP/1.1"), web("GET / HTTP/1.1"),
                                   web(std::string(16, '\x90')), web("")};
    std::vector<Rank> trie;
    for (const auto& p : packets)
        trie.push_back(judge(p).verdict.rank);
    std::string text = kPolicy;
    text.insert(text.find("payload_scan_bytes"), "classifier = reference\n");
    load(text);
    ASSERT_TRUE(tables_->use_reference);
    for (std::size_t i = 0; i < packets.size(); ++i)
        EXPECT_EQ(judge(packets[i]).verdict.rank, trie[i]) << i;
}

TEST_F(Payload, APolicyWithoutPatternsHasNoDatabase) {
    load("[appliance]\nme = 198.18.0.10\nassign = W\n[filterlist W]\nfilter = *+0:80:TCP\n[policy W]\nrule = W -> permit\n");
    EXPECT_TRUE(tables_->payload.empty());
    EXPECT_FALSE(tables_->has_payload[0]);
    const auto o = judge(web("GET /admin"));
    EXPECT_EQ(o.verdict.drop, DropReason::none);
    EXPECT_EQ(o.scanned.packets, 0u);
}

}  // namespace
}  // namespace moat::dp
