#include "dataplane/port.h"

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <vector>

namespace moat::dp {

namespace {

std::string failed(const char* what, int rc) {
    return std::string(what) + ": " + rte_strerror(rc < 0 ? -rc : rc);
}

/// The symmetric Toeplitz key (0x6d5a repeated, in the NIC's key size): hash(a, b) == hash(b, a)
/// for addresses and for ports.
std::vector<std::uint8_t> symmetric_key(std::size_t size) {
    std::vector<std::uint8_t> k(size ? size : 40);
    for (std::size_t i = 0; i < k.size(); ++i)
        k[i] = i % 2 == 0 ? 0x6d : 0x5a;
    return k;
}

/// IPv4/IPv6 addresses, and TCP/UDP/SCTP ports of unfragmented packets. Fragments (first and
/// later alike) are hashed on addresses only, so a datagram stays on one worker's fragment table.
constexpr std::uint64_t kRssTypes = RTE_ETH_RSS_IP | RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP |
                                    RTE_ETH_RSS_NONFRAG_IPV4_SCTP | RTE_ETH_RSS_NONFRAG_IPV6_TCP |
                                    RTE_ETH_RSS_NONFRAG_IPV6_UDP | RTE_ETH_RSS_NONFRAG_IPV6_SCTP;

}  // namespace

std::uint16_t mbuf_data_room(std::uint32_t mtu) noexcept {
    const std::uint32_t frame = frame_limit(mtu) + RTE_ETHER_CRC_LEN;
    const std::uint32_t room = RTE_PKTMBUF_HEADROOM + (frame + 1023) / 1024 * 1024;
    return static_cast<std::uint16_t>(std::max<std::uint32_t>(room, RTE_MBUF_DEFAULT_BUF_SIZE));
}

std::string mtu_refusal(std::uint32_t mtu, const FrameLimits& l) {
    if (mtu < l.min_mtu || mtu > l.max_mtu)
        return "mtu = " + std::to_string(mtu) + " is outside the MTUs this port takes (" + std::to_string(l.min_mtu) +
               " to " + std::to_string(l.max_mtu) + ")";
    // ethdev's own rule (eth_dev_get_overhead_len): the port's overhead when it reports one.
    const std::uint32_t overhead = l.max_mtu != UINT16_MAX && l.max_rx_pktlen > l.max_mtu
                                       ? l.max_rx_pktlen - l.max_mtu
                                       : RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
    if (mtu + overhead > l.max_rx_pktlen)
        return "mtu = " + std::to_string(mtu) + " needs frames of " + std::to_string(mtu + overhead) +
               " bytes and this port receives at most " + std::to_string(l.max_rx_pktlen);
    return {};
}

std::string memory_refusal(std::string_view role, std::string_view bus, bool hugepages) {
    if (hugepages || bus != "pci")
        return {};
    return std::string(role) +
           " port is a PCI device and EAL runs without hugepages (--no-huge): a NIC needs its packet buffers "
           "in hugepages. Reserve them (echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages, or "
           "hugepages=N on the kernel command line), mount hugetlbfs (mount -t hugetlbfs nodev /dev/hugepages) "
           "and remove --no-huge from eal; see README, Deploying on real hardware";
}

std::string port_bus(std::uint16_t port) {
    rte_eth_dev_info info{};
    if (rte_eth_dev_info_get(port, &info) != 0 || info.device == nullptr)
        return {};
    const rte_bus* bus = rte_dev_bus(info.device);
    const char* name = bus ? rte_bus_name(bus) : nullptr;
    return name ? name : "";
}

QueuePlan plan_queues(std::uint16_t max_rx_queues, std::uint16_t max_tx_queues, std::uint64_t rss_offloads,
                      std::uint16_t queues) {
    if (queues <= 1)
        return {};
    if (max_rx_queues < queues || max_tx_queues < queues)
        return {Spread::one_queue, "it has " + std::to_string(std::min(max_rx_queues, max_tx_queues)) + " queue pair(s)"};
    // A port without RSS still has its queues: a memif or ring peer puts each packet on one of
    // them itself, which is how the workers share the traffic there.
    return {(rss_offloads & RTE_ETH_RSS_IP) != 0 ? Spread::rss : Spread::peer, {}};
}

bool memif_server(std::string_view driver, std::string_view args) {
    if (driver != "net_memif")
        return false;
    // memif is the client unless the last role= says server ("master" is its old name).
    bool server = false;
    while (!args.empty()) {
        const std::size_t comma = args.find(',');
        const std::string_view kv = args.substr(0, comma);
        if (kv.starts_with("role="))
            server = kv == "role=server" || kv == "role=master";
        args = comma == std::string_view::npos ? std::string_view{} : args.substr(comma + 1);
    }
    return server;
}

QueuePlan multi_queue_plan(std::uint16_t port, std::uint16_t queues) {
    if (queues <= 1)
        return {};
    rte_eth_dev_info info{};
    if (const int rc = rte_eth_dev_info_get(port, &info); rc != 0)
        return {Spread::one_queue, failed("rte_eth_dev_info_get", rc)};
    QueuePlan plan = plan_queues(info.max_rx_queues, info.max_tx_queues, info.flow_type_rss_offloads, queues);
    const rte_devargs* da = info.device ? rte_dev_devargs(info.device) : nullptr;
    if (plan.spread == Spread::peer && memif_server(info.driver_name ? info.driver_name : "", da && da->args ? da->args : ""))
        return {Spread::one_queue,
                "it is a memif server, and a client with fewer queue pairs leaves the rest unset, which DPDK "
                "reads as the client's first ring (two workers would drain one ring and duplicate packets); "
                "make moatd the memif client (role=client): a server with fewer queue pairs refuses it"};
    return plan;
}

std::string start_port(std::uint16_t port, const PortConfig& cfg) {
    rte_eth_dev_info info{};
    if (const int rc = rte_eth_dev_info_get(port, &info); rc != 0)
        return failed("rte_eth_dev_info_get", rc);
    const QueuePlan plan = multi_queue_plan(port, cfg.queues);
    if (!plan.limit.empty())
        return std::to_string(cfg.queues) + " workers need a queue pair each, but " + plan.limit;
    if (const std::string no = mtu_refusal(cfg.mtu, {info.min_mtu, info.max_mtu, info.max_rx_pktlen}); !no.empty())
        return no;
    if (cfg.pool && rte_pktmbuf_data_room_size(cfg.pool) < RTE_PKTMBUF_HEADROOM + frame_limit(cfg.mtu))
        return "the mbufs hold " + std::to_string(rte_pktmbuf_data_room_size(cfg.pool) - RTE_PKTMBUF_HEADROOM) +
               " bytes and mtu = " + std::to_string(cfg.mtu) + " needs " + std::to_string(frame_limit(cfg.mtu));
    rte_eth_conf conf{};  // no offloads: packets leave exactly as they came
    conf.rxmode.mtu = cfg.mtu;
    std::vector<std::uint8_t> key = symmetric_key(info.hash_key_size);
    if (plan.spread == Spread::rss) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = key.data();
        conf.rx_adv_conf.rss_conf.rss_key_len = static_cast<std::uint8_t>(key.size());
        conf.rx_adv_conf.rss_conf.rss_hf = kRssTypes & info.flow_type_rss_offloads;
    }
    if (const int rc = rte_eth_dev_configure(port, cfg.queues, cfg.queues, &conf); rc != 0)
        return failed("rte_eth_dev_configure", rc);
    std::uint16_t rxd = cfg.rx_desc, txd = cfg.tx_desc;
    if (const int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd); rc != 0)
        return failed("rte_eth_dev_adjust_nb_rx_tx_desc", rc);
    const int socket = rte_eth_dev_socket_id(port);
    const unsigned sock = socket < 0 ? SOCKET_ID_ANY : static_cast<unsigned>(socket);
    for (std::uint16_t q = 0; q < cfg.queues; ++q) {
        if (const int rc = rte_eth_rx_queue_setup(port, q, rxd, sock, nullptr, cfg.pool); rc != 0)
            return failed("rte_eth_rx_queue_setup", rc);
        if (const int rc = rte_eth_tx_queue_setup(port, q, txd, sock, nullptr); rc != 0)
            return failed("rte_eth_tx_queue_setup", rc);
    }
    if (const int rc = rte_eth_dev_start(port); rc != 0)
        return failed("rte_eth_dev_start", rc);
    if (const int rc = rte_eth_promiscuous_enable(port); rc != 0 && rc != -ENOTSUP) {
        rte_eth_dev_stop(port);
        return failed("rte_eth_promiscuous_enable", rc);
    }
    return {};
}

void stop_port(std::uint16_t port) noexcept {
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
}

std::string link_text(std::uint16_t port) {
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(port, &link) != 0)
        return "unknown";
    if (!link.link_status)
        return "down";
    std::string s = "up";
    if (link.link_speed != RTE_ETH_SPEED_NUM_NONE && link.link_speed != RTE_ETH_SPEED_NUM_UNKNOWN)
        s += " " + std::to_string(link.link_speed) + " Mb/s";
    s += link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX ? " full-duplex" : " half-duplex";
    return s;
}

}  // namespace moat::dp
