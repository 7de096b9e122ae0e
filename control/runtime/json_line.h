// A JSON object written straight into a string, for lines made by the thousand (monitor records,
// flow listings), where building an nlohmann::json object per line costs more than the rest.
#pragma once

#include <algorithm>
#include <charconv>
#include <concepts>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "control/config/json_text.h"

namespace moat::ctl {

/// A JSON object written straight into a string, members in the order they are added. The
/// monitor's lines are made this way, not through nlohmann::json: building and dumping a
/// 25-member object cost some 14 us a line, which capped a monitor near 25,000 lines a second.
class JsonLine {
public:
    explicit JsonLine(std::string& out) : out_(out) { out_ += '{'; }

    JsonLine& str(std::string_view k, std::string_view v) {
        key(k);
        // Text moatd makes (addresses, names of its own) is plain ASCII; a name from the config
        // file may hold anything, and json_text writes that safely (U+FFFD for bad UTF-8).
        if (std::all_of(v.begin(), v.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; })) {
            out_ += '"';
            out_ += v;
            out_ += '"';
        } else {
            out_ += json_text(nlohmann::json(std::string(v)));
        }
        return *this;
    }
    template <std::integral T>
    JsonLine& num(std::string_view k, T v) {
        key(k);
        char buf[24];
        out_.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
        return *this;
    }
    JsonLine& raw(std::string_view k, std::string_view json) {
        key(k);
        out_ += json;
        return *this;
    }
    JsonLine& null(std::string_view k) { return raw(k, "null"); }
    void close() { out_ += '}'; }

private:
    void key(std::string_view k) {
        if (out_.back() != '{')
            out_ += ',';
        out_ += '"';
        out_ += k;
        out_ += "\":";
    }
    std::string& out_;
};

}  // namespace moat::ctl
