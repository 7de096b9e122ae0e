// Connection state for `state = keep` (a filter action property): a stateful permit lets new
// flows start only in its written direction, and its mirror passes only packets of flows it
// started, as pf's `keep state`, nftables' `ct state established` and VPP's permit+reflect do.
//
// Ranking is unchanged: the classifier finds the deciding entry first; the flow table is asked
// only for packets whose deciding entry keeps state (Entry::state) and for ICMP errors. A flow is
// keyed by its two endpoints in a canonical order (both directions find it with one lookup):
// TCP and UDP/SCTP by addresses and ports, ICMP echo by identifier, other protocols by
// addresses. TCP is tracked as pf tracks it (Guido van Rooij's sequence windows): a flow starts
// with a SYN only, and a packet outside the window its peer allowed is dropped. An ICMP error
// (destination unreachable, time exceeded, parameter problem; ICMPv6 1-4) passes when the header
// it quotes belongs to a tracked flow and was sent by the host the error goes to (RFC 4890).
//
// One table per worker, written only by it (RSS's symmetric key sends both directions of a flow
// to one worker): an rte_hash of fixed capacity whose positions index an array of flows. A full
// table drops new flows and counts them; flows expire by pf's timeouts and are swept a few at a
// time. A flow remembers the generation that created it: after a reload its next packet asks the
// new policy whether it would create the flow, and the flow is cut when not.
#pragma once

#include <rte_hash.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include "dataplane/classify.h"
#include "dataplane/counters.h"
#include "dataplane/parse.h"
#include "dataplane/table_set.h"

