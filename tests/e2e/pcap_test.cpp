// End to end through a real moatd with net_pcap ports: mixed traffic (permitted, blocked,
// malformed, non-IP, VLAN-tagged, IPv6) goes in on both ports; exactly the permitted packets
// come out of the other port, byte for byte and in order, and the counters add up per reason.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "dataplane/counters.h"
#include "tests/common/pcap_appliance.h"

namespace moat::test {
namespace {

namespace fs = std::filesystem;
using dp::DropReason;

constexpr const char* kPolicy = R"(
me         = 198.18.0.10, 198.18.0.20, [2001:db8::10]
assign     = Servers

[filterlist Web]
filter = *+198.18.0.10:80:TCP
filter = *+[2001:db8::10]:80:TCP

[filterlist Mail]
filter = *+198.18.0.20:25:TCP
filter = 198.18.0.20+*:25:TCP

[filterlist DNS]
filter = *+198.18.0.20:53:UDP

[filterlist Ping]
filter = *=0::ICMP:8
filter = 0=*::ICMP:0

[filterlist All inbound traffic]
filter = *+0

[policy Servers]
rule = Web -> permit
rule = Mail -> permit
rule = DNS -> permit
rule = Ping -> permit
rule = All inbound traffic -> block
)";

struct Case {
    Bytes frame;
    DropReason expect;  ///< none: must come out of the other port
    bool non_ip = false;
};

/// The web server's answer to 198.18.100.1:40000.
Pkt web_reply(const std::string& payload) {
    Pkt p;
    p.src = "198.18.0.10";
    p.sport = 80;
    p.dst = "198.18.100.1";
    p.dport = 40000;
    p.payload = payload;
    return p;
}

Bytes v6(Pkt p) {
    p.ip = 6;
    if (p.src.find(':') == std::string::npos)
        p.src = "2001:db8:99::1";
    if (p.dst.find(':') == std::string::npos)
        p.dst = "2001:db8::10";
    return frame(p);
}

std::vector<Case> outside_cases() {
    std::vector<Case> c;
    Pkt web;  // 198.18.100.1:40000 -> 198.18.0.10:80 TCP
    c.push_back({frame(web), DropReason::none});
    for (std::size_t size : {1u, 100u, 512u, 1400u}) {
        Pkt p = web;
        p.payload = std::string(size, static_cast<char>('a' + size % 26));
        c.push_back({frame(p), DropReason::none});
    }
    Pkt tagged = web;
    tagged.vlans = {0x8100};
    c.push_back({frame(tagged), DropReason::none});
    tagged.vlans = {0x88a8, 0x8100};
    c.push_back({frame(tagged), DropReason::none});
    tagged.vlans = {0x88a8, 0x8100, 0x8100};
    c.push_back({frame(tagged), DropReason::malformed});
    Pkt ssh = web;
    ssh.dport = 22;
    c.push_back({frame(ssh), DropReason::policy});
    ssh.vlans = {0x8100};  // a tag does not hide a packet from the policy
    c.push_back({frame(ssh), DropReason::policy});
    Pkt stray = web;
    stray.proto = 17;
    stray.dst = "198.18.0.99";
    stray.dport = 53;
    c.push_back({frame(stray), DropReason::no_match});
    Pkt dns = stray;
    dns.dst = "198.18.0.20";
    c.push_back({frame(dns), DropReason::none});
    Pkt ping = web;
    ping.proto = 1;
    c.push_back({frame(ping), DropReason::none});
    ping.icmp_type = 13;  // timestamp request: not permitted
    c.push_back({frame(ping), DropReason::policy});
    c.push_back({arp_request(), DropReason::none, true});
    Pkt lldp;
    lldp.ip = 0;
    lldp.ethertype = 0x88cc;
    lldp.l3 = Bytes(46, 0x11);
    c.push_back({frame(lldp), DropReason::non_ip});
    Pkt opts = web;
    opts.ip_options = {0x83, 7, 4, 198, 18, 0, 1, 0};
    c.push_back({frame(opts), DropReason::ip_options});
    Pkt frag = web;
    frag.frag = 0x0003;  // a later fragment whose datagram's first fragment never came
    frag.no_l4 = true;
    frag.payload = std::string(16, 'f');
    c.push_back({frame(frag), DropReason::fragment});
    Pkt spoof = web;
    spoof.src = "198.18.0.20";
    c.push_back({frame(spoof), DropReason::spoofed});
    Built bad = build(web);
    bad.bytes[bad.l3] = 0x44;  // IHL 4
    c.push_back({bad.bytes, DropReason::malformed});
    bad = build(web);
    bad.bytes[bad.l4 + 12] = 0x40;  // TCP data offset 4
    c.push_back({bad.bytes, DropReason::malformed});
    bad = build(web);
    bad.bytes.resize(bad.l4 + 10);  // cut inside the TCP header; total length says more
    c.push_back({bad.bytes, DropReason::malformed});
    Pkt w6;
    c.push_back({v6(w6), DropReason::none});
    Pkt s6;
    s6.dport = 22;
    c.push_back({v6(s6), DropReason::policy});
    Pkt chain;
    for (int i = 0; i < 12; ++i)
        chain.ext.push_back({60, {}});
    c.push_back({v6(chain), DropReason::malformed});
    Pkt e6;
    e6.ext = {{0, {}}, {60, {}}};
    c.push_back({v6(e6), DropReason::none});
    return c;
}

std::vector<Case> inside_cases() {
    std::vector<Case> c;
    const Pkt reply = web_reply("HTTP/1.1 200 OK\r\n\r\n");
    c.push_back({frame(reply), DropReason::none});
    Pkt smtp;
    smtp.src = "198.18.0.20";
    smtp.dst = "198.18.100.25";
    smtp.dport = 25;
    c.push_back({frame(smtp), DropReason::none});
    Pkt browse = smtp;
    browse.src = "198.18.0.10";
    browse.dport = 80;  // the web server may not open connections
    c.push_back({frame(browse), DropReason::policy});
    Pkt echo;
    echo.src = "198.18.0.10";
    echo.dst = "198.18.100.1";
    echo.proto = 1;
    echo.icmp_type = 0;
    c.push_back({frame(echo), DropReason::none});  // a me source is fine on the inside
    Pkt r6 = reply;
    r6.src = "2001:db8::10";
    r6.dst = "2001:db8:99::1";
    c.push_back({v6(r6), DropReason::none});
    Bytes arp = arp_request();
    arp[21] = 2;  // a reply
    c.push_back({arp, DropReason::none, true});
    return c;
}

using PcapEndToEnd = PcapAppliance;

std::vector<Bytes> frames_of(const std::vector<Case>& cases, bool passing) {
    std::vector<Bytes> out;
    for (const auto& c : cases)
        if (!passing || c.expect == DropReason::none)
            out.push_back(c.frame);
    return out;
}

TEST_F(PcapEndToEnd, ExactlyThePermittedPacketsComeOutAndTheCountersAddUp) {
    const auto out_cases = outside_cases();
    const auto in_cases = inside_cases();
    const ApplianceRun r = run(write_config(kPolicy), frames_of(out_cases, false), frames_of(in_cases, false));
    ASSERT_TRUE(r.ok) << r.why;

    // Byte for byte, in order, in each direction.
    EXPECT_EQ(r.to_inside, frames_of(out_cases, true));
    EXPECT_EQ(r.to_outside, frames_of(in_cases, true));
    const auto& to_inside = r.to_inside;
    const auto& c = r.counters;
    std::map<std::string, std::uint64_t> expect_drops;
    std::uint64_t non_ip = 0;
    for (const auto* cases : {&out_cases, &in_cases})
        for (const auto& k : *cases) {
            if (k.expect != DropReason::none)
                ++expect_drops[std::string(dp::kDropReasonNames[static_cast<std::size_t>(k.expect)])];
            non_ip += k.non_ip;
        }
    for (std::size_t k = 1; k < dp::kDropReasons; ++k) {
        const std::string name(dp::kDropReasonNames[k]);
        EXPECT_EQ(c["drops"][name].get<std::uint64_t>(), expect_drops[name]) << name;
    }
    EXPECT_EQ(c["non_ip_passed"].get<std::uint64_t>(), non_ip);
    const auto& po = c["ports"]["outside"];
    const auto& pi = c["ports"]["inside"];
    EXPECT_EQ(po["rx_packets"].get<std::size_t>(), out_cases.size());
    EXPECT_EQ(pi["rx_packets"].get<std::size_t>(), in_cases.size());
    // rx = forwarded + dropped, for each port; nothing refused by the pcap tx queues.
    EXPECT_EQ(po["rx_packets"].get<std::size_t>(), pi["tx_packets"].get<std::size_t>() + po["dropped"].get<std::size_t>());
    EXPECT_EQ(pi["rx_packets"].get<std::size_t>(), po["tx_packets"].get<std::size_t>() + pi["dropped"].get<std::size_t>());
    EXPECT_EQ(po["tx_failed"].get<std::uint64_t>() + pi["tx_failed"].get<std::uint64_t>(), 0u);
    std::uint64_t in_bytes = 0;
    for (const auto& f : to_inside)
        in_bytes += f.size();
    EXPECT_EQ(pi["tx_bytes"].get<std::uint64_t>(), in_bytes);
    // Per-filter hits: the web filter saw every permitted IPv4 web packet from outside plus the reply.
    std::uint64_t web_hits = 0;
    for (const auto& f : c["filters"])
        if (f["filter"] == "*+198.18.0.10:80:TCP")
            web_hits = f["packets"].get<std::uint64_t>();
    EXPECT_EQ(web_hits, 8u);  // 5 plain + 2 tagged from outside, 1 reply from inside
}

// Payload filters through moatd: the web is open, requests for /admin and a NOP sled are not.
TEST_F(PcapEndToEnd, PayloadFiltersStopAdminRequestsAndShellcode) {
    constexpr const char* kWeb = R"(me = 198.18.0.10
assign = Web
[filterlist Web]
filter = *+0:80:TCP
[filterlist Admin pages]
filter = *+0:80:TCP payload=/^(GET|POST|HEAD) \/admin/i
[filterlist Shellcode]
filter = *+0:80:TCP payload=/\x90{16}/s
[filterlist All]
filter = *+0
[policy Web]
rule = Web -> permit
rule = Admin pages -> block
rule = Shellcode -> block
rule = All -> block
)";
    const auto request = [](const std::string& payload, std::uint16_t dport = 80) {
        Pkt p;
        p.dport = dport;
        p.payload = payload;
        return frame(p);
    };
    std::vector<Case> out{
        {request(""), DropReason::none},  // SYN: nothing to scan
        {request("GET / HTTP/1.1\r\nHost: moat\r\n\r\n"), DropReason::none},
        {request("GET /admin/ HTTP/1.1\r\n\r\n"), DropReason::payload},
        {request("post /ADMIN/login HTTP/1.1\r\n\r\n"), DropReason::payload},
        {request("POST /upload HTTP/1.1\r\n\r\n" + std::string(32, '\x90') + "\x31\xc0\x50\x68"), DropReason::payload},
        {request("GET /index.html?next=/admin HTTP/1.1\r\n\r\n"), DropReason::none},  // anchored: not a request for it
        {request("GET /admin HTTP/1.1\r\n\r\n", 22), DropReason::policy},
    };
    const Pkt reply = web_reply("HTTP/1.1 200 OK\r\n\r\n");
    std::vector<Case> in{{frame(reply), DropReason::none}};
    const ApplianceRun r = run(write_config(kWeb), frames_of(out, false), frames_of(in, false));
    ASSERT_TRUE(r.ok) << r.why;
    EXPECT_EQ(r.to_inside, frames_of(out, true));
    EXPECT_EQ(r.to_outside, frames_of(in, true));
    EXPECT_EQ(r.counters["drops"]["payload"].get<std::uint64_t>(), 3u);
    EXPECT_EQ(r.counters["drops"]["policy"].get<std::uint64_t>(), 1u);
    // Scanned: every packet with a payload that a payload filter outranked the web filter for,
    // the reply too (the filters are mirrored); not the SYN, not the packet to port 22.
    std::uint64_t bytes = reply.payload.size();
    for (std::size_t i = 1; i < 6; ++i)
        bytes += out[i].frame.size() - 54;
    EXPECT_EQ(r.counters["payload"]["scanned"].get<std::uint64_t>(), 6u);
    EXPECT_EQ(r.counters["payload"]["bytes"].get<std::uint64_t>(), bytes);
    std::map<std::string, std::uint64_t> hits;
    for (const auto& f : r.counters["filters"])
        hits[f["filterlist"].get<std::string>()] += f["packets"].get<std::uint64_t>();
    EXPECT_EQ(hits["Admin pages"], 2u);
    EXPECT_EQ(hits["Shellcode"], 1u);
    EXPECT_EQ(hits["Web"], 4u);
}

