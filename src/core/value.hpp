// Value: a typed scalar or list from a rules file, a `--set` override or an expression.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace layerfreeze {

struct Value {
  enum class Kind { kNull, kBool, kInt, kFloat, kString, kList };
  Kind kind = Kind::kNull;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::vector<Value> list;

  static Value null() { return {}; }
  static Value boolean(bool v) {
    Value x;
    x.kind = Kind::kBool;
    x.b = v;
    return x;
  }
  static Value integer(int64_t v) {
    Value x;
    x.kind = Kind::kInt;
    x.i = v;
    return x;
  }
  static Value real(double v) {
    Value x;
    x.kind = Kind::kFloat;
    x.f = v;
    return x;
  }
  static Value string(std::string v) {
    Value x;
    x.kind = Kind::kString;
    x.s = std::move(v);
    return x;
  }
  static Value of_list(std::vector<Value> v) {
    Value x;
    x.kind = Kind::kList;
    x.list = std::move(v);
    return x;
  }

  bool is_null() const { return kind == Kind::kNull; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  double number() const { return kind == Kind::kInt ? static_cast<double>(i) : f; }
  /// YAML-ish text: 16, 0.5, true, null, 'text', ['a', 'b'].
  std::string to_string() const;
  bool operator==(const Value& o) const;
};

const char* kind_name(Value::Kind k);  // "int", "float", ...

}  // namespace layerfreeze
