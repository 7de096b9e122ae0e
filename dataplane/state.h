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
// to one worker), of fixed capacity: an array of flows and a hash index over them (see
// FlowTable). A full table drops new flows and counts them; flows expire by pf's timeouts and are
// swept a few at a time. A flow remembers the generation that created it: after a reload its next packet asks the
// new policy whether it would create the flow, and the flow is cut when not.
#pragma once

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
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
/// other protocols. 48 bytes (twelve 32-bit words for the hash, three 16-byte compares); flow_key
/// zeroes the padding, which is hashed. No member initializers: a burst's array of keys is not
/// cleared before it is filled.
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
/// The same, written into `key` (the burst's array: no copy).
void flow_key(const FlowTuple& t, FlowKey& key, bool& src_is_a) noexcept;

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

/// A worker's flows: an array of `capacity` flows (128 bytes each, two cache lines: the key and
/// the times in the first, the TCP tracking in the second) and a hash index over them.
///
/// Why not rte_hash: the state stage must cost a packet a few tens of cycles at a million flows,
/// and rte_hash (extendable, 48-byte keys) cost about 70 cycles a key with everything in the
/// cache, before the flow's own cache lines were touched. Here a burst is looked up in three
/// passes that overlap the memory latency of its packets (hash and prefetch every packet's
/// bucket; match signatures and prefetch every candidate flow; then judge), and the key is
/// hashed once. The hash is keyed with a random key per table (NH, UMAC's universal hash, then
/// a 64-bit finalizer), so that nobody can aim flows at one bucket: with CRC32 (rte_hash's),
/// keys that collide are computed offline, whatever the seed, since CRC is linear.
///
/// Index: a power-of-two number of 64-byte buckets (capacity / 4 to capacity / 2, so that a
/// bucket holds two to four flows on average when the table is full), each with 7 slots of a 32-bit signature
/// and a flow number, and a chain of overflow buckets from a pool. A chain is kept dense (every
/// bucket but its last is full; a removal moves the chain's last slot into the hole), so the
/// pool of capacity / 7 + 1 buckets always suffices: exactly `capacity` flows fit, whatever
/// they hash to.
class FlowTable {
public:
    /// A table for `entries` flows (at least 8) in DPDK memory on `socket`. nullptr and `error`
    /// set when it cannot be had. `buckets`: the index's bucket count (a power of two), 0 for the
    /// default; tests give 1 to put every flow into one chain. Control thread or the worker
    /// before its loop.
    static std::unique_ptr<FlowTable> create(unsigned entries, int socket, std::string& error, unsigned buckets = 0);
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
    /// Overflow buckets in use (for tests: the pool's bound holds).
    unsigned overflow_buckets() const noexcept { return ext_count_ - ext_free_; }

private:
    /// A flow: what every packet of it reads in its first cache line (its key, times, filter and
    /// sides), the TCP tracking in the second (a UDP or ICMP packet touches one line of it).
    struct alignas(64) Flow {
        Addr a;
        Addr b;
        std::uint64_t tail;        ///< the key's ports, family and proto: FlowKey's fifth 64-bit word
        std::uint64_t expires;
        std::uint64_t generation;  ///< the table set that last judged it (a reload re-judges it)
        Rank rank;                 ///< the stateful permit that created it, in `generation`
        bool used;
        bool initiator_is_a;  ///< the first packet's source is key.a
        Ingress ingress;      ///< the port the first packet arrived on
        bool answered;        ///< the other end has sent (pf's single/multiple; TCP has its own states)
        TcpTrack tcp;

