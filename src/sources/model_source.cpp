#include <filesystem>

#include "layerfreeze/model_source.hpp"

namespace layerfreeze {

namespace {
TorchScriptLoader torchscript_loader = nullptr;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

void set_torchscript_loader(TorchScriptLoader loader) { torchscript_loader = loader; }

std::optional<Inventory> load_model(const std::string& spec, Diagnostics& diags) {
  SourceLoc loc{spec, 0, 0};
  if (spec.rfind("builtin:", 0) == 0) {
    std::string name = spec.substr(8);
    if (auto inv = builtin_model(name)) return inv;
    diags.error("unknown-model", "no built-in model '" + name + "'" +
                                     did_you_mean(name, builtin_model_names()),
                {}, {"built-in models: " + [] {
                       std::string s;
                       for (const auto& n : builtin_model_names()) s += (s.empty() ? "" : ", ") + n;
                       return s;
                     }()});
    return std::nullopt;
  }
  if (!std::filesystem::exists(spec)) {
    diags.error("model-not-found", "no such model file '" + spec + "'", {},
                {"a model is a .pt (TorchScript), .safetensors, .safetensors.index.json, a "
                 ".json manifest, or builtin:NAME"});
    return std::nullopt;
  }
  if (ends_with(spec, ".safetensors.index.json") || ends_with(spec, ".index.json"))
    return load_safetensors_index(spec, diags);
  if (ends_with(spec, ".safetensors")) return load_safetensors(spec, diags);
  if (ends_with(spec, ".json")) return load_manifest(spec, diags);
  if (ends_with(spec, ".pt") || ends_with(spec, ".pth") || ends_with(spec, ".torchscript") || ends_with(spec, ".ptl")) {
    if (torchscript_loader) return torchscript_loader(spec, diags);
    diags.error("torchscript-unavailable",
                "TorchScript models need the torch adapter, which this program does not have", loc);
    return std::nullopt;
  }
  diags.error("unknown-model-format", "cannot tell the format of '" + spec + "' from its name", loc,
              {"expected .pt, .safetensors, .safetensors.index.json or .json"});
  return std::nullopt;
}

}  // namespace layerfreeze
