// Live policy swaps under load: a real worker on its own lcore forwards numbered packets between
// two ring ports while the test reloads the config file hundreds of times between two policies
// with opposite verdicts. Every packet that comes out must be permitted by a generation that
// could have classified it; packets every generation permits must all come out; nothing leaks.
#include <gtest/gtest.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_ring.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/runtime/runtime.h"
#include "dataplane/worker.h"
#include "tests/common/command.h"
#include "tests/common/lcores.h"
#include "tests/common/packets.h"
#include "tests/common/time_scale.h"

namespace moat::ctl {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::Bytes;
using test::eventually;
using test::Pkt;

class Eal2 : public ::testing::Environment {
public:
    void SetUp() override {
        std::vector<std::string> args{"test", "--no-huge", "-m", "512", "--no-pci", "--lcores", test::lcores_value(1),
                                      "--file-prefix", "moat-swap-" + std::to_string(getpid()), "--log-level", "*:error"};
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        ASSERT_GE(rte_eal_init(static_cast<int>(argv.size()), argv.data()), 0);
        pool = rte_pktmbuf_pool_create("swap_pool", 16383, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        ASSERT_NE(pool, nullptr);
    }
    void TearDown() override {
        rte_mempool_free(pool);
        rte_eal_cleanup();
    }
    static inline rte_mempool* pool = nullptr;
};

// Classes by destination port: A passes under both policies, B only under P1, C only under P2,
// D under neither.
constexpr std::uint16_t kPort[4] = {1000, 2000, 3000, 4000};
constexpr bool kPermits[2][4] = {{true, true, false, false}, {true, false, true, false}};

/// Policy P1 (which = 0) or P2. With `payload`, the filter that tells them apart carries a
/// pattern that every test packet matches (a different one in each), so that each reload
/// publishes a new Hyperscan database and scratch while the worker scans with the old ones.
/// With `state`, the permits keep state (`state = keep`): every packet also goes through the
/// worker's flow table, whose flows outlive the generations that made them.
std::string policy(int which, const std::string& sock, bool payload = false, bool state = false) {
    const int b = which == 0 ? 2000 : 3000;
    const std::string pattern = !payload ? "" : which == 0 ? " payload=/^.{8}/s" : " payload=/.{4}$/s";
    const std::string permit = state ? "Keep" : "permit";
    return "[appliance]\ncontrol = " + sock + "\nassign = P\n" +
           (state ? "[filteraction Keep]\naction = permit\nstate = keep\n" : "") +
           "[filterlist Both]\nfilter = 198.18.100.0/24=198.18.0.10:1000:UDP\n"
           "[filterlist This one]\nfilter = 198.18.100.0/24=198.18.0.10:" + std::to_string(b) + ":UDP" + pattern + "\n"
           "[filterlist Rest]\nfilter = *+198.18.0.10\n"
           "[policy P]\nrule = Both -> " + permit + "\nrule = This one -> " + permit + "\nrule = Rest -> block\n"
           "; variant " + std::to_string(which) + "\n";
}

struct Ports {
    rte_ring* out_rx;  // the test's packets arrive on the outside port from here
    rte_ring* out_tx;
    rte_ring* in_rx;
    rte_ring* in_tx;  // what the worker forwards to the inside port lands here
    std::uint16_t out = 0, in = 0;

    static rte_ring* ring(const char* name) {
        return rte_ring_create(name, 16384, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    }
    static std::uint16_t port(const char* name, rte_ring* rx, rte_ring* tx) {
        const int id = rte_eth_from_rings(name, &rx, 1, &tx, 1, SOCKET_ID_ANY);
        EXPECT_GE(id, 0);
        const rte_eth_conf conf{};
        const auto p = static_cast<std::uint16_t>(id);
        EXPECT_EQ(rte_eth_dev_configure(p, 1, 1, &conf), 0);
        EXPECT_EQ(rte_eth_rx_queue_setup(p, 0, 1024, SOCKET_ID_ANY, nullptr, Eal2::pool), 0);
        EXPECT_EQ(rte_eth_tx_queue_setup(p, 0, 1024, SOCKET_ID_ANY, nullptr), 0);
        EXPECT_EQ(rte_eth_dev_start(p), 0);
        return p;
    }
    explicit Ports(const std::string& tag) {
        out_rx = ring(("orx" + tag).c_str());
        out_tx = ring(("otx" + tag).c_str());
        in_rx = ring(("irx" + tag).c_str());
        in_tx = ring(("itx" + tag).c_str());
        out = port(("swo" + tag).c_str(), out_rx, out_tx);
        in = port(("swi" + tag).c_str(), in_rx, in_tx);
    }
    ~Ports() {
        for (auto p : {out, in}) {
            rte_eth_dev_stop(p);
            rte_eth_dev_close(p);
        }
        for (auto* r : {out_rx, out_tx, in_rx, in_tx}) {
            void* m;
            while (rte_ring_dequeue(r, &m) == 0)
                rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
            rte_ring_free(r);
        }
    }
};

rte_mbuf* packet(std::uint64_t seq) {
    Pkt p;
    p.proto = 17;
    p.src = "198.18.100.1";
    p.dst = "198.18.0.10";
    p.sport = static_cast<std::uint16_t>(seq % 1024);  // a flow's packets come back across reloads
    p.dport = kPort[seq % 4];
    p.payload.assign(reinterpret_cast<const char*>(&seq), sizeof seq);
    const Bytes b = test::frame(p);
    rte_mbuf* m = rte_pktmbuf_alloc(Eal2::pool);
    if (!m)
        return nullptr;
    std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(b.size())), b.data(), b.size());
    return m;
}

std::uint64_t seq_of(const rte_mbuf* m) {
    std::uint64_t seq;
    std::memcpy(&seq, rte_pktmbuf_mtod_offset(m, const char*, m->pkt_len - sizeof seq), sizeof seq);
    return seq;
}

class Swap : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("moat-swap." + std::to_string(getpid()) + "." +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
        path_ = (dir_ / "moat.ini").string();
        write(0);
    }
    void TearDown() override { fs::remove_all(dir_); }

