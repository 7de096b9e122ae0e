#include "dataplane/fragments.h"

#include <rte_hash_crc.h>

#include <rte_cycles.h>
#include <rte_errno.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

namespace moat::dp {

namespace {

/// An extendable rte_hash (exactly `entries` keys fit whatever they hash to) hashed with CRC32,
/// named `prefix` and a number of its own; null when it cannot be had (rte_errno says why).
rte_hash* create_fixed_hash(const char* prefix, unsigned entries, std::uint32_t key_len, int socket) {
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

}  // namespace

std::unique_ptr<FragmentTable> FragmentTable::create(unsigned entries, int socket, std::string& error) {
    std::unique_ptr<FragmentTable> t(new FragmentTable);
    t->capacity_ = std::max(entries, 8u);
    t->timeout_ = rte_get_tsc_hz() * kFragmentTimeoutMs / 1000;
    t->hash_ = create_fixed_hash("moat_frag_", t->capacity_, sizeof(Key), socket);
    if (!t->hash_) {
        error = "cannot create the fragment table (" + std::to_string(t->capacity_) + " entries): " +
                rte_strerror(rte_errno);
        return nullptr;
    }
    t->states_ = std::make_unique<State[]>(t->capacity_);
    return t;
}

FragmentTable::~FragmentTable() { rte_hash_free(hash_); }

FragmentTable::Key FragmentTable::key_of(const PacketMeta& m) noexcept {
    static_assert(sizeof(Key) == 40, "no implicit padding: every byte of the key is hashed");
    Key k{};
    k.src = m.key.src;
    k.dst = m.key.dst;
    k.id = m.frag.id;
    k.family = static_cast<std::uint8_t>(m.key.family);
    k.proto = m.frag.proto;
    return k;
}

void FragmentTable::erase(std::int32_t pos) noexcept {
    State& s = states_[static_cast<unsigned>(pos)];
    if (!s.used)
        return;
    rte_hash_del_key(hash_, &s.key);
    s.used = false;
    --in_use_;
}

bool FragmentTable::add_piece(State& s, std::uint32_t begin, std::uint32_t end, FragDrop& why) noexcept {
    for (unsigned i = 0; i < s.pieces; ++i)
        if (begin < s.piece[i].end && s.piece[i].begin < end) {
            why = FragDrop::overlap;
            return false;
        }
    // Merge with the pieces it touches (in-order fragments stay one piece).
    for (unsigned i = 0; i < s.pieces;) {
        if (s.piece[i].end == begin || s.piece[i].begin == end) {
            begin = std::min(begin, s.piece[i].begin);
            end = std::max(end, s.piece[i].end);
            s.piece[i] = s.piece[--s.pieces];
            continue;
        }
        ++i;
    }
    if (s.pieces == kFragmentPieces) {
        why = FragDrop::scattered;
        return false;
    }
    s.piece[s.pieces++] = {begin, end};
    return true;
}

void FragmentTable::first(PacketMeta& m, Verdict& v, std::uint64_t generation, std::uint64_t now) noexcept {
    const Key k = key_of(m);
    std::int32_t pos = rte_hash_lookup(hash_, &k);
    if (pos >= 0 && states_[static_cast<unsigned>(pos)].expires <= now) {
        erase(pos);
        pos = -1;
    }
    if (pos >= 0) {
        // A second offset-0 fragment of a datagram in flight: it overlaps the first by definition
        // (RFC 1858's rewrite), so the datagram is poisoned whatever this one's own verdict is.
        State& s = states_[static_cast<unsigned>(pos)];
        s.poison = FragDrop::overlap;
        m.frag.why = FragDrop::overlap;
        v = Verdict{kNoMatch, DropReason::fragment};
        return;
    }
    if (v.drop != DropReason::none)
        return;  // blocked: nothing to remember, its later fragments have no first and are dropped
    pos = rte_hash_add_key(hash_, &k);
    if (pos < 0 || static_cast<unsigned>(pos) >= capacity_) {
        if (pos >= 0)
            rte_hash_del_key(hash_, &k);
        m.frag.why = FragDrop::table_full;
        v = Verdict{kNoMatch, DropReason::fragment};
        return;
    }
    State& s = states_[static_cast<unsigned>(pos)];
    s = State{};
    s.key = k;
    s.expires = now + timeout_;
    s.generation = generation;
    s.rank = v.rank;
    s.used = true;
    s.last_seen = !m.frag.more;
    s.piece[0] = {m.frag.begin, m.frag.end};
    s.pieces = 1;
    ++in_use_;
}

void FragmentTable::later(PacketMeta& m, Verdict& v, std::uint64_t generation, std::uint64_t now) noexcept {
    const Key k = key_of(m);
    const std::int32_t pos = rte_hash_lookup(hash_, &k);
    if (pos < 0 || states_[static_cast<unsigned>(pos)].expires <= now) {
        if (pos >= 0)
            erase(pos);
        m.frag.why = FragDrop::no_first;
        v = Verdict{kNoMatch, DropReason::fragment};
        return;
    }
    State& s = states_[static_cast<unsigned>(pos)];
    FragDrop why = s.poison;
    if (why != FragDrop::none || !add_piece(s, m.frag.begin, m.frag.end, why)) {
        s.poison = why;
        m.frag.why = why;
        v = Verdict{kNoMatch, DropReason::fragment};
        return;
    }
    v = Verdict{s.generation == generation ? s.rank : kNoMatch, DropReason::none};
    s.last_seen = s.last_seen || !m.frag.more;
    // All of it has passed: the last fragment arrived and the pieces merged into one from 0.
    if (s.last_seen && s.pieces == 1 && s.piece[0].begin == 0)
        erase(pos);
}

void FragmentTable::settle(std::span<PacketMeta> meta, std::span<Verdict> verdicts, std::uint64_t generation,
                           std::uint64_t now) noexcept {
    for (std::size_t i = 0; i < meta.size(); ++i) {
        PacketMeta& m = meta[i];
        if (!m.frag.present || m.drop != DropReason::none)
            continue;
        if (m.frag.begin == 0)
            first(m, verdicts[i], generation, now);
        else
            later(m, verdicts[i], generation, now);
    }
}

void FragmentTable::sweep(std::uint64_t now, unsigned n) noexcept {
    if (in_use_ == 0)
        return;
    for (unsigned i = 0; i < n; ++i) {
        const unsigned at = cursor_;
        cursor_ = cursor_ + 1 == capacity_ ? 0 : cursor_ + 1;
        if (states_[at].used && states_[at].expires <= now)
            erase(static_cast<std::int32_t>(at));
    }
}

}  // namespace moat::dp
