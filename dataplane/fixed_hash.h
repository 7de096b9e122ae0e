// The rte_hash of a per-worker table of fixed capacity (the fragment table, the flow table): an
// extendable table, so that exactly `entries` keys fit whatever they hash to, hashed with CRC32.
#pragma once

#include <rte_hash.h>
#include <rte_hash_crc.h>

#include <atomic>
#include <string>

namespace moat::dp {

/// A new rte_hash named `prefix` and a number of its own, or null (rte_errno says why).
inline rte_hash* create_fixed_hash(const char* prefix, unsigned entries, std::uint32_t key_len, int socket) {
    static std::atomic<unsigned> made{0};
    const std::string name = prefix + std::to_string(made.fetch_add(1));
    rte_hash_parameters p{};
    p.name = name.c_str();
    p.entries = entries;
    p.key_len = key_len;
    p.hash_func = rte_hash_crc;
    p.socket_id = socket;
    p.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
    return rte_hash_create(&p);
}

}  // namespace moat::dp
