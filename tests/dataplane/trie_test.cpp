// The trie against the reference classifier (the oracle) and against rte_acl (a second,
// independent oracle): random policies of every field kind x random and boundary packets, every
// ClassBench family with both traces (IPv4 and IPv6), every burst size, every leaf scan.
#include "dataplane/trie.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/config/packet_spec.h"
#include "control/compile/tables.h"
#include "control/compile/trie_build.h"
#include "dataplane/classifier_ref.h"
#include "dataplane/classify.h"
#include "perf/acl_anchor.h"
#include "perf/classbench.h"
#include "perf/shapes.h"
#include "tests/common/eal_env.h"
#include "tests/common/keys.h"

namespace moat::dp {
namespace {

using test::key_of;

// --- random policies ---------------------------------------------------------------------------

std::string random_host(std::mt19937& rng, Family f) {
    switch (rng() % 8) {
    case 0: return "*";
    case 1: return "me";
    default: break;
    }
    std::ostringstream s;
    if (f == Family::ipv4) {
        static const unsigned kLens[] = {0, 8, 15, 16, 20, 24, 27, 30, 31, 32, 32, 32};
        const unsigned len = kLens[rng() % std::size(kLens)];
        std::uint32_t a = 0xC6120000u | (rng() % 4) << 8 | (rng() % 2 ? 10 + rng() % 3 : rng() % 256);
        if (rng() % 10 == 0)
            a = static_cast<std::uint32_t>(rng());
        a &= len == 0 ? 0 : ~std::uint32_t{0} << (32 - len);
        s << (a >> 24) << '.' << ((a >> 16) & 255) << '.' << ((a >> 8) & 255) << '.' << (a & 255) << '/' << len;
    } else {
        static const unsigned kLens[] = {0, 32, 48, 64, 96, 120, 127, 128, 128};
        const unsigned len = kLens[rng() % std::size(kLens)];
        std::array<std::uint8_t, 16> b{0x20, 0x01, 0x0d, 0xb8};
        b[5] = static_cast<std::uint8_t>(rng() % 3);
        b[15] = static_cast<std::uint8_t>(rng() % 2 ? 0x10 + rng() % 3 : rng() % 256);
        for (unsigned i = 0; i < 16; ++i) {
            const unsigned keep = len >= 8 * (i + 1) ? 8 : len > 8 * i ? len - 8 * i : 0;
            b[i] &= static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
        }
        char buf[64];
        inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
        s << '[' << buf << "]/" << len;
    }
    return s.str();
}

std::string random_ports(std::mt19937& rng) {
    switch (rng() % 6) {
    case 0:
    case 1: return "";
    case 2: return std::to_string(rng() % 100);
    case 3: {
        const unsigned lo = rng() % 100;
        return std::to_string(lo) + "-" + std::to_string(lo + rng() % 50);
    }
    case 4: {
        const unsigned lo = rng() % 65536;
        return std::to_string(lo) + "-" + std::to_string(lo + rng() % (65536 - lo));
    }
    default:  // long ranges that start inside the same low slots: shared subtrees' edge case
        return std::to_string(rng() % 2000) + "-" + std::to_string(30000 + rng() % 35000);
    }
}

std::string random_filter(std::mt19937& rng) {
    const Family f = rng() % 3 ? Family::ipv4 : Family::ipv6;
    std::string src = random_host(rng, f), dst = random_host(rng, f);
    std::string proto, sp, dp, icmp;
    switch (rng() % 8) {
    case 0: break;
    case 1:
    case 2: proto = "TCP"; break;
    case 3: proto = "UDP"; break;
    case 4: proto = "SCTP"; break;
    case 5: proto = f == Family::ipv4 ? "ICMP" : "ICMPV6"; break;
    case 6: proto = "GRE"; break;
    default: proto = std::to_string(rng() % 256); break;
    }
    if (proto == "TCP" || proto == "UDP" || proto == "SCTP") {
        sp = random_ports(rng);
        dp = random_ports(rng);
    }
    if ((proto == "ICMP" || proto == "ICMPV6") && rng() % 2)
        icmp = std::to_string(rng() % 4) + (rng() % 2 ? "/" + std::to_string(rng() % 3) : "");
    std::string t = src + (sp.empty() ? "" : ":" + sp) + (rng() % 2 ? "+" : "=") + dst;
    if (!proto.empty())
        t += ":" + dp + ":" + proto + (icmp.empty() ? "" : ":" + icmp);
    if (rng() % 5 == 0)
        t += rng() % 2 ? " on=outside" : " on=inside";
    return t;
}

/// A policy of `n` random filters, each in its own list, permitted or blocked at random.
ctl::LoadResult random_policy(std::mt19937& rng, int n) {
    for (;;) {
        std::string t = "[appliance]\nme = 198.18.0.10, 198.18.1.10, [2001:db8::10]\nassign = P\n";
        std::string rules;
        for (int i = 0; i < n; ++i) {
            t += "[filterlist L" + std::to_string(i) + "]\nfilter = " + random_filter(rng) + "\n";
            rules += "rule = L" + std::to_string(i) + (rng() % 2 ? " -> permit\n" : " -> block\n");
        }
        t += "[policy P]\n" + rules;
        ctl::LoadResult r = ctl::load_policy_text(t, "random.ini", {.lint = false});
        if (r.usable())
            return r;
    }
}

/// Packets aimed at the policy: inside an entry's ranges, on its edges, and anywhere at all.
std::vector<PacketKey> random_packets(std::mt19937& rng, std::span<const Entry> rules, int n) {
    std::vector<PacketKey> out;
    static const std::uint32_t kProtos[] = {6, 17, 132, 1, 58, 47, 0, 255};
    for (int i = 0; i < n; ++i) {
        const Family f = rng() % 3 ? Family::ipv4 : Family::ipv6;
        const unsigned dims = f == Family::ipv4 ? kDimsV4 : kDimsV6;
        std::uint32_t d[kMaxDims];
        std::vector<const Entry*> same;
        for (const auto& r : rules)
            if (r.family == f)
                same.push_back(&r);
        if (same.empty() || rng() % 8 == 0) {
            for (unsigned j = 0; j < dims; ++j)
                d[j] = static_cast<std::uint32_t>(rng());
            d[dims - 4] &= 0xffff;
            d[dims - 3] &= 0xffff;
            d[dims - 2] = kProtos[rng() % std::size(kProtos)];
            d[dims - 1] &= 1;
        } else {
            std::uint32_t lo[kMaxDims], hi[kMaxDims];
            rule_ranges(*same[rng() % same.size()], lo, hi);
            for (unsigned j = 0; j < dims; ++j) {
                const std::uint64_t span = std::uint64_t{hi[j]} - lo[j] + 1;
                switch (rng() % 6) {
                case 0: d[j] = lo[j]; break;
                case 1: d[j] = hi[j]; break;
                case 2: d[j] = lo[j] - 1; break;  // just outside (wraps harmlessly)
                case 3: d[j] = hi[j] + 1; break;
                default: d[j] = lo[j] + static_cast<std::uint32_t>(rng() % span); break;
                }
            }
            d[dims - 4] &= 0xffff;
            d[dims - 3] &= 0xffff;
            if (lo[dims - 2] != hi[dims - 2])
                d[dims - 2] = kProtos[rng() % std::size(kProtos)];
            d[dims - 2] &= 0xff;
            d[dims - 1] &= 1;
        }
        out.push_back(key_of(d, f));
    }
    return out;
}

/// Every packet through trie_lookup, and each family's packets in bursts of 32 through
/// trie_classify (its own walk: chunks, trees skipped per packet, repeated keys).
void expect_same_as_reference(const TableSet& t, const std::vector<PacketKey>& packets, const std::string& what) {
    std::size_t mismatches = 0;
    for (const LeafScan scan : supported_leaf_scans()) {
        for (std::size_t i = 0; i < packets.size(); ++i) {
            const PacketKey& k = packets[i];
            const Rank want = classify_ref(t.rules, k);
            const Rank got = trie_lookup(k.family == Family::ipv4 ? t.v4 : t.v6, trie_key(k), scan);
            if (want != got && ++mismatches <= 5)
                ADD_FAILURE() << what << ": packet " << i << " (scan " << int(scan) << "): reference " << want
                              << ", trie " << got;
        }
        for (const Family f : {Family::ipv4, Family::ipv6}) {
            std::vector<TrieKey> keys;
            std::vector<Rank> want;
            for (const auto& k : packets)
                if (k.family == f) {
                    keys.push_back(trie_key(k));
                    want.push_back(classify_ref(t.rules, k));
                }
            std::vector<Rank> got(keys.size());
            for (std::size_t at = 0; at < keys.size(); at += 32) {
                const std::size_t n = std::min<std::size_t>(32, keys.size() - at);
                trie_classify(f == Family::ipv4 ? t.v4 : t.v6, {keys.data() + at, n}, {got.data() + at, n}, scan);
            }
            for (std::size_t i = 0; i < keys.size(); ++i)
                if (want[i] != got[i] && ++mismatches <= 5)
                    ADD_FAILURE() << what << ": " << (f == Family::ipv4 ? "IPv4" : "IPv6") << " burst packet " << i
                                  << " (scan " << int(scan) << "): reference " << want[i] << ", trie " << got[i];
        }
    }
    EXPECT_EQ(mismatches, 0u) << what;
}

TEST(TrieRandom, MatchesTheReferenceOnRandomPolicies) {
    std::mt19937 rng(4242);
    for (int round = 0; round < 60; ++round) {
        const int n = 1 + static_cast<int>(rng() % (round < 30 ? 40 : 400));
        const ctl::LoadResult lr = random_policy(rng, n);
        const auto packets = random_packets(rng, lr.compiled->rules, 600);
        // Small leaves and narrow cuts force deep tries; the defaults make wide ones.
        for (const unsigned leaf : {1u, 3u, 16u}) {
            TableSet t;
            t.rules = lr.compiled->rules;
            ctl::TrieBuildOptions opt;
            opt.leaf_size = leaf;
            opt.max_cut_bits = leaf == 1 ? 2 : 16;
            opt.max_depth = leaf == 1 ? 0 : leaf == 3 ? 2 : opt.max_depth;
            auto v4 = ctl::build_trie(t.rules, Family::ipv4, opt);
            auto v6 = ctl::build_trie(t.rules, Family::ipv6, opt);
            ASSERT_TRUE(v4 && v6) << v4.error() << v6.error();
            t.v4 = std::move(v4->trie);
            t.v6 = std::move(v6->trie);
            expect_same_as_reference(t, packets,
                                     "round " + std::to_string(round) + ", " + std::to_string(n) + " filters, leaf " +
                                         std::to_string(leaf));
            if (HasFailure())
                return;
        }
    }
}

TEST(TrieDirected, RangesStartingInsideASharedSlot) {
    // Ranges that start at different points of one slot and run on through the next ones: the
    // slots they cover fully share a subtree, which must not be built from the partly covered
    // slot (deeper cuts there would leave out entries that cover the later slots).
    std::string t = "[appliance]\nassign = P\n";
    std::string rules;
    for (int i = 0; i < 24; ++i) {
        t += "[filterlist L" + std::to_string(i) + "]\nfilter = 198.18.0.0/16=198.18.1.1:" + std::to_string(100 + 37 * i) +
             "-" + std::to_string(40000 + 7 * i) + ":TCP\n";
        rules += "rule = L" + std::to_string(i) + (i % 2 ? " -> block\n" : " -> permit\n");
    }
    t += "[policy P]\n" + rules;
    const ctl::LoadResult lr = ctl::load_policy_text(t, "ranges.ini", {.lint = false});
    ASSERT_TRUE(lr.usable());
    std::vector<PacketKey> packets;
    for (std::uint32_t port = 0; port < 41000; port += 13) {
        std::uint32_t d[kDimsV4] = {0xC6120005u, 0xC6120101u, 40000, port, 6, 0};
        packets.push_back(key_of(d, Family::ipv4));
    }
    for (const unsigned bits : {1u, 2u, 4u, 8u}) {
        TableSet ts;
        ts.rules = lr.compiled->rules;
        ctl::TrieBuildOptions opt;
        opt.leaf_size = 1;
        opt.max_cut_bits = bits;
        opt.max_depth = 0;
        auto v4 = ctl::build_trie(ts.rules, Family::ipv4, opt);
        ASSERT_TRUE(v4);
        ts.v4 = std::move(v4->trie);
        expect_same_as_reference(ts, packets, "cut bits " + std::to_string(bits));
    }
}

TEST(TrieRandom, EveryBurstSizeThroughClassifyBurst) {
    std::mt19937 rng(7);
    const ctl::LoadResult lr = random_policy(rng, 200);
    auto built = ctl::build_table_set(*lr.config, *lr.compiled, 1, 1);
    ASSERT_TRUE(built) << built.error();
    TableSet& t = *built->tables;
    const auto packets = random_packets(rng, t.rules, 64 * 33);
    std::size_t at = 0;
    for (const LeafScan scan : supported_leaf_scans()) {
        t.scan = scan;
        for (std::size_t n = 0; n <= 64; ++n) {  // beyond kBurstMax too: classify_burst chunks
            std::vector<PacketMeta> meta(n);
            std::vector<Verdict> out(n);
            for (std::size_t i = 0; i < n; ++i)
                meta[i].key = packets[(at + i) % packets.size()];
            classify_burst(t, meta, out);
            for (std::size_t i = 0; i < n; ++i) {
                const Rank want = classify_ref(t.rules, meta[i].key);
                ASSERT_EQ(out[i].rank, want) << "burst " << n << ", packet " << i;
                const DropReason why = want == kNoMatch ? DropReason::no_match
                                       : t.rules[want].action == Action::block ? DropReason::policy
                                                                               : DropReason::none;
                ASSERT_EQ(out[i].drop, why);
            }
            at += n;
        }
    }
}

TEST(TrieRandom, RepeatedAndNearlyRepeatedKeysInABurst) {
    // trie_classify gives a packet whose key equals the previous one that packet's answer. Runs
    // of one key (across chunk boundaries, whole bursts) and neighbours that differ from the
    // key before them in exactly one dimension must all get the reference's answer.
    std::mt19937 rng(99);
    const ctl::LoadResult lr = random_policy(rng, 150);
    const auto& rules = lr.compiled->rules;
    const auto packets = random_packets(rng, rules, 4000);
    for (const Family f : {Family::ipv4, Family::ipv6}) {
        auto built = ctl::build_trie(rules, f);
        ASSERT_TRUE(built) << built.error();
        const unsigned dims = f == Family::ipv4 ? kDimsV4 : kDimsV6;
        std::vector<PacketKey> pool;
        for (const auto& k : packets)
            if (k.family == f)
                pool.push_back(k);
        ASSERT_GT(pool.size(), 100u);
        std::vector<PacketKey> seq;
        std::size_t one_dim_apart = 0;  // neighbours one dimension apart with different answers
        while (seq.size() < 3000) {
            const PacketKey& a = pool[rng() % pool.size()];
            if (rng() % 2) {
                seq.insert(seq.end(), 1 + rng() % 40, a);
                continue;
            }
            const TrieKey ka = trie_key(a);
            for (unsigned j = 0; j < dims; ++j) {
                std::uint32_t d[kMaxDims];
                std::copy(ka.d, ka.d + dims, d);
                d[j] = trie_key(pool[rng() % pool.size()]).d[j];
                const PacketKey b = key_of(d, f);
                seq.push_back(a);
                seq.push_back(b);
                const TrieKey kb = trie_key(b);
                unsigned differing = 0;
                for (unsigned i = 0; i < dims; ++i)
                    differing += ka.d[i] != kb.d[i];
                one_dim_apart += differing == 1 && classify_ref(rules, a) != classify_ref(rules, b);
            }
        }
        EXPECT_GT(one_dim_apart, 20u) << "the sequence must hold neighbours that only one dimension tells apart";
        std::vector<Rank> want(seq.size());
        std::vector<TrieKey> keys(seq.size());
        for (std::size_t i = 0; i < seq.size(); ++i) {
            want[i] = classify_ref(rules, seq[i]);
            keys[i] = trie_key(seq[i]);
        }
        for (const LeafScan scan : supported_leaf_scans()) {
            for (const std::size_t burst : {1u, 7u, 31u, 32u, 33u, 64u, 100u}) {
                std::vector<Rank> got(seq.size());
                for (std::size_t at = 0; at < seq.size(); at += burst) {
                    const std::size_t n = std::min(burst, seq.size() - at);
                    trie_classify(built->trie, {keys.data() + at, n}, {got.data() + at, n}, scan);
                }
                for (std::size_t i = 0; i < seq.size(); ++i)
                    ASSERT_EQ(got[i], want[i]) << (f == Family::ipv4 ? "IPv4" : "IPv6") << " burst " << burst
                                               << ", packet " << i << " (scan " << int(scan) << ")";
            }
        }
    }
}

TEST(TrieBuild, MemoryLimitIsAnErrorNotACrash) {
    std::mt19937 rng(3);
    const ctl::LoadResult lr = random_policy(rng, 300);
    ctl::TrieBuildOptions opt;
    opt.memory_limit = 4096;
    const auto r = ctl::build_trie(lr.compiled->rules, Family::ipv4, opt);
    EXPECT_FALSE(r);
    EXPECT_NE(r.error().find("would need more than"), std::string::npos) << r.error();
}

TEST(TrieBuild, OneTreePerGroupWhenTheSingleTreeWouldPassTheMemoryLimit) {
    // fw1_10K's wildcards make one tree over all entries about 7.6 MB and one per address group
    // about 0.5 MB: under a 2 MB limit the builder must fall back on the groups, not fail.
    const std::string dir = perf::classbench_dir();
    const ctl::LoadResult lr = ctl::load_policy_text(perf::classbench_policy(dir + "/fw1_10K"), "fw1_10K", {.lint = false});
    ASSERT_TRUE(lr.usable());
    ctl::TrieBuildOptions opt;
    opt.memory_limit = std::size_t{2} << 20;
    const auto r = ctl::build_trie(lr.compiled->rules, Family::ipv4, opt);
    ASSERT_TRUE(r) << r.error();
    EXPECT_GT(r->stats.trees, 1u);
    EXPECT_LE(r->stats.bytes, opt.memory_limit);
}

TEST(TrieBuild, EmptyAndTiny) {
    std::vector<Entry> none;
    auto r = ctl::build_trie(none, Family::ipv4);
    ASSERT_TRUE(r);
    EXPECT_EQ(trie_lookup(r->trie, TrieKey{}, LeafScan::scalar), kNoMatch);
    std::vector<Entry> one(1);
    one[0].family = Family::ipv4;
    r = ctl::build_trie(one, Family::ipv4);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->stats.trees, 1u);
    for (const LeafScan s : supported_leaf_scans())
        EXPECT_EQ(trie_lookup(r->trie, TrieKey{}, s), 0u);
}

// --- generated shapes (perf/shapes.h) -----------------------------------------------------------

/// Every generated shape agrees with the reference, built as moatd builds it and with the copy
/// bound so tight that most cuts are refused (the leaves it leaves behind must still be right).
TEST(TrieShapes, MatchTheReference) {
    std::mt19937 rng(77);
    for (const auto& shape : perf::shape_names()) {
        const ctl::LoadResult lr = ctl::load_policy_text(perf::shape_policy(shape, 500), shape, {.lint = false});
        ASSERT_TRUE(lr.usable()) << shape;
        const auto packets = random_packets(rng, lr.compiled->rules, 3000);
        for (const double copies : {16.0, 1.0}) {
            TableSet t;
            t.rules = lr.compiled->rules;
            ctl::TrieBuildOptions opt;
            opt.copies_per_entry = copies;
            auto v4 = ctl::build_trie(t.rules, Family::ipv4, opt);
            auto v6 = ctl::build_trie(t.rules, Family::ipv6, opt);
            ASSERT_TRUE(v4 && v6) << shape << ": " << v4.error() << v6.error();
            t.v4 = std::move(v4->trie);
            t.v6 = std::move(v6->trie);
            expect_same_as_reference(t, packets, shape + ", copies_per_entry " + std::to_string(copies));
            if (HasFailure())
                return;
        }
    }
}

/// Random IPv6 prefixes of every length leave the coarse groups' last tree large leaves (entries
/// wide in both addresses overlap there): the builder gives the ones narrow in a port trees of
/// their own (more than the three coarse trees), and that layout is as right as any.
TEST(TrieShapes, WideAddressEntriesNarrowInAPortGetTreesOfTheirOwn) {
    const ctl::LoadResult lr = ctl::load_policy_text(perf::shape_policy("ipv6", 10000), "ipv6", {.lint = false});
    ASSERT_TRUE(lr.usable());
    auto v6 = ctl::build_trie(lr.compiled->rules, Family::ipv6);
    ASSERT_TRUE(v6) << v6.error();
    EXPECT_GT(v6->stats.trees, 3u);
    TableSet t;
    t.rules = lr.compiled->rules;
    t.v6 = std::move(v6->trie);
    auto v4 = ctl::build_trie(t.rules, Family::ipv4);
    ASSERT_TRUE(v4) << v4.error();
    t.v4 = std::move(v4->trie);
    std::mt19937 rng(5);
    expect_same_as_reference(t, random_packets(rng, lr.compiled->rules, 3000), "ipv6 shape, 10000 filters");
}

/// Where most addresses of a policy lie in one prefix (ClassBench mapped into 2001:db8::/96),
/// narrowness is judged on the bits after it: the IPv6 policy is grouped as the IPv4 one is
/// (before, every entry was narrow in IPv6's terms, one tree held them all, and fw5_10K took
/// 4000 cycles a packet), and its leaves are no larger (one more entry at most where a filter
/// is added). A filter or two outside that prefix, such as the link-local ICMPv6 permit most
/// IPv6 policies have, change nothing (a common prefix of all prefixes fell back to the cliff).
TEST(TrieBuild, AddressesInOnePrefixAreGroupedOnTheBitsAfterIt) {
    const std::string dir = perf::classbench_dir();
    for (const char* set : {"fw5_10K", "acl2_10K"}) {
        const ctl::LoadResult v4 = ctl::load_policy_text(perf::classbench_policy(dir + "/" + set), set, {.lint = false});
        ASSERT_TRUE(v4.usable()) << set;
        const auto t4 = ctl::build_trie(v4.compiled->rules, Family::ipv4);
        ASSERT_TRUE(t4) << set;
        for (const char* extra : {"", "[fe80::]/10=*::ICMPV6", "[::]/1=*:22:TCP", "*=[fe80::1]:22:TCP"}) {
            std::string text = perf::classbench_policy(dir + "/" + set, 0, true);
            text.insert(text.find("[filterlist Even]\n") + 18, *extra ? std::string("filter = ") + extra + "\n" : "");
            const ctl::LoadResult v6 = ctl::load_policy_text(text, set, {.lint = false});
            ASSERT_TRUE(v6.usable()) << set << " + " << extra;
            const auto t6 = ctl::build_trie(v6.compiled->rules, Family::ipv6);
            ASSERT_TRUE(t6) << set;
            EXPECT_EQ(t6->stats.trees, t4->stats.trees) << set << " + " << extra;
            EXPECT_LE(t6->stats.max_leaf, t4->stats.max_leaf + 1) << set << " + " << extra;
        }
    }
}

/// What bounds the builder for any shape: the leaves hold at most copies_per_entry entry copies
/// per entry (plus 4096), so the trie's size is linear in the policy. Counted, not timed.
TEST(TrieShapes, CopiesAndSizeStayLinear) {
    for (const auto& shape : perf::shape_names()) {
        const ctl::LoadResult lr = ctl::load_policy_text(perf::shape_policy(shape, 10000), shape, {.lint = false});
        ASSERT_TRUE(lr.usable()) << shape;
        for (const Family f : {Family::ipv4, Family::ipv6}) {
            const ctl::TrieBuildOptions opt;
            const auto b = ctl::build_trie(lr.compiled->rules, f, opt);
            ASSERT_TRUE(b) << shape << ": " << b.error();
            const double n = static_cast<double>(b->stats.entries);
            EXPECT_LE(static_cast<double>(b->stats.leaf_entries), opt.copies_per_entry * n + 4096) << shape;
            // Per entry copy: its rank and two lanes per checked dimension at most; per slot 4
            // bytes, slots bounded by the same budget through slot_weight.
            const double words_per_copy = 1 + 2 * (f == Family::ipv4 ? kDimsV4 : kDimsV6) + kLeafHeaderWords;
            const double bound = 4 * (words_per_copy + 1 / opt.slot_weight) * (opt.copies_per_entry * n + 4096);
            EXPECT_LE(static_cast<double>(b->stats.bytes), bound) << shape << (f == Family::ipv4 ? " IPv4" : " IPv6");
        }
    }
}

// --- ClassBench ---------------------------------------------------------------------------------

/// One ClassBench family in one address family: the trie (every leaf scan this CPU runs) and
/// rte_acl agree on every packet of the set's traces (ClassBench's default, with locality, and
/// the one without, where there is one), and both agree with the reference on a sample of each
/// (the linear reference takes about 80 us a packet on a 10K set, too slow for whole traces).
struct ClassBenchCase {
    const char* set;
    Family family;
};

class ClassBench : public ::testing::TestWithParam<ClassBenchCase> {};

constexpr std::size_t kReferenceSample = 4000;

TEST_P(ClassBench, TrieRteAclAndReferenceAgreeOnTheTraces) {
    const std::string dir = perf::classbench_dir();
    const std::string set = GetParam().set;
    const Family family = GetParam().family;
    const bool v6 = family == Family::ipv6;
    const ctl::LoadResult lr = ctl::load_policy_text(perf::classbench_policy(dir + "/" + set, 0, v6), set, {.lint = false});
    ASSERT_TRUE(lr.usable()) << (lr.diags.all().empty() ? "" : ctl::format(lr.diags.all().front()));
    const auto& rules = lr.compiled->rules;
    auto built = ctl::build_trie(rules, family);
    ASSERT_TRUE(built) << built.error();
    std::string err;
    const auto acl = perf::AclAnchor::build(rules, err, family);
    ASSERT_TRUE(acl) << err;

    std::vector<std::string> traces{"/" + set + "_trace"};
    if (!set.ends_with("_1K"))
        traces.push_back("/nolocal/" + set + "_trace");
    for (const auto& name : traces) {
        const auto trace = perf::classbench_trace(dir + name, 0, v6);
        ASSERT_GT(trace.size(), 1000u) << name;
        const std::string what = set + (v6 ? " (IPv6) " : " ") + name;
        // rte_acl first: the oracle for every packet.
        std::vector<Rank> want(trace.size());
        for (std::size_t at = 0; at < trace.size(); at += 64) {
            const std::size_t n = std::min<std::size_t>(64, trace.size() - at);
            perf::AclKey keys[64];
            const std::uint8_t* data[64];
            for (std::size_t i = 0; i < n; ++i) {
                keys[i] = perf::acl_key(trace[at + i]);
                data[i] = reinterpret_cast<const std::uint8_t*>(&keys[i]);
            }
            acl->classify(data, want.data() + at, static_cast<std::uint32_t>(n));
        }
        std::size_t ref_mismatches = 0;
        const std::size_t stride = std::max<std::size_t>(1, trace.size() / kReferenceSample);
        for (std::size_t i = 0; i < trace.size(); i += stride)
            if (const Rank r = classify_ref(rules, trace[i]); r != want[i] && ++ref_mismatches <= 5)
                ADD_FAILURE() << what << " packet " << i << ": reference " << r << ", rte_acl " << want[i];
        EXPECT_EQ(ref_mismatches, 0u) << what << ": rte_acl (" << acl->algorithm() << ") against the reference";
        // Some packets must match something, or the comparison would prove little.
        EXPECT_GT(std::count_if(want.begin(), want.end(), [](Rank r) { return r != kNoMatch; }),
                  static_cast<std::ptrdiff_t>(trace.size() / 2))
            << what;
        for (const LeafScan scan : supported_leaf_scans()) {
            std::size_t mismatches = 0;
            for (std::size_t at = 0; at < trace.size(); at += 32) {
                const std::size_t n = std::min<std::size_t>(32, trace.size() - at);
                TrieKey keys[32];
                Rank got[32];
                for (std::size_t i = 0; i < n; ++i)
                    keys[i] = trie_key(trace[at + i]);
                trie_classify(built->trie, {keys, n}, {got, n}, scan);
                for (std::size_t i = 0; i < n; ++i)
                    if (got[i] != want[at + i] && ++mismatches <= 5)
                        ADD_FAILURE() << what << " packet " << at + i << ": rte_acl " << want[at + i] << ", trie "
                                      << got[i] << " (" << leaf_scan_name(scan) << ")";
            }
            EXPECT_EQ(mismatches, 0u) << what << " scan " << leaf_scan_name(scan);
        }
    }
}

// Every family of ../shared/data/classbench (tests/data/classbench holds a copy): the three the
// builder was first tuned on at 1K and 10K, the six it never saw at 10K, and all nine over IPv6.
INSTANTIATE_TEST_SUITE_P(
    Sets, ClassBench,
    ::testing::Values(ClassBenchCase{"acl1_1K", Family::ipv4}, ClassBenchCase{"fw1_1K", Family::ipv4},
                      ClassBenchCase{"ipc1_1K", Family::ipv4}, ClassBenchCase{"acl1_10K", Family::ipv4},
                      ClassBenchCase{"acl2_10K", Family::ipv4}, ClassBenchCase{"acl4_10K", Family::ipv4},
                      ClassBenchCase{"acl5_10K", Family::ipv4}, ClassBenchCase{"fw1_10K", Family::ipv4},
                      ClassBenchCase{"fw2_10K", Family::ipv4}, ClassBenchCase{"fw3_10K", Family::ipv4},
                      ClassBenchCase{"fw5_10K", Family::ipv4}, ClassBenchCase{"ipc1_10K", Family::ipv4},
                      ClassBenchCase{"acl1_10K", Family::ipv6}, ClassBenchCase{"acl2_10K", Family::ipv6},
                      ClassBenchCase{"acl4_10K", Family::ipv6}, ClassBenchCase{"acl5_10K", Family::ipv6},
                      ClassBenchCase{"fw1_10K", Family::ipv6}, ClassBenchCase{"fw2_10K", Family::ipv6},
                      ClassBenchCase{"fw3_10K", Family::ipv6}, ClassBenchCase{"fw5_10K", Family::ipv6},
                      ClassBenchCase{"ipc1_10K", Family::ipv6}),
    [](const auto& i) { return std::string(i.param.set) + (i.param.family == Family::ipv6 ? "_v6" : ""); });

/// Malformed rule and trace lines are errors at their file and line, never a guess: a partial
/// protocol mask, a prefix length out of range or with trailing characters, a missing `:`, a
/// port range that ends before it starts, numbers too large for their field; and the last trace
/// line counts without a final newline.
TEST(ClassBenchReader, MalformedLinesAreErrorsAtTheirLine) {
    const std::string path = ::testing::TempDir() + "/moat_classbench_bad";
    const auto read = [&](const std::string& text, bool trace, bool ipv6 = false) -> std::string {
        std::ofstream(path) << text;
        try {
            if (trace)
                return std::to_string(perf::classbench_trace(path, 0, ipv6).size()) + " packets";
            perf::classbench_policy(path, 0, ipv6);
            return "read";
        } catch (const std::runtime_error& e) {
            return e.what();
        }
    };
    const std::string good = "@1.2.3.4/32\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n";
    EXPECT_EQ(read(good, false), "read");
    EXPECT_EQ(read("\n  " + good + "\r\n", false), "read");
    for (const std::string bad : {"@1.2.3.4/32\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x06/0xF0\t0x0000/0x0000\n",
                                  "@1.2.3.4/33\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n",
                                  "@1.2.3.4/32abc\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n",
                                  "@1.2.3.4/-1\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n",
                                  "@1.2.3.4/32\t5.6.7.8/32\t0 - 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n",
                                  "@1.2.3.4/32\t5.6.7.8/32\t90 : 80\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n",
                                  "@1.2.3.4/32\t5.6.7.8/32\t0 : 65536\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n",
                                  "@1.2.3.4/32\t5.6.7.8/32\t0 : 65535\t80 : 80\tzz/0xFF\t0x0000/0x0000\n",
                                  "# a comment\n"}) {
        const std::string got = read(good + bad, false);
        EXPECT_EQ(got.rfind(path + ":2: ", 0), 0u) << bad << " -> " << got;
        EXPECT_EQ(read(good + bad, false, true).rfind(path + ":2: ", 0), 0u) << bad << " (IPv6)";
    }
    EXPECT_EQ(read("", false), path + ": no rules");
    EXPECT_EQ(read("1 2 3 4 6\n5 6 7 8 17", true), "2 packets");
    EXPECT_EQ(read("1 2 3 4 6\r\n\n5 6 7 8 17\t0\t3\r\n", true), "2 packets");
    for (const std::string bad : {"1 2 3 4\n", "1 2 3 4 300\n", "4294967296 2 3 4 6\n", "1 2 65536 4 6\n", "1 2 x 4 6\n"}) {
        const std::string got = read("1 2 3 4 6\n" + bad, true);
        EXPECT_EQ(got.rfind(path + ":2: ", 0), 0u) << bad << " -> " << got;
    }
    std::remove(path.c_str());
}

/// The reader takes every valid ClassBench file: port ranges on protocols without ports (real
/// exports and the fw2 seed have them) are dropped, and ports with any protocol apply to TCP,
/// UDP and SCTP. The resulting policy loads and means what rte_acl's reading of the file means
/// for packets of each protocol.
TEST(ClassBenchReader, PortsOnProtocolsWithoutPortsAndOnAnyProtocol) {
    const std::string path = ::testing::TempDir() + "/moat_classbench_reader";
    {
        std::ofstream f(path);
        f << "@198.18.0.1/32\t198.18.1.0/24\t119 : 119\t0 : 65535\t0x02/0xFF\t0x0000/0x0000\t\n"
          << "@198.18.0.2/32\t198.18.1.0/24\t123 : 123\t0 : 65535\t0x01/0xFF\t0x0000/0x0000\t\n"
          << "@198.18.0.3/32\t198.18.1.0/24\t1000 : 2000\t80 : 80\t0x00/0x00\t0x0000/0x0000\t\n"
          << "@0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t\n";
    }
    const std::string text = perf::classbench_policy(path);
    std::remove(path.c_str());
    const ctl::LoadResult lr = ctl::load_policy_text(text, "reader", {.lint = false});
    ASSERT_TRUE(lr.usable()) << text << (lr.diags.all().empty() ? "" : ctl::format(lr.diags.all().front()));
    const auto& rules = lr.compiled->rules;
    const auto winner = [&](const std::string& spec) {
        const ctl::PacketParse p = ctl::parse_packet(spec);
        EXPECT_TRUE(p.ok()) << spec;
        const Rank r = classify_ref(rules, p.packet.key);
        return r == kNoMatch ? std::string("none") : rules[r].action == Action::permit ? "permit" : "block";
    };
    // Line 1 (even, permitted): protocol 2 from 198.18.0.1, its port range dropped.
    EXPECT_EQ(winner("2 198.18.0.1 -> 198.18.1.9"), "permit");
    // Line 2 (odd, blocked): ICMP from 198.18.0.2, any type.
    EXPECT_EQ(winner("icmp 198.18.0.2 -> 198.18.1.9 icmp 8/0"), "block");
    // Line 3 (even): TCP, UDP and SCTP with both port ranges; other protocols fall to line 4.
    for (const char* p : {"tcp", "udp", "sctp"}) {
        EXPECT_EQ(winner(std::string(p) + " 198.18.0.3:1500 -> 198.18.1.9:80"), "permit") << p;
        EXPECT_EQ(winner(std::string(p) + " 198.18.0.3:1500 -> 198.18.1.9:81"), "block") << p;
    }
    EXPECT_EQ(winner("icmp 198.18.0.3 -> 198.18.1.9 icmp 8/0"), "block");
}

}  // namespace
}  // namespace moat::dp
