// Robustness of the loader: random, mutated and truncated config text never crashes it, and
// whatever it reports stays within the text it was given.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/explain.h"
#include "control/config/packet_spec.h"

namespace moat::ctl {
namespace {

int count_lines(std::string_view t) {
    return static_cast<int>(std::count(t.begin(), t.end(), '\n')) + (t.empty() || t.back() == '\n' ? 0 : 1);
}

/// Loads `t` and checks the loader's promises: every diagnostic points at a line of the text,
/// errors and a compiled policy never come together, and a compiled policy is ranked.
void load_and_check(const std::string& t) {
    const LoadResult r = load_policy_text(t, "fuzz.ini");
    const int lines = count_lines(t);
    for (const auto& d : r.diags.all()) {
        ASSERT_GE(d.line, 0);
        ASSERT_LE(d.line, lines) << format(d);
        ASSERT_FALSE(d.message.empty());
        ASSERT_FALSE(invalid_utf8_at(d.message)) << format(d);
    }
    if (r.diags.has_errors()) {
        ASSERT_FALSE(r.usable());
    }
    if (r.usable()) {
        ASSERT_TRUE(r.config);
        const auto& cp = *r.compiled;
        ASSERT_EQ(cp.rules.size(), cp.info.size());
        for (std::size_t i = 1; i < cp.info.size(); ++i)
            ASSERT_GE(cp.info[i - 1].key, cp.info[i].key);
        // Explaining any packet must work on whatever compiled.
        const auto p = parse_packet("tcp 198.18.0.1:1 -> 198.18.0.10:80");
        (void)explain(*r.config, cp, p.packet);
    }
}

std::string read(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> seeds() {
    std::vector<std::string> out;
    const char* root = std::getenv("MOAT_SOURCE_ROOT");
    if (root)
        for (const auto& e : std::filesystem::directory_iterator(std::string(root) + "/conf"))
            if (e.path().extension() == ".ini")
                out.push_back(read(e.path()));
    out.push_back("[appliance]\nme = 198.18.0.10, [2001:db8::1]\nassign = P\n[filterlist L]\n"
                  "filter = *+0:80-90:TCP on=outside\nfilter = [2001:db8::]/32=*::ICMPV6:128/0\n"
                  "filter = 10.0.*.*+0::UDP payload=/ab+c/i\n[filteraction D]\naction = block\n"
                  "[policy P]\nrule = L -> permit\nrule = L -> D\n");
    return out;
}

TEST(LoaderFuzz, EveryTruncationOfEveryShippedConfig) {
    const auto s = seeds();
    ASSERT_GE(s.size(), 4u) << "MOAT_SOURCE_ROOT/conf should hold the shipped configs";
    for (const auto& seed : s)
        for (std::size_t n = 0; n <= seed.size(); ++n)
            load_and_check(seed.substr(0, n));
}

TEST(LoaderFuzz, RandomMutations) {
    std::mt19937_64 rng(20261126);
    const auto s = seeds();
    const std::string alphabet = "[]=:+*/-;#.,\n\r\t 0123456789abcdefABCDEF>me\x01\xff\"'\\";
    for (int iter = 0; iter < 3000; ++iter) {
        std::string t = s[rng() % s.size()];
        const int edits = 1 + static_cast<int>(rng() % 8);
        for (int e = 0; e < edits && !t.empty(); ++e) {
            const std::size_t at = rng() % t.size();
            switch (rng() % 4) {
            case 0: t[at] = alphabet[rng() % alphabet.size()]; break;
            case 1: t.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
            case 2: t.erase(at, 1 + rng() % 16); break;
            case 3: t.insert(at, t.substr(rng() % t.size(), rng() % 64)); break;
            }
        }
        load_and_check(t);
    }
}

TEST(LoaderFuzz, RandomBytes) {
    std::mt19937_64 rng(7);
    for (int iter = 0; iter < 2000; ++iter) {
        std::string t(rng() % 600, '\0');
        for (auto& c : t)
            c = static_cast<char>(rng() % 4 == 0 ? "\n[]= "[rng() % 5] : static_cast<char>(rng()));
        load_and_check(t);
    }
}

TEST(LoaderFuzz, PathologicalShapes) {
    load_and_check("");
    load_and_check("\n\n\n");
    load_and_check(std::string(100000, '['));
    load_and_check(std::string(5000, '\n'));
    load_and_check("[appliance]\n" + std::string(10000, 'x') + "\n");
    std::string many = "[appliance]\nassign = P\n[filterlist L]\n";
    for (int i = 0; i < 2000; ++i)
        many += "filter = 198.18." + std::to_string(i / 256) + "." + std::to_string(i % 256) + "+*:1-" +
                std::to_string(1 + i) + ":TCP\n";
    many += "[policy P]\nrule = L -> permit\nrule = L -> block\n";
    load_and_check(many);
}

}  // namespace
}  // namespace moat::ctl
