#include "control/runtime/notify.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "control/config/text.h"
#include "control/runtime/log.h"

namespace moat::ctl {

namespace {

/// The shortest interval between two WATCHDOG=1, whatever the manager asks: the control loop's
/// poll must not spin on a nonsensical WATCHDOG_USEC (systemd's own minimum is far above).
constexpr std::chrono::milliseconds kMinWatchdogEvery{1};

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
    every_ = std::max<Clock::duration>(std::chrono::microseconds(usec / 2), kMinWatchdogEvery);
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
    // sd_notify: 0 without $NOTIFY_SOCKET, > 0 sent, < 0 an error (a bad or unreachable socket).
    const int r = sd_notify(0, state.c_str());
    if (r >= 0 || failed_)
        return;
    failed_ = true;
    log(Level::warning, "cannot notify the service manager ($NOTIFY_SOCKET " +
                            quoted(printable(std::getenv("NOTIFY_SOCKET") ? std::getenv("NOTIFY_SOCKET") : "", 200)) +
                            "): " + std::strerror(-r) + "; going on without it (further failures are not logged)");
}

}  // namespace moat::ctl