// More workers than a port has queues (a pcap vdev has one): moatd says so and runs one worker,
// which sees and judges everything.
TEST_F(PcapEndToEnd, WorkersBeyondThePortsQueuesRunAsOne) {
    const auto out_cases = outside_cases();
    const ApplianceRun r = run(write_config(kPolicy, "workers = 4\n"), frames_of(out_cases, false), {});
    ASSERT_TRUE(r.ok) << r.why;
    EXPECT_NE(r.log.find("outside port net_pcap0"), std::string::npos) << r.log;
    EXPECT_NE(r.log.find("1 queue pair(s); running 1 worker, not 4 (workers = 4)"), std::string::npos) << r.log;
    EXPECT_EQ(r.to_inside, frames_of(out_cases, true));
    ASSERT_EQ(r.counters["workers"].size(), 1u);
    EXPECT_EQ(r.counters["workers"][0]["rx_packets"].get<std::size_t>(), out_cases.size());
}

TEST_F(PcapEndToEnd, BrokenConfigRefusesToStartAndForwardsNothing) {
    write_pcap(path("or.pcap"), frames_of(outside_cases(), false));
    write_pcap(path("ir.pcap"), {});
    const std::string cfg = write_config("assign = Nope\n[filterlist W]\nfilter = *+198.18.0.300:80:TCP\n");
    Moatd moatd({"--config", cfg}, path("moatd.log"));
    ASSERT_TRUE(moatd.started());
    EXPECT_EQ(moatd.wait_exit(30), 1);
    const std::string log = moatd.log();
    EXPECT_NE(log.find(cfg + ":8: error: filter '*+198.18.0.300:80:TCP'"), std::string::npos) << log;
    EXPECT_NE(log.find(cfg + ":6: error: assign names policy 'Nope'"), std::string::npos) << log;
    EXPECT_NE(log.find("moatd: not starting"), std::string::npos) << log;
    // EAL never started, so the pcap ports never opened their output files.
    EXPECT_FALSE(fs::exists(path("it.pcap")));
    EXPECT_FALSE(fs::exists(path("ot.pcap")));
}

