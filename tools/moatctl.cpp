// moatctl: the operator's command line (DESIGN section 7).
//
//   moatctl check [FILE...]
//   moatctl explain [--config FILE] [--json] PACKET
//   moatctl ipsecpol [--config FILE] -w REG -p POLICY ...
//   moatctl status | stats | rules | reload | assign NAME | unassign   (the running moatd)
//   moatctl monitor [--drops|--all] [--filter LIST] [--sample N] [--count N] [--json]
//   moatctl states [--limit N] [--json]
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/explain.h"
#include "control/config/packet_spec.h"
#include "control/runtime/control_socket.h"
#include "control/runtime/monitor.h"
#include "control/runtime/states.h"
#include "control/runtime/version.h"
#include "control/compile/ipsecpol.h"
#include "control/config/json_text.h"
#include "control/compile/trie_build.h"

namespace {

using namespace moat::ctl;

/// How long a request to moatd may take, whole (--timeout SECONDS).
int g_timeout_ms = 60000;

constexpr const char* kHelp =
    "usage: moatctl COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  check [FILE...]                  parse, validate, compile and lint config files\n"
    "                                   (default: $MOAT_CONFIG or " MOAT_DEFAULT_CONFIG ");\n"
    "                                   exit 0 when every file is usable, 1 otherwise\n"
    "  explain [--config FILE] [--json] PACKET\n"
    "                                   which filter decides PACKET under the assigned policy:\n"
    "                                   PROTO SRC[:PORT] -> DST[:PORT] [icmp TYPE/CODE] [on outside|inside]\n"
    "                                   [payload \"TEXT\" | payload-hex HEX] (scanned as moatd would)\n"
    "                                   e.g. moatctl explain 'tcp 198.18.100.1:40000 -> 198.18.0.10:80'\n"
    "  lint [--all] [FILE...]           the lint warnings of config files: how many of each kind\n"
    "                                   (overlap, shadowed, catch-all) and the first 20 of each;\n"
    "                                   --all lists every one\n"
    "  ipsecpol [--config FILE] -w REG -p POLICY [-r RULE -f SPEC... -n PASS|BLOCK] [-x|-y] [-o]\n"
    "                                   apply a Windows ipsecpol command to the config file\n"
    "\n"
    "commands for the running moatd (over its control socket):\n"
    "  status [--json]                  policy, generation, last reload, ports, workers\n"
    "  stats [--json|--prometheus]      counters: ports, drop reasons, filters; per-worker rates\n"
    "  rules [--json]                   the ranked entries in force, with their filters' hits\n"
    "  explain [--json] PACKET          as above, against the policy in force (no --config)\n"
    "  reload                           reload the config file now\n"
    "  assign NAME | unassign           set or clear 'assign' in the config file, then reload\n"
    "  monitor [--drops|--all] [--filter LIST] [--sample N] [--count N] [--json]\n"
    "                                   one line per packet moatd drops (--drops, the default) or\n"
    "                                   judges (--all): time, port, VLAN, addresses, protocol, ports\n"
    "                                   or ICMP type/code, verdict, drop reason, deciding filter and\n"
    "                                   its line, generation; --filter: decided by that filter list;\n"
    "                                   --sample N: one packet in N per worker; --count N: stop\n"
    "                                   after N packets; until Ctrl-C or moatd stops\n"
    "  states [--limit N] [--json]      the flows of state = keep, like pfctl -ss: worker, protocol,\n"
    "                                   initiator -> responder, state, expiry, the filter that made it\n"
    "  help                             this text\n"
    "  --version                        the version and the git revision built\n"
    "\n"
    "The socket is --socket PATH, else the 'control' key of --config FILE, else $MOAT_SOCKET,\n"
    "else the 'control' key of $MOAT_CONFIG or " MOAT_DEFAULT_CONFIG ", else /run/moat/moat.sock.\n"
    "--timeout SECONDS bounds a request to moatd, whole (default 60).\n";

void print_diags(const Diagnostics& d) {
    for (const auto& x : d.all())
        std::cerr << format(x) << "\n";
}

std::string plural(std::size_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

int cmd_lint(const std::vector<std::string>& args) {
    bool all = false;
    std::vector<std::string> files;
    for (const auto& a : args) {
        if (a == "--all")
            all = true;
        else if (a.starts_with("-")) {
            std::cerr << "moatctl lint: unknown option " << a << "\n" << kHelp;
            return 2;
        } else
            files.push_back(a);
    }
    if (files.empty())
        files.push_back(default_config_path());
    int status = 0;
    for (const auto& f : files) {
        const LoadResult r = load_policy(f, {.lint = false});
        if (!r.config) {
            print_diags(r.diags);
            std::cout << f << ": NOT USABLE (fix the errors above first)\n";
            status = 1;
            continue;
        }
        Diagnostics d;
        LintCounts counts;
        LintOptions opt;
        if (!all)
            opt.listed = 20;
        lint_policies(*r.config, d, counts, opt);
        print_diags(d);
        std::uint64_t total = 0;
        std::string kinds;
        for (const auto& [kind, n] : counts) {
            total += n;
            kinds += (kinds.empty() ? "" : ", ") + std::to_string(n) + " " + kind;
        }
        std::cout << f << ": " << (total == 0 ? std::string("no lint warnings") : kinds) << "\n";
    }
    return status;
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
        LoadResult r = load_policy(f);
        // What moatd needs to run on the file, which a file written for later (moatctl ipsecpol
        // makes one with these as comments) may still lack.
        if (r.config) {
            const Appliance& a = r.config->appliance;
            for (const auto& [key, value, what] : {std::tuple("outside", &a.outside, "toward the untrusted network"),
                                                   std::tuple("inside", &a.inside, "toward the protected servers")})
                if (value->empty())
                    r.diags.warning(f, a.line, std::string("[appliance] sets no ") + key + " port: moatd cannot run on this file "
                                               "until it does (" + key + " = the DPDK port " + what +
                                               ", a PCI address such as 0000:03:00.0 or a vdev such as net_af_packet0,iface=eth1)");
            if (a.me.empty())
                r.diags.warning(f, a.me_line ? a.me_line : a.line,
                                "me is empty: list the protected servers' addresses (me = 198.51.100.10, 2001:db8::10); "
                                "without them antispoof protects nothing");
            r.diags.sort();
        }
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
            const Result<BuiltTrie> b = build_trie(cp.rules, fam, opt);
            if (!b) {
                std::cerr << f << ": error: " << b.error() << "\n";
                built = false;
                break;
            }
            bytes += b->stats.bytes;
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

/// The control socket: --socket PATH, else $MOAT_SOCKET, else `control` of the config
/// (`--config FILE` when `config_option`, else $MOAT_CONFIG or MOAT_DEFAULT_CONFIG). Removes the
/// options it used from `args`.
std::string socket_path(std::vector<std::string>& args, bool config_option = true) {
    const auto take = [&](const char* name) -> std::optional<std::string> {
        for (std::size_t i = 0; i + 1 < args.size(); ++i)
            if (args[i] == name) {
                std::string p = args[i + 1];
                args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
                return p;
            }
        return std::nullopt;
    };
    if (auto p = take("--socket"))
        return *p;
    std::optional<std::string> config = config_option ? take("--config") : std::nullopt;
    if (const char* env = std::getenv("MOAT_SOCKET"); env && *env && !config)
        return env;
    const LoadResult r = load_policy(config.value_or(default_config_path()), {.lint = false});
    if (r.config)
        return r.config->appliance.control;
    return Appliance{}.control;
}

/// Sends one request; false (with the reasons printed) when moatd cannot be reached or refuses.
/// `reached` tells the two apart.
bool ask(const std::string& sock, const nlohmann::json& req, nlohmann::json& reply, bool* reached = nullptr) {
    Result<nlohmann::json> got = control_request(sock, req, g_timeout_ms);
    if (reached)
        *reached = got.ok();
    if (!got) {
        std::cerr << "moatctl: " << got.error() << "\n";
        return false;
    }
    reply = std::move(*got);
    if (!reply.value("ok", false)) {
        for (const auto& e : reply.value("errors", nlohmann::json::array()))
            std::cerr << e.get<std::string>() << "\n";
        if (reply.contains("message"))
            std::cerr << reply["message"].get<std::string>() << "\n";
        return false;
    }
    return true;
}

/// A reply as `--json` prints it: the object without the protocol's "ok". Returns 0.
int print_reply(nlohmann::json r) {
    r.erase("ok");
    std::cout << json_text(r, 2) << "\n";
    return 0;
}

void print_reload(const nlohmann::json& r) {
    for (const auto& w : r.value("warnings", nlohmann::json::array()))
        std::cerr << w.get<std::string>() << "\n";
    if (r.value("unchanged", false))
        std::cout << "unchanged: generation " << r.at("generation") << " stays\n";
    else
        std::cout << "generation " << r.at("generation") << " in force (" << r.at("trigger").get<std::string>() << ", "
                  << static_cast<long>(r.at("ms").get<double>() * 10) / 10.0 << " ms)\n";
}

int cmd_explain(std::vector<std::string> args) {
    std::optional<std::string> config;
    bool json = false;
    std::string packet;
    const bool socket_given = std::find(args.begin(), args.end(), "--socket") != args.end();
    const std::string sock = socket_path(args, false);
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--config" && i + 1 < args.size()) {
            config = args[++i];
        } else if (args[i] == "--json") {
            json = true;
        } else if (args[i].starts_with("--")) {
            std::cerr << "moatctl explain: unknown option " << args[i] << "\n" << kHelp;
            return 2;
        } else if (i > 0 && (args[i - 1] == "payload" || args[i - 1] == "PAYLOAD") && !args[i].starts_with('"')) {
            // `payload "GET /admin"` as separate words: the shell took the quotes away.
            std::string q = "\"";
            for (const char c : args[i])
                q += c == '"' || c == '\\' ? std::string("\\") + c : std::string(1, c);
            packet += " " + q + "\"";
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
    // Without --config: the policy in force in the running moatd, when there is one.
    std::string fallback;  // why the file answers instead
    if (!config) {
        Result<nlohmann::json> got = control_request(sock, {{"cmd", "explain"}, {"packet", packet}}, g_timeout_ms);
        const std::string error = got ? std::string() : got.error();
        nlohmann::json reply = got ? std::move(*got) : nlohmann::json();
        if (error.empty() && reply.value("ok", false)) {
            if (json) {
                reply.erase("text");
                reply.erase("ok");
                reply["source"] = {{"socket", sock}, {"generation", reply.value("generation", nlohmann::json(nullptr))}};
                std::cout << json_text(reply, 2) << "\n";
            } else {
                std::cout << "(the running moatd, generation " << reply.at("generation") << ")\n" << reply.at("text").get<std::string>();
            }
            return 0;
        }
        if (error.empty() || socket_given) {  // moatd answered, with an error: that is the answer
            if (!error.empty())
                std::cerr << "moatctl explain: " << error << "\n";
            else if (reply.is_object() && reply.contains("errors") && reply["errors"].is_array())
                for (const auto& e : reply["errors"])
                    std::cerr << "moatctl explain: moatd: " << (e.is_string() ? e.get<std::string>() : e.dump()) << "\n";
            else
                std::cerr << "moatctl explain: moatd refused the request\n";
            return 1;
        }
        config = default_config_path();
        // Said on both streams: the answer is the file's, which may not be the policy in force.
        fallback = "moatd did not answer at " + sock + " (" + error + "); this is what the file " + *config +
                   " says, which may differ from the policy in force";
        std::cerr << "moatctl explain: " << fallback << "\n";
    }
    const LoadResult r = load_policy(*config);
    print_diags(r.diags);
    if (!r.usable()) {
        std::cerr << "moatctl explain: " << *config << " is not usable; fix the errors above\n";
        return 1;
    }
    const Explanation e = explain(*r.config, *r.compiled, pp.packet);
    if (json) {
        nlohmann::json j = explain_json(*r.config, *r.compiled, e);
        j["source"] = {{"file", *config}, {"note", fallback.empty() ? nlohmann::json(nullptr) : nlohmann::json(fallback)}};
        j["generation"] = nullptr;  // the same shape as moatd's answer: no generation is in force here
        std::cout << json_text(j, 2) << "\n";
    } else {
        std::cout << "(the file " << *config << (fallback.empty() ? "" : ": moatd did not answer") << ")\n"
                  << explain_text(*r.config, *r.compiled, e);
    }
    return 0;
}

int cmd_status(std::vector<std::string> args) {
    const std::string sock = socket_path(args);
    const bool json = std::find(args.begin(), args.end(), "--json") != args.end();
    nlohmann::json r;
    if (!ask(sock, {{"cmd", "status"}}, r))
        return 1;
    if (json)
        return print_reply(r);
    std::cout << "policy      " << (r.at("policy").is_null() ? std::string("(none assigned: every IP packet is dropped)")
                                                          : "'" + r.at("policy").get<std::string>() + "'")
              << ", generation " << r.at("generation") << ", " << r.at("entries") << " ranked entries, loaded "
              << r.at("loaded_at").get<std::string>() << "\n";
    std::cout << "config      " << r.at("config").get<std::string>() << "\n";
    const auto& l = r.at("last_reload");
    std::cout << "last reload " << (l.at("ok").get<bool>() ? "ok" : "FAILED") << " (" << l.at("trigger").get<std::string>()
              << ", " << l.at("at").get<std::string>() << ")";
    if (l.at("ok").get<bool>())
        std::cout << ": generation " << l.at("generation");
    std::cout << "; reloads " << r.at("reloads").at("ok") << " ok, " << r.at("reloads").at("failed") << " failed\n";
    for (const auto& e : l.at("errors"))
        std::cout << "  " << e.get<std::string>() << "\n";
    if (const auto b = r.value("building", nlohmann::json()); b.is_object())
        std::cout << "building    " << b.at("trigger").get<std::string>() << ", for "
                  << static_cast<long>(b.at("for_ms").get<double>()) << " ms"
                  << (b.at("queued").get<std::size_t>() ? ", " + std::to_string(b.at("queued").get<std::size_t>()) + " more queued" : "")
                  << "\n";
    for (const auto& w : r.value("restart_needed", nlohmann::json::array()))
        std::cout << "restart     " << w.get<std::string>() << "\n";
    if (const auto& l = r.value("lint", nlohmann::json::object()); l.contains("done")) {
        std::cout << "lint        generation " << l.at("generation") << ": ";
        if (!l.at("done").get<bool>()) {
            std::cout << "running\n";
        } else if (l.at("total").get<std::uint64_t>() == 0) {
            std::cout << "no warnings\n";
        } else {
            std::string kinds;
            for (const auto& [kind, n] : l.at("counts").items())
                kinds += (kinds.empty() ? "" : ", ") + std::to_string(n.get<std::uint64_t>()) + " " + kind;
            std::cout << kinds << "\n";
            for (const auto& w : l.at("first"))
                std::cout << "  " << w.get<std::string>() << "\n";
        }
    }
    for (const auto& p : r.at("ports"))
        std::cout << std::left << std::setw(12) << p.at("side").get<std::string>() << p.at("spec").get<std::string>() << " (port "
                  << p.at("port_id") << "): link " << p.at("link").get<std::string>() << "\n";
    std::cout << "workers     " << r.at("workers").size();
    for (const auto& w : r.at("workers"))
        std::cout << "; worker " << w.at("index") << " on lcore " << w.at("lcore") << ", queue " << w.at("queue");
    std::cout << "\nclassifier  " << r.at("classifier").at("kind").get<std::string>() << ", "
              << (r.at("classifier").at("bytes").get<std::uint64_t>() + 1023) / 1024 << " KB, leaf scan "
              << r.at("classifier").at("leaf_scan").get<std::string>() << "\n";
    std::cout << "uptime      " << r.at("uptime_s") << " s\n";
    return 0;
}

int cmd_stats(std::vector<std::string> args) {
    const std::string sock = socket_path(args);
    std::string format = "text";
    for (const auto& a : args)
        format = a == "--json" ? "json" : a == "--prometheus" ? "prometheus" : format;
    nlohmann::json r;
    if (!ask(sock, {{"cmd", "stats"}, {"format", format}}, r))
        return 1;
    if (format == "json") {
        print_reply(r);
    } else {
        std::cout << r.at("text").get<std::string>();
    }
    return 0;
}

int cmd_rules(std::vector<std::string> args) {
    const std::string sock = socket_path(args);
    const bool json = std::find(args.begin(), args.end(), "--json") != args.end();
    nlohmann::json r;
    if (!ask(sock, {{"cmd", "rules"}}, r))
        return 1;
    if (json)
        return print_reply(r);
    std::cout << "generation " << r.at("generation") << ", policy "
              << (r.at("policy").is_null() ? std::string("(none)") : "'" + r.at("policy").get<std::string>() + "'") << "\n";
    std::printf("%6s  %-6s %10s %12s %5s  %s\n", "rank", "action", "packets", "bytes", "line", "filter  [entry]  key");
    for (const auto& e : r.at("rules"))
        std::printf("%6zu  %-6s %10llu %12llu %5d  %s  [%s]  %s\n", e.at("rank").get<std::size_t>(),
                    e.at("action").get<std::string>().c_str(), static_cast<unsigned long long>(e.at("packets").get<std::uint64_t>()),
                    static_cast<unsigned long long>(e.at("bytes").get<std::uint64_t>()), e.at("line").get<int>(),
                    e.at("filter").get<std::string>().c_str(), e.at("entry").get<std::string>().c_str(),
                    e.at("key").get<std::string>().c_str());
    return 0;
}

/// `moatctl states`' status when its listing came back interrupted (sysexits' EX_TEMPFAIL: ask again).
constexpr int kExitInterrupted = 75;

int cmd_states(std::vector<std::string> args) {
    const std::string sock = socket_path(args);
    nlohmann::json req{{"cmd", "states"}};
    bool json = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--json") {
            json = true;
        } else if (args[i] == "--limit") {
            // Digits only: strtoull alone would take " -3" as 2^64 - 3, and "+5".
            const std::string n = i + 1 < args.size() ? args[++i] : std::string();
            const bool digits = !n.empty() && n.size() <= 18 &&
                                std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; });
            if (!digits) {
                std::cerr << "moatctl: --limit needs a whole number of flows (0: all)\n";
                return 2;
            }
            req["limit"] = std::stoull(n);
        } else {
            std::cerr << "moatctl: states takes --limit N and --json, not '" << args[i] << "'\n";
            return 2;
        }
    }
    nlohmann::json r;
    if (!ask(sock, req, r))
        return 1;
    // A listing the operator's socket interrupted is partial: a script must not take it for all.
    const int status = r.is_object() && r.value("interrupted", false) ? kExitInterrupted : 0;
    if (json) {
        const int printed = print_reply(r);
        return printed != 0 ? printed : status;
    }
    const auto& rows = r.at("states");
    std::cout << rows.size() << (rows.size() == 1 ? " flow" : " flows") << ", generation " << r.at("generation")
              << (r.value("interrupted", false) ? " (interrupted: the operator's socket asked for a listing; ask again)"
                  : r.value("truncated", false) ? " (stopped at --limit)"
                                                : "")
              << "\n";
    for (const auto& row : rows)
        std::cout << flow_text(row) << "\n";
    return status;
}

