// Reading an INI file into sections and entries with line numbers, through inih.
//
// Debian's inih has a fixed line buffer and gives the handler no line numbers, so inih is driven
// through ini_parse_stream() with a reader of our own: it hands inih one whole line at a time,
// counts lines, records section headers itself (inih truncates long section names and does not
// report empty sections), rejects over-long lines instead of letting inih cut them, and notices
// lines inih rejected (a line that should have reached the handler but did not).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "control/config/diag.h"

namespace moat::ctl {

struct IniEntry {
    std::string key;    ///< as written, whitespace trimmed
    std::string value;  ///< whitespace and inline `;` comment trimmed
    int line = 0;
};

struct IniSection {
    std::string header;  ///< text between `[` and `]`, trimmed; "" for entries before any header
    int line = 0;        ///< line of the header (0 for the implicit leading section)
    std::vector<IniEntry> entries;
};

struct IniDoc {
    std::vector<IniSection> sections;  ///< in file order; the first is the implicit leading one
};

/// Parses `text` (the contents of `file`). Syntax problems go to `diags`; parsing goes on after
/// them so that every problem is reported in one run.
IniDoc read_ini(std::string_view text, const std::string& file, Diagnostics& diags);

}  // namespace moat::ctl
