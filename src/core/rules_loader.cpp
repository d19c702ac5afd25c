// RulesLoader: reading rules files — presets, paths, YAML text — with `extends` resolved (cycles,
// depth, the folders it may reach), `--section` selection, `with:` bindings and the file-level
// limits. The body of each file is parsed by rules_parser.cpp.
#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "core/embedded_rules.hpp"
#include "core/file_access.hpp"
#include "core/rules_parser.hpp"
#include "core/yaml_reader.hpp"

namespace layerfreeze {

namespace {

constexpr int kMaxExtendsDepth = 16;
constexpr int kMaxYamlNesting = 64;
const std::vector<std::string> kTopKeys = {"layerfreeze", "name",   "description", "extends",
                                           "with",        "params", "options",     "discovery",
                                           "rules",       "stages"};

}  // namespace

std::optional<StrategyDef> RulesLoader::load(const std::string& spec, const std::string& section) {
  return load_nested(spec, section, std::filesystem::current_path().string());
}

std::optional<StrategyDef> RulesLoader::load_text(const std::string& text,
                                                  const std::string& origin,
                                                  const std::string& section) {
  return parse(text, origin, origin, section, std::filesystem::current_path().string());
}

std::optional<StrategyDef> RulesLoader::load_as(const std::string& path, const std::string& label,
                                                const std::string& section) {
  first_label_ = label;
  return load_nested(path, section, std::filesystem::current_path().string());
}

std::optional<StrategyDef> RulesLoader::load_nested(const std::string& spec,
                                                    const std::string& section,
                                                    const std::string& base_dir) {
  if (spec.rfind("preset:", 0) == 0) {
    std::string name = spec.substr(7);
    const char* text = name == "discovery" ? nullptr : embedded_rule_file(name + ".yaml");
    if (!text) {
      diags_.error("unknown-preset",
                   "no preset '" + name + "'" + did_you_mean(name, preset_names()), {},
                   {"`layerfreeze presets` lists them"});
      return std::nullopt;
    }
    // Located as `preset:NAME:LINE:COL`: a path an installed user has no copy of would mislead.
    return parse(text, spec, spec, section, base_dir);
  }
  std::filesystem::path p(spec);
  if (p.is_relative()) p = std::filesystem::path(base_dir) / p;
  const std::string extends_notes =
      files_ ? " (the repository, at the revision read)"
             : " (the working directory, the rules file's folder, its repository and "
               "$LAYERFREEZE_EXTENDS_PATH)";
  if (stack_.empty() && files_) {
    roots_.assign(files_->roots.begin(), files_->roots.end());
  } else if (stack_.empty()) {
    // The file the user names sets where `extends` may reach (core/file_access.hpp): a rules
    // file from a pull request cannot make layerfreeze read (and quote) /etc/shadow.
    roots_ = allowed_folders(p.string());
  } else if (files_) {
    // A revision's tree has no symlinks to follow: the normal path is the file.
    auto target = p.lexically_normal();
    auto inside = [&](const std::filesystem::path& root) {
      auto rel = target.lexically_relative(root);
      return !rel.empty() && rel.native().rfind("..", 0) != 0;
    };
    if (std::none_of(roots_.begin(), roots_.end(), inside)) {
      diags_.error(
          "extends-outside", "'" + spec + "' is outside the folders a rules file may extend from",
          {},
          {"allowed here: " + folders_text(roots_) + " — each with what is below" + extends_notes});
      return std::nullopt;
    }
  }
  // Files a user names keep their spelling in messages; files reached through `extends` are
  // named relative to the working directory when they lie under it.
  std::string label = stack_.empty() && !first_label_.empty() ? first_label_ : spec;
  if (!stack_.empty()) {
    auto rel = std::filesystem::path(p.lexically_normal())
                   .lexically_relative(std::filesystem::current_path());
    label = !rel.empty() && rel.native().rfind("..", 0) != 0 ? rel.string()
                                                             : p.lexically_normal().string();
    if (files_) label = files_->label_prefix + label;
  }
  std::string text;
  if (files_) {
    auto t = files_->read(p.lexically_normal().string(), label, diags_);
    if (!t) return std::nullopt;
    text = std::move(*t);
    canonical_ = p.lexically_normal().string();
  } else {
    // Resolved once (symlinks followed), checked, and read by that resolved path.
    FileRead how;
    how.what = "rules file";
    how.max_bytes = kMaxRulesFileBytes;
    if (!stack_.empty()) {
      how.folders = &roots_;
      how.outside_code = "extends-outside";
      how.outside_notes = {"a rules file may extend only files below these" + extends_notes};
    }
    std::string resolved;
    auto t = read_file(p.string(), label, how, diags_, &resolved);
    if (!t) return std::nullopt;
    text = std::move(*t);
    canonical_ = resolved;
  }
  return parse(text, label, label, section, p.parent_path().string());
}

std::optional<StrategyDef> RulesLoader::parse(const std::string& text, const std::string& file,
                                              const std::string& origin, const std::string& section,
                                              const std::string& base_dir) {
  sources_.add(file, text);
  const std::string identity = canonical_.empty() ? origin : canonical_;
  canonical_.clear();
  if (std::find(stack_.begin(), stack_.end(), identity) != stack_.end()) {
    diags_.error("extends-cycle", "'" + origin + "' extends itself (through " + file + ")",
                 {file, 0, 0});
    return std::nullopt;
  }
  if (static_cast<int>(stack_.size()) >= kMaxExtendsDepth) {
    diags_.error("extends-depth",
                 "more than " + std::to_string(kMaxExtendsDepth) + " levels of 'extends'",
                 {file, 0, 0});
    return std::nullopt;
  }
  auto loaded = load_yaml(text, file, "the file", kMaxYamlNesting, diags_);
  if (!loaded) return std::nullopt;
  YAML::Node root = *loaded;
  YamlReader r(file, diags_);
  if (!section.empty()) {
    size_t start = 0;
    std::string walked;
    while (start <= section.size()) {
      size_t dot = section.find('.', start);
      std::string key =
          section.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (!root.IsMap() || !root[key]) {
        std::vector<std::string> keys;
        if (root.IsMap())
          for (auto it = root.begin(); it != root.end(); ++it) keys.push_back(it->first.Scalar());
        diags_.error("section-not-found",
                     "no key '" + key + "'" + (walked.empty() ? "" : " under '" + walked + "'") +
                         " in " + file + did_you_mean(key, keys),
                     r.loc(root));
        return std::nullopt;
      }
      root = root[key];
      walked += (walked.empty() ? "" : ".") + key;
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
  }
  if (!root.IsMap()) {
    diags_.error("wrong-type",
                 "a rules file is a map with 'rules' and/or 'stages', not " + describe(root),
                 r.loc(root));
    return std::nullopt;
  }
  size_t errors_before = diags_.count(Severity::kError);

  StrategyDef s;
  s.origin = origin;
  auto entries = r.entries(root, "the rules file", kTopKeys);
  // `extends` first: the parent's parameters are in scope for this file's expressions.
  YAML::Node with;
  bool has_with = false;
  for (const auto& e : entries) {
    if (e.key != "extends") continue;
    auto spec = r.string(e.value, "'extends'");
    if (!spec) continue;
    stack_.push_back(identity);
    auto parent = load_nested(*spec, "", base_dir);
    stack_.pop_back();
    if (!parent) {
      diags_.error("extends-failed", "cannot extend '" + *spec + "'", r.loc(e.value));
      continue;
    }
    s = std::move(*parent);
    s.origin = origin;
    s.name.clear();  // the extending file names itself (or takes its file name)
    s.description.clear();
  }
  for (const auto& e : entries) {
    if (e.key == "with") {
      with = e.value;
      has_with = true;
      if (s.params.empty() && std::none_of(entries.begin(), entries.end(),
                                           [](const auto& x) { return x.key == "extends"; }))
        r.error("misplaced-key", "'with' sets parameters of the strategy named by 'extends'",
                e.key_node);
    }
  }
  bool extends =
      std::any_of(entries.begin(), entries.end(), [](const auto& x) { return x.key == "extends"; });
  if (has_with && extends) {
    for (const auto& e : r.entries(with, "'with'", {})) {
      const ParamDecl* d = s.find_param(e.key);
      if (!d) {
        std::vector<std::string> names;
        for (const auto& p : s.params) names.push_back(p.name);
        r.error("unknown-param",
                "'" + e.key + "' is not a parameter of the extended strategy" +
                    did_you_mean(e.key, names),
                e.key_node);
        continue;
      }
      auto v = r.value(e.value, "'" + e.key + "'");
      if (!v) continue;
      std::string err = check_param_value(*d, *v);
      if (!err.empty())
        r.error("param-type", "'" + e.key + "': " + err, e.value);
      else
        s.bound[e.key] = *v;
    }
  }
  parse_strategy_body(r, entries, s, file);
  if (s.name.empty()) s.name = std::filesystem::path(file).stem().string();
  if (diags_.count(Severity::kError) > errors_before) return std::nullopt;
  return s;
}

}  // namespace layerfreeze
