// Raw Unix-socket clients and servers for tests: what a script or an attacker would write,
// without moatctl. Every call has a deadline, whatever the other side does; the deadlines here are
// for a plain build and stretch by time_scale() (time_scale.h).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <thread>

#include "tests/common/time_scale.h"

namespace moat::test {

/// A connected socket, or -1. A listener whose backlog is full (nobody accepts) is retried for
/// 5 s (scaled); sends then time out after 5 s (scaled).
inline int dial(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    const auto five = scaled(std::chrono::seconds(5));
    const auto deadline = std::chrono::steady_clock::now() + five;
    for (;;) {
        const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            const timeval t{static_cast<time_t>(five.count() / 1000), static_cast<suseconds_t>(five.count() % 1000 * 1000)};
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, sizeof t);
            return fd;
        }
        const int e = errno;
        close(fd);
        if (e != EAGAIN || std::chrono::steady_clock::now() >= deadline)
            return -1;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

inline bool send_bytes(int fd, std::string_view s) {
    while (!s.empty()) {
        const ssize_t n = send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

/// Reads up to a newline (or EOF, or `timeout`, scaled).
inline std::string read_reply(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
    char buf[64 * 1024];
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 10) <= 0)
            continue;
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        out.append(buf, static_cast<std::size_t>(n));
        if (out.back() == '\n')
            break;
    }
    return out;
}

/// A listener that is not moatd's: it answers each connection, after reading what came within
/// 100 ms (scaled), with `reply`, one byte every `gap` (for ever when `reply` is empty: a trickle of '{').
class FakeServer {
public:
    FakeServer(const std::string& path, std::string reply, std::chrono::milliseconds gap) : path_(path) {
        fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        std::filesystem::remove(path);
        ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd_, 8) == 0;
        thread_ = std::thread([this, reply = std::move(reply), gap] {
            for (;;) {
                const int c = accept(fd_, nullptr, nullptr);
                if (c < 0 || stop_)
                    return;
                (void)read_reply(c, std::chrono::milliseconds(100));
                for (std::size_t i = 0; !stop_ && (reply.empty() || i < reply.size()); ++i) {
                    const char ch = reply.empty() ? '{' : reply[i];
                    if (send(c, &ch, 1, MSG_NOSIGNAL) != 1)
                        break;
                    if (gap.count())
                        std::this_thread::sleep_for(gap);
                }
                close(c);
            }
        });
    }
    ~FakeServer() {
        stop_ = true;
        shutdown(fd_, SHUT_RDWR);
        thread_.join();
        close(fd_);
        std::filesystem::remove(path_);
    }
    FakeServer(const FakeServer&) = delete;
    FakeServer& operator=(const FakeServer&) = delete;

    bool ok() const noexcept { return ok_; }
    int fd() const noexcept { return fd_; }

private:
    std::string path_;
    int fd_ = -1;
    bool ok_ = false;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace moat::test
