// A real moatd between two net_pcap ports, for end-to-end tests: the test writes the frames each
// port receives, runs moatd until both ports have read all of them, and gets back what came out
// of each port and the final counters (--counters-json).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/common/lcores.h"
#include "tests/common/moatd_runner.h"
#include "tests/common/packets.h"
#include "tests/common/pcap_io.h"
#include "tests/common/time_scale.h"

namespace moat::test {

struct ApplianceRun {
    bool ok = false;          ///< moatd started, read every frame and stopped cleanly
    bool timed_out = false;   ///< moatd did not report every frame read in time (a stall, not a frame diff)
    std::string why;          ///< what went wrong when not ok, with moatd's log
    std::vector<Bytes> to_inside, to_outside;
    nlohmann::json counters;  ///< as `moatctl stats --json` prints them
    std::string log;          ///< moatd's stderr
};

class PcapAppliance : public ::testing::Test {
protected:
    void SetUp() override {
        // Short: a port spec with two paths must fit in one config line (198 characters).
        static int n = 0;
        dir_ = std::filesystem::temp_directory_path() /
               ("mp." + std::to_string(getpid()) + "." + std::to_string(n++));
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override {
        if (!HasFailure())
            std::filesystem::remove_all(dir_);
        else
            std::cerr << "kept " << dir_ << " for inspection\n";
    }

    std::string path(const std::string& f) const { return (dir_ / f).string(); }

    /// A config with pcap ports reading or/ir.pcap (outside/inside rx) and writing ot/it.pcap,
    /// then `appliance` (more [appliance] lines) and `policy`.
    std::string write_config(const std::string& policy, const std::string& appliance = "") const {
        const std::string cfg = path("moat.ini");
        std::ofstream(cfg) << "[appliance]\n"
                           << "outside = net_pcap0,rx_pcap=" << path("or.pcap") << ",tx_pcap=" << path("ot.pcap")
                           << "\ninside = net_pcap1,rx_pcap=" << path("ir.pcap") << ",tx_pcap=" << path("it.pcap")
                           << "\neal = --no-huge -m 256 " << lcores_option() << " --file-prefix moat-pcap-" << getpid()
                           << "\ncontrol = " << path("moat.sock") << "\n"
                           << appliance << policy;
        return cfg;
    }

    /// Runs moatd on `cfg` with `outside` and `inside` as the frames its ports receive.
    ApplianceRun run(const std::string& cfg, const std::vector<Bytes>& outside, const std::vector<Bytes>& inside) {
        ApplianceRun r;
        write_pcap(path("or.pcap"), outside);
        write_pcap(path("ir.pcap"), inside);
        Moatd moatd({"--config", cfg, "--stats-period", "0.1", "--counters-json", path("counters.json")},
                    path("moatd.log"));
        if (!moatd.started()) {
            r.why = "moatd did not start";
            return r;
        }
        const auto rx = [](const nlohmann::json& s, const char* port) -> std::size_t {
            const nlohmann::json::json_pointer p("/ports/" + std::string(port) + "/rx_packets");
            return s.contains(p) && s.at(p).is_number_integer() ? s.at(p).get<std::size_t>() : 0;
        };
        const auto all_read = [&](const nlohmann::json& s) {
            return rx(s, "outside") == outside.size() && rx(s, "inside") == inside.size();
        };
        // wait_stats hands back the last stats it saw whether or not they were the awaited ones:
        // only stats that say every frame was read count, or a stalled moatd would pass on to a
        // comparison of whatever it wrote and fail as a frame diff.
        const double budget = 60;  // seconds, scaled by wait_stats
        const auto t0 = std::chrono::steady_clock::now();
        const auto last = moatd.wait_stats(all_read, budget);
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const bool read = last && all_read(*last);
        const int status = moatd.stop();
        r.log = moatd.log();
        if (!read) {
            r.timed_out = waited >= scaled_seconds(budget);
            const std::pair<const char*, std::size_t> sides[] = {{"outside", outside.size()}, {"inside", inside.size()}};
            std::string ports;
            for (const auto& [port, expected] : sides)
                if (last)
                    ports += "\n  " + std::string(port) + " port: " + std::to_string(rx(*last, port)) + " of " +
                             std::to_string(expected) + " frames read" + (rx(*last, port) == expected ? "" : "  <-- short");
            r.why = (r.timed_out ? "timed out after " + std::to_string(static_cast<int>(scaled_seconds(budget))) +
                                       " s waiting for moatd to read every frame (not a frame diff)"
                                 : std::string("moatd stopped printing stats before reading every frame")) +
                    (last ? "; its last stats:" : "; it printed no stats at all") + ports + "\nmoatd then exited with " +
                    std::to_string(status) + "; its log:\n" + r.log;
            return r;
        }
        if (status != 0) {
            r.why = "moatd read every frame but exited with " + std::to_string(status) + "; its log:\n" + r.log;
            return r;
        }
        bool in_ok = false, out_ok = false;
        r.to_inside = read_pcap(path("it.pcap"), &in_ok);
        r.to_outside = read_pcap(path("ot.pcap"), &out_ok);
        std::ifstream counters(path("counters.json"));
        r.counters = nlohmann::json::parse(counters, nullptr, false);
        if (!in_ok || !out_ok || r.counters.is_discarded()) {
            r.why = "moatd left no output pcap or counters\n" + r.log;
            return r;
        }
        r.ok = true;
        return r;
    }

    std::filesystem::path dir_;
};

}  // namespace moat::test
