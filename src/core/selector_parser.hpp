// SelectorParser: the selector forms of a rules file (docs/RULES.md, "Selectors") read from YAML
// into a Selector — a word, a list (any of), or a map with one kind key (role, layers, stack,
// regex, module_type, leaf, any_of, all_of, random_layers) and `except`, `case_sensitive` and
// `stack` beside it. Literal regexes and slices are checked here; expressions (`${...}`) when
// the plan is compiled.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "core/rules_parser.hpp"
#include "core/yaml_reader.hpp"

namespace layerfreeze {

class SelectorParser {
 public:
  /// Errors go through `r`; `${...}` may name the parameters `s` declares.
  SelectorParser(YamlReader& r, const StrategyDef& s) : r_(r), s_(s) {}

  Selector selector(const YAML::Node& n, const std::string& what);
  /// A value or an expression over the strategy's parameters.
  Expr expr(const YAML::Node& n, const std::string& what);
  /// The same, when a literal must be of one of `kinds` (checked now).
  Expr typed(const YAML::Node& n, const std::string& what,
             std::initializer_list<Value::Kind> kinds);
  /// A node on one line, scalars as written: `{count: ${n}, seed: 0}`, `[0, -4:]`.
  static std::string flat(const YAML::Node& n, int depth = 0);

 private:
  std::vector<std::string> known() const;
  Expr strings(const YAML::Node& n, const std::string& what);
  void check_regexes(const Expr& e, const YAML::Node& n, const char* what);
  void check_slice(const Expr& e, const YAML::Node& n, const char* noun = "layer");
  void word_selector(const YAML::Node& n, Selector& sel);
  void map_selector(const YAML::Node& n, const std::string& what, Selector& sel);
  void role_selector(const YAML::Node& v, Selector& sel);
  void random_layers_selector(const YAML::Node& v, Selector& sel);
  void block_cycle_selector(const YAML::Node& v, Selector& sel);
  void check_word(const Expr& e, const YAML::Node& n, const std::string& what,
                  const std::vector<std::string>& words, const std::string& or_else);
  void experts_selector(const YAML::Node& v, Selector& sel);
  void rows_selector(const YAML::Node& v, const std::string& key, Selector& sel);
  void index_list(const YAML::Node& v, const char* noun, const std::string& what,
                  std::vector<Expr>& out);
  void layers(const YAML::Node& v, Selector& sel);
  static std::string list_text(const std::vector<Selector>& cs, const std::string& op);

  YamlReader& r_;
  const StrategyDef& s_;
  int depth_ = 0;
  bool depth_reported_ = false;
};

}  // namespace layerfreeze
