// Running a program from a test and capturing its exit status, stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace moat::test {

inline std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s)
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

struct Result {
    int status = -1;  ///< exit status; -1 when killed by a signal
    std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

/// Runs `argv` (each element shell-quoted) and captures its output. Safe from several threads at
/// once (the monitor tests run two clients side by side): each call has files of its own.
inline Result run_command(const std::vector<std::string>& argv) {
    namespace fs = std::filesystem;
    static std::atomic<int> counter = 0;
    const int n = counter.fetch_add(1);
    const fs::path dir = fs::temp_directory_path() / ("moat-cmd." + std::to_string(getpid()));
    fs::create_directories(dir);
    const fs::path out = dir / ("out" + std::to_string(n));
    const fs::path err = dir / ("err" + std::to_string(n));
    std::string cmd;
    for (const auto& a : argv)
        cmd += (cmd.empty() ? "" : " ") + shell_quote(a);
    cmd += " >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string());
    Result r;
    const int st = std::system(cmd.c_str());
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    fs::remove(out);
    fs::remove(err);
    return r;
}

}  // namespace moat::test
