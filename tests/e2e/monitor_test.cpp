// The drop trace end to end (`moatctl monitor`, `{"cmd":"monitor",...}`): a real moatd on pcap
// ports whose outside port reads a FIFO, so that the test sends its frames after a monitor has
// attached. Each record is checked against the frame sent and against moatd's counters; then
// sampling, --filter, the limit on monitors, garbage requests, a monitor that never reads under a
// flood (nothing stalls, the losses are counted and told), and one that vanishes.
//
// net_pcap reads a burst of 32 frames from the FIFO before it hands them over (it blocks in
// libpcap until they are there), so every step sends a multiple of 32 frames.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "tests/common/command.h"
#include "tests/common/lcores.h"
#include "tests/common/moatd_runner.h"
#include "tests/common/packets.h"
#include "tests/common/pcap_io.h"
#include "tests/common/time_scale.h"
#include "tests/common/unix_socket.h"

namespace moat::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using json = nlohmann::json;

// Line numbers below are those of this text.
const std::string kPolicy =
    "me = 198.18.0.10\n"             // 7
    "assign = Servers\n"             // 8
    "[filterlist Web]\n"             // 9
    "filter = *+198.18.0.10:80:TCP\n"  // 10
    "[filterlist Blocked]\n"         // 11
    "filter = *+198.18.0.10:23:TCP\n"  // 12
    "[filterlist Ping]\n"            // 13
    "filter = *+198.18.0.10::ICMP:8\n"  // 14
    "[policy Servers]\n"             // 15
    "rule = Web -> permit\n"         // 16
    "rule = Blocked -> block\n"      // 17
    "rule = Ping -> block\n";        // 18

/// Lines of a stream, one at a time, each within a deadline.
class LineReader {
public:
    explicit LineReader(int fd) : fd_(fd) {}
    std::optional<std::string> next(std::chrono::milliseconds timeout = 20s) {
        const auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
        for (;;) {
            if (const auto nl = buf_.find('\n'); nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return line;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                return std::nullopt;
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 100))) <= 0)
                continue;
            char chunk[64 * 1024];
            const ssize_t n = read(fd_, chunk, sizeof chunk);
            if (n <= 0)
                return std::nullopt;
            buf_.append(chunk, static_cast<std::size_t>(n));
        }
    }
    std::optional<json> next_json(std::chrono::milliseconds timeout = 20s) {
        const auto line = next(timeout);
        if (!line)
            return std::nullopt;
        json j = json::parse(*line, nullptr, false);
        if (j.is_discarded())
            return std::nullopt;
        return j;
    }

private:
    int fd_;
    std::string buf_;
};

/// A monitor over the raw socket protocol.
struct Monitor {
    int fd = -1;
    std::optional<LineReader> lines;
    json ack;
    ~Monitor() {
        if (fd >= 0)
            close(fd);
    }
};

class MonitorE2E : public ::testing::Test {
protected:
    void SetUp() override {
        static int n = 0;
        dir_ = fs::temp_directory_path() / ("mm." + std::to_string(getpid()) + "." + std::to_string(n++));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        signal(SIGPIPE, SIG_IGN);
    }
    void TearDown() override {
        stop();
        if (!HasFailure())
            fs::remove_all(dir_);
        else
            std::cerr << "kept " << dir_ << " for inspection\n";
    }

    std::string path(const std::string& f) const { return (dir_ / f).string(); }
    std::string sock() const { return path("moat.sock"); }

