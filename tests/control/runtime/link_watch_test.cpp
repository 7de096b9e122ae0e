// link_propagation's decisions: one port's lost link takes the other down and its return brings
// the other back, and no sequence of link changes leaves both ports held down.
#include "control/runtime/link_watch.h"

#include <gtest/gtest.h>

#include <random>

namespace moat::ctl {
namespace {

constexpr LinkAct kNone = LinkAct::none, kDown = LinkAct::take_down, kUp = LinkAct::bring_up;
using Acts = std::array<LinkAct, 2>;

/// The ports as a NIC shows them: a link is up when its cable is and moatd has not taken it down.
struct Wire {
    std::array<bool, 2> cable{true, true};
    std::array<bool, 2> forced_down{};
    std::array<bool, 2> up() const { return {cable[0] && !forced_down[0], cable[1] && !forced_down[1]}; }
    void apply(const Acts& a) {
        for (std::size_t i = 0; i < 2; ++i)
            if (a[i] != kNone)
                forced_down[i] = a[i] == kDown;
    }
};

TEST(LinkPropagation, ALostLinkTakesTheOtherDownUntilItReturns) {
    LinkPropagation f(true, {true, true});
    Wire w;
    EXPECT_EQ(f.observe(w.up()).act, (Acts{kNone, kNone}));
    w.cable[0] = false;  // outside's cable pulled
    auto s = f.observe(w.up());
    EXPECT_EQ(s.act, (Acts{kNone, kDown}));
    EXPECT_TRUE(s.lost[0]);
    EXPECT_FALSE(s.lost[1]);
    w.apply(s.act);
    s = f.observe(w.up());  // inside now reads down: moatd's own doing, not a loss
    EXPECT_EQ(s.act, (Acts{kNone, kNone}));
    EXPECT_FALSE(s.lost[1]);
    EXPECT_TRUE(f.held(1));
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(f.observe(w.up()).act, (Acts{kNone, kNone}));
    w.cable[0] = true;
    s = f.observe(w.up());
    EXPECT_EQ(s.act, (Acts{kNone, kUp}));
    EXPECT_TRUE(s.returned[0]);
    w.apply(s.act);
    EXPECT_FALSE(f.held(1));
    s = f.observe(w.up());
    EXPECT_EQ(s.act, (Acts{kNone, kNone}));
    EXPECT_TRUE(s.returned[1]);
}

TEST(LinkPropagation, APortStillNegotiatingAfterBeingBroughtUpIsNoCause) {
    LinkPropagation f(true, {true, true});
    EXPECT_EQ(f.observe({true, false}).act, (Acts{kDown, kNone}));  // inside lost: outside held
    EXPECT_EQ(f.observe({false, false}).act, (Acts{kNone, kNone}));
    EXPECT_EQ(f.observe({false, true}).act, (Acts{kUp, kNone}));  // inside back: outside up
    // The outside NIC negotiates for a while: down, but not lost, so inside stays up.
    for (int i = 0; i < 10; ++i)
        EXPECT_EQ(f.observe({false, true}).act, (Acts{kNone, kNone}));
    EXPECT_EQ(f.observe({true, true}).act, (Acts{kNone, kNone}));
    // Once it has had link, losing it counts again.
    EXPECT_EQ(f.observe({false, true}).act, (Acts{kNone, kDown}));
}

TEST(LinkPropagation, BothCablesPulledHoldsNeitherAndTheFirstBackIsTakenDown) {
    LinkPropagation f(true, {true, true});
    auto s = f.observe({false, false});
    EXPECT_EQ(s.act, (Acts{kNone, kNone}));
    EXPECT_TRUE(s.lost[0] && s.lost[1]);
    // outside's cable returns while inside is still dead: the outside routers must not send
    // into a dead path.
    EXPECT_EQ(f.observe({true, false}).act, (Acts{kDown, kNone}));
    EXPECT_EQ(f.observe({false, false}).act, (Acts{kNone, kNone}));
    EXPECT_EQ(f.observe({false, true}).act, (Acts{kUp, kNone}));
}

TEST(LinkPropagation, OffOnlyReportsEdges) {
    LinkPropagation f(false, {true, true});
    auto s = f.observe({false, true});
    EXPECT_EQ(s.act, (Acts{kNone, kNone}));
    EXPECT_TRUE(s.lost[0]);
    s = f.observe({true, true});
    EXPECT_TRUE(s.returned[0]);
    EXPECT_FALSE(f.held(1));
}

TEST(LinkPropagation, APortThatCannotBeTakenDownIsNotHeld) {
    LinkPropagation f(true, {true, true});
    EXPECT_EQ(f.observe({false, true}).act, (Acts{kNone, kDown}));
    f.take_down_failed(1);
    EXPECT_FALSE(f.held(1));
    // Its link stays up; nothing is brought up when outside returns.
    EXPECT_EQ(f.observe({false, true}).act, (Acts{kNone, kNone}));
    EXPECT_EQ(f.observe({true, true}).act, (Acts{kNone, kNone}));
    // A new failure tries again.
    EXPECT_EQ(f.observe({false, true}).act, (Acts{kNone, kDown}));
}

TEST(LinkPropagation, APortThatCannotBeBroughtUpStaysHeldAndIsTriedAgain) {
    LinkPropagation f(true, {true, true});
    EXPECT_EQ(f.observe({false, true}).act, (Acts{kNone, kDown}));
    EXPECT_EQ(f.observe({false, false}).act, (Acts{kNone, kNone}));
    EXPECT_EQ(f.observe({true, false}).act, (Acts{kNone, kUp}));
    f.bring_up_failed(1);
    EXPECT_TRUE(f.held(1));
    // Every later look asks again, and outside (back) is never taken down for inside's being down.
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(f.observe({true, false}).act, (Acts{kNone, kUp})) << i;
        f.bring_up_failed(1);
    }
    EXPECT_EQ(f.observe({true, false}).act, (Acts{kNone, kUp}));
    EXPECT_FALSE(f.held(1));  // it worked this time
    EXPECT_EQ(f.observe({true, true}).act, (Acts{kNone, kNone}));
}

TEST(LinkPropagation, PortsThatNeverHadLinkTakeNothingDown) {
    LinkPropagation f(true, {false, true});  // outside unplugged at start
    EXPECT_EQ(f.observe({false, true}).act, (Acts{kNone, kNone}));
    EXPECT_EQ(f.observe({true, true}).act, (Acts{kNone, kNone}));
    EXPECT_EQ(f.observe({false, true}).act, (Acts{kNone, kDown}));
}

// Random cable flaps: whatever happens, (1) moatd never holds both ports, (2) once both cables
// stay plugged in, both links are up within a few polls (no lock with both down), and (3) while
// exactly one cable is out for good, the other port is held down.
TEST(LinkPropagation, RandomFlapsNeverLockBothDown) {
    std::mt19937 rng(21);
    for (int round = 0; round < 200; ++round) {
        LinkPropagation f(true, {true, true});
        Wire w;
        for (int step = 0; step < 60; ++step) {
            if (rng() % 3 == 0)
                w.cable[rng() % 2] = rng() % 2;
            w.apply(f.observe(w.up()).act);
            ASSERT_FALSE(f.held(0) && f.held(1)) << "round " << round << " step " << step;
        }
        w.cable = {true, true};
        for (int step = 0; step < 4; ++step)
            w.apply(f.observe(w.up()).act);
        EXPECT_EQ(w.up(), (std::array<bool, 2>{true, true})) << "round " << round;
        const std::size_t cut = rng() % 2;
        w.cable[cut] = false;
        for (int step = 0; step < 4; ++step)
            w.apply(f.observe(w.up()).act);
        EXPECT_TRUE(f.held(1 - cut)) << "round " << round;
        EXPECT_EQ(w.up(), (std::array<bool, 2>{false, false})) << "round " << round;
    }
}

}  // namespace
}  // namespace moat::ctl
