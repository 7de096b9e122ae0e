#include "control/compile/trie_build.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

namespace moat::ctl {

namespace {

using dp::kMaxDims;

/// Bits of each dimension (trie.h): addresses 32 per word, p1/p2 16, protocol 8, ingress 1.
std::vector<unsigned> dim_widths(dp::Family f) {
    std::vector<unsigned> w(f == dp::Family::ipv4 ? 2 : 8, 32);
    w.insert(w.end(), {16, 16, 8, 1});
    return w;
}

/// The key space below a node. `lo`/`rem` is the bit-aligned cell its index bits are taken
/// from; `rlo`/`rhi` is the region of keys that can reach it, which is wider than the cell below
/// a run of several slots (one subtree shared by them). A run fixes its dimension: its subtree
/// never cuts that dimension again (`rem` = 0).
struct Cell {
    std::uint32_t lo[kMaxDims];
    unsigned rem[kMaxDims];  ///< bits not yet fixed by the path
    std::uint32_t rlo[kMaxDims];
    std::uint32_t rhi[kMaxDims];
    /// Dimensions narrowed without a node (narrow()): keys from the whole region reach this cell
    /// through aliasing, so a cut of such a dimension leaves its children the region as it is.
    std::uint32_t aliased = 0;
};

struct Cut {
    unsigned dim = 0, bits = 0;
    std::size_t max_seg = 0, space = 0;
};

struct VecHash;

/// The cut each node chose, by its path from the root (tree, then the run taken at each level):
/// a node's choice depends only on its entries and cell, which a deeper build of the same
/// groups shares with a shallower one down to the shallower one's depth, and two groupings
/// with a group in common share for its tree (trees are named by their entries, Grouping::ids).
using CutMemo = std::unordered_map<std::vector<std::uint32_t>, Cut, VecHash>;

struct VecHash {
    std::size_t operator()(const std::vector<std::uint32_t>& v) const noexcept {
        std::size_t h = v.size();
        for (auto x : v)
            h = h * 0x9E3779B97F4A7C15ull + x;
        return h;
    }
};

class TrieBuilder {
public:
    TrieBuilder(const std::vector<std::uint32_t>& lo, const std::vector<std::uint32_t>& hi,
            const std::vector<dp::Rank>& ranks, unsigned dims, const TrieBuildOptions& opt, CutMemo& memo)
        : lo_(lo), hi_(hi), ranks_(ranks), dims_(dims), opt_(opt), memo_(memo) {
        // The empty leaf at offset 0 (see trie.h): it steps to itself and holds no entries.
        words_ = {0, 2, dp::kEmptyRef, 0, 0, 0};
        // The builder's peak, not only the trie, stays within memory_limit: the layout being
        // built, its map of distinct leaves (about as large), the best layout so far, and the
        // copy made of the one chosen take a quarter each.
        limit_words_ = opt.memory_limit / 4 / sizeof(std::uint32_t);
    }

    /// The trie of `rules`; `dims` is the mask of dimensions its leaves check.
    std::uint32_t build_tree(std::vector<std::uint32_t>& rules, const std::vector<unsigned>& widths, std::uint32_t dims,
                             std::uint32_t id) {
        tree_mask_ = dims;
        tree_steps_ = 0;
        path_.assign(1, id);
        Cell c{};
        for (unsigned d = 0; d < dims_; ++d) {
            c.lo[d] = 0;
            c.rem[d] = widths[d];
            c.rlo[d] = 0;
            c.rhi[d] = widths[d] >= 32 ? ~std::uint32_t{0} : (std::uint32_t{1} << widths[d]) - 1;
        }
        return build(rules, c, 1);
    }

    /// Bounds the layout: entry copies in its leaves plus slot_weight per slot, over all its
    /// trees, at most `cap` (entries counted once each to start with). A cut that would pass
    /// it is not made: its node becomes a leaf, larger but correct.
    void set_cap(std::size_t entries, double cap, bool give_up) {
        projected_ = static_cast<double>(entries);
        cap_ = cap;
        give_up_ = give_up;
    }

    bool over_limit() const noexcept { return over_; }
    unsigned tree_steps() const noexcept { return tree_steps_; }
    std::vector<std::uint32_t>& words() noexcept { return words_; }
    TrieBuildStats& stats() noexcept { return stats_; }

private:
    std::uint32_t lo(std::uint32_t r, unsigned d) const noexcept { return lo_[r * dims_ + d]; }
    std::uint32_t hi(std::uint32_t r, unsigned d) const noexcept { return hi_[r * dims_ + d]; }

    static std::uint32_t cell_hi(const Cell& c, unsigned d) noexcept {
        return c.rem[d] >= 32 ? ~std::uint32_t{0} : c.lo[d] + ((std::uint32_t{1} << c.rem[d]) - 1);
    }

    /// Child index range of rule r under a cut of `bits` on dimension d of cell c, and whether
    /// it covers its first child only partly.
    void child_span(std::uint32_t r, const Cell& c, unsigned d, unsigned bits, std::uint32_t& a, std::uint32_t& z,
                    bool& part_a) const noexcept {
        const unsigned shift = c.rem[d] - bits;
        const std::uint64_t csize = std::uint64_t{1} << shift;
        const std::uint32_t rl = std::max(lo(r, d), c.lo[d]) - c.lo[d];
        const std::uint32_t rh = std::min(hi(r, d), cell_hi(c, d)) - c.lo[d];
        a = static_cast<std::uint32_t>(rl >> shift);
        z = static_cast<std::uint32_t>(rh >> shift);
        part_a = (rl & (csize - 1)) != 0;
    }

