#include "print/json_writer.hpp"

#include <fmt/format.h>

#include <cmath>
#include <iterator>

namespace layerfreeze {

void append_json_quoted(std::string& o, std::string_view s) {
  o.push_back('"');
  for (size_t i = 0; i < s.size(); ++i) {
    // A run of characters that need no escape goes in one append.
    size_t plain = i;
    while (plain < s.size()) {
      const unsigned char c = static_cast<unsigned char>(s[plain]);
      if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
      ++plain;
    }
    o.append(s.data() + i, plain - i);
    i = plain;
    if (i == s.size()) break;
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': o += "\\\""; continue;
      case '\\': o += "\\\\"; continue;
      case '\n': o += "\\n"; continue;
      case '\r': o += "\\r"; continue;
      case '\t': o += "\\t"; continue;
      case '\b': o += "\\b"; continue;
      case '\f': o += "\\f"; continue;
      default: break;
    }
    if (c < 0x20) {
      fmt::format_to(std::back_inserter(o), "\\u{:04x}", c);
      continue;
    }
    // Copy a well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, nothing
    // above U+10FFFF); replace anything else with U+FFFD, one for each maximal ill-formed part
    // (Unicode's practice, and nlohmann-json's `replace`), so both writers write the same.
    const Utf8Scan u = utf8_scan(s, i);
    if (u.well_formed)
      o.append(s.data() + i, u.bytes);
    else
      o += "\xEF\xBF\xBD";
    i += u.bytes - 1;
  }
  o.push_back('"');
}

std::string json_quote(std::string_view s) {
  std::string o;
  o.reserve(s.size() + 2);
  append_json_quoted(o, s);
  return o;
}

void JsonWriter::newline() {
  out_.push_back('\n');
  out_.append(2 * first_.size(), ' ');
}

void JsonWriter::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (first_.empty()) return;
  if (!first_.back()) out_.push_back(',');
  first_.back() = false;
  newline();
}

JsonWriter& JsonWriter::begin_object() {
  before_value();
  out_.push_back('{');
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::close(char bracket) {
  bool empty = first_.back();
  first_.pop_back();
  if (!empty) newline();
  out_.push_back(bracket);
  return *this;
}

JsonWriter& JsonWriter::end_object() { return close('}'); }

JsonWriter& JsonWriter::begin_array() {
  before_value();
  out_.push_back('[');
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::end_array() { return close(']'); }

JsonWriter& JsonWriter::key(std::string_view k) {
  before_value();
  append_json_quoted(out_, k);
  out_ += ": ";
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::value(std::string_view s) {
  before_value();
  append_json_quoted(out_, s);
  return *this;
}

JsonWriter& JsonWriter::value(int64_t v) {
  before_value();
  fmt::format_to(std::back_inserter(out_), "{}", v);
  return *this;
}

JsonWriter& JsonWriter::value(double v) {
  before_value();
  if (!std::isfinite(v)) {
    out_ += "null";
    return *this;
  }
  std::string t = fmt::format("{}", v);  // the shortest form that reads back the same double
  if (t.find_first_of(".eE") == std::string::npos) t += ".0";
  out_ += t;
  return *this;
}

JsonWriter& JsonWriter::value(bool v) {
  before_value();
  out_ += v ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::null() {
  before_value();
  out_ += "null";
  return *this;
}

JsonWriter& JsonWriter::strings(const std::vector<std::string>& items) {
  begin_array();
  for (const auto& s : items) value(s);
  return end_array();
}

JsonWriter& JsonWriter::ints(const std::vector<int64_t>& items) {
  begin_array();
  for (auto v : items) value(v);
  return end_array();
}

}  // namespace layerfreeze
