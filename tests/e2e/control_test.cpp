// The running moatd's control plane end to end: `moatctl status/stats/rules/explain/reload/
// assign/unassign` over the control socket, reloads from SIGHUP and from edits of the config file
// (in place and write-then-rename), a broken edit that keeps the running generation, and the DPDK
// telemetry commands under /moat/. moatd runs with pcap ports fed a few packets.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "tests/common/command.h"
#include "tests/common/lcores.h"
#include "tests/common/moatd_runner.h"
#include "tests/common/packets.h"
#include "tests/common/pcap_io.h"
#include "tests/common/time_scale.h"

namespace moat::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string config_text(const fs::path& dir, const std::string& assign, const std::string& extra = "") {
    return "[appliance]\n"
           "outside = net_pcap0,rx_pcap=" + (dir / "or.pcap").string() + ",tx_pcap=" + (dir / "ot.pcap").string() + "\n"
           "inside = net_pcap1,rx_pcap=" + (dir / "ir.pcap").string() + ",tx_pcap=" + (dir / "it.pcap").string() + "\n"
           "eal = --no-huge -m 256 " + test::lcores_option() + " --file-prefix " + dir.filename().string() + "\n"
           "control = " + (dir / "moat.sock").string() + "\n"
           "me = 198.18.0.10\n"
           "assign = " + assign + "\n"
           "\n"
           "[filterlist Web]\nfilter = *+198.18.0.10:80:TCP\n"
           "\n"
           "[filterlist SSH]\nfilter = *+198.18.0.10:22:TCP\n"
           "\n"
           "[filterlist Everything]\nfilter = *+0\n"
           "\n"
           "[policy Servers]\nrule = Web -> permit\nrule = Everything -> block\n"
           "\n"
           "[policy Admin]\nrule = Web -> permit\nrule = SSH -> permit\nrule = Everything -> block\n" +
           extra;
}

class Control : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("moat-ctl-" + std::to_string(getpid()));
        fs::create_directories(dir_);
        cfg_ = (dir_ / "moat.ini").string();
        // Outside: 3 web packets (permitted), 2 SSH packets (blocked under Servers).
        write_web_and_ssh(dir_.string(), 3, 2);
        std::ofstream(cfg_) << config_text(dir_, "Servers");
    }
    void TearDown() override { fs::remove_all(dir_); }

    Result moatctl(std::vector<std::string> args) const {
        const char* bin = std::getenv("MOATCTL");
        EXPECT_NE(bin, nullptr) << "MOATCTL is not set (meson sets it)";
        // moatctl COMMAND --socket PATH ARGS...
        args.insert(args.begin() + 1, {"--socket", (dir_ / "moat.sock").string()});
        args.insert(args.begin(), bin ? bin : "moatctl");
        return run_command(args);
    }
    nlohmann::json json_of(std::vector<std::string> args) const {
        args.push_back("--json");
        const Result r = moatctl(args);
        EXPECT_EQ(r.status, 0) << args[0] << ": " << r.err;
        return nlohmann::json::parse(r.out, nullptr, false);
    }
    /// Polls `status --json` until `done` holds or `seconds` (scaled) pass; returns the last status.
    nlohmann::json wait_status(const std::function<bool(const nlohmann::json&)>& done, double seconds = 5) const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(scaled_seconds(seconds));
        nlohmann::json s;
        do {
            const Result r = moatctl({"status", "--json"});
            s = nlohmann::json::parse(r.out, nullptr, false);
            if (r.status == 0 && !s.is_discarded() && done(s))
                return s;
            std::this_thread::sleep_for(50ms);
        } while (std::chrono::steady_clock::now() < deadline);
        return s;
    }

    fs::path dir_;
    std::string cfg_;
};

/// One request to DPDK's telemetry socket of the EAL instance `prefix`; the reply's JSON.
nlohmann::json telemetry(const std::string& prefix, const std::string& cmd) {
    const char* xdg = std::getenv("XDG_RUNTIME_DIR");
    const std::string base = getuid() == 0 || !xdg ? "/var/run/dpdk" : std::string(xdg) + "/dpdk";
    const std::string path = base + "/" + prefix + "/dpdk_telemetry.v2";
    const int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ADD_FAILURE() << "cannot connect to " << path << ": " << std::strerror(errno);
        close(fd);
        return {};
    }
    std::vector<char> buf(1 << 16);
    ssize_t n = read(fd, buf.data(), buf.size());  // the greeting: version, pid, max_output_len
    EXPECT_GT(n, 0);
    EXPECT_EQ(write(fd, cmd.data(), cmd.size()), static_cast<ssize_t>(cmd.size()));
    n = read(fd, buf.data(), buf.size());
    close(fd);
    if (n <= 0)
        return {};
    return nlohmann::json::parse(std::string(buf.data(), static_cast<std::size_t>(n)), nullptr, false);
}

