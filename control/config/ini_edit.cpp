#include "control/config/ini_edit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "control/config/filter_spec.h"

namespace moat::ctl {

namespace {

bool is_header(std::string_view line) {
    const auto t = trim(line);
    return !t.empty() && t[0] == '[' && t.find(']') != std::string_view::npos;
}

bool is_comment_or_blank(std::string_view line) {
    const auto t = trim(line);
    return t.empty() || t[0] == ';' || t[0] == '#';
}

/// Position of an inline comment (`;` after whitespace), as inih reads it, or npos.
std::size_t inline_comment(std::string_view value) {
    for (std::size_t i = 1; i < value.size(); ++i)
        if (value[i] == ';' && std::isspace(static_cast<unsigned char>(value[i - 1])))
            return i;
    return std::string_view::npos;
}

/// The editor writes what it is given into a file that moatd runs from: a value with a line
/// break would become lines of their own (a section, an [appliance] key), so none gets in,
/// whoever the caller is.
void one_line(std::string_view what, std::string_view s) {
    if (s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
        throw std::invalid_argument(std::string(what) + " " + ctl::quoted(valid_utf8(s.substr(0, 60))) +
                                    " contains a line break or a NUL byte: a config entry is one line");
}

}  // namespace

IniText::IniText(std::string_view text) {
    trailing_newline_ = text.empty() || text.back() == '\n';
    std::size_t start = 0;
    while (start < text.size()) {
        auto nl = text.find('\n', start);
        if (nl == std::string_view::npos)
            nl = text.size();
        lines_.emplace_back(text.substr(start, nl - start));
        start = nl + 1;
    }
}

std::string IniText::str() const {
    std::string out;
    for (std::size_t i = 0; i < lines_.size(); ++i) {
        out += lines_[i];
        if (i + 1 < lines_.size() || trailing_newline_)
            out += '\n';
    }
    return out;
}

std::optional<std::size_t> IniText::find_section(std::string_view kind, std::string_view name) const {
    for (std::size_t i = 0; i < lines_.size(); ++i) {
        if (!is_header(lines_[i]))
            continue;
        const auto t = trim(lines_[i]);
        const auto inner = trim(t.substr(1, t.find(']') - 1));
        const auto space = inner.find_first_of(" \t");
        const auto k = inner.substr(0, space);
        const auto n = space == std::string_view::npos ? std::string_view{} : trim(inner.substr(space));
        if (lower(k) == lower(kind) && n == name)
            return i;
    }
    return std::nullopt;
}

std::vector<std::size_t> IniText::sections(std::string_view kind) const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < lines_.size(); ++i) {
        if (!is_header(lines_[i]))
            continue;
        const auto t = trim(lines_[i]);
        const auto inner = trim(t.substr(1, t.find(']') - 1));
        if (lower(inner.substr(0, inner.find_first_of(" \t"))) == lower(kind))
            out.push_back(i);
    }
    return out;
}

std::size_t IniText::section_end(std::size_t header) const {
    std::size_t i = header + 1;
    while (i < lines_.size() && !is_header(lines_[i]))
        ++i;
    return i;
}

std::size_t IniText::add_section(std::string_view kind, std::string_view name,
                                 const std::vector<std::string>& lines, std::optional<std::size_t> before) {
    one_line("section kind", kind);
    one_line("section name", name);
    for (const auto& l : lines)
        one_line("line", l);
    std::vector<std::string> block;
    block.push_back("[" + std::string(kind) + (name.empty() ? "" : " " + std::string(name)) + "]");
    block.insert(block.end(), lines.begin(), lines.end());
    if (before) {
        // Above the comment block that introduces the section at `before`.
        std::size_t at = *before;
        while (at > 0 && is_comment_or_blank(lines_[at - 1]) && !trim(lines_[at - 1]).empty())
            --at;
        block.emplace_back();
        lines_.insert(lines_.begin() + static_cast<std::ptrdiff_t>(at), block.begin(), block.end());
        return at;
    }
    while (!lines_.empty() && trim(lines_.back()).empty())
        lines_.pop_back();
    if (!lines_.empty())
        lines_.emplace_back();
    const std::size_t header = lines_.size();
    lines_.insert(lines_.end(), block.begin(), block.end());
    trailing_newline_ = true;
    return header;
}

void IniText::remove_section(std::size_t header) {
    std::size_t begin = header;
    while (begin > 0 && is_comment_or_blank(lines_[begin - 1]) && !is_header(lines_[begin - 1]))
        --begin;
    // Keep the comment block that opens the file or a previous section's trailing entries intact:
    // only blank lines and comments directly above are taken.
    lines_.erase(lines_.begin() + static_cast<std::ptrdiff_t>(begin),
                 lines_.begin() + static_cast<std::ptrdiff_t>(section_end(header)));
    if (begin > 0 && begin < lines_.size() && !trim(lines_[begin - 1]).empty())
        lines_.insert(lines_.begin() + static_cast<std::ptrdiff_t>(begin), "");
}

