#include "control/runtime/daemon.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_cycles.h>
#include <rte_pdump.h>
#include <rte_telemetry.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/runtime/config_watch.h"
#include "control/runtime/control_socket.h"
#include "control/runtime/eal_args.h"
#include "control/runtime/link_watch.h"
#include "control/runtime/log.h"
#include "control/runtime/metrics_http.h"
#include "control/runtime/notify.h"
#include "control/runtime/monitor.h"
#include "control/runtime/states.h"
#include "control/runtime/runtime.h"
#include "control/runtime/stats.h"
#include "control/runtime/version.h"
#include "control/compile/tables.h"
#include "control/config/json_text.h"
#include "control/config/result.h"
#include "control/config/text.h"
#include "dataplane/port.h"
#include "dataplane/worker.h"

namespace moat::ctl {

namespace {

constexpr const char* kUsage =
    "usage: moatd [--config FILE] [--stats-period SECONDS] [--counters-json FILE]\n"
    "       moatd EAL-ARGS -- [--config FILE] ...\n"
    "       moatd --version | --help\n"
    "  --config FILE          the policy and the ports (default: $MOAT_CONFIG or " MOAT_DEFAULT_CONFIG ")\n"
    "  --stats-period SECONDS print a line 'stats {json}' with the counters this often\n"
    "  --counters-json FILE   write the final counters as JSON to FILE when stopping\n"
    "  --version              print the version and the git revision built\n"
    "EAL arguments come from the config's eal key, then from EAL-ARGS.\n";

struct Options {
    std::string config = default_config_path();
    std::vector<std::string> eal;
    double stats_period = 0;
    std::string counters_json;
};

/// nullopt and `status` set when moatd should exit at once (help or a usage error).
std::optional<Options> parse_options(int argc, char** argv, int& status) {
    Options o;
    std::vector<std::string> args(argv + 1, argv + argc);
    const auto dashdash = std::find(args.begin(), args.end(), "--");
    if (dashdash != args.end()) {
        o.eal.assign(args.begin(), dashdash);
        args.erase(args.begin(), dashdash + 1);
    }
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        const bool has_value = i + 1 < args.size();
        if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            status = 0;
            return std::nullopt;
        }
        if (a == "--version") {
            std::fputs(version_text("moatd").c_str(), stdout);
            status = 0;
            return std::nullopt;
        }
        if (a == "--config" && has_value) {
            o.config = args[++i];
        } else if (a == "--stats-period" && has_value) {
            char* end = nullptr;
            o.stats_period = std::strtod(args[i + 1].c_str(), &end);
            if (*end != '\0' || !(o.stats_period > 0) || !std::isfinite(o.stats_period)) {
                std::fprintf(stderr, "moatd: --stats-period needs a positive number of seconds\n%s", kUsage);
                status = 2;
                return std::nullopt;
            }
            ++i;
        } else if (a == "--counters-json" && has_value) {
            o.counters_json = args[++i];
        } else {
            std::fprintf(stderr, "moatd: unexpected argument '%s'%s\n%s", a.c_str(),
                         a.starts_with("-") && dashdash == args.end() ? " (EAL arguments go before '--')" : "",
                         kUsage);
            status = 2;
            return std::nullopt;
        }
    }
    return o;
}

template <auto Fn>
struct CDeleter {
    void operator()(auto* p) const noexcept { Fn(p); }
};
using MempoolPtr = std::unique_ptr<rte_mempool, CDeleter<rte_mempool_free>>;

/// EAL for the lifetime of the object (STYLE 15: start-up stages unwind in reverse order).
class Eal {
public:
    explicit Eal(const std::vector<std::string>& args) {
        std::vector<std::string> argv_s{"moatd"};
        argv_s.insert(argv_s.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& s : argv_s)
            argv.push_back(s.data());
        up_ = rte_eal_init(static_cast<int>(argv.size()), argv.data()) >= 0;
    }
    ~Eal() {
        if (up_)
            rte_eal_cleanup();
    }
    Eal(const Eal&) = delete;
    Eal& operator=(const Eal&) = delete;
    bool up() const noexcept { return up_; }

private:
    bool up_ = false;
};

/// Packet capture: rte_pdump's server in this primary process, so that `dpdk-dumpcap
/// --file-prefix PREFIX -i PORT` (a secondary process) gets a copy of what the ports receive and
/// send. A secondary must map moatd's memory: hugepages and a file prefix, not --in-memory.
class Capture {
public:
    explicit Capture(const EalPlan& plan) {
        if (const std::string no = secondary_refusal(plan); !no.empty()) {
            log("packet capture (dpdk-dumpcap) unavailable: " + no);
            return;
        }
        if (rte_pdump_init() != 0) {
            log(Level::warning, std::string("packet capture (dpdk-dumpcap) unavailable: rte_pdump_init: ") + rte_strerror(rte_errno));
            return;
        }
        up_ = true;
        log("packet capture: dpdk-dumpcap --file-prefix=" + plan.file_prefix +
            " -i PORT (the port names below; dpdk-dumpcap --file-prefix=" + plan.file_prefix + " -D lists them)");
    }
    ~Capture() {
        if (up_)
            rte_pdump_uninit();
    }
    Capture(const Capture&) = delete;
    Capture& operator=(const Capture&) = delete;

private:
    bool up_ = false;
};

/// SIGINT, SIGTERM and SIGHUP blocked in every thread (EAL's threads inherit the mask, so no
/// worker is interrupted) and read from a signalfd by the control loop.
class SignalFd {
public:
    static Result<SignalFd> block(std::initializer_list<int> which) {
        sigset_t set;
        sigemptyset(&set);
        for (const int s : which)
            sigaddset(&set, s);
        pthread_sigmask(SIG_BLOCK, &set, nullptr);
        SignalFd f;
        f.fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (f.fd_ < 0)
            return fail(std::string("signalfd: ") + std::strerror(errno));
        return f;
    }
    SignalFd(SignalFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    SignalFd& operator=(SignalFd&&) = delete;
    ~SignalFd() {
        if (fd_ >= 0)
            close(fd_);
    }
    int fd() const noexcept { return fd_; }

private:
    SignalFd() = default;
    int fd_ = -1;
};

/// The launched workers; stops them and waits for their lcores when destroyed.
class Workers {
public:
    Workers() = default;
    ~Workers() { stop(); }
    Workers(const Workers&) = delete;
    Workers& operator=(const Workers&) = delete;