// A stage that fails after EAL, the ports, the runtime and its telemetry binding are up (here:
// the fragment table does not fit in the EAL memory given) unwinds them in reverse order: moatd
// says why and exits 1, instead of crashing or leaving a telemetry callback a destroyed runtime.
TEST_F(PcapEndToEnd, AStageFailingAfterTheRuntimeStartedUnwindsAndExits) {
    write_pcap(path("or.pcap"), frames_of(outside_cases(), false));
    write_pcap(path("ir.pcap"), {});
    const std::string cfg = write_config(std::string(kPolicy), "fragment_table = 4194304\n");
    Moatd moatd({"--config", cfg}, path("moatd.log"));
    ASSERT_TRUE(moatd.started());
    EXPECT_EQ(moatd.wait_exit(60), 1);
    const std::string log = moatd.log();
    EXPECT_NE(log.find("generation 1"), std::string::npos) << "the runtime was not up yet:\n" << log;
    EXPECT_NE(log.find("moatd: not starting: cannot create the fragment table"), std::string::npos) << log;
    EXPECT_EQ(log.find("forwarding"), std::string::npos) << log;
}

TEST_F(PcapEndToEnd, NothingAssignedBlocksEveryIpPacket) {
    const auto out_cases = outside_cases();
    const ApplianceRun r = run(write_config("assign =\n"), frames_of(out_cases, false), {});
    ASSERT_TRUE(r.ok) << r.why;
    EXPECT_NE(r.log.find("no policy is assigned: every IP packet is dropped"), std::string::npos) << r.log;
    ASSERT_EQ(r.to_inside.size(), 1u);  // only the ARP request
    EXPECT_EQ(r.to_inside[0], arp_request());
}

