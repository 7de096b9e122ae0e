// The control socket's server on its own (no moatd): its limits under clients that arrive
// together and never read, its per-user rate on a socket anyone may use, and its client's
// deadline against a server that trickles.
#include "control/runtime/control_socket.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "control/config/json_text.h"
#include "tests/common/unix_socket.h"

namespace moat::ctl {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using test::dial;
using test::FakeServer;

using test::read_reply;

class Server : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("moat-server-" + std::to_string(getpid()));
        fs::create_directories(dir_);
        path_ = (dir_ / "s.sock").string();
    }
    void TearDown() override { fs::remove_all(dir_); }
    fs::path dir_;
    std::string path_;
};

/// A reply of `parts` parts of 32 KiB each (a large `rules`).
Reply big_reply(int parts) {
    return {"{\"ok\":true,\"x\":\"", [n = 0, parts](std::string& out) mutable {
                out.append(32 * 1024, 'x');
                if (++n < parts)
                    return Part::more;
                out += "\"}";
                return Part::done;
            }};
}

TEST_F(Server, ReadersThatNeverReadArriveTogetherAndNothingIsUsedAfterItIsFreed) {
    // 24 large replies requested in one turn, nobody reading, at most 2 replying: the newest get
    // closed as they come (AddressSanitizer sees any use of a closed connection).
    ControlServer::Limits lim;
    lim.replying = 2;
    ControlServer server([](const nlohmann::json&, const RequestContext&) { return big_reply(64); }, lim);
    ASSERT_TRUE(server.listen({path_, Access::full, 0600, {}}));
    std::vector<int> fds;
    for (int i = 0; i < 24; ++i) {
        const int fd = dial(path_);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(send(fd, "{}\n", 3, MSG_NOSIGNAL), 3);
        fds.push_back(fd);
    }
    for (int turn = 0; turn < 20; ++turn)
        server.serve();
    EXPECT_LE(server.connections(), 2u);
    // The two kept are served whole once they read.
    int whole = 0;
    for (const int fd : fds) {
        for (int turn = 0; turn < 200; ++turn)
            server.serve();  // between reads: the server sends what the socket takes
        std::string got;
        for (int round = 0; round < 400 && (got.empty() || got.back() != '\n'); ++round) {
            server.serve();
            got += read_reply(fd, 5ms);
        }
        if (!got.empty() && got.back() == '\n' && !nlohmann::json::parse(got, nullptr, false).is_discarded())
            ++whole;
        close(fd);
    }
    EXPECT_GE(whole, 1);
}

TEST_F(Server, OneUsersFloodOnAnOpenSocketIsLimited) {
    int answered = 0;
    ControlServer server([&](const nlohmann::json&, const RequestContext&) {
        ++answered;
        return Reply{"{\"ok\":true}", {}};
    });
    ListenSpec spec{path_, Access::read_only, 0666, {}};
    spec.rate_per_uid = 10;
    spec.burst_per_uid = 5;
    ASSERT_TRUE(server.listen(spec));
    int refused = 0;
    for (int i = 0; i < 50; ++i) {
        const int fd = dial(path_);
        ASSERT_GE(fd, 0);
        send(fd, "{}\n", 3, MSG_NOSIGNAL);
        server.serve();
        const std::string r = read_reply(fd, 200ms);
        close(fd);
        if (r.find("too many requests from uid") != std::string::npos)
            ++refused;
    }
    // The burst of 5 and what 10 a second refill over the run; the rest refused before parsing.
    EXPECT_GE(answered, 5);
    EXPECT_LT(answered, 30);
    EXPECT_EQ(answered + refused, 50);
}

TEST_F(Server, TheClientGivesUpOnATricklingServerAtItsDeadline) {
    // A listener that is not moatd: it accepts, then sends a byte every 100 ms, for ever.
    FakeServer trickle(path_, "", 100ms);
    ASSERT_TRUE(trickle.ok());
    const auto t0 = std::chrono::steady_clock::now();
    const auto reply = control_request(path_, {{"cmd", "status"}}, 500);
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(reply);
    EXPECT_NE(reply.error().find("no reply"), std::string::npos) << reply.error();
    // A deadline per byte would wait for ever on a server that sends one every 100 ms; the whole
    // exchange's 500 ms ends it. 5 s (scaled) is far above 500 ms and far below for ever.
    EXPECT_LT(took, test::scaled(5s)) << "the deadline is for the whole exchange, not each byte";
}

TEST_F(Server, AReplyThatIsNotAReplyIsAnError) {
    for (const char* fake : {"[]\n", "{\"ok\":\"yes\"}\n", "null\n", "{}\n"}) {
        FakeServer server(path_, fake, 0ms);
        ASSERT_TRUE(server.ok());
        const auto reply = control_request(path_, {{"cmd", "status"}}, 2000);
        ASSERT_FALSE(reply) << fake;
        EXPECT_NE(reply.error().find("is not a reply"), std::string::npos) << fake << ": " << reply.error();
    }
}

}  // namespace
}  // namespace moat::ctl