    /// Launches every worker, or none: when one lcore refuses, those launched are stopped again
    /// (a queue nobody polls would hold its packets while the port looks up).
    Status launch(std::vector<std::unique_ptr<dp::WorkerContext>> ctx) {
        ctx_ = std::move(ctx);
        for (auto& w : ctx_) {
            if (const int rc = rte_eal_remote_launch(&dp::worker_main, w.get(), w->lcore); rc != 0) {
                stop();
                return fail("cannot launch worker " + std::to_string(w->index) + " on lcore " +
                            std::to_string(w->lcore) + ": " + rte_strerror(-rc));
            }
            launched_ = true;
        }
        return {};
    }
    void stop() {
        stop_.store(true, std::memory_order_relaxed);
        if (launched_)
            rte_eal_mp_wait_lcore();
        launched_ = false;
    }
    const std::atomic<bool>* stop_flag() const noexcept { return &stop_; }
    std::vector<const dp::WorkerContext*> contexts() const {
        std::vector<const dp::WorkerContext*> out;
        for (const auto& w : ctx_)
            out.push_back(w.get());
        return out;
    }

private:
    std::vector<std::unique_ptr<dp::WorkerContext>> ctx_;
    std::atomic<bool> stop_{false};
    bool launched_ = false;
};

/// Writes to stdout from a thread of its own, so that a reader of moatd's stdout that is slow or
/// stuck (a full pipe) delays nothing on the control thread. While the reader lags, a newer line
/// replaces the one waiting: periodic counters are only worth their latest value.
class StdoutWriter {
public:
    StdoutWriter() : state_(std::make_shared<State>()) {
        std::thread([s = state_] { run(*s); }).detach();
    }
    ~StdoutWriter() { finish(std::chrono::seconds(2)); }
    StdoutWriter(const StdoutWriter&) = delete;
    StdoutWriter& operator=(const StdoutWriter&) = delete;

    void offer(std::string text) {
        std::lock_guard lock(state_->mu);
        state_->pending = std::move(text);
        state_->cv.notify_all();
    }
    /// Waits up to `limit` for what is waiting to be written, then lets the thread go (it ends
    /// with the process when stdout never drains).
    void finish(std::chrono::milliseconds limit) {
        std::unique_lock lock(state_->mu);
        state_->stop = true;
        state_->cv.notify_all();
        state_->cv.wait_for(lock, limit, [&] { return !state_->pending && !state_->busy; });
    }

private:
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        std::optional<std::string> pending;
        bool busy = false, stop = false;
    };
    static void run(State& s) {
        std::unique_lock lock(s.mu);
        for (;;) {
            s.cv.wait(lock, [&] { return s.pending || s.stop; });
            if (!s.pending)
                return;
            const std::string text = std::move(*s.pending);
            s.pending.reset();
            s.busy = true;
            lock.unlock();
            std::fwrite(text.data(), 1, text.size(), stdout);
            std::fflush(stdout);
            lock.lock();
            s.busy = false;
            s.cv.notify_all();
        }
    }
    std::shared_ptr<State> state_;
};

/// Requests a second each user may make on the read-only socket (bursts of twice that): plenty
/// for monitoring, and one user's flood leaves the others their share of the control thread.
constexpr double kReadOnlyRate = 100;
/// Large replies going out at once on the read-only socket: each holds a snapshot of its
/// generation (tens of MB for a 100K policy) until its reader has it.
constexpr std::size_t kReadOnlyReplying = 4;
/// How often the control loop drains the workers' monitor rings while a monitor is attached: a
/// ring of MonitorHub::kRingSize records then holds the samples of this long.
constexpr int kMonitorDrainMs = 5;
/// Refused changing requests logged a minute.
constexpr std::size_t kRefusedLogged = 10;

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

// DPDK telemetry (dpdk-telemetry.py -f moat): /moat/stats, /moat/status, /moat/rules. The
// callbacks run on DPDK's telemetry thread; the Runtime's queries are safe there. DPDK 22.11
// writes telemetry strings into its JSON as they are, so names go through tel_string first, and
// no exception may leave a callback (it would end the process).
// The callbacks hold g_tel_mu shared while they use the runtime; unbinding takes it exclusive,
// so no callback is inside a runtime that is being destroyed.
std::shared_mutex g_tel_mu;
Runtime* g_runtime = nullptr;

/// `s` as telemetry can carry it: valid UTF-8 without quotes, backslashes or control characters,
/// cut to DPDK's string limit.
std::string tel_string(const std::string& s) {
    std::string out = valid_utf8(s);
    for (char& c : out)
        if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20)
            c = '?';
    if (out.size() >= RTE_TEL_MAX_STRING_LEN) {
        out.resize(RTE_TEL_MAX_STRING_LEN - 1);
        while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80)
            out.pop_back();  // no half of a character at the cut
        if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0)
            out.pop_back();
    }
    return out;
}

template <typename F>
int tel_guard(F&& f) noexcept {
    try {
        std::shared_lock lock(g_tel_mu);
        return g_runtime ? f(*g_runtime) : -1;
    } catch (...) {
        return -1;
    }
}

int tel_stats(const char*, const char*, rte_tel_data* d) {
    return tel_guard([&](Runtime& rt) {
        const Stats s = rt.stats();
        rte_tel_data_start_dict(d);
        rte_tel_data_add_dict_u64(d, "generation", s.generation);
        for (const auto& p : s.ports) {
            for (const auto& k : kPortCounters)
                rte_tel_data_add_dict_u64(d, (p.name + "_" + std::string(k.name)).c_str(), p.*k.stat);
            for (std::size_t e = 0; e < kLinkEvents; ++e)
                rte_tel_data_add_dict_u64(d, (p.name + "_" + std::string(kLinkCounters[e].name)).c_str(), p.link[e]);
        }
        for (std::size_t r = 1; r < dp::kDropReasons; ++r)
            rte_tel_data_add_dict_u64(d, ("drop_" + std::string(dp::kDropReasonNames[r])).c_str(), s.drops[r]);
        rte_tel_data_add_dict_u64(d, "non_ip_passed", s.non_ip_passed);
        for (std::size_t r = 1; r < dp::kFragDrops; ++r)
            rte_tel_data_add_dict_u64(d, ("fragment_drop_" + std::string(dp::kFragDropNames[r])).c_str(), s.fragment_drops[r]);
        rte_tel_data_add_dict_u64(d, "fragments_passed", s.fragments_passed);
        for (const auto& k : kStateCounters)
            rte_tel_data_add_dict_u64(d, ("state_" + std::string(k.name)).c_str(), s.states.*k.stat);
        rte_tel_data_add_dict_u64(d, "state_active", s.states.active());
        return 0;
    });
}

