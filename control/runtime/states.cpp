#include "control/runtime/states.h"

#include <rte_errno.h>

#include <algorithm>

#include "control/config/filter_spec.h"
#include "control/config/text.h"
#include "control/runtime/json_line.h"
#include "control/runtime/monitor.h"
#include "control/runtime/runtime.h"

namespace moat::ctl {

Result<std::uint64_t> parse_states_request(const nlohmann::json& req) {
    const auto it = req.find("limit");
    if (it == req.end() || it->is_null())
        return std::uint64_t{0};
    if (!it->is_number_integer() || it->get<std::int64_t>() < 0)
        return fail("states: limit is a whole number of flows (0: all)");
    return it->get<std::uint64_t>();
}

namespace {

const char* tcp_state_name(dp::TcpState s) {
    switch (s) {
    case dp::TcpState::closed: return "CLOSED";
    case dp::TcpState::syn_sent: return "SYN_SENT";
    case dp::TcpState::established: return "ESTABLISHED";
    case dp::TcpState::closing: return "CLOSING";
    case dp::TcpState::fin_wait_2: return "FIN_WAIT_2";
    case dp::TcpState::time_wait: return "TIME_WAIT";
    }
    return "?";
}

}  // namespace

std::string flow_row(const dp::FlowRecord& r, const Generation* g) {
    const dp::FlowKey& k = r.key;
    const auto family = static_cast<dp::Family>(k.family);
    const dp::Addr& src = r.initiator_is_a ? k.a : k.b;
    const dp::Addr& dst = r.initiator_is_a ? k.b : k.a;
    const std::uint16_t sport = r.initiator_is_a ? k.port_a : k.port_b;
    const std::uint16_t dport = r.initiator_is_a ? k.port_b : k.port_a;
    std::string s;
    s.reserve(384);
    JsonLine j(s);
    j.num("worker", r.worker)
        .str("port", r.ingress == dp::Ingress::outside ? "outside" : "inside")
        .str("family", family == dp::Family::ipv4 ? "ipv4" : "ipv6")
        .str("proto", proto_name(k.proto))
        .str("src", format_addr(family, src))
        .str("dst", format_addr(family, dst));
    if (dp::proto_has_ports(k.proto))
        j.num("sport", sport).num("dport", dport);
    else if (dp::proto_is_icmp(k.proto))
        j.num("id", sport);  // an echo flow's key holds the identifier as the request's source port
    std::string state;
    if (k.proto == dp::kProtoTcp)
        state = std::string(tcp_state_name(r.tcp[0])) + ":" + tcp_state_name(r.tcp[1]);
    else
        state = r.answered ? "MULTIPLE:MULTIPLE" : "SINGLE:NO_TRAFFIC";
    j.str("state", state).num("expires_s", (r.expires_ms + 999) / 1000).num("generation", r.generation);
    deciding_filter(j, r.rank, r.generation, g);
    j.close();
    return s;
}

std::string flow_text(const nlohmann::json& j) {
    // Missing or mistyped members (a moatd of another version) read as "?", never as an exception.
    static const nlohmann::json null;
    const auto at = [&](const char* k) -> const nlohmann::json& { return j.is_object() && j.contains(k) ? j[k] : null; };
    const auto str = [&](const char* k) { return at(k).is_string() ? at(k).get<std::string>() : std::string("?"); };
    const auto num = [&](const char* k) {
        return at(k).is_number_integer() ? std::to_string(at(k).get<std::int64_t>()) : std::string("?");
    };
    const bool v6 = str("family") == "ipv6";
    const auto endpoint = [&](const char* addr, const char* port) {
        std::string a = v6 ? "[" + str(addr) + "]" : str(addr);
        return at(port).is_null() ? a : a + ":" + num(port);
    };
    std::string s = "worker " + num("worker") + "  " + str("proto") + "  " + endpoint("src", "sport") + " -> " +
                    endpoint("dst", "dport");
    if (!at("id").is_null())
        s += " id " + num("id");
    s += "  " + str("state") + "  on " + str("port") + "  expires " + num("expires_s") + "s  gen " + num("generation");
    if (at("filter").is_string())
        s += "  line " + num("line") + ": " + str("filter") + " (" + str("filterlist") + ")";
    else if (at("filter_unknown").is_string())
        s += "  rank " + num("rank") + " (" + str("filter_unknown") + ")";
    return s;
}

/// One states request: its records on their way to the client.
struct StatesHub::Listing {
    std::uint64_t limit = 0;             ///< 0: all
    std::uint32_t id = 0;                ///< 0 until it runs
    std::deque<dp::FlowRecord> rows;     ///< taken from the rings, not yet sent
    std::vector<bool> finished;          ///< per worker: its walk is done and its ring emptied
    std::uint64_t taken = 0;             ///< rows taken so far (sent or in `rows`)
    std::uint64_t sent = 0;
    bool ended = false;                  ///< no more rows will come
    bool truncated = false;              ///< ended by its limit
    std::shared_ptr<const Generation> gen;  ///< the last generation a row named its filter through
    bool read_only = false;              ///< asked on the read-only socket
    bool interrupted = false;            ///< a read-only listing a full-socket request ended early
    std::shared_ptr<std::size_t> held;   ///< the hub's count of read-only rows held (read-only only)