    /// Segments of a cut: runs of slots with one entry set. A run shares one subtree, built for
    /// its first slot's cell: that is complete for every slot of the run as long as each entry
    /// covers the first slot wholly (deeper cuts of the same dimension then keep every entry in
    /// every branch). So a slot that an entry starts inside of is a run of its own; an entry that
    /// ends inside a slot needs nothing (it covers the run's first slot wholly, and the leaves
    /// check every dimension). Returns the run starts and fills max_seg and space.
    void segments(const std::vector<std::uint32_t>& rules, const Cell& c, unsigned d, unsigned bits, Cut& cut,
                  std::vector<std::uint32_t>* starts) {
        const std::size_t nslots = std::size_t{1} << bits;
        diff_.assign(nslots + 1, 0);
        mark_.assign(nslots + 1, 0);
        for (const auto r : rules) {
            std::uint32_t a, z;
            bool pa;
            child_span(r, c, d, bits, a, z, pa);
            ++diff_[a];
            --diff_[z + 1];
            mark_[a] |= 1;
            mark_[z + 1] |= 1;
            if (pa)
                mark_[a] |= 2;
        }
        std::int64_t cov = 0;
        cut.max_seg = 0;
        std::size_t copies = 0;
        for (std::size_t s = 0; s < nslots; ++s) {
            cov += diff_[s];
            if (s == 0 || mark_[s] || (mark_[s - 1] & 2)) {
                copies += static_cast<std::size_t>(cov);
                cut.max_seg = std::max(cut.max_seg, static_cast<std::size_t>(cov));
                if (starts)
                    starts->push_back(static_cast<std::uint32_t>(s));
            }
        }
        cut.space = copies + static_cast<std::size_t>(opt_.slot_weight * static_cast<double>(nslots));
    }

    /// The entries' offsets in cell c on dimension d, clamped to the cell, each list sorted:
    /// where they start (aoff_) and where they end (zoff_).
    void sorted_offsets(const std::vector<std::uint32_t>& rules, const Cell& c, unsigned d) {
        aoff_.clear();
        zoff_.clear();
        const std::uint32_t top = cell_hi(c, d);
        for (const auto r : rules) {
            aoff_.push_back(std::max(lo(r, d), c.lo[d]) - c.lo[d]);
            zoff_.push_back(std::min(hi(r, d), top) - c.lo[d]);
        }
        std::sort(aoff_.begin(), aoff_.end());
        std::sort(zoff_.begin(), zoff_.end());
    }

    /// segments() for a candidate cut, from the sorted offsets, without per-slot arrays: run
    /// starts are the distinct slots where an entry starts, one past where one ends, and one past
    /// a slot an entry starts inside of; between them coverage is constant. O(entries).
    void evaluate(unsigned shift, unsigned bits, Cut& cut) const {
        const std::uint64_t nslots = std::uint64_t{1} << bits;
        const std::uint64_t part = (std::uint64_t{1} << shift) - 1;
        const std::size_t n = aoff_.size();
        constexpr std::uint64_t kEnd = ~std::uint64_t{0};
        std::size_t ia = 0, iz = 0, ip = 0;
        std::size_t ca = 0, cz = 0;  // entries starting at or before s, entries ending before s
        std::size_t copies = 0, max_seg = 0;
        const auto next_partial = [&](std::size_t& i) {
            while (i < n && (aoff_[i] & part) == 0)
                ++i;
            return i < n ? (std::uint64_t{aoff_[i]} >> shift) + 1 : kEnd;
        };
        for (std::uint64_t s = 0; s < nslots;) {
            while (ia < n && (std::uint64_t{aoff_[ia]} >> shift) <= s)
                ++ia, ++ca;
            while (iz < n && (std::uint64_t{zoff_[iz]} >> shift) + 1 <= s)
                ++iz, ++cz;
            const std::size_t cov = ca - cz;
            copies += cov;
            max_seg = std::max(max_seg, cov);
            // The next run start after s.
            std::uint64_t next = ia < n ? std::uint64_t{aoff_[ia]} >> shift : kEnd;
            if (iz < n)
                next = std::min(next, (std::uint64_t{zoff_[iz]} >> shift) + 1);
            std::uint64_t p = next_partial(ip);
            while (p <= s) {
                ++ip;
                p = next_partial(ip);
            }
            next = std::min(next, p);
            s = next;
        }
        cut.max_seg = max_seg;
        cut.space = copies + static_cast<std::size_t>(opt_.slot_weight * static_cast<double>(nslots));
    }

