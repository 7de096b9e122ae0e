// Running a real moatd from a test: start it, follow its periodic `stats {json}` lines until a
// condition holds, stop it with SIGTERM and collect its exit status and logs. Every wait takes
// seconds as on a plain build and stretches them by time_scale() (time_scale.h).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/time_scale.h"

namespace moat::test {

inline std::string moatd_path() {
    const char* p = std::getenv("MOATD");
    return p ? p : "moatd";
}

class Moatd {
public:
    /// Starts moatd with `args`; its stderr goes to `log_path`.
    Moatd(const std::vector<std::string>& args, const std::string& log_path) : log_path_(log_path) {
        int fds[2];
        if (pipe(fds) != 0)
            return;
        pid_ = fork();
        if (pid_ == 0) {
            dup2(fds[1], STDOUT_FILENO);
            const int err = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(err, STDERR_FILENO);
            close(fds[0]);
            close(fds[1]);
            std::vector<std::string> a{moatd_path()};
            a.insert(a.end(), args.begin(), args.end());
            std::vector<char*> argv;
            for (auto& s : a)
                argv.push_back(s.data());
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        close(fds[1]);
        out_ = fds[0];
    }
    ~Moatd() {
        if (pid_ > 0 && !exited_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        if (out_ >= 0)
            close(out_);
    }
    Moatd(const Moatd&) = delete;
    Moatd& operator=(const Moatd&) = delete;

    bool started() const { return pid_ > 0; }

    /// Reads stdout until a `stats` line satisfies `done`, moatd exits, or `seconds` (scaled) pass.
    /// Returns the last stats seen, whether or not they satisfy `done`.
    std::optional<nlohmann::json> wait_stats(const std::function<bool(const nlohmann::json&)>& done, double seconds) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(scaled_seconds(seconds));
        std::optional<nlohmann::json> last;
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{out_, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0)
                continue;
            char buf[4096];
            const ssize_t n = read(out_, buf, sizeof buf);
            if (n <= 0)
                return last;  // moatd closed its stdout: it exited
            stdout_.append(buf, static_cast<std::size_t>(n));
            for (std::size_t nl; (nl = stdout_.find('\n', scanned_)) != std::string::npos; scanned_ = nl + 1) {
                const std::string line = stdout_.substr(scanned_, nl - scanned_);
                if (!line.starts_with("stats "))
                    continue;
                last = nlohmann::json::parse(line.substr(6), nullptr, false);
                if (!last->is_discarded() && done(*last))
                    return last;
            }
        }
        return last;
    }

    /// Sends `sig` without waiting (e.g. SIGHUP: reload).
    void signal(int sig) {
        if (pid_ > 0 && !exited_)
            kill(pid_, sig);
    }

    /// Sends `sig` (default SIGTERM) and waits `seconds` (scaled) for the exit status (-1: killed
    /// or timed out).
    int stop(int sig = SIGTERM, double seconds = 30) {
        if (pid_ <= 0)
            return -1;
        if (!exited_)
            kill(pid_, sig);
        return wait_exit(seconds);
    }

    /// Waits for moatd to exit on its own; -1 when it does not within `seconds` (scaled).
    int wait_exit(double seconds) {
        if (exited_)
            return status_;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(scaled_seconds(seconds));
        while (std::chrono::steady_clock::now() < deadline) {
            int st = 0;
            if (waitpid(pid_, &st, WNOHANG) == pid_) {
                exited_ = true;
                status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
                drain();
                return status_;
            }
            drain_nonblocking();
            usleep(20000);
        }
        return -1;
    }

    std::string log() const {
        std::ifstream in(log_path_);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    const std::string& out() const { return stdout_; }

private:
    void drain() {
        char buf[4096];
        for (ssize_t n; (n = read(out_, buf, sizeof buf)) > 0;)
            stdout_.append(buf, static_cast<std::size_t>(n));
    }
    void drain_nonblocking() {
        pollfd p{out_, POLLIN, 0};
        while (poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
            char buf[4096];
            const ssize_t n = read(out_, buf, sizeof buf);
            if (n <= 0)
                break;
            stdout_.append(buf, static_cast<std::size_t>(n));
        }
    }

    std::string log_path_;
    pid_t pid_ = -1;
    int out_ = -1;
    bool exited_ = false;
    int status_ = -1;
    std::string stdout_;
    std::size_t scanned_ = 0;
};

}  // namespace moat::test
