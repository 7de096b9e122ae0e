#include "dataplane/classify.h"

#include <array>

namespace moat::dp {

namespace {

void verdict_from_rank(const TableSet& t, Verdict& v) noexcept {
    // needs_scan, written out: through the helper GCC lays the scan path into the loop's
    // fall-through, and the common case would jump.
    if (v.rank != kNoMatch && t.rules[v.rank].payload != kNoPayload) [[unlikely]]
        v.scan = true;  // a payload filter outranks every header-only match: scan_payloads decides
    else
        v.drop = drop_for(t, v.rank);
}

}  // namespace

std::size_t classify_burst(const TableSet& t, std::span<const PacketMeta> meta, std::span<Verdict> out) noexcept {
    std::size_t scans = 0;
    // Packets that need the classifier, by family, as trie keys; the rest are decided here.
    constexpr std::size_t kChunk = 64;
    std::array<TrieKey, kChunk> keys[2];
    std::array<std::uint16_t, kChunk> index[2];
    std::array<Rank, kChunk> ranks;
    for (std::size_t base = 0; base < meta.size(); base += kChunk) {
        const std::size_t n = std::min(kChunk, meta.size() - base);
        std::size_t count[2] = {0, 0};
        for (std::size_t j = 0; j < n; ++j) {
            const std::size_t i = base + j;
            const PacketMeta& m = meta[i];
            Verdict& v = out[i];
            v = Verdict{};
            if (m.drop != DropReason::none) {
                v.drop = m.drop;
                continue;
            }
            if (m.bypass)
                continue;
            if (m.frag.present && m.frag.begin > 0) {
                // No ports to match: dropped unless the fragment table finds its datagram's
                // first fragment (FragmentTable::settle), never classified by guess.
                v.drop = DropReason::fragment;
                continue;
            }
            if (t.use_reference) [[unlikely]] {
                // classify_key_ref, written out: through the helper GCC allocates this whole
                // function's registers differently.
                v.rank = t.payload.empty() ? classify_ref(t.rules, m.key) : classify_ref_any(t.rules, m.key);
                verdict_from_rank(t, v);
                scans += v.scan;
                continue;
            }
            const std::size_t f = m.key.family == Family::ipv4 ? 0 : 1;
            set_trie_key(m.key, keys[f][count[f]]);
            index[f][count[f]++] = static_cast<std::uint16_t>(i);
        }
        for (std::size_t f = 0; f < 2; ++f) {
            if (count[f] == 0)
                continue;
            trie_classify(classifier_trie(t, f), {keys[f].data(), count[f]}, {ranks.data(), count[f]}, t.scan);
            for (std::size_t j = 0; j < count[f]; ++j) {
                Verdict& v = out[index[f][j]];
                v.rank = ranks[j];
                verdict_from_rank(t, v);
                scans += v.scan;
            }
        }
    }
    return scans;
}

}  // namespace moat::dp
