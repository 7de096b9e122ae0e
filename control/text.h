// Small text helpers shared by the config reader, the grammar and the editors.
#pragma once

#include <string>
#include <string_view>

namespace moat::ctl {

/// Trims ASCII whitespace at both ends.
std::string_view trim(std::string_view s) noexcept;

/// ASCII lower case.
std::string lower(std::string_view s);

/// Case-insensitive ASCII comparison.
bool iequals(std::string_view a, std::string_view b) noexcept;

/// `'s'`, for messages.
std::string quoted(std::string_view s);

}  // namespace moat::ctl
