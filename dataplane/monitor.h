// Drop trace (`moatctl monitor`): what a worker hands the control thread about sampled packets.
//
// Protocol. The control thread publishes one 64-bit word (MonitorWord) that every worker loads
// with a relaxed load once per loop turn; 0 means no monitor is attached, and then that load is
// all a worker spends. While it is not 0 the worker counts the packets of each kind the word asks
// for (every packet, dropped packets) and copies one in N of each (the word's sample rates) into
// a MonitorRecord in its own ring: an rte_ring created at start-up, single producer (the worker)
// and single consumer (the control thread), fixed-size POD elements, so nothing is allocated on
// the data path. A full ring refuses the record: it is counted (WorkerCounters::monitor_lost),
// and the worker never waits.
//
// A record names its deciding filter by the generation number and the rank the verdict came
// from; the control thread keeps the generations a record may name (control/runtime/monitor.h).
#pragma once

#include <rte_ring.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <type_traits>

#include "dataplane/classify.h"
#include "dataplane/counters.h"
#include "dataplane/entry.h"
#include "dataplane/parse.h"

namespace moat::dp {

/// The largest sample rate a word can carry (24 bits).
inline constexpr std::uint32_t kMaxSample = (1u << 24) - 1;

/// The control thread's settings as one word: bits 0-23 one packet in `all` of every packet
/// (0: none), bits 24-47 one in `drops` of the dropped packets (0: none), bits 48-63 an epoch
/// the control thread changes whenever monitoring starts, so a worker restarts its counts. 0:
/// no monitor. Pure.
struct MonitorWord {
    std::uint32_t all = 0;
    std::uint32_t drops = 0;
    std::uint16_t epoch = 0;

    constexpr std::uint64_t encode() const noexcept {
        if (all == 0 && drops == 0)
            return 0;
        return (std::uint64_t{all} & kMaxSample) | (std::uint64_t{drops} & kMaxSample) << 24 |
               std::uint64_t{epoch} << 48;
    }
    static constexpr MonitorWord decode(std::uint64_t w) noexcept {
        return {static_cast<std::uint32_t>(w & kMaxSample), static_cast<std::uint32_t>((w >> 24) & kMaxSample),
                static_cast<std::uint16_t>(w >> 48)};
    }
    friend constexpr bool operator==(const MonitorWord&, const MonitorWord&) = default;
};

/// One sampled packet, as a worker saw it. POD: copied into the ring by value.
struct MonitorRecord {
    std::uint64_t tsc = 0;         ///< the worker's TSC at the start of the loop turn that received it
    std::uint64_t generation = 0;  ///< of the table set that judged it
    std::uint64_t seq_all = 0;     ///< its index among every packet its worker counted (see MonitorSampler)
    std::uint64_t seq_drop = 0;    ///< among the dropped ones (meaningful when dropped)
    Rank rank = kNoMatch;          ///< the deciding entry in that generation, or kNoMatch
    std::uint32_t length = 0;      ///< frame bytes
    Addr src, dst;
    std::uint16_t sport = 0, dport = 0;
    std::array<std::uint16_t, 2> vlan{};  ///< VLAN ids (12 bits), outer first
    std::uint16_t ethertype = 0;   ///< after the VLAN tags
    std::uint8_t vlans = 0;        ///< how many tags
    Family family = Family::ipv4;
    std::uint8_t proto = 0;
    bool has_ports = false, has_icmp = false;
    std::uint8_t icmp_type = 0, icmp_code = 0;
    Ingress ingress = Ingress::outside;
    DropReason drop = DropReason::none;
    FragDrop frag = FragDrop::none;
    bool fragment = false;  ///< an IP fragment (a later one has no ports)
    bool bypass = false;    ///< a non-IP frame passed by `non_ip`
    std::uint8_t worker = 0;
};
static_assert(std::is_trivially_copyable_v<MonitorRecord>);
static_assert(sizeof(MonitorRecord) % 4 == 0, "rte_ring elements are multiples of 4 bytes");

/// A worker's sampling state: which of the packets it sees go into its ring. Worker only.
/// Every packet counts towards `all`, every dropped one towards `drops`; a packet is sampled when
/// its index of a kind the word asks for is a multiple of that kind's rate (so with one monitor
/// attached it is exactly every Nth, from the first packet after monitoring started).
struct MonitorSampler {
    std::uint16_t epoch = 0;
    bool started = false;
    std::uint64_t seq_all = 0, seq_drop = 0;

    /// Takes one packet under `w` (not 0); true when it is sampled. `seq_*` of the packet are
    /// those before the call. Pure apart from the counts.
    bool take(const MonitorWord& w, bool dropped) noexcept {
        if (!started || epoch != w.epoch) {
            started = true;
            epoch = w.epoch;
            seq_all = seq_drop = 0;
        }
        bool sampled = w.all != 0 && seq_all % w.all == 0;
        ++seq_all;
        if (dropped) {
            sampled |= w.drops != 0 && seq_drop % w.drops == 0;
            ++seq_drop;
        }
        return sampled;
    }
};

/// What a worker needs to trace: the published word, its ring and its sampling state.
struct MonitorPort {
    const std::atomic<std::uint64_t>* word = nullptr;  ///< null: never monitored (benchmarks, tests)
    rte_ring* ring = nullptr;  ///< SP/SC, elements of sizeof(MonitorRecord); made by control
    MonitorSampler sampler;
};

/// Fills `r` from one judged packet (VLAN tags read from the frame's first segment). Any thread.
void fill_record(const rte_mbuf* m, const PacketMeta& meta, const Verdict& v, std::uint64_t generation,
                 std::uint64_t tsc, MonitorRecord& r) noexcept;

/// Samples a judged burst under the word `w` (not 0) and pushes the sampled packets' records into
/// `mon.ring` in one enqueue; what the ring refuses is added to `lost`. Worker only.
[[gnu::cold]] void monitor_burst(MonitorPort& mon, std::uint64_t w, std::span<rte_mbuf* const> pkts,
                                 std::span<const PacketMeta> meta, std::span<const Verdict> verdicts,
                                 std::uint64_t generation, std::uint64_t tsc, unsigned worker, Counter& lost) noexcept;

}  // namespace moat::dp
