// Port set-up: one rx and one tx queue per worker on each port, promiscuous (a bump in the wire
// forwards every frame, whatever its destination MAC). Control thread, before workers launch.
#pragma once

#include <rte_mempool.h>

#include <cstdint>
#include <string>

namespace moat::dp {

struct PortConfig {
    std::uint16_t queues = 1;
    std::uint16_t rx_desc = 1024;
    std::uint16_t tx_desc = 1024;
    rte_mempool* pool = nullptr;
};

/// Why `port` cannot give `queues` workers a queue pair each with RSS spreading traffic over
/// them ("" when it can; one queue always works).
std::string multi_queue_limit(std::uint16_t port, std::uint16_t queues);

/// Configures and starts `port`. With more than one queue, RSS spreads packets over them with a
/// symmetric key on addresses (and ports where the NIC hashes them, never for fragments), so a
/// flow and its reply, and all fragments of a datagram, reach the same worker. Returns "" on
/// success, otherwise what failed.
std::string start_port(std::uint16_t port, const PortConfig& cfg);

/// Stops and closes a port started by start_port().
void stop_port(std::uint16_t port) noexcept;

/// "up 10000 Mb/s full-duplex", "down", ...
std::string link_text(std::uint16_t port);

}  // namespace moat::dp