    void write(int which) const { std::ofstream(path_) << policy(which, (dir_ / "s").string(), payload_, state_); }
    void write_text(const std::string& t) const { std::ofstream(path_) << t; }

    /// Loads the config file and starts `rt` on it: generation 1.
    void start(Runtime& rt) const {
        const auto read = read_config_file(path_);
        ASSERT_TRUE(read) << read.error();
        const std::string& text = *read;
        const LoadResult first = load_policy_text(text, path_);
        ASSERT_TRUE(first.usable());
        const Status started = rt.start(*first.config, *first.compiled, text);
        ASSERT_TRUE(started) << started.error();
    }

    /// Starts one worker on lcore 1 reading the runtime's generations.
    void launch(Runtime& rt, Ports& ports) {
        ctx_ = std::make_unique<dp::WorkerContext>();
        ctx_->index = 0;
        ctx_->lcore = rte_get_next_lcore(-1, 1, 0);
        ctx_->port = {ports.out, ports.in};
        ctx_->tables = rt.publisher().tables();
        ctx_->qsbr = rt.publisher().qsbr();
        stop_.store(false);
        ctx_->stop = &stop_;
        ASSERT_EQ(rte_eal_remote_launch(&dp::worker_main, ctx_.get(), ctx_->lcore), 0);
        rt.set_workers({ctx_.get()});
    }
    void halt() {
        stop_.store(true);
        rte_eal_mp_wait_lcore();
    }
    /// Reloads until the worker has left every older generation: from then on, packets are
    /// classified by the new one.
    static std::uint64_t reload_and_settle(Runtime& rt) {
        const ReloadOutcome o = rt.reload("test");
        EXPECT_TRUE(o.ok) << (o.errors.empty() ? "" : o.errors.front());
        while (rt.reclaim() != 0)
            std::this_thread::yield();
        return o.generation;
    }

    void reloads_under_load();

    bool payload_ = false;  ///< policies with payload filters (set before write())
    bool state_ = false;    ///< policies whose permits keep state (set before write())
    fs::path dir_;
    std::string path_;
    std::unique_ptr<dp::WorkerContext> ctx_;
    std::atomic<bool> stop_{false};
};

