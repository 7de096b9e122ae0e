#include "control/publisher.h"

#include <rte_errno.h>
#include <rte_malloc.h>

#include <map>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <unordered_map>

namespace moat::ctl {

void index_rows(Generation& g) {
    g.row_keys.clear();
    g.row_of_rank.assign(g.compiled.rules.size(), 0);
    g.carried.clear();
    if (g.compiled.policy < 0)
        return;
    const Policy& pol = g.config.policies[static_cast<std::size_t>(g.compiled.policy)];
    std::map<std::tuple<int, int, int>, std::uint32_t> row;
    std::unordered_map<std::string, unsigned> seen;  // rows with the same key so far
    for (std::size_t rank = 0; rank < g.compiled.rules.size(); ++rank) {
        const EntryOrigin& o = g.compiled.info[rank].origin;
        const auto [it, fresh] = row.emplace(std::tuple(o.rule, o.list, o.filter), static_cast<std::uint32_t>(g.row_keys.size()));
        if (fresh) {
            // A filter keeps its counters across a reload while its list, its text and its
            // rule's action stay the same; its line number may move.
            const FilterList& l = g.config.lists[static_cast<std::size_t>(o.list)];
            const RuleDef& r = pol.rules[static_cast<std::size_t>(o.rule)];
            const FilterAction& a = g.config.actions[static_cast<std::size_t>(r.action)];
            std::string key = l.name + '\n' + l.filters[static_cast<std::size_t>(o.filter)].text + '\n' +
                              (a.action == dp::Action::permit ? "permit" : "block");
            // The same filter twice (in one list, or a list under two rules with one action):
            // the first keeps the first one's counts, the second the second's.
            if (const unsigned n = seen[key]++; n > 0)
                key += '\n' + std::to_string(n);
            g.row_keys.push_back(std::move(key));
        }
        g.row_of_rank[rank] = it->second;
    }
    g.carried.assign(g.row_keys.size(), Counts{});
}

std::vector<std::uint32_t> link_rows(const Generation& from, const Generation& to) {
    std::unordered_map<std::string_view, std::uint32_t> rows_of_to;
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
