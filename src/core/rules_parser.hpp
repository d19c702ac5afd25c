// RulesParser: reads a strategy (a rules file, a preset, or a section of a larger experiment
// YAML) into the rules AST, following `extends:`. Strict: every unknown key, wrong type, bad
// value or bad regex is an error at its file:line:col, and all of them are reported at once.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/rules.hpp"
#include "core/yaml_reader.hpp"
#include "layerfreeze/plan.hpp"

namespace layerfreeze {

/// The largest rules file read (1 MiB), from any source.
inline constexpr size_t kMaxRulesFileBytes = Strategy::Files::kMaxFileBytes;

/// Where rules files come from when not from the working tree (Strategy::Files).
using RulesFiles = Strategy::Files;

/// Loads strategies. `spec` is a path or `preset:NAME`.
class RulesLoader {
 public:
  RulesLoader(Diagnostics& diags, SourceTexts& sources) : diags_(diags), sources_(sources) {}
  /// Reads every file, the one named and what it extends, through `files` (paths compared as
  /// written: a revision's tree has no symlinks to resolve).
  RulesLoader(Diagnostics& diags, SourceTexts& sources, RulesFiles files)
      : diags_(diags), sources_(sources), files_(std::move(files)) {}

  /// `section` is a dotted key path ("training.freeze") to the strategy inside a larger YAML.
  std::optional<StrategyDef> load(const std::string& spec, const std::string& section = "");
  std::optional<StrategyDef> load_text(const std::string& text, const std::string& origin,
                                       const std::string& section = "");
  /// Loads the file at `path`, named `label` in messages and as its origin ("HEAD~1:x.yaml").
  std::optional<StrategyDef> load_as(const std::string& path, const std::string& label,
                                     const std::string& section = "");

 private:
  std::optional<StrategyDef> load_nested(const std::string& spec, const std::string& section,
                                         const std::string& base_dir);
  std::optional<StrategyDef> parse(const std::string& text, const std::string& file,
                                   const std::string& origin, const std::string& section,
                                   const std::string& base_dir);

  Diagnostics& diags_;
  SourceTexts& sources_;
  std::vector<std::string> stack_;            // files being loaded, for cycle detection
  std::string canonical_;                     // identity of the file about to be parsed
  std::vector<std::filesystem::path> roots_;  // where `extends` may reach (set by the first file)
  std::optional<RulesFiles> files_;
  std::string first_label_;  // load_as: the name of the file the user named
};

/// Parses the body of one rules file (`entries` of its top map, `extends` and `with` already
/// applied to `s`): version, name, description, params, options, discovery, rules, stages; the
/// file's rules and stages are appended to what `s` extends. Used by RulesLoader.
void parse_strategy_body(YamlReader& r, const std::vector<YamlReader::Entry>& entries,
                         StrategyDef& s, const std::string& file);

/// Checks (and normalises: int to float, a string to a one-item list) a value for a declared
/// parameter; returns "" or what is wrong.
std::string check_param_value(const ParamDecl& d, Value& v);

/// The parameter values in force: defaults, then `extends ... with:` values, then `--set`
/// overrides ("KEY=VALUE", VALUE a YAML scalar or flow value). Undeclared keys, bad values and
/// required parameters without a value are errors. With `allow_missing`, required parameters
/// may stay unset (for `validate`).
std::optional<Scope> bind_params(const StrategyDef& s, const std::vector<std::string>& sets,
                                 const std::vector<std::pair<std::string, ParamValue>>& values,
                                 Diagnostics& diags, bool allow_missing = false);

/// The shipped presets' names ("lp_lora"); their diagnostics are located as
/// "preset:lp_lora:LINE:COL".
std::vector<std::string> preset_names();

/// Parses a literal slice "a:b", "a:b:c", "-4:", ":8" or a single index "3".
struct Slice {
  std::optional<int64_t> start, stop;
  int64_t step = 1;
  bool single = false;
};
std::optional<Slice> parse_slice(const std::string& text, std::string* error,
                                 const char* noun = "layer");

}  // namespace layerfreeze
