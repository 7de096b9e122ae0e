// libFuzzer target: the control socket's request handler on arbitrary bytes, as moatd serves a
// connection: one line in (reply_to: decode, Runtime::handle, encode), the whole reply out,
// streamed parts included. The first byte picks the socket (read-only or full access); the rest
// is the request line. Besides memory errors and uncaught exceptions it checks that every reply
// is one line of valid JSON with an "ok" member, that the read-only socket never changes the
// config file, and that whatever a full-access request writes into the file loads without
// errors and differs from the original at most in its `assign` line.
#include <rte_eal.h>
#include <rte_errno.h>
#include <poll.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "control/compile/load.h"
#include "control/config/config.h"
#include "control/runtime/control_socket.h"
#include "control/runtime/runtime.h"
#include "fuzz/check.h"

namespace {

constexpr const char* kPolicy = R"([appliance]
me = 198.18.0.10, [2001:db8::10]
assign = Servers
[filterlist Web]
filter = *+198.18.0.10:80:TCP
filter = *+[2001:db8::10]:80-90:TCP
[filterlist SSH]
filter = 198.18.2.0/24+198.18.0.10:22:TCP
[filterlist Signatures]
filter = *+0:80:TCP payload=/admin/i
[filterlist Everything]
filter = *+0
[policy Servers]
rule = Web -> permit
rule = Signatures -> block
rule = Everything -> block
[policy Admin]
rule = SSH -> permit
rule = Everything -> block
)";

struct State {
    std::string path;
    moat::ctl::Runtime* rt = nullptr;
};
State* state = nullptr;

std::string read_all(const std::string& path) {
    const auto read = moat::ctl::read_config_file(path);
    return read ? *read : std::string();
}

/// The lines of `a` and `b` that differ, ignoring `assign = ...` lines.
bool same_but_assign(const std::string& a, const std::string& b) {
    const auto lines = [](const std::string& t) {
        std::vector<std::string> out;
        std::size_t start = 0;
        for (std::size_t nl; (nl = t.find('\n', start)) != std::string::npos; start = nl + 1)
            if (t.compare(start, 6, "assign") != 0)
                out.push_back(t.substr(start, nl - start));
        return out;
    };
    return lines(a) == lines(b);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::vector<std::string> args{"control_fuzz", "--no-huge", "-m", "64", "--no-pci", "-l", "0",
                                  "--file-prefix", "moat-cfuzz-" + std::to_string(getpid()), "--log-level", "*:error"};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
        std::fprintf(stderr, "control_fuzz: EAL: %s\n", rte_strerror(rte_errno));
        std::abort();
    }
    state = new State;
    const auto dir = std::filesystem::temp_directory_path() / ("moat-cfuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    state->path = (dir / "moat.ini").string();
    std::ofstream(state->path) << kPolicy;
    const auto loaded = moat::ctl::load_policy_text(kPolicy, state->path);
    MOAT_FUZZ_CHECK(loaded.usable());
    state->rt = new moat::ctl::Runtime(state->path, 1);
    MOAT_FUZZ_CHECK(state->rt->start(*loaded.config, *loaded.compiled, kPolicy).ok());
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace moat::ctl;
    if (size == 0)
        return 0;
    RequestContext ctx;
    ctx.access = data[0] & 1 ? Access::full : Access::read_only;
    const std::string_view line(reinterpret_cast<const char*>(data + 1), size - 1);
    Runtime& rt = *state->rt;
    const Handler handler = [&](const nlohmann::json& req, const RequestContext& c) { return rt.handle(req, c); };

    Reply r = reply_to(line, ctx, handler, [](const std::string& what) {
        std::fprintf(stderr, "control_fuzz: the handler threw: %s\n", what.c_str());
        std::abort();  // reply_to keeps it from the loop, but the handler should not throw at all
    });
    std::string whole = r.text;
    for (int parts = 0; r.more; ++parts) {
        MOAT_FUZZ_CHECK(parts < 100000);
        std::string part;
        const moat::ctl::Part more = r.more(part);
        whole += part;
        if (more == moat::ctl::Part::done)
            break;
        if (more == moat::ctl::Part::later) {  // a reload building: as moatd's loop does, collect and ask again
            pollfd p{rt.events_fd(), POLLIN, 0};
            poll(&p, 1, 10);
            rt.collect();
        }
    }
    MOAT_FUZZ_CHECK(whole.find('\n') == std::string::npos);
    const nlohmann::json reply = nlohmann::json::parse(whole, nullptr, false);
    MOAT_FUZZ_CHECK(!reply.is_discarded());
    MOAT_FUZZ_CHECK(reply.is_object() && reply.contains("ok") && reply["ok"].is_boolean());

    const std::string now = read_all(state->path);
    if (ctx.access == Access::read_only)
        MOAT_FUZZ_CHECK(now == kPolicy);
    if (now != kPolicy) {
        MOAT_FUZZ_CHECK(same_but_assign(now, kPolicy));
        MOAT_FUZZ_CHECK(load_policy_text(now, state->path).usable());
        std::ofstream(state->path) << kPolicy;  // the next input starts from the same file
        rt.reload("fuzz", true);
    }
    rt.reclaim();
    return 0;
}
