// A real moatd between two net_pcap ports, for end-to-end tests: the test writes the frames each
// port receives, runs moatd until both ports have read all of them, and gets back what came out
// of each port and the final counters (--counters-json).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/common/lcores.h"
#include "tests/common/moatd_runner.h"
#include "tests/common/packets.h"
#include "tests/common/pcap_io.h"

namespace moat::test {

struct ApplianceRun {
    bool ok = false;          ///< moatd started, read every frame and stopped cleanly
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
        const auto seen = moatd.wait_stats(
            [&](const nlohmann::json& s) {
                return s["ports"]["outside"]["rx_packets"].get<std::size_t>() == outside.size() &&
                       s["ports"]["inside"]["rx_packets"].get<std::size_t>() == inside.size();
            },
            60);
        const int status = moatd.stop();
        r.log = moatd.log();
        if (status != 0 || !seen) {
            r.why = "moatd " + std::string(seen ? "" : "never reported all frames read; it ") + "exited with " +
                    std::to_string(status) + "\n" + r.log;
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
