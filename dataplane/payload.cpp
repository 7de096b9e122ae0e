#include "dataplane/classify.h"

#include <algorithm>

#include "dataplane/classifier_ref.h"
#include "dataplane/parse.h"
#include "dataplane/table_set.h"

namespace moat::dp {

namespace {

struct Matches {
    std::uint32_t* ids;
    std::uint32_t n;
};

int on_match(unsigned int id, unsigned long long /*from*/, unsigned long long /*to*/, unsigned int /*flags*/,
             void* ctx) noexcept {
    auto& m = *static_cast<Matches*>(ctx);
    m.ids[m.n++] = id;
    return 0;  // go on: every candidate pattern is tested in the one pass
}

}  // namespace

namespace {

// The bodies of scan_patterns and payload_winner, inlined into settle_payload as they were
// before explain needed them apart: no extra calls on the scan path.

[[gnu::always_inline]] inline int scan_matches(const PayloadTables& p, hs_scratch_t* scratch,
                                               std::span<const std::uint8_t> payload,
                                               std::span<std::uint32_t> matched) noexcept {
    if (payload.empty())
        return 0;  // Hyperscan refuses patterns that match nothing: none can match
    Matches m{matched.data(), 0};
    if (hs_scan(p.db.get(), reinterpret_cast<const char*>(payload.data()), static_cast<unsigned>(payload.size()), 0,
                scratch, on_match, &m) != HS_SUCCESS) [[unlikely]]
        return -1;
    return static_cast<int>(m.n);
}

[[gnu::always_inline]] inline Rank best_payload_entry(const TableSet& t, const PacketKey& key, Rank header,
                                                      std::span<const std::uint32_t> matched) noexcept {
    const PayloadTables& p = t.payload;
    // The best entry of each matched pattern whose header fields match; the best of those wins
    // if it outranks the header-only winner. Work in proportion to the matches, not the patterns.
    Rank best = header;
    for (const std::uint32_t id : matched) {
        for (std::uint32_t e = p.first[id]; e < p.first[id + 1] && p.entries[e] < best; ++e)
            if (header_matches(t.rules[p.entries[e]], key)) {
                best = p.entries[e];
                break;
            }
    }
    return best;
}

}  // namespace

int scan_patterns(const PayloadTables& p, hs_scratch_t* scratch, std::span<const std::uint8_t> payload,
                  std::span<std::uint32_t> matched) noexcept {
    return scan_matches(p, scratch, payload, matched);
}

Rank payload_winner(const TableSet& t, const PacketKey& key, Rank header,
                    std::span<const std::uint32_t> matched) noexcept {
    return best_payload_entry(t, key, header, matched);
}

Rank settle_payload(const TableSet& t, hs_scratch_t* scratch, const PacketKey& key, Rank header,
                    std::span<const std::uint8_t> payload, std::span<std::uint32_t> matched) noexcept {
    const int n = scan_matches(t.payload, scratch, payload, matched);
    if (n < 0) [[unlikely]]
        return kNoMatch;  // cannot tell: default deny
    return best_payload_entry(t, key, header, matched.first(static_cast<std::size_t>(n)));
}

void scan_payloads(const TableSet& t, unsigned worker, std::span<rte_mbuf* const> pkts,
                   std::span<const PacketMeta> meta, std::span<Verdict> verdicts, ScanCounts& counts) noexcept {
    const PayloadTables& p = t.payload;
    static thread_local std::uint8_t linear[kMaxFrame];
    for (std::size_t i = 0; i < verdicts.size(); ++i) {
        Verdict& v = verdicts[i];
        if (!v.scan) [[likely]]
            continue;
        v.scan = false;
        const PacketMeta& m = meta[i];
        const Rank header = header_winner(t, m.key);
        const std::uint32_t len = p.scan_length(m.payload_length);
        const rte_mbuf* mb = pkts[i];
        const auto* bytes = static_cast<const std::uint8_t*>(
            len ? rte_pktmbuf_read(mb, m.payload_offset, len, linear) : nullptr);
        if (len && !bytes) [[unlikely]]
            v.rank = kNoMatch;  // the payload is not where the parser saw it: cannot happen, deny
        else
            v.rank = settle_payload(t, p.scratch[worker].get(), m.key, header, {bytes, bytes ? len : 0},
                                    {p.matched[worker].get(), p.patterns});
        if (len) {
            ++counts.packets;
            counts.bytes += len;
        }
        v.drop = drop_for(t, v.rank);
    }
}

}  // namespace moat::dp
