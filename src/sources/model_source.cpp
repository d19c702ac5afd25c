#include <filesystem>
#include <fstream>

#include "layerfreeze/model_source.hpp"
#include "sources/checkpoint.hpp"
#include "sources/family.hpp"
#include "sources/json_file.hpp"
#include "sources/readers.hpp"

namespace layerfreeze {

namespace {
TorchScriptLoader torchscript_loader = nullptr;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_index(const std::string& s) {
  return ends_with(s, ".safetensors.index.json") || ends_with(s, ".index.json");
}

// The weights file of a checkpoint folder: model.safetensors.index.json, model.safetensors, or
// the only index / safetensors file there. "" when none; an error when several compete.
std::string weights_in(const std::string& dir, Diagnostics& diags) {
  namespace fs = std::filesystem;
  for (const char* n : {"model.safetensors.index.json", "model.safetensors"})
    if (fs::is_regular_file(fs::path(dir) / n)) return (fs::path(dir) / n).string();
  std::vector<std::string> indexes, files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (is_index(n))
      indexes.push_back(e.path().string());
    else if (ends_with(n, ".safetensors"))
      files.push_back(e.path().string());
  }
  if (indexes.size() == 1) return indexes[0];
  if (indexes.empty() && files.size() == 1) return files[0];
  if (indexes.size() + files.size() > 1 && indexes.size() != 1) {
    diags.error("model-ambiguous",
                "checkpoint folder '" + dir + "' has " + std::to_string(indexes.size()) +
                    " indexes and " + std::to_string(files.size()) +
                    " safetensors files and no model.safetensors.index.json",
                {dir, 0, 0}, {"name the index or the file with --model"});
  }
  return "";
}

std::optional<ModelFacts> load_header(const std::string& spec, Diagnostics& diags) {
  if (is_index(spec)) return read_safetensors_index(spec, diags);
  return read_safetensors(spec, diags);
}

// A header source plus its config (explicit, or beside it).
std::optional<ModelFacts> with_config(std::optional<ModelFacts> header, const std::string& weights,
                                      const std::string& config_path, const Family* family,
                                      Diagnostics& diags) {
  if (!header) return std::nullopt;
  std::string cfg_path = config_path.empty() ? config_beside(weights) : config_path;
  if (cfg_path.empty()) {
    if (family)
      diags.error("config-missing",
                  "a family file needs the model's config.json: none beside '" + weights +
                      "' (name one with --config)",
                  {weights, 0, 0});
    return family ? std::nullopt : std::move(header);
  }
  auto cfg = read_model_config(cfg_path, diags);
  if (!cfg) return std::nullopt;
  return apply_config(std::move(header), *cfg, diags, family);
}

// A user's family file, parsed with locations for its errors.
std::optional<Family> read_family(const std::string& path, Diagnostics& diags) {
  FileRead how;
  how.what = "family file";
  how.max_bytes = kMaxFamilyFileBytes;
  how.not_found_code = "model-not-found";
  auto text = read_file(path, path, how, diags);
  if (!text) return std::nullopt;
  return Family::parse(*text, path, diags);
}

}  // namespace

void set_torchscript_loader(TorchScriptLoader loader) { torchscript_loader = loader; }