/// 240 reloads between P1 and P2 while a worker forwards numbered packets.
void Swap::reloads_under_load() {
    write(0);
    const unsigned in_use_before = rte_mempool_in_use_count(Eal2::pool);
    {
        Ports ports(payload_ ? "p" : state_ ? "s" : "a");  // a port name is taken for the whole run
        Runtime rt(path_, 1);
        ASSERT_NO_FATAL_FAILURE(start(rt));
        launch(rt, ports);

        // Per packet: the generation surely in force when it was sent (settled) and the newest
        // one published when it came out; it may have been judged by any in between.
        std::vector<std::uint64_t> settled_at_send;
        std::vector<int> seen;
        std::uint64_t settled = 1, published = 1;
        const auto policy_of = [](std::uint64_t gen) { return static_cast<int>((gen - 1) % 2); };  // gen 1: P1
        std::size_t bad = 0, out = 0, out_b = 0, out_c = 0;
        const auto drain = [&] {
            void* got[64];
            unsigned n;
            while ((n = rte_ring_dequeue_burst(ports.in_tx, got, 64, nullptr)) > 0) {
                for (unsigned i = 0; i < n; ++i) {
                    auto* m = static_cast<rte_mbuf*>(got[i]);
                    const std::uint64_t seq = seq_of(m);
                    rte_pktmbuf_free(m);
                    ++out;
                    if (seq >= settled_at_send.size()) {
                        ++bad;
                        continue;
                    }
                    ++seen[seq];
                    bool allowed = false;
                    for (std::uint64_t g = settled_at_send[seq]; g <= published; ++g)
                        allowed = allowed || kPermits[policy_of(g)][seq % 4];
                    if (!allowed && ++bad <= 5)
                        ADD_FAILURE() << "packet " << seq << " (class " << "ABCD"[seq % 4]
                                      << ") came out although no generation from " << settled_at_send[seq] << " to "
                                      << published << " permits it";
                    out_b += seq % 4 == 1;
                    out_c += seq % 4 == 2;
                }
            }
        };
        int reloads = 0;
        for (std::uint64_t seq = 0; reloads < 240; ++seq) {
            rte_mbuf* m = packet(seq);
            ASSERT_NE(m, nullptr);
            settled_at_send.push_back(settled);
            seen.push_back(0);
            while (rte_ring_enqueue(ports.out_rx, m) != 0)
                drain();
            if (seq % 64 == 63) {
                // Write the other policy and reload; packets keep flowing from the ring meanwhile.
                write(reloads % 2 == 0 ? 1 : 0);
                published = settled + 1;
                settled = reload_and_settle(rt);
                ASSERT_EQ(settled, published);
                ++reloads;
            }
            drain();
        }
        // Let the worker finish what is queued, then stop it.
        while (rte_ring_count(ports.out_rx) > 0)
            drain();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        drain();
        halt();
        drain();

        const Stats s = rt.stats();
        EXPECT_EQ(s.ports[1].tx_failed, 0u);
        std::size_t lost = 0;
        for (std::size_t seq = 0; seq < seen.size(); ++seq) {
            EXPECT_LE(seen[seq], 1) << "packet " << seq << " came out twice";
            if (seq % 4 == 0 && seen[seq] == 0 && ++lost <= 5)
                ADD_FAILURE() << "packet " << seq << " (class A, permitted by every generation) was lost";
        }
        EXPECT_EQ(bad, 0u);
        EXPECT_EQ(lost, 0u);
        EXPECT_GT(out_b, 0u) << "no class B packet ever came out: P1 never took effect";
        EXPECT_GT(out_c, 0u) << "no class C packet ever came out: P2 never took effect";
        EXPECT_EQ(s.ports[0].rx_packets, seen.size());
        EXPECT_EQ(s.ports[1].tx_packets, out);
        EXPECT_EQ(rt.generation(), 241u);
        EXPECT_EQ(rt.publisher().retired(), 0u);
        // The filter both policies share kept counting through every swap: its hits are every
        // class A packet.
        std::uint64_t both = 0;
        for (const auto& f : s.filters)
            if (f.filterlist == "Both")
                both = f.packets;
        EXPECT_EQ(both, (seen.size() + 3) / 4);
        // With payload filters, class B and C packets were scanned (exactly those the payload
        // filters outranked the rest for: the ones of the variant in force).
        if (payload_) {
            EXPECT_GT(ctx_->counters.payload_scanned.get(), 0u);
            EXPECT_EQ(ctx_->counters.payload_bytes.get(), 8 * ctx_->counters.payload_scanned.get());
        } else {
            EXPECT_EQ(ctx_->counters.payload_scanned.get(), 0u);
        }
        // With state, every class A packet passed through its flow (UDP's first packet starts
        // one, the next ones follow it) whatever generation made the flow; nothing was refused
        // for state or for room, and no flow was cut: no reload here changes what starts one.
        if (state_) {
            EXPECT_GT(s.states.created, 0u);
            // At most the 768 flows of classes A, B and C (1,024 source ports, a class each).
            EXPECT_LE(s.states.created, 768u) << "a flow was made twice";
            EXPECT_EQ(s.drops[static_cast<std::size_t>(dp::DropReason::state)], 0u);
            EXPECT_EQ(s.states.full, 0u);
            EXPECT_EQ(s.states.cut, 0u);
        } else {
            EXPECT_EQ(s.states.created, 0u);
        }
        // The worker's cost: every poll that received packets was timed, and none that did not
        // (at most one poll per packet received, at least one per full burst).
        const std::uint64_t polls = ctx_->counters.busy_polls.get();
        EXPECT_LE(polls, seen.size());
        EXPECT_GE(polls, seen.size() / dp::kBurstMax);
        EXPECT_GE(ctx_->counters.busy_cycles.get(), polls) << "a timed poll took no cycles";
        ASSERT_EQ(s.workers.size(), 1u);
        EXPECT_EQ(s.workers[0].busy_polls, polls);
        EXPECT_EQ(s.workers[0].busy_cycles, ctx_->counters.busy_cycles.get());
    }
    EXPECT_EQ(rte_mempool_in_use_count(Eal2::pool), in_use_before) << "mbufs leaked";
}

TEST_F(Swap, TwoHundredReloadsUnderLoad) { reloads_under_load(); }

// The same with stateful permits: the flow table under swaps (under ASan in tools/check).
TEST_F(Swap, TwoHundredReloadsWithStatefulPermitsUnderLoad) {
    state_ = true;
    reloads_under_load();
}

