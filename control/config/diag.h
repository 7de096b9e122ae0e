// Diagnostics: every problem found in a config, as values, printed as `file:line: message`.
#pragma once

#include <string>
#include <vector>

namespace moat::ctl {

enum class Severity { error, warning };

struct Diagnostic {
    std::string file;
    int line = 0;  ///< 1-based; 0 when the problem has no line (e.g. the file cannot be read)
    Severity severity = Severity::error;
    std::string message;
    std::string kind;  ///< lint warnings: what about ("overlap", "shadowed", "catch-all", "incomplete")
};

/// An ordered collection of diagnostics; the loader collects all of them in one run.
class Diagnostics {
public:
    void error(const std::string& file, int line, std::string message);
    void warning(const std::string& file, int line, std::string message, std::string kind = {});

    bool has_errors() const noexcept { return errors_ > 0; }
    int error_count() const noexcept { return errors_; }
    int warning_count() const noexcept { return static_cast<int>(all_.size()) - errors_; }
    const std::vector<Diagnostic>& all() const noexcept { return all_; }

    /// Sorts by file, then line, keeping the order of diagnostics on the same line.
    void sort();

private:
    std::vector<Diagnostic> all_;
    int errors_ = 0;
};

/// `file:line: error: message` (or `file: error: message` without a line).
std::string format(const Diagnostic& d);

}  // namespace moat::ctl
