// The attack suite (issue 6): hostile packets through a real moatd on net_pcap ports. Each test
// builds its packets, runs them past the policy below, and checks that exactly the legitimate
// frames came out, in order and byte for byte, and that every drop-reason counter (and, for
// fragments, every detail counter) equals the number of packets sent that should hit it.
#include <gtest/gtest.h>

#include <map>
#include <optional>

#include "dataplane/counters.h"
#include "tests/common/pcap_appliance.h"

namespace moat::test {
namespace {

using dp::DropReason;
using dp::FragDrop;

constexpr const char* kPolicy = R"(me         = 198.18.0.10, 198.18.0.20, [2001:db8::10]
assign     = Servers

[filterlist Web]
filter = *+198.18.0.10:80:TCP
filter = *+[2001:db8::10]:80:TCP

[filterlist DNS]
filter = *+198.18.0.20:53:UDP

[filterlist All inbound traffic]
filter = *+0

[policy Servers]
rule = Web -> permit
rule = DNS -> permit
rule = All inbound traffic -> block
)";

struct Case {
    Bytes frame;
    DropReason expect = DropReason::none;  ///< none: must come out of the other port
    FragDrop why = FragDrop::none;         ///< the fragment detail of DropReason::fragment
    bool fragment = false;                 ///< a (non-atomic) fragment: counted as passed or dropped
    bool non_ip = false;                   ///< passes unfiltered as a non-IP EtherType
};

struct Attack {
    std::vector<Case> outside;  ///< frames arriving on the outside port
    std::vector<Case> inside;   ///< frames arriving on the inside port

    void out(Bytes f, DropReason r = DropReason::none) { outside.push_back({std::move(f), r}); }
    void in(Bytes f, DropReason r = DropReason::none) { inside.push_back({std::move(f), r}); }
    /// A fragment from outside: passes (`why` none) or is dropped as a fragment for `why`.
    void frag(Bytes f, FragDrop why = FragDrop::none) {
        outside.push_back({std::move(f), why == FragDrop::none ? DropReason::none : DropReason::fragment, why, true});
    }
};

/// TCP from 198.18.100.1:40000 to 198.18.0.10:`dport` with `payload` bytes of data.
Pkt tcp4(std::uint16_t dport = 80, std::size_t payload = 40) {
    Pkt p;
    p.dport = dport;
    p.payload = std::string(payload, 'w');
    return p;
}

/// The same over IPv6, from 2001:db8:99::1 to 2001:db8::10.
Pkt tcp6(std::uint16_t dport = 80, std::size_t payload = 40) {
    Pkt p = tcp4(dport, payload);
    p.ip = 6;
    p.src = "2001:db8:99::1";
    p.dst = "2001:db8::10";
    return p;
}

/// An IPv6 fragment header as an extension: offset `begin` bytes, more-fragments `more`.
Ext frag_header(std::uint32_t id, std::uint32_t begin = 0, bool more = false) {
    const std::uint16_t fo = static_cast<std::uint16_t>((begin & 0xfff8) | (more ? 1 : 0));
    return {44, {0, static_cast<std::uint8_t>(fo >> 8), static_cast<std::uint8_t>(fo), static_cast<std::uint8_t>(id >> 24),
                 static_cast<std::uint8_t>(id >> 16), static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id)}};
}

/// `p` carrying IPv4 options `opt`, padded with end-of-list bytes to a multiple of 4.
Pkt with_options(Pkt p, const Bytes& opt) {
    p.ip_options = opt;
    p.ip_options.resize((opt.size() + 3) / 4 * 4);
    return p;
}

