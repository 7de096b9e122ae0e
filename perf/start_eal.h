// Starting DPDK's EAL in a benchmark. EAL can be initialised once per process, so whether to run
// on hugepages is decided before, not retried after a failure.
#pragma once

#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "control/runtime/eal_args.h"

namespace moat::perf {

/// rte_eal_init with `args` (program name first), on hugepages (`--in-memory`) when a mounted
/// hugetlbfs has `hugepages_mb` free, else on `memory_mb` of plain memory under a file prefix of
/// this process's own. False, with EAL's reason on stderr, when EAL does not start.
inline bool start_eal(std::vector<std::string> args, unsigned hugepages_mb, unsigned memory_mb) {
    if (ctl::probe_host().free_hugepage_bytes >= (std::uint64_t{hugepages_mb} << 20))
        args.push_back("--in-memory");
    else
        for (const std::string& s : {std::string("--no-huge"), std::string("-m"), std::to_string(memory_mb),
                                     "--file-prefix=" + args.front() + "_" + std::to_string(getpid())})
            args.push_back(s);
    std::vector<char*> argv;
    for (auto& s : args)
        argv.push_back(s.data());
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
        std::fprintf(stderr, "EAL: %s\n", rte_strerror(rte_errno));
        return false;
    }
    return true;
}

}  // namespace moat::perf
