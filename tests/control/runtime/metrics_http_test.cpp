// The metrics board between the control thread and the HTTP threads: a scrape asks for a
// snapshot only when the last is stale, many scrapes share one request, the text is what
// stats_prometheus() makes of the snapshot, and close() releases whoever waits.
#include "control/runtime/metrics_http.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace moat::ctl {
namespace {

using namespace std::chrono_literals;

bool readable(int fd, int ms = 0) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, ms) > 0;
}

Stats generation(std::uint64_t n) {
    Stats s;
    s.generation = n;
    s.ports[0].name = "outside";
    s.ports[1].name = "inside";
    s.ports[0].rx_packets = 10 * n;
    return s;
}

TEST(MetricsBoard, ScrapesShareOneRequestAndServeItsSnapshot) {
    MetricsBoard board;
    EXPECT_FALSE(readable(board.wanted_fd())) << "nobody asked yet";
    // Eight scrapes at once, before the control thread answers: one request between them (the
    // eventfd's counter is 1, however late a scrape comes), one snapshot, the same text for all.
    std::vector<std::shared_ptr<const std::string>> texts(8);
    std::vector<std::thread> scrapers;
    for (auto& t : texts)
        scrapers.emplace_back([&board, &t] { t = board.text(10s); });
    ASSERT_TRUE(readable(board.wanted_fd(), 10000));
    std::this_thread::sleep_for(100ms);
    std::uint64_t requests = 0;
    ASSERT_EQ(read(board.wanted_fd(), &requests, sizeof requests), static_cast<ssize_t>(sizeof requests));
    EXPECT_EQ(requests, 1u);
    board.publish(generation(1));
    for (auto& s : scrapers)
        s.join();
    for (const auto& t : texts) {
        ASSERT_TRUE(t);
        EXPECT_EQ(*t, stats_prometheus(generation(1)));
    }
}

TEST(MetricsBoard, AStaleSnapshotIsAskedForAgain) {
    MetricsBoard board;
    // The control thread: answers each request with the next generation.
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> answered{0};
    std::thread control([&] {
        while (!stop)
            if (readable(board.wanted_fd(), 10) && board.wanted())
                board.publish(generation(++answered));
    });
    auto t = board.text(10s);
    ASSERT_TRUE(t);
    EXPECT_NE(t->find("\nmoat_generation 1\n"), std::string::npos) << *t;
    std::this_thread::sleep_for(MetricsBoard::kFresh + 100ms);
    t = board.text(10s);
    ASSERT_TRUE(t);
    EXPECT_NE(t->find("\nmoat_generation 2\n"), std::string::npos) << *t;
    EXPECT_NE(t->find("moat_port_rx_packets_total{port=\"outside\"} 20\n"), std::string::npos) << *t;
    stop = true;
    control.join();
}

TEST(MetricsBoard, WithoutAnAnswerAScrapeGetsTheLastSnapshotOrNothing) {
    MetricsBoard board;
    EXPECT_EQ(board.text(50ms), nullptr) << "no snapshot yet and nobody answers";
    EXPECT_TRUE(readable(board.wanted_fd()));
    EXPECT_TRUE(board.wanted());
    // The control thread took the request and published nothing (its turn failed): the next
    // scrape asks again rather than wait for an answer that is not coming.
    EXPECT_EQ(board.text(50ms), nullptr);
    EXPECT_TRUE(readable(board.wanted_fd())) << "a request taken and never answered is never asked again";
    EXPECT_TRUE(board.wanted());
    board.publish(generation(7));
    std::this_thread::sleep_for(MetricsBoard::kFresh + 100ms);
    // Stale, and the control thread is busy: the old snapshot after the wait.
    const auto t = board.text(50ms);
    ASSERT_TRUE(t);
    EXPECT_NE(t->find("\nmoat_generation 7\n"), std::string::npos);
    EXPECT_TRUE(board.wanted()) << "the stale snapshot was asked for again";
}

TEST(MetricsBoard, CloseReleasesWhoeverWaits) {
    MetricsBoard board;
    std::shared_ptr<const std::string> got = std::make_shared<const std::string>("unset");
    const auto t0 = std::chrono::steady_clock::now();
    std::thread scraper([&] { got = board.text(60s); });
    while (!readable(board.wanted_fd()))
        std::this_thread::sleep_for(1ms);
    board.close();
    scraper.join();
    EXPECT_EQ(got, nullptr);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s) << "close() did not wake the waiting scrape";
    EXPECT_EQ(board.text(60s), nullptr) << "a closed board answers at once";
}

// Scrapes that arrive while the snapshot is being formatted wait for that text instead of
// formatting copies of their own: with a large policy (here 100,000 filters, ~30 MB) every
// scraper used to make its own, N scrapers costing N times the CPU and memory (the hostile review
// saw four truncated replies from a 200,000-filter moatd). Fails with the wait removed.
TEST(MetricsBoard, ConcurrentScrapesOfALargeSnapshotShareOneText) {
    MetricsBoard board;
    Stats s = generation(1);
    s.filters.resize(100000);
    for (std::size_t i = 0; i < s.filters.size(); ++i) {
        s.filters[i].filterlist = "Inbound";
        s.filters[i].filter = "198.19.0.1+198.18.0.10:80:TCP";
        s.filters[i].rule = "Inbound -> permit";
        s.filters[i].line = static_cast<int>(i + 10);
    }
    board.publish(std::move(s));
    std::vector<std::shared_ptr<const std::string>> texts(4);
    std::vector<std::thread> scrapers;
    for (auto& t : texts)
        scrapers.emplace_back([&board, &t] { t = board.text(60s); });  // far more than formatting takes, also under ASan
    for (auto& th : scrapers)
        th.join();
    for (const auto& t : texts) {
        ASSERT_TRUE(t);
        EXPECT_EQ(t.get(), texts[0].get()) << "a second copy of the " << texts[0]->size() << "-byte text was formatted";
    }
}

}  // namespace
}  // namespace moat::ctl
