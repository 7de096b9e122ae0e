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
// to one worker), of fixed capacity: an open-addressed hash table of flows (see FlowTable). A full table drops new flows and counts them; flows expire by pf's timeouts and are
// swept a few at a time. A flow remembers the generation that created it: after a reload its next packet asks the
// new policy whether it would create the flow, and the flow is cut when not.
#pragma once

#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

#include <array>
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
/// other protocols. 48 bytes (the hash reads the first five 64-bit words: its last is the ports,
/// family, proto and two bytes of padding); flow_key zeroes the padding. No member initializers: a burst's array of keys is not
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

/// A worker's flows: an open-addressed table of one-cache-line slots (a flow's key, times, filter
/// and sides: all that a UDP or ICMP packet reads) and an array of TCP tracking, one line a flow,
/// that TCP packets read too.
///
/// Why not rte_hash, nor a bucket index over an array of flows (this table's first form): the
/// state stage must cost a packet a few tens of cycles at a million flows, where each random
/// cache line costs 20-30 cycles even with all of a burst's misses in flight. rte_hash (48-byte
/// keys) cost about 70 cycles a key in the cache, before the flow's own line; an index of buckets
/// put two dependent misses on every packet (its bucket, then its flow). Here a packet's key
/// leads straight to its slot, which holds the flow: one miss, which the worker starts before
/// the classifier runs (prepare) so that the two overlap.
///
/// Slots: a power of two of them, 2 to 4 times `capacity` (at most half in use), probed
/// linearly from the key's home slot; a removal shifts the flows after it back (Knuth's
/// Algorithm R), so that a lookup stops at the first empty slot and no tombstones build up.
/// Exactly `capacity` flows fit whatever they hash to. The hash is keyed with a random key per
/// table (NH, UMAC's universal hash, then a 64-bit finalizer), so that nobody can aim flows at
/// one run of slots: with CRC32 (rte_hash's), keys that collide are computed offline, whatever
/// the seed, since CRC is linear.
class FlowTable {
public:
    /// A table for `entries` flows (at least 8) in DPDK memory on `socket`. nullptr and `error`
    /// set when it cannot be had. `home_slots`: how many slots a key's home can be (a power of
    /// two, at most the slot count), 0 for all of them; tests give 1 to put every flow into one
    /// run of slots. Control thread or the worker before its loop.
    static std::unique_ptr<FlowTable> create(unsigned entries, int socket, std::string& error,
                                             std::uint64_t home_slots = 0);
    ~FlowTable();
    FlowTable(const FlowTable&) = delete;
    FlowTable& operator=(const FlowTable&) = delete;

    /// Before the classifier (optional, for speed): computes the flow keys of a parsed burst's
    /// packets (up to its first 64) and starts loading their slots, so that the memory latency
    /// overlaps the classifier's work; skipped while the last burst was mostly of packets whose
    /// filters keep no state. settle takes them when it is given the same burst next (the same
    /// arrays and mbufs); the caller must not parse other packets into these arrays in between
    /// without calling settle. Worker only.
    void prepare(std::span<rte_mbuf* const> pkts, std::span<const PacketMeta> meta) noexcept;

    /// The state stage of a classified burst (after payload scans, before fragments settle):
    /// every packet whose deciding entry keeps state is passed or dropped (DropReason::state) by
    /// its flow, creating flows where a stateful permit allows; an ICMP error that quotes a
    /// tracked flow passes. Worker only; `now` in TSC cycles.
    void settle(const TableSet& t, std::span<rte_mbuf* const> pkts, std::span<const PacketMeta> meta,
                std::span<Verdict> verdicts, std::uint64_t now, StateCounts& counts) noexcept;

    /// Looks at `n` slots, continuing where the last call stopped, and frees the expired flows
    /// there (slots(): the whole table; slots() / capacity(), 2 to 4, a flow). Worker only.
    void sweep(std::uint64_t now, unsigned n, StateCounts& counts) noexcept;