TEST_F(Control, EveryCommandAgainstTheRunningMoatd) {
    Moatd moatd({"--config", cfg_, "--stats-period", "0.1"}, (dir_ / "moatd.log").string());
    ASSERT_TRUE(moatd.started());
    const auto traffic = moatd.wait_stats(
        [](const nlohmann::json& s) { return s["ports"]["outside"]["rx_packets"].get<int>() == 5; }, 30);
    ASSERT_TRUE(traffic && (*traffic)["ports"]["outside"]["rx_packets"] == 5) << moatd.log();

    // The socket exists with mode 0660 (root and the socket's group only).
    struct stat st {};
    ASSERT_EQ(stat((dir_ / "moat.sock").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);

    // status
    nlohmann::json s = json_of({"status"});
    EXPECT_EQ(s["policy"], "Servers");
    EXPECT_EQ(s["generation"], 1);
    EXPECT_EQ(s["config"], cfg_);
    EXPECT_TRUE(s["last_reload"]["ok"].get<bool>());
    ASSERT_EQ(s["ports"].size(), 2u);
    EXPECT_EQ(s["ports"][0]["side"], "outside");
    EXPECT_EQ(s["workers"].size(), 1u);
    const Result text = moatctl({"status"});
    EXPECT_EQ(text.status, 0) << text.err;
    EXPECT_NE(text.out.find("policy      'Servers', generation 1"), std::string::npos) << text.out;

    // stats: the three web packets hit Web, the two SSH packets the catch-all block.
    const auto filter_packets = [](const nlohmann::json& stats, const std::string& list) {
        for (const auto& f : stats["filters"])
            if (f["filterlist"] == list)
                return f["packets"].get<int>();
        return -1;
    };
    nlohmann::json st1 = json_of({"stats"});
    EXPECT_EQ(filter_packets(st1, "Web"), 3);
    EXPECT_EQ(filter_packets(st1, "Everything"), 2);
    EXPECT_EQ(filter_packets(st1, "SSH"), -1) << "SSH is not in the assigned policy";
    EXPECT_EQ(st1["ports"]["inside"]["tx_packets"], 3);
    EXPECT_EQ(st1["drops"]["policy"], 2);
    const Result prom = moatctl({"stats", "--prometheus"});
    EXPECT_EQ(prom.status, 0) << prom.err;
    EXPECT_TRUE(std::regex_search(prom.out, std::regex(R"(moat_filter_packets_total\{[^}]*filterlist="Web"[^}]*\} 3)")))
        << prom.out;
    EXPECT_TRUE(std::regex_search(prom.out, std::regex(R"(moat_port_rx_packets_total\{port="outside"\} 5)"))) << prom.out;
    EXPECT_TRUE(std::regex_search(prom.out, std::regex(R"(moat_worker_dropped_total\{worker="0"\} 2)"))) << prom.out;

    // Per worker: totals, and rates over the last second once moatd has sampled twice (it
    // samples once a second; the five packets came at start-up, so the rates settle at zero).
    const auto rated = moatd.wait_stats(
        [](const nlohmann::json& st) { return st["workers"][0]["rates"]["seconds"].get<double>() > 0; }, 30);
    ASSERT_TRUE(rated) << moatd.log();
    const nlohmann::json& w0 = (*rated)["workers"][0];
    EXPECT_EQ(w0["rx_packets"], 5);
    EXPECT_EQ(w0["tx_packets"], 3);
    EXPECT_EQ(w0["dropped"], 2);
    for (const char* k : {"rx_pps", "rx_bps", "tx_pps", "dropped_pps", "cycles_per_packet", "busy", "burst"})
        EXPECT_TRUE(w0["rates"][k].is_number()) << k << " in " << w0.dump();
    // The worker timed the polls that brought the five packets (one to five of them) and
    // nothing else: its cost per packet is their cycles over the five.
    const auto busy_polls = w0["busy_polls"].get<std::uint64_t>();
    EXPECT_GE(busy_polls, 1u) << w0.dump();
    EXPECT_LE(busy_polls, 5u) << w0.dump();
    const auto busy_cycles = w0["busy_cycles"].get<std::uint64_t>();
    EXPECT_GT(busy_cycles, 0u) << w0.dump();
    EXPECT_DOUBLE_EQ(w0["cycles_per_packet"].get<double>(), busy_cycles / 5.0) << w0.dump();
    EXPECT_TRUE(std::regex_search(prom.out, std::regex(R"(moat_worker_busy_polls_total\{worker="0"\} [1-5]\n)"))) << prom.out;
    const Result stext = moatctl({"stats"});
    EXPECT_EQ(stext.status, 0) << stext.err;
    EXPECT_TRUE(std::regex_search(stext.out, std::regex(R"(worker +lcore +rx pkt/s +tx pkt/s +drop pkt/s)"))) << stext.out;
    EXPECT_TRUE(std::regex_search(stext.out, std::regex(R"(\n0 +\d+ +\d+ +\d+ +\d+ +[0-9.]+ +[0-9.]+ +\d+% +5 +3 )"))) << stext.out;

    // rules: compiled order, Web's entries first, with their hits.
    const nlohmann::json rules = json_of({"rules"});
    ASSERT_EQ(rules["rules"].size(), 4u);  // two filters, each mirrored
    EXPECT_EQ(rules["rules"][0]["filterlist"], "Web");
    EXPECT_EQ(rules["rules"][0]["packets"], 3);
    EXPECT_EQ(rules["rules"][3]["filterlist"], "Everything");
    EXPECT_EQ(rules["rules"][3]["action"], "block");

    // explain against the running policy.
    Result ex = moatctl({"explain", "tcp 198.18.100.1:40000 -> 198.18.0.10:22"});
    EXPECT_EQ(ex.status, 0) << ex.err;
    EXPECT_NE(ex.out.find("block"), std::string::npos) << ex.out;
    EXPECT_NE(ex.out.find("Everything"), std::string::npos) << ex.out;
    // moatd refusing the request is its answer: said, and not replaced by the file's, also when
    // the socket comes from the environment (where an unreachable moatd falls back to the file).
    const std::string huge = "tcp 198.18.100.1:1 -> 198.18.0.10:80 payload-hex " + std::string(80000, 'a');
    for (const bool from_env : {false, true}) {
        const char* bin = std::getenv("MOATCTL");
        ex = from_env ? run_command({"env", "MOAT_SOCKET=" + (dir_ / "moat.sock").string(), "MOAT_CONFIG=" + cfg_,
                                     bin ? bin : "moatctl", "explain", huge})
                      : moatctl({"explain", huge});
        EXPECT_EQ(ex.status, 1) << ex.out << ex.err;
        EXPECT_NE(ex.err.find("moatctl explain: moatd: "), std::string::npos) << ex.err;
        EXPECT_EQ(ex.err.find("did not answer"), std::string::npos) << ex.err;
        EXPECT_EQ(ex.out, "");
    }

    // reload: a new generation; the unchanged filters keep their counts.
    Result r = moatctl({"reload"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("generation 2 in force"), std::string::npos) << r.out;
    st1 = json_of({"stats"});
    EXPECT_EQ(st1["generation"], 2);
    EXPECT_EQ(filter_packets(st1, "Web"), 3) << "counters of an unchanged filter carry over";

    // assign: the config file says so (it survives a restart), and the policy is in force.
    r = moatctl({"assign", "Admin"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(slurp(cfg_).find("\nassign = Admin\n"), std::string::npos) << slurp(cfg_);
    s = json_of({"status"});
    EXPECT_EQ(s["policy"], "Admin");
    EXPECT_EQ(s["generation"], 3);
    ex = moatctl({"explain", "tcp 198.18.100.1:40000 -> 198.18.0.10:22"});
    EXPECT_NE(ex.out.find("permit"), std::string::npos) << ex.out;
    st1 = json_of({"stats"});
    EXPECT_EQ(filter_packets(st1, "Web"), 3) << "Web is the same filter in Admin";
    EXPECT_EQ(filter_packets(st1, "SSH"), 0) << "a new filter starts at zero";

    // A policy that does not exist: refused, nothing changes.
    r = moatctl({"assign", "Nobody"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("Nobody"), std::string::npos) << r.err;
    EXPECT_EQ(json_of({"status"})["generation"], 3);
    EXPECT_NE(slurp(cfg_).find("\nassign = Admin\n"), std::string::npos);

    // unassign
    r = moatctl({"unassign"});
    EXPECT_EQ(r.status, 0) << r.err;
    s = json_of({"status"});
    EXPECT_TRUE(s["policy"].is_null());
    EXPECT_EQ(s["generation"], 4);
    EXPECT_EQ(slurp(cfg_).find("assign = Admin"), std::string::npos);

    // A broken edit in place: seen by the file watch, reported in status, generation 4 stays.
    std::ofstream(cfg_) << config_text(dir_, "Servers", "[policy Broken]\nrule = Web -> nonsense\n");
    s = wait_status([](const nlohmann::json& j) { return !j["last_reload"]["ok"].get<bool>(); });
    ASSERT_FALSE(s["last_reload"]["ok"].get<bool>()) << "the file watch did not reload: " << moatd.log();
    EXPECT_EQ(s["generation"], 4);
    EXPECT_EQ(s["last_reload"]["trigger"], "config file changed");
    ASSERT_FALSE(s["last_reload"]["errors"].empty());
    EXPECT_NE(s["last_reload"]["errors"][0].get<std::string>().find("moat.ini:"), std::string::npos) << s;
    EXPECT_NE(s["last_reload"]["errors"][0].get<std::string>().find("nonsense"), std::string::npos) << s;
    const Result text2 = moatctl({"status"});
    EXPECT_NE(text2.out.find("FAILED"), std::string::npos) << text2.out;

    // SIGHUP reloads too (still broken: still generation 4).
    moatd.signal(SIGHUP);
    s = wait_status([](const nlohmann::json& j) { return j["last_reload"]["trigger"] == "SIGHUP"; });
    EXPECT_EQ(s["last_reload"]["trigger"], "SIGHUP");
    EXPECT_EQ(s["generation"], 4);

    // An editor's write-then-rename with the fix: generation 5, policy Servers.
    const std::string tmp = cfg_ + ".swp";
    std::ofstream(tmp) << config_text(dir_, "Servers");
    fs::rename(tmp, cfg_);
    s = wait_status([](const nlohmann::json& j) { return j["generation"] == 5; });
    EXPECT_EQ(s["generation"], 5) << moatd.log();
    EXPECT_EQ(s["policy"], "Servers");
    EXPECT_TRUE(s["last_reload"]["ok"].get<bool>());

    // DPDK telemetry.
    const std::string prefix = dir_.filename().string();
    const nlohmann::json ts = telemetry(prefix, "/moat/status");
    EXPECT_EQ(ts["/moat/status"]["generation"], 5) << ts;
    const nlohmann::json tst = telemetry(prefix, "/moat/stats");
    EXPECT_EQ(tst["/moat/stats"]["outside_rx_packets"], 5) << tst;
    const nlohmann::json tr = telemetry(prefix, "/moat/rules");
    EXPECT_FALSE(tr["/moat/rules"].empty()) << tr;

    EXPECT_EQ(moatd.stop(), 0) << moatd.log();
    const std::string log = moatd.log();
    for (const char* line : {"reload (moatctl reload): generation 2 in force", "reload (assign): generation 3 in force",
                             "reload (unassign): generation 4 in force", "reload (config file changed) failed",
                             "reload (SIGHUP) failed", "reload (config file changed): generation 5 in force"})
        EXPECT_NE(log.find(line), std::string::npos) << "the log lacks '" << line << "':\n" << log;
    EXPECT_FALSE(fs::exists(dir_ / "moat.sock")) << "moatd leaves its socket behind";
}

TEST_F(Control, MoatctlSaysWhenNoMoatdRuns) {
    const Result r = moatctl({"status"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("cannot reach moatd on " + (dir_ / "moat.sock").string()), std::string::npos) << r.err;
    const Result rl = moatctl({"reload"});
    EXPECT_EQ(rl.status, 1);
    EXPECT_EQ(rl.err.find("stays in force"), std::string::npos) << "nothing is in force: " << rl.err;
}

}  // namespace
}  // namespace moat::test
