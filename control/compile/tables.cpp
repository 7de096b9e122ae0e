#include "control/compile/tables.h"

#include "control/compile/patterns.h"
#include "dataplane/port.h"

#include <algorithm>

namespace moat::ctl {

namespace {

/// The payload database of `cp`, a scratch and a match bitmap per worker, the ranks of the
/// payload entries; or why Hyperscan refuses.
Status build_payload(const CompiledPolicy& cp, unsigned workers, unsigned scan_bytes, dp::PayloadTables& p) {
    Result<dp::HsDatabasePtr> db = compile_patterns(cp.patterns);
    if (!db)
        return fail("payload patterns: " + db.error());
    p.db = std::move(*db);
    hs_scratch_t* proto = nullptr;
    if (hs_alloc_scratch(p.db.get(), &proto) != HS_SUCCESS)
        return fail("payload patterns: Hyperscan cannot allocate scratch space");
    p.scratch.emplace_back(proto);
    for (unsigned w = 1; w < workers; ++w) {
        hs_scratch_t* clone = nullptr;
        if (hs_clone_scratch(proto, &clone) != HS_SUCCESS)
            return fail("payload patterns: Hyperscan cannot allocate scratch space");
        p.scratch.emplace_back(clone);
    }
    p.patterns = static_cast<std::uint32_t>(cp.patterns.size());
    p.scan_bytes = scan_bytes;
    for (unsigned w = 0; w < workers; ++w)
        p.matched.emplace_back(new std::uint32_t[p.patterns]());
    std::vector<std::vector<dp::Rank>> of_pattern(p.patterns);
    for (std::size_t r = 0; r < cp.rules.size(); ++r)
        if (cp.rules[r].payload != dp::kNoPayload)
            of_pattern[cp.rules[r].payload].push_back(static_cast<dp::Rank>(r));
    for (const auto& ranks : of_pattern) {
        p.first.push_back(static_cast<std::uint32_t>(p.entries.size()));
        p.entries.insert(p.entries.end(), ranks.begin(), ranks.end());
    }
    p.first.push_back(static_cast<std::uint32_t>(p.entries.size()));
    return {};
}

/// The parser's part of the policy and the ranked entries.
std::unique_ptr<dp::TableSet> base_tables(const Config& cfg, const CompiledPolicy& cp, std::uint64_t generation) {
    auto t = std::make_unique<dp::TableSet>();
    t->generation = generation;
    const Appliance& a = cfg.appliance;
    t->parse.non_ip = a.non_ip;
    t->parse.ip_options_allow = a.ip_options_allow;
    t->parse.antispoof = a.antispoof;
    t->parse.fragments_track = a.fragments == FragmentMode::track;
    t->parse.max_frame = dp::frame_limit(a.mtu);
    for (const auto& m : a.me)
        (m.family == dp::Family::ipv4 ? t->parse.me_v4 : t->parse.me_v6).push_back(m.addr);
    t->rules = cp.rules;
    t->has_state = std::any_of(cp.rules.begin(), cp.rules.end(),
                               [](const dp::Entry& e) { return e.state != dp::StateMode::none; });
    t->use_reference = a.classifier == ClassifierKind::reference;
    t->scan = dp::best_leaf_scan();
    return t;
}

}  // namespace

ReferenceTables build_reference_tables(const Config& cfg, const CompiledPolicy& cp, bool with_payload) {
    ReferenceTables res;
    res.tables = base_tables(cfg, cp, 0);
    res.tables->use_reference = true;
    if (with_payload && !cp.patterns.empty())
        if (const Status built = build_payload(cp, 1, cfg.appliance.payload_scan_bytes, res.tables->payload); !built) {
            res.tables->payload = dp::PayloadTables{};
            res.payload_error = built.error();
        }
    return res;
}

Result<BuiltTables> build_table_set(const Config& cfg, const CompiledPolicy& cp, unsigned workers,
                                    std::uint64_t generation, const std::atomic<bool>* cancel) {
    BuiltTables res;
    auto t = base_tables(cfg, cp, generation);
    const Appliance& a = cfg.appliance;
    TrieBuildOptions opt;
    opt.memory_limit = std::size_t{a.classifier_memory_mb} << 20;
    opt.cancel = cancel;
    for (const dp::Family f : {dp::Family::ipv4, dp::Family::ipv6}) {
        Result<BuiltTrie> b = build_trie(t->rules, f, opt);
        if (!b)
            return fail(b.error());
        (f == dp::Family::ipv4 ? res.v4 : res.v6) = b->stats;
        (f == dp::Family::ipv4 ? t->v4 : t->v6) = std::move(b->trie);
    }
    if (!cp.patterns.empty()) {
        if (Status built = build_payload(cp, workers, a.payload_scan_bytes, t->payload); !built)
            return fail(built.error());
        TrieBuildOptions all = opt;
        all.with_payload = true;
        for (const dp::Family f : {dp::Family::ipv4, dp::Family::ipv6}) {
            const std::size_t fi = f == dp::Family::ipv4 ? 0 : 1;
            for (const dp::Rank r : t->payload.entries)
                t->has_payload[fi] = t->has_payload[fi] || t->rules[r].family == f;
            if (!t->has_payload[fi])
                continue;
            Result<BuiltTrie> b = build_trie(t->rules, f, all);
            if (!b)
                return fail(b.error());
            (f == dp::Family::ipv4 ? t->v4_payload : t->v6_payload) = std::move(b->trie);
        }
    }
    t->allocate_counters(workers);
    res.tables = std::move(t);
    return res;
}

}  // namespace moat::ctl
