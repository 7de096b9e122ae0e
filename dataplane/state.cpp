#include "dataplane/state.h"

#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_prefetch.h>
#include <rte_random.h>

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <bit>
#include <atomic>
#include <cstddef>
#include <cstring>

namespace moat::dp {

namespace {

constexpr std::int64_t kMaxAckWindow = 0xffff + 1500;  ///< pf's MAXACKWINDOW

constexpr bool seq_geq(std::uint32_t a, std::uint32_t b) noexcept { return static_cast<std::int32_t>(a - b) >= 0; }
constexpr bool seq_gt(std::uint32_t a, std::uint32_t b) noexcept { return static_cast<std::int32_t>(a - b) > 0; }

std::uint16_t be16(const std::uint8_t* p) noexcept { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
std::uint32_t be32(const std::uint8_t* p) noexcept {
    return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

/// The timeout of a connection in these states (pf_tcp_track_full's choice).
unsigned tcp_timeout(TcpState src, TcpState dst) noexcept {
    using S = TcpState;
    if (src >= S::fin_wait_2 && dst >= S::fin_wait_2)
        return StateTimeouts::tcp_closed;
    if (src >= S::closing && dst >= S::closing)
        return StateTimeouts::tcp_finwait;
    if (src < S::established || dst < S::established)
        return StateTimeouts::tcp_opening;
    if (src >= S::closing || dst >= S::closing)
        return StateTimeouts::tcp_closing;
    return StateTimeouts::tcp_established;
}

/// The segment length in sequence space: payload, plus one each for SYN and FIN.
std::uint32_t seq_len(const TcpSegment& s) noexcept {
    return s.len + ((s.flags & kTcpSyn) ? 1u : 0u) + ((s.flags & kTcpFin) ? 1u : 0u);
}

constexpr bool is_icmp_error(Family f, std::uint8_t type) noexcept {
    return f == Family::ipv4 ? (type == 3 || type == 11 || type == 12) : (type >= 1 && type <= 4);
}

/// Echo request and reply types of a family.
constexpr std::uint8_t echo_request(Family f) noexcept { return f == Family::ipv4 ? 8 : 128; }
constexpr std::uint8_t echo_reply(Family f) noexcept { return f == Family::ipv4 ? 0 : 129; }

/// The ports an ICMP message of `type` with identifier `id` has in a flow key: (id, 0) for an
/// echo request, (0, id) for a reply; false for every other type (no flow of its own).
bool echo_ports(Family f, std::uint8_t type, std::uint16_t id, std::uint16_t& sport, std::uint16_t& dport) noexcept {
    if (type == echo_request(f)) {
        sport = id;
        dport = 0;
        return true;
    }
    if (type == echo_reply(f)) {
        sport = 0;
        dport = id;
        return true;
    }
    return false;
}

/// Reads the TCP header of a packet into `s`; false when it is not all in the frame.
bool read_tcp(const rte_mbuf* pkt, const PacketMeta& m, TcpSegment& s) noexcept {
    std::array<std::uint8_t, 60> buf;
    const std::uint32_t avail = pkt->pkt_len > m.l4_offset ? pkt->pkt_len - m.l4_offset : 0;
    const std::uint32_t hdr = m.payload_offset > m.l4_offset ? m.payload_offset - m.l4_offset : 0;
    if (hdr < 20 || hdr > 60 || hdr > avail)
        return false;
    const auto* h = static_cast<const std::uint8_t*>(rte_pktmbuf_read(pkt, m.l4_offset, hdr, buf.data()));
    if (!h)
        return false;
    s.seq = be32(h + 4);
    s.ack = be32(h + 8);
    s.flags = h[13];
    s.win = be16(h + 14);
    s.len = m.payload_length;
    s.wscale = -1;
    if (s.flags & kTcpSyn) {
        for (std::uint32_t i = 20; i < hdr;) {  // RFC 9293 options: EOL, NOP, kind-length-value
            const std::uint8_t kind = h[i];
            if (kind == 0)
                break;
            if (kind == 1) {
                ++i;
                continue;
            }
            if (i + 1 >= hdr || h[i + 1] < 2 || i + h[i + 1] > hdr)
                break;
            if (kind == 3 && h[i + 1] == 3)
                s.wscale = static_cast<std::int8_t>(std::min<std::uint8_t>(h[i + 2], 14));  // RFC 7323: at most 14
            i += h[i + 1];
        }
    }
    return true;
}

/// The ICMP identifier of an echo packet (bytes 4-5 of the ICMP header).
bool read_icmp_id(const rte_mbuf* pkt, const PacketMeta& m, std::uint16_t& id) noexcept {
    std::array<std::uint8_t, 8> buf;
    if (pkt->pkt_len < std::uint32_t{m.l4_offset} + 8u)
        return false;
    const auto* h = static_cast<const std::uint8_t*>(rte_pktmbuf_read(pkt, m.l4_offset, 8, buf.data()));
    if (!h)
        return false;
    id = be16(h + 4);
    return true;
}

/// The flow ports of an ICMP message (see echo_ports) as sport | dport << 16; -1 when it has none.
/// Out of the keying loop (it reads the packet), and by value: ports whose address is taken
/// live on the stack on the common path too.
[[gnu::noinline]] std::int64_t icmp_ports(const rte_mbuf* pkt, const PacketMeta& m) noexcept {
    std::uint16_t id = 0, sport = 0, dport = 0;
    if (!read_icmp_id(pkt, m, id) || !echo_ports(m.key.family, m.key.icmp_type, id, sport, dport))
        return -1;
    return std::int64_t{sport} | std::int64_t{dport} << 16;
}

}  // namespace

unsigned tcp_start(TcpTrack& t, const TcpSegment& s) noexcept {
    TcpPeer& src = t.peer[0];
    TcpPeer& dst = t.peer[1];
    src = TcpPeer{};
    dst = TcpPeer{};
    src.seen = true;
    src.seqlo = s.seq;
    src.seqhi = s.seq + seq_len(s) + 1;
    src.isn = s.seq;
    src.syn_end = s.seq + seq_len(s);
    src.wscale = s.wscale;
    src.max_win = std::max<std::uint32_t>(s.win, 1);
    if (src.wscale > 0)  // a SYN's window is never scaled: keep it in the scaled unit
        src.max_win = (src.max_win + (1u << src.wscale) - 1) >> src.wscale;
    dst.seqhi = 1;
    dst.max_win = 1;
    src.state = TcpState::syn_sent;
    dst.state = TcpState::closed;
    return StateTimeouts::tcp_first;
}

bool tcp_closed(const TcpTrack& t) noexcept {
    return t.peer[0].state >= TcpState::fin_wait_2 && t.peer[1].state >= TcpState::fin_wait_2;
}

unsigned tcp_track(TcpTrack& track, unsigned from, const TcpSegment& s) noexcept {
    TcpTrack t = track;  // changed only when the segment passes
    TcpPeer& src = t.peer[from & 1];
    TcpPeer& dst = t.peer[(from & 1) ^ 1];
    const bool syn = s.flags & kTcpSyn;
    unsigned sws = 0, dws = 0;
    if (src.wscale >= 0 && dst.wscale >= 0 && !syn) {
        sws = static_cast<unsigned>(src.wscale);
        dws = static_cast<unsigned>(dst.wscale);
    }
    std::uint32_t win = s.win;
    std::uint32_t seq = s.seq;
    std::uint32_t ack = s.ack;
    std::uint32_t end = seq + seq_len(s);
    if (!src.seen) {
        // The first packet from the other end answers the SYN: a SYN-ACK or a RST-ACK that
        // acknowledges it (RFC 9293). Anything else would set this end's sequence numbers from a
        // packet a blind attacker chose, and the real SYN-ACK would then be out of window.
        const std::uint8_t first = s.flags & kTcpFirst;
        if ((first != (kTcpSyn | kTcpAck) && first != (kTcpRst | kTcpAck)) || !seq_gt(ack, dst.isn) ||
            seq_gt(ack, dst.syn_end))
            return 0;  // (an answer acknowledges the SYN, ISN + 1, and at most the data it carried)
        if (syn && dst.wscale >= 0) {
            src.wscale = s.wscale;
            if (src.wscale >= 0) {
                sws = static_cast<unsigned>(src.wscale);
                win = (win + (1u << sws) - 1) >> sws;
                dws = static_cast<unsigned>(dst.wscale);
            } else {  // the other end's offer was refused: its window was never scaled
                dst.max_win = std::min<std::uint32_t>(0xffff, dst.max_win << dst.wscale);
                dst.wscale = -1;
            }
        }
        src.seen = true;
        src.seqlo = seq;
        if (src.state < TcpState::syn_sent)
            src.state = TcpState::syn_sent;
        const std::uint32_t hi = end + std::max<std::uint32_t>(1, dst.max_win << dws);
        if (src.seqhi == 1 || seq_geq(hi, src.seqhi))  // 1: tcp_start's "not yet known"
            src.seqhi = hi;
        src.max_win = std::max(src.max_win, win);
    }
    if (!(s.flags & kTcpAck))
        ack = dst.seqlo;  // nothing acknowledged: let it through the ack check
    else if ((ack == 0 && (s.flags & (kTcpAck | kTcpRst)) == (kTcpAck | kTcpRst)) || dst.state < TcpState::syn_sent)
        ack = dst.seqlo;  // stacks that do not set the ack of a RST, or a peer not heard yet
    const std::uint32_t orig_seq = seq;
    if (seq == end) {  // no data: ease the sequence check
        seq = src.seqlo;
        end = seq;
    }
    const std::int64_t ackskew = static_cast<std::int32_t>(dst.seqlo - ack);
    const std::uint32_t back = dst.max_win << dws;
    const bool in_window =
        seq_geq(src.seqhi, end) &&                                 // the last byte within the peer's window
        seq_geq(seq, src.seqlo - back) &&                          // a retransmission at most one window back
        ackskew >= -kMaxAckWindow &&                               // acking at most one window ahead
        ackskew <= (kMaxAckWindow << sws) &&                       // or back
        (!(s.flags & kTcpRst) || orig_seq == src.seqlo || orig_seq == src.seqlo + 1 || orig_seq + 1 == src.seqlo);
    const bool loose = !in_window &&
                       (dst.state < TcpState::syn_sent || dst.state >= TcpState::fin_wait_2 ||
                        src.state >= TcpState::fin_wait_2) &&
                       seq_geq(src.seqhi + static_cast<std::uint32_t>(kMaxAckWindow), end) &&
                       seq_geq(seq, src.seqlo - static_cast<std::uint32_t>(kMaxAckWindow)) && !(s.flags & kTcpRst);
    if (!in_window && !loose)
        return 0;
    src.max_win = std::max(src.max_win, win);
    if (seq_gt(end, src.seqlo))
        src.seqlo = end;
    if ((s.flags & kTcpAck) && seq_geq(ack + (win << sws), dst.seqhi))
        dst.seqhi = ack + std::max<std::uint32_t>(win << sws, 1);
    if (syn && src.state < TcpState::syn_sent)
        src.state = TcpState::syn_sent;
    if ((s.flags & kTcpFin) && src.state < TcpState::closing)
        src.state = TcpState::closing;
    if (in_window && (s.flags & kTcpAck)) {
        if (dst.state == TcpState::syn_sent)
            dst.state = TcpState::established;
        else if (dst.state == TcpState::closing)
            dst.state = TcpState::fin_wait_2;
    }
    if (s.flags & kTcpRst)
        src.state = dst.state = TcpState::time_wait;
    track = t;
    return tcp_timeout(src.state, dst.state);
}

namespace {

/// A flow key's five hashed words (its sixth is always 0), built in registers (see key_words
/// and store_key).
struct KeyWords {
    std::uint64_t a0, a1, b0, b1, tail;
};

/// Which of two values `mask` picks: `x` where it is all ones, `y` where 0 (no branch).
constexpr std::uint64_t pick(std::uint64_t mask, std::uint64_t x, std::uint64_t y) noexcept { return y ^ ((x ^ y) & mask); }

/// The key of the flow between (src, sport) and (dst, dport), and whether src is its first
/// endpoint, in an order of the endpoints of its own: the addresses as two 64-bit words, then
/// the port. key_words_v4 must give an IPv4 tuple the same key (packets are keyed by it, the
/// packets that ICMP errors quote by this). Without branches: which endpoint is lower is a coin toss from packet to packet, and
/// a mispredicted branch here cost more than the rest of the key.
[[gnu::always_inline]] inline KeyWords key_words(const Addr& src, const Addr& dst, std::uint16_t sport, std::uint16_t dport,
                                                 Family family, std::uint8_t proto, bool& src_is_a) noexcept {
    std::uint64_t s0, s1, d0, d1;
    std::memcpy(&s0, src.bytes.data(), 8);
    std::memcpy(&s1, src.bytes.data() + 8, 8);
    std::memcpy(&d0, dst.bytes.data(), 8);
    std::memcpy(&d1, dst.bytes.data() + 8, 8);
    const bool lt = (s0 < d0) | ((s0 == d0) & ((s1 < d1) | ((s1 == d1) & (sport <= dport))));
    src_is_a = lt;
    const std::uint64_t mask = std::uint64_t{0} - std::uint64_t{lt};  // all ones: src first
    const std::uint64_t ports = std::uint64_t{sport} | std::uint64_t{dport} << 16;
    const std::uint64_t swapped = std::uint64_t{dport} | std::uint64_t{sport} << 16;
    return KeyWords{pick(mask, s0, d0), pick(mask, s1, d1), pick(mask, d0, s0), pick(mask, d1, s1),
                    pick(mask, ports, swapped) | std::uint64_t{static_cast<std::uint8_t>(family)} << 32 |
                        std::uint64_t{proto} << 40};
}

/// key_words of an IPv4 packet, whose addresses are the first four bytes of their Addr and the
/// rest zero: its key's second words are 0, and the order the same (the first words decide,
/// else the ports).
[[gnu::always_inline]] inline KeyWords key_words_v4(const Addr& src, const Addr& dst, std::uint16_t sport,
                                                    std::uint16_t dport, std::uint8_t proto, bool& src_is_a) noexcept {
    std::uint32_t s, d;
    std::memcpy(&s, src.bytes.data(), 4);
    std::memcpy(&d, dst.bytes.data(), 4);
    const bool lt = (s < d) | ((s == d) & (sport <= dport));
    src_is_a = lt;
    const std::uint64_t mask = std::uint64_t{0} - std::uint64_t{lt};
    const std::uint64_t ports = std::uint64_t{sport} | std::uint64_t{dport} << 16;
    const std::uint64_t swapped = std::uint64_t{dport} | std::uint64_t{sport} << 16;
    return KeyWords{pick(mask, s, d), 0, pick(mask, d, s), 0,
                    pick(mask, ports, swapped) | std::uint64_t{static_cast<std::uint8_t>(Family::ipv4)} << 32 |
                        std::uint64_t{proto} << 40};
}

/// Writes `k` as a FlowKey: in 64-bit words, since the hash reads it back at once, and a load
/// that spans several narrower stores waits for them to retire (that stall was once most of the
/// state stage's cost).
[[gnu::always_inline]] inline void store_key(const KeyWords& k, FlowKey& key) noexcept {
    static_assert(sizeof(FlowKey) == 48, "no implicit padding: every byte of the key is hashed");
    static_assert(offsetof(FlowKey, port_a) == 32 && offsetof(FlowKey, port_b) == 34 && offsetof(FlowKey, family) == 36 &&
                  offsetof(FlowKey, proto) == 37 && std::endian::native == std::endian::little);
    const std::uint64_t zero = 0;
    auto* out = reinterpret_cast<std::uint8_t*>(&key);  // (an array of words here: GCC assembled it on the stack)
    std::memcpy(out, &k.a0, 8);
    std::memcpy(out + 8, &k.a1, 8);
    std::memcpy(out + 16, &k.b0, 8);
    std::memcpy(out + 24, &k.b1, 8);
    std::memcpy(out + 32, &k.tail, 8);
    std::memcpy(out + 40, &zero, 8);
}

/// One of NH's terms: a 64-bit word and two 32-bit words of the secret.
[[gnu::always_inline]] inline std::uint64_t nh(std::uint64_t w, std::uint32_t k0, std::uint32_t k1) noexcept {
    return std::uint64_t{static_cast<std::uint32_t>(w) + k0} * std::uint64_t{static_cast<std::uint32_t>(w >> 32) + k1};
}

/// murmur3's 64-bit finalizer: every bit of the result depends on every bit of `h`.
[[gnu::always_inline]] inline std::uint64_t fmix64(std::uint64_t h) noexcept {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

}  // namespace

FlowKey flow_key(const FlowTuple& t, bool& src_is_a) noexcept {
    FlowKey k;
    store_key(key_words(t.src, t.dst, t.sport, t.dport, t.family, t.proto, src_is_a), k);
    return k;
}

std::unique_ptr<FlowTable> FlowTable::create(unsigned entries, int socket, std::string& error,
                                             std::uint64_t home_slots) {
    std::unique_ptr<FlowTable> t(new FlowTable);
    t->capacity_ = std::max(entries, 8u);
    t->hz_ = rte_get_tsc_hz();
    // At most half the slots in use: a lookup of a missing key probes about 2.5 slots then, one
    // of a tracked flow 1.5 (linear probing). (At two thirds, misses that an outsider can send at
    // will, forged answers and new flows against a full table, walked runs of up to 100 slots.)
    const std::uint64_t slots = std::bit_ceil(std::uint64_t{t->capacity_} * 2);
    if (home_slots == 0)
        home_slots = slots;
    if (!std::has_single_bit(home_slots) || home_slots > slots) {
        error = "flow table: " + std::to_string(home_slots) + " home slots is not a power of two up to " +
                std::to_string(slots);
        return nullptr;
    }
    t->slot_mask_ = slots - 1;
    t->home_mask_ = home_slots - 1;
    t->slots_ = static_cast<Flow*>(rte_zmalloc_socket("moat_flows", sizeof(Flow) * slots, 64, socket));
    t->tracks_ = static_cast<Track*>(rte_malloc_socket("moat_flow_tcp", sizeof(Track) * t->capacity_, 64, socket));
    t->free_ = static_cast<std::uint32_t*>(rte_malloc_socket("moat_flows_free", 4ull * t->capacity_, 64, socket));
    if (!t->slots_ || !t->tracks_ || !t->free_) {
        const std::uint64_t bytes = sizeof(Flow) * slots + (sizeof(Track) + 4) * std::uint64_t{t->capacity_};
        error = "cannot create the flow table (" + std::to_string(t->capacity_) + " flows, " +
                std::to_string((bytes + (1 << 20) - 1) >> 20) + " MB of DPDK memory): lower state_table or give DPDK more memory";
        return nullptr;
    }
    for (unsigned i = 0; i < t->capacity_; ++i)  // popped from the back: position 0 first
        t->free_[i] = t->capacity_ - 1 - i;
    // The hash's key from the kernel's random source (rte_rand is seeded from one 64-bit value
    // and is no secret); rte_rand only if getrandom fails.
    if (getrandom(t->hash_key_, sizeof t->hash_key_, 0) != static_cast<ssize_t>(sizeof t->hash_key_))
        for (std::uint32_t& w : t->hash_key_)
            w = static_cast<std::uint32_t>(rte_rand());
    t->v4_terms_ = nh(0, t->hash_key_[2], t->hash_key_[3]) + nh(0, t->hash_key_[6], t->hash_key_[7]);
    return t;
}

FlowTable::~FlowTable() {
    rte_free(slots_);
    rte_free(tracks_);
    rte_free(free_);
}

std::uint64_t FlowTable::hash(const FlowKey& key) const noexcept {
    // NH (UMAC, RFC 4418): sum of products of key words plus secret words, almost universal
    // (two keys collide with probability 2^-32 over the secret), then murmur3's finalizer so
    // that the slot's bits depend on every word. Each 64-bit word of the key is NH's pair of
    // 32-bit words; the sixth, always 0, is left out.
    std::uint64_t w[5];
    std::memcpy(w, &key, sizeof w);  // in 64-bit words, as store_key wrote them
    std::uint64_t h = 0;
    for (unsigned i = 0; i < 5; ++i)
        h += nh(w[i], hash_key_[2 * i], hash_key_[2 * i + 1]);
    return fmix64(h);
}

namespace {

/// FlowTable::hash of an IPv4 key from its words in registers: its second words are 0, their
/// terms the table's constant `v4_terms`.
[[gnu::always_inline]] inline std::uint64_t hash_v4(const KeyWords& w, const std::uint32_t (&key)[10],
                                                    std::uint64_t v4_terms) noexcept {
    return fmix64(nh(w.a0, key[0], key[1]) + nh(w.b0, key[4], key[5]) + nh(w.tail, key[8], key[9]) + v4_terms);
}

}  // namespace

std::int64_t FlowTable::find_from(const FlowKey& key, std::uint64_t from) const noexcept {
    // A flow lies between its home slot and the first empty slot after it (erase keeps it so);
    // there is always an empty slot (at most half are in use).
    for (std::uint64_t i = from;; i = (i + 1) & slot_mask_) {
        const Flow& f = slots_[i];
        if (!f.used())
            return -1;
        if (f.matches(key))
            return static_cast<std::int64_t>(i);
    }
}

void FlowTable::erase(std::uint64_t pos) noexcept {
    free_[capacity_ - in_use_] = slots_[pos].track;
    --in_use_;
    ++changes_;
    // Knuth's Algorithm R: each flow after the hole, up to the next empty slot, whose home does
    // not lie after the hole (cyclically) would no longer be found past it, so it moves into
    // the hole, which moves on to where it was.
    std::uint64_t hole = pos;
    std::uint64_t j = pos;
    for (;;) {
        slots_[hole].tail = 0;
        for (;;) {
            j = (j + 1) & slot_mask_;
            if (!slots_[j].used())
                return;
            const std::uint64_t k = home(hash(slots_[j].key()));
            const bool stays = hole <= j ? (hole < k && k <= j) : (hole < k || k <= j);
            if (!stays)
                break;
        }
        slots_[hole] = slots_[j];
        hole = j;
    }
}

unsigned FlowTable::run_at_slot_zero() const noexcept {
    unsigned n = 0;
    while (n <= slot_mask_ && slots_[n].used())
        ++n;
    return n;
}

FlowTable::Flow* FlowTable::live(std::int64_t pos, const FlowKey& key, std::uint64_t now, StateCounts& counts) noexcept {
    if (pos < 0 || static_cast<std::uint64_t>(pos) > slot_mask_)
        return nullptr;
    Flow& f = slots_[pos];
    if (!f.used() || !f.matches(key))
        return nullptr;  // freed or moved earlier in this burst
    if (f.expires <= now) {
        erase(static_cast<std::uint64_t>(pos));
        ++counts.expired;
        return nullptr;
    }
    return &f;
}

[[gnu::always_inline]] inline void FlowTable::renew(Flow& f, std::uint8_t proto, bool answer, std::uint64_t now) noexcept {
    f.tail |= answer ? Flow::kAnswered : 0;
    const bool both = f.has(Flow::kAnswered);
    const unsigned timeout = proto_is_icmp(proto) ? StateTimeouts::icmp_reply
                             : proto == kProtoUdp ? (both ? StateTimeouts::udp_multiple : StateTimeouts::udp_single)
                                                  : (both ? StateTimeouts::other_multiple : StateTimeouts::other_single);
    f.expires = now + ticks(timeout);
}

void FlowTable::judge(const TableSet& t, rte_mbuf* pkt, const PacketMeta& m, Verdict& v, std::int64_t pos,
                      const FlowKey& key, std::uint64_t h, bool src_is_a, std::uint64_t now,
                      StateCounts& counts) noexcept {
    const StateMode mode = t.rules[v.rank].state;
    const bool tcp = m.key.proto == kProtoTcp;
    TcpSegment seg;
    if (tcp && !read_tcp(pkt, m, seg)) {
        v.drop = DropReason::state;
        return;
    }
    Flow* f = live(pos, key, now, counts);
    if (!f && changes_ != looked_up_)  // created, moved or freed since the burst's lookups
        f = live(find(key, h), key, now, counts);
    if (f && f->generation != t.generation) {
        // A reload since the flow's last packet: does the new policy still create it?
        const Flow& g = *f;
        const FlowKey gk = g.key();
        PacketKey k{};
        k.family = static_cast<Family>(gk.family);
        k.proto = gk.proto;
        k.src = g.initiator_is_a() ? gk.a : gk.b;
        k.dst = g.initiator_is_a() ? gk.b : gk.a;
        k.ingress = g.ingress();
        if (proto_has_ports(k.proto)) {
            k.has_ports = true;
            k.sport = g.initiator_is_a() ? gk.port_a : gk.port_b;
            k.dport = g.initiator_is_a() ? gk.port_b : gk.port_a;
        } else if (proto_is_icmp(k.proto)) {
            k.has_icmp = true;
            k.icmp_type = echo_request(k.family);
        }
        const Rank r = t.payload.empty() ? classify_key(t, k) : header_winner(t, k);
        if (r != kNoMatch && t.rules[r].action == Action::permit && t.rules[r].state == StateMode::create) {
            f->generation = t.generation;
            f->rank = r;
        } else {
            erase(static_cast<std::uint64_t>(f - slots_));
            ++counts.cut;
            f = nullptr;
        }
    }
    const unsigned from = f ? (src_is_a == f->initiator_is_a() ? 0u : 1u) : 0u;
    // A flow's packets arrive on its ports: the initiator's on the port its first packet came
    // in on, the answers on the other. A packet that claims a flow's addresses from the wrong
    // side of the wire is not of that flow.
    if (f && (m.key.ingress == f->ingress()) != (from == 0)) {
        v.drop = DropReason::state;
        return;
    }
    if (f && tcp && from == 0 && (seg.flags & kTcpFirst) == kTcpSyn && tcp_closed(tcp_of(*f))) {
        erase(static_cast<std::uint64_t>(f - slots_));  // a new connection on the ports of a closed one
        ++counts.expired;
        f = nullptr;
    }
    if (f) {
        if (tcp) {
            const unsigned timeout = tcp_track(tcp_of(*f), from, seg);
            if (timeout == 0) {
                v.drop = DropReason::state;
                return;
            }
            f->expires = now + ticks(timeout);
        } else {
            renew(*f, m.key.proto, from == 1, now);
        }
        v.drop = DropReason::none;
        return;
    }
    // No flow: only a stateful permit's first packet of a flow may start one.
    const bool starts = mode == StateMode::create &&
                        (tcp ? (seg.flags & kTcpFirst) == kTcpSyn
                             : !proto_is_icmp(m.key.proto) || m.key.icmp_type == echo_request(m.key.family));
    if (!starts) {
        v.drop = DropReason::state;
        return;
    }
    if (in_use_ == capacity_) {
        ++counts.full;
        v.drop = DropReason::state;
        return;
    }
    std::uint64_t at = home(h);  // the first empty slot from its home (find found none of its key)
    while (slots_[at].used())
        at = (at + 1) & slot_mask_;
    Flow& n = slots_[at];
    n.a = key.a;
    n.b = key.b;
    n.tail = (Flow::tail_of(key) & Flow::kKeyBits) | Flow::kUsed | (src_is_a ? Flow::kInitiatorIsA : 0) |
             (m.key.ingress == Ingress::inside ? Flow::kInside : 0);
    n.generation = t.generation;
    n.rank = v.rank;
    n.track = free_[capacity_ - in_use_ - 1];  // the free stack's top
    unsigned timeout = m.key.proto == kProtoUdp ? StateTimeouts::udp_first : StateTimeouts::other_first;
    if (tcp) {
        tcp_of(n) = TcpTrack{};
        timeout = tcp_start(tcp_of(n), seg);
    } else if (proto_is_icmp(m.key.proto)) {
        timeout = StateTimeouts::icmp_first;
    }
    n.expires = now + ticks(timeout);
    ++in_use_;
    ++changes_;
    ++counts.created;
    v.drop = DropReason::none;
}

void FlowTable::related(const TableSet& ts, rte_mbuf* pkt, const PacketMeta& m, Verdict& v, std::uint64_t now,
                        StateCounts& counts) noexcept {
    // The quoted packet: an IP header and at least 8 bytes of its transport header.
    const bool v4 = m.key.family == Family::ipv4;
    std::array<std::uint8_t, 68> buf;
    const std::uint32_t off = m.payload_offset;
    const std::uint32_t avail = std::min<std::uint32_t>(pkt->pkt_len > off ? pkt->pkt_len - off : 0, buf.size());
    if (avail < (v4 ? 28u : 48u))
        return;
    const auto* q = static_cast<const std::uint8_t*>(rte_pktmbuf_read(pkt, off, avail, buf.data()));
    if (!q)
        return;
    FlowTuple t;
    t.family = m.key.family;
    std::uint32_t l4;
    if (v4) {
        const std::uint32_t ihl = (q[0] & 0x0f) * 4u;
        if ((q[0] >> 4) != 4 || ihl < 20 || ihl + 8 > avail || (be16(q + 6) & 0x1fff) != 0)
            return;  // not IPv4, or a later fragment: no transport header quoted
        t.proto = q[9];
        std::memcpy(t.src.bytes.data(), q + 12, 4);
        std::memcpy(t.dst.bytes.data(), q + 16, 4);
        l4 = ihl;
    } else {
        if ((q[0] >> 4) != 6)
            return;
        t.proto = q[6];  // a transport header right after the IPv6 header; extension headers are not walked
        std::memcpy(t.src.bytes.data(), q + 8, 16);
        std::memcpy(t.dst.bytes.data(), q + 24, 16);
        l4 = 40;
    }
    // The error goes back to the quoted packet's sender.
    if (!(t.src == m.key.dst))
        return;
    const std::uint8_t* h = q + l4;
    if (proto_has_ports(t.proto)) {
        t.sport = be16(h);
        t.dport = be16(h + 2);
    } else if (t.proto == (v4 ? kProtoIcmp : kProtoIcmpv6)) {
        if (!echo_ports(t.family, h[0], be16(h + 4), t.sport, t.dport))
            return;
    } else if (proto_is_icmp(t.proto)) {
        return;
    }
    bool src_is_a = false;
    const FlowKey key = flow_key(t, src_is_a);
    const Flow* f = live(find(key, hash(key)), key, now, counts);
    // A flow no packet has brought to this generation yet may be one the new policy cuts: its
    // errors wait for that (an error follows a packet of its flow, which re-judges it first).
    if (!f || f->generation != ts.generation)
        return;
    // It travels against the quoted packet: it arrives on the port the quoted packet left by.
    const unsigned from = src_is_a == f->initiator_is_a() ? 0u : 1u;  // the quoted packet's sender
    if ((m.key.ingress == f->ingress()) != (from == 1))
        return;
    if (t.proto == kProtoTcp) {
        // The quoted sequence number lies in what its sender may have sent (pf's check):
        // a forged error must guess it.
        const TcpPeer& src = tcp_of(*f).peer[from];
        const TcpPeer& dst = tcp_of(*f).peer[from ^ 1];
        const unsigned dws = src.wscale >= 0 && dst.wscale >= 0 ? static_cast<unsigned>(dst.wscale) : 0;
        const std::uint32_t seq = be32(h + 4);
        if (!src.seen || !seq_geq(src.seqhi, seq) || !seq_geq(seq, src.seqlo - (dst.max_win << dws)))
            return;
    }
    v = Verdict{kNoMatch, DropReason::none};
    ++counts.related;
}

[[gnu::always_inline]] inline void FlowTable::key_packet(const rte_mbuf* pkt, const PacketMeta& m, std::size_t i) noexcept {
    // The flow's key straight from the classifier's: TCP and UDP/SCTP by ports, ICMP echo by
    // identifier, other protocols by addresses alone; an ICMP message other than echo has none.
    const PacketKey& k = m.key;
    std::uint16_t sport = 0, dport = 0;
    if (k.has_ports) [[likely]] {
        sport = k.sport;
        dport = k.dport;
    } else if (k.has_icmp) {
        const std::int64_t ports = icmp_ports(pkt, m);
        if (ports < 0) {
            burst_.keyed[i] = Keyed::no_tuple;
            return;
        }
        sport = static_cast<std::uint16_t>(ports);
        dport = static_cast<std::uint16_t>(ports >> 16);
    }
    bool src_is_a;
    if (k.family == Family::ipv4) [[likely]] {
        const KeyWords w = key_words_v4(k.src, k.dst, sport, dport, k.proto, src_is_a);
        store_key(w, burst_.keys[i]);
        burst_.hashes[i] = hash_v4(w, hash_key_, v4_terms_);
    } else {
        store_key(key_words(k.src, k.dst, sport, dport, k.family, k.proto, src_is_a), burst_.keys[i]);
        burst_.hashes[i] = hash(burst_.keys[i]);
    }
    burst_.src_is_a[i] = src_is_a;
    burst_.keyed[i] = Keyed::yes;
}

void FlowTable::prepare(std::span<rte_mbuf* const> pkts, std::span<const PacketMeta> meta) noexcept {
    burst_.meta = nullptr;
    // Worth it only where the bursts are mostly of stateful filters: a flood of other packets
    // (blocked, or passed without state) would pay a key, a hash and a line from memory each.
    if (stateful_ * 2 < keyable_)
        return;
    const std::size_t n = std::min(kChunk, meta.size());
    for (std::size_t i = 0; i < n; ++i) {
        burst_.keyed[i] = Keyed::no;
        if (keyable(meta[i]))
            key_packet(pkts[i], meta[i], i);
        burst_.mbufs[i] = pkts[i];
    }
    prefetch_keyed(n);
    burst_.meta = meta.data();
    burst_.n = n;
}

void FlowTable::prefetch_keyed(std::size_t n) const noexcept {
    // In a loop of their own: a prefetch among the hashing waited for a miss buffer.
    for (std::size_t i = 0; i < n; ++i)
        if (burst_.keyed[i] == Keyed::yes)
            rte_prefetch0(&slots_[home(burst_.hashes[i])]);
}

bool FlowTable::prepared(std::span<rte_mbuf* const> pkts, std::span<const PacketMeta> meta) const noexcept {
    if (burst_.meta != meta.data() || burst_.n != meta.size())
        return false;
    for (std::size_t i = 0; i < meta.size(); ++i)
        if (burst_.mbufs[i] != pkts[i])
            return false;
    return true;
}

[[gnu::always_inline]] inline bool FlowTable::pass(Flow& f, const PacketMeta& m, bool src_is_a, std::uint64_t generation,
                                                   std::uint64_t now) noexcept {
    // judge's path for a packet of a live UDP, ICMP echo or other flow that the policy it was
    // judged by still governs, sent from its side of the wire; everything else goes to judge.
    if (f.generation != generation || f.expires <= now || m.key.proto == kProtoTcp)
        return false;
    const bool answer = src_is_a != f.initiator_is_a();
    if ((m.key.ingress == f.ingress()) == answer)
        return false;  // from the wrong side: judge drops it
    renew(f, m.key.proto, answer, now);
    return true;
}

void FlowTable::settle(const TableSet& t, std::span<rte_mbuf* const> pkts, std::span<const PacketMeta> meta,
                       std::span<Verdict> verdicts, std::uint64_t now, StateCounts& counts) noexcept {
    for (std::size_t base = 0; base < meta.size(); base += kChunk) {
        const std::size_t n = std::min(kChunk, meta.size() - base);
        // This chunk's packets, by their index j in it.
        const std::span<rte_mbuf* const> p = pkts.subspan(base, n);
        const std::span<const PacketMeta> m = meta.subspan(base, n);
        const std::span<Verdict> v = verdicts.subspan(base, n);
        // The keys and their slots' loads from prepare, called on this burst before the
        // classifier; else each stateful packet's key made here, and its slot's load started.
        if (!prepared(p, m)) {
            for (std::size_t j = 0; j < n; ++j) {
                burst_.keyed[j] = Keyed::no;
                if (keyable(m[j]) && v[j].rank != kNoMatch && v[j].drop == DropReason::none &&
                    t.rules[v[j].rank].state != StateMode::none)
                    key_packet(p[j], m[j], j);
            }
            prefetch_keyed(n);
        }
        burst_.meta = nullptr;
        // The burst's packets in order, their slots loading since prepare: a packet of a flow
        // found in its home slot that needs nothing but its times renewed (pass) is done here;
        // the rest wait (todo), and those whose home holds another flow start loading the next
        // slot. Then those are looked up in full, each TCP flow's tracking starts loading, and
        // each is judged in order. (A lookup that went on to the next slot at once would wait for
        // it with the burst's later loads stalled behind it.) Passing some packets before the
        // earlier ones that wait changes no verdict: pass changes no flow but its own and moves
        // none; judge creates or frees only the flow of its packet's key, and an erase never
        // moves a flow out of its home slot; so an earlier waiting packet of another flow cannot
        // touch the passed one, and one of the same flow waited for a reason it shares with this
        // packet (no flow, another generation, expired: the same slot) or for its own side of
        // the wire, which judge drops without touching the table.
        std::array<std::uint8_t, kChunk> todo, probe;
        std::array<std::int64_t, kChunk> positions;
        unsigned count = 0, probes = 0, stateful = 0, keyable_packets = 0;
        for (std::size_t j = 0; j < n; ++j) {
            if (!keyable(m[j]))
                continue;
            ++keyable_packets;
            const Verdict& vj = v[j];
            if (vj.rank == kNoMatch || vj.drop != DropReason::none || t.rules[vj.rank].state == StateMode::none)
                continue;
            ++stateful;
            if (burst_.keyed[j] != Keyed::yes) {
                // An ICMP message of no flow of its own: a stateful permit passes it as a
                // stateless one would; its mirror does not (an error may still be related).
                if (t.rules[vj.rank].state == StateMode::reply)
                    v[j].drop = DropReason::state;
                continue;
            }
            const std::uint64_t at = home(burst_.hashes[j]);
            Flow& f = slots_[at];
            if (f.used() && f.matches(burst_.keys[j])) {
                if (pass(f, m[j], burst_.src_is_a[j], t.generation, now))
                    continue;
                positions[count] = static_cast<std::int64_t>(at);
            } else {
                positions[count] = -1;
                if (f.used()) {
                    rte_prefetch0(&slots_[(at + 1) & slot_mask_]);
                    probe[probes++] = static_cast<std::uint8_t>(count);
                }
            }
            todo[count++] = static_cast<std::uint8_t>(j);
        }
        stateful_ = stateful;
        keyable_ = keyable_packets;
        for (unsigned p = 0; p < probes; ++p) {  // from the slot after the home, which held another flow
            const unsigned c = probe[p];
            positions[c] = find_from(burst_.keys[todo[c]], (home(burst_.hashes[todo[c]]) + 1) & slot_mask_);
        }
        for (unsigned c = 0; c < count; ++c)
            if (burst_.keys[todo[c]].proto == kProtoTcp && positions[c] >= 0)
                rte_prefetch0(&tracks_[slots_[positions[c]].track]);
        looked_up_ = changes_;
        for (unsigned c = 0; c < count; ++c) {
            const std::size_t j = todo[c];
            judge(t, p[j], m[j], v[j], positions[c], burst_.keys[j], burst_.hashes[j], burst_.src_is_a[j], now,
                  counts);
        }
    }
    // ICMP errors their filters dropped (rare): related to a tracked flow, they pass.
    if (in_use_ == 0)
        return;
    for (std::size_t i = 0; i < meta.size(); ++i) {
        const PacketMeta& m = meta[i];
        const Verdict& v = verdicts[i];
        if (!m.key.has_icmp || m.drop != DropReason::none || m.frag.present || !is_icmp_error(m.key.family, m.key.icmp_type))
            continue;
        // Dropped by no filter, by a stateful mirror, or by a block that does not name ICMP (a
        // catch-all such as *+0): a block filter written for ICMP keeps its word.
        const bool icmp_block = v.drop == DropReason::policy && v.rank != kNoMatch && t.rules[v.rank].proto != kAnyProto;
        if ((v.drop == DropReason::policy && !icmp_block) || v.drop == DropReason::no_match || v.drop == DropReason::state)
            related(t, pkts[i], m, verdicts[i], now, counts);
    }
}

void FlowTable::sweep(std::uint64_t now, unsigned n, StateCounts& counts) noexcept {
    if (in_use_ == 0)
        return;
    for (unsigned i = 0; i < n;) {
        if (slots_[cursor_].used() && slots_[cursor_].expires <= now) {
            erase(cursor_);  // a flow after it may have moved into its slot: looked at next
            ++counts.expired;
        } else {
            cursor_ = (cursor_ + 1) & slot_mask_;
            ++i;
        }
    }
}

void FlowTable::list(StateListing& l, std::uint32_t want, std::uint64_t now, unsigned worker, unsigned slots) noexcept {
    if (l.walking != want) {
        l.walking = want;
        l.cursor = 0;
    }
    const std::uint64_t end = std::min(slot_mask_ + 1, std::uint64_t{l.cursor} + slots);
    for (; l.cursor < end; ++l.cursor) {
        const Flow& f = slots_[l.cursor];
        if (!f.used() || f.expires <= now)
            continue;
        FlowRecord r{};
        r.key = f.key();
        r.generation = f.generation;
        r.listing = want;
        r.expires_ms = static_cast<std::uint32_t>(std::min<std::uint64_t>((f.expires - now) * 1000 / hz_, UINT32_MAX));
        r.rank = f.rank;
        if (r.key.proto == kProtoTcp) {
            r.tcp[0] = tcp_of(f).peer[0].state;
            r.tcp[1] = tcp_of(f).peer[1].state;
        }
        r.initiator_is_a = f.initiator_is_a();
        r.ingress = f.ingress();
        r.answered = f.has(Flow::kAnswered);
        r.worker = static_cast<std::uint8_t>(worker);
        if (rte_ring_sp_enqueue_elem(l.ring, &r, sizeof r) != 0)
            return;  // the ring is full: this position again next time
    }
    if (l.cursor == slot_mask_ + 1)
        l.done.store(want, std::memory_order_release);
}

}  // namespace moat::dp