int tel_status(const char*, const char*, rte_tel_data* d) {
    return tel_guard([&](Runtime& rt) {
        const nlohmann::json j = rt.status();
        rte_tel_data_start_dict(d);
        rte_tel_data_add_dict_string(d, "policy", tel_string(j["policy"].is_null() ? "" : j["policy"].get<std::string>()).c_str());
        rte_tel_data_add_dict_u64(d, "generation", j["generation"].get<std::uint64_t>());
        rte_tel_data_add_dict_string(d, "loaded_at", j["loaded_at"].get<std::string>().c_str());
        rte_tel_data_add_dict_string(d, "config", tel_string(j["config"].get<std::string>()).c_str());
        rte_tel_data_add_dict_int(d, "last_reload_ok", j["last_reload"]["ok"].get<bool>() ? 1 : 0);
        const auto& errors = j["last_reload"]["errors"];
        rte_tel_data_add_dict_string(d, "last_error", tel_string(errors.empty() ? "" : errors[0].get<std::string>()).c_str());
        rte_tel_data_add_dict_u64(d, "workers", j["workers"].size());
        rte_tel_data_add_dict_u64(d, "uptime_s", j["uptime_s"].get<std::uint64_t>());
        return 0;
    });
}

int tel_rules(const char*, const char*, rte_tel_data* d) {
    return tel_guard([&](Runtime& rt) {
        const nlohmann::json j = rt.rules(RTE_TEL_MAX_ARRAY_ENTRIES);
        rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
        for (const auto& r : j["rules"]) {
            const std::string line = std::to_string(r["rank"].get<std::size_t>()) + " " + r["action"].get<std::string>() +
                                     " " + std::to_string(r["packets"].get<std::uint64_t>()) + " pkts line " +
                                     std::to_string(r["line"].get<int>()) + ": " + r["filter"].get<std::string>();
            rte_tel_data_add_array_string(d, tel_string(line).c_str());
        }
        return 0;
    });
}

/// The telemetry commands answer from `rt` while this lives, and "not ready" before and after.
class TelemetryBinding {
public:
    explicit TelemetryBinding(Runtime& rt) {
        {
            std::unique_lock lock(g_tel_mu);
            g_runtime = &rt;
        }
        static const bool registered = [] {
            rte_telemetry_register_cmd("/moat/stats", tel_stats, "Moat counters: ports, drop reasons. Takes no parameters.");
            rte_telemetry_register_cmd("/moat/status", tel_status, "Moat status: policy, generation, last reload. No parameters.");
            rte_telemetry_register_cmd("/moat/rules", tel_rules, "Moat's ranked entries with hits (first 512). No parameters.");
            return true;
        }();
        (void)registered;
    }
    ~TelemetryBinding() { unbind(); }
    TelemetryBinding(const TelemetryBinding&) = delete;
    TelemetryBinding& operator=(const TelemetryBinding&) = delete;

    /// Waits for the callbacks running now; later ones answer "not ready".
    void unbind() {
        std::unique_lock lock(g_tel_mu);
        g_runtime = nullptr;
    }
};


// ---- Start-up stages (STYLE 15): each returns what the next needs, or why moatd cannot start;
// each owner below unwinds in reverse order on any early return.

/// The config as read at start-up, loaded and usable.
struct FirstPolicy {
    std::string text;  ///< exactly what was read (the first generation publishes it)
    LoadResult loaded;
    const Config& config() const { return *loaded.config; }
    const CompiledPolicy& compiled() const { return *loaded.compiled; }
};

/// Parse -> validate -> compile before anything starts: a broken config forwards nothing.
Result<FirstPolicy> load_first_policy(const std::string& path) {
    FirstPolicy first;
    if (Result<std::string> read = read_config_file(path))
        first.text = std::move(*read);
    else
        return fail(path + ": " + read.error());
    first.loaded = load_policy_text(first.text, path);
    // Every error (nothing starts until they are fixed); of the warnings the first 20 and how
    // many there are, whatever the policy.
    std::size_t warnings = 0;
    for (const auto& d : first.loaded.diags.all())
        if (d.severity == Severity::error || ++warnings <= kListedDiagnostics)
            log_plain(d.severity == Severity::error ? Level::error : Level::warning, format(d));
    if (warnings > kListedDiagnostics)
        log(Level::warning, "... and " + std::to_string(warnings - kListedDiagnostics) + " more warnings (moatctl check lists them)");
    if (!first.loaded.usable())
        return fail(path + " is not usable (fix the errors above)");
    const Appliance& a = first.config().appliance;
    if (a.outside.empty() || a.inside.empty())
        return fail(path + ": [appliance] must name both ports (outside = ..., inside = ...)");
    return first;
}

Result<EalPlan> eal_plan(const Appliance& a, const std::vector<std::string>& cli_eal) {
    Result<EalPlan> plan = plan_eal(a, cli_eal, probe_host());
    if (!plan)
        return plan;
    for (const auto& n : plan->notes)
        log(n);
    std::string line;
    for (const auto& arg : plan->args)
        line += " " + arg;
    log("EAL arguments:" + line);
    return plan;
}

