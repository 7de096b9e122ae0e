#include "control/runtime/publisher.h"

#include <rte_errno.h>
#include <rte_malloc.h>

#include <stdexcept>
#include <string_view>
#include <unordered_map>

namespace moat::ctl {

namespace {

struct RowKeyHash {
    std::size_t operator()(const RowKey& k) const noexcept { return k.hash ^ (k.occurrence * 0x9e3779b97f4a7c15ULL); }
};

}  // namespace

void index_rows(Generation& g) {
    g.row_keys.clear();
    g.row_of_rank.assign(g.compiled.rules.size(), 0);
    g.carried.clear();
    if (g.compiled.policy < 0)
        return;
    const Policy& pol = g.config.policies[static_cast<std::size_t>(g.compiled.policy)];
    // A row per (rule, list, filter); its entries (a mirrored filter has two, a filter of `me`
    // one per address) may lie anywhere in rank order.
    std::vector<std::size_t> list_base(g.config.lists.size() + 1, 0);
    for (std::size_t l = 0; l < g.config.lists.size(); ++l)
        list_base[l + 1] = list_base[l] + g.config.lists[l].filters.size();
    std::unordered_map<std::uint64_t, std::uint32_t> row;
    row.reserve(g.compiled.rules.size());
    std::unordered_map<RowKey, std::uint32_t, RowKeyHash> occurrences;  // of each key so far
    occurrences.reserve(g.compiled.rules.size());
    const std::hash<std::string_view> h;
    for (std::size_t rank = 0; rank < g.compiled.rules.size(); ++rank) {
        const EntryOrigin& o = g.compiled.info[rank].origin;
        const std::uint64_t id = static_cast<std::uint64_t>(o.rule) * list_base.back() +
                                 list_base[static_cast<std::size_t>(o.list)] + static_cast<std::size_t>(o.filter);
        const auto [it, fresh] = row.emplace(id, static_cast<std::uint32_t>(g.row_keys.size()));
        if (fresh) {
            const FilterList& l = g.config.lists[static_cast<std::size_t>(o.list)];
            const RuleDef& r = pol.rules[static_cast<std::size_t>(o.rule)];
            RowKey k{.list = l.name,
                     .text = l.filters[static_cast<std::size_t>(o.filter)].text,
                     .action = g.config.actions[static_cast<std::size_t>(r.action)].action,
                     .occurrence = 0,
                     .hash = 0};
            k.hash = h(k.list) * 31 + h(k.text) * 7 + static_cast<std::size_t>(k.action);
            k.occurrence = occurrences[k]++;
            g.row_keys.push_back(k);
        }
        g.row_of_rank[rank] = it->second;
    }
    g.carried.assign(g.row_keys.size(), Counts{});
}

std::vector<std::uint32_t> link_rows(const Generation& from, const Generation& to) {
    std::unordered_map<RowKey, std::uint32_t, RowKeyHash> rows_of_to;
    rows_of_to.reserve(to.row_keys.size());
    for (std::size_t r = 0; r < to.row_keys.size(); ++r)
        rows_of_to.emplace(to.row_keys[r], static_cast<std::uint32_t>(r));
    std::vector<std::uint32_t> next(from.row_keys.size(), kNoRow);
    for (std::size_t r = 0; r < from.row_keys.size(); ++r)
        if (const auto it = rows_of_to.find(from.row_keys[r]); it != rows_of_to.end())
            next[r] = it->second;
    return next;
}

Publisher::Publisher(unsigned max_workers) {
    const std::size_t size = rte_rcu_qsbr_get_memsize(max_workers);
    qsv_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("moat_rcu", size, RTE_CACHE_LINE_SIZE));
    if (!qsv_)
        throw std::runtime_error(std::string("cannot allocate the RCU state: ") + rte_strerror(rte_errno));
    if (rte_rcu_qsbr_init(qsv_, max_workers) != 0) {
        rte_free(qsv_);
        throw std::runtime_error(std::string("rte_rcu_qsbr_init: ") + rte_strerror(rte_errno));
    }
}

Publisher::~Publisher() {
    drain({});
    tables_.store(nullptr, std::memory_order_release);
    current_.reset();
    rte_free(qsv_);
}

void Publisher::publish(std::unique_ptr<Generation> next) {
    tables_.store(next->tables.get(), std::memory_order_release);
    // The token is taken after the store: a worker that reports quiescence with a counter at
    // or past it has finished every iteration that could have loaded the old pointer.
    const std::uint64_t token = rte_rcu_qsbr_start(qsv_);
    if (current_)
        retired_.push_back({token, std::move(current_)});
    current_ = std::move(next);
}

std::size_t Publisher::reclaim(const BeforeFree& before_free, std::vector<std::shared_ptr<Generation>>* out) {
    while (!retired_.empty() && rte_rcu_qsbr_check(qsv_, retired_.front().token, false) == 1) {
        if (before_free)
            before_free(*retired_.front().gen);
        if (out)
            out->push_back(std::move(retired_.front().gen));
        retired_.pop_front();
    }
    return retired_.size();
}

void Publisher::drain(const BeforeFree& before_free) {
    while (!retired_.empty()) {
        rte_rcu_qsbr_check(qsv_, retired_.front().token, true);
        if (before_free)
            before_free(*retired_.front().gen);
        retired_.pop_front();
    }
}

}  // namespace moat::ctl