    /// Narrows the cell, in each dimension, to the smallest bit-aligned sub-cell that holds every
    /// entry not covering the whole cell there (198.18.0.0/16 for hosts of that network, next to
    /// a catch-all): the bits they share cannot separate them, and a cut of the next bits
    /// would otherwise take a level of its own. No node checks the bits skipped, so keys from
    /// outside the sub-cell reach it too: the region (what the leaves check against) stays as
    /// it was, and the leaves check the dimension, since those entries do not cover it.
    void narrow(const std::vector<std::uint32_t>& rules, Cell& c) const {
        for (unsigned d = 0; d < dims_; ++d) {
            if (c.rem[d] == 0)
                continue;
            const std::uint32_t top = cell_hi(c, d);
            bool any = false;
            std::uint32_t first = 0, diff = 0;
            for (const auto r : rules) {
                if (lo(r, d) <= c.lo[d] && hi(r, d) >= top)
                    continue;  // covers the whole cell: in every child anyway
                const std::uint32_t a = std::max(lo(r, d), c.lo[d]) - c.lo[d];
                const std::uint32_t z = std::min(hi(r, d), top) - c.lo[d];
                if (!any)
                    first = a;
                any = true;
                diff |= (a ^ first) | (z ^ first);
            }
            if (!any)
                continue;
            const unsigned keep = diff == 0 ? 0 : 32 - static_cast<unsigned>(__builtin_clz(diff));  // bits that differ
            if (keep >= c.rem[d])
                continue;
            const std::uint32_t low = keep == 0 ? 0 : (keep >= 32 ? ~std::uint32_t{0} : (std::uint32_t{1} << keep) - 1);
            c.lo[d] += first & ~low;
            c.rem[d] = keep;
            c.aliased |= 1u << d;
        }
    }

    std::uint32_t build(std::vector<std::uint32_t>& rules, const Cell& cell, unsigned depth) {
        if (rules.empty() || over_)
            return dp::kEmptyRef;
        if (opt_.cancel && opt_.cancel->load(std::memory_order_relaxed)) {
            over_ = true;  // the layout is dropped; build_trie says why
            return dp::kEmptyRef;
        }
        stats_.max_depth = std::max(stats_.max_depth, depth);
        if (rules.size() <= opt_.leaf_size || (opt_.max_depth && depth > opt_.max_depth))
            return leaf(rules, cell);
        Cell c = cell;
        narrow(rules, c);
        Cut best;
        bool found = false;
        if (const auto it = memo_.find(path_); it != memo_.end()) {
            best = it->second;
            found = best.bits != 0;
        } else {
            found = choose_cut(rules, c, best);
            memo_.emplace(path_, found ? best : Cut{});
        }
        if (!found)
            return leaf(rules, c);  // nothing separates these entries any further
        return node(rules, c, depth, best);
    }

    /// The cut of the dimension and bits that leave the smallest largest segment within the
    /// space budget; false when none separates the entries.
    bool choose_cut(const std::vector<std::uint32_t>& rules, const Cell& c, Cut& best) {
        const double budget = opt_.space_factor * static_cast<double>(rules.size());
        bool found = false;
        // Dimensions with few entries covering the whole cell first: those entries bound a
        // cut's largest segment from below, so a good cut found early rules out the others
        // without sorting them (ties still go to the lowest dimension, as in index order).
        unsigned order[kMaxDims];
        std::size_t whole[kMaxDims];
        for (unsigned d = 0; d < dims_; ++d) {
            order[d] = d;
            whole[d] = 0;
            const std::uint32_t top = cell_hi(c, d);
            for (const auto r : rules)
                whole[d] += lo(r, d) <= c.lo[d] && hi(r, d) >= top;
        }
        std::stable_sort(order, order + dims_, [&](unsigned a, unsigned b) { return whole[a] < whole[b]; });
        for (const unsigned d : std::span(order, dims_)) {
            // Every segment of a cut of d holds the entries that cover the whole cell: with all of
            // them, or more than the best cut's largest segment, d cannot win.
            if (c.rem[d] == 0 || whole[d] == rules.size() || (found && whole[d] > best.max_seg))
                continue;
            sorted_offsets(rules, c, d);
            // More bits never make the largest segment larger, nor the space smaller: the cut of
            // this dimension to take has the most bits within the budget (one at least), or the
            // fewest bits that leave the same largest segment. Two binary searches find it.
            std::array<Cut, 33> evaluated{};
            const auto eval = [&](unsigned bits) -> const Cut& {
                Cut& cut = evaluated[bits];
                if (cut.bits == 0) {
                    cut = {d, bits, 0, 0};
                    evaluate(c.rem[d] - bits, bits, cut);
                }
                return cut;
            };
            unsigned lo_b = 1, hi_b = std::min(c.rem[d], opt_.max_cut_bits);
            while (lo_b < hi_b) {  // the most bits within the budget
                const unsigned mid = (lo_b + hi_b + 1) / 2;
                if (static_cast<double>(eval(mid).space) <= budget)
                    lo_b = mid;
                else
                    hi_b = mid - 1;
            }
            const std::size_t smallest = eval(lo_b).max_seg;
            if (smallest >= rules.size())
                continue;  // this dimension separates nothing
            for (unsigned top = lo_b, low = 1; low < top;) {  // the fewest bits leaving it
                const unsigned mid = (low + top) / 2;
                if (eval(mid).max_seg == smallest)
                    top = mid;
                else
                    low = mid + 1;
                lo_b = top;
            }
            const Cut& cut = eval(lo_b);
            if (!found || cut.max_seg < best.max_seg ||
                (cut.max_seg == best.max_seg && (cut.space < best.space || (cut.space == best.space && d < best.dim)))) {
                best = cut;
                found = true;
            }
        }
        return found;
    }

