// The workers' side of the drop trace (dataplane/monitor.h): the published word and the sampling.
#include "dataplane/monitor.h"

#include <gtest/gtest.h>

#include <vector>

namespace moat::dp {
namespace {

TEST(MonitorWord, NoMonitorIsZero) {
    EXPECT_EQ(MonitorWord{}.encode(), 0u);
    EXPECT_EQ((MonitorWord{0, 0, 7}.encode()), 0u);  // an epoch alone asks for nothing
}

TEST(MonitorWord, RoundTrips) {
    for (const MonitorWord w : {MonitorWord{1, 0, 1}, MonitorWord{0, 1, 2}, MonitorWord{kMaxSample, kMaxSample, 65535},
                                MonitorWord{3, 12, 9}}) {
        EXPECT_NE(w.encode(), 0u);
        EXPECT_EQ(MonitorWord::decode(w.encode()), w);
    }
}

/// The indexes (0-based, among `dropped`'s packets) that `w` samples.
std::vector<std::size_t> sampled(MonitorSampler& s, const MonitorWord& w, const std::vector<bool>& dropped) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < dropped.size(); ++i)
        if (s.take(w, dropped[i]))
            out.push_back(i);
    return out;
}

TEST(MonitorSampler, EveryPacket) {
    MonitorSampler s;
    EXPECT_EQ(sampled(s, {1, 0, 1}, {false, true, false, true}), (std::vector<std::size_t>{0, 1, 2, 3}));
}

TEST(MonitorSampler, DropsOnlyTakesNoPermittedPacket) {
    MonitorSampler s;
    EXPECT_EQ(sampled(s, {0, 1, 1}, {false, true, false, true, true}), (std::vector<std::size_t>{1, 3, 4}));
    EXPECT_EQ(s.seq_all, 5u);
    EXPECT_EQ(s.seq_drop, 3u);
}

TEST(MonitorSampler, EveryNthFromTheFirst) {
    MonitorSampler s;
    const std::vector<bool> all_dropped(20, true);
    EXPECT_EQ(sampled(s, {0, 5, 1}, all_dropped), (std::vector<std::size_t>{0, 5, 10, 15}));
    // Counting goes on across calls (bursts): the 20th, 25th, ...
    EXPECT_EQ(sampled(s, {0, 5, 1}, std::vector<bool>(7, true)), (std::vector<std::size_t>{0, 5}));
}

TEST(MonitorSampler, EveryNthDropAmongPermittedPackets) {
    MonitorSampler s;
    // Drops at 1, 3, 5, ...: every 2nd drop is the drops numbered 0, 2, 4 -> packets 1, 5, 9.
    std::vector<bool> alternate;
    for (int i = 0; i < 10; ++i)
        alternate.push_back(i % 2 == 1);
    EXPECT_EQ(sampled(s, {0, 2, 1}, alternate), (std::vector<std::size_t>{1, 5, 9}));
}

TEST(MonitorSampler, BothKindsAreAUnion) {
    MonitorSampler s;
    // every 4th packet, or every 3rd drop; drops at 0, 2, 4, 6, 8 (drop numbers 0..4)
    std::vector<bool> d;
    for (int i = 0; i < 10; ++i)
        d.push_back(i % 2 == 0);
    EXPECT_EQ(sampled(s, {4, 3, 1}, d), (std::vector<std::size_t>{0, 4, 6, 8}));
}

TEST(MonitorSampler, ANewEpochRestartsTheCount) {
    MonitorSampler s;
    sampled(s, {0, 3, 1}, std::vector<bool>(4, true));  // counts at 4
    EXPECT_EQ(sampled(s, {0, 3, 1}, std::vector<bool>(3, true)), (std::vector<std::size_t>{2}));  // the 6th
    EXPECT_EQ(sampled(s, {0, 3, 2}, std::vector<bool>(4, true)), (std::vector<std::size_t>{0, 3}));
}

}  // namespace
}  // namespace moat::dp
