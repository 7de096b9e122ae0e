// FragmentTable on its own, with the clock in the test's hands: verdicts follow the first
// fragment, expiry and sweeping free entries, the table never holds more than its capacity,
// and a remembered rank counts only in the generation that judged it.
#include <gtest/gtest.h>
#include <rte_cycles.h>

#include <vector>

#include "dataplane/fragments.h"
#include "tests/common/eal_env.h"

namespace moat::dp {
namespace {

/// A parsed fragment of datagram `id` from 198.18.100.`host` holding bytes [begin, end).
PacketMeta fragment(std::uint32_t id, std::uint32_t begin, std::uint32_t end, bool more, std::uint8_t host = 1) {
    PacketMeta m;
    m.key.family = Family::ipv4;
    m.key.src.bytes[0] = 198;
    m.key.src.bytes[1] = 18;
    m.key.src.bytes[2] = 100;
    m.key.src.bytes[3] = host;
    m.key.dst.bytes = {198, 18, 0, 10};
    m.key.proto = 6;
    m.frag = {true, more, 6, id, begin, end, FragDrop::none};
    return m;
}

class Fragments : public ::testing::Test {
protected:
    void SetUp() override {
        std::string error;
        table_ = FragmentTable::create(8, SOCKET_ID_ANY, error);
        ASSERT_TRUE(table_) << error;
        timeout_ = rte_get_tsc_hz() * kFragmentTimeoutMs / 1000;
    }

    /// Settles one packet judged `v` by the classifier; returns the settled verdict.
    Verdict settle(PacketMeta& m, Verdict v, std::uint64_t now, std::uint64_t generation = 1) {
        table_->settle({&m, 1}, {&v, 1}, generation, now);
        return v;
    }