/// A fragment of `whole` holding bytes [begin, end) of its fragmentable part (for IPv4 the IP
/// payload; for IPv6 everything after the IPv6 header, extension headers included), with the
/// more-fragments flag set unless it reaches the end (or `more` says otherwise).
Bytes fragment(const Pkt& whole, std::uint32_t id, std::uint32_t begin, std::uint32_t end,
               std::optional<bool> more = std::nullopt) {
    const Built b = build(whole);
    const std::size_t start = b.l3 + (whole.ip == 4 ? 20 + whole.ip_options.size() : 40);
    const Bytes part(b.bytes.begin() + static_cast<std::ptrdiff_t>(start), b.bytes.end());
    if (begin > end || end > part.size())
        throw std::invalid_argument("fragment beyond its datagram");
    const bool mf = more.value_or(end < part.size());
    Pkt f = whole;
    f.no_l4 = true;
    f.payload.assign(part.begin() + begin, part.begin() + end);
    if (whole.ip == 4) {
        f.id = static_cast<std::uint16_t>(id);
        f.frag = static_cast<std::uint16_t>((mf ? 0x2000 : 0) | begin / 8);
    } else {
        f.proto = whole.ext.empty() ? whole.proto : whole.ext.front().type;
        f.ext = {frag_header(id, begin, mf)};
    }
    return frame(f);
}

class Attacks : public PcapAppliance {
protected:
    /// Runs `a` under `policy` with `appliance` settings and checks frames and counters.
    void expect_stopped(const Attack& a, const std::string& appliance = "", const char* policy = kPolicy) {
        const ApplianceRun r = run(write_config(policy, appliance), frames(a.outside, false), frames(a.inside, false));
        ASSERT_TRUE(r.ok) << r.why;
        expect_same(r.to_inside, frames(a.outside, true), "outside -> inside");
        expect_same(r.to_outside, frames(a.inside, true), "inside -> outside");

        std::map<std::string, std::uint64_t> drops, frag_drops;
        std::uint64_t frag_passed = 0, non_ip = 0;
        for (const auto* side : {&a.outside, &a.inside})
            for (const auto& c : *side) {
                if (c.expect != DropReason::none)
                    ++drops[std::string(dp::kDropReasonNames[static_cast<std::size_t>(c.expect)])];
                if (c.why != FragDrop::none)
                    ++frag_drops[std::string(dp::kFragDropNames[static_cast<std::size_t>(c.why)])];
                frag_passed += c.fragment && c.expect == DropReason::none;
                non_ip += c.non_ip;
            }
        const auto& k = r.counters;
        for (std::size_t i = 1; i < dp::kDropReasons; ++i) {
            const std::string name(dp::kDropReasonNames[i]);
            EXPECT_EQ(k["drops"][name].get<std::uint64_t>(), drops[name]) << "drop reason " << name;
        }
        for (std::size_t i = 1; i < dp::kFragDrops; ++i) {
            const std::string name(dp::kFragDropNames[i]);
            EXPECT_EQ(k["fragments"]["dropped"][name].get<std::uint64_t>(), frag_drops[name]) << "fragment drop " << name;
        }
        EXPECT_EQ(k["fragments"]["passed"].get<std::uint64_t>(), frag_passed);
        EXPECT_EQ(k["non_ip_passed"].get<std::uint64_t>(), non_ip);
        EXPECT_EQ(k["ports"]["outside"]["rx_packets"].get<std::size_t>(), a.outside.size());
        EXPECT_EQ(k["ports"]["inside"]["rx_packets"].get<std::size_t>(), a.inside.size());
    }

private:
    static std::vector<Bytes> frames(const std::vector<Case>& cases, bool passing_only) {
        std::vector<Bytes> out;
        for (const auto& c : cases)
            if (!passing_only || c.expect == DropReason::none)
                out.push_back(c.frame);
        return out;
    }

    /// Frame lists compared one by one, so a failure names the frame instead of dumping bytes.
    static void expect_same(const std::vector<Bytes>& got, const std::vector<Bytes>& want, const char* dir) {
        EXPECT_EQ(got.size(), want.size()) << dir << ": frames out";
        for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i)
            EXPECT_TRUE(got[i] == want[i]) << dir << ": frame " << i << " is not the one expected";
    }
};

