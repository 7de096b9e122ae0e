// `moatctl states` (`{"cmd":"states"}`), control side: lists the flows of `state = keep`, as
// pfctl -ss does. Each worker copies its own table out a slice at a time (dataplane/state.h,
// StateListing); the hub takes the records from the workers' rings as the client reads its
// reply and names each flow's filter through the flow's generation.
//
// One listing runs at a time; requests that come meanwhile wait their turn (the control socket's
// limits bound how many wait and for how long), those of the full socket before those of the
// read-only one, and a full-socket request interrupts a running read-only listing (its reply
// ends with what it has and says "interrupted"): nobody on the read-only socket, reading slowly,
// can keep the operator waiting. A client that stops reading holds its listing only until the
// socket's write stall closes it, then the next one goes on; one that goes away ends its listing
// at once. Rows taken for read-only replies and not yet sent are capped across all of them
// (kHeldReadOnly): listings their clients do not read cannot pile up memory. The workers never wait for any of it: a full ring pauses a walk, and
// a walk costs a worker at most kListingSlots table positions every 64 polls.
#pragma once

#include <rte_ring.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control/config/result.h"
#include "control/runtime/control_socket.h"
#include "control/runtime/worker_rings.h"
#include "dataplane/state.h"
#include "dataplane/worker.h"

namespace moat::ctl {

class Runtime;
struct Generation;

/// Reads `{"cmd":"states","limit":N}` (limit optional: at most N flows, 0 or absent: all); the
/// limit, or an error that says what is wrong. Pure.
Result<std::uint64_t> parse_states_request(const nlohmann::json& req);

/// A flow as a row of the listing, one JSON object: worker, port (where its first packet came
/// in), family, proto, src, dst and sport, dport (TCP, UDP, SCTP) or id (ICMP echo), all as the
/// initiator sent them; state (pf's words: TCP's two ends, else SINGLE/MULTIPLE and NO_TRAFFIC),
/// expires_s, generation, then the filter that created it (rank, filter, filterlist, rule, line,
/// action) named through `g`, the generation numbered r.generation (null: no longer kept). Pure.
std::string flow_row(const dp::FlowRecord& r, const Generation* g);

/// A row as `moatctl states` prints it without --json.
std::string flow_text(const nlohmann::json& row);

class StatesHub {
public:
    static constexpr unsigned kRingSize = 2048;       ///< records per worker ring
    static constexpr std::size_t kHeld = 4096;        ///< records a listing holds for its reader at most
    static constexpr std::size_t kRowsPerPart = 256;  ///< rows one part of a reply holds
    /// Records held for read-only replies, all of them together: beyond, a read-only listing
    /// takes no more until its readers take theirs (or are closed for not reading).
    static constexpr std::size_t kHeldReadOnly = 4 * kHeld;

    explicit StatesHub(Runtime& rt);
    ~StatesHub();
    StatesHub(const StatesHub&) = delete;
    StatesHub& operator=(const StatesHub&) = delete;

    /// Makes worker `w`'s listing ring (on `socket`) and points `w.listing` at it. Control
    /// thread, before the workers launch.
    Status attach_worker(dp::WorkerContext& w, int socket);

    /// The reply to a states request: an error, or `{"ok":true,"generation":G,"states":[rows],
    /// "flows":N,"truncated":B}` made as the client reads and the workers copy; a read-only
    /// listing that a full-socket request interrupted ends with `"truncated":true,
    /// "interrupted":true`. Control thread.
    Reply list(const nlohmann::json& req, const RequestContext& ctx);

    /// Takes what the workers copied for the listing in progress, ends it when they have all
    /// finished (or its limit is reached, or its client went away) and starts the next. True when
    /// a reply has new rows or has ended (then ControlServer::wake()). Control thread, every turn.
    bool drain();

    /// A listing is in progress or waiting: the control loop should drain often.
    bool active() const noexcept { return !queue_.empty(); }

    /// Records taken for read-only replies and not yet sent (for tests).
    std::size_t held_read_only() const noexcept { return *held_read_only_; }

private:
    struct Listing;
    /// Asks every worker for listing `id` (0: stop walking).
    void ask_workers(std::uint32_t id);

    Runtime& rt_;
    WorkerRings rings_;
    std::deque<std::weak_ptr<Listing>> queue_;  ///< the front one runs
    std::uint32_t last_id_ = 0;
    /// Shared with the listings, which may outlive the hub in a reply's closure.
    std::shared_ptr<std::size_t> held_read_only_ = std::make_shared<std::size_t>(0);
};

}  // namespace moat::ctl
