// What moatd tells the service manager (systemd's sd_notify protocol, moatd.service's
// Type=notify): READY=1 once the first policy is published and the ports forward, STATUS= lines
// (the generation in force), RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1, and
// WATCHDOG=1 from the control loop when the unit sets WatchdogSec= (so a control thread that
// stops turning gets moatd restarted).
//
// Without $NOTIFY_SOCKET every call does nothing. A socket that cannot be reached (a missing
// path, garbage, a manager that went away) or whose reader does not read (its queue full) never
// stops moatd: nothing is sent with a blocking call (libsystemd's sd_notify is one, and would
// hold the control loop for good), the first failure is logged as a warning and the rest are
// ignored. Control thread only.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace moat::ctl {

class ServiceNotifier {
public:
    using Clock = std::chrono::steady_clock;

    /// Reads the watchdog interval the manager asks for ($WATCHDOG_USEC, for this process when
    /// $WATCHDOG_PID is set: sd_watchdog_enabled).
    ServiceNotifier();

    /// READY=1 with STATUS=`status`.
    void ready(const std::string& status);
    /// RELOADING=1 with STATUS=`status`; ready() ends it.
    void reloading(const std::string& status);
    void status(const std::string& status);
    /// STOPPING=1 with STATUS=`status`.
    void stopping(const std::string& status);

    /// When the next WATCHDOG=1 is due; nullopt when the manager watches nothing.
    std::optional<Clock::time_point> watchdog_due() const { return due_; }
    /// Sends WATCHDOG=1 when it is due (every half of the manager's interval).
    void watchdog(Clock::time_point now = Clock::now());

    /// The interval between two WATCHDOG=1; zero when the manager watches nothing.
    Clock::duration watchdog_every() const noexcept { return every_; }

private:
    void send(const std::string& state);

    Clock::duration every_{};
    std::optional<Clock::time_point> due_;
    bool failed_ = false;  ///< a send failed (logged once)
};

}  // namespace moat::ctl
