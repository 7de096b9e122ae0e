#include "control/runtime/control_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "control/config/json_text.h"
#include "control/config/text.h"

namespace moat::ctl {

namespace {

/// epoll data of a listening socket: its index with the top bit set (connections use ids).
constexpr std::uint64_t kListenerTag = std::uint64_t{1} << 63;
/// The work serve() does per turn of the control loop before it hands back (what is left stays
/// ready and is done on the next turn): new connections first, then one part of each reply in
/// turn, so one client's large reply never holds up a signal, a reload or another client.
constexpr std::chrono::microseconds kTurnBudget{2000};
/// Connections accepted per turn of the loop at most (more wait in the backlog for the next
/// turn, as do those that come once the turn's budget is spent).
constexpr int kAcceptsPerTurn = 256;
/// A streamed reply's rows are made in parts of about this size.
constexpr std::size_t kPartBytes = 32 * 1024;
/// What a client reads at most: a sanity bound, far above any reply (rules of a 100K policy are
/// tens of MB).
constexpr std::size_t kMaxReply = std::size_t{512} << 20;

Status fill_addr(const std::string& path, sockaddr_un& a) {
    a = {};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path)
        return fail("socket path " + path + " is longer than " + std::to_string(sizeof a.sun_path - 1) + " bytes");
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return {};
}

}  // namespace

Reply error_reply(const std::string& message) {
    return {json_text({{"ok", false}, {"errors", {message}}}), {}};
}

Reply json_rows_reply(const nlohmann::json& head, const std::string& key, std::size_t rows,
                      std::function<nlohmann::json(std::size_t)> row) {
    std::string text = json_text(head);  // "{...}": reopened for one more member
    text.pop_back();
    text += (head.empty() ? "" : ",") + json_text(key) + ":[";
    return {std::move(text), [i = std::size_t{0}, rows, row = std::move(row)](std::string& out) mutable {
                while (i < rows && out.size() < kPartBytes) {
                    if (i > 0)
                        out += ',';
                    out += json_text(row(i++));
                }
                if (i < rows)
                    return Part::more;
                out += "]}";
                return Part::done;
            }};
}

Reply text_rows_reply(const std::string& head, std::size_t rows, std::function<void(std::size_t, std::string&)> row) {
    // JSON escapes character by character, so whole rows can be escaped one part at a time.
    const auto escaped = [](std::string_view s) {
        const std::string j = json_text(s);
        return j.substr(1, j.size() - 2);
    };
    return {"{\"ok\":true,\"text\":\"" + escaped(head),
            [i = std::size_t{0}, rows, row = std::move(row), escaped](std::string& out) mutable {
                std::string part;
                while (i < rows && part.size() < kPartBytes)
                    row(i++, part);
                out += escaped(part);
                if (i < rows)
                    return Part::more;
                out += "\"}";
                return Part::done;
            }};
}

Reply reply_to(std::string_view line, const RequestContext& ctx, const Handler& handler,
               const std::function<void(const std::string&)>& on_exception) {
    try {
        const nlohmann::json req = nlohmann::json::parse(line, nullptr, false);
        if (req.is_discarded())
            return error_reply("the request is not JSON: send one line such as {\"cmd\": \"status\"}");
        if (!req.is_object())
            return error_reply("the request is not a JSON object: send one line such as {\"cmd\": \"status\"}");
        return handler(req, ctx);
    } catch (const std::exception& e) {
        const std::string what = valid_utf8(e.what());
        if (on_exception)
            on_exception(what);
        return error_reply("the request failed: " + what);
    } catch (...) {
        if (on_exception)
            on_exception("an unknown exception");
        return error_reply("the request failed");
    }
}

struct ControlServer::Listener {
    ListenSpec spec;
    int fd = -1;
    struct Bucket {
        double tokens = 0;
        Clock::time_point at;
    };
    std::unordered_map<uid_t, Bucket> buckets;  ///< per user, when spec.rate_per_uid is set

