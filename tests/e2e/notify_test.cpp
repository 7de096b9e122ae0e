// moatd under a service manager (moatd.service, Type=notify), with this test as the manager: a
// Unix datagram socket in $NOTIFY_SOCKET receives what moatd says. READY=1 comes only once the
// ports are started and moatd forwards and answers on its control socket; SIGHUP is bracketed by
// RELOADING=1 and READY=1; WATCHDOG=1 comes periodically when $WATCHDOG_USEC asks for it (and not
// when $WATCHDOG_PID names another process); a $NOTIFY_SOCKET that cannot be reached stops
// nothing. Under journald ($JOURNAL_STREAM naming stderr) every log line carries a priority.
// moatd runs on null ports, in memory, with explicit lcores; every wait is a generous deadline.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "control/runtime/control_socket.h"
#include "tests/common/lcores.h"
#include "tests/common/moatd_runner.h"
#include "tests/common/time_scale.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using moat::test::Moatd;
using moat::test::scaled;

namespace {

/// The manager's end: a datagram socket bound at `path`, one message per receive.
class NotifySocket {
public:
    explicit NotifySocket(const fs::path& path) {
        fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        bound_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    }
    ~NotifySocket() {
        if (fd_ >= 0)
            close(fd_);
    }
    NotifySocket(const NotifySocket&) = delete;
    NotifySocket& operator=(const NotifySocket&) = delete;

    bool bound() const { return bound_; }

    /// The next message, or nullopt after `budget` (scaled).
    std::optional<std::string> receive(std::chrono::milliseconds budget) {
        const auto deadline = std::chrono::steady_clock::now() + scaled(budget);
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0)
                return std::nullopt;
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(left.count())) <= 0)
                continue;
            char buf[4096];
            const ssize_t n = recv(fd_, buf, sizeof buf, 0);
            if (n >= 0)
                return std::string(buf, static_cast<std::size_t>(n));
        }
    }

    /// Receives until a message holds `line` (a whole line of it, e.g. "READY=1"); the messages
    /// before it go to `before`. nullopt after `budget` (scaled).
    std::optional<std::string> wait_for(const std::string& line, std::chrono::milliseconds budget,
                                        std::vector<std::string>* before = nullptr) {
        const auto deadline = std::chrono::steady_clock::now() + scaled(budget);
        while (std::chrono::steady_clock::now() < deadline) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            // receive() scales again; the deadline here is what counts.
            const auto m = receive(std::max(left / static_cast<long>(moat::test::time_scale()), 1ms));
            if (!m)
                continue;
            if (has_line(*m, line))
                return m;
            if (before)
                before->push_back(*m);
        }
        return std::nullopt;
    }

    static bool has_line(const std::string& message, const std::string& line) {
        std::istringstream in(message);
        for (std::string l; std::getline(in, l);)
            if (l == line)
                return true;
        return false;
    }

private:
    int fd_ = -1;
    bool bound_ = false;
};

