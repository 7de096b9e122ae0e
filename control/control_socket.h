// The control socket (DESIGN section 7): a Unix stream socket, one JSON request and one JSON
// reply per line. Access is by file mode (0660): root and the socket's group only.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace moat::ctl {

class ControlSocket {
public:
    using Handler = std::function<nlohmann::json(const nlohmann::json&)>;

    /// Listens on `path` (creating its directory, replacing a stale socket). On failure `ok()` is
    /// false and `error()` says why. Control thread.
    ControlSocket(const std::string& path, Handler handler);
    ~ControlSocket();
    ControlSocket(const ControlSocket&) = delete;
    ControlSocket& operator=(const ControlSocket&) = delete;

    bool ok() const noexcept { return fd_ >= 0; }
    const std::string& error() const noexcept { return error_; }
    int fd() const noexcept { return fd_; }

    /// Serves the connections waiting on fd(): each sends one request line (within a second)
    /// and gets one reply line. Call when fd() is readable. Control thread.
    void serve();

private:
    std::string path_;
    Handler handler_;
    int fd_ = -1;
    std::string error_;
};

/// Client side: sends `request` to the socket at `path` and returns the reply, or sets `error`.
nlohmann::json control_request(const std::string& path, const nlohmann::json& request, std::string& error,
                               int timeout_ms = 10000);

}  // namespace moat::ctl