    void take(const dp::FlowRecord& r) {
        rows.push_back(r);
        if (held)
            ++*held;
    }
    void pop() {
        rows.pop_front();
        if (held)
            --*held;
    }
    ~Listing() {
        if (held)
            *held -= rows.size();
    }
};

StatesHub::StatesHub(Runtime& rt) : rt_(rt) {}

// The workers have stopped (and their contexts may be gone) by now: only the rings go.
StatesHub::~StatesHub() = default;

Status StatesHub::attach_worker(dp::WorkerContext& w, int socket) {
    const Result<rte_ring*> r = rings_.attach(w, "moat_states_", "flow-listing", sizeof(dp::FlowRecord), kRingSize, socket);
    if (!r)
        return fail(r.error());
    w.listing.ring = *r;
    return {};
}

void StatesHub::ask_workers(std::uint32_t id) {
    for (dp::WorkerContext* w : rings_.workers())
        if (w)
            w->listing.request.store(id, std::memory_order_release);
}

Reply StatesHub::list(const nlohmann::json& req, const RequestContext& ctx) {
    const Result<std::uint64_t> limit = parse_states_request(req);
    if (!limit)
        return error_reply(limit.error());
    auto l = std::make_shared<Listing>();
    l->limit = *limit;
    l->read_only = ctx.access == Access::read_only;
    if (l->read_only)
        l->held = held_read_only_;
    // The operator's socket goes before every waiting request of the read-only one (often open
    // to every local user), and interrupts a read-only listing that runs, so that nobody there
    // can keep the operator waiting, however slowly they read.
    auto at = queue_.end();
    if (!l->read_only) {
        at = std::find_if(queue_.begin(), queue_.end(), [](const std::weak_ptr<Listing>& w) {
            const auto q = w.lock();
            return q && q->read_only && (q->id == 0 || !q->ended);
        });
        if (at != queue_.end()) {
            const auto running = at->lock();
            if (running->id != 0) {  // it runs: it ends with what it has, drain() starts the next
                running->ended = running->truncated = running->interrupted = true;
                ++at;
            }
        }
    }
    queue_.insert(at, l);
    Reply r;
    r.text = "{\"ok\":true,\"generation\":" + std::to_string(rt_.generation()) + ",\"states\":[";
    r.more = [this, l](std::string& out) {
        if (l->rows.empty()) {
            if (!l->ended)
                return Part::later;
            out += "],\"flows\":" + std::to_string(l->sent) + ",\"truncated\":" + (l->truncated ? "true" : "false") +
                   (l->interrupted ? ",\"interrupted\":true}" : "}");
            return Part::done;
        }
        for (std::size_t n = 0; n < kRowsPerPart && !l->rows.empty(); ++n) {
            const dp::FlowRecord& rec = l->rows.front();
            if (!l->gen || l->gen->number != rec.generation)
                l->gen = rt_.generation_numbered(rec.generation);
            if (l->sent++ != 0)
                out += ',';
            out += flow_row(rec, l->gen.get());
            l->pop();
        }
        return Part::more;
    };
    return r;
}

bool StatesHub::drain() {
    const std::vector<dp::WorkerContext*>& workers = rings_.workers();
    bool woke = false;
    while (!queue_.empty()) {
        std::shared_ptr<Listing> l = queue_.front().lock();
        if (!l || l->ended) {  // its client went away, or it ended outside (interrupted by list())
            queue_.pop_front();
            ask_workers(0);
            woke = woke || l != nullptr;  // its reply can end: its client may be parked, waiting for rows
            continue;
        }
        if (l->id == 0) {
            l->id = ++last_id_ != 0 ? last_id_ : ++last_id_;
            l->finished.assign(workers.size(), false);
            for (std::size_t i = 0; i < workers.size(); ++i)
                l->finished[i] = workers[i] == nullptr;
            ask_workers(l->id);
        }
        for (std::size_t i = 0; i < workers.size() && !l->ended; ++i) {
            if (l->finished[i])
                continue;
            // `done` before the ring: what the worker copied before it said done is all there.
            const bool walked = workers[i]->listing.done.load(std::memory_order_acquire) == l->id;
            rte_ring* ring = workers[i]->listing.ring;
            dp::FlowRecord rec;
            while (l->rows.size() < kHeld && (!l->read_only || *held_read_only_ < kHeldReadOnly) &&
                   rte_ring_sc_dequeue_elem(ring, &rec, sizeof rec) == 0) {
                if (rec.listing != l->id)
                    continue;  // left over from a listing whose client went away
                l->take(rec);
                woke = true;
                if (l->limit != 0 && ++l->taken == l->limit) {
                    l->ended = l->truncated = true;
                    break;
                }
            }
            if (walked && rte_ring_count(ring) == 0)
                l->finished[i] = true;
        }
        if (!l->ended && std::all_of(l->finished.begin(), l->finished.end(), [](bool f) { return f; }))
            l->ended = true;
        if (!l->ended)
            break;  // the front listing goes on: the others wait
        woke = true;  // its reply can end
        queue_.pop_front();
        ask_workers(0);
    }
    return woke;
}

}  // namespace moat::ctl
