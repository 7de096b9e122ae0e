#include "control/config_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace moat::ctl {

ConfigWatch::ConfigWatch(const std::string& path) {
    const std::filesystem::path p = std::filesystem::absolute(path);
    name_ = p.filename().string();
    fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0) {
        error_ = std::string("inotify_init1: ") + std::strerror(errno);
        return;
    }
    // In-place writes end with CLOSE_WRITE (MODIFY on the way); write-then-rename ends with
    // MOVED_TO; a new file with CREATE.
    if (inotify_add_watch(fd_, p.parent_path().c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY) < 0) {
        error_ = "cannot watch " + p.parent_path().string() + ": " + std::strerror(errno);
        close(fd_);
        fd_ = -1;
    }
}

ConfigWatch::~ConfigWatch() {
    if (fd_ >= 0)
        close(fd_);
}

ConfigWatch::Change ConfigWatch::changed() {
    Change hit = Change::none;
    alignas(inotify_event) char buf[16 * 1024];
    for (;;) {
        const ssize_t n = read(fd_, buf, sizeof buf);
        if (n <= 0)
            return hit;
        for (ssize_t at = 0; at < n;) {
            const auto* e = reinterpret_cast<const inotify_event*>(buf + at);
            if (e->len > 0 && name_ == e->name)
                hit = (e->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) ? Change::complete : std::max(hit, Change::partial);
            at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
        }
    }
}

}  // namespace moat::ctl