    /// Starts moatd with the outside port reading a FIFO the test writes (or, when `outside` is
    /// given, a file of those frames: the worker then polls freely once it has read them); false
    /// when it does not come up (with the reason recorded as a failure).
    bool start(const std::string& extra_appliance = "", const std::string& policy = kPolicy,
               const std::vector<Bytes>* outside = nullptr) {
        const std::string cfg = path("moat.ini");
        std::ofstream(cfg) << "[appliance]\n"                                                                    // 1
                           << "outside = net_pcap0,rx_pcap=" << path("or.pcap") << ",tx_pcap=" << path("ot.pcap")  // 2
                           << "\ninside = net_pcap1,rx_pcap=" << path("ir.pcap") << ",tx_pcap=" << path("it.pcap")  // 3
                           << "\neal = --no-huge -m 256 " << lcores_option() << " --file-prefix moat-mon-" << getpid()  // 4
                           << "\ncontrol = " << sock() << "\n"                                                    // 5
                           << "control_readonly = " << path("ro.sock") << "\n"                                    // 6
                           << policy << extra_appliance;
        if (outside) {
            write_pcap(path("or.pcap"), *outside);
        } else if (mkfifo(path("or.pcap").c_str(), 0600) != 0) {
            ADD_FAILURE() << "mkfifo: " << std::strerror(errno);
            return false;
        }
        write_pcap(path("ir.pcap"), {});
        moatd_.emplace(std::vector<std::string>{"--config", cfg, "--stats-period", "0.1"}, path("moatd.log"));
        if (!moatd_->started()) {
            ADD_FAILURE() << "moatd did not start";
            return false;
        }
        const auto deadline = std::chrono::steady_clock::now() + scaled(60s);
        if (outside)
            return answers(deadline);
        // moatd opens the FIFO while it probes the port: until then there is no reader.
        while ((fifo_ = open(path("or.pcap").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
            if (std::chrono::steady_clock::now() > deadline || moatd_->wait_exit(0) != -1) {
                ADD_FAILURE() << "moatd never opened its outside port's FIFO; its log:\n" << moatd_->log();
                return false;
            }
            std::this_thread::sleep_for(10ms);
        }
        fcntl(fifo_, F_SETFL, fcntl(fifo_, F_GETFL) & ~O_NONBLOCK);
        // The pcap file header (libpcap's, microsecond time stamps, Ethernet).
        const std::uint32_t head[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
        if (!write_all(head, sizeof head))
            return false;
        return answers(deadline);
    }

    /// Waits for moatd's control socket to answer.
    bool answers(std::chrono::steady_clock::time_point deadline) {
        while (!ask({{"cmd", "status"}}).value("ok", false)) {
            if (std::chrono::steady_clock::now() > deadline || moatd_->wait_exit(0) != -1) {
                ADD_FAILURE() << "moatd's control socket does not answer; its log:\n" << moatd_->log();
                return false;
            }
            std::this_thread::sleep_for(50ms);
        }
        return true;
    }

    bool write_all(const void* p, std::size_t n) {
        const auto* b = static_cast<const char*>(p);
        while (n > 0) {
            const ssize_t w = write(fifo_, b, n);
            if (w <= 0) {
                ADD_FAILURE() << "writing the FIFO: " << std::strerror(errno);
                return false;
            }
            b += w;
            n -= static_cast<std::size_t>(w);
        }
        return true;
    }

    /// Sends `frames` to the outside port (a multiple of 32: see the top of the file).
    bool feed(const std::vector<Bytes>& frames) {
        EXPECT_EQ(frames.size() % 32, 0u) << "net_pcap hands over a FIFO's frames 32 at a time";
        std::string out;
        for (const Bytes& f : frames) {
            const std::uint32_t h[4] = {1'700'000'000, 0, static_cast<std::uint32_t>(f.size()), static_cast<std::uint32_t>(f.size())};
            out.append(reinterpret_cast<const char*>(h), sizeof h);
            out.append(reinterpret_cast<const char*>(f.data()), f.size());
        }
        return write_all(out.data(), out.size());
    }

    void stop() {
        if (fifo_ >= 0)
            close(fifo_);  // the worker's read of it ends
        fifo_ = -1;
        if (moatd_) {
            const int status = moatd_->stop();
            EXPECT_EQ(status, 0) << moatd_->log();
            moatd_.reset();
        }
    }

    json ask(const json& req, const std::string& socket_path = "") {
        const int fd = dial(socket_path.empty() ? sock() : socket_path);
        if (fd < 0)
            return json::object();
        send_bytes(fd, req.dump() + "\n");
        const std::string r = read_reply(fd, 20s);
        close(fd);
        json j = json::parse(r, nullptr, false);
        return j.is_discarded() ? json::object() : j;
    }

    /// Attaches a monitor; its first line is in `ack`.
    std::unique_ptr<Monitor> attach(const json& req, const std::string& socket_path = "") {
        auto m = std::make_unique<Monitor>();
        m->fd = dial(socket_path.empty() ? sock() : socket_path);
        if (m->fd < 0)
            return m;
        m->lines.emplace(m->fd);
        send_bytes(m->fd, req.dump() + "\n");
        m->ack = m->lines->next_json().value_or(json::object());
        return m;
    }

    /// The stats once `rx` packets have been received on the outside port.
    json stats_after(std::uint64_t rx) {
        const auto deadline = std::chrono::steady_clock::now() + scaled(60s);
        json s;
        while (std::chrono::steady_clock::now() < deadline) {
            s = ask({{"cmd", "stats"}, {"format", "json"}});
            if (s.contains("ports") && s["ports"]["outside"]["rx_packets"] == rx)
                return s;
            std::this_thread::sleep_for(20ms);
        }
        ADD_FAILURE() << "moatd did not receive " << rx << " packets; last stats " << s.dump();
        return s;
    }

    /// SSH packets (dropped) from source ports 1024 + i: 6,144 of them, more than a worker's
    /// monitor ring holds.
    static std::vector<Bytes> ring_overflow_of_drops() {
        std::vector<Bytes> drops;
        for (int i = 0; i < 6 * 1024; ++i) {
            Pkt p;
            p.sport = static_cast<std::uint16_t>(1024 + i);
            p.dport = 23;
            drops.push_back(frame(p));
        }
        return drops;
    }

    /// Sends `drops` and checks that moatd dropped them all and no worker recorded a monitor
    /// loss: were a worker still sampling with nobody draining, its ring would fill.
    void expect_no_sampling(const std::vector<Bytes>& drops) {
        ASSERT_TRUE(feed(drops));
        const json s = stats_after(drops.size());
        EXPECT_EQ(s["drops"]["policy"], drops.size());
        EXPECT_EQ(s["workers"][0]["monitor_lost"], 0) << "the workers still sample with no monitor attached";
    }

    /// Waits for the `n`th "monitor attached" line of moatd's log.
    bool attached_in_log(std::size_t n) {
        const auto deadline = std::chrono::steady_clock::now() + scaled(30s);
        while (std::chrono::steady_clock::now() < deadline) {
            const std::string log = moatd_->log();
            std::size_t count = 0;
            for (std::size_t at = 0; (at = log.find("monitor attached", at)) != std::string::npos; ++at)
                ++count;
            if (count >= n)
                return true;
            std::this_thread::sleep_for(20ms);
        }
        return false;
    }

    fs::path dir_;
    std::optional<Moatd> moatd_;
    int fifo_ = -1;
};

/// A frame and what its record must say.
struct Expected {
    Bytes frame;
    std::string verdict, reason;  ///< reason empty: permitted
    std::string filterlist;       ///< empty: no filter decided
    int line = 0;
    std::vector<int> vlan;
    std::string proto, src, dst;
    int sport = -1, dport = -1, icmp_type = -1, icmp_code = -1;
};

std::vector<Expected> mixed_frames() {
    std::vector<Expected> out;
    for (int i = 0; i < 32; ++i) {
        Pkt p;
        p.src = "198.18.100." + std::to_string(i + 1);
        p.sport = static_cast<std::uint16_t>(40000 + i);
        Expected e;
        e.src = p.src;
        e.dst = "198.18.0.10";
        switch (i % 8) {
        case 0:  // web, permitted
        case 1:
            e = {frame(p), "permit", "", "Web", 10, {}, "TCP", p.src, "198.18.0.10", p.sport, 80};
            break;
        case 2:  // web in VLAN 100, permitted
            p.vlans = {0x8100};
            p.vid = 100;
            e = {frame(p), "permit", "", "Web", 10, {100}, "TCP", p.src, "198.18.0.10", p.sport, 80};
            break;
        case 3:  // telnet: the Blocked filter
            p.dport = 23;
            e = {frame(p), "drop", "policy", "Blocked", 12, {}, "TCP", p.src, "198.18.0.10", p.sport, 23};
            break;
        case 4:  // telnet in Q-in-Q 100.200... one tag id for both: 300.300
            p.dport = 23;
            p.vlans = {0x88a8, 0x8100};
            p.vid = 300;
            e = {frame(p), "drop", "policy", "Blocked", 12, {300, 300}, "TCP", p.src, "198.18.0.10", p.sport, 23};
            break;
        case 5:  // DNS: no filter, default deny
            p.proto = 17;
            p.dport = 53;
            e = {frame(p), "drop", "no_match", "", 0, {}, "UDP", p.src, "198.18.0.10", p.sport, 53};
            break;
        case 6: {  // ping: the Ping filter (ICMP type 8)
            p.proto = 1;
            p.icmp_type = 8;
            p.icmp_code = 0;
            e = {frame(p), "drop", "policy", "Ping", 14, {}, "ICMP", p.src, "198.18.0.10"};
            e.icmp_type = 8;
            e.icmp_code = 0;
            break;
        }
        case 7: {  // a TCP frame cut in its IP header: malformed
            Bytes f = frame(p);
            f.resize(14 + 12);
            e = {f, "drop", "malformed", "", 0, {}, "", "", ""};
            break;
        }
        }
        out.push_back(std::move(e));
    }
    return out;
}

TEST_F(MonitorE2E, EveryRecordMatchesItsFrameAndTheCounters) {
    ASSERT_TRUE(start());
    auto m = attach({{"cmd", "monitor"}, {"mode", "all"}});
    ASSERT_EQ(m->ack.value("ok", false), true) << m->ack.dump();
    EXPECT_EQ(m->ack["monitor"]["mode"], "all");
    EXPECT_EQ(m->ack["monitor"]["sample"], 1);
    EXPECT_EQ(m->ack["generation"], 1);
    const auto exp = mixed_frames();
    std::vector<Bytes> frames;
    for (const auto& e : exp)
        frames.push_back(e.frame);
    ASSERT_TRUE(feed(frames));
    std::map<std::string, std::uint64_t> reasons;
    std::map<std::string, std::uint64_t> hits;
    for (std::size_t i = 0; i < exp.size(); ++i) {
        const auto j = m->lines->next_json();
        ASSERT_TRUE(j) << "record " << i << " did not come; stats " << ask({{"cmd", "stats"}, {"format", "json"}}).dump();
        const Expected& e = exp[i];
        SCOPED_TRACE("record " + std::to_string(i) + ": " + j->dump());
        EXPECT_EQ((*j)["port"], "outside");
        EXPECT_EQ((*j)["worker"], 0);
        EXPECT_EQ((*j)["length"], e.frame.size());
        EXPECT_EQ((*j)["verdict"], e.verdict);
        EXPECT_EQ((*j)["generation"], 1);
        EXPECT_EQ((*j)["vlan"], json(e.vlan));
        EXPECT_EQ((*j)["seq"], i);  // every packet, numbered from the first after attaching
        EXPECT_TRUE((*j)["time"].is_string());
        if (e.reason.empty()) {
            EXPECT_TRUE((*j)["reason"].is_null());
        } else {
            EXPECT_EQ((*j)["reason"], e.reason);
            ++reasons[e.reason];
        }
        if (e.filterlist.empty()) {
            EXPECT_TRUE((*j)["filter"].is_null());
            EXPECT_TRUE((*j)["rank"].is_null());
        } else {
            EXPECT_EQ((*j)["filterlist"], e.filterlist);
            EXPECT_EQ((*j)["line"], e.line);
            EXPECT_EQ((*j)["action"], e.verdict == "permit" ? "permit" : "block");
            ++hits[e.filterlist];
        }
        if (e.proto.empty()) {  // the parser could not read it: no addresses
            EXPECT_FALSE(j->contains("src"));
            EXPECT_EQ((*j)["ethertype"], "0x0800");
            continue;
        }
        EXPECT_EQ((*j)["proto"], e.proto);
        EXPECT_EQ((*j)["src"], e.src);
        EXPECT_EQ((*j)["dst"], e.dst);
        if (e.sport >= 0) {
            EXPECT_EQ((*j)["sport"], e.sport);
            EXPECT_EQ((*j)["dport"], e.dport);
        } else {
            EXPECT_FALSE(j->contains("sport"));
            EXPECT_EQ((*j)["icmp_type"], e.icmp_type);
            EXPECT_EQ((*j)["icmp_code"], e.icmp_code);
        }
        // The packet as `moatctl explain` takes it: moatd's explain names the same filter.
        const json x = ask({{"cmd", "explain"}, {"packet", (*j)["packet"]}});
        EXPECT_EQ(x["filterlist"], (*j)["filterlist"]) << x.dump();
        EXPECT_EQ(x["line"], (*j)["line"]);
        EXPECT_EQ(x["filter"], (*j)["filter"]);
    }
    // Against moatd's own counters, exactly.
    const json s = stats_after(exp.size());
    for (const auto& [reason, n] : reasons)
        EXPECT_EQ(s["drops"][reason], n) << reason;
    EXPECT_EQ(s["drops"]["policy"].get<std::uint64_t>() + s["drops"]["no_match"].get<std::uint64_t>() +
                  s["drops"]["malformed"].get<std::uint64_t>(),
              reasons["policy"] + reasons["no_match"] + reasons["malformed"]);
    for (const auto& f : s["filters"]) {
        const std::string list = f["filterlist"];
        EXPECT_EQ(f["packets"], hits[list]) << list;
    }
    EXPECT_EQ(s["workers"][0]["monitor_lost"], 0);
    // Nothing more: one record per packet.
    EXPECT_FALSE(m->lines->next(300ms));
}

/// 64 frames: 32 telnet (Blocked) and 32 web (permitted), alternating.
std::vector<Bytes> blocked_and_web() {
    std::vector<Bytes> out;
    for (int i = 0; i < 64; ++i) {
        Pkt p;
        p.sport = static_cast<std::uint16_t>(10000 + i);
        p.dport = i % 2 == 0 ? 23 : 80;
        out.push_back(frame(p));
    }
    return out;
}

TEST_F(MonitorE2E, SampleTakesEveryNthAndFilterSelectsByList) {
    ASSERT_TRUE(start());
    auto drops4 = attach({{"cmd", "monitor"}, {"sample", 4}});
    auto web = attach({{"cmd", "monitor"}, {"mode", "all"}, {"filter", "Web"}});
    auto all3 = attach({{"cmd", "monitor"}, {"mode", "all"}, {"sample", 3}});
    for (auto* m : {drops4.get(), web.get(), all3.get()})
        ASSERT_EQ(m->ack.value("ok", false), true) << m->ack.dump();
    ASSERT_TRUE(feed(blocked_and_web()));
    // Every 4th of the 32 drops: 8 records, drops 0, 4, ..., 28 (frames 0, 8, ..., 56).
    for (int k = 0; k < 8; ++k) {
        const auto j = drops4->lines->next_json();
        ASSERT_TRUE(j) << k;
        EXPECT_EQ((*j)["drop_seq"], 4 * k);
        EXPECT_EQ((*j)["seq"], 8 * k);
        EXPECT_EQ((*j)["sport"], 10000 + 8 * k);
        EXPECT_EQ((*j)["filterlist"], "Blocked");
    }
    // Every packet Web decided: the 32 permitted ones, in order.
    for (int k = 0; k < 32; ++k) {
        const auto j = web->lines->next_json();
        ASSERT_TRUE(j) << k;
        EXPECT_EQ((*j)["filterlist"], "Web");
        EXPECT_EQ((*j)["sport"], 10000 + 2 * k + 1);
    }
    // Every 3rd of the 64 packets: 0, 3, ..., 63: 22 records.
    for (int k = 0; k < 22; ++k) {
        const auto j = all3->lines->next_json();
        ASSERT_TRUE(j) << k;
        EXPECT_EQ((*j)["seq"], 3 * k);
        EXPECT_EQ((*j)["sport"], 10000 + 3 * k);
    }
    for (auto* m : {drops4.get(), web.get(), all3.get()})
        EXPECT_FALSE(m->lines->next(300ms));
    stats_after(64);
}

TEST_F(MonitorE2E, MoatctlPrintsTextAndJsonAndStopsAfterCount) {
    ASSERT_TRUE(start());
    const char* moatctl = std::getenv("MOATCTL");
    ASSERT_NE(moatctl, nullptr);
    Result text, js;
    std::thread a([&] { text = run_command({moatctl, "monitor", "--socket", sock(), "--count", "3", "--filter", "Blocked"}); });
    std::thread b([&] {
        js = run_command({moatctl, "monitor", "--socket", path("ro.sock"), "--drops", "--sample", "2", "--json", "--count", "5"});
    });
    const bool up = attached_in_log(2);
    ASSERT_TRUE(up) << moatd_->log();
    ASSERT_TRUE(feed(blocked_and_web()));
    a.join();
    b.join();
    EXPECT_EQ(text.status, 0) << text.err;
    EXPECT_NE(text.err.find("monitoring dropped packets, decided by filter list 'Blocked'"), std::string::npos) << text.err;
    std::istringstream lines(text.out);
    int n = 0;
    for (std::string l; std::getline(lines, l); ++n) {
        EXPECT_NE(l.find(" drop policy  TCP 198.18.100.1:" + std::to_string(10000 + 2 * n) + " -> 198.18.0.10:23 on outside"),
                  std::string::npos)
            << l;
        EXPECT_NE(l.find("gen 1 line 12: *+198.18.0.10:23:TCP (Blocked)"), std::string::npos) << l;
    }
    EXPECT_EQ(n, 3);
    EXPECT_EQ(js.status, 0) << js.err;
    std::istringstream jl(js.out);
    n = 0;
    for (std::string l; std::getline(jl, l); ++n) {
        const json j = json::parse(l, nullptr, false);
        ASSERT_FALSE(j.is_discarded()) << l;
        EXPECT_EQ(j["drop_seq"], 2 * n);  // the read-only socket serves monitors too
        EXPECT_EQ(j["reason"], "policy");
    }
    EXPECT_EQ(n, 5);
    // A refusal is an error message and exit status 1, a usage error 2.
    const Result bad = run_command({moatctl, "monitor", "--socket", sock(), "--filter", "No such list"});
    EXPECT_EQ(bad.status, 1);
    EXPECT_NE(bad.err.find("has no filter list"), std::string::npos) << bad.err;
    EXPECT_EQ(run_command({moatctl, "monitor", "--socket", sock(), "--sample", "0"}).status, 2);
    EXPECT_EQ(run_command({moatctl, "monitor", "--socket", sock(), "--sample", "-3"}).status, 2);
}

TEST_F(MonitorE2E, GarbageRequestsAreRefusedAndTheLimitHolds) {
    ASSERT_TRUE(start());
    for (const json& bad : {json{{"cmd", "monitor"}, {"sample", 0}}, json{{"cmd", "monitor"}, {"sample", -1}},
                            json{{"cmd", "monitor"}, {"sample", 1ll << 40}}, json{{"cmd", "monitor"}, {"sample", "2"}},
                            json{{"cmd", "monitor"}, {"mode", "everything"}}, json{{"cmd", "monitor"}, {"filter", 7}},
                            json{{"cmd", "monitor"}, {"filter", "Nope"}}}) {
        const json r = ask(bad);
        EXPECT_EQ(r.value("ok", true), false) << bad.dump() << " -> " << r.dump();
        EXPECT_FALSE(r.value("errors", json::array()).empty());
    }
    std::vector<std::unique_ptr<Monitor>> ms;
    for (int i = 0; i < 4; ++i) {
        ms.push_back(attach({{"cmd", "monitor"}}, i % 2 ? path("ro.sock") : ""));
        ASSERT_EQ(ms.back()->ack.value("ok", false), true) << ms.back()->ack.dump();
    }
    const json fifth = ask({{"cmd", "monitor"}});
    EXPECT_EQ(fifth.value("ok", true), false);
    EXPECT_NE(fifth.dump().find("4 monitors are attached already"), std::string::npos) << fifth.dump();
    // One vanishes abruptly (a reset, with its request's reply unread): its place frees.
    linger l{1, 0};
    setsockopt(ms[0]->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(ms[0]->fd);
    ms[0]->fd = -1;
    const auto deadline = std::chrono::steady_clock::now() + scaled(20s);
    std::unique_ptr<Monitor> again;
    do {
        again = attach({{"cmd", "monitor"}});
    } while (again->ack.value("ok", false) != true && std::chrono::steady_clock::now() < deadline &&
             (std::this_thread::sleep_for(20ms), true));
    EXPECT_EQ(again->ack.value("ok", false), true) << again->ack.dump();
    // The monitors still get their lines, and the other commands are answered.
    std::vector<Bytes> drops;
    for (int i = 0; i < 32; ++i) {
        Pkt p;
        p.dport = 23;
        drops.push_back(frame(p));
    }
    ASSERT_TRUE(feed(drops));
    for (auto* m : {ms[1].get(), ms[2].get(), ms[3].get(), again.get()})
        for (int i = 0; i < 32; ++i)
            ASSERT_TRUE(m->lines->next_json()) << i;
    EXPECT_EQ(ask({{"cmd", "status"}}).value("ok", false), true);
    stats_after(32);
}

TEST_F(MonitorE2E, TheReadOnlySocketCannotTakeTheLastPlace) {
    // The read-only socket is often mode 0666: any local user could attach every monitor moatd
    // serves, never read, and lock the operator out of `moatctl monitor` for good.
    ASSERT_TRUE(start());
    std::vector<std::unique_ptr<Monitor>> ro;
    for (int i = 0; i < 4; ++i)
        ro.push_back(attach({{"cmd", "monitor"}, {"mode", "all"}}, path("ro.sock")));
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(ro[static_cast<std::size_t>(i)]->ack.value("ok", false), true) << ro[static_cast<std::size_t>(i)]->ack.dump();
    EXPECT_EQ(ro[3]->ack.value("ok", true), false) << ro[3]->ack.dump();
    EXPECT_NE(ro[3]->ack.dump().find("read-only socket"), std::string::npos) << ro[3]->ack.dump();
    auto admin = attach({{"cmd", "monitor"}});
    EXPECT_EQ(admin->ack.value("ok", false), true) << admin->ack.dump();
}

TEST_F(MonitorE2E, WhenTheLastMonitorGoesTheWorkersStopSampling) {
    ASSERT_TRUE(start());
    {
        auto a = attach({{"cmd", "monitor"}, {"mode", "all"}});
        auto b = attach({{"cmd", "monitor"}});
        ASSERT_EQ(a->ack.value("ok", false), true);
        ASSERT_EQ(b->ack.value("ok", false), true);
    }  // both close
    // Round trips after the hang-ups: moatd has seen them (a new request is answered as it is
    // accepted, possibly before the hang-ups of the same turn; the second comes a turn later).
    EXPECT_EQ(ask({{"cmd", "status"}}).value("ok", false), true);
    EXPECT_EQ(ask({{"cmd", "status"}}).value("ok", false), true);
    const std::vector<Bytes> drops = ring_overflow_of_drops();
    ASSERT_NO_FATAL_FAILURE(expect_no_sampling(drops));
    // And a monitor attached now starts afresh: numbered from 0, nothing left over.
    auto c = attach({{"cmd", "monitor"}});
    ASSERT_EQ(c->ack.value("ok", false), true);
    ASSERT_TRUE(feed(std::vector<Bytes>(drops.begin(), drops.begin() + 32)));
    for (int i = 0; i < 32; ++i) {
        const auto j = c->lines->next_json();
        ASSERT_TRUE(j) << i;
        EXPECT_EQ((*j)["drop_seq"], i);
        EXPECT_EQ((*j)["sport"], 1024 + i);
    }
}

TEST_F(MonitorE2E, ARefusedMonitorAfterTheLastOneLeftStillStopsTheSampling) {
    // The last monitor hangs up and, in the same turn of the control loop, a client asks for a
    // monitor that is refused (a filter list the policy lacks). The refusal must not leave the
    // workers sampling for nobody: their rings would fill and every packet after that would cost
    // a failed enqueue and a monitor_lost, for as long as moatd runs.
    ASSERT_TRUE(start());
    auto a = attach({{"cmd", "monitor"}});
    ASSERT_EQ(a->ack.value("ok", false), true) << a->ack.dump();
    const int b = dial(sock());  // connected, its request not sent yet
    ASSERT_GE(b, 0);
    // moatd has accepted b: a status round trip after it is accepted in the same or a later turn.
    EXPECT_EQ(ask({{"cmd", "status"}}).value("ok", false), true);
    // Both events wait for the same turn: a's hang-up first, then b's request.
    moatd_->signal(SIGSTOP);
    close(a->fd);
    a->fd = -1;
    send_bytes(b, json{{"cmd", "monitor"}, {"filter", "Nope"}}.dump() + "\n");
    moatd_->signal(SIGCONT);
    const json refused = json::parse(read_reply(b, 20s), nullptr, false);
    close(b);
    EXPECT_EQ(refused.value("ok", true), false) << refused.dump();
    EXPECT_EQ(ask({{"cmd", "status"}}).value("ok", false), true);
    EXPECT_EQ(ask({{"cmd", "status"}}).value("ok", false), true);
    ASSERT_NO_FATAL_FAILURE(expect_no_sampling(ring_overflow_of_drops()));
}

TEST_F(MonitorE2E, AMonitorThatNeverReadsStallsNothingAndIsToldWhatItLost) {
    ASSERT_TRUE(start());
    auto stuck = attach({{"cmd", "monitor"}, {"mode", "all"}});
    ASSERT_EQ(stuck->ack.value("ok", false), true);
    int small = 4096;  // a small receive buffer: the lines pile up in moatd, where they are bounded
    setsockopt(stuck->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    constexpr std::size_t kFlood = 640 * 32;
    std::vector<Bytes> flood;
    for (std::size_t i = 0; i < kFlood; ++i) {
        Pkt p;
        p.src = "198.18." + std::to_string(100 + i / 250 % 100) + "." + std::to_string(1 + i % 250);
        p.dport = 23;
        flood.push_back(frame(p));
    }
    // In batches the ring holds (so the lines pile up in moatd's buffer for the monitor, not only
    // in the ring), each waited for; meanwhile status and a reload are answered.
    constexpr std::size_t kBatch = 64 * 32;
    static_assert(kBatch <= 4096 && kFlood % kBatch == 0);
    json s;
    for (std::size_t at = 0; at < kFlood; at += kBatch) {
        bool fed = false;
        std::thread writer([&] { fed = feed({flood.begin() + static_cast<std::ptrdiff_t>(at),
                                             flood.begin() + static_cast<std::ptrdiff_t>(at + kBatch)}); });
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_EQ(ask({{"cmd", "status"}}).value("ok", false), true);
        EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(5s));
        if (at == kFlood / 2) {
            std::ofstream(path("moat.ini"), std::ios::app) << "; edited\n";
            const json reload = ask({{"cmd", "reload"}});
            EXPECT_EQ(reload.value("ok", false), true) << reload.dump();
        }
        writer.join();
        ASSERT_TRUE(fed);
        s = stats_after(at + kBatch);
    }
    EXPECT_EQ(s["drops"]["policy"], kFlood);  // the workers went on, every packet counted
    const std::uint64_t ring_lost = s["workers"][0]["monitor_lost"];
    // Now it reads: every packet is a record it gets, a line lost in its buffer or a record lost
    // in the ring, and the lost-lines say how many.
    std::uint64_t records = 0, lost = 0, told_ring_lost = 0, lost_lines = 0;
    const auto deadline = std::chrono::steady_clock::now() + scaled(60s);
    while (records + lost + told_ring_lost < kFlood && std::chrono::steady_clock::now() < deadline) {
        const auto j = stuck->lines->next_json(5s);
        if (!j)
            break;
        if (j->contains("lost")) {
            lost += (*j)["lost"].get<std::uint64_t>();
            told_ring_lost += (*j)["ring_lost"].get<std::uint64_t>();
            ++lost_lines;
            continue;
        }
        EXPECT_EQ((*j)["reason"], "policy");
        ++records;
    }
    std::cerr << "flood of " << kFlood << ": " << records << " records, " << lost << " lines lost in moatd's buffer, "
              << told_ring_lost << " records lost in the ring, in " << lost_lines << " lost-lines\n";
    EXPECT_EQ(records + lost + told_ring_lost, kFlood)
        << records << " records, " << lost << " lost lines, " << told_ring_lost << " ring losses told";
    EXPECT_GT(lost, 0u) << "a monitor that never read lost nothing in moatd's buffer: the test did not test";
    EXPECT_GT(lost_lines, 0u);
    EXPECT_EQ(told_ring_lost, ring_lost);
    // And it is still attached: new packets reach it.
    std::vector<Bytes> more(32, flood.front());
    ASSERT_TRUE(feed(more));
    for (int i = 0; i < 32; ++i) {
        const auto j = stuck->lines->next_json();
        ASSERT_TRUE(j) << i;
        if (j->contains("lost"))
            --i;
    }
}

// `moatctl states` (`{"cmd":"states"}`) on the same bed: the flows of a stateful filter, listed by
// the worker that holds them, as the client reads. The outside port reads a file here, not the
// FIFO: a worker walks its table for a listing between polls, and net_pcap's read of a FIFO
// blocks the worker until 32 more frames come.

// Line numbers below are those of this text (the appliance section takes lines 1-6).
const std::string kStatefulPolicy =
    "me = 198.18.0.10\n"                  // 7
    "assign = Servers\n"                  // 8
    "[filteraction Keep]\n"               // 9
    "action = permit\n"                   // 10
    "state = keep\n"                      // 11
    "[filterlist Web]\n"                  // 12
    "filter = *+198.18.0.10:80:TCP\n"     // 13
    "[policy Servers]\n"                  // 14
    "rule = Web -> Keep\n";               // 15

/// SYNs to the web server from `n` clients (one flow each), numbered from `first`.
std::vector<Bytes> syns(int first, int n) {
    std::vector<Bytes> out;
    for (int i = first; i < first + n; ++i) {
        Pkt p;
        p.src = "198.18." + std::to_string(100 + i / 200) + "." + std::to_string(i % 200 + 1);
        p.sport = static_cast<std::uint16_t>(20000 + i);
        out.push_back(frame(p));  // a SYN: the packets' default flags
    }
    return out;
}

TEST_F(MonitorE2E, StatesListsEveryFlowWithTheFilterThatMadeIt) {
    std::vector<Bytes> frames = syns(0, 64);
    for (int i = 0; i < 32; ++i) {  // not SYNs: they make no flow (dropped as `state`)
        Pkt p;
        p.src = "198.18.99." + std::to_string(i + 1);
        Built b = build(p);
        b.bytes[b.l4 + 13] = 0x10;  // ACK
        frames.push_back(b.bytes);
    }
    ASSERT_TRUE(start("", kStatefulPolicy, &frames));
    const json s = stats_after(96);
    EXPECT_EQ(s["drops"]["state"], 32);
    EXPECT_EQ(s["states"]["created"], 64);

    const json r = ask({{"cmd", "states"}});
    ASSERT_EQ(r.value("ok", false), true) << r.dump();
    EXPECT_EQ(r["flows"], 64);
    EXPECT_EQ(r["truncated"], false);
    ASSERT_EQ(r["states"].size(), 64u);
    std::set<std::pair<std::string, int>> clients;
    for (const json& row : r["states"]) {
        clients.insert({row.value("src", ""), row.value("sport", 0)});
        EXPECT_EQ(row["worker"], 0);
        EXPECT_EQ(row["port"], "outside");
        EXPECT_EQ(row["proto"], "TCP");
        EXPECT_EQ(row["dst"], "198.18.0.10");
        EXPECT_EQ(row["dport"], 80);
        EXPECT_EQ(row["state"], "SYN_SENT:CLOSED");
        EXPECT_EQ(row["filterlist"], "Web");
        EXPECT_EQ(row["line"], 13);
        EXPECT_EQ(row["generation"], r["generation"]);
        EXPECT_LE(row["expires_s"].get<int>(), 120);  // pf's tcp.first
    }
    std::set<std::pair<std::string, int>> sent;
    for (int i = 0; i < 64; ++i)
        sent.insert({"198.18.100." + std::to_string(i + 1), 20000 + i});
    EXPECT_EQ(clients, sent);

    const json some = ask({{"cmd", "states"}, {"limit", 10}});
    EXPECT_EQ(some["states"].size(), 10u) << some.dump();
    EXPECT_EQ(some["truncated"], true);
    const json bad = ask({{"cmd", "states"}, {"limit", "all"}});
    EXPECT_EQ(bad["errors"][0], "states: limit is a whole number of flows (0: all)") << bad.dump();
    // Anyone who may ask for stats may list the flows: the read-only socket answers too.
    EXPECT_EQ(ask({{"cmd", "states"}}, path("ro.sock"))["flows"], 64);

    const char* moatctl = std::getenv("MOATCTL");
    ASSERT_NE(moatctl, nullptr);
    const Result text = run_command({moatctl, "states", "--socket", sock()});
    EXPECT_EQ(text.status, 0) << text.err;
    std::istringstream lines(text.out);
    std::string head, line;
    std::getline(lines, head);
    EXPECT_EQ(head, "64 flows, generation " + r["generation"].dump());
    int n = 0;
    for (; std::getline(lines, line); ++n)
        EXPECT_NE(line.find("TCP  198.18.100."), std::string::npos) << line;
    EXPECT_EQ(n, 64);
    EXPECT_NE(text.out.find("worker 0  TCP  198.18.100.1:20000 -> 198.18.0.10:80  SYN_SENT:CLOSED  on outside  expires "),
              std::string::npos) << text.out;
    EXPECT_NE(text.out.find("line 13: *+198.18.0.10:80:TCP (Web)"), std::string::npos) << text.out;
    const Result js = run_command({moatctl, "states", "--socket", sock(), "--json", "--limit", "3"});
    EXPECT_EQ(js.status, 0) << js.err;
    const json parsed = json::parse(js.out, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << js.out;
    EXPECT_EQ(parsed["states"].size(), 3u);
    EXPECT_FALSE(parsed.contains("ok"));
    for (const char* bad : {"-3", " -3", "+5", "", "1e3", "99999999999999999999"})
        EXPECT_EQ(run_command({moatctl, "states", "--socket", sock(), "--limit", bad}).status, 2) << bad;
    EXPECT_EQ(run_command({moatctl, "states", "--socket", sock(), "--limit"}).status, 2);
}

// A SYN flood through a stateful permit open to anyone fills the flow table: the flows beyond it
// are refused and counted (`full`, dropped as `state`), the flows tracked before it go on, and
// the listing shows exactly the table.
TEST_F(MonitorE2E, ASynFloodFillsTheFlowTableAndTheTrackedFlowsGoOn) {
    constexpr int kFlood = 4096;
    std::vector<Bytes> frames = syns(0, 32);  // 32 clients before the flood
    for (Bytes& f : syns(1000, kFlood))       // the flood: 32 of it fit
        frames.push_back(std::move(f));
    for (Bytes& f : syns(0, 32))  // the first clients' SYNs again, as their stacks retransmit
        frames.push_back(std::move(f));
    ASSERT_TRUE(start("", "state_table = 64\n" + kStatefulPolicy, &frames));
    const json s = stats_after(32 + kFlood + 32);
    EXPECT_EQ(s["states"]["created"], 64);
    EXPECT_EQ(s["states"]["full"], kFlood - 32);
    EXPECT_EQ(s["drops"]["state"], kFlood - 32) << "only the flood's SYNs beyond the table may be refused";
    EXPECT_EQ(s["ports"]["inside"]["tx_packets"], 32 + 32 + 32);
    EXPECT_EQ(ask({{"cmd", "states"}})["flows"], 64);
}

// A listing larger than the socket's buffers whose client never reads holds only its own reply:
// status answers at once, and the next listing (which needs the worker to walk its table again)
// comes whole once the stalled one is closed (the socket's write stall); a client that asks and
// vanishes ends its listing at once.
TEST_F(MonitorE2E, AStatesClientThatNeverReadsStallsNeitherTheWorkerNorTheNextListing) {
    // Some 2.6 MB of rows: more than a listing holds for its reader (StatesHub::kHeld) and the
    // worker's ring together, so the stalled listing cannot end before its client is closed.
    constexpr int kFlows = 8192;
    const std::vector<Bytes> frames = syns(0, kFlows);
    ASSERT_TRUE(start("", kStatefulPolicy, &frames));
    stats_after(kFlows);

    const int stalled = dial(sock());
    ASSERT_GE(stalled, 0);
    send_bytes(stalled, json({{"cmd", "states"}}).dump() + "\n");
    const int vanished = dial(sock());
    ASSERT_GE(vanished, 0);
    send_bytes(vanished, json({{"cmd", "states"}}).dump() + "\n");
    close(vanished);

    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(ask({{"cmd", "status"}}).value("ok", false), true);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(2s)) << "status waited for the listings";

    const int next = dial(sock());
    ASSERT_GE(next, 0);
    send_bytes(next, json({{"cmd", "states"}}).dump() + "\n");
    const std::string reply = read_reply(next, 60s);
    close(next);
    const json r = json::parse(reply, nullptr, false);
    ASSERT_FALSE(r.is_discarded()) << reply.size() << " bytes: " << reply.substr(0, 200);
    EXPECT_EQ(r["flows"], kFlows);
    EXPECT_EQ(r["states"].size(), static_cast<std::size_t>(kFlows));
    // The stalled client was cut off: what it can still read is part of a reply, then the end.
    const std::string part = read_reply(stalled, 20s);
    EXPECT_GT(part.size(), 0u);
    EXPECT_NE(part.back(), '\n') << "the stalled listing was sent whole: its client was not what held the next one";
    close(stalled);
}

// A client of the read-only socket (often open to every local user) that reads its listing slowly
// enough never to trip the write stall would hold the one running listing for its connection's
// life. The operator's request interrupts it: the operator's listing comes whole, and the slow
// one ends, still valid JSON, with what it had and "interrupted".
TEST_F(MonitorE2E, AnOperatorsListingInterruptsAReadOnlyListingThatIsReadSlowly) {
    // Some 5 MB of rows: at the slow reader's pace about 25 s, longer than the operator's ask()
    // waits (20 s), so without the interruption the operator's listing would not come.
    constexpr int kFlows = 16384;
    const std::vector<Bytes> frames = syns(0, kFlows);
    ASSERT_TRUE(start("", kStatefulPolicy, &frames));
    stats_after(kFlows);

    const int slow = dial(path("ro.sock"));
    ASSERT_GE(slow, 0);
    ASSERT_TRUE(send_bytes(slow, json({{"cmd", "states"}}).dump() + "\n"));
    std::atomic<bool> fast{false};
    std::atomic<std::size_t> read_so_far{0};
    std::string got;
    std::thread reader([&] {
        // Slow but never stalled: it empties the socket once a second, so moatd's sends make
        // progress every second (its write stall is 5 s): the attack of a client that keeps
        // the running listing, not one that is cut off for not reading.
        std::vector<char> buf(1 << 20);
        for (;;) {
            pollfd p{slow, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(scaled(30s).count())) <= 0)
                break;
            const ssize_t n = recv(slow, buf.data(), buf.size(), MSG_DONTWAIT);
            if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR)))
                break;
            if (n > 0) {
                got.append(buf.data(), static_cast<std::size_t>(n));
                read_so_far = got.size();
            }
            if (!fast)
                std::this_thread::sleep_for(1s);
        }
    });
    for (int i = 0; i < 100 && read_so_far == 0; ++i)  // its listing runs before the operator asks
        std::this_thread::sleep_for(scaled(100ms));
    EXPECT_GT(read_so_far.load(), 0u);
    const json r = ask({{"cmd", "states"}});
    fast = true;
    reader.join();
    close(slow);
    EXPECT_EQ(r.value("flows", -1), kFlows) << "the operator's listing did not come whole within 20 s";
    const json ro = json::parse(got, nullptr, false);
    ASSERT_FALSE(ro.is_discarded()) << got.size() << " bytes, ending " << got.substr(got.size() > 200 ? got.size() - 200 : 0);
    EXPECT_EQ(ro["interrupted"], true);
    EXPECT_EQ(ro["truncated"], true);
    EXPECT_LT(ro["flows"].get<int>(), kFlows);
    EXPECT_EQ(ro["states"].size(), ro["flows"].get<std::size_t>());
}

}  // namespace
}  // namespace moat::test