// RFC 1858 / 3128 / 5722: tiny first fragments, the TCP-flags rewrite at offset 8, overlaps
// rewriting the ports, fragments before (or without) their first, scattered datagrams.
TEST_F(Attacks, Ipv4Fragments) {
    Attack a;
    const Pkt web = tcp4(80), ssh = tcp4(22);  // 60-byte TCP segments
    // Legitimate: in order, and out of order; a fragmented DNS query.
    a.frag(fragment(web, 1, 0, 24));
    a.frag(fragment(web, 1, 24, 48));
    a.frag(fragment(web, 1, 48, 60));
    a.frag(fragment(web, 2, 0, 24));
    a.frag(fragment(web, 2, 48, 60));
    a.frag(fragment(web, 2, 24, 48));
    Pkt dns = tcp4(53, 100);
    dns.proto = 17;
    dns.dst = "198.18.0.20";
    a.frag(fragment(dns, 3, 0, 56));
    a.frag(fragment(dns, 3, 56, 108));
    // Tiny: 8 and 16 bytes of a 20-byte TCP header; the rest at offset 8 rewrites the flags.
    a.frag(fragment(web, 4, 0, 8), FragDrop::tiny);
    a.frag(fragment(web, 4, 8, 24), FragDrop::tcp_offset1);
    a.frag(fragment(web, 4, 24, 60), FragDrop::no_first);
    a.frag(fragment(web, 5, 0, 16), FragDrop::tiny);
    a.frag(fragment(web, 5, 16, 60), FragDrop::no_first);
    // A second first fragment rewriting the port to 22, then the rest: the datagram is poisoned.
    a.frag(fragment(web, 6, 0, 24));
    a.frag(fragment(ssh, 6, 0, 24), FragDrop::overlap);
    a.frag(fragment(web, 6, 24, 60), FragDrop::overlap);
    // A fragment overlapping the first one's tail, then the rest.
    a.frag(fragment(web, 7, 0, 24));
    a.frag(fragment(web, 7, 16, 40), FragDrop::overlap);
    a.frag(fragment(web, 7, 40, 60), FragDrop::overlap);
    // Before its first fragment: dropped; the first passes and the datagram is judged from then.
    a.frag(fragment(web, 8, 24, 60), FragDrop::no_first);
    a.frag(fragment(web, 8, 0, 24));
    // A blocked first fragment: nothing remembered, its later fragments go nowhere.
    a.frag(fragment(ssh, 9, 0, 24));
    a.outside.back().expect = DropReason::policy;
    a.outside.back().why = FragDrop::none;
    a.frag(fragment(ssh, 9, 24, 60), FragDrop::no_first);
    // Scattered into more disjoint pieces than a datagram may hold (8), then the rest.
    const Pkt big = tcp4(80, 400);
    a.frag(fragment(big, 10, 0, 24));
    for (std::uint32_t at = 40; at < 40 + 7 * 32; at += 32)
        a.frag(fragment(big, 10, at, at + 8));
    a.frag(fragment(big, 10, 264, 272), FragDrop::scattered);
    a.frag(fragment(big, 10, 24, 32), FragDrop::scattered);
    // Malformed: a non-last fragment that is not a multiple of 8, one reaching past 65535.
    a.out(fragment(web, 11, 0, 20, true), DropReason::malformed);
    Pkt tail = tcp4(80, 0);
    tail.no_l4 = true;
    tail.payload = std::string(40, 't');
    tail.id = 12;
    tail.frag = 8189;  // 65512 + 40 bytes
    a.out(frame(tail), DropReason::malformed);
    // Atomic fragments (offset 0, no more-fragments; here with don't-fragment) are packets.
    Pkt df = web;
    df.frag = 0x4000;
    a.out(frame(df));
    df.dport = 22;
    a.out(frame(df), DropReason::policy);
    expect_stopped(a);
}

