#include "dataplane/worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

namespace moat::dp {

namespace {

constexpr Ingress other(Ingress in) noexcept { return in == Ingress::outside ? Ingress::inside : Ingress::outside; }

constexpr std::size_t idx(Ingress in) noexcept { return static_cast<std::size_t>(in); }

}  // namespace

void forward_or_drop(Burst& b, Ingress rx, std::uint16_t tx_port, std::uint16_t queue, WorkerCounters& c,
                     EntryCounter* hits) noexcept {
    std::array<rte_mbuf*, kBurstMax> pass, dropped;
    std::array<std::uint32_t, kBurstMax> pass_len;
    std::uint16_t npass = 0, ndrop = 0;
    std::uint64_t rx_bytes = 0, pass_bytes = 0;
    std::array<std::uint32_t, kDropReasons> reasons{};
    std::array<std::uint32_t, kFragDrops> fragment_reasons{};
    std::uint32_t bypassed = 0, fragments_passed = 0;
    // Hits are added per run of packets with the same rank (a burst is often one flow or one
    // filter): one counter update per run instead of a chain of dependent ones per packet.
    Rank run_rank = kNoMatch;
    std::uint32_t run_packets = 0;
    std::uint64_t run_bytes = 0;
    const auto end_run = [&] {
        if (run_rank != kNoMatch) {
            hits[run_rank].packets.add(run_packets);
            hits[run_rank].bytes.add(run_bytes);
        }
    };
    for (std::uint16_t i = 0; i < b.n; ++i) {
        rte_mbuf* m = b.pkts[i];
        const Verdict& v = b.verdicts[i];
        const std::uint32_t len = m->pkt_len;
        rx_bytes += len;
        if (v.rank != run_rank) {
            end_run();
            run_rank = v.rank;
            run_packets = 0;
            run_bytes = 0;
        }
        ++run_packets;
        run_bytes += len;
        if (v.drop == DropReason::none) {
            // Bypassed frames and fragments are rare: one test of both flags for the rest.
            const PacketMeta& meta = b.meta[i];
            if (meta.bypass | meta.frag.present) [[unlikely]] {
                bypassed += meta.bypass ? 1 : 0;
                fragments_passed += meta.frag.present ? 1 : 0;
            }
            pass_bytes += len;
            pass_len[npass] = len;
            pass[npass++] = m;
        } else {
            ++reasons[static_cast<std::size_t>(v.drop)];
            if (v.drop == DropReason::fragment) [[unlikely]] {
                const PacketMeta& meta = b.meta[i];
                ++fragment_reasons[static_cast<std::size_t>(meta.frag.why == FragDrop::none ? FragDrop::no_first
                                                                                            : meta.frag.why)];
            }
            dropped[ndrop++] = m;
        }
    }
    end_run();
    // The lengths are taken before the tx burst: a sent mbuf belongs to the driver afterwards.
    const std::uint16_t sent = npass ? rte_eth_tx_burst(tx_port, queue, pass.data(), npass) : 0;
    std::uint64_t tx_bytes = pass_bytes;
    if (sent < npass) [[unlikely]]
        for (std::uint16_t i = sent; i < npass; ++i)
            tx_bytes -= pass_len[i];
    if (sent < npass)
        rte_pktmbuf_free_bulk(pass.data() + sent, npass - sent);
    if (ndrop)
        rte_pktmbuf_free_bulk(dropped.data(), ndrop);

    PortCounters& in = c.port[idx(rx)];
    PortCounters& out = c.port[idx(other(rx))];
    in.rx_packets.add(b.n);
    in.rx_bytes.add(rx_bytes);
    in.dropped.add(ndrop);
    out.tx_packets.add(sent);
    out.tx_bytes.add(tx_bytes);
    if (sent < npass) [[unlikely]]
        out.tx_failed.add(npass - sent);
    for (std::size_t r = 1; r < kDropReasons; ++r)
        if (reasons[r])
            c.drops[r].add(reasons[r]);
    if (bypassed)
        c.non_ip_passed.add(bypassed);
    if (reasons[static_cast<std::size_t>(DropReason::fragment)]) [[unlikely]]
        for (std::size_t r = 1; r < kFragDrops; ++r)
            if (fragment_reasons[r])
                c.fragment_drops[r].add(fragment_reasons[r]);
    if (fragments_passed) [[unlikely]]
        c.fragments_passed.add(fragments_passed);
}

void drop_stateful(const TableSet& t, std::span<Verdict> verdicts) noexcept {
    for (Verdict& v : verdicts)
        if (v.rank != kNoMatch && v.drop == DropReason::none && t.rules[v.rank].state != StateMode::none)
            v.drop = DropReason::state;
}

void count_states(const StateCounts& s, WorkerCounters& c) noexcept {
    if (s.created)
        c.state_created.add(s.created);
    if (s.expired)
        c.state_expired.add(s.expired);
    if (s.cut)
        c.state_cut.add(s.cut);
    if (s.full)
        c.state_full.add(s.full);
    if (s.related)
        c.state_related.add(s.related);
}

int worker_main(void* arg) noexcept {
    auto& w = *static_cast<WorkerContext*>(arg);
    Burst& b = w.burst;
    if (!w.fragments) {
        std::string error;  // without a table, later fragments are dropped (classify_burst)
        w.fragments = FragmentTable::create(kFragmentTableDefault, static_cast<int>(rte_socket_id()), error);
    }
    FragmentTable* frags = w.fragments.get();
    if (!w.flows) {
        std::string error;  // without a table, stateful entries drop (drop_stateful)
        w.flows = FlowTable::create(kStateTableDefault, static_cast<int>(rte_socket_id()), error);
    }
    FlowTable* flows = w.flows.get();
    rte_rcu_qsbr_thread_register(w.qsbr, w.index);
    rte_rcu_qsbr_thread_online(w.qsbr, w.index);
    // One TSC reading per loop turn: the start of this turn is the end of the last, and a turn
    // that received packets adds its length to busy_cycles. rdtsc is not free (tens of cycles
    // under a hypervisor), so a turn reads it once, and fragments take that reading too.
    unsigned polls = 0;
    std::uint64_t turn_start = rte_rdtsc();
    // Without a monitor the drop trace costs one relaxed load a received burst (of a word the
    // control thread writes only when a monitor attaches or detaches: the line stays in the cache).
    static const std::atomic<std::uint64_t> no_monitor{0};
    const std::atomic<std::uint64_t>& monitor = w.monitor.word ? *w.monitor.word : no_monitor;
    while (!w.stop->load(std::memory_order_relaxed)) [[likely]] {
        const TableSet& t = *w.tables->load(std::memory_order_acquire);
        EntryCounter* hits = t.counters[w.index].get();
        bool busy = false;
        for (const Ingress in : {Ingress::outside, Ingress::inside}) {
            b.n = rte_eth_rx_burst(w.port[idx(in)], w.queue, b.pkts.data(), kBurstMax);
            if (b.n == 0)
                continue;
            busy = true;
            const std::size_t fragments = parse_burst(b.packets(), in, t.parse, b.metas());
            if (t.has_state && flows) [[unlikely]]  // the flows' slots load while the classifier runs
                flows->prepare(b.packets(), b.metas());
            if (classify_burst(t, b.metas(), b.verdict_span()) != 0) [[unlikely]] {
                ScanCounts scanned;
                scan_payloads(t, w.index, b.packets(), b.metas(), b.verdict_span(), scanned);
                w.counters.payload_scanned.add(scanned.packets);
                w.counters.payload_bytes.add(scanned.bytes);
            }
            if (t.has_state) [[unlikely]] {
                // After the payload scans (a scan's winner may keep state), before the fragments
                // (a first fragment's verdict, state included, is what its datagram follows).
                StateCounts states;
                if (flows)
                    flows->settle(t, b.packets(), b.metas(), b.verdict_span(), turn_start, states);
                else
                    drop_stateful(t, b.verdict_span());
                count_states(states, w.counters);
            }
            if (fragments != 0 && frags) [[unlikely]]
                frags->settle(b.metas(), b.verdict_span(), t.generation, turn_start);
            // Read per received burst, after the rx: a monitor that attached while the rx call
            // ran sees this burst.
            const std::uint64_t traced = monitor.load(std::memory_order_relaxed);
            if (traced != 0) [[unlikely]]  // before forwarding: the frames are ours until then
                monitor_burst(w.monitor, traced, b.packets(), b.metas(), b.verdict_span(), t.generation, turn_start,
                              w.index, w.counters.monitor_lost);
            forward_or_drop(b, in, w.port[idx(other(in))], w.queue, w.counters, hits);
        }
        if (++polls % 64 == 0) [[unlikely]] {
            if (frags && frags->in_use() != 0)
                frags->sweep(turn_start, 64 * 4);  // as many as 4 a poll would have freed
            if (flows && flows->in_use() != 0) {
                StateCounts swept;
                // As many flows' slots as 4 a poll would have freed.
                flows->sweep(turn_start, static_cast<unsigned>(64 * 4 * (flows->slots() / flows->capacity())), swept);
                count_states(swept, w.counters);
            }
            // `moatctl states`: a bounded slice of the table a time while a listing is asked for.
            if (flows && w.listing.ring) {
                const std::uint32_t want = w.listing.request.load(std::memory_order_acquire);
                if (want != 0 && want != w.listing.done.load(std::memory_order_relaxed)) [[unlikely]]
                    flows->list(w.listing, want, turn_start, w.index, kListingSlots);
            }
        }
        rte_rcu_qsbr_quiescent(w.qsbr, w.index);  // no table reference lives past this line
        const std::uint64_t now = rte_rdtsc();
        if (busy) {
            w.counters.busy_cycles.add(now - turn_start);
            w.counters.busy_polls.add(1);
        }
        turn_start = now;
    }
    rte_rcu_qsbr_thread_offline(w.qsbr, w.index);
    rte_rcu_qsbr_thread_unregister(w.qsbr, w.index);
    return 0;
}

}  // namespace moat::dp