/// The two ports, started with a queue pair per worker, and their mbuf pool; stopped (before the
/// pool is freed) when destroyed.
class Ports {
public:
    static Result<std::unique_ptr<Ports>> open(const Appliance& a) {
        std::unique_ptr<Ports> p(new Ports);
        p->spec = {a.outside, a.inside};
        for (std::size_t i = 0; i < 2; ++i) {
            const PortName n = port_name(p->spec[i]);
            if (rte_eth_dev_get_port_by_name(n.name.c_str(), &p->id[i]) != 0)
                return fail("no DPDK port named '" + n.name + "' (" + kRole[i] + " = " + p->spec[i] + ")");
        }
        // A NIC DMAs into the mbufs: without hugepages their physical addresses are not fixed.
        for (std::size_t i = 0; i < 2; ++i)
            if (const std::string no = dp::memory_refusal(kRole[i], dp::port_bus(p->id[i]), rte_eal_has_hugepages() != 0);
                !no.empty())
                return fail(no);
        p->workers = p->choose_workers(a.workers);
        if (rte_lcore_count() < p->workers + 1)
            return fail("workers = " + std::to_string(p->workers) + " needs " + std::to_string(p->workers + 1) +
                        " lcores and EAL has " + std::to_string(rte_lcore_count()));
        const int socket = p->numa_socket();
        const dp::PortConfig defaults{};
        const unsigned mbufs = std::max(8191u, 2 * p->workers * (defaults.rx_desc + defaults.tx_desc) +
                                                   p->workers * 4 * dp::kBurstMax + 2048);
        const std::uint16_t room = dp::mbuf_data_room(a.mtu);
        p->pool_.reset(rte_pktmbuf_pool_create("moat_mbufs", mbufs, 256, 0, room, socket));
        if (!p->pool_)
            return fail("cannot create the mbuf pool (" + std::to_string(mbufs) + " mbufs of " + std::to_string(room) +
                        " bytes on socket " + std::to_string(socket) + "): " + rte_strerror(rte_errno) +
                        (a.mtu > Appliance::kDefaultMtu ? " (a large mtu needs more memory: reserve more hugepages, or -m)" : ""));
        log("mbuf pool: " + std::to_string(mbufs) + " mbufs of " + std::to_string(room) + " bytes (mtu " +
            std::to_string(a.mtu) + ": frames up to " + std::to_string(dp::frame_limit(a.mtu)) +
            " bytes with two VLAN tags, whole in one mbuf) on NUMA socket " + std::to_string(socket));
        for (std::size_t i = 0; i < 2; ++i) {
            dp::PortConfig pc;
            pc.queues = static_cast<std::uint16_t>(p->workers);
            pc.mtu = static_cast<std::uint16_t>(a.mtu);
            pc.pool = p->pool_.get();
            if (const std::string err = dp::start_port(p->id[i], pc); !err.empty())
                return fail(std::string(kRole[i]) + " port " + p->spec[i] + ": " + err);
            p->started_[i] = true;
            std::uint16_t mtu = 0;
            rte_eth_dev_get_mtu(p->id[i], &mtu);
            log(std::string(kRole[i]) + " = " + p->spec[i] + " (port " + std::to_string(p->id[i]) + ", bus " +
                dp::port_bus(p->id[i]) + ", mtu " + std::to_string(mtu) + ", link " + dp::link_text(p->id[i]) + ")");
        }
        return p;
    }
    ~Ports() {
        for (std::size_t i = 0; i < 2; ++i)
            if (started_[i])
                dp::stop_port(id[i]);
    }
    Ports(const Ports&) = delete;
    Ports& operator=(const Ports&) = delete;

    static constexpr std::array<const char*, 2> kRole{"outside", "inside"};
    std::array<std::uint16_t, 2> id{};
    std::array<std::string, 2> spec;
    unsigned workers = 1;  ///< queue pairs per port, one per worker

private:
    Ports() = default;

    /// The socket the mbufs live on: the ports' (a NIC writes them across the interconnect
    /// otherwise), or the control lcore's when the ports have none (vdevs). Ports on two
    /// sockets, and worker lcores on another socket than the ports, are logged: one of them
    /// pays a remote access per packet.
    int numa_socket() const {
        std::array<int, 2> port_socket{};
        for (std::size_t i = 0; i < 2; ++i)
            port_socket[i] = rte_eth_dev_socket_id(id[i]);
        if (port_socket[0] >= 0 && port_socket[1] >= 0 && port_socket[0] != port_socket[1])
            log(Level::warning, "NUMA: the outside port is on socket " + std::to_string(port_socket[0]) + " and the inside port on socket " +
                std::to_string(port_socket[1]) + "; the mbufs go to socket " + std::to_string(port_socket[0]) +
                ", so the inside port's packets cross the interconnect (put both ports on one socket)");
        const int socket = port_socket[0] >= 0 ? port_socket[0] : port_socket[1] >= 0 ? port_socket[1]
                                                                                     : static_cast<int>(rte_socket_id());
        if (port_socket[0] < 0 && port_socket[1] < 0)
            return socket;
        unsigned lcore = 0, seen = 0;
        RTE_LCORE_FOREACH_WORKER(lcore) {
            if (seen++ == workers)
                break;
            if (static_cast<int>(rte_lcore_to_socket_id(lcore)) != socket)
                log(Level::warning, "NUMA: worker lcore " + std::to_string(lcore) + " is on socket " +
                    std::to_string(rte_lcore_to_socket_id(lcore)) + " and the ports and mbufs on socket " +
                    std::to_string(socket) + ": give eal = -l with lcores of socket " + std::to_string(socket) +
                    " (lscpu shows which)");
        }
        return socket;
    }

    /// Workers need a queue pair each on both ports; a port with fewer (most vdevs: pcap,
    /// af_packet) gets one worker, which sees everything. A port with the queues but no RSS
    /// (memif, ring) runs them all: its peer chooses each packet's queue, and so its worker.
    unsigned choose_workers(unsigned wanted) const {
        std::array<dp::QueuePlan, 2> plan;
        for (std::size_t i = 0; i < 2 && wanted > 1; ++i) {
            plan[i] = dp::multi_queue_plan(id[i], static_cast<std::uint16_t>(wanted));
            if (!plan[i].limit.empty()) {
                log(Level::warning, std::string(kRole[i]) + " port " + spec[i] + ": " + plan[i].limit + "; running 1 worker, not " +
                    std::to_string(wanted) + " (workers = " + std::to_string(wanted) + ")");
                return 1;
            }
        }
        for (std::size_t i = 0; i < 2 && wanted > 1; ++i)
            if (plan[i].spread == dp::Spread::peer)
                log(std::string(kRole[i]) + " port " + spec[i] + ": no RSS, so the peer chooses which of its " +
                    std::to_string(wanted) +
                    " rx queues, and so which worker, each packet reaches: fragments of one datagram sent on "
                    "different queues meet different workers' fragment tables, and a later fragment whose first "
                    "went to another worker is dropped (no_first: fail closed)");
        return wanted;
    }

    MempoolPtr pool_;
    std::array<bool, 2> started_{};
};

