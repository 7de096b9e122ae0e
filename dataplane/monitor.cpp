#include "dataplane/monitor.h"

#include <rte_cycles.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <array>
#include <cstddef>

#include "dataplane/wire.h"
#include "dataplane/worker.h"

namespace moat::dp {

void fill_record(const rte_mbuf* m, const PacketMeta& meta, const Verdict& v, std::uint64_t generation,
                 std::uint64_t tsc, MonitorRecord& r) noexcept {
    r = MonitorRecord{};
    r.tsc = tsc;
    r.generation = generation;
    r.rank = v.rank;
    r.length = m->pkt_len;
    r.key = meta.key;
    r.drop = v.drop;
    r.fragment = meta.frag.present;
    r.bypass = meta.bypass;
    if (v.drop == DropReason::fragment)
        r.frag = meta.frag.why == FragDrop::none ? FragDrop::no_first : meta.frag.why;
    // The tags, read again here (the parser keeps no VLAN ids): at most two, within the first
    // segment, as the parser reads them.
    const auto* p = rte_pktmbuf_mtod(m, const std::uint8_t*);
    const std::uint32_t len = m->data_len;
    std::uint32_t off = 12;
    if (off + 2 > len)
        return;
    std::uint16_t type = static_cast<std::uint16_t>(p[off] << 8 | p[off + 1]);
    while (is_vlan_tag(type) && r.vlans < r.vlan.size() && off + 6 <= len) {
        r.vlan[r.vlans++] = static_cast<std::uint16_t>((p[off + 2] << 8 | p[off + 3]) & 0x0fff);
        off += 4;
        type = static_cast<std::uint16_t>(p[off] << 8 | p[off + 1]);
    }
    r.ethertype = type;
}

void monitor_burst(MonitorPort& mon, std::uint64_t word, std::span<rte_mbuf* const> pkts,
                   std::span<const PacketMeta> meta, std::span<const Verdict> verdicts, std::uint64_t generation,
                   std::uint64_t tsc, unsigned worker, Counter& lost) noexcept {
    const MonitorWord w = MonitorWord::decode(word);
    // Which packets are sampled first: a burst with none (the usual case of --drops, or of a
    // sample rate) costs no clock read and no look at the ring.
    std::array<std::uint8_t, kBurstMax> picked;
    const unsigned k = mon.sampler.pick(w, verdicts.subspan(0, pkts.size()), picked.data());
    if (k == 0)
        return;
    // The clock now, not the turn's start (`tsc`): a receive call may have waited (net_pcap on a
    // FIFO blocks), and a stale start would keep an exhausted window open for that long.
    if (const std::uint64_t now = rte_rdtsc(); now - mon.window_start >= mon.window_cycles) {
        mon.window_start = now;
        mon.window_left = kMonitorRecordsPerWindow;
    }
    // What may be recorded: the window's budget and the ring's free room (read once: only this
    // worker adds to the ring, so the room can only grow meanwhile).
    const unsigned room = mon.ring ? std::min<unsigned>(mon.window_left, rte_ring_free_count(mon.ring)) : 0;
    const unsigned n = std::min(k, room);
    // Raw storage, not std::array<MonitorRecord>: that would zero 3 KB a burst before sampling
    // anything (with small bursts, tens of cycles a packet); fill_record writes each record whole.
    alignas(MonitorRecord) std::byte storage[sizeof(MonitorRecord) * kBurstMax];
    auto* recs = reinterpret_cast<MonitorRecord*>(storage);
    // The counts at the end of the burst, walked back to each recorded packet's indexes.
    std::uint64_t seq_all = mon.sampler.seq_all, seq_drop = mon.sampler.seq_drop;
    for (std::size_t i = pkts.size(), j = k; i-- > 0;) {
        const bool dropped = verdicts[i].drop != DropReason::none;
        --seq_all;
        seq_drop -= dropped;
        if (j == 0 || picked[j - 1] != i)
            continue;
        --j;
        if (j >= n)  // beyond the room: counted lost below
            continue;
        MonitorRecord& r = recs[j];
        fill_record(pkts[i], meta[i], verdicts[i], generation, tsc, r);
        r.seq_all = seq_all;
        r.seq_drop = seq_drop;
        r.worker = static_cast<std::uint8_t>(worker);
    }
    const unsigned sent = n ? rte_ring_sp_enqueue_burst_elem(mon.ring, recs, sizeof(MonitorRecord), n, nullptr) : 0;
    mon.window_left -= sent;
    if (const unsigned missed = k - sent; missed != 0)
        lost.add(missed);
}

}  // namespace moat::dp
