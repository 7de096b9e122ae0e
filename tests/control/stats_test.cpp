// Per-worker rates (moatctl stats): RateMeter turns two counter samples into rates over the time
// between them. The clock is the test's, so no figure depends on timing.
#include <gtest/gtest.h>

#include <vector>

#include "control/stats.h"

namespace moat::ctl {
namespace {

TEST(RateMeter, RatesAreTheDifferencesOverTheIntervalPerWorker) {
    RateMeter m;
    m.sample(std::vector<WorkerSample>{{100, 6400, 90, 10}, {0, 0, 0, 0}}, 10.0);
    EXPECT_TRUE(m.rates().empty()) << "one sample is no rate";
    m.sample(std::vector<WorkerSample>{{2100, 134400, 1590, 510}, {50, 3200, 50, 0}}, 12.0);
    ASSERT_EQ(m.rates().size(), 2u);
    const WorkerRates& a = m.rates()[0];
    EXPECT_DOUBLE_EQ(a.seconds, 2.0);
    EXPECT_DOUBLE_EQ(a.rx_pps, 1000.0);         // (2100 - 100) / 2
    EXPECT_DOUBLE_EQ(a.rx_bps, 8 * 64000.0);    // (134400 - 6400) / 2 bytes, in bits
    EXPECT_DOUBLE_EQ(a.tx_pps, 750.0);
    EXPECT_DOUBLE_EQ(a.dropped_pps, 250.0);
    const WorkerRates& b = m.rates()[1];
    EXPECT_DOUBLE_EQ(b.rx_pps, 25.0);
    EXPECT_DOUBLE_EQ(b.dropped_pps, 0.0);
    // The next interval replaces the last: rates are the last second's, not an average since start.
    m.sample(std::vector<WorkerSample>{{2100, 134400, 1590, 510}, {150, 9600, 150, 0}}, 13.0);
    EXPECT_DOUBLE_EQ(m.rates()[0].rx_pps, 0.0);
    EXPECT_DOUBLE_EQ(m.rates()[1].rx_pps, 100.0);
    EXPECT_DOUBLE_EQ(m.rates()[1].seconds, 1.0);
}

TEST(RateMeter, AClockThatDidNotAdvanceOrAChangedWorkerCountStartsOver) {
    RateMeter m;
    m.sample(std::vector<WorkerSample>{{100, 0, 0, 0}}, 5.0);
    m.sample(std::vector<WorkerSample>{{200, 0, 0, 0}}, 5.0);
    EXPECT_TRUE(m.rates().empty());
    m.sample(std::vector<WorkerSample>{{300, 0, 0, 0}, {0, 0, 0, 0}}, 6.0);
    EXPECT_TRUE(m.rates().empty());
    m.sample(std::vector<WorkerSample>{{400, 0, 0, 0}, {10, 0, 0, 0}}, 6.5);
    ASSERT_EQ(m.rates().size(), 2u);
    EXPECT_DOUBLE_EQ(m.rates()[0].rx_pps, 200.0);
    EXPECT_DOUBLE_EQ(m.rates()[1].rx_pps, 20.0);
}

TEST(RateMeter, ACounterBelowItsLastSampleReadsAsNoTrafficNotAHugeRate) {
    RateMeter m;
    m.sample(std::vector<WorkerSample>{{1000, 0, 0, 0}}, 1.0);
    m.sample(std::vector<WorkerSample>{{900, 0, 0, 0}}, 2.0);
    ASSERT_EQ(m.rates().size(), 1u);
    EXPECT_DOUBLE_EQ(m.rates()[0].rx_pps, 0.0);
}

TEST(StatsText, WorkerRowsShowRatesOnceMeasuredAndADashBefore) {
    Stats s;
    s.ports[0].name = "outside";
    s.ports[1].name = "inside";
    WorkerStats& first = s.workers.emplace_back();
    first.index = 0;
    first.lcore = 1;
    first.rx_packets = 10;
    first.tx_packets = 7;
    WorkerStats& second = s.workers.emplace_back();
    second.index = 1;
    second.lcore = 3;
    second.rx_packets = 2000;
    second.tx_packets = 1500;
    second.rates = {1.0, 2000, 8 * 128000.0, 1500, 500};
    const std::string text = stats_text(s);
    EXPECT_NE(text.find("\n0          1            -            -            -          -           10            7 "),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("\n1          3         2000         1500          500        1.0         2000         1500 "),
              std::string::npos)
        << text;
}

}  // namespace
}  // namespace moat::ctl
