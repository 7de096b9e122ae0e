#include "control/compile/ipsecpol.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/config/filter_spec.h"
#include "control/config/ini_edit.h"

namespace moat::ctl {

namespace {

/// Replaces the typographic characters a web page or word processor puts into pasted commands.
std::string ascii_punctuation(std::string s) {
    static constexpr std::pair<std::string_view, std::string_view> kMap[] = {
        {"\u2010", "-"}, {"\u2011", "-"}, {"\u2012", "-"}, {"\u2013", "-"}, {"\u2014", "-"},
        {"\u2212", "-"}, {"\u201c", "\""}, {"\u201d", "\""}, {"\u2018", "'"}, {"\u2019", "'"},
    };
    for (const auto& [from, to] : kMap)
        for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
            s.replace(at, from.size(), to);
    return s;
}

/// Rejoins an argument the shell split because it was quoted with curly quotes
/// (`-p “Packet Filter”` arrives as `"Packet` and `Filter"` after ascii_punctuation).
std::vector<std::string> rejoin_quoted(const std::vector<std::string>& args) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string a = args[i];
        if (a.size() > 1 && a.front() == '"' && a.back() != '"') {
            std::size_t j = i + 1;
            while (j < args.size() && (args[j].empty() || args[j].back() != '"'))
                ++j;
            if (j < args.size()) {
                for (std::size_t k = i + 1; k <= j; ++k)
                    a += " " + args[k];
                i = j;
            }
        }
        if (a.size() >= 2 && a.front() == '"' && a.back() == '"')
            a = a.substr(1, a.size() - 2);
        out.push_back(a);
    }
    return out;
}

bool is_flag(std::string_view a) { return a.size() >= 2 && a[0] == '-' && std::isalpha(static_cast<unsigned char>(a[1])); }

/// A policy, rule or list name that the config format can hold.
std::optional<std::string> bad_name(std::string_view what, std::string_view name) {
    if (trim(name).empty())
        return std::string(what) + " name is empty";
    if (name.find("->") != std::string_view::npos)
        return std::string(what) + " name '" + std::string(name) + "' must not contain '->'";
    for (char c : name)
        if (c == '[' || c == ']' || c == ';' || c == '#' || c == '\n' || c == '\r' || c == '=')
            return std::string(what) + " name '" + std::string(name) + "' must not contain [ ] ; # = or line breaks";
    return std::nullopt;
}

struct Command {
    std::string config;
    std::optional<std::string> store, policy, rule, action;
    std::vector<std::string> filters;
    bool assign = false, unassign = false, remove = false;
};

constexpr const char* kUsage =
    "usage: moatctl ipsecpol [--config FILE] -w REG -p POLICY [-r RULE -f SPEC... -n PASS|BLOCK] [-x|-y] [-o]";

std::string new_config_text() {
    return "; Moat policy, created by moatctl ipsecpol.\n"
           "; The README's \"Config file\" section explains every key. Set the three below (remove the\n"
           "; '; ' before each) before moatd runs on this file: moatctl check warns until they are set.\n"
           "[appliance]\n"
           "; outside = DPDK port toward the untrusted network (a PCI address, or net_af_packet0,iface=eth0)\n"
           "; inside  = DPDK port toward the protected servers\n"
           "; me      = the protected servers' addresses, which 'me' and '0' stand for in filters\n"
           "assign =\n";
}

}  // namespace