namespace moat::dp {

/// pf's default timeouts, in seconds (pf.conf(5) `set timeout`).
struct StateTimeouts {
    static constexpr unsigned tcp_first = 120, tcp_opening = 30, tcp_established = 86400, tcp_closing = 900,
                              tcp_finwait = 45, tcp_closed = 90;
    static constexpr unsigned udp_first = 60, udp_single = 30, udp_multiple = 60;
    static constexpr unsigned icmp_first = 20, icmp_reply = 10;
    static constexpr unsigned other_first = 60, other_single = 30, other_multiple = 60;
};

/// A TCP end's state, ordered as pf orders them (a later state is a greater value).
enum class TcpState : std::uint8_t { closed, syn_sent, established, closing, fin_wait_2, time_wait };

inline constexpr std::uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;
/// The flags a flow's first segment is judged on: SYN alone among them starts a flow (no
/// SYN+FIN, SYN+RST or SYN+ACK).
inline constexpr std::uint8_t kTcpFirst = kTcpSyn | kTcpAck | kTcpRst | kTcpFin;

/// What the tracker reads from one TCP segment.
struct TcpSegment {
    std::uint32_t seq = 0;
    std::uint32_t ack = 0;
    std::uint16_t win = 0;     ///< as sent (not scaled)
    std::uint8_t flags = 0;    ///< FIN, SYN, RST, ACK, ...
    std::int8_t wscale = -1;   ///< the window-scale option of a SYN, or -1
    std::uint32_t len = 0;     ///< payload bytes
};

/// One end of a tracked TCP connection (pf's pf_state_peer).
struct TcpPeer {
    std::uint32_t seqlo = 0;    ///< the highest sequence number it has sent, plus one
    std::uint32_t seqhi = 0;    ///< the highest sequence number its peer allows it to send
    std::uint32_t max_win = 0;  ///< the largest window it advertised (unscaled)
    std::int8_t wscale = -1;    ///< its window-scale option, or -1 without
    std::uint32_t isn = 0;      ///< the initiator's: its SYN's sequence number
    std::uint32_t syn_end = 0;  ///< the initiator's: the end of its SYN (ISN + 1 + data), what a SYN-ACK acknowledges
    TcpState state = TcpState::closed;
    bool seen = false;          ///< it has sent a packet
    friend bool operator==(const TcpPeer&, const TcpPeer&) = default;
};

/// A TCP connection as the tracker sees it: [0] the end that sent the SYN, [1] the other.
struct TcpTrack {
    TcpPeer peer[2];
    friend bool operator==(const TcpTrack&, const TcpTrack&) = default;
};

/// Starts tracking from the SYN `s` (flags SYN without ACK). Returns the flow's timeout (seconds).
unsigned tcp_start(TcpTrack& t, const TcpSegment& s) noexcept;

/// Tracks segment `s` sent by end `from` (0: the SYN's sender). Returns the flow's new timeout in
/// seconds, or 0 when the segment lies outside the windows and is dropped (the track unchanged).
/// Pure: what the fuzz and the model tests hold it to.
unsigned tcp_track(TcpTrack& t, unsigned from, const TcpSegment& s) noexcept;

/// True when both ends have closed (FIN_WAIT_2 or later): a new SYN on the same ports starts anew.
bool tcp_closed(const TcpTrack& t) noexcept;

/// A flow's key: its two endpoints, the lower first (address, then port, in an order of flow_key's
/// own), so that both directions find one entry. Ports are the transport ports, for ICMP echo
/// (identifier, 0) as the request's sender sees it and (0, identifier) as the reply's does; 0 for
/// other protocols. 48 bytes, a size rte_hash compares with vector instructions (40 would be a
/// memcmp call a lookup); flow_key zeroes the padding, which is hashed. No member initializers: a
/// burst's array of keys is not cleared before it is filled.
struct FlowKey {
    Addr a;
    Addr b;
    std::uint16_t port_a;
    std::uint16_t port_b;
    std::uint8_t family;
    std::uint8_t proto;
    std::uint8_t pad[10];
    friend bool operator==(const FlowKey& x, const FlowKey& y) noexcept {
        return x.a == y.a && x.b == y.b && x.port_a == y.port_a && x.port_b == y.port_b && x.family == y.family &&
               x.proto == y.proto;
    }
};

/// One direction of a flow as a packet travels: source and destination endpoints.
struct FlowTuple {
    Addr src;
    Addr dst;
    std::uint16_t sport = 0;
    std::uint16_t dport = 0;
    Family family = Family::ipv4;
    std::uint8_t proto = 0;
};

/// The key of the flow `t` belongs to, and whether `t`'s source is the key's first endpoint.
FlowKey flow_key(const FlowTuple& t, bool& src_is_a) noexcept;

/// What the state stage did to a burst, for the worker's counters.
struct StateCounts {
    std::uint32_t created = 0;
    std::uint32_t expired = 0;
    std::uint32_t cut = 0;   ///< flows a reload's policy would not create, removed
    std::uint32_t full = 0;  ///< new flows refused: the table was full
    std::uint32_t related = 0;  ///< ICMP errors passed because they quote a tracked flow
};

/// One flow as `moatctl states` lists it, copied out of the table by its worker. POD: it goes
/// through an rte_ring.
struct FlowRecord {
    FlowKey key;
    std::uint64_t generation;  ///< the table set that last judged it (`rank` is in that one)
    std::uint32_t listing;     ///< the listing it was copied for (StateListing::request)
    std::uint32_t expires_ms;  ///< until it expires, from its worker's loop turn that copied it
    Rank rank;                 ///< the stateful permit that created it (or let it live after a reload)
    TcpState tcp[2];           ///< TCP: the initiator's state and the responder's
    bool initiator_is_a;       ///< the first packet's source is key.a
    Ingress ingress;           ///< the port the first packet arrived on
    bool answered;             ///< the responder has sent
    std::uint8_t worker;
    std::uint8_t pad[2];
};
static_assert(std::is_trivially_copyable_v<FlowRecord>);
static_assert(sizeof(FlowRecord) % 4 == 0, "rte_ring elements are multiples of 4 bytes");

/// A listing of one worker's flows (`moatctl states`), as pfctl -ss gives. The control thread
/// asks for one by storing a new number in `request` (0: none). Every 64 polls while `request`
/// is neither 0 nor `done`, the worker walks a slice of its table (kListingSlots positions) and
/// copies the live flows into `ring` (an SP/SC rte_ring made at start-up: the worker produces,
/// the control thread consumes); having walked it all, it stores the number in `done` (release:
/// every record is in the ring before). A full ring pauses the walk until the next time; the
/// worker never waits, and a new number starts the walk over. Not an atomic snapshot: a flow
/// that starts or ends during the walk may or may not be listed.
struct StateListing {
    std::atomic<std::uint32_t> request{0};  ///< control: the listing wanted now
    std::atomic<std::uint32_t> done{0};     ///< the worker: the last listing it finished
    rte_ring* ring = nullptr;               ///< of FlowRecord; unset: this worker lists nothing
    std::uint32_t walking = 0;              ///< the worker's: the listing it is walking
    unsigned cursor = 0;                    ///< the worker's: the next table position
};

/// Table positions a worker walks for a listing every 64 polls: a bounded slice of its loop
/// (at most this many flows copied, a few thousand cycles), whatever the table's size.
inline constexpr unsigned kListingSlots = 64;

class FlowTable {
public:
    /// A table for `entries` flows (at least 8) in DPDK memory on `socket`. nullptr and `error`
    /// set when it cannot be had. Control thread or the worker before its loop.
    static std::unique_ptr<FlowTable> create(unsigned entries, int socket, std::string& error);
    ~FlowTable();
    FlowTable(const FlowTable&) = delete;
    FlowTable& operator=(const FlowTable&) = delete;