// The same with a new Hyperscan database and scratch in every generation: under ASan (tools/check)
// any use of a freed one by the worker is a failure.
TEST_F(Swap, TwoHundredReloadsWithPayloadPatternsUnderLoad) {
    payload_ = true;
    reloads_under_load();
}

TEST_F(Swap, BadReloadsKeepTheRunningGeneration) {
    Ports ports("b");
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    launch(rt, ports);
    const std::string good = policy(0, (dir_ / "s").string());
    struct Bad {
        const char* what;
        std::string text;
        const char* error;
    };
    const std::vector<Bad> bad{
        {"syntax error", good + "this is not a key\n", ":15: error: expected 'key = value'"},
        {"unknown action", good + "rule = Rest -> shred\n", ":15: error: rule names action 'shred'"},
        {"empty policy", "[appliance]\nassign = E\n[policy E]\n", ":3: error: policy 'E' has no rules"},
        {"pattern that does not compile", good + "[filterlist X]\nfilter = *+198.18.0.10:80:TCP payload=/(ab/\n",
         ":16: error: filter '*+198.18.0.10:80:TCP payload=/(ab/': payload pattern does not compile"},
    };
    for (const auto& b : bad) {
        write_text(b.text);
        const ReloadOutcome o = rt.reload("test");
        EXPECT_FALSE(o.ok) << b.what;
        ASSERT_FALSE(o.errors.empty()) << b.what;
        EXPECT_NE(o.errors.front().find(b.error), std::string::npos) << b.what << ": " << o.errors.front();
        EXPECT_EQ(rt.generation(), 1u) << b.what;
        const nlohmann::json st = rt.status();
        EXPECT_FALSE(st["last_reload"]["ok"].get<bool>()) << b.what;
        EXPECT_NE(st["last_reload"]["errors"][0].get<std::string>().find(b.error), std::string::npos) << b.what;
        // Traffic still follows generation 1 (P1): B passes, C does not.
        for (std::uint64_t seq : {1ull, 2ull, 5ull, 6ull}) {
            rte_mbuf* m = packet(seq);
            ASSERT_EQ(rte_ring_enqueue(ports.out_rx, m), 0);
        }
        std::vector<std::uint64_t> got;
        eventually(
            [&] {
                void* m;
                while (rte_ring_dequeue(ports.in_tx, &m) == 0) {
                    got.push_back(seq_of(static_cast<rte_mbuf*>(m)));
                    rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
                }
                return got.size() >= 2;
            },
            2s, 1ms);
        EXPECT_EQ(got, (std::vector<std::uint64_t>{1, 5})) << b.what;
    }
    // Fixing the file brings the next generation in.
    write_text(good + "; fixed\n");
    const ReloadOutcome o = rt.reload("test");
    EXPECT_TRUE(o.ok);
    EXPECT_EQ(o.generation, 2u);
    EXPECT_TRUE(rt.status()["last_reload"]["ok"].get<bool>());
    halt();
}

// The lint runs on a thread of its own after the publish (its warnings change nothing enforced)
// and its report follows; with strict = on its warnings are errors and nothing is published.
TEST_F(Swap, LintWarningsFollowThePublishUnlessStrictMakesThemErrors) {
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    const auto text = [&](bool strict) {
        return "[appliance]\ncontrol = " + (dir_ / "s").string() + "\nassign = P\n" + (strict ? "strict = on\n" : "") +
               "[filterlist Both]\nfilter = 198.18.100.0/24=198.18.0.10:1000:UDP\n"
               "[filterlist Again]\nfilter = 198.18.100.0/24=198.18.0.10:1000:UDP\n"
               "[filterlist Rest]\nfilter = *+198.18.0.10\n"
               "[policy P]\nrule = Both -> permit\nrule = Again -> permit\nrule = Rest -> block\n";
    };
    std::vector<LintReport> reported;
    rt.on_lint([&](const LintReport& l) { reported.push_back(l); });
    write_text(text(false));
    const auto asked = std::chrono::steady_clock::now();
    ReloadOutcome o = rt.reload("test");
    const auto answered = std::chrono::steady_clock::now();
    ASSERT_TRUE(o.ok) << (o.errors.empty() ? "" : o.errors.front());
    EXPECT_EQ(o.generation, 2u);
    EXPECT_GT(o.ms, 0);
    // publish_ms runs from the request to the publish: it spans the load and the build that came
    // before the publish (a clock started after them, or at the publish, falls short of their
    // sum), and it cannot span more than the reload call around it (a clock started before the
    // request, at the previous reload or at start, overshoots). Ordering, not speed: it holds
    // however slow each step is. 1e-6 ms of slack for rounding the three sums to double.
    EXPECT_GE(o.publish_ms, o.load_ms + o.build_ms - 1e-6)
        << "load " << o.load_ms << " ms + build " << o.build_ms << " ms";
    const double call_ms = std::chrono::duration<double, std::milli>(answered - asked).count();
    EXPECT_LE(o.publish_ms, call_ms) << "the reload call took " << call_ms << " ms";
    EXPECT_TRUE(asked <= o.published && o.published <= answered) << "published during the call";
    EXPECT_TRUE(o.warnings.empty()) << "the lint's warnings are in its own report";
    LintReport l;
    eventually(
        [&] {
            rt.collect();
            l = rt.lint();
            return l.done && l.generation == 2;
        },
        5s, 10ms);
    ASSERT_TRUE(l.done);
    EXPECT_EQ(l.generation, 2u);
    EXPECT_EQ(l.total, 1u);
    EXPECT_EQ(l.counts["shadowed"], 1u);
    ASSERT_EQ(l.first.size(), 1u);
    EXPECT_NE(l.first[0].find(":7: warning: filter '198.18.100.0/24=198.18.0.10:1000:UDP' (rule at line 12) never "
                              "decides a packet"),
              std::string::npos)
        << l.first[0];
    ASSERT_FALSE(reported.empty()) << "on_lint hears of it";
    EXPECT_EQ(reported.back().generation, 2u);
    EXPECT_EQ(rt.status()["lint"]["counts"]["shadowed"], 1);

    write_text(text(true));
    o = rt.reload("test");
    EXPECT_FALSE(o.ok);
    ASSERT_FALSE(o.errors.empty());
    EXPECT_NE(o.errors.back().find("strict = on and the config has 1 warning(s)"), std::string::npos) << o.errors.back();
    EXPECT_EQ(rt.generation(), 2u);
}

