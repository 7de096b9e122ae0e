// moatctl: the operator's command line (DESIGN section 7).
//
//   moatctl check [FILE...]
//   moatctl explain [--config FILE] [--json] PACKET
//   moatctl ipsecpol [--config FILE] -w REG -p POLICY ...
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "control/config.h"
#include "control/explain.h"
#include "control/ipsecpol.h"
#include "control/trie_build.h"

namespace {

using namespace moat::ctl;

constexpr const char* kHelp =
    "usage: moatctl COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  check [FILE...]                  parse, validate, compile and lint config files\n"
    "                                   (default: $MOAT_CONFIG or /etc/moat/moat.ini);\n"
    "                                   exit 0 when every file is usable, 1 otherwise\n"
    "  explain [--config FILE] [--json] PACKET\n"
    "                                   which filter decides PACKET under the assigned policy:\n"
    "                                   PROTO SRC[:PORT] -> DST[:PORT] [icmp TYPE/CODE] [on outside|inside]\n"
    "                                   e.g. moatctl explain 'tcp 198.18.100.1:40000 -> 198.18.0.10:80'\n"
    "  ipsecpol [--config FILE] -w REG -p POLICY [-r RULE -f SPEC... -n PASS|BLOCK] [-x|-y] [-o]\n"
    "                                   apply a Windows ipsecpol command to the config file\n"
    "  help                             this text\n";

void print_diags(const Diagnostics& d) {
    for (const auto& x : d.all())
        std::cerr << format(x) << "\n";
}

std::string plural(std::size_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

int cmd_check(const std::vector<std::string>& args) {
    std::vector<std::string> files;
    for (const auto& a : args) {
        if (a.starts_with("-")) {
            std::cerr << "moatctl check: unknown option " << a << "\n" << kHelp;
            return 2;
        }
        files.push_back(a);
    }
    if (files.empty())
        files.push_back(default_config_path());
    int status = 0;
    for (const auto& f : files) {
        const LoadResult r = load_policy(f);
        print_diags(r.diags);
        const std::string counts = plural(static_cast<std::size_t>(r.diags.error_count()), "error") + ", " +
                                   plural(static_cast<std::size_t>(r.diags.warning_count()), "warning");
        if (!r.usable()) {
            std::cout << f << ": NOT USABLE (" << counts << ")\n";
            status = 1;
            continue;
        }
        const Config& cfg = *r.config;
        const CompiledPolicy& cp = *r.compiled;
        // Compiling includes the classifier: a policy whose trie would outgrow its memory bound
        // is not usable.
        std::string classifier;
        TrieBuildOptions opt;
        opt.memory_limit = std::size_t{cfg.appliance.classifier_memory_mb} << 20;
        std::size_t bytes = 0;
        bool built = true;
        for (const moat::dp::Family fam : {moat::dp::Family::ipv4, moat::dp::Family::ipv6}) {
            const TrieBuildResult b = build_trie(cp.rules, fam, opt);
            if (!b.trie) {
                std::cerr << f << ": error: " << b.error << "\n";
                built = false;
                break;
            }
            bytes += b.stats.bytes;
        }
        if (!built) {
            std::cout << f << ": NOT USABLE (" << counts << ", and the classifier does not fit)\n";
            status = 1;
            continue;
        }
        std::cout << f << ": OK (" << counts << "); ";
        if (cp.policy < 0) {
            std::cout << "no policy assigned: every packet is blocked\n";
            continue;
        }
        const Policy& p = cfg.policies[static_cast<std::size_t>(cp.policy)];
        std::size_t filters = 0;
        for (const auto& rule : p.rules)
            filters += cfg.lists[static_cast<std::size_t>(rule.list)].filters.size();
        std::cout << "policy '" << p.name << "': " << plural(p.rules.size(), "rule") << ", "
                  << plural(filters, "filter") << ", " << cp.rules.size()
                  << (cp.rules.size() == 1 ? " ranked entry" : " ranked entries") << ", classifier "
                  << (bytes + 1023) / 1024 << " KB\n";
    }
    return status;
}

int cmd_explain(const std::vector<std::string>& args) {
    std::string config = default_config_path();
    bool json = false;
    std::string packet;
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--config" && i + 1 < args.size()) {
            config = args[++i];
        } else if (args[i] == "--json") {
            json = true;
        } else if (args[i].starts_with("--")) {
            std::cerr << "moatctl explain: unknown option " << args[i] << "\n" << kHelp;
            return 2;
        } else {
            packet += (packet.empty() ? "" : " ") + args[i];
        }
    }
    if (packet.empty()) {
        std::cerr << "moatctl explain: give a packet, e.g. 'tcp 198.18.100.1:40000 -> 198.18.0.10:80'\n";
        return 2;
    }
    const PacketParse pp = parse_packet(packet);
    if (!pp.ok()) {
        for (const auto& e : pp.errors)
            std::cerr << "moatctl explain: " << e << "\n";
        return 2;
    }
    const LoadResult r = load_policy(config);
    print_diags(r.diags);
    if (!r.usable()) {
        std::cerr << "moatctl explain: " << config << " is not usable; fix the errors above\n";
        return 1;
    }
    const Explanation e = explain(*r.config, *r.compiled, pp.packet);
    if (json)
        std::cout << explain_json(*r.config, *r.compiled, e).dump(2) << "\n";
    else
        std::cout << explain_text(*r.config, *r.compiled, e);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
        std::cout << kHelp;
        return args.empty() ? 2 : 0;
    }
    const std::string cmd = args[0];
    args.erase(args.begin());
    if (cmd == "check")
        return cmd_check(args);
    if (cmd == "explain")
        return cmd_explain(args);
    if (cmd == "ipsecpol")
        return run_ipsecpol(args, std::cout, std::cerr);
    std::cerr << "moatctl: unknown command '" << cmd << "'\n" << kHelp;
    return 2;
}
