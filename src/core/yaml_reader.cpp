#include "core/yaml_reader.hpp"

#include "core/safe_text.hpp"

#include <re2/re2.h>

#include <cerrno>
#include <cstdlib>
#include <set>

namespace layerfreeze {

SourceLoc YamlReader::loc(const YAML::Node& n) const {
  if (!n.IsDefined()) return {file_, 0, 0};
  YAML::Mark m = n.Mark();
  if (m.line < 0) return {file_, 0, 0};
  return {file_, m.line + 1, m.column + 1};
}

std::vector<YamlReader::Entry> YamlReader::entries(const YAML::Node& n, const std::string& what,
                                                   const std::vector<std::string>& allowed) {
  std::vector<Entry> out;
  if (!n.IsMap()) {
    error("wrong-type", what + " must be a map, not " + describe(n), n);
    return out;
  }
  std::set<std::string> seen;
  for (auto it = n.begin(); it != n.end(); ++it) {
    if (!it->first.IsScalar()) {
      error("wrong-type", "keys of " + what + " must be plain names", it->first);
      continue;
    }
    std::string key = it->first.Scalar();
    if (!allowed.empty()) {
      bool ok = false;
      for (const auto& a : allowed) ok = ok || a == key;
      if (!ok) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        error("unknown-key", "unknown key '" + key + "' in " + what + did_you_mean(key, allowed),
              it->first, {"allowed here: " + list});
        continue;
      }
    }
    if (!seen.insert(key).second) {
      error("duplicate-key", "duplicate key '" + key + "' in " + what, it->first);
      continue;
    }
    out.push_back({key, it->first, it->second});
  }
  return out;
}

Value typed_scalar(const std::string& t, bool quoted) {
  if (quoted) return Value::string(t);
  if (t.empty() || t == "~" || t == "null" || t == "Null" || t == "NULL") return Value::null();
  if (t == "true" || t == "True" || t == "TRUE") return Value::boolean(true);
  if (t == "false" || t == "False" || t == "FALSE") return Value::boolean(false);
  static const RE2 int_re("[-+]?[0-9]+");
  static const RE2 float_re("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  if (RE2::FullMatch(t, int_re)) {
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(t.c_str(), &end, 10);
    if (errno == 0) return Value::integer(v);
    return Value::string(t);  // out of range: left as text, reported by whoever needs a number
  }
  if (RE2::FullMatch(t, float_re)) return Value::real(std::strtod(t.c_str(), nullptr));
  if (t == ".inf" || t == "+.inf") return Value::real(HUGE_VAL);
  if (t == "-.inf") return Value::real(-HUGE_VAL);
  return Value::string(t);
}

std::string describe(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "nothing (null)";
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  Value v = typed_scalar(n.Scalar(), n.Tag() == "!");
  switch (v.kind) {
    case Value::Kind::kBool: return "the boolean " + quoted_value(n.Scalar(), 60, false);
    case Value::Kind::kInt:
    case Value::Kind::kFloat: return "the number " + quoted_value(n.Scalar(), 60, false);
    // A short, escaped prefix: a file that is not YAML at all is never quoted whole.
    default: return "the string " + quoted_value(n.Scalar(), 40);
  }
}

std::optional<Value> YamlReader::value(const YAML::Node& n, const std::string& what) {
  if (!n.IsDefined() || n.IsNull()) return Value::null();
  if (n.IsScalar()) return typed_scalar(n.Scalar(), n.Tag() == "!");
  if (n.IsSequence()) {
    if (++depth_ > 16) {
      --depth_;
      error("too-deep", what + " nests lists too deeply (or refers to itself through an alias)", n);
      return std::nullopt;
    }
    std::vector<Value> items;
    for (const auto& c : n) {
      auto v = value(c, what);
      if (!v) {
        --depth_;
        return std::nullopt;
      }
      items.push_back(*v);
    }
    --depth_;
    return Value::of_list(std::move(items));
  }
  error("wrong-type", what + " must be a value or a list, not a map", n);
  return std::nullopt;
}

std::optional<std::string> YamlReader::string(const YAML::Node& n, const std::string& what) {
  if (!n.IsScalar()) {
    error("wrong-type", what + " must be a string, not " + describe(n), n);
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<std::string> YamlReader::choice(const YAML::Node& n, const std::string& what,
                                              const std::vector<std::string>& choices) {
  auto s = string(n, what);
  if (!s) return s;
  for (const auto& c : choices)
    if (*s == c) return s;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  error("bad-value", "bad " + what + " '" + *s + "'" + did_you_mean(*s, choices), n,
        {"expected one of: " + list});
  return std::nullopt;
}

bool nesting_within_limit(const std::string& text, int limit) {
  int flow = 0;
  char quote = 0;
  bool line_start = true;
  int seq_run = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      line_start = true;
      seq_run = 0;
      continue;
    }
    if (quote) {
      if (c == quote) quote = 0;
      continue;
    }
    if (line_start) {
      if (c == ' ') continue;
      if (c == '-' && i + 1 < text.size() && text[i + 1] == ' ') {
        if (++seq_run > limit) return false;
        ++i;
        continue;
      }
      line_start = false;
    }
    if (c == '#') {  // comment to end of line
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
      continue;
    }
    if (c == '\'' || c == '"')
      quote = c;
    else if (c == '[' || c == '{') {
      if (++flow > limit) return false;
    } else if ((c == ']' || c == '}') && flow > 0) {
      --flow;
    }
  }
  return true;
}

std::optional<YAML::Node> load_yaml(const std::string& text, const std::string& file,
                                    const std::string& what, int nesting_limit,
                                    Diagnostics& diags) {
  if (!nesting_within_limit(text, nesting_limit)) {
    diags.error("too-deep",
                what + " nests more than " + std::to_string(nesting_limit) + " levels deep",
                {file, 0, 0});
    return std::nullopt;
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    diags.error("yaml-syntax", quoted_value(e.msg, 200, false),
                {file, e.mark.line + 1, e.mark.column + 1});
    return std::nullopt;
  }
  if (!expansion_within_limit(root)) {
    diags.error("yaml-too-large",
                what + " expands to more than " + std::to_string(kMaxYamlNodes) +
                    " YAML nodes once its aliases are expanded",
                {file, 0, 0},
                {"an alias (*name) repeats what it names; aliases of aliases multiply (a "
                 "\"billion laughs\" document)"});
    return std::nullopt;
  }
  return root;
}

bool expansion_within_limit(const YAML::Node& root, size_t limit) {
  // Depth-first without recursion; every use of an alias is visited again, as readers will.
  // Below the text's own nesting limit only: deeper is an alias that names itself, which each
  // reader's depth guard reports where it is (`too-deep`).
  constexpr int kDeepest = 64;
  std::vector<std::pair<YAML::Node, int>> todo{{root, 0}};
  size_t seen = 0;
  while (!todo.empty()) {
    auto [n, depth] = todo.back();
    todo.pop_back();
    if (++seen > limit) return false;
    if (depth >= kDeepest) continue;
    if (n.IsSequence()) {
      for (const auto& c : n) todo.emplace_back(c, depth + 1);
    } else if (n.IsMap()) {
      for (const auto& kv : n) {
        todo.emplace_back(kv.first, depth + 1);
        todo.emplace_back(kv.second, depth + 1);
      }
    }
  }
  return true;
}

}  // namespace layerfreeze