int cmd_reload(std::vector<std::string> args, const std::string& cmd) {
    const std::string sock = socket_path(args);
    nlohmann::json req{{"cmd", cmd}};
    if (cmd == "assign") {
        if (args.size() != 1) {
            std::cerr << "moatctl assign: give one policy name (quote it if it has spaces)\n";
            return 2;
        }
        req["policy"] = args[0];
    } else if (!args.empty()) {
        std::cerr << "moatctl " << cmd << ": unexpected argument " << args[0] << "\n";
        return 2;
    }
    nlohmann::json r;
    bool reached = false;
    if (!ask(sock, req, r, &reached)) {
        if (reached)
            std::cerr << "moatctl " << cmd << ": the running generation stays in force\n";
        return 1;
    }
    print_reload(r);
    return 0;
}

int cmd_monitor(std::vector<std::string> args) {
    const std::string sock = socket_path(args);
    nlohmann::json req{{"cmd", "monitor"}, {"mode", "drops"}};
    bool json = false;
    std::uint64_t count = 0;  // 0: no limit
    const auto number = [](const std::string& opt, const std::string& text, std::uint64_t max) -> std::optional<std::uint64_t> {
        char* end = nullptr;
        errno = 0;
        const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || text[0] == '-' || errno != 0 || v < 1 || v > max) {
            std::cerr << "moatctl monitor: " << opt << " needs a whole number from 1 to " << max << "\n";
            return std::nullopt;
        }
        return v;
    };
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        const bool has_value = i + 1 < args.size();
        if (a == "--drops" || a == "--all") {
            req["mode"] = a.substr(2);
        } else if (a == "--json") {
            json = true;
        } else if (a == "--filter" && has_value) {
            req["filter"] = args[++i];
        } else if (a == "--sample" && has_value) {
            const auto n = number(a, args[++i], moat::dp::kMaxSample);
            if (!n)
                return 2;
            req["sample"] = *n;
        } else if (a == "--count" && has_value) {
            const auto n = number(a, args[++i], std::uint64_t{1} << 62);
            if (!n)
                return 2;
            count = *n;
        } else {
            std::cerr << "moatctl monitor: unexpected argument " << a << "\n";
            return 2;
        }
    }
    bool attached = false, refused = false;
    std::uint64_t lines = 0;
    const auto not_an_object = [&] {
        std::cerr << "moatctl monitor: a line that is not a JSON object from moatd\n";
        refused = true;
        return false;
    };
    const Status ended = control_stream(sock, req, g_timeout_ms, [&](std::string_view text) {
        if (json && attached) {
            // Passed through as moatd wrote it: parsing a line costs some 13 us (nlohmann), more
            // than moatd spends making it, and this client shares the appliance's CPUs. A report
            // of lost lines is the one line that starts with its "lost" member.
            if (text.size() < 2 || text.front() != '{' || text.back() != '}')
                return not_an_object();
            std::cout << text << "\n";
            return text.starts_with("{\"lost\":") || count == 0 || ++lines < count;
        }
        const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
        if (j.is_discarded() || !j.is_object())
            return not_an_object();
        if (!attached) {
            if (!j.value("ok", false)) {
                for (const auto& e : j.value("errors", nlohmann::json::array()))
                    std::cerr << (e.is_string() ? e.get<std::string>() : e.dump()) << "\n";
                refused = true;
                return false;
            }
            attached = true;
            const auto& m = j.at("monitor");
            std::cerr << "monitoring " << (m.at("mode") == "all" ? "every packet" : "dropped packets")
                      << (m.at("sample").get<std::uint64_t>() > 1 ? ", one in " + std::to_string(m.at("sample").get<std::uint64_t>()) + " per worker" : "")
                      << (m.at("filter").is_string() ? ", decided by filter list '" + m.at("filter").get<std::string>() + "'" : "")
                      << " (generation " << j.at("generation") << ", " << plural(m.at("workers").get<std::size_t>(), "worker")
                      << "); Ctrl-C stops\n";
            return true;
        }
        std::cout << record_text(j) << "\n";
        if (j.contains("lost"))
            return true;  // not a packet
        return count == 0 || ++lines < count;
    }, [] { std::cout.flush(); });  // once a read: a reader of a pipe sees each line as moatd sent it
    if (!ended) {
        std::cerr << "moatctl: " << ended.error() << "\n";
        return 1;
    }
    if (refused)
        return 1;
    if (count != 0 && lines < count) {
        std::cerr << "moatctl monitor: moatd closed the connection after " << lines << " of " << count << " lines\n";
        return 1;
    }
    return 0;
}

}  // namespace

