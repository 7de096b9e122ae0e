#include "control/config/ini_reader.h"
#include "control/config/result.h"

#include <ini.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "control/config/filter_spec.h"

namespace moat::ctl {

namespace {

/// State shared by the reader and the handler; inih calls them alternately on one thread.
struct ReadState {
    std::string_view text;
    std::size_t pos = 0;
    int line = 0;
    int expect_entry = 0;  ///< line handed to inih that must produce a handler call, or 0
    const std::string* file = nullptr;
    Diagnostics* diags = nullptr;
    IniDoc doc;

    void error(std::string msg) { diags->error(*file, line, std::move(msg)); }

    /// Called before the next line is read and at the end: an entry line inih did not accept.
    void check_expected() {
        if (expect_entry != 0)
            diags->error(*file, expect_entry,
                         "expected 'key = value', a [section] header or a comment");
        expect_entry = 0;
    }
};

bool is_comment_or_blank(std::string_view t) {
    return t.empty() || t[0] == ';' || t[0] == '#';
}

/// A line is printable UTF-8, or why not (the first bad byte, its column).
Status printable_line(std::string_view raw) {
    if (std::all_of(raw.begin(), raw.end(), [](char c) { return (c >= 0x20 && c < 0x7f) || c == '\t'; }))
        return {};  // printable ASCII, nearly every line
    const auto bad = invalid_utf8_at(raw);
    const auto ctl = control_char_at(raw);
    if (!bad && !ctl)
        return {};
    const std::size_t at = bad && (!ctl || *bad < *ctl) ? *bad : *ctl;
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(raw[at]));
    const std::string where = std::string(hex) + " at column " + std::to_string(at + 1);
    return fail(at == bad ? "line is not valid UTF-8 (byte " + where + "): save the file as UTF-8"
                          : "line contains a control character (" + where + "): names, filters and values are printable text");
}

char* read_line(char* str, int num, void* stream) {
    auto& s = *static_cast<ReadState*>(stream);
    s.check_expected();
    if (s.pos >= s.text.size())
        return nullptr;
    const auto nl = s.text.find('\n', s.pos);
    const auto end = nl == std::string_view::npos ? s.text.size() : nl;
    std::string_view raw = s.text.substr(s.pos, end - s.pos);
    s.pos = end + 1;
    ++s.line;
    if (!raw.empty() && raw.back() == '\r')
        raw.remove_suffix(1);
    if (s.line == 1 && raw.starts_with("\xEF\xBB\xBF"))
        raw.remove_prefix(3);

    // inih needs room for the line, its newline and the terminating NUL.
    const std::size_t limit = num > 2 ? static_cast<std::size_t>(num) - 2 : 0;
    std::string_view give = raw;
    if (raw.size() > limit) {
        s.error("line is " + std::to_string(raw.size()) + " characters long; the limit is " +
                std::to_string(limit) + " (shorten it, e.g. split a long name or description)");
        give = {};
    } else if (raw.find('\0') != std::string_view::npos) {
        s.error("line contains a NUL byte");
        give = {};
    } else if (const Status printable = printable_line(raw); !printable && !is_comment_or_blank(trim(raw))) {
        // Names, filters and descriptions reach the control socket's JSON, logs and terminals:
        // they are printable UTF-8 or they are refused here, with the place of the first bad byte.
        s.error(printable.error());
        give = {};
    }

    const std::string_view t = trim(give);
    if (!t.empty() && t[0] == '[') {
        const auto close = t.find(']');
        if (close == std::string_view::npos) {
            s.error("section header " + std::string(t) + " has no closing ']'");
        } else {
            const auto rest = trim(t.substr(close + 1));
            if (!rest.empty() && rest[0] != ';' && rest[0] != '#')
                s.error("unexpected '" + std::string(rest) + "' after the section header");
            s.doc.sections.push_back({std::string(trim(t.substr(1, close - 1))), s.line, {}});
        }
        give = {};  // sections are tracked here, not by inih
    } else if (!is_comment_or_blank(t)) {
        s.expect_entry = s.line;
    }
    if (!give.empty())  // an empty view's data() may be null, which memcpy must not get
        std::memcpy(str, give.data(), give.size());
    str[give.size()] = '\n';
    str[give.size() + 1] = '\0';
    return str;
}

int on_entry(void* user, const char* /*section*/, const char* name, const char* value) {
    auto& s = *static_cast<ReadState*>(user);
    s.expect_entry = 0;
    s.doc.sections.back().entries.push_back({name ? name : "", value ? value : "", s.line});
    return 1;
}

}  // namespace

IniDoc read_ini(std::string_view text, const std::string& file, Diagnostics& diags) {
    ReadState s;
    s.text = text;
    s.file = &file;
    s.diags = &diags;
    s.doc.sections.push_back({"", 0, {}});
    // Continuation lines would hide a missing key from the line count; a config never needs them.
    ini_allow_multiline = false;
    ini_parse_stream(&read_line, &s, &on_entry, &s);
    s.check_expected();
    return std::move(s.doc);
}

}  // namespace moat::ctl