// RFC 7112, 8200, 5095: header chains that do not reach the transport header in the first
// fragment, too long, with two fragment headers (the CVE-2023-4809 shape), unknown next
// headers, routing header type 0.
TEST_F(Attacks, Ipv6HeaderChainsAndFragments) {
    Attack a;
    const Pkt web = tcp6(80), ssh = tcp6(22);
    a.frag(fragment(web, 1, 0, 24));
    a.frag(fragment(web, 1, 24, 60));
    a.frag(fragment(web, 2, 0, 8), FragDrop::tiny);
    a.frag(fragment(web, 2, 8, 60), FragDrop::tcp_offset1);
    a.frag(fragment(web, 3, 24, 60), FragDrop::no_first);
    a.frag(fragment(web, 4, 0, 24));
    a.frag(fragment(ssh, 4, 0, 24), FragDrop::overlap);
    a.frag(fragment(web, 4, 24, 60), FragDrop::overlap);
    // The chain split over fragments: the first holds a destination-options header, the TCP
    // header is in the second.
    Pkt split = web;
    split.ext = {{60, {}}};
    a.frag(fragment(split, 5, 0, 8), FragDrop::tiny);
    a.frag(fragment(split, 5, 8, 68), FragDrop::no_first);
    // Long chains: 8 extension headers are walked, 9 are not.
    Pkt chain = web;
    chain.ext.assign(8, {60, {}});
    a.out(frame(chain));
    chain.ext.assign(9, {60, {}});
    a.out(frame(chain), DropReason::malformed);
    a.out(fragment(chain, 6, 0, 96), DropReason::malformed);
    chain.ext.assign(20, {60, Bytes(200, 1)});  // a 4 KB chain: a jumbo frame in chained mbufs
    a.out(frame(chain), DropReason::malformed);
    // Two fragment headers, atomic or not, in either order.
    Pkt two = web;
    two.ext = {frag_header(7, 0, true), frag_header(7)};
    a.out(frame(two), DropReason::malformed);
    two.ext = {frag_header(8), frag_header(8)};
    a.out(frame(two), DropReason::malformed);
    two.ext = {frag_header(9), {60, {}}, frag_header(9, 0, true)};
    a.out(frame(two), DropReason::malformed);
    // Unknown or absent upper layers are protocols like any other: the catch-all blocks them.
    Pkt odd = web;
    odd.proto = 253;
    a.out(frame(odd), DropReason::policy);
    odd.ext = {{60, {}}};
    a.out(frame(odd), DropReason::policy);
    odd.ext.clear();
    odd.proto = 59;  // no next header
    a.out(frame(odd), DropReason::policy);
    // Routing header type 0 is dropped whatever the policy; segment routing (type 4) is filtered.
    Pkt routed = web;
    routed.ext = {{43, {0, 1, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}}};
    a.out(frame(routed), DropReason::malformed);
    routed.ext = {{43, {4, 0, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}}};
    a.out(frame(routed));
    // Hop-by-hop options anywhere but first.
    Pkt hbh = web;
    hbh.ext = {{60, {}}, {0, {}}};
    a.out(frame(hbh), DropReason::malformed);
    // An atomic fragment (offset 0, no more-fragments) is a packet.
    Pkt atomic = web;
    atomic.ext = {frag_header(10)};
    a.out(frame(atomic));
    atomic.dport = 22;
    a.out(frame(atomic), DropReason::policy);
    expect_stopped(a);
}

