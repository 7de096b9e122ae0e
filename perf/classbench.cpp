#include "perf/classbench.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace moat::perf {

namespace {

std::string ports(unsigned lo, unsigned hi) {
    if (lo == 0 && hi == 65535)
        return "";
    return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
}

/// The IPv6 form of an IPv4 address (host order): 2001:db8::/96 followed by its 32 bits.
dp::Addr mapped_v6(std::uint32_t v4) noexcept {
    dp::Addr a;
    a.bytes[0] = 0x20, a.bytes[1] = 0x01, a.bytes[2] = 0x0d, a.bytes[3] = 0xb8;
    const std::uint32_t be = htonl(v4);
    std::memcpy(a.bytes.data() + 12, &be, 4);
    return a;
}

std::string prefix(const std::string& p, bool ipv6) {
    if (ipv6) {  // a.b.c.d/len -> [2001:db8::a.b.c.d]/(len + 96)
        const auto slash = p.find('/');
        in_addr v4{};
        if (slash == std::string::npos || inet_pton(AF_INET, p.substr(0, slash).c_str(), &v4) != 1)
            throw std::runtime_error("not an IPv4 prefix: " + p);
        char text[INET6_ADDRSTRLEN];
        const dp::Addr a = mapped_v6(ntohl(v4.s_addr));
        inet_ntop(AF_INET6, a.bytes.data(), text, sizeof text);
        return "[" + std::string(text) + "]/" + std::to_string(std::stoul(p.substr(slash + 1)) + 96);
    }
    // "74.9.193.162/32" stays; a /32 may drop its length, a /0 is IPv4's any.
    return p.ends_with("/32") ? p.substr(0, p.size() - 3) : p;
}

}  // namespace

std::string classbench_dir() {
    if (const char* d = std::getenv("MOAT_CLASSBENCH"); d && *d)
        return d;
    // The source tree: $MOAT_SOURCE_ROOT (meson sets it), else where this was built from.
    const char* env_root = std::getenv("MOAT_SOURCE_ROOT");
    const std::string root = env_root && *env_root ? env_root : MOAT_BUILT_FROM;
    if (std::filesystem::exists(root + "/../shared/data/classbench"))
        return root + "/../shared/data/classbench";
    return root + "/tests/data/classbench";  // the 1K and 10K sets, xz-compressed
}

namespace {

/// The contents of `path`, or of `path`.xz decompressed by xz(1).
std::string read_text(const std::string& path) {
    if (std::ifstream in{path}) {
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    if (!std::filesystem::exists(path + ".xz"))
        throw std::runtime_error("cannot read " + path + " (nor " + path + ".xz)");
    const std::string cmd = "xz -dc '" + path + ".xz'";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p)
        throw std::runtime_error("cannot run " + cmd);
    std::string out;
    char buf[1 << 16];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;)
        out.append(buf, n);
    if (pclose(p) != 0)
        throw std::runtime_error(cmd + " failed");
    return out;
}

}  // namespace

std::string classbench_policy(const std::string& rules_path, std::size_t max_rules, bool ipv6) {
    std::istringstream in(read_text(rules_path));
    std::string even, odd, line;
    std::size_t n = 0;
    while (std::getline(in, line) && (max_rules == 0 || n < max_rules)) {
        if (line.empty() || line[0] != '@')
            continue;
        std::istringstream f(line.substr(1));
        std::string src, dst, colon, proto;
        unsigned slo, shi, dlo, dhi;
        f >> src >> dst >> slo >> colon >> shi >> dlo >> colon >> dhi >> proto;
        if (!f)
            throw std::runtime_error(rules_path + ": cannot read rule line " + std::to_string(n + 1));
        const auto slash = proto.find('/');
        unsigned pv = static_cast<unsigned>(std::stoul(proto.substr(0, slash), nullptr, 16));
        if (ipv6 && pv == 1)
            pv = 58;  // ICMP is ICMPv6 there
        const unsigned pm = static_cast<unsigned>(std::stoul(proto.substr(slash + 1), nullptr, 16));
        // Real rule exports (and ClassBench's fw2 seed) give port ranges to protocols that have
        // no ports. A packet of such a protocol has no port field for them to test, and Moat's
        // grammar takes ports only with TCP, UDP or SCTP: the rule keeps its addresses and
        // protocol and its ports are dropped. With any protocol, the ports can only apply to
        // those three, so such a rule becomes one filter for each of them.
        const bool any_proto = pm == 0;
        const bool with_ports = any_proto || pv == 6 || pv == 17 || pv == 132;
        const std::string sp = with_ports ? ports(slo, shi) : "", dp = with_ports ? ports(dlo, dhi) : "";
        std::vector<std::string> protos;
        if (!any_proto)
            protos = {std::to_string(pv)};
        else if (!sp.empty() || !dp.empty())
            protos = {"6", "17", "132"};
        else
            protos = {""};
        for (const auto& p : protos) {
            std::string filter = prefix(src, ipv6);
            if (!sp.empty())
                filter += ":" + sp;
            filter += "=" + prefix(dst, ipv6);
            if (!p.empty())
                filter += ":" + dp + ":" + p;
            (n % 2 == 0 ? even : odd) += "filter = " + filter + "\n";
        }
        ++n;
    }
    return "[appliance]\nassign = ClassBench\nclassifier_memory_mb = 16384\n"
           "[filterlist Even]\n" + even + "[filterlist Odd]\n" + odd +
           "[policy ClassBench]\nrule = Even -> permit\nrule = Odd -> block\n";
}

std::vector<dp::PacketKey> classbench_trace(const std::string& trace_path, std::size_t max_packets, bool ipv6) {
    std::istringstream in(read_text(trace_path));
    std::vector<dp::PacketKey> out;
    std::uint64_t src, dst, sp, dport, proto;
    std::string rest;
    while (in >> src >> dst >> sp >> dport >> proto && std::getline(in, rest)) {
        dp::PacketKey k;
        if (ipv6) {
            k.family = dp::Family::ipv6;
            k.src = mapped_v6(static_cast<std::uint32_t>(src));
            k.dst = mapped_v6(static_cast<std::uint32_t>(dst));
        } else {
            k.family = dp::Family::ipv4;
            const std::uint32_t s = htonl(static_cast<std::uint32_t>(src)), d = htonl(static_cast<std::uint32_t>(dst));
            std::memcpy(k.src.bytes.data(), &s, 4);
            std::memcpy(k.dst.bytes.data(), &d, 4);
        }
        k.proto = static_cast<std::uint8_t>(ipv6 && proto == 1 ? 58 : proto);
        if (proto == 6 || proto == 17 || proto == 132) {
            k.has_ports = true;
            k.sport = static_cast<std::uint16_t>(sp);
            k.dport = static_cast<std::uint16_t>(dport);
        } else if (proto == 1) {
            k.has_icmp = true;
            k.icmp_type = static_cast<std::uint8_t>(sp);
            k.icmp_code = static_cast<std::uint8_t>(dport);
        }
        out.push_back(k);
        if (max_packets && out.size() == max_packets)
            break;
    }
    return out;
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string x; std::getline(in, x, ',');)
        if (!x.empty())
            out.push_back(x);
    return out;
}

}  // namespace moat::perf
