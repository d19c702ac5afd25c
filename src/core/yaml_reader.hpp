// YamlReader: strict reading of YAML nodes with locations. Unknown keys, duplicate keys and
// wrong types are errors at the offending node, with "did you mean" for near misses.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

#include "core/value.hpp"
#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

class YamlReader {
 public:
  YamlReader(std::string file, Diagnostics& diags) : file_(std::move(file)), diags_(diags) {}

  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };

  SourceLoc loc(const YAML::Node& n) const;
  const std::string& file() const { return file_; }
  Diagnostics& diags() { return diags_; }

  /// The entries of a map, in order. Reports a non-map `n` (as `what`), unknown keys (against
  /// `allowed`, unless empty) and duplicates; those entries are left out.
  std::vector<Entry> entries(const YAML::Node& n, const std::string& what,
                             const std::vector<std::string>& allowed);
  /// A YAML scalar or sequence as a Value (plain scalars typed by the YAML 1.2 core schema;
  /// quoted scalars are strings). Maps are an error.
  std::optional<Value> value(const YAML::Node& n, const std::string& what);
  std::optional<std::string> string(const YAML::Node& n, const std::string& what);
  /// A scalar that must be one of `choices`.
  std::optional<std::string> choice(const YAML::Node& n, const std::string& what,
                                    const std::vector<std::string>& choices);

  void error(const std::string& code, const std::string& msg, const YAML::Node& at,
             std::vector<std::string> notes = {}) {
    diags_.error(code, msg, loc(at), std::move(notes));
  }

 private:
  std::string file_;
  Diagnostics& diags_;
  int depth_ = 0;
};

/// A plain YAML scalar typed by the core schema: null, bool, int, float, else string.
Value typed_scalar(const std::string& text, bool quoted);
/// yaml-cpp parses recursively: a deeply nested text would overflow the stack before any check
/// of ours runs. This scan bounds flow nesting (`[`, `{`) and runs of block sequences (`- - -`).
bool nesting_within_limit(const std::string& text, int limit);
/// The most nodes a YAML document may expand to, aliases counted each time they are used: a
/// 500-byte "billion laughs" of nested aliases expands to billions (docs/SECURITY.md).
inline constexpr size_t kMaxYamlNodes = 200000;
/// Whether `root` expands to at most `limit` nodes (aliases repeated); stops counting there.
bool expansion_within_limit(const YAML::Node& root, size_t limit = kMaxYamlNodes);
/// YAML text parsed, after the nesting check: `too-deep` ("`what` nests more than N levels
/// deep"), `yaml-syntax` errors at their position and `yaml-too-large` (more than kMaxYamlNodes
/// nodes once aliases are expanded); nullopt on any.
std::optional<YAML::Node> load_yaml(const std::string& text, const std::string& file,
                                    const std::string& what, int nesting_limit, Diagnostics& diags);
/// Describes a node for messages: "a map", "a list", "the string 'x'", "the number 3".
std::string describe(const YAML::Node& n);

}  // namespace layerfreeze
