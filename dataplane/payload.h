// Payload filters in the dataplane (DESIGN section 6): every pattern of the assigned policy in
// one Hyperscan block-mode database, one scratch per worker, travelling inside the table set
// (STYLE 14) and freed with it after the grace period. The scan is a stage of classify.h
// (scan_payloads). Only <hs.h> and its C API are used, so Vectorscan can replace Hyperscan by
// changing the meson dependency.
//
// The classifier's tries hold the payload entries too (table_set.h), so for every packet it
// says whether a payload filter outranks the best header-only match: its answer is then a
// payload entry. Only those packets are scanned, once, over at most `scan_bytes` of their L4
// payload (this packet's: no reassembly across packets or fragments), with every pattern of the
// database; the winner is the best-ranked payload entry whose header fields and pattern match,
// else the best header-only match.
#pragma once

#include <hs.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dataplane/entry.h"
#include "dataplane/wire.h"

namespace moat::dp {

template <auto Fn>
struct HsDeleter {
    void operator()(auto* p) const noexcept { Fn(p); }
};
using HsDatabasePtr = std::unique_ptr<hs_database_t, HsDeleter<hs_free_database>>;
using HsScratchPtr = std::unique_ptr<hs_scratch_t, HsDeleter<hs_free_scratch>>;

/// The payload part of a table set; empty (no database) when the policy has no payload filter.
struct PayloadTables {
    HsDatabasePtr db;
    std::vector<HsScratchPtr> scratch;  ///< [worker]: written only by that worker, during a scan
    std::uint32_t patterns = 0;         ///< pattern ids are 0 .. patterns-1 (Entry::payload)
    std::uint32_t scan_bytes = kPayloadScanBytesDefault;    ///< `payload_scan_bytes`
    /// The ranks of the entries of pattern i (a filter's expansion), ascending:
    /// entries[first[i] .. first[i + 1]).
    std::vector<std::uint32_t> first;
    std::vector<Rank> entries;
    /// Per worker, room for the ids of the patterns that matched in the current scan (each is
    /// reported once: HS_FLAG_SINGLEMATCH). Allocated by control with the scratches; written
    /// only by that worker.
    std::vector<std::unique_ptr<std::uint32_t[]>> matched;
    bool empty() const noexcept { return !db; }
    /// How many bytes of an L4 payload of `n` bytes are scanned: at most scan_bytes.
    std::uint32_t scan_length(std::uint32_t n) const noexcept { return n < scan_bytes ? n : scan_bytes; }
};

}  // namespace moat::dp
