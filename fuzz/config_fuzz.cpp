// libFuzzer target: the config loader on arbitrary text, then, for whatever loads, the table
// set the control thread would publish. Besides memory errors and uncaught exceptions it checks
// what the loader promises (every diagnostic on a line of the text and valid UTF-8, errors and a
// usable policy never together) and that the built trie agrees with the reference classifier on
// packets at the corners of every filter.
#include <algorithm>
#include <string_view>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/tables.h"
#include "control/config/text.h"
#include "dataplane/classifier_ref.h"
#include "fuzz/check.h"
#include "tests/common/keys.h"

namespace {

using namespace moat::dp;
using moat::test::key_of;

void check_agree(const TableSet& t, const PacketKey& k) {
    const Rank want = classify_ref(t.rules, k);
    const Trie& trie = k.family == Family::ipv4 ? t.v4 : t.v6;
    static const std::vector<LeafScan> scans = supported_leaf_scans();
    for (const LeafScan s : scans)
        MOAT_FUZZ_CHECK(trie_lookup(trie, trie_key(k), s) == want);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto r = moat::ctl::load_policy_text(text, "fuzz.ini");
    const auto lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) +
                       (text.empty() || text.back() == '\n' ? 0 : 1);
    for (const auto& d : r.diags.all()) {
        MOAT_FUZZ_CHECK(d.line >= 0 && d.line <= lines && !d.message.empty());
        // Messages quote the text they are about, which must be UTF-8 to get that far: they
        // reach the control socket's JSON as they are.
        MOAT_FUZZ_CHECK(!moat::ctl::invalid_utf8_at(d.message));
    }
    MOAT_FUZZ_CHECK(!(r.diags.has_errors() && r.usable()));
    if (!r.usable())
        return 0;
    const auto& cp = *r.compiled;
    MOAT_FUZZ_CHECK(cp.rules.size() == cp.info.size());
    for (std::size_t i = 1; i < cp.info.size(); ++i)
        MOAT_FUZZ_CHECK(cp.info[i - 1].key >= cp.info[i].key);

    const auto built = moat::ctl::build_table_set(*r.config, cp, 1, 1);
    if (!built) {
        MOAT_FUZZ_CHECK(!built.error().empty());  // e.g. over classifier_memory_mb: an error, not a crash
        return 0;
    }
    const TableSet& t = *built->tables;
    // Each filter's lowest and highest corner and one step beyond each, on both ports.
    const std::size_t n = std::min<std::size_t>(t.rules.size(), 64);
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t lo[kMaxDims], hi[kMaxDims];
        rule_ranges(t.rules[i], lo, hi);
        for (const int step : {0, 1}) {
            std::uint32_t a[kMaxDims], b[kMaxDims];
            for (unsigned j = 0; j < kMaxDims; ++j) {
                a[j] = lo[j] - static_cast<std::uint32_t>(step);
                b[j] = hi[j] + static_cast<std::uint32_t>(step);
            }
            const unsigned dims = t.rules[i].family == Family::ipv4 ? kDimsV4 : kDimsV6;
            for (auto* d : {a, b}) {
                d[dims - 4] &= 0xffff;
                d[dims - 3] &= 0xffff;
                d[dims - 2] &= 0xff;
                for (const std::uint32_t port : {0u, 1u}) {
                    d[dims - 1] = port;
                    check_agree(t, key_of(d, t.rules[i].family));
                }
            }
        }
    }
    return 0;
}