    /// The state stage of a classified burst (after payload scans, before fragments settle):
    /// every packet whose deciding entry keeps state is passed or dropped (DropReason::state) by
    /// its flow, creating flows where a stateful permit allows; an ICMP error that quotes a
    /// tracked flow passes. Worker only; `now` in TSC cycles.
    void settle(const TableSet& t, std::span<rte_mbuf* const> pkts, std::span<const PacketMeta> meta,
                std::span<Verdict> verdicts, std::uint64_t now, StateCounts& counts) noexcept;

    /// Frees up to `n` expired flows, continuing where the last call stopped. Worker only.
    void sweep(std::uint64_t now, unsigned n, StateCounts& counts) noexcept;

    /// One step of listing `want` into `l` (see StateListing): up to `slots` positions from where
    /// the last step stopped. Worker only; `now` in TSC cycles.
    void list(StateListing& l, std::uint32_t want, std::uint64_t now, unsigned worker, unsigned slots) noexcept;

    unsigned capacity() const noexcept { return capacity_; }
    unsigned in_use() const noexcept { return in_use_; }

private:
    struct Flow {
        FlowKey key;
        std::uint64_t expires;
        std::uint64_t generation;  ///< the table set that last judged it (a reload re-judges it)
        Rank rank;                 ///< the stateful permit that created it, in `generation`
        bool used;
        bool initiator_is_a;  ///< the first packet's source is key.a
        Ingress ingress;      ///< the port the first packet arrived on
        bool answered;        ///< the other end has sent (pf's single/multiple; TCP has its own states)
        TcpTrack tcp;
    };

    FlowTable() = default;
    /// One packet whose deciding entry keeps state. `pos`: its flow's position from the bulk
    /// lookup, or negative.
    void judge(const TableSet& t, rte_mbuf* pkt, const PacketMeta& m, Verdict& v, std::int32_t pos,
               const FlowKey& key, bool src_is_a, std::uint64_t now, StateCounts& counts) noexcept;
    /// An ICMP error that its filters dropped: passes when it quotes a tracked flow.
    void related(rte_mbuf* pkt, const PacketMeta& m, Verdict& v, std::uint64_t now, StateCounts& counts) noexcept;
    /// The live flow at `pos` with `key`, or null (an expired one is freed on the way).
    Flow* live(std::int32_t pos, const FlowKey& key, std::uint64_t now, StateCounts& counts) noexcept;
    std::int32_t find(const FlowKey& key) const noexcept;
    void erase(unsigned pos) noexcept;
    std::uint64_t ticks(unsigned seconds) const noexcept { return hz_ * seconds; }

    rte_hash* hash_ = nullptr;
    std::unique_ptr<Flow[]> flows_;
    unsigned capacity_ = 0;
    unsigned in_use_ = 0;
    unsigned cursor_ = 0;
    std::uint64_t hz_ = 0;
};

}  // namespace moat::dp
