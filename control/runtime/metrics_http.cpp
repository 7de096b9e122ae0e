#include "control/runtime/metrics_http.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace moat::ctl {

// ---- MetricsBoard ------------------------------------------------------------------------------

MetricsBoard::MetricsBoard() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0)
        throw std::runtime_error(std::string("metrics: eventfd: ") + std::strerror(errno));
}

MetricsBoard::~MetricsBoard() { close(); ::close(fd_); }

bool MetricsBoard::wanted() {
    std::uint64_t n = 0;
    const bool asked = ::read(fd_, &n, sizeof n) == static_cast<ssize_t>(sizeof n);
    // The request is taken: should the snapshot not come (the control thread's turn failed), the
    // next scrape asks again instead of waiting for an answer that is not on its way.
    std::lock_guard lock(mu_);
    asked_ = false;
    return asked;
}

void MetricsBoard::publish(Stats s) {
    auto snapshot = std::make_shared<const Stats>(std::move(s));
    std::lock_guard lock(mu_);
    stats_ = std::move(snapshot);
    text_.reset();
    at_ = Clock::now();
    ++published_;
    asked_ = false;
    cv_.notify_all();
}

std::shared_ptr<const std::string> MetricsBoard::text(std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    if (closed_)
        return nullptr;
    if (!stats_ || Clock::now() - at_ > kFresh) {
        // One request stands for every scraper waiting: the control thread answers it once.
        if (!asked_) {
            asked_ = true;
            const std::uint64_t one = 1;
            if (::write(fd_, &one, sizeof one) != static_cast<ssize_t>(sizeof one))
                asked_ = false;  // the counter is full: a request is there already
        }
        const std::uint64_t before = published_;
        cv_.wait_for(lock, wait, [&] { return closed_ || published_ != before; });
        if (closed_ || !stats_)
            return nullptr;
    }
    // The first HTTP thread to serve this snapshot formats it, outside the lock (a large policy's
    // text takes seconds); the others wait for that text instead of formatting copies of their
    // own (four scrapers of a 200,000-filter policy made four 60 MB texts at once).
    const auto until = Clock::now() + wait;
    while (!text_ && formatting_ == stats_) {  // stats_ is set here
        if (!cv_.wait_until(lock, until, [&] { return closed_ || text_ || formatting_ != stats_; }))
            return nullptr;  // still formatting after `wait`: this scrape gets 503
        if (closed_)
            return nullptr;
    }
    if (text_)
        return text_;
    const std::shared_ptr<const Stats> s = stats_;
    formatting_ = s;
    lock.unlock();
    auto text = std::make_shared<const std::string>(stats_prometheus(*s));
    lock.lock();
    if (stats_ == s)
        text_ = text;
    if (formatting_ == s)
        formatting_ = nullptr;
    cv_.notify_all();
    return text;
}

void MetricsBoard::close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    cv_.notify_all();
}

// ---- The HTTP server -----------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

/// Everything a connection may take, whatever it sends: one deadline for all of it (a client
/// that sends a byte a second is cut there), and a bound on the bytes it may send (a flood of
/// headers is cut there; httplib 0.11 bounds the length of a header line, not their number).
constexpr std::chrono::seconds kConnectionDeadline{10};  // Prometheus' default scrape_timeout
constexpr std::size_t kRequestBytes = 64 * 1024;

/// Set on the accepting thread while it closes a connection that found every thread busy and
/// the waiting line full (BoundedPool::enqueue).
thread_local bool t_shed = false;
/// Set by the routing of a request that is refused: its connection ends after the reply (the
/// refused request's body, if any, was never read).
thread_local bool t_close_after = false;
class BoundedStream;
/// The connection whose request this thread is routing (its reply may extend the deadline).
thread_local BoundedStream* t_stream = nullptr;

/// httplib's TaskQueue: kThreads threads at the lowest CPU priority and a bounded waiting line.
class BoundedPool final : public httplib::TaskQueue {
public:
    BoundedPool() {
        for (std::size_t i = 0; i < MetricsLimits::kThreads; ++i)
            threads_.emplace_back([this] { run(); });
    }
    ~BoundedPool() override { shutdown(); }

    void enqueue(std::function<void()> fn) override {
        {
            std::lock_guard lock(mu_);
            if (jobs_.size() < MetricsLimits::kWaitingConnections) {
                jobs_.push_back(std::move(fn));
                cv_.notify_one();
                return;
            }
        }
        // Full: the job runs here, and only closes its socket (Http::process_and_close_socket).
        t_shed = true;
        fn();
        t_shed = false;
    }

    void shutdown() override {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
            cv_.notify_all();
        }
        for (auto& t : threads_)
            if (t.joinable())
                t.join();
    }

private:
    void run() {
        // The control thread runs on the same CPU; a scrape waits for it, never the reverse.
        setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
        for (;;) {
            std::function<void()> fn;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
                if (jobs_.empty())
                    return;  // stopping, and every waiting connection closed
                fn = std::move(jobs_.front());
                jobs_.pop_front();
            }
            fn();
        }
    }

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};

