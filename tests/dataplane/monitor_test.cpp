// The workers' side of the drop trace (dataplane/monitor.h): the published word and the sampling.
#include "dataplane/monitor.h"

#include <gtest/gtest.h>

#include <array>
#include <random>
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

TEST(MonitorSampler, FollowsTheModuloDefinitionThroughRateChanges) {
    // The sampler keeps the next index instead of dividing; it must take exactly the packets the
    // definition names (index of a kind a multiple of its rate) while monitors come and go: rates
    // change mid-stream (a second monitor: their gcd), a kind is switched off and on, the epoch
    // changes. The reference below is the definition itself.
    std::mt19937_64 rng(2026);
    for (int run = 0; run < 200; ++run) {
        MonitorSampler s;
        std::uint64_t all = 0, drops = 0;
        std::uint16_t epoch = 1;
        MonitorWord w{1 + static_cast<std::uint32_t>(rng() % 7), static_cast<std::uint32_t>(rng() % 5), epoch};
        for (int i = 0; i < 3000; ++i) {
            if (rng() % 97 == 0) {  // the control thread publishes a new word
                w.all = static_cast<std::uint32_t>(rng() % 4 == 0 ? 0 : 1 + rng() % 12);
                w.drops = static_cast<std::uint32_t>(rng() % 3 == 0 ? 0 : 1 + rng() % 9);
                if (w.all == 0 && w.drops == 0)
                    w.drops = 1;
                if (rng() % 5 == 0) {
                    w.epoch = ++epoch;
                    all = drops = 0;
                }
            }
            const bool dropped = rng() % 3 == 0;
            const bool want = (w.all != 0 && all % w.all == 0) || (dropped && w.drops != 0 && drops % w.drops == 0);
            ASSERT_EQ(s.take(w, dropped), want) << "run " << run << " packet " << i << " all " << all << "/" << w.all
                                                << " drops " << drops << "/" << w.drops;
            ++all;
            drops += dropped;
            ASSERT_EQ(s.seq_all, all);
            ASSERT_EQ(s.seq_drop, drops);
        }
    }
    // pick() takes a burst at once (and skips bursts in which nothing is due): the same packets
    // as take() one by one, with the same counts after, for bursts of every size.
    for (int run = 0; run < 200; ++run) {
        MonitorSampler one, burst;
        MonitorWord w{static_cast<std::uint32_t>(rng() % 3 == 0 ? 0 : 1 + rng() % 70),
                      static_cast<std::uint32_t>(1 + rng() % 50), 1};
        for (int b = 0; b < 300; ++b) {
            if (rng() % 40 == 0)
                w.drops = static_cast<std::uint32_t>(1 + rng() % 50);
            std::vector<Verdict> v(rng() % 33);  // bursts of 0 to 32 packets
            for (Verdict& x : v)
                x.drop = rng() % 4 == 0 ? DropReason::policy : DropReason::none;
            std::vector<std::size_t> want;
            for (std::size_t i = 0; i < v.size(); ++i)
                if (one.take(w, v[i].drop != DropReason::none))
                    want.push_back(i);
            std::array<std::uint8_t, 32> picked{};
            const unsigned k = burst.pick(w, v, picked.data());
            ASSERT_EQ(std::vector<std::size_t>(picked.begin(), picked.begin() + k), want) << "run " << run << " burst " << b;
            ASSERT_EQ(burst.seq_all, one.seq_all);
            ASSERT_EQ(burst.seq_drop, one.seq_drop);
        }
    }
    EXPECT_EQ(MonitorSampler::first_multiple(0, 7), 0u);
    EXPECT_EQ(MonitorSampler::first_multiple(1, 7), 7u);
    EXPECT_EQ(MonitorSampler::first_multiple(14, 7), 14u);
    EXPECT_EQ(MonitorSampler::first_multiple(5, 0), MonitorSampler::kNever);
}

}  // namespace
}  // namespace moat::dp
