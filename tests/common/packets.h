// Building test frames byte by byte: Ethernet, VLAN tags, IPv4 (options, fragments), IPv6
// (extension headers), TCP, UDP, SCTP, ICMP. Lengths and the IPv4 header checksum are filled in;
// every field can be broken afterwards by editing the bytes (offsets are returned).
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace moat::test {

using Bytes = std::vector<std::uint8_t>;

struct Ext {
    std::uint8_t type;  ///< IPv6 extension header type (0, 43, 44, 60, ...)
    Bytes body;         ///< everything after the next-header byte (and the length byte, except for 44)
};

struct Pkt {
    std::vector<std::uint16_t> vlans;  ///< TPIDs of the tags, outermost first (0x8100, 0x88a8)
    std::uint16_t vid = 7;
    std::uint16_t ethertype = 0;  ///< 0: from the IP version; set it for non-IP frames
    int ip = 4;                   ///< 4 or 6; 0: no IP header (non-IP frame with `l3` as its body)
    std::string src = "198.18.100.1";
    std::string dst = "198.18.0.10";
    std::uint8_t proto = 6;
    std::uint16_t sport = 40000, dport = 80;
    std::uint8_t icmp_type = 8, icmp_code = 0;
    Bytes ip_options;          ///< IPv4 options (padded to 4 bytes by the caller)
    std::uint16_t frag = 0;    ///< IPv4 flags+offset field (0x2000 = more fragments)
    std::uint16_t id = 0x1234;  ///< IPv4 identification
    std::vector<Ext> ext;      ///< IPv6 extension headers, in order
    std::uint8_t tcp_doff = 5;
    Bytes l3;                  ///< non-IP payload
    std::string payload;       ///< L4 payload
    bool no_l4 = false;        ///< no transport header: `payload` follows the IP header (and extension headers)
};

struct Built {
    Bytes bytes;
    std::size_t l3 = 0;  ///< offset of the IP header
    std::size_t l4 = 0;  ///< offset of the transport header
};

inline void put16(Bytes& b, std::size_t at, std::uint16_t v) {
    b[at] = static_cast<std::uint8_t>(v >> 8);
    b[at + 1] = static_cast<std::uint8_t>(v);
}

inline std::uint16_t ipv4_checksum(const std::uint8_t* h, std::size_t n) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < n; i += 2)
        sum += static_cast<std::uint32_t>(h[i] << 8 | h[i + 1]);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
}

inline Built build(const Pkt& p) {
    Built out;
    Bytes& b = out.bytes;
    const std::uint8_t dst_mac[6] = {0x02, 0, 0, 0, 0, 0x10}, src_mac[6] = {0x02, 0, 0, 0, 0, 0x01};
    b.insert(b.end(), dst_mac, dst_mac + 6);
    b.insert(b.end(), src_mac, src_mac + 6);
    for (const auto tpid : p.vlans) {
        b.push_back(static_cast<std::uint8_t>(tpid >> 8));
        b.push_back(static_cast<std::uint8_t>(tpid));
        b.push_back(static_cast<std::uint8_t>(p.vid >> 8));
        b.push_back(static_cast<std::uint8_t>(p.vid));
    }
    const std::uint16_t et = p.ethertype ? p.ethertype : p.ip == 6 ? 0x86dd : 0x0800;
    b.push_back(static_cast<std::uint8_t>(et >> 8));
    b.push_back(static_cast<std::uint8_t>(et));
    out.l3 = b.size();
    if (p.ip == 0) {
        b.insert(b.end(), p.l3.begin(), p.l3.end());
        return out;
    }

    Bytes l4;
    if (!p.no_l4) {
        switch (p.proto) {
        case 6:
            l4.resize(std::max<std::size_t>(20, p.tcp_doff * 4u));
            put16(l4, 0, p.sport);
            put16(l4, 2, p.dport);
            l4[12] = static_cast<std::uint8_t>(p.tcp_doff << 4);
            l4[13] = 0x02;  // SYN
            put16(l4, 14, 65535);
            break;
        case 17:
            l4.resize(8);
            put16(l4, 0, p.sport);
            put16(l4, 2, p.dport);
            put16(l4, 4, static_cast<std::uint16_t>(8 + p.payload.size()));
            break;
        case 132:
            l4.resize(12);
            put16(l4, 0, p.sport);
            put16(l4, 2, p.dport);
            break;
        case 1:
        case 58:
            l4.resize(8);
            l4[0] = p.icmp_type;
            l4[1] = p.icmp_code;
            break;
        default: break;
        }
    }
    l4.insert(l4.end(), p.payload.begin(), p.payload.end());  // with no_l4: a later fragment's bytes

    if (p.ip == 4) {
        Bytes h(20 + p.ip_options.size());
        h[0] = static_cast<std::uint8_t>(0x40 | (h.size() / 4));
        put16(h, 2, static_cast<std::uint16_t>(h.size() + l4.size()));
        put16(h, 4, p.id);
        put16(h, 6, p.frag);
        h[8] = 64;
        h[9] = p.proto;
        if (inet_pton(AF_INET, p.src.c_str(), &h[12]) != 1 || inet_pton(AF_INET, p.dst.c_str(), &h[16]) != 1)
            throw std::invalid_argument("bad IPv4 address in a test packet");
        std::copy(p.ip_options.begin(), p.ip_options.end(), h.begin() + 20);
        put16(h, 10, ipv4_checksum(h.data(), h.size()));
        b.insert(b.end(), h.begin(), h.end());
    } else {
        Bytes h(40);
        h[0] = 0x60;
        h[6] = p.ext.empty() ? p.proto : p.ext.front().type;
        h[7] = 64;
        if (inet_pton(AF_INET6, p.src.c_str(), &h[8]) != 1 || inet_pton(AF_INET6, p.dst.c_str(), &h[24]) != 1)
            throw std::invalid_argument("bad IPv6 address in a test packet");
        for (std::size_t i = 0; i < p.ext.size(); ++i) {
            const std::uint8_t next = i + 1 < p.ext.size() ? p.ext[i + 1].type : p.proto;
            const Ext& e = p.ext[i];
            h.push_back(next);
            if (e.type == 44) {  // fragment header: fixed 8 bytes
                Bytes body = e.body;
                body.resize(7);
                h.insert(h.end(), body.begin(), body.end());
            } else {  // length in 8-byte units, not counting the first 8
                Bytes body = e.body;
                const std::size_t total = (2 + body.size() + 7) / 8 * 8;
                body.resize(total - 2);
                h.push_back(static_cast<std::uint8_t>(total / 8 - 1));
                h.insert(h.end(), body.begin(), body.end());
            }
        }
        put16(h, 4, static_cast<std::uint16_t>(h.size() - 40 + l4.size()));
        b.insert(b.end(), h.begin(), h.end());
    }
    out.l4 = b.size();
    b.insert(b.end(), l4.begin(), l4.end());
    return out;
}

inline Bytes frame(const Pkt& p) { return build(p).bytes; }

/// An ARP request from 198.18.100.1 for 198.18.0.10.
inline Bytes arp_request() {
    Pkt p;
    p.ip = 0;
    p.ethertype = 0x0806;
    p.l3 = {0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 18, 100, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 10};
    Bytes b = frame(p);
    std::memset(b.data(), 0xff, 6);
    return b;
}

}  // namespace moat::test
