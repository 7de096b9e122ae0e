#include "control/tables.h"

namespace moat::ctl {

TablesResult build_table_set(const Config& cfg, const CompiledPolicy& cp, unsigned workers, std::uint64_t generation) {
    TablesResult res;
    auto t = std::make_unique<dp::TableSet>();
    t->generation = generation;
    const Appliance& a = cfg.appliance;
    t->parse.non_ip = a.non_ip;
    t->parse.ip_options_allow = a.ip_options_allow;
    t->parse.antispoof = a.antispoof;
    t->parse.fragments_track = a.fragments == FragmentMode::track;
    for (const auto& m : a.me)
        (m.family == dp::Family::ipv4 ? t->parse.me_v4 : t->parse.me_v6).push_back(m.addr);
    t->rules = cp.rules;
    t->use_reference = a.classifier == ClassifierKind::reference;
    t->scan = dp::best_leaf_scan();
    TrieBuildOptions opt;
    opt.memory_limit = std::size_t{a.classifier_memory_mb} << 20;
    for (const dp::Family f : {dp::Family::ipv4, dp::Family::ipv6}) {
        TrieBuildResult b = build_trie(t->rules, f, opt);
        (f == dp::Family::ipv4 ? res.v4 : res.v6) = b.stats;
        if (!b.trie) {
            res.error = b.error;
            return res;
        }
        (f == dp::Family::ipv4 ? t->v4 : t->v6) = std::move(*b.trie);
    }
    t->allocate_counters(workers);
    res.tables = std::move(t);
    return res;
}

}  // namespace moat::ctl
