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
#include "control/config/result.h"

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
Status check_name(std::string_view what, std::string_view name) {
    if (trim(name).empty())
        return fail(std::string(what) + " name is empty");
    if (name.find("->") != std::string_view::npos)
        return fail(std::string(what) + " name '" + std::string(name) + "' must not contain '->'");
    for (char c : name)
        if (c == '[' || c == ']' || c == ';' || c == '#' || c == '\n' || c == '\r' || c == '=')
            return fail(std::string(what) + " name '" + std::string(name) + "' must not contain [ ] ; # = or line breaks");
    return {};
}

struct Command {
    std::string config;
    std::optional<std::string> store, policy, rule, action;
    std::vector<std::string> filters;
    bool assign = false, unassign = false, remove = false;
    std::optional<std::string> verdict;  ///< -n as the config writes it: permit or block
    std::vector<std::string> notes;      ///< how the command was read (port 0 as any)
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

// ---- Parse: the arguments into a Command, or a usage error ------------------------------------

Result<Command> read_flags(const std::vector<std::string>& args) {
    Command cmd;
    cmd.config = default_config_path();
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
                return fail("--config needs a file");
            cmd.config = args[++i];
            continue;
        }
        if (!is_flag(a))
            return fail("unexpected argument '" + a + "'");
        const std::string f = lower(a);
        if (f == "-w") {
            if (!value(cmd.store))
                return fail("-w needs a storage type: -w REG");
        } else if (f == "-p") {
            if (!value(cmd.policy))
                return fail("-p needs a policy name");
        } else if (f == "-r") {
            if (!value(cmd.rule))
                return fail("-r needs a rule name");
        } else if (f == "-n") {
            if (!value(cmd.action))
                return fail("-n needs PASS or BLOCK");
        } else if (f == "-f") {
            const std::size_t before = cmd.filters.size();
            while (i + 1 < args.size() && !is_flag(args[i + 1]))
                for (auto& spec : split_filters(args[++i]))
                    cmd.filters.push_back(std::move(spec));
            if (cmd.filters.size() == before)
                return fail("-f needs one or more filter specs");
        } else if (f == "-x") {
            cmd.assign = true;
        } else if (f == "-y") {
            cmd.unassign = true;
        } else if (f == "-o") {
            cmd.remove = true;
        } else if (f == "-t" || f == "-a" || f == "-1s" || f == "-1k" || f == "-1p" || f == "-soft" ||
                   f == "-lan" || f == "-dialup" || f == "-confirm" || f == "-u") {
            return fail(a + " is not supported: IKE negotiation, tunnels and dynamic mode are out of scope");
        } else {
            return fail("unknown flag " + a);
        }
    }
    return cmd;
}