/// The running policy: generation 1 now, later ones from reloads.
Result<std::unique_ptr<Runtime>> start_runtime(const std::string& path, FirstPolicy first, const Ports& ports) {
    std::unique_ptr<Runtime> rt;
    try {
        rt = std::make_unique<Runtime>(path, ports.workers);
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    if (const Status started = rt->start(std::move(*first.loaded.config), std::move(*first.loaded.compiled),
                                         std::move(first.text));
        !started)
        return fail(started.error());
    const Config& cfg = rt->publisher().current()->config;
    const CompiledPolicy& cp = rt->publisher().current()->compiled;
    const dp::TableSet& tables = *rt->publisher().current()->tables;
    log(std::string("classifier: ") +
        (tables.use_reference ? "reference (linear scan; classifier = reference)"
                              : "trie, " + std::to_string((tables.v4.bytes() + tables.v6.bytes() + 1023) / 1024) +
                                    " KB, leaf scan " + dp::leaf_scan_name(tables.scan)));
    if (!tables.payload.empty()) {
        std::size_t db_bytes = 0;
        hs_database_size(tables.payload.db.get(), &db_bytes);
        log("payload filters: " + std::to_string(tables.payload.patterns) + " patterns in one Hyperscan database (" +
            std::to_string((db_bytes + 1023) / 1024) + " KB), the first " + std::to_string(tables.payload.scan_bytes) +
            " payload bytes of a packet scanned when a payload filter outranks its header-only match");
    }
    if (cp.policy < 0)
        log(Level::warning, "no policy is assigned: every IP packet is dropped (non-IP EtherTypes listed in non_ip still pass)");
    else
        log("policy '" + cfg.policies[static_cast<std::size_t>(cp.policy)].name + "' from " + path + ": " +
            std::to_string(cp.rules.size()) + " ranked entries, generation 1");
    rt->set_ports({{"outside", ports.spec[0], ports.id[0]}, {"inside", ports.spec[1], ports.id[1]}});
    return rt;
}

/// One worker per worker lcore, each with its fragment table, polling its queue of both ports.
Status start_workers(Workers& running, Runtime& rt, MonitorHub& monitor, StatesHub& states, const Appliance& a,
                     const Ports& ports) {
    std::vector<std::unique_ptr<dp::WorkerContext>> ctx;
    unsigned lcore = 0;
    RTE_LCORE_FOREACH_WORKER(lcore) {
        if (ctx.size() == ports.workers)
            break;
        auto w = std::make_unique<dp::WorkerContext>();
        w->index = static_cast<unsigned>(ctx.size());
        w->lcore = lcore;
        w->port = ports.id;
        w->queue = static_cast<std::uint16_t>(w->index);
        w->tables = rt.publisher().tables();
        w->qsbr = rt.publisher().qsbr();
        w->stop = running.stop_flag();
        std::string frag_error;
        w->fragments =
            dp::FragmentTable::create(a.fragment_table, static_cast<int>(rte_lcore_to_socket_id(lcore)), frag_error);
        if (!w->fragments)
            return fail(frag_error + " (lower fragment_table)");
        w->flows = dp::FlowTable::create(a.state_table, static_cast<int>(rte_lcore_to_socket_id(lcore)), frag_error);
        if (!w->flows)
            return fail(frag_error + " (lower state_table, or give EAL more memory with -m)");
        if (const Status ring = monitor.attach_worker(*w, static_cast<int>(rte_lcore_to_socket_id(lcore))); !ring)
            return ring;
        if (const Status ring = states.attach_worker(*w, static_cast<int>(rte_lcore_to_socket_id(lcore))); !ring)
            return ring;
        log("worker " + std::to_string(w->index) + " on lcore " + std::to_string(lcore) + ": rx/tx queue " +
            std::to_string(w->queue) + " of both ports" +
            (a.fragments == FragmentMode::track
                 ? ", fragments tracked (" + std::to_string(a.fragment_table) + " datagrams, " +
                       std::to_string(dp::kFragmentTimeoutMs / 1000) + " s)"
                 : ", fragments dropped") +
            ", " + std::to_string(a.state_table) + " flows for state = keep");
        ctx.push_back(std::move(w));
    }
    if (const Status launched = running.launch(std::move(ctx)); !launched)
        return launched;
    rt.set_workers(running.contexts());
    return {};
}

/// The control sockets: every changing request is logged; refused ones (anyone can send them
/// to the read-only socket) at most kRefusedLogged a minute, then how many more there were.
class ControlSockets {
public:
    ControlSockets(Runtime& rt, MonitorHub& monitor, StatesHub& states)
        : server_([this, &rt, &monitor, &states](const nlohmann::json& req, const RequestContext& ctx) {
              log_request(req, ctx);
              if (req.value("cmd", nlohmann::json()) == "states")
                  return states.list(req, ctx);
              if (req.value("cmd", nlohmann::json()) == "monitor") {
                  Reply r = monitor.attach(req, ctx);
                  if (r.stream)
                      log("control: monitor attached from pid " + std::to_string(ctx.peer.pid) + " uid " +
                          std::to_string(ctx.peer.uid) + " (" + std::to_string(monitor.monitors()) + " attached)");
                  return r;
              }
              return rt.handle(req, ctx);
          }) {
        server_.on_error([](const std::string& what) { log(Level::error, "control request failed: " + what); });
    }

    void listen(const Appliance& a) {
        if (const Status listening = server_.listen({a.control, Access::full, 0660, a.control_gid}); listening)
            log("control socket " + a.control + " (every command; mode 0660" +
                (a.control_group.empty() ? "" : ", group " + a.control_group) + ")");
        else
            log(Level::error, "no control socket: " + listening.error());
        if (a.control_readonly.empty())
            return;
        const mode_t mode = a.control_readonly_gid ? 0660 : 0666;
        if (const Status listening = server_.listen({a.control_readonly, Access::read_only, mode, a.control_readonly_gid,
                                                     kReadOnlyRate, 2 * kReadOnlyRate, kReadOnlyReplying});
            listening)
            log("read-only control socket " + a.control_readonly + " (status, stats, rules, explain, monitor, states; mode " +
                (a.control_readonly_gid ? "0660, group " + a.control_readonly_group : std::string("0666")) + ")");
        else
            log(Level::error, "no read-only control socket: " + listening.error());
    }

    ControlServer& server() { return server_; }

private:
    using Clock = std::chrono::steady_clock;

    void log_request(const nlohmann::json& req, const RequestContext& ctx) {
        const std::string cmd = req.value("cmd", nlohmann::json()).is_string() ? req["cmd"].get<std::string>() : "";
        if (!Runtime::changes_policy(cmd))
            return;
        const bool refusal = ctx.access != Access::full;
        if (refusal && Clock::now() - refused_since_ > std::chrono::minutes(1)) {
            if (refused_ > kRefusedLogged)
                log(Level::warning, "control: " + std::to_string(refused_ - kRefusedLogged) +
                    " more refused requests on the read-only socket in the last minute");
            refused_since_ = Clock::now();
            refused_ = 0;
        }
        if (!refusal || ++refused_ <= kRefusedLogged)
            log(refusal ? Level::warning : Level::info,
                "control: " + cmd + (cmd == "assign" && req.value("policy", nlohmann::json()).is_string()
                                         ? " " + ctl::quoted(printable(req["policy"].get<std::string>(), 200))
                                         : "") +
                " from pid " + std::to_string(ctx.peer.pid) + " uid " + std::to_string(ctx.peer.uid) +
                (refusal ? " on the read-only socket: refused" : ""));
    }

    ControlServer server_;
    Clock::time_point refused_since_ = Clock::now();
    std::size_t refused_ = 0;
};

/// What `systemctl status moatd` shows (STATUS=): the generation in force, and the last reload
/// when it failed.
std::string service_status(const Runtime& rt, const ReloadOutcome* failed = nullptr) {
    std::string s = "generation " + std::to_string(rt.generation()) + " in force";
    if (failed)
        s += "; the last reload (" + failed->trigger + ") failed" +
             (failed->errors.empty() ? std::string() : ": " + failed->errors.front());
    return s;
}

/// Every reload is logged, whatever triggered it (signal, file change, control socket), and
/// every lint: a few dozen lines at most, whatever the policy (the first diagnostics of each
/// list and how many there are; moatctl check or lint lists them all). The service manager's
/// STATUS= follows each reload.
void log_reloads(Runtime& rt, ServiceNotifier& notify) {
    const auto more = [](Level level, std::size_t shown, std::size_t total, const char* what) {
        if (total > shown)
            log(level, "... and " + std::to_string(total - shown) + " more " + what + " (moatctl check " + "lists them all)");
    };
    rt.on_reload([more, &rt, &notify](const ReloadOutcome& o) {
        for (const auto& w : o.warnings)
            log_plain(Level::warning, w);
        more(Level::warning, o.warnings.size(), o.warnings_total, "warnings");
        if (o.ok) {
            char ms[96];
            std::snprintf(ms, sizeof ms, "%.1f ms (load %.1f, build %.1f)", o.publish_ms, o.load_ms, o.build_ms);
            log("reload (" + o.trigger + "): generation " + std::to_string(o.generation) + " in force after " + ms);
            notify.status(service_status(rt));
            return;
        }
        for (const auto& e : o.errors)
            log_plain(Level::error, e);
        more(Level::error, o.errors.size(), o.errors_total, "errors");
        log(Level::error, "reload (" + o.trigger + ") failed: the running generation stays in force");
        notify.status(service_status(rt, &o));
    });
    rt.on_lint([](const LintReport& l) {
        if (l.total == 0) {
            log("lint of generation " + std::to_string(l.generation) + ": no warnings");
            return;
        }
        std::string kinds;
        for (const auto& [kind, n] : l.counts)
            kinds += (kinds.empty() ? "" : ", ") + std::to_string(n) + " " + kind;
        log(Level::warning, "lint of generation " + std::to_string(l.generation) + ": " + kinds +
            (l.total > l.first.size() ? "; the first " + std::to_string(l.first.size()) + " (moatctl lint --all lists them all):"
                                      : ":"));
        for (const auto& w : l.first)
            log_plain(Level::warning, w);
    });
}

/// Polls both ports' links from the control loop, logs and counts every change and, with
/// link_propagation = on, carries out what LinkPropagation decides.
class LinkWatch {
public:
    /// rte_eth_link_get_nowait is cheap (a register read or an ioctl); a router notices a lost
    /// link within its own timers, so a few polls a second are plenty.
    static constexpr std::chrono::milliseconds kPeriod{200};

    LinkWatch(bool propagate, const std::array<std::uint16_t, 2>& ids, Runtime& rt)
        : id_(ids), rt_(rt), fsm_(propagate, {link_up(0), link_up(1)}) {
        if (propagate)
            log("link_propagation: when one port loses its link, the other port's link is taken down until it returns");
    }

    void poll() {
        const LinkPropagation::Step s = fsm_.observe({link_up(0), link_up(1)});
        for (std::size_t i = 0; i < 2; ++i) {
            const std::string port = std::string(kRole[i]) + " port";
            if (s.lost[i]) {
                rt_.count_link(i, LinkEvent::down);
                log(Level::warning, port + ": link down");
            }
            if (s.returned[i])
                log(port + ": link up (" + dp::link_text(id_[i]) + ")");
        }
        for (std::size_t i = 0; i < 2; ++i) {
            const std::string port = std::string(kRole[i]) + " port";
            const std::string other = std::string(kRole[1 - i]) + " port";
            if (s.act[i] == LinkAct::take_down) {
                if (const int rc = rte_eth_dev_set_link_down(id_[i]); rc == 0) {
                    rt_.count_link(i, LinkEvent::taken_down);
                    log(Level::warning, port + ": link taken down because the " + other + " lost its link (link_propagation)");
                } else {
                    fsm_.take_down_failed(i);
                    log(Level::error, port + ": cannot take the link down (" + rte_strerror(-rc) + "); the " + other +
                        " lost its link but this side cannot be told so");
                }
            } else if (s.act[i] == LinkAct::bring_up) {
                // A failure is tried again every poll (the port stays held), and logged once.
                if (const int rc = rte_eth_dev_set_link_up(id_[i]); rc == 0) {
                    rt_.count_link(i, LinkEvent::brought_up);
                    log(port + ": link brought back up because the " + other + "'s link returned (link_propagation)");
                    up_failing_[i] = false;
                } else {
                    fsm_.bring_up_failed(i);
                    if (!std::exchange(up_failing_[i], true))
                        log(Level::error, port + ": cannot bring the link back up (" + rte_strerror(-rc) +
                                              "); trying again every " + std::to_string(kPeriod.count()) + " ms");
                }
            }
        }
    }

    /// At stop: a port whose link moatd holds down is brought back up, so that what moatd changed
    /// does not outlive it. A net_af_packet port's link is its host interface's IFF_UP: left down,
    /// the next moatd started on a wire that stayed cut (its PMD reports the link up at start, so
    /// nothing would ever bring the interface up again).
    void release() {
        for (std::size_t i = 0; i < 2; ++i) {
            if (!fsm_.held(i))
                continue;
            const std::string port = std::string(kRole[i]) + " port";
            if (const int rc = rte_eth_dev_set_link_up(id_[i]); rc == 0)
                log(port + ": link brought back up as moatd stops (link_propagation had taken it down)");
            else
                log(Level::error, port + ": cannot bring the link back up as moatd stops (" + rte_strerror(-rc) +
                                      "); link_propagation had taken it down");
        }
    }

private:
    static constexpr std::array<const char*, 2> kRole{"outside", "inside"};
    std::array<bool, 2> up_failing_{};  ///< bringing the port up failed, and is being tried again

    /// Port `i`'s link as it reports it; the last state seen when it cannot say.
    bool link_up(std::size_t i) {
        rte_eth_link link{};
        if (rte_eth_link_get_nowait(id_[i], &link) == 0)
            last_[i] = link.link_status == RTE_ETH_LINK_UP;
        return last_[i];
    }

    std::array<std::uint16_t, 2> id_;
    Runtime& rt_;
    std::array<bool, 2> last_{true, true};
    LinkPropagation fsm_;
};

/// The control thread's loop: signals, the config file's directory, the control sockets, the
/// runtime's events and the metrics endpoint's requests for a snapshot in one poll, and the
/// ports' links every LinkWatch::kPeriod, until SIGINT or SIGTERM; returns that signal. Each turn
/// also feeds the service manager's watchdog, so the poll wakes at least that often: a loop that
/// stops turning (a request or a reload stuck on this thread) gets moatd restarted.
class ControlLoop {
public:
    ControlLoop(const Options& opt, Runtime& rt, ConfigWatch& watch, ControlServer& server, MonitorHub& monitor,
                StatesHub& states, StdoutWriter& out, int sfd, MetricsBoard* board, LinkWatch& links,
                ServiceNotifier& notify)
        : opt_(opt), rt_(rt), watch_(watch), server_(server), monitor_(monitor), states_(states), out_(out), sfd_(sfd), board_(board),
          links_(links), notify_(notify),
          period_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.stats_period))),
          next_stats_(Clock::now() + period_) {}
    ControlLoop(const ControlLoop&) = delete;
    ControlLoop& operator=(const ControlLoop&) = delete;

    int run() {
        while (sig_ == 0) {
            pollfd fds[5] = {{sfd_, POLLIN, 0},
                             {watch_.fd(), POLLIN, 0},
                             {server_.fd(), POLLIN, 0},
                             {rt_.events_fd(), POLLIN, 0},
                             {board_ ? board_->wanted_fd() : -1, POLLIN, 0}};  // poll skips -1
            poll(fds, 5, static_cast<int>(std::max<std::chrono::milliseconds::rep>(0, timeout().count())));
            // Nothing that goes wrong in one turn (an exception from a query, a reload, a write)
            // ends the loop: it is logged, and the workers go on forwarding under the policy in force.
            try {
                turn(fds);
            } catch (const std::exception& e) {
                log(Level::error, std::string("control loop: ") + valid_utf8(e.what()) + " (the policy in force stays; going on)");
            }
        }
        return sig_;
    }

