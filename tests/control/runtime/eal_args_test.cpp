// The EAL command line moatd builds from the config, the command line and the machine.
#include "control/runtime/eal_args.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace moat::ctl {
namespace {

Appliance appliance() {
    Appliance a;
    a.outside = "net_af_packet0,iface=moat-out0";
    a.inside = "net_af_packet1,iface=moat-in0";
    return a;
}

std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v)
        s += (s.empty() ? "" : " ") + x;
    return s;
}

TEST(EalArgs, DefaultsWithoutHugepages) {
    const auto plan = plan_eal(appliance(), {}, {2, 0});
    ASSERT_TRUE(plan) << plan.error();
    const EalPlan& p = *plan;
    EXPECT_EQ(joined(p.args), "-l 0-1 --no-huge -m 512 --file-prefix moat --vdev net_af_packet0,iface=moat-out0 "
                              "--vdev net_af_packet1,iface=moat-in0 --no-pci");
    ASSERT_EQ(p.notes.size(), 2u);
    EXPECT_EQ(p.notes[1], "memory: no hugepages mounted, falling back to --no-huge (mount hugetlbfs for speed)");
}

TEST(EalArgs, HugepagesAreUsedWhenThereAreEnough) {
    EalPlan p = plan_eal(appliance(), {}, {2, 1024ull << 20}).value();
    EXPECT_EQ(std::count(p.args.begin(), p.args.end(), "--no-huge"), 0);
    EXPECT_EQ(p.notes[1], "memory: hugepages (1024 MB free)");
    p = plan_eal(appliance(), {}, {2, 64ull << 20}).value();
    EXPECT_EQ(std::count(p.args.begin(), p.args.end(), "--no-huge"), 1);
    EXPECT_EQ(p.notes[1], "memory: only 64 MB of free hugepages, falling back to --no-huge");
}

TEST(EalArgs, OperatorChoicesWin) {
    Appliance a = appliance();
    a.eal = "--lcores 0@0,1@1 --file-prefix mine -m 128";
    const EalPlan p = plan_eal(a, {"--no-huge", "--log-level=*:debug"}, {2, 0}).value();
    EXPECT_EQ(joined(p.args), "--lcores 0@0,1@1 --file-prefix mine -m 128 --no-huge --log-level=*:debug "
                              "--vdev net_af_packet0,iface=moat-out0 --vdev net_af_packet1,iface=moat-in0 --no-pci");
    EXPECT_EQ(p.notes.at(0), "memory: --no-huge, as configured");
}

TEST(EalArgs, PciPortsAreAllowListed) {
    Appliance a = appliance();
    a.outside = "0000:3b:00.0";
    a.inside = "3b:00.1,rx_burst_size=64";
    const EalPlan p = plan_eal(a, {}, {4, 2048ull << 20}).value();
    EXPECT_EQ(joined(p.args), "-l 0-1 --file-prefix moat -a 0000:3b:00.0 -a 3b:00.1,rx_burst_size=64");
    EXPECT_EQ(port_name(a.inside).name, "0000:3b:00.1");
    EXPECT_TRUE(port_name(a.inside).pci);
    EXPECT_EQ(port_name("net_pcap0,rx_pcap=/tmp/a.pcap").name, "net_pcap0");
}

TEST(EalArgs, TooFewCores) {
    Appliance a = appliance();
    a.workers = 4;
    const auto p = plan_eal(a, {}, {2, 0});
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error(), "workers = 4 needs 5 cores (one more for control) and this machine has 2; lower workers or give lcores in eal = -l ...");
}

}  // namespace
}  // namespace moat::ctl