// Reloads queued back to back are built once: the newest text wins, a build already out of date
// is cancelled, and every ticket gets an outcome (the superseded ones, the newest one's).
TEST_F(Swap, BackToBackReloadsCoalesceAndTheNewestWins) {
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    const auto text = [&](int i) {
        std::string t = "[appliance]\ncontrol = " + (dir_ / "s").string() + "\nassign = T" + std::to_string(i) +
                        "\n[filterlist Hosts]\n";
        for (int h = 0; h < 2000; ++h)  // a few milliseconds to build, so that later ones catch it
            t += "filter = 198.18." + std::to_string(h / 200) + "." + std::to_string(h % 200) + "+198.18.0.10:" +
                 std::to_string(1 + h) + ":TCP\n";
        return t + "[filterlist All]\nfilter = *+*\n[policy T" + std::to_string(i) +
               "]\nrule = Hosts -> permit\nrule = All -> block\n";
    };
    std::vector<Runtime::Ticket> tickets;
    for (int i = 0; i < 10; ++i) {
        ReloadJob job;
        job.kind = ReloadJob::Kind::text;
        job.trigger = "test";
        job.text = text(i);
        tickets.push_back(rt.submit(std::move(job)));
    }
    std::optional<ReloadOutcome> last;
    eventually(
        [&] {
            rt.collect();
            last = rt.outcome(tickets.back());
            return last.has_value();
        },
        6s, 2ms);
    ASSERT_TRUE(last && last->ok);
    EXPECT_EQ(rt.status()["policy"], "T9") << "the newest text is in force";
    EXPECT_LE(last->generation, 3u) << "ten reloads queued at once were built once or twice, not ten times";
    for (const auto t : tickets) {
        const auto o = rt.outcome(t);
        ASSERT_TRUE(o) << "ticket " << t << " has no outcome";
        EXPECT_TRUE(o->ok);
        EXPECT_LE(o->generation, last->generation);
    }
    // The same text again: nothing to build.
    ReloadJob again;
    again.kind = ReloadJob::Kind::text;
    again.trigger = "test";
    again.text = text(9);
    again.if_changed = true;
    const auto o = rt.outcome(rt.submit(std::move(again)));
    ASSERT_TRUE(o);
    EXPECT_TRUE(o->unchanged);
    EXPECT_EQ(o->generation, last->generation);
}

/// A policy `assign`ing `policy`, of `hosts` host filters (a few ms to build per thousand) and
/// the policies P and Q.
std::string busy_policy(const fs::path& dir, const std::string& policy, int hosts) {
    std::string t = "[appliance]\ncontrol = " + (dir / "s").string() + "\nassign = " + policy + "\n[filterlist Hosts]\n";
    for (int h = 0; h < hosts; ++h)
        t += "filter = 198.19." + std::to_string(h / 200) + "." + std::to_string(h % 200) + "+198.18.0.10:" +
             std::to_string(1 + h % 60000) + ":TCP\n";
    return t + "[filterlist All]\nfilter = *+*\n[policy P]\nrule = Hosts -> permit\nrule = All -> block\n"
               "[policy Q]\nrule = All -> block\n";
}

ReloadJob text_job(std::string text, bool if_changed = false) {
    ReloadJob j;
    j.kind = ReloadJob::Kind::text;
    j.trigger = "test";
    j.text = std::move(text);
    j.if_changed = if_changed;
    return j;
}

