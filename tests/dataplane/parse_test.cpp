// The packet parser: every header it reads, every way a frame can be broken, and that it never
// reads past the frame (each frame sits in a buffer of exactly its size; the sanitizer build
// turns an over-read into a failure).
#include "dataplane/parse.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memory>

#include "tests/common/packets.h"

namespace moat::dp {
namespace {

using test::Bytes;
using test::Pkt;

ParsePolicy policy() {
    ParsePolicy p;
    p.non_ip = {0x0806};
    Addr me;
    inet_pton(AF_INET, "198.18.0.10", me.bytes.data());
    p.me_v4.push_back(me);
    return p;
}

const ParsePolicy& policy_storage() {
    static const ParsePolicy p = policy();
    return p;
}

PacketMeta parse(const Bytes& b, Ingress in = Ingress::outside, const ParsePolicy& pol = policy()) {
    // An exact-size heap copy, so that reading one byte too far is an out-of-bounds read.
    auto copy = std::make_unique<std::uint8_t[]>(b.size());
    std::copy(b.begin(), b.end(), copy.get());
    PacketMeta m;
    parse_frame(copy.get(), static_cast<std::uint32_t>(b.size()), in, pol, m);
    return m;
}

Addr addr(const char* s) {
    Addr a;
    if (inet_pton(AF_INET, s, a.bytes.data()) != 1)
        inet_pton(AF_INET6, s, a.bytes.data());
    return a;
}

TEST(Parse, Ipv4Tcp) {
    const auto m = parse(test::frame(Pkt{}));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_FALSE(m.bypass);
    EXPECT_EQ(m.key.family, Family::ipv4);
    EXPECT_EQ(m.key.src, addr("198.18.100.1"));
    EXPECT_EQ(m.key.dst, addr("198.18.0.10"));
    EXPECT_EQ(m.key.proto, 6);
    EXPECT_TRUE(m.key.has_ports);
    EXPECT_EQ(m.key.sport, 40000);
    EXPECT_EQ(m.key.dport, 80);
    EXPECT_FALSE(m.key.has_icmp);
    EXPECT_EQ(m.key.ingress, Ingress::outside);
    EXPECT_EQ(m.payload_offset, 14 + 20 + 20);
    EXPECT_EQ(m.payload_length, 0);
}

TEST(Parse, TcpOptionsAndPayload) {
    Pkt p;
    p.tcp_doff = 8;
    p.payload = "GET / HTTP/1.1\r\n";
    const auto m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_EQ(m.payload_offset, 14 + 20 + 32);
    EXPECT_EQ(m.payload_length, p.payload.size());
}

TEST(Parse, UdpSctpIcmp) {
    Pkt p;
    p.proto = 17;
    p.sport = 5353;
    p.dport = 53;
    p.payload = "q";
    auto m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_EQ(m.key.proto, 17);
    EXPECT_EQ(m.key.dport, 53);
    EXPECT_EQ(m.payload_length, 1);
    p.proto = 132;
    m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_TRUE(m.key.has_ports);
    p.proto = 1;
    p.icmp_type = 3;
    p.icmp_code = 4;
    m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_TRUE(m.key.has_icmp);
    EXPECT_FALSE(m.key.has_ports);
    EXPECT_EQ(m.key.icmp_type, 3);
    EXPECT_EQ(m.key.icmp_code, 4);
    p.proto = 47;  // GRE: no ports, no ICMP fields
    m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_EQ(m.key.proto, 47);
    EXPECT_FALSE(m.key.has_ports);
}

TEST(Parse, VlanTags) {
    Pkt p;
    p.vlans = {0x8100};
    auto m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_EQ(m.key.dport, 80);
    p.vlans = {0x88a8, 0x8100};
    m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_EQ(m.key.dport, 80);
    p.vid = 0;  // priority tag
    p.vlans = {0x8100};
    EXPECT_EQ(parse(test::frame(p)).drop, DropReason::none);
    p.vlans = {0x88a8, 0x8100, 0x8100};  // more tags than supported: dropped, never passed unfiltered
    EXPECT_EQ(parse(test::frame(p)).drop, DropReason::malformed);
}

TEST(Parse, PreStandardQinQTagsAreLookedThrough) {
    // 0x9100, 0x9200 and 0x9300 outer tags (Q-in-Q before 802.1ad): the IP inside is judged, even
    // with the tag's EtherType listed in non_ip, never passed unfiltered.
    ParsePolicy pol;
    pol.non_ip = {0x9100, 0x9200, 0x9300};
    for (const std::uint16_t outer : {0x9100, 0x9200, 0x9300}) {
        Pkt p;
        p.vlans = {outer, 0x8100};
        const PacketMeta m = parse(test::frame(p), Ingress::outside, pol);
        EXPECT_EQ(m.drop, DropReason::none) << std::hex << outer;
        EXPECT_FALSE(m.bypass) << std::hex << outer;
        EXPECT_EQ(m.key.dport, 80) << std::hex << outer;
    }
}

TEST(Parse, Ipv6WithExtensionHeaders) {
    Pkt p;
    p.ip = 6;
    p.src = "2001:db8:99::1";
    p.dst = "2001:db8::10";
    auto m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_EQ(m.key.family, Family::ipv6);
    EXPECT_EQ(m.key.dst, addr("2001:db8::10"));
    EXPECT_EQ(m.key.dport, 80);
    p.ext = {{0, {}}, {60, {1, 2, 3}}, {43, {2, 0}}, {44, {0, 0, 0, 0, 0, 0, 1}}, {60, {}}};
    m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_EQ(m.key.proto, 6);
    EXPECT_EQ(m.key.dport, 80);
    p.proto = 58;
    p.icmp_type = 135;
    p.ext.clear();
    m = parse(test::frame(p));
    EXPECT_TRUE(m.key.has_icmp);
    EXPECT_EQ(m.key.icmp_type, 135);
}

TEST(Parse, NonIp) {
    auto m = parse(test::arp_request());
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_TRUE(m.bypass);
    Pkt lldp;
    lldp.ip = 0;
    lldp.ethertype = 0x88cc;
    lldp.l3 = Bytes(40, 0);
    EXPECT_EQ(parse(test::frame(lldp)).drop, DropReason::non_ip);
    ParsePolicy none = policy();
    none.non_ip.clear();
    EXPECT_EQ(parse(test::arp_request(), Ingress::outside, none).drop, DropReason::non_ip);
}

TEST(Parse, Ipv4OptionsFollowThePolicy) {
    Pkt p;
    p.ip_options = {0x83, 7, 4, 198, 18, 0, 1, 0};  // loose source route + EOL
    EXPECT_EQ(parse(test::frame(p)).drop, DropReason::ip_options);
    ParsePolicy allow = policy();
    allow.ip_options_allow = true;
    auto m = parse(test::frame(p), Ingress::outside, allow);
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_EQ(m.key.dport, 80);
    p.ip_options = {0x83, 9, 4, 198, 18, 0, 1, 0};  // the option claims more than there is
    EXPECT_EQ(parse(test::frame(p), Ingress::outside, allow).drop, DropReason::malformed);
    p.ip_options = {0x44, 1, 0, 0};  // timestamp with a length below 2
    EXPECT_EQ(parse(test::frame(p), Ingress::outside, allow).drop, DropReason::malformed);
}

TEST(Parse, FragmentsAreNotedTinyOnesDropped) {
    Pkt p;
    p.frag = 0x2000;  // first fragment (more fragments), with the whole TCP header
    p.payload = std::string(4, 'x');  // 20 + 4 bytes: a multiple of 8
    auto m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_TRUE(m.frag.present);
    EXPECT_TRUE(m.frag.more);
    EXPECT_EQ(m.frag.begin, 0u);
    EXPECT_EQ(m.frag.end, 24u);
    EXPECT_EQ(m.frag.id, 0x1234u);
    EXPECT_EQ(m.key.dport, 80);
    p.frag = 0x0003;  // a later fragment at 24 bytes: no transport header to read
    p.no_l4 = true;
    p.payload = std::string(16, 'y');
    m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_TRUE(m.frag.present);
    EXPECT_FALSE(m.frag.more);
    EXPECT_EQ(m.frag.begin, 24u);
    EXPECT_FALSE(m.key.has_ports);
    p.frag = 0x4000;  // don't fragment, offset 0: an ordinary packet
    p.no_l4 = false;
    p.payload.clear();
    m = parse(test::frame(p));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_FALSE(m.frag.present);
    ParsePolicy no_fragments = policy();
    no_fragments.fragments_track = false;
    p.frag = 0x2000;
    m = parse(test::frame(p), Ingress::outside, no_fragments);
    EXPECT_EQ(m.drop, DropReason::fragment);
    EXPECT_EQ(m.frag.why, FragDrop::all);

    Pkt q;
    q.ip = 6;
    q.src = "2001:db8:99::1";
    q.dst = "2001:db8::10";
    q.payload = std::string(4, 'x');
    q.ext = {{44, {0, 0x00, 0x01, 0, 0, 0, 9}}};  // offset 0, more fragments
    m = parse(test::frame(q));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_TRUE(m.frag.present);
    EXPECT_EQ(m.frag.id, 9u);
    EXPECT_EQ(m.key.dport, 80);
    q.ext = {{44, {0, 0, 0, 0, 0, 0, 9}}};  // atomic fragment: an ordinary packet
    m = parse(test::frame(q));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_FALSE(m.frag.present);
    q.ext = {{44, {0, 0, 0, 0, 0, 0, 9}}, {44, {0, 0, 0, 0, 0, 0, 9}}};  // two fragment headers
    EXPECT_EQ(parse(test::frame(q)).drop, DropReason::malformed);
}

TEST(Parse, Antispoof) {
    Pkt p;
    p.src = "198.18.0.10";
    EXPECT_EQ(parse(test::frame(p), Ingress::outside).drop, DropReason::spoofed);
    EXPECT_EQ(parse(test::frame(p), Ingress::inside).drop, DropReason::none);
    ParsePolicy off = policy();
    off.antispoof = false;
    EXPECT_EQ(parse(test::frame(p), Ingress::outside, off).drop, DropReason::none);
}

// --- bad input: dropped as malformed, never read past the frame ---------------------------------

TEST(ParseBadInput, Ipv4) {
    const test::Built ok = test::build(Pkt{});
    Bytes b = ok.bytes;
    b[ok.l3] = 0x44;  // IHL 4
    EXPECT_EQ(parse(b).drop, DropReason::malformed);
    b = ok.bytes;
    b[ok.l3] = 0x4f;  // IHL 15: 60 bytes, more than the packet
    EXPECT_EQ(parse(b).drop, DropReason::malformed);
    b = ok.bytes;
    test::put16(b, ok.l3 + 2, static_cast<std::uint16_t>(b.size()));  // total length beyond the frame
    EXPECT_EQ(parse(b).drop, DropReason::malformed);
    b = ok.bytes;
    test::put16(b, ok.l3 + 2, 19);  // total length below the header
    EXPECT_EQ(parse(b).drop, DropReason::malformed);
    b = ok.bytes;
    b[ok.l3] = 0x65;  // version 6 behind EtherType IPv4
    EXPECT_EQ(parse(b).drop, DropReason::malformed);
}

TEST(ParseBadInput, Transport) {
    const test::Built ok = test::build(Pkt{});
    Bytes b = ok.bytes;
    b[ok.l4 + 12] = 0x40;  // TCP data offset 4
    EXPECT_EQ(parse(b).drop, DropReason::malformed);
    b[ok.l4 + 12] = 0xf0;  // data offset 15: beyond the segment
    EXPECT_EQ(parse(b).drop, DropReason::malformed);

    Pkt u;
    u.proto = 17;
    const test::Built ub = test::build(u);
    b = ub.bytes;
    test::put16(b, ub.l4 + 4, 7);  // UDP length below its header
    EXPECT_EQ(parse(b).drop, DropReason::malformed);
    b = ub.bytes;
    test::put16(b, ub.l4 + 4, 9);  // UDP length beyond the datagram
    EXPECT_EQ(parse(b).drop, DropReason::malformed);

    // Transport headers cut short: the IP total length says so.
    for (std::uint8_t proto : {6, 17, 132, 1}) {
        Pkt p;
        p.proto = proto;
        const test::Built t = test::build(p);
        b = t.bytes;
        b.resize(t.l4 + 3);
        test::put16(b, t.l3 + 2, static_cast<std::uint16_t>(b.size() - t.l3));
        b[t.l3 + 10] = b[t.l3 + 11] = 0;
        EXPECT_EQ(parse(b).drop, DropReason::malformed) << int(proto);
    }
}

TEST(ParseBadInput, Ipv6ChainThatNeverEnds) {
    Pkt p;
    p.ip = 6;
    p.src = "2001:db8:99::1";
    p.dst = "2001:db8::10";
    for (int i = 0; i < 20; ++i)
        p.ext.push_back({60, {}});
    EXPECT_EQ(parse(test::frame(p)).drop, DropReason::malformed);
    // A chain whose last header claims more bytes than the packet holds.
    p.ext = {{60, {}}};
    p.no_l4 = true;
    test::Built t = test::build(p);
    t.bytes[t.l3 + 40 + 1] = 200;
    EXPECT_EQ(parse(t.bytes).drop, DropReason::malformed);
    // Hop-by-hop anywhere but first.
    p.no_l4 = false;
    p.ext = {{60, {}}, {0, {}}};
    EXPECT_EQ(parse(test::frame(p)).drop, DropReason::malformed);
    // Payload length beyond the frame.
    p.ext.clear();
    t = test::build(p);
    test::put16(t.bytes, t.l3 + 4, 1000);
    EXPECT_EQ(parse(t.bytes).drop, DropReason::malformed);
}

TEST(ParseBadInput, EveryTruncationOfEveryKind) {
    std::vector<Bytes> frames;
    Pkt p;
    frames.push_back(test::frame(p));
    p.vlans = {0x88a8, 0x8100};
    frames.push_back(test::frame(p));
    p = Pkt{};
    p.ip = 6;
    p.src = "2001:db8:99::1";
    p.dst = "2001:db8::10";
    p.ext = {{0, {}}, {43, {2, 0}}, {44, {0, 0, 0, 0, 0, 0, 1}}};
    frames.push_back(test::frame(p));
    p.proto = 17;
    frames.push_back(test::frame(p));
    p.proto = 58;
    frames.push_back(test::frame(p));
    frames.push_back(test::arp_request());
    for (const auto& f : frames) {
        const auto whole = parse(f);
        EXPECT_EQ(whole.drop, DropReason::none);
        for (std::size_t n = 0; n < f.size(); ++n) {
            const Bytes cut(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(n));
            const auto m = parse(cut);
            // A truncated IP frame is never judged on made-up fields; ARP carries no length.
            if (!whole.bypass) {
                EXPECT_EQ(m.drop, DropReason::malformed) << "cut at " << n;
            }
        }
    }
}

TEST(ParseBadInput, ZeroLengthAndTiny) {
    EXPECT_EQ(parse({}).drop, DropReason::malformed);
    EXPECT_EQ(parse(Bytes(13, 0xff)).drop, DropReason::malformed);
    EXPECT_EQ(parse(Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00}).drop, DropReason::malformed);
}

// The short path of parse_frame must be invisible: for every frame, the same meta as the full
// parser. Frames near the short path's conditions (TCP and UDP of every length, header lengths,
// fragment bits, options, tags, other protocols), each also with every single byte of its
// first 64 changed to a few values (an attacker's bit flips), from both sides, with and without
// antispoof and a `me` source.
TEST(Parse, TheShortPathAgreesWithTheFullParserOnEveryFrame) {
    std::vector<Bytes> frames;
    for (const std::uint8_t proto : {6, 17, 132, 1, 47}) {
        for (const std::size_t payload : {0, 1, 7, 8, 30}) {
            Pkt p;
            p.proto = proto;
            p.payload = std::string(payload, 'x');
            frames.push_back(test::frame(p));
            p.src = "198.18.0.10";  // a `me` source
            frames.push_back(test::frame(p));
            p.frag = 0x4000;  // DF: still a whole packet
            frames.push_back(test::frame(p));
            p.frag = 0x2000;  // a first fragment
            frames.push_back(test::frame(p));
            p.frag = 0;
            p.ip_options = {1, 1, 1, 0};
            frames.push_back(test::frame(p));
            p.ip_options.clear();
            p.vlans = {0x8100};
            frames.push_back(test::frame(p));
        }
    }
    const std::vector<Bytes> base = frames;
    for (const Bytes& f : base) {
        for (std::size_t at = 0; at < std::min<std::size_t>(f.size(), 64); ++at)
            for (const std::uint8_t v : {0x00, 0x05, 0x06, 0x08, 0x11, 0x14, 0x20, 0x45, 0x46, 0xff}) {
                Bytes g = f;
                g[at] = v;
                frames.push_back(std::move(g));
            }
        for (std::size_t cut = 0; cut < f.size(); ++cut)
            frames.emplace_back(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(cut));
        Bytes longer = f;  // trailing bytes after the datagram (Ethernet padding)
        longer.resize(f.size() + 9, 0);
        frames.push_back(std::move(longer));
    }
    ParsePolicy no_antispoof = policy();
    no_antispoof.antispoof = false;
    std::size_t short_path = 0;
    for (const Bytes& f : frames)
        for (const Ingress in : {Ingress::outside, Ingress::inside})
            for (const ParsePolicy* pol : {&policy_storage(), static_cast<const ParsePolicy*>(&no_antispoof)}) {
                const PacketMeta got = parse(f, in, *pol);
                PacketMeta want;
                parse_frame_in_full(f.data(), static_cast<std::uint32_t>(f.size()), in, *pol, want);
                ASSERT_TRUE(got == want) << "frame of " << f.size() << " bytes: drop " << int(got.drop) << " vs "
                                         << int(want.drop) << ", payload " << got.payload_offset << "+"
                                         << got.payload_length << " vs " << want.payload_offset << "+"
                                         << want.payload_length;
                short_path += want.drop == DropReason::none && want.key.family == Family::ipv4 && !want.frag.present &&
                              (want.key.proto == 6 || want.key.proto == 17);
            }
    EXPECT_GT(short_path, 1000u) << "too few frames took the short path to tell anything";
}

}  // namespace
}  // namespace moat::dp