// A flood of first fragments fills the bounded table: exactly its capacity is remembered, every
// further datagram is dropped and counted, and completed datagrams make room again.
TEST_F(Attacks, FragmentFloodFillsTheTableAndNothingMore) {
    Attack a;
    const Pkt web = tcp4(80);
    constexpr std::uint32_t kTable = 8, kFlood = 40;
    for (std::uint32_t id = 100; id < 100 + kFlood; ++id)
        a.frag(fragment(web, id, 0, 24), id < 100 + kTable ? FragDrop::none : FragDrop::table_full);
    for (std::uint32_t id = 100; id < 100 + kFlood; ++id)
        a.frag(fragment(web, id, 24, 60), id < 100 + kTable ? FragDrop::none : FragDrop::no_first);
    for (std::uint32_t id = 200; id < 200 + kTable; ++id) {
        a.frag(fragment(web, id, 0, 24));
        a.frag(fragment(web, id, 24, 60));
    }
    expect_stopped(a, "fragment_table = " + std::to_string(kTable) + "\n");
}

TEST_F(Attacks, FragmentsDropDropsEveryFragment) {
    Attack a;
    const Pkt web4 = tcp4(80), web6 = tcp6(80);
    a.frag(fragment(web4, 1, 0, 24), FragDrop::all);
    a.frag(fragment(web4, 1, 24, 60), FragDrop::all);
    a.frag(fragment(web6, 1, 0, 24), FragDrop::all);
    a.frag(fragment(web6, 1, 24, 60), FragDrop::all);
    Pkt atomic = web6;
    atomic.ext = {frag_header(2)};
    a.out(frame(atomic));
    Pkt df = web4;
    df.frag = 0x4000;
    a.out(frame(df));
    expect_stopped(a, "fragments = drop\n");
}

// No built-in exemptions (the Windows NoDefaultExempt hole): the source port gets no say.
TEST_F(Attacks, SourcePortsGetNoExemption) {
    Attack a;
    for (std::uint16_t sport : {88, 500, 4500, 53, 123, 20, 0}) {
        for (std::uint8_t proto : {6, 17}) {
            Pkt p = tcp4(22, 16);
            p.proto = proto;
            p.sport = sport;
            a.out(frame(p), DropReason::policy);
            p.dport = 3389;
            a.out(frame(p), DropReason::policy);
            p.dst = "198.18.0.20";
            p.dport = 161;
            a.out(frame(p), DropReason::policy);
            p.dst = "198.18.0.99";  // not a server: no filter speaks for it
            a.out(frame(p), DropReason::no_match);
            Pkt v6 = tcp6(22, 16);
            v6.proto = proto;
            v6.sport = sport;
            a.out(frame(v6), DropReason::policy);
        }
        Pkt web = tcp4(80, 16);  // and it takes nothing away from a permitted one
        web.sport = sport;
        a.out(frame(web));
    }
    expect_stopped(a);
}

/// IPv4 options: loose and strict source route, record route, timestamp, and broken lengths.
struct Options {
    std::vector<Bytes> valid{
        {0x83, 7, 4, 198, 18, 0, 1, 0},        // LSRR, one hop, end of list
        {0x89, 7, 4, 198, 18, 0, 1, 0},        // SSRR
        {0x07, 7, 4, 0, 0, 0, 0, 0},           // RR
        {0x44, 8, 5, 0, 0, 0, 0, 0},           // TS
        {0x01, 0x01, 0x01, 0x00},              // NOPs and end of list
    };
    std::vector<Bytes> broken{
        {0x07, 12, 4, 0, 0, 0, 0, 0},  // longer than the options
        {0x44, 1, 5, 0},               // length below 2
        {0x83, 0, 4, 0},               // length 0
        {0x01, 0x07},                  // RR whose length byte is the padding: 0
    };
};

TEST_F(Attacks, IpOptionsDropped) {
    Attack a;
    const Options o;
    for (const auto* set : {&o.valid, &o.broken})
        for (const auto& opt : *set)
            a.out(frame(with_options(tcp4(80, 8), opt)), DropReason::ip_options);
    expect_stopped(a);  // ip_options = drop is the default
}