/// The slowest a reply may be read: a reply of B bytes gets kWriteTimeout more than B takes at
/// this rate, past the connection's deadline if need be (a large policy's text is tens of
/// megabytes: it is not cut short as a 200); the connection then ends with that reply.
constexpr std::size_t kReplyBytesPerSecond = 1 << 20;

/// httplib's Stream over one accepted socket, with the connection's deadline and byte budget;
/// every wait also ends when the server stops.
class BoundedStream final : public httplib::Stream {
public:
    BoundedStream(int sock, int stop_fd) : sock_(sock), stop_fd_(stop_fd), deadline_(Clock::now() + kConnectionDeadline) {}

    /// A reply of `bytes` is about to be sent: when what it takes at kReplyBytesPerSecond (and
    /// one write's wait) from now is past the deadline, the deadline moves there and the answer
    /// is true: the connection must end with this reply, or every request on a kept-alive
    /// connection would buy more time.
    bool allow_reply(std::size_t bytes) {
        const auto need = Clock::now() + MetricsLimits::kWriteTimeout + std::chrono::seconds(bytes / kReplyBytesPerSecond);
        if (need <= deadline_)
            return false;
        deadline_ = need;
        return true;
    }

    /// Waits up to `timeout` (and the deadline) for `events` on the socket.
    bool wait(short events, std::chrono::milliseconds timeout) const {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
        const auto ms = std::max<std::chrono::milliseconds::rep>(0, std::min(timeout, left).count());
        std::array<pollfd, 2> fds{{{sock_, events, 0}, {stop_fd_, POLLIN, 0}}};
        int n = 0;
        do
            n = poll(fds.data(), fds.size(), static_cast<int>(ms));
        while (n < 0 && errno == EINTR);
        return n > 0 && fds[1].revents == 0 && fds[0].revents != 0;
    }

    /// Bytes received and not yet read (httplib reads a request a byte at a time: what followed
    /// it in the same segment, a pipelined request, is here and not in the socket).
    bool buffered() const noexcept { return pos_ < len_; }
    bool is_readable() const override { return buffered() || wait(POLLIN, MetricsLimits::kReadTimeout); }
    bool is_writable() const override { return wait(POLLOUT, MetricsLimits::kWriteTimeout); }

    ssize_t read(char* ptr, size_t size) override {
        if (pos_ == len_) {
            if (received_ >= kRequestBytes || !wait(POLLIN, MetricsLimits::kReadTimeout))
                return -1;
            const ssize_t n = recv(sock_, buf_.data(), std::min(buf_.size(), kRequestBytes - received_), 0);
            if (n <= 0)
                return n;
            received_ += static_cast<std::size_t>(n);
            pos_ = 0;
            len_ = static_cast<std::size_t>(n);
        }
        const std::size_t n = std::min(size, len_ - pos_);
        std::memcpy(ptr, buf_.data() + pos_, n);
        pos_ += n;
        return static_cast<ssize_t>(n);
    }

