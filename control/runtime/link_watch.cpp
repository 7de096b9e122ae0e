#include "control/runtime/link_watch.h"

namespace moat::ctl {

LinkPropagation::LinkPropagation(bool enabled, std::array<bool, 2> up) noexcept
    : enabled_(enabled), last_up_(up), seen_up_(up) {}

LinkPropagation::Step LinkPropagation::observe(std::array<bool, 2> up) noexcept {
    Step s;
    std::array<bool, 2> failed{};  // down after having had link, and not by moatd's hand
    for (std::size_t i = 0; i < 2; ++i) {
        if (!held_[i]) {
            s.lost[i] = last_up_[i] && !up[i];
            failed[i] = seen_up_[i] && !up[i];
        }
        s.returned[i] = !last_up_[i] && up[i];
        if (up[i])
            seen_up_[i] = true;
        last_up_[i] = up[i];
    }
    if (!enabled_)
        return s;
    for (std::size_t i = 0; i < 2; ++i) {
        const std::size_t other = 1 - i;
        if (held_[i] && !failed[other]) {
            // Its cause is back. Until its own link comes up again (negotiation takes a while on
            // a real NIC) it is not a cause itself, or it would take the other straight back down.
            s.act[i] = LinkAct::bring_up;
            held_[i] = false;
            seen_up_[i] = false;
        }
    }
    for (std::size_t i = 0; i < 2; ++i) {
        const std::size_t other = 1 - i;
        if (!failed[i])
            unable_[other] = false;  // a new failure of port i tries again
        if (failed[i] && !held_[other] && !unable_[other] && up[other] && s.act[other] == LinkAct::none) {
            s.act[other] = LinkAct::take_down;
            held_[other] = true;
        }
    }
    return s;
}

void LinkPropagation::take_down_failed(std::size_t port) noexcept {
    held_[port] = false;
    unable_[port] = true;
}

void LinkPropagation::bring_up_failed(std::size_t port) noexcept {
    held_[port] = true;
}

}  // namespace moat::ctl
