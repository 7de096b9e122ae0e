// ClassBench rule sets and traces (../shared/data/classbench, see its README) as Moat policies
// and packets, for the classifier's differential tests and benchmarks.
#pragma once

#include <string>
#include <vector>

#include "dataplane/entry.h"

namespace moat::perf {

/// The directory of the ClassBench data: $MOAT_CLASSBENCH, else ../shared/data/classbench next
/// to the source tree when it exists, else the tests' compressed copy of the 1K and 10K sets.
std::string classbench_dir();

/// The rule file as a policy: one `=` filter per rule (a rule with ports and any protocol: one
/// for each of TCP, UDP and SCTP; the ports of a protocol without ports are dropped), even lines
/// permitted and odd lines blocked (two filter lists), assigned. A missing file is read from
/// `path`.xz. Throws std::runtime_error when neither can be read. With `ipv6`, every prefix
/// a.b.c.d/len becomes [2001:db8::a.b.c.d]/(len + 96) and ICMP ICMPv6: the same rules over IPv6.
std::string classbench_policy(const std::string& rules_path, std::size_t max_rules = 0, bool ipv6 = false);

/// The trace as packet keys (IPv4, arriving outside; with `ipv6`, IPv6 with the addresses
/// mapped as classbench_policy maps them, ICMP as ICMPv6). ICMP packets take their type and code from the low
/// bytes of the trace's port columns. At most `max_packets` (0: all).
std::vector<dp::PacketKey> classbench_trace(const std::string& trace_path, std::size_t max_packets = 0,
                                            bool ipv6 = false);

/// A comma-separated list of set names (`--sets acl1_1K,fw1_1K`), empty items dropped.
std::vector<std::string> split_list(const std::string& s);

}  // namespace moat::perf
