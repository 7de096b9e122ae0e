#include "control/config/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>
#include <span>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "control/config/ini_reader.h"
#include "dataplane/parse.h"

namespace moat::ctl {

const FilterList* Config::find_list(std::string_view name) const {
    for (const auto& l : lists)
        if (l.name == name)
            return &l;
    return nullptr;
}

int Config::find_action(std::string_view name) const {
    for (std::size_t i = 0; i < actions.size(); ++i)
        if (actions[i].name == name)
            return static_cast<int>(i);
    return -1;
}

int Config::find_policy(std::string_view name) const {
    for (std::size_t i = 0; i < policies.size(); ++i)
        if (policies[i].name == name)
            return static_cast<int>(i);
    return -1;
}

std::string default_config_path() {
    const char* env = std::getenv("MOAT_CONFIG");
    return env && *env ? env : MOAT_DEFAULT_CONFIG;
}

namespace {

constexpr std::array<std::string_view, 23> kApplianceKeys{
    "outside", "inside", "me", "workers", "eal", "control", "control_readonly", "control_group",
    "control_readonly_group", "non_ip", "fragments", "ip_options", "antispoof", "assign", "strict",
    "payload_scan_bytes", "classifier", "classifier_memory_mb", "fragment_table", "metrics", "mtu", "link_propagation",
    "state_table"};
constexpr std::array<std::string_view, 2> kFilterListKeys{"filter", "description"};
constexpr std::array<std::string_view, 3> kFilterActionKeys{"action", "state", "description"};
constexpr std::array<std::string_view, 2> kPolicyKeys{"rule", "description"};

bool is_one_of(std::string_view key, std::span<const std::string_view> keys) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j)
        row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                              std::tolower(static_cast<unsigned char>(b[j - 1]));
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

/// " (did you mean 'X'?)" for the closest of `names`, or " (defined KINDS: ...)" when none is
/// close. `kinds` is the plural.
std::string suggest(std::string_view wrong, const std::vector<std::string>& names, const char* kind, const char* kinds) {
    if (names.empty())
        return std::string(" (no ") + kind + " is defined)";
    const auto best = std::min_element(names.begin(), names.end(), [&](const auto& x, const auto& y) {
        return edit_distance(wrong, x) < edit_distance(wrong, y);
    });
    if (edit_distance(wrong, *best) <= std::max<std::size_t>(2, wrong.size() / 3))
        return " (did you mean " + quoted(*best) + "?)";
    std::string all;
    for (const auto& n : names)
        all += (all.empty() ? "" : ", ") + quoted(n);
    return std::string(" (defined ") + kinds + ": " + all + ")";
}

std::optional<bool> parse_on_off(std::string_view v) {
    const auto l = lower(v);
    if (l == "on")
        return true;
    if (l == "off")
        return false;
    return std::nullopt;
}

std::optional<unsigned> parse_number(std::string_view v, unsigned lo, unsigned hi) {
    if (v.empty() || v.size() > 9 || !std::all_of(v.begin(), v.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        return std::nullopt;
    const unsigned n = static_cast<unsigned>(std::stoul(std::string(v)));
    if (n < lo || n > hi)
        return std::nullopt;
    return n;
}

std::vector<std::string_view> split_list(std::string_view v) {
    std::vector<std::string_view> out;
    for (std::size_t start = 0; start <= v.size();) {
        const auto comma = v.find(',', start);
        const auto item = trim(v.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        if (!item.empty())
            out.push_back(item);
        if (comma == std::string_view::npos)
            break;
        start = comma + 1;
    }
    return out;
}

/// The id of the group named `v` (or given by number), if this machine has it.
std::optional<unsigned> group_id(std::string_view v) {
    if (v.empty())
        return std::nullopt;
    if (std::all_of(v.begin(), v.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        return v.size() <= 9 ? std::optional(static_cast<unsigned>(std::stoul(std::string(v)))) : std::nullopt;
    group g{};
    group* found = nullptr;
    std::vector<char> buf(16 * 1024);
    if (getgrnam_r(std::string(v).c_str(), &g, buf.data(), buf.size(), &found) != 0 || !found)
        return std::nullopt;
    return static_cast<unsigned>(found->gr_gid);
}

/// Turns the INI sections into a Config: keys, values, names and references, each error at its
/// line. What only compiling can tell (expansion, payload patterns) is checked by compile/load.
class ConfigParser {
public:
    ConfigParser(const std::string& file, Diagnostics& diags) : file_(file), diags_(diags) {
        cfg_.file = file;
        cfg_.actions.push_back({"permit", 0, dp::Action::permit, "built-in", false});
        cfg_.actions.push_back({"block", 0, dp::Action::block, "built-in", false});
    }

    Config build(const IniDoc& doc) {
        for (const auto& sec : doc.sections)
            section(sec);
        if (cfg_.appliance.line == 0)
            error(0, "no [appliance] section: a config file starts with [appliance] (ports, me, assign); "
                     "an empty or cut-off file is never applied");
        resolve_rules();
        resolve_assign();
        return std::move(cfg_);
    }

private:
    void error(int line, std::string msg) { diags_.error(file_, line, std::move(msg)); }
    void warning(int line, std::string msg) { diags_.warning(file_, line, std::move(msg)); }

    /// Rejects a key given twice where only one value makes sense.
    bool once(std::map<std::string, int>& seen, const IniEntry& e, const std::string& key) {
        const auto [it, fresh] = seen.emplace(key, e.line);
        if (!fresh)
            error(e.line, quoted(key) + " is set twice (first at line " + std::to_string(it->second) + ")");
        return fresh;
    }

    void unknown_key(const IniEntry& e, std::string_view where, std::span<const std::string_view> keys) {
        // `filter *+1.2.3.4:80:TCP` reads as key "filter *+1.2.3.4", value "80:TCP".
        const auto space = e.key.find(' ');
        if (space != std::string::npos && is_one_of(lower(e.key.substr(0, space)), keys)) {
            error(e.line, "missing '=' after " + quoted(e.key.substr(0, space)));
            return;
        }
        std::string all;
        for (const auto k : keys)
            all += (all.empty() ? "" : ", ") + std::string(k);
        error(e.line, "unknown key " + quoted(e.key) + " in " + std::string(where) + " (keys: " + all + ")");
    }

    void section(const IniSection& sec) {
        if (sec.line == 0) {
            for (const auto& e : sec.entries)
                error(e.line, quoted(e.key) + " is outside any section: put it under [appliance], [filterlist NAME], [filteraction NAME] or [policy NAME]");
            return;
        }
        const std::string_view h = sec.header;
        const auto space = h.find_first_of(" \t");
        const std::string kind = lower(h.substr(0, space));
        const std::string name(space == std::string_view::npos ? std::string_view{} : trim(h.substr(space)));
        if (kind == "appliance") {
            if (!name.empty())
                error(sec.line, "[appliance] takes no name");
            appliance(sec);
            return;
        }
        if (kind != "filterlist" && kind != "filteraction" && kind != "policy") {
            error(sec.line, "unknown section [" + std::string(h) +
                                "] (sections: [appliance], [filterlist NAME], [filteraction NAME], [policy NAME])");
            return;
        }
        if (name.empty()) {
            error(sec.line, "[" + kind + "] needs a name: [" + kind + " NAME]");
            return;
        }
        if (name.find("->") != std::string::npos) {
            error(sec.line, "name " + quoted(name) + " contains '->', which separates a rule's list from its action");
            return;
        }
        if (kind == "filterlist")
            filter_list(sec, name);
        else if (kind == "filteraction")
            filter_action(sec, name);
        else
            policy(sec, name);
    }

    bool duplicate(std::map<std::string, int>& names, const std::string& what, const std::string& name, int line) {
        const auto [it, fresh] = names.emplace(name, line);
        if (!fresh)
            error(line, what + " " + quoted(name) + " is defined twice (first at line " + std::to_string(it->second) + ")");
        return !fresh;
    }

    void appliance(const IniSection& sec) {
        auto& a = cfg_.appliance;
        if (a.line != 0) {
            error(sec.line, "[appliance] appears twice (first at line " + std::to_string(a.line) + ")");
            return;
        }
        a.line = sec.line;
        std::map<std::string, int> seen;
        for (const auto& e : sec.entries) {
            const std::string key = lower(e.key);
            const std::string_view v = e.value;
            if (!is_one_of(key, kApplianceKeys)) {
                unknown_key(e, "[appliance]", kApplianceKeys);
                continue;
            }
            if (!once(seen, e, key))
                continue;
            if (key == "outside" || key == "inside") {
                if (v.find_first_of(" \t") != std::string_view::npos)
                    error(e.line, key + " " + quoted(v) + " is not a DPDK port (a PCI address or a vdev string without spaces)");
                (key == "outside" ? a.outside : a.inside) = std::string(v);
            } else if (key == "me") {
                a.me_line = e.line;
                for (const auto item : split_list(v)) {
                    const auto addr = parse_addr(item);
                    if (!addr) {
                        error(e.line, "me: " + quoted(item) + " is not an IPv4 or IPv6 address");
                        cfg_.appliance.me_invalid = true;
                        continue;
                    }
                    const bool dup = std::any_of(a.me.begin(), a.me.end(), [&](const ParsedAddr& m) {
                        return m.family == addr->family && m.addr == addr->addr;
                    });
                    if (dup)
                        warning(e.line, "me: " + quoted(item) + " is listed twice");
                    else
                        a.me.push_back(*addr);
                }
            } else if (key == "workers") {
                if (const auto n = parse_number(v, 1, 64))
                    a.workers = *n;
                else
                    error(e.line, "workers " + quoted(v) + " is not a number from 1 to 64");
            } else if (key == "eal") {
                a.eal = std::string(v);
            } else if (key == "control" || key == "control_readonly") {
                if (v.empty() || v[0] != '/')
                    error(e.line, key + " " + quoted(v) + " must be an absolute path to a Unix socket");
                else
                    (key == "control" ? a.control : a.control_readonly) = std::string(v);
            } else if (key == "control_group" || key == "control_readonly_group") {
                const auto gid = group_id(v);
                if (!gid)
                    error(e.line, key + " " + quoted(v) + " is not a group of this machine (a name from /etc/group or a number)");
                (key == "control_group" ? a.control_gid : a.control_readonly_gid) = gid;
                (key == "control_group" ? a.control_group : a.control_readonly_group) = std::string(v);
            } else if (key == "metrics") {
                metrics(e);
            } else if (key == "non_ip") {
                non_ip(e);
            } else if (key == "fragments") {
                if (lower(v) == "track")
                    a.fragments = FragmentMode::track;
                else if (lower(v) == "drop")
                    a.fragments = FragmentMode::drop;
                else
                    error(e.line, "fragments " + quoted(v) + ": write track or drop");
            } else if (key == "ip_options") {
                if (lower(v) == "drop" || lower(v) == "allow")
                    a.ip_options_allow = lower(v) == "allow";
                else
                    error(e.line, "ip_options " + quoted(v) + ": write drop or allow");
            } else if (key == "antispoof" || key == "strict" || key == "link_propagation") {
                if (const auto b = parse_on_off(v))
                    (key == "antispoof" ? a.antispoof : key == "strict" ? a.strict : a.link_propagation) = *b;
                else
                    error(e.line, key + " " + quoted(v) + ": write on or off");
            } else if (key == "assign") {
                a.assign = std::string(v);
                a.assign_line = e.line;
            } else if (key == "classifier") {
                if (lower(v) == "trie" || lower(v) == "reference")
                    a.classifier = lower(v) == "trie" ? ClassifierKind::trie : ClassifierKind::reference;
                else
                    error(e.line, "classifier " + quoted(v) + ": write trie or reference");
            } else if (key == "classifier_memory_mb") {
                if (const auto n = parse_number(v, 16, 1u << 20))
                    a.classifier_memory_mb = *n;
                else
                    error(e.line, "classifier_memory_mb " + quoted(v) + " is not a number from 16 to 1048576");
            } else if (key == "payload_scan_bytes") {
                if (const auto n = parse_number(v, 1, 65535))
                    a.payload_scan_bytes = *n;
                else
                    error(e.line, "payload_scan_bytes " + quoted(v) + " is not a number from 1 to 65535");
            } else if (key == "fragment_table") {
                if (const auto n = parse_number(v, 8, 1u << 22))
                    a.fragment_table = *n;
                else
                    error(e.line, "fragment_table " + quoted(v) + " is not a number of datagrams from 8 to 4194304");
            } else if (key == "state_table") {
                if (const auto n = parse_number(v, 8, 1u << 24))
                    a.state_table = *n;
                else
                    error(e.line, "state_table " + quoted(v) + " is not a number of flows from 8 to 16777216");
            } else if (key == "mtu") {
                if (const auto n = parse_number(v, Appliance::kMinMtu, Appliance::kMaxMtu))
                    a.mtu = *n;
                else
                    error(e.line, "mtu " + quoted(v) + " is not a number of bytes from " + std::to_string(Appliance::kMinMtu) +
                                      " to " + std::to_string(Appliance::kMaxMtu) + " (1500: Ethernet; 9000: jumbo frames)");
            }
        }
        if (!a.outside.empty() && a.outside == a.inside)
            error(sec.line, "outside and inside name the same port " + quoted(a.outside));
        if (a.control_readonly == a.control)
            error(sec.line, "control_readonly names the control socket itself; give the read-only socket a path of its own");
        if (a.control_readonly.empty() && !a.control_readonly_group.empty())
            warning(seen.at("control_readonly_group"), "control_readonly_group has no effect without control_readonly = PATH");
    }

    /// `metrics = ADDRESS:PORT`: a literal address, so that `moatctl check` knows what moatd will
    /// bind without asking a resolver; `off` (or nothing) for no endpoint.
    void metrics(const IniEntry& e) {
        auto& a = cfg_.appliance;
        const std::string_view v = e.value;
        a.metrics_host.clear();
        a.metrics_port = 0;
        if (v.empty() || lower(v) == "off")
            return;
        const std::string how = " (write ADDRESS:PORT: 127.0.0.1:9464 for this machine only, [::1]:9464 for IPv6, "
                                "0.0.0.0:9464 for every interface; off for no endpoint)";
        const std::size_t colon = v.rfind(':');
        if (colon == std::string_view::npos) {
            error(e.line, "metrics " + quoted(v) + " has no port" + how);
            return;
        }
        std::string_view host = v.substr(0, colon);
        const std::string_view port = v.substr(colon + 1);
        const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
        if (bracketed)
            host = host.substr(1, host.size() - 2);
        in6_addr buf{};
        const bool v4 = !bracketed && inet_pton(AF_INET, std::string(host).c_str(), &buf) == 1;
        const bool v6 = bracketed && inet_pton(AF_INET6, std::string(host).c_str(), &buf) == 1;
        if (!v4 && !v6) {
            error(e.line, "metrics " + quoted(v) + ": " +
                              (host.empty() ? std::string("no address")
                               : !bracketed && host.find(':') != std::string_view::npos
                                   ? "an IPv6 address goes in brackets, [" + std::string(host) + "]:PORT"
                                   : quoted(host) + " is not an IPv4 address or a bracketed IPv6 address") +
                              how);
            return;
        }
        const auto n = parse_uint(port, 65535);
        if (!n || *n == 0) {
            error(e.line, "metrics " + quoted(v) + ": port " + quoted(port) + " is not a number from 1 to 65535" + how);
            return;
        }
        a.metrics_host = std::string(host);
        a.metrics_port = static_cast<std::uint16_t>(*n);
    }

    void non_ip(const IniEntry& e) {
        auto& out = cfg_.appliance.non_ip;
        out.clear();
        const auto items = split_list(e.value);
        for (const auto item : items) {
            const auto l = lower(item);
            if (l == "none") {
                if (items.size() > 1)
                    error(e.line, "non_ip: 'none' cannot be combined with other EtherTypes");
                continue;
            }
            std::optional<unsigned> type;
            if (l == "arp")
                type = dp::kEtherArp;
            else if (l == "rarp")
                type = 0x8035;
            else if (l == "lldp")
                type = 0x88cc;
            else if (l.starts_with("0x") && l.size() > 2 && l.size() <= 6 &&
                     std::all_of(l.begin() + 2, l.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
                type = static_cast<unsigned>(std::stoul(l.substr(2), nullptr, 16));
            if (!type || *type < 0x0600) {
                error(e.line, "non_ip: " + quoted(item) + " is not an EtherType (arp, rarp, lldp, none or 0x0600-0xffff)");
                continue;
            }
            if (*type == dp::kEtherIpv4 || *type == dp::kEtherIpv6 || dp::is_vlan_tag(static_cast<std::uint16_t>(*type))) {
                error(e.line, "non_ip: " + quoted(item) + " is IP or a VLAN tag (moatd looks inside VLAN tags and filters the IP there), so it cannot pass unfiltered");
                continue;
            }
            out.push_back(static_cast<std::uint16_t>(*type));
        }
    }

    void filter_list(const IniSection& sec, const std::string& name) {
        if (duplicate(list_names_, "filter list", name, sec.line))
            return;
        FilterList l;
        l.name = name;
        l.line = sec.line;
        std::map<std::string, int> seen;
        for (const auto& e : sec.entries) {
            const std::string key = lower(e.key);
            if (key == "description") {
                if (once(seen, e, key))
                    l.description = e.value;
            } else if (key == "filter") {
                FilterParse p = parse_filter(e.value);
                for (const auto& msg : p.errors)
                    error(e.line, "filter " + quoted(e.value) + ": " + msg);
                if (p.ok()) {
                    for (const PortSpec* port : {&p.spec.sport, &p.spec.dport})
                        if (!port->any && port->range == dp::PortRange{0, 0}) {
                            warning(e.line, "filter " + quoted(e.value) + ": port 0 is the value 0 here; leave the port empty for any port (" +
                                                quoted(windows_port_zero_as_any(e.value)) + ")");
                            break;
                        }
                    l.filters.push_back({e.value, e.line, std::move(p.spec)});
                }
            } else {
                unknown_key(e, "[filterlist]", kFilterListKeys);
            }
        }
        cfg_.lists.push_back(std::move(l));
    }

    void filter_action(const IniSection& sec, const std::string& name) {
        // A definition of a built-in (the Windows walk-throughs create a "Block" action that
        // blocks) is accepted when it says what the built-in does, and refers to the built-in.
        const std::string builtin = lower(name) == "permit" || lower(name) == "block" ? lower(name) : "";
        if (!builtin.empty()) {
            if (const auto [it, fresh] = action_names_.emplace(builtin, sec.line); !fresh) {
                error(sec.line, "filter action " + quoted(name) + " is defined twice (first at line " + std::to_string(it->second) + ")");
                return;
            }
        } else if (duplicate(action_names_, "filter action", name, sec.line)) {
            return;
        }
        FilterAction a;
        a.name = name;
        a.line = sec.line;
        std::map<std::string, int> seen;
        bool has_action = false;
        int action_line = sec.line;
        int state_line = sec.line;
        for (const auto& e : sec.entries) {
            const std::string key = lower(e.key);
            if (key == "description") {
                if (once(seen, e, key))
                    a.description = e.value;
            } else if (key == "action") {
                if (!once(seen, e, key))
                    continue;
                const auto v = lower(e.value);
                if (v == "permit" || v == "block") {
                    a.action = v == "permit" ? dp::Action::permit : dp::Action::block;
                    has_action = true;
                    action_line = e.line;
                } else if (v == "negotiate") {
                    error(e.line, "action 'negotiate' (IPSec security negotiation) is out of scope: write permit or block");
                } else {
                    error(e.line, "action " + quoted(e.value) + ": write permit or block");
                }
            } else if (key == "state") {
                if (!once(seen, e, key))
                    continue;
                const auto v = lower(e.value);
                if (v == "keep" || v == "off")
                    a.keep_state = v == "keep";
                else
                    error(e.line, "state " + quoted(e.value) + ": write keep (track flows: replies pass only in a flow) or off");
                state_line = e.line;
            } else {
                unknown_key(e, "[filteraction]", kFilterActionKeys);
            }
        }
        if (!has_action && !seen.contains("action"))
            error(sec.line, "filter action " + quoted(name) + " has no 'action = permit' or 'action = block'");
        if (a.keep_state && builtin.empty() && has_action && a.action == dp::Action::block)
            error(state_line, "filter action " + quoted(name) + " blocks, and 'state = keep' is for permits: a block starts "
                              "no flows (remove the state line)");
        if (a.keep_state && !builtin.empty())
            error(state_line, "filter action " + quoted(name) + " is the built-in stateless " + builtin +
                              ": give the stateful action another name, e.g. [filteraction Permit stateful]");
        if (!builtin.empty()) {
            const char* means = builtin == "permit" ? "permit" : "block";
            if (has_action && (a.action == dp::Action::permit) != (builtin == "permit"))
                error(action_line, "filter action " + quoted(name) + " says 'action = " + (builtin == "permit" ? "block" : "permit") +
                                    "', but " + quoted(name) + " is the built-in action " + means +
                                    ": give this action another name, or make it 'action = " + means + "'");
            return;  // the built-in stays what rules naming it use
        }
        cfg_.actions.push_back(std::move(a));
    }

    void policy(const IniSection& sec, const std::string& name) {
        if (duplicate(policy_names_, "policy", name, sec.line))
            return;
        Policy p;
        p.name = name;
        p.line = sec.line;
        std::map<std::string, int> seen;
        for (const auto& e : sec.entries) {
            const std::string key = lower(e.key);
            if (key == "description") {
                if (once(seen, e, key))
                    p.description = e.value;
            } else if (key == "rule") {
                p.rules.push_back({e.value, e.line, -1, -1});
            } else {
                unknown_key(e, "[policy]", kPolicyKeys);
            }
        }
        cfg_.policies.push_back(std::move(p));
    }

    void resolve_rules() {
        std::vector<std::string> lists, actions;
        for (const auto& l : cfg_.lists)
            lists.push_back(l.name);
        for (const auto& a : cfg_.actions)
            actions.push_back(a.name);
        for (auto& p : cfg_.policies) {
            if (p.rules.empty())
                error(p.line, "policy " + quoted(p.name) + " has no rules: add 'rule = FILTER LIST -> ACTION'");
            std::map<std::pair<int, int>, int> seen;
            for (auto& r : p.rules) {
                const auto arrow = r.text.find("->");
                if (arrow == std::string::npos) {
                    error(r.line, "rule " + quoted(r.text) + ": write 'FILTER LIST -> ACTION'");
                    continue;
                }
                const auto list = std::string(trim(std::string_view(r.text).substr(0, arrow)));
                auto action = std::string(trim(std::string_view(r.text).substr(arrow + 2)));
                if (action.find("->") != std::string::npos) {
                    error(r.line, "rule " + quoted(r.text) + " has more than one '->'");
                    continue;
                }
                if (lower(action) == "permit" || lower(action) == "block")
                    action = lower(action);
                for (std::size_t i = 0; i < cfg_.lists.size(); ++i)
                    if (cfg_.lists[i].name == list)
                        r.list = static_cast<int>(i);
                r.action = cfg_.find_action(action);
                if (list.empty())
                    error(r.line, "rule " + quoted(r.text) + " names no filter list");
                else if (r.list < 0)
                    error(r.line, "rule names filter list " + quoted(list) + ", which is not defined" +
                                      suggest(list, lists, "filter list", "filter lists"));
                if (action.empty())
                    error(r.line, "rule " + quoted(r.text) + " names no action (permit, block or a [filteraction])");
                else if (r.action < 0)
                    error(r.line, "rule names action " + quoted(action) + ", which is not defined" +
                                      suggest(action, actions, "action", "actions"));
                // A rule that names a list or an action uses it, even when its other half is wrong.
                if (r.list >= 0)
                    used_lists_.insert(r.list);
                if (r.action >= 0)
                    used_actions_.insert(r.action);
                if (r.list < 0 || r.action < 0)
                    continue;
                const auto [it, fresh] = seen.emplace(std::pair(r.list, r.action), r.line);
                if (!fresh)
                    warning(r.line, "rule repeats line " + std::to_string(it->second));
                if (cfg_.lists[static_cast<std::size_t>(r.list)].filters.empty())
                    warning(r.line, "filter list " + quoted(list) + " has no filters: this rule matches nothing");
                // A TCP flow starts with a SYN, which carries no payload: a stateful payload
                // filter would never start one, and its mirror would drop every answer.
                if (cfg_.actions[static_cast<std::size_t>(r.action)].keep_state)
                    for (const FilterDef& f : cfg_.lists[static_cast<std::size_t>(r.list)].filters)
                        if (f.spec.payload) {
                            error(r.line, "rule " + quoted(r.text) + ": filter " + quoted(f.text) + " (line " +
                                              std::to_string(f.line) + ") has a payload pattern, and action " +
                                              quoted(action) + " keeps state, whose flows start with a packet "
                                              "without payload (a SYN): use a stateless action for payload filters");
                            break;
                        }
            }
        }
        for (std::size_t i = 0; i < cfg_.lists.size(); ++i)
            if (!used_lists_.contains(static_cast<int>(i)))
                warning(cfg_.lists[i].line, "filter list " + quoted(cfg_.lists[i].name) + " is not used by any policy");
        for (std::size_t i = 2; i < cfg_.actions.size(); ++i)
            if (!used_actions_.contains(static_cast<int>(i)))
                warning(cfg_.actions[i].line, "filter action " + quoted(cfg_.actions[i].name) + " is not used by any rule");
    }

    void resolve_assign() {
        const auto& a = cfg_.appliance;
        if (a.assign.empty()) {
            warning(a.assign_line ? a.assign_line : a.line,
                    "no policy is assigned: moatd blocks every packet (set assign = POLICY in [appliance])");
            return;
        }
        cfg_.assigned = cfg_.find_policy(a.assign);
        if (cfg_.assigned < 0) {
            std::vector<std::string> names;
            for (const auto& p : cfg_.policies)
                names.push_back(p.name);
            error(a.assign_line, "assign names policy " + quoted(a.assign) + ", which is not defined" +
                                     suggest(a.assign, names, "policy", "policies"));
        }
    }

    const std::string& file_;
    Diagnostics& diags_;
    Config cfg_;
    std::map<std::string, int> list_names_, action_names_, policy_names_;
    std::set<int> used_lists_, used_actions_;
};

}  // namespace

Config parse_config(std::string_view text, const std::string& file, Diagnostics& diags) {
    return ConfigParser(file, diags).build(read_ini(text, file, diags));
}

Result<std::string> read_config_file(const std::string& path) {
    const auto failed = [](const std::string& why) { return fail("cannot read the config file: " + why); };
    // Non-blocking: opening a FIFO for reading would wait for a writer.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return failed(std::strerror(errno));
    struct stat st {};
    std::optional<Error> error;
    if (::fstat(fd, &st) != 0)
        error = failed(std::strerror(errno));
    else if (!S_ISREG(st.st_mode))
        error = failed("not a regular file");
    else if (static_cast<std::uint64_t>(st.st_size) > kMaxConfigBytes)
        error = failed("larger than " + std::to_string(kMaxConfigBytes >> 20) + " MB");
    std::string out;
    char buf[64 * 1024];
    while (!error) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            error = failed(std::strerror(errno));
        else if (n == 0)
            break;
        else if (out.size() + static_cast<std::size_t>(n) > kMaxConfigBytes)
            error = failed("larger than " + std::to_string(kMaxConfigBytes >> 20) + " MB");  // it grew
        else
            out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    if (error)
        return std::move(*error);
    return out;
}

}  // namespace moat::ctl
