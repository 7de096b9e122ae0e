#include "control/tables.h"

namespace moat::ctl {

std::unique_ptr<dp::TableSet> build_table_set(const Config& cfg, const CompiledPolicy& cp, unsigned workers,
                                              std::uint64_t generation) {
    auto t = std::make_unique<dp::TableSet>();
    t->generation = generation;
    const Appliance& a = cfg.appliance;
    t->parse.non_ip = a.non_ip;
    t->parse.ip_options_allow = a.ip_options_allow;
    t->parse.antispoof = a.antispoof;
    for (const auto& m : a.me)
        (m.family == dp::Family::ipv4 ? t->parse.me_v4 : t->parse.me_v6).push_back(m.addr);
    t->rules = cp.rules;
    t->allocate_counters(workers);
    return t;
}

}  // namespace moat::ctl