private:
    using Clock = std::chrono::steady_clock;

    std::chrono::milliseconds timeout() const {
        const auto now = Clock::now();
        const auto until = [&](Clock::time_point t) {
            return std::chrono::duration_cast<std::chrono::milliseconds>(t - now) + std::chrono::milliseconds(1);
        };
        auto t = std::chrono::milliseconds(rt_.publisher().retired() ? 10 : 1000);
        if (reload_at_)
            t = std::min(t, until(*reload_at_));
        if (opt_.stats_period > 0)
            t = std::min(t, until(next_stats_));
        t = std::min(t, until(next_rates_));
        t = std::min(t, until(next_links_));
        if (const auto d = server_.next_deadline())
            t = std::min(t, until(*d));
        if (const auto w = notify_.watchdog_due())
            t = std::min(t, until(*w));
        if (monitor_.active() || states_.active())  // the workers' rings fill while nobody drains them
            t = std::min(t, std::chrono::milliseconds(kMonitorDrainMs));
        return t;
    }

    void turn(const pollfd (&fds)[5]) {
        notify_.watchdog();
        if (fds[0].revents & POLLIN)
            read_signals();
        if (fds[1].revents & POLLIN)
            settled();
        if (fds[3].revents & POLLIN) {  // reloads or lints finished: log them, answer who waits
            rt_.collect();
            server_.wake();
        }
        // systemctl reload (SIGHUP) is over when its reload's outcome is known, whatever it is
        // (published, failed, unchanged, or replaced by a later reload that has finished). The
        // outcome may be known before collect() delivers it, so STATUS= is made from it here.
        if (sighup_) {
            if (const std::optional<ReloadOutcome> o = rt_.outcome(*sighup_)) {
                sighup_.reset();
                notify_.ready(o->ok || o->superseded ? service_status(rt_) : service_status(rt_, &*o));
            }
        }
        server_.serve();  // events, and deadlines even without them
        if (monitor_.drain())
            server_.wake();  // the monitors with new lines send them on the next serve()
        if (states_.drain())
            server_.wake();  // a flow listing has rows, or has ended
        // A scraper waits for the counters: one snapshot (what `moatctl stats` takes), which the
        // HTTP threads format and serve; they ask again when it is older than MetricsBoard::kFresh.
        if ((fds[4].revents & POLLIN) && board_->wanted())
            board_->publish(rt_.stats());
        if (reload_at_ && Clock::now() >= *reload_at_)
            reload_changed_file();
        rt_.reclaim();
        if (Clock::now() >= next_links_) {
            links_.poll();
            next_links_ = Clock::now() + LinkWatch::kPeriod;
        }
        if (Clock::now() >= next_rates_) {
            rt_.sample_rates();
            next_rates_ = Clock::now() + std::chrono::seconds(1);
        }
        if (opt_.stats_period > 0 && Clock::now() >= next_stats_) {
            out_.offer("stats " + json_text(stats_json(rt_.stats())) + "\n");
            next_stats_ += period_;
        }
    }

    /// SIGINT, SIGTERM (stop) and SIGHUP (reload).
    void read_signals() {
        signalfd_siginfo si{};
        while (read(sfd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
            if (si.ssi_signo == SIGHUP) {
                if (!sighup_)
                    notify_.reloading("reloading (SIGHUP)");
                sighup_ = rt_.submit({.kind = ReloadJob::Kind::file, .trigger = "SIGHUP", .text = {}, .if_changed = false, .policy = {}});
            } else
                sig_ = static_cast<int>(si.ssi_signo);
        }
    }

    /// File events become one reload once the file has been quiet for a moment (ConfigWatch): a
    /// change pushes the pending reload back by its settle time. True when nothing changed.
    bool settled() {
        const auto c = watch_.changed();
        if (c != ConfigWatch::Change::none)
            reload_at_ = Clock::now() + (c == ConfigWatch::Change::complete ? ConfigWatch::kSettleComplete : ConfigWatch::kSettlePartial);
        return c == ConfigWatch::Change::none;
    }

    /// The file is read here, between two looks at the watch (the builder gets the text): a
    /// write that began in between (a truncation, a first write) postpones the reload instead of
    /// publishing the half-written file.
    void reload_changed_file() {
        reload_at_.reset();
        ReloadJob job{.kind = ReloadJob::Kind::text, .trigger = "config file changed", .text = {}, .if_changed = true, .policy = {}};
        if (!settled())
            return;
        if (Result<std::string> read = read_config_file(opt_.config))
            job.text = std::move(*read);
        else
            job.kind = ReloadJob::Kind::file;  // the builder reads it again and says why it cannot
        if (settled())
            rt_.submit(std::move(job));
    }

    const Options& opt_;
    Runtime& rt_;
    ConfigWatch& watch_;
    ControlServer& server_;
    MonitorHub& monitor_;
    StatesHub& states_;
    StdoutWriter& out_;
    int sfd_;  ///< the signalfd of SIGINT, SIGTERM and SIGHUP
    MetricsBoard* board_;  ///< the metrics endpoint's, nullptr: no endpoint
    LinkWatch& links_;
    ServiceNotifier& notify_;
    std::optional<Runtime::Ticket> sighup_;  ///< the SIGHUP reload the service manager waits for
    int sig_ = 0;
    Clock::duration period_;
    Clock::time_point next_stats_;
    Clock::time_point next_rates_ = Clock::now();  ///< per-worker rates (moatctl stats): once a second
    Clock::time_point next_links_ = Clock::now();  ///< link states: every LinkWatch::kPeriod
    std::optional<Clock::time_point> reload_at_;  ///< when the pending file change is due
};