ReloadOutcome wait_for(Runtime& rt, Runtime::Ticket t) {
    std::optional<ReloadOutcome> o;
    if (eventually(
            [&] {
                rt.collect();
                o = rt.outcome(t);
                return o.has_value();
            },
            30s, 1ms))
        return *o;
    ADD_FAILURE() << "no outcome for ticket " << t << " in " << test::scaled(30s).count() << " ms";
    return {};
}

// A reload queued behind an assign carries the file as it was read before the assign wrote it:
// it must not publish that text (it would revert the assign in force while the file says
// otherwise); it reads the file again.
TEST_F(Swap, AReloadQueuedBeforeAnAssignWroteDoesNotRevertIt) {
    write_text(busy_policy(dir_, "P", 200));
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    const std::string before = busy_policy(dir_, "P", 200);
    rt.submit(text_job(busy_policy(dir_, "P", 20000)));  // keeps the builder busy
    ReloadJob assign;
    assign.kind = ReloadJob::Kind::assign;
    assign.policy = "Q";
    const auto a = rt.submit(std::move(assign));
    const auto stale = rt.submit(text_job(before));  // read before the assign wrote the file
    const ReloadOutcome oa = wait_for(rt, a);
    ASSERT_TRUE(oa.ok) << (oa.errors.empty() ? "" : oa.errors.front());
    const ReloadOutcome os = wait_for(rt, stale);
    EXPECT_TRUE(os.ok);
    EXPECT_NE(test::slurp(path_).find("assign = Q"), std::string::npos);
    EXPECT_EQ(rt.status()["policy"], "Q") << "the file says Q";
}

// Distinct edits that keep coming while each build runs cannot keep the policy stale for ever:
// after two builds cancelled in a row, the third runs to the end and is published.
TEST_F(Swap, EditsFasterThanABuildStillPublish) {
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    std::vector<Runtime::Ticket> tickets;
    for (int i = 0; i < 4; ++i) {
        ReloadJob job = text_job(busy_policy(dir_, "P", 20000 + i));  // each a different file
        job.trigger = "edit " + std::to_string(i);
        tickets.push_back(rt.submit(std::move(job)));
        if (i == 3)
            break;
        // The next edit comes while this one builds.
        const bool building = eventually(
            [&] {
                const auto b = rt.status()["building"];
                return !b.is_null() && b["trigger"] == "edit " + std::to_string(i);
            },
            5s, 100us);
        ASSERT_TRUE(building) << "edit " << i << " was not built";
    }
    const ReloadOutcome third = wait_for(rt, tickets[2]);
    ASSERT_TRUE(third.ok);
    EXPECT_EQ(third.trigger, "edit 2") << "the third build ran to the end: its outcome is its own";
    const ReloadOutcome last = wait_for(rt, tickets[3]);
    ASSERT_TRUE(last.ok);
    EXPECT_EQ(last.generation, third.generation + 1) << "then the newest was built and published";
    for (const int cancelled : {0, 1})
        EXPECT_EQ(wait_for(rt, tickets[static_cast<std::size_t>(cancelled)]).generation, third.generation)
            << "a cancelled build's asker gets the outcome of the one that replaced it";
}

// A reload of the text being built, or one that reads the file, lets the build finish: edits of
// the same bytes cannot starve the publish.
TEST_F(Swap, AReloadOfTheSameTextDoesNotCancelTheBuild) {
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    const std::string big = busy_policy(dir_, "P", 20000);
    write_text(big);
    const auto first = rt.submit(text_job(big));
    // Once it builds (queued, it would be replaced like any queued reload).
    eventually([&] { return !rt.status()["building"].is_null(); }, 5s, 100us);
    ASSERT_FALSE(rt.status()["building"].is_null()) << "the build ended before the others came";
    std::vector<Runtime::Ticket> more;
    for (int i = 0; i < 5; ++i) {
        more.push_back(rt.submit(text_job(big)));
        ReloadJob file;
        file.trigger = "test";
        more.push_back(rt.submit(std::move(file)));
    }
    const ReloadOutcome o1 = wait_for(rt, first);
    ASSERT_TRUE(o1.ok);
    EXPECT_EQ(o1.generation, 2u) << "the first build was published, not cancelled";
    for (const auto t : more)
        EXPECT_TRUE(wait_for(rt, t).ok);
    EXPECT_LT(o1.generation, wait_for(rt, more.back()).generation) << "the first one's outcome is its own";
    EXPECT_LE(rt.generation(), 3u) << "the ten that came while it built were built once";
    EXPECT_GT(o1.ms, 0);
    EXPECT_GT(rt.status()["last_reload"]["ms"].get<double>(), 0);
}

