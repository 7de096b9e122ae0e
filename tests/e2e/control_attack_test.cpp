// The control plane attacked the way a hostile client or a careless script would: raw socket
// clients that vanish mid-reply, send bytes that are not UTF-8, smuggle lines into `assign`,
// dribble a byte at a time, never read, or hold connections open; and a file system that plays
// tricks (symbolic links, an empty or cut file, an edit during start-up). Through all of it a
// real moatd must keep forwarding (its outside port replays web and SSH packets forever), keep
// answering other clients, apply edits, keep SSH blocked, and exit cleanly on SIGTERM.
//
// Latency bounds here are liveness checks, far above what an answer takes (under a millisecond
// unloaded): the failures they catch are stalls of a second or for good, not slowness. The
// figures for the README come from perf/live-edit.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
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
using Clock = std::chrono::steady_clock;

/// The longest a `status` may take while others attack the socket. It guards against the control
/// thread stalling on a client (a blocking read or write, a deadline served in line): that shows
/// as seconds, up to the client's timeout, while an answer takes well under a millisecond. So the
/// bound sits far from both, and stretches with the time scale (sanitizers, a loaded machine).
const auto kAnswerBound = scaled(500ms);

// ---- a raw client (tests/common/unix_socket.h): what a script or an attacker writes ----

/// One raw request line, the parsed reply (discarded when it is not JSON or did not come).
nlohmann::json ask_raw(const std::string& sock, const std::string& line, std::chrono::milliseconds timeout = 10s) {
    const int fd = dial(sock);
    if (fd < 0)
        return nlohmann::json::value_t::discarded;
    send_bytes(fd, line + "\n");
    const std::string r = read_reply(fd, timeout);
    close(fd);
    return nlohmann::json::parse(r, nullptr, false);
}

nlohmann::json ask(const std::string& sock, const nlohmann::json& req, std::chrono::milliseconds timeout = 10s) {
    return ask_raw(sock, req.dump(), timeout);
}

/// How long `status` takes to answer, or the timeout when it does not.
std::chrono::milliseconds status_time(const std::string& sock) {
    const auto t0 = Clock::now();
    const nlohmann::json r = ask(sock, {{"cmd", "status"}}, 5s);
    const auto dt = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    return !r.is_discarded() && r.value("ok", false) ? dt : scaled(5s);
}

// ---- the appliance under attack ----

class Hostile : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("moat-hostile-" + std::to_string(getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        cfg_ = (dir_ / "moat.ini").string();
        sock_ = (dir_ / "moat.sock").string();
        // The outside port replays one web packet (permitted) and one SSH packet (blocked under
        // Servers) forever; what is permitted is written to /dev/null.
        write_web_and_ssh(dir_.string(), 1, 1);
        write(config("Servers"));
    }
    void TearDown() override {
        moatd_.reset();
        fs::remove_all(dir_);
    }

    /// The config: `appliance` adds [appliance] keys, `extra` sections.
    std::string config(const std::string& assign, const std::string& appliance = "", const std::string& extra = "") const {
        std::string many;
        for (int i = 0; i < 3000; ++i)  // rules and stats replies far larger than a socket buffer
            many += "filter = 198.18." + std::to_string(64 + i / 250) + "." + std::to_string(i % 250) + "+198.18.0.10:23:TCP\n";
        return "[appliance]\n"
               "outside = net_pcap0,rx_pcap=" + (dir_ / "or.pcap").string() + ",tx_pcap=/dev/null,infinite_rx=1\n"
               "inside = net_pcap1,rx_pcap=" + (dir_ / "ir.pcap").string() + ",tx_pcap=/dev/null\n"
               "eal = --no-huge -m 256 " + test::lcores_option() + " --file-prefix " + dir_.filename().string() + "\n"
               "control = " + sock_ + "\n"
               "me = 198.18.0.10\n"
               "assign = " + assign + "\n" + appliance +
               "\n[filterlist Web]\nfilter = *+198.18.0.10:80:TCP\n"
               "\n[filterlist SSH]\nfilter = *+198.18.0.10:22:TCP\n"
               "\n[filterlist Telnet]\n" + many +
               "\n[filterlist Everything]\nfilter = *+0\n"
               "\n[policy Servers]\nrule = Web -> permit\nrule = Telnet -> block\nrule = Everything -> block\n"
               "\n[policy Admin]\nrule = Web -> permit\nrule = SSH -> permit\nrule = Everything -> block\n" +
               extra;
    }
    void write(const std::string& text) const { std::ofstream(cfg_) << text; }
    /// An editor's save: a new file renamed over the old one.
    void replace(const std::string& text, const std::string& path = "") const {
        const std::string to = path.empty() ? cfg_ : path;
        std::ofstream(to + ".new") << text;
        fs::rename(to + ".new", to);
    }

    /// Starts moatd and waits until it answers.
    void start(const std::vector<std::string>& args = {}) {
        std::vector<std::string> a{"--config", cfg_};
        a.insert(a.end(), args.begin(), args.end());
        moatd_ = std::make_unique<Moatd>(a, (dir_ / "moatd.log").string());
        ASSERT_TRUE(moatd_->started());
        eventually([&] { return !status().is_discarded(); }, 30s, 50ms);
        ASSERT_FALSE(status().is_discarded()) << moatd_->log();
    }
    nlohmann::json status() const { return ask(sock_, {{"cmd", "status"}}, 2s); }
    std::uint64_t generation() const {
        const auto s = status();
        return s.is_discarded() ? 0 : s.value("generation", std::uint64_t{0});
    }
    /// Waits for `done(status)` for `seconds` (scaled); returns the last status.
    nlohmann::json wait_status(const std::function<bool(const nlohmann::json&)>& done, double seconds = 10) const {
        const auto deadline = Clock::now() + std::chrono::duration<double>(scaled_seconds(seconds));
        nlohmann::json s;
        do {
            s = status();
            if (!s.is_discarded() && done(s))
                return s;
            std::this_thread::sleep_for(20ms);
        } while (Clock::now() < deadline);
        return s;
    }
    std::uint64_t inside_tx() const {
        const auto s = ask(sock_, {{"cmd", "stats"}});
        return s.is_discarded() ? 0 : s["ports"]["inside"]["tx_packets"].get<std::uint64_t>();
    }
    /// The data path still moves: the inside port's tx count grows.
    void expect_forwarding() const {
        const std::uint64_t before = inside_tx();
        std::uint64_t after = before;
        eventually(
            [&] {
                after = inside_tx();
                return after != before;
            },
            2s, 20ms);
        EXPECT_GT(after, before) << "the data path stopped forwarding";
    }
    /// SSH from outside is still blocked by the policy in force.
    void expect_ssh_blocked() const {
        const auto e = ask(sock_, {{"cmd", "explain"}, {"packet", "tcp 198.18.100.1:40000 -> 198.18.0.10:22"}});
        ASSERT_FALSE(e.is_discarded());
        EXPECT_EQ(e.value("action", ""), "block") << e.dump();
    }
    /// SIGTERM ends it cleanly, whoever is still connected.
    void expect_clean_exit() {
        EXPECT_EQ(moatd_->stop(SIGTERM, 10), 0) << moatd_->log();
    }

    fs::path dir_;
    std::string cfg_, sock_;
    std::unique_ptr<Moatd> moatd_;
};

