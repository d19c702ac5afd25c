#include "core/expert_config.hpp"

#include "core/file_access.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/yaml_reader.hpp"

namespace layerfreeze {

namespace {

constexpr uintmax_t kMaxExpertConfigBytes = 16u << 20;
const std::vector<std::string> kKeys = {"experts", "shared_experts", "non_expert_modules"};

// Where the rule that named the file is, as a note.
std::vector<std::string> named_note(const SourceLoc& at) {
  if (!at.known()) return {};
  return {fmt::format("named at {}:{}:{}", at.file, at.line, at.column)};
}

// The source line of `n`, quoted, so a reader sees what is wrong without opening the file.
std::vector<std::string> with_line(const std::string& text, const YAML::Node& n,
                                   std::vector<std::string> notes) {
  if (!n.IsDefined() || n.Mark().line < 0) return notes;
  std::istringstream in(text);
  std::string line;
  for (int k = 0; k <= n.Mark().line && std::getline(in, line); ++k) {}
  if (line.size() > 160) line = line.substr(0, 157) + "...";
  notes.insert(notes.begin(), "  " + line);
  return notes;
}

struct Parsed {
  ExpertConfig config;
  std::map<int32_t, YAML::Node> layer_nodes;  // for located model checks
  std::map<int32_t, std::vector<YAML::Node>> expert_nodes;
  std::string text;
};

std::optional<Parsed> parse(const std::string& text, const std::string& file, Diagnostics& diags,
                            const SourceLoc& named_at) {
  Diagnostics local;
  auto root = load_yaml(text, file, "expert config", 64, local);
  Parsed out;
  out.text = text;
  YamlReader r(file, local);
  if (root) {
    auto bool_of = [&](const YamlReader::Entry& e, bool& slot) {
      auto v = r.value(e.value, "'" + e.key + "'");
      if (v && v->kind == Value::Kind::kBool)
        slot = v->b;
      else if (v)
        r.error("wrong-type", "'" + e.key + "' must be true or false, not " + describe(e.value),
                e.value);
    };
    bool has_experts = false;
    for (const auto& e : r.entries(*root, "an expert config", kKeys)) {
      if (e.key == "shared_experts") {
        bool_of(e, out.config.shared_experts);
        continue;
      }
      if (e.key == "non_expert_modules") {
        bool_of(e, out.config.non_expert_modules);
        continue;
      }
      has_experts = true;
      for (const auto& layer : r.entries(e.value, "'experts'", {})) {
        const std::string& k = layer.key;
        int32_t index = -1;
        if (!k.empty() && k.size() <= 6 && k.find_first_not_of("0123456789") == std::string::npos)
          index = std::stoi(k);
        else {
          r.error("bad-value",
                  "'" + k + "' is not a layer index: keys of 'experts' are layer numbers (\"1\")",
                  layer.key_node);
          continue;
        }
        if (!layer.value.IsSequence()) {
          r.error("wrong-type",
                  fmt::format("layer {}: experts must be a list of expert indices, not {}", index,
                              describe(layer.value)),
                  layer.value);
          continue;
        }
        auto& list = out.config.experts[index];
        out.layer_nodes[index] = layer.key_node;
        for (const auto& c : layer.value) {
          auto v = c.IsScalar() ? std::optional<Value>(typed_scalar(c.Scalar(), c.Tag() == "!"))
                                : std::nullopt;
          if (!v || v->kind != Value::Kind::kInt || v->i < 0 || v->i > INT32_MAX) {
            r.error("wrong-type",
                    fmt::format("layer {}: an expert index must be a non-negative integer, not {}",
                                index, describe(c)),
                    c);
            continue;
          }
          list.push_back(static_cast<int32_t>(v->i));
          out.expert_nodes[index].push_back(c);
        }
      }
    }
    if (!has_experts && root->IsMap())
      r.error("missing-key", "an expert config needs 'experts' (layer -> trainable experts)",
              *root);
  }
  bool failed = local.has_errors();
  for (auto d : local.items()) {
    if (d.severity == Severity::kError) {
      if (!d.loc.known()) d.message = file + ": " + d.message;
      for (const auto& n : named_note(named_at)) d.notes.push_back(n);
    }
    diags.add(std::move(d));
  }
  if (failed) return std::nullopt;
  return out;
}

}  // namespace

std::optional<ExpertConfig> parse_expert_config(const std::string& text, const std::string& file,
                                                Diagnostics& diags) {
  auto p = parse(text, file, diags, {});
  if (!p) return std::nullopt;
  return std::move(p->config);
}

namespace {

// Named by a rules file or a parameter it binds, both of which may come from a pull request:
// only below the folders a rules file may reach (core/file_access.hpp).
std::vector<std::filesystem::path> folders_of(const SourceLoc& named_at) {
  std::error_code ec;
  return allowed_folders(std::filesystem::exists(named_at.file, ec) ? named_at.file
                                                                    : std::string());
}

FileRead policy(const SourceLoc& named_at, const std::vector<std::filesystem::path>* folders) {
  FileRead how;
  how.what = "expert config";
  how.max_bytes = kMaxExpertConfigBytes;
  how.folders = folders;
  how.at = named_at;
  return how;
}

}  // namespace

std::string expert_config_path(const std::string& written, const SourceLoc& named_at,
                               bool literal) {
  std::filesystem::path file(written);
  std::error_code ec;
  if (file.is_relative() && literal && !named_at.file.empty() &&
      named_at.file.rfind("preset:", 0) != 0 && std::filesystem::exists(named_at.file, ec))
    file = std::filesystem::path(named_at.file).parent_path() / file;
  return file.string();
}

bool check_expert_config_file(const std::string& path, const std::string& shown,
                              const SourceLoc& named_at, Diagnostics& diags) {
  const auto folders = folders_of(named_at);
  return check_file(path, shown, policy(named_at, &folders), diags).has_value();
}

std::optional<ExpertConfig> read_expert_config(const std::string& path, const std::string& shown,
                                               const Inventory& inv, Diagnostics& diags,
                                               const SourceLoc& named_at, bool confined) {
  const auto folders = folders_of(named_at);
  FileRead how = policy(named_at, confined ? &folders : nullptr);
  auto text = read_file(path, shown, how, diags);
  if (!text) return std::nullopt;
  auto p = parse(*text, shown, diags, named_at);
  if (!p) return std::nullopt;

  // Against the model: layers that exist and hold experts, indices below the expert count.
  const int32_t L = inv.num_layers();
  std::vector<bool> moe(static_cast<size_t>(std::max(L, 0)), false);
  for (const auto& q : inv.params())
    if (q.layer >= 0 && q.layer < L && q.role == Role::kLayer &&
        (q.expert_part == ExpertPart::kRouted || q.expert_part == ExpertPart::kFused))
      moe[static_cast<size_t>(q.layer)] = true;
  size_t failed = 0;
  constexpr size_t kMaxErrors = 10;  // a config for another model is wrong everywhere
  auto error = [&](const std::string& msg, const YAML::Node& at, std::vector<std::string> notes) {
    if (++failed > kMaxErrors) return;
    SourceLoc loc{shown, at.Mark().line + 1, at.Mark().column + 1};
    auto all = with_line(p->text, at, std::move(notes));
    for (const auto& n : named_note(named_at)) all.push_back(n);
    diags.error("bad-expert-config", msg, loc, std::move(all));
  };
  if (inv.num_experts <= 0) {
    diags.error("bad-expert-config",
                fmt::format("expert config '{}' selects experts, but {} has no mixture-of-experts "
                            "layers",
                            shown, inv.facts().source),
                named_at);
    return std::nullopt;
  }
  for (const auto& [layer, list] : p->config.experts) {
    const YAML::Node& at = p->layer_nodes[layer];
    if (layer >= L) {
      error(fmt::format("layer {} does not exist: {} has {} layers (0-{})", layer,
                        inv.facts().source, L, L - 1),
            at, {});
      continue;
    }
    if (!moe[static_cast<size_t>(layer)]) {
      error(fmt::format("layer {} has no routed experts (a dense layer); {} has {} experts in "
                        "its mixture-of-experts layers",
                        layer, inv.facts().source, inv.num_experts),
            at, {"ESFT configs list mixture-of-experts layers only"});
      continue;
    }
    for (size_t k = 0; k < list.size(); ++k)
      if (list[k] >= inv.num_experts)
        error(fmt::format("layer {}: expert {} is out of range: {} has {} experts per layer "
                          "(0-{})",
                          layer, list[k], inv.facts().source, inv.num_experts, inv.num_experts - 1),
              p->expert_nodes[layer][k], {});
  }
  if (failed > kMaxErrors)
    diags.error("bad-expert-config",
                fmt::format("expert config '{}' has {} more errors against {} (was it written "
                            "for another model?)",
                            shown, failed - kMaxErrors, inv.facts().source),
                named_at);
  if (failed) return std::nullopt;
  std::vector<int32_t> left_out;
  for (int32_t l = 0; l < L; ++l)
    if (moe[static_cast<size_t>(l)] && !p->config.experts.count(l)) left_out.push_back(l);
  if (!left_out.empty() && !p->config.experts.empty()) {
    std::string list;
    for (size_t k = 0; k < left_out.size() && k < 8; ++k)
      list += (k ? ", " : "") + std::to_string(left_out[k]);
    if (left_out.size() > 8) list += fmt::format(", ... ({} in all)", left_out.size());
    diags.warning("expert-config-gaps",
                  fmt::format("expert config '{}' lists no experts for mixture-of-experts "
                              "layer(s) {}: none of their routed experts are selected",
                              shown, list),
                  named_at);
  }
  return std::move(p->config);
}

std::string expert_config_json(const ExpertConfig& c) {
  std::string out = "{\"experts\": {";
  bool first = true;
  for (const auto& [layer, list] : c.experts) {
    out += fmt::format("{}\"{}\": [", first ? "" : ", ", layer);
    for (size_t k = 0; k < list.size(); ++k) out += (k ? ", " : "") + std::to_string(list[k]);
    out += "]";
    first = false;
  }
  out += fmt::format("}}, \"shared_experts\": {}, \"non_expert_modules\": {}}}\n",
                     c.shared_experts ? "true" : "false", c.non_expert_modules ? "true" : "false");
  return out;
}

}  // namespace layerfreeze
