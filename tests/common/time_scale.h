// How much longer than usual the tests' deadlines may be: every fixed wait in the tests (for a
// reply, for moatd to read its frames, for a build to start) is written for a plain build on an
// idle machine and goes through scaled(). Under AddressSanitizer everything runs two to five
// times slower, so tools/check runs the sanitizer build with MOAT_TEST_TIME_SCALE=3 (as meson's
// --timeout-multiplier 3); a build with a sanitizer compiled in defaults to 3 even without it.
// Deadlines only: a test that waits longer for something that happens anyway passes the same, a
// test that times out still fails, and no test asserts how fast something is.
#pragma once

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MOAT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define MOAT_TEST_SANITIZED 1
#endif
#endif

namespace moat::test {

/// MOAT_TEST_TIME_SCALE when it holds a number of at least 1; otherwise 3 in a sanitizer build
/// and 1 in any other.
inline double time_scale() {
    static const double scale = [] {
#ifdef MOAT_TEST_SANITIZED
        double s = 3;
#else
        double s = 1;
#endif
        if (const char* e = std::getenv("MOAT_TEST_TIME_SCALE")) {
            char* end = nullptr;
            const double v = std::strtod(e, &end);
            if (end != e && *end == '\0' && v >= 1)
                s = v;
        }
        return s;
    }();
    return scale;
}

/// A deadline `d` long on a plain build, longer under the time scale.
template <class Rep, class Period>
std::chrono::milliseconds scaled(std::chrono::duration<Rep, Period> d) {
    return std::chrono::milliseconds(static_cast<long long>(
        std::chrono::duration<double, std::milli>(d).count() * time_scale() + 0.5));
}

/// The same in seconds, for the helpers that take a double.
inline double scaled_seconds(double seconds) { return seconds * time_scale(); }

/// Calls `done` every `step` until it returns true (true) or `budget`, scaled, has passed
/// (false; `done` had one last chance at the end).
template <class Done, class Rep1, class Period1, class Rep2, class Period2>
bool eventually(Done&& done, std::chrono::duration<Rep1, Period1> budget, std::chrono::duration<Rep2, Period2> step) {
    const auto deadline = std::chrono::steady_clock::now() + scaled(budget);
    while (std::chrono::steady_clock::now() < deadline) {
        if (done())
            return true;
        std::this_thread::sleep_for(step);
    }
    return done();
}

}  // namespace moat::test
