// JSON text that can always be written (kept apart from text.h: nlohmann's header brings
// std::quoted into argument-dependent lookup of quoted()).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace moat::ctl {

/// `j` as JSON text (one line unless `indent` >= 0). Strings that are not valid UTF-8 (a path, a
/// payload, a name from an unchecked source) are written with U+FFFD in place of the bad bytes
/// instead of throwing, so no reply or log line can fail to serialise.
std::string json_text(const nlohmann::json& j, int indent = -1);

}  // namespace moat::ctl