    /// An inner node cutting `best`, and its subtrees.
    std::uint32_t node(const std::vector<std::uint32_t>& rules, const Cell& c, unsigned depth, Cut best) {
        std::vector<std::uint32_t> starts;
        segments(rules, c, best.dim, best.bits, best, &starts);
        const std::size_t nslots = std::size_t{1} << best.bits;
        starts.push_back(static_cast<std::uint32_t>(nslots));

        // The entries of each run: an entry joins every run its slots overlap, in rank order.
        std::vector<std::uint32_t> run_of(nslots);
        for (std::size_t g = 0; g + 1 < starts.size(); ++g)
            for (std::uint32_t slot = starts[g]; slot < starts[g + 1]; ++slot)
                run_of[slot] = static_cast<std::uint32_t>(g);
        std::vector<std::vector<std::uint32_t>> runs(starts.size() - 1);
        std::size_t copies = 0;
        for (const auto r : rules) {
            std::uint32_t a, z;
            bool pa;
            child_span(r, c, best.dim, best.bits, a, z, pa);
            for (std::uint32_t g = run_of[a]; g <= run_of[z]; ++g)
                runs[g].push_back(r);
            copies += run_of[z] - run_of[a] + 1;
        }
        // What this cut adds to the layout if nothing below it were cut further: past the cap,
        // it is not made.
        const double extra = static_cast<double>(copies - rules.size()) + opt_.slot_weight * static_cast<double>(nslots);
        if (projected_ + extra > cap_) {
            if (give_up_) {  // the caller has a better layout to try first
                over_ = true;
                return dp::kEmptyRef;
            }
            ++stats_.capped;
            return leaf(rules, c);
        }
        projected_ += extra;
        const std::uint32_t node = alloc(2 + nslots);
        if (node == 0)
            return dp::kEmptyRef;
        tree_steps_ = std::max(tree_steps_, depth);
        const unsigned shift = c.rem[best.dim] - best.bits;
        words_[node] = best.dim | shift << 8 | best.bits << 16;
        words_[node + 1] = node + 2;
        ++stats_.nodes;
        for (std::size_t g = 0; g + 1 < starts.size(); ++g) {
            const std::uint32_t s = starts[g];
            const std::uint32_t e = starts[g + 1] - 1;  // the run's last slot
            Cell child = c;
            child.lo[best.dim] = c.lo[best.dim] + (s << shift);
            child.rem[best.dim] = s == e ? shift : 0;
            if (!(c.aliased >> best.dim & 1)) {
                child.rlo[best.dim] = child.lo[best.dim];
                child.rhi[best.dim] = c.lo[best.dim] + (((e + 1) << shift) - 1);
            }
            path_.push_back(static_cast<std::uint32_t>(g));
            const std::uint32_t ref = build(runs[g], child, depth + 1);
            path_.pop_back();
            std::vector<std::uint32_t>().swap(runs[g]);
            for (std::uint32_t slot = s; slot <= e; ++slot)
                words_[node + 2 + slot] = ref;
        }
        return node;
    }

    /// A leaf of `rules` (in rank order) for the packets of cell `c`: its checked dimensions, in
    /// blocks (trie.h).
    std::uint32_t leaf(const std::vector<std::uint32_t>& rules, const Cell& c) {
        // The dimensions this leaf checks: those of the tree in which some entry does not cover
        // the whole region of packets that reach the leaf ([rlo, rhi]: exact, as a run of slots
        // is never cut again in its dimension, or wider where a cell was narrowed without a
        // node). The others admit every such packet.
        std::uint32_t mask = 0;
        for (std::uint32_t dm = tree_mask_; dm; dm &= dm - 1) {
            const unsigned d = static_cast<unsigned>(__builtin_ctz(dm));
            for (const auto r : rules)
                if (lo(r, d) > c.rlo[d] || hi(r, d) < c.rhi[d]) {
                    mask |= 1u << d;
                    break;
                }
        }
        // Dimensions whose region is at most 2^16 wide take 16-bit lanes (trie.h), entries
        // clamped to the region.
        std::uint32_t narrow = 0;
        for (std::uint32_t dm = mask; dm; dm &= dm - 1) {
            const unsigned d = static_cast<unsigned>(__builtin_ctz(dm));
            if (c.rhi[d] - c.rlo[d] <= 0xffff)
                narrow |= 1u << d;
        }
        const std::uint32_t wide = mask & ~narrow;
        const std::uint32_t n = static_cast<std::uint32_t>(rules.size());
        // Equal leaves are stored once: the same entries, checked dimensions and, for the 16-bit
        // ones, region (their entries are clamped to it) make the same words.
        leaf_key_.assign(rules.begin(), rules.end());
        leaf_key_.push_back(wide);
        leaf_key_.push_back(narrow);
        for (std::uint32_t dm = narrow; dm; dm &= dm - 1) {
            const unsigned d = static_cast<unsigned>(__builtin_ctz(dm));
            leaf_key_.push_back(c.rlo[d]);
            leaf_key_.push_back(c.rhi[d]);
        }
        if (const auto it = leaves_.find(leaf_key_); it != leaves_.end())
            return it->second;
        std::uint32_t words = 0;
        for (std::uint32_t b = 0; b < n; b += dp::kBlock)
            words += dp::leaf_block_words(wide, narrow, std::min(dp::kBlock, n - b));
        const std::uint32_t at = alloc(dp::kLeafHeaderWords + n + words);
        if (at == 0)
            return dp::kEmptyRef;
        words_[at] = 0;  // dimension 0, shift 0, mask 0: the step lands on the next slot,
        words_[at + 1] = at + 2;  // which holds this leaf's own ref
        words_[at + 2] = at;
        words_[at + dp::kLeafN] = n;
        words_[at + dp::kLeafWide] = wide;
        words_[at + dp::kLeafNarrow] = narrow;
        for (std::uint32_t i = 0; i < n; ++i)
            words_[at + dp::kLeafHeaderWords + i] = ranks_[rules[i]];
        std::uint32_t* lanes = &words_[at + dp::kLeafHeaderWords + n];
        for (std::uint32_t b = 0; b < n; b += dp::kBlock) {
            const std::uint32_t m = std::min(dp::kBlock, n - b);
            for (std::uint32_t dm = wide; dm; dm &= dm - 1, lanes += 2 * m) {
                const unsigned d = static_cast<unsigned>(__builtin_ctz(dm));
                for (std::uint32_t i = 0; i < m; ++i) {
                    lanes[i] = lo(rules[b + i], d);
                    lanes[m + i] = hi(rules[b + i], d) - lo(rules[b + i], d);
                }
            }
            for (std::uint32_t dm = narrow; dm; dm &= dm - 1, lanes += m) {
                const unsigned d = static_cast<unsigned>(__builtin_ctz(dm));
                std::uint16_t half[2 * dp::kBlock];
                for (std::uint32_t i = 0; i < m; ++i) {
                    // Every entry of the leaf overlaps its region (it was put here for that).
                    const std::uint32_t l = std::max(lo(rules[b + i], d), c.rlo[d]);
                    const std::uint32_t h = std::min(hi(rules[b + i], d), c.rhi[d]);
                    half[i] = static_cast<std::uint16_t>(l);
                    half[m + i] = static_cast<std::uint16_t>(h - l);
                }
                std::memcpy(lanes, half, 4 * m);
            }
        }
        ++stats_.leaves;
        stats_.leaf_entries += n;
        stats_.max_leaf = std::max<std::size_t>(stats_.max_leaf, n);
        leaves_.emplace(leaf_key_, at);
        return at;
    }

