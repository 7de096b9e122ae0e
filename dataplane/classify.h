// Classification of a parsed burst against a table set.
#pragma once

#include <rte_mbuf.h>

#include <span>

#include "dataplane/counters.h"
#include "dataplane/parse.h"
#include "dataplane/table_set.h"

namespace moat::dp {

struct Verdict {
    Rank rank = kNoMatch;                ///< the winning entry, if a filter decided
    DropReason drop = DropReason::none;  ///< none: forward
    /// The classifier's answer is a payload entry: undecided until scan_payloads
    /// settles it (rank: that entry, drop: none).
    bool scan = false;
};

/// Judges each packet of a burst: parse drops stay drops, permitted non-IP frames pass, every
/// other packet gets the best-ranked matching entry's action, or no_match; a packet whose best
/// match is a payload entry is left to scan_payloads (Verdict::scan). Returns how many are.
/// Worker, lock-free.
std::size_t classify_burst(const TableSet& t, std::span<const PacketMeta> meta, std::span<Verdict> out) noexcept;

/// The drop reason of a decided rank: no_match, none (permit), payload (a payload filter's
/// block) or policy.
DropReason drop_for(const TableSet& t, Rank r) noexcept;

/// What scan_payloads scanned.
struct ScanCounts {
    std::uint32_t packets = 0;
    std::uint64_t bytes = 0;
};

/// Settles the packets of a classified burst whose verdict is a payload entry (Verdict::scan):
/// scans their payloads with worker `worker`'s scratch and sets each verdict to the winner.
/// Adds what it scanned to `counts`. Worker only.
void scan_payloads(const TableSet& t, unsigned worker, std::span<rte_mbuf* const> pkts,
                   std::span<const PacketMeta> meta, std::span<Verdict> verdicts, ScanCounts& counts) noexcept;

/// The same for one packet's payload bytes: the best-ranked payload entry that outranks the
/// header-only winner `header` and whose header fields and pattern match, else `header`.
/// `matched`: room for every pattern id (t.payload.patterns).
Rank settle_payload(const TableSet& t, hs_scratch_t* scratch, const PacketKey& key, Rank header,
                    std::span<const std::uint8_t> payload, std::span<std::uint32_t> matched) noexcept;

}  // namespace moat::dp
