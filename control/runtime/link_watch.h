// link_propagation: when one port loses its link, moatd takes the other port's link down, so the
// routers (or LACP) on that side see the path is gone, and brings it back up when the link returns.
// The decisions are a pure state machine over the link states the control loop observes; daemon.cpp
// polls the ports (rte_eth_link_get_nowait) and carries out what it says.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace moat::ctl {

/// What to do to a port after an observation.
enum class LinkAct : std::uint8_t { none, take_down, bring_up };

/// Counted link events of a port, in `moatctl stats` (ports.NAME.link_*).
enum class LinkEvent : std::uint8_t {
    down,        ///< its link went down (not by moatd)
    taken_down,  ///< moatd took its link down because the other port lost its link
    brought_up,  ///< moatd brought it back up because the other port's link returned
};
inline constexpr std::size_t kLinkEvents = 3;

/// The state machine. Rules, so that both ports can never stay down for good:
/// - a port moatd took down (held) is never a cause: its being down takes nothing else down;
/// - a port is a cause only while it is down after having had link (a port that never came up
///   since start, or since moatd brought it up, takes nothing down: no flap while it negotiates);
/// - only a port that is up is taken down, so at most one port is held at a time;
/// - a held port is brought up as soon as its cause has link again.
/// Not thread-safe: the control thread owns it.
class LinkPropagation {
public:
    struct Step {
        std::array<LinkAct, 2> act{};    ///< for port 0 and port 1
        std::array<bool, 2> lost{};      ///< the port's link went down (not one moatd took down)
        std::array<bool, 2> returned{};  ///< the port's link came up
    };

    /// `enabled` false: observe() only reports lost and returned links, it never acts.
    /// `up`: the links at start-up.
    LinkPropagation(bool enabled, std::array<bool, 2> up) noexcept;

    /// The links as seen now; returns what to do (and the edges to log and count).
    Step observe(std::array<bool, 2> up) noexcept;

    /// The take_down of `port` could not be carried out (the port cannot set its link): it is not
    /// held, nothing will be brought up for it, and it is not tried again until the other port
    /// has had its link back.
    void take_down_failed(std::size_t port) noexcept;

    /// The bring_up of `port` could not be carried out: it stays held, and the next observe()
    /// asks for the bring_up again (a port left down for good would cut the wire after its cause
    /// came back).
    void bring_up_failed(std::size_t port) noexcept;
    bool held(std::size_t port) const noexcept { return held_[port]; }

private:
    bool enabled_;
    std::array<bool, 2> last_up_;
    std::array<bool, 2> seen_up_;  ///< had link since start or since moatd brought it up
    std::array<bool, 2> held_{};   ///< moatd took its link down
    std::array<bool, 2> unable_{}; ///< taking it down failed during the other port's current failure
};

}  // namespace moat::ctl
