// Two workers on ports without RSS: a real moatd with `workers = 2` between two net_memif client
// ports of two queue pairs each, this test process being the peer (the memif servers). The peer
// chooses each packet's queue, so the test knows which worker must see it: both workers receive,
// each exactly what was put on its queue; verdicts hold on both (blocked frames are counted as
// policy drops and never come out); moatd says at start-up that the peer chooses; and the
// fragments of one datagram split over the two queues fail closed (the later one is `no_first`
// on the worker that never saw the first).
#include <gtest/gtest.h>
#include <rte_dev.h>
#include <rte_ethdev.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "tests/common/eal_env.h"
#include "tests/common/lcores.h"
#include "tests/common/moatd_runner.h"

namespace moat::test {
namespace {

namespace fs = std::filesystem;

constexpr std::uint16_t kQueues = 2;

constexpr const char* kPolicy = R"(me = 198.18.0.10
assign = Servers

[filterlist DNS]
filter = *+198.18.0.10:53:UDP

[filterlist Web]
filter = *+198.18.0.10:80:TCP

[filterlist All inbound traffic]
filter = *+0

[policy Servers]
rule = DNS -> permit
rule = Web -> permit
rule = All inbound traffic -> block
)";

/// A memif server port of this process (moatd is the client), with kQueues queue pairs.
class MemifPeer {
public:
    MemifPeer(const std::string& name, const std::string& socket) : name_(name) {
        const std::string args = name + ",role=server,socket=" + socket + ",id=0";
        if (rte_dev_probe(args.c_str()) != 0 || rte_eth_dev_get_port_by_name(name.c_str(), &port_) != 0) {
            why_ = "cannot create " + args;
            return;
        }
        probed_ = true;
        rte_eth_conf conf{};
        if (rte_eth_dev_configure(port_, kQueues, kQueues, &conf) != 0) {
            why_ = "cannot configure " + name;
            return;
        }
        for (std::uint16_t q = 0; q < kQueues; ++q)
            if (rte_eth_rx_queue_setup(port_, q, 256, SOCKET_ID_ANY, nullptr, EalEnvironment::pool()) != 0 ||
                rte_eth_tx_queue_setup(port_, q, 256, SOCKET_ID_ANY, nullptr) != 0) {
                why_ = "cannot set up the queues of " + name;
                return;
            }
        if (rte_eth_dev_start(port_) != 0) {
            why_ = "cannot start " + name;
            return;
        }
        started_ = true;
    }
    ~MemifPeer() {
        if (started_)
            rte_eth_dev_stop(port_);
        rte_eth_dev_info info{};
        if (probed_ && rte_eth_dev_info_get(port_, &info) == 0 && info.device)
            rte_dev_remove(info.device);  // closes the port and the listening socket
    }
    MemifPeer(const MemifPeer&) = delete;
    MemifPeer& operator=(const MemifPeer&) = delete;

