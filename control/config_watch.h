// Watching the config file for changes: inotify on its directory, so that editors that write
// a new file and rename it over the old one are seen as well as in-place writes.
#pragma once

#include <string>

namespace moat::ctl {

class ConfigWatch {
public:
    /// Watches the directory of `path` for changes to `path`. On failure `ok()` is false.
    explicit ConfigWatch(const std::string& path);
    ~ConfigWatch();
    ConfigWatch(const ConfigWatch&) = delete;
    ConfigWatch& operator=(const ConfigWatch&) = delete;

    bool ok() const noexcept { return fd_ >= 0; }
    const std::string& error() const noexcept { return error_; }
    int fd() const noexcept { return fd_; }

    /// Reads the pending events; true when one of them concerns the config file.
    bool changed();

private:
    std::string name_;
    int fd_ = -1;
    std::string error_;
};

}  // namespace moat::ctl
