// The port decision behind `workers = N`: a queue pair per worker or one worker; RSS where the
// port has it, otherwise the peer's choice of queue.
#include <gtest/gtest.h>
#include <rte_ethdev.h>

#include "dataplane/port.h"

namespace moat::dp {
namespace {

constexpr std::uint64_t kNoRss = 0;
constexpr std::uint64_t kRssIp = RTE_ETH_RSS_IP | RTE_ETH_RSS_NONFRAG_IPV4_UDP;

TEST(PlanQueues, OneQueueAlwaysWorks) {
    for (const std::uint64_t rss : {kNoRss, kRssIp}) {
        const QueuePlan p = plan_queues(1, 1, rss, 1);
        EXPECT_EQ(p.spread, Spread::one_queue);
        EXPECT_EQ(p.limit, "");
    }
}

TEST(PlanQueues, RssWhereThePortHasIt) {
    const QueuePlan p = plan_queues(16, 16, kRssIp, 4);
    EXPECT_EQ(p.spread, Spread::rss);
    EXPECT_EQ(p.limit, "");
}

TEST(PlanQueues, WithoutRssThePeerChoosesTheQueue) {
    // memif reports 255 queue pairs and no RSS; RSS on ports only is no RSS on addresses.
    for (const std::uint64_t rss : {kNoRss, std::uint64_t{RTE_ETH_RSS_PORT}}) {
        const QueuePlan p = plan_queues(255, 255, rss, 4);
        EXPECT_EQ(p.spread, Spread::peer);
        EXPECT_EQ(p.limit, "");
    }
}

TEST(PlanQueues, FewerQueuePairsThanWorkersIsALimit) {
    for (const std::uint64_t rss : {kNoRss, kRssIp}) {
        EXPECT_EQ(plan_queues(1, 1, rss, 4).limit, "it has 1 queue pair(s)");
        EXPECT_EQ(plan_queues(8, 2, rss, 4).limit, "it has 2 queue pair(s)");  // the fewer of rx and tx
        EXPECT_EQ(plan_queues(3, 8, rss, 4).limit, "it has 3 queue pair(s)");
        EXPECT_EQ(plan_queues(4, 4, rss, 4).limit, "");
    }
}

TEST(MemifServer, OnlyAMemifPortWhoseRoleIsServer) {
    // memif is the client unless role says server; a server's client brings its own queue count.
    EXPECT_TRUE(memif_server("net_memif", "role=server,socket=/run/a.sock,id=0"));
    EXPECT_TRUE(memif_server("net_memif", "socket=/run/a.sock,role=server"));
    EXPECT_TRUE(memif_server("net_memif", "role=master"));
    EXPECT_TRUE(memif_server("net_memif", "role=client,role=server"));  // the last one counts
    EXPECT_FALSE(memif_server("net_memif", ""));                        // memif's default: client
    EXPECT_FALSE(memif_server("net_memif", "socket=/run/a.sock,id=0"));
    EXPECT_FALSE(memif_server("net_memif", "socket=/run/role=server,id=0"));  // a path, not the role
    EXPECT_FALSE(memif_server("net_memif", "role=client,socket=/run/a.sock,id=0"));
    EXPECT_FALSE(memif_server("net_memif", "role=server,role=client"));
    EXPECT_FALSE(memif_server("net_ring", ""));
    EXPECT_FALSE(memif_server("net_null", "role=server"));
}

}  // namespace
}  // namespace moat::dp