/// The flags that must, or must not, go together; the names the config can hold.
Status check_command(Command& cmd) {
    if (!cmd.store)
        return fail("-w REG is required (static mode, as in Windows); the config file is the store");
    if (lower(*cmd.store) != "reg")
        return fail("-w " + *cmd.store + ": only -w REG is supported (the config file is the local store)");
    if (!cmd.policy)
        return fail("-p POLICY is required");
    // "-p Name:PollInterval": the interval means nothing here.
    if (const auto colon = cmd.policy->rfind(':'); colon != std::string::npos && colon + 1 < cmd.policy->size() &&
        std::all_of(cmd.policy->begin() + static_cast<std::ptrdiff_t>(colon) + 1, cmd.policy->end(),
                    [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        cmd.policy->resize(colon);
    if (Status named = check_name("policy", *cmd.policy); !named)
        return named;
    if (cmd.rule)
        if (Status named = check_name("rule", *cmd.rule); !named)
            return named;
    if (cmd.assign && cmd.unassign)
        return fail("-x and -y contradict each other");
    if (cmd.remove && (cmd.rule || !cmd.filters.empty() || cmd.action || cmd.assign))
        return fail("-o deletes the policy; it takes no -r, -f, -n or -x");
    if (!cmd.filters.empty() && !cmd.rule)
        return fail("-f needs -r RULE: the rule name names its filter list");
    if (cmd.action) {
        const auto n = lower(*cmd.action);
        if (n == "pass")
            cmd.verdict = "permit";
        else if (n == "block")
            cmd.verdict = "block";
        else if (n == "inpass")
            return fail("-n INPASS needs IPSec negotiation, which is out of scope: use PASS or BLOCK");
        else
            return fail("-n " + *cmd.action + ": use PASS or BLOCK (negotiation policies are out of scope)");
    }
    if (cmd.rule && !cmd.verdict && cmd.filters.empty())
        return fail("-r " + *cmd.rule + " needs -f SPEC... or -n PASS|BLOCK");
    if (!cmd.rule && !cmd.assign && !cmd.unassign && !cmd.remove)
        return fail("nothing to do: give -r RULE -f SPEC... -n PASS|BLOCK, -x, -y or -o");
    // Windows read port 0 in a filter spec as any port; the native grammar reads the value 0.
    for (auto& f : cmd.filters) {
        bool changed = false;
        std::string any = windows_port_zero_as_any(f, &changed);
        // Only a rewrite that reads as a filter is taken: errors quote what was typed.
        if (changed && parse_filter(any).ok()) {
            cmd.notes.push_back("filter " + f + ": port 0 means any port (as in Windows), written " + any);
            f = std::move(any);
        }
    }
    return {};
}

Result<Command> parse_command(std::vector<std::string> raw) {
    for (auto& a : raw)
        a = ascii_punctuation(a);
    Result<Command> cmd = read_flags(rejoin_quoted(raw));
    if (!cmd)
        return cmd;
    if (const Status checked = check_command(*cmd); !checked)
        return fail(checked.error());
    return cmd;
}

// ---- Plan: the edited text, in memory --------------------------------------------------------

struct Plan {
    std::string before;  ///< the file as read (or the text of a new file)
    bool exists = false;
    IniText ini{""};                ///< the edited config
    std::vector<std::string> done;  ///< what changed, for the operator
};

/// The filter list a rule names, from `rule = LIST -> ACTION`.
std::string_view rule_list(const IniText::Entry& e) {
    const auto arrow = e.value.find("->");
    return arrow == std::string::npos ? std::string_view{} : trim(std::string_view(e.value).substr(0, arrow));
}

/// -o: the policy, the filter lists only it uses, and its assignment.
Status remove_policy(const Command& cmd, Plan& plan) {
    IniText& ini = plan.ini;
    const std::string& pol = *cmd.policy;
    const auto header = ini.find_section("policy", pol);
    if (!header)
        return fail("policy '" + pol + "' does not exist in " + cmd.config);
    std::vector<std::string> lists;
    for (const auto& e : ini.entries(*header))
        if (e.key == "rule" && e.value.find("->") != std::string::npos)
            lists.emplace_back(rule_list(e));
    ini.remove_section(*header);
    plan.done.push_back("deleted policy '" + pol + "'");
    // Lists that another policy still uses stay.
    for (const auto& l : lists) {
        bool used = false;
        for (const auto other : ini.sections("policy"))
            for (const auto& e : ini.entries(other))
                used = used || (e.key == "rule" && e.value.find("->") != std::string::npos && rule_list(e) == l);
        if (used)
            continue;
        if (const auto lh = ini.find_section("filterlist", l)) {
            ini.remove_section(*lh);
            plan.done.push_back("deleted filter list '" + l + "'");
        }
    }
    if (const auto appliance = ini.find_section("appliance", ""))
        for (const auto& e : ini.entries(*appliance))
            if (e.key == "assign" && e.value == pol) {
                ini.replace_entry(e.index, "assign", "");
                plan.done.push_back("unassigned policy '" + pol + "': moatd blocks everything until another is assigned");
            }
    return {};
}

/// -r -f: the rule's filter list gets the filters it does not have yet. Returns the list's
/// filters afterwards.
std::vector<std::string> add_filters(const Command& cmd, Plan& plan) {
    IniText& ini = plan.ini;
    const std::string& rule = *cmd.rule;
    auto lh = ini.find_section("filterlist", rule);
    if (!lh) {
        // Filter lists go above the policies, as an operator would write them.
        const auto policies = ini.sections("policy");
        lh = ini.add_section("filterlist", rule, {}, policies.empty() ? std::nullopt : std::optional(policies.front()));
        plan.done.push_back("created filter list '" + rule + "'");
    }
    std::vector<std::string> have;
    for (const auto& e : ini.entries(*lh))
        if (e.key == "filter")
            have.push_back(e.value);
    for (const auto& f : cmd.filters) {
        if (std::find(have.begin(), have.end(), f) != have.end()) {
            plan.done.push_back("filter " + f + " is already in '" + rule + "'");
            continue;
        }
        ini.append_entry(*lh, "filter", f);
        have.push_back(f);
        plan.done.push_back("added filter " + f + " to '" + rule + "'");
    }
    return have;
}

/// -n on an existing rule: its action changes unless it already means the same (a built-in, or
/// a [filteraction] of the file with that action).
void change_action(const Command& cmd, const IniText::Entry& existing, const std::vector<std::string>& have, Plan& plan) {
    const std::string& rule = *cmd.rule;
    const std::string& pol = *cmd.policy;
    const std::string& verdict = *cmd.verdict;
    const std::string was(trim(std::string_view(existing.value).substr(existing.value.find("->") + 2)));
    std::optional<dp::Action> was_meaning;
    if (lower(was) == "permit" || lower(was) == "block") {
        was_meaning = lower(was) == "permit" ? dp::Action::permit : dp::Action::block;
    } else if (const LoadResult cur = load_policy_text(plan.before, cmd.config, {.lint = false, .compile_unassigned = false});
               cur.config) {
        if (const int a = cur.config->find_action(was); a >= 0)
            was_meaning = cur.config->actions[static_cast<std::size_t>(a)].action;
    }
    const dp::Action meant = verdict == "permit" ? dp::Action::permit : dp::Action::block;
    if (was_meaning == meant) {
        plan.done.push_back("rule '" + rule + "' of policy '" + pol + "' already has action " + verdict +
                            (lower(was) == verdict ? "" : " (through '" + was + "')"));
        return;
    }
    plan.ini.replace_entry(existing.index, "rule", rule + " -> " + verdict);
    // The action belongs to the rule, so to every filter of its list: say so when that reaches
    // filters this command did not name.
    std::size_t others = 0;
    for (const auto& h : have)
        others += std::find(cmd.filters.begin(), cmd.filters.end(), h) == cmd.filters.end();
    plan.done.push_back("rule '" + rule + "' of policy '" + pol + "' now has action " + verdict + " (was " + was + ")" +
                        (others ? "; it applies to the whole filter list '" + rule + "', so also to its " +
                                      std::to_string(others) + " other filter" + (others == 1 ? "" : "s") +
                                      " (give those a rule of their own to keep them " + was + ")"
                                : ""));
}

/// -r [-f] [-n]: the filter list, the policy, and the rule that joins them.
Status set_rule(const Command& cmd, Plan& plan) {
    IniText& ini = plan.ini;
    const std::string& rule = *cmd.rule;
    const std::string& pol = *cmd.policy;
    const std::vector<std::string> have = add_filters(cmd, plan);
    auto ph = ini.find_section("policy", pol);
    if (!ph) {
        ph = ini.add_section("policy", pol, {});
        plan.done.push_back("created policy '" + pol + "'");
    }
    std::optional<IniText::Entry> existing;
    for (const auto& e : ini.entries(*ph))
        if (e.key == "rule" && e.value.find("->") != std::string::npos && rule_list(e) == rule)
            existing = e;
    if (existing) {
        if (cmd.verdict)
            change_action(cmd, *existing, have, plan);
        return {};
    }
    if (!cmd.verdict)
        return fail("policy '" + pol + "' has no rule '" + rule + "' yet: give its action with -n PASS|BLOCK");
    ini.append_entry(*ph, "rule", rule + " -> " + *cmd.verdict);
    plan.done.push_back("added rule '" + rule + " -> " + *cmd.verdict + "' to policy '" + pol + "'");
    return {};
}

/// -x / -y.
Status set_assignment(const Command& cmd, Plan& plan) {
    IniText& ini = plan.ini;
    const std::string& pol = *cmd.policy;
    if (!ini.find_section("policy", pol))
        return fail("policy '" + pol + "' does not exist in " + cmd.config);
    auto appliance = ini.find_section("appliance", "");
    if (!appliance)
        appliance = ini.add_section("appliance", "", {});
    std::string current;
    for (const auto& e : ini.entries(*appliance))
        if (e.key == "assign")
            current = e.value;
    if (cmd.assign) {
        ini.set_key(*appliance, "assign", pol);
        plan.done.push_back("assigned policy '" + pol + "'" + (current.empty() || current == pol ? "" : " (was '" + current + "')"));
    } else if (current == pol) {
        ini.set_key(*appliance, "assign", "");
        plan.done.push_back("unassigned policy '" + pol + "': moatd blocks everything until another is assigned");
    } else {
        plan.done.push_back("policy '" + pol + "' was not assigned; nothing changed" +
                            (current.empty() ? std::string() : " (assigned: '" + current + "')"));
    }
    return {};
}

/// What is wrong with the command's filters, each a line of its own (nothing is touched then).
std::vector<std::string> filter_errors(const Command& cmd) {
    std::vector<std::string> errors;
    for (const auto& f : cmd.filters)
        for (const auto& e : parse_filter(f).errors)
            errors.push_back("filter '" + f + "': " + e);
    return errors;
}

/// Reads the config (or starts a new one) and makes the command's edits in memory.
Result<Plan> plan_edit(const Command& cmd) {
    Plan plan;
    std::error_code ec;
    plan.exists = std::filesystem::exists(cmd.config, ec);
    if (ec)  // e.g. a directory on the way that this user may not search
        return fail(cmd.config + ": cannot read the config file: " + ec.message());
    if (!plan.exists)
        plan.before = new_config_text();
    else if (Result<std::string> read = read_config_file(cmd.config))
        plan.before = std::move(*read);
    else
        return fail(cmd.config + ": " + read.error());
    plan.ini = IniText(plan.before);
    if (Status s = cmd.remove ? remove_policy(cmd, plan) : Status{}; !s)
        return fail(s.error());
    if (Status s = cmd.rule ? set_rule(cmd, plan) : Status{}; !s)
        return fail(s.error());
    if (Status s = cmd.assign || cmd.unassign ? set_assignment(cmd, plan) : Status{}; !s)
        return fail(s.error());
    return plan;
}

// ---- Apply: validate the result as moatd would load it, then write it atomically ------------

int apply(const Command& cmd, const Plan& plan, std::ostream& out, std::ostream& err) {
    const std::string result = plan.ini.str();
    const LoadResult check = load_policy_text(result, cmd.config);
    for (const auto& d : check.diags.all())
        err << format(d) << "\n";
    if (check.diags.has_errors()) {
        err << "moatctl ipsecpol: not written: the result would not be a valid config (" << cmd.config
            << " is unchanged)\n";
        return 1;
    }
    const bool changed = result != plan.before;
    if (changed || !plan.exists) {
        if (const Status written = write_file_atomic(cmd.config, result); !written) {
            err << "moatctl ipsecpol: " << written.error() << "\n";
            return 1;
        }
    }
    for (const auto& n : cmd.notes)
        out << n << "\n";
    for (const auto& d : plan.done)
        out << d << "\n";
    out << (!plan.exists ? "created " : changed ? "updated " : "nothing to change in ") << cmd.config << "\n";
    return 0;
}

}  // namespace

int run_ipsecpol(std::vector<std::string> args, std::ostream& out, std::ostream& err) {
    const Result<Command> cmd = parse_command(std::move(args));
    if (!cmd) {
        err << "moatctl ipsecpol: " << cmd.error() << "\n" << kUsage << "\n";
        return 2;
    }
    // Every filter must parse before anything is touched.
    if (const std::vector<std::string> errors = filter_errors(*cmd); !errors.empty()) {
        for (const auto& e : errors)
            err << "moatctl ipsecpol: " << e << "\n";
        return 1;
    }
    const Result<Plan> plan = plan_edit(*cmd);
    if (!plan) {
        err << "moatctl ipsecpol: " << plan.error() << "\n";
        return 1;
    }
    return apply(*cmd, *plan, out, err);
}

}  // namespace moat::ctl
