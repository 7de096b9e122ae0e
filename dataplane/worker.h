// The worker: a poll-mode loop on one lcore that moves packets between the outside and the inside
// port, judging each against the published table set (STYLE 2-8).
#pragma once

#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "dataplane/classify.h"
#include "dataplane/counters.h"
#include "dataplane/fragments.h"
#include "dataplane/monitor.h"
#include "dataplane/parse.h"
#include "dataplane/state.h"
#include "dataplane/table_set.h"

namespace moat::dp {

inline constexpr std::uint16_t kBurstMax = 32;

/// One burst as a fixed-capacity struct of arrays, owned by its worker (STYLE 3).
struct alignas(64) Burst {
    std::array<rte_mbuf*, kBurstMax> pkts{};
    std::array<PacketMeta, kBurstMax> meta{};
    std::array<Verdict, kBurstMax> verdicts{};
    std::uint16_t n = 0;

    std::span<rte_mbuf* const> packets() const noexcept { return {pkts.data(), n}; }
    std::span<PacketMeta> metas() noexcept { return {meta.data(), n}; }
    std::span<Verdict> verdict_span() noexcept { return {verdicts.data(), n}; }
};

/// Everything one worker owns (STYLE 8). Control builds it before launch; afterwards only the
/// worker writes it (the counters are read by control with relaxed loads).
struct alignas(64) WorkerContext {
    unsigned index = 0;                 ///< 0-based worker number: its queue and counter slot
    unsigned lcore = 0;
    std::array<std::uint16_t, 2> port{};  ///< DPDK port ids, indexed by Ingress
    std::uint16_t queue = 0;
    const std::atomic<const TableSet*>* tables = nullptr;
    rte_rcu_qsbr* qsbr = nullptr;  ///< the publisher's; this worker is reader `index`
    const std::atomic<bool>* stop = nullptr;
    WorkerCounters counters;
    std::unique_ptr<FragmentTable> fragments;  ///< made by control; worker_main makes a default one if not
    std::unique_ptr<FlowTable> flows;  ///< made by control; worker_main makes a default one if not
    MonitorPort monitor;  ///< the drop trace's word and ring (control sets them; unset: never traced)
    StateListing listing;  ///< `moatctl states` (control sets the ring; unset: never listed)
    Burst burst;
};

/// Forwards the permitted packets of `b` to `tx_port` in one burst, frees what the port did not
/// take (counted as tx_failed) and the dropped packets in one bulk free, and counts it all.
void forward_or_drop(Burst& b, Ingress rx, std::uint16_t tx_port, std::uint16_t queue, WorkerCounters& c,
                     EntryCounter* hits) noexcept;

/// The state stage without a flow table (none could be made): every packet whose deciding entry
/// keeps state is dropped (DropReason::state), so that no stateful mirror opens anything.
void drop_stateful(const TableSet& t, std::span<Verdict> verdicts) noexcept;

/// Adds what the state stage did to the worker's counters.
void count_states(const StateCounts& s, WorkerCounters& c) noexcept;

/// The lcore entry point: runs until `*stop`; `arg` is the WorkerContext. Registers with the
/// publisher's RCU state and goes online before its loop, reports a quiescent state at the end
/// of every iteration (no table pointer lives past it), goes offline before it returns.
int worker_main(void* arg) noexcept;

}  // namespace moat::dp
