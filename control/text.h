// Small text helpers shared by the config reader, the grammar, the editors and the control socket.
#pragma once

#include <cstddef>
#include <optional>
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

/// The offset of the first byte of `s` that does not begin a well-formed UTF-8 sequence
/// (overlong forms, surrogates and code points past U+10FFFF are ill-formed), or nullopt when
/// all of `s` is valid UTF-8.
std::optional<std::size_t> invalid_utf8_at(std::string_view s) noexcept;

/// `s` with every ill-formed UTF-8 byte replaced by U+FFFD, so that it can go anywhere text goes.
std::string valid_utf8(std::string_view s);

}  // namespace moat::ctl
