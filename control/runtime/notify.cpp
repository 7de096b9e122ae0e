#include "control/runtime/notify.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "control/config/text.h"
#include "control/runtime/log.h"

namespace moat::ctl {

namespace {

/// The shortest interval between two WATCHDOG=1, whatever the manager asks: the control loop's
/// poll must not spin on a nonsensical WATCHDOG_USEC (systemd's own minimum is far above).
constexpr std::chrono::milliseconds kMinWatchdogEvery{1};
/// And the longest: sd_watchdog_enabled takes any value below UINT64_MAX microseconds, and half
/// of such a value in nanoseconds overflows the clock's 64 bits (18446744073709551614 came out
/// as a ping every millisecond). A day is far within, and more often than asked is harmless.
constexpr std::uint64_t kMaxWatchdogEveryUsec = std::uint64_t{24} * 3600 * 1000 * 1000;

/// sd_notify(0, state) that never waits. libsystemd's sd_notify sends on a blocking socket: when
/// the manager's socket is not read (a supervisor that sets $NOTIFY_SOCKET and never reads it, a
/// manager that is itself stuck), the receive queue fills after net.unix.max_dgram_qlen
/// datagrams (10 by default) and the next send blocks for ever, and with it the control loop
/// (no status, no reload, no SIGTERM). Here a full queue is an error (EAGAIN) like any other:
/// the message is dropped. Same addresses as libsystemd 252: a path, or @ for the abstract
/// namespace. 0 without $NOTIFY_SOCKET, 1 sent, -errno otherwise.
int notify_nonblocking(const std::string& state) {
    const char* e = std::getenv("NOTIFY_SOCKET");
    if (!e || !*e)
        return 0;
    const std::string_view path(e);
    if (path[0] != '/' && path[0] != '@')
        return -EAFNOSUPPORT;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() > sizeof a.sun_path)
        return -EINVAL;
    std::memcpy(a.sun_path, path.data(), path.size());
    if (a.sun_path[0] == '@')
        a.sun_path[0] = '\0';
    const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    ssize_t n = 0;
    do
        n = sendto(fd, state.data(), state.size(), MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&a), len);
    while (n < 0 && errno == EINTR);
    const int err = n < 0 ? errno : 0;
    ::close(fd);
    return n < 0 ? -err : 1;
}

}  // namespace

ServiceNotifier::ServiceNotifier() {
    std::uint64_t usec = 0;
    const int r = sd_watchdog_enabled(0, &usec);
    if (r < 0) {
        log(Level::warning, std::string("ignoring the service manager's watchdog settings: ") + std::strerror(-r));
        return;
    }
    if (r == 0 || usec == 0)
        return;
    // Half the interval, as sd_watchdog_enabled(3) advises: a ping late by one poll timeout
    // still arrives in time.
    every_ = std::max<Clock::duration>(std::chrono::microseconds(std::min(usec / 2, kMaxWatchdogEveryUsec)), kMinWatchdogEvery);
    due_ = Clock::now();
    log("service manager watchdog: " + std::to_string(usec / 1000) + " ms, WATCHDOG=1 every " +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(every_).count()) + " ms");
}

void ServiceNotifier::ready(const std::string& status) { send("READY=1\nSTATUS=" + printable(status)); }

void ServiceNotifier::reloading(const std::string& status) { send("RELOADING=1\nSTATUS=" + printable(status)); }

void ServiceNotifier::status(const std::string& status) { send("STATUS=" + printable(status)); }

void ServiceNotifier::stopping(const std::string& status) { send("STOPPING=1\nSTATUS=" + printable(status)); }

void ServiceNotifier::watchdog(Clock::time_point now) {
    if (!due_ || now < *due_)
        return;
    send("WATCHDOG=1");
    // From now, not from the due time: after a stall the next pings do not come in a burst.
    due_ = now + every_;
}

void ServiceNotifier::send(const std::string& state) {
    // 0 without $NOTIFY_SOCKET, > 0 sent, < 0 an error (a bad or unreachable socket, or one
    // whose reader does not read: EAGAIN, the message dropped rather than the loop stopped).
    const int r = notify_nonblocking(state);
    if (r >= 0 || failed_)
        return;
    failed_ = true;
    log(Level::warning, "cannot notify the service manager ($NOTIFY_SOCKET " +
                            quoted(printable(std::getenv("NOTIFY_SOCKET") ? std::getenv("NOTIFY_SOCKET") : "", 200)) +
                            "): " + std::strerror(-r) + (r == -EAGAIN ? " (nobody reads it)" : "") + "; going on without it (further failures are not logged)");
}

}  // namespace moat::ctl