    /// `n` words at the end of the arena; 0 when the memory limit would be passed.
    std::uint32_t alloc(std::size_t n) {
        if (words_.size() + n > limit_words_ || words_.size() + n >= (std::size_t{1} << 32)) {
            over_ = true;
            return 0;
        }
        const auto at = static_cast<std::uint32_t>(words_.size());
        words_.resize(words_.size() + n);
        return at;
    }

    const std::vector<std::uint32_t>& lo_;
    const std::vector<std::uint32_t>& hi_;
    const std::vector<dp::Rank>& ranks_;
    unsigned dims_;
    TrieBuildOptions opt_;
    std::vector<std::uint32_t> words_;
    std::size_t limit_words_ = 0;
    bool over_ = false;
    std::unordered_map<std::vector<std::uint32_t>, std::uint32_t, VecHash> leaves_;
    std::vector<std::int64_t> diff_;
    std::vector<std::uint8_t> mark_;
    std::vector<std::uint32_t> leaf_key_;
    std::vector<std::uint32_t> aoff_, zoff_;
    std::uint32_t tree_mask_ = 0;
    unsigned tree_steps_ = 0;
    CutMemo& memo_;
    std::vector<std::uint32_t> path_;
    TrieBuildStats stats_;
    double projected_ = 0, cap_ = 0;
    bool give_up_ = false;
};

}  // namespace

namespace {

/// Entry copies a layout may have on top of its per-entry bound; a small policy (one whose
/// per-entry bound is below that) gets room for a deep tree: 64K copies are a few MB and
/// milliseconds.
constexpr double kFixedCopies = 4096;
constexpr double kSmallPolicyCopies = 65536;

/// A small policy's layouts are all built whole (the quick try of the single tree saves time
/// only where builds are long), with kSmallPolicyCopies of room.
bool small_policy(std::size_t entries, const TrieBuildOptions& opt) {
    return opt.copies_per_entry * static_cast<double>(entries) < kSmallPolicyCopies;
}

/// One way of splitting the entries into trees, built.
struct Layout {
    std::vector<std::uint32_t> words;
    std::vector<std::uint32_t> roots, tree_steps;
    std::vector<dp::Rank> best_rank;
    TrieBuildStats stats;
    bool over_limit = false;
};

/// A way of splitting the entries into trees: a group of entries per tree, and a name for each
/// group that another grouping gives the same group (they share their cut choices, CutMemo).
struct Grouping {
    std::vector<std::vector<std::uint32_t>> groups;
    std::vector<std::uint32_t> ids;
};

/// The layout of `grouping`. With `copies_per_entry` (not 0), the build gives up (over_limit) as
/// soon as its leaves would hold more copies than that: a quick first try.
Layout build_layout(const Grouping& grouping, const std::vector<std::uint32_t>& lo,
                    const std::vector<std::uint32_t>& hi, const std::vector<dp::Rank>& ranks,
                    const std::vector<unsigned>& widths, const TrieBuildOptions& opt, CutMemo& memo,
                    double copies_per_entry = 0) {
    const unsigned dims = static_cast<unsigned>(widths.size());
    TrieBuilder b(lo, hi, ranks, dims, opt, memo);
    // The quick try gives up at exactly its copies per entry (the test for trying the groups);
    // the bound of a whole build leaves small policies some room.
    const double n = static_cast<double>(ranks.size());
    b.set_cap(ranks.size(),
              copies_per_entry ? copies_per_entry * n
                               : opt.copies_per_entry * n + (small_policy(ranks.size(), opt) ? kSmallPolicyCopies : kFixedCopies),
              copies_per_entry != 0);
    Layout l;
    for (std::size_t i = 0; i < grouping.groups.size(); ++i) {
        auto g = grouping.groups[i];
        if (g.empty())
            continue;
        // The dimensions some entry of the tree narrows; in the others every entry admits all.
        std::uint32_t mask = 0;
        for (unsigned d = 0; d < dims; ++d) {
            const std::uint32_t top = widths[d] >= 32 ? ~std::uint32_t{0} : (std::uint32_t{1} << widths[d]) - 1;
            for (const auto r : g)
                if (lo[r * dims + d] != 0 || hi[r * dims + d] != top) {
                    mask |= 1u << d;
                    break;
                }
        }
        const dp::Rank best = ranks[g.front()];
        const std::uint32_t root = b.build_tree(g, widths, mask, grouping.ids[i]);
        if (b.over_limit()) {
            l.over_limit = true;
            return l;
        }
        l.roots.push_back(root);
        l.best_rank.push_back(best);
        l.tree_steps.push_back(b.tree_steps());
    }
    l.stats = b.stats();
    l.stats.trees = static_cast<unsigned>(l.roots.size());
    l.stats.entries = ranks.size();
    l.words = std::move(b.words());
    l.stats.bytes = l.words.size() * sizeof(std::uint32_t);
    return l;
}

/// The lookup work a layout costs on packets drawn from the entries themselves (a point of a
/// random entry's box), in units of a step: the steps of every tree a packet walks, each leaf's
/// first block (per checked dimension), and the blocks after it. Those are dear: the chunk scans
/// them in a second pass, a branch per packet mispredicted and their lines cold (measured on
/// ClassBench: a further block per packet costs as much as 8 to 25 steps). Not a timing: a
/// count, so that the choice is the same on every machine.
constexpr double kFurtherBlock = 8.0;

/// Entry copies in the single tree's leaves, per entry, above which one tree per group is tried.
constexpr std::size_t kGroupWhenCopies = 3;

/// Blocks of one leaf the estimate scans per packet; a packet that gets that far in a leaf (only
/// the leaves the copy bound leaves large) is taken to scan the whole leaf.
constexpr std::uint32_t kScannedBlocks = 32;

struct Work {
    double cost = 0;  ///< per packet, in step units
    double rest = 0;  ///< leaf blocks after the first scanned per packet
};

Work lookup_cost(const Layout& l, const std::vector<dp::TrieKey>& sample, const std::vector<dp::Rank>& ranks,
                 const std::vector<std::uint32_t>& lo, const std::vector<std::uint32_t>& hi, unsigned dims) {
    constexpr double kStep = 1.0, kBlock = 0.6, kBlockDim = 0.5;
    double rest = 0;
    std::vector<std::uint32_t> index_of(ranks.empty() ? 0 : ranks.back() + 1);
    for (std::size_t i = 0; i < ranks.size(); ++i)
        index_of[ranks[i]] = static_cast<std::uint32_t>(i);
    const std::uint32_t* w = l.words.data();
    double cost = 0;
    for (const auto& k : sample) {
        dp::Rank best = dp::kNoMatch;
        for (std::size_t tree = 0; tree < l.roots.size(); ++tree) {
            if (best < l.best_rank[tree])
                continue;
            std::uint32_t ref = l.roots[tree];
            for (std::uint32_t s = 0; s < l.tree_steps[tree]; ++s) {
                const std::uint32_t h = w[ref];
                ref = w[w[ref + 1] + dp::slot_index(k.d[h & 0xff], h)];
            }
            cost += kStep * l.tree_steps[tree];
            const std::uint32_t n = w[ref + dp::kLeafN];
            const unsigned nd = static_cast<unsigned>(__builtin_popcount(w[ref + dp::kLeafWide] | w[ref + dp::kLeafNarrow]));
            cost += kBlock + kBlockDim * nd;  // the first block, scanned for every packet
            for (std::uint32_t b = 0; b < n; b += dp::kBlock) {
                if (b > 0) {
                    cost += kFurtherBlock;
                    ++rest;
                }
                if (b == kScannedBlocks * dp::kBlock) {  // a huge leaf: the rest as if all scanned
                    const double more = static_cast<double>((n - b + dp::kBlock - 1) / dp::kBlock) - 1;
                    cost += kFurtherBlock * more;
                    rest += more;
                    break;
                }
                bool found = false;
                for (std::uint32_t i = b; i < std::min(n, b + dp::kBlock) && !found; ++i) {
                    const dp::Rank r = w[ref + dp::kLeafHeaderWords + i];
                    const std::uint32_t e = index_of[r];
                    unsigned d = 0;
                    while (d < dims && k.d[d] - lo[e * dims + d] <= hi[e * dims + d] - lo[e * dims + d])
                        ++d;
                    if (d == dims) {
                        best = std::min(best, r);
                        found = true;
                    }
                }
                if (found)
                    break;
            }
        }
    }
    if (sample.empty())
        return {};
    return {cost / static_cast<double>(sample.size()), rest / static_cast<double>(sample.size())};
}

}  // namespace

Result<BuiltTrie> build_trie(std::span<const dp::Entry> ranked, dp::Family family, const TrieBuildOptions& opt) {
    const std::vector<unsigned> widths = dim_widths(family);
    const unsigned dims = static_cast<unsigned>(widths.size());
    // An address is narrow where its prefix fixes the bits of a node's widest cut (max_cut_bits)
    // past the longest prefix that holds three quarters of the policy's (non-empty) prefixes:
    // the first cut of its tree past that prefix then separates it from the others. IPv4
    // ClassBench sets share no such prefix (narrow: /16 and longer); a policy whose addresses lie
    // in 2001:db8::/96 is narrow from /112 on, not from /64, where every entry would be narrow
    // and the groups would not separate the wide ones; a link-local filter or two outside that
    // prefix change nothing; random IPv6 prefixes under 2001:db8::/32 are narrow from /48.
    const auto narrow_from = [&](bool src) {
        const unsigned bits = dp::addr_bits(family);
        std::vector<std::uint32_t> in;  // the entries inside the prefix found so far
        for (std::uint32_t r = 0; r < ranked.size(); ++r)
            if (const dp::Entry& e = ranked[r]; e.family == family && (src ? e.src_len : e.dst_len) > 0)
                in.push_back(r);
        const std::size_t total = in.size();
        unsigned common = 0;
        for (; common < bits; ++common) {
            std::size_t ones = 0, zeros = 0;
            const auto bit = [&](std::uint32_t r) {
                const dp::Addr& a = src ? ranked[r].src : ranked[r].dst;
                return static_cast<unsigned>(a.bytes[common / 8] >> (7 - common % 8) & 1);
            };
            const auto fixes = [&](std::uint32_t r) { return (src ? ranked[r].src_len : ranked[r].dst_len) > common; };
            for (const auto r : in)
                if (fixes(r))
                    (bit(r) ? ones : zeros) += 1;
            if (4 * std::max(ones, zeros) <= 3 * total)
                break;
            const unsigned keep = ones > zeros;
            std::erase_if(in, [&](std::uint32_t r) { return !fixes(r) || bit(r) != keep; });
        }
        return std::min(bits, common + opt.max_cut_bits);
    };
    const unsigned narrow_src = narrow_from(true), narrow_dst = narrow_from(false);

    // The family's header-only entries in rank order, as ranges.
    std::vector<std::uint32_t> lo, hi;
    std::vector<dp::Rank> ranks;
    // Trees are named by their entries: the fine grouping shares its first two groups with the
    // coarse one.
    Grouping single{{{}}, {0}}, grouped{{{}, {}, {}}, {1, 2, 3}}, fine{{{}, {}, {}, {}, {}}, {1, 2, 4, 5, 6}};
    static_assert(dp::kMaxTrees == 5);
    // Of payload entries with the same header fields only the best-ranked can be a packet's
    // best match (the scan finds the others through the patterns that matched), so only it is
    // kept: a thousand signatures on one port cost the trie one entry.
    std::set<std::vector<std::uint32_t>> payload_headers;
    for (std::size_t r = 0; r < ranked.size(); ++r) {
        const dp::Entry& e = ranked[r];
        if (e.family != family || (e.payload != dp::kNoPayload && !opt.with_payload))
            continue;
        std::uint32_t l[kMaxDims], h[kMaxDims];
        dp::rule_ranges(e, l, h);
        if (e.payload != dp::kNoPayload) {
            std::vector<std::uint32_t> header(l, l + dims);
            header.insert(header.end(), h, h + dims);
            if (!payload_headers.insert(std::move(header)).second)
                continue;
        }
        const auto idx = static_cast<std::uint32_t>(ranks.size());
        lo.insert(lo.end(), l, l + dims);
        hi.insert(hi.end(), h, h + dims);
        ranks.push_back(static_cast<dp::Rank>(r));
        single.groups[0].push_back(idx);
        // Grouped by the address that is narrow, so that each trie cuts a dimension in which its
        // entries are not wide (entries wide in a cut dimension are copied into every branch).
        grouped.groups[e.src_len >= narrow_src ? 0 : e.dst_len >= narrow_dst ? 1 : 2].push_back(idx);
        // Finer: the entries wide in both addresses by the port that is narrow. A dimension is
        // narrow where the entry fixes at least half of its bits (a port range of at most 2^8).
        const auto narrow_port = [&](unsigned d) { return h[d] - l[d] < 256; };
        const unsigned p1 = dims - 4, p2 = dims - 3;
        fine.groups[e.src_len >= narrow_src ? 0 : e.dst_len >= narrow_dst ? 1 : narrow_port(p2) ? 2 : narrow_port(p1) ? 3 : 4]
            .push_back(idx);
    }
    // Two layouts: one trie over all entries (no tree to skip, but wide entries are copied), or
    // one per group. Which is cheaper depends on the policy, so both are built and the one that
    // does less work on packets drawn from the policy's own entries is kept.
    std::vector<dp::TrieKey> sample;
    {
        std::mt19937 rng(static_cast<std::uint32_t>(ranks.size()));
        const std::size_t n = ranks.empty() ? 0 : std::min<std::size_t>(1024, ranks.size() / 2 + 64);
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t e = rng() % ranks.size();
            dp::TrieKey k{};
            for (unsigned d = 0; d < dims; ++d) {
                const std::uint64_t span = std::uint64_t{hi[e * dims + d]} - lo[e * dims + d] + 1;
                k.d[d] = lo[e * dims + d] + static_cast<std::uint32_t>(rng() % span);
            }
            sample.push_back(k);
        }
    }
    struct Candidate {
        const Grouping* groups;
        Layout layout;
        Work work;
    };
    std::vector<Candidate> cands;
    CutMemo memo;  // a tree's depths share their upper levels, and so do groupings with the tree in common
    const auto consider = [&](const Grouping& groups, const TrieBuildOptions& o,
                              double give_up_past = 0) {
        Layout l = build_layout(groups, lo, hi, ranks, widths, o, memo, give_up_past);
        if (l.over_limit)
            return false;
        const Work w = lookup_cost(l, sample, ranks, lo, hi, dims);
        // Only the cheapest layout so far keeps its words (the others' costs and groups stay,
        // for the deeper tries): at most two layouts exist at any time.
        for (auto& c : cands)
            if (c.work.cost <= w.cost)
                std::vector<std::uint32_t>().swap(l.words);
        if (!l.words.empty())
            for (auto& c : cands)
                std::vector<std::uint32_t>().swap(c.layout.words);
        cands.push_back({&groups, std::move(l), w});
        return true;
    };
    // One tree per group pays when the single tree copies its wide entries into many leaves, or
    // does not fit at all: the single tree is tried first only until it copies that much, then
    // the groups; it is built whole only when they copy as much themselves.
    const bool few = ranks.size() <= opt.leaf_size;
    if (small_policy(ranks.size(), opt)) {
        // Both built whole, the cheaper kept: a small policy's bound is mostly the fixed copies,
        // and its deep single tree often wins (fw1_1K: 42 cycles per packet against 48).
        consider(single, opt);
        if (!few && (cands.empty() || cands.front().layout.stats.leaf_entries > kGroupWhenCopies * ranks.size()))
            consider(grouped, opt);
    } else if (few || !consider(single, opt, kGroupWhenCopies)) {
        if (!few && (!consider(grouped, opt) || cands.back().layout.stats.leaf_entries > kGroupWhenCopies * ranks.size()))
            consider(single, opt);
        else if (few)
            consider(single, opt);
    }
    const auto cheapest = [&] {
        const Candidate* b = nullptr;
        for (const auto& c : cands)
            if (!b || c.work.cost < b->work.cost)
                b = &c;
        return b;
    };
    // Deeper trees trade steps for blocks after the first: each layout from `first` on within
    // twice the cheapest's cost one level at a time, while those blocks still cost it more than a
    // step per packet and the deeper one is cheaper.
    const auto deepen = [&](std::size_t first) {
        const double reach = 2 * cheapest()->work.cost;
        for (std::size_t built = cands.size(); first < built; ++first) {
            TrieBuildOptions deeper = opt;
            // A layout that reached the copy bound gains nothing deeper: its refused cuts stay refused.
            for (std::size_t at = first; opt.max_depth != 0 && cands[at].work.cost < reach &&
                                         cands[at].layout.stats.capped == 0 && cands[at].work.rest * kFurtherBlock > 1.0 &&
                                         deeper.max_depth < opt.max_depth + 3;) {
                ++deeper.max_depth;
                const std::size_t before = cands.size();
                consider(*cands[at].groups, deeper);
                if (cands.size() == before || cands.back().work.cost >= cands[at].work.cost)
                    break;
                at = cands.size() - 1;
            }
        }
    };
    if (!cands.empty())
        deepen(0);
    // Entries wide in both addresses and narrow in a port share the coarse groups' last tree with
    // the rest, where their overlap leaves large leaves (port lists, wide IPv6 prefixes): when the
    // cheapest layout so far still scans leaf blocks after the first for more than a step's cost
    // per packet, or was bounded by the copy cap, those entries get trees of their own too; that
    // layout is taken deeper only if it is the cheapest.
    if (const Candidate* c = cands.empty() ? nullptr : cheapest();
        !few && c && (c->work.rest * kFurtherBlock > 1.0 || c->layout.stats.capped > 0) &&
        (!fine.groups[2].empty() || !fine.groups[3].empty())) {
        const std::size_t at = cands.size();
        if (consider(fine, opt) && cheapest() == &cands[at])
            deepen(at);
    }
    if (opt.cancel && opt.cancel->load(std::memory_order_relaxed)) {
        return fail("cancelled");
    }
    const Candidate* chosen = cheapest();
    const Layout* best = chosen ? &chosen->layout : nullptr;
    if (!best) {
        return fail("the classifier for " + std::to_string(ranks.size()) + (family == dp::Family::ipv4 ? " IPv4" : " IPv6") +
                    " entries would need more than " + std::to_string(opt.memory_limit >> 20) +
                    " MB; simplify the policy (fewer overlapping wide filters) or raise classifier_memory_mb");
    }
    dp::Trie t;
    t.dims = dims;
    t.roots = best->roots;
    t.best_rank = best->best_rank;
    t.tree_steps = best->tree_steps;
    const std::vector<std::uint32_t>& w = best->words;
    t.size = w.size();
    const std::size_t bytes = w.size() * sizeof(std::uint32_t) + 64;  // + the zero tail of trie.h
    t.words = dp::allocate_trie_words(bytes);
    if (!t.words)
        return fail("out of memory for the classifier (" + std::to_string(bytes >> 20) + " MB)");
    std::memcpy(t.words.get(), w.data(), w.size() * sizeof(std::uint32_t));
    return BuiltTrie{std::move(t), best->stats};
}

}  // namespace moat::ctl
