// EAL for a test binary: started once (STYLE 22) without hugepages or PCI, with a file prefix of
// its own so that test binaries can run in parallel, and a mempool for building packets.
#pragma once

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/common/lcores.h"
#include "tests/common/packets.h"

namespace moat::test {

class EalEnvironment : public ::testing::Environment {
public:
    void SetUp() override {
        std::vector<std::string> args{"test", "--no-huge", "-m", "256", "--no-pci", "--lcores", lcores_value(0),
                                      "--file-prefix", "moat-test-" + std::to_string(getpid()),
                                      "--log-level", "*:error"};
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        ASSERT_GE(rte_eal_init(static_cast<int>(argv.size()), argv.data()), 0) << rte_strerror(rte_errno);
        pool_ = rte_pktmbuf_pool_create("test_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        ASSERT_NE(pool_, nullptr) << rte_strerror(rte_errno);
    }
    void TearDown() override {
        rte_mempool_free(pool_);
        rte_eal_cleanup();
    }
    static rte_mempool* pool() { return pool_; }

private:
    static inline rte_mempool* pool_ = nullptr;
};

/// An mbuf holding `b`, from the environment's pool.
inline rte_mbuf* mbuf(const Bytes& b) {
    rte_mbuf* m = rte_pktmbuf_alloc(EalEnvironment::pool());
    if (!m)
        return nullptr;
    char* p = rte_pktmbuf_append(m, static_cast<std::uint16_t>(b.size()));
    if (!p) {
        rte_pktmbuf_free(m);
        return nullptr;
    }
    std::memcpy(p, b.data(), b.size());
    return m;
}

inline Bytes bytes_of(const rte_mbuf* m) {
    Bytes b(m->pkt_len);
    const void* p = rte_pktmbuf_read(m, 0, m->pkt_len, b.data());
    if (p != b.data())
        std::memcpy(b.data(), p, m->pkt_len);
    return b;
}

}  // namespace moat::test