        static std::uint64_t tail_of(const FlowKey& k) noexcept {
            std::uint64_t t;
            std::memcpy(&t, &k.port_a, sizeof t);
            return t;
        }
        bool matches(const FlowKey& k) const noexcept { return tail == tail_of(k) && a == k.a && b == k.b; }
        FlowKey key() const noexcept {
            FlowKey k;
            k.a = a;
            k.b = b;
            std::memcpy(&k.port_a, &tail, sizeof tail);
            std::memset(k.pad + 2, 0, sizeof k.pad - 2);
            return k;
        }
        void set_key(const FlowKey& k) noexcept {
            a = k.a;
            b = k.b;
            tail = tail_of(k);
        }
    };
    static_assert(offsetof(Flow, tcp) == 64, "what every packet reads is in the first line");
    static_assert(sizeof(Flow) == 128, "two cache lines a flow");

    static constexpr unsigned kSlots = 7;
    struct alignas(64) Bucket {
        std::uint32_t sig[kSlots];   ///< 0: empty (a chain's slots are filled from its front)
        std::uint32_t next;          ///< the next overflow bucket of the chain, plus one; 0: none
        std::uint32_t flow[kSlots];  ///< the flow's position in `flows_`
        std::uint32_t pad;
    };
    static_assert(sizeof(Bucket) == 64);

    FlowTable() = default;
    /// One packet whose deciding entry keeps state. `pos`: its flow's candidate position from the
    /// burst's lookup, or negative; `h` its key's hash.
    void judge(const TableSet& t, rte_mbuf* pkt, const PacketMeta& m, Verdict& v, std::int32_t pos,
               const FlowKey& key, std::uint64_t h, bool src_is_a, std::uint64_t now, StateCounts& counts) noexcept;
    /// An ICMP error that its filters dropped: passes when it quotes a tracked flow.
    void related(rte_mbuf* pkt, const PacketMeta& m, Verdict& v, std::uint64_t now, StateCounts& counts) noexcept;
    /// The live flow at `pos` with `key`, or null (an expired one is freed on the way).
    Flow* live(std::int32_t pos, const FlowKey& key, std::uint64_t now, StateCounts& counts) noexcept;

    std::uint64_t hash(const FlowKey& key) const noexcept;
    static std::uint32_t signature(std::uint64_t h) noexcept { return static_cast<std::uint32_t>(h >> 32) | 1u; }
    Bucket& home(std::uint64_t h) const noexcept { return buckets_[h & bucket_mask_]; }
    Bucket& overflow(std::uint32_t next) const noexcept { return ext_[next - 1]; }
    /// The position of the flow with `key` (hash `h`), or -1.
    std::int32_t find(const FlowKey& key, std::uint64_t h) const noexcept;
    /// The first flow of `h`'s home bucket whose signature matches, or -1: a candidate to
    /// prefetch, not an answer.
    std::int32_t candidate(std::uint64_t h) const noexcept;
    /// Puts flow `pos` into `h`'s chain; false when no overflow bucket is left (cannot happen).
    bool index(std::uint64_t h, std::uint32_t pos) noexcept;
    /// Takes flow `pos` out of `h`'s chain, keeping the chain dense.
    void unindex(std::uint64_t h, std::uint32_t pos) noexcept;
    void erase(unsigned pos) noexcept;
    std::uint64_t ticks(unsigned seconds) const noexcept { return hz_ * seconds; }

    Flow* flows_ = nullptr;               ///< capacity_ flows
    std::uint32_t* free_ = nullptr;       ///< a stack of unused positions in flows_
    Bucket* buckets_ = nullptr;           ///< bucket_mask_ + 1 home buckets
    Bucket* ext_ = nullptr;               ///< ext_count_ overflow buckets
    std::uint32_t* ext_stack_ = nullptr;  ///< a stack of unused overflow buckets
    std::uint32_t hash_key_[12] = {};     ///< NH's key: random per table
    std::uint64_t bucket_mask_ = 0;
    unsigned capacity_ = 0;
    unsigned in_use_ = 0;
    unsigned ext_count_ = 0;
    unsigned ext_free_ = 0;
    unsigned cursor_ = 0;
    std::uint64_t hz_ = 0;
};

}  // namespace moat::dp
