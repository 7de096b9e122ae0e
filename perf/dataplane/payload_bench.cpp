// The cost of payload filters on the worker's path (issue 7): parse_burst + classify_burst +
// scan_payloads over bursts of 32 prebuilt mbufs (HTTP-like requests of --payload bytes), for
// a mix where 0%, 10% and 100% of the packets need a scan, with 10, 100 and 1000 patterns.
// The anchor is the same mix under the same policy with its payload filters removed, measured
// in the same run, interleaved round by round (this machine is shared and noisy).
//
//   payload_bench [--patterns 10,100,1000] [--mix 0,10,100] [--payload 400] [--seconds 0.3] [--rounds 5]
//
// Printed per case: Mpps with and without the payload filters (medians), their ratio, the extra
// nanoseconds per packet and per scanned byte. Packets to port 443 never need a scan (no payload
// filter outranks the web filter there); packets to port 80 always do (every payload filter is
// on port 80 and none of their patterns matches, so each scan reads the whole payload).
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/compile/tables.h"
#include "dataplane/classify.h"
#include "dataplane/worker.h"
#include "perf/classbench.h"
#include "perf/start_eal.h"
#include "tests/common/packets.h"

namespace moat {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::vector<unsigned> patterns{10, 100, 1000};
    std::vector<unsigned> mix{0, 10, 100};  ///< percent of packets that need a scan
    unsigned payload = 400;
    double seconds = 0.3;
    int rounds = 5;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/// Web on 80 and 443 permitted, everything else to the server blocked; with `patterns` payload
/// filters on port 80 (distinct signatures, none of which the test traffic carries).
std::string policy(unsigned patterns) {
    std::string s = "[appliance]\nme = 198.18.0.10\nassign = Web\n[filterlist Web]\nfilter = *+0:80:TCP\n"
                    "filter = *+0:443:TCP\n[filterlist All]\nfilter = *+0\n";
    if (patterns)
        s += "[filterlist Signatures]\n";
    for (unsigned i = 0; i < patterns; ++i) {
        char line[128];
        std::snprintf(line, sizeof line, "filter = *+0:80:TCP payload=/x-sig-%04u-[0-9a-f]{4}[^\\r\\n]*evil/i\n", i);
        s += line;
    }
    s += "[policy Web]\nrule = Web -> permit\nrule = All -> block\n";
    if (patterns)
        s += "rule = Signatures -> block\n";
    return s;
}

/// A table set with the policy that owns its entries, which lives as long as it does.
std::shared_ptr<const dp::TableSet> tables_for(unsigned patterns) {
    struct Owned {
        ctl::LoadResult policy;
        std::unique_ptr<dp::TableSet> tables;
    };
    auto o = std::make_shared<Owned>();
    o->policy = ctl::load_policy_text(policy(patterns), "payload_bench.ini");
    if (!o->policy.usable()) {
        for (const auto& d : o->policy.diags.all())
            std::fprintf(stderr, "%s\n", d.message.c_str());
        return nullptr;
    }
    auto built = ctl::build_table_set(*o->policy.config, *o->policy.compiled, 1, 1);
    if (!built) {
        std::fprintf(stderr, "payload_bench: %s\n", built.error().c_str());
        return nullptr;
    }
    o->tables = std::move(built->tables);
    return std::shared_ptr<const dp::TableSet>(o, o->tables.get());
}

/// `n` requests from varied clients, `percent` of them (spread evenly) to port 80.
std::vector<rte_mbuf*> traffic(rte_mempool* pool, unsigned n, unsigned percent, unsigned payload) {
    std::mt19937 rng(7);
    const char* words[] = {"GET", "/index.html", "HTTP/1.1", "Host:", "www.example.com", "Accept:", "text/html",
                           "User-Agent:", "Mozilla/5.0", "Cookie:", "session=", "abcdef0123", "q=", "search"};
    std::vector<rte_mbuf*> out;
    for (unsigned i = 0; i < n; ++i) {
        test::Pkt p;
        p.src = "198.18." + std::to_string(100 + rng() % 100) + "." + std::to_string(1 + rng() % 250);
        p.sport = static_cast<std::uint16_t>(1024 + rng() % 60000);
        p.dport = i * percent / 100 != (i + 1) * percent / 100 ? 80 : 443;
        while (p.payload.size() < payload)
            p.payload += std::string(words[rng() % std::size(words)]) + (rng() % 4 ? " " : "\r\n");
        p.payload.resize(payload);
        const test::Bytes b = test::frame(p);
        rte_mbuf* m = rte_pktmbuf_alloc(pool);
        if (!m)
            break;
        std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(b.size())), b.data(), b.size());
        out.push_back(m);
    }
    return out;
}

