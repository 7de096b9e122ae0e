// Prints a generated policy shape (perf/shapes.h), for scripts:
//   shape_policy SHAPE N > policy.ini      (shapes: hostport, hostport-oneway, prefixes, ports, ipv6, many-me)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "perf/shapes.h"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: shape_policy SHAPE N (shapes:");
        for (const auto& s : moat::perf::shape_names())
            std::fprintf(stderr, " %s", s.c_str());
        std::fprintf(stderr, ")\n");
        return 2;
    }
    const std::string text = moat::perf::shape_policy(argv[1], std::strtoul(argv[2], nullptr, 10));
    if (text.empty()) {
        std::fprintf(stderr, "shape_policy: unknown shape '%s'\n", argv[1]);
        return 2;
    }
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}
