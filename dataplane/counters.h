// Per-worker counters (STYLE 9): each counter has one writer, its worker, which updates it with a
// relaxed load and store (no atomic read-modify-write on the hot path); readers on any thread sum
// the workers' values with relaxed loads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace moat::dp {

/// Why a packet was dropped. `none` means it was forwarded.
enum class DropReason : std::uint8_t {
    none,
    policy,      ///< the winning filter's action is block
    no_match,    ///< no filter matched: default deny
    malformed,   ///< truncated or inconsistent headers, too many VLAN tags or extension headers
    fragment,    ///< an IP fragment that may not pass
    non_ip,      ///< an EtherType that is not IP and not in `non_ip`
    spoofed,     ///< a `me` source address arriving on the outside port (`antispoof`)
    ip_options,  ///< IPv4 options with `ip_options = drop`
    payload,     ///< a payload filter blocked it
    state,       ///< only a flow could let it pass (`state = keep`), and it has none or left its window
};

inline constexpr std::size_t kDropReasons = 10;

/// Counter names, used by the final report, the CLI, telemetry and the tests. Index = DropReason.
inline constexpr std::array<std::string_view, kDropReasons> kDropReasonNames{
    "none", "policy", "no_match", "malformed", "fragment", "non_ip", "spoofed", "ip_options", "payload", "state",
};

/// Why a fragment was dropped: the detail behind DropReason::fragment.
enum class FragDrop : std::uint8_t {
    none,
    all,          ///< `fragments = drop`
    tiny,         ///< a first fragment without the whole transport header (RFC 1858) or, for
                  ///< IPv6, without the whole header chain (RFC 7112)
    tcp_offset1,  ///< a TCP fragment at offset 8 bytes, which can rewrite the flags (RFC 3128)
    no_first,     ///< a later fragment with no remembered verdict (none yet, expired, blocked)
    overlap,      ///< it overlaps a piece of its datagram already seen; the datagram is poisoned
    table_full,   ///< a new datagram while the worker's fragment table is full
    scattered,    ///< a datagram reordered into more pieces than are remembered
};

inline constexpr std::size_t kFragDrops = 8;

inline constexpr std::array<std::string_view, kFragDrops> kFragDropNames{
    "none", "all", "tiny", "tcp_offset1", "no_first", "overlap", "table_full", "scattered",
};

/// A single-writer counter.
class Counter {
public:
    void add(std::uint64_t n) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

struct PortCounters {
    Counter rx_packets, rx_bytes;
    Counter tx_packets, tx_bytes;
    Counter dropped;    ///< received on this port and dropped (any reason)
    Counter tx_failed;  ///< permitted, but this port's tx queue did not take them; freed
};

/// Counters of one worker that live as long as the worker.
struct alignas(64) WorkerCounters {
    std::array<PortCounters, 2> port;  ///< indexed by Ingress
    std::array<Counter, kDropReasons> drops;
    Counter non_ip_passed;  ///< non-IP frames forwarded because `non_ip` lists their EtherType
    std::array<Counter, kFragDrops> fragment_drops;  ///< detail of drops[fragment]
    Counter fragments_passed;                        ///< fragments forwarded (first and later)
    Counter payload_scanned;                         ///< packets whose payload was scanned
    Counter payload_bytes;                           ///< bytes scanned
    /// TSC cycles of the busy polls: loop turns that received at least one packet, from the
    /// turn's first rx burst to the next turn's (rx, parse, classify, tx, free, counters). Over
    /// the packets received, the worker's cost per packet (testpmd --record-core-cycles alike).
    Counter busy_cycles;
    Counter busy_polls;  ///< those turns: the packets received over them is the mean burst
    /// Drop-trace records its monitor ring refused (full: the control thread drains it slower
    /// than the worker samples); the worker never waits for the ring (dataplane/monitor.h).
    Counter monitor_lost;
    /// The flow table of `state = keep` (dataplane/state.h): flows started, freed when their
    /// timeout passed (or a closed connection's ports were reused), cut because a reload's
    /// policy would not start them, refused because the table was full; ICMP errors passed
    /// because they quote a tracked flow.
    Counter state_created, state_expired, state_cut, state_full, state_related;
};

/// Hits of one ranked filter entry, kept per worker.
struct EntryCounter {
    Counter packets;
    Counter bytes;
};

}  // namespace moat::dp
