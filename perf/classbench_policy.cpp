// Prints a ClassBench rule set as a Moat policy (perf/classbench.h), for scripts:
//   classbench_policy acl1_10K > policy.ini
#include <cstdio>
#include <exception>

#include "perf/classbench.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: classbench_policy SET (e.g. acl1_10K)\n");
        return 2;
    }
    try {
        const std::string text = moat::perf::classbench_policy(moat::perf::classbench_dir() + "/" + argv[1]);
        std::fwrite(text.data(), 1, text.size(), stdout);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "classbench_policy: %s\n", e.what());
        return 1;
    }
    return 0;
}