    const std::string& why() const { return why_; }
    bool up() const {
        rte_eth_link link{};
        return started_ && rte_eth_link_get_nowait(port_, &link) == 0 && link.link_status;
    }
    /// Puts `frames` on tx queue `q` (the peer's choice of worker); true when the ring took all.
    bool send(std::uint16_t q, const std::vector<Bytes>& frames) {
        for (const Bytes& f : frames) {
            rte_mbuf* m = mbuf(f);
            if (!m)
                return false;
            if (rte_eth_tx_burst(port_, q, &m, 1) != 1) {
                rte_pktmbuf_free(m);
                return false;
            }
        }
        return true;
    }
    /// Everything waiting on rx queue `q`, appended to `out`.
    void receive(std::uint16_t q, std::vector<Bytes>& out) {
        rte_mbuf* m[32];
        for (std::uint16_t n; (n = rte_eth_rx_burst(port_, q, m, 32)) > 0;)
            for (std::uint16_t i = 0; i < n; ++i) {
                out.push_back(bytes_of(m[i]));
                rte_pktmbuf_free(m[i]);
            }
    }

private:
    std::string name_;
    std::uint16_t port_ = 0;
    bool probed_ = false, started_ = false;
    std::string why_;
};

Bytes udp(const std::string& src, std::uint16_t dport, const std::string& payload) {
    Pkt p;
    p.src = src;
    p.proto = 17;
    p.sport = 40000;
    p.dport = dport;
    p.payload = payload;
    return frame(p);
}

/// IPv4 fragment of the TCP segment `whole` (to port 80, permitted): bytes [begin, end) of its
/// IP payload, with the more-fragments flag unless it reaches the end.
Bytes fragment(const Pkt& whole, std::uint16_t id, std::uint32_t begin, std::uint32_t end) {
    const Built b = build(whole);
    const Bytes part(b.bytes.begin() + static_cast<std::ptrdiff_t>(b.l3 + 20), b.bytes.end());
    Pkt f = whole;
    f.no_l4 = true;
    f.payload.assign(part.begin() + begin, part.begin() + end);
    f.id = id;
    f.frag = static_cast<std::uint16_t>((end < part.size() ? 0x2000 : 0) | begin / 8);
    return frame(f);
}

std::uint64_t at(const nlohmann::json& j, const std::string& pointer) {
    const nlohmann::json::json_pointer p(pointer);
    return j.contains(p) && j.at(p).is_number_unsigned() ? j.at(p).get<std::uint64_t>() : 0;
}

TEST(MultiWorker, PeerChosenQueuesReachTheirWorkersAndVerdictsHold) {
    // Short: the socket paths go into the config's port lines (198 characters at most).
    const fs::path dir = fs::temp_directory_path() / ("mw." + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string out_sock = (dir / "o.sock").string(), in_sock = (dir / "i.sock").string();

    // The servers first: a memif client that finds no server does not retry soon.
    MemifPeer outside("net_memif10", out_sock), inside("net_memif11", in_sock);
    ASSERT_EQ(outside.why(), "");
    ASSERT_EQ(inside.why(), "");

    const std::string cfg = (dir / "moat.ini").string();
    std::ofstream(cfg) << "[appliance]\n"
                       << "outside = net_memif0,role=client,socket=" << out_sock << ",id=0\n"
                       << "inside = net_memif1,role=client,socket=" << in_sock << ",id=0\n"
                       << "workers = 2\n"
                       << "eal = --no-huge -m 512 --no-pci " << lcores_option(2) << " --file-prefix moat-mw-" << getpid()
                       << "\ncontrol = " << (dir / "moat.sock").string() << "\n"
                       << kPolicy;
    Moatd moatd({"--config", cfg, "--stats-period", "0.1"}, (dir / "moatd.log").string());
    ASSERT_TRUE(moatd.started());

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(scaled_seconds(60));
    while (!(outside.up() && inside.up()) && std::chrono::steady_clock::now() < deadline)
        if (moatd.wait_exit(0.02) != -1)  // moatd gave up (its log says why): no point waiting
            break;
    ASSERT_TRUE(outside.up() && inside.up()) << "moatd's memif clients never connected; its log:\n" << moatd.log();
    // A first stats line: moatd is forwarding (its workers run) before anything is sent.
    ASSERT_TRUE(moatd.wait_stats([](const nlohmann::json&) { return true; }, 60).has_value()) << moatd.log();

    // Per queue: permitted DNS and blocked frames (port 22), each tagged with its queue; then a
    // datagram whose two fragments go on one queue (both pass) and one split over the queues
    // (its first passes on queue 0; its later fragment reaches worker 1, which never saw the
    // first, and is dropped as no_first: fail closed).
    constexpr int kEach = 50;
    std::array<std::vector<Bytes>, kQueues> send, permitted;
    for (std::uint16_t q = 0; q < kQueues; ++q)
        for (int i = 0; i < kEach; ++i) {
            const std::string tag = "q" + std::to_string(q) + "-" + std::to_string(i);
            const std::string src = "198.18." + std::to_string(100 + q) + "." + std::to_string(1 + i);
            permitted[q].push_back(udp(src, 53, "permit " + tag));
            send[q].push_back(permitted[q].back());
            send[q].push_back(udp(src, 22, "block " + tag));
        }
    Pkt web;  // 198.18.100.1:40000 -> 198.18.0.10:80 TCP, 40 bytes of IP payload
    web.payload = std::string(20, 'w');
    const Bytes whole_first = fragment(web, 7, 0, 24), whole_last = fragment(web, 7, 24, 40);
    const Bytes split_first = fragment(web, 8, 0, 24), split_last = fragment(web, 8, 24, 40);
    send[0].insert(send[0].end(), {whole_first, whole_last, split_first});
    permitted[0].insert(permitted[0].end(), {whole_first, whole_last, split_first});
    ASSERT_TRUE(outside.send(0, send[0]));
    // The later fragment after the first has been judged (worker 0's table has it, worker 1's never will).
    ASSERT_TRUE(moatd.wait_stats([&](const nlohmann::json& s) { return at(s, "/workers/0/rx_packets") == send[0].size(); }, 60))
        << moatd.log();
    send[1].push_back(split_last);
    ASSERT_TRUE(outside.send(1, send[1]));

    const auto done = [&](const nlohmann::json& s) {
        return at(s, "/workers/0/rx_packets") == send[0].size() && at(s, "/workers/1/rx_packets") == send[1].size();
    };
    const auto last = moatd.wait_stats(done, 60);
    ASSERT_TRUE(last && done(*last)) << (last ? last->dump() : "no stats") << "\n" << moatd.log();

    // What came out of the inside port, per queue: exactly the permitted frames of that worker.
    std::array<std::vector<Bytes>, kQueues> got;
    const auto all_out = [&] { return got[0].size() >= permitted[0].size() && got[1].size() >= permitted[1].size(); };
    const auto out_deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(scaled_seconds(10));
    while (!all_out() && std::chrono::steady_clock::now() < out_deadline) {
        for (std::uint16_t q = 0; q < kQueues; ++q)
            inside.receive(q, got[q]);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // anything more that would come out
    for (std::uint16_t q = 0; q < kQueues; ++q)
        inside.receive(q, got[q]);
    EXPECT_EQ(moatd.stop(), 0);
    const std::string log = moatd.log();
    for (std::uint16_t q = 0; q < kQueues; ++q)
        EXPECT_EQ(got[q], permitted[q]) << "inside queue " << q << " (worker " << q << ")";

    // Both workers received, each exactly what its queue was given, and dropped what is blocked.
    const nlohmann::json& s = *last;
    ASSERT_EQ(s["workers"].size(), 2u) << log;
    for (std::uint16_t q = 0; q < kQueues; ++q) {
        const std::string w = "/workers/" + std::to_string(q);
        EXPECT_EQ(at(s, w + "/rx_packets"), send[q].size()) << "worker " << q;
        EXPECT_EQ(at(s, w + "/tx_packets"), permitted[q].size()) << "worker " << q;
        EXPECT_EQ(at(s, w + "/dropped"), send[q].size() - permitted[q].size()) << "worker " << q;
    }
    EXPECT_EQ(at(s, "/drops/policy"), 2u * kEach);
    EXPECT_EQ(at(s, "/drops/fragment"), 1u);
    EXPECT_EQ(at(s, "/fragments/dropped/no_first"), 1u);
    EXPECT_EQ(at(s, "/fragments/passed"), 3u);
    EXPECT_EQ(at(s, "/ports/inside/tx_packets"), permitted[0].size() + permitted[1].size());

    EXPECT_NE(log.find("no RSS, so the peer chooses which of its 2 rx queues, and so which worker, each packet reaches"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("(no_first: fail closed)"), std::string::npos) << log;
    EXPECT_EQ(log.find("running 1 worker"), std::string::npos) << log;
    EXPECT_NE(log.find("worker 1 on lcore 2: rx/tx queue 1 of both ports"), std::string::npos) << log;
    if (!::testing::Test::HasFailure())
        fs::remove_all(dir);
}

TEST(MultiWorker, AMemifServerPortRunsOneWorker) {
    // moatd as the memif server: a client connecting with fewer queue pairs than workers leaves
    // the server's other queues unset, and DPDK reads them as the client's first ring (seen with
    // a 1-queue testpmd client: two workers drained one ring and forwarded 31 M packets of 20 M
    // sent). So one worker, whatever the peer, before any peer is there.
    const fs::path dir = fs::temp_directory_path() / ("mws." + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string cfg = (dir / "moat.ini").string();
    std::ofstream(cfg) << "[appliance]\n"
                       << "outside = net_memif0,role=server,socket=" << (dir / "o.sock").string() << ",id=0\n"
                       << "inside = net_memif1,role=server,socket=" << (dir / "i.sock").string() << ",id=0\n"
                       << "workers = 2\n"
                       << "eal = --no-huge -m 512 --no-pci " << lcores_option(2) << " --file-prefix moat-mws-" << getpid()
                       << "\ncontrol = " << (dir / "moat.sock").string() << "\n"
                       << kPolicy;
    Moatd moatd({"--config", cfg, "--stats-period", "0.1"}, (dir / "moatd.log").string());
    ASSERT_TRUE(moatd.started());
    const auto s = moatd.wait_stats([](const nlohmann::json&) { return true; }, 60);
    EXPECT_EQ(moatd.stop(), 0);
    const std::string log = moatd.log();
    ASSERT_TRUE(s.has_value()) << log;
    EXPECT_EQ((*s)["workers"].size(), 1u) << log;
    EXPECT_NE(log.find("it is a memif server"), std::string::npos) << log;
    EXPECT_NE(log.find("running 1 worker, not 2"), std::string::npos) << log;
    if (!::testing::Test::HasFailure())
        fs::remove_all(dir);
}

}  // namespace
}  // namespace moat::test
