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
    PacketKey key;                 ///< as the parser made it (its ingress port too)
    std::array<std::uint16_t, 2> vlan{};  ///< VLAN ids (12 bits), outer first
    std::uint16_t ethertype = 0;   ///< after the VLAN tags
    std::uint8_t vlans = 0;        ///< how many tags
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
/// The next sampled index of each kind is kept, so a packet costs compares, not divisions (a
/// 64-bit division is tens of cycles); it is worked out again when the word's rate changes (a
/// second monitor attached: the gcd of the rates), which is one division.
struct MonitorSampler {
    std::uint16_t epoch = 0;
    bool started = false;
    std::uint64_t seq_all = 0, seq_drop = 0;
    std::uint32_t rate_all = 0, rate_drop = 0;    ///< the rates next_* follow (0: none)
    std::uint64_t next_all = kNever, next_drop = kNever;  ///< the next index of each kind to sample

    static constexpr std::uint64_t kNever = ~std::uint64_t{0};

    /// Takes one packet under `w` (not 0); true when it is sampled. `seq_*` of the packet are
    /// those before the call. Pure apart from the counts.
    bool take(const MonitorWord& w, bool dropped) noexcept {
        follow(w);
        bool sampled = false;
        if (seq_all == next_all) {
            sampled = true;
            next_all += rate_all;
        }
        ++seq_all;
        if (dropped) {
            if (seq_drop == next_drop) {
                sampled = true;
                next_drop += rate_drop;
            }
            ++seq_drop;
        }
        return sampled;
    }

    /// Takes a burst judged by `verdicts` under `w` (not 0): the positions of the sampled packets
    /// go to `picked` (as many as the burst holds at most), their number is returned. The same
    /// as take() for each packet in turn; a burst in which nothing is due (a sample rate over the
    /// burst size, --drops on permitted traffic) costs one pass that counts the drops.
    unsigned pick(const MonitorWord& w, std::span<const Verdict> verdicts, std::uint8_t* picked) noexcept {
        follow(w);
        std::uint64_t drops = 0;
        for (const Verdict& v : verdicts)
            drops += v.drop != DropReason::none;
        if (next_all >= seq_all + verdicts.size() && next_drop >= seq_drop + drops) [[likely]] {
            seq_all += verdicts.size();
            seq_drop += drops;
            return 0;
        }
        unsigned k = 0;
        for (std::size_t i = 0; i < verdicts.size(); ++i)
            if (take(w, verdicts[i].drop != DropReason::none))
                picked[k++] = static_cast<std::uint8_t>(i);
        return k;
    }

    /// The least multiple of `rate` that is at least `from`; kNever for rate 0.
    static constexpr std::uint64_t first_multiple(std::uint64_t from, std::uint32_t rate) noexcept {
        return rate == 0 ? kNever : (from + rate - 1) / rate * rate;
    }

private:
    /// Restarts the counts for a new epoch and works out the next indexes for new rates.
    void follow(const MonitorWord& w) noexcept {
        if (!started || epoch != w.epoch) [[unlikely]] {
            started = true;
            epoch = w.epoch;
            seq_all = seq_drop = 0;
            rate_all = rate_drop = 0;
            next_all = next_drop = kNever;
        }
        if (w.all != rate_all || w.drops != rate_drop) [[unlikely]] {
            rate_all = w.all;
            rate_drop = w.drops;
            next_all = first_multiple(seq_all, rate_all);
            next_drop = first_multiple(seq_drop, rate_drop);
        }
    }
};

/// The most records a worker makes in one budget window (MonitorPort::window_cycles, 1 ms in
/// moatd): 256,000 a second, which at the ~120 cycles a record costs is about 1% of a 2.5 GHz
/// core. A sampled packet beyond it is not recorded but counted lost like a refused one, so
/// whoever attaches a monitor (the read-only socket serves them) cannot take more of a worker's
/// time than that, and the control thread, which drains at most 4096 records a 5 ms turn, is
/// not handed more than it can take.
inline constexpr std::uint32_t kMonitorRecordsPerWindow = 256;

/// What a worker needs to trace: the published word, its ring, its sampling state and budget.
struct MonitorPort {
    const std::atomic<std::uint64_t>* word = nullptr;  ///< null: never monitored (benchmarks, tests)
    rte_ring* ring = nullptr;  ///< SP/SC, elements of sizeof(MonitorRecord); made by control
    MonitorSampler sampler;
    /// TSC cycles of a budget window; 0: every burst opens a new one (no budget beyond
    /// kMonitorRecordsPerWindow a burst, which is more than a burst holds).
    std::uint64_t window_cycles = 0;
    std::uint64_t window_start = 0;  ///< TSC at which the current window opened
    std::uint32_t window_left = kMonitorRecordsPerWindow;  ///< records the current window still allows
};

/// Fills `r` from one judged packet (VLAN tags read from the frame's first segment). Any thread.
void fill_record(const rte_mbuf* m, const PacketMeta& meta, const Verdict& v, std::uint64_t generation,
                 std::uint64_t tsc, MonitorRecord& r) noexcept;

/// Samples a judged burst under the word `w` (not 0) and pushes the sampled packets' records into
/// `mon.ring` in one enqueue; sampled packets beyond the window's budget or the ring's free room
/// are not recorded (no record is filled for nothing) and, with what the ring refuses, are added
/// to `lost`. Worker only.
[[gnu::cold]] void monitor_burst(MonitorPort& mon, std::uint64_t w, std::span<rte_mbuf* const> pkts,
                                 std::span<const PacketMeta> meta, std::span<const Verdict> verdicts,
                                 std::uint64_t generation, std::uint64_t tsc, unsigned worker, Counter& lost) noexcept;

}  // namespace moat::dp
