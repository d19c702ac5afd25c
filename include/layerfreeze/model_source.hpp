// Model sources: where an Inventory comes from. A JSON manifest, a safetensors header, a sharded
// safetensors index, or a built-in synthetic architecture. TorchScript files are the torch
// adapter's (it is loaded on demand, so the CLI does not link libtorch).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"
#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

/// How TorchScript files are read: a program linked with the torch adapter (layerfreeze::torch)
/// has one from the start (the adapter registers it when loaded); the CLI, which does not link
/// libtorch, installs one that dlopens the adapter. Without a loader a `.pt` model is an error
/// that says so. set_torchscript_loader replaces the current one.
using TorchScriptLoader = std::optional<Inventory> (*)(const std::string& path, Diagnostics& diags);
void set_torchscript_loader(TorchScriptLoader loader);

/// Loads `spec`: "builtin:gpt2", "model.safetensors", "x.safetensors.index.json", a manifest
/// "m.json", a checkpoint folder (config.json + index and/or safetensors), or a config.json alone.
/// The config.json beside a safetensors file or index is read too (`config_path` names one
/// elsewhere): architecture, layer counts, ties and, for a known model family, every shape.
/// `family_path` names a model family file (docs/FAMILIES.md) to use instead of the shipped ones.
/// Returns nullopt with errors in `diags` when it cannot. Does not run layer discovery.
std::optional<Inventory> load_model(const std::string& spec, Diagnostics& diags,
                                    const std::string& config_path = "",
                                    const std::string& family_path = "");

/// The names of the built-in architectures, and one by name.
std::vector<std::string> builtin_model_names();
std::optional<Inventory> builtin_model(const std::string& name);

/// Safetensors: the header of one file (never the data; offsets checked against the file size).
std::optional<Inventory> load_safetensors(const std::string& path, Diagnostics& diags);
/// A sharded checkpoint's index: names from weight_map; shapes from each shard's header when the
/// shards sit beside it, otherwise unknown (counts of tensors instead of numel).
std::optional<Inventory> load_safetensors_index(const std::string& path, Diagnostics& diags);

/// The JSON manifest format (what `layerfreeze inspect --format json` writes).
std::optional<Inventory> load_manifest(const std::string& path, Diagnostics& diags);
std::optional<Inventory> parse_manifest(const std::string& text, const std::string& origin,
                                        Diagnostics& diags);

/// Writes a minimal safetensors file: header only, zero-filled data (for tests and fixtures).
struct TensorSpec {
  std::string name;
  std::string dtype;  // safetensors code: "F32", "BF16", ...
  std::vector<int64_t> shape;
};
bool write_safetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                       std::string* error);

}  // namespace layerfreeze
