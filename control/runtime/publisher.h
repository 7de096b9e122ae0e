// Publishing table sets to running workers (STYLE 13): the swap protocol lives here.
//
// A Generation is one published policy: the table set the workers read and the control-side
// data that explains it. publish() stores the new set's pointer with release order (one atomic
// store: a worker sees either the old set or the new one, never a mix), takes an RCU token
// (rte_rcu_qsbr_start) and retires the previous generation. reclaim() frees a retired
// generation once every worker has reported a quiescent state past its token; workers report
// once per loop iteration and hold no table pointer across it, so after that no worker can
// still be reading it. Workers that are offline (stopped) count as quiescent.
#pragma once

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "control/compile/policy.h"
#include "control/config/model.h"
#include "control/compile/trie_build.h"
#include "dataplane/table_set.h"

namespace moat::ctl {

/// A filter row's packets and bytes.
struct Counts {
    std::uint64_t packets = 0, bytes = 0;
    Counts& operator+=(const Counts& o) noexcept {
        packets += o.packets;
        bytes += o.bytes;
        return *this;
    }
};

/// No row: the filter does not survive into the next generation.
constexpr std::uint32_t kNoRow = ~std::uint32_t{0};

/// What identifies a filter's counters across reloads: its list's name, its text and its
/// rule's action (its line number may move), and which occurrence of those it is (the same
/// filter twice: the first keeps the first one's counts, the second the second's). The views
/// point into the generation's own config.
struct RowKey {
    std::string_view list, text;
    dp::Action action{};
    std::uint32_t occurrence = 0;
    std::size_t hash = 0;  ///< of list, text and action

    bool operator==(const RowKey& o) const noexcept {
        return hash == o.hash && action == o.action && occurrence == o.occurrence && list == o.list && text == o.text;
    }
};

/// One published policy.
struct Generation {
    std::uint64_t number = 0;
    Config config;
    CompiledPolicy compiled;
    std::unique_ptr<dp::TableSet> tables;
    TrieBuildStats v4, v6;
    std::chrono::system_clock::time_point loaded_at;
    /// Per filter row (one per rule x filter of the policy, in rank order of first entry): an
    /// identity that survives reloads while the filter is unchanged, and each rank's row.
    std::vector<RowKey> row_keys;
    std::vector<std::uint32_t> row_of_rank;
    /// Counters carried across reloads, by row (control thread, under the Runtime's lock): what
    /// earlier generations handed over when they were freed, and, once the next generation is
    /// published, where each row goes in it (kNoRow: nowhere).
    std::vector<Counts> carried;
    std::vector<std::uint32_t> next_row;
    Generation* successor = nullptr;
};

/// Fills `g.row_keys`, `g.row_of_rank` and (zeroed) `g.carried` from `g.config` and `g.compiled`.
/// The keys point into `g.config`: `g` stays where it is from then on (generations live on the heap).
void index_rows(Generation& g);

/// Where each row of `from` goes in its successor `to`: the row with the same key, or kNoRow
/// (what becomes `from.next_row`). O(rows).
std::vector<std::uint32_t> link_rows(const Generation& from, const Generation& to);

class Publisher {
public:
    /// RCU state for `max_workers` reader threads (ids 0 .. max_workers-1). Throws
    /// std::runtime_error when DPDK memory cannot be had. Control thread.
    explicit Publisher(unsigned max_workers);
    ~Publisher();
    Publisher(const Publisher&) = delete;
    Publisher& operator=(const Publisher&) = delete;

    rte_rcu_qsbr* qsbr() const noexcept { return qsv_; }
    /// What workers load once per iteration (acquire).
    const std::atomic<const dp::TableSet*>* tables() const noexcept { return &tables_; }
    const Generation* current() const noexcept { return current_.get(); }
    /// The same, for the control-side bookkeeping of counter carry-over. Control thread.
    Generation* current() noexcept { return current_.get(); }
    /// The current generation, kept alive for as long as the caller holds it (a reply streamed
    /// over several turns of the control loop); the workers stop reading a retired one all the
    /// same. Control thread, or under the lock that orders it with publish().
    std::shared_ptr<const Generation> current_shared() const noexcept { return current_; }

    /// Makes `next` the generation workers read and retires the current one. Control thread.
    void publish(std::unique_ptr<Generation> next);

    using BeforeFree = std::function<void(Generation& retired)>;
    /// Lets go of the retired generations whose grace period is over, oldest first, calling
    /// `before_free` on each: they are freed here, or, with `out`, handed to the caller (whoever
    /// holds the last reference frees them). Never blocks. Returns how many are still waiting.
    std::size_t reclaim(const BeforeFree& before_free, std::vector<std::shared_ptr<Generation>>* out = nullptr);
    /// Waits for every grace period and frees all retired generations. Control thread.
    void drain(const BeforeFree& before_free);

    std::size_t retired() const noexcept { return retired_.size(); }
    /// The retired generations not yet freed, oldest first (each one's successor is the next, the
    /// last one's the current generation). Control thread.
    std::vector<const Generation*> retired_generations() const {
        std::vector<const Generation*> out;
        for (const auto& r : retired_)
            out.push_back(r.gen.get());
        return out;
    }

private:
    rte_rcu_qsbr* qsv_ = nullptr;
    std::atomic<const dp::TableSet*> tables_{nullptr};
    std::shared_ptr<Generation> current_;
    struct Retired {
        std::uint64_t token;
        std::shared_ptr<Generation> gen;
    };
    std::deque<Retired> retired_;
};

}  // namespace moat::ctl
