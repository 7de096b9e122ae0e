// control/runtime/log.h: the two forms of a log line (journald's priority prefix, or the time and
// the level word) and what neither lets through.
#include "control/runtime/log.h"

#include <gtest/gtest.h>

#include <chrono>
#include <regex>

namespace moat::ctl {
namespace {

// 2026-12-01T16:25:52.123Z
const auto kWhen = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796142352123));

TEST(Log, JournalLinesArePriorityAndText) {
    EXPECT_EQ(log_line(Level::error, "not starting: x", LogStyle::journal, kWhen), "<3>not starting: x\n");
    EXPECT_EQ(log_line(Level::warning, "w", LogStyle::journal, kWhen), "<4>w\n");
    EXPECT_EQ(log_line(Level::info, "forwarding", LogStyle::journal, kWhen), "<6>forwarding\n");
}

TEST(Log, PlainLinesAreTimeLevelAndText) {
    EXPECT_EQ(log_line(Level::info, "moatd: forwarding", LogStyle::plain, kWhen),
              "2026-12-01T16:25:52.123Z info moatd: forwarding\n");
    EXPECT_EQ(log_line(Level::warning, "x", LogStyle::plain, kWhen), "2026-12-01T16:25:52.123Z warning x\n");
    EXPECT_EQ(log_line(Level::error, "x", LogStyle::plain, kWhen), "2026-12-01T16:25:52.123Z error x\n");
    // Milliseconds keep their zeros; the time is UTC, whatever TZ says.
    const auto whole = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796142352007));
    EXPECT_EQ(log_line(Level::info, "x", LogStyle::plain, whole), "2026-12-01T16:25:52.007Z info x\n");
    const std::string now = log_line(Level::info, "x", LogStyle::plain, std::chrono::system_clock::now());
    EXPECT_TRUE(std::regex_match(now, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info x\n)"))) << now;
}

TEST(Log, NothingForgesALine) {
    // A client's bytes: a line break and a forged priority, an escape sequence, a bad byte.
    const std::string evil = "assign 'a\n<3>forged\x1b[2J\xff'";
    for (const LogStyle style : {LogStyle::journal, LogStyle::plain}) {
        const std::string line = log_line(Level::info, evil, style, kWhen);
        EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
        EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
        EXPECT_NE(line.find("\\x0A<3>forged\\x1B[2J\xEF\xBF\xBD'"), std::string::npos) << line;
    }
}

TEST(Log, LevelWords) {
    EXPECT_EQ(level_word(Level::error), "error");
    EXPECT_EQ(level_word(Level::warning), "warning");
    EXPECT_EQ(level_word(Level::info), "info");
}

}  // namespace
}  // namespace moat::ctl