int run(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    // `--timeout SECONDS` anywhere; `--socket PATH` may also come before the command.
    for (std::size_t i = 0; i + 1 < args.size(); ++i)
        if (args[i] == "--timeout") {
            char* end = nullptr;
            const double s = std::strtod(args[i + 1].c_str(), &end);
            if (*end != '\0' || !(s > 0) || s > 86400) {
                std::cerr << "moatctl: --timeout needs a number of seconds (0 < s <= 86400)\n";
                return 2;
            }
            g_timeout_ms = static_cast<int>(s * 1000);
            args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
            break;
        }
    std::vector<std::string> global;
    if (args.size() >= 2 && args[0] == "--socket") {
        global = {args[0], args[1]};
        args.erase(args.begin(), args.begin() + 2);
    }
    if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
        std::cout << kHelp;
        return args.empty() ? 2 : 0;
    }
    if (args[0] == "--version") {
        std::cout << version_text("moatctl");
        return 0;
    }
    const std::string cmd = args[0];
    args.erase(args.begin());
    args.insert(args.end(), global.begin(), global.end());
    if (cmd == "check")
        return cmd_check(args);
    if (cmd == "lint")
        return cmd_lint(args);
    if (cmd == "explain")
        return cmd_explain(args);
    if (cmd == "ipsecpol")
        return run_ipsecpol(args, std::cout, std::cerr);
    if (cmd == "status")
        return cmd_status(args);
    if (cmd == "stats")
        return cmd_stats(args);
    if (cmd == "rules")
        return cmd_rules(args);
    if (cmd == "monitor")
        return cmd_monitor(args);
    if (cmd == "states")
        return cmd_states(args);
    if (cmd == "reload" || cmd == "assign" || cmd == "unassign")
        return cmd_reload(args, cmd);
    std::cerr << "moatctl: unknown command '" << cmd << "'\n" << kHelp;
    return 2;
}

int main(int argc, char** argv) {
    // A reply whose fields are not what they should be (a socket that is not moatd's, a moatd
    // of another version) is an error message, not an abort.
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "moatctl: " << e.what() << " (is the socket moatd's?)\n";
        return 1;
    }
}