    static constexpr Verdict kPermit{3, DropReason::none};
    std::unique_ptr<FragmentTable> table_;
    std::uint64_t timeout_ = 0;
    std::uint64_t now_ = 1'000'000;
};

TEST_F(Fragments, LaterFragmentsFollowThePermittedFirstAndTheEntryGoesWhenComplete) {
    auto first = fragment(1, 0, 24, true);
    EXPECT_EQ(settle(first, kPermit, now_).drop, DropReason::none);
    EXPECT_EQ(table_->in_use(), 1u);
    auto last = fragment(1, 48, 60, false);
    EXPECT_EQ(settle(last, {}, now_).rank, 3u);  // the classifier's own verdict is replaced
    EXPECT_EQ(table_->in_use(), 1u);             // [24, 48) is still to come
    auto middle = fragment(1, 24, 48, true);
    const Verdict v = settle(middle, {}, now_);
    EXPECT_EQ(v.drop, DropReason::none);
    EXPECT_EQ(v.rank, 3u);
    EXPECT_EQ(table_->in_use(), 0u);
    // Complete and forgotten: a replay of its tail has no first fragment any more.
    auto replay = fragment(1, 48, 60, false);
    EXPECT_EQ(settle(replay, {}, now_).drop, DropReason::fragment);
    EXPECT_EQ(replay.frag.why, FragDrop::no_first);
}

TEST_F(Fragments, ABlockedFirstFragmentIsNotRemembered) {
    auto first = fragment(2, 0, 24, true);
    EXPECT_EQ(settle(first, {4, DropReason::policy}, now_).drop, DropReason::policy);
    EXPECT_EQ(first.frag.why, FragDrop::none);
    EXPECT_EQ(table_->in_use(), 0u);
    auto later = fragment(2, 24, 60, false);
    EXPECT_EQ(settle(later, {}, now_).drop, DropReason::fragment);
    EXPECT_EQ(later.frag.why, FragDrop::no_first);
}

TEST_F(Fragments, DatagramsAreToldApartBySourceAndId) {
    auto a = fragment(7, 0, 24, true, 1);
    settle(a, kPermit, now_);
    auto other_source = fragment(7, 24, 60, false, 2);
    EXPECT_EQ(settle(other_source, {}, now_).drop, DropReason::fragment);
    auto other_id = fragment(8, 24, 60, false, 1);
    EXPECT_EQ(settle(other_id, {}, now_).drop, DropReason::fragment);
    auto own = fragment(7, 24, 60, false, 1);
    EXPECT_EQ(settle(own, {}, now_).drop, DropReason::none);
}

TEST_F(Fragments, AVerdictExpiresAndTheSweepFreesItsEntry) {
    auto first = fragment(3, 0, 24, true);
    settle(first, kPermit, now_);
    auto early = fragment(3, 24, 32, true);
    EXPECT_EQ(settle(early, {}, now_ + timeout_ - 1).drop, DropReason::none);
    auto late = fragment(3, 32, 60, false);
    EXPECT_EQ(settle(late, {}, now_ + timeout_).drop, DropReason::fragment);
    EXPECT_EQ(late.frag.why, FragDrop::no_first);
    EXPECT_EQ(table_->in_use(), 0u);  // an expired entry met by a lookup goes at once

    for (std::uint32_t id = 10; id < 14; ++id) {
        auto f = fragment(id, 0, 24, true);
        settle(f, kPermit, now_);
    }
    EXPECT_EQ(table_->in_use(), 4u);
    table_->sweep(now_ + timeout_ - 1, table_->capacity());
    EXPECT_EQ(table_->in_use(), 4u);
    table_->sweep(now_ + timeout_, table_->capacity());
    EXPECT_EQ(table_->in_use(), 0u);
}

TEST_F(Fragments, AFullTableDropsNewDatagramsAndAFreedEntryIsReused) {
    for (std::uint32_t id = 0; id < 20; ++id) {
        auto f = fragment(id, 0, 24, true);
        const Verdict v = settle(f, kPermit, now_);
        if (id < table_->capacity()) {
            EXPECT_EQ(v.drop, DropReason::none) << id;
        } else {
            EXPECT_EQ(v.drop, DropReason::fragment) << id;
            EXPECT_EQ(f.frag.why, FragDrop::table_full) << id;
        }
    }
    EXPECT_EQ(table_->in_use(), table_->capacity());
    auto done = fragment(0, 24, 60, false);
    EXPECT_EQ(settle(done, {}, now_).drop, DropReason::none);
    auto fresh = fragment(100, 0, 24, true);
    EXPECT_EQ(settle(fresh, kPermit, now_).drop, DropReason::none);
    // Entries of datagrams that never complete expire, and the table takes new ones again.
    table_->sweep(now_ + timeout_, table_->capacity());
    EXPECT_EQ(table_->in_use(), 0u);
    auto after = fragment(101, 0, 24, true);
    EXPECT_EQ(settle(after, kPermit, now_ + timeout_).drop, DropReason::none);
}

TEST_F(Fragments, OverlapsAndDuplicateFirstsPoisonTheDatagram) {
    auto first = fragment(5, 0, 24, true);
    settle(first, kPermit, now_);
    auto dup = fragment(5, 0, 24, true);
    EXPECT_EQ(settle(dup, kPermit, now_).drop, DropReason::fragment);  // even when permitted itself
    EXPECT_EQ(dup.frag.why, FragDrop::overlap);
    auto rest = fragment(5, 24, 60, false);
    EXPECT_EQ(settle(rest, {}, now_).drop, DropReason::fragment);
    EXPECT_EQ(rest.frag.why, FragDrop::overlap);

    auto f2 = fragment(6, 0, 24, true);
    settle(f2, kPermit, now_);
    auto touching = fragment(6, 24, 32, true);  // adjacent: fine
    EXPECT_EQ(settle(touching, {}, now_).drop, DropReason::none);
    auto inside = fragment(6, 8, 16, true);  // inside what has passed
    EXPECT_EQ(settle(inside, {}, now_).drop, DropReason::fragment);
    EXPECT_EQ(inside.frag.why, FragDrop::overlap);
}

TEST_F(Fragments, AScatteredDatagramIsDroppedForGood) {
    auto first = fragment(9, 0, 8, true);
    settle(first, kPermit, now_);
    for (std::uint32_t i = 1; i < kFragmentPieces; ++i) {  // disjoint pieces, none touching
        auto f = fragment(9, i * 16, i * 16 + 8, true);
        EXPECT_EQ(settle(f, {}, now_).drop, DropReason::none) << i;
    }
    auto one_more = fragment(9, kFragmentPieces * 16, kFragmentPieces * 16 + 8, true);
    EXPECT_EQ(settle(one_more, {}, now_).drop, DropReason::fragment);
    EXPECT_EQ(one_more.frag.why, FragDrop::scattered);
    auto gap = fragment(9, 8, 16, true);  // would have merged two pieces: too late
    EXPECT_EQ(settle(gap, {}, now_).drop, DropReason::fragment);
    EXPECT_EQ(gap.frag.why, FragDrop::scattered);
}

TEST_F(Fragments, ARankCountsOnlyInItsOwnGeneration) {
    auto first = fragment(11, 0, 24, true);
    settle(first, kPermit, now_, 1);
    auto later = fragment(11, 24, 32, true);
    const Verdict v = settle(later, {}, now_, 2);  // a reload came in between
    EXPECT_EQ(v.drop, DropReason::none);          // still follows its first fragment
    EXPECT_EQ(v.rank, kNoMatch);                  // but hits no filter of the new generation
}

TEST_F(Fragments, ABurstIsSettledInArrivalOrder) {
    std::vector<PacketMeta> m{fragment(12, 24, 60, false), fragment(12, 0, 24, true), fragment(12, 24, 60, false),
                              fragment(13, 0, 24, true)};
    m[3].drop = DropReason::malformed;  // dropped by the parser: not the table's business
    std::vector<Verdict> v(m.size(), kPermit);
    v[3] = {kNoMatch, DropReason::malformed};
    table_->settle(m, v, 1, now_);
    EXPECT_EQ(v[0].drop, DropReason::fragment);  // before its first
    EXPECT_EQ(v[1].drop, DropReason::none);
    EXPECT_EQ(v[2].drop, DropReason::none);
    EXPECT_EQ(v[3].drop, DropReason::malformed);
    EXPECT_EQ(m[3].frag.why, FragDrop::none);
    EXPECT_EQ(table_->in_use(), 0u);
}

}  // namespace
}  // namespace moat::dp
