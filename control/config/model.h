// The policy model of DESIGN section 2: appliance settings, filter lists, filter actions,
// policies with their rules, and the assigned policy. Every element keeps the line it came from,
// so that diagnostics, `explain` and `rules` can point at the file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "control/config/filter_spec.h"
#include "dataplane/entry.h"
#include "dataplane/wire.h"

namespace moat::ctl {

enum class FragmentMode : std::uint8_t { track, drop };

enum class ClassifierKind : std::uint8_t {
    trie,       ///< the multi-bit trie (dataplane/trie.h)
    reference,  ///< the linear reference classifier, for debugging
};

struct Appliance {
    int line = 0;  ///< line of the [appliance] header, 0 when absent
    std::string outside;
    std::string inside;
    std::vector<ParsedAddr> me;
    int me_line = 0;
    bool me_invalid = false;  ///< an address of `me` did not parse (its error says so); only in a config with errors
    unsigned workers = 1;
    std::string eal;
    std::string control = "/run/moat/moat.sock";  ///< every command; mode 0660
    std::string control_readonly;  ///< queries only (status, stats, rules, explain); empty: none
    /// Groups of the two sockets (resolved at load time); unset: moatd's own group for `control`,
    /// and a read-only socket anyone may use (0666).
    std::optional<unsigned> control_gid, control_readonly_gid;
    std::string control_group, control_readonly_group;  ///< as written
    /// The read-only Prometheus endpoint over HTTP (`metrics = ADDRESS:PORT`), read at start-up:
    /// a literal IPv4 address or an IPv6 one (without its brackets here) and a port; port 0: off.
    std::string metrics_host;
    std::uint16_t metrics_port = 0;
    std::vector<std::uint16_t> non_ip{dp::kEtherArp};  ///< EtherTypes that pass unfiltered
    FragmentMode fragments = FragmentMode::track;
    unsigned fragment_table = dp::kFragmentTableDefault;  ///< datagrams in flight remembered per worker
    unsigned state_table = dp::kStateTableDefault;  ///< flows remembered per worker (`state = keep`)
    bool ip_options_allow = false;
    bool antispoof = true;
    std::string assign;  ///< empty: nothing assigned, block everything
    int assign_line = 0;
    bool strict = false;  ///< warnings block a load
    unsigned payload_scan_bytes = dp::kPayloadScanBytesDefault;
    ClassifierKind classifier = ClassifierKind::trie;
    unsigned classifier_memory_mb = 2048;  ///< the trie builder's peak memory; it stops with an error beyond it
    /// The ports' MTU (bytes of IP packet): frames up to mtu + 14 (Ethernet) + 8 (two VLAN tags)
    /// pass; the mbufs hold such a frame whole. Restart-only.
    unsigned mtu = kDefaultMtu;
    /// When one port loses its link, take the other's down until it returns. Restart-only.
    bool link_propagation = false;

    static constexpr unsigned kDefaultMtu = 1500;
    static constexpr unsigned kMinMtu = 68;     ///< RFC 791: every IPv4 host takes 68 bytes
    static constexpr unsigned kMaxMtu = 16000;  ///< beyond any NIC's jumbo frames; the port may allow less
};

struct FilterDef {
    std::string text;  ///< as written in the config
    int line = 0;
    FilterSpec spec;
};

struct FilterList {
    std::string name;
    int line = 0;
    std::string description;
    std::vector<FilterDef> filters;
};

struct FilterAction {
    std::string name;
    int line = 0;  ///< 0 for the built-in permit and block
    dp::Action action = dp::Action::block;
    std::string description;
    bool keep_state = false;  ///< `state = keep`: a permit that tracks flows (dataplane/state.h)
};

struct RuleDef {
    std::string text;  ///< `Inbound web protocols -> permit`, as written
    int line = 0;
    int list = -1;    ///< index into Config::lists
    int action = -1;  ///< index into Config::actions
};

struct Policy {
    std::string name;
    int line = 0;
    std::string description;
    std::vector<RuleDef> rules;
};

/// A validated config: every reference resolved, every filter parsed.
struct Config {
    std::string file;
    Appliance appliance;
    std::vector<FilterList> lists;
    std::vector<FilterAction> actions;  ///< [0] is the built-in permit, [1] the built-in block
    std::vector<Policy> policies;
    int assigned = -1;  ///< index into policies, -1 when nothing is assigned

    const FilterList* find_list(std::string_view name) const;
    int find_action(std::string_view name) const;
    int find_policy(std::string_view name) const;
};

}  // namespace moat::ctl