    ssize_t write(const char* ptr, size_t size) override {
        // Never a blocking send: httplib hands over the whole body at once, and on the blocking
        // socket a client that does not read held the thread in send() until SO_SNDTIMEO
        // (kWriteTimeout), past the connection's deadline and deaf to the server's stop (SIGTERM
        // waited for it). Here every wait is the poll of wait(), which both end.
        for (;;) {
            if (!is_writable())
                return -1;
            const ssize_t n = send(sock_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                return n;
        }
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override { name_of(getpeername, ip, port); }
    void get_local_ip_and_port(std::string& ip, int& port) const override { name_of(getsockname, ip, port); }
    socket_t socket() const override { return sock_; }

private:
    template <typename F>
    void name_of(F get, std::string& ip, int& port) const {
        sockaddr_storage a{};
        socklen_t len = sizeof a;
        if (get(sock_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            return;
        std::array<char, INET6_ADDRSTRLEN> text{};
        if (a.ss_family == AF_INET) {
            const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
            inet_ntop(AF_INET, &v4->sin_addr, text.data(), text.size());
            port = ntohs(v4->sin_port);
        } else if (a.ss_family == AF_INET6) {
            const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
            inet_ntop(AF_INET6, &v6->sin6_addr, text.data(), text.size());
            port = ntohs(v6->sin6_port);
        }
        ip = text.data();
    }

    int sock_, stop_fd_;
    Clock::time_point deadline_;
    std::array<char, 4096> buf_{};
    std::size_t pos_ = 0, len_ = 0, received_ = 0;
};

/// httplib's Server with moatd's connection handling: httplib parses and routes each request,
/// and this decides how long a connection may last and what it may send (BoundedStream).
class Http final : public httplib::Server {
public:
    explicit Http(int stop_fd) : stop_fd_(stop_fd) {}

private:
    bool process_and_close_socket(socket_t sock) override {
        bool ok = false;
        if (!t_shed && !stopping()) {
            BoundedStream strm(sock, stop_fd_);
            for (std::size_t n = MetricsLimits::kRequestsPerConnection; n > 0; --n) {
                // A request already received (pipelined behind the last) needs no wait.
                if (!strm.buffered() && !strm.wait(POLLIN, MetricsLimits::kKeepAlive))
                    break;  // idle, past the deadline, or stopping
                if (stopping())
                    break;
                t_close_after = false;
                bool closed = false;
                t_stream = &strm;
                ok = process_request(strm, n == 1, closed, nullptr);
                t_stream = nullptr;
                if (!ok || closed || t_close_after)
                    break;
            }
        }
        shutdown(sock, SHUT_RDWR);
        ::close(sock);
        return ok;
    }

    bool stopping() const {
        pollfd p{stop_fd_, POLLIN, 0};
        return poll(&p, 1, 0) > 0;
    }

    int stop_fd_;
};

std::string address_text(const std::string& host, std::uint16_t port) {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

struct MetricsServer::Impl {
    explicit Impl(MetricsBoard& b) : board(b), stop_fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), http(stop_fd) {
        if (stop_fd < 0)
            throw std::runtime_error(std::string("metrics: eventfd: ") + std::strerror(errno));
    }
    ~Impl() { ::close(stop_fd); }

    MetricsBoard& board;
    int stop_fd;
    Http http;
    std::thread listener;
    bool stopped = false;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() { stop(); }

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& host, std::uint16_t port,
                                                            MetricsBoard& board) {
    auto impl = std::make_unique<Impl>(board);
    httplib::Server& http = impl->http;
    http.new_task_queue = [] { return new BoundedPool; };
    http.set_read_timeout(MetricsLimits::kReadTimeout);
    http.set_write_timeout(MetricsLimits::kWriteTimeout);
    http.set_keep_alive_timeout(MetricsLimits::kKeepAlive.count());
    http.set_keep_alive_max_count(MetricsLimits::kRequestsPerConnection);
    http.set_payload_max_length(0);  // no request has a body (and the routing refuses one before reading it)

    // Routing: GET (and HEAD) /metrics, nothing else. A refused request ends its connection.
    http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
        const auto refuse = [&](int status, const char* why) {
            t_close_after = true;
            res.status = status;
            res.set_header("Connection", "close");
            res.set_content(why, "text/plain; charset=utf-8");
            return httplib::Server::HandlerResponse::Handled;
        };
        if (req.path != "/metrics")
            return refuse(404, "not found: moatd serves GET /metrics (Prometheus text) and nothing else\n");
        if (req.method != "GET" && req.method != "HEAD") {
            res.set_header("Allow", "GET, HEAD");
            return refuse(405, "method not allowed: /metrics is read-only (GET or HEAD)\n");
        }
        if (req.has_header("Transfer-Encoding") ||
            (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0"))
            return refuse(413, "a request to /metrics has no body\n");
        return httplib::Server::HandlerResponse::Unhandled;
    });
    MetricsBoard* b = &board;
    http.Get("/metrics", [b](const httplib::Request&, httplib::Response& res) {
        const std::shared_ptr<const std::string> text = b->text(MetricsLimits::kSnapshotWait);
        if (!text) {
            res.status = 503;
            res.set_content("moatd has no counters to show yet, or is stopping\n", "text/plain; charset=utf-8");
            return;
        }
        if (t_stream && t_stream->allow_reply(text->size())) {
            t_close_after = true;
            res.set_header("Connection", "close");
        }
        // Sent from the shared text, not a copy of it per reply.
        res.set_content_provider(
            text->size(), "text/plain; version=0.0.4",
            [text](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                return sink.write(text->data() + offset, std::min(length, text->size() - offset));
            });
    });

    const std::string address = address_text(host, port);
    errno = 0;
    if (!http.bind_to_port(host, port)) {
        const int err = errno;
        return fail("cannot listen on " + address + (err ? std::string(": ") + std::strerror(err) : std::string()) +
                    (err == EADDRINUSE ? " (another program has the port: stop it, or choose another port in metrics = ...)"
                     : err == EADDRNOTAVAIL ? " (no interface of this machine has that address)"
                                            : ""));
    }
    impl->listener = std::thread([&http] { http.listen_after_bind(); });
    // stop() only reaches a server that is running: wait until it is.
    for (int i = 0; i < 2000 && !http.is_running(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::unique_ptr<MetricsServer> server(new MetricsServer(std::move(impl)));
    server->address_ = address;
    return server;
}

void MetricsServer::stop() {
    if (!impl_ || impl_->stopped)
        return;
    impl_->stopped = true;
    const std::uint64_t one = 1;
    (void)!::write(impl_->stop_fd, &one, sizeof one);  // ends every wait of every connection
    impl_->board.close();                               // and of every scrape waiting for a snapshot
    impl_->http.stop();                                 // closes the listening socket
    if (impl_->listener.joinable())
        impl_->listener.join();  // the listener joins the pool's threads before it returns
}

}  // namespace moat::ctl