namespace moat::dp {
namespace {

// A TCP datagram shorter than a TCP header (total length 28 .. 39) in a frame of 42 .. 46 bytes:
// the short path read the data offset (TCP byte 12, frame byte 46) before checking that the
// datagram holds 20 bytes, past the frame's end (found by the packet fuzzer under ASan). Here the
// frame ends where a page ends and the next page is unreadable, so an over-read crashes this
// test in any build.
TEST(ParseBadInput, ShortTcpAtTheEndOfReadableMemoryIsNotReadPast) {
    const long page = sysconf(_SC_PAGESIZE);
    void* mem = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem, MAP_FAILED);
    auto* base = static_cast<std::uint8_t*>(mem);
    ASSERT_EQ(mprotect(base + page, page, PROT_NONE), 0);
    Pkt p;
    p.proto = 6;
    const Bytes whole = test::frame(p);  // 14 + 20 + 20 bytes
    for (std::uint32_t len = 42; len <= 46; ++len)
        for (std::uint32_t total = 28; total <= len - 14; ++total) {
            Bytes f(whole.begin(), whole.begin() + len);
            f[16] = static_cast<std::uint8_t>(total >> 8);
            f[17] = static_cast<std::uint8_t>(total);
            std::uint8_t* at = base + page - len;
            std::copy(f.begin(), f.end(), at);
            PacketMeta got, want;
            parse_frame(at, len, Ingress::outside, policy_storage(), got);
            parse_frame_in_full(at, len, Ingress::outside, policy_storage(), want);
            EXPECT_TRUE(got == want) << len << " bytes, total length " << total;
            EXPECT_EQ(got.drop, DropReason::malformed) << len << " bytes, total length " << total;
        }
    munmap(mem, 2 * page);
}

}  // namespace
}  // namespace moat::dp
