// The control socket (DESIGN section 7): Unix stream sockets, one JSON request line in and one
// JSON reply line out per connection.
//
// Served by an event loop on the control thread (epoll): every socket is non-blocking, every
// connection has its own buffers and deadlines, and the work done for one connection per turn
// of the loop is bounded, so no client (one that sends a byte a second, one that never reads its
// reply, one that vanishes) can delay a reload, a signal or another client. Large replies are
// made part by part as the client reads them. Writes never raise SIGPIPE.
//
// Access is by the socket file's mode and group: the main socket (`control`, 0660) serves every
// command; a read-only socket (`control_readonly`) answers queries and refuses changes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "control/config/result.h"

namespace moat::ctl {

/// What a connection may ask for.
enum class Access : std::uint8_t {
    read_only,  ///< status, stats, rules, explain
    full,       ///< also reload, assign, unassign
};

/// The process at the other end of a connection (SO_PEERCRED), for the log.
struct Peer {
    pid_t pid = -1;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
};

struct RequestContext {
    Access access = Access::full;
    Peer peer;
};

/// What a reply's `more` says after a call.
enum class Part : std::uint8_t {
    more,   ///< call again for the next part
    done,   ///< that was the last part
    later,  ///< nothing yet (a reload still building): call again after ControlServer::wake()
};

/// One reply. `text` goes out first; then, while `more` is set, it is called for the next part
/// each time the connection has sent what it had (so a large reply is made as fast as the
/// client reads it and never sits whole in memory), until it says done. The server ends the
/// reply with a newline. `more` runs on the control thread and should add a few tens of KB.
struct Reply {
    std::string text;
    std::function<Part(std::string& out)> more;
    /// A stream (`monitor`): `text` and each part are whole lines, and the connection stays open
    /// for as long as the client does. It is not among the connections the limits on replies
    /// count, has no lifetime and no write deadline: whoever makes the parts bounds what waits
    /// for a reader that stalls (`more` says Part::later when it has nothing).
    bool stream = false;
};

using Handler = std::function<Reply(const nlohmann::json& request, const RequestContext& ctx)>;

/// {"ok": false, "errors": [message]}.
Reply error_reply(const std::string& message);

/// The object `head` with one more member, the array `key` of `rows` elements `row(0)`, ... made
/// a part at a time as the client reads (the rows of a 100K-filter policy never exist as one
/// string). `head` must be an object.
Reply json_rows_reply(const nlohmann::json& head, const std::string& key, std::size_t rows,
                      std::function<nlohmann::json(std::size_t)> row);

/// {"ok": true, "text": TEXT} where TEXT is `head` followed by what `row(i, out)` appends for each
/// of `rows` rows, made a part at a time likewise.
Reply text_rows_reply(const std::string& head, std::size_t rows, std::function<void(std::size_t, std::string&)> row);

/// One request line to its reply: parses the JSON, calls `handler` with the object, and turns
/// whatever goes wrong (not JSON, not an object, an exception from the handler) into an error
/// reply. Never throws; `on_exception` (may be empty) hears what an exception said.
Reply reply_to(std::string_view line, const RequestContext& ctx, const Handler& handler,
               const std::function<void(const std::string&)>& on_exception = {});

/// One socket to listen on.
struct ListenSpec {
    std::string path;
    Access access = Access::full;
    mode_t mode = 0660;
    std::optional<gid_t> group;  ///< group of the socket file; unset: moatd's own
    /// Requests per second each user (SO_PEERCRED uid) may make, with bursts of `burst`; beyond
    /// it a connection is told so and closed before its request is read. 0: no limit. For a
    /// socket anyone may use: one user's flood leaves the others their share.
    double rate_per_uid = 0, burst_per_uid = 0;
    /// Replies going out at once (each holds a snapshot of a generation); 0: Limits::replying.
    std::size_t replying = 0;
};

class ControlServer {
public:
    struct Limits {
        /// Per socket: connections whose request has not fully arrived, and connections whose
        /// reply is still going out. Over either, the one that has waited longest (for its
        /// request, or for its reader) is closed: a flood of silent or unread connections pushes
        /// out its own members, not a client that sends its request and reads its reply.
        std::size_t waiting = 128;
        std::size_t replying = 16;
        std::size_t parked = 256;  ///< connections waiting for a reload's outcome (hold only a ticket)
        std::size_t request_bytes = 64 * 1024;
        std::chrono::milliseconds request_time{2000};  ///< from connect to the request's newline
        std::chrono::milliseconds write_stall{5000};   ///< a reply that makes no progress this long
        std::chrono::milliseconds lifetime{60000};     ///< a connection's whole life
    };