namespace {

std::optional<ModelFacts> read_model(const std::string& spec, Diagnostics& diags,
                                     const std::string& config_path,
                                     const std::string& family_path) {
  SourceLoc loc{spec, 0, 0};
  std::optional<Family> user_family;
  if (!family_path.empty()) {
    user_family = read_family(family_path, diags);
    if (!user_family) return std::nullopt;
  }
  const Family* family = user_family ? &*user_family : nullptr;
  if (spec.rfind("builtin:", 0) == 0) {
    if (!config_path.empty())
      diags.warning("config-ignored",
                    "--config '" + config_path + "' is not read for built-in model '" + spec +
                        "': a built-in architecture has its shapes already",
                    {});
    std::string name = spec.substr(8);
    if (auto inv = builtin_facts(name)) return inv;
    diags.error("unknown-model",
                "no built-in model '" + name + "'" + did_you_mean(name, builtin_model_names()), {},
                {"built-in models: " + [] {
                  std::string s;
                  for (const auto& n : builtin_model_names()) s += (s.empty() ? "" : ", ") + n;
                  return s;
                }()});
    return std::nullopt;
  }
  if (!std::filesystem::exists(spec)) {
    diags.error("model-not-found", "no such model file '" + spec + "'", {},
                {"a model is a .pt (TorchScript), .safetensors, .safetensors.index.json, a "
                 ".json manifest, a config.json, a checkpoint folder, or builtin:NAME"});
    return std::nullopt;
  }
  if (!config_path.empty() && !std::filesystem::is_regular_file(config_path)) {
    diags.error("model-not-found", "no such config file '" + config_path + "'", {});
    return std::nullopt;
  }
  // What the model named leads to (a config beside it, an index or safetensors file inside a
  // folder, shards) must lie below the folders of what was named (core/file_access.hpp).
  ModelFolders folders(allowed_folders(std::filesystem::is_directory(spec)
                                           ? (std::filesystem::path(spec) / "config.json").string()
                                           : spec));
  if (std::filesystem::is_directory(spec)) {
    const std::string weights = weights_in(spec, diags);
    if (diags.has_errors()) return std::nullopt;
    const std::string cfg_path = config_path.empty() ? config_beside(spec) : config_path;
    if (weights.empty() && cfg_path.empty()) {
      diags.error("model-not-found",
                  "checkpoint folder '" + spec +
                      "' has no config.json, "
                      "safetensors index or safetensors file",
                  loc);
      return std::nullopt;
    }
    if (!weights.empty())
      return with_config(load_header(weights, diags), weights, cfg_path, family, diags);
    auto cfg = read_model_config(cfg_path, diags);
    if (!cfg) return std::nullopt;
    return apply_config(std::nullopt, *cfg, diags, family);
  }
  if (is_index(spec) || ends_with(spec, ".safetensors"))
    return with_config(load_header(spec, diags), spec, config_path, family, diags);
  if (ends_with(spec, ".json")) {
    // A config.json alone, or a manifest: the content tells.
    // Syntax errors are the manifest reader's to report (it knows the format); trailing text
    // after a value (a merge-conflict marker) is reported here with its position.
    Diagnostics local;
    auto j = read_json_file(spec, "'" + spec + "'", local);
    if (!j) {
      const bool config_name = std::filesystem::path(spec).filename() == "config.json";
      if (!config_name && !local.items().empty() && local.items()[0].code == "json-syntax")
        return read_manifest(spec, diags);
      diags.append(local);
      return std::nullopt;
    }
    if (looks_like_config(*j) || std::filesystem::path(spec).filename() == "config.json") {
      auto cfg = model_config_from_json(*j, spec, diags);
      if (!cfg) return std::nullopt;
      return apply_config(std::nullopt, *cfg, diags, family);
    }
    return read_manifest(spec, diags);
  }
  if (ends_with(spec, ".pt") || ends_with(spec, ".pth") || ends_with(spec, ".torchscript") ||
      ends_with(spec, ".ptl")) {
    FileRead how;
    how.what = "TorchScript file";
    how.not_found_code = "model-not-found";
    how.unreadable_code = "model-unreadable";
    if (!check_file(spec, spec, how, diags)) return std::nullopt;
    if (torchscript_loader) {
      auto module = torchscript_loader(spec, diags);
      if (!module) return std::nullopt;
      return module->facts();
    }
    diags.error("torchscript-unavailable",
                "TorchScript models need the torch adapter, which this program does not have", loc);
    return std::nullopt;
  }
  diags.error(
      "unknown-model-format", "cannot tell the format of '" + spec + "' from its name", loc,
      {"expected .pt, .safetensors, .safetensors.index.json, .json, or a checkpoint folder"});
  return std::nullopt;
}

}  // namespace

std::optional<Inventory> load_model(const std::string& spec, Diagnostics& diags,
                                    const std::string& config_path,
                                    const std::string& family_path) {
  const size_t before = diags.items().size();
  auto facts = read_model(spec, diags, config_path, family_path);
  if (!facts) return std::nullopt;
  // What reading said stays with the model, so every plan of it carries it (and --strict
  // refuses it), not only the command that read it.
  for (size_t k = before; k < diags.items().size(); ++k)
    if (diags.items()[k].severity == Severity::kWarning)
      facts->warnings.push_back(diags.items()[k]);
  return Inventory(std::move(*facts));
}

namespace {
std::optional<Inventory> as_inventory(std::optional<ModelFacts> facts) {
  if (!facts) return std::nullopt;
  return Inventory(std::move(*facts));
}
}  // namespace

std::optional<Inventory> builtin_model(const std::string& name) {
  return as_inventory(builtin_facts(name));
}

std::optional<Inventory> load_safetensors(const std::string& path, Diagnostics& diags) {
  return as_inventory(read_safetensors(path, diags));
}

std::optional<Inventory> load_safetensors_index(const std::string& path, Diagnostics& diags) {
  return as_inventory(read_safetensors_index(path, diags));
}

std::optional<Inventory> load_manifest(const std::string& path, Diagnostics& diags) {
  return as_inventory(read_manifest(path, diags));
}

std::optional<Inventory> parse_manifest(const std::string& text, const std::string& origin,
                                        Diagnostics& diags) {
  return as_inventory(parse_manifest_facts(text, origin, diags));
}

}  // namespace layerfreeze
