// Writing and reading Ethernet pcap files with libpcap.
#pragma once

#include <pcap/pcap.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "tests/common/packets.h"

namespace moat::test {

inline void write_pcap(const std::string& path, const std::vector<Bytes>& frames) {
    pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
    pcap_dumper_t* d = pcap_dump_open(dead, path.c_str());
    if (!d) {
        pcap_close(dead);
        throw std::runtime_error("cannot write " + path);
    }
    for (std::size_t i = 0; i < frames.size(); ++i) {
        pcap_pkthdr h{};
        h.ts.tv_sec = 1'700'000'000;
        h.ts.tv_usec = static_cast<suseconds_t>(i);
        h.caplen = h.len = static_cast<bpf_u_int32>(frames[i].size());
        pcap_dump(reinterpret_cast<u_char*>(d), &h, frames[i].data());
    }
    pcap_dump_close(d);
    pcap_close(dead);
}

/// The frames of a pcap file; a missing file reads as nullopt-like empty with `ok` false.
inline std::vector<Bytes> read_pcap(const std::string& path, bool* ok = nullptr) {
    char err[PCAP_ERRBUF_SIZE];
    pcap_t* p = pcap_open_offline(path.c_str(), err);
    if (ok)
        *ok = p != nullptr;
    std::vector<Bytes> out;
    if (!p)
        return out;
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    while (pcap_next_ex(p, &h, &data) == 1)
        out.emplace_back(data, data + h->caplen);
    pcap_close(p);
    return out;
}

/// The pcap ports' files of the control-socket tests in `dir`: the outside port reads `web`
/// packets to 198.18.0.10:80 and then `ssh` to port 22 (from 198.18.100.1:40000), the inside
/// port nothing.
inline void write_web_and_ssh(const std::string& dir, int web, int ssh) {
    Pkt w, s;
    s.dport = 22;
    std::vector<Bytes> frames(static_cast<std::size_t>(web), frame(w));
    frames.insert(frames.end(), static_cast<std::size_t>(ssh), frame(s));
    write_pcap(dir + "/or.pcap", frames);
    write_pcap(dir + "/ir.pcap", {});
}

}  // namespace moat::test