    /// Takes a token of `uid`'s bucket; false when it has none left.
    bool admit(uid_t uid, Clock::time_point now) {
        if (spec.rate_per_uid <= 0)
            return true;
        auto [it, fresh] = buckets.try_emplace(uid, Bucket{spec.burst_per_uid, now});
        Bucket& b = it->second;
        b.tokens = std::min(spec.burst_per_uid,
                            b.tokens + spec.rate_per_uid * std::chrono::duration<double>(now - b.at).count());
        b.at = now;
        if (b.tokens < 1)
            return false;
        b.tokens -= 1;
        return true;
    }
};

struct ControlServer::Conn {
    std::uint64_t id = 0;
    int fd = -1;
    std::size_t listener = 0;
    RequestContext ctx;
    bool replying = false;  ///< the request is in; the reply is going out
    bool complete = false;  ///< the reply's last part (and its newline) is in `out`
    std::string in;
    std::string out;
    std::size_t sent = 0;  ///< of `out`
    std::function<Part(std::string&)> more;
    bool parked = false;  ///< its reply said Part::later: waits for wake()
    bool stream = false;  ///< Reply::stream: no lifetime, no write deadline, not counted
    Clock::time_point waiting_since;  ///< accepted, then the reply's last progress
    Clock::time_point deadline;  ///< the request's newline, then the reply's next progress
    Clock::time_point expires;   ///< the end of the connection's life
    std::uint32_t events = 0;
    bool registered = false;  ///< with epoll
    std::uint64_t turn = 0;  ///< the serve() turn that accepted it
};

ControlServer::ControlServer(Handler handler, Limits limits) : handler_(std::move(handler)), limits_(limits) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0)
        throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
}

ControlServer::~ControlServer() {
    for (auto& [id, c] : conns_)
        close(c->fd);
    conns_.clear();
    for (const auto& l : listeners_) {
        close(l->fd);
        unlink(l->spec.path.c_str());
    }
    close(epoll_);
}

Status ControlServer::listen(const ListenSpec& spec) {
    sockaddr_un a;
    if (Status filled = fill_addr(spec.path, a); !filled)
        return filled;
    std::error_code ec;
    const auto dir = std::filesystem::path(spec.path).parent_path();
    if (!dir.empty())
        std::filesystem::create_directories(dir, ec);
    // A socket file left by a moatd that died: nobody answers on it, so it is replaced. One that
    // answers belongs to a running moatd: refuse rather than steal it.
    if (std::filesystem::is_socket(spec.path, ec)) {
        if (control_request(spec.path, {{"cmd", "status"}}, 500))
            return fail("another moatd answers on " + spec.path + "; give this one its own socket path");
        unlink(spec.path.c_str());
    }
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fail(std::string("socket: ") + std::strerror(errno));
    // Bound with a restrictive umask, so the socket never exists with a wider mode than asked.
    const mode_t old = umask(0177);
    const int rc = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    umask(old);
    if (rc != 0) {
        const Error error = fail("cannot listen on " + spec.path + ": " + std::strerror(errno));
        close(fd);
        return error;
    }
    if ((spec.group && chown(spec.path.c_str(), static_cast<uid_t>(-1), *spec.group) != 0) ||
        chmod(spec.path.c_str(), spec.mode) != 0 || ::listen(fd, SOMAXCONN) != 0) {
        const Error error = fail("cannot listen on " + spec.path + ": " + std::strerror(errno));
        close(fd);
        unlink(spec.path.c_str());
        return error;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenerTag | listeners_.size();
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        const Error error = fail(std::string("epoll_ctl: ") + std::strerror(errno));
        close(fd);
        unlink(spec.path.c_str());
        return error;
    }
    auto l = std::make_unique<Listener>();
    l->spec = spec;
    l->fd = fd;
    listeners_.push_back(std::move(l));
    return {};
}

void ControlServer::watch(Conn& c, std::uint32_t events) {
    if (c.registered && c.events == events)
        return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = c.id;
    epoll_ctl(epoll_, c.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fd, &ev);
    c.registered = true;
    c.events = events;
}

void ControlServer::close_conn(std::uint64_t id) {
    const auto it = conns_.find(id);
    if (it == conns_.end())
        return;
    epoll_ctl(epoll_, EPOLL_CTL_DEL, it->second->fd, nullptr);
    close(it->second->fd);
    conns_.erase(it);
}

