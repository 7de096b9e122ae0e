// Line-based editing of a config file that keeps the operator's comments, order and spacing.
// Used by `moatctl ipsecpol` (and later `assign` / `unassign`). It only rewrites the lines it
// is asked to; the result is validated with load_policy_text() before anything is written.
// Every method that writes text throws std::invalid_argument when a key, value or name holds a
// CR, LF or NUL: one entry is one line, whatever the caller was handed.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/config/result.h"

namespace moat::ctl {

class IniText {
public:
    explicit IniText(std::string_view text);

    std::string str() const;

    /// Index of the header line of `[kind name]` (kind compared case-insensitively, name exactly;
    /// for `[appliance]` pass an empty name), or nullopt.
    std::optional<std::size_t> find_section(std::string_view kind, std::string_view name) const;

    /// Header indexes of every section of `kind`, in file order.
    std::vector<std::size_t> sections(std::string_view kind) const;

    /// Adds `[kind name]` with `lines` before the section whose header is at `before`, or at the
    /// end of the file when `before` is nullopt; returns the new header's index.
    std::size_t add_section(std::string_view kind, std::string_view name, const std::vector<std::string>& lines,
                            std::optional<std::size_t> before = std::nullopt);

    /// Removes a section: its header and every line up to the next header, and the blank and
    /// comment lines directly above the header (they belong to it).
    void remove_section(std::size_t header);

    struct Entry {
        std::size_t index;  ///< line index
        std::string key;    ///< lower case
        std::string value;  ///< trimmed, inline comment removed
    };
    std::vector<Entry> entries(std::size_t header) const;

    /// Inserts `key = value` after the section's last entry (or right after its header).
    void append_entry(std::size_t header, std::string_view key, std::string_view value);
    /// Replaces the line at `index` with `key = value`, keeping an inline comment.
    void replace_entry(std::size_t index, std::string_view key, std::string_view value);

    /// Sets a single-valued key in a section, replacing its first occurrence or appending it.
    void set_key(std::size_t header, std::string_view key, std::string_view value);

private:
    std::size_t section_end(std::size_t header) const;  ///< index one past the section's last line
    std::vector<std::string> lines_;
    bool trailing_newline_ = true;
};

/// Writes `text` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// A symbolic link is written through (the file it names is replaced; the link stays), and the
/// new file keeps the old one's owner, group and mode. `unchanged`, when given, is asked right
/// before the rename whether the file still is what the caller's edit was made to (someone may
/// have saved it meanwhile); if not, nothing is written and `*changed` is set.
Status write_file_atomic(const std::string& path, const std::string& text, const std::function<bool()>& unchanged = {},
                         bool* changed = nullptr);

}  // namespace moat::ctl
