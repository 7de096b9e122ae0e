// The worker's stages over real mbufs and a ring port, for every burst size from 0 to kBurstMax:
// parse -> classify -> forward_or_drop forwards exactly the permitted packets, in order and
// unchanged, frees everything else, and counts it all.
#include "dataplane/worker.h"

#include <gtest/gtest.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ring.h>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/tables.h"
#include "tests/common/eal_env.h"

namespace moat::dp {
namespace {

using test::Bytes;
using test::Pkt;

constexpr const char* kPolicy = R"([appliance]
me = 198.18.0.10
assign = P
[filterlist Web]
filter = *+0:80:TCP
[filterlist Rest]
filter = *+0
[policy P]
rule = Web -> permit
rule = Rest -> block
)";

/// A ring port whose transmitted packets land in `ring`.
struct RingPort {
    explicit RingPort(const std::string& name, unsigned size) {
        ring = rte_ring_create(name.c_str(), size, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
        const int id = rte_eth_from_rings(name.c_str(), &ring, 1, &ring, 1, SOCKET_ID_ANY);
        EXPECT_GE(id, 0);
        port = static_cast<std::uint16_t>(id);
        const rte_eth_conf conf{};
        EXPECT_EQ(rte_eth_dev_configure(port, 1, 1, &conf), 0);
        EXPECT_EQ(rte_eth_rx_queue_setup(port, 0, 64, SOCKET_ID_ANY, nullptr, test::EalEnvironment::pool()), 0);
        EXPECT_EQ(rte_eth_tx_queue_setup(port, 0, 64, SOCKET_ID_ANY, nullptr), 0);
        EXPECT_EQ(rte_eth_dev_start(port), 0);
    }
    ~RingPort() {
        rte_eth_dev_stop(port);
        rte_eth_dev_close(port);
        rte_ring_free(ring);
    }
    std::vector<rte_mbuf*> drain() {
        std::vector<rte_mbuf*> out(rte_ring_count(ring));
        rte_ring_dequeue_bulk(ring, reinterpret_cast<void**>(out.data()), static_cast<unsigned>(out.size()), nullptr);
        return out;
    }
    rte_ring* ring = nullptr;
    std::uint16_t port = 0;
};

class WorkerStages : public ::testing::Test {
protected:
    void SetUp() override {
        loaded_ = ctl::load_policy_text(kPolicy, "t.ini");
        ASSERT_TRUE(loaded_.usable());
        auto built = ctl::build_table_set(*loaded_.config, *loaded_.compiled, 1, 1);
        ASSERT_TRUE(built) << built.error();
        tables_ = std::move(built->tables);
        ASSERT_TRUE(tables_);
    }

    /// Frame i of a burst: a mix of permitted, blocked, malformed and non-IP packets.
    static Bytes frame(unsigned i, bool& pass, DropReason& why) {
        Pkt p;
        p.sport = static_cast<std::uint16_t>(1000 + i);
        switch (i % 5) {
        case 0: pass = true, why = DropReason::none; return test::frame(p);
        case 1: p.dport = 22; pass = false, why = DropReason::policy; return test::frame(p);
        case 2: pass = true, why = DropReason::none; return test::arp_request();
        case 3: p.dst = "198.18.0.99"; pass = false, why = DropReason::no_match; return test::frame(p);
        default: {
            Bytes b = test::frame(p);
            b.resize(30);
            pass = false, why = DropReason::malformed;
            return b;
        }
        }
    }

    /// A full burst of the default packet (permitted), parsed and judged by this fixture's tables.
    void judged_burst(Burst& b) const {
        b.n = kBurstMax;
        for (unsigned i = 0; i < kBurstMax; ++i)
            b.pkts[i] = test::mbuf(test::frame(Pkt{}));
        parse_burst(b.packets(), Ingress::outside, tables_->parse, b.metas());
        classify_burst(*tables_, b.metas(), b.verdict_span());
    }

