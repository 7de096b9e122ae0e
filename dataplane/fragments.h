// IP fragment tracking (DESIGN section 5, `fragments = track`): a fragment is never matched
// against port filters by guess. The first fragment (offset 0) carries the transport header and
// is classified like any packet; if permitted, its verdict is remembered per (family, src, dst,
// protocol, id) and the datagram's later fragments follow it. A later fragment with no
// remembered verdict, or one that overlaps a piece already seen (RFC 1858, RFC 5722), is
// dropped, and an overlap poisons the datagram: the rest of it is dropped too.
//
// One table per worker, written only by it: an rte_hash of fixed capacity (never grows; when it
// is full, new datagrams are dropped and counted) whose positions index an array of states.
// Entries expire `timeout` after the first fragment; the worker sweeps a few per iteration and
// frees a datagram's entry as soon as all of it has passed.
#pragma once

#include <rte_hash.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "dataplane/classify.h"
#include "dataplane/parse.h"

namespace moat::dp {

inline constexpr unsigned kFragmentTimeoutMs = 5000;    ///< how long a first fragment's verdict lasts
/// Disjoint pieces remembered per datagram; in-order fragments merge into one, so only
/// reordering uses more. A datagram scattered further is dropped (FragDrop::scattered).
inline constexpr unsigned kFragmentPieces = 8;

class FragmentTable {
public:
    /// A table for `entries` datagrams (at least 8), DPDK memory on `socket`, entries lasting
    /// kFragmentTimeoutMs. nullptr and `error` set when it cannot be had. Control thread or the
    /// worker before its loop.
    static std::unique_ptr<FragmentTable> create(unsigned entries, int socket, std::string& error);
    ~FragmentTable();
    FragmentTable(const FragmentTable&) = delete;
    FragmentTable& operator=(const FragmentTable&) = delete;

    /// Settles the fragments of a classified burst, in arrival order: records permitted first
    /// fragments, judges later ones by their datagram's record, and sets `meta[i].frag.why` on
    /// every fragment it drops. `generation`: the table set that classified the burst (a
    /// remembered rank counts hits only in its own generation). Worker only.
    void settle(std::span<PacketMeta> meta, std::span<Verdict> verdicts, std::uint64_t generation,
                std::uint64_t now) noexcept;

    /// Frees up to `n` expired entries, continuing where the last call stopped. Worker only.
    void sweep(std::uint64_t now, unsigned n) noexcept;

    unsigned capacity() const noexcept { return capacity_; }
    unsigned in_use() const noexcept { return in_use_; }

private:
    struct Key {
        Addr src;
        Addr dst;
        std::uint32_t id;
        std::uint8_t family;
        std::uint8_t proto;
        std::uint8_t pad[2];
    };
    struct Piece {
        std::uint32_t begin, end;  ///< bytes of the datagram's fragmentable part, [begin, end)
    };
    struct State {
        Key key;
        std::uint64_t expires;
        std::uint64_t generation;
        Rank rank;
        bool used;
        FragDrop poison;  ///< none, or why the rest of the datagram is dropped
        bool last_seen;  ///< the fragment without more-fragments arrived
        std::uint8_t pieces;
        std::array<Piece, kFragmentPieces> piece;
    };

    FragmentTable() = default;
    static Key key_of(const PacketMeta& m) noexcept;
    void first(PacketMeta& m, Verdict& v, std::uint64_t generation, std::uint64_t now) noexcept;
    void later(PacketMeta& m, Verdict& v, std::uint64_t generation, std::uint64_t now) noexcept;
    /// Adds [begin, end) to `s`; false when it overlaps a piece already there or there is no room.
    static bool add_piece(State& s, std::uint32_t begin, std::uint32_t end, FragDrop& why) noexcept;
    void erase(std::int32_t pos) noexcept;

    rte_hash* hash_ = nullptr;
    std::unique_ptr<State[]> states_;
    unsigned capacity_ = 0;
    unsigned in_use_ = 0;
    unsigned cursor_ = 0;
    std::uint64_t timeout_ = 0;
};

}  // namespace moat::dp
