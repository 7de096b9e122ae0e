// Classification of a parsed burst against a table set.
#pragma once

#include <rte_mbuf.h>

#include <span>

#include "dataplane/classifier_ref.h"
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

/// The trie classify_burst asks for family `f` (0: IPv4): the one that holds the payload entries
/// too where the policy has some of that family.
inline const Trie& classifier_trie(const TableSet& t, std::size_t f) noexcept {
    return t.has_payload[f] ? (f == 0 ? t.v4_payload : t.v6_payload) : (f == 0 ? t.v4 : t.v6);
}

/// The classifier's answer for one key, as classify_burst gives it for a packet it classifies:
/// the best-ranked entry whose header fields match `k` (payload entries included where the policy
/// has them: then needs_scan says whether a scan decides), or kNoMatch. Any thread.
/// classify_key under `classifier = reference` (t.use_reference): the linear oracle.
/// classify_burst writes this and needs_scan out (the same expressions), to keep its code as
/// GCC compiled it; tests/dataplane/explain_test.cpp holds explain, which calls these, to it.
inline Rank classify_key_ref(const TableSet& t, const PacketKey& k) noexcept {
    return t.payload.empty() ? classify_ref(t.rules, k) : classify_ref_any(t.rules, k);
}

inline Rank classify_key(const TableSet& t, const PacketKey& k) noexcept {
    if (t.use_reference) [[unlikely]]
        return classify_key_ref(t, k);
    return trie_lookup(classifier_trie(t, k.family == Family::ipv4 ? 0 : 1), trie_key(k), t.scan);
}

/// True when the classifier's answer `r` is a payload entry: a payload scan decides (Verdict::scan).
inline bool needs_scan(const TableSet& t, Rank r) noexcept {
    return r != kNoMatch && t.rules[r].payload != kNoPayload;
}

/// The best-ranked header-only entry that matches `k` (payload entries skipped), from the
/// classifier the table set uses: the winner unless a matching payload filter outranks it.
inline Rank header_winner(const TableSet& t, const PacketKey& k) noexcept {
    return t.use_reference ? classify_ref(t.rules, k)
                           : trie_lookup(k.family == Family::ipv4 ? t.v4 : t.v6, trie_key(k), t.scan);
}

/// Judges each packet of a burst: parse drops stay drops, permitted non-IP frames pass, every
/// other packet gets the best-ranked matching entry's action, or no_match; a packet whose best
/// match is a payload entry is left to scan_payloads (Verdict::scan). Returns how many are.
/// Worker, lock-free.
std::size_t classify_burst(const TableSet& t, std::span<const PacketMeta> meta, std::span<Verdict> out) noexcept;

/// The drop reason of a decided rank: no_match, none (permit), payload (a payload filter's
/// block) or policy. Inline: the worker asks it for every packet.
inline DropReason drop_for(const TableSet& t, Rank r) noexcept {
    if (r == kNoMatch)
        return DropReason::no_match;
    if (t.rules[r].action == Action::permit)
        return DropReason::none;
    return t.rules[r].payload != kNoPayload ? DropReason::payload : DropReason::policy;
}

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

/// Scans `payload` with every pattern of `p` and `scratch` (an empty payload is not scanned:
/// Hyperscan refuses patterns that match nothing, so none can match). Writes the ids of the
/// patterns that matched, each once, to `matched` (room for p.patterns) and returns how many,
/// or -1 when the scan failed. Any thread that owns `scratch`.
int scan_patterns(const PayloadTables& p, hs_scratch_t* scratch, std::span<const std::uint8_t> payload,
                  std::span<std::uint32_t> matched) noexcept;

/// The best-ranked payload entry of a pattern in `matched` that outranks `header` (the
/// header-only winner) and whose header fields match `key`, else `header`. Any thread.
Rank payload_winner(const TableSet& t, const PacketKey& key, Rank header,
                    std::span<const std::uint32_t> matched) noexcept;

/// The same for one packet's payload bytes: the best-ranked payload entry that outranks the
/// header-only winner `header` and whose header fields and pattern match, else `header`; kNoMatch
/// (default deny) when the scan fails. scan_patterns, then payload_winner.
/// `matched`: room for every pattern id (t.payload.patterns).
Rank settle_payload(const TableSet& t, hs_scratch_t* scratch, const PacketKey& key, Rank header,
                    std::span<const std::uint8_t> payload, std::span<std::uint32_t> matched) noexcept;

}  // namespace moat::dp