ControlServer::State ControlServer::state_of(const Conn& c) noexcept {
    return !c.replying ? State::waiting : c.stream ? State::streaming : c.parked ? State::parked : State::replying;
}

bool ControlServer::enforce(std::size_t li, State s, std::size_t limit, std::uint64_t keep) {
    for (;;) {
        std::size_t n = 0;
        Conn* oldest = nullptr;
        for (auto& [id, c] : conns_) {
            if (c->listener != li || state_of(*c) != s)
                continue;
            ++n;
            // Only a connection that has had a turn to send or read gives way: one accepted in
            // this turn may be a client whose request is on its way.
            if (id != keep && c->turn != turn_ && (!oldest || c->waiting_since < oldest->waiting_since))
                oldest = c.get();
        }
        if (n <= limit)
            return true;
        if (!oldest) {
            close_conn(keep);  // nobody older: the newcomer does not get in
            return false;
        }
        close_conn(oldest->id);
    }
}

void ControlServer::accept_all(std::size_t li, Clock::time_point until) {
    Listener& l = *listeners_[li];
    for (int n = 0; n < kAcceptsPerTurn && (n == 0 || Clock::now() < until); ++n) {
        const int fd = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;  // EAGAIN: nobody else waiting (or out of descriptors: the next turn tries again)
        const auto now = Clock::now();
        auto c = std::make_unique<Conn>();
        c->id = next_id_++;
        c->fd = fd;
        c->listener = li;
        c->ctx.access = l.spec.access;
        ucred cred{};
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            c->ctx.peer = {cred.pid, cred.uid, cred.gid};
        if (!l.admit(c->ctx.peer.uid, now)) {
            const std::string busy = error_reply("too many requests from uid " + std::to_string(c->ctx.peer.uid) +
                                                 " on this socket (at most " +
                                                 std::to_string(static_cast<int>(l.spec.rate_per_uid)) + " a second)")
                                         .text + "\n";
            send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            continue;
        }
        c->waiting_since = now;
        c->turn = turn_;
        c->deadline = now + limits_.request_time;
        c->expires = now + limits_.lifetime;
        Conn& ref = *c;
        conns_.emplace(c->id, std::move(c));
        watch(ref, EPOLLIN | EPOLLRDHUP);
        // A client usually sends its request as it connects: answered now, it never waits
        // among the silent ones.
        const std::uint64_t id = ref.id;
        if (on_readable(ref) && !ref.replying)
            enforce(li, State::waiting, limits_.waiting, id);
    }
}

bool ControlServer::on_readable(Conn& c) {
    char buf[16 * 1024];
    for (;;) {
        const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0) {
            // The client closed its side: what it sent is the request (a line without its
            // newline), or there is nothing to answer.
            if (n == 0 && !c.in.empty())
                return start_reply(c, c.in);
            close_conn(c.id);
            return false;
        }
        const std::size_t from = c.in.size();
        c.in.append(buf, static_cast<std::size_t>(n));
        const auto nl = c.in.find('\n', from);
        if (nl != std::string::npos && nl <= limits_.request_bytes)
            return start_reply(c, std::string_view(c.in).substr(0, nl));
        if (c.in.size() > limits_.request_bytes) {
            c.out = error_reply("the request is longer than " + std::to_string(limits_.request_bytes) +
                                " bytes (one JSON object on one line)")
                        .text + "\n";
            c.in.clear();
            c.replying = true;
            c.complete = true;
            c.deadline = Clock::now() + limits_.write_stall;
            watch(c, EPOLLOUT);
            if (!flush(c)) {
                close_conn(c.id);
                return false;
            }
            return true;
        }
    }
}

