// Watching the config file for changes: inotify on its directory, so that editors that write
// a new file and rename it over the old one are seen as well as in-place writes.
#pragma once

#include <chrono>
#include <string>

namespace moat::ctl {

class ConfigWatch {
public:
    /// How long the file must stay quiet before moatd reloads it: briefly after a complete write
    /// (closed, or renamed into place; a burst such as sed -i's create, write and rename
    /// coalesces), longer while a writer still holds it open.
    static constexpr std::chrono::milliseconds kSettleComplete{10};
    static constexpr std::chrono::milliseconds kSettlePartial{300};

    /// Watches the directory of `path` for changes to `path`. On failure `ok()` is false.
    explicit ConfigWatch(const std::string& path);
    ~ConfigWatch();
    ConfigWatch(const ConfigWatch&) = delete;
    ConfigWatch& operator=(const ConfigWatch&) = delete;

    bool ok() const noexcept { return fd_ >= 0; }
    const std::string& error() const noexcept { return error_; }
    int fd() const noexcept { return fd_; }

    enum class Change {
        none,
        partial,   ///< modified or created, still open for writing: more may come
        complete,  ///< closed after writing, or renamed into place: a whole file
    };

    /// Reads the pending events and says what they did to the config file (the most
    /// complete change wins).
    Change changed();

private:
    std::string name_;
    int fd_ = -1;
    std::string error_;
};

}  // namespace moat::ctl