/// The final counters, on stdout and in --counters-json.
void report_final(const Options& opt, const Stats& final_stats, StdoutWriter& out) {
    out.offer(stats_text(final_stats));
    out.finish(std::chrono::seconds(2));
    if (opt.counters_json.empty())
        return;
    std::ofstream file(opt.counters_json);
    file << json_text(stats_json(final_stats), 2) << "\n";
    if (!file)
        log(Level::error, "cannot write " + opt.counters_json);
}

int not_starting(const std::string& why) {
    log(Level::error, "not starting: " + why);
    return 1;
}

/// The stages of run_moatd, in order; `forwarding` is set once the workers forward.
int run_stages(int argc, char** argv, bool& forwarding) {
    int status = 0;
    const auto opt = parse_options(argc, argv, status);
    if (!opt)
        return status;

    // A control client that goes away mid-reply must not end the process that carries the
    // traffic: writes to closed sockets and pipes fail with EPIPE instead.
    signal(SIGPIPE, SIG_IGN);

    // The watch starts before the file is read, so an edit made at any moment after the read
    // (during EAL and port start-up too) is seen and reloads; what is published first is
    // exactly the text read here.
    ConfigWatch watch(opt->config);
    Result<FirstPolicy> first = load_first_policy(opt->config);
    if (!first)
        return not_starting(first.error());
    const Appliance appliance = first->config().appliance;  // runs until a restart
    const Result<EalPlan> plan = eal_plan(appliance, opt->eal);
    if (!plan)
        return not_starting(plan.error());

    // SIGINT, SIGTERM (stop) and SIGHUP (reload) are read from a signalfd by the control loop;
    // every thread EAL creates inherits the mask, so no worker is interrupted. Without the
    // signalfd a blocked SIGTERM could never stop moatd: no signalfd, no start.
    Result<SignalFd> signals = SignalFd::block({SIGINT, SIGTERM, SIGHUP});
    if (!signals)
        return not_starting(signals.error());

    // The owners, in start-up order; they unwind in reverse: workers stop before telemetry lets
    // go of the runtime, the runtime goes before the ports stop, the ports before EAL.
    Eal eal(plan->args);
    if (!eal.up())
        return not_starting(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
    Capture capture(*plan);
    Result<std::unique_ptr<Ports>> ports = Ports::open(appliance);
    if (!ports)
        return not_starting(ports.error());
    Result<std::unique_ptr<Runtime>> rt = start_runtime(opt->config, std::move(*first), **ports);
    if (!rt)
        return not_starting(rt.error());
    Runtime& runtime = **rt;
    TelemetryBinding telemetry(runtime);
    // The Prometheus endpoint, before the workers start: a configured endpoint that cannot
    // listen (the port taken, an address this machine does not have) stops the start-up.
    std::unique_ptr<MetricsBoard> board;
    std::unique_ptr<MetricsServer> metrics;
    if (appliance.metrics_port != 0) {
        board = std::make_unique<MetricsBoard>();
        Result<std::unique_ptr<MetricsServer>> m = MetricsServer::start(appliance.metrics_host, appliance.metrics_port, *board);
        if (!m)
            return not_starting("metrics: " + m.error());
        metrics = std::move(*m);
        log("metrics: http://" + metrics->address() + "/metrics (Prometheus text, read-only; " +
            std::to_string(MetricsLimits::kThreads) + " threads)");
    }
    MonitorHub monitor(runtime);  // the workers' monitor rings: freed after the workers stop
    StatesHub states(runtime);    // their flow-listing rings, likewise
    Workers running;
    if (const Status started = start_workers(running, runtime, monitor, states, appliance, **ports); !started)
        return not_starting(started.error());

    if (!watch.ok())
        log(Level::warning, "not watching the config file (" + watch.error() + "): reload with SIGHUP or moatctl reload");
    ControlSockets sockets(runtime, monitor, states);
    sockets.listen(appliance);
    ServiceNotifier notify;
    log_reloads(runtime, notify);
    log("forwarding");
    StdoutWriter out;
    forwarding = true;
    LinkWatch links(appliance.link_propagation, (*ports)->id, runtime);
    // The first policy is published, the ports are started and the workers, the control
    // sockets and the metrics endpoint run: systemd may start what is ordered after moatd.service.
    notify.ready(service_status(runtime));
    const int sig = ControlLoop(*opt, runtime, watch, sockets.server(), monitor, states, out, signals->fd(), board.get(),
                                links, notify).run();

    log(std::string("stopping on ") + signal_name(sig));
    notify.stopping(std::string("stopping on ") + signal_name(sig));
    if (metrics)
        metrics->stop();  // its connections end now, whatever they were waiting for
    running.stop();
    links.release();  // after the workers, before the ports close
    telemetry.unbind();  // telemetry answers "not ready" from here on
    report_final(*opt, runtime.stats(), out);
    return 0;
}

}  // namespace

int run_moatd(int argc, char** argv) {
    // The boundary: what a stage throws (a constructor that cannot get its descriptor, memory)
    // unwinds the owners already up, in reverse order, and ends moatd with a message.
    bool forwarding = false;
    try {
        return run_stages(argc, argv, forwarding);
    } catch (const std::exception& e) {
        log(Level::error, std::string(forwarding ? "stopping: " : "not starting: ") + valid_utf8(e.what()));
        return 1;
    }
}

}  // namespace moat::ctl
