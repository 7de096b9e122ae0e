// The read-only Prometheus endpoint (`metrics = ADDRESS:PORT` in [appliance]): `GET /metrics`
// answers exactly the text `moatctl stats --prometheus` prints, served by cpp-httplib on threads
// of its own. It is not the control socket: a scraper needs no access to it, and it can change
// nothing.
//
// Threads. The HTTP threads never touch the Runtime or the workers' counters. The control thread
// publishes a snapshot of the counters (an immutable Stats that holds its generation) on a
// MetricsBoard when a scraper asks for one, at most once per MetricsBoard::kFresh; the HTTP
// threads turn it into text and serve it. Whatever scrapers do (stall, connect by the hundred,
// send garbage), the control thread's share is one collect_stats() per kFresh, the same as one
// `moatctl stats`, and the workers' is nothing. The HTTP threads run at the lowest CPU priority,
// so that formatting a large policy's text never takes the CPU from the control thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "control/config/result.h"
#include "control/runtime/stats.h"

namespace moat::ctl {

/// Where the control thread leaves the counters for the HTTP threads.
class MetricsBoard {
public:
    /// A snapshot at most this old is served as it is; an older one is asked for again.
    static constexpr std::chrono::milliseconds kFresh{500};

    MetricsBoard();  ///< throws std::runtime_error when it cannot get an eventfd
    ~MetricsBoard();
    MetricsBoard(const MetricsBoard&) = delete;
    MetricsBoard& operator=(const MetricsBoard&) = delete;

    /// Readable (an eventfd) when an HTTP thread waits for a snapshot: then call wanted() and
    /// publish(). Control thread.
    int wanted_fd() const noexcept { return fd_; }
    /// Reads wanted_fd(); true when a snapshot is asked for. Control thread.
    bool wanted();
    /// Makes `s` the snapshot the HTTP threads serve. Control thread.
    void publish(Stats s);

    /// The Prometheus text of a snapshot at most kFresh old: when the last one is older, asks the
    /// control thread for a new one and waits for it up to `wait`, then serves the newest there
    /// is. nullptr when there is none yet or the board is closed. HTTP threads.
    std::shared_ptr<const std::string> text(std::chrono::milliseconds wait);

    /// From now on text() answers nullptr at once, also to those waiting. Any thread.
    void close();

private:
    using Clock = std::chrono::steady_clock;

    mutable std::mutex mu_;  // guards everything below
    std::condition_variable cv_;
    std::shared_ptr<const Stats> stats_;
    std::shared_ptr<const std::string> text_;  ///< stats_ formatted, by the first HTTP thread that needed it
    std::shared_ptr<const Stats> formatting_;  ///< the snapshot an HTTP thread is formatting now, if any
    Clock::time_point at_;                      ///< when stats_ was taken
    std::uint64_t published_ = 0;
    bool asked_ = false;  ///< a request is on wanted_fd() and not yet taken (wanted())
    bool closed_ = false;
    int fd_ = -1;
};

/// The HTTP server: limits that a scraper cannot get past, whatever it sends.
struct MetricsLimits {
    static constexpr std::size_t kThreads = 4;             ///< requests served at once
    static constexpr std::size_t kWaitingConnections = 64; ///< accepted and waiting for a thread; more are closed at once
    static constexpr std::chrono::seconds kReadTimeout{2};    ///< a request's bytes, each read
    static constexpr std::chrono::seconds kWriteTimeout{5};   ///< the reply's bytes, each write
    static constexpr std::chrono::seconds kKeepAlive{2};      ///< a kept connection's next request
    static constexpr std::size_t kRequestsPerConnection = 10;
    static constexpr std::chrono::seconds kSnapshotWait{2};   ///< for the control thread's snapshot
};

class MetricsServer {
public:
    /// Listens on `host`:`port` (a literal address, as config.cpp checks it) and serves
    /// `board` on threads of its own until stop(); fails with why it cannot listen.
    static Result<std::unique_ptr<MetricsServer>> start(const std::string& host, std::uint16_t port, MetricsBoard& board);

    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    /// Stops listening, ends the connections being served and joins every thread. Idempotent.
    void stop();

    /// `host:port` (IPv6 in brackets), for the log.
    const std::string& address() const noexcept { return address_; }

private:
    struct Impl;
    explicit MetricsServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
    std::string address_;
};

}  // namespace moat::ctl
