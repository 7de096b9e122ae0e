// The control side of the drop trace (control/runtime/monitor.h): requests, the word for several
// monitors, which records a monitor wants, and how a record reads.
#include "control/runtime/monitor.h"

#include <gtest/gtest.h>

#include "control/compile/load.h"
#include "control/runtime/publisher.h"

namespace moat::ctl {
namespace {

TEST(MonitorRequest, Defaults) {
    const auto s = parse_monitor_request({{"cmd", "monitor"}});
    ASSERT_TRUE(s);
    EXPECT_FALSE(s->all);
    EXPECT_EQ(s->sample, 1u);
    EXPECT_FALSE(s->list);
}

TEST(MonitorRequest, Options) {
    const auto s = parse_monitor_request({{"cmd", "monitor"}, {"mode", "all"}, {"sample", 100}, {"filter", "Web"}});
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->all);
    EXPECT_EQ(s->sample, 100u);
    EXPECT_EQ(s->list, "Web");
}

TEST(MonitorRequest, Garbage) {
    for (const nlohmann::json& bad : {nlohmann::json{{"sample", 0}}, nlohmann::json{{"sample", -1}},
                                      nlohmann::json{{"sample", 1ll << 40}}, nlohmann::json{{"sample", dp::kMaxSample + 1}},
                                      nlohmann::json{{"sample", 1.5}}, nlohmann::json{{"sample", "3"}},
                                      nlohmann::json{{"mode", "some"}}, nlohmann::json{{"mode", 1}},
                                      nlohmann::json{{"filter", 3}}, nlohmann::json{{"filter", ""}}}) {
        const auto s = parse_monitor_request(bad);
        EXPECT_FALSE(s) << bad.dump();
        if (!s) {
            EXPECT_NE(s.error().find("monitor:"), std::string::npos);
        }
    }
    EXPECT_TRUE(parse_monitor_request({{"sample", dp::kMaxSample}}));
}

TEST(MonitorWordFor, GreatestCommonDivisorPerKind) {
    EXPECT_EQ(monitor_word({}, 3).encode(), 0u);
    const auto w = monitor_word({{false, 4, {}}, {false, 6, {}}, {true, 10, {}}}, 3);
    EXPECT_EQ(w.drops, 2u);
    EXPECT_EQ(w.all, 10u);
    EXPECT_EQ(w.epoch, 3u);
    EXPECT_EQ(monitor_word({{true, 1, {}}}, 1).drops, 0u);
}

TEST(MonitorWants, ModeSampleAndList) {
    dp::MonitorRecord r;
    r.drop = dp::DropReason::policy;
    r.seq_all = 12;
    r.seq_drop = 6;
    EXPECT_TRUE(monitor_wants({false, 1, {}}, r, ""));
    EXPECT_TRUE(monitor_wants({false, 3, {}}, r, ""));
    EXPECT_FALSE(monitor_wants({false, 4, {}}, r, ""));
    EXPECT_TRUE(monitor_wants({true, 4, {}}, r, ""));
    EXPECT_FALSE(monitor_wants({true, 5, {}}, r, ""));
    EXPECT_TRUE(monitor_wants({false, 1, "Block"}, r, "Block"));
    EXPECT_FALSE(monitor_wants({false, 1, "Block"}, r, "Web"));
    EXPECT_FALSE(monitor_wants({false, 1, "Block"}, r, ""));
    r.drop = dp::DropReason::none;
    EXPECT_FALSE(monitor_wants({false, 1, {}}, r, ""));
    EXPECT_TRUE(monitor_wants({true, 1, {}}, r, ""));
}

TEST(MonitorRecordJson, NamesTheFilterThroughItsGeneration) {
    const LoadResult l = load_policy_text("[appliance]\nme = 198.18.0.10\nassign = P\n"
                                          "[filterlist Web]\nfilter = *+198.18.0.10:80:TCP\n"
                                          "[filterlist Rest]\nfilter = *+198.18.0.10\n"
                                          "[policy P]\nrule = Web -> permit\nrule = Rest -> block\n",
                                          "t.ini", {.lint = false});
    ASSERT_TRUE(l.usable());
    Generation g;
    g.number = 7;
    g.config = *l.config;
    g.compiled = *l.compiled;
    dp::Rank block = dp::kNoMatch;
    for (dp::Rank r = 0; r < g.compiled.rules.size(); ++r)
        if (g.compiled.rules[r].action == dp::Action::block && !g.compiled.info[r].origin.mirror)
            block = r;
    ASSERT_NE(block, dp::kNoMatch);
    dp::MonitorRecord r;
    r.generation = 7;
    r.rank = block;
    r.drop = dp::DropReason::policy;
    r.proto = 6;
    r.has_ports = true;
    r.sport = 40000;
    r.dport = 22;
    r.src.bytes = {198, 18, 100, 1};
    r.dst.bytes = {198, 18, 0, 10};
    r.length = 60;
    r.ethertype = 0x0800;
    r.vlans = 1;
    r.vlan = {100, 0};
    r.seq_drop = 4;
    const auto j = record_json(r, &g, std::chrono::system_clock::time_point{});
    EXPECT_EQ(j["time"], "1970-01-01T00:00:00.000000Z");
    EXPECT_EQ(j["port"], "outside");
    EXPECT_EQ(j["vlan"], nlohmann::json::array({100}));
    EXPECT_EQ(j["proto"], "TCP");
    EXPECT_EQ(j["src"], "198.18.100.1");
    EXPECT_EQ(j["dst"], "198.18.0.10");
    EXPECT_EQ(j["sport"], 40000);
    EXPECT_EQ(j["dport"], 22);
    EXPECT_EQ(j["packet"], "TCP 198.18.100.1:40000 -> 198.18.0.10:22 on outside");
    EXPECT_EQ(j["verdict"], "drop");
    EXPECT_EQ(j["reason"], "policy");
    EXPECT_EQ(j["generation"], 7);
    EXPECT_EQ(j["filter"], "*+198.18.0.10");
    EXPECT_EQ(j["filterlist"], "Rest");
    EXPECT_EQ(j["rule"], "Rest -> block");
    EXPECT_EQ(j["line"], 7);
    EXPECT_EQ(j["seq"], 0);
    EXPECT_EQ(j["drop_seq"], 4);
    EXPECT_EQ(record_text(j), "1970-01-01T00:00:00.000000Z drop policy  TCP 198.18.100.1:40000 -> 198.18.0.10:22 on outside "
                              "vlan 100 len 60  gen 7 line 7: *+198.18.0.10 (Rest)");
    // A generation no longer kept: the rank, and why there is no name.
    const auto k = record_json(r, nullptr, std::chrono::system_clock::time_point{});
    EXPECT_TRUE(k["filter"].is_null());
    EXPECT_EQ(k["filter_unknown"], "generation 7 is no longer kept");
    // No match and a frame the parser could not read: no filter, no addresses.
    r.rank = dp::kNoMatch;
    r.drop = dp::DropReason::malformed;
    const auto m = record_json(r, &g, std::chrono::system_clock::time_point{});
    EXPECT_TRUE(m["filter"].is_null());
    EXPECT_FALSE(m.contains("src"));
    EXPECT_EQ(m["reason"], "malformed");
    EXPECT_EQ(m["ethertype"], "0x0800");
}

TEST(MonitorRecordText, AnyLineReadsWithoutThrowing) {
    for (const char* text : {"{}", "[]", "3", "null", R"({"verdict":"drop","reason":7,"vlan":"x","line":"y","filter":"f"})",
                             R"({"lost":"many"})", R"({"vlan":[1,"a"],"length":-1})"})
        EXPECT_NO_THROW(record_text(nlohmann::json::parse(text))) << text;
    EXPECT_EQ(record_text(nlohmann::json::parse(R"({"lost":"many"})")),
              "-- ? lines lost (this monitor read too slowly), ? records lost in the workers' rings");
}

TEST(MonitorRecordText, LostLine) {
    EXPECT_EQ(record_text({{"lost", 3}, {"ring_lost", 0}}),
              "-- 3 lines lost (this monitor read too slowly), 0 records lost in the workers' rings");
}

}  // namespace
}  // namespace moat::ctl