    /// One step of listing `want` into `l` (see StateListing): up to `slots` positions from where
    /// the last step stopped. Worker only; `now` in TSC cycles.
    void list(StateListing& l, std::uint32_t want, std::uint64_t now, unsigned worker, unsigned slots) noexcept;

    unsigned capacity() const noexcept { return capacity_; }
    unsigned in_use() const noexcept { return in_use_; }
    /// The table's slots (the positions a listing walks).
    std::uint64_t slots() const noexcept { return slot_mask_ + 1; }
    /// The flows in slots 0, 1, ... up to the first empty slot (for tests: in a table of one home
    /// slot, every flow lies there, without a hole, whatever came and went).
    unsigned run_at_slot_zero() const noexcept;

private:
    /// A flow's slot: its key, times, filter and sides, in one cache line.
    struct alignas(64) Flow {
        Addr a;
        Addr b;
        /// FlowKey's fifth 64-bit word (ports, family, proto and two bytes of padding), with the
        /// flow's flags in its top byte; 0: an empty slot.
        std::uint64_t tail;
        std::uint64_t expires;
        std::uint64_t generation;  ///< the table set that last judged it (a reload re-judges it)
        Rank rank;                 ///< the stateful permit that created it, in `generation`
        std::uint32_t track;       ///< its TCP tracking's position in tracks_

        static constexpr std::uint64_t kKeyBits = (std::uint64_t{1} << 48) - 1;
        static constexpr std::uint64_t kUsed = std::uint64_t{1} << 56;
        static constexpr std::uint64_t kInitiatorIsA = std::uint64_t{1} << 57;  ///< the first packet's source is key.a
        static constexpr std::uint64_t kInside = std::uint64_t{1} << 58;  ///< the first packet arrived on the inside port
        static constexpr std::uint64_t kAnswered = std::uint64_t{1} << 59;  ///< the other end has sent (pf's single/multiple)

        static std::uint64_t tail_of(const FlowKey& k) noexcept {
            std::uint64_t t;
            std::memcpy(&t, &k.port_a, sizeof t);
            return t;
        }
        bool used() const noexcept { return tail != 0; }
        bool has(std::uint64_t flag) const noexcept { return (tail & flag) != 0; }
        bool initiator_is_a() const noexcept { return has(kInitiatorIsA); }
        Ingress ingress() const noexcept { return has(kInside) ? Ingress::inside : Ingress::outside; }
        bool matches(const FlowKey& k) const noexcept {
            return ((tail ^ tail_of(k)) & kKeyBits) == 0 && a == k.a && b == k.b;
        }
        FlowKey key() const noexcept {
            FlowKey k;
            k.a = a;
            k.b = b;
            const std::uint64_t t = tail & kKeyBits;
            std::memcpy(&k.port_a, &t, sizeof t);
            std::memset(k.pad + 2, 0, sizeof k.pad - 2);
            return k;
        }
    };
    static_assert(sizeof(Flow) == 64, "one cache line a flow");

    /// A flow's TCP tracking, a cache line of its own.
    struct alignas(64) Track {
        TcpTrack tcp;
    };

    /// A burst's flow keys from prepare (or settle itself), by packet.
    static constexpr std::size_t kChunk = 64;
    enum class Keyed : std::uint8_t { no, yes, no_tuple };
    struct Prepared {
        const PacketMeta* meta = nullptr;  ///< the burst's first packet; null: nothing prepared
        std::size_t n = 0;
        std::array<const rte_mbuf*, kChunk> mbufs;  ///< the burst's packets, to know it again
        std::array<Keyed, kChunk> keyed;
        std::array<FlowKey, kChunk> keys;
        std::array<std::uint64_t, kChunk> hashes;
        std::array<bool, kChunk> src_is_a;
    };

