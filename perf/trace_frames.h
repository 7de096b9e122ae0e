// Frames for ClassBench trace keys, and the median the benchmarks report (reload_bench,
// worker_bench).
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/entry.h"
#include "tests/common/packets.h"

namespace moat::perf {

inline double median(std::vector<double> v) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

inline std::string addr_text(const dp::Addr& a) {
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, a.bytes.data(), buf, sizeof buf);
    return buf;
}

/// The IPv4 trace packet `k` as an Ethernet frame of at least `min_bytes` (zero padding after the
/// datagram, as on the wire); nullopt for protocols the frame builder has no header for.
inline std::optional<test::Bytes> frame_of(const dp::PacketKey& k, std::size_t min_bytes = 0) {
    test::Pkt p;
    p.src = addr_text(k.src);
    p.dst = addr_text(k.dst);
    p.proto = k.proto;
    if (k.has_ports && (k.proto == 6 || k.proto == 17)) {
        p.sport = k.sport;
        p.dport = k.dport;
    } else if (k.has_icmp && k.proto == 1) {
        p.icmp_type = k.icmp_type;
        p.icmp_code = k.icmp_code;
    } else {
        return std::nullopt;
    }
    test::Bytes f = test::frame(p);
    if (f.size() < min_bytes)
        f.resize(min_bytes);
    return f;
}

}  // namespace moat::perf
