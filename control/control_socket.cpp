#include "control/control_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace moat::ctl {

namespace {

constexpr std::size_t kMaxRequest = 64 * 1024;

bool fill_addr(const std::string& path, sockaddr_un& a, std::string& error) {
    a = {};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path) {
        error = "socket path " + path + " is longer than " + std::to_string(sizeof a.sun_path - 1) + " bytes";
        return false;
    }
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return true;
}

/// Reads up to a newline; false on timeout, error or an over-long line.
bool read_line(int fd, std::string& line, int timeout_ms) {
    line.clear();
    char buf[4096];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0)
            return false;
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return !line.empty();
        line.append(buf, static_cast<std::size_t>(n));
        if (const auto nl = line.find('\n'); nl != std::string::npos) {
            line.resize(nl);
            return true;
        }
        if (line.size() > kMaxRequest)
            return false;
    }
}

bool write_all(int fd, const std::string& s) {
    std::size_t done = 0;
    while (done < s.size()) {
        const ssize_t n = write(fd, s.data() + done, s.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        done += static_cast<std::size_t>(n);
    }
    return true;
}

}  // namespace

ControlSocket::ControlSocket(const std::string& path, Handler handler) : path_(path), handler_(std::move(handler)) {
    sockaddr_un a;
    if (!fill_addr(path, a, error_))
        return;
    std::error_code ec;
    const auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty())
        std::filesystem::create_directories(dir, ec);
    // A socket file left by a moatd that died: nobody answers on it, so it is replaced. One that
    // answers belongs to a running moatd: refuse rather than steal it.
    if (std::filesystem::is_socket(path, ec)) {
        std::string e;
        const nlohmann::json r = control_request(path, {{"cmd", "status"}}, e, 500);
        if (e.empty()) {
            error_ = "another moatd answers on " + path + "; give this one its own 'control' path";
            return;
        }
        unlink(path.c_str());
    }
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        error_ = std::string("socket: ") + std::strerror(errno);
        return;
    }
    // Bind with a restrictive umask so that the socket never exists with a wider mode.
    const mode_t old = umask(0117);
    const int rc = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    umask(old);
    if (rc != 0 || chmod(path.c_str(), 0660) != 0 || listen(fd, 16) != 0) {
        error_ = "cannot listen on " + path + ": " + std::strerror(errno);
        close(fd);
        return;
    }
    fd_ = fd;
}

ControlSocket::~ControlSocket() {
    if (fd_ >= 0) {
        close(fd_);
        unlink(path_.c_str());
    }
}

void ControlSocket::serve() {
    for (;;) {
        const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0)
            return;  // EAGAIN: nobody else waiting
        std::string line;
        nlohmann::json reply;
        if (!read_line(c, line, 1000)) {
            reply = {{"ok", false}, {"errors", {"no request line within a second"}}};
        } else {
            const nlohmann::json req = nlohmann::json::parse(line, nullptr, false);
            reply = req.is_discarded() ? nlohmann::json{{"ok", false}, {"errors", {"the request is not JSON"}}}
                                       : handler_(req);
        }
        write_all(c, reply.dump() + "\n");
        close(c);
    }
}

nlohmann::json control_request(const std::string& path, const nlohmann::json& request, std::string& error,
                               int timeout_ms) {
    sockaddr_un a;
    if (!fill_addr(path, a, error))
        return {};
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = std::string("socket: ") + std::strerror(errno);
        return {};
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        error = "cannot reach moatd on " + path + ": " + std::strerror(errno);
        close(fd);
        return {};
    }
    std::string line;
    if (!write_all(fd, request.dump() + "\n") || !read_line(fd, line, timeout_ms)) {
        error = "no reply from moatd on " + path;
        close(fd);
        return {};
    }
    close(fd);
    nlohmann::json reply = nlohmann::json::parse(line, nullptr, false);
    if (reply.is_discarded())
        error = "moatd's reply is not JSON";
    return reply;
}

}  // namespace moat::ctl
