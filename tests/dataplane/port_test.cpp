// The port decision behind `workers = N`: a queue pair per worker or one worker; RSS where the
// port has it, otherwise the peer's choice of queue.
#include <gtest/gtest.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

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

TEST(Mtu, TheMbufHoldsAWholeFrame) {
    EXPECT_EQ(mbuf_data_room(1500), RTE_MBUF_DEFAULT_BUF_SIZE);  // today's pool, unchanged
    EXPECT_EQ(mbuf_data_room(68), RTE_MBUF_DEFAULT_BUF_SIZE);
    for (const std::uint32_t mtu : {1500u, 2000u, 2026u, 2027u, 4096u, 9000u, 9216u, 16000u}) {
        const std::uint32_t room = mbuf_data_room(mtu);
        EXPECT_GE(room, RTE_PKTMBUF_HEADROOM + frame_limit(mtu) + RTE_ETHER_CRC_LEN) << mtu;
        EXPECT_EQ((room - RTE_PKTMBUF_HEADROOM) % 1024, 0u) << mtu;
        EXPECT_LT(room, RTE_PKTMBUF_HEADROOM + frame_limit(mtu) + RTE_ETHER_CRC_LEN + 1024 + 2048) << mtu;
    }
    EXPECT_EQ(mbuf_data_room(9000), RTE_PKTMBUF_HEADROOM + 9216);
    EXPECT_EQ(frame_limit(1500), 1522u);  // Ethernet header and two VLAN tags
}

TEST(Mtu, ThePortMustTakeIt) {
    // An ixgbe-like NIC: 9710 bytes a frame, MTU to 9710 - 18.
    const FrameLimits nic{68, 9692, 9710};
    EXPECT_EQ(mtu_refusal(9000, nic), "");
    EXPECT_EQ(mtu_refusal(9692, nic), "");
    EXPECT_EQ(mtu_refusal(9693, nic), "mtu = 9693 is outside the MTUs this port takes (68 to 9692)");
    EXPECT_EQ(mtu_refusal(67, nic), "mtu = 67 is outside the MTUs this port takes (68 to 9692)");
    // A port that reports no MTU limit but a frame limit: Ethernet header and FCS count.
    const FrameLimits plain{46, UINT16_MAX, 1518};
    EXPECT_EQ(mtu_refusal(1500, plain), "");
    EXPECT_EQ(mtu_refusal(9000, plain), "mtu = 9000 needs frames of 9018 bytes and this port receives at most 1518");
}

TEST(Mtu, PciPortsNeedHugepages) {
    EXPECT_EQ(memory_refusal("outside", "pci", true), "");
    EXPECT_EQ(memory_refusal("outside", "vdev", false), "");
    EXPECT_EQ(memory_refusal("outside", "", false), "");
    const std::string no = memory_refusal("inside", "pci", false);
    EXPECT_TRUE(no.starts_with("inside port is a PCI device and EAL runs without hugepages (--no-huge)")) << no;
    EXPECT_NE(no.find("remove --no-huge from eal"), std::string::npos) << no;
}

}  // namespace
}  // namespace moat::dp