    ctl::LoadResult loaded_;
    std::unique_ptr<TableSet> tables_;
};

TEST_F(WorkerStages, EveryBurstSize) {
    RingPort tx("ring_tx", 1024);
    const unsigned in_use_before = rte_mempool_in_use_count(test::EalEnvironment::pool());
    WorkerCounters c;
    std::uint64_t expect_pass = 0, expect_drop = 0, expect_arp = 0, expect_pass_bytes = 0, expect_rx_bytes = 0;
    std::array<std::uint64_t, kDropReasons> expect_why{};
    for (unsigned n = 0; n <= kBurstMax; ++n) {
        Burst b;
        b.n = static_cast<std::uint16_t>(n);
        std::vector<Bytes> passed;
        for (unsigned i = 0; i < n; ++i) {
            bool pass = false;
            DropReason why = DropReason::none;
            const Bytes f = frame(i, pass, why);
            b.pkts[i] = test::mbuf(f);
            ASSERT_NE(b.pkts[i], nullptr);
            if (pass)
                passed.push_back(f);
            expect_pass_bytes += pass ? f.size() : 0;
            expect_rx_bytes += f.size();
            expect_pass += pass;
            expect_drop += !pass;
            expect_arp += (i % 5 == 2);
            ++expect_why[static_cast<std::size_t>(why)];
        }
        parse_burst(b.packets(), Ingress::outside, tables_->parse, b.metas());
        classify_burst(*tables_, b.metas(), b.verdict_span());
        forward_or_drop(b, Ingress::outside, tx.port, 0, c, tables_->counters[0].get());

        auto out = tx.drain();
        ASSERT_EQ(out.size(), passed.size()) << "burst of " << n;
        for (std::size_t i = 0; i < out.size(); ++i)
            EXPECT_EQ(test::bytes_of(out[i]), passed[i]) << "burst of " << n << ", packet " << i;
        rte_pktmbuf_free_bulk(out.data(), static_cast<unsigned>(out.size()));
        // Nothing is leaked: every dropped mbuf went back to the pool.
        ASSERT_EQ(rte_mempool_in_use_count(test::EalEnvironment::pool()), in_use_before) << "burst of " << n;
    }
    const auto& in = c.port[static_cast<std::size_t>(Ingress::outside)];
    const auto& out = c.port[static_cast<std::size_t>(Ingress::inside)];
    EXPECT_EQ(in.rx_packets.get(), expect_pass + expect_drop);
    EXPECT_EQ(in.dropped.get(), expect_drop);
    EXPECT_EQ(out.tx_packets.get(), expect_pass);
    EXPECT_EQ(out.tx_bytes.get(), expect_pass_bytes);
    EXPECT_EQ(in.rx_bytes.get(), expect_rx_bytes);
    EXPECT_EQ(out.tx_failed.get(), 0u);
    EXPECT_EQ(c.non_ip_passed.get(), expect_arp);
    for (std::size_t r = 1; r < kDropReasons; ++r)
        EXPECT_EQ(c.drops[r].get(), expect_why[r]) << kDropReasonNames[r];
    // Hits: the web filter's entries counted the permitted TCP packets, the catch-all the policy drops.
    std::uint64_t hits = 0;
    for (std::size_t r = 0; r < tables_->rules.size(); ++r)
        hits += tables_->counters[0][r].packets.get();
    EXPECT_EQ(hits, expect_pass - expect_arp + expect_why[static_cast<std::size_t>(DropReason::policy)]);
}

/// The drop trace's stage over every burst size: with a monitor word set, the sampled packets of
/// each burst land in the ring as records saying what the verdicts said, in order, and what a
/// full ring refuses is counted (nothing waits).
TEST_F(WorkerStages, MonitorBurstRecordsTheSampledPackets) {
    constexpr unsigned kRing = 64;  // holds 63: the bursts before the last overflow it
    rte_ring* ring = rte_ring_create_elem("monitor_test", sizeof(MonitorRecord), kRing, SOCKET_ID_ANY,
                                          RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(ring, nullptr);
    MonitorPort mon;
    mon.ring = ring;
    const MonitorWord drops_every_2nd{0, 2, 1};
    Counter lost;
    std::uint64_t drops_seen = 0, expect_lost = 0;
    for (unsigned n = 0; n <= kBurstMax; ++n) {
        if (n == kBurstMax) {  // the last burst into an empty ring, to read its records
            std::vector<MonitorRecord> old(rte_ring_count(ring));
            rte_ring_dequeue_bulk_elem(ring, old.data(), sizeof(MonitorRecord), static_cast<unsigned>(old.size()), nullptr);
        }
        Burst b;
        b.n = static_cast<std::uint16_t>(n);
        for (unsigned i = 0; i < n; ++i) {
            bool pass = false;
            DropReason why = DropReason::none;
            Bytes f = frame(i, pass, why);
            if (i % 5 == 1) {  // blocked, with a VLAN tag
                Pkt p;
                p.vlans = {0x8100};
                p.vid = static_cast<std::uint16_t>(100 + i);
                p.sport = static_cast<std::uint16_t>(1000 + i);
                p.dport = 22;
                f = test::frame(p);
            }
            b.pkts[i] = test::mbuf(f);
            ASSERT_NE(b.pkts[i], nullptr);
        }
        parse_burst(b.packets(), Ingress::outside, tables_->parse, b.metas());
        classify_burst(*tables_, b.metas(), b.verdict_span());
        const unsigned room = rte_ring_free_count(ring);
        monitor_burst(mon, drops_every_2nd.encode(), b.packets(), b.metas(), b.verdict_span(), 9, 1234, 3, lost);
        std::vector<unsigned> sampled;
        for (unsigned i = 0; i < n; ++i)
            if (b.verdicts[i].drop != DropReason::none && drops_seen++ % 2 == 0)
                sampled.push_back(i);
        expect_lost += sampled.size() - std::min<std::size_t>(sampled.size(), room);
        EXPECT_EQ(lost.get(), expect_lost) << "burst of " << n;
        if (n == kBurstMax) {
            std::vector<MonitorRecord> recs(rte_ring_count(ring));
            ASSERT_EQ(recs.size(), sampled.size());
            rte_ring_dequeue_bulk_elem(ring, recs.data(), sizeof(MonitorRecord), static_cast<unsigned>(recs.size()), nullptr);
            for (std::size_t k = 0; k < recs.size(); ++k) {
                const MonitorRecord& r = recs[k];
                const unsigned i = sampled[k];
                EXPECT_EQ(r.drop, b.verdicts[i].drop) << i;
                EXPECT_EQ(r.rank, b.verdicts[i].rank) << i;
                EXPECT_EQ(r.generation, 9u);
                EXPECT_EQ(r.tsc, 1234u);
                EXPECT_EQ(r.worker, 3u);
                EXPECT_EQ(r.length, b.pkts[i]->pkt_len);
                EXPECT_EQ(r.seq_drop % 2, 0u);
                EXPECT_EQ(r.key.ingress, Ingress::outside);
                if (i % 5 == 1) {
                    EXPECT_EQ(r.vlans, 1u);
                    EXPECT_EQ(r.vlan[0], 100 + i);
                    EXPECT_EQ(r.ethertype, 0x0800);
                    EXPECT_EQ(r.key.proto, 6);
                    EXPECT_EQ(r.key.sport, 1000 + i);
                    EXPECT_EQ(r.key.dport, 22);
                    EXPECT_EQ(r.drop, DropReason::policy);
                } else {
                    EXPECT_EQ(r.vlans, 0u);
                }
            }
        }
        rte_pktmbuf_free_bulk(b.pkts.data(), n);
    }
    EXPECT_GT(expect_lost, 0u) << "the ring never filled: the test did not test";
    rte_ring_free(ring);
}

TEST_F(WorkerStages, MonitorBurstKeepsToItsBudgetAWindow) {
    // However many packets a monitor asks for (--all, every one), a worker records at most
    // kMonitorRecordsPerWindow a window; the rest are counted lost, and a new window (by the
    // clock, not by the turn's start) allows as many again.
    rte_ring* ring = rte_ring_create_elem("monitor_budget", sizeof(MonitorRecord), 4096, SOCKET_ID_ANY,
                                          RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(ring, nullptr);
    MonitorPort mon;
    mon.ring = ring;
    mon.window_cycles = std::uint64_t{1} << 62;  // one window for the whole test ...
    const MonitorWord every{1, 0, 1};
    Counter lost;
    Burst b;
    judged_burst(b);
    constexpr unsigned kBursts = 3 * kMonitorRecordsPerWindow / kBurstMax;
    for (unsigned k = 0; k < kBursts; ++k)  // a stale turn start (0) must not matter
        monitor_burst(mon, every.encode(), b.packets(), b.metas(), b.verdict_span(), 1, 0, 0, lost);
    EXPECT_EQ(rte_ring_count(ring), kMonitorRecordsPerWindow);
    EXPECT_EQ(lost.get(), kBursts * kBurstMax - kMonitorRecordsPerWindow);
    EXPECT_EQ(mon.sampler.seq_all, kBursts * kBurstMax);  // every packet still counted
    mon.window_start -= mon.window_cycles;  // ... until the clock has moved on by one
    monitor_burst(mon, every.encode(), b.packets(), b.metas(), b.verdict_span(), 1, 0, 0, lost);
    EXPECT_EQ(rte_ring_count(ring), kMonitorRecordsPerWindow + kBurstMax);
    rte_pktmbuf_free_bulk(b.pkts.data(), kBurstMax);
    rte_ring_free(ring);
}

TEST_F(WorkerStages, PacketsTheTxQueueRefusesAreFreedAndCounted) {
    RingPort tx("ring_small", 8);  // holds 7: the rest of a burst is refused
    const unsigned in_use_before = rte_mempool_in_use_count(test::EalEnvironment::pool());
    WorkerCounters c;
    Burst b;
    judged_burst(b);
    forward_or_drop(b, Ingress::outside, tx.port, 0, c, tables_->counters[0].get());
    auto out = tx.drain();
    EXPECT_EQ(out.size(), 7u);
    const auto& o = c.port[static_cast<std::size_t>(Ingress::inside)];
    EXPECT_EQ(o.tx_packets.get(), 7u);
    EXPECT_EQ(o.tx_bytes.get(), 7u * test::frame(Pkt{}).size()) << "the refused packets' bytes were not sent";
    EXPECT_EQ(o.tx_failed.get(), kBurstMax - 7u);
    rte_pktmbuf_free_bulk(out.data(), static_cast<unsigned>(out.size()));
    EXPECT_EQ(rte_mempool_in_use_count(test::EalEnvironment::pool()), in_use_before);
}

TEST_F(WorkerStages, ChainedMbufsAreParsedWhole) {
    // A frame split over two segments right inside the TCP header.
    const Bytes f = test::frame(Pkt{});
    const std::size_t cut = 14 + 20 + 3;
    rte_mbuf* head = test::mbuf(Bytes(f.begin(), f.begin() + cut));
    rte_mbuf* tail = test::mbuf(Bytes(f.begin() + cut, f.end()));
    ASSERT_EQ(rte_pktmbuf_chain(head, tail), 0);
    PacketMeta m;
    parse_burst(std::span<rte_mbuf* const>(&head, 1), Ingress::outside, tables_->parse, std::span<PacketMeta>(&m, 1));
    EXPECT_EQ(m.drop, DropReason::none);
    EXPECT_EQ(m.key.dport, 80);
    EXPECT_EQ(m.key.sport, 40000);
    rte_pktmbuf_free(head);
}

}  // namespace
}  // namespace moat::dp
