// JsonWriter: streams pretty-printed JSON (two-space indent) without building a document
// tree, so a plan of a 100k-tensor model prints in milliseconds. Keys keep the order written.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/safe_text.hpp"  // utf8_scan

namespace layerfreeze {

class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view k);
  JsonWriter& value(std::string_view s);
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(int64_t v);
  JsonWriter& value(int v) { return value(static_cast<int64_t>(v)); }
  JsonWriter& value(size_t v) { return value(static_cast<int64_t>(v)); }
  JsonWriter& value(double v);
  JsonWriter& value(bool v);
  JsonWriter& null();
  /// A list of strings, or of integers, in one call.
  JsonWriter& strings(const std::vector<std::string>& items);
  JsonWriter& ints(const std::vector<int64_t>& items);
  /// Convenience: key then value.
  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }
  std::string take() {
    out_.push_back('\n');
    return std::move(out_);
  }

 private:
  void before_value();
  JsonWriter& close(char bracket);
  void newline();
  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written yet
  bool after_key_ = false;
};

/// `s` as a JSON string literal, with quotes; a byte that is not part of well-formed UTF-8
/// becomes U+FFFD, as in every JSON layerfreeze writes (core/json_text.hpp for the other writer).
std::string json_quote(std::string_view s);
/// The same, appended to `out`.
void append_json_quoted(std::string& out, std::string_view s);

}  // namespace layerfreeze
