// How control/ fails: a function that can fail returns Result<T> (a value or why not) or Status
// (nothing or why not). The message is for the operator, whole: what is wrong and, where it
// helps, how to fix it; the caller adds where (a file, a port) and never parses it. Exceptions
// stop at the boundaries (the control loop, a request, a thread, run_moatd, moatctl's main):
// below them only constructors that cannot get their resource (an eventfd, DPDK memory) throw,
// and the INI editor refuses line breaks in what it writes (a broken invariant, never input).
// Text that can hold many problems at once (a config file, a filter, a packet line) is not a
// failure but a list of diagnostics with their lines (diag.h, FilterParse::errors).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace moat::ctl {

/// Why something failed.
struct Error {
    std::string message;
};

/// `return fail("no DPDK port named 'x'");` from a function returning any Result or Status.
inline Error fail(std::string message) { return Error{std::move(message)}; }

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
    Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}      // NOLINT

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    /// Why it failed; empty when it did not.
    const std::string& error() const {
        static const std::string kNone;
        return ok() ? kNone : std::get<1>(v_).message;
    }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error e) : error_(std::move(e.message)), ok_(false) {}  // NOLINT

    bool ok() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }
    const std::string& error() const { return error_; }

private:
    std::string error_;
    bool ok_ = true;
};

/// Success or why not.
using Status = Result<void>;

}  // namespace moat::ctl