// Outcomes nobody asks for are not kept for ever (file-watch noise: a save of the same bytes).
// The generation owns its policy; the workers' table set views the ranked entries in place
// instead of holding a second copy (100K filters are tens of MB each), after a start and after
// a reload alike.
TEST_F(Swap, AGenerationHoldsItsEntriesOnce) {
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    const auto views_its_own = [&] {
        const Generation& g = *rt.publisher().current();
        return !g.compiled.rules.empty() && g.tables->rules.data() == g.compiled.rules.data() &&
               g.tables->rules.size() == g.compiled.rules.size();
    };
    EXPECT_TRUE(views_its_own()) << "generation 1";
    write(1);
    const ReloadOutcome o = rt.reload("test", false);
    ASSERT_TRUE(o.ok) << (o.errors.empty() ? "" : o.errors[0]);
    ASSERT_EQ(rt.publisher().current()->number, 2u);
    EXPECT_TRUE(views_its_own()) << "generation 2";
}

TEST_F(Swap, OutcomesAreForgottenAfterAWhile) {
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    const auto read = read_config_file(path_);
    ASSERT_TRUE(read) << read.error();
    const std::string text = *read;
    const auto first = rt.submit(text_job(text, true));
    ASSERT_TRUE(rt.outcome(first));
    EXPECT_TRUE(rt.outcome(first)->unchanged);
    for (int i = 0; i < 1000; ++i)
        rt.submit(text_job(text, true));
    rt.collect();
    EXPECT_FALSE(rt.outcome(first)) << "a thousand later ones pushed it out";
}

// moatd's file watch asks, right after the file is read, whether it stayed untouched; if a write
// began meanwhile (an editor truncating the file in place), the text read may be half a policy
// and must not be published, counted or logged: the watch schedules the reload again.
TEST_F(Swap, AFileWrittenWhileItWasReadIsNotPublished) {
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    std::vector<std::uint64_t> logged;
    rt.on_reload([&](const ReloadOutcome& o) { logged.push_back(o.generation); });
    const nlohmann::json before = rt.status();
    write(1);  // a usable file, different from the one in force: it would be published
    int asked = 0;
    ReloadOutcome o = rt.reload("config file changed", true, [&] {
        ++asked;
        return false;
    });
    EXPECT_EQ(asked, 1);
    EXPECT_TRUE(o.superseded);
    EXPECT_EQ(rt.generation(), 1u);
    EXPECT_EQ(rt.status()["last_reload"], before["last_reload"]);
    EXPECT_EQ(rt.status()["reloads"], before["reloads"]);
    EXPECT_TRUE(logged.empty());

    o = rt.reload("config file changed", true, [&] {
        ++asked;
        return true;
    });
    EXPECT_EQ(asked, 2);
    EXPECT_FALSE(o.superseded);
    EXPECT_TRUE(o.ok) << (o.errors.empty() ? "" : o.errors.front());
    EXPECT_EQ(o.generation, 2u);
    EXPECT_EQ(logged, std::vector<std::uint64_t>{2});
}

