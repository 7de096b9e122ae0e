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

/// Generation `number` of a policy with the filter lists Web (permitted, line 4) and Rest
/// (blocked, line 6); an empty generation when the text does not load.
Generation generation_of(std::uint64_t number) {
    const LoadResult l = load_policy_text("[appliance]\nme = 198.18.0.10\nassign = P\n"
                                          "[filterlist Web]\nfilter = *+198.18.0.10:80:TCP\n"
                                          "[filterlist Rest]\nfilter = *+198.18.0.10\n"
                                          "[policy P]\nrule = Web -> permit\nrule = Rest -> block\n",
                                          "t.ini", {.lint = false});
    EXPECT_TRUE(l.usable());
    Generation g;
    g.number = number;
    if (l.usable()) {
        g.config = *l.config;
        g.compiled = *l.compiled;
    }
    return g;
}

TEST(MonitorRecordJson, NamesTheFilterThroughItsGeneration) {
    const Generation g = generation_of(7);
    ASSERT_FALSE(g.compiled.rules.empty());
    dp::Rank block = dp::kNoMatch;
    for (dp::Rank r = 0; r < g.compiled.rules.size(); ++r)
        if (g.compiled.rules[r].action == dp::Action::block && !g.compiled.info[r].origin.mirror)
            block = r;
    ASSERT_NE(block, dp::kNoMatch);
    dp::MonitorRecord r;
    r.generation = 7;
    r.rank = block;
    r.drop = dp::DropReason::policy;
    r.key.proto = 6;
    r.key.has_ports = true;
    r.key.sport = 40000;
    r.key.dport = 22;
    r.key.src.bytes = {198, 18, 100, 1};
    r.key.dst.bytes = {198, 18, 0, 10};
    r.length = 60;
    r.ethertype = 0x0800;
    r.vlans = 1;
    r.vlan = {100, 0};
    r.seq_drop = 4;
    const auto j = nlohmann::json::parse(record_line(r, &g, std::chrono::system_clock::time_point{}));
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
    const auto k = nlohmann::json::parse(record_line(r, nullptr, std::chrono::system_clock::time_point{}));
    EXPECT_TRUE(k["filter"].is_null());
    EXPECT_EQ(k["filter_unknown"], "generation 7 is no longer kept");
    // No match and a frame the parser could not read: no filter, no addresses.
    r.rank = dp::kNoMatch;
    r.drop = dp::DropReason::malformed;
    const auto m = nlohmann::json::parse(record_line(r, &g, std::chrono::system_clock::time_point{}));
    EXPECT_TRUE(m["filter"].is_null());
    EXPECT_FALSE(m.contains("src"));
    EXPECT_EQ(m["reason"], "malformed");
    EXPECT_EQ(m["ethertype"], "0x0800");
}

TEST(MonitorRecordJson, EveryLineIsOneJsonObjectWhateverItNames) {
    // The line is written by hand (not by nlohmann): names from the config file with quotes,
    // backslashes, control characters and bytes that are not UTF-8 must still make valid JSON,
    // and every kind of record must parse, in any mix of its optional members.
    Generation g = generation_of(3);
    ASSERT_FALSE(g.compiled.rules.empty());
    const std::string hostile = std::string("a\"b\\c\n\t\x01\x7f") + "\xff\xfe" + "\xc3\xa9";
    for (FilterList& list : g.config.lists) {
        list.name = hostile;
        for (FilterDef& f : list.filters)
            f.text = hostile + " text";
    }
    for (auto& rule : g.config.policies[0].rules)
        rule.text = "\"" + hostile;
    int lines = 0;
    for (const dp::DropReason drop : {dp::DropReason::none, dp::DropReason::policy, dp::DropReason::fragment,
                                      dp::DropReason::malformed, dp::DropReason::non_ip})
        for (const dp::Family family : {dp::Family::ipv4, dp::Family::ipv6})
            for (const unsigned shape : {0u, 1u, 2u, 3u})
                for (const dp::Rank rank : {dp::Rank{0}, dp::Rank{1}, dp::kNoMatch, dp::Rank{100000}})
                    for (const Generation* gen : {static_cast<const Generation*>(&g), static_cast<const Generation*>(nullptr)}) {
                        dp::MonitorRecord r;
                        r.drop = drop;
                        r.key.family = family;
                        r.rank = rank;
                        r.generation = 3;
                        r.key.proto = shape == 2 ? 58 : 17;
                        r.key.has_ports = shape == 1;
                        r.key.has_icmp = shape == 2;
                        r.fragment = shape == 3;
                        r.frag = dp::FragDrop::overlap;
                        r.vlans = static_cast<std::uint8_t>(shape % 3);
                        r.vlan = {4095, 1};
                        r.key.src.bytes.fill(0xfe);
                        r.seq_all = ~std::uint64_t{0};
                        r.worker = 255;
                        const std::string line = record_line(r, gen, std::chrono::system_clock::now());
                        SCOPED_TRACE(line);
                        ASSERT_EQ(line.find('\n'), std::string::npos);
                        const auto j = nlohmann::json::parse(line, nullptr, false);
                        ASSERT_TRUE(j.is_object());
                        EXPECT_EQ(j["seq"], ~std::uint64_t{0});
                        EXPECT_EQ(j["worker"], 255);
                        EXPECT_EQ(j["vlan"].size(), shape % 3);
                        EXPECT_EQ(j["verdict"], drop == dp::DropReason::none ? "permit" : "drop");
                        EXPECT_EQ(j.contains("drop_seq"), drop != dp::DropReason::none);
                        if (gen && rank < g.compiled.info.size()) {
                            EXPECT_TRUE(j["filterlist"].get<std::string>().starts_with("a\"b\\c\n\t\x01\x7f"));
                            EXPECT_TRUE(j["filter"].get<std::string>().ends_with(" text"));
                        } else {
                            EXPECT_TRUE(j["filter"].is_null());
                            EXPECT_EQ(j.contains("filter_unknown"), rank != dp::kNoMatch);
                        }
                        EXPECT_NO_THROW(record_text(j));
                        ++lines;
                    }
    EXPECT_EQ(lines, 5 * 2 * 4 * 4 * 2);
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
