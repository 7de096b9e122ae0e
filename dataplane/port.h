// Port set-up: one rx and one tx queue per worker on each port, promiscuous (a bump in the wire
// forwards every frame, whatever its destination MAC). Control thread, before workers launch.
#pragma once

#include <rte_mempool.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace moat::dp {

/// Bytes a frame has beyond its IP packet, as moatd forwards it: the Ethernet header and two VLAN
/// tags (802.1ad + 802.1Q), no FCS (ports strip it).
inline constexpr std::uint32_t kL2Overhead = 14 + 2 * 4;

/// The longest frame (no FCS) a port with `mtu` passes: what the parser accepts (ParsePolicy::max_frame).
constexpr std::uint32_t frame_limit(std::uint32_t mtu) noexcept { return mtu + kL2Overhead; }

/// The mbuf data room (headroom included) for ports with `mtu`: a whole frame with its FCS in
/// one segment, so the parser finds the headers contiguous; rounded up to 1 KB, the receive
/// buffer granularity of many NICs. Never below DPDK's default (RTE_MBUF_DEFAULT_BUF_SIZE).
std::uint16_t mbuf_data_room(std::uint32_t mtu) noexcept;

/// What the port reports about frame sizes (rte_eth_dev_info).
struct FrameLimits {
    std::uint16_t min_mtu = 0, max_mtu = 0;
    std::uint32_t max_rx_pktlen = 0;
};

/// Why a port with `limits` cannot take `mtu`, or "" when it can. The port's own L2 overhead is
/// max_rx_pktlen - max_mtu where it reports both, else Ethernet header + FCS (as ethdev counts
/// it). Pure.
std::string mtu_refusal(std::uint32_t mtu, const FrameLimits& limits);

struct PortConfig {
    std::uint16_t queues = 1;
    std::uint16_t mtu = 1500;  ///< set on the port at configure time (rxmode.mtu)
    std::uint16_t rx_desc = 1024;
    std::uint16_t tx_desc = 1024;
    rte_mempool* pool = nullptr;
};

/// How packets arriving on a port reach its rx queues.
enum class Spread {
    one_queue,  ///< one queue: one worker sees everything
    rss,        ///< the port hashes (symmetric key): a flow, its reply and a datagram's fragments meet
    peer,       ///< no RSS: each packet lands on the queue its sender chose (memif, ring, ...)
};

/// Whether a port can give `queues` workers a queue pair each, and how it spreads packets over them.
struct QueuePlan {
    Spread spread = Spread::one_queue;
    std::string limit;  ///< why it cannot ("it has 1 queue pair(s)"); "" when it can
};

/// The decision, from what the port reports (rte_eth_dev_info's max_rx_queues, max_tx_queues and
/// flow_type_rss_offloads): `queues` queue pairs are needed; RSS on IP addresses is used where the
/// port has it, otherwise the peer's choice of queue spreads the traffic. Pure: no EAL needed.
QueuePlan plan_queues(std::uint16_t max_rx_queues, std::uint16_t max_tx_queues, std::uint64_t rss_offloads,
                      std::uint16_t queues);

/// True for a memif port (driver `net_memif`, device arguments `args`) in the server role
/// (role=server; memif's default is the client). Its client brings its own queue count, and the
/// server's queues past the client's are never set up: DPDK 22.11's memif then reads and writes
/// the client's first ring through them, so two workers would drain one ring (packets forwarded
/// twice, a ring raced by two lcores). multi_queue_plan() runs one worker there. Pure.
bool memif_server(std::string_view driver, std::string_view args);

/// plan_queues() for a probed port (its limit says when the device cannot be asked). Control thread.
QueuePlan multi_queue_plan(std::uint16_t port, std::uint16_t queues);

/// Configures and starts `port` with `cfg.queues` queue pairs. Where the port has RSS, it spreads
/// packets over them with a symmetric key on addresses (and ports where the NIC hashes them,
/// never for fragments), so a flow and its reply, and all fragments of a datagram, reach the same
/// worker; without RSS each packet stays on the queue its sender put it on. Returns "" on
/// success, otherwise what failed.
std::string start_port(std::uint16_t port, const PortConfig& cfg);

/// Why moatd must not run `role`'s port on bus `bus` ("pci", "vdev", ...; rte_bus_name) with
/// `hugepages` false (--no-huge), or "" when it may: a PCI NIC DMAs into the mbufs, which needs
/// hugepage memory with fixed physical (IOVA) addresses. Pure.
std::string memory_refusal(std::string_view role, std::string_view bus, bool hugepages);

/// The bus a probed port sits on ("pci", "vdev", ...), "" when unknown. Control thread.
std::string port_bus(std::uint16_t port);

/// Stops and closes a port started by start_port().
void stop_port(std::uint16_t port) noexcept;

/// "up 10000 Mb/s full-duplex", "down", ...
std::string link_text(std::uint16_t port);

}  // namespace moat::dp