/// Sets environment variables for the moatd started next (it inherits them) and restores them.
class ScopedEnv {
public:
    void set(const char* name, const std::string& value) {
        save(name);
        setenv(name, value.c_str(), 1);
    }
    void unset(const char* name) {
        save(name);
        unsetenv(name);
    }
    ~ScopedEnv() {
        for (auto it = saved_.rbegin(); it != saved_.rend(); ++it)  // the first save holds the original
            it->second ? setenv(it->first.c_str(), it->second->c_str(), 1) : unsetenv(it->first.c_str());
    }

private:
    void save(const char* name) {
        const char* v = std::getenv(name);
        saved_.emplace_back(name, v ? std::optional<std::string>(v) : std::nullopt);
    }
    std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

class Notify : public ::testing::Test {
protected:
    void SetUp() override {
        static int n = 0;
        ++n;
        dir_ = fs::temp_directory_path() / ("moat-notify." + std::to_string(getpid()) + "." + std::to_string(n));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        cfg_ = dir_ / "moat.ini";
        prefix_ = "moat-notify-" + std::to_string(getpid()) + "-" + std::to_string(n);
        std::ofstream(cfg_) << "[appliance]\noutside = net_null0\ninside = net_null1\n"
                            << "eal = --no-huge -m 256 " << moat::test::lcores_option() << " --file-prefix " << prefix_ << "\n"
                            << "control = " << (dir_ / "moat.sock").string() << "\n"
                            << "assign = Web\n\n[filterlist Web]\nfilter = *+198.18.0.10:80:TCP\n\n[filterlist All]\n"
                            << "filter = *+*\n\n[policy Web]\nrule = All -> block\nrule = Web -> permit\n";
        // What the test's own environment may hold (it may run under systemd) must not leak in.
        for (const char* v : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"})
            env_.unset(v);
    }
    void TearDown() override {
        // EAL's runtime directory of the prefix (DPDK: /var/run/dpdk for root, else
        // $XDG_RUNTIME_DIR/dpdk or /tmp/dpdk): moatd is gone, nothing else uses it.
        const char* xdg = std::getenv("XDG_RUNTIME_DIR");
        const fs::path runtime = getuid() == 0 ? fs::path("/var/run/dpdk") : fs::path(xdg ? xdg : "/tmp") / "dpdk";
        std::error_code ec;
        fs::remove_all(runtime / prefix_, ec);
        if (!HasFailure())
            fs::remove_all(dir_);
        else
            std::cerr << "kept " << dir_ << " for inspection\n";
    }

    std::unique_ptr<Moatd> start() {
        auto m = std::make_unique<Moatd>(std::vector<std::string>{"--config", cfg_.string()}, (dir_ / "moatd.log").string());
        EXPECT_TRUE(m->started());
        return m;
    }

    /// moatd's answer to status on its control socket, or an error.
    moat::ctl::Result<nlohmann::json> status() const {
        return moat::ctl::control_request((dir_ / "moat.sock").string(), {{"cmd", "status"}}, 5000);
    }

    /// Waits until the control socket answers status (moatd is up, whatever it told a manager).
    bool answers(std::chrono::seconds budget = 60s) const {
        return moat::test::eventually([&] { return status().ok(); }, budget, 50ms);
    }

    fs::path dir_, cfg_;
    std::string prefix_;  ///< moatd's --file-prefix
    ScopedEnv env_;
};

TEST_F(Notify, ReadyOnlyOnceForwardingThenReloadAndStop) {
    NotifySocket manager(dir_ / "notify");
    ASSERT_TRUE(manager.bound());
    env_.set("NOTIFY_SOCKET", (dir_ / "notify").string());
    auto moatd = start();

    std::vector<std::string> before;
    const auto ready = manager.wait_for("READY=1", 60s, &before);
    // Read the log at once: whatever moatd logged before it sent READY=1 is in the file by now.
    const std::string log = moatd->log();
    ASSERT_TRUE(ready) << "no READY=1; moatd's log:\n" << log;
    EXPECT_TRUE(before.empty()) << "moatd said something before READY=1: " << before.front();
    for (const char* line : {"moatd: outside = net_null0 (port 0, ", "moatd: inside = net_null1 (port 1, ",
                             "moatd: worker 0 on lcore 1", "moatd: control socket ", "generation 1", "moatd: forwarding"})
        EXPECT_NE(log.find(line), std::string::npos) << "READY=1 came before '" << line << "' was logged:\n" << log;
    EXPECT_TRUE(NotifySocket::has_line(*ready, "STATUS=generation 1 in force")) << *ready;
    // Ready means ready: the control socket answers at once, with the first generation.
    const auto s = status();
    ASSERT_TRUE(s.ok()) << s.error();
    EXPECT_EQ((*s)["generation"], 1);

    // systemctl reload: RELOADING=1, then READY=1 once the reload's outcome is known.
    moatd->signal(SIGHUP);
    const auto reloading = manager.wait_for("RELOADING=1", 30s);
    ASSERT_TRUE(reloading) << moatd->log();
    const auto reloaded = manager.wait_for("READY=1", 30s);
    ASSERT_TRUE(reloaded) << moatd->log();
    EXPECT_TRUE(NotifySocket::has_line(*reloaded, "STATUS=generation 2 in force")) << *reloaded;

    // A reload that fails keeps generation 2, and STATUS= says why.
    std::ofstream(cfg_, std::ios::app) << "rule = Nowhere -> permit\n";
    moatd->signal(SIGHUP);
    ASSERT_TRUE(manager.wait_for("RELOADING=1", 30s)) << moatd->log();
    std::vector<std::string> statuses;
    const auto after_failure = manager.wait_for("READY=1", 30s, &statuses);
    ASSERT_TRUE(after_failure) << moatd->log();
    statuses.push_back(*after_failure);
    bool told = false;
    for (const auto& m : statuses)
        told = told || m.find("STATUS=generation 2 in force; the last reload (") != std::string::npos;
    EXPECT_TRUE(told) << "no STATUS= about the failed reload; moatd's log:\n" << moatd->log();

    moatd->signal(SIGTERM);
    const auto stopping = manager.wait_for("STOPPING=1", 30s);
    EXPECT_TRUE(stopping) << moatd->log();
    EXPECT_EQ(moatd->stop(), 0) << moatd->log();
}

TEST_F(Notify, WatchdogPingsWhileRunning) {
    NotifySocket manager(dir_ / "notify");
    ASSERT_TRUE(manager.bound());
    env_.set("NOTIFY_SOCKET", (dir_ / "notify").string());
    env_.set("WATCHDOG_USEC", "200000");  // 0.2 s: a ping every 0.1 s
    auto moatd = start();
    ASSERT_TRUE(manager.wait_for("READY=1", 60s)) << moatd->log();
    for (int i = 0; i < 5; ++i)
        ASSERT_TRUE(manager.wait_for("WATCHDOG=1", 10s)) << "ping " << i << " did not come; moatd's log:\n" << moatd->log();
    EXPECT_NE(moatd->log().find("service manager watchdog: 200 ms, WATCHDOG=1 every 100 ms"), std::string::npos)
        << moatd->log();
    EXPECT_EQ(moatd->stop(), 0) << moatd->log();
}

TEST_F(Notify, AHugeWatchdogIntervalIsNotAFlood) {
    // The largest interval sd_watchdog_enabled accepts (UINT64_MAX - 1 us): half of it in the
    // clock's nanoseconds overflowed, and moatd pinged every millisecond.
    NotifySocket manager(dir_ / "notify");
    ASSERT_TRUE(manager.bound());
    env_.set("NOTIFY_SOCKET", (dir_ / "notify").string());
    env_.set("WATCHDOG_USEC", "18446744073709551614");
    auto moatd = start();
    ASSERT_TRUE(manager.wait_for("READY=1", 60s)) << moatd->log();
    int pings = 0;
    const auto until = std::chrono::steady_clock::now() + 1s;
    while (std::chrono::steady_clock::now() < until)
        if (const auto m = manager.receive(50ms); m && NotifySocket::has_line(*m, "WATCHDOG=1"))
            ++pings;
    EXPECT_LE(pings, 1) << "WATCHDOG=1 " << pings << " times in a second; moatd's log:\n" << moatd->log();
    EXPECT_EQ(moatd->stop(), 0) << moatd->log();
}

TEST_F(Notify, NoWatchdogForAnotherProcess) {
    // $WATCHDOG_PID names the process the manager watches: not moatd, so moatd must not ping.
    NotifySocket manager(dir_ / "notify");
    ASSERT_TRUE(manager.bound());
    env_.set("NOTIFY_SOCKET", (dir_ / "notify").string());
    env_.set("WATCHDOG_USEC", "200000");
    env_.set("WATCHDOG_PID", std::to_string(getpid()));
    auto moatd = start();
    ASSERT_TRUE(manager.wait_for("READY=1", 60s)) << moatd->log();
    // Ten intervals: a moatd that pinged would have sent ten.
    std::vector<std::string> seen;
    EXPECT_FALSE(manager.wait_for("WATCHDOG=1", 2s, &seen)) << moatd->log();
    EXPECT_EQ(moatd->stop(), 0) << moatd->log();
}

TEST_F(Notify, UnreachableSocketStopsNothing) {
    const std::string long_path = "/" + std::string(200, 'x') + "/notify";  // longer than sun_path
    std::ofstream(dir_ / "plain-file") << "not a socket\n";
    for (const std::string& socket : {(dir_ / "missing" / "notify").string(), std::string("garbage"), std::string("@"),
                                      "@moat-test-nobody-" + std::to_string(getpid()), long_path,
                                      (dir_ / "plain-file").string()}) {
        SCOPED_TRACE("NOTIFY_SOCKET=" + socket.substr(0, 60));
        env_.set("NOTIFY_SOCKET", socket);
        env_.set("WATCHDOG_USEC", "100000");  // every ping fails too
        auto moatd = start();
        ASSERT_TRUE(answers()) << moatd->log();
        const auto s = status();
        ASSERT_TRUE(s.ok()) << s.error();
        EXPECT_EQ((*s)["generation"], 1);
        // Pings keep failing for a while; moatd keeps answering and logs the failure once.
        std::this_thread::sleep_for(500ms);
        EXPECT_TRUE(status().ok()) << moatd->log();
        EXPECT_EQ(moatd->stop(), 0) << moatd->log();
        const std::string log = moatd->log();
        const std::string warning = "warning moatd: cannot notify the service manager";
        const auto first = log.find(warning);
        EXPECT_NE(first, std::string::npos) << log;
        EXPECT_EQ(log.find("cannot notify", first + warning.size()), std::string::npos) << "logged more than once:\n" << log;
    }
}

TEST_F(Notify, UnreadSocketStallsNothing) {
    // A manager (or a supervisor that merely sets $NOTIFY_SOCKET) that never reads: its socket's
    // queue fills after net.unix.max_dgram_qlen datagrams (10 by default). A blocking send would
    // stop the control loop there for good: no status, no reload, no SIGTERM. moatd must go on,
    // dropping what the manager does not take.
    NotifySocket manager(dir_ / "notify");  // bound, never read
    ASSERT_TRUE(manager.bound());
    env_.set("NOTIFY_SOCKET", (dir_ / "notify").string());
    env_.set("WATCHDOG_USEC", "20000");  // a ping every 10 ms: the queue is full within a second
    auto moatd = start();
    ASSERT_TRUE(answers()) << moatd->log();
    std::this_thread::sleep_for(1s);  // far more pings than the queue holds
    for (int i = 0; i < 3; ++i) {
        const auto s = status();
        ASSERT_TRUE(s.ok()) << "the control loop is stuck (" << s.error() << "); moatd's log:\n" << moatd->log();
        std::this_thread::sleep_for(200ms);
    }
    moatd->signal(SIGHUP);  // RELOADING=1 and READY=1 go nowhere too
    ASSERT_TRUE(moat::test::eventually([&] {
        const auto s = status();
        return s.ok() && (*s)["generation"] == 2;
    }, 30s, 50ms)) << moatd->log();
    EXPECT_EQ(moatd->stop(), 0) << moatd->log();  // STOPPING=1 must not hold the exit either
    EXPECT_NE(moatd->log().find("cannot notify the service manager"), std::string::npos) << moatd->log();
}

TEST_F(Notify, JournalLinesCarryPriorities) {
    // moatd's stderr is the file whose device and inode $JOURNAL_STREAM names, as under systemd.
    const fs::path log_path = dir_ / "moatd.log";
    std::ofstream(log_path).flush();
    struct stat st {};
    ASSERT_EQ(stat(log_path.c_str(), &st), 0);
    env_.set("JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
    // No policy assigned: a warning among the info lines.
    {
        std::ifstream in(cfg_);
        std::stringstream text;
        text << in.rdbuf();
        std::string t = text.str();
        t.replace(t.find("assign = Web"), 12, "assign =");
        std::ofstream(cfg_) << t;
    }
    auto moatd = start();
    ASSERT_TRUE(answers()) << moatd->log();
    EXPECT_EQ(moatd->stop(), 0) << moatd->log();
    const std::string log = moatd->log();
    EXPECT_NE(log.find("\n<6>forwarding\n"), std::string::npos) << log;
    EXPECT_NE(log.find("\n<4>no policy is assigned"), std::string::npos) << log;
    EXPECT_EQ(log.find("moatd: forwarding"), std::string::npos) << "plain lines under journald:\n" << log;
    // Every line of moatd's own starts with a priority (EAL's lines are DPDK's).
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
        if (!line.starts_with("EAL:") && !line.starts_with("TELEMETRY:")) {
            EXPECT_TRUE(line.starts_with("<3>") || line.starts_with("<4>") || line.starts_with("<6>")) << line;
        }
    }
}

TEST_F(Notify, PlainLinesCarryTimeAndLevel) {
    auto moatd = start();
    ASSERT_TRUE(answers()) << moatd->log();
    EXPECT_EQ(moatd->stop(), 0) << moatd->log();
    const std::string log = moatd->log();
    // 2026-12-01T16:25:52.123Z info moatd: forwarding
    const std::regex line(R"((^|\n)\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info moatd: forwarding\n)");
    EXPECT_TRUE(std::regex_search(log, line)) << log;
}

}  // namespace