bool ControlServer::start_reply(Conn& c, std::string_view line) {
    Reply r = reply_to(line, c.ctx, handler_, on_error_);
    c.in.clear();
    c.in.shrink_to_fit();
    c.replying = true;
    c.out = std::move(r.text);
    c.more = std::move(r.more);
    c.stream = r.stream && c.more;
    if (c.stream)
        c.expires = Clock::time_point::max();
    if (!c.more) {
        c.out += '\n';
        c.complete = true;
    }
    c.waiting_since = Clock::now();
    c.deadline = c.stream ? Clock::time_point::max() : c.waiting_since + limits_.write_stall;
    watch(c, EPOLLOUT);
    if (!flush(c)) {
        close_conn(c.id);
        return false;
    }
    if (c.stream)
        return true;
    // Still going out (the client reads slowly, the reply is large) or waiting for a reload.
    const ListenSpec& spec = listeners_[c.listener]->spec;
    return c.parked ? enforce(c.listener, State::parked, limits_.parked, c.id)
                    : enforce(c.listener, State::replying, spec.replying ? spec.replying : limits_.replying, c.id);
}

bool ControlServer::flush(Conn& c) {
    for (int parts = 0;;) {
        while (c.sent < c.out.size()) {
            const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return true;  // the client is not reading yet: EPOLLOUT says when it does
            if (n <= 0)
                return false;  // gone (EPIPE, ECONNRESET): nothing more to do for it
            c.sent += static_cast<std::size_t>(n);
            c.waiting_since = Clock::now();
            c.deadline = c.stream ? Clock::time_point::max() : c.waiting_since + limits_.write_stall;
        }
        if (c.complete)
            return false;  // all sent: the exchange is over
        if (parts++ == 1)
            return true;  // the rest on a later turn, after the others
        c.out.clear();
        c.sent = 0;
        Part part = Part::done;
        try {
            part = c.more(c.out);
        } catch (const std::exception& e) {
            if (on_error_)
                on_error_(std::string("a streamed reply failed: ") + e.what());
            return false;  // half a reply cannot be mended: the client sees the connection close
        }
        if (part == Part::later && c.out.empty()) {
            // Nothing to send until wake(): only a hang-up is watched for meanwhile.
            // Only a full hang-up (always reported) ends the wait: a client that closed just its
            // writing side still reads its reply.
            c.parked = true;
            c.deadline = c.expires;  // however long the reload takes, within the connection's life
            watch(c, 0);
            return true;
        }
        if (part == Part::done) {
            c.out += '\n';
            c.complete = true;
            c.more = nullptr;
        }
    }
}