int run_ipsecpol(std::vector<std::string> raw, std::ostream& out, std::ostream& err) {
    for (auto& a : raw)
        a = ascii_punctuation(a);
    const auto args = rejoin_quoted(raw);
    Command cmd;
    cmd.config = default_config_path();
    const auto usage = [&](const std::string& msg) {
        err << "moatctl ipsecpol: " << msg << "\n" << kUsage << "\n";
        return 2;
    };
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        const auto value = [&](std::optional<std::string>& slot) -> bool {
            if (i + 1 >= args.size() || is_flag(args[i + 1]))
                return false;
            slot = args[++i];
            return true;
        };
        if (a == "--config") {
            if (i + 1 >= args.size())
                return usage("--config needs a file");
            cmd.config = args[++i];
            continue;
        }
        if (!is_flag(a))
            return usage("unexpected argument '" + a + "'");
        const std::string f = lower(a);
        if (f == "-w") {
            if (!value(cmd.store))
                return usage("-w needs a storage type: -w REG");
        } else if (f == "-p") {
            if (!value(cmd.policy))
                return usage("-p needs a policy name");
        } else if (f == "-r") {
            if (!value(cmd.rule))
                return usage("-r needs a rule name");
        } else if (f == "-n") {
            if (!value(cmd.action))
                return usage("-n needs PASS or BLOCK");
        } else if (f == "-f") {
            const std::size_t before = cmd.filters.size();
            while (i + 1 < args.size() && !is_flag(args[i + 1]))
                for (auto& s : split_filters(args[++i]))
                    cmd.filters.push_back(std::move(s));
            if (cmd.filters.size() == before)
                return usage("-f needs one or more filter specs");
        } else if (f == "-x") {
            cmd.assign = true;
        } else if (f == "-y") {
            cmd.unassign = true;
        } else if (f == "-o") {
            cmd.remove = true;
        } else if (f == "-t" || f == "-a" || f == "-1s" || f == "-1k" || f == "-1p" || f == "-soft" ||
                   f == "-lan" || f == "-dialup" || f == "-confirm" || f == "-u") {
            return usage(a + " is not supported: IKE negotiation, tunnels and dynamic mode are out of scope");
        } else {
            return usage("unknown flag " + a);
        }
    }

    if (!cmd.store)
        return usage("-w REG is required (static mode, as in Windows); the config file is the store");
    if (lower(*cmd.store) != "reg")
        return usage("-w " + *cmd.store + ": only -w REG is supported (the config file is the local store)");
    if (!cmd.policy)
        return usage("-p POLICY is required");
    // "-p Name:PollInterval": the interval means nothing here.
    if (const auto colon = cmd.policy->rfind(':'); colon != std::string::npos && colon + 1 < cmd.policy->size() &&
        std::all_of(cmd.policy->begin() + static_cast<std::ptrdiff_t>(colon) + 1, cmd.policy->end(),
                    [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        cmd.policy->resize(colon);
    if (const auto bad = bad_name("policy", *cmd.policy))
        return usage(*bad);
    if (cmd.rule)
        if (const auto bad = bad_name("rule", *cmd.rule))
            return usage(*bad);
    if (cmd.assign && cmd.unassign)
        return usage("-x and -y contradict each other");
    if (cmd.remove && (cmd.rule || !cmd.filters.empty() || cmd.action || cmd.assign))
        return usage("-o deletes the policy; it takes no -r, -f, -n or -x");
    if (!cmd.filters.empty() && !cmd.rule)
        return usage("-f needs -r RULE: the rule name names its filter list");
    std::optional<std::string> action;
    if (cmd.action) {
        const auto n = lower(*cmd.action);
        if (n == "pass")
            action = "permit";
        else if (n == "block")
            action = "block";
        else if (n == "inpass")
            return usage("-n INPASS needs IPSec negotiation, which is out of scope: use PASS or BLOCK");
        else
            return usage("-n " + *cmd.action + ": use PASS or BLOCK (negotiation policies are out of scope)");
    }
    if (cmd.rule && !action && cmd.filters.empty())
        return usage("-r " + *cmd.rule + " needs -f SPEC... or -n PASS|BLOCK");
    if (!cmd.rule && !cmd.assign && !cmd.unassign && !cmd.remove)
        return usage("nothing to do: give -r RULE -f SPEC... -n PASS|BLOCK, -x, -y or -o");

    // Windows read port 0 in a filter spec as any port; the native grammar reads the value 0.
    std::vector<std::string> notes;
    for (auto& f : cmd.filters) {
        bool changed = false;
        std::string any = windows_port_zero_as_any(f, &changed);
        // Only a rewrite that reads as a filter is taken: errors quote what was typed.
        if (changed && parse_filter(any).ok()) {
            notes.push_back("filter " + f + ": port 0 means any port (as in Windows), written " + any);
            f = std::move(any);
        }
    }
    // Every filter must parse before anything is touched.
    bool bad_filter = false;
    for (const auto& f : cmd.filters) {
        const auto p = parse_filter(f);
        for (const auto& e : p.errors) {
            err << "moatctl ipsecpol: filter '" << f << "': " << e << "\n";
            bad_filter = true;
        }
    }
    if (bad_filter)
        return 1;

    std::string text;
    const bool exists = std::filesystem::exists(cmd.config);
    if (exists) {
        if (const auto error = read_config_file(cmd.config, text)) {
            err << "moatctl ipsecpol: " << cmd.config << ": " << *error << "\n";
            return 1;
        }
    } else {
        text = new_config_text();
    }

    IniText ini(text);
    const std::string& pol = *cmd.policy;
    std::vector<std::string> done;
    auto appliance = ini.find_section("appliance", "");

    if (cmd.remove) {
        const auto header = ini.find_section("policy", pol);
        if (!header) {
            err << "moatctl ipsecpol: policy '" << pol << "' does not exist in " << cmd.config << "\n";
            return 1;
        }
        std::vector<std::string> lists;
        for (const auto& e : ini.entries(*header))
            if (e.key == "rule")
                if (const auto arrow = e.value.find("->"); arrow != std::string::npos)
                    lists.emplace_back(trim(std::string_view(e.value).substr(0, arrow)));
        ini.remove_section(*header);
        done.push_back("deleted policy '" + pol + "'");
        // Lists that another policy still uses stay.
        for (const auto& l : lists) {
            bool used = false;
            for (const auto other : ini.sections("policy"))
                for (const auto& e : ini.entries(other))
                    if (const auto arrow = e.value.find("->"); e.key == "rule" && arrow != std::string::npos &&
                                                              trim(std::string_view(e.value).substr(0, arrow)) == l)
                        used = true;
            if (used)
                continue;
            if (const auto lh = ini.find_section("filterlist", l)) {
                ini.remove_section(*lh);
                done.push_back("deleted filter list '" + l + "'");
            }
        }
        appliance = ini.find_section("appliance", "");
        if (appliance)
            for (const auto& e : ini.entries(*appliance))
                if (e.key == "assign" && e.value == pol) {
                    ini.replace_entry(e.index, "assign", "");
                    done.push_back("unassigned policy '" + pol + "': moatd blocks everything until another is assigned");
                }
    }

    if (cmd.rule) {
        const std::string& rule = *cmd.rule;
        auto lh = ini.find_section("filterlist", rule);
        if (!lh) {
            // Filter lists go above the policies, as an operator would write them.
            const auto policies = ini.sections("policy");
            lh = ini.add_section("filterlist", rule, {},
                                 policies.empty() ? std::nullopt : std::optional(policies.front()));
            done.push_back("created filter list '" + rule + "'");
        }
        std::vector<std::string> have;
        for (const auto& e : ini.entries(*lh))
            if (e.key == "filter")
                have.push_back(e.value);
        for (const auto& f : cmd.filters) {
            if (std::find(have.begin(), have.end(), f) != have.end()) {
                done.push_back("filter " + f + " is already in '" + rule + "'");
                continue;
            }
            ini.append_entry(*lh, "filter", f);
            have.push_back(f);
            done.push_back("added filter " + f + " to '" + rule + "'");
        }
        auto ph = ini.find_section("policy", pol);
        if (!ph) {
            ph = ini.add_section("policy", pol, {});
            done.push_back("created policy '" + pol + "'");
        }
        std::optional<IniText::Entry> existing;
        for (const auto& e : ini.entries(*ph))
            if (e.key == "rule")
                if (const auto arrow = e.value.find("->");
                    arrow != std::string::npos && trim(std::string_view(e.value).substr(0, arrow)) == rule)
                    existing = e;
        if (existing && action) {
            const auto arrow = existing->value.find("->");
            const std::string was(trim(std::string_view(existing->value).substr(arrow + 2)));
            // What the rule's action does, built-in or a [filteraction] of the file.
            std::optional<dp::Action> was_meaning;
            if (lower(was) == "permit" || lower(was) == "block") {
                was_meaning = lower(was) == "permit" ? dp::Action::permit : dp::Action::block;
            } else if (const LoadResult cur = load_policy_text(text, cmd.config, {.lint = false, .compile_unassigned = false});
                       cur.config) {
                if (const int a = cur.config->find_action(was); a >= 0)
                    was_meaning = cur.config->actions[static_cast<std::size_t>(a)].action;
            }
            const dp::Action meant = *action == "permit" ? dp::Action::permit : dp::Action::block;
            if (was_meaning == meant) {
                done.push_back("rule '" + rule + "' of policy '" + pol + "' already has action " + *action +
                               (lower(was) == *action ? "" : " (through '" + was + "')"));
            } else {
                ini.replace_entry(existing->index, "rule", rule + " -> " + *action);
                // The action belongs to the rule, so to every filter of its list: say so when
                // that reaches filters this command did not name.
                std::size_t others = 0;
                for (const auto& h : have)
                    others += std::find(cmd.filters.begin(), cmd.filters.end(), h) == cmd.filters.end();
                done.push_back("rule '" + rule + "' of policy '" + pol + "' now has action " + *action + " (was " + was + ")" +
                               (others ? "; it applies to the whole filter list '" + rule + "', so also to its " +
                                             std::to_string(others) + " other filter" + (others == 1 ? "" : "s") +
                                             " (give those a rule of their own to keep them " + was + ")"
                                       : ""));
            }
        } else if (!existing) {
            if (!action) {
                err << "moatctl ipsecpol: policy '" << pol << "' has no rule '" << rule
                    << "' yet: give its action with -n PASS|BLOCK\n";
                return 1;
            }
            ini.append_entry(*ph, "rule", rule + " -> " + *action);
            done.push_back("added rule '" + rule + " -> " + *action + "' to policy '" + pol + "'");
        }
    }

    if (cmd.assign || cmd.unassign) {
        if (!ini.find_section("policy", pol)) {
            err << "moatctl ipsecpol: policy '" << pol << "' does not exist in " << cmd.config << "\n";
            return 1;
        }
        appliance = ini.find_section("appliance", "");
        if (!appliance)
            appliance = ini.add_section("appliance", "", {});
        std::string current;
        for (const auto& e : ini.entries(*appliance))
            if (e.key == "assign")
                current = e.value;
        if (cmd.assign) {
            ini.set_key(*appliance, "assign", pol);
            done.push_back("assigned policy '" + pol + "'" +
                           (current.empty() || current == pol ? "" : " (was '" + current + "')"));
        } else if (current == pol) {
            ini.set_key(*appliance, "assign", "");
            done.push_back("unassigned policy '" + pol + "': moatd blocks everything until another is assigned");
        } else {
            done.push_back("policy '" + pol + "' was not assigned; nothing changed" +
                           (current.empty() ? std::string() : " (assigned: '" + current + "')"));
        }
    }

    const std::string result = ini.str();
    const LoadResult check = load_policy_text(result, cmd.config);
    for (const auto& d : check.diags.all())
        err << format(d) << "\n";
    if (check.diags.has_errors()) {
        err << "moatctl ipsecpol: not written: the result would not be a valid config (" << cmd.config
            << " is unchanged)\n";
        return 1;
    }
    if (result != text || !exists) {
        if (const auto e = write_file_atomic(cmd.config, result)) {
            err << "moatctl ipsecpol: " << *e << "\n";
            return 1;
        }
    }
    for (const auto& n : notes)
        out << n << "\n";
    for (const auto& d : done)
        out << d << "\n";
    out << (!exists ? "created " : result != text ? "updated " : "nothing to change in ") << cmd.config << "\n";
    return 0;
}

}  // namespace moat::ctl
