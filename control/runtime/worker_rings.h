// The rings that carry records from the workers to the control thread (the monitor's drop trace,
// `moatctl states`' flow records): one single-producer/single-consumer rte_ring per worker, made
// at start-up and owned by the hub that reads them.
#pragma once

#include <rte_errno.h>
#include <rte_ring.h>

#include <string>
#include <vector>

#include "control/config/result.h"
#include "dataplane/worker.h"

namespace moat::ctl {

class WorkerRings {
public:
    WorkerRings() = default;
    WorkerRings(const WorkerRings&) = delete;
    WorkerRings& operator=(const WorkerRings&) = delete;
    ~WorkerRings() {
        for (rte_ring* r : rings_)
            rte_ring_free(r);
    }

    /// A new ring of `count` records of `record_size` bytes on `socket` for worker `w`, named
    /// `prefix` and the worker's number; `what` names it in the error. Kept until this goes.
    Result<rte_ring*> attach(dp::WorkerContext& w, const char* prefix, const char* what, unsigned record_size,
                             unsigned count, int socket) {
        const std::string name = prefix + std::to_string(w.index);
        rte_ring* r = rte_ring_create_elem(name.c_str(), record_size, count, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (!r)
            return fail(std::string("cannot make the ") + what + " ring of worker " + std::to_string(w.index) + ": " +
                        rte_strerror(rte_errno));
        rings_.push_back(r);
        if (workers_.size() <= w.index)
            workers_.resize(w.index + 1, nullptr);
        workers_[w.index] = &w;
        return r;
    }

    /// The rings made, in the order of attach.
    const std::vector<rte_ring*>& rings() const noexcept { return rings_; }
    std::size_t size() const noexcept { return rings_.size(); }
    /// By worker number; null where no worker of that number was attached.
    const std::vector<dp::WorkerContext*>& workers() const noexcept { return workers_; }

private:
    std::vector<rte_ring*> rings_;
    std::vector<dp::WorkerContext*> workers_;
};

}  // namespace moat::ctl