TEST_F(Swap, CountersCarryOverOnlyForUnchangedFilters) {
    Ports ports("c");
    Runtime rt(path_, 1);
    ASSERT_NO_FATAL_FAILURE(start(rt));
    launch(rt, ports);
    const auto send = [&](std::uint64_t seq, int expect_out) {
        ASSERT_EQ(rte_ring_enqueue(ports.out_rx, packet(seq)), 0);
        int got = 0;
        eventually(
            [&] {
                void* m;
                while (rte_ring_dequeue(ports.in_tx, &m) == 0) {
                    rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
                    ++got;
                }
                return got >= expect_out;
            },
            1s, 1ms);
        while (rte_ring_count(ports.out_rx) > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    };
    const auto hits = [&](const std::string& list) {
        for (const auto& f : rt.stats().filters)
            if (f.filterlist == list)
                return static_cast<long>(f.packets);
        return -1L;
    };
    for (std::uint64_t seq : {0ull, 4ull, 8ull, 1ull})
        send(seq, 1);  // three A, one B
    EXPECT_EQ(hits("Both"), 3);
    EXPECT_EQ(hits("This one"), 1);
    write(1);  // "Both" unchanged; "This one" now another filter
    reload_and_settle(rt);
    EXPECT_EQ(hits("Both"), 3) << "an unchanged filter keeps its count";
    EXPECT_EQ(hits("This one"), 0) << "a changed filter starts from zero";
    send(12, 1);
    EXPECT_EQ(hits("Both"), 4);
    write_text(policy(1, (dir_ / "s").string()) + "[filterlist Extra]\nfilter = *+198.18.0.99\n");
    reload_and_settle(rt);
    EXPECT_EQ(hits("Both"), 4);
    // Right after a reload the old generation still waits for its grace period (nothing has
    // reclaimed it: GracePeriod checks when it may be): its counts show all the same, and once
    // reclaimed they are not counted twice.
    write(0);
    const ReloadOutcome o = rt.reload("test");
    ASSERT_TRUE(o.ok);
    EXPECT_EQ(hits("Both"), 4) << "before reclaim";
    while (rt.reclaim() != 0)
        std::this_thread::yield();
    EXPECT_EQ(hits("Both"), 4) << "after reclaim";
    // Back-to-back reloads: the counts travel along a chain of retired generations.
    write(1);
    ASSERT_TRUE(rt.reload("a").ok);
    write(0);
    ASSERT_TRUE(rt.reload("b").ok);
    EXPECT_EQ(hits("Both"), 4) << "through " << rt.publisher().retired() << " retired generations";
    send(16, 1);
    EXPECT_EQ(hits("Both"), 5);
    while (rt.reclaim() != 0)
        std::this_thread::yield();
    EXPECT_EQ(hits("Both"), 5) << "after reclaiming the chain";
    halt();
}

// The swap protocol (publisher.h), one step at a time: readers here are the test's own calls on
// the publisher's RCU state (QSBR keeps no per-thread state, so one thread can play them all),
// so that each step is decided, not raced. A retired generation stays alive, and its tables in
// place, until every online reader has reported a quiescent state after the publish; then
// reclaim() frees it. A reader that is offline holds nothing.
TEST(GracePeriod, ARetiredGenerationLivesUntilEveryOnlineReaderPassedAQuiescentState) {
    Publisher pub(3);
    rte_rcu_qsbr* q = pub.qsbr();
    for (unsigned r = 0; r < 3; ++r)
        ASSERT_EQ(rte_rcu_qsbr_thread_register(q, r), 0);
    rte_rcu_qsbr_thread_online(q, 0);
    rte_rcu_qsbr_thread_online(q, 1);  // reader 2 stays offline throughout
    const auto generation = [](std::uint64_t n) {
        auto g = std::make_unique<Generation>();
        g->number = n;
        g->tables = std::make_unique<dp::TableSet>();
        g->tables->generation = n;
        return g;
    };
    std::vector<std::uint64_t> freed;
    const auto reclaim = [&] { return pub.reclaim([&](Generation& g) { freed.push_back(g.number); }); };

    pub.publish(generation(1));
    const std::weak_ptr<const Generation> first = pub.current_shared();
    // Both readers report, then take the tables of generation 1 for their next iteration.
    rte_rcu_qsbr_quiescent(q, 0);
    rte_rcu_qsbr_quiescent(q, 1);
    const dp::TableSet* held = pub.tables()->load(std::memory_order_acquire);
    ASSERT_EQ(held->generation, 1u);

    pub.publish(generation(2));
    EXPECT_EQ(pub.tables()->load(std::memory_order_acquire)->generation, 2u) << "the next load sees the new tables";
    EXPECT_EQ(reclaim(), 1u) << "quiescent states reported before the publish do not end its grace period";
    EXPECT_TRUE(freed.empty());
    EXPECT_FALSE(first.expired()) << "generation 1 was freed while readers may still hold its tables";
    rte_rcu_qsbr_quiescent(q, 0);
    EXPECT_EQ(reclaim(), 1u) << "reader 1 has not reported since the publish: it may still read generation 1";
    EXPECT_TRUE(freed.empty());
    EXPECT_FALSE(first.expired());
    EXPECT_EQ(held->generation, 1u) << "the tables a reader holds are intact";
    rte_rcu_qsbr_quiescent(q, 1);
    EXPECT_EQ(reclaim(), 0u) << "every online reader has reported since the publish";
    EXPECT_EQ(freed, std::vector<std::uint64_t>{1});
    EXPECT_TRUE(first.expired()) << "reclaim() without `out` frees it";

    // A reader that goes offline stops holding generations back; the online one still does.
    pub.publish(generation(3));
    rte_rcu_qsbr_thread_offline(q, 1);
    EXPECT_EQ(reclaim(), 1u) << "reader 0 is online and has not reported since the publish";
    rte_rcu_qsbr_quiescent(q, 0);
    EXPECT_EQ(reclaim(), 0u) << "offline reader 1 (and 2) must not hold generation 2 back";
    EXPECT_EQ(freed, (std::vector<std::uint64_t>{1, 2}));

    // Two publishes in a row: both wait, oldest first, and go together once reader 0 reports.
    pub.publish(generation(4));
    pub.publish(generation(5));
    ASSERT_EQ(pub.retired_generations().size(), 2u);
    EXPECT_EQ(pub.retired_generations()[0]->number, 3u);
    EXPECT_EQ(pub.retired_generations()[1]->number, 4u);
    EXPECT_EQ(reclaim(), 2u);
    rte_rcu_qsbr_quiescent(q, 0);
    EXPECT_EQ(reclaim(), 0u);
    EXPECT_EQ(freed, (std::vector<std::uint64_t>{1, 2, 3, 4}));

    rte_rcu_qsbr_thread_offline(q, 0);
    for (unsigned r = 0; r < 3; ++r)
        rte_rcu_qsbr_thread_unregister(q, r);
}

}  // namespace
}  // namespace moat::ctl

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new moat::ctl::Eal2);
    return RUN_ALL_TESTS();
}
