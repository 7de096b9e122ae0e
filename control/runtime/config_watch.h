// Watching the config file for changes: inotify on its directory, so that editors that write
// a new file and rename it over the old one are seen as well as in-place writes.
//
// The path may be a symbolic link, or pass through some (`--config /etc/moat.ini` naming a file
// kept elsewhere, a Kubernetes ConfigMap's `moat.ini -> ..data/moat.ini` with `..data` swapped
// for a new directory on every update), and any directory on the way may be replaced (`mv etc
// etc.old; mv etc.new etc`): every directory the path passes through is watched for the entry
// that leads on, and a change of any of them (a link re-pointed, a directory moved) is a change
// of the config, after which the path is resolved again, so the watch follows it. A lost event
// (the kernel's queue overflowed) counts as a change too.
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <string>

namespace moat::ctl {

class ConfigWatch {
public:
    /// How long the file must stay quiet before moatd reloads it: briefly after a complete write
    /// (closed, or renamed into place; a burst such as sed -i's create, write and rename
    /// coalesces), longer while a writer still holds it open.
    static constexpr std::chrono::milliseconds kSettleComplete{2};
    /// While a writer holds the file open, what is there may be a prefix that permits more than
    /// the whole file: it is read only once the writer has been quiet this long.
    static constexpr std::chrono::milliseconds kSettlePartial{2000};

    /// Watches `path` (and the links it passes through). On failure `ok()` is false.
    explicit ConfigWatch(const std::string& path);
    ~ConfigWatch();
    ConfigWatch(const ConfigWatch&) = delete;
    ConfigWatch& operator=(const ConfigWatch&) = delete;

    bool ok() const noexcept { return fd_ >= 0 && error_.empty(); }
    const std::string& error() const noexcept { return error_; }
    int fd() const noexcept { return fd_; }

    enum class Change {
        none,
        partial,   ///< modified or created, still open for writing: more may come
        complete,  ///< closed after writing, renamed into place, or a link on the way changed
    };

    /// Reads the pending events and says what they did to the config file (the most
    /// complete change wins).
    Change changed();

    /// The directories watched, with the entries in each that matter (tests, diagnostics).
    std::map<std::string, std::set<std::string>> watched() const;

private:
    /// Resolves the path's links again and watches the directories they live in.
    void resolve();

    std::string path_;
    int fd_ = -1;
    std::string error_;
    struct Dir {
        std::string path;
        std::set<std::string> links;  ///< directories and symbolic links on the way to the file
        std::set<std::string> files;  ///< the config file itself
    };
    std::map<int, Dir> dirs_;  ///< by watch descriptor
};

}  // namespace moat::ctl