struct Run {
    double mpps = 0;
    double scanned_per_pkt = 0;  ///< bytes
};

/// The worker's stages on `pkts` in bursts of 32 for `seconds`.
Run measure(const dp::TableSet& t, const std::vector<rte_mbuf*>& pkts, double seconds) {
    dp::Burst b;
    std::uint64_t packets = 0;
    dp::ScanCounts scanned;
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    const auto t0 = Clock::now();
    std::size_t at = 0;
    while (Clock::now() < end) {
        for (int rep = 0; rep < 64; ++rep) {
            b.n = dp::kBurstMax;
            for (std::uint16_t i = 0; i < b.n; ++i) {
                b.pkts[i] = pkts[at];
                at = at + 1 == pkts.size() ? 0 : at + 1;
            }
            dp::parse_burst(b.packets(), dp::Ingress::outside, t.parse, b.metas());
            if (dp::classify_burst(t, b.metas(), b.verdict_span()) != 0)
                dp::scan_payloads(t, 0, b.packets(), b.metas(), b.verdict_span(), scanned);
            for (std::uint16_t i = 0; i < b.n; ++i)
                if (b.verdicts[i].drop != dp::DropReason::none) [[unlikely]]
                    std::abort();  // every packet of the mix is permitted: anything else is a bug
            packets += b.n;
        }
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    return {static_cast<double>(packets) / s / 1e6, static_cast<double>(scanned.bytes) / static_cast<double>(packets)};
}

}  // namespace
}  // namespace moat

int main(int argc, char** argv) {
    using namespace moat;
    Options opt;
    const auto numbers = [](const std::string& s) {
        std::vector<unsigned> v;
        for (const auto& x : perf::split_list(s))
            v.push_back(static_cast<unsigned>(std::stoul(x)));
        return v;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--patterns" && i + 1 < argc)
            opt.patterns = numbers(argv[++i]);
        else if (a == "--mix" && i + 1 < argc)
            opt.mix = numbers(argv[++i]);
        else if (a == "--payload" && i + 1 < argc)
            opt.payload = static_cast<unsigned>(std::stoul(argv[++i]));
        else if (a == "--seconds" && i + 1 < argc)
            opt.seconds = std::stod(argv[++i]);
        else if (a == "--rounds" && i + 1 < argc)
            opt.rounds = std::stoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: payload_bench [--patterns 10,100,1000] [--mix 0,10,100] [--payload 400] "
                                 "[--seconds 0.3] [--rounds 5]\n");
            return 2;
        }
    }
    if (!perf::start_eal({"payload_bench", "--no-pci", "-l", "0", "--log-level", "*:error"}, 512, 512))
        return 1;
    rte_mempool* pool = rte_pktmbuf_pool_create("payload_bench", 8191, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (!pool) {
        std::fprintf(stderr, "mempool: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    const auto plain = tables_for(0);
    if (!plain)
        return 1;
    std::printf("payload %u bytes, bursts of %u, %d interleaved rounds of %.2f s, medians\n", opt.payload,
                static_cast<unsigned>(dp::kBurstMax), opt.rounds, opt.seconds);
    std::printf("| patterns | scanned | Mpps without | Mpps with | with/without | extra ns/pkt | ns/scanned byte |\n"
                "|---|---|---|---|---|---|---|\n");
    for (const unsigned n : opt.patterns) {
        const auto t0 = Clock::now();
        const auto with = tables_for(n);
        if (!with)
            return 1;
        const double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        std::fprintf(stderr, "%u patterns: table set built in %.0f ms\n", n, build_ms);
        for (const unsigned percent : opt.mix) {
            const auto pkts = traffic(pool, 4096, percent, opt.payload);
            std::vector<double> a, b, bytes;
            for (int r = 0; r < opt.rounds; ++r) {
                a.push_back(measure(*plain, pkts, opt.seconds).mpps);
                const Run w = measure(*with, pkts, opt.seconds);
                b.push_back(w.mpps);
                bytes.push_back(w.scanned_per_pkt);
            }
            rte_pktmbuf_free_bulk(const_cast<rte_mbuf**>(pkts.data()), static_cast<unsigned>(pkts.size()));
            const double without = median(a), with_mpps = median(b), scanned = median(bytes);
            const double extra_ns = 1e3 / with_mpps - 1e3 / without;
            char per_byte[32] = "-";
            if (scanned > 0)
                std::snprintf(per_byte, sizeof per_byte, "%.2f", extra_ns / scanned);
            std::printf("| %u | %u%% | %.2f | %.2f | %.3f | %.1f | %s |\n", n, percent, without, with_mpps,
                        with_mpps / without, extra_ns, per_byte);
            std::fflush(stdout);
        }
    }
    rte_mempool_free(pool);
    rte_eal_cleanup();
    return 0;
}
