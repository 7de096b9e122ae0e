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

TEST(EalArgs, PciPortsRefuseToStartWithoutHugepages) {
    Appliance a = appliance();
    a.inside = "0000:3b:00.1";  // one PCI port is enough
    const std::string fix =
        ". Reserve them (echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages, or "
        "default_hugepagesz=1G hugepagesz=1G hugepages=N on the kernel command line), mount hugetlbfs "
        "(mount -t hugetlbfs nodev /dev/hugepages) and start moatd again (README: Deploying on real hardware)";
    const std::string what = "a PCI port (outside = net_af_packet0,iface=moat-out0, inside = 0000:3b:00.1) needs hugepages, and ";
    auto p = plan_eal(a, {}, {2, 0});
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error(), what + "this machine has none mounted" + fix);
    p = plan_eal(a, {}, {2, 64ull << 20});
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error(), what + "only 64 MB are free (128 MB needed)" + fix);
    a.eal = "--no-huge";
    p = plan_eal(a, {}, {2, 2048ull << 20});  // asked for, with hugepages there: still no
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error(), what + "eal asks for --no-huge: remove it" + fix);
    p = plan_eal(appliance(), {"--no-huge"}, {2, 0});  // vdevs may run without
    ASSERT_TRUE(p);
    a.eal.clear();
    p = plan_eal(a, {}, {2, 128ull << 20});
    ASSERT_TRUE(p) << p.error();
    EXPECT_TRUE(p->hugepages);
}

TEST(EalArgs, SecondaryProcessesNeedSharedHugepageMemory) {
    EalPlan p = plan_eal(appliance(), {}, {2, 1024ull << 20}).value();
    EXPECT_EQ(p.file_prefix, "moat");
    EXPECT_EQ(secondary_refusal(p), "");
    p = plan_eal(appliance(), {"--file-prefix=edge"}, {2, 1024ull << 20}).value();
    EXPECT_EQ(p.file_prefix, "edge");
    p = plan_eal(appliance(), {}, {2, 0}).value();
    EXPECT_FALSE(p.hugepages);
    EXPECT_EQ(secondary_refusal(p), "moatd runs without hugepages (--no-huge), and a secondary process cannot map that "
                                    "memory; reserve hugepages and mount hugetlbfs (README: Deploying on real hardware)");
    p = plan_eal(appliance(), {"--in-memory"}, {2, 1024ull << 20}).value();
    EXPECT_TRUE(p.in_memory);
    EXPECT_EQ(p.file_prefix, "");
    EXPECT_EQ(secondary_refusal(p), "moatd runs with --in-memory, which shares no memory with other processes");
}

// EAL refuses --in-memory with --no-huge: an eal key with --in-memory (written where hugepages
// exist) used to stop moatd on a machine without them, where moatd falls back to --no-huge.
TEST(EalArgs, InMemoryWithoutHugepagesBecomesNoShconf) {
    for (const std::vector<std::string>& eal : {std::vector<std::string>{"--in-memory"},
                                                std::vector<std::string>{"--in-memory", "--no-huge", "-m", "256"}}) {
        const EalPlan p = plan_eal(appliance(), eal, {2, 0}).value();
        EXPECT_FALSE(p.hugepages);
        EXPECT_TRUE(p.in_memory);
        EXPECT_EQ(std::count(p.args.begin(), p.args.end(), "--in-memory"), 0);
        EXPECT_EQ(std::count(p.args.begin(), p.args.end(), "--no-huge"), 1);
        EXPECT_EQ(std::count(p.args.begin(), p.args.end(), "--no-shconf"), 1);
        EXPECT_EQ(std::count(p.args.begin(), p.args.end(), "--file-prefix"), 0);
        EXPECT_NE(secondary_refusal(p), "");
    }
    // With hugepages --in-memory stays as it is.
    const EalPlan h = plan_eal(appliance(), {"--in-memory"}, {2, 1024ull << 20}).value();
    EXPECT_EQ(std::count(h.args.begin(), h.args.end(), "--in-memory"), 1);
    EXPECT_EQ(std::count(h.args.begin(), h.args.end(), "--no-shconf"), 0);
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
