#include "dataplane/monitor.h"

#include <rte_mbuf.h>

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
    const PacketKey& k = meta.key;
    r.src = k.src;
    r.dst = k.dst;
    r.family = k.family;
    r.proto = k.proto;
    r.has_ports = k.has_ports;
    r.has_icmp = k.has_icmp;
    r.sport = k.sport;
    r.dport = k.dport;
    r.icmp_type = k.icmp_type;
    r.icmp_code = k.icmp_code;
    r.ingress = k.ingress;
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
    // Raw storage, not std::array<MonitorRecord>: that would zero 3 KB a burst before sampling
    // anything (with small bursts, tens of cycles a packet); fill_record writes each record whole.
    alignas(MonitorRecord) std::byte storage[sizeof(MonitorRecord) * kBurstMax];
    auto* recs = reinterpret_cast<MonitorRecord*>(storage);
    unsigned n = 0;
    for (std::size_t i = 0; i < pkts.size(); ++i) {
        const bool dropped = verdicts[i].drop != DropReason::none;
        if (!mon.sampler.take(w, dropped))
            continue;
        MonitorRecord& r = recs[n++];
        fill_record(pkts[i], meta[i], verdicts[i], generation, tsc, r);
        // take() has counted the packet: its indexes are one less than the counts.
        r.seq_all = mon.sampler.seq_all - 1;
        r.seq_drop = dropped ? mon.sampler.seq_drop - 1 : mon.sampler.seq_drop;
        r.worker = static_cast<std::uint8_t>(worker);
    }
    if (n == 0)
        return;
    const unsigned sent = mon.ring ? rte_ring_sp_enqueue_burst_elem(mon.ring, recs, sizeof(MonitorRecord), n, nullptr) : 0;
    if (sent < n)
        lost.add(n - sent);
}

}  // namespace moat::dp
