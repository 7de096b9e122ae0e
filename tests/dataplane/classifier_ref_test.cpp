// The reference classifier on hand-built rules: each field admits and rejects what it should.
#include "dataplane/classifier_ref.h"

#include <gtest/gtest.h>

#include <vector>

namespace moat::dp {
namespace {

Addr v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    Addr x;
    x.bytes[0] = a;
    x.bytes[1] = b;
    x.bytes[2] = c;
    x.bytes[3] = d;
    return x;
}

PacketKey tcp(Addr s, std::uint16_t sp, Addr d, std::uint16_t dp) {
    PacketKey k;
    k.src = s;
    k.dst = d;
    k.proto = 6;
    k.has_ports = true;
    k.sport = sp;
    k.dport = dp;
    return k;
}

Entry any_v4() {
    Entry r;
    r.family = Family::ipv4;
    r.action = Action::permit;
    return r;
}

TEST(MaskAddr, KeepsLeadingBits) {
    EXPECT_EQ(mask_addr(v4(198, 18, 255, 255), 15), v4(198, 18, 0, 0));
    EXPECT_EQ(mask_addr(v4(198, 19, 255, 255), 15), v4(198, 18, 0, 0));
    EXPECT_EQ(mask_addr(v4(10, 1, 2, 3), 0), Addr{});
    EXPECT_EQ(mask_addr(v4(10, 1, 2, 3), 32), v4(10, 1, 2, 3));
    EXPECT_TRUE(prefix_contains(v4(198, 18, 0, 0), 15, v4(198, 19, 7, 7)));
    EXPECT_FALSE(prefix_contains(v4(198, 18, 0, 0), 15, v4(198, 20, 0, 0)));
}

TEST(HeaderMatches, EachField) {
    const PacketKey k = tcp(v4(198, 18, 0, 1), 40000, v4(198, 18, 0, 10), 80);
    Entry r = any_v4();
    EXPECT_TRUE(header_matches(r, k));

    r.family = Family::ipv6;
    EXPECT_FALSE(header_matches(r, k));
    r = any_v4();

    r.src = v4(198, 18, 0, 0);
    r.src_len = 24;
    EXPECT_TRUE(header_matches(r, k));
    r.src = v4(198, 18, 1, 0);
    EXPECT_FALSE(header_matches(r, k));
    r = any_v4();

    r.dst = v4(198, 18, 0, 10);
    r.dst_len = 32;
    EXPECT_TRUE(header_matches(r, k));
    r.dst = v4(198, 18, 0, 11);
    EXPECT_FALSE(header_matches(r, k));
    r = any_v4();

    r.proto = 6;
    EXPECT_TRUE(header_matches(r, k));
    r.proto = 17;
    EXPECT_FALSE(header_matches(r, k));
    r = any_v4();

    r.proto = 6;
    r.dport_any = false;
    r.dport = {80, 80};
    EXPECT_TRUE(header_matches(r, k));
    r.dport = {81, 90};
    EXPECT_FALSE(header_matches(r, k));
    r.dport_any = true;
    r.sport_any = false;
    r.sport = {32768, 65535};
    EXPECT_TRUE(header_matches(r, k));
    r.sport = {0, 39999};
    EXPECT_FALSE(header_matches(r, k));
    r = any_v4();

    r.on = OnPort::outside;
    EXPECT_TRUE(header_matches(r, k));
    r.on = OnPort::inside;
    EXPECT_FALSE(header_matches(r, k));
}

TEST(HeaderMatches, PortFilterNeedsPorts) {
    PacketKey k = tcp(v4(1, 1, 1, 1), 1, v4(2, 2, 2, 2), 80);
    k.has_ports = false;  // e.g. a packet whose transport header is absent
    Entry r = any_v4();
    r.proto = 6;
    r.dport_any = false;
    r.dport = {0, 65535};
    EXPECT_FALSE(header_matches(r, k));
}

TEST(HeaderMatches, IcmpTypeAndCode) {
    PacketKey k;
    k.src = v4(1, 1, 1, 1);
    k.dst = v4(2, 2, 2, 2);
    k.proto = 1;
    k.has_icmp = true;
    k.icmp_type = 3;
    k.icmp_code = 4;
    Entry r = any_v4();
    r.proto = 1;
    r.icmp_type = 3;
    EXPECT_TRUE(header_matches(r, k));
    r.icmp_code = 4;
    EXPECT_TRUE(header_matches(r, k));
    r.icmp_code = 1;
    EXPECT_FALSE(header_matches(r, k));
    r.icmp_code = kAnyIcmp;
    r.icmp_type = 8;
    EXPECT_FALSE(header_matches(r, k));
}

TEST(ClassifyRef, FirstMatchSkippingPayloadEntries) {
    const PacketKey k = tcp(v4(198, 18, 0, 1), 40000, v4(198, 18, 0, 10), 80);
    std::vector<Entry> rules(4, any_v4());
    rules[0].payload = 0;  // needs a scan: never decides by headers alone
    rules[1].proto = 17;   // does not match
    rules[2].action = Action::block;
    EXPECT_EQ(classify_ref(rules, k), 2u);
    EXPECT_EQ(classify_ref(std::span<const Entry>(rules).first(2), k), kNoMatch);
    EXPECT_EQ(classify_ref({}, k), kNoMatch);
}

}  // namespace
}  // namespace moat::dp