    /// Serves `handler`. Throws std::runtime_error when epoll cannot be had. Control thread.
    explicit ControlServer(Handler handler, Limits limits);
    explicit ControlServer(Handler handler) : ControlServer(std::move(handler), Limits{}) {}
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    /// Listens on `spec.path` (creating its directory, replacing a stale socket, refusing one a
    /// running moatd answers on).
    Status listen(const ListenSpec& spec);

    /// Readable when serve() has work (an epoll descriptor): poll it with the other fds.
    int fd() const noexcept { return epoll_; }

    /// Does the work that is ready, without blocking and within about 2 ms (what is left is done
    /// on the next call): accepts and answers new requests first, then sends one part of each
    /// reply in turn, and closes connections past their deadlines. Control thread.
    void serve();

    /// When serve() must run next even without events (the earliest deadline), if any.
    std::optional<std::chrono::steady_clock::time_point> next_deadline() const;

    std::size_t connections() const noexcept { return conns_.size(); }

    /// Asks the replies that said Part::later again, on the next serve(). Control thread.
    void wake();

    /// Where exceptions thrown by the handler are reported (moatd's log).
    void on_error(std::function<void(const std::string&)> f) { on_error_ = std::move(f); }

private:
    using Clock = std::chrono::steady_clock;
    struct Listener;
    struct Conn;

    /// Accepts and answers new connections of `listener` until `until` (at least one).
    void accept_all(std::size_t listener, std::chrono::steady_clock::time_point until);
    /// Reads what has arrived; answers when the request is whole. False when `c` is gone.
    bool on_readable(Conn& c);
    bool start_reply(Conn& c, std::string_view line);
    /// Sends what it can; false when the connection is finished or broken.
    bool flush(Conn& c);
    void close_conn(std::uint64_t id);
    enum class State : std::uint8_t { waiting, replying, parked, streaming };
    static State state_of(const Conn& c) noexcept;
    /// Closes the connections of listener `li` in state `s` beyond `limit`, the one that waited
    /// longest first among those accepted before this turn; `keep` only when no other can go.
    /// False when `keep` was closed.
    bool enforce(std::size_t li, State s, std::size_t limit, std::uint64_t keep);
    void watch(Conn& c, std::uint32_t events);

    Handler handler_;
    Limits limits_;
    int epoll_ = -1;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;
    std::uint64_t next_id_ = 1;
    std::uint64_t turn_ = 0;  ///< serve() calls so far
    std::function<void(const std::string&)> on_error_;
};

/// Client side: sends `request` to the socket at `path` and returns the reply (a JSON object with
/// a boolean "ok", of up to 512 MB), or why there is none. `timeout_ms` bounds the whole
/// exchange, connecting included.
Result<nlohmann::json> control_request(const std::string& path, const nlohmann::json& request, int timeout_ms = 60000);

/// Client side of a stream (`monitor`): sends `request` and calls `on_line` with each line that
/// comes back (without its newline), until it returns false, moatd closes the connection, or no
/// first line came within `timeout_ms` (connecting included). Returns why it ended early: an
/// error when moatd could not be reached or sent nothing; fine when moatd closed it or `on_line`
/// said stop. `on_read`, when given, is called after the lines of each read have been handed to
/// `on_line` (a client that prints them flushes there: once a read, not once a line).
Status control_stream(const std::string& path, const nlohmann::json& request, int timeout_ms,
                      const std::function<bool(std::string_view)>& on_line,
                      const std::function<void()>& on_read = {});

}  // namespace moat::ctl