    FlowTable() = default;
    /// What no verdict can make stateful: a parse drop, a bypass, a later fragment.
    static bool keyable(const PacketMeta& m) noexcept {
        return m.drop == DropReason::none && !m.bypass && !(m.frag.present && m.frag.begin != 0);
    }
    /// Packet `i` of the burst's chunk: its key, hash and side into burst_, or Keyed::no_tuple
    /// when it has no flow of its own (an ICMP message other than echo).
    void key_packet(const rte_mbuf* pkt, const PacketMeta& m, std::size_t i) noexcept;
    /// Starts loading the home slots of the keyed packets among the chunk's first `n`.
    void prefetch_keyed(std::size_t n) const noexcept;
    /// A packet of the live flow `f` found in its home slot: passes it and renews the flow's
    /// times when nothing else is to be done (see judge); false: judge must.
    bool pass(Flow& f, const PacketMeta& m, bool src_is_a, std::uint64_t generation, std::uint64_t now) noexcept;
    /// Renews the expiry of the live UDP, ICMP echo or other flow `f` for a packet of protocol
    /// `proto`, sent by its initiator or (`answer`) by the other end.
    void renew(Flow& f, std::uint8_t proto, bool answer, std::uint64_t now) noexcept;
    /// True when prepare's keys are of this chunk of a burst.
    bool prepared(std::span<rte_mbuf* const> pkts, std::span<const PacketMeta> meta) const noexcept;
    /// One packet whose deciding entry keeps state. `pos`: its flow's slot from the burst's
    /// lookup, or negative; `h` its key's hash.
    void judge(const TableSet& t, rte_mbuf* pkt, const PacketMeta& m, Verdict& v, std::int64_t pos,
               const FlowKey& key, std::uint64_t h, bool src_is_a, std::uint64_t now, StateCounts& counts) noexcept;
    /// An ICMP error that its filters dropped: passes when it quotes a flow tracked in this
    /// generation `ts` (one from before a reload waits for its next packet to re-judge it).
    void related(const TableSet& ts, rte_mbuf* pkt, const PacketMeta& m, Verdict& v, std::uint64_t now,
                 StateCounts& counts) noexcept;
    /// The live flow in slot `pos` with `key`, or null (an expired one is freed on the way).
    Flow* live(std::int64_t pos, const FlowKey& key, std::uint64_t now, StateCounts& counts) noexcept;

    std::uint64_t hash(const FlowKey& key) const noexcept;
    std::uint64_t home(std::uint64_t h) const noexcept { return h & home_mask_; }
    /// The slot of the flow with `key` (hash `h`), or -1.
    std::int64_t find(const FlowKey& key, std::uint64_t h) const noexcept { return find_from(key, home(h)); }
    /// The same, probing from slot `from` (its home or a slot of its run after it).
    std::int64_t find_from(const FlowKey& key, std::uint64_t from) const noexcept;
    TcpTrack& tcp_of(const Flow& f) const noexcept { return tracks_[f.track].tcp; }
    /// Frees slot `pos`, shifting the flows after it back where their lookups need them.
    void erase(std::uint64_t pos) noexcept;
    std::uint64_t ticks(unsigned seconds) const noexcept { return hz_ * seconds; }

    Flow* slots_ = nullptr;          ///< slot_mask_ + 1 slots
    Track* tracks_ = nullptr;        ///< capacity_ TCP trackings
    std::uint32_t* free_ = nullptr;  ///< a stack of unused positions in tracks_
    std::uint32_t hash_key_[10] = {};  ///< NH's key: random per table
    std::uint64_t v4_terms_ = 0;       ///< NH's terms of an IPv4 key's zero words
    std::uint64_t slot_mask_ = 0;
    std::uint64_t home_mask_ = 0;
    unsigned capacity_ = 0;
    unsigned in_use_ = 0;
    std::uint64_t cursor_ = 0;
    std::uint64_t hz_ = 0;
    std::uint64_t changes_ = 0;    ///< flows made and freed so far
    std::uint64_t looked_up_ = 0;  ///< changes_ when the burst's lookups were made
    unsigned stateful_ = 0;        ///< the last chunk's packets of stateful filters
    unsigned keyable_ = 0;         ///< and those of any filter (see keyable)
    Prepared burst_;
};

}  // namespace moat::dp