void ControlServer::serve() {
    const auto start = Clock::now();
    ++turn_;
    epoll_event ev[64];
    const int n = epoll_wait(epoll_, ev, 64, 0);
    // New connections first: their requests are usually in already, and most are answered
    // whole at once.
    for (int i = 0; i < n; ++i)
        if (ev[i].data.u64 & kListenerTag)
            accept_all(static_cast<std::size_t>(ev[i].data.u64 & ~kListenerTag), start + kTurnBudget);
    for (int i = 0; i < n && Clock::now() - start < kTurnBudget; ++i) {
        const std::uint64_t tag = ev[i].data.u64;
        if (tag & kListenerTag)
            continue;
        const auto it = conns_.find(tag);
        if (it == conns_.end())
            continue;  // closed earlier in this turn
        Conn& c = *it->second;
        if (!c.replying) {
            on_readable(c);
        } else if (c.parked || !flush(c)) {
            close_conn(c.id);  // a parked one has only a hang-up to report
        }
    }
    // Deadlines: a request that does not come, a reply nobody reads, a connection that lasts.
    const auto now = Clock::now();
    std::vector<std::uint64_t> late;
    for (const auto& [id, c] : conns_)
        if (now >= c->deadline || now >= c->expires)
            late.push_back(id);
    for (const std::uint64_t id : late) {
        Conn& c = *conns_.at(id);
        if (!c.replying) {
            const std::string msg = error_reply("no complete request line within " +
                                                std::to_string(limits_.request_time.count()) + " ms")
                                        .text + "\n";
            send(c.fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        close_conn(id);
    }
}

void ControlServer::wake() {
    for (auto& [id, c] : conns_)
        if (c->parked) {
            c->parked = false;
            watch(*c, EPOLLOUT);  // writable at once: serve() asks the reply again
        }
}

std::optional<std::chrono::steady_clock::time_point> ControlServer::next_deadline() const {
    std::optional<Clock::time_point> next;
    for (const auto& [id, c] : conns_) {
        const auto t = std::min(c->deadline, c->expires);
        if (!next || t < *next)
            next = t;
    }
    return next;
}

Result<nlohmann::json> control_request(const std::string& path, const nlohmann::json& request, int timeout_ms) {
    sockaddr_un a;
    if (Status filled = fill_addr(path, a); !filled)
        return fail(filled.error());
    // One deadline for the whole exchange: a server that trickles its reply a byte at a time, or
    // whose listen queue is full, cannot hold the client past it.
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    const auto left_ms = [&] {
        return static_cast<int>(std::max<long long>(
            0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
    };
    int fd = -1;
    for (;;) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return fail(std::string("socket: ") + std::strerror(errno));
        if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0)
            break;
        const int e = errno;
        close(fd);
        if (e != EAGAIN || left_ms() == 0)  // EAGAIN: the listen queue is full for now
            return fail("cannot reach moatd on " + path + ": " + std::strerror(e));
        poll(nullptr, 0, 5);
    }
    const std::string line = json_text(request) + "\n";
    std::size_t sent = 0;
    std::string reply;
    bool whole = false;
    char buf[64 * 1024];
    while (!whole && left_ms() > 0) {
        pollfd p{fd, static_cast<short>(sent < line.size() ? POLLIN | POLLOUT : POLLIN), 0};
        if (poll(&p, 1, left_ms()) <= 0)
            continue;
        if (sent < line.size() && (p.revents & POLLOUT)) {
            const ssize_t n = send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                break;
            sent += n > 0 ? static_cast<std::size_t>(n) : 0;
        }
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            break;
        const std::size_t from = reply.size();
        reply.append(buf, static_cast<std::size_t>(n));
        if (const auto nl = reply.find('\n', from); nl != std::string::npos) {
            reply.resize(nl);
            whole = true;
        } else if (reply.size() > kMaxReply) {
            break;
        }
    }
    close(fd);
    if (!whole)
        return fail("no reply from moatd on " + path + (reply.size() > kMaxReply ? " (a reply over 512 MB)" : ""));
    nlohmann::json j = nlohmann::json::parse(reply, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("ok") || !j["ok"].is_boolean())
        return fail("moatd's reply on " + path + " is not a reply (a JSON object with \"ok\")");
    return j;
}

Status control_stream(const std::string& path, const nlohmann::json& request, int timeout_ms,
                      const std::function<bool(std::string_view)>& on_line,
                      const std::function<void()>& on_read) {
    sockaddr_un a;
    if (Status filled = fill_addr(path, a); !filled)
        return filled;
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(std::string("socket: ") + std::strerror(errno));
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        const int e = errno;
        close(fd);
        return fail("cannot reach moatd on " + path + ": " + std::strerror(e));
    }
    const std::string line = json_text(request) + "\n";
    if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
        close(fd);
        return fail("cannot send the request to moatd on " + path);
    }
    std::string buf;
    bool first = true;
    char chunk[64 * 1024];
    for (;;) {
        // Only the first line has a deadline: a monitor may then wait for packets for ever.
        pollfd p{fd, POLLIN, 0};
        const int ready = poll(&p, 1, first ? timeout_ms : -1);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0) {
            close(fd);
            return fail("no reply from moatd on " + path);
        }
        const ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            if (first)
                return fail("no reply from moatd on " + path);
            return {};
        }
        buf.append(chunk, static_cast<std::size_t>(n));
        std::size_t from = 0;
        for (std::size_t nl; (nl = buf.find('\n', from)) != std::string::npos; from = nl + 1) {
            first = false;
            if (!on_line(std::string_view(buf).substr(from, nl - from))) {
                close(fd);
                return {};
            }
        }
        buf.erase(0, from);
        if (on_read)
            on_read();
        if (buf.size() > kMaxReply) {
            close(fd);
            return fail("a line of over 512 MB from moatd on " + path);
        }
    }
}

}  // namespace moat::ctl
