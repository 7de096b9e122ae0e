#include "control/runtime/eal_args.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace moat::ctl {

namespace {

/// True when `args` holds option `opt` (`-l 0-1`, `-l0-1`, `--lcores=...` all count).
bool has_option(const std::vector<std::string>& args, std::initializer_list<const char*> opts) {
    for (const auto& a : args)
        for (const char* o : opts) {
            const std::string_view ov(o);
            if (a == ov)
                return true;
            if (ov.starts_with("--") ? a.starts_with(std::string(ov) + "=") : (ov.size() == 2 && a.starts_with(ov)))
                return true;
        }
    return false;
}

}  // namespace

std::vector<std::string> split_words(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string w; in >> w;)
        out.push_back(w);
    return out;
}

HostFacts probe_host() {
    HostFacts h;
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    h.cpus = n > 0 ? static_cast<unsigned>(n) : 1;
    bool mounted = false;
    std::ifstream mounts("/proc/mounts");
    for (std::string dev, dir, type, rest; mounts >> dev >> dir >> type && std::getline(mounts, rest);)
        mounted = mounted || type == "hugetlbfs";
    if (!mounted)
        return h;
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/sys/kernel/mm/hugepages", ec)) {
        // hugepages-2048kB
        const std::string name = e.path().filename().string();
        const auto kb = std::strtoull(name.c_str() + name.find('-') + 1, nullptr, 10);
        std::ifstream f(e.path() / "free_hugepages");
        std::uint64_t free_pages = 0;
        f >> free_pages;
        h.free_hugepage_bytes += free_pages * kb * 1024;
    }
    return h;
}

PortName port_name(const std::string& spec) {
    static const std::regex pci(R"(^(([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])(,.*)?$)");
    std::smatch m;
    if (std::regex_match(spec, m, pci))
        return {spec, (m[2].matched ? m[2].str() : std::string("0000")) + ":" + m[3].str(), true};
    return {spec, spec.substr(0, spec.find(',')), false};
}

std::string secondary_refusal(const EalPlan& plan) {
    if (plan.in_memory)
        return "moatd runs with --in-memory, which shares no memory with other processes";
    if (!plan.hugepages)
        return "moatd runs without hugepages (--no-huge), and a secondary process cannot map that memory; "
               "reserve hugepages and mount hugetlbfs (README: Deploying on real hardware)";
    return {};
}

Result<EalPlan> plan_eal(const Appliance& a, const std::vector<std::string>& cli_eal, const HostFacts& host) {
    EalPlan p;
    p.args = split_words(a.eal);
    p.args.insert(p.args.end(), cli_eal.begin(), cli_eal.end());

    if (!has_option(p.args, {"-l", "-c", "--lcores"})) {
        if (a.workers + 1 > host.cpus) {
            return fail("workers = " + std::to_string(a.workers) + " needs " + std::to_string(a.workers + 1) +
                        " cores (one more for control) and this machine has " + std::to_string(host.cpus) +
                        "; lower workers or give lcores in eal = -l ...");
        }
        p.args.push_back("-l");
        p.args.push_back("0-" + std::to_string(a.workers));
        p.notes.push_back("lcores 0-" + std::to_string(a.workers) + ": lcore 0 for control, the rest for workers");
    }
    bool any_pci = false;
    for (const std::string* spec : {&a.outside, &a.inside})
        any_pci = any_pci || port_name(*spec).pci;
    // A NIC DMAs into the mbufs: with --no-huge its buffers are ordinary pages whose physical
    // addresses may move, so a PCI port never falls back silently, nor runs on an explicit --no-huge.
    if (any_pci && (has_option(p.args, {"--no-huge"}) || host.free_hugepage_bytes < kMinHugepageBytes))
        return fail(std::string("a PCI port (outside = ") + a.outside + ", inside = " + a.inside + ") needs hugepages, and " +
                    (has_option(p.args, {"--no-huge"})
                         ? std::string("eal asks for --no-huge: remove it")
                         : host.free_hugepage_bytes == 0
                               ? std::string("this machine has none mounted")
                               : "only " + std::to_string(host.free_hugepage_bytes >> 20) + " MB are free (" +
                                     std::to_string(kMinHugepageBytes >> 20) + " MB needed)") +
                    ". Reserve them (echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages, or "
                    "default_hugepagesz=1G hugepagesz=1G hugepages=N on the kernel command line), mount hugetlbfs "
                    "(mount -t hugetlbfs nodev /dev/hugepages) and start moatd again (README: Deploying on real hardware)");
    if (has_option(p.args, {"--no-huge"})) {
        p.notes.push_back("memory: --no-huge, as configured");
    } else if (host.free_hugepage_bytes >= kMinHugepageBytes) {
        p.notes.push_back("memory: hugepages (" + std::to_string(host.free_hugepage_bytes >> 20) + " MB free)");
    } else {
        p.args.push_back("--no-huge");
        if (!has_option(p.args, {"-m", "--socket-mem"})) {
            p.args.push_back("-m");
            p.args.push_back("512");
        }
        p.notes.push_back(host.free_hugepage_bytes == 0
                              ? "memory: no hugepages mounted, falling back to --no-huge (mount hugetlbfs for speed)"
                              : "memory: only " + std::to_string(host.free_hugepage_bytes >> 20) +
                                    " MB of free hugepages, falling back to --no-huge");
    }
    p.hugepages = !has_option(p.args, {"--no-huge"});
    p.in_memory = has_option(p.args, {"--in-memory"});
    // EAL refuses --in-memory with --no-huge ("--legacy-mem is not compatible"): an eal key
    // written for a machine with hugepages would then not start where it falls back. Without
    // hugepages there are no hugepage files to keep in memory, and --no-shconf is the rest of
    // what --in-memory means (no shared config, so no second moatd or secondary collides).
    if (!p.hugepages && p.in_memory) {
        std::erase(p.args, std::string("--in-memory"));
        p.args.push_back("--no-shconf");
        p.notes.push_back("memory: --in-memory without hugepages is --no-shconf (EAL takes no --in-memory with --no-huge)");
    }
    // One default name, so DPDK tools (dpdk-telemetry.py -f moat) find the appliance; a second
    // moatd on one machine needs its own --file-prefix in eal.
    if (!has_option(p.args, {"--file-prefix"}) && !p.in_memory) {
        p.args.push_back("--file-prefix");
        p.args.push_back("moat");
    }
    for (std::size_t i = 0; i < p.args.size(); ++i)  // the last one counts, as for EAL
        if (p.args[i] == "--file-prefix" && i + 1 < p.args.size())
            p.file_prefix = p.args[i + 1];
        else if (p.args[i].starts_with("--file-prefix="))
            p.file_prefix = p.args[i].substr(std::string_view("--file-prefix=").size());

    for (const std::string* spec : {&a.outside, &a.inside}) {
        const PortName n = port_name(*spec);
        p.args.push_back(n.pci ? "-a" : "--vdev");
        p.args.push_back(n.spec);
    }
    if (!any_pci && !has_option(p.args, {"--no-pci", "-a", "--allow", "-b", "--block"}))
        p.args.push_back("--no-pci");
    return p;
}

}  // namespace moat::ctl