/// A permitted web request whose IP packet is `ip_bytes` long (TCP, 20-byte headers).
Bytes web_request_of(std::size_t ip_bytes, std::vector<std::uint16_t> vlans = {}) {
    Pkt p;
    p.payload = std::string(ip_bytes - 40, 'j');
    p.vlans = std::move(vlans);
    return frame(p);
}

// Jumbo frames: with mtu = 9000 a 9000-byte packet (also behind two VLAN tags) passes whole,
// a longer one is a giant; without the key (mtu 1500) the same jumbo frame is dropped as
// malformed although the pcap port hands it over (chained), and 1500 bytes still pass.
TEST_F(PcapEndToEnd, JumboFramesPassOnlyWithALargeEnoughMtu) {
    const std::vector<Bytes> frames{web_request_of(9000), web_request_of(9000, {0x88a8, 0x8100}), web_request_of(9009),
                                    web_request_of(1500), web_request_of(1501), web_request_of(64)};
    const ApplianceRun jumbo = run(write_config(kPolicy, "mtu = 9000\n"), frames, {});
    ASSERT_TRUE(jumbo.ok) << jumbo.why;
    EXPECT_NE(jumbo.log.find("mtu 9000: frames up to 9022 bytes"), std::string::npos) << jumbo.log;
    EXPECT_NE(jumbo.log.find("mtu 9000, link"), std::string::npos) << jumbo.log;
    EXPECT_EQ(jumbo.to_inside, (std::vector<Bytes>{frames[0], frames[1], frames[3], frames[4], frames[5]}));
    EXPECT_EQ(jumbo.counters["drops"]["malformed"].get<std::uint64_t>(), 1u);  // 9009 + 14 > 9022
    EXPECT_EQ(jumbo.counters["ports"]["outside"]["dropped"].get<std::uint64_t>(), 1u);
    EXPECT_EQ(jumbo.counters["ports"]["inside"]["tx_bytes"].get<std::uint64_t>(),
              frames[0].size() + frames[1].size() + frames[3].size() + frames[4].size() + frames[5].size());

    const ApplianceRun plain = run(write_config(kPolicy), frames, {});
    ASSERT_TRUE(plain.ok) << plain.why;
    EXPECT_NE(plain.log.find("mtu 1500: frames up to 1522 bytes"), std::string::npos) << plain.log;
    // 1501 bytes of IP is 1515 bytes of frame: within the two VLAN tags' allowance, as on a NIC.
    EXPECT_EQ(plain.to_inside, (std::vector<Bytes>{frames[3], frames[4], frames[5]}));
    EXPECT_EQ(plain.counters["drops"]["malformed"].get<std::uint64_t>(), 3u);
    EXPECT_EQ(plain.counters["ports"]["outside"]["dropped"].get<std::uint64_t>(), 3u);
}

