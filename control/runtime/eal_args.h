// The EAL command line moatd starts DPDK with: the config's `eal` key, then the EAL arguments of
// the command line, completed with what the appliance needs and the operator did not say.
#pragma once

#include <string>
#include <vector>

#include "control/config/model.h"
#include "control/config/result.h"

namespace moat::ctl {

/// What start-up needs to know about the machine.
struct HostFacts {
    unsigned cpus = 1;                    ///< online CPUs
    std::uint64_t free_hugepage_bytes = 0;  ///< free hugepages of a mounted hugetlbfs
};

/// Reads /proc/mounts and /sys/kernel/mm/hugepages. Control thread.
HostFacts probe_host();

/// A port as EAL sees it.
struct PortName {
    std::string spec;  ///< as configured: `net_af_packet0,iface=x` or `0000:01:00.0`
    std::string name;  ///< the ethdev name to look up: `net_af_packet0`, `0000:01:00.0`
    bool pci = false;
};
PortName port_name(const std::string& spec);

struct EalPlan {
    std::vector<std::string> args;   ///< argv without the program name
    std::vector<std::string> notes;  ///< decisions worth a start-up log line
    bool hugepages = true;           ///< false: --no-huge (given or fallen back to)
    bool in_memory = false;          ///< --in-memory: no shared files, no secondary processes
    std::string file_prefix;         ///< --file-prefix: what dpdk-dumpcap and telemetry attach to
};

/// Whether a DPDK secondary process (dpdk-dumpcap, dpdk-proc-info) can attach to moatd started
/// with `plan`: "" when it can, otherwise why not. Pure.
std::string secondary_refusal(const EalPlan& plan);

/// Free hugepages below this are not worth using: moatd falls back to --no-huge (never for a
/// PCI port: plan_eal refuses to start then).
inline constexpr std::uint64_t kMinHugepageBytes = 128ull << 20;

Result<EalPlan> plan_eal(const Appliance& a, const std::vector<std::string>& cli_eal, const HostFacts& host);

/// Splits a command line at whitespace (no quoting: EAL arguments never need it).
std::vector<std::string> split_words(const std::string& s);

}  // namespace moat::ctl
