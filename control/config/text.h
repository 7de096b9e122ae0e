// Small text helpers shared by the config reader, the grammar, the editors and the control socket.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

/// The character of `s` that begins at byte `i`: its whole UTF-8 sequence, or the one byte when
/// none begins there (a message that quotes one character never quotes half of one).
std::string_view utf8_char_at(std::string_view s, std::size_t i) noexcept;

/// `s` with every ill-formed UTF-8 byte replaced by U+FFFD, so that it can go anywhere text goes.
std::string valid_utf8(std::string_view s);

/// `s` as one line of a log: valid UTF-8 (valid_utf8), control characters (line breaks, escape
/// sequences) written as \xNN, cut to `max` bytes with "..." (0: no limit). What a client sends
/// never forges a log line or a terminal's state.
std::string printable(std::string_view s, std::size_t max = 0);

/// The first byte of `s` that is an ASCII control character other than TAB (C0 or DEL).
std::optional<std::size_t> control_char_at(std::string_view s) noexcept;

/// Decimal number without sign or leading zeros (so "010" is not read as octal or as ten), at
/// most `max`.
std::optional<unsigned> parse_uint(std::string_view s, unsigned max);

/// `s` cut at every `sep` (empty pieces kept).
std::vector<std::string_view> split(std::string_view s, char sep);

}  // namespace moat::ctl