// An MTU whose mbufs do not fit in the memory given stops moatd before it forwards anything,
// saying why (a port that cannot take an MTU: tests/e2e/link_state.py, dataplane Mtu tests).
TEST_F(PcapEndToEnd, AnMtuTooLargeForTheMemoryRefusesToStart) {
    write_pcap(path("or.pcap"), {});
    write_pcap(path("ir.pcap"), {});
    // 8191 mbufs of 16 KB do not fit in 64 MB.
    const std::string cfg = write_config(std::string(kPolicy), "mtu = 16000\n");
    std::string text;
    {
        std::ifstream in(cfg);
        text.assign(std::istreambuf_iterator<char>(in), {});
    }
    text.replace(text.find("-m 256"), 6, "-m 64");
    std::ofstream(cfg) << text;
    Moatd moatd({"--config", cfg}, path("moatd.log"));
    ASSERT_TRUE(moatd.started());
    EXPECT_EQ(moatd.wait_exit(60), 1);
    const std::string log = moatd.log();
    EXPECT_NE(log.find("moatd: not starting: cannot create the mbuf pool"), std::string::npos) << log;
    EXPECT_NE(log.find("a large mtu needs more memory"), std::string::npos) << log;
    EXPECT_EQ(log.find("forwarding"), std::string::npos) << log;
}

}  // namespace
}  // namespace moat::test
