#include "control/compile/load.h"

#include <algorithm>
#include <string>
#include <vector>

#include "control/compile/patterns.h"
#include "control/config/config.h"
#include "dataplane/parse.h"

namespace moat::ctl {

namespace {

/// Checks that need the appliance settings or are costly: `me`, expansion, payload patterns.
void check_filters(const Config& cfg, Diagnostics& diags) {
    const auto& me = cfg.appliance.me;
    std::size_t no_me = 0;  // filters that use `me` while it is empty
    const FilterDef* first_no_me = nullptr;
    for (const auto& l : cfg.lists) {
        for (const auto& f : l.filters) {
            const bool uses_me = f.spec.src.kind == HostKind::me || f.spec.dst.kind == HostKind::me;
            if (uses_me && cfg.appliance.me_invalid)
                continue;  // the error at `me` is the cause: not once more per filter
            if (uses_me && me.empty()) {  // said once, at the first such filter
                if (no_me++ == 0)
                    first_no_me = &f;
                continue;
            }
            const std::vector<dp::Entry> entries = expand_filter(f.spec, me, dp::Action::block, false);
            if (entries.empty()) {
                diags.error(cfg.file, f.line, "filter " + quoted(f.text) +
                                  ": no 'me' address has the address family this filter needs");
                continue;
            }
            const auto ipv6_given = [](const HostSpec& h) { return h.kind == HostKind::prefix && h.family == dp::Family::ipv6; };
            // moatd walks IPv6 extension headers and judges the protocol after them: an
            // IPv6 filter on one of them would never match (and explain would disagree).
            if (f.spec.proto && dp::ipv6_extension_header(*f.spec.proto) &&
                std::any_of(entries.begin(), entries.end(), [](const dp::Entry& r) { return r.family == dp::Family::ipv6; })) {
                diags.error(cfg.file, f.line, "filter " + quoted(f.text) + ": protocol " + std::to_string(*f.spec.proto) + " (" +
                                  dp::ipv6_extension_header(*f.spec.proto) +
                                  ") is an IPv6 extension header; moatd reads past it and judges the protocol that follows (TCP, UDP, ...), "
                                  "so an IPv6 filter on it never matches: filter on that protocol" +
                                  (!ipv6_given(f.spec.src) && !ipv6_given(f.spec.dst)
                                       ? ", or give IPv4 addresses (0.0.0.0/0 for any) if IPv4 protocol " + std::to_string(*f.spec.proto) + " is meant"
                                       : std::string()));
                continue;
            }
            // Compiled the way the dataplane will compile it (block mode).
            if (f.spec.payload)
                if (const auto db = compile_patterns({&*f.spec.payload, 1}); !db)
                    diags.error(cfg.file, f.line, "filter " + quoted(f.text) + ": payload pattern does not compile: " + db.error());
        }
    }
    if (no_me > 0)
        diags.error(cfg.file, first_no_me->line, "filter " + quoted(first_no_me->text) +
                                     " uses 'me' (or '0') but [appliance] me is empty: list the protected addresses in 'me = ...'" +
                                     (no_me > 1 ? " (" + std::to_string(no_me - 1) + " more filters use 'me' too)" : std::string()));
}

}  // namespace

LoadResult load_policy_text(std::string_view text, const std::string& file, const LoadOptions& opt) {
    LoadResult r;
    Config cfg = parse_config(text, file, r.diags);
    check_filters(cfg, r.diags);
    if (r.diags.has_errors()) {
        r.diags.sort();
        return r;
    }
    LintCounts counts;
    for (std::size_t i = 0; i < cfg.policies.size(); ++i) {
        if (!opt.lint && !opt.compile_unassigned && static_cast<int>(i) != cfg.assigned)
            continue;
        CompiledPolicy cp = compile_policy(cfg, static_cast<int>(i));
        if (opt.lint)
            lint_policy(cfg, cp, r.diags, counts, {.listed = opt.lint_listed});
        if (static_cast<int>(i) == cfg.assigned)
            r.compiled = std::move(cp);
    }
    if (cfg.assigned < 0)
        r.compiled = compile_block_all();
    // What strict = on counts: every warning, those of the lint that were not listed too.
    std::uint64_t warnings = 0;
    for (const auto& d : r.diags.all())
        warnings += d.severity == Severity::warning && d.kind.empty();
    for (const auto& [kind, n] : counts)
        warnings += n;
    if (cfg.appliance.strict && warnings > 0) {
        r.diags.error(file, cfg.appliance.line,
                      "strict = on and the config has " + std::to_string(warnings) +
                          " warning(s): fix them or set strict = off");
        r.compiled.reset();
    }
    r.diags.sort();
    r.config = std::move(cfg);
    return r;
}

void lint_policies(const Config& cfg, Diagnostics& diags, LintCounts& counts, const LintOptions& opt) {
    for (std::size_t i = 0; i < cfg.policies.size() && !(opt.cancel && *opt.cancel); ++i)
        lint_policy(cfg, compile_policy(cfg, static_cast<int>(i)), diags, counts, opt);
    diags.sort();
}

LoadResult load_policy(const std::string& path, const LoadOptions& opt) {
    const Result<std::string> text = read_config_file(path);
    if (!text) {
        LoadResult r;
        r.diags.error(path, 0, text.error());
        return r;
    }
    return load_policy_text(*text, path, opt);
}

}  // namespace moat::ctl
