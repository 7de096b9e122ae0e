#include "control/runtime/log.h"

#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "control/config/text.h"

namespace moat::ctl {

std::string_view level_word(Level level) noexcept {
    switch (level) {
    case Level::error:
        return "error";
    case Level::warning:
        return "warning";
    case Level::info:
        break;
    }
    return "info";
}

LogStyle stderr_log_style() {
    // systemd sets JOURNAL_STREAM for a service whose stderr (or stdout) is the journal; a child
    // whose stderr was redirected inherits the variable but not the stream, hence the comparison.
    static const LogStyle style = [] {
        const char* e = std::getenv("JOURNAL_STREAM");
        unsigned long long dev = 0, ino = 0;
        struct stat st {};
        if (!e || std::sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
            return LogStyle::plain;
        return st.st_dev == dev && st.st_ino == ino ? LogStyle::journal : LogStyle::plain;
    }();
    return style;
}

std::string log_line(Level level, std::string_view text, LogStyle style, std::chrono::system_clock::time_point now) {
    if (style == LogStyle::journal) {
        const char* prefix = level == Level::error ? SD_ERR : level == Level::warning ? SD_WARNING : SD_INFO;
        return prefix + printable(text) + "\n";
    }
    const auto since_epoch = now.time_since_epoch();
    const std::time_t secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000;
    std::tm utc{};
    gmtime_r(&secs, &utc);
    char stamp[40];
    const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(ms < 0 ? ms + 1000 : ms));
    return std::string(stamp) + " " + std::string(level_word(level)) + " " + printable(text) + "\n";
}

namespace {

void write_line(const std::string& line) {
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

}  // namespace

void log(Level level, const std::string& msg) {
    const LogStyle style = stderr_log_style();
    write_line(log_line(level, style == LogStyle::journal ? msg : "moatd: " + msg, style,
                        std::chrono::system_clock::now()));
}

void log_plain(Level level, const std::string& line) {
    write_line(log_line(level, line, stderr_log_style(), std::chrono::system_clock::now()));
}

}  // namespace moat::ctl
