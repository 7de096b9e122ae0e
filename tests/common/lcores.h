// Which CPUs a test's EAL may put its lcores on: the ones this process may run on
// (sched_getaffinity), not CPUs 0 and 1 whatever they are. meson runs test binaries in parallel,
// and `taskset -c N meson test` confines them all to one CPU: the busy-polling worker lcore and
// the main lcore then share it (--lcores 0@N,1@N), slower but still correct.
#pragma once

#include <sched.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace moat::test {

/// The CPUs this process may run on, lowest first (CPU 0 alone if the kernel will not say).
inline std::vector<int> allowed_cpus() {
    std::vector<int> cpus;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set))
                cpus.push_back(c);
    if (cpus.empty())
        cpus.push_back(0);
    return cpus;
}

/// An EAL --lcores value for lcore 0 (main: control) and lcores 1..workers, each on an allowed
/// CPU: the main lcore on the first, the workers on the others (round robin, starting at one
/// chosen by the pid so that parallel tests spread over a larger machine); with one CPU, all on it.
inline std::string lcores_value(unsigned workers = 1) {
    const std::vector<int> cpus = allowed_cpus();
    std::string v = "0@" + std::to_string(cpus[0]);
    const std::size_t others = cpus.size() - 1;
    const std::size_t first = others ? static_cast<std::size_t>(getpid()) % others : 0;
    for (unsigned w = 0; w < workers; ++w) {
        const int cpu = others ? cpus[1 + (first + w) % others] : cpus[0];
        v += "," + std::to_string(w + 1) + "@" + std::to_string(cpu);
    }
    return v;
}

/// The same as EAL arguments: {"--lcores", value}.
inline std::vector<std::string> lcores_args(unsigned workers = 1) { return {"--lcores", lcores_value(workers)}; }

/// The same as a moatd config's `eal =` words.
inline std::string lcores_option(unsigned workers = 1) { return "--lcores " + lcores_value(workers); }

}  // namespace moat::test