TEST_F(Attacks, IpOptionsAllowedAreFilteredAndBrokenOnesDropped) {
    Attack a;
    const Options o;
    for (const auto& opt : o.valid) {
        Pkt p = with_options(tcp4(80, 8), opt);
        a.out(frame(p));
        p.dport = 22;
        a.out(frame(p), DropReason::policy);
    }
    for (const auto& opt : o.broken)
        a.out(frame(with_options(tcp4(80, 8), opt)), DropReason::malformed);
    expect_stopped(a, "ip_options = allow\n");
}

TEST_F(Attacks, MalformedHeaders) {
    Attack a;
    const Pkt web = tcp4(80, 16);
    a.out(frame(web));
    Built b = build(web);
    b.bytes[b.l3] = 0x44;  // IHL 4
    a.out(b.bytes, DropReason::malformed);
    b = build(web);
    b.bytes[b.l3] = 0x4f;  // IHL 15: 60 bytes of header in a 56-byte packet
    a.out(b.bytes, DropReason::malformed);
    b = build(web);
    put16(b.bytes, b.l3 + 2, static_cast<std::uint16_t>(b.bytes.size() - b.l3 + 1));  // beyond the frame
    a.out(b.bytes, DropReason::malformed);
    b = build(web);
    put16(b.bytes, b.l3 + 2, 16);  // below the header
    a.out(b.bytes, DropReason::malformed);
    b = build(web);
    put16(b.bytes, b.l3 + 2, 20 + 12);  // the IP packet ends inside the TCP header
    a.out(b.bytes, DropReason::malformed);
    b = build(web);
    b.bytes[b.l4 + 12] = 0x40;  // TCP data offset 4
    a.out(b.bytes, DropReason::malformed);
    b = build(web);
    b.bytes[b.l4 + 12] = 0xf0;  // TCP data offset 15: 60 bytes of header in 36
    a.out(b.bytes, DropReason::malformed);
    Pkt dns = web;
    dns.proto = 17;
    dns.dport = 53;
    dns.dst = "198.18.0.20";
    a.out(frame(dns));
    b = build(dns);
    put16(b.bytes, b.l4 + 4, 7);  // UDP length below its header
    a.out(b.bytes, DropReason::malformed);
    b = build(dns);
    put16(b.bytes, b.l4 + 4, static_cast<std::uint16_t>(8 + 16 + 1));  // beyond the IP payload
    a.out(b.bytes, DropReason::malformed);
    b = build(web);
    b.bytes.resize(b.l4 + 10);  // the frame cut inside the TCP header
    a.out(b.bytes, DropReason::malformed);
    b = build(web);
    b.bytes.resize(b.l3 + 12);  // the frame cut inside the IP header
    a.out(b.bytes, DropReason::malformed);
    Pkt icmp = web;
    icmp.proto = 1;
    icmp.payload.clear();
    b = build(icmp);
    b.bytes.resize(b.l4 + 4);
    put16(b.bytes, b.l3 + 2, 24);
    a.out(b.bytes, DropReason::malformed);  // ICMP header cut short
    // Version and EtherType disagree.
    b = build(tcp6(80, 16));
    b.bytes[b.l3 - 2] = 0x08;
    b.bytes[b.l3 - 1] = 0x00;
    a.out(b.bytes, DropReason::malformed);
    b = build(web);
    b.bytes[b.l3 - 2] = 0x86;
    b.bytes[b.l3 - 1] = 0xdd;
    a.out(b.bytes, DropReason::malformed);
    // IPv6 payload length beyond the frame; TCP cut short in IPv6.
    b = build(tcp6(80, 16));
    put16(b.bytes, b.l3 + 4, 200);
    a.out(b.bytes, DropReason::malformed);
    b = build(tcp6(80, 0));
    b.bytes.resize(b.l4 + 12);
    put16(b.bytes, b.l3 + 4, 12);
    a.out(b.bytes, DropReason::malformed);
    // Frames too short for Ethernet, down to nothing at all.
    for (std::size_t n : {13u, 1u, 0u})
        a.out(Bytes(n, 0xab), DropReason::malformed);
    // Ethernet padding after the IP packet is fine (a 60-byte minimum frame).
    Pkt small = tcp4(80, 0);
    Bytes padded = frame(small);
    padded.resize(60, 0);
    a.out(padded);
    expect_stopped(a);
}

