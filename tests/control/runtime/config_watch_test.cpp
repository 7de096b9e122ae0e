// What the config file watch reports for the ways the file changes: moatd reloads after a quiet
// moment, and checks the watch again right after reading the file, so a write that has only
// begun (the file truncated in place, part written) must show as a change.
#include "control/runtime/config_watch.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

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

TEST_F(Watch, FollowsSymbolicLinksAndTheirSwaps) {
    // dir/moat.ini -> ..data/moat.ini, ..data -> v1 (a Kubernetes ConfigMap volume)
    fs::remove(path_);
    fs::create_directories(dir_ / "v1");
    fs::create_directories(dir_ / "v2");
    std::ofstream(dir_ / "v1" / "moat.ini") << "[appliance]\n";
    std::ofstream(dir_ / "v2" / "moat.ini") << "[appliance]\n";
    fs::create_directory_symlink("v1", dir_ / "..data");
    fs::create_symlink("..data/moat.ini", path_);
    ConfigWatch w(path_.string());
    ASSERT_TRUE(w.ok()) << w.error();
    const auto watched = w.watched();
    ASSERT_TRUE(watched.contains(dir_.string()));
    EXPECT_EQ(watched.at(dir_.string()), (std::set<std::string>{"..data", "moat.ini", "v1"}));
    EXPECT_EQ(watched.at((dir_ / "v1").string()), std::set<std::string>{"moat.ini"});

    std::ofstream(dir_ / "v1" / "moat.ini") << "[appliance]\nassign =\n";
    EXPECT_EQ(w.changed(), Change::complete) << "an edit of the target";
    std::ofstream(dir_ / "v2" / "other") << "x";
    EXPECT_EQ(w.changed(), Change::none) << "v2 is not on the way yet";

    fs::create_directory_symlink("v2", dir_ / "..data_tmp");
    fs::rename(dir_ / "..data_tmp", dir_ / "..data");
    EXPECT_EQ(w.changed(), Change::complete) << "the ..data swap";
    EXPECT_TRUE(w.watched().contains((dir_ / "v2").string())) << "the watch follows the new target";
    EXPECT_FALSE(w.watched().contains((dir_ / "v1").string()));
    std::ofstream(dir_ / "v2" / "moat.ini") << "[appliance]\n";
    EXPECT_EQ(w.changed(), Change::complete) << "an edit of the new target";
    std::ofstream(dir_ / "v1" / "moat.ini") << "[appliance]\n";
    EXPECT_EQ(w.changed(), Change::none) << "the old target no longer matters";
}

TEST_F(Watch, ADirectoryOnTheWayReplacedIsAChange) {
    // /dir/etc/moat.ini; then `mv etc etc.old; mv etc.new etc`: the watch must follow the path,
    // not the old directory.
    const fs::path etc = dir_ / "etc";
    fs::create_directories(etc);
    std::ofstream(etc / "moat.ini") << "[appliance]\n";
    ConfigWatch w((etc / "moat.ini").string());
    ASSERT_TRUE(w.ok()) << w.error();
    fs::create_directories(dir_ / "etc.new");
    std::ofstream(dir_ / "etc.new" / "moat.ini") << "[appliance]\nassign =\n";
    EXPECT_EQ(w.changed(), Change::none) << "etc.new is not on the way";
    fs::rename(etc, dir_ / "etc.old");
    fs::rename(dir_ / "etc.new", etc);
    EXPECT_EQ(w.changed(), Change::complete) << "the directory was replaced";
    std::ofstream(etc / "moat.ini") << "[appliance]\n";
    EXPECT_EQ(w.changed(), Change::complete) << "an edit in the new directory";
    std::ofstream(dir_ / "etc.old" / "moat.ini") << "[appliance]\n";
    EXPECT_EQ(w.changed(), Change::none) << "the old directory no longer matters";
}

TEST_F(Watch, LostEventsAreAChange) {
    // More events than the kernel queues (fs.inotify.max_queued_events) in the watched
    // directory: what was lost may have been an edit of the config.
    ConfigWatch w(path_.string());
    ASSERT_TRUE(w.ok()) << w.error();
    std::ifstream limit("/proc/sys/fs/inotify/max_queued_events");
    long queued = 16384;
    limit >> queued;
    if (queued > 200000)
        GTEST_SKIP() << "max_queued_events is " << queued;
    for (long i = 0; i <= queued / 2 + 16; ++i)
        std::ofstream(dir_ / ("other-" + std::to_string(i)));  // CREATE, CLOSE_WRITE: two each
    EXPECT_EQ(w.changed(), Change::complete);
}

TEST_F(Watch, LinkLoopsEndWithoutHanging) {
    fs::remove(path_);
    fs::create_symlink(dir_ / "b", path_);
    fs::create_symlink(path_, dir_ / "b");
    ConfigWatch w(path_.string());  // resolves at most 40 links, as the kernel does
    EXPECT_EQ(w.changed(), Change::none);
}

}  // namespace
}  // namespace moat::ctl
