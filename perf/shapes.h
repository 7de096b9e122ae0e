// Generated policy shapes for tests and benchmarks: the kinds of policy an operator can write
// that ClassBench's sets do not cover, each made of `n` filters (a seed picks the random parts,
// so a shape and a size are one fixed policy).
//
//   hostport        distinct host and port pairs, mirrored: 198.18.H.L+198.18.0.10:P:TCP
//   hostport-oneway the same, one way: 198.18.H.L=198.18.0.10:P:TCP
//   prefixes        random source and destination prefixes of every length /0 to /32, random
//                   protocols and ports (any, one, or a range), random actions
//   ports           wide and overlapping port ranges on both ports, few addresses
//   ipv6            random IPv6 prefixes of every length /0 to /128 on both sides, with ports
//   many-me         12 `me` addresses (8 IPv4, 4 IPv6: what one config line holds) and filters
//                   that use them, so that n filters expand to about 20 n ranked entries
// Every policy ends with a catch-all block, and assigns its policy `P`.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace moat::perf {

inline const std::vector<std::string>& shape_names() {
    static const std::vector<std::string> names{"hostport", "hostport-oneway", "prefixes", "ports", "ipv6", "many-me"};
    return names;
}

namespace detail {

inline std::string v4(std::uint32_t a) {
    return std::to_string(a >> 24) + "." + std::to_string(a >> 16 & 255) + "." + std::to_string(a >> 8 & 255) + "." +
           std::to_string(a & 255);
}

inline std::string v6(std::mt19937_64& rng, unsigned len) {
    // 2001:db8::/32 and random groups after it, masked to `len` bits (a filter's address must be
    // the prefix itself).
    std::uint16_t g[8] = {0x2001, 0x0db8};
    for (int i = 2; i < 8; ++i)
        g[i] = static_cast<std::uint16_t>(rng());
    std::string s = "[";
    for (unsigned i = 0; i < 8; ++i) {
        const unsigned keep = len >= 16 * (i + 1) ? 16 : len > 16 * i ? len - 16 * i : 0;
        const unsigned v = keep == 0 ? 0 : g[i] & (0xffffu << (16 - keep) & 0xffffu);
        char buf[8];
        std::snprintf(buf, sizeof buf, "%s%x", i ? ":" : "", v);
        s += buf;
    }
    return s + "]/" + std::to_string(len);
}

/// Masks `a` to its first `len` bits (a filter's address must be the prefix itself).
inline std::uint32_t masked(std::uint32_t a, unsigned len) { return len == 0 ? 0 : a & ~std::uint32_t{0} << (32 - len); }

inline std::string ports(std::mt19937_64& rng, int kind) {
    switch (kind) {
    case 0: return "";
    case 1: return std::to_string(rng() % 65536);
    default: {
        const unsigned lo = static_cast<unsigned>(rng() % 65536);
        const unsigned width = 1u << (rng() % 17);
        return std::to_string(lo) + "-" + std::to_string(std::min(65535u, lo + width - 1));
    }
    }
}

}  // namespace detail

/// The policy text of `shape` with `n` filters (plus the catch-all).
inline std::string shape_policy(const std::string& shape, std::size_t n, std::uint64_t seed = 1) {
    using namespace detail;
    std::mt19937_64 rng(seed * 1000003 + n);
    std::string me = "198.18.0.10";
    if (shape == "many-me") {  // as many as one config line holds (198 characters)
        me.clear();
        for (int i = 0; i < 8; ++i)
            me += (me.empty() ? "" : ", ") + v4(0xC6120000u + 10 + static_cast<std::uint32_t>(i));  // 198.18.0.10 ...
        for (int i = 0; i < 4; ++i)
            me += ", [2001:db8::" + std::to_string(10 + i) + "]";
    }
    std::string permit = "[filterlist Permitted]\n", block = "[filterlist Blocked]\n";
    const char* protos[] = {"TCP", "UDP", "SCTP"};
    for (std::size_t i = 0; i < n; ++i) {
        std::string f;
        bool allow = true;
        if (shape == "hostport" || shape == "hostport-oneway") {
            // Hosts of 198.18.0.0/15 after the first /24, each once; a random port each.
            const std::uint32_t host = 0xC6120100u + static_cast<std::uint32_t>(i % 130000);
            f = v4(host) + (shape == "hostport" ? "+" : "=") + "198.18.0.10:" + std::to_string(1 + rng() % 65535) + ":TCP";
        } else if (shape == "prefixes") {
            const unsigned sl = static_cast<unsigned>(rng() % 33), dl = static_cast<unsigned>(rng() % 33);
            const int proto = static_cast<int>(rng() % 5);  // TCP, UDP, SCTP, ICMP, any
            f = v4(masked(static_cast<std::uint32_t>(rng()), sl)) + "/" + std::to_string(sl);
            const std::string dst = v4(masked(static_cast<std::uint32_t>(rng()), dl)) + "/" + std::to_string(dl);
            if (proto < 3) {
                const std::string sp = ports(rng, static_cast<int>(rng() % 3));
                f += (sp.empty() ? "" : ":" + sp) + (rng() % 2 ? "+" : "=") + dst + ":" + ports(rng, static_cast<int>(rng() % 3)) +
                     ":" + protos[proto];
            } else if (proto == 3) {
                f += (rng() % 2 ? "+" : "=") + dst + "::ICMP:" + std::to_string(rng() % 20);
            } else {
                f += (rng() % 2 ? "+" : "=") + dst;
            }
            allow = rng() % 2;
        } else if (shape == "ports") {
            const std::string src = rng() % 4 ? "*" : v4(masked(static_cast<std::uint32_t>(rng()), 8)) + "/8";
            const std::string sp = ports(rng, static_cast<int>(rng() % 2) * 2);
            f = src + (sp.empty() ? "" : ":" + sp) + "+198.18.0." + std::to_string(10 + rng() % 4) + ":" + ports(rng, 2) + ":" +
                protos[rng() % 2];
            allow = rng() % 2;
        } else if (shape == "ipv6") {
            const std::string sp = ports(rng, static_cast<int>(rng() % 3));
            f = v6(rng, static_cast<unsigned>(rng() % 129)) + (sp.empty() ? "" : ":" + sp) + (rng() % 2 ? "+" : "=") +
                v6(rng, static_cast<unsigned>(rng() % 129)) + ":" + ports(rng, static_cast<int>(rng() % 3)) + ":" +
                protos[rng() % 2];
            allow = rng() % 2;
        } else if (shape == "many-me") {
            // `*` pairs with every `me` address of both families, a prefix with the IPv4 ones.
            const std::string src = rng() % 2 ? "*" : v4(masked(static_cast<std::uint32_t>(rng()), 24)) + "/24";
            f = src + "+me:" + std::to_string(1 + rng() % 65535) + ":" + protos[rng() % 2];
            allow = rng() % 4 != 0;
        } else {
            return "";
        }
        (allow ? permit : block) += "filter = " + f + "\n";
    }
    return "[appliance]\nme = " + me + "\nassign = P\nclassifier_memory_mb = 16384\n" + permit + block +
           "[filterlist Everything]\nfilter = *+*\n[policy P]\nrule = Permitted -> permit\nrule = Blocked -> block\n"
           "rule = Everything -> block\n";
}

}  // namespace moat::perf
