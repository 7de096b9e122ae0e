#include "perf/classbench.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string_view>

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

/// A whole string as an unsigned number in `base` no larger than `max`, or nullopt.
std::optional<std::uint64_t> number(std::string_view t, std::uint64_t max, int base = 10) {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v, base);
    if (t.empty() || ec != std::errc{} || end != t.data() + t.size() || v > max)
        return std::nullopt;
    return v;
}

/// "a.b.c.d/len" as Moat writes it: as it is (a /32 without its length), or, with `ipv6`,
/// [2001:db8::a.b.c.d]/(len + 96). Throws std::runtime_error (prefixed `where`) when malformed.
std::string prefix(const std::string& p, bool ipv6, const std::string& where) {
    const auto slash = p.find('/');
    in_addr v4{};
    const auto len = slash == std::string::npos ? std::nullopt : number(std::string_view(p).substr(slash + 1), 32);
    if (!len || inet_pton(AF_INET, p.substr(0, slash).c_str(), &v4) != 1)
        throw std::runtime_error(where + ": not an IPv4 prefix a.b.c.d/0..32: '" + p + "'");
    if (ipv6) {
        char text[INET6_ADDRSTRLEN];
        const dp::Addr a = mapped_v6(ntohl(v4.s_addr));
        inet_ntop(AF_INET6, a.bytes.data(), text, sizeof text);
        return "[" + std::string(text) + "]/" + std::to_string(*len + 96);
    }
    // A /32 may drop its length, a /0 is IPv4's any.
    return *len == 32 ? p.substr(0, slash) : p;
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
    for (std::size_t at = 1; std::getline(in, line) && (max_rules == 0 || n < max_rules); ++at) {
        const std::string where = rules_path + ":" + std::to_string(at);
        // @SRC DST SPORT_LO : SPORT_HI DPORT_LO : DPORT_HI PROTO/MASK [FLAGS/MASK], any blanks.
        std::istringstream f(line);
        std::string src, dst, colon1, colon2, proto, sport[2], dport[2];
        if (!(f >> src))
            continue;  // a blank line
        f >> dst >> sport[0] >> colon1 >> sport[1] >> dport[0] >> colon2 >> dport[1] >> proto;
        if (src[0] != '@' || !f || colon1 != ":" || colon2 != ":")
            throw std::runtime_error(where + ": not a ClassBench rule (@SRC DST LO : HI LO : HI PROTO/MASK FLAGS/MASK)");
        src.erase(0, 1);
        std::uint64_t port[4];
        for (unsigned i = 0; i < 4; ++i) {
            const auto v = number(i < 2 ? sport[i] : dport[i - 2], 65535);
            if (!v)
                throw std::runtime_error(where + ": a port is not a number 0..65535");
            port[i] = *v;
        }
        if (port[0] > port[1] || port[2] > port[3])
            throw std::runtime_error(where + ": a port range ends before it starts");
        const unsigned slo = static_cast<unsigned>(port[0]), shi = static_cast<unsigned>(port[1]);
        const unsigned dlo = static_cast<unsigned>(port[2]), dhi = static_cast<unsigned>(port[3]);
        const auto slash = proto.find('/');
        const auto hex = [](std::string_view t) {
            return t.starts_with("0x") || t.starts_with("0X") ? number(t.substr(2), 0xff, 16) : std::nullopt;
        };
        const auto value = slash == std::string::npos ? std::nullopt : hex(std::string_view(proto).substr(0, slash));
        const auto mask = slash == std::string::npos ? std::nullopt : hex(std::string_view(proto).substr(slash + 1));
        if (!value || !mask || (*mask != 0 && *mask != 0xff))
            throw std::runtime_error(where + ": the protocol is not 0xVV/0xFF (one protocol) or 0xVV/0x00 (any) ('" + proto +
                                     "')");
        unsigned pv = static_cast<unsigned>(*value);
        if (ipv6 && pv == 1)
            pv = 58;  // ICMP is ICMPv6 there
        // Real rule exports (and ClassBench's fw2 seed) give port ranges to protocols that have
        // no ports. A packet of such a protocol has no port field for them to test, and Moat's
        // grammar takes ports only with TCP, UDP or SCTP: the rule keeps its addresses and
        // protocol and its ports are dropped. With any protocol, the ports can only apply to
        // those three, so such a rule becomes one filter for each of them.
        const bool any_proto = *mask == 0;
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
            std::string filter = prefix(src, ipv6, where);
            if (!sp.empty())
                filter += ":" + sp;
            filter += "=" + prefix(dst, ipv6, where);
            if (!p.empty())
                filter += ":" + dp + ":" + p;
            (n % 2 == 0 ? even : odd) += "filter = " + filter + "\n";
        }
        ++n;
    }
    if (n == 0)
        throw std::runtime_error(rules_path + ": no rules");
    return "[appliance]\nassign = ClassBench\nclassifier_memory_mb = 16384\n"
           "[filterlist Even]\n" + even + "[filterlist Odd]\n" + odd +
           "[policy ClassBench]\nrule = Even -> permit\nrule = Odd -> block\n";
}

std::vector<dp::PacketKey> classbench_trace(const std::string& trace_path, std::size_t max_packets, bool ipv6) {
    std::istringstream in(read_text(trace_path));
    std::vector<dp::PacketKey> out;
    std::string line;
    for (std::size_t at = 1; std::getline(in, line); ++at) {
        // SRC DST SPORT DPORT PROTO [FLAGS [FILTER]], numbers in decimal.
        std::istringstream f(line);
        std::string field[5];
        if (!(f >> field[0]))
            continue;  // a blank line
        f >> field[1] >> field[2] >> field[3] >> field[4];
        const auto src = number(field[0], 0xffffffff), dst = number(field[1], 0xffffffff);
        const auto sp = number(field[2], 0xffff), dport = number(field[3], 0xffff), pr = number(field[4], 0xff);
        if (!f || !src || !dst || !sp || !dport || !pr)
            throw std::runtime_error(trace_path + ":" + std::to_string(at) +
                                     ": not a ClassBench trace line (SRC DST SPORT DPORT PROTO as numbers of 32, 32, "
                                     "16, 16 and 8 bits)");
        const std::uint64_t proto = *pr;
        dp::PacketKey k;
        if (ipv6) {
            k.family = dp::Family::ipv6;
            k.src = mapped_v6(static_cast<std::uint32_t>(*src));
            k.dst = mapped_v6(static_cast<std::uint32_t>(*dst));
        } else {
            k.family = dp::Family::ipv4;
            const std::uint32_t s = htonl(static_cast<std::uint32_t>(*src)), d = htonl(static_cast<std::uint32_t>(*dst));
            std::memcpy(k.src.bytes.data(), &s, 4);
            std::memcpy(k.dst.bytes.data(), &d, 4);
        }
        k.proto = static_cast<std::uint8_t>(ipv6 && proto == 1 ? 58 : proto);
        if (proto == 6 || proto == 17 || proto == 132) {
            k.has_ports = true;
            k.sport = static_cast<std::uint16_t>(*sp);
            k.dport = static_cast<std::uint16_t>(*dport);
        } else if (proto == 1) {
            k.has_icmp = true;
            k.icmp_type = static_cast<std::uint8_t>(*sp);
            k.icmp_code = static_cast<std::uint8_t>(*dport);
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
