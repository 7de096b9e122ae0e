// moatd's log: one line per event on stderr, each with its level.
//
// Under journald (stderr is the stream that $JOURNAL_STREAM names, as sd-daemon(3) documents) a
// line is the level as a kernel-style priority prefix (sd-daemon.h's SD_ERR "<3>", SD_WARNING
// "<4>", SD_INFO "<6>") and the message; the journal adds the time and the name. Anywhere else
// (a terminal, a file, a test's pipe) a line is an ISO 8601 UTC time with milliseconds, the level
// word, and the message:
//
//   <4>no policy is assigned: every IP packet is dropped ...
//   2026-12-01T16:25:52.123Z warning moatd: no policy is assigned: every IP packet is dropped ...
//
// Whatever a message quotes (a path, a client's request, a config name) goes through printable():
// no line break, escape sequence or bad byte gets through to forge a line. Any thread; a line is
// written with one call, so lines of two threads do not interleave.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace moat::ctl {

/// syslog's priorities (the numbers are the journal's and sd-daemon.h's).
enum class Level : std::uint8_t { error = 3, warning = 4, info = 6 };

/// "error", "warning", "info".
std::string_view level_word(Level level) noexcept;

/// How lines are written: for the journal (priority prefix, no time) or plain (time and level).
enum class LogStyle : std::uint8_t { plain, journal };

/// The style for this process's stderr: journal when $JOURNAL_STREAM is "DEV:INODE" and equals
/// stderr's device and inode, plain otherwise. Decided once, at the first call.
LogStyle stderr_log_style();

/// One line (with its newline) as it is written: `text` made printable, then prefixed for `style`.
std::string log_line(Level level, std::string_view text, LogStyle style,
                     std::chrono::system_clock::time_point now);

/// A message of moatd: "moatd: MSG" outside the journal (whose lines carry the name already).
void log(Level level, const std::string& msg);

/// A message of moatd at level info.
inline void log(const std::string& msg) { log(Level::info, msg); }

/// A line as it is, without moatd's name (a `file:line: error: ...` diagnostic), at `level`.
void log_plain(Level level, const std::string& line);

}  // namespace moat::ctl
