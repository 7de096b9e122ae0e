#include "dataplane/classify.h"

#include "dataplane/classifier_ref.h"

namespace moat::dp {

void classify_burst(const TableSet& t, std::span<const PacketMeta> meta, std::span<Verdict> out) noexcept {
    for (std::size_t i = 0; i < meta.size(); ++i) {
        const PacketMeta& m = meta[i];
        Verdict& v = out[i];
        v = Verdict{};
        if (m.drop != DropReason::none) {
            v.drop = m.drop;
            continue;
        }
        if (m.bypass)
            continue;
        v.rank = classify_ref(t.rules, m.key);
        if (v.rank == kNoMatch)
            v.drop = DropReason::no_match;
        else if (t.rules[v.rank].action == Action::block)
            v.drop = DropReason::policy;
    }
}

}  // namespace moat::dp
