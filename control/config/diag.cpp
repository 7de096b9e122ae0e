#include "control/config/diag.h"

#include <algorithm>

namespace moat::ctl {

void Diagnostics::error(const std::string& file, int line, std::string message) {
    all_.push_back({file, line, Severity::error, std::move(message), {}});
    ++errors_;
}

void Diagnostics::warning(const std::string& file, int line, std::string message, std::string kind) {
    all_.push_back({file, line, Severity::warning, std::move(message), std::move(kind)});
}

void Diagnostics::sort() {
    std::stable_sort(all_.begin(), all_.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return a.file != b.file ? a.file < b.file : a.line < b.line;
    });
}

std::string format(const Diagnostic& d) {
    std::string out = d.file;
    if (d.line > 0)
        out += ':' + std::to_string(d.line);
    out += d.severity == Severity::error ? ": error: " : ": warning: ";
    out += d.message;
    return out;
}

}  // namespace moat::ctl
