// What the config file watch reports for the ways the file changes: moatd reloads after a quiet
// moment, and checks the watch again right after reading the file, so a write that has only
// begun (the file truncated in place, part written) must show as a change.
#include "control/config_watch.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace moat::ctl {
namespace {

namespace fs = std::filesystem;
using Change = ConfigWatch::Change;

class Watch : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("moat-watch-" + std::to_string(getpid()));
        fs::create_directories(dir_);
        path_ = dir_ / "moat.ini";
        std::ofstream(path_) << "[appliance]\nassign = P\n";
    }
    void TearDown() override { fs::remove_all(dir_); }
    fs::path dir_, path_;
};

TEST_F(Watch, InPlaceWritesShowFromTheTruncationOn) {
    ConfigWatch w(path_.string());
    ASSERT_TRUE(w.ok()) << w.error();
    EXPECT_EQ(w.changed(), Change::none);
    const int fd = open(path_.c_str(), O_WRONLY | O_TRUNC);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(w.changed(), Change::partial) << "truncated: a write has begun";
    EXPECT_EQ(w.changed(), Change::none) << "events are read once";
    ASSERT_EQ(::write(fd, "[appliance]\n", 12), 12);
    EXPECT_EQ(w.changed(), Change::partial) << "written, still open";
    close(fd);
    EXPECT_EQ(w.changed(), Change::complete) << "closed after writing";
}

TEST_F(Watch, RenamedIntoPlaceIsCompleteAndOtherFilesAreNoChange) {
    ConfigWatch w(path_.string());
    ASSERT_TRUE(w.ok()) << w.error();
    std::ofstream(dir_ / "other.ini") << "x\n";
    EXPECT_EQ(w.changed(), Change::none) << "another file of the directory";
    std::ofstream(dir_ / "moat.ini.tmp") << "[appliance]\n";
    fs::rename(dir_ / "moat.ini.tmp", path_);
    EXPECT_EQ(w.changed(), Change::complete);
}

}  // namespace
}  // namespace moat::ctl
