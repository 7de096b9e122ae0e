// Per-worker rates (moatctl stats): RateMeter turns two counter samples into rates over the time
// between them. The clock is the test's, so no figure depends on timing.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/runtime/publisher.h"
#include "control/runtime/stats.h"

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

TEST(RateMeter, CyclesPerPacketAreTheBusyCyclesOverThePacketsOfTheInterval) {
    RateMeter m(1e9);  // a 1 GHz TSC
    // Worker 0: 64 packets in 2 busy polls cost 6400 cycles; worker 1 idled.
    m.sample(std::vector<WorkerSample>{{1000, 0, 0, 0, 50000, 40}, {0, 0, 0, 0, 0, 0}}, 1.0);
    m.sample(std::vector<WorkerSample>{{1064, 0, 0, 0, 56400, 42}, {0, 0, 0, 0, 0, 0}}, 1.5);
    ASSERT_EQ(m.rates().size(), 2u);
    EXPECT_DOUBLE_EQ(m.rates()[0].cycles_per_packet, 100.0) << "(56400 - 50000) / (1064 - 1000), not 56400 / 1064";
    EXPECT_DOUBLE_EQ(m.rates()[0].burst, 32.0);
    EXPECT_DOUBLE_EQ(m.rates()[0].busy, 6400 / 0.5e9);
    EXPECT_DOUBLE_EQ(m.rates()[1].cycles_per_packet, 0.0) << "no packets: no cost, not a division by zero";
    EXPECT_DOUBLE_EQ(m.rates()[1].burst, 0.0);
    // A busy share above one (the TSC read on another core than the clock) is capped.
    m.sample(std::vector<WorkerSample>{{2064, 0, 0, 0, 3'000'056'400, 100}, {0, 0, 0, 0, 0, 0}}, 2.5);
    EXPECT_DOUBLE_EQ(m.rates()[0].busy, 1.0);
    RateMeter no_tsc;
    no_tsc.sample(std::vector<WorkerSample>{{0, 0, 0, 0, 0, 0}}, 1.0);
    no_tsc.sample(std::vector<WorkerSample>{{10, 0, 0, 0, 1000, 1}}, 2.0);
    EXPECT_DOUBLE_EQ(no_tsc.rates()[0].busy, 0.0) << "without the TSC's rate there is no share to give";
    EXPECT_DOUBLE_EQ(no_tsc.rates()[0].cycles_per_packet, 100.0);
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
    second.rates = {1.0, 2000, 8 * 128000.0, 1500, 500, 93.4, 0.5, 31.5};
    const std::string text = stats_text(s);
    EXPECT_NE(text.find("\n0          1            -            -            -          -        -     -           10            7 "),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("\n1          3         2000         1500          500        1.0     93.4   50%         2000         1500 "),
              std::string::npos)
        << text;
}

// One filter written twice in a list that two rules use: four rows, each with counters of its own.
constexpr const char* kDuplicates =
    "[appliance]\nme = 198.18.0.10\nassign = P\n"
    "[filterlist Web]\nfilter = *+198.18.0.10:80:TCP\nfilter = *+198.18.0.10:80:TCP\n"
    "[filterlist All]\nfilter = *+*\n"
    "[policy P]\nrule = Web -> permit\nrule = Web -> permit\nrule = All -> block\n";

std::shared_ptr<Generation> generation_of(const std::string& text) {
    LoadResult r = load_policy_text(text, "t.ini", {.lint = false});
    EXPECT_TRUE(r.usable());
    auto g = std::make_shared<Generation>();
    g->config = std::move(*r.config);
    g->compiled = std::move(*r.compiled);
    g->tables = std::make_unique<dp::TableSet>();
    index_rows(*g);
    return g;
}

TEST(FilterRows, ADuplicateFilterIsARowOfItsOwnAcrossReloads) {
    const auto a = generation_of(kDuplicates);
    ASSERT_EQ(a->row_keys.size(), 5u) << "2 filters x 2 rules of Web, and All";
    // An unrelated change: one more list and rule at the end.
    const auto b = generation_of(std::string(kDuplicates) + "rule = Extra -> block\n[filterlist Extra]\nfilter = *+198.18.0.99\n");
    const std::vector<std::uint32_t> next = link_rows(*a, *b);
    ASSERT_EQ(next.size(), a->row_keys.size());
    std::set<std::uint32_t> targets;
    for (std::size_t r = 0; r < next.size(); ++r) {
        ASSERT_NE(next[r], kNoRow) << "row " << r << " is unchanged and must survive";
        EXPECT_TRUE(targets.insert(next[r]).second) << "two rows of the old generation became one";
    }
    // Each row went to the row of the same rule and the same line.
    const auto origin = [](const Generation& g, std::uint32_t row) {
        for (std::size_t rank = 0; rank < g.row_of_rank.size(); ++rank)
            if (g.row_of_rank[rank] == row) {
                const EntryOrigin& o = g.compiled.info[rank].origin;
                return std::tuple(o.rule, o.list, o.filter);
            }
        return std::tuple(-1, -1, -1);
    };
    for (std::uint32_t r = 0; r < next.size(); ++r)
        EXPECT_EQ(origin(*a, r), origin(*b, next[r])) << "row " << r;
}

TEST(FilterRows, EveryPrometheusSeriesHasLabelsOfItsOwn) {
    const auto g = generation_of(kDuplicates);
    const Stats s = collect_stats({}, g, {}, {});
    ASSERT_EQ(s.filters.size(), 5u);
    std::istringstream in(stats_prometheus(s));
    std::set<std::string> series;
    std::size_t rows = 0;
    for (std::string line; std::getline(in, line);) {
        if (!line.starts_with("moat_filter_"))
            continue;
        ++rows;
        EXPECT_TRUE(series.insert(line.substr(0, line.rfind(' '))).second) << "a second series " << line;
    }
    EXPECT_EQ(rows, 10u) << "packets and bytes of five rows";
}

}  // namespace
}  // namespace moat::ctl