// VLAN tags never hide a packet from the policy; more than two are dropped.
TEST_F(Attacks, VlanTags) {
    Attack a;
    const Pkt web = tcp4(80, 16), ssh = tcp4(22, 16);
    for (const std::vector<std::uint16_t>& tags :
         std::vector<std::vector<std::uint16_t>>{{0x8100}, {0x88a8, 0x8100}, {0x8100, 0x8100}}) {
        Pkt p = web;
        p.vlans = tags;
        a.out(frame(p));
        p = ssh;
        p.vlans = tags;
        a.out(frame(p), DropReason::policy);
        p = tcp6(22, 16);
        p.vlans = tags;
        a.out(frame(p), DropReason::policy);
    }
    Pkt prio = web;  // priority tag: VID 0
    prio.vlans = {0x8100};
    prio.vid = 0;
    a.out(frame(prio));
    prio.dport = 22;
    a.out(frame(prio), DropReason::policy);
    Pkt deep = web;
    deep.vlans = {0x88a8, 0x8100, 0x8100};
    a.out(frame(deep), DropReason::malformed);
    deep.vlans = {0x8100, 0x8100, 0x8100, 0x8100};
    a.out(frame(deep), DropReason::malformed);
    Pkt cut = web;  // the frame ends inside the tag
    cut.vlans = {0x8100};
    Bytes f = frame(cut);
    f.resize(16);
    a.out(f, DropReason::malformed);
    Pkt lldp;  // a tag does not make a non-IP frame pass either
    lldp.ip = 0;
    lldp.ethertype = 0x88cc;
    lldp.l3 = Bytes(46, 0x11);
    lldp.vlans = {0x8100};
    a.out(frame(lldp), DropReason::non_ip);
    expect_stopped(a);
}

// With antispoof on (the default), a "me" source arriving from outside is dropped; from the
// inside it is the servers' own traffic.
TEST_F(Attacks, SpoofedMeSourcesFromOutside) {
    Attack a;
    for (const char* me : {"198.18.0.10", "198.18.0.20"}) {
        Pkt p = tcp4(80, 16);
        p.src = me;
        a.out(frame(p), DropReason::spoofed);
        p.dst = "198.18.0.20";
        p.proto = 17;
        p.dport = 53;
        a.out(frame(p), DropReason::spoofed);
    }
    Pkt v6 = tcp6(80, 16);
    v6.src = "2001:db8::10";
    a.out(frame(v6), DropReason::spoofed);
    Pkt reply = tcp4(40000, 16);
    reply.src = "198.18.0.10";
    reply.sport = 80;
    reply.dst = "198.18.100.1";
    a.in(frame(reply));
    a.out(frame(tcp4(80, 16)));
    expect_stopped(a);
}

TEST_F(Attacks, AntispoofOffLeavesSourcesToThePolicy) {
    Attack a;
    Pkt p = tcp4(80, 16);
    p.src = "198.18.0.20";
    a.out(frame(p));  // *+198.18.0.10:80 permits any source
    p.dport = 22;
    a.out(frame(p), DropReason::policy);
    expect_stopped(a, "antispoof = off\n");
}

TEST_F(Attacks, NonIpEtherTypes) {
    Attack a;
    for (std::uint16_t type : {0x88cc, 0x8137, 0x88b5, 0x9000, 0x8863, 0x8864, 0x8847, 0x8035, 0x0842}) {
        Pkt p;
        p.ip = 0;
        p.ethertype = type;
        p.l3 = Bytes(46, 0x45);  // looks like IPv4 inside: MPLS or PPPoE must not carry it past
        a.out(frame(p), DropReason::non_ip);
    }
    Case arp{arp_request()};
    arp.non_ip = true;
    a.outside.push_back(arp);
    expect_stopped(a);  // non_ip = 0x0806 (ARP) is the default
}

