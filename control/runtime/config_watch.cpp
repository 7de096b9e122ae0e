#include "control/runtime/config_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <vector>

namespace moat::ctl {

namespace {

namespace fs = std::filesystem;

struct PathStep {
    fs::path dir;
    std::string name;
    bool on_the_way = false;  ///< a directory or a link the path passes through, not the file
};

/// The entries whose change can change what `path` reads: every directory and symbolic link met
/// while resolving it, component by component (a link's target may itself hold links), and the
/// file it ends at. At most 40 links are followed, as the kernel does.
std::vector<PathStep> chain_of(const std::string& path) {
    std::vector<PathStep> out;
    const fs::path start = fs::absolute(path).lexically_normal();
    std::deque<fs::path> todo(std::next(start.begin()), start.end());  // after the root
    fs::path at = start.root_path();
    int links = 0;
    while (!todo.empty()) {
        const fs::path c = todo.front();
        todo.pop_front();
        if (c == "." || c.empty())
            continue;
        if (c == "..") {
            at = at.parent_path();
            continue;
        }
        const fs::path next = at / c;
        std::error_code ec;
        if (!todo.empty())
            out.push_back({at, c.string(), true});  // a directory (or a link to one) on the way
        if (links < 40 && fs::is_symlink(fs::symlink_status(next, ec))) {
            ++links;
            if (todo.empty())
                out.push_back({at, c.string(), true});
            const fs::path target = fs::read_symlink(next, ec);
            if (!ec) {
                if (target.is_absolute())
                    at = target.root_path();
                std::vector<fs::path> parts(target.is_absolute() ? std::next(target.begin()) : target.begin(), target.end());
                todo.insert(todo.begin(), parts.begin(), parts.end());
                continue;
            }
        }
        if (todo.empty())
            out.push_back({at, c.string(), false});
        at = next;
    }
    return out;
}

}  // namespace

ConfigWatch::ConfigWatch(const std::string& path) : path_(path) {
    fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0) {
        error_ = std::string("inotify_init1: ") + std::strerror(errno);
        return;
    }
    resolve();
}

ConfigWatch::~ConfigWatch() {
    if (fd_ >= 0)
        close(fd_);
}

void ConfigWatch::resolve() {
    std::map<int, Dir> next;
    error_.clear();
    for (const PathStep& e : chain_of(path_)) {
        // In-place writes end with CLOSE_WRITE (MODIFY on the way); write-then-rename and link
        // swaps end with MOVED_TO; a new file or link with CREATE; `ln -sf` deletes first.
        const int wd = inotify_add_watch(fd_, e.dir.c_str(),
                                         IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM |
                                             IN_ONLYDIR);
        if (wd < 0) {
            if (error_.empty())
                error_ = "cannot watch " + e.dir.string() + ": " + std::strerror(errno);
            continue;
        }
        Dir& d = next[wd];
        d.path = e.dir.string();
        (e.on_the_way ? d.links : d.files).insert(e.name);
    }
    for (const auto& [wd, d] : dirs_)
        if (!next.contains(wd))
            inotify_rm_watch(fd_, wd);
    dirs_ = std::move(next);
}

ConfigWatch::Change ConfigWatch::changed() {
    Change hit = Change::none;
    bool relink = false;
    alignas(inotify_event) char buf[16 * 1024];
    for (;;) {
        const ssize_t n = fd_ < 0 ? -1 : read(fd_, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t at = 0; at < n;) {
            const auto* e = reinterpret_cast<const inotify_event*>(buf + at);
            at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
            if (e->mask & IN_Q_OVERFLOW) {  // events were lost: any of them may have been ours
                hit = Change::complete;
                relink = true;
                continue;
            }
            const auto d = dirs_.find(e->wd);
            if (e->len == 0 || d == dirs_.end())
                continue;  // IN_IGNORED of a directory no longer watched, or a stale watch
            const std::string name = e->name;
            if (d->second.links.contains(name)) {
                hit = Change::complete;  // links are made whole; what they name may differ now
                relink = true;
            } else if (d->second.files.contains(name)) {
                // Deleted or moved away counts as partial: a new file usually follows.
                hit = (e->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) ? Change::complete : std::max(hit, Change::partial);
            }
        }
    }
    if (relink)
        resolve();
    return hit;
}

std::map<std::string, std::set<std::string>> ConfigWatch::watched() const {
    std::map<std::string, std::set<std::string>> out;
    for (const auto& [wd, d] : dirs_) {
        auto& names = out[d.path];
        names.insert(d.links.begin(), d.links.end());
        names.insert(d.files.begin(), d.files.end());
    }
    return out;
}

}  // namespace moat::ctl
