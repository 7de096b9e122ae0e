// Policies generated for benchmarks.
#pragma once

#include <string>

namespace moat::perf {

/// `n` host filters (198.19.x.y to `me`, one TCP port each) permitted, plus a catch-all block.
inline std::string host_policy_text(int n) {
    std::string t = "[appliance]\nme = 198.18.0.10\nassign = P\n[filterlist Hosts]\n";
    for (int i = 0; i < n; ++i)
        t += "filter = 198.19." + std::to_string(i / 256) + "." + std::to_string(i % 256) + "+0:" +
             std::to_string(1 + i % 1000) + ":TCP\n";
    t += "[filterlist Rest]\nfilter = *+0\n[policy P]\nrule = Hosts -> permit\nrule = Rest -> block\n";
    return t;
}

}  // namespace moat::perf