// 1. A client that vanishes mid-reply (or before it) is harmless: no SIGPIPE, no exit.
TEST_F(Hostile, ClientsThatVanishAreHarmless) {
    ASSERT_NO_FATAL_FAILURE(start());
    const std::vector<std::string> requests{
        R"({"cmd":"status"})", R"({"cmd":"rules"})", R"({"cmd":"stats"})", R"({"cmd":"stats","format":"prometheus"})",
        R"({"cmd":"stats","format":"text"})", R"({"cmd":"explain","packet":"tcp 198.18.100.1:1 -> 198.18.0.10:22"})"};
    for (int round = 0; round < 20; ++round)
        for (const auto& r : requests) {
            const int fd = dial(sock_);
            ASSERT_GE(fd, 0);
            send_bytes(fd, r + "\n");
            if (round % 2) {  // a reset rather than a close
                linger l{1, 0};
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            }
            if (round % 3 == 0) {  // reads a little of a large reply, then goes
                char buf[16];
                (void)!read(fd, buf, sizeof buf);
            }
            close(fd);
        }
    // A client with a small line limit, as moatctl had: reads 64 KiB of `rules`, gives up.
    const int fd = dial(sock_);
    send_bytes(fd, "{\"cmd\":\"rules\"}\n");
    std::string got;
    char buf[4096];
    while (got.size() < 65536) {
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    close(fd);
    EXPECT_GE(got.size(), 65536u) << "the rules reply of 3000 filters is larger than that";
    EXPECT_LE(status_time(sock_), kAnswerBound);
    expect_forwarding();
    // The whole rules reply is whole JSON for a client that reads it.
    const auto rules = ask(sock_, {{"cmd", "rules"}});
    ASSERT_FALSE(rules.is_discarded());
    EXPECT_EQ(rules["rules"].size(), 2u * 3000 + 4);
    expect_clean_exit();
}

// Requests that are too long, not JSON, not an object, unknown or never finished get a clear
// error, not silence.
TEST_F(Hostile, BadRequestsGetClearErrors) {
    ASSERT_NO_FATAL_FAILURE(start());
    const auto error_of = [](const nlohmann::json& r) {
        return r.is_discarded() || r.value("ok", true) || r["errors"].empty() ? std::string("(no error reply)")
                                                                               : r["errors"][0].get<std::string>();
    };
    EXPECT_NE(error_of(ask_raw(sock_, std::string(70000, ' '))).find("longer than 65536 bytes"), std::string::npos);
    EXPECT_NE(error_of(ask_raw(sock_, "{\"cmd\": status}")).find("not JSON"), std::string::npos);
    EXPECT_NE(error_of(ask_raw(sock_, "[\"status\"]")).find("not a JSON object"), std::string::npos);
    EXPECT_NE(error_of(ask(sock_, {{"cmd", "shutdown"}})).find("unknown command 'shutdown'"), std::string::npos);
    EXPECT_NE(error_of(ask(sock_, {{"cmd", "assign"}})).find("assign needs a policy name"), std::string::npos);
    // A request line that never ends: told so when its time is up, then closed.
    const int fd = dial(sock_);
    ASSERT_GE(fd, 0);
    send_bytes(fd, "{\"cmd\":");
    const auto r = nlohmann::json::parse(read_reply(fd, 10s), nullptr, false);
    close(fd);
    EXPECT_NE(error_of(r).find("no complete request line within"), std::string::npos) << r.dump();
    expect_clean_exit();
}

// 2. Bytes that are not UTF-8: refused in the config at their line; never an abort.
TEST_F(Hostile, InvalidUtf8NeverAbortsIt) {
    // A config whose name is Latin-1: refused before anything starts, with the line.
    write(config("Servers", "", "[filterlist Caf\xE9]\nfilter = *+*\n"));
    {
        Moatd bad({"--config", cfg_}, (dir_ / "bad.log").string());
        EXPECT_EQ(bad.wait_exit(30), 1);
        EXPECT_NE(bad.log().find("line is not valid UTF-8 (byte 0xE9"), std::string::npos) << bad.log();
    }
    write(config("Servers"));
    // Counters every 0.1 s on stdout, which the test reads only at the end: a full pipe must
    // not hold up the control thread either.
    ASSERT_NO_FATAL_FAILURE(start({"--stats-period", "0.1"}));
    const auto gen = generation();
    // explain with payload bytes that are not UTF-8, as raw hex.
    const auto e = ask(sock_, {{"cmd", "explain"}, {"packet", "tcp 198.18.100.1:1 -> 198.18.0.10:80 payload-hex c328e9ff80"}});
    ASSERT_FALSE(e.is_discarded()) << "no JSON reply";
    // Request strings that are not UTF-8 (raw bytes, a lone surrogate escape): a clear error.
    for (const std::string& bad : {std::string("{\"cmd\":\"st\xE9tus\"}"), std::string(R"({"cmd":"\udcff"})"),
                                  std::string("{\"cmd\":\"explain\",\"packet\":\"tcp \xFF -> 1.2.3.4\"}")}) {
        const auto r = ask_raw(sock_, bad);
        ASSERT_FALSE(r.is_discarded()) << "no JSON reply to " << bad;
        EXPECT_FALSE(r.value("ok", true));
    }
    // An edit with a bad byte in a filter: the reload fails at that line; status says so in
    // valid JSON; every stats format still serialises.
    write(config("Servers", "", "[filterlist Bad]\nfilter = *+198.18.0.10:80:TCP ; caf\xE9\n"
                                "[policy Z]\nrule = Bad \xFF -> block\n"));
    const auto s = wait_status([](const nlohmann::json& j) { return !j["last_reload"]["ok"].get<bool>(); });
    ASSERT_FALSE(s.is_discarded());
    EXPECT_FALSE(s["last_reload"]["ok"].get<bool>());
    EXPECT_NE(s.dump().find("not valid UTF-8"), std::string::npos) << s.dump();
    EXPECT_EQ(generation(), gen);
    for (const char* format : {"json", "text", "prometheus"})
        EXPECT_FALSE(ask(sock_, {{"cmd", "stats"}, {"format", format}}).is_discarded()) << format;
    EXPECT_FALSE(ask(sock_, {{"cmd", "rules"}}).is_discarded());
    // --stats-period goes on printing.
    const auto printed = moatd_->wait_stats([&](const nlohmann::json& j) { return j["generation"] == gen; }, 5);
    EXPECT_TRUE(printed.has_value());
    expect_forwarding();
    expect_clean_exit();
}

// 3. assign writes only the name of a policy the file defines: no line can be smuggled in.
TEST_F(Hostile, AssignCannotRewriteTheConfig) {
    ASSERT_NO_FATAL_FAILURE(start());
    const std::string before = slurp(cfg_);
    const auto gen = generation();
    for (const std::string& evil :
         {std::string("Evil\n[filterlist Everything2]\nfilter = *+*\n[policy Evil]\nrule = Everything2 -> permit"),
          std::string("Servers\nantispoof = off"), std::string("Servers\r\neal = -d /tmp/x.so"),
          std::string("Servers\rantispoof = off"), std::string("Servers") + '\0' + "x", std::string("Nobody"),
          std::string("Servers ; comment"), std::string(" Servers"), std::string("Servers]"),
          std::string(70000, 'A')}) {
        const auto r = ask(sock_, {{"cmd", "assign"}, {"policy", evil}});
        ASSERT_FALSE(r.is_discarded()) << "no JSON reply";
        EXPECT_FALSE(r.value("ok", true)) << r.dump();
        EXPECT_EQ(slurp(cfg_), before) << "the config file changed";
        EXPECT_EQ(generation(), gen);
    }
    expect_ssh_blocked();
    // What was sent is in the log as one line: no forged line, no escape sequence.
    const std::string log = moatd_->log();
    EXPECT_EQ(log.find("\n[filterlist Everything2]"), std::string::npos) << log;
    EXPECT_EQ(log.find("\nantispoof = off"), std::string::npos) << log;
    EXPECT_EQ(log.find('\r'), std::string::npos);
    EXPECT_NE(log.find("control: assign 'Evil\\x0A[filterlist Everything2]"), std::string::npos) << log;
    // A policy of the file: the one line changes, nothing else.
    const auto ok = ask(sock_, {{"cmd", "assign"}, {"policy", "Admin"}});
    EXPECT_TRUE(ok.value("ok", false)) << ok.dump();
    std::string expected = before;
    expected.replace(expected.find("assign = Servers"), 16, "assign = Admin");
    EXPECT_EQ(slurp(cfg_), expected);
    expect_forwarding();
    expect_clean_exit();
}

// 4 and the whole: a mix of hostile clients stalls nothing.
TEST_F(Hostile, AnyMixOfClientsStallsNothing) {
    ASSERT_NO_FATAL_FAILURE(start());
    // Stopped and joined however the test ends (a failed expectation may throw from a reply).
    struct Threads {
        std::atomic<bool> stop{false};
        std::vector<std::thread> all;
        ~Threads() {
            stop = true;
            for (auto& t : all)
                t.join();
        }
    } threads;
    std::atomic<bool>& stop = threads.stop;
    std::vector<std::thread>& attackers = threads.all;
    // Slow loris: a byte every 0.8 s, never a newline (it reconnects when dropped).
    for (int i = 0; i < 8; ++i)
        attackers.emplace_back([&] {
            while (!stop) {
                const int fd = dial(sock_);
                while (!stop && fd >= 0 && send_bytes(fd, "{"))
                    for (int t = 0; t < 8 && !stop; ++t)
                        std::this_thread::sleep_for(100ms);
                if (fd >= 0)
                    close(fd);
            }
        });
    // Never reads: asks for rules and stats and sits on them.
    for (int i = 0; i < 3; ++i)
        attackers.emplace_back([&, i] {
            while (!stop) {
                const int fd = dial(sock_);
                send_bytes(fd, i % 2 ? "{\"cmd\":\"rules\"}\n" : "{\"cmd\":\"stats\",\"format\":\"prometheus\"}\n");
                for (int t = 0; t < 50 && !stop; ++t)
                    std::this_thread::sleep_for(100ms);
                if (fd >= 0)
                    close(fd);
            }
        });
    // Floods: a hundred connections held open without a word; garbage; over-long lines;
    // deep nesting; clients that vanish.
    attackers.emplace_back([&] {
        std::vector<int> held;
        std::mt19937 rng(1);
        while (!stop) {
            for (int i = 0; i < 100; ++i)
                if (const int fd = dial(sock_); fd >= 0)
                    held.push_back(fd);
            for (const std::string& junk : {std::string(100000, 'x') + "\n", std::string(5000, '[') + "\n",
                                            std::string("\0\xff\xfe{}\n", 7), std::string("null\n"), std::string("[1,2]\n"),
                                            std::string("{\"cmd\":[\"status\"]}\n")}) {
                const int fd = dial(sock_);
                send_bytes(fd, junk);
                if (rng() % 2)
                    (void)read_reply(fd, 200ms);
                close(fd);
            }
            std::this_thread::sleep_for(300ms);
            for (const int fd : held)
                close(fd);
            held.clear();
        }
    });

    std::this_thread::sleep_for(1500ms);  // let them settle in
    // Other clients are answered, every time.
    std::chrono::milliseconds worst{0};
    for (int i = 0; i < 20; ++i) {
        worst = std::max(worst, status_time(sock_));
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_LE(worst, kAnswerBound) << "status was delayed by other clients";
    // Edits apply: a rename into place, a SIGHUP.
    const auto gen = generation();
    replace(config("Servers", "", "; edited\n"));
    const auto s = wait_status([&](const nlohmann::json& j) { return j["generation"] > gen; });
    EXPECT_GT(s.value("generation", std::uint64_t{0}), gen) << moatd_->log();
    moatd_->signal(SIGHUP);
    const auto s2 = wait_status([&](const nlohmann::json& j) { return j["last_reload"]["trigger"] == "SIGHUP"; });
    EXPECT_FALSE(s2.is_discarded());
    EXPECT_EQ(s2.is_discarded() ? nlohmann::json() : s2["last_reload"]["trigger"], "SIGHUP");
    expect_forwarding();
    expect_ssh_blocked();
    // SIGTERM with every attacker still connected.
    expect_clean_exit();
}

// 5. A read-only socket answers queries and refuses changes; the main socket keeps its mode.
TEST_F(Hostile, ReadOnlySocketCannotChangeAnything) {
    const std::string ro = (dir_ / "ro.sock").string();
    write(config("Servers", "control_readonly = " + ro + "\n"));
    ASSERT_NO_FATAL_FAILURE(start());
    struct stat st {};
    ASSERT_EQ(stat(sock_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    ASSERT_EQ(stat(ro.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0666u);
    for (const nlohmann::json& q : {nlohmann::json{{"cmd", "status"}}, nlohmann::json{{"cmd", "stats"}},
                                   nlohmann::json{{"cmd", "rules"}},
                                   nlohmann::json{{"cmd", "explain"}, {"packet", "tcp 198.18.100.1:1 -> 198.18.0.10:80"}}})
        EXPECT_TRUE(ask(ro, q).value("ok", false)) << q.dump();
    const std::string before = slurp(cfg_);
    const auto gen = generation();
    for (const nlohmann::json& c : {nlohmann::json{{"cmd", "reload"}}, nlohmann::json{{"cmd", "unassign"}},
                                   nlohmann::json{{"cmd", "assign"}, {"policy", "Admin"}}}) {
        const auto r = ask(ro, c);
        EXPECT_FALSE(r.value("ok", true)) << c.dump();
        EXPECT_NE(r.dump().find("read-only"), std::string::npos) << r.dump();
    }
    EXPECT_EQ(slurp(cfg_), before);
    EXPECT_EQ(generation(), gen);
    // One user's flood of the read-only socket is held to its rate; the main socket is not
    // touched by it.
    int limited = 0;
    for (int i = 0; i < 400; ++i) {
        const auto r = ask(ro, {{"cmd", "status"}});
        limited += !r.is_discarded() && r.dump().find("too many requests from uid") != std::string::npos;
    }
    EXPECT_GT(limited, 0) << "400 requests at once from one user were all answered";
    EXPECT_TRUE(ask(sock_, {{"cmd", "status"}}).value("ok", false));
    // Anyone on the read-only socket cannot crowd out the main one.
    std::vector<int> crowd;
    for (int i = 0; i < 100; ++i)
        crowd.push_back(dial(ro));
    EXPECT_LE(status_time(sock_), kAnswerBound);
    EXPECT_TRUE(ask(sock_, {{"cmd", "reload"}}).value("ok", false));
    for (const int fd : crowd)
        if (fd >= 0)
            close(fd);
    EXPECT_NE(moatd_->log().find("on the read-only socket: refused"), std::string::npos) << moatd_->log();
    expect_clean_exit();

    // With its own group: 0660 and that group.
    const group* g = getgrnam("nogroup");
    if (!g)
        GTEST_SKIP() << "no group 'nogroup' here for the group check";
    const gid_t gid = g->gr_gid;
    write(config("Servers", "control_readonly = " + ro + "\ncontrol_readonly_group = nogroup\n"));
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_EQ(stat(ro.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_EQ(st.st_gid, gid);
    expect_clean_exit();
}

// An operator's save while `assign` loops: the save is never reverted.
TEST_F(Hostile, AssignNeverRevertsAnOperatorsSave) {
    ASSERT_NO_FATAL_FAILURE(start());
    std::atomic<bool> stop{false};
    std::thread assigner([&] {
        while (!stop)
            ask(sock_, {{"cmd", "assign"}, {"policy", "Servers"}});
    });
    for (int edit = 0; edit < 10; ++edit) {
        const std::string mark = "; operator's edit " + std::to_string(edit) + "\n";
        replace(config("Servers", "", mark));
        std::this_thread::sleep_for(100ms);
        EXPECT_NE(slurp(cfg_).find(mark), std::string::npos) << "assign reverted edit " << edit;
    }
    stop = true;
    assigner.join();
    expect_clean_exit();
}

// A slow in-place write (a pause with the file open) is not read until the writer is done: its
// first half may permit what the whole file blocks.
TEST_F(Hostile, APausedInPlaceWriteIsNotPublishedHalfWay) {
    // The whole file permits web and SSH to everything but blocks SSH from 198.18.100.0/24;
    // its first half permits SSH from anywhere.
    const std::string head = config("Servers", "", "[filterlist Outsiders]\nfilter = 198.18.100.0/24+198.18.0.10:22:TCP\n");
    ASSERT_NO_FATAL_FAILURE(start());
    const std::string whole = head + "[policy Open]\nrule = SSH -> permit\nrule = Web -> permit\nrule = Outsiders -> block\n";
    const std::string cut = "[policy Open]\nrule = SSH -> permit\nrule = Web -> permit\n";
    std::string first = head + cut;
    first.replace(first.find("assign = Servers"), 16, "assign = Open   ");
    std::string rest = whole.substr(head.size() + cut.size());
    const auto gen = generation();
    {
        std::ofstream out(cfg_, std::ios::trunc);
        out << first << std::flush;  // written, still open
        std::this_thread::sleep_for(800ms);
        expect_ssh_blocked();
        EXPECT_EQ(generation(), gen) << "a file still being written was published";
        out << rest;
    }
    std::string expected = whole;
    expected.replace(expected.find("assign = Servers"), 16, "assign = Open   ");
    EXPECT_EQ(slurp(cfg_), expected);
    const auto s = wait_status([&](const nlohmann::json& j) { return j["generation"] > gen; });
    EXPECT_EQ(s["policy"], "Open");
    expect_ssh_blocked();  // from 198.18.100.1: Outsiders
    expect_clean_exit();
}

// A directory on the config's path replaced (mv etc etc.old; mv etc.new etc): followed.
TEST_F(Hostile, AReplacedDirectoryIsFollowed) {
    const fs::path etc = dir_ / "etc";
    fs::create_directories(etc);
    cfg_ = (etc / "moat.ini").string();
    write(config("Servers"));
    ASSERT_NO_FATAL_FAILURE(start());
    fs::create_directories(dir_ / "etc.new");
    std::ofstream(dir_ / "etc.new" / "moat.ini") << config("Admin");
    fs::rename(etc, dir_ / "etc.old");
    fs::rename(dir_ / "etc.new", etc);
    auto s = wait_status([](const nlohmann::json& j) { return j["policy"] == "Admin"; });
    EXPECT_EQ(s["policy"], "Admin") << "the new directory was not seen: " << moatd_->log();
    replace(config("Servers"));
    s = wait_status([](const nlohmann::json& j) { return j["policy"] == "Servers"; });
    EXPECT_EQ(s["policy"], "Servers") << "an edit in the new directory was not seen";
    expect_clean_exit();
}

// Something else listening on the control path that trickles bytes: moatd does not wait on it.
TEST_F(Hostile, AListenerThatTricklesDoesNotHoldUpStartUp) {
    std::optional<FakeServer> trickle(std::in_place, sock_, "", 100ms);
    ASSERT_TRUE(trickle->ok());
    moatd_ = std::make_unique<Moatd>(std::vector<std::string>{"--config", cfg_}, (dir_ / "moatd.log").string());
    eventually([&] { return moatd_->log().find("forwarding") != std::string::npos; }, 30s, 20ms);
    trickle.reset();
    EXPECT_NE(moatd_->log().find("forwarding"), std::string::npos) << moatd_->log();
    expect_clean_exit();
}

// Clients waiting for a reload's outcome are not counted among the replies going out, and one
// that closed its writing side (socat, nc -N) still gets its answer.
TEST_F(Hostile, EveryClientWaitingForAReloadGetsItsAnswer) {
    ASSERT_NO_FATAL_FAILURE(start());
    std::vector<int> waiting;
    for (int i = 0; i < 40; ++i) {
        const int fd = dial(sock_);
        ASSERT_GE(fd, 0);
        send_bytes(fd, "{\"cmd\":\"reload\"}\n");
        if (i % 2)
            shutdown(fd, SHUT_WR);
        waiting.push_back(fd);
    }
    // Meanwhile others come and go without reading.
    for (int i = 0; i < 100; ++i) {
        const int fd = dial(sock_);
        send_bytes(fd, "{\"cmd\":\"rules\"}\n");
        close(fd);
    }
    int answered = 0;
    for (const int fd : waiting) {
        const auto r = nlohmann::json::parse(read_reply(fd, 30s), nullptr, false);
        answered += !r.is_discarded() && r.value("ok", false);
        close(fd);
    }
    EXPECT_EQ(answered, 40);
    expect_clean_exit();
}

// At start-up as at a reload, the log says the first 20 warnings and how many there are; refused
// changes on the read-only socket are logged ten a minute.
TEST_F(Hostile, TheLogStaysShortWhateverThePolicyAndTheClients) {
    const std::string ro = (dir_ / "ro.sock").string();
    std::string unused;
    for (int i = 0; i < 5000; ++i)
        unused += "[filterlist Unused " + std::to_string(i) + "]\nfilter = *+198.18.0.10:" + std::to_string(1 + i) + ":TCP\n";
    write(config("Servers", "control_readonly = " + ro + "\n", unused));
    ASSERT_NO_FATAL_FAILURE(start());
    for (int i = 0; i < 200; ++i)
        ask(ro, {{"cmd", "reload"}});
    replace(config("Admin", "control_readonly = " + ro + "\n", unused));
    wait_status([](const nlohmann::json& j) { return j["policy"] == "Admin"; });
    expect_clean_exit();
    const std::string log = moatd_->log();
    const auto lines = std::count(log.begin(), log.end(), '\n');
    EXPECT_LT(lines, 120) << log.substr(0, 4000);
    EXPECT_NE(log.find("more warnings"), std::string::npos);
}

// explain with a payload scans with the generation's own pattern database: it compiles nothing,
// so heavy patterns cost a request no more than a scan.
TEST_F(Hostile, ExplainWithAPayloadCompilesNothing) {
    std::string sigs = "[filterlist Signatures]\n";
    for (int i = 0; i < 150; ++i)  // patterns Hyperscan takes a while to compile (caseless, bounded repeats)
        sigs += "filter = *+198.18.0.10:80:TCP payload=/^GET \\/a" + std::to_string(i) + "[a-z]{20,60}x.*y" +
                std::to_string(i) + "z/i\n";
    write(config("Sig", "", sigs + "[policy Sig]\nrule = Signatures -> block\nrule = Web -> permit\n"
                                   "rule = Everything -> block\n"));
    ASSERT_NO_FATAL_FAILURE(start());
    const auto t0 = Clock::now();
    for (int i = 0; i < 10; ++i) {
        const auto e = ask(sock_, {{"cmd", "explain"},
                                   {"packet", "tcp 198.18.100.1:1 -> 198.18.0.10:80 payload \"GET /a5bbbbbbbbbbbbbbbbbbbbbbbbxqqy5z\""}});
        ASSERT_FALSE(e.is_discarded());
        EXPECT_TRUE(e.value("ok", false)) << e.dump();
    }
    // What it guards: explain must not compile the generation's patterns again per request.
    // Compiling the 150 patterns takes about half a second, ten times five seconds; ten scans
    // take milliseconds. The bound is far from both, and stretches with the time scale as both do.
    EXPECT_LT(Clock::now() - t0, scaled(2s));
    EXPECT_LE(status_time(sock_), kAnswerBound);
    expect_clean_exit();
}

// 6. An edit made while moatd starts is applied, without a SIGHUP.
TEST_F(Hostile, EditDuringStartUpIsApplied) {
    moatd_ = std::make_unique<Moatd>(std::vector<std::string>{"--config", cfg_}, (dir_ / "moatd.log").string());
    // The config has been read once "EAL arguments" is logged; EAL and the ports come after.
    eventually([&] { return moatd_->log().find("EAL arguments") != std::string::npos; }, 30s, 1ms);
    replace(config("Admin"));
    const auto s = wait_status([](const nlohmann::json& j) { return j["policy"] == "Admin"; }, 30);
    EXPECT_EQ(s.value("policy", nlohmann::json()), "Admin") << moatd_->log();
    expect_clean_exit();
}

// 7. A config reached through symbolic links: edits of the target and link swaps are seen;
// moatd's own writes go through the link and keep owner, group and mode.
TEST_F(Hostile, SymlinkedConfigIsFollowedAndKept) {
    // /dir/moat.ini -> ..data/moat.ini, ..data -> v1/ (a Kubernetes ConfigMap volume)
    const fs::path v1 = dir_ / "v1", v2 = dir_ / "v2", elsewhere = dir_ / "elsewhere";
    fs::create_directories(v1);
    fs::create_directories(v2);
    fs::create_directories(elsewhere);
    fs::remove(cfg_);
    std::ofstream(v1 / "moat.ini") << config("Servers");
    fs::create_directory_symlink("v1", dir_ / "..data");
    fs::create_symlink("..data/moat.ini", cfg_);
    ASSERT_NO_FATAL_FAILURE(start());
    EXPECT_EQ(status()["policy"], "Servers");

    // The swap: a new directory, a new link renamed over ..data.
    std::ofstream(v2 / "moat.ini") << config("Admin");
    fs::create_directory_symlink("v2", dir_ / "..data_tmp");
    fs::rename(dir_ / "..data_tmp", dir_ / "..data");
    auto s = wait_status([](const nlohmann::json& j) { return j["policy"] == "Admin"; });
    EXPECT_EQ(s["policy"], "Admin") << "the ..data swap was not seen: " << moatd_->log();

    // An edit of the new target, in place and by rename in its directory.
    std::ofstream(v2 / "moat.ini") << config("Servers");
    s = wait_status([](const nlohmann::json& j) { return j["policy"] == "Servers"; });
    EXPECT_EQ(s["policy"], "Servers") << "an in-place edit of the target was not seen";
    replace(config("Admin"), (v2 / "moat.ini").string());
    s = wait_status([](const nlohmann::json& j) { return j["policy"] == "Admin"; });
    EXPECT_EQ(s["policy"], "Admin") << "a rename in the target's directory was not seen";

    // The link itself re-pointed elsewhere (ln -sf).
    std::ofstream(elsewhere / "moat.ini") << config("Servers");
    fs::remove(cfg_);
    fs::create_symlink(elsewhere / "moat.ini", cfg_);
    s = wait_status([](const nlohmann::json& j) { return j["policy"] == "Servers"; });
    EXPECT_EQ(s["policy"], "Servers") << "re-pointing the link was not seen";

    // assign writes through the link: the link stays, the target keeps owner, group and mode
    // (someone else's file: only root can write one and keep its owner).
    const fs::path target = elsewhere / "moat.ini";
    const uid_t owner = geteuid() == 0 ? 65534 : geteuid();
    const gid_t group = geteuid() == 0 ? 65534 : getegid();
    ASSERT_EQ(chown(target.c_str(), owner, group), 0);
    ASSERT_EQ(chmod(target.c_str(), 0640), 0);
    const auto r = ask(sock_, {{"cmd", "assign"}, {"policy", "Admin"}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    EXPECT_TRUE(fs::is_symlink(cfg_)) << "assign replaced the link with a file";
    EXPECT_NE(slurp(target).find("assign = Admin"), std::string::npos);
    struct stat st {};
    ASSERT_EQ(stat(target.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, owner);
    EXPECT_EQ(st.st_gid, group);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    expect_clean_exit();
}

// 8. An empty or cut-off file is never published; check says why.
TEST_F(Hostile, EmptyOrCutFileKeepsThePolicy) {
    ASSERT_NO_FATAL_FAILURE(start());
    const auto gen = generation();
    const std::string whole = config("Servers");
    for (const std::string& cut : {std::string(), whole.substr(0, whole.find("[filterlist Telnet]")),
                                   whole.substr(0, whole.find("[policy Servers]"))}) {
        write(cut);
        const auto s = wait_status([](const nlohmann::json& j) { return !j["last_reload"]["ok"].get<bool>(); });
        EXPECT_FALSE(s["last_reload"]["ok"].get<bool>()) << "a cut file of " << cut.size() << " bytes loaded";
        EXPECT_EQ(generation(), gen);
        expect_ssh_blocked();
        // Back to the whole file (unchanged: no new generation, but the failure is over).
        write(whole);
        wait_status([](const nlohmann::json& j) { return j["last_reload"]["ok"].get<bool>(); });
    }
    // The path turned into something that is not a file: a device that never ends, a FIFO with
    // no writer, a directory. Each reload fails at once; the control thread never hangs.
    const std::string fifo = (dir_ / "fifo").string();
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    fs::create_directories(dir_ / "a-directory");
    for (const fs::path& target : {fs::path("/dev/zero"), fs::path(fifo), dir_ / "a-directory"}) {
        fs::remove(cfg_);
        fs::create_symlink(target, cfg_);
        ASSERT_TRUE(ask(sock_, {{"cmd", "reload"}}).is_object());
        const auto s = status();
        ASSERT_FALSE(s.is_discarded()) << target;
        EXPECT_FALSE(s["last_reload"]["ok"].get<bool>()) << target;
        EXPECT_NE(s.dump().find("not a regular file"), std::string::npos) << s.dump();
        EXPECT_EQ(generation(), gen);
        fs::remove(cfg_);
        write(whole);
        wait_status([](const nlohmann::json& j) { return j["last_reload"]["ok"].get<bool>(); });
    }
    write("");
    const char* bin = std::getenv("MOATCTL");
    ASSERT_NE(bin, nullptr);
    const Result c = run_command({bin, "check", cfg_});
    EXPECT_EQ(c.status, 1);
    EXPECT_NE(c.err.find("no [appliance] section"), std::string::npos) << c.err;
    expect_forwarding();
    expect_clean_exit();
}

// 9. What only a restart applies is said in status until the restart.
TEST_F(Hostile, RestartNeededStaysInStatus) {
    const auto restart = [](const nlohmann::json& j) { return j.value("restart_needed", nlohmann::json::array()); };
    ASSERT_NO_FATAL_FAILURE(start());
    replace(config("Servers", "workers = 2\n"));
    auto s = wait_status([&](const nlohmann::json& j) { return !restart(j).empty(); });
    ASSERT_EQ(restart(s).size(), 1u) << s.dump();
    EXPECT_NE(restart(s)[0].get<std::string>().find("workers changed; restart moatd"), std::string::npos);
    // Another edit, and a reload: still said.
    const auto gen = generation();
    replace(config("Admin", "workers = 2\n"));
    s = wait_status([&](const nlohmann::json& j) { return j["generation"] > gen; });
    EXPECT_EQ(restart(s).size(), 1u) << s.dump();
    EXPECT_TRUE(ask(sock_, {{"cmd", "reload"}}).value("ok", false));
    EXPECT_EQ(restart(status()).size(), 1u);
    const char* bin = std::getenv("MOATCTL");
    ASSERT_NE(bin, nullptr);
    const Result text = run_command({bin, "status", "--socket", sock_});
    EXPECT_NE(text.out.find("restart     "), std::string::npos) << text.out;
    // Back to the running value: nothing to say.
    replace(config("Admin"));
    s = wait_status([&](const nlohmann::json& j) { return restart(j).empty(); });
    EXPECT_TRUE(restart(s).empty());
    expect_clean_exit();
}

}  // namespace
}  // namespace moat::test