// The same servers with stateful permits (`state = keep`) and a mail server that may send SMTP
// out: the mirror halves that a stateless policy opens to anyone with the right source port
// open nothing here, and no TCP packet but a bare SYN starts a flow, whatever its flags,
// family or fragmentation.
constexpr const char* kStatefulPolicy = R"(me         = 198.18.0.10, 198.18.0.20, [2001:db8::10]
assign     = Servers

[filteraction Keep]
action = permit
state  = keep

[filterlist Web]
filter = *+198.18.0.10:80:TCP
filter = *+[2001:db8::10]:80:TCP

[filterlist Mail out]
filter = 198.18.0.20+*:25:TCP
filter = [2001:db8::10]+*:25:TCP

[filterlist All inbound traffic]
filter = *+0

[policy Servers]
rule = Web -> Keep
rule = Mail out -> Keep
rule = All inbound traffic -> block
)";

/// `p` with TCP flags `flags` (the test packets are SYNs otherwise).
Bytes with_flags(const Pkt& p, std::uint8_t flags) {
    Built b = build(p);
    b.bytes[b.l4 + 13] = flags;
    return b.bytes;
}

TEST_F(Attacks, StatefulMirrorsOpenNothing) {
    constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
    Attack a;
    // Source port 25 reaches no port of the mail server, in either family, with any flags.
    for (const std::uint16_t port : {22, 25, 80, 3389}) {
        Pkt p = tcp4(port, 0);
        p.sport = 25;
        p.dst = "198.18.0.20";
        a.out(with_flags(p, kSyn), DropReason::state);
        a.out(with_flags(p, kSyn | kAck), DropReason::state);
        a.out(with_flags(p, kAck), DropReason::state);
        a.out(with_flags(p, kRst), DropReason::state);
        if (port == 80)
            continue;  // [2001:db8::10]:80 is the web server's: a SYN there starts a flow
        Pkt v6 = tcp6(port, 0);
        v6.sport = 25;
        a.out(with_flags(v6, kSyn), DropReason::state);
        a.out(with_flags(v6, kAck), DropReason::state);
    }
    // To the web server only a bare SYN starts a flow: an ACK scan, SYN+FIN, SYN+RST, a FIN
    // scan and a data segment out of nowhere are refused.
    for (const std::uint8_t flags : {kAck, std::uint8_t(kSyn | kFin), std::uint8_t(kSyn | kRst), kFin, std::uint8_t(kAck | 0x08)}) {
        Pkt p = tcp4(80, 16);
        p.sport = 41000;
        a.out(with_flags(p, flags), DropReason::state);
        Pkt v6 = tcp6(80, 16);
        v6.sport = 41000;
        a.out(with_flags(v6, flags), DropReason::state);
    }
    // A first fragment that is not a SYN starts nothing, and its datagram's later fragment
    // goes with it; a fragmented SYN starts its flow whole.
    {
        Pkt whole = tcp4(80, 64);
        whole.sport = 42000;
        const std::size_t l4 = build(whole).l4;  // the first fragment has its TCP header there too
        Bytes first = fragment(whole, 77, 0, 40);
        first[l4 + 13] = kAck;  // (the IP checksum does not cover it)
        a.out(first, DropReason::state);
        a.frag(fragment(whole, 77, 40, 84), FragDrop::no_first);
    }
    {
        Pkt syn = tcp4(80, 64);
        syn.sport = 42001;
        a.frag(fragment(syn, 78, 0, 40));
        a.frag(fragment(syn, 78, 40, 84));
    }
    // The legitimate clients: a SYN from each family starts a flow and passes.
    a.out(frame(tcp4(80, 0)));
    a.out(frame(tcp6(80, 0)));
    expect_stopped(a, "", kStatefulPolicy);
}

}  // namespace
}  // namespace moat::test