std::vector<IniText::Entry> IniText::entries(std::size_t header) const {
    std::vector<Entry> out;
    for (std::size_t i = header + 1; i < section_end(header); ++i) {
        if (is_comment_or_blank(lines_[i]))
            continue;
        const std::string_view line = lines_[i];
        const auto eq = line.find_first_of("=:");
        if (eq == std::string_view::npos)
            continue;
        std::string_view value = line.substr(eq + 1);
        value = trim(value);
        value = trim(value.substr(0, inline_comment(value)));
        out.push_back({i, lower(trim(line.substr(0, eq))), std::string(value)});
    }
    return out;
}

void IniText::append_entry(std::size_t header, std::string_view key, std::string_view value) {
    one_line("key", key);
    one_line("value", value);
    std::size_t at = header + 1;
    for (const auto& e : entries(header))
        at = e.index + 1;
    lines_.insert(lines_.begin() + static_cast<std::ptrdiff_t>(at),
                  std::string(key) + (value.empty() ? " =" : " = " + std::string(value)));
}

void IniText::replace_entry(std::size_t index, std::string_view key, std::string_view value) {
    one_line("key", key);
    one_line("value", value);
    const std::string_view line = lines_[index];
    const auto eq = line.find_first_of("=:");
    if (eq == std::string_view::npos) {
        lines_[index] = std::string(key) + (value.empty() ? " =" : " = " + std::string(value));
        return;
    }
    // Only the value changes: the key's spelling, the alignment around '=' and an inline comment
    // stay as the operator wrote them, so the diff is one value.
    const std::string_view old = line.substr(eq + 1);
    const auto is_space = [](char ch) { return ch == ' ' || ch == '\t'; };
    std::size_t lead = 0;
    while (lead < old.size() && is_space(old[lead]))
        ++lead;
    std::string comment;
    if (const auto c = inline_comment(old); c != std::string_view::npos) {
        auto from = c;
        while (from > lead && is_space(old[from - 1]))
            --from;
        comment = from == c ? "   " + std::string(old.substr(c)) : std::string(old.substr(from));
    }
    const std::string spacing = lead > 0 && lead < old.size() ? std::string(old.substr(0, lead)) : " ";
    lines_[index] = std::string(line.substr(0, eq + 1)) + (value.empty() ? "" : spacing + std::string(value)) + comment;
}

void IniText::set_key(std::size_t header, std::string_view key, std::string_view value) {
    for (const auto& e : entries(header))
        if (e.key == lower(key)) {
            replace_entry(e.index, key, value);
            return;
        }
    append_entry(header, key, value);
}

Status write_file_atomic(const std::string& path, const std::string& text, const std::function<bool()>& unchanged,
                         bool* changed) {
    namespace fs = std::filesystem;
    // Through symbolic links: the file a link names is replaced, the link stays (a config kept in
    // another directory, a Kubernetes-style ..data link).
    fs::path target(path);
    for (int hops = 0;; ++hops) {
        std::error_code ec;
        if (!fs::is_symlink(fs::symlink_status(target, ec)))
            break;
        if (hops == 40)
            return fail("cannot write " + path + ": too many levels of symbolic links");
        const fs::path next = fs::read_symlink(target, ec);
        if (ec)
            return fail("cannot write " + path + ": " + ec.message());
        target = next.is_absolute() ? next : target.parent_path() / next;
    }
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::string tmp = (dir / ("." + target.filename().string() + ".XXXXXX")).string();
    const int fd = mkstemp(tmp.data());
    if (fd < 0)
        return fail("cannot create a temporary file in " + dir.string() + ": " + std::strerror(errno));
    // The new file keeps the old one's owner, group and mode (chown first: it may clear set-id
    // bits). Only root can give a file away; anyone else writes a file they own anyway.
    struct stat st {};
    const bool existed = ::stat(target.c_str(), &st) == 0;
    bool ok = true;
    if (existed && ::fchown(fd, st.st_uid, st.st_gid) != 0 && errno != EPERM)
        ok = false;
    ok = ok && ::fchmod(fd, existed ? st.st_mode & 07777 : 0644) == 0;
    std::size_t done = 0;
    while (ok && done < text.size()) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        done += ok ? static_cast<std::size_t>(n) : 0;
    }
    ok = ok && ::fsync(fd) == 0;
    const int saved = errno;
    ::close(fd);
    // The last look before the rename, after the slow part (fsync): an edit made to a file that
    // someone saved meanwhile would revert their save.
    if (ok && unchanged && !unchanged()) {
        ::unlink(tmp.c_str());
        if (changed)
            *changed = true;
        return fail("cannot write " + target.string() + ": it changed while the edit was made");
    }
    if (!ok || ::rename(tmp.c_str(), target.c_str()) != 0) {
        const std::string msg = std::strerror(ok ? errno : saved);
        ::unlink(tmp.c_str());
        return fail("cannot write " + target.string() + ": " + msg);
    }
    return {};
}

}  // namespace moat::ctl
